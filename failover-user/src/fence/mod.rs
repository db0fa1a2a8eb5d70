//! Fencing and booting the peer (claims 1, 13, 20): power it off and confirm it is off before
//! this host takes the primary address, power it back on afterwards, or restart it when the
//! pair runs without takeover.
//!
//! The devices are levels, tried in order (`[[boot.level]]`, or the one level of `[boot]`): a
//! level that fails or runs out of time falls to the next, and only a confirmed Off from some
//! level is a fence.
//!
//! - [`command`]: an operator program in the fence-agents style (`method = "command"`).
//! - [`agent`]: a fence-agents program, options on stdin (`method = "agent"`).
//! - [`redfish`]: the peer's BMC over Redfish (`method = "redfish"`).
//!
//! The configuration section keeps its name, `[boot]`: booting the failed server is the step
//! of the method; fencing is what the `off` half of it achieves.
pub mod agent;
pub mod command;
pub mod redfish;
mod secret;

use std::{path::PathBuf, time::Duration};

pub use agent::AgentFence;
pub use command::{CommandFence, Power};
pub use redfish::RedfishFence;
pub use secret::{PasswordSource, Secret, SecretError};

use crate::{
    config::{BootLevel, BootMethod, Config},
    role::BootAction,
};

/// Called just before the power action leaves (the reset request is sent to the BMC, the
/// fence command's program starts): from then on the peer may be going down, so the fence is
/// no longer cancelled.
pub type Accepted = dyn Fn() + Send + Sync;

/// Why a boot action did not complete.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
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
    /// A level's settings cannot be used (its agent or password is missing).
    #[error("{0}")]
    Setup(String),
    /// Every level failed; the last one's error.
    #[error("all {count} fence levels failed; the last: {last}")]
    AllLevels {
        /// Number of levels.
        count: usize,
        /// The last level's error.
        last: Box<FenceError>,
    },
    /// The BMC refused, failed or did not confirm.
    #[error(transparent)]
    Redfish(#[from] redfish::RedfishError),
}

/// One level's device.
#[derive(Clone, Debug)]
pub enum Device {
    /// An operator command.
    Command(CommandFence),
    /// A fence-agents program.
    Agent(AgentFence),
    /// The peer's BMC over Redfish.
    Redfish(Box<RedfishFence>),
    /// No fencing (`method = "none"`, only with the explicit opt-out).
    None,
}

impl Device {
    fn from_config(cfg: &Config, level: &BootLevel) -> Result<Device, FenceError> {
        Ok(match level.method {
            BootMethod::Command => Device::Command(CommandFence {
                command: level.command.clone().unwrap_or_default(),
                env: vec![
                    ("FAILOVER_PEER".into(), cfg.node.peer_name.clone()),
                    ("FAILOVER_PEER_ADDRESS".into(), cfg.node.peer.to_string()),
                    ("FAILOVER_NODE".into(), cfg.node.name.clone()),
                ],
                timeout: level.timeout.0,
            }),
            BootMethod::Agent => Device::Agent(AgentFence::from_config(level)?),
            BootMethod::Redfish => Device::Redfish(Box::new(RedfishFence::from_config(level)?)),
            BootMethod::None => Device::None,
        })
    }

    async fn run(&self, action: BootAction, accepted: &Accepted) -> Result<(), FenceError> {
        match self {
            Device::None => Err(FenceError::Unavailable("none")),
            Device::Redfish(r) => Ok(r.run(action, accepted).await?),
            Device::Command(c) => c.run(action, accepted).await,
            Device::Agent(a) => a.run(action, accepted).await,
        }
    }
}

/// One fence level: a device and its name in messages.
#[derive(Clone, Debug)]
pub struct Level {
    /// "level 1 (redfish)".
    pub label: String,
    /// The device.
    pub device: Device,
}

/// Called when a level failed and the next one is tried: the failed level's label and error.
pub type LevelFailed = dyn Fn(&str, &FenceError) + Send + Sync;

/// The peer's power control: the fence levels, in order.
#[derive(Clone, Debug)]
pub struct Fencer {
    levels: Vec<Level>,
}

impl Fencer {
    /// The fencer the configuration asks for. Loads the passwords now, so that a missing one
    /// stops the daemon at start rather than at the first fence; an error names the level.
    pub fn from_config(cfg: &Config) -> Result<Fencer, FenceError> {
        let levels = cfg
            .boot
            .levels
            .iter()
            .enumerate()
            .map(|(i, level)| {
                let device = Device::from_config(cfg, level).map_err(|e| {
                    FenceError::Setup(format!(
                        "{}: {e}",
                        cfg.boot.field_prefix(i).trim_end_matches('.')
                    ))
                })?;
                Ok(Level {
                    label: format!("level {} ({})", i + 1, level.method.name()),
                    device,
                })
            })
            .collect::<Result<_, FenceError>>()?;
        Ok(Fencer { levels })
    }

    /// The levels, in order.
    pub fn levels(&self) -> &[Level] {
        &self.levels
    }

    /// Runs `action` on the peer, level after level until one succeeds, calling `accepted`
    /// once a level's device took it and `failed` for each level that fails before the last;
    /// for `Off`, succeeds only once a level confirmed the peer off.
    pub async fn run(
        &self,
        action: BootAction,
        accepted: &Accepted,
        failed: &LevelFailed,
    ) -> Result<(), FenceError> {
        let mut last = FenceError::Unavailable("none");
        for (i, level) in self.levels.iter().enumerate() {
            match level.device.run(action, accepted).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    if i + 1 < self.levels.len() {
                        failed(&level.label, &e);
                    }
                    last = e;
                }
            }
        }
        Err(match self.levels.len() {
            0 | 1 => last,
            count => FenceError::AllLevels {
                count,
                last: Box::new(last),
            },
        })
    }
}
