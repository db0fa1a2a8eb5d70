//! Processes of the failover lab (docs/lab.md), each run inside a lab namespace:
//!
//! - `bmc`: a lab BMC that speaks enough Redfish for the daemon's client and really powers a
//!   lab host: Off kills every process in the host's namespace, flushes its addresses and takes
//!   its links down; On brings them back and starts the host's start command after a boot
//!   delay. It logs every power change, with CLOCK_MONOTONIC ns, as JSON lines on stdout.
//! - `service`: the demo service, UDP on P: answers "HOST COUNTER SEQ", where COUNTER is read
//!   from (and incremented in) its data directory.
//! - `client`: sends a request to P every interval and writes one JSON line per answer.
//!
//! This is the project's own lab code; Redfish interoperability is proven against
//! sushy-emulator in tests/tests/redfish.rs.
use std::{
    io::Write as _,
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::TcpListener,
};

use failover_tests::{mono_ns, signal_namespace};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn need(args: &[String], name: &str) -> String {
    arg(args, name).unwrap_or_else(|| {
        eprintln!("failover-lab: missing {name}");
        std::process::exit(2)
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("bmc") => bmc(&args),
        Some("service") => service(&args),
        Some("client") => client(&args),
        _ => {
            eprintln!("usage: failover-lab bmc|service|client ...");
            std::process::exit(2)
        }
    }
}

// ---------------------------------------------------------------- BMC

struct Host {
    ns: String,
    links: Vec<String>,
    addrs: Vec<(String, String)>,
    start: String,
    boot_delay: Duration,
    power: String,
    control: PathBuf,
}

fn ip(args: &[&str]) {
    let _ = Command::new("ip").args(args).status();
}

impl Host {
    fn power_off(&self) {
        // Every process of the host dies, as on a power cut; off means they are gone.
        signal_namespace(&self.ns, libc::SIGKILL);
        failover_tests::wait_namespace_empty(&self.ns);
        for l in &self.links {
            ip(&["-n", &self.ns, "link", "set", "dev", l, "down"]);
            ip(&["-n", &self.ns, "addr", "flush", "dev", l]);
        }
    }

    fn power_on(&self) {
        for (l, a) in &self.addrs {
            ip(&["-n", &self.ns, "addr", "add", a, "dev", l]);
        }
        for l in &self.links {
            ip(&["-n", &self.ns, "link", "set", "dev", l, "up"]);
        }
    }

    fn boot(&self) {
        let _ = Command::new("sh").args(["-c", &self.start]).spawn();
    }

    /// Extra latency per request, from the control directory (fault "bmc-slow").
    fn slow(&self) -> Duration {
        std::fs::read_to_string(self.control.join("slow_ms"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Duration::from_millis)
            .unwrap_or_default()
    }
}

fn log_event(what: &str, state: &str) {
    println!(
        "{}",
        json!({"ts_ns": mono_ns(), "bmc": what, "power_state": state})
    );
    let _ = std::io::stdout().flush();
}

fn bmc(args: &[String]) {
    let listen: SocketAddr = need(args, "--listen").parse().expect("--listen ADDR:PORT");
    let host = Host {
        ns: need(args, "--ns"),
        links: need(args, "--links")
            .split(',')
            .map(str::to_string)
            .collect(),
        addrs: need(args, "--addrs")
            .split(',')
            .filter_map(|x| x.split_once('='))
            .map(|(l, a)| (l.to_string(), a.to_string()))
            .collect(),
        start: need(args, "--start"),
        boot_delay: Duration::from_millis(
            arg(args, "--boot-delay-ms").map_or(300, |s| s.parse().expect("ms")),
        ),
        power: "On".into(),
        control: PathBuf::from(need(args, "--control")),
    };
    let name = need(args, "--name");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let l = TcpListener::bind(listen).await.expect("bind BMC");
        eprintln!("lab bmc for {name} listening on {listen}");
        let host = Arc::new(Mutex::new(host));
        loop {
            let Ok((conn, _)) = l.accept().await else {
                continue;
            };
            let host = host.clone();
            let name = name.clone();
            tokio::spawn(async move {
                let _ = serve(conn, host, &name).await;
            });
        }
    });
}

