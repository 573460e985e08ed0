//! What each operation means: identifiers, references, conflicts, quotas,
//! lifecycle status. Handlers read the current [`State`] and return either a
//! result or a [`Mutation`] (the records to write and the result); they
//! never change state themselves, so a refused request changes nothing.
//!
//! Records are typed, one type per kind ([`super::records`]), in the shape
//! of the Get* responses plus a few internal members. Responses are
//! projected onto the operation's output shape by the engine, so a handler
//! may return a whole record.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::Ipv4Addr,
};

use serde_json::{json, Value};

use super::{
    error::ApiError,
    records::{self as rec, Kind, Meta, Record, Resource, AUTH_POLICY, RESOURCE_POLICY},
};
use crate::control::{
    count,
    model::{self as cfg, Config},
    plan::{ValidationError, VIP_FIRST, VIP_LAST},
    store,
};

/// Record changes, as handlers make them and the store writes them.
pub type Change = store::Change<Record>;

mod access_logs;
mod associations;
mod domain_verifications;
mod listeners;
mod permissions;
mod policies;
mod resources;
mod rules;
mod service_networks;
mod services;
mod sharing;
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
    /// Resource gateways.
    pub resource_gateways: usize,
    /// Resource configurations.
    pub resource_configurations: usize,
    /// CHILD configurations per GROUP.
    pub children_per_group: usize,
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
            resource_gateways: 100,
            resource_configurations: 1000,
            children_per_group: 60,
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
            "resource-gateways" => &mut self.resource_gateways,
            "resource-configurations" => &mut self.resource_configurations,
            _ => return Err(format!("{name:?} is not a quota (service-networks, services, target-groups, listeners-per-service, rules-per-listener, targets-per-target-group, service-networks-per-vpc, resource-gateways, resource-configurations)")),
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
    /// Owners of VPCs other than the default account (the inventory's
    /// `vpcs`).
    pub vpc_owners: BTreeMap<String, String>,
    /// Cluster mode: each VPC and the nodes that host it (registered in
    /// etcd); `None` on a single host, where `netns_dir` says.
    pub cluster_vpcs: Option<BTreeMap<String, Vec<String>>>,
    /// Accounts' organisations (AWS Organizations ids), where known.
    pub orgs: BTreeMap<String, String>,
}

impl Settings {
    /// The organisation of `account`, if it is in one.
    pub fn org(&self, account: &str) -> Option<&str> {
        self.orgs.get(account).map(String::as_str)
    }

    /// The account VPC `vpc` belongs to.
    pub fn vpc_owner<'a>(&'a self, vpc: &str) -> &'a str {
        self.vpc_owners
            .get(vpc)
            .map_or(self.naming.account.as_str(), String::as_str)
    }
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

/// All resource records, by id (policies by `authpolicy/{id}` and
/// `resourcepolicy/{id}`).
#[derive(Debug, Default, Clone)]
pub struct State {
    records: BTreeMap<String, Record>,
    next_seq: u64,
    idx: Index,
}

/// What handlers look up, kept in step with the records by [`State::apply`]
/// so that a request costs the same with ten services or a thousand.
#[derive(Debug, Default, Clone, PartialEq)]
struct Index {
    /// `{prefix}{name}` -> id, for the kinds whose names are unique. AWS
    /// keeps them unique within an account; latticed across all accounts,
    /// because the data plane's configuration refers to networks,
    /// services and groups by name.
    names: HashMap<String, String>,
    /// Records per `{owner account}/{prefix}` (quotas are per account).
    counts: BTreeMap<String, u32>,
    /// Parent id (VPCs as `vpc:NAME`) -> child ids.
    children: HashMap<String, BTreeSet<String>>,
    /// Services per VIP.
    vip_load: BTreeMap<Ipv4Addr, u32>,
    /// VIPs resource configurations hold, each alone.
    resource_vips: BTreeSet<Ipv4Addr>,
    /// Target group id -> listener and rule ids whose actions use it.
    tg_users: HashMap<String, BTreeSet<String>>,
}

/// The target group ids an action forwards to.
fn action_groups(action: &cfg::RuleAction) -> impl Iterator<Item = &str> {
    action
        .forward
        .iter()
        .flat_map(|f| f.target_groups.iter())
        .map(|g| g.target_group_identifier.as_str())
}

