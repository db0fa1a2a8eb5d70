//! The daemon's TOML configuration: parsing, defaults and validation (`failover check-config`).
//!
//! Every section denies unknown fields; durations are human strings ("10ms"); every error names
//! the field and what is expected. `docs/configuration.md` documents each field.
mod boot;
mod check;
mod preflight;
mod reload;
mod sections;
mod validate;
mod validate_boot;

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

pub use boot::{Boot, BootLevel, BootMethod, FenceMode};
pub use check::{Check, CheckOn};
pub use reload::needs_restart;
pub use sections::*;

/// A configuration error: the file, the field and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// File.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// TOML syntax, a type mismatch or an unknown field.
    #[error("{}: {message}", path.display())]
    Parse {
        /// File.
        path: PathBuf,
        /// The parser's message (names the field and line).
        message: String,
    },
    /// A value that parses but makes no sense.
    #[error("{}: {field}: {message}", path.display())]
    Invalid {
        /// File.
        path: PathBuf,
        /// Dotted field name, e.g. `heartbeat.timeout`.
        field: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

/// Parses TOML `text` from `path` into `T`; an error names the file, the dotted field and the
/// line.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let line = inner
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        let mut message = inner.message().to_string();
        if field != "." {
            message = format!("{field}: {message}");
        }
        if let Some(line) = line {
            message.push_str(&format!(" (line {line})"));
        }
        ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        }
    })
}

/// A duration written as a human string ("10ms", "1s", "250us").
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "{s:?} is not a duration ({e}); expected e.g. \"10ms\", \"1s\", \"250us\""
                ))
            })
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = String;

    /// As in the configuration, for command-line flags.
    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s)
            .map(HumanDuration)
            .map_err(|e| format!("{s:?} is not a duration ({e}); expected e.g. \"10ms\", \"3s\""))
    }
}

/// An address with prefix length, e.g. `10.0.0.100/24` or `fd00::100/64`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} has no prefix length; expected ADDRESS/PREFIX"))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IPv4 or IPv6 address"))?;
        let prefix: u8 = p
            .parse()
            .map_err(|_| format!("{p:?} is not a prefix length"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("prefix /{prefix} is longer than {max}"));
        }
        Ok(Cidr { addr, prefix })
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This host.
    pub node: Node,
    /// P and M.
    pub addresses: FloatingAddresses,
    /// First signal.
    #[serde(default)]
    pub heartbeat: Heartbeat,
    /// The second time period: how long a joining host waits for M to answer. Default 500ms.
    #[serde(default = "default_join_timeout")]
    pub join_timeout: HumanDuration,
    /// How long a monitor waits to see P answer before fencing the peer. Default 30s.
    #[serde(default = "default_grace")]
    pub startup_grace: HumanDuration,
    /// Take P over after fencing (true) or only reboot the primary (false). Default true.
    #[serde(default = "default_true")]
    pub takeover: bool,
    /// Prefer this host as primary at cold start. Default false.
    #[serde(default)]
    pub preferred_primary: bool,
    /// SCHED_FIFO priority of the daemon (1-99), so that a busy host cannot starve the
    /// heartbeat responder and cause a false failover; 0 keeps normal scheduling. Children
    /// (hooks, fence commands) run with normal scheduling. Default 10.
    #[serde(default = "default_rt_priority")]
    pub realtime_priority: u8,
    /// Fencing and booting: one device in `[boot]`, or `[[boot.level]]` devices in order.
    #[serde(deserialize_with = "boot::deserialize_boot")]
    pub boot: Boot,
    /// Role-change hooks.
    #[serde(default)]
    pub hooks: Hooks,
    /// Address announcements.
    #[serde(default)]
    pub garp: Garp,
    /// The self-check before a fence.
    #[serde(default)]
    pub witness: Witness,
    /// Status socket and metrics.
    #[serde(default)]
    pub control: Control,
    /// State locations.
    #[serde(default)]
    pub paths: Paths,
    /// Data copy from primary to monitor.
    pub sync: Option<DataSync>,
    /// Service health checks (`[[check]]`), in order.
    #[serde(default, rename = "check")]
    pub checks: Vec<Check>,
    /// Log filter (as `--log-level`: "info", "info,failover::event::probe=warn"); when set it
    /// overrides the command line, and a reload (SIGHUP) applies a change at once.
    pub log_level: Option<String>,
    /// The file this configuration was read from (for messages).
    #[serde(skip)]
    pub file: PathBuf,
}

fn default_rt_priority() -> u8 {
    10
}

fn default_join_timeout() -> HumanDuration {
    HumanDuration(Duration::from_millis(500))
}
fn default_grace() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_true() -> bool {
    true
}

impl Config {
    /// Reads, parses and validates `path` without touching the system.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// Parses and validates `text`; `path` names the file in errors, and relative paths of the
    /// programs and secrets it names are taken relative to its directory.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let mut cfg: Config = parse_toml(path, text)?;
        cfg.file = path.to_path_buf();
        // Against the file's directory made absolute: `--config failover.toml` must not leave
        // `fence-peer.sh` to a PATH lookup when the daemon runs it.
        let dir = path.parent().unwrap_or(Path::new(""));
        cfg.resolve_relative(&std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()));
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Makes the programs and secrets the file names absolute against `dir` (the file's
    /// directory), so that a relative `command = "fence-peer.sh"` means the script beside the
    /// configuration, whatever the daemon's working directory.
    fn resolve_relative(&mut self, dir: &Path) {
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(path) = p.as_mut().filter(|p| p.is_relative()) {
                *path = dir.join(&*path);
            }
        };
        for level in &mut self.boot.levels {
            fix(&mut level.command);
            fix(&mut level.password_file);
            fix(&mut level.ca_file);
            // A bare agent name is looked up in the system's directories instead.
            if level
                .agent
                .as_ref()
                .is_some_and(|a| a.components().count() > 1)
            {
                fix(&mut level.agent);
            }
        }
        fix(&mut self.witness.lease_key_file);
        fix(&mut self.hooks.on_primary);
        fix(&mut self.hooks.on_monitor);
        fix(&mut self.hooks.on_fault);
        fix(&mut self.hooks.on_switchover);
        fix(&mut self.hooks.on_stop);
        for c in &mut self.checks {
            fix(&mut c.command);
        }
        if let Some(sy) = self.sync.as_mut() {
            if sy.key_file.is_relative() {
                sy.key_file = dir.join(&sy.key_file);
            }
        }
    }

    /// Approximate detection time: timeout + (misses - 1) * interval.
    pub fn detection_time(&self) -> Duration {
        self.heartbeat.timeout.0 + self.heartbeat.interval.0 * (self.heartbeat.misses - 1)
    }

    /// The wait before the first fence of a `startup_grace` decision: none on the preferred
    /// primary, else `boot.fence_delay` (default three detection times).
    pub fn fence_delay(&self) -> Duration {
        if self.preferred_primary {
            return Duration::ZERO;
        }
        self.boot
            .fence_delay
            .map_or(self.detection_time() * 3, |d| d.0)
    }
}

#[cfg(test)]
mod tests;
