//! What the daemon tells operators besides events: the status socket (`failover status`) and
//! the Prometheus text endpoint (its numbers in `metrics`, its listener in `endpoint`).
mod encode;
mod endpoint;
mod metrics;
pub mod request;
mod status;

use std::{io, path::PathBuf};

pub use endpoint::{
    bind_metrics, serve_metrics, serve_text, METRICS_CONNECTIONS, METRICS_DEADLINE,
};
pub use metrics::{Metrics, DETECTION_BUCKETS_MS};
pub use request::{send_request, Command, Reply, Request};
pub use status::{
    bind_control, query_json, query_status, serve_control, serve_json, BootStatus, CheckStatus,
    MaintenanceStatus, PeerLive, PeerStatus, Refresh, SharedStatus, Status, SyncStatus,
    COMMAND_DEADLINE, CONTROL_CONNECTIONS, CONTROL_DEADLINE,
};

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
