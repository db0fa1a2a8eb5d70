//! Copies between a primary and a monitor on 127.0.0.1 through the real channel: what a copy
//! carries beside the content (owners, modes, mtimes, symlinks), and what it refuses, on
//! either side. The owners need root; as another user those tests say so and pass.
use std::{
    fs::{self, File},
    os::unix::fs::{lchown, symlink, MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::net::TcpListener;

use super::{
    nofollow::set_mtime, pull_with, serve_one_at, test_dir, Channel, CommitGate, CopyReport, Key,
    Manifest, PullOptions, Store,
};

const KEY: [u8; 32] = [9; 32];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One copy of `src` into the store at `dst`, `serve_one` against `pull_with`.
fn copy(src: &Path, dst: &Path, opts: PullOptions) -> Result<CopyReport, String> {
    copy_at(src, dst, opts, 0)
}

/// [`copy`] from a primary at `epoch`.
fn copy_at(src: &Path, dst: &Path, opts: PullOptions, epoch: u64) -> Result<CopyReport, String> {
    runtime().block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let src = src.to_path_buf();
        let server = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let mut ch = Channel::accept(s, &Key::from_bytes(KEY), 0).await?;
            serve_one_at(&mut ch, &src, None, epoch).await
        });
        let store = Store::open(dst).map_err(|e| e.to_string())?;
        let r = async {
            let key = Key::from_bytes(KEY);
            let mut ch = Channel::connect(addr, &key, Duration::from_secs(5)).await?;
            pull_with(&mut ch, &store, &CommitGate::default(), opts).await
        }
        .await;
        let _ = server.await;
        r.map_err(|e| e.to_string())
    })
}

/// A pull from a fake primary that answers the request with `offer` (raw JSON).
fn pull_offer(dst: &Path, offer: &str) -> Result<CopyReport, String> {
    runtime().block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let offer = offer.as_bytes().to_vec();
        let server = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let mut ch = Channel::accept(s, &Key::from_bytes(KEY), 0).await.unwrap();
            let _: serde_json::Value = ch.recv_json().await.unwrap();
            ch.send(&offer).await.unwrap();
            let _ = ch.recv_frame().await;
        });
        let store = Store::open(dst).map_err(|e| e.to_string())?;
        let r = async {
            let key = Key::from_bytes(KEY);
            let mut ch = Channel::connect(addr, &key, Duration::from_secs(5)).await?;
            pull_with(
                &mut ch,
                &store,
                &CommitGate::default(),
                PullOptions::default(),
            )
            .await
        }
        .await;
        drop(store);
        let _ = server.await;
        r.map_err(|e| e.to_string())
    })
}

/// Whether this test can set owners; says so when it cannot.
fn root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("{test}: needs root to set owners; not run");
    }
    root
}

/// (uid, gid, mode, mtime, mtime_ns) of `p` itself.
fn attrs(p: &Path) -> (u32, u32, u32, i64, i64) {
    let m = fs::symlink_metadata(p).unwrap();
    (
        m.uid(),
        m.gid(),
        m.mode() & 0o7777,
        m.mtime(),
        m.mtime_nsec(),
    )
}

fn mode(p: &Path) -> u32 {
    attrs(p).2
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn ino(p: &Path) -> u64 {
    fs::symlink_metadata(p).unwrap().ino()
}

/// A scratch directory with `src` and the monitor's `dst/data`; removed on drop.
struct Pair {
    top: PathBuf,
    src: PathBuf,
    dst: PathBuf,
}

impl Pair {
    fn new(name: &str) -> Pair {
        let top = test_dir(name);
        let (src, dst) = (top.join("src"), top.join("dst").join("data"));
        fs::create_dir_all(&src).unwrap();
        Pair { top, src, dst }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.top);
    }
}

