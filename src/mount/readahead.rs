//! The mount's readahead. A FUSE daemon can only lower the kernel's
//! readahead for its mount (the INIT reply's `max_readahead` is a cap), and
//! the kernel starts FUSE mounts at 128 KiB: cold sequential reads then
//! arrive as 128 KiB READ requests, one round trip each. Root may raise it
//! in `/sys/class/bdi/MAJOR:MINOR/read_ahead_kb`, as for any disk.

use std::io;
use std::path::Path;

use super::mountinfo;

/// Readahead for triefs mounts, in KiB: 1 MiB, the largest READ the kernel
/// sends us (`max_pages` follows our 1 MiB `max_write`). Measured: a cold
/// 1 GiB read went from 1.5 to 2.1 GB/s (docs/performance.md).
pub const READAHEAD_KIB: u32 = 1024;

/// Raises the readahead of the mount at `mountpoint` to `kib` unless it is
/// that high already; the value before and after. Needs root (the sysfs
/// file is root's); an error otherwise.
pub fn raise(mountpoint: &Path, kib: u32) -> io::Result<(u32, u32)> {
    let mount = mountinfo::mount_at(mountpoint)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not in the mount table"))?;
    // The device comes from the mount table: "0:39", never a path.
    if !mount
        .device
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b':')
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "odd device number",
        ));
    }
    let file = Path::new("/sys/class/bdi")
        .join(&mount.device)
        .join("read_ahead_kb");
    let now: u32 = std::fs::read_to_string(&file)?
        .trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "unreadable read_ahead_kb"))?;
    if now >= kib {
        return Ok((now, now));
    }
    std::fs::write(&file, kib.to_string())?;
    Ok((now, kib))
}
