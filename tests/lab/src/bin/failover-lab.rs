//! `failover-lab`: the lab's processes (a lab BMC, the demo service, the client) and the
//! commands `cargo xtask demo`, `bench`, `bench-sync` and `bench-xdp` run.
use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use failover_lab::{
    bench, bench_cpu, bench_sync, bench_vs, bench_xdp,
    bmc::{self, BmcArgs},
    client::{self, ClientArgs},
    demo,
    fault::Fault,
    service::{self, ServiceArgs},
};

/// The failover lab: two hosts with lab BMCs, a switch, a management network and a client,
/// each a network namespace, running the real `failover run` (docs/lab.md). Needs root.
#[derive(Parser)]
#[command(name = "failover-lab")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// A lab BMC for one host (run inside the management namespace).
    Bmc(BmcArgs),
    /// The demo service (run inside a host's namespace).
    Service(ServiceArgs),
    /// The lab's client (run inside the client namespace).
    Client(ClientArgs),
    /// The demo: the fault on the primary with takeover (claim 12), then recovery only
    /// (claim 11); timelines on stderr.
    Demo {
        /// The `failover` binary to run on the hosts.
        #[arg(long)]
        failover: PathBuf,
        /// The fault injected on the primary.
        #[arg(long, value_enum, default_value_t = Fault::Link)]
        fault: Fault,
        /// Print the summary as one JSON object on the last line of stdout.
        #[arg(long)]
        json: bool,
        /// Print the lab directory and the generated configs (kept on disk with
        /// FAILOVER_LAB_KEEP=1).
        #[arg(long)]
        show_config: bool,
    },
    /// The takeover scenario N times: min, median, p95, max of each figure; with a fault that
    /// leaves the primary healthy (loss, cpu), false takeovers over a window instead; with a
    /// safety fault, what must never happen summed and the scenario's own figures.
    Bench {
        /// The `failover` binary to run on the hosts.
        #[arg(long)]
        failover: PathBuf,
        /// The fault.
        #[arg(long, value_enum, default_value_t = Fault::Link)]
        fault: Fault,
        /// Number of runs.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
        runs: u64,
        /// For loss, cpu and the safety faults: how long each run watches, in seconds.
        #[arg(long, default_value_t = 600)]
        window_s: u64,
        /// Compare fencing modes (comma-separated: lease,bmc), alternating runs; for link,
        /// freeze and kill9. Without it: fence = "bmc" alone, the classic figures.
        #[arg(long, value_enum, value_delimiter = ',')]
        fence: Vec<bench::FenceMode>,
        /// The lab BMCs' delay from a power-off request to the power cut and the Off report
        /// (a real BMC takes seconds), e.g. "3s".
        #[arg(long, default_value = "0s")]
        bmc_off_delay: failover::config::HumanDuration,
        /// With --fence: print the figures as one JSON object on the last line.
        #[arg(long)]
        json: bool,
    },
    /// The data copy: a full copy and a 1 % change over a veth link, then the lab's recovery
    /// point.
    BenchSync {
        /// The `failover` binary to run on the hosts.
        #[arg(long)]
        failover: PathBuf,
        /// Size of the generated tree, MiB.
        #[arg(long, default_value_t = 1024)]
        size_mib: usize,
        /// Lab runs for the recovery-point distribution.
        #[arg(long, default_value_t = 10)]
        rpo_runs: usize,
    },
    /// What the daemons cost at steady state with the default heartbeat: CPU % of a core,
    /// CPU time per probe and RSS of the primary and the monitor (a healthy lab pair, no data
    /// copy).
    BenchCpu {
        /// The `failover` binary to run on the hosts.
        #[arg(long)]
        failover: PathBuf,
        /// The measuring window, seconds.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
        seconds: u64,
        /// Print the figures as one JSON object on the last line of stdout.
        #[arg(long)]
        json: bool,
    },
    /// This daemon against keepalived (VRRPv3 unicast) in the same lab, same client, same
    /// faults, runs alternating: client outage, time two hosts answered on P, false takeovers
    /// under loss and CPU saturation, CPU and RSS at steady state, and the ratios.
    BenchVs {
        /// The `failover` binary to run on the hosts.
        #[arg(long)]
        failover: PathBuf,
        /// The other system (only keepalived).
        #[arg(value_parser = ["keepalived"])]
        system: String,
        /// Runs per system and fault.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
        runs: u64,
        /// Faults (comma-separated): link, freeze (takeovers); loss, cpu (false takeovers).
        #[arg(long, value_enum, value_delimiter = ',', default_value = "link")]
        fault: Vec<Fault>,
        /// For loss and cpu: how long each run watches, seconds.
        #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
        window_s: u64,
        /// failover's fence modes (comma-separated; the first is reported as `failover`).
        #[arg(long, value_enum, value_delimiter = ',', default_value = "bmc")]
        fence: Vec<bench::FenceMode>,
        /// Leave out the row of keepalived with its default adverts (1 s).
        #[arg(long)]
        no_defaults: bool,
        /// For freeze: how long keepalived's master stays frozen, seconds (longer than its
        /// default-advert detection, about 3.6 s).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
        freeze_s: u64,
        /// The steady-state window for CPU and RSS, seconds (0: not measured).
        #[arg(long, default_value_t = 20)]
        steady_s: u64,
        /// The lab BMCs' delay from a power-off request to the cut and the Off report, e.g. "3s".
        #[arg(long, default_value = "0s")]
        bmc_off_delay: failover::config::HumanDuration,
        /// One JSON object per fault on stdout; the last line is the last fault's.
        #[arg(long)]
        json: bool,
        /// Draw the outage distributions per system and fault to this SVG file.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// The XDP program's cost per frame against a pass-only program (BPF_PROG_TEST_RUN), then
    /// veth throughput of unrelated frames with no program, the fast path and the pass-only
    /// program attached (two namespaces of its own, about 70 s).
    BenchXdp {
        /// Runs per measurement.
        #[arg(long, default_value_t = 1_000_000)]
        repeat: u32,
        /// Measurements per frame kind (the median is reported).
        #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u64).range(1..))]
        rounds: u64,
    },
}

