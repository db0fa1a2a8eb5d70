//! `fence = "lease"`: the takeover under the lease. The monitor that decided the primary
//! failed stops granting its lease, asks the witness to revoke it, waits until no grant can
//! still be outstanding, claims P, and resets the old primary through the BMC afterwards (an
//! alert if that fails, no longer a blocker). Without an answer from the witness it fences
//! through the BMC as in `fence = "bmc"`; a refusal (the witness still hears the primary)
//! fences nothing.
use super::Fault;
use super::{
    machine::{emit, Machine, RevokeStage, Suspicion},
    Action, BootAction, Hook, Revocation, Role, Timer,
};
use crate::event::Event;

impl Machine {
    /// After the failure decision (`start_boot`): stop granting (this step makes `grants`
    /// false) and ask the witness.
    pub(super) fn ask_revoke(&mut self, why: Suspicion, out: &mut Vec<Action>) {
        self.revoke = Some(RevokeStage::Asked);
        self.revoke_for = Some(why);
        out.push(Action::Revoke);
    }

    /// The witness's answer.
    pub(super) fn revoked(&mut self, r: Revocation, out: &mut Vec<Action>) {
        if self.revoke != Some(RevokeStage::Asked) {
            return; // cancelled meanwhile, or a duplicate
        }
        match r {
            Revocation::Agreed { wait, epoch } => {
                // From here the primary loses its lease whatever it does: no cancelling.
                self.observe_epoch(epoch);
                self.revoke = Some(RevokeStage::Agreed);
                self.boot_accepted = true;
                out.push(emit(
                    Event::LeaseRevoked,
                    format!(
                        "the witness stopped hearing the primary too and revoked its lease (epochs up to {epoch}); taking P in {:.1}ms, when no grant can be outstanding",
                        wait.as_secs_f64() * 1e3
                    ),
                ));
                out.push(Action::Schedule(Timer::LeaseOver, wait));
            }
            Revocation::Refused { heard_ago } => {
                // The two hosts lost only each other: the primary serves, nothing is fenced.
                // Asked again after `witness.recheck` while P stays silent here.
                if !std::mem::replace(&mut self.refused, true) {
                    out.push(emit(
                        Event::RevokeRefused,
                        format!(
                            "the witness heard the primary {:.1}ms before it answered: only the link between the two hosts failed; not fencing, the primary keeps serving",
                            heard_ago.as_secs_f64() * 1e3
                        ),
                    ));
                    out.push(Action::Hook(Hook::OnFault(Fault::RevokeRefused)));
                }
                let why = self.revoke_for.take();
                self.set_role(Role::Monitor, out);
                self.suspicion = why;
                out.push(Action::Retry(self.policy.recheck));
            }
            Revocation::NoLease { epoch } => {
                self.observe_epoch(epoch);
                out.push(emit(
                    Event::LeaseRevoked,
                    format!(
                        "the witness revoked epochs up to {epoch}, but no lease was ever granted to this primary (it failed before its lease gate was in place): fencing through the BMC (waiting for Off)"
                    ),
                ));
                self.revoke = None;
                self.request_boot(out);
            }
            Revocation::Unreachable => {
                out.push(emit(
                    Event::WitnessLost,
                    "the witness did not answer the revoke request: fencing through the BMC (waiting for Off)",
                ));
                self.revoke = None;
                self.request_boot(out);
            }
        }
    }

    /// The primary's lease at `epoch` lapsed and the witness will never renew it: it holds P
    /// without being able to serve it, so it rejoins (releasing P) and can be primary again
    /// at a new epoch. Nothing else would end it when the monitor that had it revoked is
    /// gone.
    pub(super) fn lease_revoked(&mut self, epoch: u64, out: &mut Vec<Action>) {
        if self.role == Role::Primary && epoch == self.epoch {
            self.demote(
                format!(
                    "this host's lease lapsed and the witness revoked its epoch {epoch}: no grant can renew it"
                ),
                out,
            );
        }
    }

    /// The wait after the revoke is over: the lease is over, P is claimed.
    pub(super) fn lease_over(&mut self, out: &mut Vec<Action>) {
        if self.role != Role::Booting || self.revoke != Some(RevokeStage::Agreed) {
            return;
        }
        self.revoke = None;
        out.push(emit(
            Event::FenceConfirmed,
            "the primary's lease is over (revoked by the witness, no grant outstanding): its kernel stops P",
        ));
        self.take_over(out);
        self.reset_after = true;
    }

    /// P is claimed under the lease: power the old primary off and on in the background, so
    /// that it rejoins (claim 12).
    pub(super) fn start_reset(&mut self, out: &mut Vec<Action>) {
        if !self.policy.no_fence {
            self.resetting = true;
            out.push(emit(
                Event::BootRequested,
                "off, then on: resetting the old primary",
            ));
            out.push(Action::Boot(BootAction::Off));
        }
    }

    /// A result of the background reset.
    pub(super) fn reset_step(&mut self, action: BootAction, ok: bool, out: &mut Vec<Action>) {
        match (action, ok) {
            (BootAction::Off, true) => {
                out.push(emit(Event::BootRequested, "on"));
                out.push(Action::Boot(BootAction::On));
            }
            (BootAction::Off, false) => {
                self.resetting = false;
                out.push(emit(
                    Event::FenceFailed,
                    "the reset of the old primary failed at off; P is served under the lease, the old primary's kernel keeps it stopped",
                ));
                out.push(Action::Hook(Hook::OnFault(Fault::FenceFailed)));
            }
            (_, true) => {
                self.resetting = false;
                out.push(emit(
                    Event::BootDone,
                    "the old primary was powered on: it rejoins",
                ));
            }
            (_, false) => {
                self.resetting = false;
                out.push(emit(
                    Event::BootFailed,
                    "the old primary was not powered on again",
                ));
                out.push(Action::Hook(Hook::OnFault(Fault::BootFailed)));
            }
        }
    }
}
