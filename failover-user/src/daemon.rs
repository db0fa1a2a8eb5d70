//! The runtime of `failover run`: the imperative shell around the pure role machine.
//!
//! One loop owns the machine. It feeds inputs (timers, probe verdicts, join results, boot
//! results, signals) into [`Machine::step`] and executes the returned actions in order.
//! Short actions (claiming an address: a few milliseconds of duplicate-address probing) run
//! inline; long ones (join period, boot, hooks, retry timers) run as tasks that report back
//! through a channel, so the loop keeps serving the status socket and signals meanwhile.
use std::{
    collections::VecDeque,
    net::{IpAddr, SocketAddr},
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::{net::UdpSocket, sync::mpsc, task::JoinHandle, time::Instant};

use crate::{
    address::{mac_string, Addresses, Claim, DadSettings},
    boot::Booter,
    config::{BootMethod, Cidr, Config, HeartbeatKind},
    control::{self, BootStatus, Events, Metrics, SharedStatus, Status},
    detector::{Deadlines, Liveness, LivenessEvent, Outcome, ProbeBook, Verdict},
    fastpath::{FastPath, FastPathError},
    hooks::{self, HookPrograms, HookRun},
    probe::{ProbeError, Prober, Signal},
    responder::{Identity, Responder, ResponderCounters},
    role::{Action, Addr, Answer, BootAction, Input, Machine, Role, Settings},
    state::EpochStore,
    sys::{self, monotonic_ns},
    wire::{Kind, Message},
};

/// A failure that stops the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
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
    Responder(#[from] crate::responder::ResponderError),
    /// The XDP fast path.
    #[error(transparent)]
    FastPath(#[from] FastPathError),
    /// The prober.
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// Redfish settings (the password source, the URL).
    #[error(transparent)]
    Redfish(#[from] crate::redfish::RedfishError),
    /// The sync key, store or listener.
    #[error(transparent)]
    Sync(#[from] crate::sync::SyncError),
}

/// The data copy (claims 14, 21): the monitor pulls every `every` heartbeats.
struct SyncRuntime {
    cfg: crate::config::Sync,
    store: Arc<crate::sync::Store>,
    key: crate::sync::Key,
    task: Option<JoinHandle<()>>,
    since: u32,
}

/// The monitor's probing state; exists only while this host signals P.
struct Monitor {
    prober: Prober,
    fp: FastPath,
    /// Judges each probe at its deadline: failure detection.
    detect: ProbeBook,
    /// Judges each probe with a late window: the probe_late / probe_lost events and metrics.
    report: ProbeBook,
    liveness: Liveness,
    last_in_time_ns: Option<u64>,
    next_tick: Instant,
    /// Asks P for its epoch once a second (a join probe), so a takeover goes above it.
    epoch_probe: Option<EpochProbe>,
}

/// The monitor's periodic join probe to P: learns the primary's epoch whatever the heartbeat
/// kind (XDP consumes the heartbeat replies that carry it too).
struct EpochProbe {
    sock: std::net::UdpSocket,
    to: SocketAddr,
    token: u64,
    node: u32,
    next: Instant,
}

const EPOCH_PROBE_EVERY: Duration = Duration::from_secs(1);

impl EpochProbe {
    /// Sends when due; returns the highest epoch answered since the last call.
    fn poll(&mut self, now: Instant) -> Option<u64> {
        if now >= self.next {
            self.next = now + EPOCH_PROBE_EVERY;
            let _ = self
                .sock
                .send_to(&join_message(self.token, 0, self.node), self.to);
        }
        let mut best = None;
        let mut buf = [0u8; 256];
        while let Ok((n, from)) = self.sock.recv_from(&mut buf) {
            if from.ip() != self.to.ip() {
                continue;
            }
            if let Ok(r) = Message::decode(&buf[..n]) {
                if r.kind == Kind::JoinReply && r.token == self.token {
                    best = best.max(Some(r.epoch));
                }
            }
        }
        best
    }
}

fn join_message(token: u64, seq: u64, node: u32) -> [u8; failover_common::wire::LEN] {
    Message {
        kind: Kind::Join,
        role: Role::Joining.code(),
        flags: 0,
        token,
        seq,
        epoch: 0,
        node,
    }
    .encode()
}

/// A UDP socket for join probes, bound to the node address on the interface.
fn join_socket(interface: &str, local: IpAddr) -> std::io::Result<std::net::UdpSocket> {
    let domain = if local.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    s.bind_device(Some(interface.as_bytes()))?;
    s.bind(&SocketAddr::new(local, 0).into())?;
    Ok(s.into())
}

/// Background tasks whose handles are kept so that a newer request replaces an older one.
#[derive(Default)]
struct Tasks {
    join: Option<JoinHandle<()>>,
    retry: Option<JoinHandle<()>>,
    refresh: Option<JoinHandle<()>>,
    boot: Option<JoinHandle<()>>,
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
        for t in [
            &mut self.join,
            &mut self.retry,
            &mut self.refresh,
            &mut self.boot,
        ] {
            Tasks::replace(t, None);
        }
    }
}

/// The running daemon.
pub struct Daemon {
    cfg: Config,
    machine: Machine,
    identity: Arc<Identity>,
    addrs: Addresses,
    epochs: EpochStore,
    events: Events,
    status: SharedStatus,
    metrics: Arc<Metrics>,
    booter: Booter,
    hooks: mpsc::UnboundedSender<HookRun>,
    tx: mpsc::UnboundedSender<Input>,
    monitor: Option<Monitor>,
    grace: Option<Instant>,
    held_p: bool,
    held_m: bool,
    fenced: bool,
    first_join: bool,
    primary_counters: Arc<ResponderCounters>,
    tasks: Tasks,
    started: Instant,
    _socket_file: SocketFile,
    sync: Option<SyncRuntime>,
}

/// Removes the control socket file on drop.
struct SocketFile(std::path::PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn signal_of(cfg: &Config) -> Signal {
    match cfg.heartbeat.kind {
        HeartbeatKind::Icmp => Signal::Icmp,
        HeartbeatKind::Udp => Signal::Udp {
            port: cfg.heartbeat.port,
        },
    }
}

/// Runs the daemon until `shutdown` resolves (then releases what it holds and returns).
pub async fn run(
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DaemonError> {
    sys::require_root("failover run")?;
    sys::raise_memlock();
    // Before any thread or task exists, so all of the daemon's threads inherit it.
    let rt_result = (cfg.realtime_priority > 0).then(|| sys::set_realtime(cfg.realtime_priority));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut d = Daemon::start(cfg, tx).await?;
    if let Some(Err(e)) = rt_result {
        d.emit(
            "daemon_error",
            &format!(
                "SCHED_FIFO priority {} refused ({e}); running with normal scheduling, so a busy \
                 host may delay heartbeat answers",
                d.cfg.realtime_priority
            ),
        );
    }
    tokio::pin!(shutdown);
    let result = loop {
        let wake = d.next_wake();
        let step = tokio::select! {
            biased;
            _ = &mut shutdown => break Ok(()),
            Some(input) = rx.recv() => d.feed(input).await,
            _ = sleep_until_opt(wake) => d.on_timer().await,
        };
        if let Err(e) = step {
            break Err(e);
        }
    };
    if let Err(e) = &result {
        d.emit("daemon_error", &crate::error_chain(e));
    }
    d.stop().await;
    result
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Daemon {
    async fn start(cfg: Config, tx: mpsc::UnboundedSender<Input>) -> Result<Daemon, DaemonError> {
        let events = Events::new(&cfg.node.name, &cfg.node.peer_name);
        let epochs = EpochStore::new(&cfg.paths.state_dir);
        let epoch = epochs.load()?;
        let metrics = Arc::new(Metrics::default());
        let status: SharedStatus = Arc::new(std::sync::Mutex::new(Status {
            node: cfg.node.name.clone(),
            ..Default::default()
        }));

        let addrs = Addresses::open(&cfg.node.interface).await?;
        // The control socket before anything is changed: it refuses a second daemon with the
        // same socket. Removed when the daemon ends, also when the start fails below.
        let control = control::bind_control(&cfg.control.socket).await?;
        let socket_file = SocketFile(cfg.control.socket.clone());
        tokio::spawn(control::serve_control(control, status.clone()));
        if let Some(addr) = cfg.control.metrics {
            let l = control::bind_metrics(addr).await?;
            tokio::spawn(control::serve_metrics(
                l,
                metrics.clone(),
                cfg.node.name.clone(),
            ));
        }

        let booter = match cfg.boot.method {
            BootMethod::Command => Booter::Command {
                command: cfg.boot.command.clone().unwrap_or_default(),
                env: vec![
                    ("FAILOVER_PEER".into(), cfg.node.peer_name.clone()),
                    ("FAILOVER_PEER_ADDRESS".into(), cfg.node.peer.to_string()),
                    ("FAILOVER_NODE".into(), cfg.node.name.clone()),
                ],
                timeout: cfg.boot.timeout.0,
            },
            BootMethod::Redfish => {
                Booter::Redfish(Box::new(crate::boot::RedfishBoot::from_config(&cfg.boot)?))
            }
            BootMethod::None => Booter::None,
        };
        let identity = Arc::new(Identity {
            node: cfg.node.id,
            ..Default::default()
        });
        identity.epoch.store(epoch, Ordering::Relaxed);

        // Heartbeats and joins to P are answered by whoever holds P, joins to M by whoever
        // holds M. The sockets are bound with IP_FREEBIND, so they exist before the address
        // does and only see traffic while this host holds it; replies leave from that address.
        let port = cfg.heartbeat.port;
        let on_p = Responder::bind(
            cfg.addresses.primary.addr,
            port,
            identity.clone(),
            &[Kind::Heartbeat, Kind::Join],
        )?;
        let primary_counters = on_p.counters.clone();
        let on_m = Responder::bind(
            cfg.addresses.monitor.addr,
            port,
            identity.clone(),
            &[Kind::Join],
        )?;
        for r in [on_p, on_m] {
            tokio::spawn(async move {
                if let Err(e) = r.serve().await {
                    tracing::error!("{}", crate::error_chain(&e));
                }
            });
        }

        let hooks = hooks::spawn_runner(
            HookPrograms {
                on_primary: cfg.hooks.on_primary.clone(),
                on_monitor: cfg.hooks.on_monitor.clone(),
                on_fault: cfg.hooks.on_fault.clone(),
                timeout: cfg.hooks.timeout.0,
                peer: cfg.node.peer_name.clone(),
                node: cfg.node.name.clone(),
            },
            events.clone(),
            metrics.clone(),
        );
        let settings = Settings {
            takeover: cfg.takeover,
            no_fence: cfg.boot.method == BootMethod::None,
            allow_unfenced: cfg.boot.allow_unfenced_takeover,
            retry: cfg.boot.retry.0,
            retry_max: cfg.boot.retry_max.0,
        };
        let mut d = Daemon {
            machine: Machine::new(settings, epoch),
            identity,
            addrs,
            epochs,
            events,
            status,
            metrics,
            booter,
            hooks,
            tx,
            monitor: None,
            grace: None,
            held_p: false,
            held_m: false,
            fenced: false,
            first_join: true,
            primary_counters,
            tasks: Tasks::default(),
            started: Instant::now(),
            _socket_file: socket_file,
            sync: None,
            cfg,
        };
        d.start_sync()?;
        if d.cfg.boot.allow_unfenced_takeover {
            d.emit(
                "unfenced_takeover",
                "configured: boot.allow_unfenced_takeover = true; this host may take the primary \
                 address without a confirmed fence",
            );
        }
        if d.cfg.boot.method == BootMethod::Redfish && d.cfg.boot.insecure {
            d.emit(
                "tls_unverified",
                "configured: boot.insecure = true; the BMC's TLS certificate is not verified",
            );
        }
        d.clear_leftovers().await?;
        d.emit(
            "daemon_started",
            &format!(
                "interface {} ({}), P {}, M {}, {:?} heartbeat every {:?}, deadline {:?}, {} misses (detection about {:?}), boot {:?}, takeover {}",
                d.cfg.node.interface,
                mac_string(&d.addrs.mac()),
                d.cfg.addresses.primary,
                d.cfg.addresses.monitor,
                d.cfg.heartbeat.kind,
                d.cfg.heartbeat.interval.0,
                d.cfg.heartbeat.timeout.0,
                d.cfg.heartbeat.misses,
                d.cfg.detection_time(),
                d.cfg.boot.method,
                d.cfg.takeover,
            ),
        );
        d.feed(Input::Start).await?;
        Ok(d)
    }

    /// A daemon starts in `Joining`, holding nothing (rule 3). An address found on the
    /// interface was left by a previous run that did not shut down cleanly: remove it before
    /// joining, so that this host never answers on an address it has not claimed in this run.
    async fn clear_leftovers(&mut self) -> Result<(), DaemonError> {
        for (name, cidr) in [
            ("primary", self.cfg.addresses.primary),
            ("monitor", self.cfg.addresses.monitor),
        ] {
            if self.addrs.release(cidr.addr).await? {
                self.emit(
                    "address_released",
                    &format!(
                        "{name} address {cidr} was left on {} by a previous run; removed before joining",
                        self.cfg.node.interface
                    ),
                );
            }
        }
        Ok(())
    }

    /// Loads the sync key, recovers the store (an interrupted copy leaves the previous one)
    /// and starts the primary-side server. It answers only while this host is primary.
    fn start_sync(&mut self) -> Result<(), DaemonError> {
        let Some(cfg) = self.cfg.sync.clone() else {
            return Ok(());
        };
        let key = crate::sync::Key::load(&cfg.key_file)?;
        let store = Arc::new(crate::sync::Store::open(&cfg.dir)?);
        let current = store.current()?;
        {
            let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
            st.sync = Some(crate::control::SyncStatus {
                generation: current.as_ref().map_or(0, |g| g.number),
                completed_unix_ms: current.as_ref().map_or(0, |g| g.completed_ms),
                ..Default::default()
            });
        }
        if let Some(g) = &current {
            self.metrics
                .sync_completed_unix_ms
                .store(g.completed_ms, Ordering::Relaxed);
        }
        let addr = SocketAddr::new(self.cfg.node.address.addr, cfg.port);
        let listener = {
            let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)
                .and_then(|s| {
                    s.set_reuse_address(true)?;
                    s.set_nonblocking(true)?;
                    s.bind(&addr.into())?;
                    s.listen(8)?;
                    Ok(s)
                })
                .map_err(|source| crate::sync::SyncError::Io {
                    what: "listen on",
                    path: addr.to_string().into(),
                    source,
                })?;
            tokio::net::TcpListener::from_std(s.into()).map_err(|source| {
                crate::sync::SyncError::Io {
                    what: "listen on",
                    path: addr.to_string().into(),
                    source,
                }
            })?
        };
        let identity = self.identity.clone();
        let events = self.events.clone();
        let (key2, dir) = (key.clone(), cfg.dir.clone());
        let snapshot = cfg.snapshot_command.clone();
        let snap_limit = cfg.snapshot_timeout.0;
        let rate = u64::from(cfg.bandwidth_mbit) * 1_000_000 / 8;
        tokio::spawn(async move {
            loop {
                let Ok((conn, from)) = listener.accept().await else {
                    continue;
                };
                let primary = identity.role.load(Ordering::Relaxed) == Role::Primary.code();
                if !primary {
                    continue; // only the primary's data is offered
                }
                let epoch = identity.epoch.load(Ordering::Relaxed);
                let mut ch = match crate::sync::Channel::accept(conn, &key2, rate).await {
                    Ok(ch) => ch,
                    Err(e) => {
                        events.emit("sync_failed", "primary", epoch, &crate::error_chain(&e));
                        continue;
                    }
                };
                let snap = snapshot.as_deref().map(|c| (c, snap_limit));
                if let Err(e) = crate::sync::serve_one(&mut ch, &dir, snap).await {
                    events.emit(
                        "sync_failed",
                        "primary",
                        epoch,
                        &format!("serving {from}: {}", crate::error_chain(&e)),
                    );
                }
            }
        });
        self.sync = Some(SyncRuntime {
            cfg,
            store,
            key,
            task: None,
            since: 0,
        });
        Ok(())
    }

    /// Counts a heartbeat; every `every` heartbeats (once P was seen) pulls one copy.
    fn maybe_sync(&mut self, armed: bool) {
        let Some(sy) = self.sync.as_mut() else { return };
        sy.since += 1;
        if sy.since < sy.cfg.every || !armed || sy.task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        sy.since = 0;
        let to = SocketAddr::new(self.cfg.node.peer, sy.cfg.port);
        let (store, key, limit) = (sy.store.clone(), sy.key.clone(), sy.cfg.connect_timeout.0);
        let (events, status, metrics) = (
            self.events.clone(),
            self.status.clone(),
            self.metrics.clone(),
        );
        let epoch = self.machine.epoch();
        sy.task = Some(tokio::spawn(async move {
            let started = Instant::now();
            events.emit(
                "sync_started",
                "monitor",
                epoch,
                &format!("pulling from {to}"),
            );
            let r = async {
                let mut ch = crate::sync::Channel::connect(to, &key, limit).await?;
                crate::sync::pull(&mut ch, &store).await
            }
            .await;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            let mut st = status.lock().unwrap_or_else(|p| p.into_inner());
            let sst = st.sync.get_or_insert_with(Default::default);
            match r {
                Ok(rep) => {
                    sst.generation = rep.generation.number;
                    sst.completed_unix_ms = rep.generation.completed_ms;
                    sst.copies += 1;
                    sst.last_error = None;
                    metrics.sync_copies.fetch_add(1, Ordering::Relaxed);
                    metrics
                        .sync_bytes
                        .fetch_add(rep.bytes_sent, Ordering::Relaxed);
                    metrics.sync_last_ms.store(ms as u64, Ordering::Relaxed);
                    metrics
                        .sync_completed_unix_ms
                        .store(rep.generation.completed_ms, Ordering::Relaxed);
                    drop(st);
                    events.emit(
                        "sync_done",
                        "monitor",
                        epoch,
                        &format!(
                            "generation {}: {} files changed ({} bytes), {} bytes sent, {} bytes in the copy, {ms:.1} ms",
                            rep.generation.number,
                            rep.files_sent,
                            rep.bytes_changed,
                            rep.bytes_sent,
                            rep.generation.bytes
                        ),
                    );
                }
                Err(e) => {
                    let msg = crate::error_chain(&e);
                    sst.failures += 1;
                    sst.last_error = Some(msg.clone());
                    metrics.sync_failures.fetch_add(1, Ordering::Relaxed);
                    drop(st);
                    events.emit("sync_failed", "monitor", epoch, &msg);
                }
            }
        }));
    }

    /// Stops a copy in flight (it leaves the previous copy intact) and removes its staging.
    fn stop_sync(&mut self) {
        if let Some(sy) = self.sync.as_mut() {
            if let Some(t) = sy.task.take() {
                t.abort();
            }
            if let Ok(s) = crate::sync::Store::open(&sy.cfg.dir) {
                sy.store = Arc::new(s);
            }
        }
    }

    /// On becoming primary: say which copy is served (the recovery point).
    fn report_served_copy(&self) {
        let Some(sy) = &self.sync else { return };
        match sy.store.current() {
            Ok(Some(g)) => self.emit(
                "serving_copy",
                &format!(
                    "serving generation {} of the data, completed {} ms before the takeover",
                    g.number,
                    crate::sync::unix_ms().saturating_sub(g.completed_ms)
                ),
            ),
            Ok(None) => self.emit(
                "serving_copy",
                "no copy of the primary's data was ever completed here: serving what the data directory holds",
            ),
            Err(e) => self.emit("daemon_error", &crate::error_chain(&e)),
        }
    }

    fn emit(&self, name: &str, detail: &str) {
        self.events.emit(
            name,
            self.machine.role().name(),
            self.machine.epoch(),
            detail,
        );
    }

    fn cidr(&self, a: Addr) -> Cidr {
        match a {
            Addr::Primary => self.cfg.addresses.primary,
            Addr::Monitor => self.cfg.addresses.monitor,
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let tick = self.monitor.as_ref().map(|m| m.next_tick);
        match (tick, self.grace) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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
        Ok(())
    }

    /// Copies role and epoch to the responders, metrics and status.
    fn publish(&self) {
        let role = self.machine.role();
        self.identity.role.store(role.code(), Ordering::Relaxed);
        self.identity
            .epoch
            .store(self.machine.epoch(), Ordering::Relaxed);
        self.metrics
            .role
            .store(u64::from(role.code()), Ordering::Relaxed);
        self.metrics
            .epoch
            .store(self.machine.epoch(), Ordering::Relaxed);
        let now = monotonic_ns();
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        st.role = role.name().to_string();
        st.epoch = self.machine.epoch();
        st.uptime_s = self.started.elapsed().as_secs();
        st.addresses_held = [
            (self.held_p, self.cfg.addresses.primary),
            (self.held_m, self.cfg.addresses.monitor),
        ]
        .iter()
        .filter(|(h, _)| *h)
        .map(|(_, c)| c.to_string())
        .collect();
        let p = &mut st.peer;
        p.name = self.cfg.node.peer_name.clone();
        p.address = self.cfg.node.peer.to_string();
        match (&self.monitor, role) {
            (Some(m), _) => {
                p.consecutive_misses = m.liveness.consecutive();
                p.last_reply_age_ms = m.last_in_time_ns.map(|t| now.saturating_sub(t) / 1_000_000);
                p.state = if !m.liveness.armed() {
                    "unseen"
                } else if m.liveness.consecutive() == 0 {
                    "alive"
                } else {
                    "missing"
                }
                .into();
            }
            (None, Role::Booting) => p.state = "failed".into(),
            (None, Role::Primary | Role::TakingOver) if self.fenced => p.state = "fenced".into(),
            (None, Role::Primary) => {
                let last = self
                    .primary_counters
                    .last_request_ns
                    .load(Ordering::Relaxed);
                p.consecutive_misses = 0;
                p.last_reply_age_ms = (last != 0).then(|| now.saturating_sub(last) / 1_000_000);
                p.state = match p.last_reply_age_ms {
                    Some(age) if age < 1000 => "heard",
                    _ => "unknown",
                }
                .into();
            }
            (None, _) => {
                p.state = "unknown".into();
                p.consecutive_misses = 0;
            }
        }
    }

    async fn execute(&mut self, action: Action) -> Result<Option<Input>, DaemonError> {
        match action {
            Action::Emit(ev) => {
                match ev.name {
                    "fence_failed" => {
                        self.metrics.fence_failures.fetch_add(1, Ordering::Relaxed);
                    }
                    "fence_confirmed" => self.fenced = true,
                    _ => {}
                }
                self.emit(ev.name, &ev.detail);
            }
            Action::SendJoin => {
                let mut window = self.cfg.join_timeout.0;
                if self.first_join && self.cfg.preferred_primary {
                    // At cold start the other host claims M first and this one, still
                    // listening, hears it and becomes primary.
                    window *= 2;
                }
                self.first_join = false;
                let job = JoinJob {
                    interface: self.cfg.node.interface.clone(),
                    local: self.cfg.node.address.addr,
                    port: self.cfg.heartbeat.port,
                    monitor: self.cfg.addresses.monitor.addr,
                    primary: self.cfg.addresses.primary.addr,
                    node: self.cfg.node.id,
                    window,
                };
                let tx = self.tx.clone();
                let t = tokio::spawn(async move {
                    let (monitor, primary) = job.run().await;
                    let _ = tx.send(Input::JoinDone { monitor, primary });
                });
                Tasks::replace(&mut self.tasks.join, Some(t));
            }
            Action::Claim(a) => return Ok(Some(self.claim(a).await)),
            Action::Release(a) => self.release(a).await,
            Action::StartMonitoring => self.start_monitoring()?,
            Action::StopMonitoring => {
                // Detaching XDP and unpinning takes milliseconds: not on the way to the fence.
                if let Some(m) = self.monitor.take() {
                    tokio::task::spawn_blocking(move || drop(m));
                }
                self.grace = None;
                self.stop_sync();
            }
            Action::Boot(action) => self.boot(action),
            Action::Hook(hook) => {
                let _ = self.hooks.send(HookRun {
                    hook,
                    role: self.machine.role().name(),
                    epoch: self.machine.epoch(),
                });
            }
            Action::BumpEpoch => {
                if let Err(e) = self.epochs.store(self.machine.epoch()) {
                    self.emit("daemon_error", &crate::error_chain(&e));
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
        }
        Ok(None)
    }

    async fn claim(&mut self, a: Addr) -> Input {
        let cidr = self.cidr(a);
        let dad = DadSettings {
            probes: self.cfg.garp.dad_probes,
            wait: self.cfg.garp.dad_wait.0,
        };
        let ok = match self.addrs.claim(cidr, dad).await {
            Ok(Claim::Claimed) => true,
            Ok(Claim::Conflict { mac }) => {
                tracing::warn!(address = %cidr, holder = %mac_string(&mac),
                    "duplicate-address probe: another host answers for this address");
                false
            }
            Err(e) => {
                self.emit("daemon_error", &crate::error_chain(&e));
                false
            }
        };
        if ok {
            match a {
                Addr::Primary => {
                    self.held_p = true;
                    if self.machine.role() == Role::TakingOver {
                        self.metrics.failovers.fetch_add(1, Ordering::Relaxed);
                        self.report_served_copy();
                    }
                }
                Addr::Monitor => self.held_m = true,
            }
            self.announce(a, cidr.addr);
        }
        Input::Claimed { addr: a, ok }
    }

    /// Sends the GARP / NA burst in the background and, for P, starts the periodic refresh.
    fn announce(&mut self, which: Addr, addr: IpAddr) {
        let g = &self.cfg.garp;
        let (count, spacing, every) = (g.count, g.spacing.0, g.refresh.0);
        let addrs = self.addrs.clone();
        let events = self.events.clone();
        let refresh = which == Addr::Primary;
        // The claim completes the role change that the burst belongs to.
        let role = if refresh {
            Role::Primary
        } else {
            Role::Monitor
        }
        .name();
        let epoch =
            self.machine.epoch() + u64::from(refresh && self.machine.role() != Role::Primary);
        let t = tokio::spawn(async move {
            match addrs.announce(addr, count, spacing).await {
                Ok(()) => events.emit(
                    "garp_sent",
                    role,
                    epoch,
                    &format!("{count} announcements of {addr}, {spacing:?} apart"),
                ),
                Err(e) => events.emit("daemon_error", role, epoch, &crate::error_chain(&e)),
            }
            if !refresh || every.is_zero() {
                return;
            }
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = addrs.announce(addr, 1, Duration::ZERO).await {
                    tracing::warn!("{}", crate::error_chain(&e));
                }
            }
        });
        if refresh {
            Tasks::replace(&mut self.tasks.refresh, Some(t));
        }
    }

    async fn release(&mut self, a: Addr) {
        let cidr = self.cidr(a);
        if a == Addr::Primary {
            Tasks::replace(&mut self.tasks.refresh, None);
        }
        match self.addrs.release(cidr.addr).await {
            Ok(removed) => {
                match a {
                    Addr::Primary => self.held_p = false,
                    Addr::Monitor => self.held_m = false,
                }
                if removed {
                    let which = if a == Addr::Primary {
                        "primary"
                    } else {
                        "monitor"
                    };
                    self.emit("address_released", &format!("{which} address {cidr}"));
                }
            }
            Err(e) => self.emit("daemon_error", &crate::error_chain(&e)),
        }
    }

    fn start_monitoring(&mut self) -> Result<(), DaemonError> {
        let cfg = &self.cfg;
        let signal = signal_of(cfg);
        let prober = Prober::new(&cfg.node.interface, cfg.addresses.primary.addr, signal)?;
        let mut b =
            FastPath::builder(&cfg.node.interface).pin_dir(Some(cfg.paths.bpffs_dir.clone()));
        b = match signal {
            Signal::Icmp => b.icmp_id(prober.icmp_id()),
            Signal::Udp { port } => b.udp_port(port),
        };
        let mut fp = b.build()?;
        if let Signal::Udp { .. } = signal {
            fp.add_token(prober.token())?;
        }
        let interval = cfg.heartbeat.interval.0;
        let timeout = cfg.heartbeat.timeout.0;
        // Late replies are reported for up to a second, bounded by the arrival ring.
        let ring_span = interval * (failover_common::ARRIVAL_SLOTS / 4);
        let late_window = Duration::from_secs(1).min(ring_span.saturating_sub(timeout));
        let deadlines = Deadlines {
            timeout_ns: timeout.as_nanos() as u64,
            late_window_ns: late_window.as_nanos() as u64,
            wire_seq_mask: signal.wire_seq_mask(),
        };
        tracing::info!(xdp_mode = fp.mode().map(|m| m.name()).unwrap_or("none"),
            address = %cfg.addresses.primary.addr, "monitoring the primary address");
        self.monitor = Some(Monitor {
            prober,
            fp,
            detect: ProbeBook::new(deadlines),
            report: ProbeBook::new(deadlines),
            liveness: Liveness::new(cfg.heartbeat.misses),
            last_in_time_ns: None,
            next_tick: Instant::now(),
            epoch_probe: match join_socket(&cfg.node.interface, cfg.node.address.addr) {
                Ok(sock) => Some(EpochProbe {
                    sock,
                    to: SocketAddr::new(cfg.addresses.primary.addr, cfg.heartbeat.port),
                    token: rand::random(),
                    node: cfg.node.id,
                    next: Instant::now(),
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "epoch probe socket; the takeover epoch may not exceed the primary's");
                    None
                }
            },
        });
        self.grace = Some(Instant::now() + cfg.startup_grace.0);
        Ok(())
    }

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
        let booter = self.booter.clone();
        let tx = self.tx.clone();
        let status = self.status.clone();
        let events = self.events.clone();
        let (role, epoch) = (self.machine.role().name(), self.machine.epoch());
        let t = tokio::spawn(async move {
            let res = booter.run(action).await;
            let ms = (monotonic_ns() - at_ns) as f64 / 1e6;
            let result = match &res {
                Ok(()) => "done".to_string(),
                Err(e) => format!("failed: {}", crate::error_chain(e)),
            };
            events.emit(
                "boot_result",
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
        if self.monitor.as_ref().is_some_and(|m| m.next_tick <= now) {
            self.tick().await?;
        }
        Ok(())
    }

    /// One probe period: judge what is due, report, send the next probe.
    async fn tick(&mut self) -> Result<(), DaemonError> {
        let Some(m) = self.monitor.as_mut() else {
            return Ok(());
        };
        let interval = self.cfg.heartbeat.interval.0;
        m.next_tick += interval;
        let now_i = Instant::now();
        if m.next_tick <= now_i {
            // Behind (the host stalled): do not burst; the XDP stamps still judge fairly.
            m.next_tick = now_i + interval;
        }
        let now = monotonic_ns();
        let fp = &m.fp;
        // Both books usually decide a probe on the same tick, when its reply is stamped: read
        // each arrival slot from the map once per tick.
        let mut read: Vec<(u64, failover_common::Arrival)> = Vec::new();
        let mut lookup = |seq: u64| -> Result<Option<failover_common::Arrival>, FastPathError> {
            if let Some((_, a)) = read.iter().find(|(s, _)| *s == seq) {
                return Ok(Some(*a));
            }
            let a = fp.arrival(seq)?;
            read.push((seq, a));
            Ok(Some(a))
        };
        let verdicts = m.detect.poll_deadlines(now, &mut lookup)?;
        let outcomes = m.report.poll(now, &mut lookup)?;
        let mut inputs = Vec::new();
        for (p, v) in &verdicts {
            if let Verdict::InTime { rtt_ns } = v {
                m.last_in_time_ns = Some(p.sent_ns + rtt_ns);
                self.grace = None;
            }
            if let Some(ev) = m.liveness.observe(v) {
                if let LivenessEvent::Failed { .. } = ev {
                    if let Some(last) = m.last_in_time_ns {
                        self.metrics.observe_detection(now.saturating_sub(last));
                        self.events.last_reply(
                            self.machine.role().name(),
                            self.machine.epoch(),
                            last,
                        );
                    }
                }
                inputs.push(Input::Liveness(ev));
            }
        }
        let mut late_lost = Vec::new();
        // Before P was first seen every probe is lost by definition: count, but only report
        // each one once armed.
        let report = m.liveness.armed();
        for (p, o) in &outcomes {
            let (counter, event) = match o {
                Outcome::InTime { .. } => (&self.metrics.probes_in_time, None),
                Outcome::Late { rtt_ns } => (
                    &self.metrics.probes_late,
                    Some((
                        "probe_late",
                        format!("seq {} answered after {:.3}ms", p.seq, *rtt_ns as f64 / 1e6),
                    )),
                ),
                Outcome::Lost => (
                    &self.metrics.probes_lost,
                    Some(("probe_lost", format!("seq {} not answered", p.seq))),
                ),
            };
            counter.fetch_add(1, Ordering::Relaxed);
            late_lost.extend(event.filter(|_| report));
        }
        let seen_epoch = m.epoch_probe.as_mut().and_then(|e| e.poll(now_i));
        let probe = m.prober.send();
        m.detect.sent(probe);
        m.report.sent(probe);
        let armed = m.liveness.armed() && m.liveness.consecutive() == 0;
        self.metrics.probes_sent.fetch_add(1, Ordering::Relaxed);
        self.maybe_sync(armed);
        if let Some(e) = seen_epoch {
            self.machine.observe_epoch(e);
        }
        for (name, detail) in late_lost {
            self.emit(name, &detail);
        }
        for i in inputs {
            self.feed(i).await?;
        }
        self.publish();
        Ok(())
    }

    /// Clean shutdown: release what is held, stop probing (the control socket goes with the
    /// daemon).
    async fn stop(&mut self) {
        let _ = self.feed(Input::Shutdown).await;
        // Belt and braces: whatever the role, nothing stays on the interface.
        for a in [Addr::Primary, Addr::Monitor] {
            let held = if a == Addr::Primary {
                self.held_p
            } else {
                self.held_m
            };
            if held {
                self.release(a).await;
            }
        }
        self.monitor = None;
        self.emit("daemon_stopped", "released all floating addresses");
    }
}

/// One join period: the second signal to M (and to P), resent a few times within the window.
struct JoinJob {
    interface: String,
    local: IpAddr,
    port: u16,
    monitor: IpAddr,
    primary: IpAddr,
    node: u32,
    window: Duration,
}

impl JoinJob {
    /// Returns who answered at M and at P. A socket error counts as silence: the next step,
    /// claiming M, probes for duplicates before taking anything.
    async fn run(self) -> (Option<Answer>, Option<Answer>) {
        match self.try_run().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(interface = %self.interface, error = %e,
                    "join probe could not be sent; treating as silence");
                tokio::time::sleep(self.window).await;
                (None, None)
            }
        }
    }

    async fn try_run(&self) -> std::io::Result<(Option<Answer>, Option<Answer>)> {
        let domain = if self.local.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_nonblocking(true)?;
        s.bind_device(Some(self.interface.as_bytes()))?;
        s.bind(&SocketAddr::new(self.local, 0).into())?;
        let sock = UdpSocket::from_std(s.into())?;
        let token: u64 = rand::random();
        let deadline = Instant::now() + self.window;
        let resend = (self.window / 5).max(Duration::from_millis(1));
        let (mut monitor, mut primary) = (None, None);
        let mut seq = 0u64;
        let mut next_send = Instant::now();
        let mut buf = [0u8; 256];
        while Instant::now() < deadline {
            if Instant::now() >= next_send {
                seq += 1;
                let msg = join_message(token, seq, self.node);
                for (target, got) in [
                    (self.monitor, monitor.is_some()),
                    (self.primary, primary.is_some()),
                ] {
                    if !got {
                        if let Err(e) = sock.send_to(&msg, SocketAddr::new(target, self.port)).await
                        {
                            tracing::debug!(%target, error = %e, "join probe send failed");
                        }
                    }
                }
                next_send += resend;
            }
            let until = next_send.min(deadline);
            let Ok(r) = tokio::time::timeout_at(until, sock.recv_from(&mut buf)).await else {
                continue;
            };
            let (n, from) = r?;
            let Ok(reply) = Message::decode(&buf[..n]) else {
                continue;
            };
            if reply.kind != Kind::JoinReply || reply.token != token || reply.node == self.node {
                continue;
            }
            let answer = Answer {
                role: reply.role,
                epoch: reply.epoch,
                node: reply.node,
            };
            if from.ip() == self.monitor {
                monitor.get_or_insert(answer);
            } else if from.ip() == self.primary {
                primary.get_or_insert(answer);
            }
        }
        Ok((monitor, primary))
    }
}
