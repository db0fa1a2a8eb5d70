//! The protocol model check at the depth `cargo xtask test` affords (deeper: `cargo xtask
//! model --depth N`). Every property must hold; the coverage examples must be found, or the
//! check would prove nothing.
const DEPTH: usize = 12;
const FAULTS: u8 = 2;

fn check(lies: bool) {
    let o = failover_model::check(DEPTH, FAULTS, lies, 2);
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
    if lies {
        assert!(
            o.examples.iter().any(|e| e == "two servers after a lie"),
            "{:?}",
            o.examples
        );
    }
}

#[test]
fn every_property_holds_with_truthful_bmcs() {
    check(false);
}

#[test]
fn a_lying_bmc_leaves_two_servers_only_until_the_stale_primary_steps_down() {
    check(true);
}
