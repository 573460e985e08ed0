//! The VPC Lattice API, driven by the real AWS CLI and by signed raw
//! requests, checked through the data path with curl inside namespaces.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "integration tests: a panic is the failure report"
)]

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use latticed_tests::*;
use serde_json::Value;

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id in answer").to_owned()
}

/// The walkthrough of DESIGN.md with IP targets in both VPCs, built with the
/// AWS CLI exactly as a person would type it.
#[test]
fn aws_cli_builds_the_walkthrough_and_curl_uses_it() {
    let a = Vpc::new("a");
    let b = Vpc::new("b");
    let latticed = Latticed::start_api();
    let aws = latticed.aws();

    let sn = id(&aws.ok(&["create-service-network", "--name", "demo-net"]));
    let tg = |name: &str, vpc: &str| {
        let tg = id(&aws.ok(&[
            "create-target-group",
            "--name",
            name,
            "--type",
            "IP",
            "--config",
            &format!(r#"{{"port":8080,"protocol":"HTTP","vpcIdentifier":"{vpc}"}}"#),
        ]));
        aws.ok(&[
            "register-targets",
            "--target-group-identifier",
            &tg,
            "--targets",
            "id=10.0.16.10,port=8080",
        ]);
        tg
    };
    let (tg_a, tg_b) = (tg("app-a", a.name()), tg("app-b", b.name()));

    let svc1 = aws.ok(&["create-service", "--name", "svc1"]);
    assert_eq!(svc1["status"], "ACTIVE");
    assert!(svc1["arn"]
        .as_str()
        .unwrap()
        .starts_with("arn:aws:vpc-lattice:us-east-1:111122223333:service/svc-"));
    let svc1 = id(&svc1);
    let listener = id(&aws.ok(&[
        "create-listener", "--service-identifier", &svc1, "--name", "http", "--protocol", "HTTP", "--port", "80",
        "--default-action",
        &format!(r#"{{"forward":{{"targetGroups":[{{"targetGroupIdentifier":"{tg_a}","weight":2}},{{"targetGroupIdentifier":"{tg_b}","weight":1}}]}}}}"#),
    ]));
    for (priority, path, tg) in [("1", "/to-a", &tg_a), ("2", "/to-b", &tg_b)] {
        aws.ok(&[
            "create-rule",
            "--service-identifier",
            &svc1,
            "--listener-identifier",
            &listener,
            "--name",
            &format!("path-rule-{priority}"),
            "--priority",
            priority,
            "--match",
            &format!(r#"{{"httpMatch":{{"pathMatch":{{"match":{{"exact":"{path}"}}}}}}}}"#),
            "--action",
            &format!(r#"{{"forward":{{"targetGroups":[{{"targetGroupIdentifier":"{tg}"}}]}}}}"#),
        ]);
    }
    let svc2 = id(&aws.ok(&["create-service", "--name", "svc2"]));
    aws.ok(&[
        "create-listener",
        "--service-identifier",
        &svc2,
        "--name",
        "http",
        "--protocol",
        "HTTP",
        "--default-action",
        &format!(r#"{{"forward":{{"targetGroups":[{{"targetGroupIdentifier":"{tg_b}"}}]}}}}"#),
    ]);
    for svc in [&svc1, &svc2] {
        let assoc = aws.ok(&[
            "create-service-network-service-association",
            "--service-network-identifier",
            &sn,
            "--service-identifier",
            svc,
        ]);
        assert_eq!(assoc["status"], "ACTIVE");
    }
    for vpc in [a.name(), b.name()] {
        aws.ok(&[
            "create-service-network-vpc-association",
            "--service-network-identifier",
            &sn,
            "--vpc-identifier",
            vpc,
        ]);
    }

    // Reads, by id and by ARN.
    let got = aws.ok(&["get-service-network", "--service-network-identifier", &sn]);
    assert_eq!(got["numberOfAssociatedServices"], 2);
    assert_eq!(got["numberOfAssociatedVPCs"], 2);
    let arn = got["arn"].as_str().unwrap().to_owned();
    assert_eq!(
        aws.ok(&["get-service-network", "--service-network-identifier", &arn])["id"],
        sn.as_str()
    );
    let rules = aws.ok(&[
        "list-rules",
        "--service-identifier",
        &svc1,
        "--listener-identifier",
        &listener,
    ]);
    // The two path rules and the listener's default rule.
    assert_eq!(rules["items"].as_array().unwrap().len(), 3);
    let tgv = aws.ok(&["get-target-group", "--target-group-identifier", &tg_b]);
    assert_eq!(
        tgv["serviceArns"].as_array().unwrap().len(),
        2,
        "app-b serves svc1 and svc2"
    );

    // The data path: svc1 is the first service, so it holds the first VIP.
    let svc1_url = "http://169.254.171.1";
    let svc2_url = "http://169.254.171.2";
    let app = |vpc: &Vpc, url: &str| {
        echo(&vpc.curl(url).expect("curl"))["app"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    for _ in 0..5 {
        assert_eq!(app(&b, &format!("{svc1_url}/to-a")), a.name());
        assert_eq!(app(&b, &format!("{svc1_url}/to-b")), b.name());
        assert_eq!(
            app(&a, svc2_url),
            b.name(),
            "vpc-a reaches vpc-b's app through svc2"
        );
    }
    let n = 300;
    let to_a = (0..n)
        .filter(|_| app(&b, &format!("{svc1_url}/")) == a.name())
        .count();
    let share = to_a as f64 / n as f64;
    assert!(
        (0.55..=0.78).contains(&share),
        "2:1 split gave {share:.2} to app-a"
    );
    let client = echo(&b.curl(&format!("{svc1_url}/to-a")).unwrap())["client"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(in_source_pool(&client), "app saw {client}");

    // Deleting what is still used is a conflict, and changes nothing.
    let err = aws
        .run(&[
            "delete-service-network",
            "--service-network-identifier",
            &sn,
        ])
        .unwrap_err();
    assert!(err.contains("ConflictException"), "{err}");
    let err = aws
        .run(&["delete-target-group", "--target-group-identifier", &tg_a])
        .unwrap_err();
    assert!(
        err.contains("ConflictException") && err.contains("listener"),
        "{err}"
    );
    assert_eq!(app(&b, &format!("{svc1_url}/to-a")), a.name());

    // Removing the association withdraws svc2 from vpc-a at once.
    let assocs = aws.ok(&[
        "list-service-network-vpc-associations",
        "--service-network-identifier",
        &sn,
        "--vpc-identifier",
        a.name(),
    ]);
    let assoc = assocs["items"][0]["id"].as_str().unwrap().to_owned();
    aws.ok(&[
        "delete-service-network-vpc-association",
        "--service-network-vpc-association-identifier",
        &assoc,
    ]);
    assert_eq!(a.curl(svc2_url).unwrap_err().0, CURL_COULDNT_CONNECT);
    assert_eq!(app(&b, svc2_url), b.name(), "vpc-b keeps its association");
}

#[test]
fn requests_that_are_not_properly_signed_change_nothing() {
    let latticed = Latticed::start_api();
    let aws = latticed.aws();
    let port = latticed.api().port;
    let body = br#"{"name":"sneaky"}"#;
    let (status, kind, _) = api_request(port, "POST", "/servicenetworks", body, None).unwrap();
    assert_eq!(
        (status, kind.as_str()),
        (403, "MissingAuthenticationTokenException")
    );
    let (key, _) = aws.keys();
    let (status, kind, msg) = api_request(
        port,
        "POST",
        "/servicenetworks",
        body,
        Some((&key, "wrong-secret")),
    )
    .unwrap();
    assert_eq!(
        (status, kind.as_str()),
        (403, "InvalidSignatureException"),
        "{msg}"
    );
    let (status, kind, _) = api_request(
        port,
        "POST",
        "/servicenetworks",
        body,
        Some(("AKIAUNKNOWNKEY000000", "x")),
    )
    .unwrap();
    assert_eq!(
        (status, kind.as_str()),
        (403, "UnrecognizedClientException")
    );
    assert_eq!(
        aws.ok(&["list-service-networks"])["items"],
        serde_json::json!([])
    );

    // The credentials file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&aws.credentials)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn acknowledged_writes_survive_sigkill_at_random_moments() {
    // A quota far above what a round can write, so every round is cut off
    // by the kill, in the middle of the stream.
    let mut latticed = Latticed::start_api_with(&["--quota", "service-networks=1000000"]);
    let aws = latticed.aws();
    let (key, secret) = aws.keys();
    let port = latticed.api().port;
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let mut total_acked = 0;
    let mut rng = 0x9e37_79b9_u64 ^ u64::from(std::process::id());
    for round in 0..10 {
        let acked = Arc::clone(&acknowledged);
        let (k, s) = (key.clone(), secret.clone());
        let writer = thread::spawn(move || {
            for i in 0.. {
                let name = format!("crash-{round}-{i}");
                let body = format!(r#"{{"name":"{name}","tags":{{"round":"{round}"}}}}"#);
                match api_request(
                    port,
                    "POST",
                    "/servicenetworks",
                    body.as_bytes(),
                    Some((&k, &s)),
                ) {
                    Ok((201, _, _)) => {
                        acked.lock().unwrap().insert(name);
                    }
                    // No answer: the daemon died mid-request.
                    Ok((0, _, _)) | Err(_) => break,
                    Ok((status, kind, body)) => panic!("unexpected answer {status} {kind}: {body}"),
                }
            }
        });
        let delay = Duration::from_millis(20 + next_random(&mut rng) % 150);
        latticed.crash_and_restart(delay, writer);
        // Every acknowledged write is there; what exists beyond it is at
        // most the one request in flight per round, and it is whole (name
        // and tags were one write).
        let signed = |method: &str, path: &str| {
            let (status, _, body) =
                api_request(port, method, path, b"", Some((&key, &secret))).unwrap();
            assert!(
                (200..300).contains(&status),
                "{method} {path}: {status} {body}"
            );
            serde_json::from_str::<Value>(&body).unwrap_or(Value::Null)
        };
        let listed = signed("GET", "/servicenetworks");
        let items = listed["items"].as_array().unwrap().clone();
        let names: BTreeSet<String> = items
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_owned())
            .collect();
        let acked = acknowledged.lock().unwrap().clone();
        total_acked += acked.len();
        assert!(
            acked.is_subset(&names),
            "round {round}: lost acknowledged writes: {:?}",
            acked.difference(&names).collect::<Vec<_>>()
        );
        assert!(
            names.len() <= acked.len() + 1,
            "round {round}: more resources than requests"
        );
        for item in &items {
            let arn = item["arn"]
                .as_str()
                .unwrap()
                .replace(':', "%3A")
                .replace('/', "%2F");
            let tags = signed("GET", &format!("/tags/{arn}"));
            assert!(
                tags["tags"]["round"].is_string(),
                "{arn} is whole, tags included"
            );
            signed(
                "DELETE",
                &format!("/servicenetworks/{}", item["id"].as_str().unwrap()),
            );
        }
        acknowledged.lock().unwrap().clear();
    }
    assert!(
        total_acked >= 10,
        "the writes were really streaming ({total_acked} acknowledged)"
    );
}

#[test]
fn state_and_data_path_come_back_after_restart() {
    let a = Vpc::new("a");
    let b = Vpc::new("b");
    let mut latticed = Latticed::start_api();
    let aws = latticed.aws();
    let sn = id(&aws.ok(&["create-service-network", "--name", "net-one"]));
    let (svc, tg) = aws.service_to_app(&sn, ("service-a", "app-a"), a.name());
    let svc = id(&svc);
    aws.ok(&[
        "create-service-network-vpc-association",
        "--service-network-identifier",
        &sn,
        "--vpc-identifier",
        b.name(),
    ]);
    assert_eq!(
        echo(&b.curl("http://169.254.171.1/").unwrap())["app"],
        a.name()
    );

    for sig in [libc::SIGTERM, libc::SIGKILL] {
        latticed.stop_with(sig);
        latticed.spawn_and_wait_ready().expect("restart");
        assert_eq!(
            aws.ok(&["get-service", "--service-identifier", &svc])["name"],
            "service-a"
        );
        let targets = aws.ok(&["list-targets", "--target-group-identifier", &tg]);
        assert_eq!(targets["items"][0]["id"], "10.0.16.10");
        assert_eq!(
            echo(&b.curl("http://169.254.171.1/").expect("rebuilt data path"))["app"],
            a.name()
        );
    }
}

fn run_script(mode: &str, latticed: &Latticed, vpcs: &[&str]) {
    let out = std::process::Command::new("python3")
        .arg(workspace_root().join("tests/conformance/lattice_api.py"))
        .arg(mode)
        .arg(&latticed.api().endpoint)
        .arg(latticed.api().state_dir.join("admin-credentials"))
        .args(vpcs)
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{mode} failed:\n{stdout}\n{stderr}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.ends_with(" 0 failed") && !last.starts_with("0 passed"),
        "{mode}: {last}"
    );
}

/// Every one of the model's 73 operations round-trips through boto3 with
/// answers that match botocore's model.
#[test]
fn conformance_with_botocores_model() {
    let a = NetNsGuard::new("a");
    let b = NetNsGuard::new("b");
    let latticed = Latticed::start_api();
    run_script("conformance", &latticed, &[a.name(), b.name()]);
}

/// The same conformance run against a node of a cluster (three-member
/// etcd): the API answers alike whichever store is under it.
#[test]
fn conformance_with_botocores_model_on_a_cluster_node() {
    let a = NetNsGuard::new("a");
    let b = NetNsGuard::new("b");
    let etcd = latticed_tests::etcd::Etcd::start(3);
    let node =
        latticed_tests::etcd::Node::start("node-a", &etcd.endpoints(), &[a.name(), b.name()]);
    run_script("conformance", &node.latticed, &[a.name(), b.name()]);
}

/// Missing required fields, enums out of range, over-long names, malformed
/// JSON, unknown ids, a 10 MB body: the right error each, and no change.
#[test]
fn bad_input_gets_the_right_error_and_changes_nothing() {
    let a = NetNsGuard::new("a");
    let latticed = Latticed::start_api();
    run_script("bad-input", &latticed, &[a.name()]);
}

/// Beyond 191 services, VIPs are shared and requests are told apart by the
/// service's DNS name; creating services never interrupts traffic to others.
#[test]
fn services_share_vips_by_name_and_changes_do_not_interrupt_traffic() {
    let a = Vpc::new("a");
    let b = Vpc::new("b");
    let latticed = Latticed::start_api_with(&["--quota", "services=400"]);
    let aws = latticed.aws();
    let (key, secret) = aws.keys();
    let port = latticed.api().port;
    let call = |method: &str, path: &str, body: Value| -> Value {
        let (status, kind, text) = api_request(
            port,
            method,
            path,
            body.to_string().as_bytes(),
            Some((&key, &secret)),
        )
        .unwrap();
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {kind} {text}"
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    let sn = id(&call(
        "POST",
        "/servicenetworks",
        serde_json::json!({"name": "big-net"}),
    ));
    let tg = |name: &str, vpc: &str| {
        let tg = id(&call(
            "POST",
            "/targetgroups",
            serde_json::json!({"name": name, "type": "IP",
            "config": {"port": 8080, "protocol": "HTTP", "vpcIdentifier": vpc}}),
        ));
        call(
            "POST",
            &format!("/targetgroups/{tg}/registertargets"),
            serde_json::json!({"targets": [{"id": "10.0.16.10"}]}),
        );
        tg
    };
    let (tg_a, tg_b) = (tg("big-a", a.name()), tg("big-b", b.name()));
    call(
        "POST",
        "/servicenetworkvpcassociations",
        serde_json::json!({"serviceNetworkIdentifier": sn, "vpcIdentifier": b.name()}),
    );
    let service = |name: &str, action: Value| -> Value {
        let svc = call("POST", "/services", serde_json::json!({"name": name}));
        let sid = id(&svc);
        call(
            "POST",
            &format!("/services/{sid}/listeners"),
            serde_json::json!({"name": "http", "protocol": "HTTP", "port": 80, "defaultAction": action}),
        );
        call(
            "POST",
            "/servicenetworkserviceassociations",
            serde_json::json!({"serviceNetworkIdentifier": sn, "serviceIdentifier": sid}),
        );
        svc
    };
    let forward = |tg: &str| serde_json::json!({"forward": {"targetGroups": [{"targetGroupIdentifier": tg}]}});
    let first = service("first", forward(&tg_a));
    let first_name = first["dnsEntry"]["domainName"].as_str().unwrap().to_owned();
    assert!(
        first_name.starts_with("first-")
            && first_name.ends_with(".vpc-lattice-svcs.us-east-1.on.aws"),
        "{first_name}"
    );

    // Traffic to `first` runs while 190 other services are created.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let codes = thread::scope(|s| {
        let traffic = s.spawn(|| {
            let mut codes = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                codes.push(curl_in(
                    &b.ns,
                    "http://169.254.171.1/",
                    &["-o", "/dev/null", "-w", "%{http_code}"],
                ));
            }
            codes
        });
        for i in 0..190 {
            service(
                &format!("filler-{i}"),
                serde_json::json!({"fixedResponse": {"statusCode": 204}}),
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        traffic.join().unwrap()
    });
    assert!(
        codes.len() > 10,
        "traffic ran during the changes ({} requests)",
        codes.len()
    );
    assert!(
        codes.iter().all(|c| c.as_deref() == Ok("200")),
        "every request answered 200: {:?}",
        codes
            .iter()
            .filter(|c| c.as_deref() != Ok("200"))
            .collect::<Vec<_>>()
    );

    // The 192nd service shares the first VIP; the name decides.
    let shared = service("shared", forward(&tg_b));
    let shared_name = shared["dnsEntry"]["domainName"]
        .as_str()
        .unwrap()
        .to_owned();
    let host = |name: &str| format!("Host: {name}");
    let app_by_host = |name: &str| {
        echo(&curl_in(&b.ns, "http://169.254.171.1/", &["-H", &host(name)]).unwrap())["app"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(app_by_host(&first_name), a.name());
    assert_eq!(app_by_host(&shared_name), b.name());
    assert_eq!(
        app_by_host(&shared_name.to_uppercase()),
        b.name(),
        "names are case-insensitive"
    );
    let unknown = curl_in(
        &b.ns,
        "http://169.254.171.1/",
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Host: nobody.example",
        ],
    )
    .unwrap();
    assert_eq!(unknown, "404", "a shared VIP does not guess");
    // Services alone on their VIP still answer without the name.
    let code = curl_in(
        &b.ns,
        "http://169.254.171.2/",
        &["-o", "/dev/null", "-w", "%{http_code}"],
    )
    .unwrap();
    assert_eq!(code, "204");
}

/// A cascading delete (a service with its listener and rule) is one
/// transaction: after SIGKILL at random moments in a stream of them, every
/// service is either gone, or there whole with its listener and rule.
#[test]
fn cascading_deletes_are_all_or_nothing_across_sigkill() {
    let mut latticed = Latticed::start_api_with(&["--quota", "services=1000"]);
    let (key, secret) = latticed.aws().keys();
    let port = latticed.api().port;
    let call = |method: &str, path: &str, body: Value| -> (u16, Value) {
        // Null means no body (a GET), not the JSON text "null".
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        match api_request(port, method, path, body.as_bytes(), Some((&key, &secret))) {
            Ok((status, _, text)) => (status, serde_json::from_str(&text).unwrap_or(Value::Null)),
            Err(_) => (0, Value::Null),
        }
    };
    let mut services = Vec::new();
    for i in 0..120 {
        let (st, svc) = call(
            "POST",
            "/services",
            serde_json::json!({"name": format!("cascade-{i}")}),
        );
        assert_eq!(st, 201, "{svc}");
        let sid = id(&svc);
        let (st, l) = call(
            "POST",
            &format!("/services/{sid}/listeners"),
            serde_json::json!({"name": "http", "protocol": "HTTP",
            "defaultAction": {"fixedResponse": {"statusCode": 404}}}),
        );
        assert_eq!(st, 201, "{l}");
        let (st, r) = call(
            "POST",
            &format!("/services/{sid}/listeners/{}/rules", id(&l)),
            serde_json::json!({"name": "only-rule",
            "priority": 1, "match": {"httpMatch": {"method": "GET"}}, "action": {"fixedResponse": {"statusCode": 204}}}),
        );
        assert_eq!(st, 201, "{r}");
        services.push(sid);
    }
    let mut rng = u64::from(std::process::id()) | 1;
    let mut acked_total = 0;
    for round in 0..5 {
        let todo: Vec<String> = services.clone();
        let acked = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let acked = Arc::clone(&acked);
            let (k, s) = (key.clone(), secret.clone());
            thread::spawn(move || {
                for sid in todo {
                    match api_request(
                        port,
                        "DELETE",
                        &format!("/services/{sid}"),
                        b"",
                        Some((&k, &s)),
                    ) {
                        Ok((200, _, _)) => acked.lock().unwrap().push(sid),
                        Ok((0, _, _)) | Err(_) => break,
                        Ok((st, kind, body)) => panic!("unexpected {st} {kind}: {body}"),
                    }
                }
            })
        };
        let delay = Duration::from_millis(10 + next_random(&mut rng) % 60);
        latticed.crash_and_restart(delay, writer);
        let acked = acked.lock().unwrap().clone();
        acked_total += acked.len();
        for sid in &services {
            let (st, _) = call("GET", &format!("/services/{sid}"), Value::Null);
            if acked.contains(sid) {
                assert_eq!(st, 404, "round {round}: acknowledged delete of {sid} lost");
                continue;
            }
            if st == 404 {
                continue; // the one in flight, gone whole
            }
            let (_, ls) = call("GET", &format!("/services/{sid}/listeners"), Value::Null);
            let listeners = ls["items"].as_array().unwrap();
            assert_eq!(listeners.len(), 1, "round {round}: {sid} lost its listener");
            let (_, rs) = call(
                "GET",
                &format!(
                    "/services/{sid}/listeners/{}/rules",
                    listeners[0]["id"].as_str().unwrap()
                ),
                Value::Null,
            );
            // Its rule and the listener's default rule.
            assert_eq!(
                rs["items"].as_array().unwrap().len(),
                2,
                "round {round}: {sid} lost its rule"
            );
        }
        services.retain(|sid| call("GET", &format!("/services/{sid}"), Value::Null).0 == 200);
        if services.is_empty() {
            break;
        }
    }
    assert!(
        acked_total > 0,
        "deletes were acknowledged before the kills"
    );
}
