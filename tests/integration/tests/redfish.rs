//! `failover bmc` against the real sushy-emulator (HTTPS, basic auth, fake driver) and, for
//! what sushy cannot do (sessions, 202 + task monitor, If-Match, misbehaving services), the
//! small mock in tests/harness/mock_bmc.py. Every BMC runs in a namespace of its own.
//!
//! sushy applies power changes 1-11 s after a reset (randomly): the strategy tests wait for
//! them. Round-trip times are printed, never asserted.
use std::process::Output;

use failover_harness::{
    bmc::{Bmc, FakeSystem, MOCK_PASSWORD, SUSHY_PASSWORD, USER},
    config::Fence,
    failover_bin, last_json_line,
    pair::{Host, Options, Pair},
    require_root, NetNs,
};

const A: FakeSystem = FakeSystem {
    name: "host-a",
    uuid: "aaaaaaaa-0000-4000-8000-00000000000a",
    power: "On",
};
const B: FakeSystem = FakeSystem {
    name: "host-b",
    uuid: "bbbbbbbb-0000-4000-8000-00000000000b",
    power: "On",
};

fn bmc(ns: &NetNs, bmc: &Bmc, args: &[&str]) -> Output {
    let mut c = ns.command(failover_bin());
    c.arg("bmc")
        .args(args)
        .args(["--url", &bmc.url, "--username", USER]);
    if !args.iter().any(|a| a.starts_with("--password")) {
        c.arg("--password-file").arg(&bmc.password_file);
    }
    let has_tls_flag = args.iter().any(|a| *a == "--insecure" || *a == "--ca-file");
    if let (Some(certs), false) = (&bmc.certs, has_tls_flag) {
        c.arg("--ca-file").arg(&certs.ca);
    }
    if bmc.certs.is_none() && !has_tls_flag {
        c.arg("--insecure");
    }
    c.output().expect("run failover bmc")
}

fn ok_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    last_json_line(&out.stdout)
}

