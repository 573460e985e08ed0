//! Resource traffic: a TCP connection to a resource configuration's VIP, on
//! a port of its ranges, is carried to the same port of the resource from
//! inside the gateway's VPC, from a source address of the pool, and the
//! bytes are spliced both ways. The resource is an address, a name
//! resolved in the gateway's VPC when the connection comes (kept for the
//! answer's TTL; open connections never move), or an ARN the inventory
//! placed. One access-log line per connection, with Lattice's resource
//! fields.

use std::{
    net::{SocketAddr, SocketAddrV4},
    sync::{atomic::Ordering, Arc},
    time::SystemTime,
};

use tokio::net::TcpStream;

use crate::{
    access_log::ResourceRecord,
    routing::{ResourceRoute, ResourceTarget},
    Dataplane,
};

/// Serves one connection to `route`'s VIP at `local`.
pub(crate) async fn serve(
    dp: &Arc<Dataplane>,
    route: Arc<ResourceRoute>,
    local: SocketAddrV4,
    client: TcpStream,
    peer: SocketAddr,
) {
    let started_at = SystemTime::now();
    let metrics = &route.metrics;
    let upstream = match connect(dp, &route, local.port()).await {
        Ok(s) => s,
        Err(e) => {
            metrics.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(resource_configuration = %route.name, client = %peer, error = %e, "resource connection refused");
            // Dropped: the client sees the connection close.
            return;
        }
    };
    metrics.connected.fetch_add(1, Ordering::Relaxed);
    let (gateway, resource) = match (upstream.local_addr(), upstream.peer_addr()) {
        (Ok(g), Ok(r)) => (g.to_string(), r.to_string()),
        _ => ("-".to_owned(), "-".to_owned()),
    };
    let mut upstream = upstream;
    metrics.active.fetch_add(1, Ordering::Relaxed);
    let (up, down) =
        crate::passthrough::splice(client, &mut upstream, dp.config.resource_idle_timeout).await;
    metrics.active.fetch_sub(1, Ordering::Relaxed);
    metrics.bytes_in.fetch_add(up, Ordering::Relaxed);
    metrics.bytes_out.fetch_add(down, Ordering::Relaxed);
    let record = ResourceRecord {
        event_timestamp: crate::time::iso8601(started_at),
        service_network_arn: &route.network.arn,
        service_network_resource_association_id: &route.association,
        vpc_endpoint_id: "-",
        source_vpc_arn: &route.network.vpc_arn,
        resource_configuration_arn: &route.arn,
        protocol: "tcp",
        source_ip_port: peer.to_string(),
        destination_ip_port: local.to_string(),
        gateway_ip_port: gateway,
        resource_ip_port: resource,
    };
    dp.access_log
        .log(&[&route.logs, &route.network.resource_logs], &record);
}

/// Why a connection could not be carried.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The port is outside the ranges (the kernel steers only the ranges;
    /// this holds while a new snapshot and the maps disagree).
    #[error("port {0} is not in the resource's port ranges")]
    Port(u16),
    /// The gateway's VPC is not managed now.
    #[error("the resource gateway's VPC is not available")]
    NoGateway,
    /// The resource has no address.
    #[error("{0}")]
    NoAddress(String),
    /// Connecting failed.
    #[error(transparent)]
    Connect(#[from] crate::upstream::Error),
}

/// A connection to the resource on `port`, from the gateway's VPC.
async fn connect(dp: &Dataplane, route: &ResourceRoute, port: u16) -> Result<TcpStream, Error> {
    if !route.serves(port) {
        return Err(Error::Port(port));
    }
    let ns = route.gateway_ns.ok_or(Error::NoGateway)?;
    let ip = match &route.target {
        ResourceTarget::Ip(ip) => *ip,
        ResourceTarget::Dns(dns) => {
            // Bounded: a resolver that never answers must not hold the
            // client's connection open.
            let wait = dp.config.connect_timeout;
            match tokio::time::timeout(wait, dns.address()).await {
                Ok(r) => r.map_err(Error::NoAddress)?,
                Err(_) => {
                    return Err(Error::NoAddress(format!(
                        "no answer for {} within {wait:?}",
                        dns.name
                    )))
                }
            }
        }
        ResourceTarget::Unplaced(why) => return Err(Error::NoAddress(why.to_string())),
    };
    // Gateways are VPCs of this node: a resource's connection never
    // crosses to another (see docs/architecture.md, Cluster mode).
    Ok(dp
        .connector
        .connect_local(ns, SocketAddr::new(ip, port))
        .await?)
}
