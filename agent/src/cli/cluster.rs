//! `latticed cluster init|token|join`: how nodes get their tunnel
//! identities.
//!
//! - `init`, once, on the operator's machine: makes the cluster CA in a
//!   root-only directory and stores its certificate (only) in etcd.
//! - `token --node NAME`, where the CA is: issues NAME's certificate and
//!   key, seals them with a fresh random secret and leaves the sealed
//!   package in etcd under a lease (one hour by default). The token printed
//!   is the secret; etcd holds only its hash and the ciphertext.
//! - `join --token T`, on the node: takes the package (read and deleted in
//!   one transaction, so a token works once), opens it, and writes
//!   STATE_DIR/cluster/{ca.pem,node.pem,node.key}.
//!
//! The CA's key never leaves the operator's directory; a node's key exists
//! in clear only on that node.

use std::path::PathBuf;

use anyhow::Context as _;
use base64::Engine as _;
use clap::Subcommand;
use latticed_proxy::tunnel::identity::{ClusterCa, NodeIdentity};
use ring::aead;
use sha2::{Digest as _, Sha256};

use super::EtcdArgs;

/// `latticed cluster ...`.
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Make the cluster's CA (once): its key stays in --ca-dir (0700), its
    /// certificate goes to etcd.
    Init {
        /// Directory for ca.pem and ca.key (created, root-only).
        #[arg(long, default_value = "/etc/latticed/cluster-ca")]
        ca_dir: PathBuf,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Issue a node's certificate and print a one-time token that
    /// `latticed cluster join` on that node redeems.
    Token {
        /// The node's name (its `run --node-name`).
        #[arg(long)]
        node: String,
        /// Directory of the CA (`init`'s --ca-dir).
        #[arg(long, default_value = "/etc/latticed/cluster-ca")]
        ca_dir: PathBuf,
        /// Seconds the token stays valid.
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(i64).range(10..=7 * 86400))]
        ttl: i64,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
    /// Redeem a token: this node's certificate and key, and the CA
    /// certificate, into STATE_DIR/cluster/.
    Join {
        /// The token `latticed cluster token` printed.
        #[arg(long, env = "LATTICED_JOIN_TOKEN")]
        token: String,
        /// This node's name; the token must be for it.
        #[arg(long, env = "LATTICED_NODE_NAME")]
        node_name: String,
        /// State directory of latticed.
        #[arg(long, default_value = "/var/lib/latticed", env = "LATTICED_STATE_DIR")]
        state_dir: PathBuf,
        #[command(flatten)]
        etcd: EtcdArgs,
    },
}

/// Where a node keeps its tunnel identity.
pub fn identity_dir(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("cluster")
}

const TOKEN_PREFIX: &str = "ltj1-";

/// The package a token opens.
#[derive(serde::Serialize, serde::Deserialize)]
struct Package {
    node: String,
    cert: String,
    key: String,
}

/// The etcd id of a token's package and the key that seals it, both
/// derived from the token's secret (etcd sees neither the secret nor the
/// key).
fn derive(secret: &[u8]) -> anyhow::Result<(String, aead::LessSafeKey)> {
    let id = hex::encode(
        &Sha256::new_with_prefix(b"latticed join id\0")
            .chain_update(secret)
            .finalize()[..16],
    );
    let key_bytes = Sha256::new_with_prefix(b"latticed join key\0")
        .chain_update(secret)
        .finalize();
    let key = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &key_bytes)
        .map(aead::LessSafeKey::new)
        .map_err(|_| anyhow::anyhow!("deriving the join key"))?;
    Ok((id, key))
}

fn seal(secret: &[u8], plain: &[u8]) -> anyhow::Result<(String, Vec<u8>)> {
    let (id, key) = derive(secret)?;
    let mut nonce = [0u8; aead::NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("random nonce: {e}"))?;
    let mut data = plain.to_vec();
    key.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(nonce),
        aead::Aad::from(id.as_bytes()),
        &mut data,
    )
    .map_err(|_| anyhow::anyhow!("sealing the join package failed"))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&data);
    Ok((id, out))
}

fn open(secret: &[u8], id: &str, sealed: &[u8]) -> Option<Vec<u8>> {
    let (_, key) = derive(secret).ok()?;
    let (nonce, data) = sealed.split_at_checked(aead::NONCE_LEN)?;
    let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut data = data.to_vec();
    let plain = key
        .open_in_place(nonce, aead::Aad::from(id.as_bytes()), &mut data)
        .ok()?;
    Some(plain.to_vec())
}

fn parse_token(token: &str) -> anyhow::Result<Vec<u8>> {
    let secret = token
        .trim()
        .strip_prefix(TOKEN_PREFIX)
        .and_then(|b| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(b)
                .ok()
        })
        .filter(|s| s.len() == 32);
    secret.ok_or_else(|| {
        anyhow::anyhow!("--token: not a latticed join token (ltj1- and 43 base64url characters)")
    })
}

/// Runs `latticed cluster ...`.
pub fn cluster(cmd: ClusterCommand, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Init { ca_dir, etcd } => init(&ca_dir, &etcd, runtime),
        ClusterCommand::Token {
            node,
            ca_dir,
            ttl,
            etcd,
        } => token(&node, &ca_dir, ttl, &etcd, runtime),
        ClusterCommand::Join {
            token,
            node_name,
            state_dir,
            etcd,
        } => join(&token, &node_name, &state_dir, &etcd, runtime),
    }
}

