//! Per-namespace listeners and the request path through them.
//!
//! One listening socket per client namespace receives every connection the
//! namespace's sk_lookup program steers to it. `getsockname()` on an accepted
//! connection returns the VIP:port the client dialed, which together with the
//! namespace the socket lives in selects the service listener.

use std::{
    convert::Infallible,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    sync::Arc,
};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

use crate::{
    netns::NetNs,
    routing::{Action, ListenerKey, NsId},
    Dataplane,
};

/// Body of responses the proxy sends: the target's, or one it made itself.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Entering the namespace failed.
    #[error(transparent)]
    Netns(#[from] crate::netns::Error),
    /// Creating or binding the listening socket failed.
    #[error("creating the proxy listener in namespace {namespace:?}: {source}")]
    Bind {
        /// Namespace name.
        namespace: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Creates the proxy's listening socket inside `ns`.
///
/// It is bound to 127.0.0.1 on an ephemeral port: connections arrive through
/// the sockmap, never by that address, and a loopback bind keeps it off every
/// interface of the tenant's namespace.
pub fn bind_in(ns: &NetNs) -> Result<std::net::TcpListener, Error> {
    let bind_err = |source| Error::Bind {
        namespace: ns.name().to_owned(),
        source,
    };
    let socket = ns
        .enter(|| Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)))?
        .map_err(bind_err)?;
    socket.set_nonblocking(true).map_err(bind_err)?;
    socket
        .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .map_err(bind_err)?;
    socket.listen(4096).map_err(bind_err)?;
    Ok(socket.into())
}

/// A running accept loop; dropping it stops accepting (connections already
/// accepted run to completion).
#[derive(Debug)]
pub struct ListenerHandle {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ListenerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts serving connections accepted on `listener` for namespace `ns`.
pub fn serve(
    dp: &Arc<Dataplane>,
    ns: NsId,
    ns_name: &str,
    listener: std::net::TcpListener,
) -> std::io::Result<ListenerHandle> {
    let listener = TcpListener::from_std(listener)?;
    let dp = Arc::clone(dp);
    let ns_name: Arc<str> = ns_name.into();
    let task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let dp = Arc::clone(&dp);
                    tokio::spawn(serve_connection(dp, ns, stream, peer));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(namespace = %ns_name, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    });
    Ok(ListenerHandle { task })
}

async fn serve_connection(
    dp: Arc<Dataplane>,
    ns: NsId,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let local = match stream.local_addr() {
        Ok(SocketAddr::V4(a)) => a,
        other => {
            tracing::debug!(?other, "connection without an IPv4 local address; closing");
            return;
        }
    };
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay");
    }
    let header_timeout = dp.config.header_read_timeout;
    let svc = service_fn(move |req| {
        let dp = Arc::clone(&dp);
        async move { Ok::<_, Infallible>(handle(&dp, ns, local, peer, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), svc);
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "client connection ended with an error");
    }
}

async fn handle(
    dp: &Dataplane,
    ns: NsId,
    local: SocketAddrV4,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let key = ListenerKey {
        ns,
        vip: *local.ip(),
        port: local.port(),
    };
    // Resolve everything the request needs from the snapshot up front, so no
    // snapshot guard is held across an await.
    let (service, target_group, target) = {
        let table = dp.routes.load();
        let Some(vip) = table.listeners.get(&key) else {
            return text(
                StatusCode::NOT_FOUND,
                "no service listens on this address\n",
            );
        };
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host());
        let Some(route) = vip.route(host) else {
            return text(
                StatusCode::NOT_FOUND,
                "no service of that name on this address\n",
            );
        };
        let forward = match route.action_for(req.method(), req.uri().path(), req.headers()) {
            Action::FixedResponse(status) => return text(*status, ""),
            Action::Forward(f) => f,
        };
        let Some(group) = forward.pick() else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n");
        };
        let Some(target) = group.next_target() else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n");
        };
        (
            Arc::clone(&route.service),
            Arc::clone(&group.name),
            target.clone(),
        )
    };

    let path_and_query = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    match Uri::builder()
        .scheme("http")
        .authority(target.authority.clone())
        .path_and_query(path_and_query)
        .build()
    {
        Ok(uri) => *req.uri_mut() = uri,
        Err(e) => {
            tracing::debug!(error = %e, "cannot build upstream URI");
            return text(StatusCode::BAD_REQUEST, "Bad Request\n");
        }
    }
    strip_hop_by_hop(req.headers_mut());
    add_forwarded(req.headers_mut(), peer, local.port());

    let method = req.method().clone();
    let result = tokio::time::timeout(dp.config.request_timeout, dp.client.request(req)).await;
    let response = match result {
        Ok(Ok(mut resp)) => {
            strip_hop_by_hop(resp.headers_mut());
            resp.map(Either::Left)
        }
        Ok(Err(e)) if e.is_connect() => {
            tracing::warn!(%service, %target_group, target = %target.addr, error = %e, "target connection failed");
            text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n")
        }
        Ok(Err(e)) => {
            tracing::warn!(%service, %target_group, target = %target.addr, error = %e, "target request failed");
            text(StatusCode::BAD_GATEWAY, "Bad Gateway\n")
        }
        Err(_) => {
            tracing::warn!(%service, %target_group, target = %target.addr, "target timed out");
            text(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout\n")
        }
    };
    tracing::debug!(%service, %target_group, target = %target.addr, %peer, %method, status = response.status().as_u16(), "request");
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))));
    *resp.status_mut() = status;
    if !body.is_empty() {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    resp
}

/// Headers that describe one hop and must not be forwarded (RFC 9110 7.6.1),
/// plus any the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}

/// X-Forwarded-* as Lattice sends them. Client-sent copies are replaced: the
/// proxy is the only party that knows who connected.
fn add_forwarded(headers: &mut HeaderMap, peer: SocketAddr, port: u16) {
    static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    static XFP: HeaderName = HeaderName::from_static("x-forwarded-port");
    static XFPROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    if let Ok(v) = HeaderValue::from_str(&peer.ip().to_string()) {
        headers.insert(&XFF, v);
    }
    headers.insert(&XFP, HeaderValue::from(port));
    headers.insert(&XFPROTO, HeaderValue::from_static("http"));
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
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn forwarded_headers_replace_client_copies() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
        add_forwarded(&mut h, "10.0.16.7:5555".parse().unwrap(), 80);
        assert_eq!(h["x-forwarded-for"], "10.0.16.7");
        assert_eq!(h["x-forwarded-port"], "80");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
    }
}
