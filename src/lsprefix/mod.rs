//! Prefix listing: every leaf path under a directory, answered by the
//! daemon from the trie instead of walking the tree through the kernel.
//!
//! `triefs ls-prefix MOUNTPOINT [PREFIX]` opens the directory and pages
//! through the listing with one ioctl per page ([`IOC_LS`]). A page holds
//! up to [`IOC_SIZE`] bytes, the most a FUSE ioctl can carry without
//! CUSE's unrestricted mode; the daemon keeps no state between pages (each
//! request carries the cursor the previous page ended with).
//!
//! Wire format of one `_IOWR` ioctl of [`IOC_SIZE`] bytes (integers
//! little-endian):
//! - in: `u32` cursor length, then the cursor (empty at first, at most
//!   [`MAX_CURSOR`] bytes);
//! - out: `u32` flags ([`FLAG_DONE`], [`FLAG_SKIPPED`]), `u32` path count,
//!   `u32` over-long count, `u32` cursor length, the cursor to send next;
//!   then the paths, relative to the directory, each NUL-terminated; then
//!   the over-long records, each `u32` length of the whole path, `u8`
//!   1 for a directory (nothing under it listed) or 0, and the first
//!   bytes of the path, NUL-terminated.
//!
//! Bounds, because the caller controls the tree and the cursor: a path
//! longer than [`MAX_PATH`] (the kernel's `PATH_MAX`) is not listed but
//! reported as over-long, and nothing deeper is walked; one page visits at
//! most [`PAGE_STEPS`] entries, so the namespace's read lock is held for
//! about a millisecond at most per page, however the tree is shaped.
//!
//! Directories the caller could not list (read and search permission,
//! supplementary groups included) are skipped and reported, like `find`.

use crate::error::{Errno, Result};
use crate::namespace::Namespace;
use crate::trie::{LeafPage, PageLimits, TOO_LONG_EXTRA};

mod client;
pub use client::{Item, Listed, list};

/// Bytes exchanged per ioctl: below `_IOC_SIZE`'s 14-bit limit.
pub const IOC_SIZE: usize = 16 * 1024 - 8;

/// The ioctl number: `_IOWR(0xF7, 0x4D, [u8; IOC_SIZE])`. (0x4C was the
/// first wire format, without cursors or over-long records.)
pub const IOC_LS: u32 = (3 << 30) | ((IOC_SIZE as u32) << 16) | (0xF7 << 8) | 0x4D;

/// Out flag: the listing is complete.
pub const FLAG_DONE: u32 = 1;
/// Out flag: some directories were not listed for lack of permission.
pub const FLAG_SKIPPED: u32 = 2;

/// Longest path listed, relative to the listed directory: `PATH_MAX`.
/// Longer ones are reported as over-long and nothing under them is walked.
pub const MAX_PATH: usize = 4096;

/// Longest cursor: a path of [`MAX_PATH`] bytes and one more name.
pub const MAX_CURSOR: usize = MAX_PATH + 256;

/// Entries visited per page at most, so that writers wait about a
/// millisecond at most for one ls-prefix caller. Measured: a page of 2,048
/// refused directories in a directory of 200,000 took 0.8 ms (median, 1.0
/// ms at most); 16,384 steps took 6-8 ms. Pages of paths end earlier, at
/// [`PAGE_BUDGET`] bytes (0.1 ms).
pub const PAGE_STEPS: usize = 2048;

/// Bytes of the out header (flags, count, over-long count, cursor length).
const HEADER: usize = 16;

/// Bytes of paths one page may hold: room is left for the longest cursor.
pub const PAGE_BUDGET: usize = IOC_SIZE - HEADER - MAX_CURSOR;

/// The limits of one page served to a client.
pub const PAGE_LIMITS: PageLimits = PageLimits {
    bytes: PAGE_BUDGET,
    max_path: MAX_PATH,
    steps: PAGE_STEPS,
};

/// Who asks: permission to list a directory is checked per directory.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Effective user.
    pub uid: u32,
    /// Effective group.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Whether it has `CAP_FSETID` (keeps the setgid bit of a file whose
    /// group it is not in when it sets an access ACL).
    pub fsetid: bool,
}

/// `CAP_FSETID`'s bit in `/proc/PID/status`'s `CapEff`.
const CAP_FSETID: u64 = 1 << 4;

