//! `method = "command"`: an operator program in the fence-agents style.
//!
//! The command is called as `COMMAND ACTION` with ACTION one of `off`, `on`, `reboot`,
//! `status`, and the peer in the environment (`FAILOVER_PEER`, `FAILOVER_PEER_ADDRESS`,
//! `FAILOVER_NODE`, `FAILOVER_ACTION`). Exit 0 means done. An `off` counts as a fence only once
//! `COMMAND status` reports the peer off: it prints `off` (or exits 2, fence-agents' "off").
use std::{path::PathBuf, process::Stdio, time::Duration};

use tokio::{io::AsyncWriteExt as _, process::Command};

use super::{Accepted, FenceError};
use crate::role::BootAction;

/// An operator command that powers the peer.
#[derive(Clone, Debug)]
pub struct CommandFence {
    /// Program path.
    pub command: PathBuf,
    /// Environment passed to it (the peer, this node); nothing else is inherited from the
    /// configuration, so no secret reaches it by accident.
    pub env: Vec<(String, String)>,
    /// Limit of one action including its confirmation.
    pub timeout: Duration,
}

/// Result of one `status` query.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Power {
    /// Confirmed off.
    Off,
    /// On, or anything that is not a confirmed off.
    NotOff,
}

const STATUS_POLL: Duration = Duration::from_millis(50);

impl CommandFence {
    /// Runs `action` on the peer; for `Off`, returns only once `status` confirms the peer off.
    pub async fn run(&self, action: BootAction, accepted: &Accepted) -> Result<(), FenceError> {
        act_and_confirm(
            action,
            self.timeout,
            accepted,
            self.command(action.name()),
            || self.status(),
        )
        .await
    }

    /// Asks whether the peer is off.
    pub async fn status(&self) -> Result<Power, FenceError> {
        let (code, out) = self.output("status").await?;
        let word = out.trim().to_ascii_lowercase();
        Ok(if code == Some(2) || (code == Some(0) && word == "off") {
            Power::Off
        } else {
            Power::NotOff
        })
    }

    async fn command(&self, action: &'static str) -> Result<(), FenceError> {
        let (code, out) = self.output(action).await?;
        if code == Some(0) {
            return Ok(());
        }
        Err(FenceError::Failed {
            command: self.command.clone(),
            action,
            message: exit_message(code, &out),
        })
    }

    async fn output(&self, action: &'static str) -> Result<(Option<i32>, String), FenceError> {
        let mut env: Vec<(&str, &str)> = vec![("FAILOVER_ACTION", action)];
        env.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        run_program(&self.command, &[action], &env, None, action, None).await
    }
}

/// What a program fence does with `action` within `timeout`: `accepted` as the program
/// starts (from then on it may be powering the peer off, and killing it would not undo
/// that), then `act`; for `Off`, `status` until it confirms the peer off (the fence is the
/// confirmation, not the off request). The program is killed when the time runs out.
pub(super) async fn act_and_confirm<S, F>(
    action: BootAction,
    timeout: Duration,
    accepted: &Accepted,
    act: impl std::future::Future<Output = Result<(), FenceError>>,
    status: S,
) -> Result<(), FenceError>
where
    S: Fn() -> F,
    F: std::future::Future<Output = Result<Power, FenceError>>,
{
    let work = async {
        accepted();
        act.await?;
        if action == BootAction::Off {
            while status().await? != Power::Off {
                tokio::time::sleep(STATUS_POLL).await;
            }
        }
        Ok(())
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| FenceError::Timeout {
            action: action.name(),
            timeout,
        })?
}

/// "exit status N, output: ..." for a failed call.
pub(super) fn exit_message(code: Option<i32>, out: &str) -> String {
    format!(
        "exit status {}{}",
        code.map_or("none (killed by a signal)".into(), |c| c.to_string()),
        if out.trim().is_empty() {
            String::new()
        } else {
            format!(", output: {}", out.trim())
        }
    )
}

/// Runs `program` with `args`, a scrubbed environment plus `env`, and `stdin` (or none);
/// returns its exit code and stdout. Output lines are logged (stderr at WARN), each
/// occurrence of `redact` replaced by `***`; the returned stdout is redacted too. Killed if
/// the caller stops waiting.
pub(super) async fn run_program(
    program: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<String>,
    action: &'static str,
    redact: Option<&str>,
) -> Result<(Option<i32>, String), FenceError> {
    let spawn_err = |source| FenceError::Spawn {
        command: program.to_path_buf(),
        action,
        source,
    };
    let mut child = crate::sys::scrub_env(&mut Command::new(program))
        .args(args)
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A program that exits without reading its input is judged by its exit code.
        let _ = pipe.write_all(text.as_bytes()).await;
        drop(pipe);
    }
    let out = child.wait_with_output().await.map_err(spawn_err)?;
    let clean = |b: &[u8]| {
        let s = String::from_utf8_lossy(b).into_owned();
        match redact.filter(|r| !r.is_empty()) {
            Some(r) => s.replace(r, "***"),
            None => s,
        }
    };
    let stdout = clean(&out.stdout);
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        tracing::info!(target: "failover::boot", action, "{line}");
    }
    for line in clean(&out.stderr).lines().filter(|l| !l.trim().is_empty()) {
        tracing::warn!(target: "failover::boot", action, "{line}");
    }
    Ok((out.status.code(), stdout))
}
