//! Loading a tar archive into a namespace, streamed member by member
//! (`triefs --from-tar`).
//!
//! The result is meant to be what `tar -xpf --numeric-owner --xattrs
//! --xattrs-include='*'` gives on a tmpfs as root:
//! - paths lose leading `/` and `.` components, as GNU tar strips them; a
//!   member with a `..` component is refused (GNU tar skips it and fails
//!   at the end; nothing half-loaded is ever mounted here);
//! - missing parents are created with mode `0755`, owned like the root;
//! - a non-directory member replaces an existing non-directory of that
//!   name (GNU tar unlinks it first); a member naming an existing
//!   directory is refused unless it is a directory, which then takes the
//!   member's attributes;
//! - a directory's attributes (mode, owner, mtime, extended attributes)
//!   are set once the archive has left it, as GNU tar's delayed set-stat
//!   does: its mtime is the archive's, not the load time, and a default
//!   ACL is not inherited by the members inside it (they carry their own);
//! - a member for the root (`./`) sets the root's attributes, as GNU tar
//!   sets those of the directory it extracts into;
//! - hard links name an earlier member (a missing one is an error);
//! - a non-directory gets its extended attributes, then owner, mode and
//!   mtime (nanoseconds from pax `mtime`); atimes are the load time, as
//!   GNU tar leaves them; ctimes are the load time.
//!
//! Memory: the loader holds one member's headers (at most
//! [`MAX_MEMBER_META`] bytes of long names, pax records and sparse maps,
//! enforced while the `tar` crate reads them), a 256 KiB data buffer, the
//! path of the current parent directory and the directories whose
//! attributes wait (the current member's ancestors). Data goes to the
//! namespace as it is read.

use std::cell::Cell;
use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::rc::Rc;
use std::time::SystemTime;

use fuser::TimeOrNow;
use tar::EntryType;

use super::{XATTR_PREFIX, decode_xattr_key, encode_dev, parse_pax_time};
use crate::error::Errno;
use crate::namespace::inode::{Kind, ROOT_INO};
use crate::namespace::{Namespace, NewNode, SetAttr};
use crate::trie::Trie;

/// Most bytes one member's headers may take before its data: GNU long
/// names and links, pax records (extended attributes are at most 64 KiB
/// each on Linux), GNU sparse maps. A member with more is refused, so a
/// crafted archive cannot make the loader hold an arbitrary amount.
pub const MAX_MEMBER_META: u64 = 4 << 20;

/// Size of the reads of member data.
const CHUNK: usize = 256 << 10;

/// Why an archive could not be loaded: one line, naming the member (or
/// the byte offset where its header starts) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    /// The member's path as the archive spells it (lossy UTF-8, cut to
    /// 200 bytes), or `None` when no member could be read.
    pub member: Option<String>,
    /// Offset in the archive of the member's first header.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
    /// The namespace's error behind the reason, if any (`ENOSPC` for a
    /// limit reached).
    pub errno: Option<Errno>,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.member {
            Some(m) => write!(f, "member '{m}' (at byte {}): {}", self.offset, self.reason),
            None => write!(f, "at byte {}: {}", self.offset, self.reason),
        }
    }
}

impl std::error::Error for ImportError {}

/// What a load added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Members read (extension headers not counted).
    pub members: u64,
    /// Bytes of file data stored (holes of sparse members not counted).
    pub data_bytes: u64,
    /// Bytes of the archive read.
    pub archive_bytes: u64,
}

/// The reader under the `tar` crate: counts bytes (for error offsets),
/// notes the end of the input, and refuses to hand out more than a budget
/// while the crate reads a member's headers (see [`MAX_MEMBER_META`]).
struct Guarded<R> {
    inner: R,
    state: Rc<GuardState>,
}

