//! Validation of a [`Config`] and its compilation into a [`Plan`]: the one
//! place where outside input is checked. Every problem is reported with the
//! path of the field (`services[0].listeners[1].port`) and the reason, all at
//! once; a config with any problem yields no plan, so nothing is half-applied.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4},
    path::Path,
    sync::Arc,
};

use latticed_common::addresses;

use super::model::{
    Config, HeaderMatchType, ListenerProtocol, RuleAction, TargetGroupProtocol, TargetGroupType,
};

/// First VIP handed out to services (see `latticed_common::addresses`).
pub const VIP_FIRST: Ipv4Addr = Ipv4Addr::from_bits(addresses::VIP_FIRST);
/// Last VIP; past it come the source pool and the resolver.
pub const VIP_LAST: Ipv4Addr = Ipv4Addr::from_bits(addresses::VIP_LAST);

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `services[0].vip`.
    pub field: String,
    /// Why it is refused.
    pub reason: String,
}

/// Every problem found in a config.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub struct ValidationError(pub Vec<FieldError>);

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration:")?;
        for e in &self.0 {
            write!(f, "\n  {}: {}", e.field, e.reason)?;
        }
        Ok(())
    }
}

/// What the data path must look like.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Services by name. Shared, so a plan is cheap to copy and one service
    /// can be replaced without touching the others.
    pub services: BTreeMap<Arc<str>, Arc<PlannedService>>,
    /// Target groups by name (actions refer to these names).
    pub target_groups: BTreeMap<Arc<str>, Arc<PlannedTargetGroup>>,
    /// Resources (SINGLE, CHILD and ARN configurations) by name.
    pub resources: BTreeMap<Arc<str>, Arc<PlannedResource>>,
    /// VPC associations per (existing) namespace.
    associated: BTreeMap<String, u32>,
    /// Per client namespace, how many services steer each VIP:port there.
    steered: BTreeMap<String, BTreeMap<SocketAddrV4, u32>>,
    /// Target groups per (existing) namespace.
    targets_in: BTreeMap<String, u32>,
    /// Services per VIP:port, to rebuild a shared VIP's routes.
    by_vip: BTreeMap<SocketAddrV4, BTreeSet<Arc<str>>>,
}

use super::{
    count,
    security_groups::{Admission, Admit},
};

impl Plan {
    /// Every namespace the plan touches.
    pub fn namespaces(&self) -> BTreeSet<&str> {
        self.associated
            .keys()
            .chain(self.steered.keys())
            .chain(self.targets_in.keys())
            .map(String::as_str)
            .chain(self.resources.values().map(|r| r.gateway_ns.as_str()))
            .collect()
    }

    /// Client namespaces and the VIP:ports steered in each.
    pub fn client_namespaces(&self) -> BTreeMap<&str, BTreeSet<SocketAddrV4>> {
        let mut out: BTreeMap<&str, BTreeSet<SocketAddrV4>> = self
            .associated
            .keys()
            .map(|n| (n.as_str(), BTreeSet::new()))
            .collect();
        for (ns, vips) in &self.steered {
            out.entry(ns).or_default().extend(vips.keys().copied());
        }
        out
    }

    /// Who may connect to each VIP:port steered in namespace `ns`: everyone
    /// if some service there is reached through an association without
    /// security groups, else the members of the union of the groups (a
    /// VIP:port shared by services is one socket to the kernel).
    pub fn admission(&self, ns: &str) -> Admission {
        let mut out = BTreeMap::new();
        for at in self.steered.get(ns).into_iter().flat_map(BTreeMap::keys) {
            let mut admit: Admit = Some(BTreeSet::new());
            for svc in self.services_at(*at) {
                if !svc.reachable_from.contains_key(ns) {
                    continue;
                }
                match (svc.security_groups.get(ns), admit.as_mut()) {
                    (Some(groups), Some(union)) => union.extend(groups.iter().cloned()),
                    _ => admit = None,
                }
            }
            // Each VIP's IPv6 twin is the same listener for IPv6 clients.
            let twin = std::net::Ipv6Addr::from(addresses::v6(u32::from(*at.ip())));
            out.insert(SocketAddr::new(twin.into(), at.port()), admit.clone());
            out.insert(SocketAddr::V4(*at), admit);
        }
        let mut ranges = BTreeMap::new();
        for r in self.resources.values() {
            if !r.reachable_from.contains_key(ns) {
                continue;
            }
            let admit: Admit = r.security_groups.get(ns).cloned();
            let twin = std::net::Ipv6Addr::from(addresses::v6(u32::from(r.vip)));
            ranges.insert(IpAddr::V6(twin), (r.ports.clone(), admit.clone()));
            ranges.insert(IpAddr::V4(r.vip), (r.ports.clone(), admit));
        }
        Admission { ports: out, ranges }
    }

    /// Replaces every resource.
    pub fn set_resources(&mut self, resources: BTreeMap<Arc<str>, Arc<PlannedResource>>) {
        self.resources = resources;
    }

    /// Whether `ns` is a client namespace.
    pub fn is_client(&self, ns: &str) -> bool {
        self.associated.contains_key(ns) || self.steered.contains_key(ns)
    }

    /// Names of the services on a VIP:port.
    pub fn services_at(&self, at: SocketAddrV4) -> impl Iterator<Item = &Arc<PlannedService>> {
        self.by_vip
            .get(&at)
            .into_iter()
            .flatten()
            .filter_map(|n| self.services.get(&**n))
    }

    /// Replaces (or removes) one service, keeping the counts in step.
    pub fn set_service(&mut self, name: &str, new: Option<Arc<PlannedService>>) {
        let key: Arc<str> = name.into();
        let old = match &new {
            Some(svc) => self.services.insert(Arc::clone(&key), Arc::clone(svc)),
            None => self.services.remove(name),
        };
        for (svc, add) in old
            .iter()
            .map(|s| (s, false))
            .chain(new.iter().map(|s| (s, true)))
        {
            for l in &svc.listeners {
                let at = SocketAddrV4::new(svc.vip, l.port);
                for ns in svc.reachable_from.keys() {
                    let per_ns = self.steered.entry(ns.clone()).or_default();
                    count(per_ns, at, add);
                    if per_ns.is_empty() {
                        self.steered.remove(ns);
                    }
                }
                let users = self.by_vip.entry(at).or_default();
                if add {
                    users.insert(Arc::clone(&key));
                } else {
                    users.remove(name);
                    if users.is_empty() {
                        self.by_vip.remove(&at);
                    }
                }
            }
        }
    }

    /// Replaces (or removes) one target group. `exists` says whether its
    /// namespace exists (only those are prepared).
    pub fn set_group(
        &mut self,
        name: &str,
        new: Option<Arc<PlannedTargetGroup>>,
        exists: impl Fn(&str) -> bool,
    ) {
        let old = match &new {
            Some(g) => self.target_groups.insert(name.into(), Arc::clone(g)),
            None => self.target_groups.remove(name),
        };
        let real = |g: &Arc<PlannedTargetGroup>| !g.namespace.is_empty() && exists(&g.namespace);
        if let Some(g) = old.filter(real) {
            count(&mut self.targets_in, g.namespace.clone(), false);
        }
        if let Some(g) = new.filter(real) {
            count(&mut self.targets_in, g.namespace.clone(), true);
        }
    }

    /// Counts a VPC association of namespace `ns` in or out.
    pub fn associate(&mut self, ns: &str, add: bool) {
        count(&mut self.associated, ns.to_owned(), add);
    }
}

/// A service.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedService {
    /// Name.
    pub name: String,
    /// VIP.
    pub vip: Ipv4Addr,
    /// Names clients reach it by (DNS name, custom domain name), lowercase;
    /// they tell services apart when several share a VIP:port.
    pub hosts: Vec<String>,
    /// Listeners.
    pub listeners: Vec<PlannedListener>,
    /// Namespaces it is reachable from, each through a service network
    /// (the first by name when several connect them).
    pub reachable_from: BTreeMap<String, Arc<PlannedNetwork>>,
    /// Per namespace it is reachable from, the security groups that admit
    /// clients there (the union over the VPC associations that reach it).
    /// A namespace one association without groups reaches is absent:
    /// everyone there is admitted.
    pub security_groups: BTreeMap<String, BTreeSet<String>>,
    /// ARN, when the API assigned one.
    pub arn: Option<String>,
    /// Id of a user-supplied certificate (`certificate/ID`), if any.
    pub certificate: Option<String>,
    /// Access log destinations of the service's own subscriptions.
    pub logs: Vec<PlannedLog>,
    /// Auth type AWS_IAM: `Some`, with the policy if one is set.
    pub auth: Option<Option<PlannedPolicy>>,
}

/// An access log destination as planned: its ARN, and the file it names
/// relative to `--log-dir` (read once, when planned).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedLog {
    /// The destination's ARN, as subscribed.
    pub arn: String,
    /// Its file, relative to the log directory.
    pub file: std::path::PathBuf,
}

