//! The daemon's TOML configuration: parsing, defaults and validation (`failover check-config`).
//!
//! Every section denies unknown fields; durations are human strings ("10ms"); every error names
//! the field and what is expected. `docs/configuration.md` documents each field.
use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

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

/// A duration written as a human string ("10ms", "1s", "250us").
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

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

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `[node]`: this host.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Name used in logs, events and hook environments.
    pub name: String,
    /// Numeric id carried in heartbeats; must differ from the peer's.
    pub id: u32,
    /// Interface that carries the service and monitor addresses.
    pub interface: String,
    /// This host's own, permanent address on that interface.
    pub address: Cidr,
    /// The peer host's permanent address (named in hooks and fence commands).
    pub peer: IpAddr,
    /// The peer's name, for logs and the fence command's environment. Default: "peer".
    #[serde(default = "default_peer_name")]
    pub peer_name: String,
}

fn default_peer_name() -> String {
    "peer".into()
}

/// `[addresses]`: the two floating addresses.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Addresses {
    /// The primary (service) address P.
    pub primary: Cidr,
    /// The monitor address M.
    pub monitor: Cidr,
}

/// Heartbeat form.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeartbeatKind {
    /// ICMP echo: sees the kernel and link, not the daemon.
    Icmp,
    /// UDP heartbeat answered by the daemon: sees a dead or frozen daemon too.
    Udp,
}

/// `[heartbeat]`: the first signal and its deadlines.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// `udp` (default) or `icmp`.
    #[serde(default = "default_kind")]
    pub kind: HeartbeatKind,
    /// UDP port of heartbeats and join probes. Default 7788.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Time between probes. Default 2ms.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// Deadline of one probe (the predetermined time period). Default 10ms.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Consecutive probes without an in-time reply that make a failure. Default 10.
    #[serde(default = "default_misses")]
    pub misses: u32,
}

fn default_kind() -> HeartbeatKind {
    HeartbeatKind::Udp
}
fn default_port() -> u16 {
    7788
}
fn default_interval() -> HumanDuration {
    HumanDuration(Duration::from_millis(2))
}
fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_millis(10))
}
fn default_misses() -> u32 {
    10
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            kind: default_kind(),
            port: default_port(),
            interval: default_interval(),
            timeout: default_timeout(),
            misses: default_misses(),
        }
    }
}

/// How the monitor boots (and fences) the primary.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootMethod {
    /// Through the peer's BMC (Redfish).
    Redfish,
    /// An operator command called with `off`, `on`, `reboot` or `status`.
    Command,
    /// No fencing at all: only with `allow_unfenced_takeover = true`.
    None,
}

/// `[boot]`: fencing and booting the peer.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Boot {
    /// `redfish`, `command` or `none`.
    pub method: BootMethod,
    /// For `method = "command"`: the program, called as `COMMAND ACTION`.
    pub command: Option<PathBuf>,
    /// Time limit of one boot action. Default 60s.
    #[serde(default = "default_boot_timeout")]
    pub timeout: HumanDuration,
    /// First retry delay after a failed fence; doubles up to `retry_max`. Default 1s.
    #[serde(default = "default_retry")]
    pub retry: HumanDuration,
    /// Longest retry delay. Default 30s.
    #[serde(default = "default_retry_max")]
    pub retry_max: HumanDuration,
    /// Take P without a confirmed fence. Required for `method = "none"`. Default false.
    #[serde(default)]
    pub allow_unfenced_takeover: bool,
    /// Redfish: the BMC's base URL (`https://bmc-b`).
    pub url: Option<String>,
    /// Redfish: the system, as an `@odata.id` path, Id, Name or UUID. Default: the only one.
    pub system: Option<String>,
    /// Redfish: user name.
    pub username: Option<String>,
    /// Redfish: file whose first line is the password.
    pub password_file: Option<PathBuf>,
    /// Redfish: environment variable holding the password.
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

