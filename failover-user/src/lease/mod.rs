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

pub use timing::{takeover_at, Bound, Grantor, Holder, RateCheck, Refusal, DEFAULT_PPM};

#[cfg(test)]
mod tests;
