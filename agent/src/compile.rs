//! Compiles planned services and target groups into the data path's routes:
//! ARNs, certificates, access log files, health checkers, counters and
//! inventory lookups all get attached here, on the control plane, so that
//! the request path only reads.

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
};

use latticed_proxy::{
    access_log::Destination,
    routing::{
        Action, Forward, GroupKind, HeaderMatch, HttpMatch, LambdaTarget, ListenerRoute,
        NetworkRoute, PathMatch, Rule, Target, TargetGroupRoute,
    },
    tls::{self, Authority},
    Dataplane, NsId,
};
use serde::Deserialize;

mod resources;

use crate::control::{
    model::TargetGroupType,
    plan::{
        PlannedAction, PlannedKind, PlannedLog, PlannedNetwork, PlannedPolicy, PlannedService,
        PlannedTargetGroup,
    },
    security_groups::SecurityGroup,
};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The certificate authority could not be loaded or created.
    #[error(transparent)]
    Tls(#[from] tls::Error),
    /// The inventory file is unreadable or malformed.
    #[error("inventory {path}: {reason}")]
    Inventory {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// An AWS_IAM level: the policy the plan parsed, if one is set.
fn compile_auth(
    auth: Option<&Option<PlannedPolicy>>,
) -> Option<Option<Arc<latticed_proxy::authz::Policy>>> {
    auth.map(|policy| policy.as_ref().map(|p| Arc::clone(&p.policy)))
}

/// Where instances and load balancers are: the operator's inventory file
/// (`latticed run --inventory`), reread on SIGHUP.
///
/// ```json
/// {
///   "instances": { "i-0123456789abcdef0": { "vpc": "vpc-a", "address": "10.0.16.10",
///                                            "securityGroups": ["sg-0a1b2c3d4e5f60718"] } },
///   "loadBalancers": {
///     "arn:aws:elasticloadbalancing:us-east-1:111122223333:loadbalancer/app/web/50dc6c495c0c9188":
///       { "vpc": "vpc-a", "address": "10.0.16.20" }
///   },
///   "securityGroups": {
///     "sg-0123456789abcdef0": { "ingress": [
///       { "protocol": "tcp", "fromPort": 443, "toPort": 443, "cidr": "10.0.1.0/24" },
///       { "protocol": "-1", "sourceGroup": "sg-0a1b2c3d4e5f60718" } ] }
///   }
/// }
/// ```
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Inventory {
    /// Instance id -> where it is.
    #[serde(default)]
    pub instances: HashMap<String, Placement>,
    /// Load balancer ARN -> where it is.
    #[serde(default)]
    pub load_balancers: HashMap<String, Placement>,
    /// Resource ARN (a database, a cache: what an `arnResource` names) ->
    /// where it is.
    #[serde(default)]
    pub resources: HashMap<String, Placement>,
    /// Security group id -> its ingress rules.
    #[serde(default)]
    pub security_groups: BTreeMap<String, SecurityGroup>,
    /// VPC (namespace) -> the account that owns it; latticed's default
    /// account owns the others.
    #[serde(default)]
    pub vpcs: BTreeMap<String, String>,
}

/// Where one instance or load balancer is.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Placement {
    /// Its VPC: a network namespace name.
    pub vpc: String,
    /// Its address inside that namespace (either family).
    pub address: IpAddr,
    /// Security groups it is a member of (rules may name them as sources).
    #[serde(default)]
    pub security_groups: Vec<String>,
}

impl Inventory {
    /// Reads `path`; a missing file is an empty inventory.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(Error::Inventory {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })
            }
        };
        let invalid = |reason: String| Error::Inventory {
            path: path.to_owned(),
            reason,
        };
        let de = &mut serde_json::Deserializer::from_str(&text);
        let inventory: Self =
            crate::control::deserialize_at(de).map_err(|e| invalid(e.to_string()))?;
        for (id, group) in &inventory.security_groups {
            crate::control::security_groups::check(id, group).map_err(invalid)?;
        }
        if let Some((vpc, owner)) = inventory
            .vpcs
            .iter()
            .find(|(_, owner)| !crate::accounts::is_account_id(owner))
        {
            return Err(invalid(format!(
                "vpcs.{vpc}: {owner:?} is not an account id (12 digits)"
            )));
        }
        Ok(inventory)
    }

    /// Each instance's VPC, groups and address, for security group rules
    /// that name a group as their source.
    pub fn members(&self) -> impl Iterator<Item = (&str, &[String], std::net::IpAddr)> {
        self.instances
            .values()
            .map(|p| (p.vpc.as_str(), p.security_groups.as_slice(), p.address))
    }
}

