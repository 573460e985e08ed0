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
    };
}

/// Key of the `STEER_VIPS` map: a service VIP and a listener port, in the byte
/// orders the kernel's `struct bpf_sk_lookup` uses so the program compares
/// without conversions.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VipPort {
    /// IPv4 address in network byte order (as `bpf_sk_lookup.local_ip4`).
    pub addr_be: u32,
    /// TCP port in host byte order (as `bpf_sk_lookup.local_port`).
    pub port: u32,
}

impl VipPort {
    /// Builds a key from an address given as a host-order `u32` (as
    /// `u32::from(Ipv4Addr)` gives) and a port.
    pub const fn new(addr_host: u32, port: u16) -> Self {
        Self {
            addr_be: addr_host.to_be(),
            port: port as u32,
        }
    }
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
    /// Number of counters.
    pub const COUNT: u32 = 3;
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
}

#[cfg(feature = "user")]
// SAFETY: VipPort is repr(C), made of two u32 with no padding, and valid for
// every bit pattern.
unsafe impl aya::Pod for VipPort {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_matches_kernel_byte_orders() {
        // 169.254.171.5:8080 as the kernel presents it to the program.
        let key = VipPort::new(0xA9FE_AB05, 8080);
        assert_eq!(key.addr_be.to_ne_bytes(), [169, 254, 171, 5]);
        assert_eq!(key.port, 8080);
        assert_eq!(core::mem::size_of::<VipPort>(), 8);
    }

    #[test]
    fn range_constants_agree() {
        assert_eq!(LATTICE_MASK, u32::MAX << (32 - LATTICE_PREFIX_LEN));
        assert_eq!(LATTICE_NET & !LATTICE_MASK, 0);
    }
}
