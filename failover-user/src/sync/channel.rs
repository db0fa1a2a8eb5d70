//! The peer channel: TCP with Noise `NNpsk0` under the shared key, rate-limited frames, a
//! deadline on the handshake and on every frame.
use std::{
    fs, io,
    os::unix::fs::MetadataExt as _,
    path::Path,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

use super::SyncError;

/// The shared key: 32 bytes, written as 64 hex digits in the key file.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(***)")
    }
}

impl Key {
    /// Reads the key file (64 hex digits; whitespace ignored). Refuses a file others can read.
    pub fn load(path: &Path) -> Result<Key, SyncError> {
        let bad = |message: String| SyncError::Key {
            path: path.to_path_buf(),
            message,
        };
        let md = fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        if md.mode() & 0o077 != 0 {
            return Err(bad(format!(
                "mode {:o} lets others read it; chmod 600",
                md.mode() & 0o777
            )));
        }
        let text = fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let hex: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad(
                "expected 64 hex digits (32 random bytes, e.g. `openssl rand -hex 32`)".into(),
            ));
        }
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex");
        }
        Ok(Key(k))
    }

    /// A key from bytes (tests).
    pub fn from_bytes(b: [u8; 32]) -> Key {
        Key(b)
    }

    /// A key for one purpose (`context`, a fixed string naming it), derived from this one, so
    /// that one key file can serve several protocols without one's messages being valid in
    /// another.
    pub fn derive(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.0)
    }
}

const NOISE: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";

/// The deadlines of a channel: a peer that stops talking ends it with an error instead of
/// holding it (and its slot on the server) forever.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// The whole authentication handshake (both messages).
    pub handshake: Duration,
    /// Each frame read or written once authenticated (the rate limit's pauses not counted).
    pub frame: Duration,
}

impl Default for Deadlines {
    /// The daemon's defaults (`sync.handshake_timeout`, `sync.frame_timeout`).
    fn default() -> Self {
        Deadlines {
            handshake: Duration::from_secs(5),
            frame: Duration::from_secs(60),
        }
    }
}
/// Plaintext bytes per frame (a Noise message is at most 65535 bytes, 16 of them the tag).
pub(super) const CHUNK: usize = 65000;

/// An authenticated, encrypted channel to the peer.
pub struct Channel {
    stream: TcpStream,
    noise: snow::TransportState,
    peer: String,
    buf: Vec<u8>,
    /// Bytes per second to send at most (0: no limit).
    rate: u64,
    sent: u64,
    started: Instant,
    frame_timeout: Duration,
}

impl Channel {
    pub(super) fn err(&self, message: impl Into<String>) -> SyncError {
        SyncError::Peer {
            peer: self.peer.clone(),
            message: message.into(),
        }
    }

