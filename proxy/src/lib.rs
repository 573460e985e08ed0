//! latticed's L7 data plane.
//!
//! - [`netns`]: enter a network namespace on the current thread to create a socket there.
//! - [`body`]: bodies held whole (signed payloads, function events), bounded.
//! - [`head`]: what a request head may carry, one definition for every path.
//! - [`routing`]: the immutable routing snapshot requests read (rules, weights, targets).
//! - [`listener`]: per-namespace listening sockets; TLS, HTTP/1.1 and HTTP/2, limits.
//! - `fastpath`: plain HTTP/1.1 forwarding without hyper (httparse, one
//!   buffer per direction, the worker's own pool of target connections);
//!   anything else is handed to hyper.
//! - [`request`]: the request path hyper serves: route, auth, rewrite headers,
//!   forward, count, log.
//! - [`upstream`]: connections to targets from the 169.254.171.x SNAT pool, in the
//!   target's namespace; HTTP/2 targets and HTTPS targets.
//! - `upstream_h1`: HTTP/1.1 targets for hyper's requests, on the worker's pool.
//! - [`resource`]: TCP connections to resource configurations, carried from
//!   the gateway's VPC.
//! - [`lambda`]: function targets over the Lambda Invoke API.
//! - [`health`]: active health checks.
//! - [`access_log`]: one JSON line per request, never blocking.
//! - [`metrics`]: request counters and latency histograms.
//! - [`tls`]: the local certificate authority and TLS configurations.
//!
//! The agent owns the kernel side (routes, eBPF) and drives this crate through
//! [`Dataplane`]: it binds a listener per client namespace, hands it to
//! [`Dataplane::serve`], and publishes new routing snapshots with
//! [`Dataplane::publish`].

pub mod access_log;
pub mod activity;
pub mod authz;
pub mod body;
pub mod failure;
pub(crate) mod fastpath;
#[cfg(fuzzing)]
pub mod fuzzing;
pub mod head;
pub mod health;
pub mod http1;
pub mod lambda;
pub mod listener;
pub mod memory;
pub mod metrics;
pub mod netns;
pub mod passthrough;
pub mod pool;
pub mod request;
pub mod resource;
pub mod routing;
pub mod sigv4;
pub mod time;
pub mod tls;
pub mod tunnel;
pub mod upstream;
pub(crate) mod upstream_h1;
pub mod workers;

use std::{
    net::Ipv4Addr,
    sync::{atomic::AtomicI64, Arc},
    time::Duration,
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;

pub use listener::{bind_in, ListenerHandle};
pub use netns::NetNs;
pub use routing::{NsId, RouteTable};
pub use upstream::NsMap;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The TLS client configuration toward targets could not be built.
    #[error("TLS set-up: {0}")]
    Tls(#[from] rustls::Error),
    /// The access log writer could not start.
    #[error("starting the access log writer: {0}")]
    AccessLog(#[source] std::io::Error),
    /// A worker thread could not start.
    #[error(transparent)]
    Workers(#[from] workers::Error),
}

/// Tunables of the data plane.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Limit for establishing a connection to a target (then 503).
    pub connect_timeout: Duration,
    /// Limit for a target's response headers (then 504).
    pub request_timeout: Duration,
    /// Limit for a client to send request headers or finish the TLS
    /// handshake (then the connection closes).
    pub header_read_timeout: Duration,
    /// A client connection with no request open and no bytes moving for
    /// this long is closed.
    pub idle_timeout: Duration,
    /// Largest request head (431 beyond it).
    pub max_header_bytes: usize,
    /// Most request header fields (431 beyond it).
    pub max_headers: usize,
    /// How long an idle pooled upstream connection is kept.
    pub upstream_idle_timeout: Duration,
    /// A connection to a resource (a database's, a cache's) with no bytes
    /// moving either way for this long is closed. Longer than
    /// `idle_timeout`: pools of database connections sit idle for minutes.
    /// 350 s, as AWS's TCP endpoints (PrivateLink, NAT gateways) keep them.
    pub resource_idle_timeout: Duration,
    /// First address of the SNAT source pool.
    pub source_first: Ipv4Addr,
    /// Last address of the SNAT source pool.
    pub source_last: Ipv4Addr,
    /// Base URL of the Lambda Invoke API for LAMBDA targets.
    pub lambda_endpoint: Option<String>,
    /// Region named in function events.
    pub region: String,
    /// Data-path worker threads (one per CPU by default).
    pub workers: usize,
    /// Limit for a client to send a body the proxy holds whole (signed
    /// payloads, function events).
    pub body_read_timeout: Duration,
    /// Memory all bodies held whole may take at once, in bytes.
    pub body_memory: usize,
    /// How much of `body_memory` the clients of one namespace may hold.
    pub body_memory_per_vpc: usize,
    /// Where sockets toward targets are made.
    pub sockets: upstream::Sockets,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            upstream_idle_timeout: Duration::from_secs(60),
            resource_idle_timeout: Duration::from_secs(350),
            source_first: Ipv4Addr::from_bits(latticed_common::addresses::SOURCE_FIRST),
            source_last: Ipv4Addr::from_bits(latticed_common::addresses::SOURCE_LAST),
            lambda_endpoint: None,
            region: "us-east-1".into(),
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            body_read_timeout: Duration::from_secs(30),
            body_memory: 64 * 1024 * 1024,
            body_memory_per_vpc: 16 * 1024 * 1024,
            sockets: upstream::Sockets::default(),
        }
    }
}