#[derive(Default)]
struct GuardState {
    /// Bytes read so far.
    pos: Cell<u64>,
    /// Bytes the crate may still read, while it reads headers.
    budget: Cell<Option<u64>>,
    /// The input has ended.
    eof: Cell<bool>,
    /// What the crate read while it read a member's headers (within the
    /// budget): the headers are parsed again from these bytes where the
    /// crate's reading is not to be trusted (see [`Chain`]).
    seen: std::cell::RefCell<Vec<u8>>,
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut want = buf.len();
        if let Some(b) = self.state.budget.get() {
            if b == 0 {
                return Err(io::Error::other(format!(
                    "a member's headers (long names, pax records, sparse map) take more \
                     than {MAX_MEMBER_META} bytes"
                )));
            }
            want = want.min(usize::try_from(b).unwrap_or(usize::MAX));
        }
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 && want > 0 {
            self.state.eof.set(true);
        }
        self.state.pos.set(self.state.pos.get() + n as u64);
        if let Some(b) = self.state.budget.get() {
            self.state.budget.set(Some(b - n as u64));
            self.state.seen.borrow_mut().extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

/// A directory whose attributes wait until the archive leaves it.
struct Pending {
    /// Its path, components joined by `/` ("" for the root).
    path: Vec<u8>,
    ino: u64,
    attrs: Attrs,
}

/// A member's attributes.
#[derive(Clone, Default)]
struct Attrs {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, u32),
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Loads the tar archive `r` into `ns`, member by member as it is read.
/// On error the namespace holds the members before the failing one (the
/// caller discards it: nothing is mounted).
pub fn import(ns: &mut Namespace, r: impl Read) -> Result<ImportSummary, ImportError> {
    let state = Rc::new(GuardState::default());
    let guarded = Guarded {
        inner: r,
        state: state.clone(),
    };
    let mut archive = tar::Archive::new(guarded);
    let mut entries = archive.entries().map_err(|e| ImportError {
        member: None,
        offset: 0,
        reason: e.to_string(),
        errno: None,
    })?;
    let mut loader = Loader::new(ns);
    let mut summary = ImportSummary::default();
    let mut buf = vec![0u8; CHUNK];
    loop {
        // The previous member's data is all read: what is left of its
        // block is padding, which the crate skips, and the next header
        // starts at the block boundary.
        let read = state.pos.get();
        let offset = read.div_ceil(512) * 512;
        let pad = (offset - read) as usize;
        let at = |reason: String| ImportError {
            member: None,
            offset,
            reason,
            errno: None,
        };
        state.seen.borrow_mut().clear();
        state.budget.set(Some(MAX_MEMBER_META));
        let next = entries.next();
        state.budget.set(None);
        let mut entry = match next {
            None => {
                if state.eof.get() {
                    // The crate ends at EOF on a header boundary as at the
                    // end-of-archive blocks: a cut archive would load as a
                    // shorter one.
                    return Err(at(
                        "truncated archive: it ends without the end-of-archive blocks".into(),
                    ));
                }
                break;
            }
            Some(Err(e)) => return Err(at(describe_io(&e, state.eof.get()))),
            Some(Ok(e)) => e,
        };
        let chain =
            Chain::parse(state.seen.borrow().get(pad..).unwrap_or_default()).map_err(&at)?;
        let raw_path = chain.path(&entry);
        let member = lossy(&raw_path);
        let fail = |reason: String, errno: Option<Errno>| ImportError {
            member: Some(member.clone()),
            offset,
            reason,
            errno,
        };
        let m = Member::read(&entry, &chain).map_err(|r| fail(r, None))?;
        summary.members += 1;
        let result = loader.add(&raw_path, &m, &mut entry, &mut buf);
        // Data a member carries but no file takes (a dump directory's
        // name list, a hard link's copy) is read here, outside the
        // budget of headers.
        let result = result.and_then(|n| {
            io::copy(&mut entry, &mut io::sink())
                .map(|_| n)
                .map_err(Failure::Io)
        });
        match result {
            Ok(bytes) => summary.data_bytes += bytes,
            Err(f) => {
                let (reason, errno) = f.describe(state.eof.get());
                return Err(fail(reason, errno));
            }
        }
    }
    loader.finish().map_err(|f| {
        let (reason, errno) = f.describe(state.eof.get());
        ImportError {
            member: None,
            offset: state.pos.get(),
            reason,
            errno,
        }
    })?;
    summary.archive_bytes = state.pos.get();
    Ok(summary)
}

/// An I/O error of the archive in words: the crate's own, or a cut archive.
fn describe_io(e: &io::Error, eof: bool) -> String {
    if eof || e.kind() == io::ErrorKind::UnexpectedEof {
        format!("truncated archive ({e})")
    } else {
        format!("corrupt archive: {e}")
    }
}

/// The reason for file data that does not fit.
const DATA_FULL: &str = "no space left: the size limit (-o size=) is reached";

/// The one-line reason for an error of the namespace.
fn reason(e: Errno) -> String {
    match e.code() {
        libc::ENOSPC => "no space left: the inode limit (-o nr_inodes=) is reached".into(),
        libc::ENAMETOOLONG => "a path component is longer than 255 bytes".into(),
        libc::EINVAL => "'..' and NUL are not allowed in paths".into(),
        libc::ENOTDIR => "a parent is not a directory".into(),
        libc::EFBIG => "file too large".into(),
        _ => e.to_string(),
    }
}

/// The member's name for messages: lossy UTF-8, at most 200 bytes.
fn lossy(p: &[u8]) -> String {
    let cut = &p[..p.len().min(200)];
    let s = String::from_utf8_lossy(cut).into_owned();
    if p.len() > 200 { s + "..." } else { s }
}

/// Why a member could not be added.
enum Failure {
    /// The namespace refused it.
    Ns(Errno),
    /// File data past the size limit.
    DataFull,
    /// The archive says something that cannot be loaded.
    Msg(String),
    /// The archive could not be read.
    Io(io::Error),
    /// Setting the waiting attributes of this directory failed.
    Dir(Vec<u8>, Box<Failure>),
}

impl Failure {
    /// The one-line reason and the namespace's error behind it; `eof`:
    /// the archive has ended.
    fn describe(self, eof: bool) -> (String, Option<Errno>) {
        match self {
            Failure::Ns(e) => (reason(e), Some(e)),
            Failure::DataFull => (DATA_FULL.into(), Some(Errno::new(libc::ENOSPC))),
            Failure::Msg(m) => (m, None),
            Failure::Io(e) => (describe_io(&e, eof), None),
            Failure::Dir(path, f) => {
                let (r, e) = f.describe(eof);
                let shown = if path.is_empty() { b"." } else { &path[..] };
                (
                    format!(
                        "setting the attributes of directory '{}': {r}",
                        lossy(shown)
                    ),
                    e,
                )
            }
        }
    }
}

impl From<Errno> for Failure {
    fn from(e: Errno) -> Self {
        Failure::Ns(e)
    }
}

/// What a member is, read from its headers.
struct Member {
    kind: EntryType,
    attrs: Attrs,
    link: Option<Vec<u8>>,
    rdev: u32,
    size: u64,
}

impl Member {
    fn read<R: Read>(e: &tar::Entry<'_, R>, chain: &Chain) -> Result<Member, String> {
        let h = e.header();
        let kind = h.entry_type();
        let bad = |what: &str, err: io::Error| format!("bad {what} in header: {err}");
        let mode = h.mode().map_err(|e| bad("mode", e))?;
        let mut uid = h.uid().map_err(|e| bad("uid", e))?;
        let mut gid = h.gid().map_err(|e| bad("gid", e))?;
        let mtime = h.mtime().map_err(|e| bad("mtime", e))?;
        let mut mtime = (i64::try_from(mtime).unwrap_or(i64::MAX), 0);
        let rdev = match kind {
            EntryType::Char | EntryType::Block => {
                let major = h.device_major().map_err(|e| bad("device", e))?.unwrap_or(0);
                let minor = h.device_minor().map_err(|e| bad("device", e))?.unwrap_or(0);
                if major > 0xfff || minor > 0xfffff {
                    return Err(format!("device number {major}:{minor} is out of range"));
                }
                encode_dev(major, minor)
            }
            _ => 0,
        };
        let size = e.size();
        let mut xattrs = Vec::new();
        let number = |v: &[u8], key: &str| {
            std::str::from_utf8(v)
                .ok()
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| format!("bad pax {key} '{}'", lossy(v)))
        };
        for (key, value) in pax_records(chain.pax.as_deref().unwrap_or_default())? {
            if let Some(name) = key.strip_prefix(XATTR_PREFIX.as_bytes()) {
                xattrs.push((decode_xattr_key(name), value.to_vec()));
                continue;
            }
            match key {
                b"mtime" => {
                    mtime = parse_pax_time(value)
                        .ok_or_else(|| format!("bad pax mtime '{}'", lossy(value)))?;
                }
                b"uid" => uid = number(value, "uid")?,
                b"gid" => gid = number(value, "gid")?,
                // The crate found the member's data by its own reading of
                // the records: it must be this one.
                b"size" if number(value, "size")? != size && !kind.is_gnu_sparse() => {
                    return Err("the pax size and the archive's layout disagree".into());
                }
                _ if key.starts_with(b"GNU.sparse.") => {
                    return Err("pax sparse members (GNU.sparse.*) are not supported: \
                                create the archive without --sparse"
                        .into());
                }
                _ => {}
            }
        }
        let (uid, gid) = match (u32::try_from(uid), u32::try_from(gid)) {
            (Ok(u), Ok(g)) if u != u32::MAX && g != u32::MAX => (u, g),
            _ => return Err(format!("owner {uid}:{gid} is not a valid id")),
        };
        Ok(Member {
            kind,
            attrs: Attrs {
                mode: mode & 0o7777,
                uid,
                gid,
                mtime,
                xattrs,
            },
            link: chain.link(e),
            rdev,
            size,
        })
    }
}

/// A member's extension headers, read again from the bytes the crate read
/// for them: the crate splits pax records at newlines, which binary
/// values (extended attributes, ACLs) contain, so its view of the records
/// (and of the path and link target they may hold) is not used.
#[derive(Default)]
struct Chain {
    /// The pax extended header's records.
    pax: Option<Vec<u8>>,
    /// A GNU long name and long link target.
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    /// The pax records' `path` and `linkpath`.
    pax_path: Option<Vec<u8>>,
    pax_link: Option<Vec<u8>>,
}

impl Chain {
    /// Walks the headers in `seen` (the crate checked their checksums and
    /// sizes) up to the member's own.
    fn parse(seen: &[u8]) -> Result<Chain, String> {
        let mut c = Chain::default();
        let mut at = 0usize;
        while let Some(block) = seen.get(at..at + 512) {
            let h = tar::Header::from_byte_slice(block);
            let size = h
                .entry_size()
                .map_err(|e| format!("corrupt archive: {e}"))?;
            let start = at + 512;
            let data = usize::try_from(size)
                .ok()
                .and_then(|n| seen.get(start..start.checked_add(n)?));
            let kind = block[156];
            if !matches!(kind, b'x' | b'L' | b'K') {
                break;
            }
            let data = data.ok_or("corrupt archive: an extension header is cut short")?;
            let data = data.to_vec();
            match kind {
                b'x' => c.pax = Some(data),
                b'L' => c.long_name = Some(strip_nul(data)),
                _ => c.long_link = Some(strip_nul(data)),
            }
            at = start + data_len_padded(size);
        }
        for (k, v) in pax_records(c.pax.as_deref().unwrap_or_default())? {
            match k {
                b"path" => c.pax_path = Some(v.to_vec()),
                b"linkpath" => c.pax_link = Some(v.to_vec()),
                _ => {}
            }
        }
        Ok(c)
    }

