//! Bad input never half-applies and never stops a running latticed: each
//! case gets an error naming the field and the reason, and the previous
//! configuration keeps serving.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "integration tests: a panic is the failure report"
)]

use std::{
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::Duration,
};

use latticed_tests::*;

fn status_of(vpc: &Vpc, url: &str) -> Result<String, (i32, String)> {
    curl_in(&vpc.ns, url, &["-o", "/dev/null", "-w", "%{http_code}"])
}

/// Flags that contradict each other stop latticed at start, naming both.
#[test]
fn a_per_vpc_body_share_larger_than_the_budget_is_refused() {
    let mut latticed = Latticed::prepare(&serde_json::json!({}));
    latticed.extra_args = ["--body-memory-mib", "8", "--body-memory-per-vpc-mib", "9"]
        .map(String::from)
        .to_vec();
    let log = latticed
        .spawn_and_wait_ready()
        .expect_err("a share over the budget must refuse to start");
    assert!(
        log.contains("--body-memory-per-vpc-mib: 9 is more than --body-memory-mib (8)"),
        "{log}"
    );
}

#[test]
fn nonexistent_namespace_at_start_is_named_and_nothing_is_created() {
    let a = Vpc::new("a");
    let missing = format!("lt{}-gone", unique());
    let mut config = two_service_config(a.name(), &missing);
    config["targetGroups"][1]["config"]["vpcIdentifier"] = a.name().into();
    let mut latticed = Latticed::prepare(&config);
    let log = latticed
        .spawn_and_wait_ready()
        .expect_err("a missing namespace must refuse to start");
    assert!(
        log.contains("serviceNetworkVpcAssociations[1].vpcIdentifier")
            && log.contains(&format!("network namespace \"{missing}\" does not exist")),
        "{log}"
    );
    assert_eq!(
        a.ns.latticed_routes(),
        "",
        "nothing half-applied in {}",
        a.name()
    );
    assert!(latticed.pinned().is_empty());
}

#[test]
fn invalid_reloads_are_refused_and_the_running_config_keeps_serving() {
    let a = Vpc::new("a");
    let b = Vpc::new("b");
    let good = two_service_config(a.name(), b.name());
    let mut latticed = Latticed::start(&good);

    let cases: Vec<(serde_json::Value, &str)> = vec![
        (
            {
                let mut c = good.clone();
                c["services"][0]["vip"] = "169.254.171.200".into();
                c
            },
            "services[0].vip: 169.254.171.200 is outside the service VIP range",
        ),
        (
            {
                let mut c = good.clone();
                let l = c["services"][0]["listeners"][0].clone();
                let mut dup = l.clone();
                dup["name"] = "http-two".into();
                c["services"][0]["listeners"] = serde_json::json!([l, dup]);
                c
            },
            "services[0].listeners[1].port: port 80 of 169.254.171.10 is already taken by listener \"http\"",
        ),
        (
            {
                let mut c = good.clone();
                c["serviceNetworkVpcAssociations"][0]["vpcIdentifier"] = "lt-no-such-ns".into();
                c
            },
            "serviceNetworkVpcAssociations[0].vpcIdentifier: network namespace \"lt-no-such-ns\" does not exist",
        ),
        (
            {
                let mut c = good.clone();
                c["targetGroups"][0]["targets"][0]["port"] = 70000.into();
                c
            },
            "targetGroups[0].targets[0].port: 70000 is outside 1-65535",
        ),
        (
            serde_json::json!({"services": [{"name": "svc-x", "listners": []}]}),
            "unknown field `listners`",
        ),
    ];
    for (config, want) in cases {
        latticed.write_config(&config);
        let tail = latticed.reload();
        assert!(tail.contains(want), "want {want:?} in:\n{tail}");
        assert!(tail.contains("keeping the current configuration"), "{tail}");
        assert!(latticed.try_wait().is_none(), "latticed must keep running");
        assert_eq!(
            echo(&b.curl(SVC_A).expect("old config still serves"))["app"],
            a.name()
        );
    }
    // Malformed JSON: line and column are reported.
    std::fs::write(&latticed.config, b"{\"services\": [").unwrap();
    let tail = latticed.reload();
    assert!(tail.contains("line 1"), "{tail}");
    assert!(b.curl(SVC_A).is_ok());

    // A valid reload applies without a restart: a new service appears, the
    // old ones keep working, a removed one is refused.
    let mut next = good.clone();
    next["services"][1]["vip"] = "169.254.171.20".into();
    latticed.write_config(&next);
    let tail = latticed.reload();
    assert!(tail.contains("configuration reloaded"), "{tail}");
    assert_eq!(
        echo(&a.curl("http://169.254.171.20/").expect("moved svc-b"))["app"],
        b.name()
    );
    assert_eq!(
        a.curl(SVC_B).unwrap_err().0,
        CURL_COULDNT_CONNECT,
        "old VIP released"
    );
    assert_eq!(
        echo(&b.curl(SVC_A).expect("untouched svc-a"))["app"],
        a.name()
    );
}

#[test]
fn target_namespace_disappearing_while_traffic_flows() {
    let mut a = Vpc::new("a");
    let b = Vpc::new("b");
    let latticed = Latticed::start(&two_service_config(a.name(), b.name()));
    let stop = AtomicBool::new(false);
    let a_name = a.name().to_owned();
    thread::scope(|s| {
        let traffic = s.spawn(|| {
            let mut codes = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                codes.push(status_of(&b, SVC_A));
            }
            codes
        });
        thread::sleep(Duration::from_millis(300));
        a.ns.delete_name();
        wait_until(Duration::from_secs(10), || {
            latticed
                .log_text()
                .contains("network namespace disappeared")
        });
        thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let codes = traffic.join().unwrap();
        assert!(
            codes.iter().any(|c| c.as_deref() == Ok("200")),
            "traffic flowed before"
        );
        assert_eq!(
            codes.last().unwrap().as_deref(),
            Ok("503"),
            "then 503, not a hang"
        );
        for c in &codes {
            assert!(
                matches!(c.as_deref(), Ok("200") | Ok("503")),
                "every request answered quickly (no timeouts): {c:?}"
            );
        }
    });
    let log = latticed.log_text();
    assert!(
        log.contains(&format!("namespace={a_name}")),
        "the log names the namespace"
    );
    // The rest keeps working: vpc-b's own service.
    assert_eq!(
        echo(&b.curl(SVC_B).expect("svc-b still served"))["app"],
        b.name()
    );

    // The namespace returns (a new one under the same name, with its app):
    // latticed re-applies the configuration by itself.
    a.ns.recreate();
    a.ns.ip(&["addr", "add", "10.0.16.10/20", "dev", "lo"]);
    let mut app = a.ns.command(bin("latticed-echo"));
    app.args(["--name", "returned", "--listen", APP_ADDR]);
    a.ns.spawn(app);
    wait_until(Duration::from_secs(10), || {
        b.curl(SVC_A)
            .is_ok_and(|body| body.contains(r#""app":"returned""#))
    });
    // The log line follows the apply, whose routing swap can already have
    // served the request above: wait for it rather than race it.
    wait_until(Duration::from_secs(5), || {
        latticed.log_text().contains("configuration re-applied")
    });
}
