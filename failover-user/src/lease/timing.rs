//! The lease's timing rules, pure: each side computes from its own monotonic clock, and only a
//! bound on the clocks' rates is assumed (docs/design.md, "The lease").
use std::time::Duration;

/// Clocks run within `ppm` parts per million of real time (default 1 %).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Bound {
    ppm: u32,
}

/// The default clock-rate bound: 1 %, far above what NTP-less quartz drifts (tens of ppm), so
/// that a clock outside it is broken, not merely unsynchronised.
pub const DEFAULT_PPM: u32 = 10_000;

impl Default for Bound {
    fn default() -> Bound {
        Bound { ppm: DEFAULT_PPM }
    }
}

impl Bound {
    /// A bound of `ppm` parts per million; `None` at or above 100 % (no argument holds then).
    pub fn new(ppm: u32) -> Option<Bound> {
        (ppm < 1_000_000).then_some(Bound { ppm })
    }

    /// The bound in parts per million.
    pub fn ppm(self) -> u32 {
        self.ppm
    }

    /// A duration `d` measured on one clock, as the longest it can last on another:
    /// `d (1 + r) / (1 - r)`, rounded up.
    pub fn stretch(self, d: Duration) -> Duration {
        let (up, down) = (
            1_000_000 + u128::from(self.ppm),
            1_000_000 - u128::from(self.ppm),
        );
        let ns = (d.as_nanos() * up).div_ceil(down);
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// How long a grantor counts a grant of `lease` as outstanding after it received the
    /// request: the lease, stretched (the primary's clock may be the slow one).
    pub fn hold(self, lease: Duration) -> Duration {
        self.stretch(lease)
    }
}

/// Requests remembered by the holder (a grant for an older one is not acted on).
const OUTSTANDING: usize = 64;

/// The primary's side of the lease.
#[derive(Clone, Debug)]
pub struct Holder {
    lease_ns: u64,
    /// (sequence, CLOCK_MONOTONIC ns when sent) of the latest requests.
    sent: [(u64, u64); OUTSTANDING],
    next_seq: u64,
    /// The lease holds until this CLOCK_MONOTONIC ns (0: never granted).
    expiry_ns: u64,
}

impl Holder {
    /// A holder of leases of `lease`, holding none yet.
    pub fn new(lease: Duration) -> Holder {
        Holder {
            lease_ns: lease.as_nanos() as u64,
            sent: [(0, 0); OUTSTANDING],
            next_seq: 1,
            expiry_ns: 0,
        }
    }

    /// The next request, sent at `now_ns`: its sequence number.
    pub fn request(&mut self, now_ns: u64) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.sent[(seq % OUTSTANDING as u64) as usize] = (seq, now_ns);
        seq
    }

    /// A grant answering request `seq`: the new expiry if it extends the lease. A grant for a
    /// request this holder never sent, or one too old to be remembered, changes nothing.
    pub fn granted(&mut self, seq: u64) -> Option<u64> {
        let (s, sent_ns) = self.sent[(seq % OUTSTANDING as u64) as usize];
        if s != seq || seq == 0 {
            return None;
        }
        let until = sent_ns.saturating_add(self.lease_ns);
        (until > self.expiry_ns).then(|| {
            self.expiry_ns = until;
            until
        })
    }

    /// Whether the lease holds at `now_ns`.
    pub fn valid(&self, now_ns: u64) -> bool {
        now_ns < self.expiry_ns
    }

    /// What is left of the lease at `now_ns`.
    pub fn remaining(&self, now_ns: u64) -> Duration {
        Duration::from_nanos(self.expiry_ns.saturating_sub(now_ns))
    }

    /// The expiry (CLOCK_MONOTONIC ns; 0: never granted), as the fast path enforces it.
    pub fn expiry_ns(&self) -> u64 {
        self.expiry_ns
    }
}

/// Why a grantor refuses a request.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The request's epoch was revoked (or a newer primary is known): it is stale.
    Revoked,
    /// This grantor stopped granting (a monitor that decided the primary failed).
    Stopped,
}

/// A grantor's side of the lease, for one primary at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grantor {
    bound: Bound,
    lease: Duration,
    /// Epochs up to this one are revoked: never granted again.
    revoked: u64,
    /// The highest epoch granted so far.
    granted_epoch: u64,
    /// A grant given may run until this CLOCK_MONOTONIC ns of this host.
    hold_until_ns: u64,
    stopped: bool,
}

impl Grantor {
    /// A grantor of grants of at most `lease` under `bound`; epochs up to `revoked` are
    /// refused (persisted by the caller across restarts).
    pub fn new(bound: Bound, lease: Duration, revoked: u64) -> Grantor {
        Grantor {
            bound,
            lease,
            revoked,
            granted_epoch: 0,
            hold_until_ns: 0,
            stopped: false,
        }
    }

