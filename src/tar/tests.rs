//! Tar import and export on archives built in memory with the `tar` crate.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::tar::{Builder, EntryType, Header};

use super::*;
use crate::namespace::inode::ROOT_INO;
use crate::namespace::{Limits, Namespace, NewNode, SetAttr, XattrReply};

fn ns() -> Namespace {
    Namespace::new(0, 0, 0o755, Limits::from_options(Some(0), Some(0)))
}

fn limited(size: u64, inodes: u64) -> Namespace {
    Namespace::new(0, 0, 0o755, Limits::from_options(Some(size), Some(inodes)))
}

/// A ustar (or GNU) header for `kind` with the given mode, owner and mtime.
fn header(gnu: bool, kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = if gnu {
        Header::new_gnu()
    } else {
        Header::new_ustar()
    };
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(1000);
    h.set_gid(100);
    h.set_mtime(1_600_000_000);
    h.set_size(size);
    h
}

fn lookup(ns: &Namespace, path: &str) -> Option<u64> {
    let mut ino = ROOT_INO;
    for c in path.split('/').filter(|c| !c.is_empty()) {
        ino = ns.child_ino(ino, OsStr::new(c)).ok()?;
    }
    Some(ino)
}

fn content(ns: &Namespace, ino: u64) -> Vec<u8> {
    let size = ns.size(ino).unwrap();
    ns.read(ino, 0, size as u32).unwrap()
}

fn xattr(ns: &Namespace, ino: u64, name: &str) -> Option<Vec<u8>> {
    match ns.getxattr(ino, OsStr::new(name), u32::MAX) {
        Ok(XattrReply::Data(v)) => Some(v),
        _ => None,
    }
}

fn secs(t: SystemTime) -> (i64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap();
    (d.as_secs() as i64, d.subsec_nanos())
}

