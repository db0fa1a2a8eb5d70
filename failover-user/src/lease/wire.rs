//! The lease messages: UDP, 68 bytes, big-endian, authenticated with the pair's key.
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `FOLS` |
//! | 4 | version (1) |
//! | 5 | kind ([`Kind`]) |
//! | 6 | reason (for refusals, [`Reason`]; else 0) |
//! | 7 | reserved, 0 |
//! | 8..12 | sender's node id (the witness: 0) |
//! | 12..20 | epoch: the primary's epoch the message is about |
//! | 20..28 | sequence (a request's, echoed in its answer) |
//! | 28..36 | token: the requester's random per-run value, echoed |
//! | 36..44 | value: the lease asked or granted, the remaining hold, or how long ago the primary was heard (ns) |
//! | 44..52 | the sender's CLOCK_MONOTONIC at sending (ns), for the clock-rate check |
//! | 52..68 | MAC: keyed BLAKE3 of bytes 0..52, first 16 bytes |
//!
//! An answer counts only with the token and sequence of a request in flight, so an old or
//! replayed answer changes nothing; the witness takes a node's requests only with a sequence
//! above the last it took from that node in the same run (token).
use crate::sync::Key;

/// `b"FOLS"`.
pub const MAGIC: u32 = 0x464f_4c53;
/// Protocol version.
pub const VERSION: u8 = 1;
/// Size on the wire.
pub const LEN: usize = 68;
const BODY: usize = 52;
const MAC_LEN: usize = 16;
/// The key derivation context of lease MACs.
pub const CONTEXT: &str = "failover 2026-12 lease message MAC v1";

/// What a message is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The primary asks for a renewal (value: the lease asked).
    Request,
    /// A renewal granted (value: the lease granted, valid from the request's sending).
    Grant,
    /// A renewal refused ([`Reason`]).
    Refuse,
    /// The monitor asks the witness to revoke the primary's lease (epoch: the primary's).
    Revoke,
    /// The witness revoked (value: how long its last grant may still run, on its clock).
    Revoked,
    /// The witness refused to revoke: it still hears the primary (value: how long ago).
    RevokeRefused,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Request => 1,
            Kind::Grant => 2,
            Kind::Refuse => 3,
            Kind::Revoke => 4,
            Kind::Revoked => 5,
            Kind::RevokeRefused => 6,
        }
    }

    fn from_code(c: u8) -> Option<Kind> {
        Some(match c {
            1 => Kind::Request,
            2 => Kind::Grant,
            3 => Kind::Refuse,
            4 => Kind::Revoke,
            5 => Kind::Revoked,
            6 => Kind::RevokeRefused,
            _ => return None,
        })
    }
}

/// Why a renewal was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No reason given (other kinds).
    None,
    /// The epoch was revoked, or a newer primary is known.
    Revoked,
    /// The grantor stopped granting (a monitor that decided the primary failed).
    Stopped,
    /// In a `revoked` answer: the witness never granted an epoch as high as the request's, so
    /// the primary of that epoch may never have held a lease (its gate not attached yet) and
    /// its end proves nothing.
    NotGranted,
    /// In a `revoked` answer: the witness cannot say whether the current primary holds a
    /// lease from it (it agreed to another host's takeover, or it restarted, and no primary
    /// has asked it for a lease since), so it revoked nothing and the monitor fences through
    /// the BMC.
    Unproven,
}

impl Reason {
    /// Whether a `revoked` answer with this reason leaves the primary possibly serving
    /// without a lease, for a monitor at `epoch` whose own grantor granted at most
    /// `own_granted` (0: nothing): the witness cannot vouch (`Unproven`), or it never granted
    /// that epoch and the monitor did not either. A primary's epoch is at least 1, so 0
    /// granted is none. Then the monitor fences through the BMC.
    pub fn no_lease(self, own_granted: u64, epoch: u64) -> bool {
        match self {
            Reason::Unproven => true,
            Reason::NotGranted => own_granted == 0 || own_granted < epoch,
            _ => false,
        }
    }

    fn code(self) -> u8 {
        match self {
            Reason::None => 0,
            Reason::Revoked => 1,
            Reason::Stopped => 2,
            Reason::NotGranted => 3,
            Reason::Unproven => 4,
        }
    }

    fn from_code(c: u8) -> Option<Reason> {
        Some(match c {
            0 => Reason::None,
            1 => Reason::Revoked,
            2 => Reason::Stopped,
            3 => Reason::NotGranted,
            4 => Reason::Unproven,
            _ => return None,
        })
    }
}

impl From<crate::lease::Refusal> for Reason {
    fn from(r: crate::lease::Refusal) -> Reason {
        match r {
            crate::lease::Refusal::Revoked => Reason::Revoked,
            crate::lease::Refusal::Stopped => Reason::Stopped,
        }
    }
}

/// One lease message.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Message {
    /// What it is.
    pub kind: Kind,
    /// Why a renewal was refused.
    pub reason: Reason,
    /// The sender's node id (the witness: 0).
    pub node: u32,
    /// The primary's epoch the message is about.
    pub epoch: u64,
    /// The request's sequence (echoed).
    pub seq: u64,
    /// The requester's per-run token (echoed).
    pub token: u64,
    /// Kind-dependent duration, ns.
    pub value_ns: u64,
    /// The sender's CLOCK_MONOTONIC when sending.
    pub stamp_ns: u64,
}

