//! The FUSE boundary's small helpers: serving one request (the panic
//! guard, errno conversion with logged context), negative entries and
//! time fixes.

use std::ffi::OsStr;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileType, INodeNo, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, TimeOrNow,
};
use log::{Level, error, log};

use crate::error::Errno as FsErrno;
use crate::namespace::data::PAGE;

/// Runs `f` for request `op`; a panic inside is logged with its context
/// and the worker keeps serving (parking_lot locks do not poison, so other
/// requests go on). `None` after a panic.
pub(crate) fn guarded<T>(op: &str, ino: u64, f: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(t) => Some(t),
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            error!("{op}(ino={ino}) panicked: {msg}; answered EIO");
            None
        }
    }
}

/// A reply that can carry an error: each of fuser's reply types.
pub(crate) trait ErrorReply {
    /// Answers with `e`.
    fn error(self, e: Errno);
}

macro_rules! error_reply {
    ($($t:ty),*) => {
        $(impl ErrorReply for $t {
            fn error(self, e: Errno) {
                <$t>::error(self, e)
            }
        })*
    };
}

error_reply!(
    ReplyAttr,
    ReplyCreate,
    ReplyData,
    ReplyDirectory,
    ReplyDirectoryPlus,
    ReplyEmpty,
    ReplyEntry,
    ReplyIoctl,
    ReplyLseek,
    ReplyOpen,
    ReplyStatfs,
    ReplyWrite,
    ReplyXattr
);

/// A listing reply (fuser's two kinds), answered once filled.
pub(crate) trait ListingReply: ErrorReply {
    /// Sends the entries added so far.
    fn done(self);
}

impl ListingReply for ReplyDirectory {
    fn done(self) {
        self.ok()
    }
}

impl ListingReply for ReplyDirectoryPlus {
    fn done(self) {
        self.ok()
    }
}

/// Serves one request, named once by `op` (with `ino` and `name` for the
/// log): `work` does it, taking and releasing the namespace lock itself,
/// so the lock is never held while the reply is written to the kernel;
/// then `done` answers a success, or the error's errno goes back (logged).
/// A panic inside `work` is logged and answered with `EIO`. Returns the
/// error answered, if any.
pub(crate) fn serve<R: ErrorReply, T>(
    op: &str,
    ino: u64,
    name: Option<&OsStr>,
    reply: R,
    work: impl FnOnce() -> Result<T, FsErrno>,
    done: impl FnOnce(R, T),
) -> Option<FsErrno> {
    match guarded(op, ino, work) {
        Some(Ok(t)) => {
            done(reply, t);
            None
        }
        Some(Err(e)) => {
            reply.error(fail(op, ino, name, e));
            Some(e)
        }
        None => {
            reply.error(Errno::EIO);
            Some(FsErrno::new(libc::EIO))
        }
    }
}

/// Attributes of a negative entry: inode 0 tells the kernel "no such name".
pub(crate) fn negative_attr() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: PAGE as u32,
        flags: 0,
    }
}

/// fuser 0.18 turns a kernel time (sec < 0, nsec) into epoch - (|sec| + nsec)
/// instead of epoch - |sec| + nsec; undo that exactly.
pub(crate) fn fix_pre_epoch(t: SystemTime) -> SystemTime {
    match SystemTime::UNIX_EPOCH.duration_since(t) {
        Ok(d) if d.subsec_nanos() != 0 => {
            SystemTime::UNIX_EPOCH - Duration::from_secs(d.as_secs())
                + Duration::from_nanos(u64::from(d.subsec_nanos()))
        }
        _ => t,
    }
}

pub(crate) fn fix_time(t: TimeOrNow) -> TimeOrNow {
    match t {
        TimeOrNow::SpecificTime(t) => TimeOrNow::SpecificTime(fix_pre_epoch(t)),
        now => now,
    }
}

pub(crate) fn errno(e: FsErrno) -> Errno {
    Errno::from_i32(e.code())
}

/// Logs a failed request with its context at debug level (failures such as
/// ENOENT are routine) and converts the error for the reply. Answers to
/// probes are not failures at all and go to trace level only: the kernel
/// asks for `security.capability` before every write, `ls` and `cp -a` for
/// `security.selinux` and the POSIX ACLs (`ENODATA`: not set), and tools
/// try to set ACLs (`EOPNOTSUPP`); at debug level they would bury the
/// failures worth reading.
pub(crate) fn fail(op: &str, ino: u64, name: Option<&OsStr>, e: FsErrno) -> Errno {
    let level = if is_probe_answer(op, name, e) {
        Level::Trace
    } else {
        Level::Debug
    };
    match name {
        Some(n) => log!(level, "{op}(ino={ino}, name={n:?}): {e}"),
        None => log!(level, "{op}(ino={ino}): {e}"),
    }
    errno(e)
}

/// Is this error the expected answer to a probe (see [`fail`])?
fn is_probe_answer(op: &str, name: Option<&OsStr>, e: FsErrno) -> bool {
    let system = name.is_some_and(|n| n.as_encoded_bytes().starts_with(b"system."));
    match (op, e.code()) {
        ("getxattr", libc::ENODATA) => true,
        ("getxattr" | "setxattr" | "removexattr", libc::EOPNOTSUPP) => system,
        _ => false,
    }
}
