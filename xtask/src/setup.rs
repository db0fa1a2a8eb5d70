//! `cargo xtask setup`: installs what the build and the tests need, idempotently.
//!
//! Each part checks first and installs only what is missing, so a second run is a quick no-op
//! that prints one line. An install is one step line with a hint of its duration. What setup
//! cannot install (no nightly toolchain, not root for apt, a package apt cannot find, no
//! /usr/bin/python3) fails setup with one line naming it and what to do.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context as _, Result};

use crate::step::Runner;

/// Debian packages: LLVM 22 for bpf-linker, bpftool for map dumps, iproute2/nftables/iputils
/// for the namespace tests, util-linux for nsenter/setpriv, python3-venv for the BMC emulator.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "bpftool",
    "iproute2",
    "iputils-ping",
    "iputils-arping",
    "nftables",
    "python3-venv",
    "util-linux",
    "openssl",
    // fence_redfish, driven by `method = "agent"` in the fence-level tests.
    "fence-agents",
];

/// The bpf-linker release aya 0.14 works with.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// cargo-deb, which builds the Debian package (`cargo xtask package`), pinned.
const CARGO_DEB_VERSION: &str = "3.8.0";

/// The Redfish peer of the tests: sushy-tools from PyPI, pinned.
const SUSHY_VERSION: &str = "2.2.0";

/// The Prometheus project's Python client, pinned: its OpenMetrics parser checks the daemon's
/// metrics in the tests (promtool would mean Debian's whole prometheus package).
const PROMETHEUS_CLIENT_VERSION: &str = "0.23.1";

/// The interpreter the venv is built from: Debian's, not a pyenv shim, because each emulator
/// start pays the interpreter's start-up.
const PYTHON: &str = "/usr/bin/python3";

/// What `setup --with NAME` adds on request: the Debian packages of the systems `bench-vs`
/// compares against (not needed to build or test).
pub const OPTIONAL: &[(&str, &[&str])] = &[("keepalived", &["keepalived"])];

