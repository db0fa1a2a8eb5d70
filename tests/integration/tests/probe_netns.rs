//! `failover probe` between two network namespaces on a veth pair, XDP attached for real.
//!
//! Deadlines here are generous on purpose: the tests assert which probes are answered, not how
//! fast (timing lives in the benchmarks).
use std::process::Output;

use failover_harness::{
    failover_bin, last_json_line, require_root, run, spawn_ready, veth, BpffsDir, NetNs,
};

struct VethPair {
    a: NetNs,
    b: NetNs,
    a_if: String,
    b_if: String,
    pins: BpffsDir,
}

fn pair() -> VethPair {
    require_root("probe_netns");
    let a = NetNs::new("fo-pa");
    let b = NetNs::new("fo-pb");
    let a_if = failover_harness::unique("va");
    let b_if = failover_harness::unique("vb");
    veth(&a, &a_if, "10.200.0.1/24", &b, &b_if, "10.200.0.2/24");
    a.ip(["addr", "add", "fd00:200::1/64", "dev", &a_if, "nodad"]);
    b.ip(["addr", "add", "fd00:200::2/64", "dev", &b_if, "nodad"]);
    VethPair {
        a,
        b,
        a_if,
        b_if,
        pins: BpffsDir::new(),
    }
}

impl VethPair {
    fn probe(&self, target: &str, extra: &[&str]) -> Output {
        self.probe_on(&self.a_if, target, extra)
    }

    fn probe_on(&self, interface: &str, target: &str, extra: &[&str]) -> Output {
        let pins = self.pins.pins();
        let mut c = self.a.command(failover_bin());
        c.args(["probe", "--json", "-i", interface, "-t", target]);
        c.args(["--bpffs-dir", pins.to_str().expect("utf-8 path")]);
        c.args(extra);
        c.output().expect("run failover probe")
    }
}

fn assert_all_in_time(out: &Output, count: u64) -> serde_json::Value {
    let v = last_json_line(&out.stdout);
    assert_eq!(v["sent"], count, "summary: {v}");
    assert_eq!(v["in_time"], count, "summary: {v}");
    assert_eq!(v["late"], 0, "summary: {v}");
    assert_eq!(v["lost"], 0, "summary: {v}");
    assert_eq!(
        v["xdp_stats"]["matched"], count,
        "XDP counted exactly the replies: {v}"
    );
    assert!(v["rtt_us"]["min"].as_f64().expect("min rtt") > 0.0, "{v}");
    assert!(
        v["rtt_us"]["min"].as_f64() <= v["rtt_us"]["p50"].as_f64()
            && v["rtt_us"]["p50"].as_f64() <= v["rtt_us"]["max"].as_f64(),
        "{v}"
    );
    assert!(out.status.success(), "exit status {:?}", out.status);
    v
}

const GENEROUS: [&str; 4] = ["--interval", "10ms", "--timeout", "2s"];

#[test]
fn icmp_probes_are_all_in_time_with_the_link_up() {
    let p = pair();
    let out = p.probe("10.200.0.2", &[&GENEROUS[..], &["-c", "20"]].concat());
    assert_all_in_time(&out, 20);
    // Every per-probe line is there, in order.
    let text = String::from_utf8_lossy(&out.stdout);
    let seqs: Vec<u64> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["seq"].as_u64())
        .collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
}

#[test]
fn icmpv6_probes_are_all_in_time() {
    let p = pair();
    let out = p.probe("fd00:200::2", &[&GENEROUS[..], &["-c", "10"]].concat());
    assert_all_in_time(&out, 10);
}

