//! `cargo xtask demo`: the walkthrough of DESIGN.md on the embedded default.
//!
//! Two namespaces, `vpc-a` and `vpc-b`, both 10.0.16.0/20, each with an app
//! on 10.0.16.10:8080 that says which VPC it is in and which client it saw,
//! and a function (Node.js, behind a small Lambda Invoke API on the host).
//! latticed starts empty and the demo configures it through the VPC Lattice
//! API with the AWS CLI, printing each command as a person would type it:
//! svc1 over HTTPS splits 2:1 between the instance in vpc-a and the
//! function, with `/to-instance` and `/to-function` rules; svc2 forwards to
//! the app in vpc-b; one service network holds both and is associated with
//! both namespaces, and logs every request. It then tries the services by
//! their DNS names, stays up until Ctrl-C, and removes everything it
//! created.

use std::{
    os::unix::{net::UnixDatagram, process::CommandExt},
    path::Path,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use latticed_tests::walkthrough::INSTANCE;

use crate::{cargo, root, run, step};

mod hosts;

const VPCS: [&str; 2] = ["vpc-a", "vpc-b"];
const ENDPOINT: &str = "http://127.0.0.1:7390";
const LOG_GROUP: &str = "arn:aws:logs:us-east-1:111122223333:log-group:demo";

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Everything the demo created, removed on drop (also on error paths).
#[derive(Default)]
struct Demo {
    namespaces: Vec<String>,
    apps: Vec<Child>,
    latticed: Option<Child>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut l) = self.latticed.take() {
            // SAFETY: kill(2) on the PID of our own child.
            unsafe { libc::kill(l.id() as libc::pid_t, libc::SIGTERM) };
            let start = Instant::now();
            while l.try_wait().ok().flatten().is_none() && start.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = l.kill();
            let _ = l.wait();
            eprintln!("stopped latticed (it removed its routes, links and pins)");
        }
        for app in &mut self.apps {
            let _ = app.kill();
            let _ = app.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            eprintln!("deleted namespace {ns}");
        }
    }
}

/// Runs `aws vpc-lattice ARGS` as the demo's user, printing the command;
/// returns the answer.
#[expect(
    clippy::print_stdout,
    reason = "the commands are shown to the person running the demo"
)]
fn aws(endpoint: &str, credentials: &Path, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let shown: Vec<String> = args
        .iter()
        .map(|a| {
            if a.contains(['{', ' ', '"']) {
                format!("'{a}'")
            } else {
                (*a).to_owned()
            }
        })
        .collect();
    println!(
        "  $ aws --endpoint-url {endpoint} vpc-lattice {}",
        shown.join(" ")
    );
    let out = Command::new("aws")
        .args(["--endpoint-url", endpoint, "vpc-lattice"])
        .args(args)
        .args(["--output", "json"])
        .env("AWS_SHARED_CREDENTIALS_FILE", credentials)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .context("running aws (cargo xtask setup installs it)")?;
    if !out.status.success() {
        bail!(
            "aws {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap_or_default())
}

/// Builds the walkthrough through the API (the same calls the walkthrough
/// test makes), printing each.
fn configure(c: &Path) -> anyhow::Result<latticed_tests::walkthrough::Built> {
    latticed_tests::walkthrough::build(
        &mut |args| aws(ENDPOINT, c, args),
        "vpc-a",
        "vpc-b",
        LOG_GROUP,
    )
}

/// Who answered: the app's VPC or the function.
fn who(answer: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(answer).unwrap_or_default();
    if let Some(app) = v["app"].as_str() {
        format!(
            "the app in {app} (it saw client {})",
            v["client"].as_str().unwrap_or("?")
        )
    } else if let Some(m) = v["message"].as_str() {
        format!("the function: {m:?}")
    } else {
        answer.to_owned()
    }
}

fn curl(ns: &str, url: &str, ca: &Path) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "curl",
            "-sS",
            "--max-time",
            "5",
            "--cacert",
        ])
        .arg(ca)
        .arg(url)
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        Ok(o) => format!("(failed) {}", String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => format!("(could not run curl: {e})"),
    }
}

/// Waits for READY=1 on the notify socket, or for latticed to exit.
fn wait_ready(sock: &UnixDatagram, latticed: &mut Child, log: &Path) -> anyhow::Result<()> {
    match latticed_tests::wait_ready(sock, latticed, Duration::from_secs(30)) {
        Ok(()) => Ok(()),
        Err(Some(status)) => {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            bail!("latticed exited ({status}):\n{text}")
        }
        Err(None) => bail!(
            "latticed did not become ready in 30 s; see {}",
            log.display()
        ),
    }
}

