//! File contents and attributes: setattr (chmod, chown, truncate,
//! utimens), read, write, fallocate, lseek, readlink.

use std::time::SystemTime;

use fuser::{FileAttr, TimeOrNow};

use crate::error::{Errno, Result, err};
use crate::namespace::data::{FileData, PAGE};
use crate::namespace::inode::{Content, InodeRef, Kind, mode};
use crate::namespace::{Namespace, SetAttr};

fn resolve(t: TimeOrNow, now: SystemTime) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => now,
    }
}

/// The set-id bits of `perm` that a change of a regular file by a caller
/// without CAP_FSETID removes (the kernel's `setattr_should_drop_suidgid`):
/// `S_ISUID`, and `S_ISGID` with group-execute or when the caller is not in
/// the file's group `gid` (`in_group`, asked only then).
fn setid_to_drop(perm: u32, gid: u32, in_group: impl FnOnce(u32) -> bool) -> u32 {
    let mut kill = perm & mode::S_ISUID;
    if perm & mode::S_ISGID != 0 && (perm & mode::S_IXGRP != 0 || !in_group(gid)) {
        kill |= mode::S_ISGID;
    }
    kill
}

/// `FALLOC_FL_KEEP_SIZE`: the FUSE protocol's value (Linux's), defined
/// here because not every platform's `libc` has it.
pub const FALLOC_KEEP_SIZE: i32 = 0x01;
/// `FALLOC_FL_PUNCH_HOLE`, likewise.
pub const FALLOC_PUNCH_HOLE: i32 = 0x02;

impl Namespace {
    /// Applies `setattr` changes and returns the new attributes.
    pub fn setattr(&mut self, ino: u64, a: SetAttr) -> Result<FileAttr> {
        let now = SystemTime::now();
        // (A missing inode has none; the checks below report it.)
        let flags = self.flags_of(ino);
        // As tmpfs (`may_setattr`, `notify_change`): owner, mode and times
        // set explicitly are fixed for immutable and append-only files;
        // "touch" (both times to now, `utimes(NULL)`) only for immutable.
        let touch = matches!(
            (a.atime, a.mtime),
            (Some(TimeOrNow::Now), Some(TimeOrNow::Now))
        );
        let times_set = (a.atime.is_some() || a.mtime.is_some()) && !touch;
        let owner_or_mode = a.mode.is_some() || a.uid.is_some() || a.gid.is_some();
        if (flags.fixed() && (owner_or_mode || times_set)) || (flags.immutable() && touch) {
            return err(libc::EPERM);
        }
        if let Some(size) = a.size {
            if size > i64::MAX as u64 {
                return err(libc::EFBIG);
            }
            let i = self.inode(ino)?;
            match i.kind {
                Kind::RegularFile => {}
                Kind::Directory => return err(libc::EISDIR),
                _ => return err(libc::EINVAL),
            }
            // truncate(2) and open(O_TRUNC) of an immutable file are
            // refused, ftruncate(2) of one opened before is not; nothing
            // truncates an append-only file.
            if flags.append() || (flags.immutable() && !a.through_fd) {
                return err(libc::EPERM);
            }
            // Growing stores no pages: the new range is a hole.
            let i = self.inodes.get_mut(ino).ok_or(Errno::new(libc::ENOENT))?;
            let freed = i.file_mut().map_or(0, |d| d.truncate(size));
            if a.mtime.is_none() {
                i.mtime = now.into();
            }
            self.pages_net_freed(freed);
        }
        if let Some(mode) = a.mode {
            self.inode_mut(ino)?.perm = (mode & 0o7777) as u16;
            self.chmod_acl(ino, mode);
        }
        let i = self.inode_mut(ino)?;
        if let Some(uid) = a.uid {
            i.uid = uid;
        }
        if let Some(gid) = a.gid {
            i.gid = gid;
        }
        if let Some(t) = a.atime {
            i.atime = resolve(t, now).into();
        }
        if let Some(t) = a.mtime {
            i.mtime = resolve(t, now).into();
        }
        i.ctime = a.ctime.unwrap_or(now).into();
        self.attr(ino)
    }

