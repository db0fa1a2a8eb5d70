//! Service health checks (`[[check]]`, keepalived's `track_script`) as the monitor sees them:
//! while one of its checks fails, this host could not serve P, so it fences nobody and takes
//! nothing over (a `leaving` primary included), as in maintenance. When they pass again, the
//! primary is judged afresh. The primary's side (a failing check hands P over) is the
//! runtime's: it is a switchover (`switchover.rs`).
use super::{machine::Machine, Action};

impl Machine {
    /// Whether a health check fails here (as the runtime last reported).
    pub fn unhealthy(&self) -> bool {
        self.unhealthy
    }

    /// `Input::Health`.
    pub(super) fn set_health(&mut self, ok: bool, out: &mut Vec<Action>) {
        if ok != self.unhealthy {
            return; // no change
        }
        self.unhealthy = !ok;
        self.held = false;
        if !ok {
            // A leaving primary's handover and a decision waiting for its self-check go, as
            // with maintenance: this host would take P it cannot serve.
            self.handover = false;
            if self.suspicion.take().is_some() {
                self.isolated = false;
                self.delaying = false;
            }
            return;
        }
        self.rearm(out);
    }
}
