//! `wire`: the UDP heartbeat / join / leaving / taken-over message (`Message::decode`), fed by
//! any host that can reach the heartbeat port.
//!
//! Checks: no panic; `Short` exactly for datagrams under `LEN` bytes; a decoded message
//! re-encodes to the same bytes for every field it carries (bytes 0..36: magic, version, kind,
//! role, flags, token, seq, epoch, node); bytes 36..40 are reserved, not decoded, and encode
//! writes them as zero; decoding the re-encoding gives the same message; only requests have a
//! reply, and the reply echoes token and seq.
#![no_main]

use failover::signal::wire::{DecodeError, Message};
use failover_common::wire::{LEN, OFF_NODE};
use libfuzzer_sys::fuzz_target;

/// The bytes a message's fields cover (the node id is the last field).
const FIELDS: usize = OFF_NODE + 4;

fuzz_target!(|data: &[u8]| {
    match Message::decode(data) {
        Ok(m) => {
            assert!(data.len() >= LEN);
            let e = m.encode();
            assert_eq!(
                &e[..FIELDS],
                &data[..FIELDS],
                "re-encoding changed a field: {m:?}"
            );
            assert!(
                e[FIELDS..].iter().all(|&b| b == 0),
                "reserved bytes not zero"
            );
            assert_eq!(Message::decode(&e), Ok(m), "decode(encode(m)) != m");
            // Trailing bytes are ignored.
            assert_eq!(Message::decode(&data[..LEN]), Ok(m));
            if let Some(r) = m.reply(1, 2, 3, 4) {
                assert_eq!((r.token, r.seq), (m.token, m.seq));
                assert!(r.reply(0, 0, 0, 0).is_none(), "a reply has a reply");
            }
        }
        Err(DecodeError::Short(n)) => assert!(n == data.len() && n < LEN),
        Err(e) => {
            assert!(data.len() >= LEN, "{e} for a short datagram");
            let _ = e.to_string();
        }
    }
});
