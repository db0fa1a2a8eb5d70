//! Replays every input under `failover-user/fuzz/regressions/TARGET/` (inputs that once crashed
//! a fuzz target, kept after the fix; docs/fuzzing.md) through the function that target feeds.
//! The channel, control and XDP targets need a peer, a store or root: their inputs are replayed
//! by the fuzz target itself, and their fixes have unit tests in the decoder's own module.
use std::{fs, path::Path};

use crate::{config::Config, fence::redfish::parse, signal::wire::Message};

fn replay(target: &str, data: &[u8]) {
    match target {
        "wire" => {
            if let Ok(m) = Message::decode(data) {
                assert_eq!(Message::decode(&m.encode()), Ok(m));
            }
        }
        "config" => {
            if let Ok(text) = std::str::from_utf8(data) {
                let _ = Config::parse(Path::new("/etc/failover/failover.toml"), text);
            }
        }
        "redfish_json" => {
            let Some((&flags, body)) = data.split_first() else {
                return;
            };
            if let Ok(v) = parse::body(flags & 1 == 0, body) {
                let _ = parse::error_message(&v);
                let _ = parse::service_root(&v);
                let _ = parse::members(&v);
                let _ = parse::action_info_types(&v);
                if let Some(a) = parse::reset_action(&v) {
                    let _ = parse::system(&v, "/redfish/v1/Systems/1", a.target, a.types.clone());
                }
                let _ = parse::task_outcome(&v);
            }
        }
        // Need a peer, a store or root: replayed by their fuzz target (`cargo xtask fuzz` reads
        // the directory too); their fixes have unit tests in the decoder's module.
        "sync_frame" | "sync_manifest" | "control_request" | "xdp" => {}
        other => panic!("no replay for fuzz target {other:?}: add it to fuzz_regressions.rs"),
    }
}

#[test]
fn fuzz_regressions_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let Ok(targets) = fs::read_dir(&root) else {
        return;
    };
    for t in targets {
        let t = t.unwrap();
        let name = t.file_name().to_string_lossy().into_owned();
        for f in fs::read_dir(t.path()).unwrap() {
            let p = f.unwrap().path();
            eprintln!("replaying {}", p.display());
            replay(&name, &fs::read(&p).unwrap());
        }
    }
}
