//! Directories and names: lookup, create, link, unlink, rmdir, rename and
//! listing, with tmpfs's rules (which errno wins, link counts, the setgid
//! bit of new entries, the inode limit's share of every name).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

use fuser::FileType;

use super::acl;
use super::data::FileData;
use super::inode::{Content, Inode, Kind, ROOT_INO, mode, xattr_space};
use super::{
    Entry, Errno, Namespace, NewNode, RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT, Result,
    err, file_type,
};
use crate::trie::{NodeId, Shape, Trie};

impl Namespace {
    /// Looks up `name` in directory `parent`; counts a kernel reference.
    /// Needs only shared access.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<Entry> {
        let ino = self.child_ino(parent, name)?;
        self.entry(ino)
    }

    /// Answers the kernel's lookup of `.` (the inode itself) or `..` (its
    /// parent directory) in `ino`: the kernel sends these only to turn a
    /// file handle it no longer has in its cache back into an inode
    /// (`open_by_handle_at`, NFS export), never for a path walk. A named
    /// inode answers, so a handle of a live file opens; a freed number is
    /// ENOENT, which the kernel reports as ESTALE, and a reused number
    /// answers with a newer generation, which the kernel compares with the
    /// handle's. An inode without names is ENOENT too: one still open is in
    /// the kernel's cache, which answers without asking, so the kernel asks
    /// only after dropping it, and its forget may simply not have reached
    /// us yet (tmpfs has freed such an inode: ESTALE).
    pub fn lookup_dot(&self, ino: u64, dotdot: bool) -> Result<Entry> {
        if !dotdot {
            if self.inode(ino)?.nlink == 0 {
                return err(libc::ENOENT);
            }
            return self.entry(ino);
        }
        let dir = self.dir_node(ino)?;
        let parent = match self.trie.parent(dir) {
            Some(p) => self
                .trie
                .value(p)
                .map(|&v| u64::from(v))
                .ok_or(Errno::new(libc::ENOENT))?,
            None => ROOT_INO,
        };
        self.entry(parent)
    }

    /// The inode number behind `name` in `parent`, without side effects.
    pub fn child_ino(&self, parent: u64, name: &OsStr) -> Result<u64> {
        let dir = self.dir_node(parent)?;
        Trie::<u32>::check_name(name.as_bytes())?;
        let node = self.trie.child(dir, name).ok_or(Errno::new(libc::ENOENT))?;
        self.trie
            .value(node)
            .map(|&v| u64::from(v))
            .ok_or(Errno::new(libc::ENOENT))
    }

    fn touch_dir(&mut self, ino: u64, now: SystemTime) {
        self.inodes.touch(ino, now);
    }

    fn check_inode_space(&self) -> Result<()> {
        self.reserve_ispace(crate::namespace::limits::INODE_SPACE)
    }

    /// Creates a directory, file, symlink or special file `name` in
    /// `parent` and counts a kernel reference to it. `spec.perm` is taken
    /// as it is (the umask already applied), unless `parent` has a default
    /// ACL: see [`Namespace::create_masked`].
    pub fn create_node(&mut self, parent: u64, name: &OsStr, spec: NewNode<'_>) -> Result<Entry> {
        self.create_masked(parent, name, spec, 0)
    }

    /// [`Namespace::create_node`] for a creation request with the umask
    /// not yet applied (`spec.perm` is the requested mode), as tmpfs does
    /// it on a filesystem with ACLs: if `parent` has a default ACL, the new
    /// node's access ACL and permission bits derive from it and the
    /// requested mode (the umask is ignored), and a new directory inherits
    /// the default ACL; otherwise the umask applies. Symlinks get neither.
    pub fn create_masked(
        &mut self,
        parent: u64,
        name: &OsStr,
        spec: NewNode<'_>,
        umask: u32,
    ) -> Result<Entry> {
        let ino = self.create_unreferenced(parent, name, spec, umask)?;
        self.entry(ino)
    }

    fn create_unreferenced(
        &mut self,
        parent: u64,
        name: &OsStr,
        spec: NewNode<'_>,
        umask: u32,
    ) -> Result<u64> {
        let dir = self.dir_node(parent)?;
        Trie::<u32>::check_name(name.as_bytes())?;
        if self.trie.child(dir, name).is_some() {
            return err(libc::EEXIST);
        }
        self.create_absent(parent, dir, name, spec, umask)
    }

    /// [`Namespace::create_unreferenced`] for a checked `name` the caller
    /// has just looked up in `parent` (trie node `dir`) and not found:
    /// loaders save a search per entry. (Were it there after all, the trie
    /// insertion refuses it: `EEXIST`, nothing changed.)
    fn create_absent(
        &mut self,
        parent: u64,
        dir: NodeId,
        name: &OsStr,
        spec: NewNode<'_>,
        umask: u32,
    ) -> Result<u64> {
        self.may_create(parent)?;
        let (pperm, pgid) = {
            let p = self.inode(parent)?;
            (u32::from(p.perm), p.gid)
        };
        let mut perm = spec.perm & 0o7777;
        let mut acls: Vec<(&[u8], Vec<u8>)> = Vec::new();
        match self.acl(parent, acl::DEFAULT) {
            Some(default) if spec.kind != Kind::Symlink => {
                let (p, access) = default.create_from_default(perm);
                perm = p;
                if let Some(a) = access {
                    acls.push((acl::ACCESS, a.encode()));
                }
                if spec.kind == Kind::Directory {
                    acls.push((acl::DEFAULT, default.encode()));
                }
            }
            _ => perm &= !(umask & 0o777),
        }
        let acl_space: u64 = acls.iter().map(|(n, v)| xattr_space(n, v)).sum();
        self.reserve_ispace(crate::namespace::limits::INODE_SPACE + acl_space)?;
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
            Kind::RegularFile => Content::File(std::sync::Arc::default()),
            Kind::Symlink => Content::Symlink(Box::new(spec.target.unwrap_or_default().into())),
            // Like tmpfs, only device nodes keep a device number.
            Kind::CharDevice | Kind::BlockDevice => Content::Special(spec.rdev),
            Kind::Fifo | Kind::Socket => Content::Special(0),
        };
        // One clock reading for the new inode and its parent's change.
        let now = self.clock.unwrap_or_else(SystemTime::now);
        let mut inode = Inode::new_at(spec.kind, perm as u16, spec.uid, gid, content, now);
        inode.nlink = 0;
        inode.flags = self.flags_of(parent).inherited();
        let Some((ino, _)) = self.inodes.insert(inode) else {
            return err(libc::ENOSPC);
        };
        for (n, v) in &acls {
            self.inodes.set_xattr(ino, n, v);
        }
        if self.inodes.durable.is_some() {
            // What a durable name of it brings back: as created, ACLs too.
            self.inodes.record_created(ino);
        }
        if let Err(e) = self.attach(parent, dir, name, ino) {
            self.free_if_unused(ino);
            return Err(e);
        }
        self.touch_dir(parent, now);
        Ok(ino)
    }

    /// `mknod`: creates a regular file (file type 0 or `S_IFREG`), FIFO,
    /// socket or device node from the full `mode`; a directory, symlink or
    /// unknown type is `EINVAL`, as on tmpfs. `umask` applies as in
    /// [`Namespace::create_masked`]. Counts a kernel reference.
    #[allow(clippy::too_many_arguments)]
    pub fn mknod(
        &mut self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        uid: u32,
        gid: u32,
    ) -> Result<Entry> {
        let kind = match mode & mode::S_IFMT {
            0 => Kind::RegularFile,
            _ => Kind::from_mode(mode)
                .filter(|k| !matches!(k, Kind::Directory | Kind::Symlink))
                .ok_or(Errno::new(libc::EINVAL))?,
        };
        let spec = NewNode {
            kind,
            perm: mode & 0o7777,
            uid,
            gid,
            rdev,
            target: None,
        };
        self.create_masked(parent, name, spec, umask)
    }

    /// Gives inode `ino` the name `name` in directory `parent` (trie node
    /// `dir`): the trie edge and the link counts, the one place both are
    /// kept together. A directory gets its node, `nlink` 2 and one more
    /// link in its parent; anything else one more `nlink`, and a second
    /// name of a file is counted against the inode limit, as on tmpfs.
    /// Checks of names, space and kinds are the callers'.
    pub(super) fn attach(
        &mut self,
        parent: u64,
        dir: NodeId,
        name: &OsStr,
        ino: u64,
    ) -> Result<()> {
        let kind = self.inodes.kind_and_node(ino).map(|(k, _)| k);
        let is_dir = kind.ok_or(Errno::new(libc::ENOENT))? == Kind::Directory;
        self.note_entries(parent);
        // The table hands out numbers up to MAX_INO, which fit.
        let node = self
            .trie
            .insert(dir, name, ino as u32, Shape::dir_if(is_dir))?;
        if is_dir {
            self.inodes.link_dir(ino, node);
            self.inodes.add_dir_link(parent);
        } else {
            let i = self.inode_mut(ino)?;
            let extra = i.nlink > 0;
            i.nlink += 1;
            if extra {
                self.extra_names += 1;
            }
        }
        Ok(())
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
        self.add_dirs(ROOT_INO, &Trie::<u32>::components(path)?, uid, gid)
    }

    /// Walks `comps` down from directory `cur`, creating the missing
    /// directories as [`Namespace::add_path`] does; returns the last one.
    fn add_dirs(&mut self, mut cur: u64, comps: &[&OsStr], uid: u32, gid: u32) -> Result<u64> {
        for &comp in comps {
            cur = self.add_dir_component(cur, comp, uid, gid)?;
        }
        Ok(cur)
    }

    /// The directory `name` in directory `parent`, created (mode `0755`,
    /// owned by `uid:gid`) if missing; `ENOTDIR` if it names something else.
    fn add_dir_component(&mut self, parent: u64, name: &OsStr, uid: u32, gid: u32) -> Result<u64> {
        let dir = self.dir_node(parent)?;
        let ino = match self.trie.child(dir, name) {
            Some(n) => u64::from(*self.trie.value(n).ok_or(Errno::new(libc::ENOENT))?),
            None => {
                let ino = self.create_absent(
                    parent,
                    dir,
                    name,
                    NewNode {
                        kind: Kind::Directory,
                        perm: 0o755,
                        uid,
                        gid,
                        rdev: 0,
                        target: None,
                    },
                    0,
                )?;
                // Under a loader's clock the new directory shares its
                // attributes at once: adding its children changes only
                // its link count, which its slot holds.
                if self.clock.is_some() {
                    self.inodes.share(ino);
                }
                ino
            }
        };
        match self.inodes.kind_and_node(ino) {
            Some((Kind::Directory, _)) => Ok(ino),
            Some(_) => err(libc::ENOTDIR),
            None => err(libc::ENOENT),
        }
    }

    /// Adds `path` (relative to the root) as a *listed* regular file of
    /// `size` bytes (`--paths-files`), owned by `uid:gid` with mode `0644`,
    /// creating missing intermediate directories as [`Namespace::add_path`]
    /// does. A listed file stores no data (it reads as zeros and costs no
    /// share of `size=`), counts one inode, and reports `st_blocks` as if
    /// its data were stored, until its contents are first changed. Logs
    /// `Adding file {path} ({size} bytes)` at `level`.
    ///
    /// If the file exists: a listed one takes the new size (the last line
    /// of a listing wins); any other regular file (from an image) is left
    /// as it is, and counts as listed again if it stores no data and has
    /// this size (so loading a listing over its own saved image gives the
    /// same tree). Errors: `EFBIG` for a size past `i64::MAX`, `EISDIR`
    /// when the path is a directory (the root included), `EEXIST` when it
    /// is another kind of file, `ENOTDIR` for a path through a file, and
    /// those of [`Namespace::add_path`].
    pub fn add_listed_file(
        &mut self,
        path: &OsStr,
        size: u64,
        uid: u32,
        gid: u32,
        level: log::Level,
    ) -> Result<u64> {
        log::log!(
            level,
            "Adding file {} ({size} bytes)",
            path.to_string_lossy()
        );
        if size > i64::MAX as u64 {
            return err(libc::EFBIG);
        }
        let comps = Trie::<u32>::components(path)?;
        let Some((&name, dirs)) = comps.split_last() else {
            return err(libc::EISDIR);
        };
        let parent = self.add_dirs(ROOT_INO, dirs, uid, gid)?;
        self.add_listed_in(parent, name, size, uid, gid, None)
    }

    /// The last step of [`Namespace::add_listed_file`]: the listed file
    /// `name` in directory `parent`.
    fn add_listed_in(
        &mut self,
        parent: u64,
        name: &OsStr,
        size: u64,
        uid: u32,
        gid: u32,
        share_at: Option<SystemTime>,
    ) -> Result<u64> {
        if size > i64::MAX as u64 {
            return err(libc::EFBIG);
        }
        let dir = self.dir_node(parent)?;
        if let Some(node) = self.trie.child(dir, name) {
            let ino = u64::from(*self.trie.value(node).ok_or(Errno::new(libc::ENOENT))?);
            let i = self.inode_mut(ino)?;
            match i.kind {
                Kind::RegularFile => {}
                Kind::Directory => return err(libc::EISDIR),
                _ => return err(libc::EEXIST),
            }
            if let Some(d) = i.file_mut()
                && (d.is_listed() || d.size() == size)
            {
                d.relist(size);
            }
            return Ok(ino);
        }
        Trie::<u32>::check_name(name.as_bytes())?;
        let ino = self.create_absent(
            parent,
            dir,
            name,
            NewNode {
                kind: Kind::RegularFile,
                perm: 0o644,
                uid,
                gid,
                rdev: 0,
                target: None,
            },
            0,
        )?;
        let i = self.inode_mut(ino)?;
        if let Some(d) = i.file_mut() {
            *d = FileData::listed(size);
        }
        // A bulk load shares each new file's attributes at once (all its
        // files get one time): its record and data box are freed while
        // the next file's can reuse them, which keeps the heap dense.
        if let Some(t) = share_at {
            (i.atime, i.mtime, i.ctime) = (t.into(), t.into(), t.into());
            self.inodes.share(ino);
        }
        Ok(ino)
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
        self.may_create(newparent)?;
        // No new name for a file whose names are fixed (`vfs_link`).
        if self.flags_of(ino).fixed() {
            return err(libc::EPERM);
        }
        // A second name costs an inode's worth of the limit, as on tmpfs:
        // hard links must not grow the daemon past nr_inodes.
        if self.inode(ino)?.nlink > 0 {
            self.check_inode_space()?;
        }
        self.attach(newparent, dir, newname, ino)?;
        let now = SystemTime::now();
        self.inode_mut(ino)?.ctime = now.into();
        self.touch_dir(newparent, now);
        self.entry(ino)
    }

    /// Removes the non-directory `name` from `parent`.
    pub fn unlink(&mut self, parent: u64, name: &OsStr) -> Result<()> {
        let ino = self.child_ino(parent, name)?;
        self.may_delete(parent, ino)?;
        if self.inode(ino)?.kind == Kind::Directory {
            return err(libc::EISDIR);
        }
        let dir = self.dir_node(parent)?;
        self.note_entries(parent);
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
        self.may_delete(parent, ino)?;
        let node = self.dir_node(ino)?;
        if self.trie.child_count(node) > 0 {
            return err(libc::ENOTEMPTY);
        }
        let dir = self.dir_node(parent)?;
        self.note_entries(parent);
        self.trie.unlink(dir, name)?;
        self.note_removed_dir(parent, ino);
        let now = SystemTime::now();
        self.drop_link(ino, now);
        if let Some(p) = self.inodes.get_mut(parent) {
            p.nlink = p.nlink.saturating_sub(1);
        }
        self.touch_dir(parent, now);
        Ok(())
    }

    /// `renameat2(RENAME_WHITEOUT)`, as overlayfs uses it on its upper
    /// layer: the rename, and at the old name a whiteout, a character
    /// device 0:0 with mode 0 owned by `(uid, gid)` (tmpfs's
    /// `shmem_whiteout`). `RENAME_NOREPLACE` may be given too;
    /// `RENAME_EXCHANGE` is `EINVAL`. The whiteout's inode is reserved
    /// first, so a full filesystem refuses the whole call (`ENOSPC`) and
    /// moves nothing. Any user may do this (a 0:0 character device is not
    /// a device to the kernel).
    pub fn rename_whiteout(
        &mut self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        (uid, gid): (u32, u32),
    ) -> Result<()> {
        if flags & !(RENAME_NOREPLACE | RENAME_WHITEOUT) != 0 {
            return err(libc::EINVAL);
        }
        // tmpfs refuses a non-empty target directory before it makes the
        // whiteout; the other errors of a rename come before it too.
        let npdir = self.dir_node(newparent)?;
        if let Some(dst) = self.trie.child(npdir, newname)
            && self.trie.is_dir(dst)
            && self.trie.child_count(dst) > 0
            && flags & RENAME_NOREPLACE == 0
        {
            return err(libc::ENOTEMPTY);
        }
        self.check_inode_space()?;
        self.rename(parent, name, newparent, newname, flags & RENAME_NOREPLACE)?;
        let whiteout = NewNode {
            kind: Kind::CharDevice,
            perm: 0,
            uid,
            gid,
            rdev: 0,
            target: None,
        };
        let w = self.create_unreferenced(parent, name, whiteout, 0)?;
        self.note_whiteout(w);
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
        Trie::<u32>::check_name(newname.as_bytes())?;
        let src_node = self
            .trie
            .child(pdir, name)
            .ok_or(Errno::new(libc::ENOENT))?;
        let src = u64::from(*self.trie.value(src_node).ok_or(Errno::new(libc::ENOENT))?);
        let src_dir = self.trie.is_dir(src_node);
        let dst_node = self.trie.child(npdir, newname);
        let now = SystemTime::now();

        if flags & RENAME_EXCHANGE != 0 {
            let dst_node = dst_node.ok_or(Errno::new(libc::ENOENT))?;
            let dst = u64::from(*self.trie.value(dst_node).ok_or(Errno::new(libc::ENOENT))?);
            if src != dst {
                self.may_delete(parent, src)?;
                self.may_delete(newparent, dst)?;
            }
            let dst_dir = self.trie.is_dir(dst_node);
            self.note_entries(parent);
            self.note_entries(newparent);
            self.trie.exchange(pdir, name, npdir, newname)?;
            // Two names of one file swapped: nothing changed.
            if src != dst {
                self.note_rename([(parent, name, Some(dst)), (newparent, newname, Some(src))]);
            }
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
            let dst = u64::from(*self.trie.value(dst_node).ok_or(Errno::new(libc::ENOENT))?);
            if flags & RENAME_NOREPLACE != 0 {
                return err(libc::EEXIST);
            }
            if dst == src {
                // Two names of one file (or the same name): POSIX says do nothing.
                return Ok(());
            }
            self.may_delete(parent, src)?;
            self.may_delete(newparent, dst)?;
            let dst_dir = self.trie.is_dir(dst_node);
            match (src_dir, dst_dir) {
                (true, false) => return err(libc::ENOTDIR),
                (false, true) => return err(libc::EISDIR),
                _ => {}
            }
            if dst_dir && self.trie.child_count(dst_node) > 0 {
                return err(libc::ENOTEMPTY);
            }
            self.note_entries(parent);
            self.note_entries(newparent);
            self.trie.unlink(npdir, newname)?;
            if dst_dir {
                self.note_removed_dir(newparent, dst);
            }
            if dst_dir && let Some(p) = self.inodes.get_mut(newparent) {
                p.nlink = p.nlink.saturating_sub(1);
            }
            self.drop_link(dst, now);
        } else {
            self.may_delete(parent, src)?;
            self.may_create(newparent)?;
        }
        self.note_entries(parent);
        self.note_entries(newparent);
        self.trie.move_entry(pdir, name, npdir, newname)?;
        // Logged inside one directory too: a later rename of the same
        // file to another directory must not become durable without it.
        self.note_rename([(parent, name, None), (newparent, newname, Some(src))]);
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

    /// The parent directory's inode of directory `ino` (itself for the root
    /// or a removed directory), for `..` entries.
    pub fn parent_of(&self, ino: u64) -> u64 {
        self.inode(ino)
            .ok()
            .and_then(|i| i.dir_node())
            .and_then(|n| self.trie.parent(n))
            .and_then(|p| self.trie.value(p).map(|&v| u64::from(v)))
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
                let ino = u64::from(*self.trie.value(node)?);
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
                let ino = u64::from(*self.trie.value(node)?);
                let kind = self.inodes.get(ino)?.kind;
                Some((cookie, name, ino, file_type(kind)))
            }))
    }
}

