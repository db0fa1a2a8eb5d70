//! Service health checks (`[[check]]`): one run of a check (a TCP connect, an HTTP GET, a
//! program), and the judgement of the runs (`fall` failures in a row make it failed, `rise`
//! passes in a row make it pass again). The daemon runs them in tasks of its own, never on the
//! thread that answers heartbeats (`daemon/health.rs`).
use std::{process::Stdio, sync::Arc};

use tokio::process::Command;

use crate::config::Check;

/// Judges the runs of one check. It starts passing (as keepalived's scripts do).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracker {
    fall: u32,
    rise: u32,
    ok: bool,
    /// Runs in a row that disagree with `ok`.
    streak: u32,
}

impl Tracker {
    /// A passing check that fails after `fall` failures in a row and passes again after
    /// `rise` passes in a row.
    pub fn new(fall: u32, rise: u32) -> Tracker {
        Tracker {
            fall: fall.max(1),
            rise: rise.max(1),
            ok: true,
            streak: 0,
        }
    }

    /// Whether it passes.
    pub fn ok(&self) -> bool {
        self.ok
    }

    /// Records one run; returns the new state when it changed.
    pub fn record(&mut self, passed: bool) -> Option<bool> {
        if passed == self.ok {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.ok { self.fall } else { self.rise };
        if self.streak < needed {
            return None;
        }
        self.ok = passed;
        self.streak = 0;
        Some(passed)
    }

    /// Back to passing, as at start.
    pub fn reset(&mut self) {
        self.ok = true;
        self.streak = 0;
    }
}

/// What the checks share: the HTTP client.
#[derive(Clone, Debug)]
pub struct Runner {
    http: reqwest::Client,
}

impl Runner {
    /// A runner; the HTTP client speaks plain `http://` only (the configuration refuses
    /// `https://`), follows no redirect and keeps no connection.
    pub fn new() -> Result<Runner, String> {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("health check HTTP client: {e}"))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| format!("health check HTTP client: {e}"))?;
        Ok(Runner { http })
    }

    /// Runs `check` once within its `timeout`: Ok when it passed, else what went wrong.
    pub async fn run(&self, check: &Check) -> Result<(), String> {
        let limit = check.timeout.0;
        let work = async {
            if let Some(addr) = check.tcp {
                tokio::net::TcpStream::connect(addr)
                    .await
                    .map(drop)
                    .map_err(|e| format!("connect to {addr}: {e}"))
            } else if let Some(url) = &check.http {
                let r = self
                    .http
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| format!("GET {url}: {}", crate::error_chain(&e)))?;
                if r.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("GET {url}: {}", r.status()))
                }
            } else if let Some(program) = &check.command {
                run_command(program).await
            } else {
                Err("no target".into())
            }
        };
        tokio::time::timeout(limit, work)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {limit:?}")))
    }
}

/// Runs a check program: exit 0 passes; otherwise the exit status and the last line of its
/// output. Killed when the caller stops waiting.
async fn run_command(program: &std::path::Path) -> Result<(), String> {
    let out = crate::sys::scrub_env(&mut Command::new(program))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("{}: could not start: {e}", program.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let text = [&out.stderr[..], &out.stdout[..]]
        .iter()
        .map(|b| String::from_utf8_lossy(b).trim().to_string())
        .find(|t| !t.is_empty())
        .unwrap_or_default();
    let last: String = text
        .lines()
        .last()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect();
    Err(format!(
        "{} exited {}{}",
        program.display(),
        out.status
            .code()
            .map_or("by a signal".to_string(), |c| c.to_string()),
        if last.is_empty() {
            String::new()
        } else {
            format!(": {last}")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_and_rise_count_runs_in_a_row() {
        let mut t = Tracker::new(3, 2);
        assert!(t.ok());
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None, "a pass breaks the streak");
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(false), "three in a row");
        assert!(!t.ok());
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(true), "two in a row");
        t.record(false);
        t.reset();
        assert!(t.ok());
        assert_eq!(t.record(false), None, "reset clears the streak");
    }

    fn check(text: &str) -> Check {
        toml::from_str(text).expect("check parses")
    }

    #[tokio::test]
    async fn tcp_http_and_command_checks_pass_and_fail() {
        let r = Runner::new().unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        // A one-request HTTP server: 200 on /ok, 503 otherwise.
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let status = if req.starts_with("GET /ok ") {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    )
                    .await;
            }
        });
        assert_eq!(r.run(&check(&format!("tcp = \"{addr}\""))).await, Ok(()));
        assert_eq!(
            r.run(&check(&format!("http = \"http://{addr}/ok\""))).await,
            Ok(())
        );
        let e = r
            .run(&check(&format!("http = \"http://{addr}/down\"")))
            .await
            .unwrap_err();
        assert!(e.contains("503"), "{e}");
        server.abort();
        let e = r.run(&check("tcp = \"127.0.0.1:1\"")).await.unwrap_err();
        assert!(e.contains("127.0.0.1:1"), "{e}");
        assert_eq!(r.run(&check("command = \"/bin/true\"")).await, Ok(()));
        let e = r.run(&check("command = \"/bin/false\"")).await.unwrap_err();
        assert!(e.contains("exited 1"), "{e}");
    }
}
