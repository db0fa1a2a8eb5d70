//! Talking to the peer directly: the `leaving` notice of a planned stop, the `taken over`
//! notice a new primary sends the old one, asking the peer what it holds (an address contest),
//! and watching the segment for another host claiming an address this host holds.
use std::{
    net::{IpAddr, SocketAddr},
    sync::atomic::Ordering,
    time::Duration,
};

use super::Daemon;
use crate::{
    role::{Addr, Input, Role},
    signal::{
        join::{ask_peer, notice, send_notice},
        wire::Kind,
    },
};

/// How long the peer has to answer `AskPeer`: a few round trips on one segment.
const ASK_WINDOW: Duration = Duration::from_millis(50);

/// How long a power action waits for the peer to say whether it is in standby: on one
/// segment an answer takes well under a millisecond, and a peer that does not answer (dead,
/// frozen, cut off) costs a fence this much.
const STANDBY_ASK_WINDOW: Duration = Duration::from_millis(20);
/// The `taken over` notice is repeated over the announcement burst's span: an old primary that
/// misses the first (a one-way fault clearing) still hears one of the later ones.
const TAKEN_OVER_TIMES: u32 = 10;
const TAKEN_OVER_SPACING: Duration = Duration::from_millis(20);

/// Before a question to the peer's node address: a neighbour entry left unresolved (by joins
/// asked while the two could not reach each other) would hold the question back until the
/// kernel's next solicitation (a second by default), longer than the question waits; deleted,
/// the question asks for the peer's MAC at once.
async fn forget_unresolved(addrs: &crate::address::AddressHandle) {
    if let Err(e) = addrs.flush_unresolved_neighbours().await {
        tracing::debug!(error = %crate::error_chain(&e), "neighbour flush before asking the peer");
    }
}

impl Daemon {
    fn peer_node(&self) -> SocketAddr {
        SocketAddr::new(self.cfg.node.peer, self.cfg.heartbeat.port)
    }

    /// Tells the peer this host is stopping: a primary (which has released P) tells the
    /// monitor at M, a monitor tells the primary at P; a host going into standby tells the
    /// peer at its node address, whatever the peer is.
    pub(super) async fn send_leaving(&self, role: Role) {
        if self.held.addrs().contains(&Addr::Primary) {
            // The release failed: a monitor told to take P would find it still answering.
            // Better the usual detection than a handover onto a held address.
            tracing::warn!("P is still on the interface: not telling the monitor to take it over");
            return;
        }
        let to: IpAddr = match role {
            Role::Primary => self.cfg.addresses.monitor.addr,
            Role::Standby => self.cfg.node.peer,
            _ => self.cfg.addresses.primary.first().addr,
        };
        let to = SocketAddr::new(to, self.cfg.heartbeat.port);
        let msg = notice(Kind::Leaving, role, self.machine.epoch(), self.cfg.node.id);
        if let Err(e) = send_notice(
            &self.cfg.node.interface,
            self.cfg.node.address.addr,
            to,
            msg,
            3,
            Duration::from_millis(1),
        )
        .await
        {
            tracing::warn!(%to, error = %e, "could not tell the peer this host is stopping");
        }
    }

    /// The question a power action asks first: is the peer in standby, holding nothing? Its
    /// epoch if so. The peer's node address is asked for [`STANDBY_ASK_WINDOW`] (resent five
    /// times); no answer counts as no.
    pub(super) fn standby_question(&self) -> impl std::future::Future<Output = Option<u64>> {
        let (interface, local, to) = (
            self.cfg.node.interface.clone(),
            self.cfg.node.address.addr,
            self.peer_node(),
        );
        let me = (
            self.cfg.node.id,
            self.identity
                .data
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        let addrs = self.addrs.clone();
        async move {
            forget_unresolved(&addrs).await;
            let a = ask_peer(&interface, local, to, me, STANDBY_ASK_WINDOW).await?;
            (a.role == Role::Standby.code() && !a.holds(Addr::Primary) && !a.holds(Addr::Monitor))
                .then_some(a.epoch)
        }
    }

    /// Tells the old primary, at its node address, that this host took P over at its epoch:
    /// if it still runs (a BMC that reported Off wrongly), it steps down.
    pub(super) fn send_taken_over(&self) {
        let msg = notice(
            Kind::TakenOver,
            Role::Primary,
            self.machine.epoch(),
            self.cfg.node.id,
        );
        let (interface, local, to) = (
            self.cfg.node.interface.clone(),
            self.cfg.node.address.addr,
            self.peer_node(),
        );
        tokio::spawn(async move {
            if let Err(e) = send_notice(
                &interface,
                local,
                to,
                msg,
                TAKEN_OVER_TIMES,
                TAKEN_OVER_SPACING,
            )
            .await
            {
                tracing::debug!(%to, error = %e, "taken-over notice not sent");
            }
        });
    }

    /// Tells the monitor, at M, that this joining host leaves P to it (its data is newer);
    /// the notice carries this host's data mark, which the monitor checks against its own.
    pub(super) fn send_yield(&self) {
        let msg = notice(
            Kind::Yield,
            Role::Joining,
            self.identity.data.load(Ordering::Relaxed),
            self.cfg.node.id,
        );
        let (interface, local) = (self.cfg.node.interface.clone(), self.cfg.node.address.addr);
        let to = SocketAddr::new(self.cfg.addresses.monitor.addr, self.cfg.heartbeat.port);
        tokio::spawn(async move {
            if let Err(e) =
                send_notice(&interface, local, to, msg, 3, Duration::from_millis(1)).await
            {
                tracing::warn!(%to, error = %e, "could not leave P to the monitor");
            }
        });
    }

    /// Asks the peer what it is and holds; the answer comes back as `PeerSeen` / `PeerSilent`.
    pub(super) fn ask_peer(&self) {
        let (interface, local, to, me) = (
            self.cfg.node.interface.clone(),
            self.cfg.node.address.addr,
            self.peer_node(),
            (self.cfg.node.id, self.identity.data.load(Ordering::Relaxed)),
        );
        let tx = self.tx.clone();
        let addrs = self.addrs.clone();
        tokio::spawn(async move {
            forget_unresolved(&addrs).await;
            let input = match ask_peer(&interface, local, to, me, ASK_WINDOW).await {
                Some(a) => Input::PeerSeen(a),
                None => Input::PeerSilent,
            };
            let _ = tx.send(input);
        });
    }

    /// Another host's frame claims `ip` (from `mac`): a contest, if this host holds it.
    pub(super) fn claim_seen(&self, ip: IpAddr, mac: [u8; 6]) -> Option<Input> {
        let addr = [Addr::Primary, Addr::Monitor]
            .into_iter()
            .find(|a| self.cidrs(*a).iter().any(|c| c.addr == ip))?;
        if !self.held.addrs().contains(&addr) {
            return None;
        }
        tracing::warn!(address = %ip, other_mac = %crate::address::mac_string(&mac),
            "another host claims an address this host holds");
        Some(Input::Contested {
            addr,
            lower_mac: self.addrs.mac() < mac,
        })
    }
}
