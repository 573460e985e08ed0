//! sk_lookup steering for latticed.
//!
//! One instance of this program (with its own maps) is loaded per associated
//! network namespace and attached to that namespace. A new TCP connection to a
//! configured service VIP:port, in 169.254.171.0/24 or fd00:ec2:80::/64, is
//! handed to the proxy's listening socket in `STEER_LISTENER` if the VPC
//! association's security groups admit the client, and so is one to a
//! resource VIP on a port of its ranges (`STEER_RANGES`); any other destination in
//! the ranges is refused (SK_DROP makes the lookup find no socket, so the
//! client gets a RST), even if some local process listens on a wildcard
//! address, except the resolver's own address and port (DNS over TCP).
//! Traffic outside the ranges is left to the normal lookup.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{sk_action, BPF_F_NO_PREALLOC},
    helpers::bpf_get_smp_processor_id,
    macros::{map, sk_lookup},
    maps::{lpm_trie::Key, HashMap, LpmTrie, PerCpuArray, SockMap},
    programs::SkLookupContext,
};
use latticed_common::{
    addresses, from_octets, mapped_v4, stats, Addr, RangeEntry, SgMatch, VipAddr, VipEntry,
    VipPort, ADMIT_ALL, ANY_PORT, LATTICE6_NET, LATTICE_MASK, LATTICE_NET, MAX_LISTENERS,
    MAX_SG_ENTRIES, SG_MATCH_FIXED_BITS,
};

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const IPPROTO_TCP: u32 = 6;

/// Configured VIP:port pairs of this namespace: how many listener slots
/// are in use and who may connect.
#[map]
static STEER_VIPS: HashMap<VipPort, VipEntry> = HashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);

/// The proxy's listening sockets, created inside this namespace, one per
/// data-path worker.
#[map]
static STEER_LISTENER: SockMap = SockMap::with_max_entries(MAX_LISTENERS, 0);

/// Per-CPU counters, indexed by `latticed_common::stats`.
#[map]
static STEER_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stats::COUNT, 0);

/// Sources the security groups allow, per admission policy and port. The
/// lookup cost depends on the key's length, not on how many rules there
/// are.
#[map]
static STEER_SG_RULES: LpmTrie<SgMatch, u8> = LpmTrie::with_max_entries(MAX_SG_ENTRIES, 0);

/// Resource VIPs of this namespace and their port ranges: one entry per
/// VIP whatever the number of ports.
#[map]
static STEER_RANGES: HashMap<VipAddr, RangeEntry> =
    HashMap::with_max_entries(1024, BPF_F_NO_PREALLOC);

/// The first half of fd00:ec2:80::/64 as `local_ip6` holds it.
const V6_NET: [u32; 2] = {
    let a = from_octets([
        LATTICE6_NET[0],
        LATTICE6_NET[1],
        LATTICE6_NET[2],
        LATTICE6_NET[3],
        LATTICE6_NET[4],
        LATTICE6_NET[5],
        LATTICE6_NET[6],
        LATTICE6_NET[7],
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ]);
    [a[0], a[1]]
};

/// The resolver's addresses, where its own socket answers DNS over TCP.
const RESOLVER4: Addr = mapped_v4(addresses::RESOLVER.to_be());
const RESOLVER6: Addr = from_octets(addresses::v6(addresses::RESOLVER));

#[inline(always)]
fn same(a: &Addr, b: &Addr) -> bool {
    a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3]
}

#[sk_lookup]
pub fn steer_to_proxy(ctx: SkLookupContext) -> u32 {
    // SAFETY: the kernel passes a valid bpf_sk_lookup context for the duration
    // of the program; these fields are readable for every family.
    let (family, protocol, local_port) = unsafe {
        let l = &*ctx.lookup;
        (l.family, l.protocol, l.local_port)
    };
    if protocol != IPPROTO_TCP {
        return sk_action::SK_PASS;
    }
    // SAFETY: as above.
    let (local, remote) = unsafe {
        let l = &*ctx.lookup;
        match family {
            AF_INET if u32::from_be(l.local_ip4) & LATTICE_MASK == LATTICE_NET => {
                (mapped_v4(l.local_ip4), mapped_v4(l.remote_ip4))
            }
            AF_INET6 if l.local_ip6[0] == V6_NET[0] && l.local_ip6[1] == V6_NET[1] => {
                (l.local_ip6, l.remote_ip6)
            }
            _ => return sk_action::SK_PASS,
        }
    };
    // latticed's resolver listens there itself (DNS over TCP); the normal
    // lookup finds its socket.
    if local_port == u32::from(addresses::RESOLVER_PORT)
        && (same(&local, &RESOLVER4) || same(&local, &RESOLVER6))
    {
        return sk_action::SK_PASS;
    }
    let key = VipPort {
        addr: local,
        port: local_port,
    };
    // A service's VIP:port, else a resource VIP whose ranges hold the port.
    let (listeners, policy) = match STEER_VIPS.get_ptr(key) {
        // SAFETY: the pointer comes from a successful lookup and the value
        // is plain data the agent writes whole.
        Some(entry) => unsafe { ((*entry).listeners, (*entry).policy) },
        None => match in_ranges(local, local_port) {
            Some(found) => found,
            None => {
                count(stats::REFUSED);
                return sk_action::SK_DROP;
            }
        },
    };
    if policy != ADMIT_ALL && !admitted(policy, local_port, remote) {
        count(stats::SG_REFUSED);
        return sk_action::SK_DROP;
    }
    // The worker of the CPU handling this SYN accepts the connection: worker
    // threads are pinned one per CPU, so the connection stays on one core.
    // SAFETY: a helper without arguments or preconditions.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let slot = if listeners > 1 { cpu % listeners } else { 0 };
    match STEER_LISTENER.redirect_sk_lookup(&ctx, slot, 0) {
        Ok(()) => {
            count(stats::STEERED);
            sk_action::SK_PASS
        }
        Err(_) => {
            count(stats::NO_LISTENER);
            sk_action::SK_DROP
        }
    }
}

/// The listener count and policy of resource VIP `vip` if one of its
/// ranges holds `port`.
#[inline(always)]
fn in_ranges(vip: Addr, port: u32) -> Option<(u32, u32)> {
    let entry = STEER_RANGES.get_ptr(VipAddr { addr: vip })?;
    // SAFETY: the pointer comes from a successful lookup and stays valid for
    // the program's run; the value is plain data.
    let entry = unsafe { &*entry };
    // Every slot is compared: one loop of constant length is what the
    // verifier bounds (a data-dependent end was merged by LLVM into one
    // the verifier could not). Slots past `count` are (0, 0), and no
    // connection's port is 0.
    for r in entry.ranges.iter() {
        if u32::from(r.low) <= port && port <= u32::from(r.high) {
            return Some((entry.listeners, entry.policy));
        }
    }
    None
}

/// Whether a security group rule of `policy` admits `remote` to `port`:
/// a rule for that port, or one for every port.
#[inline(always)]
fn admitted(policy: u32, port: u32, remote: Addr) -> bool {
    let bits = SG_MATCH_FIXED_BITS + 128;
    let exact = SgMatch {
        policy,
        port,
        addr: remote,
    };
    if STEER_SG_RULES.get(Key::new(bits, exact)).is_some() {
        return true;
    }
    let any = SgMatch {
        port: ANY_PORT,
        ..exact
    };
    STEER_SG_RULES.get(Key::new(bits, any)).is_some()
}

#[inline(always)]
fn count(index: u32) {
    if let Some(counter) = STEER_STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, so no other CPU writes it; the pointer is valid
        // for the program's run.
        unsafe { *counter += 1 };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