fn connect(
    etcd: &EtcdArgs,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<crate::control::cluster::Cluster> {
    let opts = etcd
        .options(Some("cli"))?
        .ok_or_else(|| anyhow::anyhow!("--etcd-endpoints: required"))?;
    runtime
        .block_on(crate::control::cluster::Cluster::connect(&opts))
        .map_err(anyhow::Error::from)
}

/// `cluster init`.
fn init(
    ca_dir: &std::path::Path,
    etcd: &EtcdArgs,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    let cluster = connect(etcd, runtime)?;
    let ca = ClusterCa::create(ca_dir)?;
    let stored = runtime.block_on(cluster.tunnel_ca(Some(ca.ca_pem())))?;
    if stored.as_deref() != Some(ca.ca_pem()) {
        // Leave nothing half-made: this CA is not the cluster's.
        let _ = std::fs::remove_file(ca_dir.join("ca.key"));
        let _ = std::fs::remove_file(ca_dir.join("ca.pem"));
        anyhow::bail!(
            "etcd {} already has a tunnel CA; `latticed cluster token` on the machine that holds its key issues node certificates",
            cluster.endpoints()
        );
    }
    eprintln!(
        "cluster CA made: key in {} (keep it there, root-only); certificate stored in etcd {}",
        ca_dir.join("ca.key").display(),
        cluster.endpoints()
    );
    Ok(())
}

/// `cluster token`.
#[expect(clippy::print_stdout, reason = "the command's answer")]
fn token(
    node: &str,
    ca_dir: &std::path::Path,
    ttl: i64,
    etcd: &EtcdArgs,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    if !crate::control::cluster::is_node_name(node) {
        anyhow::bail!("--node: {node:?} is not a node name (1-63 of a-z, 0-9, '-', '.')");
    }
    let ca = ClusterCa::load(ca_dir).with_context(|| format!("--ca-dir {}", ca_dir.display()))?;
    let cluster = connect(etcd, runtime)?;
    let stored = runtime.block_on(cluster.tunnel_ca(None))?;
    if stored.as_deref() != Some(ca.ca_pem()) {
        anyhow::bail!(
            "--ca-dir: {} is not the CA etcd {} holds (run `latticed cluster init` first)",
            ca_dir.display(),
            cluster.endpoints()
        );
    }
    let (cert, key) = ca.issue(node)?;
    let plain = serde_json::to_vec(&Package {
        node: node.to_owned(),
        cert,
        key,
    })?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("random token: {e}"))?;
    let (id, sealed) = seal(&secret, &plain)?;
    runtime.block_on(cluster.offer_join(&id, sealed, ttl))?;
    println!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    eprintln!("token for node {node}, valid {ttl} s, once: latticed cluster join --token TOKEN --node-name {node} --etcd-endpoints ...");
    Ok(())
}

/// `cluster join`.
fn join(
    token: &str,
    node_name: &str,
    state_dir: &std::path::Path,
    etcd: &EtcdArgs,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    let secret = parse_token(token)?;
    let (id, _) = derive(&secret)?;
    let cluster = connect(etcd, runtime)?;
    let ca = runtime.block_on(cluster.tunnel_ca(None))?.ok_or_else(|| {
        anyhow::anyhow!(
            "etcd {} has no tunnel CA: run `latticed cluster init`",
            cluster.endpoints()
        )
    })?;
    let sealed = runtime.block_on(cluster.take_join(&id))?.ok_or_else(|| {
        anyhow::anyhow!(
            "--token: unknown, used already, or expired; make another with `latticed cluster token`"
        )
    })?;
    let plain = open(&secret, &id, &sealed)
        .ok_or_else(|| anyhow::anyhow!("--token: the package under it does not open with it"))?;
    let p: Package = serde_json::from_slice(&plain).context("the join package")?;
    if p.node != node_name {
        anyhow::bail!(
            "--token: it was made for node {}, not {node_name}; the token is now used up",
            p.node
        );
    }
    let dir = identity_dir(state_dir);
    NodeIdentity::from_pem(ca.as_bytes(), p.cert.as_bytes(), p.key.as_bytes(), &dir)?;
    NodeIdentity::write(&dir, &ca, &p.cert, &p.key)?;
    eprintln!(
        "node {node_name} joined: its tunnel identity is in {}",
        dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_opens_only_with_its_token() {
        let secret = [7u8; 32];
        let (id, sealed) = seal(&secret, b"hello").unwrap();
        assert_eq!(open(&secret, &id, &sealed).as_deref(), Some(&b"hello"[..]));
        assert_eq!(open(&[8u8; 32], &id, &sealed), None);
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(open(&secret, &id, &tampered), None);
        assert_eq!(open(&secret, &id, &sealed[..5]), None);
        let token = format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
        );
        assert_eq!(parse_token(&token).unwrap(), secret);
        for bad in ["", "ltj1-", "ltj1-AAAA", "xyz", &token[1..]] {
            assert!(parse_token(bad).is_err(), "{bad}");
        }
    }
}
