//! `failover witness`: run the lease witness (or check its configuration).
use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use failover::witness::{self, WitnessConfig};

/// Arguments of `failover witness`.
#[derive(clap::Args, Debug)]
pub struct WitnessArgs {
    /// The witness's configuration file (a `[witness]` table; docs/fencing.md).
    #[arg(long, short = 'c')]
    config: PathBuf,
    /// Validate the configuration and the key file, then exit (0: valid, 2: not).
    #[arg(long)]
    check: bool,
}

/// Runs the witness until SIGTERM or SIGINT.
pub async fn run(args: WitnessArgs) -> anyhow::Result<ExitCode> {
    let cfg = WitnessConfig::load(&args.config)?;
    if args.check {
        failover::sync::Key::load(&cfg.key_file)?;
        println!("{}: valid", args.config.display());
        return Ok(ExitCode::SUCCESS);
    }
    witness::run(cfg, crate::shutdown_signal())
        .await
        .with_context(|| format!("failover witness --config {}", args.config.display()))?;
    Ok(ExitCode::SUCCESS)
}
