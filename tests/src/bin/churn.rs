//! `latticed-churn`: a new TCP connection per request, as clients that do
//! not keep connections alive behave. Each of `--threads` threads connects
//! to `--to`, sends one HTTP/1.1 request with `Connection: close`, reads
//! the answer to its end, and starts over, for `--secs`. Prints one JSON
//! line: connections completed and failed. The bench runs it inside a
//! client namespace to measure what each new connection costs.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    /// Address to connect to.
    #[arg(long)]
    to: SocketAddr,
    /// Seconds to run.
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// One request on a new connection; whether a whole answer came back.
fn once(to: SocketAddr, request: &[u8], buf: &mut [u8]) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&to, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(request).is_err() {
        return false;
    }
    let mut got = 0usize;
    loop {
        match s.read(buf) {
            Ok(0) => return got > 0,
            Ok(n) => got += n,
            Err(_) => return false,
        }
    }
}

#[expect(clippy::print_stdout, reason = "the answer is printed for the bench")]
fn main() {
    let args = Args::parse();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        args.to
    );
    let (ok, failed) = (AtomicU64::new(0), AtomicU64::new(0));
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..args.threads.max(1) {
            s.spawn(|| {
                let mut buf = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    let counter = if once(args.to, request.as_bytes(), &mut buf) {
                        &ok
                    } else {
                        &failed
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_secs(args.secs));
        stop.store(true, Ordering::Relaxed);
    });
    let secs = start.elapsed().as_secs_f64();
    let (ok, failed) = (ok.into_inner(), failed.into_inner());
    println!(
        "{}",
        serde_json::json!({"connections": ok, "failed": failed, "seconds": secs})
    );
}
