//! Connections toward targets: created in the target group's namespace and
//! bound to a source address of the SNAT pool, so the target sees a
//! 169.254.171.x client and its replies come back to this very socket however
//! the tenant's addresses overlap with anyone else's.
//!
//! Connection reuse is hyper-util's pooled client. Its pool is keyed by URI
//! authority, so each target gets a synthetic authority `n{ns}-{a}-{b}-{c}-{d}:{port}`
//! naming both the namespace and the address: two targets at 10.0.16.10:8080
//! in different namespaces never share a connection. The connector decodes it.

use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::AsRawFd,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use arc_swap::ArcSwap;
use http::{uri::Authority, Uri};
use hyper_util::{
    client::legacy::connect::{Connected, Connection},
    rt::TokioIo,
};
use rustls::pki_types::ServerName;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpSocket, TcpStream},
};
use tokio_rustls::{client::TlsStream, TlsConnector};

use crate::netns::{NetNs, NsId};

/// Why a request to a target failed.
#[derive(Debug)]
pub enum SendError {
    /// No connection (503).
    Connect(String),
    /// The exchange failed (502).
    Request(String),
    /// The client's own body broke off or was malformed midway (400).
    ClientBody(String),
}

/// The target's HTTP/2 connection, shared by every request to it (HTTP/2
/// multiplexes), made on first use and again when it closes. No lock: a
/// race makes two connections and the last one stays.
#[derive(Debug, Default)]
pub struct H2Conn(
    arc_swap::ArcSwapOption<hyper::client::conn::http2::SendRequest<crate::UpstreamBody>>,
);

/// Protocol version toward targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetVersion {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2.
    Http2,
    /// gRPC (HTTP/2).
    Grpc,
}

/// Sends `req` to the target at `addr` over its HTTP/2 connection `h2`
/// (made here if it is missing or closed).
pub async fn send_h2(
    connector: &NsConnector,
    ns: NsId,
    addr: SocketAddr,
    h2: &H2Conn,
    https: bool,
    req: http::Request<crate::UpstreamBody>,
) -> Result<http::Response<hyper::body::Incoming>, SendError> {
    let cached = h2.0.load_full().filter(|s| !s.is_closed());
    let mut send = match cached {
        Some(s) => (*s).clone(),
        None => {
            let stream = connector
                .connect(ns, addr)
                .await
                .map_err(|e| SendError::Connect(e.to_string()))?;
            let stream = if https {
                connector
                    .tls(stream, addr, true)
                    .await
                    .map_err(|e| SendError::Connect(e.to_string()))?
            } else {
                Stream::Plain(stream)
            };
            let (send, conn) =
                hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .timer(hyper_util::rt::TokioTimer::new())
                    .handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| SendError::Connect(e.to_string()))?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "HTTP/2 target connection ended");
                }
            });
            h2.0.store(Some(Arc::new(send.clone())));
            send
        }
    };
    send.ready()
        .await
        .map_err(|e| SendError::Connect(e.to_string()))?;
    send.send_request(req)
        .await
        .map_err(|e| SendError::Request(e.to_string()))
}

/// Namespaces the connector can create sockets in, by id.
pub type NsMap = std::collections::HashMap<NsId, Arc<NetNs>>;

/// The bit that marks a namespace id as a VPC on another node: the agent
/// numbers remote VPCs from here, so the connector tells them apart
/// without a lookup.
pub const REMOTE: NsId = 1 << 31;

/// A VPC another node hosts, as the connector reaches it.
#[derive(Clone, Debug)]
pub struct Remote {
    /// The VPC (its namespace's name on that node).
    pub vpc: Arc<str>,
    /// The node that hosts it.
    pub node: Arc<str>,
    /// Its tunnel; `None` while it has none (not registered, or no tunnel
    /// address): connections fail at once.
    pub peer: Option<Arc<crate::tunnel::Peer>>,
}

