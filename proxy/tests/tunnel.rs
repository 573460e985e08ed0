//! The tunnel between agents on its own, on loopback and without
//! privileges (`Sockets::Here`): a stream carries bytes to a hosted target
//! both ways; the receiving node refuses a target it does not host; a peer
//! with a certificate from another CA, or one naming another node, gets no
//! tunnel. The privileged suite (`tests/tests/cluster_tunnel.rs`) runs the
//! same across two host namespaces with real VPCs.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "integration tests: a panic is the failure report"
)]

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use latticed_proxy::{
    tunnel::{
        identity::{ClusterCa, NodeIdentity},
        Error, Hosted, Peer, Server, Settings,
    },
    upstream::Sockets,
    Dataplane, ProxyConfig,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("latticed-tunnel-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        Self(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn identity(ca: &ClusterCa, node: &str, dir: &Dir) -> NodeIdentity {
    let (cert, key) = ca.issue(node).unwrap();
    NodeIdentity::from_pem(
        ca.ca_pem().as_bytes(),
        cert.as_bytes(),
        key.as_bytes(),
        &dir.0,
    )
    .unwrap()
}

/// An echo target on loopback: answers each read with "echo:" + bytes.
async fn echo() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            let mut out = b"echo:".to_vec();
                            out.extend_from_slice(&buf[..n]);
                            if s.write_all(&out).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Node "a"'s tunnel server on loopback, hosting `target` in `vpc-a`.
async fn server_a(id: &NodeIdentity, target: SocketAddr) -> (SocketAddr, Arc<Server>) {
    let dp = Dataplane::new(ProxyConfig {
        sockets: Sockets::Here,
        workers: 1,
        ..ProxyConfig::default()
    })
    .unwrap();
    let server = Server::new(id, dp.connector(), Arc::default());
    let mut hosted = Hosted::default();
    hosted.insert("vpc-a".into(), (7, std::iter::once(target).collect()));
    server.set_hosted(hosted);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(Arc::clone(&server).serve(l));
    // The data plane must outlive the test's streams.
    std::mem::forget(dp);
    (addr, server)
}

#[tokio::test]
async fn streams_reach_hosted_targets_only_and_only_for_cluster_peers() {
    let (ca_dir, id_dir) = (Dir::new("ca"), Dir::new("id"));
    let ca = ClusterCa::create(&ca_dir.0).unwrap();
    let a = identity(&ca, "a", &id_dir);
    let b = identity(&ca, "b", &id_dir);
    let target = echo().await;
    let other = echo().await;
    let (tunnel_a, server) = server_a(&a, target).await;

    // B reaches A's hosted target; bytes go both ways, twice on one stream.
    let peer = Peer::new("a", tunnel_a, &b, Settings::default()).unwrap();
    let mut s = peer.open("vpc-a", target).await.unwrap();
    for msg in [&b"hello"[..], b"again"] {
        s.write_all(msg).await.unwrap();
        let mut buf = vec![0u8; 5 + msg.len()];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf[5..], msg);
    }
    assert!(peer.connected());
    // A second stream shares the connection.
    let mut s2 = peer.open("vpc-a", target).await.unwrap();
    s2.write_all(b"x").await.unwrap();
    let mut buf = [0u8; 6];
    s2.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"echo:x");

    // Not a hosted target: another address, the right address in another
    // VPC. Refused with 403, and the peer's other streams go on.
    for (vpc, addr) in [("vpc-a", other), ("vpc-b", target)] {
        match peer.open(vpc, addr).await {
            Err(Error::Refused { status: 403, .. }) => {}
            other => panic!("{vpc} {addr}: {other:?}"),
        }
    }
    s.write_all(b"still").await.unwrap();
    let mut buf = [0u8; 10];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"echo:still");
    assert_eq!(
        server
            .counters
            .refused
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );

    // A peer whose certificate comes from another CA: no tunnel.
    let rogue_dir = Dir::new("rogue");
    let rogue_ca = ClusterCa::create(&rogue_dir.0).unwrap();
    let rogue = identity(&rogue_ca, "b", &id_dir);
    let p = Peer::new("a", tunnel_a, &rogue, Settings::default()).unwrap();
    assert!(matches!(
        p.open("vpc-a", target).await,
        Err(Error::Unreachable { .. })
    ));
    // Dialing node "c" at A's address: A's certificate names "a", so the
    // dialer refuses it.
    let p = Peer::new("c", tunnel_a, &b, Settings::default()).unwrap();
    match p.open("vpc-a", target).await {
        Err(Error::Unreachable { reason, .. }) => {
            assert!(reason.contains("TLS"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // A peer presenting A's own certificate to A is a copy: refused.
    let p = Peer::new("a", tunnel_a, &a, Settings::default()).unwrap();
    assert!(p.open("vpc-a", target).await.is_err());
    assert!(
        server
            .counters
            .rejected_peers
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
}

#[tokio::test]
async fn a_dead_peer_fails_fast_and_a_restarted_one_is_reached_again() {
    let (ca_dir, id_dir) = (Dir::new("ca2"), Dir::new("id2"));
    let ca = ClusterCa::create(&ca_dir.0).unwrap();
    let (a, b) = (identity(&ca, "a", &id_dir), identity(&ca, "b", &id_dir));
    let target = echo().await;
    // A port nobody listens on yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let peer = Peer::new(
        "a",
        port,
        &b,
        Settings {
            hold_down: Duration::from_millis(300),
            ..Settings::default()
        },
    )
    .unwrap();
    let t = std::time::Instant::now();
    assert!(matches!(
        peer.open("vpc-a", target).await,
        Err(Error::Unreachable { .. })
    ));
    // Held down: the next fails without dialing.
    assert!(peer.open("vpc-a", target).await.is_err());
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    // A comes up on that port: once the hold is over, B reaches it.
    let dp = Dataplane::new(ProxyConfig {
        sockets: Sockets::Here,
        workers: 1,
        ..ProxyConfig::default()
    })
    .unwrap();
    let server = Server::new(&a, dp.connector(), Arc::default());
    let mut hosted = Hosted::default();
    hosted.insert("vpc-a".into(), (7, std::iter::once(target).collect()));
    server.set_hosted(hosted);
    let l = tokio::net::TcpListener::bind(port).await.unwrap();
    let task = tokio::spawn(Arc::clone(&server).serve(l));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut s = peer.open("vpc-a", target).await.unwrap();
    s.write_all(b"up").await.unwrap();
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"echo:up");
    drop(task);
    drop(dp);
}

#[tokio::test]
async fn an_idle_tunnel_closes_and_a_slow_peer_stalls_only_itself() {
    let (ca_dir, id_dir) = (Dir::new("ca3"), Dir::new("id3"));
    let ca = ClusterCa::create(&ca_dir.0).unwrap();
    let (a, b) = (identity(&ca, "a", &id_dir), identity(&ca, "b", &id_dir));
    let target = echo().await;
    let (tunnel_a, _server) = server_a(&a, target).await;
    let quick = Settings {
        idle_timeout: Duration::from_millis(400),
        ..Settings::default()
    };
    let peer = Peer::new("a", tunnel_a, &b, quick).unwrap();

    // A peer that accepts TCP and never answers the TLS handshake.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            open.push(s);
        }
    });
    let slow = Peer::new("c", silent_addr, &b, Settings::default()).unwrap();
    let stuck = tokio::spawn(async move { slow.open("vpc-a", target).await.map(drop) });
    // Meanwhile streams to A open at once.
    let t = std::time::Instant::now();
    for _ in 0..5 {
        let mut s = peer.open("vpc-a", target).await.unwrap();
        s.write_all(b"x").await.unwrap();
        let mut buf = [0u8; 6];
        s.read_exact(&mut buf).await.unwrap();
    }
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    // The silent peer's stream fails within the dial timeout (1 s).
    let failed = tokio::time::timeout(Duration::from_secs(3), stuck)
        .await
        .expect("bounded")
        .unwrap();
    assert!(
        matches!(failed, Err(Error::Unreachable { .. })),
        "{failed:?}"
    );

    // No stream for the idle time (it has passed meanwhile): the
    // connection closed; the next stream dials again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!peer.connected(), "the idle tunnel was closed");
    let mut s = peer.open("vpc-a", target).await.unwrap();
    s.write_all(b"y").await.unwrap();
    let mut buf = [0u8; 6];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"echo:y");
    held.abort();
}
