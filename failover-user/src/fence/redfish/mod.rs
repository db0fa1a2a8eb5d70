//! A thin Redfish client for one job: find a ComputerSystem, read its power state, reset it.
//!
//! Built on reqwest + rustls (ring provider). TLS is verified by default, against a configured
//! CA file or the system store; `insecure` must be asked for. Sessions are used where the
//! service has a SessionService (and deleted afterwards: BMCs run out of sessions), basic auth
//! otherwise. The password lives in [`Secret`], which never prints. See docs/redfish.md.
//!
//! [`RedfishFence`] holds the daemon's strategies on top of the client: `off` (the fence: a
//! power-off, confirmed by reading PowerState Off), `on`, and `restart`.
mod client;
pub mod parse;
mod tls;

use std::{path::PathBuf, time::Duration};

use reqwest::StatusCode;
use url::Url;

pub use client::Client;
pub use tls::read_ca_file;

use super::{Accepted, PasswordSource, Secret};
use crate::role::BootAction;

/// How to reach and authenticate to a BMC.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Base URL, e.g. `https://bmc-a` (the service root is `/redfish/v1/` below it).
    pub url: Url,
    /// The system: an `@odata.id` path, or an Id, Name or UUID. None: the only member.
    pub system: Option<String>,
    /// User name.
    pub username: String,
    /// Password.
    pub password: Secret,
    /// CA certificate(s) to trust instead of the system store.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (explicit opt-in).
    pub insecure: bool,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// Extra attempts of a request that failed in transport (connect, timeout, reset).
    pub retries: u32,
}

/// A Redfish failure. The message names the request ("POST URL (ForceOff)") and never a
/// password.
#[derive(Debug, thiserror::Error)]
pub enum RedfishError {
    /// Bad settings (URL, CA file, password source).
    #[error("redfish: {0}")]
    Setup(String),
    /// The request did not get an answer.
    #[error("redfish: {op}: {message}")]
    Transport {
        /// Method, URL and what for.
        op: String,
        /// Transport error.
        message: String,
    },
    /// The service answered with an error status.
    #[error("redfish: {op}: {status}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Status {
        /// Method, URL and what for.
        op: String,
        /// HTTP status.
        status: StatusCode,
        /// The Redfish error message, if any.
        message: String,
    },
    /// The answer was not what Redfish promises.
    #[error("redfish: {op}: {message}")]
    Protocol {
        /// Method, URL and what for.
        op: String,
        /// What is wrong.
        message: String,
    },
    /// A wait ran out.
    #[error("redfish: {0}")]
    Timeout(String),
}

impl RedfishError {
    /// The HTTP status, when the service answered with one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            RedfishError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A ComputerSystem as found by discovery.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct System {
    /// `@odata.id`.
    pub path: String,
    /// `Id`.
    pub id: String,
    /// `Name`.
    pub name: String,
    /// `UUID`, if any.
    pub uuid: Option<String>,
    /// `PowerState`.
    pub power_state: String,
    /// Target of `#ComputerSystem.Reset`.
    pub reset_target: String,
    /// Allowed reset types.
    pub reset_types: Vec<String>,
}

/// Reset types tried for a fence, in order (the first one the system allows and accepts).
pub const OFF_TYPES: &[&str] = &["ForceOff", "GracefulShutdown", "PushPowerButton"];
/// Reset types tried to power on.
pub const ON_TYPES: &[&str] = &["On", "ForceOn", "PushPowerButton"];
/// Reset types tried for a restart (recovery without takeover).
pub const RESTART_TYPES: &[&str] = &["ForceRestart", "GracefulRestart", "PowerCycle"];

/// Resets with the first of `preferred` that the system allows; a type refused with 400 or
/// 501 falls to the next. Returns the type that was accepted.
pub async fn reset_first_allowed(
    c: &Client,
    system: &System,
    preferred: &[String],
) -> Result<String, RedfishError> {
    let allowed: Vec<&String> = preferred
        .iter()
        .filter(|t| system.reset_types.is_empty() || system.reset_types.contains(t))
        .collect();
    if allowed.is_empty() {
        return Err(RedfishError::Protocol {
            op: format!("reset {}", system.path),
            message: format!(
                "none of {preferred:?} is allowed (the system allows {:?})",
                system.reset_types
            ),
        });
    }
    let mut last = None;
    for t in allowed {
        match c.reset(system, t).await {
            Ok(()) => return Ok(t.clone()),
            Err(e)
                if matches!(
                    e.status(),
                    Some(StatusCode::BAD_REQUEST | StatusCode::NOT_IMPLEMENTED)
                ) =>
            {
                tracing::warn!("{e}; trying the next reset type");
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("at least one type was tried"))
}

/// Polls `PowerState` every `every` until it equals `want` or `limit` runs out.
pub async fn wait_power(
    c: &Client,
    system: &System,
    want: &str,
    every: Duration,
    limit: Duration,
) -> Result<(), RedfishError> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let state = c.power_state(system).await?;
        if state == want {
            return Ok(());
        }
        if tokio::time::Instant::now() + every > deadline {
            return Err(RedfishError::Timeout(format!(
                "{} PowerState still {state} after {limit:?}, waiting for {want}",
                c.url(&system.path)
                    .map(|u| u.to_string())
                    .unwrap_or_default()
            )));
        }
        tokio::time::sleep(every).await;
    }
}

