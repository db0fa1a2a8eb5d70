//! `failover witness` as a real process in a namespace of its own, its peers real UDP sockets
//! there: renewals for the primary, a revoke refused while the primary is heard and agreed
//! once it is not, the revoked epoch surviving a restart, and datagrams that must change
//! nothing (another key, a replay, a stranger). Times are never asserted.
use std::{net::SocketAddr, path::Path, process::Stdio, time::Duration};

use failover::{
    lease::wire::{self, Kind, Message, Reason},
    sync::Key,
};
use failover_harness::{
    events::{EventLog, HANG_GUARD},
    failover_bin,
    guard::{ChildGuard, TempDir},
    mono_ns, require_root, NetNs,
};

const KEY: [u8; 32] = [0x5a; 32];
const LISTEN: &str = "127.0.0.9:5405";
const PRIMARY: u32 = 1;
const MONITOR: u32 = 2;

struct Witness {
    ns: NetNs,
    dir: TempDir,
    log: EventLog,
    child: Option<ChildGuard>,
}

impl Witness {
    fn new(test: &str) -> Witness {
        let dir = TempDir::new(&format!("fo-wit-{test}"));
        std::fs::write(dir.join("lease.key"), hex(&KEY)).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            dir.join("lease.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let log = EventLog::open(&dir.join("witness.fifo"), "witness", true);
        Witness {
            ns: NetNs::new("fo-wit"),
            dir,
            log,
            child: None,
        }
    }

    fn config(&self, detection: &str) -> std::path::PathBuf {
        let path = self.dir.join("witness.toml");
        std::fs::write(
            &path,
            format!(
                "[witness]\nlisten = \"{LISTEN}\"\nkey_file = \"lease.key\"\n\
                 peers = [\"127.0.0.1\", \"127.0.0.2\"]\nstate_dir = \"state\"\n\
                 control_socket = \"witness.sock\"\ndetection = \"{detection}\"\n\
                 metrics = \"127.0.0.9:9478\"\n"
            ),
        )
        .unwrap();
        path
    }

    /// Starts (or restarts) the witness and waits until it serves.
    fn start(&mut self, detection: &str) {
        self.stop();
        let since = mono_ns();
        let child = self
            .ns
            .command(failover_bin())
            .args(["--log-format", "json", "witness", "--config"])
            .arg(self.config(detection))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.log.writer())
            .spawn()
            .expect("spawn failover witness");
        self.child = Some(ChildGuard(child));
        self.log.wait_line(since, "witness serving", |v| {
            v["fields"]["message"] == "witness serving" || v["message"] == "witness serving"
        });
    }

    fn stop(&mut self) {
        if let Some(c) = self.child.take() {
            assert!(c.terminate().success(), "the witness exits 0 on SIGTERM");
        }
    }