impl Caller {
    /// The caller of a request from process `pid`, with the supplementary
    /// groups and capabilities read from `/proc/PID/status` (none if it
    /// cannot be read). Root is taken to have every group and capability
    /// it needs, without reading anything.
    pub fn of_process(uid: u32, gid: u32, pid: u32) -> Caller {
        let mut c = Caller {
            uid,
            gid,
            groups: Vec::new(),
            fsetid: uid == 0,
        };
        if uid == 0 {
            return c;
        }
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            return c;
        };
        for l in status.lines() {
            if let Some(g) = l.strip_prefix("Groups:") {
                c.groups = g
                    .split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect();
            } else if let Some(caps) = l.strip_prefix("CapEff:") {
                let caps = u64::from_str_radix(caps.trim(), 16).unwrap_or(0);
                c.fsetid = caps & CAP_FSETID != 0;
            }
        }
        c
    }

    /// Whether the caller is in group `g`.
    pub fn in_group(&self, g: u32) -> bool {
        g == self.gid || self.groups.contains(&g)
    }

    /// Whether the caller may read and search directory `ino` (its mode
    /// and access ACL).
    fn may_list(&self, ns: &Namespace, ino: u64) -> bool {
        let mask = (libc::R_OK | libc::X_OK) as u32;
        ns.permits(ino, self.uid, |g| self.in_group(g), mask)
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
        limits: PageLimits,
        caller: &Caller,
    ) -> Result<LeafPage> {
        let node = self.dir_node(ino)?;
        let enter = |n| {
            self.trie()
                .value(n)
                .is_some_and(|&i| caller.may_list(self, u64::from(i)))
        };
        Ok(self.trie().leaves_page(node, after, limits, enter)?)
    }
}

/// The cursor of a request, `None` when empty; `EINVAL` when malformed
/// or longer than [`MAX_CURSOR`].
pub fn decode_request(data: &[u8]) -> Result<Option<&[u8]>> {
    let len = data
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .filter(|&len| len <= MAX_CURSOR)
        .ok_or(Errno::new(libc::EINVAL))?;
    let cursor = len
        .checked_add(4)
        .and_then(|end| data.get(4..end))
        .ok_or(Errno::new(libc::EINVAL))?;
    Ok((!cursor.is_empty()).then_some(cursor))
}

