//! `config`: the configuration file parser and its validation (`Config::parse`: TOML text in,
//! a `Config` or a `ConfigError` out). Must never panic on any input.
//!
//! Checks: no panic, the error (if any) formats, and a valid configuration's derived
//! durations compute (`detection_time`, `fence_delay`).
#![no_main]

use std::path::Path;

use failover::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The daemon reads the file with read_to_string: only UTF-8 text reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(Path::new("/etc/failover/failover.toml"), text) {
        Ok(cfg) => {
            let _ = cfg.detection_time();
            let _ = cfg.fence_delay();
            let _ = format!("{cfg:?}");
        }
        Err(e) => {
            let _ = failover::error_chain(&e);
        }
    }
});
