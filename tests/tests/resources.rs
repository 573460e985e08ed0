//! TCP resources end to end, with the stock AWS CLI and a real PostgreSQL
//! from Debian's packages reached with `psql`: a provider VPC with a
//! resource gateway, a consumer VPC with the same 10.0.16.0/20, and a third
//! VPC in another service network. The consumer reaches the database by
//! the resource's generated DNS name and by its custom domain name, through
//! a port range (5400-5500), from a source address of the pool;
//! a port outside the ranges and the other VPC are refused; a GROUP's
//! children each have a name; a DNS resource follows its name's new address
//! for new connections while an open one carries on; each connection is
//! one access-log line with Lattice's resource fields. Needs root.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "integration tests: a panic is the failure report"
)]

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use latticed_tests::*;
use serde_json::{json, Value};

/// PostgreSQL's server binaries (Debian keeps them per major version).
fn pg_bin(name: &str) -> PathBuf {
    let dir = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed by the set-up")
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .find(|p| p.join(name).exists())
        .expect("a PostgreSQL server");
    dir.join(name)
}

/// A PostgreSQL server in `ns` on `addrs` port 5432, data in `dir`, every
/// client trusted (the test is about the network path).
fn start_postgres(ns: &mut NetNsGuard, dir: &Path, addrs: &str) -> u32 {
    std::fs::create_dir_all(dir).unwrap();
    let chown = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(chown.success());
    let data = dir.join("data");
    let init = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(pg_bin("initdb"))
        .args(["-A", "trust", "-U", "postgres", "-D"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let mut hba = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("pg_hba.conf"))
        .unwrap();
    writeln!(hba, "host all all 0.0.0.0/0 trust").unwrap();
    let mut cmd = ns.command("runuser");
    cmd.args(["-u", "postgres", "--"])
        .arg(pg_bin("postgres"))
        .arg("-D")
        .arg(&data)
        .arg("-k")
        .arg(dir)
        .args(["-h", addrs, "-p", "5432"]);
    ns.spawn(cmd)
}

/// `psql` in `ns` against `host:port`, one query, unaligned output.
fn psql(ns: &NetNsGuard, host: &str, port: u16, query: &str) -> Result<String, String> {
    let out = ns
        .command("psql")
        .args([
            "-h",
            host,
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .args(["-At", "-c", query])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// The address the server saw the query arrive on, and the client it saw.
fn who(ns: &NetNsGuard, host: &str, port: u16) -> (String, String) {
    let row = psql(
        ns,
        host,
        port,
        "select host(inet_server_addr()) || ' ' || host(inet_client_addr())",
    )
    .unwrap_or_else(|e| panic!("psql to {host}:{port}: {e}"));
    let (server, client) = row.split_once(' ').expect("two addresses");
    (server.to_owned(), client.to_owned())
}

/// A resource gateway in VPC `vpc`: its id.
fn gateway(aws: &Aws, vpc: &str) -> String {
    let gw = aws.ok(&[
        "create-resource-gateway",
        "--name",
        "provider-gw",
        "--vpc-identifier",
        vpc,
        "--subnet-ids",
        "subnet-0123456789abcdef0",
    ]);
    gw["id"].as_str().unwrap().to_owned()
}

/// A file latticed's DNS resource lookups read for the provider VPC, as
/// `ip netns exec` would give processes there; removed on drop.
struct ResolvConf(PathBuf);

impl ResolvConf {
    fn new(ns: &str, nameserver: &str) -> Self {
        let dir = Path::new("/etc/netns").join(ns);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("resolv.conf"),
            format!("nameserver {nameserver}\n"),
        )
        .unwrap();
        Self(dir)
    }
}

impl Drop for ResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// Long: one walk through the resource path, each step building on the last, as a user would try it.
#[test]
fn a_database_is_reached_through_its_resource_configuration() {
    let tmp = std::env::temp_dir().join(format!("latticed-rsc-{}", unique()));
    std::fs::create_dir_all(&tmp).unwrap();
    // The provider VPC: the database on .20 and .21, a web app on .20:8080,
    // and a DNS server on .53 for the provider's own names.
    let mut provider = NetNsGuard::new("prov");
    for a in [
        "10.0.16.10/20",
        "10.0.16.20/20",
        "10.0.16.21/20",
        "10.0.16.53/20",
    ] {
        provider.ip(&["addr", "add", a, "dev", "lo"]);
    }
    let pg = start_postgres(&mut provider, &tmp.join("pg"), "10.0.16.20,10.0.16.21");
    spawn_echo(&mut provider, "provider-web", "10.0.16.20:8080");
    let records = tmp.join("records.json");
    let set_db = |addr: &str| {
        let r = json!({"db.provider.internal.": {"A": [addr], "ttl": 1}});
        std::fs::write(&records, r.to_string()).unwrap();
    };
    set_db("10.0.16.20");
    let port_file = tmp.join("dns-port");
    let mut dns = Command::new("ip");
    dns.args(["netns", "exec", provider.name(), "python3"])
        .arg(apps_dir().join("txt_dns.py"))
        .arg(&records)
        .arg(&port_file)
        .arg("10.0.16.53:53");
    provider.spawn(dns);
    wait_until(Duration::from_secs(5), || port_file.exists());
    let _resolv = ResolvConf::new(provider.name(), "10.0.16.53");
    wait_until(Duration::from_secs(15), || {
        psql(&provider, "10.0.16.20", 5432, "select 1").is_ok()
    });
    // The consumer overlaps the provider; the outsider is in another network.
    let consumer = NetNsGuard::new("cons");
    consumer.ip(&["addr", "add", "10.0.16.10/20", "dev", "lo"]);
    let outsider = NetNsGuard::new("outs");
    outsider.ip(&["addr", "add", "10.0.16.10/20", "dev", "lo"]);

    let mut l = Latticed::start_api();
    let aws = l.aws();
    let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
    let sn = id(&aws.ok(&["create-service-network", "--name", "data"]));
    let other = id(&aws.ok(&["create-service-network", "--name", "elsewhere"]));
    let gw = gateway(&aws, provider.name());
    let db = aws.ok(&[
        "create-resource-configuration",
        "--name",
        "orders-db",
        "--type",
        "SINGLE",
        "--resource-gateway-identifier",
        &gw,
        "--port-ranges",
        "5400-5500",
        "8000-8100",
        "--resource-configuration-definition",
        r#"{"dnsResource": {"domainName": "db.provider.internal", "ipAddressType": "IPV4"}}"#,
        "--custom-domain-name",
        "orders.db.tenant.example",
    ]);
    let group = id(&aws.ok(&[
        "create-resource-configuration",
        "--name",
        "replicas",
        "--type",
        "GROUP",
        "--resource-gateway-identifier",
        &gw,
        "--port-ranges",
        "5432",
    ]));
    let mut children = Vec::new();
    for (name, addr) in [("replica-a", "10.0.16.20"), ("replica-b", "10.0.16.21")] {
        let def = json!({"ipResource": {"ipAddress": addr}}).to_string();
        children.push(id(&aws.ok(&[
            "create-resource-configuration",
            "--name",
            name,
            "--type",
            "CHILD",
            "--resource-configuration-group-identifier",
            &group,
            "--resource-configuration-definition",
            &def,
        ])));
    }
    let assoc = aws.ok(&[
        "create-service-network-resource-association",
        "--service-network-identifier",
        &sn,
        "--resource-configuration-identifier",
        &id(&db),
        "--private-dns-enabled",
    ]);
    let group_assoc = aws.ok(&[
        "create-service-network-resource-association",
        "--service-network-identifier",
        &sn,
        "--resource-configuration-identifier",
        &group,
    ]);
    aws.ok(&[
        "create-access-log-subscription",
        "--resource-identifier",
        &sn,
        "--service-network-log-type",
        "RESOURCE",
        "--destination-arn",
        "arn:aws:logs:us-east-1:111122223333:log-group:resources",
    ]);
    aws.ok(&[
        "create-service-network-vpc-association",
        "--service-network-identifier",
        &sn,
        "--vpc-identifier",
        consumer.name(),
    ]);
    aws.ok(&[
        "create-service-network-vpc-association",
        "--service-network-identifier",
        &other,
        "--vpc-identifier",
        outsider.name(),
    ]);
    // The names are in Get's answer (Create's shape has none).
    let get_assoc = |a: &Value| {
        aws.ok(&[
            "get-service-network-resource-association",
            "--service-network-resource-association-identifier",
            a["id"].as_str().unwrap(),
        ])
    };
    let assoc_got = get_assoc(&assoc);
    let name = assoc_got["dnsEntry"]["domainName"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        name.contains(".vpc-lattice-rsc.us-east-1.on.aws"),
        "{assoc_got}"
    );

    // By the generated name: the database answers, and saw the pool.
    let vip = getent(&consumer, &name).expect("the resource's name resolves in the consumer");
    assert!(vip.starts_with("169.254.171."), "{vip}");
    let (server, client) = who(&consumer, &name, 5432);
    assert_eq!(
        server, "10.0.16.20",
        "the name's address in the provider VPC"
    );
    assert!(
        in_source_pool(&format!("{client}:5432")),
        "the database saw {client}"
    );
    // By the custom domain name (private DNS is on).
    assert_eq!(
        getent(&consumer, "orders.db.tenant.example").as_deref(),
        Some(vip.as_str())
    );
    assert_eq!(
        who(&consumer, "orders.db.tenant.example", 5432).0,
        "10.0.16.20"
    );
    // Another port of the ranges reaches the same port of the resource.
    let web = curl_in(
        &consumer,
        &format!("http://{name}:8080/"),
        &["--max-time", "5"],
    )
    .expect("port 8080 is in 8000-8100");
    assert!(web.contains("provider-web"), "{web}");
    // A port outside the ranges is refused at once.
    let refused = curl_in(
        &consumer,
        &format!("http://{vip}:9000/"),
        &["--max-time", "5"],
    );
    assert_eq!(
        refused.map_err(|e| e.0),
        Err(7),
        "9000 is outside the ranges"
    );

    // A GROUP's children: each its own name, each its own address.
    let group_got = get_assoc(&group_assoc);
    let group_name = group_got["dnsEntry"]["domainName"].as_str().unwrap();
    for (child, addr) in children.iter().zip(["10.0.16.20", "10.0.16.21"]) {
        let child_name = group_name.replacen(&group, child, 1);
        assert_eq!(who(&consumer, &child_name, 5432).0, addr, "{child_name}");
    }

    // The other network's VPC resolves none of it and reaches nothing.
    assert_eq!(getent(&outsider, &name), None);
    assert_eq!(getent(&outsider, "orders.db.tenant.example"), None);
    let out = curl_in(
        &outsider,
        &format!("http://{vip}:8080/"),
        &["--max-time", "5"],
    );
    assert_eq!(out.map_err(|e| e.0), Err(7), "the VIP is not steered there");

    // The name moves: an open session stays, new ones follow (TTL 1 s).
    let mut session = consumer
        .command("psql")
        .args([
            "-h", &name, "-p", "5432", "-U", "postgres", "-d", "postgres", "-At",
        ])
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut to_session = session.stdin.take().unwrap();
    let mut from_session = BufReader::new(session.stdout.take().unwrap());
    let mut ask_session = || {
        writeln!(to_session, "select host(inet_server_addr());").unwrap();
        to_session.flush().unwrap();
        let mut line = String::new();
        from_session.read_line(&mut line).unwrap();
        line.trim().to_owned()
    };
    assert_eq!(ask_session(), "10.0.16.20");
    set_db("10.0.16.21");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        who(&consumer, &name, 5432).0,
        "10.0.16.21",
        "a new connection follows the name"
    );
    assert_eq!(
        ask_session(),
        "10.0.16.20",
        "the open connection was not cut"
    );
    let _ = session.kill();
    let _ = session.wait();

    // One access-log line per connection, with the resource fields.
    let log_file = l.log_dir.join("resources.log");
    wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&log_file).is_ok_and(|t| t.lines().count() >= 7)
    });
    let text = std::fs::read_to_string(&log_file).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let to_db: Vec<&Value> = lines
        .iter()
        .filter(|r| r["resourceConfigurationArn"] == db["arn"])
        .collect();
    assert!(to_db.len() >= 5, "{text}");
    let first = to_db[0];
    assert_eq!(first["serviceNetworkResourceAssociationId"], assoc["id"]);
    assert_eq!(first["destinationIpPort"], format!("{vip}:5432"));
    assert_eq!(first["resourceIpPort"], "10.0.16.20:5432");
    assert_eq!(first["protocol"], "tcp");
    let gateway = first["gatewayIpPort"].as_str().unwrap();
    assert!(in_source_pool(gateway), "{first}");
    assert!(
        first["sourceIpPort"]
            .as_str()
            .unwrap()
            .starts_with("10.0.16.10:"),
        "{first}"
    );
    assert!(
        first["sourceVpcArn"]
            .as_str()
            .unwrap()
            .ends_with(consumer.name()),
        "{first}"
    );
    // Counted per configuration.
    let metrics = l.metrics();
    assert!(
        metrics.contains("latticed_resource_connections_total{resource_configuration=\"orders-db\",outcome=\"connected\"}"),
        "{metrics}"
    );

    l.stop_with(libc::SIGTERM);
    // A fast shutdown: sessions are not waited for.
    // SAFETY: kill(2) on the PID of the server this test started.
    unsafe { libc::kill(pg as libc::pid_t, libc::SIGINT) };
    drop(provider);
    let _ = std::fs::remove_dir_all(&tmp);
}

