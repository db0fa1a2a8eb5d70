//! Sending heartbeat signals and judging them with the fast path: `failover probe`.
use std::{
    io,
    net::{IpAddr, SocketAddr, SocketAddrV6},
    os::fd::AsRawFd as _,
    path::PathBuf,
    time::Duration,
};

use failover_common::{Stats, ARRIVAL_SLOTS};
use socket2::{Domain, Protocol, Socket, Type};

use crate::{
    detector::{Deadlines, Outcome, Probe, ProbeBook, ProbeSummary},
    fastpath::{AttachMode, FastPath, FastPathBuilder, FastPathError},
    signal::wire::{Kind, Message},
    sys::{self, monotonic_ns},
};

/// Errors of the prober.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The fast path failed.
    #[error(transparent)]
    FastPath(#[from] FastPathError),
    /// A socket could not be set up.
    #[error("{what} for probes to {target} on {interface}")]
    Socket {
        /// What was being done.
        what: &'static str,
        /// Target address.
        target: IpAddr,
        /// Interface.
        interface: String,
        /// OS error.
        source: io::Error,
    },
    /// The options do not make sense.
    #[error("{field}: {message}")]
    Invalid {
        /// The flag or field.
        field: &'static str,
        /// What is wrong and what is expected.
        message: String,
    },
}

/// The first signal's form.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Signal {
    /// ICMP / ICMPv6 echo request, answered by the peer's kernel.
    Icmp,
    /// UDP heartbeat, answered by the peer's daemon on this port.
    Udp {
        /// The responder's port.
        port: u16,
    },
}

impl Signal {
    /// Lower-case name.
    pub fn name(&self) -> &'static str {
        match self {
            Signal::Icmp => "icmp",
            Signal::Udp { .. } => "udp",
        }
    }

    /// Mask from a probe's sequence to what the signal carries on the wire.
    pub fn wire_seq_mask(&self) -> u64 {
        match self {
            Signal::Icmp => 0xffff,
            Signal::Udp { .. } => u64::MAX,
        }
    }
}

const SOL_RAW: libc::c_int = 255;
const ICMP_FILTER: libc::c_int = 1;
const ICMP6_FILTER: libc::c_int = 1;

/// Sends heartbeat signals to one target through one interface.
#[derive(Debug)]
pub struct Prober {
    sock: Socket,
    dest: SocketAddr,
    signal: Signal,
    icmp_id: u16,
    token: u64,
    next_seq: u64,
    /// Carried in UDP heartbeats.
    epoch: u64,
}

