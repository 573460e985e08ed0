//! Active health checks of targets.
//!
//! Each (namespace, target address, check configuration) has one checker
//! task. It sends the configured request from the target's namespace and a
//! 169.254.171.x source address (the same path as traffic, see `upstream`),
//! counts consecutive successes and failures against the thresholds, and
//! stores the verdict in an atomic the routing snapshot's targets share.
//! Requests never wait for a check: they read the atomic.
//!
//! A new target is routable before its first verdict (its status is
//! INITIAL); the first check runs at once, and its result decides the
//! status. After that, a status changes only after `healthy_threshold`
//! consecutive successes or `unhealthy_threshold` consecutive failures.
//!
//! Checkers live as long as some published target refers to them; the
//! control plane calls [`HealthChecks::retain`] after each publish.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::{
    netns::NsId,
    upstream::TargetVersion,
    upstream::{NsConnector, Stream},
};

/// A target's health as ListTargets reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Registered, not checked yet (routable).
    Initial = 0,
    /// Passed its checks.
    Healthy = 1,
    /// Failed its checks: gets no new requests unless all targets are.
    Unhealthy = 2,
    /// Health checks are disabled for its group.
    Unavailable = 3,
}

impl Status {
    /// The Lattice `TargetStatus` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "INITIAL",
            Self::Healthy => "HEALTHY",
            Self::Unhealthy => "UNHEALTHY",
            Self::Unavailable => "UNAVAILABLE",
        }
    }

    /// The status [`Status::as_str`] names.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Initial,
            Self::Healthy,
            Self::Unhealthy,
            Self::Unavailable,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Healthy,
            2 => Self::Unhealthy,
            3 => Self::Unavailable,
            _ => Self::Initial,
        }
    }
}

/// Why a target has its status (ListTargets' `reasonCode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    /// Nothing to report (healthy).
    None = 0,
    /// The first check has not finished.
    InitialHealthChecking = 1,
    /// The response status did not match the matcher.
    ResponseCodeMismatch = 2,
    /// No response within the timeout.
    Timeout = 3,
    /// Connecting or the exchange failed.
    ConnectionFailed = 4,
    /// Health checks are disabled.
    HealthCheckDisabled = 5,
}

impl Reason {
    /// The reason code string.
    pub fn as_str(self) -> Option<&'static str> {
        Some(match self {
            Self::None => return None,
            Self::InitialHealthChecking => "Elb.InitialHealthChecking",
            Self::ResponseCodeMismatch => "Target.ResponseCodeMismatch",
            Self::Timeout => "Target.Timeout",
            Self::ConnectionFailed => "Target.FailedHealthChecks",
            Self::HealthCheckDisabled => "Target.HealthCheckDisabled",
        })
    }

    /// The reason [`Reason::as_str`] names (`None` for no code).
    pub fn parse(s: Option<&str>) -> Option<Self> {
        [
            Self::None,
            Self::InitialHealthChecking,
            Self::ResponseCodeMismatch,
            Self::Timeout,
            Self::ConnectionFailed,
            Self::HealthCheckDisabled,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::InitialHealthChecking,
            2 => Self::ResponseCodeMismatch,
            3 => Self::Timeout,
            4 => Self::ConnectionFailed,
            5 => Self::HealthCheckDisabled,
            _ => Self::None,
        }
    }
}

/// A target's health, shared by the checker and the routing snapshot.
#[derive(Debug)]
pub struct TargetHealth {
    status: AtomicU8,
    reason: AtomicU8,
}

impl Default for TargetHealth {
    fn default() -> Self {
        Self {
            status: AtomicU8::new(Status::Initial as u8),
            reason: AtomicU8::new(Reason::InitialHealthChecking as u8),
        }
    }
}

impl TargetHealth {
    /// Whether new requests may go to this target.
    pub fn routable(&self) -> bool {
        self.status.load(Ordering::Relaxed) != Status::Unhealthy as u8
    }

    /// Current status.
    pub fn status(&self) -> Status {
        Status::from_u8(self.status.load(Ordering::Relaxed))
    }

    /// Current reason.
    pub fn reason(&self) -> Reason {
        Reason::from_u8(self.reason.load(Ordering::Relaxed))
    }

    /// Sets the status with its usual reason.
    pub fn set(&self, status: Status) {
        let reason = match status {
            Status::Initial => Reason::InitialHealthChecking,
            Status::Healthy => Reason::None,
            Status::Unhealthy => Reason::ConnectionFailed,
            Status::Unavailable => Reason::HealthCheckDisabled,
        };
        self.set_with(status, reason);
    }

