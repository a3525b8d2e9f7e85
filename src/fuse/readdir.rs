//! Directory listings for `readdir` and `readdirplus`. Offsets: 0 is the
//! start, 1 follows `.`, 2 follows `..`, and an entry with name cookie `c`
//! hands out `c + 1` (see [`crate::trie::Trie::entries_from`]), so any open
//! can resume any listing in O(log n) without per-open state.
//!
//! The listings fill a small replier trait, not fuser's reply types, so
//! that the unit tests and the fuzzer run this very code.

use std::ffi::OsStr;
use std::time::Duration;

use fuser::{FileAttr, FileType, Generation, INodeNo, ReplyDirectory, ReplyDirectoryPlus};

use crate::error::Result;
use crate::namespace::Namespace;
use crate::trie::FIRST_COOKIE;

/// Where a `readdir` listing goes: the kernel's reply buffer, or a test's
/// collector.
pub trait DirReplier {
    /// Adds an entry that resumes at `offset`; true when the buffer is full
    /// (the entry was not added, the listing stops).
    fn add(&mut self, ino: u64, offset: u64, kind: FileType, name: &OsStr) -> bool;
}

/// Where a `readdirplus` listing goes: entries with their attributes.
pub trait DirPlusReplier {
    /// Adds an entry with its attributes that resumes at `offset`; true
    /// when the buffer is full (the entry was not added).
    fn add(
        &mut self,
        offset: u64,
        name: &OsStr,
        ttl: &Duration,
        attr: &FileAttr,
        generation: u64,
    ) -> bool;
}

impl DirReplier for ReplyDirectory {
    fn add(&mut self, ino: u64, offset: u64, kind: FileType, name: &OsStr) -> bool {
        ReplyDirectory::add(self, INodeNo(ino), offset, kind, name)
    }
}

impl DirPlusReplier for ReplyDirectoryPlus {
    fn add(
        &mut self,
        offset: u64,
        name: &OsStr,
        ttl: &Duration,
        attr: &FileAttr,
        generation: u64,
    ) -> bool {
        ReplyDirectoryPlus::add(
            self,
            attr.ino,
            offset,
            name,
            ttl,
            attr,
            Generation(generation),
        )
    }
}

/// The offset to hand out with an entry of cookie `c`, followed by the
/// entry of cookie `next`: where the next listing resumes. Cookie-mates
/// (colliding names, practically never) share a cookie; all but the last
/// of them hand out `c` itself, so a listing cut between them repeats the
/// group rather than skipping part of it.
fn next_offset(c: u64, next: Option<u64>) -> u64 {
    match next {
        Some(n) if n == c => c,
        _ => c + 1,
    }
}

/// Lists directory `ino` from `offset` into `reply` until it is full.
pub fn fill(ns: &Namespace, ino: u64, offset: u64, reply: &mut impl DirReplier) -> Result<()> {
    let mut off = offset;
    if off == 0 {
        if reply.add(ino, 1, FileType::Directory, OsStr::new(".")) {
            return Ok(());
        }
        off = 1;
    }
    if off == 1 {
        if reply.add(ns.parent_of(ino), 2, FileType::Directory, OsStr::new("..")) {
            return Ok(());
        }
        off = 2;
    }
    let mut iter = ns.entries_from(ino, off.max(FIRST_COOKIE))?.peekable();
    while let Some((cookie, name, child, kind)) = iter.next() {
        let next = next_offset(cookie, iter.peek().map(|e| e.0));
        if reply.add(child, next, kind, name) {
            break;
        }
    }
    Ok(())
}

/// Lists directory `ino` with attributes from `offset` into `reply`. Every
/// entry handed out (but `.` and `..`, for which the kernel takes no
/// reference) counts as a lookup.
pub fn fill_plus(
    ns: &Namespace,
    ino: u64,
    offset: u64,
    reply: &mut impl DirPlusReplier,
    ttl: &Duration,
) -> Result<()> {
    let mut off = offset;
    if off == 0 {
        let a = ns.attr(ino)?;
        if reply.add(1, OsStr::new("."), ttl, &a, ns.generation(ino)) {
            return Ok(());
        }
        off = 1;
    }
    if off == 1 {
        let p = ns.parent_of(ino);
        if let Ok(a) = ns.attr(p)
            && reply.add(2, OsStr::new(".."), ttl, &a, ns.generation(p))
        {
            return Ok(());
        }
        off = 2;
    }
    let mut iter = ns.entries_from(ino, off.max(FIRST_COOKIE))?.peekable();
    while let Some((cookie, name, child, _)) = iter.next() {
        let Ok(attr) = ns.attr(child) else { continue };
        let next = next_offset(cookie, iter.peek().map(|e| e.0));
        if reply.add(next, name, ttl, &attr, ns.generation(child)) {
            break;
        }
        ns.add_lookup(child);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::inode::{Kind, ROOT_INO};
    use crate::namespace::{Limits, NewNode};

    /// Collects up to `room` entries.
    struct Collect {
        room: usize,
        got: Vec<(u64, u64, String)>,
    }

    impl DirReplier for Collect {
        fn add(&mut self, ino: u64, offset: u64, _kind: FileType, name: &OsStr) -> bool {
            if self.got.len() == self.room {
                return true;
            }
            self.got
                .push((ino, offset, name.to_string_lossy().into_owned()));
            false
        }
    }

    /// Listing a directory in pages of every size, resuming at the offset
    /// of the last entry of each page, gives every entry once, with `.` and
    /// `..` first; names that share a cookie are never split across pages.
    #[test]
    fn pages_resume_at_the_offsets_handed_out() {
        for mask in [u64::MAX, 3, 0] {
            let mut ns = Namespace::new(0, 0, 0o755, Limits::from_options(Some(0), Some(0)))
                .with_cookie_mask(mask);
            let spec = NewNode {
                kind: Kind::RegularFile,
                perm: 0o644,
                uid: 0,
                gid: 0,
                rdev: 0,
                target: None,
            };
            for i in 0..20 {
                ns.create_node(ROOT_INO, OsStr::new(&format!("f{i}")), spec.clone())
                    .unwrap();
            }
            for room in 1..25 {
                let (mut off, mut names) = (0, Vec::new());
                for _ in 0..100 {
                    // With colliding cookies a page must hold a whole
                    // group of cookie-mates (at most all 20 names).
                    let room = if mask == u64::MAX { room } else { 22 };
                    let mut c = Collect {
                        room,
                        got: Vec::new(),
                    };
                    fill(&ns, ROOT_INO, off, &mut c).unwrap();
                    let Some(last) = c.got.last() else { break };
                    off = last.1;
                    names.extend(c.got.into_iter().map(|e| e.2));
                }
                assert_eq!(&names[..2], [".", ".."]);
                let mut rest = names[2..].to_vec();
                rest.sort();
                let mut want: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
                want.sort();
                assert_eq!(rest, want, "mask {mask:x}, pages of {room}");
            }
        }
    }
}
