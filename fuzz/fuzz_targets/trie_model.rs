//! Differential fuzzing of `triefs::trie::Trie` against a naive model: a
//! `BTreeMap` from component vectors to (is_dir, value). Every operation's
//! result (value, error variant) must agree with the model, and after each
//! operation the whole trie is walked and compared with the model (shape,
//! values, parent links, `len`, `nodes`, `leaves`, `path_of`, `lookup`).
#![no_main]

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use triefs::trie::{FIRST_COOKIE, NAME_MAX, NodeId, Shape, Trie, TrieError};
use triefs_fuzz::{Name, Path};

type P = Vec<Vec<u8>>;

/// Where a node-level operation acts: an existing node chosen by index in
/// the model's (sorted) node list, or whatever a path resolves to.
#[derive(Arbitrary, Debug, Clone)]
enum At {
    Existing(u16),
    Path(Path),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Add(Path),
    AddWith(Path),
    Remove(Path),
    Rename(Path, Path),
    Exists(Path),
    Lookup(Path),
    Components(Path),
    Insert {
        parent: At,
        name: Name,
        dir: bool,
    },
    Unlink {
        parent: At,
        name: Name,
    },
    MoveEntry {
        parent: At,
        name: Name,
        new_parent: At,
        new_name: Name,
    },
    Exchange {
        p1: At,
        n1: Name,
        p2: At,
        n2: Name,
    },
    ChildrenAfter {
        dir: At,
        after: Option<Name>,
        page: u8,
    },
    /// Cookie-ordered listing (`entries_from`), resumed from `from`.
    EntriesFrom {
        dir: At,
        from: From,
    },
    Leaves,
    LeavesUnder(At),
    PathOf(At),
}

/// Where an `entries_from` listing starts.
#[derive(Arbitrary, Debug, Clone)]
enum From {
    Zero,
    /// The cookie of a (possibly absent) name, plus 0 or 1.
    CookieOf(Name, bool),
    Raw(u64),
}

/// Cookie width: the full hash, or a tiny mask so that names collide.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Mask {
    Full,
    Tiny(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    mask: Mask,
    ops: Vec<Op>,
}

/// The reference model.
struct Model {
    /// Every node (root = empty vector) -> (is_dir, value).
    nodes: BTreeMap<P, (bool, u64)>,
}

fn check_name(name: &[u8]) -> Result<(), TrieError> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(TrieError::InvalidName);
    }
    if name.len() > NAME_MAX {
        return Err(TrieError::NameTooLong);
    }
    Ok(())
}

fn parse(path: &[u8]) -> Result<P, TrieError> {
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        if c.is_empty() || c == b"." {
            continue;
        }
        check_name(c)?;
        out.push(c.to_vec());
    }
    Ok(out)
}

