//! latticed carries HTTP/1.1 requests on two paths: its own fast path, and
//! hyper's server with `upstream_h1` toward the target. Every Lattice
//! behaviour on them has one definition (`src/head.rs`, `src/failure.rs`,
//! `src/http1.rs`); this test holds them to it from the outside. The same
//! requests (hop-by-hop fields, TE, a field listed in `Connection`, forged
//! proxy fields, bodies, HEAD, a chunked answer with trailers, an interim
//! 100, a target that breaks off and one that times out) go through each
//! path, on new connections, and the target must receive the same fields
//! and bodies, and the client the same answers.
//!
//! It needs no privileges: the data plane makes its target sockets where
//! it runs (`Sockets::Here`), the test binds the listener on loopback, and
//! target and client are `tests/apps/two_paths.py`. What the kernel adds
//! (steering, namespaces, the source pool) is the privileged suite's
//! concern (`tests/tests/`).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "integration tests: a panic is the failure report"
)]

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use latticed_proxy::{
    routing::{
        Action, Forward, GroupKind, ListenerKey, ListenerRoute, NetworkRoute, Served, Target,
        TargetGroupRoute, TargetVersion, VipRoutes,
    },
    upstream::Sockets,
    Dataplane, ListenerHandle, NsMap, ProxyConfig, RouteTable,
};
use serde_json::Value;

fn apps_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/apps")
}

