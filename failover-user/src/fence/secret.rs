//! The fence password (a BMC's, an agent's): where it comes from, and a type that never
//! prints it.
use std::path::PathBuf;

use crate::config::BootLevel;

/// The password could not be read. The message names the file or variable, never the value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SecretError(String);

/// A password: never printed, never logged.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    pub(in crate::fence) fn expose(&self) -> &str {
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
    /// Where `level` takes its password from, if it has one (`password_file` first).
    pub fn of(level: &BootLevel) -> Option<PasswordSource> {
        match (&level.password_file, &level.password_env) {
            (Some(f), _) => Some(PasswordSource::File(f.clone())),
            (None, Some(v)) => Some(PasswordSource::Env(v.clone())),
            (None, None) => None,
        }
    }

    /// Reads the password; the error names the file or variable, never the value.
    pub fn load(&self) -> Result<Secret, SecretError> {
        match self {
            PasswordSource::File(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| SecretError(format!("password file {}: {e}", p.display())))?;
                let line = text.lines().next().unwrap_or("").to_string();
                if line.is_empty() {
                    return Err(SecretError(format!(
                        "password file {} is empty",
                        p.display()
                    )));
                }
                Ok(Secret(line))
            }
            PasswordSource::Env(v) => match std::env::var(v) {
                Ok(s) if !s.is_empty() => Ok(Secret(s)),
                _ => Err(SecretError(format!(
                    "password environment variable {v} is not set or empty"
                ))),
            },
        }
    }
}
