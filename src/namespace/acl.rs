//! POSIX ACLs as the kernel and tmpfs define them: the xattr wire format
//! (`system.posix_acl_access`, `system.posix_acl_default`), validation,
//! and the three rules that tie an access ACL to the file mode: setting
//! one (`posix_acl_update_mode`), `chmod` (`posix_acl_chmod`) and creating
//! a node under a directory with a default ACL (`posix_acl_create`).
//!
//! With `FUSE_POSIX_ACL` the kernel enforces ACLs itself; the filesystem
//! stores them and keeps them in step with the mode. Pure functions, no
//! namespace state.

use crate::error::{Result, err};

/// Name of the access ACL attribute.
pub const ACCESS: &[u8] = b"system.posix_acl_access";
/// Name of the default ACL attribute (directories only).
pub const DEFAULT: &[u8] = b"system.posix_acl_default";

/// The only xattr format version (`POSIX_ACL_XATTR_VERSION`).
const VERSION: u32 = 2;
/// Bytes of the header (the version).
const HEADER: usize = 4;
/// Bytes of one entry: tag u16, perm u16, id u32, little-endian.
const ENTRY: usize = 8;
/// The id the kernel writes for entries that name nobody.
const UNDEFINED_ID: u32 = u32::MAX;
/// Largest ACL the FUSE kernel module passes either way (it refuses a
/// larger one with `E2BIG` before asking us, and reads ours into a page):
/// 511 entries. Also bounds what a request can make us store.
pub const MAX_BYTES: usize = 4096;

/// Entry tags.
pub const USER_OBJ: u16 = 0x01;
/// A named user.
pub const USER: u16 = 0x02;
/// The owning group.
pub const GROUP_OBJ: u16 = 0x04;
/// A named group.
pub const GROUP: u16 = 0x08;
/// The mask of named entries and the owning group.
pub const MASK: u16 = 0x10;
/// Everybody else.
pub const OTHER: u16 = 0x20;

/// One ACL entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AclEntry {
    /// One of the tags above.
    pub tag: u16,
    /// `rwx` bits, 0 to 7.
    pub perm: u16,
    /// User or group id of a named entry.
    pub id: u32,
}

/// A parsed, valid ACL (at least the three base entries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl(pub Vec<AclEntry>);

/// What an xattr value holds: an ACL, or nothing (a bare header, which the
/// kernel treats as removing the ACL).
pub fn parse(bytes: &[u8]) -> Result<Option<Acl>> {
    if bytes.len() < HEADER || bytes.len() > MAX_BYTES {
        return err(if bytes.len() > MAX_BYTES {
            libc::E2BIG
        } else {
            libc::EINVAL
        });
    }
    let version = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if version != VERSION {
        return err(libc::EOPNOTSUPP);
    }
    let body = &bytes[HEADER..];
    if !body.len().is_multiple_of(ENTRY) {
        return err(libc::EINVAL);
    }
    if body.is_empty() {
        return Ok(None);
    }
    let entries = body
        .chunks_exact(ENTRY)
        .map(|c| {
            let tag = u16::from_le_bytes([c[0], c[1]]);
            let id = match tag {
                USER | GROUP => u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                _ => UNDEFINED_ID,
            };
            AclEntry {
                tag,
                perm: u16::from_le_bytes([c[2], c[3]]),
                id,
            }
        })
        .collect();
    let acl = Acl(entries);
    acl.validate()?;
    Ok(Some(acl))
}

