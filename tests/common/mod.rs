//! Shared harness for mount tests: a triefs mount and a tmpfs oracle, both
//! torn down on drop (also when the test panics).
#![allow(dead_code)]

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Path of the triefs binary built by cargo for the integration tests.
pub fn triefs_bin() -> &'static str {
    env!("CARGO_BIN_EXE_triefs")
}

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

/// Peak resident memory of process `pid` in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Resets the peak resident memory of process `pid` to its current size.
pub fn reset_peak_rss(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
}

/// Returns false (after printing why) when mount tests cannot run here.
/// Under `TRIEFS_REQUIRE_MOUNT=1` a missing prerequisite is a test failure.
pub fn can_mount() -> bool {
    let required = std::env::var("TRIEFS_REQUIRE_MOUNT").is_ok_and(|v| v == "1");
    let reason = if !Path::new("/dev/fuse").exists() {
        Some("/dev/fuse is missing")
    } else if unsafe { libc::geteuid() } != 0 {
        Some("mount tests need root (tmpfs oracle and mount(2))")
    } else {
        None
    };
    match reason {
        None => true,
        Some(r) if required => panic!("TRIEFS_REQUIRE_MOUNT=1 but {r}"),
        Some(r) => {
            eprintln!("skipping mount test: {r}");
            false
        }
    }
}

/// Is `path` currently a mount point (per /proc/self/mountinfo)?
pub fn is_mounted(path: &Path) -> bool {
    triefs::mount::mountinfo::is_mount_point(path)
}

/// Unmounts `path` by path: `umount`, then a lazy `umount -l` if busy.
pub fn unmount(path: &Path) {
    if !is_mounted(path) {
        return;
    }
    let ok = Command::new("umount")
        .arg(path)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let _ = Command::new("umount").arg("-l").arg(path).status();
    }
}

/// A running `triefs -f` process serving a mount in a private temp dir.
/// Dropping it unmounts and waits for the daemon (killing it by PID if it
/// does not exit within a few seconds).
pub struct TriefsMount {
    pub dir: tempfile::TempDir,
    pub mnt: PathBuf,
    pub child: Option<Child>,
}

impl TriefsMount {
    /// Mounts with the given extra arguments (placed before the mount point).
    pub fn new(args: &[&str]) -> TriefsMount {
        Self::with_args(args.iter().map(OsStr::new))
    }

    /// Mounts with arbitrary OsStr arguments.
    pub fn with_args<'a>(args: impl IntoIterator<Item = &'a OsStr>) -> TriefsMount {
        Self::with_args_env(args, &[])
    }

    /// Mounts with arguments and extra environment variables for the daemon.
    pub fn with_args_env<'a>(
        args: impl IntoIterator<Item = &'a OsStr>,
        env: &[(&str, &str)],
    ) -> TriefsMount {
        let dir = short_tempdir();
        let mnt = dir.path().join("m");
        std::fs::create_dir(&mnt).expect("create mount dir");
        let child = Command::new(triefs_bin())
            .arg("-f")
            .args(args)
            .arg(&mnt)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn triefs");
        let mut m = TriefsMount {
            dir,
            mnt,
            child: Some(child),
        };
        m.wait_mounted();
        m
    }

    fn wait_mounted(&mut self) {
        let start = Instant::now();
        while !is_mounted(&self.mnt) {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(st)) = child.try_wait()
            {
                self.child = None;
                panic!("triefs exited before mounting: {st}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "triefs did not mount within 20 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mnt
    }

    /// The daemon's PID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Unmounts and returns the daemon's exit status.
    pub fn unmount_and_wait(&mut self) -> Option<ExitStatus> {
        unmount(&self.mnt);
        self.wait_exit(Duration::from_secs(10))
    }

    /// Waits for the daemon to exit, killing it (by PID) after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_daemon(&mut self.child, &self.mnt, timeout)
    }
}

impl Drop for TriefsMount {
    fn drop(&mut self) {
        if self.child.is_some() {
            unmount(&self.mnt);
            let _ = self.wait_exit(Duration::from_secs(10));
        }
        unmount(&self.mnt);
    }
}

/// Waits up to `timeout` for the daemon `child` serving `mnt` to exit;
/// past that, kills it by PID, reaps it, clears the mount and returns None.
pub fn wait_daemon(child: &mut Option<Child>, mnt: &Path, timeout: Duration) -> Option<ExitStatus> {
    let mut child = child.take()?;
    let start = Instant::now();
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            unmount(mnt);
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A tmpfs mounted in a private temp dir: the POSIX oracle.
pub struct Tmpfs {
    pub dir: tempfile::TempDir,
    pub mnt: PathBuf,
}

impl Tmpfs {
    /// Mounts a fresh tmpfs (needs root).
    pub fn new() -> Tmpfs {
        let dir = short_tempdir();
        let mnt = dir.path().join("t");
        std::fs::create_dir(&mnt).expect("create tmpfs dir");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "mode=0755", "tmpfs"])
            .arg(&mnt)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount -t tmpfs failed");
        Tmpfs { dir, mnt }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mnt
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        unmount(&self.mnt);
    }
}

/// A temp dir with a short path (socket paths must stay under 108 bytes).
pub fn short_tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("tfs")
        .tempdir_in("/tmp")
        .expect("tempdir")
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

/// Runs a shell command in `cwd`, panicking with its output on failure.
pub fn sh(cwd: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "command failed in {}: {script}\nstdout: {}\nstderr: {}",
        cwd.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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
    use std::os::unix::fs::PermissionsExt;
    let dir = short_tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod temp dir");
    let path = dir.path().join("triefs");
    std::fs::copy(triefs_bin(), &path).expect("copy triefs binary");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .expect("chmod triefs copy");
    SharedBinary { dir, path }
}

/// A command running `program` as uid/gid [`NOBODY`] with no supplementary
/// groups (switched in the child before exec: no outside tool needed).
pub fn as_nobody(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    run_as(&mut cmd, NOBODY, NOBODY, &[]).env_remove("RUST_LOG");
    cmd
}

/// Sets the permission bits of `p`.
pub fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", p.display()));
}

/// What a finished (or killed) command printed.
pub struct Output {
    /// `None` when it had to be killed after the timeout.
    pub status: Option<ExitStatus>,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

/// Runs `cmd` with stdin from /dev/null and its output in files (a
/// daemonized grandchild holding them cannot block us), killing it by PID
/// after `timeout`.
pub fn run_timed(mut cmd: Command, timeout: Duration) -> Output {
    let dir = short_tempdir();
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    let mut child = cmd.spawn().expect("spawn");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break Some(st);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    Output {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
}

/// Asserts `out` is an exit with `code` and exactly one non-empty line on
/// stderr, no panic, containing each of `mentions`; returns that line.
pub fn assert_one_line_exit(out: &Output, code: i32, what: &str, mentions: &[&str]) -> String {
    let st = out
        .status
        .unwrap_or_else(|| panic!("{what}: did not exit in time; stderr {:?}", out.stderr));
    assert_eq!(
        st.code(),
        Some(code),
        "{what}: exit {st}\nstdout: {:?}\nstderr: {:?}",
        out.stdout,
        out.stderr
    );
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: one stderr line expected: {:?}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{what}: {:?}", out.stderr);
    for m in mentions {
        assert!(
            lines[0].contains(m),
            "{what}: stderr should mention {m:?}: {:?}",
            lines[0]
        );
    }
    lines[0].to_string()
}
