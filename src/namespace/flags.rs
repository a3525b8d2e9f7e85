//! Inode flags (`chattr`/`lsattr`): the ones tmpfs keeps, their two
//! forms on the wire (`FS_IOC_GETFLAGS`/`FS_IOC_SETFLAGS` with an `int`,
//! `FS_IOC_FSGETXATTR`/`FS_IOC_FSSETXATTR` with a `struct fsxattr`), and the
//! rules immutable and append-only impose, checked here by the namespace
//! operations.
//!
//! The FUSE kernel module keeps no flags on its inodes, so none of the
//! checks the kernel makes for tmpfs (`IS_IMMUTABLE`, `IS_APPEND`) happen
//! before a request reaches triefs: every rule is the namespace's own, with
//! tmpfs's errno (`EPERM`), also for root. What the kernel still checks
//! itself is who may change flags: the owner or `CAP_FOWNER`, and
//! `CAP_LINUX_IMMUTABLE` to change immutable or append-only (it asks for
//! the current flags first and compares).
//!
//! tmpfs's set (`SHMEM_FL_USER_MODIFIABLE` in `include/linux/shmem_fs.h`):
//! immutable, append-only, no-dump and no-atime; any other flag is
//! `EOPNOTSUPP`. (Casefold is one only on a tmpfs mounted with an
//! encoding, which triefs has no counterpart of; without one tmpfs answers
//! `EOPNOTSUPP` too.) New inodes inherit no-dump and no-atime from their
//! directory (`SHMEM_FL_INHERITED`). No-atime changes nothing here: reads
//! never update atime in triefs.

use crate::error::{Errno, Result, err};
use crate::namespace::Namespace;
use crate::namespace::inode::Kind;

/// `FS_IMMUTABLE_FL`: no change to the file at all, not even by root.
pub const FS_IMMUTABLE_FL: u32 = 0x10;
/// `FS_APPEND_FL`: data may only be appended; names and attributes fixed.
pub const FS_APPEND_FL: u32 = 0x20;
/// `FS_NODUMP_FL`: a hint for backup tools.
pub const FS_NODUMP_FL: u32 = 0x40;
/// `FS_NOATIME_FL`: do not update atime.
pub const FS_NOATIME_FL: u32 = 0x80;

/// The flags tmpfs lets `FS_IOC_SETFLAGS` change; others are `EOPNOTSUPP`.
pub const MODIFIABLE: u32 = FS_IMMUTABLE_FL | FS_APPEND_FL | FS_NODUMP_FL | FS_NOATIME_FL;
/// The flags a new inode takes over from its directory.
pub const INHERITED: u32 = FS_NODUMP_FL | FS_NOATIME_FL;

/// `FS_XFLAG_IMMUTABLE`, the `fsxattr` form of [`FS_IMMUTABLE_FL`].
pub const FS_XFLAG_IMMUTABLE: u32 = 0x08;
/// `FS_XFLAG_APPEND`.
pub const FS_XFLAG_APPEND: u32 = 0x10;
/// `FS_XFLAG_SYNC`.
pub const FS_XFLAG_SYNC: u32 = 0x20;
/// `FS_XFLAG_NOATIME`.
pub const FS_XFLAG_NOATIME: u32 = 0x40;
/// `FS_XFLAG_NODUMP`.
pub const FS_XFLAG_NODUMP: u32 = 0x80;
/// `FS_XFLAG_PROJINHERIT`.
pub const FS_XFLAG_PROJINHERIT: u32 = 0x200;
/// `FS_XFLAG_DAX`.
pub const FS_XFLAG_DAX: u32 = 0x8000;
/// `FS_XFLAG_COMMON`: the xflags that have a `FS_*_FL` twin; a request
/// with any other (or with an extent size or project id) is `EOPNOTSUPP`
/// on tmpfs (`fileattr_has_fsx`).
pub const FS_XFLAG_COMMON: u32 = FS_XFLAG_SYNC
    | FS_XFLAG_IMMUTABLE
    | FS_XFLAG_APPEND
    | FS_XFLAG_NODUMP
    | FS_XFLAG_NOATIME
    | FS_XFLAG_DAX
    | FS_XFLAG_PROJINHERIT;

