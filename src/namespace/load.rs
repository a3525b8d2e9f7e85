//! Building a namespace from a snapshot image: inodes arrive first
//! without names, then their data, then the names, parents before
//! children. The same rules as for live operations apply (names and link
//! counts through [`Namespace::attach`], the limits), and nothing is
//! trusted: each step checks what it is given.

use std::ffi::OsStr;

use super::Namespace;
use super::data::{PAGE, Page};
use super::inode::{Inode, Kind, ROOT_INO, Time, Xattrs};
use super::limits::INODE_SPACE;

/// The attributes an image stores for an inode.
pub(crate) struct StoredAttrs {
    /// Permission bits (and setuid, setgid, sticky).
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Access, modification and change times.
    pub times: [Time; 3],
    /// File size (regular files; ignored for others).
    pub size: u64,
    /// chattr flags (`FS_*_FL` bits; the loader refuses others).
    pub flags: u32,
}

impl Namespace {
    /// Adds an inode without a name and returns its number; `None` when
    /// the inode limit has no room for it. (The root exists already: set
    /// its attributes with [`Namespace::set_loaded_attrs`].)
    pub(crate) fn insert_unnamed(&mut self, mut inode: Inode) -> Option<u64> {
        self.reserve_ispace(INODE_SPACE).ok()?;
        inode.nlink = 0;
        Some(self.inodes.insert(inode)?.0)
    }

    /// Adds an inode without a name under number `ino`, which must be free
    /// (a checkpoint's tree loading from an image, whose numbers the image
    /// gives: one number names one file in the live tree and in every
    /// checkpoint). Counts against the inode limit like
    /// [`Namespace::insert_unnamed`].
    pub(crate) fn insert_unnamed_at(&mut self, ino: u64, mut inode: Inode) -> Result<(), String> {
        if ino <= ROOT_INO || ino > super::inode::MAX_INO {
            return Err(format!("inode number {ino} out of range"));
        }
        if self.reserve_ispace(INODE_SPACE).is_err() {
            return Err("the image holds more inodes than nr_inodes allows".into());
        }
        inode.nlink = 0;
        inode.generation = 1;
        if !self.inodes.adopt(ino, inode, None) {
            return Err(format!("inode {ino} appears twice"));
        }
        Ok(())
    }

    /// Puts the shared page `page` at `off` (page-aligned, inside the
    /// size) of the regular file `ino`: a page an image holds once for
    /// several files or checkpoints. The bytes of a page past the end of
    /// file must be zeros (growing the file later shows them). The page
    /// count is not updated: the loader recounts distinct pages at the end
    /// (`Namespace::recount_pages`).
    pub(crate) fn load_page(&mut self, ino: u64, off: u64, page: Page) -> Result<(), String> {
        let Some(d) = self.inodes.get_mut(ino).and_then(Inode::file_mut) else {
            return Err("data for an inode that is not a regular file".into());
        };
        if !off.is_multiple_of(PAGE as u64) {
            return Err("shared page at an unaligned offset".into());
        }
        let size = d.size();
        if off >= size {
            return Err("data past the end of the file".into());
        }
        let within = size - off;
        if within < PAGE as u64 && page[within as usize..].iter().any(|&b| b != 0) {
            return Err("shared page holds data past the end of the file".into());
        }
        d.put_pages(off / PAGE as u64, vec![Some(page)], 0);
        Ok(())
    }

    /// Sets the stored attributes and extended attributes of `ino` as an
    /// image holds them; false if there is no such inode.
    pub(crate) fn set_loaded_attrs(&mut self, ino: u64, a: &StoredAttrs, xattrs: &Xattrs) -> bool {
        let Some(i) = self.inodes.get_mut(ino) else {
            return false;
        };
        i.perm = a.perm & 0o7777;
        (i.uid, i.gid) = (a.uid, a.gid);
        [i.atime, i.mtime, i.ctime] = a.times;
        i.flags = super::flags::Flags::from_fs(a.flags);
        if let Some(d) = i.file_mut() {
            d.truncate(a.size);
        }
        for (k, v) in xattrs {
            self.inodes.set_xattr(ino, k, v);
        }
        true
    }

    /// Stores `bytes` at `off` in the regular file `ino`, within its size
    /// and the size limit.
    pub(crate) fn load_data(&mut self, ino: u64, off: u64, bytes: &[u8]) -> Result<(), String> {
        let need = bytes.len().div_ceil(PAGE) as u64 + 1;
        if self.pages_used + need > self.limits.max_pages {
            return Err("the image holds more data than the size limit allows".into());
        }
        let Some(d) = self.inodes.get_mut(ino).and_then(Inode::file_mut) else {
            return Err("data for an inode that is not a regular file".into());
        };
        if off
            .checked_add(bytes.len() as u64)
            .is_none_or(|e| e > d.size())
        {
            return Err("data past the end of the file".into());
        }
        self.pages_used += d.write(off, bytes);
        Ok(())
    }

    /// Gives the loaded inode `child` the name `name` in directory
    /// `parent`: one name per directory (the root has none), any number
    /// for other inodes.
    pub(crate) fn name_loaded(
        &mut self,
        parent: u64,
        name: &OsStr,
        child: u64,
    ) -> Result<(), String> {
        let dir = self
            .inodes
            .get(parent)
            .and_then(|i| i.dir_node())
            .ok_or("parent is not a linked directory")?;
        let i = self.inodes.get(child).ok_or("unknown inode")?;
        if child == ROOT_INO || (i.kind == Kind::Directory && i.nlink > 0) {
            return Err("a directory with two names".into());
        }
        self.attach(parent, dir, name, child)
            .map_err(|e| e.to_string())
    }

    /// An inode other than the root that has no name, if any: an image
    /// names every inode it holds.
    pub(crate) fn unnamed_inode(&self) -> Option<u64> {
        self.inodes
            .iter()
            .find(|(ino, i)| *ino != ROOT_INO && i.nlink == 0)
            .map(|(ino, _)| ino)
    }

    /// Lets every inode that can share its attributes do so, without
    /// changing any time (what [`Namespace::settle_after_load`] does after
    /// stamping a load's entries); returns how many share. Nothing a
    /// caller can observe changes.
    pub fn share_unchanged(&mut self) -> u64 {
        self.inodes.share_all()
    }

    /// Lets loaded inode `ino` share its attributes right away if it can
    /// (see [`super::inode::InodeTable::share`]): an image's directories
    /// then never hold a record while the rest loads.
    pub(crate) fn share_loaded(&mut self, ino: u64) {
        self.inodes.share(ino);
    }

    /// Packs a namespace after a bulk load that started at `since`: every
    /// inode changed since then gets one time, the end of the load, so
    /// that the loaded entries can share one attribute template instead
    /// of a record each ([`super::inode::InodeTable::share_attributes`]);
    /// spare capacity goes back to the system. Returns how many inodes
    /// share. (An image's inodes keep their stored times: they are older.)
    pub fn settle_after_load(&mut self, since: std::time::SystemTime) -> u64 {
        let stamp = Time::from(std::time::SystemTime::now());
        let shared = self.inodes.share_attributes(Time::from(since), stamp);
        self.trie.shrink_to_fit();
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        crate::sys::trim_heap();
        shared
    }
}
