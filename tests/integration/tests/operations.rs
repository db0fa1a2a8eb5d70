//! The operator's commands over the control socket, in the running pair (`failover
//! maintenance`, `failover switchover`), and what the daemon tells the operator's programs
//! (hooks with their reasons, the event FIFO). A watcher samples both hosts' addresses throughout; P is never held twice.
use failover_harness::pair::{Host, Options, Pair};
use serde_json::Value;

fn ts(v: &Value) -> u64 {
    v["ts_ns"].as_u64().expect("ts_ns")
}

/// Runs `failover ARGS --socket <h's control socket>` on host `h` (in its network
/// namespace, as an operator would); returns (exit code, stdout, stderr).
fn ctl(pair: &Pair, h: Host, args: &[&str]) -> (i32, String, String) {
    let out = pair
        .ns(h)
        .command(pair.opts.failover())
        .args(args)
        .arg("--socket")
        .arg(pair.config(h).socket)
        .output()
        .expect("failover runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value of the `failover_maintenance` gauge of `h`.
fn maintenance_gauge(pair: &Pair, h: Host) -> Option<String> {
    pair.metrics(h)
        .lines()
        .find(|l| l.starts_with("failover_maintenance{"))
        .and_then(|l| l.rsplit(' ').next())
        .map(str::to_string)
}

fn armed(pair: &Pair, monitor: Host) {
    pair.wait_log(monitor, 0, "detection armed", |v| {
        v["message"] == "the primary answers: failure detection armed"
    });
}

/// In maintenance the monitor fences nobody and takes nothing over, across its own restart;
/// off again, a failed primary is fenced as before.
#[test]
fn maintenance_disarms_the_fence_across_a_restart_and_off_arms_it_again() {
    let mut pair = Pair::new(Options::default());
    let (primary, monitor) = pair.cold_start();
    armed(&pair, monitor);
    let mark = pair.mark();
    let (code, out, err) = ctl(&pair, monitor, &["maintenance", "on"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("maintenance on"), "{out}");
    pair.wait_event(monitor, mark, "maintenance_on", |_| true);
    let st = pair.status(monitor);
    assert!(st["maintenance"].is_object(), "{st}");
    assert_eq!(maintenance_gauge(&pair, monitor).as_deref(), Some("1"));

    // The primary freezes: held, not fenced.
    pair.signal(primary, libc::SIGSTOP);
    pair.wait_event(monitor, mark, "maintenance_held", |_| true);
    // The monitor restarts meanwhile: still in maintenance (state file), still no fence.
    pair.terminate(monitor);
    let restart = pair.mark();
    pair.start(monitor);
    pair.wait_event(monitor, restart, "maintenance_on", |_| true);
    pair.wait_role(monitor, restart, "monitor");
    pair.wait_event(monitor, restart, "maintenance_held", |_| true);
    assert!(pair.fence_log(monitor).is_empty(), "nothing was fenced");
    assert!(
        !pair.emitted(monitor, mark, "primary_failed", |_| true),
        "no failure decision in maintenance"
    );
    assert!(!pair.holds(monitor, &pair.p.clone()), "P not taken");
    // A bad request is refused with the reason, and changes nothing.
    let (code, _, err) = ctl(&pair, monitor, &["maintenance", "off", "--for", "1m"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--for goes with `maintenance on` only"),
        "{err}"
    );

    // Off: the next window of misses is judged, and the frozen primary is fenced.
    let off = pair.mark();
    let (code, out, err) = ctl(&pair, monitor, &["maintenance", "off"]);
    assert_eq!(code, 0, "{out}{err}");
    pair.wait_event(monitor, off, "maintenance_off", |_| true);
    pair.wait_event(monitor, off, "primary_failed", |_| true);
    pair.wait_event(monitor, off, "fence_confirmed", |_| true);
    let st = pair.status(monitor);
    assert!(st["maintenance"].is_null(), "{st}");
    pair.assert_no_split_brain();
}

/// `--for` ends the maintenance by itself, and what is not a request is refused without a
/// change.
#[test]
fn a_timed_maintenance_ends_by_itself() {
    let pair = Pair::new(Options::default());
    let (_, monitor) = pair.cold_start();
    armed(&pair, monitor);
    let mark = pair.mark();
    let (code, out, err) = ctl(&pair, monitor, &["maintenance", "on", "--for", "300ms"]);
    assert_eq!(code, 0, "{out}{err}");
    let on = pair.wait_event(monitor, mark, "maintenance_on", |_| true);
    let st = pair.status(monitor);
    assert!(
        st["maintenance"]["until_unix_ms"].as_u64().is_some(),
        "{st}"
    );
    let off = pair.wait_event(monitor, mark, "maintenance_off", |_| true);
    eprintln!(
        "TIMES maintenance --for 300ms lasted {:.1} ms",
        (ts(&off) - ts(&on)) as f64 / 1e6
    );
    pair.wait_status(monitor, "no maintenance", |st| st["maintenance"].is_null());
    assert_eq!(maintenance_gauge(&pair, monitor).as_deref(), Some("0"));
    // Garbage on the control socket: an error reply, the daemon runs on.
    let sock = pair.config(monitor).socket;
    let reply = {
        use std::io::{Read as _, Write as _};
        let mut c = std::os::unix::net::UnixStream::connect(&sock).expect("connect");
        c.write_all(b"{\"cmd\":\"reboot\"}\n").unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        s
    };
    let v: Value = serde_json::from_str(reply.trim()).expect("a JSON reply");
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["detail"].as_str().unwrap_or("").contains("not a request"),
        "{v}"
    );
    assert_eq!(pair.status(monitor)["role"], "monitor");
}

/// `failover switchover --wait` on the primary: the monitor takes P without a fence, the old
/// primary becomes its monitor, and the outage is printed. Refusals name their reason.
#[test]
fn a_switchover_moves_p_without_a_fence_and_the_old_primary_becomes_monitor() {
    let mut pair = Pair::new(Options::default());
    let (primary, monitor) = pair.cold_start();
    armed(&pair, monitor);
    // Refused on the monitor, and to a node that is not the peer.
    let (code, _, err) = ctl(&pair, monitor, &["switchover"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("a switchover starts on the primary"), "{err}");
    let (code, _, err) = ctl(&pair, primary, &["switchover", "--to", "nobody"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not this pair's peer"), "{err}");

    let mark = pair.mark();
    let peer = monitor.name();
    let (code, out, err) = ctl(&pair, primary, &["switchover", "--wait", "--to", peer]);
    assert_eq!(code, 0, "{out}{err}");
    eprintln!("TIMES {}", out.trim().replace('\n', " | "));
    assert!(out.contains("switchover done"), "{out}");
    assert!(out.contains("outage of P seen from this host"), "{out}");
    pair.wait_event(primary, mark, "switchover_started", |_| true);
    pair.wait_event(primary, mark, "switchover_done", |_| true);
    pair.wait_event(monitor, mark, "peer_left", |_| true);
    assert_eq!(pair.status(primary)["role"], "monitor");
    assert_eq!(pair.status(monitor)["role"], "primary");
    assert!(pair.holds(monitor, &pair.p.clone()));
    assert!(
        pair.fence_log(primary).is_empty() && pair.fence_log(monitor).is_empty(),
        "nobody was fenced"
    );
    assert!(!pair.emitted(monitor, mark, "primary_failed", |_| true));
    // The client is served by the new primary.
    assert!(pair.client_ping(&pair.p.clone()));
    // And back: the new primary's monitor is the old primary, heard on P.
    // (Since `mark`: armed may come before `--wait` returns.)
    pair.wait_log(primary, mark, "detection armed", |v| {
        v["message"] == "the primary answers: failure detection armed"
    });
    let (code, out, err) = ctl(&pair, monitor, &["switchover", "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    eprintln!("TIMES back: {}", out.trim().replace('\n', " | "));
    assert_eq!(pair.status(primary)["role"], "primary");
    pair.assert_no_split_brain();
}

/// A monitor that is not there (its daemon killed) makes the switchover refused: P stays.
#[test]
fn a_switchover_without_a_live_monitor_is_refused() {
    let pair = Pair::new(Options::default());
    let (primary, monitor) = pair.cold_start();
    armed(&pair, monitor);
    pair.kill9(monitor);
    // The check allows 2 s since the monitor last asked P anything.
    pair.wait_status(primary, "the monitor unheard for 2 s", |st| {
        st["peer"]["last_reply_age_ms"].as_u64() > Some(2000)
    });
    let (code, out, err) = ctl(&pair, primary, &["switchover"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("was not heard on P"), "{err}");
    eprintln!("{err}");
    assert_eq!(pair.status(primary)["role"], "primary");
    assert!(pair.holds(primary, &pair.p.clone()));
}

/// Reads `fifo` (created here; the daemon opens the existing FIFO) line by line in a thread
/// until its last writer closes it, as a program fed by `hooks.event_fifo` would.
fn read_fifo(fifo: &std::path::Path) -> std::sync::Arc<std::sync::Mutex<Vec<Value>>> {
    let st = std::process::Command::new("mkfifo")
        .arg("-m600")
        .arg(fifo)
        .status()
        .unwrap();
    assert!(st.success(), "mkfifo");
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (fifo, out) = (fifo.to_path_buf(), lines.clone());
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        // Blocks until the daemon opens it.
        let f = std::fs::File::open(fifo).expect("open the event FIFO");
        for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
            let v: Value = serde_json::from_str(&line).expect("each FIFO line is JSON");
            out.lock().unwrap().push(v);
        }
    });
    lines
}

/// Hooks say why: `on_switchover` with the switchover's outcome, `on_fault` with
/// `FAILOVER_REASON` (here `isolated`: the monitor's own link is cut), `on_stop` before the
/// daemon stops; and every event reaches `hooks.event_fifo` as a JSON line.
#[test]
fn hooks_say_why_and_every_event_reaches_the_event_fifo() {
    let mut pair = Pair::new(Options::default());
    let hook = pair.dir.join("hook.sh");
    let mut fifos = Vec::new();
    for h in Host::BOTH {
        let fifo = pair.dir.join(format!("notify-{}.fifo", h.name()));
        fifos.push(read_fifo(&fifo));
        pair.configure(h, |c| {
            c.hooks.push_str(&format!(
                "on_switchover = {hook:?}\non_stop = {hook:?}\nevent_fifo = {fifo:?}\n"
            ))
        });
    }
    let (primary, monitor) = pair.cold_start();
    armed(&pair, monitor);

    // The switchover: on_switchover on the host that handed P over.
    let mark = pair.mark();
    let (code, out, err) = ctl(&pair, primary, &["switchover", "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    pair.wait_event(primary, mark, "hook_ran", |v| {
        v["detail"]
            .as_str()
            .unwrap_or("")
            .starts_with("on_switchover")
    });
    let log = pair.hook_log(primary);
    assert!(
        log.iter()
            .any(|l| l.starts_with("on_switchover ") && l.ends_with(" switchover_done")),
        "{log:?}"
    );
    let (new_primary, new_monitor) = (monitor, primary);

    // The new monitor's own link goes: isolated, and on_fault says so.
    pair.wait_log(new_monitor, mark, "detection armed", |v| {
        v["message"] == "the primary answers: failure detection armed"
    });
    let mark = pair.mark();
    pair.port(new_monitor, false);
    pair.wait_event(new_monitor, mark, "isolated", |_| true);
    pair.wait_event(new_monitor, mark, "hook_failed", |v| {
        v["detail"].as_str().unwrap_or("").starts_with("on_fault")
    });
    let log = pair.hook_log(new_monitor);
    assert!(
        log.iter()
            .any(|l| l.starts_with("on_fault ") && l.ends_with(" isolated")),
        "{log:?}"
    );
    assert!(
        pair.child_env(new_monitor, "hook")
            .contains(&"FAILOVER_REASON=isolated".to_string()),
        "the reason is in the hook's environment"
    );
    pair.port(new_monitor, true);
    assert!(
        pair.holds(new_primary, &pair.p.clone()),
        "nobody was fenced"
    );

    // A stop runs on_stop, and waits for it.
    let mark = pair.mark();
    let st = pair.terminate(new_monitor).expect("running");
    assert!(st.success(), "{st:?}");
    let ran = pair.wait_event(new_monitor, mark, "hook_ran", |v| {
        v["detail"].as_str().unwrap_or("").starts_with("on_stop")
    });
    let stopped = pair.wait_event(new_monitor, mark, "daemon_stopped", |_| true);
    assert!(ts(&ran) < ts(&stopped), "the stop waited for on_stop");
    let log = pair.hook_log(new_monitor);
    assert!(
        log.iter()
            .any(|l| l.starts_with("on_stop ") && l.ends_with(" stop")),
        "{log:?}"
    );

    // Its FIFO carried the same events, as JSON lines naming the node. The daemon has
    // stopped, so the reader has seen everything it wrote.
    let lines = fifos[new_monitor.index()].lock().unwrap().clone();
    for name in [
        "switchover_started",
        "switchover_done",
        "isolated",
        "hook_ran",
    ] {
        assert!(
            lines.iter().any(|v| v["event"] == name),
            "{name} on the FIFO: {lines:?}"
        );
    }
    assert!(lines
        .iter()
        .all(|v| v["node"] == new_monitor.name() && v["ts_ns"].as_u64().is_some()));
    pair.assert_no_split_brain();
}

/// Dual-stack P: an IPv4 and an IPv6 primary address move as one. Both are claimed at the cold
/// start and answer the client; when the primary fails, the fence takes both away with it and
/// the new primary claims both, and the client reaches both there.
#[test]
fn a_dual_stack_primary_moves_as_one() {
    let mut pair = Pair::new(Options::default());
    let p6 = "fd91::100";
    for h in Host::BOTH {
        pair.configure(h, |c| c.primary_extra = vec![format!("{p6}/64")]);
    }
    pair.client
        .ip(["addr", "add", "fd91::3/64", "dev", "eth0", "nodad"]);
    let p4 = pair.p.clone();
    let (primary, monitor) = pair.cold_start();
    assert!(pair.holds(primary, &p4) && pair.holds(primary, p6));
    assert!(!pair.holds(monitor, &p4) && !pair.holds(monitor, p6));
    let st = pair.status(primary);
    assert_eq!(
        st["primary_addresses"],
        serde_json::json!([format!("{p4}/24"), format!("{p6}/64")]),
        "{st}"
    );
    assert!(pair.client_ping(&p4) && pair.client_ping(p6), "both served");

    let mark = pair.mark();
    pair.port(primary, false);
    pair.wait_event(monitor, mark, "fence_confirmed", |_| true);
    let claimed = pair.wait_event(monitor, mark, "address_claimed", |v| {
        v["detail"].as_str().unwrap_or("").contains("primary")
    });
    eprintln!("claimed: {}", claimed["detail"]);
    assert!(
        pair.holds(monitor, &p4) && pair.holds(monitor, p6),
        "both moved"
    );
    assert!(
        !pair.holds(primary, &p4) && !pair.holds(primary, p6),
        "the fenced host holds neither"
    );
    pair.wait_event(monitor, mark, "garp_sent", |v| {
        let d = v["detail"].as_str().unwrap_or("");
        d.contains(&p4) && d.contains(p6)
    });
    assert!(
        pair.client_ping(&p4) && pair.client_ping(p6),
        "both served again"
    );
    pair.assert_no_split_brain();
}

/// Writes `check-<host>.sh` beside the configurations: it fails while `fail-<host>` exists
/// there. Returns its path.
fn check_script(pair: &Pair, h: Host) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = pair.dir.join(format!("check-{}.sh", h.name()));
    let flag = pair.dir.join(format!("fail-{}", h.name()));
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nif [ -e {flag:?} ]; then echo \"service down (test)\"; exit 1; fi\nexit 0\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A failing health check on the primary hands P to the monitor as a switchover (no fence),
/// and on_fault says `check_failed`. The old primary, now monitor with the check still
/// failing, refuses to take P when the new primary dies; once the check passes again it fences
/// and takes over as usual.
#[test]
fn a_failing_check_hands_p_over_and_a_failing_monitor_refuses_takeovers() {
    let mut pair = Pair::new(Options::default());
    for h in Host::BOTH {
        let script = check_script(&pair, h);
        pair.configure(h, |c| {
            c.extra.push_str(&format!(
                "[[check]]\nname = \"service\"\ncommand = {script:?}\ninterval = \"100ms\"\n\
                 timeout = \"100ms\"\nfall = 2\nrise = 1\n"
            ))
        });
    }
    let (primary, monitor) = pair.cold_start();
    armed(&pair, monitor);
    let st = pair.status(primary);
    assert_eq!(st["checks"][0]["name"], "service", "{st}");
    assert_eq!(st["checks"][0]["ok"], true, "{st}");

    let mark = pair.mark();
    std::fs::write(pair.dir.join(format!("fail-{}", primary.name())), "").unwrap();
    let failed = pair.wait_event(primary, mark, "check_failed", |_| true);
    let detail = failed["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("service down (test)") && detail.contains("handing P to the monitor"),
        "{failed}"
    );
    pair.wait_event(primary, mark, "switchover_done", |_| true);
    assert_eq!(pair.status(monitor)["role"], "primary");
    assert!(pair.holds(monitor, &pair.p.clone()));
    assert!(
        pair.fence_log(primary).is_empty() && pair.fence_log(monitor).is_empty(),
        "nobody was fenced"
    );
    assert!(pair
        .child_env(primary, "hook")
        .contains(&"FAILOVER_REASON=check_failed".to_string()));
    let gauge = pair
        .metrics(primary)
        .lines()
        .find(|l| l.starts_with("failover_check_up{"))
        .map(str::to_string);
    assert!(
        gauge
            .as_deref()
            .is_some_and(|g| g.contains("check=\"service\"") && g.ends_with(" 0")),
        "{gauge:?}"
    );

    // The new primary dies while the old one's check still fails: no fence, no takeover.
    let (new_primary, new_monitor) = (monitor, primary);
    pair.wait_log(new_monitor, mark, "detection armed", |v| {
        v["message"] == "the primary answers: failure detection armed"
    });
    let mark = pair.mark();
    pair.kill9(new_primary);
    let refused = pair.wait_event(new_monitor, mark, "takeover_refused", |_| true);
    assert!(
        refused["detail"]
            .as_str()
            .unwrap_or("")
            .contains("health check fails"),
        "{refused}"
    );
    assert!(!pair.emitted(new_monitor, mark, "primary_failed", |_| true));
    assert!(pair.fence_log(new_monitor).is_empty(), "not fenced");

    // The check passes again: the dead primary is judged afresh, fenced and taken over.
    std::fs::remove_file(pair.dir.join(format!("fail-{}", new_monitor.name()))).unwrap();
    pair.wait_event(new_monitor, mark, "check_ok", |_| true);
    pair.wait_event(new_monitor, mark, "fence_confirmed", |_| true);
    pair.wait_event(new_monitor, mark, "address_claimed", |v| {
        v["detail"].as_str().unwrap_or("").contains("primary")
    });
    pair.assert_no_split_brain();
}

/// Standby: the primary hands P to its monitor and then holds nothing and judges nobody. The
/// peer serves alone, also across its own restart (its join hears "standby" from this host
/// and claims P without a monitor to fence anyone), and never fences the standby host. The
/// standby survives the standby host's restart; off, it joins as the monitor.
#[test]
fn standby_holds_nothing_the_peer_serves_alone_and_off_rejoins_as_monitor() {
    let mut pair = Pair::new(Options::default());
    let (primary, monitor) = pair.cold_start();
    armed(&pair, monitor);
    let (p, m) = (pair.p.clone(), pair.m.clone());

    let mark = pair.mark();
    let (code, out, err) = ctl(&pair, primary, &["standby", "on"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("standby on (was primary)"), "{out}");
    pair.wait_event(primary, mark, "standby_on", |_| true);
    pair.wait_role(monitor, mark, "primary");
    assert_eq!(pair.status(primary)["role"], "standby");
    assert!(!pair.holds(primary, &p) && !pair.holds(primary, &m));
    assert!(pair.holds(monitor, &p));
    let (code, out, _) = ctl(&pair, primary, &["standby", "on"]);
    assert_eq!(code, 0);
    assert!(out.contains("already in standby"), "{out}");

    // The serving host restarts: its join hears the standby host and it serves P alone.
    let serving = monitor;
    assert!(pair.terminate(serving).expect("running").success());
    let mark = pair.mark();
    pair.start(serving);
    let joined = pair.wait_event(serving, mark, "join_answered", |_| true);
    assert!(
        joined["detail"].as_str().unwrap_or("").contains("standby"),
        "{joined}"
    );
    pair.wait_role(serving, mark, "primary");
    assert!(pair.holds(serving, &p) && !pair.holds(serving, &m));

    // The standby host restarts: still in standby.
    let standby = primary;
    assert!(pair.terminate(standby).expect("running").success());
    let mark = pair.mark();
    pair.start(standby);
    pair.wait_event(standby, mark, "standby_on", |_| true);
    assert_eq!(pair.status(standby)["role"], "standby");

    // Off: it joins, hears P answer and M silent, and becomes the monitor.
    let mark = pair.mark();
    let (code, out, err) = ctl(&pair, standby, &["standby", "off"]);
    assert_eq!(code, 0, "{out}{err}");
    pair.wait_event(standby, mark, "standby_off", |_| true);
    pair.wait_role(standby, mark, "monitor");
    assert!(pair.holds(standby, &m) && pair.holds(serving, &p));
    assert!(
        pair.fence_log(standby).is_empty() && pair.fence_log(serving).is_empty(),
        "nobody was fenced"
    );
    pair.assert_no_split_brain();
}
