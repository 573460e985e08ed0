//! Data-path worker threads: one per CPU, each pinned to its CPU and
//! running its own single-threaded tokio runtime.
//!
//! Every associated namespace gets one listening socket per worker; the
//! sk_lookup program hands a new connection to the socket of the CPU that
//! handled its SYN (`cpu % workers`). From then on the connection, its
//! requests, and the upstream connections they use stay on that thread:
//! no task migrates, no wake-up crosses cores, and each worker has its own
//! upstream pool, so no lock is shared between workers on the request path.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};

use crate::{upstream::NsConnector, ProxyConfig, UpstreamBody};

/// A proxy holds two descriptors per proxied connection: raises the soft
/// limit on open files to the hard one (systemd's default soft limit is
/// 1024). Processes started afterwards inherit it.
pub fn raise_fd_limit() -> std::io::Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A worker thread could not start.
    #[error("starting data-path worker {index}: {source}")]
    Start {
        /// Worker index.
        index: usize,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// One worker: its runtime and its own upstream clients.
#[derive(Debug)]
pub struct Worker {
    /// Index (and CPU, when pinning succeeded).
    pub index: usize,
    handle: tokio::runtime::Handle,
    /// HTTP/1.1 targets (HTTP or HTTPS), pooled per worker.
    pub(crate) h1: Client<NsConnector, UpstreamBody>,
    /// The Lambda Invoke API.
    pub(crate) lambda: Client<HttpConnector, Full<Bytes>>,
    stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl Worker {
    /// Spawns `fut` on this worker.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(fut)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(stop) = self
            .stop
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            let _ = stop.send(());
        }
    }
}

/// Starts `count` workers (at least one, at most 64).
pub fn start(
    count: usize,
    config: &ProxyConfig,
    connector: &NsConnector,
) -> Result<Vec<Arc<Worker>>, Error> {
    let cpus: Vec<usize> = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|c| set.is_set(*c).unwrap_or(false))
                .collect()
        })
        .unwrap_or_default();
    // The sk_lookup program's sockmap has 64 slots.
    (0..count.clamp(1, latticed_common::MAX_LISTENERS as usize))
        .map(|index| {
            let (tx, rx) = std::sync::mpsc::channel();
            let cpu = (!cpus.is_empty()).then(|| cpus[index % cpus.len()]);
            let idle_timeout = config.upstream_idle_timeout;
            std::thread::Builder::new()
                .name(format!("latticed-dp-{index}"))
                .spawn(move || run(index, cpu, idle_timeout, &tx))
                .map_err(|source| Error::Start { index, source })?;
            let (handle, stop) = rx
                .recv()
                .map_err(|_| Error::Start {
                    index,
                    source: std::io::Error::other("the worker thread died at start"),
                })?
                .map_err(|source| Error::Start { index, source })?;
            let h1 = Client::builder(TokioExecutor::new())
                .pool_idle_timeout(config.upstream_idle_timeout)
                .pool_max_idle_per_host(1024)
                .build(connector.clone());
            let mut http = HttpConnector::new();
            http.set_nodelay(true);
            http.set_connect_timeout(Some(config.connect_timeout));
            let lambda = Client::builder(TokioExecutor::new())
                .pool_idle_timeout(config.upstream_idle_timeout)
                .build(http);
            Ok(Arc::new(Worker {
                index,
                handle,
                h1,
                lambda,
                stop: std::sync::Mutex::new(Some(stop)),
            }))
        })
        .collect()
}

/// What a worker thread tells its starter: its runtime, and how to stop it.
type Started = std::io::Result<(tokio::runtime::Handle, tokio::sync::oneshot::Sender<()>)>;

/// A worker thread: pinned to `cpu` if there is one, a current-thread
/// runtime that runs until told to stop.
fn run(
    index: usize,
    cpu: Option<usize>,
    idle_timeout: std::time::Duration,
    started: &std::sync::mpsc::Sender<Started>,
) {
    if let Some(cpu) = cpu {
        let mut set = nix::sched::CpuSet::new();
        if set.set(cpu).is_ok() {
            if let Err(e) = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set) {
                tracing::debug!(index, cpu, error = %e, "worker not pinned");
            }
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = started.send(Err(e));
            return;
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // Idle upstream connections of the fast path live in
    // this thread's pool; close the expired ones now and then.
    rt.spawn(async move {
        let every = (idle_timeout / 4).clamp(
            std::time::Duration::from_millis(100),
            std::time::Duration::from_secs(5),
        );
        loop {
            tokio::time::sleep(every).await;
            crate::pool::expire_idle(idle_timeout);
        }
    });
    let _ = started.send(Ok((rt.handle().clone(), stop_tx)));
    rt.block_on(async {
        let _ = stop_rx.await;
    });
}
