//! The runtime, as the model sees it: what each machine action does to the world, and the
//! inputs that come back. The real runtime (failover-user/src/daemon) executes actions in
//! order and queues the inputs they return (a claim's result) behind them; so does this.
use std::collections::VecDeque;

use failover::role::{Action, Addr, BootAction, Input, Machine, Policy};

use crate::world::{name, other, timer_slot, Daemon, HostId, Lease, Msg, World};

/// The policy of host `h`: A is the preferred primary, B waits a fence delay; `lease`:
/// `fence = "lease"`, else `fence = "bmc"`.
pub fn policy(h: HostId, lease: bool) -> Policy {
    use std::time::Duration;
    Policy {
        takeover: true,
        no_fence: false,
        lease_fence: lease,
        allow_unfenced: false,
        retry: Duration::from_secs(1),
        retry_max: Duration::from_secs(30),
        preferred_primary: h == 0,
        recheck: Duration::from_millis(500),
        node_id: h as u32 + 1,
        fence_delay: if h == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(84)
        },
        handover_window: Duration::from_millis(14),
    }
}

/// Feeds `input` to `h`'s machine and executes everything it leads to. `log` collects a
/// readable line per action, for traces.
pub fn feed(w: &mut World, h: HostId, input: Input, log: &mut Option<&mut Vec<String>>) {
    let mut queue = VecDeque::from([input]);
    while let Some(i) = queue.pop_front() {
        if let Some(l) = log.as_deref_mut() {
            l.push(format!("  {} <- {i:?}", name(h)));
        }
        let actions = w.hosts[h].m.step(i);
        for a in actions {
            if let Some(next) = execute(w, h, a, log) {
                queue.push_back(next);
            }
        }
    }
}

fn execute(
    w: &mut World,
    h: HostId,
    a: Action,
    log: &mut Option<&mut Vec<String>>,
) -> Option<Input> {
    if let Some(l) = log.as_deref_mut() {
        match &a {
            Action::Emit(n) => l.push(format!(
                "    {}: {} ({})",
                name(h),
                n.event.name(),
                n.detail
            )),
            a => l.push(format!("    {} -> {a:?}", name(h))),
        }
    }
    match a {
        Action::Revoke => {
            if !w.hosts[h].decided {
                w.fenced_without_decision = true;
            }
            crate::lease::revoke(w, h);
            return None;
        }
        Action::Release(Addr::Primary) => {
            // The keeper stops and the gate comes off with P.
            w.hosts[h].has_p = false;
            w.hosts[h].lease = Lease::default();
            return None;
        }
        Action::Defend(Addr::Primary) => {
            // A lapsed lease's gate drops the announcement.
            if w.serving(h) {
                w.send(h, Msg::Announce { p: true });
            }
            return None;
        }
        _ => {}
    }
    let lease_mode = w.lease_mode;
    let host = &mut w.hosts[h];
    match a {
        Action::Emit(_) | Action::Revoke | Action::Release(Addr::Primary) => {}
        Action::SendJoin { .. } => host.join = true,
        Action::Claim(addr) => return Some(claim(w, h, addr)),
        Action::Release(Addr::Monitor) => host.has_m = false,
        Action::StartMonitoring => {
            host.monitoring = true;
            host.decided = false;
            host.det_armed = host.m.armed();
            host.det_missed = false;
            host.det_failed = false;
            host.grace = !host.m.armed();
        }
        Action::StopMonitoring => {
            host.monitoring = false;
            host.grace = false;
        }
        Action::Boot(BootAction::On) => host.boot_on = true,
        Action::Boot(b) => {
            // The reset after a lease takeover (by the new primary) follows from the revoke,
            // which was checked.
            if !host.decided && host.m.role() != failover::role::Role::Primary {
                // A fence or reboot without a current failure decision (one taken while the
                // peer was not serving and reachable, and not undone by its recovery).
                w.fenced_without_decision = true;
            }
            host.boot = Some(b);
            host.accepted = false;
        }
        Action::Hook(failover::role::Hook::OnPrimary) if lease_mode && host.has_p => {
            // The promotion is done: the keeper keeps the lease at this epoch.
            host.lease.keeper = Some(host.m.epoch());
        }
        Action::Hook(_) => {}
        Action::BumpEpoch => host.persisted = host.m.epoch(),
        Action::Retry(_) => host.retry = true,
        Action::SelfCheck => host.self_check = true,
        Action::Rejudge => {
            host.det_missed = false;
            host.det_failed = false;
            host.decided = false;
            if !host.m.armed() && host.monitoring {
                host.grace = true;
            }
        }
        Action::CancelBoot => {
            // The boot task ends, and a revoke job with it (its answer is not reported).
            host.boot = None;
            host.verdict = None;
        }
        Action::SendLeaving(role) => {
            let msg = Msg::Leaving {
                role: role.code(),
                epoch: host.m.epoch(),
            };
            // The runtime never tells the monitor to take P while P is still held.
            if !host.has_p {
                w.send(h, msg);
            }
        }
        Action::Defend(_) => {
            if host.has_m {
                w.send(h, Msg::Announce { p: false });
            }
        }
        Action::AskPeer => host.ask = true,
        Action::SendTakenOver => {
            let epoch = host.m.epoch();
            w.send(h, Msg::TakenOver { epoch });
        }
        Action::SendYield => w.send(h, Msg::Yield),
        Action::Schedule(t, _) => host.timers[timer_slot(t)] = true,
    }
    None
}

