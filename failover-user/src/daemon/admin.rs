//! The operator's requests over the control socket (`control::request`), on the daemon's
//! loop: `failover maintenance on|off [--for D]`. Each is persisted in
//! `state_dir/admin.json` before it takes effect, so that it survives a restart.
use std::time::Duration;

use super::{Daemon, DaemonError};
use crate::{
    control::{MaintenanceStatus, Reply, Request},
    role::Input,
    state::{AdminState, Maintenance},
    sync::unix_ms,
};

impl Daemon {
    /// One request; its reply.
    pub(super) async fn request(&mut self, req: Request) -> Result<Reply, DaemonError> {
        match req {
            Request::Status => Ok(Reply::done("status: ask without a request")),
            Request::Maintenance { on, for_ms } => self.maintenance(on, for_ms).await,
        }
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
        };
        if let Err(e) = self.admin.store(&state) {
            return Ok(Reply::refused(format!(
                "not changed: the state file could not be written: {}",
                crate::error_chain(&e)
            )));
        }
        self.feed(Input::Maintenance { on, for_ }).await?;
        self.show_maintenance(&state);
        Ok(Reply::done(match (on, for_) {
            (true, Some(d)) => format!(
                "maintenance on for {}: no fence, no takeover",
                humantime::format_duration(d)
            ),
            (true, None) => "maintenance on until turned off: no fence, no takeover".into(),
            (false, _) => "maintenance off: failure detection armed again".into(),
        }))
    }

    /// At start: the maintenance a previous run left on, unless its `--for` ran out meanwhile.
    pub(super) async fn resume_admin(&mut self) -> Result<(), DaemonError> {
        let state = match self.admin.load() {
            Ok(s) => s,
            Err(e) => {
                // Not fatal: the daemon runs as if nothing was set, and says so.
                self.emit(
                    crate::event::Event::DaemonError,
                    &format!("{}: maintenance not resumed", crate::error_chain(&e)),
                );
                return Ok(());
            }
        };
        let Some(m) = &state.maintenance else {
            return Ok(());
        };
        let left = m
            .until_unix_ms
            .map(|until| Duration::from_millis(until.saturating_sub(unix_ms())));
        if left.is_some_and(|d| d.is_zero()) {
            let _ = self.admin.store(&AdminState::default());
            return Ok(());
        }
        self.feed(Input::Maintenance {
            on: true,
            for_: left,
        })
        .await?;
        self.show_maintenance(&state);
        Ok(())
    }

    /// After a step: a maintenance that ended by itself is cleared from the state file and
    /// the status.
    pub(super) fn settle_admin(&mut self) {
        let shown = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .maintenance
            .is_some();
        if shown && !self.machine.maintenance() {
            if let Err(e) = self.admin.store(&AdminState::default()) {
                self.emit(
                    crate::event::Event::DaemonError,
                    &format!("maintenance ended, but {}", crate::error_chain(&e)),
                );
            }
            self.show_maintenance(&AdminState::default());
        }
    }

    fn show_maintenance(&self, state: &AdminState) {
        let on = state.maintenance.is_some() && self.machine.maintenance();
        self.metrics
            .maintenance
            .store(on, std::sync::atomic::Ordering::Relaxed);
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .maintenance = state
            .maintenance
            .as_ref()
            .filter(|_| on)
            .map(|m| MaintenanceStatus {
                until_unix_ms: m.until_unix_ms,
                remaining_ms: None,
            });
    }
}
