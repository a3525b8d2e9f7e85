//! Filesystem operations with tmpfs semantics on top of the trie and the
//! inode table. Everything here is plain Rust, testable without FUSE; the
//! FUSE callbacks in `fs.rs` only translate requests into these calls.
//!
//! Errors are raw `errno` values wrapped in [`Error`].

use std::ffi::OsStr;
use std::time::SystemTime;

use fuser::{FileAttr, FileType, INodeNo, TimeOrNow};
use log::debug;

pub mod check;
pub mod data;
pub mod files;
pub mod inode;
pub mod limits;
pub mod xattr;

pub(crate) use crate::error::err;
pub use crate::error::{Errno, Result};
use crate::trie::{NodeId, Trie};
use data::PAGE;
use inode::{Content, Inode, InodeTable, Kind, ROOT_INO, mode};
pub use limits::{Limits, UNLIMITED_PAGES, Usage};
pub(crate) use xattr::AsBytesChecked;
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
}

/// What to create in [`Namespace::create_node`].
#[derive(Clone, Debug)]
pub struct NewNode<'a> {
    /// File type.
    pub kind: Kind,
    /// Permission bits, umask already applied.
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

/// Directory size as tmpfs reports it: 20 bytes per entry, `.` and `..`
/// included.
const BOGO_DIRENT: u64 = 20;

/// Freeing at least this many pages (4 MiB) returns memory to the system.
const TRIM_AFTER_PAGES: u64 = 1024;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

