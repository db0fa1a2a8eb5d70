//! `fence = "lease"` in the model (docs/fencing.md, docs/design.md "The lease"): the witness,
//! the primary's lease, and the revoke request of a monitor that decided the primary failed.
//!
//! The lease is abstract; no clock is modelled. What it keeps of the timing argument:
//! - A primary's lease is `valid` from its promotion on (the promotion counts as the first
//!   grant) and is renewed (`Renew`) while a grantor grants it now: its monitor (while
//!   `Machine::grants` and the round trip between them works) or the witness (alive, the
//!   primary reaching it both ways, its epoch above the revoked one and not below the highest
//!   granted). Renewing needs the primary's keeper: its daemon running, primary since
//!   `Hook(OnPrimary)`, with P held. While a grantor grants, the lease does not lapse (the
//!   keeper asks every quarter lease).
//! - It lapses (`Lapse`, a step that only time brings) only while no grantor grants it now
//!   (the keeper frozen or dead, or both grantors stopped or out of reach); the kernel gate
//!   then stops P whatever the daemon does. A lapsed primary whose epoch the witness refuses
//!   as revoked is told so by its keeper (`LeaseRefused`: `Input::LeaseRevoked`) and
//!   rejoins.
//! - When the witness agrees to a revoke, every grant given so far is one the monitor's wait
//!   (`Revocation::Agreed::wait`, stretched by the clock-rate bound) counts: the lease is then
//!   `counted`. While counted it does not lapse: a grant sent before the grantors stopped
//!   may still arrive and extend it, up to the end of the wait. `WaitOver` ends the wait's
//!   grants (the lease then stays valid only if a grantor grants it now: a grant the wait
//!   did not count), and the monitor's `Due(LeaseOver)` is enabled only once the lease it
//!   waits for is no longer counted. So the model assumes the wait is computed right (that
//!   is `lease/tests.rs`), not what grants come after it.
//! - The revoke's answer is decided when the request is made (the witness answers within
//!   the revoke job's deadline, long against its detection window), from what the witness
//!   knows then, as `witness::judge` does: it hears a host whose keeper runs and reaches it.
//!   A retransmission of the request it agreed to last is agreed again; it refuses while it
//!   hears the other host; it vouches for nothing (`Unproven`: the BMC path) until a primary
//!   has asked it for a lease since its start or its last agreement, whose taker may serve
//!   on its promotion's grant alone; otherwise it agrees and revokes every epoch up to the
//!   asker's and the highest it granted. The job turns the answer into `NoLease` when
//!   neither the witness nor the asker's own grantor granted that epoch
//!   (`Reason::no_lease`). There is no answer when the witness is dead or the asker does not
//!   reach it. The answer reaches the machine any time later (`Verdict`), or is lost
//!   (`VerdictLost`: the witness revoked, the job ends `Unreachable`); `CancelBoot` ends
//!   the job and the answer with it.
//! - A witness that restarts (`WitnessUp`) keeps its revoked epoch (persisted) and forgets
//!   what it granted and heard; a restart is assumed to outlast its longest grant
//!   (`max_lease`, stretched): none of its grants is still valid when it answers again.
use std::time::Duration;

use failover::{
    lease::wire::Reason,
    role::{BootAction, Input, Revocation, Role},
};
use stateright::Property;

use crate::{
    run::feed,
    world::{other, Daemon, HostId, World},
    Protocol, Step,
};

/// The witness (`failover witness`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Witness {
    /// Running (a fault stops it; repaired by a restart).
    pub alive: bool,
    /// Epochs up to this one are revoked: never granted again (persisted).
    pub revoked: u64,
    /// The highest epoch granted since it started: a lower one is refused.
    pub granted: u64,
    /// Whether the current primary holds its lease from the witness (`witness::Primary`).
    pub primary: WPrimary,
    /// The host the last grant went to.
    pub holder: Option<HostId>,
    /// After an agreement, the other host is refused (until `BarOver`, a step that only time
    /// brings: two of the longest leases and a second).
    pub bar: bool,
}