/// An auth policy as planned: parsed once, when planned; compiling only
/// attaches it. Plans compare by the policy's text.
#[derive(Clone, Debug)]
pub struct PlannedPolicy {
    /// The policy as written.
    pub text: String,
    /// The policy as the data path evaluates it.
    pub policy: Arc<latticed_proxy::authz::Policy>,
}

impl PartialEq for PlannedPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for PlannedPolicy {}

/// A service network, as a service is reached through it.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedNetwork {
    /// Name.
    pub name: String,
    /// ARN, when the API assigned one.
    pub arn: Option<String>,
    /// Access log destinations of the network's subscriptions for service
    /// traffic.
    pub logs: Vec<PlannedLog>,
    /// Those of its subscriptions for resource traffic
    /// (`serviceNetworkLogType` RESOURCE).
    pub resource_logs: Vec<PlannedLog>,
    /// Auth type AWS_IAM: `Some`, with the policy if one is set.
    pub auth: Option<Option<PlannedPolicy>>,
}

/// A listener.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedListener {
    /// Name.
    pub name: String,
    /// TLS_PASSTHROUGH: TCP to TCP target groups, chosen by SNI.
    pub passthrough: bool,
    /// HTTPS (else HTTP).
    pub https: bool,
    /// Port.
    pub port: u16,
    /// Rules sorted by priority.
    pub rules: Vec<PlannedRule>,
    /// Default action.
    pub default_action: PlannedAction,
}

impl PlannedListener {
    /// The listener's protocol, as the API names it.
    pub fn protocol(&self) -> &'static str {
        match (self.passthrough, self.https) {
            (true, _) => "TLS_PASSTHROUGH",
            (false, true) => "HTTPS",
            (false, false) => "HTTP",
        }
    }
}

/// A rule.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedRule {
    /// Name.
    pub name: String,
    /// Priority.
    pub priority: u16,
    /// Method.
    pub method: Option<http::Method>,
    /// Path condition.
    pub path: Option<(MatchKind, String, bool)>,
    /// Header conditions: name, kind, value, case sensitive.
    pub headers: Vec<(http::HeaderName, MatchKind, String, bool)>,
    /// Action.
    pub action: PlannedAction,
}

pub use latticed_proxy::routing::MatchKind;

// An explicit path: the fuzz crate includes this file by path, where a
// plain `mod` would look beside it rather than under `plan/`.
#[path = "plan/resources.rs"]
mod resources;
pub use resources::{
    check_definition, is_domain_name, port_ranges, Family, PlannedResource, ResourceTarget,
};

/// An action.
#[derive(Clone, Debug, PartialEq)]
pub enum PlannedAction {
    /// (weight, target group name).
    Forward(Vec<(u32, String)>),
    /// Status code.
    Fixed(u16),
}

/// A target group.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedTargetGroup {
    /// Name.
    pub name: String,
    /// ARN, when the API assigned one.
    pub arn: Option<String>,
    /// Namespace of its targets (empty for LAMBDA groups).
    pub namespace: String,
    /// What the targets are.
    pub kind: PlannedKind,
    /// Targets.
    pub targets: Vec<PlannedTarget>,
    /// Health checks (`None` for LAMBDA groups).
    pub health: Option<latticed_proxy::health::CheckConfig>,
}

/// How a group's targets are reached.
#[derive(Clone, Debug, PartialEq)]
pub enum PlannedKind {
    /// IP addresses, instances or load balancers in `namespace`.
    Hosts {
        /// The target group type (instances and load balancers are resolved
        /// through the inventory).
        type_: TargetGroupType,
        /// HTTPS toward targets.
        https: bool,
        /// TCP (TLS passed through) toward targets.
        tcp: bool,
        /// Protocol version.
        version: latticed_proxy::routing::TargetVersion,
    },
    /// A function.
    Lambda {
        /// Event structure 2.0 (else 1.0).
        v2: bool,
    },
}

/// A registered target.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedTarget {
    /// Id as registered: address, instance id, ALB ARN or function ARN.
    pub id: String,
    /// Address, for IP targets (of the group's family).
    pub ip: Option<IpAddr>,
    /// Port (0 for functions).
    pub port: u16,
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            reason: reason.into(),
        });
    }

    /// Lattice resource names: lowercase letters, digits and hyphens; no
    /// hyphen first, last or doubled.
    /// `reserved` is the id prefix of the kind (`svc-`...), which the
    /// model's name patterns forbid so that a name never looks like an id.
    fn name(&mut self, field: &str, name: &str, max: usize, reserved: Option<&str>) {
        let len = name.chars().count();
        if let Some(prefix) = reserved.filter(|p| name.starts_with(p)) {
            self.add(
                field,
                format!("{name:?} may not start with {prefix:?} (that is how ids start)"),
            );
            return;
        }
        if !(3..=max).contains(&len) {
            self.add(
                field,
                format!("{name:?} must be 3 to {max} characters long"),
            );
        } else if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            || name.starts_with('-')
            || name.ends_with('-')
            || name.contains("--")
        {
            self.add(
                field,
                format!("{name:?} may contain only a-z, 0-9 and single hyphens, not first or last"),
            );
        }
    }
}

/// How namespaces that do not exist are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// A missing namespace is an error (new input is checked this way).
    Refuse,
    /// Missing namespaces are left out of the plan: what was accepted before
    /// keeps working for the namespaces that exist, and the rest is picked
    /// up when they appear.
    Skip,
}

/// Validates `config` against the model's rules and the host (namespaces
/// must exist under `netns_dir`), and compiles it.
pub fn plan(config: &Config, netns_dir: &Path) -> Result<Plan, ValidationError> {
    plan_with(config, netns_dir, Missing::Refuse)
}

/// [`plan`], choosing how missing namespaces are treated.
pub fn plan_with(
    config: &Config,
    netns_dir: &Path,
    missing: Missing,
) -> Result<Plan, ValidationError> {
    let mut errs = Errors::default();
    let exists = |ns: &str| netns_dir.join(ns).exists();
    let check_namespace = |errs: &mut Errors, field: &str, name: &str| {
        check_namespace(errs, field, name, netns_dir, missing);
    };
    let networks = index_networks(&mut errs, config);
    let (target_groups, groups) = plan_groups(&mut errs, config, &check_namespace);
    let (mut services, service_index) = plan_services(&mut errs, config, &groups);
    let configurations: BTreeSet<&str> = config
        .resource_configurations
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    let resources = Resources {
        services: &service_index,
        networks: &networks,
        configurations: &configurations,
    };
    let mut logs = attach_logs(&mut errs, config, &resources, &mut services);
    let network_policies = attach_policies(&mut errs, config, &resources, &mut services);
    let planned_networks = plan_networks(config, &mut logs, &network_policies);
    let planned_resources = resources::plan_resources(
        &mut errs,
        config,
        resources::Inputs {
            networks: &planned_networks,
            logs: &mut logs.configurations,
            service_vips: services.iter().map(|s| s.vip).collect(),
            check_namespace: &check_namespace,
            exists: &exists,
        },
    );
    check_shared_addresses(&mut errs, &services);
    let members = service_members(&mut errs, config, &resources);
    let reached = Reached {
        members: &members,
        networks: &planned_networks,
        check_namespace: &check_namespace,
        exists: &exists,
    };
    reached.mark(&mut errs, config, &mut services);
    if !errs.0.is_empty() {
        return Err(ValidationError(errs.0));
    }
    let mut plan = Plan::default();
    for a in &config.service_network_vpc_associations {
        if exists(&a.vpc_identifier) {
            plan.associate(&a.vpc_identifier, true);
        }
    }
    for svc in services {
        let name = svc.name.clone();
        plan.set_service(&name, Some(Arc::new(svc)));
    }
    for tg in target_groups {
        let name = tg.name.clone();
        plan.set_group(&name, Some(Arc::new(tg)), exists);
    }
    plan.set_resources(
        planned_resources
            .into_iter()
            .map(|r| (r.name.as_str().into(), Arc::new(r)))
            .collect(),
    );
    Ok(plan)
}

/// Service networks by name, each named once.
fn index_networks<'c>(errs: &mut Errors, config: &'c Config) -> HashMap<&'c str, usize> {
    let mut networks = HashMap::new();
    for (i, sn) in config.service_networks.iter().enumerate() {
        let f = format!("serviceNetworks[{i}].name");
        errs.name(&f, &sn.name, 63, None);
        if networks.insert(sn.name.as_str(), i).is_some() {
            errs.add(f, format!("service network {:?} is defined twice", sn.name));
        }
    }
    networks
}

