//! The lease gate: the primary's own kernel stops serving P once its lease has lapsed, with its
//! daemon frozen or dead (both programs are attached through pinned links).
//!
//! `failover_gate_in` (XDP, ingress) drops frames to P: IPv4 and IPv6 to P, ARP requests for P
//! and neighbour solicitations for P. `failover_gate_out` (tc, egress) drops frames from P:
//! IPv4 and IPv6 from P, ARP with P as the sender and neighbour advertisements for P. UDP to or
//! from the pair's port passes both ways (heartbeats and joins). Everything else passes: the
//! gate never touches traffic that is not P's.
use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_OK, TC_ACT_SHOT},
    btf_maps::Array,
    helpers::bpf_ktime_get_ns,
    macros::{btf_map, classifier, xdp},
    programs::{TcContext, XdpContext},
};
use failover_common::{LeaseGate, GATE_ON, GATE_V4, GATE_V6};

/// The gate (key 0). Written by userspace at every renewal; read on every frame.
#[btf_map]
static FO_GATE: Array<LeaseGate, 1> = Array::new();

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
const ARP_REQUEST: u16 = 1;
const ND_SOLICIT: u8 = 135;
const ND_ADVERT: u8 = 136;

/// Which side a frame is looked at from.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Side {
    /// Ingress: P as the destination (or the target asked for).
    In,
    /// Egress: P as the source (or the target advertised).
    Out,
}

/// Reads bytes of the frame; both program types provide it.
trait Frame {
    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]>;
}

impl Frame for XdpContext {
    #[inline(always)]
    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        let (start, end) = (self.data(), self.data_end());
        if start + off + N > end {
            return None;
        }
        // SAFETY: the bounds were checked against data_end just above.
        Some(unsafe { core::ptr::read_unaligned((start + off) as *const [u8; N]) })
    }
}

impl Frame for TcContext {
    #[inline(always)]
    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        self.load::<[u8; N]>(off).ok()
    }
}

/// The gate, when it is on and the lease has lapsed.
#[inline(always)]
fn closed() -> Option<LeaseGate> {
    let g = *FO_GATE.get(0)?;
    if g.flags & GATE_ON == 0 {
        return None;
    }
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    (now >= g.expiry_ns).then_some(g)
}

#[inline(always)]
fn eq4(a: [u8; 4], b: [u8; 4]) -> bool {
    u32::from_ne_bytes(a) == u32::from_ne_bytes(b)
}

/// Two IPv6 addresses (or two peer keys) are equal.
#[inline(always)]
fn eq16(a: [u8; 16], b: [u8; 16]) -> bool {
    super::same_source(&a, &b)
}

/// Whether the frame is P's traffic the closed gate must stop.
#[inline(always)]
fn blocked<F: Frame>(f: &F, g: &LeaseGate, side: Side) -> bool {
    let Some(p) = f.bytes::<2>(12) else {
        return false;
    };
    let mut proto = u16::from_be_bytes(p);
    let mut l3 = ETH_HLEN;
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        let Some(inner) = f.bytes::<2>(ETH_HLEN + 2) else {
            return false;
        };
        proto = u16::from_be_bytes(inner);
        l3 += 4;
    }
    // The UDP port at `l4` that lets a frame through: the destination on ingress, the source
    // on egress.
    let pair_udp = |l4: usize| {
        let off = if side == Side::In { l4 + 2 } else { l4 };
        f.bytes::<2>(off)
            .is_some_and(|b| u32::from(u16::from_be_bytes(b)) == g.udp_port)
    };
    match proto {
        ETH_P_IP if g.flags & GATE_V4 != 0 => {
            let Some(h) = f.bytes::<20>(l3) else {
                return false;
            };
            let addr = if side == Side::In {
                [h[16], h[17], h[18], h[19]]
            } else {
                [h[12], h[13], h[14], h[15]]
            };
            if !eq4(addr, g.p4) {
                return false;
            }
            let l4 = l3 + ((h[0] & 0x0f) as usize) * 4;
            !(h[9] == IPPROTO_UDP && pair_udp(l4))
        }
        ETH_P_ARP if g.flags & GATE_V4 != 0 => {
            // Ethernet/IPv4 ARP: op at 6, sender IP at 14, target IP at 24.
            let Some(a) = f.bytes::<28>(l3) else {
                return false;
            };
            match side {
                Side::In => {
                    u16::from_be_bytes([a[6], a[7]]) == ARP_REQUEST
                        && eq4([a[24], a[25], a[26], a[27]], g.p4)
                }
                Side::Out => eq4([a[14], a[15], a[16], a[17]], g.p4),
            }
        }
        ETH_P_IPV6 if g.flags & GATE_V6 != 0 => {
            let Some(h) = f.bytes::<40>(l3) else {
                return false;
            };
            let mut addr = [0u8; 16];
            let from = if side == Side::In { 24 } else { 8 };
            let mut i = 0;
            while i < 16 {
                addr[i] = h[from + i];
                i += 1;
            }
            let l4 = l3 + 40;
            if eq16(addr, g.p6) {
                return !(h[6] == IPPROTO_UDP && pair_udp(l4));
            }
            // Neighbour discovery about P travels between other addresses.
            if h[6] != IPPROTO_ICMPV6 {
                return false;
            }
            let Some(nd) = f.bytes::<24>(l4) else {
                return false;
            };
            let want = if side == Side::In {
                ND_SOLICIT
            } else {
                ND_ADVERT
            };
            let mut target = [0u8; 16];
            let mut i = 0;
            while i < 16 {
                target[i] = nd[8 + i];
                i += 1;
            }
            nd[0] == want && eq16(target, g.p6)
        }
        _ => false,
    }
}

/// Ingress: drops frames to P once the lease has lapsed.
#[xdp]
pub fn failover_gate_in(ctx: XdpContext) -> u32 {
    match closed() {
        Some(g) if blocked(&ctx, &g, Side::In) => xdp_action::XDP_DROP,
        _ => xdp_action::XDP_PASS,
    }
}

/// Egress: drops frames from P once the lease has lapsed.
#[classifier]
pub fn failover_gate_out(ctx: TcContext) -> i32 {
    match closed() {
        Some(g) if blocked(&ctx, &g, Side::Out) => TC_ACT_SHOT,
        _ => TC_ACT_OK,
    }
}
