//! Network namespaces and the links between them.
use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::{run, unique};

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates a namespace with a unique name starting with `prefix`, loopback up.
    pub fn new(prefix: &str) -> NetNs {
        NetNs::named(&unique(prefix))
    }

    /// Creates the namespace `name` (which must not exist), loopback up.
    pub fn named(name: &str) -> NetNs {
        run("ip", ["netns", "add", name]);
        let ns = NetNs {
            name: name.to_string(),
        };
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

    /// Runs `f` on a thread that entered this namespace (sockets it opens and interfaces it
    /// names are this namespace's; sockets stay in it whichever thread uses them later).
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path();
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd as _;
            let ns = std::fs::File::open(&path).expect("open the namespace file");
            // SAFETY: a valid namespace fd; setns affects only this (short-lived) thread.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("the thread in the namespace")
    }

    /// A UDP socket bound to `addr` inside this namespace.
    pub fn udp_socket(&self, addr: std::net::SocketAddr) -> std::net::UdpSocket {
        self.run_in(move || std::net::UdpSocket::bind(addr).expect("bind in the namespace"))
    }

    /// Whether `addr` is configured on `dev` in this namespace.
    pub fn holds(&self, dev: &str, addr: &str) -> bool {
        holds(&self.name, dev, addr)
    }

    /// The MAC address of `dev`.
    pub fn mac(&self, dev: &str) -> String {
        let out = self.ip(["-j", "link", "show", dev]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j");
        v[0]["address"].as_str().expect("address").to_string()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Whatever still runs in it (a daemon, a frozen process, a hook) dies with it.
        signal_namespace(&self.name, libc::SIGKILL);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Whether `addr` is configured on `dev` in namespace `ns` (false when it cannot be read).
pub fn holds(ns: &str, dev: &str, addr: &str) -> bool {
    let Ok(out) = Command::new("ip")
        .args(["-n", ns, "-j", "addr", "show", "dev", dev])
        .output()
    else {
        return false;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return false;
    };
    v.get(0)
        .and_then(|l| l["addr_info"].as_array())
        .is_some_and(|a| a.iter().any(|i| i["local"] == addr))
}

/// The processes in network namespace `ns`.
pub fn namespace_pids(ns: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Sends `sig` to every process in network namespace `ns` (SIGKILL: a power cut).
pub fn signal_namespace(ns: &str, sig: i32) {
    for pid in namespace_pids(ns) {
        // SAFETY: plain kill(2) of a process in a test namespace.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Waits until no process is left in network namespace `ns` (a SIGKILLed process may take a
/// few milliseconds to release its sockets). Polls every millisecond; gives up after 10 s.
pub fn wait_namespace_empty(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !namespace_pids(ns).is_empty() {
        std::thread::sleep(Duration::from_millis(1));
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
        add_addr(ns, ifname, addr);
        ns.ip(["link", "set", ifname, "up"]);
    }
}

/// `ip addr add ADDR dev IF`; IPv6 without duplicate address detection, which would keep the
/// address tentative for a second.
pub fn add_addr(ns: &NetNs, ifname: &str, addr: &str) {
    let mut args = vec!["addr", "add", addr, "dev", ifname];
    if addr.contains(':') {
        args.push("nodad");
    }
    ns.ip(args);
}