/// Remote VPCs by their ids (each with [`REMOTE`] set).
pub type Remotes = std::collections::HashMap<NsId, Remote>;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URI did not carry a target authority made by [`authority_for`].
    #[error("not a latticed target authority: {0}")]
    BadAuthority(String),
    /// The target's namespace is no longer managed.
    #[error("namespace #{0} of the target is gone")]
    NamespaceGone(NsId),
    /// Entering the namespace failed.
    #[error(transparent)]
    Netns(#[from] crate::netns::Error),
    /// Socket set-up or connect failed.
    #[error("connecting to {target} from {source_addr}: {error}")]
    Connect {
        /// Target address.
        target: SocketAddr,
        /// SNAT source address.
        source_addr: IpAddr,
        /// Cause.
        #[source]
        error: std::io::Error,
    },
    /// Connect did not finish in time.
    #[error("connecting to {0}: timed out")]
    ConnectTimeout(SocketAddr),
    /// The target is on another node, and its tunnel failed.
    #[error(transparent)]
    Tunnel(#[from] crate::tunnel::Error),
    /// The target is on another node that no tunnel reaches now.
    #[error("the target's VPC {vpc} is on node {node}, which has no tunnel now")]
    NoPeer {
        /// The target's VPC.
        vpc: Arc<str>,
        /// The node hosting it, if any registers it.
        node: Arc<str>,
    },
    /// The TLS handshake with an HTTPS target failed.
    #[error("TLS handshake with {target}: {error}")]
    Tls {
        /// Target address.
        target: SocketAddr,
        /// Cause.
        #[source]
        error: std::io::Error,
    },
}

/// A connection toward a target: a socket made in its namespace here, or a
/// stream through the tunnel to the node that hosts its VPC. Everything
/// above a connection is the same code for both.
#[derive(Debug)]
pub enum Conn {
    /// A socket in the target's namespace on this node.
    Tcp(TcpStream),
    /// A stream through another node's tunnel.
    Tunnel(Box<crate::tunnel::TunnelStream>),
}

impl Conn {
    /// Waits until the target's answer can be read, holding nothing.
    /// `poll_read_ready` waits in the socket's one reader slot; `readable()`
    /// would queue a waiter under the socket's lock. A tunnel stream has no
    /// such wait: its read waits instead.
    pub(crate) async fn answer_ready(&mut self) -> std::io::Result<()> {
        match self {
            Self::Tcp(s) => std::future::poll_fn(|cx| s.poll_read_ready(cx)).await,
            Self::Tunnel(_) => Ok(()),
        }
    }

    /// Whether a pooled connection is still open with nothing unread.
    pub(crate) fn still_idle(&mut self) -> bool {
        match self {
            // No readiness event since it went idle means no FIN and no
            // stray bytes; tokio answers that without a system call.
            Self::Tcp(s) => {
                let mut probe = [0u8; 1];
                matches!(s.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
            Self::Tunnel(t) => t.still_idle(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tunnel(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tunnel(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Tunnel(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tunnel(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tunnel(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(s) => s.is_write_vectored(),
            Self::Tunnel(s) => s.is_write_vectored(),
        }
    }
}

/// A connection to a target: plain, or TLS for HTTPS target groups.
#[derive(Debug)]
pub enum Stream {
    /// HTTP.
    Plain(Conn),
    /// HTTPS.
    Tls(Box<TlsStream<Conn>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Self::Plain(_) => Connected::new(),
            Self::Tls(s) if s.get_ref().1.alpn_protocol() == Some(b"h2") => {
                Connected::new().negotiated_h2()
            }
            Self::Tls(_) => Connected::new(),
        }
    }
}

/// The source addresses connections to targets are bound to.
#[derive(Debug)]
pub struct SourcePool {
    first: u32,
    len: u32,
    next: AtomicUsize,
}

impl SourcePool {
    /// A pool of `first..=last`.
    pub fn new(first: Ipv4Addr, last: Ipv4Addr) -> Self {
        let (a, b) = (u32::from(first), u32::from(last));
        Self {
            first: a.min(b),
            len: a.abs_diff(b) + 1,
            next: AtomicUsize::new(0),
        }
    }

    /// The next address, round robin, spreading ephemeral ports over them.
    pub fn next(&self) -> Ipv4Addr {
        let i = self.next.fetch_add(1, Ordering::Relaxed) as u32 % self.len;
        Ipv4Addr::from(self.first + i)
    }
}

/// Encodes namespace and address into a URI authority (see module docs):
/// `n{ns}-a-b-c-d` for IPv4, `n{ns}-v6-{32 hex digits}` for IPv6 (digits,
/// letters and dashes only, always a valid host).
pub fn authority_for(ns: NsId, addr: SocketAddr) -> Authority {
    let s = match addr.ip() {
        IpAddr::V4(ip) => {
            let [a, b, c, d] = ip.octets();
            format!("n{ns}-{a}-{b}-{c}-{d}:{}", addr.port())
        }
        IpAddr::V6(ip) => format!("n{ns}-v6-{:032x}:{}", u128::from(ip), addr.port()),
    };
    // Built from digits, letters and dashes only, which is always a valid
    // authority; fall back to a static one rather than panic.
    s.parse()
        .unwrap_or_else(|_| Authority::from_static("invalid.invalid"))
}

/// Decodes [`authority_for`].
pub fn parse_authority(uri: &Uri) -> Option<(NsId, SocketAddr)> {
    let host = uri.host()?.strip_prefix('n')?;
    let port = uri.port_u16()?;
    let (ns, rest) = host.split_once('-')?;
    let ns = ns.parse().ok()?;
    if let Some(hex) = rest.strip_prefix("v6-") {
        if hex.len() != 32 {
            return None;
        }
        let ip = Ipv6Addr::from(u128::from_str_radix(hex, 16).ok()?);
        return Some((ns, SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0))));
    }
    let mut parts = rest.split('-');
    let mut octets = [0u8; 4];
    for o in &mut octets {
        *o = parts.next()?.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some((ns, SocketAddr::V4(SocketAddrV4::new(octets.into(), port))))
}

/// Where the connector makes its sockets: the one seam between the data
/// path and the kernel's namespaces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sockets {
    /// In the target group's namespace, bound to the next address of the
    /// source pool: what latticed runs.
    #[default]
    InTargetNamespace,
    /// In the calling thread's own namespace, from whatever address the
    /// kernel picks, whatever namespace a target names. Entering a
    /// namespace needs `CAP_SYS_ADMIN`; this lets the proxy's paths be
    /// tested and measured without privileges, with targets on loopback.
    Here,
}

/// hyper-util connector creating sockets in target namespaces; `https`
/// URIs get TLS offering http/1.1 (HTTP/2 targets use [`send_h2`]).
#[derive(Clone)]
pub struct NsConnector {
    sockets: Sockets,
    namespaces: Arc<ArcSwap<NsMap>>,
    remotes: Arc<ArcSwap<Remotes>>,
    sources: Arc<SourcePool>,
    connect_timeout: Duration,
    tls_h1: TlsConnector,
    tls_h2: TlsConnector,
}

impl std::fmt::Debug for NsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NsConnector").finish_non_exhaustive()
    }
}

impl NsConnector {
    /// A connector making `sockets`, reading namespaces from `namespaces`.
    pub fn new(
        sockets: Sockets,
        namespaces: Arc<ArcSwap<NsMap>>,
        remotes: Arc<ArcSwap<Remotes>>,
        sources: Arc<SourcePool>,
        connect_timeout: Duration,
    ) -> Result<Self, rustls::Error> {
        Ok(Self {
            sockets,
            namespaces,
            remotes,
            sources,
            connect_timeout,
            tls_h1: TlsConnector::from(crate::tls::target_client_config(&[b"http/1.1"])?),
            tls_h2: TlsConnector::from(crate::tls::target_client_config(&[b"h2"])?),
        })
    }

    /// TLS over `stream` toward an HTTPS target, offering h2 or http/1.1.
    pub async fn tls(&self, stream: Conn, target: SocketAddr, h2: bool) -> Result<Stream, Error> {
        let tls = if h2 { &self.tls_h2 } else { &self.tls_h1 };
        let name = ServerName::IpAddress(target.ip().into());
        match tokio::time::timeout(self.connect_timeout, tls.connect(name, stream)).await {
            Ok(Ok(s)) => Ok(Stream::Tls(Box::new(s))),
            Ok(Err(error)) => Err(Error::Tls { target, error }),
            Err(_) => Err(Error::ConnectTimeout(target)),
        }
    }

    /// Connects to `target` in namespace `ns`: from the next pool address
    /// when the namespace is here, through the hosting node's tunnel when
    /// `ns` is a remote VPC's id (see [`REMOTE`]).
    pub async fn connect(&self, ns: NsId, target: SocketAddr) -> Result<Conn, Error> {
        if ns & REMOTE != 0 {
            let remote = self
                .remotes
                .load()
                .get(&ns)
                .cloned()
                .ok_or(Error::NamespaceGone(ns))?;
            let Some(peer) = &remote.peer else {
                return Err(Error::NoPeer {
                    vpc: remote.vpc,
                    node: remote.node,
                });
            };
            let stream = peer.open(&remote.vpc, target).await?;
            return Ok(Conn::Tunnel(Box::new(stream)));
        }
        self.connect_local(ns, target).await.map(Conn::Tcp)
    }

    /// Connects to `target` in namespace `ns` of this node, from the next
    /// pool address.
    pub async fn connect_local(&self, ns: NsId, target: SocketAddr) -> Result<TcpStream, Error> {
        let (socket, source_addr) = match self.sockets {
            Sockets::InTargetNamespace => self.pool_socket(ns, target)?,
            Sockets::Here => {
                let unspecified = match target {
                    SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                };
                let socket = Socket::new(
                    Domain::for_address(target),
                    Type::STREAM,
                    Some(Protocol::TCP),
                )
                .map_err(|error| Error::Connect {
                    target,
                    source_addr: unspecified,
                    error,
                })?;
                (socket, unspecified)
            }
        };
        let io = |error| Error::Connect {
            target,
            source_addr,
            error,
        };
        socket.set_nonblocking(true).map_err(io)?;
        socket.set_nodelay(true).map_err(io)?;
        let socket = TcpSocket::from_std_stream(std::net::TcpStream::from(socket));
        match tokio::time::timeout(self.connect_timeout, socket.connect(target)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(io(e)),
            Err(_) => Err(Error::ConnectTimeout(target)),
        }
    }

    /// A socket made in namespace `ns`, bound to the next pool address (its
    /// IPv6 twin for an IPv6 target).
    fn pool_socket(&self, ns: NsId, target: SocketAddr) -> Result<(Socket, IpAddr), Error> {
        let netns = self
            .namespaces
            .load()
            .get(&ns)
            .cloned()
            .ok_or(Error::NamespaceGone(ns))?;
        let v4 = self.sources.next();
        let source_addr = match target {
            SocketAddr::V4(_) => IpAddr::V4(v4),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(latticed_common::addresses::v6(
                u32::from(v4),
            ))),
        };
        let io = |error| Error::Connect {
            target,
            source_addr,
            error,
        };
        let socket = netns
            .enter(|| {
                Socket::new(
                    Domain::for_address(target),
                    Type::STREAM,
                    Some(Protocol::TCP),
                )
            })?
            .map_err(io)?;
        bind_address_no_port(&socket).map_err(io)?;
        if target.is_ipv6() {
            // The namespace's local route makes the /64 ours, but IPv6
            // binds only addresses configured on a device.
            socket.set_freebind_ipv6(true).map_err(io)?;
        }
        socket
            .bind(&SocketAddr::new(source_addr, 0).into())
            .map_err(io)?;
        Ok((socket, source_addr))
    }
}

impl crate::tunnel::server::ConnectLocal for NsConnector {
    fn connect_local(
        &self,
        ns: NsId,
        target: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = Result<TcpStream, String>> + Send + '_>> {
        Box::pin(async move {
            NsConnector::connect_local(self, ns, target)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Lets the kernel pick the source port at connect() time, so the same
/// (source address, port) pair can serve different targets: without it each
/// bind() reserves a port for every destination.
fn bind_address_no_port(socket: &Socket) -> std::io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: valid fd, option value points at a live c_int of the given size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            std::ptr::from_ref(&one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl tower_service::Service<Uri> for NsConnector {
    type Response = TokioIo<Stream>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (ns, target) =
                parse_authority(&uri).ok_or_else(|| Error::BadAuthority(uri.to_string()))?;
            let stream = this.connect(ns, target).await?;
            let stream = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
                this.tls(stream, target, false).await?
            } else {
                Stream::Plain(stream)
            };
            Ok(TokioIo::new(stream))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_round_trips() {
        let addr: SocketAddr = "10.0.16.10:8080".parse().unwrap();
        let a = authority_for(42, addr);
        assert_eq!(a.as_str(), "n42-10-0-16-10:8080");
        let uri: Uri = format!("http://{a}/x").parse().unwrap();
        assert_eq!(parse_authority(&uri), Some((42, addr)));
    }

    #[test]
    fn foreign_authorities_are_rejected() {
        for u in [
            "http://example.com:80/",
            "http://n1-10-0-0:80/",
            "http://n1-10-0-0-1-2:80/",
            "http://n1-10-0-0-1/",
        ] {
            assert_eq!(parse_authority(&u.parse().unwrap()), None, "{u}");
        }
    }

    #[test]
    fn source_pool_rotates_within_bounds() {
        let p = SourcePool::new(
            "169.254.171.192".parse().unwrap(),
            "169.254.171.194".parse().unwrap(),
        );
        let got: Vec<_> = (0..4).map(|_| p.next().octets()[3]).collect();
        assert_eq!(got, [192, 193, 194, 192]);
    }
}
