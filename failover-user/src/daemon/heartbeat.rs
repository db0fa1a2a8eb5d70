//! The heartbeat threads: everything that answers heartbeats and joins, sends probes and reads
//! arrivals, on threads of their own (SCHED_FIFO at `realtime_priority`): one per responder,
//! blocked in its receive, and one with its own runtime for the probes, the lease and the
//! commands.
//!
//! Nothing slow shares it: no file I/O, hashing, HTTP, fsync or child process. The control
//! thread (the role machine, fencing, hooks, the data copy, netlink, the status socket) can
//! stall for as long as it likes without delaying a heartbeat answer or a probe. Log lines
//! from here go through a non-blocking writer (`logging`), so even a slow log reader cannot
//! stall it.
use std::sync::Arc;

use tokio::sync::mpsc;

use super::monitor::{Monitor, Report, TickContext};
use crate::{
    signal::responder::{Responder, Stopper},
    sys,
};

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

/// The running thread and the responders' threads; ends them on drop.
pub(super) struct HeartbeatThread {
    commands: mpsc::UnboundedSender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// One thread per responder, and what ends it.
    responders: Vec<(Stopper, std::thread::JoinHandle<()>)>,
}

/// Starts one thread per responder (SCHED_FIFO at `realtime_priority` too): each sleeps in
/// a blocking receive and is woken by the request itself, then answers with one send. No
/// runtime, timer or readiness poll stands between a heartbeat and its answer.
fn spawn_responders(
    responders: Vec<Responder>,
    realtime_priority: u8,
) -> std::io::Result<Vec<(Stopper, std::thread::JoinHandle<()>)>> {
    let mut out = Vec::new();
    for r in responders {
        let stopper = match r.stopper() {
            Ok(s) => s,
            Err(e) => {
                stop_responders(out);
                return Err(std::io::Error::other(e));
            }
        };
        let flag = stopper.flag();
        let thread = std::thread::Builder::new()
            .name("failover-answer".into())
            .spawn(move || {
                if realtime_priority > 0 {
                    // Refused: reported once by the heartbeat thread, which asks the same.
                    let _ = sys::set_realtime(realtime_priority);
                }
                if let Err(e) = r.serve_blocking(flag) {
                    tracing::error!("{}", crate::error_chain(&e));
                }
            });
        match thread {
            Ok(t) => out.push((stopper, t)),
            Err(e) => {
                stop_responders(out);
                return Err(e);
            }
        }
    }
    Ok(out)
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
        let responders = spawn_responders(responders, realtime_priority)?;
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
                // The loop runs as a task, not as the future `block_on` polls: a timer firing
                // inside the driver wakes a task by queueing it, where waking the `block_on`
                // future writes the runtime's eventfd, a syscall and a second poll per tick.
                runtime.block_on(async move {
                    let _ = tokio::spawn(run(cx, rx, reports, watchdog)).await;
                });
            });
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                stop_responders(responders);
                return Err(e);
            }
        };
        let rt_error = on_start.recv().ok().flatten();
        Ok((
            HeartbeatThread {
                commands,
                thread: Some(thread),
                responders,
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
        stop_responders(std::mem::take(&mut self.responders));
    }
}

/// Ends the responders' threads and waits for them.
fn stop_responders(responders: Vec<(Stopper, std::thread::JoinHandle<()>)>) {
    for (stopper, thread) in responders {
        stopper.stop();
        let _ = thread.join();
    }
}

/// Sleeps until `at`, or forever without one.
pub(super) async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The thread's loop: tick the monitor, obey commands, and ping systemd's watchdog (from this
/// loop itself: a stalled loop stops the pings).
async fn run(
    cx: TickContext,
    mut commands: mpsc::UnboundedReceiver<Command>,
    reports: mpsc::UnboundedSender<Report>,
    mut watchdog: Option<crate::notify::Watchdog>,
) {
    let cx = Arc::new(cx);
    let mut monitor: Option<Box<Monitor>> = None;
    let mut lease: Option<tokio::sync::oneshot::Sender<()>> = None;
    let mut out = Vec::new();
    // The probe clock, while a monitor runs.
    let mut ticker: Option<super::ticker::Ticker> = None;
    loop {
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
                    match super::ticker::Ticker::new(m.interval()) {
                        Ok(t) => ticker = Some(t),
                        Err(e) => {
                            let _ = reports.send(Report::Failed(format!("probe clock (timerfd): {e}")));
                            let _ = reports.send(Report::Retired(m));
                            continue;
                        }
                    }
                    cx.status.active.store(true, std::sync::atomic::Ordering::Relaxed);
                    if let Some(old) = monitor.replace(m) {
                        let _ = reports.send(Report::Retired(old));
                    }
                }
                Some(Command::StopMonitor(back)) => {
                    ticker = None;
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
            t = super::ticker::tick_opt(ticker.as_ref()) => {
                let ticked = match (t, monitor.as_mut()) {
                    (Err(e), _) => Err(format!("probe clock (timerfd): {e}")),
                    (Ok(_), Some(m)) => m.tick(&cx, &mut out).map_err(|e| crate::error_chain(&e)),
                    (Ok(_), None) => Ok(()),
                };
                if let Err(e) = ticked {
                    out.push(Report::Failed(e));
                    ticker = None;
                    if let Some(old) = monitor.take() {
                        out.push(Report::Retired(old));
                    }
                }
            }
        }
        for r in out.drain(..) {
            let _ = reports.send(r);
        }
    }
}
