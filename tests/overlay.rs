//! `renameat2(RENAME_WHITEOUT)` and triefs as the upper layer of an
//! overlayfs, each against tmpfs doing the same: the whiteout a rename
//! leaves (a 0:0 character device, mode 0, the caller's), the errors around
//! it, and a merged tree built, changed and read through overlayfs with
//! the same merged view and the same upper layer on both.
// Mount tests drive Linux: tmpfs as the oracle, Linux system calls.
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Errno, Tmpfs, TriefsMount, Unmounts, cpath, errno};

const RENAME_NOREPLACE: u32 = 1;
const RENAME_EXCHANGE: u32 = 2;
const RENAME_WHITEOUT: u32 = 4;

fn renameat2(from: &Path, to: &Path, flags: u32) -> Result<(), Errno> {
    let (a, b) = (cpath(from), cpath(to));
    // SAFETY: two valid C strings; renameat2 only reads them.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    if rc == 0 { Ok(()) } else { Err(Errno(errno())) }
}

/// What `lstat` shows of a path, and a regular file's contents.
#[derive(Debug, PartialEq, Eq, Clone)]
enum Seen {
    Missing,
    Dir {
        mode: u32,
    },
    File {
        mode: u32,
        data: Vec<u8>,
    },
    CharDev {
        mode: u32,
        rdev: u64,
        uid: u32,
        gid: u32,
    },
    Other {
        mode: u32,
    },
}

fn seen(p: &Path) -> Seen {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return Seen::Missing;
    };
    let mode = m.mode();
    let t = m.file_type();
    if t.is_dir() {
        Seen::Dir { mode }
    } else if t.is_file() {
        Seen::File {
            mode,
            data: std::fs::read(p).unwrap_or_default(),
        }
    } else if t.is_char_device() {
        Seen::CharDev {
            mode,
            rdev: m.rdev(),
            uid: m.uid(),
            gid: m.gid(),
        }
    } else {
        Seen::Other { mode }
    }
}

/// Every path under `root` (relative) with what it is.
fn tree(root: &Path) -> BTreeMap<PathBuf, Seen> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("list {}: {e}", d.display())) {
            let p = e.unwrap().path();
            let s = seen(&p);
            if matches!(s, Seen::Dir { .. }) {
                stack.push(p.clone());
            }
            out.insert(p.strip_prefix(root).unwrap().to_path_buf(), s);
        }
    }
    out
}

/// The whiteout cases on one filesystem root.
fn whiteouts(root: &Path) -> Vec<(String, Result<(), Errno>, Vec<Seen>)> {
    let p = |s: &str| root.join(s);
    std::fs::create_dir(p("d")).unwrap();
    std::fs::create_dir(p("full")).unwrap();
    std::fs::write(p("full/x"), b"x").unwrap();
    std::fs::create_dir(p("empty")).unwrap();
    std::fs::write(p("a"), b"aaa").unwrap();
    std::fs::write(p("b"), b"bbb").unwrap();
    std::fs::write(p("c"), b"ccc").unwrap();
    std::fs::create_dir(p("sub")).unwrap();
    std::fs::write(p("sub/f"), b"fff").unwrap();
    let mut out = Vec::new();
    let mut case = |what: &str, from: &str, to: &str, flags: u32, look: &[&str]| {
        let r = renameat2(&p(from), &p(to), flags);
        let s = look.iter().map(|l| seen(&p(l))).collect();
        out.push((what.to_string(), r, s));
    };
    case("plain", "a", "a2", RENAME_WHITEOUT, &["a", "a2"]);
    case("over a file", "b", "c", RENAME_WHITEOUT, &["b", "c"]);
    case(
        "noreplace onto a file",
        "c",
        "a2",
        RENAME_WHITEOUT | RENAME_NOREPLACE,
        &["c", "a2"],
    );
    case(
        "noreplace",
        "c",
        "c2",
        RENAME_WHITEOUT | RENAME_NOREPLACE,
        &["c", "c2"],
    );
    case(
        "with exchange",
        "c2",
        "a2",
        RENAME_WHITEOUT | RENAME_EXCHANGE,
        &["c2", "a2"],
    );
    case(
        "missing source",
        "nope",
        "x",
        RENAME_WHITEOUT,
        &["nope", "x"],
    );
    case(
        "a directory",
        "sub",
        "d/sub",
        RENAME_WHITEOUT,
        &["sub", "d/sub", "d/sub/f"],
    );
    case(
        "onto a non-empty dir",
        "d/sub",
        "full",
        RENAME_WHITEOUT,
        &["d/sub", "full"],
    );
    case(
        "onto an empty dir",
        "d/sub",
        "empty",
        RENAME_WHITEOUT,
        &["d/sub", "empty/f"],
    );
    case("over a whiteout", "c2", "a", RENAME_WHITEOUT, &["c2", "a"]);
    out
}

