//! Body types of the data path, and request bodies the proxy must hold
//! whole: signed payloads (their hash is part of the signature) and
//! function events.
//!
//! A client chooses how large a body is and how slowly it arrives, so each
//! read has three bounds: a size limit per body, a deadline, and one memory
//! budget for all bodies held at once across every connection. A request
//! that would go over the budget is answered 503 at once instead of
//! waiting: under a flood, well-behaved requests of other kinds go on,
//! and the memory held is the budget, not the number of connections times
//! the limit.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt as _};
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::netns::NsId;

/// Body of responses the proxy sends.
pub type ProxyBody = UnsyncBoxBody<Bytes, crate::BoxError>;

/// Counts the bytes of a body as they pass (when someone wants the count).
pub(crate) struct CountingBody<B> {
    inner: B,
    counter: Option<Arc<AtomicU64>>,
}

impl<B> CountingBody<B> {
    pub(crate) fn wrap(inner: B, counter: impl Into<Option<Arc<AtomicU64>>>) -> Self {
        Self {
            inner,
            counter: counter.into(),
        }
    }
}

impl<B> Body for CountingBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(f))), Some(c)) = (&r, &self.counter) {
            if let Some(d) = f.data_ref() {
                c.fetch_add(d.len() as u64, Ordering::Relaxed);
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a body was not read whole.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WholeBodyError {
    /// Larger than the limit for its kind.
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    /// The budget for bodies held at once is spent.
    #[error("too many request bodies are being held; try again")]
    Busy,
    /// The clients of this namespace hold their whole share of the budget.
    #[error("too many request bodies from this VPC are being held; try again")]
    TenantBusy,
    /// Not received within the deadline.
    #[error("the body did not arrive within {0:?}")]
    Timeout(Duration),
    /// The client's body broke off or was malformed.
    #[error("reading the body: {0}")]
    Read(String),
}

/// The memory all whole bodies may hold at once, and how much of it the
/// clients of one namespace (one tenant's VPC) may hold. The share keeps a
/// tenant that floods an AWS_IAM service with bodies from starving every
/// other tenant's signed requests of the whole budget.
#[derive(Debug, Clone)]
pub struct Budget {
    total: Arc<Semaphore>,
    share: usize,
    /// Each client namespace's share, made on its first held body. The lock
    /// is taken once per body held whole (never on other requests) for one
    /// lookup; the bytes are then counted on the semaphores without it.
    tenants: Arc<Mutex<HashMap<NsId, Arc<Semaphore>>>>,
}

/// Shares kept for namespaces that hold nothing are dropped past this many.
const TENANTS_KEPT: usize = 1024;

impl Budget {
    /// A budget of `bytes`, of which one namespace's clients may hold at
    /// most `share`.
    pub fn new(bytes: usize, share: usize) -> Self {
        let bytes = bytes.min(Semaphore::MAX_PERMITS);
        Self {
            total: Arc::new(Semaphore::new(bytes)),
            share: share.min(bytes),
            tenants: Arc::default(),
        }
    }

    /// Bytes not held now.
    pub fn available(&self) -> usize {
        self.total.available_permits()
    }

    /// The share of namespace `tenant`.
    fn tenant(&self, tenant: NsId) -> Arc<Semaphore> {
        // A poisoned lock only means another body's bookkeeping panicked;
        // the map itself is still whole.
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = tenants.get(&tenant) {
            return Arc::clone(s);
        }
        if tenants.len() >= TENANTS_KEPT {
            // A share still referenced belongs to a body being read or held.
            tenants.retain(|_, s| Arc::strong_count(s) > 1);
        }
        Arc::clone(
            tenants
                .entry(tenant)
                .or_insert_with(|| Arc::new(Semaphore::new(self.share))),
        )
    }
}

/// Bytes taken from the budget and from one tenant's share.
struct Taken {
    tenant: Arc<Semaphore>,
    permits: Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
}

impl Taken {
    /// Takes `n` more bytes from the tenant's share and the budget, or
    /// fails at once and takes nothing.
    fn more(&mut self, budget: &Budget, n: usize) -> Result<(), WholeBodyError> {
        if n == 0 {
            return Ok(());
        }
        let n = u32::try_from(n).map_err(|_| WholeBodyError::Busy)?;
        // The whole budget first: a refusal names the tenant's share only
        // when that is what ran out.
        let all = Arc::clone(&budget.total)
            .try_acquire_many_owned(n)
            .map_err(|_| WholeBodyError::Busy)?;
        let mine = Arc::clone(&self.tenant)
            .try_acquire_many_owned(n)
            .map_err(|_| WholeBodyError::TenantBusy)?;
        match &mut self.permits {
            Some((m, a)) => {
                m.merge(mine);
                a.merge(all);
            }
            None => self.permits = Some((mine, all)),
        }
        Ok(())
    }
}

/// A body's bytes with their share of the budget, given back when the last
/// `Bytes` made from it is dropped (after the target or function has it).
struct Held {
    data: Vec<u8>,
    _taken: Taken,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

/// What reading a body whole needs from the data plane: the memory budget
/// all such bodies share, and how long a client has to send one. The
/// modules that hold bodies whole (the auth layer for signed payloads,
/// functions for their events) take this, not the whole data plane.
#[derive(Clone, Copy, Debug)]
pub struct WholeBodies<'a> {
    /// Memory for bodies held whole, across all connections.
    pub budget: &'a Budget,
    /// The limit for a client to send such a body.
    pub deadline: Duration,
}

impl WholeBodies<'_> {
    /// [`read_whole`] under this budget and deadline.
    pub async fn read<B>(
        &self,
        body: B,
        limit: usize,
        tenant: NsId,
    ) -> Result<Bytes, WholeBodyError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        read_whole(body, limit, self.budget, tenant, self.deadline).await
    }
}

