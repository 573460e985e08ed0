//! The request path: route by listener rules and weights, rewrite headers,
//! forward to a target (or invoke a function), then count and log.

use std::{
    net::{SocketAddr, SocketAddrV4},
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{
    header, uri::Scheme, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri,
    Version,
};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame, SizeHint};

use crate::{
    access_log::Record,
    failure::Failure,
    head::{field, HeadError, PathError},
    metrics::RequestMetrics,
    routing::{Action, GroupKind, ListenerKey, NsId, Served, TargetGroupRoute, TargetVersion},
    Dataplane, RequestBody,
};

pub(crate) use crate::body::CountingBody;
pub use crate::body::ProxyBody;

/// TLS facts of a client connection.
#[derive(Debug, Default)]
pub struct TlsInfo {
    /// Server name the client sent.
    pub sni: String,
    /// Negotiated version.
    pub version: &'static str,
    /// Negotiated cipher suite.
    pub cipher: &'static str,
}

/// One client connection.
#[derive(Debug)]
pub struct Conn {
    /// Client namespace.
    pub ns: NsId,
    /// VIP:port the client dialed.
    pub local: SocketAddrV4,
    /// Client address.
    pub peer: SocketAddr,
    /// TLS facts, for HTTPS listeners.
    pub tls: Option<TlsInfo>,
    /// The client's address, as `X-Forwarded-For` carries it.
    peer_ip: HeaderValue,
    /// The port the client dialed, as `X-Forwarded-Port` carries it.
    port_value: HeaderValue,
    /// The `X-Forwarded-*` lines as an HTTP/1.1 head carries them: the
    /// same on every request of the connection, so written once.
    forwarded_lines: Box<[u8]>,
}

impl Conn {
    /// A connection from `peer` to `local` in namespace `ns`.
    pub fn new(ns: NsId, local: SocketAddrV4, peer: SocketAddr, tls: Option<TlsInfo>) -> Self {
        let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("-"));
        let port_value = HeaderValue::from(local.port());
        let mut forwarded_lines = Vec::new();
        field(
            &mut forwarded_lines,
            XFF.as_str().as_bytes(),
            peer_ip.as_bytes(),
        );
        field(
            &mut forwarded_lines,
            XFPORT.as_str().as_bytes(),
            port_value.as_bytes(),
        );
        field(
            &mut forwarded_lines,
            XFPROTO.as_str().as_bytes(),
            proto(tls.is_some()).as_bytes(),
        );
        Self {
            ns,
            local,
            peer,
            tls,
            peer_ip,
            port_value,
            forwarded_lines: forwarded_lines.into_boxed_slice(),
        }
    }
}

// The fields [`ProxyFields`] sets, made from the names `head` compares.
/// The auth layer: who the caller is, and whether the policies allow it.
pub mod auth;

use crate::head::PROXY_FIELD_NAMES;
const XFF: HeaderName = HeaderName::from_static(PROXY_FIELD_NAMES[0]);
const XFPORT: HeaderName = HeaderName::from_static(PROXY_FIELD_NAMES[1]);
const XFPROTO: HeaderName = HeaderName::from_static(PROXY_FIELD_NAMES[2]);
const LATTICE_NETWORK: HeaderName = HeaderName::from_static(PROXY_FIELD_NAMES[3]);
const LATTICE_TARGET: HeaderName = HeaderName::from_static(PROXY_FIELD_NAMES[4]);
const LATTICE_IDENTITY: HeaderName = HeaderName::from_static(PROXY_FIELD_NAMES[5]);
const REQUEST_ID: HeaderName = HeaderName::from_static(PROXY_FIELD_NAMES[6]);

/// Who and what a request is, past routing and auth.
#[derive(Clone, Copy)]
struct Call<'r> {
    request_id: &'r str,
    host: Option<&'r str>,
    principal: Option<&'r crate::authz::Principal>,
}

/// What a finished request reports (metrics, access log).
struct Outcome<'a> {
    status: StatusCode,
    group: Option<&'a Arc<TargetGroupRoute>>,
    target: Option<SocketAddr>,
    failure: &'static str,
    to_target: Duration,
    from_target: Duration,
}

impl<'a> Outcome<'a> {
    /// The outcome of a request latticed answers itself for `failure`
    /// before any group is picked.
    fn failed(failure: Failure) -> Self {
        Self {
            status: failure.status(),
            failure: failure.reason(),
            ..Self::pending()
        }
    }

