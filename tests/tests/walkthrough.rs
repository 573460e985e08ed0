//! The walkthrough of DESIGN.md end to end, as a person would do it: built
//! with the AWS CLI, tried with curl over HTTPS by the service's DNS name
//! from `vpc-b`, with an instance target in `vpc-a` (placed through the
//! inventory) and a real Node.js function behind the Lambda Invoke API.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "integration tests: a panic is the failure report"
)]

use std::{collections::BTreeMap, time::Duration};

use latticed_tests::*;
use serde_json::Value;

struct World {
    a: Vpc,
    b: Vpc,
    _runner: LambdaRunner,
    latticed: Latticed,
    svc1_dns: String,
    svc2_dns: String,
    tg_instance: String,
    log_file: std::path::PathBuf,
}

fn build() -> World {
    let a = Vpc::new("a");
    let b = Vpc::new("b");
    let runner = LambdaRunner::start();
    let dir = std::env::temp_dir().join(format!("latticed-walk-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    let inventory = dir.join("inventory.json");
    std::fs::write(&inventory, walkthrough::inventory(a.name())).unwrap();
    let latticed = Latticed::start_api_with(&[
        "--lambda-endpoint",
        &runner.endpoint,
        "--inventory",
        inventory.to_str().unwrap(),
    ]);
    let aws = latticed.aws();
    let built = walkthrough::build(
        &mut |args| aws.run(args).map_err(anyhow::Error::msg),
        a.name(),
        b.name(),
        "arn:aws:logs:us-east-1:111122223333:log-group:/latticed/walkthrough",
    )
    .unwrap();
    let log_file = latticed.log_dir.join("latticed/walkthrough.log");
    World {
        a,
        b,
        _runner: runner,
        latticed,
        svc1_dns: built.svc1_dns,
        svc2_dns: built.svc2_dns,
        tg_instance: built.instances,
        log_file,
    }
}

/// `curl` in `vpc` with the CA, each response body followed by a marker.
fn curl_many(w: &World, vpc: &Vpc, urls: &[String], extra: &[&str]) -> Vec<String> {
    latticed_tests::curl_many(&vpc.ns, &w.latticed.state().join("ca.pem"), urls, extra)
}

#[test]
fn the_walkthrough_over_https_with_dns_instance_and_function() {
    let w = build();

    // DNS: the generated names resolve inside the VPCs to the VIPs.
    let vip1 = getent(&w.b.ns, &w.svc1_dns).expect("svc1's name resolves in vpc-b");
    assert!(vip1.starts_with("169.254.171."), "{vip1}");
    assert_eq!(
        getent(&w.a.ns, &w.svc2_dns).unwrap(),
        getent(&w.b.ns, &w.svc2_dns).unwrap()
    );
    let unknown = w.svc1_dns.replacen("svc1-", "nope-", 1);
    assert_eq!(
        getent(&w.b.ns, &unknown),
        None,
        "unknown names get NXDOMAIN"
    );

    // The rules go where they say.
    let base = format!("https://{}", w.svc1_dns);
    let r = curl_many(
        &w,
        &w.b,
        &[format!("{base}/to-instance"), format!("{base}/to-function")],
        &["--http1.1"],
    );
    assert!(
        r[0].contains(&format!("\"app\":\"{}\"", w.a.name())),
        "{}",
        r[0]
    );
    assert!(r[0].contains("200 1.1"), "{}", r[0]);
    let inst: Value = serde_json::from_str(r[0].lines().next().unwrap()).unwrap();
    let client = inst["client"].as_str().unwrap();
    assert!(
        in_source_pool(client),
        "the app sees 169.254.171.x, saw {client}"
    );
    assert_eq!(inst["xForwardedProto"], "https");
    assert_eq!(inst["xForwardedPort"], "443");
    assert!(inst["latticeNetwork"]
        .as_str()
        .unwrap()
        .starts_with("SourceVpcArn=arn:aws:ec2:"));
    assert!(inst["latticeTarget"]
        .as_str()
        .unwrap()
        .contains("ServiceArn=arn:aws:vpc-lattice:"));
    assert_eq!(inst["requestId"].as_str().unwrap().len(), 36);
    assert!(r[1].contains("Hello from the function"), "{}", r[1]);
    let f: Value = serde_json::from_str(r[1].lines().next().unwrap()).unwrap();
    assert_eq!(f["version"], "2.0");
    assert_eq!(f["path"], "/to-function");
    assert!(f["sourceVpcArn"]
        .as_str()
        .unwrap()
        .ends_with(&format!("vpc/{}", w.b.name())));

    // HTTP/2 over TLS (ALPN).
    let r = curl_many(&w, &w.b, &[format!("{base}/to-instance")], &["--http2"]);
    assert!(r[0].contains("200 2"), "{}", r[0]);

    // 2:1 over 3,000 requests on one keep-alive connection.
    let urls: Vec<String> = (0..3000).map(|_| format!("{base}/")).collect();
    let answers = curl_many(&w, &w.b, &urls, &[]);
    assert_eq!(answers.len(), 3000);
    let instance = answers.iter().filter(|a| a.contains("\"app\"")).count();
    let function = answers
        .iter()
        .filter(|a| a.contains("Hello from the function"))
        .count();
    assert_eq!(
        instance + function,
        3000,
        "every answer came from one of the two"
    );
    let share = instance as f64 / 3000.0;
    assert!((share - 2.0 / 3.0).abs() < 0.03, "instance share {share}");

    // From vpc-a, svc2 (in vpc-b, same CIDR) answers by name.
    let r = w.a.curl(&format!("http://{}/", w.svc2_dns)).unwrap();
    assert!(r.contains(&format!("\"app\":\"{}\"", w.b.name())), "{r}");

    // The instance target is health-checked and healthy.
    wait_until(Duration::from_secs(10), || {
        let t = w
            .latticed
            .aws()
            .ok(&["list-targets", "--target-group-identifier", &w.tg_instance]);
        t["items"][0]["status"] == "HEALTHY"
    });

    // One access log line per request, with the fields filled.
    let expected = 2 + 1 + 3000 + 1;
    let mut lines = Vec::new();
    wait_until(Duration::from_secs(10), || {
        lines = std::fs::read_to_string(&w.log_file)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        lines.len() >= expected
    });
    assert_eq!(lines.len(), expected, "one line per request");
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    for (k, want) in [
        ("requestMethod", "GET"),
        ("requestPath", "/to-instance"),
        ("protocol", "HTTP/1.1"),
        ("tlsVersion", "TLSv1.3"),
        ("serverNameIndication", w.svc1_dns.as_str()),
        ("hostHeader", w.svc1_dns.as_str()),
        ("sourceVpcId", w.b.name()),
    ] {
        assert_eq!(first[k], want, "{k} in {first}");
    }
    assert_eq!(first["responseCode"], 200);
    assert!(first["targetIpPort"]
        .as_str()
        .unwrap()
        .starts_with("10.0.16.10:8080"));
    for k in [
        "serviceArn",
        "serviceNetworkArn",
        "targetGroupArn",
        "sourceVpcArn",
        "requestId",
        "startTime",
        "sslCipher",
        "userAgent",
    ] {
        let v = first[k].as_str().unwrap_or("-");
        assert!(v != "-" && !v.is_empty(), "{k} is filled in {first}");
    }
    let by_code: BTreeMap<String, usize> = lines.iter().fold(BTreeMap::new(), |mut m, l| {
        let v: Value = serde_json::from_str(l).unwrap();
        *m.entry(v["responseCode"].to_string()).or_default() += 1;
        m
    });
    assert_eq!(by_code.get("200"), Some(&expected), "{by_code:?}");

    // Metrics count the same requests.
    let metrics = w.latticed.metrics();
    assert!(
        metrics.contains("latticed_service_requests_total{service=\"svc1\",code=\"200\"} 3003"),
        "{metrics}"
    );
    assert!(metrics.contains("latticed_targets{target_group=\"instances\",health=\"healthy\"} 1"));
    assert!(metrics.contains(&format!(
        "latticed_steering_total{{namespace=\"{}\",verdict=\"steered\"}}",
        w.b.name()
    )));
}
