//! The inode table: inode numbers mapped onto inodes, with kernel lookup
//! counts and generation numbers.
//!
//! An inode lives while it has a name (`nlink > 0`) or the kernel still
//! references it (`lookups > 0`). Only then is its slot freed; a reused slot
//! gets a new generation number, so the pair (ino, generation) never names
//! two different files.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::namespace::data::FileData;
use crate::namespace::flags::Flags;
use crate::trie::NodeId;

/// Inode number of the root directory (FUSE's `FUSE_ROOT_ID`).
pub const ROOT_INO: u64 = 1;

/// The type of a file, as stored in an inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Directory.
    Directory,
    /// Regular file.
    RegularFile,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
}

/// File type and set-id bits of `st_mode`, as `u32` on every platform
/// (`mode_t` is 16 bits on macOS). The values are the same everywhere.
pub mod mode {
    /// Mask of the file type bits.
    pub const S_IFMT: u32 = 0o170000;
    /// Directory.
    pub const S_IFDIR: u32 = 0o040000;
    /// Regular file.
    pub const S_IFREG: u32 = 0o100000;
    /// Symbolic link.
    pub const S_IFLNK: u32 = 0o120000;
    /// Named pipe.
    pub const S_IFIFO: u32 = 0o010000;
    /// Socket.
    pub const S_IFSOCK: u32 = 0o140000;
    /// Character device.
    pub const S_IFCHR: u32 = 0o020000;
    /// Block device.
    pub const S_IFBLK: u32 = 0o060000;
    /// Set-user-ID bit.
    pub const S_ISUID: u32 = 0o4000;
    /// Set-group-ID bit.
    pub const S_ISGID: u32 = 0o2000;
    /// Group execute permission.
    pub const S_IXGRP: u32 = 0o010;
}

impl Kind {
    /// The `S_IFMT` bits of this kind.
    pub fn mode_bits(self) -> u32 {
        match self {
            Kind::Directory => mode::S_IFDIR,
            Kind::RegularFile => mode::S_IFREG,
            Kind::Symlink => mode::S_IFLNK,
            Kind::Fifo => mode::S_IFIFO,
            Kind::Socket => mode::S_IFSOCK,
            Kind::CharDevice => mode::S_IFCHR,
            Kind::BlockDevice => mode::S_IFBLK,
        }
    }

    /// The kind for `S_IFMT` bits in `mode`, if it is one.
    pub fn from_mode(mode: u32) -> Option<Kind> {
        Some(match mode & mode::S_IFMT {
            mode::S_IFDIR => Kind::Directory,
            mode::S_IFREG => Kind::RegularFile,
            mode::S_IFLNK => Kind::Symlink,
            mode::S_IFIFO => Kind::Fifo,
            mode::S_IFSOCK => Kind::Socket,
            mode::S_IFCHR => Kind::CharDevice,
            mode::S_IFBLK => Kind::BlockDevice,
            _ => return None,
        })
    }
}

/// A timestamp packed into 12 bytes (`SystemTime` takes 16): seconds
/// since the epoch (negative before 1970) and nanoseconds.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C, packed(4))]
pub struct Time {
    sec: i64,
    nsec: u32,
}

impl Time {
    /// Seconds since the epoch (negative before) and nanoseconds.
    pub fn parts(self) -> (i64, u32) {
        (self.sec, self.nsec)
    }

    /// The time `sec` seconds and `nsec` nanoseconds after the epoch.
    pub fn from_parts(sec: i64, nsec: u32) -> Time {
        Time { sec, nsec }
    }
}

impl From<SystemTime> for Time {
    fn from(t: SystemTime) -> Time {
        match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => Time {
                sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nsec: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                let (back, nsec) = match d.subsec_nanos() {
                    0 => (i128::from(d.as_secs()), 0),
                    n => (i128::from(d.as_secs()) + 1, 1_000_000_000 - n),
                };
                match i64::try_from(-back) {
                    Ok(sec) => Time { sec, nsec },
                    Err(_) => Time {
                        sec: i64::MIN,
                        nsec: 0,
                    },
                }
            }
        }
    }
}

impl From<Time> for SystemTime {
    fn from(t: Time) -> SystemTime {
        let (sec, nsec) = (t.sec, t.nsec);
        let base = if sec >= 0 {
            SystemTime::UNIX_EPOCH + Duration::from_secs(sec as u64)
        } else {
            SystemTime::UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs())
        };
        base + Duration::from_nanos(u64::from(nsec))
    }
}

impl std::fmt::Debug for Time {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (sec, nsec) = (self.sec, self.nsec);
        write!(f, "{sec}.{nsec:09}")
    }
}

/// A symlink target behind a thin pointer, so that [`Content`] stays at
/// 16 bytes (a `Box<[u8]>` is two words).
pub type Target = Box<Box<[u8]>>;

/// What an inode holds besides its attributes. Large variants are boxed:
/// most inodes of a big tree are directories, which need 8 bytes here.
#[derive(Debug)]
pub enum Content {
    /// A directory: its node in the trie (`None` once removed while the
    /// kernel still holds it).
    Dir(Option<NodeId>),
    /// A regular file's bytes, shared with checkpoints until one side
    /// changes them ([`Inode::file_mut`] copies the page map then; the
    /// pages themselves are shared one by one).
    File(Arc<FileData>),
    /// A symlink's target.
    #[allow(clippy::redundant_allocation)]
    Symlink(Target),
    /// FIFOs and sockets (device number 0) and devices (their number).
    Special(u32),
}

/// Extended attributes: name to value.
pub type Xattrs = BTreeMap<Box<[u8]>, Box<[u8]>>;

