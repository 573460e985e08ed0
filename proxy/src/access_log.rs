//! Access logs: one JSON line per request, with Lattice's field names.
//!
//! The request path serializes its line and hands it to a bounded queue
//! with `try_send`; a dedicated thread appends lines to files. When the
//! queue is full the line is dropped and counted (`dropped()`, exported as a
//! metric): logging never makes a request wait. Nothing is serialized when
//! no subscription covers the request.
//!
//! Destinations are Lattice's three kinds, mapped to local files under the
//! log directory (`latticed run --log-dir`):
//!
//! | destination ARN | file |
//! | --- | --- |
//! | `arn:aws:logs:R:A:log-group:NAME[:*]` | `LOG_DIR/NAME.log` |
//! | `arn:aws:s3:::BUCKET[/PREFIX]` | `LOG_DIR/s3/BUCKET[/PREFIX]/access.log` |
//! | `arn:aws:firehose:R:A:deliverystream/NAME` | `LOG_DIR/firehose/NAME.log` |

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::{BufWriter, Write as _},
    path::{Component, Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use serde::Serialize;
use tokio::sync::mpsc;

/// How many lines may wait for the writer before new ones are dropped.
pub const QUEUE_LINES: usize = 16_384;

/// One access log destination.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Destination {
    /// The subscription's destination ARN.
    pub arn: String,
    /// The file lines go to.
    pub path: PathBuf,
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A destination ARN latticed cannot map to a file.
    #[error("destinationArn {arn:?}: {reason}")]
    BadDestination {
        /// The ARN.
        arn: String,
        /// What is wrong.
        reason: String,
    },
}

/// Maps a destination ARN to its file under `log_dir` (module docs).
pub fn destination_path(log_dir: &Path, arn: &str) -> Result<PathBuf, Error> {
    let bad = |reason: &str| Error::BadDestination {
        arn: arn.to_owned(),
        reason: reason.to_owned(),
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [_, _, service, _, _, resource] = parts[..] else {
        return Err(bad(
            "is not an ARN (arn:partition:service:region:account:resource)",
        ));
    };
    let rel = match service {
        "logs" => {
            let name = resource
                .strip_prefix("log-group:")
                .ok_or_else(|| bad("a CloudWatch Logs ARN must name a log-group"))?;
            let name = name.strip_suffix(":*").unwrap_or(name);
            PathBuf::from(format!("{}.log", name.trim_start_matches('/')))
        }
        "s3" => {
            let bucket = resource.trim_matches('/');
            PathBuf::from("s3").join(bucket).join("access.log")
        }
        "firehose" => {
            let name = resource
                .strip_prefix("deliverystream/")
                .ok_or_else(|| bad("a Firehose ARN must name a deliverystream"))?;
            PathBuf::from("firehose").join(format!("{name}.log"))
        }
        _ => {
            return Err(bad(
                "the destination must be a CloudWatch Logs log group, an S3 bucket or a Firehose delivery stream",
            ))
        }
    };
    if rel.as_os_str().is_empty()
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(n) if !n.is_empty()))
    {
        return Err(bad(
            "the name may not contain empty, '.' or '..' path segments",
        ));
    }
    Ok(log_dir.join(rel))
}

/// One connection to a resource, as Lattice logs resource access
/// (`VpcLatticeResourceAccessLogs`). Absent values are `"-"`.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ResourceRecord<'a> {
    pub event_timestamp: String,
    pub service_network_arn: &'a str,
    pub service_network_resource_association_id: &'a str,
    pub vpc_endpoint_id: &'a str,
    pub source_vpc_arn: &'a str,
    pub resource_configuration_arn: &'a str,
    pub protocol: &'a str,
    /// The client.
    pub source_ip_port: String,
    /// What the client dialled: the resource's VIP and port.
    pub destination_ip_port: String,
    /// Where the connection left from, in the gateway's VPC.
    pub gateway_ip_port: String,
    /// The resource's address and port.
    pub resource_ip_port: String,
}

/// One request, as Lattice logs it. Absent values are `"-"` or 0, as in
/// Lattice's own logs.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Record<'a> {
    pub start_time: String,
    pub request_method: &'a str,
    pub request_path: &'a str,
    pub protocol: &'a str,
    pub response_code: u16,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration: u64,
    pub request_to_target_duration: u64,
    pub response_from_target_duration: u64,
    pub user_agent: &'a str,
    pub host_header: &'a str,
    pub server_name_indication: &'a str,
    pub ssl_cipher: &'a str,
    pub tls_version: &'a str,
    pub source_ip_port: String,
    pub target_ip_port: String,
    pub target_group_arn: &'a str,
    pub service_arn: &'a str,
    pub service_network_arn: &'a str,
    pub source_vpc_arn: &'a str,
    pub source_vpc_id: &'a str,
    pub destination_vpc_id: &'a str,
    pub caller_principal: &'a str,
    pub resolved_user: &'a str,
    pub auth_denied_reason: &'a str,
    pub request_id: &'a str,
    pub grpc_response_code: &'a str,
    pub failure_reason: &'a str,
}