/// Target groups, and what actions need to know of them.
fn plan_groups<'c>(
    errs: &mut Errors,
    config: &'c Config,
    check_namespace: &dyn Fn(&mut Errors, &str, &str),
) -> (Vec<PlannedTargetGroup>, Groups<'c>) {
    let mut index = HashMap::new();
    let mut target_groups = Vec::new();
    for (i, tg) in config.target_groups.iter().enumerate() {
        let base = format!("targetGroups[{i}]");
        errs.name(&format!("{base}.name"), &tg.name, 128, Some("tg-"));
        if index.insert(tg.name.as_str(), i).is_some() {
            errs.add(
                format!("{base}.name"),
                format!("target group {:?} is defined twice", tg.name),
            );
        }
        target_groups.push(plan_group(errs, &base, tg, check_namespace));
    }
    let tcp = config
        .target_groups
        .iter()
        .filter(|tg| {
            tg.config
                .as_ref()
                .and_then(|c| c.protocol)
                .is_some_and(|p| p == TargetGroupProtocol::Tcp)
        })
        .map(|tg| tg.name.as_str())
        .collect();
    (target_groups, Groups { index, tcp })
}

/// The service networks as services are reached through them, with their
/// logs and policies.
fn plan_networks<'c>(
    config: &'c Config,
    logs: &mut Logs<'c>,
    policies: &HashMap<&'c str, PlannedPolicy>,
) -> HashMap<&'c str, Arc<PlannedNetwork>> {
    config
        .service_networks
        .iter()
        .map(|sn| {
            (
                sn.name.as_str(),
                Arc::new(PlannedNetwork {
                    name: sn.name.clone(),
                    arn: sn.arn.clone(),
                    logs: logs.networks.remove(sn.name.as_str()).unwrap_or_default(),
                    resource_logs: logs
                        .network_resources
                        .remove(sn.name.as_str())
                        .unwrap_or_default(),
                    auth: (sn.auth_type == super::model::AuthType::AwsIam)
                        .then(|| policies.get(sn.name.as_str()).cloned()),
                }),
            )
        })
        .collect()
}

/// The target groups actions may name.
struct Groups<'c> {
    /// Index by name.
    index: HashMap<&'c str, usize>,
    /// Names of the TCP groups (they serve TLS_PASSTHROUGH listeners, and
    /// only those).
    tcp: BTreeSet<&'c str>,
}

/// What logs and policies may be attached to, by name.
struct Resources<'a, 'c> {
    services: &'a HashMap<&'c str, usize>,
    networks: &'a HashMap<&'c str, usize>,
    configurations: &'a BTreeSet<&'c str>,
}

/// Where a log or policy goes: service `i`, a network, a resource
/// configuration, or nowhere (an error naming `field`).
enum Owner<'c> {
    Service(usize),
    Network(&'c str),
    Configuration(&'c str),
    Unknown,
}

impl<'c> Resources<'_, 'c> {
    fn owner(&self, errs: &mut Errors, field: String, r: &'c str) -> Owner<'c> {
        if let Some(&i) = self.services.get(r) {
            Owner::Service(i)
        } else if self.networks.contains_key(r) {
            Owner::Network(r)
        } else if self.configurations.contains(r) {
            Owner::Configuration(r)
        } else {
            errs.add(
                field,
                format!("no service, service network or resource configuration {r:?}"),
            );
            Owner::Unknown
        }
    }
}

/// Access log destinations of networks (for service traffic, for resource
/// traffic) and of resource configurations, by name.
#[derive(Default)]
struct Logs<'c> {
    networks: HashMap<&'c str, Vec<PlannedLog>>,
    network_resources: HashMap<&'c str, Vec<PlannedLog>>,
    configurations: HashMap<&'c str, Vec<PlannedLog>>,
}

/// Services with their VIPs and listeners, and their index by name.
fn plan_services<'c>(
    errs: &mut Errors,
    config: &'c Config,
    groups: &Groups<'_>,
) -> (Vec<PlannedService>, HashMap<&'c str, usize>) {
    // Pinned VIPs may be shared: services on the same VIP:port are told
    // apart by name (`check_shared_addresses`).
    let mut vips_taken: HashMap<Ipv4Addr, &str> = HashMap::new();
    for (i, svc) in config.services.iter().enumerate() {
        if let Some(vip) = svc.vip {
            if !(VIP_FIRST..=VIP_LAST).contains(&vip) {
                errs.add(
                    format!("services[{i}].vip"),
                    format!("{vip} is outside the service VIP range {VIP_FIRST}-{VIP_LAST}"),
                );
            }
            vips_taken.insert(vip, &svc.name);
        }
    }
    let mut free_vips = (u32::from(VIP_FIRST)..=u32::from(VIP_LAST))
        .map(Ipv4Addr::from)
        .filter(|v| !vips_taken.contains_key(v));
    let mut services = Vec::new();
    let mut index = HashMap::new();
    for (i, svc) in config.services.iter().enumerate() {
        let base = format!("services[{i}]");
        errs.name(&format!("{base}.name"), &svc.name, 40, Some("svc-"));
        if index.insert(svc.name.as_str(), i).is_some() {
            errs.add(
                format!("{base}.name"),
                format!("service {:?} is defined twice", svc.name),
            );
        }
        let vip = svc.vip.or_else(|| free_vips.next()).unwrap_or_else(|| {
            errs.add(
                format!("{base}.vip"),
                "no free VIP left in the service range",
            );
            VIP_FIRST
        });
        services.push(plan_service(errs, &base, svc, vip, groups));
    }
    (services, index)
}

/// One service at `vip`: its listeners, names and certificate.
fn plan_service(
    errs: &mut Errors,
    base: &str,
    svc: &super::model::Service,
    vip: Ipv4Addr,
    groups: &Groups<'_>,
) -> PlannedService {
    let mut ports: HashMap<u16, &str> = HashMap::new();
    let mut listener_names = BTreeSet::new();
    let mut listeners = Vec::new();
    for (j, l) in svc.listeners.iter().enumerate() {
        let lb = format!("{base}.listeners[{j}]");
        if !listener_names.insert(&l.name) {
            errs.add(
                format!("{lb}.name"),
                format!("listener {:?} is defined twice in this service", l.name),
            );
        }
        let listener = plan_listener(errs, &lb, l, groups);
        if let Some(other) = ports.insert(listener.port, &l.name) {
            errs.add(
                format!("{lb}.port"),
                format!(
                    "port {} of {vip} is already taken by listener {other:?}",
                    listener.port
                ),
            );
        }
        listeners.push(listener);
    }
    let hosts: Vec<String> = svc
        .dns_name
        .iter()
        .chain(svc.custom_domain_name.iter())
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let certificate = svc
        .certificate_arn
        .as_ref()
        .and_then(|arn| certificate_id(errs, base, arn));
    PlannedService {
        name: svc.name.clone(),
        vip,
        hosts,
        listeners,
        reachable_from: BTreeMap::new(),
        security_groups: BTreeMap::new(),
        arn: svc.arn.clone(),
        certificate,
        logs: Vec::new(),
        auth: (svc.auth_type == super::model::AuthType::AwsIam).then_some(None),
    }
}

