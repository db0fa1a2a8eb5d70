//! `xdp`: the XDP program itself, run in the kernel through BPF_PROG_TEST_RUN on fuzzed frames.
//! The object is the one failover embeds, loaded the same way (`FastPath::detached()`: aya,
//! maps FO_CONFIG / FO_STREAMS / FO_PEERS / FO_ARRIVALS / FO_STATS), never attached. Needs root.
//!
//! Configuration: UDP (replies from port 7777) and ICMP counted, two streams whose replies can
//! be reached: token `TOKEN4` / identifier `ICMP_ID` from 10.0.0.2, token `TOKEN6` from fd00::2
//! (the addresses of tests/harness/src/frames.rs). Bits 6-7 of the frame's first byte (the
//! destination MAC, which the program does not read) vary it: 0 as above, 1 with
//! FLAG_PASS_COUNTED, 2 ICMP only, 3 nothing enabled.
//!
//! Checks per frame: BPF_PROG_TEST_RUN accepts exactly the frames between 14 bytes and the
//! largest size it took at start-up; the verdict is XDP_PASS, or XDP_DROP exactly when
//! `matched` went up by one and counted replies are not passed on; `seen` goes up by at most one
//! (it counts candidate frames only), and by one whenever a class counter does; at most one class
//! counter (matched, rejected_id, rejected_token, rejected_source, truncated, malformed) goes up,
//! by one; nothing is classified, nor seen, with nothing enabled; a counted reply carries one of
//! the streams' tokens and adds one reply to that stream's source record.
#![no_main]

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Mutex,
};

use failover::fastpath::FastPath;
use failover_common::{FastPathConfig, Stats, FLAG_ICMP, FLAG_PASS_COUNTED, FLAG_UDP};
use failover_fuzz::write_seeds;
use libfuzzer_sys::fuzz_target;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const UDP_PORT: u16 = 7777;
const ICMP_ID: u16 = 0x4242;
const TOKEN4: u64 = 0x0123_4567_89ab_cdef;
const TOKEN6: u64 = 0xfeed_f00d_dead_beef;
const SRC4: [u8; 4] = [10, 0, 0, 2];
const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

struct Xdp {
    fp: FastPath,
    /// The largest frame BPF_PROG_TEST_RUN accepted at start-up.
    max_len: usize,
    /// The configuration now in FO_CONFIG.
    mode: Option<u8>,
}

static XDP: Mutex<Option<Xdp>> = Mutex::new(None);

fn config(mode: u8) -> FastPathConfig {
    let flags = match mode {
        0 => FLAG_UDP | FLAG_ICMP,
        1 => FLAG_UDP | FLAG_ICMP | FLAG_PASS_COUNTED,
        2 => FLAG_ICMP,
        _ => 0,
    };
    FastPathConfig {
        flags,
        udp_port: u32::from(UDP_PORT),
    }
}

fn load() -> Xdp {
    let mut fp = FastPath::detached()
        .icmp(true)
        .udp_port(UDP_PORT)
        .build()
        .expect("load the XDP program (root needed)");
    fp.add_stream(0, TOKEN4, ICMP_ID, IpAddr::V4(Ipv4Addr::from(SRC4)))
        .unwrap();
    fp.add_stream(1, TOKEN6, ICMP_ID, IpAddr::V6(Ipv6Addr::from(SRC6)))
        .unwrap();
    // The largest frame the kernel takes without fragments (a page less head- and tailroom).
    let (mut lo, mut hi) = (14usize, 1 << 16);
    assert!(
        fp.test_run(&[0u8; 14]).is_ok(),
        "BPF_PROG_TEST_RUN refused a 14-byte frame"
    );
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if fp.test_run(&vec![0u8; mid]).is_ok() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Xdp {
        fp,
        max_len: lo,
        mode: Some(0),
    }
}

// Frame builders, laid out as tests/harness/src/frames.rs.
fn eth(ethertype: u16, vlan: Option<u16>) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
    if let Some(id) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}
