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
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileHandle, FileType, Filesystem,
    FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner, Notifier, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
    ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request,
    TimeOrNow, WriteFlags,
};
use log::{debug, error, info};
use parking_lot::{MappedRwLockReadGuard, RwLock, RwLockReadGuard};

mod gate;
pub mod readdir;
mod reply;

use crate::checkpoint;
use crate::control;
use crate::error::Errno as FsErrno;
use crate::fault;
use crate::lsprefix::{self, Caller};
use crate::namespace::acl;
use crate::namespace::data::PAGE;
use crate::namespace::flags;
use crate::namespace::inode::{Kind, ROOT_INO};
use crate::namespace::{Entry, Namespace, NewNode, RENAME_WHITEOUT, SetAttr, XattrReply};
use crate::reconfigure;
use crate::request::Op;
use crate::trace;
use crate::trie::NAME_MAX;
use gate::{At, Ctx, Gate};
use reply::{
    ErrorReply, ListingReply, fail, fix_pre_epoch, fix_time, guarded, negative_attr, serve,
};

/// How long the kernel may cache entries (also negative ones) and
/// attributes. triefs is the only writer and every change goes through the
/// kernel, which updates or invalidates its caches from our replies, so the
/// cache can be trusted for long.
const TTL: Duration = Duration::from_secs(24 * 3600);

/// The TTL of an answer: none for what the kernel must ask again (a fault
/// rule covers it, or the whole mount is traced uncached).
fn ttl(c: &Ctx) -> Duration {
    if c.uncached { Duration::ZERO } else { TTL }
}

/// How an opened file is cached: direct I/O (every read and write reaches
/// the daemon) where a fault rule covers it, else the page cache is kept
/// across opens (only the kernel writes through us).
fn open_flags(c: &Ctx) -> FopenFlags {
    if c.uncached {
        FopenFlags::FOPEN_DIRECT_IO
    } else {
        FopenFlags::FOPEN_KEEP_CACHE
    }
}

/// Largest WRITE request we ask the kernel for (it caps this at its own
/// `max_pages_limit`, 1 MiB by default).
const MAX_WRITE: u32 = 1 << 20;

/// With fault injection on, `setxattr` of this name panics inside the
/// request while holding the namespace write lock.
pub const FAULT_PANIC_XATTR: &str = "user.triefs.fault.panic";

/// What to create for a request: owned by the caller's fsuid/fsgid.
fn spec_for<'a>(req: &Request, kind: Kind, perm: u32, target: Option<&'a [u8]>) -> NewNode<'a> {
    NewNode {
        kind,
        perm,
        uid: req.uid(),
        gid: req.gid(),
        rdev: 0,
        target,
    }
}

/// A mounted triefs: the namespace and how the kernel talks to it.
pub struct TrieFs {
    ns: Arc<RwLock<Namespace>>,
    /// The kernel opens files without asking us (FUSE_NO_OPEN_SUPPORT).
    /// Then open(2) flags are never seen here, so the rules of immutable
    /// and append-only files are applied to each write (and
    /// copy_file_range) instead.
    no_open: bool,
    /// Answer OPEN instead of turning it off ([`TrieFs::serving_opens`]).
    serve_open: bool,
    /// Likewise for directories (FUSE_NO_OPENDIR_SUPPORT).
    no_opendir: bool,
    /// The kernel leaves removing set-id bits and file capabilities to us
    /// (FUSE_HANDLE_KILLPRIV_V2): a write says when, a chown always does.
    killpriv_v2: bool,
    /// Fault injection for tests (see [`FAULT_PANIC_XATTR`]).
    faults: bool,
    /// When set, `destroy` runs the consistency check and records a failure.
    check: Option<Arc<AtomicBool>>,
    /// How to tell the kernel to drop cached attributes; set once the
    /// session exists (see [`TrieFs::notifier_slot`]).
    notifier: Arc<OnceLock<Notifier>>,
    /// The mount's owner: with root, the only user who may save, restore,
    /// delete or export checkpoints.
    owner: u32,
    /// The checkpoint housekeeping thread's state (see
    /// [`TrieFs::after_checkpoint_change`]).
    housekeeping: Arc<Housekeeping>,
    /// The checkpoint being exported, read through a copy of its tree
    /// (one at a time: another export starts over).
    export: parking_lot::Mutex<Option<Export>>,
    /// Fault rules and trace readers, which every request passes.
    gate: Gate,
    /// The namespace tracks durable state (`-o crash`): fsync and
    /// fsyncdir record sync points. Without it they answer at once.
    crash: bool,
}

/// An export in progress (see [`TrieFs::export_page`]).
struct Export {
    name: String,
    /// Tells the checkpoint from a later one of the same name.
    saved: SystemTime,
    view: Namespace,
    plan: crate::tar::ExportPlan,
}

/// Makes the kernel forget what it cached at or below a fault rule's
/// prefix: names first (deepest first; the first missing name of the
/// prefix too, so a cached "no such file" goes), then the attributes and
/// pages of the inodes it holds there.
fn forget_paths(notifier: &OnceLock<Notifier>, cached: &crate::namespace::Cached) {
    let Some(n) = notifier.get() else { return };
    for (dir, name) in &cached.names {
        if let Err(e) = n.inval_entry(INodeNo(*dir), OsStr::from_bytes(name)) {
            debug!("inval_entry {dir}/{:?}: {e}", OsStr::from_bytes(name));
        }
    }
    for &ino in &cached.inodes {
        if let Err(e) = n.inval_inode(INodeNo(ino), 0, 0) {
            debug!("inval_inode ino {ino}: {e}");
        }
    }
}

/// Whether the checkpoint housekeeping thread runs, and whether it has
/// more to do than it knows.
#[derive(Default)]
struct Housekeeping {
    running: AtomicBool,
    again: AtomicBool,
}

