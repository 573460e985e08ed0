//! The routing snapshot: what the data path reads for every request.
//!
//! The control plane compiles its model into a [`RouteTable`] and swaps it in
//! whole (see `Dataplane::publish`); requests read whichever table was current
//! when they started. Nothing here takes a lock: target rotation uses one
//! atomic per target group, weighted choice a thread-local RNG.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use http::{uri::Authority, HeaderMap, Method, StatusCode};

pub use crate::{netns::NsId, upstream::TargetVersion};

/// Key of a listener: the namespace the client is in and the VIP:port it dialed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerKey {
    /// Client namespace.
    pub ns: NsId,
    /// Service VIP.
    pub vip: Ipv4Addr,
    /// Listener port.
    pub port: u16,
}

/// Key of a resource: the namespace the client is in and the resource's
/// VIP (every port of its ranges).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ResourceKey {
    /// Client namespace.
    pub ns: NsId,
    /// Resource VIP.
    pub vip: Ipv4Addr,
}

/// Everything the proxy routes by. Immutable once published.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// Listeners reachable per client namespace.
    pub listeners: foldhash::HashMap<ListenerKey, Arc<VipRoutes>>,
    /// Resources reachable per client namespace.
    pub resources: ResourceRoutes,
}

/// Resources by client namespace and VIP.
pub type ResourceRoutes = foldhash::HashMap<ResourceKey, Arc<ResourceRoute>>;

/// A resource configuration as reached from one client namespace: TCP
/// connections to its VIP on a port of its ranges are carried to the same
/// port of its target, from the gateway's VPC.
#[derive(Debug)]
pub struct ResourceRoute {
    /// The configuration's name (metrics, logs of the proxy).
    pub name: Box<str>,
    /// Its ARN.
    pub arn: Box<str>,
    /// Inclusive port ranges.
    pub ports: Box<[(u16, u16)]>,
    /// The gateway's VPC; `None` while latticed does not manage it.
    pub gateway_ns: Option<NsId>,
    /// What connections go to.
    pub target: ResourceTarget,
    /// The service network and client VPC it is reached through.
    pub network: Arc<NetworkRoute>,
    /// The resource association's id (`-` when none).
    pub association: Box<str>,
    /// The configuration's own access log destinations (the network's
    /// for resource traffic are in `network`).
    pub logs: Vec<Arc<crate::access_log::Destination>>,
    /// Counters of the configuration.
    pub metrics: Arc<crate::metrics::ConnectionMetrics>,
}

impl ResourceRoute {
    /// Whether a port of the ranges is `port`.
    pub fn serves(&self, port: u16) -> bool {
        self.ports
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&port))
    }
}

/// Where a resource's connections go.
#[derive(Clone, Debug)]
pub enum ResourceTarget {
    /// An address in the gateway's VPC.
    Ip(std::net::IpAddr),
    /// A name resolved in the gateway's VPC when a connection comes.
    Dns(Arc<DnsTarget>),
    /// Not placed (an ARN the inventory lacks): connections are refused.
    Unplaced(Box<str>),
}

/// What [`Resolve::resolve`] gives: the name's addresses and how long
/// they may be kept, or why there are none.
pub type Resolved<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<(Vec<std::net::IpAddr>, Duration), String>>
            + Send
            + 'a,
    >,
>;

/// Asks a name's addresses of the resolver of the gateway's VPC. The
/// agent implements it (it owns the namespaces and the DNS client).
pub trait Resolve: Send + Sync + std::fmt::Debug {
    /// The name's addresses and how long they may be kept.
    fn resolve(&self) -> Resolved<'_>;
}

/// A DNS resource: the name's last answer, kept for its TTL. Connections
/// read the answer in force when they come; open ones never move.
#[derive(Debug)]
pub struct DnsTarget {
    /// The name, for logs.
    pub name: Box<str>,
    resolver: Box<dyn Resolve>,
    answer: arc_swap::ArcSwapOption<(Vec<std::net::IpAddr>, std::time::Instant)>,
    /// Held while asking: connections that find the answer expired at the
    /// same moment wait for one question rather than each asking.
    asking: tokio::sync::Mutex<()>,
}

/// Longest time an answer is kept, whatever its TTL says.
const MAX_TTL: Duration = Duration::from_secs(3600);

