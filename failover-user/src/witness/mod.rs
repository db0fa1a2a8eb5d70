//! `failover witness`: the small third party of `boot.fence = "lease"`, for a host both
//! members of the pair reach (a router, the monitoring box).
//!
//! One UDP port. It renews the primary's lease ([`judge`]: grants for the highest epoch, never
//! for a revoked one) and answers the monitor's revoke: agreed only when the primary has gone
//! silent here too, refused (`revoke_refused`) while it still reaches the witness (the two
//! hosts lost only each other). The revoked epoch is persisted (fsync) before the agreement is
//! sent. Messages are authenticated with the pair's key (`lease::wire`), and only the two
//! hosts' node addresses are read at all. It never fences and never holds an address.
//!
//! - [`config`]: the `[witness]` file.
//! - [`judge`]: what it answers, pure.
pub mod config;
pub mod judge;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Instant,
};

use serde::Serialize;
use tokio::net::UdpSocket;

use crate::{
    event::{Emitter, Event},
    lease::{
        wire::{self, Message},
        Bound,
    },
    state::EpochStore,
    sync::Key,
    sys::monotonic_ns,
};
pub use config::WitnessConfig;
use judge::{Judge, Verdict};

/// Errors that stop the witness.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// The key file.
    #[error(transparent)]
    Key(#[from] crate::sync::SyncError),
    /// The revoked epoch could not be read or written.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The UDP socket.
    #[error("witness socket {addr}: {source}")]
    Socket {
        /// Address.
        addr: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// The control socket or the metrics endpoint.
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
}

/// What `failover status` shows of a witness.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WitnessStatus {
    /// Always "witness".
    pub role: &'static str,
    /// The UDP address it serves.
    pub listen: String,
    /// The highest epoch granted.
    pub granted_epoch: u64,
    /// Epochs up to this one are revoked (persisted).
    pub revoked_epoch: u64,
    /// How long the last grant may still run, ms.
    pub outstanding_ms: f64,
    /// Revokes agreed / refused.
    pub revokes: u64,
    /// Revokes refused (the primary still reached the witness).
    pub revokes_refused: u64,
    /// Datagrams dropped: not from a peer, not authenticated, replayed.
    pub dropped: u64,
    /// Per host.
    pub hosts: Vec<HostStatus>,
    /// Seconds since start.
    pub uptime_s: u64,
}

/// One host as the witness sees it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HostStatus {
    /// Its node id.
    pub node: u32,
    /// The epoch of its last request.
    pub epoch: u64,
    /// Since its last request, ms.
    pub last_request_age_ms: f64,
    /// Requests, grants, refusals.
    pub requests: u64,
    /// Grants.
    pub grants: u64,
    /// Refusals.
    pub refusals: u64,
    /// Its clock's rate against the witness's, ppm off 1 (measured over 10 s).
    pub clock_rate_ppm: Option<i64>,
}

