//! Operator hooks (`on_primary`, `on_monitor`, `on_fault`): run one at a time, in the order
//! they were requested, with `ROLE`, `EPOCH` and `PEER` in the environment and a time limit.
//! Their output is logged; a failure or timeout is a `hook_failed` event.
use std::{path::PathBuf, process::Stdio, sync::Arc, time::Duration};

use tokio::{process::Command, sync::mpsc};

use crate::{
    control::Metrics,
    event::{Emitter, Event},
    role::Hook,
};

/// One queued hook run.
#[derive(Clone, Debug)]
pub struct HookRun {
    /// Which hook.
    pub hook: Hook,
    /// Role name at the time it was requested.
    pub role: &'static str,
    /// Epoch at the time it was requested.
    pub epoch: u64,
}

/// The configured hook programs.
#[derive(Clone, Debug, Default)]
pub struct HookPrograms {
    /// `hooks.on_primary`.
    pub on_primary: Option<PathBuf>,
    /// `hooks.on_monitor`.
    pub on_monitor: Option<PathBuf>,
    /// `hooks.on_fault`.
    pub on_fault: Option<PathBuf>,
    /// `hooks.timeout`.
    pub timeout: Duration,
    /// Peer name for `PEER`.
    pub peer: String,
    /// Node name for `FAILOVER_NODE`.
    pub node: String,
}

/// Hook name as in the configuration.
pub fn hook_name(h: Hook) -> &'static str {
    match h {
        Hook::OnPrimary => "on_primary",
        Hook::OnMonitor => "on_monitor",
        Hook::OnFault => "on_fault",
    }
}

/// Starts the runner task; hooks sent to the returned queue run serially.
pub fn spawn_runner(
    programs: HookPrograms,
    events: Emitter,
    metrics: Arc<Metrics>,
) -> mpsc::UnboundedSender<HookRun> {
    let (tx, mut rx) = mpsc::unbounded_channel::<HookRun>();
    tokio::spawn(async move {
        while let Some(run) = rx.recv().await {
            let program = match run.hook {
                Hook::OnPrimary => &programs.on_primary,
                Hook::OnMonitor => &programs.on_monitor,
                Hook::OnFault => &programs.on_fault,
            };
            let Some(program) = program else { continue };
            let name = hook_name(run.hook);
            match run_one(program, &programs, &run).await {
                Ok(()) => events.emit(
                    Event::HookRan,
                    run.role,
                    run.epoch,
                    &format!("{name} {} exited 0", program.display()),
                ),
                Err(why) => {
                    metrics
                        .hook_failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    events.emit(
                        Event::HookFailed,
                        run.role,
                        run.epoch,
                        &format!("{name} {}: {why}", program.display()),
                    )
                }
            }
        }
    });
    tx
}

async fn run_one(program: &PathBuf, p: &HookPrograms, run: &HookRun) -> Result<(), String> {
    let child = crate::sys::scrub_env(&mut Command::new(program))
        .env("ROLE", run.role)
        .env("EPOCH", run.epoch.to_string())
        .env("PEER", &p.peer)
        .env("FAILOVER_NODE", &p.node)
        .env("FAILOVER_HOOK", hook_name(run.hook))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(p.timeout, child).await {
        Err(_) => return Err(format!("killed after the {:?} timeout", p.timeout)),
        Ok(Err(e)) => return Err(format!("could not start: {e}")),
        Ok(Ok(out)) => out,
    };
    let hook = hook_name(run.hook);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        tracing::info!(target: "failover::hook", hook, "{line}");
    }
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        tracing::warn!(target: "failover::hook", hook, "{line}");
    }
    match out.status.code() {
        Some(0) => Ok(()),
        Some(c) => Err(format!("exit status {c}")),
        None => Err("killed by a signal".into()),
    }
}
