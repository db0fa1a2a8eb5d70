//! `hooks.event_fifo`: every event as one JSON line into a FIFO, as keepalived's
//! `notify_fifo` offers, for a program that reacts to events without polling `status`.
//!
//! The daemon creates the FIFO (mode 0600) when it is missing and refuses a path that is
//! something else. It holds the FIFO open for reading and writing, non-blocking, so that
//! opening it never waits for a reader and a missing reader never makes a write fail: lines
//! then wait in the pipe (64 KiB on Linux) for the next reader. Emitting an event only
//! queues its line for a writer thread; a full queue or a full pipe drops the line and counts
//! it (`failover_event_fifo_dropped_total`). Nothing on the daemon's side ever waits for the
//! reader. Each line is at most `PIPE_BUF` bytes, so a write is all or nothing and lines
//! never interleave.
use std::{
    fs::File,
    io::Write as _,
    os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc,
    },
};

/// Lines waiting for the writer thread at most.
const QUEUE: usize = 1024;

/// The longest line written: a pipe write of at most `PIPE_BUF` bytes is atomic.
const MAX_LINE: usize = libc::PIPE_BUF;

/// The FIFO could not be made or opened.
#[derive(Debug, thiserror::Error)]
#[error("hooks.event_fifo {}: {message}", path.display())]
pub struct FifoError {
    path: PathBuf,
    message: String,
}

/// The sending side: cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct EventFifo {
    tx: mpsc::SyncSender<String>,
    dropped: Arc<AtomicU64>,
}

impl EventFifo {
    /// Creates the FIFO at `path` if missing, opens it, and starts the writer thread.
    pub fn open(path: &Path) -> Result<EventFifo, FifoError> {
        let bad = |message: String| FifoError {
            path: path.to_path_buf(),
            message,
        };
        match std::fs::symlink_metadata(path) {
            Ok(md) if md.file_type().is_fifo() => {}
            Ok(_) => return Err(bad("exists and is not a FIFO".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
                    .map_err(|_| bad("contains a NUL byte".into()))?;
                // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
                if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
                    return Err(bad(format!(
                        "cannot create it: {}",
                        std::io::Error::last_os_error()
                    )));
                }
            }
            Err(e) => return Err(bad(e.to_string())),
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| bad(format!("cannot open it: {e}")))?;
        let (tx, rx) = mpsc::sync_channel::<String>(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        std::thread::Builder::new()
            .name("event-fifo".into())
            .spawn(move || write_lines(file, rx, &counter))
            .map_err(|e| bad(format!("cannot start its writer: {e}")))?;
        Ok(EventFifo { tx, dropped })
    }

    /// Queues `line` (without its newline); drops and counts it when the queue is full.
    pub fn send(&self, line: String) {
        if self.tx.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn write_lines(mut file: File, rx: mpsc::Receiver<String>, dropped: &AtomicU64) {
    for mut line in rx {
        line.push('\n');
        // Non-blocking: a full pipe (no reader for a while) is WouldBlock, and the line is
        // dropped rather than waited for.
        if line.len() > MAX_LINE || file.write(line.as_bytes()).ok() != Some(line.len()) {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One event as its FIFO line: the fields of the log's JSON form, the detail shortened so the
/// line fits one atomic pipe write.
pub fn line(fields: &EventLine<'_>) -> String {
    let mut detail = fields.detail;
    loop {
        let text = serde_json::json!({
            "event": fields.event,
            "ts_ns": fields.ts_ns,
            "unix_ms": fields.unix_ms,
            "node": fields.node,
            "role": fields.role,
            "epoch": fields.epoch,
            "peer": fields.peer,
            "detail": detail,
        })
        .to_string();
        if text.len() < MAX_LINE || detail.is_empty() {
            return text;
        }
        let mut cut = detail.len() / 2;
        while !detail.is_char_boundary(cut) {
            cut -= 1;
        }
        detail = &detail[..cut];
    }
}

/// The fields of one event line.
pub struct EventLine<'a> {
    /// Event name.
    pub event: &'a str,
    /// CLOCK_MONOTONIC, ns (as in the log).
    pub ts_ns: u64,
    /// Wall clock, ms since the epoch.
    pub unix_ms: u64,
    /// This node.
    pub node: &'a str,
    /// Role at the time.
    pub role: &'a str,
    /// Epoch at the time.
    pub epoch: u64,
    /// The peer.
    pub peer: &'a str,
    /// What happened.
    pub detail: &'a str,
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead as _, BufReader};

    use super::*;

    /// A fresh scratch directory of this test process.
    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fo-fifo-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn lines_reach_a_reader_and_a_full_pipe_drops_instead_of_blocking() {
        let dir = scratch("events");
        let path = dir.join("events");
        let fifo = EventFifo::open(&path).unwrap();
        assert!(std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_fifo());
        let reader = std::fs::File::open(&path).unwrap();
        let e = EventLine {
            event: "role_changed",
            ts_ns: 1,
            unix_ms: 2,
            node: "a",
            role: "primary",
            epoch: 3,
            peer: "b",
            detail: "x",
        };
        fifo.send(line(&e));
        let mut first = String::new();
        BufReader::new(&reader).read_line(&mut first).unwrap();
        let v: serde_json::Value = serde_json::from_str(&first).unwrap();
        assert_eq!(v["event"], "role_changed");
        assert_eq!(v["epoch"], 3);
        // Nobody reads now: far more than a pipe holds is sent, and send never blocks.
        let long = "y".repeat(1000);
        let many = EventLine { detail: &long, ..e };
        for _ in 0..5000 {
            fifo.send(line(&many));
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while fifo.dropped() == 0 && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(fifo.dropped() > 0, "a full pipe drops lines");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_path_that_is_not_a_fifo_is_refused_by_name() {
        let dir = scratch("file");
        let path = dir.join("file");
        std::fs::write(&path, "").unwrap();
        let e = EventFifo::open(&path).unwrap_err().to_string();
        assert!(
            e.contains("hooks.event_fifo") && e.contains("not a FIFO"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn long_details_are_shortened_to_one_atomic_write() {
        let long = "z".repeat(10_000);
        let e = EventLine {
            event: "fence_failed",
            ts_ns: 1,
            unix_ms: 2,
            node: "a",
            role: "booting",
            epoch: 3,
            peer: "b",
            detail: &long,
        };
        let l = line(&e);
        assert!(l.len() < MAX_LINE);
        assert!(serde_json::from_str::<serde_json::Value>(&l).is_ok());
    }
}
