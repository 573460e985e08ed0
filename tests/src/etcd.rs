//! A real etcd cluster for cluster-mode tests: members started from
//! Debian's `etcd` binary on loopback ports, each with its own data
//! directory, stopped by PID on drop; and latticed nodes joined to it.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{free_port, track, unique, untrack, Latticed, Live};

/// One etcd member.
#[derive(Debug)]
struct Member {
    name: String,
    client: u16,
    peer: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// A three-member (or n-member) etcd cluster on 127.0.0.1.
#[derive(Debug)]
pub struct Etcd {
    members: Vec<Member>,
    root: PathBuf,
    token: String,
    /// Clients must present a certificate from this CA (mutual TLS).
    pub tls: Option<Tls>,
    /// The namespace the members run in (a test "host"); `None`: here.
    netns: Option<String>,
    /// The address members listen on.
    ip: String,
}

/// Certificates for an etcd that takes only mutual TLS: a CA, the
/// members' server certificate (127.0.0.1), and a client certificate.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The CA certificate.
    pub ca: PathBuf,
    /// Server certificate and key.
    pub server: (PathBuf, PathBuf),
    /// A client certificate and key the CA signed.
    pub client: (PathBuf, PathBuf),
    /// A client certificate and key from another CA.
    pub stranger: (PathBuf, PathBuf),
}

impl Tls {
    /// Makes the files in `dir` with openssl.
    fn make(dir: &std::path::Path) -> Self {
        let run = |args: &[&str]| {
            crate::run(Command::new("openssl").current_dir(dir).args(args));
        };
        for ca in ["ca", "other-ca"] {
            run(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
                "-days",
                "2",
                "-subj",
                &format!("/CN={ca}"),
            ]);
        }
        let issue = |name: &str, ca: &str, ext: &str| {
            run(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ]);
            std::fs::write(dir.join(format!("{name}.ext")), ext).expect("ext file");
            run(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ]);
        };
        issue(
            "server",
            "ca",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
        );
        issue("client", "ca", "extendedKeyUsage=clientAuth\n");
        issue("stranger", "other-ca", "extendedKeyUsage=clientAuth\n");
        let pair = |n: &str| (dir.join(format!("{n}.pem")), dir.join(format!("{n}.key")));
        Self {
            ca: dir.join("ca.pem"),
            server: pair("server"),
            client: pair("client"),
            stranger: pair("stranger"),
        }
    }
}

impl Etcd {
    /// Starts `n` members and waits until the cluster takes writes.
    pub fn start(n: usize) -> Self {
        Self::start_with(n, false)
    }

    /// [`Etcd::start`] whose clients must use mutual TLS.
    pub fn start_tls(n: usize) -> Self {
        Self::start_with(n, true)
    }

    fn start_with(n: usize, tls: bool) -> Self {
        Self::start_at(n, tls, None, "127.0.0.1")
    }

    /// One member inside namespace `netns`, listening on `ip` there.
    pub fn start_in(netns: &str, ip: &str) -> Self {
        Self::start_at(1, false, Some(netns), ip)
    }

