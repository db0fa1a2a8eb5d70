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
    /// Talk to a BMC over Redfish without a config file: check it, or reset a system by hand.
    ///
    /// The same settings as the [boot] section of the configuration. TLS is verified (against
    /// --ca-file, else the system store) unless --insecure is given. The password comes from a
    /// file or an environment variable and is never printed.
    Bmc {
        #[command(subcommand)]
        cmd: BmcCmd,
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

#[derive(Subcommand, Debug)]
enum BmcCmd {
    /// Reach the BMC, authenticate, find the system and its allowed reset types, and print
    /// its power state. Changes nothing. Exit 0 when all of that worked, 2 otherwise.
    Check {
        #[command(flatten)]
        conn: BmcConn,
        /// Print one JSON object: system, power_state, reset_types, id, name, uuid, auth, ms.
        #[arg(long)]
        json: bool,
    },
    /// Reset the system with one reset type (On, ForceOff, ForceRestart, ...), or run one of
    /// the daemon's strategies exactly as a fence would (--strategy).
    Reset {
        #[command(flatten)]
        conn: BmcConn,
        /// The ResetType; it must be among the system's allowed values.
        #[arg(
            long = "type",
            required_unless_present = "strategy",
            conflicts_with = "strategy"
        )]
        reset_type: Option<String>,
        /// The daemon's strategy: off (the fence: first allowed of --types, default ForceOff,
        /// GracefulShutdown, PushPowerButton; then PowerState Off confirmed), on (On, ForceOn,
        /// PushPowerButton; then PowerState On) or restart (ForceRestart, GracefulRestart,
        /// PowerCycle). A type refused with 400 or 501 falls to the next.
        #[arg(long, value_parser = ["off", "on", "restart"])]
        strategy: Option<String>,
        /// With --strategy: the reset types to try, in order, comma-separated.
        #[arg(long, value_delimiter = ',', requires = "strategy")]
        types: Vec<String>,
        /// Then wait until PowerState shows the result (Off for ForceOff and
        /// GracefulShutdown, On for the others).
        #[arg(long)]
        wait: bool,
        /// Limit of the whole reset (task monitor and --wait included), and of each step of
        /// --strategy.
        #[arg(long, default_value = "120s", value_parser = parse_duration)]
        wait_timeout: Duration,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("password").required(true).args(["password_file", "password_env"])))]
struct BmcConn {
    /// BMC base URL, e.g. https://bmc-b (https required unless --insecure).
    #[arg(long)]
    url: String,
    /// The system: an @odata.id path, or its Id, Name or UUID. Default: the only system.
    #[arg(long)]
    system: Option<String>,
    /// User name.
    #[arg(long)]
    username: String,
    /// File whose first line is the password.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    #[arg(long)]
    password_env: Option<String>,
    /// CA certificate(s), PEM, to verify the BMC with instead of the system store.
    #[arg(long, conflicts_with = "insecure")]
    ca_file: Option<PathBuf>,
    /// Do not verify the BMC's TLS certificate (and allow http://).
    #[arg(long)]
    insecure: bool,
    /// TCP + TLS connect timeout.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Timeout of one request.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Extra attempts after a transport failure.
    #[arg(long, default_value_t = 2)]
    retries: u32,
}

impl BmcConn {
    fn settings(&self) -> anyhow::Result<failover::redfish::Settings> {
        use failover::redfish::{PasswordSource, Settings};
        let url: url::Url = self
            .url
            .parse()
            .with_context(|| format!("--url {:?}", self.url))?;
        if url.scheme() == "http" && !self.insecure {
            anyhow::bail!(
                "--url {}: http:// sends the password in clear text; use https:// or --insecure",
                self.url
            );
        }
        let source = match (&self.password_file, &self.password_env) {
            (Some(f), _) => PasswordSource::File(f.clone()),
            (None, Some(v)) => PasswordSource::Env(v.clone()),
            (None, None) => anyhow::bail!("--password-file or --password-env is required"),
        };
        Ok(Settings {
            url,
            system: self.system.clone(),
            username: self.username.clone(),
            password: source.load()?,
            ca_file: self.ca_file.clone(),
            insecure: self.insecure,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            retries: self.retries,
        })
    }
}