    /// A request on its way: 200 and no failure unless one comes.
    fn pending() -> Self {
        Self {
            status: StatusCode::OK,
            group: None,
            target: None,
            failure: "-",
            to_target: Duration::ZERO,
            from_target: Duration::ZERO,
        }
    }

    /// The request ends in latticed's own answer for `failure`.
    fn answered<'b>(mut self, failure: Failure) -> Forwarded<'a, 'b> {
        self.status = failure.status();
        self.failure = failure.reason();
        Forwarded::Answered(failed(failure), self)
    }
}

/// Handles one request.
///
/// The request moves through here by value. A future keeps room for every
/// value that lives across an await, an async fn's arguments twice (as
/// argument and as local), so the request is moved into the send's own
/// state before anything is awaited (see [`forward`]). This future is
/// boxed per request; under about 1 KiB the allocator serves it from its
/// per-thread cache, where a larger one cost several times as much
/// (callgrind).
#[allow(
    clippy::manual_async_fn,
    reason = "an async block, not an async fn: see above"
)]
pub fn handle<'a>(
    dp: &'a Arc<Dataplane>,
    worker: &'a crate::workers::Worker,
    conn: &'a Conn,
    req: Request<RequestBody>,
) -> impl std::future::Future<Output = Response<ProxyBody>> + Send + 'a {
    async move {
        let start = Instant::now();
        let key = ListenerKey {
            ns: conn.ns,
            vip: *conn.local.ip(),
            port: conn.local.port(),
        };
        let host: Option<String> = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(http::uri::Authority::as_str))
            .map(str::to_owned);
        let served: Option<Arc<Served>> = {
            let table = dp.routes.load();
            table
                .listeners
                .get(&key)
                .and_then(|v| v.route(host.as_deref()).cloned())
        };
        let Some(served) = served else {
            return text(
                StatusCode::NOT_FOUND,
                "no service of that name on this address\n",
            );
        };
        let request_id = RequestId::new();
        let request_id = request_id.as_str();
        // Facts for the access log are copied only when a subscription
        // wants them.
        let logging = !served.listener.logs.is_empty() || !served.network.logs.is_empty();
        let mut facts = logging.then(|| RequestFacts::new(&req, host.as_deref(), conn, request_id));

        let mut req = req;
        let (resp, outcome) = if let Err(e) = checked_head(&mut req) {
            tracing::debug!(peer = %conn.peer, service = %served.listener.service, error = %e, "request refused");
            (
                bad_request(req.version()),
                Outcome::failed(Failure::BadRequest),
            )
        } else if served.listener.auth.is_none() && served.network.auth.is_none() {
            // Without policies there is nothing to check.
            let call = Call {
                request_id,
                host: host.as_deref(),
                principal: None,
            };
            let answered = match forward(dp, worker, conn, &served, req, &call, &mut facts) {
                Forwarded::Sending(sending) => sending.finish().await,
                Forwarded::Answered(resp, outcome) => (resp, outcome),
            };
            answered
        } else {
            // The auth layer's state (a signed body being read) is large,
            // and so is the request this branch holds: boxed.
            Box::pin(checked_and_forwarded(
                dp,
                worker,
                conn,
                &served,
                req,
                request_id,
                host.as_deref(),
                &mut facts,
            ))
            .await
        };
        finished(dp, &served, resp, outcome, start, facts)
    }
}

/// The answer, with what records the request (counters, access log) once
/// its body is sent.
fn finished(
    dp: &Arc<Dataplane>,
    served: &Arc<Served>,
    resp: Response<ProxyBody>,
    outcome: Outcome<'_>,
    start: Instant,
    facts: Option<Box<RequestFacts>>,
) -> Response<ProxyBody> {
    let (resp, bytes_sent) = if facts.is_some() {
        let (r, c) = count_response(resp);
        (r, Some(c))
    } else {
        (resp, None)
    };
    let mut finish = Finish::new(
        dp,
        served,
        outcome.group,
        outcome.status,
        start,
        outcome.target,
        outcome.failure,
        outcome.to_target,
        facts,
    );
    finish.from_target = outcome.from_target;
    finish.bytes_sent = bytes_sent;
    attach_finish(resp, finish)
}

/// The client's path as it arrived, when normalising changed it: a SigV4
/// signature covers the path the client sent.
#[derive(Clone, Debug)]
pub(crate) struct RawPath(pub(crate) String);