/// `cargo xtask demo [--hosts 2]`.
pub fn demo(no_setup: bool, hosts: u8) -> anyhow::Result<()> {
    if !no_setup {
        crate::setup::setup()?;
    }
    step("building latticed and the demo app");
    run(cargo().args(["build", "--bins"]))?;
    if hosts == 2 {
        catch_signals();
        return hosts::demo();
    }
    let bin = root().join("target/debug");
    let dir = root().join("target/demo");
    std::fs::create_dir_all(&dir)?;

    for ns in VPCS {
        if Path::new("/run/netns").join(ns).exists() {
            bail!("namespace {ns} already exists (left by an earlier demo?): remove it with `ip netns del {ns}` and run again");
        }
    }
    let mut demo = Demo::default();
    catch_signals();
    start_vpcs(&mut demo, &bin)?;
    let lambda_endpoint = start_function_runtime(&mut demo)?;
    let (log_path, state_dir, log_dir) = start_latticed(&mut demo, &bin, &dir, &lambda_endpoint)?;

    step("configuring it through the API with the AWS CLI");
    let credentials = state_dir.join("admin-credentials");
    let names = configure(&credentials)?;
    let files = Files {
        ca: state_dir.join("ca.pem"),
        credentials,
        log: log_dir.join("demo.log"),
        latticed_log: log_path.clone(),
    };
    print_banner(&names, &files);
    while !STOP.load(Ordering::SeqCst) {
        if let Some(latticed) = demo.latticed.as_mut() {
            if let Some(status) = latticed.try_wait()? {
                bail!(
                    "latticed exited unexpectedly ({status}); see {}",
                    log_path.display()
                );
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("\nstopping the demo");
    drop(demo);
    Ok(())
}

/// Ctrl-C and SIGTERM set [`STOP`]: the demo then removes what it made.
fn catch_signals() {
    // SAFETY: installs an async-signal-safe handler that only stores a flag.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_signal as extern "C" fn(libc::c_int) as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            on_signal as extern "C" fn(libc::c_int) as *const () as libc::sighandler_t,
        );
    }
}

/// vpc-a and vpc-b, both 10.0.16.0/20, each with an app on 10.0.16.10:8080.
fn start_vpcs(demo: &mut Demo, bin: &Path) -> anyhow::Result<()> {
    step("creating vpc-a and vpc-b, both 10.0.16.0/20, each with an app on 10.0.16.10:8080");
    for ns in VPCS {
        run(Command::new("ip").args(["netns", "add", ns]))?;
        demo.namespaces.push(ns.to_owned());
        run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]))?;
        run(Command::new("ip").args(["-n", ns, "addr", "add", "10.0.16.10/20", "dev", "lo"]))?;
        let app = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(bin.join("latticed-echo"))
            .args(["--name", ns, "--listen", "10.0.16.10:8080"])
            .stdout(Stdio::null())
            // Own process group: Ctrl-C reaches the demo, which stops things in order.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting the app in {ns}"))?;
        demo.apps.push(app);
    }

    Ok(())
}

/// The function runtime (a Lambda Invoke API on 127.0.0.1, Node.js):
/// returns its endpoint.
fn start_function_runtime(demo: &mut Demo) -> anyhow::Result<String> {
    step("starting the function runtime (a Lambda Invoke API on 127.0.0.1, Node.js)");
    let mut runner = Command::new("node")
        .arg(root().join("scripts/lambda/runner.js"))
        .arg(root().join("scripts/lambda/functions"))
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .context("starting node (the set-up installs nodejs)")?;
    let mut line = String::new();
    if let Some(out) = runner.stdout.take() {
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)?;
    }
    demo.apps.push(runner);
    let port = line
        .trim()
        .strip_prefix("listening ")
        .context("the function runtime did not start")?;
    Ok(format!("http://127.0.0.1:{port}"))
}

