//! The operator's commands over the control socket, in the running pair: `failover
//! maintenance`. A watcher samples both hosts' addresses throughout; P is never held twice.
use std::process::Command;

use failover_harness::pair::{Host, Options, Pair};
use serde_json::Value;

fn ts(v: &Value) -> u64 {
    v["ts_ns"].as_u64().expect("ts_ns")
}

/// Runs `failover ARGS --socket <h's control socket>`; returns (exit code, stdout, stderr).
fn ctl(pair: &Pair, h: Host, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(pair.opts.failover())
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
    let (samples, both) = pair.stop_watch();
    assert!(samples > 0);
    assert_eq!(
        both, 0,
        "P was held by both hosts in {both} of {samples} samples"
    );
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
