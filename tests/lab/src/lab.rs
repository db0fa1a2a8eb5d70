//! The failover lab (docs/lab.md): the two-host fixture plus a management network with a lab
//! BMC per host and the demo service and client, all network namespaces on one machine,
//! running the real `failover run`.
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
//! Everything is torn down on drop, also when a scenario panics or is interrupted.
use std::{
    io::BufRead as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use failover_harness::{
    bridge_port,
    config::Fence,
    netns::add_addr,
    pair::{Host, Names, Options, Pair},
    signal_namespace, NetNs,
};
use serde_json::Value;

/// Namespace prefix of every lab namespace (a leftover lab is found by it).
pub const PREFIX: &str = "fo-lab-";
/// The primary address.
pub const P: &str = "10.92.0.100";
/// The monitor address.
pub const M: &str = "10.92.0.101";
/// The demo service's UDP port on P.
pub const SERVICE_PORT: u16 = 8080;
/// The witness of the self-check: the client, a third host both hosts reach.
pub const WITNESS: &str = "10.92.0.3";

/// Set (by a Ctrl-C handler) to end a running scenario early; the lab still tears down.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether Ctrl-C was pressed (or SIGTERM came).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM (Ctrl-C, a `kill`, a CI timeout) to [`INTERRUPTED`] for the rest
/// of the process: a running lab or bench then finishes tearing down (its guards' drops run
/// as it unwinds) instead of dying with namespaces left behind.
pub fn catch_interrupts() {
    let handler = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, handler) };
    }
}

/// Sleeps for `d` in short steps; an error as soon as [`interrupted`].
pub fn pause(d: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + d;
    loop {
        if interrupted() {
            anyhow::bail!("interrupted");
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

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

/// The lab's two-host fixture on the service network (10.92.0.0/24, the `fo-lab-` names),
/// daemons not started: the failover lab runs `failover` (this binary) on it, the benches
/// their own programs.
pub fn topology(failover: Option<PathBuf>) -> Pair {
    Pair::new(Options {
        subnet: 92,
        names: Names::Fixed(PREFIX),
        watch: false,
        echo: false,
        failover,
        ..Options::default()
    })
}

/// The JSON lines of a log file (none when it does not exist; lines that do not parse are
/// skipped: the last one may be half written).
pub fn read_json_lines(path: &std::path::Path) -> Vec<Value> {
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
        .collect()
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
    /// The `failover-lab` binary (BMC, service, client).
    pub lab_bin: PathBuf,
    /// Print the lab directory and the generated configs once the lab is up.
    pub show_config: bool,
    /// `sync.every` in the generated configs (heartbeats between copies); 0: no `[sync]`.
    pub sync_every: u32,
    /// Wait a random time up to this long in steady state before the fault, so the fault
    /// lands anywhere in the copy cycle (the recovery-point benchmark). Zero in the demo.
    pub fault_jitter: Duration,
    /// `boot.fence = "lease"` with a lease witness on the service network (`failover
    /// witness`, 10.92.0.9) and `boot.lease = LEASE`; else `fence = "bmc"`, no lease.
    pub lease: bool,
    /// The lab BMCs' delay from a power-off request to the power cut and the Off report.
    pub bmc_off_delay: Duration,
}

/// `boot.lease` of the lab in lease mode.
pub const LEASE: &str = "30ms";

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
            lease: false,
            bmc_off_delay: Duration::ZERO,
        }
    }
}

/// A running lab.
pub struct Lab {
    pub(crate) opts: LabOptions,
    /// Hosts, switch, client, their configs and event logs.
    pub pair: Pair,
    /// Management namespace (the BMCs live here).
    pub mgmt: NetNs,
    /// BMCs, the client, fault processes: killed on drop.
    pub(crate) children: Vec<Child>,
    /// CLOCK_MONOTONIC ns when the fault was injected.
    pub fault_ns: Option<u64>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The BMCs first (a BMC powering a host on would start new processes), then every
        // process in every namespace; SIGKILL also ends frozen (SIGSTOPped) processes.
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.pair.sw, &self.pair.client, &self.mgmt] {
            signal_namespace(ns.name(), libc::SIGKILL);
        }
        for h in Host::BOTH {
            signal_namespace(self.pair.ns(h).name(), libc::SIGKILL);
        }
    }
}

/// The BMC address of `h` on the management network.
pub fn bmc_addr(h: Host) -> String {
    format!("10.92.1.1{}", h.octet())
}

