//! The namespace: every filesystem rule, with tmpfs semantics, on top of
//! the trie (names) and the inode table (attributes, contents). Plain Rust,
//! testable without FUSE; the adapter in [`crate::fuse`] only translates
//! kernel requests into these calls and their errors into replies.
//!
//! One type, [`Namespace`], split by concern: this file holds its state,
//! attributes and inode lifetime; `dirs.rs` names and directories;
//! `files.rs` file contents; `xattr.rs` extended attributes; `acl.rs`
//! POSIX ACL rules; `flags.rs` the `chattr` flags and their rules;
//! `limits.rs` the size and inode limits; `paths.rs` where inodes are, as
//! paths (for fault rules and traces); `check.rs` the invariant checker;
//! `checkpoint.rs` saved trees and restoring them; `durable.rs` durable
//! state and the simulated power cut (`-o crash`).

use std::time::SystemTime;

use fuser::{FileAttr, FileType, INodeNo, TimeOrNow};
use log::debug;

pub mod acl;
pub mod check;
pub mod checkpoint;
pub mod data;
mod dirs;
pub mod durable;
pub mod page;
pub use dirs::PathLoader;
pub mod files;
pub mod flags;
pub mod inode;
pub mod limits;
mod load;
mod paths;
pub(crate) use load::StoredAttrs;
pub use paths::Cached;
pub mod xattr;

pub(crate) use crate::error::err;
pub use crate::error::{Errno, Result};
use crate::trie::{NodeId, Trie};
use data::PAGE;
use inode::{Content, Inode, InodeTable, Kind, ROOT_INO};
pub use limits::{Limits, Refusal, UNLIMITED_PAGES, Usage};
pub use xattr::XattrReply;

/// A directory entry handed to the kernel: attributes plus generation.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// Attributes of the inode.
    pub attr: FileAttr,
    /// Generation of the inode number.
    pub generation: u64,
}

/// Attribute changes requested by `setattr`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SetAttr {
    /// New mode (permission bits are taken).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (truncate).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<TimeOrNow>,
    /// New modification time.
    pub mtime: Option<TimeOrNow>,
    /// Explicit change time (otherwise now).
    pub ctime: Option<SystemTime>,
    /// The change comes through an open file (`ftruncate`): an immutable
    /// file opened for writing before it became immutable may still be
    /// truncated through it, as on tmpfs.
    pub through_fd: bool,
    /// The kernel leaves removing set-id bits to the filesystem
    /// (`FUSE_HANDLE_KILLPRIV_V2`; see [`Namespace::setattr_as`]).
    pub killpriv_v2: bool,
    /// The caller is in chown(2) (read from its current system call): with
    /// [`SetAttr::killpriv_v2`], what tells a `chown(f, -1, -1)` from a
    /// write's privilege removal, both a request with no change.
    pub in_chown: bool,
}

impl SetAttr {
    /// No attribute set (a change time aside): what the kernel sends for
    /// `chown(f, -1, -1)`, and for the removal of privileges before a
    /// write to a set-id file.
    pub fn changes_nothing(&self) -> bool {
        self.mode.is_none()
            && self.uid.is_none()
            && self.gid.is_none()
            && self.size.is_none()
            && self.atime.is_none()
            && self.mtime.is_none()
    }
}

/// What to create in [`Namespace::create_node`].
#[derive(Clone, Debug)]
pub struct NewNode<'a> {
    /// File type.
    pub kind: Kind,
    /// Permission bits, umask already applied (but see
    /// [`Namespace::create_masked`]).
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group (replaced by the parent's group under a setgid directory).
    pub gid: u32,
    /// Device number for device nodes.
    pub rdev: u32,
    /// Symlink target.
    pub target: Option<&'a [u8]>,
}

/// `renameat2` flags understood here.
pub const RENAME_NOREPLACE: u32 = 1;
/// Swap source and target.
pub const RENAME_EXCHANGE: u32 = 2;
/// Leave a whiteout (a 0:0 character device) at the source name
/// ([`Namespace::rename_whiteout`]).
pub const RENAME_WHITEOUT: u32 = 4;

/// Directory size as tmpfs reports it: 20 bytes per entry, `.` and `..`
/// included.
const BOGO_DIRENT: u64 = 20;

