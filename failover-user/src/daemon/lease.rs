//! The primary's lease in the daemon (`boot.lease`; docs/fencing.md).
//!
//! - [`Keeper`] (the primary, on the heartbeat thread): every quarter lease it asks both
//!   grantors - the witness (`witness.lease_peer`) and the monitor (`node.peer`, at
//!   `witness.lease_port`) - for a renewal; each grant that extends the lease is one write of
//!   the kernel gate's map. The gate itself stops P once the lease lapses, whatever this
//!   thread does; the keeper only reports it (`lease_lapsed`, `lease_restored`), and a grantor
//!   that stopped answering (`witness_lost`).
//! - [`serve_grants`] (every host, on the heartbeat thread): renewals for the peer while this
//!   host is its monitor.
use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{net::UdpSocket, sync::mpsc};

use super::monitor::Report;
use crate::{
    gate::Gate,
    lease::{
        wire::{Kind, Message, Reason},
        Bound, Grantor, Holder, LeaseStatus, RateCheck, RATE_BASELINE, WITNESS,
    },
    signal::responder::Identity,
    sys::monotonic_ns,
};

const NAMES: [&str; 2] = ["witness", "monitor"];

/// A grantor silent for this many leases is reported lost.
pub(super) const LOST_AFTER_LEASES: u32 = 3;

