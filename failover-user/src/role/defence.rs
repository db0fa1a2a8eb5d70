//! One holder per address: defending an address another host claims (RFC 5227 2.4 (b)), the
//! tie-break that decides who keeps it, and a primary stepping down for a newer one.
//!
//! A contest starts when another host's frame shows an address this host holds (an ARP reply
//! or announcement, an unsolicited NA; the kernel itself answers the other host's
//! duplicate-address probes). This host defends once and asks the peer what it holds. If the
//! other side persists within `DEFEND_INTERVAL`, the tie-break decides (on the answer to the
//! latest question: after each decision to keep the address the peer is asked again, so that
//! two hosts that decided on different information meet again on the same). For P: the
//! higher epoch wins, then the newer data, then the preferred primary. For M (two monitors:
//! a cold start) the host with the newer data gives it up, so that it goes on to be primary;
//! then the higher epoch keeps it, then the host that is not preferred. Last, the lower node id. When the peer cannot be asked, the lower MAC wins, a
//! rule both sides can apply alone. The loser gives the address up at once (`demoted`) and
//! rejoins. A peer that answers without holding the address means a third host claims it:
//! this host keeps it and says so.
use std::{cmp::Reverse, time::Duration};

use super::Fault;
use super::{
    machine::{emit, Machine},
    Action, Addr, Answer, Hook, Role, Timer,
};
use crate::event::Event;

/// How long after a contest another claim of the address counts as the same contest
/// (RFC 5227's DEFEND_INTERVAL).
pub const DEFEND_INTERVAL: Duration = Duration::from_secs(10);

/// Announcements sent per contest at most (the first defence, one more after a won
/// tie-break): two hosts that both believe they win cannot flood the segment.
const MAX_DEFENCES: u8 = 2;

/// A contest of one address.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Contest {
    /// Announcements sent in this contest.
    defences: u8,
    /// The other side claimed the address again after the first defence.
    repeated: bool,
    /// The peer answered, or stayed silent, since the contest began.
    asked: bool,
    /// This host's MAC is the lower of the two.
    lower_mac: bool,
}

fn name(addr: Addr) -> &'static str {
    match addr {
        Addr::Primary => "the primary address",
        Addr::Monitor => "the monitor address",
    }
}

impl Machine {
    /// Whether this host's role holds `addr`.
    fn holds(&self, addr: Addr) -> bool {
        match addr {
            Addr::Primary => self.role == Role::Primary,
            Addr::Monitor => matches!(self.role, Role::Monitor | Role::Booting),
        }
    }

    /// Whether this host keeps `addr` against the peer `p`, which also holds it.
    fn outranks(&self, addr: Addr, p: &Answer, lower_mac: bool) -> bool {
        // For P the preferred primary keeps it; for M the other host does, so that the
        // preferred host goes on to be primary. Likewise for data: the host with the newer
        // data keeps P, and gives M up (two monitors: a cold start) to become primary. For P
        // the epoch comes first (the newer primary serves on), for M the data.
        let pref = |preferred: bool| match addr {
            Addr::Primary => preferred,
            Addr::Monitor => !preferred,
        };
        let newer = |o: std::cmp::Ordering| match addr {
            Addr::Primary => o.is_gt(),
            Addr::Monitor => o.is_lt(),
        };
        let (my_data, peer_data) = (newer(p.data().reverse()), newer(p.data()));
        let key = |epoch: u64, data: bool, preferred: bool, node: u32| {
            let (first, second) = match addr {
                Addr::Primary => (epoch, u64::from(data)),
                Addr::Monitor => (u64::from(data), epoch),
            };
            (first, second, pref(preferred), Reverse(node))
        };
        let me = key(
            self.epoch,
            my_data,
            self.policy.preferred_primary,
            self.policy.node_id,
        );
        let peer = key(p.epoch, peer_data, p.preferred(), p.node);
        match me.cmp(&peer) {
            std::cmp::Ordering::Equal => lower_mac,
            o => o.is_gt(),
        }
    }

    /// Another host's frame shows `addr`, which this host holds.
    pub(super) fn contested(&mut self, addr: Addr, lower_mac: bool, out: &mut Vec<Action>) {
        if !self.holds(addr) {
            return;
        }
        let i = addr.index();
        match &mut self.contest[i] {
            None => {
                self.contest[i] = Some(Contest {
                    defences: 1,
                    repeated: false,
                    asked: false,
                    lower_mac,
                });
                self.peer = None;
                out.push(emit(
                    Event::AddressDefended,
                    format!("another host claims {}: defending it once", name(addr)),
                ));
                out.push(Action::Defend(addr));
                out.push(Action::AskPeer);
                out.push(Action::Schedule(Timer::DefendWindow(addr), DEFEND_INTERVAL));
            }
            Some(c) => {
                c.repeated = true;
                c.lower_mac = lower_mac;
                if c.asked {
                    self.decide(addr, out);
                }
            }
        }
    }