fn ipv4(proto: u8, src: [u8; 4], l4: &[u8], vlan: Option<u16>) -> Vec<u8> {
    let mut f = eth(0x0800, vlan);
    let total = (20 + l4.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0, 0, 64, proto, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[10, 0, 0, 1]);
    f.extend_from_slice(l4);
    f
}
fn ipv6(proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = eth(0x86dd, None);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    f.extend_from_slice(&[proto, 64]);
    f.extend_from_slice(&SRC6);
    let mut dst = SRC6;
    dst[15] = 1;
    f.extend_from_slice(&dst);
    f.extend_from_slice(l4);
    f
}
fn echo(ty: u8, id: u16, seq: u16, token: u64) -> Vec<u8> {
    let mut p = vec![ty, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&token.to_be_bytes());
    p.extend_from_slice(&[0xab; 8]);
    p
}
fn udp(sport: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = sport.to_be_bytes().to_vec();
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}
fn heartbeat(kind: u8, token: u64, seq: u64) -> Vec<u8> {
    failover::signal::wire::Message::decode(&{
        let mut m = [0u8; 40];
        m[..4].copy_from_slice(&failover_common::wire::MAGIC.to_be_bytes());
        m[4] = failover_common::wire::VERSION;
        m[5] = kind;
        m[8..16].copy_from_slice(&token.to_be_bytes());
        m[16..24].copy_from_slice(&seq.to_be_bytes());
        m
    })
    .expect("a valid message")
    .encode()
    .to_vec()
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    use failover_common::wire::{KIND_HEARTBEAT, KIND_HEARTBEAT_REPLY};
    vec![
        (
            "udp-reply",
            ipv4(
                17,
                SRC4,
                &udp(UDP_PORT, &heartbeat(KIND_HEARTBEAT_REPLY, TOKEN4, 7)),
                None,
            ),
        ),
        (
            "icmp-reply",
            ipv4(1, SRC4, &echo(0, ICMP_ID, 7, TOKEN4), None),
        ),
        ("icmp6-reply", ipv6(58, &echo(129, ICMP_ID, 9, TOKEN6))),
        (
            "udp6-reply",
            ipv6(
                17,
                &udp(UDP_PORT, &heartbeat(KIND_HEARTBEAT_REPLY, TOKEN6, 9)),
            ),
        ),
        (
            "vlan-icmp-reply",
            ipv4(1, SRC4, &echo(0, ICMP_ID, 8, TOKEN4), Some(5)),
        ),
        (
            "udp-request",
            ipv4(
                17,
                SRC4,
                &udp(UDP_PORT, &heartbeat(KIND_HEARTBEAT, TOKEN4, 7)),
                None,
            ),
        ),
        (
            "udp-other-source",
            ipv4(
                17,
                [10, 0, 0, 9],
                &udp(UDP_PORT, &heartbeat(KIND_HEARTBEAT_REPLY, TOKEN4, 7)),
                None,
            ),
        ),
        ("icmp-other-id", ipv4(1, SRC4, &echo(0, 1, 7, TOKEN4), None)),
        (
            "icmp-other-token",
            ipv4(1, SRC4, &echo(0, ICMP_ID, 7, 5), None),
        ),
        ("arp", [eth(0x0806, None), vec![0; 28]].concat()),
    ]
}

fn delta(a: &Stats, b: &Stats) -> [u64; 7] {
    [
        b.seen - a.seen,
        b.matched - a.matched,
        b.rejected_id - a.rejected_id,
        b.rejected_token - a.rejected_token,
        b.rejected_source - a.rejected_source,
        b.truncated - a.truncated,
        b.malformed - a.malformed,
    ]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fuzz_target!(
    init: {
        write_seeds(&seeds());
        *XDP.lock().unwrap() = Some(load());
    },
    |data: &[u8]| {
        let mut guard = XDP.lock().unwrap();
        let x = guard.as_mut().expect("loaded in init");
        let mode = data.first().map_or(0, |b| b >> 6);
        if x.mode != Some(mode) {
            x.fp.set_config(&config(mode)).unwrap();
            x.mode = Some(mode);
        }
        let cfg = config(mode);
        let srcs = [IpAddr::V4(Ipv4Addr::from(SRC4)), IpAddr::V6(Ipv6Addr::from(SRC6))];
        let replies = |fp: &FastPath| srcs.map(|a| fp.peer(a).unwrap().map_or(0, |r| r.replies));
        let before = x.fp.stats().unwrap();
        let peers_before = replies(&x.fp);
        let verdict = match x.fp.test_run(data) {
            Ok(v) => {
                assert!((14..=x.max_len).contains(&data.len()), "took a {}-byte frame", data.len());
                v
            }
            Err(e) => {
                assert!(
                    data.len() < 14 || data.len() > x.max_len,
                    "BPF_PROG_TEST_RUN failed on a {}-byte frame: {e}",
                    data.len()
                );
                return;
            }
        };
        let after = x.fp.stats().unwrap();
        let d = delta(&before, &after);
        assert!(d[0] <= 1, "seen went up by {}", d[0]);
        assert!(d[1..].iter().all(|&c| c <= 1) && d[1..].iter().sum::<u64>() <= 1, "class counters {d:?}");
        assert!(d[1..].iter().sum::<u64>() == 0 || d[0] == 1, "classified but not seen: {d:?}");
        let matched = d[1] == 1;
        match verdict {
            XDP_DROP => assert!(matched && cfg.flags & FLAG_PASS_COUNTED == 0, "dropped a frame it did not count: {d:?}"),
            XDP_PASS => assert!(!matched || cfg.flags & FLAG_PASS_COUNTED != 0, "passed a counted reply"),
            v => panic!("verdict {v}"),
        }
        if cfg.flags == 0 {
            assert_eq!(d, [0; 7], "seen or classified with nothing enabled");
        }
        let peers_after = replies(&x.fp);
        if matched {
            let t4 = contains(data, &TOKEN4.to_be_bytes()) && contains(data, &SRC4);
            let t6 = contains(data, &TOKEN6.to_be_bytes()) && contains(data, &SRC6);
            assert!(t4 || t6, "counted a reply without a stream's token and source");
            let added: Vec<u64> = peers_after.iter().zip(&peers_before).map(|(a, b)| a - b).collect();
            assert_eq!(added.iter().sum::<u64>(), 1, "source records {added:?}");
        } else {
            assert_eq!(peers_after, peers_before, "a source record changed without a count");
        }
    }
);
