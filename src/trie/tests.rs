//! Unit and property tests for the trie.
use super::*;

use std::collections::{BTreeSet, HashSet};

use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

fn leaves_bytes<V: Default>(t: &Trie<V>) -> Vec<Vec<u8>> {
    t.leaves().into_iter().map(OsString::into_vec).collect()
}

fn leaves_str<V: Default>(t: &Trie<V>) -> Vec<String> {
    t.leaves()
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

fn child_names<V: Default>(t: &Trie<V>, id: NodeId) -> Vec<Vec<u8>> {
    t.children(id).map(|(n, _)| n.as_bytes().to_vec()).collect()
}

/// A trie whose every new directory gets a fresh, increasing number, so that
/// values identify nodes independently of `NodeId`s.
fn counting_trie() -> (Trie<u32>, impl FnMut() -> u32) {
    let mut next = 0u32;
    (Trie::with_root(u32::MAX), move || {
        next += 1;
        next
    })
}

// ---------------------------------------------------------------------------
// Basics
// ---------------------------------------------------------------------------

#[test]
fn original_example() {
    let mut t: Trie = Trie::new();
    for p in ["/", "/etc", "/tmp", "/tmp/whatever", "/var/www/mysite"] {
        t.add(p).unwrap();
    }
    assert!(t.exists("/"));
    assert!(t.exists("/etc"));
    assert!(t.exists("/tmp"));
    assert!(t.exists("/tmp/whatever"));
    assert!(t.exists("/var"));
    assert!(t.exists("/var/www"));
    assert!(t.exists("/var/www/mysite"));
    assert!(!t.exists("/var/www/other"));
    assert!(!t.exists("/usr"));
    assert_eq!(leaves_str(&t), ["/etc", "/tmp/whatever", "/var/www/mysite"]);
    // root + etc + tmp + whatever + var + www + mysite
    assert_eq!(t.len(), 7);
}

#[test]
fn empty_trie() {
    let t: Trie = Trie::new();
    assert_eq!(leaves_str(&t), ["/"]);
    assert_eq!(t.len(), 1);
    assert!(t.is_empty());
    assert!(t.exists("/"));
    assert!(t.exists(""));
    assert_eq!(t.lookup("/"), Some(t.root()));
    assert_eq!(t.parent(t.root()), None);
    assert!(t.is_dir(t.root()));
    assert_eq!(t.child_count(t.root()), 0);
    assert_eq!(t.children(t.root()).count(), 0);
    assert_eq!(t.path_of(t.root()), OsString::from("/"));
    assert_eq!(t.leaves_under(t.root()), [OsString::from("/")]);

    let d: Trie<u8> = Trie::default();
    assert!(d.is_empty());
    assert_eq!(d.value(d.root()), Some(&0));
}

#[test]
fn add_is_idempotent_and_creates_intermediates() {
    let mut t: Trie = Trie::new();
    let c = t.add("/a/b/c").unwrap();
    assert_eq!(t.len(), 4);
    assert!(t.exists("/a"));
    assert!(t.exists("/a/b"));
    let a = t.lookup("/a").unwrap();
    let b = t.lookup("/a/b").unwrap();
    assert!(t.is_dir(a) && t.is_dir(b) && t.is_dir(c));
    assert_eq!(t.parent(c), Some(b));
    assert_eq!(t.parent(b), Some(a));
    assert_eq!(t.parent(a), Some(t.root()));

    // Re-adding anything already there changes nothing and returns the same ids.
    assert_eq!(t.add("/a/b/c").unwrap(), c);
    assert_eq!(t.add("/a/b").unwrap(), b);
    assert_eq!(t.add("/a").unwrap(), a);
    assert_eq!(t.add("/").unwrap(), t.root());
    assert_eq!(t.len(), 4);
    assert_eq!(leaves_str(&t), ["/a/b/c"]);

    // Extending an existing path only creates the missing part.
    let d = t.add("/a/b/c/d").unwrap();
    assert_eq!(t.len(), 5);
    assert_eq!(t.parent(d), Some(c));
    assert_eq!(leaves_str(&t), ["/a/b/c/d"]);
}

#[test]
fn add_with_values() {
    let (mut t, mut make) = counting_trie();
    let c = t.add_with("/a/b/c", &mut make).unwrap();
    assert_eq!(t.value(t.root()), Some(&u32::MAX));
    assert_eq!(t.value(t.lookup("/a").unwrap()), Some(&1));
    assert_eq!(t.value(t.lookup("/a/b").unwrap()), Some(&2));
    assert_eq!(t.value(c), Some(&3));
    // Existing directories are not re-created: make() is not called.
    t.add_with("/a/b/c", &mut make).unwrap();
    let e = t.add_with("/a/e", &mut make).unwrap();
    assert_eq!(t.value(e), Some(&4));
    *t.value_mut(e).unwrap() = 40;
    assert_eq!(t.value(t.lookup("/a/e").unwrap()), Some(&40));
}

#[test]
fn relative_paths_double_slashes_and_dots() {
    let mut t: Trie = Trie::new();
    let c = t.add("a//b/./c").unwrap();
    assert_eq!(t.len(), 4);
    for p in [
        "/a/b/c",
        "a/b/c",
        "//a/./b//c/",
        "./a/b/c/.",
        "a/b/c//",
        "/./a/././b/c",
    ] {
        assert_eq!(t.lookup(p), Some(c), "{p}");
        assert!(t.exists(p), "{p}");
    }
    for p in ["", "/", ".", "./", "//", "/./."] {
        assert_eq!(t.lookup(p), Some(t.root()), "{p:?}");
        assert_eq!(t.add(p).unwrap(), t.root(), "{p:?}");
    }
    assert_eq!(t.len(), 4);
    assert_eq!(leaves_str(&t), ["/a/b/c"]);

    // Relative paths are root-relative for every path operation.
    t.rename("a/b", "x").unwrap();
    assert!(t.exists("/x/c"));
    assert_eq!(t.remove("x//c/.").unwrap().len(), 1);
    assert_eq!(leaves_str(&t), ["/a", "/x"]);

    assert_eq!(
        Trie::<()>::components(os(b"//a/./b//c/")).unwrap(),
        [os(b"a"), os(b"b"), os(b"c")]
    );
    assert!(Trie::<()>::components(os(b"")).unwrap().is_empty());
    assert!(Trie::<()>::components(os(b"/./")).unwrap().is_empty());
}

#[test]
fn dotdot_is_refused() {
    let mut t: Trie = Trie::new();
    t.add("/a").unwrap();
    assert_eq!(t.add("/a/../b"), Err(TrieError::InvalidName));
    assert_eq!(t.add(".."), Err(TrieError::InvalidName));
    assert_eq!(t.add("/x/y/.."), Err(TrieError::InvalidName));
    // Components are validated before anything is created.
    assert_eq!(t.len(), 2);
    assert!(!t.exists("/x"));
    assert!(!t.exists("/a/.."));
    assert_eq!(t.lookup(".."), None);
    assert_eq!(t.remove("/a/.."), Err(TrieError::InvalidName));
    assert_eq!(t.rename("/a/..", "/b"), Err(TrieError::InvalidName));
    assert_eq!(t.rename("/a", "/.."), Err(TrieError::InvalidName));
    assert_eq!(
        Trie::<()>::components(os(b"/a/../b")),
        Err(TrieError::InvalidName)
    );
    let root = t.root();
    let a = t.lookup("/a").unwrap();
    for bad in [&b".."[..], b".", b"", b"x/y", b"/"] {
        assert_eq!(
            t.insert(root, os(bad), (), Shape::Dir),
            Err(TrieError::InvalidName),
            "{bad:?}"
        );
        assert_eq!(
            t.move_entry(root, os(b"a"), root, os(bad)),
            Err(TrieError::InvalidName),
            "{bad:?}"
        );
        assert_eq!(Trie::<()>::check_name(bad), Err(TrieError::InvalidName));
    }
    assert_eq!(t.lookup("/a"), Some(a));
    assert_eq!(t.len(), 2);
    // Names that merely contain dots are fine.
    for ok in ["...", ".a", "a..", "..a", ". ."] {
        t.add(format!("/{ok}")).unwrap();
        assert!(t.exists(format!("/{ok}")), "{ok}");
    }
}

#[test]
fn name_length_limit() {
    let mut t: Trie = Trie::new();
    let n255 = "x".repeat(255);
    let n256 = "y".repeat(256);
    assert_eq!(Trie::<()>::check_name(n255.as_bytes()), Ok(()));
    assert_eq!(
        Trie::<()>::check_name(n256.as_bytes()),
        Err(TrieError::NameTooLong)
    );

    let id = t.add(format!("/{n255}/{n255}")).unwrap();
    assert!(t.exists(format!("/{n255}/{n255}")));
    assert_eq!(t.path_of(id), OsString::from(format!("/{n255}/{n255}")));
    assert_eq!(leaves_str(&t), [format!("/{n255}/{n255}")]);

    assert_eq!(t.add(format!("/{n256}")), Err(TrieError::NameTooLong));
    // A too-long component deep in the path creates nothing.
    assert_eq!(t.add(format!("/new/{n256}")), Err(TrieError::NameTooLong));
    assert!(!t.exists("/new"));
    assert!(!t.exists(format!("/{n256}")));
    assert_eq!(t.lookup(format!("/{n256}")), None);

    let root = t.root();
    assert_eq!(
        t.insert(root, OsStr::new(&n256), (), Shape::Leaf),
        Err(TrieError::NameTooLong)
    );
    t.insert(root, OsStr::new(&"z".repeat(255)), (), Shape::Leaf)
        .unwrap();
    assert_eq!(
        t.rename(format!("/{n255}"), format!("/{n256}")),
        Err(TrieError::NameTooLong)
    );
    assert_eq!(
        t.move_entry(root, OsStr::new(&n255), root, OsStr::new(&n256)),
        Err(TrieError::NameTooLong)
    );
    assert!(t.exists(format!("/{n255}/{n255}")));
    assert_eq!(t.len(), 4);
    // Multi-byte: 255 bytes (85 three-byte chars) ok, 258 bytes too long.
    assert_eq!(t.add(format!("/{}", "€".repeat(85))).map(|_| ()), Ok(()));
    assert_eq!(
        t.add(format!("/{}", "€".repeat(86))),
        Err(TrieError::NameTooLong)
    );
}

#[test]
fn non_utf8_names_round_trip() {
    let mut t: Trie = Trie::new();
    let high: Vec<u8> = (0x80..=0xffu8).collect(); // 128 bytes, invalid UTF-8
    let mut paths: Vec<Vec<u8>> = vec![
        [b"/".as_slice(), &high].concat(),
        b"/\xff\xfe/\x80".to_vec(),
        b"/caf\xe9/men\xfc".to_vec(),
        b"/ok/\xc3".to_vec(),
    ];
    for p in &paths {
        t.add(os(p)).unwrap();
    }
    for p in &paths {
        assert!(t.exists(os(p)), "{p:?}");
        let id = t.lookup(os(p)).unwrap();
        assert_eq!(t.path_of(id).as_bytes(), &p[..]);
    }
    paths.sort();
    assert_eq!(leaves_bytes(&t), paths);
    let root = t.root();
    let xff = t.child(root, os(b"\xff\xfe")).unwrap();
    assert_eq!(child_names(&t, xff), [b"\x80".to_vec()]);
    assert_eq!(
        t.child(root, os(&high)),
        t.lookup(os(&[b"/".as_slice(), &high].concat()))
    );
    // A lossy-converted name is a different name.
    assert!(!t.exists("/caf\u{fffd}"));
    // Every single non-ASCII byte (and every other allowed byte) is a valid name.
    for b in 1..=255u8 {
        if b == b'/' || b == b'.' {
            continue;
        }
        t.insert(root, os(&[b, b'.']), (), Shape::Leaf).unwrap();
        assert!(t.exists(os(&[b'/', b, b'.'])));
    }
}

#[test]
fn nul_is_refused() {
    let mut t: Trie = Trie::new();
    assert_eq!(t.add(os(b"/a\0b")), Err(TrieError::InvalidName));
    assert_eq!(t.add(os(b"/ok/\0")), Err(TrieError::InvalidName));
    assert_eq!(t.len(), 1);
    assert!(!t.exists(os(b"/a\0b")));
    let root = t.root();
    assert_eq!(
        t.insert(root, os(b"\0"), (), Shape::Leaf),
        Err(TrieError::InvalidName)
    );
    assert_eq!(Trie::<()>::check_name(b"x\0"), Err(TrieError::InvalidName));
    t.add("/a").unwrap();
    assert_eq!(t.rename("/a", os(b"/a\0")), Err(TrieError::InvalidName));
    assert!(t.exists("/a"));
}

#[test]
fn add_through_a_leaf_is_not_a_directory() {
    let mut t: Trie = Trie::new();
    let root = t.root();
    t.add("/d").unwrap();
    let d = t.lookup("/d").unwrap();
    let f = t.insert(d, os(b"f"), (), Shape::Leaf).unwrap();
    assert!(!t.is_dir(f));
    assert_eq!(t.len(), 3);
    assert_eq!(t.add("/d/f/x"), Err(TrieError::NotADirectory));
    assert_eq!(t.add("/d/f/x/y/z"), Err(TrieError::NotADirectory));
    assert_eq!(t.add("/d/f"), Err(TrieError::NotADirectory));
    assert_eq!(t.len(), 3);
    assert!(!t.exists("/d/f/x"));
    assert_eq!(t.lookup("/d/f"), Some(f));
    assert_eq!(leaves_str(&t), ["/d/f"]);
    assert_eq!(
        t.insert(f, os(b"x"), (), Shape::Dir),
        Err(TrieError::NotADirectory)
    );
    assert_eq!(t.child(f, os(b"x")), None);
    assert_eq!(t.child_count(f), 0);
    assert_eq!(t.children(f).count(), 0);
    assert_eq!(t.rename("/d", "/d/f/x"), Err(TrieError::NotADirectory));
    assert_eq!(
        t.move_entry(root, os(b"d"), f, os(b"x")),
        Err(TrieError::NotADirectory)
    );
    assert_eq!(t.unlink(f, os(b"x")), Err(TrieError::NotADirectory));
    assert_eq!(t.leaves_under(f), [OsString::from("/d/f")]);
}

#[test]
fn insert_duplicate_is_exists() {
    let mut t: Trie<u8> = Trie::new();
    let root = t.root();
    let a = t.insert(root, os(b"a"), 1, Shape::Dir).unwrap();
    assert_eq!(
        t.insert(root, os(b"a"), 2, Shape::Dir),
        Err(TrieError::Exists)
    );
    assert_eq!(
        t.insert(root, os(b"a"), 3, Shape::Leaf),
        Err(TrieError::Exists)
    );
    assert_eq!(t.len(), 2);
    assert_eq!(t.value(a), Some(&1));
    let f = t.insert(a, os(b"f"), 4, Shape::Leaf).unwrap();
    assert_eq!(t.insert(a, os(b"f"), 5, Shape::Dir), Err(TrieError::Exists));
    assert_eq!(t.value(f), Some(&4));
    assert_eq!(t.len(), 3);
    // Same name in another directory is fine.
    t.insert(root, os(b"f"), 6, Shape::Leaf).unwrap();
    assert_eq!(t.len(), 4);
    // Refused inserts allocate no slot.
    assert_eq!(t.nodes.len(), 4);
}

#[test]
fn insert_into_missing_parent_is_not_found() {
    let mut t: Trie = Trie::new();
    let a = t.add("/a").unwrap();
    t.remove("/a").unwrap();
    assert_eq!(
        t.insert(a, os(b"x"), (), Shape::Dir),
        Err(TrieError::NotFound)
    );
    assert_eq!(t.unlink(a, os(b"x")), Err(TrieError::NotFound));
    assert_eq!(
        t.insert(NodeId(12345), os(b"x"), (), Shape::Dir),
        Err(TrieError::NotFound)
    );
    assert_eq!(t.len(), 1);
    assert_eq!(t.value(a), None);
    assert_eq!(t.parent(a), None);
    assert!(!t.is_dir(a));
}

#[test]
fn unlink() {
    let mut t: Trie<u8> = Trie::new();
    let root = t.root();
    let d = t.insert(root, os(b"d"), 1, Shape::Dir).unwrap();
    let e = t.insert(d, os(b"e"), 2, Shape::Dir).unwrap();
    let f = t.insert(e, os(b"f"), 3, Shape::Leaf).unwrap();
    assert_eq!(t.unlink(root, os(b"d")), Err(TrieError::NotEmpty));
    assert_eq!(t.unlink(d, os(b"e")), Err(TrieError::NotEmpty));
    assert_eq!(t.unlink(d, os(b"nope")), Err(TrieError::NotFound));
    assert_eq!(t.len(), 4);
    assert_eq!(t.unlink(e, os(b"f")), Ok(3));
    assert_eq!(t.value(f), None);
    assert_eq!(t.unlink(e, os(b"f")), Err(TrieError::NotFound));
    assert_eq!(t.len(), 3);
    assert_eq!(leaves_str(&t), ["/d/e"]);
    assert_eq!(t.unlink(d, os(b"e")), Ok(2));
    assert_eq!(t.unlink(root, os(b"d")), Ok(1));
    assert!(t.is_empty());
    assert_eq!(leaves_str(&t), ["/"]);
}

#[test]
fn move_entry_rules() {
    let mut t: Trie = Trie::new();
    let root = t.root();
    let a = t.add("/a").unwrap();
    let b = t.add("/a/b").unwrap();
    let c = t.add("/a/b/c").unwrap();
    let x = t.add("/x").unwrap();
    let y = t.add("/x/y").unwrap();
    let before = leaves_str(&t);

    // Into its own subtree, at any depth, or into itself.
    assert_eq!(
        t.move_entry(root, os(b"a"), b, os(b"n")),
        Err(TrieError::InvalidMove)
    );
    assert_eq!(
        t.move_entry(root, os(b"a"), c, os(b"n")),
        Err(TrieError::InvalidMove)
    );
    assert_eq!(
        t.move_entry(root, os(b"a"), a, os(b"n")),
        Err(TrieError::InvalidMove)
    );
    assert_eq!(
        t.move_entry(a, os(b"b"), c, os(b"n")),
        Err(TrieError::InvalidMove)
    );
    assert_eq!(t.rename("/a", "/a/b/c/n"), Err(TrieError::InvalidMove));
    assert_eq!(t.rename("/a", "/a/n"), Err(TrieError::InvalidMove));
    // The root cannot be moved or be a target.
    assert_eq!(t.rename("/", "/z"), Err(TrieError::Root));
    assert_eq!(t.rename("/a", "/"), Err(TrieError::Root));
    assert_eq!(leaves_str(&t), before);

    // Onto itself: Ok no-op.
    assert_eq!(t.move_entry(a, os(b"b"), a, os(b"b")), Ok(b));
    assert_eq!(t.rename("/a/b", "/a/b"), Ok(b));
    assert_eq!(t.rename("/a/b", "a//b/."), Ok(b));
    assert_eq!(t.parent(b), Some(a));
    assert_eq!(leaves_str(&t), before);
    assert_eq!(t.len(), 6);

    // Onto an existing entry: Exists, nothing changes.
    assert_eq!(
        t.move_entry(root, os(b"x"), root, os(b"a")),
        Err(TrieError::Exists)
    );
    assert_eq!(
        t.move_entry(x, os(b"y"), a, os(b"b")),
        Err(TrieError::Exists)
    );
    assert_eq!(t.rename("/x/y", "/a/b"), Err(TrieError::Exists));
    assert_eq!(t.rename("/a/b/c", "/x"), Err(TrieError::Exists));
    assert_eq!(leaves_str(&t), before);

    // Missing source or parent.
    assert_eq!(
        t.move_entry(root, os(b"nope"), root, os(b"z")),
        Err(TrieError::NotFound)
    );
    assert_eq!(t.rename("/nope", "/z"), Err(TrieError::NotFound));
    assert_eq!(t.rename("/a", "/nope/z"), Err(TrieError::NotFound));
    assert_eq!(t.rename("/nope/a", "/z"), Err(TrieError::NotFound));

    // A legal move: subtree c moves under y, its parent link is updated.
    assert_eq!(t.move_entry(b, os(b"c"), y, os(b"c2")), Ok(c));
    assert_eq!(t.parent(c), Some(y));
    assert_eq!(t.lookup("/x/y/c2"), Some(c));
    assert!(!t.exists("/a/b/c"));
    assert_eq!(leaves_str(&t), ["/a/b", "/x/y/c2"]);
    // Moving a descendant up to an ancestor is fine.
    assert_eq!(t.move_entry(y, os(b"c2"), root, os(b"c")), Ok(c));
    assert_eq!(t.parent(c), Some(root));
    assert_eq!(t.path_of(c), OsString::from("/c"));
    // A leaf can be moved too.
    let f = t.insert(c, os(b"f"), (), Shape::Leaf).unwrap();
    assert_eq!(t.move_entry(c, os(b"f"), a, os(b"g")), Ok(f));
    assert_eq!(t.path_of(f), OsString::from("/a/g"));
    assert_eq!(t.len(), 7);
}

#[test]
fn rename_relinks_the_subtree() {
    let (mut t, mut make) = counting_trie();
    // A subtree of 1 + 10 + 100 nodes below /a/b.
    for i in 0..10 {
        for j in 0..10 {
            t.add_with(format!("/a/b/d{i}/e{j}"), &mut make).unwrap();
        }
    }
    t.add_with("/x", &mut make).unwrap();
    let b = t.lookup("/a/b").unwrap();
    let a = t.lookup("/a").unwrap();
    let x = t.lookup("/x").unwrap();
    let under: Vec<(Vec<u8>, NodeId, u32)> = t
        .leaves_under(b)
        .into_iter()
        .chain((0..10).map(|i| OsString::from(format!("/a/b/d{i}"))))
        .map(|p| {
            let id = t.lookup(&p).unwrap();
            let suffix = p.as_bytes()["/a/b".len()..].to_vec();
            (suffix, id, *t.value(id).unwrap())
        })
        .collect();
    assert_eq!(under.len(), 110);
    let (len, slots, free) = (t.len(), t.nodes.len(), t.free.clone());
    let b_children: Vec<_> = t.children(b).map(|(_, id)| id).collect();

    assert_eq!(t.rename("/a/b", "/x/y"), Ok(b));

    // Same node count, no new slots, nothing freed: nothing was copied.
    assert_eq!(t.len(), len);
    assert_eq!(t.nodes.len(), slots);
    assert_eq!(t.free, free);
    // The renamed node and every descendant keep their NodeId and value.
    assert_eq!(t.lookup("/x/y"), Some(b));
    assert_eq!(t.parent(b), Some(x));
    assert_eq!(
        t.children(b).map(|(_, id)| id).collect::<Vec<_>>(),
        b_children
    );
    for (suffix, id, v) in &under {
        let new = [b"/x/y".as_slice(), suffix].concat();
        assert_eq!(t.lookup(os(&new)), Some(*id));
        assert_eq!(t.value(*id), Some(v));
        assert_eq!(t.path_of(*id).as_bytes(), &new[..]);
        assert!(t.is_ancestor(b, *id));
        assert!(t.is_ancestor(x, *id));
        assert!(!t.is_ancestor(a, *id));
        let old = [b"/a/b".as_slice(), suffix].concat();
        assert!(!t.exists(os(&old)));
    }
    assert!(!t.exists("/a/b"));
    assert!(t.exists("/a"));
    assert_eq!(t.child_count(a), 0);
    let leaves = leaves_str(&t);
    assert_eq!(leaves.len(), 101);
    assert_eq!(leaves[0], "/a");
    assert!(leaves[1..].iter().all(|l| l.starts_with("/x/y/d")));

    // And back, through a name change at the same level.
    assert_eq!(t.rename("/x/y", "/a/b2"), Ok(b));
    assert_eq!(
        t.lookup("/a/b2/d3/e7"),
        under.iter().find(|u| u.0 == b"/d3/e7").map(|u| u.1)
    );
    assert_eq!(t.len(), len);
}

#[test]
fn exchange_swaps_subtrees_and_parents() {
    let (mut t, mut make) = counting_trie();
    let root = t.root();
    t.add_with("/a/x/p/q", &mut make).unwrap();
    t.add_with("/b/y/z", &mut make).unwrap();
    let a = t.lookup("/a").unwrap();
    let b = t.lookup("/b").unwrap();
    let x = t.lookup("/a/x").unwrap();
    let q = t.lookup("/a/x/p/q").unwrap();
    let y = t.lookup("/b/y").unwrap();
    let z = t.lookup("/b/y/z").unwrap();
    let leaf = t.insert(a, os(b"leaf"), 99, Shape::Leaf).unwrap();
    let len = t.len();

    t.exchange(a, os(b"x"), b, os(b"y")).unwrap();
    assert_eq!(t.lookup("/a/x"), Some(y));
    assert_eq!(t.lookup("/b/y"), Some(x));
    assert_eq!(t.lookup("/a/x/z"), Some(z));
    assert_eq!(t.lookup("/b/y/p/q"), Some(q));
    assert_eq!(t.parent(x), Some(b));
    assert_eq!(t.parent(y), Some(a));
    assert_eq!(t.path_of(q), OsString::from("/b/y/p/q"));
    assert_eq!(t.path_of(z), OsString::from("/a/x/z"));
    assert_eq!(t.len(), len);
    assert_eq!(leaves_str(&t), ["/a/leaf", "/a/x/z", "/b/y/p/q"]);

    // Siblings, a directory with a leaf.
    t.exchange(a, os(b"x"), a, os(b"leaf")).unwrap();
    assert_eq!(t.lookup("/a/x"), Some(leaf));
    assert_eq!(t.lookup("/a/leaf/z"), Some(z));
    assert_eq!(t.parent(leaf), Some(a));
    assert_eq!(t.parent(y), Some(a));
    assert_eq!(leaves_str(&t), ["/a/leaf/z", "/a/x", "/b/y/p/q"]);

    // Top-level swap: whole trees trade places.
    t.exchange(root, os(b"a"), root, os(b"b")).unwrap();
    assert_eq!(t.lookup("/b"), Some(a));
    assert_eq!(t.lookup("/a"), Some(b));
    assert_eq!(leaves_str(&t), ["/a/y/p/q", "/b/leaf/z", "/b/x"]);
    assert_eq!(t.parent(a), Some(root));
    assert_eq!(t.parent(b), Some(root));

    // With itself: Ok, nothing changes.
    t.exchange(root, os(b"a"), root, os(b"a")).unwrap();
    assert_eq!(t.lookup("/a"), Some(b));

    // An entry with its own descendant: refused in both orders.
    let before = leaves_str(&t);
    assert_eq!(
        t.exchange(root, os(b"a"), x, os(b"p")),
        Err(TrieError::InvalidMove)
    );
    assert_eq!(
        t.exchange(x, os(b"p"), root, os(b"a")),
        Err(TrieError::InvalidMove)
    );
    let p = t.lookup("/a/y/p").unwrap();
    assert_eq!(
        t.exchange(root, os(b"a"), p, os(b"q")),
        Err(TrieError::InvalidMove)
    );
    assert_eq!(
        t.exchange(x, os(b"p"), b, os(b"y")),
        Err(TrieError::InvalidMove)
    );
    // Missing entries.
    assert_eq!(
        t.exchange(root, os(b"a"), root, os(b"nope")),
        Err(TrieError::NotFound)
    );
    assert_eq!(
        t.exchange(root, os(b"nope"), root, os(b"a")),
        Err(TrieError::NotFound)
    );
    assert_eq!(leaves_str(&t), before);
    assert_eq!(t.len(), len);
}

#[test]
fn children_are_ordered_bytewise() {
    let mut t: Trie = Trie::new();
    let root = t.root();
    let names: [&[u8]; 12] = [
        b"b", b"a", b"B", b"\xff", b"\x80", b"aa", b"a\x01", b"Z", b"0", b"a ", b"\x7f", b"ab",
    ];
    for n in names {
        t.insert(root, os(n), (), Shape::Leaf).unwrap();
    }
    let mut sorted: Vec<Vec<u8>> = names.iter().map(|n| n.to_vec()).collect();
    sorted.sort();
    assert_eq!(child_names(&t, root), sorted);
    assert_eq!(t.child_count(root), names.len());
    for (n, id) in t.children(root) {
        assert_eq!(t.child(root, n), Some(id));
        assert_eq!(t.parent(id), Some(root));
    }
    // leaves() is sorted bytewise on full paths as well.
    let leaves = leaves_bytes(&t);
    let mut sorted_leaves = leaves.clone();
    sorted_leaves.sort();
    assert_eq!(leaves, sorted_leaves);
}

#[test]
fn children_after_resumes_strictly_after() {
    let mut t: Trie = Trie::new();
    let root = t.root();
    let d = t.add("/d").unwrap();
    for n in ["a", "b", "c", "d", "e"] {
        t.insert(d, OsStr::new(n), (), Shape::Leaf).unwrap();
    }
    let after = |t: &Trie, k: Option<&[u8]>| -> Vec<Vec<u8>> {
        t.children_after(d, k)
            .map(|(n, _)| n.as_bytes().to_vec())
            .collect()
    };
    assert_eq!(after(&t, None), [b"a", b"b", b"c", b"d", b"e"]);
    assert_eq!(after(&t, Some(b"c")), [b"d", b"e"]);
    assert_eq!(after(&t, Some(b"")), [b"a", b"b", b"c", b"d", b"e"]);
    assert_eq!(after(&t, Some(b"bb")), [b"c", b"d", b"e"]);
    assert_eq!(after(&t, Some(b"e")), Vec::<Vec<u8>>::new());
    assert_eq!(after(&t, Some(b"\xff")), Vec::<Vec<u8>>::new());

    // The cursor name is removed between pages: resume still works.
    t.unlink(d, os(b"c")).unwrap();
    assert_eq!(after(&t, Some(b"c")), [b"d", b"e"]);
    t.unlink(d, os(b"d")).unwrap();
    assert_eq!(after(&t, Some(b"c")), [b"e"]);
    // Entries added behind the cursor are not revisited; ones ahead are seen.
    t.insert(d, os(b"b0"), (), Shape::Leaf).unwrap();
    t.insert(d, os(b"c0"), (), Shape::Leaf).unwrap();
    assert_eq!(after(&t, Some(b"c")), [b"c0".as_slice(), b"e"]);

    // Leaves and missing nodes have no children.
    let f = t.lookup("/d/a").unwrap();
    assert_eq!(t.children_after(f, None).count(), 0);
    assert_eq!(t.children_after(NodeId(9999), Some(b"a")).count(), 0);
    assert_eq!(t.children_after(root, Some(b"d")).count(), 0);
    assert_eq!(t.children_after(root, Some(b"c")).count(), 1);
}

#[test]
fn remove_returns_values_children_first_and_frees_nodes() {
    let (mut t, mut make) = counting_trie();
    t.add_with("/keep", &mut make).unwrap();
    let base = t.len();
    for p in ["/a/b/c", "/a/b/d/e", "/a/f", "/a/g/h/i/j"] {
        t.add_with(p, &mut make).unwrap();
    }
    let g = t.lookup("/a/g").unwrap();
    let leaf = t.insert(g, os(b"file"), 1000, Shape::Leaf).unwrap();
    assert_eq!(t.len(), base + 11);
    // value -> parent value, for every node below /a (and /a itself).
    let a = t.lookup("/a").unwrap();
    let mut parent_of = std::collections::HashMap::new();
    let mut stack = vec![a];
    while let Some(n) = stack.pop() {
        for (_, c) in t.children(n) {
            parent_of.insert(*t.value(c).unwrap(), *t.value(n).unwrap());
            stack.push(c);
        }
    }
    assert_eq!(parent_of.len(), 10);

    let a_val = *t.value(a).unwrap();
    let vals = t.remove("/a").unwrap();
    assert_eq!(vals.len(), 11);
    assert_eq!(*vals.last().unwrap(), a_val, "the removed root comes last");
    let pos: std::collections::HashMap<u32, usize> =
        vals.iter().enumerate().map(|(i, v)| (*v, i)).collect();
    assert_eq!(pos.len(), 11, "values are distinct");
    for (child, parent) in &parent_of {
        assert!(
            pos[child] < pos[parent],
            "{child} after its parent {parent}"
        );
    }
    assert!(vals.contains(&1000));
    assert_eq!(t.len(), base);
    assert_eq!(t.free.len(), 11);
    assert_eq!(t.value(leaf), None);
    assert_eq!(t.value(a), None);
    assert!(!t.exists("/a"));
    assert!(!t.exists("/a/b/c"));
    assert_eq!(leaves_str(&t), ["/keep"]);

    // A single leaf or empty directory gives exactly one value.
    let k = t.lookup("/keep").unwrap();
    let v = *t.value(k).unwrap();
    assert_eq!(t.remove("keep/"), Ok(vec![v]));
    assert!(t.is_empty());
    assert_eq!(leaves_str(&t), ["/"]);

    // Errors.
    assert_eq!(t.remove("/"), Err(TrieError::Root));
    assert_eq!(t.remove(""), Err(TrieError::Root));
    assert_eq!(t.remove("/nope"), Err(TrieError::NotFound));
    assert_eq!(t.remove("/nope/deeper"), Err(TrieError::NotFound));
    assert!(t.is_empty());
}

#[test]
fn remove_below_a_leaf_fails() {
    let mut t: Trie = Trie::new();
    let root = t.root();
    t.insert(root, os(b"f"), (), Shape::Leaf).unwrap();
    assert_eq!(t.remove("/f/x"), Err(TrieError::NotADirectory));
    // Deeper below the leaf the walk reports NotFound (add/rename report
    // NotADirectory here); only require an error.
    assert!(t.remove("/f/x/y").is_err());
    assert_eq!(t.len(), 2);
    assert_eq!(t.remove("/f"), Ok(vec![()]));
}

#[test]
fn node_slots_are_reused_after_removal() {
    let (mut t, mut make) = counting_trie();
    t.add_with("/a/b/c", &mut make).unwrap();
    let old: HashSet<NodeId> = ["/a", "/a/b", "/a/b/c"]
        .iter()
        .map(|p| t.lookup(p).unwrap())
        .collect();
    let slots = t.nodes.len();
    assert_eq!(t.remove("/a").unwrap().len(), 3);
    assert_eq!(t.len(), 1);
    assert_eq!(t.nodes.len(), slots);

    let z = t.add_with("/x/y/z", &mut make).unwrap();
    assert_eq!(t.nodes.len(), slots, "freed slots were reused");
    assert!(t.free.is_empty());
    let new: HashSet<NodeId> = ["/x", "/x/y", "/x/y/z"]
        .iter()
        .map(|p| t.lookup(p).unwrap())
        .collect();
    assert_eq!(new, old);
    // The reused slots hold the new nodes and link correctly.
    assert_eq!(t.value(z), Some(&6));
    assert_eq!(t.path_of(z), OsString::from("/x/y/z"));
    assert_eq!(
        t.parent(t.parent(t.parent(z).unwrap()).unwrap()),
        Some(t.root())
    );
    assert!(!t.exists("/a"));
    assert_eq!(leaves_str(&t), ["/x/y/z"]);
    assert_eq!(t.len(), 4);

    // Churn: only the first of many add/remove rounds grows the slot table.
    for i in 0..50 {
        t.add_with(format!("/t{i}/u/v"), &mut make).unwrap();
        assert_eq!(t.nodes.len(), slots + 3);
        t.remove(format!("/t{i}")).unwrap();
    }
    assert_eq!(t.nodes.len(), slots + 3);
    assert_eq!(t.len(), 4);
    // Interleaved unlink / insert reuses too.
    let root = t.root();
    let q = t.insert(root, os(b"q"), 7, Shape::Leaf).unwrap();
    assert_eq!(t.unlink(root, os(b"q")), Ok(7));
    let r = t.insert(root, os(b"r"), 8, Shape::Dir).unwrap();
    assert_eq!(r, q);
    assert_eq!(t.value(r), Some(&8));
    assert!(t.is_dir(r));
    assert_eq!(t.lookup("/r"), Some(r));
    assert_eq!(t.lookup("/q"), None);
}

#[test]
fn very_deep_path() {
    const DEPTH: usize = 10_000;
    let mut t: Trie = Trie::new();
    let path = "/a".repeat(DEPTH);
    let leaf = t.add(&path).unwrap();
    assert_eq!(t.len(), DEPTH + 1);
    assert_eq!(t.lookup(&path), Some(leaf));
    assert!(t.exists(&path));
    assert_eq!(t.leaves(), [OsString::from(&path)]);
    assert_eq!(
        t.leaves_under(t.lookup("/a/a").unwrap()),
        [OsString::from(&path)]
    );
    assert_eq!(t.path_of(leaf), OsString::from(&path));
    assert!(t.is_ancestor(t.root(), leaf));
    assert!(!t.is_ancestor(leaf, t.root()));
    // Moving the top into the bottom walks all the way up and is refused.
    assert_eq!(
        t.rename("/a", format!("{path}/x")),
        Err(TrieError::InvalidMove)
    );
    // Move the deepest node to the top and back.
    assert_eq!(t.rename(&path, "/top"), Ok(leaf));
    assert_eq!(t.leaves().len(), 2);
    t.remove("/top").unwrap();
    let removed = t.remove("/a").unwrap();
    assert_eq!(removed.len(), DEPTH - 1);
    assert!(t.is_empty());
    assert_eq!(leaves_str(&t), ["/"]);
    // A deep trie can also be dropped whole.
    let mut t2: Trie = Trie::new();
    t2.add(&path).unwrap();
    drop(t2);
}

#[test]
fn wide_directory_paged_by_cookie() {
    const N: usize = 100_000;
    const ENTRIES_PER_LISTING: usize = 100;
    let mut t: Trie<u32> = Trie::new();
    let d = t.add("/wide").unwrap();
    // Insert in a scrambled order (multiplicative permutation of 0..N).
    for k in 0..N {
        let i = (k * 7919) % N;
        t.insert(d, OsStr::new(&format!("f{i:06}")), i as u32, Shape::Leaf)
            .unwrap();
    }
    assert_eq!(t.child_count(d), N);
    let mut seen = vec![false; N];
    let mut from = FIRST_COOKIE;
    let mut pages = 0;
    let mut prev: Option<u64> = None;
    loop {
        // Each page resumes from a cookie: O(log n), no cursor state.
        let page: Vec<(u64, Vec<u8>, NodeId)> = t
            .entries_from(d, from)
            .take(ENTRIES_PER_LISTING)
            .map(|(c, n, id)| (c, n.as_bytes().to_vec(), id))
            .collect();
        if page.is_empty() {
            break;
        }
        pages += 1;
        for (cookie, name, id) in &page {
            let v = *t.value(*id).unwrap() as usize;
            assert_eq!(name, format!("f{v:06}").as_bytes());
            assert_eq!(*cookie, t.cookie(name));
            assert!(!seen[v], "{v} visited twice");
            seen[v] = true;
            if let Some(p) = prev {
                assert!(p < *cookie, "cookies must increase");
            }
            prev = Some(*cookie);
        }
        from = page.last().unwrap().0 + 1;
    }
    assert_eq!(pages, N / ENTRIES_PER_LISTING);
    assert!(seen.iter().all(|&s| s));
}

/// With cookies squeezed into 4 bits, names collide all the time: lookups,
/// unlinks, renames and exchanges still find the right entry, and paging by
/// cookie (never cutting a group of cookie-mates) lists each name once.
#[test]
fn colliding_cookies() {
    let mut t: Trie<u32> = Trie::with_root(0).with_cookie_mask(0xF);
    let d = t.add_with("/d", &mut || 0).unwrap();
    let e = t.add_with("/e", &mut || 0).unwrap();
    let n = 300u32;
    for i in 0..n {
        t.insert(d, OsStr::new(&format!("n{i}")), i, Shape::Leaf)
            .unwrap();
    }
    assert_eq!(t.child_count(d), n as usize);
    for i in 0..n {
        let id = t.child(d, OsStr::new(&format!("n{i}"))).unwrap();
        assert_eq!(*t.value(id).unwrap(), i);
    }
    let page_all = |t: &Trie<u32>, dir| {
        let mut out = Vec::new();
        let mut from = FIRST_COOKIE;
        loop {
            let mut page: Vec<(u64, u32)> = Vec::new();
            for (c, _, id) in t.entries_from(dir, from) {
                if page.len() >= 7 && page.last().unwrap().0 != c {
                    break;
                }
                page.push((c, *t.value(id).unwrap()));
            }
            if page.is_empty() {
                return out;
            }
            from = page.last().unwrap().0 + 1;
            out.extend(page);
        }
    };
    let listed = page_all(&t, d);
    assert!(listed.windows(2).all(|w| w[0].0 <= w[1].0));
    let mut vals: Vec<u32> = listed.iter().map(|(_, v)| *v).collect();
    vals.sort_unstable();
    assert_eq!(vals, (0..n).collect::<Vec<_>>());
    // Move every third name to /e under a new name, swap some pairs.
    for i in (0..n).step_by(3) {
        t.move_entry(
            d,
            OsStr::new(&format!("n{i}")),
            e,
            OsStr::new(&format!("m{i}")),
        )
        .unwrap();
    }
    t.exchange(d, OsStr::new("n1"), e, OsStr::new("m0"))
        .unwrap();
    assert_eq!(*t.value(t.child(d, OsStr::new("n1")).unwrap()).unwrap(), 0);
    assert_eq!(*t.value(t.child(e, OsStr::new("m0")).unwrap()).unwrap(), 1);
    assert_eq!(page_all(&t, d).len() + page_all(&t, e).len(), n as usize);
    // Unlink everything through the colliding maps.
    for (dir, prefix) in [(d, "n"), (e, "m")] {
        for i in 0..n {
            let _ = t.unlink(dir, OsStr::new(&format!("{prefix}{i}")));
        }
    }
    assert_eq!(t.child_count(d) + t.child_count(e), 0);
    assert!(t.leaves().len() == 2);
}

#[test]
fn leaves_under_and_ancestry() {
    let mut t: Trie = Trie::new();
    for p in ["/a/b/c", "/a/b/d", "/a/e", "/f"] {
        t.add(p).unwrap();
    }
    let a = t.lookup("/a").unwrap();
    let b = t.lookup("/a/b").unwrap();
    let c = t.lookup("/a/b/c").unwrap();
    let e = t.lookup("/a/e").unwrap();
    let f = t.lookup("/f").unwrap();
    assert_eq!(t.leaves_under(a), ["/a/b/c", "/a/b/d", "/a/e"]);
    assert_eq!(t.leaves_under(b), ["/a/b/c", "/a/b/d"]);
    assert_eq!(t.leaves_under(c), ["/a/b/c"]);
    assert_eq!(t.leaves_under(f), ["/f"]);
    assert_eq!(t.leaves_under(t.root()), t.leaves());
    assert!(t.is_ancestor(a, a));
    assert!(t.is_ancestor(a, c));
    assert!(t.is_ancestor(t.root(), c));
    assert!(!t.is_ancestor(c, a));
    assert!(!t.is_ancestor(b, e));
    assert!(!t.is_ancestor(f, c));
    assert_eq!(t.path_of(b), OsString::from("/a/b"));
}

#[test]
fn errors_display() {
    for e in [
        TrieError::NotFound,
        TrieError::NotADirectory,
        TrieError::Exists,
        TrieError::NameTooLong,
        TrieError::InvalidName,
        TrieError::NotEmpty,
        TrieError::InvalidMove,
        TrieError::Root,
    ] {
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(TrieError::NotEmpty.to_string(), "directory not empty");
}

// ---------------------------------------------------------------------------
// Property tests against a model
// ---------------------------------------------------------------------------

/// A path as its components.
type P = Vec<Vec<u8>>;

const ALPHABET: [&[u8]; 4] = [b"a", b"b", b"c", b"\xff"];

fn comp() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(&ALPHABET[..]).prop_map(<[u8]>::to_vec)
}

fn comps(min: usize) -> impl Strategy<Value = P> {
    prop::collection::vec(comp(), min..=4)
}

/// A path plus a spelling of it: leading `/`, `//`, `./` or nothing;
/// separators `/`, `//` or `/./`; trailing nothing, `/` or `/.`.
#[derive(Clone, Debug)]
struct Spelled {
    comps: P,
    text: Vec<u8>,
}

fn spelled(min: usize) -> impl Strategy<Value = Spelled> {
    (comps(min), 0..4usize, 0..3usize, 0..3usize).prop_map(|(comps, lead, sep, trail)| {
        let lead: &[u8] = [&b"/"[..], b"", b"//", b"./"][lead];
        let sep: &[u8] = [&b"/"[..], b"//", b"/./"][sep];
        let trail: &[u8] = [&b""[..], b"/", b"/."][trail];
        let mut text = lead.to_vec();
        text.extend(comps.join(sep));
        text.extend_from_slice(trail);
        Spelled { comps, text }
    })
}

fn abs(p: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in p {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    out
}

#[derive(Clone, Debug)]
enum Op {
    Add(Spelled),
    Remove(Spelled),
    Rename(Spelled, Spelled),
    Exchange(P, P),
    Exists(Spelled),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => spelled(0).prop_map(Op::Add),
        2 => spelled(0).prop_map(Op::Remove),
        3 => (spelled(0), spelled(0)).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => (comps(1), comps(1)).prop_map(|(a, b)| Op::Exchange(a, b)),
        1 => spelled(0).prop_map(Op::Exists),
    ]
}

#[derive(Default, Debug)]
struct Model {
    /// Every directory path except the root.
    dirs: BTreeSet<P>,
}

impl Model {
    fn has(&self, p: &[Vec<u8>]) -> bool {
        p.is_empty() || self.dirs.contains(p)
    }

    fn add(&mut self, p: &[Vec<u8>]) {
        for i in 1..=p.len() {
            self.dirs.insert(p[..i].to_vec());
        }
    }

    /// Removes the subtree at `p`, returning the removed paths.
    fn take_subtree(&mut self, p: &[Vec<u8>]) -> Vec<P> {
        let sub: Vec<P> = self
            .dirs
            .range(p.to_vec()..)
            .take_while(|q| q.starts_with(p))
            .cloned()
            .collect();
        for q in &sub {
            self.dirs.remove(q);
        }
        sub
    }

    fn remove(&mut self, p: &[Vec<u8>]) -> Result<usize, TrieError> {
        if p.is_empty() {
            return Err(TrieError::Root);
        }
        if !self.dirs.contains(p) {
            return Err(TrieError::NotFound);
        }
        Ok(self.take_subtree(p).len())
    }

    fn graft(&mut self, from: &[Vec<u8>], to: &[Vec<u8>], sub: Vec<P>) {
        for q in sub {
            let mut n = to.to_vec();
            n.extend_from_slice(&q[from.len()..]);
            self.dirs.insert(n);
        }
    }

    fn rename(&mut self, from: &[Vec<u8>], to: &[Vec<u8>]) -> Result<(), TrieError> {
        // `rename` resolves `from`'s parent fully before looking at `to`.
        if from.is_empty() {
            return Err(TrieError::Root);
        }
        if !self.has(&from[..from.len() - 1]) {
            return Err(TrieError::NotFound);
        }
        if to.is_empty() {
            return Err(TrieError::Root);
        }
        if !self.has(&to[..to.len() - 1]) {
            return Err(TrieError::NotFound);
        }
        if !self.has(from) {
            return Err(TrieError::NotFound);
        }
        if self.has(to) {
            return if from == to {
                Ok(())
            } else {
                Err(TrieError::Exists)
            };
        }
        if to.starts_with(from) {
            return Err(TrieError::InvalidMove);
        }
        let sub = self.take_subtree(from);
        self.graft(from, to, sub);
        Ok(())
    }

    fn exchange(&mut self, a: &[Vec<u8>], b: &[Vec<u8>]) -> Result<(), TrieError> {
        if !self.has(a) || !self.has(b) {
            return Err(TrieError::NotFound);
        }
        if a == b {
            return Ok(());
        }
        if b[..b.len() - 1].starts_with(a) || a[..a.len() - 1].starts_with(b) {
            return Err(TrieError::InvalidMove);
        }
        let sa = self.take_subtree(a);
        let sb = self.take_subtree(b);
        self.graft(a, b, sa);
        self.graft(b, a, sb);
        Ok(())
    }

    fn leaves(&self) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = self
            .dirs
            .iter()
            .filter(|p| {
                !self
                    .dirs
                    .range((*p).clone()..)
                    .nth(1)
                    .is_some_and(|q| q.starts_with(p))
            })
            .map(|p| abs(p))
            .collect();
        if out.is_empty() {
            out.push(b"/".to_vec());
        }
        out.sort();
        out
    }
}

