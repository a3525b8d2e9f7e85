//! `triefs checkpoint`: the control ioctl's wire format and the daemon's
//! side of it.
//!
//! The client opens the mount's root directory and sends one `_IOWR`
//! ioctl ([`IOC_CHECKPOINT`], [`IOC_SIZE`] bytes each way, like
//! `ls-prefix`: the most a FUSE ioctl carries without CUSE's unrestricted
//! mode). An ioctl serves because it needs no extra channel: it reaches
//! the daemon that serves the mount the caller names, with the caller's
//! uid from the kernel, and it fails with `ENOTTY` on anything that is not
//! a triefs root, so "not a triefs mount" is told apart for free.
//!
//! Wire format (integers little-endian):
//! - in: `u32` version ([`VERSION`]), `u32` operation ([`Op`]), `u32`
//!   name length, the name (at most [`MAX_NAME`] bytes), `u32` cursor
//!   length, the cursor (export only, at most [`MAX_CURSOR`] bytes);
//! - out, save/delete: `u64` nanoseconds the operation took in the daemon;
//! - out, restore: `u64` nanoseconds, `u64` inodes whose kernel caches
//!   were dropped, `u64` kept, `u64` orphaned, `u64` entries invalidated;
//! - out, crash (`triefs crash`, no name): the restore's five `u64`, then
//!   `u64` inodes reverted, `u64` inodes lost, `u64` names dropped, `u64`
//!   names brought back (see [`crate::namespace::durable`]);
//! - out, list: `u32` count, then per checkpoint `u8` name length, the
//!   name, `i64` seconds, `u32` nanoseconds, `u64` entries, `u64` shared
//!   bytes, `u64` own bytes, `u64` metadata bytes;
//! - out, export: `u32` flags ([`FLAG_DONE`]), `u32` cursor length, the
//!   cursor, `u32` data length, the data (a piece of the tar stream).
//!
//! Errors are the ioctl's errno: `ENOENT` no such checkpoint, `EEXIST`
//! (save) the name is taken, `EINVAL` a bad name or request, `ENOSPC` a
//! limit, `EPERM` a caller who is neither the mount's owner nor root
//! (for every operation), `EOPNOTSUPP` (crash) a mount without `-o crash`.
//! Crash was added as a new operation: the version stays 1.

mod client;
pub use client::{
    CrashStats, ExportStats, RestoreStats, crash, delete, export, list, restore, save,
};

use crate::error::{Errno, Result};
pub use crate::namespace::checkpoint::{CheckpointInfo, MAX_NAME};

/// Bytes exchanged per ioctl (as `ls-prefix`).
pub const IOC_SIZE: usize = crate::lsprefix::IOC_SIZE;

/// The ioctl number: `_IOWR(0xF7, 0x50, [u8; IOC_SIZE])`.
pub const IOC_CHECKPOINT: u32 = (3 << 30) | ((IOC_SIZE as u32) << 16) | (0xF7 << 8) | 0x50;

/// Version of the request format.
pub const VERSION: u32 = 1;

/// Longest export cursor.
pub const MAX_CURSOR: usize = 64;

/// Out flag of an export page: the archive is complete.
pub const FLAG_DONE: u32 = 1;

/// Bytes of tar stream per export page, leaving room for the header.
pub const EXPORT_CHUNK: usize = IOC_SIZE - 128;

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Capture the live tree.
    Save = 1,
    /// Make a checkpoint the live tree.
    Restore = 2,
    /// Forget a checkpoint.
    Delete = 3,
    /// Every checkpoint's name, time and costs.
    List = 4,
    /// A page of a checkpoint as a tar archive.
    Export = 5,
    /// The simulated power cut of a mount with `-o crash`.
    Crash = 6,
}

impl Op {
    fn from_u32(v: u32) -> Option<Op> {
        Some(match v {
            1 => Op::Save,
            2 => Op::Restore,
            3 => Op::Delete,
            4 => Op::List,
            5 => Op::Export,
            6 => Op::Crash,
            _ => return None,
        })
    }

    /// Whether only the mount's owner and root may ask for it: all of
    /// them. Export reads every file whatever its mode (the owner could
    /// read the daemon's memory anyway), and a list weighs every stored
    /// page, which other users must not be able to make the daemon do
    /// over and over.
    pub fn privileged(self) -> bool {
        true
    }
}

