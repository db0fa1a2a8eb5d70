//! The floating addresses: claim and release with rtnetlink, a duplicate-address probe before
//! claiming (RFC 5227 ARP probe, IPv6 DAD neighbour solicitation), and gratuitous ARP /
//! unsolicited neighbour advertisements after claiming, all sent from an AF_PACKET socket.
//!
//! The kernel does not announce an added address (`arp_notify` fires on link up only), and
//! without an announcement clients keep the old holder's MAC for tens of seconds, so the
//! daemon sends the announcements itself.
use std::{io, net::IpAddr, time::Duration};

use futures_util::TryStreamExt as _;
use rtnetlink::packet_route::{
    address::{AddressAttribute, AddressFlags, AddressMessage},
    link::{LinkAttribute, LinkFlags},
    route::{RouteAddress, RouteAttribute},
    AddressFamily,
};

use crate::config::Cidr;

mod frames;
mod packet;

pub use frames::{
    arp_probe_frame, arp_request_frame, claim_in, conflict_in, dad_ns_frame, garp_frame,
    ns_from_frame, unsolicited_na_frame,
};
use frames::{ETH_P_ARP, ETH_P_IPV6};
use packet::PacketSocket;

const EADDRNOTAVAIL: i32 = 99;

/// Up and with carrier: `IFF_UP` and `IFF_LOWER_UP`.
fn carrier(f: LinkFlags) -> bool {
    f.contains(LinkFlags::Up) && f.contains(LinkFlags::LowerUp)
}
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
    /// Another host answered for an address (its MAC); nothing was changed.
    Conflict {
        /// The address answered for.
        addr: IpAddr,
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
pub struct AddressHandle {
    handle: rtnetlink::Handle,
    interface: String,
    index: u32,
    mac: [u8; 6],
}

impl AddressHandle {
    /// Opens a route netlink connection (spawned on the current tokio runtime) and looks up
    /// `interface`'s index and MAC.
    pub async fn open(interface: &str) -> Result<AddressHandle, AddressError> {
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
        Ok(AddressHandle {
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

    /// Watches the segment for other hosts claiming `addrs` (ARP packets with one as sender
    /// IP, neighbour advertisements for one): each claim is sent on the returned channel with
    /// the other host's MAC. Runs until the receiver is dropped.
    pub fn watch_claims(
        &self,
        addrs: Vec<IpAddr>,
    ) -> Result<tokio::sync::mpsc::UnboundedReceiver<(IpAddr, [u8; 6])>, AddressError> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut sockets = Vec::new();
        if addrs.iter().any(IpAddr::is_ipv4) {
            sockets.push(self.packet_socket(ETH_P_ARP)?);
        }
        if addrs.iter().any(IpAddr::is_ipv6) {
            sockets.push(
                self.packet_socket(ETH_P_IPV6)?
                    .only_neighbour_advertisements()?,
            );
        }
        let mac = self.mac;
        for sock in sockets {
            let (tx, addrs) = (tx.clone(), addrs.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 1514];
                loop {
                    let n = match sock.recv(&mut buf).await {
                        Ok(n) => n,
                        Err(e) => {
                            tracing::error!("address watch stopped: {e}");
                            return;
                        }
                    };
                    for a in &addrs {
                        if let Some(other) = claim_in(&buf[..n], *a, &mac) {
                            if tx.send((*a, other)).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
        Ok(rx)
    }

    /// Watches the interface's carrier: every change (up with carrier, or not) is sent on the
    /// returned channel, from netlink link notifications (no polling).
    pub fn watch_carrier(
        &self,
    ) -> Result<tokio::sync::mpsc::UnboundedReceiver<bool>, AddressError> {
        use futures_util::StreamExt as _;
        use rtnetlink::packet_core::NetlinkPayload;
        use rtnetlink::packet_route::RouteNetlinkMessage;
        let (mut conn, _handle, mut messages) =
            rtnetlink::new_connection().map_err(AddressError::Connect)?;
        use rtnetlink::sys::AsyncSocket as _;
        conn.socket_mut()
            .socket_mut()
            .bind(&rtnetlink::sys::SocketAddr::new(
                0,
                rtnetlink::constants::RTMGRP_LINK,
            ))
            .map_err(AddressError::Connect)?;
        tokio::spawn(conn);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let index = self.index;
        tokio::spawn(async move {
            let mut last = None;
            while let Some((m, _)) = messages.next().await {
                let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) = m.payload
                else {
                    continue;
                };
                if link.header.index != index {
                    continue;
                }
                let f = link.header.flags;
                let up = carrier(f);
                if last != Some(up) {
                    last = Some(up);
                    if tx.send(up).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }

    /// Whether the interface is administratively up and has carrier (`IFF_UP` and
    /// `IFF_LOWER_UP`): the first half of the self-check before a fence.
    pub async fn has_carrier(&self) -> Result<bool, AddressError> {
        let bad = |message: String| AddressError::Interface {
            interface: self.interface.clone(),
            message,
        };
        let link = self
            .handle
            .link()
            .get()
            .match_index(self.index)
            .execute()
            .try_next()
            .await
            .map_err(|e| bad(format!("read its state: {e}")))?
            .ok_or_else(|| bad("is gone".into()))?;
        let f = link.header.flags;
        Ok(carrier(f))
    }

    /// Deletes this interface's neighbour entries that are unresolved (`INCOMPLETE`, `FAILED`)
    /// and returns how many. Called when the carrier comes back: entries created while the
    /// link was down wait for the kernel's next solicitation (`retrans_time`, 1 s by default)
    /// before the peer's MAC is asked for again, and until then every probe to it is dropped;
    /// deleted, the next probe asks at once.
    pub async fn flush_unresolved_neighbours(&self) -> Result<usize, AddressError> {
        use rtnetlink::packet_route::neighbour::NeighbourState;
        let bad = |e: rtnetlink::Error| AddressError::Interface {
            interface: self.interface.clone(),
            message: format!("neighbour table: {e}"),
        };
        let mut stale = Vec::new();
        let mut entries = self.handle.neighbours().get().execute();
        while let Some(n) = entries.try_next().await.map_err(bad)? {
            if n.header.ifindex == self.index
                && matches!(
                    n.header.state,
                    NeighbourState::Incomplete | NeighbourState::Failed
                )
            {
                stale.push(n);
            }
        }
        let count = stale.len();
        for n in stale {
            // Gone already (resolved and replaced meanwhile) is fine.
            let _ = self.handle.neighbours().del(n).execute().await;
        }
        Ok(count)
    }

    /// The gateway of the default route through this interface for `family`'s address
    /// family, if there is one (the witness when none is configured).
    pub async fn default_gateway(&self, family: IpAddr) -> Result<Option<IpAddr>, AddressError> {
        let msg = match family {
            IpAddr::V4(_) => rtnetlink::RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            IpAddr::V6(_) => rtnetlink::RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        };
        let mut routes = self.handle.route().get(msg).execute();
        while let Some(r) = routes
            .try_next()
            .await
            .map_err(|e| self.nl_err("list routes", family)(e))?
        {
            if r.header.destination_prefix_length != 0
                || !matches!(
                    r.header.address_family,
                    AddressFamily::Inet | AddressFamily::Inet6
                )
            {
                continue;
            }
            let via_us = r
                .attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Oif(i) if *i == self.index));
            let gw = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => Some(IpAddr::V4(*g)),
                RouteAttribute::Gateway(RouteAddress::Inet6(g)) => Some(IpAddr::V6(*g)),
                _ => None,
            });
            if let (true, Some(gw)) = (via_us, gw) {
                return Ok(Some(gw));
            }
        }
        Ok(None)
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

    /// Claims `cidrs` as one: probes (RFC 5227 / RFC 4862 DAD) each one not held yet, all at
    /// once, and adds them only if no other host answers for any of them. An add that fails
    /// removes what this call added, so the claim is all or nothing.
    pub async fn claim_all(&self, cidrs: &[Cidr], dad: DadSettings) -> Result<Claim, AddressError> {
        let mut missing = Vec::new();
        for c in cidrs {
            if !self.holds(c.addr).await? {
                missing.push(*c);
            }
        }
        if dad.probes > 0 {
            let probes = missing.iter().map(|c| self.probe_conflict(c.addr, dad));
            for (c, found) in missing
                .iter()
                .zip(futures_util::future::join_all(probes).await)
            {
                if let Some(mac) = found? {
                    return Ok(Claim::Conflict { addr: c.addr, mac });
                }
            }
        }
        let mut added = Vec::new();
        for c in &missing {
            if let Err(e) = self.add(*c).await {
                for a in added {
                    let _ = self.release(a).await;
                }
                return Err(e);
            }
            added.push(c.addr);
        }
        Ok(Claim::Claimed)
    }

    /// Adds `cidr` to the interface (present already is fine).
    async fn add(&self, cidr: Cidr) -> Result<(), AddressError> {
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
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -EEXIST => Ok(()),
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

    /// Asks the segment who holds `addr`, from this host's own address `from` (an ARP request
    /// or a neighbour solicitation): a second holder answers, and [`AddressHandle::watch_claims`]
    /// sees its answer. Families that differ are skipped.
    pub fn check(&self, addr: IpAddr, from: IpAddr) -> Result<(), AddressError> {
        let (proto, frame) = match (addr, from) {
            (IpAddr::V4(a), IpAddr::V4(f)) => (ETH_P_ARP, arp_request_frame(&self.mac, f, a)),
            (IpAddr::V6(a), IpAddr::V6(f)) => (ETH_P_IPV6, ns_from_frame(&self.mac, f, a)),
            _ => return Ok(()),
        };
        self.packet_socket(proto)?.send(&frame)?;
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
        // The probes go out a third of `wait` apart, listening all along, and the listening
        // ends `wait` after the last: every probe is listened to for at least `wait`, in
        // (probes - 1) x wait / 3 + wait rather than probes x wait.
        let spacing = dad.wait / 3;
        for i in 0..dad.probes {
            sock.send(&frame)?;
            let last = i + 1 == dad.probes;
            let until = tokio::time::Instant::now() + if last { dad.wait } else { spacing };
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
