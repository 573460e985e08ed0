//! latticed's L7 data plane.
//!
//! - [`netns`]: enter a network namespace on the current thread to create a socket there.
//! - [`routing`]: the immutable routing snapshot requests read (rules, weights, targets).
//! - [`listener`]: per-namespace listening sockets and the request path.
//! - [`upstream`]: connections to targets from the 169.254.171.x SNAT pool, in the
//!   target's namespace, pooled.
//!
//! The agent owns the kernel side (routes, eBPF) and drives this crate through
//! [`Dataplane`]: it binds a listener per client namespace, hands it to
//! [`Dataplane::serve`], and publishes new routing snapshots with
//! [`Dataplane::publish`].

pub mod listener;
pub mod netns;
pub mod routing;
pub mod sigv4;
pub mod time;
pub mod upstream;

use std::{net::Ipv4Addr, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use hyper::body::Incoming;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

pub use listener::{bind_in, ListenerHandle};
pub use netns::NetNs;
pub use routing::{NsId, RouteTable};
pub use upstream::NsMap;

/// Tunables of the data plane.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Limit for establishing a connection to a target (then 503).
    pub connect_timeout: Duration,
    /// Limit for a target's response headers (then 504).
    pub request_timeout: Duration,
    /// Limit for a client to send request headers (then the connection closes).
    pub header_read_timeout: Duration,
    /// How long an idle pooled upstream connection is kept.
    pub upstream_idle_timeout: Duration,
    /// First address of the SNAT source pool.
    pub source_first: Ipv4Addr,
    /// Last address of the SNAT source pool.
    pub source_last: Ipv4Addr,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            upstream_idle_timeout: Duration::from_secs(60),
            source_first: Ipv4Addr::new(169, 254, 171, 192),
            source_last: Ipv4Addr::new(169, 254, 171, 254),
        }
    }
}

/// The running data plane: routing snapshot, namespaces and the upstream client.
#[derive(Debug)]
pub struct Dataplane {
    routes: ArcSwap<RouteTable>,
    namespaces: Arc<ArcSwap<NsMap>>,
    client: Client<upstream::NsConnector, Incoming>,
    config: ProxyConfig,
}

impl Dataplane {
    /// A data plane with an empty routing table.
    pub fn new(config: ProxyConfig) -> Arc<Self> {
        let namespaces: Arc<ArcSwap<NsMap>> = Arc::default();
        let sources = Arc::new(upstream::SourcePool::new(
            config.source_first,
            config.source_last,
        ));
        let connector =
            upstream::NsConnector::new(Arc::clone(&namespaces), sources, config.connect_timeout);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.upstream_idle_timeout)
            .pool_max_idle_per_host(1024)
            .build(connector);
        Arc::new(Self {
            routes: ArcSwap::default(),
            namespaces,
            client,
            config,
        })
    }

    /// Swaps in a new routing table and namespace set. Requests already routed
    /// finish on the old one; new requests see the new one.
    pub fn publish(&self, table: RouteTable, namespaces: NsMap) {
        // Namespaces first: a route must never name a namespace the connector
        // does not know yet.
        self.namespaces.store(Arc::new(namespaces));
        self.routes.store(Arc::new(table));
    }

    /// The routing table in force now.
    pub fn routes(&self) -> Arc<RouteTable> {
        self.routes.load_full()
    }

    /// Starts accepting connections for namespace `ns` on `listener`.
    pub fn serve(
        self: &Arc<Self>,
        ns: NsId,
        ns_name: &str,
        listener: std::net::TcpListener,
    ) -> std::io::Result<ListenerHandle> {
        listener::serve(self, ns, ns_name, listener)
    }
}
