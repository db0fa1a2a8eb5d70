//! The state copy (claims 14, 21) over its authenticated channel on 127.0.0.1: random trees
//! arrive equal, only changes travel, an interrupted copy never leaves a half-applied tree, a
//! wrong key and a tampered stream are refused with nothing written, a failing snapshot
//! command keeps the previous copy.
use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use failover::sync::{pull, serve_one, Channel, CommitGate, Key, Manifest, Store};
use tokio::net::TcpListener;

/// A small deterministic generator (xorshift), so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A temporary directory, removed on drop (also when a test fails).
struct Tmp(PathBuf);

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl std::ops::Deref for Tmp {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Tmp {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

fn tmp(name: &str) -> Tmp {
    let d = std::env::temp_dir().join(failover_harness::unique(&format!("fo-sync-{name}-")));
    fs::create_dir_all(&d).unwrap();
    Tmp(d)
}

/// Random tree: nested directories, empty, small and large files, varied permissions.
fn random_tree(root: &Path, rng: &mut Rng) {
    let mut dirs = vec![root.to_path_buf()];
    for i in 0..(10 + rng.below(20)) {
        let parent = dirs[rng.below(dirs.len() as u64) as usize].clone();
        if rng.below(4) == 0 {
            let d = parent.join(format!("d{i}"));
            fs::create_dir(&d).unwrap();
            fs::set_permissions(
                &d,
                fs::Permissions::from_mode(0o700 | (rng.below(8) as u32) << 3),
            )
            .unwrap();
            dirs.push(d);
        } else {
            let size = match rng.below(10) {
                0 => 0,
                1 => 3 * 1024 * 1024 + rng.below(100_000),
                _ => rng.below(20_000),
            };
            let data: Vec<u8> = (0..size).map(|_| rng.next() as u8).collect();
            let f = parent.join(format!("f{i}"));
            fs::write(&f, data).unwrap();
            fs::set_permissions(
                &f,
                fs::Permissions::from_mode(0o600 | (rng.below(8) as u32) << 3),
            )
            .unwrap();
        }
    }
}

/// Random changes: modify, delete, add, chmod.
fn mutate(root: &Path, rng: &mut Rng) {
    let m = Manifest::scan(root).unwrap();
    let files: Vec<&String> = m
        .entries
        .iter()
        .filter(|(_, e)| e.file.is_some())
        .map(|(p, _)| p)
        .collect();
    for p in files.iter().take(3) {
        match rng.below(3) {
            0 => fs::write(root.join(p), format!("changed {}", rng.next())).unwrap(),
            1 => fs::remove_file(root.join(p)).unwrap(),
            _ => fs::set_permissions(root.join(p), fs::Permissions::from_mode(0o640)).unwrap(),
        }
    }
    fs::write(root.join(format!("new{}", rng.next())), b"added").unwrap();
}

const KEY: [u8; 32] = [42; 32];

/// Serves one copy of `src` (snapshot command optional) and pulls it into `dst`.
async fn copy(
    src: &Path,
    dst: &Path,
    server_key: [u8; 32],
    client_key: [u8; 32],
    snapshot: Option<&str>,
) -> Result<failover::sync::CopyReport, String> {
    copy_gated(
        src,
        dst,
        server_key,
        client_key,
        snapshot,
        &CommitGate::default(),
    )
    .await
}

/// [`copy`] whose switch is allowed only while `gate` is open.
async fn copy_gated(
    src: &Path,
    dst: &Path,
    server_key: [u8; 32],
    client_key: [u8; 32],
    snapshot: Option<&str>,
    gate: &CommitGate,
) -> Result<failover::sync::CopyReport, String> {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let src = src.to_path_buf();
    let snapshot = snapshot.map(str::to_string);
    let server = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut ch = Channel::accept(s, &Key::from_bytes(server_key), 0).await?;
        serve_one(
            &mut ch,
            &src,
            snapshot.as_deref().map(|c| (c, Duration::from_secs(5))),
        )
        .await
    });
    let store = Store::open(dst).map_err(|e| e.to_string())?;
    let r = async {
        let mut ch =
            Channel::connect(addr, &Key::from_bytes(client_key), Duration::from_secs(5)).await?;
        pull(&mut ch, &store, gate).await
    }
    .await;
    let _ = server.await;
    r.map_err(|e| e.to_string())
}

fn same(a: &Path, b: &Path) {
    assert_eq!(
        Manifest::scan(a).unwrap(),
        Manifest::scan(b).unwrap(),
        "{} == {}",
        a.display(),
        b.display()
    );
}

