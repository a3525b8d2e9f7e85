//! The request format of the `triefs fault` and `triefs trace` ioctls:
//! one `_IOWR` ioctl of [`IOC_SIZE`] bytes on the mount's root, like
//! `ls-prefix` and `checkpoint` (it reaches the daemon serving the named
//! mount, with the caller's uid from the kernel, and `ENOTTY` tells "not a
//! triefs" apart).
//!
//! In (integers little-endian): `u32` version ([`VERSION`]), `u32`
//! operation, `u64` argument, `u32` length, that many bytes. Out: the
//! operation's bytes; errors are the ioctl's errno.

use std::fs::File;
use std::io;
use std::path::Path;

use crate::error::{Errno, Result};

/// Bytes exchanged per ioctl (as `ls-prefix`).
pub const IOC_SIZE: usize = crate::lsprefix::IOC_SIZE;

/// Version of the request format.
pub const VERSION: u32 = 1;

/// The ioctl number `_IOWR(0xF7, nr, [u8; IOC_SIZE])`.
pub const fn ioc(nr: u32) -> u32 {
    (3 << 30) | ((IOC_SIZE as u32) << 16) | (0xF7 << 8) | nr
}

/// Fixed bytes before a request's payload.
const HEADER: usize = 20;

/// Most payload bytes a request carries.
pub const MAX_PAYLOAD: usize = IOC_SIZE - HEADER;

/// A decoded request.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The operation's number.
    pub op: u32,
    /// Its argument (an id, flags).
    pub arg: u64,
    /// Its bytes (a rule, a prefix).
    pub payload: &'a [u8],
}

/// Encodes a request; `EINVAL` for a payload over [`MAX_PAYLOAD`].
pub fn encode(op: u32, arg: u64, payload: &[u8]) -> Result<Vec<u8>> {
    if payload.len() > MAX_PAYLOAD {
        return Err(Errno::new(libc::EINVAL));
    }
    let mut b = Vec::with_capacity(IOC_SIZE);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&op.to_le_bytes());
    b.extend_from_slice(&arg.to_le_bytes());
    b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    b.extend_from_slice(payload);
    b.resize(IOC_SIZE, 0);
    Ok(b)
}

/// Decodes a request, never reading past the buffer; `EINVAL` when it is
/// short, of another version, or its length runs past the end.
pub fn decode(b: &[u8]) -> Result<Request<'_>> {
    let bad = || Errno::new(libc::EINVAL);
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    if word(0).ok_or_else(bad)? != VERSION {
        return Err(bad());
    }
    let op = word(4).ok_or_else(bad)?;
    let arg = u64::from(word(8).ok_or_else(bad)?) | (u64::from(word(12).ok_or_else(bad)?) << 32);
    let len = word(16).ok_or_else(bad)? as usize;
    let payload = b
        .get(HEADER..HEADER.checked_add(len).ok_or_else(bad)?)
        .ok_or_else(bad)?;
    Ok(Request { op, arg, payload })
}

/// Sends one request to the triefs mounted at `mnt` (its root directory);
/// the reply's bytes (all [`IOC_SIZE`] of them: the operation knows its
/// own length).
pub fn call(mnt: &Path, cmd: u32, op: u32, arg: u64, payload: &[u8]) -> io::Result<Vec<u8>> {
    let f = File::open(mnt)?;
    if !f.metadata()?.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    call_on(&f, cmd, op, arg, payload)
}

/// [`call`] on a root directory already open.
pub fn call_on(f: &File, cmd: u32, op: u32, arg: u64, payload: &[u8]) -> io::Result<Vec<u8>> {
    let mut buf = encode(op, arg, payload).map_err(|e| io::Error::from_raw_os_error(e.code()))?;
    crate::sys::ioctl_rw(f, cmd, &mut buf)?;
    Ok(buf)
}

/// Reads `u32` length-prefixed bytes at the start of a reply.
pub fn sized(reply: &[u8]) -> io::Result<&[u8]> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "malformed reply from the daemon",
        )
    };
    let len = reply
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(bad)? as usize;
    reply.get(4..4 + len).ok_or_else(bad)
}

/// A reply of `u32` length-prefixed bytes.
pub fn with_size(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let b = encode(3, u64::MAX - 5, b"/a b").unwrap();
        assert_eq!(b.len(), IOC_SIZE);
        let r = decode(&b).unwrap();
        assert_eq!((r.op, r.arg, r.payload), (3, u64::MAX - 5, &b"/a b"[..]));
        assert!(encode(1, 0, &vec![0; MAX_PAYLOAD + 1]).is_err());
        let mut bad = b.clone();
        bad[16..20].copy_from_slice(&(IOC_SIZE as u32).to_le_bytes());
        assert!(decode(&bad).is_err(), "a length past the end");
        bad[0] = 9;
        assert!(decode(&bad).is_err(), "another version");
        assert!(decode(&b[..10]).is_err());
        assert_eq!(sized(&with_size(b"xyz")).unwrap(), b"xyz");
        assert!(sized(&[9, 0, 0, 0, 1]).is_err());
    }
}
