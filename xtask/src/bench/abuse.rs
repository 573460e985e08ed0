//! Resource bounds under abuse (`cargo xtask bench`, and `--abuse-only`).
//!
//! One tenant namespace attacks while another behaves: for each scenario,
//! `tests/apps/abuse.py` keeps its connections doing one kind of harm
//! (10,000 slow clients on TLS handshakes, request heads, bodies and
//! responses; HTTP/2 rapid reset, CONTINUATION and SETTINGS floods; 10 MiB
//! bodies to an AWS_IAM service from 1,000 connections), reopening every
//! connection latticed cuts. Meanwhile a well-behaved client runs h2load on
//! one keep-alive connection, over HTTP/1.1 and over HTTPS with HTTP/2.
//!
//! Reported per scenario: latticed's peak RSS against the bound it must stay
//! under (exceeding it fails the bench, smoke runs too), RSS once the attack
//! stops, the well-behaved client's p99 against the same client's with no
//! attack (the bar is 2x), and what the attacker achieved and was answered.
//!
//! The attacker runs at `nice 10`: on this 2-core machine an attacker at
//! full speed competes with the client and latticed for the same CPUs, and
//! what is measured here is what latticed does with the attack, not how the
//! kernel shares two cores between three busy processes.

use std::{
    io::BufRead as _,
    process::Stdio,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use latticed_tests::{add_principal, workspace_root, Latticed, NetNsGuard, Vpc};
use serde_json::{json, Value};

use super::{h2load, rss_kib, tree, Case};

/// latticed's memory for bodies held whole (`--body-memory-mib`, default).
const BODY_BUDGET_KIB: u64 = 64 << 10;
/// What one client connection may hold at most: a request head up to
/// `--max-header-bytes` (64 KiB) plus TLS record buffers and HTTP/2 state.
const PER_CONNECTION_KIB: u64 = 128;

const PLAIN: &str = "plain.abuse.internal";
const TLS: &str = "tls.abuse.internal";
const IAM: &str = "iam.abuse.internal";

/// One kind of attack.
struct Attack {
    name: &'static str,
    /// `abuse.py`'s mode.
    mode: &'static str,
    host: &'static str,
    port: u16,
    conns: u32,
    what: &'static str,
}

/// The attacks, at full size or (smoke) small.
fn attacks(smoke: bool) -> Vec<Attack> {
    let slow = if smoke { 200 } else { 10_000 };
    let floods = if smoke { 4 } else { 32 };
    let bodies = if smoke { 50 } else { 1_000 };
    vec![
        Attack {
            name: "slow TLS handshakes",
            mode: "tls",
            host: TLS,
            port: 443,
            conns: slow,
            what: "a ClientHello one byte every 2 s",
        },
        Attack {
            name: "slow request heads",
            mode: "head",
            host: PLAIN,
            port: 80,
            conns: slow,
            what: "8 KiB of fields, then one more every 2 s, never finished",
        },
        Attack {
            name: "slow bodies (AWS_IAM)",
            mode: "body",
            host: IAM,
            port: 80,
            conns: slow,
            what: "a signed 1 MiB body, 1 KiB then one byte every 2 s",
        },
        Attack {
            name: "slow readers",
            mode: "response",
            host: PLAIN,
            port: 80,
            conns: slow,
            what: "1 MiB answers with a 4 KiB receive buffer, never read",
        },
        Attack {
            name: "HTTP/2 rapid reset",
            mode: "rapid-reset",
            host: PLAIN,
            port: 80,
            conns: floods,
            what: "HEADERS + RST_STREAM, stream after stream (CVE-2023-44487)",
        },
        Attack {
            name: "HTTP/2 CONTINUATION flood",
            mode: "continuation",
            host: PLAIN,
            port: 80,
            conns: floods,
            what: "HEADERS without END_HEADERS, then 1 KiB CONTINUATION frames without end",
        },
        Attack {
            name: "HTTP/2 SETTINGS flood",
            mode: "settings",
            host: PLAIN,
            port: 80,
            conns: floods,
            what: "SETTINGS frames without end, ACKs never read",
        },
        Attack {
            name: "10 MiB bodies (AWS_IAM)",
            mode: "bodies",
            host: IAM,
            port: 80,
            conns: bodies,
            what: "10 MiB signed bodies as fast as they go, reopened once answered",
        },
    ]
}

/// The well-behaved client's figures.
#[derive(Debug)]
pub(super) struct Polite {
    h1: Case,
    h2: Case,
}

/// One scenario's outcome.
#[derive(Debug)]
pub(super) struct Scenario {
    name: &'static str,
    what: &'static str,
    conns: u32,
    peak_rss_kib: u64,
    after_rss_kib: u64,
    bound_kib: u64,
    polite: Polite,
    attacker: Value,
    /// Signed bodies from the well-behaved VPC answered 200, of those sent
    /// (attacks on the AWS_IAM service only).
    signed: Option<(u32, u32)>,
}

/// Everything the abuse part measured.
#[derive(Debug)]
pub(super) struct Abuse {
    idle_rss_kib: u64,
    baseline: Polite,
    scenarios: Vec<Scenario>,
}

/// Runs every scenario against one latticed.
pub(super) fn abuse(smoke: bool, out_dir: &std::path::Path) -> anyhow::Result<Abuse> {
    // The echo app and the attacker inherit this process's limit on open
    // files; 10,000 connections need more than the usual 1,024.
    if let Err(e) = latticed_proxy::workers::raise_fd_limit() {
        eprintln!("warning: could not raise the open-files limit: {e}");
    }
    let stage = Stage::start(smoke, out_dir)?;
    let baseline = stage.measure("baseline")?;
    let idle_rss_kib = rss_kib(&tree(stage.pid));
    let scenarios = attacks(smoke)
        .iter()
        .map(|attack| stage.scenario(attack))
        .collect::<anyhow::Result<_>>()?;
    Ok(Abuse {
        idle_rss_kib,
        baseline,
        scenarios,
    })
}

/// One latticed, its target and the two client VPCs.
struct Stage<'o> {
    // Fields drop in this order: latticed stops before the namespaces go.
    latticed: Latticed,
    _target: Vpc,
    attacker: NetNsGuard,
    polite: NetNsGuard,
    pid: u32,
    /// A known principal's key and secret.
    key: String,
    secret: String,
    smoke: bool,
    out_dir: &'o std::path::Path,
}

