//! Map keys, values and constants shared by the eBPF programs (`ebpf/`) and the
//! agent (`agent/`). Defined once so both sides of every map agree on layout.
//!
//! The `user` feature implements `aya::Pod` for the agent; the eBPF side builds
//! this crate without features, as plain `no_std`.
#![no_std]

/// The link-local range service VIPs and SNAT sources live in: 169.254.171.0/24.
pub const LATTICE_NET: u32 = 0xA9FE_AB00;
/// Prefix length of [`LATTICE_NET`].
pub const LATTICE_PREFIX_LEN: u8 = 24;
/// Mask matching [`LATTICE_PREFIX_LEN`].
pub const LATTICE_MASK: u32 = 0xFFFF_FF00;

/// The IPv6 range service VIPs and sources live in: fd00:ec2:80::/64, as
/// in VPC Lattice. Each IPv4 address of the plan below has the IPv6 twin
/// with the same last byte ([`addresses::v6`]): a service at
/// 169.254.171.7 is also at fd00:ec2:80::7.
pub const LATTICE6_NET: [u8; 8] = [0xfd, 0x00, 0x0e, 0xc2, 0x00, 0x80, 0x00, 0x00];
/// Prefix length of [`LATTICE6_NET`].
pub const LATTICE6_PREFIX_LEN: u8 = 64;

/// What each address of [`LATTICE_NET`] is for, as host-order `u32`s
/// (`Ipv4Addr::from_bits` makes them addresses). Defined here once for the
/// eBPF program, the agent (VIP allocation, the resolver) and the proxy
/// (the source pool); the checks below fail the build if the ranges
/// overlap or leave the /24.
pub mod addresses {
    use super::{LATTICE_MASK, LATTICE_NET, LATTICE_PREFIX_LEN};

    /// First service VIP, 169.254.171.1.
    pub const VIP_FIRST: u32 = LATTICE_NET | 1;
    /// Last service VIP, 169.254.171.191; past 191 services VIPs are shared.
    pub const VIP_LAST: u32 = LATTICE_NET | 191;
    /// First source address the proxy connects to targets from.
    pub const SOURCE_FIRST: u32 = LATTICE_NET | 192;
    /// Last source address, 169.254.171.252.
    pub const SOURCE_LAST: u32 = LATTICE_NET | 252;
    /// Where each namespace's resolver answers, 169.254.171.253.
    pub const RESOLVER: u32 = LATTICE_NET | 253;
    /// The resolver's port, on UDP and TCP. The steering program lets TCP
    /// connections to it through to the resolver's own socket.
    pub const RESOLVER_PORT: u16 = 53;
    // 169.254.171.254 is unused, .0 and .255 are the network and broadcast
    // addresses.

    /// The IPv6 twin of IPv4 address `v4` (host order) of the plan: the
    /// same last byte in [`super::LATTICE6_NET`].
    pub const fn v6(v4: u32) -> [u8; 16] {
        let n = super::LATTICE6_NET;
        [
            n[0],
            n[1],
            n[2],
            n[3],
            n[4],
            n[5],
            n[6],
            n[7],
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            (v4 & !LATTICE_MASK) as u8,
        ]
    }

    /// The IPv4 address (host order) whose twin [`v6`] gives `octets`, if
    /// it is one.
    pub fn v4_of(octets: [u8; 16]) -> Option<u32> {
        let (net, host) = octets.split_at(8);
        (net == super::LATTICE6_NET && host[..7].iter().all(|b| *b == 0))
            .then(|| LATTICE_NET | u32::from(host[7]))
    }

    /// Inside the /24 and neither its network nor its broadcast address.
    const fn usable(a: u32) -> bool {
        a & LATTICE_MASK == LATTICE_NET && a != LATTICE_NET && a != LATTICE_NET | !LATTICE_MASK
    }

    const _: () = {
        assert!(LATTICE_PREFIX_LEN > 0 && LATTICE_PREFIX_LEN < 32);
        assert!(LATTICE_MASK == u32::MAX << (32 - LATTICE_PREFIX_LEN as u32));
        assert!(LATTICE_NET & !LATTICE_MASK == 0);
        assert!(usable(VIP_FIRST) && usable(VIP_LAST));
        assert!(usable(SOURCE_FIRST) && usable(SOURCE_LAST) && usable(RESOLVER));
        assert!(VIP_FIRST <= VIP_LAST && VIP_LAST < SOURCE_FIRST && SOURCE_FIRST <= SOURCE_LAST);
        assert!(RESOLVER > SOURCE_LAST || RESOLVER < SOURCE_FIRST);
        assert!(RESOLVER > VIP_LAST || RESOLVER < VIP_FIRST);
        // The twins keep the plan's order: one byte of host part each.
        assert!(32 - LATTICE_PREFIX_LEN as u32 <= 8);
        assert!(super::LATTICE6_PREFIX_LEN == 64);
    };
}

/// An address as `bpf_sk_lookup.local_ip6` and `remote_ip6` hold it: four
/// `u32` whose bytes are the address in network order. IPv4 addresses are
/// IPv4-mapped (`::ffff:a.b.c.d`), so one map serves both families.
pub type Addr = [u32; 4];

