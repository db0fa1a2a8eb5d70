//! Logging setup: tracing to stderr, with `log` records (aya-log's XDP lines) bridged in.
use tracing_subscriber::EnvFilter;

/// Output format of the log stream.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber (with its `tracing-log` feature, `try_init` also installs the
/// `LogTracer` that bridges `log` records in). `level` is a tracing filter ("info", "failover=debug").
pub fn init(level: &str, format: LogFormat) -> Result<(), String> {
    let filter = EnvFilter::try_new(level).map_err(|e| format!("--log-level {level:?}: {e}"))?;
    use std::io::IsTerminal as _;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let r = match format {
        LogFormat::Text => b.try_init(),
        LogFormat::Json => b.json().flatten_event(true).try_init(),
    };
    r.map_err(|e| format!("logging: {e}"))
}
