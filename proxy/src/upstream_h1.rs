//! HTTP/1.1 toward targets for the requests hyper serves (HTTP/2 clients,
//! auth policies, chunked uploads...), on the worker's own pool of target
//! connections (the one the fast path uses).
//!
//! hyper-util's pooled client cost, per request, a pool checkout (a SipHash
//! of the key, a lock), a channel hop to the connection's own task and a
//! wake-up back. Here the request's task writes the head and body to the
//! connection itself, and the response body reads it directly; when the
//! body ends, the connection goes back to the pool.

use std::{
    cell::RefCell,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::AsyncWriteExt as _;

use crate::{
    head::field,
    head::WriteFields,
    http1::{self, Framing},
    netns::NsId,
    pool,
    upstream::{Conn, SendError},
    BoxError, UpstreamBody,
};

/// Sends `req` to `target` (namespace `ns`) over HTTP/1.1 and returns the
/// response head; its body streams from the connection.
///
/// The head is written before the future is made: the future then holds
/// only the head's bytes and the body, not the request (a request's parts
/// kept in it, twice over as argument and local, made it too large for
/// the allocator's per-thread cache, and every move copied them).
pub(crate) fn send<'a>(
    connector: &'a crate::upstream::NsConnector,
    ns: NsId,
    target: SocketAddr,
    host: Option<&str>,
    req: Request<UpstreamBody>,
    fields: &impl WriteFields,
) -> impl std::future::Future<Output = Result<Response<TargetBody>, SendError>> + Send + 'a {
    let (parts, body) = req.into_parts();
    let head = request_head(parts, &body, host, target, fields);
    exchange(connector, ns, target, head, body)
}

/// The head for the target, and how the body goes after it.
struct RequestHead {
    head: Vec<u8>,
    head_request: bool,
    chunked: bool,
}

fn request_head(
    mut parts: http::request::Parts,
    body: &UpstreamBody,
    host: Option<&str>,
    target: SocketAddr,
    fields: &impl WriteFields,
) -> RequestHead {
    crate::head::strip_hop_by_hop(&mut parts.headers);
    let head_request = parts.method == http::Method::HEAD;
    let mut head = Vec::with_capacity(1024);
    head.extend_from_slice(parts.method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(
        parts
            .uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str)
            .as_bytes(),
    );
    head.extend_from_slice(b" HTTP/1.1\r\n");
    if !parts.headers.contains_key(http::header::HOST) {
        // HTTP/2 clients name the host in :authority.
        let host = host.map_or_else(|| target.to_string(), str::to_owned);
        field(&mut head, b"host", host.as_bytes());
    }
    write_client_fields(&mut head, &parts.headers);
    fields.write_fields(&mut head);
    // The body's framing is ours to choose: a length when it is known,
    // chunked when it is not.
    let chunked = if body.is_end_stream() {
        crate::head::write_length(&mut head, &parts.method, 0);
        false
    } else if let Some(n) = body.size_hint().exact() {
        crate::head::write_length(&mut head, &parts.method, n);
        false
    } else {
        field(&mut head, b"transfer-encoding", b"chunked");
        true
    };
    head.extend_from_slice(b"\r\n");
    RequestHead {
        head,
        head_request,
        chunked,
    }
}

/// The client's fields the target gets, from a map [`crate::head::strip_hop_by_hop`]
/// has been over (so `Connection` and what it listed are gone); see
/// [`crate::head::forwarded_request_field`]. Content-Length is written by
/// the caller.
fn write_client_fields(head: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        if name == http::header::CONTENT_LENGTH {
            continue;
        }
        let name = name.as_str().as_bytes();
        if let Some(value) = crate::head::forwarded_request_field(name, value.as_bytes(), |_| false)
        {
            field(head, name, value);
        }
    }
}

/// [`write_client_fields`] of a client's map, hop-by-hop fields stripped
/// first as [`request_head`] does: the fast path's tests compare the two
/// paths with it.
#[cfg(any(test, fuzzing))]
pub(crate) fn client_fields(mut headers: HeaderMap) -> Vec<u8> {
    crate::head::strip_hop_by_hop(&mut headers);
    let mut out = Vec::new();
    write_client_fields(&mut out, &headers);
    out
}

