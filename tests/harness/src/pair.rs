//! The one two-host fixture: hosts A and B and a client on a switch, each a network
//! namespace, with a generated configuration per host, an event log per host, and, by
//! default, a `command` fence that really powers a host off (it kills every process in the
//! host's namespace, flushes its addresses and takes its link down). The lab (tests/lab)
//! builds on it with BMCs and a management network.
//!
//! ```text
//!   ns A (eth0 .1) --\                      /-- ns client (eth0 .3)
//!                     pa -- br0 (ns sw) -- pc
//!   ns B (eth0 .2) --/ pb                       P .100, M .101
//! ```
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Mutex,
    time::Duration,
};

use serde_json::Value;

use crate::{
    config::{Fence, HostConfig},
    events::EventLog,
    failover_bin,
    guard::write_exec,
    mono_ns,
    netns::{add_addr, bridge_port},
    scripts::{FENCE, HOOK},
    watch::Watcher,
    BpffsDir, ChildGuard, NetNs, TempDir,
};

/// Address family of the bench.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4: 10.N.0.0/24.
    V4,
    /// IPv6: fdN::/64.
    V6,
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
    /// Both hosts.
    pub const BOTH: [Host; 2] = [Host::A, Host::B];

    /// Lower-case name, as in the configs and events.
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

    /// The host's address number in the bench subnets (and its node id).
    pub fn octet(self) -> u8 {
        match self {
            Host::A => 1,
            Host::B => 2,
        }
    }

    /// 0 for a, 1 for b.
    pub fn index(self) -> usize {
        usize::from(self.octet() - 1)
    }
}

/// How the fixture names its namespaces.
#[derive(Clone, Debug)]
pub enum Names {
    /// Unique names (`fo-sw1234x0`, ...), so that tests never collide.
    Unique,
    /// `{prefix}sw`, `{prefix}a`, `{prefix}b`, `{prefix}client`: the lab's fixed names,
    /// which a leftover lab is found by.
    Fixed(&'static str),
}

/// Settings of the fixture.
#[derive(Clone, Debug)]
pub struct Options {
    /// Address family.
    pub family: Family,
    /// The subnet number N of 10.N.0.0/24 (or fdN::/64).
    pub subnet: u8,
    /// Namespace names.
    pub names: Names,
    /// `heartbeat.kind` ("udp" or "icmp").
    pub heartbeat: &'static str,
    /// The command fence fails every action (an unreachable BMC).
    pub fence_fails: bool,
    /// Seconds the command fence's `off` waits before it powers the peer off (a real BMC's
    /// delay; `sleep` syntax).
    pub off_delay: &'static str,
    /// Sample both hosts' addresses every 2 ms and count samples with P on both. It spawns
    /// `ip` twice per sample: the lab, which judges split brain from its client instead,
    /// leaves it off.
    pub watch: bool,
    /// Echo the daemons' log lines to stderr as `[a] ...`.
    pub echo: bool,
    /// The `failover` binary; default [`failover_bin`].
    pub failover: Option<PathBuf>,
    /// More environment for the daemons (a secret that must not reach their children).
    pub daemon_env: Vec<(&'static str, &'static str)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            family: Family::V4,
            subnet: 91,
            names: Names::Unique,
            heartbeat: "udp",
            fence_fails: false,
            off_delay: "0",
            watch: true,
            echo: true,
            failover: None,
            daemon_env: Vec::new(),
        }
    }
}

impl Options {
    /// The `failover` binary.
    pub fn failover(&self) -> PathBuf {
        self.failover.clone().unwrap_or_else(failover_bin)
    }

    /// Address number `n` of the bench subnet.
    pub fn addr(&self, n: u8) -> String {
        match self.family {
            Family::V4 => format!("10.{}.0.{n}", self.subnet),
            Family::V6 => format!("fd{}::{n}", self.subnet),
        }
    }

    /// Prefix length.
    pub fn prefix(&self) -> u8 {
        match self.family {
            Family::V4 => 24,
            Family::V6 => 64,
        }
    }

    /// `addr/prefix` of address number `n`.
    pub fn cidr(&self, n: u8) -> String {
        format!("{}/{}", self.addr(n), self.prefix())
    }
}

