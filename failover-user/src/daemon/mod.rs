//! The runtime of `failover run`: the imperative shell around the pure role machine.
//!
//! One loop owns the machine. It feeds inputs (timers, probe verdicts, join results, boot
//! results, signals) into [`Machine::step`] and executes the returned actions in order.
//! Short actions (claiming an address: a few milliseconds of duplicate-address probing) run
//! inline; long ones (join period, boot, hooks, retry timers) run as tasks that report back
//! through a channel, so the loop keeps serving the status socket and signals meanwhile.
//!
//! - `start`: wiring, from the configuration to a running daemon.
//! - `heartbeat`: the heartbeat thread, where the responders and the monitor run, away from
//!   everything slow.
//! - `monitor`: the monitor's probing state and its tick (on the heartbeat thread).
//! - `hold`: claiming, announcing and releasing the floating addresses.
//! - `guard`: the self-check before a fence.
//! - `lease`, `revoke`: the primary's lease (its keeper, the grants) and, with
//!   `fence = "lease"`, the revoke request to the witness.
//! - `peer`: notices to the peer (`leaving`, `taken over`), asking it, watching for claims.
//! - `copy`: the data copy's tasks: the monitor's pulls, `stale` (the `sync_stale` watch)
//!   and `serve` (the primary's server).
//! - `status`: what the loop publishes to the responders, the status socket and metrics.
mod admin;
mod copy;
mod guard;
mod health;
mod heartbeat;
mod hold;
mod lease;
mod monitor;
mod peer;
mod reload;
mod revoke;
mod serve;
mod stale;
mod start;
mod status;
mod ticker;

use std::{collections::VecDeque, sync::Arc};

use tokio::{sync::mpsc, task::JoinHandle, time::Instant};

use crate::{
    address::AddressHandle,
    config::Config,
    control::{self, BootStatus, Metrics, SharedStatus},
    detector::LivenessEvent,
    event::{Emitter, Event},
    fastpath::FastPathError,
    fence::Fencer,
    hooks::HookRun,
    role::{Action, Addr, BootAction, Hook, Input, Machine, Timer},
    signal::{
        join::JoinJob,
        probe::ProbeError,
        responder::{Identity, ResponderCounters},
    },
    state::EpochStore,
    sys::{self, monotonic_ns},
};

use copy::Copier;
use heartbeat::{Command, HeartbeatThread};
use hold::Held;
pub use monitor::MonitorStatus;
use monitor::{Monitor, Report};

