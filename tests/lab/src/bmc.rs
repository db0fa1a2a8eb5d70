//! `failover-lab bmc`: a lab BMC that speaks enough Redfish for the daemon's client and really
//! powers a lab host: Off kills every process in the host's namespace, flushes its addresses
//! and takes its links down; On brings them back and runs the host's start command after a
//! boot delay. It logs every power change, with CLOCK_MONOTONIC ns, as JSON lines on stdout.
//!
//! This is the project's own lab code; Redfish interoperability is proven against
//! sushy-emulator in tests/integration/tests/redfish.rs.
use std::{
    io::Write as _,
    net::SocketAddr,
    path::PathBuf,
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use failover_harness::{mono_ns, signal_namespace, wait_namespace_empty};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::TcpListener,
};

/// Arguments of `failover-lab bmc`.
#[derive(clap::Args, Debug)]
pub struct BmcArgs {
    /// Address to listen on (HTTP).
    #[arg(long)]
    listen: SocketAddr,
    /// The system's name (its Id and Name in Redfish).
    #[arg(long)]
    name: String,
    /// The host's network namespace.
    #[arg(long)]
    ns: String,
    /// The host's links, comma-separated: taken down at power-off.
    #[arg(long, value_delimiter = ',')]
    links: Vec<String>,
    /// The host's addresses as LINK=CIDR, comma-separated: restored at power-on.
    #[arg(long, value_delimiter = ',', value_parser = parse_link_addr)]
    addrs: Vec<(String, String)>,
    /// Shell command that boots the host (starts its processes) at power-on.
    #[arg(long)]
    start: String,
    /// Time from power-on to the start command.
    #[arg(long, default_value_t = 300)]
    boot_delay_ms: u64,
    /// Time from a power-off request to the power cut (reported Off right after): a real
    /// BMC's seconds. The host runs on meanwhile (PoweringOff).
    #[arg(long, default_value_t = 0)]
    off_delay_ms: u64,
    /// Directory of fault switches (`slow_ms`: extra latency per request; `lies`: power
    /// actions are reported done, the host is left as it is).
    #[arg(long)]
    control: PathBuf,
}

fn parse_link_addr(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(l, a)| (l.to_string(), a.to_string()))
        .ok_or_else(|| format!("{s:?}: expected LINK=CIDR"))
}

/// The powered host.
struct PoweredHost {
    ns: String,
    links: Vec<String>,
    addrs: Vec<(String, String)>,
    start: String,
    boot_delay: Duration,
    off_delay: Duration,
    power: String,
    control: PathBuf,
}

fn ip(args: &[&str]) {
    let _ = Command::new("ip").args(args).status();
}

impl PoweredHost {
    fn power_off(&self) {
        // Every process of the host dies, as on a power cut; off means they are gone.
        signal_namespace(&self.ns, libc::SIGKILL);
        wait_namespace_empty(&self.ns);
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

    /// Whether this BMC lies (fault "bmc-lies"): it reports Off without powering off.
    fn lies(&self) -> bool {
        self.control.join("lies").exists()
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

/// Serves Redfish until killed.
pub fn run(args: BmcArgs) {
    let host = PoweredHost {
        ns: args.ns,
        links: args.links,
        addrs: args.addrs,
        start: args.start,
        boot_delay: Duration::from_millis(args.boot_delay_ms),
        off_delay: Duration::from_millis(args.off_delay_ms),
        power: "On".into(),
        control: args.control,
    };
    let (listen, name) = (args.listen, args.name);
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
    host: Arc<Mutex<PoweredHost>>,
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
fn reset(host: Arc<Mutex<PoweredHost>>, t: String) {
    std::thread::spawn(move || {
        let off = matches!(
            t.as_str(),
            "ForceOff" | "ForceRestart" | "GracefulRestart" | "PowerCycle"
        );
        let on = t != "ForceOff";
        {
            // A lying BMC: the state changes, the host does not. Logged under other names,
            // so that nothing reads a power cut into it.
            let mut h = host.lock().unwrap();
            if h.lies() {
                if off && h.power != "Off" {
                    h.power = "Off".into();
                    log_event(&t, "OffReported");
                }
                if on && h.power != "On" {
                    h.power = "On".into();
                    log_event(&t, "OnReported");
                }
                return;
            }
        }
        if off {
            let delay = {
                let mut h = host.lock().unwrap();
                if h.power == "Off" || h.power == "PoweringOff" {
                    None
                } else {
                    h.power = "PoweringOff".into();
                    log_event(&t, "PoweringOff");
                    Some(h.off_delay)
                }
            };
            if let Some(d) = delay {
                // The host runs on until the power is cut; status requests are answered
                // (PoweringOff) meanwhile.
                std::thread::sleep(d);
                let mut h = host.lock().unwrap();
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
