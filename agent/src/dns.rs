//! The resolver latticed runs inside each associated namespace.
//!
//! Service names (`{name}-{id}.{suffix}` and custom domain names) must
//! resolve to VIPs through the ordinary resolver path of the tenant's
//! namespace: `getent hosts`, curl, Python's `socket`. latticed answers on
//! UDP and TCP `169.254.171.253:53` *inside* the namespace (the address is
//! local there through the `local 169.254.171.0/24` route), and points the
//! namespace's resolver at it by writing `/etc/netns/NS/resolv.conf`, the
//! file `ip netns exec` bind-mounts over `/etc/resolv.conf`.
//!
//! - Names of services reachable from the namespace: an A record (TTL 60);
//!   other record types get an empty answer (NOERROR, no records).
//! - Other names under the service DNS suffix: NXDOMAIN.
//! - Everything else is forwarded, from inside the namespace, to the
//!   nameservers the namespace used before (its own resolv.conf, else the
//!   host's), over the transport the query came by, so tenants keep their
//!   DNS. With none, NXDOMAIN.
//!
//! Both transports answer through one definition (`Server::handle`). A
//! query with EDNS0 gets an answer with an OPT record (BADVERS for an EDNS
//! version past 0); a UDP answer larger than the client can take (512
//! bytes, or its EDNS0 payload size up to 4096) is sent truncated, TC set,
//! so the client asks again over TCP.
//!
//! The original resolv.conf is saved under `RUN_DIR/resolv/` and put back
//! when the namespace stops being associated, at shutdown, and by the
//! clean-up after a crash.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;
use hickory_proto::{
    op::{Message, MessageType, ResponseCode},
    rr::{
        rdata::{A, AAAA},
        RData, Record, RecordType,
    },
};
use latticed_proxy::NetNs;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream, UdpSocket},
};

/// Where the resolver answers inside each namespace.
pub const DNS_ADDR: Ipv4Addr = Ipv4Addr::from_bits(latticed_common::addresses::RESOLVER);
/// Its IPv6 twin, fd00:ec2:80::fd, where the namespace has IPv6.
pub const DNS_ADDR6: Ipv6Addr = Ipv6Addr::from_octets(latticed_common::addresses::v6(
    latticed_common::addresses::RESOLVER,
));

/// A UDP socket and a TCP listener on `at`, non-blocking, made in the
/// calling thread's namespace. An IPv6 address is bound with
/// IPV6_FREEBIND: the namespace's local route makes the whole /64 ours,
/// but IPv6 (unlike IPv4) binds only addresses configured on a device.
fn bind_pair(at: SocketAddr) -> std::io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    let domain = Domain::for_address(at);
    let udp = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    let tcp = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    for s in [&udp, &tcp] {
        s.set_nonblocking(true)?;
        if at.is_ipv6() {
            s.set_only_v6(true)?;
            s.set_freebind_ipv6(true)?;
        }
        s.bind(&at.into())?;
    }
    tcp.listen(128)?;
    Ok((udp.into(), tcp.into()))
}
/// TTL of answers, seconds.
const TTL: u32 = 60;
/// Where `ip netns exec` finds per-namespace files.
pub const ETC_NETNS: &str = "/etc/netns";

