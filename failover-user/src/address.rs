//! The floating addresses: claim and release with rtnetlink, a duplicate-address probe before
//! claiming (RFC 5227 ARP probe, IPv6 DAD neighbour solicitation), and gratuitous ARP /
//! unsolicited neighbour advertisements after claiming, all sent from an AF_PACKET socket.
//!
//! The kernel does not announce an added address (`arp_notify` fires on link up only), and
//! without an announcement clients keep the old holder's MAC for tens of seconds, so the
//! daemon sends the announcements itself.
use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Duration,
};

use futures_util::TryStreamExt as _;
use rtnetlink::packet_route::{
    address::{AddressAttribute, AddressFlags, AddressMessage},
    link::LinkAttribute,
};
use tokio::io::unix::AsyncFd;

use crate::{config::Cidr, probe::inet_checksum};

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const EADDRNOTAVAIL: i32 = 99;
const EEXIST: i32 = 17;

/// An address operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    /// Netlink socket could not be opened.
    #[error("netlink: open a route socket: {0}")]
    Connect(#[source] io::Error),
    /// The interface does not exist or has no MAC address.
    #[error("interface {interface}: {message}")]
    Interface {
        /// Interface name.
        interface: String,
        /// What is wrong.
        message: String,
    },
    /// A netlink request failed.
    #[error("netlink: {what} {addr} on {interface}: {source}")]
    Netlink {
        /// "add", "delete" or "list".
        what: &'static str,
        /// The address.
        addr: String,
        /// Interface name.
        interface: String,
        /// rtnetlink's error (boxed: it is large).
        source: Box<rtnetlink::Error>,
    },
    /// The packet socket failed.
    #[error("packet socket on {interface}: {what}: {source}")]
    Packet {
        /// Interface name.
        interface: String,
        /// What was being done.
        what: &'static str,
        /// OS error.
        source: io::Error,
    },
}

/// Duplicate-address probe settings.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DadSettings {
    /// Probes to send (0 disables the probe).
    pub probes: u32,
    /// Time to listen after each probe.
    pub wait: Duration,
}

/// The outcome of a claim.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The address is ours now.
    Claimed,
    /// Another host answered for the address (its MAC); nothing was changed.
    Conflict {
        /// MAC of the other claimant.
        mac: [u8; 6],
    },
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A handle on one interface's addresses.
#[derive(Clone, Debug)]
pub struct Addresses {
    handle: rtnetlink::Handle,
    interface: String,
    index: u32,
    mac: [u8; 6],
}

impl Addresses {
    /// Opens a route netlink connection (spawned on the current tokio runtime) and looks up
    /// `interface`'s index and MAC.
    pub async fn open(interface: &str) -> Result<Addresses, AddressError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(AddressError::Connect)?;
        tokio::spawn(conn);
        let bad = |message: String| AddressError::Interface {
            interface: interface.to_string(),
            message,
        };
        let link = handle
            .link()
            .get()
            .match_name(interface.to_string())
            .execute()
            .try_next()
            .await
            .map_err(|e| bad(format!("not found ({e})")))?
            .ok_or_else(|| bad("not found".into()))?;
        let mac = link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(m) if m.len() == 6 => {
                    let mut mac = [0u8; 6];
                    mac.copy_from_slice(m);
                    Some(mac)
                }
                _ => None,
            })
            .ok_or_else(|| bad("has no Ethernet MAC address".into()))?;
        Ok(Addresses {
            handle,
            interface: interface.to_string(),
            index: link.header.index,
            mac,
        })
    }

    /// The interface's MAC.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The interface's name.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    fn nl_err(
        &self,
        what: &'static str,
        addr: IpAddr,
    ) -> impl FnOnce(rtnetlink::Error) -> AddressError {
        let interface = self.interface.clone();
        move |source| AddressError::Netlink {
            what,
            addr: addr.to_string(),
            interface,
            source: Box::new(source),
        }
    }

    async fn find(&self, addr: IpAddr) -> Result<Option<AddressMessage>, AddressError> {
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(self.index)
            .set_address_filter(addr)
            .execute();
        s.try_next().await.map_err(self.nl_err("list", addr))
    }

    /// Whether `addr` is configured on the interface.
    pub async fn holds(&self, addr: IpAddr) -> Result<bool, AddressError> {
        Ok(self.find(addr).await?.is_some())
    }

    /// Adds `cidr` after a duplicate-address probe; refuses (and changes nothing) when another
    /// host answers for it. Already holding it counts as claimed. Does not announce: call
    /// [`Addresses::announce`] next.
    pub async fn claim(&self, cidr: Cidr, dad: DadSettings) -> Result<Claim, AddressError> {
        if self.holds(cidr.addr).await? {
            return Ok(Claim::Claimed);
        }
        if dad.probes > 0 {
            if let Some(mac) = self.probe_conflict(cidr.addr, dad).await? {
                return Ok(Claim::Conflict { mac });
            }
        }
        let mut req = self
            .handle
            .address()
            .add(self.index, cidr.addr, cidr.prefix);
        if cidr.addr.is_ipv6() {
            // We probed already; the kernel's own DAD would keep the address tentative (and
            // unusable) for a second.
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match req.execute().await {
            Ok(()) => Ok(Claim::Claimed),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -EEXIST => Ok(Claim::Claimed),
            Err(e) => Err(self.nl_err("add", cidr.addr)(e)),
        }
    }

    /// Removes `addr` from the interface; absent is fine. Returns whether it was there.
    pub async fn release(&self, addr: IpAddr) -> Result<bool, AddressError> {
        let Some(msg) = self.find(addr).await? else {
            return Ok(false);
        };
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(true),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -EADDRNOTAVAIL => Ok(false),
            Err(e) => Err(self.nl_err("delete", addr)(e)),
        }
    }

    fn packet_socket(&self, proto: u16) -> Result<PacketSocket, AddressError> {
        PacketSocket::open(&self.interface, self.index, proto)
    }

    /// Sends `count` gratuitous ARPs (IPv4) or unsolicited neighbour advertisements (IPv6)
    /// for `addr`, `spacing` apart.
    pub async fn announce(
        &self,
        addr: IpAddr,
        count: u32,
        spacing: Duration,
    ) -> Result<(), AddressError> {
        let (proto, frame) = match addr {
            IpAddr::V4(a) => (ETH_P_ARP, garp_frame(&self.mac, a)),
            IpAddr::V6(a) => (ETH_P_IPV6, unsolicited_na_frame(&self.mac, a)),
        };
        let sock = self.packet_socket(proto)?;
        for i in 0..count {
            if i > 0 {
                tokio::time::sleep(spacing).await;
            }
            sock.send(&frame)?;
        }
        Ok(())
    }

    /// Sends the duplicate-address probes and listens; returns the MAC of a host that answers
    /// for `addr` (or probes for it at the same time and wins the tie: lower MAC wins).
    async fn probe_conflict(
        &self,
        addr: IpAddr,
        dad: DadSettings,
    ) -> Result<Option<[u8; 6]>, AddressError> {
        let (proto, frame) = match addr {
            IpAddr::V4(a) => (ETH_P_ARP, arp_probe_frame(&self.mac, a)),
            IpAddr::V6(a) => (ETH_P_IPV6, dad_ns_frame(&self.mac, a)),
        };
        let sock = self.packet_socket(proto)?;
        let mut buf = [0u8; 1600];
        for _ in 0..dad.probes {
            sock.send(&frame)?;
            let until = tokio::time::Instant::now() + dad.wait;
            loop {
                let n = match tokio::time::timeout_at(until, sock.recv(&mut buf)).await {
                    Err(_) => break,
                    Ok(r) => r?,
                };
                if let Some(mac) = conflict_in(&buf[..n], addr, &self.mac) {
                    return Ok(Some(mac));
                }
            }
        }
        Ok(None)
    }
}

