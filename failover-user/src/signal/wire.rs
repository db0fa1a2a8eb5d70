//! The UDP heartbeat / join message (see `failover_common::wire` for the layout).
use failover_common::wire::{self, LEN, MAGIC, VERSION};

/// What a message asks for or answers.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// First signal: monitor to primary.
    Heartbeat,
    /// Answer to a heartbeat (the only kind the XDP program counts).
    HeartbeatReply,
    /// Second signal: booted host to monitor address.
    Join,
    /// Answer to a join probe.
    JoinReply,
    /// The sender is stopping on purpose and released what it held (not answered).
    Leaving,
    /// The sender took P over at its epoch (not answered).
    TakenOver,
    /// The sender, joining, leaves P to the monitor, whose data is newer (not answered).
    Yield,
}

impl Kind {
    fn to_u8(self) -> u8 {
        match self {
            Kind::Heartbeat => wire::KIND_HEARTBEAT,
            Kind::HeartbeatReply => wire::KIND_HEARTBEAT_REPLY,
            Kind::Join => wire::KIND_JOIN,
            Kind::JoinReply => wire::KIND_JOIN_REPLY,
            Kind::Leaving => wire::KIND_LEAVING,
            Kind::TakenOver => wire::KIND_TAKEN_OVER,
            Kind::Yield => wire::KIND_YIELD,
        }
    }

    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            wire::KIND_HEARTBEAT => Kind::Heartbeat,
            wire::KIND_HEARTBEAT_REPLY => Kind::HeartbeatReply,
            wire::KIND_JOIN => Kind::Join,
            wire::KIND_JOIN_REPLY => Kind::JoinReply,
            wire::KIND_LEAVING => Kind::Leaving,
            wire::KIND_TAKEN_OVER => Kind::TakenOver,
            wire::KIND_YIELD => Kind::Yield,
            _ => return None,
        })
    }

    /// The reply kind for a request kind, `None` for replies.
    pub fn reply(self) -> Option<Kind> {
        match self {
            Kind::Heartbeat => Some(Kind::HeartbeatReply),
            Kind::Join => Some(Kind::JoinReply),
            _ => None,
        }
    }
}

/// One decoded message.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Request or reply, heartbeat or join.
    pub kind: Kind,
    /// Sender's role code (0 unknown; the daemon defines the others).
    pub role: u8,
    /// Reserved flag bits.
    pub flags: u8,
    /// Random token chosen by the prober; echoed in the reply.
    pub token: u64,
    /// Prober's sequence number; echoed in the reply.
    pub seq: u64,
    /// Sender's persisted epoch.
    pub epoch: u64,
    /// Sender's node id.
    pub node: u32,
}

/// Why a datagram is not a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than a message.
    #[error("datagram of {0} bytes, a heartbeat message has {LEN}")]
    Short(usize),
    /// Not our magic.
    #[error("bad magic {0:#010x}")]
    Magic(u32),
    /// Another protocol version.
    #[error("unsupported version {0} (this build speaks {VERSION})")]
    Version(u8),
    /// Unknown kind byte.
    #[error("unknown message kind {0}")]
    Kind(u8),
}

impl Message {
    /// Encodes the message into its 40 wire bytes, at the offsets `failover_common::wire`
    /// defines (the XDP program reads the same offsets).
    pub fn encode(&self) -> [u8; LEN] {
        let mut m = [0u8; LEN];
        wire::put_u32(&mut m, wire::OFF_MAGIC, MAGIC);
        m[wire::OFF_VERSION] = VERSION;
        m[wire::OFF_KIND] = self.kind.to_u8();
        m[wire::OFF_ROLE] = self.role;
        m[wire::OFF_FLAGS] = self.flags;
        wire::put_u64(&mut m, wire::OFF_TOKEN, self.token);
        wire::put_u64(&mut m, wire::OFF_SEQ, self.seq);
        wire::put_u64(&mut m, wire::OFF_EPOCH, self.epoch);
        wire::put_u32(&mut m, wire::OFF_NODE, self.node);
        m
    }

