//! The world the two role machines live in: hosts (power, daemon, addresses on the
//! interface, the runtime's pending work), the network between them, and their BMCs.
//!
//! Everything is a plain value with `Hash` and `Eq`, so the checker can tell states apart.
use failover::role::{
    Addr, Answer, BootAction, Machine, Revocation, Timer, FLAG_HOLDS_M, FLAG_HOLDS_P,
    FLAG_NEWER_DATA, FLAG_OLDER_DATA, FLAG_PREFERRED, FLAG_TAKES_YIELD,
};

pub use crate::lease::{Lease, WPrimary, Witness};

/// Host index: 0 is A (preferred primary, lower MAC, node id 1), 1 is B (node id 2).
pub type HostId = usize;

/// The other host.
pub fn other(h: HostId) -> HostId {
    1 - h
}

/// The name of a host in traces.
pub fn name(h: HostId) -> &'static str {
    ["a", "b"][h]
}

/// The state of a host's daemon.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Daemon {
    /// Running and handling inputs.
    Running,
    /// SIGSTOP: keeps its state and sockets, handles nothing until thawed.
    Frozen,
    /// Not running (crashed, stopped by the operator, or the host is off).
    Down,
}

/// What a BMC does with requests.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Bmc {
    /// Does what it is asked, and reports it truly.
    Ok,
    /// Unreachable: every request fails.
    Down,
    /// Reports Off without powering the host off (the separately reported case).
    Lies,
}

/// A datagram or frame in flight to a host.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Msg {
    /// The peer's `leaving` notice (planned stop).
    Leaving { role: u8, epoch: u64 },
    /// The peer's `taken over` notice.
    TakenOver { epoch: u64 },
    /// The peer's announcement (GARP / NA) of an address.
    Announce { p: bool },
    /// The joining peer leaves P to this host (its data is newer).
    Yield,
}

/// A host.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Host {
    pub power: bool,
    pub daemon: Daemon,
    /// The role machine (meaningful while the daemon is not Down).
    pub m: Machine,
    /// The epoch file.
    pub persisted: u64,
    /// P and M on the interface.
    pub has_p: bool,
    pub has_m: bool,
    /// Runtime work in flight (each reports one input when it completes).
    pub join: bool,
    pub ask: bool,
    pub self_check: bool,
    pub retry: bool,
    pub grace: bool,
    /// The fence / reboot in flight, and whether its power action left (`BootAccepted`).
    pub boot: Option<BootAction>,
    pub accepted: bool,
    /// A power-on of the peer in flight (runs alongside).
    pub boot_on: bool,
    /// The machine's timers: defend windows of P and M, the fence delay, the handover, the
    /// end of a revoked lease.
    pub timers: [bool; 5],
    /// The monitor probes P; the liveness tracker's view.
    pub monitoring: bool,
    pub det_armed: bool,
    /// At least one miss in a row, and the limit reached.
    pub det_missed: bool,
    pub det_failed: bool,
    /// A failure decision (misses or startup_grace) is current: taken while the peer was not
    /// serving and reachable, not yet undone by a recovery.
    pub decided: bool,
    /// Messages in flight to this host (a multiset: any may be delivered first).
    pub inbox: Vec<Msg>,
    /// `failover standby on` in the state file: a restarted daemon resumes it.
    pub standby: bool,
    /// `fence = "lease"`: the lease of P on this host (the kernel gate and the keeper).
    pub lease: Lease,
    /// `fence = "lease"`: the highest epoch this daemon's grantor granted (0: none).
    pub own_granted: u64,
    /// `fence = "lease"`: the witness's answer to this host's revoke request, on its way
    /// back (the runtime's revoke job reports it as `Input::Revoked`).
    pub verdict: Option<Revocation>,
}

/// The timer's slot.
pub fn timer_slot(t: Timer) -> usize {
    match t {
        Timer::DefendWindow(Addr::Primary) => 0,
        Timer::DefendWindow(Addr::Monitor) => 1,
        Timer::FenceDelay => 2,
        Timer::Handover => 3,
        Timer::LeaseOver => 4,
        Timer::MaintenanceOver => unreachable!("maintenance is an operator's, not modelled"),
    }
}