impl Prober {
    /// Opens the socket for `signal` to `target`, bound to `interface` and, when given, to
    /// the `source` address (the daemon's node address: the peer's responders answer only it,
    /// and with several addresses on the interface the kernel might pick another one, M).
    pub fn new(
        interface: &str,
        target: IpAddr,
        signal: Signal,
        source: Option<IpAddr>,
    ) -> Result<Prober, ProbeError> {
        let err = |what| {
            let interface = interface.to_string();
            move |source| ProbeError::Socket {
                what,
                target,
                interface,
                source,
            }
        };
        let if_index = sys::if_index(interface).map_err(FastPathError::from)?;
        let domain = if target.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let sock = match (signal, target) {
            (Signal::Icmp, IpAddr::V4(_)) => Socket::new(domain, Type::RAW, Some(Protocol::ICMPV4)),
            (Signal::Icmp, IpAddr::V6(_)) => Socket::new(domain, Type::RAW, Some(Protocol::ICMPV6)),
            (Signal::Udp { .. }, _) => Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)),
        }
        .map_err(err("open socket"))?;
        sock.set_nonblocking(true)
            .map_err(err("set non-blocking"))?;
        sock.bind_device(Some(interface.as_bytes()))
            .map_err(err("bind to device"))?;
        match signal {
            // Replies are consumed by XDP; the raw socket would otherwise get a copy of every
            // ICMP message on the host. Filter them all out of its queue.
            Signal::Icmp => block_all_icmp(&sock, target).map_err(err("set ICMP filter"))?,
            Signal::Udp { .. } => {}
        }
        let from: SocketAddr = match (source, target) {
            (Some(a), _) => (a, 0).into(),
            (None, IpAddr::V4(_)) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
            (None, IpAddr::V6(_)) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        if source.is_some() || matches!(signal, Signal::Udp { .. }) {
            sock.bind(&from.into()).map_err(err("bind"))?;
        }
        let port = match signal {
            Signal::Icmp => 0,
            Signal::Udp { port } => port,
        };
        let dest = match target {
            IpAddr::V6(a) if a.is_unicast_link_local() => {
                SocketAddr::V6(SocketAddrV6::new(a, port, 0, if_index))
            }
            a => SocketAddr::new(a, port),
        };
        let mut icmp_id = 0;
        while icmp_id == 0 {
            icmp_id = rand::random();
        }
        Ok(Prober {
            sock,
            dest,
            signal,
            icmp_id,
            token: rand::random(),
            next_seq: 1,
            epoch: 0,
        })
    }

    /// The epoch carried in UDP heartbeats from now on (the sender's persisted epoch).
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// The ICMP identifier this prober uses.
    pub fn icmp_id(&self) -> u16 {
        self.icmp_id
    }

    /// The UDP token this prober uses.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// The signal kind.
    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// The address probed (the only source whose replies count).
    pub fn target(&self) -> IpAddr {
        self.dest.ip()
    }

    /// Enables this prober's signal on `b`, so that the fast path counts its replies.
    pub fn enable(&self, b: FastPathBuilder) -> FastPathBuilder {
        match self.signal {
            Signal::Icmp => b.icmp(true),
            Signal::Udp { port } => b.udp_port(port),
        }
    }

    /// Registers this prober as stream `index` of `fp`: its replies (this token, this ICMP
    /// identifier, from the target) are stamped in that stream's ring.
    pub fn register(&self, fp: &mut FastPath, index: u32) -> Result<(), FastPathError> {
        fp.add_stream(index, self.token, self.icmp_id, self.target())
    }

    /// Sends the next probe; a failed send is logged and returned as a probe that cannot be
    /// answered.
    pub fn send(&mut self) -> Probe {
        let seq = self.next_seq;
        self.next_seq += 1;
        let pkt: Vec<u8> = match (self.signal, self.dest) {
            (Signal::Icmp, SocketAddr::V4(_)) => {
                echo_request(8, self.icmp_id, seq as u16, self.token, true)
            }
            (Signal::Icmp, SocketAddr::V6(_)) => {
                echo_request(128, self.icmp_id, seq as u16, self.token, false)
            }
            (Signal::Udp { .. }, _) => Message {
                kind: Kind::Heartbeat,
                role: 0,
                flags: 0,
                token: self.token,
                seq,
                epoch: self.epoch,
                node: 0,
            }
            .encode()
            .to_vec(),
        };
        let sent_ns = monotonic_ns();
        let send_failed = match self.sock.send_to(&pkt, &self.dest.into()) {
            Ok(_) => false,
            Err(e) => {
                tracing::debug!(seq, dest = %self.dest, error = %e, "probe send failed");
                true
            }
        };
        Probe {
            seq,
            sent_ns,
            send_failed,
        }
    }
}

fn block_all_icmp(sock: &Socket, target: IpAddr) -> io::Result<()> {
    let fd = sock.as_raw_fd();
    let rc = match target {
        IpAddr::V4(_) => {
            let mask: u32 = !0;
            // SAFETY: valid fd and a u32 option value, as ICMP_FILTER expects.
            unsafe { libc::setsockopt(fd, SOL_RAW, ICMP_FILTER, (&mask as *const u32).cast(), 4) }
        }
        IpAddr::V6(_) => {
            let mask = [!0u32; 8];
            // SAFETY: valid fd and a struct icmp6_filter-sized value.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_ICMPV6,
                    ICMP6_FILTER,
                    mask.as_ptr().cast(),
                    32,
                )
            }
        }
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // Nothing is ever read from the socket; keep whatever slips through small.
    sock.set_recv_buffer_size(1)
}