#[test]
fn rename_whiteout_like_tmpfs() {
    let tmpfs = Tmpfs::new();
    let triefs = TriefsMount::new(&[]);
    let want = whiteouts(tmpfs.path());
    let got = whiteouts(triefs.path());
    // The oracle, spelled out for the first case: a 0:0 character device
    // with mode 0, owned by the caller (root), at the old name.
    let wo = Seen::CharDev {
        mode: libc::S_IFCHR,
        rdev: 0,
        uid: 0,
        gid: 0,
    };
    assert_eq!(want[0].1, Ok(()));
    assert_eq!(want[0].2[0], wo, "tmpfs: {want:?}");
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(g, w, "triefs differs from tmpfs");
    }
    assert_eq!(got.len(), want.len());
}

/// A whiteout takes an inode: on a filesystem out of inodes the rename is
/// refused as a whole, and nothing moves.
#[test]
fn rename_whiteout_without_a_free_inode_moves_nothing() {
    let tmpfs = Tmpfs::with_options("nr_inodes=4");
    let triefs = TriefsMount::new(&["-o", "nr_inodes=4"]);
    let mut outcomes = Vec::new();
    for root in [tmpfs.path(), triefs.path()] {
        let mut made = 0;
        while std::fs::write(root.join(format!("f{made}")), b"x").is_ok() {
            made += 1;
        }
        let r = renameat2(&root.join("f0"), &root.join("g"), RENAME_WHITEOUT);
        outcomes.push((made, r, seen(&root.join("f0")), seen(&root.join("g"))));
    }
    assert_eq!(
        outcomes[0].1,
        Err(Errno(libc::ENOSPC)),
        "tmpfs: {outcomes:?}"
    );
    assert_eq!(outcomes[1], outcomes[0], "tmpfs, then triefs");
}

/// Whiteouts need no privilege (since Linux 5.8 a 0:0 character device is
/// not a device): another user renames with one as on tmpfs, and the
/// whiteout is theirs.
#[test]
fn rename_whiteout_by_another_user_like_tmpfs() {
    let tmpfs = Tmpfs::with_options("mode=1777");
    let triefs = TriefsMount::new(&["-o", "allow_other,mode=1777"]);
    common::chmod(tmpfs.dir.path(), 0o755);
    common::chmod(triefs.dir.path(), 0o755);
    let mut outcomes = Vec::new();
    for root in [tmpfs.path(), triefs.path()] {
        let from = cpath(&root.join("mine"));
        let to = cpath(&root.join("moved"));
        let child = common::forked(|rec: &mut [u8; 8]| {
            // SAFETY: plain system calls on data prepared before the fork.
            unsafe {
                if libc::setgid(common::NOBODY) != 0 || libc::setuid(common::NOBODY) != 0 {
                    return false;
                }
                let fd = libc::open(from.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644);
                if fd < 0 {
                    return false;
                }
                libc::close(fd);
                let rc = libc::renameat2(
                    libc::AT_FDCWD,
                    from.as_ptr(),
                    libc::AT_FDCWD,
                    to.as_ptr(),
                    RENAME_WHITEOUT,
                );
                let e = if rc == 0 { 0 } else { errno() };
                rec[..4].copy_from_slice(&e.to_ne_bytes());
            }
            true
        });
        assert_eq!(child.got, 8, "child did not report");
        let e = i32::from_ne_bytes(child.record[..4].try_into().unwrap());
        outcomes.push((e, seen(&root.join("mine")), seen(&root.join("moved"))));
    }
    let wo = Seen::CharDev {
        mode: libc::S_IFCHR,
        rdev: 0,
        uid: common::NOBODY,
        gid: common::NOBODY,
    };
    assert_eq!(
        (outcomes[0].0, &outcomes[0].1),
        (0, &wo),
        "tmpfs: {outcomes:?}"
    );
    assert_eq!(outcomes[1], outcomes[0], "tmpfs, then triefs");
}

