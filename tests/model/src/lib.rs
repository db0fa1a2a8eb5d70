//! A model check of the failover protocol: the real role machines of both hosts
//! (`failover::role::Machine`) in a world that does everything it may do to them: a network
//! that loses, duplicates, delays and reorders messages and partitions one way or both ways,
//! BMCs that are slow (any interleaving), down, or lie, daemons that crash, restart, freeze,
//! thaw and are stopped by the operator, and hosts that lose power.
//!
//! Checked over every interleaving up to a depth (docs/design.md, "What the model covers"):
//! - `one server of P`: never two hosts serving P at once (unless a BMC lied: see below);
//! - `no fence without a failure`: every fence (or reboot) is backed by a failure decision taken
//!   while the peer was not serving and reachable, and not undone by its recovery;
//! - `the stale primary steps down`: once a BMC lied and two hosts serve P, healing the
//!   network ends it (with one host serving);
//! - `someone serves P`: from every state, once the network heals, BMCs work and stopped
//!   daemons are started again, exactly one host ends up serving P (unless the only host
//!   with power is in standby);
//! - `a reachable host in standby is never fenced`: no power action leaves for a host in
//!   standby that the fencing host can reach (the runtime asks it right before).
//!
//! Timing is abstracted into four assumptions: a datagram is delivered or lost before its
//! sender's daemon restarts (unless the receiver is frozen); the failure detector reports a miss or a
//! failure only while the peer's heartbeats really go unanswered; `startup_grace` (30 s) runs
//! out only while the peer's daemon is down, frozen, unreachable or in standby (it is long
//! against joining and settling a contest); a join period (hundreds of ms) outlasts the peer's handover
//! window after a `leaving` (a probe deadline and two intervals); and around the operator's
//! `standby on` and `off`, datagrams in flight between the hosts are delivered or lost before
//! the `off`.
pub mod lease;
pub mod run;
pub mod world;

use failover::{
    detector::LivenessEvent,
    role::{Addr, BootAction, Input, SelfCheck, Timer},
};
use stateright::{Model, Property};

use run::{daemon_gone, feed, fresh_host, power_off, start_daemon};
use world::{name, other, slot_timer, timer_slot, Bmc, Daemon, HostId, Msg, World};

/// One step of the world.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    Deliver(HostId, usize),
    Lose(HostId, usize),
    Duplicate(HostId, usize),
    JoinDone {
        h: HostId,
        lose_m: bool,
        lose_p: bool,
    },
    AskDone {
        h: HostId,
        lost: bool,
    },
    SelfCheckDone(HostId),
    RetryDue(HostId),
    TimerDue(HostId, usize),
    GraceExpired(HostId),
    Heartbeat(HostId),
    /// Primary `h` receives a heartbeat probe carrying the monitor's higher epoch.
    NewerMonitor(HostId),
    Check {
        h: HostId,
        p: bool,
    },
    BootAccepted(HostId),
    BootDone(HostId),
    BootOnDone(HostId),
    // Faults (each uses the budget) and repairs (free).
    PowerLoss(HostId),
    Crash(HostId),
    Restart(HostId),
    Freeze(HostId),
    Thaw(HostId),
    OperatorStop(HostId),
    CutTx(HostId),
    CutRx(HostId),
    HealLink(HostId),
    CrossCut,
    HealCross,
    BmcDown(HostId),
    BmcUp(HostId),
    BmcLies(HostId),
    /// The operator's `failover standby on|off` on `h` (on uses the budget).
    Standby {
        h: HostId,
        on: bool,
    },
    // `fence = "lease"` (lease.rs).
    /// A grantor renews `h`'s lease.
    Renew(HostId),
    /// `h`'s lease lapses (no grantor renews it).
    Lapse(HostId),
    /// The grants the monitor's wait counts have run out on `h`.
    WaitOver(HostId),
    /// `h`'s keeper, its lease lapsed, hears the witness refuse its epoch as revoked.
    LeaseRefused(HostId),
    /// The witness's answer to `h`'s revoke request reaches its machine.
    Verdict(HostId),
    /// The witness's agreement never reaches `h` (the job ends without an answer).
    VerdictLost(HostId),
    WitnessDown,
    WitnessUp,
    /// The witness's bar after an agreement is over (time).
    BarOver,
}

