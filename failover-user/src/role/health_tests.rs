//! Table tests of the monitor's side of the health checks (`health.rs`).
use super::tests::{failed, monitor_armed, names, passed, run, S};
use super::*;
use Input::*;

#[test]
fn a_monitor_whose_check_fails_neither_fences_nor_takes_over_until_it_passes() {
    let (mut m, _, _) = run(S, &monitor_armed());
    assert!(names(&m.step(Health { ok: false })).is_empty());
    assert!(m.unhealthy());
    // Misses: reported once, no self-check, no fence.
    assert_eq!(names(&m.step(failed())), vec!["takeover_refused"]);
    assert!(names(&m.step(failed())).is_empty(), "reported once");
    // A stopping primary is not taken over either.
    let n = names(&m.step(PeerLeaving {
        role: Role::Primary.code(),
        epoch: 1,
    }));
    assert!(n.is_empty(), "{n:?}");
    assert_eq!(m.role(), Role::Monitor);
    // Passing again: judged afresh, and a new window of misses fences as before.
    assert_eq!(names(&m.step(Health { ok: true })), vec!["Rejudge"]);
    assert!(names(&m.step(Health { ok: true })).is_empty(), "no change");
    assert_eq!(names(&m.step(failed())), vec!["SelfCheck"]);
    let n = names(&m.step(passed()));
    assert!(n.contains(&"Boot(Off)".to_string()), "{n:?}");
}

#[test]
fn a_failing_check_drops_a_decision_waiting_for_its_self_check() {
    let (mut m, _, _) = run(S, &monitor_armed());
    assert_eq!(names(&m.step(failed())), vec!["SelfCheck"]);
    m.step(Health { ok: false });
    assert!(names(&m.step(passed())).is_empty());
    assert_eq!(m.role(), Role::Monitor);
}

#[test]
fn maintenance_off_does_not_arm_a_monitor_whose_check_still_fails() {
    let (mut m, _, _) = run(S, &monitor_armed());
    m.step(Health { ok: false });
    m.step(Maintenance {
        on: true,
        for_: None,
    });
    let n = names(&m.step(Maintenance {
        on: false,
        for_: None,
    }));
    assert_eq!(n, vec!["maintenance_off"], "no Rejudge while unhealthy");
    assert_eq!(names(&m.step(failed())), vec!["takeover_refused"]);
}
