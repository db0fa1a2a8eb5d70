//! What a node's processes cost at steady state: CPU time over a window (from /proc, all
//! threads, exited ones included) and resident memory, with a per-thread breakdown.
use std::{collections::BTreeMap, time::Duration};

/// CPU time of `pid` so far (utime + stime of all its threads, dead ones included), in ns.
fn cpu_ns(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at state (field 3).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(ticks * 1_000_000_000 / hz)
}

/// On-CPU time of each live thread of `pid` (schedstat, ns), by thread name.
fn thread_ns(pid: i32) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in dir.flatten() {
        let p = t.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(p.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        *out.entry(comm.trim().to_string()).or_default() += ns;
    }
    out
}

/// Resident set of `pid`, KiB.
fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Proportional set of `pid`, KiB: its resident pages, each shared page divided among the
/// processes that map it (so the two processes of one node, or a binary's pages shared by two
/// daemons, are not counted twice).
fn pss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// One node's cost over a window.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Usage {
    /// CPU time over the window, percent of one core.
    pub cpu_pct: f64,
    /// CPU time over the window, ns.
    pub cpu_ns: u64,
    /// Resident memory at the end, MiB (summed over the processes: pages two of them share
    /// count twice).
    pub rss_mib: f64,
    /// Proportional set at the end, MiB (summed over the processes; shared pages divided).
    pub pss_mib: f64,
    /// Per thread name: percent of one core (live threads only).
    pub threads: BTreeMap<String, f64>,
}

/// One node's counters at one instant.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pids: Vec<i32>,
    cpu_ns: u64,
    threads: BTreeMap<String, u64>,
    at: std::time::Instant,
}

impl Snapshot {
    /// The counters of `pids` (one node's processes) now.
    pub fn take(pids: &[i32]) -> Snapshot {
        let mut threads: BTreeMap<String, u64> = BTreeMap::new();
        for p in pids {
            for (k, v) in thread_ns(*p) {
                *threads.entry(k).or_default() += v;
            }
        }
        Snapshot {
            pids: pids.to_vec(),
            cpu_ns: pids.iter().filter_map(|p| cpu_ns(*p)).sum(),
            threads,
            at: std::time::Instant::now(),
        }
    }

    /// The cost from this snapshot to now (the same processes).
    pub fn usage(&self) -> Usage {
        let now = Snapshot::take(&self.pids);
        let secs = now.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let pct = |ns: u64| ns as f64 / 1e9 / secs * 100.0;
        // The threads' own clocks are exact; the process totals come in clock ticks (10 ms),
        // rounded, but also count threads that ended in the window. The threads' sum, unless
        // the totals exceed it by more than their rounding (then threads ended).
        let threads = now
            .threads
            .values()
            .sum::<u64>()
            .saturating_sub(self.threads.values().sum::<u64>());
        let totals = now.cpu_ns.saturating_sub(self.cpu_ns);
        // SAFETY: sysconf has no preconditions.
        let tick_ns = 1_000_000_000 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let rounding = 2 * tick_ns * self.pids.len().max(1) as u64;
        let used = if totals > threads + rounding {
            totals
        } else {
            threads
        };
        Usage {
            cpu_ns: used,
            cpu_pct: pct(used),
            rss_mib: self.pids.iter().map(|p| rss_kib(*p)).sum::<u64>() as f64 / 1024.0,
            pss_mib: self.pids.iter().map(|p| pss_kib(*p)).sum::<u64>() as f64 / 1024.0,
            threads: now
                .threads
                .iter()
                .map(|(k, v)| {
                    let before = self.threads.get(k).copied().unwrap_or(0);
                    (k.clone(), pct(v.saturating_sub(before)))
                })
                .collect(),
        }
    }
}

/// The cost of each group of processes (one group per node) over the same `window`; an error
/// when Ctrl-C ends the window early.
pub fn measure(groups: &[Vec<i32>], window: Duration) -> anyhow::Result<Vec<Usage>> {
    let snaps: Vec<Snapshot> = groups.iter().map(|g| Snapshot::take(g)).collect();
    crate::lab::pause(window)?;
    Ok(snaps.iter().map(Snapshot::usage).collect())
}
