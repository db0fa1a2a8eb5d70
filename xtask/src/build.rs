//! `cargo xtask build`: the two binaries every other task runs, in one cargo invocation:
//! `failover` (the daemon; its build script builds and embeds the XDP object, which is why
//! setup must run first) and `failover-lab` (the lab and the benchmarks).
use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::step::Runner;

/// The cargo profile to build with.
#[derive(Clone, Copy)]
pub enum Profile {
    /// `target/debug`: quick to build; the demo and the tests use it.
    Debug,
    /// `target/release`: the benchmarks measure optimised code.
    Release,
}

/// The built binaries, as absolute paths.
pub struct Artifacts {
    /// The daemon.
    pub failover: PathBuf,
    /// The lab and benchmark driver.
    pub lab: PathBuf,
}

impl Profile {
    /// The profile chosen by a `--release` flag.
    pub fn new(release: bool) -> Self {
        if release {
            Self::Release
        } else {
            Self::Debug
        }
    }

    /// The profile's directory under the target directory (and its name).
    fn dir(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Release => "release",
        }
    }
}

/// Builds both binaries with `profile` as one quiet step; returns where they are.
pub fn run(runner: &Runner, profile: Profile) -> Result<Artifacts> {
    let mut c = crate::cargo();
    c.args(["build", "-p", "failover-user", "--bin", "failover"]);
    c.args(["-p", "failover-lab", "--bin", "failover-lab"]);
    if let Profile::Release = profile {
        c.arg("--release");
    }
    // Captured: aya-build's nested cargo shows as hundreds of `warning: ...` lines otherwise.
    runner
        .step(&format!("build ({})", profile.dir()))
        .run([c])?;
    let dir = crate::target_dir().join(profile.dir());
    let artifacts = Artifacts {
        failover: dir.join("failover"),
        lab: dir.join("failover-lab"),
    };
    for bin in [&artifacts.failover, &artifacts.lab] {
        if !bin.exists() {
            bail!(
                "the build succeeded but {} is missing (does a cargo config set build.target-dir?)",
                bin.display()
            );
        }
    }
    Ok(artifacts)
}
