//! The monitor's probing state and its tick: judge what is due from the XDP stamps, report,
//! send the next probe (claims 1, 8, 9).
use std::{net::SocketAddr, sync::atomic::Ordering, time::Duration};

use tokio::time::Instant;

use super::{Daemon, DaemonError};
use crate::{
    config::{Config, HeartbeatKind},
    detector::{Deadlines, Liveness, LivenessEvent, Outcome, ProbeBook, Verdict},
    event::Event,
    fastpath::{FastPath, FastPathError},
    role::Input,
    signal::{
        join::EpochProbe,
        probe::{Prober, Signal},
    },
    sys::monotonic_ns,
};

/// The monitor's probing state; exists only while this host signals P.
pub(super) struct Monitor {
    prober: Prober,
    fp: FastPath,
    /// Judges each probe at its deadline: failure detection.
    detect: ProbeBook,
    /// Judges each probe with a late window: the probe_late / probe_lost events and metrics.
    report: ProbeBook,
    liveness: Liveness,
    /// XDP stamp of the last reply that came in time.
    pub(super) last_in_time_ns: Option<u64>,
    /// When the next probe is due.
    pub(super) next_tick: Instant,
    /// Asks P for its epoch once a second (a join probe), so a takeover goes above it.
    epoch_probe: Option<EpochProbe>,
}

fn signal_of(cfg: &Config) -> Signal {
    match cfg.heartbeat.kind {
        HeartbeatKind::Icmp => Signal::Icmp,
        HeartbeatKind::Udp => Signal::Udp {
            port: cfg.heartbeat.port,
        },
    }
}

impl Monitor {
    /// Opens the prober and attaches the fast path configured for it.
    fn open(cfg: &Config) -> Result<Monitor, DaemonError> {
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
            next_tick: Instant::now(),
            epoch_probe,
        })
    }

    /// Consecutive probes without an in-time reply.
    pub(super) fn consecutive_misses(&self) -> u32 {
        self.liveness.consecutive()
    }

    /// Whether P has answered since monitoring began.
    pub(super) fn armed(&self) -> bool {
        self.liveness.armed()
    }
}

impl Daemon {
    /// Starts signalling P and arms `startup_grace`.
    pub(super) fn start_monitoring(&mut self) -> Result<(), DaemonError> {
        self.monitor = Some(Monitor::open(&self.cfg)?);
        self.grace = Some(Instant::now() + self.cfg.startup_grace.0);
        Ok(())
    }

    /// One probe period: judge what is due, report, send the next probe.
    pub(super) async fn tick(&mut self) -> Result<(), DaemonError> {
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
                        Event::ProbeLate,
                        format!("seq {} answered after {:.3}ms", p.seq, *rtt_ns as f64 / 1e6),
                    )),
                ),
                Outcome::Lost => (
                    &self.metrics.probes_lost,
                    Some((Event::ProbeLost, format!("seq {} not answered", p.seq))),
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
        if let Some(c) = self.copier.as_mut() {
            c.heartbeat(armed, self.machine.epoch());
        }
        if let Some(e) = seen_epoch {
            self.machine.observe_epoch(e);
        }
        for (event, detail) in late_lost {
            self.emit(event, &detail);
        }
        for i in inputs {
            self.feed(i).await?;
        }
        self.publish();
        Ok(())
    }
}