impl<'o> Stage<'o> {
    fn start(smoke: bool, out_dir: &'o std::path::Path) -> anyhow::Result<Self> {
        let target = Vpc::new("t");
        let attacker = NetNsGuard::new("a");
        let polite = NetNsGuard::new("w");
        let mut latticed = Latticed::prepare(&config(target.name(), &[&attacker, &polite]));
        let (key, secret) = add_principal(
            &latticed.state_dir,
            "arn:aws:iam::111122223333:role/abuser",
            &[],
        );
        latticed
            .spawn_and_wait_ready()
            .map_err(anyhow::Error::msg)
            .context("starting latticed")?;
        for url in [format!("http://{PLAIN}/"), format!("https://{TLS}/")] {
            super::wait_http(&polite, &url)?;
        }
        Ok(Self {
            pid: latticed.pid(),
            latticed,
            _target: target,
            attacker,
            polite,
            key,
            secret,
            smoke,
            out_dir,
        })
    }

    /// The well-behaved client's figures, over HTTP/1.1 and HTTPS+HTTP/2.
    fn measure(&self, tag: &str) -> anyhow::Result<Polite> {
        let secs = if self.smoke { 1 } else { 10 };
        let run = |name: String, url: String| {
            h2load(
                &self.polite,
                &name,
                &url,
                1,
                secs,
                Some(self.pid),
                self.out_dir,
            )
        };
        Ok(Polite {
            h1: run(format!("polite-{tag}"), format!("http://{PLAIN}/"))?,
            h2: run(format!("polite-{tag}-h2"), format!("https://{TLS}/"))?,
        })
    }

