//! `method = "agent"`: a program of the fence-agents family (`fence_redfish`, `fence_ipmilan`,
//! `fence_ifmib`, ...), driven the way Pacemaker drives it.
//!
//! The agent gets no arguments. Its options arrive on stdin as `key=value` lines: `action=`
//! (`off`, `on`, `reboot`, `status`), the level's `options`, `username=` and `password=` (read
//! from `password_file` or `password_env`), so no secret appears on a command line or in the
//! environment. Exit 0 means done; for `status`, 0 means on and 2 means off (the agents'
//! convention). An `off` counts as a fence only once `status` exits 2. Output lines are
//! logged with the password blanked out, should an agent ever echo it.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use super::{
    command::{act_and_confirm, run_program, Power},
    Accepted, FenceError, PasswordSource, Secret,
};
use crate::{config::BootLevel, role::BootAction};

/// Where a bare agent name is looked up, in order (Debian installs them in /usr/sbin).
const AGENT_DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin"];

/// Finds `agent`: a path as given, a bare name in [`AGENT_DIRS`].
pub fn locate(agent: &Path) -> Result<PathBuf, String> {
    if agent.components().count() > 1 {
        return Ok(agent.to_path_buf());
    }
    AGENT_DIRS
        .iter()
        .map(|d| Path::new(d).join(agent))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "fence agent {} is not in {} (Debian: apt install fence-agents)",
                agent.display(),
                AGENT_DIRS.join(", ")
            )
        })
}

/// An option value as the agent reads it: strings as written, numbers in decimal, booleans as
/// `1` / `0`. None for tables, arrays and dates.
pub fn option_value(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Boolean(b) => Some(if *b { "1" } else { "0" }.into()),
        _ => None,
    }
}

/// A fence-agents program and the options it is called with.
#[derive(Clone, Debug)]
pub struct AgentFence {
    /// The program.
    pub program: PathBuf,
    /// `key=value` options other than the action and the password, in order.
    pub options: Vec<(String, String)>,
    /// `password=`, when the level has one.
    pub password: Option<Secret>,
    /// Limit of one action including its confirmation.
    pub timeout: Duration,
}

impl AgentFence {
    /// The agent of `level`; reads the password now, so that a missing one stops the daemon at
    /// start rather than at the first fence.
    pub fn from_config(level: &BootLevel) -> Result<AgentFence, FenceError> {
        let agent = level.agent.clone().unwrap_or_default();
        let program = locate(&agent).map_err(FenceError::Setup)?;
        let mut options: Vec<(String, String)> = Vec::new();
        if let Some(u) = &level.username {
            options.push(("username".into(), u.clone()));
        }
        for (k, v) in &level.options {
            let value = option_value(v)
                .ok_or_else(|| FenceError::Setup(format!("options.{k}: not a scalar")))?;
            options.push((k.clone(), value));
        }
        let password = PasswordSource::of(level)
            .map(|s| s.load())
            .transpose()
            .map_err(|e| FenceError::Setup(e.to_string()))?;
        Ok(AgentFence {
            program,
            options,
            password,
            timeout: level.timeout.0,
        })
    }

    /// Runs `action` on the peer; for `Off`, returns only once `status` confirms it off.
    pub async fn run(&self, action: BootAction, accepted: &Accepted) -> Result<(), FenceError> {
        let act = async {
            let (code, out) = self.call(action.name()).await?;
            if code == Some(0) {
                Ok(())
            } else {
                Err(self.failed(action.name(), code, &out))
            }
        };
        act_and_confirm(action, self.timeout, accepted, act, || self.status()).await
    }

    /// Asks whether the peer is off: exit 2 is off, anything else is not (yet) off.
    pub async fn status(&self) -> Result<Power, FenceError> {
        let (code, _) = self.call("status").await?;
        Ok(if code == Some(2) {
            Power::Off
        } else {
            Power::NotOff
        })
    }

    fn failed(&self, action: &'static str, code: Option<i32>, out: &str) -> FenceError {
        FenceError::Failed {
            command: self.program.clone(),
            action,
            message: super::command::exit_message(code, out),
        }
    }

    /// The agent's stdin for `action`.
    fn input(&self, action: &str) -> String {
        let mut text = format!("action={action}\n");
        for (k, v) in &self.options {
            text.push_str(&format!("{k}={v}\n"));
        }
        if let Some(p) = &self.password {
            text.push_str(&format!("password={}\n", p.expose()));
        }
        text
    }

    async fn call(&self, action: &'static str) -> Result<(Option<i32>, String), FenceError> {
        let redact = self.password.as_ref().map(|p| p.expose().to_string());
        run_program(
            &self.program,
            &[],
            &[],
            Some(self.input(action)),
            action,
            redact.as_deref(),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_values_are_what_the_agents_parse() {
        assert_eq!(option_value(&"x y".into()), Some("x y".into()));
        assert_eq!(
            option_value(&toml::Value::Integer(8000)),
            Some("8000".into())
        );
        assert_eq!(option_value(&true.into()), Some("1".into()));
        assert_eq!(option_value(&false.into()), Some("0".into()));
        assert_eq!(option_value(&toml::Value::Array(vec![])), None);
    }

    #[test]
    fn the_password_is_on_stdin_only() {
        let a = AgentFence {
            program: "/usr/sbin/fence_x".into(),
            options: vec![("ip".into(), "10.0.0.1".into())],
            password: Some(Secret::new("s3cret".into())),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(a.input("off"), "action=off\nip=10.0.0.1\npassword=s3cret\n");
        assert!(!format!("{a:?}").contains("s3cret"));
    }

    #[test]
    fn bare_names_are_looked_up_and_paths_kept() {
        assert_eq!(
            locate(Path::new("/opt/x/fence_y")).unwrap(),
            PathBuf::from("/opt/x/fence_y")
        );
        let e = locate(Path::new("fence_no_such_agent")).unwrap_err();
        assert!(
            e.contains("fence_no_such_agent") && e.contains("fence-agents"),
            "{e}"
        );
    }
}