impl Index {
    fn update(&mut self, key: &str, rec: &Record, add: bool) {
        let Some(kind) = Kind::of_key(key) else {
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
        let owner = owner(rec.arn());
        count(&mut self.counts, format!("{owner}/{}", kind.prefix()), add);
        if let Some(name) = rec.unique_name() {
            let name = format!("{}{name}", kind.prefix());
            if add {
                self.names.insert(name, key.to_owned());
            } else {
                self.names.remove(&name);
            }
        }
        for parent in rec.parents() {
            set(&mut self.children, parent, key, add);
        }
        if let Record::Service(svc) = rec {
            count(&mut self.vip_load, svc.vip, add);
        }
        if let Record::ResourceConfiguration(r) = rec {
            if let Some(vip) = r.vip {
                if add {
                    self.resource_vips.insert(vip);
                } else {
                    self.resource_vips.remove(&vip);
                }
            }
        }
        for tg in rec.action().into_iter().flat_map(action_groups) {
            set(&mut self.tg_users, tg.to_owned(), key, add);
        }
    }
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
    /// Rebuilds the state from stored records. A record that does not fit
    /// its type is an error naming it and the field (the store holds only
    /// what the model validated, so that is a broken store, and no default
    /// stands in for it).
    pub fn from_records(rows: Vec<(String, Value)>) -> Result<Self, ValidationError> {
        let mut records = BTreeMap::new();
        let mut broken = Vec::new();
        for (k, v) in rows {
            match Record::from_stored(&k, v) {
                Ok(r) => {
                    records.insert(k, r);
                }
                Err(e) => broken.push(e),
            }
        }
        if !broken.is_empty() {
            return Err(ValidationError(broken));
        }
        let next_seq = records.values().map(Record::seq).max().unwrap_or(0) + 1;
        let mut idx = Index::default();
        for (k, v) in &records {
            idx.update(k, v, true);
        }
        Ok(Self {
            records,
            next_seq,
            idx,
        })
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
                    self.next_seq = self.next_seq.max(v.seq() + 1);
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

    /// The `R` with id `id`.
    fn get<R: Resource>(&self, id: &str) -> Option<&R> {
        self.records.get(id).and_then(R::of)
    }

    /// Every RAM resource share, by key.
    fn shares(&self) -> impl Iterator<Item = &rec::Share> {
        self.shares_by_key().map(|(_, s)| s)
    }

    /// Every RAM resource share with its store key.
    fn shares_by_key(&self) -> impl Iterator<Item = (&String, &rec::Share)> {
        self.records
            .range(rec::SHARE.to_owned()..)
            .take_while(|(k, _)| k.starts_with(rec::SHARE))
            .filter_map(|(k, v)| match v {
                Record::Share(s) => Some((k, s)),
                _ => None,
            })
    }

    /// Every `R`, by id.
    fn of_kind<R: Resource>(&self) -> impl Iterator<Item = &R> {
        let p = R::KIND.prefix();
        self.records
            .range(p.to_owned()..)
            .take_while(move |(k, _)| k.starts_with(p))
            .filter_map(|(_, v)| R::of(v))
    }

    /// Finds an `R` by id or ARN.
    fn resolve<R: Resource>(&self, ident: &str) -> Result<&R, ApiError> {
        let by_arn = ident.starts_with("arn:");
        let id = if by_arn {
            ident.rsplit('/').next().unwrap_or_default()
        } else {
            ident
        };
        self.get::<R>(id)
            .filter(|r| !by_arn || r.arn() == ident)
            .ok_or_else(|| ApiError::not_found(R::KIND.type_name(), ident))
    }

    /// The `R` named `name` (in any account).
    fn by_name<R: Resource>(&self, name: &str) -> Option<&R> {
        self.idx
            .names
            .get(&format!("{}{name}", R::KIND.prefix()))
            .and_then(|id| self.get(id))
    }

    /// How many `kind` account `owner` has.
    fn count(&self, owner: &str, kind: Kind) -> usize {
        self.idx
            .counts
            .get(&format!("{owner}/{}", kind.prefix()))
            .map_or(0, |n| *n as usize)
    }

    /// The `R`s whose parent is `parent` (VPCs as `vpc:NAME`).
    fn children<R: Resource>(&self, parent: &str) -> impl Iterator<Item = &R> {
        self.idx
            .children
            .get(parent)
            .into_iter()
            .flatten()
            .filter_map(|id| self.get::<R>(id))
    }

    /// The name of target group `id` (actions store ids, the configuration
    /// names groups).
    fn group_name<'a>(&'a self, id: &'a str) -> &'a str {
        self.get::<rec::TargetGroup>(id).map_or(id, |g| &g.name)
    }

    fn action_cfg(&self, a: &cfg::RuleAction) -> cfg::RuleAction {
        let mut a = a.clone();
        for g in a
            .forward
            .iter_mut()
            .flat_map(|f| f.target_groups.iter_mut())
        {
            g.target_group_identifier = self.group_name(&g.target_group_identifier).to_owned();
        }
        a
    }

    fn sn_cfg(sn: &rec::ServiceNetwork) -> cfg::ServiceNetwork {
        cfg::ServiceNetwork {
            name: sn.name.clone(),
            auth_type: sn.auth_type,
            arn: Some(sn.arn().to_owned()),
        }
    }

    fn service_cfg(&self, svc: &rec::Service) -> cfg::Service {
        let rules = |l: &rec::Listener| {
            sorted(self.children::<rec::Rule>(l.id()))
                .into_iter()
                .map(|r| cfg::Rule {
                    name: r.name.clone(),
                    priority: r.priority,
                    match_: r.match_.clone(),
                    action: self.action_cfg(&r.action),
                })
                .collect()
        };
        cfg::Service {
            name: svc.name.clone(),
            auth_type: svc.auth_type,
            custom_domain_name: svc.custom_domain_name.clone(),
            certificate_arn: svc.certificate_arn.clone(),
            arn: Some(svc.arn().to_owned()),
            vip: Some(svc.vip),
            dns_name: Some(svc.dns_entry.domain_name.clone()),
            listeners: sorted(self.children::<rec::Listener>(svc.id()))
                .into_iter()
                .map(|l| cfg::Listener {
                    name: l.name.clone(),
                    protocol: l.protocol,
                    port: Some(l.port),
                    default_action: self.action_cfg(&l.default_action),
                    rules: rules(l),
                })
                .collect(),
        }
    }

    fn tg_cfg(tg: &rec::TargetGroup) -> cfg::TargetGroup {
        cfg::TargetGroup {
            name: tg.name.clone(),
            type_: tg.type_,
            config: Some(tg.config.clone()),
            arn: Some(tg.arn().to_owned()),
            targets: tg.targets.clone(),
        }
    }

    fn snsa_cfg(a: &rec::SnService) -> cfg::ServiceNetworkServiceAssociation {
        cfg::ServiceNetworkServiceAssociation {
            service_network_identifier: a.service_network_name.clone(),
            service_identifier: a.service_name.clone(),
        }
    }

    fn snva_cfg(a: &rec::SnVpc) -> cfg::ServiceNetworkVpcAssociation {
        cfg::ServiceNetworkVpcAssociation {
            service_network_identifier: a.service_network_name.clone(),
            vpc_identifier: a.vpc_id.clone(),
            security_group_ids: a.security_group_ids.clone(),
        }
    }

    /// The whole desired configuration the data plane compiles (references
    /// by name).
    pub fn to_config(&self) -> Config {
        Config {
            service_networks: sorted(self.of_kind())
                .into_iter()
                .map(Self::sn_cfg)
                .collect(),
            services: sorted(self.of_kind())
                .into_iter()
                .map(|svc| self.service_cfg(svc))
                .collect(),
            target_groups: sorted(self.of_kind())
                .into_iter()
                .map(Self::tg_cfg)
                .collect(),
            service_network_service_associations: sorted(self.of_kind())
                .into_iter()
                .map(Self::snsa_cfg)
                .collect(),
            service_network_vpc_associations: sorted(self.of_kind())
                .into_iter()
                .map(Self::snva_cfg)
                .collect(),
            access_log_subscriptions: sorted(self.of_kind())
                .into_iter()
                .filter_map(|a| self.als_cfg(a))
                .collect(),
            auth_policies: self
                .records
                .range(AUTH_POLICY.to_owned()..)
                .take_while(|(k, _)| k.starts_with(AUTH_POLICY))
                .filter_map(|(_, p)| self.policy_cfg(p))
                .collect(),
            ..self.resource_collections()
        }
    }

    /// The part of the configuration resources depend on: every service
    /// network and VPC association, the networks' and configurations'
    /// access log subscriptions, and every resource gateway,
    /// configuration and resource association. Planning it gives the same
    /// resources as planning everything.
    pub fn resource_config(&self) -> Config {
        let networks = sorted(self.of_kind::<rec::ServiceNetwork>());
        let configurations = sorted(self.of_kind::<rec::ResourceConfiguration>());
        let owners = networks
            .iter()
            .map(|sn| sn.id())
            .chain(configurations.iter().map(|r| r.id()));
        Config {
            service_networks: networks.iter().map(|sn| Self::sn_cfg(sn)).collect(),
            service_network_vpc_associations: sorted(self.of_kind())
                .into_iter()
                .map(Self::snva_cfg)
                .collect(),
            access_log_subscriptions: owners
                .flat_map(|owner| sorted(self.children::<rec::AccessLog>(owner)))
                .filter_map(|a| self.als_cfg(a))
                .collect(),
            ..self.resource_collections()
        }
    }

    /// The resource gateways, configurations and resource associations,
    /// and nothing else.
    fn resource_collections(&self) -> Config {
        Config {
            resource_gateways: sorted(self.of_kind::<rec::ResourceGateway>())
                .into_iter()
                .map(|g| cfg::ResourceGateway {
                    name: g.name.clone(),
                    vpc_identifier: g.vpc_id.clone(),
                    arn: Some(g.arn().to_owned()),
                })
                .collect(),
            resource_configurations: sorted(self.of_kind::<rec::ResourceConfiguration>())
                .into_iter()
                .map(|r| self.rcfg_cfg(r))
                .collect(),
            service_network_resource_associations: sorted(self.of_kind::<rec::SnResource>())
                .into_iter()
                .filter_map(|a| self.snra_cfg(a))
                .collect(),
            ..Config::default()
        }
    }

    fn rcfg_cfg(&self, r: &rec::ResourceConfiguration) -> cfg::ResourceConfiguration {
        let name_of = |id: &str| match self.records.get(id) {
            Some(Record::ResourceGateway(g)) => g.name.clone(),
            Some(Record::ResourceConfiguration(c)) => c.name.clone(),
            _ => id.to_owned(),
        };
        let child = r.type_ == "CHILD";
        cfg::ResourceConfiguration {
            name: r.name.clone(),
            type_: Some(r.type_.clone()),
            resource_gateway_identifier: (!child).then(|| name_of(&r.resource_gateway_id)),
            resource_configuration_group_identifier: r
                .resource_configuration_group_id
                .as_deref()
                .map(name_of),
            port_ranges: if child {
                Vec::new()
            } else {
                r.port_ranges.clone()
            },
            resource_configuration_definition: r.resource_configuration_definition.clone(),
            custom_domain_name: r.custom_domain_name.clone(),
            arn: Some(r.arn().to_owned()),
            vip: r.vip,
        }
    }

    fn snra_cfg(&self, a: &rec::SnResource) -> Option<cfg::ServiceNetworkResourceAssociation> {
        let r = self.get::<rec::ResourceConfiguration>(&a.resource_configuration_id)?;
        Some(cfg::ServiceNetworkResourceAssociation {
            service_network_identifier: a.service_network_name.clone(),
            resource_configuration_identifier: r.name.clone(),
            private_dns_enabled: a.private_dns_enabled,
            dns_name: Some(a.dns_entry.domain_name.clone()),
            id: Some(a.id().to_owned()),
        })
    }

    fn policy_cfg(&self, p: &Record) -> Option<cfg::AuthPolicy> {
        let Record::AuthPolicy(p) = p else {
            return None;
        };
        Some(cfg::AuthPolicy {
            resource_identifier: self.owner_name(&p.resource_id)?.to_owned(),
            policy: Value::String(p.policy.clone()),
        })
    }

    /// The name of the service network or service `id`.
    fn owner_name(&self, id: &str) -> Option<&str> {
        match self.records.get(id)? {
            Record::ServiceNetwork(sn) => Some(&sn.name),
            Record::Service(svc) => Some(&svc.name),
            Record::ResourceConfiguration(r) => Some(&r.name),
            _ => None,
        }
    }

    fn als_cfg(&self, a: &rec::AccessLog) -> Option<cfg::AccessLogSubscription> {
        Some(cfg::AccessLogSubscription {
            resource_identifier: self.owner_name(&a.resource_id)?.to_owned(),
            destination_arn: a.destination_arn.clone(),
            service_network_log_type: a.service_network_log_type.clone(),
        })
    }

    /// The part of the configuration one service depends on: the service,
    /// its listeners and rules, the target groups they use, its service
    /// networks and their VPC associations. Planning it gives the same
    /// result for that service as planning everything.
    pub fn service_config(&self, id: &str) -> Option<Config> {
        let svc = self.get::<rec::Service>(id)?;
        let mut groups = BTreeSet::new();
        for l in self.children::<rec::Listener>(id) {
            groups.extend(action_groups(&l.default_action));
            for r in self.children::<rec::Rule>(l.id()) {
                groups.extend(action_groups(&r.action));
            }
        }
        let assocs = sorted(self.children::<rec::SnService>(id));
        let networks: Vec<&rec::ServiceNetwork> = assocs
            .iter()
            .filter_map(|a| self.get(&a.service_network_id))
            .collect();
        let owners = || std::iter::once(id).chain(networks.iter().map(|sn| sn.id()));
        Some(Config {
            service_networks: networks.iter().map(|sn| Self::sn_cfg(sn)).collect(),
            services: vec![self.service_cfg(svc)],
            target_groups: groups
                .iter()
                .filter_map(|g| self.get(g))
                .map(Self::tg_cfg)
                .collect(),
            service_network_service_associations: assocs
                .iter()
                .map(|a| Self::snsa_cfg(a))
                .collect(),
            service_network_vpc_associations: networks
                .iter()
                .flat_map(|sn| sorted(self.children::<rec::SnVpc>(sn.id())))
                .map(Self::snva_cfg)
                .collect(),
            access_log_subscriptions: owners()
                .flat_map(|owner| sorted(self.children::<rec::AccessLog>(owner)))
                .filter_map(|a| self.als_cfg(a))
                .collect(),
            auth_policies: owners()
                .filter_map(|owner| self.records.get(&format!("{AUTH_POLICY}{owner}")))
                .filter_map(|p| self.policy_cfg(p))
                .collect(),
            ..Config::default()
        })
    }

    /// One target group alone, as a configuration.
    pub fn group_config(&self, id: &str) -> Option<Config> {
        let tg = self.get::<rec::TargetGroup>(id)?;
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

    /// The services of the service networks or service `owner` (an auth
    /// policy's or access log's): the services a change to it touches.
    fn services_of<'a>(&'a self, owner: &'a str) -> Vec<&'a str> {
        if owner.starts_with(Kind::Service.prefix()) {
            return vec![owner];
        }
        self.children::<rec::SnService>(owner)
            .map(|a| a.service_id.as_str())
            .collect()
    }

    /// What `changes` (applied, with `undo` their inverse) touched.
    pub fn affected(&self, changes: &[Change], undo: &[Change]) -> Affected {
        let before: HashMap<&str, &Record> = undo
            .iter()
            .filter_map(|c| match c {
                Change::Put(k, v) => Some((k.as_str(), v)),
                Change::Delete(_) => None,
            })
            .collect();
        let mut a = Affected::default();
        // Networks, VPC associations and logs matter to resources only
        // when there are some.
        let has_resources = self
            .of_kind::<rec::ResourceConfiguration>()
            .next()
            .is_some();
        let add_service = |a: &mut Affected, id: &str| {
            let svc = self.records.get(id).or_else(|| before.get(id).copied());
            if let Some(Record::Service(svc)) = svc {
                a.services.insert(id.to_owned(), svc.name.clone());
            }
        };
        for c in changes {
            let (Change::Put(key, _) | Change::Delete(key)) = c;
            let old = before.get(key.as_str()).copied();
            let new = self.records.get(key);
            for r in old.iter().chain(new.iter()) {
                let services: Vec<&str> = match r {
                    Record::AuthPolicy(p) => self.services_of(&p.resource_id),
                    Record::ResourceGateway(_)
                    | Record::ResourceConfiguration(_)
                    | Record::SnResource(_) => {
                        a.resources = true;
                        vec![]
                    }
                    Record::ResourcePolicy(_)
                    | Record::Share(_)
                    | Record::Permission(_)
                    | Record::DomainVerification(_) => vec![],
                    Record::Service(_) => vec![key.as_str()],
                    Record::Listener(l) => vec![l.service_id.as_str()],
                    Record::Rule(r) => vec![r.service_id.as_str()],
                    Record::SnService(s) => vec![s.service_id.as_str()],
                    Record::ServiceNetwork(_) => {
                        a.resources |= has_resources;
                        self.services_of(key)
                    }
                    Record::SnVpc(v) => {
                        a.resources |= has_resources;
                        self.services_of(&v.service_network_id)
                    }
                    Record::AccessLog(l) => {
                        a.resources |= has_resources;
                        self.services_of(&l.resource_id)
                    }
                    Record::TargetGroup(tg) => {
                        a.groups.insert(key.clone(), tg.name.clone());
                        let users = self.idx.tg_users.get(key.as_str()).into_iter().flatten();
                        users
                            .filter_map(|u| self.records.get(u))
                            .filter_map(|u| match u {
                                Record::Listener(l) => Some(l.service_id.as_str()),
                                Record::Rule(r) => Some(r.service_id.as_str()),
                                _ => None,
                            })
                            .collect()
                    }
                };
                for svc in services {
                    add_service(&mut a, svc);
                }
            }
            if let Some(Record::SnVpc(o)) = old {
                a.associations.push((o.vpc_id.clone(), false));
            }
            if let Some(Record::SnVpc(n)) = new {
                a.associations.push((n.vpc_id.clone(), true));
            }
        }
        a
    }
}

/// The account that owns the resource with ARN `arn` (its fifth field).
fn owner(arn: &str) -> &str {
    arn.split(':').nth(4).unwrap_or_default()
}

/// Records in creation order.
fn sorted<'a, R: Resource>(it: impl Iterator<Item = &'a R>) -> Vec<&'a R> {
    let mut v: Vec<&R> = it.collect();
    v.sort_by_key(|r| r.meta().seq);
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
    /// Whether the resources' plan may have changed.
    pub resources: bool,
}

/// Context of one request.
struct Ctx<'a> {
    state: &'a State,
    settings: &'a Settings,
    now: String,
    input: &'a Value,
    /// The account of the key that signed the call: it owns what the call
    /// creates, and sees and changes only what it owns and what is shared
    /// with it.
    caller: &'a str,
    /// What shares let the caller do with others' resources (ARN ->
    /// actions), worked out at the first question.
    grants: std::cell::OnceCell<BTreeMap<String, sharing::Granted>>,
}