/// `failover::witness::Primary`, with hosts for node ids.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum WPrimary {
    /// A lease was granted since the last agreed revoke.
    Leased,
    /// This host's revoke was agreed: it takes P on its promotion's own grant.
    Taking(HostId),
    /// Nothing granted since the witness started.
    #[default]
    Unknown,
}

/// The lease of P on one host.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Lease {
    /// The keeper's epoch (the primary's at `Hook(OnPrimary)`), while it runs.
    pub keeper: Option<u64>,
    /// The gate lets P through.
    pub valid: bool,
    /// Grants that the monitor's wait after an agreed revoke counts may still be valid.
    pub counted: bool,
}

/// The witness's answer when it agrees (the wait itself is not modelled: `Lease::counted`).
fn agreed(epoch: u64) -> Revocation {
    Revocation::Agreed {
        wait: Duration::from_millis(9),
        epoch,
    }
}

/// `h`'s keeper runs: its epoch.
fn keeper(w: &World, h: HostId) -> Option<u64> {
    let x = &w.hosts[h];
    (x.power && x.daemon == Daemon::Running && x.has_p)
        .then_some(x.lease.keeper)
        .flatten()
}

/// The witness hears `h` (its keeper's requests reach it).
fn witness_hears(w: &World, h: HostId) -> bool {
    w.witness.alive && w.tx[h] && keeper(w, h).is_some()
}

/// The witness grants `h`'s lease now. One holder at a time (`witness::judge`): after an
/// agreement only the taker, until the taker asks or the bar is over, and the other host
/// only once the holder's grants ran out (here: once the holder's lease is no longer valid).
fn witness_grants(w: &World, h: HostId) -> bool {
    let x = &w.witness;
    let barred = x.bar && matches!(x.primary, WPrimary::Taking(t) if t != h);
    let other_holds = x.holder == Some(other(h)) && w.hosts[other(h)].lease.valid;
    keeper(w, h).is_some_and(|k| {
        witness_hears(w, h) && w.rx[h] && k > x.revoked && k >= x.granted && !barred && !other_holds
    })
}

/// `h`'s monitor grants its lease now.
fn monitor_grants(w: &World, h: HostId) -> bool {
    let o = &w.hosts[other(h)];
    keeper(w, h).is_some()
        && o.daemon == Daemon::Running
        && o.m.grants()
        && w.round_trip(h, other(h))
}

/// The witness refuses `h`'s keeper because its epoch was revoked (it reaches the witness
/// both ways, and the keeper runs as primary).
fn refused_as_revoked(w: &World, h: HostId) -> bool {
    keeper(w, h).is_some_and(|k| {
        w.hosts[h].m.role() == Role::Primary
            && witness_hears(w, h)
            && w.rx[h]
            && (k <= w.witness.revoked || k < w.witness.granted || !witness_grants(w, h))
    })
}

/// Some grantor renews `h`'s lease now.
pub fn renewed(w: &World, h: HostId) -> bool {
    monitor_grants(w, h) || witness_grants(w, h)
}

/// The two hosts have lost only each other: both are on and reach the witness, which runs.
fn only_cross(w: &World) -> bool {
    w.cross_cut
        && w.witness.alive
        && w.tx.iter().chain(&w.rx).all(|ok| *ok)
        && w.hosts.iter().all(|x| x.power)
}

/// `h` is a primary that the witness hears, with the hosts lost only to each other.
fn reached_primary(w: &World, h: HostId) -> bool {
    only_cross(w) && w.hosts[h].m.role() == Role::Primary && witness_hears(w, h)
}

/// `h`'s lease lapses: a violation if the witness reaches it, the hosts lost only each
/// other, and its monitor is not taking P over (a takeover decided before).
fn lapse(w: &mut World, h: HostId) {
    let o = &w.hosts[other(h)];
    let taking_over = o.daemon != Daemon::Down
        && matches!(o.m.role(), Role::Booting | Role::TakingOver | Role::Primary);
    // An epoch the witness revoked was stopped by that revoke (checked when it was agreed),
    // not by the partition: a primary that was frozen while the monitor decided, say.
    let revoked = keeper(w, h).is_some_and(|k| k <= w.witness.revoked);
    if w.hosts[h].lease.valid && reached_primary(w, h) && !taking_over && !revoked {
        w.partition_stopped = true;
    }
    w.hosts[h].lease.valid = false;
}

