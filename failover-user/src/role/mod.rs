//! The role state machine of docs/design.md ("Protocol"): pure code, inputs in, actions out.
//!
//! The runtime executes the actions in order and feeds their results back as inputs. Nothing
//! here does I/O, so every claim is testable without root. Two rules are enforced here by
//! construction: a monitor never claims P before a fence was confirmed (or the operator opted
//! out of fencing), and a joining host never claims P unless a live monitor answered at M while
//! P stayed silent.
use std::time::Duration;

use crate::{detector::LivenessEvent, event::Event};

/// A role (the state of the machine).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// After start: sends the join probe (second signal) to M and waits `join_timeout`.
    Joining,
    /// Holds P and serves.
    Primary,
    /// Holds M and signals P.
    Monitor,
    /// Boots (fences) the failed primary through its BMC.
    Booting,
    /// Releases M and claims P.
    TakingOver,
    /// Someone else answers on both P and M; holds nothing.
    Conflict,
}

impl Role {
    /// Lower-case name used in events, status and hook environments.
    pub fn name(self) -> &'static str {
        match self {
            Role::Joining => "joining",
            Role::Primary => "primary",
            Role::Monitor => "monitor",
            Role::Booting => "booting",
            Role::TakingOver => "taking_over",
            Role::Conflict => "conflict",
        }
    }

    /// The role with `code`, if any.
    pub fn from_code(code: u8) -> Option<Role> {
        [
            Role::Joining,
            Role::Primary,
            Role::Monitor,
            Role::Booting,
            Role::TakingOver,
            Role::Conflict,
        ]
        .into_iter()
        .find(|r| r.code() == code)
    }

    /// Code carried in heartbeat and join replies.
    pub fn code(self) -> u8 {
        match self {
            Role::Joining => 1,
            Role::Primary => 2,
            Role::Monitor => 3,
            Role::Booting => 4,
            Role::TakingOver => 5,
            Role::Conflict => 6,
        }
    }
}

/// One of the two floating addresses.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    /// P, the service address.
    Primary,
    /// M, the monitor address.
    Monitor,
}

/// What the boot method is asked to do to the peer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BootAction {
    /// Power off and confirm it is off (the fence).
    Off,
    /// Power on.
    On,
    /// Restart (recovery without takeover).
    Reboot,
}

impl BootAction {
    /// The word passed to a boot command.
    pub fn name(self) -> &'static str {
        match self {
            BootAction::Off => "off",
            BootAction::On => "on",
            BootAction::Reboot => "reboot",
        }
    }
}

/// An operator hook.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Hook {
    /// After becoming primary.
    OnPrimary,
    /// After becoming monitor.
    OnMonitor,
    /// On a fault.
    OnFault,
}

/// Who answered a join probe.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Responder's role code.
    pub role: u8,
    /// Responder's epoch.
    pub epoch: u64,
    /// Responder's node id.
    pub node: u32,
}

/// Inputs to the machine.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The daemon started (after boot).
    Start,
    /// The join period ended: who answered at M and at P.
    JoinDone {
        /// Answer from M, if any.
        monitor: Option<Answer>,
        /// Answer from P, if any.
        primary: Option<Answer>,
    },
    /// The liveness tracker's conclusion about P.
    Liveness(LivenessEvent),
    /// `startup_grace` ran out without P ever answering.
    GraceExpired,
    /// A boot action finished. For `Off`, `ok` means power state Off was confirmed.
    BootDone {
        /// Which action.
        action: BootAction,
        /// Done (and confirmed).
        ok: bool,
    },
    /// An address claim finished; `ok = false` is a conflict (someone else holds it).
    Claimed {
        /// Which address.
        addr: Addr,
        /// Claimed without conflict.
        ok: bool,
    },
    /// A scheduled retry is due.
    RetryDue,
    /// Clean shutdown.
    Shutdown,
}

/// An event worth recording, with its human detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The stable event.
    pub event: Event,
    /// Human detail.
    pub detail: String,
}

/// Actions for the runtime, executed in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the join probe to M (and P) and report `JoinDone` after `join_timeout`, or after
    /// twice that when `doubled`.
    SendJoin {
        /// Listen for two join periods (the preferred primary's first join).
        doubled: bool,
    },
    /// Claim an address (duplicate-address probe, add, announce); report `Claimed`.
    Claim(Addr),
    /// Release an address.
    Release(Addr),
    /// Start signalling P and judging replies; arm the startup grace timer.
    StartMonitoring,
    /// Stop signalling P.
    StopMonitoring,
    /// Run a boot action on the peer; report `BootDone`.
    Boot(BootAction),
    /// Run a hook.
    Hook(Hook),
    /// Increment and persist the epoch.
    BumpEpoch,
    /// Report `RetryDue` after this delay.
    Retry(Duration),
    /// Record an event.
    Emit(Notice),
}

/// What the operator configured that the protocol rules depend on.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Fence and take P over (true) or only reboot the primary (false).
    pub takeover: bool,
    /// No fencing at all (boot method "none").
    pub no_fence: bool,
    /// Take P even when the fence failed (explicit operator opt-out).
    pub allow_unfenced: bool,
    /// First retry delay.
    pub retry: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// This host is the preferred primary (`preferred_primary`): its first join listens
    /// twice as long, so that at a cold start the other host claims M first and this one
    /// hears it and becomes primary.
    pub preferred_primary: bool,
}

/// The state machine.
#[derive(Clone, Debug)]
pub struct Machine {
    policy: Policy,
    role: Role,
    epoch: u64,
    armed: bool,
    attempt: u32,
    fence_confirmed: bool,
    /// The boot action awaiting its result; results of anything else are not acted on.
    pending_boot: Option<BootAction>,
    /// A join was sent since start.
    joined: bool,
}

