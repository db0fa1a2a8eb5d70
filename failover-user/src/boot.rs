//! Booting and fencing the peer. `method = "command"` runs an operator program in the
//! fence-agents style; `method = "redfish"` talks to the peer's BMC (next issue).
//!
//! The command is called as `COMMAND ACTION` with ACTION one of `off`, `on`, `reboot`,
//! `status`, and the peer in the environment (`FAILOVER_PEER`, `FAILOVER_PEER_ADDRESS`,
//! `FAILOVER_NODE`, `FAILOVER_ACTION`). Exit 0 means done. An `off` counts as a fence only once
//! `COMMAND status` reports the peer off: it prints `off` (or exits 2, fence-agents' "off").
use std::{path::PathBuf, process::Stdio, time::Duration};

use tokio::process::Command;

use crate::role::BootAction;

/// Why a boot action did not complete.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The command could not be started.
    #[error("boot command {} {action}: {source}", command.display())]
    Spawn {
        /// Program.
        command: PathBuf,
        /// Action word.
        action: &'static str,
        /// OS error.
        source: std::io::Error,
    },
    /// The command ran but failed.
    #[error("boot command {} {action}: {message}", command.display())]
    Failed {
        /// Program.
        command: PathBuf,
        /// Action word.
        action: &'static str,
        /// Exit status and output.
        message: String,
    },
    /// The action (with its confirmation) took longer than `boot.timeout`.
    #[error("boot {action}: not done within {timeout:?}")]
    Timeout {
        /// Action word.
        action: &'static str,
        /// The limit.
        timeout: Duration,
    },
    /// The method has no implementation.
    #[error("boot method {0} is not available")]
    Unavailable(&'static str),
}

/// How to reach the peer's power control.
#[derive(Clone, Debug)]
pub enum Booter {
    /// An operator command.
    Command {
        /// Program path.
        command: PathBuf,
        /// Environment passed to it.
        env: Vec<(String, String)>,
        /// Limit of one action including its confirmation.
        timeout: Duration,
    },
    /// No fencing.
    None,
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

impl Booter {
    /// Runs `action` on the peer; for `Off`, returns only once the peer is confirmed off.
    pub async fn run(&self, action: BootAction) -> Result<(), BootError> {
        match self {
            Booter::None => Err(BootError::Unavailable("none")),
            Booter::Command { timeout, .. } => {
                let work = async {
                    self.command(action.name()).await?;
                    if action == BootAction::Off {
                        // The fence is the confirmation, not the off request.
                        while self.status().await? != Power::Off {
                            tokio::time::sleep(STATUS_POLL).await;
                        }
                    }
                    Ok(())
                };
                tokio::time::timeout(*timeout, work)
                    .await
                    .map_err(|_| BootError::Timeout {
                        action: action.name(),
                        timeout: *timeout,
                    })?
            }
        }
    }

    /// Asks whether the peer is off.
    pub async fn status(&self) -> Result<Power, BootError> {
        let (code, out) = self.command_output("status").await?;
        let word = out.trim().to_ascii_lowercase();
        Ok(if code == Some(2) || (code == Some(0) && word == "off") {
            Power::Off
        } else {
            Power::NotOff
        })
    }

    async fn command(&self, action: &'static str) -> Result<(), BootError> {
        let (code, out) = self.command_output(action).await?;
        if code == Some(0) {
            return Ok(());
        }
        let Booter::Command { command, .. } = self else {
            return Err(BootError::Unavailable("none"));
        };
        Err(BootError::Failed {
            command: command.clone(),
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
    async fn command_output(
        &self,
        action: &'static str,
    ) -> Result<(Option<i32>, String), BootError> {
        let Booter::Command { command, env, .. } = self else {
            return Err(BootError::Unavailable("none"));
        };
        let out = Command::new(command)
            .arg(action)
            .env("FAILOVER_ACTION", action)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| BootError::Spawn {
                command: command.clone(),
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