    /// Sets the status and its reason (a check's result, or the hosting
    /// node's as it shares it).
    pub fn set_with(&self, status: Status, reason: Reason) {
        self.reason.store(reason as u8, Ordering::Relaxed);
        self.status.store(status as u8, Ordering::Relaxed);
    }
}

/// A target group's health check configuration (Lattice's
/// `HealthCheckConfig` with its defaults applied).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CheckConfig {
    /// Whether checks run at all.
    pub enabled: bool,
    /// HTTPS instead of HTTP.
    pub https: bool,
    /// Only connect (TCP groups without an HTTP check).
    pub tcp: bool,
    /// HTTP/1.1 or HTTP/2.
    pub version: TargetVersion,
    /// Port to check; the target's own when `None`.
    pub port: Option<u16>,
    /// Path of the request.
    pub path: String,
    /// Time between checks.
    pub interval: Duration,
    /// Time a check may take.
    pub timeout: Duration,
    /// Consecutive successes to become healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures to become unhealthy.
    pub unhealthy_threshold: u32,
    /// Status codes that count as success: inclusive ranges.
    pub matcher: Vec<(u16, u16)>,
}

impl Default for CheckConfig {
    /// Lattice's defaults for HTTP target groups.
    fn default() -> Self {
        Self {
            enabled: true,
            https: false,
            tcp: false,
            version: TargetVersion::Http1,
            port: None,
            path: "/".into(),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            healthy_threshold: 5,
            unhealthy_threshold: 2,
            matcher: vec![(200, 200)],
        }
    }
}

impl CheckConfig {
    fn matches(&self, status: StatusCode) -> bool {
        let s = status.as_u16();
        self.matcher.iter().any(|(lo, hi)| (*lo..=*hi).contains(&s))
    }
}

/// Parses a matcher such as `200`, `200,204` or `200-299`.
pub fn parse_matcher(s: &str) -> Result<Vec<(u16, u16)>, String> {
    let code = |c: &str| -> Result<u16, String> {
        match c.trim().parse::<u16>() {
            Ok(v) if (200..=499).contains(&v) => Ok(v),
            _ => Err(format!(
                "{c:?} is not an HTTP status code between 200 and 499"
            )),
        }
    };
    s.split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (code(a)?, code(b)?);
                if a > b {
                    Err(format!("range {part:?} is backwards"))
                } else {
                    Ok((a, b))
                }
            }
            None => code(part).map(|c| (c, c)),
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    ns: NsId,
    addr: SocketAddr,
    config: CheckConfig,
}

#[derive(Debug)]
struct Entry {
    health: Arc<TargetHealth>,
    /// The running check; `None` while it waits for its snapshot's
    /// publication (in `pending`), or when checks are disabled.
    task: Option<tokio::task::AbortHandle>,
    /// The check, until [`HealthChecks::start_pending`] starts it.
    pending: Option<Checker>,
}

/// The running checkers. Touched by the control plane only (publish and
/// ListTargets); requests read the [`TargetHealth`] atomics.
#[derive(Debug)]
pub struct HealthChecks {
    entries: Mutex<HashMap<Key, Entry>>,
    connector: NsConnector,
}

impl HealthChecks {
    /// Checkers that connect through `connector`.
    pub fn new(connector: NsConnector) -> Self {
        Self {
            entries: Mutex::default(),
            connector,
        }
    }

    /// The health of `addr` in `ns` under `config`, starting its checker if
    /// it has none yet. Must run inside the tokio runtime.
    pub fn ensure(&self, ns: NsId, addr: SocketAddr, config: &CheckConfig) -> Arc<TargetHealth> {
        let key = Key {
            ns,
            addr,
            config: config.clone(),
        };
        let mut entries = self.lock();
        if let Some(e) = entries.get(&key) {
            return Arc::clone(&e.health);
        }
        let health = Arc::new(TargetHealth::default());
        // Started by `start_pending` once the snapshot naming the target is
        // published: compiling it runs before its namespace is known, and
        // a check run then would fail on that alone.
        let pending = config.enabled.then(|| Checker {
            ns,
            addr,
            config: config.clone(),
            health: Arc::clone(&health),
            connector: self.connector.clone(),
        });
        if !config.enabled {
            health.set(Status::Unavailable);
        }
        entries.insert(
            key,
            Entry {
                health: Arc::clone(&health),
                task: None,
                pending,
            },
        );
        health
    }

    /// Starts the checks made since the last call ([`crate::Dataplane::publish`]
    /// calls it once the snapshot and its namespaces are in force). Must
    /// run inside the tokio runtime.
    pub fn start_pending(&self) {
        for e in self.lock().values_mut() {
            if let Some(checker) = e.pending.take() {
                e.task = Some(tokio::spawn(checker.run()).abort_handle());
            }
        }
    }