/// `Action::Revoke` by `h`: the witness's answer (`witness::judge`), as the revoke job turns
/// it into a `Revocation` (`Reason::no_lease` with this host's own grants), on its way back.
pub fn revoke(w: &mut World, h: HostId) {
    let o = other(h);
    let epoch = w.hosts[h].m.epoch();
    let x = w.witness;
    // The other host's epoch was revoked before (when it really was silent): no agreement
    // now is what stops it.
    let revoked_before = keeper(w, o).is_some_and(|k| k <= x.revoked);
    // The reason of an agreement: whether the witness granted the asker's epoch.
    let reason = if x.granted >= epoch {
        Reason::None
    } else {
        Reason::NotGranted
    };
    let upto = epoch.max(x.granted);
    let answer = if !(x.alive && w.tx[h] && w.rx[h]) {
        None
    } else if x.primary == WPrimary::Taking(h) && x.revoked >= upto {
        Some(Ok(reason)) // the request agreed to last, again
    } else if witness_hears(w, o) {
        Some(Err(()))
    } else if x.primary != WPrimary::Leased {
        Some(Ok(Reason::Unproven))
    } else {
        w.witness.revoked = x.revoked.max(upto);
        w.witness.primary = WPrimary::Taking(h);
        w.witness.bar = true;
        Some(Ok(reason))
    };
    let revoked = w.witness.revoked;
    let r = match answer {
        None => Revocation::Unreachable,
        Some(Err(())) => Revocation::Refused {
            heard_ago: Duration::from_millis(3),
        },
        Some(Ok(reason)) if reason.no_lease(w.hosts[h].own_granted, epoch) => {
            Revocation::NoLease { epoch: revoked }
        }
        Some(Ok(_)) => agreed(revoked),
    };
    if let Revocation::Agreed { .. } = r {
        if reached_primary(w, o) && !revoked_before {
            w.partition_stopped = true;
        }
        let l = &mut w.hosts[o].lease;
        l.counted |= l.valid;
    }
    w.hosts[h].verdict = Some(r);
}

/// The lease and witness steps enabled in `w`.
pub fn progress(w: &World, out: &mut Vec<Step>, with_losses: bool) {
    witness_time(w, out);
    for h in 0..2 {
        let x = &w.hosts[h];
        if x.daemon == Daemon::Running {
            if let Some(v) = x.verdict {
                out.push(Step::Verdict(h));
                if with_losses && matches!(v, Revocation::Agreed { .. }) {
                    out.push(Step::VerdictLost(h));
                }
            }
        }
        let renew = renewed(w, h);
        let raises = witness_grants(w, h) && keeper(w, h).is_some_and(|k| k > w.witness.granted);
        if renew && (!x.lease.valid || raises) {
            out.push(Step::Renew(h));
        }
        if x.lease.valid && !x.lease.counted && !renew {
            out.push(Step::Lapse(h));
        }
        if x.lease.counted {
            out.push(Step::WaitOver(h));
        }
        if refused_as_revoked(w, h) && !x.lease.valid && !x.lease.counted {
            out.push(Step::LeaseRefused(h));
        }
    }
}

/// The time steps of the witness.
pub fn witness_time(w: &World, out: &mut Vec<Step>) {
    if w.witness.alive && w.witness.bar {
        out.push(Step::BarOver);
    }
}

/// The witness's faults and repair.
pub fn faults(w: &World, out: &mut Vec<Step>) {
    if !w.witness.alive {
        out.push(Step::WitnessUp);
    } else if w.faults_left > 0 {
        out.push(Step::WitnessDown);
    }
}

/// The witness starts again: its revoked epoch persisted, nothing else.
pub fn witness_up(w: &mut World) {
    w.witness = Witness {
        alive: true,
        revoked: w.witness.revoked,
        granted: 0,
        primary: WPrimary::Unknown,
        holder: None,
        bar: false,
    };
}

