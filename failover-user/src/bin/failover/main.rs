//! The `failover` command: parses arguments and calls the library, one file per subcommand.
mod bmc;
mod check;
mod generate;
mod probe;
mod respond;
mod status;
mod switchover;
mod view;
mod witness;

use std::{net::IpAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use failover::logging::{self, LogFormat};

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
    Probe(probe::ProbeArgs),
    /// Validate a daemon configuration file without touching the system.
    ///
    /// Unknown fields are errors, durations are human strings ("10ms"), and every error names
    CheckConfig(check::CheckArgs),
    /// Write the man pages and shell completions (for packaging).
    #[command(hide = true)]
    Generate(generate::GenerateArgs),
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
    Status(status::StatusArgs),
    /// Disarm or arm failure detection on this host, for planned work on the pair.
    ///
    /// In maintenance the monitor judges nothing: no fence, no takeover (a stopping primary
    /// included), while probes, metrics and copies go on; `maintenance_on` and
    /// `maintenance_off` are events, `failover status` and the metric failover_maintenance
    /// show it. It is kept in state_dir/admin.json, so a restart keeps it; --for ends it by
    /// itself. Refused during a fence or takeover (exit 1). Root only, over the control
    /// socket.
    Maintenance(status::MaintenanceArgs),
    /// Put this host in standby (it holds nothing and judges nobody), or take it out.
    ///
    /// Pacemaker's node standby. A primary hands P to its monitor first, as `failover
    /// switchover` does, and is refused on the same grounds (the monitor must be able to take
    /// P); a monitor gives up M and stops probing. In standby the host fences nobody, takes
    /// nothing over, and tells a joining peer it is in standby, so the peer serves P alone
    /// and never fences it. `off` joins the pair again (as monitor, when the peer serves P).
    /// Kept in state_dir/admin.json across restarts. Events standby_on and standby_off; the
    /// role shows as `standby`. Refused during a fence or takeover (exit 1). Root only, over
    /// the control socket.
    Standby(status::StandbyArgs),
    /// Hand the primary address to the monitor without a fence, and become its monitor.
    ///
    /// Run on the primary. It releases P and tells the monitor (`leaving`), which takes P at
    /// its first missed heartbeat; this host rejoins as the monitor (claim 12). Refused, with
    /// the reason (exit 1), unless the monitor can take P at once: this host is primary and
    /// not in maintenance, the monitor was heard on P within 2 s, its copy of the data is
    /// within sync.max_age (when set), and with boot.lease the witness grants. Events
    /// switchover_started, then switchover_done (or switchover_failed, when the monitor did
    /// not take P and this host serves it again). Root only, over the control socket.
    Switchover(switchover::SwitchoverArgs),
    /// Talk to a BMC over Redfish without a config file: check it, or reset a system by hand.
    ///
    /// The same settings as the [boot] section of the configuration. TLS is verified (against
    /// --ca-file, else the system store) unless --insecure is given. The password comes from a
    /// file or an environment variable and is never printed.
    Bmc {
        #[command(subcommand)]
        cmd: bmc::BmcCmd,
    },
    /// Answer UDP heartbeats (what the daemon embeds), until interrupted.
    Respond(respond::RespondArgs),
    /// Run the lease witness for `boot.fence = "lease"`, on a third host both hosts reach.
    ///
    /// One UDP port: it renews the primary's lease and answers the monitor's request to
    /// revoke it, agreeing only once the primary has gone silent at the witness too (while the
    /// primary still reaches it, the two hosts lost only each other: `revoke_refused`, nothing
    /// is taken over). The revoked epoch is persisted before the agreement is sent. Messages
    /// are authenticated with the pair's lease key; only the two hosts' addresses are read.
    /// It never fences and never holds an address. `failover status --socket` reads its
    /// control socket.
    Witness(witness::WitnessArgs),
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
    // Held until the end of main: dropping it flushes the log lines still queued.
    let _log = match logging::init(&cli.log_level, cli.log_format) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("failover: {e}");
            return ExitCode::from(2);
        }
    };
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
        Command::Probe(args) => probe::run(args).await,
        Command::CheckConfig(args) => check::run(args),
        Command::Generate(args) => generate::run(args, <Cli as clap::CommandFactory>::command()),
        Command::Bmc { cmd } => bmc::run(cmd).await,
        Command::Run { config } => {
            let cfg = failover::config::Config::load(&config)?;
            failover::daemon::run(cfg, shutdown_signal())
                .await
                .with_context(|| format!("failover run --config {}", config.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(args) => status::run(args).await,
        Command::Maintenance(args) => status::maintenance(args).await,
        Command::Standby(args) => status::standby(args).await,
        Command::Switchover(args) => switchover::run(args).await,
        Command::Respond(args) => respond::run(args).await,
        Command::Witness(args) => witness::run(args).await,
    }
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
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