impl Step {
    /// The host whose runtime takes this step (progress steps only).
    fn host(&self) -> Option<HostId> {
        match *self {
            Step::Deliver(h, _)
            | Step::Lose(h, _)
            | Step::Duplicate(h, _)
            | Step::JoinDone { h, .. }
            | Step::AskDone { h, .. }
            | Step::SelfCheckDone(h)
            | Step::RetryDue(h)
            | Step::TimerDue(h, _)
            | Step::GraceExpired(h)
            | Step::Heartbeat(h)
            | Step::NewerMonitor(h)
            | Step::Check { h, .. }
            | Step::BootAccepted(h)
            | Step::BootDone(h)
            | Step::BootOnDone(h)
            | Step::Renew(h)
            | Step::Lapse(h)
            | Step::WaitOver(h)
            | Step::LeaseRefused(h)
            | Step::Verdict(h)
            | Step::VerdictLost(h) => Some(h),
            _ => None,
        }
    }

    /// A step that only time passing brings (a timer, a retry, startup_grace).
    fn is_time(&self) -> bool {
        matches!(
            self,
            Step::RetryDue(_)
                | Step::TimerDue(..)
                | Step::GraceExpired(_)
                | Step::Lapse(_)
                | Step::WaitOver(_)
                | Step::BarOver
        )
    }

    fn is_fault(&self) -> bool {
        matches!(
            self,
            Step::PowerLoss(_)
                | Step::Crash(_)
                | Step::Freeze(_)
                | Step::OperatorStop(_)
                | Step::CutTx(_)
                | Step::CutRx(_)
                | Step::CrossCut
                | Step::BmcDown(_)
                | Step::BmcLies(_)
                | Step::WitnessDown
                | Step::Standby { on: true, .. }
        )
    }
}

/// The model: how many faults a path may have, whether BMCs may lie, which host's data is
/// newer (if either; the preferred host is host 0), and the fencing mode (`lease`:
/// `fence = "lease"` with a witness, else `fence = "bmc"`).
#[derive(Clone, Debug)]
pub struct Protocol {
    pub faults: u8,
    pub lies: bool,
    pub newer: Option<HostId>,
    pub lease: bool,
}

impl Protocol {
    /// Both hosts boot at once (the cold-start race).
    pub fn initial(&self) -> World {
        let mut w = World {
            hosts: [fresh_host(0, 0, self.lease), fresh_host(1, 0, self.lease)],
            bmc: [Bmc::Ok; 2],
            tx: [true; 2],
            rx: [true; 2],
            cross_cut: false,
            faults_left: self.faults,
            dups_left: 1,
            lied: false,
            fenced_without_decision: false,
            fenced_standby: false,
            newer: self.newer,
            lease_mode: self.lease,
            witness: lease::Witness {
                alive: self.lease,
                ..Default::default()
            },
            partition_stopped: false,
        };
        for h in 0..2 {
            start_daemon(&mut w, h, &mut None);
        }
        w
    }

