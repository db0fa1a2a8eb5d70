//! Types shared by the XDP fast path (`failover-ebpf`) and the userspace controller.
//!
//! Everything here is `#[repr(C)]`, made of plain integers with explicit padding, so that the
//! kernel side and the user side agree byte for byte and `bpftool map dump` prints typed fields.
#![no_std]

/// Name of the XDP program in the object file.
pub const PROGRAM_NAME: &str = "failover_xdp";
/// The pass-only baseline program of the cost benchmark.
pub const BASELINE_PROGRAM_NAME: &str = "failover_xdp_pass";

/// Map: the fast path's configuration (one entry). Written by userspace, read by XDP.
pub const MAP_CONFIG: &str = "FO_CONFIG";
/// Map: the probe streams, by the token their replies carry. Written by userspace, read by XDP.
pub const MAP_STREAMS: &str = "FO_STREAMS";
/// Map: per-source reply records. Written by XDP, read by userspace.
pub const MAP_PEERS: &str = "FO_PEERS";
/// Map: per-stream, per-sequence arrival stamps (one ring per stream). Written by XDP, read by
/// userspace through a read-only `mmap` of the map (it is created with [`ARRIVALS_MAP_FLAGS`]).
pub const MAP_ARRIVALS: &str = "FO_ARRIVALS";
/// `BPF_F_MMAPABLE` (`1 << 10` in the kernel's UAPI): an array map whose values userspace can
/// `mmap` (the values start at offset 0 of the mapping, `value_size` rounded up to 8 bytes apart).
pub const BPF_F_MMAPABLE: u32 = 1 << 10;
/// The map flags of [`MAP_ARRIVALS`]: [`BPF_F_MMAPABLE`], so that userspace reads a probe's slot
/// from memory instead of making a `bpf(BPF_MAP_LOOKUP_ELEM)` call per probe.
pub const ARRIVALS_MAP_FLAGS: u32 = BPF_F_MMAPABLE;
/// Map: per-CPU statistics. Written by XDP, read by userspace.
pub const MAP_STATS: &str = "FO_STATS";

/// Name of the lease gate's XDP program (ingress: frames to P).
pub const GATE_IN_PROGRAM: &str = "failover_gate_in";
/// Name of the lease gate's tc program (egress: frames from P).
pub const GATE_OUT_PROGRAM: &str = "failover_gate_out";
/// Map: the lease gate (one entry). Written by userspace (the primary's lease), read by both
/// gate programs.
pub const MAP_GATE: &str = "FO_GATE";

/// `LeaseGate::flags`: the gate is on (without it both programs pass everything).
pub const GATE_ON: u32 = 1 << 0;
/// `LeaseGate::flags`: `p4` is set.
pub const GATE_V4: u32 = 1 << 1;
/// `LeaseGate::flags`: `p6` is set.
pub const GATE_V6: u32 = 1 << 2;

/// The lease gate (key 0 of [`MAP_GATE`]): while on, and once `bpf_ktime_get_ns()` reaches
/// `expiry_ns`, frames to P (IPv4, IPv6, ARP requests and neighbour solicitations for it) are
/// dropped on ingress and frames from P (and ARP / neighbour advertisements of it) on egress,
/// except UDP to or from `udp_port` (the pair's heartbeats and joins).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseGate {
    /// CLOCK_MONOTONIC ns until which P is served (0: not at all).
    pub expiry_ns: u64,
    /// `GATE_*` bits.
    pub flags: u32,
    /// The pair's UDP port (host order), let through.
    pub udp_port: u32,
    /// P's IPv4 address, as on the wire.
    pub p4: [u8; 4],
    /// Explicit padding.
    pub _pad: u32,
    /// P's IPv6 address, as on the wire.
    pub p6: [u8; 16],
}

/// Every map the program owns, in the order they are pinned.
pub const MAP_NAMES: [&str; 5] = [MAP_CONFIG, MAP_STREAMS, MAP_PEERS, MAP_ARRIVALS, MAP_STATS];

