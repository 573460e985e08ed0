//! Cluster mode: the API's state in etcd, shared by every node.
//!
//! Keys under the prefix (`--etcd-prefix`, default `/latticed/`):
//! - `rev`: the serialisation key. Every mutation is one etcd transaction
//!   that compares `rev`'s mod revision with the one the node's copy was
//!   built on, writes its records and rewrites `rev`. Two mutations planned
//!   on the same copy cannot both commit: the second finds `rev` moved,
//!   catches up and plans again (docs/architecture.md, "Cluster mode").
//! - `resources/KEY`: one API record each (the redb store's rows).
//! - `tokens/KEY`: clientToken idempotency, written in the same transaction.
//! - `credentials/KEY`, `admin/ACCOUNT`: API keys; the admin key is created
//!   once for the whole cluster.
//! - `principals`: the data path's principals (`latticed principal`), one
//!   JSON document changed by compare-and-swap.
//! - `nodes/NAME`: which namespaces a node hosts, under the node's lease.
//!
//! Every call has a deadline ([`REQUEST_TIMEOUT`]): a mutation while etcd is
//! unreachable fails within seconds, and the data path never waits on etcd.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    WatchOptions,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use super::store::Change;

/// How long one etcd call may take, connecting included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one attempt of a call may take (see [`Cluster::connect`]).
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(900);
/// Keys per page of a snapshot.
const PAGE: i64 = 500;
/// The largest gRPC message latticed takes from etcd (a page of large
/// records, a watch response of a large transaction); tonic's default is
/// 4 MiB.
const MAX_MESSAGE: usize = 64 << 20;
/// The node lease's time to live: a node that stops renewing it (crashed,
/// cut off) leaves the registry after this long.
pub const LEASE_TTL_SECS: i64 = 10;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// etcd refused or failed a call.
    #[error("etcd ({endpoints}): {what}: {source}")]
    Etcd {
        /// The endpoints asked.
        endpoints: String,
        /// What was attempted.
        what: &'static str,
        /// Cause.
        #[source]
        source: Box<etcd_client::Error>,
    },
    /// etcd did not answer in time.
    #[error("etcd ({endpoints}): {what}: no answer within {}s", REQUEST_TIMEOUT.as_secs())]
    Timeout {
        /// The endpoints asked.
        endpoints: String,
        /// What was attempted.
        what: &'static str,
    },
    /// A TLS file given by flag could not be read.
    #[error("{flag} {path}: {source}")]
    TlsFile {
        /// The flag.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// etcd no longer knows the node's lease (it lapsed during an outage).
    #[error("etcd ({endpoints}): the node lease expired")]
    LeaseExpired {
        /// The endpoints asked.
        endpoints: String,
    },
    /// A flag's value is wrong.
    #[error("{flag}: {reason}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// Why.
        reason: String,
    },
    /// A stored value is not what latticed writes there.
    #[error("etcd key {key:?} is not valid JSON: {source}")]
    Corrupt {
        /// The key.
        key: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// A record has no JSON form.
    #[error("record {key:?} cannot be written as JSON: {source}")]
    Encode {
        /// The key.
        key: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

/// Cluster mode's settings, from `latticed run`'s flags.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--etcd-endpoints`, each `http(s)://HOST:PORT`.
    pub endpoints: Vec<String>,
    /// `--etcd-prefix`, ending in `/`.
    pub prefix: String,
    /// `--node-name`.
    pub node: String,
    /// `--etcd-cacert`: the CA that signed etcd's server certificates.
    pub cacert: Option<PathBuf>,
    /// `--etcd-cert` and `--etcd-key`: this node's client certificate.
    pub cert: Option<PathBuf>,
    /// See `cert`.
    pub key: Option<PathBuf>,
}

impl Options {
    /// Checks the flags together; each error names its flag.
    pub fn validate(self) -> Result<Self, Error> {
        let flag = |flag, reason: String| Error::Flag { flag, reason };
        if self.endpoints.is_empty() {
            return Err(flag("--etcd-endpoints", "no endpoint given".into()));
        }
        for e in &self.endpoints {
            let rest = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"));
            match rest {
                Some(r) if !r.is_empty() && !r.contains(['/', '?', '#', ' ']) => {}
                _ => {
                    return Err(flag(
                        "--etcd-endpoints",
                        format!("{e:?} is not http(s)://HOST:PORT"),
                    ))
                }
            }
        }
        if !self.prefix.starts_with('/') || !self.prefix.ends_with('/') || self.prefix.len() > 200 {
            return Err(flag(
                "--etcd-prefix",
                format!(
                    "{:?} must start and end with '/' (at most 200 bytes)",
                    self.prefix
                ),
            ));
        }
        if !is_node_name(&self.node) {
            return Err(flag(
                "--node-name",
                format!(
                    "{:?} must be 1-63 of a-z, 0-9, '-', '.', '_', starting with a letter or digit",
                    self.node
                ),
            ));
        }
        if self.cert.is_some() != self.key.is_some() {
            return Err(flag(
                "--etcd-cert",
                "--etcd-cert and --etcd-key go together".into(),
            ));
        }
        let tls = self.endpoints.iter().any(|e| e.starts_with("https://"));
        if (self.cacert.is_some() || self.cert.is_some()) && !tls {
            return Err(flag(
                "--etcd-cacert",
                "TLS files given but no https:// endpoint".into(),
            ));
        }
        Ok(self)
    }
}

/// Whether `s` is a usable node name (it is an etcd key segment and a log
/// field).
pub fn is_node_name(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_')
        })
}

