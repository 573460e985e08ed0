//! The routing snapshot: what the data path reads for every request.
//!
//! The control plane compiles its model into a [`RouteTable`] and swaps it in
//! whole (see `Dataplane::publish`); requests read whichever table was current
//! when they started. Nothing here takes a lock: target rotation uses one
//! atomic per target group, weighted choice a thread-local RNG.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddrV4},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use http::{uri::Authority, HeaderMap, Method, StatusCode};

/// Identifies a namespace the agent manages, for the life of the process.
pub type NsId = u32;

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

/// Everything the proxy routes by. Immutable once published.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// Listeners reachable per client namespace.
    pub listeners: HashMap<ListenerKey, Arc<VipRoutes>>,
}

/// The listeners behind one VIP:port. Services share VIPs once there are
/// more services than addresses; requests are then told apart by the name
/// the client asked for (Host), as Lattice does with its DNS names.
#[derive(Debug, Default)]
pub struct VipRoutes {
    /// Listeners by lowercase host name (the service's DNS name and custom
    /// domain name).
    pub by_host: HashMap<Box<str>, Arc<ListenerRoute>>,
    /// The listener when only one service uses this VIP:port: it answers
    /// whatever the Host header says (clients may dial the VIP directly).
    pub only: Option<Arc<ListenerRoute>>,
    services: usize,
}

impl VipRoutes {
    /// Adds a service's listener under its host names.
    pub fn add(&mut self, hosts: &[String], route: &Arc<ListenerRoute>) {
        for h in hosts {
            self.by_host
                .insert(h.to_ascii_lowercase().into(), Arc::clone(route));
        }
        self.services += 1;
        self.only = (self.services == 1).then(|| Arc::clone(route));
    }

    /// Whether no service is behind this VIP:port.
    pub fn is_empty(&self) -> bool {
        self.services == 0
    }

    /// The listener for a request whose Host (without port) is `host`.
    pub fn route(&self, host: Option<&str>) -> Option<&Arc<ListenerRoute>> {
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
    /// Listener name, for logs.
    pub listener: Arc<str>,
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
    /// Namespace the targets live in.
    pub ns: NsId,
    /// Targets, rotated round robin.
    pub targets: Vec<Target>,
    next: AtomicUsize,
}

impl TargetGroupRoute {
    /// Builds a target group route.
    pub fn new(name: Arc<str>, ns: NsId, targets: Vec<Target>) -> Self {
        Self {
            name,
            ns,
            targets,
            next: AtomicUsize::new(0),
        }
    }

    /// The next target, round robin; `None` if the group is empty.
    pub fn next_target(&self) -> Option<&Target> {
        if self.targets.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.targets.len();
        self.targets.get(i)
    }
}

/// One target.
#[derive(Debug, Clone)]
pub struct Target {
    /// Address inside the target group's namespace.
    pub addr: SocketAddrV4,
    /// Authority the upstream client is given; it encodes namespace and
    /// address so that equal addresses in different namespaces never share a
    /// pooled connection (see `upstream`).
    pub authority: Authority,
}

impl Target {
    /// Builds a target in namespace `ns`.
    pub fn new(ns: NsId, addr: SocketAddrV4) -> Self {
        Self {
            addr,
            authority: crate::upstream::authority_for(ns, addr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str) -> Arc<TargetGroupRoute> {
        Arc::new(TargetGroupRoute::new(
            name.into(),
            1,
            vec![Target::new(1, "10.0.0.1:80".parse().unwrap())],
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
            1,
            vec![
                Target::new(1, "10.0.0.1:80".parse().unwrap()),
                Target::new(1, "10.0.0.2:80".parse().unwrap()),
            ],
        );
        let seen: Vec<_> = (0..4).map(|_| g.next_target().unwrap().addr).collect();
        assert_eq!(seen[0], seen[2]);
        assert_ne!(seen[0], seen[1]);
    }

    fn listener(name: &str) -> Arc<ListenerRoute> {
        Arc::new(ListenerRoute {
            service: name.into(),
            listener: "l".into(),
            rules: vec![],
            default_action: Action::FixedResponse(StatusCode::OK),
        })
    }

    #[test]
    fn a_vip_with_one_service_answers_any_host() {
        let mut v = VipRoutes::default();
        v.add(&["svc1-abc.example".into()], &listener("svc1"));
        assert_eq!(&*v.route(None).unwrap().service, "svc1");
        assert_eq!(&*v.route(Some("169.254.171.1")).unwrap().service, "svc1");
    }

    #[test]
    fn a_shared_vip_routes_by_host() {
        let mut v = VipRoutes::default();
        v.add(
            &["svc1-abc.example".into(), "shop.example.com".into()],
            &listener("svc1"),
        );
        v.add(&["svc2-def.example".into()], &listener("svc2"));
        assert_eq!(&*v.route(Some("svc2-def.example")).unwrap().service, "svc2");
        assert_eq!(
            &*v.route(Some("SHOP.example.com:80")).unwrap().service,
            "svc1"
        );
        assert!(v.route(Some("other.example")).is_none());
        assert!(v.route(None).is_none(), "no Host, no guess");
    }

    #[test]
    fn rules_match_in_priority_order_and_fall_back_to_default() {
        let route = ListenerRoute {
            service: "s".into(),
            listener: "l".into(),
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
