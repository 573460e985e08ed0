//! Routing snapshots from plans: the one builder for whole snapshots and
//! for deltas. It needs no kernel object, only namespace ids, so a unit
//! test checks that a snapshot built by deltas equals one built whole after
//! every API operation.

use std::{
    collections::{BTreeSet, HashMap},
    net::SocketAddrV4,
    sync::Arc,
};

use latticed_proxy::{
    routing::{ListenerKey, ListenerRoute, NetworkRoute, Served, TargetGroupRoute, VipRoutes},
    NsId, RouteTable,
};

use super::Delta;
use crate::{compile::Compiler, control::Plan};

/// The compiled pieces of the current snapshot, kept so a change rebuilds
/// only its own.
#[derive(Default)]
pub(super) struct Compiled {
    pub(super) groups: HashMap<String, Arc<TargetGroupRoute>>,
    pub(super) listeners: HashMap<String, Vec<(u16, Arc<ListenerRoute>)>>,
}

/// Namespace ids by name: the namespaces managed now.
pub(super) type Ids<'a> = HashMap<&'a str, NsId>;

impl Compiled {
    /// Compiles the whole of `plan` over the namespaces in `ids`.
    pub(super) fn full(compiler: &mut Compiler, plan: &Plan, ids: &Ids<'_>) -> (Self, RouteTable) {
        let groups: HashMap<String, Arc<TargetGroupRoute>> = plan
            .target_groups
            .iter()
            .map(|(name, tg)| (name.to_string(), compiler.group_route(tg, ids)))
            .collect();
        let listeners = plan
            .services
            .iter()
            .map(|(name, svc)| (name.to_string(), compiler.listener_routes(svc, &groups)))
            .collect();
        let compiled = Self { groups, listeners };
        let mut networks = NetworkRoutes::new();
        let mut table = HashMap::new();
        for (ns, ats) in plan.client_namespaces() {
            let Some(&id) = ids.get(ns) else { continue };
            for at in ats {
                let routes = compiled.vip_routes(compiler, plan, ns, at, &mut networks);
                if !routes.is_empty() {
                    table.insert(listener_key(id, at), Arc::new(routes));
                }
            }
        }
        let table = RouteTable {
            listeners: table.into_iter().collect(),
            resources: compiler.resource_routes(plan, ids),
        };
        (compiled, table)
    }

    /// Rebuilds only what `delta` touched between `old` and `plan`: its
    /// target groups, its services' listeners, and the VIP:port keys those
    /// services had or have. The new table shares everything else with
    /// `current`.
    pub(super) fn delta(
        &mut self,
        compiler: &mut Compiler,
        (old, plan): (&Plan, &Plan),
        delta: &Delta,
        ids: &Ids<'_>,
        current: &RouteTable,
    ) -> RouteTable {
        for g in &delta.groups {
            match plan.target_groups.get(g.as_str()) {
                Some(tg) => {
                    self.groups.insert(g.clone(), compiler.group_route(tg, ids));
                }
                None => {
                    self.groups.remove(g);
                }
            }
        }
        let mut keys: BTreeSet<(String, SocketAddrV4)> = BTreeSet::new();
        for name in &delta.services {
            for svc in [old, plan]
                .into_iter()
                .filter_map(|p| p.services.get(name.as_str()))
            {
                for l in &svc.listeners {
                    for ns in svc.reachable_from.keys() {
                        keys.insert((ns.clone(), SocketAddrV4::new(svc.vip, l.port)));
                    }
                }
            }
            match plan.services.get(name.as_str()) {
                Some(svc) => {
                    let routes = compiler.listener_routes(svc, &self.groups);
                    self.listeners.insert(name.clone(), routes);
                }
                None => {
                    self.listeners.remove(name);
                }
            }
        }
        let mut table = current.listeners.clone();
        let mut networks = NetworkRoutes::new();
        for (ns, at) in keys {
            let Some(&id) = ids.get(ns.as_str()) else {
                continue;
            };
            let key = listener_key(id, at);
            let routes = self.vip_routes(compiler, plan, &ns, at, &mut networks);
            if routes.is_empty() {
                table.remove(&key);
            } else {
                table.insert(key, Arc::new(routes));
            }
        }
        let resources = if delta.resources {
            compiler.resource_routes(plan, ids)
        } else {
            current.resources.clone()
        };
        RouteTable {
            listeners: table,
            resources,
        }
    }

