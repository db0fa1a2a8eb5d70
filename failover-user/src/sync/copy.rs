//! One copy: the primary serves its tree, the monitor pulls it into its store.
use std::{
    collections::BTreeMap,
    fs,
    io::{self, Read as _, Write as _},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::{
    channel::CHUNK, io_err, manifest::FORMAT, nofollow, store::remove_any, Channel, CommitGate,
    FileSum, Generation, Manifest, PullOptions, Store, SyncError,
};

/// The monitor's request: the manifest format it reads, and the hashes it already holds.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    /// 0 from a monitor from before format numbers.
    #[serde(default)]
    format: u32,
    have: BTreeMap<String, String>,
}

/// The primary's answer: the new manifest, or why there is none.
#[derive(Debug, Serialize, Deserialize)]
enum Offer {
    Manifest(Manifest),
    Failed(String),
}

/// What one copy did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyReport {
    /// The new current generation.
    pub generation: Generation,
    /// Bytes of the files that changed.
    pub bytes_changed: u64,
    /// Bytes that travelled for them (whole files, or deltas of large ones).
    pub bytes_sent: u64,
    /// Files that travelled.
    pub files_sent: usize,
}

/// Primary side: serves one copy of `root` on an authenticated channel. Runs
/// `snapshot` (a shell command, in `root`) first, when given.
pub async fn serve_one(
    ch: &mut Channel,
    root: &Path,
    snapshot: Option<(&str, Duration)>,
) -> Result<u64, SyncError> {
    serve_one_at(ch, root, snapshot, 0).await
}

/// [`serve_one`] by a primary at `epoch`: the offer says where its data comes from, so that
/// a monitor whose own data is newer refuses it.
pub async fn serve_one_at(
    ch: &mut Channel,
    root: &Path,
    snapshot: Option<(&str, Duration)>,
    epoch: u64,
) -> Result<u64, SyncError> {
    let req: Request = ch.recv_json().await?;
    if req.format != FORMAT {
        let why = format!(
            "the monitor reads manifest format {} (0: a failover from before formats), this \
             host sends {FORMAT}: run the same failover version on both hosts",
            req.format
        );
        ch.send_json(&Offer::Failed(why.clone())).await?;
        return Err(ch.err(why));
    }
    if let Some((cmd, limit)) = snapshot {
        if let Err(e) = run_snapshot(cmd, root, limit).await {
            ch.send_json(&Offer::Failed(e.to_string())).await?;
            return Err(e);
        }
    }
    let m = match Manifest::scan(root) {
        Ok(m) => Manifest { epoch, ..m },
        Err(e) => {
            ch.send_json(&Offer::Failed(e.to_string())).await?;
            return Err(e);
        }
    };
    ch.send_json(&Offer::Manifest(m.clone())).await?;
    // The monitor's signatures of its older versions of large changed files.
    let paths: Vec<String> = ch.recv_json().await?;
    let mut sigs = BTreeMap::new();
    for p in paths {
        let raw = ch.recv(1 << 30).await?;
        let sig = signature(raw).ok_or_else(|| ch.err(format!("{p}: malformed signature")))?;
        sigs.insert(p, sig);
    }
    let mut sent = 0;
    let mut buf = vec![0u8; CHUNK];
    for (rel, e) in &m.entries {
        let Some(sum) = &e.file else { continue };
        if req.have.get(rel) == Some(&sum.hash) {
            continue;
        }
        if let Some(sig) = sigs.get(rel) {
            if let Some(n) = send_delta(ch, root, rel, sig).await? {
                sent += n;
                continue;
            }
        }
        // The content travels as it is when opened, which may be newer than the scan (a live
        // service keeps writing); the trailer carries the size and hash of exactly what was
        // sent, and the receiver checks its own hash against it.
        let p = root.join(rel);
        let mut f = match nofollow::open_file(root, rel) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                ch.send_frame(&[TAG_GONE]).await?;
                continue;
            }
            Err(e) => return Err(io_err("open", &p)(e)),
        };
        let mut h = blake3::Hasher::new();
        let mut size = 0u64;
        loop {
            buf[0] = TAG_DATA;
            let n = f.read(&mut buf[1..]).map_err(io_err("read", &p))?;
            if n == 0 {
                break;
            }
            h.update(&buf[1..=n]);
            size += n as u64;
            ch.send_frame(&buf[..=n]).await?;
        }
        ch.send_frame(&sum_trailer(size, &h.finalize())).await?;
        sent += size;
    }
    Ok(sent)
}