/// The reply to a request: header, cursor, paths, over-long records.
pub fn encode_page(page: &LeafPage) -> Vec<u8> {
    let mut flags = 0;
    if page.done {
        flags |= FLAG_DONE;
    }
    if page.skipped > 0 {
        flags |= FLAG_SKIPPED;
    }
    let size: usize = page.paths.iter().map(|p| p.len() + 1).sum::<usize>()
        + page
            .too_long
            .iter()
            .map(|t| t.head.len() + TOO_LONG_EXTRA)
            .sum::<usize>();
    let mut out = Vec::with_capacity(HEADER + page.cursor.len() + size);
    for word in [
        flags,
        page.paths.len() as u32,
        page.too_long.len() as u32,
        page.cursor.len() as u32,
    ] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(&page.cursor);
    for p in &page.paths {
        out.extend_from_slice(p);
        out.push(0);
    }
    for t in &page.too_long {
        out.extend_from_slice(&u32::try_from(t.len).unwrap_or(u32::MAX).to_le_bytes());
        out.push(u8::from(t.dir));
        out.extend_from_slice(&t.head);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::inode::Kind;

    #[test]
    fn request_and_reply_round_trip() {
        let mut req = vec![0u8; 16];
        req[..4].copy_from_slice(&3u32.to_le_bytes());
        req[4..7].copy_from_slice(b"a/b");
        assert_eq!(decode_request(&req), Ok(Some(&b"a/b"[..])));
        assert_eq!(decode_request(&[0, 0, 0, 0]), Ok(None));
        assert_eq!(
            decode_request(&[9, 0, 0, 0, 1]),
            Err(Errno::new(libc::EINVAL))
        );
        assert_eq!(decode_request(&[1]), Err(Errno::new(libc::EINVAL)));
        let mut long = vec![0u8; 4 + MAX_CURSOR + 1];
        long[..4].copy_from_slice(&(MAX_CURSOR as u32 + 1).to_le_bytes());
        assert_eq!(
            decode_request(&long),
            Err(Errno::new(libc::EINVAL)),
            "a cursor no page can end with"
        );
        let page = LeafPage {
            paths: vec![b"x".to_vec(), b"y/z".to_vec()],
            too_long: vec![crate::trie::TooLong {
                head: b"d/d".to_vec(),
                len: 5000,
                dir: true,
            }],
            done: false,
            skipped: 2,
            cursor: b"y/z".to_vec(),
        };
        let out = encode_page(&page);
        assert_eq!(
            &out[..16],
            &[2, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0]
        );
        assert_eq!(&out[16..], b"y/zx\0y/z\0\x88\x13\0\0\x01d/d\0");
    }

    /// The most a page can hold fits in one ioctl buffer.
    #[test]
    fn a_full_page_fits_the_ioctl() {
        let mut t: crate::trie::Trie = crate::trie::Trie::new();
        // Over-long records and paths of every length around the limits.
        let name = "n".repeat(255);
        let mut deep = String::new();
        while deep.len() < MAX_PATH + 600 {
            deep.push('/');
            deep.push_str(&name);
            t.add(&deep).unwrap();
            for i in 0..40 {
                t.add(format!("{deep}/{i:0>200}")).unwrap();
            }
        }
        let mut after: Option<Vec<u8>> = None;
        let mut pages = 0;
        loop {
            let page = t
                .leaves_page(t.root(), after.as_deref(), PAGE_LIMITS, |_| true)
                .unwrap();
            let out = encode_page(&page);
            assert!(out.len() <= IOC_SIZE, "page of {} bytes", out.len());
            assert!(page.cursor.len() <= MAX_CURSOR);
            pages += 1;
            if page.done {
                break;
            }
            after = Some(page.cursor);
        }
        assert!(pages > 1);
    }

    #[test]
    fn permission_to_list() {
        use crate::namespace::acl;
        use crate::namespace::{Limits, NewNode};
        use std::ffi::OsStr;
        let mut ns = Namespace::new(0, 0, 0o755, Limits::from_options(Some(0), Some(0)));
        let mut n = 0;
        let mut dir = |ns: &mut Namespace, perm: u32, uid, gid| {
            n += 1;
            let spec = NewNode {
                kind: Kind::Directory,
                perm,
                uid,
                gid,
                rdev: 0,
                target: None,
            };
            let name = format!("d{n}");
            ns.create_node(1, OsStr::new(&name), spec)
                .unwrap()
                .attr
                .ino
                .0
        };
        let c = Caller {
            uid: 1000,
            gid: 100,
            groups: vec![50],
            fsetid: false,
        };
        let d = dir(&mut ns, 0o500, 1000, 0);
        assert!(c.may_list(&ns, d));
        let d = dir(&mut ns, 0o077, 1000, 100);
        assert!(!c.may_list(&ns, d), "owner bits decide for the owner");
        let d = dir(&mut ns, 0o050, 0, 50);
        assert!(c.may_list(&ns, d), "supplementary group");
        let d = dir(&mut ns, 0o040, 0, 100);
        assert!(!c.may_list(&ns, d), "read without search");
        let d = dir(&mut ns, 0o005, 0, 0);
        assert!(c.may_list(&ns, d));
        let root = Caller {
            uid: 0,
            gid: 0,
            groups: vec![],
            fsetid: true,
        };
        let d = dir(&mut ns, 0, 1, 1);
        assert!(root.may_list(&ns, d));
        // An access ACL decides for others: a named entry for the caller
        // grants what the mode does not, a mask limits it.
        let d = dir(&mut ns, 0o700, 0, 0);
        let named = |perm: u16, mask: u16| {
            acl::Acl(vec![
                acl::AclEntry {
                    tag: acl::USER_OBJ,
                    perm: 7,
                    id: u32::MAX,
                },
                acl::AclEntry {
                    tag: acl::USER,
                    perm,
                    id: 1000,
                },
                acl::AclEntry {
                    tag: acl::GROUP_OBJ,
                    perm: 0,
                    id: u32::MAX,
                },
                acl::AclEntry {
                    tag: acl::MASK,
                    perm: mask,
                    id: u32::MAX,
                },
                acl::AclEntry {
                    tag: acl::OTHER,
                    perm: 0,
                    id: u32::MAX,
                },
            ])
            .encode()
        };
        let name = OsStr::new("system.posix_acl_access");
        assert!(!c.may_list(&ns, d));
        ns.setxattr(d, name, &named(5, 5), 0).unwrap();
        assert!(c.may_list(&ns, d), "named user entry");
        ns.setxattr(d, name, &named(5, 4), 0).unwrap();
        assert!(!c.may_list(&ns, d), "the mask takes search away");
    }
}
