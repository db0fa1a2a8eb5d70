//! State sync (claims 14 and 21): the monitor copies the primary's data directory every N
//! heartbeats, so that a takeover serves the state the primary had a moment ago.
//!
//! - [`Manifest`]: every directory, regular file and symlink below the root, with owner, mode
//!   and mtime, a file's size and BLAKE3 content hash, a link's target. Links are carried as
//!   links, never followed; one that could lead out of the tree, and special files, are
//!   refused, naming the path.
//! - [`Store`]: the receiving side. The data directory is a symlink to a complete generation
//!   (`DIR.gen-N`); a copy is staged beside it (`DIR.staging-N`: unchanged files hard-linked
//!   from the current generation, changed ones written), fsynced, verified against the
//!   manifest, renamed to `DIR.gen-N` and only then made current by an atomic symlink rename.
//!   The directory therefore always holds the previous complete copy or the new complete copy,
//!   never a mix, also when a copy is interrupted at any point.
//! - [`Channel`]: the peer channel, TCP with Noise `NNpsk0` (snow): both sides prove the shared
//!   key, every frame is encrypted and authenticated, and frame nonces make replay and
//!   reordering fail. The handshake and every frame have a deadline ([`Deadlines`]).
//! - [`serve_one`] / [`pull`]: one copy from the primary (server) to the monitor (client).
mod attrs;
mod channel;
mod copy;
mod manifest;
mod nofollow;
mod paths;
mod store;
#[cfg(test)]
mod tests;

use std::{
    io,
    path::{Path, PathBuf},
};

pub use attrs::PullOptions;
pub use channel::{Channel, Deadlines, Key};
pub use copy::{pull, pull_with, serve_one, serve_one_at, CopyReport, DELTA_MAX, DELTA_MIN};
pub use manifest::{hash_file, Entry, FileSum, Manifest};
pub use store::{unix_ms, CommitGate, Generation, Note, Stage, Store, KEEP_DIVERGED};

/// A sync failure: what was being done, with which file or peer.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// This host's own data (served at epoch `own`) is newer than the primary's offer.
    #[error(
        "sync: refused: this host's own data (served as primary at epoch {own}) is newer than \
         the primary's (epoch {offered}); it stays, and the copy is not taken"
    )]
    NewerHere {
        /// The epoch this host served its data at.
        own: u64,
        /// The offering primary's epoch.
        offered: u64,
    },
    /// A local file operation.
    #[error("sync: {what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// OS error.
        source: io::Error,
    },
    /// A file the copy does not carry.
    #[error(
        "sync: {} is a {kind}: only regular files, directories and symlinks are copied",
        path.display()
    )]
    Refused {
        /// The file.
        path: PathBuf,
        /// "socket", "fifo", ...
        kind: &'static str,
    },
    /// A symlink the copy does not carry: it could lead out of the data directory.
    #[error(
        "sync: {} is a symlink to {target:?}, which {why}: only relative links that stay inside \
         the data directory (any `..` first) are copied",
        path.display()
    )]
    Link {
        /// The link.
        path: PathBuf,
        /// Its target (non-UTF-8 bytes replaced).
        target: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// The peer channel.
    #[error("sync: peer {peer}: {message}")]
    Peer {
        /// Peer address.
        peer: String,
        /// What went wrong.
        message: String,
    },
    /// The data does not match its manifest.
    #[error("sync: {} does not match the manifest ({message}); the copy was discarded", path.display())]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// What differs.
        message: String,
    },
    /// The primary's snapshot command failed.
    #[error("sync: snapshot command: {0}")]
    Snapshot(String),
    /// The copy was stopped (a takeover began) before it switched the data directory.
    #[error("sync: stopped before the switch; the previous copy stays current")]
    Cancelled,
    /// The key file.
    #[error("sync: key file {}: {message}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SyncError {
    let path = path.to_path_buf();
    move |source| SyncError::Io { what, path, source }
}

/// A fresh temporary directory for a unit test.
#[cfg(test)]
fn test_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "fo-sync-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}
