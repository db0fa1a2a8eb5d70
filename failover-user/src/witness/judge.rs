//! What the witness answers, pure: renewals for the current primary, revokes only once the
//! primary has gone silent here too.
use std::{collections::BTreeMap, time::Duration};

use crate::lease::{
    wire::{Kind, Message, Reason},
    Bound, Grantor, RateCheck, RATE_BASELINE,
};

/// What the witness knows of one host.
#[derive(Clone, Debug)]
pub struct Heard {
    /// The host's per-run token and the highest sequence taken from it.
    pub token: u64,
    /// Highest sequence taken with `token`.
    pub last_seq: u64,
    /// CLOCK_MONOTONIC ns of its last request taken (witness clock).
    pub at_ns: u64,
    /// The epoch of that request.
    pub epoch: u64,
    /// Requests taken, grants given, refusals.
    pub requests: u64,
    /// Grants given.
    pub grants: u64,
    /// Refusals (revoked or older epoch).
    pub refusals: u64,
    /// Its clock's rate against the witness's.
    pub rate: RateCheck,
}

/// The judge's answer to one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send this.
    Reply(Message),
    /// Persist `revoked` (durably), then send the reply: a revoke was agreed.
    Revoke {
        /// The revoked epoch to persist.
        revoked: u64,
        /// The answer, once persisted.
        reply: Message,
    },
    /// A revoke refused: the primary still reaches the witness (send this).
    RevokeRefused(Message),
    /// A revoke the witness cannot vouch for ([`Reason::Unproven`]): nothing revoked, the
    /// monitor fences through the BMC (send this).
    Unproven(Message),
    /// Not answered (a replayed or out-of-order request, an answer kind sent to the witness).
    Ignore(&'static str),
}

/// Whether the current primary, if there is one, holds its lease from the witness.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Primary {
    /// A lease was granted since the last agreed revoke: the primary asks here.
    Leased,
    /// The revoke of this node was agreed: it takes P at an epoch above the revoked one,
    /// serving at first on its promotion's own grant, which no revoke here covers.
    Taking(u32),
    /// Nothing was granted since the witness started: a primary may hold a lease that it
    /// granted before a restart, or the monitor's alone.
    Unknown,
}

/// The witness's state.
#[derive(Clone, Debug)]
pub struct Judge {
    bound: Bound,
    grantor: Grantor,
    detection_ns: u64,
    /// By node id.
    pub heard: BTreeMap<u32, Heard>,
    /// Revokes agreed and refused.
    pub revokes: u64,
    /// Revokes refused.
    pub revokes_refused: u64,
    /// CLOCK_MONOTONIC ns since which this witness listens (`listening_since`): what it did
    /// not hear before that proves nothing.
    since_ns: Option<u64>,
    /// Whether the current primary holds its lease from here.
    pub primary: Primary,
    /// The host the last grant went to.
    granted_node: Option<u32>,
    /// While `Primary::Taking`, the other host is refused until then (CLOCK_MONOTONIC ns).
    taking_until_ns: u64,
    /// How long a taker may take to ask for its first lease: its wait, its claim and its
    /// gate's attach.
    taking_bar: Duration,
}

/// Besides two of the longest leases, what a taker's claim and its gate's attach may take.
const TAKING_SLACK: Duration = Duration::from_secs(1);

impl Judge {
    /// A judge granting at most `max_lease`, refusing revokes while the primary was heard
    /// within `detection`; epochs up to `revoked` (persisted) are never granted.
    pub fn new(bound: Bound, max_lease: Duration, detection: Duration, revoked: u64) -> Judge {
        Judge {
            bound,
            grantor: Grantor::new(bound, max_lease, revoked),
            detection_ns: detection.as_nanos() as u64,
            heard: BTreeMap::new(),
            revokes: 0,
            revokes_refused: 0,
            since_ns: None,
            primary: Primary::Unknown,
            granted_node: None,
            taking_until_ns: 0,
            taking_bar: bound.hold(max_lease) * 2 + TAKING_SLACK,
        }
    }

    /// The witness listens from `now_ns` on: a revoke is agreed only once it has listened a
    /// whole detection window without hearing the primary (a restarted witness has heard
    /// nobody yet, which is not the primary's silence).
    pub fn listening_since(&mut self, now_ns: u64) {
        self.since_ns = Some(now_ns);
    }