impl<'a> Ctx<'a> {
    fn arn(&self, path: &str) -> String {
        format!(
            "arn:aws:vpc-lattice:{}:{}:{path}",
            self.settings.naming.region, self.caller
        )
    }

    /// The caller's `R` that `ident` (an id or ARN) names. Another
    /// account's is refused as AWS refuses it: named by ARN, access is
    /// denied; named by id, it is not found.
    fn resolve<R: Resource>(&self, ident: &str) -> Result<&'a R, ApiError> {
        let r = self.state.resolve::<R>(ident)?;
        self.check_owner(r.arn(), ident, R::KIND.type_name())?;
        Ok(r)
    }

    /// The actions shares allow the caller on another account's resource
    /// at `arn`; `None` if nothing shares it with the caller.
    fn shared(&self, arn: &str) -> Option<&sharing::Granted> {
        self.grants
            .get_or_init(|| {
                sharing::grants(
                    self.state,
                    self.caller,
                    self.settings.org(self.caller),
                    None,
                )
            })
            .get(arn)
    }

    /// The `R` that `ident` names, if the caller owns it or a share allows
    /// it `action` (`vpc-lattice:GetService`) on it. A share that leaves
    /// the action out is AccessDeniedException; an unshared resource is
    /// refused as [`Ctx::resolve`] refuses it.
    fn resolve_for<R: Resource>(&self, ident: &str, action: &str) -> Result<&'a R, ApiError> {
        let r = self.state.resolve::<R>(ident)?;
        if owner(r.arn()) == self.caller {
            return Ok(r);
        }
        match self.shared(r.arn()) {
            Some(g) if g.permits(action) => Ok(r),
            Some(_) => Err(ApiError::access_denied(format!(
                "account {} may not {action} on {}: the resource share's permission does not allow it",
                self.caller,
                r.arn()
            ))),
            None => self.check_owner(r.arn(), ident, R::KIND.type_name()).map(|()| r),
        }
    }

    /// The `R`s the caller owns or may read (`action`) through a share.
    fn visible<R: Resource>(&self, action: &'a str) -> Vec<&'a R> {
        sorted(self.state.of_kind::<R>().filter(|r| {
            owner(r.arn()) == self.caller || self.shared(r.arn()).is_some_and(|g| g.permits(action))
        }))
    }

    /// Refuses access to the resource at `arn` (named by `ident`) unless
    /// the caller owns it.
    fn check_owner(&self, arn: &str, ident: &str, type_name: &str) -> Result<(), ApiError> {
        if owner(arn) == self.caller {
            Ok(())
        } else if ident.starts_with("arn:") {
            Err(ApiError::access_denied(format!(
                "account {} may not access {ident}",
                self.caller
            )))
        } else {
            Err(ApiError::not_found(type_name, ident))
        }
    }

    /// The caller's `R`s, by id.
    fn mine<R: Resource>(&self) -> impl Iterator<Item = &'a R> + use<'a, R> {
        let caller = self.caller;
        self.state
            .of_kind::<R>()
            .filter(move |r| owner(r.arn()) == caller)
    }

    /// A string member of the input (the model checked its type; absent
    /// is empty).
    fn get(&self, key: &str) -> &'a str {
        s(self.input, key)
    }

    /// Member `key` of the input as a `T`, if given. The model validated
    /// its shape; a `T` stricter than the model is refused naming it.
    fn opt<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ApiError> {
        typed(self.input, key)
    }

    /// Member `key` of the input as a `T`, required.
    fn req<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T, ApiError> {
        self.opt(key)?
            .ok_or_else(|| ApiError::field(key, "is required"))
    }

    /// A page of a List*: items from the one after `nextToken` (each
    /// item's token is `key`), each as `summary`.
    fn page<T>(
        &self,
        items: &[T],
        key: impl Fn(&T) -> String,
        summary: impl Fn(&T) -> Value,
    ) -> Result<Outcome, ApiError> {
        let start = match self.input["nextToken"].as_str() {
            None => 0,
            Some(tok) => items
                .iter()
                .position(|r| key(r) == tok)
                .ok_or_else(|| ApiError::field("nextToken", "is not a token this API returned"))?,
        };
        Ok(self.page_from(("items", 100), items, start, |i| key(&items[i]), summary))
    }

    /// A page of a RAM list: RAM names its list (`resourceShares`) and
    /// bounds `maxResults` at 500; its tokens are positions.
    fn ram_page<T>(
        &self,
        list: &str,
        items: &[T],
        summary: impl Fn(&T) -> Value,
    ) -> Result<Outcome, ApiError> {
        let start = match self.input["nextToken"].as_str() {
            None => 0,
            Some(tok) => tok
                .parse::<usize>()
                .ok()
                .filter(|i| *i < items.len())
                .ok_or_else(|| {
                    ApiError::ram(
                        "InvalidNextTokenException",
                        "nextToken: is not a token this API returned",
                    )
                })?,
        };
        Ok(self.page_from((list, 500), items, start, |i| i.to_string(), summary))
    }

    /// The page of `items` from `start` in member `list`, at most
    /// `maxResults` (else `default_max`) long, each as `summary`; `token(i)`
    /// names item `i`, where the next page starts.
    fn page_from<T>(
        &self,
        (list, default_max): (&str, usize),
        items: &[T],
        start: usize,
        token: impl Fn(usize) -> String,
        summary: impl Fn(&T) -> Value,
    ) -> Outcome {
        let max = self.input["maxResults"]
            .as_u64()
            .map_or(default_max, |m| m as usize);
        let page: Vec<Value> = items.iter().skip(start).take(max).map(summary).collect();
        let mut out = json!({ list: page });
        if start + max < items.len() {
            out["nextToken"] = token(start + max).into();
        }
        Outcome::Read(out)
    }

    /// A page of resources, each as `summary`.
    fn page_of<R: Resource>(
        &self,
        items: &[&R],
        summary: impl Fn(&R) -> Value,
    ) -> Result<Outcome, ApiError> {
        self.page(items, |r| r.id().to_owned(), |r| summary(r))
    }

    /// Id, ARN (`arn(id)`), times, order and the input's tags of a new
    /// resource of `kind`.
    fn meta(&self, kind: Kind, arn: impl FnOnce(&str) -> String) -> Result<Meta, ApiError> {
        let id = new_id(kind);
        Ok(Meta {
            arn: arn(&id),
            id,
            created_at: self.now.clone(),
            last_updated_at: self.now.clone(),
            seq: self.state.next_seq,
            tags: self.user_tags()?,
        })
    }

    /// The input's `tags`, if given, with only the user's keys.
    fn user_tags(&self) -> Result<Option<rec::Tags>, ApiError> {
        let tags: Option<rec::Tags> = self.opt("tags")?;
        user_tag_keys(
            "tags",
            tags.iter().flat_map(|t| t.keys().map(String::as_str)),
        )?;
        Ok(tags)
    }

    /// Meta of a new resource of `kind` whose ARN is `.../{arn_type}/{id}`.
    fn meta_at(&self, kind: Kind, arn_type: &str) -> Result<Meta, ApiError> {
        self.meta(kind, |id| self.arn(&format!("{arn_type}/{id}")))
    }

    /// A new resource of a globally named kind: its name must be free and
    /// the kind under its quota.
    fn check_new<R: Resource>(
        &self,
        noun: &str,
        quota: &str,
        limit: usize,
    ) -> Result<(), ApiError> {
        let name = self.get("name");
        let kind = R::KIND;
        if let Some(existing) = self.state.by_name::<R>(name) {
            // Another account's resource is not shown, only its name.
            let (id, whose) = if owner(existing.arn()) == self.caller {
                (existing.id(), "")
            } else {
                (
                    name,
                    " in another account (names are unique across latticed's accounts)",
                )
            };
            return Err(ApiError::conflict(
                kind.type_name(),
                id,
                format!("a {noun} named {name} already exists{whose}"),
            ));
        }
        if self.state.count(self.caller, kind) >= limit {
            return Err(ApiError::quota(kind.type_name(), quota, limit));
        }
        Ok(())
    }

    /// A Get*: the record, whole (the engine projects it).
    fn read<R: Resource>(&self, ident_field: &str) -> Result<Outcome, ApiError> {
        Ok(Outcome::Read(
            self.resolve::<R>(self.get(ident_field))?.to_value(),
        ))
    }

    /// The id of an optional identifier parameter (a List filter), if
    /// given: a resource the caller owns or that is shared with it.
    fn optional_id<R: Resource>(&self, field: &str) -> Result<Option<&'a str>, ApiError> {
        let Some(ident) = self.input[field].as_str() else {
            return Ok(None);
        };
        let r = self.state.resolve::<R>(ident)?;
        if owner(r.arn()) != self.caller && self.shared(r.arn()).is_none() {
            self.check_owner(r.arn(), ident, R::KIND.type_name())?;
        }
        Ok(Some(r.id()))
    }

    /// A copy of `r` marked changed now.
    fn touched<R: Resource>(&self, r: &R) -> R {
        r.touched(&self.now)
    }

    /// The action at input member `field`, with every target group
    /// checked to exist, named by id, and weighted (1 unless given).
    fn action(&self, field: &str) -> Result<cfg::RuleAction, ApiError> {
        self.action_in(self.input, field)
    }

    /// [`Ctx::action`] of member `field` of `v` (a batch's item).
    fn action_in(&self, v: &Value, field: &str) -> Result<cfg::RuleAction, ApiError> {
        let mut a: cfg::RuleAction =
            typed(v, field)?.ok_or_else(|| ApiError::field(field, "is required"))?;
        let groups = a
            .forward
            .iter_mut()
            .flat_map(|f| f.target_groups.iter_mut());
        for (i, g) in groups.enumerate() {
            let ident = &g.target_group_identifier;
            // As AWS: an unknown group is ResourceNotFoundException (the
            // message names the field); another account's, as resolve says.
            let tg = self.resolve::<rec::TargetGroup>(ident).map_err(|mut e| {
                if e.code == "ResourceNotFoundException" {
                    e.message = format!(
                        "{field}.forward.targetGroups[{i}].targetGroupIdentifier: target group {ident} was not found"
                    );
                }
                e
            })?;
            g.target_group_identifier = tg.id().to_owned();
            g.weight.get_or_insert(1);
        }
        Ok(a)
    }
}