/// The whole bench; everything is torn down on drop.
pub struct Pair {
    /// The settings it was built with.
    pub opts: Options,
    /// The primary address.
    pub p: String,
    /// The monitor address.
    pub m: String,
    /// Switch namespace (bridge br0).
    pub sw: NetNs,
    /// Client namespace.
    pub client: NetNs,
    hosts: [NetNs; 2],
    configs: Mutex<[HostConfig; 2]>,
    logs: [EventLog; 2],
    daemons: Mutex<[Option<ChildGuard>; 2]>,
    watcher: Option<Watcher>,
    /// The lease witness (`with_witness`): its namespace and process.
    witness: Mutex<Option<(NetNs, Option<ChildGuard>)>>,
    /// Pins (each host appends `-a` / `-b`).
    pub pins: BpffsDir,
    /// Configs, scripts, logs, state; removed on drop unless FAILOVER_KEEP is set.
    pub dir: TempDir,
}

impl Pair {
    /// Builds the namespaces, bridge, scripts and configs (daemons not started).
    pub fn new(opts: Options) -> Pair {
        crate::require_root("the two-host fixture");
        let ns = |role: &str, unique_prefix: &str| match &opts.names {
            Names::Unique => NetNs::new(unique_prefix),
            Names::Fixed(prefix) => NetNs::named(&format!("{prefix}{role}")),
        };
        let sw = ns("sw", "fo-sw");
        sw.ip(["link", "add", "br0", "type", "bridge"]);
        sw.ip(["link", "set", "br0", "up"]);
        let a = ns("a", "fo-ha");
        let b = ns("b", "fo-hb");
        let client = ns("client", "fo-hc");
        for (host, port, n) in [(&a, "pa", 1), (&b, "pb", 2), (&client, "pc", 3)] {
            bridge_port(host, "eth0", &sw, port, "br0");
            add_addr(host, "eth0", &opts.cidr(n));
        }
        let dir = TempDir::new("fo-pair-");
        let pins = BpffsDir::new();
        write_exec(&dir.join("fence.sh"), FENCE);
        write_exec(&dir.join("hook.sh"), HOOK);
        let hosts = [a, b];
        for h in Host::BOTH {
            let peer = h.other();
            let env = format!(
                "NS={}\nSTATE={}\nLOG={}\nADDR=\"{}{}\"\nFAIL={}\nOFF_DELAY={}\n",
                hosts[peer.index()].name(),
                dir.join(format!("power-{}", peer.name())).display(),
                dir.join(format!("fence-{}.log", h.name())).display(),
                opts.cidr(peer.octet()),
                if opts.family == Family::V6 {
                    " nodad"
                } else {
                    ""
                },
                u8::from(opts.fence_fails),
                opts.off_delay,
            );
            std::fs::write(dir.join(format!("fence-{}.env", h.name())), env).expect("env");
            std::fs::write(dir.join(format!("power-{}", h.name())), "on\n").expect("power");
        }
        let configs = Host::BOTH.map(|h| Pair::default_config(&opts, &dir, &pins, h));
        let logs = Host::BOTH.map(|h| {
            EventLog::open(
                &dir.join(format!("events-{}.fifo", h.name())),
                h.name(),
                opts.echo,
            )
        });
        let (p, m) = (opts.addr(100), opts.addr(101));
        let watcher = opts.watch.then(|| {
            Watcher::start(
                hosts[0].name().to_string(),
                hosts[1].name().to_string(),
                p.clone(),
            )
        });
        let pair = Pair {
            p,
            m,
            sw,
            client,
            hosts,
            configs: Mutex::new(configs),
            logs,
            daemons: Mutex::new([None, None]),
            watcher,
            witness: Mutex::new(None),
            pins,
            dir,
            opts,
        };
        for h in Host::BOTH {
            pair.write_config(h);
        }
        pair
    }

