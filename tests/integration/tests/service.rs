//! The daemon as a systemd service: the notify protocol (`Type=notify`), spoken to a small
//! listener that stands in for systemd, and the shipped unit.
use std::{
    os::unix::net::UnixDatagram,
    sync::mpsc,
    time::{Duration, Instant},
};

use failover_harness::{
    pair::{Options, Pair},
    require_root, TempDir,
};

/// How long any one notification may take to arrive (a hang guard, not a timing assertion).
const GUARD: Duration = Duration::from_secs(60);

/// Receives notifications (one datagram each: `KEY=value` lines) until `pred` holds for one;
/// returns it. Everything received on the way is kept in `seen`.
fn wait_for(
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> String {
    if let Some(m) = seen.iter().find(|m| pred(m)) {
        return m.clone();
    }
    let deadline = Instant::now() + GUARD;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {what} within {GUARD:?}; got {seen:?}"));
        seen.push(m.clone());
        if pred(&m) {
            return m;
        }
    }
}

/// Both daemons run with `NOTIFY_SOCKET` (and a 200 ms `WATCHDOG_USEC`) pointing at a
/// datagram socket of the test: READY with the settled role in STATUS, STATUS on a role change,
/// WATCHDOG pings, RELOADING then READY around SIGHUP, STOPPING at SIGTERM.
#[test]
fn the_daemon_speaks_the_notify_protocol_to_its_service_manager() {
    require_root("service");
    let dir = TempDir::new("fo-notify-");
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            if tx
                .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                .is_err()
            {
                return;
            }
        }
    });
    let socket: &'static str = Box::leak(path.display().to_string().into_boxed_str());
    let pair = Pair::new(Options {
        daemon_env: vec![("NOTIFY_SOCKET", socket), ("WATCHDOG_USEC", "200000")],
        ..Options::default()
    });
    let mut seen = Vec::new();
    let (primary, monitor) = pair.cold_start();
    let ready = wait_for(&rx, &mut seen, "READY=1", |m| {
        m.lines().any(|l| l == "READY=1")
    });
    assert!(
        ready.lines().any(|l| l.starts_with("STATUS=")),
        "READY comes with the settled role: {ready:?}"
    );
    wait_for(&rx, &mut seen, "the primary's STATUS", |m| {
        m.lines()
            .any(|l| l.starts_with("STATUS=primary, epoch 1, peer "))
    });
    wait_for(&rx, &mut seen, "the monitor's STATUS", |m| {
        m.lines().any(|l| l.starts_with("STATUS=monitor, epoch"))
    });
    // Pings from the heartbeat thread, every half of WATCHDOG_USEC.
    for _ in 0..3 {
        seen.clear();
        wait_for(&rx, &mut seen, "WATCHDOG=1", |m| m == "WATCHDOG=1\n");
    }
    // SIGHUP: RELOADING (with MONOTONIC_USEC), then READY again.
    seen.clear();
    pair.signal(monitor, libc::SIGHUP);
    let reloading = wait_for(&rx, &mut seen, "RELOADING=1", |m| {
        m.lines().any(|l| l == "RELOADING=1")
    });
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading:?}"
    );
    let at = seen.len();
    wait_for(&rx, &mut seen, "READY=1 after the reload", |m| {
        m.lines().any(|l| l == "READY=1")
    });
    assert!(seen.len() > at, "READY after RELOADING");
    // SIGTERM: STOPPING.
    seen.clear();
    for h in [monitor, primary] {
        assert!(pair.terminate(h).expect("running").success());
    }
    wait_for(&rx, &mut seen, "STOPPING=1", |m| {
        m.lines().any(|l| l == "STOPPING=1")
    });
}

/// The shipped unit passes `systemd-analyze verify` (its binary pointed at the build), and
/// grants what `failover run` checks for.
#[test]
fn the_shipped_unit_verifies_clean() {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/failover.service"),
    )
    .expect("packaging/failover.service");
    let bin = failover_harness::failover_bin();
    let dir = TempDir::new("fo-unit-");
    let path = dir.join("failover.service");
    std::fs::write(
        &path,
        unit.replace("/usr/sbin/failover", &bin.display().to_string()),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (package systemd)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
    let bounding = unit
        .lines()
        .find(|l| l.starts_with("CapabilityBoundingSet="))
        .expect("a capability bounding set");
    for cap in [
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_BPF",
        "CAP_PERFMON",
        "CAP_SYS_NICE",
    ] {
        assert!(bounding.contains(cap), "{cap} in {bounding}");
    }
}

/// Without the capabilities (as `nobody`), `failover run` on a valid configuration stops at
/// once and names each missing one with what it is for, before it touches anything.
#[test]
fn run_without_capabilities_names_the_missing_ones() {
    require_root("service");
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(failover_harness::failover_bin())
        .args(["run", "--config"])
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/host-a.toml"))
        .output()
        .expect("setpriv (util-linux)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for cap in ["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_BPF", "CAP_PERFMON"] {
        assert!(err.contains(cap), "{cap} named: {err}");
    }
    assert!(err.contains("uid 65534"), "{err}");
}

