//! Parsing and validation tables: every error names the file and the field.
use super::*;

const GOOD: &str = r#"
join_timeout = "300ms"
[node]
name = "a"
id = 1
interface = "eth0"
address = "10.0.0.1/24"
peer = "10.0.0.2"
[addresses]
primary = "10.0.0.100/24"
monitor = "10.0.0.101/24"
[heartbeat]
interval = "1ms"
timeout = "10ms"
misses = 15
[boot]
method = "command"
command = "/usr/local/sbin/fence-peer"
"#;

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(Path::new("test.toml"), text).map_err(|e| e.to_string())
}

#[test]
fn good_config_with_defaults() {
    let c = parse(GOOD).expect("valid");
    assert_eq!(c.heartbeat.kind, HeartbeatKind::Udp);
    assert_eq!(c.join_timeout.0, Duration::from_millis(300));
    assert!(c.takeover);
    assert_eq!(c.detection_time(), Duration::from_millis(24));
    assert_eq!(c.addresses.primary.to_string(), "10.0.0.100/24");
}

#[test]
fn bad_configs_name_the_field() {
    // (edit applied to GOOD, text the error must contain)
    let rows: &[(&str, &str, &str)] = &[
        (
            "[node]",
            "[node]\ncolour = \"red\"",
            "node.colour: unknown field `colour`",
        ),
        (
            "timeout = \"10ms\"",
            "timeout = \"soon\"",
            "heartbeat.timeout: \"soon\" is not a duration",
        ),
        (
            "misses = 15",
            "misses = 0",
            "heartbeat.misses: must be at least 1",
        ),
        (
            "monitor = \"10.0.0.101/24\"",
            "monitor = \"10.0.0.100/24\"",
            "addresses.monitor",
        ),
        (
            "monitor = \"10.0.0.101/24\"",
            "monitor = \"10.0.0.101\"",
            "no prefix length",
        ),
        (
            "monitor = \"10.0.0.101/24\"",
            "monitor = \"10.0.0.101/33\"",
            "longer than 32",
        ),
        (
            "monitor = \"10.0.0.101/24\"",
            "monitor = \"fd00::1/64\"",
            "same family",
        ),
        (
            "peer = \"10.0.0.2\"",
            "peer = \"10.0.0.100\"",
            "node.peer: 10.0.0.100 is a floating address",
        ),
        (
            "command = \"/usr/local/sbin/fence-peer\"",
            "",
            "boot.command: required",
        ),
        (
            "method = \"command\"\ncommand = \"/usr/local/sbin/fence-peer\"",
            "method = \"none\"",
            "boot.method: \"none\" takes the primary",
        ),
        (
            "method = \"command\"",
            "method = \"ipmi\"",
            "unknown variant `ipmi`",
        ),
        (
            "interval = \"1ms\"",
            "interval = \"1us\"",
            "heartbeat.timeout",
        ),
        ("id = 1", "", "node: missing field `id`"),
        (
            "misses = 15",
            "misses = \"ten\"",
            "heartbeat.misses: invalid type: string \"ten\"",
        ),
    ];
    for (from, to, want) in rows {
        assert!(GOOD.contains(from), "row edits {from:?}");
        let text = GOOD.replacen(from, to, 1);
        let err = parse(&text).expect_err(want);
        assert!(err.starts_with("test.toml: "), "{err}");
        assert!(err.contains(want), "want {want:?} in {err:?}");
    }
}

#[test]
fn unfenced_takeover_needs_the_explicit_opt_in() {
    let text = GOOD.replacen(
        "method = \"command\"\ncommand = \"/usr/local/sbin/fence-peer\"",
        "method = \"none\"\nallow_unfenced_takeover = true",
        1,
    );
    let c = parse(&text).expect("opted in");
    assert_eq!(c.boot.levels[0].method, BootMethod::None);
    assert!(c.boot.unfenced());
}

