//! What every stream listener of the daemon shares (the control socket, the metrics endpoint,
//! the sync port): a backoff on accept errors, a bound on concurrent connections, and log lines
//! that a flood cannot multiply.
//!
//! - [`accept`] with a [`Backoff`]: an accept that fails (EMFILE, ENFILE, ENOBUFS...) is retried
//!   after 10 ms, doubling to 1 s, reset by the next success. The first failure of a burst is
//!   one WARN line naming the listener and the error; the success that ends the burst is one
//!   INFO line. A listener at the file-descriptor limit therefore costs one failed syscall per
//!   second, not a core.
//! - [`Slots`]: at most N connections per listener. A connection is *idle* until it did its
//!   first real step (sent its request, authenticated); when every slot is taken, a new
//!   connection takes the slot of the oldest idle one, which is closed at once. With no idle
//!   one, the new connection is closed at once. So connections that send nothing (a slow-loris
//!   client) never lock out a client that does its work promptly, and never hold more than N
//!   descriptors.
//! - [`Throttle`]: at most one line per period, counting the ones it held back.
use std::{
    fmt::Display,
    future::Future,
    io,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::oneshot;

/// First wait after a failed accept.
pub const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest wait between two failed accepts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Lines about closed connections of one listener: at most one per this period.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The accept backoff of one listener.
#[derive(Debug)]
pub struct Backoff {
    listener: &'static str,
    next: Duration,
    failures: u64,
}

impl Backoff {
    /// The backoff of `listener` (named in the log lines).
    pub fn new(listener: &'static str) -> Backoff {
        Backoff {
            listener,
            next: BACKOFF_MIN,
            failures: 0,
        }
    }

    /// An accept failed: whether to log it (the first of a burst) and how long to wait.
    pub fn failed(&mut self) -> (bool, Duration) {
        self.failures += 1;
        let wait = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        (self.failures == 1, wait)
    }

    /// An accept succeeded: the failures of the burst it ends (0: there was none).
    pub fn succeeded(&mut self) -> u64 {
        self.next = BACKOFF_MIN;
        std::mem::take(&mut self.failures)
    }
}

/// Whether `e` means the process or the system ran out of file descriptors.
fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// The next connection from `accept`; failed accepts are retried with `backoff`.
pub async fn accept<T, F, Fut>(backoff: &mut Backoff, mut accept: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = io::Result<T>>,
{
    loop {
        match accept().await {
            Ok(c) => {
                let failed = backoff.succeeded();
                if failed > 0 {
                    tracing::info!(
                        listener = backoff.listener,
                        failures = failed,
                        "{}: accepting again after {failed} failed accepts",
                        backoff.listener
                    );
                }
                return c;
            }
            Err(e) => {
                let (log, wait) = backoff.failed();
                if log {
                    let hint = if out_of_descriptors(&e) {
                        " (out of file descriptors: see RLIMIT_NOFILE / LimitNOFILE)"
                    } else {
                        ""
                    };
                    tracing::warn!(
                        listener = backoff.listener,
                        error = %e,
                        "{}: accept failed: {e}{hint}; retrying every {BACKOFF_MIN:?} doubling \
                         to {BACKOFF_MAX:?}, logged again when it succeeds",
                        backoff.listener
                    );
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// At most one line per period.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    /// One line per `every`.
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            held: 0,
        }
    }

    /// Whether to write a line at `now`: `Some(n)` with the lines held back since the last
    /// one, `None` to stay silent.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|l| now.duration_since(l) < self.every)
        {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

#[derive(Debug)]
struct Held {
    id: u64,
    /// Set while the connection is idle: sending on it closes the connection.
    evict: Option<oneshot::Sender<()>>,
    from: String,
}

#[derive(Debug)]
struct Inner {
    listener: &'static str,
    /// What an idle connection has not done yet, for the log line.
    idle: &'static str,
    limit: usize,
    next_id: u64,
    /// In the order they were admitted.
    held: Vec<Held>,
    log: Throttle,
}

impl Inner {
    fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The connection slots of one listener.
#[derive(Clone, Debug)]
pub struct Slots(Arc<Mutex<Inner>>);

/// One admitted connection's slot, given back on drop.
#[derive(Debug)]
pub struct Slot {
    id: u64,
    slots: Arc<Mutex<Inner>>,
    evicted: Option<oneshot::Receiver<()>>,
}

impl Slots {
    /// `limit` slots (at least 1) for `listener`; `idle` says what an idle connection has not
    /// done yet ("sent a complete request"). Both are named in the log lines.
    pub fn new(listener: &'static str, limit: usize, idle: &'static str) -> Slots {
        Slots(Arc::new(Mutex::new(Inner {
            listener,
            idle,
            limit: limit.max(1),
            next_id: 0,
            held: Vec::new(),
            log: Throttle::new(LOG_EVERY),
        })))
    }

    /// A slot for a new connection from `from`: a free one, or the one of the oldest idle
    /// connection, which is closed. `None`: every slot is busy; close the new one at once.
    pub fn admit(&self, from: impl Display) -> Option<Slot> {
        let mut s = Inner::lock(&self.0);
        let from = from.to_string();
        if s.held.len() >= s.limit {
            let (limit, listener, idle) = (s.limit, s.listener, s.idle);
            let oldest_idle = s.held.iter().position(|h| h.evict.is_some());
            let Some(i) = oldest_idle else {
                if let Some(n) = s.log.allow(Instant::now()) {
                    tracing::warn!(listener, from = %from, "{listener}: {limit} connections \
                        busy (the limit): closed the new one from {from} ({n} more since the \
                        last such line)");
                }
                return None;
            };
            let old = s.held.remove(i);
            if let Some(evict) = old.evict {
                let _ = evict.send(());
            }
            if let Some(n) = s.log.allow(Instant::now()) {
                tracing::warn!(listener, from = %old.from, "{listener}: {limit} connections \
                    open (the limit): closed the oldest one that had not {idle}, from {} ({n} \
                    more since the last such line)", old.from);
            }
        }
        let id = s.next_id;
        s.next_id += 1;
        let (tx, rx) = oneshot::channel();
        s.held.push(Held {
            id,
            evict: Some(tx),
            from,
        });
        Some(Slot {
            id,
            slots: self.0.clone(),
            evicted: Some(rx),
        })
    }

    /// Connections holding a slot.
    pub fn held(&self) -> usize {
        Inner::lock(&self.0).held.len()
    }
}

impl Slot {
    /// Resolves when this connection was closed to make room for a newer one (only while
    /// idle; never after [`Slot::busy`]).
    pub async fn evicted(&mut self) {
        match self.evicted.as_mut() {
            Some(rx) => {
                // A dropped sender without a send is the end of idleness, not an eviction.
                if rx.await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }

    /// The connection did its first real step: it keeps its slot until it ends.
    pub fn busy(&mut self) {
        self.evicted = None;
        let mut s = Inner::lock(&self.slots);
        if let Some(h) = s.held.iter_mut().find(|h| h.id == self.id) {
            h.evict = None;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = Inner::lock(&self.slots);
        s.held.retain(|h| h.id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_logs_once_per_burst_and_resets() {
        let mut b = Backoff::new("test");
        assert_eq!(b.failed(), (true, BACKOFF_MIN));
        assert_eq!(b.failed(), (false, BACKOFF_MIN * 2));
        let waits: Vec<Duration> = (0..10).map(|_| b.failed().1).collect();
        assert_eq!(*waits.last().unwrap(), BACKOFF_MAX);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert_eq!(b.succeeded(), 12);
        assert_eq!(b.succeeded(), 0, "no burst");
        assert_eq!(b.failed(), (true, BACKOFF_MIN), "a new burst logs again");
    }

    #[test]
    fn throttle_allows_one_line_per_period_and_counts_the_rest() {
        let mut t = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.allow(t0), Some(0));
        assert_eq!(t.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(t.allow(t0 + Duration::from_secs(9)), None);
        assert_eq!(t.allow(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(t.allow(t0 + Duration::from_secs(11)), None);
    }

    #[test]
    fn a_full_listener_closes_the_oldest_idle_connection_never_a_busy_one() {
        let slots = Slots::new("test", 2, "sent a request");
        let mut a = slots.admit("a").expect("free");
        let mut b = slots.admit("b").expect("free");
        a.busy();
        // Full: b is the oldest idle one.
        let mut c = slots.admit("c").expect("b's slot");
        assert_eq!(slots.held(), 2);
        assert!(b.evicted.as_mut().unwrap().try_recv().is_ok(), "b closed");
        c.busy();
        // Full and all busy: the new one is refused.
        assert!(slots.admit("d").is_none());
        drop(a);
        assert_eq!(slots.held(), 1);
        let _e = slots.admit("e").expect("a's slot is free again");
        // b was evicted, so dropping it frees nothing else.
        drop(b);
        assert_eq!(slots.held(), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn evicted_resolves_only_on_eviction() {
        let slots = Slots::new("test", 1, "sent a request");
        let mut a = slots.admit("a").unwrap();
        let _b = slots.admit("b").unwrap();
        tokio::time::timeout(Duration::from_secs(5), a.evicted())
            .await
            .expect("a was evicted");
        let mut c = Slots::new("test", 1, "sent a request").admit("c").unwrap();
        c.busy();
        assert!(
            tokio::time::timeout(Duration::from_millis(20), c.evicted())
                .await
                .is_err(),
            "a busy slot is never evicted"
        );
    }
}
