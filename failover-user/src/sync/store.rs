//! The receiving side: generations of the data directory, staged copies, the atomic switch.
use std::{
    fs::{self, File},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use serde::{Deserialize, Serialize};

use super::{hash_file, io_err, Manifest, SyncError};

/// Whether a copy may still switch the data directory. Closing it waits only for a switch in
/// progress (two renames); after that no copy switches, so the owner can take the directory
/// over (a takeover starts serving it).
#[derive(Clone, Debug, Default)]
pub struct CommitGate(Arc<Mutex<bool>>);

impl CommitGate {
    /// No copy switches the directory from now on.
    pub fn close(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
    }

    /// Whether it is closed.
    pub fn is_closed(&self) -> bool {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The receiving side's data directory and its generations.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
}

/// The current complete copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// Generation number (increases with every copy).
    pub number: u64,
    /// Unix time (ms) when the copy was completed.
    pub completed_ms: u64,
    /// Bytes in the copy.
    pub bytes: u64,
}

/// Wall-clock Unix time in ms (copies are dated for the operator, across reboots).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn fsync_dir(dir: &Path) -> Result<(), SyncError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err("fsync directory", dir))
}

impl Store {
    /// The store for data directory `dir`. Recovers from an interrupted copy: removes staging
    /// directories and generations that are not current, and re-creates the symlink if a
    /// crash left only complete generations.
    pub fn open(dir: &Path) -> Result<Store, SyncError> {
        let s = Store {
            dir: dir.to_path_buf(),
        };
        let parent = s.parent();
        fs::create_dir_all(&parent).map_err(io_err("create", &parent))?;
        let current = s.current_number()?;
        let mut highest = None;
        for (name, n) in s.siblings()? {
            let p = parent.join(&name);
            if name.contains(".staging-") || name.ends_with(".tmp-link") {
                remove_any(&p)?;
            } else if let Some(n) = n {
                if current.is_some_and(|c| c != n) {
                    remove_any(&p)?;
                    let _ = fs::remove_file(s.meta_path(n));
                    let _ = fs::remove_file(s.manifest_path(n));
                } else {
                    highest = highest.max(Some(n));
                }
            }
        }
        if current.is_none() && fs::symlink_metadata(dir).is_err() {
            if let Some(n) = highest {
                s.point_to(n)?;
            }
        }
        Ok(s)
    }

    fn parent(&self) -> PathBuf {
        self.dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"))
    }

    fn base(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn gen_path(&self, n: u64) -> PathBuf {
        self.parent().join(format!("{}.gen-{n}", self.base()))
    }

    fn meta_path(&self, n: u64) -> PathBuf {
        self.parent().join(format!("{}.gen-{n}.meta", self.base()))
    }

    fn manifest_path(&self, n: u64) -> PathBuf {
        self.parent()
            .join(format!("{}.gen-{n}.manifest", self.base()))
    }

    /// Names beside the data directory that belong to it, with their generation number.
    fn siblings(&self) -> Result<Vec<(String, Option<u64>)>, SyncError> {
        let parent = self.parent();
        let prefix = format!("{}.", self.base());
        let mut out = Vec::new();
        for e in fs::read_dir(&parent).map_err(io_err("read directory", &parent))? {
            let e = e.map_err(io_err("read directory", &parent))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            if rest.ends_with(".meta") || rest.ends_with(".manifest") {
                continue;
            }
            let n = rest.strip_prefix("gen-").and_then(|x| x.parse().ok());
            out.push((name, n));
        }
        Ok(out)
    }

    fn current_number(&self) -> Result<Option<u64>, SyncError> {
        match fs::read_link(&self.dir) {
            Ok(t) => Ok(t
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.rsplit_once(".gen-"))
                .and_then(|(_, n)| n.parse().ok())),
            Err(_) => Ok(None),
        }
    }

    /// The current generation, if a copy was ever completed.
    pub fn current(&self) -> Result<Option<Generation>, SyncError> {
        let Some(n) = self.current_number()? else {
            return Ok(None);
        };
        let meta = fs::read_to_string(self.meta_path(n)).ok();
        Ok(Some(
            meta.and_then(|m| serde_json::from_str(&m).ok())
                .unwrap_or(Generation {
                    number: n,
                    completed_ms: 0,
                    bytes: 0,
                }),
        ))
    }

