//! `control_request`: what the control plane reads from outside, through the real servers and
//! client on loopback and a Unix socket.
//!
//! The control socket's server reads no request at all (every connection gets the status as
//! one JSON line), so the bytes fed from outside are:
//! - mode bit 0 clear: a request to the Prometheus endpoint (`serve_metrics`): its bounded
//!   request-head reader. Check: every request, however malformed, gets one complete
//!   `200 OK` whose Content-Length is the body's length.
//! - mode bit 0 set: the status line read back by `failover status` (`query_status`) from
//!   whatever answers on the control socket. Check: no panic; a decoded status re-encodes
//!   to JSON that decodes to the same status.
#![no_main]

use std::{
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::Duration,
};

use failover::control::{query_status, serve_metrics, Metrics, Status};
use failover_fuzz::{runtime, scratch, write_seeds};
use libfuzzer_sys::fuzz_target;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream, UnixListener},
};

/// The metrics endpoint, served on loopback by a task of our runtime.
fn metrics_addr() -> std::net::SocketAddr {
    static A: OnceLock<std::net::SocketAddr> = OnceLock::new();
    *A.get_or_init(|| {
        runtime().block_on(async {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let a = l.local_addr().unwrap();
            tokio::spawn(serve_metrics(
                l,
                Arc::new(Metrics::default()),
                "fuzz".into(),
            ));
            a
        })
    })
}

/// A Unix socket that stands in for the daemon's control socket.
fn status_socket() -> &'static (UnixListener, PathBuf) {
    static S: OnceLock<(UnixListener, PathBuf)> = OnceLock::new();
    S.get_or_init(|| {
        let p = scratch("control").join("control.sock");
        let l = runtime().block_on(async { UnixListener::bind(&p).unwrap() });
        (l, p)
    })
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let full = Status::default();
    vec![
        (
            "metrics-get",
            b"\x00GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("metrics-partial", b"\x00GET /".to_vec()),
        (
            "status-default",
            [
                &[1u8][..],
                serde_json::to_string(&full).unwrap().as_bytes(),
                b"\n",
            ]
            .concat(),
        ),
        ("status-garbage", b"\x01{\"role\":".to_vec()),
    ]
}

fuzz_target!(
    init: {
        write_seeds(&seeds());
    },
    |data: &[u8]| {
        let Some((&mode, rest)) = data.split_first() else {
            return;
        };
        if mode & 1 == 0 {
            let addr = metrics_addr();
            runtime().block_on(async {
                let mut c = TcpStream::connect(addr).await.unwrap();
                let _ = c.write_all(rest).await;
                let _ = c.shutdown().await;
                let mut resp = Vec::new();
                tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut resp))
                    .await
                    .expect("the metrics endpoint hung")
                    .expect("read the metrics answer");
                let resp = String::from_utf8(resp).expect("a text answer");
                let (head, body) = resp.split_once("\r\n\r\n").expect("a complete answer");
                assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .expect("Content-Length")
                    .parse()
                    .unwrap();
                assert_eq!(len, body.len());
            });
            return;
        }
        let (l, path) = status_socket();
        runtime().block_on(async {
            let server = async {
                let (mut c, _) = l.accept().await.unwrap();
                let _ = c.write_all(rest).await;
                let _ = c.shutdown().await;
            };
            let (got, ()) = tokio::join!(query_status(path), server);
            if let Ok(s) = got {
                let again: Status = serde_json::from_str(&serde_json::to_string(&s).unwrap())
                    .expect("a decoded status re-encodes");
                assert_eq!(again, s);
            }
        });
    }
);
