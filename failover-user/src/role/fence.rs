//! The fence: the failure decision, the self-check before it, the boot (fence) itself, its
//! cancellation, the takeover, and the planned stop of the peer.
use super::Fault;
use super::{
    machine::{emit, Machine, Suspicion},
    Action, Addr, BootAction, Hook, Role, SelfCheck, Timer,
};
use crate::event::Event;

impl Machine {
    /// P looks failed: before any fence, check that this host is not the cut-off one.
    pub(super) fn suspect(&mut self, why: Suspicion, out: &mut Vec<Action>) {
        if self.disarmed() {
            // startup_grace runs out once: judged again when the maintenance ends.
            self.grace_held |= why == Suspicion::Grace;
            self.hold(why.why(), out);
            return;
        }
        if self.suspicion.is_none() {
            self.suspicion = Some(why);
            self.delaying = false;
            out.push(Action::SelfCheck);
        }
    }

    pub(super) fn self_checked(&mut self, result: SelfCheck, out: &mut Vec<Action>) {
        let Some(why) = self.suspicion else {
            return; // P came back meanwhile: nothing to decide
        };
        let failed = match result {
            SelfCheck::Passed { .. } if std::mem::take(&mut self.isolated) => {
                // The misses were seen while this side was cut off (and the first probes
                // after it came back may still be waiting for neighbour resolution): they
                // prove nothing about P. Judge it afresh; a fence needs a new failure.
                self.suspicion = None;
                out.push(emit(
                    Event::IsolationEnded,
                    "the self-check passes again; judging the primary afresh",
                ));
                out.push(Action::Rejudge);
                return;
            }
            SelfCheck::Passed { .. }
                if why == Suspicion::Grace && !self.policy.fence_delay.is_zero() =>
            {
                // Two monitors (a cold start that left both holding M) must not fence each
                // other at the same moment: the host that is not the preferred primary waits.
                // After misses the peer was a primary, which never fences: no delay then.
                out.push(emit(
                    Event::FenceDelayed,
                    format!("{}; fencing in {:?}", why.why(), self.policy.fence_delay),
                ));
                out.push(Action::Schedule(Timer::FenceDelay, self.policy.fence_delay));
                self.delaying = true;
                return;
            }
            SelfCheck::Passed { .. } => {
                self.start_boot(why, out);
                return;
            }
            SelfCheck::NoCarrier => "the service interface is down or has no carrier".to_string(),
            SelfCheck::WitnessesSilent { answered, needed } => format!(
                "{answered} witness(es) answered, {needed} needed: this host may be the one cut off"
            ),
        };
        out.push(emit(
            Event::Isolated,
            format!("{}; not fencing the primary ({failed})", why.why()),
        ));
        if !self.isolated {
            self.isolated = true;
            out.push(Action::Hook(Hook::OnFault(Fault::Isolated)));
        }
        out.push(Action::Retry(self.policy.recheck));
    }

    /// The primary failed and this host's side works: boot (fence) it.
    pub(super) fn start_boot(&mut self, why: Suspicion, out: &mut Vec<Action>) {
        out.push(emit(Event::PrimaryFailed, why.why()));
        self.set_role(Role::Booting, out);
        self.attempt = 0;
        self.fence_confirmed = false;
        self.boot_accepted = false;
        self.answered_in_attempt = false;
        self.suspicion = None;
        if self.policy.takeover && self.policy.no_fence {
            out.push(emit(
                Event::FenceSkipped,
                "boot.method = none with allow_unfenced_takeover: taking P without a fence",
            ));
            self.take_over(out);
            return;
        }
        if self.policy.takeover && self.policy.lease_fence {
            self.ask_revoke(why, out);
            return;
        }
        self.request_boot(out);
    }

    pub(super) fn request_boot(&mut self, out: &mut Vec<Action>) {
        let action = if self.policy.takeover {
            BootAction::Off
        } else {
            BootAction::Reboot
        };
        self.pending_boot = Some(action);
        out.push(emit(Event::BootRequested, action.name()));
        out.push(Action::Boot(action));
    }

