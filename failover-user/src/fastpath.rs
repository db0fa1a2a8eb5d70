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
        let arrivals = ArrivalRing::map(&ebpf);
        let mut fp = FastPath {
            ebpf,
            arrivals,
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

/// [`MAP_ARRIVALS`] mapped read-only into this process (`BPF_F_MMAPABLE`): a probe's slot is a
/// few loads from memory instead of a `bpf(BPF_MAP_LOOKUP_ELEM)` call. Unmapped on drop; the
/// mapping holds its own reference to the map, so it stays valid whatever happens to the fd.
struct ArrivalRing {
    base: std::ptr::NonNull<Arrival>,
    len: usize,
    slots: u32,
}

// SAFETY: the mapping is shared read-only memory; it is only read, with volatile loads, and
// lives until drop.
unsafe impl Send for ArrivalRing {}
// SAFETY: as above: concurrent readers only load.
unsafe impl Sync for ArrivalRing {}

impl ArrivalRing {
    /// Attempts at a consistent read of a slot the program is writing at the same moment; the
    /// program's three stores take nanoseconds, so the second attempt normally succeeds.
    const TRIES: usize = 8;

    /// Maps the arrival map of `ebpf`; `None` (with a log line: the fast path then reads
    /// slots through the `bpf` syscall as before) when the kernel refuses, e.g. a map created
    /// without `BPF_F_MMAPABLE`.
    fn map(ebpf: &Ebpf) -> Option<Self> {
        match Self::try_map(ebpf) {
            Ok(ring) => Some(ring),
            Err(error) => {
                tracing::warn!(map = MAP_ARRIVALS, %error,
                    "cannot mmap the arrival map; reading it with one bpf syscall per probe");
                None
            }
        }
    }

    fn try_map(ebpf: &Ebpf) -> Result<Self, String> {
        use std::os::fd::{AsFd as _, AsRawFd as _};
        let Some(aya::maps::Map::Array(data)) = ebpf.map(MAP_ARRIVALS) else {
            return Err("not an array map in the object".into());
        };
        let info = data.info().map_err(|e| e.to_string())?;
        if info.map_flags() & failover_common::BPF_F_MMAPABLE == 0 {
            return Err(format!(
                "map flags {:#x} lack BPF_F_MMAPABLE",
                info.map_flags()
            ));
        }
        let stride = (info.value_size() as usize).next_multiple_of(8);
        if stride != std::mem::size_of::<Arrival>() {
            return Err(format!(
                "value size {} is not an Arrival's",
                info.value_size()
            ));
        }
        let slots = info.max_entries();
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let len = (slots as usize * stride).next_multiple_of(page);
        let fd = data.fd().as_fd().as_raw_fd();
        // SAFETY: a fresh read-only shared mapping of the map's value area; nothing else is
        // mapped at the address the kernel chooses.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!("mmap: {}", io::Error::last_os_error()));
        }
        let base = std::ptr::NonNull::new(ptr.cast::<Arrival>())
            .ok_or_else(|| "mmap returned a null pointer".to_string())?;
        Ok(ArrivalRing { base, len, slots })
    }

    /// Slot `slot`, read consistently ([`read_arrival`]).
    fn read(&self, slot: u32) -> Arrival {
        if slot >= self.slots {
            return Arrival::default();
        }
        // SAFETY: slot < slots, so the pointer lies inside the live mapping, aligned
        // (page-aligned base, 16-byte values).
        unsafe { read_arrival(self.base.as_ptr().add(slot as usize), Self::TRIES) }
    }
}

/// Reads the arrival slot at `p` while the program may be rewriting it (the protocol on
/// [`Arrival`]): the stamp, the sequence, the stamp again, kept when both stamps agree. A slot
/// that is in the middle of a write at each of `tries` attempts reads as empty (`ns == 0`): not
/// arrived yet, and the next poll sees it.
///
/// # Safety
///
/// `p` must be valid for reads and aligned for an [`Arrival`].
unsafe fn read_arrival(p: *const Arrival, tries: usize) -> Arrival {
    use std::sync::atomic::{fence, Ordering};
    for _ in 0..tries {
        // SAFETY: the caller's. Volatile: the kernel writes this memory behind the compiler's
        // back. The fences keep the three loads in order (they cost nothing on x86-64).
        let (ns1, seq, ns2) = unsafe {
            let ns1 = std::ptr::read_volatile(std::ptr::addr_of!((*p).ns));
            fence(Ordering::Acquire);
            let seq = std::ptr::read_volatile(std::ptr::addr_of!((*p).seq));
            fence(Ordering::Acquire);
            let ns2 = std::ptr::read_volatile(std::ptr::addr_of!((*p).ns));
            (ns1, seq, ns2)
        };
        if ns1 == ns2 {
            return Arrival { seq, ns: ns1 };
        }
        std::hint::spin_loop();
    }
    Arrival::default()
}

impl Drop for ArrivalRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in try_map, unmapped once.
        if unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) } != 0 {
            tracing::warn!(error = %io::Error::last_os_error(), "munmap of the arrival map");
        }
    }
}

