//! Writing an image: records streamed from the namespace, with checksums.
//! A page several files, the live tree or checkpoints share is written
//! once and referred to by its page id after that.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;

use super::*;
use crate::namespace::Namespace;
use crate::namespace::data::{PAGE, Page};
use crate::namespace::inode::{Content, InodeTable, ROOT_INO, Time};
use crate::trie::Trie;

struct RecordWriter<W: Write> {
    w: W,
    buf: Vec<u8>,
}

impl<W: Write> RecordWriter<W> {
    fn record(&mut self, tag: u8) -> Result<(), io::Error> {
        let len = u32::try_from(self.buf.len()).map_err(io::Error::other)?;
        let mut head = [0u8; 5];
        head[0] = tag;
        head[1..].copy_from_slice(&len.to_le_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(&head);
        h.update(&self.buf);
        self.w.write_all(&head)?;
        self.w.write_all(&self.buf)?;
        self.w.write_all(&h.finalize().to_le_bytes())?;
        self.buf.clear();
        Ok(())
    }
}

fn put_time(b: &mut Vec<u8>, t: Time) {
    let (sec, nsec) = t.parts();
    b.extend_from_slice(&sec.to_le_bytes());
    b.extend_from_slice(&nsec.to_le_bytes());
}

/// Streams the whole namespace to `w`: the live tree, then each
/// checkpoint's. Unlinked inodes that are only still open are not saved.
pub fn write_image<W: Write>(ns: &Namespace, w: W) -> Result<Summary, io::Error> {
    let mut out = RecordWriter { w, buf: Vec::new() };
    out.w.write_all(MAGIC)?;
    out.w.write_all(&VERSION.to_le_bytes())?;
    out.w.write_all(&0u32.to_le_bytes())?;
    let mut sum = Summary {
        version: VERSION,
        ..Summary::default()
    };
    let mut shared = SharedPages::default();
    write_tree(&mut out, ns.trie(), ns.inodes(), &mut shared, &mut sum)?;
    for c in ns.checkpoints().iter() {
        let (sec, nsec) = Time::from(c.time()).parts();
        out.buf.extend_from_slice(&sec.to_le_bytes());
        out.buf.extend_from_slice(&nsec.to_le_bytes());
        out.buf.extend_from_slice(c.name().as_bytes());
        out.record(TAG_CHECKPOINT)?;
        let mut s = Summary::default();
        write_tree(&mut out, c.trie(), c.inodes(), &mut shared, &mut s)?;
        for v in [s.inodes, s.entries, s.data_bytes] {
            out.buf.extend_from_slice(&v.to_le_bytes());
        }
        out.record(TAG_CHECKPOINT_END)?;
        sum.checkpoints += 1;
    }
    for v in [sum.inodes, sum.entries, sum.data_bytes, sum.checkpoints] {
        out.buf.extend_from_slice(&v.to_le_bytes());
    }
    out.record(TAG_END)?;
    out.w.flush()?;
    Ok(sum)
}

/// Page ids of the shared pages written so far, by buffer address. Only
/// pages something else also holds are here (a page only one file holds
/// cannot come up again), so this holds one entry per shared page.
#[derive(Default)]
struct SharedPages {
    ids: HashMap<usize, u64>,
}

/// How a page goes out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum How {
    /// Only this file holds it: a DATA record, cut at the size.
    Own,
    /// Shared, first seen: a PAGE record, cut at the size; it gets the
    /// next page id.
    New,
    /// Shared, written before: a REF record naming its id (a run of
    /// pages with consecutive ids, the first).
    Ref(u64),
}

/// Contiguous pages of one file that go out in one record.
struct Run {
    how: How,
    start: u64,
    pages: usize,
    bytes: Vec<u8>,
}