/// The checks of [`crate::head`] on a request hyper parsed: an error for
/// what they refuse; else the normalised path goes into the URI, the one
/// sent into [`RawPath`]. Rules, policies, functions and targets then see
/// only the normalised path.
fn checked_head<B>(req: &mut Request<B>) -> Result<(), HeadError> {
    let headers = req.headers();
    if headers.get_all(header::HOST).iter().nth(1).is_some() {
        return Err(HeadError::DuplicateHost);
    }
    for v in headers.get_all(header::CONNECTION) {
        if let Some(f) = crate::head::connection_names_framing(v.as_bytes()) {
            return Err(HeadError::ConnectionNamesFraming(f));
        }
    }
    let normal = match crate::head::normalize_path(req.uri().path())? {
        std::borrow::Cow::Borrowed(_) => return Ok(()),
        std::borrow::Cow::Owned(p) => p,
    };
    let raw = req.uri().path().to_owned();
    let target = match req.uri().query() {
        Some(q) => format!("{normal}?{q}"),
        None => normal,
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(target.parse().map_err(|_| PathError::Invalid)?);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| PathError::Invalid)?;
    req.extensions_mut().insert(RawPath(raw));
    Ok(())
}

/// The 400 for a head [`checked_head`] refuses. An HTTP/1 connection
/// closes after it: what follows the refused head is not trusted to be a
/// request boundary.
fn bad_request(version: Version) -> Response<ProxyBody> {
    let mut resp = failed(Failure::BadRequest);
    if version < Version::HTTP_2 {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// The auth layer, then [`forward`] as the caller it identified.
#[allow(
    clippy::too_many_arguments,
    reason = "the request's context, each distinct"
)]
async fn checked_and_forwarded<'s>(
    dp: &Arc<Dataplane>,
    worker: &crate::workers::Worker,
    conn: &Conn,
    served: &'s Served,
    req: Request<RequestBody>,
    request_id: &str,
    host: Option<&str>,
    facts: &mut Option<Box<RequestFacts>>,
) -> (Response<ProxyBody>, Outcome<'s>) {
    // An `Arc`, not an arc-swap guard: it lives across the body's read.
    let principals = dp.principals.load_full();
    match Box::pin(auth::check(
        &principals,
        dp.whole_bodies(),
        conn,
        served,
        req,
    ))
    .await
    {
        auth::Checked::Allowed(req, principal) => {
            if let (Some(f), Some(p)) = (facts.as_mut(), &principal) {
                f.caller = Some(p.arn.clone());
            }
            let call = Call {
                request_id,
                host,
                principal: principal.as_ref(),
            };
            let answered = match forward(dp, worker, conn, served, req, &call, facts) {
                Forwarded::Sending(sending) => sending.finish().await,
                Forwarded::Answered(resp, outcome) => (resp, outcome),
            };
            answered
        }
        auth::Checked::Denied {
            response,
            reason,
            principal,
        } => {
            if let Some(f) = facts.as_mut() {
                f.caller = principal.map(|p| p.arn);
                f.auth_denied = Some(reason);
            }
            let outcome = Outcome {
                // 403, or 503 when the body budget is spent.
                status: response.status(),
                group: None,
                target: None,
                failure: "AuthDenied",
                to_target: Duration::ZERO,
                from_target: Duration::ZERO,
            };
            (response, outcome)
        }
    }
}

/// Where [`forward`] got a request.
enum Forwarded<'s, 'b> {
    /// On its way to a target.
    Sending(Sending<'s, 'b>),
    /// Answered without one (a fixed response, no group or target, a
    /// request that cannot be forwarded).
    Answered(Response<ProxyBody>, Outcome<'s>),
}

/// What a send gives back: the target's answer, or why there is none.
type Sent = Result<Response<ProxyBody>, Failure>;

/// A request sent on its way: the send under way (boxed: each kind of
/// target has its own) and the outcome so far.
struct Sending<'s, 'b> {
    send: Pin<Box<dyn std::future::Future<Output = Sent> + Send + 'b>>,
    outcome: Outcome<'s>,
    /// When it left, if the access log wants the time to the target.
    t0: Option<Instant>,
}

impl<'s> Sending<'s, '_> {
    /// Waits for the answer; a failure becomes the proxy's own answer.
    async fn finish(self) -> (Response<ProxyBody>, Outcome<'s>) {
        let Self {
            send,
            mut outcome,
            t0,
        } = self;
        let result = send.await;
        outcome.to_target = t0.map_or(Duration::ZERO, |t| t.elapsed());
        match result {
            Ok(resp) => {
                outcome.status = resp.status();
                (resp, outcome)
            }
            Err(failure) => {
                outcome.status = failure.status();
                outcome.failure = failure.reason();
                (failed(failure), outcome)
            }
        }
    }
}