/// Applies a lease or witness step.
pub fn apply(w: &mut World, step: &Step, log: &mut Option<&mut Vec<String>>) {
    match *step {
        Step::Renew(h) => {
            let k = keeper(w, h).unwrap_or(0);
            if witness_grants(w, h) {
                w.witness.granted = w.witness.granted.max(k);
                w.witness.primary = WPrimary::Leased;
                w.witness.holder = Some(h);
            }
            if monitor_grants(w, h) {
                let o = &mut w.hosts[other(h)];
                o.own_granted = o.own_granted.max(k);
            }
            w.hosts[h].lease.valid = true;
        }
        Step::Lapse(h) => lapse(w, h),
        Step::WaitOver(h) => {
            w.hosts[h].lease.counted = false;
            if !renewed(w, h) {
                lapse(w, h);
            }
        }
        Step::LeaseRefused(h) => {
            if let Some(epoch) = keeper(w, h) {
                feed(w, h, Input::LeaseRevoked { epoch }, log);
            }
        }
        Step::Verdict(h) => {
            if let Some(r) = w.hosts[h].verdict.take() {
                feed(w, h, Input::Revoked(r), log);
            }
        }
        Step::VerdictLost(h) => w.hosts[h].verdict = Some(Revocation::Unreachable),
        Step::WitnessDown => w.witness.alive = false,
        Step::BarOver => w.witness.bar = false,
        Step::WitnessUp => witness_up(w),
        _ => unreachable!("not a lease step: {step:?}"),
    }
}

/// The lease and the witness in a trace line.
pub fn summary(w: &World) -> String {
    if !w.lease_mode {
        return String::new();
    }
    let mut s = String::from(" |");
    for h in 0..2 {
        let l = &w.hosts[h].lease;
        if w.hosts[h].has_p {
            s.push_str(&format!(
                " {}:{}{}{}",
                crate::world::name(h),
                if l.valid { "lease" } else { "lapsed" },
                if l.counted { "(counted)" } else { "" },
                l.keeper.map_or(String::new(), |k| format!(" keeper e{k}")),
            ));
        }
    }
    let x = &w.witness;
    s.push_str(&format!(
        " witness{} revoked e{} granted e{}{}",
        if x.alive { "" } else { " DEAD" },
        x.revoked,
        x.granted,
        match x.primary {
            WPrimary::Leased => String::new(),
            WPrimary::Taking(h) => format!(" taking {}", crate::world::name(h)),
            WPrimary::Unknown => " unknown".into(),
        }
    ));
    s
}

/// The properties of `fence = "lease"` besides the shared ones (there a host serves P only
/// with a valid lease): the partition between the hosts, and the coverage examples.
pub fn properties() -> Vec<Property<Protocol>> {
    vec![
        Property::always(
            "a partition between the hosts stops no primary",
            |_, w: &World| !w.partition_stopped,
        ),
        Property::sometimes("a lease takeover", |_, w: &World| {
            // P moved under the lease: the new primary serves while the old one is still on,
            // P still on its interface, and its reset has not been confirmed.
            (0..2).any(|h| {
                let o = &w.hosts[other(h)];
                w.serving(h)
                    && w.hosts[h].m.role() == Role::Primary
                    && w.hosts[h].boot == Some(BootAction::Off)
                    && o.power
                    && o.has_p
            })
        }),
        Property::sometimes("a refused revoke", |_, w: &World| {
            (0..2).any(|h| {
                matches!(w.hosts[h].verdict, Some(Revocation::Refused { .. }))
                    && w.serving(other(h))
            })
        }),
        Property::sometimes("the witness-dead fallback", |_, w: &World| {
            // With the witness dead and no revoke agreed, a takeover after a confirmed Off.
            !w.witness.alive
                && w.witness.revoked == 0
                && (0..2).any(|h| {
                    w.serving(h)
                        && w.hosts[h].m.role() == Role::Primary
                        && w.hosts[h].m.epoch() >= 2
                        && !w.hosts[other(h)].power
                })
        }),
    ]
}
