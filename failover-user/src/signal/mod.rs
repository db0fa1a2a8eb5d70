//! The signals of the method: the first signal (heartbeat probes to P and their answers) and
//! the second signal (join probes to M).
//!
//! - [`wire`]: the UDP message both signals use.
//! - [`probe`]: the monitor's prober (ICMP echo or UDP heartbeat) and `failover probe`.
//! - [`responder`]: answers heartbeats and joins on an address this host holds.
//! - [`join`]: one join period, and the monitor's epoch probe to P.
pub mod join;
pub mod probe;
pub mod responder;
pub mod wire;
