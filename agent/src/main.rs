//! `latticed`: the privileged per-host daemon of latticed.
//!
//! - `control/`: the Lattice resource model and its validation.
//! - `kernel/`: routes (rtnetlink), eBPF steering (aya), bpffs pins.
//! - `daemon.rs`: applies plans, reloads, watches namespaces, cleans up.
//! - the data path itself is the `latticed-proxy` crate.

mod accounts;
mod cli;
mod compile;
mod control;
mod daemon;
mod dns;
mod kernel;
mod lookup;
mod metrics;
mod principals;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use daemon::{Daemon, Paths};

#[derive(Parser, Debug)]
#[command(
    name = "latticed",
    version,
    about = "Self-hosted VPC Lattice for Linux network namespaces"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug)]
struct PathArgs {
    /// Directory of named network namespaces (the VPCs).
    #[arg(long, default_value = "/run/netns", env = "LATTICED_NETNS_DIR")]
    netns_dir: PathBuf,
    /// Where programs, maps and links are pinned (on bpffs).
    #[arg(
        long,
        default_value = "/sys/fs/bpf/latticed",
        env = "LATTICED_BPFFS_ROOT"
    )]
    bpffs_root: PathBuf,
    /// Runtime state: the record of namespaces touched, for crash clean-up.
    #[arg(long, default_value = "/run/latticed", env = "LATTICED_RUN_DIR")]
    run_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
// Parsed once at start; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the daemon: steer service VIPs in associated namespaces to the proxy.
    ///
    /// Configuration comes from the VPC Lattice API (the default), or from a
    /// file given with --config (then the API is off).
    Run(Box<RunArgs>),
    /// Validate a configuration file and print the plan, without applying it.
    Check {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Directory of named network namespaces.
        #[arg(long, default_value = "/run/netns", env = "LATTICED_NETNS_DIR")]
        netns_dir: PathBuf,
    },
    /// Remove what a crashed latticed left behind (pins, routes), then exit.
    Cleanup {
        #[command(flatten)]
        paths: PathArgs,
    },
    /// Manage the credentials data-path callers sign with (SigV4,
    /// vpc-lattice-svcs).
    #[command(subcommand)]
    Principal(cli::PrincipalCommand),
    /// Manage the accounts besides the default one: each gets an admin key
    /// for the API and owns what it creates.
    #[command(subcommand)]
    Account(cli::AccountCommand),
    /// Auth policy tools.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Cluster mode: the tunnel CA and nodes' tunnel identities.
    #[command(subcommand)]
    Cluster(cli::cluster::ClusterCommand),
}

