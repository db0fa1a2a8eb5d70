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
    /// `role::FLAG_*` bits carried in replies (preferred primary, holds P, holds M).
    pub flags: AtomicU8,
    /// Node id carried in replies.
    pub node: u32,
    /// This host's data mark (`sync::Store::data_mark`, 0 without `[sync]`): join answers
    /// say whether it is above or below the asker's (`FLAG_NEWER_DATA`, `FLAG_OLDER_DATA`).
    pub data: AtomicU64,
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
pub struct Responder {
    /// Bound and non-blocking; registered with a runtime only when it serves, so that it can
    /// be bound on one thread and served on another.
    sock: std::net::UdpSocket,
    addr: SocketAddr,
    identity: Arc<Identity>,
    kinds: &'static [Kind],
    /// Called with every notice (`leaving`: a planned stop of the sender; `taken over`), and
    /// once per higher epoch with a heartbeat whose epoch is above this host's while it is
    /// primary (the monitor was primary after it).
    on_notice: Option<Box<dyn Fn(Message) + Send>>,
    /// Counters, readable while it runs.
    pub counters: Arc<ResponderCounters>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("addr", &self.addr)
            .field("kinds", &self.kinds)
            .finish_non_exhaustive()
    }
}

/// The receive buffer asked for on each responder socket (the kernel doubles it for its
/// bookkeeping, within `net.core.rmem_max`): a bound that does not depend on the host's
/// `rmem_default`, and room for hundreds of heartbeats if the thread is late.
pub const RECV_BUFFER: usize = 128 * 1024;

/// `SKF_NET_OFF` of linux/filter.h: classic BPF loads relative to the network header.
const SKF_NET_OFF: u32 = (-0x100000i32) as u32;