    /// The other side persisted and the peer answered (or did not): keep or give up `addr`.
    fn decide(&mut self, addr: Addr, out: &mut Vec<Action>) {
        let i = addr.index();
        let Some(c) = self.contest[i] else { return };
        let (keep, why) = match self.peer {
            Some(p) if p.holds(addr) => (
                self.outranks(addr, &p, c.lower_mac),
                format!(
                    "the peer (node {}, epoch {}) also holds {}; this host has epoch {}",
                    p.node,
                    p.epoch,
                    name(addr),
                    self.epoch
                ),
            ),
            Some(p) => (
                true,
                format!(
                    "the peer (node {}) does not hold {}: a third host claims it",
                    p.node,
                    name(addr)
                ),
            ),
            None => (
                c.lower_mac,
                format!(
                    "the peer did not answer; the lower MAC keeps {}",
                    name(addr)
                ),
            ),
        };
        if keep {
            out.push(emit(
                Event::AddressConflict,
                format!("{why}: this host keeps it"),
            ));
            let defend = c.defences < MAX_DEFENCES;
            if defend {
                out.push(Action::Defend(addr));
            }
            // The next claim is judged on a fresh answer: the two hosts may have decided on
            // different information (one heard the peer, the other did not), and only a
            // new round lets the loser see that it lost.
            self.contest[i] = Some(Contest {
                defences: c.defences + u8::from(defend),
                repeated: false,
                asked: false,
                ..c
            });
            self.peer = None;
            out.push(Action::AskPeer);
        } else {
            out.push(emit(
                Event::AddressConflict,
                format!("{why}: this host gives it up"),
            ));
            self.demote(format!("lost {} to the peer", name(addr)), out);
        }
    }

    /// The peer's answer to `AskPeer`; a primary that learns of a newer primary steps down.
    pub(super) fn peer_seen(&mut self, p: Answer, out: &mut Vec<Action>) {
        self.peer = Some(p);
        if self.role == Role::Primary
            && p.role == Role::Primary.code()
            && p.holds(Addr::Primary)
            && p.epoch > self.epoch
        {
            self.demote(
                format!(
                    "the peer (node {}) is primary at epoch {}, above this host's {}",
                    p.node, p.epoch, self.epoch
                ),
                out,
            );
            return;
        }
        self.answered(out);
    }

    /// `AskPeer` got no answer.
    pub(super) fn peer_silent(&mut self, out: &mut Vec<Action>) {
        self.peer = None;
        self.answered(out);
    }

    fn answered(&mut self, out: &mut Vec<Action>) {
        for addr in [Addr::Primary, Addr::Monitor] {
            if let Some(c) = &mut self.contest[addr.index()] {
                c.asked = true;
                if c.repeated {
                    self.decide(addr, out);
                }
            }
        }
    }

    /// The defence window of `addr` is over.
    pub(super) fn window_over(&mut self, addr: Addr) {
        self.contest[addr.index()] = None;
    }

    /// The peer says it took P over at `epoch`: a primary below it steps down.
    pub(super) fn taken_over(&mut self, epoch: u64, out: &mut Vec<Action>) {
        if self.role == Role::Primary && epoch > self.epoch {
            self.demote(
                format!(
                    "the peer took P over at epoch {epoch}, above this host's {}",
                    self.epoch
                ),
                out,
            );
        }
        self.observe_epoch(epoch);
    }

    /// The monitor's heartbeats carry `epoch`: a primary below it is stale (the monitor was
    /// primary after it) and hands P to the monitor, as a leaving primary does, so that the
    /// monitor takes it without a fence; it rejoins after the handover had time to finish.
    pub(super) fn newer_monitor(&mut self, epoch: u64, out: &mut Vec<Action>) {
        if self.role == Role::Primary && epoch > self.epoch {
            out.push(emit(
                Event::Demoted,
                format!(
                    "the monitor's heartbeats carry epoch {epoch}, above this host's {}: it was primary after this host; handing P over and rejoining",
                    self.epoch
                ),
            ));
            self.hand_p_over(out);
            out.push(Action::Hook(Hook::OnFault(Fault::Demoted)));
            self.rejoin_after_handover(out);
        }
        self.observe_epoch(epoch);
    }

    /// Releases P and tells the monitor (`leaving`): it takes P at its first missed heartbeat.
    pub(super) fn hand_p_over(&mut self, out: &mut Vec<Action>) {
        out.push(Action::Release(Addr::Primary));
        out.push(Action::SendLeaving(Role::Primary));
    }

    /// After [`Machine::hand_p_over`]: joining, after a backoff. Joining at once could find
    /// the monitor still waiting for the first missed heartbeat, P silent, and claim P again.
    pub(super) fn rejoin_after_handover(&mut self, out: &mut Vec<Action>) {
        self.contest = [None, None];
        self.set_role(Role::Joining, out);
        let d = self.backoff();
        out.push(Action::Retry(d));
    }

    /// Gives up everything held and rejoins.
    pub(super) fn demote(&mut self, why: String, out: &mut Vec<Action>) {
        out.push(emit(Event::Demoted, format!("{why}; rejoining")));
        match self.role {
            Role::Primary => out.push(Action::Release(Addr::Primary)),
            Role::Monitor | Role::Booting => {
                if self.pending_boot.is_some() {
                    out.push(Action::CancelBoot);
                }
                out.push(Action::StopMonitoring);
                out.push(Action::Release(Addr::Monitor));
            }
            Role::TakingOver => {
                out.push(Action::Release(Addr::Primary));
                out.push(Action::Release(Addr::Monitor));
            }
            Role::Joining | Role::Conflict | Role::Standby => {}
        }
        out.push(Action::Hook(Hook::OnFault(Fault::Demoted)));
        self.suspicion = None;
        self.isolated = false;
        self.contest = [None, None];
        self.set_role(Role::Joining, out);
        self.join(out);
    }
}
