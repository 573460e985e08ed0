//! What each operation means: identifiers, references, conflicts, quotas,
//! lifecycle status. Handlers read the current [`State`] and return either a
//! result or a [`Mutation`] (the records to write and the result); they
//! never change state themselves, so a refused request changes nothing.
//!
//! Records are JSON objects in the shape of the Get* responses plus a few
//! internal members (`_seq` creation order, `_vip`, `_targets`). Responses
//! are projected onto the operation's output shape by the engine, so a
//! handler may return a whole record.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Value};

use super::error::ApiError;
use crate::control::{
    count,
    model::{self as cfg, Config},
    plan::{VIP_FIRST, VIP_LAST},
    store::Change,
};

/// Default quotas, as VPC Lattice's defaults.
#[derive(Clone, Debug)]
pub struct Quotas {
    /// Service networks.
    pub service_networks: usize,
    /// Services.
    pub services: usize,
    /// Target groups.
    pub target_groups: usize,
    /// Listeners per service.
    pub listeners_per_service: usize,
    /// Rules per listener.
    pub rules_per_listener: usize,
    /// Targets per target group.
    pub targets_per_target_group: usize,
    /// Service networks a VPC may be associated with.
    pub service_networks_per_vpc: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            service_networks: 10,
            services: 500,
            target_groups: 1000,
            listeners_per_service: 2,
            rules_per_listener: 10,
            targets_per_target_group: 1000,
            service_networks_per_vpc: 1,
        }
    }
}

impl Quotas {
    /// Sets one quota from `NAME=VALUE` (names as the fields, with dashes).
    pub fn set(&mut self, spec: &str) -> Result<(), String> {
        let (name, value) = spec
            .split_once('=')
            .ok_or_else(|| format!("{spec:?}: expected NAME=VALUE"))?;
        let value: usize = value
            .parse()
            .map_err(|_| format!("{spec:?}: {value:?} is not a number"))?;
        let slot = match name {
            "service-networks" => &mut self.service_networks,
            "services" => &mut self.services,
            "target-groups" => &mut self.target_groups,
            "listeners-per-service" => &mut self.listeners_per_service,
            "rules-per-listener" => &mut self.rules_per_listener,
            "targets-per-target-group" => &mut self.targets_per_target_group,
            "service-networks-per-vpc" => &mut self.service_networks_per_vpc,
            _ => return Err(format!("{name:?} is not a quota (service-networks, services, target-groups, listeners-per-service, rules-per-listener, targets-per-target-group, service-networks-per-vpc)")),
        };
        *slot = value;
        Ok(())
    }
}

/// Region, account and limits.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Region in ARNs.
    pub region: String,
    /// Account id in ARNs (12 digits).
    pub account: String,
    /// Quotas.
    pub quotas: Quotas,
    /// Where namespaces (VPCs) are.
    pub netns_dir: std::path::PathBuf,
    /// Suffix of generated service DNS names (`{name}-{id}.{suffix}`).
    pub dns_suffix: String,
}

/// A handler's answer.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing changes.
    Read(Value),
    /// Records change.
    Write(Mutation),
}

/// Changes and the result to answer with once they are durable.
#[derive(Debug)]
pub struct Mutation {
    /// Records to write.
    pub changes: Vec<Change>,
    /// The result.
    pub result: Value,
}

/// Resource kinds: id prefix, ARN path, resource type in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// sn-
    ServiceNetwork,
    /// svc-
    Service,
    /// listener-
    Listener,
    /// rule-
    Rule,
    /// tg-
    TargetGroup,
    /// snsa-
    SnService,
    /// snva-
    SnVpc,
    /// als-
    AccessLog,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Self::ServiceNetwork => "sn-",
            Self::Service => "svc-",
            Self::Listener => "listener-",
            Self::Rule => "rule-",
            Self::TargetGroup => "tg-",
            Self::SnService => "snsa-",
            Self::SnVpc => "snva-",
            Self::AccessLog => "als-",
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            Self::ServiceNetwork => "SERVICE_NETWORK",
            Self::Service => "SERVICE",
            Self::Listener => "LISTENER",
            Self::Rule => "RULE",
            Self::TargetGroup => "TARGET_GROUP",
            Self::SnService => "SERVICE_NETWORK_SERVICE_ASSOCIATION",
            Self::SnVpc => "SERVICE_NETWORK_VPC_ASSOCIATION",
            Self::AccessLog => "ACCESS_LOG_SUBSCRIPTION",
        }
    }
}

/// All resource records, by id.
#[derive(Debug, Default, Clone)]
pub struct State {
    records: BTreeMap<String, Value>,
    next_seq: u64,
    idx: Index,
}

const KINDS: [Kind; 8] = [
    Kind::ServiceNetwork,
    Kind::Service,
    Kind::Listener,
    Kind::Rule,
    Kind::TargetGroup,
    Kind::SnService,
    Kind::SnVpc,
    Kind::AccessLog,
];

/// Record fields that name a parent: listeners, rules and associations by
/// service, rules by listener, associations by service network, VPC
/// associations by VPC, access log subscriptions by resource.
const PARENT_FIELDS: [&str; 5] = [
    "serviceId",
    "listenerId",
    "serviceNetworkId",
    "vpcId",
    "resourceId",
];

/// What handlers look up, kept in step with the records by [`State::apply`]
/// so that a request costs the same with ten services or a thousand.
#[derive(Debug, Default, Clone, PartialEq)]
struct Index {
    /// `{prefix}{name}` -> id, for the kinds whose names are unique.
    names: HashMap<String, String>,
    /// Records per kind prefix.
    counts: BTreeMap<&'static str, u32>,
    /// Parent id (VPCs as `vpc:NAME`) -> child ids.
    children: HashMap<String, BTreeSet<String>>,
    /// Services per VIP.
    vip_load: BTreeMap<String, u32>,
    /// Target group id -> listener and rule ids whose actions use it.
    tg_users: HashMap<String, BTreeSet<String>>,
}

