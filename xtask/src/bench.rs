//! `cargo xtask bench`: benchmarks, in release builds, on real namespaces.
//!
//! - control plane: the cost of adding a service (CreateService,
//!   CreateListener, CreateServiceNetworkServiceAssociation, through the API,
//!   each acknowledged only once durable and in the data path) as the number
//!   of services grows to 1,000. The 10th and the 1,000th are reported.
//!
//! Results go to `target/bench/` as Markdown and JSON. `--smoke` runs a few
//! seconds' worth so CI keeps the bench from rotting; it checks that the
//! bench works, not the numbers.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use latticed_tests::{api_request, Latticed, NetNsGuard, Vpc};
use serde_json::{json, Value};

use crate::{cargo, root, run, step};

/// One signed API call; the answer's JSON.
fn call(
    port: u16,
    keys: (&str, &str),
    method: &str,
    path: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let (status, kind, text) =
        api_request(port, method, path, body.to_string().as_bytes(), Some(keys))
            .with_context(|| format!("{method} {path}"))?;
    if !(200..300).contains(&status) {
        bail!("{method} {path}: {status} {kind} {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_owned()
}

fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s.get(s.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the benchmarks.
#[expect(clippy::print_stdout, reason = "the bench prints its report")]
pub fn bench(smoke: bool) -> anyhow::Result<()> {
    step("building in release");
    run(cargo().args(["build", "--release", "--bins"]))?;
    let bin_dir = root().join("target/release");
    // Release binaries, quiet logs: the measurement is of latticed, not of
    // its debug logging.
    latticed_tests::configure(bin_dir, "warn");
    let out_dir = root().join("target/bench");
    std::fs::create_dir_all(&out_dir)?;

    let services: usize = if smoke { 30 } else { 1000 };
    step(&format!(
        "control plane: adding services one by one up to {services}, through the API"
    ));
    let client = NetNsGuard::new("c");
    let target = Vpc::new("t");
    let quota = format!("services={}", services + 10);
    let latticed = Latticed::start_api_with(&["--quota", &quota]);
    let aws = latticed.aws();
    let (key, secret) = aws.keys();
    let keys = (key.as_str(), secret.as_str());
    let port = latticed.api().port;
    let sn = id(&call(
        port,
        keys,
        "POST",
        "/servicenetworks",
        &json!({"name": "bench-net"}),
    )?);
    let tg = id(&call(
        port,
        keys,
        "POST",
        "/targetgroups",
        &json!({"name": "bench-app", "type": "IP",
        "config": {"port": 8080, "protocol": "HTTP", "vpcIdentifier": target.name()}}),
    )?);
    call(
        port,
        keys,
        "POST",
        &format!("/targetgroups/{tg}/registertargets"),
        &json!({"targets": [{"id": "10.0.16.10"}]}),
    )?;
    call(
        port,
        keys,
        "POST",
        "/servicenetworkvpcassociations",
        &json!({"serviceNetworkIdentifier": sn, "vpcIdentifier": client.name()}),
    )?;

    let action = json!({"forward": {"targetGroups": [{"targetGroupIdentifier": tg}]}});
    let mut costs = Vec::with_capacity(services);
    let mut last_name = String::new();
    for i in 1..=services {
        let start = Instant::now();
        let svc = call(
            port,
            keys,
            "POST",
            "/services",
            &json!({"name": format!("bench-{i}")}),
        )?;
        let sid = id(&svc);
        call(
            port,
            keys,
            "POST",
            &format!("/services/{sid}/listeners"),
            &json!({"name": "http", "protocol": "HTTP", "port": 80, "defaultAction": action}),
        )?;
        call(
            port,
            keys,
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

    let tenth = costs.get(9).copied().unwrap_or_default();
    let last = costs.last().copied().unwrap_or_default();
    let window = 20.min(services / 2);
    let early = median(&costs[..window]);
    let late = median(&costs[services - window..]);
    let report = json!({
        "controlPlane": {
            "services": services,
            "unit": "ms per service (CreateService + CreateListener + CreateServiceNetworkServiceAssociation)",
            "tenth": ms(tenth),
            "last": ms(last),
            "medianFirst20": ms(early),
            "medianLast20": ms(late),
            "ratioLastToFirst": ms(late) / ms(early).max(f64::EPSILON),
        }
    });
    let md = format!(
        "# latticed benchmarks{}\n\n## Control plane\n\nAdding one service (three API calls, each durable and in the data path before it is answered), measured as services grow to {services}:\n\n| | ms |\n| --- | ---: |\n| 10th service | {:.2} |\n| {services}th service | {:.2} |\n| median of the first {window} | {:.2} |\n| median of the last {window} | {:.2} |\n| ratio last/first | {:.2} |\n",
        if smoke { " (smoke run: numbers not meaningful)" } else { "" },
        ms(tenth),
        ms(last),
        ms(early),
        ms(late),
        ms(late) / ms(early).max(f64::EPSILON),
    );
    std::fs::write(
        out_dir.join("results.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    std::fs::write(out_dir.join("results.md"), &md)?;
    println!("\n{md}");
    println!("written to {}", out_dir.display());
    drop(latticed);
    drop(target);
    drop(client);
    Ok(())
}
