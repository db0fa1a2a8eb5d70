//! `[[check]]`: service health checks (keepalived's `track_script`), run by the daemon off the
//! heartbeat path. A failing check on the primary hands P to the monitor (a switchover); a
//! failing check on the monitor makes it refuse takeovers until the check passes again.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use super::HumanDuration;

/// Where a check counts.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckOn {
    /// On the primary and on the monitor (the default).
    #[default]
    Both,
    /// Only while this host is primary (the service itself, started by `on_primary`); judged
    /// afresh from each promotion on.
    Primary,
    /// Only while this host is monitor (what a takeover would need here).
    Monitor,
}

/// One `[[check]]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Its name in events, status and the metric's `check` label. Default: the target
    /// (`tcp 127.0.0.1:5432`).
    pub name: Option<String>,
    /// Passes when a TCP connection to this address opens.
    pub tcp: Option<SocketAddr>,
    /// Passes when a GET of this `http://` URL answers 2xx.
    pub http: Option<String>,
    /// Passes when this program exits 0 (run without arguments, scrubbed environment).
    pub command: Option<PathBuf>,
    /// Time between two runs. Default 2s.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// Limit of one run; longer is a failure (a command is killed). Default 1s.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Failures in a row that make the check failed. Default 3.
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// Passes in a row that make a failed check pass again. Default 2.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// `both`, `primary` or `monitor`. Default `both`.
    #[serde(default)]
    pub on: CheckOn,
}

impl Check {
    /// The name used everywhere: `name`, or the target.
    pub fn label(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        match (&self.tcp, &self.http, &self.command) {
            (Some(a), _, _) => format!("tcp {a}"),
            (_, Some(u), _) => format!("http {u}"),
            (_, _, Some(c)) => format!("command {}", c.display()),
            _ => "check".into(),
        }
    }

    /// Whether it counts while this host is primary (`primary == true`) or monitor.
    pub fn counts_as(&self, primary: bool) -> bool {
        match self.on {
            CheckOn::Both => true,
            CheckOn::Primary => primary,
            CheckOn::Monitor => !primary,
        }
    }

    /// What is wrong with it (field, message), if anything.
    pub(super) fn problem(&self) -> Option<(&'static str, String)> {
        let kinds = [
            self.tcp.is_some(),
            self.http.is_some(),
            self.command.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Some(("tcp", "set exactly one of tcp, http and command".into()));
        }
        if let Some(u) = &self.http {
            match url::Url::parse(u) {
                Ok(u) if u.scheme() == "http" && u.host().is_some() => {}
                Ok(_) => {
                    return Some((
                        "http",
                        format!("{u:?}: expected an http:// URL (for https, use a command check)"),
                    ))
                }
                Err(e) => return Some(("http", format!("{u:?} is not a URL ({e})"))),
            }
        }
        if self.interval.0.is_zero() {
            return Some(("interval", "must be greater than zero".into()));
        }
        if self.timeout.0.is_zero() || self.timeout.0 > self.interval.0 {
            return Some((
                "timeout",
                "must be greater than zero and at most interval".into(),
            ));
        }
        if self.fall == 0 || self.rise == 0 {
            return Some(("fall", "fall and rise must be at least 1".into()));
        }
        if self.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Some(("name", "must not be empty".into()));
        }
        None
    }
}

fn default_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}
fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_fall() -> u32 {
    3
}
fn default_rise() -> u32 {
    2
}