/// What the keeper tells the control thread.
#[derive(Debug)]
pub enum LeaseNews {
    /// No grant is valid any more: the gate stops P.
    Lapsed,
    /// A grant is valid again: the gate lets P through.
    Restored,
    /// A grantor gave no grant for a few leases.
    GrantorLost(&'static str),
    /// It grants again.
    GrantorBack(&'static str),
    /// A grantor's clock runs outside the bound.
    ClockSuspect(&'static str, i64),
    /// The lease lapsed and the witness refuses it as revoked: it cannot come back at this
    /// epoch (the keeper's).
    Revoked(u64),
}

/// The primary's side, handed to the heartbeat thread.
pub struct Keeper {
    sock: Option<std::net::UdpSocket>,
    grantors: [SocketAddr; 2],
    key: [u8; 32],
    node: u32,
    epoch: u64,
    token: u64,
    lease: Duration,
    holder: Holder,
    gate: Gate,
    rates: [RateCheck; 2],
    status: Arc<LeaseStatus>,
}

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keeper")
            .field("grantors", &self.grantors)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// Where and how a keeper asks.
#[derive(Clone, Debug)]
pub struct KeeperSettings {
    /// The node address (the source).
    pub local: IpAddr,
    /// The witness and the monitor.
    pub grantors: [SocketAddr; 2],
    /// The lease MAC key.
    pub key: [u8; 32],
    /// This node's id.
    pub node: u32,
    /// The epoch this host is primary at.
    pub epoch: u64,
    /// `boot.lease`.
    pub lease: Duration,
}

impl Keeper {
    /// A keeper for the gate `gate` (installed closed).
    pub fn open(
        s: KeeperSettings,
        gate: Gate,
        status: Arc<LeaseStatus>,
    ) -> std::io::Result<Keeper> {
        let sock = std::net::UdpSocket::bind(SocketAddr::new(s.local, 0))?;
        sock.set_nonblocking(true)?;
        let bound = Bound::default();
        Ok(Keeper {
            sock: Some(sock),
            grantors: s.grantors,
            key: s.key,
            node: s.node,
            epoch: s.epoch,
            token: rand::random(),
            lease: s.lease,
            holder: Holder::new(s.lease),
            gate,
            rates: [
                RateCheck::new(bound, RATE_BASELINE),
                RateCheck::new(bound, RATE_BASELINE),
            ],
            status,
        })
    }

    /// Asks and renews until `stop` fires.
    pub(super) async fn run(
        mut self,
        reports: mpsc::UnboundedSender<Report>,
        mut stop: tokio::sync::oneshot::Receiver<()>,
    ) {
        let Some(std_sock) = self.sock.take() else {
            return;
        };
        let sock = match UdpSocket::from_std(std_sock) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "lease keeper socket; the lease will lapse");
                return;
            }
        };
        self.status.active.store(true, Ordering::Relaxed);
        let news = |n| {
            let _ = reports.send(Report::Lease(n));
        };
        let renew = self.lease / 4;
        let lost_after = self.lease.as_nanos() as u64 * u64::from(LOST_AFTER_LEASES);
        let mut next = tokio::time::Instant::now();
        let mut last_send = monotonic_ns();
        let mut valid = false;
        let mut ever = false;
        let mut lost = [false; 2];
        let mut suspect = [false; 2];
        // The witness refused this epoch as revoked; told: the control thread knows.
        let mut revoked = false;
        let mut told = false;
        let mut buf = [0u8; 128];
        loop {
            let expiry = self.holder.expiry_ns();
            let lapse_at = (valid && expiry > 0).then(|| {
                let left = expiry.saturating_sub(monotonic_ns());
                tokio::time::Instant::now() + Duration::from_nanos(left)
            });
            tokio::select! {
                biased;
                _ = &mut stop => break,
                r = sock.recv_from(&mut buf) => {
                    let Ok((n, from)) = r else { continue };
                    let Some(i) = self.grantors.iter().position(|g| *g == from) else { continue };
                    let Ok(m) = Message::decode(&buf[..n], &self.key) else { continue };
                    if m.token != self.token || m.epoch != self.epoch {
                        continue;
                    }
                    let now = monotonic_ns();
                    if let Some(ppm) = self.rates[i].sample(now, m.stamp_ns) {
                        self.status.rate_ppm[i].store(ppm, Ordering::Relaxed);
                        let s = self.rates[i].suspect();
                        if s && !suspect[i] {
                            news(LeaseNews::ClockSuspect(NAMES[i], ppm));
                        }
                        suspect[i] = s;
                    }
                    if i == WITNESS {
                        // Refused as revoked (or while the other host holds the witness's
                        // grant) until the witness grants again.
                        revoked = match m.kind {
                            Kind::Refuse => revoked || m.reason == Reason::Revoked,
                            Kind::Grant => false,
                            _ => revoked,
                        };
                    }
                    if m.kind != Kind::Grant {
                        continue;
                    }
                    self.status.last_grant_ns[i].store(now, Ordering::Relaxed);
                    if std::mem::take(&mut lost[i]) {
                        news(LeaseNews::GrantorBack(NAMES[i]));
                    }
                    if let Some(until) = self.holder.granted(m.seq) {
                        if let Err(e) = self.gate.renew(until) {
                            tracing::error!(error = %crate::error_chain(&e), "lease gate not renewed");
                        }
                        self.status.expiry_ns.store(until, Ordering::Relaxed);
                    }
                }
                _ = tokio::time::sleep_until(next) => {
                    next += renew;
                    let now = monotonic_ns();
                    // This thread was held up (the daemon frozen, a stall): the grantors'
                    // silence since says nothing about them.
                    let stalled = now.saturating_sub(last_send) > self.lease.as_nanos() as u64;
                    last_send = now;
                    if stalled {
                        next = tokio::time::Instant::now() + renew;
                    }
                    let seq = self.holder.request(now);
                    let m = Message {
                        kind: Kind::Request,
                        reason: Reason::None,
                        node: self.node,
                        epoch: self.epoch,
                        seq,
                        token: self.token,
                        value_ns: self.lease.as_nanos() as u64,
                        stamp_ns: now,
                    }
                    .encode(&self.key);
                    for g in self.grantors {
                        let _ = sock.send_to(&m, g).await;
                    }
                    for (i, l) in lost.iter_mut().enumerate() {
                        let last = self.status.last_grant_ns[i].load(Ordering::Relaxed);
                        let since = if last == 0 { 0 } else { now.saturating_sub(last) };
                        if ever && !stalled && !*l && (last == 0 || since > lost_after) {
                            *l = true;
                            news(LeaseNews::GrantorLost(NAMES[i]));
                        }
                    }
                }
                _ = super::heartbeat::sleep_until_opt(lapse_at) => {}
            }
            let now_valid = self.holder.valid(monotonic_ns());
            if now_valid && !valid {
                if ever {
                    news(LeaseNews::Restored);
                }
                ever = true;
            } else if !now_valid && valid {
                self.status.lapses.fetch_add(1, Ordering::Relaxed);
                news(LeaseNews::Lapsed);
            }
            valid = now_valid;
            if revoked && !valid && ever && !std::mem::replace(&mut told, true) {
                news(LeaseNews::Revoked(self.epoch));
            }
        }
        self.status.active.store(false, Ordering::Relaxed);
    }
}

