//! `failover check-config`: validate a configuration without touching the system.
use std::{path::PathBuf, process::ExitCode};

use failover::config::Config;

/// Arguments of `failover check-config`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The TOML file.
    file: PathBuf,
}

/// Loads, validates and preflights the file; prints a summary and the warnings. Exit status 0
/// when valid, 1 when not.
pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let file = args.file;
    let cfg = match Config::load(&file).and_then(|c| c.preflight().map(|()| c)) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("failover: {}", failover::error_chain(&e));
            return Ok(ExitCode::from(1));
        }
    };
    println!(
        "{}: ok (node {} id {}, P {}, M {}, {:?} heartbeat, detection about {:?}, boot {}, takeover {})",
        file.display(),
        cfg.node.name,
        cfg.node.id,
        cfg.addresses.primary,
        cfg.addresses.monitor,
        cfg.heartbeat.kind,
        cfg.detection_time(),
        cfg.boot.describe(),
        cfg.takeover,
    );
    if cfg.boot.allow_unfenced_takeover {
        println!(
            "warning: boot.allow_unfenced_takeover = true: this host may take the primary \
             address without confirming the old primary is off"
        );
    }
    if cfg.witness.addresses.is_empty() {
        println!(
            "warning: no witness.addresses: before a fence the monitor checks its carrier and \
             the default route's gateway on {}; where there is no such route, only its carrier \
             (no_witness), and a fault beyond its own link cannot be told from a failed primary",
            cfg.node.interface
        );
    }
    for (i, level) in cfg.boot.levels.iter().enumerate() {
        if level.insecure {
            println!(
                "warning: {}insecure = true: the BMC's TLS certificate is not verified",
                cfg.boot.field_prefix(i)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
