//! What glibc's allocator keeps after a burst, and handing it back.
//!
//! Clients decide how many connections and how large the bodies are, so
//! the memory they make latticed take must go back once they leave: a
//! daemon whose RSS only ever ratchets up to its worst minute is one a
//! tenant can push into the OOM killer a little at a time. glibc keeps
//! freed memory by default, in two ways handled here.

use std::{sync::Weak, time::Duration};

use crate::Dataplane;

/// Large blocks (bodies held whole, up to 10 MiB each) come from mmap and
/// go back to the kernel when freed. By default glibc raises its mmap
/// threshold to the size of the last large block freed, so later bodies
/// came from the arenas, whose freed pages stay resident: 50 connections
/// sending 10 MiB bodies to an AWS_IAM service took RSS 127 MiB past the
/// 64 MiB body budget, and 57 MiB stayed after they left (`cargo xtask
/// bench --abuse-only`). A fixed threshold ends the adjustment; blocks this
/// large are rare and costly to fill anyway, so an mmap each costs little.
///
/// Call before starting threads.
pub fn return_large_blocks_to_the_kernel() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        if libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10) != 1 {
            tracing::debug!("could not set the allocator's mmap threshold");
        }
    }
}

/// Returns the allocator's free pages, in every arena, to the kernel.
pub fn release_free_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions; it only takes the arenas'
    // own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How far open connections must fall from their high mark before the
/// heap is trimmed.
const BURST: i64 = 256;

/// Trims the heap after a burst of connections has gone: many small
/// per-connection blocks (TLS and HTTP buffers, tasks) freed in the middle
/// of the workers' arenas stay resident otherwise. 10,000 slow TLS clients
/// left RSS at 236 MiB after they had all gone, against 11 MiB before.
/// Checked once a second: once open connections have fallen by `BURST`
/// from their high mark and stopped falling, the heap is trimmed (which
/// takes the arenas' locks for a few milliseconds). Ends when the data
/// plane does.
pub async fn trim_after_bursts(dp: Weak<Dataplane>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut high = 0i64;
    let mut last = 0i64;
    loop {
        tick.tick().await;
        let Some(dp) = dp.upgrade() else {
            return;
        };
        let open = dp.active.load(std::sync::atomic::Ordering::Relaxed);
        drop(dp);
        high = high.max(open);
        let settled = open >= last;
        last = open;
        if settled && high - open >= BURST {
            // Off the control plane's thread: the trim walks every arena.
            let _ = tokio::task::spawn_blocking(release_free_heap).await;
            tracing::debug!(from = high, to = open, "connections fell; heap trimmed");
            high = open;
        }
    }
}
