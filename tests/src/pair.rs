//! Two `failover run` daemons and a client on one bridge, each in its own network namespace,
//! with a `command` fence that really powers a host off: it kills every process in the host's
//! namespace, flushes its addresses and takes its link down.
//!
//! ```text
//!   ns A (eth0 .1) --\                      /-- ns client (eth0 .3)
//!                     pa -- br0 (ns sw) -- pc
//!   ns B (eth0 .2) --/ pb
//! ```
use std::{
    collections::HashMap,
    io::BufRead as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Condvar, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use serde_json::Value;

use crate::{failover_bin, unique, BpffsDir, ChildGuard, NetNs};

/// Addressing of the bench: IPv4 10.91.0.0/24 or IPv6 fd91::/64; hosts .1/.2, client .3,
/// P .100, M .101.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// Address number `n` of the bench subnet.
    pub fn addr(self, n: u8) -> String {
        match self {
            Family::V4 => format!("10.91.0.{n}"),
            Family::V6 => format!("fd91::{n}"),
        }
    }
    /// Prefix length.
    pub fn prefix(self) -> u8 {
        match self {
            Family::V4 => 24,
            Family::V6 => 64,
        }
    }
    /// `addr/prefix` of address number `n`.
    pub fn cidr(self, n: u8) -> String {
        format!("{}/{}", self.addr(n), self.prefix())
    }
    /// `ip addr add` arguments for `n` on eth0 (IPv6 without the kernel's DAD delay).
    fn add_args(self, n: u8) -> Vec<String> {
        let mut v: Vec<String> = ["addr", "add", &self.cidr(n), "dev", "eth0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if self == Family::V6 {
            v.push("nodad".into());
        }
        v
    }
}

/// A host of the pair.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// Node 1.
    A,
    /// Node 2.
    B,
}

impl Host {
    /// Lower-case name, as in the configs.
    pub fn name(self) -> &'static str {
        match self {
            Host::A => "a",
            Host::B => "b",
        }
    }
    /// The other host.
    pub fn other(self) -> Host {
        match self {
            Host::A => Host::B,
            Host::B => Host::A,
        }
    }
    fn octet(self) -> u8 {
        match self {
            Host::A => 1,
            Host::B => 2,
        }
    }
}

/// Per-host settings for the generated config.
#[derive(Clone, Debug)]
pub struct Options {
    /// Heartbeat kind ("udp" or "icmp").
    pub kind: &'static str,
    /// Fence script behaviour: true makes every `off` fail.
    pub fence_fails: bool,
    /// Extra TOML appended to the config (whole sections).
    pub extra: String,
    /// Address family of the bench.
    pub family: Family,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            kind: "udp",
            fence_fails: false,
            extra: String::new(),
            family: Family::V4,
        }
    }
}

/// Events of one host, across restarts, with a condition variable to wait on.
#[derive(Default)]
struct EventLog {
    events: Mutex<Vec<Value>>,
    cond: Condvar,
}

/// The whole bench; everything is torn down on drop.
pub struct Pair {
    /// The primary address.
    pub p: String,
    /// The monitor address.
    pub m: String,
    /// Address family.
    pub family: Family,
    /// Switch namespace (bridge br0).
    pub sw: NetNs,
    /// Client namespace.
    pub client: NetNs,
    hosts: HashMap<Host, NetNs>,
    daemons: Mutex<HashMap<Host, ChildGuard>>,
    logs: HashMap<Host, Arc<EventLog>>,
    /// Temporary directory with configs, scripts and logs.
    pub dir: PathBuf,
    _pins: BpffsDir,
    pins: PathBuf,
    watch_stop: Arc<AtomicBool>,
    watch: Option<JoinHandle<()>>,
    /// Samples in which both hosts held P.
    pub both_held_p: Arc<AtomicU64>,
    /// Samples taken by the watcher.
    pub samples: Arc<AtomicU64>,
}

const FENCE: &str = r#"#!/bin/sh
# Test fence: "powers off" the peer namespace. Logs every call.
. "$(dirname "$0")/fence-$FAILOVER_NODE.env"
echo "$1" >> "$LOG"
case "$1" in
  off)
    [ "$FAIL" = 1 ] && { echo "BMC unreachable (test)" >&2; exit 1; }
    ip netns pids "$NS" | xargs -r kill -9
    # Power is off once every process is gone, not when the signal is sent.
    while [ -n "$(ip netns pids "$NS")" ]; do sleep 0.005; done
    ip -n "$NS" link set eth0 down
    ip -n "$NS" addr flush dev eth0 scope global
    echo off > "$STATE" ;;
  on)
    [ "$FAIL" = 1 ] && exit 1
    ip -n "$NS" addr add $ADDR dev eth0
    ip -n "$NS" link set eth0 up
    echo on > "$STATE" ;;
  reboot)
    [ "$FAIL" = 1 ] && exit 1
    ip netns pids "$NS" | xargs -r kill -9
    while [ -n "$(ip netns pids "$NS")" ]; do sleep 0.005; done
    ip -n "$NS" addr flush dev eth0 scope global
    ip -n "$NS" addr add $ADDR dev eth0 ;;
  status) cat "$STATE" ;;
  *) exit 1 ;;
