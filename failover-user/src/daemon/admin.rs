//! The operator's requests over the control socket (`control::request`), on the daemon's
//! loop: `failover maintenance on|off [--for D]`, `failover standby on|off`, `failover
//! switchover`. Each is persisted in
//! `state_dir/admin.json` before it takes effect, so that it survives a restart.
use std::time::Duration;

use super::{Daemon, DaemonError};
use crate::{
    control::{MaintenanceStatus, Reply, Request},
    role::Input,
    state::{AdminState, Maintenance},
    sync::unix_ms,
};

/// The monitor counts as there when it asked P something this recently (its heartbeats, or
/// at least its epoch probe once a second).
const PEER_HEARD_WITHIN: Duration = Duration::from_secs(2);

impl Daemon {
    /// One request; its reply.
    pub(super) async fn request(&mut self, req: Request) -> Result<Reply, DaemonError> {
        match req {
            Request::Status => Ok(Reply::done("status: ask without a request")),
            Request::Maintenance { on, for_ms } => self.maintenance(on, for_ms).await,
            Request::Switchover { to } => self.switchover(to).await,
            Request::Standby { on } => self.standby(on).await,
        }
    }

    /// `failover standby on|off`, persisted before it takes effect. A primary goes into
    /// standby only when its monitor can take P (the switchover's conditions).
    async fn standby(&mut self, on: bool) -> Result<Reply, DaemonError> {
        if on == self.machine.standby() {
            return Ok(Reply::done(if on {
                "already in standby"
            } else {
                "not in standby"
            }));
        }
        if on {
            if let Err(why) = self.machine.may_enter_standby() {
                return Ok(Reply::refused(why));
            }
            if self.machine.role() == crate::role::Role::Primary {
                if let Err(why) = self.switchover_refusal(None) {
                    return Ok(Reply::refused(format!(
                        "this host is primary and would hand P to its monitor, but {why}"
                    )));
                }
            }
        }
        let mut state = self.admin_state();
        state.standby = on;
        if let Err(e) = self.admin.store(&state) {
            return Ok(Reply::refused(format!(
                "not changed: the state file could not be written: {}",
                crate::error_chain(&e)
            )));
        }
        let was = self.machine.role();
        self.feed(Input::Standby { on }).await?;
        Ok(Reply::done(if on {
            format!(
                "standby on (was {}): holding nothing, fencing nobody; the peer serves alone",
                was.name()
            )
        } else {
            "standby off: joining the pair again".into()
        }))
    }

    /// The operator's settings as they stand now (what the state file should say).
    fn admin_state(&self) -> AdminState {
        let maintenance = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .maintenance
            .as_ref()
            .map(|m| Maintenance {
                until_unix_ms: m.until_unix_ms,
            });
        AdminState {
            maintenance,
            standby: self.machine.standby(),
        }
    }

    /// `failover switchover`: refused unless the monitor can take P at once: this host is
    /// primary, the monitor was heard lately, its copy is within `sync.max_age`, and with
    /// `boot.lease` the witness grants (it keeps the new primary's lease and arbitrates).
    async fn switchover(&mut self, to: Option<String>) -> Result<Reply, DaemonError> {
        if let Err(why) = self.switchover_refusal(to.as_deref()) {
            return Ok(Reply::refused(why));
        }
        self.feed(Input::Switchover).await?;
        Ok(Reply::done(format!(
            "P released for {}: it takes P at its first missed heartbeat; this host rejoins as its monitor",
            self.cfg.node.peer_name
        )))
    }