impl Acl {
    /// The kernel's rules (`posix_acl_from_xattr`, `posix_acl_valid`):
    /// known tags only, perms within `rwx`, the order `USER_OBJ`, `USER`...,
    /// `GROUP_OBJ`, `GROUP`..., `MASK`, `OTHER` with exactly one of each
    /// base entry, a `MASK` when there are named entries, and no named
    /// entry for the invalid id -1. Duplicate or unsorted ids are accepted,
    /// as the kernel accepts them.
    fn validate(&self) -> Result<()> {
        #[derive(PartialEq)]
        enum State {
            UserObj,
            User,
            Group,
            Other,
            Done,
        }
        let mut state = State::UserObj;
        let mut needs_mask = false;
        for e in &self.0 {
            if e.perm & !7 != 0 {
                return err(libc::EINVAL);
            }
            state = match (e.tag, state) {
                (USER_OBJ, State::UserObj) => State::User,
                (USER, State::User) if e.id != UNDEFINED_ID => {
                    needs_mask = true;
                    State::User
                }
                (GROUP_OBJ, State::User) => State::Group,
                (GROUP, State::Group) if e.id != UNDEFINED_ID => {
                    needs_mask = true;
                    State::Group
                }
                (MASK, State::Group) => State::Other,
                (OTHER, State::Other) => State::Done,
                (OTHER, State::Group) if !needs_mask => State::Done,
                _ => return err(libc::EINVAL),
            };
        }
        if state == State::Done {
            Ok(())
        } else {
            err(libc::EINVAL)
        }
    }