esac
"#;

const HOOK: &str = r#"#!/bin/sh
echo "$FAILOVER_HOOK $ROLE $EPOCH $PEER" >> "$(dirname "$0")/hooks-$FAILOVER_NODE.log"
echo "hook $FAILOVER_HOOK ran"
[ "$FAILOVER_HOOK" = on_fault ] && exit 3
exit 0
"#;

fn write_exec(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write script");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

impl Pair {
    /// Builds the namespaces, bridge, scripts and configs (daemons not started).
    pub fn new(opts: Options) -> Pair {
        crate::require_root("daemon pair");
        let sw = NetNs::new("fo-sw");
        sw.ip(["link", "add", "br0", "type", "bridge"]);
        sw.ip(["link", "set", "br0", "up"]);
        let a = NetNs::new("fo-ha");
        let b = NetNs::new("fo-hb");
        let client = NetNs::new("fo-hc");
        for (ns, port, octet) in [(&a, "pa", 1), (&b, "pb", 2), (&client, "pc", 3)] {
            crate::bridge_port(ns, "eth0", &sw, port, "br0");
            ns.ip(opts.family.add_args(octet));
        }
        let dir = std::env::temp_dir().join(unique("fo-pair-"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let pins_guard = BpffsDir::new();
        let pins = pins_guard.pins();
        write_exec(&dir.join("fence.sh"), FENCE);
        write_exec(&dir.join("hook.sh"), HOOK);
        let mut hosts = HashMap::new();
        hosts.insert(Host::A, a);
        hosts.insert(Host::B, b);
        let mut logs = HashMap::new();
        for h in [Host::A, Host::B] {
            logs.insert(h, Arc::new(EventLog::default()));
            let peer = h.other();
            let env = format!(
                "NS={}\nSTATE={}\nLOG={}\nADDR=\"{}{}\"\nFAIL={}\n",
                hosts[&peer].name(),
                dir.join(format!("power-{}", peer.name())).display(),
                dir.join(format!("fence-{}.log", h.name())).display(),
                opts.family.cidr(peer.octet()),
                if opts.family == Family::V6 {
                    " nodad"
                } else {
                    ""
                },
                u8::from(opts.fence_fails),
            );
            std::fs::write(dir.join(format!("fence-{}.env", h.name())), env).expect("env");
            std::fs::write(dir.join(format!("power-{}", h.name())), "on\n").expect("power");
            let cfg = format!(
                r#"join_timeout = "200ms"
startup_grace = "20s"
[node]
name = "{n}"
id = {id}
interface = "eth0"
address = "{addr}"
peer = "{peer}"
peer_name = "{pn}"
[addresses]
primary = "{pc}"
monitor = "{mc}"
[heartbeat]
kind = "{kind}"
[boot]
method = "command"
command = "{dir}/fence.sh"
timeout = "10s"
retry = "100ms"
retry_max = "400ms"
[hooks]
on_primary = "{dir}/hook.sh"
on_monitor = "{dir}/hook.sh"
on_fault = "{dir}/hook.sh"
[control]
socket = "{dir}/{n}.sock"
metrics = "127.0.0.1:9477"
[paths]
bpffs_dir = "{pins}-{n}"
state_dir = "{dir}/state-{n}"
{extra}"#,
                n = h.name(),
                id = h.octet(),
                addr = opts.family.cidr(h.octet()),
                peer = opts.family.addr(peer.octet()),
                pc = opts.family.cidr(100),
                mc = opts.family.cidr(101),
                pn = peer.name(),
                kind = opts.kind,
                dir = dir.display(),
                pins = pins.display(),
                extra = opts.extra,
            );
            std::fs::write(dir.join(format!("{}.toml", h.name())), cfg).expect("config");
        }
        let mut pair = Pair {
            p: opts.family.addr(100),
            m: opts.family.addr(101),
            family: opts.family,
            sw,
            client,
            hosts,
            daemons: Mutex::new(HashMap::new()),
            logs,
            dir,
            _pins: pins_guard,
            pins,
            watch_stop: Arc::new(AtomicBool::new(false)),
            watch: None,
            both_held_p: Arc::new(AtomicU64::new(0)),
            samples: Arc::new(AtomicU64::new(0)),
        };
        pair.start_watch();
        pair
    }

    /// The namespace of `h`.
    pub fn ns(&self, h: Host) -> &NetNs {
        &self.hosts[&h]
    }

    /// Replaces the `[boot]` section of `h`'s config with `section` (starting with `[boot]`).
    pub fn replace_boot(&self, h: Host, section: &str) {
        let path = self.config(h);
        let text = std::fs::read_to_string(&path).expect("config");
        let start = text.find("[boot]").expect("[boot] in config");
        let end = text.find("[hooks]").expect("[hooks] in config");
        let new = format!("{}{}\n{}", &text[..start], section.trim_end(), &text[end..]);
        std::fs::write(&path, new).expect("write config");
    }

    /// Path of `h`'s config.
    pub fn config(&self, h: Host) -> PathBuf {
        self.dir.join(format!("{}.toml", h.name()))
    }

    /// Starts (or restarts) `h`'s daemon with JSON logs; events are collected.
    pub fn start(&self, h: Host) {
        let mut cmd = self.ns(h).command(failover_bin());
        cmd.args(["--log-format", "json", "run", "--config"])
            .arg(self.config(h))
            .env("FAILOVER_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn failover run");
        let stderr = child.stderr.take().expect("piped");
        let log = self.logs[&h].clone();
        let tag = h.name();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("[{tag}] {line}");
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v.get("event").is_some() {
                        log.events.lock().unwrap().push(v);
                        log.cond.notify_all();
                    }
                }
            }
        });
        let old = self.daemons.lock().unwrap().insert(h, ChildGuard(child));
        drop(old);
    }

    /// Kills `h`'s daemon with SIGKILL (addresses stay, as after a crash).
    pub fn kill9(&self, h: Host) {
        if let Some(mut g) = self.daemons.lock().unwrap().remove(&h) {
            let _ = g.0.kill();
            let _ = g.0.wait();
        }
    }

    /// Stops `h`'s daemon with SIGTERM; returns its exit status.
    pub fn terminate(&self, h: Host) -> Option<std::process::ExitStatus> {
        let g = self.daemons.lock().unwrap().remove(&h)?;
        Some(g.terminate())
    }

    /// Number of events of `h` so far (a mark to wait from).
    pub fn mark(&self, h: Host) -> usize {
        self.logs[&h].events.lock().unwrap().len()
    }

    /// All events of `h`.
    pub fn events(&self, h: Host) -> Vec<Value> {
        self.logs[&h].events.lock().unwrap().clone()
    }

    /// Waits (hang guard 60 s) for an event of `h` after `since` named `name` for which `pred`
    /// holds; returns it.
    pub fn wait_event(
        &self,
        h: Host,
        since: usize,
        name: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let log = &self.logs[&h];
        let mut events = log.events.lock().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = events
                .iter()
                .skip(since)
                .find(|v| v["event"] == name && pred(v))
            {
                return v.clone();
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(
                !left.is_zero(),
                "host {} never emitted {name}; its events: {:#?}",
                h.name(),
                events
                    .iter()
                    .map(|v| format!("{} {} {}", v["event"], v["role"], v["detail"]))
                    .collect::<Vec<_>>()
            );
            events = log.cond.wait_timeout(events, left).unwrap().0;
        }
    }

    /// Waits for the next role change of `h` to `role`.
    pub fn wait_role(&self, h: Host, since: usize, role: &str) -> Value {
        self.wait_event(h, since, "role_changed", |v| v["role"] == role)
    }

    /// The lines of `h`'s fence log (what `h` asked of its peer's power).
    pub fn fence_log(&self, h: Host) -> Vec<String> {
        std::fs::read_to_string(self.dir.join(format!("fence-{}.log", h.name())))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The hook log of `h`.
    pub fn hook_log(&self, h: Host) -> Vec<String> {
        std::fs::read_to_string(self.dir.join(format!("hooks-{}.log", h.name())))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Whether `h` has `addr` on eth0.
    pub fn holds(&self, h: Host, addr: &str) -> bool {
        holds(self.ns(h).name(), addr)
    }

    /// MAC of `h`'s eth0.
    pub fn mac(&self, h: Host) -> String {
        let out = self.ns(h).ip(["-j", "link", "show", "eth0"]);
        let v: Value = serde_json::from_slice(&out.stdout).expect("ip -j");
        v[0]["address"].as_str().expect("address").to_string()
    }

    /// The client's neighbour entry for `addr`: (lladdr, state).
    pub fn client_neighbour(&self, addr: &str) -> Option<(String, String)> {
        let out = self.client.ip(["-j", "neigh", "show", addr, "dev", "eth0"]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        let e = v.get(0)?;
        Some((
            e["lladdr"].as_str()?.to_string(),
            e["state"][0].as_str().unwrap_or("").to_string(),
        ))
    }

    /// `h`'s Prometheus text, fetched inside its namespace.
    pub fn metrics(&self, h: Host) -> String {
        let out = self
            .ns(h)
            .command("python3")
            .args([
                "-c",
                "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9477/metrics',timeout=5).read().decode())",
            ])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "metrics of {}: {}",
            h.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Pings `addr` from the client once; whether it answered (1 s limit).
    pub fn client_ping(&self, addr: &str) -> bool {
        self.client
            .command("ping")
            .args(["-c", "1", "-W", "1", addr])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `failover status --json` of `h`.
    pub fn status(&self, h: Host) -> Value {
        let out = Command::new(failover_bin())
            .args(["status", "--json", "--socket"])
            .arg(self.dir.join(format!("{}.sock", h.name())))
            .output()
            .expect("failover status");
        assert!(
            out.status.success(),
            "status of {}: {}",
            h.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }

    /// Sets the switch port of `h` up or down (cutting or repairing its link).
    pub fn port(&self, h: Host, up: bool) {
        let port = match h {
            Host::A => "pa",
            Host::B => "pb",
        };
        self.sw
            .ip(["link", "set", port, if up { "up" } else { "down" }]);
    }

    /// Waits for both daemons to settle after a cold start; returns (primary, monitor).
    pub fn cold_start(&self) -> (Host, Host) {
        self.start(Host::A);
        self.start(Host::B);
        // One host becomes monitor (claim 12 at cold start), the other then hears it and
        // becomes primary (claim 11).
        let primary = loop {
            let ev = self.first_of_both("role_changed", |v| v["role"] == "primary");
            if let Some(h) = ev {
                break h;
            }
        };
        let monitor = primary.other();
        self.wait_role(monitor, 0, "monitor");
        (primary, monitor)
    }

    /// Starts B, waits until it is monitor, then A, which hears B at M and becomes primary:
    /// settled roles without the simultaneous cold start (see `cold_start`). Returns
    /// (primary, monitor) = (A, B).
    pub fn start_settled(&self) -> (Host, Host) {
        self.start(Host::B);
        self.wait_role(Host::B, 0, "monitor");
        self.start(Host::A);
        self.wait_role(Host::A, 0, "primary");
        (Host::A, Host::B)
    }

    fn first_of_both(&self, name: &str, pred: impl Fn(&Value) -> bool) -> Option<Host> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            for h in [Host::A, Host::B] {
                let log = &self.logs[&h];
                let events = log.events.lock().unwrap();
                if events.iter().any(|v| v["event"] == name && pred(v)) {
                    return Some(h);
                }
                let _ = log.cond.wait_timeout(events, Duration::from_millis(50));
            }
        }
        panic!("neither host emitted {name}");
    }

    fn start_watch(&mut self) {
        let (a, b) = (
            self.ns(Host::A).name().to_string(),
            self.ns(Host::B).name().to_string(),
        );
        let p = self.p.clone();
        let stop = self.watch_stop.clone();
        let both = self.both_held_p.clone();
        let samples = self.samples.clone();
        self.watch = Some(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if holds(&a, &p) && holds(&b, &p) {
                    both.fetch_add(1, Ordering::Relaxed);
                    eprintln!("[watch] BOTH HOSTS HOLD {p}");
                }
                samples.fetch_add(1, Ordering::Relaxed);
                // Sampling pace, leaving CPU to the daemons; not synchronisation.
                std::thread::sleep(Duration::from_millis(2));
            }
        }));
    }

    /// Stops the split-brain watcher and returns (samples, samples with two holders of P).
    pub fn stop_watch(&mut self) -> (u64, u64) {
        self.watch_stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.watch.take() {
            let _ = t.join();
        }
        (
            self.samples.load(Ordering::Relaxed),
            self.both_held_p.load(Ordering::Relaxed),
        )
    }

    /// The pin directory prefix (each host appends `-a` / `-b`).
    pub fn pins(&self) -> &Path {
        &self.pins
    }
}

fn holds(ns: &str, addr: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", ns, "-j", "addr", "show", "dev", "eth0"])
        .output();
    let Ok(out) = out else { return false };
    let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) else {
        return false;
    };
    v.get(0)
        .and_then(|l| l["addr_info"].as_array())
        .is_some_and(|a| a.iter().any(|i| i["local"] == addr))
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.stop_watch();
        // Kill daemons and any fence/hook children still in the host namespaces.
        self.daemons.lock().unwrap().clear();
        for ns in self.hosts.values() {
            if let Ok(out) = Command::new("ip")
                .args(["netns", "pids", ns.name()])
                .output()
            {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
