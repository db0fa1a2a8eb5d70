//! What a copy accepts: paths inside the data directory, and symlinks that stay inside it
//! however they resolve. The primary refuses to offer a tree that breaks these rules; the
//! monitor checks the manifest again before it writes anything (it comes from the peer).
use super::{manifest::FORMAT, Entry, Manifest};

/// Why a symlink at `rel` (a path in the tree) to `target` is not carried, or `None` when it
/// is: the target is relative, any `..` come first, and there are no more of them than `rel`
/// has directories above it.
///
/// Stricter than "the lexical normalisation stays inside": with `r -> .` at the top, a link
/// `x -> r/..` normalises to the top but resolves to its parent. With the `..` first, a link
/// climbs only real directories of the tree (the directories above a link are directories,
/// never links, on both hosts), and what follows only descends, into directories or into
/// links that obey the same rule.
pub(super) fn link_refusal(rel: &str, target: &str) -> Option<&'static str> {
    if target.is_empty() {
        return Some("is empty");
    }
    if target.contains('\0') {
        return Some("contains a NUL byte");
    }
    if target.starts_with('/') {
        return Some("is absolute");
    }
    let above = rel.matches('/').count();
    let mut ups = 0;
    let mut named = false;
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." if named => return Some("has `..` after a name"),
            ".." => {
                ups += 1;
                if ups > above {
                    return Some("leads out of the data directory");
                }
            }
            _ => named = true,
        }
    }
    None
}

/// Whether `rel` is a plain relative path: components that are names (no `.`, `..` or empty
/// ones), no NUL.
fn plain(rel: &str) -> bool {
    !rel.contains('\0')
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

fn check_attrs(what: &str, e: &Entry) -> Result<(), String> {
    if e.mode > 0o7777 {
        return Err(format!("{what}: mode {:o} has bits beyond 7777", e.mode));
    }
    if e.uid == u32::MAX || e.gid == u32::MAX {
        return Err(format!("{what}: owner {}:{} is not an owner", e.uid, e.gid));
    }
    if e.mtime_ns >= 1_000_000_000 {
        return Err(format!("{what}: {} nanoseconds", e.mtime_ns));
    }
    Ok(())
}

impl Manifest {
    /// Checks a manifest that came from the peer, before anything of it is written: its format
    /// is this host's; every path is plain and below a directory of the manifest (never below
    /// a file or a symlink, so nothing is ever written through one); an entry is one kind; the
    /// symlinks stay inside ([`link_refusal`]); owners, modes and times are ones this host can
    /// set.
    pub(super) fn check_peer(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "the primary sent format {} (0: a failover from before formats), this host \
                 reads {FORMAT}: run the same failover version on both hosts",
                self.format
            ));
        }
        if let Some(r) = &self.root {
            if !r.is_dir() {
                return Err("the data directory itself is not a directory".into());
            }
            check_attrs("the data directory", r)?;
        }
        for (rel, e) in &self.entries {
            if !plain(rel) {
                return Err(format!("path {rel:?} escapes the data directory"));
            }
            if let Some((parent, _)) = rel.rsplit_once('/') {
                if !self.entries.get(parent).is_some_and(Entry::is_dir) {
                    return Err(format!("{rel:?} is not below a directory of the manifest"));
                }
            }
            check_attrs(rel, e)?;
            match (&e.file, &e.link) {
                (Some(_), Some(_)) => return Err(format!("{rel:?} is both a file and a symlink")),
                (None, Some(t)) => {
                    if let Some(why) = link_refusal(rel, t) {
                        return Err(format!("{rel:?} is a symlink to {t:?}, which {why}"));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::FileSum;

    #[test]
    fn links_may_climb_real_directories_only() {
        for (rel, t) in [
            ("data/pg_wal", "../wal"),
            ("a/b/c", "../../x/y"),
            ("l", "sub/dir"),
            ("l", "./x"),
            ("d/up", ".."),
            ("d/x", "y/"),
        ] {
            assert_eq!(link_refusal(rel, t), None, "{rel} -> {t}");
        }
        for (rel, t, why) in [
            ("x", "/etc", "absolute"),
            ("a/x", "../../etc", "leads out"),
            ("x", "..", "leads out"),
            ("x", "r/..", "after a name"),
            ("a/x", "b/../../..", "after a name"),
            ("x", "", "empty"),
            ("x", "a\0b", "NUL"),
        ] {
            let got = link_refusal(rel, t).unwrap_or_default();
            assert!(got.contains(why), "{rel} -> {t}: {got:?}");
        }
    }

    fn dir() -> Entry {
        Entry {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_ns: 0,
            file: None,
            link: None,
        }
    }

    fn file() -> Entry {
        Entry {
            mode: 0o644,
            file: Some(FileSum {
                size: 1,
                hash: "00".into(),
            }),
            ..dir()
        }
    }

    fn link(t: &str) -> Entry {
        Entry {
            mode: 0o777,
            link: Some(t.into()),
            ..dir()
        }
    }

    fn manifest(entries: &[(&str, Entry)]) -> Manifest {
        Manifest {
            format: FORMAT,
            root: Some(dir()),
            entries: entries
                .iter()
                .map(|(p, e)| (p.to_string(), e.clone()))
                .collect(),
            epoch: 0,
        }
    }

    #[test]
    fn a_peers_manifest_is_checked_before_anything_is_written() {
        let good = manifest(&[
            ("d", dir()),
            ("d/f", file()),
            ("d/l", link("../d")),
            ("top", link("d/f")),
        ]);
        assert_eq!(good.check_peer(), Ok(()));
        let bad: [(Manifest, &str); 14] = [
            (manifest(&[("../x", file())]), "escapes"),
            (manifest(&[("/etc/passwd", file())]), "escapes"),
            (manifest(&[("a/./b", file())]), "escapes"),
            (manifest(&[("a//b", file())]), "escapes"),
            (manifest(&[("", file())]), "escapes"),
            (manifest(&[("a\0b", file())]), "escapes"),
            (manifest(&[("a/b", file())]), "not below a directory"),
            (
                manifest(&[("l", link("d")), ("l/f", file())]),
                "not below a directory",
            ),
            (
                manifest(&[("f", file()), ("f/g", file())]),
                "not below a directory",
            ),
            (manifest(&[("x", link("/etc"))]), "absolute"),
            (
                manifest(&[("d", dir()), ("d/x", link("../../etc"))]),
                "leads out",
            ),
            (
                manifest(&[(
                    "x",
                    Entry {
                        link: Some("y".into()),
                        ..file()
                    },
                )]),
                "both",
            ),
            (
                manifest(&[(
                    "f",
                    Entry {
                        mtime_ns: 1_000_000_000,
                        ..file()
                    },
                )]),
                "nanoseconds",
            ),
            (
                Manifest {
                    format: 0,
                    ..manifest(&[])
                },
                "same failover version",
            ),
        ];
        for (m, want) in bad {
            let e = m.check_peer().unwrap_err();
            assert!(e.contains(want), "{:?}: {e}", m.entries.keys());
        }
        let setid = manifest(&[(
            "f",
            Entry {
                mode: 0o17777,
                ..file()
            },
        )]);
        assert!(setid.check_peer().unwrap_err().contains("beyond 7777"));
    }
}
