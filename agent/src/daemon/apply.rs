//! Applying a plan: namespaces prepared and client sides attached first,
//! undone if a step fails, then the routing snapshot published (whole, or
//! only what a delta names) and the steered VIP sets changed.

// The daemon's types and imports: these methods extend `Daemon`.
use super::*;

impl Daemon {
    /// Makes the data path match `plan`, or leaves it as it was.
    pub async fn apply(&mut self, plan: Plan) -> Result<(), Error> {
        self.apply_delta(plan, None).await.map(drop)
    }
    /// [`Daemon::apply`], rebuilding only what `delta` names when it is
    /// given and no namespace comes or goes. Returns the plan it replaced.
    pub async fn apply_delta(&mut self, plan: Plan, delta: Option<&Delta>) -> Result<Plan, Error> {
        let wanted: BTreeSet<String> = plan.namespaces().into_iter().map(str::to_owned).collect();
        // Write ahead: a crash from here on leaves a record naming every
        // namespace we may touch. Only when there is a new one: the record
        // costs an fsync, and most changes touch no new namespace.
        let before: BTreeSet<String> = self.managed.keys().cloned().collect();
        if !wanted.is_subset(&before) {
            self.record
                .write(before.iter().chain(wanted.iter()).map(String::as_str))?;
        }
        let mut created = Vec::new();
        let mut attached = Vec::new();
        let result = self
            .prepare(&plan, &wanted, &mut created, &mut attached)
            .await;
        if let Err(e) = result {
            for name in attached {
                self.detach_client(&name);
            }
            for name in created {
                self.unmanage(&name).await;
            }
            self.record.write(self.managed.keys().map(String::as_str))?;
            return Err(e);
        }
        match delta {
            Some(d) if created.is_empty() => self.publish_delta(&plan, d),
            _ => self.publish_full(&plan),
        }
        self.steer(&plan)?;
        let stale_clients: Vec<String> = self
            .managed
            .iter()
            .filter(|(n, m)| m.client.is_some() && !plan.is_client(n))
            .map(|(n, _)| n.clone())
            .collect();
        for name in stale_clients {
            self.detach_client(&name);
        }
        let stale: Vec<String> = self
            .managed
            .keys()
            .filter(|n| !wanted.contains(*n))
            .cloned()
            .collect();
        for name in &stale {
            self.unmanage(name).await;
        }
        if !stale.is_empty() {
            // Drop the released namespaces from the snapshot's namespace map.
            self.publish_full(&plan);
        }
        if self.managed.keys().ne(before.iter()) {
            self.record.write(self.managed.keys().map(String::as_str))?;
        }
        self.update_names(&plan);
        log_changes(&self.plan, &plan, delta);
        Ok(std::mem::replace(&mut self.plan, plan))
    }
    /// Writes each client namespace's steering maps: the VIP:ports steered
    /// there and whom their VPC associations' security groups admit (from
    /// the inventory).
    pub(super) fn steer(&mut self, plan: &Plan) -> Result<(), Error> {
        let inventory = &self.compiler.inventory;
        for name in plan.client_namespaces().keys() {
            let Some(client) = self.managed.get_mut(*name).and_then(|m| m.client.as_mut()) else {
                continue;
            };
            let want = control::security_groups::steered(
                name,
                &plan.admission(name),
                &inventory.security_groups,
                inventory.members(),
                &mut client.policies,
            );
            if !want.undefined.is_empty() {
                tracing::warn!(namespace = %name, groups = ?want.undefined, "VPC associations name security groups the inventory does not define; they admit nobody");
            }
            client
                .steering
                .set(&want)
                .map_err(|source| Error::Steering {
                    namespace: (*name).to_owned(),
                    source: Box::new(source),
                })?;
        }
        Ok(())
    }
    pub(super) async fn prepare(
        &mut self,
        plan: &Plan,
        wanted: &BTreeSet<String>,
        created: &mut Vec<String>,
        attached: &mut Vec<String>,
    ) -> Result<(), Error> {
        for name in wanted {
            if !self.managed.contains_key(name) {
                let managed = self.manage(name).await?;
                self.managed.insert(name.clone(), managed);
                created.push(name.clone());
            }
        }
        for name in plan.client_namespaces().keys().map(|n| (*n).to_owned()) {
            let name = &name;
            let Some(m) = self.managed.get_mut(name) else {
                continue;
            };
            if m.client.is_none() {
                let listeners =
                    latticed_proxy::listener::bind_all(&m.netns, self.dp.worker_count())?;
                let steering =
                    Steering::attach(&m.netns, self.paths.bpffs_root.join(name), &listeners)
                        .map_err(|source| Error::Steering {
                            namespace: name.clone(),
                            source: Box::new(source),
                        })?;
                let handle = self.dp.serve(m.id, name, listeners);
                let resources = self.naming.resource_suffix();
                let resolver = match NsResolver::start(
                    &m.netns,
                    &self.paths.run_dir,
                    &[&self.naming.dns_suffix, &resources],
                ) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        tracing::warn!(namespace = %name, error = %e, "no resolver: service names will not resolve in this namespace");
                        None
                    }
                };
                m.client = Some(ClientSide {
                    resolver,
                    steering,
                    policies: Default::default(),
                    _listener: handle,
                });
                attached.push(name.clone());
                tracing::info!(namespace = %name, "steering attached");
            }
        }
        Ok(())
    }
    pub(super) async fn manage(&mut self, name: &str) -> Result<Managed, Error> {
        let netns = Arc::new(NetNs::open(&self.paths.netns_dir, name)?);
        let routes = NsRoutes::connect(&netns)?;
        let (lo, brought_up) = routes.ensure_lo_up().await?;
        if brought_up {
            tracing::info!(namespace = %name, "set lo up");
        }
        let source = routes.primary_address().await?;
        routes.add_local_route(lo, source).await?;
        // IPv6 where the namespace has it: a namespace with IPv6 disabled
        // still serves IPv4 clients and targets.
        let source6 = routes.primary_address6().await?;
        let ipv6 = match routes.add_local_route6(lo, source6).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(namespace = %name, error = %e, "no IPv6 in this namespace: only IPv4 VIPs and targets there");
                false
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        tracing::info!(namespace = %name, id, client_source = ?source, client_source6 = ?source6, ipv6, "namespace managed: 169.254.171.0/24 and fd00:ec2:80::/64 are local");
        Ok(Managed {
            id,
            netns,
            routes,
            client: None,
        })
    }
    pub(super) fn detach_client(&mut self, name: &str) {
        if let Some(client) = self.managed.get_mut(name).and_then(|m| m.client.take()) {
            let ClientSide {
                resolver,
                steering,
                _listener,
                ..
            } = client;
            if let Some(r) = resolver {
                r.stop();
            }
            let c = steering.counters();
            steering.detach();
            drop(_listener);
            tracing::info!(
                namespace = %name,
                steered = c.steered,
                refused = c.refused,
                no_listener = c.no_listener,
                refused_by_security_group = c.refused_by_security_group,
                "steering detached"
            );
        }
    }
    pub(super) async fn unmanage(&mut self, name: &str) {
        self.detach_client(name);
        if let Some(m) = self.managed.remove(name) {
            match m.routes.remove_our_routes().await {
                Ok(_) => tracing::info!(namespace = %name, "namespace released"),
                Err(e) => tracing::warn!(namespace = %name, error = %e, "removing routes"),
            }
        }
    }
    /// The managed namespaces by id, as the connector opens them.
    pub(super) fn ns_map(&self) -> NsMap {
        self.managed
            .values()
            .map(|m| (m.id, Arc::clone(&m.netns)))
            .collect()
    }
    /// Compiles the whole plan into a routing snapshot over the namespaces
    /// managed now, and swaps it in.
    pub(super) fn publish_full(&mut self, plan: &Plan) {
        let view = self.before_publish(plan);
        let ids = ns_ids(&self.managed, &self.tunnels);
        let (compiled, table) = Compiled::full(&mut self.compiler, plan, &ids);
        self.compiled = compiled;
        self.dp.publish(table, self.ns_map());
        self.after_publish(plan, view.as_ref());
        self.forget_unused(plan);
    }

    /// Tells each namespace's resolver the names reachable from it.
    pub(super) fn update_names(&self, plan: &Plan) {
        let mut per_ns: HashMap<&str, crate::dns::Names> = HashMap::new();
        for svc in plan.services.values() {
            for ns in svc.reachable_from.keys() {
                let names = per_ns.entry(ns.as_str()).or_default();
                for h in &svc.hosts {
                    names.insert(h.clone(), svc.vip);
                }
            }
        }
        for r in plan.resources.values() {
            for (ns, reach) in &r.reachable_from {
                let names = per_ns.entry(ns.as_str()).or_default();
                for n in &reach.names {
                    names.insert(n.clone(), r.vip);
                }
            }
        }
        for (name, m) in &self.managed {
            if let Some(r) = m.client.as_ref().and_then(|c| c.resolver.as_ref()) {
                r.set_names(per_ns.remove(name.as_str()).unwrap_or_default());
            }
        }
    }
    /// Drops counters and certificates of services and groups that are gone.
    pub(super) fn forget_unused(&mut self, plan: &Plan) {
        let services: Vec<&PlannedService> = plan.services.values().map(|s| &**s).collect();
        self.compiler.retain_certs(&services);
        self.dp
            .metrics
            .retain(&|name| plan.services.contains_key(name), &|name| {
                plan.target_groups.contains_key(name)
            });
        self.dp
            .metrics
            .retain_resources(&|name| plan.resources.contains_key(name));
    }
    /// Rebuilds only what `delta` touched (see [`Compiled::delta`]) and
    /// swaps it in.
    pub(super) fn publish_delta(&mut self, plan: &Plan, delta: &Delta) {
        let view = self.before_publish(plan);
        let ids = ns_ids(&self.managed, &self.tunnels);
        let table = self.compiled.delta(
            &mut self.compiler,
            (&self.plan, plan),
            delta,
            &ids,
            &self.dp.routes(),
        );
        self.dp.publish(table, self.ns_map());
        self.after_publish(plan, view.as_ref());
        if !delta.services.is_empty() || !delta.groups.is_empty() || delta.resources {
            self.forget_unused(plan);
        }
    }
}