    /// The member's path: pax `path`, else a GNU long name, else the
    /// header's (with the ustar prefix).
    fn path<R: Read>(&self, e: &tar::Entry<'_, R>) -> Vec<u8> {
        self.pax_path
            .clone()
            .or_else(|| self.long_name.clone())
            .unwrap_or_else(|| e.header().path_bytes().into_owned())
    }

    /// The member's link target, likewise.
    fn link<R: Read>(&self, e: &tar::Entry<'_, R>) -> Option<Vec<u8>> {
        self.pax_link
            .clone()
            .or_else(|| self.long_link.clone())
            .or_else(|| e.header().link_name_bytes().map(|l| l.into_owned()))
    }
}

/// A GNU long name's data, without the NUL that ends it.
fn strip_nul(mut v: Vec<u8>) -> Vec<u8> {
    if let Some(n) = v.iter().position(|&b| b == 0) {
        v.truncate(n);
    }
    v
}

fn data_len_padded(size: u64) -> usize {
    usize::try_from(size.div_ceil(512) * 512).unwrap_or(usize::MAX)
}

/// A pax record's key and value.
type PaxRecord<'a> = (&'a [u8], &'a [u8]);

/// The records `LEN key=value\n` of a pax extended header, by their
/// lengths (values may hold newlines and any byte).
fn pax_records(mut data: &[u8]) -> Result<Vec<PaxRecord<'_>>, String> {
    let mut out = Vec::new();
    let bad = || "corrupt archive: malformed pax record".to_string();
    while !data.is_empty() {
        let sp = data.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&data[..sp])
            .ok()
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse().ok())
            .ok_or_else(bad)?;
        if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(bad());
        }
        let rec = &data[sp + 1..len - 1];
        let eq = rec.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        out.push((&rec[..eq], &rec[eq + 1..]));
        data = &data[len..];
    }
    Ok(out)
}

