//! Mounts: the triefs daemon and the tmpfs oracle, torn down on drop.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{short_tempdir, triefs_bin};

/// Why mount tests cannot run here, if they cannot: they need `/dev/fuse`
/// and root (the tmpfs oracle, mount(2), other users' credentials).
pub fn mount_impossible() -> Option<&'static str> {
    // SAFETY: geteuid(2) cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !Path::new("/dev/fuse").exists() {
        Some("/dev/fuse is missing")
    } else if !root {
        Some("not running as root")
    } else {
        None
    }
}

/// Panics, in one line saying why, when mount tests cannot run here: a
/// mount test that cannot mount fails, it never passes. Called by every
/// harness constructor that mounts, and first by every test that needs
/// root without one. `TRIEFS_REQUIRE_MOUNT` of earlier versions is no longer read.
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
    triefs::mount::mountinfo::is_mount_point(path)
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

/// A running `triefs -f` daemon serving a mount, by default on `m` in a
/// private temp dir. Dropping it unmounts and waits for the daemon (killing
/// it by PID if it does not exit within 10 s). Made by [`TriefsMount::new`]
/// and its variants, or by [`MountSpec`] for more control.
pub struct TriefsMount {
    /// The temp dir of the mount point (unless [`MountSpec::at`] gave one)
    /// and of the log.
    pub dir: tempfile::TempDir,
    pub mnt: PathBuf,
    pub child: Option<Child>,
    /// The file that gets the daemon's stderr ([`MountSpec::log`]).
    pub log: Option<PathBuf>,
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
        MountSpec::new().args(args).envs(env).mount()
    }

    /// Waits until the mount is live, failing (with the daemon's log) if the
    /// daemon exits first or 20 s pass.
    pub fn wait_mounted(&mut self) {
        let start = Instant::now();
        while !is_mounted(&self.mnt) {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(st)) = child.try_wait()
            {
                self.child = None;
                panic!("triefs exited before mounting: {st}{}", self.log_excerpt());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "triefs did not mount within 20 s{}",
                self.log_excerpt()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What the daemon wrote to its log so far ("" without a log).
    pub fn log_text(&self) -> String {
        self.log.as_ref().map_or_else(String::new, |p| {
            String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
        })
    }

    fn log_excerpt(&self) -> String {
        match &self.log {
            Some(_) => format!("; its log:\n{}", self.log_text()),
            None => String::new(),
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mnt
    }

    /// The daemon's PID (0 once it has exited).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// The daemon's stdin, when [`MountSpec::piped_stdin`] asked for it.
    pub fn take_stdin(&mut self) -> std::process::ChildStdin {
        let child = self.child.as_mut().expect("daemon running");
        child.stdin.take().expect("daemon stdin piped")
    }

    /// Whether the daemon is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sends signal `sig` to the daemon, by PID.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = self.pid() as libc::pid_t;
        assert!(pid > 0, "no daemon to signal");
        // SAFETY: kill(2) of the daemon this test started, by PID.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {sig}): {}",
            std::io::Error::last_os_error()
        );
    }

    /// SIGKILLs the daemon by PID and reaps it; the mount stays behind
    /// (stale) unless `auto_unmount` clears it.
    pub fn sigkill(&mut self) -> ExitStatus {
        self.signal(libc::SIGKILL);
        let mut child = self.child.take().expect("daemon running");
        child.wait().expect("wait for the killed daemon")
    }

    /// Unmounts and returns the daemon's exit status.
    pub fn unmount_and_wait(&mut self) -> Option<ExitStatus> {
        unmount(&self.mnt);
        self.wait_exit(Duration::from_secs(10))
    }

    /// Waits up to `timeout` for the daemon to exit; past that, kills it by
    /// PID, reaps it, clears the mount and returns None.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                unmount(&self.mnt);
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
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

/// How to start a [`TriefsMount`]: `triefs -f [ARGS] MNT`, with stdin from
/// /dev/null and stderr shared with the test unless told otherwise.
pub struct MountSpec {
    cmd: Command,
    at: Option<PathBuf>,
    log: bool,
    piped_stdin: bool,
}

impl Default for MountSpec {
    fn default() -> MountSpec {
        MountSpec::new()
    }
}

impl MountSpec {
    /// The triefs binary of this build.
    pub fn new() -> MountSpec {
        MountSpec::command(Command::new(triefs_bin()))
    }

    /// `cmd` (another copy of the binary, run as another user, ...), to
    /// which `-f`, the arguments and the mount point are added.
    pub fn command(mut cmd: Command) -> MountSpec {
        cmd.arg("-f");
        MountSpec {
            cmd,
            at: None,
            log: false,
            piped_stdin: false,
        }
    }

    /// Extra arguments, before the mount point.
    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> MountSpec {
        self.cmd.args(args);
        self
    }

    /// Extra environment variables of the daemon.
    pub fn envs(mut self, env: &[(&str, &str)]) -> MountSpec {
        self.cmd.envs(env.iter().copied());
        self
    }

    /// Mounts on `mnt` (which must exist) instead of a fresh directory.
    pub fn at(mut self, mnt: &Path) -> MountSpec {
        self.at = Some(mnt.to_path_buf());
        self
    }

    /// Sends the daemon's stderr to a file ([`TriefsMount::log_text`]) and
    /// its stdout to /dev/null.
    pub fn log(mut self) -> MountSpec {
        self.log = true;
        self
    }

    /// Gives the daemon a pipe for stdin ([`TriefsMount::take_stdin`]).
    pub fn piped_stdin(mut self) -> MountSpec {
        self.piped_stdin = true;
        self
    }

    /// Starts the daemon without waiting for the mount
    /// ([`TriefsMount::wait_mounted`]).
    #[track_caller]
    pub fn spawn(mut self) -> TriefsMount {
        require_mount();
        let dir = short_tempdir();
        let mnt = match self.at.take() {
            Some(mnt) => mnt,
            None => {
                let mnt = dir.path().join("m");
                std::fs::create_dir(&mnt).expect("create mount dir");
                mnt
            }
        };
        let log = self.log.then(|| dir.path().join("daemon.log"));
        if let Some(log) = &log {
            let file = std::fs::File::create(log).expect("daemon log file");
            self.cmd.stdout(Stdio::null()).stderr(file);
        }
        let stdin = if self.piped_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let child = self
            .cmd
            .arg(&mnt)
            .stdin(stdin)
            .spawn()
            .expect("spawn triefs");
        TriefsMount {
            dir,
            mnt,
            child: Some(child),
            log,
        }
    }

    /// Starts the daemon and waits until the mount is live.
    #[track_caller]
    pub fn mount(self) -> TriefsMount {
        let mut m = self.spawn();
        m.wait_mounted();
        m
    }
}

/// A tmpfs mounted in a private temp dir: the POSIX oracle.
pub struct Tmpfs {
    pub dir: tempfile::TempDir,
    pub mnt: PathBuf,
}

impl Tmpfs {
    /// Mounts a fresh tmpfs (`-o mode=0755`).
    #[track_caller]
    pub fn new() -> Tmpfs {
        Tmpfs::with_options("mode=0755")
    }

    /// Mounts a fresh tmpfs with the options `opts` (`size=64k`).
    #[track_caller]
    pub fn with_options(opts: &str) -> Tmpfs {
        require_mount();
        let dir = short_tempdir();
        let mnt = dir.path().join("t");
        std::fs::create_dir(&mnt).expect("create tmpfs dir");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(&mnt)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount -t tmpfs -o {opts} failed");
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

/// Clears, on drop (also when the test panics), whatever is mounted on
/// these paths, every layer, and waits up to 10 s for the daemons that
/// served them (found by the path among their arguments, so detached ones
/// too) to exit, killing them by PID after that.
pub struct Unmounts(pub Vec<PathBuf>);

impl Drop for Unmounts {
    fn drop(&mut self) {
        let start = Instant::now();
        for p in &self.0 {
            let pids = super::pids_with_arg(p);
            for _ in 0..4 {
                if !is_mounted(p) {
                    break;
                }
                unmount(p);
            }
            for pid in pids {
                let left = Duration::from_secs(10).saturating_sub(start.elapsed());
                if !super::wait_until(left, || super::has_exited(pid)) {
                    // SAFETY: kill(2) of a daemon found serving this mount.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            unmount(p);
        }
    }
}

/// The fields of the /proc/self/mountinfo line of a mount point.
#[derive(Debug)]
pub struct MountInfo {
    /// Per-mount options (`rw`, `nosuid`, `noatime`, ...).
    pub mount_opts: Vec<String>,
    /// `fuse.triefs`, `tmpfs`, ...
    pub fstype: String,
    pub source: String,
    /// Super-block options (`allow_other`, `default_permissions`, ...).
    pub super_opts: Vec<String>,
}

/// The mountinfo of the topmost mount on `mnt`, if `mnt` is a mount point.
pub fn mountinfo(mnt: &Path) -> Option<MountInfo> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = mnt.to_str()?;
    // The last matching line is the topmost mount on that path.
    let line = info.lines().rfind(|l| l.split(' ').nth(4) == Some(want))?;
    let (head, tail) = line.split_once(" - ")?;
    let mount_opts = head
        .split(' ')
        .nth(5)?
        .split(',')
        .map(str::to_owned)
        .collect();
    let mut t = tail.split(' ');
    let fstype = t.next()?.to_owned();
    let source = t.next()?.to_owned();
    let super_opts = t
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::to_owned)
        .collect();
    Some(MountInfo {
        mount_opts,
        fstype,
        source,
        super_opts,
    })
}
