//! Durable state and the simulated power cut (`-o crash`, `triefs crash`).
//!
//! With tracking on, every file and directory has a *durable* state: what
//! a disk would still hold after a power cut. The model (docs/crash.md):
//! a file's data, size, attributes and extended attributes become durable
//! at its `fsync`/`fdatasync`; a directory's entries and attributes at its
//! own `fsync`; a rename becomes durable in both directories at once when
//! either is synced, and with it every earlier rename, those inside one
//! directory included (a journal's order: no file keeps its first name and
//! gains its last, no two directories end up inside each other); the
//! whole tree is durable at mount, load, restore and after a crash.
//!
//! Nothing is copied up front. The first change of an inode after its
//! sync point records its state at that point ([`Record`]): a file's
//! record shares the page map (`Arc<FileData>`, copy-on-write, so only
//! pages rewritten since cost memory), a directory's record is its entry
//! list. An inode created since the sync point is recorded as created
//! (empty). An inode without a record is durable as it is. A sync drops
//! the record; a crash builds the tree from live inodes and records, with
//! the same inode numbers, and installs it as a checkpoint restore does.
//!
//! What a record holds is bounded by what exists or existed since the
//! sync point: records of removed inodes are kept only while a durable
//! name (a directory's record or a pending rename) refers to them, which
//! a reference count per inode number tells; their numbers are not given
//! to new files meanwhile. At most [`MAX_PENDING_RENAMES`] renames wait;
//! beyond that the oldest becomes durable, as a journal commits on its
//! own.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::checkpoint::{Restored, Tree};
use super::inode::{Content, Inode, InodeTable, Kind, ROOT_INO, Xattrs};
use super::{Namespace, err};
use crate::error::Result;

/// Most renames that wait for a sync; the oldest
/// beyond becomes durable by itself.
pub const MAX_PENDING_RENAMES: usize = 1 << 16;

/// The state of one inode at its sync point.
struct State {
    /// Attributes and contents (a directory's node is not kept).
    inode: Inode,
    xattrs: Option<Xattrs>,
}

/// What changed of one inode since its sync point.
#[derive(Default)]
struct Record {
    /// Its state then (`None`: unchanged, the live state is durable).
    state: Option<Box<State>>,
    /// A directory's entries then (`None`: unchanged).
    entries: Option<BTreeMap<Box<[u8]>, u32>>,
    /// Directories removed from this one since (their renames out must
    /// become durable with their removal).
    removed: Vec<u64>,
}

impl Record {
    fn is_empty(&self) -> bool {
        self.state.is_none() && self.entries.is_none() && self.removed.is_empty()
    }
}

/// One rename, not durable yet: in each of its directories (the same one
/// twice for a rename inside a directory), a name
/// that then led to an inode (or to nothing).
struct Rename {
    steps: [(u64, Box<[u8]>, Option<u32>); 2],
}

/// The durable state of a tracked namespace: records of what changed
/// since each inode's sync point.
#[derive(Default)]
pub struct Durable {
    records: HashMap<u64, Record>,
    renames: VecDeque<Rename>,
    /// Durable names per inode number: entries of directory records and
    /// of pending renames. A removed inode's record lives while this is
    /// above 0.
    refs: HashMap<u64, u32>,
    /// Directories pending renames name, with how many: their numbers are
    /// not given to new inodes until those renames are durable (a rename
    /// applied later must not reach a new directory of the same number).
    rename_dirs: HashMap<u64, u32>,
    /// Records dropped, to be released with page accounting
    /// ([`Namespace::settle_durable`]).
    dead: Vec<Inode>,
}

impl Durable {
    fn add_ref(&mut self, ino: u32) {
        *self.refs.entry(u64::from(ino)).or_default() += 1;
    }
}

/// What a crash did, for the one-line summary.
#[derive(Debug, Default)]
pub struct Crashed {
    /// What the kernel must forget (as for a restore).
    pub restored: Restored,
    /// Live inodes whose state went back to an earlier sync point.
    pub reverted: u64,
    /// Live inodes with a name that no durable name reaches: gone.
    pub lost: u64,
    /// Names in changed directories that no longer lead where they did.
    pub names_dropped: u64,
    /// Names in changed directories that came back (removed since the
    /// sync point, or leading elsewhere).
    pub names_back: u64,
}

