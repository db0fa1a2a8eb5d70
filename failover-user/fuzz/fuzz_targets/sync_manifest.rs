//! `sync_manifest`: what a copy decodes from the other side after the handshake, through the
//! real public API (`pull` and `serve_one` on an authenticated loopback channel):
//! - mode bit 0 clear, `pull` (the monitor): the primary's offer (`Offer::Manifest(Manifest)`
//!   JSON, or `Failed`), the manifest's path check, and the file frames (data, delta, trailer,
//!   gone), applied to a store whose current generation holds `a` (4 KiB) and `d/`. After it:
//!   a copy that succeeded is generation 2 and holds exactly its manifest; one that failed
//!   left generation 1 current and unchanged; nothing was written outside the store.
//! - mode bit 0 set, `serve_one` (the primary): the monitor's request (`have` hashes), its list
//!   of paths with signatures and the signatures themselves (fast_rsync), served from a small
//!   tree.
//!
//! Input: one mode byte, then records (`failover_fuzz::records`) the peer sends in order.
#![no_main]

use std::{path::Path, sync::OnceLock, time::Duration};

use failover::sync::{pull, serve_one, Channel, CommitGate, Key, Manifest, Store};
use failover_fuzz::{drain, records, runtime, scratch, tcp_pair, write_seeds, Peer, Send, KEY};
use libfuzzer_sys::fuzz_target;

/// The current generation's file `a`.
fn base_a() -> Vec<u8> {
    (0..4096u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// A fresh store at `work/s/data` holding generation 1: `a` and the directory `d`.
fn seeded_store(work: &Path) -> (Store, Manifest) {
    let dir = work.join("s").join("data");
    let store = Store::open(&dir).expect("open store");
    let mut st = store.stage().expect("stage");
    st.dir("d", 0o755).expect("dir");
    std::io::Write::write_all(&mut st.create("a").expect("create"), &base_a()).expect("write");
    st.finish("a", 0o644).expect("finish");
    let m = Manifest::scan(st.path()).expect("scan stage");
    let g = store
        .commit(st, &m, &CommitGate::default())
        .expect("commit");
    assert_eq!(g.number, 1);
    (store, m)
}

/// The primary's tree for `serve_one`: `a` (as in the store, then changed), `d/b`.
fn serve_root() -> &'static Path {
    static R: OnceLock<std::path::PathBuf> = OnceLock::new();
    R.get_or_init(|| {
        let r = scratch("serve");
        let mut a = base_a();
        a[100..110].copy_from_slice(b"0123456789");
        std::fs::write(r.join("a"), a).unwrap();
        std::fs::create_dir(r.join("d")).unwrap();
        std::fs::write(r.join("d").join("b"), b"bee\n").unwrap();
        r
    })
}

fn offer(m: &Manifest) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "Manifest": m })).unwrap()
}

