//! Entry points for the fuzz targets in `fuzz/`, built only with
//! `--cfg fuzzing` (which `cargo fuzz` sets). Each runs the parser the data
//! path runs on hostile bytes and asserts what must hold for any input;
//! a panic is a finding.

use crate::{
    fastpath, head,
    http1::{self, Chunked, Framing},
};

/// The two HTTP/1.1 paths forward the same client fields for any head, and
/// no head panics the fast path's parsing, head search or response parse.
pub fn http1_head(data: &[u8]) {
    if let Some(end) = http1::head_end(data, 0) {
        assert!(end <= data.len());
    }
    if let Some((fast, slow)) = fastpath::forwarded_by_both(data) {
        assert_eq!(fast, slow, "the two paths forward different fields");
    }
    let _ = http1::parse_response_with(data, false, |_, _| Ok(()));
    let _ = http1::parse_response_with(data, true, |_, _| Ok(()));
    // The framing decisions both paths rely on.
    let _ = head::connection_names_framing(data);
    let _ = head::is_proxy_field(data);
}

/// Chunked bodies as the fast path relays them: the end is found at the
/// same byte however the input is split across reads, and decoding gives
/// the same data either way.
pub fn chunked(data: &[u8]) {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let whole = Chunked::default().feed(body);
    let at = usize::from(split).min(body.len());
    let mut parts = Chunked::default();
    let split_result = match parts.feed(&body[..at]) {
        Ok(Some(end)) => Ok(Some(end)),
        Ok(None) => parts.feed(&body[at..]).map(|r| r.map(|end| at + end)),
        Err(()) => Err(()),
    };
    assert_eq!(whole, split_result, "the split at {at} changed the result");
    if let Ok(Some(end)) = whole {
        assert!(end <= body.len());
    }
    // Decoding (hyper's side of a pooled target connection), in two reads.
    let mut one = Framing::Chunked(Chunked::default());
    let mut buf = bytes::BytesMut::from(body);
    let decoded_whole = one.decode(&mut buf);
    let mut two = Framing::Chunked(Chunked::default());
    let mut first = bytes::BytesMut::from(&body[..at]);
    let mut got = Vec::new();
    let mut failed = false;
    let mut done = false;
    match two.decode(&mut first) {
        Ok((d, end)) => {
            got.extend_from_slice(&d);
            done = end;
        }
        Err(()) => failed = true,
    }
    if !failed && !done {
        let mut rest = first;
        rest.extend_from_slice(&body[at..]);
        match two.decode(&mut rest) {
            Ok((d, end)) => {
                got.extend_from_slice(&d);
                done = end;
            }
            Err(()) => failed = true,
        }
    }
    if let (Ok((d, end)), false) = (&decoded_whole, failed) {
        if *end && done {
            assert_eq!(d.as_ref(), got.as_slice(), "decoded data differs by split");
        }
    }
}

/// Path normalisation: never panics, gives a path that starts with `/`,
/// has no empty, `.` or `..` segment and no escape of an unreserved
/// character, and is its own normal form. Query decoding never panics.
pub fn path(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    for (k, v) in head::query_pairs(raw) {
        let _ = (k.len(), v.len());
    }
    let Ok(normal) = head::normalize_path(raw) else {
        return;
    };
    assert!(normal.starts_with('/'), "{normal:?}");
    let body = &normal[1..];
    if !body.is_empty() {
        let segments: Vec<&str> = body.split('/').collect();
        let last = segments.len() - 1;
        for (i, seg) in segments.iter().enumerate() {
            assert!(
                *seg != "." && *seg != ".." && (!seg.is_empty() || i == last),
                "{raw:?} -> {normal:?}"
            );
        }
    }
    match head::normalize_path(&normal) {
        Ok(again) => assert_eq!(again, normal, "{raw:?}"),
        Err(e) => panic!("{raw:?} -> {normal:?} -> {e}"),
    }
}

/// A policy document: parsing never panics, and a parsed policy evaluates
/// any request without panicking.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The request's values come from the tail of the input too.
    let (doc, request) = text.split_once('\u{0}').unwrap_or((text, "/x?a=b"));
    let Ok(policy) = crate::authz::Policy::parse(doc) else {
        return;
    };
    let (path, query) = request.split_once('?').unwrap_or((request, ""));
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(query) {
        headers.insert("x-fuzz", v);
    }
    let principal = crate::authz::Principal {
        arn: "arn:aws:iam::111122223333:role/fuzz".into(),
        org_id: Some("o-fuzz".into()),
        session_name: None,
    };
    for who in [None, Some(&principal)] {
        let ctx = crate::authz::Context {
            principal: who,
            resource: "arn:aws:vpc-lattice:us-east-1:111122223333:service/svc-0123456789abcdef0/x",
            method: "GET",
            path,
            headers: &headers,
            query,
            source_vpc: "vpc-fuzz",
            source_vpc_owner: "111122223333",
            service_network_arn:
                "arn:aws:vpc-lattice:us-east-1:111122223333:servicenetwork/sn-0123456789abcdef0",
            service_arn: "arn:aws:vpc-lattice:us-east-1:111122223333:service/svc-0123456789abcdef0",
            port: 443,
            source_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)),
            secure: true,
        };
        let _ = policy.evaluate(&ctx);
    }
}

/// SigV4: headers and a request line from fuzz bytes; verification never
/// panics, and never succeeds for a signature the fuzzer made up.
pub fn sigv4(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let target = lines.next().unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = http::HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.trim().as_bytes()),
            http::HeaderValue::from_str(value.trim()),
        ) {
            headers.append(n, v);
        }
    }
    let req = crate::sigv4::Request {
        method: "POST",
        raw_path: path,
        raw_query: query,
        headers: &headers,
        body: data,
    };
    let now = std::time::SystemTime::now();
    let r = crate::sigv4::verify(&req, "vpc-lattice-svcs", now, |_| Some("secret".into()));
    assert!(r.is_err(), "a made-up signature verified: {text:?}");
}
