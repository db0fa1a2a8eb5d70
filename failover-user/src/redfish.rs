//! A thin Redfish client for one job: find a ComputerSystem, read its power state, reset it.
//!
//! Built on reqwest + rustls (ring provider). TLS is verified by default, against a configured
//! CA file or the system store; `insecure` must be asked for. Sessions are used where the
//! service has a SessionService (and deleted afterwards: BMCs run out of sessions), basic auth
//! otherwise. The password lives in [`Secret`], which never prints. See docs/redfish.md.
use std::{path::PathBuf, sync::Arc, time::Duration};

use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use url::Url;

/// A password: never printed, never logged.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where the password comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordSource {
    /// A file; its first line is the password.
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

impl PasswordSource {
    /// Reads the password; the error names the file or variable, never the value.
    pub fn load(&self) -> Result<Secret, RedfishError> {
        match self {
            PasswordSource::File(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    RedfishError::Setup(format!("password file {}: {e}", p.display()))
                })?;
                let line = text.lines().next().unwrap_or("").to_string();
                if line.is_empty() {
                    return Err(RedfishError::Setup(format!(
                        "password file {} is empty",
                        p.display()
                    )));
                }
                Ok(Secret(line))
            }
            PasswordSource::Env(v) => match std::env::var(v) {
                Ok(s) if !s.is_empty() => Ok(Secret(s)),
                _ => Err(RedfishError::Setup(format!(
                    "password environment variable {v} is not set or empty"
                ))),
            },
        }
    }
}

/// How to reach and authenticate to a BMC.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Base URL, e.g. `https://bmc-a` (the service root is `/redfish/v1/` below it).
    pub url: Url,
    /// The system: an `@odata.id` path, or an Id, Name or UUID. None: the only member.
    pub system: Option<String>,
    /// User name.
    pub username: String,
    /// Password.
    pub password: Secret,
    /// CA certificate(s) to trust instead of the system store.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (explicit opt-in).
    pub insecure: bool,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// Extra attempts of a request that failed in transport (connect, timeout, reset).
    pub retries: u32,
}

/// A Redfish failure. The message names the request ("POST URL (ForceOff)") and never a
/// password.
#[derive(Debug, thiserror::Error)]
pub enum RedfishError {
    /// Bad settings (URL, CA file, password source).
    #[error("redfish: {0}")]
    Setup(String),
    /// The request did not get an answer.
    #[error("redfish: {op}: {message}")]
    Transport {
        /// Method, URL and what for.
        op: String,
        /// Transport error.
        message: String,
    },
    /// The service answered with an error status.
    #[error("redfish: {op}: {status}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Status {
        /// Method, URL and what for.
        op: String,
        /// HTTP status.
        status: StatusCode,
        /// The Redfish error message, if any.
        message: String,
    },
    /// The answer was not what Redfish promises.
    #[error("redfish: {op}: {message}")]
    Protocol {
        /// Method, URL and what for.
        op: String,
        /// What is wrong.
        message: String,
    },
    /// A wait ran out.
    #[error("redfish: {0}")]
    Timeout(String),
}

impl RedfishError {
    /// The HTTP status, when the service answered with one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            RedfishError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A ComputerSystem as found by discovery.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct System {
    /// `@odata.id`.
    pub path: String,
    /// `Id`.
    pub id: String,
    /// `Name`.
    pub name: String,
    /// `UUID`, if any.
    pub uuid: Option<String>,
    /// `PowerState`.
    pub power_state: String,
    /// Target of `#ComputerSystem.Reset`.
    pub reset_target: String,
    /// Allowed reset types.
    pub reset_types: Vec<String>,
}

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
    settings: Settings,
    auth: Auth,
    /// `Systems` collection path from the service root.
    systems: String,
}

/// Polling interval of task monitors without Retry-After.
const TASK_POLL: Duration = Duration::from_millis(500);

fn tls_config(s: &Settings) -> Result<rustls::ClientConfig, RedfishError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| RedfishError::Setup(format!("TLS: {e}")))?;
    if s.insecure {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    match &s.ca_file {
        Some(path) => {
            use rustls_pki_types::{pem::PemObject as _, CertificateDer};
            let bad = |e: String| RedfishError::Setup(format!("CA file {}: {e}", path.display()));
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no PEM certificate in it".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| bad(e.to_string()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(RedfishError::Setup(
                    "no CA certificates in the system store: set ca_file".into(),
                ));
            }
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// The verifier of `insecure = true`: accepts any certificate, still checks signatures.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

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

/// A Redfish error body's message (`error.message`, or the first extended info message).
fn error_message(body: &Value) -> String {
    let e = &body["error"];
    e["@Message.ExtendedInfo"][0]["Message"]
        .as_str()
        .or_else(|| e["message"].as_str())
        .unwrap_or("")
        .chars()
        .take(300)
        .collect()
}

