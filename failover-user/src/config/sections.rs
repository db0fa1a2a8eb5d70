//! One serde struct per section, each with its defaults next to its fields.
use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::{Cidr, HumanDuration};

/// `[node]`: this host.
#[derive(Clone, Debug, Deserialize, Serialize)]
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

/// The primary addresses: claimed, announced, defended and released together. The first is
/// the one the monitor probes and the one heartbeats and joins use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Primaries(Vec<Cidr>);

impl Primaries {
    /// One address, or several, the first probed. None when `all` is empty.
    pub fn new(all: Vec<Cidr>) -> Option<Primaries> {
        (!all.is_empty()).then_some(Primaries(all))
    }

    /// The probed address: P of the protocol.
    pub fn first(&self) -> Cidr {
        self.0[0]
    }

    /// Every primary address, the probed one first.
    pub fn all(&self) -> &[Cidr] {
        &self.0
    }

    /// Whether `addr` is one of them.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.0.iter().any(|c| c.addr == addr)
    }
}

impl std::fmt::Display for Primaries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Primaries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(Cidr),
            Many(Vec<Cidr>),
        }
        let all = match OneOrMany::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected an address with prefix (\"10.0.0.100/24\") or a list of them",
            )
        })? {
            OneOrMany::One(c) => vec![c],
            OneOrMany::Many(v) => v,
        };
        Primaries::new(all)
            .ok_or_else(|| serde::de::Error::custom("lists no address; give at least one"))
    }
}

impl Serialize for Primaries {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0[..] {
            [one] => one.serialize(s),
            all => all.serialize(s),
        }
    }
}

fn default_peer_name() -> String {
    "peer".into()
}

/// `[addresses]`: the two floating addresses.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FloatingAddresses {
    /// The primary (service) address P: one address, or a list that moves as one (the probes
    /// target the first).
    pub primary: Primaries,
    /// The monitor address M.
    pub monitor: Cidr,
}

/// Heartbeat form.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HeartbeatKind {
    /// ICMP echo: sees the kernel and link, not the daemon.
    Icmp,
    /// UDP heartbeat answered by the daemon: sees a dead or frozen daemon too.
    Udp,
}

/// `[heartbeat]`: the first signal and its deadlines.
#[derive(Clone, Debug, Deserialize, Serialize)]
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
    /// After a failure decision, this many in-time replies in a row mean P is back: a
    /// pending self-check is dropped, and a fence whose power action was not sent yet is
    /// cancelled (`fence_cancelled`). Default 5.
    #[serde(default = "default_recover_after")]
    pub recover_after: u32,
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
fn default_recover_after() -> u32 {
    5
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            kind: default_kind(),
            port: default_port(),
            interval: default_interval(),
            timeout: default_timeout(),
            misses: default_misses(),
            recover_after: default_recover_after(),
        }
    }
}

/// `[hooks]`: operator programs run on role changes.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Run after this host became primary (P claimed).
    pub on_primary: Option<PathBuf>,
    /// Run after this host became monitor (M claimed).
    pub on_monitor: Option<PathBuf>,
    /// Run on a fault, with `FAILOVER_REASON` (`fence_failed`, `boot_failed`, `isolated`,
    /// `conflict`, `demoted`, `revoke_refused`, `check_failed`).
    pub on_fault: Option<PathBuf>,
    /// Run after a planned switchover settled on the host that started it
    /// (`FAILOVER_REASON` `switchover_done` or `switchover_failed`).
    pub on_switchover: Option<PathBuf>,
    /// Run when the daemon stops, after it released its addresses (`FAILOVER_REASON` `stop`);
    /// the stop waits for it.
    pub on_stop: Option<PathBuf>,
    /// A FIFO that gets every event as one JSON line (keepalived's `notify_fifo`); created
    /// (mode 0600) when missing. Lines that find the FIFO full are dropped and counted, never
    /// waited for.
    pub event_fifo: Option<PathBuf>,
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
            on_switchover: None,
            on_stop: None,
            event_fifo: None,
            timeout: default_hook_timeout(),
        }
    }
}

/// `[witness]`: what a monitor checks before every fence, so that it never fences a healthy
/// primary because its own side is cut off.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Witness {
    /// Addresses that answer ICMP echo and that both hosts reach (a router, the monitoring
    /// host), at most 7. Empty: the default route's gateway on `node.interface`, if any.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// How many of them must answer. Default 1.
    #[serde(default = "default_witness_min")]
    pub min: u32,
    /// How long the self-check waits for their answers (judged from the XDP stamps).
    /// Default 50ms.
    #[serde(default = "default_witness_timeout")]
    pub timeout: HumanDuration,
    /// While isolated, how often the self-check is repeated. Default 500ms.
    #[serde(default = "default_witness_recheck")]
    pub recheck: HumanDuration,
    /// The lease witness (`failover witness`), `ADDR:PORT`: it renews the primary's lease
    /// (`boot.lease`) beside the monitor.
    pub lease_peer: Option<std::net::SocketAddr>,
    /// The pair's lease key (64 hex digits, mode 0600; the witness has the same).
    pub lease_key_file: Option<std::path::PathBuf>,
    /// The UDP port on the node address where a monitor renews the primary's lease. Default
    /// 5405.
    #[serde(default = "default_lease_port")]
    pub lease_port: u16,
}