#[tokio::test]
async fn random_trees_arrive_equal_and_only_changes_travel() {
    for seed in [1u64, 7, 1234] {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let (src, parent) = (tmp("src"), tmp("dst"));
        let dst = parent.join("data");
        random_tree(&src, &mut rng);
        let r = copy(&src, &dst, KEY, KEY, None).await.expect("first copy");
        same(&src, &dst);
        assert_eq!(r.generation.number, 1);
        assert_eq!(
            r.bytes_sent,
            Manifest::scan(&src).unwrap().bytes(),
            "first copy sends all"
        );
        for round in 2..5 {
            mutate(&src, &mut rng);
            let r = copy(&src, &dst, KEY, KEY, None).await.expect("later copy");
            same(&src, &dst);
            assert_eq!(r.generation.number, round);
            assert!(
                r.bytes_sent < 3 * 1024 * 1024 || r.files_sent <= 4,
                "seed {seed}: only changed files travel ({r:?})"
            );
        }
        // Only the current generation remains beside the data directory.
        let beside: Vec<_> = fs::read_dir(&parent)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            beside.len(),
            4,
            "data, data.gen-N, its .meta and .manifest: {beside:?}"
        );
        fs::remove_dir_all(src).unwrap();
        fs::remove_dir_all(parent).unwrap();
    }
}

#[tokio::test]
async fn interrupted_copies_never_leave_a_half_applied_tree() {
    let mut rng = Rng(99);
    let (src, parent) = (tmp("isrc"), tmp("idst"));
    let dst = parent.join("data");
    random_tree(&src, &mut rng);
    copy(&src, &dst, KEY, KEY, None).await.expect("first copy");
    for attempt in 0..12 {
        let old = Manifest::scan(&dst).unwrap();
        mutate(&src, &mut rng);
        // A large file, so the copy takes long enough to be cut at a random point.
        fs::write(src.join("big"), vec![attempt as u8; 4 * 1024 * 1024]).unwrap();
        let new = Manifest::scan(&src).unwrap();
        let cut = Duration::from_micros(rng.below(40_000));
        // Cut the copy (the client's future is dropped mid-way: a kill -9 of either side looks
        // the same to the store), then reopen the store as a restarted daemon would.
        let _ = tokio::time::timeout(cut, copy(&src, &dst, KEY, KEY, None)).await;
        let store = Store::open(&dst).unwrap();
        let now = Manifest::scan(&dst).unwrap_or_default();
        assert!(
            now == old || now == new,
            "attempt {attempt} cut after {cut:?}: the data is neither the previous nor the new copy"
        );
        let beside = fs::read_dir(&parent)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains("staging"))
            .count();
        assert_eq!(beside, 0, "staging removed by Store::open");
        drop(store);
        // Finish it, so the next round starts from a known copy.
        copy(&src, &dst, KEY, KEY, None)
            .await
            .expect("complete copy");
        same(&src, &dst);
    }
    fs::remove_dir_all(src).unwrap();
    fs::remove_dir_all(parent).unwrap();
}

/// A copy whose gate closed (monitoring stopped for a takeover) never switches the directory:
/// it ends as cancelled, the previous copy stays current and nothing of the new one is left.
#[tokio::test]
async fn a_closed_commit_gate_keeps_the_previous_copy() {
    let t = tmp("gate");
    let (src, dst) = (t.0.join("src"), t.0.join("dst").join("data"));
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("state"), "v1").unwrap();
    copy(&src, &dst, KEY, KEY, None).await.expect("first copy");
    fs::write(src.join("state"), "v2").unwrap();
    let gate = CommitGate::default();
    gate.close();
    let e = copy_gated(&src, &dst, KEY, KEY, None, &gate)
        .await
        .expect_err("a closed gate cancels the switch");
    assert!(e.contains("stopped before the switch"), "{e}");
    assert_eq!(fs::read_to_string(dst.join("state")).unwrap(), "v1");
    let store = Store::open(&dst).unwrap();
    assert_eq!(store.current().unwrap().map(|g| g.number), Some(1));
    let left: Vec<_> = fs::read_dir(dst.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("gen-2") || n.contains("staging"))
        .collect();
    assert!(
        left.is_empty(),
        "nothing of the cancelled copy is left: {left:?}"
    );
}

#[tokio::test]
async fn a_wrong_key_is_refused_and_nothing_is_written() {
    let (src, parent) = (tmp("ksrc"), tmp("kdst"));
    let dst = parent.join("data");
    fs::write(src.join("f"), b"secret data").unwrap();
    let e = copy(&src, &dst, KEY, [1; 32], None).await.unwrap_err();
    assert!(e.contains("does not") && e.contains("same key"), "{e}");
    assert!(fs::symlink_metadata(&dst).is_err(), "nothing was written");
    assert_eq!(fs::read_dir(&parent).unwrap().count(), 0);
    fs::remove_dir_all(src).unwrap();
    fs::remove_dir_all(parent).unwrap();
}

#[tokio::test]
async fn a_failing_snapshot_command_keeps_the_previous_copy() {
    let (src, parent) = (tmp("ssrc"), tmp("sdst"));
    let dst = parent.join("data");
    fs::write(src.join("f"), b"one").unwrap();
    copy(&src, &dst, KEY, KEY, Some("true"))
        .await
        .expect("copy with a snapshot");
    fs::write(src.join("f"), b"two").unwrap();
    let e = copy(&src, &dst, KEY, KEY, Some("echo disk busy >&2; exit 3"))
        .await
        .unwrap_err();
    assert!(e.contains("snapshot") && e.contains("disk busy"), "{e}");
    assert_eq!(
        fs::read(dst.join("f")).unwrap(),
        b"one",
        "previous copy kept"
    );
    fs::remove_dir_all(src).unwrap();
    fs::remove_dir_all(parent).unwrap();
}

