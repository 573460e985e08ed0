//! Each worker's idle upstream connections, by (namespace, target).
//!
//! Each worker thread runs one current-thread runtime and every connection
//! it accepts stays on it, so the pool is thread-local and needs no lock.
//! Both HTTP/1.1 paths take connections from it and give them back.

use std::{cell::RefCell, net::SocketAddr, time::Duration};

use crate::{netns::NsId, upstream::Conn};

/// Idle connections kept per target and worker.
const MAX_IDLE_PER_TARGET: usize = 1024;

/// Idle upstream connections by (namespace, target), with when they went
/// idle ([`crate::time::coarse_ms`]).
type IdlePool = foldhash::HashMap<(NsId, SocketAddr), Vec<(Conn, u64)>>;

thread_local! {
    /// Idle upstream connections by target, with when they went idle.
    static POOL: RefCell<IdlePool> = RefCell::default();
}

/// A pooled connection to `target` that is still open, if any.
pub(crate) fn take_pooled(ns: NsId, target: SocketAddr) -> Option<Conn> {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let idle = p.get_mut(&(ns, target))?;
        while let Some((mut stream, _)) = idle.pop() {
            if stream.still_idle() {
                return Some(stream);
            }
        }
        None
    })
}

pub(crate) fn put(ns: NsId, target: SocketAddr, stream: Conn) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let idle = p.entry((ns, target)).or_default();
        if idle.len() < MAX_IDLE_PER_TARGET {
            idle.push((stream, crate::time::coarse_ms()));
        }
    });
}

/// Closes this worker's upstream connections idle for `max` or longer.
pub(crate) fn expire_idle(max: Duration) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        let now = crate::time::coarse_ms();
        let max = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        p.retain(|_, idle| {
            idle.retain(|(_, since)| now.saturating_sub(*since) < max);
            !idle.is_empty()
        });
    });
}