fn trailer(data: &[u8]) -> Vec<u8> {
    let mut t = vec![1u8];
    t.extend_from_slice(&(data.len() as u64).to_be_bytes());
    t.extend_from_slice(blake3::hash(data).to_hex().as_bytes());
    t
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    use failover_fuzz::encode_records as enc;
    let work = scratch("seeds");
    let (_, m1) = seeded_store(&work);
    let _ = std::fs::remove_dir_all(&work);
    let mut new_a = base_a();
    new_a[100..110].copy_from_slice(b"0123456789");
    let mut m2 = m1.clone();
    let e = m2.entries.get_mut("a").unwrap();
    let f = e.file.as_mut().unwrap();
    f.hash = blake3::hash(&new_a).to_hex().to_string();
    f.size = new_a.len() as u64;
    // A new file: a copy of `a`'s entry (whatever fields it has) with its own mode and sum.
    let mut n = m2.entries["a"].clone();
    n.mode = 0o600;
    n.file = Some(failover::sync::FileSum {
        size: 3,
        hash: blake3::hash(b"new").to_hex().to_string(),
    });
    m2.entries.insert("d/n".into(), n);
    let sig = fast_rsync::Signature::calculate(
        &base_a(),
        fast_rsync::SignatureOptions {
            block_size: 1024,
            crypto_hash_size: 8,
        },
    );
    let mut delta = Vec::new();
    fast_rsync::diff(&sig.index(), &new_a, &mut delta).unwrap();
    let data_frame = |d: &[u8]| [&[0u8][..], d].concat();
    let delta_frame = [&[3u8][..], &delta].concat();
    let m2o = offer(&m2);
    let pull_whole = [
        vec![0u8],
        enc(&[
            Send::Message(&m2o),
            Send::Frame(&data_frame(&new_a)),
            Send::Frame(&trailer(&new_a)),
            Send::Frame(&data_frame(b"new")),
            Send::Frame(&trailer(b"new")),
        ]),
    ]
    .concat();
    let pull_delta = [
        vec![0u8],
        enc(&[
            Send::Message(&m2o),
            Send::Frame(&delta_frame),
            Send::Frame(&trailer(&new_a)),
            Send::Frame(&[2]),
        ]),
    ]
    .concat();
    let pull_same = [vec![0u8], enc(&[Send::Message(&offer(&m1))])].concat();
    let pull_escape = [
        vec![0u8],
        enc(&[Send::Message(
            br#"{"Manifest":{"entries":{"../x":{"mode":420,"file":null}}}}"#,
        )]),
    ]
    .concat();
    let pull_failed = [
        vec![0u8],
        enc(&[Send::Message(br#"{"Failed":"snapshot"}"#)]),
    ]
    .concat();
    let sig_bytes = sig.into_serialized();
    let serve_sig = [
        vec![1u8],
        enc(&[
            Send::Message(br#"{"have":{"a":"x"}}"#),
            Send::Message(br#"["a"]"#),
            Send::Message(&sig_bytes),
        ]),
    ]
    .concat();
    let serve_have = [
        vec![1u8],
        enc(&[Send::Message(br#"{"have":{}}"#), Send::Message(b"[]")]),
    ]
    .concat();
    vec![
        ("pull-whole", pull_whole),
        ("pull-delta", pull_delta),
        ("pull-same", pull_same),
        ("pull-escape", pull_escape),
        ("pull-failed", pull_failed),
        ("serve-sig", serve_sig),
        ("serve-have", serve_have),
    ]
}

fuzz_target!(
    init: {
        write_seeds(&seeds());
    },
    |data: &[u8]| {
        let Some((&mode, rest)) = data.split_first() else {
            return;
        };
        let recs = records(rest);
        let key = Key::from_bytes(KEY);
        let work = (mode & 1 == 0).then(|| scratch("pull"));
        let seeded = work.as_deref().map(seeded_store);
        runtime().block_on(async {
            let (ours, theirs) = tcp_pair().await;
            let lib = async {
                let mut ch = Channel::accept(theirs, &key, 0).await.expect("handshake");
                match &seeded {
                    Some((store, _)) => Some(pull(&mut ch, store, &CommitGate::default()).await),
                    None => {
                        let _ = serve_one(&mut ch, serve_root(), None).await;
                        None
                    }
                }
            };
            let peer = async {
                let (mut p, rd) = Peer::handshake(ours).await.expect("peer handshake");
                tokio::join!(p.send_all(&recs), drain(rd, Duration::from_secs(10)));
            };
            let (got, _) = tokio::join!(lib, peer);
            let (Some(work), Some((store, m1)), Some(got)) = (&work, &seeded, got) else {
                return;
            };
            let dir = work.join("s").join("data");
            let now = Manifest::scan(&dir).expect("scan the data directory");
            match got {
                Ok(report) => {
                    assert_eq!(report.generation.number, 2);
                    assert_eq!(store.current_manifest().expect("manifest"), now, "the copy differs from its manifest");
                }
                Err(e) => {
                    assert_eq!(store.current().expect("current").map(|g| g.number), Some(1), "{e}");
                    assert_eq!(&now, m1, "a failed copy changed the data: {e}");
                }
            }
            // Nothing outside the store's own names.
            let names = |p: &Path| -> Vec<String> {
                std::fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
            };
            assert_eq!(names(work), ["s"], "a copy wrote outside the store");
            for n in names(&work.join("s")) {
                assert!(n == "data" || n.starts_with("data."), "a copy wrote {n} beside the store");
            }
            let _ = std::fs::remove_dir_all(work);
        });
    }
);