/// Member `key` of `v` as a `T`, if present; an error naming it if it does
/// not fit.
fn typed<T: serde::de::DeserializeOwned>(v: &Value, key: &str) -> Result<Option<T>, ApiError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => crate::control::deserialize_at(x).map(Some).map_err(|e| {
            let field = if e.path.is_empty() {
                key.to_owned()
            } else {
                format!("{key}.{}", e.path)
            };
            ApiError::field(&field, e.reason)
        }),
    }
}

/// Refuses tag keys (of input member `field`) that begin with `aws:`:
/// they are AWS's own, and AWS refuses them.
fn user_tag_keys<'k>(field: &str, keys: impl IntoIterator<Item = &'k str>) -> Result<(), ApiError> {
    for k in keys {
        if k.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
            return Err(ApiError::field(
                &format!("{field}.{k}"),
                "keys that begin with aws: are reserved for AWS",
            ));
        }
    }
    Ok(())
}

/// An enum member as the API spells it.
fn wire<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Refuses `name` for a new child of `parent` (its noun and id) if one of
/// its children `mine` has it.
fn name_free<R: Resource>(
    mine: &[&R],
    name_of: impl Fn(&R) -> &str,
    name: &str,
    (parent_noun, parent): (&str, &str),
) -> Result<(), ApiError> {
    match mine.iter().find(|r| name_of(r) == name) {
        Some(r) => Err(ApiError::conflict(
            R::KIND.type_name(),
            r.id(),
            format!(
                "{parent_noun} {parent} already has a {} named {name}",
                R::KIND.type_name().to_lowercase()
            ),
        )),
        None => Ok(()),
    }
}

