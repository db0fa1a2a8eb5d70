//! The role state machine of docs/design.md ("Protocol"): pure code, inputs in, actions out.
//! The types are here; the machine and its rules are in `machine.rs`.
//!
//! The runtime executes the actions in order and feeds their results back as inputs. Nothing
//! here does I/O, so every claim is testable without root. Two rules are enforced here by
//! construction: a monitor never claims P before a fence was confirmed (or the operator opted
//! out of fencing), and a joining host never claims P unless a live monitor answered at M while
//! P stayed silent.
use std::time::Duration;

mod defence;
mod fence;
mod health;
mod machine;
mod maintenance;
mod revoke;
mod standby;
mod switchover;

use crate::{detector::LivenessEvent, event::Event};

pub use machine::Machine;

/// A role (the state of the machine).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// After start: sends the join probe (second signal) to M and waits `join_timeout`.
    Joining,
    /// Holds P and serves.
    Primary,
    /// Holds M and signals P.
    Monitor,
    /// Boots (fences) the failed primary through its BMC.
    Booting,
    /// Releases M and claims P.
    TakingOver,
    /// Someone else answers on both P and M; holds nothing.
    Conflict,
    /// `failover standby on`: holds nothing, monitors and fences nobody, and tells a joining
    /// peer so (it then serves alone).
    Standby,
}

impl Role {
    /// Lower-case name used in events, status and hook environments.
    pub fn name(self) -> &'static str {
        match self {
            Role::Joining => "joining",
            Role::Primary => "primary",
            Role::Monitor => "monitor",
            Role::Booting => "booting",
            Role::TakingOver => "taking_over",
            Role::Conflict => "conflict",
            Role::Standby => "standby",
        }
    }

    /// The role with `code`, if any.
    pub fn from_code(code: u8) -> Option<Role> {
        [
            Role::Joining,
            Role::Primary,
            Role::Monitor,
            Role::Booting,
            Role::TakingOver,
            Role::Conflict,
            Role::Standby,
        ]
        .into_iter()
        .find(|r| r.code() == code)
    }

    /// Code carried in heartbeat and join replies.
    pub fn code(self) -> u8 {
        match self {
            Role::Joining => 1,
            Role::Primary => 2,
            Role::Monitor => 3,
            Role::Booting => 4,
            Role::TakingOver => 5,
            Role::Conflict => 6,
            Role::Standby => 7,
        }
    }
}

/// One of the two floating addresses.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Addr {
    /// P, the service address.
    Primary,
    /// M, the monitor address.
    Monitor,
}

impl Addr {
    /// 0 for P, 1 for M (for per-address arrays).
    pub fn index(self) -> usize {
        match self {
            Addr::Primary => 0,
            Addr::Monitor => 1,
        }
    }
}

/// What the boot method is asked to do to the peer.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum BootAction {
    /// Power off and confirm it is off (the fence).
    Off,
    /// Power on.
    On,
    /// Restart (recovery without takeover).
    Reboot,
}

impl BootAction {
    /// The word passed to a boot command.
    pub fn name(self) -> &'static str {
        match self {
            BootAction::Off => "off",
            BootAction::On => "on",
            BootAction::Reboot => "reboot",
        }
    }
}

/// An operator hook.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    /// After becoming primary.
    OnPrimary,
    /// After becoming monitor.
    OnMonitor,
    /// On a fault, and which (`FAILOVER_REASON`).
    OnFault(Fault),
    /// After a planned switchover settled: true when the peer took P (`switchover_done`).
    OnSwitchover(bool),
    /// When the daemon stops, after it released its addresses.
    OnStop,
}

/// Why `on_fault` runs: its `FAILOVER_REASON`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// A fence (off, confirmed) failed at every level.
    FenceFailed,
    /// A reboot or power-on of the peer failed.
    BootFailed,
    /// The self-check before a fence failed: this host may be the cut-off one.
    Isolated,
    /// Both hosts claim a role, or P answers although its host was fenced.
    Conflict,
    /// This host gave up its role (a newer primary, a revoked lease, ...).
    Demoted,
    /// The witness refused to revoke the primary's lease: only the hosts' link failed.
    RevokeRefused,
    /// A service health check failed.
    CheckFailed,
}

impl Fault {
    /// The `FAILOVER_REASON` value.
    pub fn name(self) -> &'static str {
        match self {
            Fault::FenceFailed => "fence_failed",
            Fault::BootFailed => "boot_failed",
            Fault::Isolated => "isolated",
            Fault::Conflict => "conflict",
            Fault::Demoted => "demoted",
            Fault::RevokeRefused => "revoke_refused",
            Fault::CheckFailed => "check_failed",
        }
    }
}

