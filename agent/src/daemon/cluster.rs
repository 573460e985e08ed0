//! Cluster mode on the daemon's side: the node's copy of the state follows
//! etcd through a watch, reads catch up before they answer, and the node's
//! namespaces are published under its lease.
//!
//! The copy is what the data path runs on, so while etcd is unreachable the
//! node keeps serving with its last known state (static stability) and the
//! API answers reads from it; mutations fail fast (`commit` has a deadline).

// The daemon's types and imports: these methods extend `Daemon`.
use super::transaction::replan;
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

/// A cluster node's link to etcd.
pub(super) struct ClusterState {
    pub(super) etcd: Cluster,
    /// `rev`'s mod revision the node's state reflects: the last mutation
    /// applied here.
    pub(super) known: i64,
    pub(super) events: mpsc::Receiver<Event>,
    /// Whether the watch is up (else a read catches up by reading all).
    connected: bool,
    /// When asking etcd for the latest revision last failed: reads answer
    /// from the copy at once for a while rather than wait each time.
    unreachable_since: Option<std::time::Instant>,
    /// Registered nodes and the namespaces each hosts.
    nodes: BTreeMap<String, NodeRecord>,
    /// The cluster's principals document.
    pub(super) principals: Option<String>,
    /// This node's namespaces, as published.
    hosted: tokio::sync::watch::Sender<Vec<String>>,
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
    pub(super) async fn start(
        opts: &cluster::Options,
        netns_dir: &std::path::Path,
    ) -> Result<(Self, Snapshot), Error> {
        let etcd = Cluster::connect(opts).await?;
        let snapshot = etcd.snapshot().await?;
        let events = etcd.follow(snapshot.revision + 1);
        let (hosted, rx) = tokio::sync::watch::channel(namespaces_in(netns_dir));
        let registration = etcd.register(rx);
        tracing::info!(
            endpoints = etcd.endpoints(),
            node = etcd.node(),
            revision = snapshot.revision,
            records = snapshot.resources.len(),
            nodes = snapshot.nodes.len(),
            "cluster state loaded from etcd"
        );
        let state = Self {
            etcd,
            known: snapshot.rev,
            events,
            connected: true,
            unreachable_since: None,
            nodes: snapshot.nodes.clone(),
            principals: snapshot.principals.clone(),
            hosted,
            _registration: registration,
        };
        state.report_conflicts();
        Ok((state, snapshot))
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

    /// Namespace -> the nodes that host it.
    pub(super) fn claims(&self) -> BTreeMap<String, Vec<String>> {
        let mut claims = cluster::claims(&self.nodes);
        // This node's own, before its registration comes back by the watch.
        for ns in self.hosted.borrow().iter() {
            let owners = claims.entry(ns.clone()).or_default();
            if !owners.iter().any(|n| n == self.etcd.node()) {
                owners.push(self.etcd.node().to_owned());
            }
        }
        claims
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

    /// Publishes this node's namespaces when they changed.
    pub(super) fn publish_namespaces(&mut self) {
        let dir = self.paths.netns_dir.clone();
        let Some(c) = self.cluster() else {
            return;
        };
        let now = namespaces_in(&dir);
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

    /// Gives the API which nodes host which VPCs.
    fn claims_to_api(&mut self) {
        let Some(api) = self.api.as_mut() else {
            return;
        };
        if let Backend::Cluster(c) = &api.backend {
            api.settings.cluster_vpcs = Some(c.claims());
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
        let out = c.etcd.commit(c.known, changes, token).await?;
        if let Commit::Done(rev) = out {
            c.known = rev;
        }
        Ok(out)
    }

    /// Applies what the watch delivered.
    pub(super) async fn cluster_event(&mut self, ev: Event) {
        match ev {
            Event::Connected(up) => {
                if let Some(c) = self.cluster() {
                    c.connected = up;
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
                        c.principals = item.value.map(|v| String::from_utf8_lossy(&v).into_owned());
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
            if nodes {
                c.report_conflicts();
            }
        }
        if nodes {
            self.claims_to_api();
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
        let Some(api) = self.api.as_mut() else {
            return;
        };
        let undo = api.state.apply(changes);
        let affected = api.state.affected(changes, &undo);
        let mut plan = self.plan.clone();
        let delta = match replan(&api.state, &affected, &mut plan, &self.paths.netns_dir) {
            Ok(d) => d,
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
        let state = match handlers::State::from_records(s.resources) {
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
            c.known = s.rev;
            c.nodes = s.nodes;
            c.principals = s.principals;
        }
        api.own_keys = control::api::keys_of(s.credentials, &self.naming.account);
        self.claims_to_api();
        self.reload_accounts(true);
        self.reload_principals(true);
        match self.current_plan() {
            Ok(plan) => {
                if let Err(e) = self.apply(plan).await {
                    tracing::error!(error = %e, "applying the state read from etcd");
                }
            }
            Err(e) => tracing::error!(error = %e, "the state read from etcd does not plan"),
        }
        tracing::info!(revision = s.revision, "resynced with etcd");
    }

    fn credential_changed(&mut self, key: String, value: Option<Vec<u8>>) {
        let account = self.naming.account.clone();
        let Some(api) = self.api.as_mut() else {
            return;
        };
        match value.and_then(|v| serde_json::from_slice::<serde_json::Value>(&v).ok()) {
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