    fn status(&self) -> serde_json::Value {
        let out = std::process::Command::new(failover_bin())
            .args(["status", "--json", "--socket"])
            .arg(self.dir.join("witness.sock"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A peer of the witness: a socket at `addr` in its namespace.
struct Peer {
    sock: std::net::UdpSocket,
    node: u32,
    token: u64,
    seq: u64,
    key: [u8; 32],
}

impl Peer {
    fn new(w: &Witness, addr: &str, node: u32) -> Peer {
        let sock = w.ns.udp_socket(format!("{addr}:0").parse().unwrap());
        sock.set_read_timeout(Some(HANG_GUARD)).unwrap();
        Peer {
            sock,
            node,
            token: 0x1000 + u64::from(node),
            seq: 0,
            key: wire::mac_key(&Key::from_bytes(KEY)),
        }
    }

    fn send(&mut self, kind: Kind, epoch: u64, key: &[u8; 32]) -> [u8; wire::LEN] {
        self.seq += 1;
        let m = Message {
            kind,
            reason: Reason::None,
            node: self.node,
            epoch,
            seq: self.seq,
            token: self.token,
            value_ns: 40_000_000,
            stamp_ns: mono_ns(),
        };
        let b = m.encode(key);
        self.sock
            .send_to(&b, LISTEN.parse::<SocketAddr>().unwrap())
            .unwrap();
        b
    }

    /// Sends `kind` and returns the answer (the next datagram: it must answer this one).
    fn ask(&mut self, kind: Kind, epoch: u64) -> Message {
        let key = self.key;
        self.send(kind, epoch, &key);
        self.answer()
    }

    fn answer(&self) -> Message {
        let mut buf = [0u8; 128];
        let (n, _) = self
            .sock
            .recv_from(&mut buf)
            .expect("an answer from the witness");
        let m = Message::decode(&buf[..n], &self.key).expect("an authenticated answer");
        assert_eq!(m.token, self.token);
        m
    }
}

/// Asks `m`'s revoke until the witness no longer refuses it: a (re)started witness refuses
/// until it has listened a whole detection window, and a primary heard refreshes that, as the
/// daemon's revoke job resends until the answer is more than a refusal.
fn judged(m: &mut Peer, epoch: u64) -> Message {
    let deadline = std::time::Instant::now() + HANG_GUARD;
    loop {
        let r = m.ask(Kind::Revoke, epoch);
        if r.kind != Kind::RevokeRefused {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the witness kept refusing: {r:?}"
        );
    }
}

#[test]
fn the_witness_renews_the_primary_and_revokes_only_once_it_is_silent() {
    require_root("the_witness_renews_the_primary_and_revokes_only_once_it_is_silent");
    let mut w = Witness::new("revoke");
    // The primary is heard "now" for the whole first run.
    w.start("1h");
    let mut p = Peer::new(&w, "127.0.0.1", PRIMARY);
    let mut m = Peer::new(&w, "127.0.0.2", MONITOR);
    let g = p.ask(Kind::Request, 3);
    assert_eq!(
        (g.kind, g.seq, g.epoch, g.value_ns),
        (Kind::Grant, 1, 3, 40_000_000)
    );

    // Another key, a replay and a stranger get no answer: the next answer is the next request's.
    p.send(Kind::Request, 3, &wire::mac_key(&Key::from_bytes([1; 32])));
    let replay = p.send(Kind::Request, 3, &p.key.clone());
    assert_eq!(p.answer().seq, 3);
    p.sock.send_to(&replay, LISTEN).unwrap();
    let stranger = w.ns.udp_socket("127.0.0.3:0".parse().unwrap());
    stranger.send_to(&replay, LISTEN).unwrap();
    assert_eq!(p.ask(Kind::Request, 3).seq, 4);

    // The two hosts lost each other, the witness still hears the primary: refused.
    let since = mono_ns();
    let r = m.ask(Kind::Revoke, 3);
    assert_eq!(r.kind, Kind::RevokeRefused);
    w.log.wait(since, "revoke_refused", |_| true);
    assert_eq!(
        p.ask(Kind::Request, 3).kind,
        Kind::Grant,
        "the primary keeps its lease"
    );
    let st = w.status();
    assert_eq!(st["role"], "witness", "{st}");
    assert_eq!(st["revokes_refused"], 1, "{st}");
    assert_eq!(st["granted_epoch"], 3, "{st}");
    assert!(st["dropped"].as_u64() >= Some(3), "{st}");
    let text = w.ns.run_in(|| {
        use std::io::{Read as _, Write as _};
        let mut c = std::net::TcpStream::connect("127.0.0.9:9478").expect("metrics endpoint");
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: w\r\n\r\n")
            .unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        s
    });
    assert!(
        text.contains("failover_witness_revokes_refused_total 1"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE failover_witness_grants_total counter"),
        "{text}"
    );
    assert!(
        text.contains("failover_witness_grants_total{node=\"1\"} 4"),
        "{text}"
    );

    // Restarted with a short window. It has granted nothing since: it vouches for no revoke
    // (`unproven`: the monitor fences through the BMC) and revokes nothing.
    w.start("1ms");
    let r = judged(&mut m, 3);
    assert_eq!((r.kind, r.reason), (Kind::Revoked, Reason::Unproven));
    assert_eq!(w.status()["revoked_epoch"].as_u64(), Some(0));
    // The primary asks once more, then is silent: agreed, and persisted.
    assert_eq!(p.ask(Kind::Request, 3).kind, Kind::Grant);
    let since = mono_ns();
    let r = judged(&mut m, 3);
    assert_eq!((r.kind, r.reason), (Kind::Revoked, Reason::None));
    assert!(
        Duration::from_nanos(r.value_ns) < Duration::from_secs(1),
        "the last grant runs at most its lease, stretched: {r:?}"
    );
    w.log.wait(since, "lease_revoked", |_| true);
    w.start("1ms");
    let refused = p.ask(Kind::Request, 3);
    assert_eq!(
        (refused.kind, refused.reason),
        (Kind::Refuse, Reason::Revoked)
    );
    // The new primary (the old monitor, epoch 4) is renewed.
    assert_eq!(m.ask(Kind::Request, 4).kind, Kind::Grant);
    let st = w.status();
    assert_eq!(
        (st["revoked_epoch"].as_u64(), st["granted_epoch"].as_u64()),
        (Some(3), Some(4)),
        "{st}"
    );
    assert_eq!(
        std::fs::read_to_string(w.dir.join("state/revoked"))
            .unwrap()
            .trim(),
        "3"
    );
    w.stop();
    assert!(
        !Path::new(&w.dir.join("witness.sock")).exists(),
        "control socket removed"
    );
}

#[test]
fn witness_configs_and_keys_are_checked_with_the_field_named() {
    let w = Witness::new("check");
    let cfg = w.config("30ms");
    let check = |path: &Path| {
        std::process::Command::new(failover_bin())
            .args(["witness", "--check", "--config"])
            .arg(path)
            .output()
            .unwrap()
    };
    let ok = check(&cfg);
    assert!(ok.status.success(), "{ok:?}");
    let bad = w.dir.join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&cfg).unwrap().replace("30ms", "0s"),
    )
    .unwrap();
    let out = check(&bad);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("witness.detection"), "{err}");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(
        w.dir.join("lease.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = check(&cfg);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lease.key") && err.contains("chmod 600"),
        "{err}"
    );
}
