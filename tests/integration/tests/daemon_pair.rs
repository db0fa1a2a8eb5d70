//! Two `failover run` daemons on a bridge with a client: cold start, a cut link fenced and
//! taken over, the fenced host rejoining as monitor (claim 12), a failing fence, kill -9 and
//! restart, bad configurations. A watcher samples both hosts' addresses throughout and every
//! test asserts that P was never held twice.
//!
//! Times are printed (for the closing notes and docs), never asserted.
use failover_harness::{
    failover_bin, mono_ns,
    pair::{Family, Host, Options, Pair},
};

fn ts(v: &serde_json::Value) -> u64 {
    v["ts_ns"].as_u64().expect("ts_ns")
}

fn assert_roles(pair: &Pair, primary: Host, monitor: Host) {
    let (p, m) = (&pair.p, &pair.m);
    assert!(pair.holds(primary, p), "{} holds P", primary.name());
    assert!(
        !pair.holds(primary, m),
        "{} does not hold M",
        primary.name()
    );
    assert!(pair.holds(monitor, m), "{} holds M", monitor.name());
    assert!(
        !pair.holds(monitor, p),
        "{} does not hold P",
        monitor.name()
    );
}

#[test]
fn cut_link_is_fenced_taken_over_and_the_fenced_host_rejoins_as_monitor() {
    takeover_and_rejoin(Family::V4);
}

#[test]
fn ipv6_cut_link_is_fenced_taken_over_and_the_fenced_host_rejoins_as_monitor() {
    takeover_and_rejoin(Family::V6);
}