/// The UDP payload size latticed advertises in its EDNS0 answers (the
/// size DNS flag day 2020 settled on: no fragmentation).
const EDNS_PAYLOAD: u16 = 1232;
/// The most a UDP client may ask for: larger answers go over TCP.
const MAX_UDP: usize = 4096;
/// TCP connections served at once, per namespace.
const MAX_TCP: usize = 32;
/// A TCP client with no query on the way for this long is closed, and a
/// query must arrive whole within it.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// How long an upstream nameserver has to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// Names reachable from one namespace: lowercase, no trailing dot.
pub type Names = HashMap<String, Ipv4Addr>;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Entering the namespace failed.
    #[error(transparent)]
    Netns(#[from] latticed_proxy::netns::Error),
    /// Socket or file work failed.
    #[error("namespace {namespace:?}: {what}: {source}")]
    Io {
        /// Namespace.
        namespace: String,
        /// What was attempted.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// The resolver of one namespace; dropping it stops answering, and
/// [`NsResolver::stop`] also puts the namespace's resolv.conf back.
#[derive(Debug)]
pub struct NsResolver {
    names: Arc<ArcSwap<Names>>,
    /// The UDP and TCP servers of each address; aborting a TCP one ends
    /// its connections.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    resolv: ResolvConf,
}

impl NsResolver {
    /// Starts answering in `ns` and points its resolver at latticed.
    pub fn start(ns: &Arc<NetNs>, run_dir: &Path, suffixes: &[&str]) -> Result<Self, Error> {
        let name = ns.name().to_owned();
        let io = |what: &str| {
            let namespace = name.clone();
            let what = what.to_owned();
            move |source| Error::Io {
                namespace,
                what,
                source,
            }
        };
        let port = latticed_common::addresses::RESOLVER_PORT;
        let (udp, tcp) = ns
            .enter(|| bind_pair(SocketAddr::V4(SocketAddrV4::new(DNS_ADDR, port))))?
            .map_err(io(&format!("binding {DNS_ADDR}:53")))?;
        let mut sockets = vec![(udp, tcp)];
        // The IPv6 twin, where the namespace has IPv6.
        match ns.enter(|| bind_pair(SocketAddr::new(DNS_ADDR6.into(), port)))? {
            Ok(pair) => sockets.push(pair),
            Err(e) => {
                tracing::debug!(namespace = %name, error = %e, "no IPv6 resolver address");
            }
        }
        let resolv = ResolvConf::install(&name, run_dir).map_err(io("writing resolv.conf"))?;
        let upstream = resolv.upstream.clone();
        let names: Arc<ArcSwap<Names>> = Arc::default();
        let server = Server::new(
            Arc::clone(ns),
            Arc::clone(&names),
            suffixes
                .iter()
                .map(|s| format!(".{}", s.trim_matches('.').to_ascii_lowercase()))
                .collect(),
            upstream,
        );
        let server = Arc::new(server);
        let mut tasks = Vec::new();
        let mut addresses = Vec::new();
        for (udp, tcp) in sockets {
            addresses.extend(udp.local_addr().ok().map(|a| a.ip()));
            let udp = UdpSocket::from_std(udp).map_err(io("DNS socket"))?;
            let tcp = TcpListener::from_std(tcp).map_err(io("DNS TCP socket"))?;
            tasks.push(tokio::spawn(Arc::clone(&server).run(udp)));
            tasks.push(tokio::spawn(Arc::clone(&server).run_tcp(tcp)));
        }
        tracing::info!(namespace = %name, ?addresses, "resolver answering (UDP and TCP)");
        Ok(Self {
            names,
            tasks,
            resolv,
        })
    }

    /// Replaces the names this namespace resolves.
    pub fn set_names(&self, names: Names) {
        self.names.store(Arc::new(names));
    }

    /// Stops answering and restores the namespace's resolv.conf.
    pub fn stop(self) {
        self.resolv.restore();
    }
}

impl Drop for NsResolver {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct Server {
    ns: Arc<NetNs>,
    names: Arc<ArcSwap<Names>>,
    /// Latticed's own suffixes (services', resources'): an unknown name
    /// under one is NXDOMAIN, never forwarded.
    suffixes: Vec<String>,
    upstream: Vec<SocketAddr>,
    /// Forwarded queries in flight: each holds a socket and a task until
    /// its answer or its time-out, so a client flooding queries for names
    /// a silent upstream never answers could take every descriptor. Past
    /// this, forwarded queries get SERVFAIL at once; latticed's own names
    /// are answered inline whatever the load.
    forwards: Arc<tokio::sync::Semaphore>,
}

/// For the fuzz target (`fuzz/`): one query, as received from a client,
/// through the resolver's own answering. The answer must be a message a
/// client can parse, with the query's id.
#[cfg(fuzzing)]
pub fn fuzz_query(query: &[u8]) {
    let Ok(ns) = NetNs::open(Path::new("/proc/self/ns"), "net") else {
        return;
    };
    let server = Server::new(
        Arc::new(ns),
        Arc::new(ArcSwap::from_pointee(Names::from([(
            "svc1-0abc.vpc-lattice-svcs.us-east-1.on.aws".to_owned(),
            Ipv4Addr::new(169, 254, 171, 1),
        )]))),
        vec![".vpc-lattice-svcs.us-east-1.on.aws".into()],
        vec![SocketAddr::from(([127, 0, 0, 1], 9))],
    );
    match server.handle(query) {
        Handled::Local(Some(answer)) => {
            let parsed = Message::from_vec(&answer);
            assert!(parsed.is_ok(), "unparsable answer to {query:?}");
            if let (Ok(a), Ok(q)) = (parsed, Message::from_vec(query)) {
                assert_eq!(a.metadata.id, q.metadata.id);
            }
        }
        Handled::Local(None) | Handled::Forward(_) => {}
    }
}

/// Forwarded queries in flight at once, per namespace.
const MAX_FORWARDS: usize = 64;

/// What the resolver does with a query.
enum Handled {
    /// Answer (or ignore, `None`) without asking anyone.
    Local(Option<Vec<u8>>),
    /// Ask the upstream nameservers.
    Forward(Message),
}

impl Server {
    fn new(
        ns: Arc<NetNs>,
        names: Arc<ArcSwap<Names>>,
        suffixes: Vec<String>,
        upstream: Vec<SocketAddr>,
    ) -> Self {
        Self {
            ns,
            names,
            suffixes,
            upstream,
            forwards: Arc::new(tokio::sync::Semaphore::new(MAX_FORWARDS)),
        }
    }

    async fn run(self: Arc<Self>, socket: UdpSocket) {
        let socket = Arc::new(socket);
        let mut buf = vec![0u8; MAX_UDP];
        loop {
            let (n, peer) = match socket.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS receive");
                    continue;
                }
            };
            let msg = match self.handle(&buf[..n]) {
                Handled::Local(Some(answer)) => {
                    let _ = socket.send_to(&answer, peer).await;
                    continue;
                }
                Handled::Local(None) => continue,
                Handled::Forward(msg) => msg,
            };
            let permit = match self.forward_slot(&msg) {
                Ok(permit) => permit,
                Err(busy) => {
                    if let Some(busy) = busy {
                        let _ = socket.send_to(&busy, peer).await;
                    }
                    continue;
                }
            };
            let query = buf[..n].to_vec();
            let (this, socket) = (Arc::clone(&self), Arc::clone(&socket));
            tokio::spawn(async move {
                let answer = this.forwarded(&query, &msg, Transport::Udp).await;
                drop(permit);
                if let Some(answer) = answer {
                    let _ = socket.send_to(&answer, peer).await;
                }
            });
        }
    }

    /// Serves DNS over TCP (RFC 7766): each message after its two-byte
    /// length, several per connection, answered in order. Connections are
    /// bounded in number and in idle time; they end with the server.
    async fn run_tcp(self: Arc<Self>, listener: TcpListener) {
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_TCP));
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                Some(_) = connections.join_next() => continue,
            };
            let (stream, _) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS TCP accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Past the limit, new connections are closed at once.
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                continue;
            };
            let this = Arc::clone(&self);
            connections.spawn(async move {
                this.serve_tcp(stream).await;
                drop(slot);
            });
        }
    }

    async fn serve_tcp(&self, mut stream: TcpStream) {
        loop {
            let Ok(Some(query)) = tokio::time::timeout(TCP_IDLE, read_framed(&mut stream)).await
            else {
                return;
            };
            let answer = match self.handle(&query) {
                Handled::Local(Some(a)) => a,
                Handled::Local(None) => return,
                Handled::Forward(msg) => {
                    let answer = match self.forward_slot(&msg) {
                        Ok(_permit) => self.forwarded(&query, &msg, Transport::Tcp).await,
                        Err(busy) => busy,
                    };
                    let Some(a) = answer else { return };
                    a
                }
            };
            if write_framed(&mut stream, &answer).await.is_err() {
                return;
            }
        }
    }

    /// A slot for one forwarded query, held until its answer or time-out;
    /// with all [`MAX_FORWARDS`] taken, the SERVFAIL to answer at once.
    fn forward_slot(
        &self,
        msg: &Message,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, Option<Vec<u8>>> {
        Arc::clone(&self.forwards)
            .try_acquire_owned()
            .map_err(|_| reply(msg, ResponseCode::ServFail, None))
    }

    /// The answer to `query`, asking upstream if it is not ours.
    #[cfg(test)]
    async fn answer(&self, query: &[u8]) -> Option<Vec<u8>> {
        match self.handle(query) {
            Handled::Local(a) => a,
            Handled::Forward(msg) => self.forwarded(query, &msg, Transport::Udp).await,
        }
    }

    /// Answers what latticed knows (its names, NXDOMAIN in its suffix);
    /// the rest is to be forwarded.
    fn handle(&self, query: &[u8]) -> Handled {
        let Ok(msg) = Message::from_vec(query) else {
            return Handled::Local(None);
        };
        if msg.metadata.message_type != MessageType::Query {
            return Handled::Local(None);
        }
        // EDNS versions past 0 do not exist yet; RFC 6891 6.1.3 answers
        // them BADVERS (with an OPT record of the version we speak).
        if msg.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return Handled::Local(reply(&msg, ResponseCode::BADVERS, None));
        }
        let Some(q) = msg.queries.first() else {
            return Handled::Local(reply(&msg, ResponseCode::FormErr, None));
        };
        let name = q
            .name()
            .to_ascii()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let known = self.names.load().get(&name).copied();
        Handled::Local(match known {
            Some(vip) if q.query_type() == RecordType::A => {
                let record = Record::from_rdata(q.name().clone(), TTL, RData::A(A(vip)));
                reply(&msg, ResponseCode::NoError, Some(record))
            }
            // The VIP's IPv6 twin.
            Some(vip) if q.query_type() == RecordType::AAAA => {
                let twin = Ipv6Addr::from(latticed_common::addresses::v6(u32::from(vip)));
                let record = Record::from_rdata(q.name().clone(), TTL, RData::AAAA(AAAA(twin)));
                reply(&msg, ResponseCode::NoError, Some(record))
            }
            Some(_) => reply(&msg, ResponseCode::NoError, None),
            None if self.upstream.is_empty()
                || self
                    .suffixes
                    .iter()
                    .any(|s| format!(".{name}").ends_with(s.as_str())) =>
            {
                reply(&msg, ResponseCode::NXDomain, None)
            }
            None => return Handled::Forward(msg),
        })
    }

    /// The upstream's answer to `query` (parsed as `msg`), asked over
    /// `transport`, or SERVFAIL. Over UDP, an answer larger than the client
    /// can take goes back truncated.
    async fn forwarded(
        &self,
        query: &[u8],
        msg: &Message,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        let answer = match transport {
            Transport::Udp => self.forward_udp(query, udp_limit(msg)).await,
            Transport::Tcp => self.forward_tcp(query).await,
        };
        match answer {
            Some(Upstream::Answer(a)) => Some(a),
            Some(Upstream::TooLarge) => truncated(msg),
            None => reply(msg, ResponseCode::ServFail, None),
        }
    }

    /// Asks the namespace's previous nameservers over UDP, from inside the
    /// namespace; an answer past `limit` bytes is `TooLarge`.
    async fn forward_udp(&self, query: &[u8], limit: usize) -> Option<Upstream> {
        let socket = self
            .ns
            .enter(|| std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))
            .ok()?
            .ok()?;
        socket.set_nonblocking(true).ok()?;
        let socket = UdpSocket::from_std(socket).ok()?;
        // One byte more than the client takes tells a larger answer.
        let mut buf = vec![0u8; limit + 1];
        for server in &self.upstream {
            if socket.send_to(query, server).await.is_err() {
                continue;
            }
            if let Ok(Ok((n, from))) =
                tokio::time::timeout(UPSTREAM_TIMEOUT, socket.recv_from(&mut buf)).await
            {
                if from == *server {
                    return Some(if n > limit {
                        Upstream::TooLarge
                    } else {
                        Upstream::Answer(buf[..n].to_vec())
                    });
                }
            }
        }
        None
    }

    /// Asks the namespace's previous nameservers over TCP, from inside the
    /// namespace.
    async fn forward_tcp(&self, query: &[u8]) -> Option<Upstream> {
        for server in &self.upstream {
            let asked = async {
                let domain = if server.is_ipv4() {
                    Domain::IPV4
                } else {
                    Domain::IPV6
                };
                let socket = self
                    .ns
                    .enter(|| Socket::new(domain, Type::STREAM, Some(Protocol::TCP)))
                    .ok()?
                    .ok()?;
                socket.set_nonblocking(true).ok()?;
                let socket =
                    tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(socket));
                let mut stream = socket.connect(*server).await.ok()?;
                write_framed(&mut stream, query).await.ok()?;
                read_framed(&mut stream).await
            };
            if let Ok(Some(answer)) = tokio::time::timeout(UPSTREAM_TIMEOUT, asked).await {
                return Some(Upstream::Answer(answer));
            }
        }
        None
    }
}