/// The timer in a slot.
pub fn slot_timer(i: usize) -> Timer {
    [
        Timer::DefendWindow(Addr::Primary),
        Timer::DefendWindow(Addr::Monitor),
        Timer::FenceDelay,
        Timer::Handover,
        Timer::LeaseOver,
    ][i]
}

/// The whole world.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct World {
    pub hosts: [Host; 2],
    pub bmc: [Bmc; 2],
    /// Frames a host sends leave it (its transmit side works).
    pub tx: [bool; 2],
    /// Frames reach a host (its receive side works).
    pub rx: [bool; 2],
    /// The two hosts cannot reach each other, but both reach the witness.
    pub cross_cut: bool,
    /// Faults still allowed on this path.
    pub faults_left: u8,
    /// Duplications still allowed.
    pub dups_left: u8,
    /// A BMC reported Off for a host that stayed on.
    pub lied: bool,
    /// Violations, recorded when they happen (checked by the properties).
    pub fenced_without_decision: bool,
    /// A fence or reboot was asked for while the peer's daemon ran in standby.
    pub fenced_standby: bool,
    /// The host whose data is newer (join answers say so), if either.
    pub newer: Option<HostId>,
    /// `fence = "lease"` (both hosts; the lease and the witness below are used only then).
    pub lease_mode: bool,
    /// The third party of `fence = "lease"`.
    pub witness: Witness,
    /// Violation, recorded when it happens: with the two hosts lost only to each other, a
    /// primary the witness reaches was fenced, or its lease revoked or let lapse.
    pub partition_stopped: bool,
}

impl World {
    /// Frames from `a` reach `b`.
    pub fn path(&self, a: HostId, b: HostId) -> bool {
        self.tx[a] && self.rx[b] && !self.cross_cut && self.hosts[a].power && self.hosts[b].power
    }

    /// A round trip between the two works.
    pub fn round_trip(&self, a: HostId, b: HostId) -> bool {
        self.path(a, b) && self.path(b, a)
    }

    /// `h` is on and P is on its interface.
    pub fn holds_p(&self, h: HostId) -> bool {
        self.hosts[h].power && self.hosts[h].has_p
    }

    /// `h` serves P: it is on and P is on its interface (its kernel answers there, whatever
    /// its daemon does), and with `fence = "lease"` its lease is valid (the kernel gate
    /// stops P's traffic, ARP and neighbour discovery of P included, once it has lapsed).
    pub fn serving(&self, h: HostId) -> bool {
        self.holds_p(h) && (!self.lease_mode || self.hosts[h].lease.valid)
    }

    /// `h`'s daemon answers heartbeats on P, and `from` hears it (the lease gate lets the
    /// pair's heartbeats through: a lapsed primary's daemon still answers them).
    pub fn heartbeats_answered(&self, h: HostId, from: HostId) -> bool {
        self.holds_p(h) && self.hosts[h].daemon == Daemon::Running && self.round_trip(from, h)
    }

    /// What `h` says about itself in answers to `to`.
    pub fn answer(&self, h: HostId, to: HostId) -> Answer {
        let host = &self.hosts[h];
        let mut flags = 0;
        if self.newer == Some(h) {
            flags |= FLAG_NEWER_DATA;
        }
        if self.newer == Some(to) {
            flags |= FLAG_OLDER_DATA;
        }
        if host.m.takes_yield() {
            flags |= FLAG_TAKES_YIELD;
        }
        if h == 0 {
            flags |= FLAG_PREFERRED;
        }
        if host.has_p {
            flags |= FLAG_HOLDS_P;
        }
        if host.has_m {
            flags |= FLAG_HOLDS_M;
        }
        Answer {
            role: host.m.role().code(),
            epoch: host.m.epoch(),
            node: h as u32 + 1,
            flags,
        }
    }

    /// `h` can answer a request from `from` now (its daemon runs, the round trip works).
    pub fn answers(&self, h: HostId, from: HostId) -> bool {
        self.hosts[h].daemon == Daemon::Running && self.round_trip(from, h)
    }

    /// Sends `msg` from `from` to the other host: queued if the path works now, else lost.
    pub fn send(&mut self, from: HostId, msg: Msg) {
        let to = other(from);
        if self.path(from, to)
            && self.hosts[to].daemon != Daemon::Down
            && self.hosts[to].inbox.len() < 4
        {
            let inbox = &mut self.hosts[to].inbox;
            inbox.push(msg);
            inbox.sort();
        }
    }
}