/// Writes one tree (the live tree or a checkpoint's): its inodes, each
/// regular file followed by its data, then its entries, parents before
/// children. Counts go to `sum`.
fn write_tree<W: Write>(
    out: &mut RecordWriter<W>,
    trie: &Trie<u32>,
    inodes: &InodeTable,
    shared: &mut SharedPages,
    sum: &mut Summary,
) -> io::Result<()> {
    for (ino, i) in inodes.iter() {
        if i.nlink == 0 && ino != ROOT_INO {
            continue;
        }
        let b = &mut out.buf;
        b.extend_from_slice(&ino.to_le_bytes());
        b.push(kind_code(i.kind));
        b.extend_from_slice(&i.perm.to_le_bytes());
        for v in [i.uid, i.gid, i.rdev()] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for t in [i.atime, i.mtime, i.ctime] {
            put_time(b, t);
        }
        b.extend_from_slice(&i.file().map_or(0, |d| d.size()).to_le_bytes());
        b.extend_from_slice(&i.flags.to_fs().to_le_bytes());
        let xattrs: Vec<_> = inodes.xattrs(ino).iter().flat_map(|x| x.iter()).collect();
        b.extend_from_slice(&(xattrs.len() as u32).to_le_bytes());
        for (k, v) in xattrs {
            b.extend_from_slice(&(k.len() as u16).to_le_bytes());
            b.extend_from_slice(k);
            b.extend_from_slice(&(v.len() as u32).to_le_bytes());
            b.extend_from_slice(v);
        }
        if let Content::Symlink(t) = &i.content {
            b.extend_from_slice(t);
        }
        out.record(TAG_INODE)?;
        sum.inodes += 1;
        if let Some(d) = i.file() {
            // Contiguous stored pages of one kind go out together, up to
            // 1 MiB; pages preallocated past the end (fallocate
            // KEEP_SIZE) are not data.
            let size = d.size();
            // A checkpoint that shares the whole page map shares every page.
            let map_shared = i.file_shared();
            let mut run: Option<Run> = None;
            for (off, page) in d.stored_page_refs() {
                if off >= size {
                    break;
                }
                let how = how_of(page, map_shared, shared);
                let fits = run.as_ref().is_some_and(|r| {
                    // A REF record names a run of consecutive ids.
                    let same = match (r.how, how) {
                        (How::Own, How::Own) | (How::New, How::New) => true,
                        (How::Ref(first), How::Ref(id)) => id == first + r.pages as u64,
                        _ => false,
                    };
                    same && r.start + (r.pages * PAGE) as u64 == off && r.pages < RUN_PAGES
                });
                if !fits && let Some(r) = run.take() {
                    write_run(out, ino, r, sum)?;
                }
                let r = run.get_or_insert_with(|| Run {
                    how,
                    start: off,
                    pages: 0,
                    bytes: Vec::new(),
                });
                r.pages += 1;
                // Cut at the size: past it a page holds zeros, in every
                // file that shares it (the loader checks), so a shared
                // page's bytes up to this file's end are the whole page.
                let n = PAGE.min((size - off) as usize);
                match how {
                    How::Own => r.bytes.extend_from_slice(&page[..n]),
                    How::New => {
                        let id = shared.ids.len() as u64;
                        shared.ids.insert(page.as_ptr() as usize, id);
                        r.bytes.extend_from_slice(&page[..n]);
                    }
                    How::Ref(_) => {}
                }
            }
            if let Some(r) = run {
                write_run(out, ino, r, sum)?;
            }
        }
    }
    // Entries, parents before children.
    let mut queue = vec![trie.root()];
    while let Some(dir) = queue.pop() {
        let Some(pino) = trie.value(dir).map(|&v| u64::from(v)) else {
            continue;
        };
        for (_, name, node) in trie.entries_from(dir, 0) {
            let Some(cino) = trie.value(node).map(|&v| u64::from(v)) else {
                continue;
            };
            let b = &mut out.buf;
            b.extend_from_slice(&pino.to_le_bytes());
            b.extend_from_slice(&cino.to_le_bytes());
            b.extend_from_slice(name.as_bytes());
            out.record(TAG_ENTRY)?;
            sum.entries += 1;
            if trie.is_dir(node) {
                queue.push(node);
            }
        }
    }
    Ok(())
}

/// How `page` goes out: a page only one file holds is its own; a shared
/// one (also every page of a map a checkpoint shares) is written the
/// first time and referred to after that.
fn how_of(page: &Page, map_shared: bool, shared: &SharedPages) -> How {
    if !map_shared && page.is_unique() {
        return How::Own;
    }
    match shared.ids.get(&(page.as_ptr() as usize)) {
        Some(&id) => How::Ref(id),
        None => How::New,
    }
}

fn write_run<W: Write>(
    out: &mut RecordWriter<W>,
    ino: u64,
    run: Run,
    sum: &mut Summary,
) -> io::Result<()> {
    out.buf.extend_from_slice(&ino.to_le_bytes());
    out.buf.extend_from_slice(&run.start.to_le_bytes());
    match run.how {
        How::Own | How::New => {
            sum.data_bytes += run.bytes.len() as u64;
            out.buf.extend_from_slice(&run.bytes);
        }
        How::Ref(first) => {
            out.buf.extend_from_slice(&first.to_le_bytes());
            out.buf.extend_from_slice(&(run.pages as u32).to_le_bytes());
        }
    }
    let tag = match run.how {
        How::Own => TAG_DATA,
        How::New => TAG_PAGE,
        How::Ref(_) => TAG_REF,
    };
    out.record(tag)
}
