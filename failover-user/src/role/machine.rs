//! The machine: every protocol rule, as transitions from (role, input) to actions.
//!
//! Rules enforced here by construction:
//! - a joining host claims P only when a live monitor answered at M and P stayed silent;
//! - a monitor fences only after its self-check passed (its own side is not the cut-off one),
//!   and claims P only after the fence was confirmed, or when the primary said it is leaving
//!   (the claim's duplicate-address probe then proves P silent), or when the operator opted
//!   out of fencing;
//! - a pending fence is cancelled when P answers again before a power-off was accepted;
//! - a host that holds an address another host claims defends it once, and the loser of the
//!   tie-break (`defence.rs`) gives it up; a primary that learns of a newer primary steps down.
//!
//! The fence rules are in `fence.rs`, the address and epoch rules in `defence.rs`.
use std::time::Duration;

use super::Fault;
use super::{
    defence::Contest, Action, Addr, Answer, BootAction, Hook, Input, Notice, Policy, Role, Timer,
};
use crate::{detector::LivenessEvent, event::Event};

/// Why the monitor suspects the primary (awaiting the self-check).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Suspicion {
    /// This many consecutive probes without an in-time reply.
    Misses(u32),
    /// P never answered within `startup_grace`.
    Grace,
}

impl Suspicion {
    pub(super) fn why(self) -> String {
        match self {
            Suspicion::Misses(n) => format!("{n} consecutive probes without a reply in time"),
            Suspicion::Grace => "the primary address never answered within startup_grace".into(),
        }
    }
}

/// The state machine.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Machine {
    pub(super) policy: Policy,
    pub(super) role: Role,
    pub(super) epoch: u64,
    pub(super) armed: bool,
    pub(super) attempt: u32,
    pub(super) fence_confirmed: bool,
    /// The boot action awaiting its result; results of anything else are not acted on.
    pub(super) pending_boot: Option<BootAction>,
    /// The peer accepted a power action of this boot episode: no cancelling any more.
    pub(super) boot_accepted: bool,
    /// A failure decision awaits the self-check.
    pub(super) suspicion: Option<Suspicion>,
    /// The last self-check failed: this host's side is the broken one.
    pub(super) isolated: bool,
    /// The primary said it is stopping (recovery-only mode waits for it instead of fencing).
    pub(super) peer_left: bool,
    /// A join was sent since start.
    pub(super) joined: bool,
    /// Address contests in progress, P then M.
    pub(super) contest: [Option<Contest>; 2],
    /// The peer's last answer to `AskPeer`, since the last ask.
    pub(super) peer: Option<Answer>,
    /// The current suspicion's fence waits for `Due(FenceDelay)`.
    pub(super) delaying: bool,
    /// The primary said it is leaving: P is taken over at the first missed heartbeat (a
    /// notice delayed past the primary's restart must not hand P over while it answers).
    pub(super) handover: bool,
    /// P answered in time while the current power action was under way: if the attempt
    /// fails, the fence is over rather than retried.
    pub(super) answered_in_attempt: bool,
    /// This host left P to the monitor, whose data is newer (`Action::SendYield`), and has
    /// not held an address since: the next join claims P if the monitor did not take it.
    pub(super) yielded: bool,
    /// `fence = "lease"`: where the revoke of the failed primary's lease stands.
    pub(super) revoke: Option<RevokeStage>,
    /// The suspicion a revoke request answers (back to it when the witness refuses).
    pub(super) revoke_for: Option<Suspicion>,
    /// The witness's refusal was reported in this episode (reported once until P answers).
    pub(super) refused: bool,
    /// P is being taken under the lease: reset the old primary once P is claimed.
    pub(super) reset_after: bool,
    /// Primary after a lease takeover: the old primary's background reset is powering it off
    /// (then on).
    pub(super) resetting: bool,
    /// `failover maintenance on`: nothing is judged (`maintenance.rs`).
    pub(super) maintenance: bool,
    /// In maintenance, a failure was held back (reported once per maintenance).
    pub(super) held: bool,
    /// The maintenance ends by itself (`Timer::MaintenanceOver`).
    pub(super) maintenance_timed: bool,
    /// In maintenance, `startup_grace` ran out with P unseen (judged when it ends).
    pub(super) grace_held: bool,
    /// `failover switchover`: P handed to the monitor, the rejoin not settled yet.
    pub(super) switching: bool,
    /// A service health check (`[[check]]`) fails here: as a monitor, this host cannot serve,
    /// so it fences nobody and takes nothing over (`health.rs`).
    pub(super) unhealthy: bool,
}

