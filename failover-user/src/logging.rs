//! Logging setup: tracing to stderr through a non-blocking writer, with `log` records (aya-log's
//! XDP lines) bridged in.
//!
//! The writer hands each line to a worker thread, so no thread of the daemon (the heartbeat
//! thread above all) ever waits for stderr: a slow pipe or journal reader cannot stall a
//! heartbeat answer. If the reader falls more than [`LOG_QUEUE`] lines behind, lines are
//! dropped rather than waited for.
use std::sync::OnceLock;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// Lines the stderr writer queues before it drops (the journal's queue is as long). The queue
/// is allocated whole at start: tracing-appender's default, 128k lines, costs 4 MiB of resident
/// memory for a backlog that a daemon logging a few lines a minute never has.
pub const LOG_QUEUE: usize = 4096;

/// Replaces the installed filter (a reload of `log_level`).
type SetFilter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

static SET_FILTER: OnceLock<SetFilter> = OnceLock::new();
/// The filter given to [`init`] (`--log-level` / `FAILOVER_LOG`).
static INITIAL: OnceLock<String> = OnceLock::new();

/// Changes the log filter of the running process: `Some(level)` (as for [`init`]) from the
/// configuration's `log_level`, `None` back to the one [`init`] was given.
pub fn set_level(level: Option<&str>) -> Result<(), String> {
    let level = match level {
        Some(l) => l,
        None => INITIAL.get().map_or("info", String::as_str),
    };
    let filter = EnvFilter::try_new(level).map_err(|e| format!("log_level {level:?}: {e}"))?;
    match SET_FILTER.get() {
        Some(set) => set(filter),
        None => Err("logging is not initialised".into()),
    }
}

/// Output format of the log stream.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; the journal's native protocol instead when stderr is the
    /// journal (`JOURNAL_STREAM`).
    Text,
    /// One JSON object per line.
    Json,
    /// The journal's native protocol (`crate::journal`), fields as journal fields.
    Journal,
}

/// Installs the global subscriber (with its `tracing-log` feature, `try_init` also installs the
/// `LogTracer` that bridges `log` records in). `level` is a tracing filter ("info",
/// "failover=debug"). Keep the returned guard until exit: dropping it flushes the last lines.
pub fn init(level: &str, format: LogFormat) -> Result<Option<WorkerGuard>, String> {
    let filter = EnvFilter::try_new(level).map_err(|e| format!("--log-level {level:?}: {e}"))?;
    let _ = INITIAL.set(level.to_string());
    if format == LogFormat::Journal
        || (format == LogFormat::Text && crate::journal::stderr_is_journal())
    {
        use tracing_subscriber::{layer::SubscriberExt as _, util::SubscriberInitExt as _};
        let journal =
            crate::journal::JournalLayer::connect(std::path::Path::new(crate::journal::SOCKET))
                .map_err(|e| format!("the journal ({}): {e}", crate::journal::SOCKET))?;
        let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
        let _ = SET_FILTER.set(Box::new(move |f| {
            handle.reload(f).map_err(|e| e.to_string())
        }));
        tracing_subscriber::registry()
            .with(filter)
            .with(journal)
            .try_init()
            .map_err(|e| format!("logging: {e}"))?;
        return Ok(None);
    }
    use std::io::IsTerminal as _;
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE)
        .lossy(true)
        .finish(std::io::stderr());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    // The reload handle's type depends on the format: keep it behind a closure.
    macro_rules! install {
        ($builder:expr) => {{
            let b = $builder.with_filter_reloading();
            let handle = b.reload_handle();
            let _ = SET_FILTER.set(Box::new(move |f| {
                handle.reload(f).map_err(|e| e.to_string())
            }));
            b.try_init()
        }};
    }
    let r = match format {
        LogFormat::Json => install!(b.json().flatten_event(true)),
        LogFormat::Text | LogFormat::Journal => install!(b),
    };
    r.map_err(|e| format!("logging: {e}"))?;
    Ok(Some(guard))
}