/// Number of slots in each stream's arrival ring; a probe's slot is
/// `stream * ARRIVAL_SLOTS + seq % ARRIVAL_SLOTS`.
///
/// A power of two that divides 65536, so 16-bit ICMP sequences wrap onto the same slots.
pub const ARRIVAL_SLOTS: u32 = 4096;
/// Number of probe streams: the heartbeat to P (stream 0) and the witnesses.
pub const MAX_STREAMS: u32 = 8;
/// Maximum number of reply sources tracked.
pub const MAX_PEERS: u32 = 256;

/// `FastPathConfig::flags`: count ICMP / ICMPv6 echo replies carrying `FastPathConfig::icmp_id`.
pub const FLAG_ICMP: u32 = 1 << 0;
/// `FastPathConfig::flags`: count UDP heartbeat replies from `FastPathConfig::udp_port`.
pub const FLAG_UDP: u32 = 1 << 1;
/// `FastPathConfig::flags`: pass counted replies to the stack instead of consuming them (`XDP_DROP`).
pub const FLAG_PASS_COUNTED: u32 = 1 << 2;

/// Configuration of the fast path. Key 0 of [`MAP_CONFIG`].
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct FastPathConfig {
    /// `FLAG_*` bits. Zero means the program counts nothing and passes everything.
    pub flags: u32,
    /// UDP source port of heartbeat replies, i.e. the responder's port (host order).
    pub udp_port: u32,
}

/// One probe stream: whose replies count, and where they are stamped. Value of
/// [`MAP_STREAMS`], keyed by the 64-bit token the probes carry (in the UDP heartbeat message,
/// or right after the ICMP echo header) and the replies echo.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Stream {
    /// Which arrival ring (0..MAX_STREAMS).
    pub index: u32,
    /// The ICMP echo identifier of the stream's probes (host order; unused for UDP).
    pub icmp_id: u32,
    /// The only source whose replies count (IPv4 as IPv4-mapped IPv6).
    pub src: PeerKey,
}

/// What the fast path knows about one source address. Value of [`MAP_PEERS`].
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerRecord {
    /// Replies counted from this source.
    pub replies: u64,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) of the last counted reply.
    pub last_ns: u64,
    /// Sequence number carried by the last counted reply.
    pub last_seq: u64,
    /// `bpf_ktime_get_ns()` of the first counted reply.
    pub first_ns: u64,
}

/// Arrival stamp of one reply. Value of [`MAP_ARRIVALS`] at index
/// `stream * ARRIVAL_SLOTS + seq % ARRIVAL_SLOTS`.
///
/// The two fields are written without a lock while userspace may be reading them, so both
/// sides follow one protocol. The XDP program stores `ns = 0`, then `seq`, then `ns` = the
/// stamp (three volatile stores, in that order). A reader loads `ns`, `seq`, `ns` again (in that
/// order) and keeps the pair only when both loads of `ns` agree; a zero `ns` means "nothing
/// stamped yet", an empty slot or a write in progress. The protocol relies on the stores
/// becoming visible in program order (the BPF JIT keeps their order; x86-64 is TSO).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Arrival {
    /// Sequence number of the reply (16 bits for ICMP, 64 for UDP).
    pub seq: u64,
    /// `bpf_ktime_get_ns()` when the reply reached XDP; 0 for an empty slot (or one being
    /// written).
    pub ns: u64,
}

/// Per-CPU counters. Key 0 of [`MAP_STATS`].
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Candidate frames: those the program looked at past the headers. That is every frame
    /// that moved one of the counters below, plus other UDP messages from the heartbeat port.
    /// Unrelated traffic (not an ICMP echo reply while ICMP is counted, nor UDP from the
    /// heartbeat port while UDP is counted) returns before the counters are touched and is not
    /// counted, nor is anything while nothing is enabled.
    pub seen: u64,
    /// Replies counted (identifier or token matched).
    pub matched: u64,
    /// Echo replies with a stream's token but another identifier than the stream's.
    pub rejected_id: u64,
    /// Replies whose token is not one of a stream's.
    pub rejected_token: u64,
    /// Replies with a stream's token from another source than the stream's target.
    pub rejected_source: u64,
    /// Frames that ended inside a header we had to read.
    pub truncated: u64,
    /// Frames with impossible header fields (IPv4 IHL < 5, bad heartbeat magic or version).
    pub malformed: u64,
}