/// `fence = "lease"`: the revoke of the failed primary's lease.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum RevokeStage {
    /// Asked the witness; no answer yet (cancelled if P answers meanwhile).
    Asked,
    /// The witness revoked: waiting out the last grants (`Timer::LeaseOver`). No cancelling
    /// any more: nobody renews the lease, so the primary stops serving whatever it does.
    Agreed,
}

pub(super) fn emit(event: Event, detail: impl Into<String>) -> Action {
    Action::Emit(Notice {
        event,
        detail: detail.into(),
    })
}

impl Machine {
    /// A machine in `Joining` with the persisted `epoch`.
    pub fn new(policy: Policy, epoch: u64) -> Machine {
        Machine {
            policy,
            role: Role::Joining,
            epoch,
            armed: false,
            attempt: 0,
            fence_confirmed: false,
            pending_boot: None,
            boot_accepted: false,
            suspicion: None,
            isolated: false,
            peer_left: false,
            joined: false,
            contest: [None, None],
            peer: None,
            delaying: false,
            handover: false,
            answered_in_attempt: false,
            yielded: false,
            revoke: None,
            revoke_for: None,
            refused: false,
            reset_after: false,
            resetting: false,
            maintenance: false,
            held: false,
            maintenance_timed: false,
            unhealthy: false,
            grace_held: false,
            switching: false,
        }
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether the last fence was confirmed (the peer is known to be off).
    pub fn fence_confirmed(&self) -> bool {
        self.fence_confirmed
    }

    /// Whether P has been seen answering since this host became monitor.
    pub fn armed(&self) -> bool {
        self.armed
    }

    /// Replaces the policy (a configuration reload); the role and epoch stay.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// Whether a failure decision is waiting for the self-check (or isolated).
    pub fn suspicious(&self) -> bool {
        self.suspicion.is_some()
    }

    /// Whether this host, a monitor that has never seen P answer, takes P when the joining
    /// peer leaves it P (its data being newer): said in join answers (`FLAG_TAKES_YIELD`).
    pub fn takes_yield(&self) -> bool {
        self.role == Role::Monitor && !self.armed && self.policy.takeover
    }

    /// Whether this host renews the peer's lease (`boot.lease`): as its monitor, until it
    /// decided the primary failed in `fence = "lease"` mode (then it has stopped for good,
    /// or until the witness refused, or fell silent).
    pub fn grants(&self) -> bool {
        match self.role {
            Role::Monitor => true,
            Role::Booting => self.revoke.is_none(),
            _ => false,
        }
    }

    /// Whether the last self-check showed this host cut off.
    pub fn isolated(&self) -> bool {
        self.isolated
    }

    /// Raises the epoch to one the peer reported (join replies, the monitor's epoch probes,
    /// a leaving peer), so that the next promotion anywhere goes above every epoch seen so far
    /// and a stale primary is recognisable by its lower epoch.
    pub fn observe_epoch(&mut self, epoch: u64) {
        self.epoch = self.epoch.max(epoch);
    }

    pub(super) fn set_role(&mut self, to: Role, out: &mut Vec<Action>) {
        if matches!(to, Role::Monitor | Role::Joining | Role::Conflict) {
            // No fence is under way in these roles: what the last one left must not decide
            // the next (a later `leaving`, a later takeover's power-on).
            self.pending_boot = None;
            self.boot_accepted = false;
            self.fence_confirmed = false;
            self.answered_in_attempt = false;
            self.revoke = None;
            self.reset_after = false;
        }
        if to != Role::Primary {
            self.resetting = false;
        }
        if to != Role::Monitor {
            self.handover = false;
        }
        if matches!(to, Role::Primary | Role::Monitor) {
            self.yielded = false;
        }
        if to != self.role {
            out.push(emit(
                Event::RoleChanged,
                format!("{} -> {}", self.role.name(), to.name()),
            ));
            self.role = to;
        }
        self.switchover_settled(to, out);
    }

    pub(super) fn backoff(&mut self) -> Duration {
        let d = self
            .policy
            .retry
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.policy.retry_max);
        self.attempt += 1;
        d
    }

