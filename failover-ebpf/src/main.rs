//! XDP heartbeat fast path.
//!
//! Runs on the monitor's interface. For every frame it decides, as cheaply as it can, whether the
//! frame is a reply to one of our probe streams (the heartbeat to P, the witnesses); the common
//! case (not ours) returns `XDP_PASS` after reading the Ethernet and IP headers once. A reply
//! counts only when it carries a stream's 64-bit token (in the UDP heartbeat message, or right
//! after the ICMP echo header), the stream's ICMP identifier, and comes from the stream's target:
//! an off-path host cannot forge liveness, and one on the path cannot stand in for P. Counted
//! replies get a kernel arrival stamp (`bpf_ktime_get_ns`, CLOCK_MONOTONIC) in the stream's ring
//! per sequence number and per source address; userspace judges deadlines from those stamps, so
//! a stalled controller never turns an in-time reply into a late one.
//!
//! Counted replies are consumed (`XDP_DROP`): nobody else listens for them, and dropping them
//! saves the stack a socket lookup and a wake-up per probe. `FLAG_PASS_COUNTED` passes them on
//! instead (for `tcpdump` or a second consumer). Everything else - not ours, rejected, truncated,
//! malformed - is always passed: a health monitor must never drop traffic it does not own.
#![no_std]
#![no_main]

mod gate;

use core::{
    mem::size_of,
    ptr::{addr_of_mut, read_unaligned, write_volatile},
};

use aya_ebpf::{
    bindings::{xdp_action, BPF_NOEXIST},
    btf_maps::{Array, HashMap, PerCpuArray},
    helpers::bpf_ktime_get_ns,
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use aya_log_ebpf::debug;
use failover_common::{
    wire, Arrival, FastPathConfig, PeerKey, PeerRecord, Stats, Stream, ARRIVALS_MAP_FLAGS,
    ARRIVAL_SLOTS, FLAG_ICMP, FLAG_PASS_COUNTED, FLAG_UDP, MAX_PEERS, MAX_STREAMS,
};

/// Configuration (key 0). Written by userspace before attaching; read here for ICMP echo
/// replies and UDP datagrams only (other frames are not ours whatever it says).
#[btf_map]
static FO_CONFIG: Array<FastPathConfig, 1> = Array::new();

/// The probe streams, by token. Written by userspace; read here.
#[btf_map]
static FO_STREAMS: HashMap<u64, Stream, { MAX_STREAMS as usize }> = HashMap::new();

/// Per-source records (IPv4-mapped IPv6 key). Written here; read by userspace and bpftool.
#[btf_map]
static FO_PEERS: HashMap<PeerKey, PeerRecord, { MAX_PEERS as usize }> = HashMap::new();

/// One arrival ring per stream, indexed by `stream * ARRIVAL_SLOTS + seq % ARRIVAL_SLOTS`.
/// Written here; read by userspace per probe from a read-only `mmap` of the map
/// (`BPF_F_MMAPABLE`), without a syscall.
#[btf_map]
static FO_ARRIVALS: Array<
    Arrival,
    { (MAX_STREAMS * ARRIVAL_SLOTS) as usize },
    { ARRIVALS_MAP_FLAGS as usize },
> = Array::new();

/// Per-CPU counters (key 0). Written here; summed by userspace.
#[btf_map]
static FO_STATS: PerCpuArray<Stats, 1> = PerCpuArray::new();

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const VLAN_HLEN: usize = 4;
const IPV4_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMPV6_ECHO_REPLY: u8 = 129;
const ICMP_HLEN: usize = 8;
/// The echo header and the token our probes carry right after it.
const ICMP_TOKEN_LEN: usize = ICMP_HLEN + 8;
const UDP_HLEN: usize = 8;
/// IPv4 "more fragments" flag and fragment offset bits.
const IP_MF_OFFSET: u16 = 0x3fff;

/// What the program concluded about one frame.
enum FrameClass {
    /// Not a reply to us, decided from the headers (for an echo reply or a UDP datagram, with
    /// `FO_CONFIG`): passed untouched, no counter moves. The common case; other traffic than
    /// ICMP echo replies and UDP gets here without any map access.
    NotOurs,
    /// A candidate (a UDP message from the heartbeat port) that is not a heartbeat reply:
    /// passed, only `seen` counts.
    Candidate,
    /// A reply to one of our probes, counted; `pass`: passed on (`FLAG_PASS_COUNTED`) rather
    /// than consumed.
    Counted { pass: bool },
    /// An echo reply with another identifier.
    RejectedId,
    /// A reply with a token that is not a stream's.
    RejectedToken,
    /// A reply with a stream's token from another source than the stream's target.
    RejectedSource,
    /// The frame ended inside a header we needed.
    Truncated,
    /// A header with impossible fields.
    Malformed,
}

/// Baseline of the cost benchmark (`cargo xtask bench-xdp`): passes every frame and touches
/// nothing. Loaded only by the benchmark, which attaches it only to a veth of its own
/// namespaces (`FastPath::attach_baseline`); the daemon never does.
#[xdp]
pub fn failover_xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Entry point: never fails, never drops what it did not count.
///
/// Unrelated traffic (not IPv4/IPv6, not ICMP echo replies or UDP, UDP from another port) is
/// passed as soon as the headers say so, before the statistics are touched: the counters,
/// `seen` included, count candidate frames only.
#[xdp]
pub fn failover_xdp(ctx: XdpContext) -> u32 {
    let verdict = classify(&ctx);
    match verdict {
        FrameClass::NotOurs => return xdp_action::XDP_PASS,
        // Decided from the headers alone (rare): with nothing enabled, nothing is classified.
        FrameClass::Truncated | FrameClass::Malformed
            if config().flags & (FLAG_ICMP | FLAG_UDP) == 0 =>
        {
            return xdp_action::XDP_PASS
        }
        _ => {}
    }
    if let Some(s) = FO_STATS.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, this program is the only writer on this CPU.
        let s = unsafe { &mut *s };
        s.seen += 1;
        match verdict {
            FrameClass::NotOurs | FrameClass::Candidate => {}
            FrameClass::Counted { .. } => s.matched += 1,
            FrameClass::RejectedId => s.rejected_id += 1,
            FrameClass::RejectedToken => s.rejected_token += 1,
            FrameClass::RejectedSource => s.rejected_source += 1,
            FrameClass::Truncated => s.truncated += 1,
            FrameClass::Malformed => s.malformed += 1,
        }
    }
    match verdict {
        FrameClass::Counted { pass: false } => xdp_action::XDP_DROP,
        _ => xdp_action::XDP_PASS,
    }
}