impl Lab {
    /// Builds the topology and writes configs; starts the BMCs and the client, and boots both
    /// hosts at once: B becomes monitor and A (the preferred primary, hearing B at M) primary.
    pub fn start(opts: LabOptions) -> Lab {
        failover_harness::require_root("the failover lab");
        let left = leftovers();
        assert!(
            left.is_empty(),
            "a previous lab is still up (namespaces {}); remove them with `ip netns del NAME`",
            left.join(", ")
        );
        let pair = topology(Some(opts.failover.clone()));
        let mgmt = NetNs::named(&format!("{PREFIX}mgmt"));
        mgmt.ip(["link", "add", "brm", "type", "bridge"]);
        mgmt.ip(["link", "set", "brm", "up"]);
        for h in Host::BOTH {
            add_addr(&mgmt, "brm", &format!("{}/24", bmc_addr(h)));
            let port = format!("mg{}", h.name());
            bridge_port(pair.ns(h), "eth1", &mgmt, &port, "brm");
            add_addr(pair.ns(h), "eth1", &format!("10.92.1.{}/24", h.octet()));
        }
        let mut lab = Lab {
            opts,
            pair,
            mgmt,
            children: Vec::new(),
            fault_ns: None,
        };
        lab.write_secrets();
        for h in Host::BOTH {
            lab.configure(h);
            std::fs::create_dir_all(lab.control_dir(h)).expect("control dir");
        }
        if lab.opts.lease {
            lab.pair.with_lease_fence(LEASE);
        }
        for h in Host::BOTH {
            lab.spawn_bmc(h);
        }
        lab.spawn_client();
        // A real cold start: both hosts boot at once and settle by the protocol (A is the
        // preferred primary, B claims M first and A hears it there).
        let since = lab.pair.mark();
        lab.boot(Host::A);
        lab.boot(Host::B);
        lab.wait_event(Host::B, "role_changed", |v| v["role"] == "monitor", since);
        lab.wait_event(Host::A, "role_changed", |v| v["role"] == "primary", since);
        lab.wait_event(Host::B, "hook_ran", |_| true, since);
        lab
    }

    /// The lab directory (configs, logs, data).
    pub fn dir(&self) -> &std::path::Path {
        self.pair.dir.path()
    }

