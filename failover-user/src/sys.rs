//! Small wrappers around the system calls the daemon needs before anything else.
use std::{
    ffi::CString,
    io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

/// `statfs` magic of a BPF filesystem.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Errors from the system setup steps.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    /// The process lacks capabilities.
    #[error("{what} needs {missing} (running as uid {uid}); run it as root, or grant them (packaging/failover.service does)")]
    MissingCaps {
        /// What needed them.
        what: String,
        /// The missing ones, each with why it is needed.
        missing: String,
        /// Effective uid.
        uid: u32,
    },
    /// No such interface.
    #[error("interface {0:?} not found")]
    NoInterface(String),
    /// A path operation failed.
    #[error("{what} {}", path.display())]
    Path {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// What a child's environment keeps of the daemon's: the search path, the locale and the
/// time zone. Nothing else: the daemon's environment may hold its BMC password
/// (`boot.password_env`) or whatever its service manager set.
pub const CHILD_ENV_KEPT: [&str; 4] = ["PATH", "LANG", "LC_ALL", "TZ"];

/// `PATH` for children when the daemon has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Starts `c`'s environment from scratch ([`CHILD_ENV_KEPT`]): every child of the daemon
/// (hooks, the fence command, the snapshot command) gets only that and what its caller adds.
pub fn scrub_env(c: &mut tokio::process::Command) -> &mut tokio::process::Command {
    c.env_clear();
    for k in CHILD_ENV_KEPT {
        if let Some(v) = std::env::var_os(k) {
            c.env(k, v);
        }
    }
    if std::env::var_os("PATH").is_none() {
        c.env("PATH", DEFAULT_PATH);
    }
    c
}

/// A Linux capability, with what it is needed for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Cap {
    /// Its number (`capability.h`).
    pub bit: u32,
    /// Its name.
    pub name: &'static str,
    /// What the daemon does with it.
    pub why: &'static str,
}

/// Addresses, routes and neighbours over netlink; attaching XDP; `arp_announce`.
pub const CAP_NET_ADMIN: Cap = Cap {
    bit: 12,
    name: "CAP_NET_ADMIN",
    why: "adding and removing P and M, attaching XDP",
};
/// AF_PACKET sockets (ARP and NDP frames) and raw ICMP.
pub const CAP_NET_RAW: Cap = Cap {
    bit: 13,
    name: "CAP_NET_RAW",
    why: "ARP / NDP frames and ICMP probes",
};
/// Loading BPF programs and maps.
pub const CAP_BPF: Cap = Cap {
    bit: 39,
    name: "CAP_BPF",
    why: "loading the XDP programs and their maps",
};
/// What the verifier allows privileged BPF programs only.
pub const CAP_PERFMON: Cap = Cap {
    bit: 38,
    name: "CAP_PERFMON",
    why: "the verifier's checks for privileged programs",
};
/// Before CAP_BPF and CAP_PERFMON (kernel 5.8) it covered both; it also mounts a bpffs.
const CAP_SYS_ADMIN: Cap = Cap {
    bit: 21,
    name: "CAP_SYS_ADMIN",
    why: "",
};

/// What the XDP fast path and the lease gate need.
pub const CAPS_XDP: &[Cap] = &[CAP_NET_ADMIN, CAP_BPF, CAP_PERFMON];
/// What `failover run` needs.
pub const CAPS_DAEMON: &[Cap] = &[CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF, CAP_PERFMON];

/// The effective capability set (`CapEff` of /proc/self/status); none when unreadable.
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// The capabilities of `caps` missing from `effective` (CAP_SYS_ADMIN stands in for CAP_BPF
/// and CAP_PERFMON, as before kernel 5.8).
fn missing_caps(effective: u64, caps: &[Cap]) -> Vec<Cap> {
    let has = |c: &Cap| effective & (1u64 << c.bit) != 0;
    caps.iter()
        .filter(|c| !has(c) && !((**c == CAP_BPF || **c == CAP_PERFMON) && has(&CAP_SYS_ADMIN)))
        .copied()
        .collect()
}

/// Fails unless the process holds `caps` (root holds them all, unless a bounding set took
/// them away). The error names each missing one and what it is for.
pub fn require_caps(what: &str, caps: &[Cap]) -> Result<(), SysError> {
    let missing = missing_caps(effective_caps(), caps);
    if missing.is_empty() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    Err(SysError::MissingCaps {
        what: what.to_string(),
        missing: missing
            .iter()
            .map(|c| format!("{} ({})", c.name, c.why))
            .collect::<Vec<_>>()
            .join(", "),
        uid,
    })
}

/// Raises RLIMIT_MEMLOCK to infinity; kernels before 5.11 charge BPF maps to it.
pub fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid pointer to an initialised struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "could not raise RLIMIT_MEMLOCK");
    }
}

