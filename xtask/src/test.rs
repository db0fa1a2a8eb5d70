//! `cargo xtask test`: everything CI runs, in order, one line per step: setup, the workspace
//! check, fmt, clippy (userspace and eBPF), build, unit tests, the model check, privileged
//! integration tests.
use std::{collections::HashSet, process::Command, time::Instant};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::{
    build::{self, Profile},
    cargo, root,
    step::Runner,
};

/// The packages whose unit tests run (no root needed, but run here so CI has one command).
const UNIT_TEST_PACKAGES: &[&str] = &[
    "failover-common",
    "failover-user",
    "xtask",
    "failover-harness",
    "failover-lab",
];

/// Runs every check; the first failure stops the run.
pub fn run(runner: &Runner) -> Result<()> {
    if !crate::is_root() {
        bail!(
            "test: run it as root: the integration tests create network namespaces and attach \
             XDP programs"
        );
    }
    let started = Instant::now();
    crate::setup::run(runner)?;
    runner.step("workspace check").check(workspace_check)?;
    runner
        .step("fmt")
        .run([cargo_with(&["fmt", "--all", "--", "--check"])])?;
    // Every host crate, the privileged tests (outside default-members) included.
    runner.step("clippy (userspace)").run([cargo_with(&[
        "clippy",
        "--workspace",
        "--exclude",
        "failover-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])])?;
    runner.step("clippy (eBPF)").run([ebpf_clippy()])?;
    let artifacts = build::run(runner, Profile::Debug)?;
    let mut unit = cargo_with(&["test"]);
    for pkg in UNIT_TEST_PACKAGES {
        unit.args(["-p", pkg]);
    }
    runner.step("unit tests").summary(test_counts).run([unit])?;
    // The protocol model check (tests/model) at the depth CI affords.
    runner
        .step("model check")
        .summary(test_counts)
        .run([cargo_with(&["test", "-p", "failover-model"])])?;
    // The Debian package (release build, man pages, completions), for the scratch-root test.
    let deb = crate::package::run(runner)?;
    let mut integration = cargo_with(&[
        "test",
        "-p",
        "failover-integration",
        "--",
        "--test-threads=1",
    ]);
    integration
        .env("FAILOVER_BIN", &artifacts.failover)
        .env("FAILOVER_LAB_BIN", &artifacts.lab)
        .env("FAILOVER_DEB", &deb);
    runner
        .step("privileged integration tests")
        .summary(test_counts)
        .run([integration])?;
    eprintln!(
        "xtask: all checks passed ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `cargo ARGS` in the workspace root.
fn cargo_with(args: &[&str]) -> Command {
    let mut c = cargo();
    c.args(args);
    c
}

/// Clippy on the XDP program: nightly (build-std), the BPF target, its own target directory.
fn ebpf_clippy() -> Command {
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
    c
}

/// Fails when xtask depends on a crate of the workspace, from `cargo metadata`.
fn workspace_check() -> Result<()> {
    let out = cargo_with(&["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("cannot run `cargo metadata`")?;
    if !out.status.success() {
        bail!(
            "`cargo metadata` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let metadata: Value =
        serde_json::from_slice(&out.stdout).context("`cargo metadata` printed invalid JSON")?;
    let offending = xtask_workspace_deps(&metadata)?;
    if !offending.is_empty() {
        bail!(
            "xtask depends on {}: xtask must compile on a bare machine, before `cargo xtask \
             setup` has installed the eBPF toolchain the workspace crates' build scripts need; \
             move the code into a binary (like failover-lab) that xtask builds and runs",
            offending.join(", ")
        );
    }
    Ok(())
}

/// The dependencies (normal, dev or build) of the `xtask` package, in `cargo metadata
/// --no-deps` output, on a workspace member (by name) or on any local crate (by `path`), each
/// described for the error message.
fn xtask_workspace_deps(metadata: &Value) -> Result<Vec<String>> {
    let packages = metadata["packages"]
        .as_array()
        .context("cargo metadata: no `packages` list")?;
    // With --no-deps, `packages` holds exactly the workspace members.
    let members: HashSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let xtask = packages
        .iter()
        .find(|p| p["name"] == "xtask")
        .context("cargo metadata: no `xtask` package")?;
    let deps = xtask["dependencies"]
        .as_array()
        .context("cargo metadata: xtask has no `dependencies` list")?;
    Ok(deps
        .iter()
        .filter_map(|dep| {
            let name = dep["name"].as_str()?;
            let path = dep["path"].as_str();
            if !members.contains(name) && path.is_none() {
                return None;
            }
            let kind = dep["kind"].as_str().unwrap_or("normal");
            let renamed = dep["rename"]
                .as_str()
                .map(|r| format!(" as `{r}`"))
                .unwrap_or_default();
            let origin = match path {
                Some(p) => format!("path {p}"),
                None => "a workspace member".to_string(),
            };
            Some(format!("`{name}`{renamed} ({kind} dependency, {origin})"))
        })
        .collect())
}

/// The summed `test result:` counts of cargo test output, e.g. "46 passed, 2 ignored".
fn test_counts(log: &str) -> Option<String> {
    let mut found = false;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    for line in log.lines() {
        let Some(result) = line.trim_start().strip_prefix("test result:") else {
            continue;
        };
        found = true;
        let words: Vec<&str> = result
            .split(|c: char| c.is_whitespace() || c == ';' || c == ',')
            .filter(|w| !w.is_empty())
            .collect();
        for pair in words.windows(2) {
            let Ok(n) = pair[0].parse::<u64>() else {
                continue;
            };
            match pair[1] {
                "passed" => passed += n,
                "failed" => failed += n,
                "ignored" => ignored += n,
                _ => {}
            }
        }
    }
    if !found {
        return None;
    }
    let mut note = format!("{passed} passed");
    if failed > 0 {
        note.push_str(&format!(", {failed} failed"));
    }
    if ignored > 0 {
        note.push_str(&format!(", {ignored} ignored"));
    }
    Some(note)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `cargo metadata --no-deps` output trimmed to what the check reads, with `xtask_deps` as
    /// xtask's dependencies.
    fn metadata(xtask_deps: Value) -> Value {
        json!({
            "packages": [
                {"name": "xtask", "dependencies": xtask_deps},
                {"name": "failover-user", "dependencies": []},
                {"name": "failover-harness", "dependencies": []},
            ],
            "workspace_members": ["path+file:///w/xtask#0.1.0", "path+file:///w/failover-user#0.1.0"],
        })
    }

    #[test]
    fn clean_xtask_passes() {
        let clean = metadata(json!([
            {"name": "anyhow", "kind": null, "rename": null, "source": "registry+https://github.com/rust-lang/crates.io-index"},
            {"name": "clap", "kind": null, "rename": null, "source": "registry+https://github.com/rust-lang/crates.io-index"},
            {"name": "serde_json", "kind": "dev", "rename": null, "source": "registry+https://github.com/rust-lang/crates.io-index"},
        ]));
        assert_eq!(xtask_workspace_deps(&clean).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn workspace_deps_are_named() {
        let violating = metadata(json!([
            {"name": "anyhow", "kind": null, "rename": null},
            {"name": "failover-user", "kind": null, "rename": "failover", "path": "/w/failover-user"},
            {"name": "failover-harness", "kind": "dev", "rename": null},
            {"name": "local-helper", "kind": "build", "rename": null, "path": "/elsewhere/helper"},
        ]));
        assert_eq!(
            xtask_workspace_deps(&violating).unwrap(),
            [
                "`failover-user` as `failover` (normal dependency, path /w/failover-user)",
                "`failover-harness` (dev dependency, a workspace member)",
                "`local-helper` (build dependency, path /elsewhere/helper)",
            ]
        );
    }

    #[test]
    fn metadata_without_xtask_is_an_error() {
        let err = xtask_workspace_deps(&json!({"packages": []})).unwrap_err();
        assert!(err.to_string().contains("no `xtask` package"), "{err}");
    }

    #[test]
    fn counts_sum_over_test_binaries() {
        let log = "\
running 3 tests
test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s
   Doc-tests failover
test result: FAILED. 40 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 9.00s
";
        assert_eq!(
            test_counts(log).as_deref(),
            Some("43 passed, 2 failed, 1 ignored")
        );
        assert_eq!(test_counts("error[E0425]: cannot find value"), None);
    }
}
