//! The lease gate in the primary's kernel (`failover-ebpf/src/gate.rs`): an XDP program on
//! ingress and a tc program on egress that stop P's traffic once the lease has lapsed.
//!
//! Both are attached through links pinned under the bpffs directory, beside the gate's map, so
//! they keep enforcing the lease with the daemon frozen or dead: only [`remove`] (a daemon
//! that released P, or one starting that finds them left over) takes them off. Renewing is one
//! map write ([`Gate::renew`]).
use std::{
    io,
    net::IpAddr,
    path::{Path, PathBuf},
};

use aya::{
    maps::{Array, MapData},
    programs::{
        links::{FdLink, PinnedLink},
        tc::{SchedClassifier, TcAttachOptions, TcAttachType},
        LinkOrder, Xdp, XdpMode,
    },
    EbpfLoader,
};
use failover_common::{
    LeaseGate, GATE_IN_PROGRAM, GATE_ON, GATE_OUT_PROGRAM, GATE_V4, GATE_V6, MAP_GATE,
};

use crate::sys::{self, SysError};

/// The pins, under the gate's directory.
const PIN_MAP: &str = MAP_GATE;
const PIN_IN: &str = "gate_in_link";
const PIN_OUT: &str = "gate_out_link";

/// Errors of the gate.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// Host setup (root, bpffs, interface).
    #[error(transparent)]
    Sys(#[from] SysError),
    /// Loading the object, a program (with the verifier log) or attaching it.
    #[error("lease gate: {what}")]
    Bpf {
        /// What was being done.
        what: String,
        /// aya's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A pin could not be made or removed.
    #[error("lease gate: {what} {}", path.display())]
    Pin {
        /// What was being done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn bpf(what: impl Into<String>) -> impl FnOnce(aya::EbpfError) -> GateError {
    let what = what.into();
    move |e| GateError::Bpf {
        what,
        source: Box::new(e),
    }
}

fn prog(what: impl Into<String>) -> impl FnOnce(aya::programs::ProgramError) -> GateError {
    let what = what.into();
    move |e| GateError::Bpf {
        what,
        source: Box::new(e),
    }
}

/// An installed gate: its map, written at every renewal.
pub struct Gate {
    map: Array<MapData, LeaseGate>,
    cfg: LeaseGate,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").field("cfg", &self.cfg).finish()
    }
}

/// The gate's configuration for P (`addresses`: at most one IPv4 and one IPv6 address are
/// gated, the first of each) and the pair's UDP port, serving P until `expiry_ns`.
pub fn gate_for(addresses: &[IpAddr], udp_port: u16, expiry_ns: u64) -> LeaseGate {
    let mut g = LeaseGate {
        expiry_ns,
        flags: GATE_ON,
        udp_port: u32::from(udp_port),
        ..Default::default()
    };
    for a in addresses {
        match a {
            IpAddr::V4(v4) if g.flags & GATE_V4 == 0 => {
                g.p4 = v4.octets();
                g.flags |= GATE_V4;
            }
            IpAddr::V6(v6) if g.flags & GATE_V6 == 0 => {
                g.p6 = v6.octets();
                g.flags |= GATE_V6;
            }
            _ => {}
        }
    }
    g
}

/// The gate's object loaded and verified, its map pinned, not attached: what a promotion
/// needs is then only the attach (loading takes a hundred milliseconds or more).
pub struct Prepared {
    ebpf: aya::Ebpf,
    dir: PathBuf,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared").field("dir", &self.dir).finish()
    }
}

fn missing(what: String) -> GateError {
    GateError::Bpf {
        what,
        source: "not in the object".into(),
    }
}

fn pin_err(what: &'static str, path: PathBuf) -> impl FnOnce(aya::pin::PinError) -> GateError {
    move |e| GateError::Pin {
        what,
        path,
        source: Box::new(e),
    }
}

/// The gate program `name` of `ebpf`, as its type (`Xdp`, `SchedClassifier`).
fn program<'a, P>(ebpf: &'a mut aya::Ebpf, name: &'static str) -> Result<&'a mut P, GateError>
where
    &'a mut aya::programs::Program: TryInto<&'a mut P, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| missing(format!("program {name}")))?
        .try_into()
        .map_err(prog(name))
}

/// Pins `link` (a bpf_link) at `path`: the link then outlives this process.
fn pin_link<L>(link: L, path: PathBuf) -> Result<(), GateError>
where
    L: TryInto<FdLink>,
    L::Error: std::error::Error + Send + Sync + 'static,
{
    let link: FdLink = link.try_into().map_err(|e| GateError::Bpf {
        what: format!("{}: not a bpf_link", path.display()),
        source: Box::new(e),
    })?;
    drop(link.pin(&path).map_err(pin_err("pin", path.clone()))?);
    Ok(())
}

/// Loads the gate's programs (verified) and pins its map under `dir`, replacing a gate left
/// there; nothing is attached yet and the gate is off.
pub fn prepare(dir: &Path) -> Result<Prepared, GateError> {
    sys::require_caps("loading the lease gate", sys::CAPS_XDP)?;
    sys::raise_memlock();
    remove(dir)?;
    sys::ensure_bpffs_dir(dir)?;
    let mut ebpf = EbpfLoader::new()
        .load(crate::fastpath::OBJECT)
        .map_err(bpf("load the object"))?;
    let map_path = dir.join(PIN_MAP);
    ebpf.map(MAP_GATE)
        .ok_or_else(|| missing(format!("map {MAP_GATE}")))?
        .pin(&map_path)
        .map_err(pin_err("pin", map_path.clone()))?;
    let xdp: &mut Xdp = program(&mut ebpf, GATE_IN_PROGRAM)?;
    xdp.load()
        .map_err(prog(format!("{GATE_IN_PROGRAM}: load (verifier)")))?;
    let tc: &mut SchedClassifier = program(&mut ebpf, GATE_OUT_PROGRAM)?;
    tc.load()
        .map_err(prog(format!("{GATE_OUT_PROGRAM}: load (verifier)")))?;
    Ok(Prepared {
        ebpf,
        dir: dir.to_path_buf(),
    })
}

