//! What the daemon tells the world: events (JSON lines through tracing), the status socket
//! (`failover status`) and the Prometheus text endpoint.
use std::{
    fmt::Write as _,
    io,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, UnixListener, UnixStream},
};

use crate::sys::monotonic_ns;

/// A control-plane failure.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The control socket could not be set up.
    #[error("control socket {}: {what}: {source}", path.display())]
    Socket {
        /// Socket path.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// OS error.
        source: io::Error,
    },
    /// Another daemon answers on the control socket.
    #[error("control socket {}: another failover daemon is running and answering on it", path.display())]
    InUse {
        /// Socket path.
        path: PathBuf,
    },
    /// The metrics listener could not bind.
    #[error("metrics listener {addr}: {source}")]
    Metrics {
        /// Listen address.
        addr: std::net::SocketAddr,
        /// OS error.
        source: io::Error,
    },
    /// The status request failed (client side).
    #[error("status from {}: {message}", path.display())]
    Status {
        /// Socket path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Context stamped on every event: who we are and where we stand.
#[derive(Clone, Debug)]
pub struct Events {
    node: String,
    peer: String,
}

impl Events {
    /// Events of node `node` whose peer is `peer`.
    pub fn new(node: &str, peer: &str) -> Events {
        Events {
            node: node.to_string(),
            peer: peer.to_string(),
        }
    }

    /// Records one event: a tracing line at INFO (WARN for faults) with target
    /// `failover::event` (per-probe events: `failover::event::probe`; each copy's
    /// `sync_started` / `sync_done`: `failover::event::sync`). With
    /// `--log-format json` every field is a top-level JSON key.
    pub fn emit(&self, name: &str, role: &str, epoch: u64, detail: &str) {
        let ts_ns = monotonic_ns();
        macro_rules! ev {
            ($lvl:ident, $target:literal) => {
                tracing::$lvl!(target: $target, event = name, ts_ns, node = %self.node, role,
                    epoch, peer = %self.peer, detail, "{name}: {detail}")
            };
        }
        match name {
            "probe_late" | "probe_lost" => ev!(info, "failover::event::probe"),
            "sync_started" | "sync_done" => ev!(info, "failover::event::sync"),
            "fence_failed" | "boot_failed" | "hook_failed" | "address_conflict"
            | "primary_failed" | "unfenced_takeover" | "fence_skipped" | "daemon_error"
            | "tls_unverified" | "sync_failed" => {
                ev!(warn, "failover::event")
            }
            _ => ev!(info, "failover::event"),
        }
    }

    /// The `last_reply` event, emitted just before `primary_failed`: `at_ns` is the XDP stamp
    /// of the last in-time reply (CLOCK_MONOTONIC), so detection can be read off the events.
    pub fn last_reply(&self, role: &str, epoch: u64, at_ns: u64) {
        let ts_ns = monotonic_ns();
        let detail = format!(
            "last in-time reply {:.1} ms before the failure decision",
            ts_ns.saturating_sub(at_ns) as f64 / 1e6
        );
        tracing::info!(target: "failover::event", event = "last_reply", ts_ns, at_ns,
            node = %self.node, role, epoch, peer = %self.peer, detail = %detail, "last_reply: {detail}");
    }
}

/// What `failover status` reports.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// This node's name.
    pub node: String,
    /// Current role.
    pub role: String,
    /// Current epoch.
    pub epoch: u64,
    /// The peer as this host sees it.
    pub peer: PeerStatus,
    /// Floating addresses this host holds now.
    pub addresses_held: Vec<String>,
    /// The last boot action on the peer, if any.
    pub last_boot: Option<BootStatus>,
    /// Seconds since the daemon started.
    pub uptime_s: u64,
    /// The data copy, when `[sync]` is configured.
    pub sync: Option<SyncStatus>,
}

/// The last complete copy of the primary's data held here (the recovery point).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SyncStatus {
    /// Generation of the current copy (0: none yet).
    pub generation: u64,
    /// Milliseconds since that copy was completed.
    pub age_ms: Option<u64>,
    /// Unix ms when it was completed.
    pub completed_unix_ms: u64,
    /// Copies completed by this daemon.
    pub copies: u64,
    /// Copies that failed.
    pub failures: u64,
    /// The last failure, if the last attempt failed.
    pub last_error: Option<String>,
}

/// The peer's state.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PeerStatus {
    /// Peer name.
    pub name: String,
    /// Peer node address.
    pub address: String,
    /// `unknown` (not monitored), `unseen` (monitoring, never answered), `alive`, `missing`
    /// (misses below the limit), `failed`, `fenced`, or `heard` (as primary: the monitor's
    /// heartbeats arrive).
    pub state: String,
    /// Milliseconds since the last in-time reply (monitor) or heartbeat received (primary).
    pub last_reply_age_ms: Option<u64>,
    /// Consecutive probes without an in-time reply.
    pub consecutive_misses: u32,
}

/// The last boot action.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct BootStatus {
    /// `off`, `on` or `reboot`.
    pub action: String,
    /// `running`, `done` or `failed: REASON`.
    pub result: String,
    /// Milliseconds since it was requested.
    pub age_ms: u64,
    /// CLOCK_MONOTONIC ns when it was requested (for computing `age_ms`).
    #[serde(skip)]
    pub at_ns: u64,
}

/// Upper bounds (ms) of the detection-time histogram buckets.
pub const DETECTION_BUCKETS_MS: [u64; 10] = [5, 10, 20, 30, 50, 100, 250, 500, 1000, 5000];

