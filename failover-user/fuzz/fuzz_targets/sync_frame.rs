//! `sync_frame`: the sync channel's framing as the library reads it from the peer's TCP bytes:
//! `read_frame` (u16 length prefix), Noise decryption, and `Channel::recv`'s message assembly
//! (the 8-byte length header, the limit, the frames that follow), through the real public API
//! (`Channel::accept` on a loopback connection) against a fuzzing peer.
//!
//! Input: one mode byte, then records (`failover_fuzz::records`).
//! - mode bit 0 set: pre-authentication. The bytes go raw to `Channel::accept`, which must
//!   refuse them: nobody without the key may get a channel.
//! - else: the peer completes the handshake with the right key and sends the records
//!   (messages, single encrypted frames, raw bytes); the library calls `recv(limit)` until it
//!   fails, with the limit from mode bits 1-2 (2^28 as `recv_json`, 2^30 as a signature, 16,
//!   0). What it returns must equal a model of the protocol computed from the records: every
//!   message within the limit, exactly the bytes sent, none after a frame the key did not
//!   encrypt.
#![no_main]

use std::time::Duration;

use failover::sync::{Channel, Key};
use failover_fuzz::{drain, records, runtime, tcp_pair, write_seeds, Peer, Send, KEY, MAX_PLAIN};
use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncWriteExt as _;

const CHUNK: usize = 65000;
const LIMITS: [u64; 4] = [1 << 28, 1 << 30, 16, 0];

/// The plaintext frames the peer sends, up to the first raw record that changes the stream.
fn frames(recs: &[Send<'_>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for r in recs {
        match r {
            Send::Message(d) => {
                let mut first = (d.len() as u64).to_be_bytes().to_vec();
                let take = d.len().min(CHUNK - 8);
                first.extend_from_slice(&d[..take]);
                out.push(first);
                out.extend(d[take..].chunks(CHUNK).map(<[u8]>::to_vec));
            }
            Send::Frame(f) => out.push(f[..f.len().min(MAX_PLAIN)].to_vec()),
            Send::Raw([]) => {}
            Send::Raw(_) => break,
        }
    }
    out
}

/// What `recv(limit)` must return, message by message, for these frames.
fn model(frames: &[Vec<u8>], limit: u64) -> Vec<Vec<u8>> {
    let mut msgs = Vec::new();
    let mut it = frames.iter();
    while let Some(first) = it.next() {
        if first.len() < 8 {
            break;
        }
        let len = u64::from_be_bytes(first[..8].try_into().unwrap());
        if len > limit {
            break;
        }
        let mut m = first[8..].to_vec();
        while (m.len() as u64) < len {
            match it.next() {
                Some(f) => m.extend_from_slice(f),
                None => return msgs,
            }
        }
        if m.len() as u64 != len {
            break;
        }
        msgs.push(m);
    }
    msgs
}

fuzz_target!(
    init: {
        use failover_fuzz::encode_records as enc;
        write_seeds(&[
            ("preauth", [&[1u8][..], &[0, 48], &[0xaa; 48]].concat()),
            ("two-messages", [vec![0u8], enc(&[Send::Message(b"{\"have\":{}}"), Send::Message(b"[]")])].concat()),
            ("split-message", [vec![0u8], enc(&[Send::Frame(&[0, 0, 0, 0, 0, 0, 0, 6, b'a', b'b']), Send::Frame(b"cdef")])].concat()),
            ("over-limit", [vec![4u8], enc(&[Send::Message(&[b'x'; 40])])].concat()),
            ("raw-after", [vec![0u8], enc(&[Send::Message(b"ok"), Send::Raw(&[0, 3, 1, 2, 3])])].concat()),
        ]);
    },
    |data: &[u8]| {
        let Some((&mode, rest)) = data.split_first() else {
            return;
        };
        let key = Key::from_bytes(KEY);
        runtime().block_on(async {
            let (mut ours, theirs) = tcp_pair().await;
            if mode & 1 == 1 {
                let lib = async { Channel::accept(theirs, &key, 0).await.map(drop) };
                let peer = async {
                    let _ = ours.write_all(rest).await;
                    let _ = ours.shutdown().await;
                    let (rd, _wr) = ours.into_split();
                    drain(rd, Duration::from_secs(10)).await;
                };
                let (got, ()) = tokio::join!(lib, peer);
                assert!(got.is_err(), "a peer without the key got a channel");
                return;
            }
            let limit = LIMITS[usize::from((mode >> 1) & 3)];
            let recs = records(rest);
            let lib = async {
                let mut ch = Channel::accept(theirs, &key, 0)
                    .await
                    .expect("handshake with the right key");
                let mut got = Vec::new();
                while let Ok(m) = ch.recv(limit).await {
                    assert!(m.len() as u64 <= limit, "a message over the limit");
                    got.push(m);
                }
                got
            };
            let peer = async {
                let (mut p, rd) = Peer::handshake(ours).await.expect("peer handshake");
                tokio::join!(p.send_all(&recs), drain(rd, Duration::from_secs(10)));
            };
            let (got, ()) = tokio::join!(lib, peer);
            let want = model(&frames(&recs), limit);
            assert_eq!(got, want, "recv disagrees with the protocol");
        });
    }
);