/// Errors of request bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Body type of requests toward targets.
pub type UpstreamBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// A client request's body: streamed as received, or buffered (signed
/// payloads are read whole to check their hash).
pub type RequestBody = http_body_util::Either<hyper::body::Incoming, Full<Bytes>>;

/// The running data plane: routing snapshot, namespaces, upstream clients,
/// health checks, counters and the access log.
#[derive(Debug)]
pub struct Dataplane {
    routes: ArcSwap<RouteTable>,
    namespaces: Arc<ArcSwap<NsMap>>,
    remotes: Arc<ArcSwap<upstream::Remotes>>,
    pub(crate) workers: Vec<Arc<workers::Worker>>,
    pub(crate) servers: listener::Servers,
    pub(crate) connector: upstream::NsConnector,
    pub(crate) config: ProxyConfig,
    /// Health checkers of the targets in the snapshot.
    pub health: health::HealthChecks,
    /// Request counters by service and target group.
    pub metrics: metrics::Registry,
    /// The access log queue.
    pub access_log: access_log::AccessLog,
    /// Open client connections.
    pub active: AtomicI64,
    /// Callers' credentials for SigV4 on the data path.
    pub principals: ArcSwap<authz::Principals>,
    /// Memory for bodies held whole, across all connections.
    pub bodies: body::Budget,
    /// Streams other nodes opened through this node's tunnel server.
    pub tunnel: Arc<tunnel::server::Counters>,
}

impl Dataplane {
    /// A data plane with an empty routing table.
    pub fn new(config: ProxyConfig) -> Result<Arc<Self>, Error> {
        let namespaces: Arc<ArcSwap<NsMap>> = Arc::default();
        let remotes: Arc<ArcSwap<upstream::Remotes>> = Arc::default();
        let sources = Arc::new(upstream::SourcePool::new(
            config.source_first,
            config.source_last,
        ));
        let connector = upstream::NsConnector::new(
            config.sockets,
            Arc::clone(&namespaces),
            Arc::clone(&remotes),
            sources,
            config.connect_timeout,
        )?;
        let workers = workers::start(config.workers, &config, &connector)?;
        Ok(Arc::new(Self {
            routes: ArcSwap::default(),
            namespaces,
            remotes,
            workers,
            servers: listener::Servers::new(&config),
            health: health::HealthChecks::new(connector.clone()),
            connector,
            metrics: metrics::Registry::default(),
            access_log: access_log::AccessLog::start().map_err(Error::AccessLog)?,
            active: AtomicI64::new(0),
            principals: ArcSwap::default(),
            bodies: body::Budget::new(config.body_memory, config.body_memory_per_vpc),
            tunnel: Arc::default(),
            config,
        }))
    }

    /// Swaps in a new routing table and namespace set. Requests already routed
    /// finish on the old one; new requests see the new one.
    pub fn publish(&self, table: RouteTable, namespaces: NsMap) {
        // Namespaces first: a route must never name a namespace the connector
        // does not know yet.
        self.namespaces.store(Arc::new(namespaces));
        self.routes.store(Arc::new(table));
        // Checks of targets new in this table start now that their
        // namespaces are known.
        self.health.start_pending();
        // Checkers of targets no snapshot refers to any more stop. (The old
        // snapshot may still be held by requests in flight; their checkers
        // stop at the next publish.)
        self.health.retain_used();
    }

    /// Sets the VPCs other nodes host, as routes name them (by ids with
    /// [`upstream::REMOTE`] set). Call before [`Dataplane::publish`] for a
    /// table naming new ones.
    pub fn publish_remotes(&self, remotes: upstream::Remotes) {
        self.remotes.store(Arc::new(remotes));
    }

    /// The connector toward targets (the tunnel server connects with it).
    pub fn connector(&self) -> Arc<upstream::NsConnector> {
        Arc::new(self.connector.clone())
    }

    /// Namespace `id`, if it is managed now.
    pub fn namespace(&self, id: NsId) -> Option<Arc<NetNs>> {
        self.namespaces.load().get(&id).cloned()
    }

    /// The routing table in force now.
    pub fn routes(&self) -> Arc<RouteTable> {
        self.routes.load_full()
    }

    /// What reading a body whole needs (see [`body::WholeBodies`]).
    pub fn whole_bodies(&self) -> body::WholeBodies<'_> {
        body::WholeBodies {
            budget: &self.bodies,
            deadline: self.config.body_read_timeout,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Number of data-path workers: each namespace needs one listening
    /// socket per worker (see `bind_in`).
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Accepts peers' tunnels on `listeners` (see `tunnel::server::bind`),
    /// listener `i` on worker `i`: a peer's streams then run on the worker
    /// its connection arrived on.
    pub fn serve_tunnel(
        &self,
        server: &Arc<tunnel::Server>,
        listeners: Vec<std::net::TcpListener>,
    ) -> ListenerHandle {
        let tasks = listeners
            .into_iter()
            .zip(self.workers.iter().cycle())
            .map(|(l, worker)| {
                let server = Arc::clone(server);
                worker.spawn(async move {
                    match tokio::net::TcpListener::from_std(l) {
                        Ok(l) => server.serve(l).await,
                        Err(e) => tracing::error!(error = %e, "cannot serve the tunnel listener"),
                    }
                })
            })
            .collect();
        ListenerHandle::from_tasks(tasks)
    }

    /// Starts accepting connections for namespace `ns`, one listener per
    /// worker (in worker order).
    pub fn serve(
        self: &Arc<Self>,
        ns: NsId,
        ns_name: &str,
        listeners: Vec<std::net::TcpListener>,
    ) -> ListenerHandle {
        listener::serve(self, ns, ns_name, listeners)
    }
}
