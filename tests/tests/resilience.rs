//! What happens when targets fail, leave, or misbehave, and when clients
//! do: health checks, draining, dead and slow targets, function limits,
//! request limits, and DNS following associations.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "integration tests: a panic is the failure report"
)]

use std::{
    collections::BTreeMap,
    thread,
    time::{Duration, Instant},
};

use latticed_tests::*;
use serde_json::{json, Value};

fn forward(tg: &str) -> Value {
    json!({"forward": {"targetGroups": [{"targetGroupIdentifier": tg, "weight": 1}]}})
}

/// One service `web.example.internal` forwarding to `tg` in `a`, reachable
/// from `b`.
fn one_service(a: &Vpc, b: &Vpc, tg: Value, listener_extra: Value) -> Value {
    let mut listener =
        json!({"name": "http", "protocol": "HTTP", "port": 80, "defaultAction": forward("group")});
    if let (Some(l), Some(extra)) = (listener.as_object_mut(), listener_extra.as_object()) {
        l.extend(extra.clone());
    }
    let _ = a;
    json!({
        "serviceNetworks": [{"name": "net"}],
        "services": [{"name": "web", "customDomainName": "web.example.internal", "listeners": [listener]}],
        "targetGroups": [tg],
        "serviceNetworkServiceAssociations": [{"serviceNetworkIdentifier": "net", "serviceIdentifier": "web"}],
        "serviceNetworkVpcAssociations": [{"serviceNetworkIdentifier": "net", "vpcIdentifier": b.name()}]
    })
}

/// Which app answered each of `n` requests (by the echo's `app`), keyed by
/// status for failures.
fn tally(b: &Vpc, url: &str, n: usize) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let key = match curl_in(&b.ns, url, &["-w", "\n%{http_code}"]) {
            Ok(body) => {
                let (json, code) = body.rsplit_once('\n').unwrap();
                if code == "200" {
                    serde_json::from_str::<Value>(json).unwrap()["app"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                } else {
                    code.to_owned()
                }
            }
            Err((code, e)) => format!("curl exit {code}: {e}"),
        };
        *out.entry(key).or_default() += 1;
    }
    out
}

/// Requests `url` from `vpc` on a thread: (status, time it took).
fn status_in_background(vpc: &Vpc, url: &str) -> thread::JoinHandle<(String, Duration)> {
    let ns = vpc.ns.name().to_owned();
    let url = url.to_owned();
    thread::spawn(move || {
        let t0 = Instant::now();
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "curl", "-sS", "--max-time", "20"])
            .args(["-o", "/dev/null", "-w", "%{http_code}", &url])
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            t0.elapsed(),
        )
    })
}