/// Settings and caches of the compiler.
pub struct Compiler {
    dp: Arc<Dataplane>,
    ca: Authority,
    /// Issued or loaded certificates by (names, certificate id).
    certs: HashMap<(Vec<String>, Option<String>), Arc<rustls::ServerConfig>>,
    state_dir: PathBuf,
    log_dir: PathBuf,
    region: String,
    account: String,
    /// Instance and load balancer placements.
    pub inventory: Inventory,
    /// Health of targets in VPCs other nodes host, by (group, address):
    /// their checks run there, and the daemon sets these from what those
    /// nodes publish (see `daemon::tunnel`).
    pub remote_health: std::sync::Mutex<RemoteHealth>,
    /// Instances and load balancers of VPCs other nodes host, by id: each
    /// node publishes those of its inventory (cluster mode).
    pub remote_placements: BTreeMap<String, Placement>,
}

/// Health of remote targets by (target group, address).
pub type RemoteHealth = HashMap<(String, SocketAddr), Arc<latticed_proxy::health::TargetHealth>>;

impl std::fmt::Debug for Compiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiler").finish_non_exhaustive()
    }
}

impl Compiler {
    /// A compiler for `dp`; loads or creates the CA in `state_dir`.
    pub fn new(
        dp: Arc<Dataplane>,
        state_dir: &Path,
        log_dir: &Path,
        region: &str,
        account: &str,
        inventory: Inventory,
    ) -> Result<Self, Error> {
        let ca = Authority::load_or_create(state_dir)?;
        Ok(Self {
            dp,
            ca,
            certs: HashMap::new(),
            state_dir: state_dir.to_owned(),
            log_dir: log_dir.to_owned(),
            region: region.to_owned(),
            account: account.to_owned(),
            inventory,
            remote_health: std::sync::Mutex::default(),
            remote_placements: BTreeMap::new(),
        })
    }

    fn arn(&self, kind: &str, name: &str, given: Option<&String>) -> Arc<str> {
        given.map_or_else(
            || {
                format!(
                    "arn:aws:vpc-lattice:{}:{}:{kind}/{name}",
                    self.region, self.account
                )
                .into()
            },
            |a| a.as_str().into(),
        )
    }

    /// The ARN of the VPC a namespace plays, in its owner's account (the
    /// inventory's `vpcs`, else the default account): what
    /// `vpc-lattice-svcs:SourceVpcOwnerAccount` and the targets'
    /// `x-amzn-lattice-network` see.
    pub fn vpc_arn(&self, ns: &str) -> String {
        let owner = self
            .inventory
            .vpcs
            .get(ns)
            .map_or(self.account.as_str(), String::as_str);
        format!("arn:aws:ec2:{}:{owner}:vpc/{ns}", self.region)
    }

    fn destinations(&self, logs: &[PlannedLog]) -> Vec<Arc<Destination>> {
        logs.iter()
            .map(|log| {
                Arc::new(Destination {
                    arn: log.arn.clone(),
                    path: self.log_dir.join(&log.file),
                })
            })
            .collect()
    }

