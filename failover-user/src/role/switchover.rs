//! `failover switchover`: the primary hands P to the monitor without a fence, and becomes the
//! monitor. It is the `leaving` handover of a planned stop (the monitor takes P at the first
//! missed heartbeat, its claim's duplicate-address probe proving P released), with the
//! daemon staying up: it rejoins once the monitor had time to take P, finds P answered and M
//! free, and becomes the monitor (claim 12). If the monitor did not take P (it refused, or
//! was in maintenance), the rejoin finds P silent and M answered, and this host serves P
//! again (claim 11): `switchover_failed`.
use super::{
    machine::{emit, Machine},
    Action, Hook, Role,
};
use crate::event::Event;

impl Machine {
    /// Whether a switchover may start here: on the primary only.
    pub fn may_switch_over(&self) -> Result<(), String> {
        match self.role {
            Role::Primary => Ok(()),
            r => Err(format!(
                "this host is {}: a switchover starts on the primary",
                r.name()
            )),
        }
    }

    /// Whether a switchover is under way (P released, the rejoin not settled yet).
    pub fn switching(&self) -> bool {
        self.switching
    }

    /// `Input::Switchover`.
    pub(super) fn switch_over(&mut self, out: &mut Vec<Action>) {
        if self.role != Role::Primary {
            return;
        }
        out.push(emit(
            Event::SwitchoverStarted,
            format!(
                "handing P (epoch {}) to the monitor without a fence; rejoining as its monitor",
                self.epoch
            ),
        ));
        self.hand_p_over(out);
        self.switching = true;
        self.attempt = 0;
        self.rejoin_after_handover(out);
    }

    /// After the rejoin: done (monitor), or failed (primary again). Called by `set_role`.
    pub(super) fn switchover_settled(&mut self, to: Role, out: &mut Vec<Action>) {
        if !self.switching || !matches!(to, Role::Monitor | Role::Primary) {
            return;
        }
        self.switching = false;
        out.push(Action::Hook(Hook::OnSwitchover(to == Role::Monitor)));
        out.push(if to == Role::Monitor {
            emit(
                Event::SwitchoverDone,
                "the peer serves P; this host is its monitor",
            )
        } else {
            emit(
                Event::SwitchoverFailed,
                "the monitor did not take P over (it refused, or is in maintenance): serving it again",
            )
        });
    }
}