#[test]
fn health_checks_flap_and_list_targets_follows() {
    let mut a = Vpc::new("a");
    let b = Vpc::new("b");
    a.ns.ip(&["addr", "add", "10.0.16.11/20", "dev", "lo"]);
    let second = spawn_echo(&mut a.ns, "second", "10.0.16.11:8080");
    let latticed = Latticed::start_api();
    let aws = latticed.aws();
    let id = |v: Value| v["id"].as_str().unwrap().to_owned();
    let tg = id(aws.ok(&[
        "create-target-group", "--name", "pair", "--type", "IP", "--config",
        &format!(r#"{{"port":8080,"protocol":"HTTP","vpcIdentifier":"{}","healthCheck":{{"path":"/health","healthCheckIntervalSeconds":5,"healthCheckTimeoutSeconds":1,"healthyThresholdCount":2,"unhealthyThresholdCount":2,"matcher":{{"httpCode":"200-299"}}}}}}"#, a.name()),
    ]));
    aws.ok(&[
        "register-targets",
        "--target-group-identifier",
        &tg,
        "--targets",
        "id=10.0.16.10",
        "id=10.0.16.11",
    ]);
    let svc = aws.ok(&["create-service", "--name", "web"]);
    let name = svc["dnsEntry"]["domainName"].as_str().unwrap().to_owned();
    let svc = id(svc);
    aws.ok(&[
        "create-listener",
        "--service-identifier",
        &svc,
        "--name",
        "http",
        "--protocol",
        "HTTP",
        "--default-action",
        &format!(r#"{{"forward":{{"targetGroups":[{{"targetGroupIdentifier":"{tg}"}}]}}}}"#),
    ]);
    let sn = id(aws.ok(&["create-service-network", "--name", "net"]));
    aws.ok(&[
        "create-service-network-service-association",
        "--service-network-identifier",
        &sn,
        "--service-identifier",
        &svc,
    ]);
    aws.ok(&[
        "create-service-network-vpc-association",
        "--service-network-identifier",
        &sn,
        "--vpc-identifier",
        b.name(),
    ]);

    let status = |ip: &str| -> (String, String) {
        let t = aws.ok(&["list-targets", "--target-group-identifier", &tg]);
        let item = t["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == ip)
            .cloned()
            .unwrap();
        (
            item["status"].as_str().unwrap_or("").to_owned(),
            item["reasonCode"].as_str().unwrap_or("").to_owned(),
        )
    };
    wait_until(Duration::from_secs(10), || {
        status("10.0.16.10").0 == "HEALTHY" && status("10.0.16.11").0 == "HEALTHY"
    });
    let url = format!("http://{name}/");
    let both = tally(&b, &url, 20);
    assert_eq!(both.get("second"), Some(&10), "{both:?}");

    // The second target dies: marked UNHEALTHY after two failed checks, and
    // from then on gets no requests.
    kill(second);
    let t0 = Instant::now();
    wait_until(Duration::from_secs(20), || {
        status("10.0.16.11").0 == "UNHEALTHY"
    });
    assert!(
        t0.elapsed() < Duration::from_secs(16),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(status("10.0.16.11").1, "Target.FailedHealthChecks");
    let only = tally(&b, &url, 20);
    assert_eq!(only.get(a.name()), Some(&20), "{only:?}");
    let metrics = latticed.metrics();
    assert!(
        metrics.contains("latticed_targets{target_group=\"pair\",health=\"unhealthy\"} 1"),
        "{metrics}"
    );

    // It comes back: healthy again after two good checks, and traffic
    // returns to it.
    let _again = spawn_echo(&mut a.ns, "second", "10.0.16.11:8080");
    wait_until(Duration::from_secs(20), || {
        status("10.0.16.11").0 == "HEALTHY"
    });
    let back = tally(&b, &url, 20);
    assert_eq!(back.get("second"), Some(&10), "{back:?}");
}

#[test]
fn draining_dead_and_slow_targets() {
    let mut a = Vpc::new("a");
    let b = Vpc::new("b");
    a.ns.ip(&["addr", "add", "10.0.16.11/20", "dev", "lo"]);
    let second = spawn_echo(&mut a.ns, "second", "10.0.16.11:8080");
    let group = |targets: &[&str]| {
        json!({"name": "group", "type": "IP", "config": {"port": 8080, "protocol": "HTTP", "vpcIdentifier": a.name(),
            "healthCheck": {"enabled": false}},
            "targets": targets.iter().map(|t| json!({"id": t})).collect::<Vec<_>>()})
    };
    let latticed = Latticed::start(&one_service(
        &a,
        &b,
        group(&["10.0.16.10", "10.0.16.11"]),
        json!({}),
    ));
    wait_until(Duration::from_secs(5), || {
        b.curl("http://web.example.internal/").is_ok()
    });

    // Requests in flight when a target is deregistered finish; new ones go
    // to the remaining target; a steady load sees no error throughout.
    let load = {
        let ns = b.ns.name().to_owned();
        thread::spawn(move || {
            let cfg = std::env::temp_dir().join(format!("latticed-drain-{}", unique()));
            let urls: String = (0..400)
                .map(|_| "url = \"http://web.example.internal/\"\noutput = \"/dev/null\"\n")
                .collect();
            std::fs::write(&cfg, urls).unwrap();
            let out = std::process::Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &ns,
                    "curl",
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}\n",
                    "-K",
                ])
                .arg(&cfg)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
    };
    let slow: Vec<_> = (0..4)
        .map(|_| status_in_background(&b, "http://web.example.internal/?delay_ms=1500"))
        .collect();
    thread::sleep(Duration::from_millis(300));
    latticed.write_config(&one_service(&a, &b, group(&["10.0.16.10"]), json!({})));
    latticed.reload();
    for s in slow {
        assert_eq!(
            s.join().unwrap().0,
            "200",
            "a request in flight on a deregistered target finishes"
        );
    }
    let codes = load.join().unwrap();
    assert_eq!(codes.len(), 400);
    assert!(
        codes.iter().all(|c| c == "200"),
        "{:?}",
        codes.iter().filter(|c| *c != "200").collect::<Vec<_>>()
    );
    let after = tally(&b, "http://web.example.internal/", 10);
    assert_eq!(after.get(a.name()), Some(&10), "{after:?}");

    // A target that dies mid-request: the client gets 502 at once.
    latticed.write_config(&one_service(&a, &b, group(&["10.0.16.11"]), json!({})));
    latticed.reload();
    let pending = status_in_background(&b, "http://web.example.internal/?delay_ms=10000");
    thread::sleep(Duration::from_millis(500));
    kill(second);
    let (code, took) = pending.join().unwrap();
    assert_eq!(code, "502");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // And with no target listening at all: 503 at once.
    let t0 = Instant::now();
    let dead = tally(&b, "http://web.example.internal/", 3);
    assert_eq!(dead.get("503"), Some(&3), "{dead:?}");
    assert!(t0.elapsed() < Duration::from_secs(3));
}

#[test]
fn slow_targets_time_out_with_504() {
    let a = Vpc::new("a");
    let b = Vpc::new("b");
    let tg = json!({"name": "group", "type": "IP", "config": {"port": 8080, "protocol": "HTTP", "vpcIdentifier": a.name()},
        "targets": [{"id": "10.0.16.10"}]});
    let mut config = one_service(&a, &b, tg, json!({}));
    // HTTP/1.1 in cleartext takes the fast path; HTTPS with HTTP/2 the
    // hyper path, which keeps its own timer per request.
    config["services"][0]["listeners"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "https", "protocol": "HTTPS", "port": 443, "defaultAction": forward("group")}));
    let mut latticed = Latticed::prepare(&config);
    latticed.extra_args = vec!["--request-timeout".into(), "1".into()];
    latticed.spawn_and_wait_ready().unwrap();
    let ca = latticed.state_dir.join("ca.pem");
    let ca = ca.to_str().unwrap();
    wait_until(Duration::from_secs(5), || {
        b.curl("http://web.example.internal/").is_ok()
            && curl_in(&b.ns, "https://web.example.internal/", &["--cacert", ca]).is_ok()
    });
    let https_h2 = ["--cacert", ca, "--http2"];
    for (url, extra, want) in [
        (
            "http://web.example.internal/?delay_ms=5000",
            &[][..],
            "504 1.1",
        ),
        (
            "https://web.example.internal/?delay_ms=5000",
            &https_h2[..],
            "504 2",
        ),
    ] {
        let t0 = Instant::now();
        let code = curl_in(
            &b.ns,
            url,
            &[
                &["-o", "/dev/null", "-w", "%{http_code} %{http_version}"],
                extra,
            ]
            .concat(),
        )
        .unwrap();
        assert_eq!(code, want, "{url}");
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "{url} took {:?}",
            t0.elapsed()
        );
    }
}