/// A PostgreSQL-style tree, everything owned by 70:70: `wal/`, `data/` with `PG_VERSION`,
/// `base/1/1234` and `pg_wal -> ../wal`, a sticky `tmp/`. Every entry gets its own mtime (to
/// the nanosecond), directories last. Returns the paths, relative.
fn pg_tree(src: &Path) -> Vec<&'static str> {
    for d in ["wal", "data", "data/base", "data/base/1", "tmp"] {
        fs::create_dir(src.join(d)).unwrap();
        chmod(&src.join(d), 0o700);
    }
    chmod(&src.join("tmp"), 0o1777);
    for (f, body) in [
        ("wal/000000010000000000000001", "wal segment"),
        ("data/PG_VERSION", "16\n"),
        ("data/base/1/1234", "a relation"),
    ] {
        fs::write(src.join(f), body).unwrap();
        chmod(&src.join(f), 0o600);
    }
    symlink("../wal", src.join("data/pg_wal")).unwrap();
    chmod(src, 0o700);
    let all = vec![
        "wal/000000010000000000000001",
        "data/PG_VERSION",
        "data/base/1/1234",
        "data/pg_wal",
        "data/base/1",
        "data/base",
        "data",
        "wal",
        "tmp",
        "",
    ];
    for (i, rel) in all.iter().enumerate() {
        let p = if rel.is_empty() {
            src.to_path_buf()
        } else {
            src.join(rel)
        };
        lchown(&p, Some(70), Some(70)).unwrap();
        set_mtime(&p, 1_600_000_000 + i as i64, 123_456_789 + i as u32).unwrap();
    }
    all
}

#[test]
fn owners_modes_mtimes_and_links_arrive_as_they_are() {
    if !root("owners_modes_mtimes_and_links_arrive_as_they_are") {
        return;
    }
    let t = Pair::new("pg");
    let all = pg_tree(&t.src);
    let r = copy(&t.src, &t.dst, PullOptions::default()).unwrap();
    assert_eq!(r.generation.number, 1);
    for (i, rel) in all.iter().enumerate() {
        let (s, d) = (t.src.join(rel), t.dst.join(rel));
        let (s, d) = if rel.is_empty() {
            (t.src.clone(), fs::canonicalize(&t.dst).unwrap())
        } else {
            (s, d)
        };
        assert_eq!(attrs(&s), attrs(&d), "{rel:?}");
        let want = (1_600_000_000 + i as i64, 123_456_789 + i as i64);
        assert_eq!((attrs(&d).3, attrs(&d).4), want, "{rel:?}: mtime");
        assert_eq!((attrs(&d).0, attrs(&d).1), (70, 70), "{rel:?}: owner");
    }
    assert_eq!(mode(&t.dst.join("tmp")), 0o1777, "sticky bit kept");
    assert_eq!(mode(&t.dst.join("data/base/1/1234")), 0o600);
    let link = t.dst.join("data/pg_wal");
    assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("../wal"));
    assert_eq!(
        fs::read_to_string(link.join("000000010000000000000001")).unwrap(),
        "wal segment",
        "the link resolves inside the copy"
    );
    assert_eq!(
        Manifest::scan(&t.src).unwrap(),
        Manifest::scan(&t.dst).unwrap()
    );
    // Nothing changed: nothing travels, the files are the previous copy's.
    let before = ino(&t.dst.join("data/PG_VERSION"));
    let r = copy(&t.src, &t.dst, PullOptions::default()).unwrap();
    assert_eq!((r.generation.number, r.files_sent), (2, 0));
    assert_eq!(ino(&t.dst.join("data/PG_VERSION")), before, "hard-linked");
    assert_eq!(
        Manifest::scan(&t.src).unwrap(),
        Manifest::scan(&t.dst).unwrap()
    );
}

#[test]
fn setuid_and_setgid_are_dropped_unless_kept_and_the_sticky_bit_stays() {
    let t = Pair::new("setid");
    fs::write(t.src.join("prog"), "#!/bin/sh\n").unwrap();
    chmod(&t.src.join("prog"), 0o4755);
    fs::write(t.src.join("grp"), "x").unwrap();
    chmod(&t.src.join("grp"), 0o2750);
    fs::create_dir(t.src.join("shared")).unwrap();
    chmod(&t.src.join("shared"), 0o3775);
    copy(&t.src, &t.dst, PullOptions::default()).unwrap();
    assert_eq!(mode(&t.dst.join("prog")), 0o755);
    assert_eq!(mode(&t.dst.join("grp")), 0o750);
    assert_eq!(
        mode(&t.dst.join("shared")),
        0o3775,
        "a directory keeps setgid and sticky"
    );
    let old = File::open(t.dst.join("prog")).unwrap();
    let r = copy(
        &t.src,
        &t.dst,
        PullOptions {
            keep_setid: true,
            ..PullOptions::default()
        },
    )
    .unwrap();
    assert_eq!(r.files_sent, 0, "the content was here already");
    assert_eq!(mode(&t.dst.join("prog")), 0o4755);
    assert_eq!(mode(&t.dst.join("grp")), 0o2750);
    assert_eq!(
        old.metadata().unwrap().mode() & 0o7777,
        0o755,
        "the previous copy's file is not changed"
    );
}