/// The IPv4-mapped form of an IPv4 address given in network byte order (as
/// `bpf_sk_lookup.local_ip4` and `remote_ip4` hold it).
#[inline(always)]
pub const fn mapped_v4(addr_be: u32) -> Addr {
    [0, 0, u32::from_ne_bytes([0, 0, 0xff, 0xff]), addr_be]
}

/// An IPv6 address from its octets.
#[inline(always)]
pub const fn from_octets(o: [u8; 16]) -> Addr {
    [
        u32::from_ne_bytes([o[0], o[1], o[2], o[3]]),
        u32::from_ne_bytes([o[4], o[5], o[6], o[7]]),
        u32::from_ne_bytes([o[8], o[9], o[10], o[11]]),
        u32::from_ne_bytes([o[12], o[13], o[14], o[15]]),
    ]
}

/// The octets of an [`Addr`].
pub const fn octets(a: Addr) -> [u8; 16] {
    let w = [
        a[0].to_ne_bytes(),
        a[1].to_ne_bytes(),
        a[2].to_ne_bytes(),
        a[3].to_ne_bytes(),
    ];
    [
        w[0][0], w[0][1], w[0][2], w[0][3], w[1][0], w[1][1], w[1][2], w[1][3], w[2][0], w[2][1],
        w[2][2], w[2][3], w[3][0], w[3][1], w[3][2], w[3][3],
    ]
}

/// Key of the `STEER_VIPS` map: a service VIP (either family) and a
/// listener port, in the byte orders the kernel's `struct bpf_sk_lookup`
/// uses so the program compares without conversions.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VipPort {
    /// The VIP, IPv4 mapped.
    pub addr: Addr,
    /// TCP port in host byte order (as `bpf_sk_lookup.local_port`).
    pub port: u32,
}

impl VipPort {
    /// An IPv4 VIP given as a host-order `u32` (as `u32::from(Ipv4Addr)`
    /// gives) and a port.
    pub const fn v4(addr_host: u32, port: u16) -> Self {
        Self {
            addr: mapped_v4(addr_host.to_be()),
            port: port as u32,
        }
    }

    /// An IPv6 VIP given by its octets and a port.
    pub const fn v6(octets: [u8; 16], port: u16) -> Self {
        Self {
            addr: from_octets(octets),
            port: port as u32,
        }
    }
}

/// Value of the `STEER_VIPS` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VipEntry {
    /// Listener slots in use in `STEER_LISTENER`.
    pub listeners: u32,
    /// Who may connect: [`ADMIT_ALL`], or the admission policy whose
    /// entries in `STEER_SG_RULES` list the allowed sources (the security
    /// groups of the VPC associations that reach this VIP:port).
    pub policy: u32,
}

/// [`VipEntry::policy`] of a VIP:port every client may reach (no
/// security groups on the associations that reach it).
pub const ADMIT_ALL: u32 = 0;

/// Data of a `STEER_SG_RULES` key (an LPM trie): an admission policy, a
/// destination port and a source address. An entry allows the sources in
/// its prefix; the program looks up `(policy, port, client address)` with
/// every bit significant, so a connection is admitted when any rule covers
/// it. IPv4 addresses are IPv4-mapped (`::ffff:a.b.c.d`), so one trie holds
/// both families' rules.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SgMatch {
    /// [`VipEntry::policy`] (never [`ADMIT_ALL`]).
    pub policy: u32,
    /// Destination port, host byte order (as `bpf_sk_lookup.local_port`).
    pub port: u32,
    /// Source address, IPv4 mapped.
    pub addr: Addr,
}

/// Bits of [`SgMatch`] before the address: an entry's prefix length is
/// this plus its address prefix (IPv4 prefixes plus 96, being mapped).
pub const SG_MATCH_FIXED_BITS: u32 = 64;

/// Entries `STEER_SG_RULES` holds per namespace: every rule times every
/// listener port it opens.
pub const MAX_SG_ENTRIES: u32 = 262_144;

/// [`SgMatch::port`] of a rule that admits every port: the program looks
/// a connection up with its port, then with this, so a rule covering all
/// ports costs one entry whatever the ports steered (resource port ranges
/// run to 65,535 ports). No TCP connection has destination port 0.
pub const ANY_PORT: u32 = 0;

/// Port ranges one resource VIP holds at most (the API's limit on a
/// resource configuration's `portRanges`).
pub const MAX_PORT_RANGES: usize = 100;

/// Key of the `STEER_RANGES` map: a resource VIP (either family).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VipAddr {
    /// The VIP, IPv4 mapped.
    pub addr: Addr,
}

/// One inclusive range of TCP ports, host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port.
    pub low: u16,
    /// Last port.
    pub high: u16,
}

