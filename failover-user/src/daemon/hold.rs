//! The floating addresses as the runtime handles them: claim (duplicate-address probe, add),
//! announce (GARP / unsolicited NA burst, and the periodic refresh for P), release, and the
//! removal of what a previous run left behind.
use std::{net::IpAddr, sync::atomic::Ordering, time::Duration};

use super::{Daemon, DaemonError, Tasks};
use crate::{
    address::{mac_string, Claim, DadSettings},
    config::Cidr,
    event::Event,
    role::{Addr, Input, Role},
};

/// What this host has on its interface, as netlink last confirmed it.
#[derive(Copy, Clone, Debug, Default)]
pub(super) struct Held {
    primary: bool,
    monitor: bool,
}

impl Held {
    fn set(&mut self, a: Addr, held: bool) {
        match a {
            Addr::Primary => self.primary = held,
            Addr::Monitor => self.monitor = held,
        }
    }

    /// The addresses held, P first.
    pub(super) fn addrs(&self) -> Vec<Addr> {
        [(Addr::Primary, self.primary), (Addr::Monitor, self.monitor)]
            .into_iter()
            .filter_map(|(a, h)| h.then_some(a))
            .collect()
    }
}

/// How often a held address is checked for a second holder (an ARP request / NS for it).
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The address's name in events.
fn which(a: Addr) -> &'static str {
    match a {
        Addr::Primary => "primary",
        Addr::Monitor => "monitor",
    }
}

impl Daemon {
    /// The addresses of `a`: M, or every primary address (the probed one first).
    pub(super) fn cidrs(&self, a: Addr) -> Vec<Cidr> {
        match a {
            Addr::Primary => self.cfg.addresses.primary.all().to_vec(),
            Addr::Monitor => vec![self.cfg.addresses.monitor],
        }
    }

    /// A daemon starts in `Joining`, holding nothing (rule 3). An address found on the
    /// interface was left by a previous run that did not shut down cleanly: remove it before
    /// joining, so that this host never answers on an address it has not claimed in this run.
    pub(super) async fn clear_leftovers(&mut self) -> Result<(), DaemonError> {
        for (a, cidr) in [Addr::Primary, Addr::Monitor]
            .into_iter()
            .flat_map(|a| self.cidrs(a).into_iter().map(move |c| (a, c)))
        {
            if self.addrs.release(cidr.addr).await? {
                self.emit(
                    Event::AddressReleased,
                    &format!(
                        "{} address {cidr} was left on {} by a previous run; removed before joining",
                        which(a),
                        self.cfg.node.interface
                    ),
                );
            }
        }
        self.clear_leftover_gate();
        Ok(())
    }

    /// Claims `a` (duplicate-address probe, then add) and announces it; the result is the
    /// machine's `Claimed` input.
    pub(super) async fn claim(&mut self, a: Addr) -> Input {
        if a == Addr::Primary
            && self.machine.role() == Role::TakingOver
            && !self.copy_fresh_enough()
        {
            return Input::Claimed { addr: a, ok: false };
        }
        let cidrs = self.cidrs(a);
        let dad = DadSettings {
            probes: self.cfg.garp.dad_probes,
            wait: self.cfg.garp.dad_wait.0,
        };
        // All of P's addresses or none: probed together, added only if no other host
        // answers for any of them.
        let ok = match self.addrs.claim_all(&cidrs, dad).await {
            Ok(Claim::Claimed) => true,
            Ok(Claim::Conflict { addr, mac }) => {
                tracing::warn!(address = %addr, holder = %mac_string(&mac),
                    "duplicate-address probe: another host answers for this address");
                false
            }
            Err(e) => {
                self.emit(Event::DaemonError, &crate::error_chain(&e));
                false
            }
        };
        if ok {
            self.held.set(a, true);
            // The first announcement first: the clients' switch-over does not wait for the
            // copy's report (it reads the store's metadata).
            self.announce(a).await;
            if a == Addr::Primary && self.machine.role() == Role::TakingOver {
                self.metrics.failovers.fetch_add(1, Ordering::Relaxed);
                self.report_served_copy();
            }
        }
        Input::Claimed { addr: a, ok }
    }

