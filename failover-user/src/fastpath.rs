//! The XDP fast path: load, pin, configure, attach, and read its maps.
//!
//! ```no_run
//! # async fn f() -> Result<(), failover::fastpath::FastPathError> {
//! use failover::fastpath::FastPath;
//! let fp = FastPath::builder("eth0").icmp(true).build()?;
//! let stats = fp.stats()?;
//! # Ok(()) }
//! ```
use std::{
    io,
    net::IpAddr,
    path::{Path, PathBuf},
};

use aya::{
    maps::{Array, HashMap, MapData, MapError, PerCpuArray},
    programs::{ProgramError, TestRun as _, TestRunOptions, Xdp, XdpMode},
    Ebpf, EbpfLoader,
};
use failover_common::{
    Arrival, FastPathConfig, PeerKey, PeerRecord, Stats, Stream, ARRIVAL_SLOTS, FLAG_ICMP,
    FLAG_PASS_COUNTED, FLAG_UDP, MAP_ARRIVALS, MAP_CONFIG, MAP_NAMES, MAP_PEERS, MAP_STATS,
    MAP_STREAMS, MAX_STREAMS, PROGRAM_NAME,
};

use crate::sys::{self, SysError};

/// The XDP object, built by `build.rs` from `failover-ebpf`.
pub(crate) static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/failover"));

/// Default directory for the pinned maps.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/failover";

/// Errors of the fast path.
#[derive(Debug, thiserror::Error)]
pub enum FastPathError {
    /// Host setup (root, bpffs, interface).
    #[error(transparent)]
    Sys(#[from] SysError),
    /// The object could not be loaded (maps created, BTF parsed).
    #[error("loading the XDP object")]
    Load(#[source] Box<aya::EbpfError>),
    /// The program was refused or could not be found; includes the verifier log.
    #[error("XDP program {PROGRAM_NAME}: {what}")]
    Program {
        /// What was being done.
        what: &'static str,
        /// aya's error (with the verifier log for load failures).
        source: Box<ProgramError>,
    },
    /// A map operation failed.
    #[error("map {map}: {what}")]
    Map {
        /// Map name.
        map: &'static str,
        /// What was being done.
        what: &'static str,
        /// aya's error.
        source: MapError,
    },
    /// The object lacks a map.
    #[error("map {0} missing from the XDP object")]
    MissingMap(&'static str),
    /// Pinning failed.
    #[error("pin {}", path.display())]
    Pin {
        /// Where.
        path: PathBuf,
        /// aya's error.
        source: aya::pin::PinError,
    },
    /// Removing a stale pin failed.
    #[error("remove stale pin {}", path.display())]
    Unpin {
        /// Where.
        path: PathBuf,
        /// OS error.
        source: io::Error,
    },
    /// Neither driver nor generic mode attached.
    #[error("attach XDP to {interface}: driver mode: {driver}; generic mode: {generic}")]
    Attach {
        /// Interface.
        interface: String,
        /// Driver-mode error.
        driver: Box<ProgramError>,
        /// Generic-mode error.
        generic: Box<ProgramError>,
    },
}

/// How the program ended up attached.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Native XDP in the driver.
    Driver,
    /// Generic (SKB) XDP.
    Generic,
}

impl AttachMode {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            AttachMode::Driver => "driver",
            AttachMode::Generic => "generic",
        }
    }
}

/// Builder for [`FastPath`].
#[derive(Debug, Clone)]
pub struct FastPathBuilder {
    interface: Option<String>,
    pin_dir: Option<PathBuf>,
    icmp: bool,
    udp_port: Option<u16>,
    pass_counted: bool,
    keep_pins: bool,
}

