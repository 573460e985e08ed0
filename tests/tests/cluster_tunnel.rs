//! Cluster mode across hosts: two "host" namespaces joined by a veth pair
//! stand for two machines on one network (`latticed_tests::hosts`). A
//! latticed runs inside each (`ip netns exec HOST latticed run ...`), etcd
//! listens inside host A on the link, and each host has its own VPCs, all
//! on 10.0.16.0/20. Requests cross between the hosts over the nodes'
//! mutual-TLS tunnels (privileged, real processes, no mocks).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic is the failure report"
)]

use std::time::{Duration, Instant};

use latticed_tests::{
    apps_dir, bin, curl_in, echo,
    etcd::Node,
    hosts::{Cluster, A_IP},
    in_source_pool, unique, wait_until, walkthrough, Vpc,
};
use serde_json::Value;

const LOG_GROUP: &str = "arn:aws:logs:us-east-1:111122223333:log-group:/latticed/walkthrough";

/// The walkthrough split across two hosts (see [`Cluster`]): the
/// instance and its app on host A, the client and svc2's app on host B.
struct World {
    c: Cluster,
    svc1_dns: String,
    svc2_dns: String,
    instances: String,
}

impl std::ops::Deref for World {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.c
    }
}

impl std::ops::DerefMut for World {
    fn deref_mut(&mut self) -> &mut Cluster {
        &mut self.c
    }
}

/// The cluster, nothing built yet.
fn start() -> World {
    World {
        c: Cluster::start(),
        svc1_dns: String::new(),
        svc2_dns: String::new(),
        instances: String::new(),
    }
}

/// [`start`], then the walkthrough built through node B.
fn build() -> World {
    let mut w = start();
    let aws = w.b.latticed.aws();
    let built = walkthrough::build(
        &mut |args| aws.run(args).map_err(anyhow::Error::msg),
        w.vpc_a.name(),
        w.vpc_b.name(),
        LOG_GROUP,
    )
    .unwrap();
    w.svc1_dns = built.svc1_dns;
    w.svc2_dns = built.svc2_dns;
    w.instances = built.instances;
    w
}

/// curl in `vpc` over one connection, trusting `node`'s CA.
fn curl_many(node: &Node, vpc: &Vpc, urls: &[String], extra: &[&str]) -> Vec<String> {
    latticed_tests::curl_many(&vpc.ns, &node.latticed.state().join("ca.pem"), urls, extra)
}