/// One file, directory, symlink or special file (80 bytes: the fields are
/// ordered and packed so that a million directories stay small).
#[derive(Debug)]
pub struct Inode {
    /// Last access.
    pub atime: Time,
    /// Last content change.
    pub mtime: Time,
    /// Last status change.
    pub ctime: Time,
    /// Permission bits (`0o7777`).
    pub perm: u16,
    /// File type.
    pub kind: Kind,
    /// `chattr` flags (one byte: it fits the padding after `kind`).
    pub flags: Flags,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Generation of this inode number: raised each time the number is
    /// reused, so the kernel can tell the new file from an old one.
    pub(crate) generation: u32,
    /// Number of names (directories: 2 + subdirectories).
    pub nlink: u32,
    /// References the kernel holds (lookups not yet forgotten). Atomic so
    /// that lookups can count under the namespace's read lock.
    pub lookups: AtomicU64,
    /// Type-specific contents.
    pub content: Content,
}

impl Inode {
    /// A new inode of `kind` owned by `uid:gid`, all times `now`.
    pub fn new(kind: Kind, perm: u16, uid: u32, gid: u32, content: Content) -> Inode {
        Self::new_at(kind, perm, uid, gid, content, SystemTime::now())
    }

    /// [`Inode::new`] with all times `now`.
    pub fn new_at(
        kind: Kind,
        perm: u16,
        uid: u32,
        gid: u32,
        content: Content,
        now: SystemTime,
    ) -> Inode {
        let now = Time::from(now);
        Inode {
            atime: now,
            mtime: now,
            ctime: now,
            perm: perm & 0o7777,
            kind,
            flags: Flags::default(),
            uid,
            gid,
            generation: 1,
            nlink: if kind == Kind::Directory { 2 } else { 1 },
            lookups: AtomicU64::new(0),
            content,
        }
    }

    /// Whether mode bits let `uid`, a member of the groups `in_group`
    /// accepts, access this inode for `mask` (`R_OK | W_OK | X_OK` bits), as
    /// the kernel decides it: owner, else group, else other bits; root may
    /// do anything but execute a file nobody can execute.
    pub fn permits(&self, uid: u32, in_group: impl Fn(u32) -> bool, mask: u32) -> bool {
        let perm = u32::from(self.perm);
        if uid == 0 {
            let any_x = perm & 0o111 != 0 || self.kind == Kind::Directory;
            return mask & libc::X_OK as u32 == 0 || any_x;
        }
        let bits = if uid == self.uid {
            perm >> 6
        } else if in_group(self.gid) {
            perm >> 3
        } else {
            perm
        };
        mask & !bits & 7 == 0
    }

    /// Device number (0 unless a device node).
    pub fn rdev(&self) -> u32 {
        match self.content {
            Content::Special(r) => r,
            _ => 0,
        }
    }

    /// Current kernel reference count.
    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    /// Size as reported by `stat`.
    pub fn size(&self) -> u64 {
        match &self.content {
            Content::File(d) => d.size(),
            Content::Symlink(t) => t.len() as u64,
            // Like tmpfs, a directory's size grows with its entries.
            Content::Dir(_) => 0,
            Content::Special(_) => 0,
        }
    }

    /// Stored bytes in 512-byte units.
    pub fn blocks(&self) -> u64 {
        match &self.content {
            Content::File(d) => d.blocks(),
            // tmpfs keeps targets of 128 bytes or more in a page of their own.
            Content::Symlink(t) if t.len() >= 128 => (crate::namespace::data::PAGE / 512) as u64,
            _ => 0,
        }
    }

    /// The file data of a regular file.
    pub fn file(&self) -> Option<&FileData> {
        match &self.content {
            Content::File(d) => Some(d),
            _ => None,
        }
    }

    /// Mutable file data of a regular file: its own copy of the page map
    /// if a checkpoint shared it (the pages stay shared, copy-on-write).
    pub fn file_mut(&mut self) -> Option<&mut FileData> {
        match &mut self.content {
            Content::File(d) => Some(Arc::make_mut(d)),
            _ => None,
        }
    }

    /// Whether a checkpoint shares this file's page map (a write copies
    /// every page it touches).
    pub fn file_shared(&self) -> bool {
        matches!(&self.content, Content::File(d) if Arc::strong_count(d) > 1)
    }

    /// Drops the inode; returns the page buffers that freed: none while
    /// a checkpoint shares its page map, else the pages nobody else holds.
    pub fn release(self) -> u64 {
        match self.content {
            Content::File(d) => Arc::into_inner(d).map_or(0, FileData::release),
            _ => 0,
        }
    }

    /// The trie node of a live directory.
    pub fn dir_node(&self) -> Option<NodeId> {
        match self.content {
            Content::Dir(n) => n,
            _ => None,
        }
    }

    /// Marks a content or status change (`mtime` and `ctime`).
    pub fn touch_modified(&mut self, now: SystemTime) {
        self.mtime = now.into();
        self.ctime = now.into();
    }

    /// A copy for a checkpoint: same attributes and contents (file pages
    /// shared, copy-on-write), no kernel references.
    pub(crate) fn copy(&self) -> Inode {
        let content = match &self.content {
            Content::Dir(n) => Content::Dir(*n),
            Content::File(d) => Content::File(Arc::clone(d)),
            Content::Symlink(t) => Content::Symlink(t.clone()),
            Content::Special(r) => Content::Special(*r),
        };
        Inode {
            atime: self.atime,
            mtime: self.mtime,
            ctime: self.ctime,
            perm: self.perm,
            kind: self.kind,
            flags: self.flags,
            uid: self.uid,
            gid: self.gid,
            generation: self.generation,
            nlink: self.nlink,
            lookups: AtomicU64::new(0),
            content,
        }
    }