/// `FS_SYNC_FL`, `FS_DAX_FL`, `FS_PROJINHERIT_FL`: the other flags with
/// an xflag twin; tmpfs refuses them.
const FS_SYNC_FL: u32 = 0x8;
const FS_DAX_FL: u32 = 0x0200_0000;
const FS_PROJINHERIT_FL: u32 = 0x2000_0000;

/// `(FS_*_FL, FS_XFLAG_*)` pairs, as the kernel translates them
/// (`fileattr_fill_flags`, `fileattr_fill_xflags`).
const TWINS: [(u32, u32); 7] = [
    (FS_IMMUTABLE_FL, FS_XFLAG_IMMUTABLE),
    (FS_APPEND_FL, FS_XFLAG_APPEND),
    (FS_SYNC_FL, FS_XFLAG_SYNC),
    (FS_NOATIME_FL, FS_XFLAG_NOATIME),
    (FS_NODUMP_FL, FS_XFLAG_NODUMP),
    (FS_DAX_FL, FS_XFLAG_DAX),
    (FS_PROJINHERIT_FL, FS_XFLAG_PROJINHERIT),
];

const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | ((ty as u32) << 8) | nr as u32
}

/// `FS_IOC_GETFLAGS`, `_IOR('f', 1, long)`. Only the kernel's own number is
/// accepted: the 32-bit one (`FS_IOC32_*`) from a 64-bit process is not
/// taken over by the VFS and would reach triefs as a raw ioctl, without
/// the kernel's owner and capability checks.
pub const IOC_GETFLAGS: u32 = ioc(2, b'f', 1, std::mem::size_of::<libc::c_long>());
/// `FS_IOC_SETFLAGS`, `_IOW('f', 2, long)`.
pub const IOC_SETFLAGS: u32 = ioc(1, b'f', 2, std::mem::size_of::<libc::c_long>());
/// `FS_IOC_FSGETXATTR`, `_IOR('X', 31, struct fsxattr)`.
pub const IOC_FSGETXATTR: u32 = ioc(2, b'X', 31, FsXattr::SIZE);
/// `FS_IOC_FSSETXATTR`, `_IOW('X', 32, struct fsxattr)`.
pub const IOC_FSSETXATTR: u32 = ioc(1, b'X', 32, FsXattr::SIZE);

/// The flags of one inode, in one byte (the inode has exactly one spare).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags(u8);

impl Flags {
    /// The flags among `fs` (`FS_*_FL` bits) that triefs keeps; others
    /// are dropped (callers refuse them first).
    pub fn from_fs(fs: u32) -> Flags {
        let mut b = 0;
        for (i, f) in KEPT.iter().enumerate() {
            if fs & f != 0 {
                b |= 1 << i;
            }
        }
        Flags(b)
    }

    /// As `FS_*_FL` bits.
    pub fn to_fs(self) -> u32 {
        KEPT.iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .fold(0, |acc, (_, f)| acc | f)
    }

    /// Immutable.
    pub fn immutable(self) -> bool {
        self.to_fs() & FS_IMMUTABLE_FL != 0
    }

    /// Append-only.
    pub fn append(self) -> bool {
        self.to_fs() & FS_APPEND_FL != 0
    }

    /// Immutable or append-only: no name, attribute or xattr may change.
    pub fn fixed(self) -> bool {
        self.immutable() || self.append()
    }

    /// What a new inode in a directory with these flags starts with.
    pub fn inherited(self) -> Flags {
        Flags::from_fs(self.to_fs() & INHERITED)
    }
}

/// The flags kept, bit `i` of [`Flags`] being `KEPT[i]`.
const KEPT: [u32; 4] = [FS_IMMUTABLE_FL, FS_APPEND_FL, FS_NODUMP_FL, FS_NOATIME_FL];

/// `struct fsxattr` (28 bytes, native byte order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsXattr {
    /// `fsx_xflags`.
    pub xflags: u32,
    /// `fsx_extsize`.
    pub extsize: u32,
    /// `fsx_nextents`.
    pub nextents: u32,
    /// `fsx_projid`.
    pub projid: u32,
    /// `fsx_cowextsize`.
    pub cowextsize: u32,
}

impl FsXattr {
    /// Size of `struct fsxattr`: five `u32` and 8 bytes of padding.
    pub const SIZE: usize = 28;

