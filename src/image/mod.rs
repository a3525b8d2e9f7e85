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