/// Adds many paths as directories, like [`Namespace::add_path`], but
/// resolves each path from the deepest directory it shares with the
/// previous one: listings come grouped by prefix (`find` order, sorted
/// keys), so most paths cost one lookup and one insertion instead of one
/// per component. Holding the namespace exclusively keeps the remembered
/// directories valid.
pub struct PathLoader<'a> {
    ns: &'a mut Namespace,
    uid: u32,
    gid: u32,
    /// When the load started: the time of every file it lists.
    now: SystemTime,
    /// The previous directory path, where each of its components ends in
    /// it, and the directory each resolved to.
    prev: Vec<u8>,
    ends: Vec<usize>,
    inos: Vec<u64>,
}

impl<'a> PathLoader<'a> {
    /// A loader creating directories owned by `uid:gid`.
    pub fn new(ns: &'a mut Namespace, uid: u32, gid: u32) -> Self {
        let now = SystemTime::now();
        ns.clock = Some(now);
        PathLoader {
            ns,
            uid,
            gid,
            now,
            prev: Vec::new(),
            ends: Vec::new(),
            inos: Vec::new(),
        }
    }

    /// The namespace being loaded.
    pub fn namespace(&self) -> &Namespace {
        self.ns
    }

    /// Adds `path` (relative to the root) and returns its inode, logging
    /// `Adding directory {path}` at `level`.
    pub fn add(&mut self, path: &OsStr, level: log::Level) -> Result<u64> {
        log::log!(level, "Adding directory {}", path.to_string_lossy());
        self.resolve(path.as_bytes())
    }

