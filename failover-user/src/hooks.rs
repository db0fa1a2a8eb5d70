//! Operator hooks (`on_primary`, `on_monitor`, `on_fault`, `on_switchover`, `on_stop`): run
//! one at a time, in the order they were requested, with `ROLE`, `EPOCH`, `PEER` and, where
//! there is one, `FAILOVER_REASON` in the environment, and a time limit. Their output is
//! logged; a failure or timeout is a `hook_failed` event.
use std::{path::PathBuf, process::Stdio, sync::Arc, time::Duration};

use tokio::{process::Command, sync::mpsc};

use crate::{
    control::Metrics,
    event::{Emitter, Event},
    role::Hook,
};

/// One queued hook run.
#[derive(Debug)]
pub struct HookRun {
    /// Which hook.
    pub hook: Hook,
    /// Role name at the time it was requested.
    pub role: &'static str,
    /// Epoch at the time it was requested.
    pub epoch: u64,
    /// Told once this run finished (or was skipped): the stop waits for `on_stop` with it.
    pub done: Option<tokio::sync::oneshot::Sender<()>>,
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
    /// `hooks.on_switchover`.
    pub on_switchover: Option<PathBuf>,
    /// `hooks.on_stop`.
    pub on_stop: Option<PathBuf>,
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
        Hook::OnFault(_) => "on_fault",
        Hook::OnSwitchover(_) => "on_switchover",
        Hook::OnStop => "on_stop",
    }
}

/// `FAILOVER_REASON` of a hook run: the fault, the switchover's outcome, or the stop.
pub fn hook_reason(h: Hook) -> Option<&'static str> {
    match h {
        Hook::OnPrimary | Hook::OnMonitor => None,
        Hook::OnFault(f) => Some(f.name()),
        Hook::OnSwitchover(true) => Some("switchover_done"),
        Hook::OnSwitchover(false) => Some("switchover_failed"),
        Hook::OnStop => Some("stop"),
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
        while let Some(mut run) = rx.recv().await {
            let done = run.done.take();
            run_queued(&programs, &events, &metrics, &run).await;
            if let Some(d) = done {
                let _ = d.send(());
            }
        }
    });
    tx
}

/// Runs one queued hook, if it is configured, and reports the outcome as an event.
async fn run_queued(programs: &HookPrograms, events: &Emitter, metrics: &Metrics, run: &HookRun) {
    let program = match run.hook {
        Hook::OnPrimary => &programs.on_primary,
        Hook::OnMonitor => &programs.on_monitor,
        Hook::OnFault(_) => &programs.on_fault,
        Hook::OnSwitchover(_) => &programs.on_switchover,
        Hook::OnStop => &programs.on_stop,
    };
    let Some(program) = program else { return };
    let name = hook_name(run.hook);
    match run_one(program, programs, run).await {
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

async fn run_one(program: &PathBuf, p: &HookPrograms, run: &HookRun) -> Result<(), String> {
    let child = crate::sys::scrub_env(&mut Command::new(program))
        .env("ROLE", run.role)
        .env("EPOCH", run.epoch.to_string())
        .env("PEER", &p.peer)
        .env("FAILOVER_NODE", &p.node)
        .env("FAILOVER_HOOK", hook_name(run.hook))
        .envs(hook_reason(run.hook).map(|r| ("FAILOVER_REASON", r)))
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
