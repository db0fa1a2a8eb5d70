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

/// A fencing mode of [`fences`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FenceMode {
    /// `boot.fence = "lease"` (with a witness).
    Lease,
    /// `boot.fence = "bmc"` (wait for the BMC's Off).
    Bmc,
}

impl FenceMode {
    fn name(self) -> &'static str {
        match self {
            FenceMode::Lease => "lease",
            FenceMode::Bmc => "bmc",
        }
    }
}

/// The fencing modes side by side: the takeover scenario `runs` times per mode, the modes
/// alternating (A B A B) so that drift hits both alike, with the lab BMCs cutting the power
/// `off_delay` after the request. Per mode: client outage min/median/p99/max and split brain
/// from the client log against the BMC log; the ratio of the medians (first mode over
/// second). With `json`, the last line is one object.
pub fn fences(
    failover: &Path,
    fault: Fault,
    runs: usize,
    modes: &[FenceMode],
    off_delay: Duration,
    json_out: bool,
) -> Result<()> {
    if fault.harmless() || fault.safety() {
        bail!("--fence compares takeovers: use --fault link, freeze or kill9");
    }
    let base = demo::prepare(failover)?;
    let (cores, cpu, kernel) = machine();
    let mut outage: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut takeover: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut split = vec![0u64; modes.len()];
    let mut failed = vec![0usize; modes.len()];
    for i in 0..runs {
        for (m, mode) in modes.iter().enumerate() {
            let opts = crate::lab::LabOptions {
                lease: *mode == FenceMode::Lease,
                bmc_off_delay: off_delay,
                ..base.clone()
            };
            let what = format!("run {} ({})", i + 1, mode.name());
            let r = demo::run_scenario(&opts, fault, Duration::ZERO, &what)?;
            let s = &r.summary;
            split[m] += s.split_brain;
            outage[m].extend(s.outage_ms);
            takeover[m].extend(s.takeover_ms);
            if s.outage_ms.is_none() {
                failed[m] += 1;
            }
            let ms = |v: Option<f64>| v.map_or("null".to_string(), |v| format!("{v:.1}"));
            eprintln!(
                "run {:>2} {:<5}: detect {} ms, P claimed {} ms, client outage {} ms, split brain {}",
                i + 1,
                mode.name(),
                ms(s.detect_ms),
                ms(s.takeover_ms),
                ms(s.outage_ms),
                s.split_brain
            );
            if interrupted() {
                bail!("interrupted");
            }
        }
    }
    println!(
        "failover lab bench: fault {fault}, {runs} runs per mode (alternating), BMC off after {} ms, {cores} cores, {cpu}, kernel {kernel}",
        off_delay.as_millis()
    );
    println!(
        "{:<6} {:<20} {:>8} {:>8} {:>8} {:>8}  split brain",
        "mode", "ms", "min", "median", "p99", "max"
    );
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        (!v.is_empty()).then(|| (v[0], quantile(v, 0.5), quantile(v, 0.99), v[v.len() - 1]))
    };
    let mut out = serde_json::Map::new();
    let mut medians = Vec::new();
    for (m, mode) in modes.iter().enumerate() {
        let mut o = outage[m].clone();
        let mut t = takeover[m].clone();
        let (os, ts) = (stats(&mut o), stats(&mut t));
        let row = |name: &str, s: Option<(f64, f64, f64, f64)>, extra: String| match s {
            Some((min, med, p99, max)) => println!(
                "{:<6} {name:<20} {min:>8.1} {med:>8.1} {p99:>8.1} {max:>8.1}  {extra}",
                mode.name()
            ),
            None => println!("{:<6} {name:<20} {:>8}", mode.name(), "-"),
        };
        row("client outage", os, split[m].to_string());
        row("fault -> P claimed", ts, String::new());
        medians.push(os.map(|s| s.1));
        let j = |s: Option<(f64, f64, f64, f64)>| {
            s.map_or(serde_json::Value::Null, |(min, median, p99, max)| {
                json!({"min": min, "median": median, "p99": p99, "max": max})
            })
        };
        out.insert(
            mode.name().into(),
            json!({"outage_ms": j(os), "takeover_ms": j(ts), "split_brain": split[m],
                "runs_without_outage_figure": failed[m]}),
        );
    }
    let ratio = match medians.as_slice() {
        [Some(a), Some(b), ..] if *b > 0.0 => Some(a / b),
        _ => None,
    };
    if let Some(r) = ratio {
        println!(
            "ratio of the median outages, {} / {}: {r:.4}",
            modes[0].name(),
            modes[1].name()
        );
    }
    println!(
        "split brain: client answers from the old primary after the new one's first, plus answers from a host its BMC had off"
    );
    if json_out {
        println!(
            "{}",
            json!({"fault": fault, "runs": runs, "bmc_off_delay_ms": off_delay.as_millis() as u64,
                "modes": out, "ratio_median": ratio, "cores": cores, "cpu": cpu, "kernel": kernel})
        );
    }
    Ok(())
}