/// Namespace ids by name, of the namespaces `managed` and of the VPCs
/// other nodes host (a free function: the snapshot builder borrows the
/// compiler mutably beside it).
fn ns_ids<'a>(
    managed: &'a BTreeMap<String, Managed>,
    tunnels: &'a super::tunnel::Tunnels,
) -> super::snapshot::Ids<'a> {
    // A VPC that moved here keeps its remote id in `tunnels`; its local
    // id wins.
    managed
        .iter()
        .map(|(n, m)| (n.as_str(), m.id))
        .chain(tunnels.ids().filter(|(n, _)| !managed.contains_key(*n)))
        .collect()
}

/// Logs the services that appeared, changed or went away: a change to one
/// service among a thousand logs one line, not a thousand.
fn log_changes(old: &Plan, new: &Plan, delta: Option<&Delta>) {
    let log = |svc: &PlannedService| {
        let ports: Vec<u16> = svc.listeners.iter().map(|l| l.port).collect();
        tracing::info!(
            service = %svc.name,
            vip = %svc.vip,
            ports = ?ports,
            names = ?svc.hosts,
            reachable_from = ?svc.reachable_from,
            "service"
        );
    };
    let changed = |name: &str| match (old.services.get(name), new.services.get(name)) {
        (Some(a), Some(b)) => a != b,
        _ => true,
    };
    let names: Box<dyn Iterator<Item = &str>> = match delta {
        Some(d) => Box::new(d.services.iter().map(String::as_str)),
        None => Box::new(new.services.keys().chain(old.services.keys()).map(|k| &**k)),
    };
    if delta.is_none_or(|d| d.resources) {
        for (name, r) in &new.resources {
            if old.resources.get(name) != Some(r) {
                tracing::info!(
                    resource_configuration = %name,
                    vip = %r.vip,
                    ports = ?r.ports,
                    target = ?r.target,
                    gateway_vpc = %r.gateway_ns,
                    reachable_from = ?r.reachable_from.keys().collect::<Vec<_>>(),
                    "resource"
                );
            }
        }
        for name in old
            .resources
            .keys()
            .filter(|n| !new.resources.contains_key(*n))
        {
            tracing::info!(resource_configuration = %name, "resource removed");
        }
    }
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name) || !changed(name) {
            continue;
        }
        match new.services.get(name) {
            Some(svc) => log(svc),
            None => tracing::info!(service = %name, "service removed"),
        }
    }
}