impl DnsTarget {
    /// A target asking `resolver` for `name`.
    pub fn new(name: &str, resolver: Box<dyn Resolve>) -> Self {
        Self {
            name: name.into(),
            resolver,
            answer: arc_swap::ArcSwapOption::empty(),
            asking: tokio::sync::Mutex::new(()),
        }
    }

    /// An address of the name now: from the answer in force, else asked
    /// (and kept for the answer's TTL). Several addresses take turns at
    /// random.
    pub async fn address(&self) -> Result<std::net::IpAddr, String> {
        let kept = || {
            let now = std::time::Instant::now();
            self.answer.load_full().filter(|a| a.1 > now)
        };
        let addrs = match kept() {
            Some(a) => a,
            None => {
                let _asking = self.asking.lock().await;
                // Another connection may have asked while this one waited.
                match kept() {
                    Some(a) => a,
                    None => {
                        let (addrs, ttl) = self.resolver.resolve().await?;
                        let until = std::time::Instant::now() + ttl.min(MAX_TTL);
                        let answer = Arc::new((addrs, until));
                        self.answer.store(Some(Arc::clone(&answer)));
                        answer
                    }
                }
            }
        };
        match addrs.0.len() {
            0 => Err(format!("{} has no address", self.name)),
            n => Ok(addrs.0[fastrand::usize(..n)]),
        }
    }
}

/// The listeners behind one VIP:port. Services share VIPs once there are
/// more services than addresses; requests are then told apart by the name
/// the client asked for (SNI, then Host), as Lattice does with its DNS names.
#[derive(Debug, Default)]
pub struct VipRoutes {
    /// Listeners by lowercase host name (the service's DNS name and custom
    /// domain name).
    pub by_host: foldhash::HashMap<Box<str>, Arc<Served>>,
    /// The listener when only one service uses this VIP:port: it answers
    /// whatever the Host header says (clients may dial the VIP directly).
    pub only: Option<Arc<Served>>,
    /// Whether the listeners here are HTTPS (the plan never mixes
    /// protocols on one VIP:port).
    pub tls: bool,
    /// Whether the listeners here are TLS_PASSTHROUGH.
    pub passthrough: bool,
    services: usize,
}

/// A service listener as reached from one client namespace: the listener,
/// and the service network the client reached it through.
#[derive(Debug)]
pub struct Served {
    /// The listener.
    pub listener: Arc<ListenerRoute>,
    /// The service network and client VPC.
    pub network: Arc<NetworkRoute>,
    /// `x-amzn-lattice-network`, made once.
    pub network_header: Option<http::HeaderValue>,
    /// `x-amzn-lattice-target` for each group the listener forwards to, made
    /// once (looked up by the group's address), with the header lines of
    /// both fields as an HTTP/1.1 head carries them.
    /// (The address identifies the group: the `Arc`s in `listener` keep
    /// it alive, so it is not reused while this exists.)
    target_headers: Vec<(usize, http::HeaderValue, Box<[u8]>)>,
    /// The `x-amzn-lattice-network` line alone, for a group not above.
    network_line: Box<[u8]>,
}

impl Served {
    /// The listener as reached through `network`, with its header values.
    pub fn new(listener: Arc<ListenerRoute>, network: Arc<NetworkRoute>) -> Self {
        let network_header =
            http::HeaderValue::from_str(&format!("SourceVpcArn={}", network.vpc_arn)).ok();
        let line = |out: &mut Vec<u8>, name: &str, value: &http::HeaderValue| {
            crate::head::field(out, name.as_bytes(), value.as_bytes());
        };
        let mut network_line = Vec::new();
        if let Some(v) = &network_header {
            line(&mut network_line, crate::head::PROXY_FIELD_NAMES[3], v);
        }
        let mut target_headers: Vec<(usize, http::HeaderValue, Box<[u8]>)> = Vec::new();
        for action in listener
            .rules
            .iter()
            .map(|r| &r.action)
            .chain([&listener.default_action])
        {
            if let Action::Forward(f) = action {
                for g in f.groups() {
                    let ptr = Arc::as_ptr(g) as usize;
                    if target_headers.iter().any(|(p, ..)| *p == ptr) {
                        continue;
                    }
                    if let Ok(v) = http::HeaderValue::from_str(&format!(
                        "ServiceArn={}; ServiceNetworkArn={}; TargetGroupArn={}",
                        listener.service_arn, network.arn, g.arn
                    )) {
                        let mut lines = network_line.clone();
                        line(&mut lines, crate::head::PROXY_FIELD_NAMES[4], &v);
                        target_headers.push((ptr, v, lines.into_boxed_slice()));
                    }
                }
            }
        }
        Self {
            listener,
            network,
            network_header,
            target_headers,
            network_line: network_line.into_boxed_slice(),
        }
    }

