//! Request counters and latency histograms, exported in the Prometheus
//! text format by the agent.
//!
//! Each service and target group has one [`RequestMetrics`], kept across
//! routing snapshots by [`Registry`] so counters survive configuration
//! changes. The request path only does relaxed atomic adds.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

/// Upper bounds of the latency buckets, in microseconds.
const BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// Distinct response codes counted exactly; more go to `other`.
const CODE_SLOTS: usize = 16;

/// Counters of one service or target group.
#[derive(Debug)]
pub struct RequestMetrics {
    codes: [AtomicU32; CODE_SLOTS],
    counts: [AtomicU64; CODE_SLOTS],
    other: AtomicU64,
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self {
            codes: std::array::from_fn(|_| AtomicU32::new(0)),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            other: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl RequestMetrics {
    /// Counts one request with response `code` that took `took`.
    pub fn record(&self, code: u16, took: Duration) {
        self.count_code(u32::from(code));
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let b = BUCKETS_US
            .iter()
            .position(|&le| us <= le)
            .unwrap_or(BUCKETS_US.len());
        self.buckets[b].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn count_code(&self, code: u32) {
        for (slot, count) in self.codes.iter().zip(&self.counts) {
            let have = slot.load(Ordering::Relaxed);
            if have == code {
                count.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if have == 0 {
                match slot.compare_exchange(0, code, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => {
                        count.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Err(now) if now == code => {
                        count.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Err(_) => {}
                }
            }
        }
        self.other.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests counted so far, by code (`0` = codes beyond the slots).
    pub fn by_code(&self) -> BTreeMap<u32, u64> {
        let mut out = BTreeMap::new();
        for (slot, count) in self.codes.iter().zip(&self.counts) {
            let code = slot.load(Ordering::Relaxed);
            if code != 0 {
                *out.entry(code).or_default() += count.load(Ordering::Relaxed);
            }
        }
        let other = self.other.load(Ordering::Relaxed);
        if other > 0 {
            out.insert(0, other);
        }
        out
    }

    /// Appends this metric family's samples for `labels` (already
    /// formatted, e.g. `service="svc1"`).
    fn render(&self, out: &mut String, prefix: &str, labels: &str) {
        for (code, n) in self.by_code() {
            let code = if code == 0 {
                "other".to_owned()
            } else {
                code.to_string()
            };
            let _ = writeln!(
                out,
                "{prefix}_requests_total{{{labels},code=\"{code}\"}} {n}"
            );
        }
        let mut cumulative = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            let le = BUCKETS_US
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |us| format!("{}", *us as f64 / 1e6));
            let _ = writeln!(
                out,
                "{prefix}_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{prefix}_request_duration_seconds_sum{{{labels}}} {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "{prefix}_request_duration_seconds_count{{{labels}}} {cumulative}"
        );
    }
}

/// Counters of one resource configuration's connections.
#[derive(Debug, Default)]
pub struct ConnectionMetrics {
    /// Connections carried to the resource.
    pub connected: AtomicU64,
    /// Connections that could not be carried (no address, the resource
    /// refused or did not answer, a port outside the ranges).
    pub failed: AtomicU64,
    /// Open now.
    pub active: std::sync::atomic::AtomicI64,
    /// Bytes from clients to the resource.
    pub bytes_in: AtomicU64,
    /// Bytes from the resource to clients.
    pub bytes_out: AtomicU64,
}

/// Counters by service and by target group name, kept across snapshots.
#[derive(Debug, Default)]
pub struct Registry {
    services: Mutex<BTreeMap<Arc<str>, Arc<RequestMetrics>>>,
    groups: Mutex<BTreeMap<Arc<str>, Arc<RequestMetrics>>>,
    resources: Mutex<BTreeMap<Arc<str>, Arc<ConnectionMetrics>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Only inserts and lookups happen under these locks; a panic cannot
    // leave them half-done, so poisoning is ignored.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Registry {
    /// The counters of service `name`.
    pub fn service(&self, name: &str) -> Arc<RequestMetrics> {
        Arc::clone(lock(&self.services).entry(name.into()).or_default())
    }

    /// The counters of target group `name`.
    pub fn group(&self, name: &str) -> Arc<RequestMetrics> {
        Arc::clone(lock(&self.groups).entry(name.into()).or_default())
    }

    /// The counters of resource configuration `name`.
    pub fn resource(&self, name: &str) -> Arc<ConnectionMetrics> {
        Arc::clone(lock(&self.resources).entry(name.into()).or_default())
    }

    /// Forgets services and groups `keep` does not name.
    pub fn retain(&self, services: &dyn Fn(&str) -> bool, groups: &dyn Fn(&str) -> bool) {
        lock(&self.services).retain(|k, _| services(k));
        lock(&self.groups).retain(|k, _| groups(k));
    }

    /// Forgets resource configurations `keep` does not name.
    pub fn retain_resources(&self, keep: &dyn Fn(&str) -> bool) {
        lock(&self.resources).retain(|k, _| keep(k));
    }

    /// The request metrics in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP latticed_service_requests_total Requests per service by response code.\n# TYPE latticed_service_requests_total counter\n");
        out.push_str("# HELP latticed_service_request_duration_seconds Request duration per service.\n# TYPE latticed_service_request_duration_seconds histogram\n");
        for (name, m) in lock(&self.services).iter() {
            m.render(
                out,
                "latticed_service",
                &format!("service=\"{}\"", escape(name)),
            );
        }
        out.push_str("# HELP latticed_target_group_requests_total Requests per target group by response code.\n# TYPE latticed_target_group_requests_total counter\n");
        out.push_str("# HELP latticed_target_group_request_duration_seconds Request duration per target group.\n# TYPE latticed_target_group_request_duration_seconds histogram\n");
        for (name, m) in lock(&self.groups).iter() {
            m.render(
                out,
                "latticed_target_group",
                &format!("target_group=\"{}\"", escape(name)),
            );
        }
        self.render_resources(out);
    }

    fn render_resources(&self, out: &mut String) {
        out.push_str("# HELP latticed_resource_connections_total Connections per resource configuration, carried or failed.\n# TYPE latticed_resource_connections_total counter\n");
        out.push_str("# HELP latticed_resource_active_connections Open connections per resource configuration.\n# TYPE latticed_resource_active_connections gauge\n");
        out.push_str("# HELP latticed_resource_bytes_total Bytes carried per resource configuration, from clients (in) and to them (out).\n# TYPE latticed_resource_bytes_total counter\n");
        for (name, m) in lock(&self.resources).iter() {
            let l = format!("resource_configuration=\"{}\"", escape(name));
            let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
            let active = m.active.load(Ordering::Relaxed);
            let samples: [(&str, &str, String); 5] = [
                (
                    "connections_total",
                    ",outcome=\"connected\"",
                    get(&m.connected).to_string(),
                ),
                (
                    "connections_total",
                    ",outcome=\"failed\"",
                    get(&m.failed).to_string(),
                ),
                ("active_connections", "", active.to_string()),
                (
                    "bytes_total",
                    ",direction=\"in\"",
                    get(&m.bytes_in).to_string(),
                ),
                (
                    "bytes_total",
                    ",direction=\"out\"",
                    get(&m.bytes_out).to_string(),
                ),
            ];
            for (family, more, value) in samples {
                let _ = writeln!(out, "latticed_resource_{family}{{{l}{more}}} {value}");
            }
        }
    }
}

/// Escapes a label value.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_latency_are_counted() {
        let m = RequestMetrics::default();
        m.record(200, Duration::from_micros(300));
        m.record(200, Duration::from_millis(2));
        m.record(503, Duration::from_secs(20));
        assert_eq!(m.by_code(), BTreeMap::from([(200, 2), (503, 1)]));
        let mut out = String::new();
        m.render(&mut out, "x", "service=\"s\"");
        assert!(out.contains("x_requests_total{service=\"s\",code=\"200\"} 2"));
        assert!(out.contains("x_request_duration_seconds_bucket{service=\"s\",le=\"0.0005\"} 1"));
        assert!(out.contains("x_request_duration_seconds_bucket{service=\"s\",le=\"0.0025\"} 2"));
        assert!(out.contains("x_request_duration_seconds_bucket{service=\"s\",le=\"+Inf\"} 3"));
    }

    #[test]
    fn resource_connections_are_rendered_per_configuration() {
        let r = Registry::default();
        let db = r.resource("orders-db");
        db.connected.fetch_add(3, Ordering::Relaxed);
        db.failed.fetch_add(1, Ordering::Relaxed);
        db.bytes_in.fetch_add(100, Ordering::Relaxed);
        let mut out = String::new();
        r.render(&mut out);
        for line in [
            "latticed_resource_connections_total{resource_configuration=\"orders-db\",outcome=\"connected\"} 3",
            "latticed_resource_connections_total{resource_configuration=\"orders-db\",outcome=\"failed\"} 1",
            "latticed_resource_active_connections{resource_configuration=\"orders-db\"} 0",
            "latticed_resource_bytes_total{resource_configuration=\"orders-db\",direction=\"in\"} 100",
        ] {
            assert!(out.contains(line), "{line} in {out}");
        }
        r.retain_resources(&|_| false);
        let mut out = String::new();
        r.render(&mut out);
        assert!(!out.contains("orders-db"));
    }

    #[test]
    fn codes_beyond_the_slots_go_to_other() {
        let m = RequestMetrics::default();
        for code in 200..(200 + CODE_SLOTS as u16 + 2) {
            m.record(code, Duration::ZERO);
        }
        assert_eq!(m.by_code().get(&0), Some(&2));
    }
}