    /// What answers at `at` in namespace `ns`: each service of `plan` that
    /// listens there and is reachable from `ns`, from the compiled
    /// listeners. The one definition of a snapshot entry, for whole
    /// snapshots and deltas alike, so the two cannot build it apart.
    fn vip_routes(
        &self,
        compiler: &Compiler,
        plan: &Plan,
        ns: &str,
        at: SocketAddrV4,
        networks: &mut NetworkRoutes,
    ) -> VipRoutes {
        let mut routes = VipRoutes::default();
        for svc in plan.services_at(at) {
            let Some(net) = svc.reachable_from.get(ns) else {
                continue;
            };
            let network = networks
                .entry((net.name.clone(), ns.to_owned()))
                .or_insert_with(|| compiler.network_route(net, ns));
            for (port, route) in self.listeners.get(&svc.name).into_iter().flatten() {
                if *port == at.port() {
                    let served = Arc::new(Served::new(Arc::clone(route), Arc::clone(network)));
                    routes.add(&svc.hosts, &served);
                }
            }
        }
        routes
    }
}

/// Network routes made for one build, by (network, namespace): shared by
/// every service of that network seen from that namespace.
type NetworkRoutes = HashMap<(String, String), Arc<NetworkRoute>>;

fn listener_key(ns: NsId, at: SocketAddrV4) -> ListenerKey {
    ListenerKey {
        ns,
        vip: *at.ip(),
        port: at.port(),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::fmt::Write as _;

    use latticed_proxy::routing::{Action, GroupKind, ListenerRoute, ResourceTarget, Served};

    use super::*;

    /// A routing table as text that names everything a request can tell
    /// apart (keys, host names, listeners, rules, weights, groups, targets,
    /// the network and the client VPC) and nothing that differs between
    /// two equal builds (addresses of shared pieces, counters).
    pub(in crate::daemon) fn describe(table: &RouteTable) -> String {
        let mut keys: Vec<_> = table.listeners.iter().collect();
        keys.sort_by_key(|(k, _)| (k.ns, k.vip, k.port));
        let mut out = String::new();
        for (k, routes) in keys {
            let _ = writeln!(
                out,
                "{}:{}:{} tls={} passthrough={}",
                k.ns, k.vip, k.port, routes.tls, routes.passthrough
            );
            if let Some(only) = &routes.only {
                let _ = writeln!(out, "  only: {}", served(only));
            }
            let mut hosts: Vec<_> = routes.by_host.iter().collect();
            hosts.sort_by_key(|(h, _)| h.to_string());
            for (h, s) in hosts {
                let _ = writeln!(out, "  {h}: {}", served(s));
            }
        }
        let mut resources: Vec<_> = table.resources.iter().collect();
        resources.sort_by_key(|(k, _)| (k.ns, k.vip));
        for (k, r) in resources {
            let target = match &r.target {
                ResourceTarget::Ip(ip) => ip.to_string(),
                ResourceTarget::Dns(d) => format!("dns {}", d.name),
                ResourceTarget::Unplaced(why) => format!("unplaced: {why}"),
            };
            let _ = writeln!(
                out,
                "{}:{} resource {} {} ports={:?} gateway={:?} -> {target} via {} ({}) from {} logs={}",
                k.ns, k.vip, r.name, r.arn, r.ports, r.gateway_ns, r.network.arn, r.association, r.network.vpc_arn,
                r.logs.len() + r.network.resource_logs.len()
            );
        }
        out
    }

    fn served(s: &Served) -> String {
        let n = &s.network;
        format!(
            "{} via {} from {} ({}) logs={} auth={:?}\n{}",
            listener(&s.listener),
            n.arn,
            n.vpc_id,
            n.vpc_arn,
            n.logs.len(),
            n.auth.as_ref().map(Option::is_some),
            s.network_header
                .as_ref()
                .map(|v| format!("    network header {v:?}"))
                .unwrap_or_default()
        )
    }

    fn listener(l: &ListenerRoute) -> String {
        let mut out = format!(
            "{} {} {} https={} passthrough={} tls={} logs={} auth={:?}",
            l.service,
            l.service_arn,
            l.listener,
            l.https,
            l.passthrough,
            l.tls.is_some(),
            l.logs.len(),
            l.auth.as_ref().map(Option::is_some)
        );
        for r in &l.rules {
            let _ = write!(
                out,
                "\n    rule {} {} {:?} -> {}",
                r.priority,
                r.name,
                r.matcher,
                action(&r.action)
            );
        }
        let _ = write!(out, "\n    default -> {}", action(&l.default_action));
        out
    }

    fn action(a: &Action) -> String {
        match a {
            Action::FixedResponse(code) => format!("fixed {code}"),
            Action::Forward(f) => f
                .weighted()
                .map(|(w, g)| {
                    let kind = match &g.kind {
                        GroupKind::Hosts {
                            ns,
                            https,
                            tcp,
                            version,
                            targets,
                        } => format!(
                            "ns {ns} https={https} tcp={tcp} {version:?} [{}]",
                            targets
                                .iter()
                                .map(|t| format!("{}={}", t.id, t.addr))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        GroupKind::Lambda(l) => format!("lambda {} v2={}", l.function, l.event_v2),
                    };
                    format!("{w}x {} {} {kind}", g.name, g.arn)
                })
                .collect::<Vec<_>>()
                .join(" | "),
        }
    }
}