/// A write of one record, answered with it.
fn put<R: Resource>(r: R) -> Result<Outcome, ApiError> {
    let out = r.to_value();
    write(vec![Change::Put(r.id().to_owned(), r.into_record())], out)
}

fn write(changes: Vec<Change>, result: Value) -> Result<Outcome, ApiError> {
    Ok(Outcome::Write(Mutation { changes, result }))
}

/// Why latticed does not implement `op`, if it does not.
pub fn unsupported(op: &str) -> Option<ApiError> {
    let what = if let Some(ram) = op.strip_prefix("ram:") {
        match ram {
            "GetResourcePolicies"
            | "PromoteResourceShareCreatedFromPolicy"
            | "PromotePermissionCreatedFromPolicy" => "resource policies made outside RAM",
            "ListPermissionAssociations"
            | "ReplacePermissionAssociations"
            | "ListReplacePermissionAssociationsWork" => "bulk permission replacement",
            "ListSourceAssociations" => "service principal sources",
            _ => return None,
        }
    } else {
        return None;
    };
    Some(ApiError::unsupported(op, what))
}

/// One operation's handler.
type Handler = fn(&Ctx<'_>) -> Result<Outcome, ApiError>;

/// Each resource's operations, from its module's `OPS`: adding an
/// operation touches only its resource's module.
const RESOURCES: [&[(&str, Handler)]; 13] = [
    service_networks::OPS,
    services::OPS,
    target_groups::OPS,
    listeners::OPS,
    rules::OPS,
    associations::OPS,
    access_logs::OPS,
    policies::OPS,
    tags::OPS,
    sharing::OPS,
    permissions::OPS,
    resources::OPS,
    domain_verifications::OPS,
];

/// Every operation latticed handles, with its handler.
fn operations() -> impl Iterator<Item = &'static (&'static str, Handler)> {
    RESOURCES.iter().flat_map(|ops| ops.iter())
}

