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

use super::{error::ApiError, model::Api};

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
    /// Operation name, as handlers know it ([`Api::handler_name`]).
    pub operation: String,
    /// Validated input.
    pub input: Value,
    /// The account of the key that signed it.
    pub account: String,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Result<Value, ApiError>>,
}

/// An API key: its secret and the account it signs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    /// Secret access key.
    pub secret: String,
    /// Account id.
    pub account: String,
}

/// Access keys, shared with the daemon.
pub type Credentials = Arc<RwLock<HashMap<String, ApiKey>>>;

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
    let rid = super::uuid();
    let (parts, body) = req.into_parts();
    // The service the request is signed for picks the API; an unknown one
    // is refused by the signature check as signed for the wrong service.
    let api = latticed_proxy::sigv4::signed_service(&parts.headers)
        .and_then(Api::of_service)
        .unwrap_or(Api::Lattice);
    let (body, account) = match authenticated(&parts, body, creds, api).await {
        Ok(signed) => signed,
        Err(e) => return error(&e, &rid, "-", peer),
    };
    let m = api.model();
    let Some((op, path_params)) = m.route(parts.method.as_str(), parts.uri.path()) else {
        let e = ApiError {
            status: 404,
            code: "UnknownOperationException",
            message: format!("no operation for {} {}", parts.method, parts.uri.path()),
            fields: Default::default(),
        };
        return error(&e, &rid, "-", peer);
    };
    let result = match input_of(api, op, &path_params, &parts, &body) {
        Ok(input) => call(calls, api.handler_name(&op.name), input, account).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(result) => {
            let body = op.output.as_ref().map_or_else(
                || Value::Object(Default::default()),
                |o| m.project(o, &result),
            );
            tracing::debug!(%peer, operation = %op.name, request_id = rid, "API request");
            respond(op.status, &body, &rid, None)
        }
        Err(e) => {
            let e = match api {
                Api::Lattice => e,
                Api::Ram => e.in_ram(),
            };
            if !op.errors.iter().any(|d| d == e.code) {
                tracing::warn!(operation = %op.name, code = e.code, "answering with an error the model does not declare for this operation");
            }
            error(&e, &rid, &op.name, peer)
        }
    }
}

/// The body of a request whose signature holds. What the headers tell
/// (key, date, scope) is checked before a byte of the body is read, so an
/// unauthenticated client cannot make the API hold a body; the body is
/// bounded in size and time.
async fn authenticated(
    parts: &http::request::Parts,
    body: Incoming,
    creds: &Credentials,
    api: Api,
) -> Result<(Bytes, String), ApiError> {
    let mut account = String::new();
    let signer = latticed_proxy::sigv4::precheck(
        &parts.headers,
        api.signing_name(),
        SystemTime::now(),
        |key| {
            let k = creds.read().ok().and_then(|c| c.get(key).cloned())?;
            account = k.account;
            Some(k.secret)
        },
    )
    .map_err(|e| ApiError::denied(e.code(), e.to_string()))?;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = match tokio::time::timeout(BODY_DEADLINE, read_body(body, declared)).await {
        Ok(Some(body)) => body,
        Ok(None) => {
            return Err(ApiError::cannot_parse(format!(
                "the request body is larger than {MAX_BODY} bytes"
            )))
        }
        Err(_) => {
            return Err(ApiError {
                status: 408,
                code: "RequestTimeoutException",
                message: format!("the request body did not arrive within {BODY_DEADLINE:?}"),
                fields: Default::default(),
            })
        }
    };
    let signed = latticed_proxy::sigv4::Request {
        method: parts.method.as_str(),
        raw_path: parts.uri.path(),
        raw_query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body: &body,
    };
    signer
        .verify(&signed)
        .map_err(|e| ApiError::denied(e.code(), e.to_string()))?;
    Ok((body, account))
}

/// The operation's input from path, query, headers and body, checked
/// against the model.
fn input_of(
    api: Api,
    op: &super::model::Operation,
    path_params: &std::collections::HashMap<String, String>,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<Value, ApiError> {
    if let Some(e) = super::handlers::unsupported(&api.handler_name(&op.name)) {
        return Err(e);
    }
    let body_json = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(o)) => Some(o),
            Ok(_) => {
                return Err(ApiError::cannot_parse(
                    "the request body must be a JSON object",
                ))
            }
            Err(e) => {
                return Err(ApiError::cannot_parse(format!(
                    "the request body is not valid JSON: {e}"
                )))
            }
        }
    };
    let query: Vec<(String, String)> = parts
        .uri
        .query()
        .unwrap_or("")
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
    let m = api.model();
    let input = m
        .assemble_input(op, path_params, &query, &parts.headers, body_json)
        .map_err(ApiError::validation)?;
    if let Some(shape) = &op.input {
        let problems = m.validate(shape, &input);
        if !problems.is_empty() {
            return Err(ApiError::validation(problems));
        }
    }
    Ok(input)
}

/// Hands the call to the daemon, which carries it out in order with every
/// other, and waits for its answer.
async fn call(
    calls: &mpsc::Sender<ApiCall>,
    operation: String,
    input: Value,
    account: String,
) -> Result<Value, ApiError> {
    let (tx, rx) = oneshot::channel();
    let call = ApiCall {
        operation,
        input,
        account,
        reply: tx,
    };
    if calls.send(call).await.is_err() {
        return Err(ApiError::internal("latticed is shutting down"));
    }
    rx.await
        .unwrap_or_else(|_| Err(ApiError::internal("the request was dropped")))
}
