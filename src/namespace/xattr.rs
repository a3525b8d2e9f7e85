//! Extended attributes in the `user.`, `trusted.` and `security.`
//! namespaces, with tmpfs's errno rules, and the two POSIX ACL attributes
//! (their rules in [`crate::namespace::acl`]).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

use crate::error::{Errno, Result, err};
use crate::namespace::Namespace;
use crate::namespace::acl::{self, Acl};
use crate::namespace::inode::{Kind, mode, xattr_space};

/// Reply of `getxattr`/`listxattr`: the needed size or the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XattrReply {
    /// The caller asked for the size only.
    Size(u32),
    /// The value (or the NUL-separated name list).
    Data(Vec<u8>),
}

/// Checks an xattr name: `user.`, `trusted.` and `security.` names and
/// the two POSIX ACL names are stored; other namespaces are `EOPNOTSUPP`;
/// a bare prefix is `EINVAL`, as on tmpfs.
fn xattr_name_check(name: &[u8]) -> Result<()> {
    for p in [&b"user."[..], b"trusted.", b"security."] {
        if name.starts_with(p) {
            return if name.len() > p.len() {
                Ok(())
            } else {
                err(libc::EINVAL)
            };
        }
    }
    if is_acl(name) {
        return Ok(());
    }
    err(libc::EOPNOTSUPP)
}

/// Whether `name` is one of the two POSIX ACL attributes.
pub fn is_acl(name: &[u8]) -> bool {
    name == acl::ACCESS || name == acl::DEFAULT
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
    /// `flags`), as a caller who is in the file's group or has
    /// `CAP_FSETID` (see [`Namespace::setxattr_as`]).
    pub fn setxattr(&mut self, ino: u64, name: &OsStr, value: &[u8], flags: i32) -> Result<()> {
        self.setxattr_as(ino, name, value, flags, true)
    }

    /// [`Namespace::setxattr`]; `in_group_or_capable` says whether the
    /// caller is in the file's group or has `CAP_FSETID`: setting an access
    /// ACL clears the setgid bit otherwise, as on tmpfs.
    pub fn setxattr_as(
        &mut self,
        ino: u64,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        in_group_or_capable: bool,
    ) -> Result<()> {
        let name = name.as_bytes();
        self.may_change_xattrs(ino)?;
        xattr_name_check(name)?;
        self.inode(ino)?;
        if is_acl(name) {
            // The kernel ignores the flags for ACLs (and sends none).
            return match acl::parse(value)? {
                Some(a) => self.set_acl(ino, name, a, in_group_or_capable),
                None => self.remove_acl(ino, name),
            };
        }
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
        self.reserve_ispace(xattr_space(name, value))?;
        self.inodes.set_xattr(ino, name, value);
        self.inode_mut(ino)?.ctime = SystemTime::now().into();
        Ok(())
    }

    /// Gets extended attribute `name`; `size` 0 asks for the length only.
    pub fn getxattr(&self, ino: u64, name: &OsStr, size: u32) -> Result<XattrReply> {
        let name = name.as_bytes();
        xattr_name_check(name)?;
        self.inode(ino)?;
        let v = self
            .inodes
            .xattrs(ino)
            .and_then(|x| x.get(name))
            .ok_or(Errno::new(libc::ENODATA))?;
        sized_reply(v.to_vec(), size)
    }

    /// Lists extended attribute names, NUL-terminated: the ACLs first,
    /// then the others sorted, in tmpfs's order.
    pub fn listxattr(&self, ino: u64, size: u32) -> Result<XattrReply> {
        self.inode(ino)?;
        let mut out = Vec::new();
        let x = self.inodes.xattrs(ino);
        let keys = || x.iter().flat_map(|x| x.keys());
        let acls = [acl::ACCESS, acl::DEFAULT]
            .into_iter()
            .filter(|n| x.is_some_and(|x| x.contains_key(*n)));
        for k in acls.chain(keys().map(|k| &**k).filter(|k| !is_acl(k))) {
            out.extend_from_slice(k);
            out.push(0);
        }
        sized_reply(out, size)
    }

    /// Removes extended attribute `name`.
    pub fn removexattr(&mut self, ino: u64, name: &OsStr) -> Result<()> {
        let name = name.as_bytes();
        self.may_change_xattrs(ino)?;
        xattr_name_check(name)?;
        self.inode(ino)?;
        if is_acl(name) {
            return self.remove_acl(ino, name);
        }
        self.inodes
            .remove_xattr(ino, name)
            .ok_or(Errno::new(libc::ENODATA))?;
        self.inode_mut(ino)?.ctime = SystemTime::now().into();
        Ok(())
    }
}

