//! Validation: values that parse but make no sense, named by field.
use std::{net::IpAddr, path::Path};

use super::{Config, ConfigError, DataSync, FenceMode};

impl Config {
    pub(super) fn validate(&self, path: &Path) -> Result<(), ConfigError> {
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
        let p = self.addresses.primary.first();
        let m = self.addresses.monitor;
        let primaries = self.addresses.primary.all();
        for (i, c) in primaries.iter().enumerate() {
            if primaries[..i].iter().any(|o| o.addr == c.addr) {
                return bad("addresses.primary", format!("{} is listed twice", c.addr));
            }
        }
        if self.addresses.primary.contains(m.addr) {
            return bad(
                "addresses.monitor",
                format!("{} is also a primary address; P and M must differ", m.addr),
            );
        }
        if p.addr.is_ipv4() != m.addr.is_ipv4() {
            return bad(
                "addresses.monitor",
                "must be of the same family (IPv4 or IPv6) as the first addresses.primary (the \
                 probed one)"
                    .into(),
            );
        }
        // A floating address of the pair, P or M.
        let floating = |a: IpAddr| a == m.addr || self.addresses.primary.contains(a);
        for (field, a) in [
            ("node.address", self.node.address.addr),
            ("node.peer", self.node.peer),
        ] {
            if floating(a) {
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
        if hb.port == 0 {
            return bad(
                "heartbeat.port",
                "must be a UDP port (1-65535): join probes use it whatever the heartbeat kind"
                    .into(),
            );
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
        self.validate_boot(path)?;
        for (i, c) in self.checks.iter().enumerate() {
            if let Some((field, message)) = c.problem() {
                return bad(&format!("check[{}].{field}", i + 1), message);
            }
            let label = c.label();
            if self.checks[..i].iter().any(|o| o.label() == label) {
                return bad(
                    &format!("check[{}].name", i + 1),
                    format!("{label:?} is the name of an earlier check; names must differ"),
                );
            }
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
            self.validate_sync_deadlines(sy, path)?;
        }
        if let Some(level) = &self.log_level {
            if let Err(e) = tracing_subscriber::EnvFilter::try_new(level) {
                return bad("log_level", format!("{level:?} is not a log filter ({e})"));
            }
        }
        if hb.recover_after == 0 {
            return bad("heartbeat.recover_after", "must be at least 1".into());
        }
        let w = &self.witness;
        let max = failover_common::MAX_STREAMS as usize - 1;
        if w.addresses.len() > max {
            return bad(
                "witness.addresses",
                format!("{} addresses; at most {max}", w.addresses.len()),
            );
        }
        for a in &w.addresses {
            if a.is_ipv4() != self.node.address.addr.is_ipv4() {
                return bad(
                    "witness.addresses",
                    format!(
                        "{a} is not of the family of node.address; witnesses are probed from it"
                    ),
                );
            }
            if floating(*a) || *a == self.node.peer || *a == self.node.address.addr {
                return bad(
                    "witness.addresses",
                    format!(
                        "{a} is a node or floating address of the pair; a witness is a third host"
                    ),
                );
            }
        }
        // Without addresses the default gateway is the one witness.
        let available = w.addresses.len().max(1);
        if w.min == 0 || w.min as usize > available {
            return bad(
                "witness.min",
                format!(
                    "{} cannot be met: between 1 and the number of witnesses ({available}; \
                     without witness.addresses, the default gateway)",
                    w.min
                ),
            );
        }
        if w.timeout.0.is_zero() || w.recheck.0.is_zero() {
            return bad(
                "witness.timeout",
                "witness.timeout and witness.recheck must be greater than zero".into(),
            );
        }
        if let Some(lease) = self.boot.lease {
            let v4 = primaries.iter().filter(|c| c.addr.is_ipv4()).count();
            if v4 > 1 || primaries.len() - v4 > 1 {
                return bad(
                    "addresses.primary",
                    "with boot.lease at most one IPv4 and one IPv6 primary address: the lease \
                     gate stops those two when the lease lapses, and would leave others serving"
                        .into(),
                );
            }
            let l = lease.0;
            if l < std::time::Duration::from_millis(4) || l > std::time::Duration::from_secs(10) {
                return bad(
                    "boot.lease",
                    format!("{l:?}: expected between 4ms and 10s (renewed every quarter of it)"),
                );
            }
            let Some(peer) = w.lease_peer else {
                return bad(
                    "witness.lease_peer",
                    "boot.lease needs the witness: without it a dead monitor would take the \
                     service down with it"
                        .into(),
                );
            };
            let ip = peer.ip();
            if floating(ip) || ip == self.node.peer || ip == self.node.address.addr {
                return bad(
                    "witness.lease_peer",
                    format!("{ip} is an address of the pair; the witness is a third host"),
                );
            }
            if w.lease_key_file.is_none() {
                return bad(
                    "witness.lease_key_file",
                    "boot.lease needs the pair's lease key (the witness has the same)".into(),
                );
            }
            if w.lease_port == self.heartbeat.port {
                return bad(
                    "witness.lease_port",
                    format!("{} is heartbeat.port", w.lease_port),
                );
            }
        }
        if self.boot.fence == FenceMode::Lease {
            let why = if self.boot.lease.is_none() {
                Some("needs boot.lease (the lease is what the takeover waits out)")
            } else if !self.takeover {
                Some("needs takeover = true (recovery only never takes P)")
            } else if self.boot.unfenced() {
                Some(
                    "needs a boot.method (\"redfish\", \"agent\" or \"command\"): the old primary is reset \
                     after the takeover, and fenced through it when the witness does not answer",
                )
            } else {
                None
            };
            if let Some(why) = why {
                return bad("boot.fence", format!("\"lease\" {why}"));
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

    fn validate_sync_deadlines(&self, sy: &DataSync, path: &Path) -> Result<(), ConfigError> {
        let bad = |field: &str, message: String| {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                field: format!("sync.{field}"),
                message,
            })
        };
        for (field, d) in [
            ("connect_timeout", Some(sy.connect_timeout)),
            ("handshake_timeout", Some(sy.handshake_timeout)),
            ("frame_timeout", sy.frame_timeout),
            ("copy_timeout", sy.copy_timeout),
            ("alert_after", sy.alert_after),
            ("max_age", sy.max_age),
        ] {
            if d.is_some_and(|d| d.0.is_zero()) {
                return bad(field, "must be greater than zero".into());
            }
        }
        let d = sy.deadlines(self.heartbeat.interval.0);
        if sy.snapshot_command.is_some() && d.frame <= sy.snapshot_timeout.0 {
            return bad(
                "frame_timeout",
                format!(
                    "{:?} must be longer than sync.snapshot_timeout ({:?}): the monitor waits \
                     for one frame while the primary runs the snapshot command",
                    d.frame, sy.snapshot_timeout.0
                ),
            );
        }
        if sy.keep_diverged == 0 {
            return bad(
                "keep_diverged",
                "must be at least 1: this host's own data replaced by a copy is kept aside, \
                 never deleted"
                    .into(),
            );
        }
        if sy.serve_stale && sy.max_age.is_none() {
            return bad(
                "serve_stale",
                "needs sync.max_age (it relaxes that limit)".into(),
            );
        }
        let every = sy.copy_interval(self.heartbeat.interval.0);
        if d.alert_after <= every {
            return bad(
                "alert_after",
                format!(
                    "{:?} must be longer than one copy interval (sync.every x \
                     heartbeat.interval = {every:?}), or every copy would raise it",
                    d.alert_after
                ),
            );
        }
        Ok(())
    }
}
