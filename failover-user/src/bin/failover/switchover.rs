//! `failover switchover`: asks the primary's daemon to hand P to the monitor; with `--wait`,
//! follows it to the end and measures the outage of P as this host sees it (ICMP echo to P
//! every millisecond, the largest gap between answers).
use std::{
    net::{IpAddr, SocketAddr},
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use failover::control;
use socket2::{Domain, Protocol, Socket, Type};

use crate::status::SocketArgs;

/// Arguments of `failover switchover`.
#[derive(clap::Args, Debug)]
pub struct SwitchoverArgs {
    /// The node to hand P to: the peer's `node.peer_name` (checked; the pair has one peer).
    #[arg(long, value_name = "NODE")]
    to: Option<String>,
    /// Wait until the peer serves P and this host is its monitor, and print the outage of P
    /// as this host sees it (pings of P every millisecond).
    #[arg(long)]
    wait: bool,
    /// With --wait: give up waiting after this long.
    #[arg(long, default_value = "30s", value_parser = crate::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    socket: SocketArgs,
}

/// Runs it: exit 0 done, 1 refused or failed, 2 on error.
pub async fn run(args: SwitchoverArgs) -> anyhow::Result<ExitCode> {
    let socket = args.socket.path()?;
    let pinger = if args.wait {
        let st = control::query_status(&socket).await?;
        let p: IpAddr = st
            .primary_address
            .parse()
            .map_err(|_| anyhow::anyhow!("the daemon's status names no primary address"))?;
        Some(Pinger::start(p)?)
    } else {
        None
    };
    let reply =
        control::send_request(&socket, &control::Request::Switchover { to: args.to }).await?;
    if !reply.ok {
        eprintln!("failover: refused: {}", reply.detail);
        return Ok(ExitCode::from(1));
    }
    println!("{}", reply.detail);
    let Some(pinger) = pinger else {
        return Ok(ExitCode::SUCCESS);
    };
    let asked = Instant::now();
    let end = asked + args.timeout;
    let outcome = loop {
        let st = control::query_status(&socket).await?;
        match st.role.as_str() {
            "monitor" => break Ok(st.peer.name),
            "primary" => break Err("the monitor did not take P over: this host serves it again"),
            _ => {}
        }
        if Instant::now() > end {
            break Err("the switchover did not settle in time (see the daemon's events)");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // A little longer, so that a gap ending after the settle is seen whole.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let gap = pinger.stop(asked);
    match outcome {
        Ok(peer) => {
            println!(
                "switchover done in {:.2} s: {peer} serves P, this host is its monitor",
                asked.elapsed().as_secs_f64()
            );
            match gap {
                Some(g) => println!(
                    "outage of P seen from this host: {:.1} ms (the longest gap between answers to pings every 1 ms)",
                    g.as_secs_f64() * 1e3
                ),
                None => println!("outage of P seen from this host: not measured (no answers)"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            eprintln!("failover: {why}");
            Ok(ExitCode::from(1))
        }
    }
}

/// ICMP echo to one address every millisecond, on threads of its own; the answers' arrival
/// times are kept.
struct Pinger {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<Instant>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pinger {
    fn start(target: IpAddr) -> anyhow::Result<Pinger> {
        let (domain, proto) = match target {
            IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
            IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
        };
        let sock = Socket::new(domain, Type::RAW, Some(proto))
            .map_err(|e| anyhow::anyhow!("an ICMP socket for --wait (root only): {e}"))?;
        sock.set_read_timeout(Some(Duration::from_millis(50)))?;
        let sock = Arc::new(sock);
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let ident = (std::process::id() & 0xffff) as u16;
        let dest: socket2::SockAddr = SocketAddr::new(target, 0).into();
        let send = {
            let (sock, stop) = (sock.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seq: u16 = 0;
                while !stop.load(Ordering::Relaxed) {
                    seq = seq.wrapping_add(1);
                    let _ = sock.send_to(&echo(target, ident, seq), &dest);
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        let recv = {
            let (sock, stop, answers) = (sock.clone(), stop.clone(), answers.clone());
            std::thread::spawn(move || {
                let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    let at = Instant::now();
                    // SAFETY: recv_from initialised the first n bytes.
                    let data: Vec<u8> = buf[..n]
                        .iter()
                        .map(|b| unsafe { b.assume_init() })
                        .collect();
                    let from_target = from.as_socket().is_some_and(|a| a.ip() == target);
                    if from_target && is_reply(target, &data, ident) {
                        answers.lock().unwrap_or_else(|p| p.into_inner()).push(at);
                    }
                }
            })
        };
        Ok(Pinger {
            stop,
            answers,
            threads: vec![send, recv],
        })
    }

    /// Stops; the longest gap between answers from the last one before `from` on.
    fn stop(self, from: Instant) -> Option<Duration> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let a = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        let first = a.iter().rposition(|t| *t <= from).unwrap_or(0);
        a[first..]
            .windows(2)
            .map(|w| w[1].duration_since(w[0]))
            .max()
    }
}

/// An echo request (ICMP for IPv4 with its checksum; ICMPv6's the kernel computes).
fn echo(target: IpAddr, ident: u16, seq: u16) -> Vec<u8> {
    let kind = if target.is_ipv4() { 8 } else { 128 };
    let mut m = vec![kind, 0, 0, 0];
    m.extend_from_slice(&ident.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(b"failover-switchover");
    if target.is_ipv4() {
        let sum = checksum(&m);
        m[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    m
}

/// Whether `data` (IPv4: with its IP header) is an echo reply with our identifier.
fn is_reply(target: IpAddr, data: &[u8], ident: u16) -> bool {
    let (icmp, kind) = if target.is_ipv4() {
        let ihl = usize::from(data.first().map_or(0, |b| b & 0x0f)) * 4;
        (data.get(ihl..).unwrap_or_default(), 0)
    } else {
        (data, 129)
    };
    icmp.len() >= 8 && icmp[0] == kind && icmp[4..6] == ident.to_be_bytes()
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_request_carries_a_valid_checksum_and_replies_are_matched() {
        let t: IpAddr = "10.0.0.1".parse().unwrap();
        let m = echo(t, 0x1234, 7);
        assert_eq!(checksum(&m), 0, "a valid checksum sums to zero");
        let mut reply = vec![0x45u8; 20];
        reply.extend_from_slice(&m);
        reply[20] = 0;
        assert!(is_reply(t, &reply, 0x1234));
        assert!(!is_reply(t, &reply, 0x4321));
        let t6: IpAddr = "fd00::1".parse().unwrap();
        let mut r6 = echo(t6, 9, 1);
        r6[0] = 129;
        assert!(is_reply(t6, &r6, 9));
    }
}
