//! The least a probe can cost on this machine: a bare prober thread (sleep until the next
//! period, one UDP send) and a bare answering thread (one blocking receive, one send) in the
//! lab's topology, with nothing else: no runtime, no judging, no XDP. Any design that wakes once
//! per probe pays at least this; bench-cpu prints it beside the daemons' figures.
use std::{
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    path::Path,
    time::Duration,
};

use anyhow::{Context as _, Result};
use failover_harness::pair::Host;

/// CPU time of the calling thread, ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &Path) -> Result<()> {
    let f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    // SAFETY: setns on a namespace descriptor, for this thread only.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error()).context("setns");
    }
    Ok(())
}

/// What the bare loops cost, µs of CPU per probe.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Floor {
    /// The prober: one timed sleep and one send per probe.
    pub prober_us: f64,
    /// The answerer: one blocking receive and one send per probe.
    pub answer_us: f64,
    /// Probes sent.
    pub probes: u64,
}

/// Runs the bare loops for `window` at `interval` between A (answering) and B (probing) of a
/// fresh lab topology (no daemons).
pub fn measure(interval: Duration, window: Duration) -> Result<Floor> {
    let pair = crate::lab::topology(None);
    let to: SocketAddr = "10.92.0.1:7799".parse()?;
    let (ns_a, ns_b) = (pair.ns(Host::A).path(), pair.ns(Host::B).path());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let answer = std::thread::spawn(move || -> Result<(u64, u64)> {
        enter(&ns_a)?;
        let s = UdpSocket::bind(to)?;
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        let _ = ready_tx.send(());
        let mut buf = [0u8; 64];
        let c0 = thread_cpu_ns();
        let mut n = 0;
        while let Ok((len, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..len], from);
            n += 1;
        }
        // The last 500 ms waited in vain: the receive timeout, not a probe.
        Ok((thread_cpu_ns() - c0, n))
    });
    ready_rx
        .recv()
        .context("the answering thread did not start")?;
    let probe = std::thread::spawn(move || -> Result<(u64, u64)> {
        enter(&ns_b)?;
        let s = UdpSocket::bind("10.92.0.2:0")?;
        s.set_nonblocking(true)?;
        let mut buf = [0u8; 64];
        let mut next = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut next) };
        let end = std::time::Instant::now() + window;
        let c0 = thread_cpu_ns();
        let mut n = 0;
        let step = interval.as_nanos() as i64;
        while std::time::Instant::now() < end && !crate::lab::interrupted() {
            next.tv_nsec += step as libc::c_long;
            while next.tv_nsec >= 1_000_000_000 {
                next.tv_nsec -= 1_000_000_000;
                next.tv_sec += 1;
            }
            // SAFETY: an absolute sleep on CLOCK_MONOTONIC with a valid timespec.
            unsafe {
                libc::clock_nanosleep(
                    libc::CLOCK_MONOTONIC,
                    libc::TIMER_ABSTIME,
                    &next,
                    std::ptr::null_mut(),
                )
            };
            let _ = s.send_to(&[0u8; 40], to);
            while s.recv_from(&mut buf).is_ok() {}
            n += 1;
        }
        Ok((thread_cpu_ns() - c0, n))
    });
    let (p_ns, probes) = probe.join().expect("prober thread")?;
    let (a_ns, answered) = answer.join().expect("answering thread")?;
    drop(pair);
    if crate::lab::interrupted() {
        anyhow::bail!("interrupted");
    }
    Ok(Floor {
        prober_us: p_ns as f64 / 1e3 / probes.max(1) as f64,
        answer_us: a_ns as f64 / 1e3 / answered.max(1) as f64,
        probes,
    })
}
