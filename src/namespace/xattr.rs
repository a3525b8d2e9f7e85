//! Extended attributes in the `user.`, `trusted.` and `security.`
//! namespaces, with tmpfs's errno rules.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

use crate::error::{Errno, Result, err};
use crate::namespace::Namespace;

/// Reply of `getxattr`/`listxattr`: the needed size or the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XattrReply {
    /// The caller asked for the size only.
    Size(u32),
    /// The value (or the NUL-separated name list).
    Data(Vec<u8>),
}

/// Checks an xattr name: `user.`, `trusted.` and `security.` names are
/// stored; POSIX ACL names read as absent (`ENODATA`) and cannot be set;
/// other namespaces are `EOPNOTSUPP`; a bare prefix is `EINVAL`, as on tmpfs.
fn xattr_name_check(name: &[u8], reading: bool) -> Result<()> {
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

fn sized_reply(v: Vec<u8>, size: u32) -> Result<XattrReply> {
    if size == 0 {
        return Ok(XattrReply::Size(v.len() as u32));
    }
    if v.len() > size as usize {
        return err(libc::ERANGE);
    }
    Ok(XattrReply::Data(v))
}

impl Namespace {
    /// Extended attributes of immutable and append-only files are fixed;
    /// the kernel refuses that before it looks at the name
    /// (`xattr_permission`), so this comes first (a missing inode is
    /// reported after the name check, as before).
    fn may_change_xattrs(&self, ino: u64) -> Result<()> {
        if self.flags_of(ino).fixed() {
            return err(libc::EPERM);
        }
        Ok(())
    }

    /// Sets extended attribute `name` (`XATTR_CREATE`/`XATTR_REPLACE` in
    /// `flags`).
    pub fn setxattr(&mut self, ino: u64, name: &OsStr, value: &[u8], flags: i32) -> Result<()> {
        let name = name.as_bytes();
        self.may_change_xattrs(ino)?;
        xattr_name_check(name, false)?;
        self.inode(ino)?;
        let exists = self
            .inodes
            .xattrs(ino)
            .is_some_and(|x| x.contains_key(name));
        if flags & libc::XATTR_CREATE != 0 && exists {
            return err(libc::EEXIST);
        }
        if flags & libc::XATTR_REPLACE != 0 && !exists {
            return err(libc::ENODATA);
        }
        // As on tmpfs, the new value must fit before the old one is
        // released: attributes share the inode limit's space.
        self.reserve_ispace(crate::namespace::inode::xattr_space(name, value))?;
        self.inodes.set_xattr(ino, name, value);
        self.inode_mut(ino)?.ctime = SystemTime::now().into();
        Ok(())
    }

    /// Gets extended attribute `name`; `size` 0 asks for the length only.
    pub fn getxattr(&self, ino: u64, name: &OsStr, size: u32) -> Result<XattrReply> {
        let name = name.as_bytes();
        xattr_name_check(name, true)?;
        self.inode(ino)?;
        let v = self
            .inodes
            .xattrs(ino)
            .and_then(|x| x.get(name))
            .ok_or(Errno::new(libc::ENODATA))?;
        sized_reply(v.to_vec(), size)
    }

    /// Lists extended attribute names, NUL-terminated.
    pub fn listxattr(&self, ino: u64, size: u32) -> Result<XattrReply> {
        self.inode(ino)?;
        let mut out = Vec::new();
        for k in self.inodes.xattrs(ino).iter().flat_map(|x| x.keys()) {
            out.extend_from_slice(k);
            out.push(0);
        }
        sized_reply(out, size)
    }

    /// Removes extended attribute `name`.
    pub fn removexattr(&mut self, ino: u64, name: &OsStr) -> Result<()> {
        let name = name.as_bytes();
        self.may_change_xattrs(ino)?;
        xattr_name_check(name, false)?;
        self.inode(ino)?;
        self.inodes
            .remove_xattr(ino, name)
            .ok_or(Errno::new(libc::ENODATA))?;
        self.inode_mut(ino)?.ctime = SystemTime::now().into();
        Ok(())
    }
}
