//! `cargo xtask bench-xdp`: the fast path's cost per frame against a pass-only XDP program
//! (targets in docs/design.md), in two measures:
//!
//! - in the kernel through BPF_PROG_TEST_RUN with `repeat`, on the frame kinds that matter: a
//!   counted UDP heartbeat reply (the heaviest path), a counted ICMP echo reply, a reply with a
//!   foreign token, and unrelated UDP and TCP traffic;
//! - end to end on a veth pair ([`veth_throughput`]): the packets per second a receiver takes
//!   with no program, the fast path, or the pass-only program attached to its veth.
//!
//! The figures and how to read them: docs/performance.md ("XDP cost per frame").
use std::{
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use failover::fastpath::{AttachMode, FastPath};
use failover_common::wire;
use failover_harness::{
    frames::{echo, frame, heartbeat, udp, L3, SRC4},
    veth, NetNs,
};

use crate::bench::machine;
use serde_json::json;

const PORT: u16 = 7788;
const ID: u16 = 0x4242;
const TOKEN: u64 = 0x0123_4567_89ab_cdef;

/// Runs the bench: `rounds` measurements of `repeat` runs per frame kind.
pub fn run(repeat: u32, rounds: usize) -> Result<()> {
    anyhow::ensure!(rounds > 0, "--rounds must be at least 1");
    let mut fp = FastPath::detached()
        .icmp(true)
        .udp_port(PORT)
        .build()
        .context("load the XDP program")?;
    fp.add_stream(0, TOKEN, ID, std::net::Ipv4Addr::from(SRC4).into())?;
    let v4 = L3::v4();
    let cases = [
        (
            "udp heartbeat reply, counted",
            frame(
                &v4,
                None,
                17,
                &udp(PORT, &heartbeat(wire::KIND_HEARTBEAT_REPLY, TOKEN, 1)),
            ),
        ),
        (
            "icmp echo reply, counted",
            frame(&v4, None, 1, &echo(0, ID, 1, TOKEN)),
        ),
        (
            "udp reply, foreign token",
            frame(
                &v4,
                None,
                17,
                &udp(PORT, &heartbeat(wire::KIND_HEARTBEAT_REPLY, 7, 1)),
            ),
        ),
        (
            "udp, other port, not ours",
            frame(
                &v4,
                None,
                17,
                &udp(PORT + 1, &heartbeat(wire::KIND_HEARTBEAT_REPLY, TOKEN, 1)),
            ),
        ),
        ("tcp, not ours", frame(&v4, None, 6, &[0; 20])),
    ];
    let (cores, cpu, kernel) = machine();
    println!(
        "XDP cost per frame, BPF_PROG_TEST_RUN x {repeat}, median of {rounds} rounds; {cores} cores, {cpu}, kernel {kernel}"
    );
    println!(
        "{:<32} {:>10} {:>10} {:>7}",
        "frame", "ours ns", "pass ns", "ratio"
    );
    let mut out = Vec::new();
    for (name, f) in &cases {
        let mut ours = Vec::new();
        let mut base = Vec::new();
        for _ in 0..rounds {
            let (o, b, _) = fp.cost(f, repeat)?;
            ours.push(o.as_nanos() as f64);
            base.push(b.as_nanos() as f64);
        }
        ours.sort_by(|a, b| a.total_cmp(b));
        base.sort_by(|a, b| a.total_cmp(b));
        let (o, b) = (ours[rounds / 2], base[rounds / 2]);
        println!("{name:<32} {o:>10.1} {b:>10.1} {:>7.2}", o / b.max(1.0));
        out.push(json!({"frame": name, "ours_ns": o, "pass_ns": b, "ratio": o / b.max(1.0)}));
    }
    drop(fp);
    let veth = veth_throughput(rounds)?;
    println!(
        "{}",
        json!({"repeat": repeat, "rounds": rounds, "cores": cores, "cpu": cpu, "kernel": kernel, "cases": out, "veth": veth})
    );
    Ok(())
}

/// The sender's namespace; a run deletes what a killed run left of it.
const TX_NS: &str = "fo-xdpb-tx";
/// The receiver's namespace, where the programs are attached.
const RX_NS: &str = "fo-xdpb-rx";
/// The sender's end of the veth pair, and its address.
const TX_IF: &str = "xdpb-tx";
const TX_ADDR: [u8; 4] = [10, 251, 0, 1];
/// The receiver's end, and its address.
const RX_IF: &str = "xdpb-rx";
const RX_ADDR: [u8; 4] = [10, 251, 0, 2];
/// The receiver's port for the unrelated traffic ("discard").
const SINK_PORT: u16 = 9;
/// Frames the sender hands over per `sendmmsg` call.
const BATCH: usize = 64;
/// How long a program is attached before the window starts (driver-mode attach on a veth
/// takes tens of milliseconds; the counters settle after it).
const WARMUP: Duration = Duration::from_millis(500);
/// How long each measurement window is.
const WINDOW: Duration = Duration::from_secs(2);

/// What is attached to the receiver's veth during a window.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Attached {
    Nothing,
    FastPath,
    PassOnly,
}

