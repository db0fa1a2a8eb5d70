//! `failover respond`: answer UDP heartbeats, as the daemon does on P.
use std::{
    net::IpAddr,
    process::ExitCode,
    sync::{atomic::Ordering, Arc},
};

use failover::signal::{
    responder::{Identity, Responder},
    wire::Kind,
};

use crate::{parse_addr, shutdown_signal};

/// Arguments of `failover respond`.
#[derive(clap::Args, Debug)]
pub struct RespondArgs {
    /// UDP port to listen on.
    #[arg(long, short = 'p')]
    port: u16,
    /// Address to bind; the default listens on every IPv4 and IPv6 address. Bind the
    /// probed address itself on hosts with several addresses, so replies come from it.
    #[arg(long, default_value = "::", value_parser = parse_addr)]
    bind: IpAddr,
    /// Node id carried in replies.
    #[arg(long, default_value_t = 0)]
    node_id: u32,
}

/// Answers heartbeats until SIGINT or SIGTERM.
pub async fn run(args: RespondArgs) -> anyhow::Result<ExitCode> {
    let identity = Arc::new(Identity {
        node: args.node_id,
        ..Default::default()
    });
    let r = Responder::bind(args.bind, args.port, identity, &[Kind::Heartbeat])?;
    tracing::info!(addr = %r.local_addr(), "answering heartbeats");
    let counters = r.counters.clone();
    tokio::select! {
        res = r.serve() => res?,
        _ = shutdown_signal() => {}
    }
    tracing::info!(
        answered = counters.answered.load(Ordering::Relaxed),
        ignored = counters.ignored.load(Ordering::Relaxed),
        "responder stopped"
    );
    Ok(ExitCode::SUCCESS)
}
