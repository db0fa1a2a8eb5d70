//! `cargo xtask bench-xdp`: the fast path's cost per frame against a pass-only XDP program
//! (DESIGN target: at most 1.1x), both run in the kernel through BPF_PROG_TEST_RUN with
//! `repeat`, on the frame kinds that matter: a counted UDP heartbeat reply (the heaviest path),
//! a counted ICMP echo reply, a reply with a foreign token, and unrelated TCP traffic.
use anyhow::{Context as _, Result};
use failover::fastpath::FastPath;
use failover_common::wire;
use failover_tests::frames::{echo, frame, heartbeat, udp, L3};
use serde_json::json;

const PORT: u16 = 7788;
const ID: u16 = 0x4242;
const TOKEN: u64 = 0x0123_4567_89ab_cdef;

pub fn run(repeat: u32, rounds: usize) -> Result<()> {
    let mut fp = FastPath::detached()
        .icmp_id(ID)
        .udp_port(PORT)
        .build()
        .context("load the XDP program")?;
    fp.add_token(TOKEN)?;
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
            frame(&v4, None, 1, &echo(0, ID, 1)),
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
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
        c.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_string())
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "XDP cost per frame, BPF_PROG_TEST_RUN x {repeat}, median of {rounds} rounds; {} / kernel {}",
        cpu.clone().unwrap_or_default(),
        kernel.trim()
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
        json!({"repeat": repeat, "rounds": rounds, "cpu": cpu, "kernel": kernel.trim(), "cases": out})
    );
    Ok(())
}
