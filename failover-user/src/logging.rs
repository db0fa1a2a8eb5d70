//! Logging setup: tracing to stderr through a non-blocking writer, with `log` records (aya-log's
//! XDP lines) bridged in.
//!
//! The writer hands each line to a worker thread, so no thread of the daemon (the heartbeat
//! thread above all) ever waits for stderr: a slow pipe or journal reader cannot stall a
//! heartbeat answer. If the reader falls more than 128k lines behind, lines are dropped rather
//! than waited for.
use tracing_appender::non_blocking::WorkerGuard;
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
/// `LogTracer` that bridges `log` records in). `level` is a tracing filter ("info",
/// "failover=debug"). Keep the returned guard until exit: dropping it flushes the last lines.
pub fn init(level: &str, format: LogFormat) -> Result<WorkerGuard, String> {
    let filter = EnvFilter::try_new(level).map_err(|e| format!("--log-level {level:?}: {e}"))?;
    use std::io::IsTerminal as _;
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let r = match format {
        LogFormat::Text => b.try_init(),
        LogFormat::Json => b.json().flatten_event(true).try_init(),
    };
    r.map_err(|e| format!("logging: {e}"))?;
    Ok(guard)
}
