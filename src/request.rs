//! The kernel's requests by name: what fault rules match (`--op`) and what
//! a trace prints. One list, so the two always agree.

use std::fmt;

/// One kind of FUSE request that reaches the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Op {
    /// Name to inode (`LOOKUP`).
    Lookup,
    /// The kernel dropped its references (`FORGET`).
    Forget,
    /// Attributes (`GETATTR`).
    Getattr,
    /// chmod, chown, truncate, utimes (`SETATTR`).
    Setattr,
    /// A symlink's target (`READLINK`).
    Readlink,
    /// A device, fifo or socket node (`MKNOD`).
    Mknod,
    /// A directory (`MKDIR`).
    Mkdir,
    /// Removing a name (`UNLINK`).
    Unlink,
    /// Removing a directory (`RMDIR`).
    Rmdir,
    /// A symlink (`SYMLINK`).
    Symlink,
    /// A rename (`RENAME`, `RENAME2`).
    Rename,
    /// A hard link (`LINK`).
    Link,
    /// Opening a file (`OPEN`).
    Open,
    /// Reading file data (`READ`).
    Read,
    /// Writing file data (`WRITE`).
    Write,
    /// A close of a file descriptor (`FLUSH`).
    Flush,
    /// The last close of an open file (`RELEASE`).
    Release,
    /// fsync or fdatasync of a file (`FSYNC`).
    Fsync,
    /// Opening a directory (`OPENDIR`).
    Opendir,
    /// Listing a directory (`READDIR`).
    Readdir,
    /// Listing a directory with attributes (`READDIRPLUS`).
    Readdirplus,
    /// The last close of a directory (`RELEASEDIR`).
    Releasedir,
    /// fsync of a directory (`FSYNCDIR`).
    Fsyncdir,
    /// Filesystem usage (`STATFS`).
    Statfs,
    /// Setting an extended attribute (`SETXATTR`).
    Setxattr,
    /// Reading an extended attribute (`GETXATTR`).
    Getxattr,
    /// Listing extended attributes (`LISTXATTR`).
    Listxattr,
    /// Removing an extended attribute (`REMOVEXATTR`).
    Removexattr,
    /// access(2) (`ACCESS`).
    Access,
    /// Creating and opening a file (`CREATE`).
    Create,
    /// fallocate(2) (`FALLOCATE`).
    Fallocate,
    /// lseek(2) with `SEEK_DATA`/`SEEK_HOLE` (`LSEEK`).
    Lseek,
    /// copy_file_range(2) (`COPY_FILE_RANGE`).
    CopyFileRange,
    /// An ioctl on a file (`IOCTL`): `chattr`/`lsattr` flags. triefs's own
    /// control ioctls are never matched or traced.
    Ioctl,
}

impl Op {
    /// Every request, in the order of [`Op::name`]'s list.
    pub const ALL: [Op; 34] = [
        Op::Lookup,
        Op::Forget,
        Op::Getattr,
        Op::Setattr,
        Op::Readlink,
        Op::Mknod,
        Op::Mkdir,
        Op::Unlink,
        Op::Rmdir,
        Op::Symlink,
        Op::Rename,
        Op::Link,
        Op::Open,
        Op::Read,
        Op::Write,
        Op::Flush,
        Op::Release,
        Op::Fsync,
        Op::Opendir,
        Op::Readdir,
        Op::Readdirplus,
        Op::Releasedir,
        Op::Fsyncdir,
        Op::Statfs,
        Op::Setxattr,
        Op::Getxattr,
        Op::Listxattr,
        Op::Removexattr,
        Op::Access,
        Op::Create,
        Op::Fallocate,
        Op::Lseek,
        Op::CopyFileRange,
        Op::Ioctl,
    ];

