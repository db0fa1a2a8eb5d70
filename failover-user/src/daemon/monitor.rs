//! The monitor's probing (claims 1, 8, 9), run on the heartbeat thread: every `interval`,
//! judge what is due from the XDP stamps, report, send the next probe.
//!
//! It is opened on the control thread (sockets, loading and attaching XDP: syscalls and bpffs
//! files) and then moved to the heartbeat thread, which only sends probes and reads map slots.
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::time::Instant;

use super::DaemonError;
use crate::{
    config::{Config, HeartbeatKind},
    control::Metrics,
    detector::{Deadlines, Liveness, LivenessEvent, Outcome, ProbeBook, Verdict},
    event::{Emitter, Event},
    fastpath::{FastPath, FastPathError},
    role::Role,
    signal::{
        join::EpochProbe,
        probe::{Prober, Signal},
        responder::Identity,
    },
    sys::monotonic_ns,
};

/// What the monitor knows about P, shared with the status socket (written by the heartbeat
/// thread, read when a status is rendered).
#[derive(Debug, Default)]
pub struct MonitorStatus {
    /// A monitor is probing.
    pub active: AtomicBool,
    /// P has answered since probing began.
    pub armed: AtomicBool,
    /// Consecutive probes without an in-time reply.
    pub consecutive: AtomicU32,
    /// XDP stamp of the last in-time reply (0: none).
    pub last_in_time_ns: AtomicU64,
}

/// What the monitor tells the control thread.
#[derive(Debug)]
pub(super) enum Report {
    /// The liveness tracker concluded something.
    Liveness(LivenessEvent),
    /// The primary's epoch, from the epoch probe.
    EpochSeen(u64),
    /// `sync.every` heartbeats since the last copy while P answers: time for a copy.
    SyncDue,
    /// A stopped monitor, handed back to be dropped off the heartbeat thread (detaching XDP
    /// and removing pins take milliseconds).
    Retired(Box<Monitor>),
    /// Reading the fast path failed: the daemon cannot judge probes any more.
    Failed(String),
}

/// The monitor's probing state; exists only while this host signals P.
#[derive(Debug)]
pub struct Monitor {
    prober: Prober,
    fp: FastPath,
    /// Judges each probe at its deadline: failure detection.
    detect: ProbeBook,
    /// Judges each probe with a late window: the probe_late / probe_lost events and metrics.
    report: ProbeBook,
    liveness: Liveness,
    last_in_time_ns: Option<u64>,
    interval: Duration,
    /// When the next probe is due.
    pub(super) next_tick: Instant,
    /// Asks P for its epoch once a second (a join probe), so a takeover goes above it.
    epoch_probe: Option<EpochProbe>,
    /// Copy after this many heartbeats (0: no copies).
    sync_every: u32,
    since_sync: u32,
}

/// The fast-path stream of the heartbeat to P; witnesses use the streams after it.
const HEARTBEAT_STREAM: u32 = 0;

fn signal_of(cfg: &Config) -> Signal {
    match cfg.heartbeat.kind {
        HeartbeatKind::Icmp => Signal::Icmp,
        HeartbeatKind::Udp => Signal::Udp {
            port: cfg.heartbeat.port,
        },
    }
}

/// What a tick needs besides the monitor: where events, metrics and status go.
pub(super) struct TickContext {
    pub(super) events: Emitter,
    pub(super) metrics: Arc<Metrics>,
    pub(super) identity: Arc<Identity>,
    pub(super) status: Arc<MonitorStatus>,
}

