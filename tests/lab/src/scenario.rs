//! One lab scenario: steady state, a fault on A, and what follows, as a [`Report`].
//!
//! With takeover: the fault on A, detection, the fence through A's BMC, the takeover by B, the
//! client served by B, A powered on, A joining as monitor (claim 12). Recovery only: B reboots
//! A and stays monitor; A comes back as primary (claim 11). `loss` and `cpu` leave the primary
//! healthy: the scenario checks that nothing fails over.
use std::time::{Duration, Instant};

use failover_harness::{
    events::{detail, ts},
    mono_ns,
    pair::Host,
};
use serde_json::Value;

use crate::{
    fault::Fault,
    lab::{interrupted, Lab, LabOptions, P},
    report::{ms_since, Report, ScenarioSummary},
};

/// Whether an event is the claim of P (not M).
fn claims_p(v: &Value) -> bool {
    detail(v).contains("primary")
}

/// Runs one scenario on a fresh lab. `harmless_for` is the observation window of the faults
/// that leave the primary healthy.
pub fn scenario(opts: &LabOptions, fault: Fault, harmless_for: Duration) -> Report {
    let mut opts = opts.clone();
    if fault == Fault::CopyLoad {
        // A copy every second (500 heartbeats of 2 ms), as an operator would set it.
        opts.sync_every = 500;
    }
    let opts = &opts;
    let mut lab = Lab::start(opts.clone());
    if opts.show_config {
        eprintln!("{}", lab.describe());
    }
    let answered_by = |lab: &Lab, host: &str, after: u64| {
        lab.answers()
            .into_iter()
            .find(|v| v["host"] == host && ts(v) > after)
    };
    // Steady state: A serves the client.
    let start = mono_ns();
    lab.wait_for("the client answered by a", || {
        let n = lab
            .answers()
            .iter()
            .filter(|v| v["host"] == "a" && ts(v) > start)
            .count();
        (n >= 50).then_some(())
    });
    // ... and B holds copies of A's data (claims 14, 21): two completed copies.
    let first = lab.wait_event(Host::B, "sync_done", |_| true, start);
    lab.wait_event(Host::B, "sync_done", |v| ts(v) > ts(&first), start);
    if opts.lease {
        // ... and A holds a lease the witness granted (before that the witness vouches for
        // no revoke, and the takeover would wait for the BMC).
        lab.pair.wait_lease(Host::A);
    }
    if !opts.fault_jitter.is_zero() {
        let ns = opts.fault_jitter.as_nanos() as u64;
        std::thread::sleep(Duration::from_nanos(mono_ns() % ns));
    }
    if fault.safety() {
        return crate::safety::run(&mut lab, opts, fault, harmless_for);
    }
    lab.inject(Host::A, fault);
    let t0 = lab.fault_ns.expect("fault time");
    let mut timeline: Vec<(String, Option<u64>)> = vec![("fault on a".into(), Some(t0))];
    let mut summary = ScenarioSummary::new(fault, opts.takeover);
    if fault == Fault::BmcDown {
        // No confirmation, no takeover: two failed attempts, P unclaimed and unserved; then
        // the BMC comes back and the next attempt goes through.
        let failed_name = if opts.takeover {
            "fence_failed"
        } else {
            "boot_failed"
        };
        let f1 = lab.wait_event(Host::B, failed_name, |_| true, t0);
        lab.wait_event(Host::B, failed_name, |v| ts(v) > ts(&f1), t0);
        let claimed = lab.pair.emitted(Host::B, t0, "address_claimed", claims_p);
        let served = lab.answers().iter().any(|v| v["host"] == "b" && ts(v) > t0);
        summary.takeover_while_bmc_down = Some(claimed || served);
        summary.fence_failed_events = Some(2);
        timeline.push((format!("{failed_name} (BMC unreachable)"), Some(ts(&f1))));
        lab.repair_bmc(Host::A);
        timeline.push(("BMC of a reachable again".into(), Some(mono_ns())));
    }

    if fault.harmless() {
        // A fixed observation window: nothing may fail over during it.
        let until = Instant::now() + harmless_for;
        while Instant::now() < until && !interrupted() {
            std::thread::sleep(Duration::from_millis(50));
        }
        summary.false_takeovers = Some(
            lab.events(Host::B)
                .iter()
                .filter(|v| v["event"] == "primary_failed" && ts(v) > t0)
                .count() as u64,
        );
        lab.repair(Host::A, fault);
        summary.answers_from_a_during_fault = Some(
            lab.answers()
                .iter()
                .filter(|v| v["host"] == "a" && ts(v) > t0)
                .count() as u64,
        );
        summary.split_brain = lab.split_brain(t0);
        summary.final_roles = lab.roles();
        return Report {
            summary,
            timeline: vec![("fault on a".into(), Some(0.0))],
        };
    }

    let a_off = |lab: &Lab| {
        lab.bmc_log(Host::A)
            .into_iter()
            .find(|v| v["power_state"] == "Off" && ts(v) > t0)
    };
    let mut claimed_p = None;
    if opts.takeover {
        let claimed = lab.wait_event(Host::B, "address_claimed", claims_p, t0);
        claimed_p = Some(ts(&claimed));
        let off = lab.wait_for("a powered off by its BMC", || a_off(&lab));
        lab.repair(Host::A, fault);
        let first_b = lab.wait_for("an answer from b", || answered_by(&lab, "b", t0));
        timeline.push(("first client answer from b".into(), Some(ts(&first_b))));
        let on = lab.wait_for("a powered on", || {
            lab.bmc_log(Host::A)
                .into_iter()
                .find(|v| v["power_state"] == "On" && ts(v) > ts(&off))
        });
        let joined = lab.wait_event(Host::A, "role_changed", |v| v["role"] == "monitor", ts(&on));
        let silent = lab.pair.emitted(Host::A, ts(&on), "join_silent", |_| true);
        summary.claim12 =
            Some(silent && lab.status(Host::B).is_some_and(|s| s["role"] == "primary"));
        timeline.push(("a powered on (BMC)".into(), Some(ts(&on))));
        timeline.push(("a joined as monitor (claim 12)".into(), Some(ts(&joined))));
    } else {
        let reboot = lab.wait_event(Host::B, "boot_requested", |v| v["detail"] == "reboot", t0);
        let off = lab.wait_for("a powered off by its BMC", || a_off(&lab));
        lab.repair(Host::A, fault);
        let primary = lab.primary_again(Host::A, ts(&off));
        let answered = lab
            .pair
            .emitted(Host::A, ts(&off), "join_answered", |_| true);
        let b_took = lab.pair.emitted(Host::B, t0, "address_claimed", claims_p);
        summary.claim11 = Some(answered && !b_took);
        lab.wait_for("an answer from a after its reboot", || {
            answered_by(&lab, "a", ts(&primary))
        });
        timeline.push(("restart requested by b".into(), Some(ts(&reboot))));
        timeline.push(("a powered off (BMC)".into(), Some(ts(&off))));
        timeline.push(("a primary again (claim 11)".into(), Some(ts(&primary))));
    }
    // An observation window, not synchronisation: the client keeps asking a little past the
    // end, so that a late answer from the old primary would be seen.
    std::thread::sleep(Duration::from_millis(300));

    let eb = lab.events(Host::B);
    let find = |name: &str, pred: &dyn Fn(&Value) -> bool| {
        eb.iter()
            .find(|v| v["event"] == name && ts(v) > t0 && pred(v))
            .map(ts)
    };
    let failed = find("primary_failed", &|_| true);
    let last_reply = eb
        .iter()
        .find(|v| v["event"] == "last_reply" && ts(v) > t0)
        .and_then(|v| v["at_ns"].as_u64());
    let fenced = find("fence_confirmed", &|_| true);
    let garp = find("garp_sent", &|v| detail(v).contains(P));
    // fence = "lease": the reset's off, after the takeover.
    let off_sent = find("boot_requested", &|v| {
        detail(v).starts_with("off") || v["detail"] == "reboot"
    });
    let answers = lab.answers();
    let last_a = answers
        .iter()
        .filter(|v| {
            v["host"] == "a" && ts(v) <= t0 + 1_000_000_000 && ts(v) < failed.unwrap_or(u64::MAX)
        })
        .map(ts)
        .max();
    let first_new = answers
        .iter()
        .filter(|v| ts(v) > t0 && (v["host"] == "b" || !opts.takeover))
        .filter(|v| opts.takeover || ts(v) > failed.unwrap_or(0))
        .map(ts)
        .min();
    timeline.push(("last client answer from a".into(), last_a));
    timeline.push((
        "last heartbeat answered in time (XDP stamp on b)".into(),
        last_reply,
    ));
    timeline.push(("primary_failed (b)".into(), failed));
    if opts.takeover {
        timeline.push(("ForceOff sent (b)".into(), off_sent));
        let fenced_label = if opts.lease {
            "lease over: revoked, no grant outstanding (b)"
        } else {
            "Off confirmed (b)"
        };
        timeline.push((fenced_label.into(), fenced));
        if opts.lease {
            let revoked = find("lease_revoked", &|_| true);
            timeline.push(("witness revoked the lease (b)".into(), revoked));
            let off = lab
                .bmc_log(Host::A)
                .into_iter()
                .find(|v| v["power_state"] == "Off" && ts(v) > t0)
                .map(|v| ts(&v));
            timeline.push(("a powered off by its BMC (the reset)".into(), off));
        }
        timeline.push(("P claimed (b)".into(), claimed_p));
        timeline.push(("GARP/NA burst done (b)".into(), garp));
        summary.sync = Some(lab.sync_report(t0, &answers));
    }
    timeline.sort_by_key(|(_, t)| t.unwrap_or(u64::MAX));
    summary.detect_ms = ms_since(t0, failed);
    summary.fence_ms = ms_since(t0, fenced);
    summary.takeover_ms = ms_since(t0, claimed_p);
    summary.outage_ms = match (last_a, first_new) {
        (Some(a), Some(b)) if b > a => Some(((b - a) as f64 / 1e5).round() / 10.0),
        _ => None,
    };
    summary.split_brain = lab.split_brain(t0);
    summary.both_answered_ms = crate::report::both_answered_ms(&answers, t0, "a", "b");
    summary.final_roles = lab.roles();
    Report {
        summary,
        timeline: timeline
            .into_iter()
            .map(|(label, t)| (label, ms_since(t0, t)))
            .collect(),
    }
}