    pub(super) fn join(&mut self, out: &mut Vec<Action>) {
        out.push(emit(
            Event::JoinProbeSent,
            "second signal to the monitor address",
        ));
        out.push(Action::SendJoin {
            doubled: !self.joined && self.policy.preferred_primary,
        });
        self.joined = true;
    }

    /// Feeds one input; returns the actions to execute, in order.
    pub fn step(&mut self, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        // A boot result counts only as the answer to the request in flight: a stray or
        // duplicated "off confirmed" must never open the way to P.
        let input = match input {
            Input::BootDone { action, ok } if self.role == Role::Booting => {
                if self.pending_boot != Some(action) {
                    out.push(emit(
                        Event::BootDone,
                        format!("ignored unexpected {} result", action.name()),
                    ));
                    return out;
                }
                self.pending_boot = None;
                Input::BootDone { action, ok }
            }
            other => other,
        };
        match (self.role, input) {
            (_, Input::Standby { on }) => self.set_standby(on, &mut out),
            (Role::Standby, other)
                if !matches!(other, Input::Maintenance { .. } | Input::Health { .. }) =>
            {
                self.in_standby(other)
            }
            (_, Input::Shutdown) => match self.role {
                Role::Primary => {
                    out.push(Action::Release(Addr::Primary));
                    out.push(Action::SendLeaving(Role::Primary));
                }
                Role::Monitor | Role::Booting => {
                    out.push(Action::StopMonitoring);
                    out.push(Action::Release(Addr::Monitor));
                    out.push(Action::SendLeaving(self.role));
                }
                // Mid-takeover both may be partly held: release both.
                Role::TakingOver => {
                    out.push(Action::Release(Addr::Primary));
                    out.push(Action::Release(Addr::Monitor));
                }
                Role::Joining | Role::Conflict | Role::Standby => {}
            },
            (_, Input::PeerLeaving { role, epoch }) if role == Role::Standby.code() => {
                self.peer_in_standby(epoch, &mut out)
            }
            (_, Input::PeerInStandby { epoch }) => self.peer_in_standby(epoch, &mut out),
            (_, Input::PeerLeaving { role, epoch }) => self.peer_leaving(role, epoch, &mut out),
            (_, Input::Contested { addr, lower_mac }) => self.contested(addr, lower_mac, &mut out),
            (_, Input::PeerSeen(p)) => self.peer_seen(p, &mut out),
            (_, Input::PeerSilent) => self.peer_silent(&mut out),
            (_, Input::TakenOver { epoch }) => self.taken_over(epoch, &mut out),
            (_, Input::LeaseRevoked { epoch }) => self.lease_revoked(epoch, &mut out),
            (_, Input::Maintenance { on, for_ }) => self.set_maintenance(on, for_, &mut out),
            (_, Input::Health { ok }) => self.set_health(ok, &mut out),
            (_, Input::Due(Timer::MaintenanceOver)) => self.maintenance_over(&mut out),
            (_, Input::Switchover) => self.switch_over(&mut out),
            (_, Input::NewerMonitor { epoch }) => self.newer_monitor(epoch, &mut out),
            (_, Input::PeerYielded) if self.takes_yield() => {
                // The peer is joining and holds nothing; its claim of P was never made.
                out.push(emit(
                    Event::PeerYielded,
                    "the joining peer leaves P to this host, whose data is newer: taking P without a fence",
                ));
                self.suspicion = None;
                self.take_over(&mut out);
            }
            (_, Input::Due(Timer::DefendWindow(addr))) => self.window_over(addr),
            (_, Input::Due(Timer::FenceDelay)) => self.fence_delay_over(&mut out),
            (_, Input::Due(Timer::Handover)) => self.handover_over(&mut out),
            (_, Input::Due(Timer::LeaseOver)) => self.lease_over(&mut out),
            (Role::Booting, Input::Revoked(r)) => self.revoked(r, &mut out),
            (Role::Joining, Input::Start) | (Role::Joining | Role::Conflict, Input::RetryDue) => {
                self.join(&mut out)
            }
            (
                Role::Joining | Role::Conflict,
                Input::JoinDone {
                    monitor,
                    primary,
                    peer,
                },
            ) => {
                for a in [monitor, primary, peer].iter().flatten() {
                    self.observe_epoch(a.epoch);
                }
                let standby = peer.filter(|p| {
                    p.role == Role::Standby.code()
                        && !p.holds(Addr::Primary)
                        && !p.holds(Addr::Monitor)
                });
                match (monitor, primary) {
                    (None, None) if standby.is_some() => {
                        // The peer is in standby: it holds nothing and fences nobody, and
                        // nobody serves P. Serve it alone (the claim's duplicate-address probe
                        // proves P silent first).
                        let node = standby.map_or(0, |p| p.node);
                        out.push(emit(
                            Event::JoinAnswered,
                            format!(
                                "the peer (node {node}) is in standby; M and P silent: serving P alone"
                            ),
                        ));
                        self.set_role(Role::Joining, &mut out);
                        out.push(Action::Claim(Addr::Primary));
                    }
                    (Some(m), None) if m.role != Role::Monitor.code() => {
                        // M is held by a host that is fencing or taking over (perhaps this
                        // one's old self): claiming P now could race its takeover. Wait.
                        let role = Role::from_code(m.role).map_or("unknown", Role::name);
                        out.push(emit(
                            Event::JoinAnswered,
                            format!(
                                "monitor node {} answers as {role}, not as monitor; P silent: joining again later",
                                m.node
                            ),
                        ));
                        self.set_role(Role::Joining, &mut out);
                        let d = self.backoff();
                        out.push(Action::Retry(d));
                    }
                    (Some(m), None)
                        if self.yielded
                            || (m.data() == std::cmp::Ordering::Greater && m.takes_yield()) =>
                    {
                        // A cold start: the monitor's data is newer than this host's, and
                        // serving this host's would make the copy run the wrong way. Once P
                        // is left to the monitor this host never claims it while joining: a
                        // `yield` delivered late must find this host holding nothing.
                        let detail = if m.data() == std::cmp::Ordering::Greater && m.takes_yield() {
                            out.push(Action::SendYield);
                            "holds newer data than this host; P silent: leaving P to it"
                        } else {
                            "was left P and has not taken it yet: waiting"
                        };
                        out.push(emit(
                            Event::JoinAnswered,
                            format!("monitor node {} (epoch {}) {detail}", m.node, m.epoch),
                        ));
                        self.yielded = true;
                        self.set_role(Role::Joining, &mut out);
                        let d = self.backoff();
                        out.push(Action::Retry(d));
                    }
                    (Some(m), None) => {
                        // Claim 11: a live monitor answered and P is silent: become primary.
                        out.push(emit(
                            Event::JoinAnswered,
                            format!(
                                "monitor node {} (epoch {}) answered; P silent",
                                m.node, m.epoch
                            ),
                        ));
                        self.set_role(Role::Joining, &mut out);
                        out.push(Action::Claim(Addr::Primary));
                    }
                    (Some(m), Some(p)) => {
                        out.push(emit(
                            Event::JoinAnswered,
                            format!(
                                "monitor node {} and primary node {} both answered: refusing to join",
                                m.node, p.node
                            ),
                        ));
                        if self.role != Role::Conflict {
                            self.set_role(Role::Conflict, &mut out);
                            out.push(Action::Hook(Hook::OnFault(Fault::Conflict)));
                        }
                        let d = self.backoff();
                        out.push(Action::Retry(d));
                    }
                    (None, primary) => {
                        // Claim 12: silence at M: the peer operates as primary (or nobody
                        // does yet, at cold start): become the monitor.
                        let detail = match primary {
                            Some(p) => {
                                format!("no monitor answered; primary node {} answers", p.node)
                            }
                            None => "no monitor answered; P silent too (cold start)".to_string(),
                        };
                        out.push(emit(Event::JoinSilent, detail));
                        self.set_role(Role::Joining, &mut out);
                        out.push(Action::Claim(Addr::Monitor));
                    }
                }
            }
            (Role::Joining, Input::Claimed { addr, ok: true }) => match addr {
                Addr::Primary => self.become_primary(&mut out),
                Addr::Monitor => {
                    out.push(emit(Event::AddressClaimed, "monitor address"));
                    self.armed = false;
                    self.set_role(Role::Monitor, &mut out);
                    out.push(Action::StartMonitoring);
                    out.push(Action::Hook(Hook::OnMonitor));
                }
            },
            (Role::Joining, Input::Claimed { addr, ok: false }) => {
                // Lost the race (cold start) or the address is held: rejoin after a pause.
                out.push(emit(
                    Event::AddressConflict,
                    format!("{addr:?} address is held by another host; rejoining"),
                ));
                let d = self.backoff();
                out.push(Action::Retry(d));
            }
            (
                Role::Monitor | Role::Booting,
                Input::Liveness(LivenessEvent::Recovered { after }),
            ) => self.recovered(
                format!("the primary answers in time again after {after} misses"),
                &mut out,
            ),
            (Role::Booting, Input::Liveness(LivenessEvent::Armed)) if !self.armed => {
                // The fence came from startup_grace and P answers for the first time.
                self.armed = true;
                self.recovered("the primary answers for the first time".into(), &mut out);
            }
            (
                Role::Monitor,
                Input::Liveness(LivenessEvent::Missed { .. } | LivenessEvent::Failed { .. }),
            ) if self.handover => {
                // The leaving primary released P: its first missed heartbeat confirms it.
                self.handover = false;
                self.take_over(&mut out);
            }
            (Role::Monitor, Input::Liveness(ev)) => match ev {
                LivenessEvent::Armed => {
                    self.armed = true;
                    self.attempt = 0;
                    if self.suspicion == Some(Suspicion::Grace) {
                        // P answers while startup_grace's suspicion waits for the self-check.
                        self.recovered("the primary answers for the first time".into(), &mut out);
                    }
                }
                LivenessEvent::Failed { consecutive } if self.armed && !self.peer_left => {
                    self.suspect(Suspicion::Misses(consecutive), &mut out)
                }
                // Never fence a primary that was never seen (the tracker should not report
                // this; the machine refuses it anyway), nor one that said it is stopping.
                LivenessEvent::Failed { .. }
                | LivenessEvent::Missed { .. }
                | LivenessEvent::Recovered { .. } => {}
            },
            (Role::Monitor, Input::GraceExpired) if !self.armed => {
                self.suspect(Suspicion::Grace, &mut out)
            }
            (Role::Monitor, Input::SelfChecked(result)) => self.self_checked(result, &mut out),
            (Role::Monitor, Input::RetryDue) if self.suspicion.is_some() => {
                out.push(Action::SelfCheck)
            }
            (Role::Booting, Input::BootAccepted) => self.boot_accepted = true,
            (
                Role::Booting,
                Input::BootDone {
                    action: BootAction::Off,
                    ok: true,
                },
            ) => {
                self.fence_confirmed = true;
                out.push(emit(
                    Event::FenceConfirmed,
                    "peer power state Off confirmed",
                ));
                self.take_over(&mut out);
            }
            (Role::Booting, Input::BootDone { action, ok: false }) => {
                // The attempt is over; if the peer answers again now, the power action did
                // not take: a recovery may cancel the retry.
                self.boot_accepted = false;
                let (event, fault) = if action == BootAction::Off {
                    (Event::FenceFailed, Fault::FenceFailed)
                } else {
                    (Event::BootFailed, Fault::BootFailed)
                };
                out.push(emit(event, format!("{} not confirmed", action.name())));
                out.push(Action::Hook(Hook::OnFault(fault)));
                if std::mem::take(&mut self.answered_in_attempt) {
                    // Found by the model check: P answered while the request was out, and
                    // the request did not take. Retrying would power off a primary that is
                    // serving; taking P unfenced would make two.
                    out.push(emit(
                        Event::FenceCancelled,
                        "the primary answered in time while the failed attempt was under way",
                    ));
                    self.attempt = 0;
                    self.set_role(Role::Monitor, &mut out);
                } else if action == BootAction::Off && self.policy.allow_unfenced {
                    out.push(emit(
                        Event::UnfencedTakeover,
                        "allow_unfenced_takeover = true: taking P although the fence failed",
                    ));
                    self.take_over(&mut out);
                } else {
                    // No confirmation, no takeover: retry with backoff, still holding M.
                    let d = self.backoff();
                    out.push(Action::Retry(d));
                }
            }
            (
                Role::Booting,
                Input::BootDone {
                    action: BootAction::Reboot,
                    ok: true,
                },
            ) => {
                // Recovery only: the primary restarts and rejoins (claim 11); stay monitor and
                // wait to see it answer again, with a fresh (disarmed) monitor.
                out.push(emit(
                    Event::BootDone,
                    "reboot accepted; waiting for the peer to rejoin",
                ));
                self.armed = false;
                self.set_role(Role::Monitor, &mut out);
                out.push(Action::StopMonitoring);
                out.push(Action::StartMonitoring);
            }
            (Role::Booting, Input::RetryDue)
                if self.pending_boot.is_none() && self.revoke.is_none() =>
            {
                self.request_boot(&mut out)
            }
            (
                Role::TakingOver,
                Input::Claimed {
                    addr: Addr::Primary,
                    ok: true,
                },
            ) => {
                self.become_primary(&mut out);
                // If the old primary is still running (a BMC that reported Off wrongly, a
                // leaving primary), it learns it is stale and steps down.
                out.push(Action::SendTakenOver);
                // Power the fenced host back on: it boots, joins, hears nobody at M and
                // becomes the monitor (claim 12).
                if std::mem::take(&mut self.fence_confirmed) {
                    out.push(emit(Event::BootRequested, "on"));
                    out.push(Action::Boot(BootAction::On));
                }
                if std::mem::take(&mut self.reset_after) {
                    self.start_reset(&mut out);
                }
            }
            (Role::Primary, Input::BootDone { action, ok }) if self.resetting => {
                self.reset_step(action, ok, &mut out)
            }
            (
                Role::TakingOver,
                Input::Claimed {
                    addr: Addr::Primary,
                    ok: false,
                },
            ) => {
                out.push(emit(
                    Event::AddressConflict,
                    "the primary address answers although its host was fenced or said it left",
                ));
                self.set_role(Role::Conflict, &mut out);
                out.push(Action::Hook(Hook::OnFault(Fault::Conflict)));
                let d = self.backoff();
                out.push(Action::Retry(d));
            }
            (_, Input::BootDone { action, ok }) => {
                out.push(emit(
                    Event::BootDone,
                    format!("{} {}", action.name(), if ok { "done" } else { "failed" }),
                ));
            }
            // Everything else is not meaningful in the current role and is ignored.
            _ => {}
        }
        out
    }
}