    /// `x-amzn-lattice-target` for `group`.
    pub fn target_header(&self, group: &TargetGroupRoute) -> Option<&http::HeaderValue> {
        self.made_for(group).map(|(_, v, _)| v)
    }

    /// The `x-amzn-lattice-network` and `x-amzn-lattice-target` lines for
    /// `group`, as an HTTP/1.1 head carries them.
    pub fn lattice_lines(&self, group: &TargetGroupRoute) -> &[u8] {
        self.made_for(group)
            .map_or(&self.network_line, |(.., lines)| lines)
    }

    /// What was made for `group`, found by its address.
    fn made_for(&self, group: &TargetGroupRoute) -> Option<&(usize, http::HeaderValue, Box<[u8]>)> {
        let ptr = std::ptr::from_ref(group) as usize;
        self.target_headers.iter().find(|(p, ..)| *p == ptr)
    }
}

/// A service network as seen from one associated namespace.
#[derive(Debug, Default)]
pub struct NetworkRoute {
    /// Service network ARN.
    pub arn: Arc<str>,
    /// The client namespace's VPC id (its name) and ARN.
    pub vpc_id: Arc<str>,
    /// ARN of the client VPC (`x-amzn-lattice-network`, access logs).
    pub vpc_arn: Arc<str>,
    /// The network's access log destinations.
    pub logs: Vec<Arc<crate::access_log::Destination>>,
    /// Its destinations for resource traffic (`serviceNetworkLogType`
    /// RESOURCE).
    pub resource_logs: Vec<Arc<crate::access_log::Destination>>,
    /// Auth type AWS_IAM: `Some`, holding the policy if one is set.
    pub auth: Option<Option<Arc<crate::authz::Policy>>>,
}

impl VipRoutes {
    /// Adds a service's listener under its host names.
    pub fn add(&mut self, hosts: &[String], served: &Arc<Served>) {
        for h in hosts {
            self.by_host
                .insert(h.to_ascii_lowercase().into(), Arc::clone(served));
        }
        self.tls |= served.listener.https;
        self.passthrough |= served.listener.passthrough;
        self.services += 1;
        self.only = (self.services == 1).then(|| Arc::clone(served));
    }

    /// Whether no service is behind this VIP:port.
    pub fn is_empty(&self) -> bool {
        self.services == 0
    }

    /// The listener for a request whose Host (without port) is `host`.
    pub fn route(&self, host: Option<&str>) -> Option<&Arc<Served>> {
        if let Some(only) = &self.only {
            return Some(only);
        }
        let host = host?;
        let host = host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        if let Some(r) = self.by_host.get(host) {
            return Some(r);
        }
        // Host names are case-insensitive; lowercase only on the rare miss.
        self.by_host.get(host.to_ascii_lowercase().as_str())
    }
}

/// A service listener as the data path sees it.
#[derive(Debug)]
pub struct ListenerRoute {
    /// Service name, for logs.
    pub service: Arc<str>,
    /// Service ARN.
    pub service_arn: Arc<str>,
    /// Listener name, for logs.
    pub listener: Arc<str>,
    /// Whether the listener is HTTPS.
    pub https: bool,
    /// Whether the listener passes TLS through to TCP targets.
    pub passthrough: bool,
    /// TLS server configuration of an HTTPS listener (its service's
    /// certificate); `None` for HTTP, and for HTTPS when no certificate
    /// could be made (handshakes are then refused).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The service's access log destinations.
    pub logs: Vec<Arc<crate::access_log::Destination>>,
    /// Auth type AWS_IAM: `Some`, holding the policy if one is set.
    pub auth: Option<Option<Arc<crate::authz::Policy>>>,
    /// Request counters of the service.
    pub metrics: Arc<crate::metrics::RequestMetrics>,
    /// Rules, sorted by ascending priority.
    pub rules: Vec<Rule>,
    /// What happens when no rule matches.
    pub default_action: Action,
}

impl ListenerRoute {
    /// The action for a request: the first matching rule's, else the default.
    pub fn action_for(&self, method: &Method, path: &str, headers: &HeaderMap) -> &Action {
        self.rules
            .iter()
            .find(|r| r.matcher.matches(method, path, headers))
            .map_or(&self.default_action, |r| &r.action)
    }
}