/// The state of a load: the namespace, the last parent directory, the
/// directories whose attributes wait.
struct Loader<'a> {
    ns: &'a mut Namespace,
    /// Owner of created parents: the root's.
    owner: (u32, u32),
    /// The previous parent directory's path, where each of its components
    /// ends in it, and the directory each resolved to.
    prev: Vec<u8>,
    ends: Vec<usize>,
    inos: Vec<u64>,
    pending: Vec<Pending>,
}

impl<'a> Loader<'a> {
    fn new(ns: &'a mut Namespace) -> Self {
        let owner = ns.attr(ROOT_INO).map_or((0, 0), |a| (a.uid, a.gid));
        Loader {
            ns,
            owner,
            prev: Vec::new(),
            ends: Vec::new(),
            inos: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// Adds one member; returns the data bytes stored.
    fn add<R: Read>(
        &mut self,
        raw: &[u8],
        m: &Member,
        data: &mut R,
        buf: &mut [u8],
    ) -> Result<u64, Failure> {
        // Archive-wide pax records and volume labels name no file.
        if matches!(m.kind.as_byte(), b'g' | b'V') {
            return Ok(0);
        }
        let path = normalize(raw)?;
        self.apply_left(&path)?;
        // By the type byte: GNU's dump directory ('D') and volume label
        // ('V') have no variant in the crate.
        let kind = match m.kind.as_byte() {
            b'5' | b'D' => Kind::Directory,
            b'0' | b'\0' | b'7' | b'S' => Kind::RegularFile,
            b'2' => Kind::Symlink,
            b'1' => return self.hard_link(&path, m).map(|()| 0),
            b'3' => Kind::CharDevice,
            b'4' => Kind::BlockDevice,
            b'6' => Kind::Fifo,
            other => {
                return Err(Failure::Msg(format!(
                    "unsupported member type '{}'",
                    char::from(other).escape_default()
                )));
            }
        };
        if path.is_empty() {
            // The root itself (`./`): only a directory can be it.
            if kind != Kind::Directory {
                return Err(Failure::Msg("the archive's root is not a directory".into()));
            }
            self.pending.push(Pending {
                path,
                ino: ROOT_INO,
                attrs: m.attrs.clone(),
            });
            return Ok(0);
        }
        let (parent, name) = self.parent_of(&path)?;
        let existing = self.ns.child_ino(parent, name).ok();
        if let Some(old) = existing {
            let old_kind = self.kind(old)?;
            if kind == Kind::Directory && old_kind == Kind::Directory {
                // Listed again: the newer attributes win.
                self.pending.push(Pending {
                    path,
                    ino: old,
                    attrs: m.attrs.clone(),
                });
                return Ok(0);
            }
            if old_kind == Kind::Directory {
                return Err(Failure::Msg(
                    "a directory of that name exists (from an earlier member)".into(),
                ));
            }
            self.ns.unlink(parent, name)?;
        }
        let target = match kind {
            Kind::Symlink => Some(
                // symlink(2) refuses an empty target (ENOENT), as GNU tar
                // then does.
                m.link
                    .as_deref()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| Failure::Msg("symlink without a target".into()))?,
            ),
            _ => None,
        };
        if target.is_some_and(|t| t.contains(&0)) {
            return Err(Failure::Msg("NUL in the symlink target".into()));
        }
        let perm = match kind {
            Kind::Symlink => 0o777,
            _ => m.attrs.mode,
        };
        let spec = NewNode {
            kind,
            perm,
            uid: m.attrs.uid,
            gid: m.attrs.gid,
            rdev: m.rdev,
            target,
        };
        let ino = self.ns.create_node(parent, name, spec)?.attr.ino.0;
        // create_node counts a kernel reference: none exists.
        self.ns.forget(ino, 1);
        if kind == Kind::Directory {
            self.pending.push(Pending {
                path,
                ino,
                attrs: m.attrs.clone(),
            });
            return Ok(0);
        }
        let stored = if kind == Kind::RegularFile {
            let sparse = m.kind == EntryType::GNUSparse;
            self.fill(ino, m.size, sparse, data, buf)?
        } else {
            0
        };
        self.set_attrs(ino, kind, &m.attrs)?;
        Ok(stored)
    }

    /// Copies a member's `size` bytes of data into file `ino`; for a
    /// sparse member, pages of zeros stay holes.
    fn fill<R: Read>(
        &mut self,
        ino: u64,
        size: u64,
        sparse: bool,
        data: &mut R,
        buf: &mut [u8],
    ) -> Result<u64, Failure> {
        let mut off = 0u64;
        let mut stored = 0u64;
        while off < size {
            let want = buf
                .len()
                .min(usize::try_from(size - off).unwrap_or(usize::MAX));
            let n = data.read(&mut buf[..want]).map_err(Failure::Io)?;
            if n == 0 {
                return Err(Failure::Msg(format!(
                    "truncated archive: the member has {off} of its {size} bytes"
                )));
            }
            let chunk = &buf[..n];
            if sparse {
                // Only whole 4 KiB pages of zeros at page offsets are left
                // out: the rest is written as it is.
                let mut i = 0;
                while i < n {
                    let at = off + i as u64;
                    let page_end = ((at / 4096) + 1) * 4096;
                    let end = n.min(i + (page_end - at) as usize);
                    let part = &chunk[i..end];
                    if !(at.is_multiple_of(4096)
                        && part.len() == 4096
                        && part.iter().all(|&b| b == 0))
                    {
                        self.write(ino, at, part)?;
                        stored += part.len() as u64;
                    }
                    i = end;
                }
            } else {
                self.write(ino, off, chunk)?;
                stored += n as u64;
            }
            off += n as u64;
        }
        if sparse && self.ns.size(ino)? != size {
            self.ns.setattr(
                ino,
                SetAttr {
                    size: Some(size),
                    ..SetAttr::default()
                },
            )?;
        }
        Ok(stored)
    }

    /// Writes all of `data` at `off` of `ino`: a short write means the
    /// size limit is reached.
    fn write(&mut self, ino: u64, off: u64, data: &[u8]) -> Result<(), Failure> {
        match self.ns.write(ino, off, data) {
            Ok(n) if n as usize == data.len() => Ok(()),
            Ok(_) => Err(Failure::DataFull),
            Err(e) if e.code() == libc::ENOSPC => Err(Failure::DataFull),
            Err(e) => Err(Failure::Ns(e)),
        }
    }

    /// A hard link member: a new name for the file an earlier member
    /// created.
    fn hard_link(&mut self, path: &[u8], m: &Member) -> Result<(), Failure> {
        let target = m
            .link
            .as_deref()
            .ok_or_else(|| Failure::Msg("hard link without a target".into()))?;
        let tpath = normalize(target)?;
        let mut ino = ROOT_INO;
        for c in Trie::<u32>::components(OsStr::from_bytes(&tpath)).map_err(Errno::from)? {
            ino = self.ns.child_ino(ino, c).map_err(|_| {
                Failure::Msg(format!(
                    "hard link to '{}', which no earlier member created",
                    lossy(target)
                ))
            })?;
        }
        if self.kind(ino)? == Kind::Directory {
            return Err(Failure::Msg(format!(
                "hard link to the directory '{}'",
                lossy(target)
            )));
        }
        if path.is_empty() {
            return Err(Failure::Msg("a hard link cannot be the root".into()));
        }
        let (parent, name) = self.parent_of(path)?;
        if let Ok(old) = self.ns.child_ino(parent, name) {
            if old == ino {
                return Ok(());
            }
            if self.kind(old)? == Kind::Directory {
                return Err(Failure::Msg(
                    "a directory of that name exists (from an earlier member)".into(),
                ));
            }
            self.ns.unlink(parent, name)?;
        }
        let e = self.ns.link(ino, parent, name)?;
        self.ns.forget(e.attr.ino.0, 1);
        Ok(())
    }

    fn kind(&self, ino: u64) -> Result<Kind, Failure> {
        let a = self.ns.attr(ino)?;
        Ok(match a.kind {
            fuser::FileType::Directory => Kind::Directory,
            fuser::FileType::RegularFile => Kind::RegularFile,
            fuser::FileType::Symlink => Kind::Symlink,
            fuser::FileType::NamedPipe => Kind::Fifo,
            fuser::FileType::CharDevice => Kind::CharDevice,
            fuser::FileType::BlockDevice => Kind::BlockDevice,
            fuser::FileType::Socket => Kind::Socket,
        })
    }

    /// Extended attributes, then owner, mode and mtime, as GNU tar sets
    /// them. An attribute the namespace does not take (another namespace
    /// than `user.`, `trusted.`, `security.` and the ACLs; a user
    /// attribute on a symlink) is left out with a warning, as GNU tar
    /// warns; running out of space is an error.
    fn set_attrs(&mut self, ino: u64, kind: Kind, a: &Attrs) -> Result<(), Failure> {
        for (k, v) in &a.xattrs {
            if let Err(e) = self.ns.setxattr(ino, OsStr::from_bytes(k), v, 0) {
                if e.code() == libc::ENOSPC {
                    return Err(Failure::Ns(e));
                }
                log::warn!(
                    "tar: extended attribute {} not set: {e}",
                    String::from_utf8_lossy(k)
                );
            }
        }
        let (sec, nsec) = a.mtime;
        let mtime = if sec >= 0 {
            SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::new(sec as u64, nsec))
        } else {
            SystemTime::UNIX_EPOCH
                .checked_sub(std::time::Duration::from_secs(sec.unsigned_abs()))
                .and_then(|t| t.checked_add(std::time::Duration::from_nanos(u64::from(nsec))))
        }
        .ok_or_else(|| Failure::Msg(format!("mtime {sec}.{nsec:09} is out of range")))?;
        self.ns.setattr(
            ino,
            SetAttr {
                mode: (kind != Kind::Symlink).then_some(a.mode),
                uid: Some(a.uid),
                gid: Some(a.gid),
                mtime: Some(TimeOrNow::SpecificTime(mtime)),
                ..SetAttr::default()
            },
        )?;
        Ok(())
    }