/// A classic BPF socket filter that keeps only datagrams whose IP source is `peer` and
/// drops everything else in the kernel, before it reaches the socket's queue.
fn source_filter(peer: IpAddr) -> Vec<libc::sock_filter> {
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let (ld, jeq, ret) = (
        libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
        libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
        libc::BPF_RET | libc::BPF_K,
    );
    // Source address words and their offsets in the IP header.
    let words: Vec<(u32, u32)> = match peer {
        IpAddr::V4(a) => vec![(12, u32::from(a))],
        IpAddr::V6(a) => a
            .octets()
            .chunks(4)
            .enumerate()
            .map(|(i, c)| {
                (
                    8 + 4 * i as u32,
                    u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                )
            })
            .collect(),
    };
    let n = words.len() as u8;
    let mut prog = Vec::new();
    for (i, (off, want)) in words.into_iter().enumerate() {
        // On a mismatch jump to the final "drop"; instructions left after this one: the
        // remaining pairs, then "accept".
        let left = 2 * (n - 1 - i as u8) + 1;
        prog.push(op(ld, 0, 0, SKF_NET_OFF + off));
        prog.push(op(jeq, 0, left, want));
    }
    prog.push(op(ret, 0, 0, 0x0004_0000));
    prog.push(op(ret, 0, 0, 0));
    prog
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
        s.set_recv_buffer_size(RECV_BUFFER).map_err(err)?;
        s.set_nonblocking(true).map_err(err)?;
        s.bind(&addr.into()).map_err(err)?;
        let sock: std::net::UdpSocket = s.into();
        let addr = sock.local_addr().map_err(err)?;
        Ok(Responder {
            sock,
            addr,
            identity,
            kinds,
            on_notice: None,
            counters: Arc::default(),
        })
    }

    /// Lets only datagrams from `peer` reach the socket (a kernel socket filter): a flood from
    /// anyone else cannot fill the queue that the peer's heartbeats wait in.
    pub fn only_from(self, peer: IpAddr) -> Result<Responder, ResponderError> {
        let prog = source_filter(peer);
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        use std::os::fd::AsRawFd as _;
        // SAFETY: a valid socket and a sock_fprog pointing at `prog`, which outlives the call
        // (the kernel copies the program).
        let rc = unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&fprog as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as u32,
            )
        };
        if rc != 0 {
            return Err(ResponderError::Bind {
                addr: self.addr,
                source: io::Error::last_os_error(),
            });
        }
        Ok(self)
    }

    /// Calls `f` with every notice received (`leaving`, `taken over`): messages that are
    /// reported, not answered.
    pub fn on_notice(mut self, f: impl Fn(Message) + Send + 'static) -> Responder {
        self.on_notice = Some(Box::new(f));
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until the socket fails (on the runtime of the calling task).
    pub async fn serve(self) -> Result<(), ResponderError> {
        let sock =
            UdpSocket::from_std(self.sock.try_clone().map_err(|source| ResponderError::Io {
                addr: self.addr,
                source,
            })?)
            .map_err(|source| ResponderError::Io {
                addr: self.addr,
                source,
            })?;
        let mut buf = [0u8; 512];
        let mut newer_reported = 0u64;
        loop {
            let (n, from) =
                sock.recv_from(&mut buf)
                    .await
                    .map_err(|source| ResponderError::Io {
                        addr: self.addr,
                        source,
                    })?;
            if let Some(reply) = self.answer(&buf[..n], from, &mut newer_reported) {
                let sent = sock.send_to(&reply, from).await;
                self.sent(from, sent);
            }
        }
    }

    /// A handle that ends [`Responder::serve_blocking`] from another thread.
    pub fn stopper(&self) -> Result<Stopper, ResponderError> {
        let sock = self.sock.try_clone().map_err(|source| ResponderError::Io {
            addr: self.addr,
            source,
        })?;
        Ok(Stopper {
            sock,
            stop: Arc::default(),
        })
    }

    /// Serves on the calling thread until `stop` is used or the socket fails: one blocking
    /// receive and one non-blocking send per request, so the thread sleeps in the kernel
    /// between requests and is woken by the datagram itself (no runtime, no timer, no
    /// readiness poll).
    pub fn serve_blocking(
        self,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<(), ResponderError> {
        let io = |source| ResponderError::Io {
            addr: self.addr,
            source,
        };
        self.sock.set_nonblocking(false).map_err(io)?;
        let mut buf = [0u8; 512];
        let mut newer_reported = 0u64;
        loop {
            let got = self.sock.recv_from(&mut buf);
            if stop.load(Ordering::Acquire) {
                return Ok(());
            }
            let (n, from) = match got {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io(e)),
            };
            if let Some(reply) = self.answer(&buf[..n], from, &mut newer_reported) {
                // Never waits for send-buffer space: a reply that does not fit now is dropped,
                // as a lost datagram would be.
                let sent = socket2::SockRef::from(&self.sock).send_to_with_flags(
                    &reply,
                    &from.into(),
                    libc::MSG_DONTWAIT,
                );
                self.sent(from, sent);
            }
        }
    }

    /// The reply to one datagram, if it is a request this responder answers; reports notices
    /// (and, once per higher epoch, a heartbeat whose epoch is above this primary's:
    /// `newer_reported` holds the highest reported so far).
    fn answer(
        &self,
        datagram: &[u8],
        from: SocketAddr,
        newer_reported: &mut u64,
    ) -> Option<[u8; failover_common::wire::LEN]> {
        let msg = Message::decode(datagram).ok();
        if let (Some(m), Some(f)) = (
            msg.filter(|m| matches!(m.kind, Kind::Leaving | Kind::TakenOver | Kind::Yield)),
            &self.on_notice,
        ) {
            f(m);
            return None;
        }
        if let (Some(m), Some(f)) = (
            msg.filter(|m| {
                m.kind == Kind::Heartbeat
                    && m.epoch > *newer_reported
                    && m.epoch > self.identity.epoch.load(Ordering::Relaxed)
                    && self.identity.role.load(Ordering::Relaxed)
                        == crate::role::Role::Primary.code()
            }),
            &self.on_notice,
        ) {
            *newer_reported = m.epoch;
            f(m);
        }
        let reply = msg.filter(|m| self.kinds.contains(&m.kind)).and_then(|m| {
            m.reply(
                self.identity.role.load(Ordering::Relaxed),
                self.identity.flags.load(Ordering::Relaxed) | data_flags(&self.identity, &m),
                self.identity.epoch.load(Ordering::Relaxed),
                self.identity.node,
            )
        });
        match reply {
            Some(r) => Some(r.encode()),
            None => {
                self.counters.ignored.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(%from, len = datagram.len(), "ignored a datagram that is not a request");
                None
            }
        }
    }

    /// Counts a reply sent (or logs why it was not).
    fn sent(&self, from: SocketAddr, sent: io::Result<usize>) {
        match sent {
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

/// Ends a [`Responder::serve_blocking`] running on another thread: shuts the socket down,
/// which wakes the blocked receive at once (and any send, though replies never wait).
#[derive(Debug)]
pub struct Stopper {
    sock: std::net::UdpSocket,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Stopper {
    /// The flag [`Responder::serve_blocking`] checks after each receive.
    pub fn flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.stop.clone()
    }

    /// Asks the responder to end; it returns from its receive at once.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        use std::os::fd::AsRawFd as _;
        // SAFETY: shutdown(2) on a socket this handle owns (a duplicate of the responder's).
        unsafe { libc::shutdown(self.sock.as_raw_fd(), libc::SHUT_RDWR) };
    }
}

/// For a join request (whose epoch field carries the asker's data mark): how this host's
/// data compares with the asker's.
fn data_flags(identity: &Identity, m: &Message) -> u8 {
    use crate::role::{FLAG_NEWER_DATA, FLAG_OLDER_DATA};
    if m.kind != Kind::Join {
        return 0;
    }
    match identity.data.load(Ordering::Relaxed).cmp(&m.epoch) {
        std::cmp::Ordering::Greater => FLAG_NEWER_DATA,
        std::cmp::Ordering::Less => FLAG_OLDER_DATA,
        std::cmp::Ordering::Equal => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responder_sockets_have_a_bounded_receive_buffer() {
        let r = Responder::bind(
            "127.0.0.1".parse().unwrap(),
            0,
            Arc::default(),
            &[Kind::Heartbeat],
        )
        .expect("bind");
        let n = socket2::SockRef::from(&r.sock)
            .recv_buffer_size()
            .expect("SO_RCVBUF");
        // The kernel doubles the request, within rmem_max.
        assert!(n <= 2 * RECV_BUFFER, "{n}");
    }

    #[test]
    fn a_stopper_ends_a_blocked_responder_and_frees_its_port() {
        let r = Responder::bind(
            "127.0.0.1".parse().unwrap(),
            0,
            Arc::default(),
            &[Kind::Heartbeat],
        )
        .expect("bind");
        let addr = r.local_addr();
        let stopper = r.stopper().expect("stopper");
        let flag = stopper.flag();
        let (done, ended) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let _ = done.send(r.serve_blocking(flag).is_ok());
        });
        // It answers while it runs...
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let hb = Message {
            kind: Kind::Heartbeat,
            role: 0,
            flags: 0,
            token: 7,
            seq: 1,
            epoch: 0,
            node: 9,
        };
        c.send_to(&hb.encode(), addr).unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = c.recv_from(&mut buf).expect("an answer");
        let reply = Message::decode(&buf[..n]).expect("a message");
        assert_eq!((reply.kind, reply.token), (Kind::HeartbeatReply, 7));
        // ... and ends when stopped, blocked in its receive as it is now.
        stopper.stop();
        let ok = ended
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the responder thread ended");
        assert!(ok, "a stop is not an error");
        t.join().unwrap();
        drop(stopper);
        std::net::UdpSocket::bind(addr).expect("the port is free again");
    }
}
