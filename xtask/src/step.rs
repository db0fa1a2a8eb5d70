//! Quiet steps. A step prints one line on stderr, `xtask: NAME ... ok (1.2 s)`: the start when
//! it begins, so a user knows what is running, and the outcome on the same line when it ends.
//! Its children's stdout and stderr go to target/xtask/logs/<name>.log, which is printed whole
//! when the step fails. With `--verbose` the children's output is streamed instead.
use std::{
    fs::{self, File},
    io::Write as _,
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    time::Instant,
};

use anyhow::{bail, Context as _, Result};

/// Runs steps, quietly or (with `--verbose`) streaming their output.
pub struct Runner {
    /// Stream children's output instead of capturing it.
    verbose: bool,
    /// Where captured output goes, one file per step.
    log_dir: PathBuf,
}

/// Reads a captured log and returns a short note for the step's line (e.g. test counts).
pub type Summarize = fn(&str) -> Option<String>;

/// One step, configured with [`Step::hint`] and [`Step::summary`], run with [`Step::run`] or
/// [`Step::check`].
pub struct Step<'a> {
    /// The runner's settings.
    runner: &'a Runner,
    /// Shown on the line; its slug names the log file.
    name: &'a str,
    /// Shown after the name, in parentheses: what it does, how long it takes.
    hint: Option<&'a str>,
    /// Adds to the outcome, from the captured log.
    summary: Option<Summarize>,
}

impl Runner {
    /// A runner logging to target/xtask/logs/ under the workspace root.
    pub fn new(verbose: bool) -> Self {
        Self {
            verbose,
            log_dir: crate::root().join("target").join("xtask").join("logs"),
        }
    }

    /// A step named `name`.
    pub fn step<'a>(&'a self, name: &'a str) -> Step<'a> {
        Step {
            runner: self,
            name,
            hint: None,
            summary: None,
        }
    }
}

impl<'a> Step<'a> {
    /// Adds a hint to the step's line, e.g. "about a minute" for a step that installs.
    pub fn hint(self, hint: &'a str) -> Self {
        Self {
            hint: Some(hint),
            ..self
        }
    }

    /// Adds a note computed from the captured output to the outcome, e.g. "46 passed".
    pub fn summary(self, summary: Summarize) -> Self {
        Self {
            summary: Some(summary),
            ..self
        }
    }

    /// Runs `cmds` in order as this step, stopping at the first that fails.
    pub fn run(self, cmds: impl IntoIterator<Item = Command>) -> Result<()> {
        let line = self.start();
        if self.runner.verbose {
            self.stream(cmds, &line)
        } else {
            self.capture(cmds, &line)
        }
    }

    /// Runs `cmds` with their output streamed to ours.
    fn stream(&self, cmds: impl IntoIterator<Item = Command>, line: &Line) -> Result<()> {
        for cmd in cmds {
            let status = spawn(cmd, Stdio::inherit(), Stdio::inherit())
                .inspect_err(|_| line.fail(None))
                .with_context(|| self.name.to_string())?;
            if !status.success() {
                line.fail(None);
                bail!("{} failed ({})", self.name, describe_status(status));
            }
        }
        line.ok(None);
        Ok(())
    }

    /// Runs `cmds` with their output in the step's log, which is printed when one fails.
    fn capture(&self, cmds: impl IntoIterator<Item = Command>, line: &Line) -> Result<()> {
        let log = self.runner.log_dir.join(format!("{}.log", slug(self.name)));
        let status = run_logged(cmds, &log)
            .inspect_err(|_| line.fail(None))
            .with_context(|| self.name.to_string())?;
        let text = fs::read(&log).unwrap_or_default();
        let note = self
            .summary
            .and_then(|summarize| summarize(&String::from_utf8_lossy(&text)));
        if status.success() {
            line.ok(note);
            return Ok(());
        }
        line.fail(note);
        // The whole log, as written: it is what the user needs to fix the failure.
        let _ = std::io::stderr().write_all(&text);
        bail!(
            "{} failed ({}); log: {}",
            self.name,
            describe_status(status),
            log.display()
        )
    }

    /// Runs an in-process check as this step; its error is the step's failure.
    pub fn check(self, check: impl FnOnce() -> Result<()>) -> Result<()> {
        let line = self.start();
        match check() {
            Ok(()) => {
                line.ok(None);
                Ok(())
            }
            Err(e) => {
                line.fail(None);
                Err(e.context(format!("{} failed", self.name)))
            }
        }
    }

