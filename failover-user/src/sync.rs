//! State sync (claims 14 and 21): the monitor copies the primary's data directory every N
//! heartbeats, so that a takeover serves the state the primary had a moment ago.
//!
//! - [`Manifest`]: every directory and regular file below the root, with mode, size and a
//!   BLAKE3 content hash. Symlinks and special files are refused, naming the path.
//! - [`Store`]: the receiving side. The data directory is a symlink to a complete generation
//!   (`DIR.gen-N`); a copy is staged beside it (`DIR.staging-N`: unchanged files hard-linked
//!   from the current generation, changed ones written), fsynced, verified against the
//!   manifest, renamed to `DIR.gen-N` and only then made current by an atomic symlink rename.
//!   The directory therefore always holds the previous complete copy or the new complete copy,
//!   never a mix, also when a copy is interrupted at any point.
//! - [`Channel`]: the peer channel, TCP with Noise `NNpsk0` (snow): both sides prove the shared
//!   key, every frame is encrypted and authenticated, and frame nonces make replay and
//!   reordering fail.
//! - [`serve_one`] / [`pull`]: one copy from the primary (server) to the monitor (client).
use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::{self, Read as _, Write as _},
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// A sync failure: what was being done, with which file or peer.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
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
    #[error("sync: {} is a {kind}: only regular files and directories are copied", path.display())]
    Refused {
        /// The file.
        path: PathBuf,
        /// "symlink", "socket", ...
        kind: &'static str,
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
    fn scan_shape(root: &Path) -> Result<Manifest, SyncError> {
        let mut m = Manifest::default();
        scan_dir(root, root, &mut m, false)?;
        Ok(m)
    }

    /// The same tree with the hashes left out, for comparing shapes.
    fn shape(&self) -> Manifest {
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

fn scan_dir(root: &Path, dir: &Path, m: &mut Manifest, hash: bool) -> Result<(), SyncError> {
    let rd = fs::read_dir(dir).map_err(io_err("read directory", dir))?;
    for e in rd {
        let e = e.map_err(io_err("read directory", dir))?;
        let path = e.path();
        let md = fs::symlink_metadata(&path).map_err(io_err("stat", &path))?;
        let rel = path
            .strip_prefix(root)
            .expect("below root")
            .to_string_lossy()
            .into_owned();
        let mode = md.mode() & 0o7777;
        let ft = md.file_type();
        if ft.is_dir() {
            m.entries.insert(rel, Entry { mode, file: None });
            scan_dir(root, &path, m, hash)?;
        } else if ft.is_file() {
            let (size, hash) = if hash {
                hash_file(&path)?
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
    pub fn commit(&self, stage: Stage, manifest: &Manifest) -> Result<Generation, SyncError> {
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
        self.point_to(stage.number)?;
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

fn remove_any(p: &Path) -> Result<(), SyncError> {
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

/// The shared key: 32 bytes, written as 64 hex digits in the key file.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(***)")
    }
}

impl Key {
    /// Reads the key file (64 hex digits; whitespace ignored). Refuses a file others can read.
    pub fn load(path: &Path) -> Result<Key, SyncError> {
        let bad = |message: String| SyncError::Key {
            path: path.to_path_buf(),
            message,
        };
        let md = fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        if md.mode() & 0o077 != 0 {
            return Err(bad(format!(
                "mode {:o} lets others read it; chmod 600",
                md.mode() & 0o777
            )));
        }
        let text = fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let hex: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad(
                "expected 64 hex digits (32 random bytes, e.g. `openssl rand -hex 32`)".into(),
            ));
        }
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex");
        }
        Ok(Key(k))
    }

    /// A key from bytes (tests).
    pub fn from_bytes(b: [u8; 32]) -> Key {
        Key(b)
    }
}

const NOISE: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
/// Plaintext bytes per frame (a Noise message is at most 65535 bytes, 16 of them the tag).
const CHUNK: usize = 65000;

/// An authenticated, encrypted channel to the peer.
pub struct Channel {
    stream: TcpStream,
    noise: snow::TransportState,
    peer: String,
    buf: Vec<u8>,
    /// Bytes per second to send at most (0: no limit).
    rate: u64,
    sent: u64,
    started: Instant,
}

impl Channel {
    fn err(&self, message: impl Into<String>) -> SyncError {
        SyncError::Peer {
            peer: self.peer.clone(),
            message: message.into(),
        }
    }

    async fn handshake(
        mut stream: TcpStream,
        key: &Key,
        initiator: bool,
        rate: u64,
    ) -> Result<Channel, SyncError> {
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string());
        let perr = |m: String| SyncError::Peer {
            peer: peer.clone(),
            message: m,
        };
        let b = snow::Builder::new(NOISE.parse().expect("valid noise pattern"))
            .psk(0, &key.0)
            .map_err(|e| perr(e.to_string()))?;
        let mut hs = if initiator {
            b.build_initiator()
        } else {
            b.build_responder()
        }
        .map_err(|e| perr(e.to_string()))?;
        let mut buf = vec![0u8; 65535];
        // NN: -> e (with psk), <- e, ee. Two messages.
        for step in 0..2 {
            let my_turn = (step == 0) == initiator;
            if my_turn {
                let n = hs
                    .write_message(&[], &mut buf)
                    .map_err(|e| perr(e.to_string()))?;
                write_frame(&mut stream, &buf[..n])
                    .await
                    .map_err(|e| perr(e.to_string()))?;
            } else {
                // A peer with another key drops the connection at its first handshake message.
                let msg = read_frame(&mut stream).await.map_err(|e| {
                    perr(format!(
                        "handshake failed: the peer closed the connection ({e}); it does not \
                         hold the same key, or is not a failover sync endpoint"
                    ))
                })?;
                hs.read_message(&msg, &mut buf).map_err(|_| {
                    perr("handshake failed: the peer does not hold the same key".into())
                })?;
            }
        }
        let noise = hs.into_transport_mode().map_err(|e| perr(e.to_string()))?;
        Ok(Channel {
            stream,
            noise,
            peer,
            buf: vec![0u8; 65535],
            rate,
            sent: 0,
            started: Instant::now(),
        })
    }

    /// Connects to `addr` and authenticates.
    pub async fn connect(
        addr: std::net::SocketAddr,
        key: &Key,
        timeout: Duration,
    ) -> Result<Channel, SyncError> {
        let s = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| SyncError::Peer {
                peer: addr.to_string(),
                message: format!("connect: no answer within {timeout:?}"),
            })?
            .map_err(|e| SyncError::Peer {
                peer: addr.to_string(),
                message: format!("connect: {e}"),
            })?;
        Channel::handshake(s, key, true, 0).await
    }

    /// Authenticates an accepted connection; sends at most `rate` bytes/s (0: unlimited).
    pub async fn accept(s: TcpStream, key: &Key, rate: u64) -> Result<Channel, SyncError> {
        Channel::handshake(s, key, false, rate).await
    }

    async fn send_frame(&mut self, plain: &[u8]) -> Result<(), SyncError> {
        let n = self
            .noise
            .write_message(plain, &mut self.buf)
            .map_err(|e| self.err(format!("encrypt: {e}")))?;
        write_frame(&mut self.stream, &self.buf[..n])
            .await
            .map_err(|e| self.err(format!("send: {e}")))?;
        self.sent += n as u64;
        if self.rate > 0 {
            let due = Duration::from_secs_f64(self.sent as f64 / self.rate as f64);
            let el = self.started.elapsed();
            if due > el {
                tokio::time::sleep(due - el).await;
            }
        }
        Ok(())
    }

    async fn recv_frame(&mut self) -> Result<Vec<u8>, SyncError> {
        let msg = read_frame(&mut self.stream)
            .await
            .map_err(|e| self.err(format!("receive: {e}")))?;
        let n = self.noise.read_message(&msg, &mut self.buf).map_err(|_| {
            self.err("a frame failed authentication (tampered, replayed or reordered)")
        })?;
        Ok(self.buf[..n].to_vec())
    }

    /// Sends one message of any size (length-prefixed, in frames).
    pub async fn send(&mut self, data: &[u8]) -> Result<(), SyncError> {
        let mut first = (data.len() as u64).to_be_bytes().to_vec();
        let take = data.len().min(CHUNK - 8);
        first.extend_from_slice(&data[..take]);
        self.send_frame(&first).await?;
        for c in data[take..].chunks(CHUNK) {
            self.send_frame(c).await?;
        }
        Ok(())
    }

    /// Receives one message of at most `limit` bytes.
    pub async fn recv(&mut self, limit: u64) -> Result<Vec<u8>, SyncError> {
        let first = self.recv_frame().await?;
        if first.len() < 8 {
            return Err(self.err("short message header"));
        }
        let len = u64::from_be_bytes(first[..8].try_into().expect("8 bytes"));
        if len > limit {
            return Err(self.err(format!("message of {len} bytes exceeds the {limit} limit")));
        }
        let mut out = first[8..].to_vec();
        while (out.len() as u64) < len {
            out.extend_from_slice(&self.recv_frame().await?);
        }
        if out.len() as u64 != len {
            return Err(self.err("message longer than announced"));
        }
        Ok(out)
    }

    async fn send_json<T: Serialize>(&mut self, v: &T) -> Result<(), SyncError> {
        let b = serde_json::to_vec(v).map_err(|e| self.err(e.to_string()))?;
        self.send(&b).await
    }

    async fn recv_json<T: for<'de> Deserialize<'de>>(&mut self) -> Result<T, SyncError> {
        let b = self.recv(1 << 28).await?;
        serde_json::from_slice(&b).map_err(|e| self.err(format!("malformed message: {e}")))
    }
}

async fn write_frame(s: &mut TcpStream, b: &[u8]) -> io::Result<()> {
    s.write_all(&(b.len() as u16).to_be_bytes()).await?;
    s.write_all(b).await
}

async fn read_frame(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await?;
    let mut b = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut b).await?;
    Ok(b)
}

