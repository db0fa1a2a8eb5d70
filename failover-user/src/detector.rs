//! Deadline judging: pure code, fed with send times, XDP arrival stamps and a clock.
//!
//! All times are CLOCK_MONOTONIC nanoseconds, the clock of `bpf_ktime_get_ns()`. A probe is
//! judged by when its reply reached XDP, not by when userspace looked: a controller that stalls
//! for a while still counts a reply that arrived in time as in time.
use std::collections::VecDeque;

use failover_common::Arrival;

/// One signal that was sent.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Full sequence number of the probe.
    pub seq: u64,
    /// CLOCK_MONOTONIC ns just before the send call.
    pub sent_ns: u64,
    /// Whether the send call itself failed (the probe cannot be answered).
    pub send_failed: bool,
}

/// The final judgement of one probe.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The reply reached XDP before the deadline.
    InTime {
        /// Arrival stamp minus send time.
        rtt_ns: u64,
    },
    /// The reply reached XDP after the deadline but within the late window.
    Late {
        /// Arrival stamp minus send time.
        rtt_ns: u64,
    },
    /// No reply within deadline plus late window.
    Lost,
}

impl Outcome {
    /// Round-trip time, for the outcomes that have one.
    pub fn rtt_ns(&self) -> Option<u64> {
        match *self {
            Outcome::InTime { rtt_ns } | Outcome::Late { rtt_ns } => Some(rtt_ns),
            Outcome::Lost => None,
        }
    }

    /// Stable lower-case name, as printed and in JSON.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::InTime { .. } => "in_time",
            Outcome::Late { .. } => "late",
            Outcome::Lost => "lost",
        }
    }
}

/// Deadline parameters.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// The predetermined time period of one probe.
    pub timeout_ns: u64,
    /// How long after the deadline a reply still counts as late rather than lost.
    pub late_window_ns: u64,
    /// Mask applied to a probe's sequence to get what travels on the wire (0xffff for ICMP).
    pub wire_seq_mask: u64,
}

/// How many probes sent every `interval` are outstanding at once when each stays open for
/// `open` (its timeout, plus any late window). Must stay below the arrival ring's size.
pub fn probes_in_flight(open: std::time::Duration, interval: std::time::Duration) -> u128 {
    open.as_nanos() / interval.as_nanos().max(1) + 1
}

/// Whether `arrival` is the reply to `probe`.
pub fn matches(probe: &Probe, arrival: &Arrival, mask: u64) -> bool {
    arrival.ns != 0 && arrival.seq == probe.seq & mask && arrival.ns >= probe.sent_ns
}

/// The round-trip time of `probe` when `arrival` is its reply.
fn reply_rtt(d: &Deadlines, probe: &Probe, arrival: Option<&Arrival>) -> Option<u64> {
    arrival
        .filter(|a| matches(probe, a, d.wire_seq_mask))
        .map(|a| a.ns - probe.sent_ns)
}

/// Judges one probe at time `now_ns`; `None` while it is still undecided.
pub fn judge(
    d: &Deadlines,
    probe: &Probe,
    arrival: Option<&Arrival>,
    now_ns: u64,
) -> Option<Outcome> {
    if let Some(rtt_ns) = reply_rtt(d, probe, arrival) {
        return Some(if rtt_ns <= d.timeout_ns {
            Outcome::InTime { rtt_ns }
        } else {
            Outcome::Late { rtt_ns }
        });
    }
    let horizon = probe.sent_ns + d.timeout_ns + d.late_window_ns;
    if probe.send_failed || now_ns >= horizon {
        Some(Outcome::Lost)
    } else {
        None
    }
}

/// The verdict at a probe's deadline, for failure detection: a late reply is a miss.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Stamped before the deadline.
    InTime {
        /// Arrival stamp minus send time.
        rtt_ns: u64,
    },
    /// No in-time reply by the deadline (or the send failed).
    Missed,
}