#[test]
fn function_errors_and_size_limits() {
    let a = Vpc::new("a");
    let b = Vpc::new("b");
    let runner = LambdaRunner::start();
    let fns = |name: &str| {
        json!({"name": name, "type": "LAMBDA",
            "targets": [{"id": format!("arn:aws:lambda:us-east-1:111122223333:function:{name}")}]})
    };
    let rule = |prio: u32, path: &str, tg: &str| {
        json!({"name": format!("path-{prio}"), "priority": prio,
            "match": {"httpMatch": {"pathMatch": {"match": {"exact": path}}}}, "action": forward(tg)})
    };
    let mut config = one_service(
        &a,
        &b,
        fns("hello"),
        json!({
            "defaultAction": forward("hello"),
            "rules": [rule(1, "/broken", "broken"), rule(2, "/big", "big")]
        }),
    );
    config["targetGroups"] = json!([fns("hello"), fns("broken"), fns("big")]);
    let mut latticed = Latticed::prepare(&config);
    latticed.extra_args = vec!["--lambda-endpoint".into(), runner.endpoint.clone()];
    latticed.spawn_and_wait_ready().unwrap();
    let url = "http://web.example.internal";
    wait_until(Duration::from_secs(5), || {
        b.curl(&format!("{url}/")).is_ok()
    });

    let code = |path: &str, extra: &[&str]| {
        curl_in(
            &b.ns,
            &format!("{url}{path}"),
            &[extra, &["-o", "/dev/null", "-w", "%{http_code}"]].concat(),
        )
        .unwrap()
    };
    // A body is passed in the event (version 1.0 here).
    let body = curl_in(
        &b.ns,
        &format!("{url}/post?x=1"),
        &["--data-binary", &"y".repeat(1024)],
    )
    .unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["bodyLength"], 1024);
    assert_eq!(v["version"], "1.0");
    assert_eq!(v["path"], "/post?x=1");
    assert_eq!(v["method"], "POST");
    // A function that throws, and one that answers over 6 MB: 502.
    assert_eq!(code("/broken", &[]), "502");
    assert_eq!(code("/big", &[]), "502");
    // A request over 6 MB: 413.
    let big = std::env::temp_dir().join(format!("latticed-big-{}", unique()));
    std::fs::write(&big, vec![b'z'; 7 * 1024 * 1024]).unwrap();
    assert_eq!(
        code("/", &["--data-binary", &format!("@{}", big.display())]),
        "413"
    );
    let _ = std::fs::remove_file(&big);
    // Nothing above hurt the next request.
    assert_eq!(code("/", &[]), "200");
}