/// The fence through the peer's BMC: the connection and the strategies.
#[derive(Clone, Debug)]
pub struct RedfishFence {
    /// Connection and authentication.
    pub endpoint: Endpoint,
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

impl RedfishFence {
    /// From the `[boot]` section (loads the password now, so a missing one fails at start).
    pub fn from_config(b: &crate::config::BootLevel) -> Result<RedfishFence, RedfishError> {
        let source = PasswordSource::of(b).ok_or_else(|| {
            RedfishError::Setup("password_file or password_env is required".into())
        })?;
        let url = b.url.as_deref().unwrap_or_default();
        let list = |l: &Option<Vec<String>>, d: &[&str]| {
            l.clone()
                .unwrap_or_else(|| d.iter().map(|s| s.to_string()).collect())
        };
        Ok(RedfishFence {
            endpoint: Endpoint {
                url: url
                    .parse()
                    .map_err(|e| RedfishError::Setup(format!("url {url:?}: {e}")))?,
                system: b.system.clone(),
                username: b.username.clone().unwrap_or_default(),
                password: source
                    .load()
                    .map_err(|e| RedfishError::Setup(e.to_string()))?,
                ca_file: b.ca_file.clone(),
                insecure: b.insecure,
                connect_timeout: b.connect_timeout.0,
                request_timeout: b.request_timeout.0,
                retries: b.retries,
            },
            off_types: list(&b.off_types, OFF_TYPES),
            on_types: list(&b.on_types, ON_TYPES),
            restart_types: list(&b.restart_types, RESTART_TYPES),
            fence_timeout: b.fence_timeout.0,
            on_timeout: b.timeout.0,
            poll: b.power_poll.0,
        })
    }

    /// Runs one boot action: `Off` is the `off-on` strategy's first half (ForceOff, then
    /// PowerState Off confirmed), `On` its second (On, then PowerState On), `Reboot` the
    /// `restart` strategy (the first accepted of the restart types).
    pub async fn run(&self, action: BootAction, accepted: &Accepted) -> Result<(), RedfishError> {
        // One deadline bounds the whole attempt: login, the action with its task monitors,
        // the confirmation, and the logout. The fence's confirmation limit comes on top of the
        // action's.
        let limit = match action {
            BootAction::Off => self.on_timeout + self.fence_timeout,
            _ => self.on_timeout,
        };
        let deadline = tokio::time::Instant::now() + limit;
        let late = || {
            RedfishError::Timeout(format!(
                "{} {}: not done within {limit:?}",
                action.name(),
                self.endpoint.url
            ))
        };
        let c = tokio::time::timeout_at(deadline, Client::connect(self.endpoint.clone()))
            .await
            .map_err(|_| late())??;
        let session = Session(Some(c), self.endpoint.request_timeout);
        let c = session.0.as_ref().expect("just set");
        let r = tokio::time::timeout_at(deadline, self.act(c, action, accepted))
            .await
            .unwrap_or_else(|_| Err(late()));
        // The session is deleted within what is left of the deadline; past it (or when the
        // attempt is cancelled) `Session` deletes it in the background, so a BMC's few session
        // slots are not used up by retries.
        session.close_by(deadline).await;
        r
    }

    async fn act(
        &self,
        c: &Client,
        action: BootAction,
        accepted: &Accepted,
    ) -> Result<(), RedfishError> {
        let sys = c.system().await?;
        match action {
            BootAction::Off => {
                // Already off counts: the confirmation is the power state, not our request.
                // Accepted before the request leaves: once the BMC may carry it out, the fence
                // is no longer cancelled.
                accepted();
                if sys.power_state != "Off" {
                    let t = reset_first_allowed(c, &sys, &self.off_types).await?;
                    tracing::info!(target: "failover::boot", reset_type = %t, system = %sys.path, "off requested");
                }
                wait_power(c, &sys, "Off", self.poll, self.fence_timeout).await
            }
            BootAction::On => {
                if sys.power_state != "On" {
                    reset_first_allowed(c, &sys, &self.on_types).await?;
                }
                wait_power(c, &sys, "On", self.poll, self.on_timeout).await
            }
            BootAction::Reboot => {
                accepted();
                let t = reset_first_allowed(c, &sys, &self.restart_types).await?;
                tracing::info!(target: "failover::boot", reset_type = %t, system = %sys.path, "restart requested");
                Ok(())
            }
        }
    }
}

/// A logged-in client whose session is deleted however the attempt ends: in time by
/// [`Session::close_by`], else (deadline passed, attempt cancelled) by a background task
/// bounded by one request timeout.
struct Session(Option<Client>, Duration);

impl Session {
    async fn close_by(mut self, deadline: tokio::time::Instant) {
        if let Some(c) = self.0.take() {
            if tokio::time::Instant::now() < deadline {
                let _ = tokio::time::timeout_at(deadline, c.close()).await;
            } else {
                Self::close_later(c, self.1);
            }
        }
    }

    fn close_later(c: Client, limit: Duration) {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = tokio::time::timeout(limit, c.close()).await;
            });
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            Self::close_later(c, self.1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s:?}"), "Secret(***)");
        let settings = Endpoint {
            url: "https://bmc".parse().unwrap(),
            system: None,
            username: "admin".into(),
            password: s,
            ca_file: None,
            insecure: false,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            retries: 0,
        };
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn password_sources_name_themselves_not_the_value() {
        let e = PasswordSource::Env("FAILOVER_TEST_NO_SUCH_VAR".into())
            .load()
            .unwrap_err()
            .to_string();
        assert!(e.contains("FAILOVER_TEST_NO_SUCH_VAR"), "{e}");
        let e = PasswordSource::File("/nonexistent/pw".into())
            .load()
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/pw"), "{e}");
    }
}