/// Recording, in the inode table (every change of an inode passes
/// through it).
impl InodeTable {
    /// A copy of live inode `ino`'s state.
    fn state_of(&self, ino: u64) -> Option<Box<State>> {
        let i = self.get(ino)?;
        let mut inode = i.copy();
        if inode.kind == Kind::Directory {
            inode.content = Content::Dir(None);
        }
        Some(Box::new(State {
            inode,
            xattrs: self.xattrs(ino).cloned(),
        }))
    }

    /// Records `ino`'s state before its first change since its sync point.
    pub(crate) fn record_durable(&mut self, ino: u64) {
        let recorded = self
            .durable
            .as_ref()
            .is_none_or(|d| d.records.get(&ino).is_some_and(|r| r.state.is_some()));
        if recorded {
            return;
        }
        let Some(state) = self.state_of(ino) else {
            return;
        };
        if let Some(d) = self.durable.as_mut() {
            d.records.entry(ino).or_default().state = Some(state);
        }
    }

    /// Records new inode `ino` as created: its state now is what a durable
    /// name of it brings back (an empty file or directory).
    pub(crate) fn record_created(&mut self, ino: u64) {
        let Some(state) = self.state_of(ino) else {
            return;
        };
        let Some(d) = self.durable.as_mut() else {
            return;
        };
        let is_dir = state.inode.kind == Kind::Directory;
        let r = d.records.entry(ino).or_default();
        if let Some(old) = r.state.replace(state) {
            d.dead.push(old.inode);
        }
        if is_dir && r.entries.is_none() {
            r.entries = Some(BTreeMap::new());
        }
    }

    /// Inode `ino` is about to be freed: keep its state while a durable
    /// name refers to it, else drop its record.
    pub(crate) fn record_freed(&mut self, ino: u64) {
        let referenced = self
            .durable
            .as_ref()
            .is_some_and(|d| d.refs.get(&ino).is_some_and(|&n| n > 0));
        if referenced {
            self.record_durable(ino);
        } else if let Some(mut d) = self.durable.take() {
            // Inodes its entries named that are still live keep their
            // records (`ino` itself is still in the table here).
            drop_record(&mut d, ino, &|i| self.get(i).is_some());
            self.durable = Some(d);
        }
    }

    /// Whether a record or a pending rename holds number `ino` (not to be
    /// reused).
    pub(crate) fn durable_holds(&self, ino: u64) -> bool {
        self.durable
            .as_ref()
            .is_some_and(|d| d.records.contains_key(&ino) || d.rename_dirs.contains_key(&ino))
    }
}

/// Drops the record of `ino` and, through the references its entries
/// held, the records of removed inodes nothing refers to any more
/// (`live` tells which numbers are live inodes: their records stay).
fn drop_record(d: &mut Durable, ino: u64, live: &dyn Fn(u64) -> bool) {
    let mut work = vec![ino];
    while let Some(ino) = work.pop() {
        let Some(r) = d.records.remove(&ino) else {
            continue;
        };
        if let Some(s) = r.state {
            d.dead.push(s.inode);
        }
        for v in r.entries.into_iter().flat_map(|e| e.into_values()) {
            if unref(d, u64::from(v)) && !live(u64::from(v)) {
                work.push(u64::from(v));
            }
        }
    }
}

/// Drops one durable name of `ino`; true when none is left.
fn unref(d: &mut Durable, ino: u64) -> bool {
    match d.refs.get_mut(&ino) {
        Some(n) if *n > 1 => {
            *n -= 1;
            false
        }
        Some(_) => {
            d.refs.remove(&ino);
            true
        }
        None => true,
    }
}

impl Namespace {
    /// Starts tracking durable state (`-o crash`): everything now is
    /// durable (the mount is a sync point).
    pub fn track_durability(&mut self) {
        self.durable_on = true;
        self.reset_durable();
        self.resume_durable();
    }

    /// Whether durable state is tracked.
    pub fn tracks_durability(&self) -> bool {
        self.durable_on
    }

