//! An AF_PACKET socket for sending and receiving raw ARP and neighbour discovery frames.
use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use tokio::io::unix::AsyncFd;

use super::AddressError;

/// An AF_PACKET socket bound to one interface and ethertype.
///
/// Closing a packet socket waits for an RCU grace period (`synchronize_net()` in
/// `packet_release`), 10-15 ms here; opening one with a protocol and then binding it waits for
/// another. So it is opened with protocol 0 and bound once, and closed on a blocking thread,
/// keeping both waits off the takeover path.
pub(super) struct PacketSocket {
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
    pub(super) fn open(
        interface: &str,
        index: u32,
        proto: u16,
    ) -> Result<PacketSocket, AddressError> {
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

    /// Lets only IPv6 neighbour advertisements through (a kernel socket filter): a socket
    /// bound to all of IPv6 would otherwise wake for every packet of the service.
    pub(super) fn only_neighbour_advertisements(self) -> Result<PacketSocket, AddressError> {
        let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
        // ldh [12]; jeq IPv6 / ldb [20]; jeq ICMPv6 / ldb [54]; jeq NA; accept; drop. No
        // extension headers: NDP does not use them.
        let prog = [
            op(0x28, 0, 0, 12),
            op(0x15, 0, 5, 0x86dd),
            op(0x30, 0, 0, 20),
            op(0x15, 0, 3, 58),
            op(0x30, 0, 0, 54),
            op(0x15, 0, 1, 136),
            op(0x06, 0, 0, 0x0004_0000),
            op(0x06, 0, 0, 0),
        ];
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: a valid socket and a sock_fprog pointing at `prog`, which outlives the call
        // (the kernel copies the program).
        let rc = unsafe {
            libc::setsockopt(
                self.fd().as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&fprog as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as u32,
            )
        };
        if rc != 0 {
            return Err(AddressError::Packet {
                interface: self.interface.clone(),
                what: "attach filter",
                source: io::Error::last_os_error(),
            });
        }
        Ok(self)
    }

    fn fd(&self) -> &AsyncFd<OwnedFd> {
        self.fd.as_ref().expect("present until drop")
    }

    pub(super) fn send(&self, frame: &[u8]) -> Result<(), AddressError> {
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

    pub(super) async fn recv(&self, buf: &mut [u8]) -> Result<usize, AddressError> {
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
