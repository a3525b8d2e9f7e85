//! Unit tests for namespace operations (no FUSE).
use super::*;
use crate::namespace::files::{FALLOC_KEEP_SIZE, FALLOC_PUNCH_HOLE};
use std::ffi::OsStr;

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const PG: u64 = PAGE as u64;

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn ns_with(max_pages: u64, max_inodes: u64) -> Namespace {
    Namespace::new(
        0,
        0,
        0o755,
        Limits {
            max_pages,
            max_inodes,
        },
    )
}

fn ns() -> Namespace {
    ns_with(1024, 1024)
}

fn spec(kind: Kind) -> NewNode<'static> {
    NewNode {
        kind,
        perm: if kind == Kind::Directory {
            0o755
        } else {
            0o644
        },
        uid: 0,
        gid: 0,
        rdev: 0,
        target: None,
    }
}

fn create(ns: &mut Namespace, parent: u64, name: &str, kind: Kind) -> u64 {
    ns.create_node(parent, os(name), spec(kind))
        .unwrap_or_else(|e| panic!("create {name}: {e}"))
        .attr
        .ino
        .0
}

fn mkfile(ns: &mut Namespace, parent: u64, name: &str) -> u64 {
    create(ns, parent, name, Kind::RegularFile)
}

fn mkdir(ns: &mut Namespace, parent: u64, name: &str) -> u64 {
    create(ns, parent, name, Kind::Directory)
}

fn symlink(ns: &mut Namespace, parent: u64, name: &str, target: &[u8]) -> u64 {
    let s = NewNode {
        target: Some(target),
        perm: 0o777,
        ..spec(Kind::Symlink)
    };
    ns.create_node(parent, os(name), s).unwrap().attr.ino.0
}

/// Sets `ino`'s mode (as root: no set-id rules).
fn chmod(ns: &mut Namespace, ino: u64, mode: u32) {
    let a = SetAttr {
        mode: Some(mode),
        ..SetAttr::default()
    };
    ns.setattr(ino, a).unwrap();
}

fn nlink(ns: &Namespace, ino: u64) -> u32 {
    ns.attr(ino).unwrap().nlink
}

fn lookups(ns: &Namespace, ino: u64) -> u64 {
    ns.inodes.get(ino).unwrap().lookups()
}

fn e(code: i32) -> Errno {
    Errno::new(code)
}

fn names(ns: &Namespace, dir: u64, after: Option<&[u8]>) -> Vec<String> {
    ns.entries_after(dir, after)
        .unwrap()
        .map(|(n, _, _)| n.to_string_lossy().into_owned())
        .collect()
}

fn past() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_000_000)
}

/// Sets atime, mtime and ctime of `ino` far into the past, so that any
/// later update is visible regardless of clock resolution.
fn age(ns: &mut Namespace, ino: u64) {
    ns.setattr(
        ino,
        SetAttr {
            atime: Some(TimeOrNow::SpecificTime(past())),
            mtime: Some(TimeOrNow::SpecificTime(past())),
            ctime: Some(past()),
            ..Default::default()
        },
    )
    .unwrap();
    let a = ns.attr(ino).unwrap();
    assert_eq!((a.atime, a.mtime, a.ctime), (past(), past(), past()));
}

/// Removes every lookup the tests hold on `ino`.
fn forget_all(ns: &mut Namespace, ino: u64) {
    let n = lookups(ns, ino);
    ns.forget(ino, n);
}

// ---------------------------------------------------------------------------
// Inode lifecycle
// ---------------------------------------------------------------------------

#[test]
fn root_is_inode_one() {
    let ns = ns();
    let a = ns.attr(ROOT_INO).unwrap();
    assert_eq!(a.ino.0, ROOT_INO);
    assert_eq!(a.kind, FileType::Directory);
    assert_eq!(a.perm, 0o755);
    assert_eq!(a.nlink, 2);
    assert_eq!(a.size, 40);
    assert_eq!(ns.inodes.live(), 1);
    assert_eq!(ns.parent_of(ROOT_INO), ROOT_INO);
    assert_eq!(ns.usage().ffree, 1023);
    assert_eq!(ns.usage().bfree, 1024);
}