    /// Drops every record (a sync point of the whole tree), releasing the
    /// pages only they held.
    pub(crate) fn reset_durable(&mut self) {
        if let Some(d) = self.inodes.durable.take() {
            let Durable { records, dead, .. } = *d;
            let mut freed = 0;
            for i in dead {
                freed += i.release();
            }
            for (_, r) in records {
                if let Some(s) = r.state {
                    freed += s.inode.release();
                }
            }
            self.pages_freed(freed);
            self.inodes.unpark();
        }
    }

    /// Tracks again after [`Namespace::reset_durable`] if the mount does.
    pub(crate) fn resume_durable(&mut self) {
        if self.durable_on && self.inodes.durable.is_none() {
            self.inodes.durable = Some(Box::default());
        }
    }

    /// Releases records dropped since the last call, with their pages.
    pub(crate) fn settle_durable(&mut self) {
        let Some(d) = self.inodes.durable.as_mut() else {
            return;
        };
        if d.dead.is_empty() {
            return;
        }
        let dead = std::mem::take(&mut d.dead);
        let freed = dead.into_iter().map(Inode::release).sum();
        self.pages_freed(freed);
    }

    /// Records the state of `ino` before a change whose space is computed
    /// first (a write must see the page map it will share with the record).
    pub(crate) fn note_change(&mut self, ino: u64) {
        if self.inodes.durable.is_some() {
            self.inodes.record_durable(ino);
        }
    }

    /// Records directory `dir`'s entries before their first change since
    /// its sync point.
    pub(crate) fn note_entries(&mut self, dir: u64) {
        let Some(d) = self.inodes.durable.as_ref() else {
            return;
        };
        if d.records.get(&dir).is_some_and(|r| r.entries.is_some()) {
            return;
        }
        let node = self.inodes.get(dir).and_then(|i| i.dir_node());
        let entries: BTreeMap<Box<[u8]>, u32> = node
            .into_iter()
            .flat_map(|n| self.trie.children(n))
            .map(|(name, c)| {
                let v = self.trie.value(c).copied().unwrap_or(0);
                (Box::from(name.as_bytes()), v)
            })
            .collect();
        let Some(d) = self.inodes.durable.as_mut() else {
            return;
        };
        for &v in entries.values() {
            d.add_ref(v);
        }
        d.records.entry(dir).or_default().entries = Some(entries);
    }

    /// Directory `dir` was removed from `parent` (rmdir, or replaced by a
    /// rename).
    pub(crate) fn note_removed_dir(&mut self, parent: u64, dir: u64) {
        if let Some(d) = self.inodes.durable.as_mut() {
            // Those removed from it before come along: its record may go
            // when it is freed.
            let mut removed = d
                .records
                .get_mut(&dir)
                .map_or_else(Vec::new, |r| std::mem::take(&mut r.removed));
            if d.records.get(&dir).is_some_and(Record::is_empty) {
                d.records.remove(&dir);
            }
            removed.push(dir);
            d.records.entry(parent).or_default().removed.extend(removed);
        }
    }

    /// A rename (also inside one directory): `steps` are each directory's
    /// name and what it leads to now.
    pub(crate) fn note_rename(&mut self, steps: [(u64, &OsStr, Option<u64>); 2]) {
        let Some(d) = self.inodes.durable.as_mut() else {
            return;
        };
        let steps = steps.map(|(dir, name, ino)| {
            *d.rename_dirs.entry(dir).or_default() += 1;
            let ino = ino.map(|i| i as u32);
            if let Some(i) = ino {
                d.add_ref(i);
            }
            (dir, Box::from(name.as_bytes()), ino)
        });
        d.renames.push_back(Rename { steps });
        if d.renames.len() > MAX_PENDING_RENAMES {
            self.commit_renames(1);
        }
    }

    /// The whiteout `ino` a rename left at the source name: part of the
    /// last rename (durable with it).
    pub(crate) fn note_whiteout(&mut self, ino: u64) {
        if let Some(d) = self.inodes.durable.as_mut()
            && let Some(r) = d.renames.back_mut()
            && r.steps[0].2.is_none()
        {
            r.steps[0].2 = Some(ino as u32);
            d.add_ref(ino as u32);
        }
    }