/// Freeing at least this many pages (4 MiB) returns memory to the system.
const TRIM_AFTER_PAGES: u64 = 1024;

/// The whole in-memory filesystem: trie (names) plus inode table (files).
pub struct Namespace {
    /// Names: each trie node's value is the inode number it links to.
    trie: Trie<u32>,
    /// Inodes by number.
    inodes: InodeTable,
    /// The size and inode limits.
    limits: Limits,
    /// Stored data pages of all files.
    pages_used: u64,
    /// Names of non-directories beyond their first (hard links): each
    /// costs an inode's worth of the inode limit, as on tmpfs.
    extra_names: u64,
    /// Pages freed since the heap was last trimmed.
    freed_since_trim: u64,
    /// The time of every change while a [`PathLoader`] runs (one time for
    /// a whole load is what lets its entries share attributes).
    clock: Option<SystemTime>,
    /// Saved trees ([`checkpoint`]).
    checkpoints: checkpoint::Checkpoints,
    /// Durable state is tracked (`-o crash`, [`durable`]).
    durable_on: bool,
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::Directory => FileType::Directory,
        Kind::RegularFile => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
    }
}

impl Namespace {
    /// A filesystem holding only its root directory, owned by `uid:gid`
    /// with permission bits `perm`.
    pub fn new(uid: u32, gid: u32, perm: u32, limits: Limits) -> Namespace {
        let mut trie = Trie::with_root(ROOT_INO as u32);
        let mut inodes = InodeTable::new();
        let root = trie.root();
        // The first number of an empty table: always there.
        let (ino, _) = inodes
            .insert(Inode::new(
                Kind::Directory,
                perm as u16,
                uid,
                gid,
                Content::Dir(Some(root)),
            ))
            .unwrap_or((ROOT_INO, 1));
        debug_assert_eq!(ino, ROOT_INO);
        if let Some(v) = trie.value_mut(root) {
            *v = ino as u32;
        }
        Namespace {
            trie,
            inodes,
            limits,
            pages_used: 0,
            extra_names: 0,
            freed_since_trim: 0,
            clock: None,
            checkpoints: checkpoint::Checkpoints::default(),
            durable_on: false,
        }
    }

    /// Restricts name cookies to `mask` bits, so that names collide (tests
    /// and fuzzing of the collision paths). Only on a new namespace.
    #[doc(hidden)]
    pub fn with_cookie_mask(mut self, mask: u64) -> Namespace {
        assert!(
            self.trie.is_empty(),
            "set the cookie mask on a new namespace"
        );
        self.trie = Trie::with_root(ROOT_INO as u32).with_cookie_mask(mask);
        self
    }

    /// The names, read-only: a trie whose values are inode numbers. Every
    /// change goes through the namespace's operations.
    pub fn trie(&self) -> &Trie<u32> {
        &self.trie
    }

    /// The inode table, read-only.
    pub fn inodes(&self) -> &InodeTable {
        &self.inodes
    }

    /// The size and inode limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Opening `ino` as a file with open(2) `flags`: anything but a
    /// directory (`EISDIR`), and not for writing an immutable file or
    /// for writing other than appending to an append-only one (`EPERM`).
    pub fn open(&self, ino: u64, flags: i32) -> Result<()> {
        match self.inode(ino)?.kind {
            Kind::Directory => err(libc::EISDIR),
            _ => self.may_open(ino, flags),
        }
    }

    /// Opening `ino` as a directory: only a directory (`ENOTDIR`).
    pub fn opendir(&self, ino: u64) -> Result<()> {
        match self.inode(ino)?.kind {
            Kind::Directory => Ok(()),
            _ => err(libc::ENOTDIR),
        }
    }

