//! `sync_stale`: on the monitor, no copy of the primary's data completed for longer than
//! `sync.alert_after` (since monitoring started, or since the last `sync_done`).
//!
//! The decision is [`Staleness`], pure; [`watch`] runs it on the control runtime (never on the
//! heartbeat thread), woken by the next deadline or by a completed copy.
use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use tokio::{sync::watch, task::JoinHandle};

use crate::{
    control::SharedStatus,
    event::{Emitter, Event},
    role::Role,
    signal::responder::Identity,
};

/// When the copy held here counts as stale, and whether that was said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Staleness {
    alert_after: Duration,
    /// Monitoring started, or the last copy completed.
    since: Instant,
    /// `sync_stale` was emitted for this stretch.
    alerted: bool,
}

impl Staleness {
    /// Watching from `now` (monitoring starts).
    pub(super) fn new(now: Instant, alert_after: Duration) -> Staleness {
        Staleness {
            alert_after,
            since: now,
            alerted: false,
        }
    }

    /// A copy completed at `at`: a new stretch begins.
    pub(super) fn completed(&mut self, at: Instant) {
        self.since = self.since.max(at);
        self.alerted = false;
    }

    /// When [`Staleness::check`] may next alert; `None` once it has, until a copy completes.
    pub(super) fn due(&self) -> Option<Instant> {
        // An `alert_after` beyond the clock's range is never due.
        (!self.alerted)
            .then(|| self.since.checked_add(self.alert_after))
            .flatten()
    }

    /// At `now`: `Some(time without a completed copy)` when that is longer than
    /// `alert_after` and was not said yet for this stretch; then not again until a copy
    /// completes.
    pub(super) fn check(&mut self, now: Instant) -> Option<Duration> {
        let age = now.saturating_duration_since(self.since);
        if self.alerted || age <= self.alert_after {
            return None;
        }
        self.alerted = true;
        Some(age)
    }
}

/// What the watch reports with.
pub(super) struct StaleContext {
    pub events: Emitter,
    pub identity: Arc<Identity>,
    pub status: SharedStatus,
}

/// Watches for stale copies until aborted; `done` carries the time of each completed copy.
pub(super) fn watch(
    alert_after: Duration,
    mut done: watch::Receiver<Instant>,
    cx: StaleContext,
) -> JoinHandle<()> {
    done.mark_unchanged();
    tokio::spawn(async move {
        let mut s = Staleness::new(Instant::now(), alert_after);
        loop {
            let due = s.due().map(tokio::time::Instant::from_std);
            tokio::select! {
                _ = super::heartbeat::sleep_until_opt(due) => {
                    if let Some(age) = s.check(Instant::now()) {
                        report(&cx, age, alert_after);
                    }
                }
                changed = done.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let at = *done.borrow_and_update();
                    s.completed(at);
                }
            }
        }
    })
}

fn report(cx: &StaleContext, age: Duration, alert_after: Duration) {
    let last = cx
        .status
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .sync
        .as_ref()
        .and_then(|s| s.last_error.clone());
    let why = last.map_or_else(String::new, |e| format!("; last failure: {e}"));
    cx.events.emit(
        Event::SyncStale,
        Role::Monitor.name(),
        cx.identity.epoch.load(Ordering::Relaxed),
        &format!(
            "no copy of the primary's data completed for {:.1} s (sync.alert_after {alert_after:?}){why}",
            age.as_secs_f64()
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_once_per_stretch_and_again_only_after_a_completed_copy() {
        let t0 = Instant::now();
        let s10 = Duration::from_secs(10);
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut s = Staleness::new(t0, s10);
        assert_eq!(s.due(), Some(at(10)));
        assert_eq!(s.check(at(5)), None);
        assert_eq!(s.check(at(10)), None, "longer than, not as long as");
        assert_eq!(s.check(at(11)), Some(Duration::from_secs(11)));
        assert_eq!(s.due(), None, "said; wait for a copy");
        assert_eq!(s.check(at(30)), None, "once per stretch");
        s.completed(at(31));
        assert_eq!(s.due(), Some(at(41)));
        assert_eq!(s.check(at(40)), None, "fresh again");
        // Copies keep completing: never stale.
        s.completed(at(40));
        assert_eq!(s.check(at(49)), None);
        assert_eq!(
            s.check(at(51)),
            Some(Duration::from_secs(11)),
            "stale again"
        );
        assert_eq!(s.check(at(52)), None);
    }

    #[test]
    fn an_alert_after_beyond_the_clock_is_never_due() {
        let mut s = Staleness::new(Instant::now(), Duration::MAX);
        assert_eq!(s.due(), None);
        assert_eq!(s.check(Instant::now() + Duration::from_secs(3600)), None);
    }

    #[test]
    fn a_completion_reported_late_never_moves_the_stretch_back() {
        let t0 = Instant::now();
        let mut s = Staleness::new(t0 + Duration::from_secs(5), Duration::from_secs(10));
        s.completed(t0);
        assert_eq!(s.due(), Some(t0 + Duration::from_secs(15)));
    }
}
