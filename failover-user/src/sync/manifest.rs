//! The manifest: every directory, regular file and symlink below a root, with owner, mode,
//! mtime, and a file's size and BLAKE3 (a link's target).
use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::Read as _,
    path::Path,
};

use serde::{Deserialize, Serialize};

use super::{io_err, nofollow, paths::link_refusal, SyncError};

/// The manifest format, sent with every manifest. Both hosts must read the same: 2 added
/// owners, mtimes, symlinks and the data directory's own entry (a manifest without a number
/// reads as 0).
pub(super) const FORMAT: u32 = 2;

/// One entry of a manifest: a directory, a regular file or a symlink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Permission bits (`mode & 0o7777`). A symlink's (always 0777) are not set.
    pub mode: u32,
    /// Owner (numeric).
    #[serde(default)]
    pub uid: u32,
    /// Group (numeric).
    #[serde(default)]
    pub gid: u32,
    /// Modification time: seconds since the epoch...
    #[serde(default)]
    pub mtime: i64,
    /// ...and nanoseconds.
    #[serde(default)]
    pub mtime_ns: u32,
    /// The size and BLAKE3 hash (hex) of a file; `None` for a directory or a symlink.
    pub file: Option<FileSum>,
    /// A symlink's target, as the link reads (carried as a link, never followed); `None` for a
    /// directory or a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl Entry {
    /// Whether this is a directory (neither file nor symlink).
    pub fn is_dir(&self) -> bool {
        self.file.is_none() && self.link.is_none()
    }
}

/// Size and hash of a regular file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    /// Bytes.
    pub size: u64,
    /// BLAKE3, hex.
    pub hash: String,
}

/// A tree: relative path (`/`-separated, no leading slash) to entry, in sorted order, so that
/// a directory always comes before what it contains.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`] in a manifest a scan made; 0 in one from before format numbers.
    #[serde(default)]
    pub format: u32,
    /// The root directory itself: its owner, mode and mtime (`None` from before format 2).
    #[serde(default)]
    pub root: Option<Entry>,
    /// The entries.
    pub entries: BTreeMap<String, Entry>,
    /// The epoch of the primary that offers this tree (the origin of its data; 0: unknown).
    /// Not part of the tree's shape.
    #[serde(default)]
    pub epoch: u64,
}

/// BLAKE3 of a file, hex.
pub fn hash_file(path: &Path) -> Result<(u64, String), SyncError> {
    let f = File::open(path).map_err(io_err("open", path))?;
    hash_open(f, path)
}

/// BLAKE3 of the regular file `rel` below `root`, reached without following symlinks.
pub(super) fn hash_at(root: &Path, rel: &str) -> Result<(u64, String), SyncError> {
    let path = root.join(rel);
    let f = nofollow::open_file(root, rel).map_err(io_err("open", &path))?;
    hash_open(f, &path)
}

fn hash_open(mut f: File, path: &Path) -> Result<(u64, String), SyncError> {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io_err("read", path))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((size, h.finalize().to_hex().to_string()))
}

impl Manifest {
    /// Scans `root` (not following symlinks below it; `root` itself may be one).
    pub fn scan(root: &Path) -> Result<Manifest, SyncError> {
        Manifest::scan_with(root, true)
    }

    /// Like [`Manifest::scan`] but without reading file contents (hashes left empty).
    pub(super) fn scan_shape(root: &Path) -> Result<Manifest, SyncError> {
        Manifest::scan_with(root, false)
    }

    fn scan_with(root: &Path, hash: bool) -> Result<Manifest, SyncError> {
        let dir = nofollow::open_root(root).map_err(io_err("open directory", root))?;
        let md = dir.metadata().map_err(io_err("stat", root))?;
        let mut m = Manifest {
            format: FORMAT,
            root: Some(Entry::attrs_of(&md)),
            entries: BTreeMap::new(),
            epoch: 0,
        };
        Scan {
            root,
            m: &mut m,
            hash,
        }
        .dir(&dir, "")?;
        Ok(m)
    }

    /// The same tree with the hashes left out, for comparing shapes (owners, modes, mtimes,
    /// sizes and link targets included).
    pub(super) fn shape(&self) -> Manifest {
        let mut m = self.clone();
        m.epoch = 0;
        for e in m.entries.values_mut() {
            if let Some(f) = e.file.as_mut() {
                f.hash.clear();
            }
        }
        m
    }

    /// Total bytes of the files.
    pub fn bytes(&self) -> u64 {
        self.entries
            .values()
            .filter_map(|e| e.file.as_ref().map(|f| f.size))
            .sum()
    }
}

