//! The client side of `ls-prefix`: pages through a listing with one ioctl
//! per page and checks every reply before trusting a byte of it.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

#[cfg(doc)]
use super::MAX_PATH;
use super::{FLAG_DONE, FLAG_SKIPPED, IOC_LS, IOC_SIZE, MAX_CURSOR};

/// One item of a listing, as [`list`] hands it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// A leaf path relative to the listed directory (empty for the
    /// directory itself when it is empty).
    Path(&'a OsStr),
    /// A path longer than [`MAX_PATH`]: not listed.
    TooLong {
        /// Its first bytes.
        head: &'a OsStr,
        /// Its whole length in bytes.
        len: u32,
        /// It is a directory, and nothing under it is listed either.
        dir: bool,
    },
}

/// What a whole listing reported besides its paths.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Listed {
    /// Paths passed to the callback.
    pub paths: u64,
    /// Over-long paths passed to the callback.
    pub too_long: u64,
    /// Some directories were skipped for lack of permission.
    pub skipped: bool,
}

/// A malformed reply from the daemon.
fn malformed(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed ls-prefix reply: {what}"),
    )
}

/// Reads a reply one field at a time, never past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if n > self.0.len() {
            return Err(malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> io::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn cstr(&mut self) -> io::Result<&'a [u8]> {
        let end = self
            .0
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| malformed("unterminated path"))?;
        let s = self.take(end)?;
        self.take(1)?;
        Ok(s)
    }
}

/// Lists every leaf path under `dir` (inside a triefs mount), calling
/// `each` with each path relative to `dir` and with each over-long one.
pub fn list(dir: &Path, mut each: impl FnMut(Item<'_>)) -> io::Result<Listed> {
    let f = std::fs::File::open(dir)?;
    if !f.metadata()?.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    let mut buf = vec![0u8; IOC_SIZE];
    let mut cursor: Vec<u8> = Vec::new();
    let mut listed = Listed::default();
    loop {
        buf[..4].copy_from_slice(&(cursor.len() as u32).to_le_bytes());
        buf[4..4 + cursor.len()].copy_from_slice(&cursor);
        crate::sys::ioctl_rw(&f, IOC_LS, &mut buf)?;
        let mut r = Reader(&buf);
        let (flags, count, long_count) = (r.u32()?, r.u32()?, r.u32()?);
        let cursor_len = r.u32()? as usize;
        if cursor_len > MAX_CURSOR {
            return Err(malformed("cursor too long"));
        }
        let next = r.take(cursor_len)?;
        listed.skipped |= flags & FLAG_SKIPPED != 0;
        for _ in 0..count {
            each(Item::Path(OsStr::from_bytes(r.cstr()?)));
            listed.paths += 1;
        }
        for _ in 0..long_count {
            let len = r.u32()?;
            let dir = r.take(1)?[0] != 0;
            let head = OsStr::from_bytes(r.cstr()?);
            each(Item::TooLong { head, len, dir });
            listed.too_long += 1;
        }
        if flags & FLAG_DONE != 0 {
            return Ok(listed);
        }
        if next.is_empty() || (next == cursor && count == 0 && long_count == 0) {
            // Not done, yet nowhere further to go: stop rather than loop.
            return Err(malformed("no progress"));
        }
        cursor = next.to_vec();
    }
}
