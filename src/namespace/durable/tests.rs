//! Unit tests of durable state and the crash: one test per rule of the
//! model (docs/crash.md), and a property test against a reference model
//! that copies whole directories and files at each sync point.

use std::collections::BTreeMap;
use std::ffi::OsStr;

use proptest::prelude::*;

use crate::namespace::inode::{Kind, ROOT_INO};
use crate::namespace::{Limits, Namespace, NewNode, RENAME_EXCHANGE, SetAttr, XattrReply};

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// A tracked namespace, everything durable.
fn tracked() -> Namespace {
    let mut ns = Namespace::new(0, 0, 0o755, Limits::from_options(Some(1 << 24), Some(4096)));
    ns.track_durability();
    ns
}

fn spec(kind: Kind, perm: u32) -> NewNode<'static> {
    NewNode {
        kind,
        perm,
        uid: 0,
        gid: 0,
        rdev: 0,
        target: None,
    }
}

/// Creates `name` and drops the kernel's reference, as the kernel would
/// once nothing holds it (so removed inodes are freed, not orphaned).
fn create(ns: &mut Namespace, parent: u64, name: &str, kind: Kind) -> u64 {
    let perm = if kind == Kind::Directory {
        0o755
    } else {
        0o640
    };
    let ino = ns
        .create_node(parent, os(name), spec(kind, perm))
        .unwrap()
        .attr
        .ino
        .0;
    ns.forget(ino, 1);
    ino
}

fn ino_of(ns: &Namespace, parent: u64, name: &str) -> Option<u64> {
    ns.child_ino(parent, os(name)).ok()
}

fn content(ns: &Namespace, parent: u64, name: &str) -> Option<Vec<u8>> {
    let ino = ino_of(ns, parent, name)?;
    Some(ns.read(ino, 0, 1 << 20).unwrap())
}

