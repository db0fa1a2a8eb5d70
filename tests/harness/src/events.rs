//! The daemon's event stream, as a test sees it: one log per host, across restarts.
//!
//! A daemon writes its JSON log lines (`--log-format json`) into a FIFO that a reader thread
//! drains: whoever starts the daemon (the fixture directly, or a lab BMC's boot command)
//! only points stderr at the FIFO. The reader keeps the FIFO open for writing too, so it
//! never sees end-of-file between two runs of the daemon. Every line is copied to a plain log
//! file beside the FIFO; event lines are collected and can be waited for, and so can the other
//! JSON lines (plain log lines: a WARN about a listener), stamped with `seen_ns` (CLOCK_MONOTONIC
//! when the reader got them).
use std::{
    fs::OpenOptions,
    io::{BufRead as _, Write as _},
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

/// How long a wait may take before it counts as a hang (a guard, not a timing assertion).
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// The line that tells the reader thread to stop (never a JSON log line).
const STOP: &str = "\u{1}stop";

#[derive(Default)]
struct Shared {
    events: Mutex<Vec<Value>>,
    cond: Condvar,
    /// JSON lines that are not events, each with `seen_ns`.
    lines: Mutex<Vec<Value>>,
    lines_cond: Condvar,
}

impl Shared {
    /// The events, also after a waiter panicked holding them (a failed assertion): the
    /// reader must keep reading, or a daemon writing its stderr would block.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Value>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_lines(&self) -> std::sync::MutexGuard<'_, Vec<Value>> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The events of one host; the reader thread stops on drop.
pub struct EventLog {
    shared: Arc<Shared>,
    fifo: PathBuf,
    tag: String,
}

/// The `ts_ns` of an event (CLOCK_MONOTONIC), 0 when absent.
pub fn ts(v: &Value) -> u64 {
    v["ts_ns"].as_u64().unwrap_or(0)
}

/// The `detail` of an event, "" when absent.
pub fn detail(v: &Value) -> &str {
    v["detail"].as_str().unwrap_or("")
}

impl EventLog {
    /// Creates the FIFO `fifo` and starts its reader; lines are copied to `fifo` with the
    /// extension `log`, and echoed to stderr as `[tag] line` when `echo` is set.
    pub fn open(fifo: &Path, tag: &str, echo: bool) -> EventLog {
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: mkfifo(3) with a valid C string.
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(
            rc,
            0,
            "mkfifo {}: {}",
            fifo.display(),
            std::io::Error::last_os_error()
        );
        // Read and write: opening does not wait for a writer, and there is always one (us),
        // so the reader never sees end-of-file while daemons come and go.
        let pipe = OpenOptions::new()
            .read(true)
            .write(true)
            .open(fifo)
            .expect("open event FIFO");
        let mut copy = std::fs::File::create(fifo.with_extension("log")).expect("event log copy");
        let shared = Arc::new(Shared::default());
        let (s, t) = (shared.clone(), tag.to_string());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                if line == STOP {
                    return;
                }
                let _ = writeln!(copy, "{line}");
                if echo {
                    eprintln!("[{t}] {line}");
                }
                if let Ok(mut v) = serde_json::from_str::<Value>(&line) {
                    if v.get("event").is_some() {
                        s.lock().push(v);
                        s.cond.notify_all();
                    } else if v.is_object() {
                        v["seen_ns"] = crate::mono_ns().into();
                        s.lock_lines().push(v);
                        s.lines_cond.notify_all();
                    }
                }
            }
        });
        EventLog {
            shared,
            fifo: fifo.to_path_buf(),
            tag: tag.to_string(),
        }
    }

    /// The FIFO a daemon's stderr goes to.
    pub fn fifo(&self) -> &Path {
        &self.fifo
    }

    /// A writer for a daemon's stderr.
    pub fn writer(&self) -> std::fs::File {
        OpenOptions::new()
            .write(true)
            .open(&self.fifo)
            .expect("open event FIFO for writing")
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Value> {
        self.shared.lock().clone()
    }

    /// Waits for the first event named `name` stamped after `since_ns` for which `pred`
    /// holds, and returns it; panics (listing the events) after [`HANG_GUARD`].
    pub fn wait(&self, since_ns: u64, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_unless(since_ns, name, pred, || false)
    }

    /// [`EventLog::wait`], but panics as soon as `abort` returns true (checked at least every
    /// 100 ms: a Ctrl-C handler's flag).
    pub fn wait_unless(
        &self,
        since_ns: u64,
        name: &str,
        pred: impl Fn(&Value) -> bool,
        abort: impl Fn() -> bool,
    ) -> Value {
        let deadline = Instant::now() + HANG_GUARD;
        let mut events = self.shared.lock();
        loop {
            if let Some(v) = events
                .iter()
                .find(|v| v["event"] == name && ts(v) > since_ns && pred(v))
            {
                return v.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "host {} never emitted {name}; its events: {:#?}",
                self.tag,
                events
                    .iter()
                    .map(|v| format!("{} {} {}", v["event"], v["role"], v["detail"]))
                    .collect::<Vec<_>>()
            );
            assert!(
                !abort(),
                "interrupted while waiting for {name} on {}",
                self.tag
            );
            let slice = left.min(Duration::from_millis(100));
            events = self
                .shared
                .cond
                .wait_timeout(events, slice)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The log lines that are not events (`message`, `level`, `target` and their fields),
    /// received after `since_ns` (their `seen_ns`), for which `pred` holds.
    pub fn lines(&self, since_ns: u64, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.shared
            .lock_lines()
            .iter()
            .filter(|v| v["seen_ns"].as_u64().unwrap_or(0) > since_ns && pred(v))
            .cloned()
            .collect()
    }

    /// Waits for the first non-event log line received after `since_ns` for which `pred`
    /// holds, and returns it; panics (naming `what`) after [`HANG_GUARD`].
    pub fn wait_line(&self, since_ns: u64, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + HANG_GUARD;
        let mut lines = self.shared.lock_lines();
        loop {
            if let Some(v) = lines
                .iter()
                .find(|v| v["seen_ns"].as_u64().unwrap_or(0) > since_ns && pred(v))
            {
                return v.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "host {} never logged {what}; its last lines: {:#?}",
                self.tag,
                lines
                    .iter()
                    .rev()
                    .take(30)
                    .map(|v| format!("{} {}", v["level"], v["message"]))
                    .collect::<Vec<_>>()
            );
            lines = self
                .shared
                .lines_cond
                .wait_timeout(lines, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits until this log has one more event than now, or `limit` passed.
    pub fn wait_next(&self, limit: Duration) {
        let events = self.shared.lock();
        let n = events.len();
        let _ = self
            .shared
            .cond
            .wait_timeout_while(events, limit, |e| e.len() == n);
    }

    /// Whether an event named `name` after `since_ns` satisfies `pred` already.
    pub fn any(&self, since_ns: u64, name: &str, pred: impl Fn(&Value) -> bool) -> bool {
        self.shared
            .lock()
            .iter()
            .any(|v| v["event"] == name && ts(v) > since_ns && pred(v))
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        // Non-blocking: if the reader is gone there is nobody to stop, and a blocking open
        // would wait for a reader forever.
        use std::os::unix::fs::OpenOptionsExt as _;
        if let Ok(mut w) = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.fifo)
        {
            let _ = writeln!(w, "{STOP}");
        }
        let _ = std::fs::remove_file(&self.fifo);
    }
}