/// Value of the `STEER_RANGES` map: a resource's VIP is steered on every
/// port of its ranges, looked up by the VIP alone after an exact
/// `STEER_VIPS` miss and scanned in a bounded loop, so `1-65535` costs one
/// entry and one comparison.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RangeEntry {
    /// As [`VipEntry::listeners`].
    pub listeners: u32,
    /// As [`VipEntry::policy`].
    pub policy: u32,
    /// Ranges in use at the front of `ranges` (for readers such as
    /// `bpftool`; the program compares every slot).
    pub count: u32,
    /// The ranges; those past `count` are (0, 0), which no connection's
    /// port matches.
    pub ranges: [PortRange; MAX_PORT_RANGES],
}

/// Slots of the `STEER_LISTENER` sockmap: one listening socket per data-path
/// worker thread, at most this many. `STEER_VIPS` values hold how many are
/// in use; the program picks `cpu % count`, so a connection is accepted by
/// the worker pinned to the CPU that handled its SYN.
pub const MAX_LISTENERS: u32 = 64;

/// Indices of the per-CPU `STEER_STATS` counters (one set per namespace).
pub mod stats {
    /// Connections to a configured VIP:port handed to the proxy.
    pub const STEERED: u32 = 0;
    /// Connections to an unconfigured VIP:port in the range, refused.
    pub const REFUSED: u32 = 1;
    /// Configured VIP:port but no listener socket in the sockmap: refused.
    pub const NO_LISTENER: u32 = 2;
    /// Configured VIP:port, but no security group of the VPC association
    /// allows the client's address and the port: refused.
    pub const SG_REFUSED: u32 = 3;
    /// Number of counters.
    pub const COUNT: u32 = 4;
}

/// Map and program names as they appear in the object and in `bpftool`
/// (kernel object names are limited to 15 characters).
pub mod names {
    /// The sk_lookup program.
    pub const PROGRAM: &str = "steer_to_proxy";
    /// Hash map VipPort -> number of listener slots in use.
    pub const VIPS: &str = "STEER_VIPS";
    /// Sockmap holding the proxy's listening sockets, one per worker.
    pub const LISTENER: &str = "STEER_LISTENER";
    /// Per-CPU counters.
    pub const STATS: &str = "STEER_STATS";
    /// LPM trie of the sources security groups allow, per policy and port.
    pub const SG_RULES: &str = "STEER_SG_RULES";
    /// Hash map resource VIP -> its port ranges.
    pub const RANGES: &str = "STEER_RANGES";
}

#[cfg(feature = "user")]
// SAFETY: VipPort is repr(C), made of five u32 with no padding, and valid
// for every bit pattern.
unsafe impl aya::Pod for VipPort {}

#[cfg(feature = "user")]
// SAFETY: repr(C), two u32 with no padding, valid for every bit pattern.
unsafe impl aya::Pod for VipEntry {}

#[cfg(feature = "user")]
// SAFETY: repr(C), six u32 with no padding, valid for every bit pattern.
unsafe impl aya::Pod for SgMatch {}

#[cfg(feature = "user")]
// SAFETY: repr(C), four u32 with no padding, valid for every bit pattern.
unsafe impl aya::Pod for VipAddr {}

#[cfg(feature = "user")]
// SAFETY: repr(C), three u32 then 100 pairs of u16 (4-byte aligned, 412
// bytes) with no padding, valid for every bit pattern.
unsafe impl aya::Pod for RangeEntry {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_matches_kernel_byte_orders() {
        // 169.254.171.5:8080 as the kernel presents it to the program.
        let key = VipPort::v4(0xA9FE_AB05, 8080);
        assert_eq!(key.addr[3].to_ne_bytes(), [169, 254, 171, 5]);
        assert_eq!(
            octets(key.addr),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 169, 254, 171, 5]
        );
        assert_eq!(key.port, 8080);
        assert_eq!(core::mem::size_of::<VipPort>(), 20);
        let v6 = addresses::v6(addresses::VIP_FIRST);
        assert_eq!(octets(VipPort::v6(v6, 80).addr), v6);
        assert_eq!(addresses::v4_of(v6), Some(addresses::VIP_FIRST));
        let mut other = v6;
        other[9] = 1;
        assert_eq!(addresses::v4_of(other), None);
    }

    #[test]
    fn sg_keys_map_ipv4_as_the_kernel_presents_it() {
        // 10.1.2.3 as bpf_sk_lookup.remote_ip4 holds it.
        let be = u32::from_ne_bytes([10, 1, 2, 3]);
        assert_eq!(
            octets(mapped_v4(be)),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3]
        );
        assert_eq!(core::mem::size_of::<SgMatch>(), 24);
        assert_eq!(SG_MATCH_FIXED_BITS as usize, 8 * 8);
    }

    #[test]
    fn range_entries_have_no_padding() {
        assert_eq!(core::mem::size_of::<RangeEntry>(), 12 + 4 * MAX_PORT_RANGES);
        assert_eq!(core::mem::size_of::<VipAddr>(), 16);
    }

    #[test]
    fn range_constants_agree() {
        assert_eq!(LATTICE_MASK, u32::MAX << (32 - LATTICE_PREFIX_LEN));
        assert_eq!(LATTICE_NET & !LATTICE_MASK, 0);
    }
}