/// The whole in-memory filesystem: trie (names) plus inode table (files).
pub struct Namespace {
    /// Names: each trie node's value is the inode number it links to.
    pub trie: Trie<u64>,
    /// Inodes by number.
    pub inodes: InodeTable,
    pub(crate) limits: Limits,
    pub(crate) pages_used: u64,
    /// Names of non-directories beyond their first (hard links): each
    /// costs an inode's worth of the inode limit, as on tmpfs.
    pub(crate) extra_names: u64,
    /// Pages freed since the heap was last trimmed.
    freed_since_trim: u64,
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
        let mut trie = Trie::with_root(ROOT_INO);
        let mut inodes = InodeTable::new();
        let root = trie.root();
        let (ino, _) = inodes.insert(Inode::new(
            Kind::Directory,
            perm as u16,
            uid,
            gid,
            Content::Dir(Some(root)),
        ));
        debug_assert_eq!(ino, ROOT_INO);
        if let Some(v) = trie.value_mut(root) {
            *v = ino;
        }
        Namespace {
            trie,
            inodes,
            limits,
            pages_used: 0,
            extra_names: 0,
            freed_since_trim: 0,
        }
    }

    pub(crate) fn inode(&self, ino: u64) -> Result<&Inode> {
        self.inodes.get(ino).ok_or(Errno::new(libc::ENOENT))
    }

    pub(crate) fn inode_mut(&mut self, ino: u64) -> Result<&mut Inode> {
        self.inodes.get_mut(ino).ok_or(Errno::new(libc::ENOENT))
    }

    /// The trie node of directory `ino` (ENOTDIR for other files, ENOENT for
    /// a removed directory).
    pub(crate) fn dir_node(&self, ino: u64) -> Result<NodeId> {
        let i = self.inode(ino)?;
        if i.kind != Kind::Directory {
            return err(libc::ENOTDIR);
        }
        i.dir_node().ok_or(Errno::new(libc::ENOENT))
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

    /// Looks up `name` in directory `parent`; counts a kernel reference.
    /// Needs only shared access.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<Entry> {
        let ino = self.child_ino(parent, name)?;
        self.entry(ino)
    }

    /// The inode number behind `name` in `parent`, without side effects.
    pub fn child_ino(&self, parent: u64, name: &OsStr) -> Result<u64> {
        let dir = self.dir_node(parent)?;
        Trie::<u64>::check_name(name.as_bytes_checked())?;
        let node = self.trie.child(dir, name).ok_or(Errno::new(libc::ENOENT))?;
        self.trie
            .value(node)
            .copied()
            .ok_or(Errno::new(libc::ENOENT))
    }

    /// Drops `n` kernel references to `ino`.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if let Some(inode) = self.inodes.forget(ino, n) {
            self.release_inode(ino, inode);
        }
    }

    fn release_inode(&mut self, ino: u64, inode: Inode) {
        debug!("freeing inode {ino} ({:?})", inode.kind);
        let pages = inode.file().map_or(0, |d| d.pages());
        drop(inode);
        self.pages_freed(pages);
    }

    /// Accounts for `n` data pages just freed. Once 4 MiB have been freed
    /// (by one large delete or many small ones), hands the memory back to
    /// the system: glibc keeps freed 4 KiB blocks in its heap otherwise, and
    /// deleted files would stay resident.
    pub(crate) fn pages_freed(&mut self, n: u64) {
        self.pages_used -= n;
        self.freed_since_trim += n;
        if self.freed_since_trim >= TRIM_AFTER_PAGES {
            self.freed_since_trim = 0;
            trim_heap();
        }
    }

    pub(crate) fn free_if_unused(&mut self, ino: u64) {
        if let Some(inode) = self.inodes.free_if_unused(ino) {
            self.release_inode(ino, inode);
        }
    }

    fn touch_dir(&mut self, ino: u64, now: SystemTime) {
        if let Some(i) = self.inodes.get_mut(ino) {
            i.touch_modified(now);
        }
    }

    fn check_inode_space(&self) -> Result<()> {
        self.reserve_ispace(crate::namespace::limits::INODE_SPACE)
    }

    /// Creates a directory, file, symlink or special file `name` in
    /// `parent` and counts a kernel reference to it.
    pub fn create_node(&mut self, parent: u64, name: &OsStr, spec: NewNode<'_>) -> Result<Entry> {
        let ino = self.create_node_untracked(parent, name, spec)?;
        self.entry(ino)
    }

    fn create_node_untracked(
        &mut self,
        parent: u64,
        name: &OsStr,
        spec: NewNode<'_>,
    ) -> Result<u64> {
        let dir = self.dir_node(parent)?;
        Trie::<u64>::check_name(name.as_bytes_checked())?;
        if self.trie.child(dir, name).is_some() {
            return err(libc::EEXIST);
        }
        self.check_inode_space()?;
        let (pperm, pgid) = {
            let p = self.inode(parent)?;
            (u32::from(p.perm), p.gid)
        };
        let mut perm = spec.perm & 0o7777;
        let mut gid = spec.gid;
        if pperm & mode::S_ISGID != 0 {
            // BSD group semantics under a setgid directory, as tmpfs does.
            gid = pgid;
            if spec.kind == Kind::Directory {
                perm |= mode::S_ISGID;
            }
        }
        let content = match spec.kind {
            Kind::Directory => Content::Dir(None),
            Kind::RegularFile => Content::File(Box::default()),
            Kind::Symlink => Content::Symlink(Box::new(spec.target.unwrap_or_default().into())),
            // Like tmpfs, only device nodes keep a device number.
            Kind::CharDevice | Kind::BlockDevice => Content::Special(spec.rdev),
            Kind::Fifo | Kind::Socket => Content::Special(0),
        };
        let inode = Inode::new(spec.kind, perm as u16, spec.uid, gid, content);
        let is_dir = spec.kind == Kind::Directory;
        let (ino, _) = self.inodes.insert(inode);
        let node = match self.trie.insert(dir, name, ino, is_dir) {
            Ok(n) => n,
            Err(e) => {
                if let Some(i) = self.inodes.get_mut(ino) {
                    i.nlink = 0;
                }
                self.free_if_unused(ino);
                return Err(e.into());
            }
        };
        let now = SystemTime::now();
        if is_dir {
            if let Some(i) = self.inodes.get_mut(ino) {
                i.content = Content::Dir(Some(node));
            }
            if let Some(p) = self.inodes.get_mut(parent) {
                p.nlink += 1;
            }
        }
        self.touch_dir(parent, now);
        Ok(ino)
    }

    /// Adds `path` (relative to the root) as a directory, creating missing
    /// intermediate directories owned by `uid:gid` with mode `0755`.
    pub fn add_path(&mut self, path: &OsStr, uid: u32, gid: u32) -> Result<u64> {
        self.add_path_logged(path, uid, gid, log::Level::Info)
    }

    /// [`Namespace::add_path`], logging `Adding directory {path}` at `level`
    /// (long `--paths` lists log each path only at debug level).
    pub fn add_path_logged(
        &mut self,
        path: &OsStr,
        uid: u32,
        gid: u32,
        level: log::Level,
    ) -> Result<u64> {
        log::log!(level, "Adding directory {}", path.to_string_lossy());
        let mut cur = ROOT_INO;
        for comp in Trie::<u64>::components(path)? {
            let dir = self.dir_node(cur)?;
            cur = match self.trie.child(dir, comp) {
                Some(n) => *self.trie.value(n).ok_or(Errno::new(libc::ENOENT))?,
                None => self.create_node_untracked(
                    cur,
                    comp,
                    NewNode {
                        kind: Kind::Directory,
                        perm: 0o755,
                        uid,
                        gid,
                        rdev: 0,
                        target: None,
                    },
                )?,
            };
            if self.inode(cur)?.kind != Kind::Directory {
                return err(libc::ENOTDIR);
            }
        }
        Ok(cur)
    }

    /// Adds a hard link `newname` in `newparent` to `ino`.
    pub fn link(&mut self, ino: u64, newparent: u64, newname: &OsStr) -> Result<Entry> {
        if self.inode(ino)?.kind == Kind::Directory {
            return err(libc::EPERM);
        }
        let dir = self.dir_node(newparent)?;
        if self.trie.child(dir, newname).is_some() {
            return err(libc::EEXIST);
        }
        // A second name costs an inode's worth of the limit, as on tmpfs:
        // hard links must not grow the daemon past nr_inodes.
        let extra = self.inode(ino)?.nlink > 0;
        if extra {
            self.check_inode_space()?;
        }
        self.trie.insert(dir, newname, ino, false)?;
        if extra {
            self.extra_names += 1;
        }
        let now = SystemTime::now();
        let i = self.inode_mut(ino)?;
        i.nlink += 1;
        i.ctime = now.into();
        self.touch_dir(newparent, now);
        self.entry(ino)
    }

    /// Removes the non-directory `name` from `parent`.
    pub fn unlink(&mut self, parent: u64, name: &OsStr) -> Result<()> {
        let ino = self.child_ino(parent, name)?;
        if self.inode(ino)?.kind == Kind::Directory {
            return err(libc::EISDIR);
        }
        let dir = self.dir_node(parent)?;
        self.trie.unlink(dir, name)?;
        let now = SystemTime::now();
        self.drop_link(ino, now);
        self.touch_dir(parent, now);
        Ok(())
    }

    /// One name of `ino` is gone (unlink, or replaced by rename).
    fn drop_link(&mut self, ino: u64, now: SystemTime) {
        if let Some(i) = self.inodes.get_mut(ino) {
            if i.kind == Kind::Directory {
                i.nlink = 0;
                i.content = Content::Dir(None);
            } else {
                if i.nlink > 1 {
                    self.extra_names = self.extra_names.saturating_sub(1);
                }
                i.nlink = i.nlink.saturating_sub(1);
            }
            i.ctime = now.into();
        }
        self.free_if_unused(ino);
    }

    /// Removes the empty directory `name` from `parent`.
    pub fn rmdir(&mut self, parent: u64, name: &OsStr) -> Result<()> {
        let ino = self.child_ino(parent, name)?;
        let node = self.dir_node(ino)?;
        if self.trie.child_count(node) > 0 {
            return err(libc::ENOTEMPTY);
        }
        let dir = self.dir_node(parent)?;
        self.trie.unlink(dir, name)?;
        let now = SystemTime::now();
        self.drop_link(ino, now);
        if let Some(p) = self.inodes.get_mut(parent) {
            p.nlink = p.nlink.saturating_sub(1);
        }
        self.touch_dir(parent, now);
        Ok(())
    }

    /// `renameat2` with POSIX rules and `RENAME_NOREPLACE`/`RENAME_EXCHANGE`.
    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> Result<()> {
        if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE) != 0
            || flags == RENAME_NOREPLACE | RENAME_EXCHANGE
        {
            return err(libc::EINVAL);
        }
        let pdir = self.dir_node(parent)?;
        let npdir = self.dir_node(newparent)?;
        Trie::<u64>::check_name(newname.as_bytes_checked())?;
        let src_node = self
            .trie
            .child(pdir, name)
            .ok_or(Errno::new(libc::ENOENT))?;
        let src = *self.trie.value(src_node).ok_or(Errno::new(libc::ENOENT))?;
        let src_dir = self.trie.is_dir(src_node);
        let dst_node = self.trie.child(npdir, newname);
        let now = SystemTime::now();

        if flags & RENAME_EXCHANGE != 0 {
            let dst_node = dst_node.ok_or(Errno::new(libc::ENOENT))?;
            let dst = *self.trie.value(dst_node).ok_or(Errno::new(libc::ENOENT))?;
            let dst_dir = self.trie.is_dir(dst_node);
            self.trie.exchange(pdir, name, npdir, newname)?;
            if parent != newparent && src_dir != dst_dir {
                let (gains, loses) = if src_dir {
                    (newparent, parent)
                } else {
                    (parent, newparent)
                };
                if let Some(i) = self.inodes.get_mut(gains) {
                    i.nlink += 1;
                }
                if let Some(i) = self.inodes.get_mut(loses) {
                    i.nlink = i.nlink.saturating_sub(1);
                }
            }
            for ino in [src, dst] {
                if let Some(i) = self.inodes.get_mut(ino) {
                    i.ctime = now.into();
                }
            }
            self.touch_dir(parent, now);
            self.touch_dir(newparent, now);
            return Ok(());
        }

        if src_dir && self.trie.is_ancestor(src_node, npdir) {
            return err(libc::EINVAL);
        }
        if let Some(dst_node) = dst_node {
            let dst = *self.trie.value(dst_node).ok_or(Errno::new(libc::ENOENT))?;
            if flags & RENAME_NOREPLACE != 0 {
                return err(libc::EEXIST);
            }
            if dst == src {
                // Two names of one file (or the same name): POSIX says do nothing.
                return Ok(());
            }
            let dst_dir = self.trie.is_dir(dst_node);
            match (src_dir, dst_dir) {
                (true, false) => return err(libc::ENOTDIR),
                (false, true) => return err(libc::EISDIR),
                _ => {}
            }
            if dst_dir && self.trie.child_count(dst_node) > 0 {
                return err(libc::ENOTEMPTY);
            }
            self.trie.unlink(npdir, newname)?;
            if dst_dir && let Some(p) = self.inodes.get_mut(newparent) {
                p.nlink = p.nlink.saturating_sub(1);
            }
            self.drop_link(dst, now);
        }
        self.trie.move_entry(pdir, name, npdir, newname)?;
        if src_dir && parent != newparent {
            if let Some(i) = self.inodes.get_mut(parent) {
                i.nlink = i.nlink.saturating_sub(1);
            }
            if let Some(i) = self.inodes.get_mut(newparent) {
                i.nlink += 1;
            }
        }
        if let Some(i) = self.inodes.get_mut(src) {
            i.ctime = now.into();
        }
        self.touch_dir(parent, now);
        self.touch_dir(newparent, now);
        Ok(())
    }

    /// Permission check for `access(2)` (the kernel normally does this
    /// itself under `default_permissions`).
    pub fn access(&self, ino: u64, mask: i32, uid: u32, gid: u32) -> Result<()> {
        let i = self.inode(ino)?;
        if mask == libc::F_OK {
            return Ok(());
        }
        if i.permits(uid, |g| g == gid, mask as u32) {
            Ok(())
        } else {
            err(libc::EACCES)
        }
    }

    /// Number of data pages stored.
    pub fn pages_used(&self) -> u64 {
        self.pages_used
    }

    /// The parent directory's inode of directory `ino` (itself for the root
    /// or a removed directory), for `..` entries.
    pub fn parent_of(&self, ino: u64) -> u64 {
        self.inode(ino)
            .ok()
            .and_then(Inode::dir_node)
            .and_then(|n| self.trie.parent(n))
            .and_then(|p| self.trie.value(p).copied())
            .unwrap_or(ino)
    }

    /// Entries of directory `ino` after the name `after`, in name order:
    /// `(name, ino, kind)`. A removed directory lists nothing.
    pub fn entries_after<'a>(
        &'a self,
        ino: u64,
        after: Option<&'a [u8]>,
    ) -> Result<impl Iterator<Item = (&'a OsStr, u64, FileType)> + 'a> {
        let i = self.inode(ino)?;
        if i.kind != Kind::Directory {
            return err(libc::ENOTDIR);
        }
        let node = i.dir_node();
        Ok(node
            .into_iter()
            .flat_map(move |n| self.trie.children_after(n, after))
            .filter_map(move |(name, node)| {
                let ino = *self.trie.value(node)?;
                let kind = self.inodes.get(ino)?.kind;
                Some((name, ino, file_type(kind)))
            }))
    }

    /// Entries of directory `ino` with cookie `>= from`, in cookie order:
    /// `(cookie, name, ino, kind)`. This is the readdir order: resuming
    /// after an entry with cookie `c` is `entries_from(ino, c + 1)`, in
    /// O(log n) and without any per-open state. A removed directory lists
    /// nothing.
    pub fn entries_from(
        &self,
        ino: u64,
        from: u64,
    ) -> Result<impl Iterator<Item = (u64, &OsStr, u64, FileType)> + '_> {
        let i = self.inode(ino)?;
        if i.kind != Kind::Directory {
            return err(libc::ENOTDIR);
        }
        Ok(i.dir_node()
            .into_iter()
            .flat_map(move |n| self.trie.entries_from(n, from))
            .filter_map(move |(cookie, name, node)| {
                let ino = *self.trie.value(node)?;
                let kind = self.inodes.get(ino)?.kind;
                Some((cookie, name, ino, file_type(kind)))
            }))
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