fn mount_overlay(lower: &Path, upper_root: &Path, mnt: &Path) {
    std::fs::create_dir(upper_root.join("up")).unwrap();
    std::fs::create_dir(upper_root.join("work")).unwrap();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper_root.join("up").display(),
        upper_root.join("work").display()
    );
    let out = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(mnt)
        .output()
        .expect("run mount");
    assert!(
        out.status.success(),
        "mount -t overlay with upper on {}: {}",
        upper_root.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds, changes and reads a tree through an overlay whose upper layer
/// is on `upper_root`; returns the merged view and the upper layer.
fn through_overlay(lower: &Path, upper_root: &Path, mnt: &Path) -> [BTreeMap<PathBuf, Seen>; 2] {
    mount_overlay(lower, upper_root, mnt);
    let _ov = Unmounts(vec![mnt.to_path_buf()]);
    let m = |s: &str| mnt.join(s);
    std::fs::write(m("new"), b"new file").unwrap();
    std::fs::remove_file(m("gone")).unwrap();
    std::fs::rename(m("dir/f"), m("dir/f2")).unwrap();
    let mut data = std::fs::read(m("dir/f2")).unwrap();
    data.extend_from_slice(b" and more");
    std::fs::write(m("dir/f2"), &data).unwrap();
    std::fs::write(m("keep"), b"copied up").unwrap();
    std::fs::create_dir(m("d2")).unwrap();
    std::fs::write(m("d2/x"), b"x").unwrap();
    std::fs::remove_dir_all(m("lowerdir")).unwrap();
    std::fs::create_dir(m("lowerdir")).unwrap();
    std::fs::rename(m("d2"), m("d3")).unwrap();
    let chmod = Command::new("chmod")
        .arg("0600")
        .arg(m("mode"))
        .status()
        .unwrap();
    assert!(chmod.success());
    let merged = tree(mnt);
    drop(_ov);
    [merged, tree(&upper_root.join("up"))]
}

/// overlayfs accepts triefs as its upper layer (it warns that the upper
/// has no O_TMPFILE, which overlayfs only uses for some copy-ups) and the
/// merged view and upper layer match a tmpfs upper's.
#[test]
fn overlayfs_upper_layer_like_tmpfs() {
    let lower = Tmpfs::new();
    let l = |s: &str| lower.path().join(s);
    std::fs::create_dir(l("dir")).unwrap();
    std::fs::write(l("dir/f"), b"lower f").unwrap();
    std::fs::write(l("gone"), b"to delete").unwrap();
    std::fs::write(l("keep"), b"lower keep").unwrap();
    std::fs::write(l("mode"), b"mode").unwrap();
    std::fs::create_dir(l("lowerdir")).unwrap();
    std::fs::write(l("lowerdir/inside"), b"inside").unwrap();
    // The lower layer is read-only to the overlay.
    let ro = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(lower.path())
        .status()
        .unwrap();
    assert!(ro.success());

    let upper_tmpfs = Tmpfs::new();
    let upper_triefs = TriefsMount::new(&[]);
    let dir = common::short_tempdir();
    let (m1, m2) = (dir.path().join("o1"), dir.path().join("o2"));
    std::fs::create_dir(&m1).unwrap();
    std::fs::create_dir(&m2).unwrap();
    let want = through_overlay(lower.path(), upper_tmpfs.path(), &m1);
    let got = through_overlay(lower.path(), upper_triefs.path(), &m2);
    // tmpfs's upper holds the whiteouts of the deleted and renamed files.
    let wo = |p: &str| {
        matches!(
            want[1].get(Path::new(p)),
            Some(Seen::CharDev { rdev: 0, .. })
        )
    };
    assert!(wo("gone") && wo("dir/f"), "tmpfs upper: {:?}", want[1]);
    assert_eq!(
        got[0], want[0],
        "merged views differ (tmpfs upper, then triefs upper)"
    );
    assert_eq!(got[1], want[1], "upper layers differ (tmpfs, then triefs)");
}