    /// Sets the waiting attributes of the directories that `path` is not
    /// inside (GNU tar's `apply_nonancestor_delayed_set_stat`).
    fn apply_left(&mut self, path: &[u8]) -> Result<(), Failure> {
        while let Some(p) = self.pending.last() {
            let inside = p.path.is_empty()
                || (path.len() > p.path.len()
                    && path.starts_with(&p.path)
                    && path[p.path.len()] == b'/');
            if inside {
                break;
            }
            self.apply_last()?;
        }
        Ok(())
    }

    fn apply_last(&mut self) -> Result<(), Failure> {
        if let Some(p) = self.pending.pop() {
            self.set_attrs(p.ino, Kind::Directory, &p.attrs)
                .map_err(|f| Failure::Dir(p.path, Box::new(f)))?;
        }
        Ok(())
    }

    /// The end of the archive: every waiting directory gets its
    /// attributes, the deepest first.
    fn finish(&mut self) -> Result<(), Failure> {
        while !self.pending.is_empty() {
            self.apply_last()?;
        }
        Ok(())
    }

    /// The parent directory of `path` (created as needed) and its last
    /// component, starting from the deepest directory the previous
    /// member's parent shares with it.
    fn parent_of<'p>(&mut self, path: &'p [u8]) -> Result<(u64, &'p OsStr), Failure> {
        let (dir, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&[][..], path),
        };
        Trie::<u32>::check_name(name).map_err(Errno::from)?;
        let same = common_prefix(dir, &self.prev);
        let mut k = self.ends.partition_point(|&e| e < same);
        if self.ends.get(k) == Some(&same) && dir.get(same).is_none_or(|&b| b == b'/') {
            k += 1;
        }
        self.ends.truncate(k);
        self.inos.truncate(k);
        self.prev.clear();
        self.prev.extend_from_slice(dir);
        let start = self.ends.last().map_or(0, |&e| e + 1);
        let mut cur = self.inos.last().copied().unwrap_or(ROOT_INO);
        let mut at = start;
        for comp in dir[start.min(dir.len())..].split(|&b| b == b'/') {
            if comp.is_empty() {
                continue;
            }
            cur = self.dir_component(cur, comp)?;
            at += comp.len();
            self.ends.push(at);
            self.inos.push(cur);
            at += 1;
        }
        Ok((cur, OsStr::from_bytes(name)))
    }

    /// The directory `name` in `parent`, created (0755, owned like the
    /// root) if missing.
    fn dir_component(&mut self, parent: u64, name: &[u8]) -> Result<u64, Failure> {
        let name = OsStr::from_bytes(name);
        match self.ns.child_ino(parent, name) {
            Ok(ino) => {
                if self.kind(ino)? != Kind::Directory {
                    return Err(Failure::Ns(Errno::new(libc::ENOTDIR)));
                }
                Ok(ino)
            }
            Err(e) if e.code() == libc::ENOENT => {
                let spec = NewNode {
                    kind: Kind::Directory,
                    perm: 0o755,
                    uid: self.owner.0,
                    gid: self.owner.1,
                    rdev: 0,
                    target: None,
                };
                let ino = self.ns.create_node(parent, name, spec)?.attr.ino.0;
                self.ns.forget(ino, 1);
                Ok(ino)
            }
            Err(e) => Err(Failure::Ns(e)),
        }
    }
}

