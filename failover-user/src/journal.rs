//! Logging to the systemd journal in its native protocol, when stderr is the journal
//! (`JOURNAL_STREAM`): each line with its priority (ERROR 3, WARN 4, INFO 6, DEBUG and TRACE 7)
//! and every field as a journal field, so that `journalctl -u failover EVENT=fence_failed` or
//! `-p warning` select what they should.
//!
//! Why not the `tracing-journald` crate: it sends each entry on the thread that logs it, and a
//! unix datagram send blocks while journald's queue is full, so a stalled journald would stall
//! the heartbeat thread. Here the logging thread only formats the entry and hands it to a
//! worker thread through a bounded queue; a full queue drops the entry (counted, and said once
//! the queue drains) instead of waiting.
use std::{
    os::unix::net::UnixDatagram,
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc,
    },
};

use tracing::{field::Visit, Level};
use tracing_subscriber::layer::Context;

/// journald's socket for the native protocol.
pub const SOCKET: &str = "/run/systemd/journal/socket";

/// Entries waiting for the worker at most.
const QUEUE: usize = 4096;

/// The journal's limit on one datagram is the socket's send buffer; entries above this are cut.
const MAX_ENTRY: usize = 200 * 1024;

/// Whether stderr is the journal: `JOURNAL_STREAM` names the device and inode of stderr.
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(md) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(md.dev()) && ino.parse() == Ok(md.ino())
}

/// A tracing layer that writes to the journal.
pub struct JournalLayer {
    tx: mpsc::SyncSender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
}

impl JournalLayer {
    /// Connects to the journal at `socket` and starts the worker.
    pub fn connect(socket: &Path) -> std::io::Result<JournalLayer> {
        let sock = UnixDatagram::unbound()?;
        sock.connect(socket)?;
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || {
                let mut reported = 0;
                for entry in rx {
                    let _ = sock.send(&entry);
                    let lost = counter.load(Ordering::Relaxed);
                    if lost > reported {
                        let note = entry_bytes(
                            Level::WARN,
                            &[(
                                "MESSAGE".into(),
                                format!(
                                    "{} log entries dropped: the journal did not keep up",
                                    lost - reported
                                ),
                            )],
                        );
                        let _ = sock.send(&note);
                        reported = lost;
                    }
                }
            })?;
        Ok(JournalLayer { tx, dropped })
    }
}

/// Collects an event's fields as journal fields.
struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push((field_name(field.name()), value.to_string()));
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .push((field_name(field.name()), format!("{value:?}")));
    }
}

/// A journal field name: upper case letters, digits and `_`, not starting with `_` (those are
/// the journal's own, trusted fields) nor a digit.
fn field_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    while s.starts_with('_') {
        s.remove(0);
    }
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "F_");
    }
    s
}

/// The syslog priority of a tracing level.
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// One entry in the native protocol: `KEY=value` lines, and the length-prefixed form for a
/// value with a newline in it.
fn entry_bytes(level: Level, fields: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut put = |k: &str, v: &str| {
        if v.contains('\n') {
            out.extend_from_slice(k.as_bytes());
            out.push(b'\n');
            out.extend_from_slice(&(v.len() as u64).to_le_bytes());
            out.extend_from_slice(v.as_bytes());
            out.push(b'\n');
        } else {
            out.extend_from_slice(k.as_bytes());
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
            out.push(b'\n');
        }
    };
    put("PRIORITY", &priority(level).to_string());
    put("SYSLOG_IDENTIFIER", "failover");
    for (k, v) in fields {
        put(k, v);
    }
    out.truncate(MAX_ENTRY);
    out
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for JournalLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        fields.0.push(("TARGET".into(), meta.target().to_string()));
        let entry = entry_bytes(*meta.level(), &fields.0);
        if self.tx.try_send(entry).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_carry_priority_and_every_field_by_journal_name() {
        let e = entry_bytes(
            Level::WARN,
            &[
                ("MESSAGE".into(), "fence_failed: off not confirmed".into()),
                (field_name("event"), "fence_failed".into()),
                (field_name("ts_ns"), "12".into()),
                (field_name("detail"), "two\nlines".into()),
            ],
        );
        let text = String::from_utf8_lossy(&e);
        assert!(
            text.starts_with("PRIORITY=4\nSYSLOG_IDENTIFIER=failover\n"),
            "{text}"
        );
        assert!(text.contains("\nEVENT=fence_failed\n"), "{text}");
        assert!(text.contains("\nTS_NS=12\n"), "{text}");
        // A value with a newline: name, newline, length (u64 LE), the bytes, newline.
        let mut want = b"DETAIL\n".to_vec();
        want.extend_from_slice(&9u64.to_le_bytes());
        want.extend_from_slice(b"two\nlines\n");
        assert!(e.windows(want.len()).any(|w| w == want.as_slice()));
        assert_eq!(field_name("_trusted"), "TRUSTED");
        assert_eq!(field_name("1x"), "F_1X");
    }

    #[test]
    fn the_layer_hands_entries_to_a_worker_that_sends_them() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let dir = std::env::temp_dir().join(format!("fo-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("socket");
        let journal = UnixDatagram::bind(&path).unwrap();
        let layer = JournalLayer::connect(&path).unwrap();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                event = "fence_failed",
                role = "booting",
                epoch = 3u64,
                "fence_failed: x"
            );
        });
        let mut buf = vec![0u8; 65536];
        let n = journal.recv(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        for want in [
            "PRIORITY=4",
            "MESSAGE=fence_failed: x",
            "EVENT=fence_failed",
            "ROLE=booting",
            "EPOCH=3",
        ] {
            assert!(text.lines().any(|l| l == want), "{want} in {text}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
