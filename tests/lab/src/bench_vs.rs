//! `cargo xtask bench-vs keepalived`: this daemon and keepalived in the same lab topology, same
//! client, same fault, in one run, runs alternating (failover, keepalived, ...) so that drift
//! hits both alike. Per system: client outage, how long two hosts answered on P, false
//! takeovers under loss or CPU saturation, CPU and RSS at steady state; then the ratios.
//!
//! keepalived does not fence: its figures are those of a takeover that never proves the old
//! master gone, which is why it can answer twice.
use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use anyhow::{bail, Result};
use failover_harness::{events::ts, mono_ns, pair::Host};
use serde_json::{json, Value};

use crate::{
    bench::{machine, quantile, FenceMode},
    bench_cpu,
    fault::Fault,
    keepalived::{self, Adverts, KeepalivedLab},
    lab::{interrupted, pause, LabOptions},
    report::both_answered_ms,
    usage::{measure, Usage},
};

/// A system under comparison.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum System {
    /// `failover run` with this fence mode.
    Failover(FenceMode),
    /// keepalived with these adverts.
    Keepalived(Adverts),
}

impl System {
    /// The key in reports: `failover` for the first fence mode asked for, `failover-<mode>`
    /// for others; `keepalived` (10 ms adverts) and `keepalived-defaults`.
    fn key(self, first_fence: FenceMode) -> String {
        match self {
            System::Failover(m) if m == first_fence => "failover".into(),
            System::Failover(FenceMode::Lease) => "failover-lease".into(),
            System::Failover(FenceMode::Bmc) => "failover-bmc".into(),
            System::Keepalived(a) => a.name().into(),
        }
    }

    /// A readable label (tables, the plot).
    fn label(self) -> String {
        match self {
            System::Failover(FenceMode::Bmc) => "failover (fence bmc)".into(),
            System::Failover(FenceMode::Lease) => "failover (fence lease)".into(),
            System::Keepalived(Adverts::Fast) => "keepalived 10 ms adverts".into(),
            System::Keepalived(Adverts::Defaults) => "keepalived defaults (1 s)".into(),
        }
    }
}

/// The settings of one comparison.
#[derive(Clone, Debug)]
pub struct VsArgs {
    /// The faults, one after the other (link, freeze: takeovers; loss, cpu: false takeovers).
    pub faults: Vec<Fault>,
    /// Runs per system and fault.
    pub runs: usize,
    /// For loss and cpu: the window of each run.
    pub window: Duration,
    /// failover's fence modes (the first is reported as `failover`).
    pub fences: Vec<FenceMode>,
    /// Also keepalived with its default adverts.
    pub defaults: bool,
    /// For freeze: how long keepalived's master stays frozen (failover's is ended by the fence).
    pub freeze: Duration,
    /// The steady-state window for CPU and RSS (0: not measured).
    pub steady: Duration,
    /// The lab BMCs' delay from a power-off request to the cut and the Off report.
    pub bmc_off_delay: Duration,
    /// Print one JSON object per fault, the last line the last fault's.
    pub json: bool,
    /// Draw the outage distributions to this SVG.
    pub plot: Option<PathBuf>,
}

/// What one run of one system showed.
#[derive(Clone, Debug, Default)]
struct RunResult {
    outage_ms: Option<f64>,
    both_answered_ms: f64,
    false_takeovers: Option<u64>,
}

/// Steady-state cost of one system's two nodes.
#[derive(Clone, Debug, Default)]
struct Cost {
    primary: Usage,
    monitor: Usage,
}

