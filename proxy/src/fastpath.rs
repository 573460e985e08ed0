//! The HTTP/1.1 fast path: plain forwarding without hyper.
//!
//! Most requests through a service network are HTTP/1.1 forwarded to an
//! HTTP/1.1 target with no auth policy. Through hyper, each cost a server
//! dispatch, a pool checkout, a channel hop to the upstream connection's
//! task, a `HeaderMap` and boxed bodies; the profile showed that machinery
//! as the largest part of latticed's own time. Here the request head is
//! parsed with `httparse`, rewritten into one buffer and written to an
//! upstream connection from the worker's own pool, and the response is
//! relayed byte for byte (its framing kept), all on the client connection's
//! task.
//!
//! Anything else goes to hyper, which then serves the rest of the
//! connection: auth policies, functions, HTTP/2, gRPC and HTTPS targets,
//! fixed responses, unknown hosts, chunked request bodies, `Upgrade`,
//! `Expect`, HTTP/1.0, and malformed or oversized heads (hyper answers 400
//! and 431). [`serve`] hands back the bytes it has read so hyper sees the
//! connection from the request that did not qualify.

use std::{
    cell::RefCell,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use http::StatusCode;
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::TcpStream,
};

use crate::{
    head,
    http1::{
        self, head_end, parse_length, parse_response_with, Framing, ResponseHead, CHUNK,
        MAX_HEADERS,
    },
    pool::{put, take_pooled},
    request::{self, Conn, Finish, RequestFacts},
    routing::{Action, GroupKind, ListenerKey, NsId, Served, TargetGroupRoute, TargetVersion},
    upstream::Conn as TargetConn,
    Dataplane,
};

/// Spare buffers kept per worker (at most 512 KiB: buffers grown past
/// twice `CHUNK` are freed).
const MAX_SPARE: usize = 32;

/// How a connection left the fast path.
pub(crate) enum End<I> {
    /// It is finished (closed by either side, timed out, or failed).
    Closed,
    /// A request needs hyper: serve `io` with hyper, replaying `buffered`
    /// first.
    Fallback {
        /// The client connection.
        io: I,
        /// Bytes read from it and not yet handled.
        buffered: Vec<u8>,
    },
}

/// A client transport.
pub(crate) trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send {
    /// Waits until the client sends something, where the transport can tell
    /// without reading, so an idle connection holds no buffer.
    fn wait_readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> + Send;
}

impl ClientIo for TcpStream {
    fn wait_readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        self.readable()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> ClientIo for tokio_rustls::server::TlsStream<S> {
    fn wait_readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        // rustls may hold decrypted bytes already; read to find out.
        std::future::ready(Ok(()))
    }
}

/// Serves HTTP/1.1 requests on `io` until the client leaves or a request
/// needs hyper.
pub(crate) async fn serve<I: ClientIo>(dp: &Arc<Dataplane>, conn: &Conn, mut io: I) -> End<I> {
    let key = ListenerKey {
        ns: conn.ns,
        vip: *conn.local.ip(),
        port: conn.local.port(),
    };
    let mut buf: Vec<u8> = Vec::new();
    // One timer for the connection's life, for the idle wait and then the
    // exchange with the target, moved later at each use. A fresh timeout
    // per wait took the timer wheel's lock twice (insert, then remove) per
    // request; moving a pending timer later is one atomic store, and the
    // wheel sees it only if the old deadline comes first. (With a
    // request timeout shorter than the idle timeout a move is earlier,
    // and re-registers as before.)
    let mut timer = std::pin::pin!(tokio::time::sleep(dp.config.idle_timeout));
    loop {
        if buf.is_empty() {
            // Between requests: hold no buffer while waiting.
            give_back(std::mem::take(&mut buf));
            timer
                .as_mut()
                .reset(tokio::time::Instant::now() + dp.config.idle_timeout);
            tokio::select! {
                biased;
                ready = io.wait_readable() => if ready.is_err() {
                    return End::Closed;
                },
                () = timer.as_mut() => return End::Closed,
            }
            buf = take();
        }
        let head_len = match read_head(dp, &mut io, &mut buf, timer.as_mut()).await {
            Head::Complete(n) => n,
            Head::Closed => {
                give_back(buf);
                return End::Closed;
            }
            Head::Other => return End::Fallback { io, buffered: buf },
        };
        let mut out = take();
        let Some(prepared) = prepare(dp, conn, key, &buf[..head_len], &mut out) else {
            give_back(out);
            return End::Fallback { io, buffered: buf };
        };
        buf.drain(..head_len);
        // Boxed: the exchange's state is large and only needed while a
        // request is open, so an idle connection's task stays small.
        let keep = Box::pin(forward(
            dp,
            &mut io,
            &mut buf,
            out,
            prepared,
            timer.as_mut(),
        ))
        .await;
        if !keep {
            let _ = io.shutdown().await;
            give_back(buf);
            return End::Closed;
        }
    }
}

