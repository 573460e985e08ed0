//! sk_lookup steering for latticed.
//!
//! One instance of this program (with its own maps) is loaded per associated
//! network namespace and attached to that namespace. A new TCP connection to a
//! configured service VIP:port in 169.254.171.0/24 is handed to the proxy's
//! listening socket in `STEER_LISTENER`; any other destination in the range is
//! refused (SK_DROP makes the lookup find no socket, so the client gets a RST),
//! even if some local process listens on a wildcard address, except the
//! resolver's own address and port (DNS over TCP). Traffic outside the range
//! is left to the normal lookup.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{sk_action, BPF_F_NO_PREALLOC},
    helpers::bpf_get_smp_processor_id,
    macros::{map, sk_lookup},
    maps::{HashMap, PerCpuArray, SockMap},
    programs::SkLookupContext,
};
use latticed_common::{addresses, stats, VipPort, LATTICE_MASK, LATTICE_NET, MAX_LISTENERS};

const AF_INET: u32 = 2;
const IPPROTO_TCP: u32 = 6;

/// Configured VIP:port pairs of this namespace. The value is the number of
/// listener slots in use.
#[map]
static STEER_VIPS: HashMap<VipPort, u32> = HashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);

/// The proxy's listening sockets, created inside this namespace, one per
/// data-path worker.
#[map]
static STEER_LISTENER: SockMap = SockMap::with_max_entries(MAX_LISTENERS, 0);

/// Per-CPU counters, indexed by `latticed_common::stats`.
#[map]
static STEER_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stats::COUNT, 0);

#[sk_lookup]
pub fn steer_to_proxy(ctx: SkLookupContext) -> u32 {
    // SAFETY: the kernel passes a valid bpf_sk_lookup context for the duration
    // of the program; these fields are readable for every family.
    let (family, protocol, local_ip4, local_port) = unsafe {
        let l = &*ctx.lookup;
        (l.family, l.protocol, l.local_ip4, l.local_port)
    };
    if family != AF_INET || protocol != IPPROTO_TCP {
        return sk_action::SK_PASS;
    }
    if u32::from_be(local_ip4) & LATTICE_MASK != LATTICE_NET {
        return sk_action::SK_PASS;
    }
    // latticed's resolver listens there itself (DNS over TCP); the normal
    // lookup finds its socket.
    if u32::from_be(local_ip4) == addresses::RESOLVER
        && local_port == u32::from(addresses::RESOLVER_PORT)
    {
        return sk_action::SK_PASS;
    }
    let key = VipPort {
        addr_be: local_ip4,
        port: local_port,
    };
    let Some(listeners) = STEER_VIPS.get_ptr(key) else {
        count(stats::REFUSED);
        return sk_action::SK_DROP;
    };
    // SAFETY: the pointer comes from a successful lookup and the value is a
    // plain u32 the agent writes whole.
    let listeners = unsafe { *listeners };
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