/// Routes the request by the listener's rules and weights, sets the
/// proxy's fields, and starts the send to the target (or function). No
/// await here: the request moves into the send's state and nowhere else.
#[allow(
    clippy::too_many_arguments,
    reason = "the request's context, each distinct"
)]
fn forward<'s: 'b, 'b>(
    dp: &'b Arc<Dataplane>,
    worker: &'b crate::workers::Worker,
    conn: &'b Conn,
    served: &'s Served,
    mut req: Request<RequestBody>,
    call: &'b Call<'b>,
    facts: &mut Option<Box<RequestFacts>>,
) -> Forwarded<'s, 'b> {
    let Call {
        request_id,
        host,
        principal,
    } = *call;
    let listener = &served.listener;
    let mut outcome = Outcome::pending();
    let forward = match listener.action_for(req.method(), req.uri().path(), req.headers()) {
        Action::FixedResponse(status) => {
            outcome.status = *status;
            return Forwarded::Answered(text(*status, ""), outcome);
        }
        Action::Forward(f) => f,
    };
    let Some(group) = forward.pick() else {
        return outcome.answered(Failure::NoTargetGroup);
    };
    outcome.group = Some(group);

    let fields = ProxyFields {
        conn,
        served,
        group,
        request_id: request_id.as_bytes(),
        // Values come from the credential store, which refuses separators
        // and control characters; HeaderValue refuses CR and LF again.
        identity: principal.and_then(|p| HeaderValue::from_str(&p.identity_header()).ok()),
    };
    let body_counter = facts.as_mut().map(|f| f.count_request_body());
    // Only the access log reports the time to the target.
    let t0 = facts.is_some().then(Instant::now);
    let send: Pin<Box<dyn std::future::Future<Output = Sent> + Send + 'b>> = match &group.kind {
        GroupKind::Lambda(function) => {
            fields.apply(req.headers_mut());
            Box::pin(crate::lambda::invoke(
                &dp.config,
                dp.whole_bodies(),
                worker,
                served,
                group,
                function,
                req,
                principal,
                body_counter,
                conn.ns,
            ))
        }
        GroupKind::Hosts {
            ns, https, version, ..
        } => {
            let Some(target) = group.next_target() else {
                return outcome.answered(Failure::NoHealthyTarget);
            };
            outcome.target = Some(target.addr);
            let h2 = *version != TargetVersion::Http1;
            // `upstream_h1` writes the head itself, Lattice's fields
            // included; hyper's clients take a request.
            if h2 || *https {
                fields.apply(req.headers_mut());
                if let Err(e) = to_upstream(&mut req, target, *https, h2, host) {
                    tracing::debug!(error = %e, "cannot build upstream request");
                    return outcome.answered(Failure::BadRequest);
                }
            }
            let req = req.map(|b| CountingBody::wrap(b, body_counter).boxed_unsync());
            let to = To {
                ns: *ns,
                target,
                https: *https,
                h2,
            };
            send_to(dp, worker, &listener.service, group, to, host, req, &fields)
        }
    };
    Forwarded::Sending(Sending { send, outcome, t0 })
}

/// Where a request to a host target goes.
#[derive(Clone, Copy)]
struct To<'s> {
    ns: NsId,
    target: &'s crate::routing::Target,
    https: bool,
    /// HTTP/2 (HTTP2 and GRPC groups).
    h2: bool,
}

