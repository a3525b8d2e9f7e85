//! Filesystem operations with tmpfs semantics on top of the trie and the
//! inode table. Everything here is plain Rust, testable without FUSE; the
//! FUSE callbacks in `fs.rs` only translate requests into these calls.
//!
//! Errors are raw `errno` values wrapped in [`Error`].

use std::ffi::OsStr;
use std::fmt;
use std::time::SystemTime;

use fuser::{FileAttr, FileType, INodeNo, TimeOrNow};
use log::{debug, info};

use crate::data::{FileData, PAGE};
use crate::inode::{Content, Inode, InodeTable, Kind, ROOT_INO, Xattrs};
use crate::trie::{NodeId, Trie, TrieError};

/// An `errno` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error(pub i32);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}

impl std::error::Error for Error {}

impl From<TrieError> for Error {
    fn from(e: TrieError) -> Self {
        Error(match e {
            TrieError::NotFound => libc::ENOENT,
            TrieError::NotADirectory => libc::ENOTDIR,
            TrieError::Exists => libc::EEXIST,
            TrieError::NameTooLong => libc::ENAMETOOLONG,
            TrieError::InvalidName => libc::EINVAL,
            TrieError::NotEmpty => libc::ENOTEMPTY,
            TrieError::InvalidMove => libc::EINVAL,
        })
    }
}

/// Result of a namespace operation.
pub type Res<T> = Result<T, Error>;

fn err<T>(e: i32) -> Res<T> {
    Err(Error(e))
}

/// A directory entry handed to the kernel: attributes plus generation.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// Attributes of the inode.
    pub attr: FileAttr,
    /// Generation of the inode number.
    pub generation: u64,
}

/// Size and inode limits, as for tmpfs's `size=` and `nr_inodes=`.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Maximum number of stored data pages.
    pub max_pages: u64,
    /// Maximum number of inodes.
    pub max_inodes: u64,
}

impl Limits {
    /// Limits from tmpfs-style options: `size` in bytes and `nr_inodes`,
    /// where 0 means unlimited and `None` the tmpfs default.
    pub fn from_options(size: Option<u64>, nr_inodes: Option<u64>) -> Limits {
        let d = Limits::tmpfs_defaults();
        Limits {
            max_pages: match size {
                None => d.max_pages,
                Some(0) => u64::MAX / PAGE as u64,
                Some(b) => b.div_ceil(PAGE as u64),
            },
            max_inodes: match nr_inodes {
                None => d.max_inodes,
                Some(0) => u64::MAX,
                Some(n) => n,
            },
        }
    }