/// The configuration (key 0 of `FO_CONFIG`; all off when missing).
#[inline(always)]
fn config() -> FastPathConfig {
    match FO_CONFIG.get(0) {
        Some(c) => *c,
        None => FastPathConfig::default(),
    }
}

/// Bounds-checked pointer to a `T` at `offset` bytes into the frame.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

/// Reads a `T` (unaligned) at `offset`, or `None` when the frame is too short.
#[inline(always)]
fn read<T: Copy>(ctx: &XdpContext, offset: usize) -> Option<T> {
    // SAFETY: ptr_at checked that the bytes lie inside the frame.
    ptr_at::<T>(ctx, offset).map(|p| unsafe { read_unaligned(p) })
}

#[inline(always)]
fn be16(ctx: &XdpContext, offset: usize) -> Option<u16> {
    read::<[u8; 2]>(ctx, offset).map(u16::from_be_bytes)
}

/// Classifies a frame: the headers first (Ethernet, at most one VLAN tag, IPv4 or IPv6, the
/// protocol, the ICMP type or the UDP header), so that unrelated traffic is `NotOurs` before any
/// map access; `FO_CONFIG` only for an echo reply or a UDP datagram.
#[inline(always)]
fn classify(ctx: &XdpContext) -> FrameClass {
    let Some(mut proto) = be16(ctx, 12) else {
        return FrameClass::Truncated;
    };
    let mut l3 = ETH_HLEN;
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        let Some(inner) = be16(ctx, ETH_HLEN + 2) else {
            return FrameClass::Truncated;
        };
        proto = inner;
        l3 += VLAN_HLEN;
    }
    match proto {
        ETH_P_IP => {
            let Some(h) = read::<[u8; IPV4_HLEN]>(ctx, l3) else {
                return FrameClass::Truncated;
            };
            if h[0] >> 4 != 4 || h[0] & 0x0f < 5 {
                return FrameClass::Malformed;
            }
            if u16::from_be_bytes([h[6], h[7]]) & IP_MF_OFFSET != 0 {
                // A fragment: our replies are never fragmented, and only the first fragment
                // would carry a header to match.
                return FrameClass::NotOurs;
            }
            let l4_proto = h[9];
            if l4_proto != IPPROTO_ICMP && l4_proto != IPPROTO_UDP {
                return FrameClass::NotOurs;
            }
            let l4 = l3 + ((h[0] & 0x0f) as usize) * 4;
            let mut src: PeerKey = [0; 16];
            src[10] = 0xff;
            src[11] = 0xff;
            src[12] = h[12];
            src[13] = h[13];
            src[14] = h[14];
            src[15] = h[15];
            if l4_proto == IPPROTO_ICMP {
                echo_reply(ctx, l4, src, ICMP_ECHO_REPLY)
            } else {
                heartbeat_reply(ctx, l4, src)
            }
        }
        ETH_P_IPV6 => {
            let Some(h) = read::<[u8; 8]>(ctx, l3) else {
                return FrameClass::Truncated;
            };
            if ptr_at::<[u8; IPV6_HLEN]>(ctx, l3).is_none() {
                return FrameClass::Truncated;
            }
            if h[0] >> 4 != 6 {
                return FrameClass::Malformed;
            }
            // Extension headers (including fragments) are not ours: replies to our probes carry
            // the upper-layer header directly.
            let l4_proto = h[6];
            if l4_proto != IPPROTO_ICMPV6 && l4_proto != IPPROTO_UDP {
                return FrameClass::NotOurs;
            }
            let Some(src) = read::<PeerKey>(ctx, l3 + 8) else {
                return FrameClass::Truncated;
            };
            let l4 = l3 + IPV6_HLEN;
            if l4_proto == IPPROTO_ICMPV6 {
                echo_reply(ctx, l4, src, ICMPV6_ECHO_REPLY)
            } else {
                heartbeat_reply(ctx, l4, src)
            }
        }
        _ => FrameClass::NotOurs,
    }
}

