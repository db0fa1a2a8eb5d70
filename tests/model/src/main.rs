//! `failover-model`: the protocol model check (`cargo xtask model --depth N`).
use clap::Parser;

/// Model-checks the failover protocol: both hosts' real role machines under every
/// interleaving of a lossy, reordering, partitioning network, failing and lying BMCs, and
/// crashing, freezing and stopped daemons, up to a depth. Prints the states explored and, for
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
}

fn main() {
    let a = Args::parse();
    let mut failed = false;
    // Truthful BMCs with the newer data on the host that is not preferred; lying BMCs
    // (a superset of the truthful runs) with equal data.
    for (lies, newer) in [(false, Some(1)), (true, None)] {
        let o = failover_model::check(a.depth, a.faults, lies, newer, a.threads);
        println!(
            "model ({}): depth {}, {} faults per path: {} states ({} distinct) in {:.1} s",
            if lies {
                "a BMC may lie, equal data"
            } else {
                "truthful BMCs, newer data on the host not preferred"
            },
            o.depth,
            a.faults,
            o.states,
            o.unique,
            o.seconds
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