/// Judges one probe for failure detection at `now_ns`; `None` while its deadline is ahead and
/// no reply has been stamped.
pub fn judge_at_deadline(
    d: &Deadlines,
    probe: &Probe,
    arrival: Option<&Arrival>,
    now_ns: u64,
) -> Option<Verdict> {
    if let Some(rtt_ns) = reply_rtt(d, probe, arrival) {
        return Some(if rtt_ns <= d.timeout_ns {
            Verdict::InTime { rtt_ns }
        } else {
            Verdict::Missed
        });
    }
    if probe.send_failed || now_ns > probe.sent_ns + d.timeout_ns {
        Some(Verdict::Missed)
    } else {
        None
    }
}

/// What the liveness tracker concluded from one verdict.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum LivenessEvent {
    /// The first in-time reply: failure detection is armed from now on.
    Armed,
    /// A miss while armed, with the count of consecutive misses.
    Missed {
        /// Consecutive misses so far.
        consecutive: u32,
    },
    /// An in-time reply after misses that did not reach the limit, or `recover_after`
    /// in-time replies in a row after a failure.
    Recovered {
        /// How many misses preceded it (up to the failure).
        after: u32,
    },
    /// `misses` consecutive misses: the primary failed. Reported once until it recovers.
    Failed {
        /// Consecutive misses.
        consecutive: u32,
    },
}

/// Counts consecutive misses. Never reports a failure of a primary it has not seen answer.
///
/// After a failure it keeps watching: `recover_after` consecutive in-time replies report the
/// primary recovered (a pending fence can then be cancelled), and a new failure can follow.
#[derive(Clone, Debug)]
pub struct Liveness {
    limit: u32,
    recover_after: u32,
    consecutive: u32,
    /// In-time replies in a row since the failure.
    streak: u32,
    armed: bool,
    failed: bool,
}

impl Liveness {
    /// A disarmed tracker that fails after `misses` consecutive misses and, once failed,
    /// recovers after `recover_after` consecutive in-time replies.
    pub fn new(misses: u32, recover_after: u32) -> Liveness {
        Liveness {
            limit: misses.max(1),
            recover_after: recover_after.max(1),
            consecutive: 0,
            streak: 0,
            armed: false,
            failed: false,
        }
    }

    /// The same tracker, armed already when `seen` (P answered an earlier tracker).
    pub fn armed_if(mut self, seen: bool) -> Liveness {
        self.armed |= seen;
        self
    }

    /// Whether an in-time reply has been seen.
    pub fn armed(&self) -> bool {
        self.armed
    }

    /// Consecutive misses so far (up to the failure).
    pub fn consecutive(&self) -> u32 {
        self.consecutive
    }

    /// Forgets a failure (and the misses towards one), staying armed: the primary is judged
    /// afresh from the next verdict, so a new failure needs a full `misses` window. Used when
    /// this host's own side was cut off meanwhile: misses seen then prove nothing about P.
    pub fn rejudge(&mut self) {
        self.failed = false;
        self.consecutive = 0;
        self.streak = 0;
    }

    /// Feeds one verdict (in send order).
    pub fn observe(&mut self, v: &Verdict) -> Option<LivenessEvent> {
        match v {
            Verdict::InTime { .. } if self.failed => {
                self.streak += 1;
                if self.streak < self.recover_after {
                    return None;
                }
                self.failed = false;
                self.streak = 0;
                Some(LivenessEvent::Recovered {
                    after: std::mem::take(&mut self.consecutive),
                })
            }
            Verdict::InTime { .. } => {
                let after = std::mem::take(&mut self.consecutive);
                if !self.armed {
                    self.armed = true;
                    Some(LivenessEvent::Armed)
                } else if after > 0 {
                    Some(LivenessEvent::Recovered { after })
                } else {
                    None
                }
            }
            Verdict::Missed if self.failed => {
                self.streak = 0;
                None
            }
            Verdict::Missed if !self.armed => None,
            Verdict::Missed => {
                self.consecutive += 1;
                if self.consecutive >= self.limit {
                    self.failed = true;
                    Some(LivenessEvent::Failed {
                        consecutive: self.consecutive,
                    })
                } else {
                    Some(LivenessEvent::Missed {
                        consecutive: self.consecutive,
                    })
                }
            }
        }
    }
}