/// The target: `two_paths.py serve` on a loopback port the kernel picks;
/// killed (it is ours, by PID) when the test ends however it ends.
struct PyTarget {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl PyTarget {
    fn start() -> Self {
        let log =
            std::env::temp_dir().join(format!("latticed-two-paths-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&log);
        let mut child = Command::new("python3")
            .arg(apps_dir().join("two_paths.py"))
            .args(["serve", "127.0.0.1", "0"])
            .arg(&log)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the target said {line:?}"));
        Self { child, port, log }
    }

    /// Every request the target parsed, in order.
    fn parsed(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for PyTarget {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A data plane serving one HTTP listener on a loopback port, whose
/// service forwards to `target`; returns it and the port.
fn serve_one_service(target: u16) -> (Arc<Dataplane>, ListenerHandle, u16) {
    let dp = Dataplane::new(ProxyConfig {
        sockets: Sockets::Here,
        request_timeout: Duration::from_secs(2),
        workers: 1,
        ..ProxyConfig::default()
    })
    .unwrap();
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let ns = 1;
    let group = Arc::new(TargetGroupRoute::new(
        "paths-tg".into(),
        "arn:aws:vpc-lattice:us-east-1:111122223333:targetgroup/tg-0".into(),
        GroupKind::Hosts {
            ns,
            https: false,
            tcp: false,
            version: TargetVersion::Http1,
            targets: vec![Target::new(
                ns,
                SocketAddr::from((Ipv4Addr::LOCALHOST, target)),
            )],
        },
    ));
    let listener_route = Arc::new(ListenerRoute {
        service: "paths".into(),
        service_arn: "arn:aws:vpc-lattice:us-east-1:111122223333:service/svc-0".into(),
        listener: "http".into(),
        https: false,
        passthrough: false,
        tls: None,
        logs: Vec::new(),
        auth: None,
        metrics: Arc::default(),
        rules: Vec::new(),
        default_action: Action::Forward(Forward::new([(1, group)])),
    });
    let network = Arc::new(NetworkRoute {
        arn: "arn:aws:vpc-lattice:us-east-1:111122223333:servicenetwork/sn-0".into(),
        vpc_id: "vpc-paths".into(),
        vpc_arn: "arn:aws:ec2:us-east-1:111122223333:vpc/vpc-paths".into(),
        ..NetworkRoute::default()
    });
    let mut vip = VipRoutes::default();
    vip.add(
        &["paths.example.internal".to_owned()],
        &Arc::new(Served::new(listener_route, network)),
    );
    let mut table = RouteTable::default();
    table.listeners.insert(
        ListenerKey {
            ns,
            vip: Ipv4Addr::LOCALHOST,
            port,
        },
        Arc::new(vip),
    );
    dp.publish(table, NsMap::default());
    let handle = dp.serve(ns, "loopback", vec![listener]);
    (dp, handle, port)
}

/// Fields as a multiset of lowercased names and values, without those that
/// differ per request by design.
fn comparable(fields: &Value, varying: &[&str]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = fields
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            (
                f[0].as_str().unwrap().to_ascii_lowercase(),
                f[1].as_str().unwrap().to_owned(),
            )
        })
        .filter(|(n, _)| !varying.contains(&n.as_str()))
        .collect();
    v.sort();
    v
}

/// The value of field `name` (any case) in `fields`, if there is one.
fn field<'v>(fields: &'v Value, name: &str) -> Option<&'v str> {
    fields
        .as_array()?
        .iter()
        .find(|f| f[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .and_then(|f| f[1].as_str())
}

#[test]
fn both_http1_paths_give_targets_and_clients_the_same() {
    let raw = PyTarget::start();
    let (_dp, _serving, port) = serve_one_service(raw.port);
    let out = Command::new("python3")
        .arg(apps_dir().join("two_paths.py"))
        .args(["probe", "127.0.0.1", &port.to_string()])
        .output()
        .unwrap();
    let answers: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    // What the target parsed, by (case, path), from the query each request
    // carries.
    let mut seen: BTreeMap<(String, String), Value> = BTreeMap::new();
    for r in raw.parsed() {
        let line = r["line"].as_str().unwrap().to_owned();
        let query = line
            .split_once('?')
            .map_or("", |(_, q)| q.split(' ').next().unwrap_or(""));
        let get = |k: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .unwrap_or("")
                .to_owned()
        };
        seen.insert((get("case"), get("via")), r);
    }
    let cases = answers.as_object().unwrap();
    assert!(cases.len() >= 12, "{answers}");
    for (case, got) in cases {
        let (fast, hyper) = (&got["fast"], &got["hyper"]);
        // The client's answers: the same status, body, trailers and
        // fields; each has one date (its value is the second it left).
        for k in ["status", "body", "trailers"] {
            assert_eq!(fast[k], hyper[k], "{case}: the client's {k}: {got}");
        }
        assert_eq!(
            comparable(&fast["fields"], &["date"]),
            comparable(&hyper["fields"], &["date"]),
            "{case}: the client's fields: {got}"
        );
        for (path, a) in [("fast", fast), ("hyper", hyper)] {
            let dates = a["fields"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| {
                    f[0].as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case("date"))
                })
                .count();
            assert_eq!(dates, 1, "{case} ({path}): one date: {a}");
        }
        // The target's view: the same fields (the request id differs per
        // request) and body.
        let at = |via: &str| {
            seen.get(&(case.clone(), via.to_owned()))
                .unwrap_or_else(|| panic!("{case}: the target never saw the {via} request"))
        };
        let (tf, th) = (at("fast"), at("hyper"));
        assert_eq!(
            comparable(&tf["fields"], &["x-amzn-requestid"]),
            comparable(&th["fields"], &["x-amzn-requestid"]),
            "{case}: what the target got: {tf} vs {th}"
        );
        assert_eq!(tf["body"], th["body"], "{case}: the body the target got");
        for t in [tf, th] {
            assert!(field(&t["fields"], "x-amzn-requestid").is_some(), "{t}");
        }
    }
    // The two requests of each case did take different paths: the fast
    // path keeps the client's spelling of names, hyper lowercases them.
    let plain = |via: &str| seen[&("plain".to_owned(), via.to_owned())]["fields"].clone();
    assert!(plain("fast").to_string().contains("X-Mixed-Case"));
    assert!(plain("hyper").to_string().contains("x-mixed-case"));

    // And what they agree on is right.
    let target = |case: &str| seen[&(case.to_owned(), "fast".to_owned())]["fields"].clone();
    let client = |case: &str| answers[case]["fast"].clone();
    let hop = target("hop-by-hop");
    for gone in [
        "keep-alive",
        "proxy-connection",
        "x-listed",
        "trailer",
        "connection",
    ] {
        assert!(
            field(&hop, gone).is_none(),
            "{gone} reached the target: {hop}"
        );
    }
    assert_eq!(field(&hop, "upgrade-insecure-requests"), Some("1"));
    assert_eq!(field(&target("te-trailers"), "te"), Some("trailers"));
    assert_eq!(field(&target("te-gzip"), "te"), None);
    let forged = target("forged");
    assert_eq!(
        field(&forged, "x-forwarded-for"),
        Some("127.0.0.1"),
        "{forged}"
    );
    assert!(
        field(&forged, "x_amzn_lattice_identity").is_none(),
        "{forged}"
    );
    assert_ne!(field(&forged, "x-amzn-lattice-network"), Some("x"));
    assert_ne!(field(&forged, "x-amzn-requestid"), Some("forged"));
    assert_eq!(
        seen[&("post-body".to_owned(), "fast".to_owned())]["body"],
        "hello world"
    );
    let ok = client("plain");
    for gone in ["connection", "x-resp-hop", "keep-alive", "upgrade"] {
        assert!(
            field(&ok["fields"], gone).is_none(),
            "{gone} reached the client: {ok}"
        );
    }
    assert_eq!(field(&ok["fields"], "x-app"), Some("one"));
    assert_eq!(client("head")["body"], "");
    assert_eq!(
        field(&client("head")["fields"], "content-length"),
        Some("19")
    );
    assert_eq!(client("trailers")["body"], "first second");
    assert_eq!(client("trailers")["trailers"], serde_json::json!([]));
    assert_eq!(client("continue")["status"], 200);
    assert_eq!(client("continue")["body"], "continued");
    // A date the target sent is the one the client gets.
    assert_eq!(
        field(&client("continue")["fields"], "date"),
        Some("Tue, 01 Dec 2026 10:00:00 GMT")
    );
    assert_eq!(client("broken")["status"], 502);
    assert_eq!(client("broken")["body"], "Bad Gateway\n");
    assert_eq!(client("slow")["status"], 504);
    assert_eq!(client("slow")["body"], "Gateway Timeout\n");
}
