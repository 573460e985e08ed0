//! Cluster mode on the daemon's side: the node's copy of the state follows
//! etcd through a watch, reads catch up before they answer, and the node's
//! namespaces are published under its lease.
//!
//! The copy is what the data path runs on, so while etcd is unreachable the
//! node keeps serving with its last known state (static stability) and the
//! API answers reads from it; mutations fail fast (`commit` has a deadline).

// The daemon's types and imports: these methods extend `Daemon`.
use super::*;
use crate::control::{
    api::records::Record,
    cluster::{self, Cluster, Commit, Event, Item, Key, NodeRecord, Snapshot},
    store,
};

/// How long a read waits to catch up with a newer revision before it
/// answers from the copy it has.
const CATCH_UP: Duration = Duration::from_secs(2);
/// How long a read asks etcd for the latest revision (shorter than a
/// mutation's deadline: a read can always answer from the copy).
const LATEST: Duration = Duration::from_millis(800);
/// After etcd did not answer a read's question, how long reads answer from
/// the copy without asking again.
const RECHECK: Duration = Duration::from_secs(2);

/// The node's own copy of the cluster state on disk
/// (`STATE_DIR/cluster-cache.redb`): what a node restarted while etcd is
/// unreachable starts from, so its data path comes back with the last
/// state it knew (static stability). Written in order on a thread of its
/// own, off the daemon's loop; etcd stays the truth.
pub(super) struct Cache {
    writes: Option<std::sync::mpsc::Sender<CacheWrite>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Cache {
    /// Waits for the writes already sent (a stopping node's cache is
    /// complete).
    fn drop(&mut self) {
        drop(self.writes.take());
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// One write to the cache.
enum CacheWrite {
    /// Records changed; the copy is now at `known`.
    Changes(Vec<handlers::Change>, i64),
    /// A credential was put (`Some`) or removed.
    Credential(String, Option<serde_json::Value>),
    /// A document (`principals`, `accounts`).
    Document(&'static str, Option<String>),
    /// Everything, as read from etcd.
    Replace(Box<Snapshot>),
}

impl Cache {
    /// Opens the cache: what it holds (if anything) and its writer.
    fn open(state_dir: &std::path::Path) -> Result<(Self, Option<Snapshot>), Error> {
        let store = store::Store::open_file(state_dir, "cluster-cache.redb")?;
        let loaded = load(&store)?;
        let (writes, rx) = std::sync::mpsc::channel::<CacheWrite>();
        let writer = std::thread::Builder::new()
            .name("cluster-cache".into())
            .spawn(move || {
                for w in rx {
                    if let Err(e) = write(&store, w) {
                        tracing::warn!(error = %e, "writing the local copy of the cluster state");
                    }
                }
            })
            .map_err(|source| Error::Io {
                what: "starting the cluster cache's writer".into(),
                source,
            })?;
        Ok((
            Self {
                writes: Some(writes),
                writer: Some(writer),
            },
            loaded,
        ))
    }

    fn send(&self, w: CacheWrite) {
        // Only fails once the writer is gone (the daemon is stopping).
        if let Some(tx) = &self.writes {
            let _ = tx.send(w);
        }
    }
}

/// The cache's contents as a snapshot at the revision it reached.
fn load(store: &store::Store) -> Result<Option<Snapshot>, store::Error> {
    let Some(known) = store.meta("known")?.and_then(|v| v.as_i64()) else {
        return Ok(None);
    };
    Ok(Some(Snapshot {
        revision: known,
        rev: known,
        resources: store.resources()?,
        credentials: store.credentials()?,
        principals: store
            .meta("principals")?
            .and_then(|v| v.as_str().map(str::to_owned)),
        accounts: store
            .meta("accounts")?
            .and_then(|v| v.as_str().map(str::to_owned)),
        nodes: BTreeMap::new(),
    }))
}

fn write(store: &store::Store, w: CacheWrite) -> Result<(), store::Error> {
    use serde_json::json;
    match w {
        CacheWrite::Changes(changes, known) => {
            store.commit_with_meta(&changes, &[("known", &json!(known))])
        }
        CacheWrite::Credential(k, Some(v)) => store.put_credential(&k, &v),
        CacheWrite::Credential(k, None) => store.remove_credential(&k),
        CacheWrite::Document(name, text) => {
            store.commit_with_meta::<serde_json::Value>(&[], &[(name, &json!(text))])
        }
        CacheWrite::Replace(s) => store.replace_all(
            &s.resources,
            &s.credentials,
            &[
                ("known", &json!(s.rev)),
                ("principals", &json!(s.principals)),
                ("accounts", &json!(s.accounts)),
            ],
        ),
    }
}

/// A cluster node's link to etcd.
pub(super) struct ClusterState {
    pub(super) etcd: Cluster,
    /// `rev`'s mod revision the node's state reflects: the last mutation
    /// applied here.
    pub(super) known: i64,
    pub(super) events: mpsc::Receiver<Event>,
    /// The copy on disk.
    cache: Cache,
    /// What the metrics endpoint shows.
    pub(super) gauges: Arc<cluster::Gauges>,
    /// Whether the watch is up (else a read catches up by reading all).
    connected: bool,
    /// Started from the cache, which keeps no node registrations: the whole
    /// state is read again once etcd answers (the watch resumes from the
    /// last mutation, after which the registrations may not have changed).
    stale_nodes: bool,
    /// When asking etcd for the latest revision last failed: reads answer
    /// from the copy at once for a while rather than wait each time.
    unreachable_since: Option<std::time::Instant>,
    /// Registered nodes and the namespaces each hosts.
    nodes: BTreeMap<String, NodeRecord>,
    /// The cluster's principals document.
    pub(super) principals: Option<String>,
    /// The cluster's other accounts.
    pub(super) accounts: Option<String>,
    /// This node's namespaces, as published.
    hosted: tokio::sync::watch::Sender<NodeRecord>,
    _registration: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for ClusterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterState")
            .field("etcd", &self.etcd)
            .field("known", &self.known)
            .finish_non_exhaustive()
    }
}

impl ClusterState {
    /// Connects, reads the whole state, starts following it and registers
    /// the node with the namespaces of `netns_dir`.
    /// If etcd cannot be read, the node starts from its cache (the last
    /// state it knew) and catches up when etcd answers; the returned flag
    /// says so. With neither, it does not start.
    pub(super) async fn start(
        opts: &cluster::Options,
        netns_dir: &std::path::Path,
        state_dir: &std::path::Path,
    ) -> Result<(Self, Snapshot, bool), Error> {
        let etcd = Cluster::connect(opts).await?;
        let (cache, cached) = Cache::open(state_dir)?;
        let (snapshot, from_cache) = match (etcd.snapshot().await, cached) {
            (Ok(s), _) => {
                cache.send(CacheWrite::Replace(Box::new(s.clone())));
                tracing::info!(
                    endpoints = etcd.endpoints(),
                    node = etcd.node(),
                    revision = s.revision,
                    records = s.resources.len(),
                    nodes = s.nodes.len(),
                    "cluster state loaded from etcd"
                );
                (s, false)
            }
            (Err(e), Some(s)) => {
                tracing::warn!(
                    revision = s.rev,
                    records = s.resources.len(),
                    "{e}; starting from this node's copy of the cluster state, and catching up when etcd answers"
                );
                (s, true)
            }
            (Err(e), None) => return Err(e.into()),
        };
        let events = etcd.follow(snapshot.revision + 1, !from_cache);
        let (hosted, rx) = tokio::sync::watch::channel(NodeRecord {
            namespaces: namespaces_in(netns_dir),
            ..NodeRecord::default()
        });
        let registration = etcd.register(rx);
        let state = Self {
            etcd,
            known: snapshot.rev,
            events,
            cache,
            gauges: Arc::default(),
            connected: !from_cache,
            stale_nodes: from_cache,
            unreachable_since: None,
            nodes: snapshot.nodes.clone(),
            principals: snapshot.principals.clone(),
            accounts: snapshot.accounts.clone(),
            hosted,
            _registration: registration,
        };
        state.report_conflicts();
        state.update_gauges();
        Ok((state, snapshot, from_cache))
    }

    /// Leaves the registry at once (the lease is revoked) rather than when
    /// the lease lapses.
    pub(super) async fn leave(self) {
        let Self {
            hosted,
            _registration: registration,
            ..
        } = self;
        drop(hosted);
        let _ = tokio::time::timeout(Duration::from_millis(1500), registration).await;
    }

    /// Brings the gauges up to date with the state.
    fn update_gauges(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.gauges.connected.store(self.connected, Relaxed);
        self.gauges.revision.store(self.known, Relaxed);
        self.gauges.nodes.store(self.nodes.len(), Relaxed);
    }

    /// Every node's record, this node's as it publishes it now (before it
    /// comes back by the watch).
    pub(super) fn all_nodes(&self) -> BTreeMap<String, NodeRecord> {
        let mut nodes = self.nodes.clone();
        nodes.insert(self.etcd.node().to_owned(), self.hosted.borrow().clone());
        nodes
    }

    /// Namespace -> the nodes that host it.
    pub(super) fn claims(&self) -> BTreeMap<String, Vec<String>> {
        cluster::claims(&self.all_nodes())
    }

    /// Sets document `name` (`principals`, `accounts`) as the watch
    /// delivered it, and keeps it in the cache.
    fn set_document(&mut self, name: &'static str, value: Option<Vec<u8>>) {
        let text = value.map(|v| String::from_utf8_lossy(&v).into_owned());
        let slot = if name == "principals" {
            &mut self.principals
        } else {
            &mut self.accounts
        };
        slot.clone_from(&text);
        self.cache.send(CacheWrite::Document(name, text));
    }

    /// Logs every namespace two nodes claim: such a VPC is refused by the
    /// API until one of them lets it go, never split between them.
    fn report_conflicts(&self) {
        for (ns, nodes) in self.claims() {
            if nodes.len() > 1 {
                tracing::error!(
                    namespace = %ns,
                    nodes = %nodes.join(", "),
                    "namespace claimed by more than one node; the API refuses it until only one hosts it"
                );
            }
        }
    }
}

/// The namespaces a node hosts: the names in its `--netns-dir`.
pub(super) fn namespaces_in(dir: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

impl Daemon {
    fn cluster(&mut self) -> Option<&mut ClusterState> {
        match &mut self.api.as_mut()?.backend {
            Backend::Cluster(c) => Some(c),
            Backend::Local(_) => None,
        }
    }

    /// The revision the cluster copy reflects; `None` on a single host.
    pub(super) fn cluster_revision(&self) -> Option<i64> {
        match &self.api.as_ref()?.backend {
            Backend::Cluster(c) => Some(c.known),
            Backend::Local(_) => None,
        }
    }

    /// This node's name in the cluster; `None` on a single host.
    pub(super) fn cluster_node(&self) -> Option<String> {
        match &self.api.as_ref()?.backend {
            Backend::Cluster(c) => Some(c.etcd.node().to_owned()),
            Backend::Local(_) => None,
        }
    }

    /// Publishes this node's record (see [`Daemon::node_record`]) when it
    /// changed: etcd sees a new one only then.
    pub(super) fn publish_namespaces(&mut self) {
        if self.cluster().is_none() {
            return;
        }
        let now = self.node_record(self.tunnel_addr);
        let Some(c) = self.cluster() else {
            return;
        };
        if c.hosted.send_if_modified(|v| {
            let changed = *v != now;
            if changed {
                v.clone_from(&now);
            }
            changed
        }) {
            c.report_conflicts();
            self.claims_to_api();
        }
    }

    /// Gives the API which nodes host which VPCs, and who owns them.
    pub(super) fn claims_to_api(&mut self) {
        let Some(api) = self.api.as_mut() else {
            return;
        };
        if let Backend::Cluster(c) = &api.backend {
            let nodes = c.all_nodes();
            api.settings.cluster_vpcs = Some(cluster::claims(&nodes));
            api.settings.vpc_owners = cluster::owners(&nodes);
        }
    }

    /// Brings the copy up to the latest mutation any node acknowledged, so
    /// a read answers what a write on another node just returned. Bounded:
    /// if etcd cannot say, the copy answers as it is.
    pub(super) async fn catch_up(&mut self) {
        let Some(c) = self.cluster() else {
            return;
        };
        if c.unreachable_since.is_some_and(|t| t.elapsed() < RECHECK) {
            return;
        }
        let etcd = c.etcd.clone();
        let latest = match tokio::time::timeout(LATEST, etcd.latest()).await {
            Ok(Ok(r)) => r,
            failed => {
                if let Ok(Err(e)) = failed {
                    tracing::debug!("catching up: {e}");
                }
                if let Some(c) = self.cluster() {
                    c.unreachable_since = Some(std::time::Instant::now());
                }
                return;
            }
        };
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        loop {
            let Some(c) = self.cluster() else {
                return;
            };
            c.unreachable_since = None;
            if c.known >= latest {
                return;
            }
            if !c.connected {
                break;
            }
            match tokio::time::timeout_at(deadline, c.events.recv()).await {
                Ok(Some(ev)) => self.cluster_event(ev).await,
                Ok(None) | Err(_) => break,
            }
        }
        // The watch is down or behind: read everything instead.
        match etcd.snapshot().await {
            Ok(s) => self.resync(s).await,
            Err(e) => tracing::warn!("catching up: {e}; answering from the copy"),
        }
    }

    /// Cluster mode's half of [`Daemon::commit_mutation`], once the change
    /// is in the copy (`undo` takes it out) and planned: etcd first, then
    /// this node's data path, as every other node's follows from the
    /// watch. Applying first would put a change that etcd then refuses (or,
    /// in an outage, never hears of) on the data path for as long as the
    /// commit takes to fail. `Ok(None)`: another node committed first.
    pub(super) async fn commit_then_apply(
        &mut self,
        operation: &str,
        mutation: handlers::Mutation,
        token: Option<(String, String)>,
        (plan, delta): (Plan, &Delta),
        undo: &[handlers::Change],
    ) -> Result<Option<serde_json::Value>, ApiError> {
        let t0 = std::time::Instant::now();
        let record = super::transaction::token_record(token.as_ref(), &mutation.result);
        let record = record.as_ref().map(|(k, v)| (*k, v));
        match self.cluster_commit(&mutation.changes, record).await {
            Ok(Commit::Done(_)) => {}
            failed => {
                if let Some(api) = self.api.as_mut() {
                    api.state.apply(undo);
                }
                return match failed {
                    Err(e) => Err(ApiError::internal(e.to_string())),
                    _ => Ok(None),
                };
            }
        }
        let t_commit = t0.elapsed();
        if let Some(c) = self.cluster() {
            c.cache
                .send(CacheWrite::Changes(mutation.changes.clone(), c.known));
        }
        if let Err(e) = self.apply_delta(plan, Some(delta)).await {
            tracing::error!(operation, error = %e, "committed to etcd, but this node's data path could not apply it");
        }
        tracing::debug!(
            operation,
            commit_us = t_commit.as_micros() as u64,
            apply_us = (t0.elapsed() - t_commit).as_micros() as u64,
            "API change committed to etcd and applied"
        );
        Ok(Some(mutation.result))
    }

    /// Commits a mutation planned on the copy to etcd.
    pub(super) async fn cluster_commit(
        &mut self,
        changes: &[handlers::Change],
        token: Option<(&str, &serde_json::Value)>,
    ) -> Result<Commit, cluster::Error> {
        let Some(c) = self.cluster() else {
            return Ok(Commit::Stale);
        };
        let counter = |c: &ClusterState, out: &Result<Commit, cluster::Error>| {
            match out {
                Ok(Commit::Done(_)) => &c.gauges.committed,
                Ok(Commit::Stale) => &c.gauges.stale,
                Err(_) => &c.gauges.failed,
            }
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        };
        let out = c.etcd.commit(c.known, changes, token).await;
        counter(c, &out);
        let out = out?;
        // etcd answered: reads may ask it again at once.
        c.unreachable_since = None;
        if let Commit::Done(rev) = out {
            c.known = rev;
        }
        c.update_gauges();
        Ok(out)
    }

    /// Applies what the watch delivered.
    pub(super) async fn cluster_event(&mut self, ev: Event) {
        self.apply_cluster_event(ev).await;
        if let Some(c) = self.cluster() {
            c.update_gauges();
        }
    }

    async fn apply_cluster_event(&mut self, ev: Event) {
        match ev {
            Event::Connected(up) => {
                let Some(c) = self.cluster() else {
                    return;
                };
                c.connected = up;
                if !up {
                    return;
                }
                c.unreachable_since = None;
                if std::mem::take(&mut c.stale_nodes) {
                    let etcd = c.etcd.clone();
                    match etcd.snapshot().await {
                        Ok(s) => self.resync(s).await,
                        Err(e) => {
                            tracing::warn!("reading the state after starting from the copy: {e}");
                            if let Some(c) = self.cluster() {
                                c.stale_nodes = true;
                            }
                        }
                    }
                }
            }
            Event::Resync(s) => self.resync(s).await,
            Event::Changes(items) => self.cluster_changes(items).await,
        }
    }

    async fn cluster_changes(&mut self, items: Vec<Item>) {
        let Some(c) = self.cluster() else {
            return;
        };
        let known = c.known;
        let mut changes = Vec::new();
        let mut newest = known;
        let (mut creds, mut principals, mut nodes) = (false, false, false);
        for item in items {
            match item.key {
                // Already applied: this node's own commits, and what a
                // catch-up applied before.
                Key::Resource(_) | Key::Rev if item.revision <= known => {}
                Key::Rev => newest = newest.max(item.revision),
                Key::Resource(k) => match item.value {
                    None => changes.push(store::Change::Delete(k)),
                    Some(v) => match serde_json::from_slice(&v)
                        .map_err(|e| e.to_string())
                        .and_then(|v| {
                            Record::from_stored(&k, v)
                                .map_err(|e| format!("{}: {}", e.field, e.reason))
                        }) {
                        Ok(r) => changes.push(store::Change::Put(k, r)),
                        Err(e) => tracing::error!(key = %k, "ignoring a record from etcd: {e}"),
                    },
                },
                Key::Credential(k) => {
                    creds = true;
                    self.credential_changed(k, item.value);
                }
                Key::Principals => {
                    principals = true;
                    if let Some(c) = self.cluster() {
                        c.set_document("principals", item.value);
                    }
                }
                Key::Accounts => {
                    creds = true;
                    if let Some(c) = self.cluster() {
                        c.set_document("accounts", item.value);
                    }
                }
                Key::Node(n) => {
                    nodes = true;
                    if let Some(c) = self.cluster() {
                        match item.value.and_then(|v| cluster::node_record(&n, &v)) {
                            Some(r) => {
                                c.nodes.insert(n, r);
                            }
                            None => {
                                tracing::info!(node = %n, "node left the cluster");
                                c.nodes.remove(&n);
                            }
                        }
                    }
                }
                Key::Other => {}
            }
        }
        if !changes.is_empty() {
            self.follow_changes(&changes).await;
        }
        if let Some(c) = self.cluster() {
            c.known = c.known.max(newest);
            if !changes.is_empty() {
                c.cache.send(CacheWrite::Changes(changes, c.known));
            }
            if nodes {
                c.report_conflicts();
            }
        }
        if nodes {
            self.claims_to_api();
            self.nodes_changed().await;
        }
        if creds {
            self.reload_accounts(true);
        }
        if principals {
            self.reload_principals(true);
        }
    }

    /// Another node's mutation: into the copy, re-planned and applied the
    /// way this node's own are. If this node cannot apply it (its kernel
    /// refuses), the state still follows etcd and the error is logged.
    async fn follow_changes(&mut self, changes: &[handlers::Change]) {
        let Some((_, planned)) = self.plan_changes(changes) else {
            return;
        };
        let (plan, delta) = match planned {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "a change from etcd does not plan here; the data path keeps its previous form for it");
                return;
            }
        };
        if let Err(e) = self.apply_delta(plan, Some(&delta)).await {
            tracing::error!(error = %e, "applying a change from etcd");
        }
    }

    /// The whole state again (the watch's revision was compacted).
    async fn resync(&mut self, s: Snapshot) {
        let cached = Box::new(s.clone());
        let Snapshot {
            rev,
            nodes,
            principals,
            accounts,
            credentials,
            revision,
            resources,
        } = s;
        let state = match handlers::State::from_records(resources) {
            Ok(st) => st,
            Err(e) => {
                tracing::error!(error = %e, "the state in etcd does not load; keeping the copy");
                return;
            }
        };
        let Some(api) = self.api.as_mut() else {
            return;
        };
        api.state = state;
        if let Backend::Cluster(c) = &mut api.backend {
            c.cache.send(CacheWrite::Replace(cached));
            c.known = rev;
            c.nodes = nodes;
            c.principals = principals;
            c.accounts = accounts;
        }
        api.own_keys = control::api::keys_of(credentials, &self.naming.account);
        self.claims_to_api();
        self.reload_accounts(true);
        self.reload_principals(true);
        self.nodes_changed().await;
        match self.current_plan() {
            Ok(plan) => {
                if let Err(e) = self.apply(plan).await {
                    tracing::error!(error = %e, "applying the state read from etcd");
                }
            }
            Err(e) => tracing::error!(error = %e, "the state read from etcd does not plan"),
        }
        tracing::info!(revision, "resynced with etcd");
    }

    fn credential_changed(&mut self, key: String, value: Option<Vec<u8>>) {
        let account = self.naming.account.clone();
        let Some(api) = self.api.as_mut() else {
            return;
        };
        let value = value.and_then(|v| serde_json::from_slice::<serde_json::Value>(&v).ok());
        if let Backend::Cluster(c) = &api.backend {
            c.cache
                .send(CacheWrite::Credential(key.clone(), value.clone()));
        }
        match value {
            Some(v) => {
                let k = control::api::keys_of(vec![(key, v)], &account);
                api.own_keys.extend(k);
            }
            None => {
                api.own_keys.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What a node wrote to its cache is what it starts from when etcd
    /// cannot be read: records, credentials, principals and the revision.
    #[test]
    fn the_cache_gives_back_what_was_written() {
        let dir = std::env::temp_dir().join(format!("latticed-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let record = |name: &str| {
            Record::from_stored(
                "sn-0123456789abcdef0",
                json!({"id": "sn-0123456789abcdef0", "name": name, "arn": "arn:aws:vpc-lattice:us-east-1:111122223333:servicenetwork/sn-0123456789abcdef0",
                       "authType": "NONE", "createdAt": "2026-12-06T00:00:00Z", "lastUpdatedAt": "2026-12-06T00:00:00Z", "_seq": 1}),
            )
            .unwrap()
        };
        {
            let (cache, loaded) = Cache::open(&dir).unwrap();
            assert!(loaded.is_none(), "a new cache holds nothing");
            cache.send(CacheWrite::Replace(Box::new(Snapshot {
                revision: 9,
                rev: 7,
                resources: vec![("old-1".into(), json!({"x": 1}))],
                credentials: vec![("AKIAOLD".into(), json!({"secret": "s"}))],
                principals: None,
                accounts: None,
                nodes: BTreeMap::new(),
            })));
            cache.send(CacheWrite::Changes(
                vec![
                    store::Change::Delete("old-1".into()),
                    store::Change::Put("sn-0123456789abcdef0".into(), record("net")),
                ],
                12,
            ));
            cache.send(CacheWrite::Credential(
                "AKIANEW".into(),
                Some(json!({"secret": "t"})),
            ));
            cache.send(CacheWrite::Credential("AKIAOLD".into(), None));
            cache.send(CacheWrite::Document(
                "principals",
                Some("{\"credentials\":[]}".into()),
            ));
        }
        let (_cache, loaded) = Cache::open(&dir).unwrap();
        let s = loaded.expect("the cache holds a state");
        assert_eq!((s.rev, s.revision), (12, 12));
        assert_eq!(s.resources.len(), 1);
        assert_eq!(s.resources[0].0, "sn-0123456789abcdef0");
        assert_eq!(s.resources[0].1["name"], "net");
        assert_eq!(
            s.credentials
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>(),
            ["AKIANEW"]
        );
        assert_eq!(s.principals.as_deref(), Some("{\"credentials\":[]}"));
        drop(_cache);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
