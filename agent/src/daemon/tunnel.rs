//! Cluster mode's requests between nodes (see `latticed_proxy::tunnel`):
//! this node's tunnel server and identity, the peers it dials, the ids of
//! VPCs other nodes host, and the target health nodes share.
//!
//! A target group whose VPC another node hosts compiles like a local one,
//! with a namespace id marked `REMOTE`: its targets are resolved here
//! (instances and load balancers by the placements that node publishes),
//! chosen here, and connected to through that node's tunnel. Their health
//! is that node's checks' (published in its registration, under its lease):
//! when the node goes, its record goes, and its targets turn unhealthy
//! here; streams to it fail at once because it has no peer any more.

// The daemon's types and imports: these methods extend `Daemon`.
use super::*;
use crate::control::cluster::NodeRecord;
use latticed_proxy::{
    health::{Reason, Status},
    routing::{GroupKind, Target},
    tunnel::{identity::KEY_FILE, NodeIdentity, Peer, Server, Settings as PeerSettings},
    upstream::{Remote, Remotes, REMOTE},
};

/// How the tunnel listens (`run --tunnel-listen`, `--tunnel-advertise`).
#[derive(Clone, Debug)]
pub struct TunnelOptions {
    /// Address the tunnel server binds.
    pub listen: std::net::SocketAddr,
    /// Address other nodes dial; default: `listen`, or when that is a
    /// wildcard, this host's address toward the first etcd endpoint.
    pub advertise: Option<std::net::SocketAddr>,
}

/// This node's side of the tunnels.
#[derive(Default)]
pub(super) struct Tunnels {
    /// Whether this daemon is a cluster node (remote VPCs get ids).
    pub(super) active: bool,
    identity: Option<NodeIdentity>,
    server: Option<Arc<Server>>,
    /// Peers by node, made again when a node's address changes.
    peers: BTreeMap<String, Arc<Peer>>,
    /// Ids of VPCs other nodes host (stable for the daemon's life).
    remote_ids: BTreeMap<String, NsId>,
    /// The instances and load balancers each other node last published.
    placements: BTreeMap<String, BTreeMap<String, control::cluster::Placed>>,
    _accept: Option<latticed_proxy::ListenerHandle>,
}

impl Tunnels {
    /// For a cluster node (`cluster`: its tunnel options, name and etcd
    /// endpoints): loads its identity from STATE_DIR/cluster and starts the
    /// tunnel server; without an identity, no tunnel (logged). Returns the
    /// address to advertise. Off a cluster: nothing.
    pub(super) async fn start(
        dp: &Arc<Dataplane>,
        paths: &Paths,
        cluster: Option<(TunnelOptions, String, Vec<String>)>,
    ) -> Result<(Self, Option<std::net::SocketAddr>), Error> {
        let Some((opts, node, etcd)) = cluster else {
            return Ok((Self::default(), None));
        };
        let (opts, node, etcd) = (&opts, node.as_str(), etcd.as_slice());
        let dir = crate::cli::cluster::identity_dir(&paths.state_dir);
        let mut this = Self {
            active: true,
            ..Self::default()
        };
        if !dir.join(KEY_FILE).exists() {
            tracing::warn!(
                dir = %dir.display(),
                "no tunnel identity (run `latticed cluster join`): targets in VPCs of other nodes answer 503 from here, and other nodes cannot reach targets here"
            );
            return Ok((this, None));
        }
        let identity = NodeIdentity::load(&dir).map_err(|e| Error::Tunnel(e.to_string()))?;
        if identity.node != node {
            return Err(Error::Tunnel(format!(
                "{}: the certificate names node {}, but this is --node-name {node}",
                dir.display(),
                identity.node
            )));
        }
        let listeners = latticed_proxy::tunnel::server::bind(opts.listen, dp.worker_count())
            .map_err(|source| Error::Io {
                what: format!(
                    "binding the tunnel address {} (--tunnel-listen)",
                    opts.listen
                ),
                source,
            })?;
        let bound = listeners
            .first()
            .map(std::net::TcpListener::local_addr)
            .transpose()
            .map_err(|source| Error::Io {
                what: "reading the tunnel address".into(),
                source,
            })?
            .unwrap_or(opts.listen);
        let advertise = match opts.advertise {
            Some(a) => a,
            None if !bound.ip().is_unspecified() => bound,
            None => {
                let ip = source_toward(etcd).ok_or_else(|| {
                    Error::Tunnel(format!(
                        "--tunnel-listen {bound} is a wildcard and no address toward etcd was found: give --tunnel-advertise"
                    ))
                })?;
                std::net::SocketAddr::new(ip, bound.port())
            }
        };
        let server = Server::new(&identity, dp.connector(), Arc::clone(&dp.tunnel));
        this._accept = Some(dp.serve_tunnel(&server, listeners));
        tracing::info!(listen = %bound, %advertise, node, "tunnel listening");
        this.server = Some(server);
        this.identity = Some(identity);
        Ok((this, Some(advertise)))
    }