/// What a host says about itself in its messages (join answers, the peer's answers to
/// `AskPeer`, takeover notices).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Answer {
    /// Responder's role code.
    pub role: u8,
    /// Responder's epoch.
    pub epoch: u64,
    /// Responder's node id.
    pub node: u32,
    /// `FLAG_*` bits: preferred primary, holds P, holds M.
    pub flags: u8,
}

/// The sender is the preferred primary (`preferred_primary`).
pub const FLAG_PREFERRED: u8 = 1 << 0;
/// The sender holds P.
pub const FLAG_HOLDS_P: u8 = 1 << 1;
/// The sender holds M.
pub const FLAG_HOLDS_M: u8 = 1 << 2;
/// In a join answer: the sender's data is newer than the asker's (by the epoch it was served
/// at, then the copy's generation; see `sync::Store::data_mark`).
pub const FLAG_NEWER_DATA: u8 = 1 << 3;
/// In a join answer: the sender's data is older than the asker's.
pub const FLAG_OLDER_DATA: u8 = 1 << 4;
/// The sender is a monitor that takes P when the joining peer leaves it P
/// (`Machine::takes_yield`).
pub const FLAG_TAKES_YIELD: u8 = 1 << 5;

impl Answer {
    /// Whether the sender says it holds `addr`.
    pub fn holds(&self, addr: Addr) -> bool {
        let bit = match addr {
            Addr::Primary => FLAG_HOLDS_P,
            Addr::Monitor => FLAG_HOLDS_M,
        };
        self.flags & bit != 0
    }

    /// Whether the sender is the preferred primary.
    pub fn preferred(&self) -> bool {
        self.flags & FLAG_PREFERRED != 0
    }

    /// Whether the sender takes P if this host, joining, leaves it P.
    pub fn takes_yield(&self) -> bool {
        self.flags & FLAG_TAKES_YIELD != 0
    }

    /// How the sender's data compares with this host's (equal when neither has `[sync]`).
    pub fn data(&self) -> std::cmp::Ordering {
        if self.flags & FLAG_NEWER_DATA != 0 {
            std::cmp::Ordering::Greater
        } else if self.flags & FLAG_OLDER_DATA != 0 {
            std::cmp::Ordering::Less
        } else {
            std::cmp::Ordering::Equal
        }
    }
}

/// A timer the machine schedules (`Action::Schedule`), reported back as `Input::Due`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// The defence window of a contested address is over: the next claim by another host
    /// starts a new contest.
    DefendWindow(Addr),
    /// `boot.fence_delay` is over: the delayed first fence may go ahead.
    FenceDelay,
    /// The handover window after the primary's `leaving` is over without a missed
    /// heartbeat: P still answers, so the notice was stale.
    Handover,
    /// `fence = "lease"`: no grant of the failed primary's lease can be outstanding any more
    /// (the wait `Revocation::Agreed` gave): P may be claimed.
    LeaseOver,
    /// `failover maintenance on --for D` ran out: maintenance ends.
    MaintenanceOver,
}

/// `fence = "lease"`: what the witness answered the monitor's revoke request
/// (`Action::Revoke`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Revocation {
    /// The witness had stopped hearing the primary too, and revoked every epoch up to `epoch`
    /// (persisted): no grantor renews the lease any more. `wait` is how long a grant either
    /// grantor gave may still run (`lease::takeover_at`, from this host's clock).
    Agreed {
        /// From now until the lease is provably over.
        wait: Duration,
        /// The epoch the witness revoked up to (the next primary's must be above it).
        epoch: u64,
    },
    /// The witness still hears the primary (the two hosts lost only each other): no fence,
    /// the primary keeps serving.
    Refused {
        /// How long before its answer the witness last heard the primary.
        heard_ago: Duration,
    },
    /// The witness did not answer: the takeover falls back to the BMC (wait for Off).
    Unreachable,
    /// The witness revoked every epoch up to `epoch`, but neither it nor this host ever
    /// granted the primary of this host's epoch a lease (it failed before its gate was
    /// attached): its kernel may serve P without one. The takeover falls back to the BMC.
    NoLease {
        /// The epoch the witness revoked up to.
        epoch: u64,
    },
}

