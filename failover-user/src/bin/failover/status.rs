//! `failover status`: ask a running daemon where it stands.
use std::{path::PathBuf, process::ExitCode};

use failover::{config::Config, control};

/// Arguments of `failover status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// Print the status as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Where the daemon's control socket is: `--socket`, or the one `--config` names.
#[derive(clap::Args, Debug)]
pub struct SocketArgs {
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
}

impl SocketArgs {
    /// The socket's path.
    pub fn path(self) -> anyhow::Result<PathBuf> {
        Ok(match self.config {
            Some(c) => Config::load(&c)?.control.socket,
            None => self.socket,
        })
    }
}

/// Arguments of `failover maintenance`.
#[derive(clap::Args, Debug)]
pub struct MaintenanceArgs {
    /// `on`: disarm failure detection on this host (as monitor it fences nobody and takes
    /// nothing over, a stopping primary included; probes, metrics and copies go on). `off`:
    /// arm it again; a fence then needs a new full window of misses.
    #[arg(value_parser = ["on", "off"])]
    state: String,
    /// With `on`: end by itself after this long ("30m", "2h").
    #[arg(long = "for", value_name = "DURATION", value_parser = crate::parse_duration)]
    for_: Option<std::time::Duration>,
    #[command(flatten)]
    socket: SocketArgs,
}

/// `failover maintenance on|off`: asks the daemon; exit 1 when it refused.
pub async fn maintenance(args: MaintenanceArgs) -> anyhow::Result<ExitCode> {
    let on = args.state == "on";
    if !on && args.for_.is_some() {
        anyhow::bail!("--for goes with `maintenance on` only");
    }
    let socket = args.socket.path()?;
    let req = control::Request::Maintenance {
        on,
        for_ms: args.for_.map(|d| d.as_millis() as u64),
    };
    answer(control::send_request(&socket, &req).await?)
}

/// Arguments of `failover standby`.
#[derive(clap::Args, Debug)]
pub struct StandbyArgs {
    /// `on`: hold nothing and judge nobody (a primary hands P to its monitor first). `off`:
    /// join the pair again.
    #[arg(value_parser = ["on", "off"])]
    state: String,
    #[command(flatten)]
    socket: SocketArgs,
}

/// `failover standby on|off`: asks the daemon; exit 1 when it refused.
pub async fn standby(args: StandbyArgs) -> anyhow::Result<ExitCode> {
    let socket = args.socket.path()?;
    let req = control::Request::Standby {
        on: args.state == "on",
    };
    answer(control::send_request(&socket, &req).await?)
}

/// Prints a request's reply: exit 0 when done, 1 when refused.
fn answer(reply: control::Reply) -> anyhow::Result<ExitCode> {
    if reply.ok {
        println!("{}", reply.detail);
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("failover: refused: {}", reply.detail);
        Ok(ExitCode::from(1))
    }
}

/// Queries the daemon and prints its status.
pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let socket = args.socket.path()?;
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
    if let Some(m) = &st.maintenance {
        match m.remaining_ms {
            Some(ms) => println!(
                "maintenance: on, {} left: no fence, no takeover",
                humantime::format_duration(std::time::Duration::from_secs(ms.div_ceil(1000)))
            ),
            None => println!("maintenance: on until turned off: no fence, no takeover"),
        }
    }
    for c in &st.checks {
        let state = match (c.counts, c.ok) {
            (false, _) => format!("not judged as {} (counts on {})", st.role, c.on),
            (true, true) => "passes".to_string(),
            (true, false) => "FAILED".to_string(),
        };
        println!(
            "check:     {}: {state}; {} runs, {} failed{}",
            c.name,
            c.runs,
            c.failures,
            c.last_error
                .as_deref()
                .map_or(String::new(), |e| format!("; last: {e}"))
        );
    }
    println!("uptime:    {} s", st.uptime_s);
}
