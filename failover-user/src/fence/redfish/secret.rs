//! The BMC password: where it comes from, and a type that never prints it.
use std::path::PathBuf;

use super::RedfishError;

/// A password: never printed, never logged.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    pub(super) fn expose(&self) -> &str {
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