#[test]
fn udp_heartbeats_are_answered_by_the_responder() {
    let p = pair();
    let mut c = p.b.command(failover_bin());
    c.args(["respond", "--port", "7788"]);
    let responder = spawn_ready(c, "answering heartbeats");
    let out = p.probe(
        "10.200.0.2",
        &[&GENEROUS[..], &["-c", "10", "--udp-port", "7788"]].concat(),
    );
    let v = assert_all_in_time(&out, 10);
    assert_eq!(v["signal"], "udp");
    assert_eq!(v["xdp_stats"]["rejected_token"], 0);
    drop(responder);
    // With the responder gone the kernel still answers ICMP, but no heartbeat comes back:
    // UDP heartbeats see a dead daemon where ICMP would not.
    let out = p.probe(
        "10.200.0.2",
        &[
            "--timeout",
            "50ms",
            "--late-window",
            "100ms",
            "-c",
            "5",
            "--udp-port",
            "7788",
        ],
    );
    let v = last_json_line(&out.stdout);
    assert_eq!(
        (v["in_time"].as_u64(), v["lost"].as_u64()),
        (Some(0), Some(5)),
        "{v}"
    );
    assert_eq!(out.status.code(), Some(1), "no reply in time exits 1");
}

#[test]
fn every_probe_is_lost_with_the_peer_link_down() {
    let p = pair();
    p.b.ip(["link", "set", &p.b_if, "down"]);
    let out = p.probe(
        "10.200.0.2",
        &["--timeout", "50ms", "--late-window", "100ms", "-c", "10"],
    );
    let v = last_json_line(&out.stdout);
    assert_eq!(v["sent"], 10, "{v}");
    assert_eq!(v["lost"], 10, "{v}");
    assert_eq!(v["in_time"], 0, "{v}");
    assert_eq!(v["late"], 0, "{v}");
    assert!(v["rtt_us"]["p50"].is_null(), "{v}");
    assert_eq!(out.status.code(), Some(1));
    // And back up: answered again.
    p.b.ip(["link", "set", &p.b_if, "up"]);
    let out = p.probe("10.200.0.2", &[&GENEROUS[..], &["-c", "5"]].concat());
    assert_all_in_time(&out, 5);
}

fn dump(path: &std::path::Path) -> String {
    let out = run(
        "bpftool",
        ["map", "dump", "pinned", path.to_str().expect("utf-8")],
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn pinned_peer_map_shows_typed_fields_and_restarts_replace_pins() {
    let p = pair();
    let out = p.probe(
        "10.200.0.2",
        &[&GENEROUS[..], &["-c", "7", "--keep-pins"]].concat(),
    );
    assert_all_in_time(&out, 7);
    let peers = p.pins.pins().join("FO_PEERS");
    let text = dump(&peers);
    // Key: ::ffff:10.200.0.2 as bytes; value: named fields.
    assert!(
        text.contains("255,255,10,200,0,2"),
        "peer key in dump: {text}"
    );
    assert!(
        text.contains("\"replies\": 7"),
        "typed replies field: {text}"
    );
    for field in ["\"last_ns\"", "\"last_seq\": 7", "\"first_ns\""] {
        assert!(text.contains(field), "{field} in dump: {text}");
    }
    let stats = dump(&p.pins.pins().join("FO_STATS"));
    assert!(stats.contains("\"matched\""), "typed stats: {stats}");

    // A second process cleanly replaces the pins: the map now holds only its own replies.
    let out = p.probe(
        "10.200.0.2",
        &[&GENEROUS[..], &["-c", "3", "--keep-pins"]].concat(),
    );
    assert_all_in_time(&out, 3);
    let text = dump(&peers);
    assert!(text.contains("\"replies\": 3"), "replaced map: {text}");

    // Without --keep-pins the pins go away on exit.
    let out = p.probe("10.200.0.2", &[&GENEROUS[..], &["-c", "1"]].concat());
    assert_all_in_time(&out, 1);
    assert!(!peers.exists(), "pins removed on a clean exit");
}

#[test]
fn errors_name_what_failed() {
    let p = pair();
    let out = p.probe_on("nosuchif0", "10.200.0.2", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("interface \"nosuchif0\" not found"), "{err}");

    let out = p.probe("10.200.0.300", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--target") && err.contains("not an IPv4 or IPv6 address"),
        "{err}"
    );

    let out = p.probe("10.200.0.2", &["--interval", "fast"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--interval") && err.contains("expected a duration"),
        "{err}"
    );

    // Without the capabilities: setpriv drops to nobody.
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(failover_bin())
        .args(["probe", "-i", "lo", "-t", "127.0.0.1", "-c", "1"])
        .output()
        .expect("run setpriv");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("needs CAP_NET_ADMIN") && err.contains("uid 65534"),
        "{err}"
    );
}