    /// Decodes the kernel's bytes; anything but exactly [`FsXattr::SIZE`]
    /// bytes is `EINVAL`.
    pub fn from_bytes(b: &[u8]) -> Result<FsXattr> {
        if b.len() != Self::SIZE {
            return err(libc::EINVAL);
        }
        let w = |i: usize| u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        Ok(FsXattr {
            xflags: w(0),
            extsize: w(1),
            nextents: w(2),
            projid: w(3),
            cowextsize: w(4),
        })
    }

    /// The kernel's bytes (padding zero).
    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let words = [
            self.xflags,
            self.extsize,
            self.nextents,
            self.projid,
            self.cowextsize,
        ];
        for (i, v) in words.iter().enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }
}

/// `FS_*_FL` bits as `FS_XFLAG_*` bits.
pub fn fs_to_xflags(fs: u32) -> u32 {
    TWINS
        .iter()
        .filter(|(f, _)| fs & f != 0)
        .fold(0, |acc, (_, x)| acc | x)
}

/// `FS_XFLAG_*` bits as `FS_*_FL` bits (xflags without a twin are dropped).
pub fn xflags_to_fs(x: u32) -> u32 {
    TWINS
        .iter()
        .filter(|(_, xf)| x & xf != 0)
        .fold(0, |acc, (f, _)| acc | f)
}

/// Decodes the `int` of `FS_IOC_SETFLAGS` as the kernel sends it to a FUSE
/// server (4 bytes, native order; `EINVAL` otherwise).
pub fn flags_from_bytes(b: &[u8]) -> Result<u32> {
    let a: [u8; 4] = b.try_into().map_err(|_| Errno::new(libc::EINVAL))?;
    Ok(u32::from_ne_bytes(a))
}

