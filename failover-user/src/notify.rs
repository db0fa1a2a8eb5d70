//! systemd's service notifications (`Type=notify`, sd_notify(3)) through the `sd-notify`
//! crate: `READY=1` once the role has settled after the join, `STATUS=` with the role, epoch
//! and peer state whenever they change, `RELOADING=1` then `READY=1` around a reload,
//! `STOPPING=1` at shutdown, and `WATCHDOG=1` from the heartbeat thread's own loop (so a
//! stalled loop stops the pings and systemd restarts the service).
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) everything here does nothing. Each message is one
//! datagram on a Unix socket: it never waits for the service manager.
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Mutex,
};

use sd_notify::NotifyState;

/// The control thread's notifications.
#[derive(Debug, Default)]
pub struct Notifier {
    on: bool,
    ready: AtomicBool,
    last_status: Mutex<String>,
}

impl Notifier {
    /// Notifies only when the service manager gave a socket (`NOTIFY_SOCKET`).
    pub fn from_env() -> Notifier {
        Notifier {
            on: std::env::var_os("NOTIFY_SOCKET").is_some(),
            ..Default::default()
        }
    }

    /// Whether a service manager listens (`NOTIFY_SOCKET`): without one, nothing is sent and
    /// nothing need be formatted.
    pub fn enabled(&self) -> bool {
        self.on
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.on {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            tracing::debug!(error = %e, "sd_notify");
        }
    }

    /// `STATUS=status` when it differs from the last one sent; with `settled`, also
    /// `READY=1` the first time (the role settled after the join).
    pub fn status(&self, status: &str, settled: bool) {
        if !self.on {
            return;
        }
        let first_ready = settled && !self.ready.swap(true, Ordering::Relaxed);
        let changed = {
            let mut last = self.last_status.lock().unwrap_or_else(|p| p.into_inner());
            let changed = *last != status;
            if changed {
                status.clone_into(&mut last);
            }
            changed
        };
        match (first_ready, changed) {
            (true, _) => self.send(&[NotifyState::Ready, NotifyState::Status(status)]),
            (false, true) => self.send(&[NotifyState::Status(status)]),
            (false, false) => {}
        }
    }

    /// `RELOADING=1` (with the monotonic time systemd 253 and later ask for).
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    /// `READY=1` after a reload.
    pub fn reloaded(&self) {
        if self.ready.load(Ordering::Relaxed) {
            self.send(&[NotifyState::Ready]);
        }
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }
}

/// The watchdog's pings, for the heartbeat thread: every half of `WATCHDOG_USEC`.
#[derive(Debug)]
pub struct Watchdog {
    every: std::time::Duration,
    next: tokio::time::Instant,
}

impl Watchdog {
    /// The watchdog systemd asked for (`WatchdogSec=`), if any.
    pub fn from_env() -> Option<Watchdog> {
        std::env::var_os("NOTIFY_SOCKET")?;
        let every = sd_notify::watchdog_enabled()? / 2;
        Some(Watchdog {
            every: every.max(std::time::Duration::from_millis(1)),
            next: tokio::time::Instant::now(),
        })
    }

    /// When the next ping is due.
    pub fn due(&self) -> tokio::time::Instant {
        self.next
    }

    /// Sends `WATCHDOG=1` and schedules the next.
    pub fn ping(&mut self) {
        if let Err(e) = sd_notify::notify(&[NotifyState::Watchdog]) {
            tracing::debug!(error = %e, "sd_notify watchdog");
        }
        self.next = tokio::time::Instant::now() + self.every;
    }
}
