//! `failover-lab service`: the demo service, UDP on P, answering "HOST COUNTER SEQ", where
//! COUNTER is read from (and incremented in) its data directory.
use std::{
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
};

/// Arguments of `failover-lab service`.
#[derive(clap::Args, Debug)]
pub struct ServiceArgs {
    /// Address to answer on (P and the service port); bound before P exists.
    #[arg(long)]
    bind: SocketAddr,
    /// The host's name, in every answer.
    #[arg(long)]
    name: String,
    /// The data directory holding the counter (the synced directory).
    #[arg(long)]
    data: PathBuf,
}

/// Answers until killed.
pub fn run(args: ServiceArgs) {
    let (bind, name, data) = (args.bind, args.name, args.data);
    std::fs::create_dir_all(&data).expect("data dir");
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(bind),
        socket2::Type::DGRAM,
        None,
    )
    .expect("socket");
    // Bound before P exists: only receives while this host holds P.
    sock.set_freebind(true).expect("freebind");
    sock.bind(&bind.into()).expect("bind service");
    let sock: UdpSocket = sock.into();
    // The counter lives in the data directory and is read and written on every request, so
    // that after a takeover the new primary continues from the copy it holds. Written through
    // a rename, so a copy always sees a whole value.
    let counter_file = data.join("counter");
    let tmp_file = data.join(".counter.tmp");
    let mut buf = [0u8; 256];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let counter: u64 = std::fs::read_to_string(&counter_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
            + 1;
        if std::fs::write(&tmp_file, counter.to_string()).is_ok() {
            let _ = std::fs::rename(&tmp_file, &counter_file);
        }
        let seq = String::from_utf8_lossy(&buf[..n]).trim().to_string();
        let _ = sock.send_to(format!("{name} {counter} {seq}").as_bytes(), from);
    }
}

// ---------------------------------------------------------------- client
