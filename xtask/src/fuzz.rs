//! `cargo xtask fuzz`: runs the cargo-fuzz targets of failover-user/fuzz (docs/fuzzing.md).
//!
//! Installs what it needs first (setup, then cargo-fuzz at [`CARGO_FUZZ_VERSION`] when `cargo
//! fuzz` is missing or another version: a quick no-op when present), builds every target once
//! with the nightly toolchain, then runs each for the given time: the corpus is
//! failover-user/fuzz/corpus/TARGET (the target writes its hand-made seeds there first), a crash
//! goes to failover-user/fuzz/artifacts/TARGET. Each run's output goes to
//! target/xtask/logs/fuzz-TARGET.log. It prints a line per target (seconds, executions, corpus
//! size, crashes) and fails when any target crashed or hung.
use std::{
    fs::{self, File},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context as _, Result};

use crate::step::Runner;

/// The cargo-fuzz release the targets are built with.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Every target, in the order they run (one per decoder fed from outside).
pub const TARGETS: &[&str] = &[
    "wire",
    "lease_wire",
    "sync_frame",
    "sync_manifest",
    "redfish_json",
    "config",
    "control_request",
    "xdp",
];

/// The fuzz crate, relative to the workspace root.
const FUZZ_DIR: &str = "failover-user/fuzz";

/// What one target's run gave.
struct Outcome {
    target: &'static str,
    seconds: f64,
    execs: Option<u64>,
    corpus_files: usize,
    corpus_bytes: u64,
    crashes: usize,
    ok: bool,
}

/// Runs `targets` (all when `only` is None) for `seconds` each; `cmin` minimises each corpus
/// afterwards.
pub fn run(runner: &Runner, seconds: u64, only: Option<&str>, cmin: bool) -> Result<()> {
    let targets: Vec<&'static str> = match only {
        None => TARGETS.to_vec(),
        Some(t) => match TARGETS.iter().find(|n| **n == t) {
            Some(n) => vec![*n],
            None => bail!(
                "fuzz: no target {t:?}; the targets are {}",
                TARGETS.join(", ")
            ),
        },
    };
    crate::setup::run(runner)?;
    cargo_fuzz(runner)?;
    let mut build = fuzz_cmd("build");
    if let [one] = targets.as_slice() {
        build.arg(one);
    }
    runner
        .step("fuzz: build the targets")
        .hint("cargo +nightly fuzz build, instrumented; minutes the first time")
        .run([build])?;
    let mut outcomes = Vec::new();
    for target in targets {
        if target == "xdp" && !crate::is_root() {
            eprintln!("xtask: fuzz: xdp skipped: BPF_PROG_TEST_RUN needs root");
            continue;
        }
        let o = run_target(target, seconds)?;
        if cmin && o.ok {
            let mut c = fuzz_cmd("cmin");
            c.arg(target);
            runner
                .step(&format!("fuzz: cmin {target}"))
                .hint("minimise the corpus")
                .run([c])?;
        }
        outcomes.push(o);
    }
    let mut failed = Vec::new();
    for o in &outcomes {
        let (files, bytes) = if cmin {
            corpus_size(&fuzz_dir().join("corpus").join(o.target))
        } else {
            (o.corpus_files, o.corpus_bytes)
        };
        eprintln!(
            "xtask: fuzz: {:<16} {:>6.0} s  {:>12} execs  corpus {:>5} files {:>7.1} KiB  {} crash(es){}",
            o.target,
            o.seconds,
            o.execs.map_or("?".into(), |n| n.to_string()),
            files,
            bytes as f64 / 1024.0,
            o.crashes,
            if o.ok { "" } else { "  FAILED" }
        );
        if !o.ok {
            failed.push(o.target);
        }
    }
    if !failed.is_empty() {
        bail!(
            "fuzz: {} crashed or hung; inputs in {FUZZ_DIR}/artifacts/<target>/, logs in \
             target/xtask/logs/fuzz-<target>.log; replay one with `cargo +nightly fuzz run \
             TARGET --fuzz-dir {FUZZ_DIR} -a FILE`",
            failed.join(", ")
        );
    }
    Ok(())
}