enum Head {
    Complete(usize),
    Closed,
    /// Malformed, too large, or the client stopped mid-head: hyper
    /// decides (400, 431, or nothing to do).
    Other,
}

/// Reads until `buf` holds a whole request head; returns its length.
/// Until the head's first byte the connection's `timer` keeps the idle
/// deadline the caller set; from then on it holds the header deadline. That
/// is set only when a read after the first byte is needed: a head that
/// arrives in one read, as nearly all do, costs no timer work here.
async fn read_head<I: ClientIo>(
    dp: &Dataplane,
    io: &mut I,
    buf: &mut Vec<u8>,
    mut timer: std::pin::Pin<&mut tokio::time::Sleep>,
) -> Head {
    let limit = dp.config.max_header_bytes;
    let mut header_deadline = false;
    let mut scanned = 0;
    loop {
        if let Some(end) = head_end(buf, scanned) {
            return if end > limit {
                Head::Other
            } else {
                Head::Complete(end)
            };
        }
        scanned = buf.len().saturating_sub(3);
        if buf.len() > limit {
            return Head::Other;
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(CHUNK);
        }
        if !buf.is_empty() && !header_deadline {
            header_deadline = true;
            timer
                .as_mut()
                .reset(tokio::time::Instant::now() + dp.config.header_read_timeout);
        }
        let read = tokio::select! {
            biased;
            read = io.read_buf(buf) => Some(read),
            () = timer.as_mut() => None,
        };
        match read {
            Some(Ok(0) | Err(_)) if buf.is_empty() => return Head::Closed,
            Some(Ok(0) | Err(_)) => return Head::Other,
            Some(Ok(_)) => {}
            None => {
                tracing::debug!("request headers not received in time; closing");
                return Head::Closed;
            }
        }
    }
}

/// A request the fast path takes: routed, its head rewritten into `out`.
struct Prepared {
    served: Arc<Served>,
    group: Arc<TargetGroupRoute>,
    ns: NsId,
    target: SocketAddr,
    /// Request body bytes still to copy from the client after `out`.
    body_left: u64,
    head: bool,
    close: bool,
    facts: Option<Box<RequestFacts>>,
    start: Instant,
}

/// Parses and routes the head in `head` and writes the request for the
/// target into `out`; `None` when hyper must take it.
fn prepare(
    dp: &Dataplane,
    conn: &Conn,
    key: ListenerKey,
    head: &[u8],
    out: &mut Vec<u8>,
) -> Option<Prepared> {
    let start = Instant::now();
    // Uninitialized: httparse fills what it finds, and writing 64 empty
    // fields first was 2 KiB of stores per request.
    let mut slots = [std::mem::MaybeUninit::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    if !matches!(
        req.parse_with_uninit_headers(head, &mut slots),
        Ok(httparse::Status::Complete(_))
    ) || req.version != Some(1)
    {
        return None;
    }
    let method = req.method?;
    let target_path = req.path?;
    if !target_path.starts_with('/') || method == "CONNECT" {
        return None;
    }
    let fields = Fields::scan(req.headers)?;
    let (host, content_length, close) = (fields.host?, fields.content_length, fields.close);
    let method_h = http::Method::from_bytes(method.as_bytes()).ok()?;
    let (raw_path, query) = match target_path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target_path, None),
    };
    // What cannot be normalised is the hyper path's to refuse (400).
    let path = head::normalize_path(raw_path).ok()?;
    let path: &str = &path;
    let (served, group, ns, target) = route(dp, key, host, (&method_h, path), req.headers)?;
    // The request for the target: the client's head minus hop-by-hop
    // fields and the ones only the proxy may set, plus Lattice's.
    let request_id = request::request_id();
    write_request_line(out, method, path, query);
    write_request_fields(out, req.headers, fields.listed());
    // The body's length as the proxy read it, once.
    head::write_length(out, &method_h, content_length.unwrap_or(0));
    // No auth policy on this path, so no caller identity.
    request::ProxyFields {
        conn,
        served: &served,
        group: &group,
        request_id: &request_id,
        identity: None,
    }
    .write(out);
    out.extend_from_slice(b"\r\n");

    let logging = !served.listener.logs.is_empty() || !served.network.logs.is_empty();
    let facts = logging.then(|| {
        RequestFacts::from_parts(
            method,
            target_path,
            "HTTP/1.1",
            fields
                .user_agent
                .and_then(|v| std::str::from_utf8(v).ok())
                .unwrap_or("-"),
            Some(host),
            conn,
            std::str::from_utf8(&request_id).unwrap_or("-"),
        )
    });
    Some(Prepared {
        served,
        ns,
        target,
        group,
        body_left: content_length.unwrap_or(0),
        head: method == "HEAD",
        close,
        facts,
        start,
    })
}

