//! Two "hosts" for cluster tests: network namespaces joined by a veth pair,
//! standing for two machines on one network. A latticed runs in each
//! (`ip netns exec HOST latticed run ...`), the VPC namespaces it hosts are
//! its own, and etcd listens inside host A on the link.
//!
//! The test process reaches each latticed's API and metrics (which listen
//! on 127.0.0.1 inside its host) through a [`PortForward`]: a loopback
//! port here whose connections are carried to the same port inside the
//! host. Nothing in the root namespace's routes changes.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::Path,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use crate::{run, NetNsGuard};

/// Host A's address on the link.
pub const A_IP: &str = "10.254.0.1";
/// Host B's address on the link.
pub const B_IP: &str = "10.254.0.2";

/// Two hosts and the link between them.
#[derive(Debug)]
pub struct Hosts {
    /// Host A.
    pub a: NetNsGuard,
    /// Host B.
    pub b: NetNsGuard,
}

impl Hosts {
    /// Makes both hosts and the link (`la` in A, `lb` in B), up.
    pub fn new() -> Self {
        let a = NetNsGuard::new("ha");
        let b = NetNsGuard::new("hb");
        run(Command::new("ip").args([
            "link",
            "add",
            "la",
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            "lb",
            "netns",
            b.name(),
        ]));
        a.ip(&["addr", "add", &format!("{A_IP}/24"), "dev", "la"]);
        b.ip(&["addr", "add", &format!("{B_IP}/24"), "dev", "lb"]);
        a.ip(&["link", "set", "la", "up"]);
        b.ip(&["link", "set", "lb", "up"]);
        Self { a, b }
    }

    /// Cuts (`false`) or restores (`true`) B's side of the link.
    pub fn link_b(&self, up: bool) {
        self.b
            .ip(&["link", "set", "lb", if up { "up" } else { "down" }]);
    }
}

impl Default for Hosts {
    fn default() -> Self {
        Self::new()
    }
}

/// `latticed cluster init` run in `host` against `endpoints`: the CA's
/// directory (under a fresh temporary directory).
pub fn cluster_init(host: &str, endpoints: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("latticed-cluster-ca-{}", crate::unique()));
    run(Command::new("ip")
        .args(["netns", "exec", host])
        .arg(crate::bin("latticed"))
        .args(["cluster", "init", "--etcd-endpoints", endpoints, "--ca-dir"])
        .arg(&dir));
    dir
}

/// `latticed cluster token` then `join` for node `node`, writing its
/// identity under `state_dir`.
pub fn join(host: &str, endpoints: &str, ca_dir: &Path, node: &str, state_dir: &Path) {
    let cli = |args: &[&str]| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", host])
            .arg(crate::bin("latticed"))
            .arg("cluster")
            .args(args)
            .args(["--etcd-endpoints", endpoints]);
        c
    };
    let ca_dir = ca_dir.to_str().expect("UTF-8 path");
    let out = run(&mut cli(&["token", "--node", node, "--ca-dir", ca_dir]));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let state_dir = state_dir.to_str().expect("UTF-8 path");
    run(&mut cli(&[
        "join",
        "--token",
        &token,
        "--node-name",
        node,
        "--state-dir",
        state_dir,
    ]));
}

/// A loopback port of the test process carried to the same port on
/// 127.0.0.1 inside a namespace. Stops accepting on drop.
#[derive(Debug)]
pub struct PortForward {
    stop: Arc<AtomicBool>,
}

impl PortForward {
    /// Forwards 127.0.0.1:`port` here to 127.0.0.1:`port` in `netns`.
    pub fn start(netns: &str, port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("forwarded port");
        listener.set_nonblocking(true).expect("nonblocking");
        let ns = latticed_proxy::NetNs::open(Path::new("/run/netns"), netns).expect("host netns");
        let ns = Arc::new(ns);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let ns = Arc::clone(&ns);
                        thread::spawn(move || carry(&ns, client, port));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self { stop }
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn carry(ns: &latticed_proxy::NetNs, client: TcpStream, port: u16) {
    let _ = client.set_nonblocking(false);
    let Ok(Ok(up)) = ns.enter(|| TcpStream::connect(("127.0.0.1", port))) else {
        return;
    };
    let (Ok(mut c2), Ok(mut u2)) = (client.try_clone(), up.try_clone()) else {
        return;
    };
    let (mut client, mut up) = (client, up);
    let t = thread::spawn(move || {
        copy(&mut c2, &mut u2);
    });
    copy(&mut up, &mut client);
    let _ = t.join();
}

/// Copies until EOF or an error, then shuts the writer's sending side.
fn copy(from: &mut TcpStream, to: &mut TcpStream) {
    let mut buf = [0u8; 16384];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// The two-host cluster of the tests and of `cargo xtask demo --hosts 2`:
/// both hosts, etcd inside host A, the tunnel CA, a VPC on each host
/// (`vpc_a` with the walkthrough's instance in A's inventory, `vpc_b`),
/// a function runtime on each host, and a node on each, both registered
/// with their tunnels.
#[derive(Debug)]
pub struct Cluster {
    /// The VPC on host A.
    pub vpc_a: crate::Vpc,
    /// The VPC on host B.
    pub vpc_b: crate::Vpc,
    /// Node `host-a`.
    pub a: crate::etcd::Node,
    /// Node `host-b`.
    pub b: crate::etcd::Node,
    /// Function runtimes inside host A and host B.
    pub runners: (crate::LambdaRunner, crate::LambdaRunner),
    /// etcd, inside host A.
    pub etcd: crate::etcd::Etcd,
    /// The cluster CA's directory.
    pub ca_dir: std::path::PathBuf,
    /// The hosts (dropped last: everything above runs on them).
    pub hosts: Hosts,
}

impl Cluster {
    /// Starts it all; panics with the failing step's output.
    pub fn start() -> Self {
        let hosts = Hosts::new();
        let etcd = crate::etcd::Etcd::start_in(hosts.a.name(), A_IP);
        let ca_dir = cluster_init(hosts.a.name(), &etcd.endpoints());
        let vpc_a = crate::Vpc::new("a");
        let vpc_b = crate::Vpc::new("b");
        let runners = (
            crate::LambdaRunner::start_in(hosts.a.name()),
            crate::LambdaRunner::start_in(hosts.b.name()),
        );
        let inventory = std::env::temp_dir().join(format!("latticed-inv-{}.json", crate::unique()));
        std::fs::write(&inventory, crate::walkthrough::inventory(vpc_a.name())).expect("inventory");
        let a = crate::etcd::Node::start_on(
            hosts.a.name(),
            "host-a",
            &etcd,
            &[vpc_a.name()],
            &ca_dir,
            &[
                "--lambda-endpoint",
                &runners.0.endpoint,
                "--inventory",
                inventory.to_str().expect("UTF-8 path"),
            ],
        )
        .expect("node host-a");
        let b = crate::etcd::Node::start_on(
            hosts.b.name(),
            "host-b",
            &etcd,
            &[vpc_b.name()],
            &ca_dir,
            &["--lambda-endpoint", &runners.1.endpoint],
        )
        .expect("node host-b");
        crate::wait_until(Duration::from_secs(10), || {
            let nodes = etcd.ctl(&["get", "--prefix", "/latticed/nodes/"]);
            nodes.matches("\"tunnel\"").count() == 2
        });
        Self {
            vpc_a,
            vpc_b,
            a,
            b,
            runners,
            etcd,
            ca_dir,
            hosts,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.ca_dir);
    }
}