/// Every path over the alphabet of depth 0..=3, plus a few that can never
/// exist.
fn probes() -> Vec<Vec<u8>> {
    let mut out: Vec<P> = vec![vec![]];
    let mut layer: Vec<P> = vec![vec![]];
    for _ in 0..3 {
        layer = layer
            .iter()
            .flat_map(|p| {
                ALPHABET.iter().map(move |c| {
                    let mut q = p.clone();
                    q.push(c.to_vec());
                    q
                })
            })
            .collect();
        out.extend(layer.iter().cloned());
    }
    let mut out: Vec<Vec<u8>> = out.iter().map(|p| abs(p)).collect();
    out.extend([
        b"/d".to_vec(),
        b"/a/d".to_vec(),
        b"/a/..".to_vec(),
        b"/a\0".to_vec(),
    ]);
    out
}

fn check_against_model(t: &Trie, m: &Model, probes: &[Vec<u8>]) -> Result<(), TestCaseError> {
    for p in &m.dirs {
        let path = abs(p);
        let id = t.lookup(os(&path));
        prop_assert!(id.is_some(), "model path {:?} missing", os(&path));
        let id = id.unwrap();
        prop_assert!(t.is_dir(id));
        prop_assert_eq!(t.path_of(id).into_vec(), path);
    }
    for p in probes {
        let want = Trie::<()>::components(os(p))
            .is_ok_and(|c| m.has(&c.iter().map(|c| c.as_bytes().to_vec()).collect::<Vec<_>>()));
        prop_assert_eq!(t.exists(os(p)), want, "exists({:?})", os(p));
    }
    prop_assert_eq!(leaves_bytes(t), m.leaves());
    prop_assert_eq!(t.len(), m.dirs.len() + 1);
    prop_assert_eq!(t.is_empty(), m.dirs.is_empty());
    // Slot accounting: live + free == slots.
    prop_assert_eq!(t.len() + t.free.len(), t.nodes.len());
    Ok(())
}