struct Line {
    dests: Vec<Arc<Destination>>,
    bytes: Vec<u8>,
}

/// The access log queue and its writer thread.
#[derive(Debug)]
pub struct AccessLog {
    tx: mpsc::Sender<Line>,
    dropped: AtomicU64,
    failed: Arc<AtomicU64>,
}

impl std::fmt::Debug for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Line")
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl AccessLog {
    /// Starts the writer thread.
    pub fn start() -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE_LINES);
        let failed = Arc::new(AtomicU64::new(0));
        let f = Arc::clone(&failed);
        std::thread::Builder::new()
            .name("latticed-accesslog".into())
            .spawn(move || writer(rx, &f))?;
        Ok(Self {
            tx,
            dropped: AtomicU64::new(0),
            failed,
        })
    }

    /// Queues `record` for `dests` (no-op when empty); drops it if the queue
    /// is full.
    pub fn log(&self, dests: &[&[Arc<Destination>]], record: &impl Serialize) {
        if dests.iter().all(|d| d.is_empty()) {
            return;
        }
        let mut bytes = Vec::with_capacity(768);
        if serde_json::to_writer(&mut bytes, record).is_err() {
            return;
        }
        bytes.push(b'\n');
        let line = Line {
            dests: dests.iter().flat_map(|d| d.iter().cloned()).collect(),
            bytes,
        };
        if self.tx.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lines dropped because the queue was full or a file could not be
    /// written.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }
}

fn writer(mut rx: mpsc::Receiver<Line>, failed: &AtomicU64) {
    let mut files: HashMap<PathBuf, BufWriter<File>> = HashMap::new();
    while let Some(line) = rx.blocking_recv() {
        let mut next = Some(line);
        // Write everything queued, then flush once.
        while let Some(line) = next.take() {
            for d in &line.dests {
                let file = match files.get_mut(&d.path) {
                    Some(f) => Some(f),
                    None => match open(&d.path) {
                        Ok(f) => Some(files.entry(d.path.clone()).or_insert(f)),
                        Err(e) => {
                            tracing::warn!(path = %d.path.display(), error = %e, "cannot open access log");
                            None
                        }
                    },
                };
                let ok = file.is_some_and(|f| f.write_all(&line.bytes).is_ok());
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                    files.remove(&d.path);
                }
            }
            next = rx.try_recv().ok();
        }
        files.retain(|path, f| match f.flush() {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "flushing access log");
                false
            }
        });
        // A file removed by log rotation is reopened on the next line.
        files.retain(|path, _| path.exists());
    }
}

fn open(path: &Path) -> std::io::Result<BufWriter<File>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let f = OpenOptions::new().create(true).append(true).open(path)?;
    Ok(BufWriter::with_capacity(64 * 1024, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_map_to_files_under_the_log_dir() {
        let d = Path::new("/var/log/latticed");
        let p = |arn: &str| destination_path(d, arn).map(|p| p.display().to_string());
        assert_eq!(
            p("arn:aws:logs:us-east-1:111122223333:log-group:/aws/vpclattice/demo:*").unwrap(),
            "/var/log/latticed/aws/vpclattice/demo.log"
        );
        assert_eq!(
            p("arn:aws:s3:::my-bucket/prefix").unwrap(),
            "/var/log/latticed/s3/my-bucket/prefix/access.log"
        );
        assert_eq!(
            p("arn:aws:firehose:us-east-1:111122223333:deliverystream/ds").unwrap(),
            "/var/log/latticed/firehose/ds.log"
        );
        assert!(p("arn:aws:logs:us-east-1:1:log-group:../../etc/passwd")
            .unwrap_err()
            .to_string()
            .contains("'..'"));
        assert!(p("arn:aws:sqs:us-east-1:1:q").is_err());
        assert!(p("not-an-arn").is_err());
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, _rx) = mpsc::channel(1);
        let log = AccessLog {
            tx,
            dropped: AtomicU64::new(0),
            failed: Arc::default(),
        };
        let dest = [Arc::new(Destination {
            arn: "x".into(),
            path: "/dev/null".into(),
        })];
        for _ in 0..3 {
            log.log(&[&dest], &Record::default());
        }
        assert_eq!(log.dropped(), 2);
    }
}