    /// The progress steps enabled in `w` (no faults, no losses), in a fixed order.
    fn progress(w: &World, out: &mut Vec<Step>, with_losses: bool) {
        for h in 0..2 {
            let host = &w.hosts[h];
            let o = other(h);
            if host.daemon != Daemon::Running {
                continue;
            }
            for i in 0..host.inbox.len() {
                if i > 0 && host.inbox[i] == host.inbox[i - 1] {
                    continue;
                }
                out.push(Step::Deliver(h, i));
                if with_losses {
                    out.push(Step::Lose(h, i));
                    if w.dups_left > 0 {
                        out.push(Step::Duplicate(h, i));
                    }
                }
            }
            // A join period (join_timeout, hundreds of ms) outlasts the peer's handover
            // window (a probe deadline and two intervals, ~14 ms).
            if host.join && !w.hosts[o].timers[timer_slot(Timer::Handover)] {
                out.push(Step::JoinDone {
                    h,
                    lose_m: false,
                    lose_p: false,
                });
                if with_losses && w.answers(o, h) {
                    if w.hosts[o].has_m {
                        out.push(Step::JoinDone {
                            h,
                            lose_m: true,
                            lose_p: false,
                        });
                    }
                    if w.hosts[o].has_p {
                        out.push(Step::JoinDone {
                            h,
                            lose_m: false,
                            lose_p: true,
                        });
                    }
                }
            }
            if host.ask {
                out.push(Step::AskDone { h, lost: false });
                if with_losses && w.answers(o, h) {
                    out.push(Step::AskDone { h, lost: true });
                }
            }
            if host.self_check {
                out.push(Step::SelfCheckDone(h));
            }
            if Self::heartbeat_news(w, h).is_some() {
                out.push(Step::Heartbeat(h));
            }
            if Self::newer_monitor(w, h).is_some() {
                out.push(Step::NewerMonitor(h));
            }
            for p in [true, false] {
                if Self::sees_second_holder(w, h, p) {
                    out.push(Step::Check { h, p });
                }
            }
            if matches!(host.boot, Some(BootAction::Off | BootAction::Reboot))
                && !host.accepted
                && w.bmc[o] != Bmc::Down
            {
                out.push(Step::BootAccepted(h));
            }
            if host.boot.is_some() && (host.accepted || w.bmc[o] == Bmc::Down) {
                out.push(Step::BootDone(h));
            }
            if host.boot_on {
                out.push(Step::BootOnDone(h));
            }
            for (i, t) in host.timers.iter().enumerate() {
                // The lease's wait ends only once no grant it counts can still be valid
                // (lease.rs).
                let waiting = i == timer_slot(Timer::LeaseOver) && w.hosts[o].lease.counted;
                if *t && !waiting {
                    out.push(Step::TimerDue(h, i));
                }
            }
            if host.retry {
                out.push(Step::RetryDue(h));
            }
            // startup_grace (30 s) is long against joining and settling a contest: it runs
            // out only while the peer's daemon is down or frozen, or cannot be reached, or
            // stays in standby (the operator's, for as long as it lasts).
            let peer_standby = w.hosts[o].m.role() == failover::role::Role::Standby
                && w.hosts[o].daemon == Daemon::Running;
            if host.grace
                && !host.det_armed
                && !w.heartbeats_answered(o, h)
                && (!w.answers(o, h) || !w.round_trip(h, o) || peer_standby)
            {
                out.push(Step::GraceExpired(h));
            }
        }
        if w.lease_mode {
            lease::progress(w, out, with_losses);
        }
    }

    /// What the liveness tracker of monitor `h` would report now, if anything.
    fn heartbeat_news(w: &World, h: HostId) -> Option<LivenessEvent> {
        let host = &w.hosts[h];
        if !host.monitoring || host.daemon != Daemon::Running {
            return None;
        }
        let answered = w.heartbeats_answered(other(h), h);
        // Armed at the first answer; a first miss, then the limit of misses (the runtime
        // reports every miss, the model the first and the last); recovered when P answers.
        match (answered, host.det_armed, host.det_missed, host.det_failed) {
            (true, false, _, _) => Some(LivenessEvent::Armed),
            (true, true, true, _) => Some(LivenessEvent::Recovered { after: 1 }),
            (false, true, false, _) => Some(LivenessEvent::Missed { consecutive: 1 }),
            (false, true, true, false) => Some(LivenessEvent::Failed { consecutive: 10 }),
            _ => None,
        }
    }

    /// The epoch of the monitor's heartbeats that primary `h` receives, if above its own
    /// (the responder reports each higher epoch once; the machine then raises its own).
    fn newer_monitor(w: &World, h: HostId) -> Option<u64> {
        let (host, mon) = (&w.hosts[h], &w.hosts[other(h)]);
        let epoch = mon.m.epoch();
        (host.daemon == Daemon::Running
            && host.has_p
            && host.m.role() == failover::role::Role::Primary
            && mon.monitoring
            && mon.daemon == Daemon::Running
            && w.path(other(h), h)
            && epoch > host.m.epoch())
        .then_some(epoch)
    }