/// The id of an ACM certificate ARN, which names the user's certificate
/// files.
fn certificate_id(errs: &mut Errors, base: &str, arn: &str) -> Option<String> {
    let id = arn
        .strip_prefix("arn:")
        .filter(|_| arn.contains(":acm:"))
        .and_then(|_| arn.rsplit_once(":certificate/"))
        .map(|(_, id)| id)
        .filter(|id| {
            !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if id.is_none() {
        errs.add(
            format!("{base}.certificateArn"),
            format!("{arn:?} is not arn:aws:acm:REGION:ACCOUNT:certificate/ID with ID of a-z, 0-9 and -"),
        );
    }
    id.map(str::to_owned)
}

/// One listener (`lb` names it in errors) and its rules.
fn plan_listener(
    errs: &mut Errors,
    lb: &str,
    l: &super::model::Listener,
    groups: &Groups<'_>,
) -> PlannedListener {
    errs.name(&format!("{lb}.name"), &l.name, 63, Some("listener-"));
    let passthrough = l.protocol == ListenerProtocol::TlsPassthrough;
    if passthrough && !l.rules.is_empty() {
        errs.add(
            format!("{lb}.rules"),
            "TLS_PASSTHROUGH listeners route by their default action only",
        );
    }
    let default_port = if l.protocol == ListenerProtocol::Http {
        80
    } else {
        443
    };
    let port =
        check_port(errs, &format!("{lb}.port"), l.port, Some(default_port)).unwrap_or(default_port);
    let default_action = action(
        errs,
        &format!("{lb}.defaultAction"),
        &l.default_action,
        &groups.index,
    );
    let mut priorities = BTreeSet::new();
    let mut rule_names = BTreeSet::new();
    let mut rules = Vec::new();
    for (k, r) in l.rules.iter().enumerate() {
        let rb = format!("{lb}.rules[{k}]");
        if !rule_names.insert(&r.name) {
            errs.add(
                format!("{rb}.name"),
                format!("rule {:?} is defined twice in this listener", r.name),
            );
        }
        if RULE_PRIORITIES.contains(&r.priority) && !priorities.insert(r.priority) {
            errs.add(
                format!("{rb}.priority"),
                format!("priority {} is already used in this listener", r.priority),
            );
        }
        rules.push(plan_rule(errs, &rb, r, &groups.index));
    }
    rules.sort_by_key(|r| r.priority);
    let actions = std::iter::once((format!("{lb}.defaultAction"), &default_action)).chain(
        rules
            .iter()
            .enumerate()
            .map(|(k, r)| (format!("{lb}.rules[{k}].action"), &r.action)),
    );
    for (field, a) in actions {
        check_protocols(errs, &field, a, passthrough, &groups.tcp);
    }
    PlannedListener {
        passthrough,
        name: l.name.clone(),
        https: l.protocol == ListenerProtocol::Https,
        port,
        rules,
        default_action,
    }
}

/// TCP groups serve TLS_PASSTHROUGH listeners, and only those; a
/// passthrough listener never sees HTTP, so it cannot answer itself.
fn check_protocols(
    errs: &mut Errors,
    field: &str,
    a: &PlannedAction,
    passthrough: bool,
    tcp_groups: &BTreeSet<&str>,
) {
    match a {
        PlannedAction::Fixed(_) if passthrough => errs.add(
            field,
            "a TLS_PASSTHROUGH listener can only forward (it never sees HTTP)",
        ),
        PlannedAction::Fixed(_) => {}
        PlannedAction::Forward(groups) => {
            for (_, g) in groups {
                if tcp_groups.contains(g.as_str()) == passthrough {
                    continue;
                }
                errs.add(
                    format!("{field}.forward"),
                    if passthrough {
                        format!("target group {g:?} must have protocol TCP to serve a TLS_PASSTHROUGH listener")
                    } else {
                        format!("target group {g:?} has protocol TCP, which only TLS_PASSTHROUGH listeners use")
                    },
                );
            }
        }
    }
}

/// One rule (`rb` names it in errors): its priority, match and action.
/// Rule priorities, as the API's model allows them (`RulePriority`): the
/// file and the API accept the same.
pub const RULE_PRIORITIES: std::ops::RangeInclusive<u32> = 1..=2000;

fn plan_rule(
    errs: &mut Errors,
    rb: &str,
    r: &super::model::Rule,
    tg_index: &HashMap<&str, usize>,
) -> PlannedRule {
    errs.name(&format!("{rb}.name"), &r.name, 63, Some("rule-"));
    if !RULE_PRIORITIES.contains(&r.priority) {
        errs.add(
            format!("{rb}.priority"),
            format!(
                "{} is outside {}-{}",
                r.priority,
                RULE_PRIORITIES.start(),
                RULE_PRIORITIES.end()
            ),
        );
    }
    let hm = &r.match_.http_match;
    let f = format!("{rb}.match.httpMatch");
    if hm.method.is_none() && hm.path_match.is_none() && hm.header_matches.is_empty() {
        errs.add(
            &f,
            "a rule needs at least one of method, pathMatch and headerMatches",
        );
    }
    PlannedRule {
        name: r.name.clone(),
        priority: u16::try_from(r.priority).unwrap_or(u16::MAX),
        method: hm
            .method
            .as_ref()
            .and_then(|m| match_method(errs, &format!("{f}.method"), m)),
        path: hm
            .path_match
            .as_ref()
            .and_then(|p| match_path(errs, &format!("{f}.pathMatch.match"), p)),
        headers: match_headers(errs, &f, &hm.header_matches),
        action: action(errs, &format!("{rb}.action"), &r.action, tg_index),
    }
}

/// A rule's method: an upper-case token of at most 16 characters.
fn match_method(errs: &mut Errors, field: &str, m: &str) -> Option<http::Method> {
    let ok = !m.is_empty() && m.len() <= 16 && m.bytes().all(|b| b.is_ascii_uppercase());
    match (ok, http::Method::from_bytes(m.as_bytes())) {
        (true, Ok(m)) => Some(m),
        _ => {
            errs.add(field, format!("{m:?} is not an HTTP method"));
            None
        }
    }
}

/// A rule's path condition: exact or prefix, from `/`, at most 200
/// characters; lowercased when not case sensitive.
fn match_path(
    errs: &mut Errors,
    field: &str,
    p: &super::model::PathMatch,
) -> Option<(MatchKind, String, bool)> {
    let (kind, value) = match (&p.match_.exact, &p.match_.prefix) {
        (Some(v), None) => (MatchKind::Exact, v),
        (None, Some(v)) => (MatchKind::Prefix, v),
        _ => {
            errs.add(field, "set exactly one of exact and prefix");
            return None;
        }
    };
    if !value.starts_with('/') || value.len() > 200 {
        errs.add(
            field,
            format!("{value:?} must start with / and be at most 200 characters"),
        );
        return None;
    }
    let cs = p.case_sensitive.unwrap_or(true);
    let value = if cs {
        value.clone()
    } else {
        value.to_ascii_lowercase()
    };
    Some((kind, value, cs))
}

/// A rule's header conditions: at most 5, each a header name of at most 40
/// characters and one of exact, prefix and contains; values lowercased
/// unless case sensitive.
fn match_headers(
    errs: &mut Errors,
    f: &str,
    matches: &[super::model::HeaderMatch],
) -> Vec<(http::HeaderName, MatchKind, String, bool)> {
    if matches.len() > 5 {
        errs.add(format!("{f}.headerMatches"), "at most 5 header matches");
    }
    let mut headers = Vec::new();
    for (h, m) in matches.iter().enumerate() {
        let f = format!("{f}.headerMatches[{h}]");
        let name = match http::HeaderName::from_bytes(m.name.as_bytes()) {
            Ok(n) if m.name.len() <= 40 => n,
            _ => {
                errs.add(
                    format!("{f}.name"),
                    format!("{:?} is not a header name of at most 40 characters", m.name),
                );
                continue;
            }
        };
        let Some((kind, value)) = header_kind(&m.match_) else {
            errs.add(
                format!("{f}.match"),
                "set exactly one of exact, prefix and contains",
            );
            continue;
        };
        let cs = m.case_sensitive.unwrap_or(false);
        let value = if cs {
            value.to_owned()
        } else {
            value.to_ascii_lowercase()
        };
        headers.push((name, kind, value, cs));
    }
    headers
}

/// Access log subscriptions: each destination read once, here (compile
/// only places it under --log-dir), and put on its service; returns the
/// networks' destinations.
fn attach_logs<'c>(
    errs: &mut Errors,
    config: &'c Config,
    resources: &Resources<'_, 'c>,
    services: &mut [PlannedService],
) -> Logs<'c> {
    let mut out = Logs::default();
    let mut slots = BTreeSet::new();
    for (i, a) in config.access_log_subscriptions.iter().enumerate() {
        let f = format!("accessLogSubscriptions[{i}]");
        let slot = super::model::AccessLogSubscription::slot(
            &a.destination_arn,
            a.service_network_log_type.as_deref(),
        );
        if let Some(t) = a
            .service_network_log_type
            .as_deref()
            .filter(|t| !matches!(*t, "SERVICE" | "RESOURCE"))
        {
            errs.add(
                format!("{f}.serviceNetworkLogType"),
                format!("{t:?} is not SERVICE or RESOURCE"),
            );
        }
        if !slots.insert((a.resource_identifier.as_str(), slot)) {
            errs.add(
                format!("{f}.destinationArn"),
                format!(
                    "{} already has a subscription to a {} destination; one per destination type",
                    a.resource_identifier, slot.0
                ),
            );
        }
        let log =
            match latticed_proxy::access_log::destination_path(Path::new(""), &a.destination_arn) {
                Ok(file) => Some(PlannedLog {
                    arn: a.destination_arn.clone(),
                    file,
                }),
                Err(e) => {
                    errs.add(format!("{f}.destinationArn"), e.to_string());
                    None
                }
            };
        let owner = resources.owner(
            errs,
            format!("{f}.resourceIdentifier"),
            &a.resource_identifier,
        );
        match (owner, log) {
            (Owner::Service(si), Some(log)) => {
                if let Some(svc) = services.get_mut(si) {
                    svc.logs.push(log);
                }
            }
            (Owner::Network(n), Some(log)) => {
                let to = match a.service_network_log_type.as_deref() {
                    Some("RESOURCE") => &mut out.network_resources,
                    _ => &mut out.networks,
                };
                to.entry(n).or_default().push(log);
            }
            (Owner::Configuration(r), Some(log)) => {
                out.configurations.entry(r).or_default().push(log);
            }
            _ => {}
        }
    }
    out
}

