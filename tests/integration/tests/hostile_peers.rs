//! Bounded under hostile peers (issue 12, item 5): real daemons, real clients that misbehave.
//!
//! - Slow-loris clients on every stream listener (the control socket, metrics, the sync port
//!   from a stranger and from the peer's own address), each holding more connections than the
//!   listener serves at once and reconnecting whatever is closed: `failover status` and metrics
//!   still answer, copies still complete, and the primary is never judged failed. A connection
//!   from the peer's address that never authenticates is closed at the handshake deadline,
//!   named.
//! - The primary's daemon at its file-descriptor limit: its accept loops do not spin, say so
//!   once per burst, heartbeats go on, and it serves again once its own deadlines close the
//!   connections that filled it.
//! - `sync_stale`: copies that keep failing raise it on the monitor once per stretch, again
//!   only after a copy completed.
//!
//! No timing is asserted except lower bounds the product guarantees; observation windows are
//! printed.
use std::{process::Command, time::Duration};

use failover_harness::{
    events::{detail, ts},
    hostile::{Client, HOLD, LORIS},
    pair::{Host, Options, Pair},
    proc::{cpu_ticks, limit_leaving, set_nofile},
};

fn python(pair: &Pair, h: Option<Host>) -> Command {
    match h {
        Some(h) => pair.ns(h).command("/usr/bin/python3"),
        None => Command::new("/usr/bin/python3"),
    }
}

/// Both hosts copy `data-{a,b}` every 50 heartbeats (100 ms) with a 1 s handshake deadline
/// and `extra` settings; the snapshot command fails while `fail-snapshot` exists.
fn with_sync(pair: &Pair, extra: &str) {
    for data in pair.with_sync(&format!("handshake_timeout = \"1s\"\n{extra}")) {
        std::fs::write(data.join("state"), "v1").unwrap();
    }
}

/// Waits for `n` `sync_done` on `h`, one after the other, after `since`.
fn wait_copies(pair: &Pair, h: Host, since: u64, n: usize) {
    let mut t = since;
    for _ in 0..n {
        t = ts(&pair.wait_event(h, t, "sync_done", |_| true));
    }
}

