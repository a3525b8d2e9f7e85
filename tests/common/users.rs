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
///
/// Without supplementary groups the child enters its working directory
/// (`Command::current_dir`) as the user, which matters inside a mount only
/// its owner may enter; with them the switch happens later, in
/// `pre_exec`, so that directory is entered as root.
pub fn run_as<'c>(cmd: &'c mut Command, uid: u32, gid: u32, groups: &[u32]) -> &'c mut Command {
    use std::os::unix::process::CommandExt;
    if groups.is_empty() {
        // As root, std also drops the supplementary groups (setgroups).
        return cmd.uid(uid).gid(gid);
    }
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
///
/// `cp` writes the copy, not this process: a child that another test thread
/// forks while the copy is open for writing would hold that descriptor
/// until it execs, and running the copy meanwhile fails with ETXTBSY.
pub fn shared_binary() -> SharedBinary {
    let dir = short_tempdir_mode(0o755);
    let path = dir.path().join("triefs");
    let st = Command::new("cp")
        .arg(triefs_bin())
        .arg(&path)
        .status()
        .expect("run cp");
    assert!(st.success(), "cp of the triefs binary failed: {st}");
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

/// What a [`forked`] child sent back, and how it ended.
pub struct Forked<const N: usize> {
    /// The record the child filled in (zeros where nothing arrived).
    pub record: [u8; N],
    /// How many bytes of it arrived: `N`, or fewer (0 after a successful
    /// `execve` or a death before the child wrote).
    pub got: usize,
    /// The child's wait status.
    pub status: libc::c_int,
}

/// Forks a child that runs `child` on a zeroed record of `N` bytes (under
/// a 20 s alarm), sends the record back through a pipe and exits 0; when
/// `child` returns false it exits 3 without sending anything. The parent
/// reads the record and reaps the child. `child` typically drops its
/// credentials, then makes the system calls under test.
///
/// `child` runs in the forked copy of a multi-threaded process: it may only
/// make async-signal-safe calls on data prepared before the fork (no
/// allocation, no locks).
pub fn forked<const N: usize>(child: impl FnOnce(&mut [u8; N]) -> bool) -> Forked<N> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: the child only runs `child` (async-signal-safe by contract)
    // and plain system calls, then _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: errno {}", super::errno());
    if pid == 0 {
        // SAFETY: single-threaded child; plain system calls on a stack
        // buffer.
        unsafe {
            libc::close(fds[0]);
            libc::alarm(20);
            let mut rec = [0u8; N];
            if !child(&mut rec) {
                libc::_exit(3);
            }
            libc::write(fds[1], rec.as_ptr().cast(), N);
            libc::_exit(0);
        }
    }
    // SAFETY: our copy of the write end.
    unsafe { libc::close(fds[1]) };
    let mut record = [0u8; N];
    let mut got = 0;
    while got < N {
        // SAFETY: the range is inside record.
        let n = unsafe { libc::read(fds[0], record[got..].as_mut_ptr().cast(), N - got) };
        if n < 0 && super::errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            break;
        }
        got += n as usize;
    }
    // SAFETY: our read end; status is a plain int.
    unsafe { libc::close(fds[0]) };
    let mut status = 0;
    // SAFETY: waiting for our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        assert_eq!(
            super::errno(),
            libc::EINTR,
            "waitpid failed: errno {}",
            super::errno()
        );
    }
    Forked {
        record,
        got,
        status,
    }
}
