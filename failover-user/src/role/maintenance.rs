//! `failover maintenance on|off`: the monitor judges nothing while an operator works on the
//! pair (Pacemaker's maintenance mode, keepalived's absence of one). No failure decision, no
//! fence, no takeover, a `leaving` primary included; probes, metrics and copies go on.
use std::time::Duration;

use super::{
    machine::{emit, Machine, Suspicion},
    Action, Role, Timer,
};
use crate::event::Event;

impl Machine {
    /// Whether the monitor is in maintenance.
    pub fn maintenance(&self) -> bool {
        self.maintenance
    }

    /// Whether maintenance may start now: not while a fence or takeover is under way (its
    /// power action or claim cannot be called back half-way), so the operator is told to wait.
    pub fn may_enter_maintenance(&self) -> Result<(), String> {
        self.no_fence_under_way()
    }

    /// Refused (with the reason an operator is shown) while this host fences or takes over.
    pub(super) fn no_fence_under_way(&self) -> Result<(), String> {
        match self.role {
            Role::Booting | Role::TakingOver => Err(format!(
                "this host is {} the peer: a fence or takeover is under way; try again once it is over",
                self.role.name()
            )),
            _ => Ok(()),
        }
    }

    /// Maintenance on (for `for_`, or until turned off) or off.
    pub(super) fn set_maintenance(
        &mut self,
        on: bool,
        for_: Option<Duration>,
        out: &mut Vec<Action>,
    ) {
        if on {
            self.maintenance = true;
            self.maintenance_timed = for_.is_some();
            self.held = false;
            self.grace_held = false;
            // A `leaving` primary's handover waiting for its first miss is a takeover too.
            self.handover = false;
            // A decision waiting for its self-check (or a delayed fence) is dropped with it.
            if self.suspicion.take().is_some() {
                self.isolated = false;
                self.delaying = false;
            }
            let until = for_.map_or("until turned off".to_string(), |d| format!("for {d:?}"));
            out.push(emit(
                Event::MaintenanceOn,
                format!("failure detection disarmed {until}: no fence, no takeover; probes, metrics and copies go on"),
            ));
            if let Some(d) = for_ {
                out.push(Action::Schedule(Timer::MaintenanceOver, d));
            }
            return;
        }
        if !std::mem::take(&mut self.maintenance) {
            return;
        }
        self.maintenance_timed = false;
        self.held = false;
        out.push(emit(
            Event::MaintenanceOff,
            "failure detection armed again: a fence needs a new full window of misses",
        ));
        self.rearm(out);
    }

    /// Maintenance ended or a failing health check passes again: once nothing disarms a
    /// monitor any more, the primary is judged afresh.
    pub(super) fn rearm(&mut self, out: &mut Vec<Action>) {
        if self.role == Role::Monitor && !self.disarmed() {
            // Misses counted while disarmed decide nothing.
            out.push(Action::Rejudge);
            // A primary never seen: startup_grace ran out meanwhile, and does not again.
            if std::mem::take(&mut self.grace_held) && !self.armed {
                self.suspect(Suspicion::Grace, out);
            }
        }
    }

    /// `--for` ran out (a timer of an earlier, timed maintenance ends nothing).
    pub(super) fn maintenance_over(&mut self, out: &mut Vec<Action>) {
        if self.maintenance_timed {
            self.set_maintenance(false, None, out);
        }
    }

    /// In maintenance or with a failing health check, `why` would have started a fence or a
    /// takeover: reported once (`maintenance_held`, or `takeover_refused` for the check).
    pub(super) fn hold(&mut self, why: String, out: &mut Vec<Action>) {
        if !std::mem::replace(&mut self.held, true) {
            out.push(if self.maintenance {
                emit(
                    Event::MaintenanceHeld,
                    format!("{why}: in maintenance, not fencing or taking over"),
                )
            } else {
                emit(
                    Event::TakeoverRefused,
                    format!("{why}: a service health check fails on this host, so it cannot serve P: not fencing or taking over"),
                )
            });
        }
    }

    /// Whether failures are judged now: not in maintenance, nor while a health check fails.
    pub(super) fn disarmed(&self) -> bool {
        self.maintenance || self.unhealthy
    }
}