    /// tmpfs defaults: half of physical RAM for data, and as many inodes as
    /// that half has pages.
    pub fn tmpfs_defaults() -> Limits {
        // SAFETY: sysconf has no preconditions.
        let (pages, psize) = unsafe {
            (
                libc::sysconf(libc::_SC_PHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let ram = if pages > 0 && psize > 0 {
            pages as u64 * psize as u64
        } else {
            1 << 32
        };
        let half = ram / 2 / PAGE as u64;
        Limits {
            max_pages: half,
            max_inodes: half,
        }
    }
}

/// Filesystem usage for `statfs`.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// Total data pages.
    pub blocks: u64,
    /// Free data pages.
    pub bfree: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
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

/// Reply of `getxattr`/`listxattr`: the needed size or the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XattrReply {
    /// The caller asked for the size only.
    Size(u32),
    /// The value (or the NUL-separated name list).
    Data(Vec<u8>),
}

/// `renameat2` flags understood here.
pub const RENAME_NOREPLACE: u32 = 1;
/// Swap source and target.
pub const RENAME_EXCHANGE: u32 = 2;

/// Directory size as tmpfs reports it: 20 bytes per entry, `.` and `..`
/// included.
const BOGO_DIRENT: u64 = 20;

/// The whole in-memory filesystem: trie (names) plus inode table (files).
pub struct Namespace {
    /// Names: each trie node's value is the inode number it links to.
    pub trie: Trie<u64>,
    /// Inodes by number.
    pub inodes: InodeTable,
    limits: Limits,
    pub(crate) pages_used: u64,
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

fn resolve(t: TimeOrNow, now: SystemTime) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => now,
    }
}

/// Checks an xattr name: `user.`, `trusted.` and `security.` names are
/// stored; POSIX ACL names read as absent (`ENODATA`) and cannot be set;
/// other namespaces are `EOPNOTSUPP`; a bare prefix is `EINVAL`, as on tmpfs.
fn xattr_name_check(name: &[u8], reading: bool) -> Res<()> {
    for p in [&b"user."[..], b"trusted.", b"security."] {
        if name.starts_with(p) {
            return if name.len() > p.len() {
                Ok(())
            } else {
                err(libc::EINVAL)
            };
        }
    }
    if reading && name.starts_with(b"system.posix_acl_") {
        return err(libc::ENODATA);
    }
    err(libc::EOPNOTSUPP)
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
        }
    }

    fn inode(&self, ino: u64) -> Res<&Inode> {
        self.inodes.get(ino).ok_or(Error(libc::ENOENT))
    }

    fn inode_mut(&mut self, ino: u64) -> Res<&mut Inode> {
        self.inodes.get_mut(ino).ok_or(Error(libc::ENOENT))
    }

    /// The trie node of directory `ino` (ENOTDIR for other files, ENOENT for
    /// a removed directory).
    fn dir_node(&self, ino: u64) -> Res<NodeId> {
        let i = self.inode(ino)?;
        if i.kind != Kind::Directory {
            return err(libc::ENOTDIR);
        }
        i.dir_node().ok_or(Error(libc::ENOENT))
    }

    /// Attributes of `ino`.
    pub fn attr(&self, ino: u64) -> Res<FileAttr> {
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
            atime: i.atime,
            mtime: i.mtime,
            ctime: i.ctime,
            crtime: i.crtime,
            kind: file_type(i.kind),
            perm: i.perm,
            nlink: i.nlink,
            uid: i.uid,
            gid: i.gid,
            rdev: i.rdev,
            blksize: PAGE as u32,
            flags: 0,
        })
    }

    /// Attributes plus generation, counting one more kernel reference.
    fn entry(&self, ino: u64) -> Res<Entry> {
        let attr = self.attr(ino)?;
        self.inodes.add_lookup(ino);
        Ok(Entry {
            attr,
            generation: self.inodes.generation(ino),
        })
    }

    /// Looks up `name` in directory `parent`; counts a kernel reference.
    /// Needs only shared access.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> Res<Entry> {
        let ino = self.child_ino(parent, name)?;
        self.entry(ino)
    }

    /// The inode number behind `name` in `parent`, without side effects.
    pub fn child_ino(&self, parent: u64, name: &OsStr) -> Res<u64> {
        let dir = self.dir_node(parent)?;
        Trie::<u64>::check_name(name.as_bytes_checked())?;
        let node = self.trie.child(dir, name).ok_or(Error(libc::ENOENT))?;
        self.trie.value(node).copied().ok_or(Error(libc::ENOENT))
    }

    /// Drops `n` kernel references to `ino`.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if let Some(inode) = self.inodes.forget(ino, n) {
            self.release_inode(ino, inode);
        }
    }

    fn release_inode(&mut self, ino: u64, inode: Inode) {
        debug!("freeing inode {ino} ({:?})", inode.kind);
        if let Content::File(d) = &inode.content {
            self.pages_used -= d.pages();
        }
    }

    fn free_if_unused(&mut self, ino: u64) {
        if let Some(inode) = self.inodes.free_if_unused(ino) {
            self.release_inode(ino, inode);
        }
    }

    fn touch_dir(&mut self, ino: u64, now: SystemTime) {
        if let Some(i) = self.inodes.get_mut(ino) {
            i.touch_modified(now);
        }
    }

    fn check_inode_space(&self) -> Res<()> {
        if self.inodes.live() >= self.limits.max_inodes {
            return err(libc::ENOSPC);
        }
        Ok(())
    }

    /// Creates a directory, file, symlink or special file `name` in
    /// `parent` and counts a kernel reference to it.
    pub fn create_node(&mut self, parent: u64, name: &OsStr, spec: NewNode<'_>) -> Res<Entry> {
        let ino = self.create_node_untracked(parent, name, spec)?;
        self.entry(ino)
    }

    fn create_node_untracked(&mut self, parent: u64, name: &OsStr, spec: NewNode<'_>) -> Res<u64> {
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
        if pperm & libc::S_ISGID != 0 {
            // BSD group semantics under a setgid directory, as tmpfs does.
            gid = pgid;
            if spec.kind == Kind::Directory {
                perm |= libc::S_ISGID;
            }
        }
        let content = match spec.kind {
            Kind::Directory => Content::Dir(None),
            Kind::RegularFile => Content::File(FileData::new()),
            Kind::Symlink => Content::Symlink(spec.target.unwrap_or_default().into()),
            _ => Content::Special,
        };
        let mut inode = Inode::new(spec.kind, perm as u16, spec.uid, gid, content);
        inode.rdev = spec.rdev;
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
    pub fn add_path(&mut self, path: &OsStr, uid: u32, gid: u32) -> Res<u64> {
        info!("Adding directory {}", path.to_string_lossy());
        let mut cur = ROOT_INO;
        for comp in Trie::<u64>::components(path)? {
            let dir = self.dir_node(cur)?;
            cur = match self.trie.child(dir, comp) {
                Some(n) => *self.trie.value(n).ok_or(Error(libc::ENOENT))?,
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
    pub fn link(&mut self, ino: u64, newparent: u64, newname: &OsStr) -> Res<Entry> {
        if self.inode(ino)?.kind == Kind::Directory {
            return err(libc::EPERM);
        }
        let dir = self.dir_node(newparent)?;
        self.trie.insert(dir, newname, ino, false)?;
        let now = SystemTime::now();
        let i = self.inode_mut(ino)?;
        i.nlink += 1;
        i.ctime = now;
        self.touch_dir(newparent, now);
        self.entry(ino)
    }

    /// Removes the non-directory `name` from `parent`.
    pub fn unlink(&mut self, parent: u64, name: &OsStr) -> Res<()> {
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
                i.nlink = i.nlink.saturating_sub(1);
            }
            i.ctime = now;
        }
        self.free_if_unused(ino);
    }

    /// Removes the empty directory `name` from `parent`.
    pub fn rmdir(&mut self, parent: u64, name: &OsStr) -> Res<()> {
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
    ) -> Res<()> {
        if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE) != 0
            || flags == RENAME_NOREPLACE | RENAME_EXCHANGE
        {
            return err(libc::EINVAL);
        }
        let pdir = self.dir_node(parent)?;
        let npdir = self.dir_node(newparent)?;
        Trie::<u64>::check_name(newname.as_bytes_checked())?;
        let src_node = self.trie.child(pdir, name).ok_or(Error(libc::ENOENT))?;
        let src = *self.trie.value(src_node).ok_or(Error(libc::ENOENT))?;
        let src_dir = self.trie.is_dir(src_node);
        let dst_node = self.trie.child(npdir, newname);
        let now = SystemTime::now();

        if flags & RENAME_EXCHANGE != 0 {
            let dst_node = dst_node.ok_or(Error(libc::ENOENT))?;
            let dst = *self.trie.value(dst_node).ok_or(Error(libc::ENOENT))?;
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
                    i.ctime = now;
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
            let dst = *self.trie.value(dst_node).ok_or(Error(libc::ENOENT))?;
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
            i.ctime = now;
        }
        self.touch_dir(parent, now);
        self.touch_dir(newparent, now);
        Ok(())
    }

    /// Applies `setattr` changes and returns the new attributes.
    pub fn setattr(&mut self, ino: u64, a: SetAttr) -> Res<FileAttr> {
        let now = SystemTime::now();
        if let Some(size) = a.size {
            let i = self.inode(ino)?;
            match i.kind {
                Kind::RegularFile => {}
                Kind::Directory => return err(libc::EISDIR),
                _ => return err(libc::EINVAL),
            }
            let grow = size.saturating_sub(i.size());
            let _ = grow; // growing a file stores no pages: holes are free.
            let pages = &mut self.pages_used;
            let i = self.inodes.get_mut(ino).ok_or(Error(libc::ENOENT))?;
            if let Some(d) = i.file_mut() {
                *pages -= d.truncate(size);
            }
            if a.mtime.is_none() {
                i.mtime = now;
            }
        }
        let i = self.inode_mut(ino)?;
        if let Some(mode) = a.mode {
            i.perm = (mode & 0o7777) as u16;
        }
        if let Some(uid) = a.uid {
            i.uid = uid;
        }
        if let Some(gid) = a.gid {
            i.gid = gid;
        }
        if let Some(t) = a.atime {
            i.atime = resolve(t, now);
        }
        if let Some(t) = a.mtime {
            i.mtime = resolve(t, now);
        }
        i.ctime = a.ctime.unwrap_or(now);
        self.attr(ino)
    }

    /// The target of symlink `ino` (EINVAL for other files).
    pub fn readlink(&self, ino: u64) -> Res<&[u8]> {
        match &self.inode(ino)?.content {
            Content::Symlink(t) => Ok(t),
            _ => err(libc::EINVAL),
        }
    }

    fn file(&self, ino: u64) -> Res<&FileData> {
        let i = self.inode(ino)?;
        match i.kind {
            Kind::RegularFile => i.file().ok_or(Error(libc::EIO)),
            Kind::Directory => err(libc::EISDIR),
            _ => err(libc::EINVAL),
        }
    }

    /// Reads up to `len` bytes at `offset` of regular file `ino`.
    pub fn read(&self, ino: u64, offset: u64, len: u32) -> Res<Vec<u8>> {
        Ok(self.file(ino)?.read(offset, len))
    }

    /// Current size of `ino`.
    pub fn size(&self, ino: u64) -> Res<u64> {
        Ok(self.inode(ino)?.size())
    }

    /// Writes `data` at `offset` of regular file `ino`.
    pub fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Res<u32> {
        let need = self.file(ino)?.pages_needed(offset, data.len() as u64);
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|e| e > i64::MAX as u64)
        {
            return err(libc::EFBIG);
        }
        if self.pages_used + need > self.limits.max_pages {
            return err(libc::ENOSPC);
        }
        let now = SystemTime::now();
        let i = self.inode_mut(ino)?;
        let added = i.file_mut().map_or(0, |d| d.write(offset, data));
        i.touch_modified(now);
        self.pages_used += added;
        Ok(data.len() as u32)
    }

    /// `fallocate`: mode 0, `FALLOC_FL_KEEP_SIZE`, and `FALLOC_FL_PUNCH_HOLE`.
    pub fn fallocate(&mut self, ino: u64, offset: u64, len: u64, mode: i32) -> Res<()> {
        const KEEP_SIZE: i32 = libc::FALLOC_FL_KEEP_SIZE;
        const PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE;
        let f = self.file(ino)?;
        if offset.checked_add(len).is_none_or(|e| e > i64::MAX as u64) {
            return err(libc::EFBIG);
        }
        let now = SystemTime::now();
        match mode {
            0 | KEEP_SIZE => {
                let need = f.pages_needed(offset, len);
                if self.pages_used + need > self.limits.max_pages {
                    return err(libc::ENOSPC);
                }
                let i = self.inode_mut(ino)?;
                let added = i
                    .file_mut()
                    .map_or(0, |d| d.allocate(offset, len, mode == KEEP_SIZE));
                i.touch_modified(now);
                self.pages_used += added;
            }
            m if m == PUNCH | KEEP_SIZE => {
                let i = self.inode_mut(ino)?;
                let freed = i.file_mut().map_or(0, |d| d.punch_hole(offset, len));
                i.touch_modified(now);
                self.pages_used -= freed;
            }
            _ => return err(libc::EOPNOTSUPP),
        }
        Ok(())
    }

    /// `lseek` with `SEEK_DATA` or `SEEK_HOLE` (the kernel answers the others).
    pub fn lseek(&self, ino: u64, offset: i64, whence: i32) -> Res<i64> {
        let f = self.file(ino)?;
        let Ok(off) = u64::try_from(offset) else {
            return err(libc::ENXIO);
        };
        let r = match whence {
            libc::SEEK_DATA => f.seek_data(off),
            libc::SEEK_HOLE => f.seek_hole(off),
            libc::SEEK_SET => Some(off),
            libc::SEEK_END => return Ok(f.size() as i64 + offset),
            _ => return err(libc::EINVAL),
        };
        r.map(|o| o as i64).ok_or(Error(libc::ENXIO))
    }

    /// Sets extended attribute `name` (`XATTR_CREATE`/`XATTR_REPLACE` in
    /// `flags`).
    pub fn setxattr(&mut self, ino: u64, name: &OsStr, value: &[u8], flags: i32) -> Res<()> {
        let name = name.as_bytes_checked();
        xattr_name_check(name, false)?;
        let i = self.inode_mut(ino)?;
        let exists = i.xattrs.as_ref().is_some_and(|x| x.contains_key(name));
        if flags & libc::XATTR_CREATE != 0 && exists {
            return err(libc::EEXIST);
        }
        if flags & libc::XATTR_REPLACE != 0 && !exists {
            return err(libc::ENODATA);
        }
        i.xattrs
            .get_or_insert_with(|| Box::new(Xattrs::new()))
            .insert(name.into(), value.into());
        i.ctime = SystemTime::now();
        Ok(())
    }

    /// Gets extended attribute `name`; `size` 0 asks for the length only.
    pub fn getxattr(&self, ino: u64, name: &OsStr, size: u32) -> Res<XattrReply> {
        let name = name.as_bytes_checked();
        xattr_name_check(name, true)?;
        let i = self.inode(ino)?;
        let v = i
            .xattrs
            .as_ref()
            .and_then(|x| x.get(name))
            .ok_or(Error(libc::ENODATA))?;
        sized_reply(v.to_vec(), size)
    }

    /// Lists extended attribute names, NUL-terminated.
    pub fn listxattr(&self, ino: u64, size: u32) -> Res<XattrReply> {
        let i = self.inode(ino)?;
        let mut out = Vec::new();
        for k in i.xattrs.iter().flat_map(|x| x.keys()) {
            out.extend_from_slice(k);
            out.push(0);
        }
        sized_reply(out, size)
    }

    /// Removes extended attribute `name`.
    pub fn removexattr(&mut self, ino: u64, name: &OsStr) -> Res<()> {
        let name = name.as_bytes_checked();
        xattr_name_check(name, false)?;
        let i = self.inode_mut(ino)?;
        i.xattrs
            .as_mut()
            .and_then(|x| x.remove(name))
            .ok_or(Error(libc::ENODATA))?;
        if i.xattrs.as_ref().is_some_and(|x| x.is_empty()) {
            i.xattrs = None;
        }
        i.ctime = SystemTime::now();
        Ok(())
    }

    /// Permission check for `access(2)` (the kernel normally does this
    /// itself under `default_permissions`).
    pub fn access(&self, ino: u64, mask: i32, uid: u32, gid: u32) -> Res<()> {
        let i = self.inode(ino)?;
        if mask == libc::F_OK {
            return Ok(());
        }
        let perm = u32::from(i.perm);
        if uid == 0 {
            // Root may do anything but execute a file nobody can execute.
            let any_x = perm & 0o111 != 0 || i.kind == Kind::Directory;
            return if mask & libc::X_OK != 0 && !any_x {
                err(libc::EACCES)
            } else {
                Ok(())
            };
        }
        let bits = if uid == i.uid {
            (perm >> 6) & 7
        } else if gid == i.gid {
            (perm >> 3) & 7
        } else {
            perm & 7
        };
        if (mask as u32) & !bits & 7 != 0 {
            return err(libc::EACCES);
        }
        Ok(())
    }

    /// Usage numbers for `statfs`.
    pub fn usage(&self) -> Usage {
        Usage {
            blocks: self.limits.max_pages,
            bfree: self.limits.max_pages.saturating_sub(self.pages_used),
            files: self.limits.max_inodes,
            ffree: self.limits.max_inodes.saturating_sub(self.inodes.live()),
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
    ) -> Res<impl Iterator<Item = (&'a OsStr, u64, FileType)> + 'a> {
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

    /// Counts one more kernel reference to `ino` (for readdirplus entries).
    pub fn add_lookup(&self, ino: u64) {
        self.inodes.add_lookup(ino);
    }

    /// Generation of `ino`.
    pub fn generation(&self, ino: u64) -> u64 {
        self.inodes.generation(ino)
    }
}

fn sized_reply(v: Vec<u8>, size: u32) -> Res<XattrReply> {
    if size == 0 {
        return Ok(XattrReply::Size(v.len() as u32));
    }
    if v.len() > size as usize {
        return err(libc::ERANGE);
    }
    Ok(XattrReply::Data(v))
}

/// Byte view of an `OsStr` (Unix only).
trait AsBytesChecked {
    fn as_bytes_checked(&self) -> &[u8];
}

impl AsBytesChecked for OsStr {
    fn as_bytes_checked(&self) -> &[u8] {
        std::os::unix::ffi::OsStrExt::as_bytes(self)
    }
}

#[cfg(test)]
#[path = "ops_tests.rs"]
mod tests;