    /// The default configuration of `h`: the command fence, the test hook for every hook,
    /// a metrics endpoint on the namespace's loopback.
    fn default_config(opts: &Options, dir: &TempDir, pins: &BpffsDir, h: Host) -> HostConfig {
        let peer = h.other();
        let hook = dir.join("hook.sh").display().to_string();
        HostConfig {
            comment: format!(
                "Generated by the failover test bench for host {}.",
                h.name()
            ),
            top: vec![
                ("join_timeout".into(), "\"200ms\"".into()),
                ("startup_grace".into(), "\"20s\"".into()),
            ],
            name: h.name().into(),
            id: u32::from(h.octet()),
            interface: "eth0".into(),
            address: opts.cidr(h.octet()),
            peer: opts.addr(peer.octet()),
            peer_name: peer.name().into(),
            primary: opts.cidr(100),
            primary_extra: Vec::new(),
            monitor: opts.cidr(101),
            heartbeat: opts.heartbeat,
            fence: Fence::Command(dir.join("fence.sh")),
            boot: "timeout = \"10s\"\nretry = \"100ms\"\nretry_max = \"400ms\"\n".into(),
            hooks: format!("on_primary = {hook:?}\non_monitor = {hook:?}\non_fault = {hook:?}\n"),
            socket: dir.join(format!("{}.sock", h.name())),
            metrics: Some("127.0.0.1:9477".into()),
            bpffs_dir: PathBuf::from(format!("{}-{}", pins.pins().display(), h.name())),
            state_dir: dir.join(format!("state-{}", h.name())),
            sync: None,
            extra: String::new(),
        }
    }

    /// The namespace of `h`.
    pub fn ns(&self, h: Host) -> &NetNs {
        &self.hosts[h.index()]
    }

    /// Path of `h`'s config file.
    pub fn config_path(&self, h: Host) -> PathBuf {
        self.dir.join(format!("{}.toml", h.name()))
    }

    /// `h`'s configuration.
    pub fn config(&self, h: Host) -> HostConfig {
        self.configs.lock().unwrap()[h.index()].clone()
    }

    /// Changes `h`'s configuration and rewrites its file (a running daemon is not told).
    pub fn configure(&self, h: Host, f: impl FnOnce(&mut HostConfig)) {
        f(&mut self.configs.lock().unwrap()[h.index()]);
        self.write_config(h);
    }

    fn write_config(&self, h: Host) {
        let text = self.configs.lock().unwrap()[h.index()].render();
        std::fs::write(self.config_path(h), text).expect("write config");
    }

    /// The FIFO `h`'s daemons log into (for boot commands that start the daemon themselves).
    pub fn event_fifo(&self, h: Host) -> &Path {
        self.logs[h.index()].fifo()
    }

    /// Starts (or restarts) `h`'s daemon with JSON logs into its event log.
    pub fn start(&self, h: Host) {
        let mut cmd = self.ns(h).command(self.opts.failover());
        cmd.args(["--log-format", "json", "run", "--config"])
            .arg(self.config_path(h))
            .env("FAILOVER_LOG", "info")
            .envs(self.opts.daemon_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.logs[h.index()].writer());
        let child = cmd.spawn().expect("spawn failover run");
        let old = self.daemons.lock().unwrap()[h.index()].replace(ChildGuard(child));
        drop(old);
    }

    /// Sends `sig` to `h`'s daemon (nsenter execs it: the child's pid is the daemon's).
    pub fn signal(&self, h: Host, sig: i32) {
        if let Some(g) = &self.daemons.lock().unwrap()[h.index()] {
            // SAFETY: plain kill(2) of a child this fixture started.
            unsafe { libc::kill(g.0.id() as i32, sig) };
        }
    }

    /// The pid of `h`'s daemon (nsenter execs it: the child's pid is the daemon's).
    pub fn pid(&self, h: Host) -> Option<u32> {
        self.daemons.lock().unwrap()[h.index()]
            .as_ref()
            .map(|g| g.0.id())
    }

    /// Whether `h`'s daemon is still running.
    pub fn running(&self, h: Host) -> bool {
        self.daemons.lock().unwrap()[h.index()]
            .as_mut()
            .is_some_and(|g| matches!(g.0.try_wait(), Ok(None)))
    }

    /// The pin directory of `h`'s fast path.
    pub fn pins_of(&self, h: Host) -> PathBuf {
        self.config(h).bpffs_dir
    }

    /// Kills `h`'s daemon with SIGKILL (addresses stay, as after a crash).
    pub fn kill9(&self, h: Host) {
        if let Some(mut g) = self.daemons.lock().unwrap()[h.index()].take() {
            let _ = g.0.kill();
            let _ = g.0.wait();
        }
    }