#[test]
fn redfish_settings_are_checked_field_by_field() {
    let redfish = |extra: &str| {
        GOOD.replacen(
            "method = \"command\"\ncommand = \"/usr/local/sbin/fence-peer\"",
            &format!("method = \"redfish\"\n{extra}"),
            1,
        )
    };
    let ok =
        "url = \"https://bmc-b\"\nusername = \"admin\"\npassword_file = \"/etc/failover/bmc.pw\"";
    let c = parse(&redfish(ok)).expect("valid redfish");
    assert_eq!(c.boot.levels[0].fence_timeout.0, Duration::from_secs(60));
    for (extra, want) in [
        ("username = \"admin\"\npassword_env = \"PW\"", "boot.url: required"),
        ("url = \"bmc-b\"\nusername = \"a\"\npassword_env = \"PW\"", "boot.url"),
        ("url = \"http://bmc-b\"\nusername = \"a\"\npassword_env = \"PW\"", "clear text"),
        ("url = \"https://bmc-b\"\npassword_env = \"PW\"", "boot.username"),
        ("url = \"https://bmc-b\"\nusername = \"a\"", "boot.password_file: set exactly one"),
        (
            "url = \"https://bmc-b\"\nusername = \"a\"\npassword_env = \"PW\"\npassword_file = \"/x\"",
            "set exactly one",
        ),
        (
            "url = \"https://bmc-b\"\nusername = \"a\"\npassword_env = \"PW\"\nca_file = \"/ca\"\ninsecure = true",
            "boot.insecure",
        ),
        (
            "url = \"https://bmc-b\"\nusername = \"a\"\npassword_env = \"PW\"\noff_types = []",
            "boot.off_types",
        ),
        (
            "url = \"https://bmc-b\"\nusername = \"a\"\npassword_env = \"PW\"\npassword = \"x\"",
            "unknown field `password`",
        ),
    ] {
        let err = parse(&redfish(extra)).expect_err(want);
        assert!(err.contains(want), "want {want:?} in {err:?}");
    }
}

#[test]
fn several_primary_addresses_move_as_one_and_are_checked() {
    let list = |v: &str| GOOD.replacen("primary = \"10.0.0.100/24\"", &format!("primary = {v}"), 1);
    let c = parse(&list("[\"10.0.0.100/24\", \"fd00::100/64\"]")).expect("dual stack");
    assert_eq!(c.addresses.primary.all().len(), 2);
    assert_eq!(c.addresses.primary.first().to_string(), "10.0.0.100/24");
    assert_eq!(
        c.addresses.primary.to_string(),
        "10.0.0.100/24, fd00::100/64"
    );
    for (v, want) in [
        ("[]", "addresses.primary: lists no address"),
        (
            "[\"10.0.0.100\"]",
            "addresses.primary: expected an address with prefix",
        ),
        (
            "[\"10.0.0.100/24\", \"10.0.0.100/24\"]",
            "addresses.primary: 10.0.0.100 is listed twice",
        ),
        (
            "[\"10.0.0.100/24\", \"10.0.0.101/24\"]",
            "addresses.monitor: 10.0.0.101 is also a primary address",
        ),
        (
            "[\"fd00::100/64\", \"10.0.0.100/24\"]",
            "addresses.monitor: must be of the same family (IPv4 or IPv6) as the first",
        ),
        (
            "[\"10.0.0.100/24\", \"10.0.0.1/24\"]",
            "node.address: 10.0.0.1 is a floating address",
        ),
    ] {
        let err = parse(&list(v)).expect_err(want);
        assert!(err.contains(want), "want {want:?} in {err:?}");
    }
    // The lease gate stops one address per family: two of one family would outlive a lapse.
    let leased = list("[\"10.0.0.100/24\", \"10.0.0.102/24\"]").replacen(
        "[boot]\n",
        "[boot]\nlease = \"30ms\"\n",
        1,
    );
    let err = parse(&leased).expect_err("two IPv4 with a lease");
    assert!(
        err.contains("addresses.primary: with boot.lease at most one IPv4"),
        "{err}"
    );
}

/// GOOD with its one-level `[boot]` replaced by `boot` (the `[boot]` header included).
fn with_boot(boot: &str) -> String {
    let at = GOOD.find("[boot]").expect("GOOD has [boot]");
    format!("{}{boot}", &GOOD[..at])
}

const TWO_LEVELS: &str = r#"[boot]
retry = "2s"
[[boot.level]]
method = "redfish"
url = "https://bmc-b"
username = "admin"
password_file = "/etc/failover/bmc.pw"
timeout = "10s"
[[boot.level]]
method = "agent"
agent = "fence_apc_snmp"
username = "apc"
password_env = "PDU_PW"
options = { ip = "10.0.0.250", plug = 4, ssl_insecure = true }
"#;

#[test]
fn fence_levels_parse_in_order_with_their_own_settings() {
    let c = parse(&with_boot(TWO_LEVELS)).expect("two levels");
    assert!(!c.boot.one_level);
    assert_eq!(c.boot.retry.0, Duration::from_secs(2));
    let [redfish, agent] = &c.boot.levels[..] else {
        panic!("two levels: {:?}", c.boot.levels)
    };
    assert_eq!(redfish.method, BootMethod::Redfish);
    assert_eq!(redfish.timeout.0, Duration::from_secs(10));
    assert_eq!(agent.method, BootMethod::Agent);
    assert_eq!(
        agent.timeout.0,
        Duration::from_secs(60),
        "default per level"
    );
    assert_eq!(agent.options.len(), 3);
    // The one-level form is one level, named as before.
    let one = parse(GOOD).expect("valid");
    assert!(one.boot.one_level);
    assert_eq!(one.boot.levels.len(), 1);
    assert_eq!(one.boot.field_prefix(0), "boot.");
    assert_eq!(c.boot.field_prefix(1), "boot.level[2].");
}

