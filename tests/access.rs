//! Who may use a mount, for every combination of the access options.
//!
//! FUSE decides this in the kernel: a mount without `allow_other` admits
//! only processes whose user and group IDs all equal the mounting user's,
//! and every cache the kernel keeps (entries, attributes, pages, opens
//! that never reach the daemon) is covered by that check. So each check
//! here first warms those caches as the owner (create, read back, list,
//! stat) and only then looks as another user, from a forked child that
//! drops its credentials (setgroups, setresgid, setresuid) and makes raw
//! system calls: stat, open + read, and a listing of the mount's root.
//!
//! Root mounts run directly. Mounts by an ordinary user run in a private
//! mount namespace (the test binary re-runs itself under `unshare`), where
//! `/dev/fuse` is replaced by a node of mode 0666 and `/etc/fuse.conf` by
//! a file of the test's choosing; nothing outside the namespace changes,
//! and its mounts vanish with it even if the test dies.
// Mount tests drive Linux: Linux syscalls, namespaces and tools.
#![cfg(target_os = "linux")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Errno, MountSpec, TriefsMount, Unmounts, cpath, errno, is_mounted, unmount};

/// The contents of the probed file.
const SECRET: &[u8] = b"secret contents\n";

/// Another user (no passwd entry needed).
const OTHER: (u32, u32) = (4242, 4242);
/// `nobody` (common::NOBODY as uid and gid), which exists in every passwd
/// (fusermount3 looks the mounting user up by name when it unmounts).
const NOBODY: (u32, u32) = (common::NOBODY, common::NOBODY);

// ---------------------------------------------------------------------------
// Looking as another user.
// ---------------------------------------------------------------------------

/// What stat, open + read and a listing of the root gave one caller.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    stat: Result<(), Errno>,
    read: Result<Vec<u8>, Errno>,
    list: Result<usize, Errno>,
}

impl Seen {
    /// Everything refused with EACCES.
    fn denied() -> Seen {
        let e = Errno(libc::EACCES);
        Seen {
            stat: Err(e),
            read: Err(e),
            list: Err(e),
        }
    }

    /// Everything allowed: the file's contents, and `.`, `..` and `d`.
    fn allowed() -> Seen {
        Seen {
            stat: Ok(()),
            read: Ok(SECRET.to_vec()),
            list: Ok(3),
        }
    }
}

/// Record the child sends: three errnos (0: success), the bytes read and
/// their count, and the number of directory entries listed.
const RECORD: usize = 5 * 4 + 64;

