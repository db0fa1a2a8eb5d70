//! `cargo xtask bench-sync`: the data copy (docs/sync.md) measured. A full copy and a 1 %
//! change of a generated tree over a veth link between two namespaces (throughput, CPU of
//! each side), then the recovery point of the lab's takeover at the default `sync.every`.
//! Figures, not pass/fail.
use std::{
    io::Write as _,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use failover::sync::{pull, serve_one, Channel, CommitGate, Key, Store};
use failover_harness::{unique, veth, NetNs};

use crate::{bench::machine, demo, fault::Fault, lab::LabOptions};
use serde_json::json;

fn thread_cpu() -> Duration {
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out pointer.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Moves the calling thread into the network namespace at `ns` (its /run/netns path).
fn enter(ns: &Path) -> Result<()> {
    let f = std::fs::File::open(ns).context("open netns")?;
    // SAFETY: setns on a valid namespace fd, for this thread only.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

struct Xs(u64);
impl Xs {
    fn fill(&mut self, b: &mut [u8]) {
        for c in b.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            c.copy_from_slice(&self.0.to_le_bytes()[..c.len()]);
        }
    }
}

fn make_tree(root: &Path, files: usize, file_mib: usize) -> Result<()> {
    let mut rng = Xs(0x1234_5678_9abc_def1);
    let mut buf = vec![0u8; file_mib << 20];
    for i in 0..files {
        let dir = root.join(format!("d{}", i % 8));
        std::fs::create_dir_all(&dir)?;
        rng.fill(&mut buf);
        std::fs::write(dir.join(format!("f{i}")), &buf)?;
    }
    Ok(())
}

/// Changes `fraction` of every file's bytes, in one run in the middle of each.
fn change(root: &Path, fraction: f64) -> Result<u64> {
    let mut rng = Xs(99);
    let mut total = 0;
    for d in std::fs::read_dir(root)? {
        for f in std::fs::read_dir(d?.path())? {
            let p = f?.path();
            let mut data = std::fs::read(&p)?;
            let n = (data.len() as f64 * fraction) as usize;
            let at = data.len() / 2 - n / 2;
            rng.fill(&mut data[at..at + n]);
            std::fs::write(&p, &data)?;
            total += n as u64;
        }
    }
    Ok(total)
}

/// One copy from `src` (served in namespace `a`) to `dst` (pulled in namespace `b`); returns
/// (wall, server CPU, client CPU, report).
fn copy_once(
    a: &NetNs,
    b: &NetNs,
    src: &Path,
    dst: &Path,
) -> Result<(Duration, Duration, Duration, failover::sync::CopyReport)> {
    let key = Key::from_bytes([7; 32]);
    let (k1, k2) = (key.clone(), key);
    let src = src.to_path_buf();
    let dst = dst.to_path_buf();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (a, b) = (a.path(), b.path());
    let server = std::thread::spawn(move || -> Result<Duration> {
        enter(&a)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("10.93.0.1:7789").await?;
            ready_tx.send(()).ok();
            let (s, _) = l.accept().await?;
            let t0 = thread_cpu();
            let mut ch = Channel::accept(s, &k1, 0).await?;
            serve_one(&mut ch, &src, None).await?;
            Ok(thread_cpu() - t0)
        })
    });
    ready_rx.recv().context("server never listened")?;
    let client = std::thread::spawn(
        move || -> Result<(Duration, Duration, failover::sync::CopyReport)> {
            enter(&b)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let store = Store::open(&dst)?;
                let t0 = thread_cpu();
                let w0 = Instant::now();
                let mut ch =
                    Channel::connect("10.93.0.1:7789".parse()?, &k2, Duration::from_secs(5))
                        .await?;
                let r = pull(&mut ch, &store, &CommitGate::default()).await?;
                Ok((w0.elapsed(), thread_cpu() - t0, r))
            })
        },
    );
    let (wall, ccpu, rep) = client
        .join()
        .map_err(|_| anyhow::anyhow!("client panicked"))??;
    let scpu = server
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))??;
    Ok((wall, scpu, ccpu, rep))
}

