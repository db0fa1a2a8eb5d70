//! Frame builders for the XDP frame tests: Ethernet (optionally 802.1Q), IPv4 (optionally with
//! options or as a fragment), IPv6, ICMP, ICMPv6, UDP and the heartbeat message.
use failover_common::wire;

/// Source MAC of built frames.
pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// Destination MAC of built frames.
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Source IPv4 address of built frames (the "peer").
pub const SRC4: [u8; 4] = [10, 0, 0, 2];
/// Source IPv6 address of built frames.
pub const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// Layer 3 header choices.
#[derive(Clone, Debug)]
pub enum L3 {
    /// IPv4 with `options` bytes of options (a multiple of 4) and a fragment field.
    V4 {
        /// IPv4 options bytes.
        options: Vec<u8>,
        /// Flags and fragment offset (host order, e.g. 0x2000 for MF).
        frag: u16,
    },
    /// IPv6 without extension headers.
    V6,
}

impl L3 {
    /// Plain IPv4.
    pub fn v4() -> L3 {
        L3::V4 {
            options: Vec::new(),
            frag: 0,
        }
    }
}

/// Ethernet header with an optional 802.1Q tag.
pub fn eth(ethertype: u16, vlan: Option<u16>) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    if let Some(id) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// A full frame: Ethernet (+VLAN), the L3 header for `proto`, and `l4` as payload.
pub fn frame(l3: &L3, vlan: Option<u16>, proto: u8, l4: &[u8]) -> Vec<u8> {
    match l3 {
        L3::V4 { options, frag } => {
            assert_eq!(options.len() % 4, 0, "IPv4 options pad to 4 bytes");
            let mut f = eth(0x0800, vlan);
            let ihl = 5 + options.len() / 4;
            let total = (ihl * 4 + l4.len()) as u16;
            let mut h = vec![(4 << 4) | ihl as u8, 0];
            h.extend_from_slice(&total.to_be_bytes());
            h.extend_from_slice(&[0, 1]);
            h.extend_from_slice(&frag.to_be_bytes());
            h.extend_from_slice(&[64, proto, 0, 0]);
            h.extend_from_slice(&SRC4);
            h.extend_from_slice(&[10, 0, 0, 1]);
            h.extend_from_slice(options);
            f.extend_from_slice(&h);
            f.extend_from_slice(l4);
            f
        }
        L3::V6 => {
            let mut f = eth(0x86dd, vlan);
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
    }
}

/// An ICMP or ICMPv6 echo message carrying `token` right after the header, as the prober's
/// do (checksum left zero: XDP does not verify it).
pub fn echo(ty: u8, id: u16, seq: u16, token: u64) -> Vec<u8> {
    let mut p = vec![ty, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&token.to_be_bytes());
    p.extend_from_slice(&[0xab; 8]);
    p
}

/// `frame` (plain IPv4, no VLAN tag) as if sent from 10.0.0.9 instead of [`SRC4`].
pub fn from_other_source(mut frame: Vec<u8>) -> Vec<u8> {
    frame[26..30].copy_from_slice(&[10, 0, 0, 9]);
    frame
}

/// A UDP datagram from `sport` carrying `payload`.
pub fn udp(sport: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// A heartbeat message of `kind` with `token` and `seq`, laid out as `failover_common::wire`.
pub fn heartbeat(kind: u8, token: u64, seq: u64) -> Vec<u8> {
    let mut m = [0u8; wire::LEN];
    wire::put_u32(&mut m, wire::OFF_MAGIC, wire::MAGIC);
    m[wire::OFF_VERSION] = wire::VERSION;
    m[wire::OFF_KIND] = kind;
    wire::put_u64(&mut m, wire::OFF_TOKEN, token);
    wire::put_u64(&mut m, wire::OFF_SEQ, seq);
    m.to_vec()
}