/// An archive of every member type, GNU long names and pax records.
fn every_type() -> Vec<u8> {
    let mut b = Builder::new(Vec::new());
    let mut h = header(false, EntryType::Directory, 0o2750, 0);
    b.append_data(&mut h, "./d/", &[][..]).unwrap();
    let mut h = header(false, EntryType::Regular, 0o4755, 5);
    b.append_data(&mut h, "d/f", &b"hello"[..]).unwrap();
    let mut h = header(false, EntryType::Link, 0o644, 0);
    b.append_link(&mut h, "d/hard", "d/f").unwrap();
    // An absolute name, written raw (the crate's setters refuse it).
    let mut h = header(false, EntryType::Symlink, 0o777, 0);
    let u = h.as_ustar_mut().unwrap();
    u.name[..8].copy_from_slice(b"/abs/sym");
    u.linkname[..9].copy_from_slice(b"../target");
    h.set_cksum();
    b.append(&h, &[][..]).unwrap();
    let mut h = header(false, EntryType::Fifo, 0o600, 0);
    b.append_data(&mut h, "fifo", &[][..]).unwrap();
    let mut h = header(false, EntryType::Char, 0o620, 0);
    h.set_device_major(4).unwrap();
    h.set_device_minor(300).unwrap();
    b.append_data(&mut h, "tty", &[][..]).unwrap();
    let mut h = header(false, EntryType::Block, 0o660, 0);
    h.set_device_major(8).unwrap();
    h.set_device_minor(1).unwrap();
    b.append_data(&mut h, "sda1", &[][..]).unwrap();
    // A GNU long name (the crate writes an 'L' member for it).
    let long = format!("{}/{}", "x".repeat(150), "y".repeat(120));
    let mut h = header(true, EntryType::Regular, 0o600, 3);
    b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
    // pax: nanosecond mtime, extended attributes (one with '=' in its
    // name, encoded as GNU tar does), a path longer than 100 bytes.
    let pax_path = format!("p/{}", "z".repeat(200));
    b.append_pax_extensions([
        ("mtime", &b"1600000000.123456789"[..]),
        ("SCHILY.xattr.user.k", b"v\n\0bin"),
        ("SCHILY.xattr.user.a%3Db", b"eq"),
        ("path", pax_path.as_bytes()),
    ])
    .unwrap();
    let mut h = header(false, EntryType::Regular, 0o640, 2);
    b.append_data(&mut h, "short-name", &b"pp"[..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn every_member_type_loads() {
    let mut ns = ns();
    let sum = import(&mut ns, &every_type()[..]).unwrap();
    assert_eq!(sum.members, 9);
    let d = lookup(&ns, "d").unwrap();
    let a = ns.attr(d).unwrap();
    assert_eq!((a.perm, a.uid, a.gid), (0o2750, 1000, 100));
    assert_eq!(
        secs(a.mtime),
        (1_600_000_000, 0),
        "the archive's, not the load's"
    );
    let f = lookup(&ns, "d/f").unwrap();
    let a = ns.attr(f).unwrap();
    assert_eq!((a.perm, a.uid, a.gid, a.nlink), (0o4755, 1000, 100, 2));
    assert_eq!(content(&ns, f), b"hello");
    assert_eq!(lookup(&ns, "d/hard"), Some(f));
    let s = lookup(&ns, "abs/sym").unwrap();
    assert_eq!(ns.readlink(s).unwrap(), b"../target");
    let abs = ns.attr(lookup(&ns, "abs").unwrap()).unwrap();
    assert_eq!(
        (abs.perm, abs.uid, abs.gid),
        (0o755, 0, 0),
        "a created parent"
    );
    let fifo = ns.attr(lookup(&ns, "fifo").unwrap()).unwrap();
    assert_eq!((fifo.kind, fifo.perm), (fuser::FileType::NamedPipe, 0o600));
    let tty = ns.attr(lookup(&ns, "tty").unwrap()).unwrap();
    assert_eq!(tty.kind, fuser::FileType::CharDevice);
    assert_eq!(decode_dev(tty.rdev), (4, 300));
    let sda = ns.attr(lookup(&ns, "sda1").unwrap()).unwrap();
    assert_eq!(sda.kind, fuser::FileType::BlockDevice);
    assert_eq!(decode_dev(sda.rdev), (8, 1));
    let long = format!("{}/{}", "x".repeat(150), "y".repeat(120));
    assert_eq!(content(&ns, lookup(&ns, &long).unwrap()), b"abc");
    let p = lookup(&ns, &format!("p/{}", "z".repeat(200))).unwrap();
    assert_eq!(lookup(&ns, "short-name"), None, "pax path wins");
    assert_eq!(content(&ns, p), b"pp");
    assert_eq!(
        secs(ns.attr(p).unwrap().mtime),
        (1_600_000_000, 123_456_789)
    );
    assert_eq!(xattr(&ns, p, "user.k").unwrap(), b"v\n\0bin");
    assert_eq!(xattr(&ns, p, "user.a=b").unwrap(), b"eq");
    ns.check().unwrap();
}

#[test]
fn pax_values_with_newlines_are_read_by_their_lengths() {
    // A value that holds what looks like a `path` record after a newline:
    // only the length prefix says where a record ends.
    let mut b = Builder::new(Vec::new());
    b.append_pax_extensions([
        ("SCHILY.xattr.user.trap", &b"x\n13 path=evil\n"[..]),
        (
            "SCHILY.xattr.system.posix_acl_access",
            &[
                2u8, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff, 2, 0, 6, 0, 10, 0, 0, 0, 4, 0, 4,
                0, 0xff, 0xff, 0xff, 0xff, 0x10, 0, 6, 0, 0xff, 0xff, 0xff, 0xff, 0x20, 0, 4, 0,
                0xff, 0xff, 0xff, 0xff,
            ][..],
        ),
    ])
    .unwrap();
    let mut h = header(false, EntryType::Regular, 0o664, 0);
    b.append_data(&mut h, "good", &[][..]).unwrap();
    let mut ns = ns();
    import(&mut ns, &b.into_inner().unwrap()[..]).unwrap();
    assert_eq!(lookup(&ns, "evil"), None);
    let f = lookup(&ns, "good").unwrap();
    assert_eq!(xattr(&ns, f, "user.trap").unwrap(), b"x\n13 path=evil\n");
    let acl = xattr(&ns, f, "system.posix_acl_access").unwrap();
    assert_eq!(acl[16], 10, "user 10 (a newline byte) kept");
    assert_eq!(ns.attr(f).unwrap().perm, 0o664);
}

#[test]
fn device_numbers_round_trip_the_kernel_encoding() {
    for (ma, mi) in [(0, 0), (4, 300), (8, 1), (0xfff, 0xfffff), (259, 65536)] {
        assert_eq!(decode_dev(encode_dev(ma, mi)), (ma, mi));
    }
    // The kernel's new_encode_dev of 8:1 and 4:300.
    assert_eq!(encode_dev(8, 1), 0x801);
    assert_eq!(
        encode_dev(4, 300),
        (300 & 0xff) | (4 << 8) | ((300 & !0xff) << 12)
    );
}

#[test]
fn pax_times_parse_and_format() {
    assert_eq!(parse_pax_time(b"12"), Some((12, 0)));
    assert_eq!(parse_pax_time(b"12.5"), Some((12, 500_000_000)));
    assert_eq!(parse_pax_time(b"12.1234567891"), Some((12, 123_456_789)));
    assert_eq!(parse_pax_time(b"-1.25"), Some((-2, 750_000_000)));
    assert_eq!(parse_pax_time(b"-3"), Some((-3, 0)));
    for bad in [
        &b""[..],
        b"x",
        b"1.2.3",
        b"-",
        b".5",
        b"1e3",
        b"99999999999999999999",
    ] {
        assert_eq!(parse_pax_time(bad), None, "{:?}", bad);
    }
    // 19 digits: the largest times (found by fuzzing: a GNU base-256 mtime
    // exported as pax must load again).
    assert_eq!(
        parse_pax_time(b"3689346602850398464"),
        Some((3_689_346_602_850_398_464, 0))
    );
    assert_eq!(parse_pax_time(b"9223372036854775808"), None);
    for t in [
        (0, 0),
        (12, 5),
        (-2, 750_000_000),
        (-1, 1),
        (1 << 40, 999_999_999),
        (i64::MAX, 999_999_999),
        (i64::MIN + 1, 1),
    ] {
        assert_eq!(
            parse_pax_time(format_pax_time(t.0, t.1).as_bytes()),
            Some(t)
        );
    }
    assert_eq!(decode_xattr_key(&encode_xattr_key(b"a=%b")), b"a=%b");
}

#[test]
fn directory_attributes_are_set_after_its_members() {
    // A directory, then a file in it: the file's creation must not leave
    // the directory with the load time as mtime; a default ACL on the
    // directory must not reach the file created inside it.
    let acl_default = [
        2u8, 0, 0, 0, // version
        1, 0, 7, 0, 0xff, 0xff, 0xff, 0xff, // user::rwx
        4, 0, 5, 0, 0xff, 0xff, 0xff, 0xff, // group::r-x
        0x20, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, // other::---
    ];
    let mut b = Builder::new(Vec::new());
    b.append_pax_extensions([("SCHILY.xattr.system.posix_acl_default", &acl_default[..])])
        .unwrap();
    let mut h = header(false, EntryType::Directory, 0o555, 0);
    b.append_data(&mut h, "ro/", &[][..]).unwrap();
    let mut h = header(false, EntryType::Regular, 0o666, 1);
    b.append_data(&mut h, "ro/f", &b"x"[..]).unwrap();
    // Listed again, later: the later attributes win.
    let mut h = header(false, EntryType::Directory, 0o500, 0);
    h.set_mtime(1_700_000_000);
    b.append_data(&mut h, "ro", &[][..]).unwrap();
    let mut h = header(false, EntryType::Regular, 0o600, 0);
    b.append_data(&mut h, "after", &[][..]).unwrap();
    let data = b.into_inner().unwrap();
    let mut ns = ns();
    import(&mut ns, &data[..]).unwrap();
    let ro = lookup(&ns, "ro").unwrap();
    let a = ns.attr(ro).unwrap();
    assert_eq!(a.perm, 0o500);
    assert_eq!(secs(a.mtime), (1_700_000_000, 0));
    assert!(xattr(&ns, ro, "system.posix_acl_default").is_some());
    let f = lookup(&ns, "ro/f").unwrap();
    assert_eq!(ns.attr(f).unwrap().perm, 0o666, "no default ACL applied");
    assert_eq!(xattr(&ns, f, "system.posix_acl_access"), None);
    let root = ns.attr(ROOT_INO).unwrap();
    assert_eq!(root.perm, 0o755, "no root member: the root is unchanged");
}

#[test]
fn the_root_member_sets_the_roots_attributes() {
    let mut b = Builder::new(Vec::new());
    let mut h = header(false, EntryType::Directory, 0o1777, 0);
    b.append_data(&mut h, "./", &[][..]).unwrap();
    let mut h = header(false, EntryType::Regular, 0o644, 0);
    b.append_data(&mut h, "./a", &[][..]).unwrap();
    let mut ns = ns();
    import(&mut ns, &b.into_inner().unwrap()[..]).unwrap();
    let r = ns.attr(ROOT_INO).unwrap();
    assert_eq!((r.perm, r.uid, r.gid), (0o1777, 1000, 100));
    assert_eq!(secs(r.mtime), (1_600_000_000, 0));
}

#[test]
fn a_later_file_replaces_an_earlier_one() {
    let mut b = Builder::new(Vec::new());
    let mut h = header(false, EntryType::Regular, 0o644, 3);
    b.append_data(&mut h, "f", &b"old"[..]).unwrap();
    let mut h = header(false, EntryType::Link, 0o644, 0);
    b.append_link(&mut h, "keep", "f").unwrap();
    let mut h = header(false, EntryType::Symlink, 0o777, 0);
    b.append_link(&mut h, "f", "elsewhere").unwrap();
    let mut ns = ns();
    import(&mut ns, &b.into_inner().unwrap()[..]).unwrap();
    let f = lookup(&ns, "f").unwrap();
    assert_eq!(ns.readlink(f).unwrap(), b"elsewhere");
    let keep = lookup(&ns, "keep").unwrap();
    assert_eq!(content(&ns, keep), b"old");
    assert_eq!(ns.attr(keep).unwrap().nlink, 1);
    ns.check().unwrap();
}

/// The error of loading `data` into a fresh namespace.
fn refused(data: &[u8]) -> ImportError {
    import(&mut ns(), data).unwrap_err()
}

fn one(kind: EntryType, path: &[u8], link: Option<&[u8]>, data: &[u8]) -> Vec<u8> {
    let mut b = Builder::new(Vec::new());
    let mut h = header(false, kind, 0o644, data.len() as u64);
    // Written raw: the crate's setters refuse what these tests need.
    let u = h.as_ustar_mut().unwrap();
    u.name[..path.len()].copy_from_slice(path);
    if let Some(l) = link {
        u.linkname[..l.len()].copy_from_slice(l);
    }
    h.set_cksum();
    b.append(&h, data).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn bad_members_are_refused_with_their_name() {
    let e = refused(&one(EntryType::Regular, b"a/../b", None, b""));
    assert_eq!(e.member.as_deref(), Some("a/../b"));
    assert!(e.reason.contains("'..'"), "{e}");
    let e = refused(&one(EntryType::Link, b"x", Some(b"missing"), b""));
    assert!(e.to_string().contains("no earlier member"), "{e}");
    assert!(e.to_string().starts_with("member 'x' (at byte 0)"), "{e}");
    let e = refused(&one(EntryType::new(b'Z'), b"z", None, b""));
    assert!(e.reason.contains("unsupported member type 'Z'"), "{e}");
    // A name over 255 bytes, through pax.
    let mut b = Builder::new(Vec::new());
    let long = "n".repeat(256);
    b.append_pax_extensions([("path", long.as_bytes())])
        .unwrap();
    let mut h = header(false, EntryType::Regular, 0o644, 0);
    b.append_data(&mut h, "short", &[][..]).unwrap();
    let e = refused(&b.into_inner().unwrap());
    assert!(e.reason.contains("longer than 255 bytes"), "{e}");
    // NUL in a pax path.
    let mut b = Builder::new(Vec::new());
    b.append_pax_extensions([("path", &b"a\0b"[..])]).unwrap();
    let mut h = header(false, EntryType::Regular, 0o644, 0);
    b.append_data(&mut h, "short", &[][..]).unwrap();
    let e = refused(&b.into_inner().unwrap());
    assert!(e.reason.contains("NUL"), "{e}");
    // A file where a directory is, and a path through a file.
    let mut b = Builder::new(Vec::new());
    let mut h = header(false, EntryType::Directory, 0o755, 0);
    b.append_data(&mut h, "d", &[][..]).unwrap();
    let mut h = header(false, EntryType::Regular, 0o644, 0);
    b.append_data(&mut h, "d", &[][..]).unwrap();
    let e = refused(&b.into_inner().unwrap());
    assert!(e.reason.contains("directory of that name exists"), "{e}");
    let mut b = Builder::new(Vec::new());
    let mut h = header(false, EntryType::Regular, 0o644, 0);
    b.append_data(&mut h, "f", &[][..]).unwrap();
    let mut h = header(false, EntryType::Regular, 0o644, 0);
    b.append_data(&mut h, "f/g", &[][..]).unwrap();
    let e = refused(&b.into_inner().unwrap());
    assert_eq!(e.member.as_deref(), Some("f/g"));
    assert!(e.reason.contains("not a directory"), "{e}");
    assert_eq!(e.offset, 512, "the second member's header");
    // A symlink with an empty target (through an empty GNU long link).
    let mut b = Builder::new(Vec::new());
    let mut k = Header::new_gnu();
    k.set_entry_type(EntryType::GNULongLink);
    k.set_size(0);
    k.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    k.set_cksum();
    b.append(&k, &[][..]).unwrap();
    let mut h = header(true, EntryType::Symlink, 0o777, 0);
    h.as_gnu_mut().unwrap().name[..1].copy_from_slice(b"s");
    h.set_cksum();
    b.append(&h, &[][..]).unwrap();
    let e = refused(&b.into_inner().unwrap());
    assert!(e.reason.contains("symlink without a target"), "{e}");
    // A path through a symlink, even one to a directory of the tree.
    let mut b = Builder::new(Vec::new());
    let mut h = header(false, EntryType::Directory, 0o755, 0);
    b.append_data(&mut h, "d", &[][..]).unwrap();
    let mut h = header(false, EntryType::Symlink, 0o777, 0);
    b.append_link(&mut h, "s", "d").unwrap();
    let mut h = header(false, EntryType::Regular, 0o644, 0);
    b.append_data(&mut h, "s/x", &[][..]).unwrap();
    let e = refused(&b.into_inner().unwrap());
    assert_eq!(e.member.as_deref(), Some("s/x"));
    assert!(e.reason.contains("not a directory"), "{e}");
}

#[test]
fn corrupt_and_truncated_archives_are_refused() {
    let good = every_type();
    // A flipped byte in the first header: its checksum fails.
    let mut bad = good.clone();
    bad[10] ^= 0x55;
    let e = refused(&bad);
    assert!(e.reason.contains("checksum"), "{e}");
    assert_eq!(e.offset, 0);
    // Cut in the middle of a member's data, of a header, at a member
    // boundary (no end-of-archive blocks), and empty.
    let e = refused(&good[..1024 + 3]);
    assert!(e.reason.contains("truncated"), "{e}");
    let e = refused(&good[..1024 + 512 + 100]);
    assert!(e.reason.contains("truncated"), "{e}");
    let e = refused(&good[..1024 + 512]);
    assert!(e.reason.contains("truncated"), "{e}");
    let e = refused(&[]);
    assert!(e.reason.contains("truncated"), "{e}");
    // Garbage that is not a tar header at all.
    let e = refused(&[b'x'; 4096]);
    assert!(e.reason.starts_with("corrupt archive"), "{e}");
    // Only the end-of-archive blocks: an empty tree.
    let mut ns = ns();
    assert_eq!(import(&mut ns, &[0u8; 1024][..]).unwrap().members, 0);
}

#[test]
fn huge_extension_headers_are_refused_without_reading_them_whole() {
    // A GNU long name member claiming 8 GiB: refused once the budget is
    // spent, not read into memory.
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::GNULongName);
    h.set_size(8 << 30);
    h.set_cksum();
    let mut data = h.as_bytes().to_vec();
    data.resize(data.len() + (import::MAX_MEMBER_META as usize) + 4096, b'a');
    let e = refused(&data);
    assert!(e.reason.contains("headers"), "{e}");
}

#[test]
fn limits_are_enforced_and_name_the_member() {
    // Size: 1 page of data allowed.
    let mut b = Builder::new(Vec::new());
    let mut h = header(false, EntryType::Regular, 0o644, 10_000);
    b.append_data(&mut h, "big", &vec![7u8; 10_000][..])
        .unwrap();
    let data = b.into_inner().unwrap();
    let e = import(&mut limited(4096, 0), &data[..]).unwrap_err();
    assert_eq!(e.member.as_deref(), Some("big"));
    assert_eq!(e.errno.map(|e| e.code()), Some(libc::ENOSPC));
    assert!(e.reason.contains("size limit"), "{e}");
    // Inodes: room for the root and 2 more.
    let mut b = Builder::new(Vec::new());
    for i in 0..5 {
        let mut h = header(false, EntryType::Regular, 0o644, 0);
        b.append_data(&mut h, format!("f{i}"), &[][..]).unwrap();
    }
    let e = import(&mut limited(0, 3), &b.into_inner().unwrap()[..]).unwrap_err();
    assert_eq!(e.member.as_deref(), Some("f2"));
    assert_eq!(e.errno.map(|e| e.code()), Some(libc::ENOSPC));
    assert!(e.reason.contains("inode limit"), "{e}");
}

#[test]
fn a_directorys_attributes_past_the_limit_name_the_directory() {
    // Its extended attribute is set once the archive is done with it.
    let mut b = Builder::new(Vec::new());
    let value = vec![b'v'; 2000];
    b.append_pax_extensions([("SCHILY.xattr.user.big", &value[..])])
        .unwrap();
    let mut h = header(false, EntryType::Directory, 0o755, 0);
    b.append_data(&mut h, "d/", &[][..]).unwrap();
    let e = import(&mut limited(0, 3), &b.into_inner().unwrap()[..]).unwrap_err();
    assert_eq!(e.errno.map(|e| e.code()), Some(libc::ENOSPC));
    assert!(e.reason.contains("directory 'd'"), "{e}");
    assert!(e.reason.contains("inode limit"), "{e}");
}

#[test]
fn gnu_sparse_members_keep_their_holes() {
    // An old-GNU sparse member: 8 KiB of data at 1 MiB in a 2 MiB file.
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::GNUSparse);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(8192);
    {
        let g = h.as_gnu_mut().unwrap();
        let put = |f: &mut [u8], v: u64| {
            let s = format!("{:0w$o}", v, w = f.len() - 1);
            f[..s.len()].copy_from_slice(s.as_bytes());
        };
        put(&mut g.sparse[0].offset, 1 << 20);
        put(&mut g.sparse[0].numbytes, 8192);
        // GNU tar ends the map with an empty chunk at the real size.
        put(&mut g.sparse[1].offset, 2 << 20);
        put(&mut g.sparse[1].numbytes, 0);
        put(&mut g.realsize, 2 << 20);
        g.name[..6].copy_from_slice(b"sparse");
    }
    h.set_cksum();
    let mut data = h.as_bytes().to_vec();
    data.extend(std::iter::repeat_n(9u8, 8192));
    data.extend([0u8; 1024]);
    let mut ns = ns();
    import(&mut ns, &data[..]).unwrap();
    let f = lookup(&ns, "sparse").unwrap();
    let a = ns.attr(f).unwrap();
    assert_eq!(a.size, 2 << 20);
    assert_eq!(a.blocks, 16, "only the data pages are stored");
    assert_eq!(ns.read(f, (1 << 20) - 1, 2).unwrap(), [0, 9]);
    assert_eq!(ns.read(f, (2 << 20) - 1, 1).unwrap(), [0]);
}

/// A namespace with every kind of file, long names, xattrs, hard links.
fn sample() -> Namespace {
    let mut ns = ns();
    let node = |kind, perm| NewNode {
        kind,
        perm,
        uid: 1234,
        gid: 4321,
        rdev: 0,
        target: None,
    };
    use crate::namespace::inode::Kind;
    let d = ns
        .create_node(ROOT_INO, OsStr::new("dir"), node(Kind::Directory, 0o3775))
        .unwrap()
        .attr
        .ino
        .0;
    let long_dir = "L".repeat(200);
    let ld = ns
        .create_node(d, OsStr::new(&long_dir), node(Kind::Directory, 0o700))
        .unwrap()
        .attr
        .ino
        .0;
    let f = ns
        .create_node(ld, OsStr::new("file"), node(Kind::RegularFile, 0o4751))
        .unwrap()
        .attr
        .ino
        .0;
    let body: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    ns.write(f, 0, &body).unwrap();
    ns.setxattr(f, OsStr::new("user.note"), b"\x00\xffbinary", 0)
        .unwrap();
    ns.setxattr(f, OsStr::new("trusted.x=y"), b"t", 0).unwrap();
    ns.link(f, ROOT_INO, OsStr::new("hardlink")).unwrap();
    let sparse = ns
        .create_node(
            ROOT_INO,
            OsStr::new("sparse"),
            node(Kind::RegularFile, 0o600),
        )
        .unwrap()
        .attr
        .ino
        .0;
    ns.write(sparse, 100_000, b"end").unwrap();
    let mut sym = node(Kind::Symlink, 0o777);
    let target = "T".repeat(150);
    sym.target = Some(target.as_bytes());
    ns.create_node(d, OsStr::new("sym"), sym).unwrap();
    let mut dev = node(Kind::BlockDevice, 0o640);
    dev.rdev = encode_dev(259, 70000);
    ns.create_node(ROOT_INO, OsStr::new("dev"), dev).unwrap();
    ns.create_node(ROOT_INO, OsStr::new("fifo"), node(Kind::Fifo, 0o610))
        .unwrap();
    ns.create_node(
        ROOT_INO,
        OsStr::from_bytes(b"not-utf8-\xff"),
        node(Kind::RegularFile, 0o644),
    )
    .unwrap();
    // Long and not UTF-8: through a pax record of raw bytes.
    let mut long = b"long-not-utf8-\xfe".to_vec();
    long.resize(180, b'q');
    ns.create_node(ROOT_INO, OsStr::from_bytes(&long), node(Kind::Fifo, 0o644))
        .unwrap();
    ns.create_node(ROOT_INO, OsStr::new("sock"), node(Kind::Socket, 0o644))
        .unwrap();
    // Times: one with nanoseconds, one before 1970, one far ahead.
    let times = [
        (f, UNIX_EPOCH + Duration::new(1_650_000_000, 987_654_321)),
        (d, UNIX_EPOCH - Duration::new(86_400, 250_000_000)),
        (ld, UNIX_EPOCH + Duration::from_secs(1 << 34)),
    ];
    for (ino, t) in times {
        ns.setattr(
            ino,
            SetAttr {
                mtime: Some(fuser::TimeOrNow::SpecificTime(t)),
                ..SetAttr::default()
            },
        )
        .unwrap();
    }
    ns.setattr(
        ROOT_INO,
        SetAttr {
            mode: Some(0o1770),
            uid: Some(7),
            ..SetAttr::default()
        },
    )
    .unwrap();
    ns
}

/// Every name of `ns` with what `find -printf '%P %y %m %U %G %s %n %T@
/// %l'` shows of it, its data and its extended attributes, sorted.
fn listing(ns: &Namespace) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![(ROOT_INO, Vec::<u8>::new())];
    while let Some((dir, path)) = stack.pop() {
        let a = ns.attr(dir).unwrap();
        out.push(describe(ns, dir, &path, &a));
        let kids: Vec<(Vec<u8>, u64)> = ns
            .entries_after(dir, None)
            .unwrap()
            .map(|(n, ino, _)| (n.as_bytes().to_vec(), ino))
            .collect();
        for (name, ino) in kids {
            let mut p = path.clone();
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(&name);
            let a = ns.attr(ino).unwrap();
            if a.kind == fuser::FileType::Directory {
                stack.push((ino, p));
            } else {
                out.push(describe(ns, ino, &p, &a));
            }
        }
    }
    out.sort();
    out
}

fn describe(ns: &Namespace, ino: u64, path: &[u8], a: &fuser::FileAttr) -> String {
    let mut s = format!(
        "{} {:?} {:o} {} {} {} {} {:?} rdev={}",
        String::from_utf8_lossy(path),
        a.kind,
        a.perm,
        a.uid,
        a.gid,
        if a.kind == fuser::FileType::Directory {
            0
        } else {
            a.size
        },
        a.nlink,
        a.mtime,
        a.rdev
    );
    if a.kind == fuser::FileType::Symlink {
        s += &format!(" -> {}", String::from_utf8_lossy(ns.readlink(ino).unwrap()));
    }
    if a.kind == fuser::FileType::RegularFile {
        let data = content(ns, ino);
        s += &format!(" data={:x}", crc32fast::hash(&data));
    }
    if let Ok(XattrReply::Data(names)) = ns.listxattr(ino, u32::MAX) {
        for n in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            let v = xattr(ns, ino, std::str::from_utf8(n).unwrap()).unwrap();
            s += &format!(" {}={:?}", String::from_utf8_lossy(n), v);
        }
    }
    s
}