    /// The request's name, as `--op` takes it and a trace prints it.
    pub const fn name(self) -> &'static str {
        match self {
            Op::Lookup => "lookup",
            Op::Forget => "forget",
            Op::Getattr => "getattr",
            Op::Setattr => "setattr",
            Op::Readlink => "readlink",
            Op::Mknod => "mknod",
            Op::Mkdir => "mkdir",
            Op::Unlink => "unlink",
            Op::Rmdir => "rmdir",
            Op::Symlink => "symlink",
            Op::Rename => "rename",
            Op::Link => "link",
            Op::Open => "open",
            Op::Read => "read",
            Op::Write => "write",
            Op::Flush => "flush",
            Op::Release => "release",
            Op::Fsync => "fsync",
            Op::Opendir => "opendir",
            Op::Readdir => "readdir",
            Op::Readdirplus => "readdirplus",
            Op::Releasedir => "releasedir",
            Op::Fsyncdir => "fsyncdir",
            Op::Statfs => "statfs",
            Op::Setxattr => "setxattr",
            Op::Getxattr => "getxattr",
            Op::Listxattr => "listxattr",
            Op::Removexattr => "removexattr",
            Op::Access => "access",
            Op::Create => "create",
            Op::Fallocate => "fallocate",
            Op::Lseek => "lseek",
            Op::CopyFileRange => "copy_file_range",
            Op::Ioctl => "ioctl",
        }
    }

    /// Whether a fault rule may fail this request. `forget`, `release` and
    /// `releasedir` have no answer a program could see; `access` never
    /// comes (the kernel checks permissions itself: triefs mounts with
    /// `default_permissions`).
    pub const fn can_fail(self) -> bool {
        !matches!(self, Op::Forget | Op::Release | Op::Releasedir | Op::Access)
    }

    const fn bit(self) -> u64 {
        1 << (self as u8)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of requests (`--op a,b,c`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpSet(u64);

/// Names that stand for several requests.
const GROUPS: [(&str, &[Op]); 2] = [
    (
        "xattr",
        &[Op::Setxattr, Op::Getxattr, Op::Listxattr, Op::Removexattr],
    ),
    // What a program calls reading a directory; the kernel sends either.
    ("readdir", &[Op::Readdir, Op::Readdirplus]),
];

impl OpSet {
    /// No request.
    pub const EMPTY: OpSet = OpSet(0);

    /// Every request a rule can fail (`all`).
    pub fn all() -> OpSet {
        Op::ALL
            .iter()
            .filter(|o| o.can_fail())
            .fold(OpSet::EMPTY, |s, &o| s.with(o))
    }

    /// This set and `op`.
    pub fn with(self, op: Op) -> OpSet {
        OpSet(self.0 | op.bit())
    }

    /// Whether `op` is in the set.
    pub fn contains(self, op: Op) -> bool {
        self.0 & op.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Parses `a,b,c`: request names, `xattr` (the four xattr requests),
    /// `readdir` (with `readdirplus`) and `all`. The error names the word
    /// that is not a request.
    pub fn parse(list: &str) -> Result<OpSet, String> {
        let mut set = OpSet::EMPTY;
        for word in list.split(',').map(str::trim) {
            if word == "all" {
                set = OpSet(set.0 | OpSet::all().0);
            } else if let Some((_, ops)) = GROUPS.iter().find(|(g, _)| *g == word) {
                set = ops.iter().fold(set, |s, &o| s.with(o));
            } else if let Some(&op) = Op::ALL.iter().find(|o| o.name() == word) {
                if op == Op::Access {
                    return Err(format!(
                        "'{word}': the kernel checks permissions itself and never asks triefs"
                    ));
                }
                if !op.can_fail() {
                    return Err(format!("'{word}': no answer of it reaches a program"));
                }
                set = set.with(op);
            } else {
                return Err(format!(
                    "'{word}': not a request name (one of all, xattr, {})",
                    Op::ALL
                        .iter()
                        .filter(|o| o.can_fail())
                        .map(|o| o.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        if set.is_empty() {
            return Err("no request named".into());
        }
        Ok(set)
    }

    /// The set as `parse` reads it back: `all`, or names in order (groups
    /// written as their members).
    pub fn names(self) -> String {
        if self == OpSet::all() {
            return "all".into();
        }
        Op::ALL
            .iter()
            .filter(|&&o| self.contains(o))
            .map(|o| o.name())
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for op in Op::ALL {
            assert_eq!(Op::ALL[op as usize], op, "ALL is in declaration order");
            // `readdir` is a group: the kernel sends either listing.
            if op.can_fail() && op != Op::Readdir {
                assert_eq!(OpSet::parse(op.name()).unwrap(), OpSet::EMPTY.with(op));
            }
        }
        let s = OpSet::parse("write, xattr,readdir").unwrap();
        assert!(s.contains(Op::Write) && s.contains(Op::Listxattr));
        assert!(s.contains(Op::Readdirplus) && !s.contains(Op::Read));
        assert_eq!(OpSet::parse(&s.names()).unwrap(), s);
        assert_eq!(OpSet::parse("all").unwrap().names(), "all");
        assert!(!OpSet::all().contains(Op::Forget));
        assert!(OpSet::parse("wrte").unwrap_err().contains("'wrte'"));
        assert!(OpSet::parse("forget").is_err());
        assert!(OpSet::parse("").is_err());
    }
}