#[inline(always)]
fn echo_reply(ctx: &XdpContext, l4: usize, src: PeerKey, reply: u8) -> FrameClass {
    let Some(h) = read::<[u8; ICMP_HLEN]>(ctx, l4) else {
        return FrameClass::Truncated;
    };
    if h[0] != reply || h[1] != 0 {
        return FrameClass::NotOurs;
    }
    let cfg = config();
    if cfg.flags & FLAG_ICMP == 0 {
        return FrameClass::NotOurs;
    }
    let Some(t) = read::<[u8; ICMP_TOKEN_LEN]>(ctx, l4) else {
        return FrameClass::Truncated;
    };
    let token = u64::from_be_bytes([t[8], t[9], t[10], t[11], t[12], t[13], t[14], t[15]]);
    let Some(stream) = FO_STREAMS.get_ptr(token) else {
        debug!(ctx, "echo reply with unknown token {:x}", token);
        return FrameClass::RejectedToken;
    };
    // SAFETY: the entry was just looked up and is only read.
    let stream = unsafe { *stream };
    let id = u16::from_be_bytes([h[4], h[5]]) as u32;
    if id != stream.icmp_id {
        debug!(ctx, "echo reply with foreign identifier {}", id);
        return FrameClass::RejectedId;
    }
    if !same_source(&src, &stream.src) {
        return FrameClass::RejectedSource;
    }
    record(&stream, src, u16::from_be_bytes([h[6], h[7]]) as u64);
    FrameClass::Counted {
        pass: cfg.flags & FLAG_PASS_COUNTED != 0,
    }
}

