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