    /// Makes the `n` oldest pending renames durable in both directories.
    fn commit_renames(&mut self, n: usize) {
        let Some(mut d) = self.inodes.durable.take() else {
            return;
        };
        for _ in 0..n {
            let Some(r) = d.renames.pop_front() else {
                break;
            };
            for (dir, name, ino) in r.steps {
                match d.rename_dirs.get_mut(&dir) {
                    Some(n) if *n > 1 => *n -= 1,
                    _ => {
                        d.rename_dirs.remove(&dir);
                    }
                }
                let old = d
                    .records
                    .get_mut(&dir)
                    .and_then(|rec| rec.entries.as_mut())
                    .and_then(|e| match ino {
                        Some(i) => e.insert(name, i),
                        None => e.remove(&name),
                    });
                let gained = d.records.get(&dir).is_some_and(|rec| rec.entries.is_some());
                // The rename's own reference moves into the record.
                if let Some(i) = ino
                    && !gained
                {
                    self.unref_removed(&mut d, u64::from(i));
                }
                if let Some(o) = old {
                    self.unref_removed(&mut d, u64::from(o));
                }
            }
        }
        self.inodes.durable = Some(d);
    }

    /// Drops one durable name of `ino`; a removed inode with none left
    /// loses its record.
    fn unref_removed(&self, d: &mut Durable, ino: u64) {
        if unref(d, ino) && self.inodes.get(ino).is_none() {
            drop_record(d, ino, &|i| self.inodes.get(i).is_some());
        }
    }

    /// `fsync`/`fdatasync` of a file, `fsync` of a directory: its state
    /// now is durable (for a directory, its entries too, and every rename
    /// it took part in with those before). Nothing to do without
    /// tracking.
    pub fn fsync(&mut self, ino: u64) -> Result<()> {
        let kind = self.inode(ino)?.kind;
        if self.inodes.durable.is_none() {
            return Ok(());
        }
        if kind == Kind::Directory {
            self.commit_dir(ino);
        }
        if let Some(d) = self.inodes.durable.as_mut()
            && let Some(r) = d.records.get_mut(&ino)
        {
            if let Some(s) = r.state.take() {
                d.dead.push(s.inode);
            }
            if r.is_empty() {
                d.records.remove(&ino);
            }
        }
        self.settle_durable();
        Ok(())
    }

    /// Makes directory `dir`'s entries durable, with the renames it took
    /// part in (and all earlier ones) and the directories removed from it
    /// (their entries, and renames out of them).
    fn commit_dir(&mut self, dir: u64) {
        let Some(d) = self.inodes.durable.as_ref() else {
            return;
        };
        let mut dirs = vec![dir];
        // A removed directory's number may name a new inode by now (its
        // record went when it was freed): only removed ones count.
        let removed = |x: &u64| {
            self.inodes
                .get(*x)
                .is_none_or(|i| i.kind == Kind::Directory && i.dir_node().is_none())
        };
        let removed_dirs = d
            .records
            .get(&dir)
            .into_iter()
            .flat_map(|r| r.removed.iter());
        dirs.extend(removed_dirs.copied().filter(removed));
        let seen: HashSet<u64> = dirs.iter().copied().collect();
        let last = d
            .renames
            .iter()
            .rposition(|r| r.steps.iter().any(|s| seen.contains(&s.0)));
        if let Some(k) = last {
            self.commit_renames(k + 1);
        }
        let Some(mut d) = self.inodes.durable.take() else {
            return;
        };
        if let Some(r) = d.records.get_mut(&dir) {
            r.removed.clear();
        }
        for x in dirs {
            let live = x == dir;
            let Some(r) = d.records.get_mut(&x) else {
                continue;
            };
            // A removed directory was empty when it went.
            let entries = if live {
                r.entries.take()
            } else {
                r.entries.replace(BTreeMap::new())
            };
            if r.is_empty() {
                d.records.remove(&x);
            }
            for v in entries.into_iter().flat_map(|e| e.into_values()) {
                self.unref_removed(&mut d, u64::from(v));
            }
            if !live && !d.refs.contains_key(&x) {
                drop_record(&mut d, x, &|i| self.inodes.get(i).is_some());
            }
        }
        self.inodes.durable = Some(d);
        // Numbers of records dropped may be handed out again.
        self.inodes.unpark();
    }

