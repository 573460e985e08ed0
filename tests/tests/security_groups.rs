//! Security groups on VPC associations, decided in each namespace's
//! sk_lookup program from the inventory's groups: clients of one VPC told
//! apart by address and port, groups as sources, and changes (the
//! inventory file, UpdateServiceNetworkVpcAssociation) taking effect while
//! latticed runs. Needs root.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "integration tests: a panic is the failure report"
)]

use std::time::Duration;

use latticed_tests::*;
use serde_json::json;

/// Client addresses in the client VPC, each on its own /24.
const ALLOWED: &str = "10.0.1.5";
const OTHER: &str = "10.0.2.5";
const MEMBER: &str = "10.0.3.5";
/// IPv6 clients: one in the rule's prefix, one outside it.
const ALLOWED6: &str = "fd00:1::5";
const OTHER6: &str = "fd00:2::5";

/// A client VPC with three client addresses beside the app's.
fn client_vpc() -> Vpc {
    let vpc = Vpc::new("c");
    for a in [ALLOWED, OTHER, MEMBER] {
        vpc.ns.ip(&["addr", "add", &format!("{a}/24"), "dev", "lo"]);
    }
    for a in [ALLOWED6, OTHER6] {
        vpc.ns
            .ip(&["addr", "add", &format!("{a}/64"), "dev", "lo", "nodad"]);
    }
    vpc
}

/// curl from source address `from` in `vpc`: the body, or curl's exit code
/// (7: the connection was refused).
fn from(vpc: &Vpc, from: &str, url: &str) -> Result<String, i32> {
    curl_in(&vpc.ns, url, &["--interface", from]).map_err(|(code, _)| code)
}

/// The inventory: `web` lets 10.0.1.0/24 (or `web_80_from`) and
/// fd00:1::/64 reach port 80 and 10.0.2.0/24 port 8080; `members` lets members of sg-0000app1 in (every port); the
/// instance at MEMBER in `vpc` carries sg-0000app1.
fn inventory(vpc: &str, web_80_from: &str) -> serde_json::Value {
    json!({
        "instances": {"i-0123456789abcdef0": {"vpc": vpc, "address": MEMBER, "securityGroups": ["sg-0000app1"]}},
        "securityGroups": {
            "sg-0000web1": {"ingress": [
                {"protocol": "tcp", "fromPort": 80, "toPort": 80, "cidr": web_80_from},
                {"protocol": "tcp", "fromPort": 8080, "toPort": 8080, "cidr": "10.0.2.0/24"},
                {"protocol": "tcp", "fromPort": 80, "toPort": 80, "cidr": "fd00:1::/64"}
            ]},
            "sg-000memb1": {"ingress": [{"protocol": "-1", "sourceGroup": "sg-0000app1"}]},
            "sg-0000app1": {}
        }
    })
}

fn write_inventory(l: &Latticed, inv: &serde_json::Value) {
    let path = l.state().join("inventory.json");
    let tmp = l.state().join("inventory.json.tmp");
    std::fs::create_dir_all(l.state()).unwrap();
    std::fs::write(&tmp, inv.to_string()).unwrap();
    // Replaced whole, as an operator's tooling would.
    std::fs::rename(&tmp, &path).unwrap();
}