#[tokio::test]
async fn a_tampered_stream_is_detected_and_discarded() {
    let (src, parent) = (tmp("tsrc"), tmp("tdst"));
    let dst = parent.join("data");
    fs::write(src.join("f"), vec![5u8; 200_000]).unwrap();
    copy(&src, &dst, KEY, KEY, None).await.expect("first copy");
    fs::write(src.join("f"), vec![6u8; 200_000]).unwrap();
    // A relay that flips one bit in the primary's data, after the handshake.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, relay_addr) = (l.local_addr().unwrap(), relay.local_addr().unwrap());
    let src2 = src.to_path_buf();
    let server = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut ch = Channel::accept(s, &Key::from_bytes(KEY), 0).await?;
        serve_one(&mut ch, &src2, None).await
    });
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (c, _) = relay.accept().await.unwrap();
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut cr, mut cw) = c.into_split();
        let (mut sr, mut sw) = s.into_split();
        tokio::spawn(async move { tokio::io::copy(&mut cr, &mut sw).await });
        let mut buf = vec![0u8; 65536];
        let mut total = 0usize;
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let flip = (total..total + n).contains(&100_000);
            if flip {
                buf[100_000 - total] ^= 0x01;
            }
            total += n;
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    let store = Store::open(&dst).unwrap();
    let mut ch = Channel::connect(relay_addr, &Key::from_bytes(KEY), Duration::from_secs(5))
        .await
        .unwrap();
    let e = pull(&mut ch, &store, &CommitGate::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("failed authentication"), "{e}");
    let _ = server.await;
    assert_eq!(
        fs::read(dst.join("f")).unwrap(),
        vec![5u8; 200_000],
        "previous copy kept"
    );
    fs::remove_dir_all(src).unwrap();
    fs::remove_dir_all(parent).unwrap();
}

#[tokio::test]
async fn a_small_change_to_a_large_file_travels_as_a_delta() {
    let (src, parent) = (tmp("dsrc"), tmp("ddst"));
    let dst = parent.join("data");
    let mut rng = Rng(5);
    let big: Vec<u8> = (0..8 * 1024 * 1024).map(|_| rng.next() as u8).collect();
    fs::write(src.join("db"), &big).unwrap();
    let r = copy(&src, &dst, KEY, KEY, None).await.expect("first copy");
    assert_eq!(r.bytes_sent, big.len() as u64, "first copy is whole");
    // Change 1 % in the middle and append a little.
    let mut changed = big.clone();
    for b in &mut changed[4_000_000..4_083_886] {
        *b = b.wrapping_add(1);
    }
    changed.extend_from_slice(b"appended");
    fs::write(src.join("db"), &changed).unwrap();
    let r = copy(&src, &dst, KEY, KEY, None).await.expect("delta copy");
    same(&src, &dst);
    assert_eq!(r.bytes_changed, changed.len() as u64);
    assert!(
        r.bytes_sent < changed.len() as u64 / 20,
        "a delta travelled, not the file: {r:?}"
    );
    eprintln!("8 MiB file, 1 % changed: {} bytes sent", r.bytes_sent);
    fs::remove_dir_all(src).unwrap();
    fs::remove_dir_all(parent).unwrap();
}

/// Unmounts (and removes) a tmpfs on drop, also when the test fails.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A full disk on the monitor: the copy fails naming the file and the error, the previous copy
/// stays current, and the half-written stage is removed when the store is reopened.
#[tokio::test]
async fn a_full_disk_keeps_the_previous_copy() {
    failover_harness::require_root("sync disk full (tmpfs mount)");
    let src = tmp("fsrc");
    let mnt_dir = tmp("fmnt");
    let mnt = Tmpfs(mnt_dir.to_path_buf());
    failover_harness::run(
        "mount",
        [
            "-t",
            "tmpfs",
            "-o",
            "size=2m",
            "fo-sync-full",
            mnt.0.to_str().unwrap(),
        ],
    );
    let dst = mnt.0.join("data");
    fs::write(src.join("small"), b"fits").unwrap();
    copy(&src, &dst, KEY, KEY, None).await.expect("small copy");
    fs::write(src.join("big"), vec![1u8; 3 * 1024 * 1024]).unwrap();
    let e = copy(&src, &dst, KEY, KEY, None).await.unwrap_err();
    assert!(e.contains("big") && e.contains("No space left"), "{e}");
    assert_eq!(fs::read(dst.join("small")).unwrap(), b"fits");
    assert!(
        fs::symlink_metadata(dst.join("big")).is_err(),
        "previous copy, not a mix"
    );
    Store::open(&dst).unwrap();
    let staging = fs::read_dir(&mnt.0)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("staging"))
        .count();
    assert_eq!(staging, 0);
    fs::remove_dir_all(src).unwrap();
}
