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
    /// The witnesses' part of the self-check: how many answered in time.
    SelfCheck {
        /// Witnesses that answered.
        answered: u8,
    },
    /// The peer says it is stopping on purpose (a `leaving` message on a responder).
    PeerLeaving {
        /// Its role code.
        role: u8,
        /// Its epoch.
        epoch: u64,
    },
    /// The peer says it took P over (a `taken over` notice at the node address).
    TakenOver {
        /// Its epoch.
        epoch: u64,
    },
    /// The joining peer leaves P to this monitor, whose data is newer.
    PeerYielded,
    /// The lease keeper's news.
    Lease(super::lease::LeaseNews),
    /// An operator's request from the control socket.
    Control(crate::control::Command),
    /// The monitor's heartbeats carry an epoch above this primary's.
    NewerMonitor {
        /// The monitor's epoch.
        epoch: u64,
    },
    /// One run of a service health check (`[[check]]`, by its index) finished.
    Check {
        /// Index in the configuration.
        index: usize,
        /// Passed, or what went wrong.
        result: Result<(), String>,
    },
    /// Reading the fast path failed: the daemon cannot judge probes any more.
    Failed(String),
}

/// A self-check in progress: the witness probes sent, and which were answered.
#[derive(Debug)]
struct WitnessCheck {
    /// Per witness: its probes (a second one goes out halfway) and whether one was answered.
    probes: Vec<(Vec<crate::detector::Probe>, bool)>,
    needed: usize,
    started: Instant,
    timeout: Duration,
    resent: bool,
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
    /// Asks P for its epoch once a second (a join probe), so a takeover goes above it.
    epoch_probe: Option<EpochProbe>,
    /// Copy after this many heartbeats (0: no copies).
    sync_every: u32,
    since_sync: u32,
    /// ICMP probers of the witnesses, fast-path streams 1 and up.
    witnesses: Vec<Prober>,
    /// The self-check in progress.
    check: Option<WitnessCheck>,
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
    /// Opens the probers (P and the `witnesses`) and attaches the fast path for them.
    /// Opens the monitor of P with the self-check's `witnesses`; `armed` when P has been
    /// seen already (a monitor reopened for new witnesses).
    pub(super) fn open(
        cfg: &Config,
        witnesses: &[std::net::IpAddr],
        armed: bool,
    ) -> Result<Monitor, DaemonError> {
        let signal = signal_of(cfg);
        let source = Some(cfg.node.address.addr);
        let prober = Prober::new(
            &cfg.node.interface,
            cfg.addresses.primary.first().addr,
            signal,
            source,
        )?;
        let witnesses = witnesses
            .iter()
            .map(|w| Prober::new(&cfg.node.interface, *w, Signal::Icmp, source))
            .collect::<Result<Vec<_>, _>>()?;
        let mut b =
            FastPath::builder(&cfg.node.interface).pin_dir(Some(cfg.paths.bpffs_dir.clone()));
        b = prober.enable(b);
        if let Some(w) = witnesses.first() {
            b = w.enable(b);
        }
        let mut fp = b.build()?;
        prober.register(&mut fp, HEARTBEAT_STREAM)?;
        for (i, w) in witnesses.iter().enumerate() {
            w.register(&mut fp, HEARTBEAT_STREAM + 1 + i as u32)?;
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
            address = %cfg.addresses.primary.first().addr, "monitoring the primary address");
        let to = SocketAddr::new(cfg.addresses.primary.first().addr, cfg.heartbeat.port);
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
            liveness: Liveness::new(cfg.heartbeat.misses, cfg.heartbeat.recover_after)
                .armed_if(armed),
            last_in_time_ns: None,
            interval,
            epoch_probe,
            sync_every: cfg.sync.as_ref().map_or(0, |s| s.every),
            since_sync: 0,
            witnesses,
            check: None,
        })
    }

    /// The probe interval (`heartbeat.interval`).
    pub(super) fn interval(&self) -> Duration {
        self.interval
    }

    /// Starts the witnesses' part of the self-check: an ICMP echo to each, answered in time
    /// when stamped within `timeout`; reported as `Report::SelfCheck` once `needed` answered
    /// or the time is up. Without witnesses it is reported at once.
    pub(super) fn start_self_check(
        &mut self,
        needed: usize,
        timeout: Duration,
        out: &mut Vec<Report>,
    ) {
        if self.witnesses.is_empty() {
            out.push(Report::SelfCheck { answered: 0 });
            return;
        }
        let probes = self
            .witnesses
            .iter_mut()
            .map(|w| (vec![w.send()], false))
            .collect();
        self.check = Some(WitnessCheck {
            probes,
            needed,
            started: Instant::now(),
            timeout,
            resent: false,
        });
    }

    /// Judges P afresh (`Liveness::rejudge`): after this host's own isolation ended.
    pub(super) fn rejudge(&mut self) {
        self.liveness.rejudge();
    }

    /// Advances the self-check in progress (on every tick).
    fn poll_self_check(&mut self, out: &mut Vec<Report>) -> Result<(), FastPathError> {
        let Some(c) = self.check.as_mut() else {
            return Ok(());
        };
        let timeout_ns = c.timeout.as_nanos() as u64;
        for (i, (probes, answered)) in c.probes.iter_mut().enumerate() {
            if *answered {
                continue;
            }
            let stream = HEARTBEAT_STREAM + 1 + i as u32;
            for p in probes.iter() {
                let a = self.fp.arrival(stream, p.seq)?;
                if crate::detector::matches(p, &a, Signal::Icmp.wire_seq_mask())
                    && a.ns - p.sent_ns <= timeout_ns
                {
                    *answered = true;
                }
            }
        }
        let answered = c.probes.iter().filter(|(_, a)| *a).count();
        let elapsed = c.started.elapsed();
        if answered >= c.needed || elapsed >= c.timeout {
            self.check = None;
            out.push(Report::SelfCheck {
                answered: answered.min(u8::MAX as usize) as u8,
            });
        } else if !c.resent && elapsed >= c.timeout / 2 {
            // One more probe to the silent ones: a single lost echo must not isolate us.
            c.resent = true;
            for (w, (probes, answered)) in self.witnesses.iter_mut().zip(c.probes.iter_mut()) {
                if !*answered {
                    probes.push(w.send());
                }
            }
        }
        Ok(())
    }

    /// One probe period: judge what is due, report, send the next probe. Only map reads,
    /// one send, counters and (rarely) an event: nothing here waits.
    pub(super) fn tick(
        &mut self,
        cx: &TickContext,
        out: &mut Vec<Report>,
    ) -> Result<(), FastPathError> {
        // Driven by the heartbeat thread's ticker every `interval`; a late tick does one
        // period's work, it does not burst (the XDP stamps still judge fairly).
        let now_i = Instant::now();
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
        self.poll_self_check(out)?;
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
            if let Some(rtt) = o.rtt_ns() {
                cx.metrics.observe_rtt(rtt);
            }
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
        // The primary compares it with its own: a higher one shows it stale.
        self.prober
            .set_epoch(cx.identity.epoch.load(Ordering::Relaxed));
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
