//! `cargo xtask bench-cpu`: what the daemons cost at steady state with the default heartbeat
//! (a healthy pair in the lab, no data copy): CPU % of one core, CPU time per probe and RSS,
//! for the primary and the monitor, over one window.
use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result};
use failover_harness::pair::Host;
use serde_json::json;

use crate::{
    bench::machine,
    demo,
    fault::daemon_pids,
    lab::{Lab, LabOptions},
    usage::{measure, Usage},
};

/// The value of the first series named `name` in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Steady-state cost of a healthy lab pair (A primary, B monitor) over `window`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Steady {
    /// The primary's daemon.
    pub primary: Usage,
    /// The monitor's daemon.
    pub monitor: Usage,
    /// Probes the monitor sent in the window.
    pub probes: u64,
    /// Window, seconds.
    pub window_s: f64,
}

impl Steady {
    /// CPU time per probe of `u`, µs.
    pub fn us_per_probe(&self, u: &Usage) -> f64 {
        u.cpu_ns as f64 / 1e3 / self.probes.max(1) as f64
    }
}

/// Measures a running lab (roles settled) over `window`.
pub fn steady(lab: &Lab, window: Duration) -> Result<Steady> {
    let pids = |h: Host| daemon_pids(lab.pair.ns(h).name());
    let probes = || -> Result<f64> {
        let text = lab.metrics(Host::B).context("the monitor's metrics")?;
        metric(&text, "failover_probes_sent_total").context("failover_probes_sent_total")
    };
    let before = probes()?;
    let u = measure(&[pids(Host::A), pids(Host::B)], window)?;
    let after = probes()?;
    Ok(Steady {
        primary: u[0].clone(),
        monitor: u[1].clone(),
        probes: (after - before).max(0.0) as u64,
        window_s: window.as_secs_f64(),
    })
}

/// A lab for steady-state figures: the demo's, without the data copy (which has a cost of
/// its own, measured by bench-sync).
pub fn quiet_lab(opts: &LabOptions) -> Result<Lab> {
    let opts = LabOptions {
        sync_every: 0,
        ..opts.clone()
    };
    // The lab panics when it cannot start or is interrupted (its Drop tears down what it built
    // while unwinding): an error here, as `demo::run_scenario` makes of a scenario's panic.
    std::panic::catch_unwind(|| Lab::start(opts)).map_err(|_| {
        if crate::lab::interrupted() {
            anyhow::anyhow!("interrupted; the lab was torn down")
        } else {
            anyhow::anyhow!("the lab did not start (see the message above); it was torn down")
        }
    })
}

/// Runs the bench.
pub fn run(failover: &Path, seconds: u64, json_out: bool) -> Result<()> {
    let opts = demo::prepare(failover)?;
    let (cores, cpu, kernel) = machine();
    // The default heartbeat interval: the bare loops probe as often as the daemon.
    let interval = Duration::from_millis(2);
    let floor = crate::floor::measure(interval, Duration::from_secs(seconds))?;
    let lab = quiet_lab(&opts)?;
    // Past the start's own work (XDP attach, the first joins).
    crate::lab::pause(Duration::from_secs(2))?;
    let s = steady(&lab, Duration::from_secs(seconds))?;
    drop(lab);
    println!(
        "failover steady state: {seconds} s, {} probes, {cores} cores, {cpu}, kernel {kernel}",
        s.probes
    );
    println!(
        "{:<8} {:>8} {:>12} {:>9} {:>9}  threads (% of a core)",
        "role", "CPU %", "us/probe", "RSS MiB", "PSS MiB"
    );
    for (role, u) in [("primary", &s.primary), ("monitor", &s.monitor)] {
        let threads: Vec<String> = u
            .threads
            .iter()
            .filter(|(_, p)| **p >= 0.005)
            .map(|(k, p)| format!("{k} {p:.3}"))
            .collect();
        println!(
            "{role:<8} {:>8.3} {:>12.2} {:>9.1} {:>9.1}  {}",
            u.cpu_pct,
            s.us_per_probe(u),
            u.rss_mib,
            u.pss_mib,
            threads.join(", ")
        );
    }
    // µs per probe to % of a core at one probe per interval.
    let pct = |us: f64| us / interval.as_micros() as f64 * 100.0;
    println!(
        "floor (bare loops, same topology, no daemon): prober {:.2} us/probe ({:.3} %), answerer {:.2} us/probe ({:.3} %)",
        floor.prober_us,
        pct(floor.prober_us),
        floor.answer_us,
        pct(floor.answer_us)
    );
    println!(
        "over the floor: monitor {:.2}x, primary {:.2}x",
        s.us_per_probe(&s.monitor) / floor.prober_us.max(1e-9),
        s.us_per_probe(&s.primary) / floor.answer_us.max(1e-9)
    );
    if json_out {
        println!(
            "{}",
            json!({"steady": s, "floor": floor, "us_per_probe": {"primary": s.us_per_probe(&s.primary),
                "monitor": s.us_per_probe(&s.monitor)}, "cores": cores, "cpu": cpu, "kernel": kernel})
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::metric;

    #[test]
    fn metric_reads_the_named_series_only() {
        let text = "# HELP failover_probes_sent_total Heartbeat probes sent.\n\
                    failover_probes_sent_total_x{node=\"b\"} 7\n\
                    failover_probes_sent_total{node=\"b\"} 12345\n\
                    failover_probes_in_time_total{node=\"b\"} 12000\n";
        assert_eq!(metric(text, "failover_probes_sent_total"), Some(12345.0));
        assert_eq!(metric(text, "failover_probes_lost_total"), None);
        assert_eq!(metric("failover_epoch 3\n", "failover_epoch"), Some(3.0));
    }
}