/// The request line toward the target: the normalised path, the query as
/// the client sent it.
fn write_request_line(out: &mut Vec<u8>, method: &str, path: &str, query: Option<&str>) {
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    if let Some(q) = query {
        out.push(b'?');
        out.extend_from_slice(q.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
}

/// What the fast path reads from a request's fields.
struct Fields<'h> {
    host: Option<&'h str>,
    content_length: Option<u64>,
    /// `Connection: close`.
    close: bool,
    /// Checked as UTF-8 only if a log line wants it.
    user_agent: Option<&'h [u8]>,
    /// The other names `Connection` lists (the fast path keeps eight).
    listed: [&'h [u8]; 8],
    n_listed: usize,
}

impl<'h> Fields<'h> {
    /// `None` when hyper must take the request: a second Host, lengths
    /// that disagree, a body framing, upgrade or expectation the fast path
    /// does not carry, a `Connection` naming framing fields or listing more
    /// than eight names.
    fn scan(headers: &[httparse::Header<'h>]) -> Option<Self> {
        let mut host = None;
        let mut content_length: Option<u64> = None;
        let mut close = false;
        let mut user_agent = None;
        let mut listed: [&[u8]; 8] = [b""; 8];
        let mut n_listed = 0;
        for h in headers {
            let name = h.name.as_bytes();
            if name.eq_ignore_ascii_case(b"host") {
                if host.is_some() {
                    return None;
                }
                host = Some(std::str::from_utf8(h.value).ok()?);
            } else if name.eq_ignore_ascii_case(b"content-length") {
                let n = parse_length(h.value)?;
                if content_length.is_some_and(|c| c != n) {
                    return None;
                }
                content_length = Some(n);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding")
                || name.eq_ignore_ascii_case(b"upgrade")
                || name.eq_ignore_ascii_case(b"expect")
            {
                return None;
            } else if name.eq_ignore_ascii_case(b"connection") {
                // Refused (400) by the hyper path, as is a second Host.
                if head::connection_names_framing(h.value).is_some() {
                    return None;
                }
                for token in head::connection_tokens(h.value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else {
                        *listed.get_mut(n_listed)? = token;
                        n_listed += 1;
                    }
                }
            } else if name.eq_ignore_ascii_case(b"user-agent") {
                // Checked as UTF-8 only if a log line wants it.
                user_agent = Some(h.value);
            }
        }
        Some(Self {
            host,
            content_length,
            close,
            user_agent,
            listed,
            n_listed,
        })
    }

    fn listed(&self) -> &[&'h [u8]] {
        &self.listed[..self.n_listed]
    }
}

/// The service, group and target for a request the fast path can carry:
/// no auth policy, a forward whose every group is a plain HTTP/1.1 one.
/// `None` hands it to hyper (which answers a refusal or a fixed response).
fn route(
    dp: &Dataplane,
    key: ListenerKey,
    host: &str,
    (method, path): (&http::Method, &str),
    headers: &[httparse::Header<'_>],
) -> Option<(Arc<Served>, Arc<TargetGroupRoute>, NsId, SocketAddr)> {
    let served = {
        let table = dp.routes.load();
        Arc::clone(table.listeners.get(&key)?.route(Some(host))?)
    };
    if served.listener.auth.is_some() || served.network.auth.is_some() {
        return None;
    }
    let action = if served
        .listener
        .rules
        .iter()
        .all(|r| r.matcher.headers.is_empty())
    {
        served
            .listener
            .action_for(method, path, &http::HeaderMap::new())
    } else {
        let mut map = http::HeaderMap::with_capacity(headers.len());
        for h in headers {
            let name = http::HeaderName::from_bytes(h.name.as_bytes()).ok()?;
            map.append(name, http::HeaderValue::from_bytes(h.value).ok()?);
        }
        served.listener.action_for(method, path, &map)
    };
    let Action::Forward(forward) = action else {
        return None;
    };
    // A request is routed once: if any group it may be weighted to needs
    // hyper, hyper picks. Picking here and handing a function's share to
    // hyper, which picked again, skewed a 2:1 split to 8:1.
    if !forward.groups().all(|g| fast_group(g)) {
        return None;
    }
    let group = Arc::clone(forward.pick()?);
    // Plain HTTP/1.1 targets, as `fast_group` checked.
    let GroupKind::Hosts { ns, .. } = &group.kind else {
        return None;
    };
    let target = group.next_target()?.addr;
    let ns = *ns;
    Some((served, group, ns, target))
}

/// The client's fields the target gets (see
/// [`head::forwarded_request_field`]); `listed` holds the names the
/// `Connection` fields list. Content-Length is written by the caller.
pub(crate) fn write_request_fields(
    out: &mut Vec<u8>,
    fields: &[httparse::Header<'_>],
    listed: &[&[u8]],
) {
    let listed = |name: &[u8]| listed.iter().any(|l| l.eq_ignore_ascii_case(name));
    for h in fields {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            continue;
        }
        if let Some(value) = head::forwarded_request_field(name, h.value, listed) {
            head::field(out, name, value);
        }
    }
}

/// The fields each HTTP/1.1 path forwards for `head`: the fast path's
/// writer over httparse's fields, and the hyper path's (`upstream_h1`)
/// over the `HeaderMap` hyper makes of the same head. Names lowercased
/// and sorted: hyper's map keeps neither case nor order across names.
/// `None` when httparse finds no complete head, or hyper would refuse a
/// field the fast path took (then hyper answers the request, 400).
#[cfg(any(test, fuzzing))]
pub(crate) fn forwarded_by_both(head: &[u8]) -> Option<(Vec<String>, Vec<String>)> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    if !req.parse(head).ok()?.is_complete() {
        return None;
    }
    let listed: Vec<&[u8]> = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| head::connection_tokens(h.value))
        .filter(|t| !t.eq_ignore_ascii_case(b"close"))
        .collect();
    let mut fast = Vec::new();
    write_request_fields(&mut fast, req.headers, &listed);
    let mut map = http::HeaderMap::new();
    for h in req.headers.iter() {
        map.append(
            http::HeaderName::from_bytes(h.name.as_bytes()).ok()?,
            http::HeaderValue::from_bytes(h.value).ok()?,
        );
    }
    let slow = crate::upstream_h1::client_fields(map);
    let lines = |b: &[u8]| {
        let mut v: Vec<String> = b
            .split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let l = l.strip_suffix(b"\r").unwrap_or(l);
                let at = l.iter().position(|&c| c == b':').unwrap_or(l.len());
                let (n, v) = l.split_at(at);
                format!(
                    "{}{}",
                    String::from_utf8_lossy(n).to_ascii_lowercase(),
                    String::from_utf8_lossy(v)
                )
            })
            .collect();
        v.sort();
        v
    };
    Some((lines(&fast), lines(&slow)))
}

/// Whether the fast path can send to `group`: plain HTTP/1.1 targets, at
/// least one of them.
fn fast_group(group: &TargetGroupRoute) -> bool {
    matches!(
        &group.kind,
        GroupKind::Hosts {
            https: false,
            tcp: false,
            version: TargetVersion::Http1,
            targets,
            ..
        } if !targets.is_empty()
    )
}

/// Response fields not passed to clients (hop-by-hop; the framing fields
/// stay, because the body is relayed with its framing).
fn dropped_response_field(name: &[u8]) -> bool {
    const DROPPED: [&[u8]; 6] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"upgrade",
    ];
    DROPPED
        .iter()
        .any(|d| d.len() == name.len() && d.eq_ignore_ascii_case(name))
}