/// Installs cargo-fuzz at [`CARGO_FUZZ_VERSION`] unless `cargo fuzz` already is that version.
fn cargo_fuzz(runner: &Runner) -> Result<()> {
    let have = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION))
        .unwrap_or(false);
    if have {
        return Ok(());
    }
    let mut c = crate::cargo();
    c.args(["install", "--locked"])
        .arg(format!("cargo-fuzz@{CARGO_FUZZ_VERSION}"));
    runner
        .step(&format!("fuzz: install cargo-fuzz {CARGO_FUZZ_VERSION}"))
        .hint("cargo install, about a minute")
        .run([c])
}

fn fuzz_dir() -> PathBuf {
    crate::root().join(FUZZ_DIR)
}

/// `cargo +nightly fuzz SUB --fuzz-dir failover-user/fuzz` in the root (release build with
/// AddressSanitizer, cargo-fuzz's defaults). Through rustup's `cargo` (not `$CARGO`, the stable
/// cargo running xtask) so that `+nightly` applies.
fn fuzz_cmd(sub: &str) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(crate::root())
        .args(["+nightly", "fuzz", sub, "--fuzz-dir", FUZZ_DIR])
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO");
    c
}

/// Files and bytes in a corpus directory.
fn corpus_size(dir: &Path) -> (usize, u64) {
    let Ok(rd) = fs::read_dir(dir) else {
        return (0, 0);
    };
    rd.filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .fold((0, 0), |(n, b), m| (n + 1, b + m.len()))
}

/// Runs one target for `seconds`, its output in target/xtask/logs/fuzz-TARGET.log.
fn run_target(target: &'static str, seconds: u64) -> Result<Outcome> {
    let corpus = fuzz_dir().join("corpus").join(target);
    let artifacts = fuzz_dir().join("artifacts").join(target);
    fs::create_dir_all(&corpus).with_context(|| format!("create {}", corpus.display()))?;
    let crashes_before = corpus_size(&artifacts).0;
    let log = crate::root()
        .join("target/xtask/logs")
        .join(format!("fuzz-{target}.log"));
    if let Some(d) = log.parent() {
        fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    let out = File::create(&log).with_context(|| format!("create {}", log.display()))?;
    let mut c = fuzz_cmd("run");
    c.arg(target)
        .env("FAILOVER_FUZZ_SEEDS", &corpus)
        .arg(&corpus);
    // Inputs that once crashed it run first (a second, read-only corpus directory).
    let regressions = fuzz_dir().join("regressions").join(target);
    if regressions.is_dir() {
        c.arg(&regressions);
    }
    c.arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .args(["-timeout=10", "-print_final_stats=1"])
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    eprint!(
        "xtask: fuzz: {target} ({seconds} s, log {}) ... ",
        log.display()
    );
    let started = Instant::now();
    let status = c
        .status()
        .with_context(|| format!("cannot run {}", crate::step::describe(&c)))?;
    let secs = started.elapsed().as_secs_f64();
    let text = fs::read_to_string(&log).unwrap_or_default();
    let execs = text
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok());
    let crashes = corpus_size(&artifacts).0.saturating_sub(crashes_before);
    let (corpus_files, corpus_bytes) = corpus_size(&corpus);
    let ok = status.success() && crashes == 0;
    eprintln!("{} ({secs:.1} s)", if ok { "ok" } else { "FAILED" });
    if !ok {
        // The end of the log: libFuzzer's report, the input written, the stack.
        let lines: Vec<&str> = text.lines().collect();
        for l in &lines[lines.len().saturating_sub(60)..] {
            eprintln!("    {l}");
        }
    }
    Ok(Outcome {
        target,
        seconds: secs,
        execs,
        corpus_files,
        corpus_bytes,
        crashes,
        ok,
    })
}
