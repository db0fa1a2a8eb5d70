//! The failover lab (docs/lab.md): two hosts with lab BMCs, a switch, a management network and
//! a client, all network namespaces on one machine, running the real `failover run`.
//!
//! ```text
//!            service network 10.92.0.0/24 (ns fo-lab-sw, bridge br0)
//!   A eth0 .1 ----pa--+                       +--pc---- client eth0 .3
//!   B eth0 .2 ----pb--+      P .100  M .101
//!
//!            management network 10.92.1.0/24 (ns fo-lab-mgmt, bridge brm)
//!   A eth1 .1 ---mga--+-- BMC of A 10.92.1.11:8000 (failover-lab bmc, in fo-lab-mgmt)
//!   B eth1 .2 ---mgb--+-- BMC of B 10.92.1.12:8000
//! ```
//!
//! Used by `cargo xtask demo` and by tests/tests/lab.rs. Everything is torn down on drop.
use std::{
    io::BufRead as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use crate::{mono_ns, run, signal_namespace, BpffsDir, NetNs};

/// Namespace prefix of every lab namespace (a leftover lab is found by it).
pub const PREFIX: &str = "fo-lab-";
/// The primary address.
pub const P: &str = "10.92.0.100";
/// The monitor address.
pub const M: &str = "10.92.0.101";
const SERVICE_PORT: u16 = 8080;

/// Fault kinds of `cargo xtask demo --fault`.
pub const FAULTS: &[&str] = &[
    "link", "oneway", "freeze", "kill9", "bmc-down", "bmc-slow", "loss", "cpu",
];

/// Set (by a Ctrl-C handler) to end a running scenario early; the lab still tears down.
pub static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Lab namespaces still present (from a lab that did not tear down).
pub fn leftovers() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output();
    out.map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(PREFIX))
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

fn named_ns(name: &str) -> NetNs {
    run("ip", ["netns", "add", name]);
    let ns = NetNs::adopt(name);
    ns.ip(["link", "set", "lo", "up"]);
    ns
}

/// Lab settings.
#[derive(Clone, Debug)]
pub struct LabOptions {
    /// `takeover` in both configs (false: recovery only).
    pub takeover: bool,
    /// Boot delay of the lab BMCs.
    pub boot_delay: Duration,
    /// The `failover` binary.
    pub failover: PathBuf,
    /// The `failover-lab` binary.
    pub lab_bin: PathBuf,
    /// Print the lab directory and the generated configs once the lab is up.
    pub show_config: bool,
    /// `sync.every` in the generated configs (heartbeats between copies).
    pub sync_every: u32,
    /// Wait a random time up to this long in steady state before the fault, so the fault
    /// lands anywhere in the copy cycle (the recovery-point benchmark). Zero in the demo.
    pub fault_jitter: Duration,
}

impl LabOptions {
    /// The defaults of the demo and the tests: takeover, 300 ms boot delay, a copy every 250
    /// heartbeats, no fault jitter.
    pub fn new(failover: PathBuf, lab_bin: PathBuf) -> LabOptions {
        LabOptions {
            takeover: true,
            boot_delay: Duration::from_millis(300),
            failover,
            lab_bin,
            show_config: false,
            sync_every: 250,
            fault_jitter: Duration::ZERO,
        }
    }
}

/// A running lab.
pub struct Lab {
    opts: LabOptions,
    /// Switch namespace.
    pub sw: NetNs,
    /// Management namespace (the BMCs live here).
    pub mgmt: NetNs,
    /// Host A.
    pub a: NetNs,
    /// Host B.
    pub b: NetNs,
    /// Client namespace.
    pub client: NetNs,
    /// Working directory: configs, logs, data.
    pub dir: PathBuf,
    _pins: BpffsDir,
    children: Vec<Child>,
    /// CLOCK_MONOTONIC ns when the fault was injected.
    pub fault_ns: Option<u64>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b, &self.client, &self.mgmt, &self.sw] {
            // SIGKILL also ends frozen (SIGSTOPped) processes.
            signal_namespace(ns.name(), libc::SIGKILL);
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::env::var_os("FAILOVER_LAB_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Which host.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Which {
    /// Host A.
    A,
    /// Host B.
    B,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::A => "a",
            Which::B => "b",
        }
    }
    fn octet(self) -> u8 {
        match self {
            Which::A => 1,
            Which::B => 2,
        }
    }
    fn other(self) -> Which {
        match self {
            Which::A => Which::B,
            Which::B => Which::A,
        }
    }
}

