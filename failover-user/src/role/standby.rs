//! `failover standby on|off` (Pacemaker's node standby): a host in standby holds nothing,
//! monitors and fences nobody, and runs no takeover. A primary entering it hands P to the
//! monitor first (the `leaving` handover of a switchover); a monitor gives up M and stops
//! probing (its `leaving` tells the primary). Its responders stay up and answer as
//! `standby`, so that a joining peer that finds M and P silent serves P alone instead of
//! becoming a monitor that would fence this host when `startup_grace` runs out. Off, it
//! joins as after a start.
use super::{
    machine::{emit, Machine},
    Action, Addr, Input, Role, Timer,
};
use crate::event::Event;

impl Machine {
    /// Whether standby may start now: not while a fence or takeover is under way (its power
    /// action or claim cannot be called back half-way), nor while this primary resets the
    /// old one after a lease takeover (that host may be the monitor taking P from here).
    pub fn may_enter_standby(&self) -> Result<(), String> {
        self.no_fence_under_way()?;
        if self.resetting {
            return Err(
                "this host is resetting the old primary (off, then on) after taking P under the lease; try again once it is over"
                    .into(),
            );
        }
        Ok(())
    }

    /// Whether this host is in standby.
    pub fn standby(&self) -> bool {
        self.role == Role::Standby
    }

    /// `Input::Standby`.
    pub(super) fn set_standby(&mut self, on: bool, out: &mut Vec<Action>) {
        match (on, self.role) {
            (true, Role::Standby) | (false, Role::Booting | Role::TakingOver) => {}
            (true, Role::Booting | Role::TakingOver) => {} // refused by the runtime
            (true, role) => {
                match role {
                    // The monitor takes P at its first missed heartbeat, as after a
                    // switchover; should this notice be lost, its fence asks this host first.
                    Role::Primary => self.hand_p_over(out),
                    Role::Monitor => {
                        out.push(Action::StopMonitoring);
                        out.push(Action::Release(Addr::Monitor));
                        out.push(Action::SendLeaving(Role::Standby));
                    }
                    // A peer that is a monitor waiting for P learns that nobody will serve it
                    // here (it takes P without a fence).
                    _ => out.push(Action::SendLeaving(Role::Standby)),
                }
                self.suspicion = None;
                self.isolated = false;
                self.delaying = false;
                self.switching = false;
                self.contest = [None, None];
                out.push(emit(
                    Event::StandbyOn,
                    format!(
                        "holding nothing (was {}): no monitoring, no fence, no takeover; the peer serves alone",
                        role.name()
                    ),
                ));
                self.set_role(Role::Standby, out);
            }
            (false, Role::Standby) => {
                out.push(emit(Event::StandbyOff, "joining the pair again"));
                self.attempt = 0;
                self.set_role(Role::Joining, out);
                self.join(out);
            }
            (false, _) => {}
        }
    }

    /// The peer is in standby and holds nothing (`Input::PeerInStandby`, or its notice): it is
    /// never fenced. A monitor that judged P failed, or never saw it, takes P without a fence
    /// (the claim's duplicate-address probe proves P silent first); one that sees P answer
    /// takes it at the first missed heartbeat, as after a `leaving`. A fence whose power
    /// action has not left is called back; one that left cannot be. A new primary resetting
    /// the old one leaves it alone.
    pub(super) fn peer_in_standby(&mut self, epoch: u64, out: &mut Vec<Action>) {
        self.observe_epoch(epoch);
        let why = format!("the peer (epoch {epoch}) is in standby and holds nothing");
        match self.role {
            Role::Primary if self.resetting => {
                self.resetting = false;
                self.pending_boot = None;
                out.push(emit(Event::BootDone, format!("{why}: not resetting it")));
            }
            Role::Monitor | Role::Booting if !self.boot_accepted => {
                if self.disarmed() {
                    self.hold(why, out);
                    return;
                }
                if self.pending_boot.take().is_some() {
                    out.push(Action::CancelBoot);
                }
                let silent = self.role == Role::Booting || self.suspicion.is_some() || !self.armed;
                self.suspicion = None;
                self.isolated = false;
                self.delaying = false;
                if !self.policy.takeover {
                    out.push(emit(
                        Event::PeerLeft,
                        format!("{why}; recovery only: nothing to reboot"),
                    ));
                    self.set_role(Role::Monitor, out);
                } else if silent {
                    out.push(emit(
                        Event::PeerLeft,
                        format!("{why}: taking P over without a fence"),
                    ));
                    self.take_over(out);
                } else {
                    out.push(emit(
                        Event::PeerLeft,
                        format!(
                            "{why}: taking P over without a fence at its first missed heartbeat"
                        ),
                    ));
                    self.set_role(Role::Monitor, out);
                    self.handover = true;
                    out.push(Action::Schedule(
                        Timer::Handover,
                        self.policy.handover_window,
                    ));
                }
            }
            _ => {}
        }
    }

    /// In standby only `Input::Standby` changes anything (handled before this), and the
    /// maintenance and health flags are kept for when it joins again; the epoch others show
    /// is still learnt.
    pub(super) fn in_standby(&mut self, input: Input) {
        match input {
            Input::JoinDone {
                monitor,
                primary,
                peer,
            } => {
                for a in [monitor, primary, peer].iter().flatten() {
                    self.observe_epoch(a.epoch);
                }
            }
            Input::PeerSeen(p) => self.observe_epoch(p.epoch),
            Input::PeerLeaving { epoch, .. } | Input::TakenOver { epoch } => {
                self.observe_epoch(epoch)
            }
            _ => {}
        }
    }
}