impl Stats {
    /// Adds another CPU's counters to these.
    pub fn add(&mut self, o: &Stats) {
        self.seen += o.seen;
        self.matched += o.matched;
        self.rejected_id += o.rejected_id;
        self.rejected_token += o.rejected_token;
        self.rejected_source += o.rejected_source;
        self.truncated += o.truncated;
        self.malformed += o.malformed;
    }
}

/// Key of [`MAP_PEERS`]: an IPv6 address, IPv4 as IPv4-mapped (`::ffff:a.b.c.d`).
pub type PeerKey = [u8; 16];

/// The UDP heartbeat and join message, 40 bytes, all fields big-endian on the wire.
pub mod wire {
    /// `b"FOHB"`.
    pub const MAGIC: u32 = 0x464f_4842;
    /// Current protocol version.
    pub const VERSION: u8 = 1;
    /// Size of a message on the wire.
    pub const LEN: usize = 40;

    /// Heartbeat request (first signal, monitor to primary).
    pub const KIND_HEARTBEAT: u8 = 1;
    /// Heartbeat reply (primary to monitor); the only kind the XDP program counts.
    pub const KIND_HEARTBEAT_REPLY: u8 = 2;
    /// Join probe (second signal, booted host to monitor address).
    pub const KIND_JOIN: u8 = 3;
    /// Join reply.
    pub const KIND_JOIN_REPLY: u8 = 4;
    /// The sender is stopping on purpose (a planned stop); not answered.
    pub const KIND_LEAVING: u8 = 5;
    /// The sender took P over at its epoch (sent to the old primary's node address); not
    /// answered.
    pub const KIND_TAKEN_OVER: u8 = 6;
    /// The sender, joining, leaves P to the monitor, whose data is newer (sent to M); not
    /// answered.
    pub const KIND_YIELD: u8 = 7;

    /// Offsets of the fields inside the message.
    pub const OFF_MAGIC: usize = 0;
    /// Offset of the version byte.
    pub const OFF_VERSION: usize = 4;
    /// Offset of the kind byte.
    pub const OFF_KIND: usize = 5;
    /// Offset of the role byte.
    pub const OFF_ROLE: usize = 6;
    /// Offset of the flags byte.
    pub const OFF_FLAGS: usize = 7;
    /// Offset of the 64-bit token.
    pub const OFF_TOKEN: usize = 8;
    /// Offset of the 64-bit sequence.
    pub const OFF_SEQ: usize = 16;
    /// Offset of the 64-bit epoch.
    pub const OFF_EPOCH: usize = 24;
    /// Offset of the 32-bit node id.
    pub const OFF_NODE: usize = 32;

    /// A message as it travels.
    pub type Bytes = [u8; LEN];

    /// The big-endian `u32` at `off` (one of the `OFF_*` offsets).
    #[inline(always)]
    pub fn get_u32(m: &Bytes, off: usize) -> u32 {
        u32::from_be_bytes([m[off], m[off + 1], m[off + 2], m[off + 3]])
    }

    /// The big-endian `u64` at `off` (one of the `OFF_*` offsets).
    #[inline(always)]
    pub fn get_u64(m: &Bytes, off: usize) -> u64 {
        let mut b = [0u8; 8];
        let mut i = 0;
        while i < 8 {
            b[i] = m[off + i];
            i += 1;
        }
        u64::from_be_bytes(b)
    }

    /// Writes `v` big-endian at `off`.
    #[inline(always)]
    pub fn put_u32(m: &mut Bytes, off: usize, v: u32) {
        m[off..off + 4].copy_from_slice(&v.to_be_bytes());
    }

    /// Writes `v` big-endian at `off`.
    #[inline(always)]
    pub fn put_u64(m: &mut Bytes, off: usize, v: u64) {
        m[off..off + 8].copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: all of these are repr(C), made of integers, without implicit padding.
    unsafe impl aya::Pod for FastPathConfig {}
    unsafe impl aya::Pod for Stream {}
    unsafe impl aya::Pod for PeerRecord {}
    unsafe impl aya::Pod for Arrival {}
    unsafe impl aya::Pod for Stats {}
    unsafe impl aya::Pod for LeaseGate {}
}
