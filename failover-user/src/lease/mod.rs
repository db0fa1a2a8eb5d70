//! The lease (`boot.fence = "lease"`): the timing rules, pure, with every clock its own.
//!
//! The primary serves P only while it holds a lease. It asks its grantors (the monitor and the
//! witness) for renewals; each grant answers one request and is valid for `lease` from the
//! moment the primary *sent* that request, on the primary's own monotonic clock: a moment no
//! later than the grant. A grantor counts its grant as outstanding for [`Bound::hold`] from the
//! moment it *received* the request, on its own clock: a moment no earlier than the send.
//! Nothing assumes the clocks agree; only that each runs within the rate bound of real time
//! (docs/design.md, "The lease").
//!
//! - [`timing`]: the clock-rate bound ([`Bound`]), the primary's side ([`Holder`]), a
//!   grantor's ([`Grantor`]), the monitor's wait ([`takeover_at`]), the peers' clock rates
//!   ([`RateCheck`]).
//! - [`wire`]: the authenticated lease messages between the pair and the witness.
pub mod timing;
pub mod wire;

pub use timing::{
    takeover_at, Bound, Grantor, Holder, RateCheck, Refusal, DEFAULT_PPM, RATE_BASELINE,
};

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// The grantors of the primary's lease, as indexed in [`LeaseStatus`].
pub const WITNESS: usize = 0;
/// The monitor.
pub const MONITOR: usize = 1;

/// What status and metrics show of the primary's lease, written by the daemon's keeper.
#[derive(Debug)]
pub struct LeaseStatus {
    /// A keeper runs (this host is primary with `boot.lease`).
    pub active: AtomicBool,
    /// The gate's expiry (CLOCK_MONOTONIC ns).
    pub expiry_ns: AtomicU64,
    /// Lapses since start.
    pub lapses: AtomicU64,
    /// CLOCK_MONOTONIC ns of each grantor's last grant (0: none).
    pub last_grant_ns: [AtomicU64; 2],
    /// Each grantor's clock rate against this host's, ppm off 1 (`i64::MIN`: not measured).
    pub rate_ppm: [AtomicI64; 2],
}

impl Default for LeaseStatus {
    fn default() -> Self {
        LeaseStatus {
            active: AtomicBool::new(false),
            expiry_ns: AtomicU64::new(0),
            lapses: AtomicU64::new(0),
            last_grant_ns: [AtomicU64::new(0), AtomicU64::new(0)],
            rate_ppm: [AtomicI64::new(i64::MIN), AtomicI64::new(i64::MIN)],
        }
    }
}

/// The lease as `failover status` shows it.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LeaseView {
    /// This host keeps a lease (it is primary).
    pub active: bool,
    /// What is left of it, ms (0: lapsed).
    pub remaining_ms: f64,
    /// How often it lapsed since start.
    pub lapses: u64,
    /// Since the witness's last grant, ms (none yet: null).
    pub witness_grant_age_ms: Option<f64>,
    /// Since the monitor's last grant, ms.
    pub monitor_grant_age_ms: Option<f64>,
    /// The witness's clock rate against this host's, ppm off 1.
    pub witness_clock_ppm: Option<i64>,
    /// The monitor's.
    pub monitor_clock_ppm: Option<i64>,
}

impl LeaseStatus {
    /// The view at `now_ns`.
    pub fn view(&self, now_ns: u64) -> LeaseView {
        let age = |i: usize| {
            let t = self.last_grant_ns[i].load(Ordering::Relaxed);
            (t > 0).then(|| now_ns.saturating_sub(t) as f64 / 1e6)
        };
        let rate =
            |i: usize| Some(self.rate_ppm[i].load(Ordering::Relaxed)).filter(|r| *r != i64::MIN);
        LeaseView {
            active: self.active.load(Ordering::Relaxed),
            remaining_ms: self
                .expiry_ns
                .load(Ordering::Relaxed)
                .saturating_sub(now_ns) as f64
                / 1e6,
            lapses: self.lapses.load(Ordering::Relaxed),
            witness_grant_age_ms: age(WITNESS),
            monitor_grant_age_ms: age(MONITOR),
            witness_clock_ppm: rate(WITNESS),
            monitor_clock_ppm: rate(MONITOR),
        }
    }
}

#[cfg(test)]
mod tests;
