//! Events: every decision of the daemon, with its stable name, as a tracing line.
//!
//! [`Event`] is the one place where the names live; other tools match on them (the JSON
//! `event` field), so a name never changes once released. [`Emitter`] stamps each event with
//! the node, its role and epoch and the peer, and writes it with target `failover::event`
//! (per-probe events: `failover::event::probe`; each copy's `sync_started` / `sync_done`:
//! `failover::event::sync`). docs/protocol.md has the table.
use crate::sys::monotonic_ns;

/// A stable event name.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// The daemon started; the settings are in the detail.
    DaemonStarted,
    /// The daemon stopped cleanly, addresses released.
    DaemonStopped,
    /// A fatal or recoverable runtime error.
    DaemonError,
    /// The second signal was sent to M (and P).
    JoinProbeSent,
    /// A monitor answered the join probe (claim 11), or both M and P did (conflict).
    JoinAnswered,
    /// Nobody answered at M (claim 12).
    JoinSilent,
    /// A floating address was added to the interface.
    AddressClaimed,
    /// A floating address was removed from the interface.
    AddressReleased,
    /// A claim was refused: another host answers for the address.
    AddressConflict,
    /// The gratuitous ARP / unsolicited NA burst after a claim is done.
    GarpSent,
    /// The role changed; the detail is `from -> to`.
    RoleChanged,
    /// A probe was answered after its deadline.
    ProbeLate,
    /// A probe was never answered.
    ProbeLost,
    /// Just before `primary_failed`: the XDP stamp of the last in-time reply (`at_ns`).
    LastReply,
    /// The primary failed: consecutive misses, or `startup_grace` ran out.
    PrimaryFailed,
    /// A boot action on the peer was asked for.
    BootRequested,
    /// A boot action finished; its outcome and duration.
    BootResult,
    /// A boot result the machine took note of without acting on it.
    BootDone,
    /// A fence level failed or ran out of time; the next level is tried.
    FenceLevelFailed,
    /// `failover standby on`: this host holds nothing and judges nobody.
    StandbyOn,
    /// `failover standby off`: it joins again.
    StandbyOff,
    /// A service health check failed `fall` runs in a row; what this host does about it.
    CheckFailed,
    /// A failed health check passed `rise` runs in a row.
    CheckOk,
    /// The peer's power state Off was confirmed: the fence.
    FenceConfirmed,
    /// The fence was not confirmed.
    FenceFailed,
    /// A reboot or power-on was not confirmed.
    BootFailed,
    /// `boot.method = "none"`: P taken without a fence (operator opt-out).
    FenceSkipped,
    /// P taken although the fence failed (operator opt-out), or that opt-out is configured.
    UnfencedTakeover,
    /// `boot.insecure = true` with Redfish: the BMC's certificate is not verified.
    TlsUnverified,
    /// The monitor started a data copy.
    SyncStarted,
    /// A data copy completed and became current.
    SyncDone,
    /// A data copy failed (monitor), or serving one failed (primary).
    SyncFailed,
    /// On the monitor, no copy completed for longer than `sync.alert_after`.
    SyncStale,
    /// At takeover: the generation of the data copy served, and its age.
    ServingCopy,
    /// A hook exited 0.
    HookRan,
    /// A hook failed or timed out.
    HookFailed,
    /// The self-check before a fence failed: this host may be the one cut off; no fence.
    Isolated,
    /// The self-check passes again, or P answers again: isolation is over.
    IsolationEnded,
    /// No witness is configured and there is no default gateway: the self-check sees only
    /// this host's carrier.
    NoWitness,
    /// P answered in time again before a power action was accepted: the fence is abandoned.
    FenceCancelled,
    /// The peer said it is stopping on purpose (a planned stop).
    PeerLeft,
    /// The joining peer left P to this monitor, whose data is newer (a cold start).
    PeerYielded,
    /// SIGHUP: the configuration was reloaded.
    ConfigReloaded,
    /// SIGHUP: the new configuration was refused; the daemon runs on unchanged.
    ConfigReloadRefused,
    /// Another host claimed or probed for an address this host holds: one announcement sent
    /// to defend it.
    AddressDefended,
    /// This host gave up what it held to a host that outranks it (a lost address contest, a
    /// peer with a higher epoch holding P) and rejoins.
    Demoted,
    /// The first fence of a `startup_grace` decision waits `boot.fence_delay` (the host that
    /// is not the preferred primary), so two monitors never fence each other at once.
    FenceDelayed,
    /// `failover maintenance on`: failure detection disarmed (no fence, no takeover).
    MaintenanceOn,
    /// Maintenance ended (`failover maintenance off`, or its `--for` ran out).
    MaintenanceOff,
    /// In maintenance, the monitor would have judged the primary failed: nothing is done.
    MaintenanceHeld,
    /// `failover switchover`: the primary released P for the monitor, without a fence.
    SwitchoverStarted,
    /// The switchover is over: the peer serves P and this host is its monitor.
    SwitchoverDone,
    /// The monitor did not take P over: this host serves it again.
    SwitchoverFailed,
    /// A copy replaced this host's own data (what it served as primary): kept aside as
    /// `DIR.diverged-EPOCH`, never deleted.
    SyncKeptAside,
    /// An old kept-aside directory was removed (more than `sync.keep_diverged`).
    SyncAsideRemoved,
    /// The monitor refused a copy: its own data (served as primary at a later epoch) is newer
    /// than the primary's.
    SyncRefused,
    /// The monitor did not take P: its copy of the data is older than `sync.max_age`.
    TakeoverRefused,
    /// The monitor took P with a copy older than `sync.max_age` (`sync.serve_stale`, the peer
    /// confirmed off).
    StaleCopyServed,
    /// The witness refused to revoke the primary's lease: the primary still reaches it.
    RevokeRefused,
    /// The witness revoked the primary's lease (the epoch persisted first).
    LeaseRevoked,
    /// A peer's clock runs outside the assumed rate bound (measured over 10 s).
    ClockRateSuspect,
    /// The primary's lease lapsed: its kernel stops P.
    LeaseLapsed,
    /// The lease is valid again.
    LeaseRestored,
    /// A lease grantor (the witness or the monitor) stopped granting.
    WitnessLost,
}

