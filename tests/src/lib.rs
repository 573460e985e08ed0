//! Test harness for latticed's integration tests: real namespaces, a real
//! `latticed` process, real clients (curl) inside the namespaces.
//!
//! Every object a test creates is owned by a guard that removes it on drop,
//! so a failing (panicking) test still cleans up: [`NetNsGuard`] deletes its
//! namespace and ends the processes started in it (by PID), [`Latticed`]
//! stops the daemon and removes its pin root and run directory.
//!
//! Names are unique per process and test (`lt{pid}-{n}{suffix}`) so tests
//! run in parallel and never touch anything they did not create.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test harness: a panic is how a failed set-up is reported"
)]

pub mod etcd;
pub mod hosts;
pub mod walkthrough;

use std::{
    net::Ipv4Addr,
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique short token for names made by this test process.
pub fn unique() -> String {
    format!(
        "{}-{}",
        std::process::id() % 100_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

static BIN_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
static LOG_FILTER: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Makes the harness run the binaries in `dir` (e.g. `target/release`) with
/// `RUST_LOG=filter`, for tools such as the benchmarks. Call before starting
/// anything; later calls are ignored.
pub fn configure(dir: PathBuf, filter: &str) {
    let _ = BIN_DIR.set(dir);
    let _ = LOG_FILTER.set(filter.to_owned());
}

/// Directory holding the built binaries: [`configure`]'s, `LATTICED_BIN_DIR`,
/// or `target/debug` found from the test executable's own path
/// (`target/debug/deps/NAME-HASH`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = BIN_DIR.get() {
        return dir.clone();
    }
    if let Some(dir) = std::env::var_os("LATTICED_BIN_DIR") {
        return dir.into();
    }
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/PROFILE/deps")
        .to_owned()
}

/// Path of a workspace binary, checked to exist.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo build --workspace --bins` (cargo xtask test does)",
        p.display()
    );
    p
}

/// Workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_owned()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// What this process has running or created through the harness, so a
/// signal can clean it up: a killed run (the bench under `timeout`, Ctrl-C)
/// would otherwise leak namespaces and processes, since destructors do not
/// run.
static LIVE: std::sync::Mutex<Vec<Live>> = std::sync::Mutex::new(Vec::new());

#[derive(Debug, PartialEq, Eq)]
enum Live {
    Pid(u32),
    Namespace(String),
}

fn live() -> std::sync::MutexGuard<'static, Vec<Live>> {
    LIVE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn track(item: Live) {
    live().push(item);
}

fn untrack(item: &Live) {
    live().retain(|l| l != item);
}

/// On SIGINT or SIGTERM, stops every process started through the harness
/// (SIGTERM, SIGKILL after 5 s; latticed removes its routes and pins on
/// SIGTERM), deletes the namespaces, and exits with 128 + the signal. For
/// long runs outside the test runner, such as the bench.
pub fn clean_up_on_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    // Registered here, before returning, so no signal is missed.
    let (mut int, mut term) = rt.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    })?;
    std::thread::Builder::new()
        .name("clean-up".into())
        .spawn(move || {
            let sig = rt.block_on(async {
                tokio::select! {
                    _ = int.recv() => libc::SIGINT,
                    _ = term.recv() => libc::SIGTERM,
                }
            });
            eprintln!("signal {sig}: stopping what this run started and deleting its namespaces");
            clean_up_now();
            std::process::exit(128 + sig);
        })?;
    Ok(())
}