/// Makes the kernel drop what it cached of the tree a restore replaced:
/// the names of changed directories that now lead elsewhere (positive and
/// negative entries), then the attributes, pages and listings of changed
/// inodes.
fn forget_cached(notifier: &OnceLock<Notifier>, r: &crate::namespace::checkpoint::Restored) {
    let Some(n) = notifier.get() else {
        return;
    };
    let names = |part: &[(u64, Vec<u8>)]| {
        for (parent, name) in part {
            if let Err(e) = n.inval_entry(INodeNo(*parent), OsStr::from_bytes(name)) {
                // ENOENT: the kernel did not have it.
                if e.raw_os_error() != Some(libc::ENOENT) {
                    debug!("inval_entry of a name in {parent}: {e}");
                }
            }
        }
    };
    let inodes = |part: &[u64]| {
        for &ino in part {
            if let Err(e) = n.inval_inode(INodeNo(ino), 0, 0)
                && e.raw_os_error() != Some(libc::ENOENT)
            {
                debug!("inval_inode ino {ino}: {e}");
            }
        }
    };
    // Each notification is a write(2) the kernel serves at once: with
    // many, two threads halve the wait on two CPUs.
    const SPLIT: usize = 512;
    if r.entries.len() + r.changed.len() < SPLIT {
        names(&r.entries);
        inodes(&r.changed);
        return;
    }
    let (e1, e2) = r.entries.split_at(r.entries.len() / 2);
    let (c1, c2) = r.changed.split_at(r.changed.len() / 2);
    std::thread::scope(|s| {
        let other = std::thread::Builder::new().spawn_scoped(s, || {
            names(e2);
            inodes(c2);
        });
        names(e1);
        inodes(c1);
        if other.is_err() {
            names(e2);
            inodes(c2);
        }
    });
}

/// The bytes of a READ: in place (the namespace stays read-locked until
/// the reply is sent), or copied out.
enum ReadReply<'a> {
    InPlace(MappedRwLockReadGuard<'a, [u8]>),
    Copied(Vec<u8>),
}

