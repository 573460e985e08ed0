//! The daemon: turns a [`Plan`] into kernel objects and a routing snapshot,
//! and keeps them in step with the configuration and with the namespaces
//! that come and go.
//!
//! Applying a plan is all or nothing: namespaces are prepared and client
//! sides attached first, and if any step fails, what this apply created is
//! removed again and the previous plan stays in force. Only then is the new
//! routing snapshot published and the steered VIP sets changed.
//!
//! By concern: this file holds the daemon's state, its start and its run
//! loop; [`apply`] turns a plan into kernel objects and a snapshot,
//! [`transaction`] carries one API call (idempotency, apply, commit or
//! undo), and [`watch`] follows what changes without one (the file,
//! namespaces, principals).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use latticed_proxy::{Dataplane, ListenerHandle, NetNs, NsId, NsMap, ProxyConfig};
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

mod apply;
mod cluster;
use cluster::ClusterState;
mod snapshot;
use snapshot::Compiled;
mod transaction;
mod tunnel;
pub use tunnel::TunnelOptions;
mod verify;
mod watch;

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
    /// etcd (cluster mode).
    #[error(transparent)]
    Cluster(#[from] control::cluster::Error),
    /// API set-up.
    #[error(transparent)]
    Api(#[from] control::api::Error),
    /// Data plane set-up.
    #[error(transparent)]
    Proxy(#[from] latticed_proxy::Error),
    /// CA, inventory.
    #[error(transparent)]
    Compile(#[from] crate::compile::Error),
    /// The tunnel between nodes could not start.
    #[error("tunnel: {0}")]
    Tunnel(String),
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
}

/// The control API's settings.
#[derive(Clone, Debug)]
pub struct ApiOptions {
    /// Address to serve on.
    pub listen: std::net::SocketAddr,
    /// Quotas of the API.
    pub quotas: handlers::Quotas,
    /// The default account's organisation.
    pub organization: Option<String>,
    /// Where domain verifications' TXT records are looked up.
    pub verification_resolver: Option<std::net::SocketAddr>,
    /// Cluster mode: the state in etcd instead of the local store.
    pub cluster: Option<control::cluster::Options>,
    /// Cluster mode: the tunnel between nodes.
    pub tunnel: TunnelOptions,
}

/// What the daemon is started with besides its paths.
#[derive(Debug)]
pub struct Options {
    /// Region, account and DNS suffix.
    pub naming: control::Naming,
    /// Prometheus metrics address, if served.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The data path's settings.
    pub proxy: ProxyConfig,
    /// The API, in API mode (no configuration file).
    pub api: Option<ApiOptions>,
}

/// Where the API's state is kept.
enum Backend {
    /// One host: redb under the state directory.
    Local(Store),
    /// Many hosts: etcd, followed through a watch.
    Cluster(Box<ClusterState>),
}

struct ApiRuntime {
    state: handlers::State,
    backend: Backend,
    settings: Settings,
    /// The keys the API takes: the default account's from the store, and
    /// the other accounts' from `accounts.json` (reread when it changes).
    creds: Credentials,
    /// The default account's keys alone.
    own_keys: HashMap<String, control::api::server::ApiKey>,
    /// The default account's organisation (`run --organization-id`).
    own_org: Option<String>,
    /// `accounts.json` as it was last read.
    accounts_seen: Option<watch::Stamp>,
    /// Domain verification lookups.
    verifier: verify::Verifier,
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
    /// Whether the resources changed (they are rebuilt whole: there are
    /// few, and each is small).
    pub resources: bool,
}

struct ClientSide {
    resolver: Option<NsResolver>,
    steering: Steering,
    /// Admission policy numbers of the steering program's maps.
    policies: control::security_groups::PolicyIds,
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
    naming: control::Naming,
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
    /// The inventory file as it was last read.
    inventory_seen: Option<watch::Stamp>,
    api: Option<ApiRuntime>,
    /// Cluster mode: the tunnels to and from other nodes.
    tunnels: tunnel::Tunnels,
    /// The tunnel address this node advertises, when it has one.
    tunnel_addr: Option<std::net::SocketAddr>,
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

impl ApiRuntime {
    /// The API's state from the store, its credentials, and its server
    /// listening on `opts.listen`.
    async fn start(
        paths: &Paths,
        naming: &control::Naming,
        opts: ApiOptions,
    ) -> Result<Self, Error> {
        let (state, backend, own_keys) = match &opts.cluster {
            None => {
                let store = Store::open(&paths.state_dir)?;
                let state = handlers::State::from_records(store.resources()?)?;
                let keys =
                    control::api::load_credentials(&store, &paths.state_dir, &naming.account)?;
                (state, Backend::Local(store), keys)
            }
            Some(c) => {
                control::store::private_dir(&paths.state_dir)?;
                let (cluster, snapshot, from_cache) =
                    ClusterState::start(c, &paths.netns_dir, &paths.state_dir).await?;
                let state = handlers::State::from_records(snapshot.resources)?;
                let mut keys = control::api::keys_of(snapshot.credentials, &naming.account);
                // From the cache, the admin key is the one this node wrote
                // down before; etcd is not there to agree on one.
                if !from_cache {
                    let (key, secret) = control::api::new_key();
                    let proposed = control::api::admin_record(&naming.account, &secret);
                    let (key, record) = cluster
                        .etcd
                        .admin_key(&naming.account, (&key, &proposed))
                        .await?;
                    let secret = record["secret"].as_str().unwrap_or_default().to_owned();
                    control::api::write_admin_file(&paths.state_dir, &key, &secret, true)?;
                    keys.extend(control::api::keys_of(vec![(key, record)], &naming.account));
                }
                (state, Backend::Cluster(Box::new(cluster)), keys)
            }
        };
        let creds: Credentials = Arc::new(std::sync::RwLock::new(own_keys.clone()));
        let listener = tokio::net::TcpListener::bind(opts.listen)
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
        let server = control::api::server::serve(listener, tx, Arc::clone(&creds));
        tracing::info!(
            endpoint = %format!("http://{local}"),
            credentials = %paths.state_dir.join("admin-credentials").display(),
            region = %naming.region,
            "VPC Lattice API listening"
        );
        Ok(Self {
            state,
            settings: Settings {
                naming: naming.clone(),
                quotas: opts.quotas,
                netns_dir: paths.netns_dir.clone(),
                vpc_owners: BTreeMap::new(),
                cluster_vpcs: match &backend {
                    Backend::Cluster(c) => Some(c.claims()),
                    Backend::Local(_) => None,
                },
                orgs: opts
                    .organization
                    .iter()
                    .map(|o| (naming.account.clone(), o.clone()))
                    .collect(),
            },
            backend,
            own_org: opts.organization,
            verifier: verify::Verifier::new(opts.verification_resolver),
            creds,
            own_keys,
            accounts_seen: None,
            calls: rx,
            _server: server,
        })
    }
}

impl Daemon {
    /// Cleans up after an unclean stop, loads the configuration (from the
    /// file, or from the API's store) and applies it; starts the API.
    pub async fn start(paths: Paths, options: Options) -> Result<Self, Error> {
        let Options {
            naming,
            metrics_listen,
            proxy,
            api,
        } = options;
        bpffs::prepare(&paths.bpffs_root)?;
        // In config mode as in API mode: the CA key and credentials live here.
        control::store::private_dir(&paths.state_dir)?;
        cleanup_leftovers(&paths).await?;
        let mut runtime = None;
        let cluster_node = api.as_ref().and_then(|o| {
            let c = o.cluster.as_ref()?;
            Some((o.tunnel.clone(), c.node.clone(), c.endpoints.clone()))
        });
        let desired = match (&paths.config, api) {
            (Some(path), _) => control::load(path, &paths.netns_dir)?.0,
            (None, None) => Config::default(),
            (None, Some(opts)) => {
                let api = ApiRuntime::start(&paths, &naming, opts).await?;
                let desired = api.state.to_config();
                runtime = Some(api);
                desired
            }
        };
        let dp = Dataplane::new(proxy)?;
        tokio::spawn(latticed_proxy::memory::trim_after_bursts(Arc::downgrade(
            &dp,
        )));
        let (tunnels, tunnel_addr) = tunnel::Tunnels::start(&dp, &paths, cluster_node).await?;
        let inventory_seen = watch::Stamp::of(&paths.inventory);
        let compiler = Compiler::new(
            Arc::clone(&dp),
            &paths.state_dir,
            &paths.log_dir,
            &naming.region,
            &naming.account,
            Inventory::load(&paths.inventory)?,
        )?;
        let metrics = match metrics_listen {
            Some(addr) => Some(
                crate::metrics::serve(
                    addr,
                    Arc::clone(&dp),
                    paths.bpffs_root.clone(),
                    runtime.as_ref().and_then(|a| match &a.backend {
                        Backend::Cluster(c) => Some(Arc::clone(&c.gauges)),
                        Backend::Local(_) => None,
                    }),
                )
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
            naming,
            dp,
            compiler,
            principals_seen: None,
            inventory_seen,
            _metrics: metrics,
            managed: BTreeMap::new(),
            next_id: 1,
            desired,
            plan: Plan::default(),
            compiled: Compiled::default(),
            api: runtime,
            tunnels,
            tunnel_addr,
        };
        daemon.reload_principals(true);
        daemon.reload_accounts(true);
        daemon.inventory_to_api();
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
    /// Removes everything this process created.
    pub async fn shutdown(mut self) {
        let names: Vec<String> = self.managed.keys().cloned().collect();
        for name in names {
            self.unmanage(&name).await;
        }
        self.record.remove();
        bpffs::remove_root_if_empty(&self.paths.bpffs_root);
        if let Some(ApiRuntime {
            backend: Backend::Cluster(c),
            ..
        }) = self.api.take()
        {
            c.leave().await;
        }
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
                _ = tick.tick() => {
                    self.publish_namespaces();
                    self.check_namespaces().await;
                    self.sweep_verifications();
                }
                Some(event) = next_api_event(&mut self.api) => match event {
                    ApiEvent::Call(call) => self.api_call(call).await,
                    ApiEvent::Verified(id) => self.verification_found(id).await,
                    ApiEvent::Cluster(event) => self.cluster_event(event).await,
                },
            }
        }
        notify(&[sd_notify::NotifyState::Stopping]);
        tracing::info!("stopping");
        self.shutdown().await;
        Ok(())
    }
}

/// What the API side asks of the daemon's loop.
enum ApiEvent {
    /// A call to carry out.
    Call(ApiCall),
    /// A domain verification's record was found.
    Verified(String),
    /// The cluster's watch delivered something.
    Cluster(control::cluster::Event),
}

async fn next_api_event(api: &mut Option<ApiRuntime>) -> Option<ApiEvent> {
    let Some(a) = api else {
        return std::future::pending().await;
    };
    let cluster = async {
        match &mut a.backend {
            Backend::Cluster(c) => c.events.recv().await,
            Backend::Local(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        Some(event) = cluster => Some(ApiEvent::Cluster(event)),
        Some(call) = a.calls.recv() => Some(ApiEvent::Call(call)),
        Some(id) = a.verifier.results.recv() => Some(ApiEvent::Verified(id)),
        else => None,
    }
}

fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::warn!(error = %e, "sd_notify");
    }
}

#[cfg(test)]
mod tests {
    use super::{transaction::replan, *};
    use crate::control::api::handlers::{handle, Quotas, Settings, State};
    use serde_json::{json, Value};

    /// Runs API operations against a State, keeping a plan and a routing
    /// table up to date the incremental way, and checks after every one
    /// that they equal planning and building the whole configuration from
    /// scratch. (A runtime: compiling starts the groups' health checks.)
    #[tokio::test]
    async fn incremental_plans_and_snapshots_equal_full_ones() {
        let dir = std::env::temp_dir().join(format!("latticed-replan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for ns in ["vpc-aa", "vpc-bb"] {
            std::fs::write(dir.join(ns), b"").unwrap();
        }
        let settings = Settings {
            naming: control::Naming::example(),
            quotas: Quotas::default(),
            netns_dir: dir.clone(),
            vpc_owners: BTreeMap::new(),
            cluster_vpcs: None,
            orgs: BTreeMap::new(),
        };
        let mut state = State::default();
        let mut plan = Plan::default();
        let dp = Dataplane::new(ProxyConfig {
            workers: 1,
            sockets: latticed_proxy::upstream::Sockets::Here,
            ..ProxyConfig::default()
        })
        .unwrap();
        let naming = control::Naming::example();
        let mut compiler = Compiler::new(
            dp,
            &dir,
            &dir,
            &naming.region,
            &naming.account,
            Inventory::default(),
        )
        .unwrap();
        let ids: snapshot::Ids = [("vpc-aa", 1), ("vpc-bb", 2)].into();
        let mut compiled = Compiled::default();
        let mut table = latticed_proxy::RouteTable::default();
        // After each step: the operation and the table, to check below.
        let mut seen: Vec<(String, String)> = Vec::new();
        let mut step = |op: &str, input: Value| -> Value {
            let call = crate::control::api::handlers::Call {
                op,
                input: &input,
                caller: &settings.naming.account,
            };
            let out =
                match handle(call, &state, &settings, "2026-11-22T00:00:00.000Z".into()).unwrap() {
                    Outcome::Write(m) => {
                        let undo = state.apply(&m.changes);
                        let affected = state.affected(&m.changes, &undo);
                        let old = plan.clone();
                        let delta = replan(&state, &affected, &mut plan, &dir).unwrap();
                        table = compiled.delta(&mut compiler, (&old, &plan), &delta, &ids, &table);
                        m.result
                    }
                    Outcome::Read(v) => v,
                };
            let full = plan_with(&state.to_config(), &dir, Missing::Skip).unwrap();
            assert_eq!(plan, full, "after {op}");
            let (_, whole) = Compiled::full(&mut compiler, &full, &ids);
            assert_eq!(
                snapshot::tests::describe(&table),
                snapshot::tests::describe(&whole),
                "the routing table after {op}"
            );
            seen.push((op.to_owned(), snapshot::tests::describe(&table)));
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
        // Resources: a gateway in vpc-bb, a SINGLE by address, a GROUP with
        // a CHILD by name, the network's resource log, then the way back.
        let gw = id(&step(
            "CreateResourceGateway",
            json!({"name": "gw-one", "vpcIdentifier": "vpc-bb", "subnetIds": ["subnet-1"]}),
        ));
        let db = id(&step(
            "CreateResourceConfiguration",
            json!({"name": "db-one", "type": "SINGLE", "resourceGatewayIdentifier": gw, "portRanges": ["5432", "6000-6100"],
                   "resourceConfigurationDefinition": {"ipResource": {"ipAddress": "10.0.16.20"}}}),
        ));
        let group = id(&step(
            "CreateResourceConfiguration",
            json!({"name": "caches", "type": "GROUP", "resourceGatewayIdentifier": gw, "portRanges": ["6379"]}),
        ));
        let child = id(&step(
            "CreateResourceConfiguration",
            json!({"name": "cache-one", "type": "CHILD", "resourceConfigurationGroupIdentifier": group,
                   "resourceConfigurationDefinition": {"dnsResource": {"domainName": "cache.internal.example", "ipAddressType": "IPV4"}}}),
        ));
        let snra = id(&step(
            "CreateServiceNetworkResourceAssociation",
            json!({"serviceNetworkIdentifier": sn, "resourceConfigurationIdentifier": db}),
        ));
        step(
            "CreateServiceNetworkResourceAssociation",
            json!({"serviceNetworkIdentifier": sn, "resourceConfigurationIdentifier": group}),
        );
        step(
            "CreateAccessLogSubscription",
            json!({"resourceIdentifier": sn, "serviceNetworkLogType": "RESOURCE",
                   "destinationArn": "arn:aws:logs:us-east-1:111122223333:log-group:resources"}),
        );
        step(
            "CreateAccessLogSubscription",
            json!({"resourceIdentifier": db, "destinationArn": "arn:aws:s3:::db-logs"}),
        );
        step(
            "UpdateResourceConfiguration",
            json!({"resourceConfigurationIdentifier": db, "portRanges": ["5433"]}),
        );
        step(
            "DeleteServiceNetworkResourceAssociation",
            json!({"serviceNetworkResourceAssociationIdentifier": snra}),
        );
        step(
            "DeleteResourceConfiguration",
            json!({"resourceConfigurationIdentifier": child}),
        );
        assert_eq!(plan.services.len(), 3);
        assert!(plan.client_namespaces().contains_key("vpc-aa"));
        let after = |op: &str| -> &str { &seen.iter().rev().find(|(o, _)| o == op).unwrap().1 };
        let logged = after("CreateAccessLogSubscription");
        assert_eq!(logged.matches(" resource ").count(), 2, "{logged}");
        assert!(
            logged.contains("resource db-one")
                && logged.contains("ports=[(5432, 5432), (6000, 6100)]"),
            "{logged}"
        );
        assert!(
            logged.contains("resource cache-one") && logged.contains("dns cache.internal.example"),
            "{logged}"
        );
        assert!(
            logged.contains("logs=2"),
            "the network's and the configuration's: {logged}"
        );
        assert!(after("UpdateResourceConfiguration").contains("ports=[(5433, 5433)]"));
        assert_eq!(
            after("DeleteServiceNetworkResourceAssociation")
                .matches(" resource ")
                .count(),
            1
        );
        assert_eq!(
            after("DeleteResourceConfiguration")
                .matches(" resource ")
                .count(),
            0
        );
        assert!(plan.resources["db-one"].reachable_from.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
