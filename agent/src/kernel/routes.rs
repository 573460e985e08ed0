//! Routes over rtnetlink, one netlink socket per namespace.
//!
//! A netlink socket talks to the namespace it was created in, so each
//! namespace gets its own connection, opened while the thread is inside it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use latticed_common::{
    LATTICE6_NET, LATTICE6_PREFIX_LEN, LATTICE_MASK, LATTICE_NET, LATTICE_PREFIX_LEN,
};
use latticed_proxy::NetNs;
use netlink_packet_route::{
    address::{AddressAttribute, AddressScope},
    link::LinkFlags,
    route::{RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType},
};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

/// Route protocol number latticed tags its routes with (171, as in
/// 169.254.171.0/24). `scripts/install.sh` names it in iproute2's
/// rt_protos.d so `ip route` prints `proto latticed`.
pub const RTPROT_LATTICED: u8 = 171;

/// The kernel's `local` routing table (RT_TABLE_LOCAL).
const RT_TABLE_LOCAL: u32 = 255;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Entering the namespace failed.
    #[error(transparent)]
    Netns(#[from] latticed_proxy::netns::Error),
    /// Opening the netlink socket failed.
    #[error("opening a netlink socket in namespace {namespace:?}: {source}")]
    Socket {
        /// Namespace.
        namespace: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A netlink request failed.
    #[error("{what} in namespace {namespace:?}: {source}")]
    Request {
        /// What was attempted.
        what: &'static str,
        /// Namespace.
        namespace: String,
        /// Cause.
        #[source]
        source: rtnetlink::Error,
    },
    /// The namespace has no loopback device.
    #[error("namespace {0:?} has no lo device")]
    NoLoopback(String),
}

/// A netlink connection into one namespace.
#[derive(Debug)]
pub struct NsRoutes {
    namespace: String,
    handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NsRoutes {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NsRoutes {
    /// Opens a netlink connection inside `ns`. Must run inside the tokio runtime.
    pub fn connect(ns: &NetNs) -> Result<Self, Error> {
        let (conn, handle, _) =
            ns.enter(rtnetlink::new_connection)?
                .map_err(|source| Error::Socket {
                    namespace: ns.name().to_owned(),
                    source,
                })?;
        Ok(Self {
            namespace: ns.name().to_owned(),
            handle,
            task: tokio::spawn(conn),
        })
    }

    fn err(&self, what: &'static str) -> impl FnOnce(rtnetlink::Error) -> Error + '_ {
        move |source| Error::Request {
            what,
            namespace: self.namespace.clone(),
            source,
        }
    }

    /// Sets `lo` up if it is down (a fresh `ip netns add` namespace has it
    /// down, and local routes on a down device deliver nothing). Returns its
    /// index and whether it was brought up.
    pub async fn ensure_lo_up(&self) -> Result<(u32, bool), Error> {
        let link = self
            .handle
            .link()
            .get()
            .match_name("lo".to_owned())
            .execute()
            .try_next()
            .await
            .map_err(self.err("looking up lo"))?
            .ok_or_else(|| Error::NoLoopback(self.namespace.clone()))?;
        let index = link.header.index;
        if link.header.flags.contains(LinkFlags::Up) {
            return Ok((index, false));
        }
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(self.err("setting lo up"))?;
        Ok((index, true))
    }

    /// The namespace's universe-scope addresses.
    async fn addresses(&self) -> Result<Vec<IpAddr>, Error> {
        let addrs: Vec<_> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(self.err("listing addresses"))?;
        Ok(addrs
            .iter()
            .filter(|a| a.header.scope == AddressScope::Universe)
            .flat_map(|a| a.attributes.iter())
            .filter_map(|attr| match attr {
                AddressAttribute::Local(ip) | AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
            .collect())
    }

    /// The namespace's own address clients should appear as: the first
    /// universe-scope IPv4 address outside 127/8 and 169.254.171.0/24.
    pub async fn primary_address(&self) -> Result<Option<Ipv4Addr>, Error> {
        Ok(self.addresses().await?.into_iter().find_map(|ip| match ip {
            IpAddr::V4(v4) if !v4.is_loopback() && u32::from(v4) & LATTICE_MASK != LATTICE_NET => {
                Some(v4)
            }
            _ => None,
        }))
    }

    /// The same for IPv6: the first global address outside
    /// fd00:ec2:80::/64.
    pub async fn primary_address6(&self) -> Result<Option<Ipv6Addr>, Error> {
        Ok(self.addresses().await?.into_iter().find_map(|ip| match ip {
            IpAddr::V6(v6)
                if !v6.is_loopback()
                    && !v6.is_unicast_link_local()
                    && v6.octets()[..8] != LATTICE6_NET =>
            {
                Some(v6)
            }
            _ => None,
        }))
    }

    fn local_route(lo: u32, source: Option<Ipv4Addr>) -> RouteMessage {
        let builder = RouteMessageBuilder::<Ipv4Addr>::new();
        // Without a preferred source, a connection to a local route's address
        // takes that address as its source: clients would reach the proxy as
        // the VIP itself and X-Forwarded-For would say nothing.
        let builder = match source {
            Some(src) => builder.pref_source(src),
            None => builder,
        };
        Self::ours(
            builder.destination_prefix(Ipv4Addr::from(LATTICE_NET), LATTICE_PREFIX_LEN),
            lo,
        )
    }

    fn local_route6(lo: u32, source: Option<Ipv6Addr>) -> RouteMessage {
        let builder = RouteMessageBuilder::<Ipv6Addr>::new();
        // As for IPv4: clients appear as their own address.
        let builder = match source {
            Some(src) => builder.pref_source(src),
            None => builder,
        };
        let mut net = [0u8; 16];
        net[..8].copy_from_slice(&LATTICE6_NET);
        Self::ours(
            builder.destination_prefix(Ipv6Addr::from(net), LATTICE6_PREFIX_LEN),
            lo,
        )
    }

    /// A local route on `lo`, in the local table, tagged as latticed's.
    fn ours<T>(builder: RouteMessageBuilder<T>, lo: u32) -> RouteMessage {
        builder
            .output_interface(lo)
            .kind(RouteType::Local)
            .scope(RouteScope::Host)
            .protocol(RouteProtocol::Other(RTPROT_LATTICED))
            .table_id(RT_TABLE_LOCAL)
            .build()
    }

    /// Makes 169.254.171.0/24 local in the namespace: VIPs are then delivered
    /// locally (where sk_lookup picks them up) and SNAT source addresses can
    /// be bound without configuring 254 addresses.
    pub async fn add_local_route(&self, lo: u32, source: Option<Ipv4Addr>) -> Result<(), Error> {
        self.handle
            .route()
            .add(Self::local_route(lo, source))
            .replace()
            .execute()
            .await
            .map_err(self.err("adding the local 169.254.171.0/24 route"))
    }

    /// Makes fd00:ec2:80::/64 local in the namespace, as
    /// [`NsRoutes::add_local_route`] does for IPv4. Fails where IPv6 is
    /// disabled in the namespace.
    pub async fn add_local_route6(&self, lo: u32, source: Option<Ipv6Addr>) -> Result<(), Error> {
        self.handle
            .route()
            .add(Self::local_route6(lo, source))
            .replace()
            .execute()
            .await
            .map_err(self.err("adding the local fd00:ec2:80::/64 route"))
    }

    /// Deletes every route tagged [`RTPROT_LATTICED`]; returns how many.
    pub async fn remove_our_routes(&self) -> Result<usize, Error> {
        let mut v4 = RouteMessageBuilder::<Ipv4Addr>::new().build();
        v4.header.table = RouteHeader::RT_TABLE_UNSPEC;
        let mut v6 = RouteMessageBuilder::<Ipv6Addr>::new().build();
        v6.header.table = RouteHeader::RT_TABLE_UNSPEC;
        let mut n = 0;
        for filter in [v4, v6] {
            n += self.remove_ours(filter).await?;
        }
        Ok(n)
    }

    async fn remove_ours(&self, filter: RouteMessage) -> Result<usize, Error> {
        let routes: Vec<RouteMessage> = self
            .handle
            .route()
            .get(filter)
            .execute()
            .try_filter(|r| {
                futures::future::ready(r.header.protocol == RouteProtocol::Other(RTPROT_LATTICED))
            })
            .try_collect()
            .await
            .map_err(self.err("listing routes"))?;
        let n = routes.len();
        for r in routes {
            self.handle
                .route()
                .del(r)
                .execute()
                .await
                .map_err(self.err("deleting a latticed route"))?;
        }
        Ok(n)
    }
}
