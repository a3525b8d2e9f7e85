//! Mounts: the triefs daemon and the tmpfs oracle, torn down on drop.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{short_tempdir, triefs_bin};

/// Why mount tests cannot run here, if they cannot: they need `/dev/fuse`
/// and root (the tmpfs oracle, mount(2), other users' credentials).
pub fn mount_impossible() -> Option<&'static str> {
    if !Path::new("/dev/fuse").exists() {
        Some("/dev/fuse is missing")
    } else if unsafe { libc::geteuid() } != 0 {
        Some("not running as root")
    } else {
        None
    }
}

/// Panics, in one line saying why, when mount tests cannot run here: a
/// mount test that cannot mount fails, it never passes. Called by every
/// harness constructor that mounts, and first by every test that needs
/// root without one. `TRIEFS_REQUIRE_MOUNT` is ignored.
#[track_caller]
pub fn require_mount() {
    if let Some(why) = mount_impossible() {
        panic!(
            "mount tests need root and /dev/fuse ({why}): run them as root, \
             or run `cargo test --lib` for the unit tests only"
        );
    }
}

/// Is `path` currently a mount point (per /proc/self/mountinfo)?
pub fn is_mounted(path: &Path) -> bool {
    triefs::mountinfo::is_mount_point(path)
}

/// Waits up to `timeout` for `path` to stop being a mount point; returns
/// whether it did.
pub fn wait_unmounted(path: &Path, timeout: Duration) -> bool {
    super::wait_until(timeout, || !is_mounted(path))
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
    #[track_caller]
    pub fn new(args: &[&str]) -> TriefsMount {
        Self::with_args(args.iter().map(OsStr::new))
    }

    /// Mounts with arbitrary OsStr arguments.
    #[track_caller]
    pub fn with_args<'a>(args: impl IntoIterator<Item = &'a OsStr>) -> TriefsMount {
        Self::with_args_env(args, &[])
    }

    /// Mounts with arguments and extra environment variables for the daemon.
    #[track_caller]
    pub fn with_args_env<'a>(
        args: impl IntoIterator<Item = &'a OsStr>,
        env: &[(&str, &str)],
    ) -> TriefsMount {
        require_mount();
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
    #[track_caller]
    pub fn new() -> Tmpfs {
        require_mount();
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