#[test]
fn export_then_import_gives_the_same_tree() {
    let src = sample();
    let mut tar = Vec::new();
    let len = write_all(&src, &mut tar).unwrap();
    assert_eq!(len, tar.len() as u64);
    assert_eq!(tar.len() % 512, 0);
    let mut dst = ns();
    import(&mut dst, &tar[..]).unwrap();
    let mut want = listing(&src);
    // Sockets are left out, as GNU tar leaves them out.
    want.retain(|l| !l.starts_with("sock "));
    assert_eq!(listing(&dst), want);
    dst.check().unwrap();
}

#[test]
fn pages_of_any_size_make_the_same_archive() {
    let ns = sample();
    let mut whole = Vec::new();
    write_all(&ns, &mut whole).unwrap();
    let plan = ExportPlan::new(&ns);
    for limit in [1usize, 7, 511, 512, 513, 4096, 16 << 10, 1 << 20] {
        let mut out = Vec::new();
        let mut cursor = Cursor::START;
        let mut pages = 0;
        loop {
            let before = out.len();
            let next = plan.page(&ns, cursor, limit, &mut out).unwrap();
            assert!(out.len() - before <= limit);
            pages += 1;
            match next {
                // A cursor survives its bytes.
                Some(c) => cursor = Cursor::from_bytes(&c.to_bytes()).unwrap(),
                None => break,
            }
        }
        assert_eq!(out, whole, "pages of {limit} bytes");
        assert!(pages >= whole.len() / limit);
    }
}

