//! Helpers shared by the fuzz targets (docs/fuzzing.md): the record format of the peer-channel
//! inputs, a Noise peer speaking the sync channel's protocol, and one tokio runtime.
use std::{net::SocketAddr, sync::OnceLock, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
    runtime::Runtime,
};

/// The shared key of the sync targets (both sides hold it).
pub const KEY: [u8; 32] = [7; 32];
const NOISE: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
/// Plaintext bytes one Noise message carries at most.
pub const MAX_PLAIN: usize = 65535 - 16;

/// What a record asks the fuzzing peer to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Send<'a> {
    /// One message as `Channel::send` frames it: the 8-byte length, then the bytes, in frames.
    Message(&'a [u8]),
    /// One encrypted frame with exactly these plaintext bytes.
    Frame(&'a [u8]),
    /// These bytes on the TCP stream as they are (unencrypted, no length prefix).
    Raw(&'a [u8]),
}

/// Splits an input into records: `kind u8, length u16 little-endian, bytes` (the last record
/// takes what is left when the input is shorter). Kind modulo 3: message, frame, raw.
pub fn records(mut data: &[u8]) -> Vec<Send<'_>> {
    let mut out = Vec::new();
    while let [kind, rest @ ..] = data {
        let (len, rest) = match rest {
            [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]) as usize, rest),
            _ => (rest.len(), &rest[rest.len()..]),
        };
        let (body, rest) = rest.split_at(len.min(rest.len()));
        out.push(match kind % 3 {
            0 => Send::Message(body),
            1 => Send::Frame(body),
            _ => Send::Raw(body),
        });
        data = rest;
    }
    out
}

/// The inverse of [`records`] (for writing seeds and regression inputs).
pub fn encode_records(recs: &[Send<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in recs {
        let (kind, b) = match r {
            Send::Message(b) => (0, b),
            Send::Frame(b) => (1, b),
            Send::Raw(b) => (2, b),
        };
        out.push(kind);
        out.extend_from_slice(&(b.len() as u16).to_le_bytes());
        out.extend_from_slice(b);
    }
    out
}

/// The runtime every async target runs on (one thread, IO and timers).
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// A loopback listener (bound once) and its address.
pub fn listener() -> &'static (TcpListener, SocketAddr) {
    static L: OnceLock<(TcpListener, SocketAddr)> = OnceLock::new();
    L.get_or_init(|| {
        // Called from inside the runtime: bind with std, register without blocking on it.
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        l.set_nonblocking(true).expect("non-blocking");
        let a = l.local_addr().expect("local addr");
        let _in = runtime().enter();
        (TcpListener::from_std(l).expect("register listener"), a)
    })
}

/// A connected pair on loopback: (our end, the library's end).
pub async fn tcp_pair() -> (TcpStream, TcpStream) {
    let (l, addr) = listener();
    let (c, s) = tokio::join!(TcpStream::connect(*addr), l.accept());
    (c.expect("connect loopback"), s.expect("accept loopback").0)
}

/// The fuzzing peer's side of the sync channel: our own Noise initiator.
pub struct Peer {
    stream: OwnedWriteHalf,
    noise: snow::TransportState,
    buf: Vec<u8>,
}

impl Peer {
    /// Runs the initiator's half of the handshake on `stream` (the library accepts). Returns
    /// the peer (our sending half) and our receiving half, for [`drain`].
    pub async fn handshake(mut stream: TcpStream) -> std::io::Result<(Peer, OwnedReadHalf)> {
        let mut hs = snow::Builder::new(NOISE.parse().expect("noise pattern"))
            .psk(0, &KEY)
            .expect("psk")
            .build_initiator()
            .expect("initiator");
        let mut buf = vec![0u8; 65535];
        let n = hs.write_message(&[], &mut buf).expect("handshake message");
        write_frame(&mut stream, &buf[..n]).await?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await?;
        let mut m = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut m).await?;
        hs.read_message(&m, &mut buf)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let noise = hs
            .into_transport_mode()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let (rd, stream) = stream.into_split();
        Ok((Peer { stream, noise, buf }, rd))
    }

    /// Sends one encrypted frame (`plain` cut to what a Noise message carries).
    pub async fn frame(&mut self, plain: &[u8]) -> std::io::Result<()> {
        let plain = &plain[..plain.len().min(MAX_PLAIN)];
        let n = self
            .noise
            .write_message(plain, &mut self.buf)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        write_frame(&mut self.stream, &self.buf[..n]).await
    }

    /// Sends one message as `Channel::send` does.
    pub async fn message(&mut self, data: &[u8]) -> std::io::Result<()> {
        const CHUNK: usize = 65000;
        let mut first = (data.len() as u64).to_be_bytes().to_vec();
        let take = data.len().min(CHUNK - 8);
        first.extend_from_slice(&data[..take]);
        self.frame(&first).await?;
        for c in data[take..].chunks(CHUNK) {
            self.frame(c).await?;
        }
        Ok(())
    }

    /// Sends what the records ask for, then closes our sending half. Stops at the first
    /// error (the library closed the connection).
    pub async fn send_all(&mut self, recs: &[Send<'_>]) {
        for r in recs {
            let sent = match r {
                Send::Message(b) => self.message(b).await,
                Send::Frame(b) => self.frame(b).await,
                Send::Raw(b) => self.stream.write_all(b).await,
            };
            if sent.is_err() {
                return;
            }
        }
        let _ = self.stream.shutdown().await;
    }
}

/// Reads and discards what the library sends until it closes (at most `limit`), so that its
/// writes never block on a full socket buffer.
pub async fn drain(mut rd: OwnedReadHalf, limit: Duration) {
    let mut buf = vec![0u8; 1 << 16];
    let _ = tokio::time::timeout(limit, async {
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

async fn write_frame<W: tokio::io::AsyncWrite + Unpin>(s: &mut W, b: &[u8]) -> std::io::Result<()> {
    s.write_all(&(b.len() as u16).to_be_bytes()).await?;
    s.write_all(b).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let r = [Send::Message(b"{}"), Send::Frame(&[1, 2]), Send::Raw(b"")];
        assert_eq!(records(&encode_records(&r)), r);
    }
}

/// Writes `seeds` into the directory named by `$FAILOVER_FUZZ_SEEDS` (when set), one file each,
/// named by the seed's name: `cargo xtask fuzz` sets it to the target's corpus directory, so
/// the hand-made seeds are always there.
pub fn write_seeds(seeds: &[(&str, Vec<u8>)]) {
    let Some(dir) = std::env::var_os("FAILOVER_FUZZ_SEEDS") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("create the seed directory");
    for (name, data) in seeds {
        std::fs::write(dir.join(format!("seed-{name}")), data).expect("write a seed");
    }
}

/// A fresh scratch directory on tmpfs (falls back to the temp dir), unique to this process.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    // libFuzzer ends a process with exit(): sweep what earlier, dead processes left (once).
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(|| {
        for e in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let pid = n
                .strip_prefix("failover-fuzz-")
                .and_then(|r| r.rsplit('-').next());
            if pid.is_some_and(|p| !std::path::Path::new("/proc").join(p).exists()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    });
    let d = base.join(format!("failover-fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch directory");
    d
}