/// A listener rule.
#[derive(Debug)]
pub struct Rule {
    /// Rule name, for logs.
    pub name: Arc<str>,
    /// 1..=100, lower first.
    pub priority: u16,
    /// Conditions, all of which must hold.
    pub matcher: HttpMatch,
    /// Action when it matches.
    pub action: Action,
}

/// HTTP match conditions of a rule (Lattice's `HttpMatch`).
#[derive(Debug, Default)]
pub struct HttpMatch {
    /// Method to match, if any.
    pub method: Option<Method>,
    /// Path condition, if any.
    pub path: Option<PathMatch>,
    /// Header conditions (up to 5), all must hold.
    pub headers: Vec<HeaderMatch>,
}

impl HttpMatch {
    fn matches(&self, method: &Method, path: &str, headers: &HeaderMap) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
            && self.path.as_ref().is_none_or(|p| p.matches(path))
            && self.headers.iter().all(|h| h.matches(headers))
    }
}

/// Path condition.
#[derive(Debug)]
pub struct PathMatch {
    /// Exact or prefix.
    pub kind: MatchKind,
    /// The value (lowercased when not case sensitive).
    pub value: String,
    /// Whether the comparison is case sensitive.
    pub case_sensitive: bool,
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        if self.case_sensitive {
            self.kind.test(path, &self.value)
        } else {
            self.kind.test_ignore_case(path, &self.value)
        }
    }
}

/// Header condition.
#[derive(Debug)]
pub struct HeaderMatch {
    /// Header name (lowercase).
    pub name: http::HeaderName,
    /// Exact, prefix or contains.
    pub kind: MatchKind,
    /// The value (lowercased when not case sensitive).
    pub value: String,
    /// Whether the comparison is case sensitive.
    pub case_sensitive: bool,
}

impl HeaderMatch {
    fn matches(&self, headers: &HeaderMap) -> bool {
        headers.get_all(&self.name).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                if self.case_sensitive {
                    self.kind.test(v, &self.value)
                } else {
                    self.kind.test_ignore_case(v, &self.value)
                }
            })
        })
    }
}

/// How a value is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchKind {
    /// Whole value equal.
    Exact,
    /// Value starts with.
    Prefix,
    /// Value contains.
    Contains,
}

impl MatchKind {
    fn test(self, have: &str, want: &str) -> bool {
        match self {
            Self::Exact => have == want,
            Self::Prefix => have.starts_with(want),
            Self::Contains => have.contains(want),
        }
    }

    /// `want` is already lowercase.
    fn test_ignore_case(self, have: &str, want: &str) -> bool {
        match self {
            Self::Exact => have.eq_ignore_ascii_case(want),
            Self::Prefix => have
                .get(..want.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(want)),
            Self::Contains => have.to_ascii_lowercase().contains(want),
        }
    }
}

/// What a listener does with a request.
#[derive(Debug)]
pub enum Action {
    /// Forward to one of several target groups, by weight.
    Forward(Forward),
    /// Answer directly with this status.
    FixedResponse(StatusCode),
}

/// Weighted forward action.
#[derive(Debug)]
pub struct Forward {
    groups: Vec<(u32, Arc<TargetGroupRoute>)>,
    total: u32,
}

impl Forward {
    /// Builds the action; groups with weight 0 are never picked.
    pub fn new(groups: impl IntoIterator<Item = (u32, Arc<TargetGroupRoute>)>) -> Self {
        let groups: Vec<_> = groups.into_iter().filter(|(w, _)| *w > 0).collect();
        let total = groups.iter().map(|(w, _)| *w).sum();
        Self { groups, total }
    }

    /// The groups with a weight above 0, with their weights.
    pub fn weighted(&self) -> impl Iterator<Item = (u32, &Arc<TargetGroupRoute>)> {
        self.groups.iter().map(|(w, g)| (*w, g))
    }

    /// The groups with a weight above 0.
    pub fn groups(&self) -> impl Iterator<Item = &Arc<TargetGroupRoute>> {
        self.groups.iter().map(|(_, g)| g)
    }

    /// Picks a group with probability weight/total; `None` if all weights are 0.
    pub fn pick(&self) -> Option<&Arc<TargetGroupRoute>> {
        self.pick_with(fastrand::u32(..self.total.max(1)))
    }

