//! Snapshot images: the whole tree (names, modes, owners, times, xattrs,
//! symlinks, hard links, file data with holes kept as holes) written to and
//! read from a file as a stream of checksummed records.
//!
//! Format, version 1 (integers little-endian):
//!
//! ```text
//! header   "TRIEFSIM" (8 bytes), version u32 = 1, reserved u32 = 0
//! record   tag u8, length u32, payload[length], crc32 u32 over tag+length+payload
//! INODE  1 ino u64, kind u8, perm u16, uid u32, gid u32, rdev u32,
//!          atime/mtime/ctime (sec i64, nsec u32) x3, size u64,
//!          xattr count u32, per xattr (name len u16, name, value len u32, value),
//!          symlink target (rest of the payload)
//! DATA   2 ino u64, offset u64, bytes (rest; at most 1 MiB, stored pages only)
//! ENTRY  3 parent ino u64, child ino u64, name (rest)
//! END  255 inodes u64, entries u64, data bytes u64
//! ```
//!
//! Inodes come first (each file followed by its data), then the entries,
//! parents before children. Writing and reading stream: neither needs a
//! second copy of the tree in memory. Saving is atomic and durable: the
//! image goes to a temporary file in the same directory, is fsynced, renamed
//! over the old one, and the directory is fsynced.
//!
//! Building an image from code, without mounting (`triefs --image FILE`
//! then serves it):
//!
//! ```
//! use std::ffi::OsStr;
//! use triefs::image::{read_image, write_image};
//! use triefs::namespace::limits::Limits;
//! use triefs::namespace::Namespace;
//!
//! let limits = Limits::from_options(Some(0), Some(0)); // no limits
//! let mut ns = Namespace::new(0, 0, 0o755, limits);
//! for p in ["/var/www/site", "/etc", "/tmp/whatever"] {
//!     ns.add_path(OsStr::new(p), 0, 0).unwrap();
//! }
//! let mut img = Vec::new(); // or a File
//! let summary = write_image(&ns, &mut img).unwrap();
//! assert_eq!(summary.entries, 6); // var, www, site, etc, tmp, whatever
//!
//! let (back, _) = read_image(&img[..], limits).unwrap();
//! let leaves: Vec<String> = back.trie.leaves().iter().map(|p| p.to_string_lossy().into_owned()).collect();
//! assert_eq!(leaves, ["/etc", "/tmp/whatever", "/var/www/site"]);
//! ```

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub mod status;

use crate::namespace::inode::{Content, Inode, Kind, ROOT_INO, Time, Xattrs};
use crate::namespace::limits::Limits;
use crate::namespace::{Namespace, StoredAttrs};

const MAGIC: &[u8; 8] = b"TRIEFSIM";
/// The image format version this build reads and writes.
pub const VERSION: u32 = 1;
const TAG_INODE: u8 = 1;
const TAG_DATA: u8 = 2;
const TAG_ENTRY: u8 = 3;
const TAG_END: u8 = 255;
/// Largest record payload accepted (a DATA record holds at most 1 MiB).
const MAX_RECORD: u32 = (1 << 20) + 64 * 1024 + 1024;

/// Why an image could not be read.
#[derive(Debug)]
pub enum ImageError {
    /// Reading the file failed.
    Io(io::Error),
    /// Not a triefs image at all.
    NotAnImage,
    /// Written by an unsupported format version.
    Version(u32),
    /// The file ends before the END record.
    Truncated,
    /// A record's checksum does not match (byte offset of the record).
    Checksum(u64),
    /// The records do not describe a valid tree.
    Corrupt(String),
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::Io(e) => write!(f, "{e}"),
            ImageError::NotAnImage => f.write_str("not a triefs image (bad magic)"),
            ImageError::Version(v) => {
                write!(
                    f,
                    "unsupported image version {v} (this triefs reads {VERSION})"
                )
            }
            ImageError::Truncated => {
                f.write_str("truncated image (the file ends before its END record)")
            }
            ImageError::Checksum(at) => write!(f, "checksum mismatch in the record at byte {at}"),
            ImageError::Corrupt(why) => write!(f, "corrupt image: {why}"),
        }
    }
}

impl std::error::Error for ImageError {}

fn corrupt<T>(why: impl Into<String>) -> Result<T, ImageError> {
    Err(ImageError::Corrupt(why.into()))
}