    /// The durable state of inode `ino`: its record, else its live state.
    fn durable_state(&self, d: &Durable, ino: u64) -> Option<(Inode, Option<Xattrs>)> {
        match d.records.get(&ino).and_then(|r| r.state.as_ref()) {
            Some(s) => Some((s.inode.copy(), s.xattrs.clone())),
            None => {
                let i = self.inodes.get(ino)?;
                Some((i.copy(), self.inodes.xattrs(ino).cloned()))
            }
        }
    }

    /// The durable entries of directory `dir`: its record, else its live
    /// entries.
    fn durable_entries(&self, d: &Durable, dir: u64) -> Vec<(Box<[u8]>, u64)> {
        if let Some(e) = d.records.get(&dir).and_then(|r| r.entries.as_ref()) {
            return e.iter().map(|(k, &v)| (k.clone(), u64::from(v))).collect();
        }
        let node = self.inodes.get(dir).and_then(|i| i.dir_node());
        node.into_iter()
            .flat_map(|n| self.trie.children(n))
            .map(|(name, c)| {
                let v = self.trie.value(c).copied().unwrap_or(0);
                (Box::from(name.as_bytes()), u64::from(v))
            })
            .collect()
    }

    /// The durable tree: from the root, every durable name, with the same
    /// inode numbers and generations; link counts from the names found.
    fn durable_tree(&self, d: &Durable) -> Namespace {
        let mut t = Namespace::new(0, 0, 0o755, super::Limits::from_options(Some(0), Some(0)));
        t.trie = self.trie.empty_like();
        let root_node = t.trie.root();
        if let Some(v) = t.trie.value_mut(root_node) {
            *v = ROOT_INO as u32;
        }
        if let Some((root, x)) = self.durable_state(d, ROOT_INO)
            && let Some(r) = t.inodes.get_mut(ROOT_INO)
        {
            (r.atime, r.mtime, r.ctime) = (root.atime, root.mtime, root.ctime);
            (r.perm, r.flags, r.uid, r.gid) = (root.perm, root.flags, root.uid, root.gid);
            r.generation = root.generation;
            r.content = Content::Dir(Some(root_node));
            for (k, v) in x.iter().flatten() {
                t.inodes.set_xattr(ROOT_INO, k, v);
            }
        }
        let mut placed: HashSet<u64> = HashSet::from([ROOT_INO]);
        let mut queue = vec![ROOT_INO];
        while let Some(dir) = queue.pop() {
            let Ok(node) = t.dir_node(dir) else {
                continue;
            };
            for (name, child) in self.durable_entries(d, dir) {
                let name = OsStr::from_bytes(&name);
                if placed.contains(&child) {
                    // A second name: a hard link. A directory has one
                    // (renames are durable in order); never a second.
                    if t.inodes
                        .kind_and_node(child)
                        .is_some_and(|(k, _)| k != Kind::Directory)
                    {
                        let _ = t.attach(dir, node, name, child);
                    }
                    continue;
                }
                let Some((mut inode, x)) = self.durable_state(d, child) else {
                    log::error!("crash: inode {child} named in {dir} has no state");
                    continue;
                };
                inode.nlink = 0;
                let is_dir = inode.kind == Kind::Directory;
                if is_dir {
                    inode.content = Content::Dir(None);
                }
                if !t.inodes.adopt(child, inode, x) {
                    continue;
                }
                placed.insert(child);
                if t.attach(dir, node, name, child).is_ok() && is_dir {
                    queue.push(child);
                }
            }
        }
        t.inodes.drop_taken_from_free();
        t
    }