/// Auth policies: each parsed once, here (compile attaches what the plan
/// holds), whatever the resource's auth type (they apply once it is
/// AWS_IAM), and put on its service; returns the networks' policies.
fn attach_policies<'c>(
    errs: &mut Errors,
    config: &'c Config,
    resources: &Resources<'_, 'c>,
    services: &mut [PlannedService],
) -> HashMap<&'c str, PlannedPolicy> {
    let mut network_policies: HashMap<&str, PlannedPolicy> = HashMap::new();
    let mut seen_policy = BTreeSet::new();
    for (i, p) in config.auth_policies.iter().enumerate() {
        let f = format!("authPolicies[{i}]");
        let text = p.text();
        let parsed = match latticed_proxy::authz::Policy::parse(&text) {
            Ok(policy) => Some(PlannedPolicy {
                text,
                policy: Arc::new(policy),
            }),
            Err(e) => {
                errs.add(format!("{f}.policy"), e.to_string());
                None
            }
        };
        let r = p.resource_identifier.as_str();
        if !seen_policy.insert(r) {
            errs.add(
                format!("{f}.resourceIdentifier"),
                format!("{r:?} has two policies"),
            );
        }
        match resources.owner(errs, format!("{f}.resourceIdentifier"), r) {
            Owner::Service(si) => {
                if let Some(auth) = services.get_mut(si).and_then(|s| s.auth.as_mut()) {
                    *auth = parsed;
                }
            }
            Owner::Network(n) => {
                if let Some(parsed) = parsed {
                    network_policies.insert(n, parsed);
                }
            }
            Owner::Configuration(r) => errs.add(
                format!("{f}.resourceIdentifier"),
                format!("{r:?} is a resource configuration; auth policies are for services and service networks"),
            ),
            Owner::Unknown => {}
        }
    }
    network_policies
}

/// Services sharing a VIP:port must each have a name to be found by, and
/// the same protocol: an HTTP service there would be unreachable over TLS,
/// and a TLS client of a passthrough service would be spliced past an
/// HTTPS service's auth policy.
fn check_shared_addresses(errs: &mut Errors, services: &[PlannedService]) {
    let mut sharing: HashMap<(Ipv4Addr, u16), Vec<usize>> = HashMap::new();
    for (i, svc) in services.iter().enumerate() {
        for l in &svc.listeners {
            sharing.entry((svc.vip, l.port)).or_default().push(i);
        }
    }
    let mut shared: Vec<_> = sharing.into_iter().filter(|(_, v)| v.len() > 1).collect();
    shared.sort();
    for ((vip, port), users) in shared {
        let protocol = |i: usize| {
            services[i]
                .listeners
                .iter()
                .find(|l| l.port == port)
                .map_or("HTTP", PlannedListener::protocol)
        };
        let first = protocol(users[0]);
        if let Some(other) = users.iter().map(|&i| protocol(i)).find(|p| *p != first) {
            errs.add(
                format!("services[{}].vip", users[users.len() - 1]),
                format!(
                    "{vip}:{port} would mix {first} and {other} listeners of different services"
                ),
            );
        }
        for &i in &users {
            if services[i].hosts.is_empty() {
                let others: Vec<&str> = users
                    .iter()
                    .filter(|&&j| j != i)
                    .map(|&j| services[j].name.as_str())
                    .collect();
                errs.add(
                    format!("services[{i}].vip"),
                    format!(
                        "{vip}:{port} is also used by {others:?}; services sharing a VIP:port need a dnsName or customDomainName to be told apart"
                    ),
                );
            }
        }
    }
}

/// Which services each VPC association makes reachable.
struct Reached<'a, 'c> {
    /// Services of each network, by index.
    members: &'a HashMap<&'c str, BTreeSet<usize>>,
    /// The networks, as services are reached through them.
    networks: &'a HashMap<&'c str, Arc<PlannedNetwork>>,
    /// Checks a namespace a field names (see `check_namespace`).
    check_namespace: &'a dyn Fn(&mut Errors, &str, &str),
    /// Whether a namespace exists now.
    exists: &'a dyn Fn(&str) -> bool,
}

impl Reached<'_, '_> {
    /// Checks each VPC association (network, namespace, defined once) and
    /// marks each service reachable from the VPCs (that exist) associated
    /// with its networks.
    fn mark(&self, errs: &mut Errors, config: &Config, services: &mut [PlannedService]) {
        let mut seen = BTreeSet::new();
        // (service, namespace) reached through an association without
        // security groups: open to all there.
        let mut open: Opened = BTreeSet::new();
        for (i, a) in config.service_network_vpc_associations.iter().enumerate() {
            let base = format!("serviceNetworkVpcAssociations[{i}]");
            let sn = a.service_network_identifier.as_str();
            if !self.networks.contains_key(sn) {
                errs.add(
                    format!("{base}.serviceNetworkIdentifier"),
                    format!("no service network {sn:?}"),
                );
            }
            (self.check_namespace)(errs, &format!("{base}.vpcIdentifier"), &a.vpc_identifier);
            for (k, g) in a.security_group_ids.iter().enumerate() {
                if !super::security_groups::is_group_id(g) {
                    errs.add(
                        format!("{base}.securityGroupIds[{k}]"),
                        format!("{g:?} is not a security group id (sg- and 8 or 17 lowercase letters and digits)"),
                    );
                }
            }
            if !seen.insert((sn, a.vpc_identifier.as_str())) {
                errs.add(base, "this association is defined twice");
            }
            if !(self.exists)(&a.vpc_identifier) {
                continue;
            }
            let ns = a.vpc_identifier.as_str();
            for &s in self.members.get(sn).into_iter().flatten() {
                if let (Some(svc), Some(net)) = (services.get_mut(s), self.networks.get(sn)) {
                    svc.reachable_from
                        .entry(ns.to_owned())
                        .or_insert_with(|| Arc::clone(net));
                    fold_admission(
                        &mut svc.security_groups,
                        &mut open,
                        s,
                        ns,
                        &a.security_group_ids,
                    );
                }
            }
        }
    }
}

/// (Service or resource index, namespace) pairs an association without
/// security groups reached: everyone there is admitted, whatever other
/// associations say.
type Opened = BTreeSet<(usize, String)>;

/// Folds one VPC association's security groups `sgs` into who may reach
/// item `i` (a service, a resource) from namespace `ns`: an association
/// without groups opens it to everyone there for good; otherwise its
/// groups join the union of the others'. The one rule for services and
/// resources.
fn fold_admission(
    groups: &mut BTreeMap<String, BTreeSet<String>>,
    open: &mut Opened,
    i: usize,
    ns: &str,
    sgs: &[String],
) {
    if sgs.is_empty() {
        open.insert((i, ns.to_owned()));
        groups.remove(ns);
    } else if !open.contains(&(i, ns.to_owned())) {
        groups
            .entry(ns.to_owned())
            .or_default()
            .extend(sgs.iter().cloned());
    }
}

/// The services of each service network, by index, from the
/// service associations.
fn service_members<'c>(
    errs: &mut Errors,
    config: &'c Config,
    resources: &Resources<'_, 'c>,
) -> HashMap<&'c str, BTreeSet<usize>> {
    let mut members: HashMap<&str, BTreeSet<usize>> = HashMap::new();
    let mut seen = BTreeSet::new();
    for (i, a) in config
        .service_network_service_associations
        .iter()
        .enumerate()
    {
        let base = format!("serviceNetworkServiceAssociations[{i}]");
        let sn = a.service_network_identifier.as_str();
        if !resources.networks.contains_key(sn) {
            errs.add(
                format!("{base}.serviceNetworkIdentifier"),
                format!("no service network {sn:?}"),
            );
        }
        match resources.services.get(a.service_identifier.as_str()) {
            None => errs.add(
                format!("{base}.serviceIdentifier"),
                format!("no service {:?}", a.service_identifier),
            ),
            Some(&s) => {
                if !seen.insert((sn, s)) {
                    errs.add(base, "this association is defined twice");
                }
                members.entry(sn).or_default().insert(s);
            }
        }
    }
    members
}

/// Validates one target group and compiles it.
fn plan_group(
    errs: &mut Errors,
    base: &str,
    tg: &super::model::TargetGroup,
    check_namespace: &dyn Fn(&mut Errors, &str, &str),
) -> PlannedTargetGroup {
    let mut planned = PlannedTargetGroup {
        name: tg.name.clone(),
        arn: tg.arn.clone(),
        namespace: String::new(),
        kind: PlannedKind::Lambda { v2: false },
        targets: Vec::new(),
        health: None,
    };
    if tg.type_ == TargetGroupType::Lambda {
        plan_lambda_group(errs, base, tg, &mut planned);
    } else {
        plan_hosts_group(errs, base, tg, check_namespace, &mut planned);
    }
    planned
}