/// The monitor's request: the hashes it already holds.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    have: BTreeMap<String, String>,
}

/// The primary's answer: the new manifest, or why there is none.
#[derive(Debug, Serialize, Deserialize)]
enum Offer {
    Manifest(Manifest),
    Failed(String),
}

/// What one copy did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyReport {
    /// The new current generation.
    pub generation: Generation,
    /// Bytes of the files that changed.
    pub bytes_changed: u64,
    /// Bytes that travelled for them (whole files, or deltas of large ones).
    pub bytes_sent: u64,
    /// Files that travelled.
    pub files_sent: usize,
}

/// Primary side: serves one copy of `root` on an authenticated channel. Runs
/// `snapshot` (a shell command, in `root`) first, when given.
pub async fn serve_one(
    ch: &mut Channel,
    root: &Path,
    snapshot: Option<(&str, Duration)>,
) -> Result<u64, SyncError> {
    let req: Request = ch.recv_json().await?;
    if let Some((cmd, limit)) = snapshot {
        if let Err(e) = run_snapshot(cmd, root, limit).await {
            ch.send_json(&Offer::Failed(e.to_string())).await?;
            return Err(e);
        }
    }
    let m = match Manifest::scan(root) {
        Ok(m) => m,
        Err(e) => {
            ch.send_json(&Offer::Failed(e.to_string())).await?;
            return Err(e);
        }
    };
    ch.send_json(&Offer::Manifest(m.clone())).await?;
    // The monitor's signatures of its older versions of large changed files.
    let paths: Vec<String> = ch.recv_json().await?;
    let mut sigs = BTreeMap::new();
    for p in paths {
        let raw = ch.recv(1 << 30).await?;
        let sig = fast_rsync::Signature::deserialize(raw)
            .map_err(|_| ch.err(format!("{p}: malformed signature")))?;
        sigs.insert(p, sig);
    }
    let mut sent = 0;
    let mut buf = vec![0u8; CHUNK];
    for (rel, e) in &m.entries {
        let Some(sum) = &e.file else { continue };
        if req.have.get(rel) == Some(&sum.hash) {
            continue;
        }
        if let Some(sig) = sigs.get(rel) {
            let p = root.join(rel);
            if let Some(n) = send_delta(ch, &p, sig).await? {
                sent += n;
                continue;
            }
        }
        // The content travels as it is when opened, which may be newer than the scan (a live
        // service keeps writing); the trailer carries the size and hash of exactly what was
        // sent, and the receiver checks its own hash against it.
        let p = root.join(rel);
        let mut f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                ch.send_frame(&[TAG_GONE]).await?;
                continue;
            }
            Err(e) => return Err(io_err("open", &p)(e)),
        };
        let mut h = blake3::Hasher::new();
        let mut size = 0u64;
        loop {
            buf[0] = TAG_DATA;
            let n = f.read(&mut buf[1..]).map_err(io_err("read", &p))?;
            if n == 0 {
                break;
            }
            h.update(&buf[1..=n]);
            size += n as u64;
            ch.send_frame(&buf[..=n]).await?;
        }
        ch.send_frame(&sum_trailer(size, &h.finalize())).await?;
        sent += size;
    }
    Ok(sent)
}

