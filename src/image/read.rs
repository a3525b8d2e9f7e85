//! Reading an image: every record, checksum, bound and reference is
//! checked, then the whole namespace's invariants.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;

use super::*;
use crate::namespace::inode::{Content, Inode, Kind, ROOT_INO, Time, Xattrs};
use crate::namespace::limits::Limits;
use crate::namespace::{Namespace, StoredAttrs};

/// A cursor over one record's payload; running past its end is corruption.
struct Payload<'a>(&'a [u8]);

impl<'a> Payload<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ImageError> {
        if self.0.len() < n {
            return corrupt("record shorter than its fields");
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, ImageError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ImageError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().unwrap_or_default(),
        ))
    }
    fn u32(&mut self) -> Result<u32, ImageError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }
    fn u64(&mut self) -> Result<u64, ImageError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
    fn time(&mut self) -> Result<Time, ImageError> {
        let sec = self.u64()? as i64;
        let nsec = self.u32()?;
        if nsec >= 1_000_000_000 {
            return corrupt("timestamp nanoseconds out of range");
        }
        Ok(Time::from_parts(sec, nsec))
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

/// Reads an image into a fresh namespace with `limits`. Every record is
/// checked (checksum, bounds, references); the result passes
/// [`Namespace::check`].
pub fn read_image<R: Read>(r: R, limits: Limits) -> Result<(Namespace, Summary), ImageError> {
    let mut r = BufReader::with_capacity(1 << 20, r);
    let mut head = [0u8; 16];
    let got = read_up_to(&mut r, &mut head).map_err(ImageError::Io)?;
    // Judge the magic by what is there: a file that starts like an image
    // but ends inside the header (a copy or save cut short) is truncated,
    // not foreign.
    let n = got.min(MAGIC.len());
    if n == 0 || head[..n] != MAGIC[..n] {
        return Err(ImageError::NotAnImage);
    }
    if got < head.len() {
        return Err(ImageError::Truncated);
    }
    let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if !(OLDEST_VERSION..=VERSION).contains(&version) {
        return Err(ImageError::Version(version));
    }
    let mut ns = Namespace::new(0, 0, 0o755, limits);
    let mut map = InoMap::default();
    let mut sum = Summary {
        version,
        ..Summary::default()
    };
    let mut pos = 16u64;
    let mut payload = Vec::new();
    let mut entries_started = false;
    loop {
        let mut rh = [0u8; 5];
        read_exact_or(&mut r, &mut rh, ImageError::Truncated)?;
        let tag = rh[0];
        let len = u32::from_le_bytes([rh[1], rh[2], rh[3], rh[4]]);
        if len > MAX_RECORD {
            return corrupt(format!("record at byte {pos} claims {len} bytes"));
        }
        payload.resize(len as usize, 0);
        read_exact_or(&mut r, &mut payload, ImageError::Truncated)?;
        let mut crc = [0u8; 4];
        read_exact_or(&mut r, &mut crc, ImageError::Truncated)?;
        let mut h = crc32fast::Hasher::new();
        h.update(&rh);
        h.update(&payload);
        if h.finalize() != u32::from_le_bytes(crc) {
            return Err(ImageError::Checksum(pos));
        }
        let mut p = Payload(&payload);
        match tag {
            TAG_INODE if !entries_started => {
                load_inode(&mut ns, &mut map, &mut p, version)?;
                sum.inodes += 1;
            }
            TAG_DATA if !entries_started => {
                let old = p.u64()?;
                let off = p.u64()?;
                let bytes = p.rest();
                let ino = map
                    .get(old)
                    .ok_or(ImageError::Corrupt(format!("data for unknown inode {old}")))?;
                ns.load_data(ino, off, bytes)
                    .map_err(|e| ImageError::Corrupt(format!("inode {old}: {e}")))?;
                sum.data_bytes += bytes.len() as u64;
            }
            TAG_ENTRY => {
                entries_started = true;
                let parent = p.u64()?;
                let child = p.u64()?;
                let name = OsStr::from_bytes(p.rest());
                let (Some(np), Some(nc)) = (map.get(parent), map.get(child)) else {
                    return corrupt(format!("entry {name:?} names an unknown inode"));
                };
                ns.name_loaded(np, name, nc)
                    .map_err(|e| ImageError::Corrupt(format!("entry {name:?}: {e}")))?;
                sum.entries += 1;
            }
            TAG_END => {
                let want = Summary {
                    inodes: p.u64()?,
                    entries: p.u64()?,
                    data_bytes: p.u64()?,
                    version,
                };
                if want != sum {
                    return corrupt(format!("END counts {want:?} but the records hold {sum:?}"));
                }
                let mut extra = [0u8; 1];
                if r.read(&mut extra).map_err(ImageError::Io)? != 0 {
                    return corrupt("bytes after the END record");
                }
                break;
            }
            t => return corrupt(format!("unexpected record type {t} at byte {pos}")),
        }
        pos += 9 + u64::from(len);
    }
    if let Some(ino) = ns.unnamed_inode() {
        return corrupt(format!("inode {ino} has no name"));
    }
    if ns.reserve_ispace(0).is_err() {
        return corrupt(
            "the image needs more inode space (inodes, hard links, xattrs) than nr_inodes allows",
        );
    }
    if let Err(errors) = ns.check() {
        return corrupt(errors.join("; "));
    }
    Ok((ns, sum))
}

/// Reads until `buf` is full or the input ends; returns how many bytes.
fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn read_exact_or<R: Read>(r: &mut R, buf: &mut [u8], short: ImageError) -> Result<(), ImageError> {
    match r.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(short),
        Err(e) => Err(ImageError::Io(e)),
    }
}