    /// The network as seen from client namespace `ns`.
    pub fn network_route(&self, net: &PlannedNetwork, ns: &str) -> Arc<NetworkRoute> {
        Arc::new(NetworkRoute {
            arn: self.arn("servicenetwork", &net.name, net.arn.as_ref()),
            vpc_id: ns.into(),
            vpc_arn: self.vpc_arn(ns).into(),
            logs: self.destinations(&net.logs),
            resource_logs: self.destinations(&net.resource_logs),
            auth: compile_auth(net.auth.as_ref()),
        })
    }

    /// The data path's view of a target group. Targets whose namespace is
    /// not managed, or instances the inventory does not place, are left
    /// out (503 rather than a hang) and logged.
    pub fn group_route(
        &self,
        tg: &PlannedTargetGroup,
        ids: &HashMap<&str, NsId>,
    ) -> Arc<TargetGroupRoute> {
        let arn = self.arn("targetgroup", &tg.name, tg.arn.as_ref());
        let kind = match &tg.kind {
            PlannedKind::Lambda { v2 } => GroupKind::Lambda(LambdaTarget {
                function: tg
                    .targets
                    .first()
                    .map_or_else(|| "".into(), |t| t.id.as_str().into()),
                event_v2: *v2,
            }),
            PlannedKind::Hosts {
                type_,
                https,
                tcp,
                version,
            } => {
                let id = ids.get(tg.namespace.as_str()).copied();
                let targets = match id {
                    None => Vec::new(),
                    Some(ns) => tg
                        .targets
                        .iter()
                        .filter_map(|t| {
                            let ip = self.resolve(*type_, &t.id, t.ip, &tg.namespace, &tg.name)?;
                            let addr = SocketAddr::new(ip, t.port);
                            let mut target = Target::new(ns, addr);
                            target.id = t.id.as_str().into();
                            if ns & latticed_proxy::upstream::REMOTE != 0 {
                                // Checked on the node hosting the VPC.
                                target.health = self.remote_health(&tg.name, addr);
                            } else if let Some(check) = &tg.health {
                                target.health = self.dp.health.ensure(ns, addr, check);
                            }
                            Some(target)
                        })
                        .collect(),
                };
                GroupKind::Hosts {
                    ns: id.unwrap_or(0),
                    https: *https,
                    tcp: *tcp,
                    version: *version,
                    targets,
                }
            }
        };
        Arc::new(
            TargetGroupRoute::new(tg.name.as_str().into(), arn, kind)
                .with_metrics(self.dp.metrics.group(&tg.name)),
        )
    }

    /// The shared health of remote target `addr` of group `group`.
    fn remote_health(
        &self,
        group: &str,
        addr: SocketAddr,
    ) -> Arc<latticed_proxy::health::TargetHealth> {
        let mut all = self
            .remote_health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(all.entry((group.to_owned(), addr)).or_default())
    }

    fn resolve(
        &self,
        type_: TargetGroupType,
        id: &str,
        ip: Option<IpAddr>,
        vpc: &str,
        group: &str,
    ) -> Option<IpAddr> {
        let table = match type_ {
            TargetGroupType::Ip | TargetGroupType::Lambda => return ip,
            TargetGroupType::Instance => &self.inventory.instances,
            TargetGroupType::Alb => &self.inventory.load_balancers,
        };
        match table.get(id).or_else(|| self.remote_placements.get(id)) {
            Some(p) if p.vpc == vpc => Some(p.address),
            Some(p) => {
                tracing::warn!(target_group = group, target = id, inventory_vpc = %p.vpc, group_vpc = vpc, "the inventory places this target in another VPC; skipped");
                None
            }
            None => {
                tracing::warn!(
                    target_group = group,
                    target = id,
                    "the inventory does not list this target; skipped"
                );
                None
            }
        }
    }