impl FastPathBuilder {
    /// Pin the maps under `dir` (default [`DEFAULT_PIN_DIR`]); `None` disables pinning.
    pub fn pin_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.pin_dir = dir;
        self
    }

    /// Count ICMP / ICMPv6 echo replies of the streams.
    pub fn icmp(mut self, yes: bool) -> Self {
        self.icmp = yes;
        self
    }

    /// Count UDP heartbeat replies coming from this port.
    pub fn udp_port(mut self, port: u16) -> Self {
        self.udp_port = Some(port);
        self
    }

    /// Pass counted replies to the stack instead of consuming them.
    pub fn pass_counted(mut self, yes: bool) -> Self {
        self.pass_counted = yes;
        self
    }

    /// Leave the pins in place when the [`FastPath`] is dropped.
    pub fn keep_pins(mut self, yes: bool) -> Self {
        self.keep_pins = yes;
        self
    }

    fn config(&self) -> FastPathConfig {
        let mut flags = 0;
        if self.icmp {
            flags |= FLAG_ICMP;
        }
        if self.udp_port.is_some() {
            flags |= FLAG_UDP;
        }
        if self.pass_counted {
            flags |= FLAG_PASS_COUNTED;
        }
        FastPathConfig {
            flags,
            udp_port: self.udp_port.unwrap_or(0) as u32,
        }
    }

    /// Loads, pins, configures and (with an interface) attaches the program.
    pub fn build(self) -> Result<FastPath, FastPathError> {
        sys::require_caps("loading the XDP fast path", sys::CAPS_XDP)?;
        let if_index = match &self.interface {
            Some(name) => Some(sys::if_index(name)?),
            None => None,
        };
        sys::raise_memlock();
        let log_level: u8 = if tracing::enabled!(target: "failover_ebpf", tracing::Level::DEBUG) {
            4
        } else {
            3
        };
        let mut ebpf = EbpfLoader::new()
            .override_global(aya_log::LEVEL, &log_level, false)
            .load(OBJECT)
            .map_err(|e| FastPathError::Load(Box::new(e)))?;
        let logger = start_logger(&mut ebpf);
        let mut fp = FastPath {
            ebpf,
            mode: None,
            pinned: Vec::new(),
            keep_pins: self.keep_pins,
            logger,
        };
        fp.set_config(&self.config())?;
        if let Some(dir) = &self.pin_dir {
            fp.pin(dir)?;
        }
        let prog = fp.program_mut()?;
        prog.load().map_err(|source| FastPathError::Program {
            what: "load (verifier)",
            source: Box::new(source),
        })?;
        if let (Some(name), Some(idx)) = (&self.interface, if_index) {
            fp.mode = Some(attach(fp.program_mut()?, name, idx)?);
        }
        Ok(fp)
    }
}

fn attach(prog: &mut Xdp, interface: &str, idx: u32) -> Result<AttachMode, FastPathError> {
    match prog.attach_to_if_index(idx, XdpMode::Driver) {
        Ok(_) => Ok(AttachMode::Driver),
        Err(driver) => match prog.attach_to_if_index(idx, XdpMode::Skb) {
            Ok(_) => {
                tracing::info!(%interface, error = %driver,
                    "driver-mode XDP refused; attached in generic mode");
                Ok(AttachMode::Generic)
            }
            Err(generic) => Err(FastPathError::Attach {
                interface: interface.to_string(),
                driver: Box::new(driver),
                generic: Box::new(generic),
            }),
        },
    }
}

/// Forwards aya-log records from the program into `log` (and so into tracing), when a tokio
/// runtime is there to drive it.
fn start_logger(ebpf: &mut Ebpf) -> Option<tokio::task::JoinHandle<()>> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let logger = match aya_log::EbpfLogger::init(ebpf) {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(error = %e, "no aya-log ring in the object");
            return None;
        }
    };
    let _guard = handle.enter();
    // SAFETY: the logger owns the ring buffer's fd and keeps it open until it is dropped, which
    // happens only when this AsyncFd is dropped.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
    };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(error = %e, "cannot poll the aya-log ring; XDP log lines are lost");
            return None;
        }
    };
    Some(handle.spawn(async move {
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    }))
}

/// A loaded (and usually attached) fast path. Dropping it detaches the program and, unless
/// told to keep them, removes its pins.
pub struct FastPath {
    ebpf: Ebpf,
    mode: Option<AttachMode>,
    pinned: Vec<PathBuf>,
    keep_pins: bool,
    logger: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastPath")
            .field("mode", &self.mode)
            .field("pinned", &self.pinned)
            .finish_non_exhaustive()
    }
}