    /// Prints the start of the step's line.
    fn start(&self) -> Line {
        let hint = self.hint.map(|h| format!(" ({h})")).unwrap_or_default();
        let name = format!("{}{hint}", self.name);
        if self.runner.verbose {
            // The children's output follows: the outcome goes on a line of its own.
            eprintln!("xtask: {name} ...");
        } else {
            eprint!("xtask: {name} ... ");
        }
        Line {
            name,
            verbose: self.runner.verbose,
            started: Instant::now(),
        }
    }
}

/// A step's line, open until [`Line::ok`] or [`Line::fail`] prints the outcome.
struct Line {
    /// The step's name and hint, repeated when the outcome needs a line of its own.
    name: String,
    /// Output was streamed, so the start line is no longer the last one.
    verbose: bool,
    /// When the step started.
    started: Instant,
}

impl Line {
    /// Ends the line with `ok`, the time taken and `note`.
    fn ok(&self, note: Option<String>) {
        let outcome = format!("ok ({})", self.took(note));
        if self.verbose {
            eprintln!("xtask: {} {outcome}", self.name);
        } else {
            eprintln!("{outcome}");
        }
    }

    /// Ends the line with `failed`, the time taken and `note`. With streamed output the error
    /// that follows is the outcome line, so this prints nothing.
    fn fail(&self, note: Option<String>) {
        if !self.verbose {
            eprintln!("failed ({})", self.took(note));
        }
    }

    /// The time taken, with `note` after it.
    fn took(&self, note: Option<String>) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let note = note.map(|n| format!("; {n}")).unwrap_or_default();
        format!("{secs:.1} s{note}")
    }
}

/// Runs `cmds` in order with their stdout and stderr appended to a fresh `log`, each after a
/// `$ command` line; returns the status of the last one run.
fn run_logged(cmds: impl IntoIterator<Item = Command>, log: &Path) -> Result<ExitStatus> {
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let mut file = File::create(log).with_context(|| format!("create {}", log.display()))?;
    let mut status = ExitStatus::from_raw(0);
    for cmd in cmds {
        writeln!(file, "$ {}", describe(&cmd))
            .with_context(|| format!("write {}", log.display()))?;
        // Both streams share one file description, so their lines interleave as written.
        let clone = || {
            file.try_clone()
                .with_context(|| format!("reopen {}", log.display()))
        };
        status = spawn(cmd, clone()?.into(), clone()?.into())?;
        if !status.success() {
            break;
        }
    }
    Ok(status)
}

/// Runs `cmd` to completion with stdin closed (a step never prompts) and the given outputs.
fn spawn(mut cmd: Command, stdout: Stdio, stderr: Stdio) -> Result<ExitStatus> {
    cmd.stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .status()
        .with_context(|| format!("cannot run `{}`", describe(&cmd)))
}

/// `cmd` as a shell-like line: environment overrides, program, arguments and working directory.
pub fn describe(cmd: &Command) -> String {
    let quote = |s: &std::ffi::OsStr| {
        let s = s.to_string_lossy();
        let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%^".contains(c);
        if !s.is_empty() && s.chars().all(plain) {
            s.into_owned()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    let mut words: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), quote(v?))))
        .collect();
    words.push(quote(cmd.get_program()));
    words.extend(cmd.get_args().map(quote));
    let mut line = words.join(" ");
    if let Some(dir) = cmd.get_current_dir() {
        line.push_str(&format!("  (in {})", dir.display()));
    }
    line
}

/// How a child ended: `exit status N`, or the signal that killed it.
fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => status.to_string(),
    }
}

/// A step name as a file name: lowercase letters and digits, runs of anything else as one `-`.
fn slug(name: &str) -> String {
    name.to_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug("clippy (eBPF)"), "clippy-ebpf");
        assert_eq!(slug("setup: apt-get update"), "setup-apt-get-update");
        assert_eq!(
            slug("privileged integration tests"),
            "privileged-integration-tests"
        );
    }

    #[test]
    fn describes_commands() {
        let mut c = Command::new("cargo");
        c.args(["test", "--", "a b"])
            .env("K", "v")
            .current_dir("/w");
        assert_eq!(describe(&c), "K=v cargo test -- 'a b'  (in /w)");
    }

    #[test]
    fn describes_statuses() {
        assert_eq!(
            describe_status(ExitStatus::from_raw(101 << 8)),
            "exit status 101"
        );
        assert_eq!(
            describe_status(ExitStatus::from_raw(9)),
            "killed by signal 9"
        );
    }
}
