//! Per-namespace listeners and the connection layer: accept, TLS, HTTP/1.1
//! or HTTP/2, limits.
//!
//! One listening socket per client namespace receives every connection the
//! namespace's sk_lookup program steers to it. `getsockname()` on an accepted
//! connection returns the VIP:port the client dialed, which together with the
//! namespace the socket lives in selects the listeners (`routing`). HTTPS
//! VIP:ports read the ClientHello first and pick the service's certificate
//! by SNI; the request itself is handled in `request`.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
};
use tokio_rustls::LazyConfigAcceptor;

use crate::{
    activity::{Activity, IdleIo},
    fastpath::{self, End, Prefixed},
    netns::NetNs,
    request::{self, Conn},
    routing::{ListenerKey, NsId},
    workers::Worker,
    Dataplane,
};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Entering the namespace failed.
    #[error(transparent)]
    Netns(#[from] crate::netns::Error),
    /// Creating or binding the listening socket failed.
    #[error("creating the proxy listener in namespace {namespace:?}: {source}")]
    Bind {
        /// Namespace name.
        namespace: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Creates the proxy's listening socket inside `ns`.
///
/// It is bound to 127.0.0.1 on an ephemeral port: connections arrive through
/// the sockmap, never by that address, and a loopback bind keeps it off every
/// interface of the tenant's namespace. The socket is IPv6 and dual-stack,
/// so the steering program may hand it connections of either family (the
/// kernel refuses an IPv4-only socket for an IPv6 connection); on a kernel
/// without IPv6 it is IPv4.
pub fn bind_in(ns: &NetNs) -> Result<std::net::TcpListener, Error> {
    let bind_err = |source| Error::Bind {
        namespace: ns.name().to_owned(),
        source,
    };
    let socket = ns
        .enter(|| {
            let dual = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))
                .and_then(|s| s.set_only_v6(false).map(|()| s));
            match dual {
                Ok(s) => Ok((s, Ipv4Addr::LOCALHOST.to_ipv6_mapped().into())),
                Err(_) => Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
                    .map(|s| (s, Ipv4Addr::LOCALHOST.into())),
            }
        })?
        .map_err(bind_err);
    let (socket, loopback): (Socket, std::net::IpAddr) = socket?;
    socket.set_nonblocking(true).map_err(bind_err)?;
    socket
        .bind(&SocketAddr::from((loopback, 0)).into())
        .map_err(bind_err)?;
    socket.listen(4096).map_err(bind_err)?;
    Ok(socket.into())
}

/// Creates one listening socket per worker inside `ns` (see `bind_in`).
pub fn bind_all(ns: &NetNs, workers: usize) -> Result<Vec<std::net::TcpListener>, Error> {
    (0..workers.max(1)).map(|_| bind_in(ns)).collect()
}

/// Running accept loops; dropping it stops accepting (connections already
/// accepted run to completion).
#[derive(Debug)]
pub struct ListenerHandle {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ListenerHandle {
    /// A handle on accept loops started elsewhere.
    pub(crate) fn from_tasks(tasks: Vec<tokio::task::JoinHandle<()>>) -> Self {
        Self { tasks }
    }
}

impl Drop for ListenerHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts serving connections for namespace `ns`: listener `i` is accepted
/// on worker `i`, and its connections stay there.
pub fn serve(
    dp: &Arc<Dataplane>,
    ns: NsId,
    ns_name: &str,
    listeners: Vec<std::net::TcpListener>,
) -> ListenerHandle {
    let ns_name: Arc<str> = ns_name.into();
    let tasks = listeners
        .into_iter()
        .zip(dp.workers.iter().cycle())
        .map(|(listener, worker)| {
            let dp = Arc::clone(dp);
            let ns_name = Arc::clone(&ns_name);
            let worker = Arc::clone(worker);
            worker.clone().spawn(async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(namespace = %ns_name, error = %e, "cannot serve the proxy listener");
                        return;
                    }
                };
                loop {
                    match listener.accept().await {
                        Ok((stream, peer)) => {
                            let dp = Arc::clone(&dp);
                            let worker = Arc::clone(&worker);
                            tokio::spawn(async move {
                                // Lowered on drop: a connection task that
                                // ends any way, a panic included, leaves
                                // the gauge as it found it.
                                let _open = Gauged::raise(&dp.active);
                                serve_connection(&dp, &worker, ns, stream, peer).await;
                            });
                        }
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            tracing::warn!(namespace = %ns_name, error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            })
        })
        .collect();
    ListenerHandle { tasks }
}

/// One unit of a gauge, held while something is open.
pub(crate) struct Gauged<'a>(&'a std::sync::atomic::AtomicI64);

