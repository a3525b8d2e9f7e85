//! Differential permission tests: the same operations made by unprivileged
//! users on a tmpfs oracle and on a triefs mount (`-o allow_other`, so the
//! kernel enforces the mode bits through `default_permissions`) must give the
//! same result and errno, and leave the touched paths with the same type,
//! mode, owner, group, link count, size, explicitly-set timestamps, `user.t`
//! xattr and `security.capability`. Where they disagree, tmpfs is right.
//!
//! Setup runs as root and is identical on both roots. Each check forks a
//! child that drops its credentials (setgroups, setresgid, setresuid, in
//! that order) and makes exactly one system call; the child reports the
//! outcome through a pipe. The child only makes async-signal-safe calls on
//! data prepared before the fork. Most checks also assert the expected
//! tmpfs result (a small model of the POSIX rules, reported as ORACLE), so
//! a test cannot pass vacuously because, say, the temp dir was not
//! traversable. `random_sequences` has no model: tmpfs alone decides.
//!
//! Mismatches are collected per test and reported together at its end.
//! TRIEFS_PERMS_VERBOSE=1 prints every check's results (with --nocapture).
// Mount tests drive Linux: tmpfs as the oracle, Linux syscalls and tools.
#![cfg(target_os = "linux")]

mod common;

use std::ffi::CString;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use common::{Errno, Tmpfs, TriefsMount, cpath, errno};

// ---------------------------------------------------------------------------
// Users.
// ---------------------------------------------------------------------------

/// A supplementary group that some users are in.
const STAFF: u32 = 3000;

/// Credentials a check runs with: effective (= saved = filesystem) ids,
/// real ids (what access(2) checks) and supplementary groups.
#[derive(Clone, Copy)]
struct User {
    name: &'static str,
    uid: u32,
    gid: u32,
    ruid: u32,
    rgid: u32,
    groups: &'static [u32],
}

impl User {
    /// The identity access(2) checks with: the real ids.
    fn real(self) -> User {
        User {
            uid: self.ruid,
            gid: self.rgid,
            ..self
        }
    }
}

const ROOT: User = User {
    name: "root",
    uid: 0,
    gid: 0,
    ruid: 0,
    rgid: 0,
    groups: &[0],
};
/// Owns most of the fixtures; not in STAFF.
const ALICE: User = User {
    name: "alice(1000/1000)",
    uid: 1000,
    gid: 1000,
    ruid: 1000,
    rgid: 1000,
    groups: &[1000],
};
/// Alice with STAFF as a supplementary group.
const ALICE_STAFF: User = User {
    name: "alice(1000/1000,+staff)",
    uid: 1000,
    gid: 1000,
    ruid: 1000,
    rgid: 1000,
    groups: &[1000, STAFF],
};
/// In STAFF through a supplementary group.
const BOB: User = User {
    name: "bob(1001/1001,+staff)",
    uid: 1001,
    gid: 1001,
    ruid: 1001,
    rgid: 1001,
    groups: &[1001, STAFF],
};
const CAROL: User = User {
    name: "carol(1002/1002)",
    uid: 1002,
    gid: 1002,
    ruid: 1002,
    rgid: 1002,
    groups: &[1002],
};
/// In STAFF through the primary group only.
const DAVE: User = User {
    name: "dave(1003/staff)",
    uid: 1003,
    gid: STAFF,
    ruid: 1003,
    rgid: STAFF,
    groups: &[],
};
const NOBODY: User = User {
    name: "nobody(65534/65534)",
    uid: common::NOBODY,
    gid: common::NOBODY,
    ruid: common::NOBODY,
    rgid: common::NOBODY,
    groups: &[],
};

/// Real ids of bob, effective ids of alice (like a setuid-alice program
/// run by bob); supplementary groups of bob.
const BOB_AS_ALICE: User = User {
    name: "real bob(1001/1001)/effective alice(1000/1000),+staff",
    uid: 1000,
    gid: 1000,
    ruid: 1001,
    rgid: 1001,
    groups: &[1001, STAFF],
};

/// The POSIX permission model for `want` (an `rwx` mask of 4/2/1) on an
/// object with `mode`, `uid` and `gid`, as tmpfs applies it.
fn may(user: User, mode: u32, uid: u32, gid: u32, want: u32, is_dir: bool) -> bool {
    if user.uid == 0 {
        // CAP_DAC_OVERRIDE: everything, except executing a file with no x.
        return want & 1 == 0 || is_dir || mode & 0o111 != 0;
    }
    let bits = if user.uid == uid {
        (mode >> 6) & 7
    } else if user.gid == gid || user.groups.contains(&gid) {
        (mode >> 3) & 7
    } else {
        mode & 7
    };
    bits & want == want
}

