//! Prefix listing: every leaf path under a directory, answered by the
//! daemon from the trie instead of walking the tree through the kernel.
//!
//! `triefs ls-prefix MOUNTPOINT [PREFIX]` opens the directory and pages
//! through the listing with one ioctl per page ([`IOC_LS`]). A page holds
//! up to [`IOC_SIZE`] bytes, the most a FUSE ioctl can carry without
//! CUSE's unrestricted mode; the daemon keeps no state between pages (each
//! request carries the last path of the previous page).
//!
//! Wire format of one `_IOWR` ioctl of [`IOC_SIZE`] bytes:
//! - in: `u32` (little-endian) cursor length, then the cursor: the last
//!   path of the previous page, relative to the directory (empty at first);
//! - out: `u32` flags ([`FLAG_DONE`], [`FLAG_SKIPPED`]), `u32` count, then
//!   `count` NUL-terminated paths relative to the directory.
//!
//! Directories the caller could not list (read and search permission,
//! supplementary groups included) are skipped and reported, like `find`.

use std::ffi::OsStr;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::inode::Inode;
use crate::ops::{Error, Namespace};
use crate::trie::LeafPage;

/// Bytes exchanged per ioctl: below `_IOC_SIZE`'s 14-bit limit.
pub const IOC_SIZE: usize = 16 * 1024 - 8;

/// The ioctl number: `_IOWR(0xF7, 0x4C, [u8; IOC_SIZE])`.
pub const IOC_LS: u32 = (3 << 30) | ((IOC_SIZE as u32) << 16) | (0xF7 << 8) | 0x4C;

/// Out flag: the listing is complete.
pub const FLAG_DONE: u32 = 1;
/// Out flag: some directories were not listed for lack of permission.
pub const FLAG_SKIPPED: u32 = 2;

/// Bytes of the out header (flags, count).
const HEADER: usize = 8;

/// Who asks: permission to list a directory is checked per directory.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Effective user.
    pub uid: u32,
    /// Effective group.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl Caller {
    /// The caller of a request from process `pid`, with the supplementary
    /// groups read from `/proc/PID/status` (none if it cannot be read).
    pub fn of_process(uid: u32, gid: u32, pid: u32) -> Caller {
        let groups = if uid == 0 {
            Vec::new()
        } else {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines().find_map(|l| l.strip_prefix("Groups:")).map(|g| {
                        g.split_whitespace()
                            .filter_map(|n| n.parse().ok())
                            .collect()
                    })
                })
                .unwrap_or_default()
        };
        Caller { uid, gid, groups }
    }

    /// Whether the caller may read and search directory `i`.
    fn may_list(&self, i: &Inode) -> bool {
        let in_group = |g| g == self.gid || self.groups.contains(&g);
        i.permits(self.uid, in_group, (libc::R_OK | libc::X_OK) as u32)
    }
}

impl Namespace {
    /// One page of the leaf paths under directory `ino` (see
    /// [`crate::trie::Trie::leaves_page`]), entering only directories
    /// `caller` may read and search.
    pub fn leaves_page(
        &self,
        ino: u64,
        after: Option<&[u8]>,
        budget: usize,
        caller: &Caller,
    ) -> Result<LeafPage, Error> {
        let node = self.dir_node(ino)?;
        let enter = |n| {
            self.trie
                .value(n)
                .and_then(|&i| self.inodes.get(i))
                .is_some_and(|i| caller.may_list(i))
        };
        Ok(self.trie.leaves_page(node, after, budget, enter)?)
    }
}

/// The cursor of a request, `None` when empty; `EINVAL` when malformed.
pub fn decode_request(data: &[u8]) -> Result<Option<&[u8]>, Error> {
    let len = data
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or(Error(libc::EINVAL))?;
    let cursor = len
        .checked_add(4)
        .and_then(|end| data.get(4..end))
        .ok_or(Error(libc::EINVAL))?;
    Ok((!cursor.is_empty()).then_some(cursor))
}