/// A call: its operation, validated input and the caller's account.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    /// Operation name.
    pub op: &'a str,
    /// Input, validated against the model.
    pub input: &'a Value,
    /// Account of the key that signed it.
    pub caller: &'a str,
}

/// Handles `call`.
pub fn handle(
    call: Call<'_>,
    state: &State,
    settings: &Settings,
    now: String,
) -> Result<Outcome, ApiError> {
    let Call { op, input, caller } = call;
    let c = Ctx {
        state,
        settings,
        now,
        input,
        caller,
        grants: std::cell::OnceCell::new(),
    };
    match operations().find(|(name, _)| *name == op) {
        Some((_, handler)) => handler(&c),
        None => Err(unsupported(op)
            .unwrap_or_else(|| ApiError::unsupported(op, "this operation's resources"))),
    }
}

/// Records that belong to a deleted resource: its policies and access log
/// subscriptions.
fn dependents(state: &State, id: &str) -> Vec<Change> {
    let mut out = Vec::new();
    for key in [
        format!("{AUTH_POLICY}{id}"),
        format!("{RESOURCE_POLICY}{id}"),
    ] {
        if state.records.contains_key(&key) {
            out.push(Change::Delete(key));
        }
    }
    for a in state.children::<rec::AccessLog>(id) {
        out.push(Change::Delete(a.id().to_owned()));
    }
    // A deleted resource leaves the shares that held it.
    if let Some(arn) = state
        .records
        .get(id)
        .map(Record::arn)
        .filter(|a| !a.is_empty())
    {
        for (key, s) in state.shares_by_key() {
            if s.resources.contains_key(arn) {
                let mut s = s.clone();
                s.resources.remove(arn);
                out.push(Change::Put(key.clone(), Record::Share(s)));
            }
        }
    }
    out
}

/// The deletion of `r` and of what belongs to it.
fn deleted<R: Resource>(state: &State, r: &R) -> Vec<Change> {
    let mut changes = vec![Change::Delete(r.id().to_owned())];
    changes.extend(dependents(state, r.id()));
    changes
}

/// Checks that VPC (namespace) `vpc`, named at input `field`, exists and
/// belongs to the caller (the inventory's `vpcs`, else the default
/// account): only its owner may use it.
fn check_vpc(c: &Ctx<'_>, field: &str, vpc: &str) -> Result<(), ApiError> {
    let settings = c.settings;
    if vpc.contains('/') || vpc.starts_with('.') {
        return Err(ApiError::field(
            field,
            format!("{vpc:?} is not a namespace name"),
        ));
    }
    match &settings.cluster_vpcs {
        None if !settings.netns_dir.join(vpc).exists() => {
            return Err(ApiError::field(
                field,
                format!(
                    "network namespace {vpc:?} does not exist (no {})",
                    settings.netns_dir.join(vpc).display()
                ),
            ));
        }
        None => {}
        Some(claims) => match claims.get(vpc).map(Vec::as_slice) {
            None | Some([]) => {
                return Err(ApiError::field(
                    field,
                    format!("no node of the cluster hosts network namespace {vpc:?}"),
                ))
            }
            Some([_]) => {}
            Some(nodes) => {
                return Err(ApiError::field(
                    field,
                    format!(
                        "network namespace {vpc:?} is claimed by more than one node ({}); each VPC must be hosted by one node",
                        nodes.join(", ")
                    ),
                ))
            }
        },
    }
    let owner = settings.vpc_owner(vpc);
    if owner != c.caller {
        return Err(ApiError::access_denied(format!(
            "VPC {vpc} belongs to account {owner}; only its owner may use it"
        )));
    }
    Ok(())
}

/// The service network or service `resourceIdentifier` names: its id, ARN
/// and auth type.
struct Owner<'a> {
    id: &'a str,
    arn: &'a str,
    auth_type: cfg::AuthType,
}