/// Outstanding probes, judged in send order.
#[derive(Debug)]
pub struct ProbeBook {
    deadlines: Deadlines,
    pending: VecDeque<Probe>,
}

impl ProbeBook {
    /// An empty book.
    pub fn new(deadlines: Deadlines) -> Self {
        ProbeBook {
            deadlines,
            pending: VecDeque::new(),
        }
    }

    /// Records a sent probe.
    pub fn sent(&mut self, probe: Probe) {
        self.pending.push_back(probe);
    }

    /// Number of probes not yet judged.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// Earliest time at which the oldest outstanding probe is sure to be decided.
    pub fn next_horizon(&self) -> Option<u64> {
        self.pending
            .front()
            .map(|p| p.sent_ns + self.deadlines.timeout_ns + self.deadlines.late_window_ns)
    }

    /// Judges outstanding probes at `now_ns`, looking up arrivals with `lookup(seq)`.
    ///
    /// Decided probes are returned in send order; judging stops at the first undecided one so
    /// the output order is the send order.
    pub fn poll<E>(
        &mut self,
        now_ns: u64,
        lookup: impl FnMut(u64) -> Result<Option<Arrival>, E>,
    ) -> Result<Vec<(Probe, Outcome)>, E> {
        self.poll_with(now_ns, lookup, judge)
    }

    /// Like [`ProbeBook::poll`], but decides at each deadline (late replies are misses): the
    /// daemon's failure detection.
    pub fn poll_deadlines<E>(
        &mut self,
        now_ns: u64,
        lookup: impl FnMut(u64) -> Result<Option<Arrival>, E>,
    ) -> Result<Vec<(Probe, Verdict)>, E> {
        self.poll_with(now_ns, lookup, judge_at_deadline)
    }

    fn poll_with<T, E>(
        &mut self,
        now_ns: u64,
        mut lookup: impl FnMut(u64) -> Result<Option<Arrival>, E>,
        judge_fn: fn(&Deadlines, &Probe, Option<&Arrival>, u64) -> Option<T>,
    ) -> Result<Vec<(Probe, T)>, E> {
        let mut out = Vec::new();
        while let Some(p) = self.pending.front().copied() {
            let arrival = if p.send_failed { None } else { lookup(p.seq)? };
            match judge_fn(&self.deadlines, &p, arrival.as_ref(), now_ns) {
                Some(o) => {
                    self.pending.pop_front();
                    out.push((p, o));
                }
                None => break,
            }
        }
        Ok(out)
    }
}

/// Totals over judged probes, as printed by `failover probe`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProbeSummary {
    /// Probes sent (including those whose send call failed).
    pub sent: u64,
    /// Replies before the deadline.
    pub in_time: u64,
    /// Replies after the deadline.
    pub late: u64,
    /// No reply.
    pub lost: u64,
    rtts_ns: Vec<u64>,
}

impl ProbeSummary {
    /// Adds one judged probe.
    pub fn add(&mut self, o: &Outcome) {
        self.sent += 1;
        match o {
            Outcome::InTime { .. } => self.in_time += 1,
            Outcome::Late { .. } => self.late += 1,
            Outcome::Lost => self.lost += 1,
        }
        if let Some(r) = o.rtt_ns() {
            self.rtts_ns.push(r);
        }
    }

