//! `fence = "lease"`: the monitor's revoke request to the witness (`Action::Revoke`), off the
//! heartbeat thread. The answer, with how long the last grants may still run, goes back to
//! the machine as `Revoked`.
use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use tokio::net::UdpSocket;

use crate::{
    lease::{
        takeover_at,
        wire::{Kind, Message, Reason},
        Bound,
    },
    role::Revocation,
    sys::monotonic_ns,
};

/// One revoke exchange.
#[derive(Clone, Debug)]
pub(super) struct RevokeJob {
    /// The node address (the source; the witness knows the pair by it).
    pub(super) local: IpAddr,
    /// `witness.lease_peer`.
    pub(super) witness: SocketAddr,
    /// The lease MAC key.
    pub(super) key: [u8; 32],
    /// This node's id.
    pub(super) node: u32,
    /// This host's epoch (at least the primary's): everything up to it is revoked.
    pub(super) epoch: u64,
    /// Until when this host's own last grant may run (its grantor stopped before).
    pub(super) own_until_ns: u64,
    /// The highest epoch this host's grantor granted (0: none).
    pub(super) own_granted_epoch: u64,
    /// `boot.lease`: the pace of the exchange.
    pub(super) lease: Duration,
}

impl RevokeJob {
    /// How often the request is sent again while unanswered (a lost datagram costs this).
    fn resend(&self) -> Duration {
        (self.lease / 8).clamp(Duration::from_millis(1), Duration::from_millis(10))
    }

    /// How long the witness may take in all (answering, then letting its own detection
    /// window pass after the primary's last request).
    fn deadline(&self) -> Duration {
        (self.lease * 4).max(Duration::from_millis(100))
    }

    /// Asks until the witness agrees or refuses, or the deadline passes.
    ///
    /// A refusal counts only when the witness heard the primary after the first request left:
    /// one heard before that can be the last request of a primary that has just failed, and
    /// the witness agrees once its own window has passed. Until the deadline, then refused
    /// (the safe side).
    pub(super) async fn run(self) -> Revocation {
        let sock = match UdpSocket::bind(SocketAddr::new(self.local, 0)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "the revoke request's socket; fencing through the BMC");
                return Revocation::Unreachable;
            }
        };
        let token: u64 = rand::random();
        let started = monotonic_ns();
        let end = tokio::time::Instant::now() + self.deadline();
        let mut refused: Option<Duration> = None;
        let mut buf = [0u8; 128];
        let mut seq = 0;
        loop {
            seq += 1;
            let now = monotonic_ns();
            let ask = Message {
                kind: Kind::Revoke,
                reason: Reason::None,
                node: self.node,
                epoch: self.epoch,
                seq,
                token,
                value_ns: 0,
                stamp_ns: now,
            };
            if let Err(e) = sock.send_to(&ask.encode(&self.key), self.witness).await {
                tracing::debug!(error = %e, "revoke request not sent");
            }
            let next = (tokio::time::Instant::now() + self.resend()).min(end);
            while let Ok(r) = tokio::time::timeout_at(next, sock.recv_from(&mut buf)).await {
                let Ok((n, from)) = r else { continue };
                if from != self.witness {
                    continue;
                }
                let Ok(m) = Message::decode(&buf[..n], &self.key) else {
                    continue;
                };
                if m.token != token || m.seq > seq {
                    continue;
                }
                let ack = monotonic_ns();
                match m.kind {
                    Kind::Revoked if m.reason.no_lease(self.own_granted_epoch, self.epoch) => {
                        // Nobody granted the primary of this epoch a lease: its gate may never
                        // have been attached, so its kernel may serve P without one.
                        return Revocation::NoLease { epoch: m.epoch };
                    }
                    Kind::Revoked => {
                        let at = takeover_at(
                            Bound::default(),
                            self.own_until_ns,
                            ack,
                            Duration::from_nanos(m.value_ns),
                        );
                        return Revocation::Agreed {
                            wait: Duration::from_nanos(at.saturating_sub(monotonic_ns())),
                            epoch: m.epoch,
                        };
                    }
                    Kind::RevokeRefused => {
                        let ago = Duration::from_nanos(m.value_ns);
                        if m.value_ns < ack.saturating_sub(started) {
                            return Revocation::Refused { heard_ago: ago };
                        }
                        refused = Some(ago);
                    }
                    _ => {}
                }
            }
            if tokio::time::Instant::now() >= end {
                return match refused {
                    Some(heard_ago) => Revocation::Refused { heard_ago },
                    None => Revocation::Unreachable,
                };
            }
        }
    }
}

impl super::Daemon {
    /// `Action::Revoke`: the grantor has stopped (published with the failure decision); the
    /// exchange runs in the background, in the boot task's slot (`CancelBoot` ends it).
    pub(super) fn revoke(&mut self) {
        let (Some(l), Some(witness), Some(lease)) = (
            self.lease.as_ref(),
            self.cfg.witness.lease_peer,
            self.cfg.boot.lease,
        ) else {
            // Validation makes this unreachable; the BMC path is the safe answer anyway.
            let _ = self
                .tx
                .send(crate::role::Input::Revoked(Revocation::Unreachable));
            return;
        };
        let (own_until_ns, own_granted_epoch) = l.granting.stop();
        let job = RevokeJob {
            local: self.cfg.node.address.addr,
            witness,
            key: l.key,
            node: self.cfg.node.id,
            epoch: self.machine.epoch(),
            own_until_ns,
            own_granted_epoch,
            lease: lease.0,
        };
        tracing::info!(%witness, epoch = job.epoch, "asking the witness to revoke the primary's lease");
        let tx = self.tx.clone();
        let t = tokio::spawn(async move {
            let r = job.run().await;
            let _ = tx.send(crate::role::Input::Revoked(r));
        });
        super::Tasks::replace(&mut self.tasks.boot, Some(t));
    }
}
