//! Snapshot images: the whole tree (names, modes, owners, times, xattrs,
//! symlinks, hard links, file data with holes kept as holes) written to and
//! read from a file as a stream of checksummed records.
//!
//! Format, version 3 (integers little-endian):
//!
//! ```text
//! header   "TRIEFSIM" (8 bytes), version u32 = 3, reserved u32 = 0
//! record   tag u8, length u32, payload[length], crc32 u32 over tag+length+payload
//! INODE  1 ino u64, kind u8, perm u16, uid u32, gid u32, rdev u32,
//!          atime/mtime/ctime (sec i64, nsec u32) x3, size u64, flags u32,
//!          xattr count u32, per xattr (name len u16, name, value len u32, value),
//!          symlink target (rest of the payload)
//! DATA   2 ino u64, offset u64, bytes (rest; at most 1 MiB, stored pages only)
//! ENTRY  3 parent ino u64, child ino u64, name (rest)
//! PAGE   4 ino u64, offset u64, shared pages (rest, cut at the size), each the next id
//! REF    5 ino u64, offset u64, first page id u64, count u32: pages written before
//! CHECKPOINT 6 time (sec i64, nsec u32), name (rest): a checkpoint's tree follows
//! CHECKPOINT END 7 inodes u64, entries u64, data bytes u64 (of that tree)
//! END  255 inodes u64, entries u64, data bytes u64 (of the live tree), checkpoints u64
//! ```
//!
//! The live tree comes first, then each checkpoint's. A tree is its inodes
//! (each file followed by its data), then its entries, parents before
//! children. A page that more than one file or tree holds is written once
//! (PAGE) and referred to by its id after that (REF), so it is shared again
//! after a load. Inode numbers name one file in every tree. Version 2 has no
//! records 4 to 7 and no checkpoint count in END; version 1 is version 2
//! without the `flags` field (chattr flags, `FS_*_FL` bits). Both are still
//! read. Writing and reading stream: neither needs a
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
//! let leaves: Vec<String> = back.trie().leaves().iter().map(|p| p.to_string_lossy().into_owned()).collect();
//! assert_eq!(leaves, ["/etc", "/tmp/whatever", "/var/www/site"]);
//! ```

use std::fmt;
use std::io;

mod file;
mod read;
pub mod status;
mod write;

pub use file::{create_private, load_from_path, remove_stale_temps, save_to_path, temp_path};
pub use read::read_image;
pub use write::write_image;

use crate::namespace::inode::Kind;

