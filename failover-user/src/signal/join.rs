//! The second signal: join probes to M (and P) and their answers, and the monitor's periodic
//! join probe to P that learns the primary's epoch.
use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::{net::UdpSocket, time::Instant};

use super::wire::{Kind, Message};
use crate::role::{Answer, Role};

/// The monitor's periodic join probe to P: learns the primary's epoch whatever the heartbeat
/// kind (XDP consumes the heartbeat replies that carry it too).
#[derive(Debug)]
pub struct EpochProbe {
    sock: std::net::UdpSocket,
    to: SocketAddr,
    token: u64,
    node: u32,
    next: Instant,
    /// P answered at least once.
    answered: bool,
    /// A probe is out and unanswered: only then is the socket read (not on every tick).
    awaiting: bool,
}

const EPOCH_PROBE_EVERY: Duration = Duration::from_secs(1);
/// Until P first answers: at a cold start the monitor starts probing before P exists, and a
/// takeover in the first second must still go above the primary's epoch.
const EPOCH_PROBE_UNTIL_ANSWERED: Duration = Duration::from_millis(20);

impl EpochProbe {
    /// A probe from `local` on `interface` to `to` (P and the heartbeat port), sent by node
    /// `node`; the first probe goes out at the first [`EpochProbe::poll`].
    pub fn open(
        interface: &str,
        local: IpAddr,
        to: SocketAddr,
        node: u32,
    ) -> std::io::Result<EpochProbe> {
        Ok(EpochProbe {
            sock: join_socket(interface, local)?,
            to,
            token: rand::random(),
            node,
            next: Instant::now(),
            answered: false,
            awaiting: false,
        })
    }

    /// Sends when due (never blocks: the socket is non-blocking); returns the highest epoch
    /// answered since the last call.
    pub fn poll(&mut self, now: Instant) -> Option<u64> {
        if now >= self.next {
            self.next = now
                + if self.answered {
                    EPOCH_PROBE_EVERY
                } else {
                    EPOCH_PROBE_UNTIL_ANSWERED
                };
            let _ = self
                .sock
                .send_to(&join_message(self.token, 0, self.node, 0), self.to);
            self.awaiting = true;
        }
        if !self.awaiting {
            return None;
        }
        let mut best = None;
        let mut buf = [0u8; 256];
        while let Ok((n, from)) = self.sock.recv_from(&mut buf) {
            if from.ip() != self.to.ip() {
                continue;
            }
            if let Ok(r) = Message::decode(&buf[..n]) {
                if r.kind == Kind::JoinReply && r.token == self.token {
                    best = best.max(Some(r.epoch));
                    self.answered = true;
                    self.awaiting = false;
                }
            }
        }
        best
    }
}

/// A join request; its epoch field carries the sender's data mark
/// (`sync::Store::data_mark`), which the answer compares with the responder's
/// (`FLAG_NEWER_DATA` / `FLAG_OLDER_DATA`).
fn join_message(token: u64, seq: u64, node: u32, data: u64) -> [u8; failover_common::wire::LEN] {
    Message {
        kind: Kind::Join,
        role: Role::Joining.code(),
        flags: 0,
        token,
        seq,
        epoch: data,
        node,
    }
    .encode()
}

/// A UDP socket for join probes, bound to the node address on the interface.
fn join_socket(interface: &str, local: IpAddr) -> std::io::Result<std::net::UdpSocket> {
    let s = Socket::new(
        Domain::for_address(SocketAddr::new(local, 0)),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    s.set_nonblocking(true)?;
    s.bind_device(Some(interface.as_bytes()))?;
    s.bind(&SocketAddr::new(local, 0).into())?;
    Ok(s.into())
}

/// One join period: the second signal to M (and to P), resent a few times within the window.
#[derive(Clone, Debug)]
pub struct JoinJob {
    /// Interface the probes leave through.
    pub interface: String,
    /// This host's node address (the source).
    pub local: IpAddr,
    /// UDP port of the responders.
    pub port: u16,
    /// M.
    pub monitor: IpAddr,
    /// P.
    pub primary: IpAddr,
    /// The peer's node address: asked in the same period, so that a peer in standby (which
    /// holds neither M nor P) is heard.
    pub peer: IpAddr,
    /// This node's id (answers from it are ignored).
    pub node: u32,
    /// This host's data mark (0 without `[sync]`).
    pub data: u64,
    /// The second time period.
    pub window: Duration,
}

impl JoinJob {
    /// Returns who answered at M, at P and at the peer's node address. A socket error counts
    /// as silence: the next step, claiming M, probes for duplicates before taking anything.
    /// Asking the peer costs no time: the period lasts its window whenever M or P is silent.
    pub async fn run(self) -> JoinAnswers {
        let targets = [self.monitor, self.primary, self.peer];
        match ask(
            &self.interface,
            self.local,
            &targets,
            self.port,
            (self.node, self.data),
            self.window,
        )
        .await
        {
            Ok(a) => JoinAnswers {
                monitor: a[0],
                primary: a[1],
                peer: a[2],
            },
            Err(e) => {
                tracing::warn!(interface = %self.interface, error = %e,
                    "join probe could not be sent; treating as silence");
                tokio::time::sleep(self.window).await;
                JoinAnswers::default()
            }
        }
    }
}

/// Who answered one join period.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct JoinAnswers {
    /// At M.
    pub monitor: Option<Answer>,
    /// At P.
    pub primary: Option<Answer>,
    /// At the peer's node address.
    pub peer: Option<Answer>,
}

