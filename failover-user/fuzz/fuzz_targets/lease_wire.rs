//! `lease_wire`: the lease messages (`lease::wire::Message::decode`), fed by any host that can
//! reach the witness's port or a host's lease port, and the witness's judge behind it.
//!
//! Checks: no panic; `Length` exactly when the datagram is not `LEN` bytes; unsigned input is
//! refused (another key); the same bytes signed with the key decode (unless an unknown kind or
//! reason) and re-encode to themselves; fed to a witness's judge, a revoked epoch is never
//! granted and a grant never exceeds the judge's longest lease.
#![no_main]

use std::time::Duration;

use failover::{
    lease::{
        wire::{self, DecodeError, Kind, Message},
        Bound,
    },
    sync::Key,
    witness::judge::{Judge, Verdict},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = wire::mac_key(&Key::from_bytes([7; 32]));
    match Message::decode(data, &key) {
        Err(DecodeError::Length(n)) => assert!(n == data.len() && n != wire::LEN),
        Err(_) => assert_eq!(data.len(), wire::LEN),
        // Forging a MAC is not something a fuzzer does: only re-encodings of fuzzed messages
        // can pass.
        Ok(m) => assert_eq!(m.encode(&key)[..], data[..]),
    }
    // Signed: the fields themselves.
    let mut judge = Judge::new(Bound::default(), Duration::from_millis(100), Duration::from_millis(30), 2);
    let mut now = 0u64;
    for chunk in data.chunks(52) {
        if chunk.len() < 52 {
            break;
        }
        let mut b = [0u8; wire::LEN];
        b[..52].copy_from_slice(chunk);
        b[..4].copy_from_slice(&wire::MAGIC.to_be_bytes());
        b[4] = wire::VERSION;
        let Some(m) = decode_unsigned(&b) else { continue };
        let e = m.encode(&key);
        assert_eq!(Message::decode(&e, &key), Ok(m));
        now = now.wrapping_add(m.stamp_ns % 50_000_000);
        match judge.on_message(m, now) {
            Verdict::Reply(r) if r.kind == Kind::Grant => {
                assert!(m.epoch > judge.revoked(), "granted a revoked epoch: {m:?}");
                assert!(r.value_ns <= 100_000_000);
                assert_eq!((r.seq, r.token), (m.seq, m.token));
            }
            Verdict::Revoke { revoked, .. } => assert!(revoked >= m.epoch),
            _ => {}
        }
    }
});

/// The message `b` would be with a valid MAC (`None`: an unknown kind or reason).
fn decode_unsigned(b: &[u8; wire::LEN]) -> Option<Message> {
    let key = wire::mac_key(&Key::from_bytes([9; 32]));
    let mut signed = *b;
    let mac = blake3::keyed_hash(&key, &signed[..52]);
    signed[52..].copy_from_slice(&mac.as_bytes()[..16]);
    Message::decode(&signed, &key).ok()
}