const MAGIC: &[u8; 8] = b"TRIEFSIM";
/// The image format version this build writes.
pub const VERSION: u32 = 3;
/// The oldest version this build still reads: 1 has no inode flags.
pub const OLDEST_VERSION: u32 = 1;
const TAG_INODE: u8 = 1;
const TAG_DATA: u8 = 2;
const TAG_ENTRY: u8 = 3;
/// Version 3: pages shared between files or trees, each getting the next
/// page id.
const TAG_PAGE: u8 = 4;
/// Version 3: pages of a file given by the ids of shared pages before.
const TAG_REF: u8 = 5;
/// Version 3: a checkpoint's tree follows.
const TAG_CHECKPOINT: u8 = 6;
/// Version 3: the end of a checkpoint's tree, with its counts.
const TAG_CHECKPOINT_END: u8 = 7;
const TAG_END: u8 = 255;
/// Most pages in one DATA, PAGE or REF record (1 MiB of data; for REF a
/// bound on the work one small record asks for).
const RUN_PAGES: usize = 256;
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
                    "unsupported image version {v} (this triefs reads {OLDEST_VERSION} to {VERSION})"
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
    /// Checkpoints (version 3; 0 before).
    pub checkpoints: u64,
    /// The format version of the image (not part of the END record).
    pub version: u32,
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

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    use super::*;
    use crate::namespace::flags::{FS_APPEND_FL, FS_IMMUTABLE_FL, FS_NOATIME_FL, FS_NODUMP_FL};
    use crate::namespace::inode::ROOT_INO;
    use crate::namespace::{Limits, Namespace, NewNode};

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
        // chattr flags last: an immutable directory takes no new names.
        ns.set_flags(f, FS_APPEND_FL | FS_NODUMP_FL).unwrap();
        ns.set_flags(d, FS_IMMUTABLE_FL | FS_NOATIME_FL).unwrap();
        ns
    }

    /// The same image in format version 1: no flags field in INODE
    /// records (the 4 bytes after the size), checksums redone.
    fn as_version_1(img: &[u8]) -> Vec<u8> {
        let mut out = img[..16].to_vec();
        out[8..12].copy_from_slice(&1u32.to_le_bytes());
        let mut at = 16;
        while at < img.len() {
            let tag = img[at];
            let len = u32::from_le_bytes(img[at + 1..at + 5].try_into().unwrap()) as usize;
            let mut payload = img[at + 5..at + 5 + len].to_vec();
            if tag == TAG_INODE {
                // ino, kind, perm, uid, gid, rdev, three times, size.
                let flags_at = 8 + 1 + 2 + 4 * 3 + 12 * 3 + 8;
                payload.drain(flags_at..flags_at + 4);
            }
            if tag == TAG_END {
                // No checkpoint count before version 3.
                payload.truncate(24);
            }
            let mut rec = vec![tag];
            rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            rec.extend_from_slice(&payload);
            let crc = crc32fast::hash(&rec);
            out.extend_from_slice(&rec);
            out.extend_from_slice(&crc.to_le_bytes());
            at += 5 + len + 4;
        }
        out
    }

    fn listing(ns: &Namespace) -> Vec<String> {
        let flags = flag_listing(ns);
        let mut all = listing_without_flags(ns);
        all.extend(flags);
        all
    }

    fn flag_listing(ns: &Namespace) -> Vec<String> {
        let mut out: Vec<String> = ns
            .inodes()
            .iter()
            .map(|(ino, i)| format!("{ino} flags {:#x}", i.flags.to_fs()))
            .collect();
        out.sort();
        out
    }

    fn listing_without_flags(ns: &Namespace) -> Vec<String> {
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
    fn flags_survive_and_version_1_images_still_load() {
        let ns = sample();
        let mut img = Vec::new();
        write_image(&ns, &mut img).unwrap();
        let (back, sum) = read_image(&img[..], limits()).unwrap();
        assert_eq!(sum.version, 3);
        let with_flags: Vec<_> = flag_listing(&back)
            .into_iter()
            .filter(|l| !l.ends_with(" 0x0"))
            .collect();
        assert_eq!(with_flags.len(), 2, "{with_flags:?}");
        assert_eq!(flag_listing(&ns), flag_listing(&back));

        let old = as_version_1(&img);
        // 4 bytes of flags per inode, 8 of checkpoint count in END.
        assert_eq!(old.len(), img.len() - 4 * sum.inodes as usize - 8);
        let (back1, sum1) = read_image(&old[..], limits()).unwrap();
        assert_eq!(sum1.version, 1);
        assert_eq!((sum1.inodes, sum1.entries), (sum.inodes, sum.entries));
        assert_eq!(listing_without_flags(&ns), listing_without_flags(&back1));
        assert!(back1.inodes().iter().all(|(_, i)| i.flags.to_fs() == 0));
        back1.check().unwrap();
    }

    #[test]
    fn unknown_flags_are_refused() {
        let mut ns = Namespace::new(0, 0, 0o755, limits());
        ns.set_flags(ROOT_INO, FS_NODUMP_FL).unwrap();
        let mut img = Vec::new();
        write_image(&ns, &mut img).unwrap();
        // The root's INODE record is the first: set FS_COMPR_FL (0x4) in
        // its flags and redo the checksum.
        let flags_at = 16 + 5 + 8 + 1 + 2 + 4 * 3 + 12 * 3 + 8;
        assert_eq!(img[flags_at], FS_NODUMP_FL as u8);
        img[flags_at] |= 0x4;
        let len = u32::from_le_bytes(img[17..21].try_into().unwrap()) as usize;
        let crc = crc32fast::hash(&img[16..21 + len]);
        img[21 + len..25 + len].copy_from_slice(&crc.to_le_bytes());
        match read_image(&img[..], limits()) {
            Err(ImageError::Corrupt(why)) => assert!(why.contains("flags"), "{why}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("unknown flags accepted"),
        }
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
        for v in [0, 4] {
            let mut other = img.clone();
            other[8] = v;
            assert!(matches!(
                read_image(&other[..], limits()),
                Err(ImageError::Version(n)) if n == u32::from(v)
            ));
        }
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

    /// A tree of 1 MiB files with three checkpoints: pages shared between
    /// the live tree, the checkpoints, a `copy_file_range` copy and two
    /// offsets of one file; a file only a checkpoint holds; xattrs and a
    /// hard link in a checkpoint.
    fn with_checkpoints() -> Namespace {
        let mut ns = sample();
        let os = OsStr::new;
        let big = ns
            .create_node(ROOT_INO, os("big"), node(Kind::RegularFile, 0o644, None))
            .unwrap()
            .attr
            .ino
            .0;
        let data: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 + i / 4096) as u8).collect();
        ns.write(big, 0, &data).unwrap();
        // A tail that ends inside a page.
        ns.write(big, 1 << 20, b"tail").unwrap();
        let copy = ns
            .create_node(ROOT_INO, os("copy"), node(Kind::RegularFile, 0o644, None))
            .unwrap()
            .attr
            .ino
            .0;
        let mut at = 0;
        while at < 1 << 20 {
            at += u64::from(ns.copy_range(big, at, copy, at, (1 << 20) - at).unwrap());
        }
        // One page at two offsets of the same file.
        ns.copy_range(big, 0, copy, 2 << 20, 4096).unwrap();
        let gone = ns
            .create_node(ROOT_INO, os("gone"), node(Kind::RegularFile, 0o600, None))
            .unwrap()
            .attr
            .ino
            .0;
        ns.write(gone, 0, b"only in a checkpoint").unwrap();
        ns.link(gone, ROOT_INO, os("gone-link")).unwrap();
        ns.setxattr(gone, os("user.x"), b"y", 0).unwrap();
        ns.save_checkpoint("one").unwrap();
        ns.unlink(ROOT_INO, os("gone")).unwrap();
        ns.unlink(ROOT_INO, os("gone-link")).unwrap();
        // The kernel lets go of it: only the checkpoint holds it now (an
        // image keeps no unlinked inodes).
        ns.forget(gone, u64::MAX);
        ns.write(big, 8192, b"changed after one").unwrap();
        ns.save_checkpoint("two").unwrap();
        ns.write(copy, 0, b"changed after two").unwrap();
        ns.save_checkpoint("three@x").unwrap();
        ns.write(big, 4096 * 100, b"live only").unwrap();
        ns.check().unwrap();
        ns
    }

    fn infos(ns: &Namespace) -> Vec<crate::namespace::checkpoint::CheckpointInfo> {
        ns.checkpoint_infos()
            .into_iter()
            .map(|mut i| {
                // Metadata bytes depend on how the tables grew.
                i.meta_bytes = 0;
                i
            })
            .collect()
    }

    #[test]
    fn checkpoints_round_trip_with_pages_shared() {
        let ns = with_checkpoints();
        let mut img = Vec::new();
        let sum = write_image(&ns, &mut img).unwrap();
        assert_eq!(sum.checkpoints, 3);
        // 258 distinct pages among 4 trees, 2 files each: about 1 MiB,
        // not 8.
        let distinct = ns.pages_used();
        assert!(distinct < 270, "{distinct}");
        assert!(
            (img.len() as u64) < distinct * 4096 + 64 * 1024,
            "image of {distinct} pages takes {} bytes",
            img.len()
        );
        let (mut back, sum2) = read_image(&img[..], limits()).unwrap();
        assert_eq!(sum, sum2);
        back.check().unwrap();
        assert_eq!(back.pages_used(), distinct);
        assert_eq!(infos(&back), infos(&ns));
        assert_eq!(listing(&back), listing(&ns));
        // An image of the loaded namespace is the same size.
        let mut img2 = Vec::new();
        assert_eq!(write_image(&back, &mut img2).unwrap(), sum);
        assert_eq!(img.len(), img2.len());
        // Each checkpoint restores to the tree it held.
        let mut ns = ns;
        for name in ["one", "two", "three@x"] {
            ns.restore_checkpoint(name).unwrap();
            back.restore_checkpoint(name).unwrap();
            assert_eq!(listing(&back), listing(&ns), "{name}");
            back.check().unwrap();
            assert_eq!(back.pages_used(), ns.pages_used(), "{name}");
        }
        // One number, one file: "gone" (in checkpoint one only) has the
        // same number after a restore as in the checkpoint, and new files
        // never take the numbers checkpoints hold.
        back.restore_checkpoint("one").unwrap();
        let gone = back.child_ino(ROOT_INO, OsStr::new("gone")).unwrap();
        back.restore_checkpoint("three@x").unwrap();
        assert!(back.child_ino(ROOT_INO, OsStr::new("gone")).is_err());
        for k in 0..20 {
            let name = format!("new{k}");
            let e = back
                .create_node(
                    ROOT_INO,
                    OsStr::new(&name),
                    node(Kind::RegularFile, 0o600, None),
                )
                .unwrap();
            assert_ne!(e.attr.ino.0, gone);
            for c in back.checkpoints().iter() {
                assert!(
                    c.inodes().get(e.attr.ino.0).is_none(),
                    "{name} took a held number"
                );
            }
        }
        back.check().unwrap();
    }

    /// The image with each record's payload passed through `f`, checksums
    /// redone.
    fn rewrite(img: &[u8], mut f: impl FnMut(u8, &mut Vec<u8>)) -> Vec<u8> {
        let mut out = img[..16].to_vec();
        let mut at = 16;
        while at < img.len() {
            let tag = img[at];
            let len = u32::from_le_bytes(img[at + 1..at + 5].try_into().unwrap()) as usize;
            let mut payload = img[at + 5..at + 5 + len].to_vec();
            f(tag, &mut payload);
            let mut rec = vec![tag];
            rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            rec.extend_from_slice(&payload);
            let crc = crc32fast::hash(&rec);
            out.extend_from_slice(&rec);
            out.extend_from_slice(&crc.to_le_bytes());
            at += 5 + len + 4;
        }
        out
    }

    /// Where each record starts, with its tag.
    fn records(img: &[u8]) -> Vec<(usize, u8)> {
        let mut out = Vec::new();
        let mut at = 16;
        while at < img.len() {
            out.push((at, img[at]));
            let len = u32::from_le_bytes(img[at + 1..at + 5].try_into().unwrap()) as usize;
            at += 5 + len + 4;
        }
        out
    }

    #[test]
    fn version_2_images_still_load() {
        let ns = sample();
        let mut img = Vec::new();
        write_image(&ns, &mut img).unwrap();
        let mut v2 = rewrite(&img, |tag, p| {
            if tag == TAG_END {
                p.truncate(24);
            }
        });
        v2[8..12].copy_from_slice(&2u32.to_le_bytes());
        let (back, sum) = read_image(&v2[..], limits()).unwrap();
        assert_eq!((sum.version, sum.checkpoints), (2, 0));
        assert_eq!(listing(&back), listing(&ns));
        // Version 3 records are refused in a version 2 image.
        let mut img = Vec::new();
        write_image(&with_checkpoints(), &mut img).unwrap();
        let mut old = img.clone();
        old[8..12].copy_from_slice(&2u32.to_le_bytes());
        match read_image(&old[..], limits()) {
            Err(ImageError::Corrupt(why)) => assert!(why.contains("record type"), "{why}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a version 3 record accepted in version 2"),
        }
    }

    #[test]
    fn damaged_checkpoints_are_refused() {
        let mut img = Vec::new();
        write_image(&with_checkpoints(), &mut img).unwrap();
        let recs = records(&img);
        let ck = recs.iter().find(|r| r.1 == TAG_CHECKPOINT).unwrap().0;
        let refs = recs.iter().filter(|r| r.1 == TAG_REF).count();
        assert!(refs > 3, "{refs} REF records");
        // Cut inside a checkpoint's tree.
        for cut in [ck + 3, ck + 40, (ck + img.len()) / 2, img.len() - 30] {
            assert!(
                matches!(
                    read_image(&img[..cut], limits()),
                    Err(ImageError::Truncated)
                ),
                "cut at {cut}"
            );
        }
        let refused = |bad: Vec<u8>, want: &str| match read_image(&bad[..], limits()) {
            Err(ImageError::Corrupt(why)) => assert!(why.contains(want), "{why}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted; wanted {want}"),
        };
        // A reference to a page id not seen yet.
        refused(
            rewrite(&img, |tag, p| {
                if tag == TAG_REF {
                    p[16..24].copy_from_slice(&999_999u64.to_le_bytes());
                }
            }),
            "unknown page",
        );
        // A reference at an offset that is not a page's.
        refused(
            rewrite(&img, |tag, p| {
                if tag == TAG_REF {
                    p[8] = 1;
                }
            }),
            "unaligned",
        );
        // A reference past the end of the file.
        refused(
            rewrite(&img, |tag, p| {
                if tag == TAG_REF {
                    p[8..16].copy_from_slice(&(1u64 << 40).to_le_bytes());
                }
            }),
            "past the end",
        );
        // A count cut short, none, or more than a record may name.
        refused(
            rewrite(&img, |tag, p| {
                if tag == TAG_REF {
                    p.pop();
                }
            }),
            "shorter than its fields",
        );
        for count in [0u32, 257, u32::MAX] {
            refused(
                rewrite(&img, |tag, p| {
                    if tag == TAG_REF {
                        p[24..28].copy_from_slice(&count.to_le_bytes());
                    }
                }),
                &format!("REF record of {count} pages"),
            );
        }
        // A run whose ids would wrap around.
        refused(
            rewrite(&img, |tag, p| {
                if tag == TAG_REF {
                    p[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
                    p[24..28].copy_from_slice(&2u32.to_le_bytes());
                }
            }),
            "unknown page",
        );
        // A page id in a checkpoint for an inode that tree lacks.
        refused(
            rewrite(&img, |tag, p| {
                if tag == TAG_REF {
                    p[..8].copy_from_slice(&123_456u64.to_le_bytes());
                }
            }),
            "unknown inode",
        );
        // Bad checkpoint names and two of one name.
        refused(
            rewrite(&img, |tag, p| {
                if tag == TAG_CHECKPOINT {
                    p[12] = b'/';
                }
            }),
            "checkpoint name",
        );
        refused(
            rewrite(&img, |tag, p| {
                if tag == TAG_CHECKPOINT {
                    p.truncate(12);
                    p.extend_from_slice(b"same");
                }
            }),
            "two checkpoints",
        );
        // Counts that do not match.
        refused(
            rewrite(&img, |tag, p| {
                if tag == TAG_CHECKPOINT_END {
                    p[0] ^= 1;
                }
            }),
            "end counts",
        );
        refused(
            rewrite(&img, |tag, p| {
                if tag == TAG_END {
                    p[24] = 9;
                }
            }),
            "END counts",
        );
        // A number that names a directory in one tree and a file in
        // another: the INODE record of "copy" (an image number the live
        // tree has) becomes a directory in the last checkpoint.
        let last = recs.iter().rev().find(|r| r.1 == TAG_CHECKPOINT).unwrap().0;
        let mut at = 16;
        let bad = rewrite(&img, |tag, p| {
            at += 9 + p.len();
            if tag == TAG_INODE && at > last && p[8] == 2 {
                p[8] = 1;
            }
        });
        refused(bad, "another file type");
        // Every single-byte flip of a small image with checkpoints.
        let mut ns = Namespace::new(0, 0, 0o755, limits());
        let f = ns
            .create_node(
                ROOT_INO,
                OsStr::new("f"),
                node(Kind::RegularFile, 0o644, None),
            )
            .unwrap()
            .attr
            .ino
            .0;
        ns.write(f, 0, &[5u8; 4096]).unwrap();
        ns.save_checkpoint("a").unwrap();
        ns.unlink(ROOT_INO, OsStr::new("f")).unwrap();
        ns.save_checkpoint("b").unwrap();
        let mut img = Vec::new();
        write_image(&ns, &mut img).unwrap();
        for at in 16..img.len() {
            let mut bad = img.clone();
            bad[at] ^= 0x5a;
            assert!(
                read_image(&bad[..], limits()).is_err(),
                "flip at {at} accepted"
            );
        }
    }

    #[test]
    fn shared_pages_count_against_the_size_limit_once() {
        let ns = with_checkpoints();
        let mut img = Vec::new();
        write_image(&ns, &mut img).unwrap();
        let fits = Limits {
            max_pages: ns.pages_used(),
            max_inodes: 1 << 20,
        };
        let (back, _) = read_image(&img[..], fits).unwrap();
        assert_eq!(back.pages_used(), ns.pages_used());
        let short = Limits {
            max_pages: ns.pages_used() - 1,
            ..fits
        };
        assert!(read_image(&img[..], short).is_err());
        // Each checkpoint's entries count against nr_inodes.
        let mut need = ns.inodes().live();
        for c in ns.checkpoints().iter() {
            need += c.inodes().live();
        }
        let few = Limits {
            max_inodes: need - 1,
            ..fits
        };
        assert!(read_image(&img[..], few).is_err());
    }

    #[test]
    fn small_files_a_checkpoint_shares_stay_small() {
        let mut ns = Namespace::new(0, 0, 0o755, limits());
        for i in 0..200 {
            let name = format!("f{i}");
            let f = ns
                .create_node(
                    ROOT_INO,
                    OsStr::new(&name),
                    node(Kind::RegularFile, 0o644, None),
                )
                .unwrap()
                .attr
                .ino
                .0;
            ns.write(f, 0, &[i as u8 + 1; 100]).unwrap();
        }
        let mut plain = Vec::new();
        let sum = write_image(&ns, &mut plain).unwrap();
        assert_eq!(sum.data_bytes, 200 * 100);
        ns.save_checkpoint("c").unwrap();
        let mut img = Vec::new();
        let sum = write_image(&ns, &mut img).unwrap();
        // Shared pages are cut at the size like others: 100 bytes each,
        // and the checkpoint refers to them.
        assert_eq!(sum.data_bytes, 200 * 100);
        let more = img.len() - plain.len();
        assert!(more < 200 * 200, "the checkpoint adds {more} bytes");
        let (back, _) = read_image(&img[..], limits()).unwrap();
        assert_eq!(back.pages_used(), 200);
        assert_eq!(listing(&back), listing(&ns));
        let info = &back.checkpoint_infos()[0];
        assert_eq!((info.shared_bytes, info.own_bytes), (200 * 4096, 0));
    }

    #[test]
    fn at_most_64_checkpoints_load() {
        use crate::namespace::checkpoint::MAX_CHECKPOINTS;
        let mut ns = Namespace::new(0, 0, 0o755, limits());
        ns.create_node(
            ROOT_INO,
            OsStr::new("f"),
            node(Kind::RegularFile, 0o644, None),
        )
        .unwrap();
        for i in 0..MAX_CHECKPOINTS {
            ns.save_checkpoint(&format!("c{i}")).unwrap();
        }
        let mut img = Vec::new();
        write_image(&ns, &mut img).unwrap();
        let (back, sum) = read_image(&img[..], limits()).unwrap();
        assert_eq!(sum.checkpoints, MAX_CHECKPOINTS as u64);
        assert_eq!(back.checkpoints().len(), MAX_CHECKPOINTS);
        // One more: the last checkpoint's section again, under another
        // name, and END counting it.
        let mut recs: Vec<(u8, Vec<u8>)> = Vec::new();
        rewrite(&img, |tag, p| recs.push((tag, p.clone())));
        let start = recs.iter().rposition(|r| r.0 == TAG_CHECKPOINT).unwrap();
        let end = recs.len() - 1;
        let mut extra = recs[start..end].to_vec();
        extra[0].1.truncate(12);
        extra[0].1.extend_from_slice(b"one-more");
        recs.splice(end..end, extra);
        let n = recs.len() - 1;
        recs[n].1[24..32].copy_from_slice(&(MAX_CHECKPOINTS as u64 + 1).to_le_bytes());
        let mut bad = img[..16].to_vec();
        for (tag, payload) in recs {
            let mut rec = vec![tag];
            rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            rec.extend_from_slice(&payload);
            let crc = crc32fast::hash(&rec);
            bad.extend_from_slice(&rec);
            bad.extend_from_slice(&crc.to_le_bytes());
        }
        match read_image(&bad[..], limits()) {
            Err(ImageError::Corrupt(why)) => assert!(why.contains("more than 64"), "{why}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("65 checkpoints loaded"),
        }
    }
}