/// The steering counter `verdict` of namespace `ns`, from /metrics.
fn steering(l: &Latticed, ns: &str, verdict: &str) -> u64 {
    let want = format!("latticed_steering_total{{namespace=\"{ns}\",verdict=\"{verdict}\"}} ");
    l.metrics()
        .lines()
        .find_map(|line| line.strip_prefix(&want))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn clients_of_one_vpc_are_told_apart_by_address_port_and_group() {
    let c = client_vpc();
    let b = Vpc::new("b");
    let mut config = two_service_config(c.name(), b.name());
    // service-b also listens on 8080.
    config["services"][1]["listeners"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "alt", "protocol": "HTTP", "port": 8080,
            "defaultAction": {"forward": {"targetGroups": [{"targetGroupIdentifier": "app-b"}]}}}));
    config["serviceNetworkVpcAssociations"][0]["securityGroupIds"] =
        json!(["sg-0000web1", "sg-000memb1"]);
    let mut l = Latticed::prepare(&config);
    write_inventory(&l, &inventory(c.name(), "10.0.1.0/24"));
    l.spawn_and_wait_ready().expect("latticed ready");
    let svc_b_alt = "http://169.254.171.11:8080/";

    // By CIDR and port.
    let body = from(&c, ALLOWED, SVC_B).expect("10.0.1.5 may reach port 80");
    assert_eq!(echo(&body)["app"], b.name());
    assert_eq!(echo(&body)["xForwardedFor"], ALLOWED);
    assert_eq!(
        from(&c, OTHER, SVC_B),
        Err(7),
        "10.0.2.5 may not reach port 80"
    );
    assert_eq!(
        from(&c, ALLOWED, svc_b_alt),
        Err(7),
        "nor 10.0.1.5 port 8080"
    );
    from(&c, OTHER, svc_b_alt).expect("10.0.2.5 may reach port 8080");
    // By group: the instance carrying sg-0000app1, on every port.
    from(&c, MEMBER, SVC_B).expect("a member of sg-0000app1, port 80");
    from(&c, MEMBER, svc_b_alt).expect("a member of sg-0000app1, port 8080");
    // The app's own address is in no rule.
    assert_eq!(from(&c, "10.0.16.10", SVC_B), Err(7));
    // An IPv6 rule, at the VIP's IPv6 twin.
    let svc_b6 = "http://[fd00:ec2:80::b]/";
    let body = from(&c, ALLOWED6, svc_b6).expect("fd00:1::/64 may reach port 80");
    assert_eq!(echo(&body)["xForwardedFor"], ALLOWED6);
    assert_eq!(from(&c, OTHER6, svc_b6), Err(7), "fd00:2::5 may not");
    // The other VPC's association has no groups: everyone is admitted.
    b.curl(SVC_A).expect("vpc-b has no security groups");

    let refused = steering(&l, c.name(), "refused_by_security_group");
    assert_eq!(refused, 4, "each refusal counted as the group's");
    assert_eq!(steering(&l, c.name(), "refused"), 0);
    assert_eq!(steering(&l, b.name(), "refused_by_security_group"), 0);

    // The map says what it is.
    let pin = l.bpffs_root.join(c.name()).join("steer_sg_rules");
    let out = std::process::Command::new("bpftool")
        .args(["map", "show", "pinned"])
        .arg(&pin)
        .output()
        .expect("bpftool");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("lpm_trie") && shown.contains("name STEER_SG_RULES"),
        "{shown}"
    );

    // The inventory file changes (no signal): 10.0.2.0/24 may now reach
    // port 80 and 10.0.1.0/24 no longer.
    write_inventory(&l, &inventory(c.name(), "10.0.2.0/24"));
    wait_until(Duration::from_secs(10), || from(&c, OTHER, SVC_B).is_ok());
    assert_eq!(from(&c, ALLOWED, SVC_B), Err(7));
    assert!(l.log_text().contains("inventory reloaded"));

    // A group the inventory lacks admits nobody, and is reported.
    config["serviceNetworkVpcAssociations"][0]["securityGroupIds"] = json!(["sg-00miss01"]);
    l.write_config(&config);
    let tail = l.reload();
    assert!(tail.contains("configuration reloaded"), "{tail}");
    assert_eq!(from(&c, MEMBER, SVC_B), Err(7));
    assert!(l.log_text().contains("sg-00miss01"));

    // No groups: everyone again.
    config["serviceNetworkVpcAssociations"][0]["securityGroupIds"] = json!([]);
    l.write_config(&config);
    l.reload();
    from(&c, ALLOWED, SVC_B).expect("open again");
    from(&c, "10.0.16.10", svc_b_alt).expect("open again");
}

#[test]
fn update_service_network_vpc_association_changes_groups_live() {
    let c = client_vpc();
    let b = Vpc::new("b");
    let l = Latticed::start_api();
    // Picked up without a signal.
    write_inventory(&l, &inventory(c.name(), "10.0.1.0/24"));
    wait_until(Duration::from_secs(10), || {
        l.log_text().contains("inventory reloaded")
    });
    let aws = l.aws();
    let id = |v: serde_json::Value| v["id"].as_str().unwrap().to_owned();
    let sn = id(aws.ok(&["create-service-network", "--name", "net"]));
    let (svc, _) = aws.service_to_app(&sn, ("shop", "app-b"), b.name());
    let assoc = id(aws.ok(&[
        "create-service-network-vpc-association",
        "--service-network-identifier",
        &sn,
        "--vpc-identifier",
        c.name(),
        "--security-group-ids",
        "sg-0000web1",
    ]));
    // By the service's name, which resolves in the VPC.
    let url = format!(
        "http://{}/",
        svc["dnsEntry"]["domainName"].as_str().unwrap()
    );
    let body = from(&c, ALLOWED, &url).expect("sg-0000web1 admits 10.0.1.0/24");
    assert_eq!(echo(&body)["app"], b.name());
    assert_eq!(from(&c, OTHER, &url), Err(7));

    let got = aws.ok(&[
        "update-service-network-vpc-association",
        "--service-network-vpc-association-identifier",
        &assoc,
        "--security-group-ids",
        "sg-000memb1",
    ]);
    assert_eq!(got["securityGroupIds"], json!(["sg-000memb1"]));
    assert_eq!(
        from(&c, ALLOWED, &url),
        Err(7),
        "sg-0000web1 no longer applies"
    );
    from(&c, MEMBER, &url).expect("members of sg-0000app1 may");
    let listed = aws.ok(&[
        "get-service-network-vpc-association",
        "--service-network-vpc-association-identifier",
        &assoc,
    ]);
    assert_eq!(listed["securityGroupIds"], json!(["sg-000memb1"]));
}