    /// [`Namespace::setattr`] for a caller other than root (`uid`; `0`
    /// stands for CAP_FSETID and changes nothing here), with the set-id
    /// rules tmpfs applies and the kernel's FUSE layer leaves out. The
    /// kernel converts "kill the set-id bits" into a mode with FUSE's older
    /// rule (`S_ISGID` only together with group-execute) before it asks, or
    /// into a request with no change at all; today's rule also drops
    /// `S_ISGID` when the caller is not in the file's group
    /// (`setattr_should_drop_sgid`). So, as tmpfs does:
    /// - any new mode loses `S_ISGID` if the caller is not in the file's
    ///   (new) group (`setattr_copy`);
    /// - a truncation, and a request with no change (what a write's
    ///   privilege removal arrives as), of a regular file drop `S_ISUID`,
    ///   and `S_ISGID` with group-execute or outside the group;
    /// - a chown of a non-directory drops `S_ISGID` when the caller is not
    ///   in the file's group; as `chown(f, -1, -1)` (a change of ctime
    ///   only) that is a mode change, which only the owner may make:
    ///   `EPERM` for others.
    ///
    /// With [`SetAttr::killpriv_v2`] the kernel no longer turns a
    /// privilege removal into a mode: a write's arrives with the WRITE
    /// (see [`Namespace::remove_privs`]), and a request with no change is a
    /// chown(f, -1, -1) when [`SetAttr::in_chown`] says so, else the
    /// kernel's leftover of a write's removal and changes nothing. A chown
    /// of a non-directory by root then drops `S_ISUID`, and `S_ISGID` with
    /// group-execute, as on tmpfs.
    ///
    /// `in_group` is asked only when a set-id bit is at stake.
    pub fn setattr_as(
        &mut self,
        ino: u64,
        mut a: SetAttr,
        uid: u32,
        in_group: impl Fn(u32) -> bool,
    ) -> Result<FileAttr> {
        let unchanged = a.changes_nothing();
        if uid == 0 && a.killpriv_v2 {
            let i = self.inode(ino)?;
            let cur = u32::from(i.perm);
            let chown = a.uid.is_some() || a.gid.is_some() || (unchanged && a.in_chown);
            if chown && i.kind != Kind::Directory && cur & (mode::S_ISUID | mode::S_ISGID) != 0 {
                a.mode = Some(cur & !setid_to_drop(cur, i.gid, |_| true));
            }
        } else if uid != 0 {
            let i = self.inode(ino)?;
            let cur = u32::from(i.perm);
            let chown_only = unchanged && (a.ctime.is_some() || a.in_chown);
            let chown = a.uid.is_some() || a.gid.is_some() || chown_only;
            let is_reg = i.kind == Kind::RegularFile;
            let write_removal = unchanged && !chown_only && !a.killpriv_v2;
            let removes = (is_reg && (a.size.is_some() || write_removal))
                || (chown && i.kind != Kind::Directory);
            let base = a.mode.unwrap_or(cur);
            if removes && base & (mode::S_ISUID | mode::S_ISGID) != 0 {
                let m = base & !setid_to_drop(base, i.gid, &in_group);
                if m != base {
                    if chown_only && uid != i.uid {
                        return err(libc::EPERM);
                    }
                    a.mode = Some(m);
                }
            }
            if let Some(m) = a.mode
                && m & mode::S_ISGID != 0
                && !in_group(a.gid.unwrap_or(i.gid))
            {
                a.mode = Some(m & !mode::S_ISGID);
            }
        }
        self.setattr(ino, a)
    }

    /// The target of symlink `ino` (EINVAL for other files).
    pub fn readlink(&self, ino: u64) -> Result<&[u8]> {
        // Symlinks always have their own record.
        self.inode(ino)?;
        match self.inodes.record(ino).map(|i| &i.content) {
            Some(Content::Symlink(t)) => Ok(t),
            _ => err(libc::EINVAL),
        }
    }