/// The node of `p`'s parent directory, if it exists (`p` is non-empty).
fn parent_id(t: &Trie, p: &[Vec<u8>]) -> Option<NodeId> {
    t.lookup(os(&abs(&p[..p.len() - 1])))
}

proptest! {
    // No regression files: this module must not write outside src/trie/tests.rs.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn prop_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        let probes = probes();
        let mut t: Trie = Trie::new();
        let mut m = Model::default();
        for op in ops {
            match op {
                Op::Add(p) => {
                    let id = t.add(os(&p.text));
                    prop_assert!(id.is_ok(), "add {:?}: {:?}", os(&p.text), id);
                    prop_assert_eq!(t.lookup(os(&abs(&p.comps))), id.ok());
                    m.add(&p.comps);
                }
                Op::Remove(p) => {
                    let got = t.remove(os(&p.text)).map(|v| v.len());
                    prop_assert_eq!(got, m.remove(&p.comps), "remove {:?}", os(&p.text));
                }
                Op::Rename(a, b) => {
                    let before = t.lookup(os(&abs(&a.comps)));
                    let got = t.rename(os(&a.text), os(&b.text));
                    let want = m.rename(&a.comps, &b.comps);
                    prop_assert_eq!(
                        got.map(|_| ()), want,
                        "rename {:?} {:?}", os(&a.text), os(&b.text)
                    );
                    if let Ok(id) = got {
                        // Relinked: the same node is now at the new path.
                        prop_assert_eq!(Some(id), before);
                        prop_assert_eq!(t.lookup(os(&abs(&b.comps))), Some(id));
                    }
                }
                Op::Exchange(a, b) => {
                    let (Some(pa), Some(pb)) = (parent_id(&t, &a), parent_id(&t, &b)) else {
                        continue;
                    };
                    let (ia, ib) = (t.lookup(os(&abs(&a))), t.lookup(os(&abs(&b))));
                    let got = t.exchange(pa, os(a.last().unwrap()), pb, os(b.last().unwrap()));
                    prop_assert_eq!(got, m.exchange(&a, &b), "exchange {:?} {:?}", a, b);
                    if got.is_ok() {
                        prop_assert_eq!(t.lookup(os(&abs(&a))), ib);
                        prop_assert_eq!(t.lookup(os(&abs(&b))), ia);
                    }
                }
                Op::Exists(p) => {
                    prop_assert_eq!(t.exists(os(&p.text)), m.has(&p.comps));
                }
            }
            check_against_model(&t, &m, &probes)?;
        }
    }

    #[test]
    fn prop_children_after_paging_under_removals(
        names in prop::collection::btree_set(
            prop::collection::vec(prop::sample::select(&b"ab.\x80\xff"[..]), 1..4)
                .prop_filter("valid name", |n| Trie::<()>::check_name(n).is_ok()),
            0..120,
        ),
        steps in prop::collection::vec(
            (
                1..12usize,
                prop::collection::vec(any::<prop::sample::Index>(), 0..4),
                prop::collection::vec(
                    prop::collection::vec(prop::sample::select(&b"ab.\x80\xff"[..]), 1..4),
                    0..3,
                ),
            ),
            1..20,
        ),
    ) {
        let mut t: Trie = Trie::new();
        let d = t.add("/dir").unwrap();
        for n in &names {
            // Mix leaves and (empty) directories.
            t.insert(d, os(n), (), Shape::dir_if(n.len() % 2 == 0)).unwrap();
        }
        let mut removed: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut yielded: Vec<Vec<u8>> = Vec::new();
        let mut cursor: Option<Vec<u8>> = None;
        let mut step = 0usize;
        loop {
            let (size, removals, inserts) = &steps[step % steps.len()];
            step += 1;
            let page: Vec<Vec<u8>> = t
                .children_after(d, cursor.as_deref())
                .take(*size)
                .map(|(n, _)| n.as_bytes().to_vec())
                .collect();
            if page.is_empty() {
                break;
            }
            prop_assert!(page.len() <= *size);
            yielded.extend(page.iter().cloned());
            cursor = page.last().cloned();
            // Mutate between pages: remove random current entries (the
            // cursor entry included, sometimes), insert new ones.
            for idx in removals {
                let current = child_names(&t, d);
                if current.is_empty() {
                    break;
                }
                let victim = idx.get(&current).clone();
                t.unlink(d, os(&victim)).unwrap();
                removed.insert(victim);
            }
            for n in inserts {
                if Trie::<()>::check_name(n).is_ok() && t.child(d, os(n)).is_none() {
                    t.insert(d, os(n), (), Shape::Leaf).unwrap();
                }
            }
            prop_assert!(step < 100_000, "paging does not terminate");
        }
        // Strictly increasing, hence never twice.
        for w in yielded.windows(2) {
            prop_assert!(w[0] < w[1], "{:?} then {:?}", w[0], w[1]);
        }
        let set: HashSet<&Vec<u8>> = yielded.iter().collect();
        prop_assert_eq!(set.len(), yielded.len());
        // Every entry present throughout was yielded.
        for n in &names {
            if !removed.contains(n) {
                prop_assert!(set.contains(n), "{:?} never yielded", n);
            }
        }
        // A full listing after the fact agrees with child_count.
        prop_assert_eq!(t.children(d).count(), t.child_count(d));
    }
}

