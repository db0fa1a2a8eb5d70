//! `failover-model`: the protocol model check (`cargo xtask model --depth N`).
use clap::Parser;

/// Model-checks the failover protocol: both hosts' real role machines under every
/// interleaving of a lossy, reordering, partitioning network, failing and lying BMCs, and
/// crashing, freezing and stopped daemons, up to a depth; with `fence = "bmc"` and with
/// `fence = "lease"` (a witness that may die, the primary's lease). Prints the states explored and, for
/// every property violated, a readable trace; exits 1 when any is violated.
#[derive(Parser, Debug)]
#[command(name = "failover-model")]
struct Args {
    /// Steps from the cold start to explore (every interleaving up to this depth).
    #[arg(long, default_value_t = 12)]
    depth: usize,
    /// Faults per path (power loss, crash, freeze, operator stop, link cuts, BMC down/lying).
    #[arg(long, default_value_t = 2)]
    faults: u8,
    /// Checker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// The fencing modes to check: `bmc`, `lease`, or both (`bmc,lease`).
    #[arg(long, default_value = "bmc,lease", value_delimiter = ',')]
    fence: Vec<String>,
}

fn main() {
    let a = Args::parse();
    let mut failed = false;
    // `fence = "bmc"`: truthful BMCs with the newer data on the host that is not preferred;
    // lying BMCs (a superset of the truthful runs) with equal data. `fence = "lease"`: the
    // truthful run with the witness and the lease.
    let runs = [
        (
            false,
            false,
            Some(1),
            "fence = bmc, truthful BMCs, newer data on the host not preferred",
        ),
        (false, true, None, "fence = bmc, a BMC may lie, equal data"),
        (
            true,
            false,
            Some(1),
            "fence = lease, truthful BMCs, newer data on the host not preferred",
        ),
    ];
    for (lease, lies, newer, what) in runs {
        if !a
            .fence
            .iter()
            .any(|f| f == if lease { "lease" } else { "bmc" })
        {
            continue;
        }
        let model = failover_model::Protocol {
            faults: a.faults,
            lies,
            newer,
            lease,
        };
        let o = failover_model::check(&model, a.depth, a.threads);
        println!(
            "model ({what}): depth {}, {} faults per path: {} states ({} distinct) in {:.1} s",
            o.depth, a.faults, o.states, o.unique, o.seconds
        );
        println!("  examples found: {}", o.examples.join(", "));
        for (name, trace) in &o.violations {
            failed = true;
            println!("VIOLATED: {name}\n{trace}");
        }
    }
    if failed {
        std::process::exit(1);
    }
    println!("all properties hold");
}