    pub(super) fn switchover_refusal(&self, to: Option<&str>) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        self.machine.may_switch_over()?;
        let peer = &self.cfg.node.peer_name;
        if let Some(to) = to.filter(|t| *t != peer.as_str()) {
            return Err(format!("{to:?} is not this pair's peer ({peer:?})"));
        }
        if self.machine.maintenance() {
            return Err("this host is in maintenance: turn it off first".into());
        }
        let now = crate::sys::monotonic_ns();
        let heard = self
            .primary_counters
            .last_request_ns
            .load(Ordering::Relaxed);
        let ago = Duration::from_nanos(now.saturating_sub(heard));
        if heard == 0 || ago > PEER_HEARD_WITHIN {
            return Err(format!(
                "the monitor ({peer}) was not heard on P within {PEER_HEARD_WITHIN:?}: it may not be there to take P"
            ));
        }
        if let (Some(c), Some(max)) = (&self.copier, self.cfg.sync.as_ref().and_then(|s| s.max_age))
        {
            let served = c.served_unix_ms.load(Ordering::Relaxed);
            if served == 0 {
                return Err(format!(
                    "the monitor ({peer}) has completed no copy of the data from this host since it started; with sync.max_age it would refuse to take P"
                ));
            }
            let age = Duration::from_millis(unix_ms().saturating_sub(served));
            if age > max.0 {
                return Err(format!(
                    "the monitor's copy is {} old, above sync.max_age ({})",
                    humantime::format_duration(Duration::from_millis(age.as_millis() as u64)),
                    humantime::format_duration(max.0)
                ));
            }
        }
        if let (Some(l), Some(lease)) = (&self.lease, self.cfg.boot.lease) {
            let last = l.status.last_grant_ns[crate::lease::WITNESS].load(Ordering::Relaxed);
            let lost_after = lease.0 * super::lease::LOST_AFTER_LEASES;
            if last == 0 || Duration::from_nanos(now.saturating_sub(last)) > lost_after {
                return Err(
                    "the witness grants no lease: with boot.lease it keeps the new primary's lease and arbitrates a later failure; bring it back first"
                        .into(),
                );
            }
        }
        Ok(())
    }

    async fn maintenance(&mut self, on: bool, for_ms: Option<u64>) -> Result<Reply, DaemonError> {
        if !on && for_ms.is_some() {
            return Ok(Reply::refused("--for goes with `maintenance on` only"));
        }
        if on {
            if let Err(why) = self.machine.may_enter_maintenance() {
                return Ok(Reply::refused(why));
            }
        }
        let for_ = for_ms.map(Duration::from_millis);
        let state = AdminState {
            maintenance: on.then(|| Maintenance {
                until_unix_ms: for_ms.map(|ms| unix_ms().saturating_add(ms)),
            }),
            ..self.admin_state()
        };
        if let Err(e) = self.admin.store(&state) {
            return Ok(Reply::refused(format!(
                "not changed: the state file could not be written: {}",
                crate::error_chain(&e)
            )));
        }
        // Shown before the step, so that the step's `settle_admin` finds nothing to undo.
        self.show_maintenance(state.maintenance.as_ref());
        self.feed(Input::Maintenance { on, for_ }).await?;
        Ok(Reply::done(match (on, for_) {
            (true, Some(d)) => format!(
                "maintenance on for {}: no fence, no takeover",
                humantime::format_duration(d)
            ),
            (true, None) => "maintenance on until turned off: no fence, no takeover".into(),
            (false, _) => "maintenance off: failure detection armed again".into(),
        }))
    }

    /// At start: the standby and the maintenance a previous run left on (a maintenance
    /// unless its `--for` ran out meanwhile).
    pub(super) async fn resume_admin(&mut self) -> Result<(), DaemonError> {
        let state = match self.admin.load() {
            Ok(s) => s,
            Err(e) => {
                // Not fatal: the daemon runs as if nothing was set, and says so.
                self.emit(
                    crate::event::Event::DaemonError,
                    &format!(
                        "{}: standby and maintenance not resumed",
                        crate::error_chain(&e)
                    ),
                );
                return Ok(());
            }
        };
        if state.standby {
            self.feed(Input::Standby { on: true }).await?;
        }
        let Some(m) = &state.maintenance else {
            return Ok(());
        };
        let left = m
            .until_unix_ms
            .map(|until| Duration::from_millis(until.saturating_sub(unix_ms())));
        if left.is_some_and(|d| d.is_zero()) {
            let rest = AdminState {
                maintenance: None,
                standby: state.standby,
            };
            if let Err(e) = self.admin.store(&rest) {
                self.emit(
                    crate::event::Event::DaemonError,
                    &format!(
                        "maintenance over while stopped, but {}",
                        crate::error_chain(&e)
                    ),
                );
            }
            return Ok(());
        }
        self.show_maintenance(Some(m));
        self.feed(Input::Maintenance {
            on: true,
            for_: left,
        })
        .await?;
        Ok(())
    }

    /// After a step: a maintenance that ended by itself is cleared from the state file and
    /// the status.
    pub(super) fn settle_admin(&mut self) {
        let shown = self
            .metrics
            .maintenance
            .load(std::sync::atomic::Ordering::Relaxed);
        if shown && !self.machine.maintenance() {
            let rest = AdminState {
                maintenance: None,
                standby: self.machine.standby(),
            };
            if let Err(e) = self.admin.store(&rest) {
                self.emit(
                    crate::event::Event::DaemonError,
                    &format!("maintenance ended, but {}", crate::error_chain(&e)),
                );
            }
            self.show_maintenance(None);
        }
    }

    /// The maintenance in force (`None`: none) in the metric and the status.
    fn show_maintenance(&self, m: Option<&Maintenance>) {
        self.metrics
            .maintenance
            .store(m.is_some(), std::sync::atomic::Ordering::Relaxed);
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .maintenance = m.map(|m| MaintenanceStatus {
            until_unix_ms: m.until_unix_ms,
            remaining_ms: None,
        });
    }
}
