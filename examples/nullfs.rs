//! The FUSE floor probe: a filesystem that does nothing. Every lookup of
//! any name answers the same empty file with zero cache timeouts, so each
//! `stat(MNT/x)` is exactly one LOOKUP round trip to this daemon. Its
//! request rate is the ceiling for any operation that must reach a daemon.
//!
//! Usage: `nullfs MOUNTPOINT [THREADS]` (foreground; unmount to stop).

use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use fuser::{
    Config, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, ReplyAttr, ReplyEntry,
    Request, Session, SessionACL,
};

struct NullFs {
    requests: AtomicU64,
}

fn attr(ino: u64, kind: FileType) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind,
        perm: if kind == FileType::Directory {
            0o755
        } else {
            0o644
        },
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl Filesystem for NullFs {
    fn lookup(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEntry) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        reply.entry(
            &Duration::ZERO,
            &attr(2, FileType::RegularFile),
            Generation(0),
        );
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let kind = if ino.0 == 1 {
            FileType::Directory
        } else {
            FileType::RegularFile
        };
        reply.attr(&Duration::ZERO, &attr(ino.0, kind));
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(mnt) = args.next() else {
        eprintln!("usage: nullfs MOUNTPOINT [THREADS]");
        std::process::exit(2);
    };
    let threads = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
    let mut config = Config::default();
    config.acl = SessionACL::Owner;
    config.n_threads = Some(threads);
    let fs = NullFs {
        requests: AtomicU64::new(0),
    };
    match Session::new(fs, &mnt, &config).and_then(|s| s.run()) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("nullfs: {e}");
            std::process::exit(1);
        }
    }
}
