//! `cargo xtask`: setup, build, run, demo, test. See README.md.
mod bench_sync;
mod bench_xdp;
mod demo;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "failover project tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what build and tests need (apt packages, rust-src for nightly, bpf-linker).
    /// Idempotent: a quick no-op when everything is present.
    Setup,
    /// Build the failover binary (with the XDP object embedded).
    Build {
        /// Release profile.
        #[arg(long)]
        release: bool,
    },
    /// Build, then run `failover ARGS` as root.
    Run {
        /// Release profile.
        #[arg(long)]
        release: bool,
        /// Arguments for failover.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// The main job: the failover lab. Two hosts with lab BMCs and a client in network
    /// namespaces; a fault on the primary; detection, fence, takeover, rejoin (claim 12); then
    /// the recovery-only variant (claim 11). Prints both timelines. See docs/lab.md.
    Demo {
        /// The fault injected on the primary: link, oneway, freeze, kill9, bmc-down, bmc-slow,
        /// loss, cpu.
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
    /// Everything CI runs: setup, fmt, clippy (userspace and eBPF), unit and privileged tests.
    Test,
    /// Benchmark of the data copy: a full copy and a 1 % change of a generated tree over a
    /// veth link (throughput, CPU), then the lab's recovery point at the default sync.every.
    BenchSync {
        /// Size of the generated tree, MiB.
        #[arg(long, default_value_t = 1024)]
        size_mib: usize,
        /// Lab runs for the recovery-point distribution.
        #[arg(long, default_value_t = 10)]
        rpo_runs: usize,
    },
    /// Benchmark of the XDP program's cost per frame against a pass-only program
    /// (BPF_PROG_TEST_RUN, in the kernel).
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
    /// --window-s seconds per run instead.
    Bench {
        /// Fault that causes the takeover.
        #[arg(long, default_value = "link")]
        fault: String,
        /// Number of runs.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// For `loss` and `cpu` (the primary stays healthy): how long each run watches for a
        /// false takeover, in seconds.
        #[arg(long, default_value_t = 600)]
        window_s: u64,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Setup => setup::run(),
        Cmd::Build { release } => build(release).map(|_| ()),
        Cmd::Run { release, args } => {
            let bin = build(release)?;
            let mut c = as_root(&bin);
            c.args(&args);
            let st = c
                .status()
                .with_context(|| format!("run {}", bin.display()))?;
            std::process::exit(st.code().unwrap_or(1));
        }
        Cmd::Demo {
            fault,
            json,
            show_config,
        } => {
            setup::run()?;
            let bin = build(false)?;
            let lab_bin = bin.with_file_name("failover-lab");
            demo::run(&bin, &lab_bin, &fault, json, show_config)
        }
        Cmd::Test => test(),
        Cmd::BenchXdp { repeat, rounds } => {
            setup::run()?;
            bench_xdp::run(repeat, rounds.max(1))
        }
        Cmd::BenchSync { size_mib, rpo_runs } => {
            // The copy runs in this process: measure optimised code, not a debug build.
            if cfg!(debug_assertions) {
                let mut c = cargo();
                c.args([
                    "run",
                    "--release",
                    "--quiet",
                    "-p",
                    "xtask",
                    "--",
                    "bench-sync",
                ]);
                c.args(["--size-mib", &size_mib.to_string()]);
                c.args(["--rpo-runs", &rpo_runs.to_string()]);
                let st = c.status().context("run the release build of xtask")?;
                std::process::exit(st.code().unwrap_or(1));
            }
            setup::run()?;
            let bin = build(true)?;
            let lab_bin = bin.with_file_name("failover-lab");
            bench_sync::run(&bin, &lab_bin, size_mib, rpo_runs)
        }
        Cmd::Bench {
            fault,
            runs,
            window_s,
        } => {
            setup::run()?;
            let bin = build(true)?;
            let lab_bin = bin.with_file_name("failover-lab");
            demo::bench(&bin, &lab_bin, &fault, runs, Duration::from_secs(window_s))
        }
    }
}

/// The workspace root (xtask lives one level below it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs `c`, failing with `what` when it does not succeed.
fn status(mut c: Command, what: &str) -> Result<()> {
    eprintln!("xtask: {what}");
    let st = c.status().with_context(|| format!("{what}: spawn {c:?}"))?;
    if !st.success() {
        bail!("{what} failed ({st})");
    }
    Ok(())
}

fn build(release: bool) -> Result<PathBuf> {
    let mut c = cargo();
    c.args(["build", "-p", "failover-user", "--bin", "failover"]);
    c.args(["-p", "failover-tests", "--bin", "failover-lab"]);
    if release {
        c.arg("--release");
    }
    status(c, "build failover and failover-lab")?;
    Ok(root()
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("failover"))
}

use failover_tests::is_root;

/// A command for `program`, through sudo when not root.
fn as_root(program: &Path) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.arg("-E").arg(program);
        c
    }
}

fn test() -> Result<()> {
    if !is_root() {
        bail!("cargo xtask test runs privileged tests (namespaces, XDP): run it as root");
    }
    setup::run()?;
    let mut c = cargo();
    c.args(["fmt", "--all", "--", "--check"]);
    status(c, "cargo fmt --check")?;
    let mut c = cargo();
    c.args(["clippy", "--all-targets", "--", "-D", "warnings"]);
    status(c, "clippy (userspace crates)")?;
    // Through rustup: $CARGO is the stable cargo binary itself, which has no `+toolchain`.
    let mut c = Command::new("rustup");
    c.current_dir(root().join("failover-ebpf"));
    c.args([
        "run",
        "nightly",
        "cargo",
        "clippy",
        "-p",
        "failover-ebpf",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--bins",
        "--",
        "-D",
        "warnings",
    ]);
    // Keep the eBPF check's artifacts apart so host builds are not invalidated.
    c.env(
        "CARGO_TARGET_DIR",
        root().join("target").join("ebpf-clippy"),
    );
    status(c, "clippy (eBPF crate)")?;
    let bin = build(false)?;
    let mut c = cargo();
    c.args([
        "test",
        "-p",
        "failover-common",
        "-p",
        "failover-user",
        "-p",
        "xtask",
    ]);
    status(c, "unit tests")?;
    let mut c = cargo();
    c.args(["test", "-p", "failover-tests", "--", "--test-threads=1"]);
    c.env("FAILOVER_BIN", &bin);
    status(c, "privileged integration tests")?;
    eprintln!("xtask: all checks passed");
    Ok(())
}