/// What an image holds, as counted by its END record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Inodes (files, directories, symlinks, ...), the root included.
    pub inodes: u64,
    /// Directory entries (names).
    pub entries: u64,
    /// Bytes of stored file data.
    pub data_bytes: u64,
}

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
    let mut sum = Summary::default();
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
        let Some(&pino) = ns.trie().value(dir) else {
            continue;
        };
        for (_, name, node) in ns.trie().entries_from(dir, 0) {
            let Some(&cino) = ns.trie().value(node) else {
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

fn kind_code(k: Kind) -> u8 {
    match k {
        Kind::Directory => 1,
        Kind::RegularFile => 2,
        Kind::Symlink => 3,
        Kind::Fifo => 4,
        Kind::Socket => 5,
        Kind::CharDevice => 6,
        Kind::BlockDevice => 7,
    }
}

fn kind_of(c: u8) -> Option<Kind> {
    Some(match c {
        1 => Kind::Directory,
        2 => Kind::RegularFile,
        3 => Kind::Symlink,
        4 => Kind::Fifo,
        5 => Kind::Socket,
        6 => Kind::CharDevice,
        7 => Kind::BlockDevice,
        _ => return None,
    })
}

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
    if version != VERSION {
        return Err(ImageError::Version(version));
    }
    let mut ns = Namespace::new(0, 0, 0o755, limits);
    let mut map: HashMap<u64, u64> = HashMap::new();
    let mut sum = Summary::default();
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
                load_inode(&mut ns, &mut map, &mut p)?;
                sum.inodes += 1;
            }
            TAG_DATA if !entries_started => {
                let old = p.u64()?;
                let off = p.u64()?;
                let bytes = p.rest();
                let ino = *map
                    .get(&old)
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
                let (Some(&np), Some(&nc)) = (map.get(&parent), map.get(&child)) else {
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
    map: &mut HashMap<u64, u64>,
    p: &mut Payload<'_>,
) -> Result<(), ImageError> {
    let old = p.u64()?;
    let kind = kind_of(p.u8()?).ok_or(ImageError::Corrupt("unknown file type".into()))?;
    let perm = p.u16()?;
    let (uid, gid, rdev) = (p.u32()?, p.u32()?, p.u32()?);
    let (atime, mtime, ctime) = (p.time()?, p.time()?, p.time()?);
    let size = p.u64()?;
    let mut xattrs = Xattrs::new();
    for _ in 0..p.u32()? {
        let n = p.u16()? as usize;
        let name = p.take(n)?;
        let v = p.u32()? as usize;
        xattrs.insert(name.into(), p.take(v)?.into());
    }
    let target = p.rest();
    if map.contains_key(&old) {
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
            Kind::RegularFile => Content::File(Box::default()),
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
    };
    if !ns.set_loaded_attrs(ino, &attrs, &xattrs) {
        return corrupt("inode vanished");
    }
    map.insert(old, ino);
    Ok(())
}

/// Saves `ns` to `path` atomically: temporary file, fsync, rename, fsync
/// of the directory. On any error the old image is left as it was.
pub fn save_to_path(ns: &Namespace, path: &Path) -> Result<Summary, io::Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = temp_path(path)?;
    let result = (|| {
        let f = create_private(&tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, FailAfter::new(f));
        let sum = write_image(ns, &mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.inner.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()?;
        Ok(sum)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates the temporary file of a save: mode 0600, because an image holds
/// every file's contents whatever its mode in the mount (a world-readable
/// image would show other users what the mount does not); and never through
/// a symlink or over a file someone else made: the name is predictable and
/// the directory may be shared. A leftover of our own PID is removed first
/// (unlinking a planted symlink removes the link, never its target).
fn create_private(tmp: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(tmp)
}

/// The temporary file a save of `path` writes before renaming it over
/// `path`: `.NAME.tmp.PID` in the same directory.
pub fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("image path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    Ok(path.with_file_name(tmp_name))
}

/// Removes temporary files left by saves of `path` that were killed
/// (`.NAME.tmp.PID` whose process is gone). Returns how many.
pub fn remove_stale_temps(path: &Path) -> usize {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return 0;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(name.as_bytes());
    prefix.extend_from_slice(b".tmp.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(pid) = file.as_bytes().strip_prefix(prefix.as_slice()) else {
            continue;
        };
        let alive = std::str::from_utf8(pid)
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Loads an image file.
pub fn load_from_path(path: &Path, limits: Limits) -> Result<(Namespace, Summary), ImageError> {
    let f = File::open(path).map_err(ImageError::Io)?;
    read_image(f, limits)
}

/// A writer that fails with ENOSPC after `TRIEFS_IMAGE_FAIL_AFTER` bytes
/// when `TRIEFS_FAULTS=1` (fault injection for tests of failed saves).
struct FailAfter {
    inner: File,
    left: Option<u64>,
}

impl FailAfter {
    fn new(inner: File) -> FailAfter {
        let faults = std::env::var_os("TRIEFS_FAULTS").is_some_and(|v| v == "1");
        let left = faults
            .then(|| std::env::var("TRIEFS_IMAGE_FAIL_AFTER").ok()?.parse().ok())
            .flatten();
        FailAfter { inner, left }
    }
}

impl Write for FailAfter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(left) = &mut self.left {
            if *left == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = buf.len().min(*left as usize);
            let n = self.inner.write(&buf[..n])?;
            *left -= n as u64;
            return Ok(n);
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::NewNode;

    fn limits() -> Limits {
        Limits {
            max_pages: 1 << 20,
            max_inodes: 1 << 20,
        }
    }

    fn node(kind: Kind, perm: u32, target: Option<&[u8]>) -> NewNode<'_> {
        NewNode {
            kind,
            perm,
            uid: 7,
            gid: 8,
            rdev: 0,
            target,
        }
    }

    /// A tree with every file type, a hard link, xattrs and a sparse file.
    fn sample() -> Namespace {
        let mut ns = Namespace::new(0, 0, 0o755, limits());
        let os = OsStr::new;
        let d = ns
            .create_node(ROOT_INO, os("dir"), node(Kind::Directory, 0o2750, None))
            .unwrap();
        let d = d.attr.ino.0;
        let f = ns
            .create_node(d, os("file"), node(Kind::RegularFile, 0o640, None))
            .unwrap();
        let f = f.attr.ino.0;
        ns.write(f, 0, b"hello world").unwrap();
        ns.write(f, 10 << 20, b"far away").unwrap();
        ns.link(f, ROOT_INO, os("hardlink")).unwrap();
        ns.setxattr(f, os("user.k"), b"v\0binary", 0).unwrap();
        ns.create_node(
            ROOT_INO,
            os("sym"),
            node(Kind::Symlink, 0o777, Some(b"dir/file")),
        )
        .unwrap();
        ns.create_node(d, os("fifo"), node(Kind::Fifo, 0o600, None))
            .unwrap();
        let odd = OsStr::from_bytes(b"\xffname");
        ns.create_node(d, odd, node(Kind::Directory, 0o700, None))
            .unwrap();
        ns
    }

    fn listing(ns: &Namespace) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![(ROOT_INO, String::new())];
        while let Some((dir, prefix)) = stack.pop() {
            for (_, name, ino, kind) in ns.entries_from(dir, 0).unwrap() {
                let a = ns.attr(ino).unwrap();
                let path = format!("{prefix}/{}", name.to_string_lossy());
                let data = ns.read(ino, 0, 64).unwrap_or_default();
                let link = ns.readlink(ino).map(|t| t.to_vec()).unwrap_or_default();
                out.push(format!(
                    "{path} {kind:?} {:o} {} {}:{} {} {:?} {:?} {:?} {:?}",
                    a.perm,
                    a.nlink,
                    a.uid,
                    a.gid,
                    a.size,
                    a.mtime,
                    data,
                    link,
                    ns.listxattr(ino, 4096)
                ));
                if kind == fuser::FileType::Directory {
                    stack.push((ino, path));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn round_trip_keeps_everything() {
        let ns = sample();
        let mut img = Vec::new();
        let sum = write_image(&ns, &mut img).unwrap();
        assert_eq!(sum.entries, 6);
        let (back, sum2) = read_image(&img[..], limits()).unwrap();
        assert_eq!(sum, sum2);
        assert_eq!(listing(&ns), listing(&back));
        // Holes stay holes: two stored pages for 10 MiB of file.
        assert_eq!(back.pages_used(), 2);
        assert!(
            img.len() < 16 * 1024,
            "image of a sparse file is small: {}",
            img.len()
        );
        back.check().unwrap();
        // And again: the image of the loaded tree is the same size.
        let mut img2 = Vec::new();
        write_image(&back, &mut img2).unwrap();
        assert_eq!(img.len(), img2.len());
    }

    #[test]
    fn damage_is_refused_never_a_panic() {
        let mut img = Vec::new();
        write_image(&sample(), &mut img).unwrap();
        assert!(matches!(
            read_image(&b"not an image at all"[..], limits()),
            Err(ImageError::NotAnImage)
        ));
        assert!(matches!(
            read_image(&b""[..], limits()),
            Err(ImageError::NotAnImage)
        ));
        assert!(matches!(
            read_image(&b"TRIEFSIX"[..], limits()),
            Err(ImageError::NotAnImage)
        ));
        let mut v2 = img.clone();
        v2[8] = 2;
        assert!(matches!(
            read_image(&v2[..], limits()),
            Err(ImageError::Version(2))
        ));
        // Cut anywhere, also inside the magic or the header: truncated.
        for cut in [3, 8, 12, 15, 16, 20, img.len() / 2, img.len() - 1] {
            assert!(
                matches!(
                    read_image(&img[..cut], limits()),
                    Err(ImageError::Truncated)
                ),
                "cut {cut}"
            );
        }
        // Every single-byte flip past the header is caught.
        for at in 16..img.len() {
            let mut bad = img.clone();
            bad[at] ^= 0x5a;
            assert!(
                read_image(&bad[..], limits()).is_err(),
                "flip at {at} accepted"
            );
        }
        let mut extra = img.clone();
        extra.push(0);
        assert!(read_image(&extra[..], limits()).is_err());
    }

    #[test]
    fn limits_apply_to_loaded_images() {
        let mut img = Vec::new();
        write_image(&sample(), &mut img).unwrap();
        let tight = Limits {
            max_pages: 1,
            max_inodes: 1 << 20,
        };
        assert!(read_image(&img[..], tight).is_err());
        let few = Limits {
            max_pages: 1 << 20,
            max_inodes: 3,
        };
        assert!(read_image(&img[..], few).is_err());
    }
}
