//! The resolver latticed runs inside each associated namespace.
//!
//! Service names (`{name}-{id}.{suffix}` and custom domain names) must
//! resolve to VIPs through the ordinary resolver path of the tenant's
//! namespace: `getent hosts`, curl, Python's `socket`. latticed answers on
//! UDP `169.254.171.253:53` *inside* the namespace (the address is local
//! there through the `local 169.254.171.0/24` route), and points the
//! namespace's resolver at it by writing `/etc/netns/NS/resolv.conf`, the
//! file `ip netns exec` bind-mounts over `/etc/resolv.conf`.
//!
//! - Names of services reachable from the namespace: an A record (TTL 60);
//!   other record types get an empty answer (NODATA).
//! - Other names under the service DNS suffix: NXDOMAIN.
//! - Everything else is forwarded, from inside the namespace, to the
//!   nameservers the namespace used before (its own resolv.conf, else the
//!   host's), so tenants keep their DNS. With none, NXDOMAIN.
//!
//! The original resolv.conf is saved under `RUN_DIR/resolv/` and put back
//! when the namespace stops being associated, at shutdown, and by the
//! clean-up after a crash.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;
use hickory_proto::{
    op::{Message, MessageType, ResponseCode},
    rr::{rdata::A, RData, Record, RecordType},
};
use latticed_proxy::NetNs;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// Where the resolver answers inside each namespace.
pub const DNS_ADDR: Ipv4Addr = Ipv4Addr::from_bits(latticed_common::addresses::RESOLVER);
/// TTL of answers, seconds.
const TTL: u32 = 60;
/// Where `ip netns exec` finds per-namespace files.
pub const ETC_NETNS: &str = "/etc/netns";

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
    task: tokio::task::JoinHandle<()>,
    resolv: ResolvConf,
}

impl NsResolver {
    /// Starts answering in `ns` and points its resolver at latticed.
    pub fn start(ns: &Arc<NetNs>, run_dir: &Path, suffix: &str) -> Result<Self, Error> {
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
        let socket = ns
            .enter(|| Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)))?
            .map_err(io("creating the DNS socket"))?;
        socket.set_nonblocking(true).map_err(io("DNS socket"))?;
        socket
            .bind(&SocketAddr::V4(SocketAddrV4::new(DNS_ADDR, 53)).into())
            .map_err(io(&format!("binding {DNS_ADDR}:53")))?;
        let socket = UdpSocket::from_std(socket.into()).map_err(io("DNS socket"))?;
        let resolv = ResolvConf::install(&name, run_dir).map_err(io("writing resolv.conf"))?;
        let upstream = resolv.upstream.clone();
        let names: Arc<ArcSwap<Names>> = Arc::default();
        let server = Server::new(
            Arc::clone(ns),
            Arc::clone(&names),
            format!(".{}", suffix.trim_matches('.').to_ascii_lowercase()),
            upstream,
        );
        let task = tokio::spawn(server.run(socket));
        tracing::info!(namespace = %name, address = %DNS_ADDR, "resolver answering");
        Ok(Self {
            names,
            task,
            resolv,
        })
    }

    /// Replaces the names this namespace resolves.
    pub fn set_names(&self, names: Names) {
        self.names.store(Arc::new(names));
    }

    /// Stops answering and restores the namespace's resolv.conf.
    pub fn stop(self) {
        self.task.abort();
        self.resolv.restore();
    }
}

struct Server {
    ns: Arc<NetNs>,
    names: Arc<ArcSwap<Names>>,
    suffix: String,
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
        ".vpc-lattice-svcs.us-east-1.on.aws".into(),
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
        suffix: String,
        upstream: Vec<SocketAddr>,
    ) -> Self {
        Self {
            ns,
            names,
            suffix,
            upstream,
            forwards: Arc::new(tokio::sync::Semaphore::new(MAX_FORWARDS)),
        }
    }

    async fn run(self, socket: UdpSocket) {
        let socket = Arc::new(socket);
        let this = Arc::new(self);
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, peer) = match socket.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS receive");
                    continue;
                }
            };
            let msg = match this.handle(&buf[..n]) {
                Handled::Local(Some(answer)) => {
                    let _ = socket.send_to(&answer, peer).await;
                    continue;
                }
                Handled::Local(None) => continue,
                Handled::Forward(msg) => msg,
            };
            let Ok(permit) = Arc::clone(&this.forwards).try_acquire_owned() else {
                if let Some(busy) = reply(&msg, ResponseCode::ServFail, None) {
                    let _ = socket.send_to(&busy, peer).await;
                }
                continue;
            };
            let query = buf[..n].to_vec();
            let (this, socket) = (Arc::clone(&this), Arc::clone(&socket));
            tokio::spawn(async move {
                let answer = this.forwarded(&query, &msg).await;
                drop(permit);
                if let Some(answer) = answer {
                    let _ = socket.send_to(&answer, peer).await;
                }
            });
        }
    }

    /// The answer to `query`, asking upstream if it is not ours.
    #[cfg(test)]
    async fn answer(&self, query: &[u8]) -> Option<Vec<u8>> {
        match self.handle(query) {
            Handled::Local(a) => a,
            Handled::Forward(msg) => self.forwarded(query, &msg).await,
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
            Some(_) => reply(&msg, ResponseCode::NoError, None),
            None if format!(".{name}").ends_with(&self.suffix) || self.upstream.is_empty() => {
                reply(&msg, ResponseCode::NXDomain, None)
            }
            None => return Handled::Forward(msg),
        })
    }

    /// The upstream's answer to `query` (parsed as `msg`), or SERVFAIL.
    async fn forwarded(&self, query: &[u8], msg: &Message) -> Option<Vec<u8>> {
        match self.forward(query).await {
            Some(a) => Some(a),
            None => reply(msg, ResponseCode::ServFail, None),
        }
    }

    /// Asks the namespace's previous nameservers, from inside the namespace.
    async fn forward(&self, query: &[u8]) -> Option<Vec<u8>> {
        let socket = self
            .ns
            .enter(|| std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))
            .ok()?
            .ok()?;
        socket.set_nonblocking(true).ok()?;
        let socket = UdpSocket::from_std(socket).ok()?;
        let mut buf = vec![0u8; 4096];
        for server in &self.upstream {
            if socket.send_to(query, server).await.is_err() {
                continue;
            }
            if let Ok(Ok((n, from))) =
                tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf)).await
            {
                if from == *server {
                    return Some(buf[..n].to_vec());
                }
            }
        }
        None
    }
}

fn reply(query: &Message, code: ResponseCode, answer: Option<Record>) -> Option<Vec<u8>> {
    let mut m = Message::response(query.metadata.id, query.metadata.op_code);
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.authoritative = answer.is_some() || code == ResponseCode::NXDomain;
    m.metadata.response_code = code;
    m.add_queries(query.queries.iter().cloned());
    if let Some(a) = answer {
        m.add_answer(a);
    }
    m.to_vec().ok()
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
            "# Written by latticed: service names resolve through {DNS_ADDR}, which\n# forwards other names to {upstream:?}. Restored when latticed stops.\nnameserver {DNS_ADDR}\n"
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

fn nameservers(resolv: &str) -> Vec<SocketAddr> {
    resolv
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .filter(|ip| *ip != std::net::IpAddr::V4(DNS_ADDR))
        .map(|ip| SocketAddr::new(ip, 53))
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
            ".vpc-lattice-svcs.us-east-1.on.aws".into(),
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
        tokio::spawn(server.run(listener));
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
        assert!(aaaa.answers.is_empty());
    }
}
