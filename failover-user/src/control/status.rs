//! The status socket: one JSON object per connection, root only (mode 0600).
use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{UnixListener, UnixStream},
};

use super::{
    request::{read_request, Command, Reply, Request},
    ControlError,
};
use crate::{
    listen::{self, Backoff, Slots},
    sys::monotonic_ns,
};

/// What `failover status` reports.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// This node's name.
    pub node: String,
    /// Current role.
    pub role: String,
    /// Current epoch.
    pub epoch: u64,
    /// The primary address P (whoever holds it).
    #[serde(default)]
    pub primary_address: String,
    /// Every primary address (with prefix), the probed one first: they move as one.
    #[serde(default)]
    pub primary_addresses: Vec<String>,
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
    /// `boot.lease`: the primary's lease (ages computed when read).
    #[serde(default)]
    pub lease: Option<crate::lease::LeaseView>,
    /// `failover maintenance on`: while it lasts (none: not in maintenance).
    #[serde(default)]
    pub maintenance: Option<MaintenanceStatus>,
    /// The service health checks (`[[check]]`), in configuration order.
    #[serde(default)]
    pub checks: Vec<CheckStatus>,
    /// Where the peer's state comes from between two steps of the daemon's loop: refreshed
    /// from live counters when the status is read.
    #[serde(skip)]
    pub peer_live: PeerLive,
}

/// The live source of the peer's state in [`Status::peer`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum PeerLive {
    /// None: the state is what the last step left.
    #[default]
    None,
    /// This host monitors the peer: its probes' verdicts.
    Monitor,
    /// This host is primary: the monitor's requests on P.
    Primary,
}

/// Refreshes what is live in a status when it is read (the peer's ages).
pub type Refresh = Arc<dyn Fn(&mut Status) + Send + Sync>;

/// A maintenance period, as `failover status` shows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct MaintenanceStatus {
    /// Unix ms when it ends by itself (`--for`); none: when turned off.
    pub until_unix_ms: Option<u64>,
    /// What is left of it, ms (computed when read).
    pub remaining_ms: Option<u64>,
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
    /// This host's own data that copies replaced, kept aside (`DIR.diverged-EPOCH`), oldest
    /// first.
    #[serde(default)]
    pub kept_aside: Vec<String>,
    /// The epoch of the primary that served the current copy (0: unknown).
    #[serde(default)]
    pub generation_epoch: u64,
    /// The primary that served the current copy (its name; empty: unknown).
    #[serde(default)]
    pub generation_origin: String,
    /// Set while copies are refused because this host's own data is newer than the
    /// primary's: says so, with both epochs. This host holds the newer data.
    #[serde(default)]
    pub newer_data_here: Option<String>,
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
            c.shutdown().await.ok()?;
            let mut buf = String::new();
            c.read_to_string(&mut buf).await.ok()?;
            serde_json::from_str::<serde_json::Value>(buf.trim()).ok()
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

/// Connections the status socket serves at once (each is one write of a few hundred bytes).
pub const CONTROL_CONNECTIONS: usize = 8;
/// Deadline of one status connection.
pub const CONTROL_DEADLINE: Duration = Duration::from_secs(2);

/// Serves `status` requests: each connection gets the status as one JSON line, within
/// [`CONTROL_DEADLINE`]; at most [`CONTROL_CONNECTIONS`] at once (`crate::listen`).
///
/// A connection that writes a request (`super::request`) gets the daemon's reply instead:
/// the request goes to the daemon's loop through `commands`. Only root's requests are taken.
pub async fn serve_control(
    listener: UnixListener,
    status: SharedStatus,
    lease: Option<Arc<crate::lease::LeaseStatus>>,
    commands: tokio::sync::mpsc::UnboundedSender<Command>,
    refresh: Refresh,
) {
    let mut backoff = Backoff::new("control socket");
    let slots = Slots::new("control socket", CONTROL_CONNECTIONS, "read its answer");
    loop {
        let (mut conn, _) = listen::accept(&mut backoff, || listener.accept()).await;
        let cred = conn.peer_cred().ok();
        let from = cred
            .and_then(|c| c.pid())
            .map_or_else(|| "a local client".to_string(), |p| format!("pid {p}"));
        // Refused: dropping the connection closes it at once.
        let Some(mut slot) = slots.admit(from) else {
            continue;
        };
        let (status, lease, commands, refresh) = (
            status.clone(),
            lease.clone(),
            commands.clone(),
            refresh.clone(),
        );
        tokio::spawn(async move {
            // While the request is awaited the connection is idle: a newer one may take its
            // slot.
            let req = tokio::select! {
                _ = slot.evicted() => return,
                r = tokio::time::timeout(CONTROL_DEADLINE, read_request(&mut conn)) => match r {
                    Ok(r) => r,
                    Err(_) => return,
                },
            };
            slot.busy();
            let body = match req {
                Ok(None | Some(Request::Status)) => render(&status, lease.as_deref(), &*refresh),
                Ok(Some(req)) if cred.is_some_and(|c| c.uid() == 0) => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let reply = match commands.send((req, tx)) {
                        Ok(()) => tokio::time::timeout(COMMAND_DEADLINE, rx)
                            .await
                            .unwrap_or_else(|_| {
                                Ok(Reply::refused("the daemon did not answer in time"))
                            })
                            .unwrap_or_else(|_| Reply::refused("the daemon is stopping")),
                        Err(_) => Reply::refused("the daemon is stopping"),
                    };
                    reply_line(&reply)
                }
                Ok(Some(_)) => reply_line(&Reply::refused("requests are taken from root only")),
                Err(reply) => reply_line(&reply),
            };
            let _ = tokio::time::timeout(CONTROL_DEADLINE, async {
                conn.write_all(body.as_bytes()).await?;
                conn.write_all(b"\n").await?;
                conn.shutdown().await
            })
            .await;
            drop(slot);
        });
    }
}

