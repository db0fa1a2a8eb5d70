//! The Redfish client: service root, sessions or basic auth, discovery of the system, reset
//! actions with task monitors and If-Match retries, power state.
use std::time::Duration;

use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use url::Url;

use super::{parse, tls::tls_config, Endpoint, RedfishError, System};

#[derive(Debug)]
enum Auth {
    Basic,
    Session {
        token: String,
        location: Option<Url>,
    },
}

/// An authenticated connection to one BMC. Call [`Client::close`] when done, so a session is
/// deleted.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    endpoint: Endpoint,
    auth: Auth,
    /// `Systems` collection path from the service root.
    systems: String,
}

/// Polling interval of task monitors without Retry-After.
const TASK_POLL: Duration = Duration::from_millis(500);

/// The error text of a transport failure with its causes (reqwest hides them in `source`).
fn transport_message(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "no answer within the timeout".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = cur {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        cur = s.source();
    }
    msg
}

struct Reply {
    status: StatusCode,
    headers: header::HeaderMap,
    body: Value,
}

impl Client {
    /// Connects: checks the endpoint, reads the service root and logs in (a session where
    /// the service offers one, basic auth otherwise).
    pub async fn connect(endpoint: Endpoint) -> Result<Client, RedfishError> {
        if !matches!(endpoint.url.scheme(), "https" | "http") {
            return Err(RedfishError::Setup(format!(
                "url {}: expected https:// (or http://)",
                endpoint.url
            )));
        }
        if endpoint.insecure {
            tracing::warn!(url = %endpoint.url,
                "redfish: insecure = true: the BMC's TLS certificate is not verified");
        }
        let tls = tls_config(&endpoint)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(endpoint.connect_timeout)
            .timeout(endpoint.request_timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("failover/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RedfishError::Setup(format!("HTTP client: {e}")))?;
        let mut c = Client {
            http,
            endpoint,
            auth: Auth::Basic,
            systems: String::new(),
        };
        let root = parse::service_root(&c.get("/redfish/v1/", "service root").await?);
        c.systems = root.systems;
        if let Some(path) = root.sessions {
            c.login(&path).await?;
        }
        Ok(c)
    }

    pub(super) fn url(&self, path: &str) -> Result<Url, RedfishError> {
        self.endpoint
            .url
            .join(path)
            .map_err(|e| RedfishError::Setup(format!("{path:?} below {}: {e}", self.endpoint.url)))
    }

    async fn login(&mut self, path: &str) -> Result<(), RedfishError> {
        let url = self.url(path)?;
        let op = format!("POST {url} (create session)");
        let body = json!({"UserName": self.endpoint.username, "Password": self.endpoint.password.expose()});
        let a = self
            .send(Method::POST, url.clone(), Some(&body), None, &op, false)
            .await?;
        let token = a
            .headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RedfishError::Protocol {
                op: op.clone(),
                message: "no X-Auth-Token in the answer".into(),
            })?
            .to_string();
        let location = a
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| url.join(l).ok())
            .or_else(|| parse::session_path(&a.body).and_then(|p| self.url(p).ok()));
        self.auth = Auth::Session { token, location };
        Ok(())
    }

    /// Ends the session (if one was opened). Errors are logged, not returned: the work is done.
    pub async fn close(self) {
        if let Auth::Session {
            location: Some(loc),
            ..
        } = &self.auth
        {
            let op = format!("DELETE {loc} (end session)");
            if let Err(e) = self
                .send(Method::DELETE, loc.clone(), None, None, &op, true)
                .await
            {
                tracing::warn!("{e}");
            }
        }
    }

    /// Whether this client uses a session (else basic auth).
    pub fn uses_session(&self) -> bool {
        matches!(self.auth, Auth::Session { .. })
    }

