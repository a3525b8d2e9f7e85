//! The `fuser::Filesystem` implementation: one thin callback per kernel
//! request, translating it into a [`Namespace`] call and an errno.
//!
//! Locking: one `RwLock` around the namespace (trie + inode table) is the
//! only lock; lookups, reads and listings share it, changes take it
//! exclusively. Opens and directory listings keep no per-open state.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileHandle, FileType, Filesystem,
    FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner, Notifier, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
    ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request,
    TimeOrNow, WriteFlags,
};
use log::{debug, error, info};
use parking_lot::RwLock;

mod readdir;
mod reply;

use crate::error::Errno as FsErrno;
use crate::lsprefix::{self, Caller};
use crate::namespace::data::PAGE;
use crate::namespace::inode::Kind;
use crate::namespace::{Entry, Namespace, NewNode, SetAttr, XattrReply};
use crate::trie::NAME_MAX;
use reply::{fail, fix_pre_epoch, fix_time, guarded, negative_attr};

/// How long the kernel may cache entries (also negative ones) and
/// attributes. triefs is the only writer and every change goes through the
/// kernel, which updates or invalidates its caches from our replies, so the
/// cache can be trusted for long.
const TTL: Duration = Duration::from_secs(24 * 3600);

/// Largest WRITE request we ask the kernel for (it caps this at its own
/// `max_pages_limit`, 1 MiB by default).
const MAX_WRITE: u32 = 1 << 20;

/// With fault injection on, `setxattr` of this name panics inside the
/// request while holding the namespace write lock.
pub const FAULT_PANIC_XATTR: &str = "user.triefs.fault.panic";

/// What to create for a request: owned by the caller's fsuid/fsgid.
fn spec_for<'a>(
    req: &Request,
    kind: Kind,
    perm: u32,
    rdev: u32,
    target: Option<&'a [u8]>,
) -> NewNode<'a> {
    NewNode {
        kind,
        perm,
        uid: req.uid(),
        gid: req.gid(),
        rdev,
        target,
    }
}

/// A mounted triefs: the namespace and how the kernel talks to it.
pub struct TrieFs {
    ns: Arc<RwLock<Namespace>>,
    /// The kernel opens files without asking us (FUSE_NO_OPEN_SUPPORT).
    no_open: bool,
    /// Likewise for directories (FUSE_NO_OPENDIR_SUPPORT).
    no_opendir: bool,
    /// Fault injection for tests (see [`FAULT_PANIC_XATTR`]).
    faults: bool,
    /// When set, `destroy` runs the consistency check and records a failure.
    check: Option<Arc<AtomicBool>>,
    /// How to tell the kernel to drop cached attributes; set once the
    /// session exists (see [`TrieFs::notifier_slot`]).
    notifier: Arc<OnceLock<Notifier>>,
}

impl TrieFs {
    /// Wraps a namespace for serving.
    pub fn new(ns: Namespace) -> TrieFs {
        TrieFs {
            ns: Arc::new(RwLock::new(ns)),
            no_open: false,
            no_opendir: false,
            faults: false,
            check: None,
            notifier: Arc::new(OnceLock::new()),
        }
    }

    /// Where the session's [`Notifier`] goes once the session is created.
    /// Without one, a directory's link count or times can stay stale in
    /// the kernel's attribute cache after a concurrent change (see
    /// `dir_changed`).
    pub fn notifier_slot(&self) -> Arc<OnceLock<Notifier>> {
        self.notifier.clone()
    }

    /// Called after changing the entries of `dir`, before replying.
    ///
    /// The kernel only marks a parent's attributes invalid when a mkdir,
    /// rmdir, create, unlink or rename returns; it does not bump the
    /// parent's attribute version. A lookup, getattr or readdirplus that
    /// read the parent before our change but is answered after it would
    /// then re-install the old nlink/mtime for a whole TTL. An
    /// `inval_inode` notification bumps the version, so such a late reply
    /// is discarded. Sent before our reply, it keeps the old value from
    /// sticking; a single `stat` racing with the change can still see it
    /// (the kernel's own race, documented in the README).
    fn dir_changed(&self, dir: u64) {
        if let Some(n) = self.notifier.get()
            && let Err(e) = n.inval_inode(INodeNo(dir), -1, 0)
        {
            debug!("inval_inode ino {dir}: {e}");
        }
    }