/// How a query came, and so how it is forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

/// An upstream nameserver's answer.
enum Upstream {
    Answer(Vec<u8>),
    /// Larger than the UDP client can take.
    TooLarge,
}

/// The most a UDP answer to `query` may take: 512 bytes, or what its
/// EDNS0 record offers, up to [`MAX_UDP`].
fn udp_limit(query: &Message) -> usize {
    usize::from(query.max_payload()).clamp(512, MAX_UDP)
}

/// Latticed's own answer to `query`. A query with EDNS0 gets an OPT
/// record back (RFC 6891: a responder that understands it must).
fn response(query: &Message, code: ResponseCode, answer: Option<Record>) -> Message {
    let mut m = Message::response(query.metadata.id, query.metadata.op_code);
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.authoritative = answer.is_some() || code == ResponseCode::NXDomain;
    m.metadata.response_code = code;
    m.add_queries(query.queries.iter().cloned());
    if let Some(a) = answer {
        m.add_answer(a);
    }
    if query.edns.is_some() {
        let mut edns = hickory_proto::op::Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        m.set_edns(edns);
    }
    m
}

/// [`response`], as bytes.
fn reply(query: &Message, code: ResponseCode, answer: Option<Record>) -> Option<Vec<u8>> {
    response(query, code, answer).to_vec().ok()
}