    fn pick_with(&self, mut ticket: u32) -> Option<&Arc<TargetGroupRoute>> {
        for (weight, group) in &self.groups {
            if ticket < *weight {
                return Some(group);
            }
            ticket -= weight;
        }
        None
    }
}

/// A target group as the data path sees it.
#[derive(Debug)]
pub struct TargetGroupRoute {
    /// Name, for logs.
    pub name: Arc<str>,
    /// ARN (headers, access logs, function events).
    pub arn: Arc<str>,
    /// What the targets are.
    pub kind: GroupKind,
    /// Request counters of the group.
    pub metrics: Arc<crate::metrics::RequestMetrics>,
    next: AtomicUsize,
}

/// The kinds of target group, as the data path tells them apart.
#[derive(Debug)]
pub enum GroupKind {
    /// Addresses in a namespace: IP targets, instances and load balancers
    /// resolved through the inventory.
    Hosts {
        /// Namespace the targets live in.
        ns: NsId,
        /// HTTPS toward targets.
        https: bool,
        /// Plain TCP (TLS_PASSTHROUGH listeners).
        tcp: bool,
        /// HTTP/1.1, HTTP/2 or gRPC (HTTP/2).
        version: TargetVersion,
        /// Targets, rotated round robin among the healthy.
        targets: Vec<Target>,
    },
    /// A function invoked over the Lambda Invoke API.
    Lambda(LambdaTarget),
}

/// A LAMBDA target group's function.
#[derive(Debug)]
pub struct LambdaTarget {
    /// Function name or ARN as registered.
    pub function: Arc<str>,
    /// Event structure version ("1.0" or "2.0").
    pub event_v2: bool,
}

impl TargetGroupRoute {
    /// Builds a target group route.
    pub fn new(name: Arc<str>, arn: Arc<str>, kind: GroupKind) -> Self {
        Self {
            name,
            arn,
            kind,
            metrics: Arc::default(),
            next: AtomicUsize::new(0),
        }
    }

    /// Sets the counters (shared across snapshots by the registry).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::RequestMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The next target, round robin over the targets that are not known to
    /// be unhealthy; when every target is unhealthy, over all of them (fail
    /// open, as Lattice does). `None` if there are no targets.
    pub fn next_target(&self) -> Option<&Target> {
        let GroupKind::Hosts { targets, .. } = &self.kind else {
            return None;
        };
        let n = targets.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            let t = &targets[(start + k) % n];
            if t.health.routable() {
                return Some(t);
            }
        }
        targets.get(start % n)
    }
}

/// One target.
#[derive(Debug, Clone)]
pub struct Target {
    /// Target id as registered (address, instance id or ALB ARN).
    pub id: Arc<str>,
    /// Address inside the target group's namespace.
    pub addr: SocketAddr,
    /// Authority the upstream client is given; it encodes namespace and
    /// address so that equal addresses in different namespaces never share a
    /// pooled connection (see `upstream`).
    pub authority: Authority,
    /// Health as the checker last saw it.
    pub health: Arc<crate::health::TargetHealth>,
    /// Its HTTP/2 connection, for HTTP2 and GRPC groups.
    pub h2: Arc<crate::upstream::H2Conn>,
}