/// Whether this host grants the peer's lease, and until when its grants may run: shared by
/// the control loop (which stops granting at a failure decision) and the grantor.
#[derive(Debug, Default)]
pub(super) struct Granting {
    /// `Machine::grants`, published after every step.
    pub(super) on: AtomicBool,
    /// A grant given may run until this CLOCK_MONOTONIC ns (0: none given).
    pub(super) hold_until_ns: AtomicU64,
    /// The highest epoch granted (0: none).
    pub(super) granted_epoch: AtomicU64,
}

impl Granting {
    /// Stops granting (already done by the publish of the failure decision; idempotent) and
    /// says until when a grant given may run, and the highest epoch granted. With `serve_grants`' second look at `on`
    /// (both sequentially consistent), a grant is either counted here or never sent.
    pub(super) fn stop(&self) -> (u64, u64) {
        self.on.store(false, Ordering::SeqCst);
        (
            self.hold_until_ns.load(Ordering::SeqCst),
            self.granted_epoch.load(Ordering::SeqCst),
        )
    }
}

/// Renewals for the peer (`from`, at its node address) while this host is its monitor and has
/// not decided it failed (`granting`); every other request is refused.
pub(super) async fn serve_grants(
    sock: std::net::UdpSocket,
    key: [u8; 32],
    peer: IpAddr,
    identity: Arc<Identity>,
    granting: Arc<Granting>,
    max_lease: Duration,
) {
    let sock = match UdpSocket::from_std(sock) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "lease grantor socket");
            return;
        }
    };
    let mut grantor = Grantor::new(Bound::default(), max_lease, 0);
    let mut buf = [0u8; 128];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        if from.ip() != peer {
            continue;
        }
        let Ok(m) = Message::decode(&buf[..n], &key) else {
            continue;
        };
        if m.kind != Kind::Request {
            continue;
        }
        let now = monotonic_ns();
        let stopped = m.answer(Kind::Refuse, Reason::Stopped, identity.node, 0, now);
        let answer = if !granting.on.load(Ordering::SeqCst) {
            stopped
        } else {
            match grantor.request(m.epoch, Duration::from_nanos(m.value_ns), now) {
                Ok(l) => {
                    granting
                        .hold_until_ns
                        .fetch_max(grantor.hold_until_ns(), Ordering::SeqCst);
                    granting.granted_epoch.fetch_max(m.epoch, Ordering::SeqCst);
                    // Stopped meanwhile: the control loop may have read the hold before it
                    // grew, so this grant is not sent.
                    if granting.on.load(Ordering::SeqCst) {
                        m.answer(
                            Kind::Grant,
                            Reason::None,
                            identity.node,
                            l.as_nanos() as u64,
                            now,
                        )
                    } else {
                        stopped
                    }
                }
                Err(r) => m.answer(Kind::Refuse, r.into(), identity.node, 0, now),
            }
        };
        let _ = sock.send_to(&answer.encode(&key), from).await;
    }
}

/// The daemon's lease setup (`boot.lease` set).
pub(super) struct LeaseSetup {
    pub(super) key: [u8; 32],
    pub(super) status: Arc<LeaseStatus>,
    /// Whether this host grants the peer's lease now.
    pub(super) granting: Arc<Granting>,
    /// The gate loaded and verified (after the leftovers were removed), attached at every
    /// promotion.
    pub(super) prepared: Option<crate::gate::Prepared>,
    /// The gate being attached (as P is claimed), with the prepared gate coming back.
    pub(super) attaching: Option<
        tokio::task::JoinHandle<Result<(crate::gate::Prepared, Gate), crate::gate::GateError>>,
    >,
}

