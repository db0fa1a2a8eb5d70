//! `cargo xtask bench-xdp`: the fast path's cost per frame against a pass-only XDP program
//! (targets in docs/design.md), both run in the kernel through BPF_PROG_TEST_RUN with
//! `repeat`, on the frame kinds that matter: a counted UDP heartbeat reply (the heaviest path),
//! a counted ICMP echo reply, a reply with a foreign token, and unrelated TCP traffic.
use anyhow::{Context as _, Result};
use failover::fastpath::FastPath;
use failover_common::wire;
use failover_harness::frames::{echo, frame, heartbeat, udp, L3, SRC4};

use crate::bench::machine;
use serde_json::json;

const PORT: u16 = 7788;
const ID: u16 = 0x4242;
const TOKEN: u64 = 0x0123_4567_89ab_cdef;

/// Runs the bench: `rounds` measurements of `repeat` runs per frame kind.
pub fn run(repeat: u32, rounds: usize) -> Result<()> {
    anyhow::ensure!(rounds > 0, "--rounds must be at least 1");
    let mut fp = FastPath::detached()
        .icmp(true)
        .udp_port(PORT)
        .build()
        .context("load the XDP program")?;
    fp.add_stream(0, TOKEN, ID, std::net::Ipv4Addr::from(SRC4).into())?;
    let v4 = L3::v4();
    let cases = [
        (
            "udp heartbeat reply, counted",
            frame(
                &v4,
                None,
                17,
                &udp(PORT, &heartbeat(wire::KIND_HEARTBEAT_REPLY, TOKEN, 1)),
            ),
        ),
        (
            "icmp echo reply, counted",
            frame(&v4, None, 1, &echo(0, ID, 1, TOKEN)),
        ),
        (
            "udp reply, foreign token",
            frame(
                &v4,
                None,
                17,
                &udp(PORT, &heartbeat(wire::KIND_HEARTBEAT_REPLY, 7, 1)),
            ),
        ),
        ("tcp, not ours", frame(&v4, None, 6, &[0; 20])),
    ];
    let (cores, cpu, kernel) = machine();
    println!(
        "XDP cost per frame, BPF_PROG_TEST_RUN x {repeat}, median of {rounds} rounds; {cores} cores, {cpu}, kernel {kernel}"
    );
    println!(
        "{:<32} {:>10} {:>10} {:>7}",
        "frame", "ours ns", "pass ns", "ratio"
    );
    let mut out = Vec::new();
    for (name, f) in &cases {
        let mut ours = Vec::new();
        let mut base = Vec::new();
        for _ in 0..rounds {
            let (o, b, _) = fp.cost(f, repeat)?;
            ours.push(o.as_nanos() as f64);
            base.push(b.as_nanos() as f64);
        }
        ours.sort_by(|a, b| a.total_cmp(b));
        base.sort_by(|a, b| a.total_cmp(b));
        let (o, b) = (ours[rounds / 2], base[rounds / 2]);
        println!("{name:<32} {o:>10.1} {b:>10.1} {:>7.2}", o / b.max(1.0));
        out.push(json!({"frame": name, "ours_ns": o, "pass_ns": b, "ratio": o / b.max(1.0)}));
    }
    println!(
        "{}",
        json!({"repeat": repeat, "rounds": rounds, "cores": cores, "cpu": cpu, "kernel": kernel, "cases": out})
    );
    Ok(())
}
