//! What one lab scenario shows: the contract fields of `cargo xtask demo --json` (a typed
//! [`ScenarioSummary`]) and the timeline, plus the two judgements read off the logs: split brain as
//! the client saw it, and what the data copy achieved.
use failover_harness::{events::ts, pair::Host};
use serde::Serialize;
use serde_json::Value;

use crate::{fault::Fault, lab::Lab};

/// The hosts' final roles, from `failover status` (null when a daemon does not answer).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Roles {
    /// Host A's role.
    pub a: Option<String>,
    /// Host B's role.
    pub b: Option<String>,
}

impl Roles {
    /// The role of `h`.
    pub fn of(&self, h: Host) -> Option<&str> {
        match h {
            Host::A => self.a.as_deref(),
            Host::B => self.b.as_deref(),
        }
    }
}

/// What the data copy achieved (claims 14, 21).
#[derive(Clone, Debug, Serialize)]
pub struct SyncReport {
    /// Copies B completed before the fault.
    pub copies: usize,
    /// The generation B held at the fault.
    pub generation: Option<u64>,
    /// The recovery point: the time of A's updates lost, ms.
    pub rpo_ms: Option<f64>,
    /// B's first answer continued from a counter value A had served before B's last copy.
    pub served_matches_copy: bool,
    /// The counter of B's first answer.
    pub served_counter: Option<u64>,
}

/// How long two hosts answered on P after `t0`, from the client's log: from `new`'s first
/// answer after `t0` to `old`'s last answer after that, ms (0 when `old` never answered after
/// `new` began, or `new` never answered). Works for any system in the lab topology.
pub fn both_answered_ms(answers: &[Value], t0: u64, old: &str, new: &str) -> f64 {
    let Some(first_new) = answers
        .iter()
        .filter(|v| v["host"] == new && ts(v) > t0)
        .map(ts)
        .min()
    else {
        return 0.0;
    };
    answers
        .iter()
        .filter(|v| v["host"] == old && ts(v) > first_new)
        .map(ts)
        .max()
        .map_or(0.0, |last| ((last - first_new) as f64 / 1e5).round() / 10.0)
}

/// The contract fields of one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioSummary {
    /// The fault.
    pub fault: Fault,
    /// `takeover` of the configs.
    pub takeover: bool,
    /// Fault to `primary_failed`.
    pub detect_ms: Option<f64>,
    /// Fault to `fence_confirmed`.
    pub fence_ms: Option<f64>,
    /// Fault to P claimed by B.
    pub takeover_ms: Option<f64>,
    /// The client's last answer from A to its first from the new server.
    pub outage_ms: Option<f64>,
    /// Answers the client got from a host that should not have answered.
    pub split_brain: u64,
    /// How long two hosts answered on P, as the client saw it: from the new server's first
    /// answer after the fault to the old one's last answer after that (0: none after it).
    pub both_answered_ms: f64,
    /// Roles at the end.
    pub final_roles: Roles,
    /// Recovery only: the rebooted primary came back as primary.
    pub claim11: Option<bool>,
    /// Takeover: the fenced host rejoined as monitor.
    pub claim12: Option<bool>,
    /// With takeover: the data copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncReport>,
    /// `bmc-down`: whether P was claimed or served while the BMC was unreachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub takeover_while_bmc_down: Option<bool>,
    /// `bmc-down`: the failed attempts waited for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fence_failed_events: Option<u64>,
    /// `loss`, `cpu`: `primary_failed` events while the primary was healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub false_takeovers: Option<u64>,
    /// `loss`, `cpu`: answers from A during the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answers_from_a_during_fault: Option<u64>,
    /// The safety scenarios: power-offs of a host by its BMC after the fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_offs: Option<u64>,
    /// The safety scenarios: `isolated` events of the monitor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolated: Option<u64>,
    /// The safety scenarios: `fence_cancelled` events of the monitor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fence_cancelled: Option<u64>,
    /// The safety scenarios: whether the monitor heard the primary leave (`peer_left`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_left: Option<bool>,
    /// The safety scenarios' own figures (ms from a named point, counts).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub figures: serde_json::Map<String, serde_json::Value>,
}

impl ScenarioSummary {
    /// A summary with no figures yet.
    pub fn new(fault: Fault, takeover: bool) -> ScenarioSummary {
        ScenarioSummary {
            fault,
            takeover,
            detect_ms: None,
            fence_ms: None,
            takeover_ms: None,
            outage_ms: None,
            split_brain: 0,
            both_answered_ms: 0.0,
            final_roles: Roles::default(),
            claim11: None,
            claim12: None,
            sync: None,
            takeover_while_bmc_down: None,
            fence_failed_events: None,
            false_takeovers: None,
            answers_from_a_during_fault: None,
            power_offs: None,
            isolated: None,
            fence_cancelled: None,
            peer_left: None,
            figures: serde_json::Map::new(),
        }
    }
}

/// One scenario: the summary and the timeline (label, ms from the fault).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The contract fields.
    pub summary: ScenarioSummary,
    /// What happened when, in ms from the fault, in order.
    pub timeline: Vec<(String, Option<f64>)>,
}

/// Milliseconds from `t0` to `t`, to 0.1 ms.
pub fn ms_since(t0: u64, t: Option<u64>) -> Option<f64> {
    t.map(|t| ((t as f64 - t0 as f64) / 1e6 * 10.0).round() / 10.0)
}