    /// A command that runs where the members do.
    fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        }
    }

    fn start_at(n: usize, tls: bool, netns: Option<&str>, ip: &str) -> Self {
        let u = unique();
        let root = std::env::temp_dir().join(format!("latticed-etcd-{u}"));
        std::fs::create_dir_all(&root).expect("etcd dir");
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                dir: root.join(format!("m{i}")),
                child: None,
            })
            .collect();
        let tls = tls.then(|| Tls::make(&root));
        let mut etcd = Self {
            members,
            root,
            token: format!("latticed-test-{u}"),
            tls,
            netns: netns.map(str::to_owned),
            ip: ip.to_owned(),
        };
        for i in 0..n {
            etcd.start_member(i);
        }
        etcd.wait_healthy();
        etcd
    }

    /// Client URLs of every member, comma-separated.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}://{}:{}", self.scheme(), self.ip, m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// etcdctl's TLS flags, if the cluster takes TLS.
    fn ctl_tls(&self) -> Vec<String> {
        self.tls.as_ref().map_or_else(Vec::new, |t| {
            vec![
                format!("--cacert={}", t.ca.display()),
                format!("--cert={}", t.client.0.display()),
                format!("--key={}", t.client.1.display()),
            ]
        })
    }

    /// Client URL of member `i` alone.
    pub fn endpoint(&self, i: usize) -> String {
        format!("{}://{}:{}", self.scheme(), self.ip, self.members[i].client)
    }

    /// (Re)starts member `i` with its data directory as it is.
    pub fn start_member(&mut self, i: usize) {
        let cluster = self
            .members
            .iter()
            .map(|m| format!("{}=http://{}:{}", m.name, self.ip, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let scheme = self.scheme();
        let tls_flags: Vec<String> = self.tls.as_ref().map_or_else(Vec::new, |t| {
            vec![
                format!("--cert-file={}", t.server.0.display()),
                format!("--key-file={}", t.server.1.display()),
                format!("--trusted-ca-file={}", t.ca.display()),
                "--client-cert-auth".into(),
            ]
        });
        let mut cmd = self.command("etcd");
        let ip = self.ip.clone();
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join(format!("{}.log", m.name)))
            .expect("etcd log");
        let client = format!("{scheme}://{ip}:{}", m.client);
        let peer = format!("http://{ip}:{}", m.peer);
        let child = cmd
            .args(["--name", &m.name, "--data-dir"])
            .arg(&m.dir)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args([
                "--initial-cluster",
                &cluster,
                "--initial-cluster-token",
                &self.token,
            ])
            .args(["--initial-cluster-state", "new"])
            // A mutation is one transaction of all its records (deleting a
            // service takes its listeners and rules with it).
            .args(["--max-txn-ops", "10000"])
            .args(&tls_flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd (Debian's etcd-server)");
        track(Live::Pid(child.id()));
        m.child = Some(child);
    }

    /// SIGKILLs member `i`.
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            untrack(&Live::Pid(c.id()));
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILLs every member.
    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill_member(i);
        }
    }

    /// Restarts every member that is not running and waits for health.
    pub fn restart_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                self.start_member(i);
            }
        }
        self.wait_healthy();
    }

    /// `etcdctl` against every member.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = crate::run(
            self.command("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &self.endpoints()])
                .args(self.ctl_tls())
                .args(args),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until a write through etcdctl succeeds.
    pub fn wait_healthy(&self) {
        let start = Instant::now();
        loop {
            let ok = self
                .command("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &self.endpoints(), "--command-timeout", "2s"])
                .args(self.ctl_tls())
                .args(["put", "/health-check", "ok"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "etcd did not become healthy: see {}",
                self.root.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill_all();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A latticed node of a cluster: its own ports, paths, bpffs root, and a
/// `--netns-dir` of its own holding links to the namespaces it hosts.
#[derive(Debug)]
pub struct Node {
    /// The daemon.
    pub latticed: Latticed,
    /// Its `--netns-dir`.
    pub netns_dir: PathBuf,
    /// Its `--node-name`.
    pub name: String,
}

impl Node {
    /// Starts node `name` on `endpoints`, hosting `namespaces`.
    pub fn start(name: &str, endpoints: &str, namespaces: &[&str]) -> Self {
        Self::start_with(name, endpoints, namespaces, &[])
    }

    /// [`Node::start`] with extra `latticed run` arguments.
    pub fn start_with(name: &str, endpoints: &str, namespaces: &[&str], extra: &[&str]) -> Self {
        Self::try_start(name, endpoints, namespaces, extra)
            .expect("cluster node did not become ready")
    }

    /// [`Node::start_with`]; `Err(log)` if latticed exits instead.
    pub fn try_start(
        name: &str,
        endpoints: &str,
        namespaces: &[&str],
        extra: &[&str],
    ) -> Result<Self, String> {
        let netns_dir = std::env::temp_dir().join(format!("latticed-netns-{}", unique()));
        std::fs::create_dir_all(&netns_dir).expect("netns dir");
        let node = Self {
            latticed: Latticed::prepare(&serde_json::json!({})),
            netns_dir,
            name: name.to_owned(),
        };
        for ns in namespaces {
            node.host(ns);
        }
        let mut args: Vec<String> = vec![
            "--etcd-endpoints".into(),
            endpoints.into(),
            "--node-name".into(),
            name.into(),
            "--netns-dir".into(),
            node.netns_dir.display().to_string(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let mut node = node;
        let l = &mut node.latticed;
        l.extra_args = args;
        let port = free_port();
        l.api = Some(crate::Api {
            state_dir: l.config.parent().expect("dir").join("state"),
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
        });
        l.spawn_and_wait_ready()?;
        Ok(node)
    }

    /// Node `name` inside test host `host`, hosting `namespaces`, with a
    /// tunnel identity issued by the CA in `ca_dir` (see
    /// [`crate::hosts::join`]) and `extra` arguments.
    pub fn start_on(
        host: &str,
        name: &str,
        etcd: &Etcd,
        namespaces: &[&str],
        ca_dir: &std::path::Path,
        extra: &[&str],
    ) -> Result<Self, String> {
        let netns_dir = std::env::temp_dir().join(format!("latticed-netns-{}", unique()));
        std::fs::create_dir_all(&netns_dir).expect("netns dir");
        let mut node = Self {
            latticed: Latticed::prepare(&serde_json::json!({})),
            netns_dir,
            name: name.to_owned(),
        };
        for ns in namespaces {
            node.host(ns);
        }
        let endpoints = etcd.endpoints();
        let l = &mut node.latticed;
        l.extra_args = [
            "--etcd-endpoints",
            &endpoints,
            "--node-name",
            name,
            "--netns-dir",
            &node.netns_dir.display().to_string(),
        ]
        .iter()
        .chain(extra)
        .map(|a| (*a).to_owned())
        .collect();
        let port = free_port();
        let state_dir = l.config.parent().expect("dir").join("state");
        crate::hosts::join(host, &endpoints, ca_dir, name, &state_dir);
        l.api = Some(crate::Api {
            state_dir,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
        });
        l.in_host(host);
        l.spawn_and_wait_ready()?;
        Ok(node)
    }

    /// Makes namespace `ns` one this node hosts.
    pub fn host(&self, ns: &str) {
        std::os::unix::fs::symlink(format!("/run/netns/{ns}"), self.netns_dir.join(ns))
            .expect("netns link");
    }

    /// Waits up to `limit` for the node's log to contain `text`; whether
    /// it did.
    pub fn wait_log(&self, text: &str, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.latticed.log_text().contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.netns_dir);
    }
}
