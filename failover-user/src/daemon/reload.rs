//! Operator signals while the daemon runs: SIGHUP reloads the configuration, and the link
//! coming back re-announces what this host holds.
use super::{start::policy, Daemon};
use crate::{
    config::{needs_restart, Config},
    control,
    event::Event,
    fence::Fencer,
    hooks::{self, HookPrograms},
    logging,
    role::Role,
};

impl Daemon {
    /// SIGHUP: reads the configuration file again. Fields that are safe to change live
    /// (hooks, boot and join timeouts, GARP, witnesses, the log filter, the metrics
    /// endpoint) take effect with `config_reloaded`; a changed field that needs a restart is
    /// refused with `config_reload_refused` naming it, and nothing changes. Everything that
    /// can fail is tried before anything is applied.
    pub(super) async fn reload(&mut self) {
        self.notifier.reloading();
        self.reload_config().await;
        self.notifier.reloaded();
    }

    async fn reload_config(&mut self) {
        let file = self.cfg.file.clone();
        let new = match Config::load(&file).and_then(|c| c.preflight().map(|()| c)) {
            Ok(c) => c,
            Err(e) => return self.refuse(&crate::error_chain(&e)),
        };
        let changed = self.cfg.changed_fields(&new);
        if changed.is_empty() {
            self.emit(Event::ConfigReloaded, "nothing changed");
            return;
        }
        let restart: Vec<&str> = changed
            .iter()
            .map(String::as_str)
            .filter(|f| needs_restart(f))
            .collect();
        if !restart.is_empty() {
            return self.refuse(&format!(
                "{} cannot change while the daemon runs (restart it to apply)",
                restart.join(", ")
            ));
        }
        let fencer = match Fencer::from_config(&new) {
            Ok(f) => f,
            Err(e) => return self.refuse(&crate::error_chain(&e)),
        };
        let metrics = if new.control.metrics != self.cfg.control.metrics {
            match new.control.metrics {
                Some(addr) => match control::bind_metrics(addr).await {
                    Ok(l) => Some(Some(l)),
                    Err(e) => return self.refuse(&crate::error_chain(&e)),
                },
                None => Some(None),
            }
        } else {
            None
        };
        // Nothing below can fail.
        if new.log_level != self.cfg.log_level {
            // Removed from the file: back to the command line's filter.
            if let Err(e) = logging::set_level(new.log_level.as_deref()) {
                tracing::warn!("{e}");
            }
        }
        if let Some(listener) = metrics {
            if let Some(t) = self.metrics_task.take() {
                t.abort();
            }
            self.metrics_task = listener.map(|l| {
                tokio::spawn(control::serve_metrics(
                    l,
                    self.metrics.clone(),
                    new.node.name.clone(),
                ))
            });
        }
        if changed.iter().any(|f| f.starts_with("hooks.")) {
            // The old runner finishes the hooks already queued, then ends.
            self.hooks = hooks::spawn_runner(
                HookPrograms::from_config(&new),
                self.events.clone(),
                self.metrics.clone(),
            );
        }
        let witnesses_changed = new.witness.addresses != self.cfg.witness.addresses;
        self.fencer = fencer;
        self.machine.set_policy(policy(&new));
        self.cfg = new;
        if witnesses_changed {
            self.reopen_witnesses().await;
        }
        self.emit(
            Event::ConfigReloaded,
            &format!("changed: {}", changed.join(", ")),
        );
    }

    fn refuse(&self, why: &str) {
        self.emit(
            Event::ConfigReloadRefused,
            &format!("{why}; running on unchanged"),
        );
    }

    /// New witnesses: a probing monitor is reopened with them at once, unless a failure
    /// decision is under way (its self-check must ask the witnesses its monitor probes) or no
    /// monitor runs; then they apply when monitoring next starts.
    async fn reopen_witnesses(&mut self) {
        self.witnesses_stale = true;
        if self.monitoring && self.machine.role() == Role::Monitor && !self.machine.suspicious() {
            self.stop_monitor();
            if let Err(e) = self.start_monitoring().await {
                self.emit(Event::DaemonError, &crate::error_chain(&e));
            }
        }
    }

    /// The interface got its carrier back (or lost it).
    pub(super) async fn on_carrier(&mut self, up: bool) {
        if !up {
            tracing::warn!(interface = %self.cfg.node.interface, "carrier lost");
            return;
        }
        tracing::info!(interface = %self.cfg.node.interface, "carrier back");
        // Probes to P (and the witnesses) would wait up to a second for the kernel's next
        // neighbour solicitation: ask again now.
        match self.addrs.flush_unresolved_neighbours().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(entries = n, "unresolved neighbour entries flushed"),
            Err(e) => tracing::warn!(error = %crate::error_chain(&e), "neighbour flush"),
        }
        // Neighbours may have flushed or moved their entries for our addresses meanwhile.
        for a in self.held.addrs() {
            self.announce(a).await;
        }
    }
}

impl HookPrograms {
    /// The hooks of a configuration.
    pub fn from_config(cfg: &Config) -> HookPrograms {
        HookPrograms {
            on_primary: cfg.hooks.on_primary.clone(),
            on_monitor: cfg.hooks.on_monitor.clone(),
            on_fault: cfg.hooks.on_fault.clone(),
            on_switchover: cfg.hooks.on_switchover.clone(),
            on_stop: cfg.hooks.on_stop.clone(),
            timeout: cfg.hooks.timeout.0,
            peer: cfg.node.peer_name.clone(),
            node: cfg.node.name.clone(),
        }
    }
}
