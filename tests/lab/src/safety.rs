//! The scenarios in which the primary must *not* be fenced (or only once its failure is
//! shown): the monitor's own link cut, the witness unreachable, a planned restart, a fence
//! whose reason went away, and a heavy data copy; and the one in which a fence did not work
//! (a BMC that lies), where the old primary must step down. Each starts from the steady state the
//! generic scenario reaches; each counts the power-offs, the isolation and cancel events, and
//! times what it is about in ms from its fault.
use std::time::{Duration, Instant};

use failover_harness::{
    events::{detail, ts},
    mono_ns,
    pair::Host,
};
use serde_json::{json, Value};

use crate::{
    fault::{daemon_pids, Fault},
    lab::{interrupted, Lab, LabOptions, P},
    report::{ms_since, Report, ScenarioSummary},
};

/// Whether an event is the claim of P (not M).
fn claims_p(v: &Value) -> bool {
    detail(v).contains("primary")
}

impl Lab {
    fn count(&self, h: Host, since: u64, name: &str) -> u64 {
        self.events(h)
            .iter()
            .filter(|v| v["event"] == name && ts(v) > since)
            .count() as u64
    }

    /// Power-offs of `h` by its BMC since `t0`.
    fn offs(&self, h: Host, t0: u64) -> u64 {
        self.bmc_log(h)
            .iter()
            .filter(|v| v["power_state"] == "Off" && ts(v) > t0)
            .count() as u64
    }

    /// The client's first answer from `host` after `t`.
    fn first_answer(&self, host: &str, t: u64) -> Option<u64> {
        self.answers()
            .iter()
            .filter(|v| v["host"] == host && ts(v) > t)
            .map(ts)
            .min()
    }

    /// The longest time without an answer to the client between `from` and `to`, ms.
    fn longest_gap_ms(&self, from: u64, to: u64) -> Option<f64> {
        let mut t: Vec<u64> = self
            .answers()
            .iter()
            .map(ts)
            .filter(|t| (from..=to).contains(t))
            .collect();
        t.sort_unstable();
        t.windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .map(|g| (g as f64 / 1e5).round() / 10.0)
    }