    /// The xattr value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + ENTRY * self.0.len());
        out.extend_from_slice(&VERSION.to_le_bytes());
        for e in &self.0 {
            out.extend_from_slice(&e.tag.to_le_bytes());
            out.extend_from_slice(&e.perm.to_le_bytes());
            out.extend_from_slice(&e.id.to_le_bytes());
        }
        out
    }

    /// `posix_acl_equiv_mode`: the permission bits (low 9) the ACL
    /// implies, and whether the mode says all of it (no named entries and
    /// no mask), in which case tmpfs stores no ACL at all.
    pub fn equiv_mode(&self) -> (u32, bool) {
        let mut mode = 0u32;
        let mut equiv = true;
        for e in &self.0 {
            let p = u32::from(e.perm & 7);
            match e.tag {
                USER_OBJ => mode |= p << 6,
                GROUP_OBJ => mode |= p << 3,
                OTHER => mode |= p,
                MASK => {
                    mode = (mode & !0o070) | (p << 3);
                    equiv = false;
                }
                _ => equiv = false,
            }
        }
        (mode, equiv)
    }

    /// `posix_acl_chmod`: the owner and other entries take the new mode's
    /// bits, and the mask (or, without one, the owning group) its group
    /// bits. Named entries are kept.
    pub fn chmod(&mut self, mode: u32) {
        let has_mask = self.0.iter().any(|e| e.tag == MASK);
        for e in &mut self.0 {
            match e.tag {
                USER_OBJ => e.perm = ((mode >> 6) & 7) as u16,
                OTHER => e.perm = (mode & 7) as u16,
                MASK => e.perm = ((mode >> 3) & 7) as u16,
                GROUP_OBJ if !has_mask => e.perm = ((mode >> 3) & 7) as u16,
                _ => {}
            }
        }
    }

    /// `posix_acl_create`, for a node created with requested permission
    /// bits `mode` (the umask does not apply) under a directory whose
    /// default ACL is `self`: returns the node's permission bits (`mode`'s
    /// bits above the low 9 are kept) and its access ACL, `None` when the
    /// mode says it all.
    pub fn create_from_default(&self, mode: u32) -> (u32, Option<Acl>) {
        let mut acl = self.clone();
        let mut mode = mode;
        let has_mask = acl.0.iter().any(|e| e.tag == MASK);
        let mut equiv = true;
        for e in &mut acl.0 {
            match e.tag {
                USER_OBJ => {
                    e.perm &= ((mode >> 6) & 7) as u16;
                    mode &= (u32::from(e.perm) << 6) | !0o700;
                }
                OTHER => {
                    e.perm &= (mode & 7) as u16;
                    mode &= u32::from(e.perm) | !0o007;
                }
                MASK => equiv = false,
                USER | GROUP => equiv = false,
                _ => {}
            }
        }
        for e in &mut acl.0 {
            if e.tag == MASK || (e.tag == GROUP_OBJ && !has_mask) {
                e.perm &= ((mode >> 3) & 7) as u16;
                mode &= (u32::from(e.perm) << 3) | !0o070;
            }
        }
        (mode, (!equiv).then_some(acl))
    }

    /// `posix_acl_permission`: whether a caller who is not the owner (and
    /// not root; the kernel consults the ACL only for others) with user
    /// `uid` and groups `in_group` may access for `want` (`rwx` bits).
    /// `gid` is the file's group (the `GROUP_OBJ` entry's group).
    pub fn permits(&self, uid: u32, gid: u32, in_group: impl Fn(u32) -> bool, want: u32) -> bool {
        let want = want & 7;
        let mask = self
            .0
            .iter()
            .find(|e| e.tag == MASK)
            .map_or(7, |e| u32::from(e.perm));
        let ok = |perm: u16| u32::from(perm) & want == want;
        let masked = |perm: u16| u32::from(perm) & mask & want == want;
        let mut found = false;
        for e in &self.0 {
            match e.tag {
                USER if e.id == uid => return masked(e.perm),
                GROUP_OBJ | GROUP => {
                    let g = if e.tag == GROUP_OBJ { gid } else { e.id };
                    if in_group(g) {
                        found = true;
                        if ok(e.perm) {
                            return masked(e.perm);
                        }
                    }
                }
                OTHER => return !found && ok(e.perm),
                _ => {}
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Acl {
        Acl(entries
            .iter()
            .map(|&(tag, perm, id)| AclEntry { tag, perm, id })
            .collect())
    }

    const U: u32 = UNDEFINED_ID;

    fn base(u: u16, g: u16, o: u16) -> Acl {
        acl(&[(USER_OBJ, u, U), (GROUP_OBJ, g, U), (OTHER, o, U)])
    }

    fn named() -> Acl {
        acl(&[
            (USER_OBJ, 7, U),
            (USER, 6, 1000),
            (GROUP_OBJ, 5, U),
            (GROUP, 4, 50),
            (MASK, 6, U),
            (OTHER, 1, U),
        ])
    }

    #[test]
    fn round_trip_and_canonical_ids() {
        let a = named();
        assert_eq!(parse(&a.encode()).unwrap(), Some(a.clone()));
        // Ids of entries that name nobody are normalized, as the kernel does.
        let mut raw = base(6, 4, 4).encode();
        raw[8..12].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(parse(&raw).unwrap(), Some(base(6, 4, 4)));
        assert_eq!(parse(&VERSION.to_le_bytes()).unwrap(), None, "bare header");
    }

    #[test]
    fn invalid_blobs() {
        let e = |b: &[u8]| parse(b).unwrap_err().code();
        assert_eq!(e(b"\x02\0\0"), libc::EINVAL, "short header");
        assert_eq!(e(&1u32.to_le_bytes()), libc::EOPNOTSUPP, "version");
        let mut odd = base(7, 5, 5).encode();
        odd.push(0);
        assert_eq!(e(&odd), libc::EINVAL, "partial entry");
        let big = vec![0u8; MAX_BYTES + 4];
        assert_eq!(e(&big), libc::E2BIG);
        let bad: &[&[(u16, u16, u32)]] = &[
            &[(USER_OBJ, 7, U), (GROUP_OBJ, 5, U)],
            &[(USER_OBJ, 8, U), (GROUP_OBJ, 5, U), (OTHER, 5, U)],
            &[(GROUP_OBJ, 5, U), (USER_OBJ, 7, U), (OTHER, 5, U)],
            &[
                (USER_OBJ, 7, U),
                (USER_OBJ, 7, U),
                (GROUP_OBJ, 5, U),
                (OTHER, 5, U),
            ],
            &[
                (USER_OBJ, 7, U),
                (USER, 7, 1),
                (GROUP_OBJ, 5, U),
                (OTHER, 5, U),
            ],
            &[
                (USER_OBJ, 7, U),
                (GROUP_OBJ, 5, U),
                (USER, 7, 1),
                (MASK, 7, U),
                (OTHER, 5, U),
            ],
            &[
                (USER_OBJ, 7, U),
                (USER, 7, U),
                (GROUP_OBJ, 5, U),
                (MASK, 7, U),
                (OTHER, 5, U),
            ],
            &[
                (USER_OBJ, 7, U),
                (GROUP_OBJ, 5, U),
                (OTHER, 5, U),
                (MASK, 7, U),
            ],
            &[
                (USER_OBJ, 7, U),
                (GROUP_OBJ, 5, U),
                (0x40, 5, U),
                (OTHER, 5, U),
            ],
            &[
                (USER_OBJ, 7, U),
                (GROUP_OBJ, 5, U),
                (OTHER, 5, U),
                (OTHER, 5, U),
            ],
        ];
        for b in bad {
            assert_eq!(e(&acl(b).encode()), libc::EINVAL, "{b:?}");
        }
        // The kernel accepts duplicate and unsorted named ids; so do we.
        let dup = acl(&[
            (USER_OBJ, 7, U),
            (USER, 7, 9),
            (USER, 5, 3),
            (USER, 5, 3),
            (GROUP_OBJ, 5, U),
            (MASK, 7, U),
            (OTHER, 5, U),
        ]);
        assert!(parse(&dup.encode()).unwrap().is_some());
        // A mask without named entries is valid.
        let m = acl(&[
            (USER_OBJ, 7, U),
            (GROUP_OBJ, 5, U),
            (MASK, 1, U),
            (OTHER, 5, U),
        ]);
        assert!(parse(&m.encode()).unwrap().is_some());
    }

    #[test]
    fn equiv_mode() {
        assert_eq!(base(6, 4, 0).equiv_mode(), (0o640, true));
        assert_eq!(named().equiv_mode(), (0o761, false));
        let m = acl(&[
            (USER_OBJ, 7, U),
            (GROUP_OBJ, 5, U),
            (MASK, 1, U),
            (OTHER, 5, U),
        ]);
        assert_eq!(m.equiv_mode(), (0o715, false));
    }

    #[test]
    fn chmod_rewrites_owner_mask_other() {
        let mut a = named();
        a.chmod(0o4750);
        assert_eq!(a.equiv_mode().0, 0o750);
        assert_eq!(a.0[1].perm, 6, "named user kept");
        assert_eq!(a.0[2].perm, 5, "group entry kept when there is a mask");
        assert_eq!(a.0[4].perm, 5, "mask from the group bits");
        let mut b = base(7, 7, 7);
        b.chmod(0o640);
        assert_eq!(b, base(6, 4, 0));
    }

    #[test]
    fn create_from_default() {
        // Without a mask: the group entry is ANDed with the group bits.
        let (m, a) = base(7, 5, 5).create_from_default(0o666);
        assert_eq!((m, a), (0o644, None));
        let (m, a) = named().create_from_default(0o777);
        assert_eq!(m, 0o761);
        assert_eq!(a.unwrap(), named());
        let (m, a) = named().create_from_default(0o640);
        assert_eq!(m, 0o640);
        let a = a.unwrap();
        assert_eq!(
            a.0.iter().map(|e| e.perm).collect::<Vec<_>>(),
            [6, 6, 5, 4, 4, 0]
        );
        // Bits above the permissions pass through.
        assert_eq!(base(7, 7, 7).create_from_default(0o2775).0, 0o2775);
    }

    #[test]
    fn permission_rules() {
        let a = named();
        let no = |_| false;
        // Named user: its entry, limited by the mask (6 & 6).
        assert!(a.permits(1000, 1, no, 6));
        assert!(!a.permits(1000, 1, no, 1));
        // Owning group member: 5 & mask 6 = 4.
        assert!(a.permits(2, 1, |g| g == 1, 4));
        assert!(!a.permits(2, 1, |g| g == 1, 1));
        // A matching group that lacks the bits denies; other is not tried.
        assert!(!a.permits(2, 1, |g| g == 50, 1));
        // Nobody matched: other.
        assert!(a.permits(2, 1, no, 1));
        assert!(!a.permits(2, 1, no, 4));
    }

    /// A model check: for every mode and a few ACL shapes, chmod then
    /// equiv_mode gives the mode back, and create_from_default never grants
    /// more than the requested mode.
    #[test]
    fn model_mode_consistency() {
        for mode in 0..0o1000u32 {
            for shape in [base(7, 7, 7), named()] {
                let mut a = shape.clone();
                a.chmod(mode);
                assert_eq!(a.equiv_mode().0, mode, "{mode:o}");
                let (m, _) = shape.create_from_default(mode);
                assert_eq!(m & !mode, 0, "{mode:o}");
            }
        }
    }
}