/// Runs the comparison.
pub fn run(failover: &std::path::Path, a: &VsArgs) -> Result<()> {
    for f in &a.faults {
        if !matches!(f, Fault::Link | Fault::Freeze | Fault::Loss | Fault::Cpu) {
            bail!("--fault {f}: bench-vs compares link, freeze, loss and cpu");
        }
    }
    if a.fences.is_empty() {
        bail!("--fence: name at least one fence mode (bmc, lease)");
    }
    let version = keepalived::version()?;
    let opts = crate::demo::prepare(failover)?;
    let (cores, cpu, kernel) = machine();
    let mut systems: Vec<System> = Vec::new();
    for (i, m) in a.fences.iter().enumerate() {
        systems.push(System::Failover(*m));
        if i == 0 {
            systems.push(System::Keepalived(Adverts::Fast));
        }
    }
    if a.defaults {
        systems.push(System::Keepalived(Adverts::Defaults));
    }
    let first = a.fences[0];
    let mut costs: BTreeMap<String, Cost> = BTreeMap::new();
    if !a.steady.is_zero() {
        for s in &systems {
            let c = steady_cost(&opts, *s, a.steady)?;
            eprintln!(
                "steady {:<28} primary {:.3} % {:.1} MiB, monitor {:.3} % {:.1} MiB",
                s.label(),
                c.primary.cpu_pct,
                c.primary.rss_mib,
                c.monitor.cpu_pct,
                c.monitor.rss_mib
            );
            costs.insert(s.key(first), c);
        }
    }
    let mut series = Vec::new();
    for &fault in &a.faults {
        let mut results: Vec<Vec<RunResult>> = vec![Vec::new(); systems.len()];
        for i in 0..a.runs {
            for (k, s) in systems.iter().enumerate() {
                let r = one_run(&opts, *s, fault, a)?;
                eprintln!(
                    "{fault} run {:>2} {:<28} outage {} ms, both answered {:.1} ms{}",
                    i + 1,
                    s.label(),
                    r.outage_ms.map_or("-".into(), |v| format!("{v:.1}")),
                    r.both_answered_ms,
                    r.false_takeovers
                        .map_or(String::new(), |n| format!(", false takeovers {n}"))
                );
                results[k].push(r);
                if interrupted() {
                    bail!("interrupted");
                }
            }
        }
        let mut out = serde_json::Map::new();
        for (k, s) in systems.iter().enumerate() {
            let fig = figures(*s, &results[k], a, costs.get(&s.key(first)));
            if !fault.harmless() {
                series.push(crate::plot::Series {
                    fault: fault.name().into(),
                    system: s.label(),
                    outage_ms: results[k].iter().filter_map(|r| r.outage_ms).collect(),
                });
            }
            out.insert(s.key(first), fig);
        }
        let ratios = ratios(&out);
        print_table(fault, a, &systems, first, &out, &ratios);
        println!(
            "machine: {cores} cores, {cpu}, kernel {kernel}; {version}; keepalived does not fence"
        );
        if a.json {
            println!(
                "{}",
                json!({"fault": fault, "runs": a.runs, "systems": out, "ratios": ratios,
                    "window_s": a.window.as_secs_f64(), "freeze_s": a.freeze.as_secs_f64(),
                    "steady_s": a.steady.as_secs_f64(),
                    "bmc_off_delay_ms": a.bmc_off_delay.as_millis() as u64,
                    "cores": cores, "cpu": cpu, "kernel": kernel, "keepalived": version})
            );
        }
    }
    if let Some(path) = &a.plot {
        let title = format!(
            "Client outage per run, {} runs per system (log scale)",
            a.runs
        );
        let caption = format!("{cores} cores, {cpu}, kernel {kernel}; {version}");
        crate::plot::outage_svg(path, &title, &caption, &series)?;
        eprintln!("plot: {}", path.display());
    }
    Ok(())
}

/// The steady-state cost of `s`: a healthy pair, no data copy, after 2 s of settling.
fn steady_cost(opts: &LabOptions, s: System, window: Duration) -> Result<Cost> {
    match s {
        System::Failover(mode) => {
            let lab = bench_cpu::quiet_lab(&LabOptions {
                lease: mode == FenceMode::Lease,
                ..opts.clone()
            })?;
            pause(Duration::from_secs(2))?;
            let st = bench_cpu::steady(&lab, window)?;
            Ok(Cost {
                primary: st.primary,
                monitor: st.monitor,
            })
        }
        System::Keepalived(adv) => {
            let lab = KeepalivedLab::start(&opts.lab_bin, adv)?;
            pause(Duration::from_secs(2))?;
            let u = measure(&[lab.pids(Host::A), lab.pids(Host::B)], window)?;
            Ok(Cost {
                primary: u[0].clone(),
                monitor: u[1].clone(),
            })
        }
    }
}

/// One run of `s` under `fault`.
fn one_run(opts: &LabOptions, s: System, fault: Fault, a: &VsArgs) -> Result<RunResult> {
    match s {
        System::Failover(mode) => {
            let opts = LabOptions {
                lease: mode == FenceMode::Lease,
                bmc_off_delay: a.bmc_off_delay,
                ..opts.clone()
            };
            let what = format!("failover ({fault})");
            let r = crate::demo::run_scenario(&opts, fault, a.window, &what)?;
            Ok(RunResult {
                outage_ms: r.summary.outage_ms,
                both_answered_ms: r.summary.both_answered_ms,
                false_takeovers: r.summary.false_takeovers,
            })
        }
        System::Keepalived(adv) => keepalived_run(&opts.lab_bin, adv, fault, a),
    }
}

