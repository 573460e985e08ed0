//! `cargo xtask demo`: the walkthrough on the embedded default.
//!
//! Two namespaces, `vpc-a` and `vpc-b`, both 10.0.16.0/20, each with an app
//! on 10.0.16.10:8080 that says which VPC it is in and which client it saw.
//! latticed starts empty and the demo configures it through the VPC Lattice
//! API with the AWS CLI, printing each command as a person would type it:
//! one service per app, in one service network associated with both
//! namespaces. It then tries the services once, stays up until Ctrl-C, and
//! removes everything it created.

use std::{
    os::unix::{net::UnixDatagram, process::CommandExt},
    path::Path,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::{cargo, root, run, step};

const VPCS: [&str; 2] = ["vpc-a", "vpc-b"];
/// svc1 is created first, so it gets the first VIP; svc2 the second.
const SVC_A: &str = "169.254.171.1";
const SVC_B: &str = "169.254.171.2";
const ENDPOINT: &str = "http://127.0.0.1:7390";

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
/// returns the answer's `id`.
#[expect(
    clippy::print_stdout,
    reason = "the commands are shown to the person running the demo"
)]
fn aws(credentials: &Path, args: &[&str]) -> anyhow::Result<String> {
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
        "  $ aws --endpoint-url {ENDPOINT} vpc-lattice {}",
        shown.join(" ")
    );
    let out = Command::new("aws")
        .args(["--endpoint-url", ENDPOINT, "vpc-lattice"])
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
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    Ok(answer["id"].as_str().unwrap_or_default().to_owned())
}

/// Builds the walkthrough through the API.
fn configure(credentials: &Path) -> anyhow::Result<()> {
    let sn = aws(
        credentials,
        &["create-service-network", "--name", "demo-net"],
    )?;
    let mut groups = Vec::new();
    for vpc in VPCS {
        let name = format!("app-in-{vpc}");
        let config = format!(r#"{{"port":8080,"protocol":"HTTP","vpcIdentifier":"{vpc}"}}"#);
        let tg = aws(
            credentials,
            &[
                "create-target-group",
                "--name",
                &name,
                "--type",
                "IP",
                "--config",
                &config,
            ],
        )?;
        aws(
            credentials,
            &[
                "register-targets",
                "--target-group-identifier",
                &tg,
                "--targets",
                "id=10.0.16.10,port=8080",
            ],
        )?;
        groups.push(tg);
    }
    for (svc, tg) in ["svc1", "svc2"].iter().zip(&groups) {
        let id = aws(credentials, &["create-service", "--name", svc])?;
        let action =
            format!(r#"{{"forward":{{"targetGroups":[{{"targetGroupIdentifier":"{tg}"}}]}}}}"#);
        aws(
            credentials,
            &[
                "create-listener",
                "--service-identifier",
                &id,
                "--name",
                "http",
                "--protocol",
                "HTTP",
                "--port",
                "80",
                "--default-action",
                &action,
            ],
        )?;
        aws(
            credentials,
            &[
                "create-service-network-service-association",
                "--service-network-identifier",
                &sn,
                "--service-identifier",
                &id,
            ],
        )?;
    }
    for vpc in VPCS {
        aws(
            credentials,
            &[
                "create-service-network-vpc-association",
                "--service-network-identifier",
                &sn,
                "--vpc-identifier",
                vpc,
            ],
        )?;
    }
    Ok(())
}

fn curl(ns: &str, url: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-sS", "--max-time", "5", url])
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

#[expect(
    clippy::print_stdout,
    reason = "the walkthrough is printed for the person running it"
)]
pub fn demo(no_setup: bool) -> anyhow::Result<()> {
    if !no_setup {
        crate::setup::setup()?;
    }
    step("building latticed and the demo app");
    run(cargo().args(["build", "--bins"]))?;
    let bin = root().join("target/debug");
    let dir = root().join("target/demo");
    std::fs::create_dir_all(&dir)?;

    for ns in VPCS {
        if Path::new("/run/netns").join(ns).exists() {
            bail!("namespace {ns} already exists (left by an earlier demo?): remove it with `ip netns del {ns}` and run again");
        }
    }
    let mut demo = Demo::default();
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

    step("starting latticed, empty, with its VPC Lattice API on 127.0.0.1:7390");
    let state_dir = dir.join("state");
    // A fresh store each time, so the demo always starts from nothing.
    if state_dir.exists() {
        std::fs::remove_dir_all(&state_dir).context("clearing the previous demo's state")?;
    }
    let credentials = state_dir.join("admin-credentials");
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
        .env("NOTIFY_SOCKET", &notify)
        .stderr(std::fs::File::create(&log_path)?)
        .process_group(0)
        .spawn()
        .context("starting latticed")?;
    let latticed = demo.latticed.insert(latticed);
    wait_ready(&sock, latticed, &log_path)?;

    step("configuring it through the API with the AWS CLI");
    configure(&credentials)?;

    println!(
        r#"
latticed is up. Two VPCs with the same addresses, one service for each app:

  vpc-a   10.0.16.0/20   app on 10.0.16.10:8080
  vpc-b   10.0.16.0/20   app on 10.0.16.10:8080   (the same addresses)
  svc1    http://{SVC_A}/    -> the app in vpc-a
  svc2    http://{SVC_B}/    -> the app in vpc-b
  service network demo-net has both services and is associated with both VPCs

Try it, as root, in another terminal:

  ip netns exec vpc-b curl http://{SVC_A}/           # vpc-b reaches vpc-a's app
  ip netns exec vpc-a curl http://{SVC_B}/           # vpc-a reaches vpc-b's app, at the same time
  ip netns exec vpc-a curl http://{SVC_A}:81/        # unconfigured port: refused
  export AWS_SHARED_CREDENTIALS_FILE={} AWS_DEFAULT_REGION=us-east-1
  aws --endpoint-url {ENDPOINT} vpc-lattice list-services
  bpftool prog show name steer_to_proxy
  bpftool link show
  bpftool map dump pinned /sys/fs/bpf/latticed/vpc-b/steer_vips
  ip -n vpc-b route show table local proto 171

Each app answers with the client address it saw: 169.254.171.192-254, latticed's
source pool, never the other VPC's 10.0.16.x.

Tried just now:
  vpc-b -> svc1: {}
  vpc-a -> svc2: {}

Log: {}
Press Ctrl-C to stop; the demo then removes everything it created."#,
        credentials.display(),
        curl("vpc-b", &format!("http://{SVC_A}/")),
        curl("vpc-a", &format!("http://{SVC_B}/")),
        log_path.display(),
    );

    while !STOP.load(Ordering::SeqCst) {
        if let Some(status) = latticed.try_wait()? {
            bail!(
                "latticed exited unexpectedly ({status}); see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("\nstopping the demo");
    drop(demo);
    Ok(())
}