/// `[hooks]`: operator programs run on role changes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Run after this host became primary (P claimed).
    pub on_primary: Option<PathBuf>,
    /// Run after this host became monitor (M claimed).
    pub on_monitor: Option<PathBuf>,
    /// Run on a fault (fence failed, conflict).
    pub on_fault: Option<PathBuf>,
    /// Time limit of one hook. Default 30s.
    #[serde(default = "default_hook_timeout")]
    pub timeout: HumanDuration,
}

fn default_hook_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            on_primary: None,
            on_monitor: None,
            on_fault: None,
            timeout: default_hook_timeout(),
        }
    }
}

/// `[garp]`: announcements after claiming an address.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Garp {
    /// Gratuitous ARPs / unsolicited NAs per claim. Default 5.
    #[serde(default = "default_garp_count")]
    pub count: u32,
    /// Spacing between them. Default 20ms.
    #[serde(default = "default_garp_spacing")]
    pub spacing: HumanDuration,
    /// Repeat a single announcement this often while holding P; "0s" disables. Default "0s".
    #[serde(default = "default_garp_refresh")]
    pub refresh: HumanDuration,
    /// Duplicate-address probes (ARP probe / DAD neighbour solicitation) before claiming an
    /// address; 0 disables them. Default 2.
    #[serde(default = "default_dad_probes")]
    pub dad_probes: u32,
    /// How long to listen for an answer after each probe. Default 3ms.
    #[serde(default = "default_dad_wait")]
    pub dad_wait: HumanDuration,
}

fn default_dad_probes() -> u32 {
    2
}
fn default_dad_wait() -> HumanDuration {
    HumanDuration(Duration::from_millis(3))
}

fn default_garp_count() -> u32 {
    5
}
fn default_garp_spacing() -> HumanDuration {
    HumanDuration(Duration::from_millis(20))
}
fn default_garp_refresh() -> HumanDuration {
    HumanDuration(Duration::ZERO)
}

impl Default for Garp {
    fn default() -> Self {
        Garp {
            count: default_garp_count(),
            spacing: default_garp_spacing(),
            refresh: default_garp_refresh(),
            dad_probes: default_dad_probes(),
            dad_wait: default_dad_wait(),
        }
    }
}

/// `[control]`: status socket and metrics.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// Unix socket for `failover status`. Default /run/failover/control.sock.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// Prometheus text endpoint; absent disables it.
    pub metrics: Option<SocketAddr>,
}

fn default_socket() -> PathBuf {
    PathBuf::from("/run/failover/control.sock")
}

impl Default for Control {
    fn default() -> Self {
        Control {
            socket: default_socket(),
            metrics: None,
        }
    }
}

/// `[paths]`: where state lives.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paths {
    /// bpffs directory for the pinned maps. Default /sys/fs/bpf/failover.
    #[serde(default = "default_bpffs")]
    pub bpffs_dir: PathBuf,
    /// Persistent state (the epoch). Default /var/lib/failover.
    #[serde(default = "default_state")]
    pub state_dir: PathBuf,
}

fn default_bpffs() -> PathBuf {
    PathBuf::from(crate::fastpath::DEFAULT_PIN_DIR)
}
fn default_state() -> PathBuf {
    PathBuf::from("/var/lib/failover")
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            bpffs_dir: default_bpffs(),
            state_dir: default_state(),
        }
    }
}

/// `[sync]`: copy the primary's data directory to the monitor every N heartbeats (claims 14,
/// 21). Absent: no copy.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sync {
    /// The service's data directory. On the monitor it becomes a symlink to the last complete
    /// copy (`DIR.gen-N`); on the primary it is read.
    pub dir: PathBuf,
    /// Copy after this many heartbeats. Default 500 (1 s at a 2 ms interval).
    #[serde(default = "default_every")]
    pub every: u32,
    /// TCP port of the sync channel on the node address. Default 7789.
    #[serde(default = "default_sync_port")]
    pub port: u16,
    /// File with the key shared by both hosts: 64 hex digits, mode 0600.
    pub key_file: PathBuf,
    /// Shell command run in `dir` on the primary before each copy (a consistent snapshot).
    pub snapshot_command: Option<String>,
    /// Limit of the snapshot command. Default 30s.
    #[serde(default = "default_snapshot_timeout")]
    pub snapshot_timeout: HumanDuration,
    /// Sending rate cap in Mbit/s; 0 = none. Default 0.
    #[serde(default)]
    pub bandwidth_mbit: u32,
    /// Connect timeout of the monitor's pull. Default 2s.
    #[serde(default = "default_sync_connect")]
    pub connect_timeout: HumanDuration,
}