    /// `h`'s check of an address it holds is answered by the other host, which holds it too.
    fn sees_second_holder(w: &World, h: HostId, p: bool) -> bool {
        // A lapsed lease's gate drops ARP for P both ways.
        let (mine, theirs) = if p {
            (w.serving(h), w.serving(other(h)))
        } else {
            (w.hosts[h].has_m, w.hosts[other(h)].has_m)
        };
        mine && theirs && w.round_trip(h, other(h))
    }

    fn faults(&self, w: &World, out: &mut Vec<Step>) {
        for h in 0..2 {
            let host = &w.hosts[h];
            if host.power && host.daemon == Daemon::Down {
                out.push(Step::Restart(h));
            }
            if host.daemon == Daemon::Frozen {
                out.push(Step::Thaw(h));
            }
            if !w.tx[h] || !w.rx[h] {
                out.push(Step::HealLink(h));
            }
            if w.bmc[h] == Bmc::Down {
                out.push(Step::BmcUp(h));
            }
            if host.standby && host.daemon == Daemon::Running {
                out.push(Step::Standby { h, on: false });
            }
            if w.faults_left == 0 {
                continue;
            }
            // What the runtime accepts: not during a fence or takeover, on a primary only when
            // its monitor could take P (here: the peer runs as monitor); one host at a time
            // (the operator's choice to hold both out leaves nobody to serve).
            let o = &w.hosts[other(h)];
            if host.daemon == Daemon::Running
                && !host.standby
                && !o.standby
                && host.m.may_enter_standby().is_ok()
                && (host.m.role() != failover::role::Role::Primary
                    || (o.daemon == Daemon::Running && o.m.role() == failover::role::Role::Monitor))
            {
                out.push(Step::Standby { h, on: true });
            }
            if host.power {
                out.push(Step::PowerLoss(h));
            }
            if host.daemon == Daemon::Running {
                out.push(Step::Crash(h));
                out.push(Step::Freeze(h));
                out.push(Step::OperatorStop(h));
            }
            if w.tx[h] {
                out.push(Step::CutTx(h));
            }
            if w.rx[h] {
                out.push(Step::CutRx(h));
            }
            if w.bmc[h] == Bmc::Ok {
                out.push(Step::BmcDown(h));
                if self.lies {
                    out.push(Step::BmcLies(h));
                }
            }
        }
        if w.cross_cut {
            out.push(Step::HealCross);
        } else if w.faults_left > 0 {
            out.push(Step::CrossCut);
        }
        if w.lease_mode {
            lease::faults(w, out);
        }
    }