impl LeaseSetup {
    /// With `boot.lease`: loads the key, takes off a gate left by an earlier run (P was
    /// removed just before) and starts serving the peer's requests on the heartbeat thread.
    pub(super) fn start(
        cfg: &crate::config::Config,
        identity: &Arc<Identity>,
        heartbeat: &super::heartbeat::HeartbeatThread,
        status: Option<Arc<LeaseStatus>>,
    ) -> Result<Option<LeaseSetup>, super::DaemonError> {
        let (Some(lease), Some(status)) = (cfg.boot.lease, status) else {
            return Ok(None);
        };
        let file = cfg.witness.lease_key_file.as_ref().ok_or_else(|| {
            super::DaemonError::Lease("boot.lease needs witness.lease_key_file".into())
        })?;
        let key = crate::lease::wire::mac_key(&crate::sync::Key::load(file)?);
        let addr = SocketAddr::new(cfg.node.address.addr, cfg.witness.lease_port);
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .and_then(|s| {
            s.set_nonblocking(true)?;
            s.bind(&addr.into())?;
            Ok(s)
        })
        .map_err(|source| {
            super::DaemonError::Lease(format!("bind the lease grantor to {addr}: {source}"))
        })?;
        let granting = Arc::new(Granting::default());
        heartbeat.send(super::heartbeat::Command::Grants(Box::new(
            super::heartbeat::GrantSettings {
                sock: sock.into(),
                key,
                peer: cfg.node.peer,
                identity: identity.clone(),
                granting: granting.clone(),
                max_lease: lease.0,
            },
        )));
        Ok(Some(LeaseSetup {
            key,
            status,
            granting,
            prepared: None,
            attaching: None,
        }))
    }
}

/// The gate's pin directory: the fast path's (one bpffs mount; the names differ).
pub(super) fn gate_dir(cfg: &crate::config::Config) -> std::path::PathBuf {
    cfg.paths.bpffs_dir.clone()
}

impl super::Daemon {
    /// Once P is claimed: attaches the gate in the background (tens of milliseconds on a
    /// veth, which the claim's duplicate-address probe and the announcements need not wait
    /// for, and must not contend with for the RTNL lock), serving P for one lease from the
    /// attach - the promotion itself (a confirmed fence, a
    /// handover, a join) counts as the first grant. P served before the gate is attached is
    /// this run's legitimate primary: the gate only has to be there before any lease of it
    /// could be counted on, and the keeper asks for none before.
    pub(super) fn install_gate(&mut self) {
        // One XDP program per interface: the monitor's, detached by the takeover, goes first,
        // in the background too (the claim of P does not wait for it).
        let retiring = self.retiring.take();
        let Some(l) = self.lease.as_mut() else {
            self.retiring = retiring;
            return;
        };
        let lease = self.cfg.boot.lease.map_or(Duration::ZERO, |d| d.0);
        let cfg = crate::gate::gate_for(
            &self
                .cfg
                .addresses
                .primary
                .all()
                .iter()
                .map(|c| c.addr)
                .collect::<Vec<_>>(),
            self.cfg.heartbeat.port,
            0,
        );
        let (interface, dir) = (self.cfg.node.interface.clone(), gate_dir(&self.cfg));
        let prepared = l.prepared.take();
        l.attaching = Some(tokio::spawn(async move {
            if let Some(t) = retiring {
                let _ = t.await;
            }
            let attach = tokio::task::spawn_blocking(move || {
                let mut p = match prepared {
                    Some(p) => p,
                    None => crate::gate::prepare(&dir)?,
                };
                let g = p.attach(&interface, cfg, lease);
                g.map(|g| (p, g))
            });
            attach.await.unwrap_or_else(|e| {
                Err(crate::gate::GateError::Bpf {
                    what: "the attach task".into(),
                    source: Box::new(e),
                })
            })
        }));
    }

