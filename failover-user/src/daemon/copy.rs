//! The data copy's tasks (claims 14, 21): the monitor's pull every `sync.every` heartbeats
//! and its `sync_stale` watch (`stale`), and the primary's server (`serve`). The copy itself
//! is in `crate::sync`.
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

use tokio::{sync::watch, task::JoinHandle, time::Instant};

use super::{
    serve::{self, Server},
    stale::{self, StaleContext},
    Daemon, DaemonError,
};
use crate::{
    config::{Config, DataSync, SyncDeadlines},
    control::{Metrics, SharedStatus, SyncStatus},
    event::{Emitter, Event},
    role::Role,
    signal::responder::Identity,
    sync::{self, Channel, CommitGate, Deadlines, Key, Store, SyncError},
};

/// The monitor's side of the copy (its pulls and its `sync_stale` watch); the primary's server
/// runs on its own (`serve`), started here.
pub(super) struct Copier {
    cfg: DataSync,
    deadlines: SyncDeadlines,
    /// The peer's sync server.
    peer: SocketAddr,
    /// The peer's `node.peer_name`, recorded as the origin of its copies.
    peer_name: String,
    store: Arc<Store>,
    key: Key,
    /// The pull in flight, if any: its thread, its cancel signal and its commit gate.
    task: Option<Pull>,
    /// The time of each completed copy, for the `sync_stale` watch.
    done: watch::Sender<std::time::Instant>,
    /// The `sync_stale` watch, while monitoring.
    stale: Option<JoinHandle<()>>,
    identity: Arc<Identity>,
    events: Emitter,
    status: SharedStatus,
    metrics: Arc<Metrics>,
    /// Unix ms when the peer last completed a copy from this host (0: not since start).
    pub(super) served_unix_ms: Arc<std::sync::atomic::AtomicU64>,
}

/// A pull in flight.
struct Pull {
    thread: JoinHandle<()>,
    cancel: tokio::sync::watch::Sender<bool>,
    gate: CommitGate,
}

/// Runs `work` on a thread of the blocking pool, on a current-thread runtime of its own.
pub(super) fn on_copy_thread<F>(work: F) -> JoinHandle<()>
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