struct Answer {
    status: StatusCode,
    headers: header::HeaderMap,
    body: Value,
}

impl Client {
    /// Connects: checks the settings, reads the service root and logs in (a session where
    /// the service offers one, basic auth otherwise).
    pub async fn connect(settings: Settings) -> Result<Client, RedfishError> {
        if !matches!(settings.url.scheme(), "https" | "http") {
            return Err(RedfishError::Setup(format!(
                "url {}: expected https:// (or http://)",
                settings.url
            )));
        }
        if settings.insecure {
            tracing::warn!(url = %settings.url,
                "redfish: insecure = true: the BMC's TLS certificate is not verified");
        }
        let tls = tls_config(&settings)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("failover/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RedfishError::Setup(format!("HTTP client: {e}")))?;
        let mut c = Client {
            http,
            settings,
            auth: Auth::Basic,
            systems: String::new(),
        };
        let root = c.get("/redfish/v1/", "service root").await?;
        c.systems = root["Systems"]["@odata.id"]
            .as_str()
            .unwrap_or("/redfish/v1/Systems")
            .to_string();
        let sessions = root["Links"]["Sessions"]["@odata.id"]
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                root.get("SessionService")
                    .map(|_| "/redfish/v1/SessionService/Sessions".to_string())
            });
        if let Some(path) = sessions {
            c.login(&path).await?;
        }
        Ok(c)
    }

    fn url(&self, path: &str) -> Result<Url, RedfishError> {
        self.settings
            .url
            .join(path)
            .map_err(|e| RedfishError::Setup(format!("{path:?} below {}: {e}", self.settings.url)))
    }

    async fn login(&mut self, path: &str) -> Result<(), RedfishError> {
        let url = self.url(path)?;
        let op = format!("POST {url} (create session)");
        let body = json!({"UserName": self.settings.username, "Password": self.settings.password.expose()});
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
            .or_else(|| a.body["@odata.id"].as_str().and_then(|p| self.url(p).ok()));
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
    ) -> Result<Answer, RedfishError> {
        let mut attempt = 0;
        loop {
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .header(header::ACCEPT, "application/json")
                .header("OData-Version", "4.0");
            req = match &self.auth {
                Auth::Basic => req.basic_auth(
                    &self.settings.username,
                    Some(self.settings.password.expose()),
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
                    let body: Value = if bytes.is_empty() {
                        Value::Null
                    } else {
                        match serde_json::from_slice(&bytes) {
                            Ok(v) => v,
                            Err(e) if status.is_success() => {
                                return Err(RedfishError::Protocol {
                                    op: op.to_string(),
                                    message: format!("the answer is not JSON ({e})"),
                                })
                            }
                            Err(_) => Value::Null,
                        }
                    };
                    if !status.is_success() {
                        return Err(RedfishError::Status {
                            op: op.to_string(),
                            status,
                            message: error_message(&body),
                        });
                    }
                    return Ok(Answer {
                        status,
                        headers,
                        body,
                    });
                }
                Err(e) => {
                    let retry = attempt < self.settings.retries && (idempotent || e.is_connect());
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
        let sel = self.settings.system.clone();
        let path = match sel.as_deref() {
            Some(p) if p.starts_with('/') => p.to_string(),
            _ => {
                let coll = self.get(&coll_path, "systems").await?;
                let members: Vec<String> = coll["Members"]
                    .as_array()
                    .map(|m| {
                        m.iter()
                            .filter_map(|x| x["@odata.id"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
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
                            let matches = [&s["Id"], &s["Name"], &s["UUID"]]
                                .iter()
                                .any(|v| v.as_str().is_some_and(|x| x.eq_ignore_ascii_case(want)))
                                || m.trim_end_matches('/').rsplit('/').next() == Some(want);
                            if matches {
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
        let action = &s["Actions"]["#ComputerSystem.Reset"];
        let target = action["target"]
            .as_str()
            .ok_or_else(|| RedfishError::Protocol {
                op: op.clone(),
                message: "the system has no #ComputerSystem.Reset action".into(),
            })?;
        let mut types: Vec<String> = action["ResetType@Redfish.AllowableValues"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if types.is_empty() {
            if let Some(info) = action["@Redfish.ActionInfo"].as_str() {
                let info = self.get(info, "reset action info").await?;
                types = info["Parameters"]
                    .as_array()
                    .and_then(|ps| ps.iter().find(|p| p["Name"] == "ResetType"))
                    .and_then(|p| p["AllowableValues"].as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
            }
        }
        Ok(System {
            path: s["@odata.id"].as_str().unwrap_or(path).to_string(),
            id: s["Id"].as_str().unwrap_or("").to_string(),
            name: s["Name"].as_str().unwrap_or("").to_string(),
            uuid: s["UUID"].as_str().map(str::to_string),
            power_state: s["PowerState"].as_str().unwrap_or("Unknown").to_string(),
            reset_target: target.to_string(),
            reset_types: types,
        })
    }

    /// The system's current `PowerState`.
    pub async fn power_state(&self, system: &System) -> Result<String, RedfishError> {
        let s = self.get(&system.path, "power state").await?;
        Ok(s["PowerState"].as_str().unwrap_or("Unknown").to_string())
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
        a.headers
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| a.body["@odata.etag"].as_str().map(str::to_string))
            .ok_or_else(|| RedfishError::Protocol {
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
        let mut wait = retry_after(headers).unwrap_or(TASK_POLL);
        loop {
            tokio::time::sleep(wait).await;
            let top = format!("GET {loc} (task monitor of {op})");
            let a = self
                .send(Method::GET, loc.clone(), None, None, &top, true)
                .await?;
            if a.status != StatusCode::ACCEPTED {
                let state = a.body["TaskState"].as_str().unwrap_or("Completed");
                return match state {
                    "Completed" | "" => Ok(()),
                    other => Err(RedfishError::Protocol {
                        op: top,
                        message: format!(
                            "task ended {other}: {}",
                            a.body["Messages"][0]["Message"].as_str().unwrap_or("")
                        ),
                    }),
                };
            }
            wait = retry_after(&a.headers).unwrap_or(TASK_POLL);
        }
    }
}

fn retry_after(h: &header::HeaderMap) -> Option<Duration> {
    h.get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(60)))
}

/// Reset types tried for a fence, in order (the first one the system allows and accepts).
pub const OFF_TYPES: &[&str] = &["ForceOff", "GracefulShutdown", "PushPowerButton"];
/// Reset types tried to power on.
pub const ON_TYPES: &[&str] = &["On", "ForceOn", "PushPowerButton"];
/// Reset types tried for a restart (recovery without takeover).
pub const RESTART_TYPES: &[&str] = &["ForceRestart", "GracefulRestart", "PowerCycle"];

/// Resets with the first of `preferred` that the system allows; a type refused with 400 or
/// 501 falls to the next. Returns the type that was accepted.
pub async fn reset_first_allowed(
    c: &Client,
    system: &System,
    preferred: &[String],
) -> Result<String, RedfishError> {
    let allowed: Vec<&String> = preferred
        .iter()
        .filter(|t| system.reset_types.is_empty() || system.reset_types.contains(t))
        .collect();
    if allowed.is_empty() {
        return Err(RedfishError::Protocol {
            op: format!("reset {}", system.path),
            message: format!(
                "none of {preferred:?} is allowed (the system allows {:?})",
                system.reset_types
            ),
        });
    }
    let mut last = None;
    for t in allowed {
        match c.reset(system, t).await {
            Ok(()) => return Ok(t.clone()),
            Err(e)
                if matches!(
                    e.status(),
                    Some(StatusCode::BAD_REQUEST | StatusCode::NOT_IMPLEMENTED)
                ) =>
            {
                tracing::warn!("{e}; trying the next reset type");
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("at least one type was tried"))
}

/// Polls `PowerState` every `every` until it equals `want` or `limit` runs out.
pub async fn wait_power(
    c: &Client,
    system: &System,
    want: &str,
    every: Duration,
    limit: Duration,
) -> Result<(), RedfishError> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let state = c.power_state(system).await?;
        if state == want {
            return Ok(());
        }
        if tokio::time::Instant::now() + every > deadline {
            return Err(RedfishError::Timeout(format!(
                "{} PowerState still {state} after {limit:?}, waiting for {want}",
                c.url(&system.path)
                    .map(|u| u.to_string())
                    .unwrap_or_default()
            )));
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s:?}"), "Secret(***)");
        let settings = Settings {
            url: "https://bmc".parse().unwrap(),
            system: None,
            username: "admin".into(),
            password: s,
            ca_file: None,
            insecure: false,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            retries: 0,
        };
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn error_messages_come_from_the_redfish_body() {
        let b = json!({"error": {"code": "Base.1.0.GeneralError", "message": "outer",
            "@Message.ExtendedInfo": [{"Message": "inner detail"}]}});
        assert_eq!(error_message(&b), "inner detail");
        assert_eq!(error_message(&json!({"error": {"message": "m"}})), "m");
        assert_eq!(error_message(&Value::Null), "");
    }

    #[test]
    fn password_sources_name_themselves_not_the_value() {
        let e = PasswordSource::Env("FAILOVER_TEST_NO_SUCH_VAR".into())
            .load()
            .unwrap_err()
            .to_string();
        assert!(e.contains("FAILOVER_TEST_NO_SUCH_VAR"), "{e}");
        let e = PasswordSource::File("/nonexistent/pw".into())
            .load()
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/pw"), "{e}");
    }
}
