//! Cost of the auth layer per request, for `cargo xtask bench`: evaluating
//! a 10 KB policy, and verifying a SigV4 signature. Prints one JSON object.
//!
//! usage: authz_bench [ITERATIONS]

#![allow(clippy::print_stdout, reason = "the benchmark's report")]

use std::{hint::black_box, time::Instant};

use latticed_proxy::{
    authz::{Context, Policy, Principal},
    sigv4,
};

/// A policy just under 10 KB: many statements, each with conditions, the
/// matching one last so every statement is evaluated.
fn big_policy() -> String {
    let mut statements = Vec::new();
    let mut i = 0;
    loop {
        let s = format!(
            r#"{{"Sid":"S{i}","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::111122223333:role/team-{i}"}},"Action":"vpc-lattice-svcs:Invoke","Resource":"arn:aws:vpc-lattice:us-east-1:111122223333:service/svc-0123456789abcdef0/team{i}/*","Condition":{{"StringEquals":{{"vpc-lattice-svcs:SourceVpc":["vpc-{i}","vpc-x{i}"]}},"StringLike":{{"vpc-lattice-svcs:RequestHeader/x-team":"t{i}-*"}}}}}}"#
        );
        let candidate = format!(
            r#"{{"Version":"2012-10-17","Statement":[{}]}}"#,
            statements
                .iter()
                .chain(std::iter::once(&s))
                .cloned()
                .collect::<Vec<_>>()
                .join(",")
        );
        if candidate.len() > 9_600 {
            break;
        }
        statements.push(s);
        i += 1;
    }
    statements.push(r#"{"Sid":"Last","Effect":"Allow","Principal":"*","Action":"vpc-lattice-svcs:Invoke","Resource":"*","Condition":{"StringEquals":{"vpc-lattice-svcs:RequestMethod":"GET"}}}"#.to_owned());
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{}]}}"#,
        statements.join(",")
    )
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let text = big_policy();
    let policy = match Policy::parse(&text) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("benchmark policy invalid: {e}");
            std::process::exit(1);
        }
    };
    let principal = Principal {
        arn: "arn:aws:sts::111122223333:assumed-role/app/s1".into(),
        org_id: Some("o-a1b2c3d4e5".into()),
        session_name: Some("s1".into()),
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "host",
        http::HeaderValue::from_static("svc.example.internal"),
    );
    headers.insert("x-team", http::HeaderValue::from_static("blue"));
    headers.insert(
        "x-amz-content-sha256",
        http::HeaderValue::from_static("UNSIGNED-PAYLOAD"),
    );
    let resource =
        "arn:aws:vpc-lattice:us-east-1:111122223333:service/svc-0123456789abcdef0/orders/42";
    let ctx = Context {
        principal: Some(&principal),
        resource,
        method: "GET",
        path: "/orders/42",
        headers: &headers,
        query: "",
        source_vpc: "vpc-b",
        source_vpc_owner: "111122223333",
        service_network_arn:
            "arn:aws:vpc-lattice:us-east-1:111122223333:servicenetwork/sn-0123456789abcdef0",
        service_arn: "arn:aws:vpc-lattice:us-east-1:111122223333:service/svc-0123456789abcdef0",
        port: 443,
        source_ip: std::net::IpAddr::from([10, 0, 16, 7]),
        secure: true,
    };
    let t = Instant::now();
    for _ in 0..n {
        black_box(policy.evaluate(black_box(&ctx)));
    }
    let eval_ns = t.elapsed().as_nanos() as f64 / f64::from(n);
    let verify_ns = sigv4_verify_ns(headers, (n / 4).max(1));
    println!(
        r#"{{"policyBytes":{},"statements":{},"policyEvalNs":{eval_ns:.0},"sigv4VerifyNs":{verify_ns:.0},"iterations":{n}}}"#,
        text.len(),
        text.matches("\"Sid\"").count()
    );
}

/// Nanoseconds per SigV4 verification, over `m` of them: a GET signed now
/// (UNSIGNED-PAYLOAD, as HTTP/2 clients of Lattice usually send),
/// verified against a one-key store.
fn sigv4_verify_ns(mut headers: http::HeaderMap, m: u32) -> f64 {
    let now = std::time::SystemTime::now();
    let amz_date = sigv4::format_amz_date(
        now.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    headers.insert(
        "x-amz-date",
        http::HeaderValue::from_str(&amz_date).unwrap_or(http::HeaderValue::from_static("")),
    );
    let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    let unsigned = sigv4::Request {
        method: "GET",
        raw_path: "/orders/42",
        raw_query: "",
        headers: &headers,
        body: b"",
    };
    let Some(auth) = sigv4::sign(
        &unsigned,
        "AKIDEXAMPLE",
        secret,
        "us-east-1",
        "vpc-lattice-svcs",
        &amz_date,
        "host;x-amz-date;x-team",
    ) else {
        eprintln!("signing failed");
        std::process::exit(1);
    };
    let mut signed_headers = headers.clone();
    signed_headers.remove("x-amz-content-sha256");
    signed_headers.insert(
        "authorization",
        http::HeaderValue::from_str(&auth).unwrap_or(http::HeaderValue::from_static("")),
    );
    let req = sigv4::Request {
        method: "GET",
        raw_path: "/orders/42",
        raw_query: "",
        headers: &signed_headers,
        body: b"",
    };
    let t = Instant::now();
    let mut ok = 0u32;
    for _ in 0..m {
        if sigv4::verify(black_box(&req), "vpc-lattice-svcs", now, |_| {
            Some(secret.to_owned())
        })
        .is_ok()
        {
            ok += 1;
        }
    }
    let verify_ns = t.elapsed().as_nanos() as f64 / f64::from(m);
    if ok != m {
        eprintln!("verification failed in the benchmark");
        std::process::exit(1);
    }
    verify_ns
}