const TAG_DATA: u8 = 0;
const TAG_END: u8 = 1;
const TAG_GONE: u8 = 2;
const TAG_DELTA: u8 = 3;

/// Files at least this large travel as rsync-style deltas against the monitor's version.
pub const DELTA_MIN: u64 = 1 << 20;
/// Files above this are sent whole (a delta needs both versions in memory).
pub const DELTA_MAX: u64 = 1 << 30;
const DELTA_BLOCK: u32 = 16 * 1024;

fn sum_trailer(size: u64, hash: &blake3::Hash) -> Vec<u8> {
    let mut end = vec![TAG_END];
    end.extend_from_slice(&size.to_be_bytes());
    end.extend_from_slice(hash.to_hex().as_bytes());
    end
}

/// Sends `p` as a delta against `sig` when that is smaller than the file; returns the bytes
/// sent, or `None` when the file should go whole (or vanished: then nothing was sent).
async fn send_delta(
    ch: &mut Channel,
    p: &Path,
    sig: &fast_rsync::Signature,
) -> Result<Option<u64>, SyncError> {
    let data = match fs::read(p) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", p)(e)),
    };
    let mut delta = Vec::new();
    if fast_rsync::diff(&sig.index(), &data, &mut delta).is_err() || delta.len() >= data.len() {
        return Ok(None);
    }
    let mut frame = Vec::with_capacity(CHUNK);
    for c in delta.chunks(CHUNK - 1) {
        frame.clear();
        frame.push(TAG_DELTA);
        frame.extend_from_slice(c);
        ch.send_frame(&frame).await?;
    }
    ch.send_frame(&sum_trailer(data.len() as u64, &blake3::hash(&data)))
        .await?;
    Ok(Some(delta.len() as u64))
}

