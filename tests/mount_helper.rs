//! `mount -t fuse.triefs` and fstab lines, through the binary installed as
//! the mount(8) helper `/sbin/mount.fuse.triefs`.
// Mount tests drive Linux: tmpfs as the oracle, Linux syscalls and tools.
#![cfg(target_os = "linux")]

mod common;

use std::path::PathBuf;
use std::process::Command;

/// Makes `/sbin/mount.fuse.triefs` a link to the binary under test for
/// the duration of the test, and puts back whatever was there before
/// (another build's link, an installed binary) or removes it, also on
/// panic. The swaps are renames, so a concurrent `mount -t fuse.triefs`
/// always finds some helper. Tests that use it take turns, so one cannot
/// swap it under another.
struct HelperLink {
    path: PathBuf,
    /// A hard link to what was installed before, put back on drop.
    aside: Option<PathBuf>,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl HelperLink {
    fn install() -> HelperLink {
        static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let path = PathBuf::from("/sbin/mount.fuse.triefs");
        let pid = std::process::id();
        let tmp = PathBuf::from(format!("/sbin/.mount.fuse.triefs.test-{pid}"));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(common::triefs_bin(), &tmp).expect("make helper link");
        // A hard link to the entry itself (a symlink is not followed).
        let aside = path.symlink_metadata().is_ok().then(|| {
            let aside = PathBuf::from(format!("/sbin/.mount.fuse.triefs.aside-{pid}"));
            let _ = std::fs::remove_file(&aside);
            std::fs::hard_link(&path, &aside).expect("keep the installed helper aside");
            aside
        });
        let link = HelperLink {
            path,
            aside,
            _turn: turn,
        };
        std::fs::rename(&tmp, &link.path).expect("install helper link");
        link.assert_ours();
        link
    }

    /// Panics unless the helper is still the binary under test.
    #[track_caller]
    fn assert_ours(&self) {
        assert_eq!(
            std::fs::read_link(&self.path).ok(),
            Some(PathBuf::from(common::triefs_bin())),
            "{} is not the binary under test",
            self.path.display()
        );
    }
}

impl Drop for HelperLink {
    fn drop(&mut self) {
        // Whoever replaced our link meanwhile keeps theirs.
        let ours = std::fs::read_link(&self.path).ok() == Some(PathBuf::from(common::triefs_bin()));
        match &self.aside {
            Some(aside) if ours => {
                let _ = std::fs::rename(aside, &self.path);
            }
            Some(aside) => {
                let _ = std::fs::remove_file(aside);
            }
            None if ours => {
                let _ = std::fs::remove_file(&self.path);
            }
            None => {}
        }
    }
}

#[test]
fn mount_t_fuse_triefs_and_fstab() {
    common::require_mount();
    let _link = HelperLink::install();
    let dir = common::short_tempdir();
    let mnt = dir.path().join("m");
    std::fs::create_dir(&mnt).unwrap();

    // mount -t with tmpfs-style options; returns once the mount is live.
    let st = Command::new("mount")
        .args(["-t", "fuse.triefs", "scratch"])
        .arg(&mnt)
        .args(["-o", "size=1m,mode=0700,nr_inodes=50,noauto"])
        .status()
        .unwrap();
    assert!(st.success(), "mount -t fuse.triefs failed");
    {
        let _m = common::Unmounts(vec![mnt.clone()]);
        let info = common::mountinfo(&mnt);
        assert!(
            info.as_ref()
                .is_some_and(|i| i.source == "scratch" && i.fstype == "fuse.triefs"),
            "mountinfo: {info:?}"
        );
        let md = std::fs::metadata(&mnt).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(md.permissions().mode() & 0o7777, 0o700);
        let s = common::statvfs(&mnt);
        assert_eq!(s.f_blocks * s.f_frsize, 1 << 20);
        assert_eq!(s.f_files, 50);
        std::fs::write(mnt.join("f"), b"hello").unwrap();
        assert_eq!(std::fs::read(mnt.join("f")).unwrap(), b"hello");
    }
    assert!(!common::is_mounted(&mnt));

    // An fstab line, read from an alternative fstab with `mount -T`.
    let paths = dir.path().join("paths.txt");
    std::fs::write(&paths, "/a/b/c\n/d\n").unwrap();
    let fstab = dir.path().join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "data {} fuse.triefs size=2m,paths={},noauto,nofail,x-test.opt=1 0 0\n",
            mnt.display(),
            paths.display()
        ),
    )
    .unwrap();
    let st = Command::new("mount")
        .arg("-T")
        .arg(&fstab)
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "mount from fstab failed");
    let _m = common::Unmounts(vec![mnt.clone()]);
    let info = common::mountinfo(&mnt);
    assert!(
        info.as_ref().is_some_and(|i| i.source == "data"),
        "mountinfo: {info:?}"
    );
    assert!(mnt.join("a/b/c").is_dir() && mnt.join("d").is_dir());
    let s = common::statvfs(&mnt);
    assert_eq!(s.f_blocks * s.f_frsize, 2 << 20);
}

