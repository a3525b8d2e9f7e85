//! Acting as another user.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{chmod, short_tempdir_mode, triefs_bin};

/// Switches the calling process to `uid`/`gid` with the supplementary
/// `groups`. Meant for a forked child before exec (`pre_exec`): only
/// async-signal-safe system calls.
pub fn become_user(uid: u32, gid: u32, groups: &[u32]) -> std::io::Result<()> {
    // SAFETY: plain system calls; `groups` is a valid slice.
    let ok = unsafe {
        libc::setgroups(groups.len(), groups.as_ptr()) == 0
            && libc::setgid(gid) == 0
            && libc::setuid(uid) == 0
    };
    if ok {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Makes `cmd` run as `uid`/`gid` with the supplementary `groups`.
pub fn run_as<'c>(cmd: &'c mut Command, uid: u32, gid: u32, groups: &[u32]) -> &'c mut Command {
    use std::os::unix::process::CommandExt;
    let groups = groups.to_vec();
    // SAFETY: become_user makes only async-signal-safe calls, on memory
    // allocated before the fork.
    unsafe { cmd.pre_exec(move || become_user(uid, gid, &groups)) }
}

/// The uid and gid tests use for "another user" (nobody).
pub const NOBODY: u32 = 65534;

/// A copy of the triefs binary that any user can run: the build directory
/// may sit in a directory only root may enter (such as /root).
pub struct SharedBinary {
    /// The 0755 temp dir holding the copy.
    pub dir: tempfile::TempDir,
    /// The copy.
    pub path: PathBuf,
}

/// Copies the triefs binary into a fresh 0755 temp dir.
pub fn shared_binary() -> SharedBinary {
    let dir = short_tempdir_mode(0o755);
    let path = dir.path().join("triefs");
    std::fs::copy(triefs_bin(), &path).expect("copy triefs binary");
    chmod(&path, 0o755);
    SharedBinary { dir, path }
}

/// A command running `program` as uid/gid [`NOBODY`] with no supplementary
/// groups (switched in the child before exec: no outside tool needed).
pub fn as_nobody(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    run_as(&mut cmd, NOBODY, NOBODY, &[]).env_remove("RUST_LOG");
    cmd
}