    /// The power cut: every file and directory falls back to its durable
    /// state (see the module docs); what the kernel must forget is in the
    /// result, as for a checkpoint restore. Afterwards everything is
    /// durable. `EOPNOTSUPP` without tracking.
    pub fn crash(&mut self) -> Result<Crashed> {
        let Some(d) = self.inodes.durable.take() else {
            return err(libc::EOPNOTSUPP);
        };
        let mut c = Crashed::default();
        let t = self.durable_tree(&d);
        for (&ino, r) in &d.records {
            let live = self.inodes.get(ino);
            if r.state.is_some()
                && live.as_ref().is_some_and(|i| i.nlink > 0)
                && t.inodes.get(ino).is_some()
            {
                c.reverted += 1;
            }
            if let (Some(e), Some(node)) = (&r.entries, live.and_then(|i| i.dir_node())) {
                let mut now: BTreeMap<&[u8], u32> = BTreeMap::new();
                for (name, n) in self.trie.children(node) {
                    now.insert(name.as_bytes(), self.trie.value(n).copied().unwrap_or(0));
                }
                c.names_dropped +=
                    now.iter().filter(|(k, v)| e.get(**k) != Some(*v)).count() as u64;
                c.names_back += e
                    .iter()
                    .filter(|(k, v)| now.get(&k[..]) != Some(*v))
                    .count() as u64;
            }
        }
        c.lost = self
            .inodes
            .iter()
            .filter(|(ino, i)| i.nlink > 0 && t.inodes.get(*ino).is_none())
            .count() as u64;
        let Namespace {
            trie,
            mut inodes,
            extra_names,
            ..
        } = t;
        inodes.inherit_generations(&self.inodes);
        c.restored = self.install_tree(
            Tree {
                trie,
                inodes,
                extra_names,
            },
            "crash",
        );
        // The records go now, with the pages only they held (the new tree
        // shares what it took from them).
        let Durable { records, dead, .. } = *d;
        let mut freed: u64 = dead.into_iter().map(Inode::release).sum();
        for (_, r) in records {
            if let Some(s) = r.state {
                freed += s.inode.release();
            }
        }
        self.pages_freed(freed);
        self.inodes.unpark();
        self.resume_durable();
        Ok(c)
    }
}

/// The consistency check of the records.
impl Durable {
    /// The pages of the records' file data not counted before (see
    /// [`Namespace::check`]).
    pub(crate) fn count_pages(&self, distinct: &mut super::check::Distinct) -> u64 {
        let states = self.records.values().filter_map(|r| r.state.as_ref());
        states
            .filter_map(|s| s.inode.file())
            .chain(self.dead.iter().filter_map(Inode::file))
            .map(|f| distinct.count(f))
            .sum()
    }
}

impl Namespace {
    /// Violations in the records `d`: reference counts that differ from
    /// the durable names, a removed inode's record nothing refers to or
    /// without its state, a record of a number neither live nor removed.
    pub(crate) fn check_durable(&self, d: &Durable) -> Vec<String> {
        let mut errors = Vec::new();
        let mut refs: HashMap<u64, u32> = HashMap::new();
        for r in d.records.values() {
            for &v in r.entries.iter().flat_map(|e| e.values()) {
                *refs.entry(u64::from(v)).or_default() += 1;
            }
        }
        let mut dirs: HashMap<u64, u32> = HashMap::new();
        for r in &d.renames {
            for s in &r.steps {
                *dirs.entry(s.0).or_default() += 1;
                if let Some(v) = s.2 {
                    *refs.entry(u64::from(v)).or_default() += 1;
                }
            }
        }
        if dirs != d.rename_dirs {
            errors.push(format!(
                "pending renames: {} directories counted, {} named",
                d.rename_dirs.len(),
                dirs.len()
            ));
        }
        if refs != d.refs {
            errors.push(format!(
                "durable names: {} inodes counted, {} referred to",
                d.refs.len(),
                refs.len()
            ));
        }
        for (&ino, r) in &d.records {
            if self.inodes.get(ino).is_some() {
                continue;
            }
            if r.state.is_none() {
                errors.push(format!("removed inode {ino}: a record without its state"));
            }
            if !refs.contains_key(&ino) && r.removed.is_empty() {
                errors.push(format!(
                    "removed inode {ino}: a record no durable name needs"
                ));
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests;
