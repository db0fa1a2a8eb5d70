//! The failover lab under every fault kind of `cargo xtask demo --fault` (docs/lab.md): real
//! daemons, lab BMCs that really power hosts off and on, a client that flags split brain.
//!
//! Invariants asserted: no split brain reported by the client; exactly one holder of P once
//! settled (final roles primary + monitor); the rejoin roles of claims 12 (takeover) and 11
//! (recovery only); no takeover while the BMC is unreachable; no failover under 5 % loss or
//! CPU saturation while the primary is healthy. Times are printed, never asserted.
use std::time::Duration;

use failover_tests::lab::{self, LabOptions};
use serde_json::Value;

fn opts(takeover: bool) -> LabOptions {
    failover_tests::require_root("lab");
    let bin = failover_tests::failover_bin();
    LabOptions {
        takeover,
        ..LabOptions::new(bin.clone(), bin.with_file_name("failover-lab"))
    }
}

fn scenario(fault: &str, takeover: bool) -> Value {
    let report = lab::scenario(&opts(takeover), fault, Duration::from_secs(4));
    eprintln!("{fault} (takeover {takeover}): {report}");
    report["summary"].clone()
}

fn assert_settled(s: &Value, primary: &str, monitor: &str) {
    assert_eq!(s["split_brain"], 0, "no split brain: {s}");
    assert_eq!(s["final_roles"][primary], "primary", "{s}");
    assert_eq!(s["final_roles"][monitor], "monitor", "{s}");
}

fn takeover_case(fault: &str) -> Value {
    let s = scenario(fault, true);
    assert_settled(&s, "b", "a");
    assert_eq!(
        s["claim12"], true,
        "the fenced host rejoined as monitor: {s}"
    );
    assert!(s["takeover_ms"].as_f64().is_some(), "{s}");
    // Claims 14, 21: B served the data from its last copy of A's.
    assert!(s["sync"]["copies"].as_u64() >= Some(2), "{s}");
    assert_eq!(s["sync"]["served_matches_copy"], true, "{s}");
    s
}

#[test]
fn link_cut_takeover_and_recovery_only() {
    takeover_case("link");
    let s = scenario("link", false);
    assert_settled(&s, "a", "b");
    assert_eq!(
        s["claim11"], true,
        "rebooted primary came back as primary: {s}"
    );
}

#[test]
fn freeze_takeover_and_recovery_only() {
    takeover_case("freeze");
    let s = scenario("freeze", false);
    assert_settled(&s, "a", "b");
    assert_eq!(s["claim11"], true, "{s}");
}

#[test]
fn one_way_partition_is_taken_over() {
    takeover_case("oneway");
}

#[test]
fn killed_daemon_is_taken_over() {
    takeover_case("kill9");
}

#[test]
fn no_takeover_while_the_bmc_is_unreachable() {
    let s = takeover_case("bmc-down");
    assert_eq!(
        s["takeover_while_bmc_down"], false,
        "P stayed unclaimed and unserved: {s}"
    );
}

#[test]
fn slow_bmc_still_fences_before_the_takeover() {
    let s = takeover_case("bmc-slow");
    assert!(s["fence_ms"].as_f64() <= s["takeover_ms"].as_f64(), "{s}");
}

#[test]
fn five_percent_loss_causes_no_failover() {
    let s = scenario("loss", true);
    assert_eq!(s["false_takeovers"], 0, "{s}");
    assert_settled(&s, "a", "b");
}

#[test]
fn cpu_saturation_causes_no_failover() {
    let s = scenario("cpu", true);
    assert_eq!(s["false_takeovers"], 0, "{s}");
    assert_settled(&s, "a", "b");
}

#[test]
fn a_second_lab_refuses_to_start_while_one_is_up() {
    let o = opts(true);
    let leftover = failover_tests::NetNs::adopt("fo-lab-sw");
    failover_tests::run("ip", ["netns", "add", "fo-lab-sw"]);
    let Err(err) = std::panic::catch_unwind(|| lab::Lab::start(o)) else {
        panic!("a lab started although fo-lab-sw existed");
    };
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("previous lab is still up") && msg.contains("fo-lab-sw"),
        "{msg}"
    );
    drop(leftover);
    assert!(
        lab::leftovers().is_empty(),
        "the leftover namespace was removed"
    );
}
