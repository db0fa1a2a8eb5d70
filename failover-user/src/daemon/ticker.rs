//! The probe clock of the heartbeat thread: a periodic `timerfd` read through the runtime's
//! reactor. A tokio timer costs an extra `write` to the runtime's eventfd and a second
//! `epoll_wait` every time it fires (the driver wakes itself); a timerfd costs the one
//! `epoll_wait` that sleeps and one `read`, so a tick is two syscalls before the probe's send.
use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::Duration,
};

use tokio::io::unix::AsyncFd;

/// A clock that fires every `interval`, the first time at once.
#[derive(Debug)]
pub(super) struct Ticker {
    fd: AsyncFd<OwnedFd>,
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    }
}

impl Ticker {
    /// A ticker on the calling runtime (it must have IO enabled).
    pub(super) fn new(interval: Duration) -> io::Result<Ticker> {
        // SAFETY: plain syscall; the descriptor is owned below.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let spec = libc::itimerspec {
            it_interval: timespec(interval.max(Duration::from_micros(1))),
            // The first tick at once (1 ns: zero would disarm the timer).
            it_value: timespec(Duration::from_nanos(1)),
        };
        // SAFETY: a valid timerfd and itimerspec.
        if unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the AsyncFd owns the descriptor (an OwnedFd), which stays open and the same
        // timer until the AsyncFd is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Ticker { fd })
    }

    /// Waits for the next tick; returns how many periods passed since the last one (more than
    /// one when the thread was late: the caller does one tick, it does not burst).
    pub(super) async fn tick(&self) -> io::Result<u64> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut n = 0u64;
            // SAFETY: reading the 8-byte expiration count of a timerfd into a u64.
            let r = unsafe {
                libc::read(
                    self.fd.get_ref().as_raw_fd(),
                    (&mut n as *mut u64).cast(),
                    std::mem::size_of::<u64>(),
                )
            };
            // One read takes every expiration: the descriptor is not readable until the next.
            guard.clear_ready();
            if r == std::mem::size_of::<u64>() as isize {
                return Ok(n);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock {
                return Err(e);
            }
        }
    }
}

/// Waits for `t`'s next tick, or forever without one.
pub(super) async fn tick_opt(t: Option<&Ticker>) -> io::Result<u64> {
    match t {
        Some(t) => t.tick().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn the_first_tick_comes_at_once() {
        runtime().block_on(async {
            // An hour's interval: only the immediate first tick can end this wait.
            let t = Ticker::new(Duration::from_secs(3600)).unwrap();
            let n = tokio::time::timeout(Duration::from_secs(30), t.tick())
                .await
                .expect("a first tick")
                .unwrap();
            assert_eq!(n, 1);
        });
    }

    #[test]
    fn a_late_reader_gets_one_tick_for_the_missed_periods() {
        runtime().block_on(async {
            let t = Ticker::new(Duration::from_millis(1)).unwrap();
            t.tick().await.unwrap();
            // The thread stalls (the fault under test) for many periods...
            std::thread::sleep(Duration::from_millis(30));
            // ... and the next wait returns once, with the periods it missed, not once each.
            let n = t.tick().await.unwrap();
            assert!(n >= 2, "{n}");
        });
    }
}