/// Writes the head and the body on a pooled connection (a new one if none
/// is left, or if the pooled one turns out closed before taking anything)
/// and reads the response head.
async fn exchange(
    connector: &crate::upstream::NsConnector,
    ns: NsId,
    target: SocketAddr,
    head: RequestHead,
    mut body: UpstreamBody,
) -> Result<Response<TargetBody>, SendError> {
    let RequestHead {
        head,
        head_request,
        chunked,
    } = head;
    let mut pooled = pool::take_pooled(ns, target);
    let mut stream = loop {
        let reused = pooled.is_some();
        let mut stream = match pooled.take() {
            Some(s) => s,
            // Boxed: rare (pooled connections are the rule) and large.
            None => Box::pin(connector.connect(ns, target))
                .await
                .map_err(|e| SendError::Connect(e.to_string()))?,
        };
        match stream.write_all(&head).await {
            Ok(()) => break stream,
            // The target had closed the pooled connection; nothing of the
            // request was taken, so it goes on a new one.
            Err(_) if reused => {}
            Err(e) => return Err(SendError::Request(e.to_string())),
        }
    };
    write_body(&mut stream, &mut body, chunked).await?;
    let request = |e: &dyn std::fmt::Display| SendError::Request(e.to_string());
    // Nothing held while the target works: a busy worker has a request of
    // every connection out at once (as the fast path does).
    drop(head);
    stream.answer_ready().await.map_err(|e| request(&e))?;
    let mut buf = response_buf();
    let (status, headers, framing, reusable) = loop {
        buf.reserve(8192);
        let end = http1::read_response_head(&mut stream, &mut buf)
            .await
            .map_err(SendError::Request)?;
        let mut headers = ResponseHeaders::new(&buf[..end]);
        let parsed = http1::parse_response_with(&buf[..end], head_request, |_, fields| {
            fields.iter().try_for_each(|h| headers.add(h))
        })
        .map_err(SendError::Request)?;
        if parsed.status.is_informational() {
            if parsed.status == http::StatusCode::SWITCHING_PROTOCOLS {
                return Err(SendError::Request("unexpected 101 response".into()));
            }
            let _ = buf.split_to(end);
            continue;
        }
        let headers = headers.map;
        let _ = buf.split_to(end);
        break (parsed.status, headers, parsed.framing, parsed.reusable);
    };
    let mut resp = Response::new(TargetBody {
        stream: Some(stream),
        buf,
        framing,
        reusable,
        ns,
        target,
        done: false,
    });
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

/// The client's body, as hyper decoded it, framed by the proxy: chunked or
/// as is under the Content-Length the head gave. Trailers are dropped
/// (HTTP/1.1 targets get none).
async fn write_body(
    stream: &mut Conn,
    body: &mut UpstreamBody,
    chunked: bool,
) -> Result<(), SendError> {
    let request = |e: &dyn std::fmt::Display| SendError::Request(e.to_string());
    while let Some(frame) = body.frame().await {
        // The client's body, as hyper decoded it: a failure here is the
        // client's (a malformed chunk, a length it did not keep).
        let frame = frame.map_err(|e| SendError::ClientBody(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if chunked {
            stream
                .write_all(format!("{:x}\r\n", data.len()).as_bytes())
                .await
                .map_err(|e| request(&e))?;
            stream.write_all(&data).await.map_err(|e| request(&e))?;
            stream.write_all(b"\r\n").await.map_err(|e| request(&e))?;
        } else {
            stream.write_all(&data).await.map_err(|e| request(&e))?;
        }
    }
    if chunked {
        stream
            .write_all(b"0\r\n\r\n")
            .await
            .map_err(|e| request(&e))?;
    }

    Ok(())
}

/// The fields of a response head, gathered into a `HeaderMap` while the
/// head is parsed (one parse for framing and fields).
///
/// The values share one copy of the head: one allocation per response
/// instead of one per value. The copy is the head's own bytes, not the read
/// buffer: sharing that buffer (`Bytes::slice_ref` on it, tried in the
/// fourth session) kept it alive, so the body's reads needed a second one
/// and RSS at 64 HTTP/2 connections rose by 1.5-2 MiB.
struct ResponseHeaders<'h> {
    head: &'h [u8],
    copy: Option<Bytes>,
    map: HeaderMap,
}

impl<'h> ResponseHeaders<'h> {
    fn new(head: &'h [u8]) -> Self {
        Self {
            head,
            copy: None,
            // A few fields, and the `date` hyper adds when the target sent
            // none.
            map: HeaderMap::with_capacity(8),
        }
    }

    fn add(&mut self, h: &httparse::Header<'_>) -> Result<(), String> {
        let invalid = |e: &dyn std::fmt::Display| format!("invalid response head: {e}");
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|e| invalid(&e))?;
        // httparse hands out slices of `head`.
        let at = (h.value.as_ptr() as usize).wrapping_sub(self.head.as_ptr() as usize);
        let value = if at <= self.head.len() && h.value.len() <= self.head.len() - at {
            let copy = self
                .copy
                .get_or_insert_with(|| Bytes::copy_from_slice(self.head));
            HeaderValue::from_maybe_shared(copy.slice(at..at + h.value.len()))
        } else {
            HeaderValue::from_bytes(h.value)
        }
        .map_err(|e| invalid(&e))?;
        self.map.append(name, value);
        Ok(())
    }
}

/// A response body read from the target connection; the connection goes
/// back to the worker's pool when the body ends where its framing says.
#[derive(Debug)]
pub(crate) struct TargetBody {
    stream: Option<Conn>,
    buf: BytesMut,
    framing: Framing,
    reusable: bool,
    ns: NsId,
    target: SocketAddr,
    done: bool,
}

impl TargetBody {
    fn end(&mut self, clean: bool) {
        self.done = true;
        if let Some(stream) = self.stream.take() {
            if clean && self.reusable && self.buf.is_empty() {
                pool::put(self.ns, self.target, stream);
            }
        }
        if self.buf.is_empty() {
            give_back(std::mem::take(&mut self.buf));
        }
    }
}

thread_local! {
    /// Read buffers of finished responses, for this worker's next ones.
    /// A fresh 8 KiB buffer per response was beyond the allocator's
    /// per-thread cache: a slow allocation and free per request.
    static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// Buffers kept per worker (8 KiB each).
const MAX_SPARE: usize = 16;

/// A buffer for a response: a spare one whose earlier contents have all
/// been sent on (so its memory is free again), or a new one.
fn response_buf() -> BytesMut {
    SPARE
        .with(|s| {
            let mut s = s.borrow_mut();
            // One still shared with data in flight is let go; its memory
            // is freed when that data is.
            while let Some(mut b) = s.pop() {
                if b.try_reclaim(http1::CHUNK) {
                    return Some(b);
                }
            }
            None
        })
        .unwrap_or_else(|| BytesMut::with_capacity(http1::CHUNK))
}

fn give_back(b: BytesMut) {
    if b.capacity() == 0 {
        return;
    }
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < MAX_SPARE {
            s.push(b);
        }
    });
}

