//! `failover status` for people: everything the JSON has, one aligned line per subject, ages
//! in human units. `--watch` redraws it in place.
use std::{fmt::Write as _, time::Duration};

use failover::control::Status;

/// "850 ms", "12 s", "3m 20s", "2h 5m": an age or a span for people.
pub fn human_ms(ms: u64) -> String {
    if ms < 1_000 {
        return format!("{ms} ms");
    }
    let s = ms / 1_000;
    match s {
        0..=59 => format!("{:.1} s", ms as f64 / 1e3),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn ago(ms: Option<u64>) -> String {
    ms.map_or("never".into(), |m| format!("{} ago", human_ms(m)))
}

/// The whole status as lines of `label  value`, labels aligned.
pub fn render(st: &Status) -> String {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |label: &str, value: String| rows.push((label.to_string(), value));
    row(
        "node",
        format!("{} (up {})", st.node, human_ms(st.uptime_s * 1000)),
    );
    row("role", format!("{}, epoch {}", st.role, st.epoch));
    let p_addrs = if st.primary_addresses.is_empty() {
        st.primary_address.clone()
    } else {
        st.primary_addresses.join(", ")
    };
    row("P", p_addrs);
    row(
        "holds",
        if st.addresses_held.is_empty() {
            "nothing".into()
        } else {
            st.addresses_held.join(", ")
        },
    );
    let p = &st.peer;
    row(
        "peer",
        format!(
            "{} ({}): {}, last heard {}{}",
            p.name,
            p.address,
            p.state,
            ago(p.last_reply_age_ms),
            if p.consecutive_misses > 0 {
                format!(", {} misses in a row", p.consecutive_misses)
            } else {
                String::new()
            }
        ),
    );
    if let Some(m) = &st.maintenance {
        row(
            "maintenance",
            match m.remaining_ms {
                Some(ms) => format!("ON, {} left: no fence, no takeover", human_ms(ms)),
                None => "ON until turned off: no fence, no takeover".into(),
            },
        );
    }
    row(
        "last boot",
        match &st.last_boot {
            Some(b) => format!("{} {} ({})", b.action, b.result, ago(Some(b.age_ms))),
            None => "none".into(),
        },
    );
    if let Some(l) = &st.lease {
        let grant = |a: Option<f64>| ago(a.map(|a| a as u64));
        row(
            "lease",
            if l.active {
                format!(
                    "{:.1} ms left, {} lapses; last grant from the witness {}, from the monitor {}",
                    l.remaining_ms,
                    l.lapses,
                    grant(l.witness_grant_age_ms),
                    grant(l.monitor_grant_age_ms)
                )
            } else {
                format!("none held (not primary); {} lapses", l.lapses)
            },
        );
    }
    if let Some(s) = &st.sync {
        row(
            "sync",
            format!(
                "generation {} (epoch {}, {}), {} copies, {} failed, last complete copy {}{}",
                s.generation,
                s.generation_epoch,
                s.generation_origin,
                s.copies,
                s.failures,
                ago(s.age_ms),
                s.last_error
                    .as_deref()
                    .map_or(String::new(), |e| format!("; last error: {e}"))
            ),
        );
        if !s.kept_aside.is_empty() {
            row("kept aside", s.kept_aside.join(", "));
        }
        if let Some(n) = &s.newer_data_here {
            row("newer data", n.clone());
        }
    }
    for c in &st.checks {
        let state = match (c.counts, c.ok) {
            (false, _) => format!("not judged as {} (counts as {})", st.role, c.on),
            (true, true) => "passes".into(),
            (true, false) => "FAILED".into(),
        };
        row(
            "check",
            format!(
                "{}: {state}; {} runs, {} failed{}",
                c.name,
                c.runs,
                c.failures,
                c.last_error
                    .as_deref()
                    .map_or(String::new(), |e| format!("; last: {e}"))
            ),
        );
    }
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 2;
    let mut out = String::new();
    for (label, value) in rows {
        let _ = writeln!(out, "{:<width$}{value}", format!("{label}:"));
    }
    out
}

/// Clears the terminal and moves to its top (ANSI), for `--watch`.
pub const CLEAR: &str = "\x1b[H\x1b[2J";

/// The pause between two redraws of `--watch`.
pub fn watch_interval(d: Option<Duration>) -> Duration {
    d.unwrap_or(Duration::from_secs(1))
        .max(Duration::from_millis(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(human_ms(850), "850 ms");
        assert_eq!(human_ms(12_345), "12.3 s");
        assert_eq!(human_ms(200_000), "3m 20s");
        assert_eq!(human_ms(7_500_000), "2h 5m");
        assert_eq!(human_ms(90_000_000), "1d 1h");
    }

    #[test]
    fn every_subject_of_the_status_is_shown_aligned() {
        let st: Status = serde_json::from_value(serde_json::json!({
            "node": "a", "role": "monitor", "epoch": 3, "primary_address": "10.0.0.100",
            "primary_addresses": ["10.0.0.100/24", "fd00::100/64"],
            "peer": {"name": "b", "address": "10.0.0.2", "state": "alive",
                     "consecutive_misses": 0, "last_reply_age_ms": 2},
            "addresses_held": ["10.0.0.101/24"], "last_boot": null, "uptime_s": 75,
            "sync": null, "lease": null,
            "maintenance": {"until_unix_ms": null, "remaining_ms": null},
            "checks": [{"name": "db", "on": "both", "counts": true, "ok": false, "runs": 9,
                        "failures": 3, "last_error": "connect refused"}]
        }))
        .expect("a status");
        let text = render(&st);
        // Aligned on the longest label, "maintenance:", and one space.
        for (label, value) in [
            ("role", "monitor, epoch 3"),
            ("P", "10.0.0.100/24, fd00::100/64"),
            ("peer", "b (10.0.0.2): alive, last heard 2 ms ago"),
            ("maintenance", "ON until turned off"),
            (
                "check",
                "db: FAILED; 9 runs, 3 failed; last: connect refused",
            ),
            ("node", "a (up 1m 15s)"),
        ] {
            let want = format!("{:<13}{value}", format!("{label}:"));
            assert!(text.contains(&want), "{want:?} in\n{text}");
        }
    }
}