/// How long a request may wait for the daemon's loop.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(8);

fn reply_line(r: &Reply) -> String {
    serde_json::to_string(r).unwrap_or_default()
}

/// Serves one JSON line, from `render`, to each connection (the daemon's status, the
/// witness's): within [`CONTROL_DEADLINE`], at most [`CONTROL_CONNECTIONS`] at once.
pub async fn serve_json(listener: UnixListener, render: impl Fn() -> String) {
    let mut backoff = Backoff::new("control socket");
    let slots = Slots::new("control socket", CONTROL_CONNECTIONS, "read its answer");
    loop {
        let (mut conn, _) = listen::accept(&mut backoff, || listener.accept()).await;
        let from = conn
            .peer_cred()
            .ok()
            .and_then(|c| c.pid())
            .map_or_else(|| "a local client".to_string(), |p| format!("pid {p}"));
        // Refused: dropping the connection closes it at once.
        let Some(mut slot) = slots.admit(from) else {
            continue;
        };
        let body = render();
        tokio::spawn(async move {
            let write = tokio::time::timeout(CONTROL_DEADLINE, async {
                conn.write_all(body.as_bytes()).await?;
                conn.write_all(b"\n").await?;
                conn.shutdown().await
            });
            tokio::select! {
                _ = slot.evicted() => {}
                _ = write => {}
            }
        });
    }
}

/// The status as one JSON object, ages computed now.
fn render(
    status: &SharedStatus,
    lease: Option<&crate::lease::LeaseStatus>,
    refresh: &(dyn Fn(&mut Status) + Send + Sync),
) -> String {
    let s = status.lock().unwrap_or_else(|p| p.into_inner());
    let mut s = s.clone();
    refresh(&mut s);
    if let Some(b) = s.last_boot.as_mut() {
        b.age_ms = monotonic_ns().saturating_sub(b.at_ns) / 1_000_000;
    }
    if let Some(l) = lease {
        s.lease = Some(l.view(monotonic_ns()));
    }
    if let Some(m) = s.maintenance.as_mut() {
        m.remaining_ms = m
            .until_unix_ms
            .map(|u| u.saturating_sub(crate::sync::unix_ms()));
    }
    if let Some(sy) = s.sync.as_mut() {
        sy.age_ms = (sy.completed_unix_ms > 0)
            .then(|| crate::sync::unix_ms().saturating_sub(sy.completed_unix_ms));
    }
    serde_json::to_string(&s).unwrap_or_default()
}

/// Asks the daemon at `path` for its status.
pub async fn query_status(path: &Path) -> Result<Status, ControlError> {
    let v = query_json(path).await?;
    serde_json::from_value(v).map_err(|e| ControlError::Status {
        path: path.to_path_buf(),
        message: format!("not a daemon's status object: {e}"),
    })
}

/// Asks the daemon or witness at `path` for its status, as JSON.
pub async fn query_json(path: &Path) -> Result<serde_json::Value, ControlError> {
    let buf = super::request::exchange(path, b"", Duration::from_secs(5)).await?;
    serde_json::from_str(buf.trim()).map_err(|e| ControlError::Status {
        path: path.to_path_buf(),
        message: format!("not a status object: {e}"),
    })
}

/// One service health check in the status.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckStatus {
    /// Its name (`name`, or the target).
    pub name: String,
    /// Where it counts: `both`, `primary` or `monitor`.
    pub on: String,
    /// Whether it counted in this host's role at its last run.
    pub counts: bool,
    /// Whether it passes (after `fall` / `rise`).
    pub ok: bool,
    /// Runs so far.
    pub runs: u64,
    /// Failed runs so far.
    pub failures: u64,
    /// The last run's failure, if it failed.
    pub last_error: Option<String>,
}