fn main() -> ExitCode {
    let r = match Cli::parse().cmd {
        Cmd::Bmc(a) => {
            bmc::run(a);
            Ok(())
        }
        Cmd::Service(a) => {
            service::run(a);
            Ok(())
        }
        Cmd::Client(a) => {
            client::run(a);
            Ok(())
        }
        Cmd::Demo {
            failover,
            fault,
            json,
            show_config,
        } => demo::run(&failover, fault, json, show_config),
        Cmd::Bench {
            failover,
            fault,
            runs,
            fence,
            bmc_off_delay,
            json,
            ..
        } if !fence.is_empty() => bench::fences(
            &failover,
            fault,
            runs as usize,
            &fence,
            bmc_off_delay.0,
            json,
        ),
        Cmd::Bench {
            failover,
            fault,
            runs,
            window_s,
            ..
        } => bench::run(
            &failover,
            fault,
            runs as usize,
            Duration::from_secs(window_s),
        ),
        Cmd::BenchSync {
            failover,
            size_mib,
            rpo_runs,
        } => bench_sync::run(&failover, size_mib, rpo_runs),
        Cmd::BenchCpu {
            failover,
            seconds,
            json,
        } => bench_cpu::run(&failover, seconds, json),
        Cmd::BenchVs {
            failover,
            system: _,
            runs,
            fault,
            window_s,
            fence,
            no_defaults,
            freeze_s,
            steady_s,
            bmc_off_delay,
            json,
            plot,
        } => bench_vs::run(
            &failover,
            &bench_vs::VsArgs {
                faults: fault,
                runs: runs as usize,
                window: Duration::from_secs(window_s),
                fences: fence,
                defaults: !no_defaults,
                freeze: Duration::from_secs(freeze_s),
                steady: Duration::from_secs(steady_s),
                bmc_off_delay: bmc_off_delay.0,
                json,
                plot,
            },
        ),
        Cmd::BenchXdp { repeat, rounds } => bench_xdp::run(repeat, rounds as usize),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("failover-lab: {e:#}");
            ExitCode::from(2)
        }
    }
}