    pub(super) async fn handshake(
        stream: TcpStream,
        key: &Key,
        initiator: bool,
        rate: u64,
        deadlines: Deadlines,
    ) -> Result<Channel, SyncError> {
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string());
        let limit = deadlines.handshake;
        let work = Channel::handshake_steps(stream, key, initiator, rate, deadlines, &peer);
        tokio::time::timeout(limit, work)
            .await
            .map_err(|_| SyncError::Peer {
                peer: peer.clone(),
                message: format!(
                    "did not authenticate within {limit:?} (sync.handshake_timeout); closed"
                ),
            })?
    }

    async fn handshake_steps(
        mut stream: TcpStream,
        key: &Key,
        initiator: bool,
        rate: u64,
        deadlines: Deadlines,
        peer: &str,
    ) -> Result<Channel, SyncError> {
        let perr = |m: String| SyncError::Peer {
            peer: peer.to_string(),
            message: m,
        };
        let b = snow::Builder::new(NOISE.parse().expect("valid noise pattern"))
            .psk(0, &key.0)
            .map_err(|e| perr(e.to_string()))?;
        let mut hs = if initiator {
            b.build_initiator()
        } else {
            b.build_responder()
        }
        .map_err(|e| perr(e.to_string()))?;
        let mut buf = vec![0u8; 65535];
        // NN: -> e (with psk), <- e, ee. Two messages.
        for step in 0..2 {
            let my_turn = (step == 0) == initiator;
            if my_turn {
                let n = hs
                    .write_message(&[], &mut buf)
                    .map_err(|e| perr(e.to_string()))?;
                write_frame(&mut stream, &buf[..n])
                    .await
                    .map_err(|e| perr(e.to_string()))?;
            } else {
                // A peer with another key drops the connection at its first handshake message.
                let msg = read_frame(&mut stream).await.map_err(|e| {
                    perr(format!(
                        "handshake failed: the peer closed the connection ({e}); it does not \
                         hold the same key, or is not a failover sync endpoint"
                    ))
                })?;
                hs.read_message(&msg, &mut buf).map_err(|_| {
                    perr("handshake failed: the peer does not hold the same key".into())
                })?;
            }
        }
        let noise = hs.into_transport_mode().map_err(|e| perr(e.to_string()))?;
        Ok(Channel {
            stream,
            noise,
            peer: peer.to_string(),
            buf: vec![0u8; 65535],
            rate,
            sent: 0,
            started: Instant::now(),
            frame_timeout: deadlines.frame,
        })
    }

    /// Connects to `addr` (within `timeout`) and authenticates, with the default
    /// [`Deadlines`].
    pub async fn connect(
        addr: std::net::SocketAddr,
        key: &Key,
        timeout: Duration,
    ) -> Result<Channel, SyncError> {
        Channel::connect_with(addr, key, timeout, Deadlines::default()).await
    }

    /// Connects to `addr` (within `timeout`) and authenticates, with `deadlines`.
    pub async fn connect_with(
        addr: std::net::SocketAddr,
        key: &Key,
        timeout: Duration,
        deadlines: Deadlines,
    ) -> Result<Channel, SyncError> {
        let s = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| SyncError::Peer {
                peer: addr.to_string(),
                message: format!("connect: no answer within {timeout:?}"),
            })?
            .map_err(|e| SyncError::Peer {
                peer: addr.to_string(),
                message: format!("connect: {e}"),
            })?;
        Channel::handshake(s, key, true, 0, deadlines).await
    }

    /// Authenticates an accepted connection; sends at most `rate` bytes/s (0: unlimited).
    /// With the default [`Deadlines`].
    pub async fn accept(s: TcpStream, key: &Key, rate: u64) -> Result<Channel, SyncError> {
        Channel::accept_with(s, key, rate, Deadlines::default()).await
    }

    /// [`Channel::accept`] with `deadlines`.
    pub async fn accept_with(
        s: TcpStream,
        key: &Key,
        rate: u64,
        deadlines: Deadlines,
    ) -> Result<Channel, SyncError> {
        Channel::handshake(s, key, false, rate, deadlines).await
    }

    pub(super) async fn send_frame(&mut self, plain: &[u8]) -> Result<(), SyncError> {
        let n = self
            .noise
            .write_message(plain, &mut self.buf)
            .map_err(|e| self.err(format!("encrypt: {e}")))?;
        let limit = self.frame_timeout;
        tokio::time::timeout(limit, write_frame(&mut self.stream, &self.buf[..n]))
            .await
            .map_err(|_| {
                self.err(format!(
                    "send: the peer took no frame for {limit:?} (sync.frame_timeout)"
                ))
            })?
            .map_err(|e| self.err(format!("send: {e}")))?;
        self.sent += n as u64;
        if self.rate > 0 {
            let due = Duration::from_secs_f64(self.sent as f64 / self.rate as f64);
            let el = self.started.elapsed();
            if due > el {
                tokio::time::sleep(due - el).await;
            }
        }
        Ok(())
    }

    pub(super) async fn recv_frame(&mut self) -> Result<Vec<u8>, SyncError> {
        let limit = self.frame_timeout;
        let msg = tokio::time::timeout(limit, read_frame(&mut self.stream))
            .await
            .map_err(|_| {
                self.err(format!(
                    "receive: no frame for {limit:?} (sync.frame_timeout)"
                ))
            })?
            .map_err(|e| self.err(format!("receive: {e}")))?;
        let n = self.noise.read_message(&msg, &mut self.buf).map_err(|_| {
            self.err("a frame failed authentication (tampered, replayed or reordered)")
        })?;
        Ok(self.buf[..n].to_vec())
    }

    /// Sends one message of any size (length-prefixed, in frames).
    pub async fn send(&mut self, data: &[u8]) -> Result<(), SyncError> {
        let mut first = (data.len() as u64).to_be_bytes().to_vec();
        let take = data.len().min(CHUNK - 8);
        first.extend_from_slice(&data[..take]);
        self.send_frame(&first).await?;
        for c in data[take..].chunks(CHUNK) {
            self.send_frame(c).await?;
        }
        Ok(())
    }

    /// Receives one message of at most `limit` bytes.
    pub async fn recv(&mut self, limit: u64) -> Result<Vec<u8>, SyncError> {
        let first = self.recv_frame().await?;
        if first.len() < 8 {
            return Err(self.err("short message header"));
        }
        let len = u64::from_be_bytes(first[..8].try_into().expect("8 bytes"));
        if len > limit {
            return Err(self.err(format!("message of {len} bytes exceeds the {limit} limit")));
        }
        let mut out = first[8..].to_vec();
        while (out.len() as u64) < len {
            out.extend_from_slice(&self.recv_frame().await?);
        }
        if out.len() as u64 != len {
            return Err(self.err("message longer than announced"));
        }
        Ok(out)
    }

    pub(super) async fn send_json<T: Serialize>(&mut self, v: &T) -> Result<(), SyncError> {
        let b = serde_json::to_vec(v).map_err(|e| self.err(e.to_string()))?;
        self.send(&b).await
    }

    pub(super) async fn recv_json<T: for<'de> Deserialize<'de>>(&mut self) -> Result<T, SyncError> {
        let b = self.recv(1 << 28).await?;
        serde_json::from_slice(&b).map_err(|e| self.err(format!("malformed message: {e}")))
    }
}

pub(super) async fn write_frame(s: &mut TcpStream, b: &[u8]) -> io::Result<()> {
    s.write_all(&(b.len() as u16).to_be_bytes()).await?;
    s.write_all(b).await
}

pub(super) async fn read_frame(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await?;
    let mut b = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut b).await?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    pub(super) fn key_files_are_checked() {
        let d = crate::sync::test_dir("key");
        let k = d.join("key");
        fs::write(&k, "00".repeat(32)).unwrap();
        fs::set_permissions(&k, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Key::load(&k).unwrap_err().to_string().contains("chmod 600"));
        fs::set_permissions(&k, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Key::load(&k).is_ok());
        fs::write(&k, "short").unwrap();
        assert!(Key::load(&k)
            .unwrap_err()
            .to_string()
            .contains("64 hex digits"));
        assert_eq!(format!("{:?}", Key::from_bytes([7; 32])), "Key(***)");
        fs::remove_dir_all(d).unwrap();
    }
}