fn default_every() -> u32 {
    500
}
fn default_sync_port() -> u16 {
    7789
}
fn default_snapshot_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_sync_connect() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This host.
    pub node: Node,
    /// P and M.
    pub addresses: Addresses,
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
    /// Fencing and booting.
    pub boot: Boot,
    /// Role-change hooks.
    #[serde(default)]
    pub hooks: Hooks,
    /// Address announcements.
    #[serde(default)]
    pub garp: Garp,
    /// Status socket and metrics.
    #[serde(default)]
    pub control: Control,
    /// State locations.
    #[serde(default)]
    pub paths: Paths,
    /// Data copy from primary to monitor.
    pub sync: Option<Sync>,
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

    /// Parses and validates `text`; `path` only names the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let cfg: Config =
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
            })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |field: &str, message: String| {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                field: field.to_string(),
                message,
            })
        };
        if self.node.name.trim().is_empty() {
            return bad("node.name", "must not be empty".into());
        }
        if self.node.interface.is_empty() || self.node.interface.len() > 15 {
            return bad(
                "node.interface",
                format!(
                    "{:?} is not an interface name (1-15 bytes)",
                    self.node.interface
                ),
            );
        }
        let p = self.addresses.primary;
        let m = self.addresses.monitor;
        if p.addr == m.addr {
            return bad(
                "addresses.monitor",
                format!(
                    "{} is also the primary address; P and M must differ",
                    m.addr
                ),
            );
        }
        if p.addr.is_ipv4() != m.addr.is_ipv4() {
            return bad(
                "addresses.monitor",
                "must be of the same family (IPv4 or IPv6) as addresses.primary".into(),
            );
        }
        for (field, a) in [
            ("node.address", self.node.address.addr),
            ("node.peer", self.node.peer),
        ] {
            if a == p.addr || a == m.addr {
                return bad(
                    field,
                    format!("{a} is a floating address; a node address must be permanent"),
                );
            }
        }
        if self.node.address.addr == self.node.peer {
            return bad("node.peer", "must differ from node.address".into());
        }
        let hb = &self.heartbeat;
        if hb.interval.0.is_zero() {
            return bad("heartbeat.interval", "must be greater than zero".into());
        }
        if hb.timeout.0.is_zero() {
            return bad("heartbeat.timeout", "must be greater than zero".into());
        }
        if hb.misses == 0 {
            return bad("heartbeat.misses", "must be at least 1".into());
        }
        if hb.kind == HeartbeatKind::Udp && hb.port == 0 {
            return bad("heartbeat.port", "must be a UDP port (1-65535)".into());
        }
        let in_flight = crate::detector::probes_in_flight(hb.timeout.0, hb.interval.0);
        if in_flight >= failover_common::ARRIVAL_SLOTS as u128 / 2 {
            return bad(
                "heartbeat.timeout",
                format!(
                    "{:?} spans {in_flight} probes at interval {:?}; keep it under {}",
                    hb.timeout.0,
                    hb.interval.0,
                    failover_common::ARRIVAL_SLOTS / 2
                ),
            );
        }
        if self.realtime_priority > 99 {
            return bad(
                "realtime_priority",
                format!(
                    "{} is not a SCHED_FIFO priority; expected 1-99, or 0 for normal scheduling",
                    self.realtime_priority
                ),
            );
        }
        if self.join_timeout.0.is_zero() {
            return bad("join_timeout", "must be greater than zero".into());
        }
        match self.boot.method {
            BootMethod::Command if self.boot.command.is_none() => {
                return bad(
                    "boot.command",
                    "required with method = \"command\": the program to call with off/on/reboot/status"
                        .into(),
                );
            }
            BootMethod::None if !self.boot.allow_unfenced_takeover => {
                return bad(
                    "boot.method",
                    "\"none\" takes the primary address without fencing the old primary, which can \
                     leave two hosts answering on it; set boot.allow_unfenced_takeover = true to \
                     accept that risk, or use \"redfish\" or \"command\""
                        .into(),
                );
            }
            BootMethod::None if !self.takeover => {
                return bad(
                    "boot.method",
                    "\"none\" cannot reboot the primary, which is all that takeover = false does; \
                     use \"command\" or \"redfish\""
                        .into(),
                );
            }
            BootMethod::Redfish => self.validate_redfish(path)?,
            _ => {}
        }
        if self.boot.timeout.0.is_zero() {
            return bad("boot.timeout", "must be greater than zero".into());
        }
        if self.boot.retry.0.is_zero() || self.boot.retry_max.0 < self.boot.retry.0 {
            return bad(
                "boot.retry",
                "must be greater than zero and at most boot.retry_max".into(),
            );
        }
        if self.garp.count > 0 && self.garp.spacing.0.is_zero() && self.garp.count > 1 {
            return bad(
                "garp.spacing",
                "must be greater than zero when garp.count > 1".into(),
            );
        }
        if let Some(sy) = &self.sync {
            if sy.every == 0 {
                return bad("sync.every", "must be at least 1 heartbeat".into());
            }
            if sy.port == 0 || sy.port == self.heartbeat.port {
                return bad(
                    "sync.port",
                    "must be a TCP port (1-65535) other than heartbeat.port".into(),
                );
            }
            if !sy.dir.is_absolute() || sy.dir.parent().is_none_or(|p| p == Path::new("/")) {
                return bad(
                    "sync.dir",
                    "must be an absolute path below a parent directory (copies are staged beside it)"
                        .into(),
                );
            }
            if sy
                .snapshot_command
                .as_deref()
                .is_some_and(|c| c.trim().is_empty())
            {
                return bad("sync.snapshot_command", "must not be empty".into());
            }
        }
        if self.garp.dad_probes > 0 && self.garp.dad_wait.0.is_zero() {
            return bad(
                "garp.dad_wait",
                "must be greater than zero when garp.dad_probes > 0".into(),
            );
        }
        Ok(())
    }

    fn validate_redfish(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |field: &str, message: &str| {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                field: format!("boot.{field}"),
                message: message.to_string(),
            })
        };
        let b = &self.boot;
        let Some(url) = &b.url else {
            return bad(
                "url",
                "required with method = \"redfish\": the BMC's base URL, e.g. \"https://bmc-b\"",
            );
        };
        match url::Url::parse(url) {
            Ok(u) if u.scheme() == "https" => {}
            Ok(u) if u.scheme() == "http" && b.insecure => {}
            Ok(u) if u.scheme() == "http" => {
                return bad("url", "http:// sends the BMC password in clear text; use https://, or set boot.insecure = true to accept that")
            }
            Ok(_) => return bad("url", "expected an https:// URL"),
            Err(e) => return bad("url", &format!("{url:?} is not a URL ({e})")),
        }
        if b.username.as_deref().unwrap_or("").is_empty() {
            return bad("username", "required with method = \"redfish\"");
        }
        match (&b.password_file, &b.password_env) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => {
                return bad(
                    "password_file",
                    "set exactly one of boot.password_file and boot.password_env (the password itself never goes into the config)",
                )
            }
        }
        if b.ca_file.is_some() && b.insecure {
            return bad(
                "insecure",
                "boot.ca_file and boot.insecure = true exclude each other",
            );
        }
        for (field, d) in [
            ("connect_timeout", b.connect_timeout),
            ("request_timeout", b.request_timeout),
            ("fence_timeout", b.fence_timeout),
            ("power_poll", b.power_poll),
        ] {
            if d.0.is_zero() {
                return bad(field, "must be greater than zero");
            }
        }
        for (field, list) in [
            ("off_types", &b.off_types),
            ("on_types", &b.on_types),
            ("restart_types", &b.restart_types),
        ] {
            if list.as_ref().is_some_and(|l| l.is_empty()) {
                return bad(field, "must list at least one reset type");
            }
        }
        Ok(())
    }

    /// Approximate detection time: timeout + (misses - 1) * interval.
    pub fn detection_time(&self) -> Duration {
        self.heartbeat.timeout.0 + self.heartbeat.interval.0 * (self.heartbeat.misses - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
join_timeout = "300ms"
[node]
name = "a"
id = 1
interface = "eth0"
address = "10.0.0.1/24"
peer = "10.0.0.2"
[addresses]
primary = "10.0.0.100/24"
monitor = "10.0.0.101/24"
[heartbeat]
interval = "1ms"
timeout = "10ms"
misses = 15
[boot]
method = "command"
command = "/usr/local/sbin/fence-peer"
"#;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("test.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn good_config_with_defaults() {
        let c = parse(GOOD).expect("valid");
        assert_eq!(c.heartbeat.kind, HeartbeatKind::Udp);
        assert_eq!(c.join_timeout.0, Duration::from_millis(300));
        assert!(c.takeover);
        assert_eq!(c.detection_time(), Duration::from_millis(24));
        assert_eq!(c.addresses.primary.to_string(), "10.0.0.100/24");
    }

    #[test]
    fn bad_configs_name_the_field() {
        // (edit applied to GOOD, text the error must contain)
        let rows: &[(&str, &str, &str)] = &[
            (
                "[node]",
                "[node]\ncolour = \"red\"",
                "node.colour: unknown field `colour`",
            ),
            (
                "timeout = \"10ms\"",
                "timeout = \"soon\"",
                "heartbeat.timeout: \"soon\" is not a duration",
            ),
            (
                "misses = 15",
                "misses = 0",
                "heartbeat.misses: must be at least 1",
            ),
            (
                "monitor = \"10.0.0.101/24\"",
                "monitor = \"10.0.0.100/24\"",
                "addresses.monitor",
            ),
            (
                "monitor = \"10.0.0.101/24\"",
                "monitor = \"10.0.0.101\"",
                "no prefix length",
            ),
            (
                "monitor = \"10.0.0.101/24\"",
                "monitor = \"10.0.0.101/33\"",
                "longer than 32",
            ),
            (
                "monitor = \"10.0.0.101/24\"",
                "monitor = \"fd00::1/64\"",
                "same family",
            ),
            (
                "peer = \"10.0.0.2\"",
                "peer = \"10.0.0.100\"",
                "node.peer: 10.0.0.100 is a floating address",
            ),
            (
                "command = \"/usr/local/sbin/fence-peer\"",
                "",
                "boot.command: required",
            ),
            (
                "method = \"command\"",
                "method = \"none\"",
                "boot.method: \"none\" takes the primary",
            ),
            (
                "method = \"command\"",
                "method = \"ipmi\"",
                "unknown variant `ipmi`",
            ),
            (
                "interval = \"1ms\"",
                "interval = \"1us\"",
                "heartbeat.timeout",
            ),
            ("id = 1", "", "node: missing field `id`"),
            (
                "misses = 15",
                "misses = \"ten\"",
                "heartbeat.misses: invalid type: string \"ten\"",
            ),
        ];
        for (from, to, want) in rows {
            assert!(GOOD.contains(from), "row edits {from:?}");
            let text = GOOD.replacen(from, to, 1);
            let err = parse(&text).expect_err(want);
            assert!(err.starts_with("test.toml: "), "{err}");
            assert!(err.contains(want), "want {want:?} in {err:?}");
        }
    }

    #[test]
    fn unfenced_takeover_needs_the_explicit_opt_in() {
        let text = GOOD.replacen(
            "method = \"command\"",
            "method = \"none\"\nallow_unfenced_takeover = true",
            1,
        );
        let c = parse(&text).expect("opted in");
        assert_eq!(c.boot.method, BootMethod::None);
    }

    #[test]
    fn redfish_settings_are_checked_field_by_field() {
        let redfish = |extra: &str| {
            GOOD.replacen(
                "method = \"command\"\ncommand = \"/usr/local/sbin/fence-peer\"",
                &format!("method = \"redfish\"\n{extra}"),
                1,
            )
        };
        let ok = "url = \"https://bmc-b\"\nusername = \"admin\"\npassword_file = \"/etc/failover/bmc.pw\"";
        let c = parse(&redfish(ok)).expect("valid redfish");
        assert_eq!(c.boot.fence_timeout.0, Duration::from_secs(60));
        for (extra, want) in [
            ("username = \"admin\"\npassword_env = \"PW\"", "boot.url: required"),
            ("url = \"bmc-b\"\nusername = \"a\"\npassword_env = \"PW\"", "boot.url"),
            ("url = \"http://bmc-b\"\nusername = \"a\"\npassword_env = \"PW\"", "clear text"),
            ("url = \"https://bmc-b\"\npassword_env = \"PW\"", "boot.username"),
            ("url = \"https://bmc-b\"\nusername = \"a\"", "boot.password_file: set exactly one"),
            (
                "url = \"https://bmc-b\"\nusername = \"a\"\npassword_env = \"PW\"\npassword_file = \"/x\"",
                "set exactly one",
            ),
            (
                "url = \"https://bmc-b\"\nusername = \"a\"\npassword_env = \"PW\"\nca_file = \"/ca\"\ninsecure = true",
                "boot.insecure",
            ),
            (
                "url = \"https://bmc-b\"\nusername = \"a\"\npassword_env = \"PW\"\noff_types = []",
                "boot.off_types",
            ),
            (
                "url = \"https://bmc-b\"\nusername = \"a\"\npassword_env = \"PW\"\npassword = \"x\"",
                "unknown field `password`",
            ),
        ] {
            let err = parse(&redfish(extra)).expect_err(want);
            assert!(err.contains(want), "want {want:?} in {err:?}");
        }
    }

    #[test]
    fn sync_settings_are_checked() {
        let with = |extra: &str| format!("{GOOD}[sync]\n{extra}");
        let c = parse(&with(
            "dir = \"/var/lib/app\"\nkey_file = \"/etc/failover/sync.key\"",
        ))
        .expect("valid sync");
        let sy = c.sync.expect("sync section");
        assert_eq!((sy.every, sy.port, sy.bandwidth_mbit), (500, 7789, 0));
        for (extra, want) in [
            ("key_file = \"/k\"", "sync: missing field `dir`"),
            ("dir = \"/var/lib/app\"", "missing field `key_file`"),
            ("dir = \"data\"\nkey_file = \"/k\"", "sync.dir"),
            ("dir = \"/data\"\nkey_file = \"/k\"", "sync.dir"),
            (
                "dir = \"/var/lib/app\"\nkey_file = \"/k\"\nevery = 0",
                "sync.every",
            ),
            (
                "dir = \"/var/lib/app\"\nkey_file = \"/k\"\nport = 7788",
                "sync.port",
            ),
            (
                "dir = \"/var/lib/app\"\nkey_file = \"/k\"\nsnapshot_command = \" \"",
                "sync.snapshot_command",
            ),
            (
                "dir = \"/var/lib/app\"\nkey_file = \"/k\"\nkey = \"abc\"",
                "unknown field `key`",
            ),
        ] {
            let err = parse(&with(extra)).expect_err(want);
            assert!(err.contains(want), "want {want:?} in {err:?}");
        }
    }
}
