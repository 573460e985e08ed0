//! The auth layer of the request path: identify the caller (SigV4, service
//! `vpc-lattice-svcs`), evaluate the policies that apply, and answer 403
//! as Lattice does when they do not allow.

use std::time::SystemTime;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Either, Full};

use super::{Conn, ProxyBody};
use crate::{
    authz::{evaluate, Context, DenyReason, Level, Principal, Verdict, ACTION},
    body::WholeBodyError,
    routing::{NsId, Served},
    sigv4, RequestBody,
};

/// Largest signed payload read to check its hash.
pub const MAX_SIGNED_BODY: usize = 10 * 1024 * 1024;

/// What the auth layer decided.
#[derive(Debug)]
pub enum Checked {
    /// Go on, as this caller (`None`: anonymous, or auth type NONE).
    Allowed(Request<RequestBody>, Option<Principal>),
    /// Answer this 403; log the reason and caller.
    Denied {
        /// The answer.
        response: Response<ProxyBody>,
        /// For `authDeniedReason`.
        reason: String,
        /// The caller, if it was identified.
        principal: Option<Principal>,
    },
}

/// Runs the auth layer for `req` to `served`. Auth type NONE at both levels
/// passes at once, without looking at the request.
pub async fn check(
    principals: &crate::authz::Principals,
    bodies: crate::body::WholeBodies<'_>,
    conn: &Conn,
    served: &Served,
    req: Request<RequestBody>,
) -> Checked {
    let network = served.network.auth.as_ref().map(|p| Level {
        name: "service network",
        policy: p.as_deref(),
    });
    let service = served.listener.auth.as_ref().map(|p| Level {
        name: "service",
        policy: p.as_deref(),
    });
    if network.is_none() && service.is_none() {
        return Checked::Allowed(req, None);
    }
    let resource = format!("{}{}", served.listener.service_arn, req.uri().path());
    let (req, principal) = match authenticate(principals, bodies, conn.ns, req).await {
        Ok(x) => x,
        Err(Refusal { why, status, code }) => {
            tracing::info!(peer = %conn.peer, service = %served.listener.service, reason = %why, "request refused: authentication failed");
            let reason = DenyReason::Authentication(why.clone());
            let mut response = forbidden(code, &why);
            *response.status_mut() = status;
            return Checked::Denied {
                response,
                reason: reason.log_reason(),
                principal: None,
            };
        }
    };
    let levels: Vec<Level<'_>> = network.into_iter().chain(service).collect();
    let ctx = Context {
        principal: principal.as_ref(),
        resource: &resource,
        method: req.method().as_str(),
        path: req.uri().path(),
        headers: req.headers(),
        query: req.uri().query().unwrap_or(""),
        source_vpc: &served.network.vpc_id,
        source_vpc_owner: served.network.vpc_arn.split(':').nth(4).unwrap_or_default(),
        service_network_arn: &served.network.arn,
        service_arn: &served.listener.service_arn,
        port: conn.local.port(),
        source_ip: conn.peer.ip(),
        secure: conn.tls.is_some(),
    };
    match evaluate(&levels, &ctx) {
        Verdict::Allow => Checked::Allowed(req, principal),
        Verdict::Deny(reason) => {
            let who = principal.as_ref().map_or("anonymous", |p| p.arn.as_str());
            let because = match &reason {
                DenyReason::Explicit { .. } => {
                    "with an explicit deny in a service-based policy".to_owned()
                }
                _ => format!("because no service-based policy allows the {ACTION} action"),
            };
            let message = format!(
                "AccessDeniedException: User: {who} is not authorized to perform: {ACTION} on resource: {resource} {because}"
            );
            Checked::Denied {
                response: forbidden("AccessDeniedException", &message),
                reason: reason.log_reason(),
                principal,
            }
        }
    }
}

/// Why [`authenticate`] refused: the log reason, and the answer's status
/// and error code.
struct Refusal {
    why: String,
    status: StatusCode,
    code: &'static str,
}

impl Refusal {
    fn denied(why: String, code: &'static str) -> Self {
        Self {
            why,
            status: StatusCode::FORBIDDEN,
            code,
        }
    }
}

/// The caller of `req`: `Ok(None)` if unsigned (anonymous). A signature that
/// does not verify is an error, never anonymous.
///
/// Everything the headers can tell is checked before the body is read: an
/// unknown key, a stale date or a malformed header costs no body. A signed
/// body is then read whole within the data plane's body deadline and
/// memory budget (see [`crate::body`]).
async fn authenticate(
    principals: &crate::authz::Principals,
    bodies: crate::body::WholeBodies<'_>,
    tenant: NsId,
    req: Request<RequestBody>,
) -> Result<(Request<RequestBody>, Option<Principal>), Refusal> {
    if !req.headers().contains_key(header::AUTHORIZATION) {
        return Ok((req, None));
    }
    let (mut parts, body) = req.into_parts();
    // HTTP/2 carries the host as :authority; clients sign it as `host`.
    if !parts.headers.contains_key(header::HOST) {
        if let Some(v) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(header::HOST, v);
        }
    }
    let signer = sigv4::precheck(
        &parts.headers,
        "vpc-lattice-svcs",
        SystemTime::now(),
        |key| principals.get(key).map(|(secret, _)| secret.clone()),
    )
    .map_err(|e| Refusal::denied(e.to_string(), e.code()))?;
    let unsigned = parts
        .headers
        .get("x-amz-content-sha256")
        .is_some_and(|v| v.as_bytes() == b"UNSIGNED-PAYLOAD");
    // A signed payload is read whole: its hash is part of the signature.
    let (body, bytes) = if unsigned {
        (body, Bytes::new())
    } else {
        let bytes = bodies
            .read(body, MAX_SIGNED_BODY, tenant)
            .await
        .map_err(|e| match e {
            WholeBodyError::TooLarge(_) => Refusal::denied(
                format!("signed payloads are limited to {MAX_SIGNED_BODY} bytes; sign with UNSIGNED-PAYLOAD"),
                "AccessDeniedException",
            ),
            WholeBodyError::Busy | WholeBodyError::TenantBusy => Refusal {
                why: e.to_string(),
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "ServiceUnavailableException",
            },
            e => Refusal::denied(e.to_string(), "AccessDeniedException"),
        })?;
        (Either::Right(Full::new(bytes.clone())), bytes)
    };
    let signed = sigv4::Request {
        method: parts.method.as_str(),
        // Signed as the client sent it, before normalisation.
        raw_path: parts
            .extensions
            .get::<crate::request::RawPath>()
            .map_or(parts.uri.path(), |r| r.0.as_str()),
        raw_query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body: &bytes,
    };
    let verified = signer
        .verify(&signed)
        .map_err(|e| Refusal::denied(e.to_string(), e.code()))?;
    drop(signer);
    let principal = principals.get(&verified.access_key).map(|(_, p)| p.clone());
    Ok((Request::from_parts(parts, body), principal))
}

fn forbidden(code: &'static str, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "Message": message }).to_string();
    let mut resp = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = StatusCode::FORBIDDEN;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(code));
    resp
}
