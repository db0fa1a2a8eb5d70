//! The failover lab (docs/lab.md) and everything that runs in it.
//!
//! - [`lab`]: the lab on the two-host fixture of `failover-harness`: a management network,
//!   a lab BMC per host, the demo service and client.
//! - [`fault`]: the faults, injected on the primary and repaired.
//! - [`scenario`] and [`report`]: one fault from steady state to settled roles, as a typed
//!   report (the contract of `cargo xtask demo --json`); [`safety`]: the faults after which
//!   a healthy primary must not be fenced.
//! - [`demo`], [`bench`], [`bench_sync`], [`bench_xdp`]: what `cargo xtask demo` and the
//!   benches run, through the `failover-lab` binary.
//! - [`bench_cpu`], [`usage`], [`floor`]: what the daemons cost at steady state, and the
//!   least a probe can cost here; [`bench_vs`],
//!   [`keepalived`]: this daemon against keepalived in the same lab.
//! - [`bmc`], [`service`], [`client`]: the lab's own processes, run by that binary inside the
//!   lab's namespaces.
//! - [`plot`]: client-outage distributions per fault and system as an SVG.
#![warn(missing_docs)]

pub mod bench;
pub mod bench_cpu;
pub mod bench_sync;
pub mod bench_vs;
pub mod bench_xdp;
pub mod bmc;
pub mod client;
pub mod demo;
pub mod fault;
pub mod floor;
pub mod keepalived;
pub mod lab;
pub mod plot;
pub mod report;
pub mod safety;
pub mod scenario;
pub mod service;
pub mod usage;