/// Clears the staging a given-up copy left, on its copy thread, now that nothing writes to it.
fn clear_staging(dir: &std::path::Path) {
    if let Err(e) = Store::open(dir) {
        tracing::warn!("{}", crate::error_chain(&e));
    }
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
        let mut store = Store::open(&sc.dir)?;
        store.set_keep_diverged(sc.keep_diverged);
        let store = Arc::new(store);
        publish_mark(&store, &identity);
        let current = store.current()?;
        status.lock().unwrap_or_else(|p| p.into_inner()).sync = Some(SyncStatus {
            generation: current.as_ref().map_or(0, |g| g.number),
            completed_unix_ms: current.as_ref().map_or(0, |g| g.completed_ms),
            generation_epoch: current.as_ref().map_or(0, |g| g.epoch),
            generation_origin: current
                .as_ref()
                .map(|g| g.origin.clone())
                .unwrap_or_default(),
            kept_aside: kept_aside(&store),
            ..Default::default()
        });
        metrics.sync_enabled.store(true, Ordering::Relaxed);
        if let Some(g) = &current {
            metrics
                .sync_completed_unix_ms
                .store(g.completed_ms, Ordering::Relaxed);
        }
        let deadlines = sc.deadlines(cfg.heartbeat.interval.0);
        let listener = serve::listen(SocketAddr::new(cfg.node.address.addr, sc.port))?;
        let served_unix_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
        tokio::spawn(serve::serve(
            listener,
            Server {
                identity: identity.clone(),
                events: events.clone(),
                key: key.clone(),
                cfg: sc.clone(),
                deadlines,
                peer: cfg.node.peer,
                served_unix_ms: served_unix_ms.clone(),
            },
        ));
        Ok(Some(Copier {
            peer: SocketAddr::new(cfg.node.peer, sc.port),
            peer_name: cfg.node.peer_name.clone(),
            cfg: sc,
            deadlines,
            store,
            key,
            task: None,
            done: watch::Sender::new(std::time::Instant::now()),
            stale: None,
            identity,
            events,
            status,
            metrics,
            served_unix_ms,
        }))
    }

    /// Monitoring started: watch for `sync_stale` from now.
    pub(super) fn watch(&mut self) {
        let t = stale::watch(
            self.deadlines.alert_after,
            self.done.subscribe(),
            StaleContext {
                events: self.events.clone(),
                identity: self.identity.clone(),
                status: self.status.clone(),
            },
        );
        if let Some(old) = self.stale.replace(t) {
            old.abort();
        }
    }

    /// Pulls one copy, unless one is still in flight. The heartbeat thread says when: every
    /// `sync.every` heartbeats while P answers.
    pub(super) fn pull(&mut self, epoch: u64) {
        if self.task.as_ref().is_some_and(|t| !t.thread.is_finished()) {
            return;
        }
        let (to, store, key, d) = (
            self.peer,
            self.store.clone(),
            self.key.clone(),
            self.deadlines,
        );
        let (events, status, metrics, done, identity) = (
            self.events.clone(),
            self.status.clone(),
            self.metrics.clone(),
            self.done.clone(),
            self.identity.clone(),
        );
        let (cancel, mut cancelled) = tokio::sync::watch::channel(false);
        let gate = CommitGate::default();
        let g = gate.clone();
        let dir = self.cfg.dir.clone();
        let opts = sync::PullOptions {
            origin: self.peer_name.clone(),
            keep_setid: self.cfg.keep_setid,
        };
        let thread = on_copy_thread(async move {
            let started = Instant::now();
            let role = Role::Monitor.name();
            events.emit(
                Event::SyncStarted,
                role,
                epoch,
                &format!("pulling from {to}"),
            );
            let deadlines = Deadlines {
                handshake: d.handshake,
                frame: d.frame,
            };
            let work = async {
                let mut ch = Channel::connect_with(to, &key, d.connect, deadlines).await?;
                sync::pull_with(&mut ch, &store, &g, opts).await
            };
            // The whole copy has a deadline. The store's switch is synchronous: a copy given
            // up at an await point has either switched the directory or left it alone.
            let r = tokio::select! {
                r = tokio::time::timeout(d.copy, work) => r,
                _ = cancelled.changed() => Ok(Err(SyncError::Cancelled)),
            };
            let r = r.unwrap_or_else(|_| {
                clear_staging(&dir);
                Err(SyncError::Peer {
                    peer: to.to_string(),
                    message: format!(
                        "the copy did not complete within {:?} (sync.copy_timeout); the \
                         previous copy stays",
                        d.copy
                    ),
                })
            });
            if matches!(r, Err(SyncError::Cancelled)) {
                // Monitoring stopped (a takeover): the previous copy stays.
                clear_staging(&dir);
                return;
            }
            let took = started.elapsed();
            let mut st = status.lock().unwrap_or_else(|p| p.into_inner());
            let sst = st.sync.get_or_insert_with(Default::default);
            match r {
                Ok(rep) => {
                    sst.newer_data_here = None;
                    sst.generation_epoch = rep.generation.epoch;
                    sst.generation_origin = rep.generation.origin.clone();
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
                    publish_mark(&store, &identity);
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
                    // After the event: a stretch never starts before its `sync_done`.
                    done.send_replace(std::time::Instant::now());
                    report_notes(&store, &events, &status, role, epoch);
                }
                Err(e) => {
                    let msg = crate::error_chain(&e);
                    sst.failures += 1;
                    sst.last_error = Some(msg.clone());
                    let refused = matches!(e, SyncError::NewerHere { .. });
                    if refused {
                        sst.newer_data_here = Some(msg.clone());
                    }
                    metrics.sync_failures.fetch_add(1, Ordering::Relaxed);
                    drop(st);
                    let event = if refused {
                        Event::SyncRefused
                    } else {
                        Event::SyncFailed
                    };
                    events.emit(event, role, epoch, &msg);
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
    /// Also ends the `sync_stale` watch (monitoring stopped).
    pub(super) fn stop(&mut self) {
        if let Some(t) = self.stale.take() {
            t.abort();
        }
        if let Some(t) = self.task.take() {
            t.gate.close();
            let _ = t.cancel.send(true);
        }
    }
}

/// What the copy did to data it replaced: events, and the list in `status`.
/// Publishes the store's data mark to the responders (join answers compare it).
fn publish_mark(store: &Store, identity: &Identity) {
    match store.data_mark() {
        Ok(m) => identity.data.store(m, Ordering::Relaxed),
        Err(e) => tracing::warn!(error = %crate::error_chain(&e),
            "could not read how new this host's data is; join answers keep the last value"),
    }
}

fn report_notes(store: &Store, events: &Emitter, status: &SharedStatus, role: &str, epoch: u64) {
    for n in store.take_notes() {
        match n {
            sync::Note::KeptAside(p) => events.emit(
                Event::SyncKeptAside,
                role,
                epoch,
                &format!(
                    "this host's own data (what it served as primary) was replaced by the copy and kept aside as {}",
                    p.display()
                ),
            ),
            sync::Note::Removed(p) => events.emit(
                Event::SyncAsideRemoved,
                role,
                epoch,
                &format!("removed the oldest kept-aside data {} (sync.keep_diverged)", p.display()),
            ),
        }
    }
    let list = kept_aside(store);
    let mut st = status.lock().unwrap_or_else(|p| p.into_inner());
    st.sync.get_or_insert_with(Default::default).kept_aside = list;
}

/// The kept-aside directories, oldest first, as `status` lists them.
fn kept_aside(store: &Store) -> Vec<String> {
    store
        .diverged()
        .unwrap_or_default()
        .into_iter()
        .map(|p| p.display().to_string())
        .collect()
}

impl Copier {
    /// This host is about to serve the data directory as primary (at `epoch`): what it holds
    /// from now on is its own, and the next copy keeps it aside.
    pub(super) fn mark_served(&self, epoch: u64) -> Result<(), SyncError> {
        self.store.mark_served(epoch)?;
        publish_mark(&self.store, &self.identity);
        Ok(())
    }
}

impl Daemon {
    /// `sync.max_age`: whether the copy this monitor holds is recent enough to serve. An older
    /// one is refused (`takeover_refused`), unless `sync.serve_stale` is set and the peer is
    /// confirmed off (`stale_copy_served`): then it is the only data left.
    pub(super) fn copy_fresh_enough(&self) -> bool {
        let (Some(c), Some(max)) = (&self.copier, self.cfg.sync.as_ref().and_then(|s| s.max_age))
        else {
            return true;
        };
        let age_ms = match c.store.current() {
            Ok(Some(g)) => Some(sync::unix_ms().saturating_sub(g.completed_ms)),
            _ => None,
        };
        let max_ms = max.0.as_millis() as u64;
        if age_ms.is_some_and(|a| a <= max_ms) {
            return true;
        }
        let age = age_ms.map_or("no copy at all".to_string(), |a| {
            format!("a copy {a} ms old")
        });
        let serve_stale = self.cfg.sync.as_ref().is_some_and(|s| s.serve_stale);
        if serve_stale && self.machine.fence_confirmed() {
            self.emit(
                Event::StaleCopyServed,
                &format!(
                    "{age} (sync.max_age {max_ms} ms): serving it, the peer is confirmed off and \
                     sync.serve_stale = true"
                ),
            );
            return true;
        }
        self.emit(
            Event::TakeoverRefused,
            &format!(
                "{age} (sync.max_age {max_ms} ms): not taking P over with it{}",
                if serve_stale {
                    " (sync.serve_stale needs the peer confirmed off)"
                } else {
                    "; set sync.serve_stale = true to serve it once the peer is confirmed off"
                }
            ),
        );
        false
    }

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
