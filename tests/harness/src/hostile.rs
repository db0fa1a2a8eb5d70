//! Misbehaving clients for the tests of the daemon's listeners: a slow-loris client that keeps
//! its connections open and idle, and one that opens connections and holds them.
use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use crate::events::HANG_GUARD;

/// A client that keeps `N` connections open, sends one byte a second on each, reads and
/// discards what comes back, and reconnects (after 100 ms) whatever the daemon closes. Prints
/// `ready` once all are open and `closed K` at each close.
pub const LORIS: &str = r#"
import select, socket, sys, time
kind, target, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
src = sys.argv[4] if len(sys.argv) > 4 else ''
def connect():
    if kind == 'unix':
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(target)
    else:
        host, port = target.rsplit(':', 1)
        host = host.strip('[]')
        s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_STREAM)
        if src:
            s.bind((src, 0))
        s.settimeout(5)
        s.connect((host, int(port)))
    s.setblocking(False)
    return s
socks = [connect() for _ in range(n)]
print('ready', flush=True)
closed, last = 0, time.time()
while True:
    r, _, _ = select.select(socks, [], [], 0.1)
    for s in r:
        try:
            d = s.recv(65536)
        except OSError:
            d = b''
        if not d:
            socks.remove(s)
            s.close()
            closed += 1
            print('closed', closed, flush=True)
    if time.time() - last >= 1:
        last = time.time()
        for s in socks:
            try:
                s.send(b'G')
            except OSError:
                pass
    while len(socks) < n:
        time.sleep(0.1)
        try:
            socks.append(connect())
        except OSError as e:
            print('connect failed', e, flush=True)
            break
"#;

/// Opens `N` connections once, holds them without a byte, prints `ready`, and waits.
pub const HOLD: &str = r#"
import socket, sys, time
kind, target, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
held = []
for _ in range(n):
    if kind == 'unix':
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(target)
    else:
        host, port = target.rsplit(':', 1)
        s = socket.create_connection((host, int(port)), timeout=5)
    held.append(s)
print('ready', flush=True)
while True:
    time.sleep(3600)
"#;

/// A misbehaving client process; killed on drop.
pub struct Client {
    name: String,
    child: Child,
    /// Its output lines, and a wake-up for each new one.
    out: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Client {
    /// Runs `script` with `args` through `cmd` (python3 in some namespace); waits for `ready`.
    pub fn start(name: &str, mut cmd: Command, script: &str, args: &[&str]) -> Client {
        let mut child = cmd
            .args(["-c", script])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let out = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let (o, stdout) = (out.clone(), child.stdout.take().expect("stdout"));
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                o.0.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                o.1.notify_all();
            }
        });
        let c = Client {
            name: name.to_string(),
            child,
            out,
        };
        c.wait_for(|l| l == "ready", "ready");
        c
    }

    /// Waits (hang guard) for an output line for which `pred` holds.
    pub fn wait_for(&self, pred: impl Fn(&str) -> bool, what: &str) {
        let deadline = Instant::now() + HANG_GUARD;
        let mut lines = self.lines();
        while !lines.iter().any(|l| pred(l)) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{}: never printed {what}: {:?}",
                self.name,
                *lines
            );
            lines = self
                .out
                .1
                .wait_timeout(lines, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn lines(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.out.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connections the daemon closed so far.
    pub fn closed(&self) -> usize {
        self.lines()
            .iter()
            .filter(|l| l.starts_with("closed"))
            .count()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