    /// Whether `other` shows the kernel exactly what this inode shows
    /// (attributes, and through the times every change of contents,
    /// entries or extended attributes): then a restore need not make the
    /// kernel drop what it cached of it.
    pub(crate) fn same_state(&self, other: &Inode) -> bool {
        (self.atime, self.mtime, self.ctime) == (other.atime, other.mtime, other.ctime)
            && (self.perm, self.kind, self.flags) == (other.perm, other.kind, other.flags)
            && (self.uid, self.gid, self.generation, self.nlink)
                == (other.uid, other.gid, other.generation, other.nlink)
            && match (&self.content, &other.content) {
                // The same page map (the usual case: a file nobody wrote
                // since the save), without reading it.
                (Content::File(a), Content::File(b)) if Arc::ptr_eq(a, b) => true,
                _ => self.size() == other.size() && self.blocks() == other.blocks(),
            }
    }
}

/// Attributes many inodes share (see [`InodeTable::share_attributes`]).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Template {
    kind: Kind,
    /// Regular files: listed (see [`FileData::listed`]).
    listed: bool,
    perm: u16,
    uid: u32,
    gid: u32,
    times: [Time; 3],
}

/// Most distinct templates: more would make finding one slow.
const MAX_TEMPLATES: usize = 256;

/// What a slot holds, in the top bits of [`Slot::tag`].
const FREE: u32 = 0;
const FULL: u32 = 1 << 30;
const SHARED: u32 = 2 << 30;
const TAG: u32 = 3 << 30;

/// `b` of a shared directory that has no name yet (an image loading).
const NO_NODE: u32 = u32::MAX;

/// One inode number's slot: 12 bytes.
/// - free: `a` = the last generation;
/// - full: `a` = index of the inode in [`InodeTable`]'s `full`;
/// - shared (low bits of `tag`: a template): a directory with `a` = nlink,
///   `b` = trie node ([`NO_NODE`] before it has one); a regular file of
///   size `a | b << 32`, no pages, one name. Generation 1, no flags, no
///   xattrs.
#[derive(Clone, Copy)]
struct Slot {
    tag: u32,
    a: u32,
    b: u32,
}

/// An inode as [`InodeTable::get`] returns it: the stored record, or one
/// built from a shared template (changing it goes through
/// [`InodeTable::get_mut`], which gives the inode a record of its own).
pub enum InodeRef<'a> {
    /// An inode with its own record.
    Full(&'a Inode),
    /// An inode that shares its attributes with others.
    Shared(Inode),
}

impl std::ops::Deref for InodeRef<'_> {
    type Target = Inode;
    fn deref(&self) -> &Inode {
        match self {
            InodeRef::Full(i) => i,
            InodeRef::Shared(i) => i,
        }
    }
}

/// Inode numbers mapped onto inodes. Slot `i` holds inode number `i + 1`;
/// a free slot keeps its last generation and waits in the free list.
///
/// An inode has its own 80-byte record, or, when it was loaded in bulk and
/// never changed since, only a 12-byte slot pointing at attributes it
/// shares with others ([`InodeTable::share_attributes`]). Whoever wants to
/// change an inode takes [`InodeTable::get_mut`], which gives it a record.
#[derive(Default)]
pub struct InodeTable {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Records of inodes that have their own (`None`: a free record).
    full: Vec<Option<Inode>>,
    full_free: Vec<u32>,
    templates: Vec<Template>,
    /// Kernel references of shared inodes, which have no record to count
    /// in; only inodes the kernel holds are here.
    shared_lookups: parking_lot::Mutex<HashMap<u64, u64>>,
    /// Entries in `shared_lookups` (changed under its lock).
    shared_held: AtomicU64,
    live: u64,
    /// Extended attributes by inode number, kept out of [`Inode`]: few
    /// inodes have any, and every inode would pay 8 bytes for a pointer.
    xattrs: HashMap<u64, Xattrs>,
    /// [`xattr_space`] of every stored attribute, for the inode limit.
    xattr_bytes: u64,
    /// Numbers a checkpoint holds (one bit each): never given to a new
    /// inode, so a number names one file in the live tree and in every
    /// checkpoint, and a restore can tell the kernel's inodes apart.
    reserved: Vec<u64>,
    /// Free numbers skipped because they were reserved; they go back to
    /// the free list when the reservations change.
    parked: Vec<u32>,
    /// Durable state for `-o crash` (`None`: not tracked, the default):
    /// every change of an inode first records its state at the last sync
    /// point here (see [`crate::namespace::durable`]).
    pub(crate) durable: Option<Box<crate::namespace::durable::Durable>>,
}

/// Heap bytes an inode table holds, by structure.
#[derive(Clone, Copy, Debug, Default)]
pub struct InodeMemory {
    /// Slots (12 bytes per inode number) and the free list.
    pub slots: usize,
    /// Own records (80 bytes each) and their free list.
    pub records: usize,
    /// Inodes with their own record.
    pub full: u64,
    /// Inodes sharing a template.
    pub shared: u64,
}

/// What one extended attribute costs against the inode limit, as tmpfs
/// counts it (`simple_xattr_space`): 40 bytes of bookkeeping, the full
/// name and the value.
pub fn xattr_space(name: &[u8], value: &[u8]) -> u64 {
    40 + name.len() as u64 + value.len() as u64
}

/// The largest inode number (trie nodes store inode numbers in 32 bits).
pub const MAX_INO: u64 = u32::MAX as u64;

