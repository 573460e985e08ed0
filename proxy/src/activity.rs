//! What a client connection is doing, for its timers: when it last moved
//! bytes, whether a request is open, and since when a request head has
//! been arriving. The listener's HTTP connections and the TLS_PASSTHROUGH
//! splices both keep it.

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// When a connection last moved bytes, how many requests are open on it,
/// and since when a request head has been arriving. hyper's own header
/// timeout also runs while a keep-alive connection waits for its next
/// request, which would cut idle connections at the header timeout; these
/// timers tell the two apart.
///
/// Times are [`crate::time::coarse_ms`] readings: this runs at every read
/// and write, and milliseconds are all the timeouts need.
#[derive(Debug)]
pub(crate) struct Activity {
    last_ms: AtomicU64,
    open: AtomicUsize,
    /// The clock reading, plus one, when the first byte of the request
    /// head now arriving was read; 0 when none is.
    head_since: AtomicU64,
    track_heads: std::sync::atomic::AtomicBool,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            last_ms: AtomicU64::new(crate::time::coarse_ms()),
            open: AtomicUsize::new(0),
            head_since: AtomicU64::new(0),
            track_heads: std::sync::atomic::AtomicBool::new(true),
        }
    }
}

impl Activity {
    /// Activity of a connection that carries no request heads (a splice).
    pub(crate) fn without_heads() -> Self {
        let a = Self::default();
        a.track_heads(false);
        a
    }

    /// Whether reads between requests start a request head (HTTP/1) or
    /// not (HTTP/2 frames between requests, splices).
    pub(crate) fn track_heads(&self, on: bool) {
        self.track_heads.store(on, Ordering::Relaxed);
    }

    pub(crate) fn touch(&self) {
        self.last_ms
            .store(crate::time::coarse_ms(), Ordering::Relaxed);
    }

    /// Bytes arrived: between requests, that starts a request head.
    pub(crate) fn read(&self) {
        let now = crate::time::coarse_ms();
        self.last_ms.store(now, Ordering::Relaxed);
        if self.open.load(Ordering::Relaxed) == 0
            && self.head_since.load(Ordering::Relaxed) == 0
            && self.track_heads.load(Ordering::Relaxed)
        {
            self.head_since.store(now + 1, Ordering::Relaxed);
        }
    }

    /// How long the request head now arriving has taken, if one is.
    pub(crate) fn head_for(&self) -> Option<Duration> {
        match self.head_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(Duration::from_millis(
                crate::time::coarse_ms().saturating_sub(since - 1),
            )),
        }
    }

    /// Time since the last byte moved; zero while a request is open (a
    /// target may take long to answer; the request timeout covers that).
    pub(crate) fn idle_for(&self) -> Duration {
        if self.open.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = self.last_ms.load(Ordering::Relaxed);
        Duration::from_millis(crate::time::coarse_ms().saturating_sub(last))
    }

    pub(crate) fn request(self: &Arc<Self>) -> OpenRequest {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Relaxed);
        OpenRequest(Arc::clone(self))
    }
}

/// A request open on a connection: while one is, the connection is not
/// idle.
pub(crate) struct OpenRequest(Arc<Activity>);

impl Drop for OpenRequest {
    fn drop(&mut self) {
        self.0.touch();
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client stream that records activity for the idle timeout.
pub(crate) struct IdleIo<S> {
    pub(crate) inner: S,
    pub(crate) activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if r.is_ready() {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if r.is_ready() {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