/// A decoded request.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// The operation.
    pub op: Op,
    /// The checkpoint's name (empty for a list).
    pub name: String,
    /// Export: where the previous page ended.
    pub cursor: Vec<u8>,
}

/// Encodes a request into an ioctl buffer of [`IOC_SIZE`] bytes.
pub fn encode_request(op: Op, name: &str, cursor: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(IOC_SIZE);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&(op as u32).to_le_bytes());
    b.extend_from_slice(&(name.len() as u32).to_le_bytes());
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(&(cursor.len() as u32).to_le_bytes());
    b.extend_from_slice(cursor);
    b.resize(IOC_SIZE, 0);
    b
}

/// Reads fields from a buffer, never past its end.
pub(crate) struct Fields<'a>(pub(crate) &'a [u8]);

impl<'a> Fields<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_le_bytes(a))
    }
}

/// Decodes a request; `EINVAL` for anything malformed.
pub fn decode_request(buf: &[u8]) -> Result<Request> {
    let bad = || Errno::new(libc::EINVAL);
    let mut f = Fields(buf);
    if f.u32().ok_or_else(bad)? != VERSION {
        return Err(bad());
    }
    let op = Op::from_u32(f.u32().ok_or_else(bad)?).ok_or_else(bad)?;
    let len = f.u32().ok_or_else(bad)? as usize;
    if len > MAX_NAME {
        return Err(bad());
    }
    let name = std::str::from_utf8(f.take(len).ok_or_else(bad)?)
        .map_err(|_| bad())?
        .to_owned();
    let clen = f.u32().ok_or_else(bad)? as usize;
    if clen > MAX_CURSOR {
        return Err(bad());
    }
    let cursor = f.take(clen).ok_or_else(bad)?.to_vec();
    Ok(Request { op, name, cursor })
}

/// Encodes the list reply.
pub fn encode_list(infos: &[CheckpointInfo]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(infos.len() as u32).to_le_bytes());
    for i in infos {
        // Names are at most MAX_NAME (64) bytes: one byte of length.
        b.push(i.name.len() as u8);
        b.extend_from_slice(i.name.as_bytes());
        b.extend_from_slice(&i.time.0.to_le_bytes());
        b.extend_from_slice(&i.time.1.to_le_bytes());
        for v in [i.entries, i.shared_bytes, i.own_bytes, i.meta_bytes] {
            b.extend_from_slice(&v.to_le_bytes());
        }
    }
    b
}

/// Decodes the list reply.
pub fn decode_list(buf: &[u8]) -> Option<Vec<CheckpointInfo>> {
    let mut f = Fields(buf);
    let n = f.u32()?;
    if n as usize > crate::namespace::checkpoint::MAX_CHECKPOINTS {
        return None;
    }
    let mut out = Vec::new();
    for _ in 0..n {
        let len = f.take(1)?[0] as usize;
        let name = std::str::from_utf8(f.take(len)?).ok()?.to_owned();
        let sec = f.u64()? as i64;
        let nsec = f.u32()?;
        let (entries, shared_bytes, own_bytes, meta_bytes) =
            (f.u64()?, f.u64()?, f.u64()?, f.u64()?);
        out.push(CheckpointInfo {
            name,
            time: (sec, nsec),
            entries,
            shared_bytes,
            own_bytes,
            meta_bytes,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_ones_are_refused() {
        let b = encode_request(Op::Restore, "base", b"");
        assert_eq!(b.len(), IOC_SIZE);
        assert_eq!(
            decode_request(&b),
            Ok(Request {
                op: Op::Restore,
                name: "base".into(),
                cursor: vec![]
            })
        );
        let mut v = b.clone();
        v[0] = 9;
        assert!(decode_request(&v).is_err(), "version");
        let mut v = b.clone();
        v[4] = 77;
        assert!(decode_request(&v).is_err(), "operation");
        let mut v = b.clone();
        v[8..12].copy_from_slice(&100_000u32.to_le_bytes());
        assert!(decode_request(&v).is_err(), "name length");
        assert!(decode_request(&b[..10]).is_err(), "truncated");
    }

    #[test]
    fn list_round_trips() {
        let infos = vec![CheckpointInfo {
            name: "a".into(),
            time: (-5, 7),
            entries: 3,
            shared_bytes: 4096,
            own_bytes: 8192,
            meta_bytes: 100,
        }];
        assert_eq!(decode_list(&encode_list(&infos)), Some(infos));
        assert_eq!(decode_list(&[1, 0]), None);
    }
}
