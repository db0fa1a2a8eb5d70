//! The witness's configuration file (`failover witness --config FILE`).
use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::config::{parse_toml, ConfigError, HumanDuration};

/// The whole file: one `[witness]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessFile {
    /// The witness.
    pub witness: WitnessConfig,
}

/// `[witness]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// The UDP address the pair sends lease requests and revokes to (the pair's
    /// `witness.lease_peer`).
    pub listen: SocketAddr,
    /// The pair's lease key (64 hex digits, mode 0600; the pair's `witness.lease_key_file`).
    pub key_file: PathBuf,
    /// The two hosts' node addresses: datagrams from anywhere else are dropped unread.
    pub peers: Vec<IpAddr>,
    /// Where the revoked epoch is kept (it must survive a restart: a witness that forgot a
    /// revocation could renew a lease the monitor was told is over).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The control socket (`failover status --socket`).
    #[serde(default = "default_socket")]
    pub control_socket: PathBuf,
    /// A revoke is refused while the primary was heard within this window (its own detection
    /// window: the pair's heartbeat.timeout + misses x interval, about 30 ms by default).
    #[serde(default = "default_detection")]
    pub detection: HumanDuration,
    /// The longest lease granted (a longer request gets this).
    #[serde(default = "default_max_lease")]
    pub max_lease: HumanDuration,
    /// The clock-rate bound assumed, in parts per million (default 10000: 1 %).
    #[serde(default = "default_ppm")]
    pub clock_rate_ppm: u32,
    /// A Prometheus endpoint (`ADDR:PORT`, no authentication: loopback or a management
    /// address). Default: none.
    pub metrics: Option<SocketAddr>,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/failover-witness")
}
fn default_socket() -> PathBuf {
    PathBuf::from("/run/failover/witness.sock")
}
fn default_detection() -> HumanDuration {
    HumanDuration(Duration::from_millis(30))
}
fn default_max_lease() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_ppm() -> u32 {
    crate::lease::DEFAULT_PPM
}

impl WitnessConfig {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<WitnessConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        WitnessConfig::parse(path, &text)
    }

    /// Parses and validates `text` (from `path`, named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<WitnessConfig, ConfigError> {
        let mut c = parse_toml::<WitnessFile>(path, text)?.witness;
        let bad = |field: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            field: format!("witness.{field}"),
            message,
        };
        if c.peers.len() != 2 || c.peers[0] == c.peers[1] {
            return Err(bad(
                "peers",
                "expected the two hosts' node addresses (two different addresses)".into(),
            ));
        }
        if c.detection.0.is_zero() {
            return Err(bad("detection", "must be greater than zero".into()));
        }
        if c.max_lease.0.is_zero() || c.max_lease.0 > Duration::from_secs(60) {
            return Err(bad(
                "max_lease",
                "expected more than 0 and at most 60s".into(),
            ));
        }
        if crate::lease::Bound::new(c.clock_rate_ppm).is_none() || c.clock_rate_ppm > 100_000 {
            return Err(bad(
                "clock_rate_ppm",
                "expected at most 100000 (10 %)".into(),
            ));
        }
        let dir = std::path::absolute(path.parent().unwrap_or(Path::new(""))).unwrap_or_default();
        for p in [&mut c.key_file, &mut c.state_dir, &mut c.control_socket] {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<WitnessConfig, String> {
        WitnessConfig::parse(Path::new("/etc/w.toml"), text).map_err(|e| e.to_string())
    }

    const OK: &str = "[witness]\nlisten = \"10.0.0.9:5405\"\nkey_file = \"lease.key\"\npeers = [\"10.0.0.1\", \"10.0.0.2\"]\n";

    #[test]
    fn defaults_and_relative_paths() {
        let c = parse(OK).unwrap();
        assert_eq!(c.key_file, PathBuf::from("/etc/lease.key"));
        assert_eq!(c.detection.0, Duration::from_millis(30));
        assert_eq!(c.clock_rate_ppm, 10_000);
    }

    #[test]
    fn bad_values_name_the_field() {
        let e = parse(&OK.replace("\"10.0.0.2\"", "\"10.0.0.1\"")).unwrap_err();
        assert!(e.contains("witness.peers"), "{e}");
        let e = parse(&format!("{OK}detection = \"0s\"\n")).unwrap_err();
        assert!(e.contains("witness.detection"), "{e}");
        let e = parse(&format!("{OK}max_lease = \"2m\"\n")).unwrap_err();
        assert!(e.contains("witness.max_lease"), "{e}");
        let e = parse(&format!("{OK}clock_rate_ppm = 200000\n")).unwrap_err();
        assert!(e.contains("witness.clock_rate_ppm"), "{e}");
        let e = parse(&format!("{OK}lisen = 1\n")).unwrap_err();
        assert!(e.contains("lisen"), "{e}");
        let e = parse("[witness]\nlisten = \"x\"\n").unwrap_err();
        assert!(e.contains("witness.listen"), "{e}");
    }
}
