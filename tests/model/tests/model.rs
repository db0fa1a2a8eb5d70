//! The protocol model check at the depth `cargo xtask test` affords (deeper: `cargo xtask
//! model --depth N`). Every property must hold; the coverage examples must be found, or the
//! check would prove nothing.
const DEPTH: usize = 12;
const FAULTS: u8 = 2;

fn check(lies: bool) {
    // Truthful BMCs: the newer data is on host 1 (host 0 is preferred); a lying BMC's run
    // covers the truthful paths too, with equal data.
    let newer = (!lies).then_some(1);
    let o = failover_model::check(DEPTH, FAULTS, lies, newer, 2);
    eprintln!(
        "model (lies {lies}): depth {}, {} faults per path: {} states ({} distinct) in {:.1} s; examples: {:?}",
        o.depth, FAULTS, o.states, o.unique, o.seconds, o.examples
    );
    for (name, trace) in &o.violations {
        eprintln!("VIOLATED: {name}\n{trace}");
    }
    assert!(
        o.violations.is_empty(),
        "properties violated: {:?}",
        o.violations.iter().map(|v| &v.0).collect::<Vec<_>>()
    );
    assert!(
        o.examples.iter().any(|e| e == "a fenced takeover"),
        "{:?}",
        o.examples
    );
    let wanted = if lies {
        "two servers after a lie"
    } else {
        "the newer data serves first"
    };
    assert!(o.examples.iter().any(|e| e == wanted), "{:?}", o.examples);
}

/// Without faults, a cold start makes the host with the newer data primary although the
/// other one is preferred.
#[test]
fn a_cold_start_makes_the_newer_data_primary() {
    let m = failover_model::Protocol {
        faults: 0,
        lies: false,
        newer: Some(1),
    };
    let s = m.settle(&m.initial(), 200);
    assert!(s.serving(1) && !s.serving(0), "{s:?}");
}

#[test]
fn every_property_holds_with_truthful_bmcs() {
    check(false);
}

#[test]
fn a_lying_bmc_leaves_two_servers_only_until_the_stale_primary_steps_down() {
    check(true);
}