    /// Gives every VPC that target groups of `plan` name, and that is not
    /// one of `local`, an id.
    pub(super) fn assign_ids(&mut self, plan: &Plan, local: &BTreeMap<String, Managed>) {
        if !self.active {
            return;
        }
        for tg in plan.target_groups.values() {
            let vpc = tg.namespace.as_str();
            if vpc.is_empty() || local.contains_key(vpc) || self.remote_ids.contains_key(vpc) {
                continue;
            }
            let id = REMOTE | u32::try_from(self.remote_ids.len() + 1).unwrap_or(u32::MAX >> 1);
            self.remote_ids.insert(vpc.to_owned(), id);
        }
    }

    /// The remote VPCs' ids by name.
    pub(super) fn ids(&self) -> impl Iterator<Item = (&str, NsId)> {
        self.remote_ids.iter().map(|(n, id)| (n.as_str(), *id))
    }
}

/// The local address this host uses toward the first etcd endpoint that
/// resolves (a UDP socket's connect sends nothing).
fn source_toward(endpoints: &[String]) -> Option<std::net::IpAddr> {
    endpoints.iter().find_map(|e| {
        let hostport = e
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let addr = std::net::ToSocketAddrs::to_socket_addrs(hostport)
            .ok()?
            .next()?;
        let bind: std::net::SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let s = std::net::UdpSocket::bind(bind).ok()?;
        s.connect(addr).ok()?;
        let ip = s.local_addr().ok()?.ip();
        (!ip.is_unspecified()).then_some(ip)
    })
}

/// Every node's record and which nodes claim each VPC, read once for a
/// publication.
pub(super) struct View {
    nodes: BTreeMap<String, NodeRecord>,
    claims: BTreeMap<String, Vec<String>>,
}

impl View {
    /// The node hosting `vpc`, if exactly one does (a VPC two nodes claim
    /// is refused by the API and reached through neither).
    fn host(&self, vpc: &str) -> Option<&str> {
        match self.claims.get(vpc).map(Vec::as_slice) {
            Some([one]) => Some(one.as_str()),
            _ => None,
        }
    }
}

/// A target's health as a node shares it: `STATUS` or `STATUS REASON`.
fn shared(status: Status, reason: Reason) -> String {
    match reason.as_str() {
        Some(r) => format!("{} {r}", status.as_str()),
        None => status.as_str().to_owned(),
    }
}

fn parse_shared(s: &str) -> Option<(Status, Reason)> {
    let (status, reason) = match s.split_once(' ') {
        Some((st, r)) => (st, Some(r)),
        None => (s, None),
    };
    Some((Status::parse(status)?, Reason::parse(reason)?))
}