async fn bmc_cmd(cmd: BmcCmd) -> anyhow::Result<ExitCode> {
    use failover::redfish::{wait_power, Client};
    let started = std::time::Instant::now();
    match cmd {
        BmcCmd::Check { conn, json } => {
            let c = Client::connect(conn.settings()?).await?;
            let auth = if c.uses_session() { "session" } else { "basic" };
            let r = c.system().await;
            c.close().await;
            let sys = r?;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            if json {
                println!(
                    "{}",
                    json!({"system": sys.path, "power_state": sys.power_state,
                        "reset_types": sys.reset_types, "id": sys.id, "name": sys.name,
                        "uuid": sys.uuid, "auth": auth, "url": conn.url, "ms": ms})
                );
            } else {
                println!("bmc:         {} ({auth} auth)", conn.url);
                println!(
                    "system:      {} (Id {}, Name {})",
                    sys.path, sys.id, sys.name
                );
                println!("power state: {}", sys.power_state);
                println!("reset types: {}", sys.reset_types.join(", "));
                println!("took:        {ms:.1} ms");
            }
            Ok(ExitCode::SUCCESS)
        }
        BmcCmd::Reset {
            conn,
            strategy: Some(strategy),
            types,
            wait_timeout,
            json,
            ..
        } => {
            use failover::{boot::RedfishBoot, redfish, role::BootAction};
            let list = |d: &[&str]| {
                if types.is_empty() {
                    d.iter().map(|s| s.to_string()).collect()
                } else {
                    types.clone()
                }
            };
            let rb = RedfishBoot {
                settings: conn.settings()?,
                off_types: list(redfish::OFF_TYPES),
                on_types: list(redfish::ON_TYPES),
                restart_types: list(redfish::RESTART_TYPES),
                fence_timeout: wait_timeout,
                on_timeout: wait_timeout,
                poll: Duration::from_millis(250),
            };
            let action = match strategy.as_str() {
                "off" => BootAction::Off,
                "on" => BootAction::On,
                _ => BootAction::Reboot,
            };
            rb.run(action).await?;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            if json {
                println!("{}", json!({"strategy": strategy, "done": true, "ms": ms}));
            } else {
                println!("{strategy} done after {ms:.1} ms");
            }
            Ok(ExitCode::SUCCESS)
        }
        BmcCmd::Reset {
            conn,
            reset_type,
            wait,
            wait_timeout,
            json,
            ..
        } => {
            let reset_type = reset_type.unwrap_or_default();
            let c = Client::connect(conn.settings()?).await?;
            let work = async {
                let sys = c.system().await?;
                if !sys.reset_types.is_empty() && !sys.reset_types.contains(&reset_type) {
                    anyhow::bail!(
                        "--type {reset_type}: {} allows {}",
                        sys.path,
                        sys.reset_types.join(", ")
                    );
                }
                c.reset(&sys, &reset_type).await?;
                let accepted_ms = started.elapsed().as_secs_f64() * 1e3;
                let want = match reset_type.as_str() {
                    "ForceOff" | "GracefulShutdown" => Some("Off"),
                    "Nmi" | "PushPowerButton" => None,
                    _ => Some("On"),
                };
                let mut state = None;
                if let (true, Some(w)) = (wait, want) {
                    wait_power(&c, &sys, w, Duration::from_millis(250), wait_timeout).await?;
                    state = Some(w);
                }
                Ok((sys, accepted_ms, state))
            };
            // Bounds task monitors too; the session is still deleted after a timeout.
            let r = tokio::time::timeout(wait_timeout, work)
                .await
                .unwrap_or_else(|_| {
                    Err(anyhow::anyhow!(
                        "not done within --wait-timeout {wait_timeout:?}"
                    ))
                });
            c.close().await;
            let (sys, accepted_ms, state) = r?;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            if json {
                println!(
                    "{}",
                    json!({"system": sys.path, "reset_type": reset_type, "accepted_ms": accepted_ms,
                        "power_state": state, "ms": ms})
                );
            } else {
                println!(
                    "{reset_type} accepted by {} after {accepted_ms:.1} ms",
                    sys.path
                );
                if let Some(s) = state {
                    println!("power state {s} after {ms:.1} ms");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
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
        Command::Bmc { cmd } => bmc_cmd(cmd).await,
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
