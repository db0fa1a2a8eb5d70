//! `method = "command"`: an operator program in the fence-agents style.
//!
//! The command is called as `COMMAND ACTION` with ACTION one of `off`, `on`, `reboot`,
//! `status`, and the peer in the environment (`FAILOVER_PEER`, `FAILOVER_PEER_ADDRESS`,
//! `FAILOVER_NODE`, `FAILOVER_ACTION`). Exit 0 means done. An `off` counts as a fence only once
//! `COMMAND status` reports the peer off: it prints `off` (or exits 2, fence-agents' "off").
use std::{path::PathBuf, process::Stdio, time::Duration};

use tokio::process::Command;

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
        let work = async {
            // Accepted as the program starts: from then on it may be powering the peer off,
            // and killing it would not undo that.
            accepted();
            self.command(action.name()).await?;
            if action == BootAction::Off {
                // The fence is the confirmation, not the off request.
                while self.status().await? != Power::Off {
                    tokio::time::sleep(STATUS_POLL).await;
                }
            }
            Ok(())
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| FenceError::Timeout {
                action: action.name(),
                timeout: self.timeout,
            })?
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
            message: format!(
                "exit status {}{}",
                code.map_or("none (killed by a signal)".into(), |c| c.to_string()),
                if out.trim().is_empty() {
                    String::new()
                } else {
                    format!(", output: {}", out.trim())
                }
            ),
        })
    }

    /// Runs the command with `action`; returns its exit code and stdout. Output lines are
    /// logged (stderr at WARN).
    async fn output(&self, action: &'static str) -> Result<(Option<i32>, String), FenceError> {
        let out = crate::sys::scrub_env(&mut Command::new(&self.command))
            .arg(action)
            .env("FAILOVER_ACTION", action)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| FenceError::Spawn {
                command: self.command.clone(),
                action,
                source,
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
            tracing::info!(target: "failover::boot", action, "{line}");
        }
        for line in String::from_utf8_lossy(&out.stderr).lines() {
            tracing::warn!(target: "failover::boot", action, "{line}");
        }
        Ok((out.status.code(), stdout))
    }
}
