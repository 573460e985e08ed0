//! The dialing side: one [`Peer`] per other node.
//!
//! A peer keeps one HTTP/2 connection per data-path worker thread (each
//! worker's streams then never cross to another thread's connection task,
//! which cost a wake-up across cores per read and write), made on first use, pinged every
//! second so that a dead or partitioned peer is noticed within two, and
//! closed after it has carried no stream for the idle time. After a failed
//! dial, streams to that peer fail at once for a second instead of each
//! waiting out a connect timeout: a partition gives fast errors, and the
//! next attempt after it heals reconnects. Nothing is shared between peers,
//! so a slow peer stalls only streams to itself.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, Weak,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Empty;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsConnector;

use super::{identity::node_dns_name, Error, NodeIdentity, ERROR_HEADER, VPC_HEADER};
use crate::time::coarse_ms;

type Sender = SendRequest<Empty<Bytes>>;

/// Connections per peer at most: one per worker thread, up to this many.
const SLOTS: usize = 16;

/// The slot of the calling thread: threads take slots in turn.
fn slot_index() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS;
    }
    SLOT.with(|s| *s)
}

/// One connection to a peer, and the lock of its dial.
#[derive(Default)]
struct Slot {
    conn: arc_swap::ArcSwapOption<Sender>,
    dialing: tokio::sync::Mutex<()>,
}

/// Timings of a peer's tunnel.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Limit for the TCP connect and TLS handshake to the peer.
    pub dial_timeout: Duration,
    /// Limit for the peer to answer a CONNECT (it connects to the target
    /// meanwhile, within its own connect timeout).
    pub open_timeout: Duration,
    /// A connection with no stream for this long is closed.
    pub idle_timeout: Duration,
    /// Ping interval; a ping unanswered for as long again closes the
    /// connection.
    pub ping: Duration,
    /// How long streams fail at once after a failed dial.
    pub hold_down: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            dial_timeout: Duration::from_secs(1),
            open_timeout: Duration::from_secs(4),
            idle_timeout: Duration::from_secs(60),
            ping: Duration::from_secs(1),
            hold_down: Duration::from_secs(1),
        }
    }
}

/// Another node, as this node dials it.
pub struct Peer {
    node: Arc<str>,
    addr: SocketAddr,
    name: ServerName<'static>,
    tls: TlsConnector,
    settings: Settings,
    slots: [Slot; SLOTS],
    /// Until when (coarse ms) streams fail at once.
    down_until: AtomicU64,
    last_error: Mutex<String>,
    /// Streams open now, and when the last one opened or closed.
    open: Arc<AtomicUsize>,
    last_used: Arc<AtomicU64>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("node", &self.node)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// Node `node` at tunnel address `addr`, dialed as `identity`.
    pub fn new(
        node: &str,
        addr: SocketAddr,
        identity: &NodeIdentity,
        settings: Settings,
    ) -> Result<Arc<Self>, super::identity::Error> {
        Ok(Arc::new(Self {
            node: node.into(),
            addr,
            name: node_dns_name(node)?,
            tls: TlsConnector::from(Arc::clone(&identity.client)),
            settings,
            slots: Default::default(),
            down_until: AtomicU64::new(0),
            last_error: Mutex::new(String::new()),
            open: Arc::default(),
            last_used: Arc::default(),
        }))
    }

    /// The node.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Its tunnel address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether a connection to it is up now.
    pub fn connected(&self) -> bool {
        self.slots
            .iter()
            .any(|s| s.conn.load().as_ref().is_some_and(|c| !c.is_closed()))
    }

    /// A stream to `target` in VPC `vpc` on this peer.
    pub async fn open(
        self: &Arc<Self>,
        vpc: &str,
        target: SocketAddr,
    ) -> Result<TunnelStream, Error> {
        let mut send = self.sender().await?;
        let stream_err = |reason: String| Error::Stream {
            node: Arc::clone(&self.node),
            target,
            reason,
        };
        let req = Request::builder()
            .method(Method::CONNECT)
            .uri(target.to_string())
            .header(VPC_HEADER, vpc)
            .body(Empty::new())
            .map_err(|e| stream_err(e.to_string()))?;
        let guard = OpenGuard::new(&self.open, &self.last_used);
        let answer = async {
            send.ready().await?;
            send.send_request(req).await
        };
        let resp = match tokio::time::timeout(self.settings.open_timeout, answer).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(stream_err(e.to_string())),
            Err(_) => return Err(stream_err("no answer in time".into())),
        };
        if resp.status() != StatusCode::OK {
            let reason = resp
                .headers()
                .get(ERROR_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            return Err(Error::Refused {
                node: Arc::clone(&self.node),
                target,
                status: resp.status().as_u16(),
                reason,
            });
        }
        let upgraded = hyper::upgrade::on(resp)
            .await
            .map_err(|e| stream_err(e.to_string()))?;
        Ok(TunnelStream {
            io: TokioIo::new(upgraded),
            _open: guard,
        })
    }

