//! Writing a namespace as a tar archive in pages of bounded size, each
//! page resuming at a [`Cursor`]: the daemon serves a checkpoint's export
//! through requests of a few KiB, without state between them but the
//! [`ExportPlan`] it keeps and the cursor the client sends back.
//!
//! The archive is POSIX (pax) format, as `tar --format=posix` writes it,
//! and GNU tar extracts it to the namespace's tree:
//! - members in pre-order, names in byte order within a directory; the
//!   root first as `./` (so that `tar -xpf` gives the directory it
//!   extracts into the root's mode, owner and mtime), directories with a
//!   trailing `/`;
//! - the first name of a file with several names carries its data, the
//!   later ones are hard-link members naming it;
//! - a ustar header per member, preceded by a pax header when the member
//!   needs one: a path or link target over 100 bytes (`path`,
//!   `linkpath`, raw bytes when they are not UTF-8), an mtime
//!   with nanoseconds or out of the octal field's range (`mtime`), ids or
//!   a size too large for their fields (`uid`, `gid`, `size`), extended
//!   attributes (`SCHILY.xattr.NAME`);
//! - sparse files as plain files (holes read as zeros); sockets are left
//!   out, as GNU tar leaves them out.
//!
//! A page regenerates the headers of the member it resumes in (they are a
//! function of the namespace, which must not change between pages: the
//! daemon exports immutable checkpoints).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use fuser::FileType;

use super::{XATTR_PREFIX, decode_dev, encode_xattr_key, format_pax_time};
use crate::error::{Errno, Result, err};
use crate::namespace::inode::ROOT_INO;
use crate::namespace::{Namespace, XattrReply};
use crate::trie::NodeId;

/// Tar block size.
const BLOCK: u64 = 512;
/// The end of an archive: two zero blocks.
const TRAILER: u64 = 2 * BLOCK;
/// Largest value of an 11-digit octal field (size, mtime).
const OCTAL_11: u64 = 0o77777777777;
/// Largest value of a 7-digit octal field (uid, gid).
const OCTAL_7: u64 = 0o7777777;
/// Pages [`write_all`] asks for.
const WRITE_PAGE: usize = 64 << 10;

/// Where a page starts: a member's index (the number of members for the
/// end-of-archive blocks) and a byte offset in that member's headers,
/// data and padding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// The member, in [`ExportPlan`] order.
    pub entry: u64,
    /// Bytes of it already written.
    pub offset: u64,
}

impl Cursor {
    /// Size of [`Cursor::to_bytes`].
    pub const SIZE: usize = 16;
    /// The start of the archive.
    pub const START: Cursor = Cursor {
        entry: 0,
        offset: 0,
    };

    /// The cursor as 16 bytes: entry and offset, little-endian.
    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[..8].copy_from_slice(&self.entry.to_le_bytes());
        b[8..].copy_from_slice(&self.offset.to_le_bytes());
        b
    }

    /// The cursor [`Cursor::to_bytes`] made; `EINVAL` for any other
    /// length. (Whether it fits an archive is for [`ExportPlan::page`].)
    pub fn from_bytes(b: &[u8]) -> Result<Cursor> {
        let b: &[u8; Self::SIZE] = b.try_into().map_err(|_| Errno::new(libc::EINVAL))?;
        let (e, o) = b.split_at(8);
        let word = |s: &[u8]| {
            let mut w = [0u8; 8];
            w.copy_from_slice(s);
            u64::from_le_bytes(w)
        };
        Ok(Cursor {
            entry: word(e),
            offset: word(o),
        })
    }
}

/// The members of a namespace's archive, fixed once: their trie nodes in
/// archive order, and which are later names of a file named before.
///
/// Memory: 4 bytes per member, plus a map entry (about 16 bytes with the
/// table's overhead) per hard-link member; building it also holds, for a
/// while, one map entry per file with several names and the names of the
/// directories being walked.
pub struct ExportPlan {
    nodes: Vec<u32>,
    /// Hard-link member → the member that carries the file.
    links: HashMap<u32, u32>,
}

/// One member's headers and how much data follows them.
struct Head {
    bytes: Vec<u8>,
    data: u64,
    ino: u64,
}

impl ExportPlan {
    /// The plan of `ns`'s archive: every name in pre-order.
    pub fn new(ns: &Namespace) -> ExportPlan {
        let trie = ns.trie();
        let mut nodes = Vec::with_capacity(trie.len());
        let mut links = HashMap::new();
        let mut first: HashMap<u32, u32> = HashMap::new();
        let mut stack: Vec<NodeId> = vec![trie.root()];
        while let Some(node) = stack.pop() {
            let Some(&ino) = trie.value(node) else {
                continue;
            };
            let Ok(attr) = ns.attr(u64::from(ino)) else {
                continue;
            };
            if attr.kind == FileType::Socket {
                continue;
            }
            let idx = nodes.len() as u32;
            nodes.push(node.index());
            if attr.kind == FileType::Directory {
                let kids: Vec<NodeId> = trie.children(node).map(|(_, n)| n).collect();
                stack.extend(kids.into_iter().rev());
            } else if attr.nlink > 1 {
                match first.get(&ino) {
                    Some(&f) => {
                        links.insert(idx, f);
                    }
                    None => {
                        first.insert(ino, idx);
                    }
                }
            }
        }
        ExportPlan { nodes, links }
    }