#[test]
fn oversized_slow_idle_and_malformed_clients_affect_only_themselves() {
    let a = Vpc::new("a");
    let b = Vpc::new("b");
    let tg = json!({"name": "group", "type": "IP", "config": {"port": 8080, "protocol": "HTTP", "vpcIdentifier": a.name()},
        "targets": [{"id": "10.0.16.10"}]});
    let mut latticed = Latticed::prepare(&one_service(&a, &b, tg, json!({})));
    latticed.extra_args = ["--header-timeout", "1", "--idle-timeout", "2"]
        .map(String::from)
        .to_vec();
    latticed.spawn_and_wait_ready().unwrap();
    let url = "http://web.example.internal/";
    wait_until(Duration::from_secs(5), || b.curl(url).is_ok());

    // Request headers over the limit: 431.
    let big = format!("x-big: {}", "a".repeat(70 * 1024));
    let code = curl_in(
        &b.ns,
        url,
        &["-H", &big, "-o", "/dev/null", "-w", "%{http_code}"],
    )
    .unwrap();
    assert_eq!(code, "431");

    let v = run_json(
        b.ns.command("python3")
            .arg(workspace_root().join("tests/apps/limits_probe.py"))
            .args(["web.example.internal", "80", "1", "2"]),
    );
    assert_eq!(v["malformed"], "HTTP/1.1 400 Bad Request", "{v}");
    assert_eq!(v["otherWhileSlow"], "HTTP/1.1 200 OK", "{v}");
    assert_eq!(v["slowClosed"], true, "{v}");
    assert!(v["slowClosedAfter"].as_f64().unwrap() <= 3.0, "{v}");
    assert_eq!(v["keepAliveFirst"], "HTTP/1.1 200 OK", "{v}");
    assert_eq!(v["idleClosed"], true, "{v}");
    let idle = v["idleClosedAfter"].as_f64().unwrap();
    assert!((1.5..=3.5).contains(&idle), "{v}");
    assert_eq!(b.curl(url).map(|_| ()), Ok(()));
}

