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
    /// Redraw it in place every second (or every --interval) until interrupted, as
    /// `crm_mon` does; a daemon that does not answer is shown as such and asked again.
    #[arg(long, conflicts_with = "json")]
    watch: bool,
    /// With --watch: the time between two redraws ("500ms", "2s"; at least 100ms).
    #[arg(long, requires = "watch", value_parser = crate::parse_duration)]
    interval: Option<std::time::Duration>,
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

/// Queries the daemon and prints its status (again and again with --watch).
pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let socket = args.socket.path()?;
    if args.watch {
        let every = crate::view::watch_interval(args.interval);
        loop {
            let text = match control::query_json(&socket).await {
                Ok(v) => describe(&socket, v)?,
                Err(e) => format!("{}: {}\n", socket.display(), failover::error_chain(&e)),
            };
            let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
            print!(
                "{}{now}  (every {every:?}; Ctrl-C ends)\n\n{text}",
                crate::view::CLEAR
            );
            use std::io::Write as _;
            let _ = std::io::stdout().flush();
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = crate::shutdown_signal() => return Ok(ExitCode::SUCCESS),
            }
        }
    }
    let v = control::query_json(&socket).await?;
    if args.json {
        println!("{}", serde_json::to_string(&v)?);
    } else {
        print!("{}", describe(&socket, v)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// The human form of a daemon's or a witness's status.
fn describe(socket: &std::path::Path, v: serde_json::Value) -> anyhow::Result<String> {
    if v["role"] == "witness" {
        return Ok(witness_text(&v));
    }
    let st = serde_json::from_value(v)
        .map_err(|e| anyhow::anyhow!("{}: not a daemon's status: {e}", socket.display()))?;
    Ok(crate::view::render(&st))
}

fn witness_text(v: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "role:      witness on {}",
        v["listen"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        out,
        "epochs:    granted {}, revoked up to {}",
        v["granted_epoch"], v["revoked_epoch"]
    );
    let _ = writeln!(out, "grant:     may run {} ms more", v["outstanding_ms"]);
    let _ = writeln!(
        out,
        "revokes:   {} agreed, {} refused; {} datagrams dropped",
        v["revokes"], v["revokes_refused"], v["dropped"]
    );
    for h in v["hosts"].as_array().into_iter().flatten() {
        let _ = writeln!(
        out,
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
    let _ = writeln!(out, "uptime:    {} s", v["uptime_s"]);
    out
}
