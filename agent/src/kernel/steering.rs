//! The per-namespace sk_lookup program, its maps and its link.
//!
//! `bpf_get_netns_cookie` is not available to sk_lookup programs, so each
//! client namespace gets its own instance of the program with its own maps
//! (`Ebpf::load` of the same object), pinned under `ROOT/NAMESPACE/`:
//!
//! | pin | kernel name | what |
//! | --- | --- | --- |
//! | `steer_to_proxy` | prog `steer_to_proxy` | the sk_lookup program |
//! | `steer_link` | sk_lookup link | its attachment to the namespace |
//! | `steer_vips` | map `STEER_VIPS` | VIP:port pairs steered to the proxy |
//! | `steer_listener` | map `STEER_LISTENER` | the proxy's listening socket |
//! | `steer_stats` | map `STEER_STATS` | per-CPU counters (steered, refused, no listener, refused by security group) |
//! | `steer_sg_rules` | map `STEER_SG_RULES` | LPM trie: sources security groups allow, per policy and port |
//! | `steer_ranges` | map `STEER_RANGES` | resource VIPs and their port ranges |

use std::{
    collections::{HashMap as StdHashMap, HashSet},
    net::{IpAddr, SocketAddr},
    os::fd::{AsFd, AsRawFd},
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock, PoisonError},
};

use aya::{
    maps::{lpm_trie, HashMap, LpmTrie, MapData, PerCpuArray, SockMap},
    programs::{
        links::{FdLink, PinnedLink},
        SkLookup,
    },
    Ebpf, EbpfLoader,
};
use ipnet::IpNet;
use latticed_common::{
    from_octets, mapped_v4, names, octets, stats, Addr, PortRange, RangeEntry, SgMatch, VipAddr,
    VipEntry, VipPort, MAX_LISTENERS, MAX_PORT_RANGES, SG_MATCH_FIXED_BITS,
};

use crate::control::security_groups::Steered;
use latticed_proxy::NetNs;

/// The eBPF object, built from `ebpf/` by `cargo xtask build-ebpf` and
/// committed so the daemon builds without the eBPF toolchain.
static OBJECT: &[u8] = aya::include_bytes_aligned!("../../../ebpf/prebuilt/latticed-ebpf.o");

