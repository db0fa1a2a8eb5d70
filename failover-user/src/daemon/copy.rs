//! The data copy's tasks (claims 14, 21): the primary's server, and the monitor's pull every
//! `sync.every` heartbeats. The copy itself is in `crate::sync`.
//!
//! Each copy runs on a thread of the blocking pool with a small runtime of its own: scanning,
//! hashing, deltas, encryption, fsyncs and renames of a large tree take seconds, and none of it
//! may delay the control loop (the failure decision, the fence) any more than the heartbeat
//! thread. A pull is cancelled when monitoring stops; its commit gate guarantees that a
//! cancelled copy never switches the data directory once the takeover has begun.
use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
};

use socket2::{Domain, Socket, Type};
use tokio::{net::TcpListener, task::JoinHandle, time::Instant};

use super::{Daemon, DaemonError};
use crate::{
    config::{Config, DataSync},
    control::{Metrics, SharedStatus, SyncStatus},
    event::{Emitter, Event},
    role::Role,
    signal::responder::Identity,
    sync::{self, Channel, CommitGate, Key, Store, SyncError},
};

/// The monitor's side of the copy, and the handle on the primary's server.
pub(super) struct Copier {
    cfg: DataSync,
    /// The peer's sync server.
    peer: SocketAddr,
    store: Arc<Store>,
    key: Key,
    /// The pull in flight, if any: its thread, its cancel signal and its commit gate.
    task: Option<Pull>,
    events: Emitter,
    status: SharedStatus,
    metrics: Arc<Metrics>,
}

/// A pull in flight.
struct Pull {
    thread: JoinHandle<()>,
    cancel: tokio::sync::watch::Sender<bool>,
    gate: CommitGate,
}

/// Runs `work` on a thread of the blocking pool, on a current-thread runtime of its own.
fn on_copy_thread<F>(work: F) -> JoinHandle<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(work),
            Err(e) => tracing::error!(error = %e, "sync: no runtime for the copy thread"),
        }
    })
}

/// A listening TCP socket on `addr` (SO_REUSEADDR, so a restart can bind at once).
fn listen(addr: SocketAddr) -> Result<TcpListener, SyncError> {
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

impl Copier {
    /// With `[sync]`: loads the key, recovers the store (an interrupted copy leaves the
    /// previous one) and starts the primary-side server, which answers only while this host
    /// is primary. Without `[sync]`: `None`.
    pub(super) fn start(
        cfg: &Config,
        identity: Arc<Identity>,
        events: Emitter,
        status: SharedStatus,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Copier>, DaemonError> {
        let Some(sc) = cfg.sync.clone() else {
            return Ok(None);
        };
        let key = Key::load(&sc.key_file)?;
        let store = Arc::new(Store::open(&sc.dir)?);
        let current = store.current()?;
        status.lock().unwrap_or_else(|p| p.into_inner()).sync = Some(SyncStatus {
            generation: current.as_ref().map_or(0, |g| g.number),
            completed_unix_ms: current.as_ref().map_or(0, |g| g.completed_ms),
            ..Default::default()
        });
        metrics.sync_enabled.store(true, Ordering::Relaxed);
        if let Some(g) = &current {
            metrics
                .sync_completed_unix_ms
                .store(g.completed_ms, Ordering::Relaxed);
        }
        let listener = listen(SocketAddr::new(cfg.node.address.addr, sc.port))?;
        tokio::spawn(serve(
            listener,
            identity,
            events.clone(),
            key.clone(),
            sc.clone(),
        ));
        Ok(Some(Copier {
            peer: SocketAddr::new(cfg.node.peer, sc.port),
            cfg: sc,
            store,
            key,
            task: None,
            events,
            status,
            metrics,
        }))
    }

    /// Pulls one copy, unless one is still in flight. The heartbeat thread says when: every
    /// `sync.every` heartbeats while P answers.
    pub(super) fn pull(&mut self, epoch: u64) {
        if self.task.as_ref().is_some_and(|t| !t.thread.is_finished()) {
            return;
        }
        let (to, store, key, limit) = (
            self.peer,
            self.store.clone(),
            self.key.clone(),
            self.cfg.connect_timeout.0,
        );
        let (events, status, metrics) = (
            self.events.clone(),
            self.status.clone(),
            self.metrics.clone(),
        );
        let (cancel, mut cancelled) = tokio::sync::watch::channel(false);
        let gate = CommitGate::default();
        let g = gate.clone();
        let dir = self.cfg.dir.clone();
        let thread = on_copy_thread(async move {
            let started = Instant::now();
            let role = Role::Monitor.name();
            events.emit(
                Event::SyncStarted,
                role,
                epoch,
                &format!("pulling from {to}"),
            );
            let work = async {
                let mut ch = Channel::connect(to, &key, limit).await?;
                sync::pull(&mut ch, &store, &g).await
            };
            let r = tokio::select! {
                r = work => r,
                _ = cancelled.changed() => Err(SyncError::Cancelled),
            };
            if matches!(r, Err(SyncError::Cancelled)) {
                // Monitoring stopped (a takeover): the previous copy stays; clear the staging
                // this copy left, on this thread, now that nothing writes to it.
                if let Err(e) = Store::open(&dir) {
                    tracing::warn!("{}", crate::error_chain(&e));
                }
                return;
            }
            let took = started.elapsed();
            let mut st = status.lock().unwrap_or_else(|p| p.into_inner());
            let sst = st.sync.get_or_insert_with(Default::default);
            match r {
                Ok(rep) => {
                    sst.generation = rep.generation.number;
                    sst.completed_unix_ms = rep.generation.completed_ms;
                    sst.copies += 1;
                    sst.last_error = None;
                    metrics.sync_copies.fetch_add(1, Ordering::Relaxed);
                    metrics
                        .sync_bytes
                        .fetch_add(rep.bytes_sent, Ordering::Relaxed);
                    metrics
                        .sync_last_ns
                        .store(took.as_nanos() as u64, Ordering::Relaxed);
                    metrics
                        .sync_completed_unix_ms
                        .store(rep.generation.completed_ms, Ordering::Relaxed);
                    drop(st);
                    events.emit(
                        Event::SyncDone,
                        role,
                        epoch,
                        &format!(
                            "generation {}: {} files changed ({} bytes), {} bytes sent, {} bytes in the copy, {:.1} ms",
                            rep.generation.number,
                            rep.files_sent,
                            rep.bytes_changed,
                            rep.bytes_sent,
                            rep.generation.bytes,
                            took.as_secs_f64() * 1e3,
                        ),
                    );
                }
                Err(e) => {
                    let msg = crate::error_chain(&e);
                    sst.failures += 1;
                    sst.last_error = Some(msg.clone());
                    metrics.sync_failures.fetch_add(1, Ordering::Relaxed);
                    drop(st);
                    events.emit(Event::SyncFailed, role, epoch, &msg);
                }
            }
        });
        self.task = Some(Pull {
            thread,
            cancel,
            gate,
        });
    }

    /// Stops a copy in flight: after this returns it will not switch the data directory (it
    /// leaves the previous copy intact and removes its own staging).
    pub(super) fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.gate.close();
            let _ = t.cancel.send(true);
        }
    }
}