#[test]
fn an_owner_mode_or_mtime_change_alone_makes_a_new_file_and_leaves_the_previous_one() {
    if !root("an_owner_mode_or_mtime_change_alone_makes_a_new_file") {
        return;
    }
    let t = Pair::new("owner");
    let (f, g) = (t.src.join("f"), t.src.join("g"));
    fs::write(&f, "same content").unwrap();
    fs::write(&g, "untouched").unwrap();
    chmod(&f, 0o600);
    lchown(&f, Some(70), Some(70)).unwrap();
    copy(&t.src, &t.dst, PullOptions::default()).unwrap();
    let old = File::open(t.dst.join("f")).unwrap();
    let g_ino = ino(&t.dst.join("g"));

    lchown(&f, Some(71), Some(72)).unwrap();
    chmod(&f, 0o640);
    let r = copy(&t.src, &t.dst, PullOptions::default()).unwrap();
    assert_eq!((r.generation.number, r.files_sent), (2, 0));
    let now = t.dst.join("f");
    assert_eq!((attrs(&now).0, attrs(&now).1, mode(&now)), (71, 72, 0o640));
    assert_eq!(fs::read_to_string(&now).unwrap(), "same content");
    let was = old.metadata().unwrap();
    assert_eq!(
        (was.uid(), was.gid(), was.mode() & 0o7777),
        (70, 70, 0o600),
        "the previous generation's file is untouched"
    );
    assert_ne!(was.ino(), ino(&now));
    assert_eq!(ino(&t.dst.join("g")), g_ino, "unchanged: still linked");

    let old = File::open(&now).unwrap();
    let old_mtime = old.metadata().unwrap().mtime();
    set_mtime(&f, 1_500_000_000, 7).unwrap();
    copy(&t.src, &t.dst, PullOptions::default()).unwrap();
    assert_eq!((attrs(&now).3, attrs(&now).4), (1_500_000_000, 7));
    assert_eq!(old.metadata().unwrap().mtime(), old_mtime);
    assert_eq!(
        Manifest::scan(&t.src).unwrap(),
        Manifest::scan(&t.dst).unwrap()
    );
}

#[test]
fn links_that_could_lead_out_are_refused_by_name_and_the_previous_copy_stays() {
    let t = Pair::new("escape");
    fs::create_dir(t.src.join("sub")).unwrap();
    fs::write(t.src.join("a"), "v1").unwrap();
    copy(&t.src, &t.dst, PullOptions::default()).unwrap();
    for (rel, target, why) in [
        ("sub/x", "../../etc", "leads out"),
        ("abs", "/etc", "absolute"),
    ] {
        let p = t.src.join(rel);
        symlink(target, &p).unwrap();
        fs::write(t.src.join("a"), "v2").unwrap();
        let e = copy(&t.src, &t.dst, PullOptions::default()).unwrap_err();
        assert!(
            e.contains(&p.display().to_string()) && e.contains("symlink") && e.contains(why),
            "{e}"
        );
        let store = Store::open(&t.dst).unwrap();
        assert_eq!(store.current().unwrap().map(|g| g.number), Some(1));
        assert_eq!(fs::read_to_string(t.dst.join("a")).unwrap(), "v1");
        fs::remove_file(p).unwrap();
    }
}