/// Starts the send to a host target over the client its protocol needs:
/// HTTP/2 on the target's own connection, plain HTTP/1.1 through
/// `upstream_h1` (which writes the head, Lattice's fields included), HTTPS
/// HTTP/1.1 through hyper's pooled client.
#[allow(
    clippy::too_many_arguments,
    reason = "the request's context, each distinct"
)]
fn send_to<'s: 'b, 'b>(
    dp: &'b Arc<Dataplane>,
    worker: &'b crate::workers::Worker,
    service: &'s str,
    group: &'s TargetGroupRoute,
    to: To<'s>,
    host: Option<&'b str>,
    req: Request<crate::UpstreamBody>,
    fields: &ProxyFields<'_>,
) -> Pin<Box<dyn std::future::Future<Output = Sent> + Send + 'b>> {
    let timeout = dp.config.request_timeout;
    let To {
        ns,
        target,
        https,
        h2,
    } = to;
    // One settling for the three kinds of send below.
    let settle = move |r| settle(service, group, target, r);
    // Mapped futures, not async blocks: an async block keeps
    // room for a future it awaits twice, as captured and as
    // awaited.
    if h2 {
        let sent = crate::upstream::send_h2(&dp.connector, ns, target.addr, &target.h2, https, req)
            .map(|r| r.map(|resp| resp.map(|b| b.map_err(Into::into).boxed_unsync())));
        Box::pin(tokio::time::timeout(timeout, sent).map(settle))
    } else if !https {
        // The head is written here; the future holds its bytes.
        let sent = crate::upstream_h1::send(&dp.connector, ns, target.addr, host, req, fields)
            .map(|r| r.map(|resp| resp.map(http_body_util::BodyExt::boxed_unsync)));
        Box::pin(tokio::time::timeout(timeout, sent).map(settle))
    } else {
        let sent = worker.h1.request(req).map(|r| match r {
            Ok(resp) => Ok(resp.map(|b| b.map_err(Into::into).boxed_unsync())),
            Err(e) if e.is_connect() => Err(crate::upstream::SendError::Connect(e.to_string())),
            Err(e) => Err(crate::upstream::SendError::Request(e.to_string())),
        });
        Box::pin(tokio::time::timeout(timeout, sent).map(settle))
    }
}

/// The target's answer, or the reason the proxy has none (and a log line
/// for it).
fn settle(
    service: &str,
    group: &TargetGroupRoute,
    target: &crate::routing::Target,
    r: Result<Result<Response<ProxyBody>, crate::upstream::SendError>, tokio::time::error::Elapsed>,
) -> Sent {
    let (group, target) = (&group.name, target.addr);
    match r {
        Ok(Ok(mut resp)) => {
            crate::head::strip_hop_by_hop(resp.headers_mut());
            Ok(resp)
        }
        Ok(Err(crate::upstream::SendError::Connect(e))) => {
            tracing::warn!(%service, target_group = %group, %target, error = %e, "target connection failed");
            Err(Failure::TargetConnectionFailed)
        }
        Ok(Err(crate::upstream::SendError::ClientBody(e))) => {
            tracing::debug!(%service, error = %e, "client body broke off");
            Err(Failure::ClientBodyError)
        }
        Ok(Err(crate::upstream::SendError::Request(e))) => {
            tracing::warn!(%service, target_group = %group, %target, error = %e, "target request failed");
            Err(Failure::TargetRequestFailed)
        }
        Err(_) => {
            tracing::warn!(%service, target_group = %group, %target, "target timed out");
            Err(Failure::TargetTimeout)
        }
    }
}

/// Points the request at `target`. HTTP/1.1 goes through the pooled client:
/// the URI carries the synthetic authority that keys its pool (see
/// `upstream`) and the client's Host header stays. HTTP/2 goes over the
/// target's own connection, so the URI carries the name the client asked
/// for (`:authority`).
fn to_upstream(
    req: &mut Request<RequestBody>,
    target: &crate::routing::Target,
    https: bool,
    h2: bool,
    host: Option<&str>,
) -> Result<(), http::Error> {
    let path_and_query = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let scheme = if https { Scheme::HTTPS } else { Scheme::HTTP };
    if h2 {
        let authority = match host {
            Some(h) => h.parse::<http::uri::Authority>()?,
            None => target.authority.clone(),
        };
        *req.uri_mut() = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(path_and_query)
            .build()?;
        *req.version_mut() = Version::HTTP_2;
        // :authority replaces it in HTTP/2.
        req.headers_mut().remove(header::HOST);
    } else {
        *req.uri_mut() = Uri::builder()
            .scheme(scheme)
            .authority(target.authority.clone())
            .path_and_query(path_and_query)
            .build()?;
        *req.version_mut() = Version::HTTP_11;
        if !req.headers().contains_key(header::HOST) {
            if let Some(v) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
                req.headers_mut().insert(header::HOST, v);
            }
        }
    }
    Ok(())
}

/// The fields latticed sets on every request it forwards, as Lattice sends
/// them: who connected, over what, through which network, to which target.
/// Client-sent copies never reach a target: only the proxy knows these.
pub(crate) struct ProxyFields<'a> {
    pub(crate) conn: &'a Conn,
    pub(crate) served: &'a Served,
    pub(crate) group: &'a TargetGroupRoute,
    pub(crate) request_id: &'a [u8],
    /// `X-Amzn-Lattice-Identity`, for a caller an auth policy identified.
    pub(crate) identity: Option<HeaderValue>,
}