/// Claims `addr` for `h`: the duplicate-address probe finds the other host if it holds the
/// address and its answers reach `h` (its kernel answers, whatever its daemon does);
/// otherwise the address is added and announced.
fn claim(w: &mut World, h: HostId, addr: Addr) -> Input {
    let o = other(h);
    // A lapsed lease's gate drops the probe for P: it finds P free.
    let held_there = match addr {
        Addr::Primary => w.serving(o),
        Addr::Monitor => w.hosts[o].has_m,
    };
    if held_there && w.path(o, h) && w.path(h, o) {
        return Input::Claimed { addr, ok: false };
    }
    match addr {
        Addr::Primary => {
            w.hosts[h].has_p = true;
            // The promotion counts as the first grant (the gate is attached with one lease).
            if w.lease_mode {
                w.hosts[h].lease.valid = true;
            }
        }
        Addr::Monitor => w.hosts[h].has_m = true,
    }
    w.send(
        h,
        Msg::Announce {
            p: addr == Addr::Primary,
        },
    );
    Input::Claimed { addr, ok: true }
}

/// Starts `h`'s daemon (power-on boot or an operator's restart): it removes what a previous
/// run left on the interface, starts joining with its persisted epoch.
pub fn start_daemon(w: &mut World, h: HostId, log: &mut Option<&mut Vec<String>>) {
    // Timing: a datagram on one segment is delivered or lost long before a daemon restarts
    // (and its join period ends), unless the receiver is frozen and not reading.
    let o = other(h);
    if w.hosts[o].daemon == Daemon::Running {
        w.hosts[o].inbox.clear();
    }
    let (persisted, standby) = (w.hosts[h].persisted, w.hosts[h].standby);
    w.hosts[h] = fresh_host(h, persisted, w.lease_mode);
    w.hosts[h].standby = standby;
    // The runtime resumes a standby from its state file before the first join.
    if standby {
        feed(w, h, Input::Standby { on: true }, log);
    }
    feed(w, h, Input::Start, log);
}

/// Host `h` powered on with a daemon that has not started yet, its epoch file at `persisted`
/// (`lease`: `fence = "lease"`). The daemon removes a gate an earlier run left, with P.
pub fn fresh_host(h: HostId, persisted: u64, lease: bool) -> crate::world::Host {
    crate::world::Host {
        power: true,
        daemon: Daemon::Running,
        m: Machine::new(policy(h, lease), persisted),
        persisted,
        has_p: false,
        has_m: false,
        join: false,
        ask: false,
        self_check: false,
        retry: false,
        grace: false,
        boot: None,
        accepted: false,
        boot_on: false,
        timers: [false; 5],
        monitoring: false,
        det_armed: false,
        det_missed: false,
        det_failed: false,
        decided: false,
        inbox: Vec::new(),
        standby: false,
        lease: Lease::default(),
        own_granted: 0,
        verdict: None,
    }
}

/// The daemon of `h` is gone (crash, power cut): its runtime work with it. What it added to
/// the interface stays there unless the host lost power.
pub fn daemon_gone(w: &mut World, h: HostId) {
    let host = &mut w.hosts[h];
    host.daemon = Daemon::Down;
    host.join = false;
    host.ask = false;
    host.self_check = false;
    host.retry = false;
    host.grace = false;
    host.boot = None;
    host.boot_on = false;
    host.timers = [false; 5];
    host.monitoring = false;
    host.decided = false;
    host.inbox.clear();
    // The keeper goes with the daemon; the gate stays, and lapses without it.
    host.lease.keeper = None;
    host.verdict = None;
}

/// `h` loses power: every process dies, the interface is flushed.
pub fn power_off(w: &mut World, h: HostId) {
    daemon_gone(w, h);
    let host = &mut w.hosts[h];
    host.power = false;
    host.has_p = false;
    host.has_m = false;
    host.lease = Lease::default();
}