/// Runs the witness until `shutdown` resolves.
pub async fn run(
    cfg: WitnessConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), WitnessError> {
    let key = wire::mac_key(&Key::load(&cfg.key_file)?);
    let store = EpochStore::named(&cfg.state_dir, "revoked");
    let revoked = store.load()?;
    let bound = Bound::new(cfg.clock_rate_ppm).unwrap_or_default();
    let mut judge = Judge::new(bound, cfg.max_lease.0, cfg.detection.0, revoked);
    judge.listening_since(monotonic_ns());
    let sock = UdpSocket::bind(cfg.listen)
        .await
        .map_err(|source| WitnessError::Socket {
            addr: cfg.listen,
            source,
        })?;
    let events = Emitter::new("witness", "pair");
    let status = Arc::new(Mutex::new(WitnessStatus {
        role: "witness",
        listen: cfg.listen.to_string(),
        ..Default::default()
    }));
    let control = crate::control::bind_control(&cfg.control_socket).await?;
    let st = status.clone();
    let started = Instant::now();
    tokio::spawn(crate::control::serve_json(control, move || {
        let mut s = st.lock().unwrap_or_else(|p| p.into_inner()).clone();
        s.uptime_s = started.elapsed().as_secs();
        serde_json::to_string(&s).unwrap_or_default()
    }));
    if let Some(addr) = cfg.metrics {
        let l = crate::control::bind_metrics(addr).await?;
        let st = status.clone();
        tokio::spawn(crate::control::serve_text(
            l,
            std::sync::Arc::new(move || {
                render_metrics(&st.lock().unwrap_or_else(|p| p.into_inner()))
            }),
        ));
    }
    tracing::info!(listen = %cfg.listen, revoked, peers = ?cfg.peers, "witness serving");
    let mut suspect = std::collections::BTreeSet::new();
    let mut dropped = 0u64;
    let mut buf = [0u8; 256];
    tokio::pin!(shutdown);
    loop {
        let (n, from) = tokio::select! {
            _ = &mut shutdown => break,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "witness receive failed");
                    continue;
                }
            },
        };
        let now = monotonic_ns();
        let verdict = if !cfg.peers.contains(&canonical(from.ip())) {
            None
        } else {
            match Message::decode(&buf[..n], &key) {
                Ok(m) => Some(judge.on_message(m, now)),
                Err(e) => {
                    tracing::debug!(%from, error = %e, "dropped a lease datagram");
                    None
                }
            }
        };
        let reply = match verdict {
            None | Some(Verdict::Ignore(_)) => {
                dropped += 1;
                None
            }
            Some(Verdict::Reply(m)) => Some(m),
            Some(Verdict::Unproven(m)) => {
                tracing::warn!(
                    node = m.node,
                    revoked = m.epoch,
                    "a revoke this witness cannot vouch for: no primary has asked it for a lease since its last agreed revoke or its start; nothing revoked, the monitor fences through the BMC"
                );
                Some(m)
            }
            Some(Verdict::RevokeRefused(m)) => {
                events.emit(
                    Event::RevokeRefused,
                    "witness",
                    m.epoch,
                    &format!(
                        "the primary (epoch {}) was heard {:.1} ms ago: it still reaches the witness",
                        m.epoch,
                        m.value_ns as f64 / 1e6
                    ),
                );
                Some(m)
            }
            Some(Verdict::Revoke { revoked, reply }) => match store.store(revoked) {
                Ok(()) => {
                    events.emit(
                        Event::LeaseRevoked,
                        "witness",
                        reply.epoch,
                        &format!(
                            "epochs up to {revoked} revoked; the last grant may run {:.1} ms more",
                            reply.value_ns as f64 / 1e6
                        ),
                    );
                    Some(reply)
                }
                Err(e) => {
                    // Not persisted: not agreed (it stays revoked in memory, so the primary
                    // is not renewed either; the monitor falls back to the BMC).
                    tracing::error!(error = %crate::error_chain(&e), "could not persist the revoked epoch; revoke not confirmed");
                    None
                }
            },
        };
        if let Some(m) = reply {
            let m = Message {
                stamp_ns: monotonic_ns(),
                ..m
            };
            if let Err(e) = sock.send_to(&m.encode(&key), from).await {
                tracing::debug!(%from, error = %e, "witness answer not sent");
            }
        }
        for (node, h) in &judge.heard {
            let now_suspect = h.rate.suspect();
            if now_suspect && suspect.insert(*node) {
                events.emit(
                    Event::ClockRateSuspect,
                    "witness",
                    h.epoch,
                    &format!(
                        "node {node}'s clock runs {} ppm off the witness's, beyond twice the bound ({} ppm)",
                        h.rate.rate_ppm().unwrap_or(0),
                        bound.ppm()
                    ),
                );
            } else if !now_suspect {
                suspect.remove(node);
            }
        }
        let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
        s.granted_epoch = judge.granted_epoch();
        s.revoked_epoch = judge.revoked();
        s.outstanding_ms = judge.outstanding(now).as_secs_f64() * 1e3;
        s.revokes = judge.revokes;
        s.revokes_refused = judge.revokes_refused;
        s.dropped = dropped;
        s.hosts = judge
            .heard
            .iter()
            .map(|(node, h)| HostStatus {
                node: *node,
                epoch: h.epoch,
                last_request_age_ms: now.saturating_sub(h.at_ns) as f64 / 1e6,
                requests: h.requests,
                grants: h.grants,
                refusals: h.refusals,
                clock_rate_ppm: h.rate.rate_ppm(),
            })
            .collect();
    }
    let _ = std::fs::remove_file(&cfg.control_socket);
    Ok(())
}

/// The witness's Prometheus text: every series with `# HELP` and `# TYPE`, the per-host ones
/// labelled with the host's node id.
pub fn render_metrics(s: &WitnessStatus) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut one = |name: &str, help: &str, kind: &str, v: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    };
    one(
        "failover_witness_granted_epoch",
        "The highest epoch granted a lease.",
        "gauge",
        s.granted_epoch as f64,
    );
    one(
        "failover_witness_revoked_epoch",
        "Epochs up to this one are revoked (persisted).",
        "gauge",
        s.revoked_epoch as f64,
    );
    one(
        "failover_witness_outstanding_seconds",
        "How long the last grant may still run.",
        "gauge",
        s.outstanding_ms / 1e3,
    );
    one(
        "failover_witness_revokes_total",
        "Revokes agreed.",
        "counter",
        s.revokes as f64,
    );
    one(
        "failover_witness_revokes_refused_total",
        "Revokes refused: the primary still reached the witness.",
        "counter",
        s.revokes_refused as f64,
    );
    one(
        "failover_witness_dropped_total",
        "Datagrams dropped: not from a peer, not authenticated, replayed.",
        "counter",
        s.dropped as f64,
    );
    for (name, help, kind) in [
        (
            "failover_witness_requests_total",
            "Lease requests taken, per host.",
            "counter",
        ),
        (
            "failover_witness_grants_total",
            "Lease grants given, per host.",
            "counter",
        ),
        (
            "failover_witness_refusals_total",
            "Lease requests refused, per host.",
            "counter",
        ),
        (
            "failover_witness_last_request_age_seconds",
            "Since the host's last lease request.",
            "gauge",
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for h in &s.hosts {
            let v = match name {
                "failover_witness_requests_total" => h.requests as f64,
                "failover_witness_grants_total" => h.grants as f64,
                "failover_witness_refusals_total" => h.refusals as f64,
                _ => h.last_request_age_ms / 1e3,
            };
            let _ = writeln!(out, "{name}{{node=\"{}\"}} {v}", h.node);
        }
    }
    out
}

/// IPv4-mapped IPv6 sources compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