impl Daemon {
    /// The cluster as this node sees it now; `None` off a cluster.
    fn view(&self) -> Option<View> {
        if !self.tunnels.active {
            return None;
        }
        match self.api.as_ref().map(|a| &a.backend) {
            Some(Backend::Cluster(c)) => {
                let nodes = c.all_nodes();
                let claims = control::cluster::claims(&nodes);
                Some(View { nodes, claims })
            }
            _ => None,
        }
    }

    /// The groups in VPCs of this node: name, namespace id, targets.
    fn local_groups(&self) -> impl Iterator<Item = (&String, NsId, &[Target])> {
        self.compiled
            .groups
            .iter()
            .filter_map(|(name, route)| match &route.kind {
                GroupKind::Hosts { ns, targets, .. } if *ns != 0 && ns & REMOTE == 0 => {
                    Some((name, *ns, targets.as_slice()))
                }
                _ => None,
            })
    }

    /// Before a snapshot is compiled: ids for the remote VPCs `plan`
    /// names, and peers and places for them in the data path. Returns the
    /// view [`Daemon::after_publish`] takes.
    pub(super) fn before_publish(&mut self, plan: &Plan) -> Option<View> {
        self.tunnels.assign_ids(plan, &self.managed);
        let view = self.view()?;
        self.publish_remotes(&view);
        Some(view)
    }

    /// Peers for every other node with a tunnel address, and the remote
    /// VPCs' places, into the data path (before a snapshot naming them).
    fn publish_remotes(&mut self, view: &View) {
        let nodes = &view.nodes;
        let me = self.cluster_node().unwrap_or_default();
        let t = &mut self.tunnels;
        t.peers.retain(|n, p| {
            nodes
                .get(n)
                .and_then(|r| r.tunnel)
                .is_some_and(|a| a == p.addr())
        });
        if let Some(identity) = &t.identity {
            for (name, record) in nodes {
                let Some(addr) = record.tunnel else { continue };
                if *name == me || t.peers.contains_key(name) {
                    continue;
                }
                match Peer::new(name, addr, identity, PeerSettings::default()) {
                    Ok(p) => {
                        t.peers.insert(name.clone(), p);
                    }
                    Err(e) => tracing::warn!(node = %name, error = %e, "cannot dial this node"),
                }
            }
        }
        let remotes: Remotes = t
            .remote_ids
            .iter()
            .map(|(vpc, id)| {
                let node = view.host(vpc).unwrap_or_default();
                let peer = t.peers.get(node).cloned();
                let remote = Remote {
                    vpc: vpc.as_str().into(),
                    node: node.into(),
                    peer,
                };
                (*id, remote)
            })
            .collect();
        self.dp.publish_remotes(remotes);
    }

    /// After a snapshot is published: what the tunnel server may reach
    /// (the targets of the groups in VPCs here), and the remote targets'
    /// health.
    pub(super) fn after_publish(&self, plan: &Plan, view: Option<&View>) {
        if let Some(server) = &self.tunnels.server {
            let mut hosted = latticed_proxy::tunnel::Hosted::default();
            for (name, ns, targets) in self.local_groups() {
                let Some(tg) = plan.target_groups.get(name.as_str()) else {
                    continue;
                };
                let entry = hosted
                    .entry(tg.namespace.as_str().into())
                    .or_insert_with(|| (ns, Default::default()));
                entry.1.extend(targets.iter().map(|t| t.addr));
            }
            server.set_hosted(hosted);
        }
        if let Some(view) = view {
            self.refresh_remote_health(plan, view);
        }
    }