/// Inputs to the machine.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Input {
    /// The daemon started (after boot).
    Start,
    /// The join period ended: who answered at M and at P.
    JoinDone {
        /// Answer from M, if any.
        monitor: Option<Answer>,
        /// Answer from P, if any.
        primary: Option<Answer>,
        /// Answer from the peer's node address, asked in the same period: a peer in standby
        /// holds neither address and says so here.
        peer: Option<Answer>,
    },
    /// The liveness tracker's conclusion about P.
    Liveness(LivenessEvent),
    /// `startup_grace` ran out without P ever answering.
    GraceExpired,
    /// A boot action finished. For `Off`, `ok` means power state Off was confirmed.
    BootDone {
        /// Which action.
        action: BootAction,
        /// Done (and confirmed).
        ok: bool,
    },
    /// An address claim finished; `ok = false` is a conflict (someone else holds it).
    Claimed {
        /// Which address.
        addr: Addr,
        /// Claimed without conflict.
        ok: bool,
    },
    /// A scheduled retry is due.
    RetryDue,
    /// The self-check before a fence finished.
    SelfChecked(SelfCheck),
    /// The power action is leaving (the reset request is being sent to the BMC, the fence
    /// command is starting): the peer may be going down, so the fence is no longer cancelled
    /// until this attempt has ended.
    BootAccepted,
    /// The peer says it is stopping on purpose (its daemon got SIGTERM): it released what it
    /// held.
    PeerLeaving {
        /// The peer's role code.
        role: u8,
        /// The peer's epoch.
        epoch: u64,
    },
    /// Another host's frame shows an address this host holds: an ARP reply or announcement,
    /// an IPv6 neighbour advertisement (duplicate-address probes are answered by the kernel
    /// and are not reported).
    Contested {
        /// The address.
        addr: Addr,
        /// This host's MAC is lower than the other host's (the tie-break when the peer cannot
        /// be asked).
        lower_mac: bool,
    },
    /// The peer's answer to `AskPeer`.
    PeerSeen(Answer),
    /// The peer did not answer `AskPeer`.
    PeerSilent,
    /// The peer says it took P over, at `epoch` (it fenced this host, or believes so).
    TakenOver {
        /// The new primary's epoch.
        epoch: u64,
    },
    /// The monitor's heartbeat probes carry `epoch`, above this host's: the monitor was
    /// primary after this host became primary (a fence that did not remove this host).
    NewerMonitor {
        /// The monitor's epoch.
        epoch: u64,
    },
    /// The joining peer leaves P to this host, whose data is newer (a `yield` notice; the
    /// runtime reports it only when this host's data mark is above the one it carries).
    PeerYielded,
    /// The witness's answer to `Action::Revoke`.
    Revoked(Revocation),
    /// The peer is in standby and holds nothing: its notice (a `leaving` with the standby
    /// role), or its answer to the question the runtime asks right before a power action.
    PeerInStandby {
        /// Its epoch.
        epoch: u64,
    },
    /// `failover standby on|off`. The runtime accepts `on` only outside a fence
    /// (`Machine::may_enter_standby`), and on a primary only when the monitor can take P.
    Standby {
        /// On or off.
        on: bool,
    },
    /// The service health checks that matter to a monitor (`[[check]]`): all passing (`ok`),
    /// or one failed. While one fails, a monitor fences nobody and takes nothing over.
    Health {
        /// All passing.
        ok: bool,
    },
    /// `failover maintenance on|off` (`for_`: ends by itself after that long). In
    /// maintenance a monitor judges nothing: no failure decision, no fence, no takeover
    /// (a `leaving` primary included); probes, metrics and copies go on. The runtime accepts
    /// `on` only outside a fence (`Machine::may_enter_maintenance`).
    Maintenance {
        /// On or off.
        on: bool,
        /// How long it lasts (none: until turned off).
        for_: Option<Duration>,
    },
    /// `failover switchover`: the primary hands P to the monitor without a fence and becomes
    /// its monitor (`switchover.rs`). The runtime checks the preconditions first
    /// (`Machine::may_switch_over`, the monitor alive, its copy fresh, the witness there).
    Switchover,
    /// `boot.lease`: this primary's lease at `epoch` lapsed, and the witness refuses to renew
    /// it because that epoch was revoked (a monitor decided this host failed, then cancelled
    /// or died). No grant can come back at that epoch: the primary rejoins, to serve again
    /// at a new one.
    LeaseRevoked {
        /// The keeper's epoch.
        epoch: u64,
    },
    /// A timer scheduled with `Action::Schedule` is due.
    Due(Timer),
    /// Clean shutdown.
    Shutdown,
}

