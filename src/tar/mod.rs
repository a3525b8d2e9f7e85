//! Tar archives: loading one into a namespace (`import.rs`, behind
//! `triefs --from-tar`) and writing a namespace as one, page by page
//! (`export.rs`, for checkpoint exports served in bounded replies).
//!
//! The archive format is the `tar` crate's to parse (checksums, GNU long
//! names and links, pax extended headers, GNU sparse members); what the
//! members mean for the tree (paths, kinds, attributes, extended
//! attributes, hard links, limits) is decided here, to match what
//! `tar -xpf --numeric-owner --xattrs --xattrs-include='*'` gives on a
//! tmpfs as root. Both directions use the same conventions:
//! - extended attributes travel as pax records `SCHILY.xattr.NAME=VALUE`
//!   (GNU tar's and star's), POSIX ACLs among them as the binary
//!   `system.posix_acl_access` and `system.posix_acl_default` values;
//! - times with nanoseconds as the pax record `mtime=SECONDS.NANOS`;
//! - device numbers as major and minor, the namespace keeping them in the
//!   kernel's 32-bit encoding (`new_encode_dev`) that FUSE carries.

pub mod export;
pub mod import;

pub use export::{Cursor, ExportPlan, write_all};
pub use import::{ImportError, ImportSummary, Prefetch, import};

/// The pax key prefix of extended attributes.
const XATTR_PREFIX: &str = "SCHILY.xattr.";

/// The kernel's 32-bit device number (`new_encode_dev`), as FUSE carries
/// it, from a major and minor number.
pub fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

/// Major and minor number of a kernel 32-bit device number
/// (`new_decode_dev`).
pub fn decode_dev(dev: u32) -> (u32, u32) {
    ((dev & 0xfff00) >> 8, (dev & 0xff) | ((dev >> 12) & 0xfff00))
}

/// A pax time value `[-]SECONDS[.FRACTION]` as seconds and nanoseconds
/// (a negative time counts back: `-1.25` is `(-2, 750_000_000)`); `None`
/// if it is not one. Digits past the ninth of the fraction are dropped.
pub(crate) fn parse_pax_time(v: &[u8]) -> Option<(i64, u32)> {
    let (neg, v) = match v.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, v),
    };
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(dot) => (&v[..dot], &v[dot + 1..]),
        None => (v, &[][..]),
    };
    if int.is_empty() || !int.iter().chain(frac).all(u8::is_ascii_digit) {
        return None;
    }
    // Past i64 the parse fails.
    let secs: i64 = std::str::from_utf8(int).ok()?.parse().ok()?;
    let mut nanos: u32 = 0;
    for i in 0..9 {
        nanos = nanos * 10 + frac.get(i).map_or(0, |d| u32::from(d - b'0'));
    }
    Some(match (neg, nanos) {
        (false, n) => (secs, n),
        (true, 0) => (-secs, 0),
        (true, n) => (-secs - 1, 1_000_000_000 - n),
    })
}

/// Seconds and nanoseconds as a pax time value (the inverse of
/// [`parse_pax_time`]).
pub(crate) fn format_pax_time(sec: i64, nsec: u32) -> String {
    match (sec < 0, nsec) {
        (_, 0) => sec.to_string(),
        (false, n) => format!("{sec}.{n:09}"),
        // -2 s + 0.75 s is -1.25 s.
        (true, n) => format!("-{}.{:09}", -(sec + 1), 1_000_000_000 - n),
    }
}

/// An extended attribute name from the rest of a `SCHILY.xattr.` key:
/// GNU tar writes `=` as `%3D` and `%` as `%25` there (a pax key cannot
/// hold `=`).
pub(crate) fn decode_xattr_key(k: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(k.len());
    let mut i = 0;
    while i < k.len() {
        match &k[i..] {
            [b'%', b'3', b'D' | b'd', ..] => {
                out.push(b'=');
                i += 3;
            }
            [b'%', b'2', b'5', ..] => {
                out.push(b'%');
                i += 3;
            }
            _ => {
                out.push(k[i]);
                i += 1;
            }
        }
    }
    out
}

/// The inverse of [`decode_xattr_key`].
pub(crate) fn encode_xattr_key(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    for &b in name {
        match b {
            b'=' => out.extend_from_slice(b"%3D"),
            b'%' => out.extend_from_slice(b"%25"),
            _ => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests;
