//! `[boot]`: how the monitor fences and boots the primary.
//!
//! The section has two forms. The one-level form puts one device's settings (`method`, `url`,
//! ...) directly in `[boot]`. The levelled form lists `[[boot.level]]` tables, each a device
//! with its own `method`, settings and `timeout`, tried in order: a level that fails falls to
//! the next, and only a confirmed Off from some level lets the host take over. The settings
//! of the fence as a whole (`fence`, `retry`, `lease`, ...) stay in `[boot]` in both forms.
use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use super::HumanDuration;

/// How one level reaches the peer's power.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BootMethod {
    /// Through the peer's BMC (Redfish).
    Redfish,
    /// An operator command called with `off`, `on`, `reboot` or `status`.
    Command,
    /// A fence-agents program (`fence_redfish`, `fence_ipmilan`, ...), options on stdin.
    Agent,
    /// No fencing at all: only with `allow_unfenced_takeover = true`, and only alone.
    None,
}

impl BootMethod {
    /// The name as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            BootMethod::Redfish => "redfish",
            BootMethod::Command => "command",
            BootMethod::Agent => "agent",
            BootMethod::None => "none",
        }
    }
}

/// How a monitor makes sure the failed primary is out before it claims P (`boot.fence`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FenceMode {
    /// Power it off through the levels and wait for a confirmed Off (the default).
    #[default]
    Bmc,
    /// Stop granting its lease, have the witness revoke it, wait until no grant can be
    /// outstanding, claim P; reset the old primary through the levels afterwards. Needs
    /// `boot.lease` and `witness.lease_peer`; without an answer from the witness, as `bmc`.
    Lease,
}

/// `[boot]`: fencing and booting the peer.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Boot {
    /// `bmc` (wait for a confirmed Off before taking P) or `lease` (take P once the
    /// primary's lease is provably over; docs/fencing.md). Default `bmc`.
    #[serde(default)]
    pub fence: FenceMode,
    /// First retry delay after a failed fence (all levels failed); doubles up to
    /// `retry_max`. Default 1s.
    #[serde(default = "default_retry")]
    pub retry: HumanDuration,
    /// Longest retry delay. Default 30s.
    #[serde(default = "default_retry_max")]
    pub retry_max: HumanDuration,
    /// Take P without a confirmed fence. Required for `method = "none"`. Default false.
    #[serde(default)]
    pub allow_unfenced_takeover: bool,
    /// How long the host that is not the preferred primary waits before the first fence of
    /// a `startup_grace` decision, so that two monitors never fence each other at once.
    /// Default: three detection times. Ignored on the preferred primary.
    pub fence_delay: Option<HumanDuration>,
    /// The primary's lease (e.g. "40ms"): while primary, this host serves P only while the
    /// monitor or the witness (`witness.lease_peer`) renewed it; once it lapses its own
    /// kernel stops P's traffic, with the daemon frozen or dead. Default: no lease.
    pub lease: Option<HumanDuration>,
    /// The fence devices, tried in order. Written as `[[boot.level]]` tables, or as one
    /// device's settings directly in `[boot]` (the one-level form).
    #[serde(default, rename = "level")]
    pub levels: Vec<BootLevel>,
    /// Whether the file used the one-level form (field names in messages follow it).
    #[serde(skip)]
    pub one_level: bool,
}

/// The keys of `[boot]` that belong to the fence as a whole; every other key of a one-level
/// `[boot]` belongs to its only level.
const BOOT_KEYS: &[&str] = &[
    "fence",
    "retry",
    "retry_max",
    "allow_unfenced_takeover",
    "fence_delay",
    "lease",
    "level",
];

impl Boot {
    /// Reads `[boot]` in either form. Errors name the level (`boot.level[2]: ...`).
    pub(super) fn from_table(mut table: toml::Table) -> Result<Boot, String> {
        let mut device = toml::Table::new();
        let keys: Vec<String> = table.keys().cloned().collect();
        for key in keys {
            if BOOT_KEYS.contains(&key.as_str()) {
                continue;
            }
            if let Some(v) = table.remove(&key) {
                device.insert(key, v);
            }
        }
        let has_levels = table.contains_key("level");
        let mut boot: Boot = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        match (has_levels, device.is_empty()) {
            (false, _) => {
                // `method` is the one key every level needs: a missing one is reported as such.
                let level: BootLevel = toml::Value::Table(device)
                    .try_into()
                    .map_err(|e: toml::de::Error| e.message().to_string())?;
                boot.levels = vec![level];
                boot.one_level = true;
            }
            (true, true) if boot.levels.is_empty() => {
                return Err("level: lists no level; give at least one [[boot.level]]".into())
            }
            (true, true) => {}
            (true, false) => {
                let mut keys: Vec<_> = device.keys().map(|k| format!("`{k}`")).collect();
                keys.sort();
                return Err(format!(
                    "{} set in [boot] beside [[boot.level]]: a device's settings go into its \
                     level (or drop the levels and use the one-level form)",
                    keys.join(", ")
                ));
            }
        }
        Ok(boot)
    }

