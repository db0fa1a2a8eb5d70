//! `cargo xtask demo`: the failover lab (docs/lab.md) on one machine.
//!
//! Runs the real daemons in network namespaces with lab BMCs, injects a fault on the primary
//! (A) and prints a timeline with millisecond offsets from the fault, first with takeover (B
//! fences A, takes P over, A rejoins as monitor: claim 12), then recovery only (B reboots A and
//! stays monitor, A comes back as primary: claim 11). Everything is torn down on every exit
//! path, Ctrl-C included.
use std::{path::Path, time::Duration};

use anyhow::{bail, Result};
use failover_tests::lab::{self, LabOptions};
use serde_json::{json, Value};

extern "C" fn on_sigint(_: i32) {
    lab::INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

fn print_timeline(title: &str, report: &Value) {
    eprintln!("\n{title}");
    for row in report["timeline"].as_array().into_iter().flatten() {
        let label = row[0].as_str().unwrap_or("");
        match row[1].as_f64() {
            Some(ms) => eprintln!("  {ms:>+10.1} ms  {label}"),
            None => eprintln!("  {:>13}  {label}", "-"),
        }
    }
    let s = &report["summary"];
    eprintln!(
        "  summary: detect {} ms, fence {} ms, takeover {} ms, client outage {} ms, split brain {}, final roles {}",
        s["detect_ms"], s["fence_ms"], s["takeover_ms"], s["outage_ms"], s["split_brain"], s["final_roles"]
    );
}

/// Checks the fault and that no lab is up, installs the Ctrl-C handler, returns the options.
fn prepare(bin: &Path, lab_bin: &Path, fault: &str) -> Result<LabOptions> {
    if !lab::FAULTS.contains(&fault) {
        bail!(
            "--fault {fault}: expected one of {}",
            lab::FAULTS.join(", ")
        );
    }
    let left = lab::leftovers();
    if !left.is_empty() {
        bail!(
            "a previous lab is still up (namespaces {}); remove them with `ip netns del NAME`",
            left.join(", ")
        );
    }
    // Ctrl-C: finish tearing down instead of dying with namespaces left behind. The lab's Drop
    // runs when the scenario unwinds; the handler only records the request.
    // SAFETY: installing a signal handler that only stores to an atomic.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as usize) };
    Ok(LabOptions::new(bin.to_path_buf(), lab_bin.to_path_buf()))
}

pub fn run(
    bin: &Path,
    lab_bin: &Path,
    fault: &str,
    json_out: bool,
    show_config: bool,
) -> Result<()> {
    let mut opts = LabOptions {
        show_config,
        ..prepare(bin, lab_bin, fault)?
    };
    let harmless_for = Duration::from_secs(5);
    eprintln!("demo: 1/2 takeover (fault {fault} on primary a)");
    let takeover = std::panic::catch_unwind(|| lab::scenario(&opts, fault, harmless_for));
    let takeover = match takeover {
        Ok(r) => r,
        Err(_) => {
            bail!("the takeover scenario failed (see the message above); the lab was torn down")
        }
    };
    print_timeline(
        "takeover: B fences A and takes P over; A rejoins as monitor (claim 12)",
        &takeover,
    );
    if lab::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        bail!("interrupted");
    }
    opts.takeover = false;
    eprintln!("\ndemo: 2/2 recovery only (takeover = false, fault {fault} on primary a)");
    let recovery = match std::panic::catch_unwind(|| lab::scenario(&opts, fault, harmless_for)) {
        Ok(r) => r,
        Err(_) => bail!(
            "the recovery-only scenario failed (see the message above); the lab was torn down"
        ),
    };
    print_timeline(
        "recovery only: B reboots A and stays monitor; A is primary again (claim 11)",
        &recovery,
    );

    let t = &takeover["summary"];
    let r = &recovery["summary"];
    let split = t["split_brain"].as_u64().unwrap_or(0) + r["split_brain"].as_u64().unwrap_or(0);
    let summary = json!({
        "fault": fault,
        "detect_ms": t["detect_ms"], "fence_ms": t["fence_ms"], "takeover_ms": t["takeover_ms"],
        "outage_ms": t["outage_ms"], "split_brain": split, "final_roles": t["final_roles"],
        "claim11": r["claim11"], "claim12": t["claim12"], "sync": t["sync"],
        "recovery_only": r, "takeover": t,
        "timelines": {"takeover": takeover["timeline"], "recovery_only": recovery["timeline"]},
    });
    if json_out {
        println!("{summary}");
    }
    Ok(())
}

