//! Differential POSIX tests: the same operations, made with raw libc calls,
//! on a triefs mount and on a tmpfs oracle, compared step by step (return
//! value or errno, then the metadata, contents and listings of every path
//! the operation touched). Where tmpfs and triefs disagree, tmpfs is right.
//!
//! `random_differential` runs a seeded random sequence (TRIEFS_SEED to
//! replay a seed, TRIEFS_RANDOM_OPS for its length, default 5000) and on a
//! mismatch shrinks it to a minimal reproducer by delta debugging.
// Mount tests drive Linux: tmpfs as the oracle, Linux syscalls and tools.
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Errno, Rng, Tmpfs, TriefsMount, errno};

// ---------------------------------------------------------------------------
// Values with readable Debug output (they end up in failure messages).
// ---------------------------------------------------------------------------

/// A byte string (path, name, file contents, xattr value).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
struct B(Vec<u8>);

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl fmt::Debug for B {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() <= 80 {
            write!(f, "\"{}\"", self.0.escape_ascii())
        } else {
            write!(
                f,
                "<{} bytes, fnv {:016x}, \"{}\"...>",
                self.0.len(),
                fnv(&self.0),
                self.0[..40].escape_ascii()
            )
        }
    }
}

fn b(s: impl AsRef<[u8]>) -> B {
    B(s.as_ref().to_vec())
}

/// Open flags, printed symbolically.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Fl(i32);

impl fmt::Debug for Fl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&common::open_flags(self.0))
    }
}

/// One timestamp argument of utimensat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum T {
    Set(i64, i64),
    Now,
    Omit,
}

/// The outcome of one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Res {
    Ok(i64),
    Err(Errno),
    Data(B),
    Names(Vec<B>),
    /// atime sec, nsec, mtime sec, nsec.
    Times([i64; 4]),
}

const OK: Res = Res::Ok(0);

fn err(e: i32) -> Res {
    Res::Err(Errno(e))
}

// ---------------------------------------------------------------------------
// Operations.
// ---------------------------------------------------------------------------

/// One filesystem operation; paths are relative to the side's work dir.
/// Operations that need a descriptor open it, act and close it.
#[derive(Clone, Debug)]
enum Op {
    Mkdir(B, u32),
    Rmdir(B),
    /// open(path, flags, mode); returns the descriptor's st_mode.
    Open(B, Fl, u32),
    Unlink(B),
    /// renameat2(old, new, flags).
    Rename(B, B, u32),
    Link(B, B),
    /// symlink(target, linkpath).
    Symlink(B, B),
    /// readlink(path, bufsize).
    Readlink(B, usize),
    Truncate(B, i64),
    /// fchmodat(path, mode, flags).
    Chmod(B, u32, i32),
    /// fchownat(path, uid, gid, flags).
    Chown(B, u32, u32, i32),
    /// utimensat(path, [atime, mtime], flags); returns the resulting atime
    /// and mtime unless one of them is UTIME_NOW.
    Utimens(B, T, T, i32),
    /// lstat's atime and mtime.
    Times(B),
    Mknod(B, u32, u64),
    /// lsetxattr(path, name, value, flags).
    SetXattr(B, B, B, i32),
    /// lgetxattr(path, name, bufsize): size query when bufsize is 0.
    GetXattr(B, B, usize),
    /// llistxattr(path, bufsize): sorted names, size query when 0.
    ListXattr(B, usize),
    RemoveXattr(B, B),
    /// pwrite(data, offset) on an O_WRONLY descriptor.
    Write(B, i64, B),
    /// write on an O_WRONLY|O_APPEND descriptor after lseek(0); returns the
    /// file offset afterwards.
    Append(B, B),
    /// pread(len, offset) on an O_RDONLY descriptor.
    Read(B, i64, usize),
    Ftruncate(B, i64),
    /// fallocate(mode, offset, len) on an O_RDWR descriptor.
    Fallocate(B, i32, i64, i64),
    /// lseek(offset, whence) on an O_RDONLY descriptor.
    Lseek(B, i64, i32),
    /// faccessat(path, mode, 0).
    Access(B, i32),
    /// stat (following symlinks); returns st_mode.
    Stat(B),
}

fn parent(p: &B) -> B {
    match p.0.iter().rposition(|&c| c == b'/') {
        Some(i) => B(p.0[..i].to_vec()),
        None => B::default(),
    }
}

impl Op {
    /// The namespace paths this operation names.
    fn paths(&self) -> Vec<&B> {
        use Op::*;
        match self {
            Rename(a, c, _) | Link(a, c) => vec![a, c],
            Symlink(_, p) => vec![p],
            Mkdir(p, _)
            | Rmdir(p)
            | Open(p, ..)
            | Unlink(p)
            | Readlink(p, _)
            | Truncate(p, _)
            | Chmod(p, ..)
            | Chown(p, ..)
            | Utimens(p, ..)
            | Times(p)
            | Mknod(p, ..)
            | SetXattr(p, ..)
            | GetXattr(p, ..)
            | ListXattr(p, _)
            | RemoveXattr(p, _)
            | Write(p, ..)
            | Append(p, _)
            | Read(p, ..)
            | Ftruncate(p, _)
            | Fallocate(p, ..)
            | Lseek(p, ..)
            | Access(p, _)
            | Stat(p) => vec![p],
        }
    }

    /// The paths whose state is compared after the operation: the named
    /// paths and their parents (and the work dir itself).
    fn touched(&self) -> Vec<B> {
        let mut v = vec![B::default()];
        for p in self.paths() {
            v.push(p.clone());
            v.push(parent(p));
        }
        v.sort();
        v.dedup();
        v
    }
}

fn zstat() -> libc::stat {
    // SAFETY: libc::stat is plain old data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

fn rc(r: libc::c_int) -> Res {
    if r < 0 {
        err(errno())
    } else {
        Res::Ok(r.into())
    }
}

fn rcl(r: i64) -> Res {
    if r < 0 { err(errno()) } else { Res::Ok(r) }
}

fn ts(t: T) -> libc::timespec {
    let (s, ns) = match t {
        T::Set(s, ns) => (s, ns),
        T::Now => (0, libc::UTIME_NOW),
        T::Omit => (0, libc::UTIME_OMIT),
    };
    libc::timespec {
        tv_sec: s,
        tv_nsec: ns,
    }
}

fn file_kind(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "file",
        libc::S_IFDIR => "dir",
        libc::S_IFLNK => "symlink",
        libc::S_IFIFO => "fifo",
        libc::S_IFSOCK => "socket",
        libc::S_IFCHR => "chr",
        libc::S_IFBLK => "blk",
        _ => "?",
    }
}

fn dtype_kind(t: u8) -> &'static str {
    match t {
        libc::DT_REG => "file",
        libc::DT_DIR => "dir",
        libc::DT_LNK => "symlink",
        libc::DT_FIFO => "fifo",
        libc::DT_SOCK => "socket",
        libc::DT_CHR => "chr",
        libc::DT_BLK => "blk",
        libc::DT_UNKNOWN => "unknown",
        _ => "?",
    }
}

/// What is compared of a path after each step.
#[derive(Debug, PartialEq, Eq)]
enum Snap {
    Missing(Errno),
    Node {
        kind: &'static str,
        perm: String,
        nlink: u64,
        size: i64,
        uid: u32,
        gid: u32,
        has_blocks: bool,
        rdev: (u32, u32),
        content: Content,
        /// Sorted (name, value) pairs, or the listxattr errno.
        xattrs: Result<Vec<(B, B)>, Errno>,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum Content {
    None,
    File(B),
    Link(B),
    /// Sorted (name, d_type) pairs, "." and ".." included.
    Dir(Vec<(B, &'static str)>),
    Unreadable(Errno),
}

/// Opens with O_NOATIME (reading for a comparison must not set atime);
/// without it where that is not allowed (not the owner, no CAP_FOWNER).
fn open_noatime(c: &CString, flags: i32) -> i32 {
    // SAFETY: valid C string.
    unsafe {
        let fd = libc::open(c.as_ptr(), flags | libc::O_NOATIME);
        if fd < 0 && errno() == libc::EPERM {
            return libc::open(c.as_ptr(), flags);
        }
        fd
    }
}

/// One filesystem under test: a work directory on a mount.
struct Side {
    name: &'static str,
    base: PathBuf,
}

impl Side {
    fn c(&self, p: &B) -> CString {
        let mut v = self.base.as_os_str().as_bytes().to_vec();
        if !p.0.is_empty() {
            v.push(b'/');
            v.extend_from_slice(&p.0);
        }
        CString::new(v).expect("path without NUL")
    }

    fn lstat(&self, p: &B) -> Result<libc::stat, Errno> {
        let c = self.c(p);
        let mut st = zstat();
        // SAFETY: valid C string and out pointer.
        if unsafe { libc::lstat(c.as_ptr(), &mut st) } < 0 {
            return Err(Errno(errno()));
        }
        Ok(st)
    }

    /// Opens `p`, runs `f` on the descriptor and closes it.
    fn with_fd(&self, p: &B, flags: i32, f: impl FnOnce(i32) -> Res) -> Res {
        let c = self.c(p);
        // SAFETY: valid C string.
        // O_NONBLOCK: a FIFO must not block the test.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                flags | libc::O_NONBLOCK | libc::O_CLOEXEC,
                0o644,
            )
        };
        if fd < 0 {
            return err(errno());
        }
        let r = f(fd);
        // SAFETY: fd was opened above.
        unsafe { libc::close(fd) };
        r
    }

    fn apply(&self, op: &Op) -> Res {
        // SAFETY (whole function): every pointer passed to libc is a valid
        // NUL-terminated string or a buffer of the stated length.
        unsafe {
            match op {
                Op::Mkdir(p, m) => rc(libc::mkdir(self.c(p).as_ptr(), *m)),
                Op::Rmdir(p) => rc(libc::rmdir(self.c(p).as_ptr())),
                Op::Open(p, fl, m) => {
                    let fd = libc::open(self.c(p).as_ptr(), fl.0 | libc::O_CLOEXEC, *m);
                    if fd < 0 {
                        return err(errno());
                    }
                    let mut st = zstat();
                    let r = libc::fstat(fd, &mut st);
                    let e = errno();
                    libc::close(fd);
                    if r < 0 {
                        return err(e);
                    }
                    Res::Ok(st.st_mode.into())
                }
                Op::Unlink(p) => rc(libc::unlink(self.c(p).as_ptr())),
                Op::Rename(a, c, fl) => rcl(libc::syscall(
                    libc::SYS_renameat2,
                    libc::AT_FDCWD,
                    self.c(a).as_ptr(),
                    libc::AT_FDCWD,
                    self.c(c).as_ptr(),
                    *fl,
                )),
                Op::Link(a, c) => rc(libc::link(self.c(a).as_ptr(), self.c(c).as_ptr())),
                Op::Symlink(t, p) => {
                    let t = CString::new(t.0.clone()).expect("target without NUL");
                    rc(libc::symlink(t.as_ptr(), self.c(p).as_ptr()))
                }
                Op::Readlink(p, n) => {
                    let mut buf = vec![0u8; *n];
                    let r = libc::readlink(self.c(p).as_ptr(), buf.as_mut_ptr().cast(), *n);
                    if r < 0 {
                        return err(errno());
                    }
                    buf.truncate(r as usize);
                    Res::Data(B(buf))
                }
                Op::Truncate(p, n) => rc(libc::truncate(self.c(p).as_ptr(), *n)),
                Op::Chmod(p, m, fl) => {
                    rc(libc::fchmodat(libc::AT_FDCWD, self.c(p).as_ptr(), *m, *fl))
                }
                Op::Chown(p, u, g, fl) => rc(libc::fchownat(
                    libc::AT_FDCWD,
                    self.c(p).as_ptr(),
                    *u,
                    *g,
                    *fl,
                )),
                Op::Utimens(p, a, m, fl) => {
                    let t = [ts(*a), ts(*m)];
                    let c = self.c(p);
                    if libc::utimensat(libc::AT_FDCWD, c.as_ptr(), t.as_ptr(), *fl) < 0 {
                        return err(errno());
                    }
                    if *a == T::Now || *m == T::Now {
                        return OK;
                    }
                    // The times right away: the comparison of the touched
                    // paths afterwards reads symlinks, which sets their atime.
                    let mut st = zstat();
                    let r = if *fl & libc::AT_SYMLINK_NOFOLLOW != 0 {
                        libc::lstat(c.as_ptr(), &mut st)
                    } else {
                        libc::stat(c.as_ptr(), &mut st)
                    };
                    if r < 0 {
                        return err(errno());
                    }
                    Res::Times([st.st_atime, st.st_atime_nsec, st.st_mtime, st.st_mtime_nsec])
                }
                Op::Times(p) => match self.lstat(p) {
                    Ok(st) => {
                        Res::Times([st.st_atime, st.st_atime_nsec, st.st_mtime, st.st_mtime_nsec])
                    }
                    Err(e) => Res::Err(e),
                },
                Op::Mknod(p, m, d) => rc(libc::mknod(self.c(p).as_ptr(), *m, *d)),
                Op::SetXattr(p, n, v, fl) => {
                    let n = CString::new(n.0.clone()).expect("name");
                    rc(libc::lsetxattr(
                        self.c(p).as_ptr(),
                        n.as_ptr(),
                        v.0.as_ptr().cast(),
                        v.0.len(),
                        *fl,
                    ))
                }
                Op::GetXattr(p, n, size) => {
                    let n = CString::new(n.0.clone()).expect("name");
                    let mut buf = vec![0u8; *size];
                    let r = libc::lgetxattr(
                        self.c(p).as_ptr(),
                        n.as_ptr(),
                        buf.as_mut_ptr().cast(),
                        *size,
                    );
                    if r < 0 {
                        return err(errno());
                    }
                    if *size == 0 {
                        return Res::Ok(r as i64);
                    }
                    buf.truncate(r as usize);
                    Res::Data(B(buf))
                }
                Op::ListXattr(p, size) => {
                    let mut buf = vec![0u8; *size];
                    let r = libc::llistxattr(self.c(p).as_ptr(), buf.as_mut_ptr().cast(), *size);
                    if r < 0 {
                        return err(errno());
                    }
                    if *size == 0 {
                        return Res::Ok(r as i64);
                    }
                    buf.truncate(r as usize);
                    let mut names: Vec<B> = buf
                        .split(|&c| c == 0)
                        .filter(|s| !s.is_empty())
                        .map(b)
                        .collect();
                    names.sort();
                    Res::Names(names)
                }
                Op::RemoveXattr(p, n) => {
                    let n = CString::new(n.0.clone()).expect("name");
                    rc(libc::lremovexattr(self.c(p).as_ptr(), n.as_ptr()))
                }
                Op::Write(p, off, data) => self.with_fd(p, libc::O_WRONLY, |fd| {
                    rcl(libc::pwrite(fd, data.0.as_ptr().cast(), data.0.len(), *off) as i64)
                }),
                Op::Append(p, data) => self.with_fd(p, libc::O_WRONLY | libc::O_APPEND, |fd| {
                    if libc::lseek(fd, 0, libc::SEEK_SET) < 0 {
                        return err(errno());
                    }
                    if libc::write(fd, data.0.as_ptr().cast(), data.0.len()) < 0 {
                        return err(errno());
                    }
                    rcl(libc::lseek(fd, 0, libc::SEEK_CUR))
                }),
                Op::Read(p, off, len) => self.with_fd(p, libc::O_RDONLY, |fd| {
                    let mut buf = vec![0u8; *len];
                    let mut got = 0usize;
                    while got < *len {
                        let r = libc::pread(
                            fd,
                            buf[got..].as_mut_ptr().cast(),
                            *len - got,
                            *off + got as i64,
                        );
                        if r < 0 {
                            return err(errno());
                        }
                        if r == 0 {
                            break;
                        }
                        got += r as usize;
                    }
                    buf.truncate(got);
                    Res::Data(B(buf))
                }),
                Op::Ftruncate(p, n) => {
                    self.with_fd(p, libc::O_WRONLY, |fd| rc(libc::ftruncate(fd, *n)))
                }
                Op::Fallocate(p, m, off, len) => self.with_fd(p, libc::O_RDWR, |fd| {
                    rc(libc::fallocate(fd, *m, *off, *len))
                }),
                Op::Lseek(p, off, wh) => {
                    self.with_fd(p, libc::O_RDONLY, |fd| rcl(libc::lseek(fd, *off, *wh)))
                }
                Op::Access(p, m) => rc(libc::faccessat(libc::AT_FDCWD, self.c(p).as_ptr(), *m, 0)),
                Op::Stat(p) => {
                    let mut st = zstat();
                    if libc::stat(self.c(p).as_ptr(), &mut st) < 0 {
                        return err(errno());
                    }
                    Res::Ok(st.st_mode.into())
                }
            }
        }
    }

    /// Sorted (name, d_type) listing of a directory, without touching atime.
    fn list_dir(&self, p: &B) -> Result<Vec<(B, &'static str)>, Errno> {
        let c = self.c(p);
        // SAFETY: valid C string; the DIR stream is closed below and
        // entries are copied before the next readdir.
        unsafe {
            let fd = open_noatime(
                &c,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            );
            if fd < 0 {
                return Err(Errno(errno()));
            }
            let d = libc::fdopendir(fd);
            assert!(!d.is_null(), "fdopendir failed");
            let mut out = Vec::new();
            loop {
                *libc::__errno_location() = 0;
                let e = libc::readdir(d);
                if e.is_null() {
                    let e = errno();
                    libc::closedir(d);
                    if e != 0 {
                        return Err(Errno(e));
                    }
                    break;
                }
                let name = CStr::from_ptr((*e).d_name.as_ptr()).to_bytes();
                out.push((b(name), dtype_kind((*e).d_type)));
            }
            out.sort();
            Ok(out)
        }
    }

    fn read_all(&self, p: &B) -> Result<B, Errno> {
        let c = self.c(p);
        // SAFETY: valid C string; fd closed below.
        unsafe {
            let fd = open_noatime(
                &c,
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
            );
            if fd < 0 {
                return Err(Errno(errno()));
            }
            let mut out = Vec::new();
            let mut buf = vec![0u8; 65536];
            loop {
                let r = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                if r < 0 {
                    let e = errno();
                    libc::close(fd);
                    return Err(Errno(e));
                }
                if r == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..r as usize]);
            }
            libc::close(fd);
            Ok(B(out))
        }
    }