/// An AF_PACKET socket bound to one interface and ethertype.
///
/// Closing a packet socket waits for an RCU grace period (`synchronize_net()` in
/// `packet_release`), 10-15 ms here; opening one with a protocol and then binding it waits for
/// another. So it is opened with protocol 0 and bound once, and closed on a blocking thread,
/// keeping both waits off the takeover path.
struct PacketSocket {
    fd: Option<AsyncFd<OwnedFd>>,
    interface: String,
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        if let Some(fd) = self.fd.take().map(AsyncFd::into_inner) {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => drop(rt.spawn_blocking(move || drop(fd))),
                Err(_) => drop(fd),
            }
        }
    }
}

impl PacketSocket {
    fn open(interface: &str, index: u32, proto: u16) -> Result<PacketSocket, AddressError> {
        let err = |what, source| AddressError::Packet {
            interface: interface.to_string(),
            what,
            source,
        };
        // SAFETY: plain socket(2); the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(err("socket", io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto.to_be();
        sll.sll_ifindex = index as i32;
        // SAFETY: `sll` is a valid sockaddr_ll and the length matches it.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(err("bind", io::Error::last_os_error()));
        }
        // SAFETY: the OwnedFd moves into the AsyncFd, stays open for its whole lifetime and is
        // only reached through it.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| err("register", e.into()))?;
        Ok(PacketSocket {
            fd: Some(fd),
            interface: interface.to_string(),
        })
    }

    fn fd(&self) -> &AsyncFd<OwnedFd> {
        self.fd.as_ref().expect("present until drop")
    }

    fn send(&self, frame: &[u8]) -> Result<(), AddressError> {
        // SAFETY: the buffer is valid for its length; the socket is bound to the interface.
        let n = unsafe { libc::send(self.fd().as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(AddressError::Packet {
                interface: self.interface.clone(),
                what: "send",
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    async fn recv(&self, buf: &mut [u8]) -> Result<usize, AddressError> {
        loop {
            let mut guard = self
                .fd()
                .readable()
                .await
                .map_err(|source| AddressError::Packet {
                    interface: self.interface.clone(),
                    what: "poll",
                    source,
                })?;
            let r = guard.try_io(|fd| {
                // SAFETY: the buffer is valid for its length.
                let n =
                    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match r {
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(source)) => {
                    return Err(AddressError::Packet {
                        interface: self.interface.clone(),
                        what: "recv",
                        source,
                    })
                }
                Err(_would_block) => continue,
            }
        }
    }
}

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
    ipv6_icmp_frame(
        [0x33, 0x33, 0xff, o[13], o[14], o[15]],
        mac,
        Ipv6Addr::UNSPECIFIED,
        group,
        &mut icmp,
    )
}

/// Whether `frame` shows another host holding `addr` (or probing for it and winning the tie);
/// returns that host's MAC.
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
        for f in [unsolicited_na_frame(&US, ip), dad_ns_frame(&US, ip)] {
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
}