/// The reply to a request: header and NUL-terminated paths.
pub fn encode_page(page: &LeafPage) -> Vec<u8> {
    let mut flags = 0;
    if page.done {
        flags |= FLAG_DONE;
    }
    if page.skipped > 0 {
        flags |= FLAG_SKIPPED;
    }
    let size: usize = page.paths.iter().map(|p| p.len() + 1).sum();
    let mut out = Vec::with_capacity(HEADER + size);
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&(page.paths.len() as u32).to_le_bytes());
    for p in &page.paths {
        out.extend_from_slice(p);
        out.push(0);
    }
    out
}

/// Bytes of paths one page may hold.
pub const PAGE_BUDGET: usize = IOC_SIZE - HEADER;

/// What a whole listing reported besides its paths.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Listed {
    /// Paths passed to the callback.
    pub paths: u64,
    /// Some directories were skipped for lack of permission.
    pub skipped: bool,
}

/// Lists every leaf path under `dir` (inside a triefs mount), calling
/// `each` with each path relative to `dir` (empty for `dir` itself when
/// it is an empty directory).
pub fn list(dir: &Path, mut each: impl FnMut(&OsStr)) -> io::Result<Listed> {
    let f = std::fs::File::open(dir)?;
    if !f.metadata()?.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    let mut buf = vec![0u8; IOC_SIZE];
    let mut cursor: Vec<u8> = Vec::new();
    let mut listed = Listed::default();
    loop {
        buf[..4].copy_from_slice(&(cursor.len() as u32).to_le_bytes());
        buf[4..4 + cursor.len()].copy_from_slice(&cursor);
        // SAFETY: buf is IOC_SIZE bytes, the size encoded in IOC_LS.
        let rc = unsafe { libc::ioctl(f.as_raw_fd(), IOC_LS as _, buf.as_mut_ptr()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let word = |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        let (flags, count) = (word(0), word(4) as usize);
        listed.skipped |= flags & FLAG_SKIPPED != 0;
        let mut rest = &buf[HEADER..];
        let mut last: &[u8] = &[];
        for _ in 0..count {
            let end = rest.iter().position(|&b| b == 0).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "malformed ls-prefix reply")
            })?;
            last = &rest[..end];
            each(OsStr::from_bytes(last));
            listed.paths += 1;
            rest = &rest[end + 1..];
        }
        if flags & FLAG_DONE != 0 {
            return Ok(listed);
        }
        if count == 0 {
            // The daemon made no progress without finishing: a loop.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "ls-prefix reply without progress",
            ));
        }
        cursor = last.to_vec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inode::{Content, Kind};

    #[test]
    fn request_and_reply_round_trip() {
        let mut req = vec![0u8; 16];
        req[..4].copy_from_slice(&3u32.to_le_bytes());
        req[4..7].copy_from_slice(b"a/b");
        assert_eq!(decode_request(&req), Ok(Some(&b"a/b"[..])));
        assert_eq!(decode_request(&[0, 0, 0, 0]), Ok(None));
        assert_eq!(decode_request(&[9, 0, 0, 0, 1]), Err(Error(libc::EINVAL)));
        assert_eq!(decode_request(&[1]), Err(Error(libc::EINVAL)));
        let page = LeafPage {
            paths: vec![b"x".to_vec(), b"y/z".to_vec()],
            done: true,
            skipped: 2,
        };
        let out = encode_page(&page);
        assert_eq!(&out[..8], &[3, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(&out[8..], b"x\0y/z\0");
    }

    #[test]
    fn permission_to_list() {
        let dir =
            |perm: u16, uid, gid| Inode::new(Kind::Directory, perm, uid, gid, Content::Dir(None));
        let c = Caller {
            uid: 1000,
            gid: 100,
            groups: vec![50],
        };
        assert!(c.may_list(&dir(0o500, 1000, 0)));
        assert!(
            !c.may_list(&dir(0o077, 1000, 100)),
            "owner bits decide for the owner"
        );
        assert!(c.may_list(&dir(0o050, 0, 50)), "supplementary group");
        assert!(!c.may_list(&dir(0o040, 0, 100)), "read without search");
        assert!(c.may_list(&dir(0o005, 0, 0)));
        let root = Caller {
            uid: 0,
            gid: 0,
            groups: vec![],
        };
        assert!(root.may_list(&dir(0, 1, 1)));
    }
}