/// Forks a child that takes the IDs `uid`/`gid` (real, effective, saved;
/// no supplementary groups), then stats and reads `file` and lists `dir`.
fn look_as(uid: u32, gid: u32, file: &Path, dir: &Path) -> Seen {
    let (file, dir) = (cpath(file), cpath(dir));
    let put = |rec: &mut [u8; RECORD], i: usize, v: i32| {
        rec[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
    };
    let child = common::forked(|rec: &mut [u8; RECORD]| {
        // SAFETY: plain system calls on stack buffers and the C strings
        // made above.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(gid, gid, gid) != 0
                || libc::setresuid(uid, uid, uid) != 0
            {
                return false;
            }
            let mut st: libc::stat = std::mem::zeroed();
            let e = if libc::stat(file.as_ptr(), &mut st) == 0 {
                0
            } else {
                errno()
            };
            put(rec, 0, e);
            let fd = libc::open(file.as_ptr(), libc::O_RDONLY);
            if fd < 0 {
                put(rec, 1, errno());
            } else {
                let mut buf = [0u8; 64];
                let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                if n < 0 {
                    put(rec, 1, errno());
                } else {
                    put(rec, 3, n as i32);
                    rec[20..20 + n as usize].copy_from_slice(&buf[..n as usize]);
                }
                libc::close(fd);
            }
            let dfd = libc::open(dir.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
            if dfd < 0 {
                put(rec, 2, errno());
            } else {
                let mut buf = [0u8; 4096];
                let mut count = 0;
                loop {
                    let n = libc::syscall(libc::SYS_getdents64, dfd, buf.as_mut_ptr(), buf.len());
                    if n < 0 {
                        put(rec, 2, errno());
                        break;
                    }
                    if n == 0 {
                        break;
                    }
                    // struct linux_dirent64: ino u64, off i64, reclen u16, ...
                    let mut off = 0usize;
                    while off < n as usize {
                        count += 1;
                        off += u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
                    }
                }
                put(rec, 4, count);
                libc::close(dfd);
            }
        }
        true
    });
    assert_eq!(
        child.got, RECORD,
        "probe as {uid}/{gid} reported nothing (wait status {})",
        child.status
    );
    let rec = child.record;
    let get = |i: usize| i32::from_ne_bytes(rec[i * 4..i * 4 + 4].try_into().unwrap());
    let res = |e: i32| if e == 0 { Ok(()) } else { Err(Errno(e)) };
    Seen {
        stat: res(get(0)),
        read: res(get(1)).map(|()| rec[20..20 + get(3) as usize].to_vec()),
        list: res(get(2)).map(|()| get(4) as usize),
    }
}

/// The kernel mount's super-block options (`allow_other` is one).
fn super_options(mnt: &Path) -> Vec<String> {
    common::mountinfo(mnt)
        .unwrap_or_else(|| panic!("{} is not in mountinfo", mnt.display()))
        .super_opts
}

/// Whether the fuse module lets CAP_SYS_ADMIN into every mount
/// (`allow_sys_admin_access`, off by default): then root is never refused.
fn sys_admin_bypass() -> bool {
    std::fs::read_to_string("/sys/module/fuse/parameters/allow_sys_admin_access")
        .is_ok_and(|v| v.trim() == "Y")
}

// ---------------------------------------------------------------------------
// Root mounts.
// ---------------------------------------------------------------------------

/// One combination of options for a mount by root, and whether other
/// users get in. Root's mounts are shared like tmpfs unless asked
/// otherwise; `allow_root` from root means "only root", which the kernel
/// enforces when it is not told `allow_other`; `auto_unmount` changes
/// nothing about access, and must still clear the mount when the daemon
/// is killed.
fn root_mount(opts: &str, shared: bool) {
    let args: Vec<&str> = if opts.is_empty() {
        vec![]
    } else {
        vec!["-o", opts]
    };
    let mut m = TriefsMount::new(&args);
    let root = m.path().to_path_buf();
    common::chmod(m.dir.path(), 0o755);
    // Warm every cache as root: entries, attributes, pages, listings.
    let d = root.join("d");
    let s = d.join("s");
    std::fs::create_dir(&d).expect("mkdir");
    common::chmod(&d, 0o755);
    std::fs::write(&s, SECRET).expect("write");
    common::chmod(&s, 0o644);
    assert_eq!(std::fs::read(&s).expect("read as root"), SECRET);
    assert_eq!(std::fs::read_dir(&root).expect("list").count(), 1);
    std::fs::metadata(&s).expect("stat as root");

    assert_eq!(
        look_as(0, 0, &s, &root),
        Seen::allowed(),
        "-o {opts:?}: root itself"
    );
    let want = if shared {
        Seen::allowed()
    } else {
        Seen::denied()
    };
    assert_eq!(
        look_as(NOBODY.0, NOBODY.1, &s, &root),
        want,
        "-o {opts:?}: another user, after root warmed the caches"
    );
    // The kernel admits root to a private mount only with the mount's
    // group IDs as well (documented in the README).
    if !sys_admin_bypass() {
        assert_eq!(
            look_as(0, NOBODY.1, &s, &root),
            want,
            "-o {opts:?}: root with another group"
        );
    }
    let so = super_options(&root);
    assert_eq!(
        so.iter().any(|o| o == "allow_other"),
        shared,
        "-o {opts:?}: the kernel must enforce who gets in; super options {so:?}"
    );
    if opts.contains("auto_unmount") {
        // The daemon dies after its root was listed (so opening the root
        // needs no request to the daemon any more): the mount must go.
        m.sigkill();
        assert!(
            common::wait_unmounted(&root, Duration::from_secs(5)),
            "-o {opts:?}: the mount must disappear after SIGKILL"
        );
    } else {
        let st = m.unmount_and_wait().expect("daemon exits");
        assert!(st.success(), "-o {opts:?}: daemon exit {st}");
    }
}

#[test]
fn root_mount_default_admits_other_users() {
    root_mount("", true);
}

#[test]
fn root_mount_owner_only_keeps_to_root() {
    root_mount("owner_only", false);
}

#[test]
fn root_mount_allow_other_admits_other_users() {
    root_mount("allow_other", true);
}

#[test]
fn root_mount_allow_root_keeps_to_root() {
    root_mount("allow_root", false);
}

#[test]
fn root_mount_auto_unmount_admits_other_users_like_the_default() {
    root_mount("auto_unmount", true);
}

#[test]
fn root_mount_auto_unmount_allow_root_keeps_to_root() {
    root_mount("auto_unmount,allow_root", false);
}

#[test]
fn root_mount_auto_unmount_owner_only_keeps_to_root() {
    root_mount("auto_unmount,owner_only", false);
}

/// `mount -t fuse.triefs` runs the helper as root: the fstab example of
/// the README (`mode=1777`) must give other users a tmpfs-like scratch
/// area, and `owner_only` must keep it to root. The helper is called by
/// the name mount(8) gives it, from a temp dir (no system-wide install).
#[test]
fn mount_helper_root_mounts_are_shared_like_tmpfs() {
    common::require_mount();
    for (opts, shared) in [
        ("size=1m,mode=1777,noauto", true),
        ("mode=1777,owner_only", false),
    ] {
        let dir = common::short_tempdir_mode(0o755);
        let helper = dir.path().join("mount.fuse.triefs");
        std::os::unix::fs::symlink(common::triefs_bin(), &helper).unwrap();
        let mnt = dir.path().join("m");
        std::fs::create_dir(&mnt).unwrap();
        let out = Command::new(&helper)
            .arg("scratch")
            .arg(&mnt)
            .args(["-o", opts])
            .stdin(Stdio::null())
            .output()
            .expect("run the helper");
        let guard = Unmounts(vec![mnt.clone()]);
        assert!(
            out.status.success(),
            "{opts}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(mnt.join("s"), SECRET).unwrap();
        let want = if shared {
            Seen::allowed()
        } else {
            Seen::denied()
        };
        assert_eq!(
            look_as(NOBODY.0, NOBODY.1, &mnt.join("s"), &mnt),
            want,
            "{opts}"
        );
        // In a 1777 root another user may create files of its own.
        let created = common::as_nobody(Path::new("sh"))
            .args(["-c", "echo mine > \"$1\"/n", "sh"])
            .arg(&mnt)
            .current_dir("/")
            .stderr(Stdio::null())
            .status()
            .expect("run sh");
        assert_eq!(created.success(), shared, "{opts}: create as another user");
        drop(guard);
    }
}

// ---------------------------------------------------------------------------
// Mounts by an ordinary user, in a private mount namespace.
// ---------------------------------------------------------------------------

/// Set in the copy of this test binary that runs inside the namespace, to
/// the mount namespace of the test that started it.
const INNER: &str = "TRIEFS_ACCESS_TEST_IN_NAMESPACE";

/// This process's mount namespace (`mnt:[INODE]`).
fn mount_namespace() -> PathBuf {
    std::fs::read_link("/proc/self/ns/mnt").expect("read /proc/self/ns/mnt")
}

/// Runs `body` with a fresh [`UserWorld`] in a copy of this test binary
/// (`--exact name`) inside a private mount namespace.
fn in_namespace(name: &str, body: fn(&UserWorld)) {
    common::require_mount();
    if let Some(outer) = std::env::var_os(INNER) {
        // UserWorld replaces /dev/fuse and /etc/fuse.conf: never in the
        // namespace of the test that started us.
        assert_ne!(
            mount_namespace().into_os_string(),
            outer,
            "{INNER} is only for a private namespace"
        );
        body(&UserWorld::new());
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INNER, mount_namespace())
        .stdin(Stdio::null())
        .output()
        .expect("run unshare (util-linux)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "inside the namespace:\n{text}");
    assert!(
        text.contains("1 passed"),
        "{name} did not run inside the namespace:\n{text}"
    );
}

/// A user's mount keeps FUSE's owner-only default, whatever the kernel
/// has cached; root is not the owner either.
#[test]
fn user_mount_default_keeps_to_its_owner() {
    in_namespace("user_mount_default_keeps_to_its_owner", |w| {
        let _m = w.mount_as_nobody(&[]);
        w.warm_as_owner();
        w.assert_owner_only();
    });
}

/// `auto_unmount` needs nothing from a user: it mounts without
/// `allow_other`, stays owner-only, and the mount goes when the daemon is
/// killed, also after its root was listed.
#[test]
fn user_mount_auto_unmount_keeps_to_its_owner() {
    in_namespace("user_mount_auto_unmount_keeps_to_its_owner", |w| {
        let mut m = w.mount_as_nobody(&["-o", "auto_unmount"]);
        w.warm_as_owner();
        w.assert_owner_only();
        m.sigkill();
        assert!(
            common::wait_unmounted(&w.mnt, Duration::from_secs(5)),
            "auto_unmount: the mount must go when the daemon dies"
        );
    });
}

/// The atime options from a user: fusermount3 (3.14) knows none of them,
/// and they change nothing on a FUSE mount (the kernel leaves FUSE atimes
/// to the daemon), so they are accepted and not passed on: the mount
/// comes up and keeps FUSE's owner-only default.
#[test]
fn user_mount_accepts_atime_options() {
    in_namespace("user_mount_accepts_atime_options", |w| {
        let _m = w.mount_as_nobody(&["-o", "relatime,strictatime,nodiratime,lazytime"]);
        w.warm_as_owner();
        w.assert_owner_only();
    });
}

/// Root cannot remount a user's mount that admits only its owner: the
/// kernel keeps root out of it, so the daemon cannot be asked. One line
/// that says so, exit 32, and the mount stays as it was.
#[test]
fn user_mount_remount_by_root_says_why_not() {
    in_namespace("user_mount_remount_by_root_says_why_not", |w| {
        let _m = w.mount_as_nobody(&[]);
        let helper = w.dir.path().join("mount.fuse.triefs");
        std::os::unix::fs::symlink(&w.bin.path, &helper).unwrap();
        let mut cmd = Command::new(&helper);
        cmd.arg("src").arg(&w.mnt).args(["-o", "remount,ro"]);
        let out = common::run_timed(cmd, Duration::from_secs(20));
        let info = common::mountinfo(&w.mnt).expect("still mounted");
        if sys_admin_bypass() {
            // The module lets root in: then root may remount.
            common::assert_exit(&out, 0, "root's remount (allow_sys_admin_access)");
            assert!(info.mount_opts.iter().any(|o| o == "ro"), "{info:?}");
            return;
        }
        common::assert_one_line_exit(&out, 32, "root's remount", &["allow_other", "uid 65534"]);
        assert!(info.mount_opts.iter().any(|o| o == "rw"), "{info:?}");
    });
}

/// `allow_root` cannot be enforced for an owner other than root (the
/// kernel would have to admit everyone): refused in one line, in terms of
/// `allow_root`, with or without `user_allow_other`.
#[test]
fn user_mount_allow_root_is_refused_in_its_own_terms() {
    in_namespace("user_mount_allow_root_is_refused_in_its_own_terms", |w| {
        for opts in ["allow_root", "auto_unmount,allow_root"] {
            let out = w.run_as_nobody(&["-o", opts]);
            assert_refused(&out, opts, &["allow_root", "user_allow_other"]);
        }
        w.fuse_conf("user_allow_other\n");
        let out = w.run_as_nobody(&["-o", "allow_root"]);
        assert_refused(&out, "allow_root with user_allow_other", &["allow_root"]);
    });
}

/// `allow_other` from a user needs `user_allow_other`: the one-line error
/// says so; with it, other users get in.
#[test]
fn user_mount_allow_other_says_what_it_needs() {
    in_namespace("user_mount_allow_other_says_what_it_needs", |w| {
        let out = w.run_as_nobody(&["-o", "allow_other"]);
        assert_refused(&out, "allow_other", &["allow_other", "user_allow_other"]);
        w.fuse_conf("user_allow_other\n");
        let _m = w.mount_as_nobody(&["-o", "allow_other"]);
        w.warm_as_owner();
        let (file, root) = (w.file(), &w.mnt);
        assert_eq!(look_as(OTHER.0, OTHER.1, &file, root), Seen::allowed());
    });
}

/// The namespace's setup: a private temp dir the users can traverse, a
/// copy of the binary they can run, `/dev/fuse` of mode 0666 and an
/// `/etc/fuse.conf` without `user_allow_other`.
struct UserWorld {
    dir: tempfile::TempDir,
    bin: common::SharedBinary,
    mnt: PathBuf,
}

impl UserWorld {
    fn new() -> UserWorld {
        let dir = common::short_tempdir_mode(0o755);
        let p = dir.path();
        // Only this namespace sees these mounts (private propagation).
        let real = std::fs::metadata("/dev/fuse").expect("stat /dev/fuse");
        let rdev = std::os::unix::fs::MetadataExt::rdev(&real);
        let (major, minor) = (libc::major(rdev), libc::minor(rdev));
        common::sh(
            p,
            &format!(
                "mkdir dev && mount -t tmpfs -o mode=0755 tfsdev dev && \
                 mknod -m 0666 dev/fuse c {major} {minor} && mount --bind dev/fuse /dev/fuse"
            ),
        );
        let bin = common::shared_binary();
        let mnt = p.join("m");
        std::fs::create_dir(&mnt).unwrap();
        std::os::unix::fs::chown(&mnt, Some(NOBODY.0), Some(NOBODY.1)).unwrap();
        // fuse3 installs it; without it the user_allow_other cases could
        // not run, which must not pass for a success.
        assert!(
            Path::new("/etc/fuse.conf").exists(),
            "these tests replace /etc/fuse.conf, which is missing (package fuse3 installs it)"
        );
        let w = UserWorld { dir, bin, mnt };
        w.fuse_conf("# nothing allowed\n");
        w
    }

    /// Puts `text` in place of `/etc/fuse.conf` (inside the namespace).
    fn fuse_conf(&self, text: &str) {
        let f = self.dir.path().join(format!("fuse.conf.{}", text.len()));
        std::fs::write(&f, text).unwrap();
        common::chmod(&f, 0o644);
        self.unbind_fuse_conf();
        common::sh(
            self.dir.path(),
            &format!("mount --bind {} /etc/fuse.conf", f.display()),
        );
    }

    /// `triefs ARGS MNT` as nobody, detaching as usual; for refusals.
    fn run_as_nobody(&self, args: &[&str]) -> common::Output {
        let mut cmd = self.triefs();
        cmd.args(args).arg(&self.mnt);
        let out = common::run_timed(cmd, Duration::from_secs(20));
        if out.status.is_some_and(|s| s.success()) {
            // Mounted after all: do not leave it behind.
            drop(Unmounts(vec![self.mnt.clone()]));
        }
        out
    }

    /// The binary as nobody, from `/`.
    fn triefs(&self) -> Command {
        let mut c = common::as_nobody(&self.bin.path);
        c.current_dir("/");
        c
    }

    /// `triefs -f ARGS MNT` as nobody, mounted.
    fn mount_as_nobody(&self, args: &[&str]) -> TriefsMount {
        MountSpec::command(self.triefs())
            .args(args)
            .at(&self.mnt)
            .mount()
    }

    /// As nobody in the mount: make `d/s` (0644) in a 0755 `d`, read it
    /// back and list the root, so the kernel caches all of it.
    fn warm_as_owner(&self) {
        let st = common::as_nobody(Path::new("sh"))
            .args([
                "-c",
                "mkdir -m 0755 d && printf 'secret contents\\n' > d/s && chmod 0644 d/s \
                 && cat d/s > /dev/null && ls -la . d > /dev/null && stat d/s > /dev/null",
            ])
            .current_dir(&self.mnt)
            .status()
            .expect("run sh as nobody");
        assert!(st.success(), "the owner could not use its own mount");
    }

    fn file(&self) -> PathBuf {
        self.mnt.join("d/s")
    }

    /// The owner gets in; another user and root (unless the fuse module
    /// lets CAP_SYS_ADMIN in everywhere) do not, and the kernel was not
    /// told `allow_other`.
    fn assert_owner_only(&self) {
        let (file, root) = (self.file(), &self.mnt);
        let so = super_options(root);
        assert!(!so.iter().any(|o| o == "allow_other"), "{so:?}");
        assert_eq!(look_as(NOBODY.0, NOBODY.1, &file, root), Seen::allowed());
        assert_eq!(look_as(OTHER.0, OTHER.1, &file, root), Seen::denied());
        if !sys_admin_bypass() {
            assert_eq!(look_as(0, 0, &file, root), Seen::denied(), "root");
        }
    }

    /// Removes the replacements of `/etc/fuse.conf`.
    fn unbind_fuse_conf(&self) {
        while is_mounted(Path::new("/etc/fuse.conf")) {
            let st = Command::new("umount").arg("/etc/fuse.conf").status();
            if !st.is_ok_and(|s| s.success()) {
                break;
            }
        }
    }
}

impl Drop for UserWorld {
    fn drop(&mut self) {
        // The namespace's mounts vanish with it, but their mount points
        // are directories of the real /tmp: unmount them so that the temp
        // dir can be removed.
        unmount(&self.mnt);
        self.unbind_fuse_conf();
        unmount(Path::new("/dev/fuse"));
        unmount(&self.dir.path().join("dev"));
    }
}

/// Asserts a refusal: exit code 2, one line on stderr containing every
/// one of `words`, and nothing mounted.
fn assert_refused(out: &common::Output, what: &str, words: &[&str]) {
    common::assert_one_line_exit(out, 2, what, words);
}
