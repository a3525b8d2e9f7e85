//! The remount control request: how `mount -o remount,size=...` reaches
//! the running daemon, which owns the limits that tmpfs keeps in its
//! superblock.
//!
//! The mount helper opens the mount's root directory and sends one
//! `_IOWR` ioctl ([`IOC_RECONFIGURE`]) of [`IOC_SIZE`] bytes, integers
//! little-endian:
//! - in: `u32` version ([`VERSION`]), `u32` flags ([`SET_SIZE`],
//!   [`SET_INODES`], [`RESTORE`]), `u64` size in bytes, `u64` nr_inodes
//!   (0: unlimited, as in `-o`); the rest zero;
//! - out: `u32` version, `u32` outcome (0 applied, else a
//!   [`Refusal`] code), `u64` size and `u64` nr_inodes as they were
//!   before (0: unlimited).
//!
//! A request with no flags only asks: it answers the current limits and
//! changes nothing (the helper's "is this a triefs mount?"). [`RESTORE`]
//! sets both values unchecked, to undo a change whose remount then failed.
//! Only root may send it (tmpfs needs `CAP_SYS_ADMIN` to remount): anyone
//! else gets `EPERM`. The request is fixed-size, so nothing in it is
//! unbounded.

use std::io;
use std::path::Path;

use crate::error::{Errno, Result};
use crate::namespace::data::PAGE;
use crate::namespace::{Limits, Namespace, Refusal, UNLIMITED_PAGES};

/// Bytes exchanged per request, both ways.
pub const IOC_SIZE: usize = 32;

/// The ioctl number: `_IOWR(0xF7, 0x52, [u8; IOC_SIZE])` (0x4D is
/// ls-prefix's).
pub const IOC_RECONFIGURE: u32 = (3 << 30) | ((IOC_SIZE as u32) << 16) | (0xF7 << 8) | 0x52;

/// The wire format's version; another one is refused with `EINVAL`.
pub const VERSION: u32 = 1;

/// Flag: change the size limit.
pub const SET_SIZE: u32 = 1;
/// Flag: change the inode limit.
pub const SET_INODES: u32 = 2;
/// Flag: set both limits unchecked (undo).
pub const RESTORE: u32 = 4;

/// A request: which limits to change, tmpfs-style (0: unlimited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// New size limit in bytes.
    pub size: Option<u64>,
    /// New inode limit.
    pub nr_inodes: Option<u64>,
    /// Set both unchecked (undo a change).
    pub restore: bool,
}

/// The limits in force, tmpfs-style: bytes and inodes, 0 for unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Current {
    /// Size limit in bytes.
    pub size: u64,
    /// Inode limit.
    pub nr_inodes: u64,
}

impl Current {
    fn of(l: Limits) -> Current {
        Current {
            size: if l.max_pages >= UNLIMITED_PAGES {
                0
            } else {
                l.max_pages.saturating_mul(PAGE as u64)
            },
            nr_inodes: if l.max_inodes == u64::MAX {
                0
            } else {
                l.max_inodes
            },
        }
    }
}

/// The answer: applied or refused, and the limits before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// `None` when applied (or only asked).
    pub refused: Option<Refusal>,
    /// The limits before the request.
    pub before: Current,
}

fn refusal_code(r: Refusal) -> u32 {
    match r {
        Refusal::RetroactiveSize => 1,
        Refusal::SizeTooSmall => 2,
        Refusal::RetroactiveInodes => 3,
        Refusal::TooFewInodes => 4,
    }
}

