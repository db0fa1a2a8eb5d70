//! Table tests of `failover maintenance` (`maintenance.rs`).
use super::tests::{failed, monitor_armed, names, passed, run, S};
use super::*;
use Input::*;

const ON: Input = Maintenance {
    on: true,
    for_: None,
};
const OFF: Input = Maintenance {
    on: false,
    for_: None,
};

#[test]
fn in_maintenance_a_failed_primary_is_neither_fenced_nor_taken_over() {
    let (mut m, _, _) = run(S, &monitor_armed());
    let n = names(&m.step(ON));
    assert_eq!(n, vec!["maintenance_on"]);
    assert!(m.maintenance());
    // Misses: reported once, no self-check, no fence.
    assert_eq!(names(&m.step(failed())), vec!["maintenance_held"]);
    assert!(names(&m.step(failed())).is_empty(), "reported once");
    // A stopping primary is not taken over either.
    let n = names(&m.step(PeerLeaving {
        role: Role::Primary.code(),
        epoch: 1,
    }));
    assert!(n.is_empty(), "{n:?}");
    assert_eq!(m.role(), Role::Monitor);
    // Off: judged afresh, and a new window of misses fences as before.
    let n = names(&m.step(OFF));
    assert_eq!(n, vec!["maintenance_off", "Rejudge"]);
    assert!(names(&m.step(OFF)).is_empty(), "off twice changes nothing");
    let n = names(&m.step(failed()));
    assert_eq!(n, vec!["SelfCheck"]);
    let n = names(&m.step(passed()));
    assert!(n.contains(&"Boot(Off)".to_string()), "{n:?}");
}

#[test]
fn maintenance_drops_a_decision_waiting_for_its_self_check_and_refuses_during_a_fence() {
    let (mut m, _, _) = run(S, &monitor_armed());
    assert_eq!(names(&m.step(failed())), vec!["SelfCheck"]);
    m.step(ON);
    // The self-check's answer finds nothing to decide.
    assert!(names(&m.step(passed())).is_empty());
    assert_eq!(m.role(), Role::Monitor);
    m.step(OFF);
    // Once the fence is under way, maintenance waits.
    m.step(failed());
    m.step(passed());
    assert_eq!(m.role(), Role::Booting);
    assert!(m.may_enter_maintenance().is_err());
}

#[test]
fn a_timed_maintenance_ends_by_itself_and_an_older_timer_ends_nothing() {
    let (mut m, _, _) = run(S, &monitor_armed());
    let n = names(&m.step(Maintenance {
        on: true,
        for_: Some(Duration::from_secs(60)),
    }));
    assert_eq!(n, vec!["maintenance_on", "Schedule(MaintenanceOver, 60s)"]);
    // Turned on again without an end: the first timer ends nothing.
    m.step(ON);
    assert!(names(&m.step(Due(Timer::MaintenanceOver))).is_empty());
    assert!(m.maintenance());
    m.step(Maintenance {
        on: true,
        for_: Some(Duration::from_secs(1)),
    });
    let n = names(&m.step(Due(Timer::MaintenanceOver)));
    assert_eq!(n, vec!["maintenance_off", "Rejudge"]);
    assert!(!m.maintenance());
}

#[test]
fn a_primary_never_seen_is_judged_when_the_maintenance_ends() {
    // A monitor that has not seen P (just restarted), startup_grace running out in
    // maintenance: held; judged (self-check) once the maintenance is off.
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
    assert_eq!(m.role(), Role::Monitor);
    m.step(ON);
    assert_eq!(names(&m.step(GraceExpired)), vec!["maintenance_held"]);
    let n = names(&m.step(OFF));
    assert_eq!(n, vec!["maintenance_off", "Rejudge", "SelfCheck"]);
}