#[test]
fn fence_level_errors_name_the_level_and_field() {
    let level2 = "method = \"agent\"\nagent = \"fence_apc_snmp\"";
    for (from, to, want) in [
        (level2, "method = \"agent\"", "boot.level[2].agent: required"),
        ("timeout = \"10s\"", "timeout = \"0s\"", "boot.level[1].timeout"),
        (
            "plug = 4,",
            "plug = 4, password = \"x\",",
            "boot.level[2].options: \"password\" cannot be set here",
        ),
        ("plug = 4,", "plug = [4],", "boot.level[2].options: plug: expected a string"),
        (
            "plug = 4,",
            "plug = \"4\\nip=evil\",",
            "boot.level[2].options: plug: a value must be one line",
        ),
        (
            "agent = \"fence_apc_snmp\"",
            "agent = \"fence_apc_snmp\"\nurl = \"https://pdu\"",
            "boot.level[2].url: is not a setting of method = \"agent\"",
        ),
        (
            "method = \"agent\"\nagent = \"fence_apc_snmp\"\nusername = \"apc\"\npassword_env = \"PDU_PW\"\noptions = { ip = \"10.0.0.250\", plug = 4, ssl_insecure = true }",
            "method = \"none\"",
            "boot.level[2].method: \"none\" fences nothing",
        ),
        ("retry = \"2s\"", "retry = \"2s\"\nurl = \"https://x\"", "`url` set in [boot] beside [[boot.level]]"),
        ("timeout = \"10s\"", "timeout = \"10s\"\ncolour = 1", "unknown field `colour`"),
    ] {
        assert!(TWO_LEVELS.contains(from), "row edits {from:?}");
        let err = parse(&with_boot(&TWO_LEVELS.replacen(from, to, 1))).expect_err(want);
        assert!(err.contains(want), "want {want:?} in {err:?}");
    }
    let err = parse(&with_boot("[boot]\nretry = \"1s\"\n")).expect_err("no method");
    assert!(err.contains("boot") && err.contains("method"), "{err}");
}

#[test]
fn sync_settings_are_checked() {
    let with = |extra: &str| format!("{GOOD}[sync]\n{extra}");
    let c = parse(&with(
        "dir = \"/var/lib/app\"\nkey_file = \"/etc/failover/sync.key\"",
    ))
    .expect("valid sync");
    let sy = c.sync.expect("sync section");
    assert_eq!((sy.every, sy.port, sy.bandwidth_mbit), (500, 7789, 0));
    assert!(!sy.keep_setid, "setuid and setgid are dropped by default");
    // GOOD's heartbeat is 1 ms: a copy every 500 ms.
    let secs = Duration::from_secs;
    assert_eq!(
        sy.deadlines(c.heartbeat.interval.0),
        SyncDeadlines {
            connect: secs(2),
            handshake: secs(5),
            frame: secs(60),
            copy: secs(600),
            alert_after: secs(5),
        }
    );
    let set = parse(&with(
        "dir = \"/var/lib/app\"\nkey_file = \"/k\"\nevery = 100000\nhandshake_timeout = \"1s\"\n\
         frame_timeout = \"40s\"\nalert_after = \"3m\"\nsnapshot_timeout = \"10s\"\n\
         keep_setid = true",
    ))
    .expect("valid deadlines")
    .sync
    .unwrap();
    assert!(set.keep_setid);
    let d = set.deadlines(Duration::from_millis(1));
    assert_eq!(
        (d.handshake, d.frame, d.alert_after),
        (secs(1), secs(40), secs(180))
    );
    assert_eq!(d.copy, secs(10_000), "100 copy intervals of 100 s");
    for (extra, want) in [
        ("key_file = \"/k\"", "sync: missing field `dir`"),
        ("dir = \"/var/lib/app\"", "missing field `key_file`"),
        ("dir = \"data\"\nkey_file = \"/k\"", "sync.dir"),
        ("dir = \"/data\"\nkey_file = \"/k\"", "sync.dir"),
        (
            "dir = \"/var/lib/app\"\nkey_file = \"/k\"\nevery = 0",
            "sync.every",
        ),
        (
            "dir = \"/var/lib/app\"\nkey_file = \"/k\"\nport = 7788",
            "sync.port",
        ),
        (
            "dir = \"/var/lib/app\"\nkey_file = \"/k\"\nsnapshot_command = \" \"",
            "sync.snapshot_command",
        ),
        (
            "dir = \"/var/lib/app\"\nkey_file = \"/k\"\nkey = \"abc\"",
            "unknown field `key`",
        ),
        (
            "dir = \"/var/lib/app\"\nkey_file = \"/k\"\nhandshake_timeout = \"0s\"",
            "sync.handshake_timeout: must be greater than zero",
        ),
        (
            "dir = \"/var/lib/app\"\nkey_file = \"/k\"\ncopy_timeout = \"0s\"",
            "sync.copy_timeout: must be greater than zero",
        ),
        (
            "dir = \"/var/lib/app\"\nkey_file = \"/k\"\nalert_after = \"soon\"",
            "sync.alert_after: \"soon\" is not a duration",
        ),
        (
            "dir = \"/var/lib/app\"\nkey_file = \"/k\"\nalert_after = \"500ms\"",
            "sync.alert_after: 500ms must be longer than one copy interval",
        ),
        (
            "dir = \"/var/lib/app\"\nkey_file = \"/k\"\nsnapshot_command = \"true\"\n\
             frame_timeout = \"30s\"",
            "sync.frame_timeout: 30s must be longer than sync.snapshot_timeout",
        ),
        (
            "dir = \"/var/lib/app\"\nkey_file = \"/k\"\nkeep_diverged = 0",
            "sync.keep_diverged: must be at least 1",
        ),
        (
            "dir = \"/var/lib/app\"\nkey_file = \"/k\"\nserve_stale = true",
            "sync.serve_stale: needs sync.max_age",
        ),
        (
            "dir = \"/var/lib/app\"\nkey_file = \"/k\"\nmax_age = \"0s\"",
            "sync.max_age: must be greater than zero",
        ),
    ] {
        let err = parse(&with(extra)).expect_err(want);
        assert!(err.contains(want), "want {want:?} in {err:?}");
    }
}

