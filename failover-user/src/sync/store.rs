//! The receiving side: generations of the data directory, staged copies, the atomic switch.
use std::{
    fs::{self, File},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use serde::{Deserialize, Serialize};

use super::{attrs, io_err, manifest::hash_at, nofollow, Entry, Manifest, SyncError};

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
    /// How many `DIR.diverged-EPOCH` directories are kept (the oldest beyond go).
    keep_diverged: usize,
    /// What the last commits kept aside or removed, for the caller's events.
    notes: Mutex<Vec<Note>>,
}

/// Something a commit did to data it replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// This host's own data (served as primary, or a plain directory) was kept aside here.
    KeptAside(PathBuf),
    /// An old kept-aside directory was removed (beyond `sync.keep_diverged`).
    Removed(PathBuf),
}

/// How many kept-aside directories a store keeps by default.
pub const KEEP_DIVERGED: usize = 3;

/// The current complete copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// Generation number (increases with every copy).
    pub number: u64,
    /// Unix time (ms) when the copy was completed.
    pub completed_ms: u64,
    /// Bytes in the copy.
    pub bytes: u64,
    /// The epoch of the primary that served this copy (0: unknown).
    #[serde(default)]
    pub epoch: u64,
    /// The primary that served this copy (its `node.name`; empty: unknown).
    #[serde(default)]
    pub origin: String,
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
            keep_diverged: KEEP_DIVERGED,
            notes: Mutex::default(),
        };
        let parent = s.parent();
        fs::create_dir_all(&parent).map_err(io_err("create", &parent))?;
        let current = s.current_number()?;
        let mut highest = None;
        for (name, n) in s.siblings()? {
            let p = parent.join(&name);
            if name.contains(".staging-")
                || name.ends_with(".tmp-link")
                || name.ends_with(".served.tmp")
            {
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

    /// Keeps at most `n` (at least 1) kept-aside directories.
    pub fn set_keep_diverged(&mut self, n: usize) {
        self.keep_diverged = n.max(1);
    }

    /// This host serves the data directory as primary from now on, at `epoch`: whatever it
    /// holds then is its own data, which the next copy keeps aside instead of replacing.
    pub fn mark_served(&self, epoch: u64) -> Result<(), SyncError> {
        let p = self.served_path();
        if self.served().is_some() {
            return Ok(()); // the first epoch it served at names the data
        }
        let tmp = p.with_extension("tmp");
        fs::write(&tmp, epoch.to_string()).map_err(io_err("write", &tmp))?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io_err("fsync", &tmp))?;
        fs::rename(&tmp, &p).map_err(io_err("rename", &p))?;
        fsync_dir(&self.parent())
    }

    /// The epoch this host served the data directory at since the last copy, if it did.
    pub fn served(&self) -> Option<u64> {
        fs::read_to_string(self.served_path())
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// How new this host's data is, as one number that orders two hosts' data (carried in
    /// join requests, so that a cold start makes the host with the newer data primary): the
    /// epoch it was served at (by this host since the last copy, else by the primary the
    /// copy came from), then, within one epoch, data served here above any copy of it and
    /// copies by generation. 0: no copy, and nothing served since.
    pub fn data_mark(&self) -> Result<u64, SyncError> {
        let mark = |epoch: u64, below: u64| (epoch.min(u64::from(u32::MAX)) << 32) | below;
        if let Some(epoch) = self.served() {
            return Ok(mark(epoch, u64::from(u32::MAX)));
        }
        Ok(self
            .current()?
            .map_or(0, |g| mark(g.epoch, g.number.min(u64::from(u32::MAX) - 1))))
    }

    fn served_path(&self) -> PathBuf {
        self.parent().join(format!("{}.served", self.base()))
    }

    /// What the commits since the last call kept aside or removed.
    pub fn take_notes(&self) -> Vec<Note> {
        std::mem::take(&mut *self.notes.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn note(&self, n: Note) {
        self.notes.lock().unwrap_or_else(|p| p.into_inner()).push(n);
    }

    /// The kept-aside directories, oldest first (by epoch, then name).
    pub fn diverged(&self) -> Result<Vec<PathBuf>, SyncError> {
        let prefix = format!("{}.diverged-", self.base());
        let mut v: Vec<(u64, String)> = self
            .siblings()?
            .into_iter()
            .filter_map(|(name, _)| {
                let rest = name.strip_prefix(&prefix)?;
                let epoch = rest.split('-').next()?.parse().ok()?;
                Some((epoch, name))
            })
            .collect();
        v.sort();
        Ok(v.into_iter().map(|(_, n)| self.parent().join(n)).collect())
    }

    /// A free `DIR.diverged-EPOCH[-K]` name.
    fn diverged_path(&self, epoch: u64) -> PathBuf {
        let base = self
            .parent()
            .join(format!("{}.diverged-{epoch}", self.base()));
        let mut p = base.clone();
        let mut k = 2;
        while fs::symlink_metadata(&p).is_ok() {
            p = PathBuf::from(format!("{}-{k}", base.display()));
            k += 1;
        }
        p
    }

    /// Removes the oldest kept-aside directories beyond the bound.
    fn prune_diverged(&self) -> Result<(), SyncError> {
        let all = self.diverged()?;
        let extra = all.len().saturating_sub(self.keep_diverged);
        for p in all.into_iter().take(extra) {
            remove_any(&p)?;
            self.note(Note::Removed(p));
        }
        Ok(())
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
                    epoch: 0,
                    origin: String::new(),
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
        // Data this host served is kept aside whole at the next commit: nothing of it is
        // linked into the new copy (a later write through one would change the other).
        if self.served().is_some() {
            return Ok(Manifest::default());
        }
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
        let served = self.served().is_some();
        Ok(Stage {
            path,
            number,
            current: current.filter(|_| !served).map(|c| self.gen_path(c)),
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
        origin: &str,
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
            epoch: manifest.epoch,
            origin: origin.to_string(),
        };
        let meta = self.meta_path(stage.number);
        fs::write(&meta, serde_json::to_vec(&g).unwrap_or_default())
            .map_err(io_err("write", &meta))?;
        let mpath = self.manifest_path(stage.number);
        fs::write(&mpath, serde_json::to_vec(manifest).unwrap_or_default())
            .map_err(io_err("write", &mpath))?;
        fsync_dir(&self.parent())?;
        // What this copy replaces is never deleted when it is this host's own data: a plain
        // directory (the data it served as primary before any copy), or the generation it
        // served since the last copy. Both are kept aside as DIR.diverged-EPOCH.
        let served = self.served();
        let aside = self.diverged_path(served.unwrap_or(0));
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
            if served.is_some() {
                let to = self.diverged_path(served.unwrap_or(0));
                fs::rename(self.gen_path(p), &to).map_err(io_err("keep aside", &to))?;
                self.note(Note::KeptAside(to));
            } else {
                remove_any(&self.gen_path(p))?;
            }
            let _ = fs::remove_file(self.meta_path(p));
            let _ = fs::remove_file(self.manifest_path(p));
        }
        if moved_aside {
            self.note(Note::KeptAside(aside));
        }
        if served.is_some() {
            let _ = fs::remove_file(self.served_path());
        }
        fsync_dir(&self.parent())?;
        self.prune_diverged()?;
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
        let (size, hash) = hash_at(root, rel)?;
        if size != want.size || hash != want.hash {
            return Err(SyncError::Mismatch {
                path: root.join(rel),
                message: "content hash differs".into(),
            });
        }
    }
    Ok(())
}

/// `got` (a scan) has the entries of `want`, and the root's owner, mode and mtime when `want`
/// lists them.
fn compare(root: &Path, want: &Manifest, got: &Manifest) -> Result<(), SyncError> {
    if want.entries == got.entries && (want.root.is_none() || want.root == got.root) {
        return Ok(());
    }
    if want.root.is_some() && want.root != got.root {
        return Err(SyncError::Mismatch {
            path: root.to_path_buf(),
            message: format!("expected {:?}, found {:?}", want.root, got.root),
        });
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

    /// Creates the directory `rel` with `mode`. A copy creates its directories 0700 and gives
    /// them their own owner, mode and mtime at [`Stage::seal`], once they are filled.
    pub fn dir(&mut self, rel: &str, mode: u32) -> Result<(), SyncError> {
        let p = self.path.join(rel);
        fs::create_dir(&p).map_err(io_err("create", &p))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", &p))
    }

    /// Creates the symlink `rel` to `e.link` (it is never followed), with the owner and mtime
    /// of `e`.
    pub fn link(&mut self, rel: &str, e: &Entry) -> Result<(), SyncError> {
        let p = self.path.join(rel);
        let target = e.link.as_deref().unwrap_or_default();
        std::os::unix::fs::symlink(target, &p).map_err(io_err("create the symlink", &p))?;
        attrs::set(&p, e)
    }

    /// Takes `rel` unchanged from the current generation as a hard link (nothing travels) when
    /// the file there has exactly the owner, mode, mtime and size of `e`; its content hash
    /// matched already. The generations then share the inode, which is never changed: with
    /// any other owner, mode or mtime nothing is linked and this is `false`, as when the file
    /// is missing.
    pub fn keep(&mut self, rel: &str, e: &Entry) -> Result<bool, SyncError> {
        let Some(cur) = &self.current else {
            return Ok(false);
        };
        let to = self.path.join(rel);
        if nofollow::hard_link(cur, rel, &to).is_err() {
            return Ok(false);
        }
        let same = fs::symlink_metadata(&to).is_ok_and(|md| {
            md.is_file()
                && e.attrs_match(&md)
                && e.file.as_ref().is_some_and(|f| f.size == md.len())
        });
        if !same {
            fs::remove_file(&to).map_err(io_err("remove", &to))?;
        }
        Ok(same)
    }

    /// Copies `rel` from the current generation into a file of its own: its content is the
    /// new one, its owner, mode or mtime are not ([`Stage::keep`] said no). `false` when it is
    /// not there. Its hash is checked with the files written.
    pub fn copy_current(&mut self, rel: &str) -> Result<bool, SyncError> {
        let Some(cur) = self.current.clone() else {
            return Ok(false);
        };
        let from = cur.join(rel);
        let mut src = match nofollow::open_file(&cur, rel) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err("open", &from)(e)),
        };
        let mut dst = self.create(rel)?;
        std::io::copy(&mut src, &mut dst).map_err(io_err("copy", &from))?;
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

    /// Gives `rel` (a file once written and closed) the owner, mode and mtime of `e`.
    pub fn settle(&mut self, rel: &str, e: &Entry) -> Result<(), SyncError> {
        attrs::set(&self.path.join(rel), e)
    }

    /// Gives every directory of `manifest`, and then the staging directory itself
    /// (`manifest.root`), its owner, mode and mtime. Deepest first, once everything in them is
    /// written: writing in a directory changes its mtime. And a directory goes to its owner
    /// only when nothing more is done below it.
    pub fn seal(&mut self, manifest: &Manifest) -> Result<(), SyncError> {
        for (rel, e) in manifest.entries.iter().rev().filter(|(_, e)| e.is_dir()) {
            attrs::set(&self.path.join(rel), e)?;
        }
        if let Some(root) = &manifest.root {
            attrs::set(&self.path, root)?;
        }
        Ok(())
    }

    /// fsyncs everything written and every directory, then checks the staged tree against
    /// `manifest`: its whole shape (owners, modes, mtimes and link targets included), and the
    /// content hash of every file written. Kept files are hard links to the previous copy's,
    /// whose hashes were equal.
    fn verify(&self, manifest: &Manifest) -> Result<(), SyncError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        for f in &self.files {
            fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(f)
                .and_then(|f| f.sync_all())
                .map_err(io_err("fsync", f))?;
        }
        for (rel, e) in &manifest.entries {
            if e.is_dir() {
                let p = self.path.join(rel);
                nofollow::open_dir(&self.path, rel)
                    .and_then(|d| d.sync_all())
                    .map_err(io_err("fsync directory", &p))?;
            }
        }
        fsync_dir(&self.path)?;
        verify_tree(&self.path, manifest, &self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let p = std::env::temp_dir().join(format!(
                "fo-store-{tag}-{}-{}",
                std::process::id(),
                unix_ms()
            ));
            fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Commits a copy holding one file `f` with `content`.
    fn copy(store: &Store, content: &str) -> Generation {
        let mut st = store.stage().unwrap();
        {
            use std::io::Write as _;
            let mut f = st.create("f").unwrap();
            f.write_all(content.as_bytes()).unwrap();
        }
        st.finish("f", 0o644).unwrap();
        let m = Manifest::scan(st.path()).unwrap();
        store.commit(st, &m, &CommitGate::default(), "a").unwrap()
    }

    fn read(p: &Path) -> String {
        fs::read_to_string(p.join("f")).unwrap()
    }

    #[test]
    fn a_plain_directory_a_copy_replaces_is_kept_aside() {
        let s = Scratch::new("plain");
        let dir = s.0.join("data");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("f"), "mine").unwrap();
        let store = Store::open(&dir).unwrap();
        copy(&store, "theirs");
        assert_eq!(read(&dir), "theirs");
        let aside = store.diverged().unwrap();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(read(&aside[0]), "mine");
        assert_eq!(store.take_notes(), vec![Note::KeptAside(aside[0].clone())]);
        // A restart does not clear it.
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.diverged().unwrap(), aside);
    }

    #[test]
    fn the_generation_this_host_served_is_kept_aside_and_not_linked_into_the_next() {
        let s = Scratch::new("served");
        let dir = s.0.join("data");
        let store = Store::open(&dir).unwrap();
        copy(&store, "v1");
        store.take_notes();
        // This host takes over at epoch 7 and its service writes through the symlink.
        store.mark_served(7).unwrap();
        fs::write(dir.join("f"), "written as primary").unwrap();
        assert!(
            store.current_manifest().unwrap().entries.is_empty(),
            "nothing to link"
        );
        copy(&store, "v2 from the new primary");
        assert_eq!(read(&dir), "v2 from the new primary");
        let aside = store.diverged().unwrap();
        assert_eq!(aside.len(), 1);
        assert!(
            aside[0].to_string_lossy().ends_with("data.diverged-7"),
            "{aside:?}"
        );
        assert_eq!(read(&aside[0]), "written as primary");
        assert_eq!(store.served(), None, "the mark goes with the data it named");
        // The next copy replaces a copy: nothing more is kept.
        copy(&store, "v3");
        assert_eq!(store.diverged().unwrap().len(), 1);
    }

    #[test]
    fn kept_aside_data_is_bounded_oldest_first_each_removal_noted() {
        let s = Scratch::new("bound");
        let dir = s.0.join("data");
        let mut store = Store::open(&dir).unwrap();
        store.set_keep_diverged(2);
        copy(&store, "v0");
        for epoch in [3, 5, 9] {
            store.mark_served(epoch).unwrap();
            copy(&store, &format!("after {epoch}"));
        }
        let names: Vec<String> = store
            .diverged()
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["data.diverged-5", "data.diverged-9"]);
        let removed: Vec<Note> = store
            .take_notes()
            .into_iter()
            .filter(|n| matches!(n, Note::Removed(_)))
            .collect();
        assert_eq!(removed, vec![Note::Removed(s.0.join("data.diverged-3"))]);
    }
}