/// `X-Forwarded-Proto` of a connection with or without TLS.
fn proto(tls: bool) -> &'static str {
    if tls {
        "https"
    } else {
        "http"
    }
}

impl ProxyFields<'_> {
    /// Into a request's header map (for hyper's clients and Lambda), hop-by-hop
    /// fields and client copies removed.
    fn apply(&self, headers: &mut HeaderMap) {
        crate::head::strip_hop_by_hop(headers);
        // Client copies under any spelling (`x_amzn_lattice_identity`);
        // `insert` below replaces only the exact names.
        if headers.keys().any(is_proxy_field) {
            let copies: Vec<HeaderName> = headers
                .keys()
                .filter(|k| is_proxy_field(k))
                .cloned()
                .collect();
            for name in copies {
                headers.remove(name);
            }
        }
        // Room for the names below at once: growing as they come cost two
        // reallocations per request (callgrind).
        headers.reserve(PROXY_FIELDS.len());
        // `insert` replaces every client-sent value of a name; a name with
        // nothing to send is removed instead.
        let mut set = |name: &HeaderName, value: Option<HeaderValue>| match value {
            Some(v) => {
                headers.insert(name, v);
            }
            None => {
                headers.remove(name);
            }
        };
        set(&XFF, Some(self.conn.peer_ip.clone()));
        set(&XFPORT, Some(self.conn.port_value.clone()));
        set(
            &XFPROTO,
            Some(HeaderValue::from_static(proto(self.conn.tls.is_some()))),
        );
        set(&LATTICE_NETWORK, self.served.network_header.clone());
        set(
            &LATTICE_TARGET,
            self.served.target_header(self.group).cloned(),
        );
        set(&REQUEST_ID, HeaderValue::from_bytes(self.request_id).ok());
        set(&LATTICE_IDENTITY, self.identity.clone());
    }

    /// As the header lines of an HTTP/1.1 head (the fast path and
    /// `upstream_h1`), whose writers leave out the client's copies (see
    /// [`is_proxy_field`]).
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        // Made once per connection and per routing snapshot: two copies
        // instead of five fields' worth of small ones.
        out.extend_from_slice(&self.conn.forwarded_lines);
        out.extend_from_slice(self.served.lattice_lines(self.group));
        field(out, REQUEST_ID.as_str().as_bytes(), self.request_id);
        if let Some(v) = &self.identity {
            field(out, LATTICE_IDENTITY.as_str().as_bytes(), v.as_bytes());
        }
    }
}

/// The names [`ProxyFields`] sets.
const PROXY_FIELDS: [HeaderName; 7] = [
    XFF,
    XFPORT,
    XFPROTO,
    LATTICE_NETWORK,
    LATTICE_TARGET,
    LATTICE_IDENTITY,
    REQUEST_ID,
];

/// Whether a client-sent field is one only the proxy may set, under any
/// spelling (see [`crate::head::is_proxy_field`]).
pub(crate) fn is_proxy_field(name: &HeaderName) -> bool {
    crate::head::is_proxy_field(name.as_str().as_bytes())
}

impl crate::head::WriteFields for ProxyFields<'_> {
    fn write_fields(&self, out: &mut Vec<u8>) {
        self.write(out);
    }
}

