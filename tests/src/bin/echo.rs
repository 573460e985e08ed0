//! `latticed-echo`: the walkthrough's app. Answers every HTTP request with one
//! JSON line saying which app it is, the address it listens on, and the
//! client address it saw — so a person (or a test) sees at a glance which VPC
//! answered and that the client was a 169.254.171.x address.
//!
//! Run it inside a namespace: `ip netns exec vpc-a latticed-echo --name vpc-a --listen 10.0.16.10:8080`.

use std::{convert::Infallible, net::SocketAddr};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;

#[derive(Parser, Debug)]
struct Args {
    /// Name to report (e.g. the VPC).
    #[arg(long)]
    name: String,
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
}

/// What `?size=N` answers with.
static FILLER: [u8; 1 << 20] = [b'x'; 1 << 20];

fn answer(name: &str, listen: SocketAddr, peer: SocketAddr, req: &Request<Incoming>) -> String {
    let header = |h: &str| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let body = serde_json::json!({
        "app": name,
        "listen": listen.to_string(),
        "client": peer.to_string(),
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "host": header("host"),
        "xForwardedFor": header("x-forwarded-for"),
        "xForwardedProto": header("x-forwarded-proto"),
        "xForwardedPort": header("x-forwarded-port"),
        "latticeNetwork": header("x-amzn-lattice-network"),
        "latticeTarget": header("x-amzn-lattice-target"),
        "latticeIdentity": header("x-amzn-lattice-identity"),
        "requestId": header("x-amzn-requestid"),
        "userAgent": header("user-agent"),
        "query": req.uri().query().unwrap_or(""),
        // Every field as it arrived, so tests see what else got through.
        "headers": req
            .headers()
            .iter()
            .map(|(n, v)| [n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()])
            .collect::<Vec<_>>(),
    });
    format!("{body}\n")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let name: std::sync::Arc<str> = args.name.into();
    loop {
        let (stream, peer) = listener.accept().await?;
        let name = std::sync::Arc::clone(&name);
        let listen = args.listen;
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let text = answer(&name, listen, peer, &req);
                // `?delay_ms=N` answers after N ms: slow targets and
                // requests in flight for the tests.
                let delay = req
                    .uri()
                    .query()
                    .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("delay_ms=")))
                    .and_then(|v| v.parse::<u64>().ok());
                // `?size=N` answers N bytes (at most 1 MiB) instead: large
                // answers for clients that stop reading, shared rather than
                // allocated per request so that 10,000 of them cost nothing.
                let size = req
                    .uri()
                    .query()
                    .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("size=")))
                    .and_then(|v| v.parse::<usize>().ok())
                    .map(|n| n.min(FILLER.len()));
                async move {
                    if let Some(ms) = delay {
                        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                    }
                    let body = match size {
                        Some(n) => Bytes::from_static(&FILLER[..n]),
                        None => Bytes::from(text),
                    };
                    let mut resp = Response::new(Full::new(body));
                    resp.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