/// The loader every attach uses, made once per process.
///
/// `EbpfLoader::new` always parses the kernel's BTF
/// (`/sys/kernel/btf/vmlinux`: a 5 MB read and 10 MB of parsed types, and
/// tens of milliseconds), even though the program has no CO-RE relocations
/// and `btf(None)` then drops it. Parsed at every attach, that churn left
/// about 8 MB of freed heap resident in the daemon. One loader parses once;
/// the heap it freed is handed back to the kernel right away.
fn loader() -> &'static Mutex<EbpfLoader<'static>> {
    static LOADER: OnceLock<Mutex<EbpfLoader<'static>>> = OnceLock::new();
    LOADER.get_or_init(|| {
        let mut loader = EbpfLoader::new();
        loader.btf(None);
        latticed_proxy::memory::release_free_heap();
        Mutex::new(loader)
    })
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading the object failed.
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    /// The object lacks a map or program this code expects.
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
    /// Security group rules expanded over wide resource port ranges need
    /// more entries than the trie holds.
    #[error("security group rules for some ports over resource port ranges need more than {} entries in one namespace; open every port to the sources, or narrow the ranges", latticed_common::MAX_SG_ENTRIES)]
    TooManyRules,
    /// More listeners than sockmap slots (or none).
    #[error("{0} listeners: the sockmap holds 1 to 64 (one per data-path worker)")]
    Listeners(usize),
    /// A map operation failed.
    #[error("{what}: {source}")]
    Map {
        /// What was attempted.
        what: String,
        /// Cause.
        #[source]
        source: aya::maps::MapError,
    },
    /// A program operation failed.
    #[error("{what}: {source}")]
    Program {
        /// What was attempted.
        what: String,
        /// Cause.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// Pinning failed.
    #[error("pinning {path}: {source}")]
    Pin {
        /// Pin path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: aya::pin::PinError,
    },
    /// File system error in the pin directory.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Steering counters of one namespace, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections handed to the proxy.
    pub steered: u64,
    /// Connections to unconfigured VIP:ports, refused.
    pub refused: u64,
    /// Configured but no listener: refused.
    pub no_listener: u64,
    /// Configured, but no security group admits the client: refused.
    pub refused_by_security_group: u64,
}

/// The program attached to one namespace.
pub struct Steering {
    dir: PathBuf,
    vips: HashMap<MapData, VipPort, VipEntry>,
    /// What `vips` holds, kept here so a change costs syscalls only for the
    /// pairs that differ, not a walk over the whole map.
    steered: StdHashMap<VipPort, VipEntry>,
    sg_rules: LpmTrie<MapData, SgMatch, u8>,
    ranges: HashMap<MapData, VipAddr, RangeEntry>,
    /// What `ranges` holds.
    ranged: StdHashMap<VipAddr, RangeEntry>,
    /// What `sg_rules` holds (prefix length, data).
    allowed: HashSet<(u32, SgMatch)>,
    stats: PerCpuArray<MapData, u64>,
    /// Listening sockets in the sockmap (the value of every VIP entry).
    listeners: u32,
    link: Option<PinnedLink>,
    // Keeps the program and the listener sockmap loaded for our lifetime.
    _ebpf: Ebpf,
}

impl std::fmt::Debug for Steering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Steering")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Steering {
    /// Loads a fresh instance, puts `listeners` (one per data-path worker)
    /// in its sockmap, pins everything under `dir` and attaches it to `ns`.
    /// On error, whatever was pinned is removed again.
    pub fn attach(ns: &NetNs, dir: PathBuf, listeners: &[impl AsRawFd]) -> Result<Self, Error> {
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        match Self::attach_inner(ns, &dir, listeners) {
            Ok(s) => Ok(s),
            Err(e) => {
                remove_dir(&dir);
                Err(e)
            }
        }
    }

    fn attach_inner(ns: &NetNs, dir: &Path, listeners: &[impl AsRawFd]) -> Result<Self, Error> {
        let count = u32::try_from(listeners.len())
            .ok()
            .filter(|n| (1..=MAX_LISTENERS).contains(n))
            .ok_or(Error::Listeners(listeners.len()))?;
        // Loads are short and rare (one per associated namespace), so a
        // shared loader behind a lock costs nothing that matters.
        let mut ebpf = loader()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .load(OBJECT)?;
        let map_err = |what: &str| {
            let what = what.to_owned();
            move |source| Error::Map { what, source }
        };
        let pin = |map: &aya::maps::Map, file: &str| {
            let path = dir.join(file);
            map.pin(&path).map_err(|source| Error::Pin { path, source })
        };

        let listener_map = ebpf
            .map_mut(names::LISTENER)
            .ok_or(Error::Missing(names::LISTENER))?;
        pin(listener_map, "steer_listener")?;
        let mut sockmap: SockMap<&mut MapData> =
            SockMap::try_from(listener_map).map_err(map_err("opening STEER_LISTENER"))?;
        for (slot, listener) in (0..).zip(listeners) {
            sockmap
                .set(slot, listener, 0)
                .map_err(map_err("putting the proxy listener in STEER_LISTENER"))?;
        }

        let mut take = |name: &'static str, file: &str| {
            let map = ebpf.take_map(name).ok_or(Error::Missing(name))?;
            pin(&map, file)?;
            Ok::<_, Error>(map)
        };
        let vips = HashMap::try_from(take(names::VIPS, "steer_vips")?)
            .map_err(map_err("opening STEER_VIPS"))?;
        let stats = PerCpuArray::try_from(take(names::STATS, "steer_stats")?)
            .map_err(map_err("opening STEER_STATS"))?;
        let sg_rules = LpmTrie::try_from(take(names::SG_RULES, "steer_sg_rules")?)
            .map_err(map_err("opening STEER_SG_RULES"))?;
        let ranges = HashMap::try_from(take(names::RANGES, "steer_ranges")?)
            .map_err(map_err("opening STEER_RANGES"))?;

        let prog_err = |what: &str| {
            let what = what.to_owned();
            move |source| Error::Program { what, source }
        };
        let prog: &mut SkLookup = ebpf
            .program_mut(names::PROGRAM)
            .ok_or(Error::Missing(names::PROGRAM))?
            .try_into()
            .map_err(prog_err("steer_to_proxy is not an sk_lookup program"))?;
        prog.load().map_err(prog_err("loading steer_to_proxy"))?;
        let prog_pin = dir.join("steer_to_proxy");
        prog.pin(&prog_pin).map_err(|source| Error::Pin {
            path: prog_pin,
            source,
        })?;
        let link_id = prog.attach(ns.as_fd()).map_err(prog_err(&format!(
            "attaching steer_to_proxy to namespace {:?}",
            ns.name()
        )))?;
        let link = prog
            .take_link(link_id)
            .map_err(prog_err("taking the sk_lookup link"))?;
        let link_pin = dir.join("steer_link");
        let link = FdLink::from(link)
            .pin(&link_pin)
            .map_err(|source| Error::Pin {
                path: link_pin,
                source,
            })?;
        Ok(Self {
            dir: dir.to_owned(),
            vips,
            steered: StdHashMap::new(),
            sg_rules,
            ranges,
            ranged: StdHashMap::new(),
            allowed: HashSet::new(),
            stats,
            listeners: count,
            link: Some(link),
            _ebpf: ebpf,
        })
    }

    /// Makes the maps hold exactly `want`. New rules go in first, then the
    /// VIP entries change, then stale VIPs and rules go: a pair present
    /// before and after never blinks, and a VIP never points at a policy
    /// whose rules are not in yet (policy numbers stay with their set of
    /// groups, see `PolicyIds`).
    pub fn set(&mut self, want: &Steered) -> Result<(), Error> {
        if want.too_many {
            return Err(Error::TooManyRules);
        }
        let vips: StdHashMap<VipPort, VipEntry> = want
            .vips
            .iter()
            .map(|(at, policy)| {
                let entry = VipEntry {
                    listeners: self.listeners,
                    policy: *policy,
                };
                (vip_key(at), entry)
            })
            .collect();
        let ranges: StdHashMap<VipAddr, RangeEntry> = want
            .ranges
            .iter()
            .map(|(vip, (policy, ranges))| {
                let key = VipAddr { addr: addr(*vip) };
                (key, range_entry(self.listeners, *policy, ranges))
            })
            .collect();
        let rules: HashSet<(u32, SgMatch)> = want.rules.iter().map(sg_key).collect();
        let map_err = |what: String| move |source| Error::Map { what, source };
        for k in rules.difference(&self.allowed).copied().collect::<Vec<_>>() {
            self.sg_rules
                .insert(&lpm_trie::Key::new(k.0, k.1), 1, 0)
                .map_err(map_err(format!("allowing {}", show_rule(&k))))?;
            self.allowed.insert(k);
        }
        sync(&mut self.vips, &mut self.steered, vips, show)?;
        sync(&mut self.ranges, &mut self.ranged, ranges, |k| {
            format!("resource VIP {}", shown(k.addr))
        })?;
        for k in self.allowed.difference(&rules).copied().collect::<Vec<_>>() {
            self.sg_rules
                .remove(&lpm_trie::Key::new(k.0, k.1))
                .map_err(map_err(format!("removing {}", show_rule(&k))))?;
            self.allowed.remove(&k);
        }
        Ok(())
    }

    /// Counters summed over CPUs.
    pub fn counters(&self) -> Counters {
        let sum = |i: u32| {
            self.stats
                .get(&i, 0)
                .map(|v| v.iter().sum())
                .unwrap_or_default()
        };
        Counters {
            steered: sum(stats::STEERED),
            refused: sum(stats::REFUSED),
            no_listener: sum(stats::NO_LISTENER),
            refused_by_security_group: sum(stats::SG_REFUSED),
        }
    }

    /// Detaches the program and removes every pin.
    pub fn detach(mut self) {
        if let Some(link) = self.link.take() {
            match link.unpin() {
                // Dropping the last fd of an unpinned link detaches it.
                Ok(fd_link) => drop(fd_link),
                Err(e) => tracing::warn!(error = %e, "unpinning the sk_lookup link"),
            }
        }
        remove_dir(&self.dir);
    }
}