fn names(ns: &Namespace, dir: u64) -> Vec<String> {
    ns.entries_after(dir, None)
        .unwrap()
        .map(|(n, _, _)| n.to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn checked(ns: &Namespace) {
    if let Err(e) = ns.check() {
        panic!("check: {e:#?}");
    }
}

fn crash(ns: &mut Namespace) -> super::Crashed {
    let c = ns.crash().unwrap();
    ns.settle_checkpoints();
    checked(ns);
    c
}

#[test]
fn without_tracking_fsync_is_free_and_crash_is_refused() {
    let mut ns = Namespace::new(0, 0, 0o755, Limits::from_options(Some(1 << 20), Some(64)));
    let f = create(&mut ns, ROOT_INO, "f", Kind::RegularFile);
    ns.fsync(f).unwrap();
    assert!(!ns.tracks_durability());
    assert_eq!(ns.crash().unwrap_err().code(), libc::EOPNOTSUPP);
    assert!(ns.inodes.durable.is_none());
}

#[test]
fn m1_file_data_attributes_and_xattrs_are_durable_at_fsync_only() {
    let mut ns = tracked();
    let f = create(&mut ns, ROOT_INO, "f", Kind::RegularFile);
    ns.write(f, 0, b"synced").unwrap();
    ns.setxattr(f, os("user.k"), b"v1", 0).unwrap();
    ns.fsync(f).unwrap();
    ns.fsync(ROOT_INO).unwrap();
    ns.write(f, 6, b" and not").unwrap();
    ns.setattr(
        f,
        SetAttr {
            mode: Some(0o600),
            ..SetAttr::default()
        },
    )
    .unwrap();
    ns.setxattr(f, os("user.k"), b"v2", 0).unwrap();
    ns.setxattr(f, os("user.new"), b"x", 0).unwrap();
    checked(&ns);
    let c = crash(&mut ns);
    assert_eq!(c.reverted, 1, "{c:?}");
    assert_eq!(content(&ns, ROOT_INO, "f").unwrap(), b"synced");
    let a = ns.attr(f).unwrap();
    assert_eq!((a.perm, a.size, a.nlink), (0o640, 6, 1));
    match ns.getxattr(f, os("user.k"), 64).unwrap() {
        XattrReply::Data(d) => assert_eq!(d, b"v1"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        ns.getxattr(f, os("user.new"), 64).unwrap_err().code(),
        libc::ENODATA
    );
    // After the crash everything is durable: a second crash changes nothing.
    let c = crash(&mut ns);
    assert_eq!((c.reverted, c.lost, c.names_dropped), (0, 0, 0));
    assert_eq!(content(&ns, ROOT_INO, "f").unwrap(), b"synced");
}

#[test]
fn m2_a_durable_name_of_a_never_synced_file_brings_back_its_creation_state() {
    let mut ns = tracked();
    let d = create(&mut ns, ROOT_INO, "d", Kind::Directory);
    let f = create(&mut ns, d, "f", Kind::RegularFile);
    ns.write(f, 0, b"never synced").unwrap();
    ns.setattr(
        f,
        SetAttr {
            mode: Some(0o777),
            ..SetAttr::default()
        },
    )
    .unwrap();
    let s = ns
        .create_node(
            d,
            os("s"),
            NewNode {
                target: Some(b"target"),
                ..spec(Kind::Symlink, 0o777)
            },
        )
        .unwrap()
        .attr
        .ino
        .0;
    ns.forget(s, 1);
    let sub = create(&mut ns, d, "sub", Kind::Directory);
    create(&mut ns, sub, "inner", Kind::RegularFile);
    ns.fsync(d).unwrap();
    ns.fsync(ROOT_INO).unwrap();
    crash(&mut ns);
    assert_eq!(names(&ns, d), ["f", "s", "sub"]);
    let a = ns.attr(f).unwrap();
    assert_eq!((a.size, a.perm), (0, 0o640), "the file as it was created");
    assert_eq!(ns.readlink(s).unwrap(), b"target");
    assert!(names(&ns, sub).is_empty(), "sub was never synced: empty");
}

#[test]
fn m2_names_not_synced_are_lost_and_removed_names_come_back() {
    let mut ns = tracked();
    let kept = create(&mut ns, ROOT_INO, "kept", Kind::RegularFile);
    ns.write(kept, 0, b"k").unwrap();
    ns.fsync(kept).unwrap();
    ns.fsync(ROOT_INO).unwrap();
    let f = create(&mut ns, ROOT_INO, "new", Kind::RegularFile);
    ns.fsync(f).unwrap();
    ns.unlink(ROOT_INO, os("kept")).unwrap();
    checked(&ns);
    let c = crash(&mut ns);
    assert_eq!(names(&ns, ROOT_INO), ["kept"]);
    assert_eq!(content(&ns, ROOT_INO, "kept").unwrap(), b"k");
    assert_eq!(ns.attr(kept).unwrap().nlink, 1);
    assert_eq!((c.lost, c.names_dropped, c.names_back), (1, 1, 1), "{c:?}");
}

#[test]
fn m3_write_then_rename_without_fsync_keeps_the_name_and_loses_the_data() {
    let mut ns = tracked();
    let old = create(&mut ns, ROOT_INO, "config", Kind::RegularFile);
    ns.write(old, 0, b"old").unwrap();
    ns.fsync(old).unwrap();
    ns.fsync(ROOT_INO).unwrap();
    // The classic bug: write a new version, rename it over, sync the dir.
    let t = create(&mut ns, ROOT_INO, "config.tmp", Kind::RegularFile);
    ns.write(t, 0, b"new").unwrap();
    ns.rename(ROOT_INO, os("config.tmp"), ROOT_INO, os("config"), 0)
        .unwrap();
    ns.fsync(ROOT_INO).unwrap();
    crash(&mut ns);
    assert_eq!(names(&ns, ROOT_INO), ["config"]);
    assert_eq!(
        content(&ns, ROOT_INO, "config").unwrap(),
        b"",
        "data lost, name kept"
    );
    // The correct pattern: fsync the file, rename, fsync the directory.
    let t = create(&mut ns, ROOT_INO, "config.tmp", Kind::RegularFile);
    ns.write(t, 0, b"new").unwrap();
    ns.fsync(t).unwrap();
    ns.rename(ROOT_INO, os("config.tmp"), ROOT_INO, os("config"), 0)
        .unwrap();
    ns.fsync(ROOT_INO).unwrap();
    crash(&mut ns);
    assert_eq!(content(&ns, ROOT_INO, "config").unwrap(), b"new");
}

#[test]
fn m3_a_rename_between_directories_is_durable_in_both_or_neither() {
    for sync in ["a", "b", "none"] {
        let mut ns = tracked();
        let a = create(&mut ns, ROOT_INO, "a", Kind::Directory);
        let b = create(&mut ns, ROOT_INO, "b", Kind::Directory);
        let x = create(&mut ns, a, "x", Kind::RegularFile);
        ns.write(x, 0, b"x").unwrap();
        let victim = create(&mut ns, b, "y", Kind::RegularFile);
        for i in [x, victim, a, b, ROOT_INO] {
            ns.fsync(i).unwrap();
        }
        ns.rename(a, os("x"), b, os("y"), 0).unwrap();
        // Later changes of both directories stay unsynced.
        create(&mut ns, a, "later-a", Kind::RegularFile);
        create(&mut ns, b, "later-b", Kind::RegularFile);
        match sync {
            "a" => ns.fsync(a).unwrap(),
            "b" => ns.fsync(b).unwrap(),
            _ => {}
        }
        crash(&mut ns);
        let (na, nb) = (names(&ns, a), names(&ns, b));
        let y = ino_of(&ns, b, "y");
        if sync == "none" {
            assert_eq!((na, y), (vec!["x".to_string()], Some(victim)), "{sync}");
        } else {
            let later = format!("later-{sync}");
            let (mine, other) = if sync == "a" { (&na, &nb) } else { (&nb, &na) };
            assert!(mine.contains(&later), "{sync}: {mine:?}");
            assert!(
                !other.iter().any(|n| n.starts_with("later")),
                "{sync}: {other:?}"
            );
            assert!(!na.contains(&"x".to_string()), "{sync}: {na:?}");
            assert_eq!(y, Some(x), "{sync}");
            assert_eq!(content(&ns, b, "y").unwrap(), b"x");
            assert!(ns.attr(victim).is_err(), "the replaced file is gone");
        }
    }
}

#[test]
fn m3_exchange_and_chained_renames_are_durable_in_order() {
    let mut ns = tracked();
    let a = create(&mut ns, ROOT_INO, "a", Kind::Directory);
    let b = create(&mut ns, ROOT_INO, "b", Kind::Directory);
    let c = create(&mut ns, ROOT_INO, "c", Kind::Directory);
    let x = create(&mut ns, a, "x", Kind::RegularFile);
    let y = create(&mut ns, b, "y", Kind::RegularFile);
    for i in [a, b, c, ROOT_INO] {
        ns.fsync(i).unwrap();
    }
    ns.rename(a, os("x"), b, os("y"), RENAME_EXCHANGE).unwrap();
    ns.fsync(b).unwrap();
    crash(&mut ns);
    assert_eq!(
        (ino_of(&ns, a, "x"), ino_of(&ns, b, "y")),
        (Some(y), Some(x))
    );
    // a/x -> b/m -> c/z: syncing c makes the first rename durable too,
    // else x would keep its name in a and gain one in c.
    ns.rename(a, os("x"), b, os("m"), 0).unwrap();
    ns.rename(b, os("m"), c, os("z"), 0).unwrap();
    ns.fsync(c).unwrap();
    crash(&mut ns);
    assert_eq!(
        (names(&ns, a), names(&ns, b)),
        (vec![], vec!["y".to_string()])
    );
    assert_eq!(ino_of(&ns, c, "z"), Some(y));
    assert_eq!(ns.attr(y).unwrap().nlink, 1);
}

#[test]
fn m3_a_whiteout_is_part_of_its_rename() {
    let mut ns = tracked();
    let a = create(&mut ns, ROOT_INO, "a", Kind::Directory);
    let b = create(&mut ns, ROOT_INO, "b", Kind::Directory);
    create(&mut ns, a, "x", Kind::RegularFile);
    for i in [a, b, ROOT_INO] {
        ns.fsync(i).unwrap();
    }
    ns.rename_whiteout(a, os("x"), b, os("x"), 0, (0, 0))
        .unwrap();
    ns.fsync(b).unwrap();
    crash(&mut ns);
    let w = ino_of(&ns, a, "x").expect("the whiteout");
    assert_eq!(ns.inode(w).unwrap().kind, Kind::CharDevice);
    assert!(ino_of(&ns, b, "x").is_some());
}

#[test]
fn m4_link_counts_come_from_the_durable_names() {
    let mut ns = tracked();
    let f = create(&mut ns, ROOT_INO, "f", Kind::RegularFile);
    ns.link(f, ROOT_INO, os("g")).unwrap();
    ns.forget(f, 1);
    ns.fsync(ROOT_INO).unwrap();
    ns.link(f, ROOT_INO, os("h")).unwrap();
    ns.forget(f, 1);
    ns.unlink(ROOT_INO, os("f")).unwrap();
    assert_eq!(ns.attr(f).unwrap().nlink, 2);
    crash(&mut ns);
    assert_eq!(names(&ns, ROOT_INO), ["f", "g"]);
    assert_eq!(ns.attr(f).unwrap().nlink, 2);
    // Both names removed and the removal durable: the file is gone, and so
    // is its record with the pages it held.
    ns.write(f, 0, &[7; 8192]).unwrap();
    ns.fsync(f).unwrap();
    let used = ns.pages_used();
    assert_eq!(used, 2);
    ns.unlink(ROOT_INO, os("f")).unwrap();
    ns.unlink(ROOT_INO, os("g")).unwrap();
    assert_eq!(ns.pages_used(), 2, "a durable name still brings it back");
    checked(&ns);
    ns.fsync(ROOT_INO).unwrap();
    assert_eq!(ns.pages_used(), 0, "nothing can bring it back");
    assert!(ns.inodes.durable.as_ref().unwrap().records.is_empty());
    checked(&ns);
}

#[test]
fn m4_a_file_unlinked_while_open_vanishes_and_its_descriptor_still_works() {
    let mut ns = tracked();
    let f = ns
        .create_node(ROOT_INO, os("f"), spec(Kind::RegularFile, 0o644))
        .unwrap()
        .attr
        .ino
        .0;
    ns.write(f, 0, b"data").unwrap();
    ns.fsync(f).unwrap();
    ns.fsync(ROOT_INO).unwrap();
    ns.unlink(ROOT_INO, os("f")).unwrap();
    ns.fsync(ROOT_INO).unwrap();
    let c = crash(&mut ns);
    assert_eq!(c.restored.orphaned, 1);
    assert!(names(&ns, ROOT_INO).is_empty());
    assert_eq!(ns.read(f, 0, 10).unwrap(), b"data", "the open file");
    ns.forget(f, 1);
    checked(&ns);
}

#[test]
fn m4_mkdir_p_is_durable_only_level_by_level() {
    let mut ns = tracked();
    let a = create(&mut ns, ROOT_INO, "a", Kind::Directory);
    let b = create(&mut ns, a, "b", Kind::Directory);
    let c = create(&mut ns, b, "c", Kind::Directory);
    ns.fsync(c).unwrap();
    ns.fsync(b).unwrap();
    ns.fsync(a).unwrap();
    // The root was not synced: none of it.
    crash(&mut ns);
    assert!(names(&ns, ROOT_INO).is_empty());
    let a = create(&mut ns, ROOT_INO, "a", Kind::Directory);
    let b = create(&mut ns, a, "b", Kind::Directory);
    create(&mut ns, b, "c", Kind::Directory);
    ns.fsync(ROOT_INO).unwrap();
    ns.fsync(b).unwrap();
    // a not synced: a is there (empty), b's sync cannot bring b back.
    crash(&mut ns);
    assert_eq!(names(&ns, ROOT_INO), ["a"]);
    assert!(names(&ns, a).is_empty());
    let b = create(&mut ns, a, "b", Kind::Directory);
    create(&mut ns, b, "c", Kind::Directory);
    for d in [b, a, ROOT_INO] {
        ns.fsync(d).unwrap();
    }
    crash(&mut ns);
    assert_eq!(names(&ns, b), ["c"]);
    assert_eq!(ns.attr(a).unwrap().nlink, 3);
}

#[test]
fn rmdir_makes_the_renames_out_of_the_directory_durable_with_it() {
    let mut ns = tracked();
    let d = create(&mut ns, ROOT_INO, "d", Kind::Directory);
    let e = create(&mut ns, ROOT_INO, "e", Kind::Directory);
    let x = create(&mut ns, d, "x", Kind::Directory);
    for i in [x, d, e, ROOT_INO] {
        ns.fsync(i).unwrap();
    }
    ns.rename(d, os("x"), e, os("x"), 0).unwrap();
    ns.rmdir(ROOT_INO, os("d")).unwrap();
    ns.fsync(ROOT_INO).unwrap();
    crash(&mut ns);
    // d's removal is durable, so x left d first: never neither.
    assert_eq!(names(&ns, ROOT_INO), ["e"]);
    assert_eq!(ino_of(&ns, e, "x"), Some(x));
}

#[test]
fn a_removed_directory_keeps_its_number_while_a_pending_rename_names_it() {
    let mut ns = tracked();
    let f = create(&mut ns, ROOT_INO, "f", Kind::RegularFile);
    let d = create(&mut ns, ROOT_INO, "d", Kind::Directory);
    ns.rename(ROOT_INO, os("f"), d, os("f"), 0).unwrap();
    ns.unlink(d, os("f")).unwrap();
    ns.rmdir(ROOT_INO, os("d")).unwrap();
    // A new directory must not get d's number: committing the rename
    // would put f into it.
    let e = create(&mut ns, ROOT_INO, "e", Kind::Directory);
    assert_ne!(e, d);
    ns.fsync(ROOT_INO).unwrap();
    checked(&ns);
    crash(&mut ns);
    assert!(names(&ns, e).is_empty());
    assert!(ns.attr(f).is_err());
}

#[test]
fn freeing_a_removed_directory_keeps_the_records_of_live_files_it_named() {
    let mut ns = tracked();
    let d = create(&mut ns, ROOT_INO, "d", Kind::Directory);
    let f = create(&mut ns, ROOT_INO, "f", Kind::RegularFile);
    ns.link(f, d, os("g")).unwrap();
    ns.forget(f, 1);
    ns.write(f, 0, b"never synced").unwrap();
    ns.fsync(d).unwrap();
    ns.unlink(d, os("g")).unwrap();
    ns.rmdir(ROOT_INO, os("d")).unwrap();
    ns.fsync(ROOT_INO).unwrap();
    checked(&ns);
    crash(&mut ns);
    assert_eq!(
        content(&ns, ROOT_INO, "f").unwrap(),
        b"",
        "f was never synced"
    );
}

#[test]
fn m5_a_restore_is_a_sync_point_and_a_save_is_not() {
    let mut ns = tracked();
    let f = create(&mut ns, ROOT_INO, "f", Kind::RegularFile);
    ns.write(f, 0, b"one").unwrap();
    ns.save_checkpoint("c").unwrap();
    crash(&mut ns);
    assert!(names(&ns, ROOT_INO).is_empty(), "a save syncs nothing");
    ns.restore_checkpoint("c").unwrap();
    ns.settle_checkpoints();
    crash(&mut ns);
    assert_eq!(content(&ns, ROOT_INO, "f").unwrap(), b"one");
}

#[test]
fn pages_only_records_hold_count_against_the_size_limit() {
    let mut ns = Namespace::new(0, 0, 0o755, Limits::from_options(Some(4 * 4096), Some(64)));
    ns.track_durability();
    let f = create(&mut ns, ROOT_INO, "f", Kind::RegularFile);
    ns.write(f, 0, &[1; 3 * 4096]).unwrap();
    ns.fsync(f).unwrap();
    // Rewriting needs new pages while the record holds the old ones.
    assert_eq!(ns.write(f, 0, &[2; 4096]).unwrap(), 4096);
    assert_eq!(
        ns.write(f, 4096, &[2; 4096]).unwrap_err().code(),
        libc::ENOSPC
    );
    checked(&ns);
    ns.fsync(f).unwrap();
    assert_eq!(ns.pages_used(), 3);
    assert_eq!(ns.write(f, 4096, &[2; 4096]).unwrap(), 4096);
    checked(&ns);
}

#[test]
fn numbers_a_durable_name_holds_are_not_reused() {
    let mut ns = tracked();
    let f = create(&mut ns, ROOT_INO, "f", Kind::RegularFile);
    ns.write(f, 0, b"f").unwrap();
    ns.fsync(f).unwrap();
    ns.fsync(ROOT_INO).unwrap();
    ns.unlink(ROOT_INO, os("f")).unwrap();
    let g = create(&mut ns, ROOT_INO, "g", Kind::RegularFile);
    assert_ne!(f, g);
    checked(&ns);
    crash(&mut ns);
    assert_eq!(ino_of(&ns, ROOT_INO, "f"), Some(f));
    assert_eq!(content(&ns, ROOT_INO, "f").unwrap(), b"f");
}

#[test]
fn pending_renames_are_bounded() {
    let mut ns = tracked();
    let a = create(&mut ns, ROOT_INO, "a", Kind::Directory);
    let b = create(&mut ns, ROOT_INO, "b", Kind::Directory);
    create(&mut ns, a, "x", Kind::RegularFile);
    ns.fsync(a).unwrap();
    ns.fsync(ROOT_INO).unwrap();
    for i in 0..super::MAX_PENDING_RENAMES + 10 {
        let (from, to) = if i % 2 == 0 { (a, b) } else { (b, a) };
        ns.rename(from, os("x"), to, os("x"), 0).unwrap();
    }
    let d = ns.inodes.durable.as_ref().unwrap();
    assert_eq!(d.renames.len(), super::MAX_PENDING_RENAMES);
    checked(&ns);
}

// ---------------------------------------------------------------------------
// Property test: a reference model that copies whole directories and files
// at each sync point.
// ---------------------------------------------------------------------------

/// Directories of the model: the root and two fixed subdirectories.
const DIRS: [&str; 3] = ["", "d0", "d1"];
const NAMES: [&str; 3] = ["f0", "f1", "f2"];
/// Empty directories made, moved and removed in any of them.
const EDIRS: [&str; 2] = ["e0", "e1"];

#[derive(Clone, Debug)]
enum Op {
    Create(usize, usize),
    Write(usize, usize, u8, u16),
    Truncate(usize, usize, u16),
    Rename(usize, usize, usize, usize),
    Exchange(usize, usize, usize, usize),
    Link(usize, usize, usize, usize),
    Unlink(usize, usize),
    Mkdir(usize, usize),
    Rmdir(usize, usize),
    RenameDir(usize, usize, usize, usize),
    Fsync(usize, usize),
    Fsyncdir(usize),
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    let d = 0..DIRS.len();
    let n = 0..NAMES.len();
    prop_oneof![
        3 => (d.clone(), n.clone()).prop_map(|(d, n)| Op::Create(d, n)),
        3 => (d.clone(), n.clone(), any::<u8>(), 0..9000u16).prop_map(|(d, n, b, l)| Op::Write(d, n, b, l)),
        1 => (d.clone(), n.clone(), 0..9000u16).prop_map(|(d, n, l)| Op::Truncate(d, n, l)),
        3 => (d.clone(), n.clone(), d.clone(), n.clone()).prop_map(|(a, b, c, e)| Op::Rename(a, b, c, e)),
        1 => (d.clone(), n.clone(), d.clone(), n.clone()).prop_map(|(a, b, c, e)| Op::Exchange(a, b, c, e)),
        1 => (d.clone(), n.clone(), d.clone(), n.clone()).prop_map(|(a, b, c, e)| Op::Link(a, b, c, e)),
        2 => (d.clone(), n.clone()).prop_map(|(d, n)| Op::Unlink(d, n)),
        1 => (d.clone(), 0..EDIRS.len()).prop_map(|(d, k)| Op::Mkdir(d, k)),
        1 => (d.clone(), 0..EDIRS.len()).prop_map(|(d, k)| Op::Rmdir(d, k)),
        2 => (d.clone(), 0..EDIRS.len(), d.clone(), 0..EDIRS.len()).prop_map(|(a, b, c, e)| Op::RenameDir(a, b, c, e)),
        3 => (d.clone(), n.clone()).prop_map(|(d, n)| Op::Fsync(d, n)),
        2 => d.clone().prop_map(Op::Fsyncdir),
        1 => Just(Op::Crash),
    ]
}

/// The reference: files by model id, directories as name -> id maps
/// (an empty directory of the root is id `u32::MAX - k`).
#[derive(Clone, Default)]
struct Model {
    files: BTreeMap<u32, Vec<u8>>,
    dirs: [BTreeMap<String, u32>; 3],
    /// The durable side: contents at the last fsync (absent: as created).
    dfiles: BTreeMap<u32, Vec<u8>>,
    ddirs: [BTreeMap<String, u32>; 3],
    /// Renames not yet durable, oldest first.
    renames: Vec<[(usize, String, Option<u32>); 2]>,
    next: u32,
    /// Ids of the empty directories.
    edirs: std::collections::BTreeSet<u32>,
}

impl Model {
    fn commit(&mut self, dir: usize) {
        if let Some(k) = self
            .renames
            .iter()
            .rposition(|r| r.iter().any(|s| s.0 == dir))
        {
            for r in self.renames.drain(..=k) {
                for (d, name, id) in r {
                    match id {
                        Some(i) => self.ddirs[d].insert(name, i),
                        None => self.ddirs[d].remove(&name),
                    };
                }
            }
        }
        self.ddirs[dir] = self.dirs[dir].clone();
    }

    fn crash(&mut self) {
        self.dirs = self.ddirs.clone();
        let named: std::collections::BTreeSet<u32> =
            self.dirs.iter().flat_map(|d| d.values().copied()).collect();
        self.files = named
            .iter()
            .filter(|i| !self.edirs.contains(i))
            .map(|&i| (i, self.dfiles.get(&i).cloned().unwrap_or_default()))
            .collect();
        self.dfiles = self.files.clone();
        self.renames.clear();
    }
}

/// A directory as the model sees it: name -> (contents digest, link
/// count), `None` for a directory.
type Listing = BTreeMap<String, Option<((usize, u64), u32)>>;

/// A file's contents in a short form: length and a checksum.
fn digest(c: &[u8]) -> (usize, u64) {
    let sum = c.iter().enumerate().fold(0u64, |h, (i, &b)| {
        h.wrapping_mul(31).wrapping_add(u64::from(b) ^ i as u64)
    });
    (c.len(), sum)
}

/// The live tree as the model sees it: per directory, name -> (content,
/// link count) or a directory marker.
fn observe(ns: &Namespace, dirs: &[u64; 3]) -> Vec<Listing> {
    dirs.iter()
        .map(|&d| {
            ns.entries_after(d, None)
                .unwrap()
                .map(|(n, ino, _)| {
                    let n = n.to_string_lossy().into_owned();
                    let v = match ns.inode(ino).unwrap().kind {
                        Kind::Directory => None,
                        _ => Some((
                            digest(&ns.read(ino, 0, 1 << 20).unwrap()),
                            ns.attr(ino).unwrap().nlink,
                        )),
                    };
                    (n, v)
                })
                .collect()
        })
        .collect()
}

fn expect(m: &Model) -> Vec<Listing> {
    let mut links: BTreeMap<u32, u32> = BTreeMap::new();
    for d in &m.dirs {
        for &i in d.values() {
            *links.entry(i).or_default() += 1;
        }
    }
    let mut out: Vec<_> = m
        .dirs
        .iter()
        .map(|d| {
            d.iter()
                .map(|(n, i)| {
                    let v = m.files.get(i).map(|c| (digest(c), links[i]));
                    (n.clone(), v)
                })
                .collect::<BTreeMap<_, _>>()
        })
        .collect();
    // The fixed subdirectories are entries of the root too.
    for d in &DIRS[1..] {
        out[0].insert(d.to_string(), None);
    }
    out
}

fn run(ops: Vec<Op>) {
    let mut ns = tracked();
    let d0 = create(&mut ns, ROOT_INO, "d0", Kind::Directory);
    let d1 = create(&mut ns, ROOT_INO, "d1", Kind::Directory);
    ns.fsync(ROOT_INO).unwrap();
    let dirs = [ROOT_INO, d0, d1];
    let mut m = Model::default();
    // Model ids of live inodes.
    let mut ids: BTreeMap<u64, u32> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Create(d, n) => {
                let name = NAMES[n];
                if ns
                    .create_node(dirs[d], os(name), spec(Kind::RegularFile, 0o644))
                    .map(|e| {
                        ns.forget(e.attr.ino.0, 1);
                        e.attr.ino.0
                    })
                    .map(|ino| {
                        m.next += 1;
                        ids.insert(ino, m.next);
                        m.files.insert(m.next, Vec::new());
                        m.dirs[d].insert(name.into(), m.next);
                    })
                    .is_err()
                {
                    assert!(m.dirs[d].contains_key(name));
                }
            }
            Op::Write(d, n, b, l) => {
                if let Some(ino) = ino_of(&ns, dirs[d], NAMES[n]) {
                    let off = (l as u64) / 2;
                    ns.write(ino, off, &vec![b; l as usize]).unwrap();
                    let c = m.files.get_mut(&ids[&ino]).unwrap();
                    let end = off as usize + l as usize;
                    if c.len() < end {
                        c.resize(end, 0);
                    }
                    c[off as usize..end].fill(b);
                }
            }
            Op::Truncate(d, n, l) => {
                if let Some(ino) = ino_of(&ns, dirs[d], NAMES[n]) {
                    ns.setattr(
                        ino,
                        SetAttr {
                            size: Some(l.into()),
                            ..SetAttr::default()
                        },
                    )
                    .unwrap();
                    m.files.get_mut(&ids[&ino]).unwrap().resize(l as usize, 0);
                }
            }
            Op::Rename(a, x, b, y) | Op::Exchange(a, x, b, y) => {
                let exchange = matches!(op, Op::Exchange(..));
                let flags = if exchange { RENAME_EXCHANGE } else { 0 };
                let ok = ns
                    .rename(dirs[a], os(NAMES[x]), dirs[b], os(NAMES[y]), flags)
                    .is_ok();
                let (src, dst) = (
                    m.dirs[a].get(NAMES[x]).copied(),
                    m.dirs[b].get(NAMES[y]).copied(),
                );
                assert_eq!(ok, src.is_some() && (!exchange || dst.is_some()), "{op:?}");
                if !ok || (a, x) == (b, y) || src == dst {
                    continue;
                }
                let src = src.unwrap();
                if exchange {
                    let dst = dst.unwrap();
                    m.dirs[a].insert(NAMES[x].into(), dst);
                    m.dirs[b].insert(NAMES[y].into(), src);
                } else {
                    m.dirs[a].remove(NAMES[x]);
                    m.dirs[b].insert(NAMES[y].into(), src);
                }
                let left = m.dirs[a].get(NAMES[x]).copied();
                m.renames
                    .push([(a, NAMES[x].into(), left), (b, NAMES[y].into(), Some(src))]);
            }
            Op::Link(a, x, b, y) => {
                if let Some(ino) = ino_of(&ns, dirs[a], NAMES[x]) {
                    if ns.link(ino, dirs[b], os(NAMES[y])).is_ok() {
                        ns.forget(ino, 1);
                        m.dirs[b].insert(NAMES[y].into(), ids[&ino]);
                    } else {
                        assert!(m.dirs[b].contains_key(NAMES[y]));
                    }
                }
            }
            Op::Unlink(d, n) => {
                let ok = ns.unlink(dirs[d], os(NAMES[n])).is_ok();
                assert_eq!(ok, m.dirs[d].remove(NAMES[n]).is_some());
            }
            Op::Mkdir(d, k) => {
                let made = ns
                    .create_node(dirs[d], os(EDIRS[k]), spec(Kind::Directory, 0o755))
                    .map(|e| ns.forget(e.attr.ino.0, 1))
                    .is_ok();
                assert_eq!(made, !m.dirs[d].contains_key(EDIRS[k]), "{op:?}");
                if made {
                    m.next += 1;
                    m.edirs.insert(m.next);
                    m.dirs[d].insert(EDIRS[k].into(), m.next);
                }
            }
            Op::Rmdir(d, k) => {
                let ok = ns.rmdir(dirs[d], os(EDIRS[k])).is_ok();
                assert_eq!(ok, m.dirs[d].remove(EDIRS[k]).is_some(), "{op:?}");
            }
            Op::RenameDir(a, x, b, y) => {
                let ok = ns
                    .rename(dirs[a], os(EDIRS[x]), dirs[b], os(EDIRS[y]), 0)
                    .is_ok();
                let src = m.dirs[a].get(EDIRS[x]).copied();
                assert_eq!(ok, src.is_some(), "{op:?}");
                if !ok || (a, x) == (b, y) {
                    continue;
                }
                let src = src.unwrap();
                m.dirs[a].remove(EDIRS[x]);
                m.dirs[b].insert(EDIRS[y].into(), src);
                m.renames
                    .push([(a, EDIRS[x].into(), None), (b, EDIRS[y].into(), Some(src))]);
            }
            Op::Fsync(d, n) => {
                if let Some(ino) = ino_of(&ns, dirs[d], NAMES[n]) {
                    ns.fsync(ino).unwrap();
                    let id = ids[&ino];
                    m.dfiles.insert(id, m.files[&id].clone());
                }
            }
            Op::Fsyncdir(d) => {
                ns.fsync(dirs[d]).unwrap();
                m.commit(d);
            }
            Op::Crash => {
                crash(&mut ns);
                m.crash();
                ids.retain(|ino, _| ns.inode(*ino).is_ok());
                assert_eq!(observe(&ns, &dirs), expect(&m), "after a crash");
            }
        }
        // Names and contents of the live tree always agree too.
        let mut live = m.clone();
        live.files
            .retain(|i, _| live.dirs.iter().any(|d| d.values().any(|v| v == i)));
        assert_eq!(observe(&ns, &dirs), expect(&live), "{op:?}");
        checked(&ns);
    }
    crash(&mut ns);
    m.crash();
    assert_eq!(observe(&ns, &dirs), expect(&m), "final crash");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn crashes_match_a_model_that_copies_everything_at_each_sync(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        run(ops);
    }
}

// ---------------------------------------------------------------------------
// Property test with nested directories: directories with contents are
// made, moved anywhere (into each other too) and removed; the model copies
// whole directories at each sync point and keeps the removed-directory
// rule of `commit_dir`. It also checks what the docs promise: no directory
// ever has two durable names.
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum NOp {
    Create(u8, u8),
    Mkdir(u8, u8),
    Write(u8, u8, u16),
    Rename(u8, u8, u8, u8),
    Link(u8, u8, u8),
    Unlink(u8, u8),
    Rmdir(u8, u8),
    Fsync(u8),
    Fsyncdir(u8),
    Crash,
}

fn nop() -> impl Strategy<Value = NOp> {
    let b = any::<u8>();
    prop_oneof![
        3 => (b, b).prop_map(|(d, n)| NOp::Create(d, n)),
        3 => (b, b).prop_map(|(d, n)| NOp::Mkdir(d, n)),
        2 => (b, b, 1..6000u16).prop_map(|(f, x, l)| NOp::Write(f, x, l)),
        4 => (b, b, b, b).prop_map(|(a, c, e, g)| NOp::Rename(a, c, e, g)),
        1 => (b, b, b).prop_map(|(f, d, n)| NOp::Link(f, d, n)),
        2 => (b, b).prop_map(|(d, n)| NOp::Unlink(d, n)),
        2 => (b, b).prop_map(|(d, n)| NOp::Rmdir(d, n)),
        2 => b.prop_map(NOp::Fsync),
        3 => b.prop_map(NOp::Fsyncdir),
        1 => Just(NOp::Crash),
    ]
}

const NNAMES: [&str; 3] = ["a", "b", "c"];

/// The reference with nested directories: every directory by model id
/// (the root is 0), live and durable entries, file contents.
#[derive(Default)]
struct Nested {
    dirs: BTreeMap<u32, BTreeMap<String, u32>>,
    ddirs: BTreeMap<u32, BTreeMap<String, u32>>,
    files: BTreeMap<u32, Vec<u8>>,
    dfiles: BTreeMap<u32, Vec<u8>>,
    removed: BTreeMap<u32, Vec<u32>>,
    renames: Vec<[(u32, String, Option<u32>); 2]>,
    /// Inode numbers of model ids, and back.
    ino: BTreeMap<u32, u64>,
    id: BTreeMap<u64, u32>,
    next: u32,
}

impl Nested {
    fn add(&mut self, ino: u64) -> u32 {
        self.next += 1;
        self.ino.insert(self.next, ino);
        self.id.insert(ino, self.next);
        self.next
    }

    fn pick_dir(&self, i: u8) -> u32 {
        let v: Vec<u32> = self.dirs.keys().copied().collect();
        v[i as usize % v.len()]
    }

    fn pick_file(&self, i: u8) -> Option<u32> {
        let v: Vec<u32> = self.files.keys().copied().collect();
        (!v.is_empty()).then(|| v[i as usize % v.len()])
    }

    fn commit(&mut self, dir: u32) {
        let mut set = vec![dir];
        set.extend(self.removed.remove(&dir).unwrap_or_default());
        if let Some(k) = self
            .renames
            .iter()
            .rposition(|r| r.iter().any(|s| set.contains(&s.0)))
        {
            for r in self.renames.drain(..=k) {
                for (d, name, id) in r {
                    let e = self.ddirs.entry(d).or_default();
                    match id {
                        Some(i) => e.insert(name, i),
                        None => e.remove(&name),
                    };
                }
            }
        }
        for &x in &set[1..] {
            self.ddirs.insert(x, BTreeMap::new());
        }
        self.ddirs.insert(dir, self.dirs[&dir].clone());
    }

    fn crash(&mut self) {
        let mut dirs = BTreeMap::new();
        let mut files = BTreeMap::new();
        let mut stack = vec![0u32];
        dirs.insert(0, BTreeMap::new());
        while let Some(d) = stack.pop() {
            let entries = self.ddirs.get(&d).cloned().unwrap_or_default();
            for &c in entries.values() {
                if self.ddirs.contains_key(&c) || self.dirs.contains_key(&c) || self.is_dir(c) {
                    assert!(
                        !dirs.contains_key(&c),
                        "directory {c} has two durable names"
                    );
                    dirs.insert(c, BTreeMap::new());
                    stack.push(c);
                } else {
                    files.insert(c, self.dfiles.get(&c).cloned().unwrap_or_default());
                }
            }
            dirs.insert(d, entries);
        }
        self.dirs = dirs;
        self.ddirs = self.dirs.clone();
        self.files = files;
        self.dfiles = self.files.clone();
        self.removed.clear();
        self.renames.clear();
    }

    /// Whether model id `c` is a directory (one that existed at all).
    fn is_dir(&self, c: u32) -> bool {
        self.ddirs.contains_key(&c)
    }
}

type Tree = BTreeMap<String, Option<((usize, u64), u32)>>;

fn observe_tree(ns: &Namespace) -> Tree {
    let mut out = Tree::new();
    let mut stack = vec![(String::new(), ROOT_INO)];
    while let Some((path, ino)) = stack.pop() {
        for (n, c, _) in ns.entries_after(ino, None).unwrap() {
            let p = format!("{path}/{}", n.to_string_lossy());
            if ns.inode(c).unwrap().kind == Kind::Directory {
                out.insert(p.clone(), None);
                stack.push((p, c));
            } else {
                let d = digest(&ns.read(c, 0, 1 << 20).unwrap());
                out.insert(p, Some((d, ns.attr(c).unwrap().nlink)));
            }
        }
    }
    out
}

fn expect_tree(m: &Nested) -> Tree {
    let mut links: BTreeMap<u32, u32> = BTreeMap::new();
    for d in m.dirs.values() {
        for &i in d.values() {
            *links.entry(i).or_default() += 1;
        }
    }
    let mut out = Tree::new();
    let mut stack = vec![(String::new(), 0u32)];
    while let Some((path, d)) = stack.pop() {
        for (n, &c) in &m.dirs[&d] {
            let p = format!("{path}/{n}");
            if m.dirs.contains_key(&c) {
                out.insert(p.clone(), None);
                stack.push((p, c));
            } else {
                out.insert(p, Some((digest(&m.files[&c]), links[&c])));
            }
        }
    }
    out
}

fn run_nested(ops: Vec<NOp>) {
    let mut ns = tracked();
    let mut m = Nested::default();
    m.dirs.insert(0, BTreeMap::new());
    m.ddirs.insert(0, BTreeMap::new());
    m.ino.insert(0, ROOT_INO);
    m.id.insert(ROOT_INO, 0);
    let name = |i: u8| NNAMES[i as usize % NNAMES.len()];
    for op in ops {
        match op {
            NOp::Create(d, n) | NOp::Mkdir(d, n) => {
                let dir = m.pick_dir(d);
                let kind = if matches!(op, NOp::Mkdir(..)) {
                    Kind::Directory
                } else {
                    Kind::RegularFile
                };
                let r = ns.create_node(m.ino[&dir], os(name(n)), spec(kind, 0o755));
                if let Ok(e) = r {
                    ns.forget(e.attr.ino.0, 1);
                    let id = m.add(e.attr.ino.0);
                    if kind == Kind::Directory {
                        m.dirs.insert(id, BTreeMap::new());
                        m.ddirs.insert(id, BTreeMap::new());
                    } else {
                        m.files.insert(id, Vec::new());
                    }
                    m.dirs.get_mut(&dir).unwrap().insert(name(n).into(), id);
                }
            }
            NOp::Write(f, x, l) => {
                if let Some(id) = m.pick_file(f) {
                    let off = u64::from(x) * 7;
                    ns.write(m.ino[&id], off, &vec![x; l as usize]).unwrap();
                    let c = m.files.get_mut(&id).unwrap();
                    let end = off as usize + l as usize;
                    if c.len() < end {
                        c.resize(end, 0);
                    }
                    c[off as usize..end].fill(x);
                }
            }
            NOp::Rename(a, x, b, y) => {
                let (da, db) = (m.pick_dir(a), m.pick_dir(b));
                let (na, nb) = (name(x), name(y));
                if ns
                    .rename(m.ino[&da], os(na), m.ino[&db], os(nb), 0)
                    .is_err()
                {
                    continue;
                }
                let src = m.dirs[&da][na];
                let dst = m.dirs[&db].get(nb).copied();
                if dst == Some(src) {
                    continue;
                }
                if let Some(t) = dst
                    && m.dirs.contains_key(&t)
                {
                    // An empty directory replaced: removed from db.
                    m.dirs.remove(&t);
                    let mut r = m.removed.remove(&t).unwrap_or_default();
                    r.push(t);
                    m.removed.entry(db).or_default().extend(r);
                }
                m.dirs.get_mut(&da).unwrap().remove(na);
                m.dirs.get_mut(&db).unwrap().insert(nb.into(), src);
                m.renames
                    .push([(da, na.into(), None), (db, nb.into(), Some(src))]);
                let named: std::collections::BTreeSet<u32> =
                    m.dirs.values().flat_map(|e| e.values().copied()).collect();
                m.files.retain(|i, _| named.contains(i));
            }
            NOp::Link(f, d, n) => {
                if let Some(id) = m.pick_file(f) {
                    let dir = m.pick_dir(d);
                    if ns.link(m.ino[&id], m.ino[&dir], os(name(n))).is_ok() {
                        ns.forget(m.ino[&id], 1);
                        m.dirs.get_mut(&dir).unwrap().insert(name(n).into(), id);
                    }
                }
            }
            NOp::Unlink(d, n) => {
                let dir = m.pick_dir(d);
                if ns.unlink(m.ino[&dir], os(name(n))).is_ok() {
                    m.dirs.get_mut(&dir).unwrap().remove(name(n));
                    let named: std::collections::BTreeSet<u32> =
                        m.dirs.values().flat_map(|e| e.values().copied()).collect();
                    m.files.retain(|i, _| named.contains(i));
                }
            }
            NOp::Rmdir(d, n) => {
                let dir = m.pick_dir(d);
                if ns.rmdir(m.ino[&dir], os(name(n))).is_ok() {
                    let x = m.dirs.get_mut(&dir).unwrap().remove(name(n)).unwrap();
                    m.dirs.remove(&x);
                    let mut r = m.removed.remove(&x).unwrap_or_default();
                    r.push(x);
                    m.removed.entry(dir).or_default().extend(r);
                }
            }
            NOp::Fsync(f) => {
                if let Some(id) = m.pick_file(f) {
                    ns.fsync(m.ino[&id]).unwrap();
                    m.dfiles.insert(id, m.files[&id].clone());
                }
            }
            NOp::Fsyncdir(d) => {
                let dir = m.pick_dir(d);
                ns.fsync(m.ino[&dir]).unwrap();
                m.commit(dir);
            }
            NOp::Crash => {
                crash(&mut ns);
                m.crash();
                let live: Vec<u32> = m.dirs.keys().chain(m.files.keys()).copied().collect();
                m.ino.retain(|id, _| live.contains(id));
                m.id.retain(|_, id| live.contains(id));
                assert_eq!(observe_tree(&ns), expect_tree(&m), "after a crash");
                for (&id, &ino) in &m.ino {
                    assert!(ns.inode(ino).is_ok(), "model id {id}: inode {ino} gone");
                }
            }
        }
        assert_eq!(observe_tree(&ns), expect_tree(&m), "{op:?}");
        checked(&ns);
    }
    crash(&mut ns);
    m.crash();
    assert_eq!(observe_tree(&ns), expect_tree(&m), "final crash");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn crashes_with_nested_directories_match_the_model(
        ops in proptest::collection::vec(nop(), 1..80)
    ) {
        run_nested(ops);
    }
}