    /// The directory of the current copy, if any.
    pub fn current_dir(&self) -> Result<Option<PathBuf>, SyncError> {
        Ok(self.current_number()?.map(|n| self.gen_path(n)))
    }

    /// The manifest of the current copy (empty without one). A data directory that is a
    /// plain directory (this host was primary) counts as empty: it is replaced at the switch.
    ///
    /// The manifest written with the generation is used when its shape still matches the
    /// tree (generations are only written here); otherwise the tree is scanned again.
    pub fn current_manifest(&self) -> Result<Manifest, SyncError> {
        let Some(n) = self.current_number()? else {
            return Ok(Manifest::default());
        };
        let dir = self.gen_path(n);
        if let Some(m) = fs::read(self.manifest_path(n))
            .ok()
            .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
        {
            if Manifest::scan_shape(&dir)? == m.shape() {
                return Ok(m);
            }
        }
        Manifest::scan(&dir)
    }

    /// Starts staging the next generation.
    pub fn stage(&self) -> Result<Stage, SyncError> {
        let current = self.current_number()?;
        let number = current.map_or(1, |c| c + 1);
        let path = self
            .parent()
            .join(format!("{}.staging-{number}", self.base()));
        remove_any(&path)?;
        fs::create_dir(&path).map_err(io_err("create staging directory", &path))?;
        Ok(Stage {
            path,
            number,
            current: current.map(|c| self.gen_path(c)),
            files: Vec::new(),
            written: Vec::new(),
        })
    }

    fn point_to(&self, n: u64) -> Result<(), SyncError> {
        let tmp = self.parent().join(format!("{}.tmp-link", self.base()));
        let _ = fs::remove_file(&tmp);
        let target = PathBuf::from(format!("{}.gen-{n}", self.base()));
        std::os::unix::fs::symlink(&target, &tmp).map_err(io_err("create symlink", &tmp))?;
        fs::rename(&tmp, &self.dir).map_err(io_err("switch (rename) onto", &self.dir))?;
        fsync_dir(&self.parent())
    }

    /// Makes a verified stage the current generation. Returns it.
    pub fn commit(
        &self,
        stage: Stage,
        manifest: &Manifest,
        gate: &CommitGate,
    ) -> Result<Generation, SyncError> {
        if gate.is_closed() {
            return Err(SyncError::Cancelled);
        }
        stage.verify(manifest)?;
        let gen_path = self.gen_path(stage.number);
        remove_any(&gen_path)?;
        fs::rename(&stage.path, &gen_path).map_err(io_err("rename stage to", &gen_path))?;
        let g = Generation {
            number: stage.number,
            completed_ms: unix_ms(),
            bytes: manifest.bytes(),
        };
        let meta = self.meta_path(stage.number);
        fs::write(&meta, serde_json::to_vec(&g).unwrap_or_default())
            .map_err(io_err("write", &meta))?;
        let mpath = self.manifest_path(stage.number);
        fs::write(&mpath, serde_json::to_vec(manifest).unwrap_or_default())
            .map_err(io_err("write", &mpath))?;
        fsync_dir(&self.parent())?;
        // A plain directory here is the data this host served as primary: it is superseded.
        let aside = self.parent().join(format!("{}.staging-old", self.base()));
        let moved_aside = fs::symlink_metadata(&self.dir).is_ok_and(|m| m.is_dir());
        if moved_aside {
            fs::rename(&self.dir, &aside).map_err(io_err("move aside", &self.dir))?;
        }
        let previous = self.current_number()?;
        {
            let closed = gate.0.lock().unwrap_or_else(|p| p.into_inner());
            if *closed {
                if moved_aside {
                    fs::rename(&aside, &self.dir).map_err(io_err("restore", &self.dir))?;
                }
                remove_any(&gen_path)?;
                let _ = fs::remove_file(&meta);
                let _ = fs::remove_file(&mpath);
                return Err(SyncError::Cancelled);
            }
            self.point_to(stage.number)?;
        }
        // Verified again where the service will read it; the previous copy stays until then.
        if let Err(e) = self.verify_current(manifest, &stage.written) {
            if let Some(p) = previous {
                self.point_to(p)?;
            } else if moved_aside {
                fs::remove_file(&self.dir).map_err(io_err("remove", &self.dir))?;
                fs::rename(&aside, &self.dir).map_err(io_err("restore", &self.dir))?;
                fsync_dir(&self.parent())?;
            }
            return Err(e);
        }
        if let Some(p) = previous {
            remove_any(&self.gen_path(p))?;
            let _ = fs::remove_file(self.meta_path(p));
            let _ = fs::remove_file(self.manifest_path(p));
        }
        remove_any(&aside)?;
        Ok(g)
    }

