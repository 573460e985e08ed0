//! The Prometheus endpoint (`--metrics-listen`): request counters and
//! latency histograms per service and target group (kept by the proxy),
//! target health per group, open connections, dropped access-log lines, and
//! per-namespace steering counters read from the pinned eBPF maps, the same
//! ones `bpftool map dump pinned /sys/fs/bpf/latticed/NS/steer_stats` shows.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    fmt::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{atomic::Ordering, Arc},
};

use aya::maps::{MapData, PerCpuArray};
use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use latticed_common::stats;
use latticed_proxy::{
    health::Status,
    metrics::escape,
    routing::{Action, GroupKind},
    Dataplane,
};

/// Binds `addr` and serves scrapes until the task is dropped.
pub async fn serve(
    addr: SocketAddr,
    dp: Arc<Dataplane>,
    bpffs_root: PathBuf,
    cluster: Option<Arc<crate::control::cluster::Gauges>>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(endpoint = %format!("http://{}/metrics", listener.local_addr()?), "metrics listening");
    let bpffs_root: Arc<Path> = bpffs_root.into();
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let dp = Arc::clone(&dp);
            let root = Arc::clone(&bpffs_root);
            let cluster = cluster.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let body = if req.uri().path() == "/metrics" {
                        Ok(render(&dp, &root, cluster.as_deref()))
                    } else {
                        Err(())
                    };
                    async move {
                        let mut resp = match body {
                            Ok(text) => {
                                let mut r = Response::new(Full::new(Bytes::from(text)));
                                r.headers_mut().insert(
                                    header::CONTENT_TYPE,
                                    http::HeaderValue::from_static(
                                        "text/plain; version=0.0.4; charset=utf-8",
                                    ),
                                );
                                r
                            }
                            Err(()) => {
                                Response::new(Full::new(Bytes::from_static(b"see /metrics\n")))
                            }
                        };
                        if req.uri().path() != "/metrics" {
                            *resp.status_mut() = StatusCode::NOT_FOUND;
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    }))
}

/// The whole exposition.
pub fn render(
    dp: &Dataplane,
    bpffs_root: &Path,
    cluster: Option<&crate::control::cluster::Gauges>,
) -> String {
    let mut out = String::with_capacity(16 * 1024);
    dp.metrics.render(&mut out);

    render_targets(&mut out, dp);
    let _ = writeln!(
        out,
        "# HELP latticed_active_connections Open client connections.\n# TYPE latticed_active_connections gauge\nlatticed_active_connections {}",
        dp.active.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP latticed_access_log_dropped_total Access log lines dropped (queue full or file unwritable).\n# TYPE latticed_access_log_dropped_total counter\nlatticed_access_log_dropped_total {}",
        dp.access_log.dropped()
    );

    render_steering(&mut out, bpffs_root);
    if let Some(c) = cluster {
        c.render(&mut out);
        render_tunnel(&mut out, &dp.tunnel);
    }
    out
}

/// What other nodes asked of this node's tunnel server.
fn render_tunnel(out: &mut String, t: &latticed_proxy::tunnel::server::Counters) {
    let _ = writeln!(
        out,
        "# HELP latticed_tunnel_streams_total Streams other nodes opened here, by outcome: carried to a target, refused (not a target of a group hosted here), or failed (the target did not answer).\n# TYPE latticed_tunnel_streams_total counter"
    );
    for (outcome, n) in [
        ("carried", &t.accepted),
        ("refused", &t.refused),
        ("failed", &t.failed),
    ] {
        let _ = writeln!(
            out,
            "latticed_tunnel_streams_total{{outcome=\"{outcome}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP latticed_tunnel_rejected_peers_total Tunnel connections refused at the handshake (no certificate from the cluster CA, or one naming no node).\n# TYPE latticed_tunnel_rejected_peers_total counter\nlatticed_tunnel_rejected_peers_total {}",
        t.rejected_peers.load(Ordering::Relaxed)
    );
}

/// Targets per group by health, from the snapshot in force.
fn render_targets(out: &mut String, dp: &Dataplane) {
    let table = dp.routes();
    let mut groups: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for vip in table.listeners.values() {
        for served in vip.by_host.values().chain(vip.only.iter()) {
            let l = &served.listener;
            for action in l.rules.iter().map(|r| &r.action).chain([&l.default_action]) {
                let Action::Forward(f) = action else { continue };
                for g in f.groups() {
                    let GroupKind::Hosts { targets, .. } = &g.kind else {
                        continue;
                    };
                    let e = groups.entry(&g.name).or_default();
                    *e = (0, 0, 0);
                    for t in targets {
                        match t.health.status() {
                            Status::Healthy => e.0 += 1,
                            Status::Unhealthy => e.1 += 1,
                            Status::Initial | Status::Unavailable => e.2 += 1,
                        }
                    }
                }
            }
        }
    }
    out.push_str("# HELP latticed_targets Targets per target group by health.\n# TYPE latticed_targets gauge\n");
    for (name, (healthy, unhealthy, other)) in &groups {
        let n = escape(name);
        let _ = writeln!(
            out,
            "latticed_targets{{target_group=\"{n}\",health=\"healthy\"}} {healthy}"
        );
        let _ = writeln!(
            out,
            "latticed_targets{{target_group=\"{n}\",health=\"unhealthy\"}} {unhealthy}"
        );
        let _ = writeln!(
            out,
            "latticed_targets{{target_group=\"{n}\",health=\"unknown\"}} {other}"
        );
    }
}

/// Steering counters per namespace, from the pinned maps.
fn render_steering(out: &mut String, bpffs_root: &Path) {
    out.push_str("# HELP latticed_steering_total Connections per namespace by the sk_lookup program's verdict.\n# TYPE latticed_steering_total counter\n");
    let Ok(dirs) = std::fs::read_dir(bpffs_root) else {
        return;
    };
    let mut dirs: Vec<_> = dirs.filter_map(Result::ok).collect();
    dirs.sort_by_key(std::fs::DirEntry::file_name);
    for d in dirs {
        let ns = d.file_name().to_string_lossy().into_owned();
        let Ok(map) = MapData::from_pin(d.path().join("steer_stats")) else {
            continue;
        };
        let Ok(array) = PerCpuArray::<MapData, u64>::try_from(aya::maps::Map::PerCpuArray(map))
        else {
            continue;
        };
        for (verdict, index) in [
            ("steered", stats::STEERED),
            ("refused", stats::REFUSED),
            ("no_listener", stats::NO_LISTENER),
            ("refused_by_security_group", stats::SG_REFUSED),
        ] {
            let n: u64 = array
                .get(&index, 0)
                .map(|v| v.iter().sum())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "latticed_steering_total{{namespace=\"{}\",verdict=\"{verdict}\"}} {n}",
                escape(&ns)
            );
        }
    }
}
