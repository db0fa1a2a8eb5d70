//! Wiring: from a validated configuration to a running daemon in `Joining`.
use std::sync::{atomic::Ordering, Arc};

use tokio::{sync::mpsc, time::Instant};

use super::{
    heartbeat::HeartbeatThread,
    lease::LeaseSetup,
    monitor::{MonitorStatus, Report, TickContext},
    Copier, Daemon, DaemonError, Held, SocketFile, Tasks,
};
use crate::{
    address::{mac_string, AddressHandle},
    config::{BootMethod, Config},
    control::{self, Metrics, SharedStatus, Status},
    event::{Emitter, Event},
    fence::Fencer,
    hooks::{self, HookPrograms},
    logging,
    role::{Input, Machine, Policy},
    signal::{
        responder::{Identity, Responder, ResponderCounters},
        wire::Kind,
    },
    state::EpochStore,
};

/// The protocol's settings, from the configuration.
pub(super) fn policy(cfg: &Config) -> Policy {
    Policy {
        takeover: cfg.takeover,
        no_fence: cfg.boot.unfenced(),
        lease_fence: cfg.boot.fence == crate::config::FenceMode::Lease,
        allow_unfenced: cfg.boot.allow_unfenced_takeover,
        retry: cfg.boot.retry.0,
        retry_max: cfg.boot.retry_max.0,
        preferred_primary: cfg.preferred_primary,
        recheck: cfg.witness.recheck.0,
        node_id: cfg.node.id,
        fence_delay: cfg.fence_delay(),
        handover_window: cfg.heartbeat.timeout.0 + cfg.heartbeat.interval.0 * 2,
    }
}

/// Binds the three responders (the heartbeat thread serves them). Heartbeats and joins to P
/// are answered by whoever holds P, joins to M by whoever holds M; the sockets are bound with
/// IP_FREEBIND, so they exist before the address does and only see traffic while this host
/// holds it, and replies leave from that address. The third, on the node address, answers the
/// peer's questions in an address contest and takes its `taken over` notices. Only the peer's
/// datagrams reach them (a kernel socket filter: heartbeats, joins and epoch probes all come
/// from `node.peer`), and its notices are reported. Returns them and the counters of the one
/// on P.
fn bind_responders(
    cfg: &Config,
    identity: &Arc<Identity>,
    reports: &mpsc::UnboundedSender<Report>,
) -> Result<(Vec<Responder>, Arc<ResponderCounters>), DaemonError> {
    let port = cfg.heartbeat.port;
    let bind = |addr, kinds| -> Result<Responder, DaemonError> {
        let reports = reports.clone();
        let identity_ = identity.clone();
        Ok(Responder::bind(addr, port, identity.clone(), kinds)?
            .only_from(cfg.node.peer)?
            .on_notice(move |m| {
                let _ = reports.send(match m.kind {
                    Kind::TakenOver => Report::TakenOver { epoch: m.epoch },
                    Kind::Heartbeat => Report::NewerMonitor { epoch: m.epoch },
                    // Only when this host's data really is newer than the yielder's.
                    Kind::Yield if identity_.data.load(Ordering::Relaxed) > m.epoch => {
                        Report::PeerYielded
                    }
                    Kind::Yield => return,
                    _ => Report::PeerLeaving {
                        role: m.role,
                        epoch: m.epoch,
                    },
                });
            }))
    };
    let on_p = bind(
        cfg.addresses.primary.first().addr,
        &[Kind::Heartbeat, Kind::Join],
    )?;
    let counters = on_p.counters.clone();
    let on_m = bind(cfg.addresses.monitor.addr, &[Kind::Join])?;
    let on_node = bind(cfg.node.address.addr, &[Kind::Join])?;
    Ok((vec![on_p, on_m, on_node], counters))
}