/// A response the proxy makes itself.
pub fn text(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    if !body.is_empty() {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    resp
}

/// latticed's own answer for `failure`.
fn failed(failure: Failure) -> Response<ProxyBody> {
    text(failure.status(), failure.body())
}

/// A request id in the shape Lattice uses (a UUID), on the stack.
struct RequestId([u8; 36]);

impl RequestId {
    fn new() -> Self {
        Self(request_id())
    }

    fn as_str(&self) -> &str {
        // Only ASCII hex digits and dashes are written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// A request id (see [`RequestId`]), as bytes.
pub(crate) fn request_id() -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // A version 4 UUID's shape (version nibble 4, variant nibble a), 120
    // random bits; written byte-wise, as u128 shifts cost more than the
    // rest of the request's bookkeeping.
    let mut v = fastrand::u128(..).to_be_bytes();
    v[6] = 0x40 | (v[6] & 0x0f);
    v[8] = 0xa0 | (v[8] & 0x0f);
    let mut out = [b'-'; 36];
    let mut at = 0;
    for (i, byte) in v.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        out[at] = HEX[usize::from(byte >> 4)];
        out[at + 1] = HEX[usize::from(byte & 0xf)];
        at += 2;
    }
    out
}

/// What the access log needs from the request, owned: the request itself
/// moves on to the target.
pub(crate) struct RequestFacts {
    method: String,
    path: String,
    protocol: &'static str,
    user_agent: String,
    host: Option<String>,
    source: String,
    request_id: String,
    body_bytes: Option<Arc<AtomicU64>>,
    tls_sni: Option<String>,
    tls_cipher: &'static str,
    tls_version: &'static str,
    caller: Option<String>,
    auth_denied: Option<String>,
    /// The wall-clock start, read only for the log: a clock read per
    /// request counts on the request path.
    started_at: SystemTime,
}

impl RequestFacts {
    fn new<B>(req: &Request<B>, host: Option<&str>, conn: &Conn, request_id: &str) -> Box<Self> {
        Self::from_parts(
            req.method().as_str(),
            req.uri().path_and_query().map_or("/", |p| p.as_str()),
            match req.version() {
                Version::HTTP_2 => "HTTP/2.0",
                Version::HTTP_10 => "HTTP/1.0",
                _ => "HTTP/1.1",
            },
            req.headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-"),
            host,
            conn,
            request_id,
        )
    }

    /// Facts from the parts of a request head.
    pub(crate) fn from_parts(
        method: &str,
        path: &str,
        protocol: &'static str,
        user_agent: &str,
        host: Option<&str>,
        conn: &Conn,
        request_id: &str,
    ) -> Box<Self> {
        // Boxed: the facts ride in every request's state and its `Finish`,
        // and only logged requests have any.
        Box::new(Self {
            method: method.to_owned(),
            path: path.to_owned(),
            protocol,
            user_agent: user_agent.to_owned(),
            host: host.map(str::to_owned),
            source: conn.peer.to_string(),
            request_id: request_id.to_owned(),
            body_bytes: None,
            tls_sni: conn.tls.as_ref().map(|t| t.sni.clone()),
            tls_cipher: conn.tls.as_ref().map_or("-", |t| t.cipher),
            tls_version: conn.tls.as_ref().map_or("-", |t| t.version),
            caller: None,
            auth_denied: None,
            started_at: SystemTime::now(),
        })
    }

    fn count_request_body(&mut self) -> Arc<AtomicU64> {
        Arc::clone(self.body_bytes.get_or_insert_with(Arc::default))
    }

    /// The request body's size, when it is known up front.
    pub(crate) fn set_body_bytes(&mut self, n: u64) {
        self.body_bytes = Some(Arc::new(AtomicU64::new(n)));
    }
}

/// Everything logged and counted when the response body ends (or the client
/// goes away).
pub(crate) struct Finish {
    dp: Arc<Dataplane>,
    served: Arc<Served>,
    group_metrics: Option<Arc<RequestMetrics>>,
    group_arn: Option<Arc<str>>,
    status: StatusCode,
    start: Instant,
    target: Option<SocketAddr>,
    failure: &'static str,
    to_target: Duration,
    from_target: Duration,
    facts: Option<Box<RequestFacts>>,
    bytes_sent: Option<Arc<AtomicU64>>,
}

impl Finish {
    /// The record of a request to `served`, forwarded to `group` (if it got
    /// that far), answered with `status`.
    #[allow(
        clippy::too_many_arguments,
        reason = "the request's context, each distinct"
    )]
    pub(crate) fn new(
        dp: &Arc<Dataplane>,
        served: &Arc<Served>,
        group: Option<&Arc<TargetGroupRoute>>,
        status: StatusCode,
        start: Instant,
        target: Option<SocketAddr>,
        failure: &'static str,
        to_target: Duration,
        facts: Option<Box<RequestFacts>>,
    ) -> Self {
        Self {
            dp: Arc::clone(dp),
            served: Arc::clone(served),
            group_metrics: group.map(|g| Arc::clone(&g.metrics)),
            group_arn: group.map(|g| Arc::clone(&g.arn)),
            status,
            start,
            target,
            failure,
            to_target,
            from_target: Duration::ZERO,
            facts,
            bytes_sent: None,
        }
    }

    /// The response body's size, for the access log.
    pub(crate) fn set_bytes_sent(&mut self, n: u64) {
        if self.facts.is_some() {
            self.bytes_sent = Some(Arc::new(AtomicU64::new(n)));
        }
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        let took = self.start.elapsed();
        let code = self.status.as_u16();
        self.served.listener.metrics.record(code, took);
        if let Some(m) = &self.group_metrics {
            m.record(code, took);
        }
        let listener = &self.served.listener;
        let network = &self.served.network;
        let Some(facts) = &self.facts else {
            return;
        };
        let record = Record {
            start_time: crate::time::iso8601(facts.started_at),
            request_method: &facts.method,
            request_path: &facts.path,
            protocol: facts.protocol,
            response_code: code,
            bytes_received: facts
                .body_bytes
                .as_ref()
                .map_or(0, |b| b.load(Ordering::Relaxed)),
            bytes_sent: self
                .bytes_sent
                .as_ref()
                .map_or(0, |b| b.load(Ordering::Relaxed)),
            duration: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            request_to_target_duration: u64::try_from(self.to_target.as_millis()).unwrap_or(0),
            response_from_target_duration: u64::try_from(
                took.saturating_sub(self.to_target).as_millis(),
            )
            .unwrap_or(0)
            .max(u64::try_from(self.from_target.as_millis()).unwrap_or(0)),
            user_agent: &facts.user_agent,
            host_header: facts.host.as_deref().unwrap_or("-"),
            server_name_indication: facts.tls_sni.as_deref().unwrap_or("-"),
            ssl_cipher: facts.tls_cipher,
            tls_version: facts.tls_version,
            source_ip_port: facts.source.clone(),
            target_ip_port: self
                .target
                .map_or_else(|| "-".to_owned(), |t| t.to_string()),
            target_group_arn: self.group_arn.as_deref().unwrap_or("-"),
            service_arn: &listener.service_arn,
            service_network_arn: &network.arn,
            source_vpc_arn: &network.vpc_arn,
            source_vpc_id: &network.vpc_id,
            destination_vpc_id: "-",
            caller_principal: facts.caller.as_deref().unwrap_or("-"),
            resolved_user: facts.caller.as_deref().unwrap_or("-"),
            auth_denied_reason: facts.auth_denied.as_deref().unwrap_or("-"),
            request_id: &facts.request_id,
            grpc_response_code: "-",
            failure_reason: self.failure,
        };
        self.dp
            .access_log
            .log(&[&listener.logs, &network.logs], &record);
    }
}

