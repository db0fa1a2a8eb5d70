//! `failover probe`: signal an address through the fast path and judge every reply.
use std::{net::IpAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use failover::{
    detector::Outcome,
    fastpath::DEFAULT_PIN_DIR,
    signal::probe::{self, ProbeOptions, Signal},
};
use serde_json::json;

use crate::{parse_addr, parse_duration, shutdown_signal};

/// Arguments of `failover probe`.
#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// Interface to attach XDP to and send the probes through.
    #[arg(long, short = 'i')]
    interface: String,
    /// Address to signal (IPv4 or IPv6).
    #[arg(long, short = 't', value_parser = parse_addr)]
    target: IpAddr,
    /// Send UDP heartbeats to this port instead of ICMP echo requests.
    #[arg(long)]
    udp_port: Option<u16>,
    /// Time between probes.
    #[arg(long, default_value = "10ms", value_parser = parse_duration)]
    interval: Duration,
    /// Deadline of one probe: a reply stamped later is late.
    #[arg(long, default_value = "5ms", value_parser = parse_duration)]
    timeout: Duration,
    /// How long after its deadline a reply still counts as late rather than lost.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    late_window: Duration,
    /// Number of probes; without it, probe until interrupted (Ctrl-C).
    #[arg(long, short = 'c')]
    count: Option<u64>,
    /// Print one JSON object per probe and, as the last line, the summary object.
    #[arg(long)]
    json: bool,
    /// bpffs directory for the pinned maps (a bpffs is mounted on its parent if needed).
    #[arg(long, default_value = DEFAULT_PIN_DIR)]
    bpffs_dir: PathBuf,
    /// Leave the pinned maps in place after exit (for `bpftool map dump pinned ...`).
    #[arg(long)]
    keep_pins: bool,
}

/// Runs the probes and prints one line per probe and the summary.
pub async fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let opts = ProbeOptions {
        interface: args.interface,
        target: args.target,
        signal: args
            .udp_port
            .map_or(Signal::Icmp, |port| Signal::Udp { port }),
        interval: args.interval,
        timeout: args.timeout,
        late_window: args.late_window,
        count: args.count,
        pin_dir: Some(args.bpffs_dir),
        keep_pins: args.keep_pins,
    };
    report(&opts, args.json).await
}

async fn report(opts: &ProbeOptions, json: bool) -> anyhow::Result<ExitCode> {
    let ms = |ns: u64| ns as f64 / 1e6;
    let report = probe::run(opts, shutdown_signal(), |p, o| {
        if json {
            let rtt = o.rtt_ns().map(|r| r as f64 / 1000.0);
            println!(
                "{}",
                json!({"seq": p.seq, "outcome": o.name(), "rtt_us": rtt, "send_failed": p.send_failed})
            );
        } else {
            match o {
                Outcome::InTime { rtt_ns } => println!("seq={} in_time rtt={:.3}ms", p.seq, ms(*rtt_ns)),
                Outcome::Late { rtt_ns } => println!(
                    "seq={} late rtt={:.3}ms (deadline {:?})",
                    p.seq,
                    ms(*rtt_ns),
                    opts.timeout
                ),
                Outcome::Lost if p.send_failed => println!("seq={} lost (send failed)", p.seq),
                Outcome::Lost => println!("seq={} lost", p.seq),
            }
        }
    })
    .await
    .with_context(|| format!("probe {} on {}", opts.target, opts.interface))?;
    let s = &report.summary;
    let rtt = s.rtt_us();
    let st = &report.stats;
    if json {
        let rtt_json = match rtt {
            Some((min, p50, max)) => json!({"min": min, "p50": p50, "max": max}),
            None => json!({"min": null, "p50": null, "max": null}),
        };
        println!(
            "{}",
            json!({
                "sent": s.sent, "in_time": s.in_time, "late": s.late, "lost": s.lost,
                "rtt_us": rtt_json,
                "target": opts.target.to_string(), "interface": opts.interface,
                "signal": opts.signal.name(),
                "xdp_mode": report.mode.map(|m| m.name()),
                "xdp_stats": {
                    "seen": st.seen, "matched": st.matched, "rejected_id": st.rejected_id,
                    "rejected_token": st.rejected_token, "rejected_source": st.rejected_source,
                    "truncated": st.truncated,
                    "malformed": st.malformed,
                },
            })
        );
    } else {
        println!(
            "--- {} via {} ({}, XDP {}) ---",
            opts.target,
            opts.interface,
            opts.signal.name(),
            report.mode.map_or("not attached", |m| m.name())
        );
        println!(
            "{} sent, {} in time, {} late, {} lost",
            s.sent, s.in_time, s.late, s.lost
        );
        if let Some((min, p50, max)) = rtt {
            println!("rtt (XDP stamps) min/median/max = {min:.1}/{p50:.1}/{max:.1} us");
        }
        println!(
            "xdp: {} candidate frames seen, {} matched, {} foreign id, {} bad token, {} foreign source, {} truncated, {} malformed",
            st.seen, st.matched, st.rejected_id, st.rejected_token, st.rejected_source, st.truncated, st.malformed
        );
    }
    Ok(if s.in_time > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