fn sn_or_service<'a>(c: &Ctx<'a>, ident: &str) -> Result<Owner<'a>, ApiError> {
    let id = ident.rsplit('/').next().unwrap_or(ident);
    if id.starts_with(Kind::ServiceNetwork.prefix()) {
        let sn = c.resolve::<rec::ServiceNetwork>(ident)?;
        Ok(Owner {
            id: sn.id(),
            arn: sn.arn(),
            auth_type: sn.auth_type,
        })
    } else if id.starts_with(Kind::Service.prefix()) {
        let svc = c.resolve::<rec::Service>(ident)?;
        Ok(Owner {
            id: svc.id(),
            arn: svc.arn(),
            auth_type: svc.auth_type,
        })
    } else {
        Err(ApiError::field(
            "resourceIdentifier",
            "must name a service network or a service",
        ))
    }
}

fn listener_of<'a>(c: &Ctx<'a>) -> Result<&'a rec::Listener, ApiError> {
    let svc = c.resolve::<rec::Service>(c.get("serviceIdentifier"))?;
    let ident = c.get("listenerIdentifier");
    let l = c.resolve::<rec::Listener>(ident)?;
    if l.service_id != svc.id() {
        return Err(ApiError::not_found("LISTENER", ident));
    }
    Ok(l)
}

/// A string member of an input object (absent is empty).
fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

/// The API as its clients see it, for each resource's unit tests: no
/// socket, no store, no root.
#[cfg(test)]
mod testing {
    use super::*;

    /// Input checked against the model as the server checks it, the
    /// handler, its changes applied, the answer projected onto the
    /// operation's output shape. VPCs `vpc-aa` (the default account's)
    /// and `vpc-bb` (account [`OTHER`]'s) exist. Calls are the default
    /// account's unless [`Api::as_account`] says otherwise.
    pub(super) struct Api {
        pub(super) state: State,
        pub(super) settings: Settings,
        pub(super) caller: String,
        /// The time calls are made at.
        pub(super) now: String,
    }