fn action_groups(action: &Value) -> impl Iterator<Item = &str> {
    action["forward"]["targetGroups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| s(g, "targetGroupIdentifier"))
}

impl Index {
    fn update(&mut self, key: &str, rec: &Value, add: bool) {
        let Some(kind) = KINDS.iter().copied().find(|k| key.starts_with(k.prefix())) else {
            return;
        };
        fn set(map: &mut HashMap<String, BTreeSet<String>>, at: String, key: &str, add: bool) {
            if add {
                map.entry(at).or_default().insert(key.to_owned());
            } else if let Some(v) = map.get_mut(&at) {
                v.remove(key);
                if v.is_empty() {
                    map.remove(&at);
                }
            }
        }
        count(&mut self.counts, kind.prefix(), add);
        if matches!(
            kind,
            Kind::ServiceNetwork | Kind::Service | Kind::TargetGroup
        ) {
            let name = format!("{}{}", kind.prefix(), s(rec, "name"));
            if add {
                self.names.insert(name, key.to_owned());
            } else {
                self.names.remove(&name);
            }
        }
        for field in PARENT_FIELDS {
            if let Some(parent) = rec[field].as_str() {
                let at = if field == "vpcId" {
                    format!("vpc:{parent}")
                } else {
                    parent.to_owned()
                };
                set(&mut self.children, at, key, add);
            }
        }
        if kind == Kind::Service {
            count(&mut self.vip_load, s(rec, "_vip").to_owned(), add);
        }
        if let Some(vpc) = rec["config"]["vpcIdentifier"]
            .as_str()
            .filter(|_| kind == Kind::TargetGroup)
        {
            set(&mut self.children, format!("vpc:{vpc}"), key, add);
        }
        let action = match kind {
            Kind::Listener => &rec["defaultAction"],
            Kind::Rule => &rec["action"],
            _ => return,
        };
        for tg in action_groups(action) {
            set(&mut self.tg_users, tg.to_owned(), key, add);
        }
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

fn new_id(kind: Kind) -> String {
    let mut b = [0u8; 9];
    // getrandom only fails without any entropy source, which Linux always has;
    // zero bytes would still give a syntactically valid id.
    let _ = getrandom::fill(&mut b);
    let hex = hex::encode(b);
    format!("{}{}", kind.prefix(), &hex[..17])
}

impl State {
    /// Rebuilds the state from stored records.
    pub fn from_records(rows: Vec<(String, Value)>) -> Self {
        let next_seq = rows
            .iter()
            .filter_map(|(_, v)| v["_seq"].as_u64())
            .max()
            .unwrap_or(0)
            + 1;
        let mut idx = Index::default();
        for (k, v) in &rows {
            idx.update(k, v, true);
        }
        Self {
            records: rows.into_iter().collect(),
            next_seq,
            idx,
        }
    }

    /// Applies changes; returns the changes that undo them.
    pub fn apply(&mut self, changes: &[Change]) -> Vec<Change> {
        let mut undo = Vec::with_capacity(changes.len());
        for c in changes {
            let (key, new) = match c {
                Change::Put(k, v) => (k, Some(v)),
                Change::Delete(k) => (k, None),
            };
            let old = match new {
                Some(v) => {
                    if let Some(seq) = v["_seq"].as_u64() {
                        self.next_seq = self.next_seq.max(seq + 1);
                    }
                    self.records.insert(key.clone(), v.clone())
                }
                None => self.records.remove(key),
            };
            if let Some(o) = &old {
                self.idx.update(key, o, false);
            }
            if let Some(v) = new {
                self.idx.update(key, v, true);
            }
            undo.push(match old {
                Some(v) => Change::Put(key.clone(), v),
                None => Change::Delete(key.clone()),
            });
        }
        undo.reverse();
        undo
    }

    fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Value> {
        let p = kind.prefix();
        self.records
            .range(p.to_owned()..)
            .take_while(move |(k, _)| k.starts_with(p))
            .map(|(_, v)| v)
    }

    /// Finds a record by id or ARN.
    fn resolve(&self, kind: Kind, ident: &str) -> Result<&Value, ApiError> {
        let id = if ident.starts_with("arn:") {
            ident.rsplit('/').next().unwrap_or_default()
        } else {
            ident
        };
        self.records
            .get(id)
            .filter(|r| {
                id.starts_with(kind.prefix())
                    && (!ident.starts_with("arn:") || s(r, "arn") == ident)
            })
            .ok_or_else(|| ApiError::not_found(kind.type_name(), ident))
    }

    fn by_name(&self, kind: Kind, name: &str) -> Option<&Value> {
        self.idx
            .names
            .get(&format!("{}{name}", kind.prefix()))
            .and_then(|id| self.records.get(id))
    }

    fn count(&self, kind: Kind) -> usize {
        self.idx
            .counts
            .get(kind.prefix())
            .map_or(0, |n| *n as usize)
    }

    /// The `kind` records whose parent field names `parent` (VPCs as `vpc:NAME`).
    fn children(&self, parent: &str, kind: Kind) -> impl Iterator<Item = &Value> {
        self.idx
            .children
            .get(parent)
            .into_iter()
            .flatten()
            .filter(move |id| id.starts_with(kind.prefix()))
            .filter_map(|id| self.records.get(id))
    }

    fn action_cfg(&self, a: &Value) -> cfg::RuleAction {
        let tg_name = |id: &str| {
            self.records
                .get(id)
                .map(|r| s(r, "name").to_owned())
                .unwrap_or_default()
        };
        if let Some(f) = a.get("forward").filter(|f| !f.is_null()) {
            cfg::RuleAction {
                forward: Some(cfg::ForwardAction {
                    target_groups: f["targetGroups"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|t| cfg::WeightedTargetGroup {
                            target_group_identifier: tg_name(s(t, "targetGroupIdentifier")),
                            weight: t["weight"].as_u64().map(|w| w as u32),
                        })
                        .collect(),
                }),
                fixed_response: None,
            }
        } else {
            cfg::RuleAction {
                forward: None,
                fixed_response: Some(cfg::FixedResponseAction {
                    status_code: a["fixedResponse"]["statusCode"].as_u64().unwrap_or(404) as u32,
                }),
            }
        }
    }

    fn sn_cfg(sn: &Value) -> cfg::ServiceNetwork {
        cfg::ServiceNetwork {
            name: s(sn, "name").to_owned(),
            auth_type: auth_type(sn),
            arn: sn["arn"].as_str().map(str::to_owned),
        }
    }

    fn service_cfg(&self, svc: &Value) -> cfg::Service {
        cfg::Service {
            name: s(svc, "name").to_owned(),
            auth_type: auth_type(svc),
            custom_domain_name: svc["customDomainName"].as_str().map(str::to_owned),
            certificate_arn: svc["certificateArn"].as_str().map(str::to_owned),
            arn: svc["arn"].as_str().map(str::to_owned),
            vip: s(svc, "_vip").parse().ok(),
            dns_name: svc["dnsEntry"]["domainName"].as_str().map(str::to_owned),
            listeners: sorted(self.children(s(svc, "id"), Kind::Listener))
                .into_iter()
                .map(|l| cfg::Listener {
                    name: s(l, "name").to_owned(),
                    protocol: serde_json::from_value(l["protocol"].clone())
                        .unwrap_or(cfg::ListenerProtocol::Http),
                    port: l["port"].as_u64().map(|p| p as u32),
                    default_action: self.action_cfg(&l["defaultAction"]),
                    rules: sorted(self.children(s(l, "id"), Kind::Rule))
                        .into_iter()
                        .map(|r| cfg::Rule {
                            name: s(r, "name").to_owned(),
                            priority: r["priority"].as_u64().unwrap_or(0) as u32,
                            match_: serde_json::from_value(r["match"].clone()).unwrap_or(
                                cfg::RuleMatch {
                                    http_match: cfg::HttpMatch::default(),
                                },
                            ),
                            action: self.action_cfg(&r["action"]),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    fn tg_cfg(tg: &Value) -> cfg::TargetGroup {
        let c = &tg["config"];
        cfg::TargetGroup {
            name: s(tg, "name").to_owned(),
            type_: serde_json::from_value(tg["type"].clone()).unwrap_or(cfg::TargetGroupType::Ip),
            config: Some(cfg::TargetGroupConfig {
                port: c["port"].as_u64().map(|p| p as u32),
                protocol: serde_json::from_value(c["protocol"].clone()).ok(),
                protocol_version: c["protocolVersion"].as_str().map(str::to_owned),
                vpc_identifier: c["vpcIdentifier"].as_str().map(str::to_owned),
                ip_address_type: c["ipAddressType"].as_str().map(str::to_owned),
                // Stored as the API accepted it, which the model validated.
                health_check: c
                    .get("healthCheck")
                    .filter(|h| h.is_object())
                    .and_then(|h| serde_json::from_value(h.clone()).ok()),
                lambda_event_structure_version: c["lambdaEventStructureVersion"]
                    .as_str()
                    .map(str::to_owned),
            }),
            arn: tg["arn"].as_str().map(str::to_owned),
            targets: tg["_targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| cfg::Target {
                    id: s(t, "id").to_owned(),
                    port: t["port"].as_u64().map(|p| p as u32),
                })
                .collect(),
        }
    }

    fn snsa_cfg(a: &Value) -> cfg::ServiceNetworkServiceAssociation {
        cfg::ServiceNetworkServiceAssociation {
            service_network_identifier: s(a, "serviceNetworkName").to_owned(),
            service_identifier: s(a, "serviceName").to_owned(),
        }
    }

    fn snva_cfg(a: &Value) -> cfg::ServiceNetworkVpcAssociation {
        cfg::ServiceNetworkVpcAssociation {
            service_network_identifier: s(a, "serviceNetworkName").to_owned(),
            vpc_identifier: s(a, "vpcId").to_owned(),
            security_group_ids: vec![],
        }
    }

    /// The whole desired configuration the data plane compiles (references
    /// by name).
    pub fn to_config(&self) -> Config {
        Config {
            service_networks: sorted(self.of_kind(Kind::ServiceNetwork))
                .into_iter()
                .map(Self::sn_cfg)
                .collect(),
            services: sorted(self.of_kind(Kind::Service))
                .into_iter()
                .map(|svc| self.service_cfg(svc))
                .collect(),
            target_groups: sorted(self.of_kind(Kind::TargetGroup))
                .into_iter()
                .map(Self::tg_cfg)
                .collect(),
            service_network_service_associations: sorted(self.of_kind(Kind::SnService))
                .into_iter()
                .map(Self::snsa_cfg)
                .collect(),
            service_network_vpc_associations: sorted(self.of_kind(Kind::SnVpc))
                .into_iter()
                .map(Self::snva_cfg)
                .collect(),
            access_log_subscriptions: sorted(self.of_kind(Kind::AccessLog))
                .into_iter()
                .filter_map(|a| self.als_cfg(a))
                .collect(),
            auth_policies: self
                .records
                .iter()
                .filter(|(k, _)| k.starts_with("authpolicy/"))
                .filter_map(|(_, p)| self.policy_cfg(p))
                .collect(),
        }
    }

    fn policy_cfg(&self, p: &Value) -> Option<cfg::AuthPolicy> {
        let owner = self.records.get(s(p, "resourceId"))?;
        Some(cfg::AuthPolicy {
            resource_identifier: s(owner, "name").to_owned(),
            policy: Value::String(s(p, "policy").to_owned()),
        })
    }

    fn als_cfg(&self, a: &Value) -> Option<cfg::AccessLogSubscription> {
        let owner = self.records.get(s(a, "resourceId"))?;
        Some(cfg::AccessLogSubscription {
            resource_identifier: s(owner, "name").to_owned(),
            destination_arn: s(a, "destinationArn").to_owned(),
        })
    }

    /// The part of the configuration one service depends on: the service,
    /// its listeners and rules, the target groups they use, its service
    /// networks and their VPC associations. Planning it gives the same
    /// result for that service as planning everything.
    pub fn service_config(&self, id: &str) -> Option<Config> {
        let svc = self.records.get(id)?;
        let mut groups = BTreeSet::new();
        for l in self.children(id, Kind::Listener) {
            groups.extend(action_groups(&l["defaultAction"]).map(str::to_owned));
            for r in self.children(s(l, "id"), Kind::Rule) {
                groups.extend(action_groups(&r["action"]).map(str::to_owned));
            }
        }
        let assocs = sorted(self.children(id, Kind::SnService));
        let networks: Vec<&Value> = assocs
            .iter()
            .filter_map(|a| self.records.get(s(a, "serviceNetworkId")))
            .collect();
        Some(Config {
            service_networks: networks.iter().map(|sn| Self::sn_cfg(sn)).collect(),
            services: vec![self.service_cfg(svc)],
            target_groups: groups
                .iter()
                .filter_map(|g| self.records.get(g))
                .map(Self::tg_cfg)
                .collect(),
            service_network_service_associations: assocs
                .iter()
                .map(|a| Self::snsa_cfg(a))
                .collect(),
            service_network_vpc_associations: networks
                .iter()
                .flat_map(|sn| sorted(self.children(s(sn, "id"), Kind::SnVpc)))
                .map(Self::snva_cfg)
                .collect(),
            access_log_subscriptions: std::iter::once(id)
                .chain(networks.iter().map(|sn| s(sn, "id")))
                .flat_map(|owner| sorted(self.children(owner, Kind::AccessLog)))
                .filter_map(|a| self.als_cfg(a))
                .collect(),
            auth_policies: std::iter::once(id)
                .chain(networks.iter().map(|sn| s(sn, "id")))
                .filter_map(|owner| self.records.get(&format!("authpolicy/{owner}")))
                .filter_map(|p| self.policy_cfg(p))
                .collect(),
        })
    }

    /// One target group alone, as a configuration.
    pub fn group_config(&self, id: &str) -> Option<Config> {
        let tg = self.records.get(id)?;
        Some(Config {
            target_groups: vec![Self::tg_cfg(tg)],
            ..Config::default()
        })
    }

    /// Namespaces the state names (VPC associations and target groups).
    pub fn referenced_namespaces(&self) -> impl Iterator<Item = &str> {
        self.idx
            .children
            .keys()
            .filter_map(|k| k.strip_prefix("vpc:"))
    }

    /// What `changes` (applied, with `undo` their inverse) touched.
    pub fn affected(&self, changes: &[Change], undo: &[Change]) -> Affected {
        let before: HashMap<&str, &Value> = undo
            .iter()
            .filter_map(|c| match c {
                Change::Put(k, v) => Some((k.as_str(), v)),
                Change::Delete(_) => None,
            })
            .collect();
        let mut a = Affected::default();
        let add_service = |a: &mut Affected, id: &str| {
            if let Some(r) = self.records.get(id).or_else(|| before.get(id).copied()) {
                a.services.insert(id.to_owned(), s(r, "name").to_owned());
            }
        };
        for c in changes {
            let (Change::Put(key, _) | Change::Delete(key)) = c;
            let old = before.get(key.as_str()).copied();
            let new = self.records.get(key);
            if let Some(owner) = key.strip_prefix("authpolicy/") {
                if owner.starts_with("svc-") {
                    add_service(&mut a, owner);
                } else {
                    for assoc in self.children(owner, Kind::SnService) {
                        add_service(&mut a, s(assoc, "serviceId"));
                    }
                }
                continue;
            }
            let Some(kind) = KINDS.iter().copied().find(|k| key.starts_with(k.prefix())) else {
                continue;
            };
            for r in old.iter().chain(new.iter()) {
                match kind {
                    Kind::Service => add_service(&mut a, key),
                    Kind::Listener | Kind::Rule | Kind::SnService => {
                        add_service(&mut a, s(r, "serviceId"))
                    }
                    Kind::SnVpc | Kind::ServiceNetwork => {
                        let sn = if kind == Kind::ServiceNetwork {
                            key.as_str()
                        } else {
                            s(r, "serviceNetworkId")
                        };
                        for assoc in self.children(sn, Kind::SnService) {
                            add_service(&mut a, s(assoc, "serviceId"));
                        }
                    }
                    Kind::TargetGroup => {
                        a.groups.insert(key.clone(), s(r, "name").to_owned());
                        for user in self.idx.tg_users.get(key.as_str()).into_iter().flatten() {
                            if let Some(u) = self.records.get(user) {
                                add_service(&mut a, s(u, "serviceId"));
                            }
                        }
                    }
                    Kind::AccessLog => {
                        let owner = s(r, "resourceId");
                        if owner.starts_with("svc-") {
                            add_service(&mut a, owner);
                        } else {
                            for assoc in self.children(owner, Kind::SnService) {
                                add_service(&mut a, s(assoc, "serviceId"));
                            }
                        }
                    }
                }
            }
            if kind == Kind::SnVpc {
                if let Some(o) = old {
                    a.associations.push((s(o, "vpcId").to_owned(), false));
                }
                if let Some(n) = new {
                    a.associations.push((s(n, "vpcId").to_owned(), true));
                }
            }
        }
        a
    }
}

fn sorted<'a>(it: impl Iterator<Item = &'a Value>) -> Vec<&'a Value> {
    let mut v: Vec<&Value> = it.collect();
    v.sort_by_key(|r| r["_seq"].as_u64().unwrap_or(0));
    v
}

/// What a change touched (see [`State::affected`]).
#[derive(Debug, Default)]
pub struct Affected {
    /// Services (id -> name) whose plan may have changed.
    pub services: BTreeMap<String, String>,
    /// Target groups (id -> name) that changed.
    pub groups: BTreeMap<String, String>,
    /// VPC associations counted out (false) or in (true), by namespace.
    pub associations: Vec<(String, bool)>,
}

fn auth_type(v: &Value) -> cfg::AuthType {
    if s(v, "authType") == "AWS_IAM" {
        cfg::AuthType::AwsIam
    } else {
        cfg::AuthType::None
    }
}

/// Context of one request.
struct Ctx<'a> {
    state: &'a State,
    settings: &'a Settings,
    now: String,
    input: &'a Value,
}

impl<'a> Ctx<'a> {
    fn arn(&self, path: &str) -> String {
        format!(
            "arn:aws:vpc-lattice:{}:{}:{path}",
            self.settings.region, self.settings.account
        )
    }

    fn get(&self, key: &str) -> &str {
        s(self.input, key)
    }

    fn page(
        &self,
        items: Vec<&Value>,
        summary: impl Fn(&Value) -> Value,
    ) -> Result<Outcome, ApiError> {
        let max = self.input["maxResults"].as_u64().unwrap_or(100) as usize;
        let start = match self.input["nextToken"].as_str() {
            None => 0,
            Some(tok) => items
                .iter()
                .position(|r| s(r, "id") == tok || s(r, "_key") == tok)
                .ok_or_else(|| ApiError::field("nextToken", "is not a token this API returned"))?,
        };
        let page: Vec<Value> = items
            .iter()
            .skip(start)
            .take(max)
            .map(|r| summary(r))
            .collect();
        let mut out = json!({"items": page});
        if let Some(next) = items.get(start + max) {
            let key = next["id"]
                .as_str()
                .or(next["_key"].as_str())
                .unwrap_or_default();
            out["nextToken"] = key.into();
        }
        Ok(Outcome::Read(out))
    }

    fn record(&self, kind: Kind, fields: Value) -> (String, Value) {
        let id = new_id(kind);
        let mut rec = fields;
        rec["id"] = id.clone().into();
        rec["createdAt"] = self.now.clone().into();
        rec["lastUpdatedAt"] = self.now.clone().into();
        rec["_seq"] = self.state.next_seq.into();
        if rec.get("tags").is_none() {
            if let Some(t) = self.input.get("tags") {
                rec["tags"] = t.clone();
            }
        }
        (id, rec)
    }

    /// A new resource of a globally named kind: its name must be free and
    /// the kind under its quota.
    fn check_new(&self, kind: Kind, noun: &str, quota: &str, limit: usize) -> Result<(), ApiError> {
        let name = self.get("name");
        if let Some(existing) = self.state.by_name(kind, name) {
            return Err(ApiError::conflict(
                kind.type_name(),
                s(existing, "id"),
                format!("a {noun} named {name} already exists"),
            ));
        }
        if self.state.count(kind) >= limit {
            return Err(ApiError::quota(kind.type_name(), quota, limit));
        }
        Ok(())
    }

    /// The `kind` records under `parent` (by `parent_field`), checking that
    /// the new one's name is free among them.
    fn new_child(
        &self,
        kind: Kind,
        parent_field: &str,
        parent: &str,
        parent_noun: &str,
        noun: &str,
    ) -> Result<Vec<&'a Value>, ApiError> {
        let name = self.get("name");
        let mine: Vec<&Value> = self
            .state
            .children(parent, kind)
            .filter(|r| s(r, parent_field) == parent)
            .collect();
        if let Some(r) = mine.iter().find(|r| s(r, "name") == name) {
            return Err(ApiError::conflict(
                kind.type_name(),
                s(r, "id"),
                format!("{parent_noun} {parent} already has a {noun} named {name}"),
            ));
        }
        Ok(mine)
    }

    /// A Get*: the record, whole (the engine projects it).
    fn read(&self, kind: Kind, ident_field: &str) -> Result<Outcome, ApiError> {
        Ok(Outcome::Read(
            self.state.resolve(kind, self.get(ident_field))?.clone(),
        ))
    }

    /// A Create*: gives the new record its ARN (`.../{arn_type}/{id}`) and
    /// writes it.
    fn created(&self, id: String, mut rec: Value, arn_type: &str) -> Result<Outcome, ApiError> {
        rec["arn"] = self.arn(&format!("{arn_type}/{id}")).into();
        write(vec![Change::Put(id, rec.clone())], rec)
    }

    /// An Update* that replaces some members of one record with the input's.
    fn update(&self, kind: Kind, ident_field: &str, members: &[&str]) -> Result<Outcome, ApiError> {
        let r = self.state.resolve(kind, self.get(ident_field))?;
        let mut rec = self.touched(r);
        for m in members {
            if let Some(v) = self.input.get(*m) {
                rec[*m] = v.clone();
            }
        }
        write(vec![Change::Put(s(r, "id").to_owned(), rec.clone())], rec)
    }

    /// The id of an optional identifier parameter (a List filter), if given.
    fn optional_id(&self, kind: Kind, field: &str) -> Result<Option<String>, ApiError> {
        match self.input[field].as_str() {
            Some(ident) => Ok(Some(s(self.state.resolve(kind, ident)?, "id").to_owned())),
            None => Ok(None),
        }
    }

    fn touched(&self, rec: &Value) -> Value {
        let mut r = rec.clone();
        r["lastUpdatedAt"] = self.now.clone().into();
        r
    }

    /// Checks that every target group in an action exists, and normalises
    /// identifiers to ids.
    fn action(&self, field: &str, action: &Value) -> Result<Value, ApiError> {
        let mut a = action.clone();
        // get_mut, not IndexMut: indexing would insert a null `forward` into
        // a fixed-response action.
        if let Some(groups) = a
            .get_mut("forward")
            .and_then(|f| f.get_mut("targetGroups"))
            .and_then(Value::as_array_mut)
        {
            for (i, g) in groups.iter_mut().enumerate() {
                let ident = s(g, "targetGroupIdentifier").to_owned();
                let tg = self.state.resolve(Kind::TargetGroup, &ident).map_err(|_| {
                    ApiError::field(
                        &format!("{field}.forward.targetGroups[{i}].targetGroupIdentifier"),
                        format!("target group {ident} does not exist"),
                    )
                })?;
                g["targetGroupIdentifier"] = tg["id"].clone();
                if g.get("weight").is_none() {
                    g["weight"] = 1.into();
                }
            }
        }
        Ok(a)
    }
}

fn write(changes: Vec<Change>, result: Value) -> Result<Outcome, ApiError> {
    Ok(Outcome::Write(Mutation { changes, result }))
}

/// Why latticed does not implement `op`, if it does not.
pub fn unsupported(op: &str) -> Option<ApiError> {
    let what = if op.contains("ResourceGateway") {
        "resource gateways"
    } else if op.contains("ResourceConfiguration")
        || op.contains("ServiceNetworkResourceAssociation")
        || op.contains("ResourceEndpointAssociation")
    {
        "resource configurations"
    } else if op.contains("DomainVerification") {
        "domain verifications"
    } else if op.contains("VpcEndpointAssociation") {
        "VPC endpoint associations"
    } else {
        return None;
    };
    Some(ApiError::unsupported(op, what))
}

/// Handles `op` with validated `input`.
pub fn handle(
    op: &str,
    input: &Value,
    state: &State,
    settings: &Settings,
    now: String,
) -> Result<Outcome, ApiError> {
    let c = Ctx {
        state,
        settings,
        now,
        input,
    };
    let q = &settings.quotas;
    match op {
        // ===== service networks =====
        "CreateServiceNetwork" => {
            c.check_new(
                Kind::ServiceNetwork,
                "service network",
                "service-networks",
                q.service_networks,
            )?;
            let name = c.get("name");
            let (id, mut rec) = c.record(
                Kind::ServiceNetwork,
                json!({
                    "name": name,
                    "authType": input["authType"].as_str().unwrap_or("NONE"),
                }),
            );
            if let Some(sc) = input.get("sharingConfig") {
                rec["sharingConfig"] = sc.clone();
            }
            c.created(id, rec, "servicenetwork")
        }
        "GetServiceNetwork" => {
            let sn = state.resolve(Kind::ServiceNetwork, c.get("serviceNetworkIdentifier"))?;
            Ok(Outcome::Read(sn_with_counts(state, sn)))
        }
        "ListServiceNetworks" => c.page(sorted(state.of_kind(Kind::ServiceNetwork)), |r| {
            sn_with_counts(state, r)
        }),
        "UpdateServiceNetwork" => c.update(
            Kind::ServiceNetwork,
            "serviceNetworkIdentifier",
            &["authType"],
        ),
        "DeleteServiceNetwork" => {
            let sn = state.resolve(Kind::ServiceNetwork, c.get("serviceNetworkIdentifier"))?;
            let id = s(sn, "id");
            let assocs = state.children(id, Kind::SnService).count()
                + state.children(id, Kind::SnVpc).count();
            if assocs > 0 {
                return Err(ApiError::conflict(
                    "SERVICE_NETWORK",
                    id,
                    format!(
                        "service network {id} still has {assocs} associations; delete them first"
                    ),
                ));
            }
            let mut changes = vec![Change::Delete(id.to_owned())];
            changes.extend(dependents(state, id));
            write(changes, json!({}))
        }

        // ===== services =====
        "CreateService" => {
            c.check_new(Kind::Service, "service", "services", q.services)?;
            let name = c.get("name");
            // One VIP per service while they last; then the least used one,
            // shared (requests are told apart by the service's DNS name).
            let load: BTreeMap<u32, usize> = (u32::from(VIP_FIRST)..=u32::from(VIP_LAST))
                .map(|v| {
                    let ip = std::net::Ipv4Addr::from(v).to_string();
                    (v, state.idx.vip_load.get(&ip).map_or(0, |n| *n as usize))
                })
                .collect();
            let vip = load
                .iter()
                .min_by_key(|(addr, n)| (**n, **addr))
                .map(|(addr, _)| std::net::Ipv4Addr::from(*addr).to_string())
                .unwrap_or_default();
            let (id, mut rec) = c.record(
                Kind::Service,
                json!({
                    "name": name,
                    "authType": input["authType"].as_str().unwrap_or("NONE"),
                    "status": "ACTIVE",
                    "_vip": vip,
                }),
            );
            rec["dnsEntry"] = json!({
                "domainName": format!("{name}-{}.{}", id.trim_start_matches("svc-"), settings.dns_suffix),
            });
            for k in ["customDomainName", "certificateArn"] {
                if let Some(v) = input.get(k) {
                    rec[k] = v.clone();
                }
            }
            c.created(id, rec, "service")
        }
        "GetService" => c.read(Kind::Service, "serviceIdentifier"),
        "ListServices" => c.page(sorted(state.of_kind(Kind::Service)), Value::clone),
        "UpdateService" => c.update(
            Kind::Service,
            "serviceIdentifier",
            &["authType", "certificateArn"],
        ),
        "DeleteService" => {
            let svc = state.resolve(Kind::Service, c.get("serviceIdentifier"))?;
            let id = s(svc, "id");
            if let Some(a) = state.children(id, Kind::SnService).next() {
                return Err(ApiError::conflict("SERVICE", id, format!("service {id} is still associated with service network {}; delete association {} first", s(a, "serviceNetworkName"), s(a, "id"))));
            }
            let mut changes = vec![Change::Delete(id.to_owned())];
            for l in state.children(id, Kind::Listener) {
                changes.push(Change::Delete(s(l, "id").to_owned()));
                for r in state.children(s(l, "id"), Kind::Rule) {
                    changes.push(Change::Delete(s(r, "id").to_owned()));
                }
            }
            changes.extend(dependents(state, id));
            let mut out = svc.clone();
            out["status"] = "DELETE_IN_PROGRESS".into();
            write(changes, out)
        }

        // ===== target groups and targets =====
        "CreateTargetGroup" => {
            c.check_new(
                Kind::TargetGroup,
                "target group",
                "target-groups",
                q.target_groups,
            )?;
            let name = c.get("name");
            let ty = c.get("type");
            let mut config = input["config"].clone();
            if ty == "LAMBDA" {
                if !config.is_object() {
                    config = json!({});
                }
                for k in [
                    "port",
                    "protocol",
                    "protocolVersion",
                    "vpcIdentifier",
                    "ipAddressType",
                    "healthCheck",
                ] {
                    if config.get(k).is_some() {
                        return Err(ApiError::field(
                            &format!("config.{k}"),
                            "does not apply to LAMBDA target groups",
                        ));
                    }
                }
                if config.get("lambdaEventStructureVersion").is_none() {
                    config["lambdaEventStructureVersion"] = "V1".into();
                }
            } else {
                if !config.is_object() {
                    return Err(ApiError::field(
                        "config",
                        format!("is required for {ty} target groups"),
                    ));
                }
                for k in ["port", "protocol", "vpcIdentifier"] {
                    if config.get(k).is_none() {
                        return Err(ApiError::field(
                            &format!("config.{k}"),
                            format!("is required for {ty} target groups"),
                        ));
                    }
                }
                check_vpc(
                    settings,
                    "config.vpcIdentifier",
                    s(&config, "vpcIdentifier"),
                )?;
                if config.get("ipAddressType").is_none() && ty == "IP" {
                    config["ipAddressType"] = "IPV4".into();
                }
                if config.get("protocolVersion").is_none() {
                    config["protocolVersion"] = "HTTP1".into();
                }
            }
            let (id, rec) = c.record(
                Kind::TargetGroup,
                json!({
                    "name": name, "type": ty, "config": config, "status": "ACTIVE", "_targets": [],
                }),
            );
            c.created(id, rec, "targetgroup")
        }
        "GetTargetGroup" => {
            let tg = state.resolve(Kind::TargetGroup, c.get("targetGroupIdentifier"))?;
            Ok(Outcome::Read(tg_view(state, tg)))
        }
        "ListTargetGroups" => {
            let items: Vec<&Value> = sorted(state.of_kind(Kind::TargetGroup))
                .into_iter()
                .filter(|t| {
                    input
                        .get("vpcIdentifier")
                        .is_none_or(|v| t["config"]["vpcIdentifier"] == *v)
                })
                .filter(|t| input.get("targetGroupType").is_none_or(|v| t["type"] == *v))
                .collect();
            c.page(items, |t| {
                let mut v = tg_view(state, t);
                for k in [
                    "port",
                    "protocol",
                    "vpcIdentifier",
                    "ipAddressType",
                    "lambdaEventStructureVersion",
                ] {
                    if let Some(x) = t["config"].get(k) {
                        v[k] = x.clone();
                    }
                }
                v
            })
        }
        "UpdateTargetGroup" => {
            let tg = state.resolve(Kind::TargetGroup, c.get("targetGroupIdentifier"))?;
            let mut rec = c.touched(tg);
            rec["config"]["healthCheck"] = input["healthCheck"].clone();
            write(
                vec![Change::Put(s(tg, "id").to_owned(), rec.clone())],
                tg_view(state, &rec),
            )
        }
        "DeleteTargetGroup" => {
            let tg = state.resolve(Kind::TargetGroup, c.get("targetGroupIdentifier"))?;
            let id = s(tg, "id");
            let users = tg_users(state, id);
            if !users.is_empty() {
                return Err(ApiError::conflict(
                    "TARGET_GROUP",
                    id,
                    format!(
                        "target group {id} is used by {}; change those actions first",
                        users.join(", ")
                    ),
                ));
            }
            let mut out = tg.clone();
            out["status"] = "DELETE_IN_PROGRESS".into();
            let mut changes = vec![Change::Delete(id.to_owned())];
            changes.extend(dependents(state, id));
            write(changes, out)
        }
        "RegisterTargets" => {
            let limit = q.targets_per_target_group;
            let tg = state.resolve(Kind::TargetGroup, c.get("targetGroupIdentifier"))?;
            let ty = s(tg, "type").to_owned();
            edit_targets(&c, |targets, tid, port| {
                let bad = match ty.as_str() {
                    "IP" => tid
                        .parse::<std::net::Ipv4Addr>()
                        .is_err()
                        .then(|| format!("{tid} is not an IPv4 address")),
                    "INSTANCE" => (!tid.starts_with("i-"))
                        .then(|| format!("{tid} is not an instance id (i-...)")),
                    "LAMBDA" => {
                        if !tid.starts_with("arn:") || !tid.contains(":function:") {
                            Some(format!("{tid} is not a function ARN"))
                        } else if targets.iter().any(|x| s(x, "id") != tid) {
                            Some("a LAMBDA target group holds one function".into())
                        } else {
                            None
                        }
                    }
                    "ALB" => (!tid.starts_with("arn:") || !tid.contains(":loadbalancer/"))
                        .then(|| format!("{tid} is not a load balancer ARN")),
                    // Stored groups were validated against the model's
                    // enum; a type added there later gets no silent
                    // default here.
                    other => Some(format!("target group type {other:?} takes no targets here")),
                };
                if let Some(why) = bad {
                    return Err(("InvalidTarget", why));
                }
                if !targets
                    .iter()
                    .any(|x| s(x, "id") == tid && x["port"] == *port)
                {
                    if targets.len() >= limit {
                        return Err((
                            "ServiceQuotaExceeded",
                            "targets-per-target-group quota reached".into(),
                        ));
                    }
                    targets.push(json!({"id": tid, "port": port}));
                }
                Ok(())
            })
        }
        "DeregisterTargets" => edit_targets(&c, |targets, tid, port| {
            let before = targets.len();
            targets.retain(|x| !(s(x, "id") == tid && x["port"] == *port));
            if targets.len() < before {
                Ok(())
            } else {
                Err(("TargetNotFound", "the target is not registered".into()))
            }
        }),
        "ListTargets" => {
            let tg = state.resolve(Kind::TargetGroup, c.get("targetGroupIdentifier"))?;
            let used = !tg_users(state, s(tg, "id")).is_empty();
            let filter: Vec<&Value> = input["targets"]
                .as_array()
                .map(|v| v.iter().collect())
                .unwrap_or_default();
            let targets: Vec<Value> = tg["_targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| {
                    filter.is_empty()
                        || filter.iter().any(|f| {
                            s(f, "id") == s(t, "id")
                                && f.get("port").is_none_or(|p| *p == t["port"])
                        })
                })
                .map(|t| {
                    let mut v = t.clone();
                    // A target in use gets its health from the data path
                    // (the daemon fills `_group` targets in); until a
                    // snapshot holds it, it is INITIAL.
                    let (status, reason) = if used {
                        v["_group"] = tg["name"].clone();
                        ("INITIAL", "Elb.InitialHealthChecking")
                    } else {
                        ("UNUSED", "TargetGroupNotInUse")
                    };
                    v["status"] = status.into();
                    v["reasonCode"] = reason.into();
                    v["_key"] = format!("{}:{}", s(t, "id"), t["port"]).into();
                    v
                })
                .collect();
            c.page(targets.iter().collect(), Value::clone)
        }

        // ===== listeners =====
        "CreateListener" => {
            let svc = state.resolve(Kind::Service, c.get("serviceIdentifier"))?;
            let sid = s(svc, "id");
            let name = c.get("name");
            let mine = c.new_child(Kind::Listener, "serviceId", sid, "service", "listener")?;
            if mine.len() >= q.listeners_per_service {
                return Err(ApiError::quota(
                    "LISTENER",
                    "listeners-per-service",
                    q.listeners_per_service,
                ));
            }
            let protocol = c.get("protocol");
            let port = input["port"]
                .as_u64()
                .unwrap_or(if protocol == "HTTP" { 80 } else { 443 });
            if let Some(l) = mine.iter().find(|l| l["port"].as_u64() == Some(port)) {
                return Err(ApiError::conflict(
                    "LISTENER",
                    s(l, "id"),
                    format!(
                        "port {port} of service {sid} is already taken by listener {}",
                        s(l, "name")
                    ),
                ));
            }
            // Services share VIPs once each has had its own. One VIP:port
            // speaks one protocol: a TLS_PASSTHROUGH listener beside an
            // HTTPS one would splice TLS clients past the HTTPS service's
            // auth policy.
            let vip = s(svc, "_vip");
            let clash = state
                .of_kind(Kind::Service)
                .filter(|o| s(o, "_vip") == vip && s(o, "id") != sid)
                .flat_map(|o| state.children(s(o, "id"), Kind::Listener))
                .find(|l| l["port"].as_u64() == Some(port) && s(l, "protocol") != protocol);
            if let Some(l) = clash {
                return Err(ApiError::conflict(
                    "LISTENER",
                    s(l, "id"),
                    format!(
                        "port {port} of this service's address {vip} is used by a {} listener of service {}; one address and port serve one protocol",
                        s(l, "protocol"),
                        s(l, "serviceId")
                    ),
                ));
            }
            let action = c.action("defaultAction", &input["defaultAction"])?;
            let (id, mut rec) = c.record(
                Kind::Listener,
                json!({
                    "name": name, "protocol": protocol, "port": port, "defaultAction": action,
                    "serviceId": sid, "serviceArn": s(svc, "arn"),
                }),
            );
            rec["arn"] = format!("{}/listener/{id}", s(svc, "arn")).into();
            write(vec![Change::Put(id, rec.clone())], rec)
        }
        "GetListener" => Ok(Outcome::Read(listener_of(state, input)?.clone())),
        "ListListeners" => {
            let svc = state.resolve(Kind::Service, c.get("serviceIdentifier"))?;
            let items = sorted(state.children(s(svc, "id"), Kind::Listener));
            c.page(items, Value::clone)
        }
        "UpdateListener" => {
            let l = listener_of(state, input)?;
            let mut rec = c.touched(l);
            rec["defaultAction"] = c.action("defaultAction", &input["defaultAction"])?;
            write(vec![Change::Put(s(l, "id").to_owned(), rec.clone())], rec)
        }
        "DeleteListener" => {
            let l = listener_of(state, input)?;
            let mut changes = vec![Change::Delete(s(l, "id").to_owned())];
            for r in state.children(s(l, "id"), Kind::Rule) {
                changes.push(Change::Delete(s(r, "id").to_owned()));
                changes.extend(dependents(state, s(r, "id")));
            }
            changes.extend(dependents(state, s(l, "id")));
            write(changes, json!({}))
        }

        // ===== rules =====
        "CreateRule" => {
            let l = listener_of(state, input)?;
            let lid = s(l, "id");
            let name = c.get("name");
            let mine = c.new_child(Kind::Rule, "listenerId", lid, "listener", "rule")?;
            if let Some(r) = mine.iter().find(|r| r["priority"] == input["priority"]) {
                return Err(ApiError::conflict(
                    "RULE",
                    s(r, "id"),
                    format!(
                        "priority {} is already used by rule {}",
                        input["priority"],
                        s(r, "name")
                    ),
                ));
            }
            if mine.len() >= q.rules_per_listener {
                return Err(ApiError::quota(
                    "RULE",
                    "rules-per-listener",
                    q.rules_per_listener,
                ));
            }
            let action = c.action("action", &input["action"])?;
            let (id, mut rec) = c.record(Kind::Rule, json!({
                "name": name, "priority": input["priority"], "match": input["match"], "action": action,
                "isDefault": false, "listenerId": lid, "serviceId": s(l, "serviceId"),
            }));
            rec["arn"] = format!("{}/rule/{id}", s(l, "arn")).into();
            write(vec![Change::Put(id, rec.clone())], rec)
        }
        "GetRule" => Ok(Outcome::Read(
            rule_of(state, input, c.get("ruleIdentifier"))?.clone(),
        )),
        "ListRules" => {
            let l = listener_of(state, input)?;
            let items = sorted(state.children(s(l, "id"), Kind::Rule));
            c.page(items, Value::clone)
        }
        "UpdateRule" => {
            let r = rule_of(state, input, c.get("ruleIdentifier"))?;
            let rec = updated_rule(&c, r, input)?;
            write(vec![Change::Put(s(r, "id").to_owned(), rec.clone())], rec)
        }
        "BatchUpdateRule" => {
            listener_of(state, input)?;
            let (mut changes, mut ok, mut failed) = (Vec::new(), Vec::new(), Vec::new());
            for u in input["rules"].as_array().into_iter().flatten() {
                let ident = s(u, "ruleIdentifier");
                match rule_of(state, input, ident).and_then(|r| updated_rule(&c, r, u)) {
                    Ok(rec) => {
                        changes.push(Change::Put(s(&rec, "id").to_owned(), rec.clone()));
                        ok.push(rec);
                    }
                    Err(e) => failed.push(json!({"ruleIdentifier": ident, "failureCode": e.code, "failureMessage": e.message})),
                }
            }
            write(changes, json!({"successful": ok, "unsuccessful": failed}))
        }
        "DeleteRule" => {
            let r = rule_of(state, input, c.get("ruleIdentifier"))?;
            let mut changes = vec![Change::Delete(s(r, "id").to_owned())];
            changes.extend(dependents(state, s(r, "id")));
            write(changes, json!({}))
        }

        // ===== associations =====
        "CreateServiceNetworkServiceAssociation" => {
            let sn = state.resolve(Kind::ServiceNetwork, c.get("serviceNetworkIdentifier"))?;
            let svc = state.resolve(Kind::Service, c.get("serviceIdentifier"))?;
            if let Some(a) = state
                .children(s(svc, "id"), Kind::SnService)
                .find(|a| s(a, "serviceNetworkId") == s(sn, "id"))
            {
                return Err(ApiError::conflict(
                    "SERVICE_NETWORK_SERVICE_ASSOCIATION",
                    s(a, "id"),
                    "the service is already associated with this service network",
                ));
            }
            let (id, mut rec) = c.record(Kind::SnService, json!({
                "status": "ACTIVE", "createdBy": settings.account,
                "serviceNetworkId": s(sn, "id"), "serviceNetworkArn": s(sn, "arn"), "serviceNetworkName": s(sn, "name"),
                "serviceId": s(svc, "id"), "serviceArn": s(svc, "arn"), "serviceName": s(svc, "name"),
            }));
            for k in ["customDomainName", "dnsEntry"] {
                if let Some(d) = svc.get(k) {
                    rec[k] = d.clone();
                }
            }
            c.created(id, rec, "servicenetworkserviceassociation")
        }
        "GetServiceNetworkServiceAssociation" => c.read(
            Kind::SnService,
            "serviceNetworkServiceAssociationIdentifier",
        ),
        "ListServiceNetworkServiceAssociations" => {
            let sn = c.optional_id(Kind::ServiceNetwork, "serviceNetworkIdentifier")?;
            let svc = c.optional_id(Kind::Service, "serviceIdentifier")?;
            let items = sorted(state.of_kind(Kind::SnService).filter(|a| {
                sn.as_deref().is_none_or(|x| s(a, "serviceNetworkId") == x)
                    && svc.as_deref().is_none_or(|x| s(a, "serviceId") == x)
            }));
            c.page(items, Value::clone)
        }
        "DeleteServiceNetworkServiceAssociation" => {
            let a = state.resolve(
                Kind::SnService,
                c.get("serviceNetworkServiceAssociationIdentifier"),
            )?;
            let mut out = a.clone();
            out["status"] = "DELETE_IN_PROGRESS".into();
            let mut changes = vec![Change::Delete(s(a, "id").to_owned())];
            changes.extend(dependents(state, s(a, "id")));
            write(changes, out)
        }
        "CreateServiceNetworkVpcAssociation" => {
            let sn = state.resolve(Kind::ServiceNetwork, c.get("serviceNetworkIdentifier"))?;
            let vpc = c.get("vpcIdentifier");
            check_vpc(settings, "vpcIdentifier", vpc)?;
            let of_vpc: Vec<&Value> = state.children(&format!("vpc:{vpc}"), Kind::SnVpc).collect();
            if let Some(a) = of_vpc
                .iter()
                .find(|a| s(a, "serviceNetworkId") == s(sn, "id"))
            {
                return Err(ApiError::conflict(
                    "SERVICE_NETWORK_VPC_ASSOCIATION",
                    s(a, "id"),
                    format!("VPC {vpc} is already associated with this service network"),
                ));
            }
            if of_vpc.len() >= q.service_networks_per_vpc {
                return Err(ApiError::quota(
                    "SERVICE_NETWORK_VPC_ASSOCIATION",
                    "service-networks-per-vpc",
                    q.service_networks_per_vpc,
                ));
            }
            let (id, rec) = c.record(Kind::SnVpc, json!({
                "status": "ACTIVE", "createdBy": settings.account, "vpcId": vpc,
                "securityGroupIds": input.get("securityGroupIds").cloned().unwrap_or_else(|| json!([])),
                "serviceNetworkId": s(sn, "id"), "serviceNetworkArn": s(sn, "arn"), "serviceNetworkName": s(sn, "name"),
            }));
            c.created(id, rec, "servicenetworkvpcassociation")
        }
        "GetServiceNetworkVpcAssociation" => {
            c.read(Kind::SnVpc, "serviceNetworkVpcAssociationIdentifier")
        }
        "ListServiceNetworkVpcAssociations" => {
            let sn = c.optional_id(Kind::ServiceNetwork, "serviceNetworkIdentifier")?;
            let vpc = input["vpcIdentifier"].as_str();
            let items = sorted(state.of_kind(Kind::SnVpc).filter(|a| {
                sn.as_deref().is_none_or(|x| s(a, "serviceNetworkId") == x)
                    && vpc.is_none_or(|x| s(a, "vpcId") == x)
            }));
            c.page(items, Value::clone)
        }
        "UpdateServiceNetworkVpcAssociation" => c.update(
            Kind::SnVpc,
            "serviceNetworkVpcAssociationIdentifier",
            &["securityGroupIds"],
        ),
        "DeleteServiceNetworkVpcAssociation" => {
            let a = state.resolve(Kind::SnVpc, c.get("serviceNetworkVpcAssociationIdentifier"))?;
            let mut out = a.clone();
            out["status"] = "DELETE_IN_PROGRESS".into();
            let mut changes = vec![Change::Delete(s(a, "id").to_owned())];
            changes.extend(dependents(state, s(a, "id")));
            write(changes, out)
        }

        // ===== access log subscriptions =====
        "CreateAccessLogSubscription" => {
            let (_, target) = sn_or_service(state, c.get("resourceIdentifier"))?;
            let dest = c.get("destinationArn");
            if let Err(e) =
                latticed_proxy::access_log::destination_path(std::path::Path::new("/"), dest)
            {
                return Err(ApiError::field("destinationArn", e.to_string()));
            }
            if let Some(a) = state
                .children(s(target, "id"), Kind::AccessLog)
                .find(|a| s(a, "destinationArn") == dest)
            {
                return Err(ApiError::conflict(
                    "ACCESS_LOG_SUBSCRIPTION",
                    s(a, "id"),
                    "this resource already logs to that destination",
                ));
            }
            let (id, mut rec) = c.record(Kind::AccessLog, json!({
                "resourceId": s(target, "id"), "resourceArn": s(target, "arn"), "destinationArn": dest,
            }));
            if let Some(t) = input.get("serviceNetworkLogType") {
                rec["serviceNetworkLogType"] = t.clone();
            }
            c.created(id, rec, "accesslogsubscription")
        }
        "GetAccessLogSubscription" => c.read(Kind::AccessLog, "accessLogSubscriptionIdentifier"),
        "ListAccessLogSubscriptions" => {
            let (_, target) = sn_or_service(state, c.get("resourceIdentifier"))?;
            let items = sorted(state.children(s(target, "id"), Kind::AccessLog));
            c.page(items, Value::clone)
        }
        "UpdateAccessLogSubscription" => c.update(
            Kind::AccessLog,
            "accessLogSubscriptionIdentifier",
            &["destinationArn"],
        ),
        "DeleteAccessLogSubscription" => {
            let a = state.resolve(Kind::AccessLog, c.get("accessLogSubscriptionIdentifier"))?;
            write(vec![Change::Delete(s(a, "id").to_owned())], json!({}))
        }

        // ===== auth and resource policies (stored; evaluated by the auth issue) =====
        "PutAuthPolicy" => {
            let (_, target) = sn_or_service(state, c.get("resourceIdentifier"))?;
            let policy = c.get("policy");
            if let Err(e) = latticed_proxy::authz::Policy::parse(policy) {
                return Err(ApiError::field("policy", e.to_string()));
            }
            let key = format!("authpolicy/{}", s(target, "id"));
            let created = state
                .records
                .get(&key)
                .map_or(c.now.clone(), |p| s(p, "createdAt").to_owned());
            let state_name = if s(target, "authType") == "AWS_IAM" {
                "Active"
            } else {
                "Inactive"
            };
            let rec = json!({"policy": policy, "createdAt": created, "lastUpdatedAt": c.now, "resourceId": s(target, "id")});
            let mut out = rec.clone();
            out["state"] = state_name.into();
            write(vec![Change::Put(key, rec)], out)
        }
        "GetAuthPolicy" => {
            let (_, target) = sn_or_service(state, c.get("resourceIdentifier"))?;
            let p = state
                .records
                .get(&format!("authpolicy/{}", s(target, "id")))
                .ok_or_else(|| ApiError::not_found("AUTH_POLICY", c.get("resourceIdentifier")))?;
            let mut out = p.clone();
            out["state"] = if s(target, "authType") == "AWS_IAM" {
                "Active"
            } else {
                "Inactive"
            }
            .into();
            Ok(Outcome::Read(out))
        }
        "DeleteAuthPolicy" => {
            let (_, target) = sn_or_service(state, c.get("resourceIdentifier"))?;
            let key = format!("authpolicy/{}", s(target, "id"));
            if !state.records.contains_key(&key) {
                return Err(ApiError::not_found(
                    "AUTH_POLICY",
                    c.get("resourceIdentifier"),
                ));
            }
            write(vec![Change::Delete(key)], json!({}))
        }
        "PutResourcePolicy" | "GetResourcePolicy" | "DeleteResourcePolicy" => {
            let arn = c.get("resourceArn");
            let owner = arn.rsplit('/').next().unwrap_or_default();
            if state.records.get(owner).is_none_or(|r| s(r, "arn") != arn) {
                return Err(ApiError::not_found("RESOURCE", arn));
            }
            let key = format!("resourcepolicy/{owner}");
            match op {
                "PutResourcePolicy" => {
                    let policy = c.get("policy");
                    if serde_json::from_str::<Value>(policy)
                        .map(|v| !v.is_object())
                        .unwrap_or(true)
                    {
                        return Err(ApiError::field("policy", "is not a JSON policy document"));
                    }
                    write(vec![Change::Put(key, json!({"policy": policy}))], json!({}))
                }
                "GetResourcePolicy" => state
                    .records
                    .get(&key)
                    .map(|p| Outcome::Read(p.clone()))
                    .ok_or_else(|| ApiError::not_found("RESOURCE_POLICY", arn)),
                _ => {
                    if !state.records.contains_key(&key) {
                        return Err(ApiError::not_found("RESOURCE_POLICY", arn));
                    }
                    write(vec![Change::Delete(key)], json!({}))
                }
            }
        }

        // ===== tags =====
        "TagResource" | "UntagResource" | "ListTagsForResource" => {
            let arn = c.get("resourceArn");
            let id = arn.rsplit('/').next().unwrap_or_default();
            let rec = state
                .records
                .get(id)
                .filter(|r| s(r, "arn") == arn)
                .ok_or_else(|| ApiError::not_found("RESOURCE", arn))?;
            let mut tags = rec["tags"].as_object().cloned().unwrap_or_default();
            match op {
                "ListTagsForResource" => return Ok(Outcome::Read(json!({"tags": tags}))),
                "TagResource" => {
                    for (k, v) in input["tags"].as_object().into_iter().flatten() {
                        tags.insert(k.clone(), v.clone());
                    }
                    if tags.len() > 50 {
                        return Err(ApiError::field(
                            "tags",
                            format!(
                                "a resource may have at most 50 tags; this would give it {}",
                                tags.len()
                            ),
                        ));
                    }
                }
                _ => {
                    for k in input["tagKeys"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                    {
                        tags.remove(k);
                    }
                }
            }
            let mut r = rec.clone();
            r["tags"] = Value::Object(tags);
            write(vec![Change::Put(id.to_owned(), r)], json!({}))
        }

        o => Err(unsupported(o)
            .unwrap_or_else(|| ApiError::unsupported(o, "this operation's resources"))),
    }
}

/// Register/Deregister: applies `step` to each requested target of the
/// group named in the input (the port defaults to the group's) and reports
/// each target as successful or not.
fn edit_targets(
    c: &Ctx<'_>,
    mut step: impl FnMut(&mut Vec<Value>, &str, &Value) -> Result<(), (&'static str, String)>,
) -> Result<Outcome, ApiError> {
    let tg = c
        .state
        .resolve(Kind::TargetGroup, c.get("targetGroupIdentifier"))?;
    let default_port = tg["config"]["port"].clone();
    let mut rec = c.touched(tg);
    let mut targets: Vec<Value> = rec["_targets"].as_array().cloned().unwrap_or_default();
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for t in c.input["targets"].as_array().into_iter().flatten() {
        let port = t
            .get("port")
            .cloned()
            .unwrap_or_else(|| default_port.clone());
        let tid = s(t, "id");
        match step(&mut targets, tid, &port) {
            Ok(()) => ok.push(json!({"id": tid, "port": port})),
            Err((code, message)) => failed.push(
                json!({"id": tid, "port": port, "failureCode": code, "failureMessage": message}),
            ),
        }
    }
    rec["_targets"] = targets.into();
    write(
        vec![Change::Put(s(tg, "id").to_owned(), rec)],
        json!({"successful": ok, "unsuccessful": failed}),
    )
}

/// Records that belong to a deleted resource: its policies.
fn dependents(state: &State, id: &str) -> Vec<Change> {
    let mut out = Vec::new();
    for key in [format!("authpolicy/{id}"), format!("resourcepolicy/{id}")] {
        if state.records.contains_key(&key) {
            out.push(Change::Delete(key));
        }
    }
    for a in state.children(id, Kind::AccessLog) {
        out.push(Change::Delete(s(a, "id").to_owned()));
    }
    out
}

fn check_vpc(settings: &Settings, field: &str, vpc: &str) -> Result<(), ApiError> {
    if vpc.contains('/') || vpc.starts_with('.') || !settings.netns_dir.join(vpc).exists() {
        return Err(ApiError::field(
            field,
            format!(
                "network namespace {vpc:?} does not exist (no {})",
                settings.netns_dir.join(vpc).display()
            ),
        ));
    }
    Ok(())
}

fn sn_with_counts(state: &State, sn: &Value) -> Value {
    let id = s(sn, "id");
    let mut v = sn.clone();
    v["numberOfAssociatedServices"] = state.children(id, Kind::SnService).count().into();
    v["numberOfAssociatedVPCs"] = state.children(id, Kind::SnVpc).count().into();
    v
}

/// Listeners and rules whose actions use target group `id`.
fn tg_users(state: &State, id: &str) -> Vec<String> {
    state
        .idx
        .tg_users
        .get(id)
        .into_iter()
        .flatten()
        .map(|user| {
            let what = if user.starts_with(Kind::Rule.prefix()) {
                "rule"
            } else {
                "listener"
            };
            format!("{what} {user}")
        })
        .collect()
}

fn tg_view(state: &State, tg: &Value) -> Value {
    let services: BTreeSet<&str> = state
        .idx
        .tg_users
        .get(s(tg, "id"))
        .into_iter()
        .flatten()
        .filter_map(|user| state.records.get(user))
        .filter_map(|r| state.records.get(s(r, "serviceId")))
        .map(|svc| s(svc, "arn"))
        .collect();
    let mut v = tg.clone();
    v["serviceArns"] = services.into_iter().collect::<Vec<_>>().into();
    v
}

fn sn_or_service<'a>(state: &'a State, ident: &str) -> Result<(Kind, &'a Value), ApiError> {
    let id = ident.rsplit('/').next().unwrap_or(ident);
    let kind = if id.starts_with("sn-") {
        Kind::ServiceNetwork
    } else {
        Kind::Service
    };
    if !(id.starts_with("sn-") || id.starts_with("svc-")) {
        return Err(ApiError::field(
            "resourceIdentifier",
            "must name a service network or a service",
        ));
    }
    Ok((kind, state.resolve(kind, ident)?))
}

fn listener_of<'a>(state: &'a State, input: &Value) -> Result<&'a Value, ApiError> {
    let svc = state.resolve(Kind::Service, s(input, "serviceIdentifier"))?;
    let l = state.resolve(Kind::Listener, s(input, "listenerIdentifier"))?;
    if s(l, "serviceId") != s(svc, "id") {
        return Err(ApiError::not_found(
            "LISTENER",
            s(input, "listenerIdentifier"),
        ));
    }
    Ok(l)
}

fn rule_of<'a>(state: &'a State, input: &Value, ident: &str) -> Result<&'a Value, ApiError> {
    let l = listener_of(state, input)?;
    let r = state.resolve(Kind::Rule, ident)?;
    if s(r, "listenerId") != s(l, "id") {
        return Err(ApiError::not_found("RULE", ident));
    }
    Ok(r)
}

