//! Files below a root, reached without following symlinks. A symlink in the data directory is
//! data (carried as a link), never a way out of it: the primary reads as root a tree its
//! service's user may change at any time, and a directory swapped for a link between the scan
//! and the read must not make it read (and ship) a file from elsewhere.
//!
//! Only the root itself is followed (on a host that took over, the data directory is the
//! symlink to its current copy). Below it, every component is opened with `O_NOFOLLOW`
//! relative to its parent's descriptor.
use std::{
    ffi::CString,
    fs::File,
    io,
    os::{
        fd::{AsRawFd as _, FromRawFd as _},
        unix::ffi::OsStrExt as _,
    },
    path::{Path, PathBuf},
};

/// An entry that is not what the listing said (a symlink or another kind of file where a
/// directory or file was): for the copy it is gone from where it was listed.
fn replaced() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        "replaced since it was listed (a symlink or another kind of file is there now)",
    )
}

fn c_str(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a file name"))
}

/// `name` (one component) in `dir`, never following a symlink.
fn open_at(dir: &File, name: &str, flags: libc::c_int) -> io::Result<File> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a file name"),
        ));
    }
    let c = c_str(name.as_bytes())?;
    // SAFETY: a valid directory descriptor and a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ELOOP | libc::ENOTDIR) => replaced(),
            _ => e,
        });
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// The root directory (followed if it is a symlink).
pub(super) fn open_root(root: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(root)
}

/// The directory `name` in `dir`.
pub(super) fn sub_dir(dir: &File, name: &str) -> io::Result<File> {
    open_at(dir, name, libc::O_RDONLY | libc::O_DIRECTORY)
}

/// The regular file `name` in `dir`, for reading. A FIFO there does not block the open
/// (`O_NONBLOCK`); anything but a regular file counts as gone.
pub(super) fn file_in(dir: &File, name: &str) -> io::Result<File> {
    let f = open_at(dir, name, libc::O_RDONLY | libc::O_NONBLOCK)?;
    if !f.metadata()?.is_file() {
        return Err(replaced());
    }
    Ok(f)
}

/// `rel` (`/`-separated) split into its directory ("" at the root) and its name.
fn split(rel: &str) -> (&str, &str) {
    rel.rsplit_once('/').unwrap_or(("", rel))
}

/// The directory `rel` below `root` ("" for the root).
pub(super) fn open_dir(root: &Path, rel: &str) -> io::Result<File> {
    let mut d = open_root(root)?;
    for c in rel.split('/').filter(|c| !c.is_empty()) {
        d = sub_dir(&d, c)?;
    }
    Ok(d)
}

/// The regular file `rel` below `root`, for reading.
pub(super) fn open_file(root: &Path, rel: &str) -> io::Result<File> {
    let (dir, name) = split(rel);
    file_in(&open_dir(root, dir)?, name)
}

/// A path naming the open directory `dir` itself (`/proc/self/fd/N`), for the calls std
/// has only with paths (listing, `lstat`, `readlink`): they resolve nothing but the
/// descriptor and the one name joined to it.
pub(super) fn fd_path(dir: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()))
}

/// Hard-links the file `rel` below `root` as `to` (the file itself if it is a symlink now:
/// `linkat` without `AT_SYMLINK_FOLLOW`).
pub(super) fn hard_link(root: &Path, rel: &str, to: &Path) -> io::Result<()> {
    let (dir, name) = split(rel);
    let d = open_dir(root, dir)?;
    let from = c_str(name.as_bytes())?;
    let to = c_str(to.as_os_str().as_bytes())?;
    // SAFETY: a valid directory descriptor and NUL-terminated names.
    let r = unsafe { libc::linkat(d.as_raw_fd(), from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), 0) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the modification time of `path` itself (a symlink's own, not its target's); the
/// access time is left alone.
pub(super) fn set_mtime(path: &Path, sec: i64, nsec: u32) -> io::Result<()> {
    let c = c_str(path.as_os_str().as_bytes())?;
    // SAFETY: timespec is plain data; all-zero is valid.
    let mut times: [libc::timespec; 2] = unsafe { std::mem::zeroed() };
    times[0].tv_nsec = libc::UTIME_OMIT;
    times[1].tv_sec = sec as libc::time_t;
    times[1].tv_nsec = nsec as _;
    // SAFETY: a NUL-terminated path and an array of two timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{fs, io::Read as _};

    use super::*;

    #[test]
    fn nothing_below_the_root_is_followed() {
        let d = crate::sync::test_dir("nofollow");
        fs::create_dir(d.join("real")).unwrap();
        fs::write(d.join("real/f"), b"inside").unwrap();
        fs::write(d.join("outside"), b"outside").unwrap();
        let root = d.join("root");
        fs::create_dir(&root).unwrap();
        fs::create_dir(root.join("dir")).unwrap();
        fs::write(root.join("dir/f"), b"mine").unwrap();
        std::os::unix::fs::symlink("../real", root.join("swapped")).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("file-link")).unwrap();
        let mut s = String::new();
        open_file(&root, "dir/f")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "mine");
        for rel in ["swapped/f", "file-link", "dir/../file-link", "dir"] {
            let e = open_file(&root, rel).unwrap_err();
            assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::InvalidInput
                ),
                "{rel}: {e}"
            );
        }
        // The root itself may be a symlink.
        std::os::unix::fs::symlink("root", d.join("alias")).unwrap();
        assert!(open_file(&d.join("alias"), "dir/f").is_ok());
        // A link is linked as itself.
        hard_link(&root, "file-link", &d.join("linked")).unwrap();
        assert!(fs::symlink_metadata(d.join("linked"))
            .unwrap()
            .file_type()
            .is_symlink());
        fs::remove_dir_all(d).unwrap();
    }
}