/// Reads `body` whole: at most `limit` bytes, within `deadline`, within
/// `budget` and the share of it of namespace `tenant`. The buffer is sized from the declared length when there is
/// one, and grows (counted against the budget as it grows) otherwise.
async fn read_whole<B>(
    mut body: B,
    limit: usize,
    budget: &Budget,
    tenant: NsId,
    deadline: Duration,
) -> Result<Bytes, WholeBodyError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let hint = body.size_hint();
    if usize::try_from(hint.lower()).map_or(true, |n| n > limit) {
        return Err(WholeBodyError::TooLarge(limit));
    }
    let mut taken = Taken {
        tenant: budget.tenant(tenant),
        permits: None,
    };
    let mut data: Vec<u8> = Vec::new();
    if let Some(n) = hint.exact() {
        // Checked against `limit` above.
        let n = usize::try_from(n).unwrap_or(limit);
        taken.more(budget, n)?;
        data.reserve_exact(n);
    }
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| WholeBodyError::Read(e.to_string()))?;
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            if data.len() + chunk.len() > limit {
                return Err(WholeBodyError::TooLarge(limit));
            }
            let before = data.capacity();
            data.reserve(chunk.len());
            taken.more(budget, data.capacity() - before)?;
            data.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(Ok(())) => Ok(Bytes::from_owner(Held {
            data,
            _taken: taken,
        })),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(WholeBodyError::Timeout(deadline)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn chunks(
        n: usize,
        size: usize,
    ) -> impl Body<Data = Bytes, Error = std::convert::Infallible> + Unpin {
        let frames: Vec<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>> = (0..n)
            .map(|_| Ok(hyper::body::Frame::data(Bytes::from(vec![7u8; size]))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn bodies_hold_their_share_until_dropped() {
        let budget = Budget::new(1000, 1000);
        let b = read_whole(
            Full::new(Bytes::from(vec![1u8; 600])),
            1000,
            &budget,
            0,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        assert_eq!(b.len(), 600);
        assert_eq!(budget.available(), 400);
        // A second one does not fit: refused at once, nothing kept.
        let second = read_whole(
            Full::new(Bytes::from(vec![1u8; 600])),
            1000,
            &budget,
            0,
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(second, Err(WholeBodyError::Busy));
        assert_eq!(budget.available(), 400);
        let clone = b.clone();
        drop(b);
        assert_eq!(budget.available(), 400, "a clone still holds it");
        drop(clone);
        assert_eq!(budget.available(), 1000);
    }

    #[tokio::test]
    async fn streamed_bodies_count_their_growth_and_their_limit() {
        let budget = Budget::new(1 << 20, 1 << 20);
        let b = read_whole(chunks(10, 1000), 20_000, &budget, 0, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(b.len(), 10_000);
        assert!(budget.available() <= (1 << 20) - 10_000);
        drop(b);
        assert_eq!(budget.available(), 1 << 20);
        let big = read_whole(chunks(30, 1000), 20_000, &budget, 0, Duration::from_secs(1)).await;
        assert_eq!(big, Err(WholeBodyError::TooLarge(20_000)));
        assert_eq!(
            budget.available(),
            1 << 20,
            "a refused body gives its share back"
        );
        let small_budget = Budget::new(5_000, 5_000);
        let busy = read_whole(
            chunks(10, 1000),
            20_000,
            &small_budget,
            0,
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(busy, Err(WholeBodyError::Busy));
        assert_eq!(small_budget.available(), 5_000);
    }

    #[tokio::test]
    async fn one_namespace_holds_at_most_its_share_and_others_still_fit() {
        let budget = Budget::new(1000, 500);
        let read = |tenant| {
            read_whole(
                Full::new(Bytes::from(vec![1u8; 300])),
                1000,
                &budget,
                tenant,
                Duration::from_secs(1),
            )
        };
        let first = read(7).await.unwrap();
        // A second body from namespace 7 would pass its share of 500.
        assert_eq!(read(7).await, Err(WholeBodyError::TenantBusy));
        assert_eq!(budget.available(), 700, "the refusal took nothing");
        // Another namespace still has its share.
        let other = read(8).await.unwrap();
        assert_eq!(budget.available(), 400);
        // Past the budget itself: refused, whoever asks.
        let third = read(9).await.unwrap();
        assert_eq!(read(10).await, Err(WholeBodyError::Busy));
        drop((first, other, third));
        assert_eq!(budget.available(), 1000);
        assert!(
            read(7).await.is_ok(),
            "a share comes back once its bodies are gone"
        );
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let budget = Budget::new(1 << 20, 1 << 20);
        let r = read_whole(
            Full::new(Bytes::from(vec![0u8; 2000])),
            1000,
            &budget,
            0,
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(r, Err(WholeBodyError::TooLarge(1000)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_ends_times_out() {
        let budget = Budget::new(1 << 20, 1 << 20);
        let pending = StreamBody::new(futures_util::stream::pending::<
            Result<hyper::body::Frame<Bytes>, std::convert::Infallible>,
        >());
        let r = read_whole(pending, 1000, &budget, 0, Duration::from_secs(5)).await;
        assert_eq!(r, Err(WholeBodyError::Timeout(Duration::from_secs(5))));
        assert_eq!(budget.available(), 1 << 20);
    }
}