    /// Runs `attack` while the well-behaved client measures; fails if
    /// latticed's memory passes its bound or another VPC's signed bodies
    /// are refused.
    fn scenario(&self, attack: &Attack) -> anyhow::Result<Scenario> {
        super::step(&format!(
            "abuse: {} ({} connections)",
            attack.name, attack.conns
        ));
        let before = rss_kib(&tree(self.pid));
        let sampler = RssSampler::start(self.pid);
        let script = workspace_root().join("tests/apps/abuse.py");
        let mut run = Attacker::start(&self.attacker, &script, attack, &self.key)?;
        // Slow clients open their connections in a burst; let latticed take
        // them all (and the first timeouts pass) before measuring others.
        std::thread::sleep(Duration::from_secs(if self.smoke { 1 } else { 5 }));
        let during = self.measure(attack.mode)?;
        // Under attacks on the AWS_IAM service, another tenant's signed
        // bodies must still be read and checked: its share of the body
        // budget is its own.
        let signed = if attack.host == IAM {
            Some(signed_bodies(
                &self.polite,
                &self.key,
                &self.secret,
                self.latticed.state(),
            )?)
        } else {
            None
        };
        let stats = run.finish()?;
        let peak_rss_kib = sampler.stop();
        let left = wait_connections_drain(&self.latticed);
        // latticed trims its heap once connections stop falling (checked
        // each second): what stays after that is what counts.
        std::thread::sleep(Duration::from_secs(3));
        let after_rss_kib = rss_kib(&tree(self.pid));
        let bound_kib = before + BODY_BUDGET_KIB + u64::from(attack.conns) * PER_CONNECTION_KIB;
        eprintln!(
            "  peak RSS {:.1} MiB (bound {:.1}), after {:.1} MiB, {left} connections left; p99 {:.0} us (h1) {:.0} us (h2); attacker {stats}",
            kib_to_mib(peak_rss_kib),
            kib_to_mib(bound_kib),
            kib_to_mib(after_rss_kib),
            during.h1.p99_us,
            during.h2.p99_us,
        );
        if let Some((ok, sent)) = signed {
            eprintln!("  signed bodies from another VPC: {ok} of {sent} answered 200");
            if ok < sent {
                bail!(
                    "{}: only {ok} of {sent} signed bodies from another VPC were answered 200",
                    attack.name
                );
            }
        }
        if peak_rss_kib > bound_kib {
            bail!(
                "{}: latticed's RSS reached {:.1} MiB, over its bound of {:.1} MiB",
                attack.name,
                kib_to_mib(peak_rss_kib),
                kib_to_mib(bound_kib)
            );
        }
        Ok(Scenario {
            name: attack.name,
            what: attack.what,
            conns: attack.conns,
            peak_rss_kib,
            after_rss_kib,
            bound_kib,
            polite: during,
            attacker: stats,
            signed,
        })
    }
}

/// Sends signed 100 KB bodies (botocore's signer) to the AWS_IAM service
/// from `client`, one after another; how many were answered 200, of how
/// many.
fn signed_bodies(
    client: &NetNsGuard,
    key: &str,
    secret: &str,
    state: &std::path::Path,
) -> anyhow::Result<(u32, u32)> {
    const SENT: u32 = 5;
    let body = "s".repeat(100_000);
    let mut ok = 0;
    for _ in 0..SENT {
        let out = client
            .command("python3")
            .arg(workspace_root().join("tests/apps/sigv4_client.py"))
            .arg(format!("http://{IAM}/upload"))
            .args([key, secret, "signed"])
            // Unused over plain HTTP, but must be a certificate file.
            .arg(state.join("ca.pem"))
            .arg(&body)
            .output()
            .context("running sigv4_client.py")?;
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if answer["status"] == 200 {
            ok += 1;
        }
    }
    Ok((ok, SENT))
}

