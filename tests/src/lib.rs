//! Support for the privileged tests (and `cargo xtask demo`): network namespaces, veth pairs,
//! private bpffs mounts and child processes, each a guard that cleans up on drop - also when a
//! test panics.
//!
//! Shelling out to `ip` is fine here: this is the test bench, not the daemon.
#![warn(missing_docs)]

pub mod bmc;
pub mod frames;
pub mod lab;
pub mod pair;

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Whether the effective uid (third field of `Uid:` in /proc/self/status) is 0; reading /proc
/// avoids a libc dependency for one call.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Panics with a clear message unless running as root.
pub fn require_root(test: &str) {
    assert!(
        is_root(),
        "{test} needs root (network namespaces, XDP, bpffs): run `cargo xtask test` as root"
    );
}

/// A short unique name: `{prefix}{pid % 10000}{n}`; interface names must fit in 15 bytes.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 10000)
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of the daemon's events and the XDP stamps, shared
/// by every namespace.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sends `sig` to every process in network namespace `ns` (SIGKILL: a power cut).
pub fn signal_namespace(ns: &str, sig: i32) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if let Ok(p) = pid.parse::<i32>() {
            // SAFETY: plain kill(2) of a process in a test namespace.
            unsafe {
                libc::kill(p, sig);
            }
        }
    }
}

/// Waits until no process is left in network namespace `ns` (a SIGKILLed process may take a
/// few milliseconds to release its sockets). Polls every millisecond; gives up after 10 s.
pub fn wait_namespace_empty(ns: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let out = Command::new("ip").args(["netns", "pids", ns]).output();
        if out.map_or(true, |o| o.stdout.iter().all(u8::is_ascii_whitespace)) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Runs a command to completion; panics with its stderr when it fails.
pub fn run<I, S>(program: &str, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let out = Command::new(program)
        .args(&args)
        .output()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {:?} failed: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates a namespace with a unique name starting with `prefix`, loopback up.
    pub fn new(prefix: &str) -> NetNs {
        let name = unique(prefix);
        run("ip", ["netns", "add", &name]);
        let ns = NetNs { name };
        ns.ip(["link", "set", "lo", "up"]);
        ns
    }

    /// Takes charge of the existing namespace `name` (deleted on drop).
    pub fn adopt(name: &str) -> NetNs {
        NetNs {
            name: name.to_string(),
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Path of the namespace file, for `nsenter --net=`.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// `ip -n NAME ARGS`, panicking on failure.
    pub fn ip<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all: Vec<std::ffi::OsString> = vec!["-n".into(), self.name.clone().into()];
        all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        run("ip", all)
    }

    /// A command that runs `program` inside the namespace (through nsenter, which unlike
    /// `ip netns exec` keeps /sys and so bpffs pins working).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display()));
        c.arg(program);
        c
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Plugs `host` into `bridge` in `sw`: a veth pair with `ifname` in `host` and `port` in `sw`,
/// the port enslaved to the bridge, both ends up (addresses are the caller's).
pub fn bridge_port(host: &NetNs, ifname: &str, sw: &NetNs, port: &str, bridge: &str) {
    run(
        "ip",
        [
            "link",
            "add",
            ifname,
            "netns",
            host.name(),
            "type",
            "veth",
            "peer",
            "name",
            port,
            "netns",
            sw.name(),
        ],
    );
    // "dev" spelled out: `ip link set ma ...` would read "ma" as an abbreviation of "master".
    sw.ip(["link", "set", "dev", port, "master", bridge, "up"]);
    host.ip(["link", "set", "dev", ifname, "up"]);
}

/// Creates a veth pair `a_if` in `a` and `b_if` in `b`, addresses them and brings them up.
/// Deleting either namespace deletes the pair.
pub fn veth(a: &NetNs, a_if: &str, a_addr: &str, b: &NetNs, b_if: &str, b_addr: &str) {
    run(
        "ip",
        [
            "link",
            "add",
            a_if,
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            b_if,
            "netns",
            b.name(),
        ],
    );
    for (ns, ifname, addr) in [(a, a_if, a_addr), (b, b_if, b_addr)] {
        // nodad: IPv6 duplicate address detection would delay the address by a second.
        let mut args = vec!["addr", "add", addr, "dev", ifname];
        if addr.contains(':') {
            args.push("nodad");
        }
        ns.ip(args);
        ns.ip(["link", "set", ifname, "up"]);
    }
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
/// executable (cargo xtask test builds it first).
pub fn failover_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FAILOVER_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/test-xxxx -> target/<profile>/failover
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let bin = profile_dir.join("failover");
    assert!(
        bin.exists(),
        "{} not found: build it first (`cargo xtask test` does) or set FAILOVER_BIN",
        bin.display()
    );
    bin
}

/// The last line of `stdout` parsed as JSON.
pub fn last_json_line(stdout: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("no output; stdout was {text:?}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("last line {line:?} is not JSON: {e}"))
}

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
