//! The client side of `triefs trace`: start a reader, poll it until told
//! to stop, stop it.

use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::wire::{FLAG_JSON, IOC_TRACE, OP_START, OP_STOP, OP_TAKE};
use crate::control;

/// Pause between polls that found nothing.
const IDLE_POLL: Duration = Duration::from_millis(50);

fn malformed() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "malformed reply from the daemon",
    )
}

/// Streams the requests under `prefix` (as a fault rule's prefix, already
/// normalized) of the triefs mounted at `mnt` to `out` until `stop` is
/// set; lines lost because the reader fell behind are reported as `#`
/// lines. Returns the number of lines dropped.
pub fn stream(
    mnt: &Path,
    prefix: &[u8],
    json: bool,
    out: &mut impl Write,
    stop: &AtomicBool,
) -> io::Result<u64> {
    let root = std::fs::File::open(mnt)?;
    let flags = if json { FLAG_JSON } else { 0 };
    let reply = control::call_on(&root, IOC_TRACE, OP_START, flags, prefix)?;
    let id = reply
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(malformed)?;
    let result = poll(&root, id, out, stop);
    // Stopping frees the daemon's buffer at once (else it goes after
    // ABANDONED). A reader already gone is fine.
    let _ = control::call_on(&root, IOC_TRACE, OP_STOP, u64::from(id), &[]);
    result
}

fn poll(root: &std::fs::File, id: u32, out: &mut impl Write, stop: &AtomicBool) -> io::Result<u64> {
    let mut lost = 0;
    while !stop.load(Ordering::SeqCst) {
        let reply = control::call_on(root, IOC_TRACE, OP_TAKE, u64::from(id), &[])?;
        let dropped = reply
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .ok_or_else(malformed)?;
        let lines = control::sized(&reply[8..])?;
        if dropped > 0 {
            lost += dropped;
            writeln!(
                out,
                "# {dropped} requests not shown: the reader fell behind"
            )?;
        }
        if lines.is_empty() {
            out.flush()?;
            std::thread::sleep(IDLE_POLL);
        } else {
            out.write_all(lines)?;
        }
    }
    out.flush()?;
    Ok(lost)
}
