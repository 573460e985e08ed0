//! Opens one tunnel stream the way a node would and sends one HTTP/1.1
//! request on it: the privileged tests' way to knock on a running node's
//! tunnel with the right identity, another node's, or a self-made one.
//!
//! Prints `ok STATUS-LINE` or `refused REASON` (exit 0 both), and exits 1
//! on bad arguments.

use std::{net::SocketAddr, path::PathBuf};

use clap::Parser;
use latticed_proxy::tunnel::{
    identity::{ClusterCa, NodeIdentity},
    Peer, Settings,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[derive(Parser)]
struct Args {
    /// A node's identity directory (ca.pem, node.pem, node.key).
    #[arg(long, conflicts_with = "self_made")]
    identity: Option<PathBuf>,
    /// Make a CA and an identity for this node name on the spot.
    #[arg(long)]
    self_made: Option<String>,
    /// The node expected at --addr.
    #[arg(long)]
    node: String,
    /// Its tunnel address.
    #[arg(long)]
    addr: SocketAddr,
    /// The VPC asked for.
    #[arg(long)]
    vpc: String,
    /// The target asked for.
    #[arg(long)]
    target: SocketAddr,
}

#[tokio::main(flavor = "current_thread")]
#[expect(clippy::print_stdout, reason = "the probe's answer")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let identity = match (&args.identity, &args.self_made) {
        (Some(dir), _) => NodeIdentity::load(dir)?,
        (None, Some(name)) => {
            let dir = std::env::temp_dir().join(format!("latticed-rogue-{}", std::process::id()));
            let ca = ClusterCa::create(&dir)?;
            let (cert, key) = ca.issue(name)?;
            let id = NodeIdentity::from_pem(
                ca.ca_pem().as_bytes(),
                cert.as_bytes(),
                key.as_bytes(),
                &dir,
            )?;
            std::fs::remove_dir_all(&dir)?;
            id
        }
        (None, None) => anyhow::bail!("--identity or --self-made"),
    };
    let peer = Peer::new(&args.node, args.addr, &identity, Settings::default())?;
    match peer.open(&args.vpc, args.target).await {
        Ok(mut s) => {
            s.write_all(b"GET / HTTP/1.1\r\nhost: probe\r\nconnection: close\r\n\r\n")
                .await?;
            let mut buf = Vec::new();
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf))
                    .await;
            let text = String::from_utf8_lossy(&buf);
            println!("ok {}", text.lines().next().unwrap_or(""));
        }
        Err(e) => println!("refused {e}"),
    }
    Ok(())
}
