//! The failover lab under every fault kind of `cargo xtask demo --fault` (docs/lab.md): real
//! daemons, lab BMCs that really power hosts off and on, a client that flags split brain.
//!
//! Invariants asserted: no split brain reported by the client; exactly one holder of P once
//! settled (final roles primary + monitor); the rejoin roles of claims 12 (takeover) and 11
//! (recovery only); no takeover while the BMC is unreachable; no failover under 5 % loss or
//! CPU saturation while the primary is healthy. Times are printed, never asserted.
use std::time::Duration;

use failover_harness::{failover_bin, lab_bin, pair::Host, require_root, run, NetNs};
use failover_lab::{
    fault::Fault,
    lab::{leftovers, Lab, LabOptions},
    report::ScenarioSummary,
    scenario::scenario,
};

fn opts(takeover: bool) -> LabOptions {
    require_root("lab");
    LabOptions {
        takeover,
        ..LabOptions::new(failover_bin(), lab_bin())
    }
}

fn run_scenario(fault: Fault, takeover: bool) -> ScenarioSummary {
    let report = scenario(&opts(takeover), fault, Duration::from_secs(4));
    eprintln!(
        "{fault} (takeover {takeover}): {}",
        serde_json::to_string(&report).unwrap()
    );
    report.summary
}

fn assert_settled(s: &ScenarioSummary, primary: Host, monitor: Host) {
    assert_eq!(s.split_brain, 0, "no split brain: {s:?}");
    assert_eq!(s.final_roles.of(primary), Some("primary"), "{s:?}");
    assert_eq!(s.final_roles.of(monitor), Some("monitor"), "{s:?}");
}

fn takeover_case(fault: Fault) -> ScenarioSummary {
    let s = run_scenario(fault, true);
    assert_settled(&s, Host::B, Host::A);
    assert_eq!(
        s.claim12,
        Some(true),
        "the fenced host rejoined as monitor: {s:?}"
    );
    assert!(s.takeover_ms.is_some(), "{s:?}");
    // Claims 14, 21: B served the data from its last copy of A's.
    let sync = s.sync.as_ref().expect("a sync report with takeover");
    assert!(sync.copies >= 2, "{s:?}");
    assert!(sync.served_matches_copy, "{s:?}");
    s
}

#[test]
fn link_cut_takeover_and_recovery_only() {
    takeover_case(Fault::Link);
    let s = run_scenario(Fault::Link, false);
    assert_settled(&s, Host::A, Host::B);
    assert_eq!(
        s.claim11,
        Some(true),
        "rebooted primary came back as primary: {s:?}"
    );
}

#[test]
fn freeze_takeover_and_recovery_only() {
    takeover_case(Fault::Freeze);
    let s = run_scenario(Fault::Freeze, false);
    assert_settled(&s, Host::A, Host::B);
    assert_eq!(s.claim11, Some(true), "{s:?}");
}

#[test]
fn one_way_partition_is_taken_over() {
    takeover_case(Fault::Oneway);
}

#[test]
fn killed_daemon_is_taken_over() {
    takeover_case(Fault::Kill9);
}

#[test]
fn no_takeover_while_the_bmc_is_unreachable() {
    let s = takeover_case(Fault::BmcDown);
    assert_eq!(
        s.takeover_while_bmc_down,
        Some(false),
        "P stayed unclaimed and unserved: {s:?}"
    );
}

#[test]
fn slow_bmc_still_fences_before_the_takeover() {
    let s = takeover_case(Fault::BmcSlow);
    assert!(s.fence_ms <= s.takeover_ms, "{s:?}");
}

#[test]
fn five_percent_loss_causes_no_failover() {
    let s = run_scenario(Fault::Loss, true);
    assert_eq!(s.false_takeovers, Some(0), "{s:?}");
    assert_settled(&s, Host::A, Host::B);
}

#[test]
fn cpu_saturation_causes_no_failover() {
    let s = run_scenario(Fault::Cpu, true);
    assert_eq!(s.false_takeovers, Some(0), "{s:?}");
    assert_settled(&s, Host::A, Host::B);
}