/// `cargo xtask bench`: the lab scenario `runs` times (release build), then median, p95 and
/// max of each figure, with the machine noted. Figures, not pass/fail.
pub fn bench(bin: &Path, lab_bin: &Path, fault: &str, runs: usize, window: Duration) -> Result<()> {
    let opts = prepare(bin, lab_bin, fault)?;
    if lab::harmless(fault) {
        // The primary stays healthy: count false takeovers over the whole window.
        let mut total = 0;
        for i in 0..runs {
            let r = std::panic::catch_unwind(|| lab::scenario(&opts, fault, window))
                .map_err(|_| anyhow::anyhow!("run {} failed (see above)", i + 1))?;
            let s = &r["summary"];
            eprintln!("run {:>2}: {s}", i + 1);
            total += s["false_takeovers"].as_u64().unwrap_or(0);
        }
        println!(
            "{}",
            json!({"fault": fault, "runs": runs, "window_s": window.as_secs_f64(),
                "false_takeovers": total, "cores": std::thread::available_parallelism().map_or(0, |n| n.get())})
        );
        return Ok(());
    }
    let keys = ["detect_ms", "fence_ms", "takeover_ms", "outage_ms"];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); keys.len()];
    let mut split = 0;
    for i in 0..runs {
        let r = match std::panic::catch_unwind(|| lab::scenario(&opts, fault, Duration::ZERO)) {
            Ok(r) => r,
            Err(_) => bail!("run {} failed (see above)", i + 1),
        };
        let s = &r["summary"];
        split += s["split_brain"].as_u64().unwrap_or(0);
        for (k, v) in keys.iter().zip(samples.iter_mut()) {
            if let Some(x) = s[*k].as_f64() {
                v.push(x);
            }
        }
        eprintln!(
            "run {:>2}: detect {} ms, fence {} ms, takeover {} ms, outage {} ms, split brain {}",
            i + 1,
            s["detect_ms"],
            s["fence_ms"],
            s["takeover_ms"],
            s["outage_ms"],
            s["split_brain"]
        );
        if lab::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
            bail!("interrupted");
        }
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "failover lab bench: fault {fault}, {runs} runs, {cores} cores, {cpu}, kernel {}",
        kernel.trim()
    );
    println!(
        "{:<12} {:>8} {:>8} {:>8} {:>8}",
        "ms", "min", "median", "p95", "max"
    );
    let mut out = serde_json::Map::new();
    for (k, mut v) in keys.iter().zip(samples) {
        v.sort_by(|a, b| a.total_cmp(b));
        if v.is_empty() {
            continue;
        }
        let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        println!(
            "{:<12} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            k.trim_end_matches("_ms"),
            v[0],
            q(0.5),
            q(0.95),
            v[v.len() - 1]
        );
        out.insert(
            k.to_string(),
            json!({"min": v[0], "median": q(0.5), "p95": q(0.95), "max": v[v.len() - 1]}),
        );
    }
    println!("split brain violations seen by the client: {split}");
    println!(
        "{}",
        json!({"fault": fault, "runs": runs, "cores": cores, "cpu": cpu, "kernel": kernel.trim(),
            "split_brain": split, "figures": out})
    );
    Ok(())
}