    /// (min, median, max) round-trip time in microseconds over all replies, `None` without any.
    pub fn rtt_us(&self) -> Option<(f64, f64, f64)> {
        let mut v = self.rtts_ns.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let us = |ns: u64| ns as f64 / 1000.0;
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            us(v[mid])
        } else {
            (us(v[mid - 1]) + us(v[mid])) / 2.0
        };
        Some((us(v[0]), median, us(v[v.len() - 1])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const D: Deadlines = Deadlines {
        timeout_ns: 5 * MS,
        late_window_ns: 100 * MS,
        wire_seq_mask: 0xffff,
    };

    fn probe(seq: u64, sent_ns: u64) -> Probe {
        Probe {
            seq,
            sent_ns,
            send_failed: false,
        }
    }

    fn arr(seq: u64, ns: u64) -> Arrival {
        Arrival { seq, ns }
    }

    #[test]
    fn judge_table() {
        let p = probe(7, 1000 * MS);
        // (arrival, now, expected)
        let rows: &[(Option<Arrival>, u64, Option<Outcome>)] = &[
            // Reply 1 ms after send, looked at immediately.
            (
                Some(arr(7, 1001 * MS)),
                1001 * MS,
                Some(Outcome::InTime { rtt_ns: MS }),
            ),
            // Same reply looked at 3 s later by a stalled controller: still in time.
            (
                Some(arr(7, 1001 * MS)),
                4000 * MS,
                Some(Outcome::InTime { rtt_ns: MS }),
            ),
            // Exactly on the deadline counts as in time.
            (
                Some(arr(7, 1005 * MS)),
                1006 * MS,
                Some(Outcome::InTime { rtt_ns: 5 * MS }),
            ),
            // One ns after the deadline is late.
            (
                Some(arr(7, 1005 * MS + 1)),
                1006 * MS,
                Some(Outcome::Late { rtt_ns: 5 * MS + 1 }),
            ),
            // Nothing yet, before the horizon: undecided.
            (None, 1050 * MS, None),
            // Nothing at the horizon: lost.
            (None, 1105 * MS, Some(Outcome::Lost)),
            // A slot holding another sequence is not our reply.
            (Some(arr(8, 1001 * MS)), 1002 * MS, None),
            // A stale stamp from before the send (ring wrapped) is not our reply.
            (Some(arr(7, 999 * MS)), 1200 * MS, Some(Outcome::Lost)),
            // An empty slot.
            (Some(arr(0, 0)), 1002 * MS, None),
        ];
        for (i, (a, now, want)) in rows.iter().enumerate() {
            assert_eq!(judge(&D, &p, a.as_ref(), *now), *want, "row {i}");
        }
    }

    #[test]
    fn icmp_sequence_wraps_through_mask() {
        let p = probe(0x1_0003, 10 * MS);
        assert_eq!(
            judge(&D, &p, Some(&arr(3, 11 * MS)), 11 * MS),
            Some(Outcome::InTime { rtt_ns: MS })
        );
        let udp = Deadlines {
            wire_seq_mask: u64::MAX,
            ..D
        };
        assert_eq!(judge(&udp, &p, Some(&arr(3, 11 * MS)), 11 * MS), None);
    }

    #[test]
    fn failed_send_is_lost_at_once() {
        let p = Probe {
            send_failed: true,
            ..probe(1, 10 * MS)
        };
        assert_eq!(judge(&D, &p, None, 10 * MS), Some(Outcome::Lost));
    }

    #[test]
    fn book_reports_in_send_order() {
        let mut book = ProbeBook::new(D);
        book.sent(probe(1, 0));
        book.sent(probe(2, 10 * MS));
        book.sent(probe(3, 20 * MS));
        // Probe 2 answered, probe 1 not yet decided: nothing is reported out of order.
        let arrivals = |seq: u64| -> Result<Option<Arrival>, ()> {
            Ok(match seq {
                2 => Some(arr(2, 11 * MS)),
                3 => Some(arr(3, 30 * MS)),
                _ => None,
            })
        };
        assert!(book.poll(21 * MS, arrivals).unwrap().is_empty());
        assert_eq!(book.next_horizon(), Some(105 * MS));
        let got = book.poll(105 * MS, arrivals).unwrap();
        let names: Vec<_> = got.iter().map(|(p, o)| (p.seq, o.name())).collect();
        assert_eq!(names, vec![(1, "lost"), (2, "in_time"), (3, "late")]);
        assert_eq!(book.outstanding(), 0);
    }

    #[test]
    fn deadline_verdicts() {
        let p = probe(7, 1000 * MS);
        let rows: &[(Option<Arrival>, u64, Option<Verdict>)] = &[
            (
                Some(arr(7, 1001 * MS)),
                1001 * MS,
                Some(Verdict::InTime { rtt_ns: MS }),
            ),
            // Read long after by a stalled controller: still in time (kernel stamp decides).
            (
                Some(arr(7, 1001 * MS)),
                9000 * MS,
                Some(Verdict::InTime { rtt_ns: MS }),
            ),
            (None, 1004 * MS, None),
            (None, 1005 * MS, None),
            (None, 1005 * MS + 1, Some(Verdict::Missed)),
            // A late reply is a miss at once.
            (Some(arr(7, 1006 * MS)), 1006 * MS, Some(Verdict::Missed)),
        ];
        for (i, (a, now, want)) in rows.iter().enumerate() {
            assert_eq!(
                judge_at_deadline(&D, &p, a.as_ref(), *now),
                *want,
                "row {i}"
            );
        }
    }

    #[test]
    fn liveness_table() {
        use LivenessEvent::*;
        let ok = Verdict::InTime { rtt_ns: 1 };
        let miss = Verdict::Missed;
        // (verdicts, expected events) with a limit of 3 misses, recovery after 2 in a row
        let rows: Vec<(Vec<Verdict>, Vec<Option<LivenessEvent>>)> = vec![
            // Never seen: misses are not counted, no failure ever (never fence an unseen primary).
            (vec![miss; 10], vec![None; 10]),
            (
                vec![ok, miss, miss, miss, miss, ok],
                vec![
                    Some(Armed),
                    Some(Missed { consecutive: 1 }),
                    Some(Missed { consecutive: 2 }),
                    Some(Failed { consecutive: 3 }),
                    None,
                    None,
                ],
            ),
            (
                vec![ok, miss, miss, ok, miss, miss, ok],
                vec![
                    Some(Armed),
                    Some(Missed { consecutive: 1 }),
                    Some(Missed { consecutive: 2 }),
                    Some(Recovered { after: 2 }),
                    Some(Missed { consecutive: 1 }),
                    Some(Missed { consecutive: 2 }),
                    Some(Recovered { after: 2 }),
                ],
            ),
            (vec![miss, ok, ok], vec![None, Some(Armed), None]),
            // After the failure: a miss breaks the streak, two in a row recover, and the next
            // three misses fail again.
            (
                vec![ok, miss, miss, miss, ok, miss, ok, ok, miss, miss, miss],
                vec![
                    Some(Armed),
                    Some(Missed { consecutive: 1 }),
                    Some(Missed { consecutive: 2 }),
                    Some(Failed { consecutive: 3 }),
                    None,
                    None,
                    None,
                    Some(Recovered { after: 3 }),
                    Some(Missed { consecutive: 1 }),
                    Some(Missed { consecutive: 2 }),
                    Some(Failed { consecutive: 3 }),
                ],
            ),
        ];
        for (i, (input, want)) in rows.into_iter().enumerate() {
            let mut l = Liveness::new(3, 2);
            let got: Vec<_> = input.iter().map(|v| l.observe(v)).collect();
            assert_eq!(got, want, "row {i}");
        }
    }

    #[test]
    fn rejudge_needs_a_new_full_window() {
        use LivenessEvent::*;
        let ok = Verdict::InTime { rtt_ns: 1 };
        let miss = Verdict::Missed;
        let mut l = Liveness::new(3, 2);
        for v in [ok, miss, miss, miss, miss] {
            l.observe(&v);
        }
        l.rejudge();
        assert!(l.armed());
        assert_eq!(l.consecutive(), 0);
        let got: Vec<_> = [miss, miss, miss, ok]
            .iter()
            .map(|v| l.observe(v))
            .collect();
        assert_eq!(
            got,
            vec![
                Some(Missed { consecutive: 1 }),
                Some(Missed { consecutive: 2 }),
                Some(Failed { consecutive: 3 }),
                None,
            ]
        );
    }

    #[test]
    fn summary_median() {
        let mut s = ProbeSummary::default();
        assert_eq!(s.rtt_us(), None);
        for r in [4000, 1000, 3000] {
            s.add(&Outcome::InTime { rtt_ns: r });
        }
        s.add(&Outcome::Lost);
        s.add(&Outcome::Late { rtt_ns: 9000 });
        assert_eq!((s.sent, s.in_time, s.late, s.lost), (5, 3, 1, 1));
        assert_eq!(s.rtt_us(), Some((1.0, 3.5, 9.0)));
    }
}