async fn serve(
    conn: tokio::net::TcpStream,
    host: Arc<Mutex<Host>>,
    name: &str,
) -> std::io::Result<()> {
    let (r, mut w) = conn.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    r.read_line(&mut line).await?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").trim_end_matches('/').to_string();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).await? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; len.min(65536)];
    r.read_exact(&mut body).await?;
    let slow = host.lock().unwrap().slow();
    if !slow.is_zero() {
        tokio::time::sleep(slow).await;
    }
    let sys = format!("/redfish/v1/Systems/{name}");
    let (status, resp): (&str, Value) = match (method.as_str(), path.as_str()) {
        ("GET", "/redfish/v1") => (
            "200 OK",
            json!({"@odata.id": "/redfish/v1/", "Systems": {"@odata.id": "/redfish/v1/Systems"}}),
        ),
        ("GET", "/redfish/v1/Systems") => {
            ("200 OK", json!({"Members": [{"@odata.id": sys.clone()}]}))
        }
        ("GET", p) if p == sys => {
            let power = host.lock().unwrap().power.clone();
            (
                "200 OK",
                json!({"@odata.id": sys, "Id": name, "Name": name, "PowerState": power,
                "Actions": {"#ComputerSystem.Reset": {"target": format!("{sys}/Actions/ComputerSystem.Reset"),
                "ResetType@Redfish.AllowableValues": ["On", "ForceOff", "ForceRestart", "GracefulRestart", "PowerCycle"]}}}),
            )
        }
        ("POST", p) if p == format!("{sys}/Actions/ComputerSystem.Reset") => {
            let t = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["ResetType"].as_str().map(str::to_string))
                .unwrap_or_default();
            match t.as_str() {
                "ForceOff" | "On" | "ForceRestart" | "GracefulRestart" | "PowerCycle" => {
                    reset(host, t);
                    ("204 No Content", Value::Null)
                }
                _ => (
                    "400 Bad Request",
                    json!({"error": {"message": format!("ResetType {t:?} not supported")}}),
                ),
            }
        }
        _ => (
            "404 Not Found",
            json!({"error": {"message": "no such resource"}}),
        ),
    };
    let body = if resp.is_null() {
        String::new()
    } else {
        resp.to_string()
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    w.write_all(head.as_bytes()).await?;
    w.write_all(body.as_bytes()).await?;
    w.shutdown().await
}

/// Applies a reset in the background: PoweringOff / PoweringOn while it changes.
fn reset(host: Arc<Mutex<Host>>, t: String) {
    std::thread::spawn(move || {
        let off = matches!(
            t.as_str(),
            "ForceOff" | "ForceRestart" | "GracefulRestart" | "PowerCycle"
        );
        let on = t != "ForceOff";
        if off {
            let mut h = host.lock().unwrap();
            if h.power != "Off" {
                h.power = "PoweringOff".into();
                log_event(&t, "PoweringOff");
                h.power_off();
                h.power = "Off".into();
                log_event(&t, "Off");
            }
        }
        if on {
            let delay = {
                let mut h = host.lock().unwrap();
                if h.power == "On" {
                    return;
                }
                h.power = "PoweringOn".into();
                log_event(&t, "PoweringOn");
                h.power_on();
                h.boot_delay
            };
            std::thread::sleep(delay);
            let mut h = host.lock().unwrap();
            h.boot();
            h.power = "On".into();
            log_event(&t, "On");
        }
    });
}

// ---------------------------------------------------------------- service

fn service(args: &[String]) {
    let bind: SocketAddr = need(args, "--bind").parse().expect("--bind ADDR:PORT");
    let name = need(args, "--name");
    let data = PathBuf::from(need(args, "--data"));
    std::fs::create_dir_all(&data).expect("data dir");
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(bind),
        socket2::Type::DGRAM,
        None,
    )
    .expect("socket");
    // Bound before P exists: only receives while this host holds P.
    sock.set_freebind(true).expect("freebind");
    sock.bind(&bind.into()).expect("bind service");
    let sock: UdpSocket = sock.into();
    // The counter lives in the data directory and is read and written on every request, so
    // that after a takeover the new primary continues from the copy it holds. Written through
    // a rename, so a copy always sees a whole value.
    let counter_file = data.join("counter");
    let tmp_file = data.join(".counter.tmp");
    let mut buf = [0u8; 256];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let counter: u64 = std::fs::read_to_string(&counter_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
            + 1;
        if std::fs::write(&tmp_file, counter.to_string()).is_ok() {
            let _ = std::fs::rename(&tmp_file, &counter_file);
        }
        let seq = String::from_utf8_lossy(&buf[..n]).trim().to_string();
        let _ = sock.send_to(format!("{name} {counter} {seq}").as_bytes(), from);
    }
}

// ---------------------------------------------------------------- client

fn client(args: &[String]) {
    let target: SocketAddr = need(args, "--target").parse().expect("--target ADDR:PORT");
    let every =
        Duration::from_millis(arg(args, "--interval-ms").map_or(5, |s| s.parse().expect("ms")));
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