/// Starts the housekeeping thread of [`TrieFs::after_checkpoint_change`]
/// unless it runs (then it goes round once more).
fn housekeep(ns: Arc<RwLock<Namespace>>, hk: Arc<Housekeeping>) {
    hk.again.store(true, Ordering::SeqCst);
    if hk.running.swap(true, Ordering::SeqCst) {
        return;
    }
    let flag = hk.clone();
    let spawned = std::thread::Builder::new()
        .name("checkpoints".into())
        .spawn(move || {
            loop {
                hk.again.store(false, Ordering::SeqCst);
                loop {
                    let mut guard = ns.write();
                    let more = guard.reap(REAP_SLICE);
                    // Fair: a request waiting for the lock gets it before
                    // the next slice.
                    parking_lot::RwLockWriteGuard::unlock_fair(guard);
                    if !more {
                        break;
                    }
                }
                let wanted = ns.read().spare_wanted();
                if let Some(source) = wanted {
                    let spare = source.copy();
                    drop(source);
                    ns.write().install_spare(spare);
                }
                hk.running.store(false, Ordering::SeqCst);
                if !hk.again.load(Ordering::SeqCst) || hk.running.swap(true, Ordering::SeqCst) {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        error!("cannot start the checkpoint housekeeping thread: {e}");
        flag.running.store(false, Ordering::SeqCst);
    }
}

/// Inodes freed per hold of the write lock when freeing a replaced tree:
/// about a millisecond.
const REAP_SLICE: usize = 4096;

impl TrieFs {
    /// Wraps a namespace for serving.
    pub fn new(ns: Namespace) -> TrieFs {
        let crash = ns.tracks_durability();
        TrieFs {
            crash,
            ns: Arc::new(RwLock::new(ns)),
            no_open: false,
            serve_open: false,
            no_opendir: false,
            killpriv_v2: false,
            faults: false,
            check: None,
            notifier: Arc::new(OnceLock::new()),
            owner: crate::sys::euid(),
            housekeeping: Arc::default(),
            export: parking_lot::Mutex::new(None),
            gate: Gate::new(false, false),
        }
    }

    /// Makes the mount one for testing programs: `faults` (`-o faults`,
    /// with the rules of `-o faults=FILE`) lets the owner add fault rules;
    /// `uncached` (`-o trace_uncached`) has the kernel send every request,
    /// so a trace is complete. Either serves opens and directory opens
    /// (so a covered file can be opened for direct I/O, and an open can
    /// fail) and FLUSH (so a close can).
    pub fn for_testing(mut self, faults: Option<Vec<fault::Spec>>, uncached: bool) -> TrieFs {
        self.gate = Gate::new(faults.is_some(), uncached);
        for spec in faults.into_iter().flatten() {
            let line = spec.to_line();
            match self.gate.rules().add(spec) {
                Ok(id) => info!("fault rule {id}: {line}"),
                Err(e) => error!("fault rule {line}: {e}"),
            }
        }
        self.gate.update();
        if self.gate.faults_allowed || uncached {
            self.serve_open = true;
        }
        self
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
        self.attrs_changed(dir);
    }

    /// Drops the kernel's cached attributes of `ino` (a negative offset:
    /// not its page cache). Also after a change the kernel does not expect
    /// to move attributes: setting flags moves the change time, but the
    /// kernel keeps what it cached across FUSE ioctls.
    fn attrs_changed(&self, ino: u64) {
        if let Some(n) = self.notifier.get()
            && let Err(e) = n.inval_inode(INodeNo(ino), -1, 0)
        {
            debug!("inval_inode ino {ino}: {e}");
        }
    }

    /// Serves a `triefs checkpoint` request (see [`checkpoint`]).
    fn checkpoint(&self, req: &Request, in_data: &[u8]) -> Result<Vec<u8>, FsErrno> {
        let r = checkpoint::decode_request(in_data)?;
        if r.op.privileged() && req.uid() != 0 && req.uid() != self.owner {
            return Err(FsErrno::new(libc::EPERM));
        }
        let start = Instant::now();
        let nanos = |t: Instant| (t.elapsed().as_nanos() as u64).to_le_bytes().to_vec();
        match r.op {
            checkpoint::Op::Save => {
                self.ns.write().save_checkpoint(&r.name)?;
                info!("checkpoint {} saved in {:?}", r.name, start.elapsed());
                self.after_checkpoint_change();
                Ok(nanos(start))
            }
            checkpoint::Op::Delete => {
                self.ns.write().delete_checkpoint(&r.name)?;
                info!("checkpoint {} deleted", r.name);
                self.after_checkpoint_change();
                Ok(nanos(start))
            }
            checkpoint::Op::List => Ok(checkpoint::encode_list(&self.ns.read().checkpoint_infos())),
            // Answered by `restore`, from a thread of its own.
            checkpoint::Op::Restore | checkpoint::Op::Crash => Err(FsErrno::new(libc::EINVAL)),
            checkpoint::Op::Export => self.export_page(&r.name, &r.cursor),
        }
    }

    /// A sync point (fsync, fdatasync, fsyncdir) with `-o crash`;
    /// nothing to do (no lock taken) without.
    fn sync_point(&self, ino: u64) -> Result<(), FsErrno> {
        if !self.crash {
            return Ok(());
        }
        self.ns.write().fsync(ino)
    }

    /// `triefs checkpoint restore` (`name`), or `triefs crash` (`None`):
    /// swaps the trees under the lock, then,
    /// from a thread of its own, tells the kernel what to forget and only
    /// then replies. The request thread is free meanwhile: forgetting a
    /// name waits for the kernel's lock on its directory, and a request
    /// holding that lock (a create waiting for its answer) needs a free
    /// thread to be answered, whatever `--threads` says.
    fn restore(&self, req: &Request, name: Option<&str>, reply: ReplyIoctl) {
        if req.uid() != 0 && req.uid() != self.owner {
            reply.error(Errno::EPERM);
            return;
        }
        let start = Instant::now();
        let what = name.map_or("crash".to_owned(), |n| format!("checkpoint {n}"));
        let done = match name {
            Some(name) => self.ns.write().restore_checkpoint(name).map(|r| (r, None)),
            None => self.ns.write().crash().map(|c| {
                let counts = [c.reverted, c.lost, c.names_dropped, c.names_back];
                (c.restored, Some(counts))
            }),
        };
        let (restored, crashed) = match done {
            Ok(r) => r,
            Err(e) => {
                debug!("{what}: {e}");
                reply.error(Errno::from_i32(e.code()));
                return;
            }
        };
        let notifier = self.notifier.clone();
        let hk = (self.ns.clone(), self.housekeeping.clone());
        let answer = move || {
            forget_cached(&notifier, &restored);
            let took = start.elapsed();
            info!(
                "{what} restored in {took:?} ({} inodes and {} names invalidated)",
                restored.changed.len(),
                restored.entries.len()
            );
            let mut out = (took.as_nanos() as u64).to_le_bytes().to_vec();
            for v in [
                restored.changed.len() as u64,
                restored.kept,
                restored.orphaned,
                restored.entries.len() as u64,
            ]
            .into_iter()
            .chain(crashed.into_iter().flatten())
            {
                out.extend_from_slice(&v.to_le_bytes());
            }
            reply.ioctl(0, &out);
            housekeep(hk.0, hk.1);
        };
        if let Err(e) = std::thread::Builder::new()
            .name("restore".into())
            .spawn(answer)
        {
            // No thread: the reply (moved into the closure) is dropped,
            // which answers EIO; the tree is restored, the kernel's caches
            // are not dropped, so say so loudly.
            error!("checkpoint restore: cannot start a thread to finish it: {e}");
        }
    }

    /// One page of checkpoint `name` as a tar archive, from `cursor` (empty:
    /// the start). The first page copies the checkpoint's tree (sharing its
    /// data) and plans the archive; the pages after it read that copy, so
    /// the export is consistent whatever happens meanwhile. The copy goes
    /// back to the accounting after the last page, or when another export
    /// starts.
    fn export_page(&self, name: &str, cursor: &[u8]) -> Result<Vec<u8>, FsErrno> {
        let cursor = if cursor.is_empty() {
            crate::tar::Cursor::START
        } else {
            crate::tar::Cursor::from_bytes(cursor)?
        };
        let mut slot = self.export.lock();
        let saved = self
            .ns
            .read()
            .checkpoints()
            .get(name)
            .map(|c| c.time())
            .ok_or(FsErrno::new(libc::ENOENT))?;
        let current = slot
            .as_ref()
            .is_some_and(|e| e.name == name && e.saved == saved);
        if !current {
            if cursor != crate::tar::Cursor::START {
                // A page of an export this daemon no longer has.
                return Err(FsErrno::new(libc::ESTALE));
            }
            let view = self.ns.read().checkpoint_view(name)?;
            let plan = crate::tar::ExportPlan::new(&view);
            let fresh = Export {
                name: name.to_owned(),
                saved,
                view,
                plan,
            };
            if let Some(old) = slot.replace(fresh) {
                self.ns.write().bury(old.view);
            }
        }
        let Some(e) = slot.as_ref() else {
            return Err(FsErrno::new(libc::EIO));
        };
        let mut data = Vec::with_capacity(checkpoint::EXPORT_CHUNK);
        let next = e
            .plan
            .page(&e.view, cursor, checkpoint::EXPORT_CHUNK, &mut data)?;
        let mut out = Vec::with_capacity(data.len() + 32);
        let flags = if next.is_none() {
            checkpoint::FLAG_DONE
        } else {
            0
        };
        out.extend_from_slice(&flags.to_le_bytes());
        let next = next.map(|c| c.to_bytes().to_vec()).unwrap_or_default();
        out.extend_from_slice(&(next.len() as u32).to_le_bytes());
        out.extend_from_slice(&next);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&data);
        if flags == checkpoint::FLAG_DONE
            && let Some(done) = slot.take()
        {
            self.ns.write().bury(done.view);
            self.after_checkpoint_change();
        }
        Ok(out)
    }

    /// After a save, restore or delete: frees the trees a restore
    /// replaced, a slice per hold of the lock, and copies the checkpoint
    /// restored or saved last ahead of the next restore, without the lock
    /// (so that restore itself only swaps trees). One thread at a time.
    fn after_checkpoint_change(&self) {
        housekeep(self.ns.clone(), self.housekeeping.clone());
    }

    /// The namespace, shared: snapshots read it while the mount serves.
    pub fn namespace(&self) -> Arc<RwLock<Namespace>> {
        self.ns.clone()
    }

    /// Has the kernel send every open of a file (`-o strict_open`): an
    /// open for writing of an immutable file, or of an append-only one
    /// without `O_APPEND`, is then refused at open(2) as on tmpfs, not at
    /// the first write. It costs an OPEN and a RELEASE round trip per
    /// open of an existing file (measured: small-file reads several times
    /// slower), which is why it is not the default.
    pub fn serving_opens(mut self) -> TrieFs {
        self.serve_open = true;
        self
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

    /// Answers a request that made an entry `name` in directory `parent`;
    /// the parent's cached attributes are invalidated first.
    fn made(&self, reply: ReplyEntry, parent: u64, name: &OsStr, e: Entry, c: &Ctx) {
        self.dir_changed(parent);
        let is_dir = e.attr.kind == FileType::Directory;
        self.gate.learn(e.attr.ino.0, parent, name, is_dir);
        reply.entry(&ttl(c), &e.attr, Generation(e.generation))
    }

    /// Serves request `op` about `at` through the gate: a fault rule may
    /// delay it, fail it or shorten a write; a trace reader sees it. `work`
    /// does it and `done` answers a success (see [`serve`]), both told how
    /// the kernel may cache the answer.
    fn run<R: ErrorReply, T>(
        &self,
        req: &Request,
        op: Op,
        at: At<'_>,
        reply: R,
        work: impl FnOnce(&Ctx) -> Result<T, FsErrno>,
        done: impl FnOnce(R, T, &Ctx),
    ) {
        self.run_with(req, op, at, None, reply, work, done)
    }

    /// [`TrieFs::run`] for a request about inode `ino` answered with an
    /// empty reply.
    fn answer(
        &self,
        req: &Request,
        op: Op,
        ino: u64,
        reply: ReplyEmpty,
        work: impl FnOnce() -> Result<(), FsErrno>,
    ) {
        self.run(req, op, At::Ino(ino), reply, |_| work(), |r, (), _| r.ok())
    }

    /// Serves unlink or rmdir (`remove`) of `name` in `parent`.
    fn remove(
        &self,
        req: &Request,
        op: Op,
        parent: u64,
        name: &OsStr,
        reply: ReplyEmpty,
        remove: fn(&mut Namespace, u64, &OsStr) -> Result<(), FsErrno>,
    ) {
        let work = |_: &Ctx| remove(&mut self.ns.write(), parent, name);
        self.run(req, op, At::Name(parent, name), reply, work, |r, (), _| {
            self.dir_changed(parent);
            r.ok()
        });
    }

    /// [`TrieFs::run`] for a request on a byte range (shown in traces).
    #[allow(clippy::too_many_arguments)]
    fn run_with<R: ErrorReply, T>(
        &self,
        req: &Request,
        op: Op,
        at: At<'_>,
        range: Option<(u64, u64)>,
        reply: R,
        work: impl FnOnce(&Ctx) -> Result<T, FsErrno>,
        done: impl FnOnce(R, T, &Ctx),
    ) {
        let (ino, name) = at.log();
        let mut w = self.gate.begin(&self.ns, req, op, at);
        if let Some((off, len)) = range {
            Gate::range(&mut w, off, len);
        }
        if let Some(e) = self.gate.apply(&w) {
            debug!("{op}(ino={ino}): injected {e}");
            reply.error(reply::errno(e));
            return self.gate.finish(w, Some(e));
        }
        let ctx = w.as_ref().map_or(Ctx::NORMAL, |w| w.ctx);
        let result = serve(
            op.name(),
            ino,
            name,
            reply,
            || work(&ctx),
            |r, t| done(r, t, &ctx),
        );
        self.gate.finish(w, result);
    }

    /// Serves a listing (`op`: readdir or readdirplus) through the gate:
    /// `fill` copies entries into the reply's buffer under the read lock,
    /// which is released before the reply is sent; it gets the TTL of the
    /// entries' attributes.
    fn list<R: ListingReply>(
        &self,
        req: &Request,
        op: Op,
        ino: u64,
        mut reply: R,
        fill: impl FnOnce(&Namespace, &mut R, Duration) -> Result<(), FsErrno>,
    ) {
        let w = self.gate.begin(&self.ns, req, op, At::Ino(ino));
        if let Some(e) = self.gate.apply(&w) {
            reply.error(reply::errno(e));
            return self.gate.finish(w, Some(e));
        }
        let ttl = ttl(&w.as_ref().map_or(Ctx::NORMAL, |w| w.ctx));
        let filled = guarded(op.name(), ino, || fill(&self.ns.read(), &mut reply, ttl));
        let result = match filled {
            Some(Ok(())) => {
                reply.done();
                None
            }
            Some(Err(e)) => {
                reply.error(fail(op.name(), ino, None, e));
                Some(e)
            }
            None => {
                reply.error(Errno::EIO);
                Some(FsErrno::new(libc::EIO))
            }
        };
        self.gate.finish(w, result);
    }

    /// Serves a `triefs fault` request (see [`fault::wire`]). An added
    /// rule is answered once the kernel has forgotten what it cached of
    /// the paths it covers, from a thread of its own (as a restore: the
    /// kernel's locks may wait for a request a worker must answer).
    fn fault_request(&self, req: &Request, in_data: &[u8], reply: ReplyIoctl) {
        use fault::wire::{OP_ADD, OP_CLEAR, OP_LIST};
        if req.uid() != 0 && req.uid() != self.owner {
            return reply.error(Errno::EPERM);
        }
        let Ok(r) = control::decode(in_data) else {
            return reply.error(Errno::EINVAL);
        };
        match r.op {
            OP_ADD => {
                if !self.gate.faults_allowed {
                    return reply.error(Errno::EOPNOTSUPP);
                }
                let spec = std::str::from_utf8(r.payload)
                    .ok()
                    .and_then(|t| fault::Spec::parse_line(t).ok().flatten());
                let Some(spec) = spec else {
                    return reply.error(Errno::EINVAL);
                };
                let line = spec.to_line();
                let prefix = spec.prefix.clone();
                let id = match self.gate.rules().add(spec) {
                    Ok(id) => id,
                    Err(e) => return reply.error(reply::errno(e)),
                };
                self.gate.update();
                info!("fault rule {id} added: {line}");
                let cached = self.ns.read().cached_under(&prefix);
                let notifier = self.notifier.clone();
                let answer = move || {
                    forget_paths(&notifier, &cached);
                    reply.ioctl(0, &id.to_le_bytes());
                };
                if let Err(e) = std::thread::Builder::new()
                    .name("fault".into())
                    .spawn(answer)
                {
                    error!("fault rule {id}: cannot start a thread to drop cached paths: {e}");
                }
            }
            OP_LIST => {
                let from = usize::try_from(r.arg).unwrap_or(usize::MAX);
                let (text, next) = self.gate.rules().list_page(from, control::MAX_PAYLOAD);
                let mut out = (next.unwrap_or(0) as u32).to_le_bytes().to_vec();
                out.extend_from_slice(&control::with_size(text.as_bytes()));
                reply.ioctl(0, &out);
            }
            OP_CLEAR => {
                let id = (r.arg != 0).then(|| u32::try_from(r.arg).unwrap_or(u32::MAX));
                let cleared = self.gate.rules().clear(id);
                match cleared {
                    Ok(n) => {
                        self.gate.update();
                        self.gate.wake_delayed();
                        info!("fault rules cleared: {n}");
                        reply.ioctl(0, &(n as u32).to_le_bytes());
                    }
                    Err(e) => reply.error(reply::errno(e)),
                }
            }
            _ => reply.error(Errno::EINVAL),
        }
    }

    /// Serves a `triefs trace` request (see [`trace::wire`]).
    fn trace_request(&self, req: &Request, in_data: &[u8]) -> Result<Vec<u8>, FsErrno> {
        use trace::wire::{FLAG_JSON, OP_START, OP_STOP, OP_TAKE, TAKE_MAX};
        if req.uid() != 0 && req.uid() != self.owner {
            return Err(FsErrno::new(libc::EPERM));
        }
        let r = control::decode(in_data)?;
        let id = || u32::try_from(r.arg).map_err(|_| FsErrno::new(libc::EINVAL));
        let out = (|| match r.op {
            OP_START => {
                let prefix =
                    fault::normalize_prefix(r.payload).map_err(|_| FsErrno::new(libc::EINVAL))?;
                let json = r.arg & FLAG_JSON != 0;
                let id = self.gate.tracers().start(prefix, json)?;
                info!("trace reader {id} started");
                Ok(id.to_le_bytes().to_vec())
            }
            OP_TAKE => {
                let (dropped, lines) = self.gate.tracers().take(id()?, TAKE_MAX)?;
                let mut out = dropped.to_le_bytes().to_vec();
                out.extend_from_slice(&control::with_size(lines.as_bytes()));
                Ok(out)
            }
            OP_STOP => self.gate.tracers().stop(id()?).map(|()| Vec::new()),
            _ => Err(FsErrno::new(libc::EINVAL)),
        })();
        // Whatever happened (a reader started, stopped, or found gone: it
        // may have been the last), the gate follows.
        self.gate.update();
        out
    }
}

/// Whether the caller of `req` is in group `gid`: its fsgid, else its
/// supplementary groups, read from `/proc` only when this is asked.
fn caller_in_group(req: &Request, gid: u32) -> bool {
    gid == req.gid() || Caller::of_process(req.uid(), req.gid(), req.pid()).in_group(gid)
}

/// Answers a getxattr or listxattr: the size asked for, or the bytes.
fn xattr_done(reply: ReplyXattr, x: XattrReply) {
    match x {
        XattrReply::Size(n) => reply.size(n),
        XattrReply::Data(d) => reply.data(&d),
    }
}

impl Filesystem for TrieFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        let caps = config.capabilities();
        // NO_OPEN_SUPPORT: opening a file costs no round trip (answering
        // ENOSYS to the first OPEN turns them off; the kernel then keeps the
        // page cache across opens). Serving OPEN would let an immutable
        // file be refused at open(2) as on tmpfs, but costs a round trip
        // per open and a RELEASE per close (measured: small-file reads
        // a quarter to a half slower, see docs/design.md), so writes are
        // checked instead.
        // PARALLEL_DIROPS: lookups and readdirs in one directory may run
        // concurrently (they share our read lock).
        // EXPORT_SUPPORT: the kernel may look up `.` and `..` by inode
        // number, so file handles (open_by_handle_at, NFS) outlive its cache.
        // POSIX_ACL: the kernel enforces ACLs and leaves the umask to us
        // (DONT_MASK), since a default ACL replaces it; we keep ACLs and
        // mode in step (namespace::acl). SETXATTR_EXT, which would tell us
        // when to clear the setgid bit, is not asked for: fuser 0.18 parses
        // only the short setxattr header, so we work that out ourselves.
        // HANDLE_KILLPRIV_V2: we remove set-id bits and file capabilities
        // (a WRITE carries the kernel's verdict; truncation and chown we
        // judge as tmpfs does, fuser 0.18 passing no SETATTR kill flag).
        // In return the kernel marks the superblock SB_NOSEC: it asks for
        // `security.capability` once per file instead of before every
        // write, and a chown no longer costs a GETATTR first.
        let wanted = InitFlags::FUSE_BIG_WRITES
            | InitFlags::FUSE_POSIX_ACL
            | InitFlags::FUSE_DONT_MASK
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_NO_OPEN_SUPPORT
            | InitFlags::FUSE_NO_OPENDIR_SUPPORT
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_EXPORT_SUPPORT
            | InitFlags::FUSE_HANDLE_KILLPRIV_V2;
        // A mount for faults opens covered files for direct I/O; programs
        // that map them (databases do) still may, through the page cache
        // (such mapped access then passes no rule).
        let testing = self.gate.faults_allowed || self.gate.uncached_all;
        let wanted = if testing {
            wanted | InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP
        } else {
            wanted
        };
        if let Err(missing) = config.add_capabilities(wanted & caps) {
            debug!("kernel lacks capabilities {missing:?}");
        }
        debug!("FUSE session initialised; kernel capabilities {caps:?}");
        self.no_open = !self.serve_open && caps.contains(InitFlags::FUSE_NO_OPEN_SUPPORT);
        self.killpriv_v2 = caps.contains(InitFlags::FUSE_HANDLE_KILLPRIV_V2);
        // A mount for faults or full traces answers OPENDIR, so a listing
        // a rule covers is not cached.
        self.no_opendir = !testing && caps.contains(InitFlags::FUSE_NO_OPENDIR_SUPPORT);
        if let Err(max) = config.set_max_write(MAX_WRITE) {
            let _ = config.set_max_write(max);
        }
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let work = || {
            if name.len() > NAME_MAX {
                return Err(FsErrno::new(libc::ENAMETOOLONG));
            }
            let ns = self.ns.read();
            // Never a negative entry for these: the kernel would not cache
            // it, and a plain ENOENT is what it turns into ESTALE.
            match name.as_bytes() {
                b"." => return ns.lookup_dot(parent.0, false).map(Some),
                b".." => return ns.lookup_dot(parent.0, true).map(Some),
                _ => {}
            }
            match ns.lookup(parent.0, name) {
                Ok(e) => Ok(Some(e)),
                Err(e) if e.code() == libc::ENOENT => Ok(None),
                Err(e) => Err(e),
            }
        };
        let w = self
            .gate
            .begin(&self.ns, req, Op::Lookup, At::Name(parent.0, name));
        if let Some(e) = self.gate.apply(&w) {
            reply.error(reply::errno(e));
            return self.gate.finish(w, Some(e));
        }
        let c = w.as_ref().map_or(Ctx::NORMAL, |w| w.ctx);
        let mut missing = false;
        let result = serve(
            "lookup",
            parent.0,
            Some(name),
            reply,
            work,
            |r, e| match e {
                Some(e) => {
                    let is_dir = e.attr.kind == FileType::Directory;
                    self.gate.learn(e.attr.ino.0, parent.0, name, is_dir);
                    r.entry(&ttl(&c), &e.attr, Generation(e.generation))
                }
                // A negative entry the kernel may cache: the next lookup of a
                // missing name costs no round trip.
                None => {
                    missing = true;
                    r.entry(&ttl(&c), &negative_attr(), Generation(0))
                }
            },
        );
        // A trace shows a negative entry as what the program gets.
        let shown = result.or(missing.then(|| FsErrno::new(libc::ENOENT)));
        self.gate.finish(w, shown);
    }

    fn forget(&self, req: &Request, ino: INodeNo, nlookup: u64) {
        let w = self.gate.begin(&self.ns, req, Op::Forget, At::Ino(ino.0));
        guarded("forget", ino.0, || {
            self.ns.write().forget(ino.0, nlookup);
        });
        self.gate.finish(w, None);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let work = |_: &Ctx| self.ns.read().attr(ino.0);
        self.run(req, Op::Getattr, At::Ino(ino.0), reply, work, |r, a, c| {
            r.attr(&ttl(c), &a)
        });
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut changes = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(fix_time),
            mtime: mtime.map(fix_time),
            ctime: ctime.map(fix_pre_epoch),
            // The kernel names the file only for ftruncate(2) (for
            // open(O_TRUNC) it leaves it out). A descriptor shows the file
            // was opened for writing before it became immutable only if
            // opens were checked.
            through_fd: fh.is_some() && !self.no_open,
            killpriv_v2: self.killpriv_v2,
            in_chown: false,
        };
        // Only a request with no change needs it (rare: a chown(-1, -1), or
        // a write to a set-id file or one with capabilities); read before
        // the lock is taken.
        changes.in_chown =
            self.killpriv_v2 && changes.changes_nothing() && crate::sys::in_chown(req.pid());
        let work = || {
            let in_group = |g| caller_in_group(req, g);
            self.ns
                .write()
                .setattr_as(ino.0, changes, req.uid(), in_group)
        };
        self.run(
            req,
            Op::Setattr,
            At::Ino(ino.0),
            reply,
            |_| work(),
            |r, a, c| r.attr(&ttl(c), &a),
        );
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        let work = |_: &Ctx| self.ns.read().readlink(ino.0).map(<[u8]>::to_vec);
        self.run(req, Op::Readlink, At::Ino(ino.0), reply, work, |r, t, _| {
            r.data(&t)
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
        let work = || {
            let mut ns = self.ns.write();
            ns.mknod(parent.0, name, mode, umask, rdev, req.uid(), req.gid())
        };
        let at = At::Name(parent.0, name);
        self.run(
            req,
            Op::Mknod,
            at,
            reply,
            |_| work(),
            |r, e, c| self.made(r, parent.0, name, e, c),
        );
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
        let spec = spec_for(req, Kind::Directory, mode, None);
        let work = || self.ns.write().create_masked(parent.0, name, spec, umask);
        let at = At::Name(parent.0, name);
        self.run(
            req,
            Op::Mkdir,
            at,
            reply,
            |_| work(),
            |r, e, c| self.made(r, parent.0, name, e, c),
        );
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(req, Op::Unlink, parent.0, name, reply, Namespace::unlink);
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(req, Op::Rmdir, parent.0, name, reply, Namespace::rmdir);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let target = Some(target.as_os_str().as_bytes());
        let spec = spec_for(req, Kind::Symlink, 0o777, target);
        let work = || self.ns.write().create_node(parent.0, link_name, spec);
        let at = At::Name(parent.0, link_name);
        self.run(
            req,
            Op::Symlink,
            at,
            reply,
            |_| work(),
            |r, e, c| self.made(r, parent.0, link_name, e, c),
        );
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let work = || {
            let mut ns = self.ns.write();
            if flags.bits() & RENAME_WHITEOUT != 0 {
                let owner = (req.uid(), req.gid());
                ns.rename_whiteout(parent.0, name, newparent.0, newname, flags.bits(), owner)
            } else {
                ns.rename(parent.0, name, newparent.0, newname, flags.bits())
            }
        };
        let at = At::Rename(parent.0, name, newparent.0, newname);
        self.run(
            req,
            Op::Rename,
            at,
            reply,
            |_| work(),
            |r, (), _| {
                self.dir_changed(parent.0);
                if newparent != parent {
                    self.dir_changed(newparent.0);
                }
                r.ok()
            },
        );
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let work = || self.ns.write().link(ino.0, newparent.0, newname);
        let at = At::Link(ino.0, newparent.0, newname);
        self.run(
            req,
            Op::Link,
            at,
            reply,
            |_| work(),
            |r, e, c| self.made(r, newparent.0, newname, e, c),
        );
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let work = || {
            if self.no_open {
                // Stateless opens: the kernel stops sending OPEN and RELEASE.
                return Err(FsErrno::new(libc::ENOSYS));
            }
            self.ns.read().open(ino.0, flags.0)
        };
        // Only the kernel writes through us, so its page cache stays valid;
        // a file a fault rule covers is read and written around it.
        self.run(
            req,
            Op::Open,
            At::Ino(ino.0),
            reply,
            |_| work(),
            |r, (), c| r.opened(FileHandle(0), open_flags(c)),
        );
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let work = |_: &Ctx| {
            // Bytes that lie in one block of pages are answered from
            // there, under the read lock (which only writers wait for):
            // one copy fewer per byte of a cold read, see
            // docs/performance.md. Others are copied out first.
            match RwLockReadGuard::try_map(self.ns.read(), |ns| {
                ns.read_in_place(ino.0, offset, size)
            }) {
                Ok(bytes) => Ok(ReadReply::InPlace(bytes)),
                Err(ns) => ns.read(ino.0, offset, size).map(ReadReply::Copied),
            }
        };
        let range = Some((offset, u64::from(size)));
        self.run_with(
            req,
            Op::Read,
            At::Ino(ino.0),
            range,
            reply,
            work,
            |r, d, _| match d {
                ReadReply::InPlace(bytes) => r.data(&bytes),
                ReadReply::Copied(bytes) => r.data(&bytes),
            },
        );
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // With the writeback cache the kernel resolves O_APPEND itself.
        let append =
            flags.0 & libc::O_APPEND != 0 && !write_flags.contains(WriteFlags::FUSE_WRITE_CACHE);
        let work = |c: &Ctx| {
            // A short-write fault stores and reports only part.
            let data = match c.short_write {
                Some(n) => &data[..data.len().min(n as usize)],
                None => data,
            };
            let mut ns = self.ns.write();
            if self.no_open {
                // The open was not checked: refuse here what tmpfs refuses
                // at open(2), so an immutable file cannot be written and
                // an append-only one only appended to.
                ns.may_write(ino.0, append)?;
            }
            let at = (!append).then_some(offset);
            let (offset, n) = ns.write_begin(ino.0, at, data.len() as u64)?;
            // The kernel's verdict that the writer lacks CAP_FSETID (sent
            // with HANDLE_KILLPRIV_V2 only).
            let mode_changed = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID)
                && ns.remove_privs(ino.0, false, |g| caller_in_group(req, g))?;
            Ok((ns, offset, &data[..n as usize], mode_changed))
        };
        let range = Some((offset, data.len() as u64));
        self.run_with(
            req,
            Op::Write,
            At::Ino(ino.0),
            range,
            reply,
            work,
            |r, (mut ns, offset, data, mode_changed), _| {
                // The kernel keeps the mode it had (a write invalidates
                // only size and times), which exec(2) would still honour.
                if mode_changed {
                    self.attrs_changed(ino.0);
                }
                // Answered before the bytes are copied: the writer goes on
                // (filling its next request) while we copy, under the lock
                // that every other request waits for. The write was checked
                // and cannot fail now. Sequential write + fsync: see
                // docs/performance.md.
                r.written(data.len() as u32);
                if let Err(e) = ns.write_commit(ino.0, offset, data) {
                    error!("write(ino={}): {e} after the checks passed", ino.0);
                }
            },
        );
    }

    fn flush(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        if !self.gate.faults_allowed && !self.gate.uncached_all {
            // Nothing is buffered here; ENOSYS makes the kernel stop
            // sending FLUSH at every close (it treats that as success).
            // A mount for faults or full traces keeps them: a close can
            // then fail, and shows.
            reply.error(Errno::ENOSYS);
            return;
        }
        self.answer(req, Op::Flush, ino.0, reply, || Ok(()));
    }

    fn release(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.answer(req, Op::Release, ino.0, reply, || Ok(()));
    }

    fn fsync(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // fdatasync is an fsync here: the model has no metadata-only loss.
        self.answer(req, Op::Fsync, ino.0, reply, || self.sync_point(ino.0));
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let work = || {
            if self.no_opendir {
                // Stateless listings: the kernel stops sending OPENDIR and
                // RELEASEDIR, and caches listings (its default then).
                return Err(FsErrno::new(libc::ENOSYS));
            }
            self.ns.read().opendir(ino.0)
        };
        // Offsets are name cookies, valid for every open, so the kernel
        // may cache a listing and continue it from any open; not one a
        // fault rule covers.
        self.run(
            req,
            Op::Opendir,
            At::Ino(ino.0),
            reply,
            |_| work(),
            |r, (), c| {
                let flags = if c.uncached {
                    FopenFlags::empty()
                } else {
                    FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE
                };
                r.opened(FileHandle(0), flags)
            },
        );
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        let fill = |ns: &Namespace, r: &mut ReplyDirectory, _: Duration| {
            readdir::fill(ns, ino.0, offset, r)
        };
        self.list(req, Op::Readdir, ino.0, reply, fill);
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        let fill = |ns: &Namespace, r: &mut ReplyDirectoryPlus, ttl: Duration| {
            readdir::fill_plus(ns, ino.0, offset, r, &ttl)
        };
        self.list(req, Op::Readdirplus, ino.0, reply, fill);
    }

    fn releasedir(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.answer(req, Op::Releasedir, ino.0, reply, || Ok(()));
    }

    fn fsyncdir(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.answer(req, Op::Fsyncdir, ino.0, reply, || self.sync_point(ino.0));
    }

    fn statfs(&self, req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        let work = |_: &Ctx| Ok(self.ns.read().usage());
        self.run(req, Op::Statfs, At::Ino(ino.0), reply, work, |r, u, _| {
            let page = PAGE as u32;
            r.statfs(
                u.blocks,
                u.bfree,
                u.bfree,
                u.files,
                u.ffree,
                page,
                NAME_MAX as u32,
                page,
            )
        });
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let work = || {
            // Only an access ACL needs to know who asks (for the setgid
            // bit); /proc is read before the lock is taken.
            let caller = (name.as_bytes() == acl::ACCESS)
                .then(|| Caller::of_process(req.uid(), req.gid(), req.pid()));
            let mut ns = self.ns.write();
            if self.faults && name == FAULT_PANIC_XATTR {
                panic!("injected fault: {FAULT_PANIC_XATTR} while holding the write lock");
            }
            let keep_sgid = caller.is_none_or(|c| {
                c.fsetid || ns.inodes().get(ino.0).is_some_and(|i| c.in_group(i.gid))
            });
            ns.setxattr_as(ino.0, name, value, flags, keep_sgid)
        };
        self.run(
            req,
            Op::Setxattr,
            At::Xattr(ino.0, name),
            reply,
            |_| work(),
            |r, (), _| r.ok(),
        );
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let work = |_: &Ctx| self.ns.read().getxattr(ino.0, name, size);
        self.run(
            req,
            Op::Getxattr,
            At::Xattr(ino.0, name),
            reply,
            work,
            |r, x, _| xattr_done(r, x),
        );
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let work = |_: &Ctx| self.ns.read().listxattr(ino.0, size);
        self.run(
            req,
            Op::Listxattr,
            At::Ino(ino.0),
            reply,
            work,
            |r, x, _| xattr_done(r, x),
        );
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let work = |_: &Ctx| self.ns.write().removexattr(ino.0, name);
        self.run(
            req,
            Op::Removexattr,
            At::Xattr(ino.0, name),
            reply,
            work,
            |r, (), _| r.ok(),
        );
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let work = || {
            self.ns
                .read()
                .access(ino.0, mask.bits(), req.uid(), req.gid())
        };
        self.run(
            req,
            Op::Access,
            At::Ino(ino.0),
            reply,
            |_| work(),
            |r, (), _| r.ok(),
        );
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
        let spec = spec_for(req, Kind::RegularFile, mode, None);
        let work = || self.ns.write().create_masked(parent.0, name, spec, umask);
        let at = At::Name(parent.0, name);
        self.run(
            req,
            Op::Create,
            at,
            reply,
            |_| work(),
            |r, e, c| {
                self.dir_changed(parent.0);
                self.gate.learn(e.attr.ino.0, parent.0, name, false);
                r.created(
                    &ttl(c),
                    &e.attr,
                    Generation(e.generation),
                    FileHandle(0),
                    open_flags(c),
                )
            },
        );
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
        let ino = ino.0;
        // triefs's own control requests, on the root: never faulted or
        // traced (a trace reader's polls would trace themselves).
        if ino == ROOT_INO {
            match cmd {
                checkpoint::IOC_CHECKPOINT => {
                    if let Ok(r) = checkpoint::decode_request(in_data)
                        && matches!(r.op, checkpoint::Op::Restore | checkpoint::Op::Crash)
                    {
                        let crash = r.op == checkpoint::Op::Crash;
                        return self.restore(req, (!crash).then_some(r.name.as_str()), reply);
                    }
                    let work = || self.checkpoint(req, in_data);
                    serve("checkpoint", ino, None, reply, work, |r, out| {
                        r.ioctl(0, &out)
                    });
                    return;
                }
                // Only on the root, the directory the helper opens.
                reconfigure::IOC_RECONFIGURE => {
                    let work = || reconfigure::serve(&self.ns, req.uid(), in_data);
                    serve("remount", ino, None, reply, work, |r, out| r.ioctl(0, &out));
                    return;
                }
                fault::wire::IOC_FAULT => return self.fault_request(req, in_data, reply),
                trace::wire::IOC_TRACE => {
                    let work = || self.trace_request(req, in_data);
                    serve("trace", ino, None, reply, work, |r, out| r.ioctl(0, &out));
                    return;
                }
                _ => {}
            }
        }
        if cmd == lsprefix::IOC_LS {
            let work = || {
                let cursor = lsprefix::decode_request(in_data)?;
                let caller = Caller::of_process(req.uid(), req.gid(), req.pid());
                let page =
                    self.ns
                        .read()
                        .leaves_page(ino, cursor, lsprefix::PAGE_LIMITS, &caller)?;
                Ok(lsprefix::encode_page(&page))
            };
            serve("ls-prefix", ino, None, reply, work, |r, out| {
                r.ioctl(0, &out)
            });
            return;
        }
        let work = |_: &Ctx| match cmd {
            // The kernel sends these for FS_IOC_* on a file or directory
            // after its own checks (owner, CAP_LINUX_IMMUTABLE), with an
            // int or a struct fsxattr in and out.
            flags::IOC_GETFLAGS => Ok(self.ns.read().get_flags(ino)?.to_ne_bytes().to_vec()),
            flags::IOC_SETFLAGS => {
                let fs = flags::flags_from_bytes(in_data)?;
                self.ns.write().set_flags(ino, fs).map(|()| Vec::new())
            }
            flags::IOC_FSGETXATTR => Ok(self.ns.read().get_fsxattr(ino)?.to_bytes().to_vec()),
            flags::IOC_FSSETXATTR => {
                let x = flags::FsXattr::from_bytes(in_data)?;
                self.ns.write().set_fsxattr(ino, x).map(|()| Vec::new())
            }
            _ => Err(FsErrno::new(libc::ENOTTY)),
        };
        self.run(req, Op::Ioctl, At::Ino(ino), reply, work, |r, out, _| {
            if matches!(cmd, flags::IOC_SETFLAGS | flags::IOC_FSSETXATTR) {
                self.attrs_changed(ino);
            }
            r.ioctl(0, &out)
        });
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        // The kernel's FUSE layer does not remove set-id bits and file
        // capabilities on fallocate (it does on write and truncate); tmpfs
        // does, so triefs does it here, with the caller's credentials.
        let work = || {
            let mut ns = self.ns.write();
            ns.fallocate(ino.0, offset, length, mode)?;
            ns.remove_privs(ino.0, req.uid() == 0, |g| caller_in_group(req, g))
        };
        let range = Some((offset, length));
        let at = At::Ino(ino.0);
        self.run_with(
            req,
            Op::Fallocate,
            at,
            range,
            reply,
            |_| work(),
            |r, mode_changed, _| {
                if mode_changed {
                    self.attrs_changed(ino.0);
                }
                r.ok()
            },
        );
    }

    fn lseek(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let work = |_: &Ctx| self.ns.read().lseek(ino.0, offset, whence);
        self.run(req, Op::Lseek, At::Ino(ino.0), reply, work, |r, o, _| {
            r.offset(o)
        });
    }

    fn copy_file_range(
        &self,
        req: &Request,
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
        let work = || {
            let mut ns = self.ns.write();
            if self.no_open {
                // As for writes (the target is never O_APPEND: the kernel
                // refuses that itself).
                ns.may_write(ino_out.0, false)?;
            }
            let n = ns.copy_range(ino_in.0, offset_in, ino_out.0, offset_out, len)?;
            // The kernel asks for the removal of set-id bits before the
            // copy only with the classic protocol (with HANDLE_KILLPRIV_V2
            // it flags writes alone): as for fallocate, do it here.
            let mode_changed =
                n > 0 && ns.remove_privs(ino_out.0, req.uid() == 0, |g| caller_in_group(req, g))?;
            Ok((n, mode_changed))
        };
        let range = Some((offset_out, len));
        let at = At::Ino(ino_out.0);
        self.run_with(
            req,
            Op::CopyFileRange,
            at,
            range,
            reply,
            |_| work(),
            |r, (n, mode_changed), _| {
                if mode_changed {
                    self.attrs_changed(ino_out.0);
                }
                r.written(n)
            },
        );
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