// ---------------------------------------------------------------------------
// Paged leaf listing
// ---------------------------------------------------------------------------

/// Page limits for tests: `bytes` of paths, no length limit that matters,
/// no step limit.
fn bytes(bytes: usize) -> PageLimits {
    PageLimits {
        bytes,
        max_path: usize::MAX,
        steps: usize::MAX,
    }
}

/// Every page of the leaves under `id`, concatenated; between pages
/// `between` may change the trie (it is given the last path listed so far).
fn all_pages(
    t: &mut Trie,
    id: NodeId,
    budget: usize,
    between: impl FnMut(&mut Trie, &[u8]),
) -> Vec<Vec<u8>> {
    all_pages_with(t, id, bytes(budget), between).0
}

/// Like [`all_pages`] with any limits; also returns the over-long records
/// and the number of pages.
fn all_pages_with(
    t: &mut Trie,
    id: NodeId,
    limits: PageLimits,
    mut between: impl FnMut(&mut Trie, &[u8]),
) -> (Vec<Vec<u8>>, Vec<TooLong>, usize) {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut too_long = Vec::new();
    let mut cursor: Option<Vec<u8>> = None;
    let mut pages = 0;
    loop {
        if let Some(a) = out.last() {
            let a = a.clone();
            between(t, &a);
        }
        let page = t
            .leaves_page(id, cursor.as_deref(), limits, |_| true)
            .unwrap();
        pages += 1;
        out.extend(page.paths);
        too_long.extend(page.too_long);
        if page.done {
            assert!(page.cursor.is_empty());
            return (out, too_long, pages);
        }
        assert!(
            cursor.as_ref() != Some(&page.cursor),
            "no progress at {cursor:?}"
        );
        assert!(page.cursor.len() <= limits.max_path.saturating_add(256));
        cursor = Some(page.cursor);
    }
}