fn refusal_of(code: u32) -> Option<Option<Refusal>> {
    Some(match code {
        0 => None,
        1 => Some(Refusal::RetroactiveSize),
        2 => Some(Refusal::SizeTooSmall),
        3 => Some(Refusal::RetroactiveInodes),
        4 => Some(Refusal::TooFewInodes),
        _ => return None,
    })
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The request's bytes.
pub fn encode_request(r: &Request) -> [u8; IOC_SIZE] {
    let mut b = [0u8; IOC_SIZE];
    let mut flags = 0;
    if r.size.is_some() {
        flags |= SET_SIZE;
    }
    if r.nr_inodes.is_some() {
        flags |= SET_INODES;
    }
    if r.restore {
        flags |= RESTORE;
    }
    b[0..4].copy_from_slice(&VERSION.to_le_bytes());
    b[4..8].copy_from_slice(&flags.to_le_bytes());
    b[8..16].copy_from_slice(&r.size.unwrap_or(0).to_le_bytes());
    b[16..24].copy_from_slice(&r.nr_inodes.unwrap_or(0).to_le_bytes());
    b
}

/// Reads a request; `EINVAL` for another version, unknown flags, a short
/// buffer, a restore without both values, or an inode count past what
/// tmpfs accepts.
pub fn decode_request(b: &[u8]) -> Result<Request> {
    let bad = Errno::new(libc::EINVAL);
    let (version, flags) = (u32_at(b, 0).ok_or(bad)?, u32_at(b, 4).ok_or(bad)?);
    let (size, nr_inodes) = (u64_at(b, 8).ok_or(bad)?, u64_at(b, 16).ok_or(bad)?);
    if version != VERSION || flags & !(SET_SIZE | SET_INODES | RESTORE) != 0 {
        return Err(bad);
    }
    let restore = flags & RESTORE != 0;
    if restore && flags != SET_SIZE | SET_INODES | RESTORE {
        return Err(bad);
    }
    if nr_inodes > u64::MAX / crate::namespace::limits::INODE_SPACE {
        return Err(bad);
    }
    Ok(Request {
        size: (flags & SET_SIZE != 0).then_some(size),
        nr_inodes: (flags & SET_INODES != 0).then_some(nr_inodes),
        restore,
    })
}

fn encode_reply(r: &Reply) -> Vec<u8> {
    let mut b = vec![0u8; IOC_SIZE];
    b[0..4].copy_from_slice(&VERSION.to_le_bytes());
    b[4..8].copy_from_slice(&r.refused.map_or(0, refusal_code).to_le_bytes());
    b[8..16].copy_from_slice(&r.before.size.to_le_bytes());
    b[16..24].copy_from_slice(&r.before.nr_inodes.to_le_bytes());
    b
}

fn decode_reply(b: &[u8]) -> io::Result<Reply> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed remount reply");
    if u32_at(b, 0) != Some(VERSION) {
        return Err(bad());
    }
    let refused = u32_at(b, 4).and_then(refusal_of).ok_or_else(bad)?;
    let size = u64_at(b, 8).ok_or_else(bad)?;
    let nr_inodes = u64_at(b, 16).ok_or_else(bad)?;
    Ok(Reply {
        refused,
        before: Current { size, nr_inodes },
    })
}

/// The daemon's side: serves one request from user `uid` against the
/// namespace, and returns the reply's bytes. `EPERM` for anyone but root.
pub fn serve(ns: &parking_lot::RwLock<Namespace>, uid: u32, data: &[u8]) -> Result<Vec<u8>> {
    if uid != 0 {
        return Err(Errno::new(libc::EPERM));
    }
    let req = decode_request(data)?;
    let reply = if req.restore {
        let mut ns = ns.write();
        let before = Current::of(ns.limits());
        ns.restore_limits(Limits::from_options(req.size, req.nr_inodes));
        Reply {
            refused: None,
            before,
        }
    } else if req.size.is_none() && req.nr_inodes.is_none() {
        Reply {
            refused: None,
            before: Current::of(ns.read().limits()),
        }
    } else {
        let mut ns = ns.write();
        let before = Current::of(ns.limits());
        let refused = ns.reconfigure(req.size, req.nr_inodes).err();
        let after = Current::of(ns.limits());
        drop(ns);
        match refused {
            Some(r) => log::info!("remount refused: {}", r.message()),
            None => log::info!(
                "remount: size {} -> {}, nr_inodes {} -> {} (0: unlimited)",
                before.size,
                after.size,
                before.nr_inodes,
                after.nr_inodes
            ),
        }
        Reply { refused, before }
    };
    Ok(encode_reply(&reply))
}

