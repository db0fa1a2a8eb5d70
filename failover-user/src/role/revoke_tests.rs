//! Table tests of `fence = "lease"` (`revoke.rs`).
use super::tests::{failed, monitor_armed, names, passed, run, S};
use super::*;
use Input::*;

const L: Policy = Policy {
    lease_fence: true,
    ..S
};

const AGREED: Input = Revoked(Revocation::Agreed {
    wait: Duration::from_millis(9),
    epoch: 3,
});

fn decided() -> Vec<Input> {
    let mut i = monitor_armed();
    i.extend([failed(), passed()]);
    i
}

fn recovered() -> Input {
    Liveness(LivenessEvent::Recovered { after: 12 })
}

#[test]
fn the_lease_takeover_claims_p_after_the_wait_and_resets_the_old_primary_afterwards() {
    let (mut m, _, acts) = run(L, &decided());
    let n = names(&acts);
    assert!(n.ends_with(&[
        "primary_failed".into(),
        "role_changed".into(),
        "Revoke".into()
    ]));
    assert!(
        !n.iter().any(|a| a.starts_with("Boot(")),
        "no BMC wait: {n:?}"
    );
    assert!(!m.grants(), "the failure decision stops the grants");
    let n = names(&m.step(AGREED));
    assert_eq!(n, vec!["lease_revoked", "Schedule(LeaseOver, 9ms)"]);
    // Nothing is taken before the wait is over, and a recovery no longer cancels.
    assert!(names(&m.step(recovered())).is_empty());
    let n = names(&m.step(Due(Timer::LeaseOver)));
    assert_eq!(
        n,
        vec![
            "fence_confirmed",
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
    assert_eq!(m.role(), Role::Primary);
    assert_eq!(m.epoch(), 4, "above every epoch the witness revoked");
    assert!(n.ends_with(&[
        "SendTakenOver".into(),
        "boot_requested".into(),
        "Boot(Off)".into()
    ]));
    assert!(
        !m.fence_confirmed(),
        "the old primary is not known to be off"
    );
    let n = names(&m.step(BootDone {
        action: BootAction::Off,
        ok: true,
    }));
    assert_eq!(n, vec!["boot_requested", "Boot(On)"]);
    let n = names(&m.step(BootDone {
        action: BootAction::On,
        ok: true,
    }));
    assert_eq!(n, vec!["boot_done"]);
    assert_eq!(m.role(), Role::Primary);
}

#[test]
fn a_failed_reset_is_an_alert_and_p_stays_served() {
    let mut i = decided();
    i.extend([
        AGREED,
        Due(Timer::LeaseOver),
        Claimed {
            addr: Addr::Primary,
            ok: true,
        },
        BootDone {
            action: BootAction::Off,
            ok: false,
        },
    ]);
    let (m, _, acts) = run(L, &i);
    assert_eq!(m.role(), Role::Primary);
    let n = names(&acts);
    assert!(n.ends_with(&["fence_failed".into(), "Hook(OnFault(FenceFailed))".into()]));
    assert!(!n.contains(&"Boot(On)".into()));
}

#[test]
fn a_refused_revoke_fences_nothing_and_asks_again_while_p_stays_silent() {
    let refused = Revoked(Revocation::Refused {
        heard_ago: Duration::from_millis(3),
    });
    let (mut m, _, _) = run(L, &decided());
    let n = names(&m.step(refused));
    assert_eq!(m.role(), Role::Monitor);
    assert!(m.grants(), "the primary is served: grants resume");
    assert!(
        n.contains(&"revoke_refused".into()) && n.contains(&"Hook(OnFault(RevokeRefused))".into())
    );
    assert!(n.ends_with(&["Retry(500ms)".into()]));
    assert!(!n
        .iter()
        .any(|a| a.starts_with("Boot(") || a.starts_with("Claim(")));
    // Asked again after the recheck; the refusal is reported once.
    assert_eq!(names(&m.step(RetryDue)), vec!["SelfCheck"]);
    assert!(names(&m.step(passed())).ends_with(&["Revoke".into()]));
    let n = names(&m.step(refused));
    assert!(!n.contains(&"revoke_refused".into()), "{n:?}");
    // P answers again: the fence is abandoned, and the next episode reports again.
    assert_eq!(names(&m.step(recovered())), vec!["fence_cancelled"]);
    assert!(!m.suspicious());
    m.step(failed());
    m.step(passed());
    assert!(names(&m.step(refused)).contains(&"revoke_refused".into()));
}

#[test]
fn a_silent_witness_falls_back_to_the_bmc_and_its_confirmed_off() {
    let (mut m, _, _) = run(L, &decided());
    let n = names(&m.step(Revoked(Revocation::Unreachable)));
    assert_eq!(n, vec!["witness_lost", "boot_requested", "Boot(Off)"]);
    assert_eq!(m.role(), Role::Booting);
    assert!(m.grants(), "as in fence = bmc: the BMC decides");
    assert!(!names(&m.step(Due(Timer::LeaseOver))).contains(&"Claim(Primary)".into()));
    let n = names(&m.step(BootDone {
        action: BootAction::Off,
        ok: true,
    }));
    assert!(n.ends_with(&["Claim(Primary)".into()]));
    let n = names(&m.step(Claimed {
        addr: Addr::Primary,
        ok: true,
    }));
    assert!(n.ends_with(&["boot_requested".into(), "Boot(On)".into()]));
    assert_eq!(n.iter().filter(|a| a.starts_with("Boot(")).count(), 1);
}

#[test]
fn p_answering_before_the_witness_agreed_cancels_and_a_late_agreement_takes_nothing() {
    let (mut m, _, _) = run(L, &decided());
    let n = names(&m.step(recovered()));
    assert_eq!(n, vec!["fence_cancelled", "CancelBoot", "role_changed"]);
    assert!(m.grants());
    assert!(m.step(AGREED).is_empty());
    assert!(m.step(Due(Timer::LeaseOver)).is_empty());
    assert_eq!(m.role(), Role::Monitor);
}

#[test]
fn the_bmc_mode_never_asks_the_witness() {
    let (m, _, acts) = run(S, &decided());
    let n = names(&acts);
    assert!(n.ends_with(&["Boot(Off)".into()]) && !n.contains(&"Revoke".into()));
    assert!(m.grants(), "fence = bmc grants until the BMC confirmed Off");
}

#[test]
fn a_primary_that_never_held_a_lease_is_fenced_through_the_bmc() {
    let (mut m, _, _) = run(L, &decided());
    let n = names(&m.step(Revoked(Revocation::NoLease { epoch: 2 })));
    assert_eq!(n, vec!["lease_revoked", "boot_requested", "Boot(Off)"]);
    assert!(m.grants());
    let n = names(&m.step(BootDone {
        action: BootAction::Off,
        ok: true,
    }));
    assert!(n.ends_with(&["Claim(Primary)".into()]));
    m.step(Claimed {
        addr: Addr::Primary,
        ok: true,
    });
    assert_eq!(m.epoch(), 3, "above the revoked epochs");
}

#[test]
fn a_primary_whose_revoked_lease_lapsed_rejoins_to_serve_at_a_new_epoch() {
    let (mut m, _, _) = run(L, &decided());
    m.step(AGREED);
    m.step(Due(Timer::LeaseOver));
    m.step(Claimed {
        addr: Addr::Primary,
        ok: true,
    });
    assert_eq!((m.role(), m.epoch()), (Role::Primary, 4));
    // A report about an older epoch (an earlier promotion's keeper) changes nothing.
    assert!(names(&m.step(LeaseRevoked { epoch: 3 })).is_empty());
    assert_eq!(m.role(), Role::Primary);
    let n = names(&m.step(LeaseRevoked { epoch: 4 }));
    assert_eq!(&n[..2], &["demoted".to_string(), "Release(Primary)".into()]);
    assert_eq!(m.role(), Role::Joining);
    // Not a primary any more: a late report does nothing.
    assert!(names(&m.step(LeaseRevoked { epoch: 4 })).is_empty());
}