/// One request on a new connection: (status, seconds it took).
fn timed(node: &Node, vpc: &Vpc, url: &str) -> (u16, f64) {
    let t = Instant::now();
    let out = vpc
        .ns
        .command("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .arg("--cacert")
        .arg(node.latticed.state().join("ca.pem"))
        .arg(url)
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (code, t.elapsed().as_secs_f64())
}

/// A tunnel stream opened from host B by `latticed-tunnel-probe`.
fn probe(w: &World, identity: &[&str], node: &str, vpc: &str, target: &str) -> String {
    let out = w
        .hosts
        .b
        .command(bin("latticed-tunnel-probe"))
        .args(identity)
        .args(["--node", node, "--addr", &format!("{A_IP}:15008")])
        .args(["--vpc", vpc, "--target", target])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn target_status(node: &Node, tg: &str) -> String {
    let t = node
        .latticed
        .aws()
        .ok(&["list-targets", "--target-group-identifier", tg]);
    t["items"][0]["status"].as_str().unwrap_or("").to_owned()
}

#[test]
fn the_walkthrough_split_across_two_hosts() {
    let w = build();
    let base = format!("https://{}", w.svc1_dns);

    // The instance (on A) by rule, from a client on B, HTTP/1.1 and HTTP/2:
    // the app sees a source-pool address, the real client in XFF.
    let r = curl_many(
        &w.b,
        &w.vpc_b,
        &[format!("{base}/to-instance")],
        &["--http1.1"],
    );
    let inst = echo(r[0].lines().next().unwrap());
    assert_eq!(inst["app"], w.vpc_a.name(), "{}", r[0]);
    assert!(r[0].contains("200 1.1"), "{}", r[0]);
    let client = inst["client"].as_str().unwrap();
    assert!(in_source_pool(client), "the app saw {client}");
    assert_eq!(inst["xForwardedFor"], "10.0.16.10", "{inst}");
    assert_eq!(inst["xForwardedProto"], "https");
    assert!(inst["latticeNetwork"]
        .as_str()
        .unwrap()
        .ends_with(&format!("vpc/{}", w.vpc_b.name())));
    let r = curl_many(
        &w.b,
        &w.vpc_b,
        &[format!("{base}/to-instance")],
        &["--http2"],
    );
    assert!(r[0].contains("200 2"), "{}", r[0]);
    // The function runs on the client's node.
    let r = curl_many(&w.b, &w.vpc_b, &[format!("{base}/to-function")], &[]);
    assert!(r[0].contains("Hello from the function"), "{}", r[0]);

    // 2:1 over 3,000 requests on one connection, and 30 on new ones.
    let urls: Vec<String> = (0..3000).map(|_| format!("{base}/")).collect();
    let answers = curl_many(&w.b, &w.vpc_b, &urls, &[]);
    let instance = answers.iter().filter(|a| a.contains("\"app\"")).count();
    let function = answers
        .iter()
        .filter(|a| a.contains("Hello from the function"))
        .count();
    assert_eq!(
        instance + function,
        3000,
        "every answer from one of the two"
    );
    let share = instance as f64 / 3000.0;
    assert!((share - 2.0 / 3.0).abs() < 0.03, "instance share {share}");
    for _ in 0..30 {
        assert_eq!(timed(&w.b, &w.vpc_b, &format!("{base}/to-instance")).0, 200);
    }

    // The other way: a client on A, svc2's app on B.
    let r = w.vpc_a.curl(&format!("http://{}/", w.svc2_dns)).unwrap();
    let app = echo(&r);
    assert_eq!(app["app"], w.vpc_b.name(), "{r}");
    assert!(in_source_pool(app["client"].as_str().unwrap()), "{r}");

    // Health is checked on A and seen on B (and A).
    wait_until(Duration::from_secs(15), || {
        target_status(&w.b, &w.instances) == "HEALTHY"
    });
    assert_eq!(target_status(&w.a, &w.instances), "HEALTHY");

    // B's access log has every request of B's clients, with the real one.
    let log = w.b.latticed.log_dir.join("latticed/walkthrough.log");
    let expected = 3 + 3000 + 30;
    let mut lines = Vec::new();
    wait_until(Duration::from_secs(10), || {
        lines = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        lines.len() >= expected
    });
    assert_eq!(lines.len(), expected, "one line per request on B");
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["sourceVpcId"], w.vpc_b.name());
    assert!(first["sourceIpPort"]
        .as_str()
        .unwrap()
        .starts_with("10.0.16.10:"));
    assert!(first["targetIpPort"]
        .as_str()
        .unwrap()
        .starts_with("10.0.16.10:8080"));
    assert_eq!(first["responseCode"], 200);
    // A logged svc2's request of its own client.
    let log_a = w.a.latticed.log_dir.join("latticed/walkthrough.log");
    wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&log_a).is_ok_and(|t| t.lines().count() == 1)
    });

    // The tunnel itself. B's identity reaches the instance's address in
    // vpc_a; nothing else there, nor the same address in another VPC.
    let id_b = w.b.latticed.state().join("cluster");
    let id_b = ["--identity", id_b.to_str().unwrap()];
    let ok = probe(&w, &id_b, "host-a", w.vpc_a.name(), "10.0.16.10:8080");
    assert!(ok.starts_with("ok HTTP/1.1 200"), "{ok}");
    for (vpc, target) in [
        (w.vpc_a.name(), "10.0.16.10:22"),
        (w.vpc_a.name(), "10.0.16.11:8080"),
        (w.vpc_b.name(), "10.0.16.10:8080"),
        ("vpc-nowhere", "10.0.16.10:8080"),
    ] {
        let got = probe(&w, &id_b, "host-a", vpc, target);
        assert!(got.contains("403"), "{vpc} {target}: {got}");
    }
    // A self-made certificate naming host-b: refused at the handshake.
    let got = probe(
        &w,
        &["--self-made", "host-b"],
        "host-a",
        w.vpc_a.name(),
        "10.0.16.10:8080",
    );
    assert!(
        got.starts_with("refused") && got.contains("unreachable"),
        "{got}"
    );
    // A's certificate does not name host-c: B's identity will not talk to it.
    let got = probe(&w, &id_b, "host-c", w.vpc_a.name(), "10.0.16.10:8080");
    assert!(got.starts_with("refused") && got.contains("TLS"), "{got}");
    assert!(w.a.wait_log("tunnel peer refused", Duration::from_secs(5)));
    // A counts what its tunnel carried and refused.
    let m = w.a.latticed.metrics();
    assert!(
        m.contains("latticed_tunnel_streams_total{outcome=\"refused\"} 4"),
        "{m}"
    );
    assert!(
        !m.contains("latticed_tunnel_streams_total{outcome=\"carried\"} 0"),
        "{m}"
    );
    assert!(!m.contains("latticed_tunnel_rejected_peers_total 0"), "{m}");
    assert!(w.a.wait_log(
        "not a target of a group hosted here",
        Duration::from_secs(5)
    ));
    drop(
        w.etcd
            .ctl(&["get", "--prefix", "/latticed/tunnel-ca", "--keys-only"]),
    );
}

