//! The operator's commands besides `run`: `latticed principal ...` (the
//! data-path credential store) and `latticed policy simulate`.

pub mod cluster;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use latticed_proxy::authz::{self, Context, Decision, Level, Policy, Principal, Verdict};

/// `latticed principal ...`.
#[derive(Subcommand, Debug)]
pub enum PrincipalCommand {
    /// Create an access key that signs requests (SigV4, service
    /// vpc-lattice-svcs) as PRINCIPAL; prints it in the AWS shared
    /// credentials format. A running latticed picks it up within a second.
    Add {
        /// IAM or STS ARN the key signs as.
        #[arg(long)]
        principal: String,
        /// AWS Organizations id (`aws:PrincipalOrgID`).
        #[arg(long)]
        org_id: Option<String>,
        /// Session name (sent to targets in x-amzn-lattice-identity).
        #[arg(long)]
        session_name: Option<String>,
        #[command(flatten)]
        state: StateDir,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Delete an access key.
    Remove {
        /// The access key id.
        #[arg(long)]
        access_key_id: String,
        #[command(flatten)]
        state: StateDir,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// List access keys and their principals (no secrets).
    List {
        #[command(flatten)]
        state: StateDir,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
}

/// `latticed account ...`.
#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Create an account and an admin key for it; prints the key in the AWS
    /// shared credentials format. A running latticed picks it up within a
    /// second.
    Add {
        /// The account's id (12 digits).
        #[arg(long)]
        account_id: String,
        /// Its AWS Organizations id (o-...): resource shares between
        /// accounts of one organisation need no invitation.
        #[arg(long)]
        organization_id: Option<String>,
        /// latticed's default account (`run --account-id`), refused here.
        #[arg(long, default_value = "111122223333", env = "LATTICED_ACCOUNT_ID")]
        default_account_id: String,
        #[command(flatten)]
        state: StateDir,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Delete an account and its keys (what it owns stays, unreachable).
    Remove {
        /// The account's id.
        #[arg(long)]
        account_id: String,
        #[command(flatten)]
        state: StateDir,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// List the accounts and their access keys (no secrets).
    List {
        #[command(flatten)]
        state: StateDir,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
}

/// `latticed account ...`: on the local file, or, with
/// `--etcd-endpoints`, on the cluster's accounts document (every node takes
/// it at once).
#[expect(clippy::print_stdout, reason = "the command's answer")]
pub fn account(cmd: AccountCommand, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    use crate::accounts as a;
    match cmd {
        AccountCommand::Add {
            account_id,
            organization_id,
            default_account_id,
            state,
            etcd,
        } => {
            let (_, (key, secret), place) =
                edit_document(&etcd, &state, runtime, |file: &mut a::File| {
                    let org = organization_id.as_deref();
                    Ok((
                        true,
                        a::add_to(file, &account_id, org, Some(&default_account_id))?,
                    ))
                })?;
            println!("[default]\naws_access_key_id = {key}\naws_secret_access_key = {secret}");
            eprintln!("account {account_id} added to {place}");
        }
        AccountCommand::Remove {
            account_id,
            state,
            etcd,
        } => {
            let (_, (), place) = edit_document(&etcd, &state, runtime, |file: &mut a::File| {
                Ok((true, a::remove_from(file, &account_id)?))
            })?;
            eprintln!("removed account {account_id} from {place}");
        }
        AccountCommand::List { state, etcd } => {
            let (file, (), _) =
                edit_document(&etcd, &state, runtime, |_: &mut a::File| Ok((false, ())))?;
            for (id, acc) in &file.accounts {
                let keys: Vec<&str> = acc.admin_keys.keys().map(String::as_str).collect();
                let org = acc.organization_id.as_deref().unwrap_or("-");
                println!("{id}\t{org}\t{}", keys.join(","));
            }
        }
    }
    Ok(())
}

/// A document an operator edits with these commands: a file under the
/// state directory, or, in cluster mode, one etcd key (`NAME`) that every
/// node follows.
trait Document: Default + Sized {
    /// The etcd key, and the document's name in messages.
    const NAME: &'static str;
    /// Its file under `state_dir`.
    fn path(state_dir: &std::path::Path) -> PathBuf;
    /// Reads the file (missing: empty).
    fn load(path: &std::path::Path) -> anyhow::Result<Self>;
    /// Writes the file.
    fn save(&self, path: &std::path::Path) -> anyhow::Result<()>;
    /// Parses its text (`origin` names where it came from in errors).
    fn parse(text: &str, origin: &str) -> anyhow::Result<Self>;
    /// Its text.
    fn to_text(&self) -> anyhow::Result<String>;
}

impl Document for crate::accounts::File {
    const NAME: &'static str = "accounts";
    fn path(state_dir: &std::path::Path) -> PathBuf {
        crate::accounts::path(state_dir)
    }
    fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        Ok(crate::accounts::load(path)?)
    }
    fn save(&self, path: &std::path::Path) -> anyhow::Result<()> {
        Ok(crate::accounts::save(path, self)?)
    }
    fn parse(text: &str, origin: &str) -> anyhow::Result<Self> {
        Ok(crate::accounts::parse(text, origin)?)
    }
    fn to_text(&self) -> anyhow::Result<String> {
        Ok(crate::accounts::to_text(self)?)
    }
}

impl Document for authz::principals::File {
    const NAME: &'static str = "principals";
    fn path(state_dir: &std::path::Path) -> PathBuf {
        crate::principals::path(state_dir)
    }
    fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        Ok(crate::principals::load(path)?)
    }
    fn save(&self, path: &std::path::Path) -> anyhow::Result<()> {
        Ok(crate::principals::save(path, self)?)
    }
    fn parse(text: &str, origin: &str) -> anyhow::Result<Self> {
        Ok(crate::principals::parse(text, origin)?)
    }
    fn to_text(&self) -> anyhow::Result<String> {
        Ok(crate::principals::to_text(self)?)
    }
}

/// Applies `apply` to document `D`: the file (written back if `apply` says
/// it changed it), or, with `--etcd-endpoints`, the etcd key by
/// compare-and-swap (`apply` runs again if another writer got there
/// first). Returns the document as it is now, what `apply` returned, and
/// where the document lives.
fn edit_document<D: Document, T>(
    etcd: &EtcdArgs,
    state: &StateDir,
    runtime: &tokio::runtime::Runtime,
    apply: impl Fn(&mut D) -> anyhow::Result<(bool, T)>,
) -> anyhow::Result<(D, T, String)> {
    let Some(opts) = etcd.options(Some("cli"))? else {
        let path = D::path(&state.state_dir);
        let mut doc = D::load(&path)?;
        let (changed, out) = apply(&mut doc)?;
        if changed {
            doc.save(&path)?;
        }
        return Ok((doc, out, path.display().to_string()));
    };
    runtime.block_on(async {
        let cluster = crate::control::cluster::Cluster::connect(&opts).await?;
        let (doc, out) = cluster
            .update_document(D::NAME, |text| {
                let mut doc = match text {
                    Some(t) => D::parse(t, &format!("{} in etcd", D::NAME))?,
                    None => D::default(),
                };
                let (_, out) = apply(&mut doc)?;
                anyhow::Ok((doc.to_text()?, (doc, out)))
            })
            .await??;
        Ok((doc, out, format!("etcd {}", cluster.endpoints())))
    })
}

/// Cluster mode: where etcd is (etcdctl's flags and meanings).
#[derive(Args, Debug, Clone)]
pub struct EtcdArgs {
    /// Cluster mode: etcd's client URLs (http:// or https://),
    /// comma-separated. Every node given the same endpoints and prefix
    /// shares one set of service networks. Without it: one host, redb.
    #[arg(long, env = "LATTICED_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// The key prefix latticed keeps its state under.
    #[arg(long, default_value = "/latticed/", env = "LATTICED_ETCD_PREFIX")]
    pub etcd_prefix: String,
    /// CA bundle that verifies etcd's server certificates.
    #[arg(long, env = "LATTICED_ETCD_CACERT")]
    pub etcd_cacert: Option<PathBuf>,
    /// Client certificate for etcd (with --etcd-key).
    #[arg(long, env = "LATTICED_ETCD_CERT")]
    pub etcd_cert: Option<PathBuf>,
    /// Client certificate's private key.
    #[arg(long, env = "LATTICED_ETCD_KEY")]
    pub etcd_key: Option<PathBuf>,
}

impl EtcdArgs {
    /// The cluster options, checked; `None` without endpoints.
    pub fn options(
        &self,
        node: Option<&str>,
    ) -> anyhow::Result<Option<crate::control::cluster::Options>> {
        if self.etcd_endpoints.is_empty() {
            return Ok(None);
        }
        let node =
            node.ok_or_else(|| anyhow::anyhow!("--node-name: required with --etcd-endpoints"))?;
        let opts = crate::control::cluster::Options {
            endpoints: self.etcd_endpoints.clone(),
            prefix: self.etcd_prefix.clone(),
            node: node.to_owned(),
            cacert: self.etcd_cacert.clone(),
            cert: self.etcd_cert.clone(),
            key: self.etcd_key.clone(),
        };
        Ok(Some(opts.validate()?))
    }
}

/// Where the store lives.
#[derive(Args, Debug)]
pub struct StateDir {
    /// State directory of latticed.
    #[arg(long, default_value = "/var/lib/latticed", env = "LATTICED_STATE_DIR")]
    state_dir: PathBuf,
}

/// `latticed principal ...`: on the local file, or, with
/// `--etcd-endpoints`, on the cluster's principals document (every node
/// takes it at once).
#[expect(clippy::print_stdout, reason = "the command's answer")]
pub fn principal(cmd: PrincipalCommand, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    use crate::principals as p;
    type File = authz::principals::File;
    match cmd {
        PrincipalCommand::Add {
            principal,
            org_id,
            session_name,
            state,
            etcd,
        } => {
            let principal = Principal {
                arn: principal,
                org_id,
                session_name,
            };
            let (_, cred, place) = edit_document(&etcd, &state, runtime, |file: &mut File| {
                Ok((true, p::add_to(file, principal.clone())?))
            })?;
            println!(
                "[default]\naws_access_key_id = {}\naws_secret_access_key = {}",
                cred.access_key_id, cred.secret_access_key
            );
            eprintln!("added to {place}; it signs as {}", cred.principal.arn);
        }
        PrincipalCommand::Remove {
            access_key_id,
            state,
            etcd,
        } => {
            edit_document(&etcd, &state, runtime, |file: &mut File| {
                Ok((true, p::remove_from(file, &access_key_id)?))
            })?;
            eprintln!("removed {access_key_id}");
        }
        PrincipalCommand::List { state, etcd } => {
            let (file, (), _) =
                edit_document(&etcd, &state, runtime, |_: &mut File| Ok((false, ())))?;
            for c in &file.credentials {
                println!(
                    "{}\t{}\t{}\t{}",
                    c.access_key_id,
                    c.principal.arn,
                    c.principal.org_id.as_deref().unwrap_or("-"),
                    c.principal.session_name.as_deref().unwrap_or("-")
                );
            }
        }
    }
    Ok(())
}

/// `latticed policy simulate`: a described request against policies.
#[derive(Args, Debug)]
pub struct Simulate {
    /// The service's auth policy (JSON file). Give at least one of
    /// --policy and --network-policy.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The service network's auth policy (JSON file).
    #[arg(long)]
    network_policy: Option<PathBuf>,
    /// Caller ARN; anonymous when left out.
    #[arg(long)]
    principal: Option<String>,
    /// Caller's organization id.
    #[arg(long)]
    org_id: Option<String>,
    /// Caller's session name.
    #[arg(long)]
    session_name: Option<String>,
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// Request path, with an optional ?query.
    #[arg(long, default_value = "/")]
    path: String,
    /// A request header, NAME:VALUE. Repeatable.
    #[arg(long = "header", value_name = "NAME:VALUE")]
    headers: Vec<String>,
    /// Client VPC (namespace name).
    #[arg(long, default_value = "vpc-client")]
    source_vpc: String,
    /// Account owning the client VPC.
    #[arg(long, default_value = "111122223333")]
    source_vpc_owner: String,
    /// Listener port.
    #[arg(long, default_value_t = 443)]
    port: u16,
    /// Client address.
    #[arg(long, default_value = "10.0.0.10")]
    source_ip: std::net::IpAddr,
    /// The request came over plain HTTP.
    #[arg(long)]
    insecure: bool,
    /// Service ARN.
    #[arg(
        long,
        default_value = "arn:aws:vpc-lattice:us-east-1:111122223333:service/svc-0123456789abcdef0"
    )]
    service_arn: String,
    /// Service network ARN.
    #[arg(
        long,
        default_value = "arn:aws:vpc-lattice:us-east-1:111122223333:servicenetwork/sn-0123456789abcdef0"
    )]
    service_network_arn: String,
}