/// One keepalived run: steady state, the fault on A, B's takeover as the client sees it (or
/// the window of a fault that leaves A healthy).
fn keepalived_run(
    lab_bin: &std::path::Path,
    adv: Adverts,
    fault: Fault,
    a: &VsArgs,
) -> Result<RunResult> {
    let mut lab = KeepalivedLab::start(lab_bin, adv)?;
    let masters = lab.masters(Host::B);
    let t0 = mono_ns();
    let first_b = |lab: &KeepalivedLab| {
        lab.answers()
            .into_iter()
            .filter(|v| v["host"] == "b" && ts(v) > t0)
            .map(|v| ts(&v))
            .min()
    };
    let limit = Duration::from_secs(60);
    match fault {
        Fault::Link => {
            lab.pair.port(Host::A, false);
            lab.wait_for("an answer from b", limit, first_b)?;
            // The same observation window as the failover scenario's.
            pause(Duration::from_millis(300))?;
        }
        Fault::Freeze => {
            // A stays frozen for exactly `--freeze-s`, whether B took over by then or not.
            lab.freeze(Host::A, true);
            let thaw = t0 + a.freeze.as_nanos() as u64;
            pause(Duration::from_nanos(thaw.saturating_sub(mono_ns())))?;
            lab.freeze(Host::A, false);
            // The failover scenario's observation window: A's queued requests are answered
            // at once when it runs again.
            pause(Duration::from_millis(300))?;
        }
        Fault::Loss => {
            let port = failover_harness::pair::Pair::port_name(Host::A);
            crate::fault::switch_rule(&lab.pair.sw, &crate::fault::loss_rule(port));
            pause(a.window)?;
        }
        Fault::Cpu => {
            lab.burn_cpu(Host::A)?;
            pause(a.window)?;
        }
        _ => bail!("bench-vs: no keepalived scenario for {fault}"),
    }
    let answers = lab.answers();
    if fault.harmless() {
        return Ok(RunResult {
            false_takeovers: Some(lab.masters(Host::B).saturating_sub(masters) as u64),
            both_answered_ms: both_answered_ms(&answers, t0, "a", "b"),
            outage_ms: None,
        });
    }
    let fb = answers
        .iter()
        .filter(|v| v["host"] == "b" && ts(v) > t0)
        .map(ts)
        .min();
    let last_a = answers
        .iter()
        .filter(|v| v["host"] == "a" && ts(v) <= t0 + 1_000_000_000 && Some(ts(v)) < fb)
        .map(ts)
        .max();
    Ok(RunResult {
        outage_ms: match (last_a, fb) {
            (Some(x), Some(y)) if y > x => Some(((y - x) as f64 / 1e5).round() / 10.0),
            _ => None,
        },
        both_answered_ms: both_answered_ms(&answers, t0, "a", "b"),
        false_takeovers: None,
    })
}

/// min/median/p95/max of `v` (sorted in place), or null.
fn dist(v: &mut [f64]) -> Value {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return Value::Null;
    }
    json!({"min": v[0], "median": quantile(v, 0.5), "p95": quantile(v, 0.95), "max": v[v.len() - 1]})
}

/// The figures of one system under one fault, as reported (JSON).
fn figures(s: System, runs: &[RunResult], a: &VsArgs, cost: Option<&Cost>) -> Value {
    let mut outage: Vec<f64> = runs.iter().filter_map(|r| r.outage_ms).collect();
    let raw = outage.clone();
    let mut both: Vec<f64> = runs.iter().map(|r| r.both_answered_ms).collect();
    let false_per_10min = runs
        .iter()
        .map(|r| r.false_takeovers)
        .sum::<Option<u64>>()
        .map(|n| n as f64 * 600.0 / (a.window.as_secs_f64() * runs.len().max(1) as f64));
    let cost = cost.map_or(Value::Null, |c| {
        json!({"cpu_pct": {"primary": c.primary.cpu_pct, "monitor": c.monitor.cpu_pct},
            "rss_mib": {"primary": c.primary.rss_mib, "monitor": c.monitor.rss_mib},
            "pss_mib": {"primary": c.primary.pss_mib, "monitor": c.monitor.pss_mib}})
    });
    json!({
        "label": s.label(),
        "fences": matches!(s, System::Failover(_)),
        "outage_ms": dist(&mut outage),
        "outage_runs_ms": raw,
        "runs_without_outage_figure": runs.iter().filter(|r| r.outage_ms.is_none()).count(),
        "both_answered_ms": dist(&mut both),
        "false_takeovers": runs.iter().map(|r| r.false_takeovers).sum::<Option<u64>>(),
        "false_takeovers_per_10min": false_per_10min,
        "cpu_pct": cost["cpu_pct"],
        "rss_mib": cost["rss_mib"],
        "pss_mib": cost["pss_mib"],
    })
}