    /// The namespace, shared: snapshots read it while the mount serves.
    pub fn namespace(&self) -> Arc<RwLock<Namespace>> {
        self.ns.clone()
    }

    /// Enables test-only fault injection: setting the xattr
    /// [`FAULT_PANIC_XATTR`] panics inside the request.
    pub fn with_fault_injection(mut self) -> TrieFs {
        self.faults = true;
        self
    }

    /// Runs [`Namespace::check`] at unmount; a violation sets `failed`.
    pub fn check_at_unmount(mut self, failed: Arc<AtomicBool>) -> TrieFs {
        self.check = Some(failed);
        self
    }

    /// Replies to a request that made `name` in directory `parent`.
    fn reply_entry(
        &self,
        reply: ReplyEntry,
        r: Result<Entry, FsErrno>,
        op: &str,
        parent: u64,
        name: &OsStr,
    ) {
        match r {
            Ok(e) => {
                self.dir_changed(parent);
                reply.entry(&TTL, &e.attr, Generation(e.generation))
            }
            Err(e) => reply.error(fail(op, parent, Some(name), e)),
        }
    }
}

impl Filesystem for TrieFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        let caps = config.capabilities();
        // NO_OPEN_SUPPORT: opening a file costs no round trip (answering
        // ENOSYS to the first OPEN turns them off; the kernel then keeps the
        // page cache across opens). PARALLEL_DIROPS: lookups and readdirs in
        // one directory may run concurrently (they share our read lock).
        let wanted = InitFlags::FUSE_BIG_WRITES
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_NO_OPEN_SUPPORT
            | InitFlags::FUSE_NO_OPENDIR_SUPPORT
            | InitFlags::FUSE_PARALLEL_DIROPS;
        if let Err(missing) = config.add_capabilities(wanted & caps) {
            debug!("kernel lacks capabilities {missing:?}");
        }
        debug!("FUSE session initialised; kernel capabilities {caps:?}");
        self.no_open = caps.contains(InitFlags::FUSE_NO_OPEN_SUPPORT);
        self.no_opendir = caps.contains(InitFlags::FUSE_NO_OPENDIR_SUPPORT);
        if let Err(max) = config.set_max_write(MAX_WRITE) {
            let _ = config.set_max_write(max);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        guarded("lookup", parent.0, || {
            if name.len() > NAME_MAX {
                return reply.error(Errno::ENAMETOOLONG);
            }
            match self.ns.read().lookup(parent.0, name) {
                Ok(e) => reply.entry(&TTL, &e.attr, Generation(e.generation)),
                // A negative entry the kernel may cache: the next lookup of a
                // missing name costs no round trip.
                Err(e) if e.code() == libc::ENOENT => {
                    reply.entry(&TTL, &negative_attr(), Generation(0))
                }
                Err(e) => reply.error(fail("lookup", parent.0, Some(name), e)),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        guarded("forget", ino.0, || {
            self.ns.write().forget(ino.0, nlookup);
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        guarded("getattr", ino.0, || match self.ns.read().attr(ino.0) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(fail("getattr", ino.0, None, e)),
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        guarded("setattr", ino.0, || {
            let changes = SetAttr {
                mode,
                uid,
                gid,
                size,
                atime: atime.map(fix_time),
                mtime: mtime.map(fix_time),
                ctime: ctime.map(fix_pre_epoch),
            };
            match self.ns.write().setattr(ino.0, changes) {
                Ok(a) => reply.attr(&TTL, &a),
                Err(e) => reply.error(fail("setattr", ino.0, None, e)),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        guarded("readlink", ino.0, || match self.ns.read().readlink(ino.0) {
            Ok(t) => reply.data(t),
            Err(e) => reply.error(fail("readlink", ino.0, None, e)),
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        guarded("mknod", parent.0, || {
            let kind = match mode & crate::namespace::inode::mode::S_IFMT {
                0 => Some(Kind::RegularFile),
                _ => Kind::from_mode(mode).filter(|k| *k != Kind::Directory && *k != Kind::Symlink),
            };
            let Some(kind) = kind else {
                return reply.error(Errno::EINVAL);
            };
            let spec = spec_for(req, kind, mode & !umask, rdev, None);
            let r = self.ns.write().create_node(parent.0, name, spec);
            self.reply_entry(reply, r, "mknod", parent.0, name);
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        guarded("mkdir", parent.0, || {
            let spec = spec_for(req, Kind::Directory, mode & !umask, 0, None);
            let r = self.ns.write().create_node(parent.0, name, spec);
            self.reply_entry(reply, r, "mkdir", parent.0, name);
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        guarded("unlink", parent.0, || {
            let r = self.ns.write().unlink(parent.0, name);
            match r {
                Ok(()) => {
                    self.dir_changed(parent.0);
                    reply.ok()
                }
                Err(e) => reply.error(fail("unlink", parent.0, Some(name), e)),
            }
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        guarded("rmdir", parent.0, || {
            let r = self.ns.write().rmdir(parent.0, name);
            match r {
                Ok(()) => {
                    self.dir_changed(parent.0);
                    reply.ok()
                }
                Err(e) => reply.error(fail("rmdir", parent.0, Some(name), e)),
            }
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        guarded("symlink", parent.0, || {
            let spec = spec_for(
                req,
                Kind::Symlink,
                0o777,
                0,
                Some(target.as_os_str().as_bytes()),
            );
            let r = self.ns.write().create_node(parent.0, link_name, spec);
            self.reply_entry(reply, r, "symlink", parent.0, link_name);
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        guarded("rename", parent.0, || {
            let r = self
                .ns
                .write()
                .rename(parent.0, name, newparent.0, newname, flags.bits());
            match r {
                Ok(()) => {
                    self.dir_changed(parent.0);
                    if newparent != parent {
                        self.dir_changed(newparent.0);
                    }
                    reply.ok()
                }
                Err(e) => reply.error(fail("rename", parent.0, Some(name), e)),
            }
        });
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        guarded("link", ino.0, || {
            let r = self.ns.write().link(ino.0, newparent.0, newname);
            self.reply_entry(reply, r, "link", newparent.0, newname);
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        guarded("open", ino.0, || {
            if self.no_open {
                // Stateless opens: the kernel stops sending OPEN and RELEASE.
                return reply.error(Errno::ENOSYS);
            }
            match self.ns.read().attr(ino.0) {
                Ok(a) if a.kind == FileType::Directory => reply.error(Errno::EISDIR),
                // Only the kernel writes through us, so its page cache stays valid.
                Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
                Err(e) => reply.error(fail("open", ino.0, None, e)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        guarded("read", ino.0, || {
            match self.ns.read().read(ino.0, offset, size) {
                Ok(d) => reply.data(&d),
                Err(e) => reply.error(fail("read", ino.0, None, e)),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        guarded("write", ino.0, || {
            let mut ns = self.ns.write();
            let append = flags.0 & libc::O_APPEND != 0
                && !write_flags.contains(WriteFlags::FUSE_WRITE_CACHE);
            let offset = if append {
                ns.size(ino.0).unwrap_or(offset)
            } else {
                offset
            };
            match ns.write(ino.0, offset, data) {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(fail("write", ino.0, None, e)),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        guarded("flush", ino.0, || {
            // Nothing is buffered here; ENOSYS makes the kernel stop sending
            // FLUSH at every close (it treats that as success).
            reply.error(Errno::ENOSYS);
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        guarded("fsync", ino.0, || {
            reply.ok();
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        guarded("opendir", ino.0, || {
            if self.no_opendir {
                // Stateless listings: the kernel stops sending OPENDIR and
                // RELEASEDIR, and caches listings (its default then).
                return reply.error(Errno::ENOSYS);
            }
            match self.ns.read().attr(ino.0) {
                Ok(a) if a.kind != FileType::Directory => reply.error(Errno::ENOTDIR),
                // Offsets are name cookies, valid for every open, so the
                // kernel may cache a listing and continue it from any open.
                Ok(_) => reply.opened(
                    FileHandle(0),
                    FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
                ),
                Err(e) => reply.error(fail("opendir", ino.0, None, e)),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        guarded("readdir", ino.0, || {
            match readdir::fill(&self.ns.read(), ino.0, offset, &mut reply) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail("readdir", ino.0, None, e)),
            }
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        guarded("readdirplus", ino.0, || {
            match readdir::fill_plus(&self.ns.read(), ino.0, offset, &mut reply, &TTL) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail("readdirplus", ino.0, None, e)),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        guarded("fsyncdir", ino.0, || {
            reply.ok();
        });
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        guarded("statfs", ino.0, || {
            let u = self.ns.read().usage();
            let page = PAGE as u32;
            reply.statfs(
                u.blocks,
                u.bfree,
                u.bfree,
                u.files,
                u.ffree,
                page,
                NAME_MAX as u32,
                page,
            );
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        guarded("setxattr", ino.0, || {
            let mut ns = self.ns.write();
            if self.faults && name == FAULT_PANIC_XATTR {
                panic!("injected fault: {FAULT_PANIC_XATTR} while holding the write lock");
            }
            match ns.setxattr(ino.0, name, value, flags) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail("setxattr", ino.0, Some(name), e)),
            }
        });
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        guarded("getxattr", ino.0, || {
            match self.ns.read().getxattr(ino.0, name, size) {
                Ok(XattrReply::Size(n)) => reply.size(n),
                Ok(XattrReply::Data(d)) => reply.data(&d),
                Err(e) => reply.error(fail("getxattr", ino.0, Some(name), e)),
            }
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        guarded("listxattr", ino.0, || {
            match self.ns.read().listxattr(ino.0, size) {
                Ok(XattrReply::Size(n)) => reply.size(n),
                Ok(XattrReply::Data(d)) => reply.data(&d),
                Err(e) => reply.error(fail("listxattr", ino.0, None, e)),
            }
        });
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        guarded("removexattr", ino.0, || {
            match self.ns.write().removexattr(ino.0, name) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail("removexattr", ino.0, Some(name), e)),
            }
        });
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        guarded("access", ino.0, || {
            match self
                .ns
                .read()
                .access(ino.0, mask.bits(), req.uid(), req.gid())
            {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail("access", ino.0, None, e)),
            }
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        guarded("create", parent.0, || {
            let spec = spec_for(req, Kind::RegularFile, mode & !umask, 0, None);
            let r = self.ns.write().create_node(parent.0, name, spec);
            match r {
                Ok(e) => {
                    self.dir_changed(parent.0);
                    reply.created(
                        &TTL,
                        &e.attr,
                        Generation(e.generation),
                        FileHandle(0),
                        FopenFlags::FOPEN_KEEP_CACHE,
                    )
                }
                Err(e) => reply.error(fail("create", parent.0, Some(name), e)),
            }
        });
    }

    fn ioctl(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        guarded("ioctl", ino.0, || {
            if cmd != lsprefix::IOC_LS {
                return reply.error(Errno::ENOTTY);
            }
            let cursor = match lsprefix::decode_request(in_data) {
                Ok(c) => c,
                Err(e) => return reply.error(fail("ls-prefix", ino.0, None, e)),
            };
            let caller = Caller::of_process(req.uid(), req.gid(), req.pid());
            let page = self
                .ns
                .read()
                .leaves_page(ino.0, cursor, lsprefix::PAGE_LIMITS, &caller);
            match page {
                Ok(p) => reply.ioctl(0, &lsprefix::encode_page(&p)),
                Err(e) => reply.error(fail("ls-prefix", ino.0, None, e)),
            }
        });
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        guarded("fallocate", ino.0, || {
            match self.ns.write().fallocate(ino.0, offset, length, mode) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail("fallocate", ino.0, None, e)),
            }
        });
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        guarded("lseek", ino.0, || {
            match self.ns.read().lseek(ino.0, offset, whence) {
                Ok(o) => reply.offset(o),
                Err(e) => reply.error(fail("lseek", ino.0, None, e)),
            }
        });
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        ino_in: INodeNo,
        _fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        _fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        guarded("copy_file_range", ino_in.0, || {
            let r = self
                .ns
                .write()
                .copy_range(ino_in.0, offset_in, ino_out.0, offset_out, len);
            match r {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(fail("copy_file_range", ino_in.0, None, e)),
            }
        });
    }

    fn destroy(&mut self) {
        let ns = self.ns.read();
        debug!(
            "destroy: {} inodes, {} data pages",
            ns.inodes().live(),
            ns.pages_used()
        );
        if let Some(failed) = &self.check {
            match ns.check() {
                Ok(()) => info!("consistency check passed ({} inodes)", ns.inodes().live()),
                Err(errors) => {
                    for e in &errors {
                        error!("consistency check: {e}");
                    }
                    failed.store(true, Ordering::SeqCst);
                }
            }
        }
    }
}
