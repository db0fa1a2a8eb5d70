//! `failover status`: ask a running daemon where it stands.
use std::{path::PathBuf, process::ExitCode};

use failover::{config::Config, control};

/// Arguments of `failover status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The daemon's control socket.
    #[arg(
        long,
        default_value = "/run/failover/control.sock",
        conflicts_with = "config"
    )]
    socket: PathBuf,
    /// Read the control socket path from this configuration file instead.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Print the status as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Queries the daemon and prints its status.
pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let socket = match args.config {
        Some(c) => Config::load(&c)?.control.socket,
        None => args.socket,
    };
    let v = control::query_json(&socket).await?;
    if args.json {
        println!("{}", serde_json::to_string(&v)?);
    } else if v["role"] == "witness" {
        print_witness(&v);
    } else {
        print(
            &serde_json::from_value(v)
                .map_err(|e| anyhow::anyhow!("{}: not a daemon's status: {e}", socket.display()))?,
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_witness(v: &serde_json::Value) {
    println!(
        "role:      witness on {}",
        v["listen"].as_str().unwrap_or("?")
    );
    println!(
        "epochs:    granted {}, revoked up to {}",
        v["granted_epoch"], v["revoked_epoch"]
    );
    println!("grant:     may run {} ms more", v["outstanding_ms"]);
    println!(
        "revokes:   {} agreed, {} refused; {} datagrams dropped",
        v["revokes"], v["revokes_refused"], v["dropped"]
    );
    for h in v["hosts"].as_array().into_iter().flatten() {
        println!(
            "node {}:    epoch {}, last request {} ms ago, {} requests, {} grants, {} refusals, clock {} ppm",
            h["node"],
            h["epoch"],
            h["last_request_age_ms"],
            h["requests"],
            h["grants"],
            h["refusals"],
            h["clock_rate_ppm"]
        );
    }
    println!("uptime:    {} s", v["uptime_s"]);
}

fn print(st: &control::Status) {
    println!("node:      {}", st.node);
    println!("role:      {}", st.role);
    println!("epoch:     {}", st.epoch);
    let p = &st.peer;
    let age = p
        .last_reply_age_ms
        .map_or("never".to_string(), |a| format!("{a} ms ago"));
    println!(
        "peer:      {} ({}): {}, last reply {age}, {} consecutive misses",
        p.name, p.address, p.state, p.consecutive_misses
    );
    println!(
        "holds:     {}",
        if st.addresses_held.is_empty() {
            "nothing".to_string()
        } else {
            st.addresses_held.join(", ")
        }
    );
    match &st.last_boot {
        Some(b) => println!("last boot: {} {} ({} ms ago)", b.action, b.result, b.age_ms),
        None => println!("last boot: none"),
    }
    if let Some(l) = &st.lease {
        let age = |a: Option<f64>| a.map_or("never".to_string(), |a| format!("{a:.0} ms ago"));
        if l.active {
            println!(
                "lease:     {:.1} ms left, {} lapses; last grant: witness {}, monitor {}",
                l.remaining_ms,
                l.lapses,
                age(l.witness_grant_age_ms),
                age(l.monitor_grant_age_ms)
            );
        } else {
            println!("lease:     none held (not primary); {} lapses", l.lapses);
        }
    }
    println!("uptime:    {} s", st.uptime_s);
}
