//! Fencing and booting the peer (claims 1, 13, 20): power it off and confirm it is off before
//! this host takes the primary address, power it back on afterwards, or restart it when the
//! pair runs without takeover.
//!
//! - [`command`]: an operator program in the fence-agents style (`method = "command"`).
//! - [`redfish`]: the peer's BMC over Redfish (`method = "redfish"`).
//!
//! The configuration section keeps its name, `[boot]`: booting the failed server is the step
//! of the method; fencing is what the `off` half of it achieves.
pub mod command;
pub mod redfish;

use std::{path::PathBuf, time::Duration};

pub use command::{CommandFence, Power};
pub use redfish::RedfishFence;

use crate::{
    config::{BootMethod, Config},
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
    /// The BMC refused, failed or did not confirm.
    #[error(transparent)]
    Redfish(#[from] redfish::RedfishError),
}

/// How to reach the peer's power control.
#[derive(Clone, Debug)]
pub enum Fencer {
    /// An operator command.
    Command(CommandFence),
    /// The peer's BMC over Redfish.
    Redfish(Box<RedfishFence>),
    /// No fencing (`method = "none"`, only with the explicit opt-out).
    None,
}

impl Fencer {
    /// The fencer the configuration asks for. Loads the Redfish password now, so that a missing
    /// one stops the daemon at start rather than at the first fence.
    pub fn from_config(cfg: &Config) -> Result<Fencer, redfish::RedfishError> {
        Ok(match cfg.boot.method {
            BootMethod::Command => Fencer::Command(CommandFence {
                command: cfg.boot.command.clone().unwrap_or_default(),
                env: vec![
                    ("FAILOVER_PEER".into(), cfg.node.peer_name.clone()),
                    ("FAILOVER_PEER_ADDRESS".into(), cfg.node.peer.to_string()),
                    ("FAILOVER_NODE".into(), cfg.node.name.clone()),
                ],
                timeout: cfg.boot.timeout.0,
            }),
            BootMethod::Redfish => Fencer::Redfish(Box::new(RedfishFence::from_config(&cfg.boot)?)),
            BootMethod::None => Fencer::None,
        })
    }

    /// Runs `action` on the peer, calling `accepted` once the peer took it; for `Off`,
    /// returns only once the peer is confirmed off.
    pub async fn run(&self, action: BootAction, accepted: &Accepted) -> Result<(), FenceError> {
        match self {
            Fencer::None => Err(FenceError::Unavailable("none")),
            Fencer::Redfish(r) => Ok(r.run(action, accepted).await?),
            Fencer::Command(c) => c.run(action, accepted).await,
        }
    }
}
