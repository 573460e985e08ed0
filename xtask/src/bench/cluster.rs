//! Cluster mode's costs: an API mutation's latency with the state in a
//! three-member etcd on this machine against the single-host redb store,
//! at 10 and at 1,000 services; and the time from node A's answer until
//! node B's data path serves the change.

use std::{
    io::{BufRead as _, Write as _},
    process::Stdio,
    time::Instant,
};

use anyhow::{bail, Context as _};
use latticed_tests::{
    api_request,
    etcd::{Etcd, Node},
    NetNsGuard, Vpc,
};
use serde_json::{json, Value};

use super::{id, percentile, ApiSession};
use crate::step;

/// A signed call to a cluster node.
fn call(node: &Node, method: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
    let (key, secret) = node.latticed.aws().keys();
    let (status, kind, text) = api_request(
        node.latticed.api().port,
        method,
        path,
        body.to_string().as_bytes(),
        Some((&key, &secret)),
    )
    .with_context(|| format!("{method} {path}"))?;
    if !(200..300).contains(&status) {
        bail!("{method} {path} on {}: {status} {kind} {text}", node.name);
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Microseconds each of `n` CreateService calls took, after `fill`
/// services were made, through `f` (one API call each).
fn mutation_latencies(
    fill: usize,
    n: usize,
    f: &dyn Fn(&str) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<u64>> {
    for i in 0..fill {
        f(&format!("fill-{i}"))?;
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        f(&format!("measured-{i}"))?;
        out.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
    }
    out.sort_unstable();
    Ok(out)
}

/// p50 and p99 in ms.
fn p50_p99(sorted: &[u64]) -> (f64, f64) {
    (
        percentile(sorted, 0.50) / 1000.0,
        percentile(sorted, 0.99) / 1000.0,
    )
}

/// The cluster part: JSON and Markdown.
pub fn cluster(smoke: bool) -> anyhow::Result<(Value, String)> {
    let sizes: [usize; 2] = if smoke { [10, 40] } else { [10, 1000] };
    let samples = if smoke { 20 } else { 300 };
    step("cluster: API mutation latency, etcd against redb; convergence between nodes");
    let mut rows = Vec::new();
    for &size in &sizes {
        let quota = format!("services={}", size + samples + 10);
        let redb = {
            let api = ApiSession::start(&["--quota", &quota]);
            mutation_latencies(size, samples, &|name| {
                api.call("POST", "/services", &json!({"name": name}))
                    .map(drop)
            })?
        };
        let etcd_lat = {
            let etcd = Etcd::start(3);
            let node = Node::start_with("bench-a", &etcd.endpoints(), &[], &["--quota", &quota]);
            mutation_latencies(size, samples, &|name| {
                call(&node, "POST", "/services", &json!({"name": name})).map(drop)
            })?
        };
        rows.push((size, p50_p99(&redb), p50_p99(&etcd_lat)));
    }
    let converge = convergence(if smoke { 3 } else { 100 })?;
    let (c50, c99) = p50_p99(&converge);
    let mut table = String::new();
    let mut json_rows = Vec::new();
    for (size, (r50, r99), (e50, e99)) in &rows {
        table.push_str(&format!(
            "| {size} | {r50:.2} | {r99:.2} | {e50:.2} | {e99:.2} | {:.2} |\n",
            e50 / r50.max(f64::EPSILON)
        ));
        json_rows.push(json!({"services": size, "redbP50Ms": r50, "redbP99Ms": r99,
            "etcdP50Ms": e50, "etcdP99Ms": e99, "p50Ratio": e50 / r50.max(f64::EPSILON)}));
    }
    let md = format!(
        "
## Cluster mode

An API mutation (CreateService, answered once durable and in the data path) with the state in a three-member etcd on this machine (each member fsyncs its own log), against the single-host redb store; {samples} calls after the services already there:

| services | redb p50 ms | redb p99 ms | etcd p50 ms | etcd p99 ms | etcd/redb p50 |
| ---: | ---: | ---: | ---: | ---: | ---: |
{table}
Convergence: from node A's answer to CreateServiceNetworkServiceAssociation until node B's data path serves the new service to a client in a VPC B hosts ({} samples, polled every millisecond): p50 {c50:.1} ms, p99 {c99:.1} ms.
",
        converge.len()
    );
    let report = json!({"mutation": json_rows, "samples": samples,
        "convergence": {"samples": converge.len(), "p50Ms": c50, "p99Ms": c99}});
    Ok((report, md))
}

/// Microseconds from node A's answer until node B serves a new service,
/// `n` times.
// Long: one scenario (two nodes, the VPCs, the shared network and group,
// then the loop) is clearer read in one piece.
fn convergence(n: usize) -> anyhow::Result<Vec<u64>> {
    let etcd = Etcd::start(3);
    let client = NetNsGuard::new("cc");
    let target = Vpc::new("ct");
    let a = Node::start("bench-a", &etcd.endpoints(), &[]);
    let b = Node::start(
        "bench-b",
        &etcd.endpoints(),
        &[client.name(), target.name()],
    );
    let sn = id(&call(
        &a,
        "POST",
        "/servicenetworks",
        &json!({"name": "converge"}),
    )?);
    let tg = id(&call(
        &a,
        "POST",
        "/targetgroups",
        &json!({"name": "converge-app", "type": "IP",
        "config": {"port": 8080, "protocol": "HTTP", "vpcIdentifier": target.name()}}),
    )?);
    call(
        &a,
        "POST",
        &format!("/targetgroups/{tg}/registertargets"),
        &json!({"targets": [{"id": "10.0.16.10"}]}),
    )?;
    call(
        &a,
        "POST",
        "/servicenetworkvpcassociations",
        &json!({"serviceNetworkIdentifier": sn, "vpcIdentifier": client.name()}),
    )?;
    let action = json!({"forward": {"targetGroups": [{"targetGroupIdentifier": tg}]}});
    let poller = crate::root().join("xtask/src/bench/poll_served.py");
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let svc = call(
            &a,
            "POST",
            "/services",
            &json!({"name": format!("converge-{i}")}),
        )?;
        let sid = id(&svc);
        let name = svc["dnsEntry"]["domainName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        call(
            &a,
            "POST",
            &format!("/services/{sid}/listeners"),
            &json!({"name": "http", "protocol": "HTTP", "port": 80, "defaultAction": action}),
        )?;
        // The poller waits for "go" on stdin, then asks every millisecond.
        let mut child = client
            .command("python3")
            .arg(&poller)
            .arg(&name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut stdout = std::io::BufReader::new(child.stdout.take().context("poller stdout")?);
        let mut ready = String::new();
        stdout.read_line(&mut ready)?;
        call(
            &a,
            "POST",
            "/servicenetworkserviceassociations",
            &json!({"serviceNetworkIdentifier": sn, "serviceIdentifier": sid}),
        )?;
        child
            .stdin
            .take()
            .context("poller stdin")?
            .write_all(b"go\n")?;
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let status = child.wait()?;
        let us: u64 = line.trim().parse().unwrap_or(0);
        if !status.success() || us == 0 {
            let log = b.latticed.log_text();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            bail!(
                "service {name} not served by node B within 10 s: {line}; node B's log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        out.push(us);
    }
    drop((a, b));
    out.sort_unstable();
    Ok(out)
}