    /// Applies `step`; `log` collects what happened, for traces.
    pub fn apply(&self, w: &mut World, step: &Step, log: &mut Option<&mut Vec<String>>) {
        if step.is_fault() {
            w.faults_left -= 1;
        }
        match *step {
            Step::Deliver(h, i) => {
                let msg = w.hosts[h].inbox.remove(i);
                let input = match msg {
                    Msg::Leaving { role, epoch } => Some(Input::PeerLeaving { role, epoch }),
                    Msg::TakenOver { epoch } => Some(Input::TakenOver { epoch }),
                    // The runtime reports a yield only when this host's data is newer.
                    Msg::Yield => (w.newer == Some(h)).then_some(Input::PeerYielded),
                    Msg::Announce { p } => {
                        let held = if p {
                            w.hosts[h].has_p
                        } else {
                            w.hosts[h].has_m
                        };
                        held.then_some(Input::Contested {
                            addr: if p { Addr::Primary } else { Addr::Monitor },
                            lower_mac: h == 0,
                        })
                    }
                };
                if let Some(i) = input {
                    feed(w, h, i, log);
                }
            }
            Step::Lose(h, i) => {
                w.hosts[h].inbox.remove(i);
            }
            Step::Duplicate(h, i) => {
                w.dups_left -= 1;
                let m = w.hosts[h].inbox[i];
                w.hosts[h].inbox.push(m);
                w.hosts[h].inbox.sort();
            }
            Step::JoinDone { h, lose_m, lose_p } => {
                let o = other(h);
                w.hosts[h].join = false;
                let reach = w.answers(o, h);
                let monitor = (reach && w.hosts[o].has_m && !lose_m).then(|| w.answer(o, h));
                let primary = (reach && w.hosts[o].has_p && !lose_p).then(|| w.answer(o, h));
                // The peer's node address is asked in the same period (it matters for a peer
                // in standby, which the model does not put a host in).
                let peer = reach.then(|| w.answer(o, h));
                feed(
                    w,
                    h,
                    Input::JoinDone {
                        monitor,
                        primary,
                        peer,
                    },
                    log,
                );
            }
            Step::AskDone { h, lost } => {
                let o = other(h);
                w.hosts[h].ask = false;
                let input = if w.answers(o, h) && !lost {
                    Input::PeerSeen(w.answer(o, h))
                } else {
                    Input::PeerSilent
                };
                feed(w, h, input, log);
            }
            Step::SelfCheckDone(h) => {
                w.hosts[h].self_check = false;
                let result = if w.tx[h] && w.rx[h] {
                    SelfCheck::Passed { answered: 1 }
                } else {
                    SelfCheck::WitnessesSilent {
                        answered: 0,
                        needed: 1,
                    }
                };
                feed(w, h, Input::SelfChecked(result), log);
            }
            Step::RetryDue(h) => {
                w.hosts[h].retry = false;
                feed(w, h, Input::RetryDue, log);
            }
            Step::TimerDue(h, i) => {
                w.hosts[h].timers[i] = false;
                feed(w, h, Input::Due(slot_timer(i)), log);
            }
            Step::GraceExpired(h) => {
                w.hosts[h].grace = false;
                w.hosts[h].decided = true;
                feed(w, h, Input::GraceExpired, log);
            }
            Step::Heartbeat(h) => {
                let Some(ev) = Self::heartbeat_news(w, h) else {
                    return;
                };
                let host = &mut w.hosts[h];
                match ev {
                    LivenessEvent::Armed => {
                        host.det_armed = true;
                        host.grace = false;
                        host.decided = false;
                    }
                    LivenessEvent::Recovered { .. } => {
                        host.det_missed = false;
                        host.det_failed = false;
                        host.decided = false;
                    }
                    LivenessEvent::Missed { .. } => host.det_missed = true,
                    LivenessEvent::Failed { .. } => {
                        host.det_failed = true;
                        host.decided = true;
                    }
                }
                feed(w, h, Input::Liveness(ev), log);
            }
            Step::NewerMonitor(h) => {
                if let Some(epoch) = Self::newer_monitor(w, h) {
                    feed(w, h, Input::NewerMonitor { epoch }, log);
                }
            }
            Step::Check { h, p } => {
                let addr = if p { Addr::Primary } else { Addr::Monitor };
                feed(
                    w,
                    h,
                    Input::Contested {
                        addr,
                        lower_mac: h == 0,
                    },
                    log,
                );
            }
            Step::BootAccepted(h) => {
                // Right before the power action the runtime asks the peer whether it is in
                // standby (resent within 20 ms: answered whenever the two reach each other).
                let o = other(h);
                let peer = &w.hosts[o];
                let standby = peer.daemon == Daemon::Running
                    && peer.m.role() == failover::role::Role::Standby;
                if standby && w.answers(o, h) && !peer.has_p && !peer.has_m {
                    let epoch = peer.m.epoch();
                    w.hosts[h].boot = None;
                    feed(w, h, Input::PeerInStandby { epoch }, log);
                    return;
                }
                if standby && w.answers(o, h) {
                    w.fenced_standby = true;
                }
                w.hosts[h].accepted = true;
                feed(w, h, Input::BootAccepted, log);
            }
            Step::BootDone(h) => {
                let o = other(h);
                let Some(action) = w.hosts[h].boot.take() else {
                    return;
                };
                let ok = match w.bmc[o] {
                    Bmc::Down => false,
                    Bmc::Lies => {
                        if w.hosts[o].power {
                            w.lied = true;
                        }
                        true
                    }
                    Bmc::Ok => {
                        power_off(w, o);
                        if action == BootAction::Reboot {
                            start_daemon(w, o, log);
                        }
                        true
                    }
                };
                feed(w, h, Input::BootDone { action, ok }, log);
            }
            Step::BootOnDone(h) => {
                let o = other(h);
                w.hosts[h].boot_on = false;
                let ok = w.bmc[o] != Bmc::Down;
                if w.bmc[o] == Bmc::Ok && !w.hosts[o].power {
                    start_daemon(w, o, log);
                }
                feed(
                    w,
                    h,
                    Input::BootDone {
                        action: BootAction::On,
                        ok,
                    },
                    log,
                );
            }
            Step::PowerLoss(h) => power_off(w, h),
            Step::Crash(h) => daemon_gone(w, h),
            Step::Restart(h) => start_daemon(w, h, log),
            Step::Freeze(h) => w.hosts[h].daemon = Daemon::Frozen,
            Step::Thaw(h) => w.hosts[h].daemon = Daemon::Running,
            Step::OperatorStop(h) => {
                feed(w, h, Input::Shutdown, log);
                // The runtime releases whatever is still held before it exits.
                w.hosts[h].has_p = false;
                w.hosts[h].has_m = false;
                w.hosts[h].lease = lease::Lease::default();
                daemon_gone(w, h);
            }
            Step::CutTx(h) => w.tx[h] = false,
            Step::CutRx(h) => w.rx[h] = false,
            Step::HealLink(h) => {
                w.tx[h] = true;
                w.rx[h] = true;
            }
            Step::CrossCut => w.cross_cut = true,
            Step::HealCross => w.cross_cut = false,
            Step::BmcDown(h) => w.bmc[h] = Bmc::Down,
            Step::BmcUp(h) => w.bmc[h] = Bmc::Ok,
            Step::BmcLies(h) => w.bmc[h] = Bmc::Lies,
            Step::Standby { h, on } => {
                if !on {
                    // Timing (an operator's command, against datagrams): what was in flight
                    // to this host was delivered (and ignored in standby) or lost before it
                    // leaves standby, and so were its notices (`leaving` as primary, monitor or
                    // standby), as datagrams before a restart.
                    w.hosts[h].inbox.clear();
                    w.hosts[other(h)]
                        .inbox
                        .retain(|m| !matches!(m, Msg::Leaving { .. }));
                }
                w.hosts[h].standby = on;
                feed(w, h, Input::Standby { on }, log);
            }
            Step::Renew(_)
            | Step::Lapse(_)
            | Step::WaitOver(_)
            | Step::LeaseRefused(_)
            | Step::Verdict(_)
            | Step::VerdictLost(_)
            | Step::WitnessDown
            | Step::WitnessUp
            | Step::BarOver => lease::apply(w, step, log),
        }
    }