/// Asks the peer at its node address what it is and holds (before deciding an address
/// contest): `None` when it does not answer within `window` or cannot be asked.
pub async fn ask_peer(
    interface: &str,
    local: IpAddr,
    peer: SocketAddr,
    (node, data): (u32, u64),
    window: Duration,
) -> Option<Answer> {
    match ask(
        interface,
        local,
        &[peer.ip()],
        peer.port(),
        (node, data),
        window,
    )
    .await
    {
        Ok(a) => a[0],
        Err(e) => {
            tracing::warn!(%peer, error = %e, "could not ask the peer");
            None
        }
    }
}

/// Join requests from `local` to each of `targets` (at `port`), resent five times within
/// `window`; the first answer of each (from another node), in the order of `targets`.
/// `node` and `data` are this host's id and data mark.
async fn ask(
    interface: &str,
    local: IpAddr,
    targets: &[IpAddr],
    port: u16,
    (node, data): (u32, u64),
    window: Duration,
) -> std::io::Result<Vec<Option<Answer>>> {
    let sock = UdpSocket::from_std(join_socket(interface, local)?)?;
    let token: u64 = rand::random();
    let deadline = Instant::now() + window;
    let resend = (window / 5).max(Duration::from_millis(1));
    let mut answers: Vec<Option<Answer>> = vec![None; targets.len()];
    let mut seq = 0u64;
    let mut next_send = Instant::now();
    let mut buf = [0u8; 256];
    while Instant::now() < deadline && answers.iter().any(Option::is_none) {
        if Instant::now() >= next_send {
            seq += 1;
            let msg = join_message(token, seq, node, data);
            for (target, got) in targets.iter().zip(&answers) {
                if got.is_none() {
                    if let Err(e) = sock.send_to(&msg, SocketAddr::new(*target, port)).await {
                        tracing::debug!(%target, error = %e, "join probe send failed");
                    }
                }
            }
            next_send += resend;
        }
        let until = next_send.min(deadline);
        let Ok(r) = tokio::time::timeout_at(until, sock.recv_from(&mut buf)).await else {
            continue;
        };
        let (n, from) = r?;
        let Ok(reply) = Message::decode(&buf[..n]) else {
            continue;
        };
        if reply.kind != Kind::JoinReply || reply.token != token || reply.node == node {
            continue;
        }
        if let Some(i) = targets.iter().position(|t| *t == from.ip()) {
            answers[i].get_or_insert(Answer {
                role: reply.role,
                epoch: reply.epoch,
                node: reply.node,
                flags: reply.flags,
            });
        }
    }
    Ok(answers)
}

/// Sends `msg`, a notice (`Kind::Leaving`: a planned stop; `Kind::TakenOver`), from `local`
/// to `to`, `times` times `spacing` apart, so that one lost datagram does not turn a handover
/// into a fence. Errors are returned after the last try.
pub async fn send_notice(
    interface: &str,
    local: IpAddr,
    to: SocketAddr,
    msg: Message,
    times: u32,
    spacing: Duration,
) -> std::io::Result<()> {
    let sock = join_socket(interface, local)?;
    let msg = msg.encode();
    let mut last = Ok(());
    for i in 0..times {
        if i > 0 {
            tokio::time::sleep(spacing).await;
        }
        last = sock.send_to(&msg, to).map(drop);
    }
    last
}

/// A notice from this host: `kind` with its role, epoch and node id.
pub fn notice(kind: Kind, role: Role, epoch: u64, node: u32) -> Message {
    Message {
        kind,
        role: role.code(),
        flags: 0,
        token: rand::random(),
        seq: 0,
        epoch,
        node,
    }
}