const TAG_DATA: u8 = 0;
const TAG_END: u8 = 1;
const TAG_GONE: u8 = 2;
const TAG_DELTA: u8 = 3;

/// Files at least this large travel as rsync-style deltas against the monitor's version.
pub const DELTA_MIN: u64 = 1 << 20;
/// Files above this are sent whole (a delta needs both versions in memory).
pub const DELTA_MAX: u64 = 1 << 30;
const DELTA_BLOCK: u32 = 16 * 1024;

/// The monitor's signature of a file, as the primary receives it. A block size of 0 is refused:
/// `fast_rsync::diff` never ends on one (fuzzing found it; a signature the monitor computes
/// has [`DELTA_BLOCK`]).
fn signature(raw: Vec<u8>) -> Option<fast_rsync::Signature> {
    if raw.get(4..8).is_some_and(|b| b == [0; 4]) {
        return None;
    }
    fast_rsync::Signature::deserialize(raw).ok()
}

/// Applies the primary's `delta` to our `base`, producing at most `size` bytes (the size its
/// trailer announces). The buffer grows with what the delta produces: `size` comes from the
/// peer, and reserving it up front let a trailer claiming 2^62 bytes abort the process
/// (fuzzing found it).
fn apply_delta(base: &[u8], delta: &[u8], size: u64) -> Result<Vec<u8>, fast_rsync::ApplyError> {
    let mut out = Vec::with_capacity(size.min(DELTA_MAX) as usize);
    fast_rsync::apply_limited(
        base,
        delta,
        &mut out,
        usize::try_from(size).unwrap_or(usize::MAX),
    )?;
    Ok(out)
}

/// The content of the regular file `rel` below `root`, reached without following symlinks.
fn read_below(root: &Path, rel: &str) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    nofollow::open_file(root, rel)?.read_to_end(&mut out)?;
    Ok(out)
}

fn sum_trailer(size: u64, hash: &blake3::Hash) -> Vec<u8> {
    let mut end = vec![TAG_END];
    end.extend_from_slice(&size.to_be_bytes());
    end.extend_from_slice(hash.to_hex().as_bytes());
    end
}

/// Sends `rel` below `root` as a delta against `sig` when that is smaller than the file;
/// returns the bytes sent, or `None` when the file should go whole (or vanished: then nothing
/// was sent).
async fn send_delta(
    ch: &mut Channel,
    root: &Path,
    rel: &str,
    sig: &fast_rsync::Signature,
) -> Result<Option<u64>, SyncError> {
    let data = match read_below(root, rel) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", &root.join(rel))(e)),
    };
    let mut delta = Vec::new();
    if fast_rsync::diff(&sig.index(), &data, &mut delta).is_err() || delta.len() >= data.len() {
        return Ok(None);
    }
    let mut frame = Vec::with_capacity(CHUNK);
    for c in delta.chunks(CHUNK - 1) {
        frame.clear();
        frame.push(TAG_DELTA);
        frame.extend_from_slice(c);
        ch.send_frame(&frame).await?;
    }
    ch.send_frame(&sum_trailer(data.len() as u64, &blake3::hash(&data)))
        .await?;
    Ok(Some(delta.len() as u64))
}

