//! The faults of `cargo xtask demo --fault`, injected on a lab host and repaired afterwards.
use std::process::Stdio;

use failover_harness::{mono_ns, namespace_pids, pair::Host, signal_namespace, NetNs};

use crate::lab::{bmc_addr, Lab};

/// A fault on the primary.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Its switch port goes down (a cut cable).
    Link,
    /// The switch drops everything it sends (a one-way partition).
    Oneway,
    /// Every process on it is frozen (SIGSTOP); the kernel still answers ICMP and ARP.
    Freeze,
    /// Its daemon is killed (SIGKILL); the host, its kernel and its service keep running.
    Kill9,
    /// Its link is cut and its BMC is unreachable; the BMC comes back later.
    BmcDown,
    /// Its link is cut and its BMC answers every request a second late.
    BmcSlow,
    /// 5 % of its frames are lost each way (the primary stays healthy).
    Loss,
    /// Both cores are saturated on it (the primary stays healthy).
    Cpu,
    /// The *monitor's* switch port goes down for a while: the primary is healthy, the monitor
    /// is the one cut off and must not fence it.
    MonitorLink,
    /// The witness stops answering ICMP, then the primary's link is cut: the monitor cannot
    /// show it is not the isolated one, so no fence until the witness answers again.
    WitnessDown,
    /// A planned restart of the primary's daemon (SIGTERM, start again): a handover, no fence.
    Restart,
    /// The primary's link is cut with its BMC unreachable, then the link comes back before
    /// the BMC does: the pending fence is cancelled, nothing is powered off.
    BmcFlap,
    /// A data directory large enough that each copy takes a long while, copied continuously
    /// (the primary stays healthy).
    CopyLoad,
    /// Everything it sends is lost at the switch (a one-way partition) and its BMC lies: it
    /// reports Off without powering the host off. The "fenced" primary runs on, holding P,
    /// still hearing the segment, and must step down when the new primary takes P.
    BmcLies,
}

impl Fault {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Link => "link",
            Fault::Oneway => "oneway",
            Fault::Freeze => "freeze",
            Fault::Kill9 => "kill9",
            Fault::BmcDown => "bmc-down",
            Fault::BmcSlow => "bmc-slow",
            Fault::Loss => "loss",
            Fault::Cpu => "cpu",
            Fault::MonitorLink => "monitor-link",
            Fault::WitnessDown => "witness-down",
            Fault::Restart => "restart",
            Fault::BmcFlap => "bmc-flap",
            Fault::CopyLoad => "copy-load",
            Fault::BmcLies => "bmc-lies",
        }
    }

    /// Faults after which the primary is healthy: nothing may fail over, and the generic
    /// observation window of the scenario applies.
    pub fn harmless(self) -> bool {
        matches!(self, Fault::Loss | Fault::Cpu)
    }

    /// The faults that test what must never cause a fence of a healthy primary (they have
    /// scenarios of their own, in `safety`).
    pub fn safety(self) -> bool {
        matches!(
            self,
            Fault::MonitorLink
                | Fault::WitnessDown
                | Fault::Restart
                | Fault::BmcFlap
                | Fault::CopyLoad
                | Fault::BmcLies
        )
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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

/// The `loss` fault's switch rule: 5 % of the frames from and to switch port `port` dropped.
pub(crate) fn loss_rule(port: &str) -> String {
    format!(
        "iifname \"{port}\" numgen random mod 100 < 5 drop\n  oifname \"{port}\" numgen random mod 100 < 5 drop"
    )
}

/// The `cpu` fault: two busy loops in `ns` (both cores of the lab machine), to be killed by
/// the caller.
pub(crate) fn burn_cpu(ns: &NetNs) -> std::io::Result<Vec<std::process::Child>> {
    (0..2)
        .map(|_| ns.command("sh").args(["-c", "while :; do :; done"]).spawn())
        .collect()
}

/// An nft bridge table `fo_lab` on the switch with one forward rule.
pub(crate) fn switch_rule(sw: &NetNs, rule: &str) {
    nft(
        sw,
        &format!(
            "table bridge fo_lab {{\n chain faults {{\n  type filter hook forward priority 0;\n  {rule}\n }}\n}}\n"
        ),
    );
}

/// The pids of the daemon in namespace `ns`: found among the host's processes by their
/// arguments (the BMC's own command line mentions the config too, but the BMC lives in the
/// management namespace).
pub fn daemon_pids(ns: &str) -> Vec<i32> {
    namespace_pids(ns)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .windows(11)
                .any(|w| w == b"\0run\0--conf")
        })
        .collect()
}

