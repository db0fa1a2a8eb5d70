//! Frame-level tests of the XDP program through BPF_PROG_TEST_RUN (aya's `TestRun`).
//!
//! Each row feeds one frame and checks the action and which counter moved (`seen` moves for
//! candidate frames only: unrelated traffic moves no counter). Needs root.
use failover::fastpath::FastPath;
use failover_common::{wire, Stats};
use failover_harness::{
    frames::{echo, frame, from_other_source, heartbeat, udp, L3, SRC4, SRC6},
    require_root,
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const ID: u16 = 0x1234;
const PORT: u16 = 7788;
/// The token of stream 0, whose replies come from SRC4.
const TOKEN: u64 = 0xdead_beef_0bad_f00d;
/// The token of stream 1, whose replies come from SRC6.
const TOKEN6: u64 = 0x0006_0006_0006_0006;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Counter {
    /// No counter moved, `seen` included: decided from the headers (or the port).
    None,
    /// Only `seen` moved: a candidate that is not a reply (another message from the port).
    Seen,
    Matched,
    RejectedId,
    RejectedToken,
    RejectedSource,
    Truncated,
    Malformed,
}

fn delta(before: &Stats, after: &Stats) -> Vec<Counter> {
    let mut v = Vec::new();
    for (c, b, a) in [
        (Counter::Matched, before.matched, after.matched),
        (Counter::RejectedId, before.rejected_id, after.rejected_id),
        (
            Counter::RejectedToken,
            before.rejected_token,
            after.rejected_token,
        ),
        (
            Counter::RejectedSource,
            before.rejected_source,
            after.rejected_source,
        ),
        (Counter::Truncated, before.truncated, after.truncated),
        (Counter::Malformed, before.malformed, after.malformed),
    ] {
        for _ in b..a {
            v.push(c);
        }
    }
    let seen = after.seen - before.seen;
    assert!(seen <= 1, "seen at most once, moved by {seen}");
    if !v.is_empty() {
        assert_eq!(seen, 1, "a classified frame is seen");
    } else if seen == 1 {
        v.push(Counter::Seen);
    }
    v
}

fn fast_path() -> FastPath {
    require_root("xdp_frames");
    let mut fp = FastPath::detached()
        .icmp(true)
        .udp_port(PORT)
        .build()
        .expect("load the XDP program");
    fp.add_stream(0, TOKEN, ID, std::net::Ipv4Addr::from(SRC4).into())
        .expect("write the stream map");
    fp.add_stream(1, TOKEN6, ID, std::net::Ipv6Addr::from(SRC6).into())
        .expect("write the stream map");
    fp
}

/// The stream and token of replies from `l3`'s source.
fn stream_of(l3: &L3) -> (u32, u64) {
    match l3 {
        L3::V4 { .. } => (0, TOKEN),
        L3::V6 => (1, TOKEN6),
    }
}

fn icmp_reply(l3: &L3, vlan: Option<u16>, id: u16, seq: u16) -> Vec<u8> {
    icmp_reply_token(l3, vlan, id, seq, stream_of(l3).1)
}

fn icmp_reply_token(l3: &L3, vlan: Option<u16>, id: u16, seq: u16, token: u64) -> Vec<u8> {
    match l3 {
        L3::V4 { .. } => frame(l3, vlan, 1, &echo(0, id, seq, token)),
        L3::V6 => frame(l3, vlan, 58, &echo(129, id, seq, token)),
    }
}

fn hb_reply(l3: &L3, sport: u16, token: u64, seq: u64) -> Vec<u8> {
    frame(
        l3,
        None,
        17,
        &udp(sport, &heartbeat(wire::KIND_HEARTBEAT_REPLY, token, seq)),
    )
}

/// (name, frame, expected action, expected counter, expected counted (stream, seq))
type Row = (&'static str, Vec<u8>, u32, Counter, Option<(u32, u64)>);

fn rows() -> Vec<Row> {
    let v4 = L3::v4();
    let v6 = L3::V6;
    let opts = L3::V4 {
        options: vec![1, 1, 1, 0], // NOP NOP NOP EOL
        frag: 0,
    };
    let mf = L3::V4 {
        options: Vec::new(),
        frag: 0x2000,
    };
    let later_frag = L3::V4 {
        options: Vec::new(),
        frag: 0x0010,
    };
    let mut bad_magic = heartbeat(wire::KIND_HEARTBEAT_REPLY, TOKEN, 9);
    bad_magic[0] = b'X';
    vec![
        (
            "icmp reply",
            icmp_reply(&v4, None, ID, 101),
            XDP_DROP,
            Counter::Matched,
            Some((0, 101)),
        ),
        (
            "icmpv6 reply",
            icmp_reply(&v6, None, ID, 102),
            XDP_DROP,
            Counter::Matched,
            Some((1, 102)),
        ),
        (
            "udp heartbeat reply",
            hb_reply(&v4, PORT, TOKEN, 103),
            XDP_DROP,
            Counter::Matched,
            Some((0, 103)),
        ),
        (
            "udp heartbeat reply v6",
            hb_reply(&v6, PORT, TOKEN6, 104),
            XDP_DROP,
            Counter::Matched,
            Some((1, 104)),
        ),
        (
            "icmp reply, ipv4 options",
            icmp_reply(&opts, None, ID, 105),
            XDP_DROP,
            Counter::Matched,
            Some((0, 105)),
        ),
        (
            "icmp reply, vlan tag",
            icmp_reply(&v4, Some(42), ID, 106),
            XDP_DROP,
            Counter::Matched,
            Some((0, 106)),
        ),
        (
            "icmpv6 reply, vlan tag",
            icmp_reply(&v6, Some(42), ID, 107),
            XDP_DROP,
            Counter::Matched,
            Some((1, 107)),
        ),
        (
            "icmp reply, wrong id",
            icmp_reply(&v4, None, ID + 1, 1),
            XDP_PASS,
            Counter::RejectedId,
            None,
        ),
        (
            "icmpv6 reply, wrong id",
            icmp_reply(&v6, None, ID + 1, 1),
            XDP_PASS,
            Counter::RejectedId,
            None,
        ),
        (
            "icmp reply, unknown token",
            icmp_reply_token(&v4, None, ID, 1, TOKEN + 1),
            XDP_PASS,
            Counter::RejectedToken,
            None,
        ),
        (
            "icmp reply, token of the v6 stream from the v4 source",
            icmp_reply_token(&v4, None, ID, 1, TOKEN6),
            XDP_PASS,
            Counter::RejectedSource,
            None,
        ),
        (
            "icmp reply, foreign source",
            from_other_source(icmp_reply(&v4, None, ID, 1)),
            XDP_PASS,
            Counter::RejectedSource,
            None,
        ),
        (
            "udp reply, foreign source",
            from_other_source(hb_reply(&v4, PORT, TOKEN, 1)),
            XDP_PASS,
            Counter::RejectedSource,
            None,
        ),
        (
            "udp reply, wrong token",
            hb_reply(&v4, PORT, TOKEN + 1, 1),
            XDP_PASS,
            Counter::RejectedToken,
            None,
        ),
        (
            "udp reply, wrong port",
            hb_reply(&v4, PORT + 1, TOKEN, 1),
            XDP_PASS,
            Counter::None,
            None,
        ),
        (
            "udp heartbeat request",
            frame(
                &v4,
                None,
                17,
                &udp(PORT, &heartbeat(wire::KIND_HEARTBEAT, TOKEN, 1)),
            ),
            XDP_PASS,
            Counter::Seen,
            None,
        ),
        (
            "udp bad magic",
            frame(&v4, None, 17, &udp(PORT, &bad_magic)),
            XDP_PASS,
            Counter::Malformed,
            None,
        ),
        (
            "icmp echo request",
            frame(&v4, None, 1, &echo(8, ID, 1, TOKEN)),
            XDP_PASS,
            Counter::None,
            None,
        ),
        (
            "icmpv6 echo request",
            frame(&v6, None, 58, &echo(128, ID, 1, TOKEN6)),
            XDP_PASS,
            Counter::None,
            None,
        ),
        (
            "ipv4 first fragment (MF)",
            icmp_reply(&mf, None, ID, 1),
            XDP_PASS,
            Counter::None,
            None,
        ),
        (
            "ipv4 later fragment",
            icmp_reply(&later_frag, None, ID, 1),
            XDP_PASS,
            Counter::None,
            None,
        ),
        (
            "ipv6 fragment header",
            frame(&v6, None, 44, &[58, 0, 0, 0, 0, 0, 0, 1]),
            XDP_PASS,
            Counter::None,
            None,
        ),
        (
            "tcp",
            frame(&v4, None, 6, &[0; 20]),
            XDP_PASS,
            Counter::None,
            None,
        ),
        (
            "arp",
            {
                let mut f = failover_harness::frames::eth(0x0806, None);
                f.extend_from_slice(&[0; 28]);
                f
            },
            XDP_PASS,
            Counter::None,
            None,
        ),
        (
            "ipv4 ihl < 5",
            {
                let mut f = icmp_reply(&v4, None, ID, 1);
                f[14] = 0x44;
                f
            },
            XDP_PASS,
            Counter::Malformed,
            None,
        ),
        (
            "ipv4 header says v6",
            {
                let mut f = icmp_reply(&v4, None, ID, 1);
                f[14] = 0x65;
                f
            },
            XDP_PASS,
            Counter::Malformed,
            None,
        ),
        (
            "double vlan tag",
            {
                let mut f = failover_harness::frames::eth(0x8100, Some(7));
                f.extend_from_slice(&icmp_reply(&v4, None, ID, 1)[12..]);
                f
            },
            XDP_PASS,
            Counter::None,
            None,
        ),
    ]
}

#[test]
fn frames_are_classified_and_never_dropped_unless_counted() {
    let mut fp = fast_path();
    // The arrival slots below are read from the memory-mapped map, not through the syscall.
    assert!(fp.arrivals_mapped(), "FO_ARRIVALS is mmapable and mapped");
    for (name, f, want_action, want_counter, want_seq) in rows() {
        let before = fp.stats().expect("read stats");
        let action = fp
            .test_run(&f)
            .unwrap_or_else(|e| panic!("{name}: test run: {e}"));
        let after = fp.stats().expect("read stats");
        assert_eq!(action, want_action, "{name}: action");
        let moved = delta(&before, &after);
        let want: Vec<Counter> = match want_counter {
            Counter::None => vec![],
            c => vec![c],
        };
        assert_eq!(moved, want, "{name}: counters");
        if let Some((stream, seq)) = want_seq {
            let a = fp.arrival(stream, seq).expect("read arrival");
            assert_eq!(
                a.seq, seq,
                "{name}: arrival slot holds the reply's sequence"
            );
            assert_ne!(a.ns, 0, "{name}: arrival stamped");
        }
    }
}

#[test]
fn truncation_at_every_header_boundary_passes() {
    let mut fp = fast_path();
    // (name, frame, bytes the program must read: all headers plus the heartbeat message or
    // the token after the echo header; the rest of the echo payload is not read)
    let full: Vec<(&str, Vec<u8>, usize)> = vec![
        ("icmp", icmp_reply(&L3::v4(), None, ID, 5), 14 + 20 + 16),
        (
            "icmp vlan",
            icmp_reply(&L3::v4(), Some(3), ID, 5),
            18 + 20 + 16,
        ),
        ("icmpv6", icmp_reply(&L3::V6, None, ID, 5), 14 + 40 + 16),
        (
            "udp",
            hb_reply(&L3::v4(), PORT, TOKEN, 5),
            14 + 20 + 8 + wire::LEN,
        ),
        (
            "udp v6",
            hb_reply(&L3::V6, PORT, TOKEN6, 5),
            14 + 40 + 8 + wire::LEN,
        ),
    ];
    for (name, f, needed) in full {
        // BPF_PROG_TEST_RUN refuses XDP input shorter than an Ethernet header, so cuts start
        // there; every length short of what the program must read is tried.
        for len in 14..needed {
            let cut = &f[..len];
            let before = fp.stats().expect("stats");
            let action = fp.test_run(cut).expect("test run");
            let after = fp.stats().expect("stats");
            assert_eq!(action, XDP_PASS, "{name} cut at {len}: passed");
            assert_eq!(
                after.matched, before.matched,
                "{name} cut at {len}: not counted"
            );
            assert_eq!(
                after.truncated,
                before.truncated + 1,
                "{name} cut at {len}: counted as truncated"
            );
        }
        // The shortest complete frame counts, so the cuts were really the only difference.
        assert_eq!(
            fp.test_run(&f[..needed]).expect("test run"),
            XDP_DROP,
            "{name} whole"
        );
    }
}

#[test]
fn unconfigured_program_passes_everything() {
    require_root("xdp_frames");
    let mut fp = FastPath::detached().build().expect("load");
    let f = icmp_reply(&L3::v4(), None, ID, 1);
    assert_eq!(fp.test_run(&f).expect("run"), XDP_PASS);
    let s = fp.stats().expect("stats");
    // Nothing enabled, nothing classified: not even `seen` moves.
    assert_eq!((s.seen, s.matched), (0, 0));
}

#[test]
fn pass_counted_flag_passes_counted_replies() {
    require_root("xdp_frames");
    let mut fp = FastPath::detached()
        .icmp(true)
        .pass_counted(true)
        .build()
        .expect("load");
    fp.add_stream(3, TOKEN, ID, std::net::Ipv4Addr::from(SRC4).into())
        .expect("stream");
    let f = icmp_reply(&L3::v4(), None, ID, 77);
    assert_eq!(fp.test_run(&f).expect("run"), XDP_PASS);
    assert_eq!(fp.stats().expect("stats").matched, 1);
    assert_eq!(
        fp.arrival(3, 77).expect("arrival").seq,
        77,
        "stamped in stream 3's ring"
    );
    assert_eq!(
        fp.arrival(0, 77).expect("arrival").ns,
        0,
        "not in stream 0's"
    );
}

#[test]
fn withdrawn_stream_is_rejected() {
    let mut fp = fast_path();
    let f = hb_reply(&L3::v4(), PORT, TOKEN, 3);
    assert_eq!(fp.test_run(&f).expect("run"), XDP_DROP);
    fp.remove_stream(TOKEN).expect("remove stream");
    assert_eq!(fp.test_run(&f).expect("run"), XDP_PASS);
    assert_eq!(fp.stats().expect("stats").rejected_token, 1);
}

#[test]
fn per_source_record_counts_replies() {
    let mut fp = fast_path();
    for seq in 1..=3 {
        fp.test_run(&icmp_reply(&L3::v4(), None, ID, seq))
            .expect("run");
    }
    let src = std::net::Ipv4Addr::from(SRC4);
    let rec = fp
        .peer(src.into())
        .expect("read peers")
        .expect("peer recorded");
    assert_eq!((rec.replies, rec.last_seq), (3, 3));
    assert!(rec.first_ns <= rec.last_ns);
    let src6 = std::net::Ipv6Addr::from(SRC6);
    assert!(fp.peer(src6.into()).expect("read peers").is_none());
}