impl Prepared {
    /// Attaches both programs to `interface` through links pinned beside the map (the gate
    /// off meanwhile), then writes `cfg` with its expiry `grace` from now: from here on the
    /// kernel enforces the lease, whatever becomes of this process. The XDP program attaches
    /// in generic mode: a gate needs no driver speed, and a driver-mode attach costs tens of
    /// milliseconds on a veth, on the way to P.
    pub fn attach(
        &mut self,
        interface: &str,
        cfg: LeaseGate,
        grace: std::time::Duration,
    ) -> Result<Gate, GateError> {
        let idx = sys::if_index(interface)?;
        let mut gate = open_pinned(&self.dir)?;
        let off = LeaseGate { flags: 0, ..cfg };
        gate.cfg = off;
        gate.renew(0)?;
        let xdp: &mut Xdp = program(&mut self.ebpf, GATE_IN_PROGRAM)?;
        let id = xdp
            .attach_to_if_index(idx, XdpMode::Skb)
            .map_err(prog(format!("{GATE_IN_PROGRAM}: attach to {interface}")))?;
        let link = xdp.take_link(id).map_err(prog("take the XDP link"))?;
        pin_link(link, self.dir.join(PIN_IN))?;
        let tc: &mut SchedClassifier = program(&mut self.ebpf, GATE_OUT_PROGRAM)?;
        let id = tc
            .attach_with_options(
                interface,
                TcAttachType::Egress,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .map_err(prog(format!(
                "{GATE_OUT_PROGRAM}: attach (tcx egress) to {interface}"
            )))?;
        let link = tc.take_link(id).map_err(prog("take the tc link"))?;
        pin_link(link, self.dir.join(PIN_OUT))?;
        gate.cfg = cfg;
        gate.renew(crate::sys::monotonic_ns() + grace.as_nanos() as u64)?;
        tracing::info!(%interface, dir = %self.dir.display(), "lease gate attached (XDP ingress, tcx egress)");
        Ok(gate)
    }

    /// Takes the gate off the interface (the links detached); the programs stay loaded and
    /// the map pinned, ready for the next promotion.
    pub fn detach(&mut self) -> Result<(), GateError> {
        detach_links(&self.dir)
    }
}

/// Installs the gate on `interface` with `cfg` (replacing one left over), pinned under `dir`:
/// [`prepare`], then [`Prepared::attach`] with `cfg`'s own expiry.
pub fn install(interface: &str, dir: &Path, cfg: LeaseGate) -> Result<Gate, GateError> {
    let mut p = prepare(dir)?;
    let grace =
        std::time::Duration::from_nanos(cfg.expiry_ns.saturating_sub(crate::sys::monotonic_ns()));
    let mut g = p.attach(interface, cfg, grace)?;
    // The expiry as given, not as recomputed.
    g.renew(cfg.expiry_ns)?;
    Ok(g)
}

impl Gate {
    /// Serves P until `expiry_ns` (CLOCK_MONOTONIC): one map write.
    pub fn renew(&mut self, expiry_ns: u64) -> Result<(), GateError> {
        self.cfg.expiry_ns = expiry_ns;
        self.map.set(0, self.cfg, 0).map_err(|e| GateError::Bpf {
            what: "write the gate".into(),
            source: Box::new(e),
        })
    }

    /// The gate as written last.
    pub fn config(&self) -> LeaseGate {
        self.cfg
    }
}

/// Opens the gate pinned under `dir` (another process's, or one left by a crash).
pub fn open_pinned(dir: &Path) -> Result<Gate, GateError> {
    let path = dir.join(PIN_MAP);
    let data = MapData::from_pin(&path).map_err(|e| GateError::Pin {
        what: "open",
        path: path.clone(),
        source: Box::new(e),
    })?;
    let map: Array<MapData, LeaseGate> =
        Array::try_from(aya::maps::Map::Array(data)).map_err(|e| GateError::Bpf {
            what: format!("open map {MAP_GATE}"),
            source: Box::new(e),
        })?;
    let cfg = map.get(&0, 0).map_err(|e| GateError::Bpf {
        what: "read the gate".into(),
        source: Box::new(e),
    })?;
    Ok(Gate { map, cfg })
}

/// Whether a gate is pinned under `dir`.
pub fn installed(dir: &Path) -> bool {
    dir.join(PIN_IN).exists() || dir.join(PIN_OUT).exists()
}

fn detach_links(dir: &Path) -> Result<(), GateError> {
    for name in [PIN_IN, PIN_OUT] {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        // The pinned link is the last reference: unpinning and dropping it detaches.
        let link = PinnedLink::from_pin(&path).map_err(|e| GateError::Pin {
            what: "open",
            path: path.clone(),
            source: Box::new(e),
        })?;
        link.unpin().map_err(|e| GateError::Pin {
            what: "unpin",
            path: path.clone(),
            source: Box::new(e),
        })?;
    }
    Ok(())
}

/// Takes the gate off (both links detached, the pins removed). Nothing installed: nothing done.
pub fn remove(dir: &Path) -> Result<(), GateError> {
    detach_links(dir)?;
    let map = dir.join(PIN_MAP);
    match std::fs::remove_file(&map) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(GateError::Pin {
                what: "remove",
                path: map,
                source: Box::new(e),
            })
        }
    }
    Ok(())
}