/// Sends `sig` to the daemon in namespace `ns` (only the daemon: the host, its kernel and its
/// service keep running).
fn signal_daemon(ns: &str, sig: i32) {
    for pid in daemon_pids(ns) {
        // SAFETY: plain kill(2) of the lab host's daemon.
        unsafe { libc::kill(pid, sig) };
    }
}

impl Lab {
    /// Injects `fault` on host `h` and records the time.
    pub fn inject(&mut self, h: Host, fault: Fault) {
        let port = failover_harness::pair::Pair::port_name(h);
        let ns = self.pair.ns(h).name().to_string();
        self.fault_ns = Some(mono_ns());
        match fault {
            Fault::Link => self.pair.port(h, false),
            Fault::Oneway => switch_rule(&self.pair.sw, &format!("iifname \"{port}\" drop")),
            Fault::Freeze => signal_namespace(&ns, libc::SIGSTOP),
            Fault::Kill9 => signal_daemon(&ns, libc::SIGKILL),
            Fault::BmcDown => {
                self.pair.port(h, false);
                self.mgmt
                    .ip(["addr", "del", &format!("{}/24", bmc_addr(h)), "dev", "brm"]);
            }
            Fault::BmcSlow => {
                std::fs::write(self.control_dir(h).join("slow_ms"), "1000").unwrap();
                self.pair.port(h, false);
            }
            Fault::Loss => switch_rule(&self.pair.sw, &loss_rule(port)),
            Fault::MonitorLink => self.pair.port(Host::B, false),
            Fault::WitnessDown => {
                // The witness is the client: its ICMP goes, its service traffic stays.
                switch_rule(&self.pair.sw, "oifname \"pc\" meta l4proto icmp drop");
                self.pair.port(h, false);
            }
            Fault::Restart => {
                signal_daemon(&ns, libc::SIGTERM);
            }
            Fault::BmcFlap => {
                self.pair.port(h, false);
                self.mgmt
                    .ip(["addr", "del", &format!("{}/24", bmc_addr(h)), "dev", "brm"]);
            }
            Fault::CopyLoad => {}
            Fault::BmcLies => {
                std::fs::write(self.control_dir(h).join("lies"), "").unwrap();
                switch_rule(&self.pair.sw, &format!("iifname \"{port}\" drop"));
            }
            Fault::Cpu => {
                let burners = burn_cpu(self.pair.ns(h)).expect("cpu burners");
                self.children.extend(burners);
            }
        }
    }

    /// Undoes a fault that outlives a power cycle (a cut cable, a switch rule), as a
    /// technician would once the host is down; BMC faults are undone too.
    pub fn repair(&mut self, h: Host, fault: Fault) {
        match fault {
            Fault::Link | Fault::BmcSlow => self.pair.port(h, true),
            Fault::BmcDown => {
                self.pair.port(h, true);
                self.repair_bmc(h);
            }
            Fault::MonitorLink => self.pair.port(Host::B, true),
            Fault::WitnessDown => {
                self.pair.port(h, true);
                self.unblock_witness();
            }
            Fault::BmcFlap => {
                self.pair.port(h, true);
                self.repair_bmc(h);
            }
            Fault::Oneway | Fault::Loss => self.clear_switch_rules(),
            Fault::BmcLies => {
                self.clear_switch_rules();
                let _ = std::fs::remove_file(self.control_dir(h).join("lies"));
            }
            Fault::Freeze | Fault::Kill9 | Fault::Cpu | Fault::Restart | Fault::CopyLoad => {}
        }
        let _ = std::fs::remove_file(self.control_dir(h).join("slow_ms"));
    }

    /// Lets the witness answer ICMP again (after `witness-down`).
    pub fn unblock_witness(&mut self) {
        self.clear_switch_rules();
    }

    /// Removes the switch's fault rules (the `fo_lab` nft table).
    fn clear_switch_rules(&self) {
        let _ = self
            .pair
            .sw
            .command("nft")
            .args(["delete", "table", "bridge", "fo_lab"])
            .status();
    }

    /// Makes `h`'s BMC reachable again (after `bmc-down`).
    pub fn repair_bmc(&mut self, h: Host) {
        let _ = self
            .mgmt
            .command("ip")
            .args(["addr", "add", &format!("{}/24", bmc_addr(h)), "dev", "brm"])
            .stderr(Stdio::null())
            .status();
    }
}