/// A LAMBDA group: its event version and its one function.
fn plan_lambda_group(
    errs: &mut Errors,
    base: &str,
    tg: &super::model::TargetGroup,
    planned: &mut PlannedTargetGroup,
) {
    let v2 = match tg
        .config
        .as_ref()
        .and_then(|c| c.lambda_event_structure_version.as_deref())
    {
        None | Some("V1") => false,
        Some("V2") => true,
        Some(other) => {
            errs.add(
                format!("{base}.config.lambdaEventStructureVersion"),
                format!("{other:?} is not V1 or V2"),
            );
            false
        }
    };
    planned.kind = PlannedKind::Lambda { v2 };
    if tg.targets.len() > 1 {
        errs.add(
            format!("{base}.targets"),
            "a LAMBDA target group holds one function",
        );
    }
    for (j, t) in tg.targets.iter().enumerate() {
        if !t.id.starts_with("arn:") || !t.id.contains(":function:") {
            errs.add(
                format!("{base}.targets[{j}].id"),
                format!(
                    "{:?} is not a function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME)",
                    t.id
                ),
            );
        }
        planned.targets.push(PlannedTarget {
            id: t.id.clone(),
            ip: None,
            port: 0,
        });
    }
}

/// An IP, INSTANCE or ALB group: protocol, port, namespace, targets and
/// health checks.
fn plan_hosts_group(
    errs: &mut Errors,
    base: &str,
    tg: &super::model::TargetGroup,
    check_namespace: &dyn Fn(&mut Errors, &str, &str),
    planned: &mut PlannedTargetGroup,
) {
    use latticed_proxy::routing::TargetVersion;
    let what = format!("{:?}", tg.type_).to_uppercase();
    let Some(cfg) = &tg.config else {
        errs.add(
            format!("{base}.config"),
            format!("required for {what} target groups"),
        );
        return;
    };
    let protocol = cfg.protocol.unwrap_or(TargetGroupProtocol::Http);
    let tcp = protocol == TargetGroupProtocol::Tcp;
    let https = protocol == TargetGroupProtocol::Https;
    let version = match cfg.protocol_version.as_deref() {
        None | Some("HTTP1") => TargetVersion::Http1,
        Some("HTTP2") => TargetVersion::Http2,
        Some("GRPC") => TargetVersion::Grpc,
        Some(other) => {
            errs.add(
                format!("{base}.config.protocolVersion"),
                format!("{other:?} is not HTTP1, HTTP2 or GRPC"),
            );
            TargetVersion::Http1
        }
    };
    planned.kind = PlannedKind::Hosts {
        type_: tg.type_,
        https,
        tcp,
        version,
    };
    let port = check_port(
        errs,
        &format!("{base}.config.port"),
        cfg.port,
        Some(if https { 443 } else { 80 }),
    );
    match &cfg.vpc_identifier {
        None => errs.add(
            format!("{base}.config.vpcIdentifier"),
            format!("required for {what} target groups"),
        ),
        Some(ns) => {
            check_namespace(errs, &format!("{base}.config.vpcIdentifier"), ns);
            planned.namespace = ns.clone();
        }
    }
    let v6 = match cfg.ip_address_type.as_deref() {
        None | Some("IPV4") => false,
        Some("IPV6") => true,
        Some(other) => {
            errs.add(
                format!("{base}.config.ipAddressType"),
                format!("{other:?} is not IPV4 or IPV6"),
            );
            false
        }
    };
    planned.targets = plan_targets(errs, base, tg, (port, v6));
    planned.health = Some(plan_health(errs, base, cfg, (https, tcp, version)));
}

/// The targets of an IP, INSTANCE or ALB group, on the group's `port`
/// unless they name their own; an IP group's addresses are IPv6 if `v6`
/// (its `ipAddressType`), else IPv4.
fn plan_targets(
    errs: &mut Errors,
    base: &str,
    tg: &super::model::TargetGroup,
    (port, v6): (Option<u16>, bool),
) -> Vec<PlannedTarget> {
    let mut targets: Vec<PlannedTarget> = Vec::new();
    for (j, t) in tg.targets.iter().enumerate() {
        let tf = format!("{base}.targets[{j}]");
        let ip = match tg.type_ {
            TargetGroupType::Ip => match target_address(&t.id, v6) {
                Ok(ip) => Some(ip),
                Err(why) => {
                    errs.add(format!("{tf}.id"), why);
                    None
                }
            },
            TargetGroupType::Instance => {
                if !t.id.starts_with("i-") {
                    errs.add(
                        format!("{tf}.id"),
                        format!("{:?} is not an instance id (i-...)", t.id),
                    );
                }
                None
            }
            _ => {
                if !t.id.starts_with("arn:") || !t.id.contains(":loadbalancer/") {
                    errs.add(
                        format!("{tf}.id"),
                        format!("{:?} is not a load balancer ARN", t.id),
                    );
                }
                None
            }
        };
        let Some(p) = check_port(errs, &format!("{tf}.port"), t.port, port) else {
            continue;
        };
        if targets.iter().any(|x| x.id == t.id && x.port == p) {
            errs.add(tf, format!("target {}:{p} is registered twice", t.id));
            continue;
        }
        targets.push(PlannedTarget {
            id: t.id.clone(),
            ip,
            port: p,
        });
    }
    targets
}

/// The address of an IP target: IPv6 in a group whose `ipAddressType` is
/// IPV6, else IPv4 (one rule for the API and the configuration file).
pub fn target_address(id: &str, v6: bool) -> Result<std::net::IpAddr, String> {
    match (id.parse::<std::net::IpAddr>(), v6) {
        (Ok(ip @ std::net::IpAddr::V4(_)), false) | (Ok(ip @ std::net::IpAddr::V6(_)), true) => {
            Ok(ip)
        }
        (Ok(_), false) => Err(format!(
            "{id:?} is an IPv6 address; the group's ipAddressType is IPV4"
        )),
        (Ok(_), true) => Err(format!(
            "{id:?} is an IPv4 address; the group's ipAddressType is IPV6"
        )),
        (Err(_), false) => Err(format!("{id:?} is not an IPv4 address")),
        (Err(_), true) => Err(format!("{id:?} is not an IPv6 address")),
    }
}

/// The health check's numbers: (field, lowest, highest, default), as
/// Lattice has them.
const HEALTH_RANGES: [(&str, u32, u32, u32); 4] = [
    ("healthCheckIntervalSeconds", 5, 300, 30),
    ("healthCheckTimeoutSeconds", 1, 120, 5),
    ("healthyThresholdCount", 2, 10, 5),
    ("unhealthyThresholdCount", 2, 10, 2),
];

/// A group's health checks, with Lattice's defaults; `(https, tcp,
/// version)` are the group's own.
fn plan_health(
    errs: &mut Errors,
    base: &str,
    cfg: &super::model::TargetGroupConfig,
    (https, tcp, version): (bool, bool, latticed_proxy::routing::TargetVersion),
) -> latticed_proxy::health::CheckConfig {
    use latticed_proxy::{health, routing::TargetVersion};
    let hc = cfg.health_check.clone().unwrap_or_default();
    let hf = format!("{base}.config.healthCheck");
    let mut check = health::CheckConfig {
        https: hc
            .protocol
            .map_or(https, |p| p == TargetGroupProtocol::Https),
        // A TCP group without a health check protocol is checked by
        // connecting: its targets speak TLS to clients, not HTTP to us.
        tcp: tcp && hc.protocol.is_none(),
        version: match hc.protocol_version.as_deref() {
            // gRPC groups are checked over HTTP/2.
            None if version == TargetVersion::Http1 => TargetVersion::Http1,
            None => TargetVersion::Http2,
            Some("HTTP1") => TargetVersion::Http1,
            Some("HTTP2") => TargetVersion::Http2,
            Some(other) => {
                errs.add(
                    format!("{hf}.protocolVersion"),
                    format!("{other:?} is not HTTP1 or HTTP2"),
                );
                TargetVersion::Http1
            }
        },
        enabled: hc.enabled.unwrap_or(true),
        ..Default::default()
    };
    if hc.protocol == Some(TargetGroupProtocol::Tcp) {
        errs.add(
            format!("{hf}.protocol"),
            "must be HTTP or HTTPS (leave it out on TCP groups to check by connecting)",
        );
    }
    if let Some(p) = hc.port {
        check.port = check_port(errs, &format!("{hf}.port"), Some(p), None);
    }
    if let Some(path) = &hc.path {
        if !path.starts_with('/') || path.len() > 2048 {
            errs.add(
                format!("{hf}.path"),
                format!("{path:?} must start with / and be at most 2048 characters"),
            );
        }
        check.path.clone_from(path);
    }
    let values = [
        hc.health_check_interval_seconds,
        hc.health_check_timeout_seconds,
        hc.healthy_threshold_count,
        hc.unhealthy_threshold_count,
    ];
    let [interval, timeout, healthy, unhealthy] = std::array::from_fn(|i| {
        let (field, lo, hi, default) = HEALTH_RANGES[i];
        match values[i] {
            None => default,
            Some(v) if (lo..=hi).contains(&v) => v,
            Some(v) => {
                errs.add(format!("{hf}.{field}"), format!("{v} is outside {lo}-{hi}"));
                default
            }
        }
    });
    check.healthy_threshold = healthy;
    check.unhealthy_threshold = unhealthy;
    check.interval = std::time::Duration::from_secs(interval.into());
    check.timeout = std::time::Duration::from_secs(timeout.into());
    if let Some(m) = &hc.matcher {
        match health::parse_matcher(&m.http_code) {
            Ok(m) => check.matcher = m,
            Err(e) => errs.add(format!("{hf}.matcher.httpCode"), e),
        }
    }
    check
}