    /// Epochs up to this are revoked.
    pub fn revoked(&self) -> u64 {
        self.grantor.revoked()
    }

    /// The highest epoch granted.
    pub fn granted_epoch(&self) -> u64 {
        self.grantor.granted_epoch()
    }

    /// How long the last grant may still run at `now_ns`.
    pub fn outstanding(&self, now_ns: u64) -> Duration {
        self.grantor.outstanding(now_ns)
    }

    /// One authenticated message, received at `now_ns`.
    pub fn on_message(&mut self, m: Message, now_ns: u64) -> Verdict {
        match m.kind {
            Kind::Request => self.request(m, now_ns),
            Kind::Revoke => self.revoke(m, now_ns),
            _ => Verdict::Ignore("an answer kind sent to the witness"),
        }
    }

    fn request(&mut self, m: Message, now_ns: u64) -> Verdict {
        let h = self.heard.entry(m.node).or_insert_with(|| Heard {
            token: m.token,
            last_seq: 0,
            at_ns: 0,
            epoch: 0,
            requests: 0,
            grants: 0,
            refusals: 0,
            rate: RateCheck::new(self.bound, RATE_BASELINE),
        });
        if h.token == m.token && m.seq <= h.last_seq {
            return Verdict::Ignore("a replayed or reordered request");
        }
        if h.token != m.token {
            // A new run of that host's daemon: its clock samples start again.
            h.token = m.token;
            h.rate = RateCheck::new(self.bound, RATE_BASELINE);
        }
        h.last_seq = m.seq;
        h.at_ns = now_ns;
        h.epoch = m.epoch;
        h.requests += 1;
        h.rate.sample(now_ns, m.stamp_ns);
        // One holder at a time. After an agreed revoke only the taker is granted, for as
        // long as it may take to ask (the other host may be a primary at an epoch nobody
        // saw, promoted just before it froze, and thawed now); and a host is granted only
        // once every grant to the other host has run out, so the two never hold a grant from
        // here at once, whatever their epochs.
        let barred = match self.primary {
            Primary::Taking(x) => x != m.node && now_ns < self.taking_until_ns,
            _ => false,
        };
        let other_holds = self.granted_node.is_some_and(|n| n != m.node)
            && self.grantor.outstanding(now_ns) > Duration::ZERO;
        let other_holder = barred || other_holds;
        let granted = if other_holder {
            Err(crate::lease::Refusal::Revoked)
        } else {
            self.grantor
                .request(m.epoch, Duration::from_nanos(m.value_ns), now_ns)
        };
        match granted {
            Ok(lease) => {
                h.grants += 1;
                self.primary = Primary::Leased;
                self.granted_node = Some(m.node);
                Verdict::Reply(m.answer(
                    Kind::Grant,
                    Reason::None,
                    0,
                    lease.as_nanos() as u64,
                    now_ns,
                ))
            }
            Err(r) => {
                h.refusals += 1;
                Verdict::Reply(m.answer(Kind::Refuse, r.into(), 0, 0, now_ns))
            }
        }
    }

