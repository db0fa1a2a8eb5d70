//! What the loop publishes after every step: role and epoch to the responders (they carry
//! them in answers), gauges to the metrics, and the status that `failover status` reads.
use std::sync::atomic::Ordering;

use super::{monitor::MonitorStatus, Daemon};
use crate::{
    control::{PeerLive, Status},
    role::{Addr, Role, FLAG_HOLDS_M, FLAG_HOLDS_P, FLAG_PREFERRED, FLAG_TAKES_YIELD},
    signal::responder::ResponderCounters,
    sys::monotonic_ns,
};

impl Daemon {
    /// Copies role and epoch to the responders, metrics and status.
    pub(super) fn publish(&self) {
        let role = self.machine.role();
        let epoch = self.machine.epoch();
        self.identity.role.store(role.code(), Ordering::Relaxed);
        self.identity.epoch.store(epoch, Ordering::Relaxed);
        let held = self.held.addrs();
        let flags = [
            (self.cfg.preferred_primary, FLAG_PREFERRED),
            (held.contains(&Addr::Primary), FLAG_HOLDS_P),
            (held.contains(&Addr::Monitor), FLAG_HOLDS_M),
            (self.machine.takes_yield(), FLAG_TAKES_YIELD),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .fold(0, |f, (_, bit)| f | bit);
        self.identity.flags.store(flags, Ordering::Relaxed);
        if let Some(l) = &self.lease {
            l.granting.on.store(self.machine.grants(), Ordering::SeqCst);
        }
        self.metrics
            .role
            .store(u64::from(role.code()), Ordering::Relaxed);
        self.metrics.epoch.store(epoch, Ordering::Relaxed);
        let now = monotonic_ns();
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        st.role = role.name().to_string();
        st.epoch = epoch;
        st.uptime_s = self.started.elapsed().as_secs();
        st.addresses_held = self
            .held
            .addrs()
            .into_iter()
            .flat_map(|a| self.cidrs(a))
            .map(|c| c.to_string())
            .collect();
        let p = &mut st.peer;
        p.name = self.cfg.node.peer_name.clone();
        p.address = self.cfg.node.peer.to_string();
        st.peer_live = match (self.monitoring, role) {
            (true, _) => PeerLive::Monitor,
            (false, Role::Booting) => {
                p.state = "failed".into();
                PeerLive::None
            }
            (false, Role::Primary | Role::TakingOver) if self.machine.fence_confirmed() => {
                p.state = "fenced".into();
                PeerLive::None
            }
            (false, Role::Primary) => PeerLive::Primary,
            (false, _) => {
                p.state = "unknown".into();
                p.consecutive_misses = 0;
                PeerLive::None
            }
        };
        refresh_peer(&mut st, &self.monitor_status, &self.primary_counters, now);
        // The role has settled once a join decided it (or standby was resumed): every role
        // but Joining comes after that.
        if self.notifier.enabled() {
            let settled = role != Role::Joining;
            let line = format!(
                "{}, epoch {epoch}, peer {} {}",
                role.name(),
                st.peer.name,
                st.peer.state
            );
            drop(st);
            self.notifier.status(&line, settled);
        }
    }
}

/// The peer's live state, from the monitor's probe verdicts or the requests on P: after
/// every step, and again whenever the status is read (nothing may step for a long while).
pub(super) fn refresh_peer(
    st: &mut Status,
    m: &MonitorStatus,
    primary: &ResponderCounters,
    now: u64,
) {
    let p = &mut st.peer;
    match st.peer_live {
        PeerLive::Monitor => {
            let misses = m.consecutive.load(Ordering::Relaxed);
            let last = m.last_in_time_ns.load(Ordering::Relaxed);
            p.consecutive_misses = misses;
            p.last_reply_age_ms = (last != 0).then(|| now.saturating_sub(last) / 1_000_000);
            p.state = if !m.armed.load(Ordering::Relaxed) {
                "unseen"
            } else if misses == 0 {
                "alive"
            } else {
                "missing"
            }
            .into();
        }
        PeerLive::Primary => {
            let last = primary.last_request_ns.load(Ordering::Relaxed);
            p.consecutive_misses = 0;
            p.last_reply_age_ms = (last != 0).then(|| now.saturating_sub(last) / 1_000_000);
            p.state = match p.last_reply_age_ms {
                Some(age) if age < 1000 => "heard",
                _ => "unknown",
            }
            .into();
        }
        PeerLive::None => {}
    }
}
