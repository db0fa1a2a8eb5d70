//! What a copy may never do to data (docs/sync.md, "Which copy wins"): a fenced primary's
//! writes since its last copy are not deleted when it rejoins and takes its first copy from
//! the new primary; they are kept aside as `DIR.diverged-EPOCH`, with an event and a line in
//! `status`. A cold start makes the host with the newer data primary, whichever is preferred.
use failover_harness::{
    events::ts,
    mono_ns,
    pair::{Host, Options, Pair},
};

#[test]
fn a_fenced_primarys_unsynced_writes_are_kept_aside_not_deleted() {
    let pair = Pair::new(Options::default());
    pair.with_sync("");
    let flag = pair.dir.join("fail-snapshot");
    let data = |h: Host| pair.dir.join(format!("data-{}", h.name()));
    let (primary, monitor) = pair.cold_start();
    std::fs::write(data(primary).join("synced"), "v1").unwrap();
    let wrote = mono_ns();
    let started = pair.wait_event(monitor, 0, "sync_started", |v| ts(v) > wrote);
    pair.wait_event(monitor, 0, "sync_done", |v| ts(v) > ts(&started));

    // Copies stop (the snapshot command refuses); the primary writes on.
    std::fs::write(&flag, "").unwrap();
    let t = mono_ns();
    let refused = pair.wait_event(monitor, 0, "sync_started", |v| ts(v) > t);
    pair.wait_event(monitor, 0, "sync_failed", |v| ts(v) > ts(&refused));
    std::fs::write(
        data(primary).join("unsynced"),
        "written after the last copy",
    )
    .unwrap();
    let t = mono_ns();
    let refused = pair.wait_event(monitor, 0, "sync_started", |v| ts(v) > t);
    pair.wait_event(monitor, 0, "sync_failed", |v| ts(v) > ts(&refused));

    // The primary is cut off, fenced and replaced; the new primary serves v1 without it.
    let mark = pair.mark();
    pair.port(primary, false);
    pair.wait_event(monitor, mark, "serving_copy", |_| true);
    assert!(!data(monitor).join("unsynced").exists());
    pair.wait_event(monitor, mark, "boot_result", |v| {
        v["detail"].as_str().unwrap_or("").starts_with("on done")
    });
    std::fs::remove_file(&flag).unwrap();

    // The fenced host comes back as monitor; its first copy replaces its data directory.
    let (new_primary, rebooted) = (monitor, primary);
    pair.port(rebooted, true);
    let back = pair.mark();
    pair.start(rebooted);
    pair.wait_role(rebooted, back, "monitor");
    let kept = pair.wait_event(rebooted, back, "sync_kept_aside", |_| true);
    let detail = kept["detail"].as_str().unwrap().to_string();
    let aside = std::path::PathBuf::from(detail.rsplit(' ').next().unwrap());
    assert!(
        aside
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("data-"),
        "{detail}"
    );
    assert_eq!(
        std::fs::read_to_string(aside.join("unsynced")).unwrap(),
        "written after the last copy",
        "the unsynced write survives in {}",
        aside.display()
    );
    assert_eq!(
        std::fs::read_to_string(data(rebooted).join("synced")).unwrap(),
        "v1"
    );
    assert!(
        !data(rebooted).join("unsynced").exists(),
        "the copy is the new primary's data"
    );
    let st = pair.status(rebooted);
    let listed = st["sync"]["kept_aside"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        listed
            .iter()
            .any(|p| p.as_str() == Some(&aside.display().to_string())),
        "status lists it: {st}"
    );
    assert_eq!(pair.status(new_primary)["role"], "primary");
}