/// `latticed run`'s flags.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Configuration file (JSON, in the shapes of the VPC Lattice API);
    /// reloaded on SIGHUP. Without it, the API manages latticed.
    #[arg(long, short, env = "LATTICED_CONFIG", conflicts_with = "api_listen")]
    config: Option<PathBuf>,
    /// Address of the VPC Lattice API.
    #[arg(long, env = "LATTICED_API_LISTEN")]
    api_listen: Option<std::net::SocketAddr>,
    /// State store, admin credentials, the local CA (ca.pem is
    /// world-readable, ca.key root-only) and user certificates.
    #[arg(long, default_value = "/var/lib/latticed", env = "LATTICED_STATE_DIR")]
    state_dir: PathBuf,
    /// Where access logs are written (see README, Access logs).
    #[arg(long, default_value = "/var/log/latticed", env = "LATTICED_LOG_DIR")]
    log_dir: PathBuf,
    /// Inventory of instances and load balancers (JSON, see README);
    /// reread on SIGHUP. Default: STATE_DIR/inventory.json.
    #[arg(long, env = "LATTICED_INVENTORY")]
    inventory: Option<PathBuf>,
    /// Base URL of the Lambda Invoke API for LAMBDA targets, e.g.
    /// http://127.0.0.1:9001 (a local emulator).
    #[arg(long, env = "LATTICED_LAMBDA_ENDPOINT", value_parser = parse_http_url)]
    lambda_endpoint: Option<String>,
    /// Prometheus metrics address.
    #[arg(
        long,
        default_value = "127.0.0.1:9390",
        env = "LATTICED_METRICS_LISTEN"
    )]
    metrics_listen: std::net::SocketAddr,
    /// Seconds a client connection may sit idle between requests.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    idle_timeout: u64,
    /// Seconds a client has to send request headers (and finish TLS).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    header_timeout: u64,
    /// Seconds a client has to send a body the proxy holds whole
    /// (signed payloads of AWS_IAM services, function events).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    body_timeout: u64,
    /// MiB all bodies held whole may take at once, across every
    /// connection; a request that would exceed it gets 503.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(8..=65536))]
    body_memory_mib: u64,
    /// MiB of that the clients of one VPC (namespace) may hold at once,
    /// so that one tenant's bodies cannot take every other tenant's
    /// share; default a quarter of --body-memory-mib, at least 10 (the
    /// largest signed body).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=65536))]
    body_memory_per_vpc_mib: Option<u64>,
    /// Largest request head in bytes (431 beyond it).
    #[arg(long, default_value_t = 65536, value_parser = clap::value_parser!(u64).range(8192..=1048576))]
    max_header_bytes: u64,
    /// Region in ARNs.
    #[arg(long, default_value = "us-east-1", value_parser = parse_region)]
    region: String,
    /// The default account: the admin key's, in ARNs (12 digits). `latticed
    /// account add` reads the same variable to refuse it.
    #[arg(
        long,
        default_value = "111122223333",
        value_parser = parse_account,
        env = "LATTICED_ACCOUNT_ID"
    )]
    account_id: String,
    /// The default account's AWS Organizations id (o-...), if it is in one:
    /// shares to accounts of the same organisation need no invitation.
    #[arg(long, value_parser = parse_org, env = "LATTICED_ORGANIZATION_ID")]
    organization_id: Option<String>,
    /// Where domain verifications' TXT records are looked up (IP:PORT);
    /// default: the first nameserver of /etc/resolv.conf.
    #[arg(long, env = "LATTICED_DOMAIN_VERIFICATION_RESOLVER")]
    domain_verification_resolver: Option<std::net::SocketAddr>,
    /// Suffix of generated service DNS names ({name}-{id}.{label}.SUFFIX);
    /// default vpc-lattice-svcs.REGION.on.aws, as AWS names them.
    #[arg(long)]
    dns_suffix: Option<String>,
    /// Raise or lower a quota: NAME=VALUE (e.g. services=1000). Repeatable.
    #[arg(long = "quota", value_name = "NAME=VALUE")]
    quotas: Vec<String>,
    #[command(flatten)]
    paths: PathArgs,
    /// Seconds to wait for a connection to a target (then 503).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=300))]
    connect_timeout: u64,
    /// Seconds to wait for a target's response headers (then 504).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    request_timeout: u64,
    /// Data-path worker threads, each pinned to a CPU with its own
    /// listener per namespace and its own upstream pool; default one per
    /// CPU. The control plane (API, health checks, DNS) runs on one more
    /// thread.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    worker_threads: Option<u16>,
    #[command(flatten)]
    etcd: cli::EtcdArgs,
    /// Cluster mode: this node's name, unique in the cluster. The node
    /// hosts the namespaces in its --netns-dir and registers them in etcd.
    #[arg(long, env = "LATTICED_NODE_NAME")]
    node_name: Option<String>,
    /// Cluster mode: where other nodes' tunnels connect (mutual TLS with
    /// the identity `latticed cluster join` wrote).
    #[arg(long, default_value = "0.0.0.0:15008", env = "LATTICED_TUNNEL_LISTEN")]
    tunnel_listen: std::net::SocketAddr,
    /// Cluster mode: the address other nodes dial, published in etcd;
    /// default --tunnel-listen, or for a wildcard, this host's address
    /// toward the first etcd endpoint.
    #[arg(long, env = "LATTICED_TUNNEL_ADVERTISE")]
    tunnel_advertise: Option<std::net::SocketAddr>,
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Decide a described request against policies, naming the statement
    /// that decided. Exit status: 0 allowed, 3 denied, 1 bad input.
    Simulate(cli::Simulate),
}

fn parse_http_url(s: &str) -> Result<String, String> {
    match s.strip_prefix("http://") {
        Some(rest) if !rest.is_empty() && !rest.contains(['?', '#']) => {
            Ok(s.trim_end_matches('/').to_owned())
        }
        _ => Err(format!(
            "{s:?} must be an http:// base URL without query (the Invoke API path is appended)"
        )),
    }
}

fn parse_region(s: &str) -> Result<String, String> {
    let ok = (2..=30).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} is not a region name like us-east-1"))
    }
}

fn parse_account(s: &str) -> Result<String, String> {
    if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} is not a 12-digit account id"))
    }
}

