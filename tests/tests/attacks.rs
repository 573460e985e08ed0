//! A tenant attacking through the data path: request smuggling and desync,
//! paths that hide from rules and policies, fields only the proxy may set,
//! and routing that a client's connection habits must not skew.
//!
//! Each test runs the attack from inside a client namespace against a real
//! latticed and asserts what the target saw.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "integration tests: a panic is the failure report"
)]

use std::{collections::BTreeMap, time::Duration};

use latticed_tests::*;
use serde_json::{json, Value};

fn forward(tg: &str) -> Value {
    json!({"forward": {"targetGroups": [{"targetGroupIdentifier": tg}]}})
}

fn admin_rule() -> Value {
    json!({"name": "no-admin", "priority": 1,
        "match": {"httpMatch": {"pathMatch": {"match": {"prefix": "/admin"}}}},
        "action": {"fixedResponse": {"statusCode": 403}}})
}

/// Every classic smuggling payload (CL.TE, TE.CL, TE.TE obfuscations,
/// Content-Length variants, chunk-size tricks, framing fields listed in
/// `Connection`, two Hosts) on a new connection, then an innocent request
/// from another connection. The target, a lenient parser as many are,
/// must have parsed exactly the requests whose answers reached the client
/// (see the one exception below): anything else is a request that skipped
/// rules, auth and the log, or one that captured the next caller's.
#[test]
fn smuggled_requests_never_reach_the_target() {
    let host = "smuggle.example.internal";
    let raw = RawTarget::start("smuggle.py", host, json!([admin_rule()]), &[]);
    let (b, log) = (&raw.b, &raw.log);

    let results = run_json(
        b.ns.command("python3")
            .arg(apps_dir().join("smuggle.py"))
            .args(["probe", host, "80"]),
    );
    // HTTP/2 to HTTP/1.1: a content-length that disagrees with the DATA
    // sent, shorter (the rest would be a second request) or longer (the
    // target would wait for the next caller's bytes).
    let smuggled = format!("x=1GET /h2-down/smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n");
    for declared in ["3", "400"] {
        let got = curl_in(
            &b.ns,
            &format!("http://{host}/h2-down/first"),
            &[
                "--http2-prior-knowledge",
                "-H",
                &format!("Content-Length: {declared}"),
                "--data-binary",
                &smuggled,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ],
        );
        assert!(
            !matches!(&got, Ok(code) if code == "200"),
            "content-length {declared} with {} bytes of DATA was forwarded: {got:?}",
            smuggled.len()
        );
    }
    let parsed: Vec<Value> = std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The request itself may have been streamed in part before its body
    // proved longer or shorter than declared (the target gets it cut
    // off); what followed in its DATA never becomes a request, and the
    // next caller gets its own answer.
    let h2_paths: Vec<&str> = parsed
        .iter()
        .filter_map(|p| p["path"].as_str())
        .filter(|p| p.starts_with("/h2-down/"))
        .collect();
    assert!(
        h2_paths.iter().all(|p| *p == "/h2-down/first"),
        "{h2_paths:?}"
    );
    assert_eq!(
        b.curl(&format!("http://{host}/h2-down/victim")).unwrap(),
        "/h2-down/victim"
    );

    let cases = results.as_object().unwrap();
    assert!(cases.len() >= 50, "{results}");
    let mut report = Vec::new();
    for (case, r) in cases {
        let prefix = format!("/{case}/");
        let mut seen_by_target: Vec<&str> = parsed
            .iter()
            .filter_map(|p| p["path"].as_str())
            .filter(|p| p.starts_with(&prefix))
            .collect();
        let mut answered: Vec<&str> = r["answers"]
            .as_array()
            .unwrap()
            .iter()
            .chain(r["victim"].as_array().unwrap())
            .filter_map(|a| a["seen"].as_str())
            .collect();
        seen_by_target.sort_unstable();
        answered.sort_unstable();
        // One exception: a request whose chunked body turns out malformed
        // midway has been streamed to the target in part (as by any proxy
        // that does not buffer bodies); the client gets a 400 for it and
        // the target an unfinished body. That request is the client's
        // own, not a smuggled one.
        let first = format!("/{case}/first");
        let broken_off = r["answers"][0]["status"] == 400 && !answered.contains(&first.as_str());
        let unanswered: Vec<&&str> = seen_by_target
            .iter()
            .filter(|p| !(answered.contains(p) || (broken_off && **p == first)))
            .collect();
        let lost: Vec<&&str> = answered
            .iter()
            .filter(|p| !seen_by_target.contains(p))
            .collect();
        if !unanswered.is_empty() || !lost.is_empty() {
            report.push(format!(
                "{case}: the target parsed {seen_by_target:?} but the client was answered for {answered:?} ({r})"
            ));
        }
        let victim = r["victim"].as_array().unwrap();
        let victim_path = format!("/{case}/victim");
        if victim.len() != 1
            || victim[0]["status"] != 200
            || victim[0]["seen"] != victim_path.as_str()
        {
            report.push(format!("{case}: the next caller got {victim:?}"));
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));

    // The framing tricks the proxy cannot forward safely are refused, and
    // the connection closed after the refusal.
    for case in [
        "cl-listed",
        "cl-listed-ka",
        "cl-listed-caps",
        "cl-listed-wait",
        "host-listed",
        "te-listed",
        "two-hosts",
        "cl-pair",
        "cl-two",
        "cl-plus",
    ] {
        let r = &results[case];
        assert_eq!(r["answers"][0]["status"], 400, "{case}: {r}");
        assert_eq!(r["answers"].as_array().unwrap().len(), 1, "{case}: {r}");
        assert_eq!(r["closed"], true, "{case}: {r}");
    }
    // A chunked body the client botched is the client's error.
    for case in ["chunk-overflow", "chunk-negative", "chunk-0x"] {
        let r = &results[case];
        assert_eq!(r["answers"][0]["status"], 400, "{case}: {r}");
    }
    // Nothing the target parsed was a smuggled or capturing request.
    for p in &parsed {
        let path = p["path"].as_str().unwrap();
        assert!(
            !path.ends_with("/capture"),
            "a capturing request reached the target: {p}"
        );
    }
    drop(raw);
}