#[test]
fn unlinked_file_lives_until_forgotten() {
    let mut ns = ns_with(100, 10);
    let start_ffree = ns.usage().ffree;
    let start_bfree = ns.usage().bfree;
    let f = mkfile(&mut ns, ROOT_INO, "f");
    assert_eq!(lookups(&ns, f), 1, "create counts one lookup");
    ns.write(f, 0, &[7u8; 5000]).unwrap();
    assert_eq!(ns.pages_used(), 2);
    let again = ns.lookup(ROOT_INO, os("f")).unwrap();
    assert_eq!(again.attr.ino.0, f);
    assert_eq!(lookups(&ns, f), 2);

    ns.unlink(ROOT_INO, os("f")).unwrap();
    assert_eq!(ns.child_ino(ROOT_INO, os("f")), Err(e(libc::ENOENT)));
    assert_eq!(ns.lookup(ROOT_INO, os("f")).unwrap_err(), e(libc::ENOENT));
    let a = ns.attr(f).unwrap();
    assert_eq!(a.nlink, 0);
    assert_eq!(a.size, 5000);
    assert_eq!(ns.read(f, 0, 5000).unwrap(), vec![7u8; 5000]);
    // Still writable through the inode number; pages are still accounted.
    ns.write(f, 2 * PG, b"tail").unwrap();
    assert_eq!(ns.pages_used(), 3);
    assert_eq!(ns.read(f, 2 * PG, 10).unwrap(), b"tail");
    ns.setattr(
        f,
        SetAttr {
            size: Some(100),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ns.pages_used(), 1);
    ns.write(f, PG, b"x").unwrap();
    assert_eq!(ns.pages_used(), 2);
    assert_eq!(ns.inodes.live(), 2);
    assert_eq!(ns.usage().ffree, start_ffree - 1);

    ns.forget(f, 1);
    assert!(ns.attr(f).is_ok(), "one lookup still held");
    assert_eq!(ns.read(f, 0, 3).unwrap(), vec![7u8; 3]);
    ns.forget(f, 1);
    assert_eq!(ns.attr(f).unwrap_err(), e(libc::ENOENT));
    assert_eq!(ns.read(f, 0, 3).unwrap_err(), e(libc::ENOENT));
    assert_eq!(ns.write(f, 0, b"x").unwrap_err(), e(libc::ENOENT));
    assert_eq!(ns.pages_used(), 0);
    assert_eq!(ns.usage().ffree, start_ffree);
    assert_eq!(ns.usage().bfree, start_bfree);
    assert_eq!(ns.inodes.live(), 1);
}

#[test]
fn forget_more_than_held_frees_once() {
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    ns.unlink(ROOT_INO, os("f")).unwrap();
    ns.forget(f, 100);
    assert!(ns.attr(f).is_err());
    // Forgetting a freed or unknown inode is harmless.
    ns.forget(f, 1);
    ns.forget(9999, 1);
    ns.forget(0, 1);
    assert_eq!(ns.inodes.live(), 1);
}

#[test]
fn linked_file_survives_forget_and_unlink_then_frees_at_once() {
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    ns.write(f, 0, b"data").unwrap();
    ns.forget(f, 1);
    assert_eq!(lookups(&ns, f), 0);
    assert_eq!(ns.read(f, 0, 4).unwrap(), b"data", "a name keeps it alive");
    ns.unlink(ROOT_INO, os("f")).unwrap();
    assert!(ns.attr(f).is_err(), "no name, no lookup: freed by unlink");
    assert_eq!(ns.pages_used(), 0);
    assert_eq!(ns.inodes.live(), 1);
}

#[test]
fn root_survives_forget() {
    let mut ns = ns();
    ns.add_lookup(ROOT_INO);
    ns.forget(ROOT_INO, 10);
    assert!(ns.attr(ROOT_INO).is_ok());
    assert_eq!(ns.inodes.live(), 1);
}

#[test]
fn removed_directory_still_looked_up() {
    let mut ns = ns();
    let d = mkdir(&mut ns, ROOT_INO, "d");
    let sub = mkdir(&mut ns, d, "sub");
    assert_eq!(ns.parent_of(sub), d);
    assert_eq!(ns.parent_of(d), ROOT_INO);
    ns.rmdir(d, os("sub")).unwrap();
    assert!(ns.attr(sub).is_ok(), "still looked up");
    ns.rmdir(ROOT_INO, os("d")).unwrap();

    let a = ns.attr(d).unwrap();
    assert_eq!(a.nlink, 0);
    assert_eq!(a.kind, FileType::Directory);
    assert_eq!(names(&ns, d, None), Vec::<String>::new());
    assert_eq!(ns.parent_of(d), d);
    assert_eq!(ns.parent_of(sub), sub);
    assert_eq!(nlink(&ns, ROOT_INO), 2);
    assert_eq!(ns.attr(ROOT_INO).unwrap().size, 40);
    // Nothing can be created in, looked up in or linked into it.
    assert_eq!(
        ns.create_node(d, os("x"), spec(Kind::RegularFile))
            .unwrap_err(),
        e(libc::ENOENT)
    );
    assert_eq!(ns.lookup(d, os("x")).unwrap_err(), e(libc::ENOENT));
    let f = mkfile(&mut ns, ROOT_INO, "f");
    assert_eq!(ns.link(f, d, os("x")).unwrap_err(), e(libc::ENOENT));
    assert_eq!(
        ns.rename(ROOT_INO, os("f"), d, os("x"), 0).unwrap_err(),
        e(libc::ENOENT)
    );
    assert_eq!(ns.rmdir(d, os("x")).unwrap_err(), e(libc::ENOENT));
    assert_eq!(ns.inodes.live(), 4);

    ns.forget(d, 1);
    ns.forget(sub, 1);
    assert_eq!(ns.attr(d).unwrap_err(), e(libc::ENOENT));
    assert_eq!(ns.attr(sub).unwrap_err(), e(libc::ENOENT));
    assert!(ns.entries_after(d, None).is_err());
    assert_eq!(ns.inodes.live(), 2);
}

#[test]
fn reused_inode_number_gets_higher_generation() {
    let mut ns = ns();
    let first = ns
        .create_node(ROOT_INO, os("a"), spec(Kind::RegularFile))
        .unwrap();
    let ino = first.attr.ino.0;
    assert_eq!(first.generation, ns.generation(ino));
    ns.unlink(ROOT_INO, os("a")).unwrap();
    ns.forget(ino, 1);
    assert!(ns.attr(ino).is_err());

    let second = ns
        .create_node(ROOT_INO, os("b"), spec(Kind::Directory))
        .unwrap();
    assert_eq!(second.attr.ino.0, ino, "freed number is reused");
    assert!(second.generation > first.generation);
    assert_eq!(second.attr.kind, FileType::Directory);
    let again = ns.lookup(ROOT_INO, os("b")).unwrap();
    assert_eq!(again.generation, second.generation);

    // Reused once more: strictly increasing again.
    ns.rmdir(ROOT_INO, os("b")).unwrap();
    ns.forget(ino, 2);
    let third = ns
        .create_node(ROOT_INO, os("c"), spec(Kind::RegularFile))
        .unwrap();
    assert_eq!(third.attr.ino.0, ino);
    assert!(third.generation > second.generation);
}

// ---------------------------------------------------------------------------
// Lookup / create / unlink / rmdir errors
// ---------------------------------------------------------------------------

#[test]
fn lookup_and_create_errors() {
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    assert_eq!(
        ns.lookup(ROOT_INO, os("nope")).unwrap_err(),
        e(libc::ENOENT)
    );
    assert_eq!(ns.lookup(f, os("x")).unwrap_err(), e(libc::ENOTDIR));
    assert_eq!(ns.lookup(777, os("x")).unwrap_err(), e(libc::ENOENT));
    assert_eq!(ns.lookup(ROOT_INO, os("a/b")).unwrap_err(), e(libc::EINVAL));
    let long = "x".repeat(256);
    assert_eq!(
        ns.lookup(ROOT_INO, os(&long)).unwrap_err(),
        e(libc::ENAMETOOLONG)
    );
    assert_eq!(
        ns.create_node(ROOT_INO, os("f"), spec(Kind::Directory))
            .unwrap_err(),
        e(libc::EEXIST)
    );
    assert_eq!(
        ns.create_node(f, os("x"), spec(Kind::RegularFile))
            .unwrap_err(),
        e(libc::ENOTDIR)
    );
    for bad in ["", ".", "..", "a/b"] {
        assert_eq!(
            ns.create_node(ROOT_INO, os(bad), spec(Kind::RegularFile))
                .unwrap_err(),
            e(libc::EINVAL),
            "{bad:?}"
        );
    }
    assert_eq!(
        ns.create_node(ROOT_INO, os(&long), spec(Kind::RegularFile))
            .unwrap_err(),
        e(libc::ENAMETOOLONG)
    );
    let ok = "y".repeat(255);
    mkfile(&mut ns, ROOT_INO, &ok);
    assert_eq!(ns.inodes.live(), 3, "failed creates leave no inode behind");
}

#[test]
fn create_kinds_and_attributes() {
    let mut ns = ns();
    let s = NewNode {
        kind: Kind::CharDevice,
        perm: 0o620,
        uid: 5,
        gid: 6,
        rdev: 0x0501,
        target: None,
    };
    let a = ns.create_node(ROOT_INO, os("tty"), s).unwrap().attr;
    assert_eq!(a.kind, FileType::CharDevice);
    assert_eq!((a.perm, a.uid, a.gid, a.rdev), (0o620, 5, 6, 0x0501));
    assert_eq!((a.nlink, a.size, a.blocks), (1, 0, 0));
    let fifo = create(&mut ns, ROOT_INO, "fifo", Kind::Fifo);
    assert_eq!(ns.attr(fifo).unwrap().kind, FileType::NamedPipe);
    let sock = create(&mut ns, ROOT_INO, "sock", Kind::Socket);
    assert_eq!(ns.attr(sock).unwrap().kind, FileType::Socket);
    let blk = create(&mut ns, ROOT_INO, "blk", Kind::BlockDevice);
    assert_eq!(ns.attr(blk).unwrap().kind, FileType::BlockDevice);
    let l = symlink(&mut ns, ROOT_INO, "l", b"some/target");
    let la = ns.attr(l).unwrap();
    assert_eq!(la.kind, FileType::Symlink);
    assert_eq!(la.size, 11);
    // Permission bits beyond 0o7777 are dropped.
    let s = NewNode {
        perm: 0o170_644,
        ..spec(Kind::RegularFile)
    };
    let a = ns.create_node(ROOT_INO, os("m"), s).unwrap().attr;
    assert_eq!(a.perm, 0o644);
    assert_eq!(a.kind, FileType::RegularFile);
    // Special files have no data.
    assert_eq!(ns.read(fifo, 0, 1).unwrap_err(), e(libc::EINVAL));
    assert_eq!(ns.write(fifo, 0, b"x").unwrap_err(), e(libc::EINVAL));
}

#[test]
fn unlink_and_rmdir_errors() {
    let mut ns = ns();
    let d = mkdir(&mut ns, ROOT_INO, "d");
    mkfile(&mut ns, d, "f");
    mkfile(&mut ns, ROOT_INO, "g");
    assert_eq!(ns.unlink(ROOT_INO, os("d")).unwrap_err(), e(libc::EISDIR));
    assert_eq!(
        ns.unlink(ROOT_INO, os("nope")).unwrap_err(),
        e(libc::ENOENT)
    );
    assert_eq!(ns.rmdir(ROOT_INO, os("d")).unwrap_err(), e(libc::ENOTEMPTY));
    assert_eq!(ns.rmdir(ROOT_INO, os("g")).unwrap_err(), e(libc::ENOTDIR));
    assert_eq!(ns.rmdir(ROOT_INO, os("nope")).unwrap_err(), e(libc::ENOENT));
    assert_eq!(ns.rmdir(ROOT_INO, os("..")).unwrap_err(), e(libc::EINVAL));
    assert_eq!(nlink(&ns, ROOT_INO), 3);
    assert_eq!(nlink(&ns, d), 2);
    ns.unlink(d, os("f")).unwrap();
    ns.rmdir(ROOT_INO, os("d")).unwrap();
    assert_eq!(nlink(&ns, ROOT_INO), 2);
}

// ---------------------------------------------------------------------------
// Hard links
// ---------------------------------------------------------------------------

#[test]
fn hard_links_share_data_and_count_names() {
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    let d = mkdir(&mut ns, ROOT_INO, "d");
    ns.write(f, 0, b"hello").unwrap();
    let ent = ns.link(f, d, os("g")).unwrap();
    assert_eq!(ent.attr.ino.0, f);
    assert_eq!(ent.attr.nlink, 2);
    assert_eq!(ent.generation, ns.generation(f));
    assert_eq!(lookups(&ns, f), 2, "link counts a lookup");
    assert_eq!(ns.child_ino(d, os("g")).unwrap(), f);
    ns.link(f, ROOT_INO, os("h")).unwrap();
    assert_eq!(nlink(&ns, f), 3);
    assert_eq!(nlink(&ns, d), 2, "links do not count as subdirectories");
    assert_eq!(ns.attr(d).unwrap().size, 60);

    // Data written through one name shows through the others.
    let via_g = ns.child_ino(d, os("g")).unwrap();
    ns.write(via_g, 5, b" world").unwrap();
    let via_h = ns.child_ino(ROOT_INO, os("h")).unwrap();
    assert_eq!(ns.read(via_h, 0, 100).unwrap(), b"hello world");
    assert_eq!(ns.pages_used(), 1);

    ns.unlink(ROOT_INO, os("f")).unwrap();
    assert_eq!(nlink(&ns, f), 2);
    assert_eq!(ns.read(f, 0, 5).unwrap(), b"hello");

    // Renaming another file over one name drops one link.
    let other = mkfile(&mut ns, ROOT_INO, "other");
    ns.rename(ROOT_INO, os("other"), ROOT_INO, os("h"), 0)
        .unwrap();
    assert_eq!(nlink(&ns, f), 1);
    assert_eq!(ns.child_ino(ROOT_INO, os("h")).unwrap(), other);
    assert_eq!(ns.child_ino(d, os("g")).unwrap(), f);

    ns.unlink(d, os("g")).unwrap();
    assert_eq!(nlink(&ns, f), 0);
    assert!(ns.attr(f).is_ok(), "still looked up");
    forget_all(&mut ns, f);
    assert!(ns.attr(f).is_err());
    assert_eq!(ns.pages_used(), 0);
}

#[test]
fn link_errors() {
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    let d = mkdir(&mut ns, ROOT_INO, "d");
    assert_eq!(ns.link(d, ROOT_INO, os("d2")).unwrap_err(), e(libc::EPERM));
    assert_eq!(
        ns.link(ROOT_INO, ROOT_INO, os("r")).unwrap_err(),
        e(libc::EPERM)
    );
    assert_eq!(ns.link(f, ROOT_INO, os("d")).unwrap_err(), e(libc::EEXIST));
    assert_eq!(ns.link(f, f, os("x")).unwrap_err(), e(libc::ENOTDIR));
    assert_eq!(ns.link(999, d, os("x")).unwrap_err(), e(libc::ENOENT));
    assert_eq!(ns.link(f, d, os("..")).unwrap_err(), e(libc::EINVAL));
    assert_eq!(nlink(&ns, f), 1);
    assert_eq!(nlink(&ns, d), 2);
    assert_eq!(lookups(&ns, f), 1, "failed links count no lookup");
    // Symlinks and special files can be hard-linked.
    let l = symlink(&mut ns, ROOT_INO, "l", b"t");
    ns.link(l, d, os("l2")).unwrap();
    assert_eq!(nlink(&ns, l), 2);
    let p = create(&mut ns, ROOT_INO, "p", Kind::Fifo);
    ns.link(p, d, os("p2")).unwrap();
    assert_eq!(nlink(&ns, p), 2);
}

// ---------------------------------------------------------------------------
// Directory link counts and sizes
// ---------------------------------------------------------------------------

#[test]
fn directory_nlink_tracks_subdirectories() {
    let mut ns = ns();
    let a = mkdir(&mut ns, ROOT_INO, "a");
    let b = mkdir(&mut ns, ROOT_INO, "b");
    mkfile(&mut ns, ROOT_INO, "file");
    assert_eq!(nlink(&ns, ROOT_INO), 4);
    let x = mkdir(&mut ns, a, "x");
    assert_eq!((nlink(&ns, a), nlink(&ns, b)), (3, 2));

    // Move a directory across parents.
    ns.rename(a, os("x"), b, os("x"), 0).unwrap();
    assert_eq!((nlink(&ns, a), nlink(&ns, b)), (2, 3));
    assert_eq!(ns.parent_of(x), b);
    // Within one parent: nothing changes.
    ns.rename(b, os("x"), b, os("y"), 0).unwrap();
    assert_eq!(nlink(&ns, b), 3);
    // Up to the root.
    ns.rename(b, os("y"), ROOT_INO, os("y"), 0).unwrap();
    assert_eq!((nlink(&ns, b), nlink(&ns, ROOT_INO)), (2, 5));
    assert_eq!(ns.parent_of(x), ROOT_INO);
    // Moving a file changes no directory link count.
    ns.rename(ROOT_INO, os("file"), a, os("file"), 0).unwrap();
    assert_eq!((nlink(&ns, a), nlink(&ns, ROOT_INO)), (2, 5));
    ns.rmdir(ROOT_INO, os("y")).unwrap();
    assert_eq!(nlink(&ns, ROOT_INO), 4);
    assert_eq!(nlink(&ns, x), 0);

    // Replace an empty directory in another parent with a directory.
    let src = mkdir(&mut ns, a, "src");
    let victim = mkdir(&mut ns, b, "victim");
    assert_eq!((nlink(&ns, a), nlink(&ns, b)), (3, 3));
    ns.rename(a, os("src"), b, os("victim"), 0).unwrap();
    assert_eq!((nlink(&ns, a), nlink(&ns, b)), (2, 3));
    assert_eq!(ns.child_ino(b, os("victim")).unwrap(), src);
    assert_eq!(nlink(&ns, victim), 0);
    assert_eq!(names(&ns, victim, None), Vec::<String>::new());
    assert_eq!(ns.parent_of(victim), victim);
    // Replace an empty directory in the same parent.
    mkdir(&mut ns, b, "other");
    assert_eq!(nlink(&ns, b), 4);
    ns.rename(b, os("other"), b, os("victim"), 0).unwrap();
    assert_eq!(nlink(&ns, b), 3);
    assert_eq!(nlink(&ns, ROOT_INO), 4);
}

#[test]
fn exchange_directory_with_file_across_parents() {
    let mut ns = ns();
    let a = mkdir(&mut ns, ROOT_INO, "a");
    let b = mkdir(&mut ns, ROOT_INO, "b");
    let sub = mkdir(&mut ns, a, "sub");
    let f = mkfile(&mut ns, b, "f");
    assert_eq!((nlink(&ns, a), nlink(&ns, b)), (3, 2));

    ns.rename(a, os("sub"), b, os("f"), RENAME_EXCHANGE)
        .unwrap();
    assert_eq!(ns.child_ino(a, os("sub")).unwrap(), f);
    assert_eq!(ns.child_ino(b, os("f")).unwrap(), sub);
    assert_eq!((nlink(&ns, a), nlink(&ns, b)), (2, 3));
    assert_eq!(ns.parent_of(sub), b);
    assert_eq!(nlink(&ns, sub), 2);
    assert_eq!(nlink(&ns, f), 1);
    // The directory still works at its new place.
    mkfile(&mut ns, sub, "inner");
    assert_eq!(names(&ns, b, None), ["f"]);
    assert_eq!(
        ns.entries_after(b, None).unwrap().next().unwrap().2,
        FileType::Directory
    );

    // And back, with the file as the source this time.
    ns.rename(a, os("sub"), b, os("f"), RENAME_EXCHANGE)
        .unwrap();
    assert_eq!((nlink(&ns, a), nlink(&ns, b)), (3, 2));
    assert_eq!(ns.parent_of(sub), a);

    // Two directories across parents: counts unchanged.
    let other = mkdir(&mut ns, b, "other");
    assert_eq!(nlink(&ns, b), 3);
    ns.rename(a, os("sub"), b, os("other"), RENAME_EXCHANGE)
        .unwrap();
    assert_eq!((nlink(&ns, a), nlink(&ns, b)), (3, 3));
    assert_eq!(ns.parent_of(sub), b);
    assert_eq!(ns.parent_of(other), a);
    assert_eq!(ns.child_ino(b, os("other")).unwrap(), sub);
    assert!(ns.child_ino(sub, os("inner")).is_ok());
    assert_eq!(nlink(&ns, ROOT_INO), 4);
}

#[test]
fn directory_size_is_twenty_per_entry() {
    let mut ns = ns();
    assert_eq!(ns.attr(ROOT_INO).unwrap().size, 40);
    let d = mkdir(&mut ns, ROOT_INO, "d");
    assert_eq!(ns.attr(d).unwrap().size, 40);
    for n in ["a", "b", "c"] {
        mkfile(&mut ns, d, n);
    }
    mkdir(&mut ns, d, "sub");
    assert_eq!(ns.attr(d).unwrap().size, 20 * 6);
    assert_eq!(ns.attr(ROOT_INO).unwrap().size, 60);
    ns.unlink(d, os("a")).unwrap();
    ns.rmdir(d, os("sub")).unwrap();
    assert_eq!(ns.attr(d).unwrap().size, 80);
    ns.rename(d, os("b"), ROOT_INO, os("b"), 0).unwrap();
    assert_eq!(ns.attr(d).unwrap().size, 60);
    assert_eq!(ns.attr(ROOT_INO).unwrap().size, 80);
}

// ---------------------------------------------------------------------------
// Rename rules
// ---------------------------------------------------------------------------

#[test]
fn rename_errors() {
    let mut ns = ns();
    let a = mkdir(&mut ns, ROOT_INO, "a");
    let b = mkdir(&mut ns, ROOT_INO, "b");
    mkdir(&mut ns, b, "c");
    let sub = mkdir(&mut ns, a, "sub");
    let f = mkfile(&mut ns, ROOT_INO, "f");
    let empty = mkdir(&mut ns, ROOT_INO, "empty");
    let before = names(&ns, ROOT_INO, None);

    let r = |ns: &mut Namespace, p, n, np, nn, fl| ns.rename(p, os(n), np, os(nn), fl);
    assert_eq!(
        r(&mut ns, ROOT_INO, "a", ROOT_INO, "b", 0),
        Err(e(libc::ENOTEMPTY))
    );
    assert_eq!(
        r(&mut ns, ROOT_INO, "a", ROOT_INO, "f", 0),
        Err(e(libc::ENOTDIR))
    );
    assert_eq!(
        r(&mut ns, ROOT_INO, "f", ROOT_INO, "empty", 0),
        Err(e(libc::EISDIR))
    );
    assert_eq!(
        r(&mut ns, ROOT_INO, "a", a, "inside", 0),
        Err(e(libc::EINVAL))
    );
    assert_eq!(
        r(&mut ns, ROOT_INO, "a", sub, "deeper", 0),
        Err(e(libc::EINVAL))
    );
    // A directory replacing an empty directory inside itself.
    mkdir(&mut ns, sub, "hole");
    assert_eq!(
        r(&mut ns, ROOT_INO, "a", sub, "hole", 0),
        Err(e(libc::EINVAL))
    );
    assert_eq!(
        r(&mut ns, ROOT_INO, "nope", ROOT_INO, "x", 0),
        Err(e(libc::ENOENT))
    );
    assert_eq!(r(&mut ns, f, "x", ROOT_INO, "y", 0), Err(e(libc::ENOTDIR)));
    assert_eq!(r(&mut ns, ROOT_INO, "f", f, "y", 0), Err(e(libc::ENOTDIR)));
    assert_eq!(
        r(&mut ns, ROOT_INO, "f", ROOT_INO, "..", 0),
        Err(e(libc::EINVAL))
    );
    assert_eq!(
        r(&mut ns, ROOT_INO, "f", ROOT_INO, "a/b", 0),
        Err(e(libc::EINVAL))
    );
    let long = "z".repeat(256);
    assert_eq!(
        r(&mut ns, ROOT_INO, "f", ROOT_INO, &long, 0),
        Err(e(libc::ENAMETOOLONG))
    );
    // Flags.
    assert_eq!(
        r(&mut ns, ROOT_INO, "f", ROOT_INO, "g", 3),
        Err(e(libc::EINVAL))
    );
    assert_eq!(
        r(&mut ns, ROOT_INO, "f", ROOT_INO, "g", 4),
        Err(e(libc::EINVAL))
    );
    assert_eq!(
        r(&mut ns, ROOT_INO, "f", ROOT_INO, "g", 1 << 31),
        Err(e(libc::EINVAL))
    );
    assert_eq!(
        r(
            &mut ns,
            ROOT_INO,
            "nope",
            ROOT_INO,
            "g",
            RENAME_EXCHANGE | 8
        ),
        Err(e(libc::EINVAL)),
        "flags are checked first"
    );
    assert_eq!(
        r(&mut ns, ROOT_INO, "f", ROOT_INO, "empty", RENAME_NOREPLACE),
        Err(e(libc::EEXIST))
    );
    assert_eq!(
        r(&mut ns, ROOT_INO, "f", ROOT_INO, "missing", RENAME_EXCHANGE),
        Err(e(libc::ENOENT))
    );
    assert_eq!(
        r(&mut ns, ROOT_INO, "missing", ROOT_INO, "f", RENAME_EXCHANGE),
        Err(e(libc::ENOENT))
    );
    // Exchanging a directory with something inside it.
    assert_eq!(
        r(&mut ns, ROOT_INO, "a", a, "sub", RENAME_EXCHANGE),
        Err(e(libc::EINVAL))
    );
    assert_eq!(
        r(&mut ns, a, "sub", ROOT_INO, "a", RENAME_EXCHANGE),
        Err(e(libc::EINVAL))
    );

    // Nothing changed.
    assert_eq!(names(&ns, ROOT_INO, None), before);
    assert_eq!(ns.child_ino(ROOT_INO, os("f")).unwrap(), f);
    assert_eq!(ns.child_ino(ROOT_INO, os("empty")).unwrap(), empty);
    assert_eq!(ns.parent_of(sub), a);
    assert_eq!(nlink(&ns, ROOT_INO), 5);
    assert_eq!(nlink(&ns, a), 3);
}

#[test]
fn rename_same_inode_is_a_no_op() {
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    let d = mkdir(&mut ns, ROOT_INO, "d");
    ns.link(f, d, os("g")).unwrap();
    ns.rename(ROOT_INO, os("f"), d, os("g"), 0).unwrap();
    assert_eq!(ns.child_ino(ROOT_INO, os("f")).unwrap(), f);
    assert_eq!(ns.child_ino(d, os("g")).unwrap(), f);
    assert_eq!(nlink(&ns, f), 2);
    // Same name.
    ns.rename(ROOT_INO, os("f"), ROOT_INO, os("f"), 0).unwrap();
    ns.rename(ROOT_INO, os("d"), ROOT_INO, os("d"), 0).unwrap();
    assert_eq!(ns.child_ino(ROOT_INO, os("f")).unwrap(), f);
    assert_eq!(ns.child_ino(ROOT_INO, os("d")).unwrap(), d);
    assert_eq!(nlink(&ns, f), 2);
    assert_eq!(nlink(&ns, ROOT_INO), 3);
    // Exchanging two names of one file, or a name with itself, is a no-op.
    ns.rename(ROOT_INO, os("f"), d, os("g"), RENAME_EXCHANGE)
        .unwrap();
    ns.rename(ROOT_INO, os("d"), ROOT_INO, os("d"), RENAME_EXCHANGE)
        .unwrap();
    assert_eq!(ns.child_ino(ROOT_INO, os("f")).unwrap(), f);
    assert_eq!(ns.child_ino(d, os("g")).unwrap(), f);
    assert_eq!(nlink(&ns, f), 2);
    assert_eq!(ns.parent_of(d), ROOT_INO);
}

/// renameat2(2): "RENAME_NOREPLACE: Don't overwrite newpath of the rename.
/// Return an error if newpath already exists." Linux checks this in
/// `do_renameat2` before `vfs_rename`'s "source == target: do nothing".
#[test]
fn rename_noreplace_onto_existing_name_of_same_inode_is_eexist() {
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    ns.link(f, ROOT_INO, os("g")).unwrap();
    assert_eq!(
        ns.rename(ROOT_INO, os("f"), ROOT_INO, os("g"), RENAME_NOREPLACE),
        Err(e(libc::EEXIST)),
        "hard link of the same file"
    );
    assert_eq!(
        ns.rename(ROOT_INO, os("f"), ROOT_INO, os("f"), RENAME_NOREPLACE),
        Err(e(libc::EEXIST)),
        "same name"
    );
}

/// Linux checks "source is an ancestor of the target" (EINVAL) before the
/// type and emptiness checks of the target (ENOTDIR/ENOTEMPTY).
#[test]
fn rename_into_own_subtree_is_einval_before_target_checks() {
    let mut ns = ns();
    let a = mkdir(&mut ns, ROOT_INO, "a");
    mkfile(&mut ns, a, "f");
    let full = mkdir(&mut ns, a, "full");
    mkfile(&mut ns, full, "x");
    assert_eq!(
        ns.rename(ROOT_INO, os("a"), a, os("f"), 0),
        Err(e(libc::EINVAL)),
        "rename(\"a\", \"a/f\") with a/f a file"
    );
    assert_eq!(
        ns.rename(ROOT_INO, os("a"), a, os("full"), 0),
        Err(e(libc::EINVAL)),
        "rename(\"a\", \"a/full\") with a/full a non-empty directory"
    );
}

#[test]
fn rename_moves_and_replaces() {
    let mut ns = ns();
    let d = mkdir(&mut ns, ROOT_INO, "d");
    let f = mkfile(&mut ns, ROOT_INO, "f");
    ns.write(f, 0, b"ff").unwrap();
    // Plain move, NOREPLACE to a free name works too.
    ns.rename(ROOT_INO, os("f"), d, os("g"), RENAME_NOREPLACE)
        .unwrap();
    assert_eq!(ns.child_ino(ROOT_INO, os("f")), Err(e(libc::ENOENT)));
    assert_eq!(ns.child_ino(d, os("g")).unwrap(), f);
    assert_eq!(nlink(&ns, f), 1);

    // Replace a file nobody looks up: it is freed with its pages.
    let v = mkfile(&mut ns, ROOT_INO, "v");
    ns.write(v, 0, &[1u8; 3 * PAGE]).unwrap();
    ns.forget(v, 1);
    assert_eq!(ns.pages_used(), 4);
    assert_eq!(ns.inodes.live(), 4);
    ns.rename(d, os("g"), ROOT_INO, os("v"), 0).unwrap();
    assert!(ns.attr(v).is_err());
    assert_eq!(ns.pages_used(), 1);
    assert_eq!(ns.inodes.live(), 3);
    assert_eq!(ns.read(f, 0, 10).unwrap(), b"ff");

    // Replace a file that is still looked up: it stays readable.
    let w = mkfile(&mut ns, d, "w");
    ns.write(w, 0, b"ww").unwrap();
    ns.rename(ROOT_INO, os("v"), d, os("w"), 0).unwrap();
    assert_eq!(nlink(&ns, w), 0);
    assert_eq!(ns.read(w, 0, 10).unwrap(), b"ww");
    assert_eq!(ns.child_ino(d, os("w")).unwrap(), f);
    ns.forget(w, 1);
    assert!(ns.attr(w).is_err());
    assert_eq!(ns.pages_used(), 1);

    // Exchange two files: names swap, contents follow the inodes.
    let x = mkfile(&mut ns, ROOT_INO, "x");
    ns.write(x, 0, b"xx").unwrap();
    ns.rename(ROOT_INO, os("x"), d, os("w"), RENAME_EXCHANGE)
        .unwrap();
    assert_eq!(ns.child_ino(ROOT_INO, os("x")).unwrap(), f);
    assert_eq!(ns.child_ino(d, os("w")).unwrap(), x);
    assert_eq!((nlink(&ns, f), nlink(&ns, x)), (1, 1));
    assert_eq!(ns.read(x, 0, 10).unwrap(), b"xx");
    // A symlink moves like a file.
    let l = symlink(&mut ns, ROOT_INO, "l", b"target");
    ns.rename(ROOT_INO, os("l"), d, os("l2"), 0).unwrap();
    assert_eq!(
        ns.readlink(ns.child_ino(d, os("l2")).unwrap()).unwrap(),
        b"target"
    );
    assert_eq!(ns.child_ino(d, os("l2")).unwrap(), l);
}

#[test]
fn renamed_directory_keeps_its_contents() {
    let mut ns = ns();
    let a = mkdir(&mut ns, ROOT_INO, "a");
    let b = mkdir(&mut ns, a, "b");
    let f = mkfile(&mut ns, b, "f");
    let t = mkdir(&mut ns, ROOT_INO, "t");
    ns.rename(ROOT_INO, os("a"), t, os("moved"), 0).unwrap();
    assert_eq!(ns.child_ino(t, os("moved")).unwrap(), a);
    assert_eq!(ns.child_ino(a, os("b")).unwrap(), b);
    assert_eq!(ns.child_ino(b, os("f")).unwrap(), f);
    assert_eq!(ns.parent_of(a), t);
    assert_eq!(ns.parent_of(b), a);
    // Creating inside a moved directory works.
    mkfile(&mut ns, a, "new");
    assert_eq!(names(&ns, a, None), ["b", "new"]);
    // Moving a parent up into its grandparent's level is fine.
    ns.rename(a, os("b"), ROOT_INO, os("b"), 0).unwrap();
    assert_eq!(ns.parent_of(b), ROOT_INO);
    assert_eq!(nlink(&ns, a), 2);
    assert_eq!(nlink(&ns, ROOT_INO), 4);
}

// ---------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------

#[test]
fn parent_times_advance_on_create_unlink_rmdir() {
    let mut ns = ns();
    age(&mut ns, ROOT_INO);
    let f = mkfile(&mut ns, ROOT_INO, "f");
    let r = ns.attr(ROOT_INO).unwrap();
    assert!(r.mtime > past() && r.ctime > past());
    assert_eq!(r.atime, past());
    let fa = ns.attr(f).unwrap();
    assert!(fa.mtime > past() && fa.ctime > past() && fa.atime > past());

    age(&mut ns, ROOT_INO);
    let d = mkdir(&mut ns, ROOT_INO, "d");
    let r = ns.attr(ROOT_INO).unwrap();
    assert!(r.mtime > past() && r.ctime > past());

    age(&mut ns, ROOT_INO);
    age(&mut ns, f);
    ns.link(f, ROOT_INO, os("f2")).unwrap();
    let r = ns.attr(ROOT_INO).unwrap();
    assert!(r.mtime > past() && r.ctime > past());
    let fa = ns.attr(f).unwrap();
    assert!(fa.ctime > past(), "link changes the inode's ctime");
    assert_eq!(fa.mtime, past(), "link does not change the inode's mtime");

    age(&mut ns, ROOT_INO);
    age(&mut ns, f);
    ns.unlink(ROOT_INO, os("f2")).unwrap();
    let r = ns.attr(ROOT_INO).unwrap();
    assert!(r.mtime > past() && r.ctime > past());
    let fa = ns.attr(f).unwrap();
    assert!(fa.ctime > past(), "unlink changes the inode's ctime");
    assert_eq!(fa.mtime, past());

    age(&mut ns, ROOT_INO);
    ns.rmdir(ROOT_INO, os("d")).unwrap();
    let r = ns.attr(ROOT_INO).unwrap();
    assert!(r.mtime > past() && r.ctime > past());
    assert!(ns.attr(d).unwrap().ctime > past());

    // Failed operations leave the parent alone.
    age(&mut ns, ROOT_INO);
    assert!(
        ns.create_node(ROOT_INO, os("f"), spec(Kind::RegularFile))
            .is_err()
    );
    assert!(ns.unlink(ROOT_INO, os("nope")).is_err());
    assert!(ns.rmdir(ROOT_INO, os("f")).is_err());
    let r = ns.attr(ROOT_INO).unwrap();
    assert_eq!((r.mtime, r.ctime), (past(), past()));
}

#[test]
fn rename_touches_both_parents_and_the_inode_ctime() {
    let mut ns = ns();
    let a = mkdir(&mut ns, ROOT_INO, "a");
    let b = mkdir(&mut ns, ROOT_INO, "b");
    let f = mkfile(&mut ns, a, "f");
    for i in [ROOT_INO, a, b, f] {
        age(&mut ns, i);
    }
    ns.rename(a, os("f"), b, os("g"), 0).unwrap();
    for p in [a, b] {
        let at = ns.attr(p).unwrap();
        assert!(at.mtime > past() && at.ctime > past(), "parent {p}");
    }
    let r = ns.attr(ROOT_INO).unwrap();
    assert_eq!(
        (r.mtime, r.ctime),
        (past(), past()),
        "grandparent untouched"
    );
    let fa = ns.attr(f).unwrap();
    assert!(fa.ctime > past());
    assert_eq!(fa.mtime, past(), "rename keeps the file's mtime");

    // Exchange: both parents and both inodes' ctime.
    let g = mkfile(&mut ns, a, "other");
    for i in [a, b, f, g] {
        age(&mut ns, i);
    }
    ns.rename(a, os("other"), b, os("g"), RENAME_EXCHANGE)
        .unwrap();
    for i in [a, b] {
        let at = ns.attr(i).unwrap();
        assert!(at.mtime > past() && at.ctime > past());
    }
    for i in [f, g] {
        let at = ns.attr(i).unwrap();
        assert!(at.ctime > past());
        assert_eq!(at.mtime, past());
    }
    // A no-op rename changes nothing.
    ns.link(f, b, os("f2")).unwrap();
    for i in [a, b, f] {
        age(&mut ns, i);
    }
    ns.rename(a, os("other"), b, os("f2"), 0).unwrap();
    for i in [a, b, f] {
        let at = ns.attr(i).unwrap();
        assert_eq!((at.mtime, at.ctime), (past(), past()));
    }
}

#[test]
fn setattr_times() {
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    ns.write(f, 0, b"0123456789").unwrap();

    // chmod: ctime only.
    age(&mut ns, f);
    let a = ns
        .setattr(
            f,
            SetAttr {
                mode: Some(crate::namespace::inode::mode::S_IFREG | 0o4711),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(a.perm, 0o4711);
    assert_eq!(a.kind, FileType::RegularFile);
    assert!(a.ctime > past());
    assert_eq!((a.mtime, a.atime), (past(), past()));

    // chown: ctime only.
    age(&mut ns, f);
    let a = ns
        .setattr(
            f,
            SetAttr {
                uid: Some(10),
                gid: Some(20),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((a.uid, a.gid), (10, 20));
    assert!(a.ctime > past());
    assert_eq!((a.mtime, a.atime), (past(), past()));

    // truncate: mtime and ctime.
    age(&mut ns, f);
    let a = ns
        .setattr(
            f,
            SetAttr {
                size: Some(4),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(a.size, 4);
    assert!(a.mtime > past() && a.ctime > past());
    assert_eq!(a.atime, past());

    // truncate with an explicit mtime: that mtime wins.
    let t = UNIX_EPOCH + Duration::from_secs(2_000_000);
    age(&mut ns, f);
    let a = ns
        .setattr(
            f,
            SetAttr {
                size: Some(2),
                mtime: Some(TimeOrNow::SpecificTime(t)),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(a.size, 2);
    assert_eq!(a.mtime, t);
    assert!(a.ctime > past());

    // utimens with specific times.
    let t1 = UNIX_EPOCH + Duration::new(1_234_567, 89);
    let t2 = UNIX_EPOCH + Duration::new(7_654_321, 12);
    let a = ns
        .setattr(
            f,
            SetAttr {
                atime: Some(TimeOrNow::SpecificTime(t1)),
                mtime: Some(TimeOrNow::SpecificTime(t2)),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((a.atime, a.mtime), (t1, t2));
    assert!(a.ctime > past());

    // utimens with Now.
    let before = SystemTime::now();
    let a = ns
        .setattr(
            f,
            SetAttr {
                atime: Some(TimeOrNow::Now),
                mtime: Some(TimeOrNow::Now),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(a.atime >= before && a.mtime >= before && a.ctime >= before);
    assert!(a.atime <= SystemTime::now());

    // Only atime.
    age(&mut ns, f);
    let a = ns
        .setattr(
            f,
            SetAttr {
                atime: Some(TimeOrNow::Now),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(a.atime > past());
    assert_eq!(a.mtime, past());

    // Explicit ctime.
    let a = ns
        .setattr(
            f,
            SetAttr {
                ctime: Some(t1),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(a.ctime, t1);

    // Setattr on a missing inode.
    assert_eq!(
        ns.setattr(999, SetAttr::default()).unwrap_err(),
        e(libc::ENOENT)
    );
}

#[test]
fn write_and_punch_update_mtime() {
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    age(&mut ns, f);
    ns.write(f, 0, b"abc").unwrap();
    let a = ns.attr(f).unwrap();
    assert!(a.mtime > past() && a.ctime > past());
    assert_eq!(a.atime, past());
    age(&mut ns, f);
    ns.fallocate(f, 0, 1, FALLOC_PUNCH_HOLE | FALLOC_KEEP_SIZE)
        .unwrap();
    let a = ns.attr(f).unwrap();
    assert!(a.mtime > past() && a.ctime > past());
    // Reading changes nothing here (atime is the kernel's business).
    age(&mut ns, f);
    ns.read(f, 0, 3).unwrap();
    let a = ns.attr(f).unwrap();
    assert_eq!((a.atime, a.mtime, a.ctime), (past(), past(), past()));
}

// ---------------------------------------------------------------------------
// setgid directories
// ---------------------------------------------------------------------------

#[test]
fn setgid_directory_inheritance() {
    let mut ns = Namespace::new(
        0,
        50,
        0o2775,
        Limits {
            max_pages: 16,
            max_inodes: 64,
        },
    );
    let s = |kind| NewNode {
        uid: 7,
        gid: 7,
        ..spec(kind)
    };
    let f = ns
        .create_node(ROOT_INO, os("f"), s(Kind::RegularFile))
        .unwrap();
    assert_eq!((f.attr.uid, f.attr.gid), (7, 50));
    assert_eq!(f.attr.perm, 0o644, "files do not get S_ISGID");
    let d = ns
        .create_node(ROOT_INO, os("d"), s(Kind::Directory))
        .unwrap();
    assert_eq!(d.attr.gid, 50);
    assert_eq!(d.attr.perm, 0o2755, "subdirectories inherit S_ISGID");
    let l = ns
        .create_node(
            ROOT_INO,
            os("l"),
            NewNode {
                target: Some(b"x"),
                ..s(Kind::Symlink)
            },
        )
        .unwrap();
    assert_eq!(l.attr.gid, 50);
    assert_eq!(l.attr.perm & 0o2000, 0);
    let p = ns.create_node(ROOT_INO, os("p"), s(Kind::Fifo)).unwrap();
    assert_eq!(p.attr.gid, 50);

    // Inherited further down.
    let dino = d.attr.ino.0;
    let dd = ns.create_node(dino, os("dd"), s(Kind::Directory)).unwrap();
    assert_eq!((dd.attr.gid, dd.attr.perm), (50, 0o2755));
    let ff = ns
        .create_node(dino, os("ff"), s(Kind::RegularFile))
        .unwrap();
    assert_eq!((ff.attr.gid, ff.attr.perm), (50, 0o644));

    // A plain directory does not impose anything.
    let plain = ns
        .create_node(
            ROOT_INO,
            os("plain"),
            NewNode {
                perm: 0o755,
                ..s(Kind::Directory)
            },
        )
        .unwrap()
        .attr
        .ino
        .0;
    ns.setattr(
        plain,
        SetAttr {
            mode: Some(0o755),
            gid: Some(9),
            ..Default::default()
        },
    )
    .unwrap();
    let g = ns.create_node(plain, os("g"), s(Kind::Directory)).unwrap();
    assert_eq!((g.attr.gid, g.attr.perm), (7, 0o755));
    let h = ns
        .create_node(plain, os("h"), s(Kind::RegularFile))
        .unwrap();
    assert_eq!(h.attr.gid, 7);

    // add_path under a setgid root inherits too.
    let z = ns.add_path(os("x/y"), 3, 3).unwrap();
    let za = ns.attr(z).unwrap();
    assert_eq!((za.uid, za.gid, za.perm), (3, 50, 0o2755));
}

// ---------------------------------------------------------------------------
// Extended attributes
// ---------------------------------------------------------------------------

#[test]
fn xattr_set_get_list_remove() {
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    let x = |s: &str| OsStr::new(s).to_owned();
    assert_eq!(ns.listxattr(f, 0).unwrap(), XattrReply::Size(0));
    assert_eq!(ns.listxattr(f, 10).unwrap(), XattrReply::Data(vec![]));
    assert_eq!(
        ns.getxattr(f, &x("user.a"), 0).unwrap_err(),
        e(libc::ENODATA)
    );

    ns.setxattr(f, &x("user.a"), b"hello", 0).unwrap();
    ns.setxattr(f, &x("trusted.t"), b"", 0).unwrap();
    ns.setxattr(f, &x("security.s"), b"sec", libc::XATTR_CREATE)
        .unwrap();
    assert_eq!(
        ns.setxattr(f, &x("user.a"), b"again", libc::XATTR_CREATE)
            .unwrap_err(),
        e(libc::EEXIST)
    );
    assert_eq!(
        ns.setxattr(f, &x("user.missing"), b"v", libc::XATTR_REPLACE)
            .unwrap_err(),
        e(libc::ENODATA)
    );
    assert_eq!(
        ns.getxattr(f, &x("user.missing"), 0).unwrap_err(),
        e(libc::ENODATA)
    );
    ns.setxattr(f, &x("user.a"), b"world!", libc::XATTR_REPLACE)
        .unwrap();

    // Get: size query, too small, exact and larger buffers.
    assert_eq!(
        ns.getxattr(f, &x("user.a"), 0).unwrap(),
        XattrReply::Size(6)
    );
    assert_eq!(
        ns.getxattr(f, &x("user.a"), 5).unwrap_err(),
        e(libc::ERANGE)
    );
    assert_eq!(
        ns.getxattr(f, &x("user.a"), 6).unwrap(),
        XattrReply::Data(b"world!".to_vec())
    );
    assert_eq!(
        ns.getxattr(f, &x("user.a"), 4096).unwrap(),
        XattrReply::Data(b"world!".to_vec())
    );
    assert_eq!(
        ns.getxattr(f, &x("trusted.t"), 0).unwrap(),
        XattrReply::Size(0)
    );

    // List: NUL-terminated names, in one buffer.
    let expected = b"security.s\0trusted.t\0user.a\0".to_vec();
    assert_eq!(
        ns.listxattr(f, 0).unwrap(),
        XattrReply::Size(expected.len() as u32)
    );
    assert_eq!(
        ns.listxattr(f, expected.len() as u32 - 1).unwrap_err(),
        e(libc::ERANGE)
    );
    assert_eq!(
        ns.listxattr(f, expected.len() as u32).unwrap(),
        XattrReply::Data(expected)
    );

    // Namespaces outside user./trusted./security. are refused.
    for bad in ["system.foo", "foo", "user", "userx.a", "os2.x"] {
        assert_eq!(
            ns.setxattr(f, &x(bad), b"v", 0).unwrap_err(),
            e(libc::EOPNOTSUPP),
            "{bad}"
        );
        assert_eq!(
            ns.removexattr(f, &x(bad)).unwrap_err(),
            e(libc::EOPNOTSUPP),
            "{bad}"
        );
        assert!(ns.getxattr(f, &x(bad), 0).is_err(), "{bad}");
    }
    // A bare prefix is not a name.
    assert!(ns.setxattr(f, &x("user."), b"v", 0).is_err());

    // Remove.
    ns.removexattr(f, &x("user.a")).unwrap();
    assert_eq!(
        ns.removexattr(f, &x("user.a")).unwrap_err(),
        e(libc::ENODATA)
    );
    assert_eq!(
        ns.getxattr(f, &x("user.a"), 0).unwrap_err(),
        e(libc::ENODATA)
    );
    ns.removexattr(f, &x("trusted.t")).unwrap();
    ns.removexattr(f, &x("security.s")).unwrap();
    assert_eq!(ns.listxattr(f, 0).unwrap(), XattrReply::Size(0));
    assert!(ns.inodes.xattrs(f).is_none(), "freed when empty");
    assert_eq!(
        ns.removexattr(f, &x("user.never")).unwrap_err(),
        e(libc::ENODATA)
    );
    // Missing inode.
    assert_eq!(
        ns.setxattr(999, &x("user.a"), b"", 0).unwrap_err(),
        e(libc::ENOENT)
    );
    assert_eq!(ns.listxattr(999, 0).unwrap_err(), e(libc::ENOENT));
}

#[test]
fn xattrs_work_on_directories_and_change_ctime() {
    let mut ns = ns();
    let d = mkdir(&mut ns, ROOT_INO, "d");
    age(&mut ns, d);
    ns.setxattr(d, OsStr::new("user.k"), b"v", 0).unwrap();
    let a = ns.attr(d).unwrap();
    assert!(a.ctime > past());
    assert_eq!(a.mtime, past());
    age(&mut ns, d);
    ns.removexattr(d, OsStr::new("user.k")).unwrap();
    assert!(ns.attr(d).unwrap().ctime > past());
    // Xattrs live on the inode: shared by hard links, kept by rename.
    let f = mkfile(&mut ns, ROOT_INO, "f");
    ns.setxattr(f, OsStr::new("user.k"), b"v", 0).unwrap();
    ns.link(f, d, os("g")).unwrap();
    ns.rename(ROOT_INO, os("f"), ROOT_INO, os("h"), 0).unwrap();
    let g = ns.child_ino(d, os("g")).unwrap();
    assert_eq!(
        ns.getxattr(g, OsStr::new("user.k"), 10).unwrap(),
        XattrReply::Data(b"v".to_vec())
    );
}

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

#[test]
fn inode_limit() {
    let mut ns = ns_with(16, 3);
    let start = ns.usage();
    assert_eq!((start.files, start.ffree), (3, 2));
    let a = mkfile(&mut ns, ROOT_INO, "a");
    mkdir(&mut ns, ROOT_INO, "b");
    assert_eq!(ns.usage().ffree, 0);
    for kind in [
        Kind::RegularFile,
        Kind::Directory,
        Kind::Symlink,
        Kind::Fifo,
    ] {
        assert_eq!(
            ns.create_node(ROOT_INO, os("c"), spec(kind)).unwrap_err(),
            e(libc::ENOSPC)
        );
    }
    assert_eq!(ns.add_path(os("b/x"), 0, 0).unwrap_err(), e(libc::ENOSPC));
    // A second name costs an inode's worth, as on tmpfs: none is left.
    assert_eq!(ns.link(a, ROOT_INO, os("a2")).unwrap_err(), e(libc::ENOSPC));
    // An unlinked file still held by the kernel still counts.
    ns.unlink(ROOT_INO, os("a")).unwrap();
    assert_eq!(
        ns.create_node(ROOT_INO, os("c"), spec(Kind::RegularFile))
            .unwrap_err(),
        e(libc::ENOSPC)
    );
    forget_all(&mut ns, a);
    assert_eq!(ns.usage().ffree, 1);
    mkfile(&mut ns, ROOT_INO, "c");
    assert_eq!(ns.usage().ffree, 0);
    assert_eq!(ns.inodes.live(), 3);
    // EEXIST wins over ENOSPC.
    assert_eq!(
        ns.create_node(ROOT_INO, os("c"), spec(Kind::RegularFile))
            .unwrap_err(),
        e(libc::EEXIST)
    );
}

/// tmpfs turns nr_inodes into nr_inodes KiB of space shared by inodes,
/// extra names of files and extended attributes (40 bytes + name + value
/// each), so that neither hard links nor xattrs grow without bound. The
/// numbers below are what tmpfs gives for the same steps.
#[test]
fn hard_links_and_xattrs_share_the_inode_space() {
    let mut ns = ns_with(16, 4);
    let a = mkfile(&mut ns, ROOT_INO, "a");
    assert_eq!(ns.usage().ffree, 2);
    ns.link(a, ROOT_INO, os("a2")).unwrap();
    ns.link(a, ROOT_INO, os("a3")).unwrap();
    assert_eq!(ns.usage().ffree, 0);
    assert_eq!(ns.link(a, ROOT_INO, os("a4")).unwrap_err(), e(libc::ENOSPC));
    // EEXIST wins over ENOSPC.
    assert_eq!(ns.link(a, ROOT_INO, os("a3")).unwrap_err(), e(libc::EEXIST));
    // Removing one of several names frees its share.
    ns.unlink(ROOT_INO, os("a3")).unwrap();
    assert_eq!(ns.usage().ffree, 1);
    ns.check().unwrap();

    // One KiB free: an attribute of exactly 1024 bytes of space fits.
    let v = vec![7u8; 1024 - 40 - "user.a".len()];
    ns.setxattr(a, os("user.a"), &v, 0).unwrap();
    assert_eq!(ns.usage().ffree, 0);
    assert_eq!(
        ns.setxattr(a, os("user.b"), b"", 0).unwrap_err(),
        e(libc::ENOSPC)
    );
    // Replacing needs room for the new value before the old one goes.
    assert_eq!(
        ns.setxattr(a, os("user.a"), b"small", 0).unwrap_err(),
        e(libc::ENOSPC)
    );
    ns.removexattr(a, os("user.a")).unwrap();
    assert_eq!(ns.usage().ffree, 1);
    let too_big = vec![7u8; v.len() + 1];
    assert_eq!(
        ns.setxattr(a, os("user.a"), &too_big, 0).unwrap_err(),
        e(libc::ENOSPC)
    );
    ns.setxattr(a, os("user.a"), b"small", 0).unwrap();
    ns.setxattr(a, os("user.a"), &v[..500], 0).unwrap();
    ns.check().unwrap();
    // Freeing the inode returns its attributes' space with it.
    ns.unlink(ROOT_INO, os("a")).unwrap();
    ns.unlink(ROOT_INO, os("a2")).unwrap();
    forget_all(&mut ns, a);
    assert_eq!(ns.usage().ffree, 3);
    assert_eq!(ns.inodes.xattr_bytes(), 0);
    ns.check().unwrap();
}

/// Without an inode limit (`nr_inodes=0`) nothing is counted against it.
#[test]
fn unlimited_inode_space() {
    let mut ns = ns_with(16, u64::MAX);
    let a = mkfile(&mut ns, ROOT_INO, "a");
    for i in 0..100 {
        ns.link(a, ROOT_INO, os(&format!("l{i}"))).unwrap();
        ns.setxattr(a, os(&format!("user.{i}")), &[0; 4000], 0)
            .unwrap();
    }
    assert_eq!((ns.usage().files, ns.usage().ffree), (0, 0));
    ns.check().unwrap();
}

#[test]
fn page_limit() {
    let mut ns = ns_with(3, 16);
    let f = mkfile(&mut ns, ROOT_INO, "f");
    let g = mkfile(&mut ns, ROOT_INO, "g");
    let data: Vec<u8> = (0..2 * PAGE).map(|i| (i % 251) as u8).collect();
    assert_eq!(ns.write(f, 0, &data).unwrap(), 2 * PAGE as u32);
    assert_eq!(ns.pages_used(), 2);
    assert_eq!(ns.usage().bfree, 1);
    // Needs two new pages, only one left: like tmpfs, a short write fills
    // the page that fits and stops there; earlier data is untouched.
    let mut g2 = ns_with(3, 16);
    let h = mkfile(&mut g2, ROOT_INO, "h");
    g2.write(h, 0, &data).unwrap();
    assert_eq!(
        g2.write(h, 2 * PG + 10, &[9u8; PAGE]).unwrap(),
        (PAGE - 10) as u32
    );
    assert_eq!(g2.size(h).unwrap(), 3 * PG);
    assert_eq!(g2.read(h, 0, 2 * PAGE as u32).unwrap(), data);
    assert_eq!(g2.pages_used(), 3);
    assert_eq!(g2.write(h, 3 * PG, b"x").unwrap_err(), e(libc::ENOSPC));
    let k = mkfile(&mut ns, ROOT_INO, "k");
    assert_eq!(ns.write(k, 0, &[9u8; PAGE + 1]).unwrap(), PAGE as u32);
    ns.unlink(ROOT_INO, os("k")).unwrap();
    ns.forget(k, lookups(&ns, k));
    assert_eq!(ns.read(f, 0, 3 * PAGE as u32).unwrap(), data);
    assert_eq!(ns.size(f).unwrap(), 2 * PG);
    assert_eq!(ns.size(g).unwrap(), 0);
    assert_eq!(ns.pages_used(), 2);
    // Overwriting stored pages needs none.
    ns.write(f, 100, &[1u8; PAGE]).unwrap();
    assert_eq!(ns.pages_used(), 2);
    // Exactly filling the limit works.
    ns.write(g, 5 * PG, b"last").unwrap();
    assert_eq!(ns.pages_used(), 3);
    assert_eq!(ns.usage().bfree, 0);
    assert_eq!(ns.write(g, 0, b"x").unwrap_err(), e(libc::ENOSPC));
    assert_eq!(ns.fallocate(g, 0, 1, 0).unwrap_err(), e(libc::ENOSPC));
    assert_eq!(
        ns.fallocate(g, 0, 1, FALLOC_KEEP_SIZE).unwrap_err(),
        e(libc::ENOSPC)
    );
    assert_eq!(ns.size(g).unwrap(), 5 * PG + 4);
    // Growing by truncate is free.
    ns.setattr(
        g,
        SetAttr {
            size: Some(1 << 40),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ns.pages_used(), 3);
    // Freeing space lets writes through again.
    ns.setattr(
        f,
        SetAttr {
            size: Some(0),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ns.pages_used(), 1);
    ns.write(g, 0, &[2u8; 2 * PAGE]).unwrap();
    assert_eq!(ns.pages_used(), 3);
}

#[test]
fn sparse_write_uses_one_page() {
    let mut ns = ns_with(4, 16);
    let f = mkfile(&mut ns, ROOT_INO, "f");
    let off = 1u64 << 30;
    assert_eq!(ns.write(f, off, b"abcd").unwrap(), 4);
    assert_eq!(ns.pages_used(), 1);
    let a = ns.attr(f).unwrap();
    assert_eq!(a.size, off + 4);
    assert_eq!(a.blocks, PG / 512);
    assert_eq!(ns.read(f, off - 2, 10).unwrap(), b"\0\0abcd");
    assert_eq!(ns.read(f, 0, 16).unwrap(), vec![0u8; 16]);
    assert_eq!(ns.read(f, off + 4, 16).unwrap(), Vec::<u8>::new());
    // A write straddling two pages costs two.
    ns.write(f, 10 * PG - 1, b"xy").unwrap();
    assert_eq!(ns.pages_used(), 3);
    // Empty writes cost nothing.
    assert_eq!(ns.write(f, 100 * PG, b"").unwrap(), 0);
    assert_eq!(ns.pages_used(), 3);
}

#[test]
fn write_past_max_file_size_is_efbig() {
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    assert_eq!(
        ns.write(f, i64::MAX as u64, b"x").unwrap_err(),
        e(libc::EFBIG)
    );
    assert_eq!(
        ns.fallocate(f, i64::MAX as u64, 1, 0).unwrap_err(),
        e(libc::EFBIG)
    );
    assert_eq!(
        ns.fallocate(f, u64::MAX - 1, 4, 0).unwrap_err(),
        e(libc::EFBIG)
    );
    assert_eq!(ns.pages_used(), 0);
    assert_eq!(ns.size(f).unwrap(), 0);
}

/// `write` computes the pages it needs (`offset + len - 1`) before checking
/// for EFBIG, so an offset near `u64::MAX` overflows (a panic in debug
/// builds) instead of failing with EFBIG like `fallocate` does.
#[test]
fn write_at_huge_offset_is_efbig_not_overflow() {
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ns.write(f, u64::MAX - 1, b"abcd")
    }));
    assert!(
        matches!(r, Ok(Err(e)) if e.code() == libc::EFBIG),
        "write(f, u64::MAX - 1, 4 bytes) should be EFBIG, got {}",
        match &r {
            Ok(v) => format!("{v:?}"),
            Err(_) => "a panic".to_owned(),
        }
    );
}

// ---------------------------------------------------------------------------
// lseek, fallocate, truncate, readlink
// ---------------------------------------------------------------------------

#[test]
fn lseek_data_and_hole() {
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    assert_eq!(ns.lseek(f, 0, libc::SEEK_DATA), Err(e(libc::ENXIO)));
    assert_eq!(ns.lseek(f, 0, libc::SEEK_HOLE), Err(e(libc::ENXIO)));
    ns.write(f, 0, b"x").unwrap();
    ns.write(f, 10 * PG + 5, b"yz").unwrap();
    let size = (10 * PG + 7) as i64;
    let p = PG as i64;
    assert_eq!(ns.lseek(f, 0, libc::SEEK_DATA), Ok(0));
    assert_eq!(ns.lseek(f, 100, libc::SEEK_DATA), Ok(100));
    assert_eq!(ns.lseek(f, 0, libc::SEEK_HOLE), Ok(p));
    assert_eq!(ns.lseek(f, p, libc::SEEK_HOLE), Ok(p));
    assert_eq!(ns.lseek(f, p, libc::SEEK_DATA), Ok(10 * p));
    assert_eq!(ns.lseek(f, 5 * p, libc::SEEK_DATA), Ok(10 * p));
    assert_eq!(ns.lseek(f, 10 * p, libc::SEEK_HOLE), Ok(size));
    assert_eq!(ns.lseek(f, size - 1, libc::SEEK_DATA), Ok(size - 1));
    assert_eq!(ns.lseek(f, size, libc::SEEK_DATA), Err(e(libc::ENXIO)));
    assert_eq!(ns.lseek(f, size, libc::SEEK_HOLE), Err(e(libc::ENXIO)));
    assert_eq!(
        ns.lseek(f, size + 100, libc::SEEK_DATA),
        Err(e(libc::ENXIO))
    );
    assert_eq!(ns.lseek(f, -1, libc::SEEK_DATA), Err(e(libc::ENXIO)));
    assert_eq!(ns.lseek(f, -1, libc::SEEK_HOLE), Err(e(libc::ENXIO)));
    assert_eq!(ns.lseek(f, 7, libc::SEEK_SET), Ok(7));
    assert_eq!(ns.lseek(f, 3, libc::SEEK_END), Ok(size + 3));
    assert_eq!(ns.lseek(f, 0, 42), Err(e(libc::EINVAL)));
    // Truncated-away tail: data past the new end is gone.
    ns.setattr(
        f,
        SetAttr {
            size: Some(2 * PG),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ns.lseek(f, p, libc::SEEK_DATA), Err(e(libc::ENXIO)));
    assert_eq!(ns.lseek(f, p, libc::SEEK_HOLE), Ok(p));
    // Not a regular file.
    let d = mkdir(&mut ns, ROOT_INO, "d");
    assert_eq!(ns.lseek(d, 0, libc::SEEK_DATA), Err(e(libc::EISDIR)));
    let l = symlink(&mut ns, ROOT_INO, "l", b"f");
    assert_eq!(ns.lseek(l, 0, libc::SEEK_DATA), Err(e(libc::EINVAL)));
    assert_eq!(ns.lseek(999, 0, libc::SEEK_DATA), Err(e(libc::ENOENT)));
}

#[test]
fn fallocate_modes() {
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    // Mode 0 grows the size and stores pages.
    ns.fallocate(f, 0, 2 * PG + 1, 0).unwrap();
    assert_eq!(ns.size(f).unwrap(), 2 * PG + 1);
    assert_eq!(ns.pages_used(), 3);
    assert_eq!(ns.attr(f).unwrap().blocks, 3 * PG / 512);
    assert_eq!(ns.read(f, 0, 10).unwrap(), vec![0u8; 10]);
    // Mode 0 inside the file does not shrink it.
    ns.fallocate(f, 0, 10, 0).unwrap();
    assert_eq!(ns.size(f).unwrap(), 2 * PG + 1);
    assert_eq!(ns.pages_used(), 3);
    // KEEP_SIZE stores pages beyond the end without growing.
    ns.fallocate(f, 10 * PG, PG, FALLOC_KEEP_SIZE).unwrap();
    assert_eq!(ns.size(f).unwrap(), 2 * PG + 1);
    assert_eq!(ns.pages_used(), 4);
    assert_eq!(ns.attr(f).unwrap().blocks, 4 * PG / 512);
    // Allocated pages keep data written before.
    ns.write(f, 0, b"keep").unwrap();
    ns.fallocate(f, 0, PG, 0).unwrap();
    assert_eq!(ns.read(f, 0, 4).unwrap(), b"keep");
    assert_eq!(ns.pages_used(), 4);

    // PUNCH_HOLE | KEEP_SIZE frees fully covered pages, zeroes partial ones.
    ns.write(f, PG, &[5u8; PAGE]).unwrap();
    let punch = FALLOC_PUNCH_HOLE | FALLOC_KEEP_SIZE;
    ns.fallocate(f, 2, PG + 10, punch).unwrap();
    assert_eq!(ns.pages_used(), 4, "no page fully covered");
    assert_eq!(ns.read(f, 0, 4).unwrap(), b"ke\0\0");
    let r = ns.read(f, PG, PAGE as u32).unwrap();
    assert!(r[..12].iter().all(|&b| b == 0));
    assert!(r[12..].iter().all(|&b| b == 5));
    ns.fallocate(f, 0, 2 * PG, punch).unwrap();
    assert_eq!(ns.pages_used(), 2);
    assert_eq!(ns.size(f).unwrap(), 2 * PG + 1, "size kept");
    assert_eq!(ns.read(f, 0, 2 * PAGE as u32).unwrap(), vec![0u8; 2 * PAGE]);
    // Punching the page kept past the end frees it too.
    ns.fallocate(f, 10 * PG, PG, punch).unwrap();
    assert_eq!(ns.pages_used(), 1);
    // Punching a hole in a hole is fine.
    ns.fallocate(f, 50 * PG, PG, punch).unwrap();
    assert_eq!(ns.pages_used(), 1);

    // Other modes are refused.
    // (COLLAPSE_RANGE, ZERO_RANGE, INSERT_RANGE, UNSHARE_RANGE: Linux values.)
    for mode in [
        FALLOC_PUNCH_HOLE,
        0x08,
        0x10,
        0x20,
        0x40,
        0x10 | FALLOC_KEEP_SIZE,
    ] {
        assert_eq!(
            ns.fallocate(f, 0, PG, mode).unwrap_err(),
            e(libc::EOPNOTSUPP),
            "mode {mode:#x}"
        );
    }
    assert_eq!(ns.pages_used(), 1);
    // Not a regular file.
    let d = mkdir(&mut ns, ROOT_INO, "d");
    assert_eq!(ns.fallocate(d, 0, 1, 0).unwrap_err(), e(libc::EISDIR));
    // Everything is given back when the file goes.
    ns.unlink(ROOT_INO, os("f")).unwrap();
    forget_all(&mut ns, f);
    assert_eq!(ns.pages_used(), 0);
}

/// tmpfs (since Linux 4.2, "tmpfs: truncate prealloc blocks past i_size")
/// frees pages preallocated past the end with `FALLOC_FL_KEEP_SIZE` on any
/// truncate with `newsize <= oldsize`, the same size included:
/// `fallocate(KEEP_SIZE, 0, 10 pages); pwrite(5 pages); ftruncate(5 pages)`
/// leaves 5 pages, not 10.
#[test]
fn truncate_to_same_size_frees_preallocated_pages_past_eof() {
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    ns.fallocate(f, 0, 10 * PG, FALLOC_KEEP_SIZE).unwrap();
    ns.write(f, 0, &[1u8; 5 * PAGE]).unwrap();
    assert_eq!(ns.size(f).unwrap(), 5 * PG);
    assert_eq!(ns.pages_used(), 10);
    // Shrinking drops everything past the new end (this works).
    let g = mkfile(&mut ns, ROOT_INO, "g");
    ns.write(g, 0, &[1u8; PAGE]).unwrap();
    ns.fallocate(g, 4 * PG, PG, FALLOC_KEEP_SIZE).unwrap();
    ns.setattr(
        g,
        SetAttr {
            size: Some(10),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ns.attr(g).unwrap().blocks, PG / 512);
    assert_eq!(ns.pages_used(), 11);
    // Truncating to the current size must drop the preallocated tail too.
    let a = ns
        .setattr(
            f,
            SetAttr {
                size: Some(5 * PG),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(a.size, 5 * PG);
    assert_eq!(
        (a.blocks, ns.pages_used()),
        (5 * PG / 512, 6),
        "pages past EOF survive ftruncate to the same size"
    );
}

#[test]
fn truncate_rules() {
    let mut ns = ns();
    let d = mkdir(&mut ns, ROOT_INO, "d");
    let l = symlink(&mut ns, ROOT_INO, "l", b"target");
    let p = create(&mut ns, ROOT_INO, "p", Kind::Fifo);
    let size = |s| SetAttr {
        size: Some(s),
        ..Default::default()
    };
    assert_eq!(ns.setattr(d, size(0)).unwrap_err(), e(libc::EISDIR));
    assert_eq!(ns.setattr(l, size(0)).unwrap_err(), e(libc::EINVAL));
    assert_eq!(ns.setattr(p, size(0)).unwrap_err(), e(libc::EINVAL));
    assert_eq!(ns.readlink(l).unwrap(), b"target");
    assert_eq!(ns.attr(l).unwrap().size, 6);

    let f = mkfile(&mut ns, ROOT_INO, "f");
    ns.write(f, 0, &[3u8; 3 * PAGE]).unwrap();
    assert_eq!(ns.pages_used(), 3);
    let a = ns.setattr(f, size(PG + 1)).unwrap();
    assert_eq!(a.size, PG + 1);
    assert_eq!(a.blocks, 2 * PG / 512);
    assert_eq!(ns.pages_used(), 2);
    // Growing again reads zeros past the old end.
    ns.setattr(f, size(3 * PG)).unwrap();
    let r = ns.read(f, 0, 3 * PAGE as u32).unwrap();
    assert!(r[..PAGE + 1].iter().all(|&b| b == 3));
    assert!(r[PAGE + 1..].iter().all(|&b| b == 0));
    assert_eq!(ns.pages_used(), 2);
    ns.setattr(f, size(0)).unwrap();
    assert_eq!(ns.pages_used(), 0);
    assert_eq!(ns.read(f, 0, 10).unwrap(), Vec::<u8>::new());
    // Reads are clamped to the size.
    ns.write(f, 0, b"hello").unwrap();
    assert_eq!(ns.read(f, 3, 100).unwrap(), b"lo");
    assert_eq!(ns.read(f, 5, 100).unwrap(), Vec::<u8>::new());
    assert_eq!(ns.read(f, u64::MAX, u32::MAX).unwrap(), Vec::<u8>::new());
}

#[test]
fn readlink_rules() {
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    let d = mkdir(&mut ns, ROOT_INO, "d");
    assert_eq!(ns.readlink(f).unwrap_err(), e(libc::EINVAL));
    assert_eq!(ns.readlink(d).unwrap_err(), e(libc::EINVAL));
    assert_eq!(ns.readlink(999).unwrap_err(), e(libc::ENOENT));
    let target = b"/some/where/\xff\xfe";
    let l = symlink(&mut ns, d, "l", target);
    assert_eq!(ns.readlink(l).unwrap(), target);
    assert_eq!(ns.read(l, 0, 10).unwrap_err(), e(libc::EINVAL));
    assert_eq!(ns.read(d, 0, 10).unwrap_err(), e(libc::EISDIR));
    assert_eq!(ns.write(d, 0, b"x").unwrap_err(), e(libc::EISDIR));
}

// ---------------------------------------------------------------------------
// Directory listing, parents, add_path, access
// ---------------------------------------------------------------------------

#[test]
fn entries_after_order_and_resume() {
    let mut ns = ns();
    let d = mkdir(&mut ns, ROOT_INO, "d");
    let c = mkfile(&mut ns, d, "c");
    let a = mkdir(&mut ns, d, "a");
    let b = symlink(&mut ns, d, "b", b"x");
    let upper = mkfile(&mut ns, d, "B");
    let aa = create(&mut ns, d, "aa", Kind::Fifo);
    let all: Vec<(String, u64, FileType)> = ns
        .entries_after(d, None)
        .unwrap()
        .map(|(n, i, k)| (n.to_string_lossy().into_owned(), i, k))
        .collect();
    assert_eq!(
        all,
        vec![
            ("B".to_owned(), upper, FileType::RegularFile),
            ("a".to_owned(), a, FileType::Directory),
            ("aa".to_owned(), aa, FileType::NamedPipe),
            ("b".to_owned(), b, FileType::Symlink),
            ("c".to_owned(), c, FileType::RegularFile),
        ]
    );
    assert_eq!(names(&ns, d, Some(b"a")), ["aa", "b", "c"]);
    assert_eq!(names(&ns, d, Some(b"aa")), ["b", "c"]);
    assert_eq!(
        names(&ns, d, Some(b"ab")),
        ["b", "c"],
        "resume after a gone name"
    );
    assert_eq!(names(&ns, d, Some(b"")), ["B", "a", "aa", "b", "c"]);
    assert_eq!(names(&ns, d, Some(b"c")), Vec::<String>::new());
    assert_eq!(names(&ns, d, Some(b"zzz")), Vec::<String>::new());
    // Resuming after a name removed in between still continues correctly.
    ns.unlink(d, os("aa")).unwrap();
    assert_eq!(names(&ns, d, Some(b"aa")), ["b", "c"]);
    // Hard links appear under each name with the same inode.
    ns.link(c, d, os("c2")).unwrap();
    let inos: Vec<u64> = ns
        .entries_after(d, Some(b"b"))
        .unwrap()
        .map(|(_, i, _)| i)
        .collect();
    assert_eq!(inos, [c, c]);
    // Errors.
    assert!(matches!(
        ns.entries_after(c, None),
        Err(e) if e.code() == libc::ENOTDIR
    ));
    assert!(matches!(
        ns.entries_after(999, None),
        Err(e) if e.code() == libc::ENOENT
    ));
    assert_eq!(names(&ns, a, None), Vec::<String>::new());
}

#[test]
fn parent_of_cases() {
    let mut ns = ns();
    let a = mkdir(&mut ns, ROOT_INO, "a");
    let b = mkdir(&mut ns, a, "b");
    let f = mkfile(&mut ns, a, "f");
    assert_eq!(ns.parent_of(ROOT_INO), ROOT_INO);
    assert_eq!(ns.parent_of(a), ROOT_INO);
    assert_eq!(ns.parent_of(b), a);
    // Not a directory, or unknown: itself.
    assert_eq!(ns.parent_of(f), f);
    assert_eq!(ns.parent_of(999), 999);
}

#[test]
fn add_path_creates_intermediates() {
    let mut ns = ns();
    let z = ns.add_path(os("/x/y/z"), 4, 5).unwrap();
    let y = ns
        .child_ino(ns.child_ino(ROOT_INO, os("x")).unwrap(), os("y"))
        .unwrap();
    let x = ns.child_ino(ROOT_INO, os("x")).unwrap();
    assert_eq!(ns.child_ino(y, os("z")).unwrap(), z);
    assert_eq!(nlink(&ns, ROOT_INO), 3);
    assert_eq!(nlink(&ns, x), 3);
    assert_eq!(nlink(&ns, y), 3);
    assert_eq!(nlink(&ns, z), 2);
    let za = ns.attr(z).unwrap();
    assert_eq!(
        (za.kind, za.perm, za.uid, za.gid),
        (FileType::Directory, 0o755, 4, 5)
    );
    assert_eq!(ns.parent_of(z), y);
    for i in [x, y, z] {
        assert_eq!(lookups(&ns, i), 0, "add_path counts no kernel lookups");
    }
    assert_eq!(ns.inodes.live(), 4);

    // Idempotent.
    assert_eq!(ns.add_path(os("x/y/z"), 0, 0).unwrap(), z);
    assert_eq!(ns.add_path(os("x//y/./z/"), 0, 0).unwrap(), z);
    assert_eq!(ns.add_path(os("x/y"), 0, 0).unwrap(), y);
    assert_eq!(ns.inodes.live(), 4);
    assert_eq!((nlink(&ns, x), nlink(&ns, y)), (3, 3));
    assert_eq!(ns.attr(z).unwrap().uid, 4, "existing directories untouched");
    // A sibling shares the prefix.
    let w = ns.add_path(os("x/y/w"), 0, 0).unwrap();
    assert_eq!(nlink(&ns, y), 4);
    assert_eq!(ns.parent_of(w), y);
    assert_eq!(ns.inodes.live(), 5);
    // Root.
    assert_eq!(ns.add_path(os("/"), 0, 0).unwrap(), ROOT_INO);
    assert_eq!(ns.add_path(os(""), 0, 0).unwrap(), ROOT_INO);

    // Through or onto a file.
    mkfile(&mut ns, y, "file");
    assert_eq!(
        ns.add_path(os("x/y/file/deeper"), 0, 0).unwrap_err(),
        e(libc::ENOTDIR)
    );
    assert_eq!(
        ns.add_path(os("x/y/file"), 0, 0).unwrap_err(),
        e(libc::ENOTDIR)
    );
    assert_eq!(
        ns.add_path(os("x/../y"), 0, 0).unwrap_err(),
        e(libc::EINVAL)
    );
    assert_eq!(ns.inodes.live(), 6);
    assert_eq!(nlink(&ns, y), 4);
    // The created directories are ordinary: removable bottom-up.
    ns.rmdir(y, os("z")).unwrap();
    ns.rmdir(y, os("w")).unwrap();
    ns.unlink(y, os("file")).unwrap();
    ns.rmdir(x, os("y")).unwrap();
    ns.rmdir(ROOT_INO, os("x")).unwrap();
    // The file was looked up once by mkfile.
    assert_eq!(ns.inodes.live(), 2);
    assert_eq!(nlink(&ns, ROOT_INO), 2);
}

#[test]
fn access_checks() {
    let mut ns = ns();
    let s = NewNode {
        perm: 0o640,
        uid: 1000,
        gid: 100,
        ..spec(Kind::RegularFile)
    };
    let f = ns.create_node(ROOT_INO, os("f"), s).unwrap().attr.ino.0;
    let (r, w, x) = (libc::R_OK, libc::W_OK, libc::X_OK);
    assert_eq!(ns.access(f, libc::F_OK, 5, 5), Ok(()));
    assert_eq!(ns.access(f, r | w, 1000, 1), Ok(()));
    assert_eq!(ns.access(f, x, 1000, 1), Err(e(libc::EACCES)));
    assert_eq!(ns.access(f, r, 2000, 100), Ok(()));
    assert_eq!(ns.access(f, w, 2000, 100), Err(e(libc::EACCES)));
    assert_eq!(ns.access(f, r, 2000, 200), Err(e(libc::EACCES)));
    assert_eq!(ns.access(f, r | w, 0, 0), Ok(()));
    assert_eq!(ns.access(f, x, 0, 0), Err(e(libc::EACCES)));
    ns.setattr(
        f,
        SetAttr {
            mode: Some(0o641),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ns.access(f, x, 0, 0), Ok(()));
    assert_eq!(ns.access(ROOT_INO, x, 0, 0), Ok(()));
    assert_eq!(ns.access(999, libc::F_OK, 0, 0), Err(e(libc::ENOENT)));
}

// ---------------------------------------------------------------------------
// Property test: random namespace operations keep the structures consistent
// ---------------------------------------------------------------------------

const NAMES: [&str; 3] = ["a", "b", "c"];
const P_MAX_PAGES: u64 = 6;
const P_MAX_INODES: u64 = 14;

#[derive(Clone, Debug)]
enum Op {
    Create {
        dir: usize,
        name: usize,
        is_dir: bool,
    },
    Unlink {
        dir: usize,
        name: usize,
    },
    Rmdir {
        dir: usize,
        name: usize,
    },
    Link {
        target: usize,
        dir: usize,
        name: usize,
    },
    Rename {
        d1: usize,
        n1: usize,
        d2: usize,
        n2: usize,
        flags: u32,
    },
    Lookup {
        dir: usize,
        name: usize,
    },
    Forget {
        which: usize,
        n: u64,
    },
    Write {
        which: usize,
        page: u64,
    },
    Truncate {
        which: usize,
        size: u64,
    },
    /// chattr flags on a reachable inode (files and directories only exist).
    SetFlags {
        which: usize,
        flags: u32,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let idx = || 0usize..64;
    let name = || 0usize..NAMES.len();
    prop_oneof![
        4 => (idx(), name(), any::<bool>()).prop_map(|(dir, name, is_dir)| Op::Create { dir, name, is_dir }),
        2 => (idx(), name()).prop_map(|(dir, name)| Op::Unlink { dir, name }),
        2 => (idx(), name()).prop_map(|(dir, name)| Op::Rmdir { dir, name }),
        2 => (idx(), idx(), name()).prop_map(|(target, dir, name)| Op::Link { target, dir, name }),
        4 => (idx(), name(), idx(), name(), prop_oneof![Just(0u32), Just(RENAME_NOREPLACE), Just(RENAME_EXCHANGE)])
            .prop_map(|(d1, n1, d2, n2, flags)| Op::Rename { d1, n1, d2, n2, flags }),
        2 => (idx(), name()).prop_map(|(dir, name)| Op::Lookup { dir, name }),
        3 => (idx(), 1u64..4).prop_map(|(which, n)| Op::Forget { which, n }),
        2 => (idx(), 0u64..4).prop_map(|(which, page)| Op::Write { which, page }),
        1 => (idx(), 0u64..3 * PG).prop_map(|(which, size)| Op::Truncate { which, size }),
        1 => (idx(), prop_oneof![
            Just(0u32),
            Just(crate::namespace::flags::FS_IMMUTABLE_FL),
            Just(crate::namespace::flags::FS_APPEND_FL),
            Just(crate::namespace::flags::FS_NODUMP_FL | crate::namespace::flags::FS_NOATIME_FL),
        ])
            .prop_map(|(which, flags)| Op::SetFlags { which, flags }),
    ]
}

/// Every trie node as `(node, ino)`, parents before children.
fn trie_nodes(ns: &Namespace) -> Vec<(NodeId, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![ns.trie.root()];
    while let Some(n) = stack.pop() {
        out.push((
            n,
            u64::from(*ns.trie.value(n).expect("live trie node has a value")),
        ));
        stack.extend(ns.trie.children(n).map(|(_, c)| c));
    }
    out
}

/// Live directories reachable from the root, in a deterministic order.
fn reachable_dirs(ns: &Namespace) -> Vec<u64> {
    trie_nodes(ns)
        .into_iter()
        .filter(|&(n, _)| ns.trie.is_dir(n))
        .map(|(_, i)| i)
        .collect()
}

/// Every inode reachable through a name (root included).
fn reachable_inos(ns: &Namespace) -> Vec<u64> {
    let mut v: Vec<u64> = trie_nodes(ns).into_iter().map(|(_, i)| i).collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn pick<T: Copy>(v: &[T], i: usize) -> Option<T> {
    (!v.is_empty()).then(|| v[i % v.len()])
}

fn check_invariants(ns: &Namespace, held: &BTreeMap<u64, u64>) {
    let nodes = trie_nodes(ns);
    assert_eq!(nodes.len(), ns.trie.len());
    assert_eq!(nodes[0].1, ROOT_INO);
    let mut refs: BTreeMap<u64, u32> = BTreeMap::new();
    for &(node, ino) in &nodes {
        *refs.entry(ino).or_default() += 1;
        let inode = ns
            .inodes
            .get(ino)
            .unwrap_or_else(|| panic!("trie node points at freed inode {ino}"));
        assert_eq!(
            ns.trie.is_dir(node),
            inode.kind == Kind::Directory,
            "node kind of {ino}"
        );
        if inode.kind == Kind::Directory {
            assert_eq!(inode.dir_node(), Some(node), "dir {ino} knows its node");
            let subdirs = ns
                .trie
                .children(node)
                .filter(|&(_, c)| ns.trie.is_dir(c))
                .count();
            assert_eq!(inode.nlink as usize, 2 + subdirs, "nlink of dir {ino}");
            let entries = ns.trie.child_count(node) as u64;
            assert_eq!(ns.attr(ino).unwrap().size, 20 * (2 + entries));
            assert_eq!(ns.entries_after(ino, None).unwrap().count() as u64, entries);
            for (_, c) in ns.trie.children(node) {
                if ns.trie.is_dir(c) {
                    assert_eq!(ns.parent_of(u64::from(*ns.trie.value(c).unwrap())), ino);
                }
            }
        }
    }
    for (&ino, &count) in &refs {
        let inode = ns.inodes.get(ino).unwrap();
        if inode.kind == Kind::Directory {
            assert_eq!(count, 1, "directory {ino} has one name");
        } else {
            assert_eq!(inode.nlink, count, "nlink of {ino}");
        }
    }
    let mut orphans = 0u64;
    let mut pages = 0u64;
    for (ino, inode) in ns.inodes.iter() {
        assert_eq!(
            inode.lookups(),
            held.get(&ino).copied().unwrap_or(0),
            "lookups of {ino}"
        );
        if !refs.contains_key(&ino) {
            orphans += 1;
            assert_eq!(inode.nlink, 0, "nameless inode {ino} has nlink 0");
            assert!(
                inode.lookups() > 0,
                "nameless inode {ino} without lookups not freed"
            );
            if inode.kind == Kind::Directory {
                assert_eq!(inode.dir_node(), None);
                assert_eq!(ns.entries_after(ino, None).unwrap().count(), 0);
                assert_eq!(ns.parent_of(ino), ino);
            }
        }
        pages += inode
            .file()
            .map_or(0, crate::namespace::data::FileData::pages);
    }
    assert_eq!(ns.inodes.live(), refs.len() as u64 + orphans);
    assert_eq!(ns.inodes.iter().count() as u64, ns.inodes.live());
    // With checkpoints, pages shared count once: `check` below counts
    // distinct buffers across every tree.
    if ns.checkpoints().tables().next().is_none() {
        assert_eq!(ns.pages_used(), pages);
    }
    assert_eq!(ns.check(), Ok(()));
    // Truncating inside a page a checkpoint shares copies it and never
    // fails (as truncation never does on tmpfs): up to a page per file over.
    let files = ns
        .inodes
        .iter()
        .filter(|(_, i)| i.kind == Kind::RegularFile)
        .count() as u64;
    assert!(ns.pages_used() <= P_MAX_PAGES + files);
    // Inodes, extra names of files and xattrs share the inode space.
    let extra: u64 = refs
        .iter()
        .filter(|(ino, _)| {
            ns.inodes
                .get(**ino)
                .is_some_and(|i| i.kind != Kind::Directory)
        })
        .map(|(_, &n)| u64::from(n) - 1)
        .sum();
    let xbytes: u64 = ns
        .inodes
        .iter()
        .filter_map(|(ino, _)| ns.inodes.xattrs(ino))
        .flat_map(|x| x.iter())
        .map(|(k, v)| crate::namespace::inode::xattr_space(k, v))
        .sum();
    let used = (ns.inodes.live() + extra) * 1024 + xbytes + ns.checkpoints.ispace();
    let max = ns.limits().max_inodes;
    assert!(used <= max * 1024);
    assert_eq!(ns.usage().ffree, (max * 1024 - used) / 1024);
    for &ino in held.keys() {
        assert!(ns.inodes.get(ino).is_some(), "held inode {ino} freed");
    }
}

fn apply(ns: &mut Namespace, held: &mut BTreeMap<u64, u64>, op: &Op) {
    // An operation the flags refuse changes no name.
    let names = ns.trie.leaves();
    let refused = apply_op(ns, held, op);
    if refused {
        assert_eq!(
            ns.trie.leaves(),
            names,
            "{op:?} was refused but changed names"
        );
    }
}

/// Applies `op`; true when the chattr flags refused it (`EPERM`).
fn apply_op(ns: &mut Namespace, held: &mut BTreeMap<u64, u64>, op: &Op) -> bool {
    let perm = |r: &Result<()>| *r == Err(e(libc::EPERM));
    let dirs = reachable_dirs(ns);
    let name = |i: usize| os(NAMES[i]);
    let mut hold = |r: Result<Entry>| {
        let refused = matches!(r, Err(err) if err == e(libc::EPERM));
        if let Ok(ent) = r {
            *held.entry(ent.attr.ino.0).or_default() += 1;
        }
        refused
    };
    match *op {
        Op::Create {
            dir,
            name: n,
            is_dir,
        } => {
            let d = pick(&dirs, dir).unwrap();
            let kind = if is_dir {
                Kind::Directory
            } else {
                Kind::RegularFile
            };
            hold(ns.create_node(d, name(n), spec(kind)))
        }
        Op::Unlink { dir, name: n } => perm(&ns.unlink(pick(&dirs, dir).unwrap(), name(n))),
        Op::Rmdir { dir, name: n } => perm(&ns.rmdir(pick(&dirs, dir).unwrap(), name(n))),
        Op::Link {
            target,
            dir,
            name: n,
        } => {
            let t = pick(&reachable_inos(ns), target).unwrap();
            hold(ns.link(t, pick(&dirs, dir).unwrap(), name(n)))
        }
        Op::Rename {
            d1,
            n1,
            d2,
            n2,
            flags,
        } => {
            let (p1, p2) = (pick(&dirs, d1).unwrap(), pick(&dirs, d2).unwrap());
            perm(&ns.rename(p1, name(n1), p2, name(n2), flags))
        }
        Op::Lookup { dir, name: n } => {
            hold(ns.lookup(pick(&dirs, dir).unwrap(), name(n)));
            false
        }
        Op::Forget { which, n } => {
            let keys: Vec<u64> = held.keys().copied().collect();
            if let Some(ino) = pick(&keys, which) {
                let c = held.get_mut(&ino).unwrap();
                let n = n.min(*c);
                *c -= n;
                if *c == 0 {
                    held.remove(&ino);
                }
                ns.forget(ino, n);
            }
            false
        }
        Op::Write { which, page } => {
            let files: Vec<u64> = ns
                .inodes
                .iter()
                .filter(|(_, i)| i.kind == Kind::RegularFile)
                .map(|(ino, _)| ino)
                .collect();
            if let Some(f) = pick(&files, which) {
                let before = ns.read(f, 0, u32::MAX).unwrap();
                match ns.write(f, page * PG + 7, b"xyz") {
                    Ok(n) => assert_eq!(n, 3),
                    Err(err) => {
                        assert_eq!(err, e(libc::ENOSPC));
                        assert_eq!(ns.read(f, 0, u32::MAX).unwrap(), before);
                    }
                }
            }
            false
        }
        Op::Truncate { which, size } => {
            let files: Vec<u64> = ns
                .inodes
                .iter()
                .filter(|(_, i)| i.kind == Kind::RegularFile)
                .map(|(ino, _)| ino)
                .collect();
            if let Some(f) = pick(&files, which) {
                let fixed = ns.inodes.get(f).unwrap().flags.fixed();
                let r = ns.setattr(
                    f,
                    SetAttr {
                        size: Some(size),
                        ..Default::default()
                    },
                );
                if fixed {
                    assert_eq!(r.map(|_| ()), Err(e(libc::EPERM)));
                    return true;
                }
                assert_eq!(r.unwrap().size, size);
            }
            false
        }
        Op::SetFlags { which, flags } => {
            let ino = pick(&reachable_inos(ns), which).unwrap();
            ns.set_flags(ino, flags).unwrap();
            assert_eq!(ns.get_flags(ino), Ok(flags));
            false
        }
    }
}

/// Clears every inode's chattr flags, so that everything can be removed.
fn clear_flags(ns: &mut Namespace) {
    let inos: Vec<u64> = ns.inodes.iter().map(|(ino, _)| ino).collect();
    for ino in inos {
        let _ = ns.set_flags(ino, 0);
    }
}

/// Removes everything below directory `dir`, depth first.
fn remove_all(ns: &mut Namespace, dir: u64) {
    let entries: Vec<(std::ffi::OsString, u64, FileType)> = ns
        .entries_after(dir, None)
        .unwrap()
        .map(|(n, i, k)| (n.to_owned(), i, k))
        .collect();
    for (name, ino, kind) in entries {
        if kind == FileType::Directory {
            remove_all(ns, ino);
            ns.rmdir(dir, &name).unwrap();
        } else {
            ns.unlink(dir, &name).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_operations_keep_invariants(ops in proptest::collection::vec(op_strategy(), 1..48)) {
        let mut ns = ns_with(P_MAX_PAGES, P_MAX_INODES);
        let mut held: BTreeMap<u64, u64> = BTreeMap::new();
        check_invariants(&ns, &held);
        for op in &ops {
            apply(&mut ns, &mut held, op);
            check_invariants(&ns, &held);
        }
        clear_flags(&mut ns);
        remove_all(&mut ns, ROOT_INO);
        check_invariants(&ns, &held);
        for (&ino, &n) in &held {
            ns.forget(ino, n);
        }
        held.clear();
        check_invariants(&ns, &held);
        prop_assert_eq!(ns.inodes.live(), 1);
        prop_assert_eq!(ns.pages_used(), 0);
        prop_assert_eq!(ns.trie.len(), 1);
        prop_assert_eq!(nlink(&ns, ROOT_INO), 2);
        prop_assert_eq!(ns.usage().ffree, P_MAX_INODES - 1);
        prop_assert_eq!(ns.usage().bfree, P_MAX_PAGES);
    }
}

#[cfg(target_os = "linux")]
#[test]
fn fallocate_flags_match_linux() {
    assert_eq!(FALLOC_KEEP_SIZE, libc::FALLOC_FL_KEEP_SIZE);
    assert_eq!(FALLOC_PUNCH_HOLE, libc::FALLOC_FL_PUNCH_HOLE);
}

#[test]
fn only_device_nodes_keep_a_device_number() {
    let mut ns = ns();
    let rdev = (8 << 8) | 1;
    for (name, kind, want) in [
        ("c", Kind::CharDevice, rdev),
        ("b", Kind::BlockDevice, rdev),
        ("p", Kind::Fifo, 0),
        ("s", Kind::Socket, 0),
        ("f", Kind::RegularFile, 0),
    ] {
        let s = NewNode { rdev, ..spec(kind) };
        let e = ns.create_node(ROOT_INO, os(name), s).unwrap();
        assert_eq!(e.attr.rdev, want, "{kind:?}");
    }
}

#[test]
fn generations_survive_many_reuses_of_one_number() {
    let mut ns = ns();
    let (mut last, mut number) = (0, None);
    for _ in 0..100 {
        let f = mkfile(&mut ns, ROOT_INO, "f");
        assert!(number.is_none_or(|n| n == f), "inode number not reused");
        number = Some(f);
        let g = ns.generation(f);
        assert!(g > last, "generation {g} after {last}");
        last = g;
        ns.unlink(ROOT_INO, os("f")).unwrap();
        ns.forget(f, 1);
    }
}

#[test]
fn xattrs_go_with_the_inode_not_with_its_number() {
    let mut ns = ns();
    let x = |s: &str| OsStr::new(s).to_owned();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    ns.setxattr(f, &x("user.a"), b"1", 0).unwrap();
    ns.unlink(ROOT_INO, os("f")).unwrap();
    // Still open (a kernel reference): the attributes stay readable.
    assert!(matches!(
        ns.getxattr(f, &x("user.a"), 0),
        Ok(XattrReply::Size(1))
    ));
    ns.forget(f, 1);
    // The number is reused by a new file, which has no attributes.
    let g = mkfile(&mut ns, ROOT_INO, "g");
    assert_eq!(g, f, "inode number reused");
    assert_eq!(ns.listxattr(g, 0).unwrap(), XattrReply::Size(0));
    assert_eq!(
        ns.getxattr(g, &x("user.a"), 0).unwrap_err(),
        e(libc::ENODATA)
    );
}

/// Rules that used to live in the FUSE adapter, now here where the tests
/// and the fuzzer reach them: the file types mknod makes, the offset of an
/// O_APPEND write, and which opens a file or directory refuses.
#[test]
fn mknod_append_and_open_rules() {
    use inode::mode;
    let mut ns = ns();
    let f = ns.mknod(ROOT_INO, os("plain"), 0o644, 0, 0, 0, 0).unwrap();
    assert_eq!(
        f.attr.kind,
        FileType::RegularFile,
        "type 0 is a regular file"
    );
    let fifo = ns.mknod(ROOT_INO, os("fifo"), mode::S_IFIFO | 0o600, 0, 0, 0, 0);
    assert_eq!(fifo.unwrap().attr.kind, FileType::NamedPipe);
    let dev = ns
        .mknod(ROOT_INO, os("dev"), mode::S_IFCHR | 0o600, 0, 0x0103, 0, 0)
        .unwrap();
    assert_eq!(dev.attr.rdev, 0x0103);
    for (name, m) in [
        ("d", mode::S_IFDIR),
        ("l", mode::S_IFLNK),
        ("bad", 0o170000),
    ] {
        assert_eq!(
            ns.mknod(ROOT_INO, os(name), m | 0o644, 0, 0, 0, 0)
                .unwrap_err(),
            e(libc::EINVAL),
            "mknod of type {m:o}"
        );
    }
    let ino = f.attr.ino.0;
    ns.write(ino, 0, b"abc").unwrap();
    assert_eq!(ns.append(ino, b"de").unwrap(), 2);
    assert_eq!(ns.append(ino, b"f").unwrap(), 1);
    assert_eq!(ns.read(ino, 0, 100).unwrap(), b"abcdef");
    let d = mkdir(&mut ns, ROOT_INO, "dir");
    assert_eq!(ns.open(d, libc::O_RDONLY).unwrap_err(), e(libc::EISDIR));
    assert_eq!(ns.opendir(ino).unwrap_err(), e(libc::ENOTDIR));
    ns.open(ino, libc::O_RDWR).unwrap();
    ns.opendir(d).unwrap();
    assert_eq!(ns.open(9999, libc::O_RDONLY).unwrap_err(), e(libc::ENOENT));
}

// ---------------------------------------------------------------------------
// chattr flags (tmpfs's rules; the errnos were taken from a tmpfs)
// ---------------------------------------------------------------------------

use crate::namespace::flags::{
    FS_APPEND_FL, FS_IMMUTABLE_FL, FS_NOATIME_FL, FS_NODUMP_FL, FsXattr,
};

#[test]
fn flags_set_get_and_refuse_what_tmpfs_refuses() {
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    let d = mkdir(&mut ns, ROOT_INO, "d");
    let l = symlink(&mut ns, ROOT_INO, "l", b"f");
    for ino in [f, d] {
        assert_eq!(ns.get_flags(ino), Ok(0));
        age(&mut ns, ino);
        ns.set_flags(ino, FS_NODUMP_FL | FS_NOATIME_FL).unwrap();
        assert_eq!(ns.get_flags(ino), Ok(FS_NODUMP_FL | FS_NOATIME_FL));
        // The change time moves (xfstests generic/277), the others not.
        let a = ns.attr(ino).unwrap();
        assert!(a.ctime > past());
        assert_eq!((a.atime, a.mtime), (past(), past()));
        // Flags tmpfs does not keep: compression, sync, casefold.
        for other in [0x4, 0x8, 0x4000_0000] {
            assert_eq!(ns.set_flags(ino, other), Err(e(libc::EOPNOTSUPP)));
        }
        assert_eq!(ns.get_flags(ino), Ok(FS_NODUMP_FL | FS_NOATIME_FL));
        ns.set_flags(ino, 0).unwrap();
    }
    assert_eq!(ns.get_flags(l), Err(e(libc::ENOTTY)));
    assert_eq!(ns.set_flags(l, 0), Err(e(libc::ENOTTY)));
    assert_eq!(ns.get_flags(9999), Err(e(libc::ENOENT)));
}

#[test]
fn fsxattr_carries_the_same_flags() {
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    ns.set_flags(f, FS_APPEND_FL | FS_NODUMP_FL).unwrap();
    let x = ns.get_fsxattr(f).unwrap();
    assert_eq!(
        x,
        FsXattr {
            xflags: 0x10 | 0x80,
            ..FsXattr::default()
        }
    );
    ns.set_fsxattr(
        f,
        FsXattr {
            xflags: 0x08,
            ..FsXattr::default()
        },
    )
    .unwrap();
    assert_eq!(ns.get_flags(f), Ok(FS_IMMUTABLE_FL));
    // Extent sizes, projects, sync and xflags without a flag twin: tmpfs
    // refuses them all.
    for bad in [
        FsXattr {
            extsize: 4096,
            ..FsXattr::default()
        },
        FsXattr {
            projid: 1,
            ..FsXattr::default()
        },
        FsXattr {
            cowextsize: 1,
            ..FsXattr::default()
        },
        FsXattr {
            xflags: 0x20,
            ..FsXattr::default()
        },
        FsXattr {
            xflags: 0x1,
            ..FsXattr::default()
        },
    ] {
        assert_eq!(ns.set_fsxattr(f, bad), Err(e(libc::EOPNOTSUPP)), "{bad:?}");
    }
    // The extent count is an output; tmpfs ignores it on input.
    ns.set_fsxattr(
        f,
        FsXattr {
            nextents: 7,
            ..FsXattr::default()
        },
    )
    .unwrap();
    assert_eq!(ns.get_flags(f), Ok(0));
}

#[test]
fn new_inodes_inherit_nodump_and_noatime_only() {
    let mut ns = ns();
    let d = mkdir(&mut ns, ROOT_INO, "d");
    ns.set_flags(d, FS_NODUMP_FL | FS_NOATIME_FL | FS_APPEND_FL)
        .unwrap();
    let f = mkfile(&mut ns, d, "f");
    let sub = mkdir(&mut ns, d, "sub");
    assert_eq!(ns.get_flags(f), Ok(FS_NODUMP_FL | FS_NOATIME_FL));
    assert_eq!(ns.get_flags(sub), Ok(FS_NODUMP_FL | FS_NOATIME_FL));
    let deeper = mkfile(&mut ns, sub, "g");
    assert_eq!(ns.get_flags(deeper), Ok(FS_NODUMP_FL | FS_NOATIME_FL));
}

#[test]
fn immutable_file_refuses_changes_but_not_reads() {
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    ns.write(f, 0, b"data").unwrap();
    ns.setxattr(f, os("user.a"), b"1", 0).unwrap();
    ns.set_flags(f, FS_IMMUTABLE_FL).unwrap();
    let perm = Err(e(libc::EPERM));
    assert_eq!(ns.open(f, libc::O_RDONLY), Ok(()));
    for fl in [
        libc::O_WRONLY,
        libc::O_RDWR,
        libc::O_WRONLY | libc::O_APPEND,
        libc::O_RDONLY | libc::O_TRUNC,
    ] {
        assert_eq!(ns.open(f, fl), perm, "open {fl:#o}");
    }
    let set = |a: SetAttr| a;
    for a in [
        set(SetAttr {
            mode: Some(0o600),
            ..Default::default()
        }),
        set(SetAttr {
            uid: Some(1),
            ..Default::default()
        }),
        set(SetAttr {
            gid: Some(1),
            ..Default::default()
        }),
        set(SetAttr {
            size: Some(0),
            ..Default::default()
        }),
        set(SetAttr {
            atime: Some(TimeOrNow::SpecificTime(past())),
            ..Default::default()
        }),
        set(SetAttr {
            atime: Some(TimeOrNow::Now),
            ..Default::default()
        }),
        set(SetAttr {
            atime: Some(TimeOrNow::Now),
            mtime: Some(TimeOrNow::Now),
            ..Default::default()
        }),
    ] {
        assert_eq!(ns.setattr(f, a).map(|_| ()), perm, "{a:?}");
    }
    // chown(f, -1, -1) changes nothing and is allowed; ftruncate through a
    // descriptor opened before the flag was set is too (tmpfs).
    ns.setattr(f, SetAttr::default()).unwrap();
    ns.setattr(
        f,
        SetAttr {
            size: Some(2),
            through_fd: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ns.setxattr(f, os("user.b"), b"1", 0), perm);
    assert_eq!(
        ns.setxattr(f, os("bogus.b"), b"1", 0),
        perm,
        "EPERM before the name"
    );
    assert_eq!(ns.removexattr(f, os("user.a")), perm);
    assert_eq!(ns.removexattr(f, os("user.none")), perm);
    assert_eq!(ns.getxattr(f, os("user.a"), 0), Ok(XattrReply::Size(1)));
    assert_eq!(ns.fallocate(f, 0, 4096, 0), perm);
    assert_eq!(ns.fallocate(f, 0, 4096, FALLOC_KEEP_SIZE), perm);
    assert_eq!(
        ns.fallocate(f, 0, 4096, FALLOC_PUNCH_HOLE | FALLOC_KEEP_SIZE),
        perm
    );
    let src = mkfile(&mut ns, ROOT_INO, "src");
    ns.write(src, 0, b"xyz").unwrap();
    assert_eq!(ns.copy_range(src, 0, f, 0, 3), Err(e(libc::EPERM)));
    assert_eq!(
        ns.copy_range(f, 0, src, 0, 2),
        Ok(2),
        "copying from it is fine"
    );
    assert_eq!(ns.link(f, ROOT_INO, os("f2")).map(|_| ()), perm);
    assert_eq!(ns.unlink(ROOT_INO, os("f")), perm);
    assert_eq!(ns.rename(ROOT_INO, os("f"), ROOT_INO, os("g"), 0), perm);
    assert_eq!(ns.rename(ROOT_INO, os("src"), ROOT_INO, os("f"), 0), perm);
    assert_eq!(
        ns.rename(ROOT_INO, os("src"), ROOT_INO, os("f"), RENAME_EXCHANGE),
        perm
    );
    // Writes through a descriptor opened before stay possible (tmpfs).
    ns.write(f, 0, b"D").unwrap();
    assert_eq!(ns.read(f, 0, 10).unwrap(), b"Da");
    // Clearing the flag gives everything back.
    ns.set_flags(f, 0).unwrap();
    ns.setattr(
        f,
        SetAttr {
            size: Some(0),
            ..Default::default()
        },
    )
    .unwrap();
    ns.unlink(ROOT_INO, os("f")).unwrap();
}

#[test]
fn append_only_file_takes_appends_and_touches_only() {
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    ns.write(f, 0, b"data").unwrap();
    ns.set_flags(f, FS_APPEND_FL).unwrap();
    let perm = Err(e(libc::EPERM));
    assert_eq!(ns.open(f, libc::O_RDONLY), Ok(()));
    assert_eq!(ns.open(f, libc::O_WRONLY | libc::O_APPEND), Ok(()));
    assert_eq!(ns.open(f, libc::O_RDWR | libc::O_APPEND), Ok(()));
    for fl in [
        libc::O_WRONLY,
        libc::O_RDWR,
        libc::O_WRONLY | libc::O_APPEND | libc::O_TRUNC,
        libc::O_RDONLY | libc::O_TRUNC,
    ] {
        assert_eq!(ns.open(f, fl), perm, "open {fl:#o}");
    }
    for a in [
        SetAttr {
            mode: Some(0o600),
            ..Default::default()
        },
        SetAttr {
            uid: Some(1),
            ..Default::default()
        },
        SetAttr {
            size: Some(10),
            ..Default::default()
        },
        SetAttr {
            size: Some(10),
            through_fd: true,
            ..Default::default()
        },
        SetAttr {
            mtime: Some(TimeOrNow::SpecificTime(past())),
            ..Default::default()
        },
        SetAttr {
            atime: Some(TimeOrNow::Now),
            ..Default::default()
        },
    ] {
        assert_eq!(ns.setattr(f, a).map(|_| ()), perm, "{a:?}");
    }
    // utimes(f, NULL) is allowed on an append-only file.
    ns.setattr(
        f,
        SetAttr {
            atime: Some(TimeOrNow::Now),
            mtime: Some(TimeOrNow::Now),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ns.setxattr(f, os("user.b"), b"1", 0), perm);
    assert_eq!(
        ns.fallocate(f, 0, 8192, FALLOC_PUNCH_HOLE | FALLOC_KEEP_SIZE),
        perm
    );
    ns.fallocate(f, 0, 8192, 0).unwrap();
    ns.fallocate(f, 0, 16384, FALLOC_KEEP_SIZE).unwrap();
    assert_eq!(ns.append(f, b"+").unwrap(), 1);
    assert_eq!(ns.link(f, ROOT_INO, os("f2")).map(|_| ()), perm);
    assert_eq!(ns.unlink(ROOT_INO, os("f")), perm);
    assert_eq!(ns.rename(ROOT_INO, os("f"), ROOT_INO, os("g"), 0), perm);
}

#[test]
fn immutable_directory_keeps_its_names_not_its_files() {
    let mut ns = ns();
    let d = mkdir(&mut ns, ROOT_INO, "d");
    let f = mkfile(&mut ns, d, "f");
    let sub = mkdir(&mut ns, d, "sub");
    let empty = mkdir(&mut ns, d, "empty");
    let out = mkfile(&mut ns, ROOT_INO, "out");
    ns.set_flags(d, FS_IMMUTABLE_FL).unwrap();
    let perm = Err(e(libc::EPERM));
    for kind in [
        Kind::RegularFile,
        Kind::Directory,
        Kind::Symlink,
        Kind::Fifo,
    ] {
        assert_eq!(
            ns.create_node(d, os("new"), spec(kind)).map(|_| ()),
            perm,
            "{kind:?}"
        );
    }
    assert_eq!(
        ns.mknod(
            d,
            os("n"),
            crate::namespace::inode::mode::S_IFCHR | 0o600,
            0,
            0x0103,
            0,
            0
        )
        .map(|_| ()),
        perm
    );
    // An existing name is EEXIST first, a missing one ENOENT.
    assert_eq!(
        ns.create_node(d, os("f"), spec(Kind::RegularFile))
            .map(|_| ()),
        Err(e(libc::EEXIST))
    );
    assert_eq!(ns.unlink(d, os("none")), Err(e(libc::ENOENT)));
    assert_eq!(ns.link(out, d, os("l")).map(|_| ()), perm);
    assert_eq!(ns.unlink(d, os("f")), perm);
    assert_eq!(ns.rmdir(d, os("empty")), perm);
    assert_eq!(
        ns.rmdir(d, os("sub")),
        perm,
        "before ENOTEMPTY or anything else"
    );
    assert_eq!(ns.rename(ROOT_INO, os("out"), d, os("in"), 0), perm);
    assert_eq!(ns.rename(d, os("f"), ROOT_INO, os("f"), 0), perm);
    assert_eq!(ns.rename(d, os("f"), d, os("g"), 0), perm);
    assert_eq!(
        ns.setattr(
            d,
            SetAttr {
                mode: Some(0o700),
                ..Default::default()
            }
        )
        .map(|_| ()),
        perm
    );
    // Files and directories inside stay as usable as ever.
    ns.write(f, 0, b"x").unwrap();
    ns.setattr(
        f,
        SetAttr {
            mode: Some(0o600),
            ..Default::default()
        },
    )
    .unwrap();
    mkfile(&mut ns, sub, "inner");
    ns.unlink(sub, os("inner")).unwrap();
    assert_eq!(ns.get_flags(empty), Ok(0));
    // The directory itself cannot go either.
    ns.set_flags(d, 0).unwrap();
    ns.set_flags(empty, FS_IMMUTABLE_FL).unwrap();
    assert_eq!(ns.rmdir(d, os("empty")), perm);
    assert_eq!(ns.rename(d, os("empty"), ROOT_INO, os("moved"), 0), perm);
    ns.check().unwrap();
}

#[test]
fn append_only_directory_takes_new_names_only() {
    let mut ns = ns();
    let d = mkdir(&mut ns, ROOT_INO, "d");
    mkfile(&mut ns, d, "f");
    mkdir(&mut ns, d, "sub");
    let out = mkfile(&mut ns, ROOT_INO, "out");
    mkfile(&mut ns, ROOT_INO, "out2");
    ns.set_flags(d, FS_APPEND_FL).unwrap();
    let perm = Err(e(libc::EPERM));
    mkfile(&mut ns, d, "new");
    mkdir(&mut ns, d, "newdir");
    ns.link(out, d, os("hl")).unwrap();
    ns.rename(ROOT_INO, os("out2"), d, os("moved"), 0).unwrap();
    assert_eq!(ns.unlink(d, os("f")), perm);
    assert_eq!(ns.rmdir(d, os("sub")), perm);
    assert_eq!(ns.rename(d, os("f"), d, os("g"), 0), perm);
    assert_eq!(ns.rename(d, os("f"), ROOT_INO, os("g"), 0), perm);
    // Replacing a name removes one: refused.
    assert_eq!(ns.rename(ROOT_INO, os("out"), d, os("f"), 0), perm);
    assert_eq!(
        ns.rename(ROOT_INO, os("out"), d, os("f"), RENAME_EXCHANGE),
        perm
    );
    ns.setattr(
        d,
        SetAttr {
            atime: Some(TimeOrNow::Now),
            mtime: Some(TimeOrNow::Now),
            ..Default::default()
        },
    )
    .unwrap();
    ns.check().unwrap();
}

#[test]
fn rename_onto_another_name_of_itself_ignores_flags() {
    // rename(2) between two names of one file does nothing, before any check.
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    ns.link(f, ROOT_INO, os("g")).unwrap();
    ns.set_flags(f, FS_IMMUTABLE_FL).unwrap();
    ns.rename(ROOT_INO, os("f"), ROOT_INO, os("g"), 0).unwrap();
    assert_eq!(nlink(&ns, f), 2);
}

#[test]
fn writes_checked_when_opens_were_not() {
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    let d = mkdir(&mut ns, ROOT_INO, "d");
    ns.may_write(f, false).unwrap();
    ns.set_flags(f, FS_APPEND_FL).unwrap();
    assert_eq!(ns.may_write(f, false), Err(e(libc::EPERM)));
    ns.may_write(f, true).unwrap();
    ns.set_flags(f, FS_IMMUTABLE_FL).unwrap();
    assert_eq!(ns.may_write(f, true), Err(e(libc::EPERM)));
    ns.set_flags(f, FS_NODUMP_FL | FS_NOATIME_FL).unwrap();
    ns.may_write(f, false).unwrap();
    ns.may_write(d, false).unwrap();
    assert_eq!(ns.may_write(9999, false), Err(e(libc::ENOENT)));
}

#[test]
fn dot_lookups_answer_by_inode_number_for_file_handles() {
    let mut ns = ns();
    let d = create(&mut ns, ROOT_INO, "d", Kind::Directory);
    let s = create(&mut ns, d, "s", Kind::Directory);
    let f = create(&mut ns, s, "f", Kind::RegularFile);
    // `.`: the inode itself, with its generation, counting a reference.
    let before = ns.inodes.get(f).unwrap().lookups();
    let e = ns.lookup_dot(f, false).unwrap();
    assert_eq!((e.attr.ino.0, e.generation), (f, ns.generation(f)));
    assert_eq!(ns.inodes.get(f).unwrap().lookups(), before + 1);
    // `..`: the parent directory; the root is its own parent.
    assert_eq!(ns.lookup_dot(s, true).unwrap().attr.ino.0, d);
    assert_eq!(ns.lookup_dot(d, true).unwrap().attr.ino.0, ROOT_INO);
    assert_eq!(ns.lookup_dot(ROOT_INO, true).unwrap().attr.ino.0, ROOT_INO);
    assert_eq!(ns.lookup_dot(f, true).unwrap_err().code(), libc::ENOTDIR);
    // Numbers never handed out, and freed ones, are ENOENT (ESTALE to the
    // caller of open_by_handle_at).
    assert_eq!(
        ns.lookup_dot(1 << 40, false).unwrap_err().code(),
        libc::ENOENT
    );
    ns.unlink(s, os("f")).unwrap();
    ns.forget(f, before + 1);
    assert_eq!(ns.lookup_dot(f, false).unwrap_err().code(), libc::ENOENT);
    // Without names (the kernel's forget not yet here): gone, as on tmpfs.
    let g = create(&mut ns, d, "g", Kind::RegularFile);
    ns.unlink(d, os("g")).unwrap();
    assert!(ns.inodes.get(g).is_some(), "still referenced");
    assert_eq!(ns.lookup_dot(g, false).unwrap_err().code(), libc::ENOENT);
    // A removed directory still referenced by the kernel likewise.
    ns.rmdir(d, os("s")).unwrap();
    assert_eq!(ns.lookup_dot(s, false).unwrap_err().code(), libc::ENOENT);
    assert_eq!(ns.lookup_dot(s, true).unwrap_err().code(), libc::ENOENT);
}

#[test]
fn rename_whiteout_leaves_a_char_device_and_needs_an_inode() {
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "a");
    ns.rename_whiteout(
        ROOT_INO,
        os("a"),
        ROOT_INO,
        os("b"),
        RENAME_WHITEOUT,
        (7, 8),
    )
    .unwrap();
    assert_eq!(ns.child_ino(ROOT_INO, os("b")).unwrap(), f);
    let w = ns.child_ino(ROOT_INO, os("a")).unwrap();
    let a = ns.attr(w).unwrap();
    assert_eq!(
        (a.kind, a.perm, a.rdev, a.uid, a.gid),
        (FileType::CharDevice, 0, 0, 7, 8)
    );
    assert_eq!(
        ns.inodes.get(w).unwrap().lookups(),
        0,
        "the kernel holds no reference"
    );
    let flags = RENAME_WHITEOUT | RENAME_EXCHANGE;
    let e = ns.rename_whiteout(ROOT_INO, os("b"), ROOT_INO, os("a"), flags, (0, 0));
    assert_eq!(e.unwrap_err().code(), libc::EINVAL);
    ns.check().unwrap();

    // Out of inodes: refused before anything moves.
    let mut ns = ns_with(1024, 2);
    mkfile(&mut ns, ROOT_INO, "x");
    let e = ns.rename_whiteout(
        ROOT_INO,
        os("x"),
        ROOT_INO,
        os("y"),
        RENAME_WHITEOUT,
        (0, 0),
    );
    assert_eq!(e.unwrap_err().code(), libc::ENOSPC);
    assert!(ns.child_ino(ROOT_INO, os("x")).is_ok());
    assert!(ns.child_ino(ROOT_INO, os("y")).is_err());
}

#[test]
fn setattr_as_applies_todays_setid_rules() {
    let none = SetAttr::default();
    let perm = |ns: &Namespace, ino| ns.attr(ino).unwrap().perm;
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    let set = |ns: &mut Namespace, mode| {
        let a = SetAttr {
            mode: Some(mode),
            ..none
        };
        ns.setattr(f, a).unwrap();
    };
    let outside = |_| false;
    let inside = |_| true;
    // A write's privilege removal (no change) by a stranger: both bits go.
    set(&mut ns, 0o6666);
    ns.setattr_as(f, none, 1000, outside).unwrap();
    assert_eq!(perm(&ns, f), 0o666);
    // ... by a member of the group: setgid without group-execute stays.
    set(&mut ns, 0o2666);
    ns.setattr_as(f, none, 1000, inside).unwrap();
    assert_eq!(perm(&ns, f), 0o2666);
    // ... by root: nothing goes.
    set(&mut ns, 0o6666);
    ns.setattr_as(f, none, 0, outside).unwrap();
    assert_eq!(perm(&ns, f), 0o6666);
    // Truncation by a stranger.
    set(&mut ns, 0o2666);
    let trunc = SetAttr {
        size: Some(0),
        ..none
    };
    ns.setattr_as(f, trunc, 1000, outside).unwrap();
    assert_eq!(perm(&ns, f), 0o666);
    // A mode from a caller outside the (new) group loses setgid.
    let chmod = SetAttr {
        mode: Some(0o2755),
        ..none
    };
    ns.setattr_as(f, chmod, 1000, outside).unwrap();
    assert_eq!(perm(&ns, f), 0o755);
    // chown(-1, -1) (ctime only) by a non-owner that would drop the bit.
    set(&mut ns, 0o2644);
    let chown_nop = SetAttr {
        ctime: Some(SystemTime::now()),
        ..none
    };
    let e = ns.setattr_as(f, chown_nop, 1000, outside);
    assert_eq!(e.unwrap_err().code(), libc::EPERM);
    assert_eq!(perm(&ns, f), 0o2644);
    // ... by the owner (uid 0 here is root, so make the file someone's).
    let own = SetAttr {
        uid: Some(1000),
        ..none
    };
    ns.setattr(f, own).unwrap();
    set(&mut ns, 0o2644);
    ns.setattr_as(f, chown_nop, 1000, outside).unwrap();
    assert_eq!(perm(&ns, f), 0o644);
    // Directories keep their bits through a chown.
    let d = create(&mut ns, ROOT_INO, "d", Kind::Directory);
    let a = SetAttr {
        mode: Some(0o2755),
        ..none
    };
    ns.setattr(d, a).unwrap();
    let chgrp = SetAttr {
        gid: Some(5),
        ..none
    };
    ns.setattr_as(d, chgrp, 1000, inside).unwrap();
    assert_eq!(perm(&ns, d), 0o2755);
    // HANDLE_KILLPRIV_V2: root's chown of a file drops S_ISUID, and
    // S_ISGID with group-execute; a directory keeps both; without the flag
    // (the kernel sent the mode itself) root's request changes nothing. A
    // request with no change is a chown only when the caller is in one.
    let v2 = |a: SetAttr| SetAttr {
        killpriv_v2: true,
        ..a
    };
    let in_chown = SetAttr {
        killpriv_v2: true,
        in_chown: true,
        ..none
    };
    for (before, change, after) in [
        (0o6755, v2(chgrp), 0o755),
        (0o6745, v2(own), 0o2745),
        (0o4644, in_chown, 0o644),
        (0o4644, v2(none), 0o4644),
        (0o6755, chgrp, 0o6755),
        (0o6755, v2(chmod), 0o2755),
        (0o6755, v2(trunc), 0o6755),
    ] {
        set(&mut ns, before);
        ns.setattr_as(f, change, 0, outside).unwrap();
        assert_eq!(perm(&ns, f), after, "{before:o} {change:?}");
    }
    ns.setattr(d, a).unwrap();
    ns.setattr_as(d, v2(chgrp), 0, outside).unwrap();
    assert_eq!(perm(&ns, d), 0o2755);
    // By others: a write's leftover changes nothing (the WRITE removes),
    // chown(-1, -1) is refused to a non-owner and drops the bits for the
    // owner (the file belongs to 1000 since `own`).
    set(&mut ns, 0o4666);
    ns.setattr_as(f, v2(none), 1001, outside).unwrap();
    assert_eq!(perm(&ns, f), 0o4666);
    let e = ns.setattr_as(f, in_chown, 1001, outside);
    assert_eq!(e.unwrap_err().code(), libc::EPERM);
    ns.setattr_as(f, in_chown, 1000, outside).unwrap();
    assert_eq!(perm(&ns, f), 0o666);
}

/// A write the kernel flags (FUSE_WRITE_KILL_SUIDGID) or a fallocate drops
/// set-id bits unless the caller has CAP_FSETID, and file capabilities
/// whoever the caller.
#[test]
fn remove_privs_follows_the_callers_capability() {
    let perm = |ns: &Namespace, ino| ns.attr(ino).unwrap().perm;
    let mut ns = ns();
    let f = mkfile(&mut ns, ROOT_INO, "f");
    let set = |ns: &mut Namespace, mode| chmod(ns, f, mode);
    set(&mut ns, 0o6755);
    assert!(!ns.remove_privs(f, true, |_| false).unwrap());
    assert_eq!(perm(&ns, f), 0o6755);
    assert!(ns.remove_privs(f, false, |_| true).unwrap());
    assert_eq!(perm(&ns, f), 0o755);
    // S_ISGID without group-execute stays for a member of the group.
    set(&mut ns, 0o2745);
    assert!(!ns.remove_privs(f, false, |_| true).unwrap());
    assert!(ns.remove_privs(f, false, |_| false).unwrap());
    assert_eq!(perm(&ns, f), 0o745);
    let fcaps = OsStr::new("security.capability");
    ns.setxattr(f, fcaps, b"caps", 0).unwrap();
    assert!(!ns.remove_privs(f, true, |_| false).unwrap());
    assert!(ns.getxattr(f, fcaps, 0).is_err());
}

/// Remount rules, as tmpfs's `shmem_reconfigure`: no limit below what is
/// in use, no limit on an unlimited dimension, 0 lifts a limit, and a
/// refusal changes nothing.
#[test]
fn reconfigure_as_tmpfs_remount() {
    let mut ns = ns_with(16, 10);
    let f = mkfile(&mut ns, ROOT_INO, "f");
    ns.write(f, 0, &[1u8; 3 * PAGE]).unwrap();
    mkfile(&mut ns, ROOT_INO, "g");
    // In use: 3 pages; 3 inodes (root, f, g).
    let limits = |ns: &Namespace| (ns.limits().max_pages, ns.limits().max_inodes);
    assert_eq!(
        ns.reconfigure(Some(2 * PG), None).unwrap_err(),
        Refusal::SizeTooSmall
    );
    assert_eq!(
        ns.reconfigure(None, Some(2)).unwrap_err(),
        Refusal::TooFewInodes
    );
    // The first refusal stops everything: the valid size is not applied.
    assert_eq!(
        ns.reconfigure(Some(8 * PG), Some(2)).unwrap_err(),
        Refusal::TooFewInodes
    );
    assert_eq!(limits(&ns), (16, 10));
    // Exactly what is in use is fine; bytes round up to pages.
    ns.reconfigure(Some(2 * PG + 1), Some(3)).unwrap();
    assert_eq!(limits(&ns), (3, 3));
    assert_eq!(ns.write(f, 3 * PG, b"x").unwrap_err(), e(libc::ENOSPC));
    assert_eq!(ns.usage().ffree, 0);
    // Lifting, then limiting again, is refused as on tmpfs.
    let old = ns.reconfigure(Some(0), Some(0)).unwrap();
    assert_eq!((old.max_pages, old.max_inodes), (3, 3));
    assert_eq!((ns.usage().blocks, ns.usage().files), (0, 0));
    assert_eq!(
        ns.reconfigure(Some(1 << 30), None).unwrap_err(),
        Refusal::RetroactiveSize
    );
    assert_eq!(
        ns.reconfigure(None, Some(1000)).unwrap_err(),
        Refusal::RetroactiveInodes
    );
    // Asking for 0 on an unlimited mount is no change, and allowed.
    ns.reconfigure(Some(0), Some(0)).unwrap();
    ns.restore_limits(old);
    assert_eq!(limits(&ns), (3, 3));
    ns.check().unwrap();
}

// ---------------------------------------------------------------------------
// POSIX ACLs: the namespace side (the rules themselves are unit-tested in
// acl.rs)
// ---------------------------------------------------------------------------

mod acls {
    use super::*;
    use crate::namespace::acl::{self, Acl, AclEntry};

    const U: u32 = u32::MAX;

    fn blob(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        Acl(entries
            .iter()
            .map(|&(tag, perm, id)| AclEntry { tag, perm, id })
            .collect())
        .encode()
    }

    /// `u::rwx,u:1000:rw-,g::r-x,m::rw-,o::--x`
    fn named() -> Vec<u8> {
        blob(&[
            (acl::USER_OBJ, 7, U),
            (acl::USER, 6, 1000),
            (acl::GROUP_OBJ, 5, U),
            (acl::MASK, 6, U),
            (acl::OTHER, 1, U),
        ])
    }

    fn access() -> &'static OsStr {
        os("system.posix_acl_access")
    }

    fn default() -> &'static OsStr {
        os("system.posix_acl_default")
    }

    fn stored(ns: &Namespace, ino: u64, name: &OsStr) -> Option<Vec<u8>> {
        match ns.getxattr(ino, name, 4096) {
            Ok(XattrReply::Data(d)) => Some(d),
            Err(err) if err == e(libc::ENODATA) => None,
            other => panic!("getxattr: {other:?}"),
        }
    }

    #[test]
    fn access_acl_sets_mode_and_ctime() {
        let mut ns = ns();
        let f = mkfile(&mut ns, ROOT_INO, "f");
        age(&mut ns, f);
        ns.setxattr(f, access(), &named(), 0).unwrap();
        let a = ns.attr(f).unwrap();
        assert_eq!(a.perm, 0o761, "group bits from the mask");
        assert!(a.ctime > past());
        assert_eq!(stored(&ns, f, access()), Some(named()));
        // An ACL the mode says entirely is not stored; only the mode changes.
        let plain = blob(&[
            (acl::USER_OBJ, 6, U),
            (acl::GROUP_OBJ, 0, U),
            (acl::OTHER, 4, U),
        ]);
        ns.setxattr(f, access(), &plain, 0).unwrap();
        assert_eq!(ns.attr(f).unwrap().perm, 0o604);
        assert_eq!(stored(&ns, f, access()), None);
        let listed = ns.listxattr(f, 0).unwrap();
        assert_eq!(listed, XattrReply::Size(0));
        ns.check().unwrap();
    }

    #[test]
    fn access_acl_clears_setgid_for_outsiders() {
        let mut ns = ns();
        let f = mkfile(&mut ns, ROOT_INO, "f");
        let set_mode = |ns: &mut Namespace, m| {
            let a = SetAttr {
                mode: Some(m),
                ..Default::default()
            };
            ns.setattr(f, a).unwrap();
        };
        set_mode(&mut ns, 0o2775);
        ns.setxattr_as(f, access(), &named(), 0, true).unwrap();
        assert_eq!(ns.attr(f).unwrap().perm, 0o2761, "kept for a group member");
        set_mode(&mut ns, 0o2775);
        ns.setxattr_as(f, access(), &named(), 0, false).unwrap();
        assert_eq!(ns.attr(f).unwrap().perm, 0o761, "cleared for an outsider");
    }

    #[test]
    fn chmod_rewrites_the_acl() {
        let mut ns = ns();
        let f = mkfile(&mut ns, ROOT_INO, "f");
        ns.setxattr(f, access(), &named(), 0).unwrap();
        let bytes = ns.inodes.xattr_bytes();
        let a = SetAttr {
            mode: Some(0o640),
            ..Default::default()
        };
        ns.setattr(f, a).unwrap();
        let want = blob(&[
            (acl::USER_OBJ, 6, U),
            (acl::USER, 6, 1000),
            (acl::GROUP_OBJ, 5, U),
            (acl::MASK, 4, U),
            (acl::OTHER, 0, U),
        ]);
        assert_eq!(stored(&ns, f, access()), Some(want));
        assert_eq!(ns.inodes.xattr_bytes(), bytes);
        ns.check().unwrap();
    }

    #[test]
    fn default_acl_rules() {
        let mut ns = ns();
        let f = mkfile(&mut ns, ROOT_INO, "f");
        let l = symlink(&mut ns, ROOT_INO, "l", b"f");
        let d = mkdir(&mut ns, ROOT_INO, "d");
        assert_eq!(
            ns.setxattr(f, default(), &named(), 0).unwrap_err(),
            e(libc::EACCES)
        );
        assert_eq!(
            ns.setxattr(l, access(), &named(), 0).unwrap_err(),
            e(libc::EOPNOTSUPP)
        );
        // Removing an ACL that is not there succeeds, as on tmpfs.
        ns.removexattr(f, access()).unwrap();
        ns.removexattr(d, default()).unwrap();
        ns.setxattr(d, default(), &named(), 0).unwrap();
        assert_eq!(ns.attr(d).unwrap().perm, 0o755, "mode unchanged");
        // Other system. names stay unsupported.
        for bad in ["system.posix_acl_other", "system.posix_acl_access2"] {
            assert_eq!(
                ns.setxattr(d, os(bad), &named(), 0).unwrap_err(),
                e(libc::EOPNOTSUPP)
            );
        }
        // Invalid blobs.
        assert_eq!(
            ns.setxattr(d, default(), b"\x02\0\0\0\x01\0", 0)
                .unwrap_err(),
            e(libc::EINVAL)
        );
        // A bare header removes.
        ns.setxattr(d, default(), &2u32.to_le_bytes(), 0).unwrap();
        assert_eq!(stored(&ns, d, default()), None);
        ns.check().unwrap();
    }

    #[test]
    fn inheritance_and_umask() {
        let mut ns = ns();
        let d = mkdir(&mut ns, ROOT_INO, "d");
        // No default ACL: the umask applies.
        let s = NewNode {
            perm: 0o666,
            ..spec(Kind::RegularFile)
        };
        let f = ns.create_masked(d, os("f"), s.clone(), 0o022).unwrap();
        assert_eq!(f.attr.perm, 0o644);
        ns.setxattr(d, default(), &named(), 0).unwrap();
        // With one: the umask is ignored, the ACL is ANDed with the mode.
        let g = ns.create_masked(d, os("g"), s.clone(), 0o077).unwrap();
        assert_eq!(g.attr.perm, 0o660);
        let g_acl = blob(&[
            (acl::USER_OBJ, 6, U),
            (acl::USER, 6, 1000),
            (acl::GROUP_OBJ, 5, U),
            (acl::MASK, 6, U),
            (acl::OTHER, 0, U),
        ]);
        let gi = g.attr.ino.0;
        assert_eq!(stored(&ns, gi, access()), Some(g_acl));
        assert_eq!(stored(&ns, gi, default()), None, "files get no default");
        // A directory inherits the default ACL as well.
        let sd = NewNode {
            perm: 0o777,
            ..spec(Kind::Directory)
        };
        let sub = ns.create_masked(d, os("sub"), sd, 0o077).unwrap();
        let si = sub.attr.ino.0;
        assert_eq!(sub.attr.perm, 0o761);
        assert_eq!(stored(&ns, si, access()), Some(named()));
        assert_eq!(stored(&ns, si, default()), Some(named()));
        // Symlinks get nothing.
        let l = symlink(&mut ns, d, "l", b"x");
        assert!(ns.inodes.xattrs(l).is_none());
        // mknod follows the same rules.
        let fifo = ns
            .mknod(d, os("p"), inode::mode::S_IFIFO | 0o644, 0o077, 0, 0, 0)
            .unwrap();
        assert_eq!(fifo.attr.perm, 0o640);
        ns.check().unwrap();
    }

    #[test]
    fn acls_count_against_the_inode_space() {
        // Two inodes' worth of space: the root and one more.
        let mut ns = ns_with(16, 2);
        let d = mkdir(&mut ns, ROOT_INO, "d");
        // 511 entries: the largest ACL FUSE passes.
        let mut entries = vec![(acl::USER_OBJ, 7, U)];
        entries.extend((0..507).map(|i| (acl::USER, 7, i)));
        entries.extend([
            (acl::GROUP_OBJ, 5, U),
            (acl::MASK, 7, U),
            (acl::OTHER, 5, U),
        ]);
        let big = blob(&entries);
        assert_eq!(big.len(), 4 + 511 * 8);
        assert!(big.len() + 8 > acl::MAX_BYTES, "one more entry is too many");
        assert_eq!(
            ns.setxattr(d, default(), &big, 0).unwrap_err(),
            e(libc::ENOSPC),
            "a 4 KiB ACL does not fit in 2 KiB of inode space"
        );
        let mut ns = ns_with(16, 16);
        let d = mkdir(&mut ns, ROOT_INO, "d");
        ns.setxattr(d, default(), &big, 0).unwrap();
        let used = ns.inodes.xattr_bytes();
        assert_eq!(used, 40 + 24 + 4092);
        // Creating under it needs room for the inherited ACLs too.
        let mut n = 0;
        let err = loop {
            let s = spec(Kind::Directory);
            match ns.create_node(d, os(&format!("s{n}")), s) {
                Ok(_) => n += 1,
                Err(err) => break err,
            }
        };
        assert_eq!(err, e(libc::ENOSPC));
        assert!(n < 4, "each subdirectory holds two 4 KiB ACLs: {n}");
        let too_big = [big.clone(), vec![0; 8]].concat();
        assert_eq!(
            ns.setxattr(d, default(), &too_big, 0).unwrap_err(),
            e(libc::E2BIG)
        );
        ns.check().unwrap();
    }

    #[test]
    fn check_finds_bad_acls() {
        let mut ns = ns();
        let f = mkfile(&mut ns, ROOT_INO, "f");
        ns.inodes.set_xattr(f, acl::DEFAULT, &named());
        assert!(ns.check().is_err(), "default ACL on a file");
        ns.inodes.remove_xattr(f, acl::DEFAULT);
        ns.inodes.set_xattr(f, acl::ACCESS, &named());
        assert!(ns.check().is_err(), "mode 0644 disagrees with the ACL");
        ns.setxattr(f, access(), &named(), 0).unwrap();
        ns.check().unwrap();
        ns.inodes.set_xattr(f, b"system.other", b"x");
        assert!(ns.check().is_err());
    }
}

/// Entries loaded in bulk share one attribute template after
/// `settle_after_load`, look exactly as before (but for the one load
/// time), and get a record of their own when anything changes them.
#[test]
fn loaded_entries_share_attributes_until_changed() {
    let mut ns = ns();
    let since = SystemTime::now();
    {
        let mut l = PathLoader::new(&mut ns, 7, 8);
        for p in ["/a/b/c", "/a/b/d", "/a/e", "/f", "a/b/c"] {
            l.add(os(p), log::Level::Debug).unwrap();
        }
    }
    let ino = |ns: &Namespace, path: &str| {
        let mut cur = ROOT_INO;
        for c in path.split('/').filter(|c| !c.is_empty()) {
            cur = ns.child_ino(cur, os(c)).unwrap();
        }
        cur
    };
    let paths = ["/a", "/a/b", "/a/b/c", "/a/b/d", "/a/e", "/f"];
    let before: Vec<FileAttr> = paths
        .iter()
        .map(|p| ns.attr(ino(&ns, p)).unwrap())
        .collect();
    assert_eq!(ns.settle_after_load(since), 6, "all but the root share");
    assert_eq!(ns.inodes.memory().shared, 6);
    ns.check().unwrap();
    let stamp = ns.attr(ino(&ns, "/a")).unwrap().mtime;
    for (p, b) in paths.iter().zip(&before) {
        let a = ns.attr(ino(&ns, p)).unwrap();
        assert_eq!(
            (a.ino, a.kind, a.perm, a.nlink, a.uid, a.gid, a.size),
            (b.ino, b.kind, b.perm, b.nlink, b.uid, b.gid, b.size),
            "{p}"
        );
        assert_eq!((a.atime, a.mtime, a.ctime), (stamp, stamp, stamp), "{p}");
        assert_eq!(ns.inodes.generation(a.ino.0), 1);
    }
    let (a, b, e) = (ino(&ns, "/a"), ino(&ns, "/a/b"), ino(&ns, "/a/e"));
    assert_eq!(nlink(&ns, a), 4);
    // Kernel references of a shared inode are counted, and kept when the
    // inode gets its own record.
    ns.inodes.add_lookup(b);
    ns.inodes.add_lookup(b);
    assert_eq!(lookups(&ns, b), 2);
    ns.setattr(
        b,
        SetAttr {
            mode: Some(0o700),
            ..SetAttr::default()
        },
    )
    .unwrap();
    assert_eq!(ns.attr(b).unwrap().perm, 0o700);
    assert_eq!(lookups(&ns, b), 2);
    assert_eq!(ns.inodes.memory().shared, 5);
    // Names change under shared directories: each changed one gets a
    // record, the others keep sharing.
    mkdir(&mut ns, e, "new");
    assert_eq!(nlink(&ns, e), 3);
    ns.rmdir(b, os("c")).unwrap();
    ns.rename(b, os("d"), ROOT_INO, os("d2"), 0).unwrap();
    assert_eq!(nlink(&ns, a), 4);
    ns.check().unwrap();
    ns.forget(b, 2);
    assert_eq!(lookups(&ns, b), 0);
    let f = ino(&ns, "/f");
    ns.inodes.add_lookup(f);
    ns.forget(f, 1);
    assert_eq!(lookups(&ns, f), 0);
    assert!(ns.inodes.memory().shared >= 1);
    ns.check().unwrap();
}

// ---------------------------------------------------------------------------
// Listed files (`--paths-files`)
// ---------------------------------------------------------------------------

fn listed(ns: &mut Namespace, path: &str, size: u64) -> Result<u64> {
    ns.add_listed_file(os(path), size, 4, 5, log::Level::Debug)
}

fn is_listed(ns: &Namespace, ino: u64) -> bool {
    ns.inode(ino).unwrap().file().unwrap().is_listed()
}

#[test]
fn listed_files_report_their_size_and_hold_no_data() {
    // 8 pages of data and 16 inodes: the listing's bytes do not count.
    let mut ns = ns_with(8, 16);
    let big = 5 * (1 << 30) + 1;
    let f = listed(&mut ns, "/a/b c/deep/file", big).unwrap();
    let z = listed(&mut ns, "zero", 0).unwrap();
    let s = listed(&mut ns, "a/small", 3).unwrap();
    let a = ns.attr(f).unwrap();
    assert_eq!(
        (a.kind, a.perm, a.uid, a.gid, a.nlink),
        (FileType::RegularFile, 0o644, 4, 5, 1)
    );
    assert_eq!((a.size, a.blocks), (big, big.div_ceil(PG) * 8));
    assert_eq!(
        (ns.attr(z).unwrap().size, ns.attr(z).unwrap().blocks),
        (0, 0)
    );
    assert_eq!(
        (ns.attr(s).unwrap().size, ns.attr(s).unwrap().blocks),
        (3, 8)
    );
    let a_dir = ns.child_ino(ROOT_INO, os("a")).unwrap();
    let dir = ns.child_ino(a_dir, os("b c")).unwrap();
    let dir = ns.child_ino(dir, os("deep")).unwrap();
    assert_eq!(ns.child_ino(dir, os("file")).unwrap(), f);
    let da = ns.attr(dir).unwrap();
    assert_eq!((da.perm, da.uid, da.gid), (0o755, 4, 5));
    assert_eq!(ns.read(f, big - 2, 100).unwrap(), vec![0; 2]);
    assert_eq!(ns.read(s, 0, 100).unwrap(), vec![0; 3]);
    // No memory, so nothing in df's used blocks; one inode each (root,
    // a, b c, deep, 3 files).
    assert_eq!(ns.pages_used(), 0);
    let u = ns.usage();
    assert_eq!((u.blocks, u.bfree), (8, 8));
    assert_eq!((u.files, u.ffree), (16, 16 - 7));
    for i in [f, z, s, dir] {
        assert_eq!(lookups(&ns, i), 0, "loading counts no kernel lookups");
    }
    ns.check().unwrap();
    // A listed file is ordinary otherwise: it can be removed.
    ns.unlink(a_dir, os("small")).unwrap();
    assert_eq!(ns.usage().ffree, 16 - 6);
    ns.check().unwrap();
}

#[test]
fn listed_file_lines_that_cannot_be_files() {
    let mut ns = ns_with(8, 10);
    listed(&mut ns, "d/f", 1).unwrap();
    symlink(&mut ns, ROOT_INO, "sl", b"d");
    let live = ns.inodes.live();
    let cases: [(&str, u64, i32); 9] = [
        ("x", i64::MAX as u64 + 1, libc::EFBIG),
        ("d", 1, libc::EISDIR),
        ("", 1, libc::EISDIR),
        ("/", 1, libc::EISDIR),
        ("d/f/g", 1, libc::ENOTDIR),
        ("sl", 1, libc::EEXIST),
        ("sl/x", 1, libc::ENOTDIR),
        ("d/../x", 1, libc::EINVAL),
        ("", 0, libc::EISDIR),
    ];
    for (path, size, code) in cases {
        assert_eq!(
            listed(&mut ns, path, size).unwrap_err(),
            e(code),
            "{path:?}"
        );
    }
    let long = "n".repeat(256);
    assert_eq!(
        listed(&mut ns, &format!("d/{long}"), 1).unwrap_err(),
        e(libc::ENAMETOOLONG)
    );
    assert_eq!(ns.inodes.live(), live, "refused lines add nothing");
    // The largest file size is fine.
    let m = listed(&mut ns, "max", i64::MAX as u64).unwrap();
    assert_eq!(ns.attr(m).unwrap().size, i64::MAX as u64);
    // The inode limit: 10 inodes, 6 used (root, d, f, sl, max + this one).
    listed(&mut ns, "e/g", 0).unwrap();
    assert_eq!(ns.usage().ffree, 3);
    listed(&mut ns, "h", 0).unwrap();
    listed(&mut ns, "i", 0).unwrap();
    listed(&mut ns, "j", 0).unwrap();
    assert_eq!(listed(&mut ns, "k", 0).unwrap_err(), e(libc::ENOSPC));
    assert_eq!(listed(&mut ns, "e/k/l", 0).unwrap_err(), e(libc::ENOSPC));
    ns.check().unwrap();
}

#[test]
fn the_last_line_for_a_listed_file_wins() {
    let mut ns = ns();
    let f = listed(&mut ns, "f", 10 * PG).unwrap();
    let live = ns.inodes.live();
    assert_eq!(listed(&mut ns, "/f", 3).unwrap(), f);
    assert_eq!(listed(&mut ns, "./f", 5000).unwrap(), f);
    assert_eq!(ns.inodes.live(), live);
    let a = ns.attr(f).unwrap();
    assert_eq!((a.size, a.blocks), (5000, 16));
    assert!(is_listed(&ns, f));
    ns.check().unwrap();
}

#[test]
fn a_change_makes_a_listed_file_an_ordinary_sparse_file() {
    // 4 pages of data allowed; each file lists 1 GiB.
    let mut ns = ns_with(4, 100);
    let g = 1u64 << 30;
    let w = listed(&mut ns, "w", g).unwrap();
    assert_eq!(ns.write(w, 100, b"abc").unwrap(), 3);
    let a = ns.attr(w).unwrap();
    assert_eq!(
        (a.size, a.blocks),
        (g, 8),
        "its size stays, blocks are stored pages"
    );
    assert!(!is_listed(&ns, w));
    assert_eq!(ns.pages_used(), 1, "written pages count against size=");
    assert_eq!(ns.read(w, 98, 6).unwrap(), b"\0\0abc\0");
    assert_eq!(ns.usage().bfree, 3);
    // Truncating, to any size, and fallocate do it too.
    let t = listed(&mut ns, "t", g).unwrap();
    let set = SetAttr {
        size: Some(g),
        ..SetAttr::default()
    };
    ns.setattr(t, set).unwrap();
    assert_eq!(
        (ns.attr(t).unwrap().size, ns.attr(t).unwrap().blocks),
        (g, 0)
    );
    let k = listed(&mut ns, "k", g).unwrap();
    ns.fallocate(k, 0, PG, FALLOC_KEEP_SIZE).unwrap();
    assert_eq!(
        (ns.attr(k).unwrap().size, ns.attr(k).unwrap().blocks),
        (g, 8)
    );
    let p = listed(&mut ns, "p", g).unwrap();
    ns.fallocate(p, 0, PG, FALLOC_PUNCH_HOLE | FALLOC_KEEP_SIZE)
        .unwrap();
    assert_eq!(ns.attr(p).unwrap().blocks, 0);
    // The size limit applies to what is stored: 2 pages are left.
    assert_eq!(ns.write(p, 0, &[1; 3 * PAGE]).unwrap(), 2 * PAGE as u32);
    assert_eq!(ns.write(p, 3 * PG, b"x").unwrap_err(), e(libc::ENOSPC));
    // A listed file larger than the whole size limit loads all the same.
    let huge = listed(&mut ns, "huge", 1 << 40).unwrap();
    assert_eq!(ns.attr(huge).unwrap().blocks, (1u64 << 40) / 512);
    ns.check().unwrap();
}

#[test]
fn listing_over_an_image_keeps_written_files_and_relists_untouched_ones() {
    use crate::image::{read_image, write_image};
    let limits = Limits {
        max_pages: 1024,
        max_inodes: 1024,
    };
    let mut ns = Namespace::new(0, 0, 0o755, limits);
    let u = listed(&mut ns, "d/untouched", 5 * PG + 1).unwrap();
    let w = listed(&mut ns, "d/written", 5 * PG + 1).unwrap();
    ns.write(w, 0, b"data").unwrap();
    let before = (ns.attr(u).unwrap(), ns.attr(w).unwrap());
    let mut img = Vec::new();
    write_image(&ns, &mut img).unwrap();
    let (mut back, _) = read_image(&img[..], limits).unwrap();
    let ino = |ns: &Namespace, name: &str| {
        let d = ns.child_ino(ROOT_INO, os("d")).unwrap();
        ns.child_ino(d, os(name)).unwrap()
    };
    let (u2, w2) = (ino(&back, "untouched"), ino(&back, "written"));
    // Images keep sizes and stored pages, not the listed state.
    assert_eq!(back.attr(u2).unwrap().size, before.0.size);
    assert_eq!(back.attr(u2).unwrap().blocks, 0);
    assert_eq!(back.attr(w2).unwrap().blocks, before.1.blocks);
    // The same listing again: the untouched file is listed again, the
    // written one keeps its contents, a file of another size is kept.
    assert_eq!(listed(&mut back, "d/untouched", 5 * PG + 1).unwrap(), u2);
    assert_eq!(listed(&mut back, "d/written", 5 * PG + 1).unwrap(), w2);
    assert_eq!(back.attr(u2).unwrap().blocks, before.0.blocks);
    assert!(is_listed(&back, u2));
    assert_eq!(back.attr(w2).unwrap().blocks, 8);
    assert_eq!(back.read(w2, 0, 5).unwrap(), b"data\0");
    assert!(!is_listed(&back, w2));
    let e2 = back
        .create_node(ROOT_INO, os("empty"), spec(Kind::RegularFile))
        .unwrap()
        .attr
        .ino
        .0;
    listed(&mut back, "empty", 7).unwrap();
    assert_eq!(
        (back.attr(e2).unwrap().size, back.attr(e2).unwrap().blocks),
        (0, 0)
    );
    assert!(!is_listed(&back, e2));
    back.check().unwrap();
}

proptest! {
    /// A loader that reuses the previous path's directories builds the
    /// same tree, with the same answers and errors, as adding each path
    /// on its own, whatever the paths look like (`//`, `.`, `..`, trailing
    /// slashes, names that are prefixes of others, paths that come back).
    #[test]
    fn path_loader_agrees_with_add_path(
        paths in proptest::collection::vec(
            proptest::collection::vec(
                prop_oneof![
                    Just("a"), Just("ab"), Just("b"), Just("."), Just(""), Just(".."), Just("a b")
                ],
                0..6,
            ),
            1..40,
        ),
        lead in proptest::collection::vec(any::<bool>(), 40),
    ) {
        let mut one = ns();
        let mut each = ns();
        let lines: Vec<String> = paths
            .iter()
            .zip(&lead)
            .map(|(c, &l)| format!("{}{}", if l { "/" } else { "" }, c.join("/")))
            .collect();
        let mut got = Vec::new();
        {
            let mut l = PathLoader::new(&mut one, 0, 0);
            for p in &lines {
                got.push(l.add(os(p), log::Level::Trace).map_err(|e| e.code()));
            }
        }
        for (p, g) in lines.iter().zip(&got) {
            let want = each.add_path(os(p), 0, 0).map_err(|e| e.code());
            prop_assert_eq!(want.is_ok(), g.is_ok(), "{}", p);
            if let (Ok(w), Ok(g)) = (want, g) {
                let wp = each.trie().path_of(each.dir_node(w).unwrap());
                let gp = one.trie().path_of(one.dir_node(*g).unwrap());
                prop_assert_eq!(wp, gp, "{}", p);
            } else {
                prop_assert_eq!(want, *g, "{}", p);
            }
        }
        prop_assert_eq!(one.trie().leaves(), each.trie().leaves());
        one.check().unwrap();
    }
}

// ---------------------------------------------------------------------------
// Checkpoints
// ---------------------------------------------------------------------------

/// Everything a process can observe of the tree, by path: kind, inode
/// number, mode, owner, size, link count, times, contents or target, and
/// extended attributes.
fn dump(ns: &Namespace) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), ROOT_INO)];
    while let Some((path, ino)) = stack.pop() {
        let a = ns.attr(ino).unwrap();
        let body = match a.kind {
            FileType::RegularFile => format!("{:?}", ns.read(ino, 0, u32::MAX).unwrap()),
            FileType::Symlink => format!("{:?}", ns.readlink(ino).unwrap()),
            _ => String::new(),
        };
        let x = ns
            .inodes
            .xattrs(ino)
            .map(|x| format!("{x:?}"))
            .unwrap_or_default();
        out.push(format!(
            "{path} {ino} {:?} {:o} {} {} {} {:?} {:?} {body} {x}",
            a.kind, a.perm, a.size, a.nlink, a.uid, a.mtime, a.ctime
        ));
        if a.kind == FileType::Directory {
            for (name, child, _) in ns.entries_after(ino, None).unwrap() {
                stack.push((format!("{path}/{}", name.to_string_lossy()), child));
            }
        }
    }
    out.sort();
    out
}

fn file_in(ns: &mut Namespace, parent: u64, name: &str, data: &[u8]) -> u64 {
    let ino = ns
        .create_node(parent, os(name), spec(Kind::RegularFile))
        .unwrap()
        .attr
        .ino
        .0;
    ns.write(ino, 0, data).unwrap();
    ino
}

#[test]
fn restore_brings_back_names_contents_and_attributes() {
    let mut ns = ns();
    let d = ns
        .create_node(ROOT_INO, os("d"), spec(Kind::Directory))
        .unwrap()
        .attr
        .ino
        .0;
    let f = file_in(&mut ns, d, "f", &[1u8; 3 * PAGE]);
    ns.setxattr(f, os("user.k"), b"v", 0).unwrap();
    let saved = dump(&ns);
    ns.save_checkpoint("base").unwrap();
    assert_eq!(ns.pages_used(), 3, "a checkpoint shares pages");
    // Change everything.
    ns.write(f, 10, b"changed").unwrap();
    assert_eq!(ns.pages_used(), 4, "the written page was copied once");
    ns.write(f, 20, b"again").unwrap();
    assert_eq!(ns.pages_used(), 4, "a copied page is the file's own");
    let new = file_in(&mut ns, ROOT_INO, "new", b"x");
    ns.forget(new, 1);
    ns.rename(d, os("f"), ROOT_INO, os("moved"), 0).unwrap();
    ns.setxattr(f, os("user.k"), b"other", 0).unwrap();
    ns.check().unwrap();
    assert_ne!(dump(&ns), saved);
    let r = ns.restore_checkpoint("base").unwrap();
    assert_eq!(dump(&ns), saved);
    assert_eq!(r.orphaned, 0);
    ns.check().unwrap();
    assert_eq!(ns.pages_used(), 5, "the replaced tree is freed later");
    ns.settle_checkpoints();
    assert_eq!(
        ns.pages_used(),
        3,
        "the copied page and the new file's went"
    );
    ns.check().unwrap();
    // Restoring again, after more changes, works the same.
    ns.unlink(d, os("f")).unwrap();
    ns.restore_checkpoint("base").unwrap();
    assert_eq!(dump(&ns), saved);
    ns.delete_checkpoint("base").unwrap();
    ns.settle_checkpoints();
    assert_eq!(ns.pages_used(), 3);
    ns.check().unwrap();
}

#[test]
fn checkpoint_names_and_errors() {
    let mut ns = ns();
    for bad in ["", "-x", ".x", "a/b", "a b", "é", &"x".repeat(65)] {
        assert_eq!(ns.save_checkpoint(bad), Err(e(libc::EINVAL)), "{bad:?}");
    }
    ns.save_checkpoint("a.b-c_1").unwrap();
    assert_eq!(ns.save_checkpoint("a.b-c_1"), Err(e(libc::EEXIST)));
    assert_eq!(
        ns.restore_checkpoint("nope").map(|_| ()),
        Err(e(libc::ENOENT))
    );
    assert_eq!(ns.delete_checkpoint("nope"), Err(e(libc::ENOENT)));
    for i in 1..checkpoint::MAX_CHECKPOINTS {
        ns.save_checkpoint(&format!("c{i}")).unwrap();
    }
    assert_eq!(ns.save_checkpoint("one-more"), Err(e(libc::ENOSPC)));
    assert_eq!(ns.checkpoint_infos().len(), checkpoint::MAX_CHECKPOINTS);
}

#[test]
fn checkpoints_count_against_the_inode_limit() {
    let mut ns = ns_with(100, 5);
    file_in(&mut ns, ROOT_INO, "a", b"1");
    let b = file_in(&mut ns, ROOT_INO, "b", b"2");
    // Root, a, b: 3 inodes live; a checkpoint holds 3 more.
    assert_eq!(ns.save_checkpoint("full"), Err(e(libc::ENOSPC)));
    assert!(
        ns.checkpoints().is_empty(),
        "a refused save changes nothing"
    );
    ns.unlink(ROOT_INO, os("b")).unwrap();
    ns.forget(b, 1);
    ns.save_checkpoint("two").unwrap();
    assert_eq!(ns.usage().ffree, 1);
    let c = ns.create_node(ROOT_INO, os("c"), spec(Kind::RegularFile));
    assert!(c.is_ok());
    assert_eq!(
        ns.create_node(ROOT_INO, os("d"), spec(Kind::RegularFile))
            .map(|_| ()),
        Err(e(libc::ENOSPC))
    );
    ns.delete_checkpoint("two").unwrap();
    ns.settle_checkpoints();
    assert_eq!(ns.usage().ffree, 2);
    ns.check().unwrap();
}

#[test]
fn numbers_a_checkpoint_holds_are_not_reused() {
    let mut ns = ns();
    let f = file_in(&mut ns, ROOT_INO, "f", b"data");
    ns.save_checkpoint("s").unwrap();
    ns.unlink(ROOT_INO, os("f")).unwrap();
    let g = file_in(&mut ns, ROOT_INO, "g", b"other");
    assert_ne!(g, f, "a new file never takes a number the checkpoint holds");
    ns.restore_checkpoint("s").unwrap();
    assert_eq!(ns.lookup(ROOT_INO, os("f")).unwrap().attr.ino.0, f);
    assert_eq!(ns.read(f, 0, 100).unwrap(), b"data");
    ns.delete_checkpoint("s").unwrap();
    ns.unlink(ROOT_INO, os("f")).unwrap();
    // The kernel's references: the creation's and the lookup's.
    ns.forget(f, 2);
    // Without checkpoints, numbers are reused again.
    let h = file_in(&mut ns, ROOT_INO, "h", b"");
    assert_eq!(h, f);
    ns.check().unwrap();
}

#[test]
fn inodes_the_kernel_holds_survive_a_restore() {
    let mut ns = ns();
    let kept = file_in(&mut ns, ROOT_INO, "kept", b"old");
    ns.lookup(ROOT_INO, os("kept")).unwrap();
    ns.save_checkpoint("s").unwrap();
    // A file created after the save and still held (open) by the kernel.
    let open = file_in(&mut ns, ROOT_INO, "open", b"mine");
    let dir = ns
        .create_node(ROOT_INO, os("dir"), spec(Kind::Directory))
        .unwrap()
        .attr
        .ino
        .0;
    ns.write(kept, 0, b"new").unwrap();
    let r = ns.restore_checkpoint("s").unwrap();
    assert_eq!(r.orphaned, 2);
    let mut changed = r.changed.clone();
    changed.sort_unstable();
    assert_eq!(changed, {
        let mut v = vec![kept, open, dir, ROOT_INO];
        v.sort_unstable();
        v
    });
    // The checkpoint's names; the open file is unlinked but readable.
    assert_eq!(
        ns.lookup(ROOT_INO, os("open")).map(|_| ()),
        Err(e(libc::ENOENT))
    );
    assert_eq!(ns.read(open, 0, 100).unwrap(), b"mine");
    assert_eq!(ns.attr(open).unwrap().nlink, 0);
    ns.write(open, 4, b"!").unwrap();
    assert_eq!(ns.entries_after(dir, None).unwrap().count(), 0);
    assert_eq!(ns.read(kept, 0, 100).unwrap(), b"old");
    // Kernel references carried over: the lookups of kept (create +
    // lookup) and the creations.
    assert_eq!(ns.inodes.get(kept).unwrap().lookups(), 2);
    ns.check().unwrap();
    ns.forget(open, 1);
    ns.forget(dir, 1);
    assert!(ns.inodes.get(open).is_none());
    ns.check().unwrap();
}

#[test]
fn copy_range_shares_aligned_pages() {
    let mut ns = ns_with(10, 100);
    let data: Vec<u8> = (0..4 * PAGE).map(|i| (i % 251) as u8).collect();
    let a = file_in(&mut ns, ROOT_INO, "a", &data);
    let b = ns
        .create_node(ROOT_INO, os("b"), spec(Kind::RegularFile))
        .unwrap()
        .attr
        .ino
        .0;
    assert_eq!(ns.pages_used(), 4);
    let mut done = 0u64;
    while done < data.len() as u64 {
        let n = ns
            .copy_range(a, done, b, done, data.len() as u64 - done)
            .unwrap();
        assert!(n > 0);
        done += u64::from(n);
    }
    assert_eq!(ns.read(b, 0, u32::MAX).unwrap(), data);
    assert_eq!(ns.pages_used(), 4, "whole pages are shared, not copied");
    ns.write(b, 5, b"B").unwrap();
    assert_eq!(ns.pages_used(), 5);
    assert_eq!(
        ns.read(a, 0, u32::MAX).unwrap(),
        data,
        "the source keeps its bytes"
    );
    // Unaligned: bytes are copied (the head in the same call, the rest of
    // a page-aligned run shared).
    let c = ns
        .create_node(ROOT_INO, os("c"), spec(Kind::RegularFile))
        .unwrap()
        .attr
        .ino
        .0;
    let n = ns.copy_range(a, 100, c, 100, 3 * PG).unwrap();
    assert_eq!(
        u64::from(n),
        3 * PG - 100,
        "the head copied, two pages shared"
    );
    assert_eq!(
        ns.read(c, 100, 3 * PAGE as u32).unwrap(),
        data[100..3 * PAGE]
    );
    assert_eq!(ns.pages_used(), 6, "one page for the head");
    ns.check().unwrap();
    let n = ns.copy_range(a, 1, c, 2, 2 * PG).unwrap();
    assert_eq!(u64::from(n), 2 * PG);
    assert_eq!(
        ns.read(c, 2, 2 * PAGE as u32).unwrap(),
        data[1..1 + 2 * PAGE]
    );
    ns.check().unwrap();
    // No space for the bytes: a short or refused copy, nothing torn.
    ns.unlink(ROOT_INO, os("c")).unwrap();
    ns.forget(c, 1);
    ns.check().unwrap();
}

#[derive(Clone, Debug)]
enum CkOp {
    Op(Op),
    Save(usize),
    Restore(usize),
    Delete(usize),
    /// What the background thread does: free replaced trees, copy ahead.
    Settle,
}

fn ck_op_strategy() -> impl Strategy<Value = CkOp> {
    prop_oneof![
        8 => op_strategy().prop_map(CkOp::Op),
        2 => (0usize..3).prop_map(CkOp::Save),
        2 => (0usize..3).prop_map(CkOp::Restore),
        1 => (0usize..3).prop_map(CkOp::Delete),
        1 => Just(CkOp::Settle),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 384,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random operations interleaved with saves, restores and deletes:
    /// a restore gives back exactly what the model saved, the kernel's
    /// references survive every restore, and the invariants (page and
    /// inode accounting included) hold throughout.
    #[test]
    fn checkpoints_match_a_model(ops in proptest::collection::vec(ck_op_strategy(), 1..40)) {
        let mut ns = ns_with(P_MAX_PAGES, 3 * P_MAX_INODES);
        let mut held: BTreeMap<u64, u64> = BTreeMap::new();
        let mut model: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for op in &ops {
            match op {
                CkOp::Op(op) => apply(&mut ns, &mut held, op),
                CkOp::Save(k) => {
                    let name = format!("c{k}");
                    match ns.save_checkpoint(&name) {
                        Ok(()) => {
                            prop_assert!(!model.contains_key(k));
                            model.insert(*k, dump(&ns));
                        }
                        Err(err) if err == e(libc::EEXIST) => prop_assert!(model.contains_key(k)),
                        Err(err) => {
                            prop_assert_eq!(err, e(libc::ENOSPC));
                            prop_assert!(ns.checkpoints().get(&name).is_none());
                        }
                    }
                }
                CkOp::Restore(k) => match ns.restore_checkpoint(&format!("c{k}")) {
                    Ok(_) => prop_assert_eq!(&dump(&ns), &model[k]),
                    Err(err) => {
                        prop_assert_eq!(err, e(libc::ENOENT));
                        prop_assert!(!model.contains_key(k));
                    }
                },
                CkOp::Delete(k) => {
                    let r = ns.delete_checkpoint(&format!("c{k}"));
                    prop_assert_eq!(r.is_ok(), model.remove(k).is_some());
                }
                CkOp::Settle => ns.settle_checkpoints(),
            }
            check_invariants(&ns, &held);
        }
        for k in model.keys() {
            ns.delete_checkpoint(&format!("c{k}")).unwrap();
        }
        ns.settle_checkpoints();
        clear_flags(&mut ns);
        remove_all(&mut ns, ROOT_INO);
        for (&ino, &n) in &held {
            ns.forget(ino, n);
        }
        held.clear();
        check_invariants(&ns, &held);
        prop_assert_eq!(ns.inodes.live(), 1);
        prop_assert_eq!(ns.pages_used(), 0);
    }
}

#[test]
fn a_page_shared_twice_within_one_file_is_freed_once() {
    // Found by the checkpoints fuzz target: a copy_file_range within one
    // file makes the file hold one page at two offsets.
    let mut ns = ns_with(20, 100);
    let f = file_in(&mut ns, ROOT_INO, "f", &[3u8; 2 * PAGE]);
    assert_eq!(ns.copy_range(f, PG, f, 5 * PG, PG).unwrap(), PAGE as u32);
    assert_eq!(ns.pages_used(), 2, "the page is shared, not copied");
    ns.check().unwrap();
    ns.unlink(ROOT_INO, os("f")).unwrap();
    ns.forget(f, 1);
    assert_eq!(ns.pages_used(), 0);
    ns.check().unwrap();
}

#[test]
fn a_checkpoint_view_reads_the_checkpoint_and_is_buried_after() {
    let mut ns = ns_with(20, 100);
    let f = file_in(&mut ns, ROOT_INO, "f", &[5u8; 3 * PAGE]);
    ns.save_checkpoint("s").unwrap();
    let saved = dump(&ns);
    ns.write(f, 0, b"live").unwrap();
    let view = ns.checkpoint_view("s").unwrap();
    assert_eq!(dump(&view), saved);
    assert_eq!(
        ns.checkpoint_view("nope").map(|_| ()).unwrap_err(),
        e(libc::ENOENT)
    );
    // The view alone holds the checkpoint's copy of the written page now.
    ns.delete_checkpoint("s").unwrap();
    ns.settle_checkpoints();
    assert_eq!(ns.pages_used(), 4, "the view keeps the old page alive");
    ns.bury(view);
    ns.check().unwrap();
    ns.settle_checkpoints();
    assert_eq!(ns.pages_used(), 3);
    ns.check().unwrap();
}

#[test]
fn restore_names_only_the_entries_that_lead_elsewhere() {
    let mut ns = ns();
    let d = ns
        .create_node(ROOT_INO, os("d"), spec(Kind::Directory))
        .unwrap()
        .attr
        .ino
        .0;
    for n in ["a", "b", "same1", "same2"] {
        file_in(&mut ns, d, n, b"x");
    }
    ns.save_checkpoint("s").unwrap();
    ns.rename(d, os("b"), d, os("c"), 0).unwrap();
    ns.unlink(d, os("a")).unwrap();
    file_in(&mut ns, d, "a", b"new");
    // The kernel holds d (it created it).
    let r = ns.restore_checkpoint("s").unwrap();
    let mut names: Vec<String> = r
        .entries
        .iter()
        .filter(|(p, _)| *p == d)
        .map(|(_, n)| String::from_utf8_lossy(n).into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["a", "b", "c"],
        "same1 and same2 lead where they did"
    );
    assert!(r.changed.contains(&d));
}