#[test]
fn bad_cursors_are_errors() {
    let ns = sample();
    let plan = ExportPlan::new(&ns);
    let mut out = Vec::new();
    let n = plan.len() as u64;
    for c in [
        Cursor {
            entry: n + 1,
            offset: 0,
        },
        Cursor {
            entry: n,
            offset: 1024,
        },
        Cursor {
            entry: 0,
            offset: u64::MAX,
        },
        Cursor {
            entry: u64::MAX,
            offset: 0,
        },
    ] {
        let e = plan.page(&ns, c, 100, &mut out).unwrap_err();
        assert_eq!(e.code(), libc::EINVAL, "{c:?}");
    }
    assert_eq!(
        plan.page(&ns, Cursor::START, 0, &mut out)
            .unwrap_err()
            .code(),
        libc::EINVAL
    );
    assert!(Cursor::from_bytes(&[0u8; 15]).is_err());
    assert!(Cursor::from_bytes(&[0u8; 17]).is_err());
    let c = Cursor {
        entry: 3,
        offset: 77,
    };
    assert_eq!(Cursor::from_bytes(&c.to_bytes()).unwrap(), c);
    // The end: the last two blocks, then nothing more.
    let last = Cursor {
        entry: n,
        offset: 1000,
    };
    out.clear();
    assert_eq!(plan.page(&ns, last, 100, &mut out).unwrap(), None);
    assert_eq!(out, vec![0u8; 24]);
}

