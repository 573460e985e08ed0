//! Protocols through the proxy with real clients and servers: gRPC (Python
//! grpcio) over cleartext HTTP/2 and over TLS, HTTPS targets, TLS_PASSTHROUGH
//! to TCP targets, HTTP/2 with prior knowledge, and a user-supplied
//! certificate named by `certificateArn`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "integration tests: a panic is the failure report"
)]

use std::time::Duration;

use latticed_tests::*;
use serde_json::{json, Value};

const ALB: &str =
    "arn:aws:elasticloadbalancing:us-east-1:111122223333:loadbalancer/app/web/50dc6c495c0c9188";

fn forward(tg: &str) -> Value {
    json!({"forward": {"targetGroups": [{"targetGroupIdentifier": tg, "weight": 1}]}})
}

#[test]
fn grpc_https_targets_passthrough_h2c_and_own_certificates() {
    let mut a = Vpc::new("a");
    let b = Vpc::new("b");
    let dir = std::env::temp_dir().join(format!("latticed-proto-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();

    // Apps in vpc-a: an HTTPS app (its own self-signed certificate) and a
    // gRPC server.
    let (app_cert, app_key) = self_signed(&dir, "app", "pass.example.internal");
    let mut tls = a.ns.command("python3");
    tls.arg(apps_dir().join("tls_app.py")).args([
        "tls-a",
        "10.0.16.10",
        "8443",
        &app_cert,
        &app_key,
    ]);
    a.ns.spawn(tls);
    let mut grpc = a.ns.command("python3");
    grpc.arg(apps_dir().join("grpc_app.py"))
        .args(["serve", "10.0.16.10:50051"]);
    a.ns.spawn(grpc);
    wait_until(Duration::from_secs(10), || {
        curl_in(&a.ns, "https://10.0.16.10:8443/", &["-k"]).is_ok()
    });
    // The gRPC server starts later than the TLS app (grpcio's import, slow
    // on a cold machine: CI once called it before it listened).
    wait_until(Duration::from_secs(30), || {
        a.ns.command("bash")
            .args(["-c", "exec 3<>/dev/tcp/10.0.16.10/50051"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });

    let members: Vec<Value> = ["grpc-svc", "secure-svc", "pass-svc", "alb-svc", "own-cert"]
        .iter()
        .map(|s| json!({"serviceNetworkIdentifier": "net", "serviceIdentifier": s}))
        .collect();
    let config = json!({
        "serviceNetworks": [{"name": "net"}],
        "services": [
            {"name": "grpc-svc", "customDomainName": "grpc.example.internal", "listeners": [
                {"name": "h2c", "protocol": "HTTP", "port": 80, "defaultAction": forward("grpc")},
                {"name": "tls", "protocol": "HTTPS", "port": 443, "defaultAction": forward("grpc")}]},
            {"name": "secure-svc", "customDomainName": "secure.example.internal", "listeners": [
                {"name": "http", "protocol": "HTTP", "port": 80, "defaultAction": forward("https-app")}]},
            {"name": "pass-svc", "customDomainName": "pass.example.internal", "listeners": [
                {"name": "pass", "protocol": "TLS_PASSTHROUGH", "port": 8443, "defaultAction": forward("tcp-app")}]},
            {"name": "alb-svc", "customDomainName": "alb.example.internal", "listeners": [
                {"name": "http", "protocol": "HTTP", "port": 80, "defaultAction": forward("alb")}]},
            {"name": "own-cert", "customDomainName": "own.example.internal",
             "certificateArn": "arn:aws:acm:us-east-1:111122223333:certificate/own-cert",
             "listeners": [{"name": "https", "protocol": "HTTPS", "defaultAction": forward("app")}]}
        ],
        "targetGroups": [
            {"name": "grpc", "type": "IP", "config": {"port": 50051, "protocol": "HTTP", "protocolVersion": "GRPC",
                "vpcIdentifier": a.name(), "healthCheck": {"enabled": false}}, "targets": [{"id": "10.0.16.10"}]},
            {"name": "https-app", "type": "IP", "config": {"port": 8443, "protocol": "HTTPS", "vpcIdentifier": a.name()},
                "targets": [{"id": "10.0.16.10"}]},
            {"name": "tcp-app", "type": "IP", "config": {"port": 8443, "protocol": "TCP", "vpcIdentifier": a.name()},
                "targets": [{"id": "10.0.16.10"}]},
            {"name": "app", "type": "IP", "config": {"port": 8080, "protocol": "HTTP", "vpcIdentifier": a.name()},
                "targets": [{"id": "10.0.16.10"}]},
            {"name": "alb", "type": "ALB", "config": {"port": 8080, "protocol": "HTTP", "vpcIdentifier": a.name()},
                "targets": [{"id": ALB}]}
        ],
        "serviceNetworkServiceAssociations": members,
        "serviceNetworkVpcAssociations": [{"serviceNetworkIdentifier": "net", "vpcIdentifier": b.name()}]
    });
    let mut latticed = Latticed::prepare(&config);
    // The user-supplied certificate of own-cert, where certificateArn says.
    let own = latticed.state_dir.join("certificates/own-cert");
    std::fs::create_dir_all(&own).unwrap();
    let (own_cert, own_key) = self_signed(&dir, "own", "own.example.internal");
    std::fs::copy(&own_cert, own.join("chain.pem")).unwrap();
    std::fs::copy(&own_key, own.join("key.pem")).unwrap();
    // The inventory places the load balancer.
    std::fs::write(
        latticed.state_dir.join("inventory.json"),
        json!({"loadBalancers": {ALB: {"vpc": a.name(), "address": "10.0.16.10"}}}).to_string(),
    )
    .unwrap();
    latticed.spawn_and_wait_ready().expect("latticed starts");
    let ca = latticed.state_dir.join("ca.pem");

    // gRPC over cleartext HTTP/2 (prior knowledge) and over TLS (ALPN h2):
    // unary, server streaming, trailers and error statuses pass through.
    for (target, ca) in [
        ("grpc.example.internal:80", None),
        ("grpc.example.internal:443", Some(ca.to_str().unwrap())),
    ] {
        let mut cmd = b.ns.command("python3");
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
        assert_eq!(v["echoTrailers"]["x-trailer"], "unary", "{v}");
        let peer = v["echoTrailers"]["x-peer"].as_str().unwrap();
        assert!(peer.starts_with("ipv4:169.254.171."), "server saw {peer}");
        assert_eq!(v["count"], json!(["0", "1", "2", "3", "4"]), "{v}");
        assert_eq!(v["countTrailers"]["x-count"], "5", "{v}");
        assert_eq!(v["fail"], "NOT_FOUND", "{v}");
        assert_eq!(v["failDetails"], "no such thing", "{v}");
    }

    // An HTTPS target group: TLS from the proxy to the app.
    let body = b.curl("http://secure.example.internal/x").unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["app"], "tls-a");
    assert!(in_source_pool(v["client"].as_str().unwrap()), "{v}");
    assert_eq!(v["host"], "secure.example.internal", "{v}");

    // HTTP/2 with prior knowledge on an HTTP listener.
    let out = curl_in(
        &b.ns,
        "http://secure.example.internal/",
        &[
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
        ],
    )
    .unwrap();
    assert_eq!(out, "2");

    // TLS_PASSTHROUGH: the app's own certificate reaches the client, with
    // the client's SNI.
    let body = curl_in(
        &b.ns,
        "https://pass.example.internal:8443/through",
        &["--cacert", &app_cert],
    )
    .unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["app"], "tls-a");
    assert_eq!(v["sni"], "pass.example.internal", "{v}");
    assert!(in_source_pool(v["client"].as_str().unwrap()), "{v}");

    // An ALB target, placed by the inventory.
    let body = b.curl("http://alb.example.internal/lb").unwrap();
    assert!(
        body.contains(&format!("\"app\":\"{}\"", a.name())),
        "{body}"
    );

    // TLS 1.2 as well as 1.3.
    let out = curl_in(
        &b.ns,
        "https://grpc.example.internal/",
        &[
            "--cacert",
            ca.to_str().unwrap(),
            "--tls-max",
            "1.2",
            "-o",
            "/dev/null",
            "-w",
            "%{ssl_verify_result}",
        ],
    );
    assert!(out.is_ok(), "a TLS 1.2 handshake: {out:?}");

    // A user-supplied certificate instead of the local CA's.
    let body = curl_in(
        &b.ns,
        "https://own.example.internal/",
        &["--cacert", &own_cert],
    )
    .unwrap();
    assert!(
        body.contains(&format!("\"app\":\"{}\"", a.name())),
        "{body}"
    );
    let err = curl_in(
        &b.ns,
        "https://own.example.internal/",
        &["--cacert", ca.to_str().unwrap()],
    )
    .unwrap_err();
    assert_eq!(
        err.0, 60,
        "the local CA did not issue own-cert's certificate: {err:?}"
    );
}

/// HTTP/1.1 as it arrives on the wire, both ways: every way a body is
/// framed, HEAD, 1xx, pipelining, request bodies, hop-by-hop fields, and
/// a chunked request body (which hyper serves) on the same connection.
#[test]
fn http1_framing_pipelining_and_hop_by_hop_fields() {
    let mut a = Vpc::new("a");
    let b = Vpc::new("b");
    let mut app = a.ns.command("python3");
    app.arg(apps_dir().join("h1_framing.py"))
        .args(["serve", "10.0.16.10", "9000"]);
    a.ns.spawn(app);
    wait_until(Duration::from_secs(5), || {
        curl_in(&a.ns, "http://10.0.16.10:9000/length", &[]).is_ok()
    });
    let config = json!({
        "serviceNetworks": [{"name": "net"}],
        "services": [{"name": "frames", "customDomainName": "frames.example.internal",
            "listeners": [{"name": "http", "protocol": "HTTP", "port": 80, "defaultAction": forward("frames")}]}],
        "targetGroups": [{"name": "frames", "type": "IP",
            "config": {"port": 9000, "protocol": "HTTP", "vpcIdentifier": a.name()},
            "targets": [{"id": "10.0.16.10"}]}],
        "serviceNetworkServiceAssociations": [{"serviceNetworkIdentifier": "net", "serviceIdentifier": "frames"}],
        "serviceNetworkVpcAssociations": [{"serviceNetworkIdentifier": "net", "vpcIdentifier": b.name()}]
    });
    let mut latticed = Latticed::prepare(&config);
    latticed.spawn_and_wait_ready().unwrap();
    wait_until(Duration::from_secs(5), || {
        b.curl("http://frames.example.internal/length").is_ok()
    });

    let r = run_json(
        b.ns.command("python3")
            .arg(apps_dir().join("h1_framing.py"))
            .args(["probe", "frames.example.internal", "80"]),
    );
    let header = |v: &Value, name: &str| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .filter(|h| h[0] == name)
            .map(|h| h[1].as_str().unwrap().to_owned())
            .collect()
    };

    // What the target received: the proxy's forwarding fields only (the
    // client's X-Forwarded-For is replaced), no hop-by-hop fields or the
    // ones `Connection` names, `TE: trailers` kept.
    let seen = &r["length"]["info"]["headers"];
    assert_eq!(header(seen, "host"), ["frames.example.internal"]);
    let xff = header(seen, "x-forwarded-for");
    assert_eq!(xff.len(), 1, "{seen}");
    assert_ne!(xff[0], "6.6.6.6");
    assert_eq!(header(seen, "x-forwarded-proto"), ["http"]);
    assert_eq!(header(seen, "x-forwarded-port"), ["80"]);
    assert_eq!(header(seen, "x-amzn-requestid").len(), 1);
    assert_eq!(header(seen, "te"), ["trailers"]);
    assert!(header(seen, "x-secret").is_empty(), "{seen}");
    assert!(header(seen, "connection").is_empty(), "{seen}");
    // What the client received: the target's hop-by-hop fields removed.
    let got = &r["length"]["headers"];
    assert_eq!(r["length"]["status"], 200);
    assert_eq!(r["length"]["framing"], "length");
    for hop in ["x-hop", "keep-alive", "connection"] {
        assert!(header(got, hop).is_empty(), "{hop} in {got}");
    }

    // Each framing arrives intact, and the connection goes on after it.
    assert_eq!(r["chunked"]["framing"], "chunked");
    assert_eq!(r["chunked"]["info"]["path"], "/chunked");
    assert!(r["chunked"]["len"].as_u64().unwrap() > 5000);
    assert_eq!(r["head"]["status"], 200);
    assert!(!header(&r["head"]["headers"], "content-length").is_empty());
    assert_eq!(r["nocontent"]["status"], 204);
    assert_eq!(r["notmodified"]["status"], 304);
    assert_eq!(
        r["continue"]["status"], 200,
        "100 Continue is not passed on"
    );
    assert_eq!(r["continue"]["info"]["path"], "/continue");
    assert_eq!(r["upload"]["info"]["bodyLen"], 102_400);
    assert_eq!(r["upload"]["info"]["bodySha"], r["uploadSha"]);
    assert_eq!(r["pipelined"], json!(["/p1", "/p2"]));
    assert_eq!(r["chunkedUpload"]["info"]["bodyLen"], 102_400);
    assert_eq!(r["chunkedUpload"]["info"]["bodySha"], r["uploadSha"]);
    assert_eq!(r["before"]["status"], 200);
    assert_eq!(r["after"]["info"]["path"], "/after");
    // hyper's side of the same connection: bodies arrive whole whatever
    // the target's framing, on the worker's pooled target connection.
    assert_eq!(r["hyperChunked"]["info"]["path"], "/chunked");
    assert_eq!(
        r["hyperChunked"]["len"], r["chunked"]["len"],
        "the chunked body decoded"
    );
    assert_eq!(
        r["hyperChunked"]["info"]["port"],
        r["after"]["info"]["port"]
    );
    assert_eq!(r["hyperHead"]["status"], 200);
    assert_eq!(r["hyperContinue"]["info"]["path"], "/continue");
    assert_eq!(r["hyperNoContent"]["status"], 204);
    assert_eq!(r["hyperClose"]["info"]["path"], "/close");
    assert!(r["hyperClose"]["len"].as_u64().unwrap() > 3000);
    assert_eq!(r["hyperAfterClose"]["info"]["path"], "/after-close");
    assert_eq!(r["close"]["framing"], "close");
    assert_eq!(r["close"]["status"], 200);
    assert_eq!(r["closedAfter"], true);

    // One client connection used one pooled target connection throughout
    // the plain requests.
    let port = &r["length"]["info"]["port"];
    for case in ["chunked", "continue", "upload"] {
        assert_eq!(&r[case]["info"]["port"], port, "{case}");
    }
    drop(latticed);
}