impl Namespace {
    /// The inode whose flags `FS_IOC_*` may read or change: regular files
    /// and directories only (the kernel asks for nothing else; tmpfs's
    /// other inodes have no such operation).
    fn flags_inode(&self, ino: u64) -> Result<super::inode::InodeRef<'_>> {
        let i = self.inode(ino)?;
        match i.kind {
            Kind::RegularFile | Kind::Directory => Ok(i),
            _ => err(libc::ENOTTY),
        }
    }

    /// `FS_IOC_GETFLAGS`: the flags of `ino` as `FS_*_FL` bits.
    pub fn get_flags(&self, ino: u64) -> Result<u32> {
        Ok(self.flags_inode(ino)?.flags.to_fs())
    }

    /// `FS_IOC_SETFLAGS`: sets the flags of `ino` to `fs`, as tmpfs does:
    /// a flag it does not keep is `EOPNOTSUPP`; the change time moves even
    /// when nothing changes. Who may do this (owner, `CAP_LINUX_IMMUTABLE`
    /// for immutable and append-only) the kernel checked before asking.
    pub fn set_flags(&mut self, ino: u64, fs: u32) -> Result<()> {
        self.flags_inode(ino)?;
        if fs & !MODIFIABLE != 0 {
            return err(libc::EOPNOTSUPP);
        }
        let i = self.inode_mut(ino)?;
        i.flags = Flags::from_fs(fs);
        i.ctime = std::time::SystemTime::now().into();
        Ok(())
    }

    /// `FS_IOC_FSGETXATTR`: the flags as xflags; no extent sizes, extents
    /// or project, as on tmpfs.
    pub fn get_fsxattr(&self, ino: u64) -> Result<FsXattr> {
        Ok(FsXattr {
            xflags: fs_to_xflags(self.get_flags(ino)?),
            ..FsXattr::default()
        })
    }

    /// `FS_IOC_FSSETXATTR`: only xflags with a kept twin, and no extent
    /// size or project id (`EOPNOTSUPP` otherwise, as tmpfs's
    /// `fileattr_has_fsx`).
    pub fn set_fsxattr(&mut self, ino: u64, x: FsXattr) -> Result<()> {
        self.flags_inode(ino)?;
        if x.xflags & !FS_XFLAG_COMMON != 0 || x.extsize != 0 || x.projid != 0 || x.cowextsize != 0
        {
            return err(libc::EOPNOTSUPP);
        }
        self.set_flags(ino, xflags_to_fs(x.xflags))
    }

    /// The flags of `ino` (none for a missing inode: the operation that
    /// asks reports that itself).
    pub(crate) fn flags_of(&self, ino: u64) -> Flags {
        self.inodes.get(ino).map_or(Flags::default(), |i| i.flags)
    }

    /// Creating a name in `dir` (create, mkdir, mknod, symlink, link, the
    /// target side of a rename): refused in an immutable directory
    /// (`may_create` in the kernel, for tmpfs).
    pub(crate) fn may_create(&self, dir: u64) -> Result<()> {
        if self.flags_of(dir).immutable() {
            return err(libc::EPERM);
        }
        Ok(())
    }

    /// Removing or replacing the name of `victim` in `dir` (unlink, rmdir,
    /// both sides of a rename): refused in an immutable or append-only
    /// directory, and for an immutable or append-only victim (`may_delete`).
    pub(crate) fn may_delete(&self, dir: u64, victim: u64) -> Result<()> {
        if self.flags_of(dir).fixed() || self.flags_of(victim).fixed() {
            return err(libc::EPERM);
        }
        Ok(())
    }

    /// Writing to `ino` (appending, or at an offset) through a descriptor
    /// whose opening was not checked with [`Namespace::open`] (the kernel
    /// did not ask): what tmpfs refuses at open(2), refused per write. An
    /// immutable file takes no writes, an append-only one only appends.
    pub fn may_write(&self, ino: u64, append: bool) -> Result<()> {
        let f = self.inode(ino)?.flags;
        if f.immutable() || (f.append() && !append) {
            return err(libc::EPERM);
        }
        Ok(())
    }

    /// Opening `ino` with open(2) `flags`: an immutable file cannot be
    /// opened for writing or truncated; an append-only one only for
    /// appending, never truncated (`may_open`).
    pub(crate) fn may_open(&self, ino: u64, flags: i32) -> Result<()> {
        let f = self.flags_of(ino);
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let trunc = flags & libc::O_TRUNC != 0;
        if (f.immutable() && (writes || trunc))
            || (f.append() && (trunc || (writes && flags & libc::O_APPEND == 0)))
        {
            return err(libc::EPERM);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_are_the_kernels() {
        // As <linux/fs.h> spells them on a 64-bit machine.
        if std::mem::size_of::<libc::c_long>() == 8 {
            assert_eq!(IOC_GETFLAGS, 0x8008_6601);
            assert_eq!(IOC_SETFLAGS, 0x4008_6602);
        }
        assert_eq!(IOC_FSGETXATTR, 0x801c_581f);
        assert_eq!(IOC_FSSETXATTR, 0x401c_5820);
    }

    #[test]
    fn flags_round_trip_through_one_byte() {
        for fs in 0..=MODIFIABLE {
            let kept = fs & MODIFIABLE;
            assert_eq!(Flags::from_fs(fs).to_fs(), kept, "{fs:#x}");
        }
        assert_eq!(std::mem::size_of::<Flags>(), 1);
        let f = Flags::from_fs(FS_IMMUTABLE_FL | FS_NODUMP_FL);
        assert!(f.immutable() && !f.append() && f.fixed());
        assert_eq!(f.inherited().to_fs(), FS_NODUMP_FL);
        assert!(Flags::from_fs(FS_APPEND_FL).fixed());
        assert!(!Flags::from_fs(FS_NODUMP_FL | FS_NOATIME_FL).fixed());
    }

    #[test]
    fn xflags_translate_as_the_kernel_does() {
        assert_eq!(fs_to_xflags(MODIFIABLE), 0x08 | 0x10 | 0x40 | 0x80);
        assert_eq!(xflags_to_fs(fs_to_xflags(MODIFIABLE)), MODIFIABLE);
        // An xflag without a twin (FS_XFLAG_REALTIME) has no flag.
        assert_eq!(xflags_to_fs(0x1), 0);
    }

    #[test]
    fn fsxattr_bytes_round_trip_and_sizes_are_checked() {
        let x = FsXattr {
            xflags: 0x18,
            extsize: 1,
            nextents: 2,
            projid: 3,
            cowextsize: 4,
        };
        assert_eq!(FsXattr::from_bytes(&x.to_bytes()), Ok(x));
        assert!(FsXattr::from_bytes(&[0; 27]).is_err());
        assert!(FsXattr::from_bytes(&[0; 29]).is_err());
        assert_eq!(flags_from_bytes(&0x30u32.to_ne_bytes()), Ok(0x30));
        // The ioctl's nominal size (a long) is not what the kernel sends.
        assert!(flags_from_bytes(&[0; 8]).is_err());
        assert!(flags_from_bytes(&[]).is_err());
    }
}
