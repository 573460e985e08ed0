//! LAMBDA targets: the request becomes a VPC Lattice event (structure 1.0
//! or 2.0), posted to the Lambda Invoke API at `--lambda-endpoint`
//! (`POST {endpoint}/2015-03-31/functions/{name}/invocations`, as AWS and
//! local emulators expose it); the function's JSON answer becomes the
//! response. Requests and answers over 6 MB get 413 and 502, as in Lattice.

use std::{
    collections::BTreeMap,
    sync::{atomic::AtomicU64, Arc},
    time::SystemTime,
};

use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::{
    body::WholeBodyError,
    body::{CountingBody, ProxyBody},
    failure::Failure,
    routing::{LambdaTarget, Served, TargetGroupRoute},
};

/// Largest request body and function answer, as Lattice allows.
pub const MAX_PAYLOAD: usize = 6 * 1024 * 1024;

/// Invokes `function` with `req` and turns its answer into a response.
#[allow(
    clippy::too_many_arguments,
    reason = "the request's context, each distinct"
)]
pub(crate) async fn invoke(
    config: &crate::ProxyConfig,
    bodies: crate::body::WholeBodies<'_>,
    worker: &crate::workers::Worker,
    served: &Served,
    group: &TargetGroupRoute,
    function: &LambdaTarget,
    req: Request<crate::RequestBody>,
    principal: Option<&crate::authz::Principal>,
    body_counter: Option<Arc<AtomicU64>>,
    tenant: crate::netns::NsId,
) -> Result<Response<ProxyBody>, Failure> {
    let Some(endpoint) = &config.lambda_endpoint else {
        tracing::warn!(function = %function.function, "a LAMBDA target group is used but latticed runs without --lambda-endpoint");
        return Err(Failure::NoLambdaEndpoint);
    };
    let (parts, body) = req.into_parts();
    let body = bodies
        .read(CountingBody::wrap(body, body_counter), MAX_PAYLOAD, tenant)
        .await;
    let body = body.map_err(|e| match e {
        WholeBodyError::TooLarge(_) => Failure::RequestTooLarge,
        WholeBodyError::Busy | WholeBodyError::TenantBusy => Failure::BodyBudgetSpent,
        WholeBodyError::Read(_) => Failure::ClientBodyError,
        WholeBodyError::Timeout(_) => Failure::ClientBodyTimeout,
    })?;
    let event = event(
        &parts,
        &body,
        served,
        group,
        function,
        principal,
        &config.region,
    );
    let payload = match serde_json::to_vec(&event) {
        Ok(p) => p,
        Err(_) => return Err(Failure::EventEncoding),
    };
    if payload.len() > MAX_PAYLOAD {
        return Err(Failure::RequestTooLarge);
    }
    let invoke = invocation(endpoint, &function.function, payload)?;
    let answer = tokio::time::timeout(config.request_timeout, worker.lambda.request(invoke)).await;
    let answer = match answer {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            tracing::warn!(function = %function.function, error = %e, "invoking the function failed");
            return Err(if e.is_connect() {
                Failure::LambdaConnectionFailed
            } else {
                Failure::LambdaInvokeFailed
            });
        }
        Err(_) => return Err(Failure::TargetTimeout),
    };
    let failed =
        answer.status() != StatusCode::OK || answer.headers().contains_key("x-amz-function-error");
    let status = answer.status();
    let bytes = match Limited::new(answer.into_body(), MAX_PAYLOAD)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(Failure::ResponseTooLarge)
        }
        Err(_) => return Err(Failure::LambdaInvokeFailed),
    };
    if failed {
        tracing::warn!(function = %function.function, %status, answer = %String::from_utf8_lossy(&bytes[..bytes.len().min(512)]), "the function failed");
        return Err(Failure::LambdaFunctionError);
    }
    response(&bytes).map_err(|why| {
        tracing::warn!(function = %function.function, %why, "the function's answer is not a valid Lattice response");
        Failure::LambdaInvalidResponse
    })
}

/// The Invoke API request for `function` (a name or ARN, with its
/// qualifier) carrying `payload`.
fn invocation(
    endpoint: &str,
    function: &str,
    payload: Vec<u8>,
) -> Result<Request<Full<Bytes>>, Failure> {
    let (name, qualifier) = function_name(function);
    let mut url = format!(
        "{}/2015-03-31/functions/{}/invocations",
        endpoint.trim_end_matches('/'),
        percent(name)
    );
    if let Some(q) = qualifier {
        url.push_str("?Qualifier=");
        url.push_str(&percent(q));
    }
    let invoke = Request::post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-amz-invocation-type", "RequestResponse")
        .body(Full::new(Bytes::from(payload)));
    invoke.map_err(|_| Failure::BadLambdaEndpoint)
}

/// Function name and qualifier from an ARN (`...:function:NAME[:QUALIFIER]`)
/// or a plain name.
fn function_name(id: &str) -> (&str, Option<&str>) {
    match id.split_once(":function:") {
        Some((_, rest)) => match rest.split_once(':') {
            Some((n, q)) => (n, Some(q)),
            None => (rest, None),
        },
        None => (id, None),
    }
}

fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The event for one request, in the group's structure version.
fn event(
    parts: &http::request::Parts,
    body: &Bytes,
    served: &Served,
    group: &TargetGroupRoute,
    function: &LambdaTarget,
    principal: Option<&crate::authz::Principal>,
    region: &str,
) -> Value {
    let (body, is_base64) = match std::str::from_utf8(body) {
        Ok(s) => (s.to_owned(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let query = parts.uri.query().unwrap_or("");
    let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in crate::head::query_pairs(query) {
        params
            .entry(k.into_owned())
            .or_default()
            .push(v.into_owned());
    }
    let host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in &parts.headers {
        headers
            .entry(k.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    if let (Some(h), false) = (host, headers.contains_key("host")) {
        headers.insert(
            "host".into(),
            vec![String::from_utf8_lossy(h.as_bytes()).into_owned()],
        );
    }
    if function.event_v2 {
        let micros = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        json!({
            "version": "2.0",
            "path": parts.uri.path(),
            "method": parts.method.as_str(),
            "headers": headers,
            "queryStringParameters": params,
            "body": body,
            "isBase64Encoded": is_base64,
            "requestContext": {
                "serviceNetworkArn": &*served.network.arn,
                "serviceArn": &*served.listener.service_arn,
                "targetGroupArn": &*group.arn,
                "identity": identity(served, principal),
                "region": region,
                "timeEpoch": micros.to_string(),
            },
        })
    } else {
        let join = |m: BTreeMap<String, Vec<String>>| -> Map<String, Value> {
            m.into_iter()
                .map(|(k, v)| (k, Value::String(v.join(","))))
                .collect()
        };
        json!({
            "raw_path": parts.uri.path_and_query().map_or("/", |p| p.as_str()),
            "method": parts.method.as_str(),
            "headers": join(headers),
            "query_string_parameters": join(params),
            "body": body,
            "is_base64_encoded": is_base64,
        })
    }
}

/// The event's identity block: the caller as the auth layer identified it.
fn identity(served: &Served, principal: Option<&crate::authz::Principal>) -> Value {
    let mut id = json!({ "sourceVpcArn": &*served.network.vpc_arn });
    let iam = served.network.auth.is_some() || served.listener.auth.is_some();
    id["type"] = if iam { "AWS_IAM" } else { "NONE" }.into();
    if let Some(p) = principal {
        id["principal"] = p.arn.clone().into();
        if let Some(o) = &p.org_id {
            id["principalOrgID"] = o.clone().into();
        }
        if let Some(s) = &p.session_name {
            id["sessionName"] = s.clone().into();
        }
    }
    id
}

/// A function's answer, as Lattice (and ALB) read it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    status_code: u16,
    #[serde(default)]
    headers: Map<String, Value>,
    #[serde(default)]
    multi_value_headers: Map<String, Value>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    is_base64_encoded: bool,
}

fn response(bytes: &[u8]) -> Result<Response<ProxyBody>, String> {
    let a: Answer = serde_json::from_slice(bytes).map_err(|e| format!("{e}"))?;
    let status = StatusCode::from_u16(a.status_code)
        .map_err(|_| format!("statusCode {} is not an HTTP status", a.status_code))?;
    let body = match (a.body, a.is_base64_encoded) {
        (None, _) => Bytes::new(),
        (Some(b), false) => Bytes::from(b),
        (Some(b), true) => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| format!("body is not base64: {e}"))?,
        ),
    };
    let mut headers = HeaderMap::new();
    let mut put = |k: &str, v: &Value| -> Result<(), String> {
        let name =
            HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("header name {k:?}"))?;
        let vals: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        for v in vals {
            let s = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let value = HeaderValue::from_str(&s).map_err(|_| format!("header {k:?} value"))?;
            headers.append(name.clone(), value);
        }
        Ok(())
    };
    for (k, v) in &a.headers {
        put(k, v)?;
    }
    for (k, v) in &a.multi_value_headers {
        put(k, v)?;
    }
    crate::head::strip_hop_by_hop(&mut headers);
    headers.remove(header::CONTENT_LENGTH);
    let mut resp = Response::new(
        Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_arns_and_names() {
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:111122223333:function:hello"),
            ("hello", None)
        );
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:111122223333:function:hello:live"),
            ("hello", Some("live"))
        );
        assert_eq!(function_name("hello"), ("hello", None));
    }

    #[test]
    fn answers_become_responses() {
        let r = response(
            br#"{"statusCode":201,"headers":{"content-type":"text/plain","x-n":1},"body":"hi"}"#,
        )
        .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["x-n"], "1");
        let r = response(br#"{"statusCode":200,"body":"aGk=","isBase64Encoded":true}"#).unwrap();
        assert_eq!(r.status(), 200);
        assert!(response(br#"{"body":"no status"}"#).is_err());
        assert!(response(br#"{"statusCode":99}"#).is_err());
        assert!(response(b"not json").is_err());
    }
}