impl Attached {
    const ALL: [Attached; 3] = [Attached::Nothing, Attached::FastPath, Attached::PassOnly];

    fn name(self) -> &'static str {
        match self {
            Attached::Nothing => "no program",
            Attached::FastPath => "fast path",
            Attached::PassOnly => "pass-only",
        }
    }
}

/// The two namespaces joined by a veth pair (`TX_IF` in `TX_NS`, `RX_IF` in `RX_NS`); both
/// are deleted on drop (the harness's `NetNs`), with the pair.
struct Link {
    tx: NetNs,
    rx: NetNs,
    /// Bound to the receiver's `SINK_PORT` and never read (see [`unrelated_udp`]).
    _sink: std::net::UdpSocket,
}

impl Link {
    fn new() -> Link {
        for ns in [TX_NS, RX_NS] {
            // Left by a run that was killed before its guards ran.
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        let tx = NetNs::named(TX_NS);
        let rx = NetNs::named(RX_NS);
        let cidr = |a: [u8; 4]| format!("{}/24", std::net::Ipv4Addr::from(a));
        veth(&tx, TX_IF, &cidr(TX_ADDR), &rx, RX_IF, &cidr(RX_ADDR));
        let sink = rx.udp_socket((std::net::Ipv4Addr::from(RX_ADDR), SINK_PORT).into());
        Link {
            tx,
            rx,
            _sink: sink,
        }
    }

    /// The receiver's `rx_packets` (its veth's statistics, through `ip -s -j`: sysfs would
    /// show this namespace's interfaces, not the receiver's) and when it was read (the middle
    /// of the call).
    fn rx_packets(&self) -> Result<(Instant, u64)> {
        let before = Instant::now();
        let out = Command::new("ip")
            .args(["-n", RX_NS, "-s", "-j", "link", "show", "dev", RX_IF])
            .output()
            .context("run ip -s link")?;
        let after = Instant::now();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("ip -s -j link: {}", String::from_utf8_lossy(&out.stderr)))?;
        let packets = v[0]["stats64"]["rx"]["packets"]
            .as_u64()
            .context("no stats64.rx.packets from ip -s -j link")?;
        Ok((before + (after - before) / 2, packets))
    }

    /// Attaches `what` to the receiver's veth, as the daemon attaches the fast path (driver
    /// mode, else generic); detached when the returned value is dropped.
    fn attach(&self, what: Attached) -> Result<Option<(FastPath, AttachMode)>> {
        if what == Attached::Nothing {
            return Ok(None);
        }
        let attached = self.rx.run_in(move || -> Result<(FastPath, AttachMode)> {
            if what == Attached::FastPath {
                // As the monitor runs it: UDP heartbeats and ICMP counted, one stream.
                let mut fp = FastPath::builder(RX_IF)
                    .pin_dir(None)
                    .icmp(true)
                    .udp_port(PORT)
                    .build()?;
                fp.add_stream(0, TOKEN, ID, std::net::Ipv4Addr::from(TX_ADDR).into())?;
                let mode = fp.mode().context("attached without a mode")?;
                Ok((fp, mode))
            } else {
                let mut fp = FastPath::detached().build()?;
                let mode = fp.attach_baseline(RX_IF)?;
                Ok((fp, mode))
            }
        })?;
        Ok(Some(attached))
    }
}