impl<'a> Gauged<'a> {
    pub(crate) fn raise(gauge: &'a std::sync::atomic::AtomicI64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for Gauged<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve_connection(
    dp: &Arc<Dataplane>,
    worker: &Arc<Worker>,
    ns: NsId,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    // A dual-stack socket shows IPv4 peers as IPv4-mapped; they are logged
    // and forwarded as what they are. An IPv6 VIP is its IPv4 twin's
    // listener (one route table for both families).
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    let local = match stream
        .local_addr()
        .map(|a| (a.ip().to_canonical(), a.port()))
    {
        Ok((std::net::IpAddr::V4(ip), port)) => std::net::SocketAddrV4::new(ip, port),
        Ok((std::net::IpAddr::V6(ip), port)) => {
            match latticed_common::addresses::v4_of(ip.octets()) {
                Some(v4) => std::net::SocketAddrV4::new(Ipv4Addr::from_bits(v4), port),
                None => {
                    tracing::debug!(local = %ip, "connection to an IPv6 address that is no VIP; closing");
                    return;
                }
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "connection without a local address; closing");
            return;
        }
    };
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay");
    }
    let key = ListenerKey {
        ns,
        vip: *local.ip(),
        port: local.port(),
    };
    // One snapshot decides: a listener, a resource's VIP (any port of its
    // ranges), or nothing (steered but no longer configured: the snapshot
    // changed between the kernel's steering and this accept).
    let found = {
        let routes = dp.routes.load();
        match routes.listeners.get(&key) {
            Some(v) => Ok((v.tls, v.passthrough)),
            None => {
                let at = crate::routing::ResourceKey {
                    ns,
                    vip: *local.ip(),
                };
                Err(routes.resources.get(&at).cloned())
            }
        }
    };
    let (tls, passthrough) = match found {
        Ok(found) => found,
        Err(Some(resource)) => {
            crate::resource::serve(dp, resource, local, stream, peer).await;
            return;
        }
        Err(None) => return,
    };
    if passthrough {
        crate::passthrough::serve(dp, key, stream, peer).await;
        return;
    }
    let activity = Arc::new(Activity::default());
    if !tls {
        let conn = Arc::new(Conn::new(ns, local, peer, None));
        // Plain HTTP/1.1 forwarding first; hyper takes the connection over
        // at the first request that needs it (HTTP/2 prior knowledge too).
        let (stream, buffered) = match fastpath::serve(dp, &conn, stream).await {
            End::Closed => return,
            End::Fallback { io, buffered } => (io, buffered),
        };
        let io = IdleIo {
            inner: Prefixed::new(buffered, stream),
            activity: Arc::clone(&activity),
        };
        // Boxed, as below: hyper's state is allocated only for the
        // connections that need it.
        Box::pin(serve_http(dp, worker, io, conn, Version::Auto, activity)).await;
        return;
    }
    Box::pin(serve_tls(dp, worker, key, stream, peer, local, activity)).await;
}

/// An HTTPS connection: ClientHello, certificate by SNI, handshake, then
/// HTTP/1.1 (fast path first) or HTTP/2.
async fn serve_tls(
    dp: &Arc<Dataplane>,
    worker: &Arc<Worker>,
    key: ListenerKey,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    local: std::net::SocketAddrV4,
    activity: Arc<Activity>,
) {
    let io = IdleIo {
        inner: stream,
        activity: Arc::clone(&activity),
    };
    // HTTPS: read the ClientHello, pick the service by SNI, then handshake,
    // all within the header timeout so a silent client cannot hold a slot.
    let handshake = async {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await?;
        let sni = start.client_hello().server_name().map(str::to_owned);
        let config = {
            let table = dp.routes.load();
            table
                .listeners
                .get(&key)
                .and_then(|v| v.route(sni.as_deref()))
                .and_then(|s| s.listener.tls.clone())
        };
        let Some(config) = config else {
            return Err(std::io::Error::other(format!(
                "no HTTPS service for server name {sni:?}"
            )));
        };
        let stream = start.into_stream(config).await?;
        Ok::<_, std::io::Error>((stream, sni))
    };
    let (stream, sni) = match tokio::time::timeout(dp.config.header_read_timeout, handshake).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let (_, session) = stream.get_ref();
    let version = if session.alpn_protocol() == Some(b"h2") {
        Version::H2
    } else {
        Version::H1
    };
    let tls_info = request::TlsInfo {
        sni: sni.unwrap_or_default(),
        version: match session.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "-",
        },
        cipher: session
            .negotiated_cipher_suite()
            .and_then(|c| c.suite().as_str())
            .unwrap_or("-"),
    };
    let conn = Arc::new(Conn::new(key.ns, local, peer, Some(tls_info)));
    if version == Version::H2 {
        serve_http(dp, worker, stream, conn, version, activity).await;
        return;
    }
    let (stream, buffered) = match fastpath::serve(dp, &conn, stream).await {
        End::Closed => return,
        End::Fallback { io, buffered } => (io, buffered),
    };
    Box::pin(serve_http(
        dp,
        worker,
        Prefixed::new(buffered, stream),
        conn,
        version,
        activity,
    ))
    .await;
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    /// HTTP/1.1, or HTTP/2 with prior knowledge (cleartext).
    Auto,
    H1,
    H2,
}