#[test]
fn node_death_partition_and_draining_across_hosts() {
    let mut w = build();
    let url = format!("https://{}/to-instance", w.svc1_dns);
    assert_eq!(timed(&w.b, &w.vpc_b, &url).0, 200);
    wait_until(Duration::from_secs(15), || {
        target_status(&w.b, &w.instances) == "HEALTHY"
    });

    // A dies: B answers at once, and within 15 s sees A's targets
    // unhealthy.
    let killed = Instant::now();
    w.a.latticed.stop_with(libc::SIGKILL);
    let mut codes = Vec::new();
    while killed.elapsed() < Duration::from_secs(3) {
        let (code, took) = timed(&w.b, &w.vpc_b, &url);
        assert!(took < 1.5, "a request took {took} s with A down");
        codes.push(code);
    }
    assert!(codes.iter().all(|c| *c == 502 || *c == 503), "{codes:?}");
    wait_until(Duration::from_secs(15), || {
        target_status(&w.b, &w.instances) == "UNHEALTHY"
    });
    assert!(
        killed.elapsed() < Duration::from_secs(16),
        "{:?}",
        killed.elapsed()
    );
    let (code, took) = timed(&w.b, &w.vpc_b, &url);
    assert_eq!(code, 503);
    assert!(took < 0.5, "{took}");

    // A restarts (same identity, same state): traffic comes back.
    w.a.latticed.spawn_and_wait_ready().unwrap();
    wait_until(Duration::from_secs(20), || {
        timed(&w.b, &w.vpc_b, &url).0 == 200
    });
    let t = Instant::now();
    while target_status(&w.b, &w.instances) != "HEALTHY" {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "B: {}; etcd: {}; A: {}",
            target_status(&w.b, &w.instances),
            w.etcd.ctl(&["get", "--prefix", "/latticed/nodes/"]),
            w.a.latticed
                .log_text()
                .lines()
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .take(80)
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // B's link goes down: fast errors both ways; back up: both recover.
    let svc2 = format!("http://{}/", w.svc2_dns);
    w.hosts.link_b(false);
    let cut = Instant::now();
    while cut.elapsed() < Duration::from_secs(6) {
        let (code, took) = timed(&w.b, &w.vpc_b, &url);
        assert!(
            code == 502 || code == 503,
            "{code} from B during the partition"
        );
        assert!(took < 3.5, "a request from B took {took} s");
        let (code, took) = timed(&w.a, &w.vpc_a, &svc2);
        assert!(
            code == 502 || code == 503,
            "{code} from A during the partition"
        );
        assert!(took < 3.5, "a request from A took {took} s");
    }
    w.hosts.link_b(true);
    wait_until(Duration::from_secs(30), || {
        timed(&w.b, &w.vpc_b, &url).0 == 200
    });
    wait_until(Duration::from_secs(30), || {
        timed(&w.a, &w.vpc_a, &svc2).0 == 200
    });

    // Draining: a slow request in flight to the instance on A finishes
    // after the instance is deregistered through B.
    let slow = w
        .vpc_b
        .ns
        .command("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
        ])
        .arg("--cacert")
        .arg(w.b.latticed.state().join("ca.pem"))
        .arg(format!("{url}?delay_ms=3000"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    w.b.latticed.aws().ok(&[
        "deregister-targets",
        "--target-group-identifier",
        &w.instances,
        "--targets",
        &format!("id={}", walkthrough::INSTANCE),
    ]);
    let out = slow.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "the in-flight request finished"
    );
    // New requests find no target.
    wait_until(Duration::from_secs(5), || {
        timed(&w.b, &w.vpc_b, &url).0 == 503
    });
}

/// A service `name` at `domain` with one listener forwarding to a new
/// target group (`config`) holding 10.0.16.10, in network `sn`.
fn service(w: &World, sn: &str, name: &str, domain: &str, listener: (&str, u16), config: &str) {
    let aws = w.b.latticed.aws();
    let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
    let tg = id(&aws.ok(&[
        "create-target-group",
        "--name",
        &format!("{name}-tg"),
        "--type",
        "IP",
        "--config",
        config,
    ]));
    aws.ok(&[
        "register-targets",
        "--target-group-identifier",
        &tg,
        "--targets",
        "id=10.0.16.10",
    ]);
    let svc = id(&aws.ok(&[
        "create-service",
        "--name",
        name,
        "--custom-domain-name",
        domain,
    ]));
    let action = format!(
        r#"{{"forward":{{"targetGroups":[{{"targetGroupIdentifier":"{tg}","weight":1}}]}}}}"#
    );
    aws.ok(&[
        "create-listener",
        "--service-identifier",
        &svc,
        "--name",
        &listener.0.to_ascii_lowercase().replace('_', "-"),
        "--protocol",
        listener.0,
        "--port",
        &listener.1.to_string(),
        "--default-action",
        &action,
    ]);
    aws.ok(&[
        "create-service-network-service-association",
        "--service-network-identifier",
        sn,
        "--service-identifier",
        &svc,
    ]);
}

#[test]
fn grpc_http2_https_targets_and_passthrough_across_hosts() {
    let mut w = start();
    let dir = std::env::temp_dir().join(format!("latticed-xproto-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    // On host A, in vpc_a: an HTTPS app with its own certificate, and a
    // gRPC server.
    let (cert, key) = latticed_tests::self_signed(&dir, "app", "pass.example.internal");
    let mut tls = w.vpc_a.ns.command("python3");
    tls.arg(apps_dir().join("tls_app.py"))
        .args(["tls-a", "10.0.16.10", "8443"])
        .arg(&cert)
        .arg(&key);
    w.vpc_a.ns.spawn(tls);
    let mut grpc = w.vpc_a.ns.command("python3");
    grpc.arg(apps_dir().join("grpc_app.py"))
        .args(["serve", "10.0.16.10:50051"]);
    w.vpc_a.ns.spawn(grpc);
    wait_until(Duration::from_secs(30), || {
        w.vpc_a
            .ns
            .command("bash")
            .args([
                "-c",
                "exec 3<>/dev/tcp/10.0.16.10/50051 && exec 4<>/dev/tcp/10.0.16.10/8443",
            ])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });

    // Services built through B; the client is in vpc_b on host B.
    let aws = w.b.latticed.aws();
    let sn = aws.ok(&["create-service-network", "--name", "net"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let vpc = |port: u16, extra: &str| {
        format!(
            r#"{{"port":{port},"vpcIdentifier":"{}"{extra}}}"#,
            w.vpc_a.name()
        )
    };
    service(
        &w,
        &sn,
        "grpc-svc",
        "grpc.example.internal",
        ("HTTP", 80),
        &vpc(
            50051,
            r#","protocol":"HTTP","protocolVersion":"GRPC","healthCheck":{"enabled":false}"#,
        ),
    );
    service(
        &w,
        &sn,
        "grpc-tls",
        "grpcs.example.internal",
        ("HTTPS", 443),
        &vpc(
            50051,
            r#","protocol":"HTTP","protocolVersion":"GRPC","healthCheck":{"enabled":false}"#,
        ),
    );
    service(
        &w,
        &sn,
        "secure-svc",
        "secure.example.internal",
        ("HTTP", 80),
        &vpc(8443, r#","protocol":"HTTPS""#),
    );
    service(
        &w,
        &sn,
        "pass-svc",
        "pass.example.internal",
        ("TLS_PASSTHROUGH", 8443),
        &vpc(8443, r#","protocol":"TCP""#),
    );
    aws.ok(&[
        "create-service-network-vpc-association",
        "--service-network-identifier",
        &sn,
        "--vpc-identifier",
        w.vpc_b.name(),
    ]);
    let b_ca = w.b.latticed.state().join("ca.pem");
    wait_until(Duration::from_secs(10), || {
        curl_in(&w.vpc_b.ns, "http://secure.example.internal/x", &[]).is_ok()
    });

    // gRPC over cleartext HTTP/2 and over TLS: unary, streaming,
    // trailers, error status; the server saw the source pool.
    for (target, ca) in [
        ("grpc.example.internal:80", None),
        ("grpcs.example.internal:443", Some(b_ca.to_str().unwrap())),
    ] {
        let mut cmd = w.vpc_b.ns.command("python3");
        cmd.arg(apps_dir().join("grpc_app.py"))
            .args(["call", target])
            .args(ca);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["echo"], "echo:hi", "{target}: {v}");
        assert_eq!(v["countTrailers"]["x-count"], "5", "{v}");
        assert_eq!(v["fail"], "NOT_FOUND", "{v}");
        let peer = v["echoTrailers"]["x-peer"].as_str().unwrap();
        assert!(peer.starts_with("ipv4:169.254.171."), "server saw {peer}");
    }
    // An HTTPS target, from B to A (HTTP/2 targets are gRPC's above).
    let body = curl_in(&w.vpc_b.ns, "http://secure.example.internal/x", &[]).unwrap();
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body}: {e}"));
    assert_eq!(v["app"], "tls-a", "{v}");
    assert!(in_source_pool(v["client"].as_str().unwrap()), "{v}");
    // TLS_PASSTHROUGH: the app's own certificate and the client's SNI.
    let body = curl_in(
        &w.vpc_b.ns,
        "https://pass.example.internal:8443/through",
        &["--cacert", &cert],
    )
    .unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["sni"], "pass.example.internal", "{v}");
    assert!(in_source_pool(v["client"].as_str().unwrap()), "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}