fn updated_rule(c: &Ctx<'_>, r: &Value, u: &Value) -> Result<Value, ApiError> {
    let mut rec = c.touched(r);
    if let Some(p) = u.get("priority") {
        if let Some(other) = c
            .state
            .children(s(r, "listenerId"), Kind::Rule)
            .find(|o| s(o, "id") != s(r, "id") && o["priority"] == *p)
        {
            return Err(ApiError::conflict(
                "RULE",
                s(other, "id"),
                format!("priority {p} is already used by rule {}", s(other, "name")),
            ));
        }
        rec["priority"] = p.clone();
    }
    if let Some(m) = u.get("match") {
        rec["match"] = m.clone();
    }
    if let Some(a) = u.get("action") {
        rec["action"] = c.action("action", a)?;
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            region: "us-east-1".into(),
            account: "111122223333".into(),
            quotas: Quotas::default(),
            netns_dir: std::env::temp_dir(),
            dns_suffix: "example".into(),
        }
    }

    fn run(state: &mut State, op: &str, input: Value) -> (Value, Vec<Change>) {
        match handle(
            op,
            &input,
            state,
            &settings(),
            "2026-11-22T00:00:00.000Z".into(),
        )
        .unwrap()
        {
            Outcome::Write(m) => {
                let undo = state.apply(&m.changes);
                (m.result, undo)
            }
            Outcome::Read(v) => (v, vec![]),
        }
    }

    fn rebuilt(state: &State) -> Index {
        State::from_records(state.records.clone().into_iter().collect()).idx
    }

    #[test]
    fn listeners_of_services_sharing_a_vip_keep_one_protocol_per_port() {
        let mut st = State::default();
        // Every VIP taken once, so the next service shares one.
        let mut first = Value::Null;
        for i in 0..191 {
            let svc = run(
                &mut st,
                "CreateService",
                json!({"name": format!("svc-n{i}")}),
            )
            .0;
            if i == 0 {
                first = svc;
            }
        }
        let shared = run(&mut st, "CreateService", json!({"name": "shared"})).0;
        let vip_of =
            |st: &State, id: &str| s(st.resolve(Kind::Service, id).unwrap(), "_vip").to_owned();
        assert_eq!(vip_of(&st, s(&shared, "id")), vip_of(&st, s(&first, "id")));
        let listener = |protocol: &str| {
            json!({"name": "l", "protocol": protocol, "port": 443,
                "defaultAction": {"fixedResponse": {"statusCode": 404}}})
        };
        let mut input = listener("HTTPS");
        input["serviceIdentifier"] = first["id"].clone();
        run(&mut st, "CreateListener", input);
        let mut input = listener("TLS_PASSTHROUGH");
        input["serviceIdentifier"] = shared["id"].clone();
        let Err(err) = handle(
            "CreateListener",
            &input,
            &st,
            &settings(),
            "2026-11-22T00:00:00.000Z".into(),
        ) else {
            panic!("mixing protocols on one VIP:port is refused");
        };
        assert_eq!(err.code, "ConflictException");
        assert!(
            err.message
                .contains("one address and port serve one protocol"),
            "{}",
            err.message
        );
        // The same protocol may share it (told apart by name).
        let mut input = listener("HTTPS");
        input["serviceIdentifier"] = shared["id"].clone();
        run(&mut st, "CreateListener", input);
    }

    #[test]
    fn the_index_follows_every_change_and_its_undo() {
        let mut st = State::default();
        let sn = run(&mut st, "CreateServiceNetwork", json!({"name": "net-one"})).0;
        run(&mut st, "CreateService", json!({"name": "other"}));
        let svc = run(&mut st, "CreateService", json!({"name": "one"})).0;
        let l = run(
            &mut st,
            "CreateListener",
            json!({"serviceIdentifier": svc["id"], "name": "http", "protocol": "HTTP",
            "defaultAction": {"fixedResponse": {"statusCode": 404}}}),
        )
        .0;
        let a = run(
            &mut st,
            "CreateServiceNetworkServiceAssociation",
            json!({"serviceNetworkIdentifier": sn["id"], "serviceIdentifier": svc["id"]}),
        )
        .0;
        assert_eq!(st.idx, rebuilt(&st));
        assert_eq!(st.count(Kind::Service), 2);
        assert_eq!(st.children(s(&svc, "id"), Kind::Listener).count(), 1);
        assert!(st.by_name(Kind::Service, "one").is_some());

        // A change and its undo leave the index as it was.
        let before = st.idx.clone();
        let (_, undo) = run(
            &mut st,
            "UpdateListener",
            json!({"serviceIdentifier": svc["id"], "listenerIdentifier": l["id"],
            "defaultAction": {"fixedResponse": {"statusCode": 503}}}),
        );
        assert_eq!(st.idx, rebuilt(&st));
        st.apply(&undo);
        assert_eq!(st.idx, before);

        let (_, undo) = run(
            &mut st,
            "DeleteServiceNetworkServiceAssociation",
            json!({"serviceNetworkServiceAssociationIdentifier": a["id"]}),
        );
        let (_, undo2) = run(
            &mut st,
            "DeleteService",
            json!({"serviceIdentifier": svc["id"]}),
        );
        assert_eq!(st.idx, rebuilt(&st));
        assert!(st.by_name(Kind::Service, "one").is_none());
        assert_eq!(st.children(s(&svc, "id"), Kind::Listener).count(), 0);
        st.apply(&undo2);
        st.apply(&undo);
        assert_eq!(st.idx, before);
    }
}