/// Sends the prepared request, relays the answer, and records it. Returns
/// whether the client connection can carry another request.
async fn forward<I: ClientIo>(
    dp: &Arc<Dataplane>,
    io: &mut I,
    buf: &mut Vec<u8>,
    mut out: Vec<u8>,
    mut p: Prepared,
    mut timer: std::pin::Pin<&mut tokio::time::Sleep>,
) -> bool {
    p.body_arrived(buf, &mut out);
    // The request's start stands for "now": a few microseconds earlier,
    // and a clock read fewer per request.
    timer
        .as_mut()
        .reset(tokio::time::Instant::from_std(p.start) + dp.config.request_timeout);
    // Taken when the target's answer is there (`send_and_read`).
    let mut ubuf = Vec::new();
    let exchange = tokio::select! {
        biased;
        done = exchange(dp, io, buf, &mut out, &mut ubuf, &mut p) => Ok(done),
        () = timer.as_mut() => Err(()),
    };
    // Only the access log reports it.
    let to_target = if p.facts.is_some() {
        p.start.elapsed()
    } else {
        Duration::ZERO
    };
    let exchange = match exchange {
        Ok(Ok(x)) => Ok(x),
        Ok(Err(failure)) => Err(p.failure(failure)),
        Err(()) => {
            tracing::warn!(service = %p.served.listener.service, target_group = %p.group.name, target = %p.target, "target timed out");
            Err(Some(crate::failure::Failure::TargetTimeout))
        }
    };
    let (mut upstream, resp) = match exchange {
        Ok(x) => x,
        Err(Some(failure)) => return answer_error(dp, io, out, ubuf, p, failure, to_target).await,
        Err(None) => {
            give_back(out);
            give_back(ubuf);
            return false;
        }
    };
    let keep_client = !p.close && !matches!(resp.framing, Framing::Close);
    let mut finish = finish(dp, &mut p, resp.status, "-", to_target);

    // The response head for the client (its status line and fields are in
    // `out` already, see `send_and_read`), then the body as it comes.
    if !keep_client {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let mut framing = resp.framing;
    let first = first_bytes(&mut framing, &ubuf[resp.head_len..], &mut out);
    let (mut sent, mut upstream_ok) = (first.sent, first.ok);
    // From here each write to the client and each read from the target
    // must move within the idle timeout: a client that stops reading (or
    // a target that stops sending) would otherwise hold both connections.
    let idle = dp.config.idle_timeout;
    let mut client_ok = moving(timer.as_mut(), idle, io.write_all(&out))
        .await
        .is_some_and(|r| r.is_ok());
    if !first.done && client_ok {
        let relay = Relay {
            timer: timer.as_mut(),
            idle,
        };
        let up = &mut upstream.stream;
        let (client, target) = relay.body(io, up, &mut ubuf, &mut framing, &mut sent).await;
        client_ok &= client;
        upstream_ok &= target;
    }
    finish.set_bytes_sent(sent);
    drop(finish);
    if upstream_ok && !first.leftover && resp.reusable && p.body_left == 0 {
        put(p.ns, p.target, upstream.stream);
    }
    give_back(out);
    give_back(ubuf);
    client_ok && keep_client
}

/// What came with the response head, relayed into `out`.
struct First {
    /// The body ended within it.
    done: bool,
    /// Bytes followed the body's end (the connection is not reused).
    leftover: bool,
    /// Body bytes relayed.
    sent: u64,
    /// The framing held (false: the connection is not reused).
    ok: bool,
}

/// Relays the body bytes that arrived with the response head (`rest`)
/// into `out`, as `framing` reads them.
fn first_bytes(framing: &mut Framing, rest: &[u8], out: &mut Vec<u8>) -> First {
    let mut ok = true;
    let take = framing.take(rest).unwrap_or_else(|()| {
        ok = false;
        crate::http1::Take {
            body: rest.len(),
            done: true,
            trailers: None,
        }
    });
    let (done, leftover) = (take.done, take.body < rest.len());
    let relayed = take.relayed(rest);
    out.extend_from_slice(&relayed);
    First {
        done,
        leftover,
        sent: relayed.len() as u64,
        ok,
    }
}

impl Prepared {
    /// Whatever of the body has arrived (in `buf`, after the head) moves to
    /// `out`, to travel in the same write as the head.
    fn body_arrived(&mut self, buf: &mut Vec<u8>, out: &mut Vec<u8>) {
        let have = usize::try_from(self.body_left).map_or(buf.len(), |n| n.min(buf.len()));
        out.extend_from_slice(&buf[..have]);
        buf.drain(..have);
        self.body_left -= have as u64;
        if let Some(f) = self.facts.as_mut() {
            f.set_body_bytes(have as u64 + self.body_left);
        }
    }

    /// The Lattice failure a failed exchange answers, logged; `None` when
    /// the client itself went away (nothing to answer).
    fn failure(&self, failure: Failure) -> Option<crate::failure::Failure> {
        let (service, group, target) =
            (&self.served.listener.service, &self.group.name, self.target);
        match failure {
            Failure::Connect(e) => {
                tracing::warn!(%service, target_group = %group, %target, error = %e, "target connection failed");
                Some(crate::failure::Failure::TargetConnectionFailed)
            }
            Failure::Request(e) | Failure::Unsent(e) => {
                tracing::warn!(%service, target_group = %group, %target, error = %e, "target request failed");
                Some(crate::failure::Failure::TargetRequestFailed)
            }
            Failure::Client => None,
        }
    }
}

/// Copies a response body from target to client once its first bytes are
/// relayed, each read and write bounded by the idle timeout: a client that
/// stops reading (or a target that stops sending) would otherwise hold
/// both connections.
struct Relay<'t> {
    timer: std::pin::Pin<&'t mut tokio::time::Sleep>,
    idle: Duration,
}

