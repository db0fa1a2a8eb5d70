//! Booting and fencing the peer. `method = "command"` runs an operator program in the
//! fence-agents style; `method = "redfish"` talks to the peer's BMC (see `redfish`).
//!
//! The command is called as `COMMAND ACTION` with ACTION one of `off`, `on`, `reboot`,
//! `status`, and the peer in the environment (`FAILOVER_PEER`, `FAILOVER_PEER_ADDRESS`,
//! `FAILOVER_NODE`, `FAILOVER_ACTION`). Exit 0 means done. An `off` counts as a fence only once
//! `COMMAND status` reports the peer off: it prints `off` (or exits 2, fence-agents' "off").
use std::{path::PathBuf, process::Stdio, time::Duration};

use tokio::process::Command;

use crate::{redfish, role::BootAction};

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
    /// The BMC refused, failed or did not confirm.
    #[error(transparent)]
    Redfish(#[from] redfish::RedfishError),
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
    /// The peer's BMC over Redfish.
    Redfish(Box<RedfishBoot>),
    /// No fencing.
    None,
}

/// Redfish boot settings: the connection and the strategy.
#[derive(Clone, Debug)]
pub struct RedfishBoot {
    /// Connection and authentication.
    pub settings: redfish::Settings,
    /// Reset types for the fence, in order.
    pub off_types: Vec<String>,
    /// Reset types to power on.
    pub on_types: Vec<String>,
    /// Reset types for a restart.
    pub restart_types: Vec<String>,
    /// Limit for PowerState Off after the off request.
    pub fence_timeout: Duration,
    /// Limit of one action (`boot.timeout`); for the fence, `fence_timeout` is added.
    pub on_timeout: Duration,
    /// PowerState polling interval.
    pub poll: Duration,
}

impl RedfishBoot {
    /// From the `[boot]` section (loads the password now, so a missing one fails at start).
    pub fn from_config(b: &crate::config::Boot) -> Result<RedfishBoot, redfish::RedfishError> {
        let source = match (&b.password_file, &b.password_env) {
            (Some(f), _) => redfish::PasswordSource::File(f.clone()),
            (None, Some(v)) => redfish::PasswordSource::Env(v.clone()),
            (None, None) => {
                return Err(redfish::RedfishError::Setup(
                    "boot.password_file or boot.password_env is required".into(),
                ))
            }
        };
        let url = b.url.as_deref().unwrap_or_default();
        let list = |l: &Option<Vec<String>>, d: &[&str]| {
            l.clone()
                .unwrap_or_else(|| d.iter().map(|s| s.to_string()).collect())
        };
        Ok(RedfishBoot {
            settings: redfish::Settings {
                url: url
                    .parse()
                    .map_err(|e| redfish::RedfishError::Setup(format!("boot.url {url:?}: {e}")))?,
                system: b.system.clone(),
                username: b.username.clone().unwrap_or_default(),
                password: source.load()?,
                ca_file: b.ca_file.clone(),
                insecure: b.insecure,
                connect_timeout: b.connect_timeout.0,
                request_timeout: b.request_timeout.0,
                retries: b.retries,
            },
            off_types: list(&b.off_types, redfish::OFF_TYPES),
            on_types: list(&b.on_types, redfish::ON_TYPES),
            restart_types: list(&b.restart_types, redfish::RESTART_TYPES),
            fence_timeout: b.fence_timeout.0,
            on_timeout: b.timeout.0,
            poll: b.power_poll.0,
        })
    }

    /// Runs one boot action: `Off` is the `off-on` strategy's first half (ForceOff, then
    /// PowerState Off confirmed), `On` its second (On, then PowerState On), `Reboot` the
    /// `restart` strategy (the first accepted of the restart types).
    pub async fn run(&self, action: BootAction) -> Result<(), redfish::RedfishError> {
        let c = redfish::Client::connect(self.settings.clone()).await?;
        // A bound on the whole action, task monitors included, that still lets the session be
        // deleted afterwards. The fence has its own confirmation limit on top.
        let limit = match action {
            BootAction::Off => self.on_timeout + self.fence_timeout,
            _ => self.on_timeout,
        };
        let r = tokio::time::timeout(limit, self.act(&c, action))
            .await
            .unwrap_or_else(|_| {
                Err(redfish::RedfishError::Timeout(format!(
                    "{} {}: not done within {limit:?}",
                    action.name(),
                    self.settings.url
                )))
            });
        c.close().await;
        r
    }

    async fn act(
        &self,
        c: &redfish::Client,
        action: BootAction,
    ) -> Result<(), redfish::RedfishError> {
        let sys = c.system().await?;
        match action {
            BootAction::Off => {
                // Already off counts: the confirmation is the power state, not our request.
                if sys.power_state != "Off" {
                    let t = redfish::reset_first_allowed(c, &sys, &self.off_types).await?;
                    tracing::info!(target: "failover::boot", reset_type = %t, system = %sys.path, "off requested");
                }
                redfish::wait_power(c, &sys, "Off", self.poll, self.fence_timeout).await
            }
            BootAction::On => {
                if sys.power_state != "On" {
                    redfish::reset_first_allowed(c, &sys, &self.on_types).await?;
                }
                redfish::wait_power(c, &sys, "On", self.poll, self.on_timeout).await
            }
            BootAction::Reboot => {
                let t = redfish::reset_first_allowed(c, &sys, &self.restart_types).await?;
                tracing::info!(target: "failover::boot", reset_type = %t, system = %sys.path, "restart requested");
                Ok(())
            }
        }
    }
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
            Booter::Redfish(r) => Ok(r.run(action).await?),
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