    /// Number of members (the root included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there is no member at all (never: the root is one).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Appends up to `limit` bytes (at least 1) of the archive from
    /// `cursor` to `out`; returns where the next page starts, or `None`
    /// once the end-of-archive blocks are written. A cursor this plan
    /// cannot have made is `EINVAL`; a member whose file is gone (the
    /// namespace changed) is `ESTALE`.
    pub fn page(
        &self,
        ns: &Namespace,
        cursor: Cursor,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<Option<Cursor>> {
        let n = self.nodes.len() as u64;
        let Cursor {
            entry: mut idx,
            offset: mut off,
        } = cursor;
        if limit == 0 || idx > n || (idx == n && off >= TRAILER) {
            return err(libc::EINVAL);
        }
        let mut room = limit as u64;
        while room > 0 {
            if idx == n {
                let take = room.min(TRAILER - off);
                out.resize(out.len() + take as usize, 0);
                off += take;
                if off == TRAILER {
                    return Ok(None);
                }
                break;
            }
            let head = self.head(ns, idx as usize)?;
            let hlen = head.bytes.len() as u64;
            let total = hlen + head.data.div_ceil(BLOCK) * BLOCK;
            if off >= total {
                return err(libc::EINVAL);
            }
            if off < hlen {
                let take = room.min(hlen - off);
                out.extend_from_slice(&head.bytes[off as usize..(off + take) as usize]);
                off += take;
                room -= take;
            }
            while room > 0 && off < hlen + head.data {
                let at = off - hlen;
                let want = room.min(head.data - at).min(1 << 20) as u32;
                let got = ns.read(head.ino, at, want)?;
                let got_len = got.len() as u64;
                out.extend_from_slice(&got);
                if got_len < u64::from(want) {
                    // Shorter than its size said: zeros keep the stream
                    // what the header promised.
                    out.resize(out.len() + (u64::from(want) - got_len) as usize, 0);
                }
                off += u64::from(want);
                room -= u64::from(want);
            }
            if room > 0 && off < total {
                let take = room.min(total - off);
                out.resize(out.len() + take as usize, 0);
                off += take;
                room -= take;
            }
            if off == total {
                idx += 1;
                off = 0;
            }
        }
        Ok(Some(Cursor {
            entry: idx,
            offset: off,
        }))
    }

    /// Member `idx`'s path in the archive: `./` for the root, else
    /// relative, with a trailing `/` for directories.
    fn path(&self, ns: &Namespace, idx: usize, dir: bool) -> Result<Vec<u8>> {
        if idx == 0 {
            return Ok(b"./".to_vec());
        }
        let node = self.node(idx)?;
        let p = ns.trie().path_of(node);
        let mut p = p
            .as_bytes()
            .strip_prefix(b"/")
            .unwrap_or(p.as_bytes())
            .to_vec();
        if dir {
            p.push(b'/');
        }
        Ok(p)
    }

    fn node(&self, idx: usize) -> Result<NodeId> {
        let i = *self.nodes.get(idx).ok_or(Errno::new(libc::EINVAL))?;
        Ok(NodeId::from_index(i))
    }

    /// Member `idx`'s headers (pax and ustar) and data length.
    fn head(&self, ns: &Namespace, idx: usize) -> Result<Head> {
        let node = self.node(idx)?;
        let ino = match idx {
            0 => ROOT_INO,
            _ => u64::from(*ns.trie().value(node).ok_or(Errno::new(libc::ESTALE))?),
        };
        let attr = ns.attr(ino).map_err(|_| Errno::new(libc::ESTALE))?;
        let dir = attr.kind == FileType::Directory;
        let path = self.path(ns, idx, dir)?;
        let link_to = self.links.get(&(idx as u32));
        let (etype, link, data) = match (link_to, attr.kind) {
            (Some(&first), _) => (
                tar::EntryType::Link,
                Some(self.path(ns, first as usize, false)?),
                0,
            ),
            (None, FileType::Directory) => (tar::EntryType::Directory, None, 0),
            (None, FileType::RegularFile) => (tar::EntryType::Regular, None, attr.size),
            (None, FileType::Symlink) => {
                (tar::EntryType::Symlink, Some(ns.readlink(ino)?.to_vec()), 0)
            }
            (None, FileType::NamedPipe) => (tar::EntryType::Fifo, None, 0),
            (None, FileType::CharDevice) => (tar::EntryType::Char, None, 0),
            (None, FileType::BlockDevice) => (tar::EntryType::Block, None, 0),
            (None, FileType::Socket) => return err(libc::ESTALE),
        };
        let (sec, nsec) = match attr.mtime.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => (
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                d.subsec_nanos(),
            ),
            Err(e) => {
                let d = e.duration();
                match d.subsec_nanos() {
                    0 => (-(d.as_secs() as i64), 0),
                    n => (-(d.as_secs() as i64) - 1, 1_000_000_000 - n),
                }
            }
        };

        let mut pax: Vec<u8> = Vec::new();
        // Names that are not UTF-8 go as raw bytes, as GNU tar writes and
        // reads them (it warns about `hdrcharset`, which it does not know).
        let long_path = path.len() > 100;
        let long_link = link.as_deref().is_some_and(|l| l.len() > 100);
        if long_path {
            record(&mut pax, b"path", &path);
        }
        if let (true, Some(l)) = (long_link, link.as_deref()) {
            record(&mut pax, b"linkpath", l);
        }
        let octal_time = (0..=OCTAL_11 as i64).contains(&sec);
        if nsec != 0 || !octal_time {
            record(&mut pax, b"mtime", format_pax_time(sec, nsec).as_bytes());
        }
        for (key, id) in [(&b"uid"[..], attr.uid), (b"gid", attr.gid)] {
            if u64::from(id) > OCTAL_7 {
                record(&mut pax, key, id.to_string().as_bytes());
            }
        }
        if data > OCTAL_11 {
            record(&mut pax, b"size", data.to_string().as_bytes());
        }
        if let XattrReply::Data(names) = ns.listxattr(ino, u32::MAX)? {
            for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
                if let Ok(XattrReply::Data(v)) = ns.getxattr(ino, OsStr::from_bytes(name), u32::MAX)
                {
                    let mut key = XATTR_PREFIX.as_bytes().to_vec();
                    key.extend_from_slice(&encode_xattr_key(name));
                    record(&mut pax, &key, &v);
                }
            }
        }

