//! Small system-call helpers.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A temp dir with a short path (socket paths must stay under 108 bytes).
/// It is private (0700) like every temp dir; see [`short_tempdir_mode`].
pub fn short_tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("tfs")
        .tempdir_in("/tmp")
        .expect("tempdir")
}

/// A [`short_tempdir`] with the permission bits `mode`: 0755 for other
/// users to reach what is inside, 0777 or 01777 for them to write there.
pub fn short_tempdir_mode(mode: u32) -> tempfile::TempDir {
    let dir = short_tempdir();
    chmod(dir.path(), mode);
    dir
}

/// Converts a path to a C string for raw libc calls.
pub fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

/// An errno, printed by name in assertion messages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl std::fmt::Debug for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::EIO => "EIO",
            libc::ENXIO => "ENXIO",
            libc::E2BIG => "E2BIG",
            libc::ENOEXEC => "ENOEXEC",
            libc::EBADF => "EBADF",
            libc::EACCES => "EACCES",
            libc::EBUSY => "EBUSY",
            libc::EEXIST => "EEXIST",
            libc::EXDEV => "EXDEV",
            libc::ENODEV => "ENODEV",
            libc::ENOTDIR => "ENOTDIR",
            libc::EISDIR => "EISDIR",
            libc::EINVAL => "EINVAL",
            libc::ETXTBSY => "ETXTBSY",
            libc::EFBIG => "EFBIG",
            libc::ENOSPC => "ENOSPC",
            libc::ESPIPE => "ESPIPE",
            libc::EROFS => "EROFS",
            libc::EMLINK => "EMLINK",
            libc::ERANGE => "ERANGE",
            libc::ENAMETOOLONG => "ENAMETOOLONG",
            libc::ENOSYS => "ENOSYS",
            libc::ENOTEMPTY => "ENOTEMPTY",
            libc::ELOOP => "ELOOP",
            libc::ENODATA => "ENODATA",
            libc::EOPNOTSUPP => "EOPNOTSUPP",
            libc::ENOTCONN => "ENOTCONN",
            _ => return write!(f, "errno {}", self.0),
        };
        f.write_str(name)
    }
}

/// The calling thread's errno after a failed libc call.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Sets the permission bits of `p`.
pub fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", p.display()));
}

/// The text of errno `e` ("No such file or directory").
pub fn strerror(e: i32) -> String {
    std::io::Error::from_raw_os_error(e).to_string()
}

/// statvfs(2) of `p`; panics (naming `p` and the error) when it fails.
pub fn statvfs(p: &Path) -> libc::statvfs {
    let c = cpath(p);
    // SAFETY: statvfs is plain data; the call fills it.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid path, s a valid out pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
    assert_eq!(
        rc,
        0,
        "statvfs {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
    s
}

/// `sync`, then `echo LEVEL > /proc/sys/vm/drop_caches` (1: page cache,
/// 2: dentries and inodes, which makes the kernel send forgets; 3: both).
pub fn drop_caches(level: u32) {
    // SAFETY: sync(2) has no arguments and cannot fail.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", format!("{level}\n"))
        .unwrap_or_else(|e| panic!("echo {level} > /proc/sys/vm/drop_caches: {e}"));
}

/// open(2) flags by name (`O_WRONLY|O_CREAT|O_EXCL`), for failure messages.
pub fn open_flags(fl: i32) -> String {
    let mut parts = vec![match fl & libc::O_ACCMODE {
        libc::O_RDONLY => "O_RDONLY",
        libc::O_WRONLY => "O_WRONLY",
        _ => "O_RDWR",
    }];
    for (bit, name) in [
        (libc::O_CREAT, "O_CREAT"),
        (libc::O_EXCL, "O_EXCL"),
        (libc::O_TRUNC, "O_TRUNC"),
        (libc::O_APPEND, "O_APPEND"),
        (libc::O_DIRECTORY, "O_DIRECTORY"),
        (libc::O_NOFOLLOW, "O_NOFOLLOW"),
        (libc::O_PATH, "O_PATH"),
        (libc::O_NONBLOCK, "O_NONBLOCK"),
        (libc::O_NOATIME, "O_NOATIME"),
    ] {
        if fl & bit != 0 {
            parts.push(name);
        }
    }
    parts.join("|")
}