    /// Stops every checker whose health no one but this registry holds any
    /// more (its targets left the routing snapshot).
    pub fn retain_used(&self) {
        self.lock().retain(|_, e| {
            let used = Arc::strong_count(&e.health) > 1;
            if !used {
                if let Some(t) = &e.task {
                    t.abort();
                }
            }
            used
        });
    }

    /// Number of running checkers.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no checker runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        // A panic while holding this lock leaves the map consistent (inserts
        // and removals are single operations), so poisoning is ignored.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for HealthChecks {
    fn drop(&mut self) {
        for e in self.lock().values() {
            if let Some(t) = &e.task {
                t.abort();
            }
        }
    }
}

#[derive(Debug)]
struct Checker {
    ns: NsId,
    addr: SocketAddr,
    config: CheckConfig,
    health: Arc<TargetHealth>,
    connector: NsConnector,
}

impl Checker {
    async fn run(self) {
        let (mut ok_run, mut fail_run) = (0u32, 0u32);
        let mut first = true;
        loop {
            let verdict = match tokio::time::timeout(self.config.timeout, self.check()).await {
                Ok(Ok(status)) if self.config.matches(status) => Ok(()),
                Ok(Ok(_)) => Err(Reason::ResponseCodeMismatch),
                Ok(Err(e)) => {
                    tracing::debug!(target = %self.addr, error = %e, "health check failed");
                    Err(Reason::ConnectionFailed)
                }
                Err(_) => Err(Reason::Timeout),
            };
            let before = self.health.status();
            match verdict {
                Ok(()) => {
                    ok_run += 1;
                    fail_run = 0;
                    if first || ok_run >= self.config.healthy_threshold {
                        self.health.set_with(Status::Healthy, Reason::None);
                    }
                }
                Err(reason) => {
                    fail_run += 1;
                    ok_run = 0;
                    if first || fail_run >= self.config.unhealthy_threshold {
                        self.health.set_with(Status::Unhealthy, reason);
                    }
                }
            }
            let after = self.health.status();
            if after != before {
                tracing::info!(target = %self.addr, from = before.as_str(), to = after.as_str(), reason = ?self.health.reason().as_str(), "target health changed");
            }
            first = false;
            tokio::time::sleep(self.config.interval).await;
        }
    }

    async fn check(&self) -> Result<StatusCode, Box<dyn std::error::Error + Send + Sync>> {
        let addr = SocketAddr::new(self.addr.ip(), self.config.port.unwrap_or(self.addr.port()));
        let h2 = self.config.version != TargetVersion::Http1;
        let stream = self.connector.connect(self.ns, addr).await?;
        if self.config.tcp {
            // Connected: all a TCP check asks.
            return Ok(StatusCode::OK);
        }
        let stream = if self.config.https {
            self.connector.tls(stream, addr, h2).await?
        } else {
            Stream::Plain(stream)
        };
        let req = Request::get(self.config.path.as_str())
            // An IPv6 literal host is bracketed (RFC 9110 4.2.3).
            .header(
                http::header::HOST,
                match addr.ip() {
                    std::net::IpAddr::V4(ip) => ip.to_string(),
                    std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                },
            )
            .header(http::header::USER_AGENT, "latticed-health-checker")
            .body(Empty::<Bytes>::new())?;
        let io = TokioIo::new(stream);
        let resp = if h2 {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            let mut req = req;
            *req.uri_mut() = format!(
                "{}://{}{}",
                if self.config.https { "https" } else { "http" },
                addr,
                self.config.path
            )
            .parse()?;
            send.send_request(req).await?
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            send.send_request(req).await?
        };
        Ok(resp.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_parse_codes_lists_and_ranges() {
        assert_eq!(parse_matcher("200").unwrap(), [(200, 200)]);
        assert_eq!(parse_matcher("200,204").unwrap(), [(200, 200), (204, 204)]);
        assert_eq!(parse_matcher("200-299").unwrap(), [(200, 299)]);
        assert!(parse_matcher("299-200").unwrap_err().contains("backwards"));
        assert!(parse_matcher("600")
            .unwrap_err()
            .contains("between 200 and 499"));
        assert!(parse_matcher("ok").is_err());
    }

    #[test]
    fn only_unhealthy_targets_are_skipped() {
        let h = TargetHealth::default();
        assert_eq!(h.status(), Status::Initial);
        assert!(
            h.routable(),
            "new targets take traffic before the first check"
        );
        h.set(Status::Unhealthy);
        assert!(!h.routable());
        h.set(Status::Unavailable);
        assert!(h.routable(), "unchecked targets take traffic");
    }
}
