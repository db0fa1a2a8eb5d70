//! Owner, mode and modification time: read on the primary, given back on the monitor, and
//! what the monitor lets through of setuid and setgid.
use std::{
    fs::{self, Metadata, Permissions},
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::Path,
};

use super::{io_err, nofollow, Entry, Manifest, SyncError};

/// The set-user-ID and set-group-ID bits.
const SETID: u32 = 0o6000;

/// How the monitor takes a copy in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullOptions {
    /// The host the copy comes from (the primary serving it), recorded in the generation.
    pub origin: String,
    /// Keep setuid and setgid on files (`sync.keep_setid`). Off: they are dropped, so a copy
    /// never brings the monitor a program that runs as another user.
    pub keep_setid: bool,
}

impl PullOptions {
    /// The manifest as this host will hold it: without setuid and setgid on files unless they
    /// are kept. Directories keep setgid (it only makes new files inherit the group) and every
    /// entry keeps the sticky bit.
    pub(super) fn apply(&self, m: &mut Manifest) {
        if self.keep_setid {
            return;
        }
        for e in m.entries.values_mut().filter(|e| !e.is_dir()) {
            e.mode &= !SETID;
        }
    }
}

impl Entry {
    /// An entry with the owner, mode and mtime of `md` (neither file nor link yet: a
    /// directory).
    pub(super) fn attrs_of(md: &Metadata) -> Entry {
        Entry {
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime: md.mtime(),
            mtime_ns: md.mtime_nsec() as u32,
            file: None,
            link: None,
        }
    }

    /// Whether `md` has this entry's owner, mode and mtime.
    pub(super) fn attrs_match(&self, md: &Metadata) -> bool {
        let mine = Entry::attrs_of(md);
        (mine.mode, mine.uid, mine.gid, mine.mtime, mine.mtime_ns)
            == (self.mode, self.uid, self.gid, self.mtime, self.mtime_ns)
    }
}

/// Gives `path` (in a stage, created by this host) the owner, mode and mtime of `e`, in that
/// order: a change of owner clears setuid and setgid, and the mtime goes last. A symlink's
/// own owner and mtime are set (never its target's); it has no mode of its own.
pub(super) fn set(path: &Path, e: &Entry) -> Result<(), SyncError> {
    let md = fs::symlink_metadata(path).map_err(io_err("stat", path))?;
    if (md.uid(), md.gid()) != (e.uid, e.gid) {
        std::os::unix::fs::lchown(path, Some(e.uid), Some(e.gid))
            .map_err(io_err("change the owner of", path))?;
    }
    if !md.file_type().is_symlink() {
        fs::set_permissions(path, Permissions::from_mode(e.mode & 0o7777))
            .map_err(io_err("chmod", path))?;
    }
    nofollow::set_mtime(path, e.mtime, e.mtime_ns).map_err(io_err("set the mtime of", path))
}