/// Whether `e` says the file went away: a live service renames and removes files while the
/// scan runs, and what is gone is simply not in this copy.
fn vanished(e: &SyncError) -> bool {
    matches!(e, SyncError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

/// One scan of a tree.
struct Scan<'a> {
    root: &'a Path,
    m: &'a mut Manifest,
    hash: bool,
}

impl Scan<'_> {
    /// Adds what the open directory `dir` (at `rel`, "" for the root) holds.
    fn dir(&mut self, dir: &File, rel: &str) -> Result<(), SyncError> {
        let shown = self.root.join(rel);
        let at = nofollow::fd_path(dir);
        let rd = fs::read_dir(&at).map_err(io_err("read directory", &shown))?;
        for e in rd {
            let e = e.map_err(io_err("read directory", &shown))?;
            let os_name = e.file_name();
            let path = shown.join(&os_name);
            let Some(name) = os_name.to_str() else {
                return Err(SyncError::Refused {
                    path,
                    kind: "name that is not UTF-8",
                });
            };
            let sub = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            match self.entry(dir, &at, name, &sub, &path) {
                Err(e) if vanished(&e) => {
                    // Gone while it was scanned: leave out what was seen of it.
                    let below = format!("{sub}/");
                    self.m
                        .entries
                        .retain(|k, _| *k != sub && !k.starts_with(&below));
                }
                r => r?,
            }
        }
        Ok(())
    }

    /// Adds `name` in `dir` (listed as `at`), which is `sub` in the tree and `path` on disk.
    fn entry(
        &mut self,
        dir: &File,
        at: &Path,
        name: &str,
        sub: &str,
        path: &Path,
    ) -> Result<(), SyncError> {
        let md = fs::symlink_metadata(at.join(name)).map_err(io_err("stat", path))?;
        let mut entry = Entry::attrs_of(&md);
        let ft = md.file_type();
        if ft.is_dir() {
            self.m.entries.insert(sub.to_string(), entry);
            let d = nofollow::sub_dir(dir, name).map_err(io_err("open directory", path))?;
            return self.dir(&d, sub);
        }
        if ft.is_file() {
            let (size, hash) = if self.hash {
                let f = nofollow::file_in(dir, name).map_err(io_err("open", path))?;
                hash_open(f, path)?
            } else {
                (md.len(), String::new())
            };
            entry.file = Some(FileSum { size, hash });
        } else if ft.is_symlink() {
            let t = fs::read_link(at.join(name)).map_err(io_err("read the symlink", path))?;
            let target = t.to_str().map(str::to_string);
            let why = match &target {
                None => Some("is not UTF-8"),
                Some(t) => link_refusal(sub, t),
            };
            if let Some(why) = why {
                return Err(SyncError::Link {
                    path: path.to_path_buf(),
                    target: t.to_string_lossy().into_owned(),
                    why,
                });
            }
            entry.link = target;
        } else {
            use std::os::unix::fs::FileTypeExt as _;
            let kind = if ft.is_socket() {
                "socket"
            } else if ft.is_fifo() {
                "fifo"
            } else {
                "device"
            };
            return Err(SyncError::Refused {
                path: path.to_path_buf(),
                kind,
            });
        }
        self.m.entries.insert(sub.to_string(), entry);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_vanishes_is_left_out_not_an_error() {
        let e = SyncError::Io {
            what: "stat",
            path: "/x/.counter.tmp".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert!(vanished(&e));
        let denied = SyncError::Io {
            what: "open",
            path: "/x/a".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert!(!vanished(&denied));
    }

    #[test]
    fn symlinks_are_listed_as_links_and_those_leading_out_refused_by_name() {
        use std::os::unix::{ffi::OsStrExt as _, fs::symlink};
        let d = crate::sync::test_dir("links");
        std::fs::create_dir_all(d.join("data")).unwrap();
        std::fs::create_dir_all(d.join("wal")).unwrap();
        symlink("../wal", d.join("data/pg_wal")).unwrap();
        let m = Manifest::scan(&d).unwrap();
        let e = &m.entries["data/pg_wal"];
        assert_eq!(e.link.as_deref(), Some("../wal"));
        assert!(e.file.is_none() && !e.is_dir());
        assert!(
            !m.entries.keys().any(|k| k.starts_with("data/pg_wal/")),
            "not followed"
        );
        for (rel, target, why) in [
            ("data/x", &b"../../etc"[..], "leads out"),
            ("abs", b"/etc", "absolute"),
            ("data/y", b"../data/../..", "after a name"),
            ("bin", b"\xff", "not UTF-8"),
        ] {
            let p = d.join(rel);
            symlink(std::ffi::OsStr::from_bytes(target), &p).unwrap();
            let e = Manifest::scan(&d).unwrap_err().to_string();
            assert!(
                e.contains(&p.display().to_string()) && e.contains(why),
                "{e}"
            );
            std::fs::remove_file(p).unwrap();
        }
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn fifos_are_refused_and_named() {
        let d = crate::sync::test_dir("fifo");
        let p = d.join("pipe");
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = Manifest::scan(&d).unwrap_err().to_string();
        assert!(e.contains("pipe") && e.contains("fifo"), "{e}");
        std::fs::remove_dir_all(d).unwrap();
    }
}