    /// The data of regular file `ino` (for a file sharing its attributes,
    /// built on the spot: it stores no pages).
    fn file(&self, ino: u64) -> Result<FileRef<'_>> {
        let i = self.inode(ino)?;
        match i.kind {
            Kind::RegularFile if i.file().is_some() => Ok(FileRef(i)),
            Kind::RegularFile => err(libc::EIO),
            Kind::Directory => err(libc::EISDIR),
            _ => err(libc::EINVAL),
        }
    }

    /// Reads up to `len` bytes at `offset` of regular file `ino`.
    pub fn read(&self, ino: u64, offset: u64, len: u32) -> Result<Vec<u8>> {
        Ok(self.file(ino)?.read(offset, len))
    }

    /// What [`Namespace::read`] returns, without a copy, when the bytes
    /// lie in consecutive slots of one block (see [`super::page`]: a file
    /// that grew densely at its end, read where it was not rewritten since
    /// a checkpoint or copy shared it). `None` when they do not, or on any
    /// error (`read` reports it).
    pub fn read_in_place(&self, ino: u64, offset: u64, len: u32) -> Option<&[u8]> {
        // A file that stores pages has an inode record of its own.
        let InodeRef::Full(i) = self.inode(ino).ok()? else {
            return None;
        };
        i.file()?.read_in_place(offset, len)
    }

    /// Current size of `ino`.
    pub fn size(&self, ino: u64) -> Result<u64> {
        Ok(self.inode(ino)?.size())
    }

    /// Appends `data` to regular file `ino` (`O_APPEND`): the offset is the
    /// size at the moment of the write, under the namespace lock, so
    /// concurrent appenders never overwrite each other.
    pub fn append(&mut self, ino: u64, data: &[u8]) -> Result<u32> {
        self.write_at(ino, None, data)
    }

    /// Writes `data` at `offset` of regular file `ino`.
    pub fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<u32> {
        self.write_at(ino, Some(offset), data)
    }

    fn write_at(&mut self, ino: u64, offset: Option<u64>, data: &[u8]) -> Result<u32> {
        let (offset, n) = self.write_begin(ino, offset, data.len() as u64)?;
        self.write_commit(ino, offset, &data[..n as usize])?;
        Ok(n)
    }

    /// The checks of a write of `len` bytes at `offset` of regular file
    /// `ino` (`None`: at its end, for `O_APPEND`): the offset and how many
    /// of the bytes fit (all, or up to the last page that fits), or why
    /// none can be written. Changes nothing but the crash record;
    /// [`Namespace::write_commit`] stores them, and nothing may change the
    /// namespace in between (the caller holds the lock), so that a FUSE
    /// write can be answered before its bytes are copied.
    pub fn write_begin(&mut self, ino: u64, offset: Option<u64>, len: u64) -> Result<(u64, u32)> {
        // With `-o crash` the page map is shared with the durable record
        // from here on: the space check must see that.
        self.note_change(ino);
        let f = self.file(ino)?;
        let offset = offset.unwrap_or_else(|| f.size());
        if offset.checked_add(len).is_none_or(|e| e > i64::MAX as u64) {
            return err(libc::EFBIG);
        }
        let free = self.limits.max_pages.saturating_sub(self.pages_used);
        let shared = f.0.file_shared();
        let fit = if f.pages_needed(offset, len, shared) > free {
            // Fill up to the last page that fits, like tmpfs; ENOSPC only
            // when not a byte fits.
            f.fitting_len(offset, len, free, shared)
        } else {
            len
        };
        if fit == 0 && len > 0 {
            return err(libc::ENOSPC);
        }
        // At most a FUSE write (1 MiB) or a test's buffer: fits in u32.
        let n = u32::try_from(fit).or_else(|_| err(libc::EFBIG))?;
        Ok((offset, n))
    }

    /// Stores `data` at `offset` of regular file `ino`, as allowed by
    /// [`Namespace::write_begin`] just before.
    pub fn write_commit(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<()> {
        let now = SystemTime::now();
        let i = self.inode_mut(ino)?;
        let added = i.file_mut().map_or(0, |d| d.write(offset, data));
        i.touch_modified(now);
        self.pages_used += added;
        Ok(())
    }

    /// `copy_file_range`: copies up to `len` bytes from `src` to `dst` and
    /// returns the number copied, 0 at the end of `src` (callers loop on
    /// short counts). Where both offsets sit at the same place in a page,
    /// whole pages are shared, not copied: up to 1 GiB per call costs no
    /// new pages until one side writes (copy-on-write); the unaligned head
    /// is copied in the same call, the tail in the next. Otherwise at most
    /// 16 MiB of bytes are copied per call. An immutable `dst` is `EPERM`,
    /// as the kernel checks for tmpfs (an append-only one is not: only
    /// opening it without `O_APPEND` is refused).
    pub fn copy_range(
        &mut self,
        src: u64,
        src_off: u64,
        dst: u64,
        dst_off: u64,
        len: u64,
    ) -> Result<u32> {
        const MAX_CHUNK: u64 = 16 << 20;
        const MAX_SHARED: u64 = 1 << 30;
        if self.flags_of(dst).immutable() {
            return err(libc::EPERM);
        }
        let src_size = self.file(src)?.size();
        self.file(dst)?;
        let len = len.min(src_size.saturating_sub(src_off));
        let page = PAGE as u64;
        let head = (page - src_off % page) % page;
        if src_off % page == dst_off % page && len >= head + page {
            let count = ((len - head) / page).min(MAX_SHARED / page);
            if head > 0 {
                let done = self.copy_bytes(src, src_off, dst, dst_off, head)?;
                if u64::from(done) < head {
                    return Ok(done);
                }
            }
            let end = dst_off + head + count * page;
            if end > i64::MAX as u64 {
                return err(libc::EFBIG);
            }
            let pages = self.file(src)?.page_slice((src_off + head) / page, count);
            let now = SystemTime::now();
            let i = self.inode_mut(dst)?;
            let freed = i
                .file_mut()
                .map_or(0, |d| d.put_pages((dst_off + head) / page, pages, end));
            i.touch_modified(now);
            self.pages_freed(freed);
            return Ok((head + count * page) as u32);
        }
        self.copy_bytes(src, src_off, dst, dst_off, len.min(MAX_CHUNK))
    }

    /// Copies `len` bytes (at most `u32::MAX`) through a buffer.
    fn copy_bytes(
        &mut self,
        src: u64,
        src_off: u64,
        dst: u64,
        dst_off: u64,
        len: u64,
    ) -> Result<u32> {
        let data = self.read(src, src_off, len as u32)?;
        if data.is_empty() {
            return Ok(0);
        }
        self.write(dst, dst_off, &data)
    }

    /// `fallocate`: mode 0, `FALLOC_FL_KEEP_SIZE`, and `FALLOC_FL_PUNCH_HOLE`.
    pub fn fallocate(&mut self, ino: u64, offset: u64, len: u64, mode: i32) -> Result<()> {
        if len == 0 {
            return err(libc::EINVAL);
        }
        const KEEP_SIZE: i32 = FALLOC_KEEP_SIZE;
        const PUNCH: i32 = FALLOC_PUNCH_HOLE;
        // As `vfs_fallocate`: nothing on an immutable file, only plain
        // allocation on an append-only one.
        let flags = self.flags_of(ino);
        if flags.immutable() || (flags.append() && mode & !KEEP_SIZE != 0) {
            return err(libc::EPERM);
        }
        let f = self.file(ino)?;
        if offset.checked_add(len).is_none_or(|e| e > i64::MAX as u64) {
            return err(libc::EFBIG);
        }
        let now = SystemTime::now();
        match mode {
            0 | KEEP_SIZE => {
                let need = f.pages_missing(offset, len);
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
                self.pages_net_freed(freed);
            }
            _ => return err(libc::EOPNOTSUPP),
        }
        Ok(())
    }

    /// What the kernel's `file_remove_privs` does on tmpfs when a file's
    /// contents are changed, for the changes where the kernel's FUSE layer
    /// leaves it to us (`fallocate`; a write that the kernel flags with
    /// `FUSE_WRITE_KILL_SUIDGID`): the file capabilities
    /// (`security.capability`) go, whoever the caller; for a caller without
    /// CAP_FSETID (`fsetid` false), `S_ISUID` goes, and
    /// `S_ISGID` goes with group-execute or when the caller is not in the
    /// file's group (`in_group`, asked only then). Regular files only.
    /// Returns whether the mode changed (the kernel's cached one is then
    /// stale).
    pub fn remove_privs(
        &mut self,
        ino: u64,
        fsetid: bool,
        in_group: impl FnOnce(u32) -> bool,
    ) -> Result<bool> {
        let i = self.inode(ino)?;
        if i.kind != Kind::RegularFile {
            return Ok(false);
        }
        let (perm, gid) = (u32::from(i.perm), i.gid);
        let kill = if !fsetid && perm & (mode::S_ISUID | mode::S_ISGID) != 0 {
            setid_to_drop(perm, gid, in_group)
        } else {
            0
        };
        let had_fcaps = self
            .inodes
            .remove_xattr(ino, b"security.capability")
            .is_some();
        if kill != 0 || had_fcaps {
            let i = self.inode_mut(ino)?;
            i.perm &= !(kill as u16);
            i.ctime = SystemTime::now().into();
        }
        Ok(kill != 0)
    }

    /// `lseek` with `SEEK_DATA` or `SEEK_HOLE` (the kernel answers the others).
    pub fn lseek(&self, ino: u64, offset: i64, whence: i32) -> Result<i64> {
        let f = self.file(ino)?;
        let size = f.size() as i64;
        match whence {
            libc::SEEK_SET if offset >= 0 => return Ok(offset),
            libc::SEEK_END => {
                return size
                    .checked_add(offset)
                    .filter(|o| *o >= 0)
                    .ok_or(Errno::new(libc::EINVAL));
            }
            libc::SEEK_DATA | libc::SEEK_HOLE => {}
            _ => return err(libc::EINVAL),
        }
        let Ok(off) = u64::try_from(offset) else {
            return err(libc::ENXIO);
        };
        let r = if whence == libc::SEEK_DATA {
            f.seek_data(off)
        } else {
            f.seek_hole(off)
        };
        r.map(|o| o as i64).ok_or(Errno::new(libc::ENXIO))
    }
}

/// A regular file's data, through its inode (see `Namespace::file`).
struct FileRef<'a>(super::inode::InodeRef<'a>);

impl std::ops::Deref for FileRef<'_> {
    type Target = FileData;
    fn deref(&self) -> &FileData {
        match &self.0.content {
            Content::File(d) => d,
            // `Namespace::file` checked the content.
            _ => unreachable!("FileRef of an inode without data"),
        }
    }
}
