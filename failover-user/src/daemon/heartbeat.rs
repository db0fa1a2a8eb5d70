//! The heartbeat thread: everything that answers heartbeats and joins, sends probes and reads
//! arrivals, on a thread of its own (SCHED_FIFO at `realtime_priority`) with its own runtime.
//!
//! Nothing slow shares it: no file I/O, hashing, HTTP, fsync or child process. The control
//! thread (the role machine, fencing, hooks, the data copy, netlink, the status socket) can
//! stall for as long as it likes without delaying a heartbeat answer or a probe. Log lines
//! from here go through a non-blocking writer (`logging`), so even a slow log reader cannot
//! stall it.
use std::sync::Arc;

use tokio::sync::mpsc;

use super::monitor::{Monitor, Report, TickContext};
use crate::{signal::responder::Responder, sys};

/// What the control thread asks of the heartbeat thread.
pub(super) enum Command {
    /// Start probing P with this monitor (opened on the control thread).
    Monitor(Box<Monitor>),
    /// Stop probing; the monitor comes back on the channel, to be dropped off this thread.
    StopMonitor(tokio::sync::oneshot::Sender<Box<Monitor>>),
    /// Ask the witnesses: `needed` must answer within `timeout` (`Report::SelfCheck`).
    SelfCheck {
        /// `witness.min`.
        needed: usize,
        /// `witness.timeout`.
        timeout: std::time::Duration,
    },
    /// Forget a failure of P and judge it afresh (this host's own isolation ended).
    Rejudge,
    /// Keep the primary's lease with this keeper (replacing one that runs).
    Lease(Box<super::lease::Keeper>),
    /// Stop keeping the lease (P released).
    StopLease,
    /// Serve the peer's lease requests on this socket while this host is its monitor.
    Grants(Box<GrantSettings>),
    /// End the thread.
    Exit,
}

/// The monitor's grantor: its socket and key.
pub(super) struct GrantSettings {
    pub(super) sock: std::net::UdpSocket,
    pub(super) key: [u8; 32],
    pub(super) peer: std::net::IpAddr,
    pub(super) identity: Arc<crate::signal::responder::Identity>,
    /// Whether to grant now (the control loop stops it at a failure decision).
    pub(super) granting: Arc<super::lease::Granting>,
    pub(super) max_lease: std::time::Duration,
}

/// The running thread; ends it on drop.
pub(super) struct HeartbeatThread {
    commands: mpsc::UnboundedSender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HeartbeatThread {
    /// Starts the thread with the responders it serves. Returns the SCHED_FIFO error, if the
    /// priority was refused (the thread then runs with normal scheduling).
    pub(super) fn spawn(
        responders: Vec<Responder>,
        cx: TickContext,
        reports: mpsc::UnboundedSender<Report>,
        realtime_priority: u8,
        watchdog: Option<crate::notify::Watchdog>,
    ) -> std::io::Result<(HeartbeatThread, Option<std::io::Error>)> {
        let (commands, rx) = mpsc::unbounded_channel();
        let (started, on_start) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("failover-heartbeat".into())
            .spawn(move || {
                let rt = (realtime_priority > 0).then(|| sys::set_realtime(realtime_priority));
                let _ = started.send(rt.and_then(Result::err));
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "heartbeat thread: no runtime");
                        return;
                    }
                };
                runtime.block_on(run(responders, cx, rx, reports, watchdog));
            })?;
        let rt_error = on_start.recv().ok().flatten();
        Ok((
            HeartbeatThread {
                commands,
                thread: Some(thread),
            },
            rt_error,
        ))
    }

    /// Sends a command (the thread outlives every sender but this one).
    pub(super) fn send(&self, c: Command) {
        let _ = self.commands.send(c);
    }
}

impl Drop for HeartbeatThread {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Exit);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sleeps until `at`, or forever without one.
pub(super) async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The thread's loop: serve the responders, tick the monitor, obey commands, and ping
/// systemd's watchdog (from this loop itself: a stalled loop stops the pings).
async fn run(
    responders: Vec<Responder>,
    cx: TickContext,
    mut commands: mpsc::UnboundedReceiver<Command>,
    reports: mpsc::UnboundedSender<Report>,
    mut watchdog: Option<crate::notify::Watchdog>,
) {
    for r in responders {
        tokio::spawn(async move {
            if let Err(e) = r.serve().await {
                tracing::error!("{}", crate::error_chain(&e));
            }
        });
    }
    let cx = Arc::new(cx);
    let mut monitor: Option<Box<Monitor>> = None;
    let mut lease: Option<tokio::sync::oneshot::Sender<()>> = None;
    let mut out = Vec::new();
    loop {
        let wake = monitor.as_ref().map(|m| m.next_tick);
        let ping = watchdog.as_ref().map(crate::notify::Watchdog::due);
        tokio::select! {
            biased;
            _ = sleep_until_opt(ping) => {
                if let Some(w) = watchdog.as_mut() {
                    w.ping();
                }
            }
            c = commands.recv() => match c {
                Some(Command::Monitor(m)) => {
                    cx.status.active.store(true, std::sync::atomic::Ordering::Relaxed);
                    if let Some(old) = monitor.replace(m) {
                        let _ = reports.send(Report::Retired(old));
                    }
                }
                Some(Command::StopMonitor(back)) => {
                    cx.status.active.store(false, std::sync::atomic::Ordering::Relaxed);
                    if let Some(old) = monitor.take() {
                        if let Err(old) = back.send(old) {
                            let _ = reports.send(Report::Retired(old));
                        }
                    }
                }
                Some(Command::SelfCheck { needed, timeout }) => match monitor.as_mut() {
                    Some(m) => m.start_self_check(needed, timeout, &mut out),
                    None => out.push(Report::SelfCheck { answered: 0 }),
                },
                Some(Command::Rejudge) => {
                    if let Some(m) = monitor.as_mut() {
                        m.rejudge();
                    }
                }
                Some(Command::Lease(k)) => {
                    let (stop, stopped) = tokio::sync::oneshot::channel();
                    if let Some(old) = lease.replace(stop) {
                        let _ = old.send(());
                    }
                    tokio::spawn(k.run(reports.clone(), stopped));
                }
                Some(Command::StopLease) => {
                    if let Some(old) = lease.take() {
                        let _ = old.send(());
                    }
                }
                Some(Command::Grants(g)) => {
                    let g = *g;
                    tokio::spawn(super::lease::serve_grants(
                        g.sock, g.key, g.peer, g.identity, g.granting, g.max_lease,
                    ));
                }
                Some(Command::Exit) | None => {
                    if let Some(old) = monitor.take() {
                        let _ = reports.send(Report::Retired(old));
                    }
                    return;
                }
            },
            _ = sleep_until_opt(wake) => {
                if let Some(m) = monitor.as_mut() {
                    if let Err(e) = m.tick(&cx, &mut out) {
                        out.push(Report::Failed(crate::error_chain(&e)));
                        if let Some(old) = monitor.take() {
                            out.push(Report::Retired(old));
                        }
                    }
                }
            }
        }
        for r in out.drain(..) {
            let _ = reports.send(r);
        }
    }
}
