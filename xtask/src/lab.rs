//! The product commands: `run` (the daemon) and `demo`, `bench`, `bench-sync`, `bench-xdp`,
//! `bench-cpu`, `bench-vs` (the `failover-lab` binary, which validates its own arguments). Each needs root (network
//! namespaces, XDP) and replaces xtask with its binary (exec): its stdio, Ctrl-C handling and
//! exit status are then the binary's own, and the prompt does not come back while a lab is
//! still tearing down.
use std::{convert::Infallible, os::unix::process::CommandExt as _, path::Path, process::Command};

use anyhow::{Error, Result};

use crate::{build::Artifacts, step::describe};

/// `cargo xtask run -- ARGS`: `failover ARGS`.
pub fn run_failover(artifacts: &Artifacts, args: &[String]) -> Result<Infallible> {
    let mut c = as_root(&artifacts.failover);
    c.args(args);
    exec(c)
}

/// `cargo xtask demo`: `failover-lab demo --failover BIN --fault F [--json] [--show-config]`.
pub fn demo(
    artifacts: &Artifacts,
    fault: &str,
    json: bool,
    show_config: bool,
) -> Result<Infallible> {
    let mut c = lab(artifacts, "demo");
    c.args(["--fault", fault]);
    if json {
        c.arg("--json");
    }
    if show_config {
        c.arg("--show-config");
    }
    exec(c)
}

/// What `cargo xtask bench` passes on.
pub struct BenchArgs {
    pub fault: String,
    pub runs: usize,
    pub window_s: u64,
    pub fence: Option<String>,
    pub bmc_off_delay: Option<String>,
    pub json: bool,
}

/// `cargo xtask bench`: `failover-lab bench --failover BIN --fault F --runs N --window-s S
/// [--fence MODES --bmc-off-delay D --json]`.
pub fn bench(artifacts: &Artifacts, a: &BenchArgs) -> Result<Infallible> {
    let mut c = lab(artifacts, "bench");
    c.args(["--fault", &a.fault]);
    c.args(["--runs", &a.runs.to_string()]);
    c.args(["--window-s", &a.window_s.to_string()]);
    if let Some(f) = &a.fence {
        c.args(["--fence", f]);
    }
    if let Some(d) = &a.bmc_off_delay {
        c.args(["--bmc-off-delay", d]);
    }
    if a.json {
        c.arg("--json");
    }
    exec(c)
}

/// `cargo xtask bench-sync`: `failover-lab bench-sync --failover BIN --size-mib N --rpo-runs N`.
pub fn bench_sync(artifacts: &Artifacts, size_mib: usize, rpo_runs: usize) -> Result<Infallible> {
    let mut c = lab(artifacts, "bench-sync");
    c.args(["--size-mib", &size_mib.to_string()]);
    c.args(["--rpo-runs", &rpo_runs.to_string()]);
    exec(c)
}

/// `failover-lab SUBCOMMAND --failover BIN ARGS` (the arguments validated by the lab binary).
pub fn lab_command(artifacts: &Artifacts, subcommand: &str, args: &[String]) -> Result<Infallible> {
    let mut c = lab(artifacts, subcommand);
    c.args(args);
    exec(c)
}

/// `cargo xtask bench-xdp`: `failover-lab bench-xdp --repeat N --rounds N`. It loads the XDP
/// program itself (BPF_PROG_TEST_RUN), so it needs no `--failover`.
pub fn bench_xdp(artifacts: &Artifacts, repeat: u32, rounds: usize) -> Result<Infallible> {
    let mut c = as_root(&artifacts.lab);
    c.arg("bench-xdp");
    c.args(["--repeat", &repeat.to_string()]);
    c.args(["--rounds", &rounds.to_string()]);
    exec(c)
}

/// `failover-lab SUBCOMMAND --failover BIN`, as root: the lab runs that daemon binary.
fn lab(artifacts: &Artifacts, subcommand: &str) -> Command {
    let mut c = as_root(&artifacts.lab);
    c.arg(subcommand).arg("--failover").arg(&artifacts.failover);
    c
}

/// A command for `program`, through `sudo -E` when not root (-E: FAILOVER_* settings such as
/// FAILOVER_LAB_KEEP reach it).
fn as_root(program: &Path) -> Command {
    let mut c = if crate::is_root() {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.arg("-E").arg(program);
        c
    };
    c.current_dir(crate::root());
    c
}

/// Replaces this process with `cmd`; returns only when that fails.
fn exec(mut cmd: Command) -> Result<Infallible> {
    let err = cmd.exec();
    Err(Error::new(err).context(format!("cannot run `{}`", describe(&cmd))))
}