impl Event {
    /// Every event, in the order of the docs' table.
    pub const ALL: [Event; 64] = [
        Event::DaemonStarted,
        Event::DaemonStopped,
        Event::DaemonError,
        Event::JoinProbeSent,
        Event::JoinAnswered,
        Event::JoinSilent,
        Event::AddressClaimed,
        Event::AddressReleased,
        Event::AddressConflict,
        Event::GarpSent,
        Event::RoleChanged,
        Event::ProbeLate,
        Event::ProbeLost,
        Event::LastReply,
        Event::PrimaryFailed,
        Event::BootRequested,
        Event::BootResult,
        Event::BootDone,
        Event::FenceLevelFailed,
        Event::CheckFailed,
        Event::CheckOk,
        Event::StandbyOn,
        Event::StandbyOff,
        Event::FenceConfirmed,
        Event::FenceFailed,
        Event::BootFailed,
        Event::FenceSkipped,
        Event::UnfencedTakeover,
        Event::TlsUnverified,
        Event::SyncStarted,
        Event::SyncDone,
        Event::SyncFailed,
        Event::SyncStale,
        Event::ServingCopy,
        Event::HookRan,
        Event::HookFailed,
        Event::Isolated,
        Event::IsolationEnded,
        Event::NoWitness,
        Event::FenceCancelled,
        Event::PeerLeft,
        Event::PeerYielded,
        Event::ConfigReloaded,
        Event::ConfigReloadRefused,
        Event::AddressDefended,
        Event::Demoted,
        Event::FenceDelayed,
        Event::MaintenanceOn,
        Event::MaintenanceOff,
        Event::MaintenanceHeld,
        Event::SwitchoverStarted,
        Event::SwitchoverDone,
        Event::SwitchoverFailed,
        Event::SyncKeptAside,
        Event::SyncAsideRemoved,
        Event::TakeoverRefused,
        Event::StaleCopyServed,
        Event::SyncRefused,
        Event::RevokeRefused,
        Event::LeaseRevoked,
        Event::ClockRateSuspect,
        Event::LeaseLapsed,
        Event::LeaseRestored,
        Event::WitnessLost,
    ];

