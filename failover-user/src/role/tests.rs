//! Table tests of the role machine: every row of the protocol, and random input sequences.
use super::*;
use Input::*;

pub(super) const S: Policy = Policy {
    takeover: true,
    no_fence: false,
    lease_fence: false,
    allow_unfenced: false,
    retry: Duration::from_secs(1),
    retry_max: Duration::from_secs(8),
    preferred_primary: false,
    recheck: Duration::from_millis(500),
    node_id: 1,
    fence_delay: Duration::ZERO,
    handover_window: Duration::from_millis(14),
};

// Epoch 0, so that the epoch a test checks is this host's own count; epochs observed
// from the peer have their own test.
pub(super) const PEER: Answer = Answer {
    role: 2,
    epoch: 0,
    node: 2,
    flags: 0,
};

/// The peer answering at M, as monitor.
pub(super) const MON: Answer = Answer { role: 3, ..PEER };

pub(super) fn names(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Emit(e) => e.event.name().to_string(),
            Action::SendJoin { .. } => "SendJoin".to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

/// Feeds `inputs` and returns (role after each input, all actions).
pub(super) fn run(policy: Policy, inputs: &[Input]) -> (Machine, Vec<Role>, Vec<Action>) {
    let mut m = Machine::new(policy, 0);
    let mut roles = Vec::new();
    let mut all = Vec::new();
    for i in inputs {
        all.extend(m.step(*i));
        roles.push(m.role());
    }
    (m, roles, all)
}

/// A machine that joined as primary (the monitor answered at M, P silent).
pub(super) fn primary() -> Machine {
    let (m, _, _) = run(
        S,
        &[
            Start,
            JoinDone {
                monitor: Some(MON),
                primary: None,
                peer: None,
            },
            Claimed {
                addr: Addr::Primary,
                ok: true,
            },
        ],
    );
    assert_eq!(m.role(), Role::Primary);
    m
}

pub(super) fn monitor_armed() -> Vec<Input> {
    vec![
        Start,
        JoinDone {
            monitor: None,
            primary: Some(PEER),
            peer: None,
        },
        Claimed {
            addr: Addr::Monitor,
            ok: true,
        },
        Liveness(LivenessEvent::Armed),
    ]
}

/// The self-check before a fence passes (a witness answered).
pub(super) fn passed() -> Input {
    SelfChecked(SelfCheck::Passed { answered: 1 })
}

pub(super) fn failed() -> Input {
    Liveness(LivenessEvent::Failed { consecutive: 10 })
}

#[test]
fn claim_11_monitor_answers_so_become_primary() {
    let (m, roles, acts) = run(
        S,
        &[
            Start,
            JoinDone {
                monitor: Some(MON),
                primary: None,
                peer: None,
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
                    peer: None,
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
        monitor: Some(MON),
        primary: Some(PEER),
        peer: None,
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
    assert_eq!(
        n.iter().filter(|a| *a == "Hook(OnFault(Conflict))").count(),
        1
    );
    assert_eq!(m.epoch(), 0);
    // When it clears, the host joins normally.
    let mut m = m;
    let a = names(&m.step(JoinDone {
        monitor: None,
        primary: Some(PEER),
        peer: None,
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
                peer: None,
            },
            // The other host won the duplicate-address race for M.
            Claimed {
                addr: Addr::Monitor,
                ok: false,
            },
            RetryDue,
            JoinDone {
                monitor: Some(MON),
                primary: None,
                peer: None,
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
    inputs.push(passed());
    let (_, roles, acts) = run(S, &inputs);
    assert_eq!(roles.last(), Some(&Role::Monitor));
    assert!(!names(&acts).iter().any(|a| a.starts_with("Boot")));
}

#[test]
fn startup_grace_fences_an_unseen_peer_but_not_a_seen_one() {
    let mut inputs = monitor_armed();
    inputs.pop();
    inputs.push(GraceExpired);
    inputs.push(passed());
    let (_, roles, acts) = run(S, &inputs);
    assert_eq!(roles.last(), Some(&Role::Booting));
    assert!(names(&acts).contains(&"Boot(Off)".into()));

    let mut inputs = monitor_armed();
    inputs.push(GraceExpired);
    inputs.push(passed());
    let (_, roles, _) = run(S, &inputs);
    assert_eq!(roles.last(), Some(&Role::Monitor));
}

#[test]
fn never_claim_p_before_the_fence_is_confirmed() {
    let mut inputs = monitor_armed();
    inputs.push(failed());
    inputs.push(passed());
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
            "StopMonitoring",
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
    inputs.push(passed());
    let (mut m, _, _) = run(S, &inputs);
    let mut delays = Vec::new();
    for _ in 0..6 {
        let a = m.step(BootDone {
            action: BootAction::Off,
            ok: false,
        });
        let n = names(&a);
        assert!(n.contains(&"fence_failed".into()));
        assert!(n.contains(&"Hook(OnFault(FenceFailed))".into()));
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
    let s = Policy {
        allow_unfenced: true,
        ..S
    };
    let mut inputs = monitor_armed();
    inputs.push(failed());
    inputs.push(passed());
    inputs.push(BootDone {
        action: BootAction::Off,
        ok: false,
    });
    let (_, roles, acts) = run(s, &inputs);
    assert_eq!(roles.last(), Some(&Role::TakingOver));
    let n = names(&acts);
    assert!(n.contains(&"unfenced_takeover".into()));

    let s = Policy {
        no_fence: true,
        allow_unfenced: true,
        ..S
    };
    let mut inputs = monitor_armed();
    inputs.push(failed());
    inputs.push(passed());
    let (_, _, acts) = run(s, &inputs);
    let n = names(&acts);
    assert!(n.contains(&"fence_skipped".into()));
    assert!(!n.contains(&"Boot(Off)".into()));
    assert!(n.contains(&"Claim(Primary)".into()));
}

#[test]
fn recovery_only_reboots_and_stays_monitor() {
    let s = Policy {
        takeover: false,
        ..S
    };
    let mut inputs = monitor_armed();
    inputs.push(failed());
    inputs.push(passed());
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
    inputs.push(passed());
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
        vec!["StopMonitoring", "Release(Monitor)", "SendLeaving(Monitor)"]
    );
    let (mut m, _, _) = run(
        S,
        &[
            Start,
            JoinDone {
                monitor: Some(MON),
                primary: None,
                peer: None,
            },
            Claimed {
                addr: Addr::Primary,
                ok: true,
            },
        ],
    );
    assert_eq!(
        names(&m.step(Shutdown)),
        vec!["Release(Primary)", "SendLeaving(Primary)"]
    );
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
            peer: None,
        },
        JoinDone {
            monitor: None,
            primary: Some(PEER),
            peer: None,
        },
        JoinDone {
            monitor: Some(MON),
            primary: None,
            peer: None,
        },
        JoinDone {
            monitor: Some(MON),
            primary: Some(PEER),
            peer: None,
        },
        Liveness(LivenessEvent::Armed),
        Liveness(LivenessEvent::Missed { consecutive: 1 }),
        Liveness(LivenessEvent::Recovered { after: 10 }),
        failed(),
        GraceExpired,
        passed(),
        SelfChecked(SelfCheck::NoCarrier),
        SelfChecked(SelfCheck::WitnessesSilent {
            answered: 0,
            needed: 1,
        }),
        BootAccepted,
        PeerLeaving { role: 2, epoch: 3 },
        PeerLeaving { role: 3, epoch: 3 },
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
        Contested {
            addr: Addr::Primary,
            lower_mac: true,
        },
        Contested {
            addr: Addr::Monitor,
            lower_mac: false,
        },
        PeerSeen(Answer {
            flags: crate::role::FLAG_HOLDS_P,
            epoch: 9,
            ..PEER
        }),
        PeerSeen(Answer {
            flags: crate::role::FLAG_HOLDS_M,
            ..MON
        }),
        PeerSilent,
        TakenOver { epoch: 9 },
        NewerMonitor { epoch: 9 },
        PeerYielded,
        Due(Timer::DefendWindow(Addr::Primary)),
        Due(Timer::DefendWindow(Addr::Monitor)),
        Due(Timer::FenceDelay),
        Due(Timer::Handover),
    ];
    for (takeover, delay) in [(true, 0), (false, 0), (true, 90), (false, 90)] {
        let s = Policy {
            takeover,
            fence_delay: Duration::from_millis(delay),
            ..S
        };
        for _ in 0..2000 {
            let mut m = Machine::new(s, 0);
            let mut last_fence_ok = false;
            let mut delay_started = false;
            let mut leaving_seen = false;
            for _ in 0..40 {
                let i = pool[rng.gen_range(0..pool.len())];
                let role_before = m.role();
                let armed_before = m.armed();
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
                // The only way from Monitor to Booting (a fence) is a passed self-check, or
                // the end of the fence delay that a passed self-check started.
                if role_before == Role::Monitor && m.role() == Role::Booting {
                    assert!(
                        matches!(i, SelfChecked(SelfCheck::Passed { .. }))
                            || (i == Due(Timer::FenceDelay) && delay_started),
                        "fence without a passed self-check after {i:?}"
                    );
                }
                if acts
                    .iter()
                    .any(|a| matches!(a, Action::Schedule(Timer::FenceDelay, _)))
                {
                    delay_started = true;
                }
                if matches!(i, PeerLeaving { role: 2, .. }) {
                    leaving_seen = true;
                }
                let primary_left = leaving_seen;
                let last_join_ok = matches!(
                    i,
                    JoinDone {
                        monitor: Some(_),
                        primary: None,
                        peer: None
                    }
                );
                if acts.contains(&Action::Claim(Addr::Primary)) {
                    assert!(
                        takeover || role_before == Role::Joining || role_before == Role::Conflict,
                        "recovery-only never takes P from a monitor"
                    );
                    match role_before {
                        Role::Joining | Role::Conflict => {
                            assert!(last_join_ok, "join claim without M answering: {i:?}")
                        }
                        // A joining peer left P to a monitor that never saw P answer.
                        _ if i == PeerYielded => assert!(
                            role_before == Role::Monitor && !armed_before,
                            "a yield taken by an armed monitor or in {role_before:?}"
                        ),
                        _ => assert!(
                            last_fence_ok || primary_left,
                            "claim of P without a confirmed fence or a leaving primary after {i:?}"
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
                peer: None,
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
    m.step(passed());
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

#[test]
fn only_the_preferred_primarys_first_join_listens_longer() {
    let joins = |preferred_primary| {
        let mut m = Machine::new(
            Policy {
                preferred_primary,
                ..S
            },
            0,
        );
        // Both answer: a conflict, retried with a second join.
        let both = JoinDone {
            monitor: Some(MON),
            primary: Some(PEER),
            peer: None,
        };
        let mut doubled = Vec::new();
        for input in [Start, both, RetryDue] {
            for a in m.step(input) {
                if let Action::SendJoin { doubled: d } = a {
                    doubled.push(d);
                }
            }
        }
        doubled
    };
    assert_eq!(joins(true), vec![true, false]);
    assert_eq!(joins(false), vec![false, false]);
}

#[test]
fn a_failed_self_check_isolates_and_never_fences() {
    for result in [
        SelfCheck::NoCarrier,
        SelfCheck::WitnessesSilent {
            answered: 0,
            needed: 1,
        },
    ] {
        let mut inputs = monitor_armed();
        inputs.push(failed());
        let (mut m, _, acts) = run(S, &inputs);
        assert_eq!(names(&acts).last().map(String::as_str), Some("SelfCheck"));
        let a = m.step(SelfChecked(result));
        let n = names(&a);
        assert_eq!(
            n,
            vec!["isolated", "Hook(OnFault(Isolated))", "Retry(500ms)"],
            "{result:?}"
        );
        assert!(m.isolated());
        assert_eq!(m.role(), Role::Monitor);
        // Still isolated on the next check: no second on_fault, and no fence.
        assert_eq!(names(&m.step(RetryDue)), vec!["SelfCheck"]);
        let n = names(&m.step(SelfChecked(result)));
        assert_eq!(n, vec!["isolated", "Retry(500ms)"]);
        // Its side recovers while P is still silent: no fence on misses seen while cut off;
        // P is judged afresh.
        assert_eq!(names(&m.step(RetryDue)), vec!["SelfCheck"]);
        let n = names(&m.step(passed()));
        assert_eq!(n, vec!["isolation_ended", "Rejudge"]);
        assert!(!m.isolated());
        assert!(!m.suspicious());
        assert_eq!(m.role(), Role::Monitor);
        // A late retry decides nothing.
        assert!(m.step(RetryDue).is_empty());
        // A new failure, seen while this side works, is fenced.
        assert_eq!(names(&m.step(failed())), vec!["SelfCheck"]);
        let n = names(&m.step(passed()));
        assert_eq!(
            n,
            vec![
                "primary_failed",
                "role_changed",
                "boot_requested",
                "Boot(Off)"
            ]
        );
    }
}

#[test]
fn p_answering_again_ends_a_suspicion_without_a_fence() {
    let mut inputs = monitor_armed();
    inputs.push(failed());
    inputs.push(SelfChecked(SelfCheck::NoCarrier));
    let (mut m, _, _) = run(S, &inputs);
    let n = names(&m.step(Liveness(LivenessEvent::Recovered { after: 10 })));
    assert_eq!(n, vec!["isolation_ended"]);
    // A late self-check result or retry decides nothing any more.
    assert!(m.step(passed()).is_empty());
    assert!(m.step(RetryDue).is_empty());
    assert_eq!(m.role(), Role::Monitor);
}

#[test]
fn a_pending_fence_is_cancelled_when_p_answers_before_an_off_was_accepted() {
    let mut inputs = monitor_armed();
    inputs.push(failed());
    inputs.push(passed());
    let (mut m, _, _) = run(S, &inputs);
    assert_eq!(m.role(), Role::Booting);
    let n = names(&m.step(Liveness(LivenessEvent::Recovered { after: 10 })));
    assert_eq!(n, vec!["fence_cancelled", "CancelBoot", "role_changed"]);
    assert_eq!(m.role(), Role::Monitor);
    // The cancelled request's result is not acted on.
    let n = names(&m.step(BootDone {
        action: BootAction::Off,
        ok: true,
    }));
    assert!(!n.contains(&"Claim(Primary)".to_string()), "{n:?}");

    // While a failed fence waits for its retry, P's return cancels it too.
    let mut inputs = monitor_armed();
    inputs.push(failed());
    inputs.push(passed());
    inputs.push(BootDone {
        action: BootAction::Off,
        ok: false,
    });
    let (mut m, _, _) = run(S, &inputs);
    let n = names(&m.step(Liveness(LivenessEvent::Recovered { after: 10 })));
    assert_eq!(n, vec!["fence_cancelled", "role_changed"]);
    assert!(m.step(RetryDue).is_empty(), "no retry after the cancel");

    // Once the peer accepted the power-off it is going down: no cancel.
    let mut inputs = monitor_armed();
    inputs.push(failed());
    inputs.push(passed());
    inputs.push(BootAccepted);
    let (mut m, _, _) = run(S, &inputs);
    assert!(m
        .step(Liveness(LivenessEvent::Recovered { after: 10 }))
        .is_empty());
    assert_eq!(m.role(), Role::Booting);
}

/// Found by the model check (tests/model): the primary's `leaving` delayed past its restart
/// (the primary stopped, started again and is primary again at a higher epoch) must not
/// hand P over while P answers; with a cross-cut the claim's duplicate-address probe would
/// not have caught it.
#[test]
fn a_stale_leaving_notice_hands_nothing_over() {
    let (mut m, _, _) = run(S, &monitor_armed());
    let n = names(&m.step(PeerLeaving {
        role: Role::Primary.code(),
        epoch: 1,
    }));
    assert_eq!(n, vec!["peer_left", "Schedule(Handover, 14ms)"]);
    // P keeps answering: no miss within the window.
    let n = names(&m.step(Due(Timer::Handover)));
    assert_eq!(n, vec!["peer_left"]);
    assert_eq!(m.role(), Role::Monitor);
    // A later miss is an ordinary one: no takeover without a fence.
    let n = names(&m.step(Liveness(LivenessEvent::Missed { consecutive: 1 })));
    assert!(!n.iter().any(|a| a.starts_with("Claim")), "{n:?}");
}

#[test]
fn a_leaving_primary_is_taken_over_without_a_fence() {
    let (mut m, _, _) = run(S, &monitor_armed());
    let n = names(&m.step(PeerLeaving {
        role: Role::Primary.code(),
        epoch: 4,
    }));
    assert_eq!(n, vec!["peer_left", "Schedule(Handover, 14ms)"]);
    // The first missed heartbeat shows P released: taken over, without a fence.
    let n = names(&m.step(Liveness(LivenessEvent::Missed { consecutive: 1 })));
    assert_eq!(
        n,
        vec![
            "role_changed",
            "StopMonitoring",
            "Release(Monitor)",
            "Claim(Primary)"
        ]
    );
    let n = names(&m.step(Claimed {
        addr: Addr::Primary,
        ok: true,
    }));
    assert!(
        !n.iter().any(|a| a.starts_with("Boot(")),
        "no power action: {n:?}"
    );
    assert_eq!(m.epoch(), 5, "above the leaving primary's epoch");

    // A monitor that never saw P, or a leaving monitor, changes nothing.
    let mut inputs = monitor_armed();
    inputs.pop();
    let (mut m, _, _) = run(S, &inputs);
    assert!(m
        .step(PeerLeaving {
            role: Role::Primary.code(),
            epoch: 4
        })
        .is_empty());
    let (mut m, _, _) = run(S, &monitor_armed());
    assert!(m
        .step(PeerLeaving {
            role: Role::Monitor.code(),
            epoch: 4
        })
        .is_empty());
}

#[test]
fn recovery_only_waits_for_a_leaving_primary_instead_of_fencing_it() {
    let s = Policy {
        takeover: false,
        ..S
    };
    let (mut m, _, _) = run(s, &monitor_armed());
    let n = names(&m.step(PeerLeaving {
        role: Role::Primary.code(),
        epoch: 4,
    }));
    assert_eq!(n, vec!["peer_left"]);
    assert!(m.step(failed()).is_empty(), "no self-check, no fence");
    m.step(Liveness(LivenessEvent::Recovered { after: 10 }));
    assert_eq!(names(&m.step(failed())), vec!["SelfCheck"], "watched again");
}

#[test]
fn a_primary_hears_its_monitor_leave() {
    let (mut m, _, _) = run(
        S,
        &[
            Start,
            JoinDone {
                monitor: Some(MON),
                primary: None,
                peer: None,
            },
            Claimed {
                addr: Addr::Primary,
                ok: true,
            },
        ],
    );
    let n = names(&m.step(PeerLeaving {
        role: Role::Monitor.code(),
        epoch: 1,
    }));
    assert_eq!(n, vec!["peer_left"]);
    assert_eq!(m.role(), Role::Primary);
}

#[test]
fn a_first_answer_ends_a_startup_grace_suspicion() {
    // While the self-check runs: no fence.
    let mut inputs = monitor_armed();
    inputs.pop(); // P never seen
    inputs.push(GraceExpired);
    let (mut m, _, _) = run(S, &inputs);
    assert!(m.suspicious());
    m.step(Liveness(LivenessEvent::Armed));
    assert!(!m.suspicious());
    assert!(
        m.step(passed()).is_empty(),
        "a late self-check decides nothing"
    );
    assert_eq!(m.role(), Role::Monitor);

    // While the fence waits to be sent: cancelled.
    let mut inputs = monitor_armed();
    inputs.pop();
    inputs.push(GraceExpired);
    inputs.push(passed());
    let (mut m, _, _) = run(S, &inputs);
    assert_eq!(m.role(), Role::Booting);
    let n = names(&m.step(Liveness(LivenessEvent::Armed)));
    assert_eq!(n, vec!["fence_cancelled", "CancelBoot", "role_changed"]);
    assert_eq!(m.role(), Role::Monitor);
    // Now P is watched like any seen primary.
    assert_eq!(names(&m.step(failed())), vec!["SelfCheck"]);
}

#[test]
fn a_finished_fence_leaves_nothing_behind() {
    // Recovery only: a reboot was accepted and done; a later planned stop of the primary is
    // still a handover, not ignored.
    let s = Policy {
        takeover: false,
        ..S
    };
    let mut inputs = monitor_armed();
    inputs.push(failed());
    inputs.push(passed());
    inputs.push(BootAccepted);
    inputs.push(BootDone {
        action: BootAction::Reboot,
        ok: true,
    });
    inputs.push(Liveness(LivenessEvent::Armed));
    let (mut m, _, _) = run(s, &inputs);
    assert_eq!(m.role(), Role::Monitor);
    let n = names(&m.step(PeerLeaving {
        role: Role::Primary.code(),
        epoch: 1,
    }));
    assert_eq!(n, vec!["peer_left"]);

    // A failed attempt is over: if P then answers, the retry is cancelled.
    let mut inputs = monitor_armed();
    inputs.push(failed());
    inputs.push(passed());
    inputs.push(BootAccepted);
    inputs.push(BootDone {
        action: BootAction::Off,
        ok: false,
    });
    let (mut m, _, _) = run(S, &inputs);
    let n = names(&m.step(Liveness(LivenessEvent::Recovered { after: 10 })));
    assert_eq!(n, vec!["fence_cancelled", "role_changed"]);

    // A takeover after a conflict powers nobody on: the earlier fence was confirmed, the
    // later takeover comes from a `leaving` primary.
    let mut inputs = monitor_armed();
    inputs.push(failed());
    inputs.push(passed());
    inputs.push(BootDone {
        action: BootAction::Off,
        ok: true,
    });
    inputs.push(Claimed {
        addr: Addr::Primary,
        ok: false,
    });
    let (mut m, _, _) = run(S, &inputs);
    assert_eq!(m.role(), Role::Conflict);
    m.step(RetryDue);
    m.step(JoinDone {
        monitor: None,
        primary: Some(PEER),
        peer: None,
    });
    m.step(Claimed {
        addr: Addr::Monitor,
        ok: true,
    });
    m.step(Liveness(LivenessEvent::Armed));
    m.step(PeerLeaving {
        role: Role::Primary.code(),
        epoch: 1,
    });
    let n = names(&m.step(Claimed {
        addr: Addr::Primary,
        ok: true,
    }));
    assert!(!n.contains(&"Boot(On)".to_string()), "{n:?}");
}

/// A settled host in `role` (Primary or Monitor) for the contest tests.
fn settled(policy: Policy, primary: bool) -> Machine {
    let mut m = Machine::new(policy, 0);
    m.step(Start);
    let (monitor, claim) = if primary {
        (Some(MON), Addr::Primary)
    } else {
        (None, Addr::Monitor)
    };
    m.step(JoinDone {
        monitor,
        primary: None,
        peer: None,
    });
    m.step(Claimed {
        addr: claim,
        ok: true,
    });
    m
}

fn holding(addr: Addr, epoch: u64, node: u32, preferred: bool) -> Answer {
    let holds = match addr {
        Addr::Primary => crate::role::FLAG_HOLDS_P,
        Addr::Monitor => crate::role::FLAG_HOLDS_M,
    };
    let pref = if preferred {
        crate::role::FLAG_PREFERRED
    } else {
        0
    };
    Answer {
        role: if addr == Addr::Primary { 2 } else { 3 },
        epoch,
        node,
        flags: holds | pref,
    }
}

#[test]
fn a_cold_start_with_both_on_m_settles_with_the_preferred_host_primary() {
    let contested = Contested {
        addr: Addr::Monitor,
        lower_mac: true,
    };
    // The preferred host (node 1) yields M ...
    let mut a = settled(
        Policy {
            preferred_primary: true,
            ..S
        },
        false,
    );
    assert_eq!(a.role(), Role::Monitor);
    let n = names(&a.step(contested));
    assert_eq!(
        n,
        vec![
            "address_defended",
            "Defend(Monitor)",
            "AskPeer",
            "Schedule(DefendWindow(Monitor), 10s)"
        ]
    );
    assert!(a
        .step(PeerSeen(holding(Addr::Monitor, 0, 2, false)))
        .is_empty());
    let n = names(&a.step(contested));
    assert_eq!(
        n,
        vec![
            "address_conflict",
            "demoted",
            "StopMonitoring",
            "Release(Monitor)",
            "Hook(OnFault(Demoted))",
            "role_changed",
            "join_probe_sent",
            "SendJoin"
        ]
    );
    assert_eq!(a.role(), Role::Joining);
    // ... and the other (node 2) keeps it, defending once more at most.
    let mut b = settled(Policy { node_id: 2, ..S }, false);
    b.step(contested);
    b.step(PeerSeen(holding(Addr::Monitor, 0, 1, true)));
    let n = names(&b.step(contested));
    assert_eq!(n, vec!["address_conflict", "Defend(Monitor)", "AskPeer"]);
    // The next round is judged on a fresh answer, without a third announcement.
    assert!(b.step(contested).is_empty(), "waits for the answer");
    assert!(
        names(&b.step(PeerSeen(holding(Addr::Monitor, 0, 1, true))))
            == vec!["address_conflict", "AskPeer"],
        "no third announcement"
    );
    assert_eq!(b.role(), Role::Monitor);
    // The window ends: a later claim is a new contest.
    b.step(Due(Timer::DefendWindow(Addr::Monitor)));
    assert!(names(&b.step(contested)).contains(&"Defend(Monitor)".to_string()));
}

#[test]
fn the_higher_epoch_keeps_p_and_a_stale_primary_steps_down() {
    let contested = Contested {
        addr: Addr::Primary,
        lower_mac: true,
    };
    let mut a = settled(S, true);
    assert_eq!((a.role(), a.epoch()), (Role::Primary, 1));
    a.step(contested);
    // The peer is primary at a higher epoch: step down at once, before any second claim.
    let n = names(&a.step(PeerSeen(holding(Addr::Primary, 2, 2, false))));
    assert!(
        n.starts_with(&["demoted".to_string(), "Release(Primary)".to_string()]),
        "{n:?}"
    );
    assert_eq!(a.role(), Role::Joining);

    // A lower-epoch peer on P loses; this host keeps it.
    let mut b = settled(Policy { node_id: 2, ..S }, true);
    b.step(PeerSeen(holding(Addr::Primary, 1, 1, true)));
    b.step(contested);
    b.step(PeerSeen(holding(Addr::Primary, 0, 1, true)));
    let n = names(&b.step(contested));
    assert_eq!(n, vec!["address_conflict", "Defend(Primary)", "AskPeer"]);
    assert_eq!(b.role(), Role::Primary);
}

#[test]
fn a_taken_over_notice_demotes_a_primary_below_it_only() {
    let mut m = settled(S, true);
    assert!(
        m.step(TakenOver { epoch: 1 }).is_empty(),
        "same epoch: not newer"
    );
    let n = names(&m.step(TakenOver { epoch: 2 }));
    assert_eq!(
        n,
        vec![
            "demoted",
            "Release(Primary)",
            "Hook(OnFault(Demoted))",
            "role_changed",
            "join_probe_sent",
            "SendJoin"
        ]
    );
    // The next promotion goes above the newer primary.
    assert_eq!(m.epoch(), 2);
    let mut monitor = settled(S, false);
    assert!(monitor.step(TakenOver { epoch: 5 }).is_empty());
    assert_eq!(monitor.role(), Role::Monitor);
}

#[test]
fn a_primary_below_the_monitors_heartbeat_epoch_hands_p_over_and_rejoins_later() {
    let mut m = settled(S, true);
    assert!(
        m.step(NewerMonitor { epoch: 1 }).is_empty(),
        "same epoch: not newer"
    );
    let n = names(&m.step(NewerMonitor { epoch: 4 }));
    assert_eq!(
        n,
        vec![
            "demoted",
            "Release(Primary)",
            "SendLeaving(Primary)",
            "Hook(OnFault(Demoted))",
            "role_changed",
            "Retry(1s)"
        ]
    );
    assert_eq!(m.role(), Role::Joining);
    assert_eq!(m.epoch(), 4);
    // The retry joins as usual.
    assert!(names(&m.step(RetryDue)).contains(&"SendJoin".to_string()));
    // A monitor (or joining host) takes note of the epoch and nothing else.
    let mut monitor = settled(S, false);
    assert!(monitor.step(NewerMonitor { epoch: 7 }).is_empty());
    assert_eq!((monitor.role(), monitor.epoch()), (Role::Monitor, 7));
}

/// A cold start: a joining host whose data is older than the monitor's leaves P to it (once
/// it has, it never claims P while joining); the monitor takes P only while it has never seen
/// P answer.
#[test]
fn a_joining_host_leaves_p_to_a_monitor_with_newer_data() {
    use super::{FLAG_NEWER_DATA, FLAG_TAKES_YIELD};
    let newer = Answer {
        flags: FLAG_NEWER_DATA | FLAG_TAKES_YIELD,
        ..MON
    };
    let mut m = Machine::new(S, 0);
    m.step(Start);
    let n = names(&m.step(JoinDone {
        monitor: Some(newer),
        primary: None,
        peer: None,
    }));
    assert_eq!(n, vec!["SendYield", "join_answered", "Retry(1s)"]);
    m.step(RetryDue);
    // The monitor stopped offering to take P (or its answer changed): still no claim.
    let n = names(&m.step(JoinDone {
        monitor: Some(MON),
        primary: None,
        peer: None,
    }));
    assert!(!n.contains(&"Claim(Primary)".to_string()), "{n:?}");
    assert_eq!(m.role(), Role::Joining);
    // Once the monitor took P, the host joins as monitor as usual.
    m.step(RetryDue);
    m.step(JoinDone {
        monitor: None,
        primary: Some(PEER),
        peer: None,
    });
    m.step(Claimed {
        addr: Addr::Monitor,
        ok: true,
    });
    assert_eq!(m.role(), Role::Monitor);
    // Newer data alone (a monitor that does not take P) is not a reason to wait.
    let mut m = Machine::new(S, 0);
    m.step(Start);
    let n = names(&m.step(JoinDone {
        monitor: Some(Answer {
            flags: FLAG_NEWER_DATA,
            ..MON
        }),
        primary: None,
        peer: None,
    }));
    assert!(n.contains(&"Claim(Primary)".to_string()), "{n:?}");

    // The monitor's side.
    let mut fresh = settled(S, false);
    assert!(fresh.takes_yield());
    let n = names(&fresh.step(PeerYielded));
    assert_eq!(
        n,
        vec![
            "peer_yielded",
            "role_changed",
            "StopMonitoring",
            "Release(Monitor)",
            "Claim(Primary)"
        ]
    );
    let (mut armed, _, _) = run(S, &monitor_armed());
    assert!(!armed.takes_yield());
    assert!(
        armed.step(PeerYielded).is_empty(),
        "P answered: a yield is stale"
    );
    let mut recovery_only = settled(
        Policy {
            takeover: false,
            ..S
        },
        false,
    );
    assert!(recovery_only.step(PeerYielded).is_empty());
}

#[test]
fn a_contest_without_the_peer_goes_to_the_lower_mac_and_a_third_host_never_wins() {
    for (lower_mac, keeps) in [(true, true), (false, false)] {
        let c = Contested {
            addr: Addr::Primary,
            lower_mac,
        };
        let mut m = settled(S, true);
        m.step(c);
        m.step(PeerSilent);
        m.step(c);
        assert_eq!(m.role() == Role::Primary, keeps, "lower_mac {lower_mac}");
    }
    // The peer answers but does not hold P: a third host. Keep it.
    let c = Contested {
        addr: Addr::Primary,
        lower_mac: false,
    };
    let mut m = settled(S, true);
    m.step(c);
    m.step(PeerSeen(holding(Addr::Monitor, 5, 2, true)));
    m.step(c);
    assert_eq!(m.role(), Role::Primary);
    // Not holding the address: no contest at all.
    let mut j = Machine::new(S, 0);
    assert!(j.step(c).is_empty());
}

#[test]
fn a_join_claims_p_only_from_a_monitor_that_is_not_fencing() {
    for role in [Role::Booting, Role::TakingOver, Role::Primary] {
        let (m, _, acts) = run(
            S,
            &[
                Start,
                JoinDone {
                    monitor: Some(Answer {
                        role: role.code(),
                        ..MON
                    }),
                    primary: None,
                    peer: None,
                },
            ],
        );
        let n = names(&acts);
        assert!(
            !n.contains(&"Claim(Primary)".to_string()),
            "{role:?}: {n:?}"
        );
        assert!(n.contains(&"Retry(1s)".to_string()), "{role:?}: {n:?}");
        assert_eq!(m.role(), Role::Joining);
    }
}

#[test]
fn the_first_fence_of_startup_grace_waits_on_the_host_that_is_not_preferred() {
    let s = Policy {
        fence_delay: Duration::from_millis(90),
        ..S
    };
    let mut inputs = monitor_armed();
    inputs.pop(); // P never answered
    inputs.push(GraceExpired);
    let (mut m, _, _) = run(s, &inputs);
    let n = names(&m.step(passed()));
    assert_eq!(n, vec!["fence_delayed", "Schedule(FenceDelay, 90ms)"]);
    assert_eq!(m.role(), Role::Monitor);
    let n = names(&m.step(Due(Timer::FenceDelay)));
    assert!(n.contains(&"Boot(Off)".to_string()), "{n:?}");

    // P answers during the delay: no fence.
    let (mut m, _, _) = run(s, &inputs);
    m.step(passed());
    m.step(Liveness(LivenessEvent::Armed));
    assert!(m.step(Due(Timer::FenceDelay)).is_empty());
    assert_eq!(m.role(), Role::Monitor);

    // After misses (the peer was a primary, which never fences) there is no delay.
    let mut inputs = monitor_armed();
    inputs.push(failed());
    let (mut m, _, _) = run(s, &inputs);
    assert!(names(&m.step(passed())).contains(&"Boot(Off)".to_string()));
}

/// Found by the model check (tests/model): a `startup_grace` fence whose request is out when P
/// answers for the first time, and then fails (the BMC went away), must not be retried: the
/// retry would power off a primary that is serving.
#[test]
fn a_failed_attempt_during_which_p_answered_is_not_retried() {
    let (mut m, _, _) = run(
        S,
        &[
            Start,
            JoinDone {
                monitor: None,
                primary: None,
                peer: None,
            },
            Claimed {
                addr: Addr::Monitor,
                ok: true,
            },
        ],
    );
    m.step(GraceExpired);
    let n = names(&m.step(passed()));
    assert!(n.contains(&"Boot(Off)".to_string()), "{n:?}");
    m.step(BootAccepted);
    assert!(
        m.step(Liveness(LivenessEvent::Armed)).is_empty(),
        "accepted: not cancelled yet"
    );
    let n = names(&m.step(BootDone {
        action: BootAction::Off,
        ok: false,
    }));
    assert!(n.contains(&"fence_cancelled".to_string()), "{n:?}");
    assert!(!n.iter().any(|a| a.starts_with("Retry")), "{n:?}");
    assert_eq!(m.role(), Role::Monitor);
}
