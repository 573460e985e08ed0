//! The cross-host hop: one service with its client on host B and its
//! target on host A (through the nodes' tunnel), against the same service
//! with client and target on host B. The two-host cluster is the tests'
//! (`latticed_tests::hosts::Cluster`, release binaries); both targets are
//! the same echo app. h2load over HTTP/1.1 at 1 connection (latency) and
//! 64 (throughput), the cases taking turns over the rounds; CPU per
//! request of each node from /proc.

use anyhow::{bail, Context as _};
use latticed_tests::{getent, hosts::Cluster};
use serde_json::{json, Value};

use super::{cpu_us, h2load, median, tree};
use crate::step;

/// One run's figures.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    /// CPU per request of node A and node B (us).
    cpu_a: f64,
    cpu_b: f64,
}

/// A service `name` in `sn` forwarding to the app (10.0.16.10:8080) in
/// `vpc`; its DNS name.
fn service(c: &Cluster, sn: &str, name: &str, vpc: &str) -> String {
    let (svc, _) =
        c.b.latticed
            .aws()
            .service_to_app(sn, (name, &format!("{name}-tg")), vpc);
    svc["dnsEntry"]["domainName"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The cross-host part: JSON and Markdown.
// Long: one scenario (cluster, services, the rounds, the table) reads
// best in one piece.
pub fn tunnel(
    smoke: bool,
    rounds: u32,
    out_dir: &std::path::Path,
) -> anyhow::Result<(Value, String)> {
    step("cross-host: a service with its target on the other host against the same on one host");
    let c = Cluster::start();
    let aws = c.b.latticed.aws();
    let sn = aws
        .run(&["create-service-network", "--name", "hop"])
        .map_err(anyhow::Error::msg)?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let local = service(&c, &sn, "local-svc", c.vpc_b.name());
    let remote = service(&c, &sn, "remote-svc", c.vpc_a.name());
    aws.run(&[
        "create-service-network-vpc-association",
        "--service-network-identifier",
        &sn,
        "--vpc-identifier",
        c.vpc_b.name(),
    ])
    .map_err(anyhow::Error::msg)?;
    let client = &c.vpc_b.ns;
    let vip = |name: &str| -> anyhow::Result<String> {
        let started = std::time::Instant::now();
        loop {
            if let Some(ip) = getent(client, name) {
                return Ok(ip);
            }
            if started.elapsed() > std::time::Duration::from_secs(10) {
                bail!("{name} does not resolve in the client VPC");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let urls = [
        ("one-host", format!("http://{}/", vip(&local)?)),
        ("cross-host", format!("http://{}/", vip(&remote)?)),
    ];
    for (_, url) in &urls {
        super::wait_http(client, url)?;
    }
    let (pid_a, pid_b) = (c.a.latticed.pid(), c.b.latticed.pid());
    let secs = if smoke { 2 } else { 10 };
    let mut runs: Vec<((&str, u32), Vec<Run>)> = Vec::new();
    for _ in 0..rounds {
        for connections in [1u32, 64] {
            for (name, url) in &urls {
                let (ta, tb) = (tree(pid_a), tree(pid_b));
                let (a0, b0) = (cpu_us(&ta), cpu_us(&tb));
                let case = h2load(client, name, url, connections, secs, None, out_dir)
                    .with_context(|| format!("{name} at {connections}"))?;
                let per = |t: &[u32], before: u64| {
                    cpu_us(t).saturating_sub(before) as f64 / case.requests.max(1) as f64
                };
                let run = Run {
                    rps: case.rps,
                    p50_us: case.p50_us,
                    p99_us: case.p99_us,
                    cpu_a: per(&ta, a0),
                    cpu_b: per(&tb, b0),
                };
                match runs.iter_mut().find(|(k, _)| *k == (*name, connections)) {
                    Some((_, v)) => v.push(run),
                    None => runs.push(((name, connections), vec![run])),
                }
            }
        }
    }
    let med = |name: &str, conns: u32, f: &dyn Fn(&Run) -> f64| {
        runs.iter()
            .find(|(k, _)| *k == (name, conns))
            .map_or(0.0, |(_, v)| median(&v.iter().map(f).collect::<Vec<_>>()))
    };
    let mut table = String::new();
    let mut rows = Vec::new();
    for conns in [1u32, 64] {
        for name in ["one-host", "cross-host"] {
            let (rps, p50, p99) = (
                med(name, conns, &|r| r.rps),
                med(name, conns, &|r| r.p50_us),
                med(name, conns, &|r| r.p99_us),
            );
            let (ca, cb) = (
                med(name, conns, &|r| r.cpu_a),
                med(name, conns, &|r| r.cpu_b),
            );
            table.push_str(&format!(
                "| {name} | {conns} | {rps:.0} | {p50:.0} | {p99:.0} | {ca:.1} | {cb:.1} | {:.1} |\n",
                ca + cb
            ));
            rows.push(
                json!({"case": name, "connections": conns, "rps": rps, "p50Us": p50,
                "p99Us": p99, "cpuUsPerRequestA": ca, "cpuUsPerRequestB": cb}),
            );
        }
    }
    let added_p50 = med("cross-host", 1, &|r| r.p50_us) - med("one-host", 1, &|r| r.p50_us);
    let added_p99 = med("cross-host", 1, &|r| r.p99_us) - med("one-host", 1, &|r| r.p99_us);
    let cpu = |name: &str| med(name, 64, &|r| r.cpu_a + r.cpu_b);
    let cpu_ratio = cpu("cross-host") / cpu("one-host").max(f64::EPSILON);
    let md = format!(
        "
## Across hosts

One HTTP service, its client in a VPC on host B; the target (the same echo app) in a VPC on host B (one-host) or on host A (cross-host, through the nodes' tunnel). Two host namespaces joined by a veth pair on this machine, a release latticed in each; h2load over HTTP/1.1 for {secs} s, median of {rounds} round(s). CPU is per request, of each node's process.

| case | connections | requests/s | p50 us | p99 us | CPU A us | CPU B us | CPU A+B us |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
{table}
The hop adds {added_p50:.0} us at p50 and {added_p99:.0} us at p99 at one connection (goal: at most 60 us at p50), and both nodes together use {cpu_ratio:.2}x the CPU per request of the one-host path at 64 connections (goal: at most 2x).
"
    );
    let report = json!({"rows": rows, "addedP50Us": added_p50, "addedP99Us": added_p99,
        "cpuRatio": cpu_ratio, "seconds": secs, "rounds": rounds});
    Ok((report, md))
}
