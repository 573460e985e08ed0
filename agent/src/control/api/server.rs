//! The API's HTTP side: authenticate (SigV4), route by the model, read and
//! validate the input, hand it to the daemon, and write the answer or the
//! error in the model's shapes.
//!
//! Requests that change state are applied one at a time by the daemon (which
//! owns the state, the store and the data plane), so they are serialisable
//! without locks here.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::SystemTime,
};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{error::ApiError, model::model};

/// Largest accepted request body. The largest legitimate Lattice request
/// (an auth policy of 10 KB, 100 targets) is far below it.
pub const MAX_BODY: usize = 1 << 20;

/// How long a signed-in client has to send its body.
const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// How much of an oversized body is read and thrown away so the client,
/// which usually sends everything before reading, gets the error instead of
/// a broken pipe. Beyond it the connection is simply closed.
const MAX_DRAIN: u64 = 64 << 20;

/// Reads the body up to [`MAX_BODY`]; `None` if it is larger (the excess is
/// drained, within [`MAX_DRAIN`]).
async fn read_body(mut body: Incoming, declared: Option<u64>) -> Option<Bytes> {
    if declared.is_some_and(|n| n > MAX_DRAIN) {
        return None;
    }
    let mut buf = bytes::BytesMut::new();
    let mut seen: u64 = 0;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return None };
        if let Ok(data) = frame.into_data() {
            seen += data.len() as u64;
            if seen > MAX_DRAIN {
                return None;
            }
            if buf.len() + data.len() <= MAX_BODY {
                buf.extend_from_slice(&data);
            }
        }
    }
    (seen <= MAX_BODY as u64).then(|| buf.freeze())
}

/// A request for the daemon.
#[derive(Debug)]
pub struct ApiCall {
    /// Operation name.
    pub operation: String,
    /// Validated input.
    pub input: Value,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Result<Value, ApiError>>,
}

/// Access keys and their secrets, shared with the daemon.
pub type Credentials = Arc<RwLock<HashMap<String, String>>>;

/// Serves the API on `listener` until the task is dropped.
pub fn serve(
    listener: tokio::net::TcpListener,
    calls: mpsc::Sender<ApiCall>,
    creds: Credentials,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "API accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let calls = calls.clone();
            let creds = Arc::clone(&creds);
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let calls = calls.clone();
                    let creds = Arc::clone(&creds);
                    async move { Ok::<_, Infallible>(handle(req, peer, &calls, &creds).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

fn request_id() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn respond(
    status: u16,
    body: &Value,
    rid: &str,
    error_type: Option<&str>,
) -> Response<Full<Bytes>> {
    let bytes = if body.as_object().is_some_and(|o| o.is_empty()) && status == 204 {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    let mut resp = Response::new(Full::new(bytes));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(rid) {
        h.insert("x-amzn-requestid", v);
    }
    if let Some(t) = error_type.and_then(|t| HeaderValue::from_str(t).ok()) {
        h.insert("x-amzn-errortype", t);
    }
    resp
}

fn error(e: &ApiError, rid: &str, operation: &str, peer: SocketAddr) -> Response<Full<Bytes>> {
    tracing::info!(%peer, operation, error = %e, request_id = rid, "API request refused");
    respond(e.status, &e.body(), rid, Some(e.code))
}

async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    calls: &mpsc::Sender<ApiCall>,
    creds: &Credentials,
) -> Response<Full<Bytes>> {
    let rid = request_id();
    let (parts, body) = req.into_parts();
    // Authenticate before anything else is looked at: what the headers
    // tell (key, date, scope) before a byte of the body is read, so an
    // unauthenticated client cannot make the API hold a body.
    let signer =
        latticed_proxy::sigv4::precheck(&parts.headers, "vpc-lattice", SystemTime::now(), |key| {
            creds.read().ok().and_then(|c| c.get(key).cloned())
        });
    let signer = match signer {
        Ok(s) => s,
        Err(e) => return error(&ApiError::denied(e.code(), e.to_string()), &rid, "-", peer),
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = match tokio::time::timeout(BODY_DEADLINE, read_body(body, declared)).await {
        Ok(Some(body)) => body,
        Ok(None) => {
            let e =
                ApiError::cannot_parse(format!("the request body is larger than {MAX_BODY} bytes"));
            return error(&e, &rid, "-", peer);
        }
        Err(_) => {
            let e = ApiError {
                status: 408,
                code: "RequestTimeoutException",
                message: format!("the request body did not arrive within {BODY_DEADLINE:?}"),
                fields: Default::default(),
            };
            return error(&e, &rid, "-", peer);
        }
    };
    let raw_path = parts.uri.path();
    let raw_query = parts.uri.query().unwrap_or("");

    let signed = latticed_proxy::sigv4::Request {
        method: parts.method.as_str(),
        raw_path,
        raw_query,
        headers: &parts.headers,
        body: &body,
    };
    if let Err(e) = signer.verify(&signed) {
        return error(&ApiError::denied(e.code(), e.to_string()), &rid, "-", peer);
    }

    let m = model();
    let Some((op, path_params)) = m.route(parts.method.as_str(), raw_path) else {
        let e = ApiError {
            status: 404,
            code: "UnknownOperationException",
            message: format!("no operation for {} {raw_path}", parts.method),
            fields: Default::default(),
        };
        return error(&e, &rid, "-", peer);
    };
    if let Some(e) = super::handlers::unsupported(&op.name) {
        return error(&e, &rid, &op.name, peer);
    }
    let body_json = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(o)) => Some(o),
            Ok(_) => {
                return error(
                    &ApiError::cannot_parse("the request body must be a JSON object"),
                    &rid,
                    &op.name,
                    peer,
                )
            }
            Err(e) => {
                return error(
                    &ApiError::cannot_parse(format!("the request body is not valid JSON: {e}")),
                    &rid,
                    &op.name,
                    peer,
                )
            }
        }
    };
    let query: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                super::model::decode(&k.replace('+', " ")),
                super::model::decode(&v.replace('+', " ")),
            )
        })
        .collect();
    let input = match m.assemble_input(op, &path_params, &query, &parts.headers, body_json) {
        Ok(i) => i,
        Err(problems) => return error(&ApiError::validation(problems), &rid, &op.name, peer),
    };
    if let Some(shape) = &op.input {
        let problems = m.validate(shape, &input);
        if !problems.is_empty() {
            return error(&ApiError::validation(problems), &rid, &op.name, peer);
        }
    }

    let (tx, rx) = oneshot::channel();
    let call = ApiCall {
        operation: op.name.clone(),
        input,
        reply: tx,
    };
    if calls.send(call).await.is_err() {
        return error(
            &ApiError::internal("latticed is shutting down"),
            &rid,
            &op.name,
            peer,
        );
    }
    match rx.await {
        Ok(Ok(result)) => {
            let body = op.output.as_ref().map_or_else(
                || Value::Object(Default::default()),
                |o| m.project(o, &result),
            );
            tracing::debug!(%peer, operation = %op.name, request_id = rid, "API request");
            respond(op.status, &body, &rid, None)
        }
        Ok(Err(e)) => {
            if !op.errors.iter().any(|d| d == e.code) {
                tracing::warn!(operation = %op.name, code = e.code, "answering with an error the model does not declare for this operation");
            }
            error(&e, &rid, &op.name, peer)
        }
        Err(_) => error(
            &ApiError::internal("the request was dropped"),
            &rid,
            &op.name,
            peer,
        ),
    }
}
