//! IPv6 beside IPv4: every service also answers at its twin in
//! fd00:ec2:80::/64, AAAA names it, IPV6 target groups take IPv6 targets
//! reached from the IPv6 source pool, and either family of client reaches
//! either family of target. Namespaces with only IPv6, only IPv4, and both.
//! Needs root.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "integration tests: a panic is the failure report"
)]

use std::time::Duration;

use latticed_tests::*;
use serde_json::{json, Value};

/// The IPv6 address of the app (and the client) in the namespaces that
/// have IPv6; they overlap, as the IPv4 ones do.
const APP6: &str = "fd00:6::10";

/// A namespace with IPv6 only: `APP6` on lo and an echo app on it (no
/// IPv4 address but loopback's).
fn v6_only(suffix: &str) -> NetNsGuard {
    let mut ns = NetNsGuard::new(suffix);
    ns.ip(&["addr", "add", &format!("{APP6}/64"), "dev", "lo", "nodad"]);
    spawn_echo(&mut ns, &format!("{suffix}-app"), &format!("[{APP6}]:8080"));
    ns
}

/// A walkthrough VPC with IPv6 disabled in it.
fn v4_only(suffix: &str) -> Vpc {
    let vpc = Vpc::new(suffix);
    for dev in ["all", "default", "lo"] {
        let out = vpc
            .ns
            .command("sysctl")
            .args(["-qw", &format!("net.ipv6.conf.{dev}.disable_ipv6=1")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    vpc
}

/// A walkthrough VPC that also has `APP6` (its app stays on IPv4).
fn dual(suffix: &str) -> Vpc {
    let vpc = Vpc::new(suffix);
    vpc.ns
        .ip(&["addr", "add", &format!("{APP6}/64"), "dev", "lo", "nodad"]);
    vpc
}

fn http_listener(group: &str) -> Value {
    json!([{"name": "http", "protocol": "HTTP", "port": 80,
        "defaultAction": {"forward": {"targetGroups": [{"targetGroupIdentifier": group}]}}}])
}

/// web-six (VIP .20) forwards to the IPv6 app in `six`; web-four (.21) to
/// the IPv4 app in `four`; one network holds both and is associated with
/// all three VPCs; requests are logged.
fn config(six: &str, four: &str, both: &str) -> Value {
    let health = json!({"path": "/health", "healthCheckIntervalSeconds": 5,
        "healthyThresholdCount": 2});
    json!({
        "serviceNetworks": [{"name": "net"}],
        "services": [
            {"name": "web-six", "vip": "169.254.171.20", "customDomainName": "six.example.internal",
             "listeners": http_listener("app-six")},
            {"name": "web-four", "vip": "169.254.171.21", "customDomainName": "four.example.internal",
             "listeners": http_listener("app-four")}],
        "targetGroups": [
            {"name": "app-six", "type": "IP", "config": {"vpcIdentifier": six, "port": 8080,
                "protocol": "HTTP", "ipAddressType": "IPV6", "healthCheck": health},
             "targets": [{"id": APP6}]},
            {"name": "app-four", "type": "IP", "config": {"vpcIdentifier": four, "port": 8080,
                "protocol": "HTTP"}, "targets": [{"id": "10.0.16.10"}]}],
        "serviceNetworkServiceAssociations": [
            {"serviceNetworkIdentifier": "net", "serviceIdentifier": "web-six"},
            {"serviceNetworkIdentifier": "net", "serviceIdentifier": "web-four"}],
        "serviceNetworkVpcAssociations": [
            {"serviceNetworkIdentifier": "net", "vpcIdentifier": six},
            {"serviceNetworkIdentifier": "net", "vpcIdentifier": four},
            {"serviceNetworkIdentifier": "net", "vpcIdentifier": both}],
        "accessLogSubscriptions": [{"resourceIdentifier": "net",
            "destinationArn": "arn:aws:logs:us-east-1:111122223333:log-group:v6"}]
    })
}

fn in_v6_pool(client: &str) -> bool {
    let ip: std::net::SocketAddrV6 = client.parse().unwrap();
    let o = ip.ip().octets();
    o[..8] == [0xfd, 0x00, 0x0e, 0xc2, 0x00, 0x80, 0, 0]
        && o[8..15].iter().all(|b| *b == 0)
        && (192..=252).contains(&o[15])
}

#[test]
fn either_family_of_client_reaches_either_family_of_target() {
    let six = v6_only("six");
    let four = v4_only("four");
    let both = dual("both");
    let mut latticed = Latticed::start(&config(six.name(), four.name(), both.name()));

    // IPv6 client (both) -> IPv6 target (six), by the VIP's twin.
    let body = curl_in(&both.ns, "http://[fd00:ec2:80::14]/v6", &["-6"]).expect("v6 to v6");
    let answer = echo(&body);
    assert_eq!(answer["app"], "six-app");
    let client = answer["client"].as_str().unwrap();
    assert!(in_v6_pool(client), "target saw {client}, not the IPv6 pool");
    assert_eq!(answer["xForwardedFor"], APP6, "the real client");

    // IPv6-only client -> IPv4 target, by name (AAAA is the twin).
    let body = curl_in(&six, "http://four.example.internal/", &["-6"]).expect("v6 to v4");
    let answer = echo(&body);
    assert_eq!(answer["app"], four.name());
    assert!(in_source_pool(answer["client"].as_str().unwrap()));
    assert_eq!(answer["xForwardedFor"], APP6);

    // IPv4-only client (no IPv6 at all there) -> IPv6 target.
    let body = four.curl("http://169.254.171.20/").expect("v4 to v6");
    let answer = echo(&body);
    assert_eq!(answer["app"], "six-app");
    assert!(in_v6_pool(answer["client"].as_str().unwrap()));
    assert_eq!(answer["xForwardedFor"], "10.0.16.10");

    // A dual-stack client by name takes either family and gets an answer.
    echo(&curl_in(&both.ns, "http://six.example.internal/", &[]).expect("by name"));
    // An IPv6 address in the range that is no VIP is refused.
    assert_eq!(
        curl_in(&both.ns, "http://[fd00:ec2:80::99]/", &["-6"])
            .unwrap_err()
            .0,
        7
    );

    // The resolver answers at its IPv6 address in the IPv6-only VPC.
    let out = six
        .command("dig")
        .args(["@fd00:ec2:80::fd", "+short", "six.example.internal", "AAAA"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "fd00:ec2:80::14"
    );
    let out = six
        .command("dig")
        .args(["@fd00:ec2:80::fd", "+short", "six.example.internal", "A"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "169.254.171.20"
    );

    // The IPv6 target is health-checked from the IPv6 pool.
    wait_until(Duration::from_secs(20), || {
        latticed
            .metrics()
            .contains("latticed_targets{target_group=\"app-six\",health=\"healthy\"} 1")
    });

    // Access log lines carry IPv6 endpoints bracketed.
    let log = latticed.log_dir.join("v6.log");
    let mut lines: Vec<Value> = Vec::new();
    wait_until(Duration::from_secs(5), || {
        lines = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        lines.len() >= 4
    });
    let first = &lines[0];
    assert!(
        first["sourceIpPort"]
            .as_str()
            .unwrap()
            .starts_with(&format!("[{APP6}]:")),
        "{first}"
    );
    assert_eq!(first["targetIpPort"], format!("[{APP6}]:8080"), "{first}");
    let third = &lines[2];
    assert!(
        third["sourceIpPort"]
            .as_str()
            .unwrap()
            .starts_with("10.0.16.10:"),
        "{third}"
    );

    // Nothing of either family is left after SIGTERM.
    let status = latticed.stop_with(libc::SIGTERM);
    assert!(status.success());
    assert_eq!(both.ns.latticed_routes(), "");
    assert_eq!(six.latticed_routes(), "");
}