fn header_kind(m: &HeaderMatchType) -> Option<(MatchKind, &str)> {
    match (&m.exact, &m.prefix, &m.contains) {
        (Some(v), None, None) => Some((MatchKind::Exact, v)),
        (None, Some(v), None) => Some((MatchKind::Prefix, v)),
        (None, None, Some(v)) => Some((MatchKind::Contains, v)),
        _ => None,
    }
}

fn check_port(
    errs: &mut Errors,
    field: &str,
    port: Option<u32>,
    default: Option<u16>,
) -> Option<u16> {
    match port {
        None if default.is_none() => {
            errs.add(field, "required");
            None
        }
        None => default,
        Some(p) => match u16::try_from(p) {
            Ok(p) if p > 0 => Some(p),
            _ => {
                errs.add(field, format!("{p} is outside 1-65535"));
                None
            }
        },
    }
}

fn check_namespace(errs: &mut Errors, field: &str, name: &str, netns_dir: &Path, missing: Missing) {
    let len = name.chars().count();
    if !(5..=50).contains(&len) {
        errs.add(
            field,
            format!("{name:?} must be 5 to 50 characters long (a network namespace name)"),
        );
    } else if name.contains('/') || name.starts_with('.') {
        errs.add(field, format!("{name:?} is not a network namespace name"));
    } else if missing == Missing::Refuse && !netns_dir.join(name).exists() {
        errs.add(
            field,
            format!(
                "network namespace {name:?} does not exist (no {})",
                netns_dir.join(name).display()
            ),
        );
    }
}