impl Namespace {
    /// Sets ACL `name` of `ino` (tmpfs's `simple_set_acl`). An access ACL
    /// sets the permission bits; one the mode says entirely is not stored
    /// (and removes a stored one). Default ACLs exist on directories only.
    fn set_acl(&mut self, ino: u64, name: &[u8], a: Acl, in_group_or_capable: bool) -> Result<()> {
        let i = self.inode(ino)?;
        match i.kind {
            Kind::Symlink => return err(libc::EOPNOTSUPP),
            Kind::Directory => {}
            _ if name == acl::DEFAULT => return err(libc::EACCES),
            _ => {}
        }
        let mut perm = u32::from(i.perm);
        let mut store = Some(a.encode());
        if name == acl::ACCESS {
            let (bits, equiv) = a.equiv_mode();
            perm = (perm & !0o777) | bits;
            if !in_group_or_capable {
                perm &= !mode::S_ISGID;
            }
            if equiv {
                store = None;
            }
        }
        match store {
            Some(v) => {
                self.reserve_ispace(xattr_space(name, &v))?;
                self.inodes.set_xattr(ino, name, &v);
            }
            None => {
                self.inodes.remove_xattr(ino, name);
            }
        }
        let i = self.inode_mut(ino)?;
        i.perm = perm as u16;
        i.ctime = SystemTime::now().into();
        Ok(())
    }

    /// Removes ACL `name` of `ino`; removing one that is not there
    /// succeeds, as on tmpfs. The mode is unchanged.
    fn remove_acl(&mut self, ino: u64, name: &[u8]) -> Result<()> {
        if self.inode(ino)?.kind == Kind::Symlink {
            return err(libc::EOPNOTSUPP);
        }
        self.inodes.remove_xattr(ino, name);
        self.inode_mut(ino)?.ctime = SystemTime::now().into();
        Ok(())
    }

    /// The stored ACL `name` of `ino`, if any (stored ACLs are valid).
    pub(crate) fn acl(&self, ino: u64, name: &[u8]) -> Option<Acl> {
        let v = self.inodes.xattrs(ino)?.get(name)?;
        acl::parse(v).ok().flatten()
    }

    /// `chmod` of `ino` to permission bits `perm`: its access ACL follows
    /// (`posix_acl_chmod`); the value keeps its size.
    pub(crate) fn chmod_acl(&mut self, ino: u64, perm: u32) {
        if let Some(mut a) = self.acl(ino, acl::ACCESS) {
            a.chmod(perm);
            self.inodes.set_xattr(ino, acl::ACCESS, &a.encode());
        }
    }

    /// Whether a caller with user `uid` and groups `in_group` may access
    /// `ino` for `mask` (`R_OK | W_OK | X_OK`), as the kernel decides with
    /// ACLs: the owner and root by the mode, others by the access ACL when
    /// there is one and the group bits are not all clear.
    pub fn permits(&self, ino: u64, uid: u32, in_group: impl Fn(u32) -> bool, mask: u32) -> bool {
        let Some(i) = self.inodes.get(ino) else {
            return false;
        };
        if uid != 0
            && uid != i.uid
            && i.perm & 0o070 != 0
            && let Some(a) = self.acl(ino, acl::ACCESS)
        {
            return a.permits(uid, i.gid, in_group, mask);
        }
        i.permits(uid, in_group, mask)
    }
}
