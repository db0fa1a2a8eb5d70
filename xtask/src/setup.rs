//! `cargo xtask setup`: installs what the build and the tests need, idempotently.
//!
//! Each step checks first and installs only what is missing, so a second run is a quick no-op.
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};

use crate::status;

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
];

const BPF_LINKER_VERSION: &str = "0.13.0";

/// The Redfish peer of the tests: sushy-tools from PyPI, pinned, in a venv under target/.
const SUSHY: &str = "sushy-tools==2.2.0";

pub fn run() -> Result<()> {
    apt()?;
    rust_src()?;
    bpf_linker()?;
    sushy()?;
    eprintln!("xtask: setup complete");
    Ok(())
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn apt() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !failover_tests::is_root() {
        bail!(
            "missing Debian packages {}: run `cargo xtask setup` as root (it uses apt-get)",
            missing.join(" ")
        );
    }
    let mut c = Command::new("apt-get");
    c.args(["update", "-qq"]);
    status(c, "apt-get update")?;
    let mut c = Command::new("apt-get");
    c.args(["install", "-y", "-qq", "--no-install-recommends"]);
    c.args(&missing);
    c.env("DEBIAN_FRONTEND", "noninteractive");
    status(c, &format!("apt-get install {}", missing.join(" ")))
        .with_context(|| format!("installing Debian packages {}", missing.join(" ")))?;
    Ok(())
}

fn rust_src() -> Result<()> {
    let out = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .context("run rustup (is rustup installed?)")?;
    if !out.status.success() {
        // Never `rustup toolchain install nightly`: that would move the pinned nightly.
        bail!(
            "the nightly toolchain is missing ({}); it builds the XDP object and is expected \
             on this kind of machine",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src"))
    {
        return Ok(());
    }
    let mut c = Command::new("rustup");
    c.args(["component", "add", "rust-src", "--toolchain", "nightly"]);
    status(c, "rustup component add rust-src --toolchain nightly")
}

fn bpf_linker() -> Result<()> {
    let have = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if have.contains(BPF_LINKER_VERSION) {
        return Ok(());
    }
    // Without LLVM_PREFIX the build finds LLVM 14 through llvm-config and fails to link.
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.args([
        "install",
        "--locked",
        &format!("bpf-linker@{BPF_LINKER_VERSION}"),
        "--no-default-features",
        "--features",
        "llvm-22",
    ]);
    c.env("LLVM_PREFIX", "/usr/lib/llvm-22");
    status(
        c,
        &format!("cargo install bpf-linker@{BPF_LINKER_VERSION} (LLVM 22)"),
    )
    .context("building bpf-linker; it needs llvm-22-dev")
}

/// The venv holding sushy-emulator (`target/sushy-venv`); the tests find it there.
pub fn sushy_venv() -> std::path::PathBuf {
    crate::root().join("target").join("sushy-venv")
}

fn sushy() -> Result<()> {
    let venv = sushy_venv();
    let pip = venv.join("bin").join("pip");
    let have = Command::new(&pip)
        .args(["show", "sushy-tools"])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("Version: 2.2.0"))
        .unwrap_or(false);
    if have && venv.join("bin").join("sushy-emulator").exists() {
        return Ok(());
    }
    // /usr/bin/python3, not a pyenv shim: each emulator start pays the interpreter's start-up.
    let mut c = Command::new("/usr/bin/python3");
    c.args(["-m", "venv"]).arg(&venv);
    status(c, "python3 -m venv target/sushy-venv")?;
    let mut c = Command::new(&pip);
    c.args(["install", "--quiet", SUSHY, "bcrypt"]);
    status(c, &format!("pip install {SUSHY} bcrypt"))
}