/// Why a datagram is not a lease message.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not `LEN` bytes.
    #[error("{0} bytes, not {LEN}")]
    Length(usize),
    /// Wrong magic or version.
    #[error("not a lease message of version {VERSION}")]
    Foreign,
    /// The MAC does not match: another key, or altered.
    #[error("authentication failed (another key, or an altered message)")]
    Mac,
    /// An unknown kind or reason.
    #[error("unknown kind or reason")]
    Unknown,
}

fn mac(key: &[u8; 32], body: &[u8]) -> [u8; MAC_LEN] {
    let h = blake3::keyed_hash(key, body);
    let mut m = [0u8; MAC_LEN];
    m.copy_from_slice(&h.as_bytes()[..MAC_LEN]);
    m
}

/// The MAC key for lease messages, derived from the pair's key.
pub fn mac_key(key: &Key) -> [u8; 32] {
    key.derive(CONTEXT)
}

impl Message {
    /// The message on the wire, authenticated with `key` (from [`mac_key`]).
    pub fn encode(&self, key: &[u8; 32]) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        b[4] = VERSION;
        b[5] = self.kind.code();
        b[6] = self.reason.code();
        b[8..12].copy_from_slice(&self.node.to_be_bytes());
        b[12..20].copy_from_slice(&self.epoch.to_be_bytes());
        b[20..28].copy_from_slice(&self.seq.to_be_bytes());
        b[28..36].copy_from_slice(&self.token.to_be_bytes());
        b[36..44].copy_from_slice(&self.value_ns.to_be_bytes());
        b[44..52].copy_from_slice(&self.stamp_ns.to_be_bytes());
        let m = mac(key, &b[..BODY]);
        b[BODY..].copy_from_slice(&m);
        b
    }

    /// Decodes and authenticates a datagram.
    pub fn decode(b: &[u8], key: &[u8; 32]) -> Result<Message, DecodeError> {
        if b.len() != LEN {
            return Err(DecodeError::Length(b.len()));
        }
        if b[0..4] != MAGIC.to_be_bytes() || b[4] != VERSION {
            return Err(DecodeError::Foreign);
        }
        let want = mac(key, &b[..BODY]);
        // Compared without an early exit.
        if want
            .iter()
            .zip(&b[BODY..])
            .fold(0u8, |d, (x, y)| d | (x ^ y))
            != 0
        {
            return Err(DecodeError::Mac);
        }
        let u64_at = |o: usize| u64::from_be_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        Ok(Message {
            kind: Kind::from_code(b[5]).ok_or(DecodeError::Unknown)?,
            reason: Reason::from_code(b[6]).ok_or(DecodeError::Unknown)?,
            node: u32::from_be_bytes(b[8..12].try_into().expect("4 bytes")),
            epoch: u64_at(12),
            seq: u64_at(20),
            token: u64_at(28),
            value_ns: u64_at(36),
            stamp_ns: u64_at(44),
        })
    }

    /// The answer to this request or revoke, from `node`: `kind`, with the same epoch,
    /// sequence and token.
    pub fn answer(
        &self,
        kind: Kind,
        reason: Reason,
        node: u32,
        value_ns: u64,
        stamp_ns: u64,
    ) -> Message {
        Message {
            kind,
            reason,
            node,
            epoch: self.epoch,
            seq: self.seq,
            token: self.token,
            value_ns,
            stamp_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> [u8; 32] {
        mac_key(&Key::from_bytes([b; 32]))
    }

    fn req() -> Message {
        Message {
            kind: Kind::Request,
            reason: Reason::None,
            node: 1,
            epoch: 7,
            seq: 42,
            token: 0xfeed,
            value_ns: 40_000_000,
            stamp_ns: 123,
        }
    }

    #[test]
    fn a_revoke_proves_the_lease_over_only_for_a_lease_someone_granted() {
        // The witness granted the epoch: the lease path.
        assert!(!Reason::None.no_lease(0, 3));
        // The witness did not, but the monitor's grantor did: the lease path.
        assert!(!Reason::NotGranted.no_lease(3, 3));
        // Neither did (the monitor granted nothing, or an older epoch): the BMC.
        assert!(Reason::NotGranted.no_lease(0, 0));
        assert!(Reason::NotGranted.no_lease(2, 3));
        // The witness cannot vouch: the BMC, whatever the monitor granted.
        assert!(Reason::Unproven.no_lease(5, 3));
    }

    #[test]
    fn messages_round_trip_and_answers_echo_the_request() {
        let k = key(1);
        let m = req();
        assert_eq!(Message::decode(&m.encode(&k), &k), Ok(m));
        let a = m.answer(Kind::Refuse, Reason::Stopped, 0, 0, 9);
        let d = Message::decode(&a.encode(&k), &k).unwrap();
        assert_eq!(
            (d.kind, d.reason, d.epoch, d.seq, d.token),
            (Kind::Refuse, Reason::Stopped, 7, 42, 0xfeed)
        );
    }

    #[test]
    fn another_key_a_changed_byte_or_a_wrong_length_is_refused() {
        let k = key(1);
        let b = req().encode(&k);
        assert_eq!(Message::decode(&b, &key(2)), Err(DecodeError::Mac));
        for i in 5..LEN {
            let mut c = b;
            c[i] ^= 1;
            assert_eq!(Message::decode(&c, &k), Err(DecodeError::Mac), "byte {i}");
        }
        let mut c = b;
        c[0] ^= 1;
        assert_eq!(Message::decode(&c, &k), Err(DecodeError::Foreign));
        assert_eq!(
            Message::decode(&b[..LEN - 1], &k),
            Err(DecodeError::Length(LEN - 1))
        );
        // A lease key is not the sync key: a derived key, never the file's bytes.
        assert_ne!(k, [1u8; 32]);
    }
}
