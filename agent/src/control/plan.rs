//! Validation of a [`Config`] and its compilation into a [`Plan`]: the one
//! place where outside input is checked. Every problem is reported with the
//! path of the field (`services[0].listeners[1].port`) and the reason, all at
//! once; a config with any problem yields no plan, so nothing is half-applied.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    net::{Ipv4Addr, SocketAddrV4},
    path::Path,
    sync::Arc,
};

use super::model::{
    Config, HeaderMatchType, ListenerProtocol, RuleAction, TargetGroupProtocol, TargetGroupType,
};

/// First VIP handed out to services.
pub const VIP_FIRST: Ipv4Addr = Ipv4Addr::new(169, 254, 171, 1);
/// Last VIP; 169.254.171.192-254 are the SNAT source pool.
pub const VIP_LAST: Ipv4Addr = Ipv4Addr::new(169, 254, 171, 191);

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
    /// VPC associations per (existing) namespace.
    associated: BTreeMap<String, u32>,
    /// Per client namespace, how many services steer each VIP:port there.
    steered: BTreeMap<String, BTreeMap<SocketAddrV4, u32>>,
    /// Target groups per (existing) namespace.
    targets_in: BTreeMap<String, u32>,
    /// Services per VIP:port, to rebuild a shared VIP's routes.
    by_vip: BTreeMap<SocketAddrV4, BTreeSet<Arc<str>>>,
}

use super::count;

impl Plan {
    /// Every namespace the plan touches.
    pub fn namespaces(&self) -> BTreeSet<&str> {
        self.associated
            .keys()
            .chain(self.steered.keys())
            .chain(self.targets_in.keys())
            .map(String::as_str)
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
                for ns in &svc.reachable_from {
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
        if let Some(g) = old.filter(|g| exists(&g.namespace)) {
            count(&mut self.targets_in, g.namespace.clone(), false);
        }
        if let Some(g) = new.filter(|g| exists(&g.namespace)) {
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
    /// Namespaces it is reachable from.
    pub reachable_from: BTreeSet<String>,
}

/// A listener.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedListener {
    /// Name.
    pub name: String,
    /// Port.
    pub port: u16,
    /// Rules sorted by priority.
    pub rules: Vec<PlannedRule>,
    /// Default action.
    pub default_action: PlannedAction,
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
    /// Namespace of its targets.
    pub namespace: String,
    /// Target addresses.
    pub targets: Vec<SocketAddrV4>,
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

    let mut networks = HashMap::new();
    for (i, sn) in config.service_networks.iter().enumerate() {
        let f = format!("serviceNetworks[{i}].name");
        errs.name(&f, &sn.name, 63, None);
        if networks.insert(sn.name.as_str(), i).is_some() {
            errs.add(f, format!("service network {:?} is defined twice", sn.name));
        }
    }

    // Target groups.
    let mut tg_index = HashMap::new();
    let mut target_groups = Vec::new();
    for (i, tg) in config.target_groups.iter().enumerate() {
        let base = format!("targetGroups[{i}]");
        errs.name(&format!("{base}.name"), &tg.name, 128, Some("tg-"));
        if tg_index.insert(tg.name.as_str(), i).is_some() {
            errs.add(
                format!("{base}.name"),
                format!("target group {:?} is defined twice", tg.name),
            );
        }
        if tg.type_ != TargetGroupType::Ip {
            errs.add(
                format!("{base}.type"),
                format!("{:?} target groups are not supported yet; use IP", tg.type_),
            );
        }
        let Some(cfg) = &tg.config else {
            errs.add(format!("{base}.config"), "required for IP target groups");
            target_groups.push(PlannedTargetGroup {
                name: tg.name.clone(),
                namespace: String::new(),
                targets: vec![],
            });
            continue;
        };
        if let Some(p) = cfg.protocol {
            if p != TargetGroupProtocol::Http {
                errs.add(
                    format!("{base}.config.protocol"),
                    format!("{p:?} targets are not supported yet; use HTTP"),
                );
            }
        }
        let port = check_port(&mut errs, &format!("{base}.config.port"), cfg.port, None);
        let namespace = match &cfg.vpc_identifier {
            None => {
                errs.add(
                    format!("{base}.config.vpcIdentifier"),
                    "required for IP target groups",
                );
                String::new()
            }
            Some(ns) => {
                check_namespace(&mut errs, &format!("{base}.config.vpcIdentifier"), ns);
                ns.clone()
            }
        };
        let mut targets = Vec::new();
        for (j, t) in tg.targets.iter().enumerate() {
            let tf = format!("{base}.targets[{j}]");
            let ip = match t.id.parse::<Ipv4Addr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    errs.add(
                        format!("{tf}.id"),
                        format!("{:?} is not an IPv4 address", t.id),
                    );
                    None
                }
            };
            let tport = check_port(&mut errs, &format!("{tf}.port"), t.port, port);
            if let (Some(ip), Some(p)) = (ip, tport) {
                let addr = SocketAddrV4::new(ip, p);
                if targets.contains(&addr) {
                    errs.add(tf, format!("target {addr} is registered twice"));
                } else {
                    targets.push(addr);
                }
            }
        }
        target_groups.push(PlannedTargetGroup {
            name: tg.name.clone(),
            namespace,
            targets,
        });
    }