fn parse_org(s: &str) -> Result<String, String> {
    if crate::accounts::is_org_id(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not an organisation id (o- followed by 10-32 of a-z, 0-9)"
        ))
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Under systemd, stderr goes to journald, which stamps time itself and
    // keeps no colours; elsewhere a person reads the terminal.
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!journald && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if journald {
        builder.without_time().with_target(false).init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    latticed_proxy::memory::return_large_blocks_to_the_kernel();
    if let Err(e) = latticed_proxy::workers::raise_fd_limit() {
        tracing::debug!("could not raise the open-file limit: {e}");
    }
    // The control plane's runtime: the data path runs on its own pinned
    // worker threads (latticed_proxy::workers).
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(1);
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match cli.command {
        Command::Run(args) => run(*args, &runtime)?,
        Command::Check { config, netns_dir } => {
            let (_, plan) = control::load(&config, &netns_dir)?;
            for svc in plan.services.values() {
                let ports: Vec<u16> = svc.listeners.iter().map(|l| l.port).collect();
                tracing::info!(service = %svc.name, vip = %svc.vip, ?ports, reachable_from = ?svc.reachable_from, "ok");
            }
            tracing::info!(path = %config.display(), "configuration is valid");
        }
        Command::Principal(cmd) => cli::principal(cmd, &runtime)?,
        Command::Account(cmd) => cli::account(cmd, &runtime)?,
        Command::Cluster(cmd) => cli::cluster::cluster(cmd, &runtime)?,
        Command::Policy(PolicyCommand::Simulate(s)) => {
            if !cli::simulate(s)? {
                std::process::exit(3);
            }
        }
        Command::Cleanup { paths } => {
            let paths = Paths {
                config: None,
                netns_dir: paths.netns_dir,
                bpffs_root: paths.bpffs_root,
                run_dir: paths.run_dir,
                ..Paths::default()
            };
            runtime.block_on(daemon::cleanup_leftovers(&paths))?;
            tracing::info!("clean-up done");
        }
    }
    Ok(())
}

/// `latticed run`: the flags checked and turned into the daemon's options,
/// then the daemon until SIGTERM.
fn run(args: RunArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let proxy = args.proxy_config()?;
    let RunArgs {
        config,
        api_listen,
        state_dir,
        region,
        account_id,
        organization_id,
        domain_verification_resolver,
        dns_suffix,
        quotas,
        paths,
        log_dir,
        inventory,
        metrics_listen,
        etcd,
        node_name,
        tunnel_listen,
        tunnel_advertise,
        ..
    } = args;
    let cluster = etcd.options(node_name.as_deref())?;
    if cluster.is_some() && config.is_some() {
        anyhow::bail!("--etcd-endpoints: cluster mode is for the API; it does not take --config");
    }
    if cluster.is_none() && node_name.is_some() {
        anyhow::bail!("--node-name: only with --etcd-endpoints");
    }
    let mut quota = control::api::handlers::Quotas::default();
    for q in &quotas {
        quota.set(q).map_err(|e| anyhow::anyhow!("--quota {e}"))?;
    }
    let api = config.is_none().then(|| daemon::ApiOptions {
        listen: api_listen.unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 7390))),
        quotas: quota,
        organization: organization_id,
        verification_resolver: domain_verification_resolver.or_else(crate::lookup::host_resolver),
        cluster,
        tunnel: daemon::TunnelOptions {
            listen: tunnel_listen,
            advertise: tunnel_advertise,
        },
    });
    let naming = control::Naming {
        dns_suffix: dns_suffix.unwrap_or_else(|| format!("vpc-lattice-svcs.{region}.on.aws")),
        region,
        account: account_id,
    };
    let paths = Paths {
        config,
        netns_dir: paths.netns_dir,
        bpffs_root: paths.bpffs_root,
        run_dir: paths.run_dir,
        inventory: inventory.unwrap_or_else(|| state_dir.join("inventory.json")),
        state_dir,
        log_dir,
    };
    tracing::info!(?paths, ?naming, %metrics_listen, version = env!("CARGO_PKG_VERSION"), "starting");
    runtime.block_on(async {
        let options = daemon::Options {
            naming,
            metrics_listen: Some(metrics_listen),
            proxy,
            api,
        };
        let daemon = Daemon::start(paths, options).await?;
        daemon.run().await
    })?;
    Ok(())
}

impl RunArgs {
    /// The data path's tunables from the flags.
    fn proxy_config(&self) -> anyhow::Result<latticed_proxy::ProxyConfig> {
        let total = self.body_memory_mib;
        // A share must take the largest body held whole (10 MiB) or such
        // bodies would never be read.
        let per_vpc = self
            .body_memory_per_vpc_mib
            .unwrap_or((total / 4).max(10).min(total));
        if per_vpc > total {
            anyhow::bail!(
                "--body-memory-per-vpc-mib: {per_vpc} is more than --body-memory-mib ({total})"
            );
        }
        let secs = std::time::Duration::from_secs;
        let defaults = latticed_proxy::ProxyConfig::default();
        Ok(latticed_proxy::ProxyConfig {
            connect_timeout: secs(self.connect_timeout),
            request_timeout: secs(self.request_timeout),
            idle_timeout: secs(self.idle_timeout),
            header_read_timeout: secs(self.header_timeout),
            body_read_timeout: secs(self.body_timeout),
            body_memory: usize::try_from(total << 20).unwrap_or(64 << 20),
            body_memory_per_vpc: usize::try_from(per_vpc << 20).unwrap_or(16 << 20),
            max_header_bytes: usize::try_from(self.max_header_bytes).unwrap_or(65536),
            lambda_endpoint: self.lambda_endpoint.clone(),
            region: self.region.clone(),
            workers: self.worker_threads.map_or(defaults.workers, usize::from),
            ..defaults
        })
    }
}
