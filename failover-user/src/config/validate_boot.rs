//! Validation of `[boot]` and its levels: each level has what its method needs and nothing
//! another method would read, and the fence as a whole is consistent.
use std::path::Path;

use super::{BootLevel, BootMethod, Config, ConfigError};

/// The optional settings each method reads; any other one set on a level is an error, so a
/// `url` given to an agent (which takes `ip` in `options`) is not silently ignored.
fn reads(method: BootMethod, field: &str) -> bool {
    match method {
        BootMethod::Redfish => matches!(
            field,
            "url"
                | "system"
                | "username"
                | "password_file"
                | "password_env"
                | "ca_file"
                | "insecure"
                | "off_types"
                | "on_types"
                | "restart_types"
        ),
        BootMethod::Agent => matches!(
            field,
            "agent" | "options" | "username" | "password_file" | "password_env"
        ),
        BootMethod::Command => field == "command",
        BootMethod::None => false,
    }
}

/// The optional settings `level` has set.
fn set_fields(level: &BootLevel) -> Vec<&'static str> {
    [
        ("command", level.command.is_some()),
        ("agent", level.agent.is_some()),
        ("options", !level.options.is_empty()),
        ("url", level.url.is_some()),
        ("system", level.system.is_some()),
        ("username", level.username.is_some()),
        ("password_file", level.password_file.is_some()),
        ("password_env", level.password_env.is_some()),
        ("ca_file", level.ca_file.is_some()),
        ("insecure", level.insecure),
        ("off_types", level.off_types.is_some()),
        ("on_types", level.on_types.is_some()),
        ("restart_types", level.restart_types.is_some()),
    ]
    .into_iter()
    .filter_map(|(f, set)| set.then_some(f))
    .collect()
}

/// Option keys an agent must not be given in `options`: the action is set per call, and the
/// password never goes into the configuration.
const RESERVED_OPTIONS: &[&str] = &[
    "action",
    "option",
    "password",
    "passwd",
    "password_script",
    "passwd_script",
];

impl Config {
    pub(super) fn validate_boot(&self, path: &Path) -> Result<(), ConfigError> {
        let boot = &self.boot;
        for (i, level) in boot.levels.iter().enumerate() {
            let prefix = boot.field_prefix(i);
            let bad = |field: &str, message: String| {
                Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    field: format!("{prefix}{field}"),
                    message,
                })
            };
            let method = level.method.name();
            if level.timeout.0.is_zero() {
                return bad("timeout", "must be greater than zero".into());
            }
            match level.method {
                BootMethod::Command if level.command.is_none() => {
                    return bad(
                        "command",
                        "required with method = \"command\": the program to call with off/on/reboot/status".into(),
                    );
                }
                BootMethod::None if boot.levels.len() > 1 => {
                    return bad(
                        "method",
                        "\"none\" fences nothing and cannot be one of several levels".into(),
                    );
                }
                BootMethod::None if !boot.allow_unfenced_takeover => {
                    return bad(
                        "method",
                        "\"none\" takes the primary address without fencing the old primary, which can \
                         leave two hosts answering on it; set boot.allow_unfenced_takeover = true to \
                         accept that risk, or use \"redfish\", \"agent\" or \"command\""
                            .into(),
                    );
                }
                BootMethod::None if !self.takeover => {
                    return bad(
                        "method",
                        "\"none\" cannot reboot the primary, which is all that takeover = false does; \
                         use \"redfish\", \"agent\" or \"command\""
                            .into(),
                    );
                }
                BootMethod::Redfish => validate_redfish(level).or_else(|(f, m)| bad(f, m))?,
                BootMethod::Agent => validate_agent(level).or_else(|(f, m)| bad(f, m))?,
                _ => {}
            }
            if let Some(f) = set_fields(level)
                .into_iter()
                .find(|f| !reads(level.method, f))
            {
                return bad(
                    f,
                    format!("is not a setting of method = \"{method}\" (docs/fencing.md lists each method's settings)"),
                );
            }
        }
        Ok(())
    }
}

type Bad = (&'static str, String);

fn one_password(level: &BootLevel, required: bool) -> Result<(), Bad> {
    match (&level.password_file, &level.password_env) {
        (Some(_), None) | (None, Some(_)) => Ok(()),
        (None, None) if !required => Ok(()),
        _ => Err((
            "password_file",
            "set exactly one of password_file and password_env (the password itself never goes \
             into the config)"
                .into(),
        )),
    }
}

fn validate_redfish(b: &BootLevel) -> Result<(), Bad> {
    let Some(url) = &b.url else {
        return Err((
            "url",
            "required with method = \"redfish\": the BMC's base URL, e.g. \"https://bmc-b\"".into(),
        ));
    };
    match url::Url::parse(url) {
        Ok(u) if u.scheme() == "https" => {}
        Ok(u) if u.scheme() == "http" && b.insecure => {}
        Ok(u) if u.scheme() == "http" => {
            return Err(("url", "http:// sends the BMC password in clear text; use https://, or set insecure = true to accept that".into()))
        }
        Ok(_) => return Err(("url", "expected an https:// URL".into())),
        Err(e) => return Err(("url", format!("{url:?} is not a URL ({e})"))),
    }
    if b.username.as_deref().unwrap_or("").is_empty() {
        return Err(("username", "required with method = \"redfish\"".into()));
    }
    one_password(b, true)?;
    if b.ca_file.is_some() && b.insecure {
        return Err((
            "insecure",
            "ca_file and insecure = true exclude each other".into(),
        ));
    }
    for (field, d) in [
        ("connect_timeout", b.connect_timeout),
        ("request_timeout", b.request_timeout),
        ("fence_timeout", b.fence_timeout),
        ("power_poll", b.power_poll),
    ] {
        if d.0.is_zero() {
            return Err((field, "must be greater than zero".into()));
        }
    }
    for (field, list) in [
        ("off_types", &b.off_types),
        ("on_types", &b.on_types),
        ("restart_types", &b.restart_types),
    ] {
        if list.as_ref().is_some_and(|l| l.is_empty()) {
            return Err((field, "must list at least one reset type".into()));
        }
    }
    Ok(())
}

fn validate_agent(b: &BootLevel) -> Result<(), Bad> {
    let Some(agent) = &b.agent else {
        return Err((
            "agent",
            "required with method = \"agent\": the fence-agents program, e.g. \"fence_redfish\""
                .into(),
        ));
    };
    if agent.as_os_str().is_empty() {
        return Err(("agent", "must not be empty".into()));
    }
    one_password(b, false)?;
    for (key, value) in &b.options {
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err((
                "options",
                format!("{key:?} is not an agent option name (letters, digits, _ and -)"),
            ));
        }
        if RESERVED_OPTIONS.contains(&key.as_str()) {
            return Err((
                "options",
                format!(
                    "{key:?} cannot be set here: the action is set per call, and the password \
                     comes from password_file or password_env"
                ),
            ));
        }
        if (key == "username" || key == "login") && b.username.is_some() {
            return Err((
                "options",
                format!("{key:?} is also given as username; keep one"),
            ));
        }
        match crate::fence::agent::option_value(value) {
            Some(v) if !v.contains(['\n', '\r', '\0']) => {}
            Some(_) => return Err(("options", format!("{key}: a value must be one line"))),
            None => {
                return Err((
                    "options",
                    format!("{key}: expected a string, a number or a boolean"),
                ))
            }
        }
    }
    Ok(())
}
