//! failover: keeps a service address reachable when the server holding it dies.
//!
//! The library holds all the logic; the `failover` binary parses arguments and calls it.
//! See `docs/` for the protocol and the operations guide.
#![warn(missing_docs)]

pub mod detector;
pub mod fastpath;
pub mod logging;
pub mod probe;
pub mod responder;
pub mod sys;
pub mod wire;