/// What a node publishes about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    /// The namespaces (VPCs) it hosts.
    pub namespaces: Vec<String>,
    /// The accounts that own those of them its inventory names (`vpcs`);
    /// the others are the default account's. Every node's API checks
    /// ownership by these, so it answers alike wherever the VPC lives.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub owners: BTreeMap<String, String>,
    /// Where other nodes' tunnels reach it; absent while it has no tunnel
    /// identity (`latticed cluster join`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<std::net::SocketAddr>,
    /// Instances and load balancers of its inventory in its VPCs, by id:
    /// other nodes resolve targets in those VPCs by them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub placements: BTreeMap<String, Placed>,
    /// Health of the targets in its VPCs as its checks see them: target
    /// group -> `ADDRESS:PORT` -> `STATUS` or `STATUS REASON`. Under the
    /// node's lease, so a node that dies takes its answers with it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub health: BTreeMap<String, BTreeMap<String, String>>,
}

/// An instance or load balancer a node places.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    /// Its VPC.
    pub vpc: String,
    /// Its address there.
    pub address: std::net::IpAddr,
}

/// Everything under the prefix at one revision.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// The store's revision the snapshot was read at.
    pub revision: i64,
    /// `rev`'s mod revision: the last mutation in the snapshot.
    pub rev: i64,
    /// API records.
    pub resources: Vec<(String, Value)>,
    /// API keys.
    pub credentials: Vec<(String, Value)>,
    /// The data path's principals document, if any.
    pub principals: Option<String>,
    /// The other accounts' document, if any.
    pub accounts: Option<String>,
    /// Registered nodes.
    pub nodes: BTreeMap<String, NodeRecord>,
}

/// What a key under the prefix is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// The serialisation key.
    Rev,
    /// An API record.
    Resource(String),
    /// An API key.
    Credential(String),
    /// The principals document.
    Principals,
    /// The other accounts' document (`latticed account`).
    Accounts,
    /// A node's registration.
    Node(String),
    /// Tokens and anything else no node follows.
    Other,
}

/// One changed key, as the watch delivers it.
#[derive(Debug, Clone)]
pub struct Item {
    /// Which key.
    pub key: Key,
    /// The new value; `None` when deleted.
    pub value: Option<Vec<u8>>,
    /// The revision that changed it.
    pub revision: i64,
}

/// What the watch tells the daemon.
#[derive(Debug)]
pub enum Event {
    /// Keys changed (one or more transactions, in order).
    Changes(Vec<Item>),
    /// The watch's revision was compacted away: here is everything.
    Resync(Snapshot),
    /// The watch was lost (`false`) or is back (`true`).
    Connected(bool),
}

/// A connection to etcd and where this node's keys live.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    prefix: String,
    node: String,
    endpoints: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// The outcome of a mutation's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Committed at this revision.
    Done(i64),
    /// Another mutation committed first: catch up and plan again.
    Stale,
}