async fn run_snapshot(cmd: &str, root: &Path, limit: Duration) -> Result<(), SyncError> {
    let out = tokio::process::Command::new("sh")
        .args(["-c", cmd])
        .current_dir(root)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(limit, out)
        .await
        .map_err(|_| SyncError::Snapshot(format!("{cmd:?} killed after {limit:?}")))?
        .map_err(|e| SyncError::Snapshot(format!("{cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(SyncError::Snapshot(format!(
            "{cmd:?} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Monitor side: pulls one copy into `store`. Either the whole new copy becomes current or
/// nothing changes.
pub async fn pull(ch: &mut Channel, store: &Store) -> Result<CopyReport, SyncError> {
    let have_m = store.current_manifest()?;
    let have: BTreeMap<String, String> = have_m
        .entries
        .iter()
        .filter_map(|(p, e)| e.file.as_ref().map(|f| (p.clone(), f.hash.clone())))
        .collect();
    ch.send_json(&Request { have: have.clone() }).await?;
    let m = match ch.recv_json::<Offer>().await? {
        Offer::Manifest(m) => m,
        Offer::Failed(why) => {
            return Err(ch.err(format!("the primary could not offer a copy: {why}")))
        }
    };
    for rel in m.entries.keys() {
        if rel.starts_with('/') || rel.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(ch.err(format!("manifest path {rel:?} escapes the data directory")));
        }
    }
    // Signatures of our versions of large files that changed: they come back as deltas.
    let current_dir = store.current_dir()?;
    let mut sig_paths = Vec::new();
    let mut sigs = Vec::new();
    if let Some(cur) = &current_dir {
        for (rel, e) in &m.entries {
            let (Some(sum), Some(old)) = (&e.file, have.get(rel)) else {
                continue;
            };
            if *old == sum.hash {
                continue;
            }
            let p = cur.join(rel);
            let size = fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            if !(DELTA_MIN..=DELTA_MAX).contains(&size) {
                continue;
            }
            let data = fs::read(&p).map_err(io_err("read", &p))?;
            let sig = fast_rsync::Signature::calculate(
                &data,
                fast_rsync::SignatureOptions {
                    block_size: DELTA_BLOCK,
                    crypto_hash_size: 8,
                },
            );
            sig_paths.push(rel.clone());
            sigs.push(sig.into_serialized());
        }
    }
    ch.send_json(&sig_paths).await?;
    for sgn in &sigs {
        ch.send(sgn).await?;
    }
    let mut stage = store.stage()?;
    // What the copy really holds: the offered manifest, updated with each sent file's trailer.
    let mut final_m = m.clone();
    let result = async {
        let mut bytes = 0u64;
        let mut wire = 0u64;
        let mut files = 0usize;
        for (rel, e) in &m.entries {
            match &e.file {
                None => stage.dir(rel, e.mode)?,
                Some(sum) if have.get(rel) == Some(&sum.hash) && stage.keep(rel, e.mode)? => {}
                Some(sum) if have.get(rel) == Some(&sum.hash) => {
                    return Err(ch.err(format!(
                        "{rel}: unchanged but missing locally; retry the copy"
                    )))
                }
                Some(_) => {
                    let mut f = stage.create(rel)?;
                    let mut h = blake3::Hasher::new();
                    let mut got = 0u64;
                    let p = stage.path().join(rel);
                    let mut delta = Vec::new();
                    let trailer = loop {
                        let frame = ch.recv_frame().await?;
                        match frame.split_first() {
                            Some((&TAG_DATA, data)) => {
                                h.update(data);
                                f.write_all(data).map_err(io_err("write", &p))?;
                                got += data.len() as u64;
                            }
                            Some((&TAG_DELTA, data)) => delta.extend_from_slice(data),
                            Some((&TAG_END, rest)) if rest.len() == 8 + 64 => {
                                let size = u64::from_be_bytes(rest[..8].try_into().expect("8"));
                                let hash = String::from_utf8_lossy(&rest[8..]).into_owned();
                                break Some(FileSum { size, hash });
                            }
                            Some((&TAG_GONE, _)) => break None,
                            _ => return Err(ch.err(format!("{rel}: unexpected frame"))),
                        }
                    };
                    if !delta.is_empty() {
                        let t = trailer
                            .as_ref()
                            .ok_or_else(|| ch.err(format!("{rel}: delta without a trailer")))?;
                        let base_p = current_dir
                            .as_ref()
                            .map(|c| c.join(rel))
                            .ok_or_else(|| ch.err(format!("{rel}: delta without a base")))?;
                        let base = fs::read(&base_p).map_err(io_err("read", &base_p))?;
                        let mut out = Vec::with_capacity(t.size as usize);
                        fast_rsync::apply_limited(&base, &delta, &mut out, t.size as usize)
                            .map_err(|e| SyncError::Mismatch {
                                path: PathBuf::from(rel),
                                message: format!("the delta does not apply: {e}"),
                            })?;
                        h.update(&out);
                        f.write_all(&out).map_err(io_err("write", &p))?;
                        got = out.len() as u64;
                        wire += delta.len() as u64;
                    }
                    drop(f);
                    match trailer {
                        None => {
                            // Deleted on the primary since its scan: not part of this copy.
                            fs::remove_file(&p).map_err(io_err("remove", &p))?;
                            final_m.entries.remove(rel);
                        }
                        Some(t) => {
                            let hash = h.finalize().to_hex().to_string();
                            if hash != t.hash || got != t.size {
                                return Err(SyncError::Mismatch {
                                    path: PathBuf::from(rel),
                                    message:
                                        "the received content differs from what the primary sent"
                                            .into(),
                                });
                            }
                            stage.finish(rel, e.mode)?;
                            if delta.is_empty() {
                                wire += t.size;
                            }
                            bytes += t.size;
                            files += 1;
                            if let Some(x) = final_m.entries.get_mut(rel) {
                                x.file = Some(t);
                            }
                        }
                    }
                }
            }
        }
        Ok::<_, SyncError>((bytes, wire, files))
    }
    .await;
    match result {
        Ok((bytes_changed, bytes_sent, files_sent)) => {
            let generation = store.commit(stage, &final_m)?;
            Ok(CopyReport {
                generation,
                bytes_changed,
                bytes_sent,
                files_sent,
            })
        }
        Err(e) => {
            let _ = remove_any(stage.path());
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "fo-sync-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn manifests_refuse_symlinks_and_name_them() {
        let d = tmp("refuse");
        fs::write(d.join("a"), b"x").unwrap();
        std::os::unix::fs::symlink("a", d.join("link")).unwrap();
        let e = Manifest::scan(&d).unwrap_err().to_string();
        assert!(e.contains("link") && e.contains("symlink"), "{e}");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn key_files_are_checked() {
        let d = tmp("key");
        let k = d.join("key");
        fs::write(&k, "00".repeat(32)).unwrap();
        fs::set_permissions(&k, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Key::load(&k).unwrap_err().to_string().contains("chmod 600"));
        fs::set_permissions(&k, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Key::load(&k).is_ok());
        fs::write(&k, "short").unwrap();
        assert!(Key::load(&k)
            .unwrap_err()
            .to_string()
            .contains("64 hex digits"));
        assert_eq!(format!("{:?}", Key::from_bytes([7; 32])), "Key(***)");
        fs::remove_dir_all(d).unwrap();
    }
}