#[test]
fn a_second_lab_refuses_to_start_while_one_is_up() {
    let o = opts(true);
    let leftover = NetNs::adopt("fo-lab-sw");
    run("ip", ["netns", "add", "fo-lab-sw"]);
    let Err(err) = std::panic::catch_unwind(|| Lab::start(o)) else {
        panic!("a lab started although fo-lab-sw existed");
    };
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("previous lab is still up") && msg.contains("fo-lab-sw"),
        "{msg}"
    );
    drop(leftover);
    assert!(leftovers().is_empty(), "the leftover namespace was removed");
}

// ------------------------------------------------------------------ never fence a healthy primary

fn safety_case(fault: Fault, takeover: bool) -> ScenarioSummary {
    let report = scenario(&opts(takeover), fault, Duration::from_secs(2));
    eprintln!(
        "{fault} (takeover {takeover}): {}",
        serde_json::to_string(&report).unwrap()
    );
    let s = report.summary;
    assert_eq!(s.split_brain, 0, "no split brain: {s:?}");
    s
}

#[test]
fn the_monitors_own_link_cut_is_no_reason_to_fence() {
    let s = safety_case(Fault::MonitorLink, true);
    assert_eq!(s.power_offs, Some(0), "nobody powered off: {s:?}");
    assert_eq!(s.false_takeovers, Some(0), "{s:?}");
    assert!(
        s.isolated >= Some(1),
        "the monitor saw it is the cut-off one: {s:?}"
    );
    assert_settled(&s, Host::A, Host::B);
}

#[test]
fn no_fence_while_the_witness_is_unreachable_then_the_usual_takeover() {
    let s = safety_case(Fault::WitnessDown, true);
    assert!(s.isolated >= Some(1), "{s:?}");
    assert_eq!(s.figures["takeover_while_isolated"], false, "{s:?}");
    assert_eq!(s.figures["fences_while_isolated"], 0, "{s:?}");
    assert_eq!(s.claim12, Some(true), "{s:?}");
    assert_settled(&s, Host::B, Host::A);
}

#[test]
fn a_planned_restart_hands_over_without_a_fence() {
    let s = safety_case(Fault::Restart, true);
    assert_eq!(s.power_offs, Some(0), "{s:?}");
    assert_eq!(
        s.false_takeovers,
        Some(0),
        "a handover, not a failure: {s:?}"
    );
    assert_eq!(s.peer_left, Some(true), "{s:?}");
    assert_settled(&s, Host::B, Host::A);
    // Recovery only: the monitor waits for the restarted primary.
    let s = safety_case(Fault::Restart, false);
    assert_eq!(s.power_offs, Some(0), "{s:?}");
    assert_eq!(s.false_takeovers, Some(0), "{s:?}");
    assert_settled(&s, Host::A, Host::B);
}

#[test]
fn a_pending_fence_is_cancelled_when_the_primary_is_healthy_again() {
    let s = safety_case(Fault::BmcFlap, true);
    assert!(s.fence_cancelled >= Some(1), "{s:?}");
    assert_eq!(s.power_offs, Some(0), "nothing powered off: {s:?}");
    assert_settled(&s, Host::A, Host::B);
}

#[test]
fn a_heavy_copy_never_fences_the_primary() {
    let s = safety_case(Fault::CopyLoad, true);
    assert_eq!(s.false_takeovers, Some(0), "{s:?}");
    assert_eq!(s.power_offs, Some(0), "{s:?}");
    assert_eq!(s.figures["copy_failures"], 0, "{s:?}");
    assert_settled(&s, Host::A, Host::B);
}

// ------------------------------------------------------------------ one holder of P

/// A fence that did not work: the BMC reports Off and leaves A running (with everything A
/// sends lost, so B's duplicate-address probe cannot see it). B takes P and tells A; A, which
/// still hears the segment, gives P up at once (`demoted`) and, once its frames flow again,
/// rejoins as monitor. The client never hears A again after that.
#[test]
fn a_stale_primary_steps_down_when_the_bmc_lied() {
    let s = safety_case(Fault::BmcLies, true);
    assert_eq!(s.figures["a_holds_p_after_stepping_down"], false, "{s:?}");
    assert_eq!(s.figures["answers_from_a_after_stepdown"], 0, "{s:?}");
    assert_eq!(s.power_offs, Some(0), "the BMC powered nothing off: {s:?}");
    assert_settled(&s, Host::B, Host::A);
}
