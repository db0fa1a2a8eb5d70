//! `cargo xtask bench`: the lab scenario N times (release build), then min, median, p95 and
//! max of each figure, with the machine noted. Figures, not pass/fail.
use std::{path::Path, time::Duration};

use anyhow::{bail, Result};
use serde_json::json;

use crate::{demo, fault::Fault, lab::interrupted};

/// The machine, for every benchmark's header: cores, CPU model, kernel.
pub fn machine() -> (usize, String, String) {
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
    (cores, cpu, kernel.trim().to_string())
}

/// Quantile `p` of sorted `v` (nearest rank).
pub fn quantile(v: &[f64], p: f64) -> f64 {
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Runs the bench.
pub fn run(failover: &Path, fault: Fault, runs: usize, window: Duration) -> Result<()> {
    let opts = demo::prepare(failover)?;
    let (cores, cpu, kernel) = machine();
    if fault.harmless() {
        // The primary stays healthy: count false takeovers over the whole window.
        let mut total = 0;
        for i in 0..runs {
            let r = demo::run_scenario(&opts, fault, window, &format!("run {}", i + 1))?;
            let s = &r.summary;
            eprintln!("run {:>2}: {}", i + 1, json!(s));
            total += s.false_takeovers.unwrap_or(0);
        }
        println!(
            "{}",
            json!({"fault": fault, "runs": runs, "window_s": window.as_secs_f64(),
                "false_takeovers": total, "cores": cores})
        );
        return Ok(());
    }
    if fault.safety() {
        return safety(&opts, fault, runs, window);
    }
    let keys = ["detect_ms", "fence_ms", "takeover_ms", "outage_ms"];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); keys.len()];
    let mut split = 0;
    for i in 0..runs {
        let r = demo::run_scenario(&opts, fault, Duration::ZERO, &format!("run {}", i + 1))?;
        let s = &r.summary;
        split += s.split_brain;
        let figures = [s.detect_ms, s.fence_ms, s.takeover_ms, s.outage_ms];
        for (v, x) in samples.iter_mut().zip(figures) {
            v.extend(x);
        }
        let ms = |v: Option<f64>| v.map_or("null".to_string(), |v| v.to_string());
        eprintln!(
            "run {:>2}: detect {} ms, fence {} ms, takeover {} ms, outage {} ms, split brain {}",
            i + 1,
            ms(s.detect_ms),
            ms(s.fence_ms),
            ms(s.takeover_ms),
            ms(s.outage_ms),
            s.split_brain
        );
        if interrupted() {
            bail!("interrupted");
        }
    }
    println!(
        "failover lab bench: fault {fault}, {runs} runs, {cores} cores, {cpu}, kernel {kernel}"
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
        let (min, med, p95, max) = (v[0], quantile(&v, 0.5), quantile(&v, 0.95), v[v.len() - 1]);
        println!(
            "{:<12} {min:>8.1} {med:>8.1} {p95:>8.1} {max:>8.1}",
            k.trim_end_matches("_ms")
        );
        out.insert(
            k.to_string(),
            json!({"min": min, "median": med, "p95": p95, "max": max}),
        );
    }
    println!("split brain violations seen by the client: {split}");
    println!(
        "{}",
        json!({"fault": fault, "runs": runs, "cores": cores, "cpu": cpu, "kernel": kernel,
            "split_brain": split, "figures": out})
    );
    Ok(())
}

/// A safety fault N times: what must never happen, summed (fences of a healthy host, P held
/// twice), and the distribution of every figure the scenario reports.
fn safety(
    opts: &crate::lab::LabOptions,
    fault: Fault,
    runs: usize,
    window: Duration,
) -> Result<()> {
    let (cores, cpu, kernel) = machine();
    let mut power_offs = 0;
    let mut false_takeovers = 0;
    let mut split = 0;
    let mut samples: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for i in 0..runs {
        let r = demo::run_scenario(opts, fault, window, &format!("run {}", i + 1))?;
        let s = &r.summary;
        eprintln!("run {:>2}: {}", i + 1, json!(s));
        power_offs += s.power_offs.unwrap_or(0);
        false_takeovers += s.false_takeovers.unwrap_or(0);
        split += s.split_brain;
        let mut put = |k: &str, v: Option<f64>| {
            if let Some(v) = v {
                samples.entry(k.to_string()).or_default().push(v);
            }
        };
        put("outage_ms", s.outage_ms);
        put("takeover_ms", s.takeover_ms);
        for (k, v) in &s.figures {
            match v {
                serde_json::Value::Object(o) => {
                    for (k2, v2) in o {
                        put(&format!("{k}.{k2}"), v2.as_f64());
                    }
                }
                v => put(k, v.as_f64()),
            }
        }
        if interrupted() {
            bail!("interrupted");
        }
    }
    println!(
        "failover lab bench: fault {fault}, {runs} runs, window {:.0} s, {cores} cores, {cpu}, kernel {kernel}",
        window.as_secs_f64()
    );
    println!(
        "{:<36} {:>9} {:>9} {:>9} {:>9}",
        "figure", "min", "median", "p95", "max"
    );
    let mut out = serde_json::Map::new();
    for (k, mut v) in samples {
        v.sort_by(|a, b| a.total_cmp(b));
        let (min, med, p95, max) = (v[0], quantile(&v, 0.5), quantile(&v, 0.95), v[v.len() - 1]);
        println!("{k:<36} {min:>9.2} {med:>9.2} {p95:>9.2} {max:>9.2}");
        out.insert(
            k,
            json!({"min": min, "median": med, "p95": p95, "max": max}),
        );
    }
    println!(
        "power-offs of a healthy host: {power_offs}; false takeovers: {false_takeovers}; split brain: {split}"
    );
    println!(
        "{}",
        json!({"fault": fault, "runs": runs, "window_s": window.as_secs_f64(), "cores": cores,
            "cpu": cpu, "kernel": kernel, "power_offs": power_offs,
            "false_takeovers": false_takeovers, "split_brain": split, "figures": out})
    );
    Ok(())
}