fn sysctl(name: &str) -> u32 {
    std::fs::read_to_string(format!("/proc/sys/fs/{name}"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Outcomes.
// ---------------------------------------------------------------------------

/// What one check's system call did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    /// Success; the value is the directory entry count (readdir), the
    /// value length (getxattr) or 0.
    Ok(i64),
    Err(Errno),
    /// `execve` succeeded and the program exited with this status.
    Exited(i32),
    /// The child died from a signal (e.g. the 20 s alarm).
    Signaled(i32),
    /// Dropping the credentials failed (errno).
    CredFailed(Errno),
    /// The child reported nothing usable.
    Broken,
}

const OK: Outcome = Outcome::Ok(0);

fn err(e: i32) -> Outcome {
    Outcome::Err(Errno(e))
}

/// `OK` when `cond`, else `err(e)`.
fn ok_if(cond: bool, e: i32) -> Outcome {
    if cond { OK } else { err(e) }
}

// ---------------------------------------------------------------------------
// Operations and the forked child.
// ---------------------------------------------------------------------------

/// `utimensat` time arguments.
#[derive(Clone, Copy, Debug)]
enum Times {
    /// `times == NULL`: both now.
    Null,
    /// `[UTIME_NOW, UTIME_NOW]`.
    BothNow,
    /// `[UTIME_NOW, UTIME_OMIT]`.
    NowOmit,
    /// `[UTIME_OMIT, UTIME_OMIT]`.
    BothOmit,
    /// Both set to `MAGIC_SEC.MAGIC_NSEC`.
    Explicit,
}

const MAGIC_SEC: i64 = 1_234_567_890;
const MAGIC_NSEC: i64 = 123_456_789;

/// One system call on paths relative to a root.
#[derive(Clone, Copy)]
enum Op<'a> {
    /// `open(path, flags | O_NONBLOCK, 0644)`, then close.
    Open(&'a str, i32),
    /// `open(path, O_CREAT|O_EXCL|O_WRONLY, mode)`.
    Create(&'a str, u32),
    /// `open(path, O_WRONLY | O_NONBLOCK)` and write one byte at offset 0.
    Write(&'a str),
    /// `open(path, O_WRONLY | O_NONBLOCK)` and `fallocate(fd, mode, 0, 8192)`.
    Fallocate(&'a str, i32),
    /// `open(path, O_RDWR)` and `copy_file_range` of its first 2 bytes to
    /// offset 6 of itself (FUSE's COPY_FILE_RANGE, not a fallback write).
    CopyRange(&'a str),
    Access(&'a str, i32),
    /// `faccessat(AT_FDCWD, path, mode, AT_EACCESS)`: effective ids.
    AccessEff(&'a str, i32),
    Chdir(&'a str),
    /// `mknod(path, mode, dev)`.
    Mknod(&'a str, u32, u64),
    /// `symlink(target, path)`; the target is stored verbatim.
    Symlink(&'a str, &'a str),
    /// `renameat2(from, to, flags)`.
    Rename2(&'a str, &'a str, u32),
    /// `execve(path, [path], [])`.
    Exec(&'a str),
    Stat(&'a str),
    /// `open(O_DIRECTORY)` + `getdents64`; counts names other than . and ..
    ReadDir(&'a str),
    Mkdir(&'a str, u32),
    Unlink(&'a str),
    Rmdir(&'a str),
    Rename(&'a str, &'a str),
    Link(&'a str, &'a str),
    Chmod(&'a str, u32),
    /// `chown(path, uid or -1, gid or -1)`.
    Chown(&'a str, Option<u32>, Option<u32>),
    Utimens(&'a str, Times),
    Truncate(&'a str, i64),
    /// `setxattr(path, name, value, len, 0)`.
    SetXattr(&'a str, &'a str, &'a [u8]),
    GetXattr(&'a str, &'a str),
    RemoveXattr(&'a str, &'a str),
}

impl<'a> Op<'a> {
    fn paths(&self) -> (&'a str, Option<&'a str>) {
        match *self {
            Op::Rename(a, b) | Op::Link(a, b) | Op::Rename2(a, b, _) => (a, Some(b)),
            Op::Symlink(_, b) => (b, None),
            Op::AccessEff(a, _) | Op::Chdir(a) | Op::Mknod(a, _, _) => (a, None),
            Op::Open(a, _)
            | Op::Create(a, _)
            | Op::Write(a)
            | Op::Fallocate(a, _)
            | Op::CopyRange(a)
            | Op::Access(a, _)
            | Op::Exec(a)
            | Op::Stat(a)
            | Op::ReadDir(a)
            | Op::Mkdir(a, _)
            | Op::Unlink(a)
            | Op::Rmdir(a)
            | Op::Chmod(a, _)
            | Op::Chown(a, _, _)
            | Op::Utimens(a, _)
            | Op::Truncate(a, _)
            | Op::SetXattr(a, _, _)
            | Op::GetXattr(a, _)
            | Op::RemoveXattr(a, _) => (a, None),
        }
    }

    fn xattr_name(&self) -> &'a str {
        match *self {
            Op::SetXattr(_, n, _) | Op::GetXattr(_, n) | Op::RemoveXattr(_, n) => n,
            _ => "",
        }
    }
}

impl fmt::Debug for Op<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let amode = |m: i32| {
            if m == libc::F_OK {
                return "F_OK".to_string();
            }
            let mut v = Vec::new();
            for (bit, name) in [
                (libc::R_OK, "R_OK"),
                (libc::W_OK, "W_OK"),
                (libc::X_OK, "X_OK"),
            ] {
                if m & bit != 0 {
                    v.push(name);
                }
            }
            v.join("|")
        };
        let id = |x: Option<u32>| x.map_or("-1".to_string(), |v| v.to_string());
        match *self {
            Op::Open(p, fl) => write!(f, "open({p:?}, {})", common::open_flags(fl)),
            Op::Create(p, m) => write!(f, "open({p:?}, O_CREAT|O_EXCL|O_WRONLY, 0{m:o})"),
            Op::Write(p) => write!(f, "write({p:?})"),
            Op::Fallocate(p, m) => write!(f, "fallocate({p:?}, {m:#x}, 0, 8192)"),
            Op::CopyRange(p) => write!(f, "copy_file_range({p:?} 0..2 -> 6)"),
            Op::Access(p, m) => write!(f, "access({p:?}, {})", amode(m)),
            Op::AccessEff(p, m) => write!(f, "faccessat({p:?}, {}, AT_EACCESS)", amode(m)),
            Op::Chdir(p) => write!(f, "chdir({p:?})"),
            Op::Mknod(p, m, d) => write!(f, "mknod({p:?}, 0{m:o}, {d:#x})"),
            Op::Symlink(t, p) => write!(f, "symlink({t:?}, {p:?})"),
            Op::Rename2(a, b, fl) => write!(f, "renameat2({a:?}, {b:?}, {fl:#x})"),
            Op::Exec(p) => write!(f, "execve({p:?})"),
            Op::Stat(p) => write!(f, "lstat({p:?})"),
            Op::ReadDir(p) => write!(f, "readdir({p:?})"),
            Op::Mkdir(p, m) => write!(f, "mkdir({p:?}, 0{m:o})"),
            Op::Unlink(p) => write!(f, "unlink({p:?})"),
            Op::Rmdir(p) => write!(f, "rmdir({p:?})"),
            Op::Rename(a, b) => write!(f, "rename({a:?}, {b:?})"),
            Op::Link(a, b) => write!(f, "link({a:?}, {b:?})"),
            Op::Chmod(p, m) => write!(f, "chmod({p:?}, 0{m:o})"),
            Op::Chown(p, u, g) => write!(f, "chown({p:?}, {}, {})", id(u), id(g)),
            Op::Utimens(p, t) => write!(f, "utimensat({p:?}, {t:?})"),
            Op::Truncate(p, l) => write!(f, "truncate({p:?}, {l})"),
            Op::SetXattr(p, n, v) => {
                write!(f, "setxattr({p:?}, {n:?}, \"{}\")", v.escape_ascii())
            }
            Op::GetXattr(p, n) => write!(f, "getxattr({p:?}, {n:?})"),
            Op::RemoveXattr(p, n) => write!(f, "removexattr({p:?}, {n:?})"),
        }
    }
}

/// An operation with its C strings made for one root (before the fork).
struct Resolved<'a> {
    op: Op<'a>,
    a: CString,
    b: CString,
    name: CString,
}

fn resolve<'a>(root: &Path, op: Op<'a>) -> Resolved<'a> {
    let (a, b) = op.paths();
    let (a, b) = match op {
        // symlink(target, linkpath): a is the verbatim target.
        Op::Symlink(target, link) => (
            CString::new(target).expect("symlink target"),
            cpath(&root.join(link)),
        ),
        _ => (cpath(&root.join(a)), cpath(&root.join(b.unwrap_or("")))),
    };
    Resolved {
        op,
        a,
        b,
        name: CString::new(op.xattr_name()).expect("xattr name"),
    }
}

fn last_err() -> Outcome {
    Outcome::Err(Errno(errno()))
}

fn rc(ret: libc::c_int) -> Outcome {
    if ret < 0 { last_err() } else { OK }
}

/// The outcome of a call that should move `want` bytes and moved `n`.
fn moved(n: isize, want: isize) -> Outcome {
    if n == want {
        OK
    } else if n < 0 {
        last_err()
    } else {
        Outcome::Broken
    }
}

/// Opens `path` with `flags` (and `O_CLOEXEC | O_NONBLOCK`), runs `call`
/// on the descriptor, closes it. Async-signal-safe, as [`perform`] needs.
///
/// # Safety
/// `path` must point at a live NUL-terminated string.
unsafe fn on_fd(
    path: *const libc::c_char,
    flags: libc::c_int,
    call: impl FnOnce(libc::c_int) -> Outcome,
) -> Outcome {
    // SAFETY: `path` is a C string (the caller's promise).
    let fd = unsafe { libc::open(path, flags | libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if fd < 0 {
        return last_err();
    }
    let out = call(fd);
    // SAFETY: `fd` was opened above and is closed once.
    unsafe { libc::close(fd) };
    out
}

/// Makes the system call. Runs in the forked child: no allocation, only
/// async-signal-safe libc calls.
///
/// # Safety
/// Must only be called in the freshly forked child.
unsafe fn perform(r: &Resolved<'_>) -> Outcome {
    let a = r.a.as_ptr();
    let b = r.b.as_ptr();
    // SAFETY: every pointer below comes from a live CString or a stack
    // buffer of the stated size.
    unsafe {
        match r.op {
            Op::Open(_, flags) => {
                // O_NONBLOCK: opening a FIFO must not wait for a peer.
                let flags = flags | libc::O_CLOEXEC | libc::O_NONBLOCK;
                let fd = libc::open(a, flags, 0o644 as libc::c_uint);
                if fd < 0 {
                    return last_err();
                }
                libc::close(fd);
                OK
            }
            Op::Create(_, mode) => {
                let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC;
                let fd = libc::open(a, flags, mode as libc::c_uint);
                if fd < 0 {
                    return last_err();
                }
                libc::close(fd);
                OK
            }
            Op::Write(_) => on_fd(a, libc::O_WRONLY, |fd| {
                moved(libc::pwrite(fd, b"X".as_ptr().cast(), 1, 0), 1)
            }),
            Op::Fallocate(_, mode) => on_fd(a, libc::O_WRONLY, |fd| {
                rc(libc::fallocate(fd, mode, 0, 8192))
            }),
            Op::CopyRange(_) => on_fd(a, libc::O_RDWR, |fd| {
                let (mut from, mut to) = (0i64, 6i64);
                moved(libc::copy_file_range(fd, &mut from, fd, &mut to, 2, 0), 2)
            }),
            Op::Access(_, mode) => rc(libc::access(a, mode)),
            Op::AccessEff(_, mode) => {
                rc(libc::faccessat(libc::AT_FDCWD, a, mode, libc::AT_EACCESS))
            }
            Op::Chdir(_) => rc(libc::chdir(a)),
            Op::Mknod(_, mode, dev) => rc(libc::mknod(a, mode, dev)),
            Op::Symlink(..) => rc(libc::symlink(a, b)),
            Op::Rename2(_, _, flags) => {
                rc(libc::renameat2(libc::AT_FDCWD, a, libc::AT_FDCWD, b, flags))
            }
            Op::Exec(_) => {
                // Keep the interpreter's complaints out of the test output.
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if null >= 0 {
                    libc::dup2(null, 2);
                }
                let argv = [a, std::ptr::null()];
                let envp: [*const libc::c_char; 1] = [std::ptr::null()];
                libc::execve(a, argv.as_ptr(), envp.as_ptr());
                last_err()
            }
            Op::Stat(_) => {
                let mut st: libc::stat = std::mem::zeroed();
                rc(libc::lstat(a, &mut st))
            }
            Op::ReadDir(_) => {
                let fd = libc::open(a, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC);
                if fd < 0 {
                    return last_err();
                }
                let mut buf = [0u8; 4096];
                let mut count = 0i64;
                loop {
                    let n = libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len());
                    if n < 0 {
                        let e = last_err();
                        libc::close(fd);
                        return e;
                    }
                    if n == 0 {
                        break;
                    }
                    let mut off = 0usize;
                    while off < n as usize {
                        let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
                        let name = &buf[off + 19..off + reclen];
                        let len = name.iter().position(|&c| c == 0).unwrap_or(name.len());
                        let name = &name[..len];
                        if name != b"." && name != b".." {
                            count += 1;
                        }
                        off += reclen;
                    }
                }
                libc::close(fd);
                Outcome::Ok(count)
            }
            Op::Mkdir(_, mode) => rc(libc::mkdir(a, mode)),
            Op::Unlink(_) => rc(libc::unlink(a)),
            Op::Rmdir(_) => rc(libc::rmdir(a)),
            Op::Rename(..) => rc(libc::rename(a, b)),
            Op::Link(..) => rc(libc::link(a, b)),
            Op::Chmod(_, mode) => rc(libc::chmod(a, mode)),
            Op::Chown(_, uid, gid) => rc(libc::chown(
                a,
                uid.unwrap_or(u32::MAX),
                gid.unwrap_or(u32::MAX),
            )),
            Op::Utimens(_, times) => {
                let now = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: libc::UTIME_NOW,
                };
                let omit = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: libc::UTIME_OMIT,
                };
                let magic = libc::timespec {
                    tv_sec: MAGIC_SEC,
                    tv_nsec: MAGIC_NSEC,
                };
                let ts = match times {
                    Times::Null => None,
                    Times::BothNow => Some([now, now]),
                    Times::NowOmit => Some([now, omit]),
                    Times::BothOmit => Some([omit, omit]),
                    Times::Explicit => Some([magic, magic]),
                };
                let p = ts.as_ref().map_or(std::ptr::null(), |t| t.as_ptr());
                rc(libc::utimensat(libc::AT_FDCWD, a, p, 0))
            }
            Op::Truncate(_, len) => rc(libc::truncate(a, len)),
            Op::SetXattr(_, _, value) => rc(libc::setxattr(
                a,
                r.name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )),
            Op::GetXattr(..) => {
                let mut buf = [0u8; 64];
                let n = libc::getxattr(a, r.name.as_ptr(), buf.as_mut_ptr().cast(), buf.len());
                if n < 0 {
                    last_err()
                } else {
                    Outcome::Ok(n as i64)
                }
            }
            Op::RemoveXattr(..) => rc(libc::removexattr(a, r.name.as_ptr())),
        }
    }
}

fn encode(o: Outcome) -> [i64; 2] {
    match o {
        Outcome::Ok(v) => [0, v],
        Outcome::Err(e) => [1, i64::from(e.0)],
        Outcome::CredFailed(e) => [2, i64::from(e.0)],
        _ => [3, 0],
    }
}

/// Serializes forks with file writes in setup, so no forked child can hold
/// a copy of a descriptor open for writing on a file another check is about
/// to execute (ETXTBSY).
static FORK_LOCK: Mutex<()> = Mutex::new(());

fn fork_lock() -> std::sync::MutexGuard<'static, ()> {
    FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Forks, drops to `user`, performs `r` and returns what happened.
fn run_as(user: User, r: &Resolved<'_>) -> Outcome {
    let _guard = fork_lock();
    let groups = user.groups;
    let child = common::forked(|rec: &mut [u8; 16]| {
        // SAFETY: everything used was prepared before the fork; plain
        // system calls.
        unsafe {
            libc::umask(0o022);
            let out = if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setresgid(user.rgid, user.gid, user.gid) != 0
                || libc::setresuid(user.ruid, user.uid, user.uid) != 0
            {
                Outcome::CredFailed(Errno(errno()))
            } else {
                perform(r)
            };
            let [tag, val] = encode(out);
            rec[..8].copy_from_slice(&tag.to_ne_bytes());
            rec[8..].copy_from_slice(&val.to_ne_bytes());
        }
        true
    });
    let (buf, got, status) = (child.record, child.got, child.status);
    if libc::WIFSIGNALED(status) {
        return Outcome::Signaled(libc::WTERMSIG(status));
    }
    if got == 0 {
        // The pipe closed on a successful execve.
        return if matches!(r.op, Op::Exec(_)) && libc::WIFEXITED(status) {
            Outcome::Exited(libc::WEXITSTATUS(status))
        } else {
            Outcome::Broken
        };
    }
    if got != buf.len() {
        return Outcome::Broken;
    }
    let tag = i64::from_ne_bytes(buf[..8].try_into().unwrap());
    let val = i64::from_ne_bytes(buf[8..].try_into().unwrap());
    match tag {
        0 => Outcome::Ok(val),
        1 => Outcome::Err(Errno(val as i32)),
        2 => Outcome::CredFailed(Errno(val as i32)),
        _ => Outcome::Broken,
    }
}

// ---------------------------------------------------------------------------
// Metadata snapshots.
// ---------------------------------------------------------------------------

/// A mode, printed in octal.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Mode(u32);

impl fmt::Debug for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0{:o}", self.0)
    }
}

/// The one documented difference in what root sees afterwards
/// (docs/tmpfs-differences.md): reads and listings do not update atime on
/// triefs (tmpfs is relatime), so where tmpfs moved atime away from an
/// explicitly set time, triefs may have kept it. Everything else, set-id
/// bits included, must be equal.
fn known_atime_difference(t: &Result<Meta, Errno>, f: &Result<Meta, Errno>) -> bool {
    let (Ok(t), Ok(f)) = (t, f) else {
        return false;
    };
    let same_rest = Meta {
        atime_magic: f.atime_magic,
        ..t.clone()
    } == *f;
    !t.atime_magic && f.atime_magic && same_rest
}

/// The one documented difference in an outcome: `chown(f, -1, -1)` by a
/// user who neither owns a setgid file without group-execute nor is in its
/// group. On tmpfs that is a mode change (the bit must go) only the owner
/// may make: `EPERM`, bit kept. The kernel sends it to FUSE as a request
/// with no change, exactly what a write's privilege removal looks like,
/// and a write by that user must clear the bit: so triefs succeeds and
/// clears it.
fn known_chown_difference(op: Op<'_>, t: Outcome, f: Outcome) -> bool {
    matches!(op, Op::Chown(_, None, None)) && t == err(libc::EPERM) && f == OK
}

/// The metadata side of [`known_chown_difference`]: only `S_ISGID`
/// differs, kept on tmpfs and cleared on triefs.
fn known_chown_meta_difference(t: &Result<Meta, Errno>, f: &Result<Meta, Errno>) -> bool {
    let (Ok(t), Ok(f)) = (t, f) else {
        return false;
    };
    t.mode.0 ^ f.mode.0 == libc::S_ISGID
        && t.mode.0 & libc::S_ISGID != 0
        && Meta {
            mode: t.mode,
            ..f.clone()
        } == *t
}

/// What root sees of a path after a check.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Meta {
    mode: Mode,
    uid: u32,
    gid: u32,
    nlink: u64,
    /// Regular files only (directory sizes are filesystem-specific).
    size: Option<i64>,
    /// atime / mtime equal to the explicit `MAGIC` time.
    atime_magic: bool,
    mtime_magic: bool,
    /// `user.t`, or the errno of reading it.
    xattr: Result<Vec<u8>, Errno>,
    /// Length of `security.capability`, or the errno of reading it.
    fcaps: Result<usize, Errno>,
}

fn meta(path: &Path) -> Result<Meta, Errno> {
    let c = cpath(path);
    // SAFETY: zeroed stat is a valid out-buffer; c is a valid C string.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::lstat(c.as_ptr(), &mut st) } != 0 {
        return Err(Errno(errno()));
    }
    let mut buf = [0u8; 64];
    let name = c"user.t";
    // SAFETY: buffer and strings are valid for the call.
    let n = unsafe { libc::lgetxattr(c.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), 64) };
    let xattr = if n < 0 {
        Err(Errno(errno()))
    } else {
        Ok(buf[..n as usize].to_vec())
    };
    let name = c"security.capability";
    // SAFETY: as above.
    let n = unsafe { libc::lgetxattr(c.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), 64) };
    let fcaps = if n < 0 {
        Err(Errno(errno()))
    } else {
        Ok(n as usize)
    };
    let is_reg = st.st_mode & libc::S_IFMT == libc::S_IFREG;
    Ok(Meta {
        mode: Mode(st.st_mode),
        uid: st.st_uid,
        gid: st.st_gid,
        nlink: st.st_nlink,
        size: is_reg.then_some(st.st_size),
        atime_magic: st.st_atime == MAGIC_SEC && st.st_atime_nsec == MAGIC_NSEC,
        mtime_magic: st.st_mtime == MAGIC_SEC && st.st_mtime_nsec == MAGIC_NSEC,
        xattr,
        fcaps,
    })
}

// ---------------------------------------------------------------------------
// The fixture: a tmpfs and a triefs mount, set up identically.
// ---------------------------------------------------------------------------

/// A node created by root during setup: path, mode, uid, gid.
enum Node<'a> {
    Dir(&'a str, u32, u32, u32),
    /// Plus contents.
    File(&'a str, u32, u32, u32, &'a [u8]),
    /// Root sets xattr `name` = `value` on a path.
    Xattr(&'a str, &'a str, &'a [u8]),
}

struct Fixture {
    /// Dropped first: unmounts triefs and waits for the daemon.
    fuse: TriefsMount,
    tmp: Tmpfs,
    failures: Vec<String>,
    checks: usize,
    /// Set when a check hit [`known_chown_difference`]: the two trees now
    /// differ on purpose, and a random sequence has to stop comparing.
    diverged: bool,
}

impl Fixture {
    /// Mounts both roots.
    #[track_caller]
    fn new() -> Fixture {
        let tmp = Tmpfs::new();
        let fuse = TriefsMount::new(&["-o", "allow_other"]);
        // The harness makes its temp dirs 0700; other users must traverse.
        common::chmod(tmp.dir.path(), 0o755);
        common::chmod(fuse.dir.path(), 0o755);
        Fixture {
            fuse,
            tmp,
            failures: Vec::new(),
            checks: 0,
            diverged: false,
        }
    }

    fn roots(&self) -> [(&'static str, PathBuf); 2] {
        [
            ("tmpfs", self.tmp.path().to_path_buf()),
            ("triefs", self.fuse.path().to_path_buf()),
        ]
    }

    /// Creates `nodes` (as root) under both roots.
    fn setup(&self, nodes: &[Node<'_>]) {
        for (label, root) in self.roots() {
            for node in nodes {
                let (rel, mode, uid, gid) = match *node {
                    Node::Dir(rel, mode, uid, gid) => {
                        let p = root.join(rel);
                        std::fs::create_dir(&p)
                            .unwrap_or_else(|e| panic!("{label}: mkdir {}: {e}", p.display()));
                        (rel, mode, uid, gid)
                    }
                    Node::File(rel, mode, uid, gid, data) => {
                        let p = root.join(rel);
                        let _guard = fork_lock();
                        std::fs::write(&p, data)
                            .unwrap_or_else(|e| panic!("{label}: write {}: {e}", p.display()));
                        (rel, mode, uid, gid)
                    }
                    Node::Xattr(rel, name, value) => {
                        let p = cpath(&root.join(rel));
                        let n = CString::new(name).unwrap();
                        // SAFETY: valid strings and buffer.
                        let r = unsafe {
                            libc::lsetxattr(
                                p.as_ptr(),
                                n.as_ptr(),
                                value.as_ptr().cast(),
                                value.len(),
                                0,
                            )
                        };
                        assert_eq!(r, 0, "{label}: setxattr {rel} {name}: errno {}", errno());
                        continue;
                    }
                };
                let p = root.join(rel);
                let c = cpath(&p);
                // Chown first: it would clear set-id bits set before it.
                // SAFETY: c is a valid C string.
                let r = unsafe { libc::lchown(c.as_ptr(), uid, gid) };
                assert_eq!(r, 0, "{label}: chown {rel}: errno {}", errno());
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
                    .unwrap_or_else(|e| panic!("{label}: chmod {rel}: {e}"));
                let m = meta(&p).unwrap_or_else(|e| panic!("{label}: lstat {rel}: {e:?}"));
                assert_eq!(
                    (m.mode.0 & 0o7777, m.uid, m.gid),
                    (mode, uid, gid),
                    "{label}: setup of {rel}"
                );
            }
        }
    }

    /// Runs `op` as `user` on both roots; records a failure when tmpfs
    /// differs from `expect`, when triefs differs from tmpfs, or when any of
    /// the `after` paths differs afterwards.
    fn check(&mut self, user: User, op: Op<'_>, expect: Option<Outcome>, after: &[&str]) {
        self.checks += 1;
        let roots = self.roots();
        let [(_, troot), (_, froot)] = &roots;
        let t = run_as(user, &resolve(troot, op));
        let f = run_as(user, &resolve(froot, op));
        let what = format!("{} {op:?}", user.name);
        let verbose = std::env::var_os("TRIEFS_PERMS_VERBOSE").is_some();
        if verbose {
            eprintln!("{what}: tmpfs {t:?}, triefs {f:?}");
        }
        if let Some(e) = expect
            && t != e
        {
            self.failures.push(format!(
                "ORACLE {what}: tmpfs gave {t:?}, the model expects {e:?}"
            ));
        }
        let chown_difference = known_chown_difference(op, t, f);
        self.diverged |= chown_difference;
        if t != f && !chown_difference {
            self.failures
                .push(format!("{what}: tmpfs {t:?}, triefs {f:?}"));
        }
        for rel in after {
            let mt = meta(&troot.join(rel));
            let mf = meta(&froot.join(rel));
            if verbose {
                eprintln!("    {rel}: tmpfs {mt:?}");
            }
            let known = known_atime_difference(&mt, &mf)
                || (chown_difference && known_chown_meta_difference(&mt, &mf));
            if mt != mf && !known {
                self.failures.push(format!(
                    "after {what}: lstat {rel}:\n    tmpfs  {mt:?}\n    triefs {mf:?}"
                ));
            }
        }
    }

    /// Checks that tmpfs and triefs agree on the metadata of `rel`.
    fn same_meta(&mut self, rel: &str) {
        let roots = self.roots();
        let mt = meta(&roots[0].1.join(rel));
        let mf = meta(&roots[1].1.join(rel));
        if mt != mf && !known_atime_difference(&mt, &mf) {
            self.failures.push(format!(
                "lstat {rel}:\n    tmpfs  {mt:?}\n    triefs {mf:?}"
            ));
        }
    }

    /// Fails the test with every recorded mismatch.
    fn finish(self) {
        let n = self.failures.len();
        assert!(
            self.failures.is_empty(),
            "{n} mismatches in {} checks:\n{}",
            self.checks,
            self.failures.join("\n")
        );
    }
}

const TEXT: &[u8] = b"hello\n";
const SCRIPT: &[u8] = b"#!/bin/sh\nexit 7\n";

// ---------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------

/// Read, write and execute permission on regular files, per owner, group
/// (primary or supplementary) and other class, for open, access and execve.
#[test]
fn file_rwx_per_class() {
    let mut fx = Fixture::new();
    let truebin = std::fs::read("/bin/true").expect("read /bin/true");
    let modes = [
        0o000, 0o400, 0o200, 0o100, 0o040, 0o020, 0o010, 0o004, 0o002, 0o001, 0o700, 0o070, 0o007,
        0o077, 0o707, 0o770, 0o644, 0o755, 0o111, 0o555, 0o666, 0o750, 0o705, 0o604, 0o300, 0o060,
    ];
    let users = [ROOT, ALICE, BOB, DAVE, NOBODY, BOB_AS_ALICE];
    for mode in modes {
        let f = format!("f{mode:04o}");
        fx.setup(&[Node::File(&f, mode, ALICE.uid, STAFF, &truebin)]);
        for user in users {
            let can = |want| may(user, mode, ALICE.uid, STAFF, want, false);
            let (r, w, x) = (can(4), can(2), can(1));
            // access(2) checks the real ids.
            let real = |want| may(user.real(), mode, ALICE.uid, STAFF, want, false);
            let (rr, rw, rx) = (real(4), real(2), real(1));
            let cases = [
                (Op::Open(&f, libc::O_RDONLY), ok_if(r, libc::EACCES)),
                (Op::Open(&f, libc::O_WRONLY), ok_if(w, libc::EACCES)),
                (Op::Open(&f, libc::O_RDWR), ok_if(r && w, libc::EACCES)),
                (Op::Access(&f, libc::F_OK), OK),
                (Op::Access(&f, libc::R_OK), ok_if(rr, libc::EACCES)),
                (Op::Access(&f, libc::W_OK), ok_if(rw, libc::EACCES)),
                (Op::Access(&f, libc::X_OK), ok_if(rx, libc::EACCES)),
                (
                    Op::Access(&f, libc::R_OK | libc::W_OK | libc::X_OK),
                    ok_if(rr && rw && rx, libc::EACCES),
                ),
                (Op::AccessEff(&f, libc::R_OK), ok_if(r, libc::EACCES)),
                (Op::AccessEff(&f, libc::W_OK), ok_if(w, libc::EACCES)),
                (Op::AccessEff(&f, libc::X_OK), ok_if(x, libc::EACCES)),
                (
                    Op::Exec(&f),
                    if x {
                        Outcome::Exited(0)
                    } else {
                        err(libc::EACCES)
                    },
                ),
            ];
            for (op, expect) in cases {
                fx.check(user, op, Some(expect), &[&f]);
            }
        }
    }
    // A shell script needs r as well as x: the interpreter reads it.
    for (mode, user, expect) in [
        (0o755, BOB, Some(Outcome::Exited(7))),
        (0o711, BOB, None),
        (0o744, BOB, Some(err(libc::EACCES))),
        (0o711, ALICE, None),
        (0o644, ROOT, Some(err(libc::EACCES))),
        (0o700, ROOT, Some(Outcome::Exited(7))),
    ] {
        let s = format!("s{mode:04o}_{}", user.uid);
        fx.setup(&[Node::File(&s, mode, ALICE.uid, STAFF, SCRIPT)]);
        fx.check(user, Op::Exec(&s), expect, &[&s]);
    }
    fx.finish();
}

/// Directory permissions: x to search (stat, open of an entry), r to list,
/// w+x to create, unlink, mkdir, rmdir and rename entries; access() on the
/// directory itself.
#[test]
fn directory_rwx_per_class() {
    let mut fx = Fixture::new();
    let modes = [
        0o000, 0o100, 0o200, 0o300, 0o400, 0o500, 0o600, 0o700, 0o010, 0o030, 0o040, 0o050, 0o070,
        0o001, 0o003, 0o004, 0o005, 0o007, 0o755, 0o077, 0o707,
    ];
    let users = [ROOT, ALICE, BOB, DAVE, NOBODY, BOB_AS_ALICE];
    let build = |fx: &Fixture, d: &str, mode: u32| {
        let t = [d.to_string(), format!("{d}/f"), format!("{d}/e")];
        fx.setup(&[
            Node::Dir(&t[0], 0o755, ALICE.uid, STAFF),
            Node::File(&t[1], 0o644, ALICE.uid, STAFF, TEXT),
            Node::Dir(&t[2], 0o755, ALICE.uid, STAFF),
        ]);
        // Apply the directory's mode last, so root's setup never depends on it.
        for (_, root) in fx.roots() {
            common::chmod(&root.join(d), mode);
        }
    };
    for mode in modes {
        let d = format!("d{mode:04o}");
        build(&fx, &d, mode);
        let (df, de) = (format!("{d}/f"), format!("{d}/e"));
        for (ui, user) in users.into_iter().enumerate() {
            let can = |want| may(user, mode, ALICE.uid, STAFF, want, true);
            let (r, w, x) = (can(4), can(2), can(1));
            let real = |want| may(user.real(), mode, ALICE.uid, STAFF, want, true);
            let after = [d.as_str(), df.as_str(), de.as_str()];
            let cases = [
                (Op::Stat(&df), ok_if(x, libc::EACCES)),
                (Op::Open(&df, libc::O_RDONLY), ok_if(x, libc::EACCES)),
                (Op::Chdir(&d), ok_if(x, libc::EACCES)),
                (Op::Exec(&d), err(libc::EACCES)),
                (
                    Op::ReadDir(&d),
                    if r { Outcome::Ok(2) } else { err(libc::EACCES) },
                ),
                (Op::Access(&d, libc::R_OK), ok_if(real(4), libc::EACCES)),
                (Op::Access(&d, libc::W_OK), ok_if(real(2), libc::EACCES)),
                (Op::Access(&d, libc::X_OK), ok_if(real(1), libc::EACCES)),
                (
                    Op::AccessEff(&d, libc::R_OK | libc::X_OK),
                    ok_if(r && x, libc::EACCES),
                ),
            ];
            for (op, expect) in cases {
                fx.check(user, op, Some(expect), &after);
            }
            // Mutations, each on a fresh copy of the directory.
            let wx = ok_if(w && x, libc::EACCES);
            for k in 0..5 {
                let m = format!("m{mode:04o}_{ui}_{k}");
                build(&fx, &m, mode);
                let (mf, me, mn, mg) = (
                    format!("{m}/f"),
                    format!("{m}/e"),
                    format!("{m}/n"),
                    format!("{m}/g"),
                );
                let op = match k {
                    0 => Op::Create(&mn, 0o644),
                    1 => Op::Unlink(&mf),
                    2 => Op::Mkdir(&mn, 0o755),
                    3 => Op::Rmdir(&me),
                    _ => Op::Rename(&mf, &mg),
                };
                fx.check(
                    user,
                    op,
                    Some(wx),
                    &[
                        m.as_str(),
                        mf.as_str(),
                        me.as_str(),
                        mn.as_str(),
                        mg.as_str(),
                    ],
                );
            }
        }
    }
    // r without x: the names can be listed, but not looked up.
    fx.setup(&[
        Node::Dir("rnox", 0o755, ALICE.uid, ALICE.gid),
        Node::File("rnox/a", 0o644, ALICE.uid, ALICE.gid, TEXT),
        Node::File("rnox/b", 0o644, ALICE.uid, ALICE.gid, TEXT),
        Node::Dir("rnox/c", 0o755, ALICE.uid, ALICE.gid),
    ]);
    for (_, root) in fx.roots() {
        common::chmod(&root.join("rnox"), 0o744);
    }
    let after = ["rnox", "rnox/a", "rnox/c"];
    fx.check(BOB, Op::ReadDir("rnox"), Some(Outcome::Ok(3)), &after);
    fx.check(BOB, Op::Stat("rnox/a"), Some(err(libc::EACCES)), &after);
    fx.check(BOB, Op::ReadDir("rnox/c"), Some(err(libc::EACCES)), &after);
    fx.check(BOB, Op::Stat("rnox/zz"), Some(err(libc::EACCES)), &after);
    fx.check(ALICE, Op::Stat("rnox/a"), Some(OK), &after);
    fx.finish();
}

/// chmod, chown, chgrp and utimensat by owners and non-owners.
#[test]
fn attribute_changes_need_ownership() {
    let mut fx = Fixture::new();
    let mut n = 0;
    let mut fresh = |fx: &Fixture, mode: u32, gid: u32| {
        n += 1;
        let f = format!("a{n}");
        fx.setup(&[Node::File(&f, mode, ALICE.uid, gid, TEXT)]);
        f
    };
    // chmod.
    let f = fresh(&fx, 0o666, STAFF);
    fx.check(BOB, Op::Chmod(&f, 0o600), Some(err(libc::EPERM)), &[&f]);
    fx.check(NOBODY, Op::Chmod(&f, 0o777), Some(err(libc::EPERM)), &[&f]);
    fx.check(ALICE, Op::Chmod(&f, 0o600), Some(OK), &[&f]);
    fx.check(BOB, Op::Chmod(&f, 0o600), Some(err(libc::EPERM)), &[&f]);
    fx.check(ROOT, Op::Chmod(&f, 0o640), Some(OK), &[&f]);
    let f = fresh(&fx, 0o000, STAFF);
    fx.check(ALICE, Op::Chmod(&f, 0o644), Some(OK), &[&f]);
    // chown to another uid: only root.
    let f = fresh(&fx, 0o644, STAFF);
    fx.check(
        ALICE,
        Op::Chown(&f, Some(1001), None),
        Some(err(libc::EPERM)),
        &[&f],
    );
    fx.check(
        BOB,
        Op::Chown(&f, Some(1001), None),
        Some(err(libc::EPERM)),
        &[&f],
    );
    fx.check(ALICE, Op::Chown(&f, Some(1000), None), Some(OK), &[&f]);
    fx.check(ALICE, Op::Chown(&f, None, None), Some(OK), &[&f]);
    fx.check(ROOT, Op::Chown(&f, Some(1001), Some(1001)), Some(OK), &[&f]);
    fx.check(
        ALICE,
        Op::Chown(&f, Some(1000), None),
        Some(err(libc::EPERM)),
        &[&f],
    );
    // chgrp: the owner, to a group she is in.
    let f = fresh(&fx, 0o644, ALICE.gid);
    fx.check(
        ALICE,
        Op::Chown(&f, None, Some(STAFF)),
        Some(err(libc::EPERM)),
        &[&f],
    );
    fx.check(
        BOB,
        Op::Chown(&f, None, Some(STAFF)),
        Some(err(libc::EPERM)),
        &[&f],
    );
    fx.check(
        ALICE_STAFF,
        Op::Chown(&f, None, Some(STAFF)),
        Some(OK),
        &[&f],
    );
    fx.check(
        ALICE_STAFF,
        Op::Chown(&f, None, Some(1001)),
        Some(err(libc::EPERM)),
        &[&f],
    );
    fx.check(ALICE, Op::Chown(&f, None, Some(ALICE.gid)), Some(OK), &[&f]);
    fx.check(
        ALICE_STAFF,
        Op::Chown(&f, Some(1000), Some(STAFF)),
        Some(OK),
        &[&f],
    );
    // utimensat: explicit times need ownership; "now" needs write access.
    let writable = fresh(&fx, 0o666, STAFF);
    let readonly = fresh(&fx, 0o644, STAFF);
    let ownerro = fresh(&fx, 0o444, STAFF);
    let w = writable.as_str();
    let r = readonly.as_str();
    let o = ownerro.as_str();
    let u = |p, t| Op::Utimens(p, t);
    let cases = [
        (BOB, u(w, Times::Explicit), Some(err(libc::EPERM))),
        (BOB, u(w, Times::Null), Some(OK)),
        (BOB, u(w, Times::BothNow), Some(OK)),
        (BOB, u(w, Times::NowOmit), Some(err(libc::EPERM))),
        (BOB, u(w, Times::BothOmit), Some(OK)),
        (NOBODY, u(w, Times::BothNow), Some(OK)),
        (BOB, u(r, Times::Null), Some(err(libc::EACCES))),
        (BOB, u(r, Times::BothNow), Some(err(libc::EACCES))),
        (BOB, u(r, Times::Explicit), Some(err(libc::EPERM))),
        (BOB, u(r, Times::NowOmit), Some(err(libc::EPERM))),
        (ALICE, u(r, Times::Explicit), Some(OK)),
        (ALICE, u(o, Times::Explicit), Some(OK)),
        (ALICE, u(o, Times::Null), Some(OK)),
        (ALICE, u(o, Times::NowOmit), Some(OK)),
        (ROOT, u(w, Times::Explicit), Some(OK)),
    ];
    for (user, op, expect) in cases {
        let (p, _) = op.paths();
        fx.check(user, op, expect, &[p]);
        // Reset the times so the next explicit check is visible.
        for (_, root) in fx.roots() {
            let c = cpath(&root.join(p));
            // SAFETY: valid C string; NULL times means now.
            assert_eq!(
                unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), std::ptr::null(), 0) },
                0
            );
        }
    }
    fx.finish();
}

/// Sticky directories (1777): only the file's owner, the directory's owner
/// or root may unlink or rename an entry, or replace it by rename.
#[test]
fn sticky_directory() {
    let mut fx = Fixture::new();
    let pr = sysctl("protected_regular");
    let mut n = 0;
    let mut fresh = |fx: &Fixture| {
        n += 1;
        let s = format!("s{n}");
        fx.setup(&[
            Node::Dir(&s, 0o1777, CAROL.uid, CAROL.gid),
            Node::File(&format!("{s}/b"), 0o644, BOB.uid, BOB.gid, TEXT),
            Node::File(&format!("{s}/d"), 0o666, DAVE.uid, DAVE.gid, TEXT),
            Node::Dir(&format!("{s}/dd"), 0o777, DAVE.uid, DAVE.gid),
        ]);
        s
    };
    // (user, entry, second entry, operation, expected result); operations:
    // u unlink, r rename, d rmdir, c create, w write, o open(O_CREAT),
    // x RENAME_EXCHANGE, n RENAME_NOREPLACE, l link.
    type Case<'a> = (User, &'a str, Option<&'a str>, char, Option<Outcome>);
    let cases: Vec<Case<'_>> = vec![
        (BOB, "d", None, 'u', Some(err(libc::EPERM))),
        (BOB, "b", None, 'u', Some(OK)),
        (NOBODY, "b", None, 'u', Some(err(libc::EPERM))),
        (CAROL, "d", None, 'u', Some(OK)),
        (ROOT, "d", None, 'u', Some(OK)),
        (DAVE, "d", None, 'u', Some(OK)),
        (BOB, "d", Some("x"), 'r', Some(err(libc::EPERM))),
        (BOB, "b", Some("x"), 'r', Some(OK)),
        (BOB, "b", Some("d"), 'r', Some(err(libc::EPERM))),
        (DAVE, "b", Some("d"), 'r', Some(err(libc::EPERM))),
        (CAROL, "b", Some("d"), 'r', Some(OK)),
        (DAVE, "d", Some("x"), 'r', Some(OK)),
        (BOB, "dd", None, 'd', Some(err(libc::EPERM))),
        (DAVE, "dd", None, 'd', Some(OK)),
        (CAROL, "dd", None, 'd', Some(OK)),
        (BOB, "dd", Some("y"), 'r', Some(err(libc::EPERM))),
        (BOB, "new", None, 'c', Some(OK)),
        (BOB, "d", None, 'w', Some(OK)),
        (BOB, "d", None, 'o', Some(ok_if(pr == 0, libc::EACCES))),
        (BOB, "b", None, 'o', Some(OK)),
        (BOB, "d", None, 'l', None),
        (BOB, "b", Some("d"), 'x', Some(err(libc::EPERM))),
        (DAVE, "b", Some("d"), 'x', Some(err(libc::EPERM))),
        (CAROL, "b", Some("d"), 'x', Some(OK)),
        (ROOT, "dd", Some("b"), 'x', Some(OK)),
        (BOB, "b", Some("d"), 'n', Some(err(libc::EEXIST))),
        (BOB, "b", Some("z"), 'n', Some(OK)),
        (BOB, "d", Some("z"), 'n', Some(err(libc::EPERM))),
    ];
    for (user, a, b, kind, expect) in cases {
        let s = fresh(&fx);
        let pa = format!("{s}/{a}");
        let pb = format!("{s}/{}", b.unwrap_or("lnk"));
        let op = match kind {
            'u' => Op::Unlink(&pa),
            'r' => Op::Rename(&pa, &pb),
            'd' => Op::Rmdir(&pa),
            'c' => Op::Create(&pa, 0o644),
            'w' => Op::Write(&pa),
            'o' => Op::Open(&pa, libc::O_WRONLY | libc::O_CREAT),
            'x' => Op::Rename2(&pa, &pb, libc::RENAME_EXCHANGE),
            'n' => Op::Rename2(&pa, &pb, libc::RENAME_NOREPLACE),
            _ => Op::Link(&pa, &pb),
        };
        let after = [
            s.clone(),
            format!("{s}/b"),
            format!("{s}/d"),
            format!("{s}/dd"),
            format!("{s}/x"),
            format!("{s}/y"),
            format!("{s}/new"),
            format!("{s}/lnk"),
            format!("{s}/z"),
        ];
        let after: Vec<&str> = after.iter().map(String::as_str).collect();
        fx.check(user, op, expect, &after);
    }
    // fs.protected_symlinks: in a sticky world-writable directory, a
    // symlink is followed only by its owner, or if the directory's owner
    // owns it. This relies on the symlink's recorded owner.
    let ps = sysctl("protected_symlinks") != 0;
    eprintln!("fs.protected_symlinks = {}", u32::from(ps));
    let s = fresh(&fx);
    let ln = format!("{s}/ln");
    let cl = format!("{s}/cl");
    fx.check(BOB, Op::Symlink("b", &ln), Some(OK), &[&ln]);
    fx.check(CAROL, Op::Symlink("d", &cl), Some(OK), &[&cl]);
    for (user, path, allowed) in [
        (BOB, &ln, true),
        (ALICE, &ln, false),
        (CAROL, &ln, false),
        (ROOT, &ln, false),
        (ALICE, &cl, true),
        (DAVE, &cl, true),
    ] {
        let expect = ok_if(!ps || allowed, libc::EACCES);
        fx.check(user, Op::Open(path, libc::O_RDONLY), Some(expect), &[path]);
    }
    fx.check(ALICE, Op::Unlink(&ln), Some(err(libc::EPERM)), &[&ln]);
    fx.check(BOB, Op::Unlink(&cl), Some(err(libc::EPERM)), &[&cl]);
    fx.check(BOB, Op::Unlink(&ln), Some(OK), &[&ln]);
    fx.finish();
}

/// Setgid directories: new entries take the directory's group, new
/// subdirectories inherit S_ISGID, and a non-member creating a group-
/// executable setgid file there loses S_ISGID.
#[test]
fn setgid_directory() {
    let mut fx = Fixture::new();
    fx.setup(&[
        Node::Dir("g", 0o2775, ALICE.uid, STAFF),
        Node::Dir("g2", 0o2777, ALICE.uid, STAFF),
        Node::Dir("p", 0o777, ALICE.uid, STAFF),
    ]);
    let cases = [
        (BOB, Op::Create("g/f", 0o644)),
        (BOB, Op::Mkdir("g/sub", 0o755)),
        (BOB, Op::Create("g/sub/f", 0o644)),
        (BOB, Op::Mkdir("g/sub/deeper", 0o700)),
        (DAVE, Op::Create("g/dave", 0o664)),
        (BOB, Op::Create("g/s", 0o2755)),
        (BOB, Op::Create("g/s2", 0o6755)),
        (NOBODY, Op::Create("g2/f", 0o644)),
        (NOBODY, Op::Create("g2/h", 0o2755)),
        (NOBODY, Op::Create("g2/h2", 0o2745)),
        (NOBODY, Op::Create("g2/h3", 0o6777)),
        (NOBODY, Op::Mkdir("g2/d", 0o777)),
        (NOBODY, Op::Mkdir("g2/d2", 0o2755)),
        (NOBODY, Op::Create("g2/d/f", 0o2755)),
        (ROOT, Op::Create("g/root", 0o2755)),
        (ROOT, Op::Mkdir("g/rootdir", 0o755)),
        (BOB, Op::Create("p/f", 0o644)),
        (BOB, Op::Mkdir("p/d", 0o755)),
        (NOBODY, Op::Create("p/n", 0o2755)),
        (BOB, Op::Create("p/s", 0o2755)),
        (BOB, Op::Symlink("f", "g/sym")),
        (NOBODY, Op::Symlink("f", "g2/sym")),
        (NOBODY, Op::Mknod("g2/fifo", libc::S_IFIFO | 0o2666, 0)),
        (BOB, Op::Mknod("g/reg", libc::S_IFREG | 0o640, 0)),
        (
            ROOT,
            Op::Mknod("g/chr", libc::S_IFCHR | 0o600, libc::makedev(1, 3)),
        ),
        // Moving a file in does not change its group.
        (BOB, Op::Rename("p/f", "g/moved")),
        (NOBODY, Op::Link("p/n", "g2/linked")),
    ];
    for (user, op) in cases {
        let (p, q) = op.paths();
        fx.check(user, op, Some(OK), &[p, q.unwrap_or(p)]);
    }
    // Device nodes need CAP_MKNOD; FIFOs do not.
    let chr = libc::S_IFCHR | 0o600;
    let dev = libc::makedev(1, 3);
    fx.check(
        BOB,
        Op::Mknod("g/chr2", chr, dev),
        Some(err(libc::EPERM)),
        &["g/chr2"],
    );
    fx.check(
        BOB,
        Op::Mknod("g/fifo", libc::S_IFIFO | 0o644, 0),
        Some(OK),
        &["g/fifo"],
    );
    // A subdirectory made inside a setgid dir, then moved out: the bit
    // stays (it is a property of the inode).
    fx.check(
        BOB,
        Op::Rename("g/sub", "p/sub"),
        Some(OK),
        &["p/sub", "p/sub/f"],
    );
    fx.check(BOB, Op::Create("p/sub/g", 0o644), Some(OK), &["p/sub/g"]);
    for p in ["g", "g2", "p", "g/sub/deeper"] {
        fx.same_meta(p);
    }
    fx.finish();
}

/// Set-id bits cleared by writes, truncation and chown; S_ISGID dropped
/// by chmod from an owner who is not in the file's group.
#[test]
fn setid_bits_cleared() {
    let mut fx = Fixture::new();
    let mut n = 0;
    let mut fresh = |fx: &Fixture, mode: u32, gid: u32, dir: bool| {
        n += 1;
        let f = format!("x{n}");
        if dir {
            fx.setup(&[Node::Dir(&f, mode, ALICE.uid, gid)]);
        } else {
            fx.setup(&[Node::File(&f, mode, ALICE.uid, gid, TEXT)]);
        }
        f
    };
    // Writes by users without CAP_FSETID. S_ISGID without group execute is
    // cleared too when the writer is not in the file's group.
    for (user, mode) in [
        (NOBODY, 0o2666),
        (ALICE, 0o2666),
        (NOBODY, 0o6766),
        (DAVE, 0o2666),
        (BOB, 0o6777),
        (BOB, 0o6767),
        (BOB, 0o4766),
        (BOB, 0o2676),
        (BOB, 0o2666),
        (ALICE, 0o6777),
        (ALICE, 0o4700),
        (NOBODY, 0o6777),
        (ROOT, 0o6777),
    ] {
        let f = fresh(&fx, mode, STAFF, false);
        fx.check(user, Op::Write(&f), Some(OK), &[&f]);
        let f = fresh(&fx, mode, STAFF, false);
        fx.check(user, Op::Truncate(&f, 2), Some(OK), &[&f]);
        let f = fresh(&fx, mode, STAFF, false);
        fx.check(
            user,
            Op::Open(&f, libc::O_WRONLY | libc::O_TRUNC),
            Some(OK),
            &[&f],
        );
    }
    // A file written before it became set-id: the kernel may have stopped
    // asking about privileges to remove for it (S_NOSEC), the next write
    // by a user without CAP_FSETID still clears the bits.
    let f = fresh(&fx, 0o666, STAFF, false);
    fx.check(BOB, Op::Write(&f), Some(OK), &[&f]);
    fx.check(ROOT, Op::Chmod(&f, 0o6777), Some(OK), &[&f]);
    fx.check(BOB, Op::Write(&f), Some(OK), &[&f]);
    fx.check(ROOT, Op::Chmod(&f, 0o6777), Some(OK), &[&f]);
    fx.check(ROOT, Op::Write(&f), Some(OK), &[&f]);
    fx.check(NOBODY, Op::Truncate(&f, 1), Some(OK), &[&f]);
    // So does copy_file_range, which FUSE serves as a request of its own.
    for (user, mode) in [
        (BOB, 0o6777),
        (NOBODY, 0o4666),
        (ALICE, 0o6766),
        (ROOT, 0o6777),
    ] {
        let f = fresh(&fx, mode, STAFF, false);
        fx.check(user, Op::CopyRange(&f), Some(OK), &[&f]);
    }
    // chown and chgrp clear set-id bits of files, even by root.
    for (user, mode, uid, gid, file_gid) in [
        (ROOT, 0o4755, Some(1001), None, STAFF),
        (ROOT, 0o2755, None, Some(1001), STAFF),
        (ROOT, 0o2745, Some(1001), None, STAFF),
        (ROOT, 0o6755, None, None, STAFF),
        (ROOT, 0o6755, Some(1000), Some(STAFF), STAFF),
        (ALICE_STAFF, 0o6755, None, Some(STAFF), ALICE.gid),
        (ALICE, 0o4755, Some(1000), Some(ALICE.gid), ALICE.gid),
        // S_ISGID without group execute, owner not in the group.
        (ALICE, 0o2644, Some(1000), Some(ALICE.gid), STAFF),
        (ALICE, 0o2644, None, None, STAFF),
        (ALICE_STAFF, 0o2644, None, None, STAFF),
    ] {
        let f = fresh(&fx, mode, file_gid, false);
        fx.check(user, Op::Chown(&f, uid, gid), Some(OK), &[&f]);
    }
    // chown(-1, -1) by a non-owner is a no-op, unless it has set-id bits to
    // clear: then it is a mode change the caller may not make.
    for (mode, expect) in [
        (0o0666, OK),
        (0o4666, err(libc::EPERM)),
        (0o2676, err(libc::EPERM)),
        (0o2666, err(libc::EPERM)),
    ] {
        let f = fresh(&fx, mode, STAFF, false);
        fx.check(NOBODY, Op::Chown(&f, None, None), Some(expect), &[&f]);
    }
    let f = fresh(&fx, 0o2666, STAFF, false);
    fx.check(BOB, Op::Chown(&f, None, None), Some(OK), &[&f]);
    // ... but not of directories.
    let d = fresh(&fx, 0o6755, STAFF, true);
    fx.check(ROOT, Op::Chown(&d, Some(1001), None), Some(OK), &[&d]);
    // chmod setting S_ISGID: kept only if the caller is in the group (or
    // has CAP_FSETID); S_ISUID by the owner is kept.
    for (user, mode, dir) in [
        (ALICE, 0o2755, false),
        (ALICE_STAFF, 0o2755, false),
        (ALICE, 0o2755, true),
        (ALICE_STAFF, 0o2755, true),
        (ALICE, 0o6711, false),
        (ALICE, 0o4755, false),
        (ROOT, 0o2755, false),
    ] {
        let f = fresh(&fx, 0o644 | if dir { 0o111 } else { 0 }, STAFF, dir);
        fx.check(user, Op::Chmod(&f, mode), Some(OK), &[&f]);
    }
    let f = fresh(&fx, 0o666, STAFF, false);
    fx.check(BOB, Op::Chmod(&f, 0o2666), Some(err(libc::EPERM)), &[&f]);

    // File capabilities (security.capability) are file privileges too:
    // writes, truncation and chown remove them, whoever does it.
    // vfs_cap_data v2: magic_etc, then permitted/inheritable pairs; here
    // CAP_NET_BIND_SERVICE permitted and effective.
    let mut fcap = Vec::new();
    for word in [0x0200_0001u32, 1 << 10, 0, 0, 0] {
        fcap.extend_from_slice(&word.to_le_bytes());
    }
    let cases = [
        (BOB, Op::Write("")),
        (ROOT, Op::Write("")),
        (ALICE, Op::Truncate("", 1)),
        (NOBODY, Op::Open("", libc::O_WRONLY | libc::O_TRUNC)),
        (ROOT, Op::Chown("", Some(1001), None)),
        (ALICE_STAFF, Op::Chown("", None, Some(STAFF))),
        (ALICE, Op::Chmod("", 0o600)),
        (BOB, Op::Open("", libc::O_RDWR)),
    ];
    for (user, op) in cases {
        let f = fresh(&fx, 0o666, ALICE.gid, false);
        fx.setup(&[Node::Xattr(&f, "security.capability", &fcap)]);
        let op = match op {
            Op::Write(_) => Op::Write(&f),
            Op::Truncate(_, l) => Op::Truncate(&f, l),
            Op::Open(_, fl) => Op::Open(&f, fl),
            Op::Chown(_, u, g) => Op::Chown(&f, u, g),
            Op::Chmod(_, m) => Op::Chmod(&f, m),
            _ => unreachable!(),
        };
        fx.check(user, op, Some(OK), &[&f]);
    }
    // Setting it needs CAP_SETFCAP.
    let f = fresh(&fx, 0o666, ALICE.gid, false);
    fx.check(
        ALICE,
        Op::SetXattr(&f, "security.capability", &fcap),
        Some(err(libc::EPERM)),
        &[&f],
    );
    fx.check(
        ROOT,
        Op::SetXattr(&f, "security.capability", &fcap),
        Some(OK),
        &[&f],
    );
    fx.check(BOB, Op::Write(&f), Some(OK), &[&f]);
    fx.finish();
}

/// fallocate and hole punching remove set-id bits and file capabilities as
/// writes do (xfstests generic/683, 684): the kernel's FUSE layer leaves
/// that to the filesystem for fallocate, so triefs applies tmpfs's rule.
#[test]
fn fallocate_removes_setid_bits() {
    let mut fx = Fixture::new();
    let mut n = 0;
    let mut fresh = |fx: &Fixture, mode: u32| {
        n += 1;
        let f = format!("x{n}");
        fx.setup(&[Node::File(&f, mode, ALICE.uid, STAFF, TEXT)]);
        f
    };
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    for verb in [0, libc::FALLOC_FL_KEEP_SIZE, punch] {
        // The modes of generic/683 and 684, by callers outside the group,
        // in it, owning the file, and root.
        for mode in [
            0o6666, 0o6676, 0o6766, 0o6777, 0o2666, 0o2676, 0o2766, 0o2777, 0o4666, 0o0666,
        ] {
            for user in [NOBODY, BOB, ALICE, ROOT] {
                let f = fresh(&fx, mode);
                fx.check(user, Op::Fallocate(&f, verb), Some(OK), &[&f]);
            }
        }
    }
    let mut fcap = Vec::new();
    for word in [0x0200_0001u32, 1 << 10, 0, 0, 0] {
        fcap.extend_from_slice(&word.to_le_bytes());
    }
    for user in [ROOT, BOB] {
        let f = fresh(&fx, 0o666);
        fx.setup(&[Node::Xattr(&f, "security.capability", &fcap)]);
        fx.check(user, Op::Fallocate(&f, punch), Some(OK), &[&f]);
    }
    fx.finish();
}

/// truncate without write permission, rename across directories without
/// write permission, hard links to other users' files, user.* xattrs.
#[test]
fn misc_denials() {
    let mut fx = Fixture::new();
    // truncate.
    fx.setup(&[
        Node::File("t644", 0o644, ALICE.uid, STAFF, TEXT),
        Node::File("t666", 0o666, ALICE.uid, STAFF, TEXT),
        Node::File("t464", 0o464, ALICE.uid, STAFF, TEXT),
    ]);
    fx.check(
        BOB,
        Op::Truncate("t644", 0),
        Some(err(libc::EACCES)),
        &["t644"],
    );
    fx.check(
        NOBODY,
        Op::Truncate("t644", 100),
        Some(err(libc::EACCES)),
        &["t644"],
    );
    fx.check(
        ALICE,
        Op::Truncate("t464", 1),
        Some(err(libc::EACCES)),
        &["t464"],
    );
    fx.check(BOB, Op::Truncate("t464", 1), Some(OK), &["t464"]);
    fx.check(NOBODY, Op::Truncate("t666", 3), Some(OK), &["t666"]);
    fx.check(
        BOB,
        Op::Open("t644", libc::O_WRONLY | libc::O_TRUNC),
        Some(err(libc::EACCES)),
        &["t644"],
    );

    // rename between directories.
    fx.setup(&[
        Node::Dir("bobs", 0o777, BOB.uid, BOB.gid),
        Node::File("bobs/f", 0o644, BOB.uid, BOB.gid, TEXT),
        Node::File("bobs/g", 0o644, BOB.uid, BOB.gid, TEXT),
        Node::Dir("bobs/alicedir", 0o755, ALICE.uid, ALICE.gid),
        Node::Dir("bobs2", 0o777, BOB.uid, BOB.gid),
        Node::Dir("alices", 0o755, ALICE.uid, ALICE.gid),
        Node::File("alices/f", 0o666, BOB.uid, BOB.gid, TEXT),
        Node::Dir("alices/open", 0o777, ALICE.uid, ALICE.gid),
    ]);
    let after = [
        "bobs/f",
        "bobs/g",
        "alices/f",
        "alices/x",
        "bobs2/x",
        "bobs/alicedir",
        "bobs2/alicedir",
        "bobs/ad2",
        "alices/open/f",
    ];
    fx.check(
        BOB,
        Op::Rename("bobs/f", "alices/x"),
        Some(err(libc::EACCES)),
        &after,
    );
    fx.check(
        BOB,
        Op::Rename("bobs/f", "alices/f"),
        Some(err(libc::EACCES)),
        &after,
    );
    fx.check(
        BOB,
        Op::Rename("alices/f", "bobs2/x"),
        Some(err(libc::EACCES)),
        &after,
    );
    fx.check(BOB, Op::Rename("bobs/f", "alices/open/f"), Some(OK), &after);
    // Moving a directory to a new parent needs write permission on it (its
    // ".." changes); renaming it in place does not.
    fx.check(
        BOB,
        Op::Rename("bobs/alicedir", "bobs2/alicedir"),
        Some(err(libc::EACCES)),
        &after,
    );
    fx.check(
        BOB,
        Op::Rename("bobs/alicedir", "bobs/ad2"),
        Some(OK),
        &after,
    );
    fx.check(ALICE, Op::Rename("bobs/g", "bobs2/x"), Some(OK), &after);
    // Existence is reported before the missing write permission.
    let after = ["alices", "alices/f", "alices/new"];
    let wr = libc::O_WRONLY;
    let cases = [
        (Op::Open("alices/f", wr | libc::O_CREAT), OK),
        (
            Op::Open("alices/f", wr | libc::O_CREAT | libc::O_EXCL),
            err(libc::EEXIST),
        ),
        (
            Op::Open("alices/new", wr | libc::O_CREAT),
            err(libc::EACCES),
        ),
        (Op::Open("alices/new", libc::O_RDONLY), err(libc::ENOENT)),
        (Op::Mkdir("alices/f", 0o755), err(libc::EEXIST)),
        (Op::Mkdir("alices/new", 0o755), err(libc::EACCES)),
        (Op::Unlink("alices/new"), err(libc::ENOENT)),
        (Op::Unlink("alices/f"), err(libc::EACCES)),
        (Op::Symlink("x", "alices/f"), err(libc::EEXIST)),
        (Op::Symlink("x", "alices/new"), err(libc::EACCES)),
        (Op::Link("bobs2/x", "alices/f"), err(libc::EEXIST)),
        (
            Op::Rename2("bobs2/x", "alices/f", libc::RENAME_NOREPLACE),
            err(libc::EEXIST),
        ),
        (
            Op::Rename2("bobs2/x", "alices/new", libc::RENAME_NOREPLACE),
            err(libc::EACCES),
        ),
        (
            Op::Rename2("bobs2/x", "alices/f", libc::RENAME_EXCHANGE),
            err(libc::EACCES),
        ),
        (
            Op::Mknod("alices/new", libc::S_IFIFO | 0o644, 0),
            err(libc::EACCES),
        ),
    ];
    for (op, expect) in cases {
        fx.check(BOB, op, Some(expect), &after);
    }
    // O_NOATIME needs ownership.
    fx.check(
        BOB,
        Op::Open("t666", libc::O_RDONLY | libc::O_NOATIME),
        Some(err(libc::EPERM)),
        &["t666"],
    );
    fx.check(
        ALICE,
        Op::Open("t666", libc::O_RDONLY | libc::O_NOATIME),
        Some(OK),
        &["t666"],
    );

    // Hard links (fs.protected_hardlinks restricts linking others' files).
    let ph = sysctl("protected_hardlinks") != 0;
    eprintln!("fs.protected_hardlinks = {}", u32::from(ph));
    fx.setup(&[
        Node::Dir("ln", 0o777, ROOT.uid, ROOT.gid),
        Node::Dir("ln/ro", 0o755, ROOT.uid, ROOT.gid),
        Node::File("ln/a644", 0o644, ALICE.uid, STAFF, TEXT),
        Node::File("ln/a666", 0o666, ALICE.uid, STAFF, TEXT),
        Node::File("ln/a660", 0o660, ALICE.uid, STAFF, TEXT),
        Node::File("ln/a4666", 0o4666, ALICE.uid, STAFF, TEXT),
        Node::File("ln/a2676", 0o2676, ALICE.uid, STAFF, TEXT),
        Node::File("ln/a2666", 0o2666, ALICE.uid, STAFF, TEXT),
        Node::File("ln/bob", 0o600, BOB.uid, BOB.gid, TEXT),
    ]);
    let protected = |allowed: bool| ok_if(!ph || allowed, libc::EPERM);
    let links = [
        (BOB, "ln/a644", "ln/l1", protected(false)),
        (BOB, "ln/a666", "ln/l2", OK),
        (BOB, "ln/a660", "ln/l3", OK),
        (NOBODY, "ln/a660", "ln/l4", protected(false)),
        (BOB, "ln/a4666", "ln/l5", protected(false)),
        (BOB, "ln/a2676", "ln/l6", protected(false)),
        (BOB, "ln/a2666", "ln/l7", OK),
        (BOB, "ln/bob", "ln/l8", OK),
        (ALICE, "ln/a644", "ln/l9", OK),
        (ROOT, "ln/bob", "ln/l10", OK),
        (BOB, "ln/a666", "ln/ro/l11", err(libc::EACCES)),
        (BOB, "ln/bob", "ln/ro/l12", err(libc::EACCES)),
    ];
    for (user, from, to, expect) in links {
        fx.check(user, Op::Link(from, to), Some(expect), &[from, to]);
    }

    // user.* xattrs: setting and removing need write permission, reading
    // needs read permission; on a sticky directory only the owner may set.
    fx.setup(&[
        Node::File("xa644", 0o644, ALICE.uid, STAFF, TEXT),
        Node::File("xa666", 0o666, ALICE.uid, STAFF, TEXT),
        Node::File("xa444", 0o444, ALICE.uid, STAFF, TEXT),
        Node::File("xa600", 0o600, ALICE.uid, STAFF, TEXT),
        Node::Dir("xsticky", 0o1777, ALICE.uid, STAFF),
        Node::Dir("xdir", 0o777, ALICE.uid, STAFF),
        Node::Dir("xdir755", 0o755, ALICE.uid, STAFF),
        Node::Xattr("xa644", "user.t", b"root"),
        Node::Xattr("xa666", "user.t", b"root"),
        Node::Xattr("xa600", "user.t", b"root"),
    ]);
    let xcases = [
        (
            BOB,
            Op::SetXattr("xa644", "user.t", b"v"),
            err(libc::EACCES),
        ),
        (BOB, Op::RemoveXattr("xa644", "user.t"), err(libc::EACCES)),
        (BOB, Op::GetXattr("xa644", "user.t"), Outcome::Ok(4)),
        (BOB, Op::GetXattr("xa600", "user.t"), err(libc::EACCES)),
        (ALICE, Op::GetXattr("xa600", "user.t"), Outcome::Ok(4)),
        (NOBODY, Op::SetXattr("xa666", "user.t", b"v"), OK),
        (NOBODY, Op::GetXattr("xa666", "user.t"), Outcome::Ok(1)),
        (BOB, Op::RemoveXattr("xa666", "user.t"), OK),
        (BOB, Op::RemoveXattr("xa666", "user.t"), err(libc::ENODATA)),
        (
            ALICE,
            Op::SetXattr("xa444", "user.t", b"v"),
            err(libc::EACCES),
        ),
        (
            BOB,
            Op::SetXattr("xsticky", "user.t", b"v"),
            err(libc::EPERM),
        ),
        (ALICE, Op::SetXattr("xsticky", "user.t", b"v"), OK),
        (BOB, Op::SetXattr("xdir", "user.t", b"v"), OK),
        (
            BOB,
            Op::SetXattr("xdir755", "user.t", b"v"),
            err(libc::EACCES),
        ),
        (
            BOB,
            Op::SetXattr("xa666", "trusted.t", b"v"),
            err(libc::EPERM),
        ),
        (BOB, Op::GetXattr("xa644", "trusted.t"), err(libc::ENODATA)),
        (ROOT, Op::SetXattr("xa444", "user.t", b"v"), OK),
    ];
    for (user, op, expect) in xcases {
        let (p, _) = op.paths();
        fx.check(user, op, Some(expect), &[p]);
    }
    fx.finish();
}

/// Random sequences of operations by random users on a small tree, from
/// random starting modes and owners; only tmpfs decides what is right.
/// TRIEFS_PERMS_SEED (a number) picks another sequence of cases,
/// TRIEFS_PERMS_CASES their count (default 160).
#[test]
fn random_sequences() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
    use std::cell::{Cell, RefCell};

    let fx = Fixture::new();
    let fx = RefCell::new(fx);
    const USERS: [User; 7] = [ROOT, ALICE, ALICE_STAFF, BOB, DAVE, NOBODY, BOB_AS_ALICE];
    const IDS: [Option<u32>; 5] = [None, Some(0), Some(1000), Some(1001), Some(STAFF)];
    /// Paths under the case directory ("" is the directory itself).
    const PATHS: [&str; 8] = ["", "a", "b", "a/x", "a/y", "b/x", "c", "b/c"];
    /// The initial tree: index into PATHS, is it a directory.
    const TREE: [(usize, bool); 6] = [
        (0, true),
        (1, true),
        (2, true),
        (3, false),
        (4, false),
        (5, false),
    ];
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let seed = env("TRIEFS_PERMS_SEED", 1);
    let cases = env("TRIEFS_PERMS_CASES", 160) as u32;
    eprintln!("random_sequences: TRIEFS_PERMS_SEED={seed} TRIEFS_PERMS_CASES={cases}");
    let id = || 0..IDS.len();
    let step = (
        0..USERS.len(),
        0..21u8,
        0..PATHS.len(),
        0..PATHS.len(),
        0..0o10000u32,
        id(),
        id(),
    );
    let start = (
        prop::collection::vec((0..0o10000u32, id(), id()), TREE.len()),
        prop::collection::vec(step, 1..32),
    );
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_time: 15_000,
        ..Config::default()
    };
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let counter = Cell::new(0);
    let result = runner.run(&start, |(init, steps)| {
        let mut fx = fx.borrow_mut();
        counter.set(counter.get() + 1);
        let d = format!("r{}", counter.get());
        let paths: Vec<String> = PATHS
            .iter()
            .map(|p| {
                if p.is_empty() {
                    d.clone()
                } else {
                    format!("{d}/{p}")
                }
            })
            .collect();
        let own = |k: usize, fallback: u32| IDS[k].unwrap_or(fallback);
        let mut transcript = vec![format!("case {d}:")];
        for (&(idx, dir), &(mode, u, g)) in TREE.iter().zip(&init) {
            // The case directory stays searchable so every path is reachable
            // for someone; the others get any mode.
            let mode = if idx == 0 { mode | 0o711 } else { mode };
            let (uid, gid) = (own(u, 1000), own(g, STAFF));
            let kind = if dir { "dir " } else { "file" };
            transcript.push(format!(
                "  setup {kind} {:?} 0{mode:o} {uid}:{gid}",
                paths[idx]
            ));
            if dir {
                fx.setup(&[Node::Dir(&paths[idx], mode, uid, gid)]);
            } else {
                fx.setup(&[Node::File(&paths[idx], mode, uid, gid, TEXT)]);
            }
        }
        let before = fx.failures.len();
        fx.diverged = false;
        let all: Vec<&str> = paths.iter().map(String::as_str).collect();
        for &(u, kind, a, b, mode, cu, cg) in &steps {
            let (pa, pb) = (paths[a].as_str(), paths[b].as_str());
            let op = match kind {
                0 => Op::Chmod(pa, mode),
                1 => Op::Chown(pa, IDS[cu], IDS[cg]),
                2 => Op::Write(pa),
                3 => Op::Truncate(pa, i64::from(mode % 3)),
                4 => Op::Open(pa, libc::O_RDONLY),
                5 => Op::Open(pa, libc::O_RDWR | libc::O_TRUNC),
                6 => Op::Create(pa, mode),
                7 => Op::Mkdir(pa, mode),
                8 => Op::Unlink(pa),
                9 => Op::Rmdir(pa),
                10 => Op::Rename(pa, pb),
                11 => Op::Link(pa, pb),
                12 => Op::Utimens(
                    pa,
                    [Times::Null, Times::Explicit, Times::NowOmit][mode as usize % 3],
                ),
                13 => Op::SetXattr(pa, "user.t", b"v"),
                14 => Op::Access(pa, (mode & 7) as i32),
                15 => Op::ReadDir(pa),
                16 => Op::Stat(pa),
                17 => Op::Mknod(pa, libc::S_IFIFO | (mode & 0o7777), 0),
                18 => Op::Symlink("x", pa),
                19 => Op::Rename2(pa, pb, libc::RENAME_EXCHANGE),
                _ => Op::Open(pa, libc::O_WRONLY | libc::O_CREAT),
            };
            transcript.push(format!("  {} {op:?}", USERS[u].name));
            let n = fx.failures.len();
            fx.check(USERS[u], op, None, &all);
            if fx.failures.len() > n || fx.diverged {
                // Later steps would only report consequences of this one.
                break;
            }
        }
        if fx.failures.len() > before {
            let new = fx.failures.split_off(before);
            return Err(TestCaseError::fail(format!(
                "{}\nMISMATCH at the last step:\n{}",
                transcript.join("\n"),
                new.join("\n")
            )));
        }
        Ok(())
    });
    let fx = fx.into_inner();
    if let Err(e) = result {
        panic!("{e}");
    }
    fx.finish();
}
