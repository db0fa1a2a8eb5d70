//! The metrics endpoint: any HTTP GET gets the Prometheus text. A bounded number of scrapes at
//! once, each within a deadline (`crate::listen`).
use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use super::{ControlError, Metrics};
use crate::listen::{self, Backoff, Slots};

/// Scrapes served at once.
pub const METRICS_CONNECTIONS: usize = 4;
/// Deadline of one scrape: the request head, the answer and the close.
pub const METRICS_DEADLINE: Duration = Duration::from_secs(5);
/// The request head is read up to this size (the path does not matter).
const HEAD_MAX: usize = 8192;

/// Binds the metrics listener.
pub async fn bind_metrics(addr: std::net::SocketAddr) -> Result<TcpListener, ControlError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ControlError::Metrics { addr, source })
}

/// Serves the Prometheus text format to any HTTP GET.
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>, node: String) {
    serve_text(listener, Arc::new(move || metrics.render(&node))).await
}

/// Serves the text `render` makes (the daemon's metrics, the witness's) to any HTTP GET,
/// bounded as [`serve_metrics`] is.
pub async fn serve_text(listener: TcpListener, render: Arc<dyn Fn() -> String + Send + Sync>) {
    let mut backoff = Backoff::new("metrics endpoint");
    let slots = Slots::new(
        "metrics endpoint",
        METRICS_CONNECTIONS,
        "sent a complete request",
    );
    loop {
        let (conn, from) = listen::accept(&mut backoff, || listener.accept()).await;
        // Refused: dropping the connection closes it at once.
        let Some(slot) = slots.admit(from) else {
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(METRICS_DEADLINE, scrape(conn, slot, &*render)).await;
        });
    }
}

/// One scrape: the head (while idle: closed if a newer connection needs the slot), then the
/// answer.
async fn scrape(
    mut conn: TcpStream,
    mut slot: listen::Slot,
    render: &(dyn Fn() -> String + Send + Sync),
) -> std::io::Result<()> {
    let head = async {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < HEAD_MAX {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::select! {
        _ = slot.evicted() => return Ok(()),
        r = head => r?,
    }
    slot.busy();
    let body = render();
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(resp.as_bytes()).await?;
    conn.shutdown().await
}
