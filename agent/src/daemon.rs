//! The daemon: turns a [`Plan`] into kernel objects and a routing snapshot,
//! and keeps them in step with the configuration and with the namespaces
//! that come and go.
//!
//! Applying a plan is all or nothing: namespaces are prepared and client
//! sides attached first, and if any step fails, what this apply created is
//! removed again and the previous plan stays in force. Only then is the new
//! routing snapshot published and the steered VIP sets changed.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::SocketAddrV4,
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use latticed_proxy::{
    routing::{ListenerKey, ListenerRoute, Served, TargetGroupRoute, VipRoutes},
    Dataplane, ListenerHandle, NetNs, NsId, NsMap, ProxyConfig, RouteTable,
};
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::mpsc,
};

use crate::{
    compile::{Compiler, Inventory},
    control::{
        self,
        api::{
            error::ApiError,
            handlers::{self, Outcome, Settings},
            server::{ApiCall, Credentials},
        },
        plan::{plan_with, Missing, PlannedService},
        store::Store,
        Config, Plan,
    },
    dns::NsResolver,
    kernel::{bpffs, record::Record, routes::NsRoutes, steering::Steering},
};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Namespace could not be opened.
    #[error(transparent)]
    Netns(#[from] latticed_proxy::netns::Error),
    /// Routes.
    #[error(transparent)]
    Routes(#[from] crate::kernel::routes::Error),
    /// eBPF.
    #[error("namespace {namespace:?}: {source}")]
    Steering {
        /// Namespace.
        namespace: String,
        /// Cause.
        #[source]
        source: Box<crate::kernel::steering::Error>,
    },
    /// Proxy listener.
    #[error(transparent)]
    Listener(#[from] latticed_proxy::listener::Error),
    /// bpffs.
    #[error(transparent)]
    Bpffs(#[from] bpffs::Error),
    /// Namespace record.
    #[error(transparent)]
    Record(#[from] crate::kernel::record::Error),
    /// Configuration.
    #[error(transparent)]
    Config(#[from] control::LoadError),
    /// Configuration that no longer plans (e.g. a stored one).
    #[error(transparent)]
    Invalid(#[from] control::ValidationError),
    /// State store.
    #[error(transparent)]
    Store(#[from] control::store::Error),
    /// API set-up.
    #[error(transparent)]
    Api(#[from] control::api::Error),
    /// Data plane set-up.
    #[error(transparent)]
    Proxy(#[from] latticed_proxy::Error),
    /// CA, inventory.
    #[error(transparent)]
    Compile(#[from] crate::compile::Error),
    /// Other I/O.
    #[error("{what}: {source}")]
    Io {
        /// What was attempted.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Where things live, and the daemon's identity in ARNs.
#[derive(Clone, Debug, Default)]
pub struct Paths {
    /// Configuration file, if any (reloaded on SIGHUP).
    pub config: Option<PathBuf>,
    /// Directory of named network namespaces.
    pub netns_dir: PathBuf,
    /// Pin root on bpffs.
    pub bpffs_root: PathBuf,
    /// Runtime state (namespace record, resolver backups).
    pub run_dir: PathBuf,
    /// Durable state: CA, certificates.
    pub state_dir: PathBuf,
    /// Access log files.
    pub log_dir: PathBuf,
    /// Instance and load balancer inventory (reread on SIGHUP).
    pub inventory: PathBuf,
    /// Prometheus metrics address, if served.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Region in ARNs.
    pub region: String,
    /// Account in ARNs.
    pub account: String,
    /// Suffix of generated service names (answered NXDOMAIN when unknown).
    pub dns_suffix: String,
}

/// The control API's settings.
#[derive(Clone, Debug)]
pub struct ApiOptions {
    /// Address to serve on.
    pub listen: std::net::SocketAddr,
    /// Directory of the state store and admin credentials.
    pub state_dir: PathBuf,
    /// Region, account, quotas.
    pub settings: Settings,
}

struct ApiRuntime {
    state: handlers::State,
    store: Store,
    settings: Settings,
    calls: mpsc::Receiver<ApiCall>,
    _server: tokio::task::JoinHandle<()>,
}

/// What a change touched: only these are rebuilt in the routing snapshot.
#[derive(Debug, Default)]
pub struct Delta {
    /// Service names.
    pub services: BTreeSet<String>,
    /// Target group names.
    pub groups: BTreeSet<String>,
}

/// The compiled pieces of the current snapshot, kept so a change rebuilds
/// only its own.
#[derive(Default)]
struct Compiled {
    groups: HashMap<String, Arc<TargetGroupRoute>>,
    listeners: HashMap<String, Vec<(u16, Arc<ListenerRoute>)>>,
}

struct ClientSide {
    resolver: Option<NsResolver>,
    steering: Steering,
    // Dropping it stops accepting; declared after `steering` so the program
    // is detached before the socket goes away.
    _listener: ListenerHandle,
}

struct Managed {
    id: NsId,
    netns: Arc<NetNs>,
    routes: NsRoutes,
    client: Option<ClientSide>,
}

/// The running daemon.
pub struct Daemon {
    paths: Paths,
    dp: Arc<Dataplane>,
    record: Record,
    managed: BTreeMap<String, Managed>,
    next_id: NsId,
    /// The accepted configuration (from the file or the API's state).
    desired: Config,
    /// What is applied now: `desired` over the namespaces that exist.
    plan: Plan,
    compiled: Compiled,
    compiler: Compiler,
    /// When `principals.json` was last read.
    principals_seen: Option<std::time::SystemTime>,
    api: Option<ApiRuntime>,
    _metrics: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("namespaces", &self.managed.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Removes what a previous run left behind: pins under the bpffs root and
/// our routes in the namespaces it recorded.
pub async fn cleanup_leftovers(paths: &Paths) -> Result<(), Error> {
    let record = Record::open(&paths.run_dir)?;
    let pinned = bpffs::clear(&paths.bpffs_root)?;
    let mut routes = 0;
    for name in record.read()? {
        let Ok(ns) = NetNs::open(&paths.netns_dir, &name) else {
            continue;
        };
        routes += NsRoutes::connect(&ns)?.remove_our_routes().await?;
    }
    record.remove();
    let resolvers = crate::dns::restore_leftovers(&paths.run_dir);
    if resolvers > 0 {
        tracing::warn!(
            resolvers,
            "restored resolv.conf files an earlier run left replaced"
        );
    }
    if !pinned.is_empty() || routes > 0 {
        tracing::warn!(
            pinned_namespaces = ?pinned,
            routes,
            "removed what an earlier run left behind (it did not stop cleanly)"
        );
    }
    Ok(())
}

impl Daemon {
    /// Cleans up after an unclean stop, loads the configuration (from the
    /// file, or from the API's store) and applies it; starts the API.
    pub async fn start(
        paths: Paths,
        proxy: ProxyConfig,
        api: Option<ApiOptions>,
    ) -> Result<Self, Error> {
        bpffs::prepare(&paths.bpffs_root)?;
        // In config mode as in API mode: the CA key and credentials live here.
        control::store::private_dir(&paths.state_dir)?;
        cleanup_leftovers(&paths).await?;
        let mut runtime = None;
        let desired = match (&paths.config, api) {
            (Some(path), _) => control::load(path, &paths.netns_dir)?.0,
            (None, None) => Config::default(),
            (None, Some(opts)) => {
                let store = Store::open(&opts.state_dir)?;
                let state = handlers::State::from_records(store.resources()?);
                let creds: Credentials =
                    Arc::new(std::sync::RwLock::new(control::api::load_credentials(
                        &store,
                        &opts.state_dir,
                        &opts.settings.account,
                    )?));
                let listener =
                    tokio::net::TcpListener::bind(opts.listen)
                        .await
                        .map_err(|source| Error::Io {
                            what: format!("binding the API address {} (--api-listen)", opts.listen),
                            source,
                        })?;
                let local = listener.local_addr().map_err(|source| Error::Io {
                    what: "reading the API address".into(),
                    source,
                })?;
                let (tx, rx) = mpsc::channel(64);
                let server = control::api::server::serve(listener, tx, creds);
                tracing::info!(
                    endpoint = %format!("http://{local}"),
                    credentials = %opts.state_dir.join("admin-credentials").display(),
                    region = %opts.settings.region,
                    "VPC Lattice API listening"
                );
                let desired = state.to_config();
                runtime = Some(ApiRuntime {
                    state,
                    store,
                    settings: opts.settings,
                    calls: rx,
                    _server: server,
                });
                desired
            }
        };
        let dp = Dataplane::new(proxy)?;
        tokio::spawn(latticed_proxy::memory::trim_after_bursts(Arc::downgrade(
            &dp,
        )));
        let compiler = Compiler::new(
            Arc::clone(&dp),
            &paths.state_dir,
            &paths.log_dir,
            &paths.region,
            &paths.account,
            Inventory::load(&paths.inventory)?,
        )?;
        let metrics = match paths.metrics_listen {
            Some(addr) => Some(
                crate::metrics::serve(addr, Arc::clone(&dp), paths.bpffs_root.clone())
                    .await
                    .map_err(|source| Error::Io {
                        what: format!("binding the metrics address {addr} (--metrics-listen)"),
                        source,
                    })?,
            ),
            None => None,
        };
        let mut daemon = Self {
            record: Record::open(&paths.run_dir)?,
            paths,
            dp,
            compiler,
            principals_seen: None,
            _metrics: metrics,
            managed: BTreeMap::new(),
            next_id: 1,
            desired,
            plan: Plan::default(),
            compiled: Compiled::default(),
            api: runtime,
        };
        daemon.reload_principals(true);
        let result = match daemon.current_plan() {
            Ok(plan) => daemon.apply(plan).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            daemon.shutdown().await;
            return Err(e);
        }
        Ok(daemon)
    }

    /// The desired configuration over the namespaces that exist now.
    fn current_plan(&self) -> Result<Plan, control::ValidationError> {
        match &self.api {
            Some(api) => plan_with(&api.state.to_config(), &self.paths.netns_dir, Missing::Skip),
            None => plan_with(&self.desired, &self.paths.netns_dir, Missing::Skip),
        }
    }

    /// Namespaces the configuration names, existing or not.
    fn referenced_namespaces(&self) -> BTreeSet<String> {
        match &self.api {
            Some(api) => api
                .state
                .referenced_namespaces()
                .map(str::to_owned)
                .collect(),
            None => self
                .desired
                .service_network_vpc_associations
                .iter()
                .map(|a| a.vpc_identifier.clone())
                .chain(
                    self.desired
                        .target_groups
                        .iter()
                        .filter_map(|t| t.config.as_ref()?.vpc_identifier.clone()),
                )
                .collect(),
        }
    }

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
        for (name, vips) in plan.client_namespaces() {
            if let Some(client) = self.managed.get_mut(name).and_then(|m| m.client.as_mut()) {
                client
                    .steering
                    .set_vips(&vips)
                    .map_err(|source| Error::Steering {
                        namespace: name.to_owned(),
                        source: Box::new(source),
                    })?;
            }
        }
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

    async fn prepare(
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
                let resolver = match NsResolver::start(
                    &m.netns,
                    &self.paths.run_dir,
                    &self.paths.dns_suffix,
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
                    _listener: handle,
                });
                attached.push(name.clone());
                tracing::info!(namespace = %name, "steering attached");
            }
        }
        Ok(())
    }

    async fn manage(&mut self, name: &str) -> Result<Managed, Error> {
        let netns = Arc::new(NetNs::open(&self.paths.netns_dir, name)?);
        let routes = NsRoutes::connect(&netns)?;
        let (lo, brought_up) = routes.ensure_lo_up().await?;
        if brought_up {
            tracing::info!(namespace = %name, "set lo up");
        }
        let source = routes.primary_address().await?;
        routes.add_local_route(lo, source).await?;
        let id = self.next_id;
        self.next_id += 1;
        tracing::info!(namespace = %name, id, client_source = ?source, "namespace managed: 169.254.171.0/24 is local");
        Ok(Managed {
            id,
            netns,
            routes,
            client: None,
        })
    }

    fn detach_client(&mut self, name: &str) {
        if let Some(client) = self.managed.get_mut(name).and_then(|m| m.client.take()) {
            let ClientSide {
                resolver,
                steering,
                _listener,
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
                "steering detached"
            );
        }
    }

    async fn unmanage(&mut self, name: &str) {
        self.detach_client(name);
        if let Some(m) = self.managed.remove(name) {
            match m.routes.remove_our_routes().await {
                Ok(_) => tracing::info!(namespace = %name, "namespace released"),
                Err(e) => tracing::warn!(namespace = %name, error = %e, "removing routes"),
            }
        }
    }

    /// Compiles the plan into a routing snapshot over the namespaces actually
    /// managed now, and swaps it in.
    fn ns_ids(&self) -> HashMap<&str, NsId> {
        self.managed
            .iter()
            .map(|(n, m)| (n.as_str(), m.id))
            .collect()
    }

    fn ns_map(&self) -> NsMap {
        self.managed
            .values()
            .map(|m| (m.id, Arc::clone(&m.netns)))
            .collect()
    }

    /// Compiles the whole plan into a routing snapshot over the namespaces
    /// managed now, and swaps it in.
    fn publish_full(&mut self, plan: &Plan) {
        let ids: HashMap<String, NsId> = self
            .ns_ids()
            .into_iter()
            .map(|(n, id)| (n.to_owned(), id))
            .collect();
        let by_ref: HashMap<&str, NsId> = ids.iter().map(|(n, id)| (n.as_str(), *id)).collect();
        let groups: HashMap<String, Arc<TargetGroupRoute>> = plan
            .target_groups
            .iter()
            .map(|(name, tg)| (name.to_string(), self.compiler.group_route(tg, &by_ref)))
            .collect();
        let listeners: HashMap<String, Vec<(u16, Arc<ListenerRoute>)>> = plan
            .services
            .iter()
            .map(|(name, svc)| {
                (
                    name.to_string(),
                    self.compiler.listener_routes(svc, &groups),
                )
            })
            .collect();
        let mut vips: HashMap<ListenerKey, VipRoutes> = HashMap::new();
        let mut networks = HashMap::new();
        for svc in plan.services.values() {
            for (port, route) in listeners.get(&svc.name).into_iter().flatten() {
                for (ns, net) in &svc.reachable_from {
                    if let Some(&id) = ids.get(ns.as_str()) {
                        let key = ListenerKey {
                            ns: id,
                            vip: svc.vip,
                            port: *port,
                        };
                        let network = networks
                            .entry((net.name.clone(), ns.clone()))
                            .or_insert_with(|| self.compiler.network_route(net, ns));
                        let served = Arc::new(Served::new(Arc::clone(route), Arc::clone(network)));
                        vips.entry(key).or_default().add(&svc.hosts, &served);
                    }
                }
            }
        }
        let table = RouteTable {
            listeners: vips.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
        };
        self.dp.publish(table, self.ns_map());
        self.compiled = Compiled { groups, listeners };
        self.forget_unused(plan);
    }

    /// Rereads `STATE_DIR/principals.json` when it changed (or when
    /// `force`); an invalid file is logged and the current store kept.
    fn reload_principals(&mut self, force: bool) {
        let path = crate::principals::path(&self.paths.state_dir);
        let seen = crate::principals::modified(&path);
        if !force && seen == self.principals_seen {
            return;
        }
        self.principals_seen = seen;
        match crate::principals::load(&path) {
            Ok(file) => {
                let store = latticed_proxy::authz::Principals::from_file(&file);
                tracing::info!(path = %path.display(), credentials = store.len(), "data-path credentials loaded");
                self.dp.principals.store(Arc::new(store));
            }
            Err(e) => tracing::error!("{e}; keeping the current data-path credentials"),
        }
    }

    /// Puts each listed target's health, as the data path sees it, into a
    /// ListTargets answer.
    fn fill_health(&self, answer: &mut serde_json::Value) {
        let Some(items) = answer["items"].as_array_mut() else {
            return;
        };
        for item in items {
            let Some(group) = item["_group"].as_str() else {
                continue;
            };
            let Some(route) = self.compiled.groups.get(group) else {
                continue;
            };
            let (id, port) = (item["id"].as_str().unwrap_or(""), item["port"].as_u64());
            let found = match &route.kind {
                latticed_proxy::routing::GroupKind::Hosts { targets, .. } => targets
                    .iter()
                    .find(|t| &*t.id == id && port == Some(u64::from(t.addr.port())))
                    .map(|t| (t.health.status(), t.health.reason())),
                latticed_proxy::routing::GroupKind::Lambda(_) => Some((
                    latticed_proxy::health::Status::Unavailable,
                    latticed_proxy::health::Reason::HealthCheckDisabled,
                )),
            };
            let (status, reason) = match found {
                Some((s, r)) => (s.as_str(), r.as_str()),
                // Registered but not placed (instance missing from the
                // inventory, or its namespace is gone).
                None => ("UNAVAILABLE", Some("Target.NotRegistered")),
            };
            item["status"] = status.into();
            match reason {
                Some(r) => item["reasonCode"] = r.into(),
                None => {
                    if let Some(o) = item.as_object_mut() {
                        o.remove("reasonCode");
                    }
                }
            }
        }
    }

    /// Tells each namespace's resolver the names reachable from it.
    fn update_names(&self, plan: &Plan) {
        let mut per_ns: HashMap<&str, crate::dns::Names> = HashMap::new();
        for svc in plan.services.values() {
            for ns in svc.reachable_from.keys() {
                let names = per_ns.entry(ns.as_str()).or_default();
                for h in &svc.hosts {
                    names.insert(h.clone(), svc.vip);
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
    fn forget_unused(&mut self, plan: &Plan) {
        let services: Vec<&PlannedService> = plan.services.values().map(|s| &**s).collect();
        self.compiler.retain_certs(&services);
        self.dp
            .metrics
            .retain(&|name| plan.services.contains_key(name), &|name| {
                plan.target_groups.contains_key(name)
            });
    }

    /// Rebuilds only what `delta` touched: its target groups, its services'
    /// listeners, and the VIP:port keys those services had or have. The new
    /// snapshot shares everything else with the current one.
    fn publish_delta(&mut self, plan: &Plan, delta: &Delta) {
        let ids: HashMap<String, NsId> = self
            .ns_ids()
            .into_iter()
            .map(|(n, id)| (n.to_owned(), id))
            .collect();
        let by_ref: HashMap<&str, NsId> = ids.iter().map(|(n, id)| (n.as_str(), *id)).collect();
        for g in &delta.groups {
            match plan.target_groups.get(g.as_str()) {
                Some(tg) => {
                    self.compiled
                        .groups
                        .insert(g.clone(), self.compiler.group_route(tg, &by_ref));
                }
                None => {
                    self.compiled.groups.remove(g);
                }
            }
        }
        let mut keys: BTreeSet<(String, SocketAddrV4)> = BTreeSet::new();
        for name in &delta.services {
            for svc in self
                .plan
                .services
                .get(name.as_str())
                .into_iter()
                .chain(plan.services.get(name.as_str()))
            {
                for l in &svc.listeners {
                    for ns in svc.reachable_from.keys() {
                        keys.insert((ns.clone(), SocketAddrV4::new(svc.vip, l.port)));
                    }
                }
            }
            match plan.services.get(name.as_str()) {
                Some(svc) => {
                    let routes = self.compiler.listener_routes(svc, &self.compiled.groups);
                    self.compiled.listeners.insert(name.clone(), routes);
                }
                None => {
                    self.compiled.listeners.remove(name);
                }
            }
        }
        let mut table = self.dp.routes().listeners.clone();
        for (ns, at) in keys {
            let Some(&id) = ids.get(&ns) else { continue };
            let key = ListenerKey {
                ns: id,
                vip: *at.ip(),
                port: at.port(),
            };
            let mut routes = VipRoutes::default();
            for svc in plan.services_at(at) {
                let Some(net) = svc.reachable_from.get(&ns) else {
                    continue;
                };
                let network = self.compiler.network_route(net, &ns);
                for (port, route) in self.compiled.listeners.get(&svc.name).into_iter().flatten() {
                    if *port == at.port() {
                        let served = Arc::new(Served::new(Arc::clone(route), Arc::clone(&network)));
                        routes.add(&svc.hosts, &served);
                    }
                }
            }
            if routes.is_empty() {
                table.remove(&key);
            } else {
                table.insert(key, Arc::new(routes));
            }
        }
        self.dp
            .publish(RouteTable { listeners: table }, self.ns_map());
        if !delta.services.is_empty() || !delta.groups.is_empty() {
            self.forget_unused(plan);
        }
    }

    /// Rereads the configuration file; keeps the current one if the new one
    /// is invalid or cannot be applied.
    pub async fn reload(&mut self) {
        self.reload_principals(true);
        match Inventory::load(&self.paths.inventory) {
            Ok(inv) if inv != self.compiler.inventory => {
                self.compiler.inventory = inv;
                let plan = self.plan.clone();
                self.publish_full(&plan);
                tracing::info!(path = %self.paths.inventory.display(), "inventory reloaded");
            }
            Ok(_) => {}
            Err(e) => tracing::error!("{e}; keeping the current inventory"),
        }
        let Some(path) = self.paths.config.clone() else {
            tracing::info!("no configuration file to reload");
            return;
        };
        let (config, plan) = match control::load(&path, &self.paths.netns_dir) {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!("{e}; keeping the current configuration");
                return;
            }
        };
        match self.apply(plan).await {
            Ok(()) => {
                self.desired = config;
                tracing::info!(path = %path.display(), "configuration reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "applying the new configuration failed; keeping the current one")
            }
        }
    }

    /// Notices namespaces whose name was removed (`ip netns del`) or now
    /// names another namespace, and namespaces the configuration names that
    /// appeared; re-applies the configuration over what exists.
    pub async fn check_namespaces(&mut self) {
        self.reload_principals(false);
        let gone: Vec<String> = self
            .managed
            .iter()
            .filter(|(_, m)| !m.netns.still_named())
            .map(|(n, _)| n.clone())
            .collect();
        for name in &gone {
            tracing::error!(namespace = %name, "network namespace disappeared; its services and targets are unavailable until it returns");
            // Release it without touching its routes: nobody can name it any
            // more and it goes away with its last process, while requests in
            // flight on pooled connections still need the route to get their
            // answers back.
            self.detach_client(name);
            self.managed.remove(name);
        }
        // Re-planning everything costs in proportion to the configuration:
        // do it only when a namespace went, or one the configuration names
        // (but that was missing) is there now.
        let appeared = self
            .referenced_namespaces()
            .iter()
            .any(|n| !self.managed.contains_key(n) && self.paths.netns_dir.join(n).exists());
        if gone.is_empty() && !appeared {
            return;
        }
        let plan = match self.current_plan() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "the configuration no longer plans");
                return;
            }
        };
        let returned = plan
            .namespaces()
            .into_iter()
            .any(|n| !self.plan.namespaces().contains(n));
        match self.apply(plan).await {
            Ok(()) if returned => tracing::info!("namespaces returned; configuration re-applied"),
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, "re-applying after namespaces changed"),
        }
    }

    /// Runs one API call: reads answer at once; a change is applied to the
    /// data path, then made durable, then acknowledged. If either step fails,
    /// state, data path and store are left as they were.
    async fn api_call(&mut self, call: ApiCall) {
        let reply = self.api_outcome(&call.operation, &call.input).await;
        let _ = call.reply.send(reply);
    }

    async fn api_outcome(
        &mut self,
        operation: &str,
        input: &serde_json::Value,
    ) -> Result<serde_json::Value, ApiError> {
        let Some(api) = self.api.as_mut() else {
            return Err(ApiError::internal("the API is not enabled"));
        };
        // Idempotency: the same clientToken with the same request answers
        // what the first one did; with a different request it is a conflict.
        let token = input["clientToken"].as_str().map(|t| {
            let mut rest = input.clone();
            if let Some(o) = rest.as_object_mut() {
                o.remove("clientToken");
            }
            (format!("{operation}/{t}"), sha256_hex(&rest.to_string()))
        });
        if let Some((key, hash)) = &token {
            match api.store.token(key) {
                Ok(Some(seen)) if seen["hash"] == hash.as_str() => {
                    return Ok(seen["response"].clone())
                }
                Ok(Some(_)) => {
                    return Err(ApiError::conflict(
                        "CLIENT_TOKEN",
                        key,
                        "the clientToken was already used with different parameters",
                    ))
                }
                Ok(None) => {}
                Err(e) => return Err(ApiError::internal(e.to_string())),
            }
        }
        let now = latticed_proxy::time::iso8601(std::time::SystemTime::now());
        let t0 = std::time::Instant::now();
        let mutation = match handlers::handle(operation, input, &api.state, &api.settings, now)? {
            Outcome::Read(mut v) => {
                if operation == "ListTargets" {
                    self.fill_health(&mut v);
                }
                return Ok(v);
            }
            Outcome::Write(m) => m,
        };
        let t_handle = t0.elapsed();
        let undo = api.state.apply(&mutation.changes);
        // Re-plan only what the change touched, through the same planner
        // (on the neighbourhood of each touched service or group), into a
        // shallow copy of the current plan.
        let affected = api.state.affected(&mutation.changes, &undo);
        let t_affected = t0.elapsed();
        let mut plan = self.plan.clone();
        let planned = replan(&api.state, &affected, &mut plan, &self.paths.netns_dir);
        let delta = match planned {
            Ok(d) => d,
            Err(e) => {
                api.state.apply(&undo);
                return Err(ApiError::validation(
                    e.0.into_iter()
                        .map(|f| control::api::model::FieldProblem {
                            name: f.field,
                            message: f.reason,
                        })
                        .collect(),
                ));
            }
        };
        let t_plan = t0.elapsed();
        let previous = match self.apply_delta(plan, Some(&delta)).await {
            Ok(previous) => previous,
            Err(e) => {
                if let Some(api) = self.api.as_mut() {
                    api.state.apply(&undo);
                }
                return Err(ApiError::internal(format!(
                    "applying the change to the data path: {e}"
                )));
            }
        };
        let Some(api) = self.api.as_mut() else {
            return Err(ApiError::internal("the API is not enabled"));
        };
        let t_apply = t0.elapsed();
        let token_record = token.as_ref().map(|(k, h)| {
            (
                k.as_str(),
                serde_json::json!({"hash": h, "response": mutation.result}),
            )
        });
        if let Err(e) = api.store.commit(
            &mutation.changes,
            token_record.as_ref().map(|(k, v)| (*k, v)),
        ) {
            api.state.apply(&undo);
            let _ = self.apply(previous).await;
            return Err(ApiError::internal(format!("storing the change: {e}")));
        }
        tracing::debug!(
            operation,
            handle_us = t_handle.as_micros() as u64,
            affected_us = (t_affected - t_handle).as_micros() as u64,
            plan_us = (t_plan - t_affected).as_micros() as u64,
            apply_us = (t_apply - t_plan).as_micros() as u64,
            commit_us = (t0.elapsed() - t_apply).as_micros() as u64,
            "API change applied"
        );
        Ok(mutation.result)
    }

    /// Removes everything this process created.
    pub async fn shutdown(mut self) {
        let names: Vec<String> = self.managed.keys().cloned().collect();
        for name in names {
            self.unmanage(&name).await;
        }
        self.record.remove();
        bpffs::remove_root_if_empty(&self.paths.bpffs_root);
        tracing::info!("stopped; kernel objects removed");
    }

    /// Serves until SIGTERM or SIGINT; SIGHUP reloads the configuration.
    pub async fn run(mut self) -> Result<(), Error> {
        let sig = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|source| Error::Io {
                what: format!("installing the {name} handler"),
                source,
            })
        };
        let mut term = sig(SignalKind::terminate(), "SIGTERM")?;
        let mut int = sig(SignalKind::interrupt(), "SIGINT")?;
        let mut hup = sig(SignalKind::hangup(), "SIGHUP")?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status("data path up"),
        ]);
        tracing::info!("ready");
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    notify(&[sd_notify::NotifyState::Reloading]);
                    self.reload().await;
                    notify(&[sd_notify::NotifyState::Ready]);
                }
                _ = tick.tick() => self.check_namespaces().await,
                Some(call) = next_call(&mut self.api) => self.api_call(call).await,
            }
        }
        notify(&[sd_notify::NotifyState::Stopping]);
        tracing::info!("stopping");
        self.shutdown().await;
        Ok(())
    }
}

/// Re-plans the services and target groups `affected` names into `plan`,
/// each from its neighbourhood in `state`; returns what changed.
fn replan(
    state: &handlers::State,
    affected: &handlers::Affected,
    plan: &mut Plan,
    netns_dir: &std::path::Path,
) -> Result<Delta, control::ValidationError> {
    let exists = |ns: &str| netns_dir.join(ns).exists();
    for (ns, add) in &affected.associations {
        if !add || exists(ns) {
            plan.associate(ns, *add);
        }
    }
    let mut delta = Delta::default();
    for (id, name) in &affected.groups {
        let group = match state.group_config(id) {
            Some(c) => plan_with(&c, netns_dir, Missing::Skip)?
                .target_groups
                .remove(name.as_str()),
            None => None,
        };
        plan.set_group(name, group, exists);
        delta.groups.insert(name.clone());
    }
    for (id, name) in &affected.services {
        let service = match state.service_config(id) {
            Some(c) => plan_with(&c, netns_dir, Missing::Skip)?
                .services
                .remove(name.as_str()),
            None => None,
        };
        plan.set_service(name, service);
        delta.services.insert(name.clone());
    }
    Ok(delta)
}

async fn next_call(api: &mut Option<ApiRuntime>) -> Option<ApiCall> {
    match api {
        Some(a) => a.calls.recv().await,
        None => std::future::pending().await,
    }
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::warn!(error = %e, "sd_notify");
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::handlers::{handle, Quotas, Settings, State};
    use serde_json::{json, Value};

    /// Runs API operations against a State, keeping a plan up to date the
    /// incremental way, and checks after every one that it equals planning
    /// the whole configuration from scratch.
    #[test]
    fn incremental_plans_equal_full_plans() {
        let dir = std::env::temp_dir().join(format!("latticed-replan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for ns in ["vpc-aa", "vpc-bb"] {
            std::fs::write(dir.join(ns), b"").unwrap();
        }
        let settings = Settings {
            region: "us-east-1".into(),
            account: "111122223333".into(),
            quotas: Quotas::default(),
            netns_dir: dir.clone(),
            dns_suffix: "example".into(),
        };
        let mut state = State::default();
        let mut plan = Plan::default();
        let mut step = |op: &str, input: Value| -> Value {
            let out = match handle(
                op,
                &input,
                &state,
                &settings,
                "2026-11-22T00:00:00.000Z".into(),
            )
            .unwrap()
            {
                Outcome::Write(m) => {
                    let undo = state.apply(&m.changes);
                    let affected = state.affected(&m.changes, &undo);
                    replan(&state, &affected, &mut plan, &dir).unwrap();
                    m.result
                }
                Outcome::Read(v) => v,
            };
            let full = plan_with(&state.to_config(), &dir, Missing::Skip).unwrap();
            assert_eq!(plan, full, "after {op}");
            out
        };
        let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
        let sn = id(&step("CreateServiceNetwork", json!({"name": "net-one"})));
        let tg = |name: &str, vpc: &str| json!({"name": name, "type": "IP", "config": {"port": 8080, "protocol": "HTTP", "vpcIdentifier": vpc}});
        let tga = id(&step("CreateTargetGroup", tg("group-a", "vpc-aa")));
        let tgb = id(&step("CreateTargetGroup", tg("group-b", "vpc-bb")));
        step(
            "RegisterTargets",
            json!({"targetGroupIdentifier": tga, "targets": [{"id": "10.0.16.10"}]}),
        );
        let forward = json!({"forward": {"targetGroups": [{"targetGroupIdentifier": tga, "weight": 2}, {"targetGroupIdentifier": tgb, "weight": 1}]}});
        let mut services = Vec::new();
        for i in 0..4 {
            let svc = id(&step("CreateService", json!({"name": format!("one-{i}")})));
            let l = id(&step(
                "CreateListener",
                json!({"serviceIdentifier": svc, "name": "http", "protocol": "HTTP", "defaultAction": forward}),
            ));
            let r = id(&step(
                "CreateRule",
                json!({"serviceIdentifier": svc, "listenerIdentifier": l, "name": "by-path", "priority": 1,
                "match": {"httpMatch": {"pathMatch": {"match": {"prefix": "/b"}}}},
                "action": {"forward": {"targetGroups": [{"targetGroupIdentifier": tgb}]}}}),
            ));
            step(
                "CreateServiceNetworkServiceAssociation",
                json!({"serviceNetworkIdentifier": sn, "serviceIdentifier": svc}),
            );
            services.push((svc, l, r));
        }
        let assoc = id(&step(
            "CreateServiceNetworkVpcAssociation",
            json!({"serviceNetworkIdentifier": sn, "vpcIdentifier": "vpc-bb"}),
        ));
        step(
            "RegisterTargets",
            json!({"targetGroupIdentifier": tgb, "targets": [{"id": "10.0.16.11", "port": 9090}]}),
        );
        let (svc, l, r) = services[1].clone();
        step(
            "UpdateListener",
            json!({"serviceIdentifier": svc, "listenerIdentifier": l, "defaultAction": {"fixedResponse": {"statusCode": 404}}}),
        );
        step(
            "DeleteRule",
            json!({"serviceIdentifier": svc, "listenerIdentifier": l, "ruleIdentifier": r}),
        );
        step(
            "DeregisterTargets",
            json!({"targetGroupIdentifier": tga, "targets": [{"id": "10.0.16.10"}]}),
        );
        let snsa = step(
            "ListServiceNetworkServiceAssociations",
            json!({"serviceIdentifier": svc}),
        )["items"][0]["id"]
            .clone();
        step(
            "DeleteServiceNetworkServiceAssociation",
            json!({"serviceNetworkServiceAssociationIdentifier": snsa}),
        );
        step("DeleteService", json!({"serviceIdentifier": svc}));
        step(
            "DeleteServiceNetworkVpcAssociation",
            json!({"serviceNetworkVpcAssociationIdentifier": assoc}),
        );
        step(
            "CreateServiceNetworkVpcAssociation",
            json!({"serviceNetworkIdentifier": sn, "vpcIdentifier": "vpc-aa"}),
        );
        assert_eq!(plan.services.len(), 3);
        assert!(plan.client_namespaces().contains_key("vpc-aa"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
