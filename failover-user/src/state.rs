//! Persisted state: the epoch, bumped on every promotion (safety rule 4 of docs/design.md).
//!
//! Written atomically (temporary file, fsync, rename, fsync of the directory), so a crash leaves
//! either the old or the new epoch, never a torn file.
use std::{
    fs::{self, File},
    io::{self, Write as _},
    path::{Path, PathBuf},
};

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// Which file.
        path: PathBuf,
        /// OS error.
        source: io::Error,
    },
    /// The file exists but does not hold an epoch.
    #[error("{}: {content:?} is not an epoch (expected a decimal integer); fix or remove the file", path.display())]
    Corrupt {
        /// Which file.
        path: PathBuf,
        /// What it holds (trimmed).
        content: String,
    },
    /// A settings file that does not parse.
    #[error("{}: {message}; fix or remove the file", path.display())]
    Invalid {
        /// Which file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

/// The epoch file in a state directory.
#[derive(Debug, Clone)]
pub struct EpochStore {
    dir: PathBuf,
    file: &'static str,
}

impl EpochStore {
    /// The store in `dir` (created on the first write).
    pub fn new(dir: &Path) -> EpochStore {
        EpochStore::named(dir, "epoch")
    }

    /// An epoch kept in `dir/file` (the witness keeps the revoked epoch so).
    pub fn named(dir: &Path, file: &'static str) -> EpochStore {
        EpochStore {
            dir: dir.to_path_buf(),
            file,
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(self.file)
    }

    /// The persisted epoch; 0 when none was ever written.
    pub fn load(&self) -> Result<u64, StateError> {
        let path = self.path();
        match fs::read_to_string(&path) {
            Ok(s) => s.trim().parse().map_err(|_| StateError::Corrupt {
                content: s.trim().chars().take(40).collect(),
                path,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(source) => Err(StateError::Io {
                what: "read",
                path,
                source,
            }),
        }
    }

    /// Persists `epoch` atomically and durably.
    pub fn store(&self, epoch: u64) -> Result<(), StateError> {
        write_atomic(&self.dir, self.file, format!("{epoch}\n").as_bytes())
    }
}

/// Writes `dir/file` atomically and durably: a temporary file, fsync, rename, fsync of the
/// directory (created if missing).
pub fn write_atomic(dir: &Path, file: &str, contents: &[u8]) -> Result<(), StateError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| StateError::Io { what, path, source }
    };
    fs::create_dir_all(dir).map_err(io("create state directory", dir))?;
    let path = dir.join(file);
    let tmp = dir.join(format!("{file}.tmp"));
    let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
    f.write_all(contents).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("fsync", &tmp))?;
    fs::rename(&tmp, &path).map_err(io("rename into place", &path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync state directory", dir))
}

/// What an operator set over the control socket, kept across restarts (`state_dir/admin.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminState {
    /// `failover maintenance on`: set while it lasts.
    #[serde(default)]
    pub maintenance: Option<Maintenance>,
    /// `failover standby on`: set until turned off.
    #[serde(default)]
    pub standby: bool,
}

/// A maintenance period.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    /// Unix ms when it ends by itself (`--for`); none: when turned off. Wall-clock time, so
    /// that it survives a reboot.
    #[serde(default)]
    pub until_unix_ms: Option<u64>,
}

/// The operator's settings in a state directory.
#[derive(Debug, Clone)]
pub struct AdminStore {
    dir: PathBuf,
}

impl AdminStore {
    const FILE: &'static str = "admin.json";

    /// The store in `dir`.
    pub fn new(dir: &Path) -> AdminStore {
        AdminStore {
            dir: dir.to_path_buf(),
        }
    }

    /// The settings; the defaults when the file does not exist.
    pub fn load(&self) -> Result<AdminState, StateError> {
        let path = self.dir.join(Self::FILE);
        match fs::read_to_string(&path) {
            Ok(s) => serde_json::from_str(&s).map_err(|e| StateError::Invalid {
                message: format!("not the operator's settings ({e})"),
                path,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(AdminState::default()),
            Err(source) => Err(StateError::Io {
                what: "read",
                path,
                source,
            }),
        }
    }

    /// Persists `state` atomically and durably.
    pub fn store(&self, state: &AdminState) -> Result<(), StateError> {
        let mut json = serde_json::to_vec_pretty(state).unwrap_or_default();
        json.push(b'\n');
        write_atomic(&self.dir, Self::FILE, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fo-state-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn missing_is_zero_then_round_trips() {
        let d = tempdir("rt");
        let s = EpochStore::new(&d.join("nested"));
        assert_eq!(s.load().expect("load"), 0);
        s.store(41).expect("store");
        s.store(42).expect("store");
        assert_eq!(s.load().expect("load"), 42);
        assert!(
            !d.join("nested/epoch.tmp").exists(),
            "no temporary file left"
        );
        fs::remove_dir_all(&d).expect("cleanup");
    }

    #[test]
    fn admin_settings_round_trip_and_a_bad_file_is_named() {
        let d = tempdir("admin");
        let s = AdminStore::new(&d);
        assert_eq!(s.load().expect("load"), AdminState::default());
        let st = AdminState {
            maintenance: Some(Maintenance {
                until_unix_ms: Some(42),
            }),
            standby: true,
        };
        s.store(&st).expect("store");
        assert_eq!(s.load().expect("load"), st);
        fs::write(d.join("admin.json"), "{\"maintenance\": 3}").expect("write");
        let err = s.load().expect_err("bad").to_string();
        assert!(
            err.contains("admin.json: not the operator's settings"),
            "{err}"
        );
        fs::remove_dir_all(&d).expect("cleanup");
    }

    #[test]
    fn corrupt_file_is_a_clear_error() {
        let d = tempdir("corrupt");
        fs::create_dir_all(&d).expect("mkdir");
        fs::write(d.join("epoch"), "seven\n").expect("write");
        let err = EpochStore::new(&d).load().expect_err("corrupt").to_string();
        assert!(err.contains("epoch: \"seven\" is not an epoch"), "{err}");
        fs::remove_dir_all(&d).expect("cleanup");
    }
}