fn read_policy(path: &PathBuf, flag: &str) -> anyhow::Result<Policy> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("{flag} {}", path.display()))?;
    Policy::parse(&text).map_err(|e| anyhow::anyhow!("{flag} {}: {e}", path.display()))
}

/// Prints the decision; returns whether the request is allowed.
#[expect(clippy::print_stdout, reason = "the command's answer")]
pub fn simulate(s: Simulate) -> anyhow::Result<bool> {
    if s.policy.is_none() && s.network_policy.is_none() {
        anyhow::bail!("give --policy (the service's) and/or --network-policy");
    }
    let network = s
        .network_policy
        .as_ref()
        .map(|p| read_policy(p, "--network-policy"))
        .transpose()?;
    let service = s
        .policy
        .as_ref()
        .map(|p| read_policy(p, "--policy"))
        .transpose()?;
    let principal = s.principal.map(|arn| Principal {
        arn,
        org_id: s.org_id,
        session_name: s.session_name,
    });
    if let Some(p) = &principal {
        p.validate()
            .map_err(|e| anyhow::anyhow!("--principal: {e}"))?;
    }
    let headers = parse_headers(&s.headers)?;
    let (raw_path, query) = s.path.split_once('?').unwrap_or((&s.path, ""));
    // The data path matches policies against the normalised path, and
    // refuses (400) what cannot be normalised: the simulation does the same.
    let path = latticed_proxy::head::normalize_path(raw_path)
        .map_err(|e| anyhow::anyhow!("--path {:?}: {e} (the data path answers 400)", s.path))?;
    let path: &str = &path;
    let resource = format!("{}{path}", s.service_arn);
    let ctx = Context {
        principal: principal.as_ref(),
        resource: &resource,
        method: &s.method,
        path,
        headers: &headers,
        query,
        source_vpc: &s.source_vpc,
        source_vpc_owner: &s.source_vpc_owner,
        service_network_arn: &s.service_network_arn,
        service_arn: &s.service_arn,
        port: s.port,
        source_ip: s.source_ip,
        secure: !s.insecure,
    };
    println!(
        "request: {} {}{} as {} from {} (resource {resource})",
        s.method,
        path,
        if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        },
        principal.as_ref().map_or("anonymous", |p| p.arn.as_str()),
        s.source_vpc
    );
    let levels = [("service network", &network), ("service", &service)]
        .into_iter()
        .filter_map(|(name, policy)| {
            let p = policy.as_ref()?;
            println!("{name} policy: {}", explain(p.evaluate(&ctx)));
            Some(Level {
                name,
                policy: Some(p),
            })
        })
        .collect::<Vec<_>>();
    match authz::evaluate(&levels, &ctx) {
        Verdict::Allow => {
            println!("decision: ALLOW");
            Ok(true)
        }
        Verdict::Deny(reason) => {
            println!("decision: DENY ({})", reason.log_reason());
            Ok(false)
        }
    }
}

/// `--header NAME:VALUE` flags as a header map.
fn parse_headers(flags: &[String]) -> anyhow::Result<http::HeaderMap> {
    let mut headers = http::HeaderMap::new();
    for h in flags {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("--header {h:?}: expected NAME:VALUE"))?;
        let name = http::HeaderName::from_bytes(k.trim().as_bytes())
            .map_err(|_| anyhow::anyhow!("--header {h:?}: {k:?} is not a header name"))?;
        let value = http::HeaderValue::from_str(v.trim())
            .map_err(|_| anyhow::anyhow!("--header {h:?}: the value is not a header value"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// One policy's decision, as `simulate` prints it.
fn explain(d: Decision) -> String {
    match d {
        Decision::Allow(sid) => format!("allows (statement {sid})"),
        Decision::Deny(sid) => format!("denies explicitly (statement {sid})"),
        Decision::NoMatch => "has no statement that matches: does not allow".into(),
    }
}