#[test]
fn hard_links_follow_the_first_name() {
    let ns = sample();
    let mut tar = Vec::new();
    write_all(&ns, &mut tar).unwrap();
    let mut a = ::tar::Archive::new(&tar[..]);
    let mut seen = Vec::new();
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        let kind = e.header().entry_type();
        let link = e.link_name_bytes().map(|l| l.into_owned());
        seen.push((e.path_bytes().into_owned(), kind, link));
    }
    assert_eq!(seen[0].0, b"./");
    // "dir/LLL.../file" sorts after "dev" and "dir" but before "hardlink",
    // so the file's data is under its first name in archive order.
    let file = format!("dir/{}/file", "L".repeat(200));
    let i = seen
        .iter()
        .position(|(p, _, _)| p == file.as_bytes())
        .unwrap();
    let h = seen.iter().position(|(p, _, _)| p == b"hardlink").unwrap();
    assert!(i < h);
    assert_eq!(seen[i].1, EntryType::Regular);
    assert_eq!(seen[h].1, EntryType::Link);
    assert_eq!(seen[h].2.as_deref(), Some(file.as_bytes()));
    assert!(!seen.iter().any(|(p, _, _)| p == b"sock"));
}

#[test]
fn prefetch_reads_the_same_bytes_and_passes_errors_on() {
    use std::io::Read;
    let data: Vec<u8> = (0..(3 * Prefetch::BLOCK + 12345))
        .map(|i| (i % 253) as u8)
        .collect();
    let mut p = Prefetch::new(std::io::Cursor::new(data.clone())).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 70_001];
    loop {
        let n = p.read(&mut buf[..(got.len() % 70_000) + 1]).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got == data);
    assert_eq!(p.read(&mut buf).unwrap(), 0, "the end stays the end");
    // A source that fails after some bytes: the bytes, then the error.
    struct Failing(usize);
    impl std::io::Read for Failing {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = b.len().min(self.0);
            b[..n].fill(1);
            self.0 -= n;
            Ok(n)
        }
    }
    let mut p = Prefetch::new(Failing(5000)).unwrap();
    let mut out = Vec::new();
    let e = p.read_to_end(&mut out).unwrap_err();
    assert!(e.to_string().contains("disk on fire"));
    // An archive loaded through it.
    let mut ns = ns();
    import(
        &mut ns,
        Prefetch::new(std::io::Cursor::new(every_type())).unwrap(),
    )
    .unwrap();
    assert!(lookup(&ns, "d/f").is_some());
}