fn takeover_and_rejoin(family: Family) {
    let mut pair = Pair::new(Options {
        family,
        ..Options::default()
    });
    let (p, m) = (pair.p.clone(), pair.m.clone());
    let (primary, monitor) = pair.cold_start();
    assert_roles(&pair, primary, monitor);
    // The monitor arms only after seeing P answer.
    let since = 0;
    pair.wait_event(monitor, since, "role_changed", |v| v["role"] == "monitor");
    let st = pair.status(monitor);
    assert_eq!(st["role"], "monitor", "{st}");
    assert_eq!(
        st["addresses_held"],
        serde_json::json!([format!("{m}/{}", pair.opts.prefix())]),
        "{st}"
    );
    let st = pair.status(primary);
    assert_eq!(st["role"], "primary", "{st}");
    assert!(
        st["epoch"].as_u64().unwrap() >= 1,
        "promotion bumped the epoch: {st}"
    );
    let epoch_before = st["epoch"].as_u64().unwrap();
    // The monitor learns the primary's epoch from its epoch probe (every 20 ms until P first
    // answers): the takeover's bump is measured from there (a run here once cut the link
    // before it had).
    pair.wait_status(monitor, "the primary's epoch", |st| {
        st["epoch"].as_u64() >= Some(epoch_before)
    });

    // The client reaches P and learns the primary's MAC.
    assert!(pair.client_ping(&p), "client reaches P before the fault");
    let old_mac = pair.mac(primary);
    assert_eq!(
        pair.client_neighbour(&p).map(|n| n.0),
        Some(old_mac.clone())
    );

    // Cut the primary's switch port.
    let mark = pair.mark();
    let cut = mono_ns();
    pair.port(primary, false);
    let failed = pair.wait_event(monitor, mark, "primary_failed", |_| true);
    let fenced = pair.wait_event(monitor, mark, "fence_confirmed", |_| true);
    let claimed = pair.wait_event(monitor, mark, "address_claimed", |v| {
        v["detail"].as_str().unwrap_or("").contains("primary")
    });
    pair.wait_event(monitor, mark, "garp_sent", |v| {
        v["detail"].as_str().unwrap_or("").contains(p.as_str())
    });
    eprintln!(
        "TIMES fault->primary_failed {:.1} ms, ->fence_confirmed {:.1} ms, ->address_claimed {:.1} ms",
        (ts(&failed) - cut) as f64 / 1e6,
        (ts(&fenced) - cut) as f64 / 1e6,
        (ts(&claimed) - cut) as f64 / 1e6
    );
    assert!(
        ts(&fenced) <= ts(&claimed),
        "fence confirmed before P was claimed"
    );
    let log = pair.fence_log(monitor);
    assert_eq!(
        &log[..2],
        ["off", "status"],
        "fenced through the command: {log:?}"
    );
    assert!(pair.holds(monitor, &p), "the monitor holds P now");
    assert!(!pair.holds(monitor, &m), "and released M");
    assert_eq!(
        claimed["epoch"].as_u64(),
        Some(epoch_before + 1),
        "epoch bumped: {claimed}"
    );

    // GARP moved the client's neighbour entry to the new holder.
    let new_mac = pair.mac(monitor);
    assert_ne!(new_mac, old_mac);
    assert_eq!(
        pair.client_neighbour(&p).map(|n| n.0),
        Some(new_mac.clone()),
        "client neighbour entry for P points at the new holder"
    );
    assert!(pair.client_ping(&p), "client reaches P after the takeover");
    let text = pair.metrics(monitor);
    for line in [
        "failover_failovers_total{node=",
        "failover_role{node=",
        "failover_detection_seconds_count{node=",
    ] {
        let v = text
            .lines()
            .find(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("{line} in {text}"));
        let want = if line.starts_with("failover_role") {
            " 2"
        } else {
            " 1"
        };
        assert!(v.ends_with(want), "{v}");
    }

    // The fenced host is powered on again; repair its link and boot it: it joins, hears no
    // monitor at M (the new primary released it) and becomes the monitor (claim 12).
    let new_primary = monitor;
    let rebooted = primary;
    pair.wait_event(new_primary, mark, "boot_result", |v| {
        v["detail"].as_str().unwrap_or("").starts_with("on done")
    });
    pair.port(rebooted, true);
    let mark_r = pair.mark();
    pair.start(rebooted);
    pair.wait_event(rebooted, mark_r, "join_silent", |_| true);
    pair.wait_role(rebooted, mark_r, "monitor");
    assert_roles(&pair, new_primary, rebooted);
    let hooks = pair.hook_log(new_primary);
    assert!(
        hooks.iter().any(|l| l.starts_with("on_primary primary ")),
        "on_primary ran with ROLE/EPOCH/PEER: {hooks:?}"
    );
    pair.wait_event(new_primary, mark, "hook_ran", |v| {
        v["detail"].as_str().unwrap_or("").starts_with("on_primary")
    });
    pair.assert_no_split_brain();

    // Clean shutdown releases everything.
    for h in Host::BOTH {
        let st = pair.terminate(h).expect("running");
        assert!(st.success(), "{} exits 0 on SIGTERM: {st:?}", h.name());
        assert!(
            !pair.holds(h, &p) && !pair.holds(h, &m),
            "{} released",
            h.name()
        );
    }
}

#[test]
fn recovery_only_reboots_the_primary_and_it_rejoins_as_primary() {
    let mut pair = Pair::new(Options::default());
    for h in Host::BOTH {
        pair.configure(h, |c| c.set("takeover", "false"));
    }
    let (primary, monitor) = pair.cold_start();
    let p = pair.p.clone();
    let mark = pair.mark();
    pair.port(primary, false);
    pair.wait_event(monitor, mark, "boot_result", |v| {
        v["detail"]
            .as_str()
            .unwrap_or("")
            .starts_with("reboot done")
    });
    assert_eq!(
        pair.fence_log(monitor),
        ["reboot"],
        "recovery only: a restart, no fence"
    );
    pair.wait_role(monitor, mark, "monitor");
    assert!(!pair.holds(monitor, &p), "recovery-only never takes P");
    // The rebooted host comes back, hears the monitor at M and is primary again (claim 11).
    pair.port(primary, true);
    let mark_r = pair.mark();
    pair.start(primary);
    pair.wait_event(primary, mark_r, "join_answered", |_| true);
    pair.wait_role(primary, mark_r, "primary");
    assert_roles(&pair, primary, monitor);
    pair.assert_no_split_brain();
}