    /// Decodes a datagram; trailing bytes are ignored (room for later versions).
    pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
        let Some(m) = buf
            .get(..LEN)
            .and_then(|b| <&wire::Bytes>::try_from(b).ok())
        else {
            return Err(DecodeError::Short(buf.len()));
        };
        let magic = wire::get_u32(m, wire::OFF_MAGIC);
        if magic != MAGIC {
            return Err(DecodeError::Magic(magic));
        }
        if m[wire::OFF_VERSION] != VERSION {
            return Err(DecodeError::Version(m[wire::OFF_VERSION]));
        }
        let kind = m[wire::OFF_KIND];
        let kind = Kind::from_u8(kind).ok_or(DecodeError::Kind(kind))?;
        Ok(Message {
            kind,
            role: m[wire::OFF_ROLE],
            flags: m[wire::OFF_FLAGS],
            token: wire::get_u64(m, wire::OFF_TOKEN),
            seq: wire::get_u64(m, wire::OFF_SEQ),
            epoch: wire::get_u64(m, wire::OFF_EPOCH),
            node: wire::get_u32(m, wire::OFF_NODE),
        })
    }

    /// The reply to this request, carrying the responder's role, flags, epoch and node id.
    pub fn reply(&self, role: u8, flags: u8, epoch: u64, node: u32) -> Option<Message> {
        Some(Message {
            kind: self.kind.reply()?,
            role,
            flags,
            token: self.token,
            seq: self.seq,
            epoch,
            node,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_offsets() {
        let m = Message {
            kind: Kind::HeartbeatReply,
            role: 2,
            flags: 0,
            token: 0x0102_0304_0506_0708,
            seq: 42,
            epoch: 7,
            node: 9,
        };
        let b = m.encode();
        assert_eq!(Message::decode(&b), Ok(m));
        // The XDP program reads these offsets directly.
        assert_eq!(b[wire::OFF_KIND], wire::KIND_HEARTBEAT_REPLY);
        assert_eq!(
            &b[wire::OFF_TOKEN..wire::OFF_TOKEN + 8],
            &m.token.to_be_bytes()
        );
        assert_eq!(&b[wire::OFF_SEQ..wire::OFF_SEQ + 8], &42u64.to_be_bytes());
        assert_eq!(
            &b[wire::OFF_EPOCH..wire::OFF_EPOCH + 8],
            &7u64.to_be_bytes()
        );
        assert_eq!(&b[wire::OFF_NODE..wire::OFF_NODE + 4], &9u32.to_be_bytes());
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(Message::decode(&[0; 10]), Err(DecodeError::Short(10)));
        assert_eq!(Message::decode(&[0; LEN]), Err(DecodeError::Magic(0)));
        let mut b = Message {
            kind: Kind::Join,
            role: 0,
            flags: 0,
            token: 1,
            seq: 1,
            epoch: 0,
            node: 0,
        }
        .encode();
        b[wire::OFF_VERSION] = 9;
        assert_eq!(Message::decode(&b), Err(DecodeError::Version(9)));
        b[wire::OFF_VERSION] = VERSION;
        b[wire::OFF_KIND] = 77;
        assert_eq!(Message::decode(&b), Err(DecodeError::Kind(77)));
    }

    #[test]
    fn replies_only_to_requests() {
        let req = Message {
            kind: Kind::Heartbeat,
            role: 0,
            flags: 0,
            token: 5,
            seq: 6,
            epoch: 0,
            node: 1,
        };
        let rep = req.reply(1, 4, 3, 2).expect("heartbeat has a reply");
        assert_eq!(
            (rep.kind, rep.token, rep.seq, rep.epoch, rep.node, rep.flags),
            (Kind::HeartbeatReply, 5, 6, 3, 2, 4)
        );
        assert!(rep.reply(0, 0, 0, 0).is_none());
        assert_eq!(Kind::from_u8(wire::KIND_TAKEN_OVER), Some(Kind::TakenOver));
        assert!(
            Kind::TakenOver.reply().is_none(),
            "a notice is not answered"
        );
    }
}