impl Relay<'_> {
    /// Relays until `framing` says the body is done; adds what it sent to
    /// `sent`. Returns whether the client and the target connections are
    /// still good for another exchange.
    async fn body<I: ClientIo>(
        mut self,
        io: &mut I,
        up: &mut TargetConn,
        ubuf: &mut Vec<u8>,
        framing: &mut Framing,
        sent: &mut u64,
    ) -> (bool, bool) {
        loop {
            ubuf.clear();
            let read = moving(self.timer.as_mut(), self.idle, up.read_buf(ubuf))
                .await
                .unwrap_or_else(|| Err(std::io::ErrorKind::TimedOut.into()));
            if matches!(read, Ok(0) | Err(_)) {
                // Close-delimited bodies end here; others were cut.
                return (matches!(framing, Framing::Close), false);
            }
            let Ok(take) = framing.take(ubuf) else {
                return (false, false);
            };
            let (n, done) = (take.body, take.done);
            let relayed = take.relayed(ubuf);
            *sent += relayed.len() as u64;
            let wrote = moving(self.timer.as_mut(), self.idle, io.write_all(&relayed)).await;
            if wrote.is_none_or(|r| r.is_err()) {
                return (false, false);
            }
            if done {
                return (true, n == ubuf.len());
            }
        }
    }
}