    /// Heals everything (links, BMCs, frozen and stopped daemons on powered hosts) and runs
    /// the progress steps in a fixed order until nothing is left to do (or `limit` steps).
    pub fn settle(&self, w: &World, limit: usize) -> World {
        self.settle_logged(w, limit, &mut None)
    }

    fn settle_logged(&self, w: &World, limit: usize, log: &mut Option<&mut Vec<String>>) -> World {
        let mut w = w.clone();
        w.tx = [true; 2];
        w.rx = [true; 2];
        w.cross_cut = false;
        w.bmc = [Bmc::Ok; 2];
        w.faults_left = 0;
        if w.lease_mode && !w.witness.alive {
            lease::witness_up(&mut w);
        }
        for h in 0..2 {
            match w.hosts[h].daemon {
                Daemon::Frozen => w.hosts[h].daemon = Daemon::Running,
                Daemon::Down if w.hosts[h].power => start_daemon(&mut w, h, log),
                _ => {}
            }
        }
        // A fair schedule: the hosts take turns, and time passes (timers, retries) only when
        // a host has nothing else to do.
        let mut steps = Vec::new();
        let mut last = 1;
        for _ in 0..limit {
            steps.clear();
            Self::progress(&w, &mut steps, false);
            let turn = |h: HostId, time: bool| {
                steps
                    .iter()
                    .find(|s| s.host() == Some(h) && s.is_time() == time)
                    .cloned()
            };
            let o = other(last);
            // The witness's time (its bar after an agreement) runs as the hosts' does.
            let witness_time = || {
                steps
                    .iter()
                    .find(|s| s.host().is_none() && s.is_time())
                    .cloned()
            };
            let Some(s) = turn(o, false)
                .or_else(|| turn(last, false))
                .or_else(witness_time)
                .or_else(|| turn(o, true))
                .or_else(|| turn(last, true))
            else {
                break;
            };
            last = s.host().unwrap_or(last);
            if let Some(l) = log.as_deref_mut() {
                l.push(format!("  settle: {s:?}"));
            }
            self.apply(&mut w, &s, log);
            if let Some(l) = log.as_deref_mut() {
                l.push(format!("     => {}", summary(&w)));
            }
        }
        w
    }