    /// One request with authentication and bounded retries of transport failures. `idempotent`
    /// requests are retried after any transport failure, others only when the connection
    /// could not be made (the request never left).
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        if_match: Option<&str>,
        op: &str,
        idempotent: bool,
    ) -> Result<Reply, RedfishError> {
        let mut attempt = 0;
        loop {
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .header(header::ACCEPT, "application/json")
                .header("OData-Version", "4.0");
            req = match &self.auth {
                Auth::Basic => req.basic_auth(
                    &self.endpoint.username,
                    Some(self.endpoint.password.expose()),
                ),
                Auth::Session { token, .. } => req.header("X-Auth-Token", token),
            };
            if let Some(b) = body {
                req = req
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(b.to_string());
            }
            if let Some(tag) = if_match {
                req = req.header(header::IF_MATCH, tag);
            }
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let bytes = resp.bytes().await.map_err(|e| RedfishError::Transport {
                        op: op.to_string(),
                        message: transport_message(&e),
                    })?;
                    let body = parse::body(status.is_success(), &bytes).map_err(|message| {
                        RedfishError::Protocol {
                            op: op.to_string(),
                            message,
                        }
                    })?;
                    if !status.is_success() {
                        return Err(RedfishError::Status {
                            op: op.to_string(),
                            status,
                            message: parse::error_message(&body),
                        });
                    }
                    return Ok(Reply {
                        status,
                        headers,
                        body,
                    });
                }
                Err(e) => {
                    let retry = attempt < self.endpoint.retries && (idempotent || e.is_connect());
                    if !retry {
                        return Err(RedfishError::Transport {
                            op: op.to_string(),
                            message: transport_message(&e),
                        });
                    }
                    attempt += 1;
                    tracing::debug!(op, attempt, error = %transport_message(&e), "redfish: retrying");
                    tokio::time::sleep(Duration::from_millis(200) * attempt).await;
                }
            }
        }
    }

    async fn get(&self, path: &str, what: &str) -> Result<Value, RedfishError> {
        let url = self.url(path)?;
        let op = format!("GET {url} ({what})");
        Ok(self
            .send(Method::GET, url, None, None, &op, true)
            .await?
            .body)
    }

    /// Finds the configured system (or the only one) and reads its reset action.
    pub async fn system(&self) -> Result<System, RedfishError> {
        let coll_path = self.systems.clone();
        let sel = self.endpoint.system.clone();
        let path = match sel.as_deref() {
            Some(p) if p.starts_with('/') => p.to_string(),
            _ => {
                let members = parse::members(&self.get(&coll_path, "systems").await?);
                let op = format!("GET {} (systems)", self.url(&coll_path)?);
                match sel.as_deref() {
                    None => match members.as_slice() {
                        [one] => one.clone(),
                        [] => {
                            return Err(RedfishError::Protocol {
                                op,
                                message: "the service lists no systems".into(),
                            })
                        }
                        many => {
                            return Err(RedfishError::Protocol {
                                op,
                                message: format!(
                                    "{} systems ({}); set system to one path, Id, Name or UUID",
                                    many.len(),
                                    many.join(", ")
                                ),
                            })
                        }
                    },
                    Some(want) => {
                        let mut hits = Vec::new();
                        for m in &members {
                            let s = self.get(m, "system").await?;
                            if parse::is_system(&s, m, want) {
                                hits.push(m.clone());
                            }
                        }
                        match hits.as_slice() {
                            [one] => one.clone(),
                            [] => {
                                return Err(RedfishError::Protocol {
                                    op,
                                    message: format!(
                                        "no system with path, Id, Name or UUID {want:?} among {}",
                                        members.join(", ")
                                    ),
                                })
                            }
                            many => {
                                return Err(RedfishError::Protocol {
                                    op,
                                    message: format!(
                                        "{want:?} matches {} systems ({}); use the path",
                                        many.len(),
                                        many.join(", ")
                                    ),
                                })
                            }
                        }
                    }
                }
            }
        };
        self.read_system(&path).await
    }

    async fn read_system(&self, path: &str) -> Result<System, RedfishError> {
        let s = self.get(path, "system").await?;
        let op = format!("GET {} (system)", self.url(path)?);
        let action = parse::reset_action(&s).ok_or_else(|| RedfishError::Protocol {
            op: op.clone(),
            message: "the system has no #ComputerSystem.Reset action".into(),
        })?;
        let mut types = action.types;
        if types.is_empty() {
            if let Some(info) = action.action_info {
                types = parse::action_info_types(&self.get(info, "reset action info").await?);
            }
        }
        Ok(parse::system(&s, path, action.target, types))
    }

    /// The system's current `PowerState`.
    pub async fn power_state(&self, system: &System) -> Result<String, RedfishError> {
        Ok(parse::power_state(
            &self.get(&system.path, "power state").await?,
        ))
    }

    /// Posts one reset of `reset_type` and waits for the service to accept it: 200 and 204
    /// are done, 202 is followed through its task monitor. A service that demands If-Match
    /// (428, or 412 for a stale tag) gets the system's current ETag.
    pub async fn reset(&self, system: &System, reset_type: &str) -> Result<(), RedfishError> {
        let url = self.url(&system.reset_target)?;
        let op = format!("POST {url} ({reset_type})");
        let body = json!({"ResetType": reset_type});
        let mut etag: Option<String> = None;
        for _ in 0..2 {
            match self
                .send(
                    Method::POST,
                    url.clone(),
                    Some(&body),
                    etag.as_deref(),
                    &op,
                    false,
                )
                .await
            {
                Ok(a) if a.status == StatusCode::ACCEPTED => {
                    return self.follow_task(&url, &a.headers, &op).await
                }
                Ok(_) => return Ok(()),
                Err(e)
                    if etag.is_none()
                        && matches!(
                            e.status(),
                            Some(
                                StatusCode::PRECONDITION_REQUIRED | StatusCode::PRECONDITION_FAILED
                            )
                        ) =>
                {
                    etag = Some(self.etag(&system.path).await?);
                }
                Err(e) => return Err(e),
            }
        }
        Err(RedfishError::Protocol {
            op,
            message: "refused even with the current ETag in If-Match".into(),
        })
    }

    async fn etag(&self, path: &str) -> Result<String, RedfishError> {
        let url = self.url(path)?;
        let op = format!("GET {url} (ETag for If-Match)");
        let a = self.send(Method::GET, url, None, None, &op, true).await?;
        parse::etag(&a.headers, &a.body).ok_or_else(|| RedfishError::Protocol {
            op,
            message: "the service demands If-Match but gives no ETag".into(),
        })
    }

    async fn follow_task(
        &self,
        base: &Url,
        headers: &header::HeaderMap,
        op: &str,
    ) -> Result<(), RedfishError> {
        let loc = headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| base.join(l).ok())
            .ok_or_else(|| RedfishError::Protocol {
                op: op.to_string(),
                message: "202 Accepted without a task monitor Location".into(),
            })?;
        let mut wait = parse::retry_after(headers).unwrap_or(TASK_POLL);
        loop {
            tokio::time::sleep(wait).await;
            let top = format!("GET {loc} (task monitor of {op})");
            let a = self
                .send(Method::GET, loc.clone(), None, None, &top, true)
                .await?;
            if a.status != StatusCode::ACCEPTED {
                return parse::task_outcome(&a.body)
                    .map_err(|message| RedfishError::Protocol { op: top, message });
            }
            wait = parse::retry_after(&a.headers).unwrap_or(TASK_POLL);
        }
    }
}