/// `leaves_under(id)` relative to `id`, as `leaves_page` returns them.
fn relative_leaves(t: &Trie, id: NodeId) -> BTreeSet<Vec<u8>> {
    let base = t.path_of(id).into_vec();
    let cut = if base == b"/" { 1 } else { base.len() + 1 };
    t.leaves_under(id)
        .into_iter()
        .map(|p| p.into_vec().get(cut..).unwrap_or_default().to_vec())
        .collect()
}

#[test]
fn leaves_page_lists_an_empty_start_once() {
    let mut t: Trie = Trie::new();
    let id = t.add("/a/b").unwrap();
    assert_eq!(all_pages(&mut t, id, 16, |_, _| {}), vec![Vec::<u8>::new()]);
    let a = t.lookup("/a").unwrap();
    assert_eq!(all_pages(&mut t, a, 16, |_, _| {}), vec![b"b".to_vec()]);
}

#[test]
fn leaves_page_reports_a_path_longer_than_the_budget() {
    let mut t: Trie = Trie::new();
    t.add("/abcdef/ghijkl").unwrap();
    t.add("/x").unwrap();
    // 13 bytes do not fit in 12: reported as over-long (with as much of
    // its head as a page of 12 bytes can hold), not a stuck page.
    let (paths, long, _) = all_pages_with(&mut t, Trie::<()>::new().root(), bytes(12), |_, _| {});
    assert_eq!(paths, vec![b"x".to_vec()]);
    assert_eq!(
        long,
        vec![TooLong {
            head: b"abcd".to_vec(),
            len: 13,
            dir: false
        }]
    );
    let page = t.leaves_page(t.root(), None, bytes(16), |_| true).unwrap();
    let mut got = page.paths.clone();
    got.sort();
    assert_eq!(got, vec![b"abcdef/ghijkl".to_vec(), b"x".to_vec()]);
    assert!(page.done && page.too_long.is_empty());
}