/// Checks every part and installs what is missing, in dependency order (apt brings LLVM 22 for
/// bpf-linker and python3-venv for the venv); `with` names optional parts of [`OPTIONAL`].
pub fn run_with(runner: &Runner, with: &[String]) -> Result<()> {
    let mut extra: Vec<&'static str> = Vec::new();
    for w in with {
        match OPTIONAL.iter().find(|(name, _)| name == w) {
            Some((_, pkgs)) => extra.extend(*pkgs),
            None => bail!(
                "setup: --with {w}: unknown; known: {}",
                OPTIONAL
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    let started = Instant::now();
    let installed = [
        apt(runner, &extra)?,
        rust_src(runner)?,
        bpf_linker(runner)?,
        cargo_deb(runner)?,
        sushy(runner)?,
    ];
    if !installed.contains(&true) {
        eprintln!(
            "xtask: setup: everything present ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Checks every part and installs what is missing (no optional parts).
pub fn run(runner: &Runner) -> Result<()> {
    run_with(runner, &[])
}

/// Installs the missing Debian packages (and `extra`); returns whether it installed any.
fn apt(runner: &Runner, extra: &[&'static str]) -> Result<bool> {
    let missing = missing_packages(extra)?;
    if missing.is_empty() {
        return Ok(false);
    }
    let list = missing.join(" ");
    if !crate::is_root() {
        bail!(
            "setup: Debian packages {list} are missing: run `cargo xtask setup` as root (it \
             installs them with apt-get), or install them yourself"
        );
    }
    runner
        .step("setup: apt-get update")
        .hint("a few seconds")
        .run([apt_get(&["update", "-qq"])])?;
    let unknown: Vec<&str> = missing
        .iter()
        .copied()
        .filter(|p| !has_candidate(p))
        .collect();
    if !unknown.is_empty() {
        bail!(
            "setup: apt cannot find {}: add an apt source that has it (see \
             /etc/apt/sources.list.d/), then run `cargo xtask setup` again",
            unknown.join(" ")
        );
    }
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(&missing);
    runner
        .step("setup: apt-get install")
        .hint(&format!("{list}; about a minute"))
        .run([apt_get(&install)])?;
    Ok(true)
}

/// The packages of [`APT_PACKAGES`] and `extra` that dpkg does not list as installed.
fn missing_packages(extra: &[&'static str]) -> Result<Vec<&'static str>> {
    let mut missing = Vec::new();
    for &pkg in APT_PACKAGES.iter().chain(extra) {
        let out = Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", pkg])
            .stderr(Stdio::null())
            .output()
            .context(
                "setup: cannot run dpkg-query: setup knows Debian (apt) only; install the \
                 packages of xtask/src/setup.rs yourself",
            )?;
        if !String::from_utf8_lossy(&out.stdout).contains("install ok installed") {
            missing.push(pkg);
        }
    }
    Ok(missing)
}

/// Whether apt has an installable version of `pkg` (after `apt-get update`).
fn has_candidate(pkg: &str) -> bool {
    Command::new("apt-cache")
        .args(["policy", pkg])
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Candidate:"))
                .any(|c| c.trim() != "(none)")
        })
        .unwrap_or(false)
}

/// `apt-get ARGS`, never prompting.
fn apt_get(args: &[&str]) -> Command {
    let mut c = Command::new("apt-get");
    c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    c
}

/// Adds rust-src to the nightly toolchain (build-std for the eBPF target); returns whether it
/// did.
fn rust_src(runner: &Runner) -> Result<bool> {
    let out = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .context(
            "setup: cannot run rustup: install rustup with the stable and nightly toolchains",
        )?;
    if !out.status.success() {
        // Never `rustup toolchain install nightly` here: that would move a pinned nightly.
        let why = String::from_utf8_lossy(&out.stderr);
        bail!(
            "setup: no nightly toolchain ({}): it builds the XDP object; install it with \
             `rustup toolchain install nightly --component rust-src`, then run setup again",
            why.lines().next().unwrap_or("rustup failed").trim()
        );
    }
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src"))
    {
        return Ok(false);
    }
    let mut c = Command::new("rustup");
    c.args(["component", "add", "rust-src", "--toolchain", "nightly"]);
    runner
        .step("setup: rust-src for nightly")
        .hint("rustup component add, about 10 s")
        .run([c])?;
    Ok(true)
}

/// Installs cargo-deb at [`CARGO_DEB_VERSION`] unless that version is there; returns whether
/// it did.
fn cargo_deb(runner: &Runner) -> Result<bool> {
    let have = crate::cargo()
        .args(["deb", "--version"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_DEB_VERSION))
        .unwrap_or(false);
    if have {
        return Ok(false);
    }
    let mut c = crate::cargo();
    c.args(["install", "--locked"])
        .arg(format!("cargo-deb@{CARGO_DEB_VERSION}"));
    runner
        .step(&format!("setup: cargo-deb {CARGO_DEB_VERSION}"))
        .hint("cargo install, about a minute")
        .run([c])?;
    Ok(true)
}

/// Installs bpf-linker at [`BPF_LINKER_VERSION`] unless that version is on PATH; returns
/// whether it did.
fn bpf_linker(runner: &Runner) -> Result<bool> {
    let have = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION))
        .unwrap_or(false);
    if have {
        return Ok(false);
    }
    let mut c = crate::cargo();
    c.args(["install", "--locked"])
        .arg(format!("bpf-linker@{BPF_LINKER_VERSION}"))
        .args(["--no-default-features", "--features", "llvm-22"]);
    // Without LLVM_PREFIX the build finds an older LLVM through llvm-config and fails to link.
    c.env("LLVM_PREFIX", "/usr/lib/llvm-22");
    runner
        .step(&format!("setup: bpf-linker {BPF_LINKER_VERSION}"))
        .hint("cargo install against LLVM 22, about a minute")
        .run([c])?;
    Ok(true)
}

/// The venv holding sushy-emulator; the tests find it at target/sushy-venv.
fn sushy_venv() -> PathBuf {
    crate::root().join("target").join("sushy-venv")
}

/// Creates the venv with sushy-tools, bcrypt and prometheus-client unless they are there;
/// returns whether it did.
fn sushy(runner: &Runner) -> Result<bool> {
    let venv = sushy_venv();
    if sushy_present(&venv) {
        return Ok(false);
    }
    if !Path::new(PYTHON).exists() {
        bail!(
            "setup: {PYTHON} not found: it builds the sushy-tools venv; install Debian's \
             python3-venv (`apt-get install python3-venv`), then run setup again"
        );
    }
    let mut create = Command::new(PYTHON);
    create.args(["-m", "venv"]).arg(&venv);
    let mut install = Command::new(venv.join("bin").join("pip"));
    install
        .args(["install", "--quiet"])
        .arg(format!("sushy-tools=={SUSHY_VERSION}"))
        .arg("bcrypt")
        .arg(format!("prometheus-client=={PROMETHEUS_CLIENT_VERSION}"));
    runner
        .step(&format!("setup: sushy-tools {SUSHY_VERSION}"))
        .hint("venv in target/sushy-venv, about 30 s")
        .run([create, install])?;
    Ok(true)
}

/// Whether `venv` has sushy-emulator at [`SUSHY_VERSION`], bcrypt and prometheus-client at
/// [`PROMETHEUS_CLIENT_VERSION`]. Asks the venv's python
/// directly: `pip show` takes ten times as long.
fn sushy_present(venv: &Path) -> bool {
    if !venv.join("bin").join("sushy-emulator").exists() {
        return false;
    }
    Command::new(venv.join("bin").join("python"))
        .args([
            "-c",
            "import bcrypt, importlib.metadata as m; print(m.version('sushy-tools'), m.version('prometheus-client'))",
        ])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).trim()
                    == format!("{SUSHY_VERSION} {PROMETHEUS_CLIENT_VERSION}")
        })
}
