//! `boot.fence = "lease"` in the running pair, with a real `failover witness` on the switch:
//! a failed primary is taken over as soon as its lease is provably over, not when the BMC
//! reports Off; a witness that does not answer sends the takeover back to the BMC; a partition
//! between the two hosts only (both reach the witness) fences nothing. Times are printed,
//! never asserted.
use std::time::Instant;

use failover_harness::{
    events::HANG_GUARD,
    pair::{Host, Options, Pair},
};
use serde_json::Value;

const LEASE: &str = "40ms";

fn ts(v: &Value) -> u64 {
    v["ts_ns"].as_u64().expect("ts_ns")
}

fn detail(v: &Value) -> &str {
    v["detail"].as_str().unwrap_or("")
}

/// Whether the client gets an answer from `addr` within `secs`.
fn answers_within(pair: &Pair, addr: &str, secs: &str) -> bool {
    pair.client
        .command("ping")
        .args(["-c1", &format!("-W{secs}"), "-q", addr])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Pings until `addr` answers (each ping waits 20 ms).
fn until_answers(pair: &Pair, addr: &str) {
    let deadline = Instant::now() + HANG_GUARD;
    while !answers_within(pair, addr, "0.02") {
        assert!(Instant::now() < deadline, "P never answered");
    }
}

/// The client's neighbour entry for `addr`, set by hand (`lladdr`), or removed (`None`).
fn client_neighbour_set(pair: &Pair, addr: &str, lladdr: Option<&str>) {
    match lladdr {
        Some(mac) => pair.client.ip([
            "neigh",
            "replace",
            addr,
            "lladdr",
            mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ]),
        None => pair.client.ip(["neigh", "del", addr, "dev", "eth0"]),
    };
}

/// A started pair in lease mode, the primary's lease held and the monitor armed.
fn started(opts: Options) -> (Pair, Host, Host) {
    let pair = Pair::new(opts);
    pair.with_lease_fence(LEASE);
    let (primary, monitor) = pair.cold_start();
    let p = pair.p.clone();
    until_answers(&pair, &p);
    pair.wait_log(monitor, 0, "detection armed", |v| {
        v["message"] == "the primary answers: failure detection armed"
    });
    // The gate is attached after the claim, and a primary that fails before the witness
    // granted it a lease is fenced through the BMC (`Revocation::NoLease`).
    pair.wait_lease(primary);
    (pair, primary, monitor)
}

/// The BMC takes 5 s to power the frozen primary off; the monitor takes P as soon as the
/// witness revoked the lease and no grant can be outstanding, and resets the old primary
/// afterwards. Meanwhile the old primary still holds P on its interface, and its kernel does
/// not answer for it: a client that still sends to its MAC gets nothing.
#[test]
fn a_frozen_primary_is_taken_over_when_its_lease_is_over_not_when_the_bmc_says_off() {
    let (pair, primary, monitor) = started(Options {
        off_delay: "5",
        // P stays on the frozen host's interface until the BMC's off: the client, not the
        // interfaces, shows who answers.
        watch: false,
        ..Options::default()
    });
    let p = pair.p.clone();
    let mark = pair.mark();
    pair.signal(primary, libc::SIGSTOP);
    let taken = pair.wait_role(monitor, mark, "primary");
    let failed = pair.wait_event(monitor, mark, "primary_failed", |_| true);
    let revoked = pair.wait_event(monitor, mark, "lease_revoked", |_| true);
    let over = pair.wait_event(monitor, mark, "fence_confirmed", |v| {
        detail(v).contains("lease is over")
    });
    assert!(ts(&failed) <= ts(&revoked) && ts(&revoked) <= ts(&over) && ts(&over) <= ts(&taken));
    let reset = pair.wait_event(monitor, mark, "boot_requested", |v| {
        detail(v).contains("resetting the old primary")
    });
    assert!(
        ts(&taken) <= ts(&reset),
        "the reset comes after the takeover"
    );
    eprintln!(
        "TIMES freeze -> primary_failed {:.1} ms, -> lease_revoked {:.1} ms, -> P claimed (role primary) {:.1} ms",
        (ts(&failed) - mark) as f64 / 1e6,
        (ts(&revoked) - mark) as f64 / 1e6,
        (ts(&taken) - mark) as f64 / 1e6
    );
    // The new primary answers on P, while the BMC has not powered the old one off yet.
    until_answers(&pair, &p);
    assert!(
        !pair.emitted(monitor, mark, "boot_result", |v| detail(v)
            .starts_with("off")),
        "the BMC's off (5 s) is still under way"
    );
    assert!(pair.holds(primary, &p), "P is still on the frozen host");
    let old = pair.mac(primary);
    client_neighbour_set(&pair, &p, Some(&old));
    let old_answers = answers_within(&pair, &p, "0.2");
    client_neighbour_set(&pair, &p, None);
    assert!(
        !old_answers,
        "the old primary's kernel answered on P after its lease was revoked"
    );
    assert!(
        pair.holds(primary, &p),
        "the old primary still held P while the client asked it"
    );
    assert!(
        !pair.emitted(monitor, mark, "boot_result", |v| detail(v)
            .starts_with("off")),
        "... before its BMC powered it off"
    );
    until_answers(&pair, &p);
    // The reset goes on: off (5 s), then on.
    pair.wait_event(monitor, mark, "boot_result", |v| {
        detail(v).starts_with("on done")
    });
    assert_eq!(pair.fence_log(monitor), ["off", "status", "on"]);
    assert_eq!(pair.status(monitor)["role"], "primary");
}

/// The witness is down: the monitor's revoke goes unanswered, and the takeover waits for the
/// BMC's confirmed Off, as with `fence = "bmc"`.
#[test]
fn with_the_witness_down_the_takeover_waits_for_the_bmc() {
    let (mut pair, primary, monitor) = started(Options::default());
    let t = pair.mark();
    pair.witness_stop();
    pair.wait_event(primary, t, "witness_lost", |v| {
        detail(v).contains("witness")
    });
    let mark = pair.mark();
    pair.signal(primary, libc::SIGSTOP);
    let taken = pair.wait_role(monitor, mark, "primary");
    let lost = pair.wait_event(monitor, mark, "witness_lost", |v| {
        detail(v).contains("did not answer the revoke")
    });
    let off = pair.wait_event(monitor, mark, "boot_result", |v| {
        detail(v).starts_with("off done")
    });
    assert!(
        ts(&lost) <= ts(&off) && ts(&off) <= ts(&taken),
        "the BMC first"
    );
    assert!(!pair.emitted(monitor, mark, "lease_revoked", |_| true));
    eprintln!(
        "TIMES freeze -> P claimed after the BMC's off {:.1} ms",
        (ts(&taken) - mark) as f64 / 1e6
    );
    let (samples, both) = pair.stop_watch();
    assert!(samples > 0, "the watcher sampled");
    assert_eq!(both, 0, "P was held by both hosts in {both} samples");
}

/// The two hosts lose only each other (their switch ports isolated; both reach the witness
/// and the client): the monitor decides the primary failed, the witness refuses to revoke,
/// nothing is fenced and the primary keeps serving, with the witness's grants. Asked again
/// after `witness.recheck`, refused again.
#[test]
fn a_partition_between_the_two_hosts_only_fences_nothing() {
    let (mut pair, primary, monitor) = started(Options::default());
    let p = pair.p.clone();
    let mark = pair.mark();
    for h in Host::BOTH {
        pair.isolate(h, true);
    }
    let refused = pair.wait_event(monitor, mark, "revoke_refused", |_| true);
    let asked = |v: &Value| v["message"] == "asking the witness to revoke the primary's lease";
    pair.wait_log(monitor, ts(&refused), "a second revoke request", asked);
    // The monitor is `booting` while the witness considers it (an fsync away): judge it once
    // the second refusal brought it back.
    let again = pair.wait_event(monitor, ts(&refused), "primary_failed", |_| true);
    pair.wait_event(monitor, ts(&again), "role_changed", |v| {
        v["role"] == "monitor"
    });
    assert!(answers_within(&pair, &p, "0.2"), "the primary serves");
    assert_eq!(pair.status(monitor)["role"], "monitor");
    let st = pair.status(primary);
    assert_eq!(st["role"], "primary", "{st}");
    assert_eq!(st["lease"]["lapses"], 0, "{st}");
    assert!(!pair.emitted(primary, mark, "lease_lapsed", |_| true));
    assert!(!pair.emitted(monitor, mark, "boot_requested", |_| true));
    assert!(pair.fence_log(monitor).is_empty(), "nobody fenced");
    // Joined again: the monitor sees the primary answer and stands down.
    let joined = pair.mark();
    for h in Host::BOTH {
        pair.isolate(h, false);
    }
    pair.wait_event(monitor, joined, "fence_cancelled", |v| {
        detail(v).contains("refusal stood")
    });
    assert!(!pair.emitted(monitor, mark, "boot_requested", |_| true));
    let (samples, both) = pair.stop_watch();
    assert!(samples > 0, "the watcher sampled");
    assert_eq!(both, 0, "P was held by both hosts in {both} samples");
}