    pub(crate) fn inode(&self, ino: u64) -> Result<inode::InodeRef<'_>> {
        self.inodes.get(ino).ok_or(Errno::new(libc::ENOENT))
    }

    pub(crate) fn inode_mut(&mut self, ino: u64) -> Result<&mut Inode> {
        self.inodes.get_mut(ino).ok_or(Errno::new(libc::ENOENT))
    }

    /// The trie node of directory `ino` (ENOTDIR for other files, ENOENT for
    /// a removed directory).
    pub(crate) fn dir_node(&self, ino: u64) -> Result<NodeId> {
        // Read straight from the table: every path walk asks.
        match self.inodes.kind_and_node(ino) {
            None => err(libc::ENOENT),
            Some((Kind::Directory, Some(node))) => Ok(node),
            Some((Kind::Directory, None)) => err(libc::ENOENT),
            Some(_) => err(libc::ENOTDIR),
        }
    }

    /// Attributes of `ino`.
    pub fn attr(&self, ino: u64) -> Result<FileAttr> {
        let i = self.inode(ino)?;
        let size = match i.content {
            Content::Dir(Some(n)) => BOGO_DIRENT * (2 + self.trie.child_count(n) as u64),
            Content::Dir(None) => BOGO_DIRENT * 2,
            _ => i.size(),
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: i.blocks(),
            atime: i.atime.into(),
            mtime: i.mtime.into(),
            ctime: i.ctime.into(),
            crtime: i.ctime.into(),
            kind: file_type(i.kind),
            perm: i.perm,
            nlink: i.nlink,
            uid: i.uid,
            gid: i.gid,
            rdev: i.rdev(),
            blksize: PAGE as u32,
            flags: 0,
        })
    }

    /// Attributes plus generation, counting one more kernel reference.
    fn entry(&self, ino: u64) -> Result<Entry> {
        let attr = self.attr(ino)?;
        self.inodes.add_lookup(ino);
        Ok(Entry {
            attr,
            generation: self.inodes.generation(ino),
        })
    }

    /// Drops `n` kernel references to `ino`.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if let Some(inode) = self.inodes.forget(ino, n) {
            self.release_inode(ino, inode);
        }
    }

    fn release_inode(&mut self, ino: u64, inode: Inode) {
        debug!("freeing inode {ino} ({:?})", inode.kind);
        // Pages a checkpoint or another file shares stay.
        let pages = inode.release();
        self.pages_freed(pages);
        self.settle_durable();
    }

    /// Accounts for `n` data pages just freed. Once 4 MiB have been freed
    /// (by one large delete or many small ones), hands the memory back to
    /// the system: glibc keeps freed 4 KiB blocks in its heap otherwise, and
    /// deleted files would stay resident.
    pub(crate) fn pages_freed(&mut self, n: u64) {
        self.pages_used = self.pages_used.saturating_sub(n);
        self.freed_since_trim += n;
        if self.freed_since_trim >= TRIM_AFTER_PAGES {
            self.freed_since_trim = 0;
            crate::sys::trim_heap();
        }
    }

    /// Accounts for a change that freed `net` page buffers (negative:
    /// added them). Truncating or punching inside a page another file or
    /// a checkpoint shares copies that page: like tmpfs, such a change
    /// never fails for lack of space, so it may go one page over the limit.
    pub(crate) fn pages_net_freed(&mut self, net: i64) {
        if net >= 0 {
            self.pages_freed(net as u64);
        } else {
            self.pages_used += net.unsigned_abs();
        }
    }

    pub(crate) fn free_if_unused(&mut self, ino: u64) {
        if let Some(inode) = self.inodes.free_if_unused(ino) {
            self.release_inode(ino, inode);
        }
    }

    /// Permission check for `access(2)` (the kernel normally does this
    /// itself under `default_permissions`).
    pub fn access(&self, ino: u64, mask: i32, uid: u32, gid: u32) -> Result<()> {
        self.inode(ino)?;
        if mask == libc::F_OK {
            return Ok(());
        }
        if self.permits(ino, uid, |g| g == gid, mask as u32) {
            Ok(())
        } else {
            err(libc::EACCES)
        }
    }

    /// Number of data pages stored.
    pub fn pages_used(&self) -> u64 {
        self.pages_used
    }

    /// Counts one more kernel reference to `ino` (for readdirplus entries).
    pub fn add_lookup(&self, ino: u64) {
        self.inodes.add_lookup(ino);
    }

    /// Generation of `ino`.
    pub fn generation(&self, ino: u64) -> u64 {
        self.inodes.generation(ino)
    }
}

#[cfg(test)]
mod tests;