/// Converts an address into the map key: IPv4 as IPv4-mapped IPv6.
pub fn peer_key(addr: IpAddr) -> PeerKey {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

fn map_err(map: &'static str, what: &'static str) -> impl FnOnce(MapError) -> FastPathError {
    move |source| FastPathError::Map { map, what, source }
}

impl FastPath {
    /// A builder for the fast path on `interface`, pinned under [`DEFAULT_PIN_DIR`].
    pub fn builder(interface: &str) -> FastPathBuilder {
        FastPathBuilder {
            interface: Some(interface.to_string()),
            pin_dir: Some(PathBuf::from(DEFAULT_PIN_DIR)),
            ..Self::detached()
        }
    }

    /// A builder that loads the program without attaching or pinning it (frame tests).
    pub fn detached() -> FastPathBuilder {
        FastPathBuilder {
            interface: None,
            pin_dir: None,
            icmp: false,
            udp_port: None,
            pass_counted: false,
            keep_pins: false,
        }
    }

    /// How the program is attached; `None` when it is not.
    pub fn mode(&self) -> Option<AttachMode> {
        self.mode
    }

    /// The pinned map paths.
    pub fn pins(&self) -> &[PathBuf] {
        &self.pinned
    }

    fn program_mut(&mut self) -> Result<&mut Xdp, FastPathError> {
        let prog = self
            .ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(FastPathError::Program {
                what: "find in object",
                source: Box::new(ProgramError::NotLoaded),
            })?;
        prog.try_into().map_err(|source| FastPathError::Program {
            what: "not an XDP program",
            source: Box::new(source),
        })
    }

    fn map(&self, name: &'static str) -> Result<&aya::maps::Map, FastPathError> {
        self.ebpf.map(name).ok_or(FastPathError::MissingMap(name))
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, FastPathError> {
        self.ebpf
            .map_mut(name)
            .ok_or(FastPathError::MissingMap(name))
    }

    /// Replaces any pins left by an earlier process with this one's maps.
    fn pin(&mut self, dir: &Path) -> Result<(), FastPathError> {
        sys::ensure_bpffs_dir(dir)?;
        for name in MAP_NAMES {
            let path = dir.join(name);
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(path = %path.display(), "replaced a stale pin"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(FastPathError::Unpin { path, source }),
            }
            self.map(name)?
                .pin(&path)
                .map_err(|source| FastPathError::Pin {
                    path: path.clone(),
                    source,
                })?;
            self.pinned.push(path);
        }
        Ok(())
    }

    /// Writes the configuration map.
    pub fn set_config(&mut self, cfg: &FastPathConfig) -> Result<(), FastPathError> {
        let mut a: Array<&mut MapData, FastPathConfig> =
            Array::try_from(self.map_mut(MAP_CONFIG)?).map_err(map_err(MAP_CONFIG, "open"))?;
        a.set(0, cfg, 0).map_err(map_err(MAP_CONFIG, "write"))
    }

    /// Adds probe stream `index` (below `MAX_STREAMS`): replies carrying `token` (and, for
    /// ICMP, identifier `icmp_id`) from `src` are counted and stamped in the stream's ring.
    pub fn add_stream(
        &mut self,
        index: u32,
        token: u64,
        icmp_id: u16,
        src: IpAddr,
    ) -> Result<(), FastPathError> {
        debug_assert!(index < MAX_STREAMS, "stream {index} out of range");
        let mut m: HashMap<&mut MapData, u64, Stream> =
            HashMap::try_from(self.map_mut(MAP_STREAMS)?).map_err(map_err(MAP_STREAMS, "open"))?;
        let stream = Stream {
            index,
            icmp_id: u32::from(icmp_id),
            src: peer_key(src),
        };
        m.insert(token, stream, 0)
            .map_err(map_err(MAP_STREAMS, "insert"))
    }

    /// Withdraws the stream of `token`: its replies are rejected from now on.
    pub fn remove_stream(&mut self, token: u64) -> Result<(), FastPathError> {
        let mut m: HashMap<&mut MapData, u64, Stream> =
            HashMap::try_from(self.map_mut(MAP_STREAMS)?).map_err(map_err(MAP_STREAMS, "open"))?;
        match m.remove(&token) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(map_err(MAP_STREAMS, "remove")(e)),
        }
    }

    /// Stream `stream`'s arrival slot for sequence `seq` (whatever reply last used it).
    pub fn arrival(&self, stream: u32, seq: u64) -> Result<Arrival, FastPathError> {
        let a: Array<&MapData, Arrival> =
            Array::try_from(self.map(MAP_ARRIVALS)?).map_err(map_err(MAP_ARRIVALS, "open"))?;
        let slot =
            (stream & (MAX_STREAMS - 1)) * ARRIVAL_SLOTS + ((seq as u32) & (ARRIVAL_SLOTS - 1));
        a.get(&slot, 0).map_err(map_err(MAP_ARRIVALS, "read"))
    }

    /// What the fast path recorded about replies from `addr`.
    pub fn peer(&self, addr: IpAddr) -> Result<Option<PeerRecord>, FastPathError> {
        let m: HashMap<&MapData, PeerKey, PeerRecord> =
            HashMap::try_from(self.map(MAP_PEERS)?).map_err(map_err(MAP_PEERS, "open"))?;
        match m.get(&peer_key(addr), 0) {
            Ok(r) => Ok(Some(r)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(MAP_PEERS, "read")(e)),
        }
    }

    /// Every per-source record.
    pub fn peers(&self) -> Result<Vec<(PeerKey, PeerRecord)>, FastPathError> {
        let m: HashMap<&MapData, PeerKey, PeerRecord> =
            HashMap::try_from(self.map(MAP_PEERS)?).map_err(map_err(MAP_PEERS, "open"))?;
        m.iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err(MAP_PEERS, "iterate"))
    }

    /// The statistics summed over CPUs.
    pub fn stats(&self) -> Result<Stats, FastPathError> {
        let a: PerCpuArray<&MapData, Stats> =
            PerCpuArray::try_from(self.map(MAP_STATS)?).map_err(map_err(MAP_STATS, "open"))?;
        let per_cpu = a.get(&0, 0).map_err(map_err(MAP_STATS, "read"))?;
        let mut total = Stats::default();
        for s in per_cpu.iter() {
            total.add(s);
        }
        Ok(total)
    }

    /// Average in-kernel run time per frame of `repeat` BPF_PROG_TEST_RUN runs on `frame`, of
    /// this program and of the pass-only baseline program from the same object (loaded here,
    /// never attached): (ours, baseline, our XDP action).
    pub fn cost(
        &mut self,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(std::time::Duration, std::time::Duration, u32), FastPathError> {
        let run = |prog: &mut Xdp| {
            prog.test_run(TestRunOptions {
                data_in: Some(frame),
                repeat,
                ..Default::default()
            })
            .map_err(|source| FastPathError::Program {
                what: "BPF_PROG_TEST_RUN",
                source: Box::new(source),
            })
        };
        let ours = run(self.program_mut()?)?;
        let base: &mut Xdp = self
            .ebpf
            .program_mut(failover_common::BASELINE_PROGRAM_NAME)
            .ok_or(FastPathError::Program {
                what: "find the baseline in the object",
                source: Box::new(ProgramError::NotLoaded),
            })?
            .try_into()
            .map_err(|source| FastPathError::Program {
                what: "baseline is not XDP",
                source: Box::new(source),
            })?;
        if base.fd().is_err() {
            base.load().map_err(|source| FastPathError::Program {
                what: "load the baseline",
                source: Box::new(source),
            })?;
        }
        let b = run(base)?;
        Ok((ours.duration, b.duration, ours.return_value))
    }

    /// Runs the program once on `frame` through BPF_PROG_TEST_RUN; returns the XDP action.
    pub fn test_run(&mut self, frame: &[u8]) -> Result<u32, FastPathError> {
        let prog = self.program_mut()?;
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ..Default::default()
            })
            .map_err(|source| FastPathError::Program {
                what: "BPF_PROG_TEST_RUN",
                source: Box::new(source),
            })?;
        Ok(r.return_value)
    }
}

impl Drop for FastPath {
    fn drop(&mut self) {
        if let Some(l) = self.logger.take() {
            l.abort();
        }
        if self.keep_pins {
            return;
        }
        for p in &self.pinned {
            if let Err(e) = std::fs::remove_file(p) {
                tracing::warn!(path = %p.display(), error = %e, "could not remove pin");
            }
        }
    }
}