/// An answer too large for UDP: the question alone, TC set, so the client
/// asks again over TCP (RFC 1035 4.2.1).
fn truncated(query: &Message) -> Option<Vec<u8>> {
    let mut m = response(query, ResponseCode::NoError, None);
    m.metadata.truncation = true;
    m.to_vec().ok()
}

/// Reads one DNS message over TCP: its two-byte length, then the message.
/// `None` at the end of the stream or on an error.
async fn read_framed<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Option<Vec<u8>> {
    let len = stream.read_u16().await.ok()?;
    let mut message = vec![0u8; usize::from(len)];
    stream.read_exact(&mut message).await.ok()?;
    Some(message)
}

/// Writes one DNS message over TCP, after its two-byte length, in one
/// write.
async fn write_framed<S: tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    message: &[u8],
) -> std::io::Result<()> {
    let len = u16::try_from(message.len())
        .map_err(|_| std::io::Error::other("a DNS message past 65535 bytes"))?;
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    stream.write_all(&framed).await
}

/// The namespace's resolv.conf, replaced while latticed serves it.
#[derive(Debug)]
struct ResolvConf {
    path: PathBuf,
    backup: PathBuf,
    upstream: Vec<SocketAddr>,
}

impl ResolvConf {
    fn install(ns: &str, run_dir: &Path) -> std::io::Result<Self> {
        let dir = Path::new(ETC_NETNS).join(ns);
        let path = dir.join("resolv.conf");
        let backups = run_dir.join("resolv");
        std::fs::create_dir_all(&backups)?;
        let backup = backups.join(ns);
        // A backup left by a crash is the real original; keep it.
        if !backup.exists() {
            let original = match std::fs::read(&path) {
                Ok(b) => {
                    let mut saved = b"present\n".to_vec();
                    saved.extend_from_slice(&b);
                    saved
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => b"absent\n".to_vec(),
                Err(e) => return Err(e),
            };
            std::fs::write(&backup, original)?;
        }
        let saved = std::fs::read_to_string(&backup)?;
        let previous = match saved.split_once('\n') {
            Some(("present", text)) => text.to_owned(),
            _ => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        };
        let upstream = nameservers(&previous);
        let mut text = format!(
            "# Written by latticed: service names resolve through {DNS_ADDR} (and\n# {DNS_ADDR6}), which forward other names to {upstream:?}. Restored when\n# latticed stops.\nnameserver {DNS_ADDR}\nnameserver {DNS_ADDR6}\n"
        );
        for line in previous.lines() {
            let l = line.trim_start();
            if l.starts_with("search") || l.starts_with("domain") || l.starts_with("options") {
                text.push_str(line);
                text.push('\n');
            }
        }
        std::fs::create_dir_all(&dir)?;
        std::fs::write(&path, text)?;
        Ok(Self {
            path,
            backup,
            upstream,
        })
    }

    fn restore(&self) {
        if let Err(e) = restore(&self.path, &self.backup) {
            tracing::warn!(path = %self.path.display(), error = %e, "restoring resolv.conf");
        }
    }
}

/// Every nameserver of resolv.conf text, in order, latticed's own
/// included.
pub(crate) fn all_nameservers(resolv: &str) -> impl Iterator<Item = SocketAddr> + '_ {
    resolv
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
}