/// A member path as the tree's: components joined by single `/`, without
/// leading `/`, empty and `.` components (GNU tar strips them); `..` and
/// NUL are refused, as are components over 255 bytes.
fn normalize(raw: &[u8]) -> Result<Vec<u8>, Failure> {
    if raw.contains(&0) {
        return Err(Failure::Msg("NUL in the path".into()));
    }
    let comps =
        Trie::<u32>::components(OsStr::from_bytes(raw)).map_err(|e| {
            match Errno::from(e).code() {
                libc::EINVAL => {
                    Failure::Msg("a '..' component: refused, as GNU tar refuses it".into())
                }
                _ => Failure::Ns(Errno::from(e)),
            }
        })?;
    let mut out = Vec::with_capacity(raw.len());
    for c in comps {
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(c.as_bytes());
    }
    Ok(out)
}

/// Length of the common prefix of `a` and `b`.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A reader that reads ahead on a thread of its own: the archive's
/// `read(2)` copies (a third of a load's time) overlap with the work of
/// adding the members. At most [`Prefetch::BLOCKS`] blocks of
/// [`Prefetch::BLOCK`] bytes are in flight; blocks are reused.
pub struct Prefetch {
    full: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    empty: std::sync::mpsc::Sender<Vec<u8>>,
    cur: Vec<u8>,
    at: usize,
    done: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Prefetch {
    /// Size of a block read ahead.
    pub const BLOCK: usize = 1 << 20;
    /// Blocks read ahead at most.
    pub const BLOCKS: usize = 4;

    /// Reads `r` ahead on a new thread.
    pub fn new(mut r: impl Read + Send + 'static) -> io::Result<Prefetch> {
        let (full_tx, full) = std::sync::mpsc::sync_channel(Self::BLOCKS);
        let (empty, empty_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let thread = std::thread::Builder::new()
            .name("tar-read".into())
            .spawn(move || {
                loop {
                    let mut b = empty_rx.try_recv().unwrap_or_default();
                    b.resize(Self::BLOCK, 0);
                    let mut n = 0;
                    let res = loop {
                        if n == b.len() {
                            break Ok(());
                        }
                        match r.read(&mut b[n..]) {
                            Ok(0) => break Ok(()),
                            Ok(k) => n += k,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => break Err(e),
                        }
                    };
                    b.truncate(n);
                    let end = n == 0;
                    let msg = res.map(|()| b);
                    let failed = msg.is_err();
                    // A receiver gone (the load failed) ends the thread.
                    if full_tx.send(msg).is_err() || end || failed {
                        return;
                    }
                }
            })?;
        Ok(Prefetch {
            full,
            empty,
            cur: Vec::new(),
            at: 0,
            done: false,
            thread: Some(thread),
        })
    }
}

impl Read for Prefetch {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.cur.len() {
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            let next = match self.full.recv() {
                Ok(r) => r?,
                Err(_) => Vec::new(),
            };
            let old = std::mem::replace(&mut self.cur, next);
            let _ = self.empty.send(old);
            self.at = 0;
            if self.cur.is_empty() {
                self.done = true;
            }
        }
        let n = buf.len().min(self.cur.len() - self.at);
        buf[..n].copy_from_slice(&self.cur[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        // The thread has ended, or ends at its next block (the channel is
        // closed once this is dropped); it is waited for only when it has
        // ended: one blocked on a terminal must not hold the caller.
        if self.done
            && let Some(t) = self.thread.take()
        {
            let _ = t.join();
        }
    }
}
