//! What the client reads from a BMC's answers, as pure functions of the bodies (and headers):
//! the service root, the systems collection, a system with its PowerState and reset action, the
//! reset action info, task monitors and error bodies. [`super::Client`] calls these on every
//! answer; the `redfish_json` fuzz target (failover-user/fuzz, docs/fuzzing.md) feeds them
//! arbitrary bytes.
use std::time::Duration;

use reqwest::header;
use serde_json::Value;

use super::System;

/// An answer's body: JSON, `Null` when empty. A success whose body is not JSON is an error
/// (the parser's message); an error status's body that is not JSON reads as `Null`.
pub fn body(success: bool, bytes: &[u8]) -> Result<Value, String> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    match serde_json::from_slice(bytes) {
        Ok(v) => Ok(v),
        Err(e) if success => Err(format!("the answer is not JSON ({e})")),
        Err(_) => Ok(Value::Null),
    }
}

/// A Redfish error body's message (`error.message`, or the first extended info message), at
/// most 300 characters.
pub fn error_message(body: &Value) -> String {
    let e = &body["error"];
    e["@Message.ExtendedInfo"][0]["Message"]
        .as_str()
        .or_else(|| e["message"].as_str())
        .unwrap_or("")
        .chars()
        .take(300)
        .collect()
}

/// What the client takes from the service root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRoot {
    /// The `Systems` collection path (`/redfish/v1/Systems` when not named).
    pub systems: String,
    /// Where sessions are created, when the service has a SessionService.
    pub sessions: Option<String>,
}

/// Reads the service root.
pub fn service_root(root: &Value) -> ServiceRoot {
    ServiceRoot {
        systems: root["Systems"]["@odata.id"]
            .as_str()
            .unwrap_or("/redfish/v1/Systems")
            .to_string(),
        sessions: root["Links"]["Sessions"]["@odata.id"]
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                root.get("SessionService")
                    .map(|_| "/redfish/v1/SessionService/Sessions".to_string())
            }),
    }
}

/// The `@odata.id` of a created session (when the answer has no Location header).
pub fn session_path(body: &Value) -> Option<&str> {
    body["@odata.id"].as_str()
}

/// The member paths of a collection.
pub fn members(coll: &Value) -> Vec<String> {
    coll["Members"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|x| x["@odata.id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether system `s`, found at `member`, is the one `want` names (its Id, Name or UUID, any
/// case, or the last segment of its path).
pub fn is_system(s: &Value, member: &str, want: &str) -> bool {
    [&s["Id"], &s["Name"], &s["UUID"]]
        .iter()
        .any(|v| v.as_str().is_some_and(|x| x.eq_ignore_ascii_case(want)))
        || member.trim_end_matches('/').rsplit('/').next() == Some(want)
}

/// A system's `#ComputerSystem.Reset` action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResetAction<'a> {
    /// Where the reset is posted.
    pub target: &'a str,
    /// `ResetType@Redfish.AllowableValues` (empty when not listed).
    pub types: Vec<String>,
    /// `@Redfish.ActionInfo`, to read the allowed types from when they are not listed.
    pub action_info: Option<&'a str>,
}

/// The reset action of system `s`; `None` when it has no target.
pub fn reset_action(s: &Value) -> Option<ResetAction<'_>> {
    let action = &s["Actions"]["#ComputerSystem.Reset"];
    Some(ResetAction {
        target: action["target"].as_str()?,
        types: strings(&action["ResetType@Redfish.AllowableValues"]),
        action_info: action["@Redfish.ActionInfo"].as_str(),
    })
}

/// The `ResetType` allowable values of an ActionInfo resource.
pub fn action_info_types(info: &Value) -> Vec<String> {
    info["Parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["Name"] == "ResetType"))
        .map(|p| strings(&p["AllowableValues"]))
        .unwrap_or_default()
}

/// The strings of a JSON array (others skipped); empty when it is not an array.
fn strings(a: &Value) -> Vec<String> {
    a.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The [`System`] read at `path`, with its reset target and allowed reset types.
pub fn system(s: &Value, path: &str, reset_target: &str, reset_types: Vec<String>) -> System {
    System {
        path: s["@odata.id"].as_str().unwrap_or(path).to_string(),
        id: s["Id"].as_str().unwrap_or("").to_string(),
        name: s["Name"].as_str().unwrap_or("").to_string(),
        uuid: s["UUID"].as_str().map(str::to_string),
        power_state: power_state(s),
        reset_target: reset_target.to_string(),
        reset_types,
    }
}

/// A system's `PowerState` ("Unknown" when absent).
pub fn power_state(s: &Value) -> String {
    s["PowerState"].as_str().unwrap_or("Unknown").to_string()
}

/// The ETag for If-Match: the header, else the body's `@odata.etag`.
pub fn etag(headers: &header::HeaderMap, body: &Value) -> Option<String> {
    headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| body["@odata.etag"].as_str().map(str::to_string))
}

/// The outcome of a finished task monitor (any status but 202): done unless `TaskState` names
/// another end than `Completed`; the error is that state and the first message.
pub fn task_outcome(body: &Value) -> Result<(), String> {
    match body["TaskState"].as_str().unwrap_or("Completed") {
        "Completed" | "" => Ok(()),
        other => Err(format!(
            "task ended {other}: {}",
            body["Messages"][0]["Message"].as_str().unwrap_or("")
        )),
    }
}

/// The `Retry-After` delay in seconds, at most 60 s.
pub fn retry_after(h: &header::HeaderMap) -> Option<Duration> {
    h.get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(60)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn error_messages_come_from_the_redfish_body() {
        let b = json!({"error": {"code": "Base.1.0.GeneralError", "message": "outer",
            "@Message.ExtendedInfo": [{"Message": "inner detail"}]}});
        assert_eq!(error_message(&b), "inner detail");
        assert_eq!(error_message(&json!({"error": {"message": "m"}})), "m");
        assert_eq!(error_message(&Value::Null), "");
    }

    #[test]
    fn bodies_systems_and_tasks() {
        assert_eq!(body(true, b""), Ok(Value::Null));
        assert!(body(true, b"<html>").is_err());
        assert_eq!(body(false, b"<html>"), Ok(Value::Null));
        let root = json!({"Systems": {"@odata.id": "/S"}, "SessionService": {}});
        assert_eq!(
            service_root(&root),
            ServiceRoot {
                systems: "/S".into(),
                sessions: Some("/redfish/v1/SessionService/Sessions".into())
            }
        );
        let s = json!({"Id": "1", "PowerState": "On", "Actions": {"#ComputerSystem.Reset": {
            "target": "/S/1/Reset", "ResetType@Redfish.AllowableValues": ["ForceOff", 3]}}});
        let a = reset_action(&s).unwrap();
        assert_eq!(
            (a.target, a.types.as_slice()),
            ("/S/1/Reset", &["ForceOff".to_string()][..])
        );
        assert!(is_system(&s, "/S/x/", "x") && is_system(&s, "/S/x", "1"));
        assert_eq!(system(&s, "/S/1", a.target, a.types).power_state, "On");
        assert_eq!(task_outcome(&json!({"TaskState": "Completed"})), Ok(()));
        assert_eq!(
            task_outcome(&json!({"TaskState": "Exception", "Messages": [{"Message": "m"}]})),
            Err("task ended Exception: m".into())
        );
    }
}