/// A path deeper than `max_path` is reported once, with its length, and
/// nothing under it is walked; everything else is listed.
#[test]
fn leaves_page_reports_over_long_paths_and_lists_the_rest() {
    let mut t: Trie = Trie::new();
    let deep = "/a".repeat(9000);
    t.add(&deep).unwrap();
    t.add("/a/b/c").unwrap();
    t.add("/z").unwrap();
    let limits = PageLimits {
        bytes: 1000,
        max_path: 100,
        steps: usize::MAX,
    };
    let (mut paths, long, _) = all_pages_with(&mut t, Trie::<()>::new().root(), limits, |_, _| {});
    paths.sort();
    assert_eq!(paths, vec![b"a/b/c".to_vec(), b"z".to_vec()]);
    // The directory whose children would pass 100 bytes: "a/a/.../a" of
    // 99 bytes (50 components).
    assert_eq!(long.len(), 1, "{long:?}");
    assert!(long[0].dir);
    assert_eq!(long[0].len, 99);
    assert_eq!(long[0].head, "a/".repeat(50).as_bytes()[..99].to_vec());
    // A leaf just over the limit is reported as a leaf.
    let mut t: Trie = Trie::new();
    t.add(format!("/{}", "x".repeat(101))).unwrap();
    let (paths, long, _) = all_pages_with(&mut t, Trie::<()>::new().root(), limits, |_, _| {});
    assert!(paths.is_empty());
    assert_eq!(long.len(), 1);
    assert!(!long[0].dir);
    assert_eq!(long[0].len, 101);
    assert_eq!(long[0].head.len(), TOO_LONG_HEAD.min(101));
}