    /// The dotted prefix of level `index`'s fields in messages: `boot.` in the one-level
    /// form, `boot.level[N].` (counted from 1) otherwise.
    pub fn field_prefix(&self, index: usize) -> String {
        if self.one_level {
            "boot.".into()
        } else {
            format!("boot.level[{}].", index + 1)
        }
    }

    /// Whether the only level is `method = "none"` (no fencing at all).
    pub fn unfenced(&self) -> bool {
        self.levels.iter().all(|l| l.method == BootMethod::None)
    }

    /// The methods of the levels in order, for messages: `redfish then agent`.
    pub fn describe(&self) -> String {
        self.levels
            .iter()
            .map(|l| l.method.name())
            .collect::<Vec<_>>()
            .join(" then ")
    }

    /// Whether some level uses `method`.
    pub fn uses(&self, method: BootMethod) -> bool {
        self.levels.iter().any(|l| l.method == method)
    }
}

/// Deserializes `[boot]` in either form (see [`Boot::from_table`]).
pub(super) fn deserialize_boot<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Boot, D::Error> {
    let table = toml::Table::deserialize(d)?;
    Boot::from_table(table).map_err(serde::de::Error::custom)
}

/// One fence device: `[[boot.level]]`, or the device settings of a one-level `[boot]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BootLevel {
    /// `redfish`, `command`, `agent` or `none`.
    pub method: BootMethod,
    /// Time limit of one boot action on this level, its confirmation included; when it runs
    /// out the next level is tried. Default 60s.
    #[serde(default = "default_boot_timeout")]
    pub timeout: HumanDuration,
    /// For `method = "command"`: the program, called as `COMMAND ACTION`.
    pub command: Option<PathBuf>,
    /// For `method = "agent"`: the fence-agents program, a path or a name looked up in
    /// /usr/sbin and /usr/bin (`fence_redfish`, `fence_ipmilan`, `fence_apc_snmp`, ...).
    pub agent: Option<PathBuf>,
    /// For `method = "agent"`: the agent's options, sent on its stdin as `key=value` lines
    /// (`ip`, `ipport`, `ssl_insecure`, `systems_uri`, `plug`, ...). Not `action` (set per
    /// call), not the password (`password_file` / `password_env`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, toml::Value>,
    /// Redfish: the BMC's base URL (`https://bmc-b`).
    pub url: Option<String>,
    /// Redfish: the system, as an `@odata.id` path, Id, Name or UUID. Default: the only one.
    pub system: Option<String>,
    /// Redfish and agent: user name (an agent gets it as `username=`).
    pub username: Option<String>,
    /// Redfish and agent: file whose first line is the password (an agent gets it as
    /// `password=` on stdin).
    pub password_file: Option<PathBuf>,
    /// Redfish and agent: environment variable holding the password.
    pub password_env: Option<String>,
    /// Redfish: CA certificate(s) (PEM) to verify the BMC with instead of the system store.
    pub ca_file: Option<PathBuf>,
    /// Redfish: do not verify the BMC's certificate. Default false; warned about at start.
    #[serde(default)]
    pub insecure: bool,
    /// Redfish: TCP + TLS connect timeout. Default 5s.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// Redfish: timeout of one request. Default 30s.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: HumanDuration,
    /// Redfish: extra attempts after a transport failure. Default 2.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Redfish: how long to wait for PowerState Off after the off request (the fence
    /// confirmation). Default 60s.
    #[serde(default = "default_fence_timeout")]
    pub fence_timeout: HumanDuration,
    /// Redfish: PowerState polling interval. Default 500ms.
    #[serde(default = "default_power_poll")]
    pub power_poll: HumanDuration,
    /// Redfish: reset types to try for the fence, in order. Default ForceOff,
    /// GracefulShutdown, PushPowerButton.
    pub off_types: Option<Vec<String>>,
    /// Redfish: reset types to power on. Default On, ForceOn, PushPowerButton.
    pub on_types: Option<Vec<String>>,
    /// Redfish: reset types for a restart (takeover = false). Default ForceRestart,
    /// GracefulRestart, PowerCycle.
    pub restart_types: Option<Vec<String>>,
}

fn default_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn default_request_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_retries() -> u32 {
    2
}
fn default_fence_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_power_poll() -> HumanDuration {
    HumanDuration(Duration::from_millis(500))
}
fn default_boot_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_retry() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_retry_max() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