fn clean_up_now() {
    let items = std::mem::take(&mut *live());
    let pids: Vec<libc::pid_t> = items
        .iter()
        .filter_map(|i| match i {
            Live::Pid(p) => libc::pid_t::try_from(*p).ok(),
            Live::Namespace(_) => None,
        })
        .collect();
    for &pid in &pids {
        // SAFETY: kill(2) on a PID this process started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let start = Instant::now();
    let mut left = pids;
    while !left.is_empty() && start.elapsed() < Duration::from_secs(5) {
        // SAFETY: waitpid(2) on our own children, no status wanted.
        left.retain(|&pid| unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) } == 0);
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in left {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for item in &items {
        if let Live::Namespace(name) = item {
            let _ = Command::new("ip")
                .args(["netns", "del", name])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A network namespace made for one test, deleted on drop together with the
/// processes started in it through [`NetNsGuard::spawn`].
#[derive(Debug)]
pub struct NetNsGuard {
    name: String,
    children: Vec<Child>,
}

impl NetNsGuard {
    /// Creates `lt{pid}-{n}{suffix}` with `lo` up.
    pub fn new(suffix: &str) -> Self {
        let name = format!("lt{}{suffix}", unique());
        run(Command::new("ip").args(["netns", "add", &name]));
        track(Live::Namespace(name.clone()));
        let ns = Self {
            name,
            children: Vec::new(),
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace name (its VPC identifier).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS...`, asserting success.
    pub fn ip(&self, args: &[&str]) -> Output {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Starts a long-running process in the namespace; it is killed (by
    /// PID) when the guard drops.
    pub fn spawn(&mut self, mut cmd: Command) -> u32 {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        let pid = child.id();
        track(Live::Pid(pid));
        self.children.push(child);
        pid
    }

    /// Inode of the namespace (as bpftool reports `netns_ino`).
    pub fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(Path::new("/run/netns").join(&self.name))
            .expect("namespace file")
            .ino()
    }

    /// `ip route show table local proto 171` in the namespace.
    pub fn latticed_routes(&self) -> String {
        let out = self.ip(&["route", "show", "table", "all", "proto", "171"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates a new namespace under the same name (after [`Self::delete_name`]).
    pub fn recreate(&self) {
        run(Command::new("ip").args(["netns", "add", &self.name]));
        self.ip(&["link", "set", "lo", "up"]);
    }

    /// Deletes the namespace name now (as an operator's `ip netns del` would),
    /// leaving the processes in it running.
    pub fn delete_name(&self) {
        run(Command::new("ip").args(["netns", "del", &self.name]));
    }
}

impl Drop for NetNsGuard {
    fn drop(&mut self) {
        // SIGTERM first, so servers with workers (nginx) take them down;
        // SIGKILL whatever is left after a grace period.
        for c in &self.children {
            // SAFETY: kill(2) on the PID of a child we started.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        }
        let start = Instant::now();
        for c in &mut self.children {
            while c.try_wait().ok().flatten().is_none() && start.elapsed() < Duration::from_secs(3)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
            untrack(&Live::Pid(c.id()));
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
        untrack(&Live::Namespace(self.name.clone()));
    }
}

/// A walkthrough VPC: a namespace with 10.0.16.10/20 and an echo app on
/// 10.0.16.10:8080 that reports its name and the client it saw.
#[derive(Debug)]
pub struct Vpc {
    /// The namespace.
    pub ns: NetNsGuard,
    /// PID of the echo app.
    pub app_pid: u32,
}

/// The app address in every walkthrough VPC (they all overlap).
pub const APP_ADDR: &str = "10.0.16.10:8080";

impl Vpc {
    /// Creates the namespace and starts the app; returns once it answers.
    pub fn new(suffix: &str) -> Self {
        let mut ns = NetNsGuard::new(suffix);
        ns.ip(&["addr", "add", "10.0.16.10/20", "dev", "lo"]);
        let mut cmd = ns.command(bin("latticed-echo"));
        cmd.args(["--name", ns.name(), "--listen", APP_ADDR]);
        let app_pid = ns.spawn(cmd);
        let vpc = Self { ns, app_pid };
        wait_until(Duration::from_secs(5), || {
            vpc.curl(&format!("http://{APP_ADDR}/")).ok().is_some()
        });
        vpc
    }

    /// Namespace name.
    pub fn name(&self) -> &str {
        self.ns.name()
    }

    /// curl from inside this VPC; `Ok(body)` on HTTP success, `Err(exit code, stderr)`.
    pub fn curl(&self, url: &str) -> Result<String, (i32, String)> {
        curl_in(&self.ns, url, &[])
    }
}

/// Runs `cmd` (a probe that prints one JSON object), asserting it succeeds;
/// its stderr is the failure message.
pub fn run_json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{cmd:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// curl from inside `ns`, following no redirects, 5 s limit. `Ok(body)` when
/// curl succeeds (any HTTP status with `-w` extras), else `Err((exit code, stderr))`.
pub fn curl_in(ns: &NetNsGuard, url: &str, extra: &[&str]) -> Result<String, (i32, String)> {
    let out = ns
        .command("curl")
        .args(["-sS", "--max-time", "5"])
        .args(extra)
        .arg(url)
        .output()
        .expect("running curl");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

/// curl in `ns` over one connection for all `urls`, trusting `ca`: each
/// answer's body followed by a line with its status and HTTP version.
pub fn curl_many(ns: &NetNsGuard, ca: &Path, urls: &[String], extra: &[&str]) -> Vec<String> {
    let cfg = std::env::temp_dir().join(format!("latticed-curl-{}", unique()));
    let text: String = urls.iter().map(|u| format!("url = \"{u}\"\n")).collect();
    std::fs::write(&cfg, text).expect("curl config");
    let out = ns
        .command("curl")
        .args(["-sS", "--max-time", "60", "--cacert"])
        .arg(ca)
        .args(extra)
        .args(["-w", "\n%{http_code} %{http_version}\n--END--\n", "-K"])
        .arg(&cfg)
        .output()
        .expect("curl");
    let _ = std::fs::remove_file(&cfg);
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split("--END--\n")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A self-signed certificate for `name` (and 10.0.16.10) made by openssl
/// in `dir`: (certificate path, key path).
pub fn self_signed(dir: &Path, stem: &str, name: &str) -> (String, String) {
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    run(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec"])
        .args(["-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-nodes", "-days", "2", "-subj", &format!("/CN={name}")])
        .args([
            "-addext",
            &format!("subjectAltName=DNS:{name},IP:10.0.16.10"),
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    (
        cert.to_str().expect("UTF-8 path").to_owned(),
        key.to_str().expect("UTF-8 path").to_owned(),
    )
}

/// Waits until `child` sends READY=1 on `sock` (the systemd protocol,
/// `NOTIFY_SOCKET`). `Err(Some(status))` if it exited first, `Err(None)`
/// if `limit` passed.
pub fn wait_ready(
    sock: &UnixDatagram,
    child: &mut Child,
    limit: Duration,
) -> Result<(), Option<std::process::ExitStatus>> {
    let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
    let start = Instant::now();
    let mut buf = [0u8; 512];
    while start.elapsed() < limit {
        if let Ok(n) = sock.recv(&mut buf) {
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                return Ok(());
            }
        }
        if let Some(status) = child.try_wait().ok().flatten() {
            return Err(Some(status));
        }
    }
    Err(None)
}

/// A xorshift step: cheap random delays for crash tests, seeded per run.
pub fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// curl exit code for "could not connect" (refused).
pub const CURL_COULDNT_CONNECT: i32 = 7;

/// The JSON the echo app answers with.
pub fn echo(body: &str) -> serde_json::Value {
    serde_json::from_str(body.trim())
        .unwrap_or_else(|e| panic!("not an echo answer: {body:?}: {e}"))
}

/// Whether `ip:port` is from the proxy's source pool
/// (`latticed_common::addresses`, 169.254.171.192-252).
pub fn in_source_pool(client: &str) -> bool {
    use latticed_common::addresses::{SOURCE_FIRST, SOURCE_LAST};
    client
        .rsplit_once(':')
        .and_then(|(ip, _)| ip.parse::<Ipv4Addr>().ok())
        .is_some_and(|ip| (SOURCE_FIRST..=SOURCE_LAST).contains(&ip.to_bits()))
}

/// Polls `f` until it is true or `limit` passes (then panics).
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `latticed run` process with its own pin root, run directory and config
/// file. Stopped with SIGTERM on drop if still running.
#[derive(Debug)]
pub struct Latticed {
    child: Option<Child>,
    /// Pin root on bpffs.
    pub bpffs_root: PathBuf,
    /// Run directory (namespace record).
    pub run_dir: PathBuf,
    /// Config file path.
    pub config: PathBuf,
    /// stderr log file.
    pub log: PathBuf,
    notify: PathBuf,
    /// API mode: state directory and endpoint (no config file).
    pub api: Option<Api>,
    /// Extra `latticed run` arguments.
    pub extra_args: Vec<String>,
    /// Access log directory (`--log-dir`).
    pub log_dir: PathBuf,
    /// State directory in config mode (CA, inventory); API mode uses
    /// `api.state_dir`.
    pub state_dir: PathBuf,
    /// Port of the metrics endpoint on 127.0.0.1.
    pub metrics_port: u16,
    /// The test "host" (namespace) it runs in, see [`Latticed::in_host`].
    pub netns: Option<String>,
    forwards: Vec<hosts::PortForward>,
}

/// The API side of an API-mode latticed.
#[derive(Debug, Clone)]
pub struct Api {
    /// State directory (store, admin credentials).
    pub state_dir: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Port.
    pub port: u16,
}

/// A free TCP port on 127.0.0.1 (bound and released; the kernel does not
/// hand it out again at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Latticed {
    /// Paths for a new instance; nothing started yet.
    pub fn prepare(config: &serde_json::Value) -> Self {
        let u = unique();
        let dir = std::env::temp_dir().join(format!("latticed-test-{u}"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let l = Self {
            child: None,
            bpffs_root: PathBuf::from(format!("/sys/fs/bpf/latticed-test-{u}")),
            run_dir: dir.join("run"),
            config: dir.join("config.json"),
            log: dir.join("latticed.log"),
            notify: dir.join("notify.sock"),
            api: None,
            extra_args: Vec::new(),
            log_dir: dir.join("logs"),
            state_dir: dir.join("state"),
            metrics_port: free_port(),
            netns: None,
            forwards: Vec::new(),
        };
        l.write_config(config);
        l
    }

    /// Starts latticed managed through the API (no config file).
    pub fn start_api() -> Self {
        Self::start_api_with(&[])
    }

    /// [`Latticed::start_api`] with extra `latticed run` arguments.
    pub fn start_api_with(args: &[&str]) -> Self {
        let mut l = Self::prepare(&serde_json::json!({}));
        l.extra_args = args.iter().map(|a| (*a).to_owned()).collect();
        let port = free_port();
        let state_dir = l.config.parent().expect("dir").join("state");
        l.api = Some(Api {
            state_dir,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
        });
        l.spawn_and_wait_ready()
            .expect("latticed did not become ready");
        l
    }

    /// Runs it inside namespace `netns` (a test "host") from its next
    /// start, its API and metrics ports carried here (see
    /// [`hosts::PortForward`]).
    pub fn in_host(&mut self, netns: &str) {
        self.netns = Some(netns.to_owned());
        let mut ports = vec![self.metrics_port];
        ports.extend(self.api.as_ref().map(|a| a.port));
        self.forwards = ports
            .into_iter()
            .map(|p| hosts::PortForward::start(netns, p))
            .collect();
    }

    /// Where the CA and inventory live.
    pub fn state(&self) -> &std::path::Path {
        self.api.as_ref().map_or(&self.state_dir, |a| &a.state_dir)
    }

    /// A Prometheus scrape.
    pub fn metrics(&self) -> String {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The API side (panics if not in API mode).
    pub fn api(&self) -> &Api {
        self.api.as_ref().expect("API mode")
    }

    /// An `aws vpc-lattice` runner for this instance's API.
    pub fn aws(&self) -> Aws {
        Aws {
            endpoint: self.api().endpoint.clone(),
            credentials: self.api().state_dir.join("admin-credentials"),
        }
    }

    /// Starts latticed with `config` and waits for READY=1.
    pub fn start(config: &serde_json::Value) -> Self {
        let mut l = Self::prepare(config);
        l.spawn_and_wait_ready()
            .expect("latticed did not become ready");
        l
    }

    /// Replaces the config file (then [`Latticed::reload`] to apply it).
    pub fn write_config(&self, config: &serde_json::Value) {
        std::fs::write(
            &self.config,
            serde_json::to_vec_pretty(config).expect("json"),
        )
        .expect("writing config");
    }

    /// Starts the process; `Ok` once it notified readiness, `Err(log)` if
    /// it exited first.
    pub fn spawn_and_wait_ready(&mut self) -> Result<(), String> {
        let _ = std::fs::remove_file(&self.notify);
        let sock = UnixDatagram::bind(&self.notify).expect("notify socket");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("latticed"));
                c
            }
            None => Command::new(bin("latticed")),
        };
        cmd.arg("run");
        match &self.api {
            Some(api) => {
                cmd.arg("--api-listen")
                    .arg(format!("127.0.0.1:{}", api.port))
                    .arg("--state-dir")
                    .arg(&api.state_dir);
            }
            None => {
                cmd.arg("--config")
                    .arg(&self.config)
                    .arg("--state-dir")
                    .arg(&self.state_dir);
            }
        }
        let child = cmd
            .arg("--log-dir")
            .arg(&self.log_dir)
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{}", self.metrics_port))
            .args(&self.extra_args)
            .arg("--bpffs-root")
            .arg(&self.bpffs_root)
            .arg("--run-dir")
            .arg(&self.run_dir)
            .env("NOTIFY_SOCKET", &self.notify)
            .env(
                "RUST_LOG",
                LOG_FILTER
                    .get()
                    .map_or("info,latticed=debug,latticed_proxy=debug", String::as_str),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning latticed");
        track(Live::Pid(child.id()));
        let child = self.child.insert(child);
        match wait_ready(&sock, child, Duration::from_secs(20)) {
            Ok(()) => Ok(()),
            Err(Some(status)) => Err(format!("exited with {status}: {}", self.log_text())),
            Err(None) => Err(format!("not ready after 20 s: {}", self.log_text())),
        }
    }

    /// PID of the running process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Exit status if it has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends a signal to the process we started.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: plain kill(2) on the PID of our own child.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill {}", self.pid());
    }

    /// SIGHUP, then waits until the log shows the reload's outcome.
    pub fn reload(&self) -> String {
        let before = self.log_text().len();
        self.signal(libc::SIGHUP);
        let mut tail = String::new();
        wait_until(Duration::from_secs(10), || {
            tail = self.log_text().get(before..).unwrap_or("").to_owned();
            tail.contains("configuration reloaded") || tail.contains("keeping the current")
        });
        tail
    }

    /// Stops with `sig` and waits for the exit status.
    pub fn stop_with(&mut self, sig: libc::c_int) -> std::process::ExitStatus {
        self.signal(sig);
        let mut child = self.child.take().expect("running");
        let start = Instant::now();
        loop {
            if let Some(s) = child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "latticed did not exit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs latticed after `delay`, waits for `writer` (which stops
    /// when its requests fail) and starts latticed again. The writer is
    /// joined before the restart so it can never write to the new instance.
    pub fn crash_and_restart<T>(
        &mut self,
        delay: Duration,
        writer: std::thread::JoinHandle<T>,
    ) -> T {
        std::thread::sleep(delay);
        self.stop_with(libc::SIGKILL);
        let out = writer.join().expect("writer thread");
        self.spawn_and_wait_ready().expect("restart after SIGKILL");
        out
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Names under the pin root (namespace directories).
    pub fn pinned(&self) -> Vec<String> {
        std::fs::read_dir(&self.bpffs_root)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Latticed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The test failed: its latticed log is the first thing to read.
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("---- latticed log (last {} lines) ----", tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        if let Some(mut c) = self.child.take() {
            untrack(&Live::Pid(c.id()));
            // SAFETY: kill(2) on our own child's PID.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            let start = Instant::now();
            while c.try_wait().ok().flatten().is_none() {
                if start.elapsed() > Duration::from_secs(5) {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Whatever a failed test left: pins under our own root only.
        let _ = std::fs::remove_dir_all(&self.bpffs_root);
        if let Some(dir) = self.config.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// sk_lookup links attached to the namespace with inode `ino`, per bpftool.
pub fn sk_lookup_links(ino: u64) -> usize {
    let out = run(Command::new("bpftool").args(["-j", "link", "show"]));
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool json");
    links
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|l| {
                    l["type"] == "netns" && l["netns_ino"] == ino && l["attach_type"] == "sk_lookup"
                })
                .count()
        })
        .unwrap_or(0)
}

/// The walkthrough config of issue 2: one service per app, one service
/// network with both services, associated with both VPCs.
pub fn two_service_config(a: &str, b: &str) -> serde_json::Value {
    serde_json::json!({
        "serviceNetworks": [{"name": "demo-net"}],
        "services": [
            {"name": "service-a", "vip": "169.254.171.10", "listeners": [{"name": "http", "protocol": "HTTP", "port": 80,
                "defaultAction": {"forward": {"targetGroups": [{"targetGroupIdentifier": "app-a"}]}}}]},
            {"name": "service-b", "vip": "169.254.171.11", "listeners": [{"name": "http", "protocol": "HTTP", "port": 80,
                "defaultAction": {"forward": {"targetGroups": [{"targetGroupIdentifier": "app-b"}]}}}]}
        ],
        "targetGroups": [
            {"name": "app-a", "type": "IP", "config": {"vpcIdentifier": a, "port": 8080, "protocol": "HTTP"},
             "targets": [{"id": "10.0.16.10"}]},
            {"name": "app-b", "type": "IP", "config": {"vpcIdentifier": b, "port": 8080, "protocol": "HTTP"},
             "targets": [{"id": "10.0.16.10"}]}
        ],
        "serviceNetworkServiceAssociations": [
            {"serviceNetworkIdentifier": "demo-net", "serviceIdentifier": "service-a"},
            {"serviceNetworkIdentifier": "demo-net", "serviceIdentifier": "service-b"}
        ],
        "serviceNetworkVpcAssociations": [
            {"serviceNetworkIdentifier": "demo-net", "vpcIdentifier": a},
            {"serviceNetworkIdentifier": "demo-net", "vpcIdentifier": b}
        ]
    })
}

/// svc-a's URL (the app in VPC a).
pub const SVC_A: &str = "http://169.254.171.10/";
/// svc-b's URL (the app in VPC b).
pub const SVC_B: &str = "http://169.254.171.11/";

/// Runs the real AWS CLI against a latticed API with the admin credentials.
#[derive(Debug, Clone)]
pub struct Aws {
    /// API endpoint.
    pub endpoint: String,
    /// Shared credentials file.
    pub credentials: PathBuf,
}

impl Aws {
    /// `aws vpc-lattice ARGS --output json`: the parsed answer, or the CLI's
    /// error text.
    pub fn run(&self, args: &[&str]) -> Result<serde_json::Value, String> {
        self.run_in("vpc-lattice", args)
    }

    /// `aws ram ARGS` against the same endpoint (latticed tells the APIs
    /// apart by the service the request is signed for).
    pub fn ram(&self, args: &[&str]) -> Result<serde_json::Value, String> {
        self.run_in("ram", args)
    }

    /// Like [`Aws::ram`], panicking with the CLI's error.
    pub fn ram_ok(&self, args: &[&str]) -> serde_json::Value {
        self.ram(args)
            .unwrap_or_else(|e| panic!("aws ram {}: {e}", args.join(" ")))
    }

    /// `aws SERVICE ARGS --output json`.
    fn run_in(&self, service: &str, args: &[&str]) -> Result<serde_json::Value, String> {
        let out = Command::new("aws")
            .arg("--endpoint-url")
            .arg(&self.endpoint)
            .arg(service)
            .args(args)
            .args(["--output", "json"])
            .env("AWS_SHARED_CREDENTIALS_FILE", &self.credentials)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_MAX_ATTEMPTS", "1")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_PROFILE")
            .output()
            .expect("running aws (the set-up installs awscli)");
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            if text.trim().is_empty() {
                return Ok(serde_json::Value::Null);
            }
            serde_json::from_str(&text).map_err(|e| format!("aws printed non-JSON ({e}): {text}"))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// Like [`Aws::run`], panicking with the CLI's error.
    pub fn ok(&self, args: &[&str]) -> serde_json::Value {
        self.run(args)
            .unwrap_or_else(|e| panic!("aws vpc-lattice {}: {e}", args.join(" ")))
    }

    /// One service in service network `sn` whose HTTP listener forwards
    /// to a new IP group `group` holding the app at 10.0.16.10:8080 in
    /// namespace `vpc`: the service's answer and the group's id.
    pub fn service_to_app(
        &self,
        sn: &str,
        (name, group): (&str, &str),
        vpc: &str,
    ) -> (serde_json::Value, String) {
        let id = |v: serde_json::Value| v["id"].as_str().unwrap_or_default().to_owned();
        let config = format!(r#"{{"port":8080,"protocol":"HTTP","vpcIdentifier":"{vpc}"}}"#);
        let tg = id(self.ok(&[
            "create-target-group",
            "--name",
            group,
            "--type",
            "IP",
            "--config",
            &config,
        ]));
        let targets = ["register-targets", "--target-group-identifier", &tg];
        self.ok(&[&targets[..], &["--targets", "id=10.0.16.10"]].concat());
        let svc = self.ok(&["create-service", "--name", name]);
        let svc_id = svc["id"].as_str().unwrap_or_default();
        let action =
            format!(r#"{{"forward":{{"targetGroups":[{{"targetGroupIdentifier":"{tg}"}}]}}}}"#);
        self.ok(&[
            "create-listener",
            "--service-identifier",
            svc_id,
            "--name",
            "http",
            "--protocol",
            "HTTP",
            "--default-action",
            &action,
        ]);
        self.ok(&[
            "create-service-network-service-association",
            "--service-network-identifier",
            sn,
            "--service-identifier",
            svc_id,
        ]);
        (svc, tg)
    }

    /// The admin key pair from the credentials file.
    pub fn keys(&self) -> (String, String) {
        let text = std::fs::read_to_string(&self.credentials).expect("credentials file");
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|l| l.split('=').nth(1))
                .map(|v| v.trim().to_owned())
                .expect("key in credentials file")
        };
        (get("aws_access_key_id"), get("aws_secret_access_key"))
    }
}

/// A raw HTTP/1.1 exchange with the API, optionally SigV4-signed with
/// `keys`: (status, x-amzn-ErrorType, body).
pub fn api_request(
    port: u16,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    keys: Option<(&str, &str)>,
) -> std::io::Result<(u16, String, String)> {
    use std::io::{Read, Write};
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let host = format!("127.0.0.1:{port}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let amz_date = latticed_proxy::sigv4::format_amz_date(now);
    let mut headers = http::HeaderMap::new();
    headers.insert("host", host.parse().expect("host"));
    headers.insert("x-amz-date", amz_date.parse().expect("date"));
    let mut auth = None;
    if let Some((key, secret)) = keys {
        let req = latticed_proxy::sigv4::Request {
            method,
            raw_path: path,
            raw_query: query,
            headers: &headers,
            body,
        };
        auth = latticed_proxy::sigv4::sign(
            &req,
            key,
            secret,
            "us-east-1",
            "vpc-lattice",
            &amz_date,
            "host;x-amz-date",
        );
    }
    let mut stream = std::net::TcpStream::connect(&host)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!(
        "{method} {path_and_query} HTTP/1.1\r\nhost: {host}\r\nx-amz-date: {amz_date}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(a) = auth {
        head.push_str(&format!("authorization: {a}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut resp = Vec::new();
    stream.read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let error_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-amzn-errortype")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    Ok((status, error_type, body.to_owned()))
}

/// The tests' Lambda Invoke API (Node.js, `scripts/lambda/runner.js`), serving
/// the functions in `scripts/lambda/functions` on 127.0.0.1. Killed by PID on
/// drop.
#[derive(Debug)]
pub struct LambdaRunner {
    child: Child,
    /// `http://127.0.0.1:PORT`, for `--lambda-endpoint`.
    pub endpoint: String,
}

impl LambdaRunner {
    /// Starts the runner and waits until it listens.
    pub fn start() -> Self {
        Self::start_with(Command::new("node"))
    }

    /// [`LambdaRunner::start`] inside namespace `netns` (its 127.0.0.1).
    pub fn start_in(netns: &str) -> Self {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", netns, "node"]);
        Self::start_with(c)
    }

    fn start_with(mut node: Command) -> Self {
        use std::io::BufRead as _;
        let root = workspace_root().join("scripts/lambda");
        let mut child = node
            .arg(root.join("runner.js"))
            .arg(root.join("functions"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting node (the set-up installs nodejs)");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("runner output");
        let port = line
            .trim()
            .strip_prefix("listening ")
            .expect("runner prints its port");
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
        }
    }
}

impl Drop for LambdaRunner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `getent ahostsv4 NAME` inside `ns`: `Some(first IPv4 address)` if
/// it resolves (`getent hosts` would prefer the IPv6 twin).
pub fn getent(ns: &NetNsGuard, name: &str) -> Option<String> {
    let out = ns
        .command("getent")
        .args(["ahostsv4", name])
        .output()
        .expect("getent");
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_owned()
    })
}

/// Starts another echo app named `name` at `addr` (an address the caller
/// added to the namespace); returns its PID.
pub fn spawn_echo(ns: &mut NetNsGuard, name: &str, addr: &str) -> u32 {
    let mut cmd = ns.command(bin("latticed-echo"));
    cmd.args(["--name", name, "--listen", addr]);
    let pid = ns.spawn(cmd);
    let url = format!("http://{addr}/");
    wait_until(Duration::from_secs(5), || curl_in(ns, &url, &[]).is_ok());
    pid
}

/// SIGKILLs a process this test started.
pub fn kill(pid: u32) {
    // SAFETY: plain syscall on a PID the test spawned.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

/// `latticed account ARGS --state-dir STATE`: stdout, or the error.
pub fn account(l: &Latticed, args: &[&str]) -> Result<String, String> {
    let out = Command::new(bin("latticed"))
        .arg("account")
        .args(args)
        .arg("--state-dir")
        .arg(l.state())
        .output()
        .expect("running latticed account");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The error code the AWS CLI reports in `err` (`... (Code) when ...`).
pub fn code(err: &str) -> &str {
    err.split('(')
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap_or(err)
}

/// `latticed principal add`; returns (key, secret).
pub fn add_principal(state: &std::path::Path, arn: &str, extra: &[&str]) -> (String, String) {
    let out = Command::new(bin("latticed"))
        .args(["principal", "add", "--principal", arn, "--state-dir"])
        .arg(state)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} = ")))
            .unwrap()
            .to_owned()
    };
    (field("aws_access_key_id"), field("aws_secret_access_key"))
}

/// The test apps (`tests/apps`).
pub fn apps_dir() -> PathBuf {
    workspace_root().join("tests/apps")
}

/// A raw-socket target in VPC a (`tests/apps/SCRIPT serve 10.0.16.10 9000
/// LOG`, one JSON line per request it parsed) behind one HTTP service
/// named `host` with listener `rules`, reached from VPC b; latticed run
/// with `extra_args`.
#[derive(Debug)]
pub struct RawTarget {
    // Fields drop in this order: latticed stops before the namespaces go.
    /// The latticed serving it.
    pub latticed: Latticed,
    /// The client VPC.
    pub b: Vpc,
    _a: Vpc,
    /// One JSON line per request the target parsed.
    pub log: PathBuf,
}

impl RawTarget {
    /// Starts the target, latticed, and waits until `host` answers from b.
    pub fn start(script: &str, host: &str, rules: serde_json::Value, extra_args: &[&str]) -> Self {
        let mut a = Vpc::new("a");
        let b = Vpc::new("b");
        let log = std::env::temp_dir().join(format!("latticed-raw-{}.jsonl", unique()));
        let mut app = a.ns.command("python3");
        app.arg(apps_dir().join(script))
            .args(["serve", "10.0.16.10", "9000"])
            .arg(&log);
        a.ns.spawn(app);
        let config = serde_json::json!({
            "serviceNetworks": [{"name": "net"}],
            "services": [{"name": "raw", "customDomainName": host,
                "listeners": [{"name": "http", "protocol": "HTTP", "port": 80,
                    "defaultAction": {"forward": {"targetGroups": [{"targetGroupIdentifier": "raw"}]}},
                    "rules": rules}]}],
            "targetGroups": [{"name": "raw", "type": "IP",
                "config": {"port": 9000, "protocol": "HTTP", "vpcIdentifier": a.name()},
                "targets": [{"id": "10.0.16.10"}]}],
            "serviceNetworkServiceAssociations": [{"serviceNetworkIdentifier": "net", "serviceIdentifier": "raw"}],
            "serviceNetworkVpcAssociations": [{"serviceNetworkIdentifier": "net", "vpcIdentifier": b.name()}]
        });
        let mut latticed = Latticed::prepare(&config);
        latticed.extra_args = extra_args.iter().map(|s| (*s).to_owned()).collect();
        latticed.spawn_and_wait_ready().expect("latticed starts");
        wait_until(Duration::from_secs(10), || {
            b.curl(&format!("http://{host}/warm-up")).is_ok()
        });
        Self {
            latticed,
            b,
            _a: a,
            log,
        }
    }

    /// The requests the target parsed, in order.
    pub fn parsed(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for RawTarget {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log);
    }
}