/// Counters for the metrics endpoint.
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
    /// Data copies completed.
    pub sync_copies: AtomicU64,
    /// File bytes copied.
    pub sync_bytes: AtomicU64,
    /// Data copies that failed.
    pub sync_failures: AtomicU64,
    /// Duration of the last copy, ms.
    pub sync_last_ms: AtomicU64,
    /// Unix ms of the last complete copy (0: none).
    pub sync_completed_unix_ms: AtomicU64,
    detection_buckets: [AtomicU64; DETECTION_BUCKETS_MS.len()],
    detection_count: AtomicU64,
    detection_sum_ns: AtomicU64,
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

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, node: &str) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = String::new();
        let l = format!("node=\"{}\"", node.replace(['"', '\\', '\n'], "_"));
        for (name, help, kind, v) in [
            (
                "failover_probes_sent_total",
                "Heartbeat probes sent.",
                "counter",
                g(&self.probes_sent),
            ),
            (
                "failover_probes_in_time_total",
                "Probes answered before their deadline.",
                "counter",
                g(&self.probes_in_time),
            ),
            (
                "failover_probes_late_total",
                "Probes answered after their deadline.",
                "counter",
                g(&self.probes_late),
            ),
            (
                "failover_probes_lost_total",
                "Probes never answered.",
                "counter",
                g(&self.probes_lost),
            ),
            (
                "failover_failovers_total",
                "Takeovers of the primary address by this host.",
                "counter",
                g(&self.failovers),
            ),
            (
                "failover_fence_failures_total",
                "Fence attempts without a confirmed power-off.",
                "counter",
                g(&self.fence_failures),
            ),
            (
                "failover_hook_failures_total",
                "Hooks that failed or timed out.",
                "counter",
                g(&self.hook_failures),
            ),
            (
                "failover_role",
                "Role code: 1 joining, 2 primary, 3 monitor, 4 booting, 5 taking_over, 6 conflict.",
                "gauge",
                g(&self.role),
            ),
            (
                "failover_epoch",
                "Persisted epoch.",
                "gauge",
                g(&self.epoch),
            ),
        ] {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{{l}}} {v}"
            );
        }
        let done = g(&self.sync_completed_unix_ms);
        if done > 0 {
            let age = crate::sync::unix_ms().saturating_sub(done) as f64 / 1000.0;
            let _ = writeln!(
                s,
                "# HELP failover_sync_age_seconds Age of the last complete data copy held here.\n# TYPE failover_sync_age_seconds gauge\nfailover_sync_age_seconds{{{l}}} {age}"
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

/// Shared status, written by the daemon loop, read by the servers.
pub type SharedStatus = Arc<Mutex<Status>>;

/// Binds the control socket at `path` (mode 0600, parent created). A stale socket file left by
/// a crashed daemon is replaced; one that still answers is an error.
pub async fn bind_control(path: &Path) -> Result<UnixListener, ControlError> {
    let err = |what, source| ControlError::Socket {
        path: path.to_path_buf(),
        what,
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err("create directory", e))?;
    }
    if path.exists() {
        // A live daemon answers with its status at once. A connect alone proves nothing: a
        // killed daemon whose last thread is still exiting keeps the listener for a few ms.
        let answered = async {
            let mut c = UnixStream::connect(path).await.ok()?;
            let mut buf = String::new();
            c.read_to_string(&mut buf).await.ok()?;
            serde_json::from_str::<Status>(buf.trim()).ok()
        };
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(500), answered).await {
            return Err(ControlError::InUse {
                path: path.to_path_buf(),
            });
        }
        std::fs::remove_file(path).map_err(|e| err("remove stale socket", e))?;
    }
    let l = UnixListener::bind(path).map_err(|e| err("bind", e))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err("chmod 0600", e))?;
    Ok(l)
}

/// Serves `status` requests: each connection gets the status as one JSON line.
pub async fn serve_control(listener: UnixListener, status: SharedStatus) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let body = {
            let s = status.lock().unwrap_or_else(|p| p.into_inner());
            let mut s = s.clone();
            if let Some(b) = s.last_boot.as_mut() {
                b.age_ms = monotonic_ns().saturating_sub(b.at_ns) / 1_000_000;
            }
            if let Some(sy) = s.sync.as_mut() {
                sy.age_ms = (sy.completed_unix_ms > 0)
                    .then(|| crate::sync::unix_ms().saturating_sub(sy.completed_unix_ms));
            }
            serde_json::to_string(&s).unwrap_or_default()
        };
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                conn.write_all(body.as_bytes()).await?;
                conn.write_all(b"\n").await?;
                conn.shutdown().await
            })
            .await;
        });
    }
}

/// Asks the daemon at `path` for its status.
pub async fn query_status(path: &Path) -> Result<Status, ControlError> {
    let bad = |message: String| ControlError::Status {
        path: path.to_path_buf(),
        message,
    };
    let work = async {
        let mut c = UnixStream::connect(path)
            .await
            .map_err(|e| bad(format!("connect: {e} (is the daemon running?)")))?;
        let mut buf = String::new();
        c.read_to_string(&mut buf)
            .await
            .map_err(|e| bad(format!("read: {e}")))?;
        serde_json::from_str(buf.trim()).map_err(|e| bad(format!("not a status object: {e}")))
    };
    tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .map_err(|_| bad("no answer within 5s".into()))?
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
}
