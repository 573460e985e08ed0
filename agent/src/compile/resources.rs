//! Resources into the data path's routes: per client namespace, each
//! reachable resource's VIP with its ports, its gateway's VPC and its
//! target (an address, a name asked of the gateway VPC's resolver, or an
//! ARN the inventory places), its logs and its counters.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use latticed_proxy::{
    routing::{
        DnsTarget, Resolve, Resolved, ResourceKey, ResourceRoute, ResourceRoutes, ResourceTarget,
    },
    Dataplane, NsId,
};

use super::Compiler;
use crate::control::{plan, Plan};

/// How long a DNS resource's lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

impl Compiler {
    /// The routes of every resource of `plan` from each client namespace
    /// in `ids` that reaches it.
    pub fn resource_routes(&self, plan: &Plan, ids: &HashMap<&str, NsId>) -> ResourceRoutes {
        let mut out = ResourceRoutes::default();
        for r in plan.resources.values() {
            let arn = self.arn("resourceconfiguration", &r.name, r.arn.as_ref());
            let gateway_ns = ids.get(r.gateway_ns.as_str()).copied();
            let target = self.resource_target(r, gateway_ns);
            let logs = self.destinations(&r.logs);
            let metrics = self.dp.metrics.resource(&r.name);
            for (ns, reach) in &r.reachable_from {
                let Some(&id) = ids.get(ns.as_str()) else {
                    continue;
                };
                let route = ResourceRoute {
                    name: r.name.as_str().into(),
                    arn: arn.as_ref().into(),
                    ports: r.ports.clone().into_boxed_slice(),
                    gateway_ns,
                    target: target.clone(),
                    network: self.network_route(&reach.network, ns),
                    association: reach.association.as_deref().unwrap_or("-").into(),
                    logs: logs.clone(),
                    metrics: Arc::clone(&metrics),
                };
                out.insert(ResourceKey { ns: id, vip: r.vip }, Arc::new(route));
            }
        }
        out
    }

    /// Where `r`'s connections go. An ARN the inventory does not place in
    /// the gateway's VPC is refused (and logged), as an unplaced instance
    /// target is.
    fn resource_target(&self, r: &plan::PlannedResource, gateway: Option<NsId>) -> ResourceTarget {
        match &r.target {
            plan::ResourceTarget::Ip(ip) => ResourceTarget::Ip(*ip),
            plan::ResourceTarget::Dns { name, family } => {
                let resolver = GatewayResolver {
                    dp: Arc::clone(&self.dp),
                    ns: gateway,
                    name: name.clone(),
                    family: *family,
                };
                ResourceTarget::Dns(Arc::new(DnsTarget::new(name, Box::new(resolver))))
            }
            plan::ResourceTarget::Arn(arn) => match self.inventory.resources.get(arn) {
                Some(p) if p.vpc == r.gateway_ns => ResourceTarget::Ip(p.address),
                Some(p) => {
                    let why = format!(
                        "the inventory places {arn} in VPC {}, not in the gateway's VPC {}",
                        p.vpc, r.gateway_ns
                    );
                    tracing::warn!(resource_configuration = %r.name, "{why}");
                    ResourceTarget::Unplaced(why.into())
                }
                None => {
                    let why = format!("the inventory does not place {arn}");
                    tracing::warn!(resource_configuration = %r.name, "{why}; its connections are refused");
                    ResourceTarget::Unplaced(why.into())
                }
            },
        }
    }
}

/// Asks a DNS resource's name of the resolver its gateway's VPC uses
/// (`/etc/netns/VPC/resolv.conf`, as `ip netns exec` gives processes
/// there, else the host's), from a socket made inside that VPC.
#[derive(Debug)]
struct GatewayResolver {
    dp: Arc<Dataplane>,
    ns: Option<NsId>,
    name: String,
    family: plan::Family,
}

impl GatewayResolver {
    async fn lookup(&self) -> Result<(Vec<IpAddr>, Duration), String> {
        let netns = self
            .ns
            .and_then(|id| self.dp.namespace(id))
            .ok_or("the resource gateway's VPC is not available")?;
        let conf = std::path::Path::new("/etc/netns")
            .join(netns.name())
            .join("resolv.conf");
        let text = std::fs::read_to_string(&conf)
            .or_else(|_| std::fs::read_to_string("/etc/resolv.conf"))
            .map_err(|e| format!("reading the VPC's resolv.conf: {e}"))?;
        // The first nameserver, latticed's own included: where latticed
        // serves the VPC as a client, its resolver there forwards other
        // names to the VPC's own.
        let server: SocketAddr = crate::dns::all_nameservers(&text)
            .next()
            .ok_or_else(|| format!("no nameserver for VPC {}", netns.name()))?;
        let socket = netns
            .enter(|| {
                let s = std::net::UdpSocket::bind(crate::lookup::local_for(server))?;
                s.set_nonblocking(true)?;
                Ok::<_, std::io::Error>(s)
            })
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("a socket in VPC {}: {e}", netns.name()))?;
        let socket = tokio::net::UdpSocket::from_std(socket).map_err(|e| e.to_string())?;
        let ask = |v6| crate::lookup::addresses(&socket, server, &self.name, v6, LOOKUP_TIMEOUT);
        let found = match self.family {
            plan::Family::Ipv4 => ask(false).await,
            plan::Family::Ipv6 => ask(true).await,
            plan::Family::Dualstack => match ask(false).await {
                Err(crate::lookup::Error::NoAddress(_)) => ask(true).await,
                other => other,
            },
        };
        found.map_err(|e| e.to_string())
    }
}

impl Resolve for GatewayResolver {
    fn resolve(&self) -> Resolved<'_> {
        Box::pin(self.lookup())
    }
}