/// `//admin`, `/./admin`, `/public/../admin`, `/%61dmin` over HTTP/1.1 and
/// HTTP/2 meet the same rule and policy as `/admin`; encoded slashes are
/// refused; the target gets the normalised path; query keys are decoded
/// for policies; client copies of the proxy's fields under `_` spellings
/// never arrive.
#[test]
fn hidden_paths_meet_rules_and_policies_and_proxy_fields_stay_the_proxys() {
    let a = Vpc::new("a");
    let b = Vpc::new("b");
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "All", "Effect": "Allow", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke", "Resource": "*"},
            {"Sid": "NoAdmin", "Effect": "Deny", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke", "Resource": "*",
             "Condition": {"StringLike": {"vpc-lattice-svcs:RequestPath": "/admin*"}}},
            {"Sid": "NoSecret", "Effect": "Deny", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke",
             "Resource": "arn:aws:vpc-lattice:*:*:service/*/secret*"},
            {"Sid": "NoDelete", "Effect": "Deny", "Principal": "*", "Action": "vpc-lattice-svcs:Invoke", "Resource": "*",
             "Condition": {"StringEquals": {"vpc-lattice-svcs:RequestQueryString/action": "delete"}}}
        ]
    });
    let config = json!({
        "serviceNetworks": [{"name": "net"}],
        "services": [
            {"name": "ruled", "customDomainName": "ruled.example.internal",
             "listeners": [{"name": "http", "protocol": "HTTP", "port": 80,
                "defaultAction": forward("app"), "rules": [admin_rule()]}]},
            {"name": "guarded", "customDomainName": "guarded.example.internal", "authType": "AWS_IAM",
             "listeners": [{"name": "http", "protocol": "HTTP", "port": 80, "defaultAction": forward("app")}]}],
        "targetGroups": [{"name": "app", "type": "IP",
            "config": {"port": 8080, "protocol": "HTTP", "vpcIdentifier": a.name()},
            "targets": [{"id": "10.0.16.10"}]}],
        "serviceNetworkServiceAssociations": [
            {"serviceNetworkIdentifier": "net", "serviceIdentifier": "ruled"},
            {"serviceNetworkIdentifier": "net", "serviceIdentifier": "guarded"}],
        "serviceNetworkVpcAssociations": [{"serviceNetworkIdentifier": "net", "vpcIdentifier": b.name()}],
        "authPolicies": [{"resourceIdentifier": "guarded", "policy": policy.to_string()}]
    });
    let mut latticed = Latticed::prepare(&config);
    latticed.spawn_and_wait_ready().unwrap();
    wait_until(Duration::from_secs(10), || {
        b.curl("http://ruled.example.internal/").is_ok()
            && b.curl("http://guarded.example.internal/").is_ok()
    });
    // HTTP/1.1 on a new connection per request, and HTTP/2 (h2c).
    let versions: [&[&str]; 2] = [&["--http1.1"], &["--http2-prior-knowledge"]];
    let status = |host: &str, path: &str, version: &[&str]| -> String {
        let mut args = vec!["--path-as-is", "-o", "/dev/null", "-w", "%{http_code}"];
        args.extend_from_slice(version);
        curl_in(&b.ns, &format!("http://{host}{path}"), &args)
            .unwrap_or_else(|e| panic!("{host}{path} {version:?}: {e:?}"))
    };
    let mut wrong = Vec::new();
    for version in versions {
        for path in [
            "/admin/x",
            "//admin/x",
            "/./admin/x",
            "/public/../admin/x",
            "/%61dmin/x",
            "/%2e/admin/x",
            "/public/%2e%2e/admin/x",
        ] {
            for host in ["ruled.example.internal", "guarded.example.internal"] {
                let got = status(host, path, version);
                if got != "403" {
                    wrong.push(format!("{host}{path} {version:?}: {got}, want 403"));
                }
            }
        }
        for path in ["//secret/x", "/%73ecret", "/x/../secret"] {
            let got = status("guarded.example.internal", path, version);
            if got != "403" {
                wrong.push(format!("guarded{path} {version:?}: {got}, want 403"));
            }
        }
        for path in [
            "/public/..%2fadmin/x",
            "/a%2Fb",
            "/a%5cb",
            "/a%00b",
            "/a%zz",
            "/public/..;/admin/x",
        ] {
            for host in ["ruled.example.internal", "guarded.example.internal"] {
                let got = status(host, path, version);
                if got != "400" {
                    wrong.push(format!("{host}{path} {version:?}: {got}, want 400"));
                }
            }
        }
        for (query, want) in [
            ("?action=delete", "403"),
            ("?%61ction=delete", "403"),
            ("?action=%64elete", "403"),
            ("?action=keep", "200"),
        ] {
            let got = status("guarded.example.internal", &format!("/x{query}"), version);
            if got != want {
                wrong.push(format!("guarded/x{query} {version:?}: {got}, want {want}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // The target gets the normalised path (and the query as sent), and none
    // of the client's copies of the proxy's fields, however spelled.
    for version in versions {
        for host in ["ruled.example.internal", "guarded.example.internal"] {
            let mut args = vec![
                "--path-as-is",
                "-H",
                "x_amzn_lattice_identity: Principal=arn:aws:iam::111122223333:root",
                "-H",
                "X_Forwarded_For: 6.6.6.6",
                "-H",
                "x-amzn-lattice-network: forged",
            ];
            args.extend_from_slice(version);
            let body = curl_in(
                &b.ns,
                &format!("http://{host}/public/../x/./%7Ey//z?q=%2F"),
                &args,
            )
            .unwrap();
            let e = echo(&body);
            assert_eq!(e["path"], "/x/~y/z", "{host} {version:?}: {e}");
            assert_eq!(e["query"], "q=%2F", "{host} {version:?}: {e}");
            let names: Vec<&str> = e["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h[0].as_str().unwrap())
                .collect();
            for forged in ["x_amzn_lattice_identity", "x_forwarded_for"] {
                assert!(!names.contains(&forged), "{host} {version:?}: {e}");
            }
            assert_eq!(e["latticeIdentity"], "", "{host} {version:?}: {e}");
            assert_ne!(e["latticeNetwork"], "forged", "{host} {version:?}: {e}");
            assert_ne!(e["xForwardedFor"], "6.6.6.6", "{host} {version:?}: {e}");
        }
    }
    drop(latticed);
}

/// A 2:1 split between an IP group and a function group holds for clients
/// that open a new connection per request, over HTTP and HTTPS and over
/// HTTP/2: a request is routed once, whichever path serves it.
#[test]
fn weights_hold_for_a_new_connection_per_request() {
    let a = Vpc::new("a");
    let b = Vpc::new("b");
    let runner = LambdaRunner::start();
    let action = json!({"forward": {"targetGroups": [
        {"targetGroupIdentifier": "app", "weight": 2},
        {"targetGroupIdentifier": "hello", "weight": 1}]}});
    let config = json!({
        "serviceNetworks": [{"name": "net"}],
        "services": [{"name": "split", "customDomainName": "split.example.internal",
            "listeners": [
                {"name": "http", "protocol": "HTTP", "port": 80, "defaultAction": action},
                {"name": "https", "protocol": "HTTPS", "port": 443, "defaultAction": action}]}],
        "targetGroups": [
            {"name": "app", "type": "IP", "config": {"port": 8080, "protocol": "HTTP", "vpcIdentifier": a.name()},
             "targets": [{"id": "10.0.16.10"}]},
            {"name": "hello", "type": "LAMBDA", "config": {"lambdaEventStructureVersion": "V2"},
             "targets": [{"id": "arn:aws:lambda:us-east-1:111122223333:function:hello"}]}],
        "serviceNetworkServiceAssociations": [{"serviceNetworkIdentifier": "net", "serviceIdentifier": "split"}],
        "serviceNetworkVpcAssociations": [{"serviceNetworkIdentifier": "net", "vpcIdentifier": b.name()}]
    });
    let mut latticed = Latticed::prepare(&config);
    latticed.extra_args = vec!["--lambda-endpoint".into(), runner.endpoint.clone()];
    latticed.spawn_and_wait_ready().unwrap();
    let ca = latticed.state_dir.join("ca.pem");
    let ca = ca.to_str().unwrap();
    wait_until(Duration::from_secs(10), || {
        b.curl("http://split.example.internal/").is_ok()
    });
    const N: usize = 900;
    let mut shares = BTreeMap::new();
    for (name, url, args) in [
        (
            "http/1.1",
            "http://split.example.internal",
            vec!["--http1.1"],
        ),
        (
            "https/1.1",
            "https://split.example.internal",
            vec!["--http1.1", "--cacert", ca],
        ),
        (
            "https/2",
            "https://split.example.internal",
            vec!["--http2", "--cacert", ca],
        ),
    ] {
        // One curl, N URLs, each on a connection of its own.
        let out =
            b.ns.command("curl")
                .args([
                    "-sS",
                    "--max-time",
                    "120",
                    "-w",
                    "\n",
                    "-H",
                    "Connection: close",
                ])
                .args(&args)
                .arg(format!("{url}/[1-{N}]"))
                .output()
                .unwrap();
        assert!(out.status.success(), "{name}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let answers: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(answers.len(), N, "{name}");
        let to_function = answers
            .iter()
            .filter(|l| l.contains("Hello from the function"))
            .count();
        let to_app = answers.iter().filter(|l| l.contains("\"app\"")).count();
        assert_eq!(to_function + to_app, N, "{name}: {text}");
        shares.insert(name, to_app as f64 / N as f64);
    }
    // 2/3 within 5 points: over 4 standard deviations of 900 draws.
    for (name, share) in &shares {
        assert!(
            (share - 2.0 / 3.0).abs() < 0.05,
            "{name}: the IP group got {:.1}% of requests, want 66.7% ({shares:?})",
            share * 100.0
        );
    }
    drop(latticed);
}

const IAM_HOST: &str = "iam.example.internal";

/// latticed with an AWS_IAM service (allowing every signed caller) on
/// `target`'s app, reachable from `clients`, run with `args`; a known
/// principal's key and secret.
fn iam_service(target: &Vpc, clients: &[&Vpc], args: &[&str]) -> (Latticed, String, String) {
    let policy = json!({"Statement": [{"Effect": "Allow", "Principal": "*",
        "Action": "vpc-lattice-svcs:Invoke", "Resource": "*"}]});
    let vpcs: Vec<Value> = clients
        .iter()
        .map(|c| json!({"serviceNetworkIdentifier": "net", "vpcIdentifier": c.name()}))
        .collect();
    let config = json!({
        "serviceNetworks": [{"name": "net"}],
        "services": [{"name": "iam", "customDomainName": IAM_HOST, "authType": "AWS_IAM",
            "listeners": [{"name": "http", "protocol": "HTTP", "port": 80, "defaultAction": forward("app")}]}],
        "targetGroups": [{"name": "app", "type": "IP",
            "config": {"port": 8080, "protocol": "HTTP", "vpcIdentifier": target.name()},
            "targets": [{"id": "10.0.16.10"}]}],
        "serviceNetworkServiceAssociations": [{"serviceNetworkIdentifier": "net", "serviceIdentifier": "iam"}],
        "serviceNetworkVpcAssociations": vpcs,
        "authPolicies": [{"resourceIdentifier": "iam", "policy": policy.to_string()}]
    });
    let mut latticed = Latticed::prepare(&config);
    latticed.extra_args = args.iter().map(|a| (*a).to_owned()).collect();
    let (key, secret) = add_principal(
        &latticed.state_dir,
        "arn:aws:iam::111122223333:role/app",
        &[],
    );
    latticed.spawn_and_wait_ready().unwrap();
    for c in clients {
        wait_until(Duration::from_secs(10), || {
            c.curl(&format!("http://{IAM_HOST}/")).is_ok()
        });
    }
    (latticed, key, secret)
}

/// `held_bodies.py` from `client` against the AWS_IAM service, started.
fn held_bodies(client: &Vpc, key: &str) -> std::process::Child {
    client
        .ns
        .command("python3")
        .arg(apps_dir().join("held_bodies.py"))
        .args([IAM_HOST, "80", key])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Its report.
fn report(run: std::process::Child) -> Value {
    serde_json::from_slice(&run.wait_with_output().unwrap().stdout).unwrap()
}

/// An AWS_IAM service reads a signed body whole to check its hash. A
/// client must not make it hold that memory: an unknown key is refused
/// before any body is read, a body that stalls is cut at the body deadline,
/// and bodies held at once stay within one memory budget (503 past it), of
/// which one VPC's clients hold at most their share: another tenant's
/// signed requests still go through while one VPC holds all of its own.
#[test]
fn bodies_held_for_signatures_are_bounded_in_time_and_memory() {
    let a = Vpc::new("a");
    let b = Vpc::new("b");
    let c = Vpc::new("c");
    // Two 3 MiB bodies fill one VPC's 6 MiB share; 10 MiB stay for others.
    // They are held 4 s: vpc-c asks meanwhile.
    let (latticed, key, secret) = iam_service(
        &a,
        &[&b, &c],
        &[
            "--body-timeout",
            "4",
            "--body-memory-mib",
            "16",
            "--body-memory-per-vpc-mib",
            "6",
        ],
    );
    let run = held_bodies(&b, &key);
    // While vpc-b holds its whole share, vpc-c's signed body is read and
    // checked as usual.
    std::thread::sleep(Duration::from_millis(1200));
    let v = run_json(
        c.ns.command("python3")
            .arg(apps_dir().join("sigv4_client.py"))
            .args([
                &format!("http://{IAM_HOST}/upload"),
                &key,
                &secret,
                "signed",
                // Unused over plain HTTP, but must be a certificate file.
                &latticed.state_dir.join("ca.pem").display().to_string(),
                &"c".repeat(100_000),
            ]),
    );
    assert_eq!(v["status"], 200, "vpc-c is not starved by vpc-b: {v}");
    let r = report(run);
    // Refused on its head alone: no body was ever sent.
    assert_eq!(r["unknown"]["status"], 403, "{r}");
    assert!(r["unknown"]["after"].as_f64().unwrap() < 5.0, "{r}");
    // Two 3 MiB bodies fit in vpc-b's share; a third does not and is told
    // at once, though the budget as a whole has room.
    assert_eq!(r["over"]["status"], 503, "{r}");
    assert!(r["over"]["after"].as_f64().unwrap() < 5.0, "{r}");
    // The stalled bodies are cut at the 4 s deadline, not held.
    for held in ["held0", "held1"] {
        assert_eq!(r[held]["status"], 403, "{r}");
        let after = r[held]["after"].as_f64().unwrap();
        assert!((3.5..15.0).contains(&after), "{held}: {r}");
    }
    assert!(
        latticed
            .log_text()
            .contains("too many request bodies from this VPC are being held"),
        "the refusal is logged with its reason"
    );
    // Once they are gone, the share is whole again: the same run takes two
    // bodies again (each cut at the deadline) and refuses only the third.
    let r = report(held_bodies(&b, &key));
    assert_eq!(r["over"]["status"], 503, "{r}");
    assert_eq!(r["held0"]["status"], 403, "{r}");
    assert_eq!(r["held1"]["status"], 403, "{r}");
    drop(latticed);
}

/// The whole budget binds too: once it is spent, a VPC with share to spare
/// is refused with 503, and the reason is logged.
#[test]
fn bodies_past_the_whole_budget_are_refused_whoever_sends_them() {
    let a = Vpc::new("a");
    let b = Vpc::new("b");
    let (latticed, key, _) = iam_service(
        &a,
        &[&b],
        &[
            "--body-timeout",
            "2",
            "--body-memory-mib",
            "8",
            "--body-memory-per-vpc-mib",
            "8",
        ],
    );
    let r = report(held_bodies(&b, &key));
    assert_eq!(r["over"]["status"], 503, "{r}");
    assert_eq!(r["held0"]["status"], 403, "{r}");
    assert_eq!(r["held1"]["status"], 403, "{r}");
    assert!(
        latticed
            .log_text()
            .contains("too many request bodies are being held"),
        "the refusal is logged with its reason"
    );
    drop(latticed);
}

/// A client that asks for a large answer and stops reading must not hold
/// its connection and the target's forever: once nothing moves for the
/// idle timeout, both close, on the fast path and on hyper's.
#[test]
fn a_client_that_stops_reading_is_cut_at_the_idle_timeout() {
    let host = "stall.example.internal";
    let raw = RawTarget::start("smuggle.py", host, json!([]), &["--idle-timeout", "2"]);
    let b = &raw.b;
    let r = run_json(
        b.ns.command("python3")
            .arg(apps_dir().join("smuggle.py"))
            .args(["stall", host, "80", "6"]),
    );
    let full = r["full"].as_u64().unwrap();
    for path in ["fast", "hyper"] {
        let got = r[path].as_u64().unwrap();
        assert!(got > 0, "{path}: the answer started: {r}");
        assert!(
            got < full / 2,
            "{path}: the connection stayed open for a client that stopped reading: {r}"
        );
    }
    drop(raw);
}
