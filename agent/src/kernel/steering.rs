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
//! | `steer_stats` | map `STEER_STATS` | per-CPU counters (steered, refused, no listener) |

use std::{
    collections::{BTreeSet, HashSet},
    net::SocketAddrV4,
    os::fd::{AsFd, AsRawFd},
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock, PoisonError},
};

use aya::{
    maps::{HashMap, MapData, PerCpuArray, SockMap},
    programs::{
        links::{FdLink, PinnedLink},
        SkLookup,
    },
    Ebpf, EbpfLoader,
};
use latticed_common::{names, stats, VipPort, MAX_LISTENERS};
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
}

/// The program attached to one namespace.
pub struct Steering {
    dir: PathBuf,
    vips: HashMap<MapData, VipPort, u32>,
    /// What `vips` holds, kept here so a change costs syscalls only for the
    /// pairs that differ, not a walk over the whole map.
    steered: HashSet<VipPort>,
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

        let vips_map = ebpf
            .take_map(names::VIPS)
            .ok_or(Error::Missing(names::VIPS))?;
        pin(&vips_map, "steer_vips")?;
        let vips = HashMap::try_from(vips_map).map_err(map_err("opening STEER_VIPS"))?;
        let stats_map = ebpf
            .take_map(names::STATS)
            .ok_or(Error::Missing(names::STATS))?;
        pin(&stats_map, "steer_stats")?;
        let stats = PerCpuArray::try_from(stats_map).map_err(map_err("opening STEER_STATS"))?;

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
            steered: HashSet::new(),
            stats,
            listeners: count,
            link: Some(link),
            _ebpf: ebpf,
        })
    }

    /// Makes the steered set exactly `want`: inserts the new pairs first, then
    /// removes the stale ones, so a pair present in both never blinks.
    pub fn set_vips(&mut self, want: &BTreeSet<SocketAddrV4>) -> Result<(), Error> {
        let want: HashSet<VipPort> = want
            .iter()
            .map(|a| VipPort::new(u32::from(*a.ip()), a.port()))
            .collect();
        let add: Vec<VipPort> = want.difference(&self.steered).copied().collect();
        let remove: Vec<VipPort> = self.steered.difference(&want).copied().collect();
        for k in add {
            self.vips
                .insert(k, self.listeners, 0)
                .map_err(|source| Error::Map {
                    what: format!("steering {}", show(&k)),
                    source,
                })?;
            self.steered.insert(k);
        }
        for k in remove {
            self.vips.remove(&k).map_err(|source| Error::Map {
                what: format!("unsteering {}", show(&k)),
                source,
            })?;
            self.steered.remove(&k);
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

fn remove_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %dir.display(), error = %e, "removing pins");
        }
    }
}

fn show(k: &VipPort) -> String {
    format!(
        "{}:{}",
        std::net::Ipv4Addr::from(u32::from_be(k.addr_be)),
        k.port
    )
}
