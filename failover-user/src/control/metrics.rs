//! The Prometheus text endpoint: counters, gauges and the detection histogram.
use std::{
    fmt::Write as _,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

use super::ControlError;

/// Upper bounds (ms) of the detection-time histogram buckets.
pub const DETECTION_BUCKETS_MS: [u64; 10] = [5, 10, 20, 30, 50, 100, 250, 500, 1000, 5000];

/// Counters and gauges for the metrics endpoint. Hot-path counters are plain relaxed atomics:
/// the monitor's tick only increments them; the text is built when scraped.
#[derive(Debug, Default)]
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
    detection_buckets: [AtomicU64; DETECTION_BUCKETS_MS.len()],
    detection_count: AtomicU64,
    detection_sum_ns: AtomicU64,
}

/// A Prometheus metric type.
#[derive(Copy, Clone)]
enum MetricKind {
    Counter,
    Gauge,
}

impl MetricKind {
    fn name(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// Escapes a label value as the text format requires (backslash, quote, newline).
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Records one detection time.
    pub fn observe_detection(&self, ns: u64) {
        for (i, le) in DETECTION_BUCKETS_MS.iter().enumerate() {
            if ns <= le * 1_000_000 {
                self.detection_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.detection_count.fetch_add(1, Ordering::Relaxed);
        self.detection_sum_ns.fetch_add(ns, Ordering::Relaxed);
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
                "Role code: 1 joining, 2 primary, 3 monitor, 4 booting, 5 taking_over, 6 conflict.",
                MetricKind::Gauge,
                g(&self.role) as f64,
            ),
            (
                "failover_epoch",
                "Highest epoch known (persisted at every promotion).",
                MetricKind::Gauge,
                g(&self.epoch) as f64,
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
        let l = format!("node=\"{}\"", label_value(node));
        let mut s = String::new();
        for (name, help, kind, v) in rows {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} {}\n{name}{{{l}}} {v}",
                kind.name()
            );
        }
        let h = "failover_detection_seconds";
        let _ = writeln!(
            s,
            "# HELP {h} Time from the last in-time reply to the failure decision.\n# TYPE {h} histogram"
        );
        for (i, le) in DETECTION_BUCKETS_MS.iter().enumerate() {
            let _ = writeln!(
                s,
                "{h}_bucket{{{l},le=\"{}\"}} {}",
                *le as f64 / 1000.0,
                g(&self.detection_buckets[i])
            );
        }
        let count = g(&self.detection_count);
        let _ = writeln!(s, "{h}_bucket{{{l},le=\"+Inf\"}} {count}");
        let _ = writeln!(
            s,
            "{h}_sum{{{l}}} {}\n{h}_count{{{l}}} {count}",
            g(&self.detection_sum_ns) as f64 / 1e9
        );
        s
    }
}

/// Binds the metrics listener.
pub async fn bind_metrics(addr: std::net::SocketAddr) -> Result<TcpListener, ControlError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ControlError::Metrics { addr, source })
}

/// Serves the Prometheus text format to any HTTP GET.
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>, node: String) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        let node = node.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                // Read the request head (bounded); the path does not matter.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    let n = conn.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                let body = metrics.render(&node);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                conn.write_all(resp.as_bytes()).await?;
                conn.shutdown().await
            })
            .await;
        });
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
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} is documented but not written"
            );
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no HELP"
            );
        }
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
}
