//! The primary's side of the data copy: the sync port's listener.
//!
//! Bounded under hostile peers (`crate::listen`): only `node.peer` may connect (anyone else is
//! closed at once); at most [`SYNC_CONNECTIONS`] connections at once, one that has not
//! authenticated yet giving its slot to a newer one; the handshake, every frame and the whole
//! copy have deadlines; a failed accept backs off. Each connection is served on a copy thread
//! of its own, so a stuck one never holds up the next.
use std::{
    net::{IpAddr, SocketAddr},
    sync::{atomic::Ordering, Arc},
    time::Instant,
};

use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;

use super::copy::on_copy_thread;
use crate::{
    config::{DataSync, SyncDeadlines},
    event::{Emitter, Event},
    listen::{self, Backoff, Slot, Slots, Throttle},
    role::Role,
    signal::responder::Identity,
    sync::{self, Channel, Deadlines, Key, SyncError},
};

/// Connections the sync port serves at once: a copy, and room for the peer's next one while
/// a stuck one runs into its deadline.
pub const SYNC_CONNECTIONS: usize = 2;

/// A listening TCP socket on `addr` (SO_REUSEADDR, so a restart can bind at once).
pub(super) fn listen(addr: SocketAddr) -> Result<TcpListener, SyncError> {
    let err = |source| SyncError::Io {
        what: "listen on",
        path: addr.to_string().into(),
        source,
    };
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)
        .and_then(|s| {
            s.set_reuse_address(true)?;
            s.set_nonblocking(true)?;
            s.bind(&addr.into())?;
            s.listen(8)?;
            Ok(s)
        })
        .map_err(err)?;
    TcpListener::from_std(s.into()).map_err(err)
}

/// What the server needs besides its listener.
pub(super) struct Server {
    pub identity: Arc<Identity>,
    pub events: Emitter,
    pub key: Key,
    pub cfg: DataSync,
    pub deadlines: SyncDeadlines,
    /// `node.peer`: the only address that may connect.
    pub peer: IpAddr,
    /// Unix ms when the peer last completed a copy (for `failover switchover`).
    pub served_unix_ms: Arc<std::sync::atomic::AtomicU64>,
}

/// Whether a connection from `from` comes from the peer (an IPv4 peer may show as an
/// IPv4-mapped IPv6 address).
fn is_peer(from: IpAddr, peer: IpAddr) -> bool {
    from.to_canonical() == peer.to_canonical()
}

/// Serves one copy per connection, only while this host is primary.
pub(super) async fn serve(listener: TcpListener, srv: Server) {
    let srv = Arc::new(srv);
    let mut backoff = Backoff::new("sync port");
    let slots = Slots::new("sync port", SYNC_CONNECTIONS, "authenticated");
    let mut strangers = Throttle::new(listen::LOG_EVERY);
    loop {
        let (conn, from) = listen::accept(&mut backoff, || listener.accept()).await;
        // Each `continue` below drops the connection: it is closed at once.
        if !is_peer(from.ip(), srv.peer) {
            if let Some(n) = strangers.allow(Instant::now()) {
                tracing::debug!(%from, peer = %srv.peer, "sync port: closed a connection from \
                    {from}, which is not node.peer ({n} more since the last such line)");
            }
            continue;
        }
        if srv.identity.role.load(Ordering::Relaxed) != Role::Primary.code() {
            continue; // only the primary's data is offered
        }
        let Some(slot) = slots.admit(from) else {
            continue;
        };
        let Ok(conn) = conn.into_std() else { continue };
        let srv = srv.clone();
        // Not awaited: the next connection is accepted while this one runs.
        drop(on_copy_thread(async move {
            if let Ok(conn) = tokio::net::TcpStream::from_std(conn) {
                serve_connection(conn, from, slot, &srv).await;
            }
        }));
    }
}

/// One connection: the handshake (given up for a newer connection while it waits), then one
/// copy within `sync.copy_timeout`.
async fn serve_connection(
    conn: tokio::net::TcpStream,
    from: SocketAddr,
    mut slot: Slot,
    srv: &Server,
) {
    let role = Role::Primary.name();
    let epoch = srv.identity.epoch.load(Ordering::Relaxed);
    let d = srv.deadlines;
    let rate = u64::from(srv.cfg.bandwidth_mbit) * 1_000_000 / 8;
    let deadlines = Deadlines {
        handshake: d.handshake,
        frame: d.frame,
    };
    let accepted = tokio::select! {
        _ = slot.evicted() => return,
        r = Channel::accept_with(conn, &srv.key, rate, deadlines) => r,
    };
    let mut ch = match accepted {
        Ok(ch) => ch,
        Err(e) => {
            // The error names the peer's address (`sync: peer ADDR: ...`).
            srv.events
                .emit(Event::SyncFailed, role, epoch, &crate::error_chain(&e));
            return;
        }
    };
    slot.busy();
    let cfg = &srv.cfg;
    let snap = cfg
        .snapshot_command
        .as_deref()
        .map(|c| (c, cfg.snapshot_timeout.0));
    let r = match tokio::time::timeout(d.copy, sync::serve_one_at(&mut ch, &cfg.dir, snap, epoch))
        .await
    {
        Ok(r) => r.map(drop).map_err(|e| crate::error_chain(&e)),
        Err(_) => Err(format!(
            "the copy did not complete within {:?} (sync.copy_timeout); closed",
            d.copy
        )),
    };
    match r {
        Ok(()) => srv.served_unix_ms.store(sync::unix_ms(), Ordering::Relaxed),
        Err(e) => srv.events.emit(
            Event::SyncFailed,
            role,
            epoch,
            &format!("serving {from}: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_peer_is_the_peer_in_either_spelling() {
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(is_peer(peer, peer));
        assert!(is_peer("::ffff:10.0.0.2".parse().unwrap(), peer));
        assert!(!is_peer("10.0.0.3".parse().unwrap(), peer));
        let v6: IpAddr = "fd00::2".parse().unwrap();
        assert!(is_peer(v6, v6));
        assert!(!is_peer("fd00::3".parse().unwrap(), v6));
    }
}