impl Lab {
    /// Settled roles, from status.
    pub fn roles(&self) -> Roles {
        let r = |h| {
            self.status(h)
                .and_then(|s| s["role"].as_str().map(str::to_string))
        };
        Roles {
            a: r(Host::A),
            b: r(Host::B),
        }
    }

    /// What the data copy achieved: copies B completed before the fault, the generation it
    /// served, whether B's first answer continued from a counter value A had served before
    /// B's last copy, and the recovery point.
    pub fn sync_report(&self, t0: u64, answers: &[Value]) -> SyncReport {
        let done: Vec<Value> = self
            .events(Host::B)
            .into_iter()
            .filter(|v| v["event"] == "sync_done" && ts(v) < t0)
            .collect();
        let generation = done.last().and_then(|v| {
            v["detail"]
                .as_str()?
                .strip_prefix("generation ")?
                .split(':')
                .next()?
                .parse::<u64>()
                .ok()
        });
        let first_b = answers
            .iter()
            .filter(|v| v["host"] == "b" && ts(v) > t0)
            .min_by_key(|v| ts(v));
        let copied = first_b.and_then(|v| v["counter"].as_u64()).map(|c| c - 1);
        let last_done = done.last().map(ts).unwrap_or(0);
        let from_a = copied.and_then(|c| {
            answers
                .iter()
                .find(|v| v["host"] == "a" && v["counter"].as_u64() == Some(c))
                .map(ts)
        });
        let last_a = answers
            .iter()
            .filter(|v| v["host"] == "a" && ts(v) <= t0)
            .map(ts)
            .max();
        let matches = from_a.is_some_and(|t| t <= last_done);
        SyncReport {
            copies: done.len(),
            generation,
            rpo_ms: match (last_a, from_a) {
                (Some(l), Some(c)) if matches => {
                    Some((l.saturating_sub(c) as f64 / 1e5).round() / 10.0)
                }
                _ => None,
            },
            served_matches_copy: matches,
            served_counter: first_b.and_then(|v| v["counter"].as_u64()),
        }
    }

    /// Split-brain violations seen by the client after `t0`: answers from A after the first
    /// answer from B (interleaving), and answers from a host after its BMC reported it Off.
    pub fn split_brain(&self, t0: u64) -> u64 {
        let answers = self.answers();
        let first_b = answers
            .iter()
            .filter(|v| v["host"] == "b" && ts(v) > t0)
            .map(ts)
            .min();
        let mut n = 0;
        for h in Host::BOTH {
            let log = self.bmc_log(h);
            // "Off" is logged once every process of the host is dead: an answer after that
            // came from a host that was powered off. (While PoweringOff, the host still runs.)
            let offs: Vec<u64> = log
                .iter()
                .filter(|v| v["power_state"] == "Off")
                .map(ts)
                .collect();
            let ons: Vec<u64> = log
                .iter()
                .filter(|v| v["power_state"] == "PoweringOn")
                .map(ts)
                .collect();
            for v in answers
                .iter()
                .filter(|v| v["host"] == h.name() && ts(v) > t0)
            {
                let t = ts(v);
                // Powered off at t: the last Off before t with no PoweringOn between.
                let down = offs
                    .iter()
                    .filter(|o| **o < t)
                    .max()
                    .is_some_and(|o| !ons.iter().any(|on| on > o && *on < t));
                if down {
                    n += 1;
                }
            }
        }
        // Interleaving: A answering after B took over, until A rebooted and before the next
        // takeover (A as primary again happens only in recovery-only mode, where B never
        // answers).
        if let Some(fb) = first_b {
            let a_on = self
                .bmc_log(Host::A)
                .iter()
                .filter(|v| v["power_state"] == "PoweringOn" && ts(v) > t0)
                .map(ts)
                .min()
                .unwrap_or(u64::MAX);
            n += answers
                .iter()
                .filter(|v| v["host"] == "a" && ts(v) > fb && ts(v) < a_on)
                .count() as u64;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(host: &str, ms: u64) -> Value {
        serde_json::json!({"ts_ns": ms * 1_000_000, "host": host})
    }

    #[test]
    fn both_answered_spans_the_new_hosts_first_answer_to_the_old_ones_last() {
        // Fault at 100 ms; B first answers at 140; A answers again at 150 and 5100 (a thaw).
        let log = [
            answer("a", 90),
            answer("a", 95),
            answer("b", 140),
            answer("a", 150),
            answer("b", 145),
            answer("a", 5100),
        ];
        assert_eq!(both_answered_ms(&log, 100_000_000, "a", "b"), 4960.0);
    }

    #[test]
    fn both_answered_is_zero_when_the_old_host_stays_silent_or_nobody_took_over() {
        let clean = [answer("a", 90), answer("b", 140), answer("b", 145)];
        assert_eq!(both_answered_ms(&clean, 100_000_000, "a", "b"), 0.0);
        // A answered after the fault but before B's first answer: not two hosts at once.
        let before = [answer("a", 101), answer("b", 140)];
        assert_eq!(both_answered_ms(&before, 100_000_000, "a", "b"), 0.0);
        let none = [answer("a", 90), answer("a", 150)];
        assert_eq!(both_answered_ms(&none, 100_000_000, "a", "b"), 0.0);
    }
}