    /// The BMC password and the sync key, both for the two hosts.
    fn write_secrets(&self) {
        std::fs::write(self.pair.dir.join("bmc-password"), "lab-bmc-password\n").unwrap();
        let mut raw = [0u8; 32];
        use std::io::Read as _;
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut raw))
            .expect("random key");
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let key = self.pair.dir.join("sync-key");
        std::fs::write(&key, hex).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// `h`'s config: fenced through its peer's lab BMC, copying its data every
    /// `sync_every` heartbeats.
    fn configure(&self, h: Host) {
        let dir = self.pair.dir.path().to_path_buf();
        let peer = h.other();
        let (takeover, every) = (self.opts.takeover, self.opts.sync_every);
        self.pair.configure(h, |c| {
            c.comment = format!("Generated by the failover lab for host {}.", h.name());
            c.set("startup_grace", "\"10s\"");
            c.set("takeover", &takeover.to_string());
            // A is the service's usual home: it wins the cold start (both boot at once).
            if h == Host::A {
                c.set("preferred_primary", "true");
            }
            c.fence = Fence::Redfish {
                url: format!("http://{}:8000", bmc_addr(peer)),
                system: peer.name().into(),
                username: "lab".into(),
                password_file: dir.join("bmc-password"),
                // The lab BMC speaks plain HTTP on the management network.
                ca_file: None,
            };
            c.boot = "connect_timeout = \"1s\"\nrequest_timeout = \"5s\"\nretries = 0\n\
                      power_poll = \"10ms\"\nfence_timeout = \"10s\"\ntimeout = \"10s\"\n\
                      retry = \"250ms\"\nretry_max = \"2s\"\n"
                .into();
            c.hooks = "on_primary = \"/bin/true\"\non_monitor = \"/bin/true\"\n".into();
            c.metrics = Some("127.0.0.1:9477".into());
            c.extra = format!("[witness]\naddresses = [\"{WITNESS}\"]\n");
            c.sync = (every > 0).then(|| {
                format!(
                    "dir = {:?}\nevery = {every}\nkey_file = {:?}\n",
                    dir.join(format!("data-{}", h.name())).display().to_string(),
                    dir.join("sync-key").display().to_string(),
                )
            });
        });
    }

    pub(crate) fn control_dir(&self, h: Host) -> PathBuf {
        self.pair.dir.join(format!("control-{}", h.name()))
    }

    /// The shell command that starts `h`'s daemon in the background.
    fn daemon_command(&self, h: Host) -> String {
        format!(
            "nsenter --net={ns} {fo} --log-format json run --config {cfg} >/dev/null 2>>{fifo} </dev/null &",
            ns = self.pair.ns(h).path().display(),
            fo = self.opts.failover.display(),
            cfg = self.pair.config_path(h).display(),
            fifo = self.pair.event_fifo(h).display(),
        )
    }

    /// The shell command that "boots" host `h`: its daemon and the demo service.
    fn start_command(&self, h: Host) -> String {
        format!(
            "{} nsenter --net={ns} {lab} service --bind {P}:{SERVICE_PORT} --name {n} --data {dir}/data-{n} >/dev/null 2>&1 </dev/null &",
            self.daemon_command(h),
            ns = self.pair.ns(h).path().display(),
            dir = self.pair.dir.path().display(),
            n = h.name(),
            lab = self.opts.lab_bin.display(),
        )
    }

    /// Starts `h`'s daemon again (a restart; the host and its service keep running).
    pub fn start_daemon(&self, h: Host) {
        let st = Command::new("sh")
            .args(["-c", &self.daemon_command(h)])
            .status()
            .expect("start the daemon");
        assert!(st.success());
    }

    /// `h` becoming primary after `since_ns` (its `role_changed` event).
    pub fn primary_again(&self, h: Host, since_ns: u64) -> Value {
        self.wait_event(h, "role_changed", |v| v["role"] == "primary", since_ns)
    }

    /// `h`'s Prometheus text (from inside its namespace), if its daemon answers.
    pub fn metrics(&self, h: Host) -> Option<String> {
        self.pair.try_metrics(h).ok()
    }

    fn boot(&self, h: Host) {
        let st = Command::new("sh")
            .args(["-c", &self.start_command(h)])
            .status()
            .expect("boot host");
        assert!(st.success());
    }

    fn spawn_bmc(&mut self, h: Host) {
        let log = std::fs::File::create(self.pair.dir.join(format!("bmc-{}.log", h.name())))
            .expect("BMC log");
        let mut c = self.mgmt.command(&self.opts.lab_bin);
        c.args(["bmc", "--listen", &format!("{}:8000", bmc_addr(h))])
            .args(["--name", h.name(), "--ns", self.pair.ns(h).name()])
            .args(["--links", "eth0,eth1"])
            .args([
                "--addrs",
                &format!("eth0=10.92.0.{0}/24,eth1=10.92.1.{0}/24", h.octet()),
            ])
            .args(["--start", &self.start_command(h)])
            .args([
                "--boot-delay-ms",
                &self.opts.boot_delay.as_millis().to_string(),
            ])
            .args([
                "--off-delay-ms",
                &self.opts.bmc_off_delay.as_millis().to_string(),
            ])
            .arg("--control")
            .arg(self.control_dir(h))
            .stdout(log)
            .stderr(Stdio::null());
        self.children.push(c.spawn().expect("spawn lab bmc"));
    }

    fn spawn_client(&mut self) {
        let log = std::fs::File::create(self.pair.dir.join("client.log")).expect("client log");
        let mut c = self.pair.client.command(&self.opts.lab_bin);
        c.args(["client", "--target", &format!("{P}:{SERVICE_PORT}")])
            .args(["--interval-ms", "5"])
            .stdout(log)
            .stderr(Stdio::null());
        self.children.push(c.spawn().expect("spawn client"));
    }

    fn read_json(&self, file: &str) -> Vec<Value> {
        read_json_lines(&self.pair.dir.join(file))
    }

    /// Events of `h` (all its daemon runs).
    pub fn events(&self, h: Host) -> Vec<Value> {
        self.pair.events(h)
    }

    /// Power log of `h`'s BMC.
    pub fn bmc_log(&self, h: Host) -> Vec<Value> {
        self.read_json(&format!("bmc-{}.log", h.name()))
    }

    /// The client's answers.
    pub fn answers(&self) -> Vec<Value> {
        self.read_json("client.log")
    }

    /// Waits (hang guard) for an event of `h` named `name`, after `since_ns`, matching.
    pub fn wait_event(
        &self,
        h: Host,
        name: &str,
        pred: impl Fn(&Value) -> bool,
        since_ns: u64,
    ) -> Value {
        self.pair
            .wait_event_unless(h, since_ns, name, pred, interrupted)
    }

    /// Polls `f` (every 10 ms: the files it reads are written by other processes) until it
    /// yields, panicking with `what` after 60 s.
    pub fn wait_for<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + failover_harness::events::HANG_GUARD;
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(!interrupted(), "lab: interrupted while waiting for {what}");
            assert!(
                Instant::now() < deadline,
                "lab: never saw {what}; logs in {} (set FAILOVER_KEEP=1 to keep them)",
                self.dir().display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `failover status --json` of `h`, if its daemon answers.
    pub fn status(&self, h: Host) -> Option<Value> {
        self.pair.try_status(h)
    }

    /// The directory and configs, for `--show-config`.
    pub fn describe(&self) -> String {
        let mut s = format!("lab directory: {}\n", self.dir().display());
        for h in Host::BOTH {
            s.push_str(&format!(
                "--- {} ---\n{}",
                self.pair.config_path(h).display(),
                std::fs::read_to_string(self.pair.config_path(h)).unwrap_or_default()
            ));
        }
        s
    }
}