fn fails_with(out: &Output, needle: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "expected failure: {err}");
    assert!(err.contains(needle), "error names {needle:?}: {err}");
    for secret in [SUSHY_PASSWORD, MOCK_PASSWORD] {
        assert!(!err.contains(secret), "no password in errors: {err}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains(secret));
    }
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn check_over_https_with_basic_auth_finds_the_only_system() {
    require_root("redfish");
    let ns = NetNs::new("fo-rf");
    let b = Bmc::sushy(&ns, "127.0.0.1", &[B]);
    let v = ok_json(&bmc(&ns, &b, &["check", "--json"]));
    eprintln!(
        "bmc check round trip (connect, root, systems, system): {} ms",
        v["ms"]
    );
    assert_eq!(v["system"], format!("/redfish/v1/Systems/{}", B.uuid));
    assert_eq!(v["power_state"], "On");
    assert_eq!(v["auth"], "basic", "sushy has no SessionService");
    let types: Vec<&str> = v["reset_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"ForceOff") && types.contains(&"On"),
        "{types:?}"
    );

    // A wrong password is a 401 that names the request, never the password.
    let wrong = b.dir.join("wrong");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let out = bmc(
        &ns,
        &b,
        &["check", "--password-file", wrong.to_str().unwrap()],
    );
    fails_with(&out, "401");
    // The password from an environment variable works too; a missing one is named.
    let out = ns
        .command(failover_bin())
        .args(["bmc", "check", "--url", &b.url, "--username", USER])
        .args(["--password-env", "FO_BMC_PW", "--ca-file"])
        .arg(&b.certs.as_ref().unwrap().ca)
        .env("FO_BMC_PW", SUSHY_PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = bmc(&ns, &b, &["check", "--password-env", "FO_NO_SUCH_VARIABLE"]);
    fails_with(&out, "FO_NO_SUCH_VARIABLE");
}

#[test]
fn tls_is_verified_unless_insecure_is_asked_for() {
    require_root("redfish");
    let ns = NetNs::new("fo-rf");
    let b = Bmc::sushy(&ns, "127.0.0.1", &[B]);
    let other = b.certs.as_ref().unwrap().other_ca.clone();
    let out = bmc(&ns, &b, &["check", "--ca-file", other.to_str().unwrap()]);
    fails_with(&out, "certificate");
    let out = bmc(&ns, &b, &["check", "--json", "--insecure"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    ok_json(&out);
    assert!(
        err.contains("insecure"),
        "--insecure is warned about: {err}"
    );
    // A plain http:// URL is refused without --insecure.
    let out = ns
        .command(failover_bin())
        .args([
            "bmc",
            "check",
            "--url",
            "http://127.0.0.1:8000",
            "--username",
            USER,
        ])
        .arg("--password-file")
        .arg(&b.password_file)
        .output()
        .unwrap();
    fails_with(&out, "clear text");
}

#[test]
fn discovery_with_several_systems_needs_a_selector_and_refuses_ambiguity() {
    require_root("redfish");
    let ns = NetNs::new("fo-rf");
    let b = Bmc::sushy(&ns, "127.0.0.1", &[A, B]);
    fails_with(&bmc(&ns, &b, &["check"]), "2 systems");
    let path = format!("/redfish/v1/Systems/{}", A.uuid);
    for sel in ["host-a", A.uuid, path.as_str()] {
        let v = ok_json(&bmc(&ns, &b, &["check", "--json", "--system", sel]));
        assert_eq!(v["system"], path, "selected by {sel}");
    }
    fails_with(&bmc(&ns, &b, &["check", "--system", "host-z"]), "host-z");
}

#[test]
fn off_on_and_restart_strategies_against_sushy() {
    require_root("redfish");
    let ns = NetNs::new("fo-rf");
    let b = Bmc::sushy(&ns, "127.0.0.1", &[B]);
    let v = ok_json(&bmc(&ns, &b, &["reset", "--strategy", "off", "--json"]));
    eprintln!("off (ForceOff, then PowerState Off): {} ms", v["ms"]);
    assert_eq!(
        ok_json(&bmc(&ns, &b, &["check", "--json"]))["power_state"],
        "Off"
    );
    // Off again is confirmed at once: the state is what counts.
    ok_json(&bmc(&ns, &b, &["reset", "--strategy", "off", "--json"]));
    let v = ok_json(&bmc(&ns, &b, &["reset", "--strategy", "on", "--json"]));
    eprintln!("on (On, then PowerState On): {} ms", v["ms"]);
    assert_eq!(
        ok_json(&bmc(&ns, &b, &["check", "--json"]))["power_state"],
        "On"
    );
    // restart: Nmi is allowed but the fake driver answers 501: fall to ForceRestart.
    let out = bmc(
        &ns,
        &b,
        &[
            "reset",
            "--strategy",
            "restart",
            "--types",
            "Nmi,ForceRestart",
            "--json",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    ok_json(&out);
    assert!(err.contains("501"), "the refused type is reported: {err}");
    // A single type that is refused is an error naming it and the status.
    fails_with(&bmc(&ns, &b, &["reset", "--type", "Nmi"]), "501");
    fails_with(&bmc(&ns, &b, &["reset", "--type", "Bogus"]), "allows");
}

#[test]
fn unreachable_silent_and_broken_bmcs_are_clear_errors() {
    require_root("redfish");
    let ns = NetNs::new("fo-rf");
    // Nothing listens: connection refused.
    let out = ns
        .command(failover_bin())
        .args([
            "bmc",
            "check",
            "--url",
            "http://127.0.0.1:8009",
            "--insecure",
        ])
        .args([
            "--username",
            USER,
            "--password-env",
            "HOME",
            "--retries",
            "1",
        ])
        .output()
        .unwrap();
    fails_with(&out, "cannot connect");
    // Accepts and never answers: the request timeout ends it.
    let silent = Bmc::mock(&ns, "silent");
    let out = bmc(
        &ns,
        &silent,
        &["check", "--request-timeout", "1s", "--retries", "0"],
    );
    fails_with(&out, "no answer within the timeout");
    drop(silent);
    let garbage = Bmc::mock(&ns, "garbage");
    fails_with(&bmc(&ns, &garbage, &["check"]), "not JSON");
    drop(garbage);
    let noreset = Bmc::mock(&ns, "noreset");
    fails_with(
        &bmc(&ns, &noreset, &["check"]),
        "no #ComputerSystem.Reset action",
    );
}

#[test]
fn sessions_task_monitors_and_if_match_against_the_mock() {
    require_root("redfish");
    let ns = NetNs::new("fo-rf");
    let m = Bmc::mock(&ns, "full");
    let v = ok_json(&bmc(&ns, &m, &["check", "--json"]));
    assert_eq!(v["auth"], "session");
    assert_eq!(
        v["reset_types"],
        serde_json::json!(["On", "ForceOff", "ForceRestart"]),
        "read from the ActionInfo resource"
    );
    // ForceOff: 428 without If-Match, then with the ETag: 202 + task monitor, polled to the end.
    let v = ok_json(&bmc(&ns, &m, &["reset", "--strategy", "off", "--json"]));
    eprintln!("off through a task monitor (Retry-After 1): {} ms", v["ms"]);
    let log = m.requests();
    assert!(
        log.iter()
            .any(|l| l.starts_with("GET /redfish/v1/TaskMonitors/")),
        "{log:?}"
    );
    let sessions_made = log
        .iter()
        .filter(|l| *l == "POST /redfish/v1/SessionService/Sessions")
        .count();
    let sessions_ended = log
        .iter()
        .filter(|l| l.starts_with("DELETE /redfish/v1/SessionService/Sessions/"))
        .count();
    assert_eq!(
        sessions_made, sessions_ended,
        "every session is deleted: {log:?}"
    );
    assert_eq!(
        ok_json(&bmc(&ns, &m, &["check", "--json"]))["power_state"],
        "Off"
    );
    // Wrong credentials: the session POST is refused.
    let wrong = m.dir.join("wrong");
    std::fs::write(&wrong, "nope\n").unwrap();
    fails_with(
        &bmc(
            &ns,
            &m,
            &["check", "--password-file", wrong.to_str().unwrap()],
        ),
        "401",
    );
}

/// The daemon fences through sushy over HTTPS and claims P only after it read PowerState Off,
/// then powers the peer back on through the BMC; the peer rejoins as monitor.
///
/// sushy's fake driver powers nothing: after the fence the test itself "powers off" the old
/// primary (kills its processes, flushes its addresses), which the real lab BMC of the lab
/// issue does on its own. The split-brain watcher therefore only covers the cold start here;
/// the command-fence tests in daemon_pair.rs cover the takeover with a real power-off.
#[test]
fn daemon_fences_through_sushy_and_claims_p_only_after_power_off() {
    let mut pair = Pair::new(Options::default());
    pair.sw.ip(["addr", "add", "10.91.0.250/24", "dev", "br0"]);
    let b = Bmc::sushy(&pair.sw, "10.91.0.250", &[A, B]);
    let ca = b.certs.as_ref().unwrap().ca.clone();
    fence_through(
        &pair,
        &b,
        &b.password_file,
        "power_poll = \"50ms\"\nfence_timeout = \"30s\"\ntimeout = \"30s\"\n\
         retry = \"200ms\"\nretry_max = \"1s\"\n",
    );
    let (primary, monitor) = pair.cold_start();
    let (samples, both) = pair.stop_watch();
    assert!(samples > 0);
    assert_eq!(both, 0, "no split brain during the cold start");
    let system = format!("host-{}", primary.name());
    let power = |pair: &Pair| {
        let out = pair
            .ns(monitor)
            .command(failover_bin())
            .args([
                "bmc",
                "check",
                "--json",
                "--url",
                &b.url,
                "--username",
                USER,
            ])
            .args(["--system", &system, "--password-file"])
            .arg(&b.password_file)
            .arg("--ca-file")
            .arg(&ca)
            .output()
            .unwrap();
        ok_json(&out)["power_state"].as_str().unwrap().to_string()
    };
    assert_eq!(power(&pair), "On");

    let mark = pair.mark();
    pair.port(primary, false);
    let fenced = pair.wait_event(monitor, mark, "fence_confirmed", |_| true);
    let claimed = pair.wait_event(monitor, mark, "address_claimed", |v| {
        v["detail"].as_str().unwrap_or("").contains("primary")
    });
    let off = pair.wait_event(monitor, mark, "boot_result", |v| {
        v["detail"].as_str().unwrap_or("").starts_with("off done")
    });
    eprintln!("redfish fence: {}", off["detail"]);
    assert!(off["ts_ns"].as_u64() <= fenced["ts_ns"].as_u64());
    assert!(
        fenced["ts_ns"].as_u64() < claimed["ts_ns"].as_u64(),
        "P claimed only after Off was read"
    );
    // "Power off" the old primary as a real BMC would have.
    let old = pair.ns(primary).name().to_string();
    let pids = std::process::Command::new("ip")
        .args(["netns", "pids", &old])
        .output()
        .unwrap();
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        let _ = std::process::Command::new("kill")
            .args(["-9", pid])
            .status();
    }
    pair.ns(primary)
        .ip(["addr", "flush", "dev", "eth0", "scope", "global"]);
    pair.ns(primary).ip([
        "addr",
        "add",
        &pair.opts.cidr(primary.octet()),
        "dev",
        "eth0",
    ]);
    assert!(pair.holds(monitor, &pair.p.clone()));

    // The new primary powers the fenced host back on through the BMC.
    let on = pair.wait_event(monitor, mark, "boot_result", |v| {
        v["detail"].as_str().unwrap_or("").starts_with("on ")
    });
    assert!(
        on["detail"].as_str().unwrap().starts_with("on done"),
        "{on}"
    );
    assert_eq!(power(&pair), "On");
    pair.port(primary, true);
    let mark_r = pair.mark();
    pair.start(primary);
    pair.wait_role(primary, mark_r, "monitor");
    assert!(pair.holds(primary, &pair.m.clone()));
    let text = serde_json::to_string(&pair.events(monitor)).unwrap();
    assert!(!text.contains(SUSHY_PASSWORD), "no password in events");
}

/// A BMC that refuses the fence (here: a wrong password, 401) means no takeover: fence_failed,
/// retries, P never claimed, and the password never shows.
#[test]
fn daemon_never_takes_p_when_the_bmc_refuses() {
    let mut pair = Pair::new(Options::default());
    pair.sw.ip(["addr", "add", "10.91.0.250/24", "dev", "br0"]);
    let b = Bmc::sushy(&pair.sw, "10.91.0.250", &[A, B]);
    let wrong = b.dir.join("wrong");
    std::fs::write(&wrong, "wrong-password\n").unwrap();
    fence_through(
        &pair,
        &b,
        &wrong,
        "retry = \"200ms\"\nretry_max = \"400ms\"\n",
    );
    let (primary, monitor) = pair.cold_start();
    let p = pair.p.clone();
    let mark = pair.mark();
    pair.port(primary, false);
    let first = pair.wait_event(monitor, mark, "fence_failed", |_| true);
    pair.wait_event(monitor, mark, "fence_failed", |v| {
        v["ts_ns"].as_u64() > first["ts_ns"].as_u64()
    });
    let result = pair.wait_event(monitor, mark, "boot_result", |_| true);
    assert!(
        result["detail"].as_str().unwrap().contains("401"),
        "{result}"
    );
    let st = pair.status(monitor);
    assert_eq!(st["role"], "booting", "{st}");
    assert!(!pair.holds(monitor, &p), "no confirmed fence, no takeover");
    assert!(
        !pair
            .events(monitor)
            .iter()
            .any(|v| v["event"] == "address_claimed" && v["ts_ns"].as_u64() > Some(mark)),
        "nothing claimed"
    );
    let text = serde_json::to_string(&pair.events(monitor)).unwrap() + &st.to_string();
    assert!(!text.contains("wrong-password") && !text.contains(SUSHY_PASSWORD));
    let (_, both) = pair.stop_watch();
    assert_eq!(both, 0, "P never on both hosts");
}

/// Fence levels: the first (Redfish with a wrong password, 401) fails, the second - Debian's
/// `fence_redfish` from fence-agents through `method = "agent"`, options and password on its
/// stdin - powers the peer off at sushy and confirms it with `action=status` (exit 2). Only
/// then is P claimed; the password shows in no event, log line or child command line.
#[test]
fn a_failed_first_level_falls_to_fence_redfish_which_confirms_off() {
    let mut pair = Pair::new(Options::default());
    pair.sw.ip(["addr", "add", "10.91.0.250/24", "dev", "br0"]);
    let b = Bmc::sushy(&pair.sw, "10.91.0.250", &[A, B]);
    let wrong = b.dir.join("wrong");
    std::fs::write(&wrong, "wrong-password\n").unwrap();
    let ca = b.certs.as_ref().unwrap().ca.clone();
    for h in Host::BOTH {
        let peer = if h.other() == Host::A { &A } else { &B };
        let levels = format!(
            "[[boot.level]]\nmethod = \"redfish\"\nurl = {url:?}\nsystem = \"host-{peer_name}\"\n\
             username = {USER:?}\npassword_file = {wrong:?}\nca_file = {ca:?}\ntimeout = \"10s\"\n\
             [[boot.level]]\nmethod = \"agent\"\nagent = \"fence_redfish\"\nusername = {USER:?}\n\
             password_file = {pw:?}\ntimeout = \"60s\"\n\
             options = {{ ip = \"10.91.0.250\", ipport = 8000, ssl_insecure = true, \
             systems_uri = \"/redfish/v1/Systems/{uuid}\", power_timeout = 40 }}\n",
            url = b.url,
            peer_name = h.other().name(),
            wrong = wrong.display().to_string(),
            ca = ca.display().to_string(),
            pw = b.password_file.display().to_string(),
            uuid = peer.uuid,
        );
        pair.configure(h, |c| {
            c.fence = Fence::Levels(levels);
            c.boot = "retry = \"200ms\"\nretry_max = \"1s\"\n".into();
        });
    }
    let (primary, monitor) = pair.cold_start();
    let (samples, both) = pair.stop_watch();
    assert!(samples > 0);
    assert_eq!(both, 0, "no split brain during the cold start");

    let mark = pair.mark();
    pair.port(primary, false);
    let level = pair.wait_event(monitor, mark, "fence_level_failed", |_| true);
    let detail = level["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("level 1 (redfish)") && detail.contains("401"),
        "{level}"
    );
    let fenced = pair.wait_event(monitor, mark, "fence_confirmed", |_| true);
    let claimed = pair.wait_event(monitor, mark, "address_claimed", |v| {
        v["detail"].as_str().unwrap_or("").contains("primary")
    });
    let off = pair.wait_event(monitor, mark, "boot_result", |v| {
        v["detail"].as_str().unwrap_or("").starts_with("off ")
    });
    eprintln!("level 2 (fence_redfish) fence: {}", off["detail"]);
    assert!(
        off["detail"].as_str().unwrap().starts_with("off done"),
        "{off}"
    );
    assert!(level["ts_ns"].as_u64() < fenced["ts_ns"].as_u64());
    assert!(
        fenced["ts_ns"].as_u64() < claimed["ts_ns"].as_u64(),
        "P claimed only after the agent confirmed Off"
    );
    assert!(
        !pair
            .events(monitor)
            .iter()
            .any(|v| v["event"] == "fence_failed" && v["ts_ns"].as_u64() > Some(mark)),
        "the second level's confirmation is the fence: no fence_failed"
    );
    let text = serde_json::to_string(&pair.events(monitor)).unwrap();
    assert!(!text.contains(SUSHY_PASSWORD), "no password in events");
    let log = serde_json::to_string(&pair.log_lines(monitor, 0, |_| true)).unwrap();
    assert!(
        !log.contains(SUSHY_PASSWORD),
        "no password in the daemon's log"
    );
}

/// Points both daemons' `[boot]` at sushy (system `host-<peer>`), with `password_file` and
/// `extra` settings.
fn fence_through(pair: &Pair, b: &Bmc, password_file: &std::path::Path, extra: &str) {
    for h in Host::BOTH {
        pair.configure(h, |c| {
            c.fence = Fence::Redfish {
                url: b.url.clone(),
                system: format!("host-{}", h.other().name()),
                username: USER.into(),
                password_file: password_file.to_path_buf(),
                ca_file: Some(b.certs.as_ref().unwrap().ca.clone()),
            };
            c.boot = extra.to_string();
        });
    }
}
