//! `cargo xtask demo`: the failover lab on one machine, with the timelines printed.
//!
//! Runs the real daemons in network namespaces with lab BMCs, injects a fault on the primary
//! (A) and prints a timeline with millisecond offsets from the fault, first with takeover (B
//! fences A, takes P over, A rejoins as monitor: claim 12), then recovery only (B reboots A and
//! stays monitor, A comes back as primary: claim 11). Everything is torn down on every exit
//! path, Ctrl-C included.
use std::{path::Path, time::Duration};

use anyhow::{bail, Result};
use serde_json::json;

use crate::{
    fault::Fault,
    lab::{self, interrupted, LabOptions},
    report::Report,
    scenario::scenario,
};

fn print_timeline(title: &str, report: &Report) {
    eprintln!("\n{title}");
    for (label, ms) in &report.timeline {
        match ms {
            Some(ms) => eprintln!("  {ms:>+10.1} ms  {label}"),
            None => eprintln!("  {:>13}  {label}", "-"),
        }
    }
    let s = &report.summary;
    let ms = |v: Option<f64>| v.map_or("null".to_string(), |v| v.to_string());
    eprintln!(
        "  summary: detect {} ms, fence {} ms, takeover {} ms, client outage {} ms, split brain {}, final roles {}",
        ms(s.detect_ms),
        ms(s.fence_ms),
        ms(s.takeover_ms),
        ms(s.outage_ms),
        s.split_brain,
        json!(s.final_roles)
    );
}

/// Checks that no lab is up, catches Ctrl-C and SIGTERM, returns the options.
pub fn prepare(failover: &Path) -> Result<LabOptions> {
    let left = lab::leftovers();
    if !left.is_empty() {
        bail!(
            "a previous lab is still up (namespaces {}); remove them with `ip netns del NAME`",
            left.join(", ")
        );
    }
    lab::catch_interrupts();
    let lab_bin = std::env::current_exe()?;
    Ok(LabOptions::new(failover.to_path_buf(), lab_bin))
}

/// Runs `scenario` and turns a panic (a lab that never reached a state) into an error.
pub fn run_scenario(
    opts: &LabOptions,
    fault: Fault,
    window: Duration,
    what: &str,
) -> Result<Report> {
    match std::panic::catch_unwind(|| scenario(opts, fault, window)) {
        Ok(r) => Ok(r),
        Err(_) if interrupted() => bail!("interrupted; the lab was torn down"),
        Err(_) => bail!("{what} failed (see the message above); the lab was torn down"),
    }
}

/// The demo: takeover, then recovery only; the timelines on stderr and, with `json`, the
/// summary object on the last line of stdout.
pub fn run(failover: &Path, fault: Fault, json_out: bool, show_config: bool) -> Result<()> {
    let mut opts = LabOptions {
        show_config,
        ..prepare(failover)?
    };
    let harmless_for = Duration::from_secs(5);
    eprintln!("demo: 1/2 takeover (fault {fault} on primary a)");
    let takeover = run_scenario(&opts, fault, harmless_for, "the takeover scenario")?;
    print_timeline(
        "takeover: B fences A and takes P over; A rejoins as monitor (claim 12)",
        &takeover,
    );
    if interrupted() {
        bail!("interrupted");
    }
    opts.takeover = false;
    eprintln!("\ndemo: 2/2 recovery only (takeover = false, fault {fault} on primary a)");
    let recovery = run_scenario(&opts, fault, harmless_for, "the recovery-only scenario")?;
    print_timeline(
        "recovery only: B reboots A and stays monitor; A is primary again (claim 11)",
        &recovery,
    );
    let (t, r) = (&takeover.summary, &recovery.summary);
    let summary = json!({
        "fault": fault,
        "detect_ms": t.detect_ms, "fence_ms": t.fence_ms, "takeover_ms": t.takeover_ms,
        "outage_ms": t.outage_ms, "split_brain": t.split_brain + r.split_brain,
        "final_roles": t.final_roles, "claim11": r.claim11, "claim12": t.claim12,
        "sync": t.sync, "recovery_only": r, "takeover": t,
        "timelines": {"takeover": takeover.timeline, "recovery_only": recovery.timeline},
    });
    if json_out {
        println!("{summary}");
    }
    Ok(())
}