/// A page visits at most `steps` children, whatever it finds: a directory
/// of many refused subdirectories cannot hold the lock for the whole walk.
#[test]
fn leaves_page_time_is_bounded_by_steps() {
    let mut t: Trie = Trie::new();
    let n = 5000;
    for i in 0..n {
        t.add(format!("/d/{i}/x")).unwrap();
    }
    t.add("/d/last").unwrap();
    let d = t.lookup("/d").unwrap();
    let refused: BTreeSet<NodeId> = t
        .children(d)
        .map(|(_, c)| c)
        .filter(|&c| t.child_count(c) > 0)
        .collect();
    let limits = PageLimits {
        bytes: 1 << 20,
        max_path: 4096,
        steps: 100,
    };
    let mut cursor: Option<Vec<u8>> = None;
    let (mut pages, mut skipped, mut paths) = (0, 0, Vec::new());
    loop {
        let page = t
            .leaves_page(t.root(), cursor.as_deref(), limits, |c| {
                !refused.contains(&c)
            })
            .unwrap();
        pages += 1;
        assert!(
            page.skipped <= 100,
            "{} directories refused in one page",
            page.skipped
        );
        skipped += page.skipped;
        paths.extend(page.paths);
        if page.done {
            break;
        }
        cursor = Some(page.cursor);
    }
    assert_eq!(skipped, n);
    assert_eq!(paths, vec![b"d/last".to_vec()]);
    assert!(pages >= n / 100, "{pages} pages");
    // Paths alone: 5000 leaves, 100 steps a page.
    let (paths, _, pages) = all_pages_with(&mut t, d, limits, |_, _| {});
    assert_eq!(paths.len(), n + 1);
    assert!(pages > n / 100, "{pages} pages");
}