fn count_response(resp: Response<ProxyBody>) -> (Response<ProxyBody>, Arc<AtomicU64>) {
    let counter = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&counter);
    (
        resp.map(|b| CountingBody::wrap(b, c).boxed_unsync()),
        counter,
    )
}

fn attach_finish(resp: Response<ProxyBody>, finish: Finish) -> Response<ProxyBody> {
    resp.map(|b| {
        FinishBody {
            inner: b,
            finish: Some(finish),
        }
        .boxed_unsync()
    })
}

/// Runs [`Finish`] when the response body is done or dropped.
struct FinishBody {
    inner: ProxyBody,
    finish: Option<Finish>,
}

impl Body for FinishBody {
    type Data = Bytes;
    type Error = crate::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, crate::BoxError>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.finish.take();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed_with_the_ones_connection_lists() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        crate::head::strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn te_trailers_survives_for_grpc() {
        let mut h = HeaderMap::new();
        h.insert(header::TE, "trailers".parse().unwrap());
        crate::head::strip_hop_by_hop(&mut h);
        assert_eq!(h[header::TE], "trailers");
        h.insert(header::TE, "gzip".parse().unwrap());
        crate::head::strip_hop_by_hop(&mut h);
        assert!(!h.contains_key(header::TE));
    }

    #[test]
    fn request_ids_look_like_uuids() {
        let first = RequestId::new();
        let id = first.as_str();
        let parts: Vec<_> = id.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert_ne!(id, RequestId::new().as_str());
        // Version 4, variant "a", lowercase hex elsewhere.
        assert_eq!(&id[14..15], "4", "{id}");
        assert_eq!(&id[19..20], "a", "{id}");
        assert!(id
            .chars()
            .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c)));
        // Every other digit varies across ids.
        let ids: Vec<String> = (0..64)
            .map(|_| RequestId::new().as_str().to_owned())
            .collect();
        for at in (0..36).filter(|&i| ![8, 13, 14, 18, 19, 23].contains(&i)) {
            let first = &ids[0][at..=at];
            assert!(
                ids.iter().any(|i| &i[at..=at] != first),
                "digit {at} never changes"
            );
        }
    }
}
