//! The `failover` command: parses arguments and calls the library.
use std::{net::IpAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use failover::{
    detector::Outcome,
    fastpath::DEFAULT_PIN_DIR,
    logging::{self, LogFormat},
    probe::{self, ProbeOptions, Signal},
    responder::{Identity, Responder},
    wire::Kind,
};
use serde_json::json;

/// Keeps a service address reachable when the server holding it dies.
///
/// Two hosts share a primary (service) address and a monitor address. The monitor signals the
/// primary continuously; an XDP program stamps every reply at line rate, and when replies stop
/// the monitor fences the primary through its BMC and takes the address over.
#[derive(Parser, Debug)]
#[command(name = "failover", version, propagate_version = true)]
struct Cli {
    /// Log filter: error, warn, info, debug, trace, or a tracing directive list
    /// ("info,failover::probe=debug"). XDP log lines use the target failover_ebpf.
    #[arg(long, global = true, default_value = "info", env = "FAILOVER_LOG")]
    log_level: String,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Signal an address through the XDP fast path and judge every reply against its deadline.
    ///
    /// Loads and attaches the fast path on INTERFACE (driver mode, else generic mode), sends a
    /// heartbeat signal every INTERVAL and prints one line per probe: in_time when XDP stamped
    /// the reply before the deadline, late when after it (but within the late window), lost
    /// otherwise. The summary gives RTT min/median/max computed from the XDP arrival stamps.
    ///
    /// ICMP echo (the default) proves the peer's kernel and link are up; UDP heartbeats
    /// (--udp-port) prove its failover daemon (or `failover respond`) is running too.
    ///
    /// Exit status: 0 when at least one probe was answered in time, 1 when none was, 2 on
    /// error. Needs root.
    Probe {
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
    },
    /// Validate a daemon configuration file without touching the system.
    ///
    /// Unknown fields are errors, durations are human strings ("10ms"), and every error names
    /// the file, the field and what is expected. Exit status 0 when valid, 1 when not.
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
    },
    /// Run the daemon: join, then act as primary or monitor, until SIGTERM or SIGINT.
    ///
    /// The host starts in the joining role holding no floating address (addresses left on the
    /// interface by a previous run are removed first). It signals the monitor address and
    /// waits join_timeout: an answer makes it primary (claim 11), silence makes it the monitor
    /// (claim 12). A monitor probes the primary address through the XDP fast path and, after
    /// heartbeat.misses probes without an in-time reply, fences the peer through [boot] and
    /// takes the primary address over - never before the fence is confirmed.
    ///
    /// Every decision is an event (JSON lines with --log-format json). On SIGTERM or SIGINT
    /// the daemon releases its addresses and exits 0; exit status 2 on a fatal error.
    Run {
        /// The configuration file (see `failover check-config` and docs/configuration.md).
        #[arg(long, short = 'c')]
        config: PathBuf,
    },
    /// Ask a running daemon for its role, epoch, peer state, addresses and last boot action.
    Status {
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
    },
    /// Answer UDP heartbeats (what the daemon embeds), until interrupted.
    Respond {
        /// UDP port to listen on.
        #[arg(long, short = 'p')]
        port: u16,
        /// Address to bind; the default listens on every IPv4 and IPv6 address. Bind the
        /// probed address itself on hosts with several addresses, so replies come from it.
        #[arg(long, default_value = "::", value_parser = parse_addr)]
        bind: IpAddr,
        /// Node id carried in replies.
        #[arg(long, default_value_t = 0)]
        node_id: u32,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e}; expected a duration such as \"10ms\", \"1s\" or \"250us\""))
}

fn parse_addr(s: &str) -> Result<IpAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not an IPv4 or IPv6 address"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(&cli.log_level, cli.log_format) {
        eprintln!("failover: {e}");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("failover: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("failover: {}", failover::error_chain(e.as_ref()));
            ExitCode::from(2)
        }
    }
}

async fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Probe {
            interface,
            target,
            udp_port,
            interval,
            timeout,
            late_window,
            count,
            json,
            bpffs_dir,
            keep_pins,
        } => {
            let opts = ProbeOptions {
                interface,
                target,
                signal: udp_port.map_or(Signal::Icmp, |port| Signal::Udp { port }),
                interval,
                timeout,
                late_window,
                count,
                pin_dir: Some(bpffs_dir),
                keep_pins,
            };
            probe_cmd(&opts, json).await
        }
        Command::CheckConfig { file } => match failover::config::Config::load(&file) {
            Ok(cfg) => {
                println!(
                    "{}: ok (node {} id {}, P {}, M {}, {:?} heartbeat, detection about {:?}, boot {:?}, takeover {})",
                    file.display(),
                    cfg.node.name,
                    cfg.node.id,
                    cfg.addresses.primary,
                    cfg.addresses.monitor,
                    cfg.heartbeat.kind,
                    cfg.detection_time(),
                    cfg.boot.method,
                    cfg.takeover,
                );
                if cfg.boot.allow_unfenced_takeover {
                    println!(
                        "warning: boot.allow_unfenced_takeover = true: this host may take the \
                         primary address without confirming the old primary is off"
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("failover: {}", failover::error_chain(&e));
                Ok(ExitCode::from(1))
            }
        },
        Command::Run { config } => {
            let cfg = failover::config::Config::load(&config)?;
            failover::daemon::run(cfg, shutdown_signal())
                .await
                .with_context(|| format!("failover run --config {}", config.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status {
            socket,
            config,
            json,
        } => {
            let socket = match config {
                Some(c) => failover::config::Config::load(&c)?.control.socket,
                None => socket,
            };
            let st = failover::control::query_status(&socket).await?;
            if json {
                println!("{}", serde_json::to_string(&st)?);
            } else {
                print_status(&st);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Respond {
            port,
            bind,
            node_id,
        } => {
            let identity = Arc::new(Identity {
                node: node_id,
                ..Default::default()
            });
            let r = Responder::bind(bind, port, identity, &[Kind::Heartbeat])?;
            tracing::info!(addr = %r.local_addr(), "answering heartbeats");
            let counters = r.counters.clone();
            tokio::select! {
                res = r.serve() => res?,
                _ = shutdown_signal() => {}
            }
            tracing::info!(
                answered = counters.answered.load(std::sync::atomic::Ordering::Relaxed),
                ignored = counters.ignored.load(std::sync::atomic::Ordering::Relaxed),
                "responder stopped"
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn probe_cmd(opts: &ProbeOptions, json: bool) -> anyhow::Result<ExitCode> {
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
                    "rejected_token": st.rejected_token, "truncated": st.truncated,
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
            "xdp: {} frames seen, {} matched, {} foreign id, {} bad token, {} truncated, {} malformed",
            st.seen, st.matched, st.rejected_id, st.rejected_token, st.truncated, st.malformed
        );
    }
    Ok(if s.in_time > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_status(st: &failover::control::Status) {
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
    println!("uptime:    {} s", st.uptime_s);
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
