//! The lease gate for real: XDP on ingress and tcx on egress of a host's veth, pinned, with no
//! process holding them. While the lease holds the client reaches P; once it has lapsed P is
//! gone for it (IPv4, IPv6, ARP), while the host's own address still answers; renewed, P is
//! back; removed, nothing is left attached.
use std::time::Duration;

use failover::{
    gate,
    signal::wire::{Kind, Message},
    sys::monotonic_ns,
};
use failover_harness::{
    failover_bin, guard::ChildGuard, netns::add_addr, require_root, veth, BpffsDir, NetNs,
};

const P4: &str = "10.77.0.10";
const P6: &str = "fd77::10";

fn ping(ns: &NetNs, to: &str, from: Option<&str>) -> bool {
    let mut c = ns.command("ping");
    c.args(["-c1", "-W1", "-q"]);
    if let Some(f) = from {
        c.args(["-I", f]);
    }
    c.arg(to)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn arping(ns: &NetNs, to: &str) -> bool {
    ns.ip(["neigh", "flush", "dev", "c0"]);
    ns.command("arping")
        .args(["-c1", "-w1", "-q", "-I", "c0", to])
        .status()
        .unwrap()
        .success()
}

/// Sets the pinned gate to serve P until `expiry_ns`.
fn renew(dir: &std::path::Path, expiry_ns: u64) {
    gate::open_pinned(dir).unwrap().renew(expiry_ns).unwrap();
}

#[test]
fn a_lapsed_lease_stops_p_in_the_kernel_and_a_renewal_restores_it() {
    require_root("a_lapsed_lease_stops_p_in_the_kernel_and_a_renewal_restores_it");
    let h = NetNs::new("fo-gate-h");
    let c = NetNs::new("fo-gate-c");
    veth(&h, "h0", "10.77.0.1/24", &c, "c0", "10.77.0.2/24");
    add_addr(&h, "h0", &format!("{P4}/24"));
    add_addr(&h, "h0", "fd77::1/64");
    add_addr(&h, "h0", &format!("{P6}/64"));
    add_addr(&c, "c0", "fd77::2/64");
    let bpffs = BpffsDir::new();
    let dir = bpffs.pins();
    assert!(
        ping(&c, P4, None) && ping(&c, P6, None),
        "P answers before the gate"
    );

    // Installed with a lease that holds for a minute; the installing thread and its handles
    // are gone afterwards: only the pins keep the programs attached.
    let d = dir.clone();
    h.run_in(move || {
        let cfg = gate::gate_for(
            &[P4.parse().unwrap(), P6.parse().unwrap()],
            5405,
            monotonic_ns() + 60_000_000_000,
        );
        drop(gate::install("h0", &d, cfg).expect("install the gate"));
    });
    assert!(gate::installed(&dir));
    let links = h.ip(["-d", "link", "show", "h0"]);
    let text = String::from_utf8_lossy(&links.stdout).to_string();
    assert!(text.contains("xdp"), "XDP attached: {text}");
    assert!(
        ping(&c, P4, None) && ping(&c, P6, None),
        "the lease holds: P answers"
    );

    // The pair's port stays open through a closed gate: a heartbeat to P is answered.
    let responder = ChildGuard(
        h.command(failover_bin())
            .args(["respond", "--port", "5405", "--bind", P4])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = c.udp_socket("10.77.0.2:0".parse().unwrap());
    client
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();

    // Lapsed.
    renew(&dir, 0);
    assert!(
        heartbeat(&client),
        "a heartbeat to P passes the closed gate both ways"
    );
    assert!(!ping(&c, P4, None), "IPv4 to P dropped");
    assert!(!ping(&c, P6, None), "IPv6 to P dropped (and NS for it)");
    assert!(!arping(&c, P4), "ARP for P unanswered");
    assert!(!ping(&h, "10.77.0.2", Some(P4)), "nothing leaves from P");
    assert!(
        ping(&c, "10.77.0.1", None),
        "the host's own address still answers"
    );
    assert!(ping(&c, "fd77::1", None), "and its own IPv6 address");
    assert!(
        arping(&c, "10.77.0.1"),
        "ARP for the host's own address answered"
    );
    assert!(
        ping(&h, "10.77.0.2", Some("10.77.0.1")),
        "the host still sends from its own address"
    );

    // Renewed.
    renew(&dir, monotonic_ns() + 60_000_000_000);
    assert!(
        ping(&c, P4, None) && ping(&c, P6, None),
        "renewed: P answers again"
    );
    assert!(arping(&c, P4), "ARP for P answered again");

    drop(responder);
    gate::remove(&dir).unwrap();
    assert!(!gate::installed(&dir));
    let links = h.ip(["-d", "link", "show", "h0"]);
    let text = String::from_utf8_lossy(&links.stdout).to_string();
    assert!(
        !text.contains("prog/xdp"),
        "nothing attached after removal: {text}"
    );
    renew_fails(&dir);
}

/// One heartbeat to P's responder; whether it was answered within a second (the responder
/// may still be starting: a few tries).
fn heartbeat(sock: &std::net::UdpSocket) -> bool {
    let msg = Message {
        kind: Kind::Heartbeat,
        role: 0,
        flags: 0,
        token: 77,
        seq: 1,
        epoch: 0,
        node: 0,
    };
    (0..5).any(|_| {
        sock.send_to(&msg.encode(), (P4, 5405)).unwrap();
        let mut buf = [0u8; 128];
        sock.recv_from(&mut buf)
            .ok()
            .and_then(|(n, _)| Message::decode(&buf[..n]).ok())
            .is_some_and(|r| r.kind == Kind::HeartbeatReply && r.token == 77)
    })
}

fn renew_fails(dir: &std::path::Path) {
    assert!(gate::open_pinned(dir).is_err(), "the map pin is gone too");
}