fn emit(event: Event, detail: impl Into<String>) -> Action {
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
            joined: false,
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

    /// Raises the epoch to one the peer reported (join replies, the monitor's epoch probes),
    /// so that the next promotion anywhere goes above every epoch seen so far and a stale
    /// primary is recognisable by its lower epoch.
    pub fn observe_epoch(&mut self, epoch: u64) {
        self.epoch = self.epoch.max(epoch);
    }

    fn set_role(&mut self, to: Role, out: &mut Vec<Action>) {
        if to != self.role {
            out.push(emit(
                Event::RoleChanged,
                format!("{} -> {}", self.role.name(), to.name()),
            ));
            self.role = to;
        }
    }

    fn backoff(&mut self) -> Duration {
        let d = self
            .policy
            .retry
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.policy.retry_max);
        self.attempt += 1;
        d
    }

    fn join(&mut self, out: &mut Vec<Action>) {
        out.push(emit(
            Event::JoinProbeSent,
            "second signal to the monitor address",
        ));
        out.push(Action::SendJoin {
            doubled: !self.joined && self.policy.preferred_primary,
        });
        self.joined = true;
    }

    /// The primary failed (or never answered within the grace period): boot it.
    fn start_boot(&mut self, why: String, out: &mut Vec<Action>) {
        out.push(emit(Event::PrimaryFailed, why));
        out.push(Action::StopMonitoring);
        self.set_role(Role::Booting, out);
        self.attempt = 0;
        self.fence_confirmed = false;
        if self.policy.takeover && self.policy.no_fence {
            out.push(emit(
                Event::FenceSkipped,
                "boot.method = none with allow_unfenced_takeover: taking P without a fence",
            ));
            self.take_over(out);
            return;
        }
        self.request_boot(out);
    }

    fn request_boot(&mut self, out: &mut Vec<Action>) {
        let action = if self.policy.takeover {
            BootAction::Off
        } else {
            BootAction::Reboot
        };
        self.pending_boot = Some(action);
        out.push(emit(Event::BootRequested, action.name()));
        out.push(Action::Boot(action));
    }

    fn take_over(&mut self, out: &mut Vec<Action>) {
        self.set_role(Role::TakingOver, out);
        // The runtime reports `address_released` once the address is actually gone.
        out.push(Action::Release(Addr::Monitor));
        out.push(Action::Claim(Addr::Primary));
    }

    fn become_primary(&mut self, out: &mut Vec<Action>) {
        self.epoch += 1;
        out.push(Action::BumpEpoch);
        out.push(emit(Event::AddressClaimed, "primary address"));
        self.set_role(Role::Primary, out);
        out.push(Action::Hook(Hook::OnPrimary));
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
            (_, Input::Shutdown) => {
                match self.role {
                    Role::Primary => out.push(Action::Release(Addr::Primary)),
                    Role::Monitor | Role::Booting => {
                        out.push(Action::StopMonitoring);
                        out.push(Action::Release(Addr::Monitor));
                    }
                    // Mid-takeover both may be partly held: release both.
                    Role::TakingOver => {
                        out.push(Action::Release(Addr::Primary));
                        out.push(Action::Release(Addr::Monitor));
                    }
                    Role::Joining | Role::Conflict => {}
                }
            }
            (Role::Joining, Input::Start) | (Role::Joining | Role::Conflict, Input::RetryDue) => {
                self.join(&mut out)
            }
            (Role::Joining | Role::Conflict, Input::JoinDone { monitor, primary }) => {
                for a in [monitor, primary].iter().flatten() {
                    self.observe_epoch(a.epoch);
                }
                match (monitor, primary) {
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
                            out.push(Action::Hook(Hook::OnFault));
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
            (Role::Monitor, Input::Liveness(ev)) => match ev {
                LivenessEvent::Armed => {
                    self.armed = true;
                    self.attempt = 0;
                }
                LivenessEvent::Failed { consecutive } if self.armed => self.start_boot(
                    format!("{consecutive} consecutive probes without a reply in time"),
                    &mut out,
                ),
                // Never fence a primary that was never seen (the tracker should not report
                // this; the machine refuses it anyway).
                LivenessEvent::Failed { .. }
                | LivenessEvent::Missed { .. }
                | LivenessEvent::Recovered { .. } => {}
            },
            (Role::Monitor, Input::GraceExpired) if !self.armed => self.start_boot(
                "the primary address never answered within startup_grace".into(),
                &mut out,
            ),
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
                let event = if action == BootAction::Off {
                    Event::FenceFailed
                } else {
                    Event::BootFailed
                };
                out.push(emit(event, format!("{} not confirmed", action.name())));
                out.push(Action::Hook(Hook::OnFault));
                if action == BootAction::Off && self.policy.allow_unfenced {
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
                // wait to see it answer again.
                out.push(emit(
                    Event::BootDone,
                    "reboot accepted; waiting for the peer to rejoin",
                ));
                self.armed = false;
                self.set_role(Role::Monitor, &mut out);
                out.push(Action::StartMonitoring);
            }
            (Role::Booting, Input::RetryDue) if self.pending_boot.is_none() => {
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
                // Power the fenced host back on: it boots, joins, hears nobody at M and
                // becomes the monitor (claim 12).
                if self.fence_confirmed {
                    out.push(emit(Event::BootRequested, "on"));
                    out.push(Action::Boot(BootAction::On));
                }
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
                    "the primary address answers although its host was fenced",
                ));
                self.set_role(Role::Conflict, &mut out);
                out.push(Action::Hook(Hook::OnFault));
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

#[cfg(test)]
mod tests;