/// The outcome of the self-check: is this host's own side working?
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum SelfCheck {
    /// The interface is up with carrier, and enough witnesses answered (`answered`; 0 when
    /// there are none to ask).
    Passed {
        /// Witnesses that answered.
        answered: u8,
    },
    /// The service interface is down or has no carrier.
    NoCarrier,
    /// Too few witnesses answered.
    WitnessesSilent {
        /// Witnesses that answered.
        answered: u8,
        /// Witnesses needed (`witness.min`).
        needed: u8,
    },
}

/// An event worth recording, with its human detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The stable event.
    pub event: Event,
    /// Human detail.
    pub detail: String,
}

/// Actions for the runtime, executed in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the join probe to M (and P) and report `JoinDone` after `join_timeout`, or after
    /// twice that when `doubled`.
    SendJoin {
        /// Listen for two join periods (the preferred primary's first join).
        doubled: bool,
    },
    /// Claim an address (duplicate-address probe, add, announce); report `Claimed`.
    Claim(Addr),
    /// Release an address.
    Release(Addr),
    /// Start signalling P and judging replies; arm the startup grace timer.
    StartMonitoring,
    /// Stop signalling P.
    StopMonitoring,
    /// Run a boot action on the peer; report `BootDone`.
    Boot(BootAction),
    /// Run a hook.
    Hook(Hook),
    /// Increment and persist the epoch.
    BumpEpoch,
    /// Report `RetryDue` after this delay.
    Retry(Duration),
    /// Check that this host is not the isolated one (carrier, witnesses); report
    /// `SelfChecked`.
    SelfCheck,
    /// Forget the failure decision and judge P afresh: a new failure needs a full window of
    /// misses (and a new `startup_grace` if P never answered). After this host's own
    /// isolation ended, since misses seen while it was cut off prove nothing about P.
    Rejudge,
    /// Abandon the boot action (or revoke request) in flight (the peer has not accepted a
    /// power-off).
    CancelBoot,
    /// `fence = "lease"`: this host has stopped granting the primary's lease (`Machine::grants`
    /// is false from this step on); note how long its last grant may run, ask the witness to
    /// revoke the lease, and report `Revoked`.
    Revoke,
    /// Tell the peer this host is stopping on purpose, or handing P over, as this role
    /// (a primary's `leaving` lets the monitor take P without a fence).
    SendLeaving(Role),
    /// Send one announcement (GARP / unsolicited NA) of an address this host holds.
    Defend(Addr),
    /// Ask the peer (at its node address) what it is and holds; report `PeerSeen` or
    /// `PeerSilent`.
    AskPeer,
    /// Tell the monitor (at M) that this joining host leaves P to it: its data is newer.
    SendYield,
    /// Tell the old primary (at its node address) that this host took P over at the current
    /// epoch.
    SendTakenOver,
    /// Report `Due(timer)` after this delay (replacing a pending one of the same timer).
    Schedule(Timer, Duration),
    /// Record an event.
    Emit(Notice),
}

/// What the operator configured that the protocol rules depend on.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Policy {
    /// Fence and take P over (true) or only reboot the primary (false).
    pub takeover: bool,
    /// No fencing at all (boot method "none").
    pub no_fence: bool,
    /// `boot.fence = "lease"`: take P once the primary's lease is provably over (the witness
    /// revoked it), then reset the old primary through the BMC in the background; without an
    /// answer from the witness, fence through the BMC as usual.
    pub lease_fence: bool,
    /// Take P even when the fence failed (explicit operator opt-out).
    pub allow_unfenced: bool,
    /// First retry delay.
    pub retry: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// This host is the preferred primary (`preferred_primary`): its first join listens
    /// twice as long, so that at a cold start the other host claims M first and this one
    /// hears it and becomes primary.
    pub preferred_primary: bool,
    /// While isolated, how often the self-check is repeated (`witness.recheck`).
    pub recheck: Duration,
    /// This host's node id (the last tie-break of an address contest).
    pub node_id: u32,
    /// How long the first fence of a `startup_grace` decision waits (`boot.fence_delay`;
    /// zero on the preferred primary).
    pub fence_delay: Duration,
    /// After the primary's `leaving`, how long the monitor waits for the first missed
    /// heartbeat that shows P released (a probe deadline and a little more).
    pub handover_window: Duration,
}

#[cfg(test)]
mod health_tests;
#[cfg(test)]
mod maintenance_tests;
#[cfg(test)]
mod revoke_tests;
#[cfg(test)]
mod standby_tests;
#[cfg(test)]
mod switchover_tests;
#[cfg(test)]
mod tests;