fn load_inode(
    ns: &mut Namespace,
    map: &mut InoMap,
    p: &mut Payload<'_>,
    version: u32,
) -> Result<(), ImageError> {
    let old = p.u64()?;
    let kind = kind_of(p.u8()?).ok_or(ImageError::Corrupt("unknown file type".into()))?;
    let perm = p.u16()?;
    let (uid, gid, rdev) = (p.u32()?, p.u32()?, p.u32()?);
    let (atime, mtime, ctime) = (p.time()?, p.time()?, p.time()?);
    let size = p.u64()?;
    // Version 1 had no flags.
    let flags = if version >= 2 { p.u32()? } else { 0 };
    if flags & !crate::namespace::flags::MODIFIABLE != 0 {
        return corrupt(format!("inode flags {flags:#x} triefs does not keep"));
    }
    let mut xattrs = Xattrs::new();
    for _ in 0..p.u32()? {
        let n = p.u16()? as usize;
        let name = p.take(n)?;
        let v = p.u32()? as usize;
        xattrs.insert(name.into(), p.take(v)?.into());
    }
    let target = p.rest();
    if map.get(old).is_some() {
        return corrupt(format!("inode {old} appears twice"));
    }
    if size > i64::MAX as u64 {
        return corrupt("file size out of range");
    }
    let is_root = old == ROOT_INO;
    if is_root != (map.is_empty()) || (is_root && kind != Kind::Directory) {
        return corrupt("the first inode must be the root directory");
    }
    let ino = if is_root {
        ROOT_INO
    } else {
        let content = match kind {
            Kind::Directory => Content::Dir(None),
            Kind::RegularFile => Content::File(std::sync::Arc::default()),
            Kind::Symlink => Content::Symlink(Box::new(target.into())),
            Kind::CharDevice | Kind::BlockDevice => Content::Special(rdev),
            Kind::Fifo | Kind::Socket => Content::Special(0),
        };
        ns.insert_unnamed(Inode::new(kind, perm, uid, gid, content))
            .ok_or_else(|| {
                ImageError::Corrupt("the image holds more inodes than nr_inodes allows".into())
            })?
    };
    let attrs = StoredAttrs {
        perm,
        uid,
        gid,
        times: [atime, mtime, ctime],
        size,
        flags,
    };
    if !ns.set_loaded_attrs(ino, &attrs, &xattrs) {
        return corrupt("inode vanished");
    }
    if kind == Kind::Directory {
        ns.share_loaded(ino);
    }
    map.insert(old, ino);
    Ok(())
}

/// Image inode numbers to ours. A save numbers inodes densely, so most go
/// in a vector; a number far beyond those seen goes in a hash map (an
/// image is untrusted: one huge number must not size the vector).
#[derive(Default)]
struct InoMap {
    dense: Vec<u32>,
    sparse: HashMap<u64, u64>,
    len: u64,
}

impl InoMap {
    fn get(&self, old: u64) -> Option<u64> {
        match usize::try_from(old).ok().and_then(|i| self.dense.get(i)) {
            Some(&n) if n != 0 => Some(u64::from(n)),
            // Mapped before the vector reached it, or not at all.
            _ => self.sparse.get(&old).copied(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maps `old` (not mapped yet) to `ino` (at most `u32::MAX`, never 0).
    fn insert(&mut self, old: u64, ino: u64) {
        self.len += 1;
        let fits = old <= 2 * self.len + (1 << 16);
        match (usize::try_from(old), u32::try_from(ino)) {
            (Ok(i), Ok(n)) if fits => {
                if i >= self.dense.len() {
                    self.dense.resize(i + 1, 0);
                }
                self.dense[i] = n;
            }
            _ => {
                self.sparse.insert(old, ino);
            }
        }
    }
}