/// curl from source address `from` in `ns` to `url`: the body, or curl's
/// exit code (7: refused when connecting, by the kernel; 52 or 56: the
/// proxy accepted and then closed, as when a resource cannot be reached).
fn curl_from(ns: &NetNsGuard, from: &str, url: &str) -> Result<String, i32> {
    curl_in(ns, url, &["--interface", from, "--max-time", "5"]).map_err(|(code, _)| code)
}

// Long: the groups, the wide range and the ARN's placement are checked in one running instance, as an operator changes them.
#[test]
fn security_groups_and_arn_resources_over_wide_port_ranges() {
    let mut provider = NetNsGuard::new("prov");
    for a in ["10.0.16.10/20", "10.0.16.20/20", "10.0.16.21/20"] {
        provider.ip(&["addr", "add", a, "dev", "lo"]);
    }
    spawn_echo(&mut provider, "wide", "10.0.16.20:8080");
    spawn_echo(&mut provider, "wide-other-port", "10.0.16.20:9999");
    spawn_echo(&mut provider, "orders", "10.0.16.21:8081");
    let consumer = NetNsGuard::new("cons");
    for a in ["10.0.16.10/20", "10.0.1.5/24", "10.0.2.5/24", "10.0.3.5/24"] {
        consumer.ip(&["addr", "add", a, "dev", "lo"]);
    }
    let l = Latticed::start_api();
    let arn = "arn:aws:rds:us-east-1:111122223333:db:orders";
    // 10.0.1.0/24 may reach 8080-8081 only; 10.0.3.0/24 every port;
    // 10.0.2.0/24 nothing. The ARN is not placed yet.
    let groups = json!({"sg-00000db1": {"ingress": [
        {"protocol": "tcp", "fromPort": 8080, "toPort": 8081, "cidr": "10.0.1.0/24"},
        {"protocol": "-1", "cidr": "10.0.3.0/24"}
    ]}});
    let inventory = |placed: bool| {
        let mut inv = json!({"securityGroups": groups});
        if placed {
            inv["resources"] = json!({arn: {"vpc": provider.name(), "address": "10.0.16.21"}});
        }
        let tmp = l.state().join("inventory.json.tmp");
        std::fs::create_dir_all(l.state()).unwrap();
        std::fs::write(&tmp, inv.to_string()).unwrap();
        std::fs::rename(&tmp, l.state().join("inventory.json")).unwrap();
    };
    inventory(false);
    let aws = l.aws();
    let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
    let sn = id(&aws.ok(&["create-service-network", "--name", "data"]));
    let gw = gateway(&aws, provider.name());
    let wide = id(&aws.ok(&[
        "create-resource-configuration",
        "--name",
        "wide",
        "--type",
        "SINGLE",
        "--resource-gateway-identifier",
        &gw,
        "--port-ranges",
        "1-65535",
        "--resource-configuration-definition",
        r#"{"ipResource": {"ipAddress": "10.0.16.20"}}"#,
        "--custom-domain-name",
        "wide.tenant.example",
    ]));
    let def = json!({"arnResource": {"arn": arn}}).to_string();
    let orders = id(&aws.ok(&[
        "create-resource-configuration",
        "--name",
        "orders",
        "--type",
        "ARN",
        "--resource-gateway-identifier",
        &gw,
        "--port-ranges",
        "8081",
        "--resource-configuration-definition",
        &def,
        "--custom-domain-name",
        "orders.tenant.example",
    ]));
    for rc in [&wide, &orders] {
        aws.ok(&[
            "create-service-network-resource-association",
            "--service-network-identifier",
            &sn,
            "--resource-configuration-identifier",
            rc,
            "--private-dns-enabled",
        ]);
    }
    aws.ok(&[
        "create-service-network-vpc-association",
        "--service-network-identifier",
        &sn,
        "--vpc-identifier",
        consumer.name(),
        "--security-group-ids",
        "sg-00000db1",
    ]);
    let url = |host: &str, port: u16| format!("http://{host}:{port}/");
    let wide_at = |port| url("wide.tenant.example", port);
    wait_until(Duration::from_secs(10), || {
        curl_from(&consumer, "10.0.1.5", &wide_at(8080)).is_ok()
    });
    assert!(curl_from(&consumer, "10.0.1.5", &wide_at(8080))
        .unwrap()
        .contains("\"wide\""));
    // The rule opens 8080-8081 to 10.0.1.0/24: 9999 is refused in the kernel.
    assert_eq!(curl_from(&consumer, "10.0.1.5", &wide_at(9999)), Err(7));
    // Nothing for 10.0.2.0/24.
    assert_eq!(curl_from(&consumer, "10.0.2.5", &wide_at(8080)), Err(7));
    // Every port for 10.0.3.0/24 (one entry, whatever the range).
    assert!(curl_from(&consumer, "10.0.3.5", &wide_at(9999))
        .unwrap()
        .contains("wide-other-port"));
    // A port in the range with nothing behind it: accepted, then closed.
    let closed = curl_from(&consumer, "10.0.3.5", &wide_at(7000)).unwrap_err();
    assert!(closed == 52 || closed == 56, "curl exit {closed}");

    // The ARN is not placed: its connections are closed, never hung.
    let orders_url = url("orders.tenant.example", 8081);
    let unplaced = curl_from(&consumer, "10.0.1.5", &orders_url).unwrap_err();
    assert!(unplaced == 52 || unplaced == 56, "curl exit {unplaced}");
    // Placed by the inventory: reached, in the gateway's VPC.
    inventory(true);
    wait_until(Duration::from_secs(10), || {
        curl_from(&consumer, "10.0.1.5", &orders_url).is_ok()
    });
    let body = curl_from(&consumer, "10.0.1.5", &orders_url).unwrap();
    assert!(body.contains("\"orders\""), "{body}");
    let seen = echo(&body);
    assert!(in_source_pool(seen["client"].as_str().unwrap()), "{body}");
    let metrics = l.metrics();
    let failed = metrics
        .lines()
        .find_map(|line| line.strip_prefix("latticed_resource_connections_total{resource_configuration=\"orders\",outcome=\"failed\"} "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(
        failed.is_some_and(|n| n >= 1),
        "the unplaced attempts count: {metrics}"
    );
    drop(l);
}
