//! Reading an image: every record, checksum, bound and reference is
//! checked, then the whole namespace's invariants.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;

use super::*;
use crate::namespace::data::{PAGE, Page};
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
/// [`Namespace::check`], and so does each checkpoint's tree.
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
    let mut st = LoadState {
        version,
        limits,
        map: InoMap::default(),
        kinds: Vec::new(),
        next_ino: 0,
        pages: Vec::new(),
        created: 0,
    };
    let mut sum = Summary {
        version,
        ..Summary::default()
    };
    // The tree records go to: the live tree, then each checkpoint's.
    let mut ck: Option<CheckpointLoad> = None;
    // Between a checkpoint's end and the next checkpoint or END.
    let mut between = false;
    let mut live_entries = false;
    let mut pos = 16u64;
    let mut payload = Vec::new();
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
        let v3 = version >= 3;
        match tag {
            TAG_INODE | TAG_DATA | TAG_ENTRY | TAG_PAGE | TAG_REF if !between => {
                if matches!(tag, TAG_PAGE | TAG_REF) && !v3 {
                    return corrupt(format!("unexpected record type {tag} at byte {pos}"));
                }
                let (tree, tsum, entries_started, live) = match &mut ck {
                    Some(c) => (&mut c.ns, &mut c.sum, &mut c.entries_started, false),
                    None => (&mut ns, &mut sum, &mut live_entries, true),
                };
                if tag == TAG_ENTRY {
                    *entries_started = true;
                } else if *entries_started {
                    return corrupt(format!("unexpected record type {tag} at byte {pos}"));
                }
                tree_record(&mut st, tree, live, tag, &mut p, tsum)?;
            }
            TAG_CHECKPOINT if v3 && ck.is_none() => {
                if !between {
                    // The live tree is complete: checkpoint-only inodes
                    // get numbers after its own.
                    st.next_ino = ns.inodes().slot_count() as u64 + 1;
                }
                between = false;
                let sec = p.u64()? as i64;
                let nsec = p.u32()?;
                if nsec >= 1_000_000_000 {
                    return corrupt("timestamp nanoseconds out of range");
                }
                let name = String::from_utf8(p.rest().to_vec())
                    .map_err(|_| ImageError::Corrupt("checkpoint name is not UTF-8".into()))?;
                ck = Some(CheckpointLoad {
                    name,
                    time: Time::from_parts(sec, nsec).into(),
                    ns: Namespace::new(0, 0, 0o755, limits),
                    sum: Summary {
                        version,
                        ..Summary::default()
                    },
                    entries_started: false,
                });
            }
            TAG_CHECKPOINT_END if v3 => {
                let Some(c) = ck.take() else {
                    return corrupt(format!("checkpoint end without a checkpoint at byte {pos}"));
                };
                let want = Summary {
                    inodes: p.u64()?,
                    entries: p.u64()?,
                    data_bytes: p.u64()?,
                    checkpoints: 0,
                    version,
                };
                let what = format!("checkpoint {:?}", c.name);
                if want != c.sum {
                    return corrupt(format!(
                        "{what}: end counts {want:?} but the records hold {:?}",
                        c.sum
                    ));
                }
                let mut tree = c.ns;
                // Its invariants are checked with the whole namespace's.
                finish_tree(&mut tree, &what, false)?;
                ns.add_loaded_checkpoint(&c.name, c.time, tree)
                    .map_err(ImageError::Corrupt)?;
                between = true;
            }
            TAG_END if ck.is_none() => {
                let want = Summary {
                    inodes: p.u64()?,
                    entries: p.u64()?,
                    data_bytes: p.u64()?,
                    checkpoints: if v3 { p.u64()? } else { 0 },
                    version,
                };
                sum.checkpoints = ns.checkpoints().len() as u64;
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
    // The page table's references go before counting which pages are
    // shared.
    drop(st);
    finish_tree(&mut ns, "the live tree", true)?;
    Ok((ns, sum))
}

/// What a load keeps between records.
struct LoadState {
    version: u32,
    limits: Limits,
    /// Image inode numbers to ours, one map for all trees: a number names
    /// one file in the live tree and in every checkpoint.
    map: InoMap,
    /// The file type of each of our numbers (index), so that a number
    /// cannot name a directory in one tree and a file in another.
    kinds: Vec<u8>,
    /// Our next number for an inode only checkpoints hold.
    next_ino: u64,
    /// The shared pages by page id: a reference each until the load ends
    /// (8 bytes per shared page; their number is bounded by the size
    /// limit).
    pages: Vec<Page>,
    /// Page buffers the records made so far, against the size limit.
    created: u64,
}

/// A checkpoint's tree being loaded.
struct CheckpointLoad {
    name: String,
    time: std::time::SystemTime,
    ns: Namespace,
    sum: Summary,
    entries_started: bool,
}

/// One record of a tree (INODE, DATA, PAGE, REF or ENTRY) into `tree`;
/// `live` for the live tree, which numbers its inodes itself.
fn tree_record(
    st: &mut LoadState,
    tree: &mut Namespace,
    live: bool,
    tag: u8,
    p: &mut Payload<'_>,
    sum: &mut Summary,
) -> Result<(), ImageError> {
    if tag != TAG_INODE && sum.inodes == 0 {
        return corrupt("a tree must start with its root directory");
    }
    match tag {
        TAG_INODE => {
            load_inode(tree, st, live, p, sum.inodes == 0)?;
            sum.inodes += 1;
        }
        TAG_DATA => {
            let old = p.u64()?;
            let off = p.u64()?;
            let bytes = p.rest();
            let ino = st.mapped(old, tree)?;
            if !bytes.is_empty() {
                // Page buffers it may make: every page it touches.
                let first = off / PAGE as u64;
                let last = off.saturating_add(bytes.len() as u64 - 1) / PAGE as u64;
                st.count_pages(last - first + 1)?;
            }
            tree.load_data(ino, off, bytes)
                .map_err(|e| ImageError::Corrupt(format!("inode {old}: {e}")))?;
            sum.data_bytes += bytes.len() as u64;
        }
        TAG_PAGE => {
            let old = p.u64()?;
            let off = p.u64()?;
            let bytes = p.rest();
            let ino = st.mapped(old, tree)?;
            if bytes.is_empty() {
                return corrupt(format!("inode {old}: a PAGE record without pages"));
            }
            let mut at = off;
            // The last page may be cut at the file's size: zeros follow.
            for chunk in bytes.chunks(PAGE) {
                st.count_pages(1)?;
                let page = Page::filled(0, chunk);
                tree.load_page(ino, at, page.clone())
                    .map_err(|e| ImageError::Corrupt(format!("inode {old}: {e}")))?;
                st.pages.push(page);
                at = at.saturating_add(PAGE as u64);
            }
            sum.data_bytes += bytes.len() as u64;
        }
        TAG_REF => {
            let old = p.u64()?;
            let off = p.u64()?;
            let first = p.u64()?;
            let count = p.u32()?;
            let ino = st.mapped(old, tree)?;
            if !p.rest().is_empty() || count == 0 || count as usize > RUN_PAGES {
                return corrupt(format!("inode {old}: a REF record of {count} pages"));
            }
            let mut at = off;
            for k in 0..u64::from(count) {
                let id = first.saturating_add(k);
                let Some(page) = usize::try_from(id).ok().and_then(|i| st.pages.get(i)) else {
                    return corrupt(format!("inode {old}: reference to unknown page {id}"));
                };
                tree.load_page(ino, at, page.clone())
                    .map_err(|e| ImageError::Corrupt(format!("inode {old}: {e}")))?;
                at = at.saturating_add(PAGE as u64);
            }
        }
        TAG_ENTRY => {
            let parent = p.u64()?;
            let child = p.u64()?;
            let name = OsStr::from_bytes(p.rest());
            let (Some(np), Some(nc)) = (st.map.get(parent), st.map.get(child)) else {
                return corrupt(format!("entry {name:?} names an unknown inode"));
            };
            tree.name_loaded(np, name, nc)
                .map_err(|e| ImageError::Corrupt(format!("entry {name:?}: {e}")))?;
            sum.entries += 1;
        }
        _ => return corrupt(format!("unexpected record type {tag}")),
    }
    Ok(())
}

impl LoadState {
    /// Our number of image inode `old`, which must be in `tree`.
    fn mapped(&self, old: u64, tree: &Namespace) -> Result<u64, ImageError> {
        self.map
            .get(old)
            .filter(|&ino| tree.inodes().get(ino).is_some())
            .ok_or(ImageError::Corrupt(format!("data for unknown inode {old}")))
    }

    /// Counts `n` more page buffers against the size limit.
    fn count_pages(&mut self, n: u64) -> Result<(), ImageError> {
        self.created = self.created.saturating_add(n);
        if self.created > self.limits.max_pages {
            return corrupt("the image holds more data than the size limit allows");
        }
        Ok(())
    }
}

/// The checks at the end of a tree: every inode named, the inode space,
/// the pages counted once, and with `check` the namespace's invariants
/// (the whole namespace's: the checkpoints' trees too).
fn finish_tree(tree: &mut Namespace, what: &str, check: bool) -> Result<(), ImageError> {
    if let Some(ino) = tree.unnamed_inode() {
        return corrupt(format!("{what}: inode {ino} has no name"));
    }
    if tree.reserve_ispace(0).is_err() {
        return corrupt(format!(
            "{what} needs more inode space (inodes, hard links, xattrs) than nr_inodes allows"
        ));
    }
    if tree.recount_pages() > tree.limits().max_pages {
        return corrupt("the image holds more data than the size limit allows");
    }
    if check && let Err(errors) = tree.check() {
        return corrupt(errors.join("; "));
    }
    Ok(())
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
    st: &mut LoadState,
    live: bool,
    p: &mut Payload<'_>,
    first: bool,
) -> Result<(), ImageError> {
    let old = p.u64()?;
    let code = p.u8()?;
    let kind = kind_of(code).ok_or(ImageError::Corrupt("unknown file type".into()))?;
    let perm = p.u16()?;
    let (uid, gid, rdev) = (p.u32()?, p.u32()?, p.u32()?);
    let (atime, mtime, ctime) = (p.time()?, p.time()?, p.time()?);
    let size = p.u64()?;
    // Version 1 had no flags.
    let flags = if st.version >= 2 { p.u32()? } else { 0 };
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
    if size > i64::MAX as u64 {
        return corrupt("file size out of range");
    }
    let is_root = old == ROOT_INO;
    if is_root != first || (is_root && kind != Kind::Directory) {
        return corrupt("the first inode must be the root directory");
    }
    let known = st.map.get(old);
    if live && known.is_some() {
        return corrupt(format!("inode {old} appears twice"));
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
        let inode = Inode::new(kind, perm, uid, gid, content);
        if live {
            ns.insert_unnamed(inode).ok_or_else(|| {
                ImageError::Corrupt("the image holds more inodes than nr_inodes allows".into())
            })?
        } else {
            // A checkpoint's inode: the number the live tree or an
            // earlier checkpoint gave this image number, else a new one.
            let ino = match known {
                Some(ino) => ino,
                None if st.next_ino > crate::namespace::inode::MAX_INO => {
                    return corrupt("the image holds more inodes than triefs can number");
                }
                None => {
                    st.next_ino += 1;
                    st.next_ino - 1
                }
            };
            ns.insert_unnamed_at(ino, inode)
                .map_err(|e| ImageError::Corrupt(format!("inode {old}: {e}")))?;
            ino
        }
    };
    // One number, one file type, in every tree.
    let at = usize::try_from(ino).unwrap_or(usize::MAX);
    match st.kinds.get(at) {
        Some(&k) if k != 0 && k != code => {
            return corrupt(format!("inode {old} has another file type in another tree"));
        }
        Some(_) => st.kinds[at] = code,
        None => {
            st.kinds.resize(at + 1, 0);
            st.kinds[at] = code;
        }
    }
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
    if known.is_none() {
        st.map.insert(old, ino);
    }
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