    /// A readable trace of `steps` from the initial state.
    pub fn trace(&self, steps: &[Step]) -> String {
        let mut w = self.initial();
        let mut out = String::from("start: both hosts boot at once\n");
        for (i, s) in steps.iter().enumerate() {
            let mut log = Vec::new();
            self.apply(&mut w, s, &mut Some(&mut log));
            out.push_str(&format!("{:>3}. {s:?}\n", i + 1));
            for l in log {
                out.push_str(&l);
                out.push('\n');
            }
            out.push_str(&format!("     => {}\n", summary(&w)));
        }
        let mut log = Vec::new();
        let settled = self.settle_logged(&w, SETTLE_LIMIT, &mut Some(&mut log));
        out.push_str("then, healed and left alone (the steps a liveness check takes):\n");
        let n = log.len();
        for l in log.iter().take(80) {
            out.push_str(l);
            out.push('\n');
        }
        if n > 80 {
            out.push_str(&format!("  ... {} more lines\n", n - 80));
        }
        out.push_str(&format!("settles to: {}\n", summary(&settled)));
        out
    }
}

/// One line per state: each host's power, daemon, role, epoch and addresses.
pub fn summary(w: &World) -> String {
    let host = |h: HostId| {
        let x = &w.hosts[h];
        format!(
            "{}: {}{} {} e{}{}{}",
            name(h),
            if x.power { "" } else { "OFF " },
            match x.daemon {
                Daemon::Running => "",
                Daemon::Frozen => "frozen ",
                Daemon::Down => "down ",
            },
            x.m.role().name(),
            x.m.epoch(),
            if x.has_p { " +P" } else { "" },
            if x.has_m { " +M" } else { "" },
        )
    };
    let mut net = String::new();
    for h in 0..2 {
        if !w.tx[h] {
            net.push_str(&format!(" {}-tx-cut", name(h)));
        }
        if !w.rx[h] {
            net.push_str(&format!(" {}-rx-cut", name(h)));
        }
    }
    if w.cross_cut {
        net.push_str(" cross-cut");
    }
    format!("{} | {}{net}{}", host(0), host(1), lease::summary(w))
}

/// Steps a settle run may take: enough for any rejoin and takeover in this model.
const SETTLE_LIMIT: usize = 400;

impl Model for Protocol {
    type State = World;
    type Action = Step;

    fn init_states(&self) -> Vec<World> {
        vec![self.initial()]
    }

    fn actions(&self, w: &World, out: &mut Vec<Step>) {
        Self::progress(w, out, true);
        self.faults(w, out);
    }

    fn next_state(&self, w: &World, step: Step) -> Option<World> {
        let mut next = w.clone();
        self.apply(&mut next, &step, &mut None);
        Some(next)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut p = shared_properties();
        if self.lease {
            p.extend(lease::properties());
        } else {
            p.push(Property::sometimes(
                "two servers after a lie",
                |_, w: &World| w.lied && w.serving(0) && w.serving(1),
            ));
        }
        p
    }
}