#[inline(always)]
fn heartbeat_reply(ctx: &XdpContext, l4: usize, src: PeerKey) -> FrameClass {
    let Some(sport) = be16(ctx, l4) else {
        return FrameClass::Truncated;
    };
    if ptr_at::<[u8; UDP_HLEN]>(ctx, l4).is_none() {
        return FrameClass::Truncated;
    }
    let cfg = config();
    if cfg.flags & FLAG_UDP == 0 || sport as u32 != cfg.udp_port {
        return FrameClass::NotOurs;
    }
    let Some(m) = read::<[u8; wire::LEN]>(ctx, l4 + UDP_HLEN) else {
        return FrameClass::Truncated;
    };
    if wire::get_u32(&m, wire::OFF_MAGIC) != wire::MAGIC || m[wire::OFF_VERSION] != wire::VERSION {
        return FrameClass::Malformed;
    }
    if m[wire::OFF_KIND] != wire::KIND_HEARTBEAT_REPLY {
        return FrameClass::Candidate;
    }
    let token = wire::get_u64(&m, wire::OFF_TOKEN);
    let Some(stream) = FO_STREAMS.get_ptr(token) else {
        debug!(ctx, "heartbeat reply with unknown token {:x}", token);
        return FrameClass::RejectedToken;
    };
    // SAFETY: the entry was just looked up and is only read.
    let stream = unsafe { *stream };
    if !same_source(&src, &stream.src) {
        return FrameClass::RejectedSource;
    }
    record(&stream, src, wire::get_u64(&m, wire::OFF_SEQ));
    FrameClass::Counted {
        pass: cfg.flags & FLAG_PASS_COUNTED != 0,
    }
}

/// Whether two addresses are equal, compared as two words (an array comparison could become a
/// `memcmp` call, which BPF programs cannot make).
#[inline(always)]
fn same_source(a: &PeerKey, b: &PeerKey) -> bool {
    let word = |k: &PeerKey, i: usize| {
        u64::from_ne_bytes([
            k[i],
            k[i + 1],
            k[i + 2],
            k[i + 3],
            k[i + 4],
            k[i + 5],
            k[i + 6],
            k[i + 7],
        ])
    };
    word(a, 0) == word(b, 0) && word(a, 8) == word(b, 8)
}

/// Stamps a counted reply into its stream's arrival ring and the per-source record.
#[inline(always)]
fn record(stream: &Stream, src: PeerKey, seq: u64) {
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let slot =
        (stream.index & (MAX_STREAMS - 1)) * ARRIVAL_SLOTS + ((seq as u32) & (ARRIVAL_SLOTS - 1));
    if let Some(a) = FO_ARRIVALS.get_ptr_mut(slot) {
        // Userspace reads the slot from memory while this runs: clear the stamp, write the
        // sequence, then the stamp (volatile, so the compiler keeps the order). A reader that
        // loads the stamp before and after the sequence and finds them equal (and non-zero)
        // has a consistent pair (the protocol is on `Arrival`).
        // SAFETY: array slots are preallocated and stay valid for the program's run.
        unsafe {
            write_volatile(addr_of_mut!((*a).ns), 0);
            write_volatile(addr_of_mut!((*a).seq), seq);
            write_volatile(addr_of_mut!((*a).ns), now);
        }
    }
    match FO_PEERS.get_ptr_mut(src) {
        // Plain increments: replies from one peer arrive on one RX queue in practice, and the
        // per-probe judgement uses the arrival ring, not this counter.
        // SAFETY: the entry was just looked up; only this program writes it.
        Some(p) => unsafe {
            (*p).replies += 1;
            (*p).last_ns = now;
            (*p).last_seq = seq;
        },
        None => {
            let rec = PeerRecord {
                replies: 1,
                last_ns: now,
                last_seq: seq,
                first_ns: now,
            };
            // A full map (MAX_PEERS sources) only loses the per-source record, not the stamp.
            let _ = FO_PEERS.insert(src, rec, BPF_NOEXIST as u64);
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects any program with a reachable panic path.
    unsafe { core::hint::unreachable_unchecked() }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