    // Services, VIPs and listeners.
    let mut services = Vec::new();
    let mut service_index = HashMap::new();
    // Pinned VIPs may be shared: services on the same VIP:port are told
    // apart by name (checked below, once the listeners are known).
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
    for (i, svc) in config.services.iter().enumerate() {
        let base = format!("services[{i}]");
        errs.name(&format!("{base}.name"), &svc.name, 40, Some("svc-"));
        if service_index.insert(svc.name.as_str(), i).is_some() {
            errs.add(
                format!("{base}.name"),
                format!("service {:?} is defined twice", svc.name),
            );
        }
        let vip = match svc.vip.or_else(|| free_vips.next()) {
            Some(v) => v,
            None => {
                errs.add(
                    format!("{base}.vip"),
                    "no free VIP left in the service range",
                );
                VIP_FIRST
            }
        };
        let mut ports: HashMap<u16, &str> = HashMap::new();
        let mut listener_names = BTreeSet::new();
        let mut listeners = Vec::new();
        for (j, l) in svc.listeners.iter().enumerate() {
            let lb = format!("{base}.listeners[{j}]");
            errs.name(&format!("{lb}.name"), &l.name, 63, Some("listener-"));
            if !listener_names.insert(&l.name) {
                errs.add(
                    format!("{lb}.name"),
                    format!("listener {:?} is defined twice in this service", l.name),
                );
            }
            if l.protocol != ListenerProtocol::Http {
                errs.add(
                    format!("{lb}.protocol"),
                    format!("{:?} listeners are not supported yet; use HTTP", l.protocol),
                );
            }
            let default_port = if l.protocol == ListenerProtocol::Http {
                80
            } else {
                443
            };
            let port = check_port(&mut errs, &format!("{lb}.port"), l.port, Some(default_port))
                .unwrap_or(default_port);
            if let Some(other) = ports.insert(port, &l.name) {
                errs.add(
                    format!("{lb}.port"),
                    format!("port {port} of {vip} is already taken by listener {other:?}"),
                );
            }
            let default_action = action(
                &mut errs,
                &format!("{lb}.defaultAction"),
                &l.default_action,
                &tg_index,
            );
            let mut priorities = BTreeSet::new();
            let mut rule_names = BTreeSet::new();
            let mut rules = Vec::new();
            for (k, r) in l.rules.iter().enumerate() {
                let rb = format!("{lb}.rules[{k}]");
                errs.name(&format!("{rb}.name"), &r.name, 63, Some("rule-"));
                if !rule_names.insert(&r.name) {
                    errs.add(
                        format!("{rb}.name"),
                        format!("rule {:?} is defined twice in this listener", r.name),
                    );
                }
                if !(1..=100).contains(&r.priority) {
                    errs.add(
                        format!("{rb}.priority"),
                        format!("{} is outside 1-100", r.priority),
                    );
                } else if !priorities.insert(r.priority) {
                    errs.add(
                        format!("{rb}.priority"),
                        format!("priority {} is already used in this listener", r.priority),
                    );
                }
                let hm = &r.match_.http_match;
                let method = hm.method.as_ref().and_then(|m| {
                    let ok =
                        !m.is_empty() && m.len() <= 16 && m.bytes().all(|b| b.is_ascii_uppercase());
                    match (ok, http::Method::from_bytes(m.as_bytes())) {
                        (true, Ok(m)) => Some(m),
                        _ => {
                            errs.add(
                                format!("{rb}.match.httpMatch.method"),
                                format!("{m:?} is not an HTTP method"),
                            );
                            None
                        }
                    }
                });
                let path = hm.path_match.as_ref().and_then(|p| {
                    let f = format!("{rb}.match.httpMatch.pathMatch.match");
                    let (kind, value) = match (&p.match_.exact, &p.match_.prefix) {
                        (Some(v), None) => (MatchKind::Exact, v),
                        (None, Some(v)) => (MatchKind::Prefix, v),
                        _ => {
                            errs.add(f, "set exactly one of exact and prefix");
                            return None;
                        }
                    };
                    if !value.starts_with('/') || value.len() > 200 {
                        errs.add(
                            f,
                            format!("{value:?} must start with / and be at most 200 characters"),
                        );
                        return None;
                    }
                    let cs = p.case_sensitive.unwrap_or(true);
                    Some((
                        kind,
                        if cs {
                            value.clone()
                        } else {
                            value.to_ascii_lowercase()
                        },
                        cs,
                    ))
                });
                if hm.header_matches.len() > 5 {
                    errs.add(
                        format!("{rb}.match.httpMatch.headerMatches"),
                        "at most 5 header matches",
                    );
                }
                let mut headers = Vec::new();
                for (h, m) in hm.header_matches.iter().enumerate() {
                    let f = format!("{rb}.match.httpMatch.headerMatches[{h}]");
                    let name = match http::HeaderName::from_bytes(m.name.as_bytes()) {
                        Ok(n) if m.name.len() <= 40 => n,
                        _ => {
                            errs.add(
                                format!("{f}.name"),
                                format!(
                                    "{:?} is not a header name of at most 40 characters",
                                    m.name
                                ),
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
                    headers.push((
                        name,
                        kind,
                        if cs {
                            value.to_owned()
                        } else {
                            value.to_ascii_lowercase()
                        },
                        cs,
                    ));
                }
                if hm.method.is_none() && hm.path_match.is_none() && hm.header_matches.is_empty() {
                    errs.add(
                        format!("{rb}.match.httpMatch"),
                        "a rule needs at least one of method, pathMatch and headerMatches",
                    );
                }
                let action = action(&mut errs, &format!("{rb}.action"), &r.action, &tg_index);
                rules.push(PlannedRule {
                    name: r.name.clone(),
                    priority: u16::try_from(r.priority).unwrap_or(u16::MAX),
                    method,
                    path,
                    headers,
                    action,
                });
            }
            rules.sort_by_key(|r| r.priority);
            listeners.push(PlannedListener {
                name: l.name.clone(),
                port,
                rules,
                default_action,
            });
        }
        let hosts: Vec<String> = svc
            .dns_name
            .iter()
            .chain(svc.custom_domain_name.iter())
            .map(|h| h.to_ascii_lowercase())
            .collect();
        services.push(PlannedService {
            name: svc.name.clone(),
            vip,
            hosts,
            listeners,
            reachable_from: BTreeSet::new(),
        });
    }
    // Services sharing a VIP:port must each have a name to be found by.
    let mut sharing: HashMap<(Ipv4Addr, u16), Vec<usize>> = HashMap::new();
    for (i, svc) in services.iter().enumerate() {
        for l in &svc.listeners {
            sharing.entry((svc.vip, l.port)).or_default().push(i);
        }
    }
    let mut shared: Vec<_> = sharing.into_iter().filter(|(_, v)| v.len() > 1).collect();
    shared.sort();
    for ((vip, port), users) in shared {
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

    // Associations.
    let mut members: HashMap<&str, BTreeSet<usize>> = HashMap::new();
    let mut seen = BTreeSet::new();
    for (i, a) in config
        .service_network_service_associations
        .iter()
        .enumerate()
    {
        let base = format!("serviceNetworkServiceAssociations[{i}]");
        if !networks.contains_key(a.service_network_identifier.as_str()) {
            errs.add(
                format!("{base}.serviceNetworkIdentifier"),
                format!("no service network {:?}", a.service_network_identifier),
            );
        }
        match service_index.get(a.service_identifier.as_str()) {
            None => errs.add(
                format!("{base}.serviceIdentifier"),
                format!("no service {:?}", a.service_identifier),
            ),
            Some(&s) => {
                if !seen.insert((a.service_network_identifier.as_str(), s)) {
                    errs.add(base, "this association is defined twice");
                }
                members
                    .entry(a.service_network_identifier.as_str())
                    .or_default()
                    .insert(s);
            }
        }
    }
    let mut seen = BTreeSet::new();
    for (i, a) in config.service_network_vpc_associations.iter().enumerate() {
        let base = format!("serviceNetworkVpcAssociations[{i}]");
        if !networks.contains_key(a.service_network_identifier.as_str()) {
            errs.add(
                format!("{base}.serviceNetworkIdentifier"),
                format!("no service network {:?}", a.service_network_identifier),
            );
        }
        check_namespace(
            &mut errs,
            &format!("{base}.vpcIdentifier"),
            &a.vpc_identifier,
        );
        if !seen.insert((
            a.service_network_identifier.as_str(),
            a.vpc_identifier.as_str(),
        )) {
            errs.add(base, "this association is defined twice");
        }
        if !exists(&a.vpc_identifier) {
            continue;
        }
        for &s in members
            .get(a.service_network_identifier.as_str())
            .into_iter()
            .flatten()
        {
            if let Some(svc) = services.get_mut(s) {
                svc.reachable_from.insert(a.vpc_identifier.clone());
            }
        }
    }

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
    Ok(plan)
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
    fn netns_dir(names: &[&str]) -> tempdir::Dir {
        tempdir::Dir::with(names)
    }

    mod tempdir {
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
            p.target_groups["app-b"].targets[0].to_string(),
            "10.0.16.10:9090"
        );
        let rule = &p.services["service-a"].listeners[0].rules[0];
        assert_eq!(rule.path, Some((MatchKind::Prefix, "/b".into(), false)));
        assert_eq!(
            rule.action,
            PlannedAction::Forward(vec![(3, "app-b".to_owned())])
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
