//! The UDP heartbeat responder: answers heartbeat (and, in the daemon, join) requests.
use std::{
    io,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::{
        atomic::{AtomicU64, AtomicU8, Ordering},
        Arc,
    },
};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::signal::wire::{Kind, Message};

/// Errors of the responder.
#[derive(Debug, thiserror::Error)]
pub enum ResponderError {
    /// Could not bind.
    #[error("bind heartbeat responder to {addr}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// OS error.
        source: io::Error,
    },
    /// The socket failed while serving.
    #[error("heartbeat responder on {addr}")]
    Io {
        /// Address.
        addr: SocketAddr,
        /// OS error.
        source: io::Error,
    },
}

/// What the responder says about its host; shared with the daemon, which updates it.
#[derive(Debug, Default)]
pub struct Identity {
    /// Role code carried in replies.
    pub role: AtomicU8,
    /// Epoch carried in replies.
    pub epoch: AtomicU64,
    /// Node id carried in replies.
    pub node: u32,
}

/// Counters of a responder.
#[derive(Debug, Default)]
pub struct ResponderCounters {
    /// Requests answered.
    pub answered: AtomicU64,
    /// Datagrams that were not requests.
    pub ignored: AtomicU64,
    /// CLOCK_MONOTONIC ns of the last request answered (0: none yet).
    pub last_request_ns: AtomicU64,
}

/// A bound responder.
#[derive(Debug)]
pub struct Responder {
    /// Bound and non-blocking; registered with a runtime only when it serves, so that it can
    /// be bound on one thread and served on another.
    sock: std::net::UdpSocket,
    addr: SocketAddr,
    identity: Arc<Identity>,
    kinds: &'static [Kind],
    /// Counters, readable while it runs.
    pub counters: Arc<ResponderCounters>,
}

impl Responder {
    /// Binds to `bind` (the unspecified IPv6 address listens on IPv4 too) and `port`; answers
    /// the request kinds in `kinds`.
    pub fn bind(
        bind: IpAddr,
        port: u16,
        identity: Arc<Identity>,
        kinds: &'static [Kind],
    ) -> Result<Responder, ResponderError> {
        let addr = SocketAddr::new(bind, port);
        let err = |source| ResponderError::Bind { addr, source };
        let domain = if bind.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
        if bind == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
            s.set_only_v6(false).map_err(err)?;
        }
        // A takeover binds the service address right after adding it.
        s.set_freebind(true).map_err(err)?;
        s.set_nonblocking(true).map_err(err)?;
        s.bind(&addr.into()).map_err(err)?;
        let sock: std::net::UdpSocket = s.into();
        let addr = sock.local_addr().map_err(err)?;
        Ok(Responder {
            sock,
            addr,
            identity,
            kinds,
            counters: Arc::default(),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until the socket fails (on the runtime of the calling task).
    pub async fn serve(self) -> Result<(), ResponderError> {
        let sock = UdpSocket::from_std(self.sock).map_err(|source| ResponderError::Io {
            addr: self.addr,
            source,
        })?;
        let mut buf = [0u8; 512];
        loop {
            let (n, from) =
                sock.recv_from(&mut buf)
                    .await
                    .map_err(|source| ResponderError::Io {
                        addr: self.addr,
                        source,
                    })?;
            let reply = Message::decode(&buf[..n])
                .ok()
                .filter(|m| self.kinds.contains(&m.kind))
                .and_then(|m| {
                    m.reply(
                        self.identity.role.load(Ordering::Relaxed),
                        self.identity.epoch.load(Ordering::Relaxed),
                        self.identity.node,
                    )
                });
            let Some(reply) = reply else {
                self.counters.ignored.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(%from, len = n, "ignored a datagram that is not a request");
                continue;
            };
            match sock.send_to(&reply.encode(), from).await {
                Ok(_) => {
                    self.counters.answered.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .last_request_ns
                        .store(crate::sys::monotonic_ns(), Ordering::Relaxed);
                }
                // A peer that vanished must not stop the responder.
                Err(e) => tracing::debug!(%from, error = %e, "reply failed"),
            }
        }
    }
}
