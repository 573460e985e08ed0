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
    plan::{FieldError, ValidationError, VIP_FIRST, VIP_LAST},
    store::Change,
};

mod access_logs;
mod associations;
mod listeners;
mod policies;
mod rules;
mod service_networks;
mod services;
mod tags;
mod target_groups;

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
    /// Region, account and DNS suffix.
    pub naming: crate::control::Naming,
    /// Quotas.
    pub quotas: Quotas,
    /// Where namespaces (VPCs) are.
    pub netns_dir: std::path::PathBuf,
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

/// A field of a stored record, at `path`. The store holds only what the
/// model validated, so a field missing or of the wrong shape means a
/// broken store: an error naming the record and the field, never a
/// default standing in for it.
fn stored<T: serde::de::DeserializeOwned>(rec: &Value, path: &[&str]) -> Result<T, FieldError> {
    let v = path.iter().fold(rec, |v, k| &v[*k]);
    serde_json::from_value(v.clone()).map_err(|e| FieldError {
        field: format!("stored record {}: {}", s(rec, "id"), path.join(".")),
        reason: e.to_string(),
    })
}

/// A broken stored record as a validation error of the stored state.
fn broken(e: FieldError) -> ValidationError {
    ValidationError(vec![e])
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

    fn action_cfg(&self, rec: &Value, field: &str) -> Result<cfg::RuleAction, FieldError> {
        let a = &rec[field];
        let tg_name = |id: &str| {
            self.records
                .get(id)
                .map(|r| s(r, "name").to_owned())
                .unwrap_or_default()
        };
        Ok(if let Some(f) = a.get("forward").filter(|f| !f.is_null()) {
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
                    status_code: stored(rec, &[field, "fixedResponse", "statusCode"])?,
                }),
            }
        })
    }

    fn sn_cfg(sn: &Value) -> cfg::ServiceNetwork {
        cfg::ServiceNetwork {
            name: s(sn, "name").to_owned(),
            auth_type: auth_type(sn),
            arn: sn["arn"].as_str().map(str::to_owned),
        }
    }

    fn service_cfg(&self, svc: &Value) -> Result<cfg::Service, FieldError> {
        Ok(cfg::Service {
            name: s(svc, "name").to_owned(),
            auth_type: auth_type(svc),
            custom_domain_name: svc["customDomainName"].as_str().map(str::to_owned),
            certificate_arn: svc["certificateArn"].as_str().map(str::to_owned),
            arn: svc["arn"].as_str().map(str::to_owned),
            vip: s(svc, "_vip").parse().ok(),
            dns_name: svc["dnsEntry"]["domainName"].as_str().map(str::to_owned),
            listeners: sorted(self.children(s(svc, "id"), Kind::Listener))
                .into_iter()
                .map(|l| {
                    Ok(cfg::Listener {
                        name: s(l, "name").to_owned(),
                        protocol: stored(l, &["protocol"])?,
                        port: l["port"].as_u64().map(|p| p as u32),
                        default_action: self.action_cfg(l, "defaultAction")?,
                        rules: sorted(self.children(s(l, "id"), Kind::Rule))
                            .into_iter()
                            .map(|r| {
                                Ok(cfg::Rule {
                                    name: s(r, "name").to_owned(),
                                    priority: stored(r, &["priority"])?,
                                    match_: stored(r, &["match"])?,
                                    action: self.action_cfg(r, "action")?,
                                })
                            })
                            .collect::<Result<_, FieldError>>()?,
                    })
                })
                .collect::<Result<_, FieldError>>()?,
        })
    }

    fn tg_cfg(tg: &Value) -> Result<cfg::TargetGroup, FieldError> {
        let c = &tg["config"];
        Ok(cfg::TargetGroup {
            name: s(tg, "name").to_owned(),
            type_: stored(tg, &["type"])?,
            config: Some(cfg::TargetGroupConfig {
                port: c["port"].as_u64().map(|p| p as u32),
                protocol: stored(tg, &["config", "protocol"])?,
                protocol_version: c["protocolVersion"].as_str().map(str::to_owned),
                vpc_identifier: c["vpcIdentifier"].as_str().map(str::to_owned),
                ip_address_type: c["ipAddressType"].as_str().map(str::to_owned),
                // Stored as the API accepted it, which the model validated.
                health_check: stored(tg, &["config", "healthCheck"])?,
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
        })
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
    /// by name). A stored record that lacks what the API accepted is an
    /// error naming it, never a default.
    pub fn to_config(&self) -> Result<Config, ValidationError> {
        Ok(Config {
            service_networks: sorted(self.of_kind(Kind::ServiceNetwork))
                .into_iter()
                .map(Self::sn_cfg)
                .collect(),
            services: sorted(self.of_kind(Kind::Service))
                .into_iter()
                .map(|svc| self.service_cfg(svc))
                .collect::<Result<_, _>>()
                .map_err(broken)?,
            target_groups: sorted(self.of_kind(Kind::TargetGroup))
                .into_iter()
                .map(Self::tg_cfg)
                .collect::<Result<_, _>>()
                .map_err(broken)?,
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
        })
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
    pub fn service_config(&self, id: &str) -> Result<Option<Config>, ValidationError> {
        let Some(svc) = self.records.get(id) else {
            return Ok(None);
        };
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
        Ok(Some(Config {
            service_networks: networks.iter().map(|sn| Self::sn_cfg(sn)).collect(),
            services: vec![self.service_cfg(svc).map_err(broken)?],
            target_groups: groups
                .iter()
                .filter_map(|g| self.records.get(g))
                .map(Self::tg_cfg)
                .collect::<Result<_, _>>()
                .map_err(broken)?,
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
        }))
    }

    /// One target group alone, as a configuration.
    pub fn group_config(&self, id: &str) -> Result<Option<Config>, ValidationError> {
        let Some(tg) = self.records.get(id) else {
            return Ok(None);
        };
        Ok(Some(Config {
            target_groups: vec![Self::tg_cfg(tg).map_err(broken)?],
            ..Config::default()
        }))
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
            self.settings.naming.region, self.settings.naming.account
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

/// One operation's handler.
type Handler = fn(&Ctx<'_>) -> Result<Outcome, ApiError>;

/// Each resource's operations, from its module's `OPS`: adding an
/// operation touches only its resource's module.
const RESOURCES: [&[(&str, Handler)]; 9] = [
    service_networks::OPS,
    services::OPS,
    target_groups::OPS,
    listeners::OPS,
    rules::OPS,
    associations::OPS,
    access_logs::OPS,
    policies::OPS,
    tags::OPS,
];

/// Every operation latticed handles, with its handler.
fn operations() -> impl Iterator<Item = &'static (&'static str, Handler)> {
    RESOURCES.iter().flat_map(|ops| ops.iter())
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
    match operations().find(|(name, _)| *name == op) {
        Some((_, handler)) => handler(&c),
        None => Err(unsupported(op)
            .unwrap_or_else(|| ApiError::unsupported(op, "this operation's resources"))),
    }
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

/// The API as its clients see it, for each resource's unit tests: no
/// socket, no store, no root.
#[cfg(test)]
mod testing {
    use super::*;

    /// Input checked against the model as the server checks it, the
    /// handler, its changes applied, the answer projected onto the
    /// operation's output shape. VPCs `vpc-aa` and `vpc-bb` exist.
    pub(super) struct Api {
        pub(super) state: State,
        pub(super) settings: Settings,
    }

    impl Api {
        pub(super) fn new() -> Self {
            Self::with_quotas(Quotas::default())
        }

        pub(super) fn with_quotas(quotas: Quotas) -> Self {
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("latticed-api-unit-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            for vpc in ["vpc-aa", "vpc-bb"] {
                std::fs::write(dir.join(vpc), b"").unwrap();
            }
            Self {
                state: State::default(),
                settings: Settings {
                    naming: crate::control::Naming::example(),
                    quotas,
                    netns_dir: dir,
                },
            }
        }

        pub(super) fn call(&mut self, op: &str, input: Value) -> Result<Value, ApiError> {
            let m = super::super::model::model();
            let o = &m.operations[op];
            if let Some(shape) = &o.input {
                let problems = m.validate(shape, &input);
                if !problems.is_empty() {
                    return Err(ApiError::validation(problems));
                }
            }
            let now = "2026-12-06T00:00:00.000Z".to_owned();
            let out = match handle(op, &input, &self.state, &self.settings, now)? {
                Outcome::Write(w) => {
                    self.state.apply(&w.changes);
                    w.result
                }
                Outcome::Read(v) => v,
            };
            Ok(o.output
                .as_ref()
                .map_or(json!({}), |shape| m.project(shape, &out)))
        }

        /// The answer of a call that must succeed.
        pub(super) fn ok(&mut self, op: &str, input: Value) -> Value {
            self.call(op, input)
                .unwrap_or_else(|e| panic!("{op}: {} {e}", e.code))
        }

        /// The error of a call that must fail; nothing changed.
        pub(super) fn err(&mut self, op: &str, input: Value) -> ApiError {
            let before = self.state.records.clone();
            match self.call(op, input) {
                Ok(v) => panic!("{op} succeeded: {v}"),
                Err(e) => {
                    assert_eq!(
                        self.state.records, before,
                        "{op} failed but changed records"
                    );
                    e
                }
            }
        }

        /// Deletes the service-network service association that
        /// ListServiceNetworkServiceAssociations with `filter` lists first.
        pub(super) fn dissociate(&mut self, filter: Value) {
            let listed = self.ok("ListServiceNetworkServiceAssociations", filter);
            let id = listed["items"][0]["id"].clone();
            self.ok(
                "DeleteServiceNetworkServiceAssociation",
                json!({"serviceNetworkServiceAssociationIdentifier": id}),
            );
        }

        /// The `failureCode` of each item of a batch answer's
        /// `unsuccessful` list.
        pub(super) fn failure_codes(out: &Value) -> Vec<&str> {
            out["unsuccessful"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["failureCode"].as_str())
                .collect()
        }

        /// A service network, a service with an HTTP listener forwarding
        /// to an IP group in vpc-aa, the service in the network: ids of
        /// (network, service, listener, group).
        pub(super) fn service_in_network(&mut self) -> [String; 4] {
            let id = |v: Value| v["id"].as_str().unwrap().to_owned();
            let sn = id(self.ok("CreateServiceNetwork", json!({"name": "net-a"})));
            let svc = id(self.ok("CreateService", json!({"name": "shop"})));
            let tg = id(self.ok(
                "CreateTargetGroup",
                json!({"name": "group-a", "type": "IP",
                    "config": {"port": 8080, "protocol": "HTTP", "vpcIdentifier": "vpc-aa"}}),
            ));
            let l = id(self.ok(
                "CreateListener",
                json!({"serviceIdentifier": svc, "name": "http", "protocol": "HTTP",
                    "defaultAction": {"forward": {"targetGroups": [{"targetGroupIdentifier": tg}]}}}),
            ));
            self.ok(
                "CreateServiceNetworkServiceAssociation",
                json!({"serviceNetworkIdentifier": sn, "serviceIdentifier": svc}),
            );
            [sn, svc, l, tg]
        }
    }

    impl Drop for Api {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.settings.netns_dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored record missing what the API accepted is an error that
    /// names the record and the field, not a default (a listener without
    /// its protocol once became HTTP, a fixed response without its status
    /// a 404).
    #[test]
    fn a_broken_stored_record_is_named_not_defaulted() {
        let mut st = State::default();
        let svc = run(&mut st, "CreateService", json!({"name": "shop"})).0;
        let listener = run(
            &mut st,
            "CreateListener",
            json!({"serviceIdentifier": svc["id"], "name": "l", "protocol": "HTTPS", "port": 443,
                "defaultAction": {"fixedResponse": {"statusCode": 403}}}),
        )
        .0;
        let config = st.to_config().unwrap();
        let planned = &config.services[0].listeners[0];
        assert_eq!(planned.protocol, cfg::ListenerProtocol::Https);
        let id = s(&listener, "id").to_owned();
        for (field, path) in [
            ("protocol", "protocol"),
            ("defaultAction", "defaultAction.fixedResponse.statusCode"),
        ] {
            let mut broken_state = st.clone();
            let mut rec = broken_state.records[&id].clone();
            if let Some(o) = rec.as_object_mut() {
                o.remove(field);
            }
            broken_state.apply(&[Change::Put(id.clone(), rec)]);
            let err = broken_state.to_config().unwrap_err().to_string();
            assert!(
                err.contains(&format!("stored record {id}: {path}")),
                "{field}: {err}"
            );
        }
    }

    /// Every operation of the model has one home: one resource's module
    /// that handles it, or the list of what latticed does not build yet;
    /// and no module names an operation the model lacks.
    #[test]
    fn every_operation_of_the_model_has_one_home() {
        let model = super::super::model::model();
        let state = State::default();
        let settings = settings();
        for op in model.operations.keys() {
            let listed = operations().filter(|(name, _)| name == op).count();
            match unsupported(op) {
                Some(_) => assert_eq!(listed, 0, "{op} is both handled and unsupported"),
                None => {
                    assert_eq!(listed, 1, "{op} is in the tables {listed} times");
                    let r = handle(op, &json!({}), &state, &settings, "now".into());
                    if let Err(e) = r {
                        assert!(
                            !e.message.contains("are not supported by latticed"),
                            "{op} was refused as unsupported: {e}"
                        );
                    }
                }
            }
        }
        for (name, _) in operations() {
            assert!(
                model.operations.contains_key(*name),
                "{name} is not in the model"
            );
        }
    }

    fn settings() -> Settings {
        Settings {
            naming: crate::control::Naming::example(),
            quotas: Quotas::default(),
            netns_dir: std::env::temp_dir(),
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
