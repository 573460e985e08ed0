//! Cluster mode: a three-member etcd from Debian's binaries on loopback
//! and two latticed nodes on this machine, each with its own ports, paths,
//! bpffs root and namespaces (privileged, real processes, no mocks).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic is the failure report"
)]

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use latticed_tests::{
    account, add_principal, api_request, echo,
    etcd::{Etcd, Node},
    wait_until, Vpc,
};
use serde_json::{json, Value};

/// A signed API call to `node`: (status, error type, body as JSON).
fn call(node: &Node, method: &str, path: &str, body: &Value) -> (u16, String, Value) {
    let aws = node.latticed.aws();
    let (key, secret) = aws.keys();
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let (status, kind, text) = api_request(
        node.latticed.api().port,
        method,
        path,
        &bytes,
        Some((&key, &secret)),
    )
    .expect("API reachable");
    (
        status,
        kind,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// A call that must succeed; its answer.
fn ok(node: &Node, method: &str, path: &str, body: &Value) -> Value {
    let (status, kind, v) = call(node, method, path, body);
    assert!(
        status < 300,
        "{method} {path} on {}: {status} {kind} {v}",
        node.name
    );
    v
}

/// Names of the service networks `node` lists.
fn network_names(node: &Node) -> Vec<String> {
    let v = ok(node, "GET", "/servicenetworks?maxResults=100", &Value::Null);
    let mut names: Vec<String> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// A service in `sn` forwarding to the echo app of `vpc` (through `via`),
/// and `client` associated with `sn`: the service's DNS name.
fn service_to(via: &Node, sn: &str, name: &str, vpc: &str) -> String {
    let (svc, _) = via
        .latticed
        .aws()
        .service_to_app(sn, (name, &format!("{name}-tg")), vpc);
    svc["dnsEntry"]["domainName"].as_str().unwrap().to_owned()
}

fn associate(via: &Node, sn: &str, vpc: &str) {
    ok(
        via,
        "POST",
        "/servicenetworkvpcassociations",
        &json!({"serviceNetworkIdentifier": sn, "vpcIdentifier": vpc}),
    );
}

/// The app behind `name` answers a client in `client` (waits for the data
/// path to follow, up to `limit`).
fn reaches(client: &Vpc, name: &str, app: &str, limit: Duration) {
    wait_until(limit, || {
        client
            .curl(&format!("http://{name}/"))
            .is_ok_and(|b| echo(&b)["app"] == app)
    });
}

/// Every API operation's answer is the cluster's: the admin key, reads of
/// another node's writes, and races between two nodes that AWS settles
/// one way (names, quotas, client tokens, VIPs, conflicts).
#[test]
fn every_node_serves_one_state_and_races_between_nodes_have_one_winner() {
    let etcd = Etcd::start(3);
    let (va, vb) = (Vpc::new("ca"), Vpc::new("cb"));
    let quota = ["--quota", "services=11", "--quota", "service-networks=100"];
    let a = Node::start_with("node-a", &etcd.endpoints(), &[va.name()], &quota);
    let b = Node::start_with("node-b", &etcd.endpoints(), &[vb.name()], &quota);

    // One admin key for the cluster, in every node's state directory.
    let creds = |n: &Node| {
        std::fs::read_to_string(n.latticed.api().state_dir.join("admin-credentials")).unwrap()
    };
    assert_eq!(creds(&a), creds(&b));

    // Read-your-writes across nodes, both ways, with no wait: reads, and
    // writes that name what the other node just made.
    for i in 0..10 {
        let (w, r) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let made = ok(
            w,
            "POST",
            "/servicenetworks",
            &json!({"name": format!("rw-{i}")}),
        );
        let id = made["id"].as_str().unwrap();
        let got = ok(r, "GET", &format!("/servicenetworks/{id}"), &Value::Null);
        assert_eq!(
            got["name"],
            format!("rw-{i}"),
            "read on {} right after the write on {}",
            r.name,
            w.name
        );
        assert!(network_names(r).contains(&format!("rw-{i}")));
        // A write on the other node that names it, at once.
        let updated = ok(
            r,
            "PATCH",
            &format!("/servicenetworks/{id}"),
            &json!({"authType": "AWS_IAM"}),
        );
        assert_eq!(updated["authType"], "AWS_IAM");
        let made = ok(
            w,
            "POST",
            "/servicenetworks",
            &json!({"name": format!("rw2-{i}")}),
        );
        let id = made["id"].as_str().unwrap();
        let updated = ok(
            r,
            "PATCH",
            &format!("/servicenetworks/{id}"),
            &json!({"authType": "AWS_IAM"}),
        );
        assert_eq!(
            updated["authType"], "AWS_IAM",
            "a write on {} naming what {} just made",
            r.name, w.name
        );
    }

    // Two nodes create the same 20 names at the same moment: each name is
    // created once; the loser gets ConflictException.
    let race = |node: &Node, names: Vec<String>| -> Vec<(String, u16, String, Value)> {
        names
            .into_iter()
            .map(|n| {
                let (s, k, v) = call(node, "POST", "/servicenetworks", &json!({"name": n}));
                (n, s, k, v)
            })
            .collect()
    };
    let names: Vec<String> = (0..20).map(|i| format!("race-{i}")).collect();
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| race(&a, names.clone()));
        let tb = s.spawn(|| race(&b, names.clone()));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    for (x, y) in ra.iter().zip(&rb) {
        let won = [x, y].iter().filter(|r| r.1 < 300).count();
        assert_eq!(won, 1, "{}: {:?} / {:?}", x.0, (x.1, &x.2), (y.1, &y.2));
        let lost = if x.1 < 300 { y } else { x };
        assert_eq!(lost.2, "ConflictException", "{}: {}", lost.0, lost.3);
    }
    for n in [&a, &b] {
        let listed = network_names(n);
        for name in &names {
            assert_eq!(
                listed.iter().filter(|l| *l == name).count(),
                1,
                "{name} on {}",
                n.name
            );
        }
    }

    // One clientToken sent to both nodes at once: one network, one answer.
    let body = json!({"name": "token-net", "clientToken": "the-same-token"});
    let (ta, tb) = std::thread::scope(|s| {
        let x = s.spawn(|| call(&a, "POST", "/servicenetworks", &body));
        let y = s.spawn(|| call(&b, "POST", "/servicenetworks", &body));
        (x.join().unwrap(), y.join().unwrap())
    });
    assert!(ta.0 < 300 && tb.0 < 300, "{ta:?} {tb:?}");
    assert_eq!(ta.2["id"], tb.2["id"]);
    assert_eq!(
        network_names(&a)
            .iter()
            .filter(|n| *n == "token-net")
            .count(),
        1
    );

    // Resource configurations made on both nodes at once: no VIP twice
    // (read back from etcd itself).
    let gw = ok(
        &a,
        "POST",
        "/resourcegateways",
        &json!({"name": "gateway", "vpcIdentifier": va.name(), "subnetIds": ["subnet-1"]}),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let rcfg = |node: &Node, tag: &str| {
        (0..8)
            .map(|i| {
                ok(node, "POST", "/resourceconfigurations", &json!({
                    "name": format!("db-{tag}-{i}"), "type": "SINGLE", "resourceGatewayIdentifier": gw,
                    "portRanges": ["5432"],
                    "resourceConfigurationDefinition": {"ipResource": {"ipAddress": "10.0.16.10"}}}))
            })
            .count()
    };
    std::thread::scope(|s| {
        let x = s.spawn(|| rcfg(&a, "a"));
        let y = s.spawn(|| rcfg(&b, "b"));
        assert_eq!(x.join().unwrap() + y.join().unwrap(), 16);
    });
    let stored = etcd.ctl(&[
        "get",
        "--prefix",
        "/latticed/resources/rcfg-",
        "--print-value-only",
    ]);
    let vips: Vec<String> = stored
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["_vip"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(vips.len(), 16, "{stored}");
    assert_eq!(
        vips.iter().collect::<BTreeSet<_>>().len(),
        16,
        "a VIP given twice: {vips:?}"
    );

    // A conflict seen across nodes: the association made on A keeps B
    // from deleting the network.
    let sn = ok(&a, "POST", "/servicenetworks", &json!({"name": "held"}))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    associate(&a, &sn, va.name());
    let (status, kind, _) = call(
        &b,
        "DELETE",
        &format!("/servicenetworks/{sn}"),
        &Value::Null,
    );
    assert_eq!((status, kind.as_str()), (409, "ConflictException"));

    // A write through B reaches the data path on A, which hosts both the
    // client and the target VPC.
    let name = service_to(&b, &sn, "across", va.name());
    reaches(&va, &name, va.name(), Duration::from_secs(10));

    // A quota of 11 services (one exists), filled from two nodes at once:
    // exactly 11.
    let fill = |node: &Node, tag: &str| {
        (0..10)
            .map(|i| {
                call(
                    node,
                    "POST",
                    "/services",
                    &json!({"name": format!("q{tag}-{i}")}),
                )
            })
            .collect::<Vec<_>>()
    };
    let (qa, qb) = std::thread::scope(|s| {
        let ta = s.spawn(|| fill(&a, "a"));
        let tb = s.spawn(|| fill(&b, "b"));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    let made = qa.iter().chain(&qb).filter(|r| r.0 < 300).count();
    assert_eq!(
        made, 10,
        "services created past the quota (11, one existed)"
    );
    assert!(qa
        .iter()
        .chain(&qb)
        .filter(|r| r.0 >= 300)
        .all(|r| r.1 == "ServiceQuotaExceededException"));
    let listed = ok(&b, "GET", "/services?maxResults=100", &Value::Null);
    assert_eq!(listed["items"].as_array().unwrap().len(), 11);

    // A VPC no node hosts is refused; one two nodes claim is refused by
    // both, naming both, and both logs say so.
    let (status, _, v) = call(
        &b,
        "POST",
        "/servicenetworkvpcassociations",
        &json!({"serviceNetworkIdentifier": sn, "vpcIdentifier": "vpc-nowhere"}),
    );
    assert_eq!(status, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("no node"), "{v}");
    b.host(va.name());
    for n in [&a, &b] {
        assert!(
            n.wait_log("claimed by more than one node", Duration::from_secs(10)),
            "{}",
            n.name
        );
    }
    let sn2 = ok(&a, "POST", "/servicenetworks", &json!({"name": "second"}))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in [&a, &b] {
        let (status, _, v) = call(
            n,
            "POST",
            "/servicenetworkvpcassociations",
            &json!({"serviceNetworkIdentifier": sn2, "vpcIdentifier": va.name()}),
        );
        let msg = v["message"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "{v}");
        assert!(msg.contains("node-a") && msg.contains("node-b"), "{msg}");
    }

    // Other accounts are the cluster's: one `account add` against etcd,
    // and its key works on both nodes.
    let eps = etcd.endpoints();
    let text = account(
        &a.latticed,
        &[
            "add",
            "--account-id",
            "222233334444",
            "--etcd-endpoints",
            &eps,
        ],
    )
    .unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} = ")))
            .unwrap()
            .to_owned()
    };
    let (key, secret) = (field("aws_access_key_id"), field("aws_secret_access_key"));
    for n in [&a, &b] {
        let mut answered = 0;
        wait_until(Duration::from_secs(10), || {
            let (status, _, _) = api_request(
                n.latticed.api().port,
                "GET",
                "/servicenetworks",
                b"",
                Some((&key, &secret)),
            )
            .unwrap();
            answered = status;
            status == 200
        });
        assert_eq!(answered, 200, "the new account's key on {}", n.name);
    }
    assert!(account(&b.latticed, &["list", "--etcd-endpoints", &eps])
        .unwrap()
        .contains("222233334444"));

    // A VPC's owner is what the inventory of the node hosting it says, on
    // every node: A's inventory gives va to the new account, and the
    // default account is refused va through either node. (B lets va go
    // first: a VPC two nodes claim is refused before its owner is asked.)
    std::fs::remove_file(b.netns_dir.join(va.name())).unwrap();
    std::fs::write(
        a.latticed.state().join("inventory.json"),
        json!({"vpcs": {va.name(): "222233334444"}}).to_string(),
    )
    .unwrap();
    let sn3 = ok(&b, "POST", "/servicenetworks", &json!({"name": "third"}))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in [&b, &a] {
        let mut last = (0, String::new());
        wait_until(Duration::from_secs(10), || {
            let (status, kind, _) = call(
                n,
                "POST",
                "/servicenetworkvpcassociations",
                &json!({"serviceNetworkIdentifier": sn3, "vpcIdentifier": va.name()}),
            );
            last = (status, kind);
            status == 403
        });
        assert_eq!(last.1, "AccessDeniedException", "on {}: {last:?}", n.name);
    }

    // Data-path principals are the cluster's: one `principal add` against
    // etcd reaches both nodes.
    add_principal(
        &a.latticed.api().state_dir,
        "arn:aws:iam::111122223333:role/app",
        &["--etcd-endpoints", &eps],
    );
    for n in [&a, &b] {
        assert!(
            n.wait_log(
                "data-path credentials loaded source=etcd credentials=1",
                Duration::from_secs(10)
            ),
            "{}",
            n.name
        );
    }
}

/// Static stability: with every etcd member down, both nodes serve traffic
/// with what they knew, answer reads, and refuse mutations fast and whole;
/// when etcd returns they catch up, by the watch or, past a compaction, by
/// reading everything again.
#[test]
fn nodes_serve_through_an_etcd_outage_and_catch_up_after_it() {
    let mut etcd = Etcd::start(3);
    let (va, vb) = (Vpc::new("oa"), Vpc::new("ob"));
    let mut a = Node::start("node-a", &etcd.endpoints(), &[va.name()]);
    // B talks to member 2 alone, so it can be cut off on its own below.
    let b = Node::start("node-b", &etcd.endpoint(2), &[vb.name()]);
    let sn = ok(&a, "POST", "/servicenetworks", &json!({"name": "net"}))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    associate(&a, &sn, va.name());
    associate(&a, &sn, vb.name());
    let to_a = service_to(&a, &sn, "to-a", va.name());
    let to_b = service_to(&b, &sn, "to-b", vb.name());
    reaches(&va, &to_a, va.name(), Duration::from_secs(10));
    reaches(&vb, &to_b, vb.name(), Duration::from_secs(10));

    // What an operator alerts on: the watch is up, both nodes are there.
    let metrics = a.latticed.metrics();
    assert!(
        metrics.contains("latticed_cluster_connected 1"),
        "{metrics}"
    );
    assert!(metrics.contains("latticed_cluster_nodes 2"), "{metrics}");

    // One member down: writes still commit.
    etcd.kill_member(0);
    ok(
        &a,
        "POST",
        "/servicenetworks",
        &json!({"name": "one-member-down"}),
    );
    assert!(network_names(&b).contains(&"one-member-down".to_owned()));

    // Every member down.
    let associations = ok(
        &a,
        "GET",
        &format!("/servicenetworkserviceassociations?serviceNetworkIdentifier={sn}"),
        &Value::Null,
    );
    let to_a_association = associations["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["serviceName"] == "to-a")
        .and_then(|i| i["id"].as_str())
        .unwrap()
        .to_owned();
    etcd.kill_all();
    let before = network_names(&a);
    // A change etcd never takes never reaches the data path, not even
    // while its commit is failing: to-a stays reachable throughout.
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let probe = s.spawn(|| {
            let mut asked = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                va.curl(&format!("http://{to_a}/"))
                    .expect("traffic to a service whose association etcd never removed");
                asked += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            asked
        });
        let (status, kind, v) = call(
            &a,
            "DELETE",
            &format!("/servicenetworkserviceassociations/{to_a_association}"),
            &Value::Null,
        );
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            (status, kind.as_str()),
            (500, "InternalServerException"),
            "{v}"
        );
        assert!(
            probe.join().unwrap() >= 3,
            "the probe ran while the commit was failing"
        );
    });
    let start = Instant::now();
    let mut refused = 0;
    while start.elapsed() < Duration::from_secs(30) {
        assert_eq!(
            echo(
                &va.curl(&format!("http://{to_a}/"))
                    .expect("traffic on node A during the outage")
            )["app"],
            va.name()
        );
        assert_eq!(
            echo(
                &vb.curl(&format!("http://{to_b}/"))
                    .expect("traffic on node B during the outage")
            )["app"],
            vb.name()
        );
        if refused < 2 {
            for n in [&a, &b] {
                let t = Instant::now();
                let (status, kind, v) = call(
                    n,
                    "POST",
                    "/servicenetworks",
                    &json!({"name": format!("during-{}", n.name)}),
                );
                assert!(
                    t.elapsed() < Duration::from_secs(8),
                    "a mutation took {:?}",
                    t.elapsed()
                );
                assert_eq!(
                    (status, kind.as_str()),
                    (500, "InternalServerException"),
                    "{v}"
                );
                assert!(v["message"].as_str().unwrap().contains("etcd"), "{v}");
                // Reads answer from the node's copy.
                assert_eq!(network_names(n).len(), before.len());
            }
            refused += 1;
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    let metrics = a.latticed.metrics();
    assert!(
        metrics.contains("latticed_cluster_connected 0"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("latticed_cluster_commits_total{outcome=\"failed\"} 0"),
        "{metrics}"
    );

    // Node A restarted while etcd is still down comes back from its own
    // copy of the state: its data path, and reads.
    a.latticed.stop_with(libc::SIGTERM);
    a.latticed
        .spawn_and_wait_ready()
        .expect("node A restarted during the outage");
    assert!(a.wait_log("starting from this node's copy", Duration::from_secs(1)));
    reaches(&va, &to_a, va.name(), Duration::from_secs(5));
    assert_eq!(network_names(&a), before);

    // etcd back: writes work again on both, nothing of the refused ones
    // exists, and each node follows the other.
    etcd.restart_all();
    let mut made = None;
    wait_until(Duration::from_secs(20), || {
        let (s, _, v) = call(
            &a,
            "POST",
            "/servicenetworks",
            &json!({"name": "after-outage"}),
        );
        made = Some(v);
        s < 300
    });
    wait_until(Duration::from_secs(10), || {
        network_names(&b).contains(&"after-outage".to_owned())
    });
    ok(
        &b,
        "POST",
        "/servicenetworks",
        &json!({"name": "after-outage-b"}),
    );
    assert!(network_names(&a).contains(&"after-outage-b".to_owned()));
    wait_until(Duration::from_secs(10), || {
        a.latticed
            .metrics()
            .contains("latticed_cluster_connected 1")
    });
    for n in [&a, &b] {
        assert!(
            !network_names(n).iter().any(|x| x.starts_with("during-")),
            "a refused mutation was applied"
        );
    }

    // Past a compaction: B is cut off (its one member down) while A makes
    // a service for B's VPC and etcd compacts; B comes back by reading
    // everything again and serves the new service.
    etcd.kill_member(2);
    let late = service_to(&a, &sn, "late", vb.name());
    let rev: Value =
        serde_json::from_str(&etcd.ctl(&["get", "/latticed/rev", "-w", "json"])).unwrap();
    let revision = rev["header"]["revision"].as_i64().unwrap();
    etcd.ctl(&["compact", &revision.to_string()]);
    etcd.restart_all();
    assert!(b.wait_log("resynced with etcd", Duration::from_secs(20)));
    reaches(&vb, &late, vb.name(), Duration::from_secs(10));
    let listed: BTreeMap<String, ()> = network_names(&b).into_iter().map(|n| (n, ())).collect();
    assert!(listed.contains_key("after-outage-b"));
}

/// A node SIGKILLed in the middle of a stream of writes: every write it
/// acknowledged is in etcd (read through the other node), and it comes
/// back with its data path.
#[test]
fn a_node_killed_during_writes_loses_nothing_it_acknowledged() {
    let etcd = Etcd::start(3);
    let (va, vb) = (Vpc::new("ka"), Vpc::new("kb"));
    let mut a = Node::start("node-a", &etcd.endpoints(), &[va.name()]);
    let b = Node::start("node-b", &etcd.endpoints(), &[vb.name()]);
    let sn = ok(&a, "POST", "/servicenetworks", &json!({"name": "net"}))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    associate(&a, &sn, va.name());
    let name = service_to(&a, &sn, "kept", va.name());
    reaches(&va, &name, va.name(), Duration::from_secs(10));

    let port = a.latticed.api().port;
    let keys = a.latticed.aws().keys();
    let writer = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for i in 0.. {
            let body = json!({"name": format!("w-{i}")}).to_string();
            match api_request(
                port,
                "POST",
                "/servicenetworks",
                body.as_bytes(),
                Some((&keys.0, &keys.1)),
            ) {
                Ok((s, _, _)) if s < 300 => acked.push(format!("w-{i}")),
                _ => break,
            }
        }
        acked
    });
    let acked = a
        .latticed
        .crash_and_restart(Duration::from_millis(1500), writer);
    assert!(
        acked.len() > 5,
        "only {} writes before the kill",
        acked.len()
    );
    for n in [&b, &a] {
        let listed = network_names_all(n);
        for w in &acked {
            assert!(
                listed.contains(w),
                "{w} acknowledged by node-a but missing on {}",
                n.name
            );
        }
    }
    reaches(&va, &name, va.name(), Duration::from_secs(10));
}

/// Every service network's name, following pages.
fn network_names_all(node: &Node) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut token: Option<String> = None;
    loop {
        let path = match &token {
            Some(t) => format!("/servicenetworks?maxResults=100&nextToken={t}"),
            None => "/servicenetworks?maxResults=100".to_owned(),
        };
        let v = ok(node, "GET", &path, &Value::Null);
        for i in v["items"].as_array().unwrap() {
            out.insert(i["name"].as_str().unwrap().to_owned());
        }
        match v["nextToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => return out,
        }
    }
}

/// etcd that takes only mutual TLS: a node with etcdctl's three flags works;
/// a node without a client certificate, or with one from another CA, does
/// not start, and says why.
#[test]
fn etcd_over_mutual_tls() {
    let etcd = Etcd::start_tls(3);
    let tls = etcd.tls.clone().unwrap();
    let flags = |pair: &(std::path::PathBuf, std::path::PathBuf)| {
        vec![
            "--etcd-cacert".to_owned(),
            tls.ca.display().to_string(),
            "--etcd-cert".to_owned(),
            pair.0.display().to_string(),
            "--etcd-key".to_owned(),
            pair.1.display().to_string(),
        ]
    };
    let good = flags(&tls.client);
    let good: Vec<&str> = good.iter().map(String::as_str).collect();
    let node = Node::start_with("node-a", &etcd.endpoints(), &[], &good);
    let made = ok(
        &node,
        "POST",
        "/servicenetworks",
        &json!({"name": "over-tls"}),
    );
    let id = made["id"].as_str().unwrap();
    assert!(etcd
        .ctl(&["get", "--prefix", "/latticed/resources/", "--keys-only"])
        .contains(id));

    let only_ca = ["--etcd-cacert", tls.ca.to_str().unwrap()];
    let stranger = flags(&tls.stranger);
    let stranger: Vec<&str> = stranger.iter().map(String::as_str).collect();
    for (what, extra) in [
        ("no client certificate", &only_ca[..]),
        ("another CA's certificate", &stranger[..]),
    ] {
        let started = Instant::now();
        let log = Node::try_start("node-x", &etcd.endpoints(), &[], extra)
            .err()
            .unwrap_or_else(|| panic!("a node with {what} started"));
        assert!(log.contains("etcd (https://127.0.0.1:"), "{what}: {log}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{what}: took {:?}",
            started.elapsed()
        );
    }
}

/// A node joining a cluster with more records than one read returns (500
/// keys a page) reads them all, at one revision.
#[test]
fn a_node_joining_reads_a_large_state_whole() {
    let etcd = Etcd::start(3);
    let quota = ["--quota", "service-networks=1000"];
    let a = Node::start_with("node-a", &etcd.endpoints(), &[], &quota);
    for i in 0..1000 {
        ok(
            &a,
            "POST",
            "/servicenetworks",
            &json!({"name": format!("many-{i:04}")}),
        );
    }
    let b = Node::start_with("node-b", &etcd.endpoints(), &[], &quota);
    let names = network_names_all(&b);
    assert_eq!(names.len(), 1000);
    assert!(names.contains("many-0000") && names.contains("many-0999"));
}