    /// Sends the first GARP / NA at once, the rest of the burst in the background, then
    /// keeps watch while the address is held: every `CHECK_INTERVAL` an ARP request / NS for
    /// it from the node address (a second holder answers, and the claim watch turns that into
    /// a contest), and for P the periodic refresh.
    ///
    /// The first one is sent before the loop goes on (RFC 5227 announces right after the
    /// claim): what follows a claim (attaching XDP to monitor, persisting the epoch) keeps
    /// this thread busy for tens of milliseconds, and a host that is still probing for the
    /// same address at a cold start must hear the announcement within its probe window.
    pub(super) async fn announce(&mut self, which: Addr) {
        let g = &self.cfg.garp;
        let (count, spacing, every) = (g.count, g.spacing.0, g.refresh.0);
        let all: Vec<IpAddr> = self.cidrs(which).iter().map(|c| c.addr).collect();
        let mut first = Ok(());
        if count > 0 {
            for addr in &all {
                if let Err(e) = self.addrs.announce(*addr, 1, Duration::ZERO).await {
                    first = Err(e);
                }
            }
        }
        let addrs = self.addrs.clone();
        let events = self.events.clone();
        let node = self.cfg.node.address.addr;
        let is_p = which == Addr::Primary;
        // While the lease has lapsed the gate drops P's announcements: expected, not an error.
        let lease = self
            .lease
            .as_ref()
            .map(|l| l.status.clone())
            .filter(|_| is_p);
        let gated = move || {
            lease.as_ref().is_some_and(|l| {
                l.active.load(Ordering::Relaxed)
                    && l.expiry_ns.load(Ordering::Relaxed) <= crate::sys::monotonic_ns()
            })
        };
        // The claim completes the role change that the burst belongs to.
        let role = if is_p { Role::Primary } else { Role::Monitor }.name();
        let epoch = self.machine.epoch() + u64::from(is_p && self.machine.role() != Role::Primary);
        let t = tokio::spawn(async move {
            let rest = async {
                first?;
                if count > 1 {
                    tokio::time::sleep(spacing).await;
                    let bursts = all.iter().map(|a| addrs.announce(*a, count - 1, spacing));
                    for r in futures_util::future::join_all(bursts).await {
                        r?;
                    }
                }
                Ok::<(), crate::address::AddressError>(())
            };
            let shown = all
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            match rest.await {
                Ok(()) => events.emit(
                    Event::GarpSent,
                    role,
                    epoch,
                    &format!("{count} announcements of {shown}, {spacing:?} apart"),
                ),
                Err(e) if gated() => tracing::warn!(error = %crate::error_chain(&e),
                    "announcement of P dropped: the lease has lapsed and the gate stops P"),
                Err(e) => events.emit(Event::DaemonError, role, epoch, &crate::error_chain(&e)),
            }
            let mut check = tokio::time::interval(CHECK_INTERVAL);
            check.reset();
            let mut refresh = (is_p && !every.is_zero()).then(|| tokio::time::interval(every));
            if let Some(r) = refresh.as_mut() {
                r.reset();
            }
            loop {
                let refresh_due = async {
                    match refresh.as_mut() {
                        Some(r) => r.tick().await,
                        None => std::future::pending().await,
                    }
                };
                let refreshing = tokio::select! {
                    _ = check.tick() => false,
                    _ = refresh_due => true,
                };
                for addr in &all {
                    let sent = if refreshing {
                        addrs.announce(*addr, 1, Duration::ZERO).await
                    } else {
                        addrs.check(*addr, node)
                    };
                    if let Err(e) = sent {
                        tracing::warn!("{}", crate::error_chain(&e));
                    }
                }
            }
        });
        Tasks::replace(&mut self.tasks.announce[which.index()], Some(t));
    }

    /// Removes `a` from the interface (absent is fine).
    /// Removes `a` (each of P's addresses) from the interface (absent is fine). It counts as
    /// released once every one of them is gone.
    pub(super) async fn release(&mut self, a: Addr) {
        // The burst, the refresh and the check stop with the address: announcing an address
        // given up would pull its traffic back from the host that holds it now.
        Tasks::replace(&mut self.tasks.announce[a.index()], None);
        let mut all_gone = true;
        for cidr in self.cidrs(a) {
            match self.addrs.release(cidr.addr).await {
                Ok(true) => self.emit(
                    Event::AddressReleased,
                    &format!("{} address {cidr}", which(a)),
                ),
                Ok(false) => {}
                Err(e) => {
                    all_gone = false;
                    self.emit(Event::DaemonError, &crate::error_chain(&e));
                }
            }
        }
        if all_gone {
            self.held.set(a, false);
        }
    }
}