    /// The background attach's result: the gate, or why not (an event).
    async fn attached(&mut self) -> Option<Gate> {
        let l = self.lease.as_mut()?;
        let t = l.attaching.take()?;
        let r = match t.await {
            Ok(r) => r,
            Err(e) => Err(crate::gate::GateError::Bpf {
                what: "the attach task".into(),
                source: Box::new(e),
            }),
        };
        match r {
            Ok((p, g)) => {
                l.prepared = Some(p);
                Some(g)
            }
            Err(e) => {
                self.emit(
                    crate::event::Event::DaemonError,
                    &format!(
                        "the lease gate could not be installed ({}): P is served without the kernel's check of the lease",
                        crate::error_chain(&e)
                    ),
                );
                None
            }
        }
    }

    /// After the promotion: hands the gate to a keeper on the heartbeat thread.
    pub(super) async fn start_keeper(&mut self) {
        let Some(gate) = self.attached().await else {
            return;
        };
        let Some(l) = self.lease.as_mut() else { return };
        let (Some(witness), Some(lease)) = (self.cfg.witness.lease_peer, self.cfg.boot.lease)
        else {
            return;
        };
        let s = KeeperSettings {
            local: self.cfg.node.address.addr,
            grantors: [
                witness,
                SocketAddr::new(self.cfg.node.peer, self.cfg.witness.lease_port),
            ],
            key: l.key,
            node: self.cfg.node.id,
            epoch: self.machine.epoch(),
            lease: lease.0,
        };
        match Keeper::open(s, gate, l.status.clone()) {
            Ok(k) => self
                .heartbeat
                .send(super::heartbeat::Command::Lease(Box::new(k))),
            Err(e) => tracing::error!(error = %e, "lease keeper socket; the lease will lapse"),
        }
    }

    /// P released (or its claim failed): the keeper stops and the gate comes off.
    pub(super) async fn stop_lease(&mut self) {
        // An attach still under way finishes first, so that it cannot attach after this.
        drop(self.attached().await);
        let Some(l) = self.lease.as_mut() else { return };
        self.heartbeat.send(super::heartbeat::Command::StopLease);
        let r = match l.prepared.as_mut() {
            Some(p) => p.detach(),
            None => crate::gate::remove(&gate_dir(&self.cfg)),
        };
        if let Err(e) = r {
            self.emit(crate::event::Event::DaemonError, &crate::error_chain(&e));
        }
    }

    /// A gate left by an earlier run (its P was just removed) comes off; with `boot.lease`
    /// this run's is loaded, ready to attach at a promotion.
    pub(super) fn clear_leftover_gate(&mut self) {
        let dir = gate_dir(&self.cfg);
        let r = match self.lease.as_mut() {
            Some(l) => crate::gate::prepare(&dir).map(|p| l.prepared = Some(p)),
            None if crate::gate::installed(&dir) => crate::gate::remove(&dir),
            None => Ok(()),
        };
        if let Err(e) = r {
            self.emit(crate::event::Event::DaemonError, &crate::error_chain(&e));
        }
    }

    /// The keeper's news, as events; a revoked lease goes to the machine.
    pub(super) async fn lease_news(&mut self, n: LeaseNews) -> Result<(), super::DaemonError> {
        use crate::event::Event;
        let lease = self.cfg.boot.lease.map_or(Duration::ZERO, |d| d.0);
        match n {
            LeaseNews::Lapsed => self.emit(
                Event::LeaseLapsed,
                &format!(
                    "no grant from the monitor or the witness within {lease:?}: the kernel stops P"
                ),
            ),
            LeaseNews::Restored => {
                self.emit(Event::LeaseRestored, "a grant arrived: P is served again")
            }
            LeaseNews::GrantorLost(who) => self.emit(
                Event::WitnessLost,
                &format!(
                    "the {who} gave no lease grant for {} leases",
                    LOST_AFTER_LEASES
                ),
            ),
            LeaseNews::GrantorBack(who) => {
                tracing::info!(grantor = who, "the lease grantor answers again")
            }
            LeaseNews::ClockSuspect(who, ppm) => self.emit(
                Event::ClockRateSuspect,
                &format!(
                    "the {who}'s clock runs {ppm} ppm off this host's, beyond twice the bound"
                ),
            ),
            LeaseNews::Revoked(epoch) => {
                return self.feed(crate::role::Input::LeaseRevoked { epoch }).await;
            }
        }
        Ok(())
    }
}