/// A page's cursor can end inside a directory before its first child
/// (`dir/`), when the step budget runs out right after entering it.
#[test]
fn leaves_page_resumes_inside_a_directory() {
    let mut t: Trie = Trie::new();
    for p in ["/a/b/c/d", "/a/b/e", "/f"] {
        t.add(p).unwrap();
    }
    for steps in 1..6 {
        let limits = PageLimits {
            bytes: 1 << 10,
            max_path: 4096,
            steps,
        };
        let (mut paths, _, _) = all_pages_with(&mut t, Trie::<()>::new().root(), limits, |_, _| {});
        paths.sort();
        assert_eq!(
            paths,
            vec![b"a/b/c/d".to_vec(), b"a/b/e".to_vec(), b"f".to_vec()]
        );
    }
    // A cursor naming a directory with a trailing `/` resumes at its start;
    // `f` follows if it comes after `a` in the root's listing order.
    let f_after_a = t.cookie(b"f") > t.cookie(b"a");
    let then_f = |mut v: Vec<Vec<u8>>| {
        if f_after_a {
            v.push(b"f".to_vec());
        }
        v
    };
    let limits = bytes(1 << 10);
    let page = t
        .leaves_page(t.root(), Some(b"a/b/"), limits, |_| true)
        .unwrap();
    let mut got = page.paths;
    got.sort();
    assert_eq!(got, then_f(vec![b"a/b/c/d".to_vec(), b"a/b/e".to_vec()]));
    // Without it, after the directory's whole subtree.
    let page = t
        .leaves_page(t.root(), Some(b"a/b"), limits, |_| true)
        .unwrap();
    assert_eq!(page.paths, then_f(vec![]));
}

/// A 40,000-deep chain is walked with one path buffer (a copy of the
/// prefix per level, as before, took 1.6 GB here; the daemon's memory
/// during such a listing is measured in tests/lsprefix.rs).
#[test]
fn leaves_page_walks_a_deep_chain() {
    let mut t: Trie = Trie::new();
    let depth = 40_000;
    t.add("/a".repeat(depth)).unwrap();
    let limits = PageLimits {
        bytes: 1 << 20,
        max_path: usize::MAX,
        steps: usize::MAX,
    };
    let page = t.leaves_page(t.root(), None, limits, |_| true).unwrap();
    assert!(page.done);
    assert_eq!(page.paths.len(), 1);
    assert_eq!(page.paths[0].len(), 2 * depth - 1);
}

fn small_paths() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let comp = prop::sample::select(vec![&b"a"[..], b"b", b"cc", b"d", b"eee", b"f"]);
    let path = prop::collection::vec(comp, 1..5).prop_map(|cs| {
        let mut p = Vec::new();
        for c in cs {
            p.push(b'/');
            p.extend_from_slice(c);
        }
        p
    });
    prop::collection::vec(path, 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Pages of any size, with cookies that collide a lot, list each leaf
    /// exactly once.
    #[test]
    fn prop_leaves_pages_equal_leaves(
        paths in small_paths(),
        mask in prop::sample::select(vec![0x1u64, 0x3, u64::MAX]),
        budget in 16usize..64,
        start in 0usize..40,
        steps in prop::sample::select(vec![1usize, 2, 3, 7, usize::MAX]),
    ) {
        let mut t: Trie = Trie::new().with_cookie_mask(mask);
        for p in &paths {
            t.add(os(p)).unwrap();
        }
        let start = t.lookup(os(&paths[start % paths.len()][..2])).unwrap_or(t.root());
        let limits = PageLimits { bytes: budget, max_path: usize::MAX, steps };
        let (got, long, _) = all_pages_with(&mut t, start, limits, |_, _| {});
        prop_assert!(long.is_empty());
        let set: BTreeSet<Vec<u8>> = got.iter().cloned().collect();
        prop_assert_eq!(set.len(), got.len(), "duplicates in {:?}", got);
        prop_assert_eq!(set, relative_leaves(&t, start));
    }

    /// Removing the leaf a listing resumes after loses nothing else and
    /// repeats nothing.
    #[test]
    fn prop_leaves_pages_survive_removal_of_the_cursor(
        paths in small_paths(),
        mask in prop::sample::select(vec![0x1u64, 0x3, u64::MAX]),
        budget in 16usize..40,
    ) {
        let mut t: Trie = Trie::new().with_cookie_mask(mask);
        for p in &paths {
            t.add(os(p)).unwrap();
        }
        let before = relative_leaves(&t, t.root());
        let mut removed = BTreeSet::new();
        let root = t.root();
        let got = all_pages(&mut t, root, budget, |t, after| {
            let mut abs_path = b"/".to_vec();
            abs_path.extend_from_slice(after);
            if t.remove(os(&abs_path)).is_ok() {
                removed.insert(after.to_vec());
            }
        });
        let set: BTreeSet<Vec<u8>> = got.iter().cloned().collect();
        prop_assert_eq!(set.len(), got.len(), "duplicates in {:?}", got);
        // Removing a leaf can turn its parent into a new leaf, which may or
        // may not be listed; everything that stayed a leaf must be.
        let after = relative_leaves(&t, t.root());
        for p in before.intersection(&after) {
            prop_assert!(set.contains(p), "{:?} missing from {:?}", os(p), got);
        }
        for p in &set {
            prop_assert!(before.contains(p) || after.contains(p), "{:?} never a leaf", os(p));
        }
    }
}

/// The first bad component decides the error, also when a later one has
/// a NUL (the split looks for NUL once per path first: found by fuzzing).
#[test]
fn components_report_the_first_bad_component() {
    let long = "x".repeat(NAME_MAX + 1);
    let err = |p: &[u8]| Trie::<()>::components(OsStr::from_bytes(p)).unwrap_err();
    assert_eq!(
        err(format!("/{long}/a\0b").as_bytes()),
        TrieError::NameTooLong
    );
    assert_eq!(
        err(format!("/a\0b/{long}").as_bytes()),
        TrieError::InvalidName
    );
    assert_eq!(
        err(format!("/{long}/../x").as_bytes()),
        TrieError::NameTooLong
    );
    assert_eq!(err(b"/../a\0"), TrieError::InvalidName);
    assert_eq!(
        Trie::<()>::components(OsStr::new("//a/./b/")).unwrap(),
        [OsStr::new("a"), OsStr::new("b")]
    );
}

/// The sizes the memory figures in docs/performance.md rest on.
#[test]
fn compact_layout() {
    assert_eq!(size_of::<Node<u32>>(), 16);
    assert_eq!(size_of::<Node<()>>(), 12);
    assert!(size_of::<DirMap>() <= 24);
    assert_eq!(size_of::<NodeId>(), 4);
}

/// Removing most names rewrites the name arena (once more than half of
/// it is garbage); every remaining name, lookup and listing survives it,
/// and the arena shrinks.
#[test]
fn names_survive_arena_compaction() {
    let mut t: Trie<u32> = Trie::new();
    let d = t.add("/d").unwrap();
    let name = |i: u32| format!("entry-with-a-longish-name-{i:06}");
    for i in 0..20_000 {
        t.insert(d, OsStr::new(&name(i)), i, Shape::Leaf).unwrap();
    }
    let before = t.memory();
    for i in (0..20_000).filter(|i| i % 4 != 0) {
        assert_eq!(t.unlink(d, OsStr::new(&name(i))), Ok(i));
    }
    let after = t.memory();
    assert!(
        after.names < before.names / 2,
        "arena {} -> {} bytes",
        before.names,
        after.names
    );
    assert!(after.names_garbage < after.names / 2);
    for i in 0..20_000 {
        let got = t
            .child(d, OsStr::new(&name(i)))
            .and_then(|n| t.value(n).copied());
        assert_eq!(got, (i % 4 == 0).then_some(i), "{}", name(i));
    }
    let mut listed: Vec<String> = t
        .entries_from(d, 0)
        .map(|(_, n, _)| n.to_string_lossy().into_owned())
        .collect();
    listed.sort();
    let want: Vec<String> = (0..20_000).filter(|i| i % 4 == 0).map(name).collect();
    assert_eq!(listed, want);
    assert_eq!(
        t.path_of(t.lookup(format!("/d/{}", name(4))).unwrap()),
        OsStr::new(&format!("/d/{}", name(4)))
    );
}
