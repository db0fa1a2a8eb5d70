//! The role state machine of DESIGN.md section 2: pure code, inputs in, actions out.
//!
//! The runtime executes the actions in order and feeds their results back as inputs. Nothing
//! here does I/O, so every claim is testable without root. Two rules are enforced here by
//! construction: a monitor never claims P before a fence was confirmed (or the operator opted
//! out of fencing), and a joining host never claims P unless a live monitor answered at M while
//! P stayed silent.
use std::time::Duration;

use crate::detector::LivenessEvent;

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

/// An event worth recording (see docs for the stable names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Stable event name.
    pub name: &'static str,
    /// Human detail.
    pub detail: String,
}

/// Actions for the runtime, executed in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the join probe to M (and P) and report `JoinDone` after `join_timeout`.
    SendJoin,
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
    Emit(Event),
}

/// Settings the machine needs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Settings {
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
}

/// The state machine.
#[derive(Clone, Debug)]
pub struct Machine {
    settings: Settings,
    role: Role,
    epoch: u64,
    armed: bool,
    attempt: u32,
    fence_confirmed: bool,
    /// The boot action awaiting its result; results of anything else are not acted on.
    pending_boot: Option<BootAction>,
}

fn emit(name: &'static str, detail: impl Into<String>) -> Action {
    Action::Emit(Event {
        name,
        detail: detail.into(),
    })
}

