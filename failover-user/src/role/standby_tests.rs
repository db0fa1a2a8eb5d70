//! Table tests of `failover standby` (`standby.rs`) and of a joining host whose peer is in
//! standby.
use super::tests::{failed, monitor_armed, names, primary, run, MON, PEER, S};
use super::*;
use Input::*;

const ON: Input = Standby { on: true };
const OFF: Input = Standby { on: false };

#[test]
fn a_primary_in_standby_hands_p_over_and_then_judges_nothing() {
    let mut m = primary();
    let n = names(&m.step(ON));
    assert_eq!(
        n,
        vec![
            "Release(Primary)",
            "SendLeaving(Primary)",
            "standby_on",
            "role_changed"
        ]
    );
    assert_eq!(m.role(), Role::Standby);
    assert!(m.standby());
    // Nothing makes it claim, fence or join: joins, retries, contests, peers leaving.
    for input in [
        Start,
        RetryDue,
        JoinDone {
            monitor: None,
            primary: None,
            peer: None,
        },
        PeerLeaving {
            role: Role::Primary.code(),
            epoch: 3,
        },
        GraceExpired,
        failed(),
        Switchover,
    ] {
        let n = names(&m.step(input));
        assert!(n.is_empty(), "{n:?}");
        assert_eq!(m.role(), Role::Standby);
    }
    assert_eq!(
        m.epoch(),
        3,
        "the epoch others show is learnt, nothing more"
    );
    // Off: joins as after a start.
    let n = names(&m.step(OFF));
    assert_eq!(
        n,
        vec!["standby_off", "role_changed", "join_probe_sent", "SendJoin"]
    );
    assert_eq!(m.role(), Role::Joining);
}

#[test]
fn a_monitor_in_standby_gives_up_m_and_stops_probing() {
    let (mut m, _, _) = run(S, &monitor_armed());
    let n = names(&m.step(ON));
    assert_eq!(
        n,
        vec![
            "StopMonitoring",
            "Release(Monitor)",
            "SendLeaving(Standby)",
            "standby_on",
            "role_changed"
        ]
    );
    assert!(names(&m.step(failed())).is_empty(), "no failure decision");
    assert!(names(&m.step(ON)).is_empty(), "on twice changes nothing");
}

#[test]
fn standby_is_refused_during_a_fence_and_keeps_the_flags_for_later() {
    let (mut m, _, _) = run(S, &monitor_armed());
    m.step(failed());
    m.step(super::tests::passed());
    assert_eq!(m.role(), Role::Booting);
    assert!(m.may_enter_standby().is_err());
    let (mut m, _, _) = run(S, &monitor_armed());
    m.step(ON);
    m.step(Maintenance {
        on: true,
        for_: None,
    });
    assert!(m.maintenance(), "maintenance is kept while in standby");
}

#[test]
fn a_joining_host_whose_peer_is_in_standby_serves_p_alone() {
    let standby = Answer {
        role: Role::Standby.code(),
        ..PEER
    };
    let (mut m, _, _) = run(S, &[Start]);
    let n = names(&m.step(JoinDone {
        monitor: None,
        primary: None,
        peer: Some(standby),
    }));
    drop(m.step(Claimed {
        addr: Addr::Primary,
        ok: true,
    }));
    assert_eq!(m.role(), Role::Primary);
    assert_eq!(n, vec!["join_answered", "Claim(Primary)"]);
    // A peer that answers as anything else (or not at all) leaves the usual rule: claim M.
    for peer in [None, Some(PEER), Some(MON)] {
        let (mut m, _, _) = run(S, &[Start]);
        let n = names(&m.step(JoinDone {
            monitor: None,
            primary: None,
            peer,
        }));
        assert!(n.contains(&"Claim(Monitor)".to_string()), "{peer:?}: {n:?}");
    }
    // A "standby" answer that still holds an address is not believed.
    let holding = Answer {
        flags: FLAG_HOLDS_P,
        ..standby
    };
    let (mut m, _, _) = run(S, &[Start]);
    let n = names(&m.step(JoinDone {
        monitor: None,
        primary: None,
        peer: Some(holding),
    }));
    assert!(!n.contains(&"Claim(Primary)".to_string()), "{n:?}");
}

#[test]
fn a_peer_in_standby_is_never_fenced_a_failing_p_is_taken_without_a_fence() {
    // The fence's question before its power action: the decision is called back and P taken.
    let (mut m, _, _) = run(S, &monitor_armed());
    m.step(failed());
    let n = names(&m.step(super::tests::passed()));
    assert!(n.contains(&"Boot(Off)".to_string()), "{n:?}");
    let n = names(&m.step(PeerInStandby { epoch: 1 }));
    assert_eq!(
        n,
        vec![
            "CancelBoot",
            "peer_left",
            "role_changed",
            "StopMonitoring",
            "Release(Monitor)",
            "Claim(Primary)"
        ]
    );
    // Once the power action left, it cannot be called back: the answer changes nothing.
    let (mut m, _, _) = run(S, &monitor_armed());
    m.step(failed());
    m.step(super::tests::passed());
    m.step(BootAccepted);
    assert!(names(&m.step(PeerInStandby { epoch: 1 })).is_empty());
    assert_eq!(m.role(), Role::Booting);
    // A standby notice while P answers: taken at its first missed heartbeat.
    let (mut m, _, _) = run(S, &monitor_armed());
    let n = names(&m.step(PeerLeaving {
        role: Role::Standby.code(),
        epoch: 1,
    }));
    assert_eq!(n, vec!["peer_left", "Schedule(Handover, 14ms)"]);
}