/// The primary's side: serves one copy per connection, only while this host is primary.
async fn serve(
    listener: TcpListener,
    identity: Arc<Identity>,
    events: Emitter,
    key: Key,
    cfg: DataSync,
) {
    let rate = u64::from(cfg.bandwidth_mbit) * 1_000_000 / 8;
    let role = Role::Primary.name();
    loop {
        let Ok((conn, from)) = listener.accept().await else {
            continue;
        };
        if identity.role.load(Ordering::Relaxed) != Role::Primary.code() {
            continue; // only the primary's data is offered
        }
        let epoch = identity.epoch.load(Ordering::Relaxed);
        let Ok(conn) = conn.into_std() else { continue };
        let (events, key, cfg) = (events.clone(), key.clone(), cfg.clone());
        // One copy at a time, each on a copy thread.
        let _ = on_copy_thread(async move {
            let Ok(conn) = tokio::net::TcpStream::from_std(conn) else {
                return;
            };
            let mut ch = match Channel::accept(conn, &key, rate).await {
                Ok(ch) => ch,
                Err(e) => {
                    events.emit(Event::SyncFailed, role, epoch, &crate::error_chain(&e));
                    return;
                }
            };
            let snap = cfg
                .snapshot_command
                .as_deref()
                .map(|c| (c, cfg.snapshot_timeout.0));
            if let Err(e) = sync::serve_one(&mut ch, &cfg.dir, snap).await {
                events.emit(
                    Event::SyncFailed,
                    role,
                    epoch,
                    &format!("serving {from}: {}", crate::error_chain(&e)),
                );
            }
        })
        .await;
    }
}

impl Daemon {
    /// On becoming primary: say which copy is served (the recovery point).
    pub(super) fn report_served_copy(&self) {
        let Some(c) = &self.copier else { return };
        match c.store.current() {
            Ok(Some(g)) => self.emit(
                Event::ServingCopy,
                &format!(
                    "serving generation {} of the data, completed {} ms before the takeover",
                    g.number,
                    sync::unix_ms().saturating_sub(g.completed_ms)
                ),
            ),
            Ok(None) => self.emit(
                Event::ServingCopy,
                "no copy of the primary's data was ever completed here: serving what the data directory holds",
            ),
            Err(e) => self.emit(Event::DaemonError, &crate::error_chain(&e)),
        }
    }
}