/// Three services in one network: plain HTTP, HTTPS, and AWS_IAM over
/// HTTP, all on the same echo app; `clients` associated.
fn config(target: &str, clients: &[&NetNsGuard]) -> Value {
    let forward = json!({"forward": {"targetGroups": [{"targetGroupIdentifier": "app"}]}});
    let service = |name: &str, host: &str, protocol: &str, port: u16, auth: &str| {
        json!({"name": name, "customDomainName": host, "authType": auth,
            "listeners": [{"name": "listener", "protocol": protocol, "port": port, "defaultAction": forward}]})
    };
    let policy = json!({"Statement": [{"Effect": "Allow", "Principal": "*",
        "Action": "vpc-lattice-svcs:Invoke", "Resource": "*"}]});
    let services: Vec<Value> = ["plain", "tls", "iam"]
        .map(|s| json!({"serviceNetworkIdentifier": "net", "serviceIdentifier": s}))
        .to_vec();
    let vpcs: Vec<Value> = clients
        .iter()
        .map(|c| json!({"serviceNetworkIdentifier": "net", "vpcIdentifier": c.name()}))
        .collect();
    json!({
        "serviceNetworks": [{"name": "net"}],
        "services": [
            service("plain", PLAIN, "HTTP", 80, "NONE"),
            service("tls", TLS, "HTTPS", 443, "NONE"),
            service("iam", IAM, "HTTP", 80, "AWS_IAM"),
        ],
        "targetGroups": [{"name": "app", "type": "IP",
            "config": {"port": 8080, "protocol": "HTTP", "vpcIdentifier": target,
                "healthCheck": {"enabled": false}},
            "targets": [{"id": "10.0.16.10"}]}],
        "serviceNetworkServiceAssociations": services,
        "serviceNetworkVpcAssociations": vpcs,
        "authPolicies": [{"resourceIdentifier": "iam", "policy": policy.to_string()}]
    })
}

/// A running `abuse.py`, ended by its PID if the bench fails first.
struct Attacker {
    child: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Attacker {
    fn start(
        ns: &NetNsGuard,
        script: &std::path::Path,
        attack: &Attack,
        key: &str,
    ) -> anyhow::Result<Self> {
        let mut child = ns
            .command("nice")
            .args(["-n", "10", "python3"])
            .arg(script)
            .args([attack.mode, attack.host])
            .arg(attack.port.to_string())
            .arg(attack.conns.to_string())
            // A cap if the bench dies without closing stdin.
            .arg("600")
            .arg(key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("running python3 abuse.py")?;
        let stdout = child.stdout.take().context("abuse.py's stdout")?;
        let mut run = Self {
            child,
            stdout: std::io::BufReader::new(stdout),
        };
        let mut line = String::new();
        run.stdout.read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("abuse.py {} did not start: {line:?}", attack.mode);
        }
        Ok(run)
    }

    /// Stops the attack; what the attacker reports.
    fn finish(&mut self) -> anyhow::Result<Value> {
        drop(self.child.stdin.take());
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let _ = self.child.wait();
        serde_json::from_str(&line).with_context(|| format!("abuse.py's report: {line:?}"))
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            latticed_tests::kill(self.child.id());
            let _ = self.child.wait();
        }
    }
}