    /// P answers again (`how`): a pending fence is abandoned while the peer has not accepted
    /// one.
    pub(super) fn recovered(&mut self, how: String, out: &mut Vec<Action>) {
        match self.role {
            Role::Monitor => {
                self.peer_left = false;
                let suspected = self.suspicion.take().is_some();
                if std::mem::take(&mut self.refused) {
                    // The witness refused the revoke: the fence asked for again is abandoned.
                    out.push(emit(
                        Event::FenceCancelled,
                        format!("{how}: the witness's refusal stood, nothing was fenced"),
                    ));
                }
                if suspected && std::mem::take(&mut self.isolated) {
                    out.push(emit(Event::IsolationEnded, how));
                }
            }
            Role::Booting if !self.boot_accepted => {
                let what = if self.revoke.is_some() {
                    "before the witness revoked its lease"
                } else {
                    "before a power action was sent"
                };
                out.push(emit(Event::FenceCancelled, format!("{how}, {what}")));
                if self.pending_boot.take().is_some() | self.revoke.take().is_some() {
                    out.push(Action::CancelBoot);
                }
                self.attempt = 0;
                self.set_role(Role::Monitor, out);
            }
            Role::Booting => self.answered_in_attempt = true,
            _ => {}
        }
    }

    pub(super) fn take_over(&mut self, out: &mut Vec<Action>) {
        self.set_role(Role::TakingOver, out);
        out.push(Action::StopMonitoring);
        // The runtime reports `address_released` once the address is actually gone.
        out.push(Action::Release(Addr::Monitor));
        out.push(Action::Claim(Addr::Primary));
    }

    pub(super) fn become_primary(&mut self, out: &mut Vec<Action>) {
        self.epoch += 1;
        out.push(Action::BumpEpoch);
        out.push(emit(Event::AddressClaimed, "primary address"));
        self.set_role(Role::Primary, out);
        out.push(Action::Hook(Hook::OnPrimary));
    }

    /// The handover window is over and P never missed a heartbeat: the `leaving` notice was
    /// stale (sent before the primary restarted); nothing is taken over.
    pub(super) fn handover_over(&mut self, out: &mut Vec<Action>) {
        if std::mem::take(&mut self.handover) && self.role == Role::Monitor {
            out.push(emit(
                Event::PeerLeft,
                "the primary still answers: its leaving notice was stale; nothing taken over",
            ));
        }
    }

    /// `boot.fence_delay` is over: the delayed fence goes ahead if P is still suspected.
    pub(super) fn fence_delay_over(&mut self, out: &mut Vec<Action>) {
        if self.role == Role::Monitor
            && self.suspicion == Some(Suspicion::Grace)
            && std::mem::take(&mut self.delaying)
        {
            self.start_boot(Suspicion::Grace, out);
        }
    }

    /// The peer stopped on purpose: a primary that released P is taken over without a fence
    /// (the claim's duplicate-address probe proves P silent first).
    pub(super) fn peer_leaving(&mut self, role: u8, epoch: u64, out: &mut Vec<Action>) {
        self.observe_epoch(epoch);
        if self.disarmed() && role == Role::Primary.code() && self.role == Role::Monitor {
            self.hold(
                format!("the primary (epoch {epoch}) is stopping and released P"),
                out,
            );
            return;
        }
        match self.role {
            Role::Monitor | Role::Booting
                if role == Role::Primary.code() && self.armed && !self.boot_accepted =>
            {
                if self.pending_boot.take().is_some() {
                    out.push(Action::CancelBoot);
                }
                // P already failing (a fence was pending): its silence is shown already.
                let silent = self.role == Role::Booting || self.suspicion.is_some();
                self.suspicion = None;
                self.isolated = false;
                if self.policy.takeover && silent {
                    out.push(emit(
                        Event::PeerLeft,
                        format!("the primary (epoch {epoch}) is stopping and released P: taking it over without a fence"),
                    ));
                    self.take_over(out);
                } else if self.policy.takeover {
                    // Taken over at the first missed heartbeat: a notice that arrives late
                    // (after the primary restarted and answers again) changes nothing.
                    out.push(emit(
                        Event::PeerLeft,
                        format!("the primary (epoch {epoch}) is stopping and released P: taking it over without a fence at its first missed heartbeat"),
                    ));
                    self.set_role(Role::Monitor, out);
                    self.handover = true;
                    out.push(Action::Schedule(
                        Timer::Handover,
                        self.policy.handover_window,
                    ));
                } else {
                    out.push(emit(
                        Event::PeerLeft,
                        format!("the primary (epoch {epoch}) is stopping; recovery only: waiting for it to come back"),
                    ));
                    self.peer_left = true;
                    self.set_role(Role::Monitor, out);
                }
            }
            Role::Primary if role == Role::Monitor.code() => out.push(emit(
                Event::PeerLeft,
                "the monitor is stopping: nobody watches this host until it is back",
            )),
            _ => {}
        }
    }
}