/// Makes `map`, and `held` (what it holds), equal `want`: new and changed
/// entries first, then stale ones, so an entry present before and after
/// never blinks. A change costs syscalls only for the entries that differ.
fn sync<K, V>(
    map: &mut HashMap<MapData, K, V>,
    held: &mut StdHashMap<K, V>,
    want: StdHashMap<K, V>,
    show: impl Fn(&K) -> String,
) -> Result<(), Error>
where
    K: aya::Pod + Eq + std::hash::Hash,
    V: aya::Pod + PartialEq,
{
    let map_err = |what: String| move |source| Error::Map { what, source };
    for (k, v) in &want {
        if held.get(k) != Some(v) {
            map.insert(k, v, 0)
                .map_err(map_err(format!("steering {}", show(k))))?;
            held.insert(*k, *v);
        }
    }
    let stale: Vec<K> = held
        .keys()
        .filter(|k| !want.contains_key(k))
        .copied()
        .collect();
    for k in stale {
        map.remove(&k)
            .map_err(map_err(format!("unsteering {}", show(&k))))?;
        held.remove(&k);
    }
    Ok(())
}

fn remove_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %dir.display(), error = %e, "removing pins");
        }
    }
}

/// A rule's source address in the maps' form (IPv4 mapped).
fn addr(ip: IpAddr) -> Addr {
    match ip {
        IpAddr::V4(v4) => mapped_v4(u32::from(v4).to_be()),
        IpAddr::V6(v6) => from_octets(v6.octets()),
    }
}