    fn revoke(&mut self, m: Message, now_ns: u64) -> Verdict {
        // Everything granted so far, and the monitor's epoch: never granted again, from the
        // agreement on. The answer names the epoch, so that the next primary's is above it.
        let upto = m.epoch.max(self.grantor.granted_epoch());
        // Whether the primary of the monitor's epoch (or a later one) ever held a lease from
        // here: if not, the end of the witness's grants says nothing about it.
        let reason = if self.grantor.granted_epoch() >= m.epoch {
            Reason::None
        } else {
            Reason::NotGranted
        };
        let answer = |g: &Grantor| Message {
            epoch: g.revoked(),
            ..m.answer(
                Kind::Revoked,
                reason,
                0,
                g.outstanding(now_ns).as_nanos() as u64,
                now_ns,
            )
        };
        if self.primary == Primary::Taking(m.node) && self.grantor.revoked() >= upto {
            // Already agreed (a retransmitted request): the lease is not renewed here whatever
            // the primary does now, so the answer stands; it was persisted.
            return Verdict::Reply(answer(&self.grantor));
        }
        // The primary as heard here: the latest request of any other host, whatever its epoch
        // (one above the monitor's is a primary the monitor does not know of: alive too).
        let last = self
            .heard
            .iter()
            .filter(|(node, h)| **node != m.node && h.requests > 0)
            .map(|(_, h)| h.at_ns)
            .chain(self.since_ns)
            .max();
        if let Some(at) = last {
            let ago = now_ns.saturating_sub(at);
            if ago < self.detection_ns {
                self.revokes_refused += 1;
                return Verdict::RevokeRefused(m.answer(
                    Kind::RevokeRefused,
                    Reason::None,
                    0,
                    ago,
                    now_ns,
                ));
            }
        }
        if self.primary != Primary::Leased {
            // The other host took P over by an earlier agreement (or the witness restarted)
            // and has not asked for a lease since: it may serve on its promotion's grant,
            // which ending the grants here does not end. Nothing is revoked; the monitor
            // fences through the BMC.
            self.revokes += 1;
            return Verdict::Unproven(Message {
                epoch: self.grantor.revoked(),
                ..m.answer(Kind::Revoked, Reason::Unproven, 0, 0, now_ns)
            });
        }
        // Revoked before it is persisted: nothing is granted to it meanwhile either.
        self.grantor.revoke(upto);
        self.revokes += 1;
        self.primary = Primary::Taking(m.node);
        self.taking_until_ns = now_ns.saturating_add(self.taking_bar.as_nanos() as u64);
        Verdict::Revoke {
            revoked: self.grantor.revoked(),
            reply: answer(&self.grantor),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn req(node: u32, epoch: u64, seq: u64) -> Message {
        Message {
            kind: Kind::Request,
            reason: Reason::None,
            node,
            epoch,
            seq,
            token: 100 + u64::from(node),
            value_ns: 40 * MS,
            stamp_ns: seq * MS,
        }
    }

    fn revoke(node: u32, epoch: u64) -> Message {
        Message {
            kind: Kind::Revoke,
            seq: 1,
            token: 9,
            ..req(node, epoch, 1)
        }
    }

    fn judge() -> Judge {
        Judge::new(
            Bound::default(),
            Duration::from_secs(1),
            Duration::from_millis(30),
            0,
        )
    }

    #[test]
    fn the_primary_is_granted_and_replays_are_ignored() {
        let mut j = judge();
        let Verdict::Reply(g) = j.on_message(req(1, 3, 1), 0) else {
            panic!()
        };
        assert_eq!((g.kind, g.seq, g.value_ns), (Kind::Grant, 1, 40 * MS));
        assert_eq!(
            j.on_message(req(1, 3, 1), MS),
            Verdict::Ignore("a replayed or reordered request")
        );
        // A new run (token) of the same host is taken.
        let again = Message {
            token: 5,
            ..req(1, 3, 1)
        };
        assert!(matches!(
            j.on_message(again, 2 * MS),
            Verdict::Reply(Message {
                kind: Kind::Grant,
                ..
            })
        ));
    }

    #[test]
    fn a_revoke_is_refused_while_the_primary_is_heard_and_agreed_after() {
        let mut j = judge();
        j.on_message(req(1, 3, 1), 0);
        let Verdict::RevokeRefused(r) = j.on_message(revoke(2, 3), 10 * MS) else {
            panic!()
        };
        assert_eq!(r.value_ns, 10 * MS, "heard 10 ms ago");
        let Verdict::Revoke { revoked, reply } = j.on_message(revoke(2, 3), 31 * MS) else {
            panic!()
        };
        assert_eq!(revoked, 3);
        // The grant at 0 may run until its hold: 40 ms stretched.
        let hold = Bound::default().hold(Duration::from_millis(40)).as_nanos() as u64;
        assert_eq!(reply.value_ns, hold - 31 * MS);
        // The revoked epoch is never granted again; the next primary is.
        let Verdict::Reply(r) = j.on_message(req(1, 3, 2), 40 * MS) else {
            panic!()
        };
        assert_eq!((r.kind, r.reason), (Kind::Refuse, Reason::Revoked));
        let Verdict::Reply(g) = j.on_message(req(2, 4, 1), 41 * MS) else {
            panic!()
        };
        assert_eq!(g.kind, Kind::Grant);
        // A witness restarted with the revoked epoch persisted refuses it too.
        let mut after = Judge::new(
            Bound::default(),
            Duration::from_secs(1),
            Duration::from_millis(30),
            3,
        );
        let Verdict::Reply(r) = after.on_message(req(1, 3, 9), 0) else {
            panic!()
        };
        assert_eq!(r.kind, Kind::Refuse);
    }

    #[test]
    fn a_revoke_for_a_primary_not_heard_since_its_lease_is_agreed_and_answers_are_ignored() {
        let mut j = judge();
        j.on_message(req(1, 5, 1), 0);
        assert!(matches!(
            j.on_message(revoke(2, 5), 31 * MS),
            Verdict::Revoke { revoked: 5, .. }
        ));
        let grant = Message {
            kind: Kind::Grant,
            ..req(1, 5, 1)
        };
        assert!(matches!(j.on_message(grant, 0), Verdict::Ignore(_)));
        // The monitor's own requests at the revoked epoch do not count as the primary heard.
        let mut j = judge();
        j.on_message(req(2, 6, 1), 0);
        assert!(matches!(
            j.on_message(revoke(2, 6), MS),
            Verdict::Revoke { .. }
        ));
    }

    #[test]
    fn a_witness_that_granted_nothing_since_it_started_vouches_for_no_revoke() {
        // A primary may serve on a lease granted before the restart, or on the monitor's
        // alone: nothing is revoked, the monitor fences through the BMC.
        let mut j = judge();
        let Verdict::Unproven(r) = j.on_message(revoke(2, 5), 0) else {
            panic!()
        };
        assert_eq!(
            (r.kind, r.reason, r.epoch),
            (Kind::Revoked, Reason::Unproven, 0)
        );
        assert_eq!(j.revoked(), 0);
        // Once a primary asks, the witness judges as usual.
        j.on_message(req(1, 5, 1), MS);
        assert!(matches!(
            j.on_message(revoke(2, 5), 40 * MS),
            Verdict::Revoke { revoked: 5, .. }
        ));
    }

    #[test]
    fn after_a_takeover_is_agreed_the_other_hosts_revoke_is_unproven_until_the_taker_asks() {
        let mut j = judge();
        j.on_message(req(1, 3, 1), 0);
        // Node 2 takes P over by this agreement, at an epoch above 3.
        assert!(matches!(
            j.on_message(revoke(2, 3), 31 * MS),
            Verdict::Revoke { revoked: 3, .. }
        ));
        // Node 1 (cut off from node 2, never told) decides that node 2 failed before node 2
        // asked for its first lease: node 2 serves on its promotion's grant, which no revoke
        // here ends, so the witness vouches for nothing.
        let Verdict::Unproven(r) = j.on_message(revoke(1, 3), 62 * MS) else {
            panic!()
        };
        assert_eq!(r.reason, Reason::Unproven);
        assert_eq!(j.revoked(), 3, "nothing more revoked");
        // Node 2's retransmitted request is still answered as agreed.
        let Verdict::Reply(again) = j.on_message(revoke(2, 3), 63 * MS) else {
            panic!()
        };
        assert_eq!((again.kind, again.reason), (Kind::Revoked, Reason::None));
        // Node 2 asks at epoch 4: now a revoke from node 1 is judged (refused: heard).
        j.on_message(req(2, 4, 1), 64 * MS);
        assert_eq!(j.primary, Primary::Leased);
        assert!(matches!(
            j.on_message(revoke(1, 3), 70 * MS),
            Verdict::RevokeRefused(_)
        ));
    }

    #[test]
    fn a_restarted_witness_agrees_only_after_listening_a_whole_window() {
        let mut j = judge();
        j.listening_since(100 * MS);
        j.on_message(req(1, 5, 1), 95 * MS);
        assert!(matches!(
            j.on_message(revoke(2, 5), 110 * MS),
            Verdict::RevokeRefused(_)
        ));
        assert!(matches!(
            j.on_message(revoke(2, 5), 131 * MS),
            Verdict::Revoke { revoked: 5, .. }
        ));
    }

    #[test]
    fn a_revoke_covers_every_epoch_granted_and_a_primary_above_the_monitors_epoch_is_heard() {
        let mut j = judge();
        // A primary at epoch 7 that the monitor (at 5) does not know of is alive here.
        j.on_message(req(1, 7, 1), 0);
        assert!(matches!(
            j.on_message(revoke(2, 5), 10 * MS),
            Verdict::RevokeRefused(_)
        ));
        // Once it is silent, the revoke covers epoch 7 too, and says so.
        let Verdict::Revoke { revoked, reply } = j.on_message(revoke(2, 5), 31 * MS) else {
            panic!()
        };
        assert_eq!((revoked, reply.epoch), (7, 7));
        let Verdict::Reply(r) = j.on_message(req(1, 7, 2), 32 * MS) else {
            panic!()
        };
        assert_eq!(r.kind, Kind::Refuse);
        // A retransmitted revoke is answered the same way, without a second persist.
        let Verdict::Reply(again) = j.on_message(revoke(2, 5), 33 * MS) else {
            panic!()
        };
        assert_eq!((again.kind, again.epoch), (Kind::Revoked, 7));
        assert_eq!(again.reason, Reason::None, "epoch 7 was granted");
        // A monitor's epoch above everything granted: the witness says so.
        let mut j = judge();
        j.on_message(req(1, 7, 1), 0);
        let Verdict::Revoke { reply, .. } = j.on_message(revoke(2, 9), 31 * MS) else {
            panic!()
        };
        assert_eq!(reply.reason, Reason::NotGranted);
    }

    #[test]
    fn after_an_agreed_takeover_only_the_taker_is_granted_and_an_epoch_has_one_holder() {
        let mut j = judge();
        j.on_message(req(1, 1, 1), 0);
        // Node 1 restarted, was promoted again at epoch 2 (nobody saw it) and froze before
        // asking; node 2, at epoch 0, has the old lease revoked and takes P at epoch 2 too.
        assert!(matches!(
            j.on_message(revoke(2, 0), 31 * MS),
            Verdict::Revoke { revoked: 1, .. }
        ));
        let thawed = Message {
            token: 77,
            ..req(1, 2, 1)
        };
        let Verdict::Reply(r) = j.on_message(thawed, 40 * MS) else {
            panic!()
        };
        assert_eq!((r.kind, r.reason), (Kind::Refuse, Reason::Revoked));
        // The taker is granted; the other host stays refused at that epoch.
        let Verdict::Reply(g) = j.on_message(req(2, 2, 1), 41 * MS) else {
            panic!()
        };
        assert_eq!(g.kind, Kind::Grant);
        let again = Message {
            token: 77,
            ..req(1, 2, 2)
        };
        let Verdict::Reply(r) = j.on_message(again, 42 * MS) else {
            panic!()
        };
        assert_eq!((r.kind, r.reason), (Kind::Refuse, Reason::Revoked));
        // Not at a higher epoch either while node 2's grant runs...
        let higher = |seq| Message {
            token: 78,
            ..req(1, 3, seq)
        };
        let Verdict::Reply(r) = j.on_message(higher(1), 43 * MS) else {
            panic!()
        };
        assert_eq!(r.kind, Kind::Refuse);
        // ... but once it has run out (node 2 stopped asking: it left or failed).
        let after = 41 * MS + Bound::default().hold(Duration::from_millis(40)).as_nanos() as u64;
        let Verdict::Reply(g) = j.on_message(higher(2), after + 1) else {
            panic!()
        };
        assert_eq!(g.kind, Kind::Grant);
    }

    #[test]
    fn a_taker_that_never_asks_bars_the_other_host_only_for_a_while() {
        let mut j = judge();
        j.on_message(req(1, 1, 1), 0);
        assert!(matches!(
            j.on_message(revoke(2, 1), 31 * MS),
            Verdict::Revoke { .. }
        ));
        // Node 2 died after the agreement; node 1 fenced it through the BMC and took P.
        let Verdict::Reply(r) = j.on_message(req(1, 3, 2), 100 * MS) else {
            panic!()
        };
        assert_eq!(r.kind, Kind::Refuse, "barred while node 2 may still ask");
        let Verdict::Reply(g) = j.on_message(req(1, 3, 3), 4_000 * MS) else {
            panic!()
        };
        assert_eq!(g.kind, Kind::Grant, "then granted");
    }
}