    /// A request for `asked` from the primary at `epoch`, received at `now_ns`: the lease
    /// granted (at most this grantor's), or why not.
    pub fn request(
        &mut self,
        epoch: u64,
        asked: Duration,
        now_ns: u64,
    ) -> Result<Duration, Refusal> {
        if epoch <= self.revoked || epoch < self.granted_epoch {
            return Err(Refusal::Revoked);
        }
        if self.stopped {
            return Err(Refusal::Stopped);
        }
        self.granted_epoch = epoch;
        let lease = asked.min(self.lease);
        let until = now_ns.saturating_add(self.bound.hold(lease).as_nanos() as u64);
        self.hold_until_ns = self.hold_until_ns.max(until);
        Ok(lease)
    }

    /// Stops granting (the failure decision of a monitor).
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// Grants again (the primary recovered, or this host monitors a new primary).
    pub fn resume(&mut self) {
        self.stopped = false;
    }

    /// Revokes every epoch up to `epoch`: none of them is granted again. The caller persists
    /// the result before it says so.
    pub fn revoke(&mut self, epoch: u64) {
        self.revoked = self.revoked.max(epoch);
    }

    /// Epochs up to this one are revoked.
    pub fn revoked(&self) -> u64 {
        self.revoked
    }

    /// The highest epoch granted so far (0: none).
    pub fn granted_epoch(&self) -> u64 {
        self.granted_epoch
    }

    /// Until this CLOCK_MONOTONIC ns of this host a grant given may run (0: none given).
    pub fn hold_until_ns(&self) -> u64 {
        self.hold_until_ns
    }

    /// How long the last grant may still run, on this host's clock, at `now_ns`.
    pub fn outstanding(&self, now_ns: u64) -> Duration {
        Duration::from_nanos(self.hold_until_ns.saturating_sub(now_ns))
    }
}

/// When a monitor may take P (CLOCK_MONOTONIC ns of its own clock): after its own grants ran
/// out (`own_until_ns`) and after what the witness said was still outstanding (`remaining`,
/// on the witness's clock, measured before `ack_ns`, when its answer arrived here).
pub fn takeover_at(bound: Bound, own_until_ns: u64, ack_ns: u64, remaining: Duration) -> u64 {
    let witness = ack_ns.saturating_add(bound.stretch(remaining).as_nanos() as u64);
    own_until_ns.max(witness)
}

/// The baseline of the peers' clock-rate checks (witness and keeper alike).
pub const RATE_BASELINE: Duration = Duration::from_secs(10);

/// A peer's clock rate, from pairs of (own stamp, the peer's stamp) at least `baseline` apart.
#[derive(Clone, Debug)]
pub struct RateCheck {
    bound: Bound,
    baseline_ns: u64,
    first: Option<(u64, u64)>,
    rate_ppm: Option<i64>,
}

impl RateCheck {
    /// Checks against `bound`, measuring over `baseline` (long against the round trip's
    /// jitter: 1 ms over 10 s is 100 ppm).
    pub fn new(bound: Bound, baseline: Duration) -> RateCheck {
        RateCheck {
            bound,
            baseline_ns: baseline.as_nanos() as u64,
            first: None,
            rate_ppm: None,
        }
    }

    /// A sample: this host's stamp and the peer's (of the same message). Returns the peer's
    /// rate relative to this clock, in ppm off 1, once a baseline has passed; then the
    /// baseline starts again from this sample.
    pub fn sample(&mut self, own_ns: u64, peer_ns: u64) -> Option<i64> {
        let Some((o0, p0)) = self.first else {
            self.first = Some((own_ns, peer_ns));
            return None;
        };
        let d_own = own_ns.checked_sub(o0)?;
        if d_own < self.baseline_ns {
            return None;
        }
        let d_peer = peer_ns as i128 - p0 as i128;
        let ppm = ((d_peer - d_own as i128) * 1_000_000 / d_own as i128) as i64;
        self.first = Some((own_ns, peer_ns));
        self.rate_ppm = Some(ppm);
        Some(ppm)
    }

    /// The last rate measured (ppm off 1).
    pub fn rate_ppm(&self) -> Option<i64> {
        self.rate_ppm
    }

    /// Whether the last rate is outside the bound (two clocks each within it differ by at
    /// most about twice the bound).
    pub fn suspect(&self) -> bool {
        self.rate_ppm
            .is_some_and(|r| r.unsigned_abs() > 2 * u64::from(self.bound.ppm()))
    }
}
