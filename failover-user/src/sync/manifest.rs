//! The manifest: every directory and regular file below a root, with mode, size and BLAKE3.
use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::Read as _,
    os::unix::fs::MetadataExt as _,
    path::Path,
};

use serde::{Deserialize, Serialize};

use super::{io_err, SyncError};

/// One entry of a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// `None` for a directory; the size and BLAKE3 hash (hex) for a file.
    pub file: Option<FileSum>,
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
    /// The entries.
    pub entries: BTreeMap<String, Entry>,
}

/// BLAKE3 of a file, hex.
pub fn hash_file(path: &Path) -> Result<(u64, String), SyncError> {
    let mut f = File::open(path).map_err(io_err("open", path))?;
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
    /// Scans `root` (not following symlinks).
    pub fn scan(root: &Path) -> Result<Manifest, SyncError> {
        let mut m = Manifest::default();
        scan_dir(root, root, &mut m, true)?;
        Ok(m)
    }

    /// Like [`Manifest::scan`] but without reading file contents (hashes left empty).
    pub(super) fn scan_shape(root: &Path) -> Result<Manifest, SyncError> {
        let mut m = Manifest::default();
        scan_dir(root, root, &mut m, false)?;
        Ok(m)
    }

    /// The same tree with the hashes left out, for comparing shapes.
    pub(super) fn shape(&self) -> Manifest {
        let mut m = self.clone();
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

fn scan_dir(root: &Path, dir: &Path, m: &mut Manifest, hash: bool) -> Result<(), SyncError> {
    let rd = fs::read_dir(dir).map_err(io_err("read directory", dir))?;
    for e in rd {
        let e = e.map_err(io_err("read directory", dir))?;
        let path = e.path();
        let md = match fs::symlink_metadata(&path).map_err(io_err("stat", &path)) {
            Ok(md) => md,
            Err(e) if vanished(&e) => continue,
            Err(e) => return Err(e),
        };
        let rel = path
            .strip_prefix(root)
            .expect("below root")
            .to_string_lossy()
            .into_owned();
        let mode = md.mode() & 0o7777;
        let ft = md.file_type();
        if ft.is_dir() {
            m.entries.insert(rel.clone(), Entry { mode, file: None });
            match scan_dir(root, &path, m, hash) {
                Err(e) if vanished(&e) && !path.exists() => {
                    // The whole directory went away: leave out what was seen of it.
                    let below = format!("{rel}/");
                    m.entries.retain(|k, _| *k != rel && !k.starts_with(&below));
                }
                r => r?,
            }
        } else if ft.is_file() {
            let (size, hash) = if hash {
                match hash_file(&path) {
                    Ok(sum) => sum,
                    Err(e) if vanished(&e) => continue,
                    Err(e) => return Err(e),
                }
            } else {
                (md.len(), String::new())
            };
            m.entries.insert(
                rel,
                Entry {
                    mode,
                    file: Some(FileSum { size, hash }),
                },
            );
        } else {
            use std::os::unix::fs::FileTypeExt as _;
            let kind = if ft.is_symlink() {
                "symlink"
            } else if ft.is_socket() {
                "socket"
            } else if ft.is_fifo() {
                "fifo"
            } else {
                "device"
            };
            return Err(SyncError::Refused { path, kind });
        }
    }
    Ok(())
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
    fn manifests_refuse_symlinks_and_name_them() {
        let d = crate::sync::test_dir("refuse");
        std::fs::write(d.join("a"), b"x").unwrap();
        std::os::unix::fs::symlink("a", d.join("link")).unwrap();
        let e = Manifest::scan(&d).unwrap_err().to_string();
        assert!(e.contains("link") && e.contains("symlink"), "{e}");
        std::fs::remove_dir_all(d).unwrap();
    }
}