#[test]
fn slow_loris_clients_on_every_listener_do_not_stop_status_metrics_or_copies() {
    let mut pair = Pair::new(Options::default());
    with_sync(&pair, "");
    let (primary, monitor) = pair.cold_start();
    pair.wait_event(monitor, 0, "sync_done", |_| true);
    let node = |h: Host| pair.opts.addr(h.octet());
    let sync_port = format!("{}:7789", node(primary));
    let socket = pair.config(primary).socket.display().to_string();

    let mark = pair.mark();
    // More connections than each listener serves at once (8, 4, 2).
    let control = Client::start(
        "control loris",
        python(&pair, None),
        LORIS,
        &["unix", &socket, "12"],
    );
    let metrics = Client::start(
        "metrics loris",
        python(&pair, Some(primary)),
        LORIS,
        &["tcp", "127.0.0.1:9477", "8"],
    );
    let stranger = Client::start(
        "sync loris (client)",
        pair.client.command("/usr/bin/python3"),
        LORIS,
        &["tcp", &sync_port, "4"],
    );
    let from_peer = Client::start(
        "sync loris (peer address)",
        python(&pair, Some(monitor)),
        LORIS,
        &["tcp", &sync_port, "3", &node(monitor)],
    );
    let ready = pair.mark();

    // While they hold their connections: copies complete, status and metrics answer.
    wait_copies(&pair, monitor, ready, 3);
    let st = pair.status(primary);
    assert_eq!(st["role"], "primary", "{st}");
    let text = pair.metrics(primary);
    assert!(text.contains("failover_role{node="), "{text}");
    assert_eq!(pair.status(monitor)["role"], "monitor");
    wait_copies(&pair, monitor, pair.mark(), 2);

    // The listeners closed what they do not serve: every stranger's connection at once, the
    // oldest idle ones of the others; the ones that hold idle connections say so (at most a
    // line per 10 s).
    stranger.wait_for(|l| l == "closed 4", "4 closed connections");
    metrics.wait_for(|l| l.starts_with("closed"), "a closed connection");
    control.wait_for(|l| l.starts_with("closed"), "a closed connection");
    from_peer.wait_for(|l| l.starts_with("closed"), "a closed connection");
    for (listener, limit) in [("metrics endpoint", 4), ("sync port", 2)] {
        let line = pair.wait_log(primary, mark, "the limit line", |v| {
            v["listener"] == listener && v["level"] == "WARN"
        });
        let text = line["message"].as_str().unwrap();
        assert!(
            text.contains(&format!("{limit} connections open (the limit)")),
            "{line}"
        );
    }
    eprintln!(
        "closed by the daemon: control {}, metrics {}, sync from a stranger {}, sync from the peer's address {}",
        control.closed(),
        metrics.closed(),
        stranger.closed(),
        from_peer.closed()
    );
    assert!(
        !pair.emitted(monitor, mark, "primary_failed", |_| true),
        "the loris never delayed a heartbeat answer"
    );
    assert!(!pair.emitted(monitor, mark, "sync_stale", |_| true));
    drop((control, metrics, stranger, from_peer));

    // Above, the peer-address loris's connections kept taking each other's slots. One alone
    // keeps its slot: it runs into the handshake deadline, is closed and named, and the copies
    // go on beside it.
    let mark = pair.mark();
    let lone = Client::start(
        "one sync loris (peer address)",
        python(&pair, Some(monitor)),
        LORIS,
        &["tcp", &sync_port, "1", &node(monitor)],
    );
    let unauth = pair.wait_event(primary, mark, "sync_failed", |v| {
        detail(v).contains("did not authenticate within 1s (sync.handshake_timeout)")
    });
    assert!(
        detail(&unauth).contains(&format!("peer {}:", node(monitor))),
        "{unauth}"
    );
    lone.wait_for(|l| l.starts_with("closed"), "a closed connection");
    wait_copies(&pair, monitor, ts(&unauth), 2);
    drop(lone);
    assert!(!pair.emitted(monitor, mark, "primary_failed", |_| true));
    pair.assert_no_split_brain();
}

#[test]
fn at_its_descriptor_limit_the_daemon_backs_off_keeps_answering_heartbeats_and_recovers() {
    let mut pair = Pair::new(Options::default());
    let (primary, monitor) = pair.cold_start();
    let pid = pair.pid(primary).expect("the primary's pid");
    let socket = pair.config(primary).socket.display().to_string();
    let window = Duration::from_secs(3);
    let hz = 100; // USER_HZ on Linux
    let t0 = cpu_ticks(pid);
    std::thread::sleep(window); // an observation window, not a synchronisation
    let baseline = cpu_ticks(pid) - t0;

    // Two free descriptors: two idle scrapes take them (metrics holds up to 4), the next
    // accept fails with EMFILE.
    let mark = pair.mark();
    let (old_soft, _) = set_nofile(pid, limit_leaving(pid, 2));
    let metrics = Client::start(
        "metrics holder",
        python(&pair, Some(primary)),
        HOLD,
        &["tcp", "127.0.0.1:9477", "4"],
    );
    let warned = |listener: &'static str| {
        move |v: &serde_json::Value| {
            v["listener"] == listener
                && v["level"] == "WARN"
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("accept failed"))
        }
    };
    let first = pair.wait_log(
        primary,
        mark,
        "the metrics accept warning",
        warned("metrics endpoint"),
    );
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .contains("out of file descriptors"),
        "{first}"
    );
    let control = Client::start(
        "control holder",
        python(&pair, None),
        HOLD,
        &["unix", &socket, "2"],
    );
    pair.wait_log(
        primary,
        mark,
        "the control accept warning",
        warned("control socket"),
    );

    // At the limit: no spinning, heartbeats answered.
    let t1 = cpu_ticks(pid);
    std::thread::sleep(window); // an observation window, not a synchronisation
    let at_limit = cpu_ticks(pid) - t1;
    let ticks = window.as_secs() * hz;
    eprintln!(
        "CPU of the primary's daemon over {window:?}: {baseline} ticks before, {at_limit} at the descriptor limit (one busy core: {ticks})"
    );
    assert!(
        at_limit < ticks / 2,
        "the daemon spins at its descriptor limit: {at_limit} of {ticks} ticks"
    );
    for listener in ["metrics endpoint", "control socket"] {
        let n = pair.log_lines(primary, mark, warned(listener)).len();
        assert!(
            (1..=2).contains(&n),
            "{listener}: {n} accept warnings (one per burst)"
        );
    }
    assert!(
        !pair.emitted(monitor, mark, "primary_failed", |_| true),
        "heartbeats were answered at the limit"
    );

    // The metrics deadline (5 s) closes the idle scrapes that hold the descriptors: the
    // daemon accepts and serves again, by itself.
    for listener in ["metrics endpoint", "control socket"] {
        pair.wait_log(primary, mark, "accepting again", |v| {
            v["listener"] == listener
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("accepting again"))
        });
    }
    drop((metrics, control));
    let st = pair.status(primary);
    assert_eq!(st["role"], "primary", "{st}");
    assert!(pair.metrics(primary).contains("failover_role{node="));
    assert!(!pair.emitted(monitor, mark, "primary_failed", |_| true));
    set_nofile(pid, old_soft);
    pair.assert_no_split_brain();
}