/// failover over keepalived (10 ms adverts) for each figure both have.
fn ratios(out: &serde_json::Map<String, Value>) -> Value {
    let (Some(f), Some(k)) = (out.get("failover"), out.get("keepalived")) else {
        return Value::Null;
    };
    let ratio = |path: &[&str]| {
        let get = |v: &Value| path.iter().fold(v.clone(), |v, p| v[*p].clone()).as_f64();
        match (get(f), get(k)) {
            (Some(x), Some(y)) if y > 0.0 => json!(x / y),
            _ => Value::Null,
        }
    };
    json!({
        "outage_median": ratio(&["outage_ms", "median"]),
        "outage_p95": ratio(&["outage_ms", "p95"]),
        "outage_max": ratio(&["outage_ms", "max"]),
        "both_answered_max": ratio(&["both_answered_ms", "max"]),
        "cpu_primary": ratio(&["cpu_pct", "primary"]),
        "cpu_monitor": ratio(&["cpu_pct", "monitor"]),
        "rss_primary": ratio(&["rss_mib", "primary"]),
        "rss_monitor": ratio(&["rss_mib", "monitor"]),
        "pss_primary": ratio(&["pss_mib", "primary"]),
        "pss_monitor": ratio(&["pss_mib", "monitor"]),
        "false_takeovers_per_10min": ratio(&["false_takeovers_per_10min"]),
    })
}

fn print_table(
    fault: Fault,
    a: &VsArgs,
    systems: &[System],
    first: FenceMode,
    out: &serde_json::Map<String, Value>,
    ratios: &Value,
) {
    let f = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.1}"));
    let p = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.3}"));
    println!(
        "\nbench-vs keepalived: fault {fault}, {} runs per system, alternating{}",
        a.runs,
        match fault {
            Fault::Freeze => format!(
                "; keepalived's master frozen {:.0} s, failover's until its fence",
                a.freeze.as_secs_f64()
            ),
            Fault::Loss | Fault::Cpu => format!(", {:.0} s windows", a.window.as_secs_f64()),
            _ => String::new(),
        }
    );
    if fault.harmless() {
        println!(
            "{:<28} {:>16} {:>20}",
            "system", "false takeovers", "per 10 min"
        );
        for s in systems {
            let v = &out[&s.key(first)];
            println!(
                "{:<28} {:>16} {:>20}",
                s.label(),
                v["false_takeovers"],
                f(&v["false_takeovers_per_10min"])
            );
        }
    } else {
        println!(
            "{:<28} {:>8} {:>8} {:>8} {:>8}  {:>14} {:>8}",
            "outage ms", "min", "median", "p95", "max", "both answered", "(max)"
        );
        for s in systems {
            let v = &out[&s.key(first)];
            let o = &v["outage_ms"];
            println!(
                "{:<28} {:>8} {:>8} {:>8} {:>8}  {:>14} {:>8}",
                s.label(),
                f(&o["min"]),
                f(&o["median"]),
                f(&o["p95"]),
                f(&o["max"]),
                f(&v["both_answered_ms"]["median"]),
                f(&v["both_answered_ms"]["max"]),
            );
        }
    }
    if !a.steady.is_zero() {
        println!(
            "{:<28} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
            "steady state",
            "CPU% prim.",
            "CPU% mon.",
            "RSS MiB p.",
            "RSS MiB m.",
            "PSS MiB p.",
            "PSS MiB m."
        );
        for s in systems {
            let v = &out[&s.key(first)];
            println!(
                "{:<28} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
                s.label(),
                p(&v["cpu_pct"]["primary"]),
                p(&v["cpu_pct"]["monitor"]),
                f(&v["rss_mib"]["primary"]),
                f(&v["rss_mib"]["monitor"]),
                f(&v["pss_mib"]["primary"]),
                f(&v["pss_mib"]["monitor"]),
            );
        }
    }
    println!("ratios failover / keepalived (10 ms adverts): {ratios}");
}