/// `failover status --watch` redraws the human status in place (ANSI clear, then every
/// subject aligned), again and again until it is stopped.
#[test]
fn status_watch_redraws_in_place() {
    use std::io::Read as _;
    let pair = Pair::new(Options::default());
    let (primary, _) = pair.cold_start();
    let mut child = pair
        .ns(primary)
        .command(pair.opts.failover())
        .args(["status", "--watch", "--interval", "100ms", "--socket"])
        .arg(pair.config(primary).socket)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("failover status --watch");
    let mut out = child.stdout.take().expect("piped");
    // Hang guard: a --watch that stops drawing without ending is killed, and the read below
    // then sees the end.
    let (done, guard) = mpsc::channel::<()>();
    let pid = child.id() as i32;
    std::thread::spawn(move || {
        if guard.recv_timeout(GUARD).is_err() {
            // SAFETY: kill(2) on the child this test started and has not reaped yet.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    // Read until the screen was cleared four times: the frame between the third and the
    // fourth clear is whole (a read may end in the middle of one).
    while text.matches("\x1b[H\x1b[2J").count() < 4 {
        let n = out.read(&mut buf).expect("read");
        assert!(n > 0, "--watch ended by itself: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let _ = done.send(());
    let _ = child.kill();
    let _ = child.wait();
    let last = text.split("\x1b[H\x1b[2J").nth(3).unwrap_or("");
    for label in ["node:", "role:", "P:", "holds:", "peer:", "last boot:"] {
        assert!(last.contains(label), "{label} in {last}");
    }
    assert!(last.contains("primary, epoch 1"), "{last}");
}

/// The metrics endpoint's text is valid OpenMetrics by the Prometheus project's own parser
/// (its Python client, in the test venv), with the series the docs list.
#[test]
fn the_metrics_parse_as_openmetrics() {
    let pair = Pair::new(Options::default());
    let (primary, monitor) = pair.cold_start();
    for h in [primary, monitor] {
        // The harness's fetch prints the body with a newline of its own.
        let text = format!("{}\n", pair.metrics(h).trim_end());
        let mut child =
            std::process::Command::new(failover_harness::bmc::venv_bin().join("python"))
                .args([
                    "-c",
                    "import sys\n\
             from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
             for f in text_string_to_metric_families(sys.stdin.read()):\n\
             \x20   print(f.name, f.type, len(f.samples))",
                ])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("the venv's python (cargo xtask setup)");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let parsed = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        for want in [
            "failover_probes_sent counter",
            "failover_role gauge",
            "failover_detection_seconds histogram",
            "failover_probe_rtt_seconds histogram",
        ] {
            assert!(parsed.contains(want), "{want} in {parsed}");
        }
    }
}

/// The Debian package (`cargo xtask package`; `cargo xtask test` builds it and names it in
/// `FAILOVER_DEB`), unpacked into a scratch root with `dpkg -x`: its binary runs, the shipped
/// example configuration passes `check-config` as installed, the unit and the conffiles are
/// there, and `man -l` renders its pages.
#[test]
fn the_debian_package_unpacks_into_a_scratch_root_and_works() {
    let deb = std::env::var_os("FAILOVER_DEB")
        .map(std::path::PathBuf::from)
        .expect("FAILOVER_DEB: run this through `cargo xtask test`, which builds the package");
    let root = TempDir::new("fo-deb-");
    let run = |c: &mut std::process::Command| {
        let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
        assert!(
            out.status.success(),
            "{c:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(std::process::Command::new("dpkg")
        .arg("-x")
        .arg(&deb)
        .arg(root.path()));
    let bin = root.join("usr/sbin/failover");
    let version = run(std::process::Command::new(&bin).arg("--version"));
    assert!(version.starts_with("failover "), "{version}");
    let checked = run(std::process::Command::new(&bin)
        .arg("check-config")
        .arg(root.join("etc/failover/failover.toml")));
    assert!(checked.contains(": ok ("), "{checked}");
    for f in [
        "usr/lib/systemd/system/failover.service",
        "etc/failover/fence-peer.sh",
        "usr/share/doc/failover/README.Debian",
        "usr/share/bash-completion/completions/failover",
        "usr/share/zsh/vendor-completions/_failover",
        "usr/share/fish/vendor_completions.d/failover.fish",
    ] {
        assert!(root.join(f).is_file(), "{f} in the package");
    }
    let conffiles = run(std::process::Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb)
        .arg("conffiles"));
    assert!(
        conffiles
            .lines()
            .any(|l| l == "/etc/failover/failover.toml"),
        "the configuration is a conffile: {conffiles}"
    );
    for (page, want) in [
        ("usr/share/man/man8/failover.8.gz", "failover"),
        ("usr/share/man/man8/failover-standby.8.gz", "standby"),
        (
            "usr/share/man/man5/failover.toml.5.gz",
            "configuration of the failover daemon",
        ),
    ] {
        let text = run(std::process::Command::new("man")
            .arg("-l")
            .arg(root.join(page))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100"));
        assert!(
            text.contains("NAME") && text.contains(want),
            "{page}: {text}"
        );
    }
}