#[test]
fn helper_rejects_bad_calls_in_one_line() {
    let dir = common::short_tempdir();
    let link = dir.path().join("mount.fuse.triefs");
    std::os::unix::fs::symlink(common::triefs_bin(), &link).unwrap();
    let mut cmd = Command::new(&link);
    cmd.arg("only-one-arg");
    let out = common::run_timed(cmd, std::time::Duration::from_secs(10));
    common::assert_one_line_exit(&out, 2, "the helper with one argument", &[]);
    // -f (fake) mounts nothing and succeeds.
    let out = Command::new(&link)
        .args(["src", "/nonexistent", "-f"])
        .output()
        .unwrap();
    assert!(out.status.success());
}

/// What a device node and a setuid bit do on a root `mount -t TYPE`, with
/// mount options `opts`: the mount's per-mount flags, and whether a
/// character device made there (`/dev/null`'s numbers) can be opened.
fn devices_and_setuid(fstype: &str, opts: &str) -> (bool, bool, Result<(), i32>) {
    let dir = common::short_tempdir();
    let mnt = dir.path().join("m");
    std::fs::create_dir(&mnt).unwrap();
    let mut cmd = Command::new("mount");
    cmd.args(["-t", fstype, "src"]).arg(&mnt);
    if !opts.is_empty() {
        cmd.args(["-o", opts]);
    }
    assert!(
        cmd.status().unwrap().success(),
        "mount -t {fstype} -o {opts}"
    );
    let _m = common::Unmounts(vec![mnt.clone()]);
    let info = common::mountinfo(&mnt).expect("mounted");
    let has = |o: &str| info.mount_opts.iter().any(|m| m == o);
    let (nodev, nosuid) = (has("nodev"), has("nosuid"));
    let node = common::cpath(&mnt.join("null"));
    // SAFETY: a valid path; makes a character device 1:3 (/dev/null).
    let rc = unsafe { libc::mknod(node.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    assert_eq!(
        rc,
        0,
        "mknod on {fstype}: {}",
        std::io::Error::last_os_error()
    );
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .open(mnt.join("null"))
        .map(drop)
        .map_err(|e| e.raw_os_error().unwrap_or(0));
    (nodev, nosuid, opened)
}

/// A root `mount -t fuse.triefs` gets tmpfs's defaults: device nodes and
/// setuid bits work unless `nodev`/`nosuid` are given. (mount(8) drops
/// `dev` and `suid` before calling the helper; without the helper adding
/// them back, every such mount was `nodev,nosuid`.)
#[test]
fn mount_t_allows_devices_and_setuid_like_tmpfs() {
    common::require_mount();
    let _link = HelperLink::install();
    for opts in ["", "dev,suid", "nodev", "nosuid", "nodev,nosuid"] {
        let on_tmpfs = devices_and_setuid("tmpfs", opts);
        let on_triefs = devices_and_setuid("fuse.triefs", opts);
        assert_eq!(
            on_triefs, on_tmpfs,
            "-o {opts:?}: (nodev, nosuid, open of a device node)"
        );
    }
    assert_eq!(
        devices_and_setuid("fuse.triefs", "").2,
        Ok(()),
        "a device node opens"
    );
}

/// A filesystem mounted with `mount -t FSTYPE -o OPTS` on a fresh
/// directory, and unmounted on drop.
struct Mounted {
    dir: tempfile::TempDir,
    mnt: PathBuf,
    _m: common::Unmounts,
}

fn mount_t(fstype: &str, opts: &str) -> Mounted {
    common::require_mount();
    let dir = common::short_tempdir();
    let mnt = dir.path().join("m");
    std::fs::create_dir(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-t", fstype, "-o", opts, "src"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "mount -t {fstype} -o {opts}");
    let m = common::Unmounts(vec![mnt.clone()]);
    Mounted { dir, mnt, _m: m }
}

/// `mount -o remount,OPTS MNT` through mount(8): Ok, or the exit code and
/// the errno its one-line message names (mount(8)'s own words for tmpfs,
/// the helper's errno name for triefs).
fn remount(mnt: &std::path::Path, opts: &str) -> Result<(), (i32, &'static str)> {
    let mut cmd = Command::new("mount");
    cmd.args(["-o", &format!("remount,{opts}")]).arg(mnt);
    let out = common::run_timed(cmd, std::time::Duration::from_secs(20));
    let code = out.status.and_then(|s| s.code()).unwrap_or(-1);
    if code == 0 {
        return Ok(());
    }
    let e = &out.stderr;
    let errno = if e.contains("(EBUSY)") || e.contains("is busy") {
        "EBUSY"
    } else if e.contains("(EINVAL)") || e.contains("bad option") {
        "EINVAL"
    } else {
        panic!(
            "remount,{opts} of {}: unexpected message {e:?}",
            mnt.display()
        )
    };
    Err((code, errno))
}

/// Bytes a new file `name` takes before the first error, and that error.
fn fill(dir: &std::path::Path, name: &str, max: usize) -> (usize, Option<i32>) {
    use std::io::Write;
    let mut f = match std::fs::File::create(dir.join(name)) {
        Ok(f) => f,
        Err(e) => return (0, e.raw_os_error()),
    };
    let chunk = vec![7u8; 64 << 10];
    let mut done = 0;
    while done < max {
        match f.write(&chunk[..chunk.len().min(max - done)]) {
            Ok(n) => done += n,
            Err(e) => return (done, e.raw_os_error()),
        }
    }
    (done, None)
}

fn bytes(mnt: &std::path::Path) -> (u64, u64) {
    let s = common::statvfs(mnt);
    (s.f_blocks * s.f_frsize, s.f_files)
}

/// `big` in each mount, open for writing (a remount to read-only must
/// refuse while they are).
fn open_big_for_writing(mounts: &[&std::path::PathBuf]) -> Vec<std::fs::File> {
    mounts
        .iter()
        .map(|m| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(m.join("big"))
                .unwrap()
        })
        .collect()
}

fn opts_of(mnt: &std::path::Path) -> (Vec<String>, bool) {
    let i = common::mountinfo(mnt).expect("mounted");
    let lazy = i.super_opts.iter().any(|o| o == "lazytime");
    (i.mount_opts, lazy)
}

/// `mount -o remount` on a triefs and a tmpfs side by side, through
/// mount(8): the same successes and refusals (exit code and errno), the
/// same limits and the same ENOSPC after a change, EROFS while read-only,
/// EBUSY for read-only with a file open for writing, the same per-mount
/// flags, and a refused remount changes nothing.
#[test]
fn remount_like_tmpfs() {
    let link = HelperLink::install();
    let opts = "size=1m,nr_inodes=10,mode=0755";
    let t = mount_t("tmpfs", opts);
    let f = mount_t("fuse.triefs", opts);
    let both = [&t.mnt, &f.mnt];
    let same = |what: &str, step: &dyn Fn(&std::path::Path) -> String| {
        let (a, b) = (step(&t.mnt), step(&f.mnt));
        assert_eq!(b, a, "{what}: triefs (left) against tmpfs (right)");
    };
    for m in both {
        assert_eq!(fill(m, "big", 600 << 10), (600 << 10, None));
        for d in ["a", "b", "c"] {
            std::fs::create_dir(m.join(d)).unwrap();
        }
    }
    // In use: 150 pages, 5 inodes. Each step: the outcome, then the limits.
    let steps = [
        "size=512k",
        "nr_inodes=2",
        "size=2m,nr_inodes=2",
        "nr_inodes=4",
        "size=700k",
        "nr_inodes=6",
        "mode=0700,uid=5,gid=5",
        "bogus",
        "size=1x",
        "size=0",
        "size=2m",
        "nr_inodes=0",
        "nr_inodes=100",
        "size=0,nr_inodes=0",
    ];
    for (i, opts) in steps.iter().enumerate() {
        if *opts == "size=0" {
            // Before lifting: ENOSPC at the same byte after the change to
            // 700k (175 pages, 150 in use), and no inode after the new file.
            same("filling up after size=700k,nr_inodes=6", &|m| {
                format!("{:?} {:?}", fill(m, "more", 1 << 20), fill(m, "none", 1))
            });
            for m in both {
                std::fs::remove_file(m.join("more")).unwrap();
            }
            // A remount that fails after its size change was accepted
            // (read-only refused while a file is open for writing) leaves
            // the size as it was.
            let held = open_big_for_writing(&both);
            same("remount,ro,size=900k with a file open for writing", &|m| {
                format!(
                    "{:?} {:?} {:?}",
                    remount(m, "ro,size=900k"),
                    bytes(m),
                    opts_of(m)
                )
            });
            drop(held);
        }
        same(&format!("step {i}: remount,{opts}"), &|m| {
            format!("{:?} {:?}", remount(m, opts), bytes(m))
        });
    }
    same("root mode and owner after remount,mode=0700,uid=5", &|m| {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(m).unwrap();
        format!("{:o} {}", md.mode() & 0o7777, md.uid())
    });

    // Read-only: refused while a file is open for writing, then EROFS for
    // every change, and writable again after remount,rw.
    let held = open_big_for_writing(&both);
    same("remount,ro with a file open for writing", &|m| {
        format!("{:?} {:?}", remount(m, "ro"), opts_of(m))
    });
    drop(held);
    same("remount,ro", &|m| format!("{:?}", remount(m, "ro")));
    same("changes while read-only", &|m| {
        let e = |r: std::io::Result<()>| r.map_err(|e| e.raw_os_error());
        format!(
            "{:?} {:?} {:?} {:?} {:?}",
            e(std::fs::write(m.join("new"), b"x")),
            e(std::fs::create_dir(m.join("d"))),
            e(std::fs::OpenOptions::new()
                .append(true)
                .open(m.join("big"))
                .map(drop)),
            e(std::fs::remove_dir(m.join("a"))),
            opts_of(m)
        )
    });
    same("remount,rw", &|m| {
        format!(
            "{:?} {:?} {:?}",
            remount(m, "rw"),
            std::fs::write(m.join("new"), b"x").map_err(|e| e.raw_os_error()),
            opts_of(m)
        )
    });
    // Per-mount flags and the atime options, as the mount table shows them.
    for opts in [
        "nosuid,noexec,nodev",
        "suid,exec",
        "strictatime",
        "noatime,nodiratime",
        "relatime,diratime",
        "lazytime",
        "nolazytime,atime",
        "ro,noexec",
        "rw,exec",
    ] {
        same(&format!("remount,{opts}"), &|m| {
            format!("{:?} {:?}", remount(m, opts), opts_of(m))
        });
    }
    // A copied binary runs from the mount while it is read-only
    // (xfstests generic/452).
    for m in both {
        std::fs::copy("/bin/true", m.join("true")).unwrap();
        common::chmod(&m.join("true"), 0o755);
    }
    same("running a binary from a read-only mount", &|m| {
        let ro = remount(m, "ro");
        let ran = Command::new(m.join("true")).status().map(|s| s.success());
        format!("{ro:?} {ran:?} {:?}", remount(m, "rw"))
    });
    link.assert_ours();
}

/// Who may remount, and what: only root; only a triefs mount point.
/// Every refusal is one line and changes nothing.
#[test]
fn remount_refusals() {
    let link = HelperLink::install();
    let f = mount_t("fuse.triefs", "size=1m");
    let t = mount_t("tmpfs", "size=1m");
    let helper = |target: &std::path::Path, opts: &str| {
        let mut cmd = Command::new("/sbin/mount.fuse.triefs");
        cmd.args(["src"]).arg(target).args(["-o", opts]);
        common::run_timed(cmd, std::time::Duration::from_secs(20))
    };
    // Another user, with a copy of the binary it may run, named as the
    // helper.
    let shared = common::shared_binary();
    let as_helper = shared.dir.path().join("mount.fuse.triefs");
    std::os::unix::fs::symlink(&shared.path, &as_helper).unwrap();
    let mut cmd = common::as_nobody(&as_helper);
    cmd.args(["src"]).arg(&f.mnt).args(["-o", "remount,ro"]);
    let out = common::run_timed(cmd, std::time::Duration::from_secs(20));
    common::assert_one_line_exit(&out, 1, "remount by nobody", &["root"]);
    let out = helper(&t.mnt, "remount,ro");
    common::assert_one_line_exit(&out, 32, "remount of a tmpfs", &["not a triefs mount"]);
    let sub = f.mnt.join("sub");
    std::fs::create_dir(&sub).unwrap();
    for target in [&sub, &t.dir.path().join("nowhere")] {
        let out = helper(target, "remount,ro");
        common::assert_one_line_exit(&out, 32, "remount of a non-mount", &[]);
    }
    let out = helper(&f.mnt, "remount,owner_only");
    common::assert_one_line_exit(&out, 32, "access change", &["allow_other"]);
    // Nothing changed: both still writable, the tmpfs still 1m.
    for m in [&f.mnt, &t.mnt] {
        assert!(opts_of(m).0.iter().any(|o| o == "rw"), "{}", m.display());
        std::fs::write(m.join("w"), b"x").unwrap();
    }
    assert_eq!(bytes(&t.mnt).0, 1 << 20);
    link.assert_ours();
}

/// The daemon answers the remount request only to root: another user
/// gets EPERM even on a mount every user may use, and nothing changes.
#[test]
fn remount_request_is_root_only() {
    let m = common::TriefsMount::new(&["-o", "allow_other,size=1m"]);
    let path = common::cpath(m.path());
    let req = triefs::reconfigure::encode_request(&triefs::reconfigure::Request {
        size: Some(4 << 20),
        ..Default::default()
    });
    let cmd = triefs::reconfigure::IOC_RECONFIGURE;
    // The child sends [errno of open, errno of the ioctl] as bytes.
    let child = common::forked::<2>(|rec| {
        let mut buf = req;
        // SAFETY: plain system calls on memory prepared before the fork.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(common::NOBODY) != 0
                || libc::setuid(common::NOBODY) != 0
            {
                return false;
            }
            let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
            if fd < 0 {
                rec[0] = *libc::__errno_location() as u8;
                return true;
            }
            if libc::ioctl(fd, cmd as _, buf.as_mut_ptr()) < 0 {
                rec[1] = *libc::__errno_location() as u8;
            }
        }
        true
    });
    assert_eq!(child.got, 2, "the child reported");
    assert_eq!(
        (child.record[0], child.record[1]),
        (0, libc::EPERM as u8),
        "nobody's remount request: [open errno, ioctl errno]"
    );
    assert_eq!(bytes(m.path()).0, 1 << 20, "the limit did not change");
    // Root is answered: the limits as they are.
    let r = triefs::reconfigure::send(m.path(), &Default::default()).unwrap();
    assert_eq!((r.refused, r.before.size), (None, 1 << 20));
}

/// Atime options at mount time, direct and through mount(8), set the same
/// flags as on a tmpfs mounted with them.
#[test]
fn atime_options_at_mount() {
    let link = HelperLink::install();
    for opts in [
        "relatime",
        "strictatime,lazytime",
        "noatime",
        "nodiratime,norelatime",
        "strictatime,nostrictatime",
    ] {
        let t = mount_t("tmpfs", opts);
        let f = mount_t("fuse.triefs", opts);
        assert_eq!(opts_of(&f.mnt), opts_of(&t.mnt), "mount -t ... -o {opts}");
        let d = common::TriefsMount::new(&["-o", opts]);
        let (mut got, lazy) = opts_of(d.path());
        // triefs run directly defaults to nodev,nosuid (README).
        got.retain(|o| o != "nodev" && o != "nosuid");
        assert_eq!((got, lazy), opts_of(&t.mnt), "triefs -o {opts}");
    }
    link.assert_ours();
}