impl Monitor {
    /// Opens the prober and attaches the fast path configured for it.
    pub(super) fn open(cfg: &Config) -> Result<Monitor, DaemonError> {
        let signal = signal_of(cfg);
        let prober = Prober::new(&cfg.node.interface, cfg.addresses.primary.addr, signal)?;
        let b = FastPath::builder(&cfg.node.interface).pin_dir(Some(cfg.paths.bpffs_dir.clone()));
        let mut fp = prober.enable(b).build()?;
        prober.register(&mut fp, HEARTBEAT_STREAM)?;
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
        let to = SocketAddr::new(cfg.addresses.primary.addr, cfg.heartbeat.port);
        let epoch_probe = match EpochProbe::open(
            &cfg.node.interface,
            cfg.node.address.addr,
            to,
            cfg.node.id,
        ) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "epoch probe socket; the takeover epoch may not exceed the primary's");
                None
            }
        };
        Ok(Monitor {
            prober,
            fp,
            detect: ProbeBook::new(deadlines),
            report: ProbeBook::new(deadlines),
            liveness: Liveness::new(cfg.heartbeat.misses),
            last_in_time_ns: None,
            interval,
            next_tick: Instant::now(),
            epoch_probe,
            sync_every: cfg.sync.as_ref().map_or(0, |s| s.every),
            since_sync: 0,
        })
    }

    /// One probe period: judge what is due, report, send the next probe. Only map reads,
    /// one send, counters and (rarely) an event: nothing here waits.
    pub(super) fn tick(
        &mut self,
        cx: &TickContext,
        out: &mut Vec<Report>,
    ) -> Result<(), FastPathError> {
        self.next_tick += self.interval;
        let now_i = Instant::now();
        if self.next_tick <= now_i {
            // Behind (the host stalled): do not burst; the XDP stamps still judge fairly.
            self.next_tick = now_i + self.interval;
        }
        let now = monotonic_ns();
        let fp = &self.fp;
        // Both books usually decide a probe on the same tick, when its reply is stamped: read
        // each arrival slot from the map once per tick.
        let mut read: Vec<(u64, failover_common::Arrival)> = Vec::new();
        let mut lookup = |seq: u64| -> Result<Option<failover_common::Arrival>, FastPathError> {
            if let Some((_, a)) = read.iter().find(|(s, _)| *s == seq) {
                return Ok(Some(*a));
            }
            let a = fp.arrival(HEARTBEAT_STREAM, seq)?;
            read.push((seq, a));
            Ok(Some(a))
        };
        let verdicts = self.detect.poll_deadlines(now, &mut lookup)?;
        let outcomes = self.report.poll(now, &mut lookup)?;
        let role = Role::from_code(cx.identity.role.load(Ordering::Relaxed))
            .unwrap_or(Role::Monitor)
            .name();
        let epoch = cx.identity.epoch.load(Ordering::Relaxed);
        for (p, v) in &verdicts {
            if let Verdict::InTime { rtt_ns } = v {
                self.last_in_time_ns = Some(p.sent_ns + rtt_ns);
            }
            if let Some(event) = self.liveness.observe(v) {
                if let LivenessEvent::Failed { .. } = event {
                    if let Some(last) = self.last_in_time_ns {
                        cx.metrics.observe_detection(now.saturating_sub(last));
                        cx.events.last_reply(role, epoch, last);
                    }
                }
                out.push(Report::Liveness(event));
            }
        }
        // Before P was first seen every probe is lost by definition: count, but only report
        // each one once armed.
        let armed = self.liveness.armed();
        for (p, o) in &outcomes {
            let counter = match o {
                Outcome::InTime { .. } => &cx.metrics.probes_in_time,
                Outcome::Late { rtt_ns } => {
                    if armed {
                        let d =
                            format!("seq {} answered after {:.3}ms", p.seq, *rtt_ns as f64 / 1e6);
                        cx.events.emit(Event::ProbeLate, role, epoch, &d);
                    }
                    &cx.metrics.probes_late
                }
                Outcome::Lost => {
                    if armed {
                        let d = format!("seq {} not answered", p.seq);
                        cx.events.emit(Event::ProbeLost, role, epoch, &d);
                    }
                    &cx.metrics.probes_lost
                }
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(e) = self.epoch_probe.as_mut().and_then(|e| e.poll(now_i)) {
            out.push(Report::EpochSeen(e));
        }
        let probe = self.prober.send();
        self.detect.sent(probe);
        self.report.sent(probe);
        cx.metrics.probes_sent.fetch_add(1, Ordering::Relaxed);
        if self.sync_every > 0 {
            self.since_sync += 1;
            let answering = armed && self.liveness.consecutive() == 0;
            if self.since_sync >= self.sync_every && answering {
                self.since_sync = 0;
                out.push(Report::SyncDue);
            }
        }
        let st = &cx.status;
        st.armed.store(armed, Ordering::Relaxed);
        st.consecutive
            .store(self.liveness.consecutive(), Ordering::Relaxed);
        st.last_in_time_ns
            .store(self.last_in_time_ns.unwrap_or(0), Ordering::Relaxed);
        Ok(())
    }
}
