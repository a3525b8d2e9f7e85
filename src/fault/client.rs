//! The client side of `triefs fault`: one ioctl per command on the mount's
//! root.

use std::io;
use std::path::Path;

use super::Spec;
use super::wire::{IOC_FAULT, OP_ADD, OP_CLEAR, OP_LIST};
use crate::control;

fn word(reply: &[u8]) -> io::Result<u32> {
    reply
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed reply"))
}

/// Adds `rule` to the triefs mounted at `mnt`; its id.
pub fn add(mnt: &Path, rule: &Spec) -> io::Result<u32> {
    let reply = control::call(mnt, IOC_FAULT, OP_ADD, 0, rule.to_line().as_bytes())?;
    word(&reply)
}

/// The rules of the triefs mounted at `mnt`, as `triefs fault list`
/// prints them.
pub fn list(mnt: &Path) -> io::Result<String> {
    let mut out = String::new();
    let mut from = 0u64;
    // Each page says where the next starts (0: none); rules are at most
    // MAX_RULES, so a daemon that never says 0 is cut off.
    for _ in 0..=super::MAX_RULES {
        let reply = control::call(mnt, IOC_FAULT, OP_LIST, from, &[])?;
        let next = word(&reply)?;
        out.push_str(&String::from_utf8_lossy(control::sized(&reply[4..])?));
        if next == 0 {
            return Ok(out);
        }
        from = u64::from(next);
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "the rule list does not end",
    ))
}

/// Clears rule `id`, or every rule; how many went.
pub fn clear(mnt: &Path, id: Option<u32>) -> io::Result<u32> {
    let reply = control::call(mnt, IOC_FAULT, OP_CLEAR, id.map_or(0, u64::from), &[])?;
    word(&reply)
}
