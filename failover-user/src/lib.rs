//! failover: keeps a service address reachable when the server holding it dies.
//!
//! The library holds all the logic; the `failover` binary parses arguments and calls it.
//! See `docs/` for the protocol and the operations guide.
#![warn(missing_docs)]

pub mod address;
pub mod config;
pub mod control;
pub mod daemon;
pub mod detector;
pub mod event;
pub mod event_fifo;
pub mod fastpath;
pub mod fence;
pub mod gate;
pub mod health;
pub mod hooks;
pub mod journal;
pub mod lease;
pub mod listen;
pub mod logging;
pub mod notify;
pub mod role;
pub mod signal;
pub mod state;
pub mod sync;
pub mod sys;
pub mod witness;

#[cfg(test)]
mod fuzz_regressions;

/// Formats an error and its sources as one line, "outer: inner: root cause", skipping a source
/// whose text the previous message already contains (some libraries print their source too).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut last = out.clone();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !last.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        last = msg;
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn chain_skips_repeated_sources() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] Mid);
        #[derive(Debug, thiserror::Error)]
        #[error("mid: io broke")]
        struct Mid(#[source] std::io::Error);
        let e = Outer(Mid(std::io::Error::other("io broke")));
        assert_eq!(super::error_chain(&e), "outer: mid: io broke");
    }
}