    /// Stops `h`'s daemon with SIGTERM; returns its exit status.
    pub fn terminate(&self, h: Host) -> Option<std::process::ExitStatus> {
        let g = self.daemons.lock().unwrap()[h.index()].take()?;
        Some(g.terminate())
    }

    /// Now, as a point to wait from: events stamped later count.
    pub fn mark(&self) -> u64 {
        mono_ns()
    }

    /// All events of `h`, across its daemon's runs.
    pub fn events(&self, h: Host) -> Vec<Value> {
        self.logs[h.index()].events()
    }

    /// Waits (hang guard) for an event of `h` stamped after `since` named `name` for which
    /// `pred` holds; returns it.
    pub fn wait_event(
        &self,
        h: Host,
        since: u64,
        name: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        self.logs[h.index()].wait(since, name, pred)
    }

    /// [`Pair::wait_event`], giving up (panicking) as soon as `abort` returns true.
    pub fn wait_event_unless(
        &self,
        h: Host,
        since: u64,
        name: &str,
        pred: impl Fn(&Value) -> bool,
        abort: impl Fn() -> bool,
    ) -> Value {
        self.logs[h.index()].wait_unless(since, name, pred, abort)
    }

    /// `h`'s log lines that are not events, received after `since`, for which `pred` holds.
    pub fn log_lines(&self, h: Host, since: u64, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.logs[h.index()].lines(since, pred)
    }

    /// Waits (hang guard) for a log line of `h` that is not an event, received after `since`,
    /// for which `pred` holds; `what` names it in the panic.
    pub fn wait_log(
        &self,
        h: Host,
        since: u64,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        self.logs[h.index()].wait_line(since, what, pred)
    }

    /// Whether `h` emitted `name` after `since` with `pred` holding.
    pub fn emitted(&self, h: Host, since: u64, name: &str, pred: impl Fn(&Value) -> bool) -> bool {
        self.logs[h.index()].any(since, name, pred)
    }

    /// Waits for a role change of `h` to `role` after `since`.
    pub fn wait_role(&self, h: Host, since: u64, role: &str) -> Value {
        self.wait_event(h, since, "role_changed", |v| v["role"] == role)
    }

    /// The lines of `h`'s fence log (what `h` asked of its peer's power).
    pub fn fence_log(&self, h: Host) -> Vec<String> {
        self.lines(&format!("fence-{}.log", h.name()))
    }

    /// The hook log of `h`.
    pub fn hook_log(&self, h: Host) -> Vec<String> {
        self.lines(&format!("hooks-{}.log", h.name()))
    }

    /// The environment `h`'s last hook (`"hook"`) or fence command (`"fence"`) ran with,
    /// one `NAME=value` a line (empty before the first run).
    pub fn child_env(&self, h: Host, child: &str) -> Vec<String> {
        self.lines(&format!("{child}-env-{}.txt", h.name()))
    }

