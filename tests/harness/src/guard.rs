//! Guards: things a test creates and must never leave behind, cleaned up on drop (also when
//! the test panics): temporary directories, private bpffs mounts, child processes.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use crate::unique;

/// A temporary directory, removed on drop unless `FAILOVER_KEEP` (or the lab's older
/// `FAILOVER_LAB_KEEP`) is set, to read its logs afterwards.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh directory under the system temp dir, its name starting with `prefix`.
    pub fn new(prefix: &str) -> TempDir {
        let d = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
        TempDir(d)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `path/name`.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("FAILOVER_KEEP").is_none()
            && std::env::var_os("FAILOVER_LAB_KEEP").is_none()
        {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Writes an executable script.
pub fn write_exec(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod 755");
}

/// A directory for pins on a private bpffs; unmounted and removed on drop.
#[derive(Debug)]
pub struct BpffsDir {
    root: PathBuf,
}

impl BpffsDir {
    /// A fresh directory; `pins()` is where the daemon should pin (it mounts the bpffs).
    pub fn new() -> BpffsDir {
        let root = std::env::temp_dir().join(unique("fo-bpffs-"));
        std::fs::create_dir_all(root.join("fs")).expect("create bpffs temp dir");
        BpffsDir { root }
    }

    /// The pin directory to hand to `--bpffs-dir`; its parent becomes a bpffs mount.
    pub fn pins(&self) -> PathBuf {
        self.root.join("fs").join("failover")
    }
}

impl Default for BpffsDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for BpffsDir {
    fn drop(&mut self) {
        let mnt = self.root.join("fs");
        // Unmount until nothing is mounted there (a test may have mounted twice).
        while Command::new("umount")
            .arg(&mnt)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {}
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A child process killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Sends SIGTERM and waits for the process; returns its output streams' remains.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.0.wait().expect("wait for child")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The `failover` binary: `$FAILOVER_BIN`, else `target/<profile>/failover` beside the test
/// Spawns `cmd` with piped stderr and waits until a stderr line contains `needle` (the
/// process's own "ready" log line). Panics if the process exits first or stays silent for 30 s
/// (a hang guard, not a timing assertion). Stderr keeps being drained in the background.
pub fn spawn_ready(mut cmd: Command, needle: &str) -> ChildGuard {
    use std::io::BufRead as _;
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            eprintln!("[child] {line}");
            let _ = tx.send(line);
        }
    });
    let guard = ChildGuard(child);
    loop {
        match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(line) if line.contains(needle) => return guard,
            Ok(_) => {}
            Err(e) => panic!("{cmd:?} never logged {needle:?}: {e}"),
        }
    }
}