#[test]
fn preferred_primary_wins_a_cold_start() {
    for preferred in [Host::A, Host::B] {
        let pair = Pair::new(Options::default());
        pair.configure(preferred, |c| c.set("preferred_primary", "true"));
        let (primary, _) = pair.cold_start();
        assert_eq!(primary, preferred);
    }
}

#[test]
fn a_failing_fence_never_lets_the_monitor_claim_p() {
    let mut pair = Pair::new(Options {
        fence_fails: true,
        ..Options::default()
    });
    let (primary, monitor) = pair.cold_start();
    let (p, m) = (pair.p.clone(), pair.m.clone());
    let mark = pair.mark();
    pair.port(primary, false);
    pair.wait_event(monitor, mark, "primary_failed", |_| true);
    // Several attempts, each failed and retried with backoff.
    let first = pair.wait_event(monitor, mark, "fence_failed", |_| true);
    let third = pair.wait_event(monitor, mark, "boot_requested", |v| {
        ts(v) > ts(&first) && v["detail"] == "off"
    });
    pair.wait_event(monitor, mark, "fence_failed", |v| ts(v) > ts(&third));
    pair.wait_event(monitor, mark, "hook_failed", |v| {
        v["detail"].as_str().unwrap_or("").starts_with("on_fault")
    });
    let st = pair.status(monitor);
    assert_eq!(st["role"], "booting", "{st}");
    assert!(
        st["last_boot"]["result"]
            .as_str()
            .unwrap_or("")
            .starts_with("failed")
            || st["last_boot"]["result"] == "running",
        "{st}"
    );
    assert!(!pair.holds(monitor, &p), "no fence, no takeover");
    assert!(pair.holds(monitor, &m), "the monitor keeps M");
    let events = pair.events(monitor);
    assert!(
        !events
            .iter()
            .any(|v| v["event"] == "address_claimed" && ts(v) > mark),
        "nothing was claimed after the failure"
    );
    assert!(pair.fence_log(monitor).iter().all(|l| l == "off"));
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains("password"), "no secrets in events");
    pair.assert_no_split_brain();
}

#[test]
fn kill_9_and_restart_never_makes_a_second_holder() {
    let mut pair = Pair::new(Options::default());
    let (primary, monitor) = pair.cold_start();
    let p = pair.p.clone();
    let mark_m = pair.mark();
    pair.kill9(primary);
    assert!(pair.holds(primary, &p), "a crashed daemon leaves P behind");
    pair.start(primary);
    // The restarted daemon must not keep the address it did not claim in this run, and the
    // monitor - seeing UDP heartbeats stop - fences the host and takes over.
    pair.wait_event(monitor, mark_m, "address_claimed", |v| {
        v["detail"].as_str().unwrap_or("").contains("primary")
    });
    assert!(pair.holds(monitor, &p));
    assert!(!pair.holds(primary, &p), "the fenced host holds nothing");
    pair.wait_event(monitor, mark_m, "boot_result", |v| {
        v["detail"].as_str().unwrap_or("").starts_with("on done")
    });
    let mark_r = pair.mark();
    pair.start(primary);
    pair.wait_role(primary, mark_r, "monitor");
    assert_roles(&pair, monitor, primary);
    pair.assert_no_split_brain();
}

#[test]
fn leftover_addresses_are_removed_before_joining() {
    let pair = Pair::new(Options::default());
    let (p, m) = (pair.p.clone(), pair.m.clone());
    // The watcher sees two holders when there are two: P on B as well as on A.
    pair.ns(Host::B)
        .ip(["addr", "add", &format!("{p}/24"), "dev", "eth0"]);
    pair.ns(Host::A)
        .ip(["addr", "add", &format!("{p}/24"), "dev", "eth0"]);
    while pair.both_held_p() == 0 {
        std::thread::yield_now();
    }
    pair.ns(Host::B)
        .ip(["addr", "del", &format!("{p}/24"), "dev", "eth0"]);
    pair.ns(Host::A)
        .ip(["addr", "del", &format!("{p}/24"), "dev", "eth0"]);
    // A crashed daemon's leftovers: both floating addresses on A, nobody else running.
    pair.ns(Host::A)
        .ip(["addr", "add", &format!("{p}/24"), "dev", "eth0"]);
    pair.ns(Host::A)
        .ip(["addr", "add", &format!("{m}/24"), "dev", "eth0"]);
    pair.start(Host::A);
    let ev = pair.wait_event(Host::A, 0, "address_released", |v| {
        v["detail"].as_str().unwrap_or("").contains("previous run")
    });
    assert_eq!(ev["role"], "joining", "{ev}");
    // Alone, it hears nobody and becomes monitor: P is not held by anyone.
    pair.wait_role(Host::A, 0, "monitor");
    assert!(!pair.holds(Host::A, &p), "P left by the crash was removed");
    assert!(pair.holds(Host::A, &m));
}