/// A failure that stops the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A file or program the configuration names is missing or unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Not root, or a system call failed.
    #[error(transparent)]
    Sys(#[from] sys::SysError),
    /// Netlink or packet socket.
    #[error(transparent)]
    Address(#[from] crate::address::AddressError),
    /// Status socket or metrics listener.
    #[error(transparent)]
    Control(#[from] control::ControlError),
    /// The epoch file.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The heartbeat / join responder.
    #[error(transparent)]
    Responder(#[from] crate::signal::responder::ResponderError),
    /// The XDP fast path.
    #[error(transparent)]
    FastPath(#[from] FastPathError),
    /// The prober.
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// The health checks could not start.
    #[error("{0}")]
    Health(String),
    /// `hooks.event_fifo`.
    #[error(transparent)]
    EventFifo(#[from] crate::event_fifo::FifoError),
    /// The fence levels' settings (a password source, a URL, an agent).
    #[error(transparent)]
    Fence(#[from] crate::fence::FenceError),
    /// The sync key, store or listener.
    #[error(transparent)]
    Sync(#[from] crate::sync::SyncError),
    /// A signal handler could not be installed.
    #[error("cannot handle operator signals: {0}")]
    Signal(#[source] std::io::Error),
    /// The heartbeat thread could not start, or its monitor failed.
    #[error("heartbeat thread: {0}")]
    Heartbeat(String),
    /// The lease (`boot.lease`) could not be set up.
    #[error("lease: {0}")]
    Lease(String),
}

/// Background tasks whose handles are kept so that a newer request replaces an older one.
#[derive(Default)]
struct Tasks {
    join: Option<JoinHandle<()>>,
    retry: Option<JoinHandle<()>>,
    /// Per floating address (P, M): its announcement burst, then its refresh and check.
    announce: [Option<JoinHandle<()>>; 2],
    boot: Option<JoinHandle<()>>,
    /// The machine's timers (`Action::Schedule`), one per timer.
    timers: std::collections::HashMap<Timer, JoinHandle<()>>,
}

impl Tasks {
    fn replace(slot: &mut Option<JoinHandle<()>>, new: Option<JoinHandle<()>>) {
        if let Some(old) = std::mem::replace(slot, new) {
            old.abort();
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for (_, t) in self.timers.drain() {
            t.abort();
        }
        let [p, m] = &mut self.announce;
        for t in [&mut self.join, &mut self.retry, p, m, &mut self.boot] {
            Tasks::replace(t, None);
        }
    }
}

/// Removes the control socket file on drop.
struct SocketFile(std::path::PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The running daemon.
pub struct Daemon {
    cfg: Config,
    machine: Machine,
    identity: Arc<Identity>,
    addrs: AddressHandle,
    epochs: EpochStore,
    events: Emitter,
    status: SharedStatus,
    metrics: Arc<Metrics>,
    fencer: Fencer,
    hooks: mpsc::UnboundedSender<HookRun>,
    /// The metrics endpoint's task (replaced when a reload moves it).
    metrics_task: Option<JoinHandle<()>>,
    tx: mpsc::UnboundedSender<Input>,
    heartbeat: HeartbeatThread,
    /// A monitor is probing on the heartbeat thread.
    monitoring: bool,
    /// The last stopped monitor being detached (a new one waits for it: one XDP program per
    /// interface).
    retiring: Option<JoinHandle<()>>,
    /// Holds the retiring monitor's detach back while a takeover claims P (dropping it lets
    /// the detach go on). Detaching XDP takes the interface's RTNL lock and an RCU grace
    /// period: tens of milliseconds that the claim's netlink calls would otherwise wait for.
    retire_hold: Option<tokio::sync::oneshot::Sender<()>>,
    /// The self-check's witnesses (configured, else the default gateway).
    witnesses: Vec<std::net::IpAddr>,
    /// `witness.addresses` changed by a reload and not yet resolved into `witnesses`.
    witnesses_stale: bool,
    monitor_status: Arc<MonitorStatus>,
    grace: Option<Instant>,
    held: Held,
    primary_counters: Arc<ResponderCounters>,
    tasks: Tasks,
    started: Instant,
    _socket_file: SocketFile,
    copier: Option<Copier>,
    /// `boot.lease`: the key, the keeper's status, the gate between install and promotion.
    lease: Option<lease::LeaseSetup>,
    /// The operator's settings (`state_dir/admin.json`).
    admin: crate::state::AdminStore,
    /// The service health checks (`[[check]]`).
    checks: health::Checks,
    /// systemd's notifications (`Type=notify`).
    notifier: crate::notify::Notifier,
}

/// Runs the daemon until `shutdown` resolves (then releases what it holds and returns).
pub async fn run(
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DaemonError> {
    sys::require_caps("failover run", sys::CAPS_DAEMON)?;
    // The same checks as `check-config`, before anything is touched.
    cfg.preflight()?;
    sys::raise_memlock();
    // Before anything starts: no signal an operator commonly sends may kill the daemon with
    // P on the interface. TERM, INT and QUIT stop it cleanly (as `shutdown` does), HUP
    // reloads, USR1 and USR2 are logged and ignored.
    use tokio::signal::unix::{signal, SignalKind};
    let sig = |k: SignalKind| signal(k).map_err(DaemonError::Signal);
    let (mut term, mut int, mut quit) = (
        sig(SignalKind::terminate())?,
        sig(SignalKind::interrupt())?,
        sig(SignalKind::quit())?,
    );
    let (mut hup, mut usr1, mut usr2) = (
        sig(SignalKind::hangup())?,
        sig(SignalKind::user_defined1())?,
        sig(SignalKind::user_defined2())?,
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (report_tx, mut reports) = mpsc::unbounded_channel();
    let (mut d, rt_error) = Daemon::start(cfg, tx, report_tx).await?;
    if let Some(e) = rt_error {
        d.emit(
            Event::DaemonError,
            &format!(
                "SCHED_FIFO priority {} refused ({e}); running with normal scheduling, so a busy \
                 host may delay heartbeat answers",
                d.cfg.realtime_priority
            ),
        );
    }
    tokio::pin!(shutdown);
    let mut carrier = d.addrs.watch_carrier()?;
    let mut claims = d.addrs.watch_claims(
        [Addr::Primary, Addr::Monitor]
            .into_iter()
            .flat_map(|a| d.cidrs(a))
            .map(|c| c.addr)
            .collect(),
    )?;
    let result = loop {
        let wake = d.next_wake();
        let step = tokio::select! {
            biased;
            _ = &mut shutdown => break Ok(()),
            _ = term.recv() => break Ok(()),
            _ = int.recv() => break Ok(()),
            _ = quit.recv() => break Ok(()),
            Some(input) = rx.recv() => d.feed(input).await,
            Some(report) = reports.recv() => d.on_report(report).await,
            _ = heartbeat::sleep_until_opt(wake) => d.on_timer().await,
            Some(up) = carrier.recv() => {
                d.on_carrier(up).await;
                Ok(())
            }
            Some((ip, mac)) = claims.recv() => match d.claim_seen(ip, mac) {
                Some(input) => d.feed(input).await,
                None => Ok(()),
            },
            _ = hup.recv() => {
                d.reload().await;
                Ok(())
            }
            _ = usr1.recv() => {
                tracing::info!("SIGUSR1 ignored");
                Ok(())
            }
            _ = usr2.recv() => {
                tracing::info!("SIGUSR2 ignored");
                Ok(())
            }
        };
        if let Err(e) = step {
            break Err(e);
        }
    };
    if let Err(e) = &result {
        d.emit(Event::DaemonError, &crate::error_chain(e));
    }
    d.stop().await;
    result
}

impl Daemon {
    fn emit(&self, event: Event, detail: &str) {
        self.events.emit(
            event,
            self.machine.role().name(),
            self.machine.epoch(),
            detail,
        );
    }

    fn next_wake(&self) -> Option<Instant> {
        self.grace
    }

    /// What the heartbeat thread reported.
    async fn on_report(&mut self, report: Report) -> Result<(), DaemonError> {
        match report {
            Report::Liveness(event) => {
                if event == LivenessEvent::Armed {
                    // P answered: startup_grace no longer applies.
                    self.grace = None;
                    tracing::info!("the primary answers: failure detection armed");
                }
                self.feed(Input::Liveness(event)).await?;
            }
            Report::EpochSeen(e) => {
                self.machine.observe_epoch(e);
                self.publish();
            }
            Report::SyncDue => {
                if let Some(c) = self.copier.as_mut() {
                    c.pull(self.machine.epoch());
                }
            }
            Report::Retired(m) => {
                // Detaching XDP and unpinning take milliseconds: not on any hot path.
                tokio::task::spawn_blocking(move || drop(m));
            }
            Report::SelfCheck { answered } => {
                let input = self.witnesses_answered(answered);
                self.feed(input).await?;
            }
            Report::PeerLeaving { role, epoch } => {
                self.feed(Input::PeerLeaving { role, epoch }).await?;
            }
            Report::TakenOver { epoch } => self.feed(Input::TakenOver { epoch }).await?,
            Report::NewerMonitor { epoch } => self.feed(Input::NewerMonitor { epoch }).await?,
            Report::PeerYielded => self.feed(Input::PeerYielded).await?,
            Report::Lease(news) => self.lease_news(news).await?,
            Report::Control((req, reply)) => {
                let r = self.request(req).await?;
                let _ = reply.send(r);
            }
            Report::Check { index, result } => self.check_result(index, result).await?,
            Report::Failed(why) => return Err(DaemonError::Heartbeat(why)),
        }
        Ok(())
    }

    /// Feeds one input and everything it leads to, executing actions in order.
    async fn feed(&mut self, input: Input) -> Result<(), DaemonError> {
        let mut queue = VecDeque::from([input]);
        while let Some(i) = queue.pop_front() {
            let actions = self.machine.step(i);
            self.publish();
            for a in actions {
                if let Some(next) = self.execute(a).await? {
                    queue.push_back(next);
                }
            }
        }
        self.publish();
        self.settle_admin();
        Ok(())
    }

    async fn execute(&mut self, action: Action) -> Result<Option<Input>, DaemonError> {
        match action {
            Action::Emit(n) => {
                if n.event == Event::FenceFailed {
                    self.metrics
                        .fence_failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                self.emit(n.event, &n.detail);
            }
            Action::SendJoin { doubled } => self.send_join(doubled),
            Action::Claim(a) => {
                let input = self.claim(a).await;
                if a == Addr::Primary {
                    // Off the claim's path: the monitor's XDP program comes off, then the
                    // lease gate goes on (both in the background).
                    self.retire_hold = None;
                    if input == (Input::Claimed { addr: a, ok: true }) {
                        self.install_gate();
                    }
                }
                return Ok(Some(input));
            }
            Action::Release(a) => {
                self.release(a).await;
                if a == Addr::Primary {
                    self.stop_lease().await;
                }
            }
            Action::StartMonitoring => {
                self.start_monitoring().await?;
                if let Some(c) = self.copier.as_mut() {
                    c.watch();
                }
            }
            Action::StopMonitoring => {
                self.stop_monitor();
                self.grace = None;
                if let Some(c) = self.copier.as_mut() {
                    c.stop();
                }
            }
            Action::Boot(action) => self.boot(action),
            Action::Hook(hook) => {
                if hook == Hook::OnPrimary {
                    // The promotion is done (its epoch stored): keep the lease at that epoch.
                    self.start_keeper().await;
                }
                let _ = self.hooks.send(HookRun {
                    hook,
                    role: self.machine.role().name(),
                    epoch: self.machine.epoch(),
                    done: None,
                });
            }
            Action::BumpEpoch => {
                if let Err(e) = self.epochs.store(self.machine.epoch()) {
                    self.emit(Event::DaemonError, &crate::error_chain(&e));
                }
                // Every promotion bumps the epoch: from now on the data directory is this
                // host's own data, which a later copy keeps aside rather than replacing.
                if let Some(c) = &self.copier {
                    if let Err(e) = c.mark_served(self.machine.epoch()) {
                        self.emit(Event::DaemonError, &crate::error_chain(&e));
                    }
                }
            }
            Action::SelfCheck => return Ok(self.self_check().await),
            Action::CancelBoot => {
                Tasks::replace(&mut self.tasks.boot, None);
                if let Some(b) = self
                    .status
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .last_boot
                    .as_mut()
                {
                    b.result = "cancelled".into();
                }
            }
            Action::Revoke => self.revoke(),
            Action::SendLeaving(role) => self.send_leaving(role).await,
            Action::Rejudge => {
                self.heartbeat.send(Command::Rejudge);
                if !self.machine.armed() && self.monitoring {
                    self.grace = Some(Instant::now() + self.cfg.startup_grace.0);
                }
            }
            Action::Retry(delay) => {
                let tx = self.tx.clone();
                let t = tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send(Input::RetryDue);
                });
                Tasks::replace(&mut self.tasks.retry, Some(t));
            }
            // Due at once: no timer task (its first tick would be a millisecond away).
            Action::Schedule(timer, delay) if delay.is_zero() => {
                if let Some(old) = self.tasks.timers.remove(&timer) {
                    old.abort();
                }
                return Ok(Some(Input::Due(timer)));
            }
            Action::Schedule(timer, delay) => {
                let tx = self.tx.clone();
                let t = tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send(Input::Due(timer));
                });
                if let Some(old) = self.tasks.timers.insert(timer, t) {
                    old.abort();
                }
            }
            Action::Defend(a) => {
                if self.held.addrs().contains(&a) {
                    for c in self.cidrs(a) {
                        if let Err(e) = self
                            .addrs
                            .announce(c.addr, 1, std::time::Duration::ZERO)
                            .await
                        {
                            self.emit(Event::DaemonError, &crate::error_chain(&e));
                        }
                    }
                }
            }
            Action::AskPeer => self.ask_peer(),
            Action::SendTakenOver => self.send_taken_over(),
            Action::SendYield => self.send_yield(),
        }
        Ok(None)
    }

    /// One join period in the background; its result comes back as `JoinDone`.
    fn send_join(&mut self, doubled: bool) {
        let window = self.cfg.join_timeout.0 * if doubled { 2 } else { 1 };
        let job = JoinJob {
            interface: self.cfg.node.interface.clone(),
            local: self.cfg.node.address.addr,
            port: self.cfg.heartbeat.port,
            monitor: self.cfg.addresses.monitor.addr,
            primary: self.cfg.addresses.primary.first().addr,
            peer: self.cfg.node.peer,
            node: self.cfg.node.id,
            data: self
                .identity
                .data
                .load(std::sync::atomic::Ordering::Relaxed),
            window,
        };
        let tx = self.tx.clone();
        let t = tokio::spawn(async move {
            let a = job.run().await;
            let _ = tx.send(Input::JoinDone {
                monitor: a.monitor,
                primary: a.primary,
                peer: a.peer,
            });
        });
        Tasks::replace(&mut self.tasks.join, Some(t));
    }

    /// Opens a monitor (sockets, XDP) and hands it to the heartbeat thread; arms
    /// `startup_grace`. A monitor still being detached is waited for first.
    async fn start_monitoring(&mut self) -> Result<(), DaemonError> {
        self.retire_hold = None;
        if let Some(t) = self.retiring.take() {
            let _ = t.await;
        }
        if std::mem::take(&mut self.witnesses_stale) {
            if let Err(e) = self.resolve_witnesses().await {
                self.emit(Event::DaemonError, &crate::error_chain(&e));
            }
        }
        // A reopened monitor (new witnesses) goes on judging a primary already seen: its
        // misses count from its first probe, as the old one's would have.
        let m = Monitor::open(&self.cfg, &self.witnesses, self.machine.armed())?;
        // Loading the XDP object parsed its ELF and BTF on the heap: give what was freed back,
        // before the heartbeat thread starts ticking (the trim locks the heap's arenas).
        crate::sys::trim_heap();
        self.heartbeat.send(Command::Monitor(Box::new(m)));
        self.monitoring = true;
        self.grace = (!self.machine.armed()).then(|| Instant::now() + self.cfg.startup_grace.0);
        Ok(())
    }

    /// Stops probing. The monitor comes back from the heartbeat thread and is dropped
    /// (XDP detached, pins removed: milliseconds) in the background, off the way to the fence.
    fn stop_monitor(&mut self) {
        if !std::mem::take(&mut self.monitoring) {
            return;
        }
        let (back, returned) = tokio::sync::oneshot::channel();
        self.heartbeat.send(Command::StopMonitor(back));
        let (hold, held) = tokio::sync::oneshot::channel::<()>();
        self.retiring = Some(tokio::spawn(async move {
            let m = returned.await;
            let _ = held.await;
            if let Ok(m) = m {
                let _ = tokio::task::spawn_blocking(move || drop(m)).await;
            }
        }));
        // A takeover detaches after its claim of P; everything else at once.
        if self.machine.role() == crate::role::Role::TakingOver {
            self.retire_hold = Some(hold);
        }
    }

    /// Runs a boot action on the peer in the background; its result comes back as `BootDone`.
    fn boot(&mut self, action: BootAction) {
        let at_ns = monotonic_ns();
        {
            let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
            st.last_boot = Some(BootStatus {
                action: action.name().into(),
                result: "running".into(),
                age_ms: 0,
                at_ns,
            });
        }
        let fencer = self.fencer.clone();
        let tx = self.tx.clone();
        let status = self.status.clone();
        let events = self.events.clone();
        let (role, epoch) = (self.machine.role().name(), self.machine.epoch());
        let accepted_tx = self.tx.clone();
        let ask = (action != BootAction::On).then(|| self.standby_question());
        let t = tokio::spawn(async move {
            // A peer in standby is never powered off or reset: asked right before the power
            // action (a notice of its standby may have been lost).
            if let Some(ask) = ask {
                if let Some(epoch) = ask.await {
                    let _ = tx.send(Input::PeerInStandby { epoch });
                    return;
                }
            }
            let accepted = move || {
                let _ = accepted_tx.send(Input::BootAccepted);
            };
            let level_events = events.clone();
            let failed = move |level: &str, e: &crate::fence::FenceError| {
                level_events.emit(
                    Event::FenceLevelFailed,
                    role,
                    epoch,
                    &format!(
                        "{} {level} failed ({}); trying the next level",
                        action.name(),
                        crate::error_chain(e)
                    ),
                );
            };
            let res = fencer.run(action, &accepted, &failed).await;
            let ms = (monotonic_ns() - at_ns) as f64 / 1e6;
            let result = match &res {
                Ok(()) => "done".to_string(),
                Err(e) => format!("failed: {}", crate::error_chain(e)),
            };
            events.emit(
                Event::BootResult,
                role,
                epoch,
                &format!("{} {result} after {ms:.1}ms", action.name()),
            );
            if let Some(b) = status
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .last_boot
                .as_mut()
                .filter(|b| b.at_ns == at_ns)
            {
                b.result = result;
            }
            let _ = tx.send(Input::BootDone {
                action,
                ok: res.is_ok(),
            });
        });
        // Power-on runs alongside; only a fence or reboot replaces an earlier boot task.
        if action == BootAction::On {
            drop(t);
        } else {
            Tasks::replace(&mut self.tasks.boot, Some(t));
        }
    }

    async fn on_timer(&mut self) -> Result<(), DaemonError> {
        let now = Instant::now();
        if self.grace.is_some_and(|g| g <= now) {
            self.grace = None;
            self.feed(Input::GraceExpired).await?;
        }
        Ok(())
    }

    /// Runs `on_stop` after the hooks still queued, and waits for it: at most twice
    /// `hooks.timeout` in all, so a queue of slow hooks cannot hold the stop for ever.
    async fn run_on_stop(&mut self) {
        if self.cfg.hooks.on_stop.is_none() {
            return;
        }
        let (done, finished) = tokio::sync::oneshot::channel();
        let run = HookRun {
            hook: Hook::OnStop,
            role: self.machine.role().name(),
            epoch: self.machine.epoch(),
            done: Some(done),
        };
        if self.hooks.send(run).is_ok() {
            let limit = self.cfg.hooks.timeout.0 * 2;
            if tokio::time::timeout(limit, finished).await.is_err() {
                self.emit(
                    Event::HookFailed,
                    &format!("on_stop: the hooks queued before it did not finish within {limit:?}; stopping without it"),
                );
            }
        }
    }

    /// Clean shutdown: release what is held, stop probing (the control socket goes with the
    /// daemon).
    async fn stop(&mut self) {
        self.notifier.stopping();
        let _ = self.feed(Input::Shutdown).await;
        // Belt and braces: whatever the role, nothing stays on the interface.
        for a in self.held.addrs() {
            self.release(a).await;
        }
        self.stop_lease().await;
        self.stop_monitor();
        self.retire_hold = None;
        if let Some(t) = self.retiring.take() {
            let _ = t.await;
        }
        self.run_on_stop().await;
        self.emit(Event::DaemonStopped, "released all floating addresses");
    }
}
