//! The test bench of failover, shared by the privileged tests (tests/integration) and the lab
//! (tests/lab): network namespaces, veth pairs, private bpffs mounts and child processes, each
//! a guard that cleans up on drop (also when a test panics); the BMC peers of the Redfish
//! tests; frame builders; and one two-host fixture ([`pair::Pair`]) with its configuration
//! writer ([`config::HostConfig`]) and event log ([`events::EventLog`]); misbehaving clients
//! ([`hostile`]) and a process's accounting ([`proc`]).
//!
//! Shelling out to `ip` is fine here: this is the test bench, not the daemon.
#![warn(missing_docs)]

pub mod bmc;
pub mod config;
pub mod events;
pub mod frames;
pub mod guard;
pub mod hostile;
pub mod netns;
pub mod pair;
pub mod proc;
pub mod scripts;
mod watch;

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

pub use guard::{spawn_ready, BpffsDir, ChildGuard, TempDir};
pub use netns::{bridge_port, namespace_pids, signal_namespace, veth, wait_namespace_empty, NetNs};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Whether the effective uid (third field of `Uid:` in /proc/self/status) is 0.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Panics with a clear message unless running as root.
pub fn require_root(test: &str) {
    assert!(
        is_root(),
        "{test} needs root (network namespaces, XDP, bpffs): run `cargo xtask test` as root"
    );
}

/// A short unique name: `{prefix}{pid % 10000}x{n}`; interface names must fit in 15 bytes.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 10000)
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of the daemon's events and the XDP stamps, shared
/// by every namespace. (The daemon has its own `sys::monotonic_ns`; the bench does not link
/// the daemon's library.)
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Runs a command to completion; panics with its stderr when it fails.
pub fn run<I, S>(program: &str, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let out = Command::new(program)
        .args(&args)
        .output()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {:?} failed: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/harness lies two levels below the workspace root")
        .to_path_buf()
}

/// A built binary: `$var`, else `target/<profile>/<name>` beside the running executable
/// (`cargo xtask test` builds both and sets the variables).
fn built(var: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/test-xxxx or target/<profile>/failover-lab
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join(name))
        .find(|b| b.exists())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found beside {}: build it first (`cargo xtask test` does) or set {var}",
                exe.display()
            )
        })
}

/// The `failover` binary (`$FAILOVER_BIN`).
pub fn failover_bin() -> PathBuf {
    built("FAILOVER_BIN", "failover")
}

/// The `failover-lab` binary (`$FAILOVER_LAB_BIN`).
pub fn lab_bin() -> PathBuf {
    built("FAILOVER_LAB_BIN", "failover-lab")
}

/// The last non-empty line of `stdout` parsed as JSON.
pub fn last_json_line(stdout: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("no output; stdout was {text:?}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("last line {line:?} is not JSON: {e}"))
}