    /// The connection, made if there is none (one dial at a time).
    async fn sender(self: &Arc<Self>) -> Result<Sender, Error> {
        let slot = slot_index();
        if let Some(s) = self.live(slot) {
            return Ok(s);
        }
        let unreachable = |reason: String| Error::Unreachable {
            node: Arc::clone(&self.node),
            addr: self.addr,
            reason,
        };
        let held = || coarse_ms() < self.down_until.load(Ordering::Relaxed);
        if held() {
            return Err(unreachable(self.last_error()));
        }
        let Ok(_dialing) =
            tokio::time::timeout(self.settings.dial_timeout, self.slots[slot].dialing.lock()).await
        else {
            return Err(unreachable("another dial is taking too long".into()));
        };
        // Whoever held the lock may have connected, or failed.
        if let Some(s) = self.live(slot) {
            return Ok(s);
        }
        if held() {
            return Err(unreachable(self.last_error()));
        }
        match tokio::time::timeout(self.settings.dial_timeout, self.dial(slot)).await {
            Ok(Ok(s)) => Ok(s),
            failed => {
                let reason = match failed {
                    Ok(Err(e)) => e,
                    _ => "timed out".into(),
                };
                tracing::warn!(node = %self.node, addr = %self.addr, error = %reason, "tunnel to peer failed");
                if let Ok(mut l) = self.last_error.lock() {
                    l.clone_from(&reason);
                }
                let hold = u64::try_from(self.settings.hold_down.as_millis()).unwrap_or(1000);
                self.down_until.store(coarse_ms() + hold, Ordering::Relaxed);
                Err(unreachable(reason))
            }
        }
    }

    fn live(&self, slot: usize) -> Option<Sender> {
        self.slots[slot]
            .conn
            .load()
            .as_ref()
            .filter(|s| !s.is_closed())
            .map(|s| (**s).clone())
    }

    fn last_error(&self) -> String {
        self.last_error
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    async fn dial(self: &Arc<Self>, slot: usize) -> Result<Sender, String> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connecting: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .tls
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(self.settings.ping)
            .keep_alive_timeout(self.settings.ping)
            .keep_alive_while_idle(true)
            .initial_stream_window_size(1 << 20)
            .initial_connection_window_size(16 << 20)
            .max_frame_size(64 << 10)
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP/2: {e}"))?;
        let stored = Arc::new(send.clone());
        self.slots[slot].conn.store(Some(Arc::clone(&stored)));
        tracing::info!(node = %self.node, addr = %self.addr, slot, "tunnel to peer up");
        let peer = Arc::downgrade(self);
        tokio::spawn(drive(
            conn,
            (peer, slot),
            stored,
            self.settings.idle_timeout,
        ));
        Ok(send)
    }
}

/// Runs a peer's connection until it ends, or until it has been idle too
/// long (then it is dropped, which closes it).
async fn drive<C>(conn: C, (peer, slot): (Weak<Peer>, usize), stored: Arc<Sender>, idle: Duration)
where
    C: std::future::Future<Output = hyper::Result<()>>,
{
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    let watch = async {
        loop {
            tokio::time::sleep((idle / 4).max(Duration::from_millis(100))).await;
            let Some(p) = peer.upgrade() else { return };
            if p.open.load(Ordering::Relaxed) == 0
                && coarse_ms().saturating_sub(p.last_used.load(Ordering::Relaxed)) >= idle_ms
            {
                tracing::debug!(node = %p.node, "closing the idle tunnel");
                return;
            }
        }
    };
    let ended = tokio::select! {
        r = conn => Some(r),
        () = watch => None,
    };
    if let Some(p) = peer.upgrade() {
        let current = p.slots[slot].conn.load_full();
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &stored)) {
            p.slots[slot].conn.store(None);
        }
        match ended {
            Some(Err(e)) => {
                tracing::warn!(node = %p.node, addr = %p.addr, error = %e, "tunnel to peer lost")
            }
            Some(Ok(())) => tracing::info!(node = %p.node, "tunnel to peer closed"),
            None => {}
        }
    }
}

/// Counts a stream open for the idle check.
#[derive(Debug)]
struct OpenGuard {
    open: Arc<AtomicUsize>,
    last_used: Arc<AtomicU64>,
}

impl OpenGuard {
    fn new(open: &Arc<AtomicUsize>, last_used: &Arc<AtomicU64>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        last_used.store(coarse_ms(), Ordering::Relaxed);
        Self {
            open: Arc::clone(open),
            last_used: Arc::clone(last_used),
        }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.last_used.store(coarse_ms(), Ordering::Relaxed);
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One stream through a peer: a byte pipe to the target.
#[derive(Debug)]
pub struct TunnelStream {
    io: TokioIo<hyper::upgrade::Upgraded>,
    _open: OpenGuard,
}

impl TunnelStream {
    /// Whether the stream is still open with nothing unread, checked
    /// without waiting (a pooled stream must be, to be used again).
    pub fn still_idle(&mut self) -> bool {
        let mut probe = [0u8; 1];
        let mut buf = ReadBuf::new(&mut probe);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut buf),
            Poll::Pending
        )
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