fn action(
    errs: &mut Errors,
    field: &str,
    a: &RuleAction,
    tgs: &HashMap<&str, usize>,
) -> PlannedAction {
    match (&a.forward, &a.fixed_response) {
        (Some(fwd), None) => {
            let f = format!("{field}.forward.targetGroups");
            if !(1..=10).contains(&fwd.target_groups.len()) {
                errs.add(
                    &f,
                    format!(
                        "{} target groups; 1 to 10 are allowed",
                        fwd.target_groups.len()
                    ),
                );
            }
            let mut out = Vec::new();
            for (i, w) in fwd.target_groups.iter().enumerate() {
                let weight = w.weight.unwrap_or(1);
                if weight > 999 {
                    errs.add(
                        format!("{f}[{i}].weight"),
                        format!("{weight} is outside 0-999"),
                    );
                }
                match tgs.get(w.target_group_identifier.as_str()) {
                    Some(_) => out.push((weight, w.target_group_identifier.clone())),
                    None => errs.add(
                        format!("{f}[{i}].targetGroupIdentifier"),
                        format!("no target group {:?}", w.target_group_identifier),
                    ),
                }
            }
            PlannedAction::Forward(out)
        }
        (None, Some(fixed)) => {
            if !(100..=599).contains(&fixed.status_code) {
                errs.add(
                    format!("{field}.fixedResponse.statusCode"),
                    format!("{} is outside 100-599", fixed.status_code),
                );
            }
            PlannedAction::Fixed(u16::try_from(fixed.status_code).unwrap_or(500))
        }
        _ => {
            errs.add(field, "set exactly one of forward and fixedResponse");
            PlannedAction::Fixed(500)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/self/ns` has an entry `net` (3 chars, too short for a VPC id)
    /// so tests use a temp dir with fake namespace files: validation only
    /// checks that the name exists.
    pub(super) fn netns_dir(names: &[&str]) -> tempdir::Dir {
        tempdir::Dir::with(names)
    }

    pub(super) mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn with(names: &[&str]) -> Self {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "latticed-plan-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                for n in names {
                    std::fs::write(p.join(n), b"").unwrap();
                }
                Self(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn walkthrough() -> Config {
        serde_json::from_value(serde_json::json!({
            "serviceNetworks": [{"name": "demo-net"}],
            "services": [
                {"name": "service-a", "listeners": [{"name": "http", "protocol": "HTTP",
                    "defaultAction": {"forward": {"targetGroups": [{"targetGroupIdentifier": "app-a"}]}},
                    "rules": [{"name": "only-b", "priority": 1,
                        "match": {"httpMatch": {"pathMatch": {"match": {"prefix": "/B"}, "caseSensitive": false}}},
                        "action": {"forward": {"targetGroups": [{"targetGroupIdentifier": "app-b", "weight": 3}]}}}]}]},
                {"name": "service-b", "vip": "169.254.171.1", "listeners": [{"name": "http", "protocol": "HTTP", "port": 8080,
                    "defaultAction": {"fixedResponse": {"statusCode": 404}}}]}
            ],
            "targetGroups": [
                {"name": "app-a", "type": "IP", "config": {"vpcIdentifier": "vpc-a", "port": 8080, "protocol": "HTTP"},
                 "targets": [{"id": "10.0.16.10"}]},
                {"name": "app-b", "type": "IP", "config": {"vpcIdentifier": "vpc-b", "port": 8080},
                 "targets": [{"id": "10.0.16.10", "port": 9090}]}
            ],
            "serviceNetworkServiceAssociations": [
                {"serviceNetworkIdentifier": "demo-net", "serviceIdentifier": "service-a"},
                {"serviceNetworkIdentifier": "demo-net", "serviceIdentifier": "service-b"}
            ],
            "serviceNetworkVpcAssociations": [
                {"serviceNetworkIdentifier": "demo-net", "vpcIdentifier": "vpc-b"}
            ]
        }))
        .unwrap()
    }

    fn errors(config: &Config, dir: &tempdir::Dir) -> Vec<(String, String)> {
        plan(config, &dir.0)
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| (e.field, e.reason))
            .collect()
    }

    #[test]
    fn walkthrough_compiles() {
        let dir = netns_dir(&["vpc-a", "vpc-b"]);
        let p = plan(&walkthrough(), &dir.0).unwrap();
        // svc-b pinned .1, so svc-a gets the next free one.
        assert_eq!(p.services["service-a"].vip, Ipv4Addr::new(169, 254, 171, 2));
        assert_eq!(p.services["service-b"].vip, Ipv4Addr::new(169, 254, 171, 1));
        let steered: Vec<_> = p.client_namespaces()["vpc-b"]
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(steered, ["169.254.171.1:8080", "169.254.171.2:80"]);
        assert!(
            !p.client_namespaces().contains_key("vpc-a"),
            "vpc-a is not associated"
        );
        assert_eq!(
            p.namespaces().into_iter().collect::<Vec<_>>(),
            ["vpc-a", "vpc-b"]
        );
        assert_eq!(
            format!(
                "{}:{}",
                p.target_groups["app-b"].targets[0].id, p.target_groups["app-b"].targets[0].port
            ),
            "10.0.16.10:9090"
        );
        let rule = &p.services["service-a"].listeners[0].rules[0];
        assert_eq!(rule.path, Some((MatchKind::Prefix, "/b".into(), false)));
        assert_eq!(
            rule.action,
            PlannedAction::Forward(vec![(3, "app-b".to_owned())])
        );
    }

    /// The file allows what the API allows: one access log subscription
    /// per destination type (and log type) of a resource.
    #[test]
    fn one_access_log_per_destination_type() {
        let dir = netns_dir(&["vpc-a", "vpc-b"]);
        let mut c = walkthrough();
        let sub = |dest: &str, log_type: Option<&str>| super::super::model::AccessLogSubscription {
            resource_identifier: c.service_networks[0].name.clone(),
            destination_arn: dest.into(),
            service_network_log_type: log_type.map(str::to_owned),
        };
        let subs = vec![
            sub("arn:aws:logs:us-east-1:111122223333:log-group:a", None),
            sub("arn:aws:s3:::bucket-a", None),
            sub(
                "arn:aws:logs:us-east-1:111122223333:log-group:b",
                Some("RESOURCE"),
            ),
        ];
        c.access_log_subscriptions = subs.clone();
        plan(&c, &dir.0).unwrap();
        c.access_log_subscriptions.push(sub(
            "arn:aws:logs:us-east-1:111122223333:log-group:c",
            Some("SERVICE"),
        ));
        c.access_log_subscriptions
            .push(sub("arn:aws:s3:::bucket-b", Some("ANY")));
        let errs = errors(&c, &dir);
        assert!(
            errs.iter()
                .any(|(f, r)| f == "accessLogSubscriptions[3].destinationArn"
                    && r.contains("one per destination type")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|(f, _)| f == "accessLogSubscriptions[4].serviceNetworkLogType"),
            "{errs:?}"
        );
    }

    #[test]
    fn missing_namespace_is_named() {
        let dir = netns_dir(&["vpc-a"]);
        let errs = errors(&walkthrough(), &dir);
        assert!(
            errs.iter()
                .any(|(f, r)| f == "targetGroups[1].config.vpcIdentifier"
                    && r.contains("\"vpc-b\" does not exist")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|(f, _)| f == "serviceNetworkVpcAssociations[0].vpcIdentifier"),
            "{errs:?}"
        );
    }

    #[test]
    fn skip_mode_plans_what_exists() {
        let dir = netns_dir(&["vpc-a"]);
        let p = plan_with(&walkthrough(), &dir.0, Missing::Skip).unwrap();
        assert!(
            p.client_namespaces().is_empty(),
            "vpc-b is the only client and it is missing"
        );
        assert_eq!(p.namespaces().into_iter().collect::<Vec<_>>(), ["vpc-a"]);
        assert!(p.services.values().all(|s| s.reachable_from.is_empty()));
    }

    #[test]
    fn vip_outside_range_and_port_conflicts_are_refused() {
        let dir = netns_dir(&["vpc-a", "vpc-b"]);
        let mut c = walkthrough();
        c.services[1].vip = Some(Ipv4Addr::new(169, 254, 171, 200));
        let mut dup = c.services[0].listeners[0].clone();
        dup.name = "http-again".into();
        c.services[0].listeners.push(dup);
        let errs = errors(&c, &dir);
        assert!(
            errs.contains(&(
                "services[1].vip".into(),
                "169.254.171.200 is outside the service VIP range 169.254.171.1-169.254.171.191"
                    .into()
            )),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|(f, r)| f == "services[0].listeners[1].port"
                    && r.contains("already taken by listener \"http\"")),
            "{errs:?}"
        );
    }

    #[test]
    fn a_passthrough_listener_shares_its_vip_port_with_no_other_protocol() {
        let dir = netns_dir(&["vpc-a", "vpc-b"]);
        let mut c = walkthrough();
        c.services[0].vip = Some(Ipv4Addr::new(169, 254, 171, 1));
        c.services[0].custom_domain_name = Some("a.example.internal".into());
        c.services[1].custom_domain_name = Some("b.example.internal".into());
        c.services[0].listeners[0].port = Some(443);
        c.services[1].listeners[0].port = Some(443);
        c.services[1].listeners[0].protocol = ListenerProtocol::TlsPassthrough;
        let errs = errors(&c, &dir);
        assert!(
            errs.contains(&(
                "services[1].vip".into(),
                "169.254.171.1:443 would mix HTTP and TLS_PASSTHROUGH listeners of different services"
                    .into()
            )),
            "{errs:?}"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let dir = netns_dir(&["vpc-a", "vpc-b"]);
        let mut c = walkthrough();
        c.services[0].name = "S".into();
        c.services[0].listeners[0].rules[0].priority = 0;
        c.services[0].listeners[0]
            .default_action
            .forward
            .as_mut()
            .unwrap()
            .target_groups[0]
            .weight = Some(1000);
        c.target_groups[0].targets[0].id = "not-an-ip".into();
        c.service_network_service_associations[0].service_identifier = "nope".into();
        let fields: Vec<_> = errors(&c, &dir).into_iter().map(|(f, _)| f).collect();
        for want in [
            "services[0].name",
            "services[0].listeners[0].rules[0].priority",
            "services[0].listeners[0].defaultAction.forward.targetGroups[0].weight",
            "targetGroups[0].targets[0].id",
            "serviceNetworkServiceAssociations[0].serviceIdentifier",
        ] {
            assert!(
                fields.iter().any(|f| f == want),
                "missing {want} in {fields:?}"
            );
        }
    }

    #[test]
    fn ip_targets_are_of_their_groups_family_and_groups_name_security_groups_rightly() {
        let dir = netns_dir(&["vpc-a", "vpc-b"]);
        let mut c = walkthrough();
        let ip = c
            .target_groups
            .iter()
            .position(|g| g.type_ == TargetGroupType::Ip)
            .unwrap();
        let cfg = c.target_groups[ip].config.as_mut().unwrap();
        cfg.ip_address_type = Some("IPV6".into());
        c.target_groups[ip].targets[0].id = "10.0.16.10".into();
        c.service_network_vpc_associations[0].security_group_ids = vec!["web".into()];
        let errs = errors(&c, &dir);
        let want = [
            (
                format!("targetGroups[{ip}].targets[0].id"),
                "\"10.0.16.10\" is an IPv4 address; the group's ipAddressType is IPV6",
            ),
            (
                "serviceNetworkVpcAssociations[0].securityGroupIds[0]".into(),
                "\"web\" is not a security group id (sg- and 8 or 17 lowercase letters and digits)",
            ),
        ];
        for (field, reason) in want {
            assert!(
                errs.contains(&(field.clone(), reason.to_owned())),
                "{field}: {errs:?}"
            );
        }
        // An IPv6 address in it plans, and says it is IPv6.
        c.target_groups[ip].targets[0].id = "fd00:6::10".into();
        c.service_network_vpc_associations[0].security_group_ids = vec!["sg-0123abcd".into()];
        let p = plan(&c, &dir.0).unwrap();
        let name = c.target_groups[ip].name.as_str();
        assert_eq!(
            p.target_groups[name].targets[0].ip,
            Some("fd00:6::10".parse().unwrap())
        );
    }

    /// A VIP:port is open in a namespace if any association reaching a
    /// service on it has no groups; else the union of the groups of all
    /// that reach it. Its IPv6 twin is steered alike.
    #[test]
    fn admission_is_the_union_of_the_associations_that_reach_a_service() {
        use super::super::model::{ServiceNetwork, ServiceNetworkServiceAssociation as Snsa};
        let dir = netns_dir(&["vpc-a", "vpc-b"]);
        let mut c = walkthrough();
        c.service_networks.push(ServiceNetwork {
            name: "other-net".into(),
            auth_type: Default::default(),
            arn: None,
        });
        c.service_network_service_associations.push(Snsa {
            service_network_identifier: "other-net".into(),
            service_identifier: "service-a".into(),
        });
        let mut assoc = c.service_network_vpc_associations[0].clone();
        assoc.service_network_identifier = "other-net".into();
        c.service_network_vpc_associations.push(assoc);
        let client = c.service_network_vpc_associations[0].vpc_identifier.clone();
        let set = |ids: &[&str]| -> Vec<String> { ids.iter().map(|s| (*s).to_owned()).collect() };
        let admission = |c: &Config| {
            let p = plan(c, &dir.0).unwrap();
            let vip = p.services["service-a"].vip;
            let at = SocketAddr::from((vip, 80));
            let all = p.admission(&client).ports;
            let twin =
                SocketAddr::from((std::net::Ipv6Addr::from(addresses::v6(u32::from(vip))), 80));
            assert_eq!(all.get(&twin), all.get(&at), "the twin is admitted alike");
            all[&at].clone()
        };
        // Both associations with groups: their union.
        let last = c.service_network_vpc_associations.len() - 1;
        c.service_network_vpc_associations[0].security_group_ids = set(&["sg-0000000a"]);
        c.service_network_vpc_associations[last].security_group_ids = set(&["sg-0000000b"]);
        let want: BTreeSet<String> = set(&["sg-0000000a", "sg-0000000b"]).into_iter().collect();
        assert_eq!(admission(&c), Some(want));
        // One without: open, whichever comes first.
        for open in [0, last] {
            let mut c = c.clone();
            c.service_network_vpc_associations[open]
                .security_group_ids
                .clear();
            assert_eq!(admission(&c), None, "association {open} has no groups");
        }
    }

    #[test]
    fn names_may_not_look_like_ids() {
        let dir = netns_dir(&["vpc-a", "vpc-b"]);
        let mut c = walkthrough();
        c.services[0].name = "svc-shop".into();
        c.target_groups[0].name = "tg-blue".into();
        let errs = errors(&c, &dir);
        assert!(
            errs.contains(&(
                "services[0].name".into(),
                "\"svc-shop\" may not start with \"svc-\" (that is how ids start)".into()
            )),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|(f, _)| f == "targetGroups[0].name"),
            "{errs:?}"
        );
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let err =
            serde_json::from_str::<Config>(r#"{"services": [{"name": "abc", "listenrs": []}]}"#)
                .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `listenrs`"),
            "{err}"
        );
    }
}