/// The interface index of `name`.
pub fn if_index(name: &str) -> Result<u32, SysError> {
    let c = CString::new(name).map_err(|_| SysError::NoInterface(name.to_string()))?;
    // SAFETY: valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(SysError::NoInterface(name.to_string()));
    }
    Ok(idx)
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns()`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn path_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SysError + 'a {
    move |source| SysError::Path {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `path` lives on a BPF filesystem.
pub fn is_bpffs(path: &Path) -> Result<bool, SysError> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| SysError::Path {
        what: "statfs",
        path: path.to_path_buf(),
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    // SAFETY: zeroed statfs is a valid out-parameter.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(path_err("statfs", path)(io::Error::last_os_error()));
    }
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

/// Makes sure `dir` exists on a BPF filesystem, mounting one on its parent when needed.
///
/// With the default `/sys/fs/bpf/failover` this mounts bpffs on `/sys/fs/bpf` on systems that
/// do not mount it at boot.
pub fn ensure_bpffs_dir(dir: &Path) -> Result<(), SysError> {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).map_err(path_err("create directory", parent))?;
    if !is_bpffs(parent)? {
        let src = CString::new("bpf").expect("static string");
        let target = CString::new(parent.as_os_str().as_bytes()).map_err(|_| SysError::Path {
            what: "mount bpffs on",
            path: parent.to_path_buf(),
            source: io::Error::from(io::ErrorKind::InvalidInput),
        })?;
        // SAFETY: valid C strings; no mount data.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                src.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(path_err("mount bpffs on", parent)(
                io::Error::last_os_error(),
            ));
        }
        tracing::info!(path = %parent.display(), "mounted a bpffs");
    }
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(path_err("create pin directory", dir)(e)),
    }
}

/// Runs the calling thread (and threads it creates) under SCHED_FIFO at `priority`; processes
/// it forks go back to normal scheduling (SCHED_RESET_ON_FORK).
pub fn set_realtime(priority: u8) -> Result<(), io::Error> {
    let param = libc::sched_param {
        sched_priority: i32::from(priority),
    };
    // SAFETY: valid parameter struct; pid 0 is the calling thread.
    let rc = unsafe {
        libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the kernel source ARP requests on `interface` from the interface's own (primary)
/// address, never from a floating one (`arp_announce = 2`). While two hosts briefly hold
/// the same floating address (a cold-start race, a stale primary), a request sourced from it
/// would be dropped by the other holder as a martian, and every reply queued behind it (a join
/// answer, the answer of an address contest) would wait for seconds. Returns the old value
/// when it was changed. IPv4 only; the setting is per interface and per network namespace.
pub fn arp_announce_from_own_address(interface: &str) -> Result<Option<u8>, io::Error> {
    let path = format!("/proc/sys/net/ipv4/conf/{interface}/arp_announce");
    let old: u8 = std::fs::read_to_string(&path)?.trim().parse().unwrap_or(0);
    if old >= 2 {
        return Ok(None);
    }
    std::fs::write(&path, "2")?;
    Ok(Some(old))
}

/// Returns the heap's free memory to the kernel (`malloc_trim(0)`), after a burst of
/// allocations that are gone (loading an XDP object): resident memory then reflects what the
/// daemon keeps. Takes a moment; never on the heartbeat path.
pub fn trim_heap() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(test)]
mod caps_tests {
    use super::*;

    #[test]
    fn missing_capabilities_are_named_and_sys_admin_stands_in_for_bpf() {
        let all = (1u64 << 12) | (1 << 13) | (1 << 38) | (1 << 39);
        assert!(missing_caps(all, CAPS_DAEMON).is_empty());
        assert_eq!(
            missing_caps(1 << 12, CAPS_DAEMON),
            vec![CAP_NET_RAW, CAP_BPF, CAP_PERFMON]
        );
        let old_kernel = (1u64 << 12) | (1 << 13) | (1 << 21);
        assert!(missing_caps(old_kernel, CAPS_DAEMON).is_empty());
        assert_eq!(missing_caps(0, &[CAP_NET_ADMIN]), vec![CAP_NET_ADMIN]);
    }
}
