//! Writing an image: records streamed from the namespace, with checksums.

use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;

use super::*;
use crate::namespace::Namespace;
use crate::namespace::inode::{Content, ROOT_INO, Time};

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

/// Streams the whole namespace to `w`. Unlinked inodes that are only
/// still open are not saved.
pub fn write_image<W: Write>(ns: &Namespace, w: W) -> Result<Summary, io::Error> {
    let mut out = RecordWriter { w, buf: Vec::new() };
    out.w.write_all(MAGIC)?;
    out.w.write_all(&VERSION.to_le_bytes())?;
    out.w.write_all(&0u32.to_le_bytes())?;
    let mut sum = Summary {
        version: VERSION,
        ..Summary::default()
    };
    for (ino, i) in ns.inodes().iter() {
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
        let xattrs: Vec<_> = ns
            .inodes()
            .xattrs(ino)
            .iter()
            .flat_map(|x| x.iter())
            .collect();
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
            // Contiguous stored pages go out together, up to 1 MiB; pages
            // preallocated past the end (fallocate KEEP_SIZE) are not data.
            let size = d.size();
            let mut run: Option<(u64, Vec<u8>)> = None;
            for (off, page) in d.stored_pages() {
                if off >= size {
                    break;
                }
                let page = &page[..page.len().min((size - off) as usize)];
                let (start, bytes) = run.get_or_insert_with(|| (off, Vec::new()));
                if *start + bytes.len() as u64 != off || bytes.len() >= (1 << 20) {
                    let (s, b) = run.take().unwrap_or_default();
                    sum.data_bytes += b.len() as u64;
                    write_data(&mut out, ino, s, &b)?;
                    run = Some((off, page.to_vec()));
                } else {
                    bytes.extend_from_slice(page);
                }
            }
            if let Some((s, b)) = run {
                sum.data_bytes += b.len() as u64;
                write_data(&mut out, ino, s, &b)?;
            }
        }
    }
    // Entries, parents before children.
    let mut queue = vec![ns.trie().root()];
    while let Some(dir) = queue.pop() {
        let Some(pino) = ns.trie().value(dir).map(|&v| u64::from(v)) else {
            continue;
        };
        for (_, name, node) in ns.trie().entries_from(dir, 0) {
            let Some(cino) = ns.trie().value(node).map(|&v| u64::from(v)) else {
                continue;
            };
            let b = &mut out.buf;
            b.extend_from_slice(&pino.to_le_bytes());
            b.extend_from_slice(&cino.to_le_bytes());
            b.extend_from_slice(name.as_bytes());
            out.record(TAG_ENTRY)?;
            sum.entries += 1;
            if ns.trie().is_dir(node) {
                queue.push(node);
            }
        }
    }
    for v in [sum.inodes, sum.entries, sum.data_bytes] {
        out.buf.extend_from_slice(&v.to_le_bytes());
    }
    out.record(TAG_END)?;
    out.w.flush()?;
    Ok(sum)
}

fn write_data<W: Write>(
    out: &mut RecordWriter<W>,
    ino: u64,
    off: u64,
    bytes: &[u8],
) -> io::Result<()> {
    out.buf.extend_from_slice(&ino.to_le_bytes());
    out.buf.extend_from_slice(&off.to_le_bytes());
    out.buf.extend_from_slice(bytes);
    out.record(TAG_DATA)
}