async fn run_snapshot(cmd: &str, root: &Path, limit: Duration) -> Result<(), SyncError> {
    let out = crate::sys::scrub_env(&mut tokio::process::Command::new("sh"))
        .args(["-c", cmd])
        .current_dir(root)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(limit, out)
        .await
        .map_err(|_| SyncError::Snapshot(format!("{cmd:?} killed after {limit:?}")))?
        .map_err(|e| SyncError::Snapshot(format!("{cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(SyncError::Snapshot(format!(
            "{cmd:?} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Monitor side: pulls one copy into `store`, with the default [`PullOptions`]. Either the
/// whole new copy becomes current or nothing changes.
///
/// The switch happens only while `gate` is open: once it is closed, the copy ends with
/// [`SyncError::Cancelled`] and the directory keeps the previous copy.
pub async fn pull(
    ch: &mut Channel,
    store: &Store,
    gate: &CommitGate,
) -> Result<CopyReport, SyncError> {
    pull_with(ch, store, gate, PullOptions::default()).await
}

/// [`pull`] with `opts`.
pub async fn pull_with(
    ch: &mut Channel,
    store: &Store,
    gate: &CommitGate,
    opts: PullOptions,
) -> Result<CopyReport, SyncError> {
    let have_m = store.current_manifest()?;
    let have: BTreeMap<String, String> = have_m
        .entries
        .iter()
        .filter_map(|(p, e)| e.file.as_ref().map(|f| (p.clone(), f.hash.clone())))
        .collect();
    ch.send_json(&Request {
        format: FORMAT,
        have: have.clone(),
    })
    .await?;
    let mut m = match ch.recv_json::<Offer>().await? {
        Offer::Manifest(m) => m,
        Offer::Failed(why) => {
            return Err(ch.err(format!("the primary could not offer a copy: {why}")))
        }
    };
    m.check_peer()
        .map_err(|why| ch.err(format!("manifest refused: {why}")))?;
    // Data this host served at a later epoch than the primary's is newer than the offer:
    // keeping it aside would still make the older data the one served. Refused.
    if let Some(own) = store.served().filter(|own| m.epoch != 0 && *own > m.epoch) {
        return Err(SyncError::NewerHere {
            own,
            offered: m.epoch,
        });
    }
    opts.apply(&mut m);
    // Signatures of our versions of large files that changed: they come back as deltas.
    let current_dir = store.current_dir()?;
    let mut sig_paths = Vec::new();
    let mut sigs = Vec::new();
    if let Some(cur) = &current_dir {
        for (rel, e) in &m.entries {
            let (Some(sum), Some(old)) = (&e.file, have.get(rel)) else {
                continue;
            };
            if *old == sum.hash {
                continue;
            }
            let size = nofollow::open_file(cur, rel)
                .and_then(|f| f.metadata())
                .map_or(0, |m| m.len());
            if !(DELTA_MIN..=DELTA_MAX).contains(&size) {
                continue;
            }
            let data = read_below(cur, rel).map_err(io_err("read", &cur.join(rel)))?;
            let sig = fast_rsync::Signature::calculate(
                &data,
                fast_rsync::SignatureOptions {
                    block_size: DELTA_BLOCK,
                    crypto_hash_size: 8,
                },
            );
            sig_paths.push(rel.clone());
            sigs.push(sig.into_serialized());
        }
    }
    ch.send_json(&sig_paths).await?;
    for sgn in &sigs {
        ch.send(sgn).await?;
    }
    let mut stage = store.stage()?;
    // What the copy really holds: the offered manifest, updated with each sent file's trailer.
    let mut final_m = m.clone();
    let result = async {
        let mut bytes = 0u64;
        let mut wire = 0u64;
        let mut files = 0usize;
        for (rel, e) in &m.entries {
            match &e.file {
                None if e.link.is_some() => stage.link(rel, e)?,
                None => stage.dir(rel, 0o700)?,
                // The content is here: linked when nothing else changed, else copied here.
                Some(sum) if have.get(rel) == Some(&sum.hash) => {
                    if !stage.keep(rel, e)? {
                        if !stage.copy_current(rel)? {
                            return Err(ch.err(format!(
                                "{rel}: unchanged but missing locally; retry the copy"
                            )));
                        }
                        stage.settle(rel, e)?;
                    }
                }
                Some(_) => {
                    let mut f = stage.create(rel)?;
                    let mut h = blake3::Hasher::new();
                    let mut got = 0u64;
                    let p = stage.path().join(rel);
                    let mut delta = Vec::new();
                    let trailer = loop {
                        let frame = ch.recv_frame().await?;
                        match frame.split_first() {
                            Some((&TAG_DATA, data)) => {
                                h.update(data);
                                f.write_all(data).map_err(io_err("write", &p))?;
                                got += data.len() as u64;
                            }
                            Some((&TAG_DELTA, data)) => delta.extend_from_slice(data),
                            Some((&TAG_END, rest)) if rest.len() == 8 + 64 => {
                                let size = u64::from_be_bytes(rest[..8].try_into().expect("8"));
                                let hash = String::from_utf8_lossy(&rest[8..]).into_owned();
                                break Some(FileSum { size, hash });
                            }
                            Some((&TAG_GONE, _)) => break None,
                            _ => return Err(ch.err(format!("{rel}: unexpected frame"))),
                        }
                    };
                    if !delta.is_empty() {
                        let t = trailer
                            .as_ref()
                            .ok_or_else(|| ch.err(format!("{rel}: delta without a trailer")))?;
                        let cur = current_dir
                            .as_ref()
                            .filter(|_| have.contains_key(rel))
                            .ok_or_else(|| ch.err(format!("{rel}: delta without a base")))?;
                        let base = read_below(cur, rel).map_err(io_err("read", &cur.join(rel)))?;
                        let out = apply_delta(&base, &delta, t.size).map_err(|e| {
                            SyncError::Mismatch {
                                path: PathBuf::from(rel),
                                message: format!("the delta does not apply: {e}"),
                            }
                        })?;
                        h.update(&out);
                        f.write_all(&out).map_err(io_err("write", &p))?;
                        got = out.len() as u64;
                        wire += delta.len() as u64;
                    }
                    drop(f);
                    match trailer {
                        None => {
                            // Deleted on the primary since its scan: not part of this copy.
                            fs::remove_file(&p).map_err(io_err("remove", &p))?;
                            final_m.entries.remove(rel);
                        }
                        Some(t) => {
                            let hash = h.finalize().to_hex().to_string();
                            if hash != t.hash || got != t.size {
                                return Err(SyncError::Mismatch {
                                    path: PathBuf::from(rel),
                                    message:
                                        "the received content differs from what the primary sent"
                                            .into(),
                                });
                            }
                            stage.settle(rel, e)?;
                            if delta.is_empty() {
                                wire += t.size;
                            }
                            bytes += t.size;
                            files += 1;
                            if let Some(x) = final_m.entries.get_mut(rel) {
                                x.file = Some(t);
                            }
                        }
                    }
                }
            }
        }
        // Directories last, once filled: their mtimes.
        stage.seal(&final_m)?;
        Ok::<_, SyncError>((bytes, wire, files))
    }
    .await;
    match result {
        Ok((bytes_changed, bytes_sent, files_sent)) => {
            let generation = store.commit(stage, &final_m, gate, &opts.origin)?;
            Ok(CopyReport {
                generation,
                bytes_changed,
                bytes_sent,
                files_sent,
            })
        }
        Err(e) => {
            let _ = remove_any(stage.path());
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `sync_manifest` fuzz target's hang: a signature with block size 0 made
    /// `fast_rsync::diff` loop forever in `serve_one`.
    #[test]
    fn signatures_with_block_size_zero_are_refused() {
        let mut raw = vec![0x72, 0x73, 0x01, 0x36];
        raw.extend_from_slice(&[0; 56]);
        assert!(signature(raw).is_none());
        let ok = fast_rsync::Signature::calculate(
            b"some data",
            fast_rsync::SignatureOptions {
                block_size: DELTA_BLOCK,
                crypto_hash_size: 8,
            },
        );
        assert!(signature(ok.into_serialized()).is_some());
    }

    /// A trailer claiming 2^62 bytes for a delta: no up-front allocation of that size.
    #[test]
    fn a_delta_trailer_cannot_claim_any_size() {
        let base = vec![7u8; 4096];
        let mut new = base.clone();
        new[100] = 1;
        let sig = fast_rsync::Signature::calculate(
            &base,
            fast_rsync::SignatureOptions {
                block_size: 1024,
                crypto_hash_size: 8,
            },
        );
        let mut delta = Vec::new();
        fast_rsync::diff(&sig.index(), &new, &mut delta).unwrap();
        assert_eq!(apply_delta(&base, &delta, 1 << 62).unwrap(), new);
        assert!(
            apply_delta(&base, &delta, 10).is_err(),
            "the announced size still limits"
        );
    }
}