/// `dig` (from bind9-dnsutils) in `ns`, at latticed's resolver.
fn dig(ns: &NetNsGuard, args: &[&str]) -> String {
    let out = ns
        .command("dig")
        .arg("@169.254.171.253")
        .args(args)
        .output()
        .expect("dig (the set-up installs bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The resolver in `ns` as `dig` and glibc ask it: UDP and TCP, with and
/// without EDNS0, A and other types of a service name, `getent ahosts`
/// (A and AAAA at once).
fn dns_answers_as_clients_ask(ns: &NetNsGuard) {
    let name = "web.example.internal";
    assert_eq!(dig(ns, &["+short", name]).trim(), "169.254.171.1");
    assert_eq!(dig(ns, &["+tcp", "+short", name]).trim(), "169.254.171.1");
    for ty in ["MX", "TXT"] {
        let out = dig(ns, &[name, ty]);
        assert!(out.contains("status: NOERROR"), "{ty}: {out}");
        assert!(out.contains("ANSWER: 0,"), "{ty}: {out}");
    }
    // AAAA is the VIP's IPv6 twin, from either resolver address.
    assert_eq!(dig(ns, &["+short", name, "AAAA"]).trim(), "fd00:ec2:80::1");
    let out = ns
        .command("dig")
        .args(["@fd00:ec2:80::fd", "+tcp", "+short", name, "AAAA"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "fd00:ec2:80::1"
    );
    let edns = dig(ns, &["+tcp", name]);
    assert!(
        edns.contains("OPT PSEUDOSECTION") && edns.contains("udp: 1232"),
        "{edns}"
    );
    let plain = dig(ns, &["+noedns", name]);
    assert!(!plain.contains("OPT PSEUDOSECTION"), "{plain}");
    assert!(plain.contains("ANSWER: 1,"), "{plain}");
    let ahosts = ns
        .command("getent")
        .args(["ahosts", name])
        .output()
        .unwrap();
    let ahosts = String::from_utf8_lossy(&ahosts.stdout);
    assert!(
        ahosts
            .lines()
            .all(|l| l.starts_with("169.254.171.1 ") || l.starts_with("fd00:ec2:80::1 ")),
        "{ahosts}"
    );
    // glibc asks AAAA only where the namespace has a global IPv6 address
    // (AI_ADDRCONFIG), which this one has not; dig checked AAAA above.
    assert!(ahosts.contains("169.254.171.1 "), "{ahosts}");
    assert!(!ahosts.is_empty());
}

#[test]
fn names_resolve_only_while_associated() {
    let a = Vpc::new("a");
    let b = Vpc::new("b");
    let resolv = std::path::Path::new("/etc/netns")
        .join(b.name())
        .join("resolv.conf");
    assert!(!resolv.exists());
    let tg = json!({"name": "group", "type": "IP", "config": {"port": 8080, "protocol": "HTTP", "vpcIdentifier": a.name()},
        "targets": [{"id": "10.0.16.10"}]});
    let config = one_service(&a, &b, tg, json!({}));
    let mut latticed = Latticed::start(&config);
    assert_eq!(
        getent(&b.ns, "web.example.internal").as_deref(),
        Some("169.254.171.1")
    );
    assert_eq!(
        getent(&b.ns, "WEB.Example.Internal").as_deref(),
        Some("169.254.171.1"),
        "names are case-insensitive"
    );
    // Python's resolver takes the same path.
    let out =
        b.ns.command("python3")
            .args([
                "-c",
                "import socket; print(socket.gethostbyname('web.example.internal'))",
            ])
            .output()
            .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "169.254.171.1");
    dns_answers_as_clients_ask(&b.ns);

    let mut unassociated = config.clone();
    unassociated["serviceNetworkVpcAssociations"] = json!([]);
    latticed.write_config(&unassociated);
    latticed.reload();
    wait_until(Duration::from_secs(5), || {
        getent(&b.ns, "web.example.internal").is_none()
    });
    assert!(!resolv.exists(), "the namespace's resolver is put back");

    latticed.write_config(&config);
    latticed.reload();
    wait_until(Duration::from_secs(5), || {
        getent(&b.ns, "web.example.internal").is_some()
    });
    latticed.stop_with(libc::SIGTERM);
    assert!(
        !resolv.exists(),
        "stopping puts the namespace's resolver back"
    );
}