/// Builds an ICMP (v4, with checksum) or ICMPv6 (kernel fills the checksum) echo request.
fn echo_request(ty: u8, id: u16, seq: u16, token: u64, checksum: bool) -> Vec<u8> {
    use bytes::BufMut as _;
    let mut p = Vec::with_capacity(16);
    p.put_u8(ty);
    p.put_u8(0); // code
    p.put_u16(0); // checksum, filled below
    p.put_u16(id);
    p.put_u16(seq);
    p.put_u64(token);
    if checksum {
        let c = inet_checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// The Internet checksum (RFC 1071).
pub fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += w as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Options of `failover probe`.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Interface to attach to and send through.
    pub interface: String,
    /// Address to signal.
    pub target: IpAddr,
    /// ICMP or UDP.
    pub signal: Signal,
    /// Time between probes.
    pub interval: Duration,
    /// Deadline of one probe.
    pub timeout: Duration,
    /// How long after the deadline a reply is late rather than lost.
    pub late_window: Duration,
    /// Stop after this many probes (`None`: until interrupted).
    pub count: Option<u64>,
    /// Where to pin the maps (`None`: no pins).
    pub pin_dir: Option<PathBuf>,
    /// Leave the pins after exit.
    pub keep_pins: bool,
}

impl ProbeOptions {
    /// Checks the options; errors name the flag.
    pub fn validate(&self) -> Result<Deadlines, ProbeError> {
        let invalid = |field, message: String| Err(ProbeError::Invalid { field, message });
        if self.interval.is_zero() {
            return invalid("--interval", "must be greater than zero".into());
        }
        if self.timeout.is_zero() {
            return invalid("--timeout", "must be greater than zero".into());
        }
        if self.count == Some(0) {
            return invalid("--count", "must be at least 1".into());
        }
        let window = self.timeout + self.late_window;
        let in_flight = crate::detector::probes_in_flight(window, self.interval);
        if in_flight >= ARRIVAL_SLOTS as u128 {
            return invalid(
                "--late-window",
                format!(
                    "timeout + late window ({window:?}) spans {in_flight} probes at interval {:?}; \
                     at most {} may be in flight: shorten the window or lengthen the interval",
                    self.interval,
                    ARRIVAL_SLOTS - 1
                ),
            );
        }
        Ok(Deadlines {
            timeout_ns: self.timeout.as_nanos() as u64,
            late_window_ns: self.late_window.as_nanos() as u64,
            wire_seq_mask: self.signal.wire_seq_mask(),
        })
    }
}

/// What a probe run measured.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// Per-outcome totals and RTTs.
    pub summary: ProbeSummary,
    /// Fast-path counters at the end.
    pub stats: Stats,
    /// How XDP attached.
    pub mode: Option<AttachMode>,
}

/// Runs probes until `count` or until `stop` resolves; calls `each` for every judged probe in
/// send order.
pub async fn run(
    opts: &ProbeOptions,
    stop: impl std::future::Future<Output = ()>,
    mut each: impl FnMut(&Probe, &Outcome),
) -> Result<ProbeReport, ProbeError> {
    let deadlines = opts.validate()?;
    sys::require_caps("failover probe", sys::CAPS_DAEMON).map_err(FastPathError::from)?;
    let mut prober = Prober::new(&opts.interface, opts.target, opts.signal, None)?;
    let b = FastPath::builder(&opts.interface)
        .pin_dir(opts.pin_dir.clone())
        .keep_pins(opts.keep_pins);
    let mut fp = prober.enable(b).build()?;
    prober.register(&mut fp, 0)?;
    tracing::info!(interface = %opts.interface, target = %opts.target,
        signal = opts.signal.name(), xdp_mode = fp.mode().map(|m| m.name()).unwrap_or("none"),
        "probing");

    let mut book = ProbeBook::new(deadlines);
    let mut summary = ProbeSummary::default();
    let mut ticker = tokio::time::interval(opts.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    let mut sent = 0u64;
    let mut sending = true;
    let poll_every = opts.timeout.min(opts.interval);
    loop {
        let judged = book.poll(monotonic_ns(), |seq| fp.arrival(0, seq).map(Some))?;
        for (p, o) in &judged {
            summary.add(o);
            each(p, o);
        }
        if !sending && book.outstanding() == 0 {
            break;
        }
        tokio::select! {
            _ = ticker.tick(), if sending => {
                book.sent(prober.send());
                sent += 1;
                if opts.count.is_some_and(|c| sent >= c) {
                    sending = false;
                }
            }
            _ = tokio::time::sleep(poll_every), if !sending => {}
            _ = &mut stop, if sending => {
                sending = false;
            }
        }
    }
    Ok(ProbeReport {
        summary,
        stats: fp.stats()?,
        mode: fp.mode(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_known_packet() {
        // Echo request id 0x1234 seq 1, no payload: checksum computed by hand.
        let p = echo_request(8, 0x1234, 1, 0, true);
        assert_eq!(
            inet_checksum(&p),
            0,
            "a packet with its checksum sums to zero"
        );
        assert_eq!(&p[4..8], &[0x12, 0x34, 0, 1]);
    }

    #[test]
    fn validation_names_the_flag() {
        let mut o = ProbeOptions {
            interface: "lo".into(),
            target: "127.0.0.1".parse().unwrap(),
            signal: Signal::Icmp,
            interval: Duration::from_millis(10),
            timeout: Duration::from_millis(5),
            late_window: Duration::from_secs(1),
            count: Some(3),
            pin_dir: None,
            keep_pins: false,
        };
        assert!(o.validate().is_ok());
        o.interval = Duration::ZERO;
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("--interval"));
        o.interval = Duration::from_micros(100);
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("--late-window"));
        o.interval = Duration::from_millis(10);
        o.count = Some(0);
        assert!(o.validate().unwrap_err().to_string().starts_with("--count"));
    }
}
