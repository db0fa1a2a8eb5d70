//! The primary's lease in the running pair (`boot.lease`, a real `failover witness` on the
//! switch): the lease lapses in the primary's kernel when its daemon is frozen, either grantor
//! alone keeps it, and with both gone it lapses. The monitor's fence is made to fail here, so
//! that only the lease decides whether P answers. Times are printed, never asserted.
use std::time::Instant;

use failover_harness::{
    events::HANG_GUARD,
    mono_ns,
    pair::{Options, Pair},
};

const LEASE: &str = "40ms";

fn pair() -> Pair {
    let pair = Pair::new(Options {
        fence_fails: true,
        ..Options::default()
    });
    pair.with_witness(LEASE);
    pair
}

/// Whether the client gets an answer from `addr` within 200 ms.
fn answers(pair: &Pair, addr: &str) -> bool {
    answers_within(pair, addr, "0.2")
}

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

/// Pings until `addr` answers as `want` (each ping waits 20 ms for its answer); returns when
/// the first ping that did was sent.
fn until_answers(pair: &Pair, addr: &str, want: bool) -> u64 {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let sent = mono_ns();
        if answers_within(pair, addr, "0.02") == want {
            return sent;
        }
        assert!(
            Instant::now() < deadline,
            "P never became answered = {want}"
        );
    }
}

#[test]
fn a_frozen_primary_stops_answering_on_p_when_its_lease_lapses() {
    let pair = pair();
    let (primary, _) = pair.cold_start();
    let p = pair.p.clone();
    until_answers(&pair, &p, true);
    // P answers from the claim on; the gate is attached after it, in the background. Frozen
    // before the attach, the host would serve on unguarded (CI saw exactly that race).
    pair.wait_lease(primary);
    let frozen = mono_ns();
    pair.signal(primary, libc::SIGSTOP);
    let stopped = until_answers(&pair, &p, false);
    eprintln!(
        "TIMES freeze -> first unanswered ping sent {:.1} ms (lease {LEASE}; pings every ~3 ms, 20 ms deadline)",
        (stopped - frozen) as f64 / 1e6
    );
    assert!(
        pair.holds(primary, &p),
        "P is still on the frozen host's interface"
    );
    pair.signal(primary, libc::SIGCONT);
    let back = pair.wait_event(primary, frozen, "lease_restored", |_| true);
    pair.wait_event(primary, frozen, "lease_lapsed", |v| {
        v["ts_ns"].as_u64() <= back["ts_ns"].as_u64()
    });
    until_answers(&pair, &p, true);
    assert!(pair.status(primary)["lease"]["lapses"].as_u64() >= Some(1));
}

#[test]
fn either_grantor_alone_keeps_the_lease_and_with_both_gone_it_lapses() {
    let pair = pair();
    let (primary, monitor) = pair.cold_start();
    let p = pair.p.clone();
    until_answers(&pair, &p, true);
    pair.wait_lease(primary);
    // The witness dies: the monitor's grants keep the lease.
    let t = mono_ns();
    pair.witness_stop();
    let lost = pair.wait_event(primary, t, "witness_lost", |v| {
        v["detail"].as_str().unwrap_or("").contains("witness")
    });
    assert!(answers(&pair, &p), "the monitor alone keeps the lease");
    assert!(
        !pair.emitted(primary, t, "lease_lapsed", |_| true),
        "no lapse"
    );
    // The witness is back and the monitor dies: the witness's grants keep it.
    pair.witness_start();
    let t = mono_ns().max(lost["ts_ns"].as_u64().unwrap_or(0));
    pair.kill9(monitor);
    pair.wait_event(primary, t, "witness_lost", |v| {
        v["detail"].as_str().unwrap_or("").contains("monitor")
    });
    assert!(answers(&pair, &p), "the witness alone keeps the lease");
    assert!(
        !pair.emitted(primary, t, "lease_lapsed", |_| true),
        "no lapse"
    );
    let st = pair.status(primary);
    assert!(
        st["lease"]["witness_grant_age_ms"].as_f64() < Some(1000.0),
        "{st}"
    );
    // Both gone: the lease lapses and the kernel stops P, the daemon running.
    let t = mono_ns();
    pair.witness_stop();
    pair.wait_event(primary, t, "lease_lapsed", |_| true);
    until_answers(&pair, &p, false);
    assert!(
        pair.holds(primary, &p),
        "P stays on the interface; the gate stops it"
    );
    let st = pair.status(primary);
    assert_eq!(st["role"], "primary", "{st}");
    // The witness back: the lease again.
    let t = mono_ns();
    pair.witness_start();
    pair.wait_event(primary, t, "lease_restored", |_| true);
    until_answers(&pair, &p, true);
}

/// A fenced takeover with `boot.lease`: the new primary installs its gate (after the
/// monitor's XDP program is off the interface) and keeps a lease from the witness, then from
/// the fenced host too once it rejoins as monitor.
#[test]
fn a_takeover_moves_the_lease_to_the_new_primary() {
    let pair = Pair::new(Options::default());
    pair.with_witness(LEASE);
    let (primary, monitor) = pair.cold_start();
    let p = pair.p.clone();
    until_answers(&pair, &p, true);
    pair.wait_log(monitor, 0, "detection armed", |v| {
        v["message"] == "the primary answers: failure detection armed"
    });
    let mark = pair.mark();
    pair.port(primary, false);
    pair.wait_role(monitor, mark, "primary");
    until_answers(&pair, &p, true);
    // The gate is attached and the keeper started after the claim (P is served meanwhile).
    pair.wait_status(monitor, "a lease granted by the witness", |st| {
        st["lease"]["active"] == true && st["lease"]["witness_grant_age_ms"].as_f64() < Some(1000.0)
    });
    assert!(
        !pair.emitted(monitor, mark, "daemon_error", |_| true),
        "the gate was installed"
    );
    // The fenced host comes back as monitor and grants too.
    pair.port(primary, true);
    pair.wait_event(monitor, mark, "boot_result", |v| {
        v["detail"].as_str().unwrap_or("").starts_with("on done")
    });
    let back = pair.mark();
    pair.start(primary);
    pair.wait_role(primary, back, "monitor");
    pair.wait_log(monitor, back, "the lease grantor answers again", |v| {
        v["message"] == "the lease grantor answers again" && v["grantor"] == "monitor"
    });
    let st = pair.status(monitor);
    assert!(
        st["lease"]["monitor_grant_age_ms"].as_f64() < Some(1000.0),
        "{st}"
    );
}
