//! `mount -t fuse.triefs` and fstab lines, through the binary installed as
//! the mount(8) helper `/sbin/mount.fuse.triefs`.
// Mount tests drive Linux: tmpfs as the oracle, Linux syscalls and tools.
#![cfg(target_os = "linux")]

mod common;

use std::path::PathBuf;
use std::process::Command;

/// Installs `/sbin/mount.fuse.triefs` pointing at the binary under test
/// for the duration of the test (unless one is already installed), and
/// removes it again, also on panic.
/// Tests that use it take turns, so one cannot remove it under another.
struct HelperLink {
    path: PathBuf,
    created: bool,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl HelperLink {
    fn install() -> HelperLink {
        static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let path = PathBuf::from("/sbin/mount.fuse.triefs");
        let created = !path.exists();
        if created {
            std::os::unix::fs::symlink(common::triefs_bin(), &path).expect("install helper link");
        }
        HelperLink {
            path,
            created,
            _turn: turn,
        }
    }
}

impl Drop for HelperLink {
    fn drop(&mut self) {
        if self.created {
            let _ = std::fs::remove_file(&self.path);
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
