//! The client side of `triefs checkpoint`: one ioctl per request on the
//! mount's root, every reply checked before it is trusted.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use super::{
    CheckpointInfo, EXPORT_CHUNK, FLAG_DONE, Fields, IOC_CHECKPOINT, IOC_SIZE, MAX_CURSOR, Op,
    decode_list, encode_request,
};

/// What a restore did, as the daemon reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreStats {
    /// Nanoseconds the restore took in the daemon (the kernel told what to forget included).
    pub locked_ns: u64,
    /// Inodes whose kernel caches were dropped.
    pub changed: u64,
    /// Inodes the kernel holds that kept their caches.
    pub kept: u64,
    /// Inodes only the kernel still holds now (unlinked).
    pub orphaned: u64,
    /// Directory entries the kernel was told to forget.
    pub entries: u64,
}

/// What a crash did, as the daemon reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashStats {
    /// The restore of the durable tree (times and kernel caches).
    pub restore: RestoreStats,
    /// Inodes whose data or attributes went back to their last sync point.
    pub reverted: u64,
    /// Inodes with a name before that no durable name reaches: gone.
    pub lost: u64,
    /// Names in changed directories that no longer lead where they did.
    pub names_dropped: u64,
    /// Names that came back (removed or changed since the sync point).
    pub names_back: u64,
}

/// What an export wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Bytes of tar archive.
    pub bytes: u64,
    /// Requests it took.
    pub pages: u64,
}

fn malformed() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "malformed checkpoint reply")
}

/// Opens the mount point (a directory) for the ioctl.
fn open_root(mnt: &Path) -> io::Result<File> {
    let f = File::open(mnt)?;
    if !f.metadata()?.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    Ok(f)
}

fn call(f: &File, op: Op, name: &str, cursor: &[u8]) -> io::Result<Vec<u8>> {
    let mut buf = encode_request(op, name, cursor);
    debug_assert_eq!(buf.len(), IOC_SIZE);
    crate::sys::ioctl_rw(f, IOC_CHECKPOINT, &mut buf)?;
    Ok(buf)
}

/// Saves the live tree of the triefs mounted at `mnt` as `name`. Data
/// the kernel still caches dirty is written to the daemon first, so the
/// checkpoint holds everything written before the call. Returns the
/// nanoseconds the daemon held the lock.
pub fn save(mnt: &Path, name: &str) -> io::Result<u64> {
    let f = open_root(mnt)?;
    crate::sys::syncfs(&f)?;
    let buf = call(&f, Op::Save, name, b"")?;
    Fields(&buf).u64().ok_or_else(malformed)
}

/// Makes checkpoint `name` the live tree of the mount at `mnt`. Dirty
/// cached data is written to the daemon first (it belongs to the tree
/// being replaced); when this returns, no kernel cache shows the old tree.
pub fn restore(mnt: &Path, name: &str) -> io::Result<RestoreStats> {
    let f = open_root(mnt)?;
    crate::sys::syncfs(&f)?;
    let buf = call(&f, Op::Restore, name, b"")?;
    let mut r = Fields(&buf);
    let mut next = || r.u64().ok_or_else(malformed);
    Ok(RestoreStats {
        locked_ns: next()?,
        changed: next()?,
        kept: next()?,
        orphaned: next()?,
        entries: next()?,
    })
}

/// The power cut of the mount at `mnt` (mounted with `-o crash`): every
/// file and directory falls back to its last sync point. The kernel's
/// dirty pages are written to the daemon first, so that they are lost
/// like every other unsynced write (without, a write through a shared
/// mapping could reach the daemon after the crash and survive it).
pub fn crash(mnt: &Path) -> io::Result<CrashStats> {
    let f = open_root(mnt)?;
    crate::sys::syncfs(&f)?;
    let buf = call(&f, Op::Crash, "", b"")?;
    let mut r = Fields(&buf);
    let mut next = || r.u64().ok_or_else(malformed);
    Ok(CrashStats {
        restore: RestoreStats {
            locked_ns: next()?,
            changed: next()?,
            kept: next()?,
            orphaned: next()?,
            entries: next()?,
        },
        reverted: next()?,
        lost: next()?,
        names_dropped: next()?,
        names_back: next()?,
    })
}

/// Deletes checkpoint `name` of the mount at `mnt`.
pub fn delete(mnt: &Path, name: &str) -> io::Result<()> {
    let f = open_root(mnt)?;
    call(&f, Op::Delete, name, b"").map(|_| ())
}

/// The checkpoints of the mount at `mnt`, oldest first.
pub fn list(mnt: &Path) -> io::Result<Vec<CheckpointInfo>> {
    let f = open_root(mnt)?;
    let buf = call(&f, Op::List, "", b"")?;
    decode_list(&buf).ok_or_else(malformed)
}

/// Writes checkpoint `name` of the mount at `mnt` to `out` as a tar
/// archive, a page per request.
pub fn export(mnt: &Path, name: &str, mut out: impl Write) -> io::Result<ExportStats> {
    let f = open_root(mnt)?;
    let mut cursor: Vec<u8> = Vec::new();
    let mut stats = ExportStats::default();
    loop {
        let buf = call(&f, Op::Export, name, &cursor)?;
        let mut r = Fields(&buf);
        let flags = r.u32().ok_or_else(malformed)?;
        let clen = r.u32().ok_or_else(malformed)? as usize;
        if clen > MAX_CURSOR {
            return Err(malformed());
        }
        let next = r.take(clen).ok_or_else(malformed)?.to_vec();
        let dlen = r.u32().ok_or_else(malformed)? as usize;
        if dlen > EXPORT_CHUNK {
            return Err(malformed());
        }
        let data = r.take(dlen).ok_or_else(malformed)?;
        out.write_all(data)?;
        stats.bytes += dlen as u64;
        stats.pages += 1;
        if flags & FLAG_DONE != 0 {
            out.flush()?;
            return Ok(stats);
        }
        if dlen == 0 && next == cursor {
            // Not done, yet no progress: stop rather than loop.
            return Err(malformed());
        }
        cursor = next;
    }
}