    /// A second account.
    pub(super) const OTHER: &str = "222233334444";

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
                    vpc_owners: [("vpc-bb".to_owned(), OTHER.to_owned())].into(),
                    cluster_vpcs: None,
                    orgs: BTreeMap::new(),
                },
                caller: crate::control::Naming::example().account,
                now: "2026-12-06T00:00:00.000Z".to_owned(),
            }
        }

        /// Calls as account `id` from now on.
        pub(super) fn as_account(&mut self, id: &str) -> &mut Self {
            id.clone_into(&mut self.caller);
            self
        }

        pub(super) fn call(&mut self, op: &str, input: Value) -> Result<Value, ApiError> {
            self.call_api(super::super::model::Api::Lattice, op, input)
        }

        /// A call of RAM's API, as [`Api::call`] makes one of Lattice's;
        /// errors as RAM answers them.
        pub(super) fn ram(&mut self, op: &str, input: Value) -> Result<Value, ApiError> {
            self.call_api(super::super::model::Api::Ram, op, input)
                .map_err(ApiError::in_ram)
        }

        /// The answer of a RAM call that must succeed.
        pub(super) fn ram_ok(&mut self, op: &str, input: Value) -> Value {
            self.ram(op, input)
                .unwrap_or_else(|e| panic!("{op}: {} {e}", e.code))
        }

        /// The error of a RAM call that must fail; nothing changed.
        pub(super) fn ram_err(&mut self, op: &str, input: Value) -> ApiError {
            let before = self.state.records.clone();
            match self.ram(op, input) {
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

        fn call_api(
            &mut self,
            api: super::super::model::Api,
            op: &str,
            input: Value,
        ) -> Result<Value, ApiError> {
            let m = api.model();
            let o = &m.operations[op];
            let op = &api.handler_name(op);
            if let Some(shape) = &o.input {
                let problems = m.validate(shape, &input);
                if !problems.is_empty() {
                    return Err(ApiError::validation(problems));
                }
            }
            let now = self.now.clone();
            let call = Call {
                op,
                input: &input,
                caller: &self.caller,
            };
            let out = match handle(call, &self.state, &self.settings, now)? {
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

    /// A stored record missing what the API accepted, or holding it in
    /// the wrong shape, does not load: the error names the record and the
    /// field, and no default stands in (a listener without its protocol
    /// once became HTTP, a fixed response without its status a 404).
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
        let planned = &st.to_config().services[0].listeners[0];
        assert_eq!(planned.protocol, cfg::ListenerProtocol::Https);
        let id = s(&listener, "id").to_owned();
        let stored = || -> Vec<(String, Value)> {
            st.records
                .iter()
                .map(|(k, r)| (k.clone(), r.to_value()))
                .collect()
        };
        let reloaded = State::from_records(stored()).unwrap();
        assert_eq!(reloaded.records, st.records, "records survive the store");
        for (path, expect) in [
            (
                "/protocol",
                vec![format!("stored record {id}"), "protocol".into()],
            ),
            (
                "/defaultAction/fixedResponse/statusCode",
                vec![
                    format!("stored record {id}: defaultAction.fixedResponse"),
                    "statusCode".into(),
                ],
            ),
        ] {
            let mut rows = stored();
            let (_, rec) = rows.iter_mut().find(|(k, _)| *k == id).unwrap();
            let (parent, field) = path.rsplit_once('/').unwrap();
            rec.pointer_mut(parent)
                .and_then(Value::as_object_mut)
                .unwrap()
                .remove(field);
            let err = State::from_records(rows).unwrap_err().to_string();
            for e in expect {
                assert!(err.contains(&e), "{path}: {err} lacks {e}");
            }
        }
        let mut rows = stored();
        let (_, rec) = rows.iter_mut().find(|(k, _)| *k == id).unwrap();
        rec["port"] = "443".into();
        let err = State::from_records(rows).unwrap_err().to_string();
        assert!(err.contains(&format!("stored record {id}: port")), "{err}");
    }

    /// Accounts own what they create and see only that: another account's
    /// resource is not found by id and denied by ARN, for reads and for
    /// every change; names and quotas are per account; a VPC is its
    /// owner's to associate.
    #[test]
    fn an_account_sees_and_changes_only_its_own() {
        use testing::{Api, OTHER};
        let mut api = Api::with_quotas(Quotas {
            service_networks: 1,
            ..Quotas::default()
        });
        let [sn, svc, l, tg] = api.service_in_network();
        let get = |api: &mut Api, op: &str, key: &str, id: &str| {
            api.call(op, json!({ key: id })).map(|v| v["arn"].clone())
        };
        let sn_arn = get(
            &mut api,
            "GetServiceNetwork",
            "serviceNetworkIdentifier",
            &sn,
        )
        .unwrap();
        let svc_arn = get(&mut api, "GetService", "serviceIdentifier", &svc).unwrap();
        let tg_arn = get(&mut api, "GetTargetGroup", "targetGroupIdentifier", &tg).unwrap();
        let (sn_arn, svc_arn, tg_arn) = (
            sn_arn.as_str().unwrap().to_owned(),
            svc_arn.as_str().unwrap().to_owned(),
            tg_arn.as_str().unwrap().to_owned(),
        );

        api.as_account(OTHER);
        for list in ["ListServiceNetworks", "ListServices", "ListTargetGroups"] {
            let items = api.ok(list, json!({}));
            assert_eq!(items["items"], json!([]), "{list}");
        }
        let code = |api: &mut Api, op: &str, input: Value| api.err(op, input).code;
        assert_eq!(
            code(
                &mut api,
                "GetServiceNetwork",
                json!({"serviceNetworkIdentifier": sn})
            ),
            "ResourceNotFoundException"
        );
        let denied = [
            (
                "GetServiceNetwork",
                json!({"serviceNetworkIdentifier": sn_arn}),
            ),
            (
                "UpdateServiceNetwork",
                json!({"serviceNetworkIdentifier": sn_arn, "authType": "AWS_IAM"}),
            ),
            (
                "DeleteServiceNetwork",
                json!({"serviceNetworkIdentifier": sn_arn}),
            ),
            ("DeleteService", json!({"serviceIdentifier": svc_arn})),
            (
                "CreateListener",
                json!({"serviceIdentifier": svc_arn, "name": "web", "protocol": "HTTP",
                "defaultAction": {"fixedResponse": {"statusCode": 404}}}),
            ),
            (
                "DeleteListener",
                json!({"serviceIdentifier": svc_arn, "listenerIdentifier": l}),
            ),
            (
                "RegisterTargets",
                json!({"targetGroupIdentifier": tg_arn, "targets": [{"id": "10.0.0.9"}]}),
            ),
            (
                "UpdateTargetGroup",
                json!({"targetGroupIdentifier": tg_arn, "healthCheck": {"enabled": false}}),
            ),
            (
                "DeleteTargetGroup",
                json!({"targetGroupIdentifier": tg_arn}),
            ),
            (
                "TagResource",
                json!({"resourceArn": svc_arn, "tags": {"k": "v"}}),
            ),
            (
                "PutAuthPolicy",
                json!({"resourceIdentifier": svc_arn, "policy": "{}"}),
            ),
            (
                "PutResourcePolicy",
                json!({"resourceArn": sn_arn, "policy": "{}"}),
            ),
            (
                "CreateServiceNetworkServiceAssociation",
                json!({"serviceNetworkIdentifier": sn_arn, "serviceIdentifier": svc_arn}),
            ),
            (
                "CreateServiceNetworkVpcAssociation",
                json!({"serviceNetworkIdentifier": sn_arn, "vpcIdentifier": "vpc-bb"}),
            ),
            (
                "CreateAccessLogSubscription",
                json!({"resourceIdentifier": svc_arn,
                "destinationArn": "arn:aws:logs:us-east-1:222233334444:log-group:x"}),
            ),
        ];
        for (op, input) in denied {
            let e = api.err(op, input);
            assert_eq!(e.code, "AccessDeniedException", "{op}: {e}");
        }
        // Names are unique across accounts (the data plane names what it
        // routes), without showing the other account's resource.
        let e = api.err("CreateServiceNetwork", json!({"name": "net-a"}));
        assert_eq!(e.code, "ConflictException");
        assert!(!e.body().to_string().contains(&sn), "{}", e.body());
        // Its own, with its id in the ARN (quotas are per account); its
        // VPC is its own to associate, the other account's is not.
        let mine = api.ok("CreateServiceNetwork", json!({"name": "net-b"}));
        assert!(
            mine["arn"]
                .as_str()
                .unwrap()
                .contains(&format!(":{OTHER}:servicenetwork/")),
            "{mine}"
        );
        api.ok(
            "CreateServiceNetworkVpcAssociation",
            json!({"serviceNetworkIdentifier": mine["id"], "vpcIdentifier": "vpc-bb"}),
        );
        assert_eq!(
            code(
                &mut api,
                "CreateServiceNetworkVpcAssociation",
                json!({"serviceNetworkIdentifier": mine["id"], "vpcIdentifier": "vpc-aa"})
            ),
            "AccessDeniedException"
        );
        let assoc = api.ok(
            "ListServiceNetworkVpcAssociations",
            json!({"vpcIdentifier": "vpc-bb"}),
        );
        assert_eq!(assoc["items"][0]["createdBy"], OTHER, "{assoc}");
        assert_eq!(
            code(&mut api, "CreateServiceNetwork", json!({"name": "net-c"})),
            "ServiceQuotaExceededException"
        );
        // The first account still sees only its own.
        api.as_account("111122223333");
        let listed = api.ok("ListServiceNetworks", json!({}));
        assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
        assert_eq!(listed["items"][0]["id"], sn.as_str());
    }

    /// Every operation of the model has one home: one resource's module
    /// that handles it, or the list of what latticed does not build yet;
    /// and no module names an operation the model lacks.
    #[test]
    fn every_operation_of_the_model_has_one_home() {
        use super::super::model::Api;
        let state = State::default();
        let settings = settings();
        let mut names = BTreeSet::new();
        for api in [Api::Lattice, Api::Ram] {
            for op in api.model().operations.keys() {
                let op = api.handler_name(op);
                let listed = operations().filter(|(name, _)| *name == op).count();
                match unsupported(&op) {
                    Some(_) => assert_eq!(listed, 0, "{op} is both handled and unsupported"),
                    None => {
                        assert_eq!(listed, 1, "{op} is in the tables {listed} times");
                        let input = json!({});
                        let r = handle(call(&op, &input), &state, &settings, "now".into());
                        if let Err(e) = r {
                            assert!(
                                !e.message.contains("are not supported by latticed"),
                                "{op} was refused as unsupported: {e}"
                            );
                        }
                    }
                }
                names.insert(op);
            }
        }
        for (name, _) in operations() {
            assert!(names.contains(*name), "{name} is not in either model");
        }
    }

    fn settings() -> Settings {
        Settings {
            naming: crate::control::Naming::example(),
            quotas: Quotas::default(),
            netns_dir: std::env::temp_dir(),
            vpc_owners: BTreeMap::new(),
            cluster_vpcs: None,
            orgs: BTreeMap::new(),
        }
    }

    /// A call of the default account.
    fn call<'a>(op: &'a str, input: &'a Value) -> Call<'a> {
        Call {
            op,
            input,
            caller: "111122223333",
        }
    }

    fn run(state: &mut State, op: &str, input: Value) -> (Value, Vec<Change>) {
        match handle(
            call(op, &input),
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
        let rows = state.records.iter();
        State::from_records(rows.map(|(k, r)| (k.clone(), r.to_value())).collect())
            .unwrap()
            .idx
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
        let vip_of = |st: &State, id: &str| st.resolve::<rec::Service>(id).unwrap().vip;
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
            call("CreateListener", &input),
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
        assert_eq!(st.count("111122223333", Kind::Service), 2);
        assert_eq!(st.children::<rec::Listener>(s(&svc, "id")).count(), 1);
        assert!(st.by_name::<rec::Service>("one").is_some());

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
        assert!(st.by_name::<rec::Service>("one").is_none());
        assert_eq!(st.children::<rec::Listener>(s(&svc, "id")).count(), 0);
        st.apply(&undo2);
        st.apply(&undo);
        assert_eq!(st.idx, before);
    }
}