/// latticed, empty, with its VPC Lattice API on 127.0.0.1:7390, once it
/// is ready: returns its log, state directory and access log directory.
fn start_latticed(
    demo: &mut Demo,
    bin: &Path,
    dir: &Path,
    lambda_endpoint: &str,
) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)> {
    let inventory = dir.join("inventory.json");
    std::fs::write(
        &inventory,
        format!(
            r#"{{"instances": {{"{INSTANCE}": {{"vpc": "vpc-a", "address": "10.0.16.10"}}}}}}"#
        ),
    )?;
    let log_dir = dir.join("logs");
    let _ = std::fs::remove_dir_all(&log_dir);

    step("starting latticed, empty, with its VPC Lattice API on 127.0.0.1:7390");
    let state_dir = dir.join("state");
    // A fresh store each time, so the demo always starts from nothing.
    if state_dir.exists() {
        std::fs::remove_dir_all(&state_dir).context("clearing the previous demo's state")?;
    }
    let log_path = dir.join("latticed.log");
    let notify = dir.join("notify.sock");
    let _ = std::fs::remove_file(&notify);
    let sock = UnixDatagram::bind(&notify).context("notify socket")?;
    let latticed = Command::new(bin.join("latticed"))
        .arg("run")
        .arg("--api-listen")
        .arg("127.0.0.1:7390")
        .arg("--state-dir")
        .arg(&state_dir)
        .arg("--run-dir")
        .arg(dir.join("run"))
        .arg("--lambda-endpoint")
        .arg(lambda_endpoint)
        .arg("--inventory")
        .arg(&inventory)
        .arg("--log-dir")
        .arg(&log_dir)
        .env("NOTIFY_SOCKET", &notify)
        .stderr(std::fs::File::create(&log_path)?)
        .process_group(0)
        .spawn()
        .context("starting latticed")?;
    let latticed = demo.latticed.insert(latticed);
    wait_ready(&sock, latticed, &log_path)?;

    Ok((log_path, state_dir, log_dir))
}

/// What the banner points at.
struct Files {
    ca: std::path::PathBuf,
    credentials: std::path::PathBuf,
    log: std::path::PathBuf,
    latticed_log: std::path::PathBuf,
}

/// What the demo built, how to try it, and what trying it just gave.
#[expect(
    clippy::print_stdout,
    reason = "the walkthrough is printed for the person running it"
)]
fn print_banner(names: &latticed_tests::walkthrough::Built, files: &Files) {
    let ca = &files.ca;
    let (svc1, svc2) = (&names.svc1_dns, &names.svc2_dns);
    let tries: Vec<String> = (0..6)
        .map(|_| who(&curl("vpc-b", &format!("https://{svc1}/"), ca)))
        .collect();
    println!(
        r#"
latticed is up. Two VPCs with the same addresses, two services:

  vpc-a   10.0.16.0/20   app on 10.0.16.10:8080 (instance {INSTANCE})
  vpc-b   10.0.16.0/20   app on 10.0.16.10:8080 (the same addresses)
  svc1    https://{svc1}/
            default: 2 parts the instance in vpc-a, 1 part the function
            /to-instance -> the instance, /to-function -> the function
  svc2    http://{svc2}/ -> the app in vpc-b
  service network demo-net holds both, is associated with both VPCs, and
  logs every request to {log}

Try it, as root, in another terminal (names resolve inside the VPCs):

  ip netns exec vpc-b curl --cacert {ca} https://{svc1}/
  ip netns exec vpc-b curl --cacert {ca} https://{svc1}/to-function
  ip netns exec vpc-b curl --cacert {ca} --http2 https://{svc1}/to-instance
  ip netns exec vpc-a curl http://{svc2}/        # vpc-a reaches vpc-b's app, same CIDR
  ip netns exec vpc-b getent hosts {svc1}
  tail -f {log}
  curl -s http://127.0.0.1:9390/metrics | grep latticed_service
  export AWS_SHARED_CREDENTIALS_FILE={creds} AWS_DEFAULT_REGION=us-east-1
  aws --endpoint-url {ENDPOINT} vpc-lattice list-services
  bpftool prog show name steer_to_proxy
  bpftool map dump pinned /sys/fs/bpf/latticed/vpc-b/steer_vips

The apps see their clients as 169.254.171.192-252 (latticed's source pool),
never as the other VPC's 10.0.16.x.

Tried just now, from vpc-b:
  https://{svc1}/ six times:
{tries}
  https://{svc1}/to-instance: {inst}
  https://{svc1}/to-function: {func}
and from vpc-a:
  http://{svc2}/: {other}

Log: {latticed_log}
Press Ctrl-C to stop; the demo then removes everything it created."#,
        log = files.log.display(),
        ca = ca.display(),
        creds = files.credentials.display(),
        tries = tries
            .iter()
            .map(|t| format!("    {t}"))
            .collect::<Vec<_>>()
            .join("\n"),
        inst = who(&curl("vpc-b", &format!("https://{svc1}/to-instance"), ca)),
        func = who(&curl("vpc-b", &format!("https://{svc1}/to-function"), ca)),
        other = who(&curl("vpc-a", &format!("http://{svc2}/"), ca)),
        latticed_log = files.latticed_log.display(),
    );
}
