//! `failover-lab client`: sends a request to P every interval and writes one JSON line per
//! answer (`ts_ns`, `host`, `counter`, `seq`, `sent_ns`) on stdout.
use std::{
    io::Write as _,
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

use failover_harness::mono_ns;
use serde_json::json;

/// Arguments of `failover-lab client`.
#[derive(clap::Args, Debug)]
pub struct ClientArgs {
    /// The service (P and its port).
    #[arg(long)]
    target: SocketAddr,
    /// Time between requests, ms.
    #[arg(long, default_value_t = 5)]
    interval_ms: u64,
}

/// Asks until killed.
pub fn run(args: ClientArgs) {
    let target = args.target;
    let every = Duration::from_millis(args.interval_ms);
    let sock = UdpSocket::bind(if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .expect("client socket");
    sock.set_nonblocking(true).expect("nonblocking");
    let mut seq = 0u64;
    let mut sent = std::collections::HashMap::new();
    let mut buf = [0u8; 256];
    let mut out = std::io::stdout().lock();
    loop {
        seq += 1;
        sent.insert(seq, mono_ns());
        let _ = sock.send_to(seq.to_string().as_bytes(), target);
        let until = std::time::Instant::now() + every;
        while std::time::Instant::now() < until {
            match sock.recv_from(&mut buf) {
                Ok((n, _)) => {
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    let mut it = text.split_whitespace();
                    let (host, counter, s) = (it.next(), it.next(), it.next());
                    let s: u64 = s.and_then(|s| s.parse().ok()).unwrap_or(0);
                    let now = mono_ns();
                    let _ = writeln!(
                        out,
                        "{}",
                        json!({"ts_ns": now, "host": host, "counter": counter.and_then(|c| c.parse::<u64>().ok()),
                            "seq": s, "sent_ns": sent.remove(&s)})
                    );
                    let _ = out.flush();
                }
                Err(_) => std::thread::sleep(Duration::from_micros(200)),
            }
        }
        sent.retain(|k, _| *k + 2000 > seq);
    }
}