/// A loaded (and usually attached) fast path. Dropping it detaches the program and, unless
/// told to keep them, removes its pins.
pub struct FastPath {
    ebpf: Ebpf,
    /// The arrival map in memory; `None` when it could not be mapped (syscall reads then).
    arrivals: Option<ArrivalRing>,
    mode: Option<AttachMode>,
    pinned: Vec<PathBuf>,
    keep_pins: bool,
    logger: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastPath")
            .field("mode", &self.mode)
            .field("arrivals_mapped", &self.arrivals.is_some())
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
    ///
    /// Pins are never reused: the maps are always the ones this process just created from its
    /// own object, so a pin left by an older version (e.g. an `FO_ARRIVALS` without
    /// `BPF_F_MMAPABLE`) is unlinked and replaced, and never read.
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

    /// Stream `stream`'s arrival slot for sequence `seq` (whatever reply last used it; `ns == 0`
    /// when nothing is stamped there yet).
    ///
    /// Read from the memory-mapped map (a few loads, no syscall), consistent even while the
    /// program rewrites the slot (the protocol on [`Arrival`]); through `bpf(BPF_MAP_LOOKUP_ELEM)`
    /// only when the map could not be mapped (logged once, at build).
    pub fn arrival(&self, stream: u32, seq: u64) -> Result<Arrival, FastPathError> {
        let slot =
            (stream & (MAX_STREAMS - 1)) * ARRIVAL_SLOTS + ((seq as u32) & (ARRIVAL_SLOTS - 1));
        if let Some(ring) = &self.arrivals {
            return Ok(ring.read(slot));
        }
        let a: Array<&MapData, Arrival> =
            Array::try_from(self.map(MAP_ARRIVALS)?).map_err(map_err(MAP_ARRIVALS, "open"))?;
        a.get(&slot, 0).map_err(map_err(MAP_ARRIVALS, "read"))
    }

    /// Whether [`arrival`](Self::arrival) reads the memory-mapped map (else one syscall per
    /// call).
    pub fn arrivals_mapped(&self) -> bool {
        self.arrivals.is_some()
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
        let b = run(self.baseline_mut()?)?;
        Ok((ours.duration, b.duration, ours.return_value))
    }

    /// The pass-only baseline program of the same object, loaded (verified) on first use.
    fn baseline_mut(&mut self) -> Result<&mut Xdp, FastPathError> {
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
        Ok(base)
    }

    /// Attaches the pass-only baseline program (not the fast path) to `interface`, as the fast
    /// path attaches (driver mode, else generic mode), until this `FastPath` is dropped. For
    /// the veth throughput benchmark (`cargo xtask bench-xdp`) only: on a
    /// [`detached`](Self::detached) fast path, so that one program is attached at a time.
    pub fn attach_baseline(&mut self, interface: &str) -> Result<AttachMode, FastPathError> {
        let idx = sys::if_index(interface)?;
        attach(self.baseline_mut()?, interface, idx)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A writer that follows the program's protocol (stamp cleared, sequence, stamp; here the
    /// stamp is a function of the sequence) rewrites one slot as fast as it can while the
    /// reader checks every pair it accepts: a reader that skipped the check would pair a
    /// sequence with another write's stamp.
    #[test]
    fn arrival_reads_are_never_torn() {
        struct Slot(std::cell::UnsafeCell<Arrival>);
        // SAFETY: accessed only with volatile loads and stores, as the kernel map is.
        unsafe impl Sync for Slot {}
        impl Slot {
            fn ptr(&self) -> *mut Arrival {
                self.0.get()
            }
        }
        let slot = Slot(std::cell::UnsafeCell::new(Arrival::default()));
        let stamp = |seq: u64| seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let p = slot.ptr();
                let mut seq = 0u64;
                while !done.load(Ordering::Relaxed) {
                    seq += 1;
                    // SAFETY: the slot outlives the scope; volatile as in the program.
                    unsafe {
                        std::ptr::write_volatile(std::ptr::addr_of_mut!((*p).ns), 0);
                        std::ptr::write_volatile(std::ptr::addr_of_mut!((*p).seq), seq);
                        std::ptr::write_volatile(std::ptr::addr_of_mut!((*p).ns), stamp(seq));
                    }
                }
            });
            // Stops the writer however the reader ends (a failed assertion included).
            struct Stop<'a>(&'a AtomicBool);
            impl Drop for Stop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
            let stop = Stop(&done);
            let (mut stamped, mut reads) = (0u64, 0u64);
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_millis(300) {
                // SAFETY: valid and aligned for the whole scope.
                let a = unsafe { read_arrival(slot.ptr(), ArrivalRing::TRIES) };
                reads += 1;
                if a.ns != 0 {
                    stamped += 1;
                    assert_eq!(a.ns, stamp(a.seq), "torn read: {a:?}");
                }
            }
            drop(stop);
            assert!(
                stamped > reads / 100,
                "{stamped} of {reads} reads saw a stamp"
            );
        });
    }
}
