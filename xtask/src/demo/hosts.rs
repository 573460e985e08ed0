//! `cargo xtask demo --hosts 2`: the walkthrough split across two hosts.
//!
//! Two network namespaces, `host-a` and `host-b` (named `lt...ha`/`hb`),
//! stand for two machines joined by a link (a veth pair); etcd runs inside
//! host A. `latticed cluster init` makes the tunnel CA, each node joins
//! with a one-time token, and a latticed runs inside each host. vpc-a (the
//! instance, its app) is on host A, vpc-b (the client, svc2's app) on
//! host B, both 10.0.16.0/20. The walkthrough is built through node B's
//! API with the AWS CLI, printed as typed; requests then cross between the
//! hosts over the nodes' mutual-TLS tunnels. The set-up is the two-host
//! tests' own (`latticed_tests::hosts::Cluster`), so the demo and the
//! tests cannot drift apart.

use std::{sync::atomic::Ordering, time::Duration};

use latticed_tests::{hosts::Cluster, walkthrough};

use super::{aws, curl, who, LOG_GROUP, STOP};
use crate::step;

pub fn demo() -> anyhow::Result<()> {
    latticed_tests::configure(crate::root().join("target/debug"), "info");
    step("starting two hosts (a veth pair), etcd in host A, the tunnel CA, a node on each host");
    let c = Cluster::start();
    let b_api = c.b.latticed.api().clone();
    let credentials = b_api.state_dir.join("admin-credentials");
    step("configuring it through node B's API with the AWS CLI");
    let built = walkthrough::build(
        &mut |args| aws(&b_api.endpoint, &credentials, args),
        c.vpc_a.name(),
        c.vpc_b.name(),
        LOG_GROUP,
    )?;
    print_banner(&c, &built, &credentials);
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("\nstopping the demo (nodes, etcd, namespaces)");
    drop(c);
    Ok(())
}

#[expect(
    clippy::print_stdout,
    reason = "the walkthrough is printed for the person running it"
)]
fn print_banner(c: &Cluster, built: &walkthrough::Built, credentials: &std::path::Path) {
    let ca = c.b.latticed.state().join("ca.pem");
    let (svc1, svc2) = (&built.svc1_dns, &built.svc2_dns);
    let (ha, hb) = (c.hosts.a.name(), c.hosts.b.name());
    let (va, vb) = (c.vpc_a.name(), c.vpc_b.name());
    let tries: Vec<String> = (0..6)
        .map(|_| format!("    {}", who(&curl(vb, &format!("https://{svc1}/"), &ca))))
        .collect();
    let endpoint = &c.b.latticed.api().endpoint;
    println!(
        r#"
latticed is up on two hosts. Requests from one host's VPC to targets on the
other cross over the nodes' HTTP/2 CONNECT tunnels (mutual TLS, port 15008).

  host {ha}   10.254.0.1   node host-a, etcd; hosts {va} (the instance {inst})
  host {hb}   10.254.0.2   node host-b; hosts {vb}
  {va} and {vb} are both 10.0.16.0/20, each with an app on 10.0.16.10:8080
  svc1    https://{svc1}/   2 parts the instance on host A, 1 part the function
  svc2    http://{svc2}/    -> the app in {vb} on host B

Try it, as root, in another terminal:

  ip netns exec {vb} curl --cacert {ca} https://{svc1}/to-instance   # B -> A
  ip netns exec {va} curl http://{svc2}/                            # A -> B
  ip netns exec {vb} curl --cacert {ca} https://{svc1}/to-function   # runs on B
  AWS_SHARED_CREDENTIALS_FILE={creds} AWS_DEFAULT_REGION=us-east-1 \
    aws --endpoint-url {endpoint} vpc-lattice list-targets --target-group-identifier {tg}
  ip netns exec {ha} etcdctl --endpoints {etcd} get --prefix /latticed/nodes/
  ip -n {hb} link set lb down; sleep 5; ip -n {hb} link set lb up   # a partition
  tail -f {log}

Tried just now, from {vb} on host B:
{tries}
and from {va} on host A: {other}

Press Ctrl-C to stop; the demo then removes everything it created."#,
        inst = walkthrough::INSTANCE,
        ca = ca.display(),
        creds = credentials.display(),
        tg = built.instances,
        etcd = c.etcd.endpoints(),
        log = c.b.latticed.log_dir.join("latticed/demo.log").display(),
        tries = tries.join("\n"),
        other = who(&curl(va, &format!("http://{svc2}/"), &ca)),
    );
}