impl Target {
    /// Builds a target in namespace `ns`, of unknown health.
    pub fn new(ns: NsId, addr: SocketAddr) -> Self {
        Self {
            id: addr.ip().to_string().into(),
            addr,
            authority: crate::upstream::authority_for(ns, addr),
            health: Arc::default(),
            h2: Arc::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resolver that answers what `answers` holds now, with `ttl`, and
    /// counts the questions.
    #[derive(Debug)]
    struct Fake {
        answers: std::sync::Mutex<Vec<std::net::IpAddr>>,
        ttl: Duration,
        asked: AtomicUsize,
    }

    impl Resolve for Arc<Fake> {
        fn resolve(&self) -> Resolved<'_> {
            self.asked.fetch_add(1, Ordering::Relaxed);
            let answers = self.answers.lock().unwrap().clone();
            let ttl = self.ttl;
            // A resolver takes time: others may come while it asks.
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok((answers, ttl))
            })
        }
    }

    #[tokio::test]
    async fn a_dns_resource_keeps_its_answer_for_the_ttl_then_asks_again() {
        let a: std::net::IpAddr = "10.0.16.20".parse().unwrap();
        let b: std::net::IpAddr = "10.0.16.21".parse().unwrap();
        let fake = Arc::new(Fake {
            answers: std::sync::Mutex::new(vec![a]),
            ttl: Duration::from_millis(200),
            asked: AtomicUsize::new(0),
        });
        let target = DnsTarget::new("db.internal", Box::new(Arc::clone(&fake)));
        assert_eq!(target.address().await, Ok(a));
        *fake.answers.lock().unwrap() = vec![b];
        assert_eq!(target.address().await, Ok(a), "kept while the TTL runs");
        assert_eq!(fake.asked.load(Ordering::Relaxed), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(target.address().await, Ok(b), "asked again after it");
        assert_eq!(fake.asked.load(Ordering::Relaxed), 2);
        // Connections finding it expired at once ask once.
        tokio::time::sleep(Duration::from_millis(250)).await;
        let many = tokio::join!(
            target.address(),
            target.address(),
            target.address(),
            target.address()
        );
        assert_eq!(many, (Ok(b), Ok(b), Ok(b), Ok(b)));
        assert_eq!(fake.asked.load(Ordering::Relaxed), 3);
        // No address is an error naming the name, and is not kept.
        *fake.answers.lock().unwrap() = vec![];
        tokio::time::sleep(Duration::from_millis(250)).await;
        let e = target.address().await.unwrap_err();
        assert!(e.contains("db.internal"), "{e}");
    }

    #[test]
    fn a_resource_serves_only_the_ports_of_its_ranges() {
        let route = ResourceRoute {
            name: "db".into(),
            arn: "arn".into(),
            ports: vec![(5432, 5432), (8000, 8100)].into_boxed_slice(),
            gateway_ns: Some(1),
            target: ResourceTarget::Ip("10.0.16.20".parse().unwrap()),
            network: Arc::default(),
            association: "-".into(),
            logs: Vec::new(),
            metrics: Arc::default(),
        };
        for (port, served) in [
            (5432, true),
            (5433, false),
            (8000, true),
            (8100, true),
            (8101, false),
            (1, false),
        ] {
            assert_eq!(route.serves(port), served, "{port}");
        }
    }

    fn hosts(targets: Vec<Target>) -> GroupKind {
        GroupKind::Hosts {
            ns: 1,
            https: false,
            tcp: false,
            version: TargetVersion::Http1,
            targets,
        }
    }

    fn group(name: &str) -> Arc<TargetGroupRoute> {
        Arc::new(TargetGroupRoute::new(
            name.into(),
            name.into(),
            hosts(vec![Target::new(1, "10.0.0.1:80".parse().unwrap())]),
        ))
    }

    #[test]
    fn weights_split_tickets_in_proportion() {
        let f = Forward::new([(2, group("a")), (0, group("never")), (1, group("b"))]);
        let names: Vec<_> = (0..3).map(|t| &*f.pick_with(t).unwrap().name).collect();
        assert_eq!(names, ["a", "a", "b"]);
        assert!(f.pick_with(3).is_none());
    }

    #[test]
    fn random_pick_follows_weights() {
        let f = Forward::new([(2, group("a")), (1, group("b"))]);
        let n = 30_000;
        let a = (0..n).filter(|_| &*f.pick().unwrap().name == "a").count();
        let share = a as f64 / n as f64;
        assert!((share - 2.0 / 3.0).abs() < 0.02, "share of a: {share}");
    }

    #[test]
    fn all_zero_weights_pick_nothing() {
        let f = Forward::new([(0, group("a"))]);
        assert!(f.pick().is_none());
    }

    #[test]
    fn round_robin_visits_every_target() {
        let g = TargetGroupRoute::new(
            "g".into(),
            "g".into(),
            hosts(vec![
                Target::new(1, "10.0.0.1:80".parse().unwrap()),
                Target::new(1, "10.0.0.2:80".parse().unwrap()),
            ]),
        );
        let seen: Vec<_> = (0..4).map(|_| g.next_target().unwrap().addr).collect();
        assert_eq!(seen[0], seen[2]);
        assert_ne!(seen[0], seen[1]);
    }

    #[test]
    fn unhealthy_targets_are_skipped_until_all_are_unhealthy() {
        let a = Target::new(1, "10.0.0.1:80".parse().unwrap());
        let b = Target::new(1, "10.0.0.2:80".parse().unwrap());
        let g = TargetGroupRoute::new("g".into(), "g".into(), hosts(vec![a.clone(), b.clone()]));
        a.health.set(crate::health::Status::Unhealthy);
        assert!((0..10).all(|_| g.next_target().unwrap().addr == b.addr));
        b.health.set(crate::health::Status::Unhealthy);
        let seen: std::collections::HashSet<_> =
            (0..10).map(|_| g.next_target().unwrap().addr).collect();
        assert_eq!(seen.len(), 2, "all unhealthy: fail open over all targets");
    }

    fn listener(name: &str) -> Arc<Served> {
        Arc::new(Served::new(
            Arc::new(ListenerRoute {
                service: name.into(),
                service_arn: name.into(),
                listener: "l".into(),
                https: false,
                passthrough: false,
                tls: None,
                logs: vec![],
                auth: None,
                metrics: Arc::default(),
                rules: vec![],
                default_action: Action::FixedResponse(StatusCode::OK),
            }),
            Arc::default(),
        ))
    }

    #[test]
    fn a_vip_with_one_service_answers_any_host() {
        let mut v = VipRoutes::default();
        v.add(&["svc1-abc.example".into()], &listener("svc1"));
        assert_eq!(&*v.route(None).unwrap().listener.service, "svc1");
        assert_eq!(
            &*v.route(Some("169.254.171.1")).unwrap().listener.service,
            "svc1"
        );
    }

    #[test]
    fn a_shared_vip_routes_by_host() {
        let mut v = VipRoutes::default();
        v.add(
            &["svc1-abc.example".into(), "shop.example.com".into()],
            &listener("svc1"),
        );
        v.add(&["svc2-def.example".into()], &listener("svc2"));
        assert_eq!(
            &*v.route(Some("svc2-def.example")).unwrap().listener.service,
            "svc2"
        );
        assert_eq!(
            &*v.route(Some("SHOP.example.com:80"))
                .unwrap()
                .listener
                .service,
            "svc1"
        );
        assert!(v.route(Some("other.example")).is_none());
        assert!(v.route(None).is_none(), "no Host, no guess");
    }

    #[test]
    fn rules_match_in_priority_order_and_fall_back_to_default() {
        let route = ListenerRoute {
            service: "s".into(),
            service_arn: "s".into(),
            listener: "l".into(),
            https: false,
            passthrough: false,
            tls: None,
            logs: vec![],
            auth: None,
            metrics: Arc::default(),
            rules: vec![
                Rule {
                    name: "exact".into(),
                    priority: 1,
                    matcher: HttpMatch {
                        path: Some(PathMatch {
                            kind: MatchKind::Exact,
                            value: "/to-a".into(),
                            case_sensitive: true,
                        }),
                        ..Default::default()
                    },
                    action: Action::FixedResponse(StatusCode::from_u16(201).unwrap()),
                },
                Rule {
                    name: "prefix-get-header".into(),
                    priority: 2,
                    matcher: HttpMatch {
                        method: Some(Method::GET),
                        path: Some(PathMatch {
                            kind: MatchKind::Prefix,
                            value: "/api".into(),
                            case_sensitive: false,
                        }),
                        headers: vec![HeaderMatch {
                            name: http::HeaderName::from_static("x-canary"),
                            kind: MatchKind::Contains,
                            value: "yes".into(),
                            case_sensitive: false,
                        }],
                    },
                    action: Action::FixedResponse(StatusCode::from_u16(202).unwrap()),
                },
            ],
            default_action: Action::FixedResponse(StatusCode::NOT_FOUND),
        };
        let status = |m: Method, p: &str, h: &[(&'static str, &str)]| {
            let mut hm = HeaderMap::new();
            for (k, v) in h {
                hm.append(*k, v.parse().unwrap());
            }
            match route.action_for(&m, p, &hm) {
                Action::FixedResponse(s) => s.as_u16(),
                Action::Forward(_) => 0,
            }
        };
        assert_eq!(status(Method::GET, "/to-a", &[]), 201);
        assert_eq!(
            status(Method::GET, "/to-A", &[]),
            404,
            "exact match is case sensitive"
        );
        assert_eq!(
            status(Method::GET, "/API/x", &[("x-canary", "oh YES")]),
            202
        );
        assert_eq!(status(Method::POST, "/api/x", &[("x-canary", "yes")]), 404);
        assert_eq!(status(Method::GET, "/api/x", &[]), 404);
    }
}