    /// Sets each remote target's health from its node's record: what the
    /// node's checks say; unhealthy when no node hosts its VPC (the node
    /// died or left); initial while the node has not said yet.
    /// `plan` is the one just published (`self.plan` may still be the
    /// one it replaces).
    fn refresh_remote_health(&self, plan: &Plan, view: &View) {
        let mut all = self
            .compiler
            .remote_health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Targets no snapshot holds any more.
        all.retain(|_, h| Arc::strong_count(h) > 1);
        for ((group, addr), health) in all.iter() {
            let vpc = plan
                .target_groups
                .get(group.as_str())
                .map(|tg| tg.namespace.as_str());
            let record = vpc
                .and_then(|v| view.host(v))
                .and_then(|node| view.nodes.get(node));
            let (status, reason) = match record {
                None => (Status::Unhealthy, Reason::ConnectionFailed),
                Some(r) => r
                    .health
                    .get(group)
                    .and_then(|g| g.get(&addr.to_string()))
                    .and_then(|s| parse_shared(s))
                    .unwrap_or((Status::Initial, Reason::InitialHealthChecking)),
            };
            health.set_with(status, reason);
        }
    }

    /// This node's record as it should be published now: its namespaces,
    /// their owners and placements by its inventory, its tunnel address,
    /// and its targets' health.
    pub(super) fn node_record(&self, tunnel: Option<std::net::SocketAddr>) -> NodeRecord {
        let namespaces = cluster::namespaces_in(&self.paths.netns_dir);
        let inventory = &self.compiler.inventory;
        let owners = inventory
            .vpcs
            .iter()
            .filter(|(vpc, _)| namespaces.contains(vpc))
            .map(|(v, a)| (v.clone(), a.clone()))
            .collect();
        let placements = inventory
            .instances
            .iter()
            .chain(&inventory.load_balancers)
            .filter(|(_, p)| namespaces.contains(&p.vpc))
            .map(|(id, p)| {
                let placed = control::cluster::Placed {
                    vpc: p.vpc.clone(),
                    address: p.address,
                };
                (id.clone(), placed)
            })
            .collect();
        let mut health: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        if self.tunnels.active {
            for (name, _, targets) in self.local_groups() {
                if targets.is_empty() {
                    continue;
                }
                let group = health.entry(name.clone()).or_default();
                for t in targets {
                    let h = shared(t.health.status(), t.health.reason());
                    group.insert(t.addr.to_string(), h);
                }
            }
        }
        NodeRecord {
            namespaces,
            owners,
            tunnel,
            placements,
            health,
        }
    }

    /// Another node's record changed (or one came or went): peers and
    /// remote places again, its targets' health, and, when the instances
    /// it places changed, the snapshot (targets resolve by them).
    ///
    /// A node that leaves keeps its placements here: its targets stay in
    /// the snapshot, unhealthy, rather than vanish from ListTargets.
    pub(super) async fn nodes_changed(&mut self) {
        let Some(view) = self.view() else {
            return;
        };
        let me = self.cluster_node().unwrap_or_default();
        for (name, record) in &view.nodes {
            if *name != me {
                self.tunnels
                    .placements
                    .insert(name.clone(), record.placements.clone());
            }
        }
        let placements: BTreeMap<String, crate::compile::Placement> = self
            .tunnels
            .placements
            .values()
            .flatten()
            .map(|(id, p)| {
                let placement = crate::compile::Placement {
                    vpc: p.vpc.clone(),
                    address: p.address,
                    security_groups: Vec::new(),
                };
                (id.clone(), placement)
            })
            .collect();
        if placements == self.compiler.remote_placements {
            self.publish_remotes(&view);
            self.refresh_remote_health(&self.plan, &view);
        } else {
            // Targets resolve by them: a new snapshot (which publishes the
            // peers and refreshes health itself).
            self.compiler.remote_placements = placements;
            let plan = std::mem::take(&mut self.plan);
            self.publish_full(&plan);
            self.plan = plan;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_health_round_trips() {
        for (s, r) in [
            (Status::Healthy, Reason::None),
            (Status::Unhealthy, Reason::Timeout),
            (Status::Initial, Reason::InitialHealthChecking),
            (Status::Unavailable, Reason::HealthCheckDisabled),
        ] {
            assert_eq!(parse_shared(&shared(s, r)), Some((s, r)));
        }
        assert_eq!(parse_shared("HEALTHY Target.Bogus"), None);
        assert_eq!(parse_shared("FINE"), None);
    }
}