impl Daemon {
    /// Starts everything; returns the daemon and the SCHED_FIFO error of the heartbeat
    /// thread, if its priority was refused.
    pub(super) async fn start(
        cfg: Config,
        tx: mpsc::UnboundedSender<Input>,
        reports: mpsc::UnboundedSender<Report>,
    ) -> Result<(Daemon, Option<std::io::Error>), DaemonError> {
        let mut events = Emitter::new(&cfg.node.name, &cfg.node.peer_name);
        if let Some(path) = &cfg.hooks.event_fifo {
            events = events.with_fifo(crate::event_fifo::EventFifo::open(path)?);
        }
        let epochs = EpochStore::new(&cfg.paths.state_dir);
        let epoch = epochs.load()?;
        let metrics = Arc::new(Metrics::default());
        if let Some(f) = events.fifo() {
            let _ = metrics.event_fifo.set(f.clone());
        }
        let status: SharedStatus = Arc::new(std::sync::Mutex::new(Status {
            node: cfg.node.name.clone(),
            primary_address: cfg.addresses.primary.first().addr.to_string(),
            primary_addresses: cfg
                .addresses
                .primary
                .all()
                .iter()
                .map(ToString::to_string)
                .collect(),
            ..Default::default()
        }));

        let addrs = AddressHandle::open(&cfg.node.interface).await?;
        // The control socket before anything is changed: it refuses a second daemon with the
        // same socket. Removed when the daemon ends, also when the start fails below.
        let control = control::bind_control(&cfg.control.socket).await?;
        let socket_file = SocketFile(cfg.control.socket.clone());
        let lease_status = cfg
            .boot
            .lease
            .is_some()
            .then(Arc::<crate::lease::LeaseStatus>::default);
        if let Some(l) = &lease_status {
            let _ = metrics.lease.set(l.clone());
        }
        let metrics_task = match cfg.control.metrics {
            Some(addr) => {
                let l = control::bind_metrics(addr).await?;
                Some(tokio::spawn(control::serve_metrics(
                    l,
                    metrics.clone(),
                    cfg.node.name.clone(),
                )))
            }
            None => None,
        };

        let fencer = Fencer::from_config(&cfg)?;
        let identity = Arc::new(Identity {
            node: cfg.node.id,
            ..Default::default()
        });
        identity.epoch.store(epoch, Ordering::Relaxed);
        let (responders, primary_counters) = bind_responders(&cfg, &identity, &reports)?;
        let monitor_status = Arc::new(MonitorStatus::default());
        let (commands, mut requests) = mpsc::unbounded_channel();
        {
            let reports = reports.clone();
            tokio::spawn(async move {
                while let Some(c) = requests.recv().await {
                    if reports.send(Report::Control(c)).is_err() {
                        break;
                    }
                }
            });
        }
        tokio::spawn(control::serve_control(
            control,
            status.clone(),
            lease_status.clone(),
            commands,
            {
                let (m, p) = (monitor_status.clone(), primary_counters.clone());
                Arc::new(move |st: &mut Status| {
                    super::status::refresh_peer(st, &m, &p, crate::sys::monotonic_ns())
                })
            },
        ));
        let (heartbeat, rt_error) = HeartbeatThread::spawn(
            responders,
            TickContext {
                events: events.clone(),
                metrics: metrics.clone(),
                identity: identity.clone(),
                status: monitor_status.clone(),
            },
            reports.clone(),
            cfg.realtime_priority,
            crate::notify::Watchdog::from_env(),
        )
        .map_err(|e| DaemonError::Heartbeat(format!("cannot start: {e}")))?;
        // The start-up's parsing (configuration, TLS roots) is done: return the freed heap.
        crate::sys::trim_heap();
        // The checks report through the channel the heartbeat thread reports through; their
        // tasks run on this runtime, never on the heartbeat thread.
        let checks = super::health::Checks::start(&cfg, &reports)?;
        let hooks = hooks::spawn_runner(
            HookPrograms::from_config(&cfg),
            events.clone(),
            metrics.clone(),
        );
        let copier = Copier::start(
            &cfg,
            identity.clone(),
            events.clone(),
            status.clone(),
            metrics.clone(),
        )?;
        // A gate left by a crashed run goes with the leftover addresses (below), after them.
        let lease = LeaseSetup::start(&cfg, &identity, &heartbeat, lease_status)?;
        let mut d = Daemon {
            lease,
            machine: Machine::new(policy(&cfg), epoch),
            identity,
            addrs,
            epochs,
            events,
            status,
            metrics,
            fencer,
            hooks,
            metrics_task,
            tx,
            heartbeat,
            monitoring: false,
            retiring: None,
            retire_hold: None,
            witnesses: Vec::new(),
            witnesses_stale: false,
            monitor_status,
            grace: None,
            held: Held::default(),
            primary_counters,
            tasks: Tasks::default(),
            started: Instant::now(),
            _socket_file: socket_file,
            copier,
            admin: crate::state::AdminStore::new(&cfg.paths.state_dir),
            checks,
            notifier: crate::notify::Notifier::from_env(),
            cfg,
        };
        if let Some(level) = &d.cfg.log_level {
            // Validated with the configuration; only an uninitialised logger fails here
            // (a library user that installed its own subscriber).
            if let Err(e) = logging::set_level(Some(level)) {
                tracing::debug!("log_level not applied: {e}");
            }
        }
        d.warn_about_opt_outs();
        if d.cfg.addresses.primary.first().addr.is_ipv4() {
            match crate::sys::arp_announce_from_own_address(&d.cfg.node.interface) {
                Ok(Some(old)) => tracing::info!(interface = %d.cfg.node.interface, old,
                    "set arp_announce = 2: ARP requests leave from the node address"),
                Ok(None) => {}
                Err(e) => d.emit(
                    Event::DaemonError,
                    &format!(
                        "cannot set net.ipv4.conf.{}.arp_announce = 2 ({e}): while both hosts \
                         hold a floating address, answers may wait seconds for ARP",
                        d.cfg.node.interface
                    ),
                ),
            }
        }
        d.resolve_witnesses().await?;
        d.clear_leftovers().await?;
        d.emit(Event::DaemonStarted, &d.describe());
        d.resume_admin().await?;
        d.feed(Input::Start).await?;
        Ok((d, rt_error))
    }

    /// Operator opt-outs of a safety default are warnings at every start.
    fn warn_about_opt_outs(&self) {
        if self.cfg.boot.allow_unfenced_takeover {
            self.emit(
                Event::UnfencedTakeover,
                "configured: boot.allow_unfenced_takeover = true; this host may take the primary \
                 address without a confirmed fence",
            );
        }
        for (i, level) in self.cfg.boot.levels.iter().enumerate() {
            if level.method == BootMethod::Redfish && level.insecure {
                self.emit(
                    Event::TlsUnverified,
                    &format!(
                        "configured: {}insecure = true; the BMC's TLS certificate is not verified",
                        self.cfg.boot.field_prefix(i)
                    ),
                );
            }
        }
    }

    /// The settings that matter, for `daemon_started`.
    fn describe(&self) -> String {
        let c = &self.cfg;
        format!(
            "interface {} ({}), P {}, M {}, {:?} heartbeat every {:?}, deadline {:?}, {} misses (detection about {:?}), boot {}, takeover {}",
            c.node.interface,
            mac_string(&self.addrs.mac()),
            c.addresses.primary,
            c.addresses.monitor,
            c.heartbeat.kind,
            c.heartbeat.interval.0,
            c.heartbeat.timeout.0,
            c.heartbeat.misses,
            c.detection_time(),
            c.boot.describe(),
            c.takeover,
        )
    }
}