#[test]
fn copies_that_stop_completing_raise_sync_stale_once_per_stretch() {
    let mut pair = Pair::new(Options::default());
    with_sync(&pair, "alert_after = \"1s\"\n");
    let flag = pair.dir.join("fail-snapshot");
    let (primary, monitor) = pair.cold_start();
    pair.wait_event(monitor, 0, "sync_done", |_| true);
    assert!(!pair.emitted(monitor, 0, "sync_stale", |_| true));

    for round in 1..=2 {
        std::fs::write(&flag, "").unwrap();
        let failing = pair.mark();
        // The copy that completed last (one in flight when the flag appeared may complete).
        let failed = pair.wait_event(monitor, failing, "sync_failed", |_| true);
        let last_done = pair
            .events(monitor)
            .iter()
            .filter(|v| v["event"] == "sync_done" && ts(v) < ts(&failed))
            .map(ts)
            .max()
            .expect("a copy completed");
        let stale = pair.wait_event(monitor, failing, "sync_stale", |_| true);
        eprintln!(
            "round {round}: sync_stale {:.0} ms after the last sync_done: {}",
            (ts(&stale) - last_done) as f64 / 1e6,
            detail(&stale)
        );
        assert_eq!(stale["level"], "WARN", "{stale}");
        assert_eq!(stale["role"], "monitor", "{stale}");
        assert!(
            ts(&stale) - last_done > 1_000_000_000,
            "stale only after alert_after: {stale}"
        );
        assert!(detail(&stale).contains("snapshot refused"), "{stale}");
        // Copies keep failing for more than another alert_after (15 more, one per 100 ms): still
        // one sync_stale for this stretch.
        let mut t = ts(&stale);
        for _ in 0..15 {
            t = ts(&pair.wait_event(monitor, t, "sync_failed", |_| true));
        }
        let n = pair
            .events(monitor)
            .iter()
            .filter(|v| v["event"] == "sync_stale" && ts(v) > failing)
            .count();
        assert_eq!(n, 1, "one sync_stale per stretch");
        // A completed copy ends the stretch.
        std::fs::remove_file(&flag).unwrap();
        pair.wait_event(monitor, t, "sync_done", |_| true);
    }
    assert!(!pair.emitted(monitor, 0, "primary_failed", |_| true));
    assert_eq!(pair.status(primary)["role"], "primary");
    pair.assert_no_split_brain();
}
