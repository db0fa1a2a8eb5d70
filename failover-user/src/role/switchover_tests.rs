//! Table tests of `failover switchover` (`switchover.rs`).
use super::tests::{names, primary, run, MON, PEER, S};
use super::*;
use Input::*;

#[test]
fn the_primary_hands_p_over_without_a_fence_and_rejoins_as_monitor() {
    let mut m = primary();
    assert!(m.may_switch_over().is_ok());
    let n = names(&m.step(Switchover));
    assert_eq!(
        n,
        vec![
            "switchover_started",
            "Release(Primary)",
            "SendLeaving(Primary)",
            "role_changed",
            "Retry(1s)"
        ]
    );
    assert!(m.switching());
    assert!(m.may_switch_over().is_err(), "not twice");
    // The rejoin: the peer serves P (at the next epoch), M is free.
    m.step(RetryDue);
    m.step(JoinDone {
        monitor: None,
        primary: Some(Answer { epoch: 2, ..PEER }),
        peer: None,
    });
    let n = names(&m.step(Claimed {
        addr: Addr::Monitor,
        ok: true,
    }));
    assert!(n.contains(&"switchover_done".to_string()), "{n:?}");
    assert!(n.contains(&"Hook(OnSwitchover(true))".to_string()), "{n:?}");
    assert!(!n.iter().any(|a| a.starts_with("Boot")), "no fence: {n:?}");
    assert_eq!(m.role(), Role::Monitor);
    assert!(!m.switching());
}

#[test]
fn a_monitor_that_did_not_take_p_leaves_it_to_this_host_again() {
    let mut m = primary();
    m.step(Switchover);
    m.step(RetryDue);
    m.step(JoinDone {
        monitor: Some(MON),
        primary: None,
        peer: None,
    });
    let n = names(&m.step(Claimed {
        addr: Addr::Primary,
        ok: true,
    }));
    assert!(n.contains(&"switchover_failed".to_string()), "{n:?}");
    assert!(
        n.contains(&"Hook(OnSwitchover(false))".to_string()),
        "{n:?}"
    );
    assert_eq!(m.role(), Role::Primary);
}

#[test]
fn only_the_primary_switches_over() {
    let (mut m, _, _) = run(S, &super::tests::monitor_armed());
    assert!(m.may_switch_over().is_err());
    assert!(names(&m.step(Switchover)).is_empty());
    assert_eq!(m.role(), Role::Monitor);
}