/// Appends a `date` field with the current time.
fn write_date(out: &mut Vec<u8>) {
    out.extend_from_slice(b"date: ");
    crate::time::write_http_date(out);
    out.extend_from_slice(b"\r\n");
}

/// `io` if it finishes before `limit` passes; `None` if it stalls that
/// long. Uses the connection's timer: most writes finish at the first
/// poll, and then the timer is only moved, never waited on.
async fn moving<F: std::future::Future>(
    mut timer: std::pin::Pin<&mut tokio::time::Sleep>,
    limit: Duration,
    io: F,
) -> Option<F::Output> {
    timer.as_mut().reset(tokio::time::Instant::now() + limit);
    tokio::select! {
        biased;
        r = io => Some(r),
        () = timer => None,
    }
}

fn finish(
    dp: &Arc<Dataplane>,
    p: &mut Prepared,
    status: StatusCode,
    failure: &'static str,
    to_target: Duration,
) -> Finish {
    Finish::new(
        dp,
        &p.served,
        Some(&p.group),
        status,
        p.start,
        Some(p.target),
        failure,
        to_target,
        p.facts.take(),
    )
}

async fn answer_error<I: ClientIo>(
    dp: &Arc<Dataplane>,
    io: &mut I,
    mut out: Vec<u8>,
    ubuf: Vec<u8>,
    mut p: Prepared,
    failure: crate::failure::Failure,
    to_target: Duration,
) -> bool {
    let (status, why, body) = (
        failure.status(),
        failure.reason(),
        failure.body().as_bytes(),
    );
    // The client's body was not read whole: the connection cannot go on.
    let keep = !p.close && p.body_left == 0;
    refill(&mut out);
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    write_date(&mut out);
    if !keep {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !p.head {
        out.extend_from_slice(body);
    }
    let mut finish = finish(dp, &mut p, status, why, to_target);
    let ok = io.write_all(&out).await.is_ok();
    finish.set_bytes_sent(if p.head { 0 } else { body.len() as u64 });
    drop(finish);
    give_back(out);
    give_back(ubuf);
    ok && keep
}

enum Failure {
    /// No connection to the target (503).
    Connect(String),
    /// The exchange with the target failed (502).
    Request(String),
    /// Writing the request head failed (502, or a retry on a new
    /// connection if this one came from the pool).
    Unsent(String),
    /// The client went away while its body was being copied.
    Client,
}

/// An upstream connection in use.
struct Upstream {
    stream: TargetConn,
}

/// Sends the request (from `out`, then the rest of the body from the
/// client) and reads the response head into `ubuf`.
async fn exchange<I: ClientIo>(
    dp: &Dataplane,
    io: &mut I,
    buf: &mut Vec<u8>,
    out: &mut Vec<u8>,
    ubuf: &mut Vec<u8>,
    p: &mut Prepared,
) -> Result<(Upstream, ResponseHead), Failure> {
    let mut pooled = take_pooled(p.ns, p.target);
    loop {
        let reused = pooled.is_some();
        let mut stream = match pooled.take() {
            Some(s) => s,
            None => dp
                .connector
                .connect(p.ns, p.target)
                .await
                .map_err(|e| Failure::Connect(e.to_string()))?,
        };
        ubuf.clear();
        match send_and_read(io, buf, out, &mut stream, ubuf, p).await {
            Ok(head) => return Ok((Upstream { stream }, head)),
            // A pooled connection the target had closed: send again on a
            // new one. Once the request is out, a closed connection is the
            // target failing (502), as with hyper's client: the request
            // may have had effects.
            Err(Failure::Unsent(_)) if reused => {}
            Err(e) => return Err(e),
        }
    }
}

/// While the target works on the request, the exchange holds no buffer:
/// `out` and an empty `buf` go back to the worker's spares once the request
/// is sent, and `ubuf` is taken when the answer is readable. A busy worker
/// has every connection's request out at once (64 connections, 64
/// requests waiting on targets), and three 8 KiB buffers held across each
/// wait were most of the memory per connection.
async fn send_and_read<I: ClientIo>(
    io: &mut I,
    buf: &mut Vec<u8>,
    out: &mut Vec<u8>,
    stream: &mut TargetConn,
    ubuf: &mut Vec<u8>,
    p: &mut Prepared,
) -> Result<ResponseHead, Failure> {
    stream
        .write_all(out)
        .await
        .map_err(|e| Failure::Unsent(e.to_string()))?;
    send_body(io, buf, stream, p).await?;
    // A request that was sent is not sent again (see `exchange`), so `out`
    // is done with.
    give_back(std::mem::take(out));
    if buf.is_empty() {
        give_back(std::mem::take(buf));
    }
    if ubuf.capacity() == 0 {
        stream
            .answer_ready()
            .await
            .map_err(|e| Failure::Request(e.to_string()))?;
        *ubuf = take();
    }
    loop {
        if ubuf.capacity() - ubuf.len() < 1024 {
            ubuf.reserve(CHUNK);
        }
        let end = http1::read_response_head(stream, ubuf)
            .await
            .map_err(Failure::Request)?;
        // The client's status line and fields come from the same parse.
        let head = parse_response_with(&ubuf[..end], p.head, |head, fields| {
            if head.status.is_informational() {
                // Not passed on; the final response follows (below).
                return Ok(());
            }
            write_response_head(out, &ubuf[head.status_at.0..head.status_at.1], fields);
            Ok(())
        })
        .map_err(Failure::Request)?;
        if head.status.is_informational() {
            // 100 Continue and friends: the final response follows.
            if head.status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(Failure::Request("unexpected 101 response".into()));
            }
            ubuf.drain(..end);
            continue;
        }
        return Ok(head);
    }
}