async fn serve_http<I>(
    dp: &Arc<Dataplane>,
    worker: &Arc<Worker>,
    io: I,
    conn: Arc<Conn>,
    version: Version,
    activity: Arc<Activity>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let svc = {
        let dp = Arc::clone(dp);
        let worker = Arc::clone(worker);
        let activity = Arc::clone(&activity);
        service_fn(move |req| {
            let dp = Arc::clone(&dp);
            let worker = Arc::clone(&worker);
            let conn = Arc::clone(&conn);
            let guard = activity.request();
            async move {
                // Boxed: hyper spawns a task per HTTP/2 stream and moves
                // this future into it several times; the handler's state
                // is most of a KiB (see `request::handle`), a box is a
                // pointer.
                let req = req.map(http_body_util::Either::Left);
                let resp = Box::pin(request::handle(&dp, &worker, &conn, req)).await;
                drop(guard);
                Ok::<_, std::convert::Infallible>(resp)
            }
        })
    };
    let builder = match version {
        Version::Auto => &dp.servers.auto,
        Version::H1 => &dp.servers.h1,
        Version::H2 => &dp.servers.h2,
    };
    let serving = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(serving);
    let idle = dp.config.idle_timeout;
    let header = dp.config.header_read_timeout;
    // HTTP/2 clients send frames between requests (PING, WINDOW_UPDATE);
    // only HTTP/1 reads between requests are a request head arriving.
    activity.track_heads(version != Version::H2);
    let mut closing = false;
    loop {
        // Wake when the connection would reach a limit if nothing moves
        // meanwhile.
        let wait = match activity.head_for() {
            Some(t) => header.saturating_sub(t),
            None => idle.saturating_sub(activity.idle_for()),
        }
        .max(Duration::from_millis(50));
        tokio::select! {
            r = serving.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "client connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep(wait) => {
                if activity.head_for().is_some_and(|t| t >= header) {
                    // A request head that does not finish in time: drop the
                    // connection (a slow client holds nothing else).
                    tracing::debug!(%peer, "request headers not received in time; closing");
                    return;
                }
                if activity.head_for().is_none() && activity.idle_for() >= idle {
                    if closing {
                        // A graceful shutdown waits for the response in
                        // flight; one whose client stopped reading never
                        // ends. Nothing moved for the idle time: drop it,
                        // and with it the target connection it holds.
                        tracing::debug!(%peer, "client stopped reading; closing");
                        return;
                    }
                    tracing::debug!(%peer, "closing idle client connection");
                    serving.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// The HTTP server settings per kind of connection.
pub(crate) struct Servers {
    auto: hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    h1: hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    h2: hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
}

impl std::fmt::Debug for Servers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Servers").finish_non_exhaustive()
    }
}

impl Servers {
    pub(crate) fn new(config: &crate::ProxyConfig) -> Self {
        let make = || {
            let mut b =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            b.http1()
                .timer(hyper_util::rt::TokioTimer::new())
                // Our own timers enforce it (see `Activity`).
                .header_read_timeout(None)
                // hyper answers 431 when a request head outgrows this.
                .max_buf_size(config.max_header_bytes.max(8192))
                .max_headers(config.max_headers);
            b.http2()
                .timer(hyper_util::rt::TokioTimer::new())
                .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
                .max_concurrent_streams(1024);
            b
        };
        Self {
            auto: make(),
            h1: make().http1_only(),
            h2: make().http2_only(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_comes_back_down_when_a_connection_task_panics() {
        let gauge = std::sync::atomic::AtomicI64::new(0);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _open = Gauged::raise(&gauge);
            assert_eq!(gauge.load(Ordering::Relaxed), 1);
            panic!("a connection task fails");
        }));
        assert!(r.is_err());
        assert_eq!(gauge.load(Ordering::Relaxed), 0);
    }
}
