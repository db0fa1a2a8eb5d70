//! `redfish_json`: the BMC's answers as the Redfish client reads them
//! (`failover::fence::redfish::parse`, which `Client` calls on every answer): the body decoding
//! (JSON, empty, not JSON on success or on an error status), error bodies, the service root,
//! the systems collection, a system with its PowerState and `#ComputerSystem.Reset` action and
//! allowable values, the reset ActionInfo, task monitor bodies, and the Retry-After / ETag
//! headers.
//!
//! Input: one flags byte (bit 0: an error status), then the body. The body also serves as the
//! Retry-After and ETag header value when it is a valid header value.
//!
//! Checks: no panic; only a success's non-JSON body is an error; error messages stop at 300
//! characters; a system found by its Id matches; a system built from the reset action carries
//! that action's target, types and the body's PowerState; Retry-After stays at most 60 s.
#![no_main]

use std::time::Duration;

use failover::fence::redfish::parse;
use failover_fuzz::write_seeds;
use libfuzzer_sys::fuzz_target;
use reqwest::header::{HeaderMap, HeaderValue, ETAG, RETRY_AFTER};

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let s = |n, flag: u8, body: &str| (n, [&[flag][..], body.as_bytes()].concat());
    vec![
        s(
            "root",
            0,
            r##"{"@odata.id":"/redfish/v1/","Id":"RootService","RedfishVersion":"1.16.0","Systems":{"@odata.id":"/redfish/v1/Systems"},"SessionService":{"@odata.id":"/redfish/v1/SessionService"},"Links":{"Sessions":{"@odata.id":"/redfish/v1/SessionService/Sessions"}}}"##,
        ),
        s(
            "systems",
            0,
            r##"{"@odata.id":"/redfish/v1/Systems","Members@odata.count":2,"Members":[{"@odata.id":"/redfish/v1/Systems/1"},{"@odata.id":"/redfish/v1/Systems/node-b/"}]}"##,
        ),
        s(
            "system",
            0,
            r##"{"@odata.id":"/redfish/v1/Systems/1","@odata.etag":"W/\"abc\"","Id":"1","Name":"host-a","UUID":"38947555-7742-3448-3784-823347823834","PowerState":"On","Actions":{"#ComputerSystem.Reset":{"target":"/redfish/v1/Systems/1/Actions/ComputerSystem.Reset","ResetType@Redfish.AllowableValues":["On","ForceOff","GracefulShutdown","ForceRestart","PushPowerButton"]}}}"##,
        ),
        s(
            "system-actioninfo",
            0,
            r##"{"Id":"1","PowerState":"Off","Actions":{"#ComputerSystem.Reset":{"target":"/redfish/v1/Systems/1/Actions/ComputerSystem.Reset","@Redfish.ActionInfo":"/redfish/v1/Systems/1/ResetActionInfo"}}}"##,
        ),
        s(
            "actioninfo",
            0,
            r##"{"@odata.id":"/redfish/v1/Systems/1/ResetActionInfo","Parameters":[{"Name":"ResetType","Required":true,"DataType":"String","AllowableValues":["On","ForceOff"]}]}"##,
        ),
        s(
            "task-running",
            0,
            r##"{"@odata.id":"/redfish/v1/TaskService/Tasks/7","TaskState":"Running","PercentComplete":40}"##,
        ),
        s(
            "task-exception",
            0,
            r##"{"TaskState":"Exception","Messages":[{"MessageId":"Base.1.0.GeneralError","Message":"The BMC refused"}]}"##,
        ),
        s(
            "error",
            1,
            r##"{"error":{"code":"Base.1.0.GeneralError","message":"A general error has occurred.","@Message.ExtendedInfo":[{"MessageId":"Base.1.0.ActionParameterNotSupported","Message":"The parameter ResetType is not supported"}]}}"##,
        ),
        s("not-json", 1, "<html>503 Service Unavailable</html>"),
        s("retry-after", 0, " 30 "),
        s(
            "session",
            0,
            r##"{"@odata.id":"/redfish/v1/SessionService/Sessions/12","UserName":"admin"}"##,
        ),
    ]
}

fuzz_target!(
    init: {
        write_seeds(&seeds());
    },
    |data: &[u8]| {
        let Some((&flags, body)) = data.split_first() else {
            return;
        };
        let success = flags & 1 == 0;
        let v = match parse::body(success, body) {
            Ok(v) => v,
            Err(e) => {
                assert!(success, "an error status's body failed to decode");
                assert!(e.starts_with("the answer is not JSON"), "{e}");
                return;
            }
        };
        assert!(parse::error_message(&v).chars().count() <= 300);
        let root = parse::service_root(&v);
        assert!(!root.systems.is_empty() || v["Systems"]["@odata.id"] == "");
        let _ = parse::session_path(&v);
        for m in parse::members(&v) {
            let _ = parse::is_system(&v, &m, "1");
        }
        if let Some(id) = v["Id"].as_str() {
            assert!(parse::is_system(&v, "/redfish/v1/Systems/x", id));
        }
        let _ = parse::action_info_types(&v);
        if let Some(a) = parse::reset_action(&v) {
            let s = parse::system(&v, "/redfish/v1/Systems/1", a.target, a.types.clone());
            assert_eq!((s.reset_target.as_str(), &s.reset_types), (a.target, &a.types));
            assert_eq!(s.power_state, parse::power_state(&v));
            let _ = serde_json::to_string(&s).expect("a System serialises");
        }
        if let Err(m) = parse::task_outcome(&v) {
            assert!(m.starts_with("task ended "), "{m}");
        }
        if let Ok(val) = HeaderValue::from_bytes(body) {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, val.clone());
            h.insert(ETAG, val);
            if let Some(d) = parse::retry_after(&h) {
                assert!(d <= Duration::from_secs(60));
            }
            let _ = parse::etag(&h, &v);
        }
    }
);
