//! What a reload (SIGHUP) may change while the daemon runs, and what needs a restart.
use serde_json::Value;

use super::Config;

/// Fields (dotted paths, or prefixes ending in `.`) that a running daemon cannot take over:
/// its identity and addresses, what it listens and probes with, where its state lives.
const NEEDS_RESTART: &[&str] = &[
    "node.",
    "addresses.",
    "heartbeat.",
    "paths.",
    "sync.",
    "control.socket",
    "realtime_priority",
    "takeover",
    "preferred_primary",
    // The fencing posture: switching fencing off or certificate checks off live would skip
    // the warnings a start gives.
    "boot.level.method",
    "boot.fence",
    "boot.allow_unfenced_takeover",
    "boot.level.insecure",
    // The lease: the gate, its grantors and its key are set up at promotion.
    "boot.lease",
    "witness.lease_peer",
    "witness.lease_key_file",
    "witness.lease_port",
    // The event FIFO is opened once, at start.
    "hooks.event_fifo",
    // The health checks' tasks start with the daemon.
    "check.",
];

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        // Lists of tables (the fence levels) by element, counted from 1: `boot.level[2].url`.
        Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{}]", i + 1), v, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

fn fields(c: &Config) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    flatten(
        "",
        &serde_json::to_value(c).unwrap_or(Value::Null),
        &mut out,
    );
    out
}

/// Whether a change of `field` needs a restart. List indices do not matter:
/// `boot.level[2].method` is judged as `boot.level.method`.
pub fn needs_restart(field: &str) -> bool {
    let mut plain = String::with_capacity(field.len());
    let mut in_index = false;
    for c in field.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            c if !in_index => plain.push(c),
            _ => {}
        }
    }
    let field = plain.as_str();
    NEEDS_RESTART.iter().any(|p| {
        if let Some(section) = p.strip_suffix('.') {
            field == section || field.starts_with(p)
        } else {
            field == *p
        }
    })
}

impl Config {
    /// The dotted names of the fields whose values differ between `self` and `new` (a whole
    /// section that appears or goes counts as its name), sorted.
    pub fn changed_fields(&self, new: &Config) -> Vec<String> {
        let (a, b) = (fields(self), fields(new));
        let mut changed: Vec<String> = a
            .iter()
            .filter(|(k, v)| b.iter().find(|(k2, _)| k2 == k).map(|(_, v2)| v2) != Some(v))
            .map(|(k, _)| k.clone())
            .chain(
                b.iter()
                    .filter(|(k, _)| !a.iter().any(|(k2, _)| k2 == k))
                    .map(|(k, _)| k.clone()),
            )
            .collect();
        changed.sort();
        changed.dedup();
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_rules() {
        for f in [
            "node.interface",
            "addresses.primary",
            "heartbeat.interval",
            "sync",
            "sync.dir",
            "sync.keep_setid",
            "control.socket",
            "takeover",
            "boot.level[1].method",
            "boot.level[3].method",
            "boot.level[1].insecure",
            "boot.allow_unfenced_takeover",
            "boot.lease",
            "boot.fence",
            "witness.lease_peer",
        ] {
            assert!(needs_restart(f), "{f}");
        }
        for f in [
            "hooks.on_primary",
            "boot.level[1].timeout",
            "boot.level[2].url",
            "boot.level[2].options.ip",
            "garp.count",
            "witness.addresses",
            "control.metrics",
            "log_level",
            "join_timeout",
            "startup_grace",
        ] {
            assert!(!needs_restart(f), "{f}");
        }
        assert!(!needs_restart("takeover_x"), "exact names are exact");
    }
}