/// A resource VIP's map value. The plan bounds a configuration at
/// `MAX_PORT_RANGES` ranges; any past that are not steered.
fn range_entry(listeners: u32, policy: u32, ranges: &[(u16, u16)]) -> RangeEntry {
    let mut entry = RangeEntry {
        listeners,
        policy,
        count: 0,
        ranges: [PortRange::default(); MAX_PORT_RANGES],
    };
    for (slot, (low, high)) in entry.ranges.iter_mut().zip(ranges) {
        *slot = PortRange {
            low: *low,
            high: *high,
        };
        entry.count += 1;
    }
    entry
}

fn vip_key(at: &SocketAddr) -> VipPort {
    match at {
        SocketAddr::V4(a) => VipPort::v4(u32::from(*a.ip()), a.port()),
        SocketAddr::V6(a) => VipPort::v6(a.ip().octets(), a.port()),
    }
}

/// A rule's trie key: its prefix length and data.
fn sg_key((policy, port, net): &(u32, u16, IpNet)) -> (u32, SgMatch) {
    let bits = match net {
        IpNet::V4(n) => 96 + u32::from(n.prefix_len()),
        IpNet::V6(n) => u32::from(n.prefix_len()),
    };
    let data = SgMatch {
        policy: *policy,
        port: u32::from(*port),
        addr: addr(net.network()),
    };
    (SG_MATCH_FIXED_BITS + bits, data)
}

/// An address of the maps as it is written (IPv4 unmapped).
fn shown(a: Addr) -> IpAddr {
    std::net::Ipv6Addr::from(octets(a)).to_canonical()
}

fn show(k: &VipPort) -> String {
    SocketAddr::new(shown(k.addr), k.port as u16).to_string()
}

fn show_rule((bits, m): &(u32, SgMatch)) -> String {
    let ip = shown(m.addr);
    let len = bits - SG_MATCH_FIXED_BITS - if ip.is_ipv4() { 96 } else { 0 };
    format!("{ip}/{len} to port {} (policy {})", m.port, m.policy)
}