/// A small deterministic generator (xorshift), for the damage below.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn damaged_archives_never_panic_and_leave_a_sound_namespace() {
    // The archives of the tests above, then of the sample namespace:
    // bytes flipped (headers, pax records, data), cut anywhere, blocks
    // repeated. Every outcome is a load or an error, and the namespace's
    // invariants hold either way.
    let mut sources = vec![every_type()];
    let mut exported = Vec::new();
    write_all(&sample(), &mut exported).unwrap();
    sources.push(exported);
    let mut rng = Lcg(0x9e37_79b9_7f4a_7c15);
    for round in 0..600 {
        let src = &sources[round % sources.len()];
        let mut bad = src.clone();
        match round % 3 {
            0 => {
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(bad.len());
                    bad[i] = rng.next() as u8;
                }
            }
            1 => bad.truncate(rng.below(bad.len())),
            _ => {
                let b = rng.below(bad.len() / 512) * 512;
                let block = bad[b..b + 512].to_vec();
                let at = rng.below(bad.len() / 512) * 512;
                bad.splice(at..at, block);
            }
        }
        let mut ns = ns();
        let _ = import(&mut ns, &bad[..]);
        ns.check()
            .unwrap_or_else(|e| panic!("round {round}: invariants broken: {e:?}"));
        // And what did load exports again.
        let mut again = Vec::new();
        write_all(&ns, &mut again).unwrap();
    }
}

