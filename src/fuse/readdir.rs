//! Directory listings for `readdir` and `readdirplus`. Offsets: 0 is the
//! start, 1 follows `.`, 2 follows `..`, and an entry with name cookie `c`
//! hands out `c + 1` (see [`crate::trie::Trie::entries_from`]), so any open
//! can resume any listing in O(log n) without per-open state.

use std::time::Duration;

use fuser::{FileType, Generation, INodeNo, ReplyDirectory, ReplyDirectoryPlus};

use crate::error::Result;
use crate::fuse::reply::next_offset;
use crate::namespace::Namespace;
use crate::trie::FIRST_COOKIE;

/// Fills a READDIR reply from `offset` until the buffer is full.
pub(crate) fn fill(
    ns: &Namespace,
    ino: u64,
    offset: u64,
    reply: &mut ReplyDirectory,
) -> Result<()> {
    let mut off = offset;
    if off == 0 {
        if reply.add(INodeNo(ino), 1, FileType::Directory, ".") {
            return Ok(());
        }
        off = 1;
    }
    if off == 1 {
        let parent = INodeNo(ns.parent_of(ino));
        if reply.add(parent, 2, FileType::Directory, "..") {
            return Ok(());
        }
        off = 2;
    }
    let mut iter = ns.entries_from(ino, off.max(FIRST_COOKIE))?.peekable();
    while let Some((cookie, name, child, kind)) = iter.next() {
        if reply.add(INodeNo(child), next_offset(cookie, iter.peek()), kind, name) {
            break;
        }
    }
    Ok(())
}

/// Fills a READDIRPLUS reply: entries with attributes. Every entry handed
/// out (but `.` and `..`, for which the kernel takes no reference) counts
/// as a lookup.
pub(crate) fn fill_plus(
    ns: &Namespace,
    ino: u64,
    offset: u64,
    reply: &mut ReplyDirectoryPlus,
    ttl: &Duration,
) -> Result<()> {
    let mut off = offset;
    if off == 0 {
        let a = ns.attr(ino)?;
        if reply.add(
            INodeNo(ino),
            1,
            ".",
            ttl,
            &a,
            Generation(ns.generation(ino)),
        ) {
            return Ok(());
        }
        off = 1;
    }
    if off == 1 {
        let p = ns.parent_of(ino);
        if let Ok(a) = ns.attr(p)
            && reply.add(INodeNo(p), 2, "..", ttl, &a, Generation(ns.generation(p)))
        {
            return Ok(());
        }
        off = 2;
    }
    let mut iter = ns.entries_from(ino, off.max(FIRST_COOKIE))?.peekable();
    while let Some((cookie, name, child, _)) = iter.next() {
        let Ok(attr) = ns.attr(child) else { continue };
        let generation = Generation(ns.generation(child));
        let next = next_offset(cookie, iter.peek());
        if reply.add(INodeNo(child), next, name, ttl, &attr, generation) {
            break;
        }
        ns.add_lookup(child);
    }
    Ok(())
}