    /// The TLS configuration for a service's HTTPS listeners: its own
    /// certificate if it names one, else one issued by the CA for its names.
    fn server_config(&mut self, svc: &PlannedService) -> Option<Arc<rustls::ServerConfig>> {
        let key = (svc.hosts.clone(), svc.certificate.clone());
        if let Some(c) = self.certs.get(&key) {
            return Some(Arc::clone(c));
        }
        let cert = match &svc.certificate {
            Some(id) => tls::load_certificate(&self.state_dir.join("certificates").join(id)),
            None => {
                let mut names = svc.hosts.clone();
                if names.is_empty() {
                    names.push(format!("{}.latticed.internal", svc.name));
                }
                self.ca.issue(&names)
            }
        };
        let config = cert
            .map_err(|e| e.to_string())
            .and_then(|c| tls::server_config(c).map_err(|e| e.to_string()));
        match config {
            Ok(c) => {
                tracing::info!(service = %svc.name, names = ?svc.hosts, certificate = ?svc.certificate, "TLS certificate ready");
                self.certs.insert(key, Arc::clone(&c));
                Some(c)
            }
            Err(e) => {
                tracing::error!(service = %svc.name, error = %e, "no TLS certificate; its HTTPS listeners refuse handshakes");
                None
            }
        }
    }

    /// Forgets certificates of names no service uses any more.
    pub fn retain_certs(&mut self, services: &[&PlannedService]) {
        self.certs.retain(|(hosts, cert), _| {
            services
                .iter()
                .any(|s| &s.hosts == hosts && &s.certificate == cert)
        });
    }

    /// The data path's view of a service's listeners, by port.
    pub fn listener_routes(
        &mut self,
        svc: &PlannedService,
        groups: &HashMap<String, Arc<TargetGroupRoute>>,
    ) -> Vec<(u16, Arc<ListenerRoute>)> {
        let action = |a: &PlannedAction| match a {
            PlannedAction::Fixed(code) => Action::FixedResponse(
                http::StatusCode::from_u16(*code)
                    .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR),
            ),
            PlannedAction::Forward(v) => {
                Action::Forward(Forward::new(v.iter().filter_map(|(w, name)| {
                    groups.get(name.as_str()).map(|g| (*w, Arc::clone(g)))
                })))
            }
        };
        let tls = svc
            .listeners
            .iter()
            .any(|l| l.https)
            .then(|| self.server_config(svc))
            .flatten();
        let service_arn = self.arn("service", &svc.name, svc.arn.as_ref());
        let logs = self.destinations(&svc.logs);
        let metrics = self.dp.metrics.service(&svc.name);
        let auth = compile_auth(svc.auth.as_ref());
        svc.listeners
            .iter()
            .map(|l| {
                let rules = l
                    .rules
                    .iter()
                    .map(|r| Rule {
                        name: r.name.as_str().into(),
                        priority: r.priority,
                        matcher: HttpMatch {
                            method: r.method.clone(),
                            path: r.path.as_ref().map(|(k, v, cs)| PathMatch {
                                kind: *k,
                                value: v.clone(),
                                case_sensitive: *cs,
                            }),
                            headers: r
                                .headers
                                .iter()
                                .map(|(name, k, v, cs)| HeaderMatch {
                                    name: name.clone(),
                                    kind: *k,
                                    value: v.clone(),
                                    case_sensitive: *cs,
                                })
                                .collect(),
                        },
                        action: action(&r.action),
                    })
                    .collect();
                let route = Arc::new(ListenerRoute {
                    service: svc.name.as_str().into(),
                    service_arn: Arc::clone(&service_arn),
                    listener: l.name.as_str().into(),
                    // An HTTPS listener without a certificate has a config
                    // of `None` and so refuses handshakes (logged above).
                    https: l.https,
                    passthrough: l.passthrough,
                    tls: if l.https { tls.clone() } else { None },
                    logs: logs.clone(),
                    auth: auth.clone(),
                    metrics: Arc::clone(&metrics),
                    rules,
                    default_action: action(&l.default_action),
                });
                (l.port, route)
            })
            .collect()
    }
}
