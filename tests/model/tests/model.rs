//! The protocol model check at the depth `cargo xtask test` affords (deeper: `cargo xtask
//! model --depth N`). Every property must hold; the coverage examples must be found, or the
//! check would prove nothing.
use failover_model::Protocol;

const DEPTH: usize = 12;
const FAULTS: u8 = 2;

fn check(model: Protocol, wanted: &[&str]) {
    let o = failover_model::check(&model, DEPTH, 2);
    eprintln!(
        "model (lease {}, lies {}): depth {}, {} faults per path: {} states ({} distinct) in {:.1} s; examples: {:?}",
        model.lease, model.lies, o.depth, FAULTS, o.states, o.unique, o.seconds, o.examples
    );
    for (name, trace) in &o.violations {
        eprintln!("VIOLATED: {name}\n{trace}");
    }
    assert!(
        o.violations.is_empty(),
        "properties violated: {:?}",
        o.violations.iter().map(|v| &v.0).collect::<Vec<_>>()
    );
    for w in wanted {
        assert!(o.examples.iter().any(|e| e == w), "{w}: {:?}", o.examples);
    }
}

fn bmc(lies: bool) -> Protocol {
    // Truthful BMCs: the newer data is on host 1 (host 0 is preferred); a lying BMC's run
    // covers the truthful paths too, with equal data.
    Protocol {
        faults: FAULTS,
        lies,
        newer: (!lies).then_some(1),
        lease: false,
    }
}

/// `fence = "lease"`, otherwise as the truthful `fence = "bmc"` run.
fn lease() -> Protocol {
    Protocol {
        lease: true,
        ..bmc(false)
    }
}

/// Without faults, a cold start makes the host with the newer data primary although the
/// other one is preferred.
#[test]
fn a_cold_start_makes_the_newer_data_primary() {
    for lease in [false, true] {
        let m = Protocol {
            faults: 0,
            lease,
            ..bmc(false)
        };
        let s = m.settle(&m.initial(), 200);
        assert!(s.serving(1) && !s.serving(0), "{s:?}");
    }
}

#[test]
fn every_property_holds_with_truthful_bmcs() {
    check(
        bmc(false),
        &[
            "a fenced takeover",
            "the newer data serves first",
            "the peer of a host in standby serves alone",
        ],
    );
}

#[test]
fn a_lying_bmc_leaves_two_servers_only_until_the_stale_primary_steps_down() {
    check(bmc(true), &["a fenced takeover", "two servers after a lie"]);
}

#[test]
fn every_property_holds_under_the_lease() {
    check(
        lease(),
        &[
            "a lease takeover",
            "a refused revoke",
            "the newer data serves first",
        ],
    );
}