#[test]
fn bad_configs_are_refused_with_the_field_named() {
    let pair = Pair::new(Options::default());
    let (p, m) = (pair.p.clone(), pair.m.clone());
    let good = std::fs::read_to_string(pair.config_path(Host::A)).unwrap();
    for (edit, field) in [
        (
            good.replace("kind = \"udp\"", "kind = \"tcp\""),
            "heartbeat.kind",
        ),
        (
            good.replace("join_timeout = \"200ms\"", "join_timeout = \"soon\""),
            "join_timeout",
        ),
        (
            good.replace("method = \"command\"", "method = \"none\""),
            "boot.method",
        ),
        (
            good.replace("[hooks]", "[hooks]\non_boot = \"/bin/true\""),
            "on_boot",
        ),
        (
            good.replace(
                &format!("monitor = \"{m}/24\""),
                &format!("monitor = \"{p}/24\""),
            ),
            "addresses.monitor",
        ),
    ] {
        let path = pair.dir.join("bad.toml");
        std::fs::write(&path, edit).unwrap();
        let out = pair
            .ns(Host::A)
            .command(failover_bin())
            .args(["run", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{field}: {err}");
        assert!(err.contains(field), "error names {field}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!pair.dir.join("a.sock").exists(), "nothing was set up");
        assert!(!pair.holds(Host::A, &p) && !pair.holds(Host::A, &m));
    }
}

#[test]
fn the_monitor_holds_a_copy_of_the_primarys_data_and_serves_it_after_takeover() {
    let mut pair = Pair::new(Options::default());
    pair.with_sync("");
    let flag = pair.dir.join("fail-snapshot");
    let (primary, monitor) = pair.cold_start();
    let data = |h: Host| pair.dir.join(format!("data-{}", h.name()));
    std::fs::create_dir_all(data(primary).join("sub")).unwrap();
    std::fs::write(data(primary).join("sub/state"), "v1").unwrap();
    let wrote = mono_ns();
    // A copy that started after the write (one already running may carry the old tree).
    let started = pair.wait_event(monitor, 0, "sync_started", |v| ts(v) > wrote);
    pair.wait_event(monitor, 0, "sync_done", |v| ts(v) > ts(&started));
    assert_eq!(
        std::fs::read_to_string(data(monitor).join("sub/state")).unwrap(),
        "v1"
    );
    assert!(std::fs::symlink_metadata(data(monitor))
        .unwrap()
        .is_symlink());

    // A failing snapshot command is an event on both sides; the monitor keeps "v1".
    std::fs::write(&flag, "").unwrap();
    std::fs::write(data(primary).join("sub/state"), "v2").unwrap();
    let t = mono_ns();
    let failed = pair.wait_event(monitor, 0, "sync_failed", |v| ts(v) > t);
    assert!(
        failed["detail"]
            .as_str()
            .unwrap()
            .contains("snapshot refused"),
        "{failed}"
    );
    pair.wait_event(primary, 0, "sync_failed", |v| ts(v) > t);
    assert_eq!(
        std::fs::read_to_string(data(monitor).join("sub/state")).unwrap(),
        "v1"
    );
    std::fs::remove_file(&flag).unwrap();
    let t = mono_ns();
    let started = pair.wait_event(monitor, 0, "sync_started", |v| ts(v) > t);
    pair.wait_event(monitor, 0, "sync_done", |v| ts(v) > ts(&started));
    assert_eq!(
        std::fs::read_to_string(data(monitor).join("sub/state")).unwrap(),
        "v2"
    );
    let st = pair.status(monitor);
    assert!(st["sync"]["generation"].as_u64() >= Some(2), "{st}");
    assert!(st["sync"]["copies"].as_u64() >= Some(2), "{st}");

    // Takeover: the new primary says which copy it serves.
    let mark = pair.mark();
    pair.port(primary, false);
    let served = pair.wait_event(monitor, mark, "serving_copy", |_| true);
    assert!(
        served["detail"].as_str().unwrap().contains("generation"),
        "{served}"
    );
    assert_eq!(
        std::fs::read_to_string(data(monitor).join("sub/state")).unwrap(),
        "v2"
    );
    pair.assert_no_split_brain();
}

/// The "done when": a PostgreSQL-style tree (owned by a service user, `pg_wal` a
/// symlink to a directory beside the data) survives a takeover with owners, modes, mtimes and
/// the link intact.
#[test]
fn a_postgresql_style_tree_survives_a_takeover_with_owners_and_links_intact() {
    use std::os::unix::fs::{lchown, symlink, MetadataExt as _, PermissionsExt as _};
    let mut pair = Pair::new(Options::default());
    pair.with_sync("");
    let (primary, monitor) = pair.cold_start();
    let data = |h: Host| pair.dir.join(format!("data-{}", h.name()));
    let src = data(primary);
    // PGDATA in pgdata/, its WAL beside it in wal/: pgdata/pg_wal -> ../wal.
    for d in ["pgdata", "pgdata/base", "pgdata/base/1", "wal"] {
        std::fs::create_dir(src.join(d)).unwrap();
    }
    for (f, body) in [
        ("pgdata/PG_VERSION", "16\n"),
        ("pgdata/base/1/1234", "a relation"),
        ("wal/000000010000000000000001", "a wal segment"),
    ] {
        std::fs::write(src.join(f), body).unwrap();
        std::fs::set_permissions(src.join(f), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    symlink("../wal", src.join("pgdata/pg_wal")).unwrap();
    let all = [
        "pgdata/PG_VERSION",
        "pgdata/base/1/1234",
        "wal/000000010000000000000001",
        "pgdata/pg_wal",
        "pgdata/base/1",
        "pgdata/base",
        "pgdata",
        "wal",
        "",
    ];
    for (i, rel) in all.iter().enumerate() {
        let p = src.join(rel);
        lchown(&p, Some(70), Some(70)).unwrap();
        if std::fs::symlink_metadata(&p).unwrap().is_symlink() {
            continue;
        }
        if p.is_dir() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let t = std::time::UNIX_EPOCH
            + std::time::Duration::new(1_700_000_000 + i as u64, 100 + i as u32);
        std::fs::File::open(&p)
            .unwrap()
            .set_times(std::fs::FileTimes::new().set_modified(t))
            .unwrap();
    }
    let want = failover::sync::Manifest::scan(&src).unwrap();
    let wrote = mono_ns();
    // A copy that started after the tree was written.
    let started = pair.wait_event(monitor, 0, "sync_started", |v| ts(v) > wrote);
    pair.wait_event(monitor, 0, "sync_done", |v| ts(v) > ts(&started));

    let mark = pair.mark();
    pair.port(primary, false);
    pair.wait_event(monitor, mark, "fence_confirmed", |_| true);
    pair.wait_event(monitor, mark, "address_claimed", |v| {
        v["detail"].as_str().unwrap_or("").contains("primary")
    });
    pair.wait_event(monitor, mark, "serving_copy", |_| true);
    let dst = data(monitor);
    assert!(std::fs::symlink_metadata(&dst).unwrap().is_symlink());
    // Through the symlink to the current copy: everything, owners, modes, mtimes (to the
    // nanosecond), link targets and contents, as on the old primary.
    assert_eq!(failover::sync::Manifest::scan(&dst).unwrap(), want);
    for (i, rel) in all.iter().enumerate() {
        let md = std::fs::symlink_metadata(dst.join(rel)).unwrap();
        assert_eq!((md.uid(), md.gid()), (70, 70), "{rel:?}");
        if md.is_symlink() {
            continue;
        }
        let mode = if md.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(md.mode() & 0o7777, mode, "{rel:?}");
        assert_eq!(
            (md.mtime(), md.mtime_nsec()),
            (1_700_000_000 + i as i64, 100 + i as i64),
            "{rel:?}"
        );
    }
    let link = dst.join("pgdata/pg_wal");
    assert!(
        std::fs::symlink_metadata(&link).unwrap().is_symlink(),
        "a link, not a directory"
    );
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        std::path::Path::new("../wal")
    );
    assert_eq!(
        std::fs::read_to_string(link.join("000000010000000000000001")).unwrap(),
        "a wal segment"
    );
    pair.assert_no_split_brain();
}

#[test]
fn a_second_daemon_with_the_same_control_socket_refuses_to_start() {
    let pair = Pair::new(Options::default());
    pair.start(Host::A);
    pair.wait_role(Host::A, 0, "monitor");
    let out = pair
        .ns(Host::A)
        .command(failover_bin())
        .args(["run", "--config"])
        .arg(pair.config_path(Host::A))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("another failover daemon is running"), "{err}");
    assert_eq!(
        pair.status(Host::A)["role"],
        "monitor",
        "the first one is untouched"
    );
}

/// SIGHUP (`systemctl reload`): a safe change applies at once, one that needs a restart is
/// refused naming the field, and neither kills the daemon or moves P. SIGUSR1 is ignored.
#[test]
fn sighup_reloads_safe_changes_and_refuses_the_others() {
    let mut pair = Pair::new(Options::default());
    let (primary, monitor) = pair.cold_start();
    let p = pair.p.clone();
    let mark = pair.mark();
    pair.configure(primary, |c| c.extra = "[garp]\ncount = 3\n".into());
    pair.signal(primary, libc::SIGHUP);
    let ok = pair.wait_event(primary, mark, "config_reloaded", |_| true);
    assert!(
        ok["detail"].as_str().unwrap().contains("garp.count"),
        "{ok}"
    );
    let mark = pair.mark();
    pair.configure(primary, |c| c.primary = "10.91.0.200/24".into());
    pair.signal(primary, libc::SIGHUP);
    let no = pair.wait_event(primary, mark, "config_reload_refused", |_| true);
    assert!(
        no["detail"].as_str().unwrap().contains("addresses.primary"),
        "{no}"
    );
    pair.signal(primary, libc::SIGUSR1);
    pair.signal(primary, libc::SIGUSR2);
    // Still the primary, still serving P (the status socket answers after the signals).
    assert_eq!(pair.status(primary)["role"], "primary");
    assert!(pair.running(primary));
    assert!(pair.holds(primary, &p));
    assert!(!pair.emitted(monitor, 0, "primary_failed", |_| true));
    pair.assert_no_split_brain();
}

/// A flood to the heartbeat port from a client never reaches the primary's responder queue
/// (a kernel socket filter lets only the peer through): the monitor sees no failure.
#[test]
fn a_flood_to_the_heartbeat_port_does_not_starve_heartbeats() {
    let mut pair = Pair::new(Options::default());
    let (primary, monitor) = pair.cold_start();
    let mark = pair.mark();
    let flood = format!(
        "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         m=b'FOHB\\x01\\x01'+bytes(34)\nt=time.time()+3\nn=0\n\
         while time.time()<t:\n  s.sendto(m,('{}',7788)); n+=1\nprint(n)",
        pair.p
    );
    let out = pair
        .client
        .command("/usr/bin/python3")
        .args(["-c", &flood])
        .output()
        .expect("flood");
    let sent = String::from_utf8_lossy(&out.stdout).trim().to_string();
    eprintln!("flood: {sent} heartbeat requests from the client in 3 s");
    assert!(
        out.status.success() && sent.parse::<u64>().unwrap_or(0) > 1000,
        "{sent}"
    );
    assert!(
        !pair.emitted(monitor, mark, "primary_failed", |_| true),
        "the flood caused no failure decision"
    );
    assert_eq!(pair.status(monitor)["peer"]["state"], "alive");
    assert_eq!(pair.status(primary)["role"], "primary");
    pair.assert_no_split_brain();
}

/// Heartbeat replies forged from a third namespace, even with the monitor's real token (read
/// from its pinned map), are not counted (`rejected_source`): a cut primary is still detected
/// and fenced while the forgeries pour in.
#[test]
fn forged_replies_from_a_third_host_are_not_counted() {
    let mut pair = Pair::new(Options::default());
    let (primary, monitor) = pair.cold_start();
    let pins = pair.pins_of(monitor);
    let dump = |map: &str| -> serde_json::Value {
        let out = std::process::Command::new("bpftool")
            .args(["-j", "map", "dump", "pinned"])
            .arg(pins.join(map))
            .output()
            .expect("bpftool");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool JSON");
        // With BTF, `-j` puts the typed entry under "formatted".
        v[0].get("formatted")
            .cloned()
            .unwrap_or_else(|| v[0].clone())
    };
    let token = dump("FO_STREAMS")["key"]
        .as_u64()
        .expect("the heartbeat stream's token");
    let monitor_addr = pair.opts.addr(monitor.octet());
    let forge = format!(
        "import socket,struct,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         s.bind(('0.0.0.0',7788))\nt=time.time()+3\nq=0\n\
         while time.time()<t:\n  q+=1\n  \
         s.sendto(struct.pack('>IBBBBQQQII',0x464f4842,1,2,2,0,{token},q,9,1,0),('{monitor_addr}',40000))"
    );
    let mut forger = pair
        .client
        .command("/usr/bin/python3")
        .args(["-c", &forge])
        .spawn()
        .expect("forger");
    let rejected = || -> u64 {
        dump("FO_STATS")["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["value"]["rejected_source"].as_u64().unwrap_or(0))
            .sum()
    };
    // The forgeries reach XDP (polled from the pinned map: there is no event for it) ...
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while rejected() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no forged reply reached XDP"
        );
        std::thread::yield_now();
    }
    let rejected = rejected();
    // ... and do not hide the primary's failure while they keep coming.
    let mark = pair.mark();
    pair.port(primary, false);
    pair.wait_event(monitor, mark, "primary_failed", |_| true);
    pair.wait_event(monitor, mark, "fence_confirmed", |_| true);
    let _ = forger.wait();
    eprintln!("forged replies rejected by source before the cut: {rejected}");
    pair.assert_no_split_brain();
}

/// The cold-start race the duplicate-address probe cannot settle: both hosts join while they
/// cannot hear each other (their switch ports isolated, carrier up), so both claim M. When the
/// ports are joined, each host's check of M (an ARP request once a second) is answered by the
/// other: each defends once, asks the other, and the tie-break leaves M with one (equal
/// epochs, neither preferred: the lower node id, A). The other gives it up (`demoted`),
/// rejoins, hears M and becomes primary. Well before `startup_grace`, and nobody is fenced.
#[test]
fn a_cold_start_with_both_on_m_settles_without_a_fence() {
    let mut pair = Pair::new(Options::default());
    for h in Host::BOTH {
        pair.isolate(h, true);
    }
    let since = pair.mark();
    pair.start(Host::A);
    pair.start(Host::B);
    for h in Host::BOTH {
        pair.wait_role(h, since, "monitor");
    }
    let joined = pair.mark();
    for h in Host::BOTH {
        pair.isolate(h, false);
    }
    let demoted = pair.wait_event(Host::B, joined, "demoted", |_| true);
    assert!(
        demoted["detail"]
            .as_str()
            .is_some_and(|d| d.contains("monitor address")),
        "{demoted}"
    );
    let primary = pair.wait_role(Host::B, ts(&demoted), "primary");
    eprintln!(
        "ports joined -> B primary: {:.1} ms",
        (ts(&primary) - joined) as f64 / 1e6
    );
    assert_eq!(pair.status(Host::A)["role"], "monitor");
    assert!(
        !pair.emitted(Host::A, since, "demoted", |_| true),
        "A kept M"
    );
    for h in Host::BOTH {
        assert!(
            !pair.emitted(h, since, "boot_requested", |_| true),
            "nobody fenced"
        );
    }
    pair.assert_no_split_brain();
}

/// A primary that survived a takeover (a fence that did not remove it) and a monitor that was
/// primary after it: the monitor's heartbeats carry its higher epoch, the stale primary hands
/// P over as a leaving primary does (`demoted`, `leaving`), the monitor takes P without a
/// fence, and the old primary rejoins as monitor.
#[test]
fn a_primary_below_the_monitors_epoch_hands_p_over_without_a_fence() {
    let mut pair = Pair::new(Options::default());
    let (primary, monitor) = pair.cold_start();
    let a_epoch = pair.status(primary)["epoch"].as_u64().expect("epoch");
    // The monitor stops, and comes back with the epoch of a later takeover of its own.
    pair.terminate(monitor).expect("the monitor stopped");
    let later = a_epoch + 5;
    let dir = pair.config(monitor).state_dir;
    std::fs::create_dir_all(&dir).expect("state dir");
    std::fs::write(dir.join("epoch"), format!("{later}\n")).expect("write the epoch");
    let mark = pair.mark();
    pair.start(monitor);
    let demoted = pair.wait_event(primary, mark, "demoted", |_| true);
    assert!(
        demoted["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&format!("epoch {later}"))),
        "{demoted}"
    );
    let took = pair.wait_role(monitor, mark, "primary");
    let released = pair.wait_event(primary, mark, "address_released", |v| {
        v["detail"].as_str().unwrap_or("").contains("primary")
    });
    eprintln!(
        "TIMES demoted -> P released {:.1} ms, -> peer primary {:.1} ms",
        (ts(&released) as f64 - ts(&demoted) as f64) / 1e6,
        (ts(&took) as f64 - ts(&demoted) as f64) / 1e6
    );
    assert_eq!(
        pair.status(monitor)["epoch"].as_u64(),
        Some(later + 1),
        "the takeover goes above every epoch seen"
    );
    pair.wait_role(primary, ts(&demoted), "monitor");
    assert_roles(&pair, monitor, primary);
    assert!(
        pair.fence_log(monitor).is_empty() && pair.fence_log(primary).is_empty(),
        "nobody fenced: {:?} {:?}",
        pair.fence_log(monitor),
        pair.fence_log(primary)
    );
    pair.assert_no_split_brain();
}

/// What the daemon's environment holds (a BMC password through `boot.password_env`, say)
/// never reaches its hooks or its fence command: their environment is built from scratch.
#[test]
fn the_daemons_environment_never_reaches_its_hooks_or_fence_command() {
    const SECRET: &str = "s3cret-bmc-password-7f1d";
    let pair = Pair::new(Options {
        daemon_env: vec![("FAILOVER_TEST_BMC_PASSWORD", SECRET)],
        ..Options::default()
    });
    let (primary, monitor) = pair.cold_start();
    let mark = pair.mark();
    pair.port(primary, false);
    pair.wait_event(monitor, mark, "fence_confirmed", |_| true);
    pair.wait_event(monitor, mark, "hook_ran", |v| {
        v["detail"].as_str().unwrap_or("").starts_with("on_primary")
    });
    for (h, child) in [(monitor, "hook"), (monitor, "fence"), (primary, "hook")] {
        let env = pair.child_env(h, child);
        assert!(!env.is_empty(), "{} ran its {child}", h.name());
        assert!(
            env.iter().all(|l| !l.contains(SECRET)),
            "the secret reached {}'s {child}: {env:?}",
            h.name()
        );
        assert!(env.iter().any(|l| l.starts_with("PATH=")), "{env:?}");
        let own = if child == "hook" {
            "FAILOVER_HOOK="
        } else {
            "FAILOVER_ACTION="
        };
        assert!(env.iter().any(|l| l.starts_with(own)), "{env:?}");
    }
}