impl InodeTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of live inodes.
    pub fn live(&self) -> u64 {
        self.live
    }

    /// Number of slots: every live inode number is at most this.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    fn index(ino: u64) -> Option<usize> {
        usize::try_from(ino.checked_sub(1)?).ok()
    }

    fn slot(&self, ino: u64) -> Option<Slot> {
        self.slots.get(Self::index(ino)?).copied()
    }

    /// Stores a record, returning its index.
    fn add_record(&mut self, inode: Inode) -> u32 {
        match self.full_free.pop() {
            Some(i) => {
                self.full[i as usize] = Some(inode);
                i
            }
            None => {
                self.full.push(Some(inode));
                (self.full.len() - 1) as u32
            }
        }
    }

    /// Stores `inode` under a fresh (or safely reused) number and returns
    /// `(ino, generation)`; `None` when every number up to [`MAX_INO`] is
    /// taken.
    pub fn insert(&mut self, mut inode: Inode) -> Option<(u64, u64)> {
        let (ino, generation) = loop {
            match self.free.pop() {
                Some(i)
                    if self.is_reserved(u64::from(i) + 1)
                        || self.durable_holds(u64::from(i) + 1) =>
                {
                    self.parked.push(i)
                }
                Some(i) => {
                    let g = self.slots[i as usize].a.wrapping_add(1).max(1);
                    break (u64::from(i) + 1, g);
                }
                None => {
                    let n = self.slots.len() as u64 + 1;
                    if n > MAX_INO {
                        return None;
                    }
                    self.slots.push(Slot {
                        tag: FREE,
                        a: 0,
                        b: 0,
                    });
                    if self.is_reserved(n) {
                        self.parked.push((n - 1) as u32);
                        continue;
                    }
                    break (n, 1);
                }
            }
        };
        inode.generation = generation;
        let r = self.add_record(inode);
        self.slots[(ino - 1) as usize] = Slot {
            tag: FULL,
            a: r,
            b: 0,
        };
        self.live += 1;
        if self.durable.is_some() {
            // Its state at the sync point: as it is created.
            self.record_created(ino);
        }
        Some((ino, u64::from(generation)))
    }

    /// The inode built from shared slot `s` of `ino`.
    fn build(&self, ino: u64, s: Slot) -> Option<Inode> {
        let t = self.templates.get((s.tag & !TAG) as usize)?;
        let (nlink, content) = match t.kind {
            Kind::Directory => {
                let node = (s.b != NO_NODE).then(|| NodeId::from_index(s.b));
                (s.a, Content::Dir(node))
            }
            _ => {
                let size = u64::from(s.a) | u64::from(s.b) << 32;
                let data = FileData::pageless(size, t.listed);
                (1, Content::File(Arc::new(data)))
            }
        };
        // Most of the time the kernel holds no shared inode: skip the lock.
        let lookups = if self.shared_held.load(Ordering::Relaxed) == 0 {
            0
        } else {
            self.shared_lookups.lock().get(&ino).copied().unwrap_or(0)
        };
        Some(Inode {
            atime: t.times[0],
            mtime: t.times[1],
            ctime: t.times[2],
            perm: t.perm,
            kind: t.kind,
            flags: Flags::default(),
            uid: t.uid,
            gid: t.gid,
            generation: 1,
            nlink,
            lookups: AtomicU64::new(lookups),
            content,
        })
    }

    /// The kind of `ino` and, for a directory, its trie node, without
    /// building a shared inode.
    pub fn kind_and_node(&self, ino: u64) -> Option<(Kind, Option<NodeId>)> {
        let s = self.slot(ino)?;
        match s.tag & TAG {
            FULL => {
                let i = self.full.get(s.a as usize)?.as_ref()?;
                Some((i.kind, i.dir_node()))
            }
            SHARED => {
                let t = self.templates.get((s.tag & !TAG) as usize)?;
                let node =
                    (t.kind == Kind::Directory && s.b != NO_NODE).then(|| NodeId::from_index(s.b));
                Some((t.kind, node))
            }
            _ => None,
        }
    }

    /// The inode numbered `ino`.
    pub fn get(&self, ino: u64) -> Option<InodeRef<'_>> {
        let s = self.slot(ino)?;
        match s.tag & TAG {
            FULL => self.full.get(s.a as usize)?.as_ref().map(InodeRef::Full),
            SHARED => self.build(ino, s).map(InodeRef::Shared),
            _ => None,
        }
    }

    /// The record of `ino`, if it has one of its own (symlinks, special
    /// files and every changed inode do).
    pub fn record(&self, ino: u64) -> Option<&Inode> {
        let s = self.slot(ino)?;
        if s.tag & TAG != FULL {
            return None;
        }
        self.full.get(s.a as usize)?.as_ref()
    }

    /// Mutable access to inode `ino`; a shared inode gets its own record
    /// first. With durable state tracked (`-o crash`), the inode's state
    /// at its last sync point is recorded first.
    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Inode> {
        if self.durable.is_some() {
            self.record_durable(ino);
        }
        self.get_mut_untracked(ino)
    }

    /// [`InodeTable::get_mut`] for a change that is not the file's state
    /// (the kernel's reference count).
    fn get_mut_untracked(&mut self, ino: u64) -> Option<&mut Inode> {
        let s = self.slot(ino)?;
        let r = match s.tag & TAG {
            FULL => s.a,
            SHARED => {
                let inode = self.build(ino, s)?;
                if self.shared_lookups.get_mut().remove(&ino).is_some() {
                    *self.shared_held.get_mut() -= 1;
                }
                let r = self.add_record(inode);
                self.slots[(ino - 1) as usize] = Slot {
                    tag: FULL,
                    a: r,
                    b: 0,
                };
                r
            }
            _ => return None,
        };
        self.full.get_mut(r as usize)?.as_mut()
    }

    /// Gives directory `ino` its trie node and its first name (`nlink`
    /// 2), without giving a shared one a record.
    pub fn link_dir(&mut self, ino: u64, node: NodeId) {
        let Some(idx) = Self::index(ino) else {
            return;
        };
        match self.slots.get_mut(idx) {
            Some(s) if s.tag & TAG == SHARED => (s.a, s.b) = (2, node.index()),
            Some(_) => {
                if let Some(i) = self.get_mut(ino) {
                    i.content = Content::Dir(Some(node));
                    i.nlink = 2;
                }
            }
            None => {}
        }
    }

    /// One more link to directory `ino` (a new subdirectory), without
    /// giving a shared directory a record: its slot holds the count.
    pub fn add_dir_link(&mut self, ino: u64) {
        let Some(idx) = Self::index(ino) else {
            return;
        };
        match self.slots.get_mut(idx) {
            Some(s) if s.tag & TAG == SHARED => s.a = s.a.saturating_add(1),
            Some(_) => {
                if let Some(i) = self.get_mut(ino) {
                    i.nlink += 1;
                }
            }
            None => {}
        }
    }

    /// Marks a content change of `ino` at `now` (mtime and ctime); a
    /// shared inode whose times are `now` already stays shared.
    pub fn touch(&mut self, ino: u64, now: SystemTime) {
        let t = Time::from(now);
        if let Some(s) = self.slot(ino)
            && s.tag & TAG == SHARED
            && let Some(tm) = self.templates.get((s.tag & !TAG) as usize)
            && tm.times[1] == t
            && tm.times[2] == t
        {
            return;
        }
        if let Some(i) = self.get_mut(ino) {
            i.touch_modified(now);
        }
    }

    /// Generation number of live inode `ino` (0 if there is none).
    pub fn generation(&self, ino: u64) -> u64 {
        match self.slot(ino) {
            Some(s) if s.tag & TAG == FULL => self
                .full
                .get(s.a as usize)
                .and_then(Option::as_ref)
                .map_or(0, |i| u64::from(i.generation)),
            Some(s) if s.tag & TAG == SHARED => 1,
            _ => 0,
        }
    }

    /// Records one more kernel reference (a successful lookup-like reply).
    /// Needs only shared access.
    pub fn add_lookup(&self, ino: u64) {
        match self.slot(ino) {
            Some(s) if s.tag & TAG == FULL => {
                if let Some(Some(i)) = self.full.get(s.a as usize) {
                    i.lookups.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(s) if s.tag & TAG == SHARED => {
                let mut map = self.shared_lookups.lock();
                let n = map.entry(ino).or_default();
                if *n == 0 {
                    self.shared_held.fetch_add(1, Ordering::Relaxed);
                }
                *n += 1;
            }
            _ => {}
        }
    }

    /// Drops `n` kernel references; frees the inode when it has neither
    /// names nor references left. Returns the freed inode, if any.
    pub fn forget(&mut self, ino: u64, n: u64) -> Option<Inode> {
        if self.slot(ino)?.tag & TAG == SHARED {
            // A shared inode has a name (unlinking changes it): it stays.
            let map = self.shared_lookups.get_mut();
            if let Some(l) = map.get_mut(&ino) {
                *l = l.saturating_sub(n);
                if *l == 0 {
                    map.remove(&ino);
                    *self.shared_held.get_mut() -= 1;
                }
            }
            return None;
        }
        let i = self.get_mut_untracked(ino)?;
        let l = i.lookups.get_mut();
        *l = l.saturating_sub(n);
        self.free_if_unused(ino)
    }

    /// Frees `ino` if it has no names and no kernel references.
    pub fn free_if_unused(&mut self, ino: u64) -> Option<Inode> {
        if ino == ROOT_INO {
            return None;
        }
        let s = self.slot(ino)?;
        if s.tag & TAG != FULL {
            return None;
        }
        let i = self.full.get(s.a as usize)?.as_ref()?;
        if i.nlink > 0 || i.lookups() > 0 {
            return None;
        }
        if self.durable.is_some() {
            // A durable name may still bring it back: keep its state.
            self.record_freed(ino);
        }
        let inode = self.full[s.a as usize].take()?;
        self.full_free.push(s.a);
        if let Some(x) = self.xattrs.remove(&ino) {
            let freed: u64 = x.iter().map(|(k, v)| xattr_space(k, v)).sum();
            self.xattr_bytes -= freed;
        }
        self.slots[(ino - 1) as usize] = Slot {
            tag: FREE,
            a: inode.generation,
            b: 0,
        };
        self.free.push((ino - 1) as u32);
        self.live -= 1;
        Some(inode)
    }

    /// Lets inodes loaded in bulk share their attributes: every inode and
    /// template changed at or after `since` gets `stamp` as its times
    /// (those at or after `since`), and every inode [`InodeTable::share`]
    /// accepts gives up its record. Then the records are packed. Returns
    /// the number of inodes that share.
    pub fn share_attributes(&mut self, since: Time, stamp: Time) -> u64 {
        let after = |t: &Time| t.sec > since.sec || (t.sec == since.sec && t.nsec >= since.nsec);
        for t in &mut self.templates {
            for x in &mut t.times {
                if after(x) {
                    *x = stamp;
                }
            }
        }
        for s in self.slots.iter().filter(|s| s.tag & TAG == FULL) {
            if let Some(Some(i)) = self.full.get_mut(s.a as usize) {
                for t in [&mut i.atime, &mut i.mtime, &mut i.ctime] {
                    if after(t) {
                        *t = stamp;
                    }
                }
            }
        }
        self.share_all()
    }

    /// Lets every inode [`InodeTable::share`] accepts share, then packs
    /// the records; returns the number of inodes that share.
    pub fn share_all(&mut self) -> u64 {
        for ino in 1..=self.slots.len() as u64 {
            self.share(ino);
        }
        self.pack_records();
        self.slots.iter().filter(|s| s.tag & TAG == SHARED).count() as u64
    }

    /// Gives up the record of `ino` for a slot pointing at a template of
    /// the same attributes, if it is a plain directory or a listed regular
    /// file with one name, generation 1, no flags, no xattrs and no kernel
    /// references (the root never shares); true if it shares now.
    pub fn share(&mut self, ino: u64) -> bool {
        let Some(s) = self.slot(ino) else {
            return false;
        };
        if s.tag & TAG == SHARED {
            return true;
        }
        if s.tag & TAG != FULL || ino == ROOT_INO || self.xattrs.contains_key(&ino) {
            return false;
        }
        let Some(Some(i)) = self.full.get(s.a as usize) else {
            return false;
        };
        if i.generation != 1 || i.flags != Flags::default() || i.lookups() != 0 {
            return false;
        }
        let (a, b, listed) = match &i.content {
            Content::Dir(node) if i.kind == Kind::Directory => {
                (i.nlink, node.map_or(NO_NODE, NodeId::index), false)
            }
            Content::File(d) if i.kind == Kind::RegularFile && i.nlink == 1 => {
                match d.shareable() {
                    Some((size, listed)) => (size as u32, (size >> 32) as u32, listed),
                    None => return false,
                }
            }
            _ => return false,
        };
        let t = Template {
            kind: i.kind,
            listed,
            perm: i.perm,
            uid: i.uid,
            gid: i.gid,
            times: [i.atime, i.mtime, i.ctime],
        };
        let ti = match self.templates.iter().position(|x| *x == t) {
            Some(ti) => ti,
            None if self.templates.len() < MAX_TEMPLATES => {
                self.templates.push(t);
                self.templates.len() - 1
            }
            None => return false,
        };
        self.full[s.a as usize] = None;
        self.full_free.push(s.a);
        self.slots[(ino - 1) as usize] = Slot {
            tag: SHARED | ti as u32,
            a,
            b,
        };
        true
    }

    /// Moves the remaining records to the front and releases the rest.
    fn pack_records(&mut self) {
        let mut full: Vec<Option<Inode>> = Vec::new();
        for s in self.slots.iter_mut().filter(|s| s.tag & TAG == FULL) {
            if let Some(i) = self.full.get_mut(s.a as usize).and_then(Option::take) {
                s.a = full.len() as u32;
                full.push(Some(i));
            }
        }
        full.shrink_to_fit();
        self.full = full;
        self.full_free = Vec::new();
        self.slots.shrink_to_fit();
    }

    /// Heap bytes held, by structure.
    pub fn memory(&self) -> InodeMemory {
        let shared = self.slots.iter().filter(|s| s.tag & TAG == SHARED).count() as u64;
        InodeMemory {
            slots: self.slots.capacity() * size_of::<Slot>() + self.free.capacity() * 4,
            records: self.full.capacity() * size_of::<Option<Inode>>()
                + self.full_free.capacity() * 4,
            full: self.live - shared,
            shared,
        }
    }

    /// The extended attributes of `ino`, if it has any.
    pub fn xattrs(&self, ino: u64) -> Option<&Xattrs> {
        self.xattrs.get(&ino)
    }

    /// Sets extended attribute `name` of live inode `ino` (the inode gets
    /// its own record: shared ones have no xattrs).
    pub fn set_xattr(&mut self, ino: u64, name: &[u8], value: &[u8]) {
        if self.get_mut(ino).is_some() {
            self.xattr_bytes += xattr_space(name, value);
            let old = self
                .xattrs
                .entry(ino)
                .or_default()
                .insert(name.into(), value.into());
            if let Some(old) = old {
                self.xattr_bytes -= xattr_space(name, &old);
            }
        }
    }

    /// Bytes of extended attributes stored, as [`xattr_space`] counts them.
    pub fn xattr_bytes(&self) -> u64 {
        self.xattr_bytes
    }

    /// Removes extended attribute `name` of `ino`, returning its value.
    pub fn remove_xattr(&mut self, ino: u64, name: &[u8]) -> Option<Box<[u8]>> {
        if self.durable.is_some() && self.xattrs.get(&ino).is_some_and(|x| x.contains_key(name)) {
            self.record_durable(ino);
        }
        let x = self.xattrs.get_mut(&ino)?;
        let v = x.remove(name);
        if x.is_empty() {
            self.xattrs.remove(&ino);
        }
        if let Some(v) = &v {
            self.xattr_bytes -= xattr_space(name, v);
        }
        v
    }

    fn is_reserved(&self, ino: u64) -> bool {
        self.reserved
            .get((ino / 64) as usize)
            .is_some_and(|w| w & (1 << (ino % 64)) != 0)
    }

    /// Marks every number this table uses in `bits` (one bit per number).
    pub(crate) fn mark_used(&self, bits: &mut Vec<u64>) {
        let words = (self.slots.len() + 1).div_ceil(64);
        if bits.len() < words {
            bits.resize(words, 0);
        }
        for (i, s) in self.slots.iter().enumerate() {
            if s.tag & TAG != FREE {
                let ino = i + 1;
                bits[ino / 64] |= 1 << (ino % 64);
            }
        }
    }

    /// Sets the numbers checkpoints hold (see `reserved`); numbers parked
    /// before become candidates again.
    pub(crate) fn set_reserved(&mut self, bits: Vec<u64>) {
        self.reserved = bits;
        self.free.append(&mut self.parked);
    }

    /// A copy for a checkpoint: every inode that has a name, with its
    /// attributes, contents (pages shared) and extended attributes. Inodes
    /// only the kernel still holds (unlinked, open) are left out and their
    /// numbers are free in the copy; no kernel references are copied.
    pub(crate) fn copy(&self) -> InodeTable {
        let mut t = InodeTable {
            slots: self.slots.clone(),
            free: self.free.clone(),
            full: Vec::with_capacity(self.full.len()),
            full_free: self.full_free.clone(),
            templates: self.templates.clone(),
            live: self.live,
            // xattrs and their bytes are set below, without the orphans'.
            ..InodeTable::default()
        };
        t.free.extend_from_slice(&self.parked);
        for r in &self.full {
            t.full.push(r.as_ref().map(Inode::copy));
        }
        for (i, s) in self.slots.iter().enumerate() {
            if s.tag & TAG != FULL {
                continue;
            }
            let Some(Some(inode)) = t.full.get(s.a as usize) else {
                continue;
            };
            if inode.nlink == 0 && i != 0 {
                let generation = inode.generation;
                t.full[s.a as usize] = None;
                t.full_free.push(s.a);
                t.slots[i] = Slot {
                    tag: FREE,
                    a: generation,
                    b: 0,
                };
                t.free.push(i as u32);
                t.live -= 1;
            }
        }
        t.xattrs = self
            .xattrs
            .iter()
            .filter(|(ino, _)| t.slot(**ino).is_some_and(|s| s.tag & TAG != FREE))
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        t.xattr_bytes = t
            .xattrs
            .values()
            .flat_map(|x| x.iter().map(|(k, v)| xattr_space(k, v)))
            .sum();
        t
    }

    /// The inodes the kernel holds references to, with their counts.
    pub(crate) fn held(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let shared: Vec<(u64, u64)> = self
            .shared_lookups
            .lock()
            .iter()
            .map(|(&ino, &n)| (ino, n))
            .collect();
        let full = self.slots.iter().enumerate().filter_map(|(idx, s)| {
            if s.tag & TAG != FULL {
                return None;
            }
            let n = self.full.get(s.a as usize)?.as_ref()?.lookups();
            (n > 0).then_some((idx as u64 + 1, n))
        });
        shared.into_iter().chain(full)
    }

    /// Sets the kernel's reference count of live inode `ino` to `n`.
    pub(crate) fn set_lookups(&mut self, ino: u64, n: u64) {
        let Some(s) = self.slot(ino) else {
            return;
        };
        match s.tag & TAG {
            FULL => {
                if let Some(Some(i)) = self.full.get_mut(s.a as usize) {
                    *i.lookups.get_mut() = n;
                }
            }
            SHARED => {
                let map = self.shared_lookups.get_mut();
                let before = map.len();
                if n == 0 {
                    map.remove(&ino);
                } else {
                    map.insert(ino, n);
                }
                let after = map.len();
                *self.shared_held.get_mut() += after as u64;
                *self.shared_held.get_mut() -= before as u64;
            }
            _ => {}
        }
    }

    /// Takes inode `ino` out of this table, with its extended attributes
    /// (a table about to be dropped: nothing else is updated).
    pub(crate) fn take(&mut self, ino: u64) -> Option<(Inode, Option<Xattrs>)> {
        let s = self.slot(ino)?;
        let inode = match s.tag & TAG {
            FULL => self.full.get_mut(s.a as usize)?.take()?,
            SHARED => self.build(ino, s)?,
            _ => return None,
        };
        self.slots[(ino - 1) as usize].tag = FREE;
        Some((inode, self.xattrs.remove(&ino)))
    }

    /// Puts `inode` under number `ino`, which must be free here (an inode
    /// the kernel still holds, carried over a restore). False if taken.
    pub(crate) fn adopt(&mut self, ino: u64, inode: Inode, xattrs: Option<Xattrs>) -> bool {
        let Some(idx) = Self::index(ino) else {
            return false;
        };
        if idx >= self.slots.len() {
            // The numbers in between are new here: free (reservations still
            // apply when they are handed out).
            let from = self.slots.len();
            self.slots.resize(
                idx + 1,
                Slot {
                    tag: FREE,
                    a: 0,
                    b: 0,
                },
            );
            self.free.extend(from as u32..idx as u32);
        }
        if self.slots[idx].tag & TAG != FREE {
            return false;
        }
        // The free lists still name it: [`InodeTable::drop_taken_from_free`]
        // clears them once after all adoptions.
        let r = self.add_record(inode);
        self.slots[idx] = Slot {
            tag: FULL,
            a: r,
            b: 0,
        };
        if let Some(x) = xattrs {
            self.xattr_bytes += x.iter().map(|(k, v)| xattr_space(k, v)).sum::<u64>();
            self.xattrs.insert(ino, x);
        }
        self.live += 1;
        true
    }

    /// Puts the numbers parked because they were held back into the free
    /// list (those still held are parked again when handed out).
    pub(crate) fn unpark(&mut self) {
        self.free.append(&mut self.parked);
    }

    /// Gives every free number of this table at least the generation it
    /// had in `old` (numbers only `old` had are added as free): a table
    /// built from scratch with the same numbers (a crash) then never hands
    /// out an (ino, generation) pair the kernel saw for another file.
    pub(crate) fn inherit_generations(&mut self, old: &InodeTable) {
        if self.slots.len() < old.slots.len() {
            let from = self.slots.len();
            self.slots.resize(
                old.slots.len(),
                Slot {
                    tag: FREE,
                    a: 0,
                    b: 0,
                },
            );
            self.free.extend(from as u32..old.slots.len() as u32);
        }
        for (i, s) in self.slots.iter_mut().enumerate() {
            if s.tag & TAG != FREE {
                continue;
            }
            let g = old.generation(i as u64 + 1).max(match old.slots.get(i) {
                Some(o) if o.tag & TAG == FREE => u64::from(o.a),
                _ => 0,
            });
            s.a = s.a.max(g as u32);
        }
    }

    /// Removes numbers [`InodeTable::adopt`] took from the free lists.
    pub(crate) fn drop_taken_from_free(&mut self) {
        let slots = &self.slots;
        let free = |i: &u32| slots.get(*i as usize).is_some_and(|s| s.tag & TAG == FREE);
        self.free.retain(free);
        self.parked.retain(free);
    }

    /// Frees up to `n` records (at least one), returning the page buffers
    /// that freed (as [`InodeTable::release`]), how many records were
    /// freed and whether the table holds no more records.
    pub(crate) fn release_some(&mut self, n: usize) -> (u64, usize, bool) {
        let mut freed = 0;
        let mut done = 0;
        while done < n.max(1) {
            match self.full.pop() {
                Some(Some(r)) => {
                    freed += r.release();
                    done += 1;
                }
                Some(None) => {}
                None => break,
            }
        }
        (freed, done, self.full.is_empty())
    }

    /// Iterates over live `(ino, inode)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (u64, InodeRef<'_>)> {
        (1..=self.slots.len() as u64).filter_map(|ino| Some((ino, self.get(ino)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unnecessary_cast)]
    fn mode_constants_match_the_platform() {
        let ours = [
            mode::S_IFMT,
            mode::S_IFDIR,
            mode::S_IFREG,
            mode::S_IFLNK,
            mode::S_IFIFO,
            mode::S_IFSOCK,
            mode::S_IFCHR,
            mode::S_IFBLK,
            mode::S_ISUID,
            mode::S_ISGID,
            mode::S_IXGRP,
        ];
        let libc = [
            libc::S_IFMT,
            libc::S_IFDIR,
            libc::S_IFREG,
            libc::S_IFLNK,
            libc::S_IFIFO,
            libc::S_IFSOCK,
            libc::S_IFCHR,
            libc::S_IFBLK,
            libc::S_ISUID,
            libc::S_ISGID,
            libc::S_IXGRP,
        ]
        .map(|m| m as u32);
        assert_eq!(ours, libc);
    }

    fn file() -> Inode {
        Inode::new(
            Kind::RegularFile,
            0o644,
            0,
            0,
            Content::File(Arc::default()),
        )
    }

    #[test]
    fn numbers_start_at_one_and_grow() {
        let mut t = InodeTable::new();
        assert_eq!(t.insert(file()), Some((1, 1)));
        assert_eq!(t.insert(file()), Some((2, 1)));
        assert_eq!(t.live(), 2);
    }

    #[test]
    fn unlinked_inode_lives_until_forgotten() {
        let mut t = InodeTable::new();
        t.insert(file()).unwrap();
        let (ino, _) = t.insert(file()).unwrap();
        t.add_lookup(ino);
        t.add_lookup(ino);
        t.get_mut(ino).unwrap().nlink = 0;
        assert!(t.free_if_unused(ino).is_none(), "kernel still holds it");
        assert!(t.forget(ino, 1).is_none());
        assert!(t.get(ino).is_some());
        assert!(t.forget(ino, 1).is_some());
        assert!(t.get(ino).is_none());
        assert_eq!(t.live(), 1);
    }

    #[test]
    fn linked_inode_survives_forget() {
        let mut t = InodeTable::new();
        let (ino, _) = t.insert(file()).unwrap();
        t.add_lookup(ino);
        assert!(t.forget(ino, 5).is_none());
        assert_eq!(t.get(ino).unwrap().lookups(), 0);
    }

    #[test]
    fn reused_number_gets_new_generation() {
        let mut t = InodeTable::new();
        t.insert(file()).unwrap();
        let (ino, g1) = t.insert(file()).unwrap();
        t.get_mut(ino).unwrap().nlink = 0;
        assert!(t.free_if_unused(ino).is_some());
        let (ino2, g2) = t.insert(file()).unwrap();
        assert_eq!(ino2, ino);
        assert!(g2 > g1);
    }

    #[test]
    fn root_is_never_freed() {
        let mut t = InodeTable::new();
        let (ino, _) = t.insert(file()).unwrap();
        assert_eq!(ino, ROOT_INO);
        t.get_mut(ino).unwrap().nlink = 0;
        assert!(t.forget(ino, 1).is_none());
    }

    #[test]
    fn unknown_numbers_are_ignored() {
        let mut t = InodeTable::new();
        assert!(t.get(0).is_none());
        assert!(t.get(99).is_none());
        assert!(t.forget(0, 1).is_none());
        assert!(t.forget(u64::MAX, 1).is_none());
    }

    #[test]
    fn compact_layout() {
        assert!(std::mem::size_of::<Content>() <= 16);
        assert!(std::mem::size_of::<Inode>() <= 80);
        // What an inode number costs when its inode shares a template.
        assert_eq!(std::mem::size_of::<Slot>(), 12);
        assert_eq!(
            std::mem::size_of::<Option<Inode>>(),
            std::mem::size_of::<Inode>()
        );
    }

    #[test]
    fn time_round_trips_before_and_after_the_epoch() {
        let e = SystemTime::UNIX_EPOCH;
        for t in [
            e,
            e + Duration::new(1, 5),
            e - Duration::new(1, 5),
            e - Duration::new(0, 1),
            e - Duration::new(1_000_000_000, 0),
            e + Duration::new(1 << 40, 999_999_999),
            e - Duration::new(1 << 63, 0),
        ] {
            assert_eq!(SystemTime::from(Time::from(t)), t, "{t:?}");
        }
    }

    #[test]
    fn mode_bits_round_trip() {
        for k in [
            Kind::Directory,
            Kind::RegularFile,
            Kind::Symlink,
            Kind::Fifo,
            Kind::Socket,
            Kind::CharDevice,
            Kind::BlockDevice,
        ] {
            assert_eq!(Kind::from_mode(k.mode_bits() | 0o644), Some(k));
        }
        assert_eq!(Kind::from_mode(0o644), None);
    }
}
