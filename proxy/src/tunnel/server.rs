//! The receiving side: peers' connections and their streams.
//!
//! A peer must present a certificate from the cluster CA naming a node;
//! anything else ends at the TLS handshake. A stream may reach only an
//! address that is a target of a group this node hosts, in that group's
//! VPC ([`Hosted`], compiled by the agent with every routing snapshot): a
//! tunnel is never a way into a tenant's namespace at large. The stream is
//! checked when it opens; streams already open when a target is
//! deregistered finish (draining).

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::{identity::node_of, NodeIdentity, ERROR_HEADER, VPC_HEADER};
use crate::netns::NsId;

/// What a stream's target connection comes from: a socket made in a
/// namespace of this node, from the source pool (the data path's
/// connector implements it).
pub trait ConnectLocal: Send + Sync + 'static {
    /// Connects to `target` in namespace `ns` of this node.
    fn connect_local(
        &self,
        ns: NsId,
        target: SocketAddr,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<tokio::net::TcpStream, String>> + Send + '_>,
    >;
}

/// What streams may reach: VPC name -> (its namespace here, the addresses
/// of targets of groups in it).
pub type Hosted = foldhash::HashMap<Box<str>, (NsId, foldhash::HashSet<SocketAddr>)>;

/// Most peers' connections at once (peers are other nodes: a handful; the
/// bound is for whoever else reaches the port).
const MAX_CONNECTIONS: usize = 512;
/// Limit for a peer to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most streams open at once on one peer's connection.
const MAX_STREAMS: u32 = 8192;

/// `count` listening sockets on `addr` sharing its port (SO_REUSEPORT):
/// one per data-path worker, so a peer's connection and its streams stay
/// on the worker that accepted it. Port 0 takes one port for all.
pub fn bind(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut addr = addr;
    let mut out = Vec::new();
    for _ in 0..count.max(1) {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        s.listen(1024)?;
        let l: std::net::TcpListener = s.into();
        addr = l.local_addr()?;
        out.push(l);
    }
    Ok(out)
}

/// Counters of the tunnel server (scraped as `latticed_tunnel_*`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Streams carried.
    pub accepted: AtomicU64,
    /// Streams refused: not a hosted target.
    pub refused: AtomicU64,
    /// Streams whose target did not answer.
    pub failed: AtomicU64,
    /// Connections that failed the handshake (no or wrong certificate).
    pub rejected_peers: AtomicU64,
}

/// The tunnel server of this node.
pub struct Server {
    node: String,
    tls: TlsAcceptor,
    hosted: arc_swap::ArcSwap<Hosted>,
    connector: Arc<dyn ConnectLocal>,
    /// Its counters.
    pub counters: Arc<Counters>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server for `identity`, connecting to targets with `connector`,
    /// counting into `counters`.
    pub fn new(
        identity: &NodeIdentity,
        connector: Arc<dyn ConnectLocal>,
        counters: Arc<Counters>,
    ) -> Arc<Self> {
        Arc::new(Self {
            node: identity.node.clone(),
            tls: TlsAcceptor::from(Arc::clone(&identity.server)),
            hosted: arc_swap::ArcSwap::default(),
            connector,
            counters,
        })
    }

    /// What streams may reach from now on.
    pub fn set_hosted(&self, hosted: Hosted) {
        self.hosted.store(Arc::new(hosted));
    }

    /// Accepts peers on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        loop {
            let (stream, from) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "tunnel accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                tracing::warn!(%from, "too many tunnel connections; closing a new one");
                continue;
            };
            let this = Arc::clone(&self);
            tokio::spawn(async move {
                this.connection(stream, from).await;
                drop(slot);
            });
        }
    }

    async fn connection(self: Arc<Self>, stream: tokio::net::TcpStream, from: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.tls.accept(stream)).await {
            Ok(Ok(t)) => t,
            failed => {
                self.counters.rejected_peers.fetch_add(1, Ordering::Relaxed);
                let reason = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no handshake in time".into(),
                };
                tracing::warn!(%from, error = %reason, "tunnel peer refused");
                return;
            }
        };
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(node_of);
        let Some(peer) = peer else {
            self.counters.rejected_peers.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%from, "tunnel peer's certificate names no node; refused");
            return;
        };
        if peer == self.node {
            // Every node has its own certificate: this one is a copy.
            self.counters.rejected_peers.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%from, node = %peer, "tunnel peer presents this node's own certificate; refused");
            return;
        }
        tracing::debug!(%from, node = %peer, "tunnel peer connected");
        let peer: Arc<str> = peer.into();
        let this = Arc::clone(&self);
        let service = hyper::service::service_fn(move |req| {
            let this = Arc::clone(&this);
            let peer = Arc::clone(&peer);
            async move { Ok::<_, Infallible>(this.stream(&peer, req).await) }
        });
        let served = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_STREAMS)
            .max_header_list_size(16 << 10)
            .initial_stream_window_size(1 << 20)
            .initial_connection_window_size(16 << 20)
            .max_frame_size(64 << 10)
            .keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .serve_connection(TokioIo::new(tls), service)
            .await;
        if let Err(e) = served {
            tracing::debug!(%from, error = %e, "tunnel peer connection ended");
        }
    }

    /// One stream: checked, connected, then spliced in its own task.
    async fn stream(&self, peer: &str, mut req: Request<Incoming>) -> Response<Empty<Bytes>> {
        let answer = |status: StatusCode, reason: &str| {
            let mut r = Response::new(Empty::new());
            *r.status_mut() = status;
            if let Ok(v) = HeaderValue::from_str(reason) {
                r.headers_mut().insert(ERROR_HEADER, v);
            }
            r
        };
        if req.method() != Method::CONNECT {
            return answer(StatusCode::METHOD_NOT_ALLOWED, "only CONNECT");
        }
        let target = req
            .uri()
            .authority()
            .and_then(|a| a.as_str().parse::<SocketAddr>().ok());
        let vpc = req.headers().get(VPC_HEADER).and_then(|v| v.to_str().ok());
        let (Some(target), Some(vpc)) = (target, vpc) else {
            return answer(
                StatusCode::BAD_REQUEST,
                "CONNECT needs an address:port authority and latticed-vpc",
            );
        };
        let ns = match self.hosted.load().get(vpc) {
            Some((ns, targets)) if targets.contains(&target) => *ns,
            _ => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(node = %peer, %vpc, %target, "tunnel stream refused: not a target of a group hosted here");
                return answer(
                    StatusCode::FORBIDDEN,
                    "not a target of a group hosted on this node",
                );
            }
        };
        let upstream = match self.connector.connect_local(ns, target).await {
            Ok(s) => s,
            Err(e) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(node = %peer, %vpc, %target, error = %e, "tunnel stream: target connection failed");
                let reason = e.replace(|c: char| !c.is_ascii_graphic() && c != ' ', "?");
                return answer(StatusCode::SERVICE_UNAVAILABLE, &reason);
            }
        };
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let mut upstream = upstream;
            match upgrade.await {
                Ok(up) => {
                    let mut up = TokioIo::new(up);
                    let _ = tokio::io::copy_bidirectional(&mut up, &mut upstream).await;
                }
                Err(e) => tracing::debug!(error = %e, "tunnel stream did not open"),
            }
        });
        Response::new(Empty::new())
    }
}