fn fmt_path(p: &[Vec<u8>]) -> Vec<u8> {
    if p.is_empty() {
        return b"/".to_vec();
    }
    let mut out = Vec::new();
    for c in p {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    out
}

fn join(p: &[Vec<u8>], n: &[u8]) -> P {
    let mut v = p.to_vec();
    v.push(n.to_vec());
    v
}

impl Model {
    fn new() -> Model {
        let mut nodes = BTreeMap::new();
        nodes.insert(Vec::new(), (true, 0));
        Model { nodes }
    }

    fn get(&self, p: &[Vec<u8>]) -> Option<(bool, u64)> {
        self.nodes.get(p).copied()
    }

    /// `p` and everything below it, in key order.
    fn subtree(&self, p: &[Vec<u8>]) -> Vec<P> {
        self.nodes
            .range(p.to_vec()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(p))
            .cloned()
            .collect()
    }

    fn children(&self, p: &[Vec<u8>]) -> Vec<Vec<u8>> {
        self.subtree(p)
            .into_iter()
            .filter(|k| k.len() == p.len() + 1)
            .map(|k| k[p.len()].clone())
            .collect()
    }

    fn has_children(&self, p: &[Vec<u8>]) -> bool {
        self.nodes
            .range(p.to_vec()..)
            .nth(1)
            .is_some_and(|(k, _)| k.starts_with(p))
    }

    fn leaves_under(&self, p: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = self
            .subtree(p)
            .into_iter()
            .filter(|k| !k.is_empty() && !self.has_children(k))
            .map(|k| fmt_path(&k))
            .collect();
        if out.is_empty() {
            out.push(b"/".to_vec());
        }
        out.sort();
        out
    }

    fn lookup(&self, path: &[u8]) -> Option<P> {
        let p = parse(path).ok()?;
        self.nodes.contains_key(&p).then_some(p)
    }

    fn add(&mut self, path: &[u8], next: &mut u64, counting: bool) -> Result<P, TrieError> {
        let comps = parse(path)?;
        for i in 1..=comps.len() {
            match self.get(&comps[..i]) {
                Some((true, _)) => {}
                Some((false, _)) => return Err(TrieError::NotADirectory),
                None => {
                    let v = if counting {
                        *next += 1;
                        *next
                    } else {
                        0
                    };
                    self.nodes.insert(comps[..i].to_vec(), (true, v));
                }
            }
        }
        Ok(comps)
    }

    fn walk_dirs(&self, dirs: &[Vec<u8>]) -> Result<(), TrieError> {
        for i in 1..=dirs.len() {
            match self.get(&dirs[..i]) {
                None => return Err(TrieError::NotFound),
                Some((false, _)) => return Err(TrieError::NotADirectory),
                Some((true, _)) => {}
            }
        }
        Ok(())
    }

    /// Removes the subtree at `p`, returning (path, value) pairs.
    fn take_subtree(&mut self, p: &[Vec<u8>]) -> Vec<(P, (bool, u64))> {
        let keys = self.subtree(p);
        keys.into_iter()
            .map(|k| {
                let v = self.nodes.remove(&k).unwrap();
                (k, v)
            })
            .collect()
    }

    fn remove(&mut self, path: &[u8]) -> Result<Vec<(P, (bool, u64))>, TrieError> {
        let comps = parse(path)?;
        let Some((_, dirs)) = comps.split_last() else {
            return Err(TrieError::Root);
        };
        self.walk_dirs(dirs)?;
        if self.get(&comps).is_none() {
            return Err(TrieError::NotFound);
        }
        Ok(self.take_subtree(&comps))
    }

    fn split_parent(&self, path: &[u8]) -> Result<(P, Vec<u8>), TrieError> {
        let comps = parse(path)?;
        let Some((last, dirs)) = comps.split_last() else {
            return Err(TrieError::Root);
        };
        self.walk_dirs(dirs)?;
        Ok((dirs.to_vec(), last.clone()))
    }

    fn dir_at(&self, p: &[Vec<u8>]) -> Result<(), TrieError> {
        match self.get(p) {
            None => Err(TrieError::NotFound),
            Some((false, _)) => Err(TrieError::NotADirectory),
            Some((true, _)) => Ok(()),
        }
    }

    fn move_subtree(&mut self, from: &[Vec<u8>], to: &[Vec<u8>]) {
        for (k, v) in self.take_subtree(from) {
            let mut nk = to.to_vec();
            nk.extend_from_slice(&k[from.len()..]);
            self.nodes.insert(nk, v);
        }
    }

    fn move_entry(&mut self, p: &[Vec<u8>], n: &[u8], np: &[Vec<u8>], nn: &[u8]) -> Result<P, TrieError> {
        check_name(nn)?;
        self.dir_at(p)?;
        let src = join(p, n);
        if self.get(&src).is_none() {
            return Err(TrieError::NotFound);
        }
        self.dir_at(np)?;
        let dst = join(np, nn);
        if self.get(&dst).is_some() {
            if p == np && n == nn {
                return Ok(src);
            }
            return Err(TrieError::Exists);
        }
        if np.starts_with(&src) {
            return Err(TrieError::InvalidMove);
        }
        self.move_subtree(&src, &dst);
        Ok(dst)
    }

    fn rename(&mut self, from: &[u8], to: &[u8]) -> Result<P, TrieError> {
        let (fp, fname) = self.split_parent(from)?;
        let (tp, tname) = self.split_parent(to)?;
        self.move_entry(&fp, &fname, &tp, &tname)
    }

    fn insert(&mut self, p: &[Vec<u8>], n: &[u8], dir: bool, value: u64) -> Result<P, TrieError> {
        check_name(n)?;
        self.dir_at(p)?;
        let k = join(p, n);
        if self.get(&k).is_some() {
            return Err(TrieError::Exists);
        }
        self.nodes.insert(k.clone(), (dir, value));
        Ok(k)
    }

    fn unlink(&mut self, p: &[Vec<u8>], n: &[u8]) -> Result<u64, TrieError> {
        self.dir_at(p)?;
        let k = join(p, n);
        if self.get(&k).is_none() {
            return Err(TrieError::NotFound);
        }
        if self.has_children(&k) {
            return Err(TrieError::NotEmpty);
        }
        Ok(self.nodes.remove(&k).unwrap().1)
    }

    fn exchange(&mut self, p1: &[Vec<u8>], n1: &[u8], p2: &[Vec<u8>], n2: &[u8]) -> Result<(), TrieError> {
        // Both parents are checked before either name.
        self.dir_at(p1)?;
        self.dir_at(p2)?;
        let a = join(p1, n1);
        if self.get(&a).is_none() {
            return Err(TrieError::NotFound);
        }
        let b = join(p2, n2);
        if self.get(&b).is_none() {
            return Err(TrieError::NotFound);
        }
        if a == b {
            return Ok(());
        }
        if p2.starts_with(&a) || p1.starts_with(&b) {
            return Err(TrieError::InvalidMove);
        }
        let sa = self.take_subtree(&a);
        let sb = self.take_subtree(&b);
        for (k, v) in sa {
            let mut nk = b.clone();
            nk.extend_from_slice(&k[a.len()..]);
            assert!(self.nodes.insert(nk, v).is_none(), "model: exchange overlap");
        }
        for (k, v) in sb {
            let mut nk = a.clone();
            nk.extend_from_slice(&k[b.len()..]);
            assert!(self.nodes.insert(nk, v).is_none(), "model: exchange overlap");
        }
        Ok(())
    }
}

struct State {
    t: Trie<u64>,
    mask: u64,
    m: Model,
    next: u64,
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

impl State {
    /// Resolves `at` to a model path and the trie's node for it.
    fn resolve(&self, at: &At) -> Option<(P, NodeId)> {
        match at {
            At::Existing(i) => {
                let n = self.m.nodes.len();
                let p = self.m.nodes.keys().nth(*i as usize % n).unwrap().clone();
                let id = self.t.lookup(os(&fmt_path(&p)));
                assert!(id.is_some(), "lookup of existing {:?} failed", show(&fmt_path(&p)));
                Some((p, id.unwrap()))
            }
            At::Path(path) => {
                let want = self.m.lookup(&path.0);
                let got = self.t.lookup(path.os());
                assert_eq!(want.is_some(), got.is_some(), "lookup({path:?})");
                Some((want?, got?))
            }
        }
    }

    fn id_of(&self, p: &[Vec<u8>]) -> NodeId {
        self.t
            .lookup(os(&fmt_path(p)))
            .unwrap_or_else(|| panic!("{} missing from trie", show(&fmt_path(p))))
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Add(path) | Op::AddWith(path) => {
                let counting = matches!(op, Op::AddWith(_));
                let mut model_next = self.next;
                let want = self.m.add(&path.0, &mut model_next, counting);
                let got = if counting {
                    let mut n = self.next;
                    let r = self.t.add_with(path.os(), &mut || {
                        n += 1;
                        n
                    });
                    assert_eq!(n, model_next, "add_with({path:?}) created a different number of directories");
                    r
                } else {
                    self.t.add(path.os())
                };
                self.next = model_next;
                match (want, got) {
                    (Ok(p), Ok(id)) => assert_eq!(self.id_of(&p), id, "add({path:?}) returned wrong node"),
                    (Err(a), Err(b)) => assert_eq!(a, b, "add({path:?}) error"),
                    (w, g) => panic!("add({path:?}): model {w:?}, trie {g:?}"),
                }
            }
            Op::Remove(path) => {
                let want = self.m.remove(&path.0);
                let got = self.t.remove(path.os());
                match (want, got) {
                    (Ok(removed), Ok(vals)) => {
                        let mut a: Vec<u64> = removed.iter().map(|(_, v)| v.1).collect();
                        let mut b = vals.clone();
                        a.sort();
                        b.sort();
                        assert_eq!(a, b, "remove({path:?}) returned values");
                        // Children before parents (checked on unique values).
                        let pos: BTreeMap<u64, usize> =
                            vals.iter().enumerate().map(|(i, &v)| (v, i)).collect();
                        for (pa, (_, va)) in &removed {
                            for (pb, (_, vb)) in &removed {
                                if *va != 0 && *vb != 0 && pb.len() > pa.len() && pb.starts_with(pa) {
                                    assert!(
                                        pos[vb] < pos[va],
                                        "remove({path:?}): {} returned after its ancestor {}",
                                        show(&fmt_path(pb)),
                                        show(&fmt_path(pa))
                                    );
                                }
                            }
                        }
                    }
                    (Err(a), Err(b)) => assert_eq!(a, b, "remove({path:?}) error"),
                    (w, g) => panic!("remove({path:?}): model {w:?}, trie {g:?}"),
                }
            }
            Op::Rename(from, to) => {
                let want = self.m.rename(&from.0, &to.0);
                let got = self.t.rename(from.os(), to.os());
                match (want, got) {
                    (Ok(p), Ok(id)) => assert_eq!(self.id_of(&p), id, "rename({from:?}, {to:?}) returned wrong node"),
                    (Err(a), Err(b)) => assert_eq!(a, b, "rename({from:?}, {to:?}) error"),
                    (w, g) => panic!("rename({from:?}, {to:?}): model {w:?}, trie {g:?}"),
                }
            }
            Op::Exists(path) => {
                assert_eq!(self.m.lookup(&path.0).is_some(), self.t.exists(path.os()), "exists({path:?})");
            }
            Op::Lookup(path) => {
                let want = self.m.lookup(&path.0);
                let got = self.t.lookup(path.os());
                match (want, got) {
                    (Some(p), Some(id)) => {
                        let (dir, v) = self.m.get(&p).unwrap();
                        assert_eq!(self.t.is_dir(id), dir, "is_dir of {path:?}");
                        assert_eq!(self.t.value(id), Some(&v), "value of {path:?}");
                        assert_eq!(self.t.path_of(id).into_vec(), fmt_path(&p), "path_of(lookup({path:?}))");
                    }
                    (None, None) => {}
                    (w, g) => panic!("lookup({path:?}): model {w:?}, trie {g:?}"),
                }
            }
            Op::Components(path) => {
                let want = parse(&path.0);
                let got = Trie::<u64>::components(path.os())
                    .map(|v| v.into_iter().map(|c| c.as_bytes().to_vec()).collect::<P>());
                assert_eq!(want, got, "components({path:?})");
            }
            Op::Insert { parent, name, dir } => {
                let Some((pp, pid)) = self.resolve(parent) else { return };
                self.next += 1;
                let v = self.next;
                let want = self.m.insert(&pp, &name.0, *dir, v);
                let got = self.t.insert(pid, name.os(), v, Shape::dir_if(*dir));
                let what = format!("insert({}, {name:?}, dir={dir})", show(&fmt_path(&pp)));
                match (want, got) {
                    (Ok(p), Ok(id)) => assert_eq!(self.id_of(&p), id, "{what} returned wrong node"),
                    (Err(a), Err(b)) => assert_eq!(a, b, "{what} error"),
                    (w, g) => panic!("{what}: model {w:?}, trie {g:?}"),
                }
            }
            Op::Unlink { parent, name } => {
                let Some((pp, pid)) = self.resolve(parent) else { return };
                let want = self.m.unlink(&pp, &name.0);
                let got = self.t.unlink(pid, name.os());
                let what = format!("unlink({}, {name:?})", show(&fmt_path(&pp)));
                match (want, got) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b, "{what} returned value"),
                    (Err(a), Err(b)) => assert_eq!(a, b, "{what} error"),
                    (w, g) => panic!("{what}: model {w:?}, trie {g:?}"),
                }
            }
            Op::MoveEntry { parent, name, new_parent, new_name } => {
                let Some((pp, pid)) = self.resolve(parent) else { return };
                let Some((np, npid)) = self.resolve(new_parent) else { return };
                let want = self.m.move_entry(&pp, &name.0, &np, &new_name.0);
                let got = self.t.move_entry(pid, name.os(), npid, new_name.os());
                let what = format!(
                    "move_entry({}, {name:?}, {}, {new_name:?})",
                    show(&fmt_path(&pp)),
                    show(&fmt_path(&np))
                );
                match (want, got) {
                    (Ok(p), Ok(id)) => assert_eq!(self.id_of(&p), id, "{what} returned wrong node"),
                    (Err(a), Err(b)) => assert_eq!(a, b, "{what} error"),
                    (w, g) => panic!("{what}: model {w:?}, trie {g:?}"),
                }
            }
            Op::Exchange { p1, n1, p2, n2 } => {
                let Some((a, aid)) = self.resolve(p1) else { return };
                let Some((b, bid)) = self.resolve(p2) else { return };
                let want = self.m.exchange(&a, &n1.0, &b, &n2.0);
                let got = self.t.exchange(aid, n1.os(), bid, n2.os());
                let what = format!("exchange({}, {n1:?}, {}, {n2:?})", show(&fmt_path(&a)), show(&fmt_path(&b)));
                assert_eq!(want, got, "{what}");
            }
            Op::ChildrenAfter { dir, after, page } => {
                let Some((p, id)) = self.resolve(dir) else { return };
                let page = (*page as usize % 5) + 1;
                let mut want = self.m.children(&p);
                if let Some(a) = after {
                    want.retain(|c| c.as_slice() > a.0.as_slice());
                }
                let mut got: Vec<(Vec<u8>, NodeId)> = Vec::new();
                let mut cursor: Option<Vec<u8>> = after.as_ref().map(|a| a.0.clone());
                loop {
                    let batch: Vec<(Vec<u8>, NodeId)> = self
                        .t
                        .children_after(id, cursor.as_deref())
                        .take(page)
                        .map(|(n, c)| (n.as_bytes().to_vec(), c))
                        .collect();
                    if batch.is_empty() {
                        break;
                    }
                    cursor = Some(batch.last().unwrap().0.clone());
                    got.extend(batch);
                    assert!(got.len() <= want.len() + 1, "children_after of {} does not end", show(&fmt_path(&p)));
                }
                let names: Vec<Vec<u8>> = got.iter().map(|(n, _)| n.clone()).collect();
                assert_eq!(names, want, "children_after({}, {after:?}) paged by {page}", show(&fmt_path(&p)));
                for (n, c) in &got {
                    assert_eq!(self.id_of(&join(&p, n)), *c, "children_after node id");
                    assert_eq!(self.t.child(id, os(n)), Some(*c), "child()");
                }
            }
            Op::EntriesFrom { dir, from } => {
                let Some((p, id)) = self.resolve(dir) else { return };
                let from = match from {
                    From::Zero => 0,
                    From::CookieOf(n, plus) => self.t.cookie(&n.0) + u64::from(*plus),
                    From::Raw(r) => *r,
                };
                let all = self.entries(id);
                let got: Vec<(u64, Vec<u8>, NodeId)> = self
                    .t
                    .entries_from(id, from)
                    .map(|(c, n, i)| (c, n.as_bytes().to_vec(), i))
                    .collect();
                let want: Vec<(u64, Vec<u8>, NodeId)> = all.iter().filter(|e| e.0 >= from).cloned().collect();
                assert_eq!(got, want, "entries_from({}, {from}) is not the full listing's tail", show(&fmt_path(&p)));
                // Resuming after each entry as readdir does (cookie + 1)
                // gives exactly the entries with larger cookies.
                for (c, _, _) in &all {
                    let tail: Vec<u64> = self.t.entries_from(id, c + 1).map(|e| e.0).collect();
                    let want: Vec<u64> = all.iter().map(|e| e.0).filter(|k| k > c).collect();
                    assert_eq!(tail, want, "entries_from({}, {c} + 1)", show(&fmt_path(&p)));
                }
            }
            Op::Leaves => {
                let got: Vec<Vec<u8>> = self.t.leaves().into_iter().map(OsString::into_vec).collect();
                assert_eq!(got, self.m.leaves_under(&[]), "leaves()");
            }
            Op::LeavesUnder(at) => {
                let Some((p, id)) = self.resolve(at) else { return };
                let got: Vec<Vec<u8>> = self.t.leaves_under(id).into_iter().map(OsString::into_vec).collect();
                assert_eq!(got, self.m.leaves_under(&p), "leaves_under({})", show(&fmt_path(&p)));
            }
            Op::PathOf(at) => {
                let Some((p, id)) = self.resolve(at) else { return };
                assert_eq!(self.t.path_of(id).into_vec(), fmt_path(&p), "path_of");
                let parent = self.t.parent(id);
                if p.is_empty() {
                    assert_eq!(parent, None, "parent of root");
                } else {
                    assert_eq!(parent, Some(self.id_of(&p[..p.len() - 1])), "parent()");
                }
            }
        }
    }

    /// The full cookie-ordered listing of `id`, checked for order, cookie
    /// values and agreement with the name-ordered children.
    fn entries(&self, id: NodeId) -> Vec<(u64, Vec<u8>, NodeId)> {
        let all: Vec<(u64, Vec<u8>, NodeId)> = self
            .t
            .entries_from(id, 0)
            .map(|(c, n, i)| (c, n.as_bytes().to_vec(), i))
            .collect();
        for w in all.windows(2) {
            assert!(w[0].0 <= w[1].0, "entries_from out of cookie order");
        }
        for (c, n, _) in &all {
            assert_eq!(*c, self.t.cookie(n), "entry cookie is not cookie(name)");
            assert!(*c >= FIRST_COOKIE && *c < 1 << 62, "cookie {c} out of range");
            assert!(*c - FIRST_COOKIE <= self.mask, "cookie {c} outside mask {:#x}", self.mask);
        }
        let mut by_name: Vec<(Vec<u8>, NodeId)> = all.iter().map(|(_, n, i)| (n.clone(), *i)).collect();
        by_name.sort();
        let sorted: Vec<(Vec<u8>, NodeId)> =
            self.t.children(id).map(|(n, i)| (n.as_bytes().to_vec(), i)).collect();
        assert_eq!(by_name, sorted, "entries_from and children disagree");
        all
    }

    /// Walks the whole trie and compares it with the model.
    fn check(&self) {
        let mut seen: BTreeMap<P, (bool, u64)> = BTreeMap::new();
        let mut stack: Vec<(P, NodeId)> = vec![(Vec::new(), self.t.root())];
        let mut ids = Vec::new();
        while let Some((p, id)) = stack.pop() {
            assert!(seen.len() <= self.m.nodes.len(), "trie has more nodes than the model (cycle?)");
            let dir = self.t.is_dir(id);
            seen.insert(p.clone(), (dir, *self.t.value(id).expect("value of live node")));
            ids.push(id);
            let kids: Vec<(Vec<u8>, NodeId)> =
                self.t.children(id).map(|(n, c)| (n.as_bytes().to_vec(), c)).collect();
            assert_eq!(kids.len(), self.t.child_count(id), "child_count");
            self.entries(id);
            if !dir {
                assert!(kids.is_empty(), "leaf with children");
            }
            for (n, c) in kids {
                assert_eq!(self.t.parent(c), Some(id), "parent link of {}", show(&fmt_path(&join(&p, &n))));
                stack.push((join(&p, &n), c));
            }
        }
        if seen != self.m.nodes {
            let extra: Vec<String> = seen.keys().filter(|k| !self.m.nodes.contains_key(*k)).map(|k| show(&fmt_path(k))).collect();
            let missing: Vec<String> = self.m.nodes.keys().filter(|k| !seen.contains_key(*k)).map(|k| show(&fmt_path(k))).collect();
            let differ: Vec<String> = seen
                .iter()
                .filter(|(k, v)| self.m.nodes.get(*k).is_some_and(|m| m != *v))
                .map(|(k, v)| format!("{} trie {v:?} model {:?}", show(&fmt_path(k)), self.m.nodes[k]))
                .collect();
            panic!("trie differs from model: extra {extra:?}, missing {missing:?}, differing {differ:?}");
        }
        assert_eq!(self.t.len(), self.m.nodes.len(), "len()");
        assert_eq!(self.t.is_empty(), self.m.nodes.len() == 1, "is_empty()");
        assert_eq!(self.t.nodes().count(), self.t.len(), "nodes().count() != len()");
        ids.sort();
        let mut live: Vec<NodeId> = self.t.nodes().map(|(id, _, _, _)| id).collect();
        live.sort();
        assert_eq!(ids, live, "nodes() differs from the reachable nodes");
        for (id, parent, v, dir) in self.t.nodes() {
            assert_eq!(parent, self.t.parent(id), "nodes() parent");
            assert_eq!(Some(v), self.t.value(id), "nodes() value");
            assert_eq!(dir, self.t.is_dir(id), "nodes() is_dir");
        }
        for (p, _) in &self.m.nodes {
            let id = self.id_of(p);
            assert_eq!(self.t.path_of(id).into_vec(), fmt_path(p), "path_of");
        }
        let leaves: Vec<Vec<u8>> = self.t.leaves().into_iter().map(OsString::into_vec).collect();
        assert_eq!(leaves, self.m.leaves_under(&[]), "leaves()");
    }
}

fn show(b: &[u8]) -> String {
    format!("{:?}", Name(b.to_vec()))
}

fuzz_target!(|input: Input| {
    let (t, mask) = match input.mask {
        Mask::Full => (Trie::new(), u64::MAX >> 2),
        Mask::Tiny(m) => {
            let m = [0, 1, 3, 7][m as usize % 4];
            (Trie::new().with_cookie_mask(m), m)
        }
    };
    let mut s = State {
        t,
        mask,
        m: Model::new(),
        next: 0,
    };
    for op in &input.ops {
        s.apply(op);
        s.check();
    }
});