    /// Adds `path` as a listed file of `size` bytes, as
    /// [`Namespace::add_listed_file`] does, and returns its inode.
    pub fn add_file(&mut self, path: &OsStr, size: u64, level: log::Level) -> Result<u64> {
        log::log!(
            level,
            "Adding file {} ({size} bytes)",
            path.to_string_lossy()
        );
        let comps = Trie::<u32>::components(path)?;
        let Some(&name) = comps.last() else {
            return err(libc::EISDIR);
        };
        let p = path.as_bytes();
        let start = name.as_bytes().as_ptr() as usize - p.as_ptr() as usize;
        let parent = self.resolve(&p[..start])?;
        self.ns
            .add_listed_in(parent, name, size, self.uid, self.gid, Some(self.now))
    }

    /// The directory at path `p`, created as needed, starting from the
    /// deepest directory the previous path shares: the shared components
    /// are found by comparing bytes, and only the rest is split and
    /// checked (the shared part was checked with the previous path).
    fn resolve(&mut self, p: &[u8]) -> Result<u64> {
        let same = common_prefix(p, &self.prev);
        // Components that end inside the common bytes are shared (the
        // byte after each is a `/` in both); one ending right at its end
        // is shared if the new path ends or goes on with a `/` there.
        let mut k = self.ends.partition_point(|&e| e < same);
        if self.ends.get(k) == Some(&same) && p.get(same).is_none_or(|&b| b == b'/') {
            k += 1;
        }
        self.ends.truncate(k);
        self.inos.truncate(k);
        self.prev.clear();
        self.prev.extend_from_slice(p);
        let start = self.ends.last().copied().unwrap_or(0);
        let mut cur = self.inos.last().copied().unwrap_or(ROOT_INO);
        for comp in Trie::<u32>::components(OsStr::from_bytes(&p[start..]))? {
            cur = self.ns.add_dir_component(cur, comp, self.uid, self.gid)?;
            let end = comp.as_bytes().as_ptr() as usize - p.as_ptr() as usize + comp.len();
            self.ends.push(end);
            self.inos.push(cur);
        }
        Ok(cur)
    }
}

/// Length of the common prefix of `a` and `b`, 16 bytes at a time (long
/// listings spend much of their time here).
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let words = a
        .chunks_exact(16)
        .zip(b.chunks_exact(16))
        .take_while(|(x, y)| x == y)
        .count();
    let at = words * 16;
    at + a[at..]
        .iter()
        .zip(&b[at..])
        .take_while(|(x, y)| x == y)
        .count()
}

impl Drop for PathLoader<'_> {
    fn drop(&mut self) {
        self.ns.clock = None;
    }
}

#[cfg(test)]
mod tests {
    use super::common_prefix;

    #[test]
    fn common_prefix_at_every_length() {
        let a: Vec<u8> = (0..70u8).collect();
        for n in 0..=70 {
            let mut b = a.clone();
            if n < 70 {
                b[n] ^= 1;
            }
            assert_eq!(common_prefix(&a, &b), n);
            assert_eq!(common_prefix(&a[..n], &b), n);
            assert_eq!(common_prefix(&b, &a[..n]), n);
        }
    }
}