    /// After the switch: the shape of the whole tree, and the content of every file that was
    /// written for this copy (the others are the previous copy's files, hard-linked).
    fn verify_current(&self, manifest: &Manifest, written: &[String]) -> Result<(), SyncError> {
        verify_tree(&self.dir, manifest, written)
    }
}

/// The shape of `root` equals `manifest`'s, and the files in `written` hash as listed.
fn verify_tree(root: &Path, manifest: &Manifest, written: &[String]) -> Result<(), SyncError> {
    compare(root, &manifest.shape(), &Manifest::scan_shape(root)?)?;
    for rel in written {
        let Some(Some(want)) = manifest.entries.get(rel).map(|e| e.file.as_ref()) else {
            continue;
        };
        let (size, hash) = hash_file(&root.join(rel))?;
        if size != want.size || hash != want.hash {
            return Err(SyncError::Mismatch {
                path: root.join(rel),
                message: "content hash differs".into(),
            });
        }
    }
    Ok(())
}

fn compare(root: &Path, want: &Manifest, got: &Manifest) -> Result<(), SyncError> {
    if want == got {
        return Ok(());
    }
    for (p, e) in &want.entries {
        if got.entries.get(p) != Some(e) {
            return Err(SyncError::Mismatch {
                path: root.join(p),
                message: format!("expected {e:?}, found {:?}", got.entries.get(p)),
            });
        }
    }
    let extra = got
        .entries
        .keys()
        .find(|p| !want.entries.contains_key(*p))
        .cloned()
        .unwrap_or_default();
    Err(SyncError::Mismatch {
        path: root.join(extra),
        message: "not in the manifest".into(),
    })
}

pub(super) fn remove_any(p: &Path) -> Result<(), SyncError> {
    match fs::symlink_metadata(p) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).map_err(io_err("remove", p)),
        Ok(_) => fs::remove_file(p).map_err(io_err("remove", p)),
    }
}

/// A copy being staged.
#[derive(Debug)]
pub struct Stage {
    path: PathBuf,
    number: u64,
    current: Option<PathBuf>,
    files: Vec<PathBuf>,
    /// Relative paths written for this copy (not hard-linked).
    written: Vec<String>,
}

impl Stage {
    /// The staging directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the directory `rel`.
    pub fn dir(&mut self, rel: &str, mode: u32) -> Result<(), SyncError> {
        let p = self.path.join(rel);
        fs::create_dir(&p).map_err(io_err("create", &p))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", &p))
    }

    /// Takes `rel` unchanged from the current generation (a hard link: nothing travels).
    pub fn keep(&mut self, rel: &str, mode: u32) -> Result<bool, SyncError> {
        let Some(cur) = &self.current else {
            return Ok(false);
        };
        let from = cur.join(rel);
        let to = self.path.join(rel);
        if fs::hard_link(&from, &to).is_err() {
            return Ok(false);
        }
        fs::set_permissions(&to, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", &to))?;
        Ok(true)
    }

    /// Opens `rel` for writing its new content.
    pub fn create(&mut self, rel: &str) -> Result<File, SyncError> {
        let p = self.path.join(rel);
        let f = File::create(&p).map_err(io_err("create", &p))?;
        self.files.push(p);
        self.written.push(rel.to_string());
        Ok(f)
    }

    /// Sets the mode of a written file.
    pub fn finish(&mut self, rel: &str, mode: u32) -> Result<(), SyncError> {
        let p = self.path.join(rel);
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", &p))
    }

    /// fsyncs everything written and every directory, then checks the staged tree against
    /// `manifest`: its whole shape, and the content hash of every file written. Kept files are
    /// hard links to the previous copy's, whose hashes were equal.
    fn verify(&self, manifest: &Manifest) -> Result<(), SyncError> {
        for f in &self.files {
            File::open(f)
                .and_then(|f| f.sync_all())
                .map_err(io_err("fsync", f))?;
        }
        for (rel, e) in &manifest.entries {
            if e.file.is_none() {
                fsync_dir(&self.path.join(rel))?;
            }
        }
        fsync_dir(&self.path)?;
        verify_tree(&self.path, manifest, &self.written)
    }
}