/// `sync.max_age`: a copy older than that is not served after a fence (`takeover_refused`),
/// unless `sync.serve_stale` is set, and then only because the peer is confirmed off.
#[test]
fn a_copy_older_than_max_age_is_served_only_with_serve_stale_after_a_confirmed_fence() {
    for serve_stale in [false, true] {
        let pair = Pair::new(Options::default());
        // Every copy is older than 1 ms by the time a takeover looks at it.
        pair.with_sync(&format!("max_age = \"1ms\"\nserve_stale = {serve_stale}\n"));
        let (primary, monitor) = pair.cold_start();
        pair.wait_event(monitor, 0, "sync_done", |_| true);
        let mark = pair.mark();
        pair.port(primary, false);
        pair.wait_event(monitor, mark, "fence_confirmed", |_| true);
        if serve_stale {
            let served = pair.wait_event(monitor, mark, "stale_copy_served", |_| true);
            eprintln!("{}", served["detail"]);
            pair.wait_event(monitor, mark, "address_claimed", |v| {
                v["detail"].as_str().unwrap_or("").contains("primary")
            });
            assert!(pair.holds(monitor, &pair.p));
        } else {
            let refused = pair.wait_event(monitor, mark, "takeover_refused", |_| true);
            eprintln!("{}", refused["detail"]);
            assert!(!pair.holds(monitor, &pair.p), "the old copy is not served");
            assert!(!pair.emitted(monitor, mark, "address_claimed", |v| {
                v["detail"].as_str().unwrap_or("").contains("primary")
            }));
        }
    }
}

/// Y was primary (epoch 1) and stopped; X, its monitor, took P over without a fence (a
/// handover, epoch 2) and served, then stopped too. At the next cold start X comes up first
/// and holds M; Y joins, hears that the monitor's data is newer and leaves P to it
/// (`join_answered` ... "leaving P to it", X's `peer_yielded`): X serves its newer data, Y
/// becomes its monitor, nobody is fenced and nothing is refused.
#[test]
fn a_cold_start_makes_the_host_with_the_newer_data_primary() {
    let mut pair = Pair::new(Options::default());
    pair.with_sync("");
    let data = |h: Host| pair.dir.join(format!("data-{}", h.name()));
    let (y, x) = pair.cold_start();
    std::fs::write(data(y).join("f"), "v1").unwrap();
    let wrote = mono_ns();
    let started = pair.wait_event(x, 0, "sync_started", |v| ts(v) > wrote);
    pair.wait_event(x, 0, "sync_done", |v| ts(v) > ts(&started));
    let mark = pair.mark();
    pair.terminate(y).expect("Y stopped");
    pair.wait_role(x, mark, "primary");
    std::fs::write(data(x).join("f"), "v2, served by X").unwrap();
    pair.terminate(x).expect("X stopped");

    let mark = pair.mark();
    pair.start(x);
    pair.wait_role(x, mark, "monitor");
    pair.start(y);
    let yielded = pair.wait_event(y, mark, "join_answered", |v| {
        v["detail"]
            .as_str()
            .is_some_and(|d| d.contains("leaving P to it"))
    });
    pair.wait_event(x, mark, "peer_yielded", |_| true);
    let took = pair.wait_role(x, mark, "primary");
    pair.wait_role(y, ts(&took), "monitor");
    eprintln!(
        "TIMES yield -> X primary {:.1} ms",
        (ts(&took) as f64 - ts(&yielded) as f64) / 1e6
    );
    // Y's first copy brings X's data; Y's own (older) is kept aside, as always.
    let t = mono_ns();
    let started = pair.wait_event(y, mark, "sync_started", |v| ts(v) > t);
    pair.wait_event(y, mark, "sync_done", |v| ts(v) > ts(&started));
    assert_eq!(
        std::fs::read_to_string(data(y).join("f")).unwrap(),
        "v2, served by X"
    );
    let st = pair.status(y);
    assert_eq!(st["sync"]["generation_origin"], x.name(), "{st}");
    assert_eq!(
        st["sync"]["generation_epoch"],
        pair.status(x)["epoch"],
        "{st}"
    );
    for h in Host::BOTH {
        assert!(
            !pair.emitted(h, mark, "boot_requested", |_| true),
            "{} fenced nobody",
            h.name()
        );
        assert!(
            !pair.emitted(h, mark, "sync_refused", |_| true),
            "{} refused no copy",
            h.name()
        );
    }
    let (samples, both) = pair.stop_watch();
    assert!(samples > 0);
    assert_eq!(both, 0, "P was held twice in {both} of {samples} samples");
}