/// A thread that sends `frame` from the sender's veth as fast as it can (an AF_PACKET socket
/// bypassing the qdisc, `BATCH` frames per `sendmmsg`), on the last CPU. The receiver's
/// softirq runs on the sending CPU too (veth hands frames to the receiving stack, or to its
/// NAPI when XDP is attached, on the CPU that transmits), so the rate measures the whole
/// per-frame path, sender included. Stopped and joined on drop.
struct Sender {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<u64>>>,
}

impl Sender {
    fn start(link: &Link, frame: Vec<u8>) -> Result<Sender> {
        let (fd, ifindex) = link.tx.run_in(|| -> Result<(OwnedFd, i32)> {
            // SAFETY: plain socket(2); the fd is owned at once.
            let raw =
                unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
            if raw < 0 {
                bail!("socket(AF_PACKET): {}", std::io::Error::last_os_error());
            }
            // SAFETY: a fresh fd, owned by nobody else.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            let one: libc::c_int = 1;
            // SAFETY: an int option of the right size.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    libc::PACKET_QDISC_BYPASS,
                    std::ptr::addr_of!(one).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                bail!("PACKET_QDISC_BYPASS: {}", std::io::Error::last_os_error());
            }
            let name = std::ffi::CString::new(TX_IF)?;
            // SAFETY: a NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            if ifindex == 0 {
                bail!("{TX_IF}: {}", std::io::Error::last_os_error());
            }
            Ok((fd, ifindex as i32))
        })?;
        let cpu = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || send_loop(&fd, ifindex, &frame, cpu, &stop))
        };
        Ok(Sender {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread; the frames it sent.
    fn finish(mut self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => bail!("the sender thread panicked"),
            None => Ok(0),
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn send_loop(
    fd: &OwnedFd,
    ifindex: i32,
    frame: &[u8],
    cpu: usize,
    stop: &AtomicBool,
) -> Result<u64> {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays inside it for cpu < CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        // Best effort: an unpinned sender only adds noise.
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
    // SAFETY: sockaddr_ll is plain data.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = (libc::ETH_P_IP as u16).to_be();
    to.sll_ifindex = ifindex;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&frame[..6]);
    let mut iov = libc::iovec {
        iov_base: frame.as_ptr() as *mut libc::c_void,
        iov_len: frame.len(),
    };
    // SAFETY: mmsghdr is plain data; every message points at the same frame and address,
    // which outlive the loop.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
        .map(|_| {
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = std::ptr::addr_of_mut!(to).cast();
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            m.msg_hdr.msg_iov = std::ptr::addr_of_mut!(iov);
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: BATCH valid message headers.
        let n = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
        if n > 0 {
            sent += n as u64;
            continue;
        }
        let e = std::io::Error::last_os_error();
        // A full queue (ENOBUFS) or a transient error: go on; anything else ends the bench.
        if !matches!(
            e.raw_os_error(),
            Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR)
        ) {
            bail!("sendmmsg: {e}");
        }
    }
    Ok(sent)
}

/// A UDP datagram unrelated to the fast path, from port 40000 to `SINK_PORT`, in a 60-byte
/// Ethernet frame to the receiver's MAC, IPv4 header checksum set. A socket is bound there and
/// never read: once its buffer is full, the receiver's stack drops each datagram at the
/// socket, after the whole IP and UDP receive path. (Nothing listening would make the stack
/// look up a route for an ICMP port unreachable for every datagram, most of them then
/// suppressed by the rate limit: a cost that says nothing about XDP.)
fn unrelated_udp(dst_mac: [u8; 6], src_mac: [u8; 6]) -> Vec<u8> {
    let payload = [0u8; 18];
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + 8 + payload.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&TX_ADDR);
    ip.extend_from_slice(&RX_ADDR);
    let mut sum: u32 = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&SINK_PORT.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&payload);
    f
}

fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    anyhow::ensure!(parts.len() == 6, "MAC address {s:?}");
    for (b, p) in mac.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).with_context(|| format!("MAC address {s:?}"))?;
    }
    Ok(mac)
}

/// The end-to-end measure: a veth pair between `fo-xdpb-tx` and `fo-xdpb-rx`, unrelated UDP
/// sent as fast as one CPU can, and the receiver's `rx_packets` rate over `WINDOW` with nothing,
/// the fast path, or the pass-only program attached to the receiving veth (the order rotated
/// every round), `rounds` rounds; prints the medians and the ratios and returns them as JSON.
/// The namespaces are deleted on every way out (guards; SIGINT and SIGTERM included).
pub fn veth_throughput(rounds: usize) -> Result<serde_json::Value> {
    crate::lab::catch_interrupts();
    let link = Link::new();
    let frame = unrelated_udp(
        parse_mac(&link.rx.mac(RX_IF))?,
        parse_mac(&link.tx.mac(TX_IF))?,
    );
    let sender = Sender::start(&link, frame)?;
    let mut pps: Vec<Vec<f64>> = vec![Vec::new(); Attached::ALL.len()];
    let mut modes: Vec<Option<AttachMode>> = vec![None; Attached::ALL.len()];
    let sleep = crate::lab::pause;
    let (cores, cpu, kernel) = machine();
    println!(
        "veth throughput, unrelated UDP (60-byte frames) {TX_NS} -> {RX_NS}, {} s windows, median of {rounds} rounds; {cores} cores, {cpu}, kernel {kernel}",
        WINDOW.as_secs_f64()
    );
    for round in 0..rounds {
        for k in 0..Attached::ALL.len() {
            let i = (round + k) % Attached::ALL.len();
            let what = Attached::ALL[i];
            let attached = link.attach(what)?;
            if let Some((_, mode)) = &attached {
                modes[i] = Some(*mode);
            }
            sleep(WARMUP)?;
            let (t0, c0) = link.rx_packets()?;
            sleep(WINDOW)?;
            let (t1, c1) = link.rx_packets()?;
            if let Some((fp, _)) = &attached {
                if what == Attached::FastPath {
                    // Unrelated traffic must not even reach the counters (docs/fastpath.md).
                    let seen = fp.stats()?.seen;
                    anyhow::ensure!(seen == 0, "the fast path saw {seen} unrelated frames");
                }
            }
            drop(attached);
            pps[i].push(c1.saturating_sub(c0) as f64 / (t1 - t0).as_secs_f64());
        }
    }
    let sent = sender.finish()?;
    anyhow::ensure!(sent > 0, "the sender sent nothing");
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let med: Vec<f64> = pps.iter_mut().map(median).collect();
    let none = med[0];
    println!(
        "{:<12} {:>8} {:>12} {:>10} {:>14}",
        "attached", "mode", "kpps", "ratio", "ns per frame"
    );
    let mut rows = Vec::new();
    for (i, what) in Attached::ALL.iter().enumerate() {
        let mode = modes[i].map_or("-", |m| m.name());
        let ratio = med[i] / none.max(1.0);
        // The time one frame takes end to end, and what the program adds to it.
        let ns = 1e9 / med[i].max(1.0);
        let extra = ns - 1e9 / none.max(1.0);
        println!(
            "{:<12} {mode:>8} {:>12.1} {ratio:>10.3} {ns:>7.1} ({extra:+.1})",
            what.name(),
            med[i] / 1e3,
        );
        rows.push(json!({"attached": what.name(), "mode": mode, "pps": med[i],
            "all_pps": pps[i], "ratio_to_none": ratio, "ns_per_frame": ns, "extra_ns": extra}));
    }
    println!(
        "fast path / no program: {:.3}; fast path / pass-only: {:.3}",
        med[1] / none.max(1.0),
        med[1] / med[2].max(1.0)
    );
    drop(link);
    Ok(
        json!({"frame_bytes": 60, "window_s": WINDOW.as_secs_f64(), "rounds": rounds,
        "rows": rows, "fast_path_over_none": med[1] / none.max(1.0),
        "fast_path_over_pass_only": med[1] / med[2].max(1.0)}),
    )
}