/// The rest of the request body, as the client sends it.
async fn send_body<I: ClientIo>(
    io: &mut I,
    buf: &mut Vec<u8>,
    stream: &mut TargetConn,
    p: &mut Prepared,
) -> Result<(), Failure> {
    while p.body_left > 0 {
        if buf.is_empty() {
            if buf.capacity() < CHUNK {
                buf.reserve(CHUNK);
            }
            match io.read_buf(buf).await {
                Ok(0) | Err(_) => return Err(Failure::Client),
                Ok(_) => {}
            }
        }
        let n = usize::try_from(p.body_left).map_or(buf.len(), |n| n.min(buf.len()));
        stream
            .write_all(&buf[..n])
            .await
            .map_err(|e| Failure::Request(e.to_string()))?;
        buf.drain(..n);
        p.body_left -= n as u64;
    }
    Ok(())
}

/// The client's status line (`status` is the target's, code and reason)
/// and fields: the target's minus hop-by-hop ones and those its
/// `Connection` lists, plus a date if the target gave none.
fn write_response_head(out: &mut Vec<u8>, status: &[u8], fields: &[httparse::Header<'_>]) {
    refill(out);
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status);
    out.extend_from_slice(b"\r\n");
    let listed = |name: &[u8]| {
        fields
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .flat_map(|h| head::connection_tokens(h.value))
            .any(|token| token.eq_ignore_ascii_case(name))
    };
    let mut dated = false;
    for h in fields {
        let name = h.name.as_bytes();
        if !dropped_response_field(name) && !listed(name) {
            dated |= name.eq_ignore_ascii_case(b"date");
            head::field(out, name, h.value);
        }
    }
    // A proxy adds the date a target left out (RFC 9110 6.6.1), as
    // hyper's server does on the other path.
    if !dated {
        write_date(out);
    }
}

