//! The service health checks (`[[check]]`) in the running daemon: one task per check runs it
//! every `interval` and reports the result to the daemon's loop, which judges it (`fall`,
//! `rise`), shows it (status, `failover_check_up`) and acts on a change. A failed check on the
//! primary hands P to the monitor as a switchover, once per failure (refused, with the reason,
//! when the monitor could not take it); on the monitor it makes the role machine refuse
//! takeovers until the check passes again (`role/health.rs`). Nothing here runs on the
//! heartbeat thread.
use tokio::{sync::mpsc, task::JoinHandle};

use super::{monitor::Report, Daemon, DaemonError};
use crate::{
    config::{Check, CheckOn, Config},
    control::CheckStatus,
    event::Event,
    health::{Runner, Tracker},
    hooks::HookRun,
    role::{Fault, Hook, Input, Role},
};

/// One check and what is known of it.
struct CheckState {
    check: Check,
    label: String,
    tracker: Tracker,
    /// It counted in this host's role at its last run (a check that starts counting, on a
    /// promotion say, is judged afresh).
    counted: bool,
    runs: u64,
    failures: u64,
    last_error: Option<String>,
}

/// The checks, their tasks and the handover they started.
pub(super) struct Checks {
    states: Vec<CheckState>,
    /// A failed check started (or was refused) a handover: not again until all pass.
    handover_tried: bool,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Checks {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Checks {
    /// Starts one task per configured check; each reports every run as `Report::Check`.
    pub(super) fn start(
        cfg: &Config,
        reports: &mpsc::UnboundedSender<Report>,
    ) -> Result<Checks, DaemonError> {
        let runner = if cfg.checks.is_empty() {
            None
        } else {
            Some(Runner::new().map_err(DaemonError::Health)?)
        };
        let mut tasks = Vec::new();
        for (index, check) in cfg.checks.iter().enumerate() {
            let (runner, check, reports) = (runner.clone(), check.clone(), reports.clone());
            let Some(runner) = runner else { break };
            tasks.push(tokio::spawn(async move {
                let mut every = tokio::time::interval(check.interval.0);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    let result = runner.run(&check).await;
                    if reports.send(Report::Check { index, result }).is_err() {
                        return;
                    }
                }
            }));
        }
        let states = cfg
            .checks
            .iter()
            .map(|c| CheckState {
                check: c.clone(),
                label: c.label(),
                tracker: Tracker::new(c.fall, c.rise),
                counted: false,
                runs: 0,
                failures: 0,
                last_error: None,
            })
            .collect();
        Ok(Checks {
            states,
            handover_tried: false,
            tasks,
        })
    }

    /// Whether every check that counts passes.
    fn healthy(&self) -> bool {
        self.states.iter().all(|s| s.tracker.ok())
    }

    fn status(&self) -> Vec<CheckStatus> {
        self.states
            .iter()
            .map(|s| CheckStatus {
                name: s.label.clone(),
                on: match s.check.on {
                    CheckOn::Both => "both",
                    CheckOn::Primary => "primary",
                    CheckOn::Monitor => "monitor",
                }
                .into(),
                counts: s.counted,
                ok: s.tracker.ok(),
                runs: s.runs,
                failures: s.failures,
                last_error: s.last_error.clone(),
            })
            .collect()
    }
}

impl Daemon {
    /// One run of check `index` finished.
    pub(super) async fn check_result(
        &mut self,
        index: usize,
        result: Result<(), String>,
    ) -> Result<(), DaemonError> {
        let primary = self.machine.role() == Role::Primary;
        let Some(st) = self.checks.states.get_mut(index) else {
            return Ok(());
        };
        st.runs += 1;
        if result.is_err() {
            st.failures += 1;
        }
        st.last_error = result.as_ref().err().cloned();
        let counts = st.check.counts_as(primary);
        let change = if !counts {
            // Judged only in its role: a result here decides nothing.
            st.counted = false;
            st.tracker.reset();
            None
        } else {
            if !std::mem::replace(&mut st.counted, true) {
                st.tracker.reset();
            }
            st.tracker.record(result.is_ok())
        };
        let (label, fall, rise) = (st.label.clone(), st.check.fall, st.check.rise);
        self.publish_checks();
        match change {
            Some(false) => {
                let why = result.err().unwrap_or_default();
                let mut handover = false;
                let decision = if primary && !self.checks.handover_tried {
                    self.checks.handover_tried = true;
                    match self.switchover_refusal(None) {
                        Ok(()) => {
                            handover = true;
                            "handing P to the monitor (a switchover, no fence)".to_string()
                        }
                        Err(refusal) => format!("not handing P over ({refusal}); serving on"),
                    }
                } else if primary {
                    "a handover was tried already in this failure; serving on".to_string()
                } else {
                    "this host refuses takeovers until it passes".to_string()
                };
                self.emit(
                    Event::CheckFailed,
                    &format!("{label}: {why} ({fall} failed runs in a row); {decision}"),
                );
                let _ = self.hooks.send(HookRun {
                    hook: Hook::OnFault(Fault::CheckFailed),
                    role: self.machine.role().name(),
                    epoch: self.machine.epoch(),
                    done: None,
                });
                self.feed(Input::Health {
                    ok: self.checks.healthy(),
                })
                .await?;
                if handover {
                    self.feed(Input::Switchover).await?;
                }
            }
            Some(true) => {
                self.emit(
                    Event::CheckOk,
                    &format!("{label}: passes again ({rise} runs in a row)"),
                );
                if self.checks.healthy() {
                    self.checks.handover_tried = false;
                }
                self.feed(Input::Health {
                    ok: self.checks.healthy(),
                })
                .await?;
            }
            None => {
                // A reset (a role change) may have cleared the last failing check.
                let ok = self.checks.healthy();
                if ok {
                    self.checks.handover_tried = false;
                }
                if ok == self.machine.unhealthy() {
                    self.feed(Input::Health { ok }).await?;
                }
            }
        }
        Ok(())
    }

    /// The checks in the status and the metrics.
    fn publish_checks(&self) {
        let shown = self.checks.status();
        self.metrics.set_checks(
            shown
                .iter()
                .map(|c| (c.name.clone(), c.ok, c.failures))
                .collect(),
        );
        self.status.lock().unwrap_or_else(|p| p.into_inner()).checks = shown;
    }
}
