//! Requests over the control socket (`failover maintenance`, ...): the client writes one JSON
//! line and closes its side, the daemon answers one JSON line. A client that writes nothing
//! (`failover status`, which only closes its side, or one that just reads) gets the status,
//! as before requests existed. Only root may send a request (the socket is mode 0600, and the
//! peer's uid is checked too).
use std::{path::Path, time::Duration};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::UnixStream,
};

use super::ControlError;

/// The longest request line read.
pub const REQUEST_MAX: usize = 4096;
/// A client that has written nothing after this long gets the status.
pub const REQUEST_WAIT: Duration = Duration::from_millis(100);

/// One request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The status (what an empty request gets too).
    Status,
    /// Maintenance on or off; `for_ms`: it ends by itself after that long.
    Maintenance {
        /// On or off.
        on: bool,
        /// Ends after this many ms (on only).
        #[serde(default)]
        for_ms: Option<u64>,
    },
    /// Standby on or off.
    Standby {
        /// On or off.
        on: bool,
    },
    /// The primary hands P to the monitor (`to`: the peer's name, checked) and becomes its
    /// monitor.
    Switchover {
        /// The node to hand P to (the peer; none: the peer).
        #[serde(default)]
        to: Option<String>,
    },
}

/// The daemon's answer to a request other than the status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Done (false: refused or failed, `detail` says why).
    pub ok: bool,
    /// What was done, or why not.
    pub detail: String,
}

impl Reply {
    /// Done.
    pub fn done(detail: impl Into<String>) -> Reply {
        Reply {
            ok: true,
            detail: detail.into(),
        }
    }

    /// Refused or failed.
    pub fn refused(detail: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            detail: detail.into(),
        }
    }
}

/// A request for the daemon's loop, and where its reply goes.
pub type Command = (Request, tokio::sync::oneshot::Sender<Reply>);

/// Reads the client's request: `None` when it wrote nothing (within [`REQUEST_WAIT`]) or
/// closed at once; an error reply for what is not a request.
pub(super) async fn read_request(conn: &mut UnixStream) -> Result<Option<Request>, Reply> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    let first = match tokio::time::timeout(REQUEST_WAIT, conn.read(&mut chunk)).await {
        Err(_) => return Ok(None),
        Ok(r) => r.map_err(|e| Reply::refused(format!("reading the request: {e}")))?,
    };
    if first == 0 {
        return Ok(None);
    }
    buf.extend_from_slice(&chunk[..first]);
    while !buf.contains(&b'\n') && buf.len() <= REQUEST_MAX {
        let n = conn
            .read(&mut chunk)
            .await
            .map_err(|e| Reply::refused(format!("reading the request: {e}")))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    if buf.len() > REQUEST_MAX {
        return Err(Reply::refused(format!(
            "the request is longer than {REQUEST_MAX} bytes"
        )));
    }
    let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(line)
        .map(Some)
        .map_err(|e| Reply::refused(format!("not a request: {e}")))
}

/// Sends `req` to the daemon at `path` and returns its reply.
pub async fn send_request(path: &Path, req: &Request) -> Result<Reply, ControlError> {
    let mut line = serde_json::to_vec(req).unwrap_or_default();
    line.push(b'\n');
    // A request may wait for the daemon's loop (a fence step, a state file's fsync).
    let answer = exchange(path, &line, Duration::from_secs(10)).await?;
    serde_json::from_str(answer.trim()).map_err(|e| ControlError::Status {
        path: path.to_path_buf(),
        message: format!("not a reply: {e} (is it a daemon's control socket?)"),
    })
}

/// One exchange on the control socket at `path`: writes `request` (nothing: the status),
/// closes this side, reads the answer to its end, all within `deadline`.
pub(super) async fn exchange(
    path: &Path,
    request: &[u8],
    deadline: Duration,
) -> Result<String, ControlError> {
    let bad = |message: String| ControlError::Status {
        path: path.to_path_buf(),
        message,
    };
    let work = async {
        let mut c = UnixStream::connect(path)
            .await
            .map_err(|e| bad(format!("connect: {e} (is the daemon running?)")))?;
        c.write_all(request)
            .await
            .map_err(|e| bad(format!("write: {e}")))?;
        c.shutdown().await.map_err(|e| bad(format!("write: {e}")))?;
        let mut buf = String::new();
        c.read_to_string(&mut buf)
            .await
            .map_err(|e| bad(format!("read: {e}")))?;
        Ok(buf)
    };
    tokio::time::timeout(deadline, work)
        .await
        .map_err(|_| bad(format!("no answer within {deadline:?}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_documented_and_unknown_fields_are_refused() {
        let r: Request = serde_json::from_str(r#"{"cmd":"maintenance","on":true}"#).unwrap();
        assert_eq!(
            r,
            Request::Maintenance {
                on: true,
                for_ms: None
            }
        );
        let r: Request =
            serde_json::from_str(r#"{"cmd":"maintenance","on":true,"for_ms":60000}"#).unwrap();
        assert_eq!(
            r,
            Request::Maintenance {
                on: true,
                for_ms: Some(60000)
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"maintenance","on":1}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
        assert!(
            serde_json::from_str::<Request>(r#"{"cmd":"maintenance","on":true,"x":1}"#).is_err()
        );
    }
}