/// The nameservers of resolv.conf text, but latticed's own.
pub(crate) fn nameservers(resolv: &str) -> Vec<SocketAddr> {
    all_nameservers(resolv)
        .filter(|a| {
            a.ip() != std::net::IpAddr::V4(DNS_ADDR) && a.ip() != std::net::IpAddr::V6(DNS_ADDR6)
        })
        .collect()
}

fn restore(path: &Path, backup: &Path) -> std::io::Result<()> {
    let saved = std::fs::read_to_string(backup)?;
    match saved.split_once('\n') {
        Some(("present", text)) => std::fs::write(path, text)?,
        _ => {
            let _ = std::fs::remove_file(path);
            // Remove the directory only if latticed's file was all it held.
            if let Some(dir) = path.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
    std::fs::remove_file(backup)
}

/// Puts back every resolv.conf a previous run left replaced.
pub fn restore_leftovers(run_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(run_dir.join("resolv")) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.filter_map(Result::ok) {
        let ns = e.file_name();
        let path = Path::new(ETC_NETNS).join(&ns).join("resolv.conf");
        match restore(&path, &e.path()) {
            Ok(()) => n += 1,
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "restoring resolv.conf")
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_are_read_and_ours_skipped() {
        let got = nameservers(
            "# c\nnameserver 10.0.0.2\nnameserver 169.254.171.253\nsearch x\nnameserver ::1\n",
        );
        assert_eq!(
            got,
            vec![
                "10.0.0.2:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }

    fn test_server(upstream: Vec<SocketAddr>) -> Server {
        Server::new(
            Arc::new(NetNs::open(Path::new("/proc/self/ns"), "net").unwrap()),
            Arc::new(ArcSwap::from_pointee(Names::from([(
                "svc1-0abc.vpc-lattice-svcs.us-east-1.on.aws".to_owned(),
                Ipv4Addr::new(169, 254, 171, 1),
            )]))),
            vec![
                ".vpc-lattice-svcs.us-east-1.on.aws".into(),
                ".vpc-lattice-rsc.us-east-1.on.aws".into(),
            ],
            upstream,
        )
    }

    fn ask(name: &str, ty: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 7;
        m.add_query(hickory_proto::op::Query::query(name.parse().unwrap(), ty));
        m.to_vec().unwrap()
    }

    /// A flood of queries toward a nameserver that never answers holds at
    /// most MAX_FORWARDS sockets; the rest get SERVFAIL at once, and
    /// latticed's own names are answered all along. Forwarding enters the
    /// namespace (CAP_SYS_ADMIN), hence `privileged_`.
    #[tokio::test]
    async fn privileged_a_flood_toward_a_silent_upstream_is_bounded() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = test_server(vec![silent.local_addr().unwrap()]);
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let listener = UdpSocket::from_std({
            sock.set_nonblocking(true).unwrap();
            sock
        })
        .unwrap();
        tokio::spawn(Arc::new(server).run(listener));
        let client = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
        let before = fds();
        // Answers are read as they come: 500 would overflow the client's
        // receive buffer.
        let reader = {
            let client = Arc::clone(&client);
            tokio::spawn(async move {
                let mut servfail = 0;
                let mut buf = [0u8; 512];
                while let Ok(Ok((n, _))) =
                    tokio::time::timeout(Duration::from_millis(500), client.recv_from(&mut buf))
                        .await
                {
                    let m = Message::from_vec(&buf[..n]).unwrap();
                    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
                    servfail += 1;
                }
                servfail
            })
        };
        for i in 0..500 {
            let q = ask(&format!("host{i}.example.com."), RecordType::A);
            client.send_to(&q, addr).await.unwrap();
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let in_flight = fds();
        let servfail = reader.await.unwrap();
        assert_eq!(
            servfail,
            500 - MAX_FORWARDS,
            "all but the ones waiting for the silent upstream"
        );
        assert!(
            in_flight <= before + MAX_FORWARDS + 2,
            "{before} -> {in_flight}"
        );
        let mut buf = [0u8; 512];
        client
            .send_to(
                &ask(
                    "svc1-0abc.vpc-lattice-svcs.us-east-1.on.aws.",
                    RecordType::A,
                ),
                addr,
            )
            .await
            .unwrap();
        let (n, _) = tokio::time::timeout(Duration::from_secs(1), client.recv_from(&mut buf))
            .await
            .expect("our names are answered during the flood")
            .unwrap();
        assert_eq!(Message::from_vec(&buf[..n]).unwrap().answers.len(), 1);
    }

    #[test]
    fn unknown_resource_names_are_answered_here_and_other_names_forwarded() {
        // An upstream exists, so only latticed's suffixes stay here.
        let server = test_server(vec![SocketAddr::from(([127, 0, 0, 1], 9))]);
        let here = |name: &str| {
            let q = ask(name, RecordType::A);
            match server.handle(&q) {
                Handled::Local(Some(a)) => {
                    Some(Message::from_vec(&a).unwrap().metadata.response_code)
                }
                Handled::Local(None) => panic!("no answer to {name}"),
                Handled::Forward(_) => None,
            }
        };
        assert_eq!(
            here("snra-0123.rcfg-0456.abcdef0.vpc-lattice-rsc.us-east-1.on.aws."),
            Some(ResponseCode::NXDomain)
        );
        assert_eq!(
            here("svc9-0abc.vpc-lattice-svcs.us-east-1.on.aws."),
            Some(ResponseCode::NXDomain)
        );
        assert_eq!(here("db.tenant.example."), None, "forwarded");
    }

    #[tokio::test]
    async fn known_names_answer_and_unknown_ones_in_the_suffix_do_not() {
        let server = test_server(vec![]);
        let a = server
            .answer(&ask(
                "SVC1-0abc.vpc-lattice-svcs.us-east-1.on.aws.",
                RecordType::A,
            ))
            .await
            .unwrap();
        let a = Message::from_vec(&a).unwrap();
        assert_eq!(a.metadata.id, 7);
        assert_eq!(a.answers.len(), 1);
        assert_eq!(
            a.answers[0].data,
            RData::A(A(Ipv4Addr::new(169, 254, 171, 1)))
        );
        let nx = server
            .answer(&ask(
                "svc9-0abc.vpc-lattice-svcs.us-east-1.on.aws.",
                RecordType::A,
            ))
            .await
            .unwrap();
        assert_eq!(
            Message::from_vec(&nx).unwrap().metadata.response_code,
            ResponseCode::NXDomain
        );
        let aaaa = server
            .answer(&ask(
                "svc1-0abc.vpc-lattice-svcs.us-east-1.on.aws.",
                RecordType::AAAA,
            ))
            .await
            .unwrap();
        let aaaa = Message::from_vec(&aaaa).unwrap();
        assert_eq!(aaaa.metadata.response_code, ResponseCode::NoError);
        assert_eq!(
            aaaa.answers[0].data,
            RData::AAAA(AAAA("fd00:ec2:80::1".parse().unwrap())),
            "AAAA is the IPv6 twin"
        );
    }

    /// A query with EDNS0 `payload`.
    fn ask_edns(name: &str, ty: RecordType, payload: u16) -> Vec<u8> {
        let mut m = Message::from_vec(&ask(name, ty)).unwrap();
        let mut edns = hickory_proto::op::Edns::new();
        edns.set_max_payload(payload);
        m.set_edns(edns);
        m.to_vec().unwrap()
    }

    /// Serves `server` over TCP on a loopback port; its address.
    async fn serve_tcp(server: Server) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        tokio::spawn(Arc::new(server).run_tcp(listener));
        at
    }

    const SVC1: &str = "svc1-0abc.vpc-lattice-svcs.us-east-1.on.aws.";

    /// Over TCP the resolver answers as over UDP (one `handle` serves
    /// both): several queries on one connection, sent at once, answered
    /// in order, each after its length.
    #[tokio::test]
    async fn tcp_answers_are_the_udp_answers_in_order_on_one_connection() {
        let udp = test_server(vec![]);
        let at = serve_tcp(test_server(vec![])).await;
        let queries = [
            ask(SVC1, RecordType::A),
            ask(SVC1, RecordType::MX),
            ask(SVC1, RecordType::TXT),
            ask(
                "nope-0abc.vpc-lattice-svcs.us-east-1.on.aws.",
                RecordType::A,
            ),
            ask_edns(SVC1, RecordType::A, 4096),
        ];
        let mut stream = TcpStream::connect(at).await.unwrap();
        let mut all = Vec::new();
        for q in &queries {
            all.extend_from_slice(&u16::try_from(q.len()).unwrap().to_be_bytes());
            all.extend_from_slice(q);
        }
        stream.write_all(&all).await.unwrap();
        for q in &queries {
            let got = read_framed(&mut stream).await.expect("an answer per query");
            assert_eq!(Some(got), udp.answer(q).await);
        }
        let codes: Vec<(ResponseCode, usize)> = {
            let mut out = Vec::new();
            for q in &queries[1..4] {
                let a = Message::from_vec(&udp.answer(q).await.unwrap()).unwrap();
                out.push((a.metadata.response_code, a.answers.len()));
            }
            out
        };
        // Other types of a service name: NOERROR with no records.
        assert_eq!(
            codes,
            [
                (ResponseCode::NoError, 0),
                (ResponseCode::NoError, 0),
                (ResponseCode::NXDomain, 0)
            ]
        );
        // A message cut short ends the connection without an answer.
        stream.write_all(&[0, 40, 1, 2]).await.unwrap();
        stream.shutdown().await.unwrap();
        assert_eq!(read_framed(&mut stream).await, None);
    }

    /// EDNS0 is understood: a query with an OPT record gets one back
    /// (payload 1232); one without gets none.
    #[tokio::test]
    async fn edns_queries_get_an_opt_record_back() {
        let server = test_server(vec![]);
        let with = server
            .answer(&ask_edns(SVC1, RecordType::A, 4096))
            .await
            .unwrap();
        let with = Message::from_vec(&with).unwrap();
        assert_eq!(
            with.edns.as_ref().map(|e| e.max_payload()),
            Some(EDNS_PAYLOAD)
        );
        assert_eq!(with.answers.len(), 1);
        let without = server.answer(&ask(SVC1, RecordType::A)).await.unwrap();
        assert!(Message::from_vec(&without).unwrap().edns.is_none());
    }

    /// An EDNS version the resolver does not speak gets BADVERS, with an
    /// OPT record of version 0, whatever the name.
    #[tokio::test]
    async fn an_edns_version_past_0_is_badvers() {
        let server = test_server(vec![]);
        let mut q = Message::from_vec(&ask_edns(SVC1, RecordType::A, 1232)).unwrap();
        if let Some(e) = q.edns.as_mut() {
            e.set_version(1);
        }
        let a = server.answer(&q.to_vec().unwrap()).await.unwrap();
        let a = Message::from_vec(&a).unwrap();
        // Code 16 (hickory reads it back as BADSIG, which shares it).
        assert_eq!(u16::from(a.metadata.response_code), 16);
        assert_eq!(a.edns.as_ref().map(|e| e.version()), Some(0));
        assert!(a.answers.is_empty());
    }

    /// An upstream nameserver on loopback answering `answer` to anything,
    /// over UDP and TCP on one port.
    async fn big_upstream(answer: Vec<u8>) -> SocketAddr {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let at = udp.local_addr().unwrap();
            if let Ok(tcp) = TcpListener::bind(at).await {
                break (udp, tcp);
            }
        };
        let at = udp.local_addr().unwrap();
        let reply_to = |q: &[u8], answer: &[u8]| {
            let mut a = Message::from_vec(answer).unwrap();
            a.metadata.id = Message::from_vec(q).map_or(0, |m| m.metadata.id);
            a.to_vec().unwrap()
        };
        let for_udp = answer.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
                let _ = udp.send_to(&reply_to(&buf[..n], &for_udp), peer).await;
            }
        });
        tokio::spawn(async move {
            while let Ok((mut s, _)) = tcp.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    while let Some(q) = read_framed(&mut s).await {
                        let _ = write_framed(&mut s, &reply_to(&q, &answer)).await;
                    }
                });
            }
        });
        at
    }

    /// A forwarded answer larger than the UDP client takes comes back
    /// truncated (TC, no records), and whole over TCP; an EDNS0 client
    /// that offers room gets it whole over UDP. Forwarding enters the
    /// namespace (CAP_SYS_ADMIN), hence `privileged_`.
    #[tokio::test]
    async fn privileged_a_large_forwarded_answer_is_truncated_over_udp_and_whole_over_tcp() {
        let name = "big.example.com.";
        let mut big = Message::response(0, hickory_proto::op::OpCode::Query);
        big.add_query(hickory_proto::op::Query::query(
            name.parse().unwrap(),
            RecordType::A,
        ));
        for i in 0..100u8 {
            big.add_answer(Record::from_rdata(
                name.parse().unwrap(),
                60,
                RData::A(A(Ipv4Addr::new(10, 1, 0, i))),
            ));
        }
        let big = big.to_vec().unwrap();
        assert!(big.len() > 1500 && big.len() < 4096, "{}", big.len());
        let upstream = big_upstream(big.clone()).await;
        let server = test_server(vec![upstream]);
        let cut =
            Message::from_vec(&server.answer(&ask(name, RecordType::A)).await.unwrap()).unwrap();
        assert!(cut.metadata.truncation, "{cut:?}");
        assert!(cut.answers.is_empty());
        assert_eq!(cut.metadata.id, 7);
        let roomy = server
            .answer(&ask_edns(name, RecordType::A, 4096))
            .await
            .unwrap();
        assert_eq!(Message::from_vec(&roomy).unwrap().answers.len(), 100);

        let at = serve_tcp(test_server(vec![upstream])).await;
        let mut stream = TcpStream::connect(at).await.unwrap();
        write_framed(&mut stream, &ask(name, RecordType::A))
            .await
            .unwrap();
        let whole = Message::from_vec(&read_framed(&mut stream).await.unwrap()).unwrap();
        assert!(!whole.metadata.truncation);
        assert_eq!(whole.answers.len(), 100);
        assert_eq!(whole.metadata.id, 7);
    }
}
