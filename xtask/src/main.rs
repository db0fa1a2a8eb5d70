//! `cargo xtask`: the project's tasks (setup, build, run, demo, bench, bench-sync, bench-xdp,
//! model, fuzz, test). See README.md.
//!
//! xtask depends on no crate of this workspace (anyhow, clap and serde_json only): it must
//! compile on a bare machine with nothing but the stable toolchain, because the workspace
//! crates' build scripts need the eBPF toolchain that `setup` installs. Product code (the lab,
//! the benchmarks) lives in the `failover-lab` binary, which xtask builds and runs.
mod build;
mod fuzz;
mod lab;
mod package;
mod setup;
mod step;
mod test;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::Result;
use clap::{Parser, Subcommand};

use build::{Artifacts, Profile};
use step::Runner;

/// The command line.
#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "failover project tasks",
    long_about = "failover project tasks. Every task that needs tools runs `setup` first, which \
                  is a quick no-op once they are installed. Steps print one line each; their \
                  output goes to target/xtask/logs/<step>.log and is shown when a step fails."
)]
struct Cli {
    /// Stream every step's output (cargo, apt-get, tests) instead of capturing it in
    /// target/xtask/logs/.
    #[arg(long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

/// The subcommands. Names and flags are documented in README.md: keep them stable.
#[derive(Subcommand)]
enum Cmd {
    /// Install what build and tests need: Debian packages (llvm-22-dev, bpftool, iproute2,
    /// iputils, nftables, python3-venv, util-linux, openssl) with apt-get, rust-src for the
    /// nightly toolchain, bpf-linker 0.13.0 built against LLVM 22, cargo-deb 3.8.0, and
    /// sushy-tools 2.2.0 (the Redfish emulator of the tests, with the Prometheus parser the
    /// metrics test uses) in target/sushy-venv.
    ///
    /// Idempotent: checks first and installs only what is missing, so a second run is a quick
    /// no-op. Installing Debian packages needs root. It never installs or updates the nightly
    /// toolchain itself.
    Setup {
        /// Also install an optional part (comma-separated): `keepalived` (Debian's package,
        /// for `bench-vs keepalived`).
        #[arg(long, value_delimiter = ',')]
        with: Vec<String>,
    },
    /// Run setup, then build target/<profile>/failover (the daemon, XDP object embedded) and
    /// target/<profile>/failover-lab (the lab and the benchmarks).
    Build {
        /// Build with the release profile (target/release) instead of debug (target/debug).
        #[arg(long)]
        release: bool,
    },
    /// Run setup and build, then run `failover ARGS` as root (through `sudo -E` when not root)
    /// and exit with its status.
    Run {
        /// Run the release build instead of the debug build.
        #[arg(long)]
        release: bool,
        /// Arguments for failover, after `--`: `cargo xtask run -- probe --interface eth0 ...`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// The main job: the failover lab. Two hosts with lab BMCs and a client in network
    /// namespaces; a fault on the primary; detection, fence, takeover, rejoin (claim 12); then
    /// the recovery-only variant (claim 11). Prints both timelines. See docs/lab.md.
    ///
    /// Runs setup and the debug build first, then `failover-lab demo` as root.
    Demo {
        /// The fault: link, oneway, freeze, kill9, bmc-down, bmc-slow, loss, cpu (on the
        /// primary); monitor-link, witness-down, restart, bmc-flap, copy-load (where a fence
        /// would be wrong), bmc-lies (a fence that did not work; docs/lab.md).
        #[arg(long, default_value = "link")]
        fault: String,
        /// Print the summary as one JSON object on the last line of stdout.
        #[arg(long)]
        json: bool,
        /// Print the lab directory and the generated configs (kept on disk with
        /// FAILOVER_LAB_KEEP=1).
        #[arg(long)]
        show_config: bool,
    },
    /// Build the Debian package target/debian/failover_VERSION_ARCH.deb (cargo-deb): the
    /// release binary, the unit (not enabled), the example configuration as a conffile, man
    /// pages (failover(8) and one per subcommand, failover.toml(5)), completions for bash, zsh
    /// and fish, README.Debian and the docs. Runs setup and the release build first.
    Package,
    /// Everything CI runs, as root: setup, the workspace check (xtask depends on no workspace
    /// crate), fmt, clippy (userspace and eBPF), build, unit tests and privileged integration
    /// tests.
    Test,
    /// Benchmark of the data copy: a full copy and a 1 % change of a generated tree over a
    /// veth link (throughput, CPU), then the lab's recovery point at the default sync.every.
    ///
    /// Runs setup and the release build first, then `failover-lab bench-sync` as root.
    BenchSync {
        /// Size of the generated tree, MiB.
        #[arg(long, default_value_t = 1024)]
        size_mib: usize,
        /// Lab runs for the recovery-point distribution.
        #[arg(long, default_value_t = 10)]
        rpo_runs: usize,
    },
    /// Benchmark of the daemons' cost at steady state with the default heartbeat: CPU % of a
    /// core, CPU time per probe and RSS of the primary and the monitor, per thread too (a
    /// healthy lab pair, no data copy).
    ///
    /// Runs setup and the release build first, then `failover-lab bench-cpu` as root.
    BenchCpu {
        /// The measuring window, seconds.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// The figures as one JSON object on the last line of stdout.
        #[arg(long)]
        json: bool,
    },
    /// Benchmark against keepalived: this daemon and keepalived (Debian's 2.2.7, VRRPv3
    /// unicast, 10 ms adverts, and its defaults as a second row) in the same lab topology,
    /// same client, same faults, runs alternating so that drift hits both alike. Per system:
    /// client outage min/median/p95/max, how long two hosts answered on P, false takeovers
    /// per 10 minutes under 5 % loss or CPU saturation, CPU % and RSS of each node at steady
    /// state; then the ratios failover / keepalived. keepalived does not fence.
    ///
    /// Runs setup (with keepalived) and the release build first, then `failover-lab bench-vs`
    /// as root.
    BenchVs {
        /// The system to compare with: keepalived.
        system: String,
        /// Runs per system and fault.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Faults, comma-separated: link, freeze (takeovers); loss, cpu (false takeovers over
        /// --window-s).
        #[arg(long, default_value = "link")]
        fault: String,
        /// For loss and cpu: how long each run watches, seconds.
        #[arg(long, default_value_t = 600)]
        window_s: u64,
        /// failover's fence modes, comma-separated (bmc, lease); the first is the one the
        /// ratios use.
        #[arg(long, default_value = "bmc")]
        fence: String,
        /// Leave out keepalived with its default adverts (1 s).
        #[arg(long)]
        no_defaults: bool,
        /// For freeze: how long keepalived's master stays frozen, seconds.
        #[arg(long, default_value_t = 5)]
        freeze_s: u64,
        /// The steady-state window for CPU and RSS, seconds (0: skip).
        #[arg(long, default_value_t = 20)]
        steady_s: u64,
        /// The lab BMCs cut the power (and report Off) this long after the request, e.g. "3s".
        #[arg(long, default_value = "0s")]
        bmc_off_delay: String,
        /// One JSON object per fault; the last line of stdout is the last fault's.
        #[arg(long)]
        json: bool,
        /// Draw the outage distributions per system and fault to this SVG file.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// Benchmark of the XDP program's cost per frame against a pass-only program
    /// (BPF_PROG_TEST_RUN, in the kernel), then veth throughput of unrelated frames with no
    /// program, the fast path and the pass-only program attached (about 70 s).
    ///
    /// Runs setup and the release build first, then `failover-lab bench-xdp` as root.
    BenchXdp {
        /// Runs per measurement.
        #[arg(long, default_value_t = 1_000_000)]
        repeat: u32,
        /// Measurements per frame kind (the median is reported).
        #[arg(long, default_value_t = 9)]
        rounds: usize,
    },
    /// Benchmark: the lab's takeover scenario N times with the release build; prints min,
    /// median, p95 and max of detection, fence, takeover and client outage, machine noted.
    /// With --fault loss or cpu (the primary stays healthy) it counts false takeovers over
    /// --window-s seconds per run instead. With a safety fault (monitor-link, witness-down,
    /// restart, bmc-flap, copy-load) it sums what must never happen (power-offs of a healthy
    /// host, false takeovers, split brain) and prints the distribution of the scenario's own
    /// figures (restart: the handover outage; copy-load: copies and probe round trips).
    ///
    /// Runs setup and the release build first, then `failover-lab bench` as root.
    Bench {
        /// Fault: link, oneway, freeze, kill9, bmc-down, bmc-slow (a takeover); loss, cpu
        /// (false takeovers over a window); monitor-link, witness-down, restart, bmc-flap,
        /// copy-load, bmc-lies (the safety scenarios).
        #[arg(long, default_value = "link")]
        fault: String,
        /// Number of runs.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// For `loss`, `cpu` and the safety faults: how long each run watches, in seconds
        /// (copy-load: copies go on for this long; `FAILOVER_LAB_COPY_MIB` sets the data size,
        /// default 256).
        #[arg(long, default_value_t = 600)]
        window_s: u64,
        /// Compare fencing modes in one run, alternating (A B A B): `lease,bmc` prints client
        /// outage min/median/p99/max and split brain per mode, and the ratio of the medians
        /// (link, freeze, kill9).
        #[arg(long)]
        fence: Option<String>,
        /// With --fence: the lab BMCs cut the power (and report Off) this long after the
        /// request, as a real BMC does, e.g. "3s".
        #[arg(long)]
        bmc_off_delay: Option<String>,
        /// With --fence: the figures as one JSON object on the last line of stdout.
        #[arg(long)]
        json: bool,
    },
    /// Model-check the protocol (tests/model, docs/design.md "What the model covers"): both
    /// hosts' real role machines under every interleaving of a lossy, reordering,
    /// partitioning network, failing and lying BMCs, and crashing, freezing and stopped
    /// daemons, up to --depth steps from a cold start. Prints the states explored and, for a
    /// violated property, a readable trace. `cargo xtask test` runs it at depth 12.
    ///
    /// Runs setup, then `failover-model` built with the release profile.
    Model {
        /// Steps from the cold start to explore.
        #[arg(long, default_value_t = 14)]
        depth: usize,
        /// Faults per path.
        #[arg(long, default_value_t = 2)]
        faults: u8,
    },
    /// Fuzz every decoder fed from outside (failover-user/fuzz, docs/fuzzing.md): the heartbeat
    /// message, the sync channel's frames and manifests, the Redfish answers, the config file,
    /// the control plane's inputs and the XDP program (through BPF_PROG_TEST_RUN; root only).
    ///
    /// Runs setup, installs cargo-fuzz 0.13.2 when `cargo fuzz` is missing, builds the targets
    /// with the nightly toolchain, then runs each in turn for --seconds (corpus in
    /// failover-user/fuzz/corpus/TARGET, crashes in failover-user/fuzz/artifacts/TARGET, logs
    /// in target/xtask/logs/fuzz-TARGET.log). Prints seconds, executions, corpus size and
    /// crashes per target; fails when any target crashed or hung. Run it under `nice -n 19`
    /// beside timing-sensitive work.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only this target: wire, sync_frame, sync_manifest, redfish_json, config,
        /// control_request, xdp.
        #[arg(long)]
        target: Option<String>,
        /// Minimise each corpus afterwards (`cargo fuzz cmin`), to keep what is committed small.
        #[arg(long)]
        cmin: bool,
    },
}

/// Runs the task; errors end as one `xtask: ...` line and exit status 1.
fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.cmd, &Runner::new(cli.verbose)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one subcommand. The product commands replace xtask with their binary, so they return
/// only on failure (`match never {}` turns their `Infallible` into `()`).
fn dispatch(cmd: Cmd, runner: &Runner) -> Result<()> {
    match cmd {
        Cmd::Setup { with } => setup::run_with(runner, &with),
        Cmd::Build { release } => prepare(runner, Profile::new(release)).map(drop),
        Cmd::Run { release, args } => {
            lab::run_failover(&prepare(runner, Profile::new(release))?, &args)
                .map(|never| match never {})
        }
        Cmd::Demo {
            fault,
            json,
            show_config,
        } => lab::demo(&prepare(runner, Profile::Debug)?, &fault, json, show_config)
            .map(|never| match never {}),
        Cmd::Bench {
            fault,
            runs,
            window_s,
            fence,
            bmc_off_delay,
            json,
        } => lab::bench(
            &prepare(runner, Profile::Release)?,
            &lab::BenchArgs {
                fault,
                runs,
                window_s,
                fence,
                bmc_off_delay,
                json,
            },
        )
        .map(|never| match never {}),
        Cmd::BenchSync { size_mib, rpo_runs } => {
            lab::bench_sync(&prepare(runner, Profile::Release)?, size_mib, rpo_runs)
                .map(|never| match never {})
        }
        Cmd::BenchCpu { seconds, json } => {
            let mut args = vec![format!("--seconds={seconds}")];
            if json {
                args.push("--json".into());
            }
            lab::lab_command(&prepare(runner, Profile::Release)?, "bench-cpu", &args)
                .map(|never| match never {})
        }
        Cmd::BenchVs {
            system,
            runs,
            fault,
            window_s,
            fence,
            no_defaults,
            freeze_s,
            steady_s,
            bmc_off_delay,
            json,
            plot,
        } => {
            if system != "keepalived" {
                anyhow::bail!("bench-vs {system}: only keepalived is known");
            }
            setup::run_with(runner, &["keepalived".to_string()])?;
            let artifacts = build::run(runner, Profile::Release)?;
            let mut args = vec![
                system,
                format!("--runs={runs}"),
                format!("--fault={fault}"),
                format!("--window-s={window_s}"),
                format!("--fence={fence}"),
                format!("--freeze-s={freeze_s}"),
                format!("--steady-s={steady_s}"),
                format!("--bmc-off-delay={bmc_off_delay}"),
            ];
            if no_defaults {
                args.push("--no-defaults".into());
            }
            if json {
                args.push("--json".into());
            }
            if let Some(p) = plot {
                // The lab runs from the workspace root: a relative path is the caller's.
                let p = std::env::current_dir()?.join(p);
                args.push(format!("--plot={}", p.display()));
            }
            lab::lab_command(&artifacts, "bench-vs", &args).map(|never| match never {})
        }
        Cmd::BenchXdp { repeat, rounds } => {
            lab::bench_xdp(&prepare(runner, Profile::Release)?, repeat, rounds)
                .map(|never| match never {})
        }
        Cmd::Package => package::run(runner).map(drop),
        Cmd::Test => test::run(runner),
        Cmd::Model { depth, faults } => {
            setup::run(runner)?;
            let mut c = cargo();
            c.args(["run", "--release", "-q", "-p", "failover-model", "--"])
                .args(["--depth", &depth.to_string()])
                .args(["--faults", &faults.to_string()]);
            let st = c.status()?;
            anyhow::ensure!(st.success(), "the model check failed ({st})");
            Ok(())
        }
        Cmd::Fuzz {
            seconds,
            target,
            cmin,
        } => fuzz::run(runner, seconds, target.as_deref(), cmin),
    }
}

/// Setup, then the build: what every command that runs a binary needs first.
fn prepare(runner: &Runner, profile: Profile) -> Result<Artifacts> {
    setup::run(runner)?;
    build::run(runner, profile)
}

/// The workspace root (xtask lives one level below it).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("CARGO_MANIFEST_DIR is xtask/, which has a parent")
}

/// Cargo's target directory for the artifacts: `$CARGO_TARGET_DIR` when set (the child cargo
/// inherits it, with the root as its working directory, so relative paths resolve against the
/// root), else `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root().join(dir),
        _ => root().join("target"),
    }
}

/// A `cargo` command in the workspace root. `$CARGO` is the cargo that runs xtask, so children
/// use the same toolchain.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

/// Whether this process runs as root: the effective uid, the second field of `Uid:` in
/// /proc/self/status (no libc dependency for one number).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(effective_uid)
        == Some(0)
}

/// The effective uid from the text of /proc/<pid>/status.
fn effective_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|uid| uid.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_uid_is_the_second_field() {
        let status = "Name:\tcat\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(effective_uid(status), Some(0));
        assert_eq!(effective_uid("Name:\tcat\n"), None);
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