impl Machine {
    /// A machine in `Joining` with the persisted `epoch`.
    pub fn new(settings: Settings, epoch: u64) -> Machine {
        Machine {
            settings,
            role: Role::Joining,
            epoch,
            armed: false,
            attempt: 0,
            fence_confirmed: false,
            pending_boot: None,
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
                "role_changed",
                format!("{} -> {}", self.role.name(), to.name()),
            ));
            self.role = to;
        }
    }

    fn backoff(&mut self) -> Duration {
        let d = self
            .settings
            .retry
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.settings.retry_max);
        self.attempt += 1;
        d
    }

    fn join(&mut self, out: &mut Vec<Action>) {
        out.push(emit(
            "join_probe_sent",
            "second signal to the monitor address",
        ));
        out.push(Action::SendJoin);
    }

    /// The primary failed (or never answered within the grace period): boot it.
    fn start_boot(&mut self, why: String, out: &mut Vec<Action>) {
        out.push(emit("primary_failed", why));
        out.push(Action::StopMonitoring);
        self.set_role(Role::Booting, out);
        self.attempt = 0;
        self.fence_confirmed = false;
        if self.settings.takeover && self.settings.no_fence {
            out.push(emit(
                "fence_skipped",
                "boot.method = none with allow_unfenced_takeover: taking P without a fence",
            ));
            self.take_over(out);
            return;
        }
        self.request_boot(out);
    }

    fn request_boot(&mut self, out: &mut Vec<Action>) {
        let action = if self.settings.takeover {
            BootAction::Off
        } else {
            BootAction::Reboot
        };
        self.pending_boot = Some(action);
        out.push(emit("boot_requested", action.name()));
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
        out.push(emit("address_claimed", "primary address"));
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
                        "boot_done",
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
                            "join_answered",
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
                            "join_answered",
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
                        out.push(emit("join_silent", detail));
                        self.set_role(Role::Joining, &mut out);
                        out.push(Action::Claim(Addr::Monitor));
                    }
                }
            }
            (Role::Joining, Input::Claimed { addr, ok: true }) => match addr {
                Addr::Primary => self.become_primary(&mut out),
                Addr::Monitor => {
                    out.push(emit("address_claimed", "monitor address"));
                    self.armed = false;
                    self.set_role(Role::Monitor, &mut out);
                    out.push(Action::StartMonitoring);
                    out.push(Action::Hook(Hook::OnMonitor));
                }
            },
            (Role::Joining, Input::Claimed { addr, ok: false }) => {
                // Lost the race (cold start) or the address is held: rejoin after a pause.
                out.push(emit(
                    "address_conflict",
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
                out.push(emit("fence_confirmed", "peer power state Off confirmed"));
                self.take_over(&mut out);
            }
            (Role::Booting, Input::BootDone { action, ok: false }) => {
                let name = if action == BootAction::Off {
                    "fence_failed"
                } else {
                    "boot_failed"
                };
                out.push(emit(name, format!("{} not confirmed", action.name())));
                out.push(Action::Hook(Hook::OnFault));
                if action == BootAction::Off && self.settings.allow_unfenced {
                    out.push(emit(
                        "unfenced_takeover",
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
                    "boot_done",
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
                    out.push(emit("boot_requested", "on"));
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
                    "address_conflict",
                    "the primary address answers although its host was fenced",
                ));
                self.set_role(Role::Conflict, &mut out);
                out.push(Action::Hook(Hook::OnFault));
                let d = self.backoff();
                out.push(Action::Retry(d));
            }
            (_, Input::BootDone { action, ok }) => {
                out.push(emit(
                    "boot_done",
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
mod tests {
    use super::*;
    use Input::*;

    const S: Settings = Settings {
        takeover: true,
        no_fence: false,
        allow_unfenced: false,
        retry: Duration::from_secs(1),
        retry_max: Duration::from_secs(8),
    };

    // Epoch 0, so that the epoch a test checks is this host's own count; epochs observed
    // from the peer have their own test.
    const PEER: Answer = Answer {
        role: 2,
        epoch: 0,
        node: 2,
    };

    fn names(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Emit(e) => e.name.to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// Feeds `inputs` and returns (role after each input, all actions).
    fn run(settings: Settings, inputs: &[Input]) -> (Machine, Vec<Role>, Vec<Action>) {
        let mut m = Machine::new(settings, 0);
        let mut roles = Vec::new();
        let mut all = Vec::new();
        for i in inputs {
            all.extend(m.step(*i));
            roles.push(m.role());
        }
        (m, roles, all)
    }

    fn monitor_armed() -> Vec<Input> {
        vec![
            Start,
            JoinDone {
                monitor: None,
                primary: Some(PEER),
            },
            Claimed {
                addr: Addr::Monitor,
                ok: true,
            },
            Liveness(LivenessEvent::Armed),
        ]
    }

    fn failed() -> Input {
        Liveness(LivenessEvent::Failed { consecutive: 10 })
    }

    #[test]
    fn claim_11_monitor_answers_so_become_primary() {
        let (m, roles, acts) = run(
            S,
            &[
                Start,
                JoinDone {
                    monitor: Some(PEER),
                    primary: None,
                },
                Claimed {
                    addr: Addr::Primary,
                    ok: true,
                },
            ],
        );
        assert_eq!(roles, vec![Role::Joining, Role::Joining, Role::Primary]);
        let n = names(&acts);
        assert_eq!(
            n,
            vec![
                "join_probe_sent",
                "SendJoin",
                "join_answered",
                "Claim(Primary)",
                "BumpEpoch",
                "address_claimed",
                "role_changed",
                "Hook(OnPrimary)"
            ]
        );
        assert_eq!(m.epoch(), 1, "promotion bumps the epoch");
    }

    #[test]
    fn claim_12_silence_so_become_monitor() {
        for primary in [None, Some(PEER)] {
            let (_, roles, acts) = run(
                S,
                &[
                    Start,
                    JoinDone {
                        monitor: None,
                        primary,
                    },
                    Claimed {
                        addr: Addr::Monitor,
                        ok: true,
                    },
                ],
            );
            assert_eq!(roles.last(), Some(&Role::Monitor));
            let n = names(&acts);
            assert!(n.contains(&"join_silent".into()));
            assert!(n.contains(&"Claim(Monitor)".into()));
            assert!(n.contains(&"StartMonitoring".into()));
            assert!(!n.contains(&"Claim(Primary)".into()));
        }
    }

    #[test]
    fn conflict_when_both_answer_and_no_claim() {
        let both = JoinDone {
            monitor: Some(PEER),
            primary: Some(PEER),
        };
        let (m, roles, acts) = run(S, &[Start, both, RetryDue, both]);
        assert_eq!(
            roles,
            vec![
                Role::Joining,
                Role::Conflict,
                Role::Conflict,
                Role::Conflict
            ]
        );
        let n = names(&acts);
        assert!(!n.iter().any(|a| a.starts_with("Claim")), "{n:?}");
        assert_eq!(n.iter().filter(|a| *a == "Hook(OnFault)").count(), 1);
        assert_eq!(m.epoch(), 0);
        // When it clears, the host joins normally.
        let mut m = m;
        let a = names(&m.step(JoinDone {
            monitor: None,
            primary: Some(PEER),
        }));
        assert!(a.contains(&"Claim(Monitor)".into()), "{a:?}");
    }

    #[test]
    fn cold_start_loser_rejoins_and_becomes_primary() {
        let (m, roles, acts) = run(
            S,
            &[
                Start,
                JoinDone {
                    monitor: None,
                    primary: None,
                },
                // The other host won the duplicate-address race for M.
                Claimed {
                    addr: Addr::Monitor,
                    ok: false,
                },
                RetryDue,
                JoinDone {
                    monitor: Some(PEER),
                    primary: None,
                },
                Claimed {
                    addr: Addr::Primary,
                    ok: true,
                },
            ],
        );
        assert_eq!(roles.last(), Some(&Role::Primary));
        let n = names(&acts);
        assert!(n.contains(&"address_conflict".into()));
        assert!(n.contains(&"Retry(1s)".into()));
        assert_eq!(m.epoch(), 1);
    }

    #[test]
    fn never_fence_a_primary_not_yet_seen() {
        let mut inputs = monitor_armed();
        inputs.pop(); // no Armed
        inputs.push(failed());
        let (_, roles, acts) = run(S, &inputs);
        assert_eq!(roles.last(), Some(&Role::Monitor));
        assert!(!names(&acts).iter().any(|a| a.starts_with("Boot")));
    }

    #[test]
    fn startup_grace_fences_an_unseen_peer_but_not_a_seen_one() {
        let mut inputs = monitor_armed();
        inputs.pop();
        inputs.push(GraceExpired);
        let (_, roles, acts) = run(S, &inputs);
        assert_eq!(roles.last(), Some(&Role::Booting));
        assert!(names(&acts).contains(&"Boot(Off)".into()));

        let mut inputs = monitor_armed();
        inputs.push(GraceExpired);
        let (_, roles, _) = run(S, &inputs);
        assert_eq!(roles.last(), Some(&Role::Monitor));
    }

    #[test]
    fn never_claim_p_before_the_fence_is_confirmed() {
        let mut inputs = monitor_armed();
        inputs.push(failed());
        let (mut m, roles, acts) = run(S, &inputs);
        assert_eq!(roles.last(), Some(&Role::Booting));
        let n = names(&acts);
        assert!(n.contains(&"primary_failed".into()));
        assert!(n.contains(&"Boot(Off)".into()));
        assert!(!n.contains(&"Claim(Primary)".into()));
        // Unrelated inputs while booting claim nothing.
        for i in [RetryDue, Liveness(LivenessEvent::Armed), GraceExpired] {
            let a = names(&m.step(i));
            assert!(!a.contains(&"Claim(Primary)".into()), "{i:?}: {a:?}");
        }
        let a = names(&m.step(BootDone {
            action: BootAction::Off,
            ok: true,
        }));
        assert_eq!(
            a,
            vec![
                "fence_confirmed",
                "role_changed",
                "Release(Monitor)",
                "Claim(Primary)"
            ]
        );
        let a = names(&m.step(Claimed {
            addr: Addr::Primary,
            ok: true,
        }));
        assert!(
            a.contains(&"Boot(On)".into()),
            "fenced host powered back on: {a:?}"
        );
        assert_eq!(m.role(), Role::Primary);
        assert_eq!(m.epoch(), 1);
    }

    #[test]
    fn bmc_failure_means_no_takeover_and_retries_with_backoff() {
        let mut inputs = monitor_armed();
        inputs.push(failed());
        let (mut m, _, _) = run(S, &inputs);
        let mut delays = Vec::new();
        for _ in 0..6 {
            let a = m.step(BootDone {
                action: BootAction::Off,
                ok: false,
            });
            let n = names(&a);
            assert!(n.contains(&"fence_failed".into()));
            assert!(n.contains(&"Hook(OnFault)".into()));
            assert!(!n.contains(&"Claim(Primary)".into()));
            delays.extend(a.iter().filter_map(|x| match x {
                Action::Retry(d) => Some(d.as_secs()),
                _ => None,
            }));
            assert_eq!(
                names(&m.step(RetryDue)),
                vec!["boot_requested", "Boot(Off)"]
            );
            assert_eq!(m.role(), Role::Booting);
        }
        assert_eq!(delays, vec![1, 2, 4, 8, 8, 8]);
    }

    #[test]
    fn unfenced_opt_in_takes_over_after_a_failed_fence() {
        let s = Settings {
            allow_unfenced: true,
            ..S
        };
        let mut inputs = monitor_armed();
        inputs.push(failed());
        inputs.push(BootDone {
            action: BootAction::Off,
            ok: false,
        });
        let (_, roles, acts) = run(s, &inputs);
        assert_eq!(roles.last(), Some(&Role::TakingOver));
        let n = names(&acts);
        assert!(n.contains(&"unfenced_takeover".into()));

        let s = Settings {
            no_fence: true,
            allow_unfenced: true,
            ..S
        };
        let mut inputs = monitor_armed();
        inputs.push(failed());
        let (_, _, acts) = run(s, &inputs);
        let n = names(&acts);
        assert!(n.contains(&"fence_skipped".into()));
        assert!(!n.contains(&"Boot(Off)".into()));
        assert!(n.contains(&"Claim(Primary)".into()));
    }

    #[test]
    fn recovery_only_reboots_and_stays_monitor() {
        let s = Settings {
            takeover: false,
            ..S
        };
        let mut inputs = monitor_armed();
        inputs.push(failed());
        inputs.push(BootDone {
            action: BootAction::Reboot,
            ok: true,
        });
        let (m, roles, acts) = run(s, &inputs);
        assert_eq!(roles.last(), Some(&Role::Monitor));
        assert!(!m.armed(), "waits to see the rebooted peer answer again");
        let n = names(&acts);
        assert!(n.contains(&"Boot(Reboot)".into()));
        assert!(!n.contains(&"Boot(Off)".into()));
        assert!(!n.iter().any(|a| a == "Claim(Primary)"));
        assert_eq!(n.iter().filter(|a| *a == "StartMonitoring").count(), 2);
    }

    #[test]
    fn takeover_conflict_goes_to_conflict() {
        let mut inputs = monitor_armed();
        inputs.push(failed());
        inputs.push(BootDone {
            action: BootAction::Off,
            ok: true,
        });
        inputs.push(Claimed {
            addr: Addr::Primary,
            ok: false,
        });
        let (m, roles, _) = run(S, &inputs);
        assert_eq!(roles.last(), Some(&Role::Conflict));
        assert_eq!(m.epoch(), 0);
    }

    #[test]
    fn shutdown_releases_what_is_held() {
        let (mut m, _, _) = run(S, &monitor_armed());
        assert_eq!(
            names(&m.step(Shutdown)),
            vec!["StopMonitoring", "Release(Monitor)"]
        );
        let (mut m, _, _) = run(
            S,
            &[
                Start,
                JoinDone {
                    monitor: Some(PEER),
                    primary: None,
                },
                Claimed {
                    addr: Addr::Primary,
                    ok: true,
                },
            ],
        );
        assert_eq!(names(&m.step(Shutdown)), vec!["Release(Primary)"]);
    }

    /// Random input sequences: a monitor only ever claims P after a confirmed fence (or an
    /// explicit opt-out), and a joining host only after an answer at M with P silent.
    #[test]
    fn random_inputs_never_claim_p_unsafely() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let pool = [
            Start,
            JoinDone {
                monitor: None,
                primary: None,
            },
            JoinDone {
                monitor: None,
                primary: Some(PEER),
            },
            JoinDone {
                monitor: Some(PEER),
                primary: None,
            },
            JoinDone {
                monitor: Some(PEER),
                primary: Some(PEER),
            },
            Liveness(LivenessEvent::Armed),
            Liveness(LivenessEvent::Missed { consecutive: 1 }),
            failed(),
            GraceExpired,
            BootDone {
                action: BootAction::Off,
                ok: true,
            },
            BootDone {
                action: BootAction::Off,
                ok: false,
            },
            BootDone {
                action: BootAction::Reboot,
                ok: true,
            },
            BootDone {
                action: BootAction::On,
                ok: true,
            },
            Claimed {
                addr: Addr::Primary,
                ok: true,
            },
            Claimed {
                addr: Addr::Primary,
                ok: false,
            },
            Claimed {
                addr: Addr::Monitor,
                ok: true,
            },
            Claimed {
                addr: Addr::Monitor,
                ok: false,
            },
            RetryDue,
        ];
        for takeover in [true, false] {
            let s = Settings { takeover, ..S };
            for _ in 0..2000 {
                let mut m = Machine::new(s, 0);
                let mut last_fence_ok = false;
                for _ in 0..40 {
                    let i = pool[rng.gen_range(0..pool.len())];
                    let role_before = m.role();
                    let acts = m.step(i);
                    if matches!(
                        i,
                        BootDone {
                            action: BootAction::Off,
                            ok: true
                        }
                    ) && role_before == Role::Booting
                    {
                        last_fence_ok = true;
                    }
                    let last_join_ok = matches!(
                        i,
                        JoinDone {
                            monitor: Some(_),
                            primary: None
                        }
                    );
                    if acts.contains(&Action::Claim(Addr::Primary)) {
                        assert!(
                            takeover
                                || role_before == Role::Joining
                                || role_before == Role::Conflict,
                            "recovery-only never takes P from a monitor"
                        );
                        match role_before {
                            Role::Joining | Role::Conflict => {
                                assert!(last_join_ok, "join claim without M answering: {i:?}")
                            }
                            _ => assert!(
                                last_fence_ok,
                                "claim of P without a confirmed fence after {i:?}"
                            ),
                        }
                    }
                    if m.role() == Role::Monitor {
                        last_fence_ok = false;
                    }
                }
            }
        }
    }

    #[test]
    fn promotion_goes_above_every_epoch_seen() {
        // Claim 11 after hearing a monitor at epoch 7: the new primary takes epoch 8.
        let seen = Answer { epoch: 7, ..PEER };
        let (m, _, _) = run(
            S,
            &[
                Start,
                JoinDone {
                    monitor: Some(seen),
                    primary: None,
                },
                Claimed {
                    addr: Addr::Primary,
                    ok: true,
                },
            ],
        );
        assert_eq!(m.epoch(), 8);
        // A monitor that observed the primary at epoch 5 takes over at 6; a lower report
        // never lowers it.
        let (mut m, _, _) = run(S, &monitor_armed());
        m.observe_epoch(5);
        m.observe_epoch(2);
        m.step(failed());
        m.step(BootDone {
            action: BootAction::Off,
            ok: true,
        });
        m.step(Claimed {
            addr: Addr::Primary,
            ok: true,
        });
        assert_eq!(m.epoch(), 6);
    }
}