/// Runs the bench: two copies over a veth link, then `rpo_runs` lab takeovers.
pub fn run(failover: &Path, size_mib: usize, rpo_runs: usize) -> Result<()> {
    let a = NetNs::new("fo-bsa");
    let b = NetNs::new("fo-bsb");
    veth(
        &a,
        &unique("bsa"),
        "10.93.0.1/24",
        &b,
        &unique("bsb"),
        "10.93.0.2/24",
    );
    let root = std::env::temp_dir().join(unique("fo-bench-sync-"));
    let src = root.join("src");
    let dst = root.join("dst").join("data");
    std::fs::create_dir_all(&src)?;
    std::fs::create_dir_all(dst.parent().unwrap())?;
    let cleanup = Cleanup(root.clone());
    let files = (size_mib / 16).max(1);
    eprintln!(
        "bench-sync: generating {files} files of 16 MiB in {}",
        src.display()
    );
    make_tree(&src, files, 16)?;
    let bytes = (files * 16) as u64 * 1024 * 1024;
    let mib = |b: u64| b as f64 / 1048576.0;
    let (w, s, c, r) = copy_once(&a, &b, &src, &dst)?;
    println!(
        "full copy: {:.0} MiB in {:.2} s = {:.0} MiB/s; CPU primary {:.2} s, monitor {:.2} s; {:.0} MiB sent",
        mib(bytes), w.as_secs_f64(), mib(bytes) / w.as_secs_f64(), s.as_secs_f64(), c.as_secs_f64(), mib(r.bytes_sent)
    );
    let full = json!({"mib": mib(bytes), "s": w.as_secs_f64(), "mib_per_s": mib(bytes) / w.as_secs_f64(),
        "cpu_primary_s": s.as_secs_f64(), "cpu_monitor_s": c.as_secs_f64(), "sent_mib": mib(r.bytes_sent)});
    let changed = change(&src, 0.01)?;
    let (w, s, c, r) = copy_once(&a, &b, &src, &dst)?;
    println!(
        "1 % change ({:.1} MiB changed in {files} files): {:.2} s; CPU primary {:.2} s, monitor {:.2} s; {:.1} MiB sent",
        mib(changed), w.as_secs_f64(), s.as_secs_f64(), c.as_secs_f64(), mib(r.bytes_sent)
    );
    let delta = json!({"changed_mib": mib(changed), "s": w.as_secs_f64(),
        "cpu_primary_s": s.as_secs_f64(), "cpu_monitor_s": c.as_secs_f64(), "sent_mib": mib(r.bytes_sent)});
    drop(cleanup);
    drop((a, b));

    // The recovery point at the default every (500 heartbeats = 1 s), from the lab's client.
    let mut rpo = Vec::new();
    let opts = LabOptions {
        sync_every: 500,
        fault_jitter: Duration::from_secs(1),
        ..demo::prepare(failover)?
    };
    for i in 0..rpo_runs {
        let rep = demo::run_scenario(
            &opts,
            Fault::Link,
            Duration::ZERO,
            &format!("lab run {}", i + 1),
        )?;
        let s = rep.summary.sync;
        eprintln!("lab run {:>2}: {}", i + 1, json!(s));
        rpo.extend(s.and_then(|s| s.rpo_ms));
    }
    rpo.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| {
        rpo.get(((rpo.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
    };
    println!(
        "recovery point at every = 500 ({} lab runs, ms): min {:?} median {:?} p95 {:?} max {:?}",
        rpo.len(),
        q(0.0),
        q(0.5),
        q(0.95),
        q(1.0)
    );
    let (cores, cpu, kernel) = machine();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}",
        json!({"machine": {"cores": cores, "cpu": cpu, "kernel": kernel},
            "full": full, "one_percent": delta,
            "rpo_ms": {"runs": rpo.len(), "min": q(0.0), "median": q(0.5), "p95": q(0.95), "max": q(1.0)}})
    )?;
    Ok(())
}

struct Cleanup(PathBuf);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
