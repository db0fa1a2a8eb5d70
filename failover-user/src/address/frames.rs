//! Frame layouts: gratuitous ARP, ARP probe (RFC 5227), unsolicited NA and DAD NS (RFC 4861,
//! RFC 4862), and recognising a conflicting answer.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::signal::probe::inet_checksum;

/// Ethertype of ARP.
pub(super) const ETH_P_ARP: u16 = 0x0806;
/// Ethertype of IPv6.
pub(super) const ETH_P_IPV6: u16 = 0x86dd;

fn eth_header(out: &mut Vec<u8>, dst: [u8; 6], src: &[u8; 6], ethertype: u16) {
    out.extend_from_slice(&dst);
    out.extend_from_slice(src);
    out.extend_from_slice(&ethertype.to_be_bytes());
}

fn arp_frame(mac: &[u8; 6], sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    eth_header(&mut f, [0xff; 6], mac, ETH_P_ARP);
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]); // Ethernet, IPv4, request
    f.extend_from_slice(mac);
    f.extend_from_slice(&sender_ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target_ip.octets());
    f
}

/// A gratuitous ARP request: sender and target IP are both `ip` (RFC 5227 ARP announcement).
pub fn garp_frame(mac: &[u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    arp_frame(mac, ip, ip)
}

/// An RFC 5227 ARP probe: sender IP 0.0.0.0, target IP `ip`.
pub fn arp_probe_frame(mac: &[u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    arp_frame(mac, Ipv4Addr::UNSPECIFIED, ip)
}

/// An ordinary ARP request for `ip` from `sender` (this host's own address): another host
/// holding `ip` answers it, which is how a holder finds a second holder.
pub fn arp_request_frame(mac: &[u8; 6], sender: Ipv4Addr, ip: Ipv4Addr) -> Vec<u8> {
    arp_frame(mac, sender, ip)
}

fn ipv6_icmp_frame(
    dst_mac: [u8; 6],
    mac: &[u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    icmp: &mut [u8],
) -> Vec<u8> {
    let mut pseudo = Vec::with_capacity(40 + icmp.len());
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(icmp);
    let sum = inet_checksum(&pseudo);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut f = Vec::with_capacity(54 + icmp.len());
    eth_header(&mut f, dst_mac, mac, ETH_P_IPV6);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, 255]); // ICMPv6, hop limit 255 (RFC 4861 requires it)
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(icmp);
    f
}

/// An unsolicited neighbour advertisement for `ip` to all nodes, Override set, with our MAC as
/// the target link-layer address (RFC 4861 section 7.2.6).
pub fn unsolicited_na_frame(mac: &[u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    let mut icmp = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    icmp.extend_from_slice(&ip.octets());
    icmp.extend_from_slice(&[2, 1]);
    icmp.extend_from_slice(mac);
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    ipv6_icmp_frame([0x33, 0x33, 0, 0, 0, 1], mac, ip, all_nodes, &mut icmp)
}

/// A duplicate-address-detection neighbour solicitation for `ip`: source ::, destination the
/// solicited-node multicast group (RFC 4862 section 5.4.2).
pub fn dad_ns_frame(mac: &[u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    ns_frame(mac, None, ip)
}

/// An ordinary neighbour solicitation for `ip` from `src` (this host's own address), with
/// the source link-layer option: another host holding `ip` answers it with an NA.
pub fn ns_from_frame(mac: &[u8; 6], src: Ipv6Addr, ip: Ipv6Addr) -> Vec<u8> {
    ns_frame(mac, Some(src), ip)
}

fn ns_frame(mac: &[u8; 6], src: Option<Ipv6Addr>, ip: Ipv6Addr) -> Vec<u8> {
    let o = ip.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    );
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&o);
    if src.is_some() {
        // RFC 4861 4.3: the source link-layer address option (never from ::).
        icmp.extend_from_slice(&[1, 1]);
        icmp.extend_from_slice(mac);
    }
    ipv6_icmp_frame(
        [0x33, 0x33, 0xff, o[13], o[14], o[15]],
        mac,
        src.unwrap_or(Ipv6Addr::UNSPECIFIED),
        group,
        &mut icmp,
    )
}

/// Whether `frame` shows another host holding `addr` (or probing for it and winning the tie);
/// returns that host's MAC.
/// The MAC of another host whose frame shows it holds `addr`: an ARP packet (any op) with
/// `addr` as sender IP, or a neighbour advertisement for it. Frames from `ours` are ignored.
pub fn claim_in(frame: &[u8], addr: IpAddr, ours: &[u8; 6]) -> Option<[u8; 6]> {
    conflict_in(frame, addr, ours).filter(|_| !is_probe(frame))
}

/// A duplicate-address probe: an ARP request from 0.0.0.0, or a neighbour solicitation from
/// the unspecified address.
fn is_probe(frame: &[u8]) -> bool {
    if frame.len() < 14 {
        return false;
    }
    match u16::from_be_bytes([frame[12], frame[13]]) {
        ETH_P_ARP => frame.len() >= 42 && frame[28..32] == [0, 0, 0, 0],
        ETH_P_IPV6 => {
            frame.len() >= 78 && frame[54] == 135 && frame[22..38].iter().all(|b| *b == 0)
        }
        _ => false,
    }
}

/// The MAC of another host whose frame conflicts with `addr`: one that shows it holds it
/// ([`claim_in`]), or a simultaneous duplicate-address probe for it from a lower MAC.
pub fn conflict_in(frame: &[u8], addr: IpAddr, ours: &[u8; 6]) -> Option<[u8; 6]> {
    if frame.len() < 14 {
        return None;
    }
    let mut src = [0u8; 6];
    src.copy_from_slice(&frame[6..12]);
    if &src == ours {
        return None; // our own frame, looped back to the packet socket
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    match (addr, ethertype) {
        (IpAddr::V4(a), ETH_P_ARP) if frame.len() >= 42 => {
            let op = u16::from_be_bytes([frame[20], frame[21]]);
            let mut sha = [0u8; 6];
            sha.copy_from_slice(&frame[22..28]);
            let spa = Ipv4Addr::new(frame[28], frame[29], frame[30], frame[31]);
            let tpa = Ipv4Addr::new(frame[38], frame[39], frame[40], frame[41]);
            if &sha == ours {
                return None;
            }
            let holds = spa == a;
            // RFC 5227 2.1.1: a simultaneous probe is a conflict too; the lower MAC wins so
            // that two hosts probing at once do not both back off.
            let probes = op == 1 && spa.is_unspecified() && tpa == a && sha < *ours;
            (holds || probes).then_some(sha)
        }
        (IpAddr::V6(a), ETH_P_IPV6) if frame.len() >= 78 && frame[20] == 58 => {
            let icmp_type = frame[54];
            let target = Ipv6Addr::from(<[u8; 16]>::try_from(&frame[62..78]).ok()?);
            let from_unspecified = frame[22..38].iter().all(|b| *b == 0);
            let holds = icmp_type == 136 && target == a;
            let probes = icmp_type == 135 && from_unspecified && target == a && src < *ours;
            (holds || probes).then_some(src)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: [u8; 6] = [2, 0, 0, 0, 0, 5];
    const LOW: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const HIGH: [u8; 6] = [2, 0, 0, 0, 0, 9];

    #[test]
    fn arp_frames_have_the_rfc_5227_layout() {
        let ip = Ipv4Addr::new(10, 0, 0, 100);
        let g = garp_frame(&US, ip);
        assert_eq!(g.len(), 42);
        assert_eq!(&g[28..32], &ip.octets(), "sender IP");
        assert_eq!(&g[38..42], &ip.octets(), "target IP");
        let p = arp_probe_frame(&US, ip);
        assert_eq!(&p[28..32], &[0, 0, 0, 0], "a probe's sender IP is zero");
    }

    #[test]
    fn ipv6_frames_carry_valid_checksums() {
        let ip: Ipv6Addr = "fd00::100".parse().unwrap();
        let node: Ipv6Addr = "fd00::1".parse().unwrap();
        for f in [
            unsolicited_na_frame(&US, ip),
            dad_ns_frame(&US, ip),
            ns_from_frame(&US, node, ip),
        ] {
            let icmp = &f[54..];
            let mut pseudo = Vec::new();
            pseudo.extend_from_slice(&f[22..54]);
            pseudo.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 58]);
            pseudo.extend_from_slice(icmp);
            assert_eq!(inet_checksum(&pseudo), 0, "checksum of {:?}", f[54]);
            assert_eq!(f[21], 255, "hop limit");
        }
        let ns = dad_ns_frame(&US, ip);
        assert_eq!(&ns[0..6], &[0x33, 0x33, 0xff, 0, 1, 0]);
    }

    #[test]
    fn conflicts_are_recognised() {
        let ip = Ipv4Addr::new(10, 0, 0, 100);
        let a = IpAddr::V4(ip);
        // Someone announcing the address, or answering for it: conflict.
        assert_eq!(conflict_in(&garp_frame(&HIGH, ip), a, &US), Some(HIGH));
        // Our own frame looped back: no conflict.
        assert_eq!(conflict_in(&garp_frame(&US, ip), a, &US), None);
        // Simultaneous probes: the lower MAC wins.
        assert_eq!(conflict_in(&arp_probe_frame(&LOW, ip), a, &US), Some(LOW));
        assert_eq!(conflict_in(&arp_probe_frame(&HIGH, ip), a, &US), None);
        // Another address: no conflict.
        let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 101));
        assert_eq!(conflict_in(&garp_frame(&HIGH, ip), other, &US), None);

        let ip6: Ipv6Addr = "fd00::100".parse().unwrap();
        let a6 = IpAddr::V6(ip6);
        assert_eq!(
            conflict_in(&unsolicited_na_frame(&HIGH, ip6), a6, &US),
            Some(HIGH)
        );
        assert_eq!(conflict_in(&dad_ns_frame(&LOW, ip6), a6, &US), Some(LOW));
        assert_eq!(conflict_in(&dad_ns_frame(&HIGH, ip6), a6, &US), None);
        assert_eq!(conflict_in(&[0u8; 10], a6, &US), None, "short frame");
    }

    #[test]
    fn a_claim_is_an_announcement_not_a_probe() {
        let ip = Ipv4Addr::new(10, 0, 0, 100);
        let a = IpAddr::V4(ip);
        assert_eq!(claim_in(&garp_frame(&HIGH, ip), a, &US), Some(HIGH));
        assert_eq!(claim_in(&garp_frame(&LOW, ip), a, &US), Some(LOW));
        assert_eq!(claim_in(&garp_frame(&US, ip), a, &US), None);
        // A probe is answered by the kernel, not contested.
        assert_eq!(claim_in(&arp_probe_frame(&LOW, ip), a, &US), None);
        // Nor is a holder's check, a request for the address from another address.
        let node = Ipv4Addr::new(10, 0, 0, 1);
        assert_eq!(claim_in(&arp_request_frame(&LOW, node, ip), a, &US), None);
        let ip6: Ipv6Addr = "fd00::100".parse().unwrap();
        let a6 = IpAddr::V6(ip6);
        assert_eq!(
            claim_in(&unsolicited_na_frame(&LOW, ip6), a6, &US),
            Some(LOW)
        );
        assert_eq!(claim_in(&dad_ns_frame(&LOW, ip6), a6, &US), None);
        assert_eq!(claim_in(&[0u8; 10], a6, &US), None, "short frame");
    }
}