    fn lines(&self, file: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Whether `h` has `addr` on eth0.
    pub fn holds(&self, h: Host, addr: &str) -> bool {
        self.ns(h).holds("eth0", addr)
    }

    /// MAC of `h`'s eth0.
    pub fn mac(&self, h: Host) -> String {
        self.ns(h).mac("eth0")
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

    /// `h`'s Prometheus text, fetched inside its namespace; panics when it does not answer.
    pub fn metrics(&self, h: Host) -> String {
        self.try_metrics(h)
            .unwrap_or_else(|e| panic!("metrics of {}: {e}", h.name()))
    }

    /// `h`'s Prometheus text, or why it could not be fetched.
    pub fn try_metrics(&self, h: Host) -> Result<String, String> {
        let out = self
            .ns(h)
            .command("/usr/bin/python3")
            .args([
                "-c",
                "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9477/metrics',timeout=5).read().decode())",
            ])
            .output()
            .map_err(|e| format!("python3: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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

    /// Asks `h`'s status until `pred` holds (the hang guard); returns it. For state that no
    /// event announces (the lease's first grant, say). Between asks it waits for `h`'s next
    /// log line, 20 ms at most.
    pub fn wait_status(&self, h: Host, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + crate::events::HANG_GUARD;
        loop {
            if let Some(st) = self.try_status(h).filter(|st| pred(st)) {
                return st;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{}: {what} never showed in its status",
                h.name()
            );
            self.logs[h.index()].wait_next(Duration::from_millis(20));
        }
    }

    /// Waits until `h` holds a lease with time left and the witness has granted it: its gate
    /// is attached (that happens after the claim of P, in the background), and the witness
    /// vouches for a revoke of it (before its first grant it answers `unproven`: the BMC
    /// path). Returns the status.
    pub fn wait_lease(&self, h: Host) -> Value {
        self.wait_status(h, "a lease granted by the witness", |st| {
            st["lease"]["active"] == true
                && st["lease"]["remaining_ms"].as_f64() > Some(0.0)
                && st["lease"]["witness_grant_age_ms"].as_f64().is_some()
        })
    }

    /// `failover status --json` of `h`, if its daemon answers.
    pub fn try_status(&self, h: Host) -> Option<Value> {
        let out = Command::new(self.opts.failover())
            .args(["status", "--json", "--socket"])
            .arg(self.config(h).socket)
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// `failover status --json` of `h`; panics when it does not answer.
    pub fn status(&self, h: Host) -> Value {
        self.try_status(h)
            .unwrap_or_else(|| panic!("status of {}: no answer", h.name()))
    }

    /// The switch port of `h`.
    pub fn port_name(h: Host) -> &'static str {
        match h {
            Host::A => "pa",
            Host::B => "pb",
        }
    }

    /// Sets the switch port of `h` up or down (cutting or repairing its link).
    pub fn port(&self, h: Host, up: bool) {
        self.sw.ip([
            "link",
            "set",
            "dev",
            Pair::port_name(h),
            if up { "up" } else { "down" },
        ]);
    }

    /// Both hosts copy `data-{a,b}` (under the pair's directory) every 50 heartbeats (100 ms)
    /// with a shared key, and `extra` `[sync]` settings; the snapshot command fails while
    /// `fail-snapshot` exists there. Returns the data directory of each host.
    pub fn with_sync(&self, extra: &str) -> [PathBuf; 2] {
        let key = self.dir.join("sync.key");
        std::fs::write(&key, "cd".repeat(32)).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let flag = self.dir.join("fail-snapshot");
        Host::BOTH.map(|h| {
            let data = self.dir.join(format!("data-{}", h.name()));
            std::fs::create_dir_all(&data).unwrap();
            self.configure(h, |c| {
                c.sync = Some(format!(
                    "dir = \"{}\"\nevery = 50\nkey_file = \"{}\"\n\
                     snapshot_command = \"if [ -e {} ]; then echo snapshot refused >&2; exit 4; fi\"\n{extra}",
                    data.display(),
                    key.display(),
                    flag.display()
                ))
            });
            data
        })
    }

    /// A lease witness (`failover witness`) on the switch at host number 9, and both hosts
    /// configured with `boot.lease = lease` and the witness (`extra` more `[witness]` lines).
    /// The witness is started; `witness_stop` / `witness_start` stop and start it again.
    pub fn with_witness(&self, lease: &str) {
        let ns = NetNs::new("fo-hw");
        bridge_port(&ns, "eth0", &self.sw, "pw", "br0");
        add_addr(&ns, "eth0", &self.opts.cidr(9));
        let key = self.dir.join("lease.key");
        std::fs::write(&key, "ab".repeat(32)).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let listen = match self.opts.family {
            Family::V4 => format!("{}:5405", self.opts.addr(9)),
            Family::V6 => format!("[{}]:5405", self.opts.addr(9)),
        };
        std::fs::write(
            self.dir.join("witness.toml"),
            format!(
                "[witness]\nlisten = {listen:?}\nkey_file = {:?}\npeers = [{:?}, {:?}]\n\
                 state_dir = {:?}\ncontrol_socket = {:?}\n",
                key.display().to_string(),
                self.opts.addr(1),
                self.opts.addr(2),
                self.dir.join("witness-state").display().to_string(),
                self.dir.join("witness.sock").display().to_string(),
            ),
        )
        .unwrap();
        for h in Host::BOTH {
            self.configure(h, |c| {
                c.boot.push_str(&format!("lease = {lease:?}\n"));
                let lines = format!(
                    "lease_peer = {listen:?}\nlease_key_file = {:?}\n",
                    key.display().to_string()
                );
                // Into the `[witness]` table the config may have already (the lab's).
                c.extra = match c.extra.split_once("[witness]\n") {
                    Some((before, after)) => format!("{before}[witness]\n{lines}{after}"),
                    None => format!("{}[witness]\n{lines}", c.extra),
                };
            });
        }
        *self.witness.lock().unwrap() = Some((ns, None));
        self.witness_start();
    }

    /// [`Pair::with_witness`] with `boot.fence = "lease"` on both hosts: a takeover waits for
    /// the lease, not for the fence command's `off`.
    pub fn with_lease_fence(&self, lease: &str) {
        for h in Host::BOTH {
            self.configure(h, |c| c.boot.push_str("fence = \"lease\"\n"));
        }
        self.with_witness(lease);
    }

    /// Starts the witness (its log lines go to host A's event log, tagged by their node).
    pub fn witness_start(&self) {
        let mut w = self.witness.lock().unwrap();
        let Some((ns, child)) = w.as_mut() else {
            panic!("no witness: call with_witness first");
        };
        drop(child.take());
        let c = ns
            .command(self.opts.failover())
            .args(["--log-format", "json", "witness", "--config"])
            .arg(self.dir.join("witness.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("witness.log")).unwrap())
            .spawn()
            .expect("spawn failover witness");
        *child = Some(ChildGuard(c));
    }

    /// Stops the witness (SIGKILL: as a crash).
    pub fn witness_stop(&self) {
        if let Some((_, child)) = self.witness.lock().unwrap().as_mut() {
            drop(child.take());
        }
    }

    /// Isolates `h`'s switch port (bridge port isolation: its carrier stays up, but it hears
    /// no other isolated port) or joins it again.
    pub fn isolate(&self, h: Host, on: bool) {
        let out = self
            .sw
            .command("bridge")
            .args(["link", "set", "dev", Pair::port_name(h), "isolated"])
            .arg(if on { "on" } else { "off" })
            .output()
            .expect("bridge");
        assert!(out.status.success(), "bridge link set isolated: {out:?}");
    }

    /// Starts both daemons at once and waits for them to settle; returns (primary, monitor).
    pub fn cold_start(&self) -> (Host, Host) {
        let since = self.mark();
        self.start(Host::A);
        self.start(Host::B);
        // One host becomes monitor (claim 12 at cold start), the other then hears it and
        // becomes primary (claim 11). Whichever does first.
        let deadline = std::time::Instant::now() + crate::events::HANG_GUARD;
        let primary = loop {
            if let Some(h) = Host::BOTH
                .into_iter()
                .find(|h| self.emitted(*h, since, "role_changed", |v| v["role"] == "primary"))
            {
                break h;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "neither host became primary"
            );
            // Either host may be the one: listen on each in turn for its next event.
            for h in Host::BOTH {
                self.logs[h.index()].wait_next(Duration::from_millis(50));
            }
        };
        let monitor = primary.other();
        self.wait_role(monitor, since, "monitor");
        (primary, monitor)
    }

    /// Stops the split-brain watcher and returns (samples, samples with two holders of P).
    pub fn stop_watch(&mut self) -> (u64, u64) {
        self.watcher.as_mut().map_or((0, 0), Watcher::finish)
    }

    /// Stops the split-brain watcher and asserts that it sampled, and never saw P on both
    /// hosts.
    pub fn assert_no_split_brain(&mut self) {
        let (samples, both) = self.stop_watch();
        eprintln!("watcher: {samples} samples, {both} with P on both hosts");
        assert!(samples > 0, "the watcher sampled");
        assert_eq!(
            both, 0,
            "P was held by both hosts in {both} of {samples} samples"
        );
    }

    /// Samples so far in which both hosts held P.
    pub fn both_held_p(&self) -> u64 {
        self.watcher.as_ref().map_or(0, Watcher::both)
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.stop_watch();
        if let Some((_, w)) = self.witness.lock().unwrap().as_mut() {
            drop(w.take());
        }
        self.daemons
            .lock()
            .unwrap()
            .iter_mut()
            .for_each(|d| drop(d.take()));
        // The namespaces kill what is left in them (fence and hook children, frozen
        // processes) when they are deleted.
    }
}
