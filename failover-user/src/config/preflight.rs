//! What `run` would refuse at start beyond the values themselves: the files the configuration
//! names exist and are readable (the BMC password, the CA file, the sync key, whose mode is
//! checked too), and the programs it names exist and are executable. `check-config` runs the
//! same checks, so an operator sees the same message, naming the field, before starting.
use std::{os::unix::fs::PermissionsExt as _, path::Path};

use super::{Config, ConfigError};
use crate::{
    fence::{redfish::read_ca_file, PasswordSource},
    sync::Key,
};

/// Checks that `program` is a regular file someone may execute.
fn executable(program: &Path) -> Result<(), String> {
    let md = std::fs::metadata(program).map_err(|e| format!("{}: {e}", program.display()))?;
    if !md.is_file() {
        return Err(format!("{} is not a regular file", program.display()));
    }
    if md.permissions().mode() & 0o111 == 0 {
        return Err(format!(
            "{} is not executable (chmod +x it)",
            program.display()
        ));
    }
    Ok(())
}

impl Config {
    /// The checks that need the filesystem (and the environment, for `password_env`). The
    /// error names the file and the field.
    pub fn preflight(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, message: String| ConfigError::Invalid {
            path: self.file.clone(),
            field: field.to_string(),
            message,
        };
        for (field, hook) in [
            ("hooks.on_primary", &self.hooks.on_primary),
            ("hooks.on_monitor", &self.hooks.on_monitor),
            ("hooks.on_fault", &self.hooks.on_fault),
            ("hooks.on_switchover", &self.hooks.on_switchover),
            ("hooks.on_stop", &self.hooks.on_stop),
        ] {
            if let Some(h) = hook {
                executable(h).map_err(|m| bad(field, m))?;
            }
        }
        for (i, c) in self.checks.iter().enumerate() {
            if let Some(program) = &c.command {
                executable(program).map_err(|m| bad(&format!("check[{}].command", i + 1), m))?;
            }
        }
        for (i, level) in self.boot.levels.iter().enumerate() {
            let prefix = self.boot.field_prefix(i);
            let bad = |field: &str, m: String| bad(&format!("{prefix}{field}"), m);
            if let Some(c) = &level.command {
                executable(c).map_err(|m| bad("command", m))?;
            }
            if let Some(a) = &level.agent {
                let program = crate::fence::agent::locate(a).map_err(|m| bad("agent", m))?;
                executable(&program).map_err(|m| bad("agent", m))?;
            }
            if let Some(source) = PasswordSource::of(level) {
                let field = match source {
                    PasswordSource::File(_) => "password_file",
                    PasswordSource::Env(_) => "password_env",
                };
                source.load().map_err(|e| bad(field, e.to_string()))?;
            }
            if let Some(ca) = &level.ca_file {
                read_ca_file(ca).map_err(|e| bad("ca_file", e.to_string()))?;
            }
        }
        if let Some(sy) = &self.sync {
            Key::load(&sy.key_file).map_err(|e| bad("sync.key_file", e.to_string()))?;
        }
        Ok(())
    }
}