    /// The stable name: the `event` field of the log line.
    pub fn name(self) -> &'static str {
        match self {
            Event::DaemonStarted => "daemon_started",
            Event::DaemonStopped => "daemon_stopped",
            Event::DaemonError => "daemon_error",
            Event::JoinProbeSent => "join_probe_sent",
            Event::JoinAnswered => "join_answered",
            Event::JoinSilent => "join_silent",
            Event::AddressClaimed => "address_claimed",
            Event::AddressReleased => "address_released",
            Event::AddressConflict => "address_conflict",
            Event::GarpSent => "garp_sent",
            Event::RoleChanged => "role_changed",
            Event::ProbeLate => "probe_late",
            Event::ProbeLost => "probe_lost",
            Event::LastReply => "last_reply",
            Event::PrimaryFailed => "primary_failed",
            Event::BootRequested => "boot_requested",
            Event::BootResult => "boot_result",
            Event::FenceLevelFailed => "fence_level_failed",
            Event::CheckFailed => "check_failed",
            Event::CheckOk => "check_ok",
            Event::StandbyOn => "standby_on",
            Event::StandbyOff => "standby_off",
            Event::BootDone => "boot_done",
            Event::FenceConfirmed => "fence_confirmed",
            Event::FenceFailed => "fence_failed",
            Event::BootFailed => "boot_failed",
            Event::FenceSkipped => "fence_skipped",
            Event::UnfencedTakeover => "unfenced_takeover",
            Event::TlsUnverified => "tls_unverified",
            Event::SyncStarted => "sync_started",
            Event::SyncDone => "sync_done",
            Event::SyncFailed => "sync_failed",
            Event::SyncStale => "sync_stale",
            Event::ServingCopy => "serving_copy",
            Event::HookRan => "hook_ran",
            Event::HookFailed => "hook_failed",
            Event::Isolated => "isolated",
            Event::IsolationEnded => "isolation_ended",
            Event::NoWitness => "no_witness",
            Event::FenceCancelled => "fence_cancelled",
            Event::PeerLeft => "peer_left",
            Event::PeerYielded => "peer_yielded",
            Event::ConfigReloaded => "config_reloaded",
            Event::ConfigReloadRefused => "config_reload_refused",
            Event::AddressDefended => "address_defended",
            Event::Demoted => "demoted",
            Event::FenceDelayed => "fence_delayed",
            Event::MaintenanceOn => "maintenance_on",
            Event::MaintenanceOff => "maintenance_off",
            Event::MaintenanceHeld => "maintenance_held",
            Event::SwitchoverStarted => "switchover_started",
            Event::SwitchoverDone => "switchover_done",
            Event::SwitchoverFailed => "switchover_failed",
            Event::SyncKeptAside => "sync_kept_aside",
            Event::SyncAsideRemoved => "sync_aside_removed",
            Event::TakeoverRefused => "takeover_refused",
            Event::SyncRefused => "sync_refused",
            Event::StaleCopyServed => "stale_copy_served",
            Event::RevokeRefused => "revoke_refused",
            Event::LeaseRevoked => "lease_revoked",
            Event::ClockRateSuspect => "clock_rate_suspect",
            Event::LeaseLapsed => "lease_lapsed",
            Event::LeaseRestored => "lease_restored",
            Event::WitnessLost => "witness_lost",
        }
    }

    /// Faults log at WARN, the rest at INFO.
    pub fn is_fault(self) -> bool {
        matches!(
            self,
            Event::FenceFailed
                | Event::BootFailed
                | Event::HookFailed
                | Event::AddressConflict
                | Event::PrimaryFailed
                | Event::UnfencedTakeover
                | Event::FenceSkipped
                | Event::DaemonError
                | Event::TlsUnverified
                | Event::SyncFailed
                | Event::SyncStale
                | Event::Isolated
                | Event::NoWitness
                | Event::ConfigReloadRefused
                | Event::Demoted
                | Event::SyncKeptAside
                | Event::SyncAsideRemoved
                | Event::TakeoverRefused
                | Event::SyncRefused
                | Event::StaleCopyServed
                | Event::RevokeRefused
                | Event::ClockRateSuspect
                | Event::LeaseLapsed
                | Event::WitnessLost
                | Event::MaintenanceHeld
                | Event::SwitchoverFailed
                | Event::FenceLevelFailed
                | Event::CheckFailed
        )
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Writes events, stamped with who we are (node, peer) and where we stand (role, epoch).
#[derive(Clone, Debug)]
pub struct Emitter {
    node: String,
    peer: String,
    fifo: Option<crate::event_fifo::EventFifo>,
}

impl Emitter {
    /// Events of node `node` whose peer is `peer`.
    pub fn new(node: &str, peer: &str) -> Emitter {
        Emitter {
            node: node.to_string(),
            peer: peer.to_string(),
            fifo: None,
        }
    }

    /// Also writes every event as a JSON line into `fifo` (`hooks.event_fifo`).
    pub fn with_fifo(mut self, fifo: crate::event_fifo::EventFifo) -> Emitter {
        self.fifo = Some(fifo);
        self
    }

    /// The event FIFO, if one is configured.
    pub fn fifo(&self) -> Option<&crate::event_fifo::EventFifo> {
        self.fifo.as_ref()
    }

    fn to_fifo(&self, event: Event, role: &str, epoch: u64, ts_ns: u64, detail: &str) {
        if let Some(f) = &self.fifo {
            let unix_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            f.send(crate::event_fifo::line(&crate::event_fifo::EventLine {
                event: event.name(),
                ts_ns,
                unix_ms,
                node: &self.node,
                role,
                epoch,
                peer: &self.peer,
                detail,
            }));
        }
    }

    /// Records one event: a tracing line (WARN for faults, INFO otherwise). With
    /// `--log-format json` every field is a top-level JSON key.
    pub fn emit(&self, event: Event, role: &str, epoch: u64, detail: &str) {
        let ts_ns = monotonic_ns();
        let name = event.name();
        // Targets and levels are part of a tracing callsite's static metadata: one macro
        // call per combination.
        macro_rules! ev {
            ($lvl:ident, $target:literal) => {
                tracing::$lvl!(target: $target, event = name, ts_ns, node = %self.node, role,
                    epoch, peer = %self.peer, detail, "{name}: {detail}")
            };
        }
        match event {
            Event::ProbeLate | Event::ProbeLost => ev!(info, "failover::event::probe"),
            Event::SyncStarted | Event::SyncDone => ev!(info, "failover::event::sync"),
            e if e.is_fault() => ev!(warn, "failover::event"),
            _ => ev!(info, "failover::event"),
        }
        self.to_fifo(event, role, epoch, ts_ns, detail);
    }

    /// The `last_reply` event, emitted just before `primary_failed`: `at_ns` is the XDP stamp
    /// of the last in-time reply (CLOCK_MONOTONIC), so detection can be read off the events.
    pub fn last_reply(&self, role: &str, epoch: u64, at_ns: u64) {
        let ts_ns = monotonic_ns();
        let name = Event::LastReply.name();
        let detail = format!(
            "last in-time reply {:.1} ms before the failure decision",
            ts_ns.saturating_sub(at_ns) as f64 / 1e6
        );
        tracing::info!(target: "failover::event", event = name, ts_ns, at_ns,
            node = %self.node, role, epoch, peer = %self.peer, detail = %detail, "{name}: {detail}");
        self.to_fifo(Event::LastReply, role, epoch, ts_ns, &detail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case_and_documented() {
        let docs = include_str!("../../docs/protocol.md");
        let mut seen = std::collections::HashSet::new();
        for e in Event::ALL {
            let n = e.name();
            assert!(seen.insert(n), "{n} twice");
            assert!(
                n.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{n} is not snake_case"
            );
            assert!(
                docs.contains(&format!("`{n}`")),
                "{n} is missing from docs/protocol.md"
            );
        }
    }
}