/// What a check found.
#[derive(Debug)]
pub struct Outcome {
    /// The depth explored (steps from the cold start).
    pub depth: usize,
    /// States generated, and distinct states.
    pub states: usize,
    pub unique: usize,
    /// Seconds taken.
    pub seconds: f64,
    /// Properties violated, each with a readable trace of the shortest path found.
    pub violations: Vec<(String, String)>,
    /// The `sometimes` properties an example was found for (coverage).
    pub examples: Vec<String>,
}

/// The properties that only need an example (coverage), not a proof (both modes').
pub const SOMETIMES: [&str; 7] = [
    "a fenced takeover",
    "the peer of a host in standby serves alone",
    "two servers after a lie",
    "the newer data serves first",
    "a lease takeover",
    "a refused revoke",
    "the witness-dead fallback",
];

/// The properties both modes check (`fence = "lease"` adds its own: `lease::properties`;
/// `fence = "bmc"` the lie's coverage).
pub(crate) fn shared_properties() -> Vec<Property<Protocol>> {
    vec![
        Property::always("one server of P", |_, w: &World| {
            w.lied || !(w.serving(0) && w.serving(1))
        }),
        Property::always("no fence without a failure", |_, w: &World| {
            !w.fenced_without_decision
        }),
        Property::always("the stale primary steps down", |m: &Protocol, w: &World| {
            if !(w.serving(0) && w.serving(1)) {
                return true;
            }
            let s = m.settle(w, SETTLE_LIMIT);
            !(s.serving(0) && s.serving(1))
        }),
        Property::always("someone serves P", |m: &Protocol, w: &World| {
            if !w.hosts[0].power && !w.hosts[1].power {
                return true; // nothing can serve until someone powers a host on
            }
            if (0..2).any(|h| w.hosts[h].standby && !w.hosts[other(h)].power) {
                // The only host with power is held out by the operator.
                return true;
            }
            let s = m.settle(w, SETTLE_LIMIT);
            s.serving(0) != s.serving(1)
        }),
        Property::always(
            "a running host in standby is never fenced",
            |_, w: &World| !w.fenced_standby,
        ),
        Property::sometimes(
            "the peer of a host in standby serves alone",
            |_, w: &World| {
                (0..2).any(|h| {
                    w.hosts[h].m.role() == failover::role::Role::Standby
                        && w.hosts[h].daemon == Daemon::Running
                        && w.serving(other(h))
                })
            },
        ),
        Property::sometimes("a fenced takeover", |_, w: &World| {
            // The monitor took P over from a primary it fenced: the coverage the checks
            // above mean something for.
            (0..2).any(|h| w.serving(h) && w.hosts[h].m.epoch() >= 2 && !w.hosts[other(h)].power)
        }),
        Property::sometimes("the newer data serves first", |_, w: &World| {
            // The host with the newer data (not the preferred one) is the first primary.
            w.newer.is_some_and(|h| {
                w.serving(h) && w.hosts[h].m.epoch() == 1 && w.hosts[other(h)].power
            })
        }),
    ]
}

/// Checks `model` to `depth` steps on `threads` threads.
pub fn check(model: &Protocol, depth: usize, threads: usize) -> Outcome {
    use stateright::Checker as _;
    let started = std::time::Instant::now();
    let c = model
        .clone()
        .checker()
        .threads(threads)
        .target_max_depth(depth)
        .spawn_bfs()
        .join();
    let discoveries = c.discoveries();
    let mut violations: Vec<(String, String)> = discoveries
        .iter()
        .filter(|(name, _)| !SOMETIMES.contains(name))
        .map(|(name, path)| (name.to_string(), model.trace(&path.clone().into_actions())))
        .collect();
    violations.sort();
    let examples = SOMETIMES
        .iter()
        .filter(|n| discoveries.contains_key(*n))
        .map(|n| n.to_string())
        .collect();
    Outcome {
        depth,
        states: c.state_count(),
        unique: c.unique_state_count(),
        seconds: started.elapsed().as_secs_f64(),
        violations,
        examples,
    }
}