        let mut h = tar::Header::new_ustar();
        h.set_entry_type(etype);
        h.set_mode(u32::from(attr.perm) & 0o7777);
        h.set_uid(if u64::from(attr.uid) > OCTAL_7 {
            0
        } else {
            u64::from(attr.uid)
        });
        h.set_gid(if u64::from(attr.gid) > OCTAL_7 {
            0
        } else {
            u64::from(attr.gid)
        });
        h.set_size(if data > OCTAL_11 { 0 } else { data });
        h.set_mtime(if octal_time { sec as u64 } else { 0 });
        if matches!(etype, tar::EntryType::Char | tar::EntryType::Block) {
            let (major, minor) = decode_dev(attr.rdev);
            h.set_device_major(major)
                .map_err(|_| Errno::new(libc::EIO))?;
            h.set_device_minor(minor)
                .map_err(|_| Errno::new(libc::EIO))?;
        }
        if let Some(u) = h.as_ustar_mut() {
            put(&mut u.name, &path);
            if let Some(l) = &link {
                put(&mut u.linkname, l);
            }
        }
        h.set_cksum();

        let mut bytes = Vec::with_capacity(512 + pax.len().div_ceil(512) * 512 + 512);
        if !pax.is_empty() {
            let mut x = tar::Header::new_ustar();
            x.set_entry_type(tar::EntryType::XHeader);
            x.set_mode(0o644);
            x.set_size(pax.len() as u64);
            x.set_mtime(if octal_time { sec as u64 } else { 0 });
            if let Some(u) = x.as_ustar_mut() {
                // A name of its own, so that a tar that ignores pax headers
                // does not overwrite the member with them.
                let base = path
                    .rsplit(|&b| b == b'/')
                    .find(|c| !c.is_empty())
                    .unwrap_or(b"");
                let mut name = b"PaxHeaders/".to_vec();
                name.extend_from_slice(&base[..base.len().min(80)]);
                put(&mut u.name, &name);
            }
            x.set_cksum();
            bytes.extend_from_slice(x.as_bytes());
            bytes.extend_from_slice(&pax);
            bytes.resize(bytes.len().div_ceil(512) * 512, 0);
        }
        bytes.extend_from_slice(h.as_bytes());
        Ok(Head { bytes, data, ino })
    }
}

/// Copies `src` into a header field, cut to its size (a longer value is
/// in a pax record).
fn put(field: &mut [u8], src: &[u8]) {
    let n = src.len().min(field.len());
    field[..n].copy_from_slice(&src[..n]);
}

/// Appends the pax record `LEN key=value\n`, where LEN counts the whole
/// record, its own digits included.
fn record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Writes the whole archive of `ns` to `w`, page by page through
/// [`ExportPlan::page`] (as the daemon serves it); returns its length.
pub fn write_all(ns: &Namespace, mut w: impl Write) -> std::io::Result<u64> {
    let plan = ExportPlan::new(ns);
    let mut cursor = Cursor::START;
    let mut buf = Vec::with_capacity(WRITE_PAGE);
    let mut total = 0u64;
    loop {
        buf.clear();
        let next = plan
            .page(ns, cursor, WRITE_PAGE, &mut buf)
            .map_err(|e| std::io::Error::from_raw_os_error(e.code()))?;
        w.write_all(&buf)?;
        total += buf.len() as u64;
        match next {
            Some(c) => cursor = c,
            None => return Ok(total),
        }
    }
}