impl Body for TargetBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if matches!(this.framing, Framing::Length(0)) {
                this.end(true);
                return Poll::Ready(None);
            }
            if !this.buf.is_empty() {
                let (data, ended) = match this.framing.decode(&mut this.buf) {
                    Ok(x) => x,
                    Err(()) => {
                        this.end(false);
                        return Poll::Ready(Some(Err("malformed chunked body".into())));
                    }
                };
                if ended {
                    this.end(true);
                }
                if !data.is_empty() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                continue;
            }
            let Some(stream) = this.stream.as_mut() else {
                return Poll::Ready(None);
            };
            this.buf.reserve(http1::CHUNK);
            // `poll_read` for the same reason as the head's reads above.
            match tokio_util::io::poll_read_buf(Pin::new(stream), cx, &mut this.buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    // The end of a close-delimited body; any other was cut.
                    let whole = matches!(this.framing, Framing::Close);
                    this.end(false);
                    if whole {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err("target closed the connection mid-body".into())));
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    this.end(false);
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || matches!(self.framing, Framing::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_of(head: &[u8]) -> Result<(http1::ResponseHead, HeaderMap), String> {
        let mut headers = ResponseHeaders::new(head);
        let parsed = http1::parse_response_with(head, false, |_, fields| {
            fields.iter().try_for_each(|h| headers.add(h))
        })?;
        Ok((parsed, headers.map))
    }

    #[test]
    fn one_parse_gives_framing_and_every_field_in_order() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nSet-Cookie: a=1\r\n\
                     X-Custom: caf\xc3\xa9\r\nSet-Cookie: b=2\r\nContent-Length: 5\r\n\r\n";
        let (parsed, map) = headers_of(head).expect("valid head");
        assert_eq!(parsed.status, http::StatusCode::OK);
        assert!(matches!(parsed.framing, Framing::Length(5)));
        assert!(parsed.reusable);
        assert_eq!(map["content-type"], "application/json");
        let cookies: Vec<_> = map.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(map["x-custom"].as_bytes(), "café".as_bytes());
        assert_eq!(map["content-length"], "5");
        assert_eq!(map.len(), 5);
    }

    #[test]
    fn a_field_hyper_cannot_carry_fails_the_response() {
        // httparse takes a DEL in a value; an HTTP header value cannot hold
        // one.
        let Err(err) = headers_of(b"HTTP/1.1 200 OK\r\nX-Bad: a\x7fb\r\nContent-Length: 0\r\n\r\n")
        else {
            panic!("a DEL in a value was taken");
        };
        assert!(err.contains("invalid response head"), "{err}");
    }
}