// Per-worker state. Each worker thread runs one current-thread runtime and
// every connection it accepts stays on it, so these need no lock.
thread_local! {
    /// Spare buffers, so requests do not allocate them.
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A spare buffer in `b`, if it was handed back while the target worked.
fn refill(b: &mut Vec<u8>) {
    if b.capacity() == 0 {
        *b = take();
    }
}

fn take() -> Vec<u8> {
    SPARE
        .with(|s| s.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(CHUNK))
}

fn give_back(mut b: Vec<u8>) {
    if b.capacity() == 0 || b.capacity() > 2 * CHUNK {
        return;
    }
    b.clear();
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < MAX_SPARE {
            s.push(b);
        }
    });
}

/// Replays bytes already read from a connection before reading more.
pub(crate) struct Prefixed<I> {
    prefix: Vec<u8>,
    at: usize,
    inner: I,
}

impl<I> Prefixed<I> {
    pub(crate) fn new(prefix: Vec<u8>, inner: I) -> Self {
        Self {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            if self.at == self.prefix.len() {
                self.prefix = Vec::new();
                self.at = 0;
            }
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_http1_paths_forward_the_same_client_fields() {
        for head in [
            &b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: TE\r\nTE: trailers\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, x-secret\r\nx-secret: 1\r\nKeep-Alive: 5\r\nx-kept: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nTE: gzip\r\nProxy-Authorization: x\r\nTrailer: y\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nx_amzn_lattice_identity: Principal=root\r\nX_Forwarded_For: 5.6.7.8\r\nx-amzn-requestid: 1\r\nx-forwarded-host: kept\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nCookie: a\r\nCookie: b\r\n\r\n",
            // Found by the fuzzer: hyper kept TE only if its first field said
            // trailers; the fast path decided field by field.
            b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: keeprt, te\r\nTE: tert, te\r\nTE: trailers\r\n\r\n",
            b"GET /a HTTP/1.1\r\nHost: a\r\nTE: Trailers \r\nTE: trailers\r\n\r\n",
            // Also the fuzzer's: a Connection value that is not ASCII still
            // lists x-secret (hyper's path ignored the whole field).
            b"GET /a HTTP/1.1\r\nHost: a\r\nConnection:\xe0\x92eep-alive, x-secret, te\r\nx-secret: 1\r\n\r\n",
        ] {
            let (fast, slow) = forwarded_by_both(head).unwrap();
            assert_eq!(fast, slow, "{}", String::from_utf8_lossy(head));
        }
        let (fast, _) = forwarded_by_both(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: TE\r\nTE: trailers\r\nX_Forwarded_For: 5\r\n\r\n",
        )
        .unwrap();
        assert_eq!(fast, ["host: a", "te: trailers"]);
    }
}