    fn readlink(&self, p: &B) -> Result<B, Errno> {
        let mut buf = vec![0u8; 8192];
        // SAFETY: valid C string and buffer.
        let r = unsafe { libc::readlink(self.c(p).as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r < 0 {
            return Err(Errno(errno()));
        }
        buf.truncate(r as usize);
        Ok(B(buf))
    }

    /// The compared state of one path (lstat, contents, listing, target).
    fn snap(&self, p: &B) -> Snap {
        let st = match self.lstat(p) {
            Ok(st) => st,
            Err(e) => return Snap::Missing(e),
        };
        let kind = file_kind(st.st_mode);
        let res = |r: Result<Content, Errno>| r.unwrap_or_else(Content::Unreadable);
        let content = match kind {
            "file" if st.st_size <= 1 << 20 => res(self.read_all(p).map(Content::File)),
            "dir" => res(self.list_dir(p).map(Content::Dir)),
            "symlink" => res(self.readlink(p).map(Content::Link)),
            _ => Content::None,
        };
        let rdev = if matches!(kind, "chr" | "blk") {
            (libc::major(st.st_rdev), libc::minor(st.st_rdev))
        } else {
            (0, 0)
        };
        Snap::Node {
            kind,
            perm: format!("{:04o}", st.st_mode & 0o7777),
            nlink: st.st_nlink,
            size: st.st_size,
            uid: st.st_uid,
            gid: st.st_gid,
            has_blocks: st.st_blocks > 0,
            rdev,
            content,
            xattrs: self.xattrs(p),
        }
    }

    fn xattrs(&self, p: &B) -> Result<Vec<(B, B)>, Errno> {
        let c = self.c(p);
        let mut buf = vec![0u8; 65536];
        // SAFETY: valid C string and buffers.
        let r = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r < 0 {
            return Err(Errno(errno()));
        }
        buf.truncate(r as usize);
        let mut out = Vec::new();
        for name in buf.split(|&ch| ch == 0).filter(|n| !n.is_empty()) {
            let n = CString::new(name).expect("xattr name");
            let mut v = vec![0u8; 65536];
            // SAFETY: valid C strings and buffer.
            let r =
                unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
            if r < 0 {
                v = format!("<getxattr: {:?}>", Errno(errno())).into_bytes();
            } else {
                v.truncate(r as usize);
            }
            out.push((b(name), B(v)));
        }
        out.sort();
        Ok(out)
    }

    /// Every path under the work dir (symlinks not followed) with its
    /// state, and the groups of paths that are hard links of one inode.
    fn tree(&self) -> (BTreeMap<B, Snap>, Vec<Vec<B>>) {
        let mut map = BTreeMap::new();
        let mut inos: BTreeMap<u64, Vec<B>> = BTreeMap::new();
        let mut todo = vec![B::default()];
        while let Some(p) = todo.pop() {
            let snap = self.snap(&p);
            if let Snap::Node {
                content: Content::Dir(entries),
                ..
            } = &snap
            {
                for (name, _) in entries {
                    if name.0 == b"." || name.0 == b".." {
                        continue;
                    }
                    let mut child = p.0.clone();
                    if !child.is_empty() {
                        child.push(b'/');
                    }
                    child.extend_from_slice(&name.0);
                    todo.push(B(child));
                }
            } else if let Ok(st) = self.lstat(&p) {
                inos.entry(st.st_ino).or_default().push(p.clone());
            }
            map.insert(p, snap);
        }
        let mut groups: Vec<Vec<B>> = inos
            .into_values()
            .filter(|g| g.len() > 1)
            .map(|mut g| {
                g.sort();
                g
            })
            .collect();
        groups.sort();
        (map, groups)
    }
}

/// Compares the results of one step and the state of the touched paths.
fn compare_step(tmp: &Side, tri: &Side, op: &Op, rt: &Res, rm: &Res) -> Result<(), String> {
    if rt != rm {
        return Err(format!(
            "result differs\n  tmpfs : {rt:?}\n  triefs: {rm:?}"
        ));
    }
    for p in op.touched() {
        let (a, c) = (tmp.snap(&p), tri.snap(&p));
        if a != c {
            return Err(format!(
                "state of {p:?} differs afterwards\n  tmpfs : {a:?}\n  triefs: {c:?}"
            ));
        }
    }
    Ok(())
}

/// Compares the whole trees under both work dirs.
fn compare_trees(tmp: &Side, tri: &Side) -> Result<(), String> {
    let (ta, ga) = tmp.tree();
    let (tb, gb) = tri.tree();
    for p in ta.keys().chain(tb.keys()) {
        let (a, c) = (ta.get(p), tb.get(p));
        if a != c {
            return Err(format!(
                "tree differs at {p:?}\n  tmpfs : {a:?}\n  triefs: {c:?}"
            ));
        }
    }
    if ga != gb {
        return Err(format!(
            "hard-link groups differ\n  tmpfs : {ga:?}\n  triefs: {gb:?}"
        ));
    }
    Ok(())
}

/// Creates a fresh work directory `name` (mode 0755) under a mount root.
fn make_workdir(root: &std::path::Path, name: &str, side: &'static str) -> Side {
    let base = root.join(name);
    std::fs::create_dir(&base).unwrap_or_else(|e| panic!("{side}: mkdir {base:?}: {e}"));
    common::chmod(&base, 0o755);
    Side { name: side, base }
}

/// A tmpfs oracle and a triefs mount, each with a work dir, compared after
/// every operation.
struct Pair {
    tmp: Side,
    tri: Side,
    steps: Vec<String>,
    // Dropped after the sides: unmounts.
    _m: TriefsMount,
    _t: Tmpfs,
}

impl Pair {
    #[track_caller]
    fn new() -> Pair {
        Pair::with_args(&[])
    }

    #[track_caller]
    fn with_args(args: &[&str]) -> Pair {
        // Every test sets the same umask, so parallel tests do not race.
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(0o022) };
        let t = Tmpfs::new();
        let m = TriefsMount::new(args);
        let tmp = make_workdir(t.path(), "w", "tmpfs");
        let tri = make_workdir(m.path(), "w", "triefs");
        Pair {
            tmp,
            tri,
            steps: Vec::new(),
            _m: m,
            _t: t,
        }
    }

    fn history(&self) -> String {
        let start = self.steps.len().saturating_sub(12);
        let mut s = String::new();
        for (i, st) in self.steps.iter().enumerate().skip(start) {
            s.push_str(&format!("  #{i}: {st}\n"));
        }
        s
    }

    /// Runs `op` on both sides and compares; returns the oracle's result.
    #[track_caller]
    fn run(&mut self, op: Op) -> Res {
        let rt = self.tmp.apply(&op);
        let rm = self.tri.apply(&op);
        self.steps.push(format!("{op:?} -> {rt:?}"));
        if let Err(e) = compare_step(&self.tmp, &self.tri, &op, &rt, &rm) {
            panic!(
                "triefs differs from tmpfs at step #{} {op:?}: {e}\nrecent steps (tmpfs results):\n{}",
                self.steps.len() - 1,
                self.history()
            );
        }
        rt
    }

    /// Runs `op` and also checks the oracle gave `want` (a test self-check).
    #[track_caller]
    fn expect(&mut self, op: Op, want: Res) {
        let got = self.run(op.clone());
        assert_eq!(
            got, want,
            "test expectation wrong: tmpfs (the oracle) gave {got:?} for {op:?}"
        );
    }

    #[track_caller]
    fn ok(&mut self, op: Op) {
        let got = self.run(op.clone());
        assert!(
            !matches!(got, Res::Err(_)),
            "test expectation wrong: tmpfs (the oracle) failed {op:?} with {got:?}"
        );
    }

    #[track_caller]
    fn fails(&mut self, op: Op, e: i32) {
        self.expect(op, err(e));
    }

    /// Compares the whole trees.
    #[track_caller]
    fn check_tree(&self) {
        if let Err(e) = compare_trees(&self.tmp, &self.tri) {
            panic!("{e}\nrecent steps:\n{}", self.history());
        }
    }

    /// Runs `f` on both sides and asserts equal results; returns tmpfs's.
    #[track_caller]
    fn same<R: PartialEq + fmt::Debug>(&self, what: &str, f: impl Fn(&Side) -> R) -> R {
        let a = f(&self.tmp);
        let c = f(&self.tri);
        assert_eq!(a, c, "{what}: triefs (right) differs from tmpfs (left)");
        a
    }

    fn lstat_both(&self, p: &str) -> [libc::stat; 2] {
        let p = b(p);
        [&self.tmp, &self.tri].map(|s| {
            s.lstat(&p)
                .unwrap_or_else(|e| panic!("{}: lstat {p:?}: {e:?}", s.name))
        })
    }
}

// Short constructors for the tests.

fn mkdir(p: &str) -> Op {
    Op::Mkdir(b(p), 0o755)
}
fn rmdir(p: &str) -> Op {
    Op::Rmdir(b(p))
}
fn open(p: &str, flags: i32) -> Op {
    Op::Open(b(p), Fl(flags), 0o644)
}
fn creat(p: &str) -> Op {
    open(p, libc::O_CREAT | libc::O_WRONLY)
}
fn unlink(p: &str) -> Op {
    Op::Unlink(b(p))
}
fn rename(a: &str, c: &str) -> Op {
    Op::Rename(b(a), b(c), 0)
}
fn rename2(a: &str, c: &str, fl: u32) -> Op {
    Op::Rename(b(a), b(c), fl)
}
fn link(a: &str, c: &str) -> Op {
    Op::Link(b(a), b(c))
}
fn symlink(t: &str, p: &str) -> Op {
    Op::Symlink(b(t), b(p))
}
fn readlink(p: &str) -> Op {
    Op::Readlink(b(p), 4096)
}
fn truncate(p: &str, n: i64) -> Op {
    Op::Truncate(b(p), n)
}
fn chmod(p: &str, m: u32) -> Op {
    Op::Chmod(b(p), m, 0)
}
fn chown(p: &str, u: u32, g: u32) -> Op {
    Op::Chown(b(p), u, g, 0)
}
fn lchown(p: &str, u: u32, g: u32) -> Op {
    Op::Chown(b(p), u, g, libc::AT_SYMLINK_NOFOLLOW)
}
fn write(p: &str, off: i64, data: &str) -> Op {
    Op::Write(b(p), off, b(data))
}
fn read(p: &str, off: i64, len: usize) -> Op {
    Op::Read(b(p), off, len)
}
fn stat(p: &str) -> Op {
    Op::Stat(b(p))
}
fn setx(p: &str, n: &str, v: &str, fl: i32) -> Op {
    Op::SetXattr(b(p), b(n), b(v), fl)
}
fn getx(p: &str, n: &str, size: usize) -> Op {
    Op::GetXattr(b(p), b(n), size)
}
fn data(s: &str) -> Res {
    Res::Data(b(s))
}

const NOREPLACE: u32 = libc::RENAME_NOREPLACE;
const EXCHANGE: u32 = libc::RENAME_EXCHANGE;

fn mode_of(kind: u32, perm: u32) -> Res {
    Res::Ok(i64::from(kind | perm))
}

// ---------------------------------------------------------------------------
// Per-operation tests.
// ---------------------------------------------------------------------------

#[test]
fn mkdir_errors_and_nlink() {
    let mut x = Pair::new();
    x.expect(mkdir("d"), OK);
    x.fails(mkdir("d"), libc::EEXIST);
    x.fails(mkdir("nope/d"), libc::ENOENT);
    x.ok(creat("f"));
    x.fails(mkdir("f"), libc::EEXIST);
    x.fails(mkdir("f/d"), libc::ENOTDIR);
    x.fails(mkdir("d/."), libc::EEXIST);
    x.fails(mkdir("d/.."), libc::EEXIST);
    x.expect(mkdir("e/"), OK);
    x.ok(symlink("d", "l"));
    x.fails(mkdir("l"), libc::EEXIST);
    x.expect(mkdir("l/viasym"), OK);
    let n255 = "n".repeat(255);
    let n256 = "n".repeat(256);
    x.expect(mkdir(&n255), OK);
    x.fails(mkdir(&n256), libc::ENAMETOOLONG);
    x.fails(mkdir(&format!("d/{n256}")), libc::ENAMETOOLONG);
    x.fails(stat(&n256), libc::ENAMETOOLONG);
    x.fails(creat(&n256), libc::ENAMETOOLONG);
    x.fails(symlink("d", &n256), libc::ENAMETOOLONG);
    x.fails(link("f", &n256), libc::ENAMETOOLONG);
    x.fails(rename("f", &n256), libc::ENAMETOOLONG);
    x.ok(creat(&format!("d/{n255}")));
    // Permission bits: umask 022 applies; sticky survives, setgid does not
    // come from the mode argument.
    x.expect(Op::Mkdir(b("m1"), 0o1777), OK);
    x.expect(Op::Mkdir(b("m2"), 0o7777), OK);
    x.expect(Op::Mkdir(b("m3"), 0o000), OK);
    // nlink = 2 + number of subdirectories; files do not count.
    x.ok(mkdir("d/s1"));
    x.ok(mkdir("d/s2"));
    x.ok(mkdir("d/s2/t"));
    x.ok(creat("d/f"));
    let [a, c] = x.lstat_both("d");
    assert_eq!((a.st_nlink, c.st_nlink), (5, 5), "nlink of d");
    x.ok(rmdir("d/s2/t"));
    x.ok(rmdir("d/s1"));
    let [a, c] = x.lstat_both("d");
    assert_eq!((a.st_nlink, c.st_nlink), (4, 4), "nlink of d");
    x.check_tree();
}

#[test]
fn directory_sizes() {
    let mut x = Pair::new();
    x.ok(mkdir("d"));
    let [a, c] = x.lstat_both("d");
    assert_eq!((a.st_size, c.st_size), (40, 40), "empty dir size");
    for i in 0..5 {
        x.ok(creat(&format!("d/f{i}")));
    }
    x.ok(mkdir("d/sub"));
    x.ok(symlink("x", "d/l"));
    let [a, c] = x.lstat_both("d");
    assert_eq!(
        (a.st_size, c.st_size),
        (180, 180),
        "dir size with 7 entries"
    );
    x.ok(unlink("d/f0"));
    x.ok(rename("d/f1", "g"));
    x.ok(rename("g", "d/g"));
    x.ok(rmdir("d/sub"));
    x.check_tree();
}

#[test]
fn rmdir_errors() {
    let mut x = Pair::new();
    x.ok(mkdir("d"));
    x.ok(creat("d/f"));
    x.fails(rmdir("d"), libc::ENOTEMPTY);
    x.fails(rmdir("d/f"), libc::ENOTDIR);
    x.fails(rmdir("d/f/x"), libc::ENOTDIR);
    x.fails(rmdir("nope"), libc::ENOENT);
    x.fails(rmdir("d/."), libc::EINVAL);
    x.fails(rmdir("d/.."), libc::ENOTEMPTY);
    x.ok(mkdir("e"));
    x.ok(symlink("e", "le"));
    x.fails(rmdir("le"), libc::ENOTDIR);
    x.ok(mkdir("d/sub"));
    x.fails(rmdir("d"), libc::ENOTEMPTY);
    x.expect(rmdir("d/sub/"), OK);
    x.expect(unlink("d/f"), OK);
    x.expect(rmdir("d"), OK);
    x.fails(rmdir("d"), libc::ENOENT);
    x.expect(rmdir("e"), OK);
    x.check_tree();
}

#[test]
fn open_flags_and_errors() {
    use libc::{
        O_APPEND, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_PATH, O_RDONLY, O_RDWR, O_TRUNC,
        O_WRONLY, S_IFDIR, S_IFLNK, S_IFREG,
    };
    let mut x = Pair::new();
    x.expect(
        open("f", O_CREAT | O_EXCL | O_WRONLY),
        mode_of(S_IFREG, 0o644),
    );
    x.fails(open("f", O_CREAT | O_EXCL | O_WRONLY), libc::EEXIST);
    x.expect(open("f", O_CREAT | O_WRONLY), mode_of(S_IFREG, 0o644));
    x.fails(open("nope", O_RDONLY), libc::ENOENT);
    x.fails(open("nope/f", O_CREAT | O_WRONLY), libc::ENOENT);
    x.fails(open("f/x", O_CREAT | O_WRONLY), libc::ENOTDIR);
    x.fails(open("f", O_RDONLY | O_DIRECTORY), libc::ENOTDIR);
    x.fails(open("f/", O_RDONLY), libc::ENOTDIR);
    x.ok(mkdir("d"));
    x.expect(open("d", O_RDONLY), mode_of(S_IFDIR, 0o755));
    x.expect(open("d", O_RDONLY | O_DIRECTORY), mode_of(S_IFDIR, 0o755));
    x.fails(open("d", O_WRONLY), libc::EISDIR);
    x.fails(open("d", O_RDWR), libc::EISDIR);
    x.fails(open("d", O_CREAT | O_RDONLY), libc::EISDIR);
    x.fails(open("d", O_CREAT | O_EXCL | O_RDONLY), libc::EEXIST);
    x.fails(open("newdir/", O_CREAT | O_WRONLY), libc::EISDIR);
    x.run(open("g", O_CREAT | O_DIRECTORY | O_RDONLY));
    // Modes given to O_CREAT, umask 022 applied; setuid kept for root.
    x.expect(
        Op::Open(b("m"), Fl(O_CREAT | O_WRONLY), 0o4777),
        mode_of(S_IFREG, 0o4755),
    );
    x.expect(
        Op::Open(b("m0"), Fl(O_CREAT | O_RDWR), 0o000),
        mode_of(S_IFREG, 0),
    );
    // O_TRUNC empties, even with O_RDONLY.
    x.expect(write("f", 0, "hello"), Res::Ok(5));
    x.expect(open("f", O_WRONLY | O_TRUNC), mode_of(S_IFREG, 0o644));
    x.expect(write("f", 0, "hello"), Res::Ok(5));
    x.expect(open("f", O_RDONLY | O_TRUNC), mode_of(S_IFREG, 0o644));
    x.expect(write("f", 0, "again"), Res::Ok(5));
    x.expect(open("f", O_RDWR | O_CREAT), mode_of(S_IFREG, 0o644));
    x.expect(read("f", 0, 100), data("again"));
    // Symlinks: O_NOFOLLOW, O_PATH, dangling targets.
    x.ok(symlink("f", "lf"));
    x.ok(symlink("d", "ld"));
    x.ok(symlink("dangling", "ln"));
    x.fails(open("lf", O_RDONLY | O_NOFOLLOW), libc::ELOOP);
    x.fails(
        open("ld", O_RDONLY | O_DIRECTORY | O_NOFOLLOW),
        libc::ENOTDIR,
    );
    x.expect(open("lf", O_RDONLY), mode_of(S_IFREG, 0o644));
    x.expect(open("ld", O_RDONLY | O_DIRECTORY), mode_of(S_IFDIR, 0o755));
    x.expect(open("lf", O_PATH | O_NOFOLLOW), mode_of(S_IFLNK, 0o777));
    x.expect(open("ln", O_PATH | O_NOFOLLOW), mode_of(S_IFLNK, 0o777));
    x.expect(open("d", O_PATH), mode_of(S_IFDIR, 0o755));
    x.fails(open("nope", O_PATH), libc::ENOENT);
    x.fails(open("ln", O_RDONLY), libc::ENOENT);
    x.fails(open("ln", O_CREAT | O_EXCL | O_WRONLY), libc::EEXIST);
    // O_CREAT through a dangling symlink creates its target.
    x.expect(open("ln", O_CREAT | O_WRONLY), mode_of(S_IFREG, 0o644));
    x.expect(stat("dangling"), mode_of(S_IFREG, 0o644));
    x.expect(
        open("dangling", O_APPEND | O_WRONLY),
        mode_of(S_IFREG, 0o644),
    );
    x.check_tree();
}

#[test]
fn unlink_errors() {
    let mut x = Pair::new();
    x.ok(mkdir("d"));
    x.ok(creat("f"));
    x.fails(unlink("d"), libc::EISDIR);
    x.fails(unlink("nope"), libc::ENOENT);
    x.fails(unlink("f/x"), libc::ENOTDIR);
    x.fails(unlink("f/"), libc::ENOTDIR);
    x.fails(unlink("d/."), libc::EISDIR);
    x.ok(symlink("f", "l"));
    x.expect(unlink("l"), OK);
    x.ok(link("f", "g"));
    x.expect(unlink("f"), OK);
    x.fails(unlink("f"), libc::ENOENT);
    x.expect(unlink("g"), OK);
    x.check_tree();
}

#[test]
fn unlinked_open_file_lives_on() {
    let mut x = Pair::new();
    x.ok(creat("f"));
    x.ok(write("f", 0, "abc"));
    x.same("open, unlink, write, fstat, read", |s| {
        let c = s.c(&b("f"));
        // SAFETY: valid C string and buffers; fd closed at the end.
        unsafe {
            let fd = libc::open(c.as_ptr(), libc::O_RDWR);
            assert!(fd >= 0, "{}: open", s.name);
            let u = libc::unlink(c.as_ptr());
            let w = libc::pwrite(fd, b"XYZW".as_ptr().cast(), 4, 2);
            let mut st = zstat();
            libc::fstat(fd, &mut st);
            let mut buf = [0u8; 16];
            let r = libc::pread(fd, buf.as_mut_ptr().cast(), 16, 0);
            let t = libc::ftruncate(fd, 3);
            let mut st2 = zstat();
            libc::fstat(fd, &mut st2);
            libc::close(fd);
            (
                u,
                w,
                st.st_nlink,
                st.st_size,
                buf[..r.max(0) as usize].to_vec(),
                t,
                st2.st_size,
            )
        }
    });
    x.fails(stat("f"), libc::ENOENT);
    x.check_tree();
}

#[test]
fn rename_rules() {
    let mut x = Pair::new();
    x.ok(mkdir("a"));
    x.ok(mkdir("a/b"));
    x.ok(mkdir("a/b/c"));
    x.ok(mkdir("empty"));
    x.ok(mkdir("full"));
    x.ok(creat("full/x"));
    x.ok(creat("f"));
    x.ok(write("f", 0, "content of f"));
    // Directory over an empty directory: replaced.
    x.expect(rename("a/b/c", "empty"), OK);
    x.fails(stat("a/b/c"), libc::ENOENT);
    // Directory over a non-empty directory.
    x.fails(rename("empty", "full"), libc::ENOTEMPTY);
    // Directory onto a file, file onto a directory.
    x.fails(rename("empty", "f"), libc::ENOTDIR);
    x.fails(rename("f", "empty"), libc::EISDIR);
    // Into its own subtree.
    x.fails(rename("a", "a/b/sub"), libc::EINVAL);
    x.fails(rename("a", "a/b"), libc::EINVAL);
    x.fails(rename("a/b", "a/b/c2"), libc::EINVAL);
    // A parent onto its (empty) descendant.
    x.ok(mkdir("a/b/leaf"));
    x.fails(rename("a/b", "a/b/leaf"), libc::EINVAL);
    x.fails(rename("a/b/leaf", "a"), libc::ENOTEMPTY);
    // Onto itself: no-op.
    x.expect(rename("f", "f"), OK);
    x.expect(rename("a", "a"), OK);
    x.expect(rename("a/b/../b", "a/b"), OK);
    // Hard links of the same file: no-op, both names stay.
    x.ok(link("f", "g"));
    x.expect(rename("f", "g"), OK);
    x.expect(stat("f"), mode_of(libc::S_IFREG, 0o644));
    x.expect(stat("g"), mode_of(libc::S_IFREG, 0o644));
    // Missing sources and parents.
    x.fails(rename("nope", "z"), libc::ENOENT);
    x.fails(rename("f", "nope/z"), libc::ENOENT);
    x.fails(rename("f", "g/z"), libc::ENOTDIR);
    x.fails(rename("f/", "z"), libc::ENOTDIR);
    // Dot entries.
    x.fails(rename("a/.", "z"), libc::EBUSY);
    x.fails(rename("a/b", "a/.."), libc::EBUSY);
    // File over file replaces; the replaced inode loses a link.
    x.ok(creat("h"));
    x.ok(write("h", 0, "h"));
    x.expect(rename("h", "g"), OK);
    x.expect(read("f", 0, 100), data("content of f"));
    x.expect(read("g", 0, 100), data("h"));
    // Symlinks are renamed, not followed; renaming over one replaces it.
    x.ok(symlink("g", "ls"));
    x.expect(rename("ls", "a/ls2"), OK);
    x.ok(symlink("f", "lt"));
    x.expect(rename("g", "lt"), OK);
    x.expect(readlink("lt"), err(libc::EINVAL));
    // Directory moves between parents: both parents' nlink change.
    x.expect(rename("a/b", "full/b"), OK);
    x.expect(rename("full/b", "empty/b"), OK);
    x.expect(rename("empty", "full/empty2"), OK);
    x.ok(mkdir("target"));
    x.expect(rename("full/empty2/b/leaf", "target"), OK);
    // RENAME_NOREPLACE.
    x.ok(creat("n1"));
    x.ok(creat("n2"));
    x.fails(rename2("n1", "n2", NOREPLACE), libc::EEXIST);
    x.fails(rename2("n1", "full", NOREPLACE), libc::EEXIST);
    x.expect(rename2("n1", "n3", NOREPLACE), OK);
    x.fails(rename2("n3", "n3", NOREPLACE), libc::EEXIST);
    x.fails(rename2("n1", "n4", NOREPLACE), libc::ENOENT);
    x.fails(rename2("n3", "n2", NOREPLACE | EXCHANGE), libc::EINVAL);
    x.fails(rename2("n3", "n2", 8), libc::EINVAL);
    x.check_tree();
}

#[test]
fn rename_exchange() {
    let mut x = Pair::new();
    x.ok(mkdir("p1"));
    x.ok(mkdir("p2"));
    x.ok(mkdir("p2/d"));
    x.ok(mkdir("p2/d/sub"));
    x.ok(creat("p2/d/sub/inner"));
    x.ok(creat("p1/f"));
    x.ok(write("p1/f", 0, "file data"));
    // File <-> directory across directories.
    x.expect(rename2("p1/f", "p2/d", EXCHANGE), OK);
    let [a, c] = x.lstat_both("p1");
    assert_eq!((a.st_nlink, c.st_nlink), (3, 3), "p1 gained a subdir");
    let [a, c] = x.lstat_both("p2");
    assert_eq!((a.st_nlink, c.st_nlink), (2, 2), "p2 lost its subdir");
    x.expect(stat("p1/f/sub/inner"), mode_of(libc::S_IFREG, 0o644));
    x.expect(read("p2/d", 0, 100), data("file data"));
    // ".." of the moved directory now points at p1.
    x.expect(stat("p1/f/sub/../../f"), mode_of(libc::S_IFDIR, 0o755));
    x.expect(rmdir("p1/f/.."), err(libc::ENOTEMPTY));
    // Back again, and within one directory.
    x.expect(rename2("p2/d", "p1/f", EXCHANGE), OK);
    x.ok(creat("p1/g"));
    x.expect(rename2("p1/f", "p1/g", EXCHANGE), OK);
    x.expect(rename2("p1/g", "p1/g", EXCHANGE), OK);
    // Missing target or source.
    x.fails(rename2("p1/g", "p1/missing", EXCHANGE), libc::ENOENT);
    x.fails(rename2("p1/missing", "p1/g", EXCHANGE), libc::ENOENT);
    // Exchanging a directory with its own descendant.
    x.ok(mkdir("p1/dd"));
    x.ok(mkdir("p1/dd/e"));
    x.fails(rename2("p1/dd", "p1/dd/e", EXCHANGE), libc::EINVAL);
    x.fails(rename2("p1/dd/e", "p1/dd", EXCHANGE), libc::EINVAL);
    // Two non-empty directories swap contents' parents.
    x.ok(creat("p1/dd/e/x"));
    x.expect(rename2("p1/dd", "p2/d/sub", EXCHANGE), OK);
    x.ok(symlink("p1", "lnk"));
    x.expect(rename2("lnk", "p2", EXCHANGE), OK);
    x.check_tree();
}

#[test]
fn link_rules() {
    let mut x = Pair::new();
    x.ok(mkdir("d"));
    x.ok(creat("f"));
    x.fails(link("d", "d2"), libc::EPERM);
    x.fails(link("nope", "x"), libc::ENOENT);
    x.fails(link("f", "nope/x"), libc::ENOENT);
    x.fails(link("f", "f/x"), libc::ENOTDIR);
    x.expect(link("f", "g"), OK);
    x.fails(link("f", "g"), libc::EEXIST);
    x.fails(link("f", "d"), libc::EEXIST);
    x.expect(link("g", "d/h"), OK);
    let [a, c] = x.lstat_both("f");
    assert_eq!((a.st_nlink, c.st_nlink), (3, 3), "nlink after two links");
    x.ok(write("d/h", 0, "shared"));
    x.expect(read("f", 0, 100), data("shared"));
    x.ok(chmod("g", 0o600));
    x.ok(unlink("f"));
    let [a, c] = x.lstat_both("g");
    assert_eq!((a.st_nlink, c.st_nlink), (2, 2), "nlink after unlink");
    // link() does not follow a symlink: the link itself gets a new name.
    x.ok(symlink("g", "s"));
    x.expect(link("s", "s2"), OK);
    x.expect(readlink("s2"), data("g"));
    x.ok(symlink("dangling", "s3"));
    x.expect(link("s3", "s4"), OK);
    // Links of special files.
    x.ok(Op::Mknod(b("fifo"), libc::S_IFIFO | 0o644, 0));
    x.expect(link("fifo", "fifo2"), OK);
    x.check_tree();
}

#[test]
fn symlink_readlink() {
    let mut x = Pair::new();
    x.ok(mkdir("d"));
    x.ok(creat("d/f"));
    x.ok(write("d/f", 0, "via link"));
    x.expect(symlink("d/f", "l"), OK);
    x.expect(readlink("l"), data("d/f"));
    x.expect(Op::Readlink(b("l"), 2), data("d/"));
    x.fails(Op::Readlink(b("l"), 0), libc::EINVAL);
    x.fails(readlink("d/f"), libc::EINVAL);
    x.fails(readlink("d"), libc::EINVAL);
    x.fails(readlink("nope"), libc::ENOENT);
    x.fails(symlink("x", "l"), libc::EEXIST);
    x.fails(symlink("x", "d"), libc::EEXIST);
    x.fails(symlink("x", "nope/l"), libc::ENOENT);
    x.fails(symlink("", "empty"), libc::ENOENT);
    x.expect(read("l", 0, 100), data("via link"));
    // Dangling.
    x.expect(symlink("missing/target", "dl"), OK);
    x.fails(stat("dl"), libc::ENOENT);
    x.expect(readlink("dl"), data("missing/target"));
    // Loops.
    x.ok(symlink("loop2", "loop1"));
    x.ok(symlink("loop1", "loop2"));
    x.ok(symlink("self", "self"));
    x.fails(stat("loop1"), libc::ELOOP);
    x.fails(stat("self"), libc::ELOOP);
    x.fails(open("loop1", libc::O_RDONLY), libc::ELOOP);
    x.fails(creat("loop1/x"), libc::ELOOP);
    // Directory symlinks in the middle of paths, relative and absolute.
    x.ok(symlink("d", "ld"));
    x.ok(symlink("../d", "d/up"));
    x.expect(read("ld/f", 0, 100), data("via link"));
    x.expect(read("d/up/up/f", 0, 100), data("via link"));
    // A chain of 41 links exceeds the 40-link limit; 40 do not.
    x.ok(symlink("d/f", "c0"));
    for i in 1..=41 {
        x.ok(symlink(&format!("c{}", i - 1), &format!("c{i}")));
    }
    x.run(stat("c39"));
    x.run(stat("c40"));
    x.run(stat("c41"));
    // Symlink targets are not normalized.
    x.expect(symlink("a//b/./c/", "odd"), OK);
    x.expect(readlink("odd"), data("a//b/./c/"));
    x.check_tree();
}

#[test]
fn symlink_long_targets() {
    let mut x = Pair::new();
    // Short targets live in the inode on tmpfs (no blocks)...
    x.expect(symlink(&"s".repeat(100), "short"), OK);
    // ... long ones take a block; PATH_MAX - 1 bytes work.
    let long = "t/".repeat(2047) + "x";
    assert_eq!(long.len(), 4095);
    x.expect(symlink(&long, "long"), OK);
    x.expect(readlink("long"), data(&long));
    let toolong = long.clone() + "y";
    x.fails(symlink(&toolong, "toolong"), libc::ENAMETOOLONG);
    x.check_tree();
}

#[test]
fn truncate_rules() {
    let mut x = Pair::new();
    x.ok(creat("f"));
    x.ok(write("f", 0, "0123456789"));
    x.expect(truncate("f", 100), OK);
    x.expect(
        read("f", 0, 200),
        Res::Data(B([b"0123456789".as_slice(), &[0u8; 90]].concat())),
    );
    x.expect(truncate("f", 4), OK);
    x.expect(truncate("f", 8), OK);
    x.expect(read("f", 0, 200), Res::Data(B(b"0123\0\0\0\0".to_vec())));
    x.expect(truncate("f", 0), OK);
    x.fails(truncate("f", -1), libc::EINVAL);
    x.ok(mkdir("d"));
    x.fails(truncate("d", 0), libc::EISDIR);
    x.fails(truncate("nope", 0), libc::ENOENT);
    x.ok(symlink("f", "l"));
    x.expect(truncate("l", 3), OK);
    x.ok(Op::Mknod(b("p"), libc::S_IFIFO | 0o644, 0));
    x.fails(truncate("p", 0), libc::EINVAL);
    x.expect(Op::Ftruncate(b("f"), 5000), OK);
    x.expect(Op::Ftruncate(b("f"), 1), OK);
    x.fails(Op::Ftruncate(b("f"), -1), libc::EINVAL);
    x.expect(truncate("f", 3 << 20), OK);
    x.expect(truncate("f", 4096), OK);
    x.check_tree();
}

#[test]
fn chmod_special_bits() {
    let mut x = Pair::new();
    x.ok(creat("f"));
    x.ok(mkdir("d"));
    for m in [
        0o4755, 0o2755, 0o2745, 0o1777, 0o7777, 0o0, 0o644, 0o170_777, 0o4000,
    ] {
        x.expect(chmod("f", m), OK);
        x.expect(chmod("d", m), OK);
    }
    x.ok(symlink("f", "l"));
    x.expect(chmod("l", 0o640), OK);
    x.run(Op::Chmod(b("l"), 0o600, libc::AT_SYMLINK_NOFOLLOW));
    x.fails(chmod("nope", 0o644), libc::ENOENT);
    x.ok(Op::Mknod(b("p"), libc::S_IFIFO | 0o644, 0));
    x.expect(chmod("p", 0o4711), OK);
    x.check_tree();
}

#[test]
fn chown_rules() {
    let mut x = Pair::new();
    let keep = u32::MAX;
    x.ok(creat("f"));
    x.ok(mkdir("d"));
    x.expect(chown("f", 1000, 2000), OK);
    x.expect(chown("f", keep, 3000), OK);
    x.expect(chown("f", 4000, keep), OK);
    x.expect(chown("d", 1000, 1000), OK);
    // chown clears setuid, and setgid when group-executable, on files
    // (even for root and even when nothing changes) but not on dirs.
    x.expect(chmod("f", 0o6755), OK);
    x.expect(chown("f", 5, 5), OK);
    x.expect(chmod("f", 0o6755), OK);
    x.expect(chown("f", keep, keep), OK);
    x.expect(chmod("f", 0o2745), OK);
    x.expect(chown("f", 6, 6), OK);
    x.expect(chmod("d", 0o7755), OK);
    x.expect(chown("d", 7, 7), OK);
    // Following and not following symlinks.
    x.ok(symlink("f", "l"));
    x.expect(chown("l", 11, 12), OK);
    x.expect(lchown("l", 13, 14), OK);
    x.fails(chown("nope", 1, 1), libc::ENOENT);
    x.check_tree();
}

#[test]
fn setgid_directory_inheritance() {
    let mut x = Pair::new();
    x.ok(mkdir("sg"));
    x.expect(chown("sg", 0, 1234), OK);
    x.expect(chmod("sg", 0o2775), OK);
    x.expect(creat("sg/f"), mode_of(libc::S_IFREG, 0o644));
    x.expect(mkdir("sg/sub"), OK);
    x.expect(mkdir("sg/sub/deeper"), OK);
    x.ok(creat("sg/sub/deeper/g"));
    x.ok(Op::Mknod(b("sg/p"), libc::S_IFIFO | 0o644, 0));
    x.ok(symlink("f", "sg/l"));
    x.ok(Op::Open(
        b("sg/m"),
        Fl(libc::O_CREAT | libc::O_WRONLY),
        0o2755,
    ));
    // A file moved in keeps its group.
    x.ok(creat("outside"));
    x.expect(rename("outside", "sg/moved"), OK);
    x.check_tree();
}

#[test]
fn mknod_kinds() {
    // -o dev: tmpfs allows opening device nodes; triefs mounts nodev by
    // default, like every FUSE mount.
    let mut x = Pair::with_args(&["-o", "dev"]);
    x.expect(Op::Mknod(b("fifo"), libc::S_IFIFO | 0o640, 0), OK);
    x.expect(Op::Mknod(b("sock"), libc::S_IFSOCK | 0o600, 0), OK);
    x.expect(
        Op::Mknod(b("null"), libc::S_IFCHR | 0o666, libc::makedev(1, 3)),
        OK,
    );
    x.expect(
        Op::Mknod(b("blk"), libc::S_IFBLK | 0o600, libc::makedev(7, 200)),
        OK,
    );
    x.expect(Op::Mknod(b("reg"), libc::S_IFREG | 0o600, 0), OK);
    x.expect(Op::Mknod(b("reg0"), 0o600, 0), OK);
    x.fails(Op::Mknod(b("dir"), libc::S_IFDIR | 0o755, 0), libc::EPERM);
    x.fails(Op::Mknod(b("fifo"), libc::S_IFIFO | 0o640, 0), libc::EEXIST);
    x.fails(
        Op::Mknod(b("nope/x"), libc::S_IFIFO | 0o640, 0),
        libc::ENOENT,
    );
    x.expect(
        open("fifo", libc::O_RDONLY | libc::O_NONBLOCK),
        mode_of(libc::S_IFIFO, 0o640),
    );
    x.fails(open("fifo", libc::O_WRONLY | libc::O_NONBLOCK), libc::ENXIO);
    x.fails(open("sock", libc::O_RDONLY), libc::ENXIO);
    x.expect(open("null", libc::O_RDWR), mode_of(libc::S_IFCHR, 0o644));
    x.expect(write("null", 0, "discarded"), Res::Ok(9));
    x.expect(read("null", 0, 10), data(""));
    x.check_tree();
}

#[test]
fn xattrs() {
    use libc::{XATTR_CREATE, XATTR_REPLACE};
    let mut x = Pair::new();
    x.ok(creat("f"));
    x.ok(mkdir("d"));
    x.ok(symlink("f", "l"));
    x.ok(Op::Mknod(b("p"), libc::S_IFIFO | 0o644, 0));
    x.expect(Op::ListXattr(b("f"), 0), Res::Ok(0));
    x.expect(Op::ListXattr(b("f"), 100), Res::Names(vec![]));
    x.fails(getx("f", "user.a", 100), libc::ENODATA);
    x.fails(getx("f", "user.a", 0), libc::ENODATA);
    x.expect(setx("f", "user.a", "v1", 0), OK);
    x.fails(setx("f", "user.a", "v2", XATTR_CREATE), libc::EEXIST);
    x.expect(setx("f", "user.a", "value2", XATTR_REPLACE), OK);
    x.fails(setx("f", "user.b", "v", XATTR_REPLACE), libc::ENODATA);
    x.run(setx("f", "user.b", "v", XATTR_CREATE | XATTR_REPLACE));
    x.run(setx("f", "user.a", "v", XATTR_CREATE | XATTR_REPLACE));
    x.expect(getx("f", "user.a", 0), Res::Ok(6));
    x.expect(getx("f", "user.a", 6), data("value2"));
    x.fails(getx("f", "user.a", 5), libc::ERANGE);
    x.fails(getx("f", "user.a", 1), libc::ERANGE);
    x.expect(getx("f", "user.a", 100), data("value2"));
    x.expect(setx("f", "user.empty", "", 0), OK);
    x.expect(getx("f", "user.empty", 0), Res::Ok(0));
    x.expect(getx("f", "user.empty", 10), data(""));
    x.expect(setx("f", "trusted.t", "tv", 0), OK);
    // "user.a\0" + "user.empty\0" + "trusted.t\0"
    x.expect(Op::ListXattr(b("f"), 0), Res::Ok(28));
    x.fails(Op::ListXattr(b("f"), 27), libc::ERANGE);
    x.fails(Op::ListXattr(b("f"), 1), libc::ERANGE);
    x.expect(
        Op::ListXattr(b("f"), 28),
        Res::Names(vec![b("trusted.t"), b("user.a"), b("user.empty")]),
    );
    x.expect(Op::RemoveXattr(b("f"), b("user.a")), OK);
    x.fails(Op::RemoveXattr(b("f"), b("user.a")), libc::ENODATA);
    x.fails(getx("f", "user.a", 10), libc::ENODATA);
    x.fails(getx("nope", "user.a", 10), libc::ENOENT);
    x.fails(setx("nope", "user.a", "v", 0), libc::ENOENT);
    // Binary values.
    x.expect(
        Op::SetXattr(b("f"), b("user.bin"), B(vec![0, 255, 0, 1]), 0),
        OK,
    );
    x.expect(getx("f", "user.bin", 4), Res::Data(B(vec![0, 255, 0, 1])));
    // Directories take user.*; symlinks and special files do not.
    x.expect(setx("d", "user.d", "dv", 0), OK);
    x.fails(setx("l", "user.x", "v", 0), libc::EPERM);
    x.fails(setx("p", "user.x", "v", 0), libc::EPERM);
    x.fails(getx("l", "user.x", 10), libc::ENODATA);
    x.expect(setx("l", "trusted.x", "on the link", 0), OK);
    x.expect(setx("p", "trusted.x", "on the fifo", 0), OK);
    x.expect(getx("l", "trusted.x", 100), data("on the link"));
    x.fails(getx("f", "trusted.x", 100), libc::ENODATA);
    // Values: a few KiB work, more than 64 KiB never does.
    let big = "v".repeat(4000);
    x.expect(setx("f", "user.big", &big, 0), OK);
    x.expect(getx("f", "user.big", 0), Res::Ok(4000));
    x.fails(
        Op::SetXattr(b("f"), b("user.huge"), B(vec![b'h'; 65537]), 0),
        libc::E2BIG,
    );
    // Shared by hard links and kept across rename.
    x.ok(link("f", "g"));
    x.expect(getx("g", "trusted.t", 10), data("tv"));
    x.ok(rename("g", "d/g2"));
    x.expect(setx("d/g2", "user.via_link", "1", 0), OK);
    x.expect(getx("f", "user.via_link", 10), data("1"));
    x.check_tree();
}

#[test]
fn xattr_names() {
    let mut x = Pair::new();
    x.ok(creat("f"));
    let n255 = format!("user.{}", "n".repeat(250));
    let n256 = format!("user.{}", "n".repeat(251));
    x.expect(setx("f", &n255, "long name", 0), OK);
    x.expect(getx("f", &n255, 100), data("long name"));
    x.fails(setx("f", &n256, "v", 0), libc::ERANGE);
    x.fails(getx("f", &n256, 10), libc::ERANGE);
    x.fails(setx("f", "", "v", 0), libc::ERANGE);
    x.run(setx("f", "security.test", "sec", 0));
    x.run(getx("f", "security.test", 10));
    x.fails(setx("f", "foo.bar", "v", 0), libc::EOPNOTSUPP);
    x.fails(getx("f", "foo.bar", 10), libc::EOPNOTSUPP);
    x.fails(Op::RemoveXattr(b("f"), b("foo.bar")), libc::EOPNOTSUPP);
    x.run(setx("f", "user.", "v", 0));
    x.run(getx("f", "user.", 10));
    x.run(setx("f", "userx", "v", 0));
    x.check_tree();
}

#[test]
fn xattr_large_value() {
    let mut x = Pair::new();
    x.ok(creat("f"));
    // XATTR_SIZE_MAX itself.
    x.run(Op::SetXattr(
        b("f"),
        b("trusted.max"),
        B(vec![b'm'; 65536]),
        0,
    ));
    x.run(Op::GetXattr(b("f"), b("trusted.max"), 0));
    x.check_tree();
}

#[test]
fn write_read_append() {
    let mut x = Pair::new();
    x.ok(creat("f"));
    x.expect(write("f", 0, "hello"), Res::Ok(5));
    x.expect(write("f", 10, "world"), Res::Ok(5));
    x.expect(read("f", 0, 100), data("hello\0\0\0\0\0world"));
    x.expect(read("f", 15, 10), data(""));
    x.expect(read("f", 100, 10), data(""));
    x.expect(write("f", 2, "LL"), Res::Ok(2));
    x.expect(write("f", 0, ""), Res::Ok(0));
    // O_APPEND writes at the end even after lseek(0).
    x.expect(Op::Append(b("f"), b("XY")), Res::Ok(17));
    x.expect(Op::Append(b("f"), b("Z")), Res::Ok(18));
    x.expect(read("f", 0, 100), data("heLLo\0\0\0\0\0worldXYZ"));
    x.ok(open("g", libc::O_CREAT | libc::O_APPEND | libc::O_WRONLY));
    x.expect(Op::Append(b("g"), b("abc")), Res::Ok(3));
    x.expect(Op::Append(b("g"), b("def")), Res::Ok(6));
    // Page boundaries and a large write.
    x.expect(write("f", 4090, "0123456789abcdef"), Res::Ok(16));
    let pattern: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    x.expect(
        Op::Write(b("big"), 3000, B(pattern.clone())),
        err(libc::ENOENT),
    );
    x.ok(creat("big"));
    x.expect(
        Op::Write(b("big"), 3000, B(pattern.clone())),
        Res::Ok(200_000),
    );
    x.expect(
        read("big", 3000 + 65_000, 10),
        Res::Data(B(pattern[65_000..65_010].to_vec())),
    );
    x.expect(Op::Write(b("big"), 100_000, b("overwrite")), Res::Ok(9));
    x.expect(Op::Ftruncate(b("big"), 50_000), OK);
    x.expect(Op::Write(b("big"), 60_000, b("tail")), Res::Ok(4));
    x.expect(
        read("big", 49_998, 4),
        Res::Data(B(vec![pattern[46_998], pattern[46_999], 0, 0])),
    );
    // Not writable as files.
    x.ok(mkdir("d"));
    x.fails(write("d", 0, "x"), libc::EISDIR);
    x.fails(read("d", 0, 10), libc::EISDIR);
    x.check_tree();
}

#[test]
fn fallocate_mode0() {
    let mut x = Pair::new();
    x.ok(creat("f"));
    x.ok(write("f", 0, "abc"));
    x.expect(Op::Fallocate(b("f"), 0, 0, 8192), OK);
    x.expect(read("f", 0, 10), data("abc\0\0\0\0\0\0\0"));
    x.expect(Op::Fallocate(b("f"), 0, 100_000, 10), OK);
    x.expect(Op::Fallocate(b("f"), 0, 10, 10), OK);
    x.fails(Op::Fallocate(b("f"), 0, 0, 0), libc::EINVAL);
    x.fails(Op::Fallocate(b("f"), 0, -1, 10), libc::EINVAL);
    x.fails(Op::Fallocate(b("f"), 0, 0, -5), libc::EINVAL);
    x.ok(creat("e"));
    x.expect(Op::Fallocate(b("e"), 0, 0, 1), OK);
    x.check_tree();
}

#[test]
fn fallocate_other_modes() {
    let mut x = Pair::new();
    x.ok(creat("f"));
    x.ok(Op::Write(b("f"), 0, B(vec![b'x'; 20_000])));
    // KEEP_SIZE past EOF.
    x.run(Op::Fallocate(
        b("f"),
        libc::FALLOC_FL_KEEP_SIZE,
        20_000,
        10_000,
    ));
    // PUNCH_HOLE needs KEEP_SIZE.
    x.run(Op::Fallocate(b("f"), libc::FALLOC_FL_PUNCH_HOLE, 0, 4096));
    x.run(Op::Fallocate(
        b("f"),
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        100,
        9000,
    ));
    x.run(Op::Fallocate(b("f"), libc::FALLOC_FL_ZERO_RANGE, 0, 10));
    x.run(Op::Fallocate(
        b("f"),
        libc::FALLOC_FL_COLLAPSE_RANGE,
        0,
        4096,
    ));
    x.check_tree();
}

#[test]
fn sparse_file_and_seek() {
    const G: i64 = 1 << 30;
    let mut x = Pair::new();
    x.ok(creat("s"));
    x.expect(write("s", G, "abcd"), Res::Ok(4));
    let [a, c] = x.lstat_both("s");
    assert_eq!((a.st_size, c.st_size), (G + 4, G + 4), "sparse size");
    assert!(
        a.st_blocks > 0 && a.st_blocks <= 16,
        "tmpfs st_blocks {}",
        a.st_blocks
    );
    assert!(
        c.st_blocks > 0 && c.st_blocks <= 16,
        "triefs st_blocks {} for 4 bytes at 1 GiB (tmpfs: {})",
        c.st_blocks,
        a.st_blocks
    );
    x.expect(read("s", G, 10), data("abcd"));
    x.expect(read("s", 4096, 8), Res::Data(B(vec![0; 8])));
    x.expect(read("s", G - 2, 4), data("\0\0ab"));
    x.expect(Op::Lseek(b("s"), 0, libc::SEEK_DATA), Res::Ok(G));
    x.expect(Op::Lseek(b("s"), 0, libc::SEEK_HOLE), Res::Ok(0));
    x.expect(Op::Lseek(b("s"), G, libc::SEEK_HOLE), Res::Ok(G + 4));
    x.expect(Op::Lseek(b("s"), G + 2, libc::SEEK_DATA), Res::Ok(G + 2));
    x.fails(Op::Lseek(b("s"), G + 4, libc::SEEK_DATA), libc::ENXIO);
    x.fails(Op::Lseek(b("s"), G + 4, libc::SEEK_HOLE), libc::ENXIO);
    x.fails(Op::Lseek(b("s"), -1, libc::SEEK_DATA), libc::ENXIO);
    x.expect(Op::Lseek(b("s"), 0, libc::SEEK_END), Res::Ok(G + 4));
    x.expect(Op::Lseek(b("s"), 5, libc::SEEK_SET), Res::Ok(5));
    x.fails(Op::Lseek(b("s"), -1, libc::SEEK_SET), libc::EINVAL);
    // Dense and empty files.
    x.ok(creat("dense"));
    x.ok(Op::Write(b("dense"), 0, B(vec![b'd'; 10_000])));
    x.expect(Op::Lseek(b("dense"), 0, libc::SEEK_DATA), Res::Ok(0));
    x.expect(Op::Lseek(b("dense"), 0, libc::SEEK_HOLE), Res::Ok(10_000));
    x.expect(
        Op::Lseek(b("dense"), 9_999, libc::SEEK_HOLE),
        Res::Ok(10_000),
    );
    x.ok(creat("empty"));
    x.fails(Op::Lseek(b("empty"), 0, libc::SEEK_DATA), libc::ENXIO);
    x.fails(Op::Lseek(b("empty"), 0, libc::SEEK_HOLE), libc::ENXIO);
    // A hole in the middle, at page granularity on tmpfs.
    x.ok(creat("mid"));
    x.ok(write("mid", 0, "a"));
    x.ok(write("mid", 1 << 20, "b"));
    x.run(Op::Lseek(b("mid"), 0, libc::SEEK_HOLE));
    x.run(Op::Lseek(b("mid"), 1, libc::SEEK_DATA));
    x.run(Op::Lseek(b("mid"), 5000, libc::SEEK_DATA));
    // Truncating a sparse file down frees its tail.
    x.expect(truncate("s", 4), OK);
    x.check_tree();
}

#[test]
fn access_checks() {
    use libc::{F_OK, R_OK, W_OK, X_OK};
    let mut x = Pair::new();
    x.ok(creat("f"));
    x.expect(Op::Access(b("f"), F_OK), OK);
    x.expect(Op::Access(b("f"), R_OK | W_OK), OK);
    // Root needs at least one x bit to execute a file.
    x.fails(Op::Access(b("f"), X_OK), libc::EACCES);
    x.ok(chmod("f", 0o100));
    x.expect(Op::Access(b("f"), X_OK | R_OK | W_OK), OK);
    x.ok(chmod("f", 0o000));
    x.expect(Op::Access(b("f"), R_OK | W_OK), OK);
    x.fails(Op::Access(b("f"), X_OK), libc::EACCES);
    x.ok(mkdir("d"));
    x.ok(chmod("d", 0o000));
    x.expect(Op::Access(b("d"), R_OK | W_OK | X_OK), OK);
    x.fails(Op::Access(b("nope"), F_OK), libc::ENOENT);
    x.fails(Op::Access(b("f/x"), F_OK), libc::ENOTDIR);
    x.ok(symlink("nope", "dl"));
    x.fails(Op::Access(b("dl"), F_OK), libc::ENOENT);
    x.fails(Op::Access(b("f"), 0o10), libc::EINVAL);
}

#[test]
fn statfs_sanity() {
    let mut x = Pair::new();
    x.ok(creat("f"));
    for side in [&x.tmp, &x.tri] {
        for p in ["", "f"] {
            // SAFETY: statfs is plain old data; valid C string.
            let mut st: libc::statfs = unsafe { std::mem::zeroed() };
            let r = unsafe { libc::statfs(side.c(&b(p)).as_ptr(), &mut st) };
            assert_eq!(r, 0, "{}: statfs {p:?}: {:?}", side.name, Errno(errno()));
            assert_eq!(st.f_namelen, 255, "{}: f_namelen", side.name);
            assert!(st.f_bsize > 0, "{}: f_bsize {}", side.name, st.f_bsize);
            assert!(st.f_frsize > 0, "{}: f_frsize {}", side.name, st.f_frsize);
            assert!(
                st.f_bfree <= st.f_blocks && st.f_bavail <= st.f_blocks,
                "{}: free {} avail {} of {} blocks",
                side.name,
                st.f_bfree,
                st.f_bavail,
                st.f_blocks
            );
            assert!(st.f_ffree <= st.f_files, "{}: inodes", side.name);
        }
    }
}

#[test]
fn non_utf8_names() {
    let high: Vec<u8> = (0x80..=0xffu8).collect();
    // Every byte but NUL and '/': 254 bytes.
    let all: Vec<u8> = (1..=255u8).filter(|&c| c != b'/').collect();
    let mut x = Pair::new();
    let dir = B(vec![0xff, 0xfe]);
    let join = |d: &B, n: &[u8]| B([d.0.as_slice(), b"/", n].concat());
    x.expect(Op::Mkdir(dir.clone(), 0o755), OK);
    let f = join(&dir, &high);
    x.ok(Op::Open(
        f.clone(),
        Fl(libc::O_CREAT | libc::O_WRONLY),
        0o644,
    ));
    x.expect(Op::Write(f.clone(), 0, b("data")), Res::Ok(4));
    x.ok(Op::Open(
        B(all.clone()),
        Fl(libc::O_CREAT | libc::O_WRONLY),
        0o600,
    ));
    x.expect(Op::Rename(f.clone(), B(vec![0xc3, 0x28]), 0), OK);
    x.expect(Op::Link(B(vec![0xc3, 0x28]), f.clone()), OK);
    // (A target under 128 bytes: longer ones differ in st_blocks, see
    // symlink_long_targets.)
    let target = B(high[..100].to_vec());
    x.expect(Op::Symlink(target.clone(), B(vec![0x80])), OK);
    x.expect(Op::Readlink(B(vec![0x80]), 4096), Res::Data(target));
    x.expect(
        Op::SetXattr(f.clone(), B(b"user.\xe9\xff".to_vec()), B(vec![0xfe; 3]), 0),
        OK,
    );
    x.expect(Op::Stat(join(&dir, &[0xe9])), err(libc::ENOENT));
    x.check_tree();
    x.expect(Op::Unlink(f), OK);
    x.expect(Op::Rename(dir.clone(), B(vec![0x90]), 0), OK);
    x.expect(Op::Rmdir(B(vec![0x90])), OK);
    x.check_tree();
}

#[test]
fn long_paths() {
    let x = Pair::new();
    let names: Vec<CString> = (0..41)
        .map(|i| CString::new(format!("{i:03}{}", "x".repeat(97))).unwrap())
        .collect();
    let log = x.same("40 nested 100-byte components through *at calls", |s| {
        let mut log: Vec<String> = Vec::new();
        // SAFETY: valid C strings and buffers; every fd is closed below.
        unsafe {
            let base = s.c(&B::default());
            let mut fds = vec![libc::open(base.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY)];
            assert!(fds[0] >= 0);
            let mut full = base.as_bytes().to_vec();
            for (i, n) in names.iter().enumerate() {
                let fd = *fds.last().unwrap();
                let r = libc::mkdirat(fd, n.as_ptr(), 0o755);
                let next = libc::openat(fd, n.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
                if r < 0 || next < 0 {
                    log.push(format!("level {i}: mkdirat {r} openat {next} {:?}", Errno(errno())));
                    break;
                }
                fds.push(next);
                full.push(b'/');
                full.extend_from_slice(n.as_bytes());
                if i == 39 || i == 40 {
                    // The file at the bottom, created through the fd.
                    let fname = c"file";
                    let f = libc::openat(next, fname.as_ptr(), libc::O_CREAT | libc::O_RDWR, 0o644);
                    let w = libc::write(f, b"deep".as_ptr().cast(), 4);
                    let mut st = zstat();
                    libc::fstat(f, &mut st);
                    libc::close(f);
                    let mut fp = full.clone();
                    fp.extend_from_slice(b"/file");
                    let fp_len = fp.len() - base.as_bytes().len();
                    let cfp = CString::new(fp).unwrap();
                    let mut st2 = zstat();
                    let r2 = libc::lstat(cfp.as_ptr(), &mut st2);
                    let e2 = if r2 < 0 { Some(Errno(errno())) } else { None };
                    let mut st3 = zstat();
                    let r3 = libc::fstatat(next, c"file".as_ptr(), &mut st3, 0);
                    log.push(format!(
                        "level {i}: create fd {} write {w} size {} | abs lstat (+{fp_len} bytes) {r2} {e2:?} size {} | fstatat {r3} size {}",
                        f >= 0,
                        st.st_size,
                        st2.st_size,
                        st3.st_size
                    ));
                }
            }
            // Walk back up through "..".
            let top = *fds.last().unwrap();
            let mut st = zstat();
            let mut up = Vec::new();
            for _ in 0..41 {
                up.extend_from_slice(b"../");
            }
            let cup = CString::new(up).unwrap();
            let r = libc::fstatat(top, cup.as_ptr(), &mut st, 0);
            let mut bst = zstat();
            libc::stat(base.as_ptr(), &mut bst);
            log.push(format!("41 x ..: {r} is base: {}", st.st_ino == bst.st_ino));
            // Remove bottom-up.
            let n = fds.len();
            for lvl in (0..n - 1).rev() {
                let fd = fds[lvl + 1];
                let u = libc::unlinkat(fd, c"file".as_ptr(), 0);
                let r = libc::unlinkat(fds[lvl], names[lvl].as_ptr(), libc::AT_REMOVEDIR);
                let e = if r != 0 { Some(Errno(errno())) } else { None };
                if u == 0 || r != 0 {
                    log.push(format!("remove level {lvl}: unlink file {u} rmdir {r} {e:?}"));
                }
            }
            for fd in fds {
                libc::close(fd);
            }
        }
        log
    });
    // The oracle reached the intended cases: an absolute path just under
    // PATH_MAX works, one level more is too long.
    assert_eq!(
        log,
        [
            "level 39: create fd true write 4 size 4 | abs lstat (+4045 bytes) 0 None size 4 | fstatat 0 size 4",
            "level 40: create fd true write 4 size 4 | abs lstat (+4146 bytes) -1 Some(ENAMETOOLONG) size 0 | fstatat 0 size 4",
            "41 x ..: 0 is base: true",
            "remove level 40: unlink file 0 rmdir 0 None",
            "remove level 39: unlink file 0 rmdir 0 None",
        ],
        "test expectation wrong (tmpfs log)"
    );
    x.check_tree();
}

#[test]
fn large_directory_listing() {
    let mut x = Pair::new();
    x.ok(mkdir("big"));
    for i in 0..400 {
        let name = format!("big/{i:04}-{}", "n".repeat(i % 200));
        match i % 4 {
            0 => x.ok(mkdir(&name)),
            1 => x.ok(symlink("target", &name)),
            2 => x.ok(Op::Mknod(b(&name), libc::S_IFIFO | 0o600, 0)),
            _ => x.ok(creat(&name)),
        }
    }
    for i in (0..400).step_by(3) {
        let name = format!("big/{i:04}-{}", "n".repeat(i % 200));
        if i % 4 == 0 {
            x.ok(rmdir(&name));
        } else {
            x.ok(unlink(&name));
        }
    }
    x.check_tree();
    // d_ino agrees with st_ino for every entry, "." and ".." included.
    x.same("entries whose d_ino differs from lstat's st_ino", |s| {
        let list = s.list_dir(&b("big")).expect("list big");
        let c = s.c(&b("big"));
        let mut bad = Vec::new();
        // SAFETY: valid C string; the stream is closed below.
        unsafe {
            let d = libc::opendir(c.as_ptr());
            assert!(!d.is_null());
            loop {
                let e = libc::readdir(d);
                if e.is_null() {
                    break;
                }
                let name = CStr::from_ptr((*e).d_name.as_ptr()).to_bytes().to_vec();
                let p = B([b"big/".as_slice(), &name].concat());
                let ino = s.lstat(&p).map(|st| st.st_ino);
                if ino != Ok((*e).d_ino) {
                    bad.push(B(name));
                }
            }
            libc::closedir(d);
        }
        (list.len(), bad)
    });
}

/// Runs `f` on a thread whose filesystem uid and gid are `id`: the kernel's
/// permission checks then apply (setfsuid drops the fs capabilities), while
/// the FUSE mount still admits the thread (its real uid stays 0).
fn as_user(x: &mut Pair, id: u32, f: impl FnOnce(&mut Pair) + Send) {
    std::thread::scope(|sc| {
        let h = sc.spawn(|| {
            // SAFETY: per-thread credential changes; no memory involved.
            unsafe {
                libc::setfsgid(id);
                libc::setfsuid(id);
                assert_eq!(libc::setfsuid(u32::MAX) as u32, id, "setfsuid");
            }
            f(x);
        });
        if let Err(e) = h.join() {
            std::panic::resume_unwind(e);
        }
    });
}

#[test]
fn permissions_as_unprivileged_user() {
    let keep = u32::MAX;
    // allow_other: without it fuser answers EACCES to every request whose
    // (fs)uid is not the mounting user's.
    let mut x = Pair::with_args(&["-o", "allow_other"]);
    x.ok(Op::Mkdir(b("pub"), 0o777));
    x.ok(chmod("pub", 0o777));
    x.ok(Op::Mkdir(b("priv"), 0o700));
    x.ok(creat("priv/f"));
    x.ok(creat("rootfile"));
    x.ok(write("rootfile", 0, "root data"));
    x.ok(mkdir("sticky"));
    x.ok(chmod("sticky", 0o1777));
    x.ok(creat("sticky/other"));
    x.ok(chown("sticky/other", 2000, 2000));
    x.ok(mkdir("sg"));
    x.ok(chown("sg", 0, 3000));
    x.ok(chmod("sg", 0o2777));
    x.ok(Op::Mkdir(b("pub/rodir"), 0o555));
    as_user(&mut x, 1000, |x| {
        use libc::{EACCES, EPERM};
        // Search and write permission on directories.
        x.fails(creat("priv/x"), EACCES);
        x.fails(stat("priv/f"), EACCES);
        x.fails(rmdir("priv"), EACCES);
        x.fails(creat("newfile"), EACCES);
        x.fails(creat("pub/rodir/x"), EACCES);
        x.fails(rename("pub", "pub2"), EACCES);
        // Read and write permission on files.
        x.fails(open("rootfile", libc::O_WRONLY), EACCES);
        x.fails(truncate("rootfile", 0), EACCES);
        x.expect(read("rootfile", 0, 100), data("root data"));
        x.fails(setx("rootfile", "user.x", "v", 0), EACCES);
        // Owner-only operations.
        x.fails(chmod("rootfile", 0o666), EPERM);
        x.fails(chown("rootfile", 1000, 1000), EPERM);
        x.fails(
            Op::Utimens(b("rootfile"), T::Set(1, 0), T::Set(1, 0), 0),
            EPERM,
        );
        x.fails(Op::Utimens(b("rootfile"), T::Now, T::Now, 0), EACCES);
        // A file of one's own.
        x.expect(creat("pub/mine"), mode_of(libc::S_IFREG, 0o644));
        x.ok(write("pub/mine", 0, "mine"));
        x.ok(Op::Utimens(b("pub/mine"), T::Set(5, 5), T::Set(6, 6), 0));
        x.expect(chmod("pub/mine", 0o4755), OK);
        x.expect(chmod("pub/mine", 0o6755), OK);
        x.fails(chown("pub/mine", 2000, keep), EPERM);
        x.fails(chown("pub/mine", keep, 2000), EPERM);
        x.expect(chown("pub/mine", keep, 1000), OK);
        x.expect(chmod("pub/mine", 0o6755), OK);
        // Writing and truncating clear setuid and setgid for non-root.
        x.expect(write("pub/mine", 0, "MINE"), Res::Ok(4));
        x.expect(chmod("pub/mine", 0o6755), OK);
        x.expect(truncate("pub/mine", 2), OK);
        x.expect(chmod("pub/mine", 0o6755), OK);
        x.expect(Op::Ftruncate(b("pub/mine"), 3), OK);
        x.expect(chmod("pub/mine", 0o4755), OK);
        x.expect(Op::Append(b("pub/mine"), b("+")), Res::Ok(4));
        // Sticky directories protect other users' entries.
        x.fails(unlink("sticky/other"), EPERM);
        x.fails(rename("sticky/other", "sticky/o2"), EPERM);
        x.fails(rename("pub/mine", "sticky/other"), EPERM);
        x.ok(creat("sticky/mine"));
        x.expect(rename("sticky/mine", "sticky/mine2"), OK);
        x.expect(unlink("sticky/mine2"), OK);
        // Setgid directory: group inherited; a setgid bit requested by a
        // non-member is dropped.
        x.ok(Op::Open(
            b("sg/f"),
            Fl(libc::O_CREAT | libc::O_WRONLY),
            0o2755,
        ));
        x.ok(Op::Mkdir(b("sg/d"), 0o2755));
        x.run(chmod("sg/f", 0o2755));
        // Special files and links.
        x.ok(Op::Mknod(b("pub/fifo"), libc::S_IFIFO | 0o644, 0));
        x.fails(
            Op::Mknod(b("pub/null"), libc::S_IFCHR | 0o644, libc::makedev(1, 3)),
            EPERM,
        );
        x.run(link("rootfile", "pub/hard"));
        x.ok(link("pub/mine", "pub/mine-link"));
        x.ok(symlink("mine", "pub/sym"));
        x.fails(lchown("pub/sym", 0, 0), EPERM);
        x.expect(lchown("pub/sym", keep, 1000), OK);
        x.expect(setx("pub/mine", "user.x", "v", 0), OK);
    });
    x.check_tree();
}

// ---------------------------------------------------------------------------
// Timestamps.
// ---------------------------------------------------------------------------

fn tm(st: &libc::stat) -> [(i64, i64); 3] {
    [
        (st.st_atime, st.st_atime_nsec),
        (st.st_mtime, st.st_mtime_nsec),
        (st.st_ctime, st.st_ctime_nsec),
    ]
}

#[test]
fn explicit_timestamps() {
    let nofollow = libc::AT_SYMLINK_NOFOLLOW;
    let mut x = Pair::new();
    x.ok(creat("f"));
    x.ok(mkdir("d"));
    x.ok(symlink("f", "l"));
    let t1 = T::Set(1_000_000_000, 123_456_789);
    let t2 = T::Set(1_500_000_000, 987_654_321);
    let t3 = T::Set(1_600_000_000, 1);
    for p in ["f", "d"] {
        x.ok(Op::Utimens(b(p), t1, t2, 0));
        x.expect(
            Op::Times(b(p)),
            Res::Times([1_000_000_000, 123_456_789, 1_500_000_000, 987_654_321]),
        );
        x.ok(Op::Utimens(b(p), T::Omit, t3, 0));
        x.expect(
            Op::Times(b(p)),
            Res::Times([1_000_000_000, 123_456_789, 1_600_000_000, 1]),
        );
        x.ok(Op::Utimens(b(p), t3, T::Omit, 0));
        x.expect(
            Op::Times(b(p)),
            Res::Times([1_600_000_000, 1, 1_600_000_000, 1]),
        );
    }
    // Both omitted: nothing changes, not even ctime.
    let before = x.lstat_both("f");
    std::thread::sleep(Duration::from_millis(15));
    x.ok(Op::Utimens(b("f"), T::Omit, T::Omit, 0));
    let after = x.lstat_both("f");
    assert_eq!(tm(&before[0]), tm(&after[0]), "tmpfs: UTIME_OMIT twice");
    assert_eq!(
        tm(&before[1]),
        tm(&after[1]),
        "triefs: times changed by utimensat(UTIME_OMIT, UTIME_OMIT)"
    );
    // Through a symlink, and on the symlink itself.
    x.ok(Op::Utimens(b("l"), t2, t2, 0));
    x.expect(
        Op::Times(b("f")),
        Res::Times([1_500_000_000, 987_654_321, 1_500_000_000, 987_654_321]),
    );
    x.expect(
        Op::Utimens(b("l"), t1, t3, nofollow),
        Res::Times([1_000_000_000, 123_456_789, 1_600_000_000, 1]),
    );

    x.expect(
        Op::Times(b("f")),
        Res::Times([1_500_000_000, 987_654_321, 1_500_000_000, 987_654_321]),
    );
    // Invalid nanoseconds, missing files.
    x.fails(
        Op::Utimens(b("f"), T::Set(0, 1_000_000_000), T::Omit, 0),
        libc::EINVAL,
    );
    x.fails(Op::Utimens(b("f"), T::Set(0, -1), T::Omit, 0), libc::EINVAL);
    x.fails(Op::Utimens(b("nope"), t1, t1, 0), libc::ENOENT);
    // UTIME_NOW: both set to the current time, ctime too.
    x.ok(Op::Utimens(b("f"), T::Now, T::Now, 0));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for (side, st) in ["tmpfs", "triefs"].iter().zip(x.lstat_both("f")) {
        let [a, m, c] = tm(&st);
        assert_eq!(a, m, "{side}: UTIME_NOW atime != mtime");
        assert!(
            (now - m.0).abs() <= 5,
            "{side}: UTIME_NOW gave {m:?}, now {now}"
        );
        assert!(
            c >= m,
            "{side}: ctime {c:?} before mtime {m:?} after UTIME_NOW"
        );
    }
    x.ok(Op::Utimens(b("d"), T::Now, t1, 0));
    for (side, st) in ["tmpfs", "triefs"].iter().zip(x.lstat_both("d")) {
        let [a, m, _] = tm(&st);
        assert_eq!(m, (1_000_000_000, 123_456_789), "{side}: mtime");
        assert!((now - a.0).abs() <= 5, "{side}: UTIME_NOW atime {a:?}");
    }
}

#[test]
fn timestamps_before_1970_and_after_2038() {
    let mut x = Pair::new();
    x.ok(creat("f"));
    x.expect(
        Op::Utimens(
            b("f"),
            T::Set(4_000_000_000, 999_999_999),
            T::Set(1 << 40, 1),
            0,
        ),
        Res::Times([4_000_000_000, 999_999_999, 1 << 40, 1]),
    );
    x.expect(
        Op::Utimens(b("f"), T::Set(0, 0), T::Set(-1, 0), 0),
        Res::Times([0, 0, -1, 0]),
    );
    x.expect(
        Op::Utimens(
            b("f"),
            T::Set(-1_000_000_000, 0),
            T::Set(-1, 999_999_999),
            0,
        ),
        Res::Times([-1_000_000_000, 0, -1, 999_999_999]),
    );
    x.expect(
        Op::Utimens(
            b("f"),
            T::Set(-1_000_000_000, 5),
            T::Set(-2, 500_000_000),
            0,
        ),
        Res::Times([-1_000_000_000, 5, -2, 500_000_000]),
    );
}

/// Whether a timestamp moved forward; panics if it went backwards.
fn moved(side: &str, what: &str, before: (i64, i64), after: (i64, i64)) -> bool {
    assert!(
        after >= before,
        "{side}: {what} went backwards: {before:?} -> {after:?}"
    );
    after > before
}

/// Splits a watched "old>new" path.
fn split(p: &str) -> (&str, &str) {
    p.split_once('>').unwrap_or((p, p))
}

impl Pair {
    /// Pauses 15 ms, runs `op`, and returns for each watched path whether
    /// its (mtime, ctime) moved on tmpfs. A different answer from triefs
    /// is recorded in `bad`. A watched "old>new" is a path the operation
    /// renames.
    fn time_effect(&mut self, op: Op, watch: &[&str], bad: &mut Vec<String>) -> Vec<[bool; 2]> {
        // "old>new": a path that the operation renames.
        let before: Vec<[libc::stat; 2]> =
            watch.iter().map(|p| self.lstat_both(split(p).0)).collect();
        std::thread::sleep(Duration::from_millis(15));
        self.run(op.clone());
        let mut out = Vec::new();
        for (p, b4) in watch.iter().zip(before) {
            let after = self.lstat_both(split(p).1);
            let mut flags = [[false; 2]; 2];
            for s in 0..2 {
                let side = ["tmpfs", "triefs"][s];
                let (t0, t1) = (tm(&b4[s]), tm(&after[s]));
                flags[s] = [
                    moved(side, &format!("mtime of {p:?}"), t0[1], t1[1]),
                    moved(side, &format!("ctime of {p:?}"), t0[2], t1[2]),
                ];
            }
            if flags[0] != flags[1] {
                bad.push(format!(
                    "{op:?}: {p:?} (mtime moved, ctime moved): tmpfs {:?}, triefs {:?}",
                    flags[0], flags[1]
                ));
            }
            out.push(flags[0]);
        }
        out
    }
}

#[test]
fn timestamp_update_rules() {
    const MC: [bool; 2] = [true, true];
    const C: [bool; 2] = [false, true];
    const NONE: [bool; 2] = [false, false];
    let mut x = Pair::new();
    let mut bad = Vec::new();
    x.ok(mkdir("d"));
    x.ok(mkdir("e"));
    let r = x.time_effect(creat("d/f"), &["d", "e"], &mut bad);
    assert_eq!(r, [MC, NONE], "create");
    let r = x.time_effect(mkdir("d/s"), &["d"], &mut bad);
    assert_eq!(r, [MC], "mkdir");
    let r = x.time_effect(
        Op::Mknod(b("d/p"), libc::S_IFIFO | 0o644, 0),
        &["d"],
        &mut bad,
    );
    assert_eq!(r, [MC], "mknod");
    let r = x.time_effect(symlink("f", "d/l"), &["d"], &mut bad);
    assert_eq!(r, [MC], "symlink");
    let r = x.time_effect(write("d/f", 0, "data"), &["d/f", "d"], &mut bad);
    assert_eq!(r, [MC, NONE], "write");
    let r = x.time_effect(Op::Append(b("d/f"), b("more")), &["d/f"], &mut bad);
    assert_eq!(r, [MC], "append");
    let r = x.time_effect(read("d/f", 0, 10), &["d/f"], &mut bad);
    assert_eq!(r, [NONE], "read");
    let r = x.time_effect(chmod("d/f", 0o600), &["d/f", "d"], &mut bad);
    assert_eq!(r, [C, NONE], "chmod");
    let r = x.time_effect(chown("d/f", 1, 1), &["d/f"], &mut bad);
    assert_eq!(r, [C], "chown");
    let r = x.time_effect(setx("d/f", "user.a", "v", 0), &["d/f"], &mut bad);
    assert_eq!(r, [C], "setxattr");
    let r = x.time_effect(Op::RemoveXattr(b("d/f"), b("user.a")), &["d/f"], &mut bad);
    assert_eq!(r, [C], "removexattr");
    let r = x.time_effect(truncate("d/f", 100), &["d/f"], &mut bad);
    assert_eq!(r, [MC], "truncate grow");
    let r = x.time_effect(truncate("d/f", 10), &["d/f"], &mut bad);
    assert_eq!(r, [MC], "truncate shrink");
    x.time_effect(truncate("d/f", 10), &["d/f"], &mut bad);
    x.time_effect(Op::Ftruncate(b("d/f"), 10), &["d/f"], &mut bad);
    let r = x.time_effect(Op::Ftruncate(b("d/f"), 20), &["d/f"], &mut bad);
    assert_eq!(r, [MC], "ftruncate");
    let r = x.time_effect(
        open("d/f", libc::O_WRONLY | libc::O_TRUNC),
        &["d/f"],
        &mut bad,
    );
    assert_eq!(r, [MC], "O_TRUNC");
    x.time_effect(
        open("d/f", libc::O_WRONLY | libc::O_TRUNC),
        &["d/f"],
        &mut bad,
    );
    // fallocate growing the file, then within its size.
    x.time_effect(Op::Fallocate(b("d/f"), 0, 0, 4096), &["d/f"], &mut bad);
    x.time_effect(Op::Fallocate(b("d/f"), 0, 0, 100), &["d/f"], &mut bad);
    let r = x.time_effect(link("d/f", "e/g"), &["d/f", "d", "e"], &mut bad);
    assert_eq!(r, [C, NONE, MC], "link");
    let r = x.time_effect(rename("d/f", "e/f2"), &["d", "e", "d/f>e/f2"], &mut bad);
    assert_eq!(r[..2], [MC, MC], "rename across dirs");
    let r = x.time_effect(rename("e/f2", "e/f3"), &["e", "d", "e/f2>e/f3"], &mut bad);
    assert_eq!(r[..2], [MC, NONE], "rename within a dir");
    x.time_effect(rename("d/s", "e/s"), &["d", "e", "d/s>e/s"], &mut bad);
    x.time_effect(
        rename2("e/s", "d/p", EXCHANGE),
        &["d", "e", "e/s>d/p", "d/p>e/s"],
        &mut bad,
    );
    x.time_effect(rename("e/g", "e/f3"), &["e", "e/g>e/f3"], &mut bad);
    let r = x.time_effect(
        Op::Utimens(b("e/f3"), T::Now, T::Now, 0),
        &["e/f3"],
        &mut bad,
    );
    assert_eq!(r, [MC], "utimensat now");
    let r = x.time_effect(unlink("e/f3"), &["e"], &mut bad);
    assert_eq!(r, [MC], "unlink");
    let r = x.time_effect(rmdir("d/p"), &["d"], &mut bad);
    assert_eq!(r, [MC], "rmdir");
    let r = x.time_effect(unlink("d/l"), &["d"], &mut bad);
    assert_eq!(r, [MC], "unlink symlink");
    // Failed operations change nothing.
    let r = x.time_effect(mkdir("e"), &["e", ""], &mut bad);
    assert_eq!(r, [NONE, NONE], "failed mkdir");
    assert!(
        bad.is_empty(),
        "timestamp rules differ on triefs:\n  {}",
        bad.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// Randomized differential test with shrinking.
// ---------------------------------------------------------------------------

/// Directory-like paths: two top-level directories and one level below.
const DIRS: [&str; 4] = ["p", "q", "p/r", "q/r"];
/// Leaf names, used in the work dir and in every directory.
const NAMES: [&str; 4] = ["a", "b", "c", "d"];

/// A path from a small namespace, so that operations collide often:
/// mostly leaves (a name in the work dir or a directory), with probability
/// `dir_pct` percent one of the directory paths.
fn gen_path(r: &mut Rng, dir_pct: u64) -> B {
    if r.below(100) < dir_pct {
        return b(r.pick(&DIRS));
    }
    let name = r.pick(&NAMES);
    match r.below(4) {
        0 => b(name),
        _ => b(format!("{}/{name}", r.pick(&DIRS))),
    }
}

fn gen_data(r: &mut Rng) -> B {
    let len = 1 + r.below(24) as usize;
    let c = b'a' + r.below(26) as u8;
    B(vec![c; len])
}

/// The generated paths that exist on `side`, with their file types.
fn existing(side: &Side) -> Vec<(B, &'static str)> {
    let mut all: Vec<B> = DIRS.iter().map(b).collect();
    all.extend(NAMES.iter().map(b));
    for d in DIRS {
        all.extend(NAMES.iter().map(|n| b(format!("{d}/{n}"))));
    }
    all.into_iter()
        .filter_map(|p| {
            let st = side.lstat(&p).ok()?;
            Some((p, file_kind(st.st_mode)))
        })
        .collect()
}

/// A random operation. `live` (the oracle's current state) biases the
/// sources of operations towards paths that exist with a fitting type.
fn gen_op(r: &mut Rng, live: &[(B, &'static str)]) -> Op {
    use libc::{O_APPEND, O_CREAT, O_EXCL, O_NONBLOCK, O_TRUNC, O_WRONLY};
    // An existing path whose type is in `kinds` (60 %), else a random one.
    let src = |r: &mut Rng, kinds: &[&str], dir_pct: u64| -> B {
        let fit: Vec<&B> = live
            .iter()
            .filter(|(_, k)| kinds.is_empty() || kinds.contains(k))
            .map(|(p, _)| p)
            .collect();
        if !fit.is_empty() && r.below(100) < 60 {
            fit[r.below(fit.len() as u64) as usize].clone()
        } else {
            gen_path(r, dir_pct)
        }
    };
    const NONDIR: &[&str] = &["file", "symlink", "fifo"];
    const FILE: &[&str] = &["file"];
    const ANY: &[&str] = &[];
    match r.below(100) {
        0..=9 => Op::Mkdir(gen_path(r, 70), r.pick(&[0o755, 0o700, 0o2775])),
        10..=17 => Op::Rmdir(src(r, &["dir"], 70)),
        18..=29 => Op::Open(
            gen_path(r, 10),
            Fl(O_CREAT | O_WRONLY | O_NONBLOCK | r.pick(&[0, 0, O_EXCL, O_TRUNC, O_APPEND])),
            r.pick(&[0o644, 0o600, 0o755]),
        ),
        30..=39 => Op::Unlink(src(r, NONDIR, 10)),
        40..=53 => Op::Rename(
            src(r, ANY, 30),
            gen_path(r, 30),
            r.pick(&[0, 0, 0, 0, NOREPLACE, EXCHANGE]),
        ),
        54..=59 => Op::Link(src(r, NONDIR, 10), gen_path(r, 10)),
        // Targets stay inside the work dir (no leading "..").
        60..=64 => Op::Symlink(
            b(r.pick(&["a", "p/b", "p/../q", "zz", ".", "q/r"])),
            gen_path(r, 10),
        ),
        65..=73 => Op::Write(src(r, FILE, 10), r.below(64) as i64, gen_data(r)),
        74..=78 => Op::Truncate(src(r, FILE, 10), r.pick(&[0, 1, 7, 100, 5000])),
        79..=83 => Op::Chmod(
            src(r, ANY, 30),
            r.pick(&[0o644, 0o600, 0o4755, 0o1777, 0o000, 0o2750]),
            0,
        ),
        84..=86 => Op::Read(src(r, FILE, 10), 0, 200),
        87..=88 => Op::Readlink(src(r, &["symlink"], 10), 64),
        89..=90 => Op::Mknod(gen_path(r, 10), libc::S_IFIFO | 0o644, 0),
        91..=93 => Op::SetXattr(
            src(r, &["file", "dir"], 30),
            b(r.pick(&["user.x", "trusted.y"])),
            gen_data(r),
            r.pick(&[0, libc::XATTR_CREATE, libc::XATTR_REPLACE]),
        ),
        94 => Op::RemoveXattr(src(r, ANY, 30), b(r.pick(&["user.x", "trusted.y"]))),
        95..=96 => Op::Chown(
            src(r, ANY, 30),
            r.pick(&[0, 1000]),
            r.pick(&[0, 1000]),
            r.pick(&[0, libc::AT_SYMLINK_NOFOLLOW]),
        ),
        _ => Op::Append(src(r, FILE, 10), gen_data(r)),
    }
}

/// A cleanup pass: unlink and rmdir of every generated path, deepest
/// first, so that directories get emptied and removed again.
fn cleanup_ops() -> Vec<Op> {
    let mut paths: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
    for d in DIRS.iter().rev() {
        paths.extend(NAMES.iter().map(|n| format!("{d}/{n}")));
    }
    paths.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    let mut ops = Vec::new();
    for p in paths {
        ops.push(Op::Unlink(b(&p)));
        ops.push(Op::Rmdir(b(&p)));
    }
    for d in DIRS.iter().rev() {
        ops.push(Op::Rmdir(b(d)));
    }
    ops
}

/// Runs operations in fresh work dirs `name` on both roots, comparing
/// after every step and the whole trees every 25 steps and at the end.
/// `next(i, oracle)` gives the i-th operation (None: done). Returns the
/// operations run and, on a mismatch, the failing step's index and the
/// mismatch.
fn run_seq(
    tmp_root: &std::path::Path,
    tri_root: &std::path::Path,
    name: &str,
    mut next: impl FnMut(usize, &Side) -> Option<Op>,
    mut stats: Option<&mut BTreeMap<String, [u32; 2]>>,
) -> (Vec<Op>, Option<(usize, String)>) {
    let tmp = make_workdir(tmp_root, name, "tmpfs");
    let tri = make_workdir(tri_root, name, "triefs");
    let mut ops = Vec::new();
    let mut out = None;
    let mut checked = true;
    while let Some(op) = next(ops.len(), &tmp) {
        let i = ops.len();
        ops.push(op.clone());
        let rt = tmp.apply(&op);
        let rm = tri.apply(&op);
        if let Some(st) = stats.as_deref_mut() {
            let dbg = format!("{op:?}");
            let kind = dbg.split('(').next().unwrap_or("?").to_string();
            let e = st.entry(kind).or_default();
            e[usize::from(!matches!(rt, Res::Err(_)))] += 1;
        }
        if let Err(e) = compare_step(&tmp, &tri, &op, &rt, &rm) {
            out = Some((i, e));
            break;
        }
        checked = false;
        if i % 25 == 24 {
            if let Err(e) = compare_trees(&tmp, &tri) {
                out = Some((i, format!("after the step, {e}")));
                break;
            }
            checked = true;
        }
    }
    if out.is_none()
        && !checked
        && let Err(e) = compare_trees(&tmp, &tri)
    {
        out = Some((ops.len() - 1, format!("after the step, {e}")));
    }
    // Free the space; a failure here is not what is being tested.
    let _ = std::fs::remove_dir_all(&tmp.base);
    let _ = std::fs::remove_dir_all(&tri.base);
    (ops, out)
}

/// Delta debugging: removes chunks of operations while the sequence still
/// fails (each candidate in fresh work dirs). Returns the reduced sequence
/// and its mismatch.
fn shrink(
    mut ops: Vec<Op>,
    mut msg: String,
    deadline: Instant,
    mut fails: impl FnMut(&[Op]) -> Option<(usize, String)>,
) -> (Vec<Op>, String, usize) {
    let mut n = 2usize;
    let mut runs = 0;
    while ops.len() >= 2 && Instant::now() < deadline {
        let chunk = ops.len().div_ceil(n);
        let mut reduced = false;
        let mut start = 0;
        while start < ops.len() && Instant::now() < deadline {
            let cand: Vec<Op> = ops[..start]
                .iter()
                .chain(&ops[(start + chunk).min(ops.len())..])
                .cloned()
                .collect();
            runs += 1;
            if let Some((k, m)) = fails(&cand) {
                ops = cand[..=k].to_vec();
                msg = m;
                n = (n - 1).max(2);
                reduced = true;
                break;
            }
            start += chunk;
        }
        if !reduced {
            if n >= ops.len() {
                break;
            }
            n = (n * 2).min(ops.len());
        }
    }
    (ops, msg, runs)
}

#[test]
fn random_differential() {
    let seed = common::seed_from_env("TRIEFS_SEED");
    let count: usize = std::env::var("TRIEFS_RANDOM_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    eprintln!("random_differential: seed {seed} ({count} ops; replay with TRIEFS_SEED={seed})");
    let mut r = Rng::new(seed);
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(0o022) };
    let t = Tmpfs::new();
    let m = TriefsMount::new(&[]);
    let start = Instant::now();
    let mut stats = BTreeMap::new();
    let mut pending: Vec<Op> = Vec::new();
    let (ops, found) = run_seq(
        t.path(),
        m.path(),
        "full",
        |i, oracle| {
            if i >= count {
                return None;
            }
            if i % 300 == 299 {
                pending = cleanup_ops();
                pending.reverse();
            }
            Some(
                pending
                    .pop()
                    .unwrap_or_else(|| gen_op(&mut r, &existing(oracle))),
            )
        },
        Some(&mut stats),
    );
    let mix: Vec<String> = stats
        .iter()
        .map(|(k, [bad, good])| format!("{k} {good}/{}", good + bad))
        .collect();
    eprintln!(
        "random_differential: succeeded/run per op: {}",
        mix.join(", ")
    );
    let Some((k, msg)) = found else {
        eprintln!(
            "random_differential: {count} ops agree ({:?})",
            start.elapsed()
        );
        return;
    };
    let first = format!("step #{k} {:?}: {msg}", ops[k]);
    let mut runs = 0;
    let (min, min_msg, shrink_runs) = shrink(
        ops[..=k].to_vec(),
        msg,
        Instant::now() + Duration::from_secs(40),
        |cand| {
            runs += 1;
            run_seq(
                t.path(),
                m.path(),
                &format!("s{runs}"),
                |i, _| cand.get(i).cloned(),
                None,
            )
            .1
        },
    );
    let mut repro = String::new();
    for (i, op) in min.iter().enumerate() {
        repro.push_str(&format!("  {i}: {op:?}\n"));
    }
    panic!(
        "random_differential (seed {seed}, replay with TRIEFS_SEED={seed}): triefs differs from tmpfs\n\
         first mismatch at {first}\n\n\
         minimal reproducer ({} ops, after {shrink_runs} shrinking runs; last op fails):\n{repro}\
         mismatch of the reproducer: {min_msg}",
        min.len()
    );
}