#[test]
fn a_manifest_writing_outside_or_through_a_link_is_refused_before_anything_is_written() {
    let t = Pair::new("hostile");
    let outside = t.top.join("outside");
    fs::create_dir(&outside).unwrap();
    let attrs = r#""mode":420,"uid":0,"gid":0,"mtime":0,"mtime_ns":0"#;
    let dir = format!(r#"{{{attrs},"file":null}}"#);
    let file = format!(
        r#"{{{attrs},"file":{{"size":1,"hash":"{}"}}}}"#,
        "0".repeat(64)
    );
    let link = |t: &str| format!(r#"{{{attrs},"file":null,"link":"{t}"}}"#);
    let offer = |format: u32, entries: &str| {
        format!(r#"{{"Manifest":{{"format":{format},"root":null,"entries":{{{entries}}}}}}}"#)
    };
    for (entries, why) in [
        (format!(r#""../outside/x":{file}"#), "escapes"),
        (format!(r#""/tmp/x":{file}"#), "escapes"),
        (format!(r#""a\u0000b":{file}"#), "escapes"),
        (format!(r#""a/./b":{file}"#), "escapes"),
        (
            format!(r#""l":{},"l/x":{file}"#, link("../../outside")),
            "leads out",
        ),
        (
            format!(r#""d":{dir},"l":{},"l/x":{file}"#, link("d")),
            "not below a directory",
        ),
        (format!(r#""x":{}"#, link("/etc")), "absolute"),
    ] {
        let e = pull_offer(&t.dst, &offer(2, &entries)).unwrap_err();
        assert!(
            e.contains("manifest refused") && e.contains(why),
            "{entries}: {e}"
        );
    }
    let e = pull_offer(&t.dst, &offer(0, "")).unwrap_err();
    assert!(e.contains("same failover version"), "{e}");
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing outside"
    );
    let beside: Vec<_> = fs::read_dir(t.dst.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(beside.is_empty(), "no copy, no stage: {beside:?}");
}

/// A host that served its own data at a later epoch than the offering primary's refuses the
/// copy (its data stays as it is); an offer from a later epoch is taken, and the served data
/// kept aside. The generation records the epoch it came from.
#[test]
fn own_data_newer_than_the_offer_is_not_replaced() {
    let p = Pair::new("newer-here");
    fs::write(p.src.join("f"), "the primary's").unwrap();
    copy_at(&p.src, &p.dst, PullOptions::default(), 3).unwrap();
    let store = Store::open(&p.dst).unwrap();
    store.mark_served(7).unwrap();
    fs::write(p.dst.join("f"), "served here at epoch 7").unwrap();
    let err = copy_at(&p.src, &p.dst, PullOptions::default(), 5).unwrap_err();
    assert!(err.contains("newer than the primary's (epoch 5)"), "{err}");
    assert_eq!(
        fs::read_to_string(p.dst.join("f")).unwrap(),
        "served here at epoch 7"
    );
    let rep = copy_at(&p.src, &p.dst, PullOptions::default(), 8).unwrap();
    assert_eq!(rep.generation.epoch, 8);
    assert_eq!(
        fs::read_to_string(p.dst.join("f")).unwrap(),
        "the primary's"
    );
    let aside = Store::open(&p.dst).unwrap().diverged().unwrap();
    assert_eq!(aside.len(), 1);
    assert_eq!(
        fs::read_to_string(aside[0].join("f")).unwrap(),
        "served here at epoch 7"
    );
}

/// The data mark orders two hosts' data: by the epoch it was served at, then data served
/// here above a copy of the same epoch, then copies by generation.
#[test]
fn the_data_mark_orders_by_epoch_then_served_then_generation() {
    let p = Pair::new("data-mark");
    fs::write(p.src.join("f"), "x").unwrap();
    let store = Store::open(&p.dst).unwrap();
    assert_eq!(store.data_mark().unwrap(), 0, "nothing yet");
    copy_at(&p.src, &p.dst, PullOptions::default(), 3).unwrap();
    let first = store.data_mark().unwrap();
    fs::write(p.src.join("f"), "y").unwrap();
    copy_at(&p.src, &p.dst, PullOptions::default(), 3).unwrap();
    let second = store.data_mark().unwrap();
    assert!(0 < first && first < second, "{first} {second}");
    store.mark_served(3).unwrap();
    let served_3 = store.data_mark().unwrap();
    assert!(second < served_3, "served at 3 beats every copy from 3");
    // A copy of the same epoch 4 on another host outranks what was served at 3.
    let other = Pair::new("data-mark-other");
    fs::write(other.src.join("f"), "z").unwrap();
    copy_at(&other.src, &other.dst, PullOptions::default(), 4).unwrap();
    let copy_4 = Store::open(&other.dst).unwrap().data_mark().unwrap();
    assert!(served_3 < copy_4, "{served_3} {copy_4}");
}