impl Cluster {
    /// Connects (lazily: the first call dials), with TLS if given.
    pub async fn connect(opts: &Options) -> Result<Self, Error> {
        let endpoints = opts.endpoints.join(",");
        let mut connect = ConnectOptions::new()
            // One attempt's limit: an attempt sent to a member that just
            // died waits this long, then the call is tried again (on
            // another member) within REQUEST_TIMEOUT.
            .with_timeout(ATTEMPT_TIMEOUT)
            .with_connect_timeout(Duration::from_secs(2))
            // HTTP/2 pings find a silently dead connection (a partition).
            // Not more often than every 5 s: etcd's default
            // --grpc-keepalive-min-time, below which it closes the
            // connection ("too many pings") and the watch with it.
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        if opts.cacert.is_some() || opts.cert.is_some() {
            let read = |flag, path: &PathBuf| {
                std::fs::read(path).map_err(|source| Error::TlsFile {
                    flag,
                    path: path.clone(),
                    source,
                })
            };
            let mut tls = etcd_client::TlsOptions::new();
            if let Some(ca) = &opts.cacert {
                tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(
                    "--etcd-cacert",
                    ca,
                )?));
            }
            if let (Some(cert), Some(key)) = (&opts.cert, &opts.key) {
                tls = tls.identity(etcd_client::Identity::from_pem(
                    read("--etcd-cert", cert)?,
                    read("--etcd-key", key)?,
                ));
            }
            connect = connect.with_tls(tls);
        }
        let client = once(
            &endpoints,
            "connecting",
            Client::connect(&opts.endpoints, Some(connect)),
        )
        .await?;
        Ok(Self {
            client,
            prefix: opts.prefix.clone(),
            node: opts.node.clone(),
            endpoints,
        })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The endpoints, for messages.
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// What `key` (a whole etcd key) is.
    fn classify(&self, key: &[u8]) -> Key {
        let Some(rest) = std::str::from_utf8(key)
            .ok()
            .and_then(|k| k.strip_prefix(self.prefix.as_str()))
        else {
            return Key::Other;
        };
        if rest == "rev" {
            Key::Rev
        } else if rest == "principals" {
            Key::Principals
        } else if rest == "accounts" {
            Key::Accounts
        } else if let Some(k) = rest.strip_prefix("resources/") {
            Key::Resource(k.to_owned())
        } else if let Some(k) = rest.strip_prefix("credentials/") {
            Key::Credential(k.to_owned())
        } else if let Some(k) = rest.strip_prefix("nodes/") {
            Key::Node(k.to_owned())
        } else {
            Key::Other
        }
    }

    /// A KV call, tried again while it does not get through.
    async fn call<T, F>(&self, what: &'static str, f: impl Fn(Client) -> F) -> Result<T, Error>
    where
        F: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        bounded(&self.endpoints, what, || f(self.client.clone())).await
    }

    /// A get, with [`Cluster::call`]'s retries.
    async fn get(
        &self,
        what: &'static str,
        key: &str,
        opts: Option<GetOptions>,
    ) -> Result<etcd_client::GetResponse, Error> {
        self.call(what, |mut c| {
            let (key, opts) = (key.to_owned(), opts.clone());
            async move { c.get(key, opts).await }
        })
        .await
    }

    /// A transaction, with [`Cluster::call`]'s retries.
    async fn txn(&self, what: &'static str, txn: Txn) -> Result<etcd_client::TxnResponse, Error> {
        self.call(what, |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    /// A call made once, within the deadline.
    async fn once<T>(
        &self,
        what: &'static str,
        f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, Error> {
        once(&self.endpoints, what, f).await
    }

    /// Everything a node follows (not the client tokens, which only a
    /// commit's check reads), at one revision, in pages: a large state is
    /// more than one gRPC message may carry.
    pub async fn snapshot(&self) -> Result<Snapshot, Error> {
        let mut s = Snapshot::default();
        // The first read fixes the revision every other read is made at.
        let rev = self.key("rev");
        let first = self
            .get("reading the state", &rev, Some(GetOptions::new()))
            .await?;
        s.revision = first.header().map_or(0, |h| h.revision());
        self.add_page(&mut s, &first)?;
        for (range, whole) in [
            ("resources/", true),
            ("credentials/", true),
            ("nodes/", true),
            ("principals", false),
            ("accounts", false),
        ] {
            let key = self.key(range);
            let end = if whole {
                prefix_end(key.as_bytes())
            } else {
                Vec::new()
            };
            let mut from = key.into_bytes();
            loop {
                let mut opts = GetOptions::new().with_revision(s.revision).with_limit(PAGE);
                if !end.is_empty() {
                    opts = opts.with_range(end.clone());
                }
                let resp = self
                    .call("reading the state", |c| {
                        let (key, opts) = (from.clone(), opts.clone());
                        async move {
                            let mut kv = c.kv_client().max_decoding_message_size(MAX_MESSAGE);
                            kv.get(key, Some(opts)).await
                        }
                    })
                    .await?;
                self.add_page(&mut s, &resp)?;
                match resp.kvs().last() {
                    Some(last) if resp.more() => {
                        from = last.key().to_vec();
                        from.push(0);
                    }
                    _ => break,
                }
            }
        }
        Ok(s)
    }

    /// Sorts one page of a snapshot's keys into it.
    fn add_page(&self, s: &mut Snapshot, resp: &etcd_client::GetResponse) -> Result<(), Error> {
        for kv in resp.kvs() {
            let json = || {
                serde_json::from_slice::<Value>(kv.value()).map_err(|source| Error::Corrupt {
                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                    source,
                })
            };
            match self.classify(kv.key()) {
                Key::Rev => s.rev = kv.mod_revision(),
                Key::Resource(k) => s.resources.push((k, json()?)),
                Key::Credential(k) => s.credentials.push((k, json()?)),
                Key::Principals => {
                    s.principals = Some(String::from_utf8_lossy(kv.value()).into_owned());
                }
                Key::Accounts => {
                    s.accounts = Some(String::from_utf8_lossy(kv.value()).into_owned());
                }
                Key::Node(n) => {
                    if let Some(r) = node_record(&n, kv.value()) {
                        s.nodes.insert(n, r);
                    }
                }
                Key::Other => {}
            }
        }
        Ok(())
    }

    /// `rev`'s mod revision now (a linearizable read: every mutation any
    /// node has acknowledged is at or below it).
    pub async fn latest(&self) -> Result<i64, Error> {
        let resp = self
            .get(
                "reading the latest revision",
                &self.key("rev"),
                Some(GetOptions::new().with_keys_only()),
            )
            .await?;
        Ok(resp.kvs().first().map_or(0, |kv| kv.mod_revision()))
    }

    /// A stored idempotency entry.
    pub async fn token(&self, key: &str) -> Result<Option<Value>, Error> {
        let k = self.key(&format!("tokens/{key}"));
        let resp = self.get("reading a clientToken", &k, None).await?;
        resp.kvs()
            .first()
            .map(|kv| {
                serde_json::from_slice(kv.value())
                    .map_err(|source| Error::Corrupt { key: k, source })
            })
            .transpose()
    }

    /// Commits `changes` (and the token's record) if no mutation committed
    /// since `base` (`rev`'s mod revision the changes were planned on).
    pub async fn commit<V: Serialize>(
        &self,
        base: i64,
        changes: &[Change<V>],
        token: Option<(&str, &Value)>,
    ) -> Result<Commit, Error> {
        let mut ops = Vec::with_capacity(changes.len() + 2);
        for c in changes {
            match c {
                Change::Put(k, v) => {
                    let bytes = serde_json::to_vec(v).map_err(|source| Error::Encode {
                        key: k.clone(),
                        source,
                    })?;
                    ops.push(TxnOp::put(self.key(&format!("resources/{k}")), bytes, None));
                }
                Change::Delete(k) => {
                    ops.push(TxnOp::delete(self.key(&format!("resources/{k}")), None));
                }
            }
        }
        if let Some((k, v)) = token {
            ops.push(TxnOp::put(
                self.key(&format!("tokens/{k}")),
                v.to_string(),
                None,
            ));
        }
        ops.push(TxnOp::put(self.key("rev"), self.node.clone(), None));
        let txn = Txn::new()
            .when([Compare::mod_revision(
                self.key("rev"),
                CompareOp::Equal,
                base,
            )])
            .and_then(ops);
        let resp = self.txn("committing a change", txn).await?;
        Ok(if resp.succeeded() {
            Commit::Done(resp.header().map_or(0, |h| h.revision()))
        } else {
            Commit::Stale
        })
    }

    /// The cluster's admin key for `account`: the one stored, or `proposed`
    /// if none is (two nodes starting at once agree on one).
    pub async fn admin_key(
        &self,
        account: &str,
        proposed: (&str, &Value),
    ) -> Result<(String, Value), Error> {
        let marker = self.key(&format!("admin/{account}"));
        let (key, record) = proposed;
        let txn = Txn::new()
            .when([Compare::create_revision(
                marker.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then([
                TxnOp::put(marker.clone(), key, None),
                TxnOp::put(
                    self.key(&format!("credentials/{key}")),
                    record.to_string(),
                    None,
                ),
            ]);
        let resp = self.txn("creating the admin key", txn).await?;
        if resp.succeeded() {
            return Ok((key.to_owned(), record.clone()));
        }
        let got = self.get("reading the admin key", &marker, None).await?;
        let existing = got
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
            .unwrap_or_default();
        let k = self.key(&format!("credentials/{existing}"));
        let cred = self.get("reading the admin key", &k, None).await?;
        let value = match cred.kvs().first() {
            Some(kv) => serde_json::from_slice(kv.value())
                .map_err(|source| Error::Corrupt { key: k, source })?,
            None => Value::Null,
        };
        Ok((existing, value))
    }

    /// The tunnels' CA certificate: the one stored (`tunnel-ca`), after
    /// storing `proposed` if none was.
    pub async fn tunnel_ca(&self, proposed: Option<&str>) -> Result<Option<String>, Error> {
        let k = self.key("tunnel-ca");
        if let Some(pem) = proposed {
            let txn = Txn::new()
                .when([Compare::create_revision(k.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(k.clone(), pem, None)]);
            if self.txn("storing the tunnel CA", txn).await?.succeeded() {
                return Ok(Some(pem.to_owned()));
            }
        }
        let got = self.get("reading the tunnel CA", &k, None).await?;
        Ok(got
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
    }

    /// Leaves `sealed` under `joins/ID` for `ttl_secs` (a lease deletes it
    /// then).
    pub async fn offer_join(&self, id: &str, sealed: Vec<u8>, ttl_secs: i64) -> Result<(), Error> {
        let mut c = self.client.clone();
        let lease = self
            .once("granting the join lease", c.lease_grant(ttl_secs, None))
            .await?
            .id();
        let k = self.key(&format!("joins/{id}"));
        self.once(
            "storing the join package",
            c.put(k, sealed, Some(PutOptions::new().with_lease(lease))),
        )
        .await?;
        Ok(())
    }

    /// Takes the package under `joins/ID`: read and deleted in one
    /// transaction, so a token works once.
    pub async fn take_join(&self, id: &str) -> Result<Option<Vec<u8>>, Error> {
        let k = self.key(&format!("joins/{id}"));
        let txn = Txn::new()
            .when([Compare::version(k.clone(), CompareOp::Greater, 0)])
            .and_then([TxnOp::get(k.clone(), None), TxnOp::delete(k, None)]);
        let resp = self.txn("taking the join package", txn).await?;
        if !resp.succeeded() {
            return Ok(None);
        }
        Ok(resp.op_responses().into_iter().find_map(|r| match r {
            etcd_client::TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        }))
    }

    /// Changes document `name` (`principals`, `accounts`) by
    /// compare-and-swap: `f` gets the current text (if any) and returns the
    /// new one; it runs again if another writer got there first.
    pub async fn update_document<T, E>(
        &self,
        name: &str,
        mut f: impl FnMut(Option<&str>) -> Result<(String, T), E>,
    ) -> Result<Result<T, E>, Error> {
        let k = self.key(name);
        loop {
            let got = self.get("reading a document", &k, None).await?;
            let (text, modrev) = match got.kvs().first() {
                Some(kv) => (
                    Some(String::from_utf8_lossy(kv.value()).into_owned()),
                    kv.mod_revision(),
                ),
                None => (None, 0),
            };
            let (new, out) = match f(text.as_deref()) {
                Ok(v) => v,
                Err(e) => return Ok(Err(e)),
            };
            let txn = Txn::new()
                .when([Compare::mod_revision(k.clone(), CompareOp::Equal, modrev)])
                .and_then([TxnOp::put(k.clone(), new, None)]);
            if self.txn("writing a document", txn).await?.succeeded() {
                return Ok(Ok(out));
            }
        }
    }

    /// Keeps `nodes/NAME` = the record `hosted` holds, under a lease
    /// renewed every few seconds; re-registers after any failure (a new
    /// lease if the old one lapsed during an etcd outage).
    pub fn register(&self, mut hosted: watch::Receiver<NodeRecord>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            loop {
                match this.hold_registration(&mut hosted).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(node = %this.node, "node registration: {e}; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        })
    }

    /// One lease's life: put the record, renew, re-put on changes. Returns
    /// `Ok` only when `hosted`'s sender is gone (the daemon stopped).
    async fn hold_registration(
        &self,
        hosted: &mut watch::Receiver<NodeRecord>,
    ) -> Result<(), Error> {
        let mut c = self.client.clone();
        let lease = self
            .once(
                "granting the node lease",
                c.lease_grant(LEASE_TTL_SECS, None),
            )
            .await?
            .id();
        let key = self.key(&format!("nodes/{}", self.node));
        let put = |c: &mut Client, record: NodeRecord| {
            let body = serde_json::to_vec(&record).unwrap_or_default();
            let key = key.clone();
            let mut c = c.clone();
            async move {
                c.put(key, body, Some(PutOptions::new().with_lease(lease)))
                    .await
            }
        };
        let now = hosted.borrow_and_update().clone();
        self.once("registering the node", put(&mut c, now)).await?;
        let (mut keeper, mut acks) = self
            .once("renewing the node lease", c.lease_keep_alive(lease))
            .await?;
        tracing::info!(node = %self.node, lease, "node registered");
        let mut tick = tokio::time::interval(Duration::from_secs(LEASE_TTL_SECS as u64 / 3));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.once("renewing the node lease", keeper.keep_alive()).await?;
                    let ack = self.once("renewing the node lease", acks.message()).await?;
                    if ack.is_none_or(|a| a.ttl() <= 0) {
                        return Err(Error::LeaseExpired { endpoints: self.endpoints.clone() });
                    }
                }
                changed = hosted.changed() => {
                    if changed.is_err() {
                        // Stopping: leave the registry at once.
                        let _ = tokio::time::timeout(Duration::from_secs(1), c.lease_revoke(lease)).await;
                        return Ok(());
                    }
                    let now = hosted.borrow_and_update().clone();
                    self.once("registering the node", put(&mut c, now)).await?;
                }
            }
        }
    }

    /// Follows every key under the prefix from revision `from` on, into the
    /// returned channel; reconnects after failures from the last revision
    /// delivered, and sends a whole [`Snapshot`] when that revision was
    /// compacted away.
    /// `up`: whether the caller counts the watch as up already (else the
    /// first answer sends [`Event::Connected`]`(true)`).
    pub fn follow(&self, from: i64, up: bool) -> mpsc::Receiver<Event> {
        let (tx, rx) = mpsc::channel(256);
        let this = self.clone();
        tokio::spawn(async move {
            let mut next = from;
            let mut up = up;
            loop {
                let err = match this.watch_from(&mut next, &tx, &mut up).await {
                    // A new watch from the resynced revision, at once: the
                    // node was never cut off.
                    WatchEnd::Resynced => continue,
                    WatchEnd::Lost(err) => err,
                };
                if tx.is_closed() {
                    return;
                }
                if up {
                    up = false;
                    tracing::warn!(endpoints = %this.endpoints, "watch lost: {err}; serving the last known state");
                    if tx.send(Event::Connected(false)).await.is_err() {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        rx
    }

    /// One watch stream, until it fails or its revision was compacted (a
    /// whole snapshot sent instead). `next` moves past what was sent.
    async fn watch_from(
        &self,
        next: &mut i64,
        tx: &mpsc::Sender<Event>,
        up: &mut bool,
    ) -> WatchEnd {
        let lost = |why: String| WatchEnd::Lost(why);
        let mut c = self
            .client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE);
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(*next)
            .with_progress_notify();
        let mut stream = match self
            .once("watching", c.watch(self.prefix.clone(), Some(opts)))
            .await
        {
            Ok(s) => s,
            Err(e) => return lost(e.to_string()),
        };
        loop {
            let msg = match stream.message().await {
                Ok(Some(m)) => m,
                Ok(None) => return lost("the watch stream ended".into()),
                Err(e) => return lost(e.to_string()),
            };
            if !*up {
                *up = true;
                tracing::info!(endpoints = %self.endpoints, revision = *next, "watch re-established");
                if tx.send(Event::Connected(true)).await.is_err() {
                    return lost(String::new());
                }
            }
            if msg.compact_revision() > 0 {
                tracing::warn!(
                    wanted = *next,
                    compacted = msg.compact_revision(),
                    "watch revision compacted; reading the whole state again"
                );
                match self.snapshot().await {
                    Ok(s) => {
                        *next = s.revision + 1;
                        if tx.send(Event::Resync(s)).await.is_err() {
                            return lost(String::new());
                        }
                        return WatchEnd::Resynced;
                    }
                    Err(e) => return lost(e.to_string()),
                }
            }
            if msg.canceled() {
                return lost(format!("the watch was cancelled: {}", msg.cancel_reason()));
            }
            let items: Vec<Item> = msg
                .events()
                .iter()
                .filter_map(|ev| {
                    let kv = ev.kv()?;
                    Some(Item {
                        key: self.classify(kv.key()),
                        value: (ev.event_type() == EventType::Put).then(|| kv.value().to_vec()),
                        revision: kv.mod_revision(),
                    })
                })
                .collect();
            if let Some(h) = msg.header() {
                *next = (*next).max(h.revision() + 1);
            }
            if let Some(last) = items.iter().map(|i| i.revision).max() {
                *next = (*next).max(last + 1);
            }
            if !items.is_empty() && tx.send(Event::Changes(items)).await.is_err() {
                return lost(String::new());
            }
        }
    }
}

/// How one watch stream ended.
enum WatchEnd {
    /// Cut off (why); the daemon hears it is serving its last known state.
    Lost(String),
    /// Its revision was compacted and a whole snapshot went out instead.
    Resynced,
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff: to the end of the keyspace.
    vec![0]
}

/// What the metrics endpoint shows of a node's link to etcd.
#[derive(Debug, Default)]
pub struct Gauges {
    /// Whether the watch is up.
    pub connected: std::sync::atomic::AtomicBool,
    /// The revision of the last mutation the node's copy holds.
    pub revision: std::sync::atomic::AtomicI64,
    /// Nodes registered.
    pub nodes: std::sync::atomic::AtomicUsize,
    /// Mutations committed through this node.
    pub committed: std::sync::atomic::AtomicU64,
    /// Commits refused because another node's came first (then replanned).
    pub stale: std::sync::atomic::AtomicU64,
    /// Commits that failed (etcd unreachable, refused).
    pub failed: std::sync::atomic::AtomicU64,
}

impl Gauges {
    /// Appends the Prometheus text.
    pub fn render(&self, out: &mut String) {
        use std::{fmt::Write as _, sync::atomic::Ordering::Relaxed};
        let _ = write!(
            out,
            "# HELP latticed_cluster_connected Whether this node's watch on etcd is up (1) or it serves its last known state (0).\n# TYPE latticed_cluster_connected gauge\nlatticed_cluster_connected {}\n\
             # HELP latticed_cluster_revision etcd revision of the last mutation this node's copy holds.\n# TYPE latticed_cluster_revision gauge\nlatticed_cluster_revision {}\n\
             # HELP latticed_cluster_nodes Nodes registered in etcd.\n# TYPE latticed_cluster_nodes gauge\nlatticed_cluster_nodes {}\n\
             # HELP latticed_cluster_commits_total API mutations this node committed to etcd, by outcome.\n# TYPE latticed_cluster_commits_total counter\n\
             latticed_cluster_commits_total{{outcome=\"committed\"}} {}\nlatticed_cluster_commits_total{{outcome=\"stale\"}} {}\nlatticed_cluster_commits_total{{outcome=\"failed\"}} {}\n",
            u8::from(self.connected.load(Relaxed)),
            self.revision.load(Relaxed),
            self.nodes.load(Relaxed),
            self.committed.load(Relaxed),
            self.stale.load(Relaxed),
            self.failed.load(Relaxed),
        );
    }
}

/// A node's record, or `None` (logged) if it is not one.
pub fn node_record(node: &str, value: &[u8]) -> Option<NodeRecord> {
    match serde_json::from_slice(value) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(node, "ignoring a malformed node record: {e}");
            None
        }
    }
}

/// `f` with [`REQUEST_TIMEOUT`], its error naming the endpoints. A call
/// that did not reach etcd (a member died, its connection broke) is tried
/// again within the deadline: the client balances over the other members.
/// Retrying a mutation is safe: its transaction compares `rev`, so a first
/// attempt that did commit makes the second one `Stale`, never a double.
async fn bounded<T, F>(
    endpoints: &str,
    what: &'static str,
    mut f: impl FnMut() -> F,
) -> Result<T, Error>
where
    F: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, f()).await {
            Ok(Err(e)) if unreached(&e) && tokio::time::Instant::now() + RETRY_PAUSE < deadline => {
                tracing::debug!(what, "etcd call did not get through ({e}); trying again");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            answer => return answered(endpoints, what, answer),
        }
    }
}

/// `f` with [`REQUEST_TIMEOUT`], once.
async fn once<T>(
    endpoints: &str,
    what: &'static str,
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, Error> {
    answered(
        endpoints,
        what,
        tokio::time::timeout(REQUEST_TIMEOUT, f).await,
    )
}

/// A call's outcome within its deadline, its errors naming the endpoints.
fn answered<T>(
    endpoints: &str,
    what: &'static str,
    outcome: Result<Result<T, etcd_client::Error>, tokio::time::error::Elapsed>,
) -> Result<T, Error> {
    match outcome {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Error::Etcd {
            endpoints: endpoints.to_owned(),
            what,
            source: Box::new(e),
        }),
        Err(_) => Err(Error::Timeout {
            endpoints: endpoints.to_owned(),
            what,
        }),
    }
}

/// The pause between attempts of a call that did not get through.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Whether `e` says the call never got an answer from etcd.
fn unreached(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(s) => match s.code() {
            tonic::Code::Unavailable => true,
            tonic::Code::Unknown => s.message().contains("transport error"),
            // The attempt's own deadline (ATTEMPT_TIMEOUT).
            tonic::Code::Cancelled | tonic::Code::DeadlineExceeded => true,
            _ => false,
        },
        _ => false,
    }
}

/// The owners every node publishes for its namespaces.
pub fn owners(nodes: &BTreeMap<String, NodeRecord>) -> BTreeMap<String, String> {
    nodes
        .values()
        .flat_map(|r| r.owners.iter().map(|(v, a)| (v.clone(), a.clone())))
        .collect()
}

/// Which nodes claim each namespace.
pub fn claims(nodes: &BTreeMap<String, NodeRecord>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (node, r) in nodes {
        for ns in &r.namespaces {
            out.entry(ns.clone()).or_default().push(node.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: "/latticed/".into(),
            node: "node-a".into(),
            cacert: None,
            cert: None,
            key: None,
        }
    }

    #[test]
    fn flags_are_checked_and_named() {
        assert!(opts().validate().is_ok());
        let err = |o: Options| o.validate().unwrap_err().to_string();
        let mut o = opts();
        o.endpoints = vec!["127.0.0.1:2379".into()];
        assert!(err(o).starts_with("--etcd-endpoints"));
        let mut o = opts();
        o.prefix = "latticed".into();
        assert!(err(o).starts_with("--etcd-prefix"));
        let mut o = opts();
        o.node = "Node A".into();
        assert!(err(o).starts_with("--node-name"));
        let mut o = opts();
        o.cert = Some("/c.pem".into());
        assert!(err(o).contains("--etcd-key"));
        let mut o = opts();
        o.cacert = Some("/ca.pem".into());
        assert!(err(o).contains("https://"));
    }

    #[test]
    fn a_prefix_ends_where_its_keys_do() {
        assert_eq!(prefix_end(b"/latticed/"), b"/latticed0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn claims_show_a_namespace_two_nodes_host() {
        let nodes: BTreeMap<String, NodeRecord> = [
            (
                "a".to_owned(),
                NodeRecord {
                    namespaces: vec!["vpc-1".into(), "vpc-2".into()],
                    owners: [("vpc-1".to_owned(), "222233334444".to_owned())].into(),
                    ..NodeRecord::default()
                },
            ),
            (
                "b".to_owned(),
                NodeRecord {
                    namespaces: vec!["vpc-2".into()],
                    ..NodeRecord::default()
                },
            ),
        ]
        .into();
        let c = claims(&nodes);
        assert_eq!(
            owners(&nodes),
            [("vpc-1".to_owned(), "222233334444".to_owned())].into()
        );
        assert_eq!(c["vpc-1"], ["a"]);
        assert_eq!(c["vpc-2"], ["a", "b"]);
    }
}
