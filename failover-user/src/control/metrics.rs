//! The Prometheus text endpoint: counters, gauges and histograms (detection time, probe round
//! trips).
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Upper bounds (ms) of the detection-time histogram buckets.
pub const DETECTION_BUCKETS_MS: [u64; 10] = [5, 10, 20, 30, 50, 100, 250, 500, 1000, 5000];
/// Upper bounds (µs) of the probe round-trip histogram buckets.
pub const RTT_BUCKETS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// A cumulative histogram of nanosecond values with fixed bucket bounds (in ns), updated with
/// relaxed atomics from any thread.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    bounds_ns: [u64; N],
    buckets: [AtomicU64; N],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    /// A histogram with these bucket bounds (ns).
    pub fn new(bounds_ns: [u64; N]) -> Self {
        Histogram {
            bounds_ns,
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Records one value.
    pub fn observe(&self, ns: u64) {
        for (b, le) in self.buckets.iter().zip(self.bounds_ns) {
            if ns <= le {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// What a scrape shows of it, in seconds.
    fn snapshot(&self, name: &'static str, help: &'static str) -> super::encode::Hist {
        super::encode::Hist {
            name,
            help,
            sum: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            count: self.count.load(Ordering::Relaxed),
            cumulative: self
                .buckets
                .iter()
                .zip(self.bounds_ns)
                .map(|(b, le)| (le as f64 / 1e9, b.load(Ordering::Relaxed)))
                .collect(),
        }
    }
}

/// Counters and gauges for the metrics endpoint. Hot-path counters are plain relaxed atomics:
/// the monitor's tick only increments them; the text is built when scraped.
#[derive(Debug)]
pub struct Metrics {
    /// Probes sent.
    pub probes_sent: AtomicU64,
    /// Probes answered in time.
    pub probes_in_time: AtomicU64,
    /// Probes answered late.
    pub probes_late: AtomicU64,
    /// Probes lost.
    pub probes_lost: AtomicU64,
    /// Takeovers of P by this host.
    pub failovers: AtomicU64,
    /// Fence attempts that were not confirmed.
    pub fence_failures: AtomicU64,
    /// Hooks that failed.
    pub hook_failures: AtomicU64,
    /// Role code (see `role::Role::code`).
    pub role: AtomicU64,
    /// Epoch.
    pub epoch: AtomicU64,
    /// Whether `[sync]` is configured: the sync series are written only then.
    pub sync_enabled: AtomicBool,
    /// `failover maintenance on`.
    pub maintenance: AtomicBool,
    /// Data copies completed.
    pub sync_copies: AtomicU64,
    /// Bytes that travelled for completed copies.
    pub sync_bytes: AtomicU64,
    /// Data copies that failed.
    pub sync_failures: AtomicU64,
    /// Duration of the last completed copy, ns.
    pub sync_last_ns: AtomicU64,
    /// Unix ms of the last complete copy held here (0: none).
    pub sync_completed_unix_ms: AtomicU64,
    /// Time from the last in-time reply to the failure decision.
    pub detection: Histogram<{ DETECTION_BUCKETS_MS.len() }>,
    /// Round trips of the probes that were answered (XDP stamp minus send time).
    pub probe_rtt: Histogram<{ RTT_BUCKETS_US.len() }>,
    /// The longest probe round trip seen, ns.
    pub probe_rtt_max_ns: AtomicU64,
    /// With `boot.lease`: the primary's lease (its series are written only then).
    pub lease: std::sync::OnceLock<std::sync::Arc<crate::lease::LeaseStatus>>,
    /// The health checks: name, passing, failed runs (series per check, `check` label).
    checks: std::sync::Mutex<Vec<(String, bool, u64)>>,
    /// With `hooks.event_fifo`: the FIFO (its dropped lines are a series only then).
    pub event_fifo: std::sync::OnceLock<crate::event_fifo::EventFifo>,
}

impl Default for Metrics {
    fn default() -> Self {
        let z = || AtomicU64::new(0);
        Metrics {
            probes_sent: z(),
            probes_in_time: z(),
            probes_late: z(),
            probes_lost: z(),
            failovers: z(),
            fence_failures: z(),
            hook_failures: z(),
            role: z(),
            epoch: z(),
            sync_enabled: AtomicBool::new(false),
            maintenance: AtomicBool::new(false),
            sync_copies: z(),
            sync_bytes: z(),
            sync_failures: z(),
            sync_last_ns: z(),
            sync_completed_unix_ms: z(),
            detection: Histogram::new(DETECTION_BUCKETS_MS.map(|ms| ms * 1_000_000)),
            probe_rtt: Histogram::new(RTT_BUCKETS_US.map(|us| us * 1_000)),
            lease: std::sync::OnceLock::new(),
            event_fifo: std::sync::OnceLock::new(),
            checks: std::sync::Mutex::new(Vec::new()),
            probe_rtt_max_ns: z(),
        }
    }
}

/// A Prometheus metric type.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum MetricKind {
    Counter,
    Gauge,
}

impl Metrics {
    /// Records one detection time.
    pub fn observe_detection(&self, ns: u64) {
        self.detection.observe(ns);
    }

    /// Records one probe round trip.
    pub fn observe_rtt(&self, ns: u64) {
        self.probe_rtt.observe(ns);
        self.probe_rtt_max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// The health checks' state (name, passing, failed runs), for their series.
    pub fn set_checks(&self, checks: Vec<(String, bool, u64)>) {
        *self.checks.lock().unwrap_or_else(|p| p.into_inner()) = checks;
    }

    /// The Prometheus text exposition (format 0.0.4). Every series carries the `node` label;
    /// times are in seconds.
    pub fn render(&self, node: &str) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut rows: Vec<(&str, &str, MetricKind, f64)> = vec![
            (
                "failover_probes_sent_total",
                "Heartbeat probes sent.",
                MetricKind::Counter,
                g(&self.probes_sent) as f64,
            ),
            (
                "failover_probes_in_time_total",
                "Probes answered before their deadline.",
                MetricKind::Counter,
                g(&self.probes_in_time) as f64,
            ),
            (
                "failover_probes_late_total",
                "Probes answered after their deadline.",
                MetricKind::Counter,
                g(&self.probes_late) as f64,
            ),
            (
                "failover_probes_lost_total",
                "Probes never answered.",
                MetricKind::Counter,
                g(&self.probes_lost) as f64,
            ),
            (
                "failover_failovers_total",
                "Takeovers of the primary address by this host.",
                MetricKind::Counter,
                g(&self.failovers) as f64,
            ),
            (
                "failover_fence_failures_total",
                "Fence attempts without a confirmed power-off.",
                MetricKind::Counter,
                g(&self.fence_failures) as f64,
            ),
            (
                "failover_hook_failures_total",
                "Hooks that failed or timed out.",
                MetricKind::Counter,
                g(&self.hook_failures) as f64,
            ),
            (
                "failover_role",
                "Role code: 1 joining, 2 primary, 3 monitor, 4 booting, 5 taking_over, 6 conflict, 7 standby.",
                MetricKind::Gauge,
                g(&self.role) as f64,
            ),
            (
                "failover_epoch",
                "Highest epoch known (persisted at every promotion).",
                MetricKind::Gauge,
                g(&self.epoch) as f64,
            ),
            (
                "failover_maintenance",
                "Whether this host is in maintenance (failover maintenance on: no fence, no takeover).",
                MetricKind::Gauge,
                f64::from(u8::from(self.maintenance.load(Ordering::Relaxed))),
            ),
        ];
        if self.sync_enabled.load(Ordering::Relaxed) {
            rows.extend([
                (
                    "failover_sync_copies_total",
                    "Data copies completed by this daemon.",
                    MetricKind::Counter,
                    g(&self.sync_copies) as f64,
                ),
                (
                    "failover_sync_bytes_total",
                    "Bytes that travelled for completed data copies.",
                    MetricKind::Counter,
                    g(&self.sync_bytes) as f64,
                ),
                (
                    "failover_sync_failures_total",
                    "Data copies that failed.",
                    MetricKind::Counter,
                    g(&self.sync_failures) as f64,
                ),
                (
                    "failover_sync_last_duration_seconds",
                    "Duration of the last completed data copy.",
                    MetricKind::Gauge,
                    g(&self.sync_last_ns) as f64 / 1e9,
                ),
            ]);
            let done = g(&self.sync_completed_unix_ms);
            if done > 0 {
                let age = crate::sync::unix_ms().saturating_sub(done) as f64 / 1000.0;
                rows.push((
                    "failover_sync_age_seconds",
                    "Age of the last complete data copy held here.",
                    MetricKind::Gauge,
                    age,
                ));
            }
        }
        if let Some(f) = self.event_fifo.get() {
            rows.push((
                "failover_event_fifo_dropped_total",
                "Event lines dropped because hooks.event_fifo was full (no reader).",
                MetricKind::Counter,
                f.dropped() as f64,
            ));
        }
        if let Some(lease) = self.lease.get() {
            let v = lease.view(crate::sys::monotonic_ns());
            rows.extend([
                (
                    "failover_lease_active",
                    "1 while this host keeps a lease (it is primary with boot.lease).",
                    MetricKind::Gauge,
                    f64::from(u8::from(v.active)),
                ),
                (
                    "failover_lease_remaining_seconds",
                    "What is left of the primary's lease (0: lapsed, its kernel stops P).",
                    MetricKind::Gauge,
                    if v.active { v.remaining_ms / 1e3 } else { 0.0 },
                ),
                (
                    "failover_lease_lapses_total",
                    "Times the primary's lease lapsed.",
                    MetricKind::Counter,
                    v.lapses as f64,
                ),
            ]);
        }
        let mut series: Vec<super::encode::Series> = rows
            .into_iter()
            .map(|(name, help, kind, value)| super::encode::Series {
                name: name.strip_suffix("_total").unwrap_or(name),
                help,
                counter: kind == MetricKind::Counter,
                value,
            })
            .collect();
        series.push(super::encode::Series {
            name: "failover_probe_rtt_max_seconds",
            help: "The longest probe round trip seen.",
            counter: false,
            value: g(&self.probe_rtt_max_ns) as f64 / 1e9,
        });
        let checks = self
            .checks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        super::encode::text(
            node,
            super::encode::Snapshot {
                series,
                histograms: vec![
                    self.detection.snapshot(
                        "failover_detection_seconds",
                        "Time from the last in-time reply to the failure decision.",
                    ),
                    self.probe_rtt.snapshot(
                        "failover_probe_rtt_seconds",
                        "Round trips of answered probes, from the XDP arrival stamps.",
                    ),
                ],
                checks,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.observe_detection(7_000_000);
        m.observe_detection(25_000_000);
        let text = m.render("a");
        assert!(text.contains("failover_detection_seconds_bucket{node=\"a\",le=\"0.005\"} 0"));
        assert!(text.contains("failover_detection_seconds_bucket{node=\"a\",le=\"0.01\"} 1"));
        assert!(text.contains("failover_detection_seconds_bucket{node=\"a\",le=\"0.03\"} 2"));
        assert!(text.contains("failover_detection_seconds_count{node=\"a\"} 2"));
        assert!(text.contains("# TYPE failover_role gauge"));
    }

    #[test]
    fn every_documented_series_is_written_with_help_and_type() {
        let m = Metrics::default();
        m.sync_enabled.store(true, Ordering::Relaxed);
        m.sync_completed_unix_ms.store(1, Ordering::Relaxed);
        m.sync_last_ns.store(1_500_000_000, Ordering::Relaxed);
        m.lease.set(std::sync::Arc::default()).unwrap();
        let fifo_dir = std::env::temp_dir().join(format!("fo-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&fifo_dir).unwrap();
        let fifo = crate::event_fifo::EventFifo::open(&fifo_dir.join("events")).unwrap();
        m.event_fifo.set(fifo).unwrap();
        m.set_checks(vec![("db \"main\"".into(), false, 3)]);
        let _ = std::fs::remove_dir_all(&fifo_dir);
        let text = m.render("a");
        let docs = include_str!("../../../docs/operations.md");
        let section = &docs[docs.find("## Metrics").expect("metrics section")..];
        let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
        let mut names: Vec<&str> = section
            .split('`')
            .filter(|w| w.starts_with("failover_") && !w.contains(' '))
            .collect();
        names.dedup();
        assert!(names.len() >= 15, "found the list in the docs: {names:?}");
        for name in names {
            // OpenMetrics: a counter's family is named without `_total`, its sample with it.
            let family = name.strip_suffix("_total").unwrap_or(name);
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{name} is documented but not written"
            );
            assert!(
                text.contains(&format!("# HELP {family} ")),
                "{name} has no HELP"
            );
            assert!(
                text.contains(&format!("\n{name}{{"))
                    || text.contains(&format!("\n{name}_count{{")),
                "{name} has no sample"
            );
        }
        assert!(
            text.contains("failover_check_up{node=\"a\",check=\"db \\\"main\\\"\"} 0"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with EOF");
        assert!(
            text.contains("failover_sync_last_duration_seconds{node=\"a\"} 1.5"),
            "{text}"
        );
    }

    #[test]
    fn sync_series_only_with_sync_and_labels_are_escaped() {
        let text = Metrics::default().render("we\"ird\\node\n");
        assert!(!text.contains("failover_sync_"), "{text}");
        assert!(text.contains(r#"node="we\"ird\\node\n""#), "{text}");
    }

    #[test]
    fn the_shipped_grafana_dashboard_parses_and_asks_only_for_series_the_daemon_writes() {
        let text = include_str!("../../../packaging/grafana-dashboard.json");
        let d: serde_json::Value = serde_json::from_str(text).expect("the dashboard is JSON");
        let panels = d["panels"].as_array().expect("panels");
        assert!(
            panels.len() >= 6,
            "role, epoch, probes, detection, fences, sync age"
        );
        let m = Metrics::default();
        m.sync_enabled.store(true, Ordering::Relaxed);
        m.sync_completed_unix_ms.store(1, Ordering::Relaxed);
        m.lease.set(std::sync::Arc::default()).unwrap();
        m.set_checks(vec![("db".into(), true, 0)]);
        let written = m.render("a");
        for p in panels {
            for t in p["targets"].as_array().expect("targets") {
                let expr = t["expr"].as_str().expect("expr");
                for name in expr
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| w.starts_with("failover_"))
                {
                    assert!(
                        written.contains(&format!("\n{name}{{")),
                        "panel {:?} asks for {name}, which the daemon does not write",
                        p["title"]
                    );
                }
            }
        }
    }
}
