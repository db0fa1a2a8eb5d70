//! `cargo xtask demo`: `failover probe` between two namespaces that the demo creates, first with
//! the link up (every probe in time), then with the peer's link down (every probe lost).
//!
//! The full failover lab replaces this once the daemon exists; the namespaces are cleaned up on
//! every exit path, Ctrl-C included (the probe finishes its summary and the demo tears down).
use std::{path::Path, process::Command};

use anyhow::{bail, Context as _, Result};
use failover_tests::{last_json_line, veth, BpffsDir, NetNs};
use serde_json::{json, Value};

const PREFIX: &str = "fo-demo-";

fn leftover_namespaces() -> Result<Vec<String>> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .context("run ip netns list")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(PREFIX))
        .map(str::to_string)
        .collect())
}

fn probe(ns: &NetNs, bin: &Path, iface: &str, pins: &Path, extra: &[&str]) -> Result<Value> {
    let mut c = ns.command(bin);
    c.args([
        "probe",
        "--json",
        "-i",
        iface,
        "-t",
        "10.99.0.2",
        "--bpffs-dir",
    ])
    .arg(pins)
    .args(extra);
    let out = c.output().context("run failover probe")?;
    let text = String::from_utf8_lossy(&out.stdout);
    for l in text.lines() {
        if let Ok(v) = serde_json::from_str::<Value>(l) {
            if let (Some(seq), Some(o)) = (v["seq"].as_u64(), v["outcome"].as_str()) {
                match v["rtt_us"].as_f64() {
                    Some(r) => eprintln!("  probe {seq:>3}: {o:<7} rtt {r:>8.1} us"),
                    None => eprintln!("  probe {seq:>3}: {o}"),
                }
            }
        }
    }
    if out.status.code() == Some(2) {
        bail!(
            "failover probe failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(last_json_line(&out.stdout))
}

pub fn run(bin: &Path, json_out: bool) -> Result<()> {
    let left = leftover_namespaces()?;
    if !left.is_empty() {
        bail!(
            "a previous demo is still up (namespaces {}); remove them with `ip netns del NAME`",
            left.join(", ")
        );
    }
    // Ctrl-C reaches the probe, which prints its summary and exits; the demo itself keeps
    // going so that it can tear down. (The probe installs its own handler after exec.)
    // SAFETY: setting a signal disposition has no memory-safety preconditions.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };

    let a = NetNs::new(&format!("{PREFIX}a"));
    let b = NetNs::new(&format!("{PREFIX}b"));
    veth(&a, "demo-a", "10.99.0.1/24", &b, "demo-b", "10.99.0.2/24");
    let pins = BpffsDir::new();
    let args = ["--interval", "10ms", "--timeout", "5ms", "-c", "50"];

    eprintln!(
        "demo: host A ({}) probes host B ({}) at 10.99.0.2 over a veth pair, XDP on A",
        a.name(),
        b.name()
    );
    eprintln!("demo: 1) link up: 50 ICMP probes, 10 ms apart, 5 ms deadline");
    let up = probe(&a, bin, "demo-a", &pins.pins(), &args)?;
    eprintln!("demo: 2) B's link down: 20 probes");
    b.ip(["link", "set", "demo-b", "down"]);
    let down = probe(
        &a,
        bin,
        "demo-a",
        &pins.pins(),
        &[
            "--interval",
            "10ms",
            "--timeout",
            "5ms",
            "--late-window",
            "200ms",
            "-c",
            "20",
        ],
    )?;
    let summary = json!({"link_up": up, "link_down": down});
    eprintln!(
        "demo: link up: {}/{} in time, rtt min/median/max {}/{}/{} us; link down: {}/{} lost",
        up["in_time"],
        up["sent"],
        up["rtt_us"]["min"],
        up["rtt_us"]["p50"],
        up["rtt_us"]["max"],
        down["lost"],
        down["sent"]
    );
    if json_out {
        println!("{summary}");
    }
    Ok(())
}
