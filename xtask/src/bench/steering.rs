//! What the steering program costs per new connection, without security
//! groups and with 10,000 rules on the client's VPC association.
//!
//! The kernel runs the sk_lookup program in the client's connect path, so
//! latticed's CPU would not show it. The kernel's own BPF statistics do:
//! while a `BPF_ENABLE_STATS` descriptor is held, each program counts its
//! runs and the nanoseconds they took (`bpftool prog show` prints them).
//! Clients open a new connection per request (`latticed-churn`), so every
//! request is one lookup.

use std::{path::Path, process::Command};

use anyhow::{bail, Context as _};
use latticed_tests::NetNsGuard;
use serde_json::{json, Value};

use super::ApiSession;

/// One measured configuration.
pub struct Case {
    /// What the association had.
    pub label: String,
    /// Security group rules on it.
    pub rules: usize,
    /// Lookups the program ran.
    pub lookups: u64,
    /// Mean nanoseconds per lookup.
    pub ns_per_lookup: f64,
    /// Connections (one request each) per second.
    pub connections_per_sec: f64,
}

/// Holds the kernel's BPF run-time statistics on; off again when dropped.
struct Stats(libc::c_int);

impl Stats {
    fn enable() -> anyhow::Result<Self> {
        const BPF_ENABLE_STATS: libc::c_long = 32;
        // union bpf_attr's enable_stats: { __u32 type }, BPF_STATS_RUN_TIME = 0.
        let attr: [u32; 1] = [0];
        // SAFETY: bpf(2) with a valid pointer to an attribute of the size
        // passed; the kernel reads it and returns a descriptor or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_ENABLE_STATS,
                attr.as_ptr(),
                std::mem::size_of_val(&attr),
            )
        };
        if fd < 0 {
            bail!("BPF_ENABLE_STATS: {}", std::io::Error::last_os_error());
        }
        Ok(Self(libc::c_int::try_from(fd)?))
    }
}

impl Drop for Stats {
    fn drop(&mut self) {
        // SAFETY: our own descriptor, closed once.
        unsafe { libc::close(self.0) };
    }
}

/// (runs, nanoseconds) of the program pinned at `prog`.
fn runs(prog: &Path) -> anyhow::Result<(u64, u64)> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "pinned"])
        .arg(prog)
        .arg("--json")
        .output()
        .context("running bpftool")?;
    let v: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("bpftool: {}", String::from_utf8_lossy(&out.stderr)))?;
    Ok((
        v["run_cnt"].as_u64().unwrap_or(0),
        v["run_time_ns"].as_u64().unwrap_or(0),
    ))
}

/// A group of `n` rules on port 80: `n - 1` single addresses elsewhere,
/// and last the client's own (10.99.0.1), so every lookup matches.
fn group(n: usize) -> Value {
    let mut rules: Vec<Value> = (0..n.saturating_sub(1))
        .map(|i| {
            json!({"protocol": "tcp", "fromPort": 80, "toPort": 80,
                "cidr": format!("10.{}.{}.{}/32", 200 + i / 65_025, (i / 255) % 255, i % 255 + 1)})
        })
        .collect();
    rules.push(json!({"protocol": "tcp", "fromPort": 80, "toPort": 80, "cidr": "10.99.0.1/32"}));
    json!({ "ingress": rules })
}

/// Churns connections from `client` to `to` for `secs` while reading the
/// program's statistics.
fn measure(
    client: &NetNsGuard,
    prog: &Path,
    to: &str,
    secs: u32,
    (label, rules): (&str, usize),
) -> anyhow::Result<Case> {
    let (runs0, ns0) = runs(prog)?;
    let out = client
        .command(latticed_tests::bin("latticed-churn"))
        .args(["--to", to, "--secs", &secs.to_string(), "--threads", "2"])
        .output()
        .context("running latticed-churn")?;
    let (runs1, ns1) = runs(prog)?;
    let churn: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("latticed-churn: {}", String::from_utf8_lossy(&out.stderr)))?;
    let done = churn["connections"].as_u64().unwrap_or(0);
    if done == 0 || churn["failed"].as_u64().unwrap_or(0) > done / 100 {
        bail!("{label}: connections failed: {churn}");
    }
    let lookups = runs1.saturating_sub(runs0);
    Ok(Case {
        label: label.to_owned(),
        rules,
        lookups,
        ns_per_lookup: ns1.saturating_sub(ns0) as f64 / lookups.max(1) as f64,
        connections_per_sec: done as f64 / churn["seconds"].as_f64().unwrap_or(1.0),
    })
}

/// Both configurations, `rounds` times each in turn.
pub fn security_groups(
    smoke: bool,
    client: &NetNsGuard,
    api: &ApiSession,
    rounds: u32,
) -> anyhow::Result<Vec<Case>> {
    let secs = if smoke { 1 } else { 5 };
    let rules = if smoke { 100 } else { 10_000 };
    let prog = api
        .latticed
        .bpffs_root
        .join(client.name())
        .join("steer_to_proxy");
    let _stats = Stats::enable()?;
    // Listing associations needs a filter: the client VPC's.
    let assoc = api.call(
        "GET",
        &format!(
            "/servicenetworkvpcassociations?vpcIdentifier={}",
            client.name()
        ),
        &json!({}),
    )?;
    let assoc = assoc["items"][0]["id"]
        .as_str()
        .context("the bench's VPC association")?
        .to_owned();
    let set_groups = |groups: &[&str]| {
        api.call(
            "PATCH",
            &format!("/servicenetworkvpcassociations/{assoc}"),
            &json!({ "securityGroupIds": groups }),
        )
    };
    // The bench service's VIP (169.254.171.1).
    let to = "169.254.171.1:80";
    let with = format!("{rules} rules");
    let mut cases = Vec::new();
    // An association's groups can be changed but not all taken away (as in
    // AWS), so the rounds without groups come first.
    for _ in 0..rounds {
        cases.push(measure(client, &prog, to, secs, ("no security groups", 0))?);
    }
    // The group, in the inventory latticed rereads within a second; the
    // association names it; then the client is admitted again once the
    // rules are in (until then the undefined group admits nobody).
    std::fs::write(
        api.latticed.state().join("inventory.json"),
        json!({"securityGroups": {"sg-0bench01": group(rules)}}).to_string(),
    )?;
    set_groups(&["sg-0bench01"])?;
    super::wait_http(client, "http://169.254.171.1/")?;
    for _ in 0..rounds {
        cases.push(measure(client, &prog, to, secs, (&with, rules))?);
    }
    Ok(cases)
}