#[test]
fn random_cursors_are_errors_or_pages_never_panics() {
    let ns = sample();
    let plan = ExportPlan::new(&ns);
    let mut rng = Lcg(12345);
    let mut out = Vec::new();
    for _ in 0..2000 {
        let mut b = [0u8; Cursor::SIZE];
        for x in b.iter_mut() {
            *x = rng.next() as u8;
        }
        // Small values too, where valid cursors are.
        if rng.below(2) == 0 {
            b[1..8].fill(0);
            b[10..].fill(0);
            b[0] %= plan.len() as u8 + 2;
        }
        let c = Cursor::from_bytes(&b).unwrap();
        out.clear();
        match plan.page(&ns, c, 1 + rng.below(20_000), &mut out) {
            Ok(_) => assert!(!out.is_empty()),
            Err(e) => assert_eq!(e.code(), libc::EINVAL),
        }
    }
}

#[test]
fn a_page_from_any_valid_cursor_is_that_part_of_the_archive() {
    let ns = sample();
    let mut whole = Vec::new();
    write_all(&ns, &mut whole).unwrap();
    let plan = ExportPlan::new(&ns);
    // Every cursor, by pages of one byte: cursor k is at byte k.
    let mut cursors = vec![Cursor::START];
    let mut out = Vec::new();
    while let Some(c) = plan
        .page(&ns, *cursors.last().unwrap(), 1, &mut out)
        .unwrap()
    {
        cursors.push(c);
    }
    assert_eq!(out, whole);
    assert_eq!(cursors.len(), whole.len());
    let mut rng = Lcg(777);
    for _ in 0..500 {
        let at = rng.below(cursors.len());
        let limit = 1 + rng.below(40_000);
        let mut page = Vec::new();
        let next = plan.page(&ns, cursors[at], limit, &mut page).unwrap();
        let end = (at + limit).min(whole.len());
        assert!(page == whole[at..end], "page at {at} of {limit}");
        match next {
            Some(c) => assert_eq!(c, cursors[end]),
            None => assert_eq!(end, whole.len()),
        }
    }
}