    /// Watches for `d` (an observation window, not synchronisation: nothing may happen).
    fn observe(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !interrupted() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs the safety scenario `fault` on `lab`, which is in steady state (A primary, B monitor
/// with copies of A's data); `window` is how long nothing may happen where that is the test.
pub fn run(lab: &mut Lab, opts: &LabOptions, fault: Fault, window: Duration) -> Report {
    let mut s = ScenarioSummary::new(fault, opts.takeover);
    let mut timeline: Vec<(String, Option<u64>)> = Vec::new();
    let mut fig = serde_json::Map::new();
    let steal0 = steal_ms();
    // The monitor's probe counters before the copy load, so its figures cover the copies only.
    let mut before = None;
    let t0 = match fault {
        Fault::CopyLoad => {
            // The copy load starts with the data that makes each copy heavy.
            before = lab.metrics(Host::B);
            let t0 = mono_ns();
            let n = fill_data(lab, Host::A);
            fig.insert("data_mib".into(), json!(n >> 20));
            t0
        }
        _ => {
            lab.inject(Host::A, fault);
            lab.fault_ns.expect("fault time")
        }
    };
    timeline.push((format!("{fault} (fault)"), Some(t0)));
    match fault {
        Fault::MonitorLink => {
            let iso = lab.wait_event(Host::B, "isolated", |_| true, t0);
            timeline.push(("isolated (b): no fence".into(), Some(ts(&iso))));
            lab.observe(window);
            let repaired = mono_ns();
            lab.repair(Host::A, fault);
            timeline.push(("b's link back".into(), Some(repaired)));
            let ended = lab.wait_event(Host::B, "isolation_ended", |_| true, repaired);
            let garp = lab.wait_event(Host::B, "garp_sent", |_| true, repaired);
            let answer = lab.wait_for("an answer after the link returned", || {
                lab.first_answer("a", repaired)
            });
            timeline.push(("isolation_ended (b)".into(), Some(ts(&ended))));
            timeline.push(("M announced again (b)".into(), Some(ts(&garp))));
            timeline.push(("first client answer after".into(), Some(answer)));
            fig.insert(
                "link_back_to_isolation_ended_ms".into(),
                json!(ms_since(repaired, Some(ts(&ended)))),
            );
            fig.insert(
                "link_back_to_client_answer_ms".into(),
                json!(ms_since(repaired, Some(answer))),
            );
            fig.insert(
                "longest_client_gap_ms".into(),
                json!(lab.longest_gap_ms(t0, mono_ns())),
            );
        }
        Fault::WitnessDown => {
            let iso = lab.wait_event(Host::B, "isolated", |_| true, t0);
            timeline.push(("isolated (b): no fence".into(), Some(ts(&iso))));
            lab.observe(window);
            let claimed_while = lab.pair.emitted(Host::B, t0, "address_claimed", claims_p);
            let fenced_while = lab.count(Host::B, t0, "boot_requested");
            fig.insert("takeover_while_isolated".into(), json!(claimed_while));
            fig.insert("fences_while_isolated".into(), json!(fenced_while));
            let back = mono_ns();
            lab.unblock_witness();
            timeline.push(("witness answers again".into(), Some(back)));
            // Now the monitor can show the primary is the broken side: the usual recovery.
            let failed = lab.wait_event(Host::B, "primary_failed", |_| true, back);
            timeline.push(("primary_failed (b)".into(), Some(ts(&failed))));
            fig.insert(
                "witness_back_to_primary_failed_ms".into(),
                json!(ms_since(back, Some(ts(&failed)))),
            );
            if opts.takeover {
                let fenced = lab.wait_event(Host::B, "fence_confirmed", |_| true, back);
                let claimed = lab.wait_event(Host::B, "address_claimed", claims_p, back);
                timeline.push(("fence_confirmed (b)".into(), Some(ts(&fenced))));
                timeline.push(("P claimed (b)".into(), Some(ts(&claimed))));
                lab.repair(Host::A, fault);
                rejoin_as_monitor(lab, t0, &mut timeline, &mut s);
            } else {
                let off = lab.wait_for("a restarted by its BMC", || {
                    lab.bmc_log(Host::A)
                        .into_iter()
                        .find(|v| v["power_state"] == "Off" && ts(v) > back)
                });
                lab.repair(Host::A, fault);
                let primary = lab.primary_again(Host::A, ts(&off));
                timeline.push(("a primary again (claim 11)".into(), Some(ts(&primary))));
                s.claim11 = Some(true);
            }
        }
        Fault::Restart => {
            let left = lab.wait_event(Host::B, "peer_left", |_| true, t0);
            lab.wait_for("a's daemon gone", || {
                daemon_pids(lab.pair.ns(Host::A).name())
                    .is_empty()
                    .then_some(())
            });
            timeline.push(("peer_left (b)".into(), Some(ts(&left))));
            s.peer_left = Some(true);
            let (server, served_from) = if opts.takeover {
                // A handover: B takes P without a fence; A comes back as monitor.
                let claimed = lab.wait_event(Host::B, "address_claimed", claims_p, t0);
                timeline.push(("P claimed (b), no fence".into(), Some(ts(&claimed))));
                s.takeover_ms = ms_since(t0, Some(ts(&claimed)));
                ("b", ts(&claimed))
            } else {
                ("a", t0)
            };
            let restarted = mono_ns();
            lab.start_daemon(Host::A);
            let role = if opts.takeover { "monitor" } else { "primary" };
            let joined = lab.wait_event(Host::A, "role_changed", |v| v["role"] == role, restarted);
            timeline.push(("a restarted".into(), Some(restarted)));
            timeline.push((format!("a joined as {role}"), Some(ts(&joined))));
            let after = if opts.takeover { t0 } else { ts(&joined) };
            let first = lab.wait_for("an answer from the new server", || {
                lab.first_answer(server, after)
            });
            timeline.push((format!("first client answer from {server}"), Some(first)));
            let last_a = lab
                .answers()
                .iter()
                .filter(|v| v["host"] == "a" && ts(v) <= served_from.max(t0))
                .map(ts)
                .max();
            s.outage_ms = match last_a {
                Some(a) if first > a => Some(((first - a) as f64 / 1e5).round() / 10.0),
                _ => None,
            };
        }
        Fault::BmcFlap => {
            let name = if opts.takeover {
                "fence_failed"
            } else {
                "boot_failed"
            };
            let failed = lab.wait_event(Host::B, name, |_| true, t0);
            timeline.push((format!("{name} (b): BMC unreachable"), Some(ts(&failed))));
            let healed = mono_ns();
            lab.pair.port(Host::A, true);
            timeline.push(("a's link back".into(), Some(healed)));
            let cancelled = lab.wait_event(Host::B, "fence_cancelled", |_| true, healed);
            timeline.push(("fence_cancelled (b)".into(), Some(ts(&cancelled))));
            // The holder of P re-announces it when its carrier returns.
            let announced = lab.wait_event(Host::A, "garp_sent", |v| detail(v).contains(P), healed);
            timeline.push(("P announced again (a)".into(), Some(ts(&announced))));
            lab.repair_bmc(Host::A);
            timeline.push(("BMC of a reachable again".into(), Some(mono_ns())));
            lab.observe(window);
            fig.insert(
                "link_back_to_fence_cancelled_ms".into(),
                json!(ms_since(healed, Some(ts(&cancelled)))),
            );
        }
        Fault::CopyLoad => {
            let bulk = fig["data_mib"].as_u64().unwrap_or(0) << 20;
            let done = lab.wait_event(
                Host::B,
                "sync_done",
                // The first copy that holds all the new data (the fill may span copies).
                |v| copy_bytes(detail(v)) >= bulk,
                t0,
            );
            timeline.push((
                "first copy with all the data done (b)".into(),
                Some(ts(&done)),
            ));
            fig.insert("first_full_copy".into(), json!(detail(&done)));
            lab.observe(window);
            let after = lab.metrics(Host::B);
            fig.insert(
                "copies_during_window".into(),
                json!(lab.count(Host::B, ts(&done), "sync_done")),
            );
            if let (Some(b), Some(a)) = (before, after) {
                let late = lab
                    .events(Host::B)
                    .iter()
                    .filter(|v| v["event"] == "probe_late" && ts(v) >= t0)
                    .filter_map(|v| late_ms(detail(v)))
                    .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
                fig.insert("probe_rtt".into(), rtt_figures(&b, &a, late));
            }
            fig.insert(
                "copy_failures".into(),
                json!(lab.count(Host::B, t0, "sync_failed")),
            );
        }
        Fault::BmcLies => {
            // B fences A (the BMC says Off), takes P and tells A; A, still running and
            // hearing the segment, must give P up at once.
            let confirmed = lab.wait_event(Host::B, "fence_confirmed", |_| true, t0);
            let claimed = lab.wait_event(Host::B, "address_claimed", claims_p, t0);
            let demoted = lab.wait_event(Host::A, "demoted", |_| true, t0);
            let released =
                lab.wait_event(Host::A, "address_released", |v| detail(v).contains(P), t0);
            timeline.push((
                "fence_confirmed (b): the BMC lied".into(),
                Some(ts(&confirmed)),
            ));
            timeline.push(("P claimed (b), first GARP".into(), Some(ts(&claimed))));
            timeline.push(("demoted (a)".into(), Some(ts(&demoted))));
            timeline.push(("P released (a)".into(), Some(ts(&released))));
            fig.insert("demoted_because".into(), json!(detail(&demoted)));
            fig.insert(
                "new_garp_to_old_release_ms".into(),
                json!(ms_since(ts(&claimed), Some(ts(&released)))),
            );
            let a_holds_p = lab.pair.holds(Host::A, P);
            fig.insert("a_holds_p_after_stepping_down".into(), json!(a_holds_p));
            // A's frames flow again: it rejoins as monitor, and must not answer on P again.
            let repaired = mono_ns();
            lab.repair(Host::A, fault);
            timeline.push(("a's frames flow again".into(), Some(repaired)));
            let joined = lab.wait_event(
                Host::A,
                "role_changed",
                |v| v["role"] == "monitor",
                ts(&demoted),
            );
            timeline.push(("a joined as monitor".into(), Some(ts(&joined))));
            let first_b = lab.wait_for("an answer from b", || lab.first_answer("b", repaired));
            lab.observe(window);
            // After B answered once A had let P go, every answer is B's: no interleaving.
            let after = ts(&released).max(first_b);
            let from_a = lab
                .answers()
                .iter()
                .filter(|v| v["host"] == "a" && ts(v) > after)
                .count();
            fig.insert("answers_from_a_after_stepdown".into(), json!(from_a));
            s.claim12 = Some(
                lab.status(Host::B)
                    .is_some_and(|st| st["role"] == "primary"),
            );
        }
        other => unreachable!("{other} is not a safety scenario"),
    }
    // An observation window, not synchronisation: a late answer from a fenced host, or a
    // late fence, would show here.
    std::thread::sleep(Duration::from_millis(300));
    s.false_takeovers = Some(
        lab.events(Host::B)
            .iter()
            .filter(|v| v["event"] == "primary_failed" && ts(v) > t0)
            .count() as u64,
    );
    s.power_offs = Some(lab.offs(Host::A, t0) + lab.offs(Host::B, t0));
    s.isolated = Some(lab.count(Host::B, t0, "isolated"));
    s.fence_cancelled = Some(lab.count(Host::B, t0, "fence_cancelled"));
    s.peer_left
        .get_or_insert(lab.pair.emitted(Host::B, t0, "peer_left", |_| true));
    s.split_brain = lab.split_brain(t0);
    s.final_roles = lab.roles();
    // Time the hypervisor ran something else instead of this VM: a stall nothing inside can
    // prevent, noted so a failed run can be read against it.
    if let (Some(a), Some(b)) = (steal0, steal_ms()) {
        fig.insert("vm_steal_ms".into(), json!(b - a));
    }
    s.figures = fig;
    timeline.sort_by_key(|(_, t)| t.unwrap_or(u64::MAX));
    Report {
        summary: s,
        timeline: timeline
            .into_iter()
            .map(|(label, t)| (label, ms_since(t0, t)))
            .collect(),
    }
}

/// The steal time of all CPUs so far (`/proc/stat`), ms.
fn steal_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?;
    // cpu user nice system idle iowait irq softirq steal ... (USER_HZ = 100 ticks/s)
    let ticks: u64 = cpu.split_whitespace().nth(8)?.parse().ok()?;
    Some(ticks * 10)
}

/// The "..., B bytes in the copy, ..." of a `sync_done` detail: B.
fn copy_bytes(detail: &str) -> u64 {
    detail
        .split(" bytes in the copy")
        .next()
        .and_then(|r| r.rsplit(' ').next())
        .and_then(|b| b.parse().ok())
        .unwrap_or(0)
}

/// After a takeover: A powered off by its BMC, on again, joined as monitor (claim 12).
fn rejoin_as_monitor(
    lab: &Lab,
    t0: u64,
    timeline: &mut Vec<(String, Option<u64>)>,
    s: &mut ScenarioSummary,
) {
    let on = lab.wait_for("a powered on", || {
        lab.bmc_log(Host::A)
            .into_iter()
            .find(|v| v["power_state"] == "On" && ts(v) > t0)
    });
    let joined = lab.wait_event(Host::A, "role_changed", |v| v["role"] == "monitor", ts(&on));
    timeline.push(("a joined as monitor (claim 12)".into(), Some(ts(&joined))));
    s.claim12 = Some(
        lab.status(Host::B)
            .is_some_and(|st| st["role"] == "primary"),
    );
}

/// Fills `h`'s data directory with files whose copy takes a long while (scan, hash, send,
/// write, verify); returns the bytes written. `FAILOVER_LAB_COPY_MIB` sets the size (default
/// 256 MiB, in 4 MiB files).
fn fill_data(lab: &Lab, h: Host) -> u64 {
    let mib: u64 = std::env::var("FAILOVER_LAB_COPY_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let dir = lab.dir().join(format!("data-{}", h.name())).join("bulk");
    std::fs::create_dir_all(&dir).expect("bulk dir");
    // One random buffer, made distinct per file by stamping every 4 KiB block: cheap to
    // produce (the lab itself should not be the CPU load), and no two blocks alike, so
    // neither the hashes nor the deltas get anything for free.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 4 << 20];
    for c in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes());
    }
    for i in 0..mib.div_ceil(4) {
        for block in buf.chunks_mut(4096) {
            block[..8].copy_from_slice(&i.to_le_bytes());
        }
        std::fs::write(dir.join(format!("f{i}")), &buf).expect("bulk file");
    }
    mib.div_ceil(4) * (4 << 20)
}

/// The monitor's probe round trips during a window, from two metrics snapshots (before,
/// after): the probes judged, how many were late or lost, p99 (as the bound of its histogram
/// bucket) and the longest round trip (exact when it was the longest since the daemon
/// started, else the latest late answer, else null; and its bucket bound), in ms.
pub fn rtt_figures(before: &str, after: &str, latest_late_ms: Option<f64>) -> Value {
    let b = buckets(before);
    let a = buckets(after);
    let d: Vec<(f64, f64)> = a
        .iter()
        .map(|(le, n)| {
            let was = b.iter().find(|(l, _)| l == le).map_or(0.0, |x| x.1);
            (*le, n - was)
        })
        .collect();
    let total = d.last().map_or(0.0, |x| x.1);
    let bound = |q: f64| {
        d.iter()
            .find(|(_, n)| *n >= total * q)
            .map(|(le, _)| *le * 1e3)
    };
    let counter = |m: &str, name: &str| {
        m.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let delta = |name: &str| counter(after, name) - counter(before, name);
    // The gauge holds the longest round trip since the daemon started: if it grew, the new
    // value was seen in the window.
    let gauge = "failover_probe_rtt_max_seconds";
    let grew =
        (counter(after, gauge) > counter(before, gauge)).then(|| counter(after, gauge) * 1e3);
    json!({
        "probes": total,
        "late": delta("failover_probes_late_total"),
        "lost": delta("failover_probes_lost_total"),
        "p50_ms_at_most": bound(0.5),
        "p99_ms_at_most": bound(0.99),
        "max_ms": grew.or(latest_late_ms),
        "max_ms_at_most": bound(1.0),
    })
}

/// `failover_probe_rtt_seconds` buckets of a metrics text: (upper bound s, cumulative count).
fn buckets(metrics: &str) -> Vec<(f64, f64)> {
    metrics
        .lines()
        .filter(|l| l.starts_with("failover_probe_rtt_seconds_bucket"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

/// The round trip of a `probe_late` detail ("seq N answered after 38.395ms"), ms.
fn late_ms(detail: &str) -> Option<f64> {
    detail.rsplit(' ').next()?.strip_suffix("ms")?.parse().ok()
}