impl Lab {
    /// Builds the topology and writes configs; starts the BMCs and the client, and boots B
    /// then A, so that B becomes monitor and A (hearing B at M) primary.
    pub fn start(opts: LabOptions) -> Lab {
        crate::require_root("the failover lab");
        let left = leftovers();
        assert!(
            left.is_empty(),
            "a previous lab is still up (namespaces {}); remove them with `ip netns del NAME`",
            left.join(", ")
        );
        let sw = named_ns(&format!("{PREFIX}sw"));
        let mgmt = named_ns(&format!("{PREFIX}mgmt"));
        let a = named_ns(&format!("{PREFIX}a"));
        let b = named_ns(&format!("{PREFIX}b"));
        let client = named_ns(&format!("{PREFIX}client"));
        sw.ip(["link", "add", "br0", "type", "bridge"]);
        sw.ip(["link", "set", "br0", "up"]);
        mgmt.ip(["link", "add", "brm", "type", "bridge"]);
        mgmt.ip(["link", "set", "brm", "up"]);
        mgmt.ip(["addr", "add", "10.92.1.11/24", "dev", "brm"]);
        mgmt.ip(["addr", "add", "10.92.1.12/24", "dev", "brm"]);
        let link = |host: &NetNs, ifname: &str, sw_ns: &NetNs, port: &str, br: &str, addr: &str| {
            crate::bridge_port(host, ifname, sw_ns, port, br);
            host.ip(["addr", "add", addr, "dev", ifname]);
        };
        link(&a, "eth0", &sw, "pa", "br0", "10.92.0.1/24");
        link(&b, "eth0", &sw, "pb", "br0", "10.92.0.2/24");
        link(&client, "eth0", &sw, "pc", "br0", "10.92.0.3/24");
        link(&a, "eth1", &mgmt, "mga", "brm", "10.92.1.1/24");
        link(&b, "eth1", &mgmt, "mgb", "brm", "10.92.1.2/24");

        let dir = std::env::temp_dir().join(crate::unique("fo-lab-"));
        std::fs::create_dir_all(&dir).expect("lab dir");
        let pins = BpffsDir::new();
        std::fs::write(dir.join("bmc-password"), "lab-bmc-password\n").unwrap();
        let key = dir.join("sync-key");
        let mut raw = [0u8; 32];
        use std::io::Read as _;
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut raw))
            .expect("random key");
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(&key, hex).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut lab = Lab {
            opts,
            sw,
            mgmt,
            a,
            b,
            client,
            dir,
            _pins: pins,
            children: Vec::new(),
            fault_ns: None,
        };
        for h in [Which::A, Which::B] {
            lab.write_config(h, &lab._pins.pins());
            std::fs::create_dir_all(lab.dir.join(format!("control-{}", h.name()))).unwrap();
        }
        for h in [Which::A, Which::B] {
            lab.spawn_bmc(h);
        }
        lab.spawn_client();
        lab.boot(Which::B);
        lab.wait_event(Which::B, "role_changed", |v| v["role"] == "monitor", 0);
        lab.boot(Which::A);
        lab.wait_event(Which::A, "role_changed", |v| v["role"] == "primary", 0);
        lab.wait_event(Which::B, "hook_ran", |_| true, 0);
        lab
    }

    fn ns(&self, h: Which) -> &NetNs {
        match h {
            Which::A => &self.a,
            Which::B => &self.b,
        }
    }

    /// The generated config of `h`.
    pub fn config_path(&self, h: Which) -> PathBuf {
        self.dir.join(format!("{}.toml", h.name()))
    }

    fn write_config(&self, h: Which, pins: &Path) {
        let peer = h.other();
        let cfg = format!(
            r#"# Generated by the failover lab for host {n}.
join_timeout = "200ms"
startup_grace = "10s"
takeover = {takeover}
[node]
name = "{n}"
id = {id}
interface = "eth0"
address = "10.92.0.{id}/24"
peer = "10.92.0.{pid}"
peer_name = "{pn}"
[addresses]
primary = "{P}/24"
monitor = "{M}/24"
[heartbeat]
kind = "udp"
[boot]
method = "redfish"
url = "http://10.92.1.1{pid}:8000"
system = "{pn}"
username = "lab"
password_file = "{dir}/bmc-password"
insecure = true          # the lab BMC speaks plain HTTP on the management network
connect_timeout = "1s"
request_timeout = "5s"
retries = 0
power_poll = "10ms"
fence_timeout = "10s"
timeout = "10s"
retry = "250ms"
retry_max = "2s"
[hooks]
on_primary = "/bin/true"
on_monitor = "/bin/true"
[control]
socket = "{dir}/{n}.sock"
[paths]
bpffs_dir = "{pins}-{n}"
state_dir = "{dir}/state-{n}"
[sync]
dir = "{dir}/data-{n}"
every = {every}
key_file = "{dir}/sync-key"
"#,
            n = h.name(),
            id = h.octet(),
            pid = peer.octet(),
            pn = peer.name(),
            takeover = self.opts.takeover,
            every = self.opts.sync_every,
            dir = self.dir.display(),
            pins = pins.display(),
        );
        std::fs::write(self.config_path(h), cfg).expect("write config");
    }

    /// The shell command that "boots" host `h`: its daemon and the demo service.
    fn start_command(&self, h: Which) -> String {
        let ns = format!("/run/netns/{}", self.ns(h).name());
        format!(
            "nsenter --net={ns} {fo} --log-format json run --config {cfg} >/dev/null 2>>{dir}/events-{n}.log </dev/null & \
             nsenter --net={ns} {lab} service --bind {P}:{SERVICE_PORT} --name {n} --data {dir}/data-{n} >/dev/null 2>&1 </dev/null &",
            fo = self.opts.failover.display(),
            cfg = self.config_path(h).display(),
            dir = self.dir.display(),
            n = h.name(),
            lab = self.opts.lab_bin.display(),
        )
    }

    fn boot(&self, h: Which) {
        let st = Command::new("sh")
            .args(["-c", &self.start_command(h)])
            .status()
            .expect("boot host");
        assert!(st.success());
    }

    fn spawn_bmc(&mut self, h: Which) {
        let log = std::fs::File::create(self.dir.join(format!("bmc-{}.log", h.name()))).unwrap();
        let mut c = self.mgmt.command(&self.opts.lab_bin);
        c.args(["bmc", "--listen", &format!("10.92.1.1{}:8000", h.octet())])
            .args([
                "--name",
                h.name(),
                "--ns",
                self.ns(h).name(),
                "--links",
                "eth0,eth1",
            ])
            .args([
                "--addrs",
                &format!("eth0=10.92.0.{0}/24,eth1=10.92.1.{0}/24", h.octet()),
            ])
            .args(["--start", &self.start_command(h)])
            .args([
                "--boot-delay-ms",
                &self.opts.boot_delay.as_millis().to_string(),
            ])
            .arg("--control")
            .arg(self.dir.join(format!("control-{}", h.name())))
            .stdout(log)
            .stderr(Stdio::null());
        self.children.push(c.spawn().expect("spawn lab bmc"));
    }

    fn spawn_client(&mut self) {
        let log = std::fs::File::create(self.dir.join("client.log")).unwrap();
        let mut c = self.client.command(&self.opts.lab_bin);
        c.args([
            "client",
            "--target",
            &format!("{P}:{SERVICE_PORT}"),
            "--interval-ms",
            "5",
        ])
        .stdout(log)
        .stderr(Stdio::null());
        self.children.push(c.spawn().expect("spawn client"));
    }

    fn read_json(&self, file: &str) -> Vec<Value> {
        let Ok(f) = std::fs::File::open(self.dir.join(file)) else {
            return Vec::new();
        };
        std::io::BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
            .collect()
    }

    /// Events of `h` (all its daemon runs).
    pub fn events(&self, h: Which) -> Vec<Value> {
        self.read_json(&format!("events-{}.log", h.name()))
            .into_iter()
            .filter(|v| v.get("event").is_some())
            .collect()
    }

    /// Power log of `h`'s BMC.
    pub fn bmc_log(&self, h: Which) -> Vec<Value> {
        self.read_json(&format!("bmc-{}.log", h.name()))
    }

    /// The client's answers.
    pub fn answers(&self) -> Vec<Value> {
        self.read_json("client.log")
    }

    /// Waits (hang guard 60 s) for an event of `h` named `name`, after `since_ns`, matching.
    pub fn wait_event(
        &self,
        h: Which,
        name: &str,
        pred: impl Fn(&Value) -> bool,
        since_ns: u64,
    ) -> Value {
        self.wait_for(&format!("{name} on {}", h.name()), || {
            self.events(h).into_iter().find(|v| {
                v["event"] == name && v["ts_ns"].as_u64().unwrap_or(0) >= since_ns && pred(v)
            })
        })
    }

    /// Polls `f` (every 10 ms: the files it reads are written by other processes) until it
    /// yields, panicking with `what` after 60 s.
    pub fn wait_for<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                !INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst),
                "lab: interrupted while waiting for {what}"
            );
            assert!(
                Instant::now() < deadline,
                "lab: never saw {what}; logs in {} (set FAILOVER_LAB_KEEP=1 to keep them)",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `failover status --json` of `h`, if its daemon answers.
    pub fn status(&self, h: Which) -> Option<Value> {
        let out = Command::new(&self.opts.failover)
            .args(["status", "--json", "--socket"])
            .arg(self.dir.join(format!("{}.sock", h.name())))
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Injects `fault` on host `h` and records the time.
    pub fn inject(&mut self, h: Which, fault: &str) {
        let port = format!("p{}", h.name());
        let ns = self.ns(h).name().to_string();
        self.fault_ns = Some(mono_ns());
        match fault {
            "link" => {
                self.sw.ip(["link", "set", "dev", &port, "down"]);
            }
            "oneway" => nft(&self.sw, &format!(
                "table bridge fo_lab {{\n chain faults {{\n  type filter hook forward priority 0;\n  iifname \"{port}\" drop\n }}\n}}\n"
            )),
            "freeze" => signal_namespace(&ns, libc::SIGSTOP),
            "kill9" => {
                // Only the daemon: the host, its kernel and its service keep running. Found
                // among the host's processes by its arguments (the BMC's own command line
                // mentions the config too, but the BMC lives in the management namespace).
                let out = Command::new("ip").args(["netns", "pids", &ns]).output();
                for pid in out
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default()
                    .split_whitespace()
                {
                    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    if cmd.windows(11).any(|w| w == b"\0run\0--conf") {
                        if let Ok(p) = pid.parse::<i32>() {
                            // SAFETY: plain kill(2) of the lab host's daemon.
                            unsafe { libc::kill(p, libc::SIGKILL) };
                        }
                    }
                }
            }
            "bmc-down" => {
                self.sw.ip(["link", "set", "dev", &port, "down"]);
                self.mgmt
                    .ip(["addr", "del", &format!("10.92.1.1{}/24", h.octet()), "dev", "brm"])
                    ;
            }
            "bmc-slow" => {
                std::fs::write(self.dir.join(format!("control-{}/slow_ms", h.name())), "1000")
                    .unwrap();
                self.sw.ip(["link", "set", "dev", &port, "down"]);
            }
            "loss" => nft(&self.sw, &format!(
                "table bridge fo_lab {{\n chain faults {{\n  type filter hook forward priority 0;\n  iifname \"{port}\" numgen random mod 100 < 5 drop\n  oifname \"{port}\" numgen random mod 100 < 5 drop\n }}\n}}\n"
            )),
            "cpu" => {
                for _ in 0..2 {
                    let c = self
                        .ns(h)
                        .command("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .expect("cpu burner");
                    self.children.push(c);
                }
            }
            other => panic!("unknown fault {other:?}; one of {FAULTS:?}"),
        }
    }

    /// Undoes a fault that outlives a power cycle (a cut cable, a switch rule), as a
    /// technician would once the host is down; BMC faults are undone too.
    pub fn repair(&mut self, h: Which, fault: &str) {
        let port = format!("p{}", h.name());
        match fault {
            "link" | "bmc-slow" => {
                self.sw.ip(["link", "set", "dev", &port, "up"]);
            }
            "bmc-down" => {
                self.sw.ip(["link", "set", "dev", &port, "up"]);
                self.repair_bmc(h);
            }
            "oneway" | "loss" => {
                let _ = self
                    .sw
                    .command("nft")
                    .args(["delete", "table", "bridge", "fo_lab"])
                    .status();
            }
            _ => {}
        }
        let _ = std::fs::remove_file(self.dir.join(format!("control-{}/slow_ms", h.name())));
    }

    /// Makes `h`'s BMC reachable again (after `bmc-down`).
    pub fn repair_bmc(&mut self, h: Which) {
        let _ = self
            .mgmt
            .command("ip")
            .args([
                "addr",
                "add",
                &format!("10.92.1.1{}/24", h.octet()),
                "dev",
                "brm",
            ])
            .stderr(Stdio::null())
            .status();
    }

    /// Settled roles, from status.
    pub fn roles(&self) -> Value {
        let r = |h| {
            self.status(h)
                .map(|s| s["role"].clone())
                .unwrap_or(Value::Null)
        };
        json!({"a": r(Which::A), "b": r(Which::B)})
    }

    /// The directory and configs, for `--show-config`.
    pub fn describe(&self) -> String {
        let mut s = format!("lab directory: {}\n", self.dir.display());
        for h in [Which::A, Which::B] {
            s.push_str(&format!(
                "--- {} ---\n{}",
                self.config_path(h).display(),
                std::fs::read_to_string(self.config_path(h)).unwrap_or_default()
            ));
        }
        s
    }
}

fn nft(sw: &NetNs, rules: &str) {
    let mut c = sw
        .command("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft");
    use std::io::Write as _;
    c.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success(), "nft {rules}");
}

fn ts(v: &Value) -> u64 {
    v["ts_ns"].as_u64().unwrap_or(0)
}

fn ms_since(t0: u64, t: Option<u64>) -> Value {
    t.map_or(Value::Null, |t| {
        json!(((t as f64 - t0 as f64) / 1e6 * 10.0).round() / 10.0)
    })
}

/// Faults after which the primary is healthy: no failover may happen.
pub fn harmless(fault: &str) -> bool {
    matches!(fault, "loss" | "cpu")
}

/// Runs one scenario on a fresh lab and returns its report: `summary` (the contract fields)
/// and `timeline` (label, ms from the fault).
///
/// With takeover: steady state, the fault on A, detection, the fence through A's BMC, the
/// takeover by B, the client served by B, A powered on, A joining as monitor (claim 12).
/// Recovery only: B reboots A and stays monitor; A comes back as primary (claim 11).
/// `loss` and `cpu` leave the primary healthy: the scenario checks that nothing fails over.
pub fn scenario(opts: &LabOptions, fault: &str, harmless_for: Duration) -> Value {
    let mut lab = Lab::start(opts.clone());
    if opts.show_config {
        eprintln!("{}", lab.describe());
    }
    let answered_by = |lab: &Lab, host: &str, after: u64| {
        lab.answers()
            .into_iter()
            .find(|v| v["host"] == host && ts(v) > after)
    };
    // Steady state: A serves the client.
    let start = mono_ns();
    lab.wait_for("the client answered by a", || {
        let n = lab
            .answers()
            .iter()
            .filter(|v| v["host"] == "a" && ts(v) > start)
            .count();
        (n >= 50).then_some(())
    });
    // ... and B holds copies of A's data (claims 14, 21): two completed copies.
    let first = lab.wait_event(Which::B, "sync_done", |_| true, start);
    lab.wait_event(Which::B, "sync_done", |v| ts(v) > ts(&first), start);
    if !opts.fault_jitter.is_zero() {
        let ns = opts.fault_jitter.as_nanos() as u64;
        std::thread::sleep(Duration::from_nanos(mono_ns() % ns));
    }
    lab.inject(Which::A, fault);
    let t0 = lab.fault_ns.expect("fault time");
    let mut timeline: Vec<(String, Option<u64>)> = vec![("fault on a".into(), Some(t0))];
    let mut extra = json!({});
    if fault == "bmc-down" {
        // No confirmation, no takeover: two failed attempts, P unclaimed and unserved; then
        // the BMC comes back and the next attempt goes through.
        let failed_name = if opts.takeover {
            "fence_failed"
        } else {
            "boot_failed"
        };
        let f1 = lab.wait_event(Which::B, failed_name, |_| true, t0);
        lab.wait_event(Which::B, failed_name, |v| ts(v) > ts(&f1), t0);
        let claimed = lab.events(Which::B).iter().any(|v| {
            v["event"] == "address_claimed"
                && ts(v) > t0
                && v["detail"].as_str().unwrap_or("").contains("primary")
        });
        let served = lab.answers().iter().any(|v| v["host"] == "b" && ts(v) > t0);
        extra = json!({"takeover_while_bmc_down": claimed || served, "fence_failed_events": 2});
        timeline.push((format!("{failed_name} (BMC unreachable)"), Some(ts(&f1))));
        lab.repair_bmc(Which::A);
        timeline.push(("BMC of a reachable again".into(), Some(mono_ns())));
    }

    if harmless(fault) {
        // A fixed observation window: nothing may fail over during it.
        let until = Instant::now() + harmless_for;
        while Instant::now() < until && !INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let false_takeovers = lab
            .events(Which::B)
            .iter()
            .filter(|v| v["event"] == "primary_failed" && ts(v) > t0)
            .count();
        lab.repair(Which::A, fault);
        let answers_a = lab
            .answers()
            .iter()
            .filter(|v| v["host"] == "a" && ts(v) > t0)
            .count();
        let split = split_brain(&lab, t0);
        return json!({
            "summary": {
                "fault": fault, "takeover": opts.takeover, "false_takeovers": false_takeovers,
                "answers_from_a_during_fault": answers_a, "split_brain": split,
                "detect_ms": null, "fence_ms": null, "takeover_ms": null, "outage_ms": null,
                "final_roles": lab.roles(), "claim11": null, "claim12": null,
            },
            "timeline": [["fault on a", 0.0]],
        });
    }

    let a_off = |lab: &Lab| {
        lab.bmc_log(Which::A)
            .into_iter()
            .find(|v| v["power_state"] == "Off" && ts(v) > t0)
    };
    let (claim11, claim12, claimed_p);
    if opts.takeover {
        let claimed = lab.wait_event(
            Which::B,
            "address_claimed",
            |v| v["detail"].as_str().unwrap_or("").contains("primary"),
            t0,
        );
        claimed_p = Some(ts(&claimed));
        let off = lab.wait_for("a powered off by its BMC", || a_off(&lab));
        lab.repair(Which::A, fault);
        let first_b = lab.wait_for("an answer from b", || answered_by(&lab, "b", t0));
        timeline.push(("first client answer from b".into(), Some(ts(&first_b))));
        let on = lab.wait_for("a powered on", || {
            lab.bmc_log(Which::A)
                .into_iter()
                .find(|v| v["power_state"] == "On" && ts(v) > ts(&off))
        });
        let joined = lab.wait_event(
            Which::A,
            "role_changed",
            |v| v["role"] == "monitor",
            ts(&on),
        );
        let silent = lab
            .events(Which::A)
            .into_iter()
            .any(|v| v["event"] == "join_silent" && ts(&v) > ts(&on));
        claim12 = Some(silent && lab.status(Which::B).is_some_and(|s| s["role"] == "primary"));
        claim11 = None;
        timeline.push(("a powered on (BMC)".into(), Some(ts(&on))));
        timeline.push(("a joined as monitor (claim 12)".into(), Some(ts(&joined))));
    } else {
        let reboot = lab.wait_event(Which::B, "boot_requested", |v| v["detail"] == "reboot", t0);
        let off = lab.wait_for("a powered off by its BMC", || a_off(&lab));
        lab.repair(Which::A, fault);
        let primary = lab.wait_event(
            Which::A,
            "role_changed",
            |v| v["role"] == "primary",
            ts(&off),
        );
        let answered = lab
            .events(Which::A)
            .into_iter()
            .any(|v| v["event"] == "join_answered" && ts(&v) > ts(&off));
        let b_took = lab.events(Which::B).iter().any(|v| {
            v["event"] == "address_claimed"
                && ts(v) > t0
                && v["detail"].as_str().unwrap_or("").contains("primary")
        });
        claim11 = Some(answered && !b_took);
        claim12 = None;
        claimed_p = None;
        lab.wait_for("an answer from a after its reboot", || {
            answered_by(&lab, "a", ts(&primary))
        });
        timeline.push(("restart requested by b".into(), Some(ts(&reboot))));
        timeline.push(("a powered off (BMC)".into(), Some(ts(&off))));
        timeline.push(("a primary again (claim 11)".into(), Some(ts(&primary))));
    }
    // Let the client run a little past the end, to see any late answer from the old primary.
    std::thread::sleep(Duration::from_millis(300));

    let eb = lab.events(Which::B);
    let find = |name: &str, pred: &dyn Fn(&Value) -> bool| {
        eb.iter()
            .find(|v| v["event"] == name && ts(v) > t0 && pred(v))
            .map(ts)
    };
    let failed = find("primary_failed", &|_| true);
    let last_reply = eb
        .iter()
        .find(|v| v["event"] == "last_reply" && ts(v) > t0)
        .and_then(|v| v["at_ns"].as_u64());
    let fenced = find("fence_confirmed", &|_| true);
    let garp = find("garp_sent", &|v| {
        v["detail"].as_str().unwrap_or("").contains(P)
    });
    let off_sent = find("boot_requested", &|v| {
        v["detail"] == "off" || v["detail"] == "reboot"
    });
    let answers = lab.answers();
    let last_a = answers
        .iter()
        .filter(|v| {
            v["host"] == "a" && ts(v) <= t0 + 1_000_000_000 && ts(v) < failed.unwrap_or(u64::MAX)
        })
        .map(ts)
        .max();
    let first_new = answers
        .iter()
        .filter(|v| ts(v) > t0 && (v["host"] == "b" || !opts.takeover))
        .filter(|v| opts.takeover || ts(v) > failed.unwrap_or(0))
        .map(ts)
        .min();
    timeline.push(("last client answer from a".into(), last_a));
    timeline.push((
        "last heartbeat answered in time (XDP stamp on b)".into(),
        last_reply,
    ));
    timeline.push(("primary_failed (b)".into(), failed));
    if opts.takeover {
        timeline.push(("ForceOff sent (b)".into(), off_sent));
    }
    if opts.takeover {
        timeline.push(("Off confirmed (b)".into(), fenced));
        timeline.push(("P claimed (b)".into(), claimed_p));
        timeline.push(("GARP/NA burst done (b)".into(), garp));
    }
    timeline.sort_by_key(|(_, t)| t.unwrap_or(u64::MAX));
    let split = split_brain(&lab, t0);
    if opts.takeover {
        extra["sync"] = sync_report(&lab, t0, &answers);
    }
    let summary = json!({
        "fault": fault,
        "takeover": opts.takeover,
        "detect_ms": ms_since(t0, failed),
        "fence_ms": ms_since(t0, fenced),
        "takeover_ms": ms_since(t0, claimed_p),
        "outage_ms": match (last_a, first_new) {
            (Some(a), Some(b)) if b > a => json!(((b - a) as f64 / 1e5).round() / 10.0),
            _ => Value::Null,
        },
        "split_brain": split,
        "final_roles": lab.roles(),
        "claim11": claim11,
        "claim12": claim12,
    });
    let mut summary = summary;
    if let (Some(s), Some(e)) = (summary.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    let timeline: Vec<Value> = timeline
        .into_iter()
        .map(|(label, t)| json!([label, ms_since(t0, t)]))
        .collect();
    json!({"summary": summary, "timeline": timeline})
}

/// What the data copy achieved (claims 14, 21): copies B completed before the fault, the
/// generation it served, whether B's first answer continued from a counter value A had served
/// before B's last copy, and the recovery point (the time of A's updates lost).
fn sync_report(lab: &Lab, t0: u64, answers: &[Value]) -> Value {
    let done: Vec<Value> = lab
        .events(Which::B)
        .into_iter()
        .filter(|v| v["event"] == "sync_done" && ts(v) < t0)
        .collect();
    let generation = done.last().and_then(|v| {
        v["detail"]
            .as_str()?
            .strip_prefix("generation ")?
            .split(':')
            .next()?
            .parse::<u64>()
            .ok()
    });
    let first_b = answers
        .iter()
        .filter(|v| v["host"] == "b" && ts(v) > t0)
        .min_by_key(|v| ts(v));
    let copied = first_b.and_then(|v| v["counter"].as_u64()).map(|c| c - 1);
    let last_done = done.last().map(ts).unwrap_or(0);
    let from_a = copied.and_then(|c| {
        answers
            .iter()
            .find(|v| v["host"] == "a" && v["counter"].as_u64() == Some(c))
            .map(ts)
    });
    let last_a = answers
        .iter()
        .filter(|v| v["host"] == "a" && ts(v) <= t0)
        .map(ts)
        .max();
    let matches = from_a.is_some_and(|t| t <= last_done);
    json!({
        "copies": done.len(),
        "generation": generation,
        "rpo_ms": match (last_a, from_a) {
            (Some(l), Some(c)) if matches => json!(((l.saturating_sub(c)) as f64 / 1e5).round() / 10.0),
            _ => Value::Null,
        },
        "served_matches_copy": matches,
        "served_counter": first_b.and_then(|v| v["counter"].as_u64()),
    })
}

/// Split-brain violations seen by the client after `t0`: answers from A after the first answer
/// from B (interleaving), and answers from a host after its BMC reported it Off.
pub fn split_brain(lab: &Lab, t0: u64) -> u64 {
    let answers = lab.answers();
    let first_b = answers
        .iter()
        .filter(|v| v["host"] == "b" && ts(v) > t0)
        .map(ts)
        .min();
    let mut n = 0;
    for (host, which) in [("a", Which::A), ("b", Which::B)] {
        let log = lab.bmc_log(which);
        // "Off" is logged once every process of the host is dead: an answer after that came
        // from a host that was powered off. (While PoweringOff, the host still runs.)
        let offs: Vec<u64> = log
            .iter()
            .filter(|v| v["power_state"] == "Off")
            .map(ts)
            .collect();
        let ons: Vec<u64> = log
            .iter()
            .filter(|v| v["power_state"] == "PoweringOn")
            .map(ts)
            .collect();
        for v in answers.iter().filter(|v| v["host"] == host && ts(v) > t0) {
            let t = ts(v);
            // Powered off at t: the last Off before t with no PoweringOn between.
            let down = offs
                .iter()
                .filter(|o| **o < t)
                .max()
                .is_some_and(|o| !ons.iter().any(|on| on > o && *on < t));
            if down {
                n += 1;
            }
        }
    }
    // Interleaving: A answering after B took over, until A rebooted and before the next
    // takeover (A as primary again happens only in recovery-only mode, where B never answers).
    if let Some(fb) = first_b {
        let a_on = lab
            .bmc_log(Which::A)
            .iter()
            .filter(|v| v["power_state"] == "PoweringOn" && ts(v) > t0)
            .map(ts)
            .min()
            .unwrap_or(u64::MAX);
        n += answers
            .iter()
            .filter(|v| v["host"] == "a" && ts(v) > fb && ts(v) < a_on)
            .count() as u64;
    }
    n
}