/// The client's side: sends `req` to the daemon serving directory `dir`
/// (a triefs mount's root).
pub fn send(dir: &Path, req: &Request) -> io::Result<Reply> {
    let f = std::fs::File::open(dir)?;
    let mut buf = encode_request(req);
    crate::sys::ioctl_rw(&f, IOC_RECONFIGURE, &mut buf)?;
    decode_reply(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for r in [
            Request::default(),
            Request {
                size: Some(1 << 20),
                nr_inodes: None,
                restore: false,
            },
            Request {
                size: None,
                nr_inodes: Some(0),
                restore: false,
            },
            Request {
                size: Some(0),
                nr_inodes: Some(5),
                restore: true,
            },
        ] {
            assert_eq!(decode_request(&encode_request(&r)), Ok(r));
        }
    }

    #[test]
    fn malformed_requests_are_einval() {
        let einval = Err(Errno::new(libc::EINVAL));
        let good = encode_request(&Request::default());
        assert_eq!(decode_request(&good[..20]), einval, "short");
        let mut v2 = good;
        v2[0] = 2;
        assert_eq!(decode_request(&v2), einval, "another version");
        let mut flags = good;
        flags[4] = 8;
        assert_eq!(decode_request(&flags), einval, "unknown flag");
        let mut half_restore = good;
        half_restore[4] = (RESTORE | SET_SIZE) as u8;
        assert_eq!(decode_request(&half_restore), einval, "restore of one");
        let mut huge = encode_request(&Request {
            nr_inodes: Some(1),
            ..Request::default()
        });
        huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(decode_request(&huge), einval, "inode count too large");
    }

    fn ns(size: Option<u64>, inodes: Option<u64>) -> parking_lot::RwLock<Namespace> {
        parking_lot::RwLock::new(Namespace::new(
            0,
            0,
            0o755,
            Limits::from_options(size, inodes),
        ))
    }

    fn ask(ns: &parking_lot::RwLock<Namespace>, uid: u32, r: Request) -> Result<Reply> {
        let out = serve(ns, uid, &encode_request(&r))?;
        assert_eq!(out.len(), IOC_SIZE);
        Ok(decode_reply(&out).unwrap())
    }

    #[test]
    fn only_root_may_ask() {
        let n = ns(Some(1 << 20), Some(10));
        let r = Request::default();
        assert_eq!(ask(&n, 65534, r), Err(Errno::new(libc::EPERM)));
        assert_eq!(ask(&n, 1000, r), Err(Errno::new(libc::EPERM)));
        let got = ask(&n, 0, r).unwrap();
        assert_eq!(got.refused, None);
        assert_eq!(
            got.before,
            Current {
                size: 1 << 20,
                nr_inodes: 10
            }
        );
    }

    /// Changes, refusals (nothing changed) and an undo, through the wire.
    #[test]
    fn change_refuse_and_restore() {
        let n = ns(Some(1 << 20), Some(10));
        let set = |size, nr_inodes| Request {
            size,
            nr_inodes,
            restore: false,
        };
        let now = |n: &parking_lot::RwLock<Namespace>| Current::of(n.read().limits());
        assert_eq!(ask(&n, 0, set(Some(2 << 20), None)).unwrap().refused, None);
        assert_eq!(now(&n).size, 2 << 20);
        // Inodes in use: the root only; 0 lifts the limit.
        assert_eq!(ask(&n, 0, set(None, Some(0))).unwrap().refused, None);
        assert_eq!(now(&n).nr_inodes, 0);
        // Unlimited cannot become limited, and the size half of a refused
        // request is not applied either.
        let r = ask(&n, 0, set(Some(4 << 20), Some(10))).unwrap();
        assert_eq!(r.refused, Some(Refusal::RetroactiveInodes));
        assert_eq!(now(&n).size, 2 << 20, "nothing changed");
        // Undo to any values.
        let back = Request {
            size: Some(1 << 20),
            nr_inodes: Some(10),
            restore: true,
        };
        assert_eq!(ask(&n, 0, back).unwrap().refused, None);
        assert_eq!(
            now(&n),
            Current {
                size: 1 << 20,
                nr_inodes: 10
            }
        );
        assert_eq!(ask(&n, 1000, back), Err(Errno::new(libc::EPERM)));
    }
}