#[test]
fn the_shipped_example_pair_loads_passes_preflight_and_mirrors() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"));
    let load = |name: &str| {
        let c = Config::load(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        c.preflight()
            .unwrap_or_else(|e| panic!("{name}: preflight: {e}"));
        c
    };
    let (a, b) = (load("host-a.toml"), load("host-b.toml"));

    // Exactly one preferred primary: host a.
    assert!(a.preferred_primary && !b.preferred_primary);

    // The same floating addresses, the node values swapped.
    assert_eq!(a.addresses.primary, b.addresses.primary);
    assert_eq!(a.addresses.monitor, b.addresses.monitor);
    assert_eq!(a.node.address.addr, b.node.peer);
    assert_eq!(b.node.address.addr, a.node.peer);
    assert_eq!(
        (&a.node.name, &a.node.peer_name),
        (&b.node.peer_name, &b.node.name)
    );
    assert_ne!(a.node.id, b.node.id);
    assert_eq!(a.node.interface, b.node.interface);

    // What both hosts must agree on.
    for (x, y) in [(&a, &b), (&b, &a)] {
        assert_eq!(x.heartbeat.kind, y.heartbeat.kind);
        assert_eq!(x.heartbeat.port, y.heartbeat.port);
        assert_eq!(x.heartbeat.interval, y.heartbeat.interval);
        assert_eq!(x.heartbeat.timeout, y.heartbeat.timeout);
        assert_eq!(x.heartbeat.misses, y.heartbeat.misses);
        assert_eq!(x.join_timeout, y.join_timeout);
        assert_eq!(x.startup_grace, y.startup_grace);
        assert_eq!(x.takeover, y.takeover);
        assert_eq!(x.garp.count, y.garp.count);
        assert_eq!(x.garp.spacing, y.garp.spacing);
        assert_eq!(x.garp.refresh, y.garp.refresh);
        assert_eq!(x.garp.dad_probes, y.garp.dad_probes);
        assert_eq!(x.garp.dad_wait, y.garp.dad_wait);
        assert_eq!(x.sync.is_some(), y.sync.is_some());
    }

    // The relative command and hooks resolve to the scripts shipped beside the examples,
    // whatever the working directory.
    let shipped = |script: &str| dir.join(script).canonicalize().expect("shipped script");
    for c in [&a, &b] {
        assert_eq!(c.boot.levels[0].method, BootMethod::Command);
        let command = c.boot.levels[0].command.as_deref().expect("boot.command");
        assert!(command.is_absolute(), "{}", command.display());
        assert_eq!(
            command.canonicalize().expect("boot.command exists"),
            shipped("fence-peer.sh")
        );
        for hook in [&c.hooks.on_primary, &c.hooks.on_monitor, &c.hooks.on_fault] {
            let hook = hook.as_deref().expect("hook set");
            assert_eq!(
                hook.canonicalize().expect("hook exists"),
                shipped("log-hook.sh")
            );
        }
    }
}
