//! The one configuration writer of the bench: a [`HostConfig`] per host, rendered to TOML.
use std::{fmt::Write as _, path::PathBuf};

/// How a host's `[boot]` section reaches the peer's power.
#[derive(Clone, Debug)]
pub enum Fence {
    /// `method = "command"` with this program.
    Command(PathBuf),
    /// `method = "redfish"`.
    Redfish {
        /// BMC base URL.
        url: String,
        /// The system's Name, Id, UUID or path.
        system: String,
        /// User name.
        username: String,
        /// File holding the password.
        password_file: PathBuf,
        /// CA to verify the BMC with; `None`: `insecure = true` (plain HTTP lab BMCs).
        ca_file: Option<PathBuf>,
    },
    /// `[[boot.level]]` tables, as TOML text, written after the other `[boot]` settings.
    Levels(String),
}

/// One host's configuration.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// A comment line at the top of the file.
    pub comment: String,
    /// Top-level settings, as TOML `key = value` pairs (values already TOML).
    pub top: Vec<(String, String)>,
    /// `node.name`.
    pub name: String,
    /// `node.id`.
    pub id: u32,
    /// `node.interface`.
    pub interface: String,
    /// `node.address` (CIDR).
    pub address: String,
    /// `node.peer`.
    pub peer: String,
    /// `node.peer_name`.
    pub peer_name: String,
    /// `addresses.primary` (CIDR): the probed one.
    pub primary: String,
    /// More primary addresses (CIDR) that move with it: `primary` becomes a list.
    pub primary_extra: Vec<String>,
    /// `addresses.monitor` (CIDR).
    pub monitor: String,
    /// `heartbeat.kind`.
    pub heartbeat: &'static str,
    /// The fence.
    pub fence: Fence,
    /// More `[boot]` settings, TOML lines (timeouts, retries).
    pub boot: String,
    /// `[hooks]` settings, TOML lines.
    pub hooks: String,
    /// `control.socket`.
    pub socket: PathBuf,
    /// `control.metrics`.
    pub metrics: Option<String>,
    /// `paths.bpffs_dir`.
    pub bpffs_dir: PathBuf,
    /// `paths.state_dir`.
    pub state_dir: PathBuf,
    /// The `[sync]` section's lines, if any.
    pub sync: Option<String>,
    /// Whole sections appended at the end.
    pub extra: String,
}

fn quoted(p: &std::path::Path) -> String {
    format!("{:?}", p.display().to_string())
}

impl HostConfig {
    /// Sets top-level `key` to the TOML value `value`, replacing an earlier setting.
    pub fn set(&mut self, key: &str, value: &str) {
        self.top.retain(|(k, _)| k != key);
        self.top.push((key.to_string(), value.to_string()));
    }

    /// The TOML text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let mut w = |line: String| {
            s.push_str(&line);
            s.push('\n');
        };
        w(format!("# {}", self.comment));
        for (k, v) in &self.top {
            w(format!("{k} = {v}"));
        }
        w("[node]".into());
        w(format!("name = {:?}", self.name));
        w(format!("id = {}", self.id));
        w(format!("interface = {:?}", self.interface));
        w(format!("address = {:?}", self.address));
        w(format!("peer = {:?}", self.peer));
        w(format!("peer_name = {:?}", self.peer_name));
        w("[addresses]".into());
        if self.primary_extra.is_empty() {
            w(format!("primary = {:?}", self.primary));
        } else {
            let all: Vec<String> = std::iter::once(&self.primary)
                .chain(&self.primary_extra)
                .map(|c| format!("{c:?}"))
                .collect();
            w(format!("primary = [{}]", all.join(", ")));
        }
        w(format!("monitor = {:?}", self.monitor));
        w("[heartbeat]".into());
        w(format!("kind = {:?}", self.heartbeat));
        w("[boot]".into());
        match &self.fence {
            Fence::Command(c) => {
                w("method = \"command\"".into());
                w(format!("command = {}", quoted(c)));
            }
            Fence::Redfish {
                url,
                system,
                username,
                password_file,
                ca_file,
            } => {
                w("method = \"redfish\"".into());
                w(format!("url = {url:?}"));
                w(format!("system = {system:?}"));
                w(format!("username = {username:?}"));
                w(format!("password_file = {}", quoted(password_file)));
                match ca_file {
                    Some(ca) => w(format!("ca_file = {}", quoted(ca))),
                    None => w("insecure = true".into()),
                }
            }
            Fence::Levels(_) => {}
        }
        let mut rest = String::new();
        let _ = write!(rest, "{}", self.boot);
        if let Fence::Levels(levels) = &self.fence {
            rest.push_str(levels);
        }
        rest.push_str("[hooks]\n");
        rest.push_str(&self.hooks);
        rest.push_str("[control]\n");
        let _ = writeln!(rest, "socket = {}", quoted(&self.socket));
        if let Some(m) = &self.metrics {
            let _ = writeln!(rest, "metrics = {m:?}");
        }
        rest.push_str("[paths]\n");
        let _ = writeln!(rest, "bpffs_dir = {}", quoted(&self.bpffs_dir));
        let _ = writeln!(rest, "state_dir = {}", quoted(&self.state_dir));
        if let Some(sync) = &self.sync {
            rest.push_str("[sync]\n");
            rest.push_str(sync);
        }
        rest.push_str(&self.extra);
        s + &rest
    }
}