fn default_lease_port() -> u16 {
    5405
}

fn default_witness_min() -> u32 {
    1
}
fn default_witness_timeout() -> HumanDuration {
    HumanDuration(Duration::from_millis(50))
}
fn default_witness_recheck() -> HumanDuration {
    HumanDuration(Duration::from_millis(500))
}

impl Default for Witness {
    fn default() -> Self {
        Witness {
            addresses: Vec::new(),
            min: default_witness_min(),
            timeout: default_witness_timeout(),
            recheck: default_witness_recheck(),
            lease_peer: None,
            lease_key_file: None,
            lease_port: default_lease_port(),
        }
    }
}

/// `[garp]`: announcements after claiming an address.
#[derive(Clone, Debug, Deserialize, Serialize)]
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
    /// How long to listen for an answer after each probe (the probes go out a third of it
    /// apart). Default 3ms.
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
#[derive(Clone, Debug, Deserialize, Serialize)]
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
#[derive(Clone, Debug, Deserialize, Serialize)]
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
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataSync {
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
    /// Deadline of the authentication handshake, on both sides; a connection to the sync port
    /// that has not authenticated by then is closed. Default 5s.
    #[serde(default = "default_sync_handshake")]
    pub handshake_timeout: HumanDuration,
    /// Deadline of each frame read or written once authenticated. Default: `snapshot_timeout`
    /// + 30s (the monitor waits for one frame while the primary snapshots and scans).
    #[serde(default)]
    pub frame_timeout: Option<HumanDuration>,
    /// Deadline of one whole copy, on both sides. Default: 100 copy intervals, at least 10 min.
    #[serde(default)]
    pub copy_timeout: Option<HumanDuration>,
    /// On the monitor, no copy completed for this long is the `sync_stale` alert. Default: 10
    /// copy intervals (`every` × `heartbeat.interval`).
    #[serde(default)]
    pub alert_after: Option<HumanDuration>,
    /// How many `DIR.diverged-EPOCH` directories (this host's own data that a copy replaced)
    /// are kept; the oldest beyond are removed, each with an event. At least 1.
    #[serde(default = "default_keep_diverged")]
    pub keep_diverged: usize,
    /// On the monitor: refuse a takeover whose copy is older than this (default: off).
    #[serde(default)]
    pub max_age: Option<HumanDuration>,
    /// With `max_age`: take over with an older copy anyway once the peer is confirmed off.
    #[serde(default)]
    pub serve_stale: bool,
    /// On the monitor: keep the setuid and setgid bits of copied files. Default false: they
    /// are dropped, so a copy never brings a program that runs as another user (directories
    /// keep setgid; the sticky bit is always kept).
    #[serde(default)]
    pub keep_setid: bool,
}

fn default_keep_diverged() -> usize {
    crate::sync::KEEP_DIVERGED
}

/// The deadlines of the data copy, defaults resolved.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SyncDeadlines {
    /// `sync.connect_timeout`.
    pub connect: Duration,
    /// `sync.handshake_timeout`.
    pub handshake: Duration,
    /// `sync.frame_timeout`.
    pub frame: Duration,
    /// `sync.copy_timeout`.
    pub copy: Duration,
    /// `sync.alert_after`.
    pub alert_after: Duration,
}

/// Added to `snapshot_timeout` for the default `frame_timeout`.
const FRAME_SLACK: Duration = Duration::from_secs(30);
/// The shortest default `copy_timeout`.
const COPY_TIMEOUT_MIN: Duration = Duration::from_secs(600);

impl DataSync {
    /// Time between two copies: `every` heartbeats of `heartbeat_interval`.
    pub fn copy_interval(&self, heartbeat_interval: Duration) -> Duration {
        heartbeat_interval.saturating_mul(self.every)
    }

    /// The deadlines, with the derived defaults filled in.
    pub fn deadlines(&self, heartbeat_interval: Duration) -> SyncDeadlines {
        let every = self.copy_interval(heartbeat_interval);
        SyncDeadlines {
            connect: self.connect_timeout.0,
            handshake: self.handshake_timeout.0,
            frame: self
                .frame_timeout
                .map_or(self.snapshot_timeout.0.saturating_add(FRAME_SLACK), |d| d.0),
            copy: self
                .copy_timeout
                .map_or(every.saturating_mul(100).max(COPY_TIMEOUT_MIN), |d| d.0),
            alert_after: self.alert_after.map_or(every.saturating_mul(10), |d| d.0),
        }
    }
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
fn default_sync_handshake() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