/// Samples a process tree's RSS every 50 ms on a thread, keeping the peak.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
            std::thread::spawn(move || {
                let pids = tree(pid);
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib(&pids), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Self {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// The highest RSS seen (KiB).
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// Waits (up to 20 s) for latticed's open client connections to fall back
/// to the well-behaved client's few; how many are left.
fn wait_connections_drain(latticed: &Latticed) -> u64 {
    let start = Instant::now();
    loop {
        let open = latticed
            .metrics()
            .lines()
            .find_map(|l| l.strip_prefix("latticed_active_connections "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(u64::MAX);
        if open <= 2 || start.elapsed() > Duration::from_secs(20) {
            return open;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The abuse section of the report.
pub(super) fn report(a: &Abuse) -> (String, Value) {
    let ratio = |during: f64, base: f64| during / base.max(1.0);
    let mut md = format!(
        "\n## Under abuse\n\nlatticed idle: {:.1} MiB. Well-behaved client with no attack: p99 {:.0} us over HTTP/1.1, {:.0} us over HTTPS with HTTP/2 (one keep-alive connection each). The bound is RSS before the attack + {} MiB of body budget + {} KiB per attacking connection.\n\n| attack | conns | peak RSS MiB | bound MiB | RSS 3 s after MiB | p99 h1 us (x) | p99 h2 us (x) | attacker |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
        kib_to_mib(a.idle_rss_kib),
        a.baseline.h1.p99_us,
        a.baseline.h2.p99_us,
        BODY_BUDGET_KIB >> 10,
        PER_CONNECTION_KIB,
    );
    let mut rows = Vec::new();
    for s in &a.scenarios {
        let x1 = ratio(s.polite.h1.p99_us, a.baseline.h1.p99_us);
        let x2 = ratio(s.polite.h2.p99_us, a.baseline.h2.p99_us);
        md.push_str(&format!(
            "| {} ({}) | {} | {:.1} | {:.1} | {:.1} | {:.0} ({:.2}) | {:.0} ({:.2}) | {} |\n",
            s.name,
            s.what,
            s.conns,
            kib_to_mib(s.peak_rss_kib),
            kib_to_mib(s.bound_kib),
            kib_to_mib(s.after_rss_kib),
            s.polite.h1.p99_us,
            x1,
            s.polite.h2.p99_us,
            x2,
            attacker_summary(&s.attacker, s.signed),
        ));
        rows.push(json!({
            "attack": s.name, "what": s.what, "connections": s.conns,
            "peakRssKib": s.peak_rss_kib, "boundKib": s.bound_kib, "afterRssKib": s.after_rss_kib,
            "p99H1Us": s.polite.h1.p99_us, "p99H1Ratio": x1,
            "p99H2Us": s.polite.h2.p99_us, "p99H2Ratio": x2,
            "attacker": s.attacker,
            "signedBodiesFromAnotherVpc": s.signed.map(|(ok, sent)| json!({"ok": ok, "sent": sent})),
        }));
    }
    let json = json!({
        "idleRssKib": a.idle_rss_kib,
        "baselineP99H1Us": a.baseline.h1.p99_us,
        "baselineP99H2Us": a.baseline.h2.p99_us,
        "scenarios": rows,
    });
    (md, json)
}

/// What the attacker did and got, in a few words.
fn attacker_summary(stats: &Value, signed: Option<(u32, u32)>) -> String {
    let mut parts = vec![format!(
        "{} opened, {} closed by latticed",
        stats["opened"], stats["closedByServer"]
    )];
    if stats["frames"].as_u64().unwrap_or(0) > 0 {
        parts.push(format!(
            "{} frames, {} GOAWAY",
            stats["frames"], stats["goaways"]
        ));
    }
    if let Some(statuses) = stats["statuses"].as_object().filter(|s| !s.is_empty()) {
        let mut s: Vec<String> = statuses.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        s.sort();
        parts.push(format!("answers {}", s.join(", ")));
    }
    parts.push(format!(
        "{:.1} MiB sent",
        stats["bytesSent"].as_f64().unwrap_or(0.0) / 1_048_576.0
    ));
    if let Some((ok, sent)) = signed {
        parts.push(format!(
            "meanwhile {ok} of {sent} signed bodies from another VPC answered 200"
        ));
    }
    parts.join("; ")
}
