//! Checkpoints: named copies of the whole tree, restored in one step.
//!
//! A checkpoint copies the namespace's metadata (trie nodes, names, child
//! maps, inode slots and records, extended attributes) and shares every
//! file page with the live tree: a page written after the save is copied
//! once, on that write. Restoring puts a fresh copy of the checkpoint in
//! place of the live tree under the one namespace lock, so every request
//! sees the old tree or the new one, never a mixture.
//!
//! What the kernel still holds across a restore: inode numbers name the
//! same file in the live tree and in every checkpoint (a number a
//! checkpoint holds is never given to a new file, see
//! `InodeTable::set_reserved`), so the kernel's references carry over to
//! the restored inode of the same number. An inode the kernel holds that
//! the checkpoint lacks (a file created after the save and still open,
//! looked up or a working directory) stays alive as an unlinked inode:
//! an open descriptor keeps reading and writing its data, and nothing
//! can reach it by name. [`Restored`] lists the inodes whose cached
//! attributes, pages and listings the caller must make the kernel drop.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::SystemTime;

use super::inode::{InodeTable, Kind, ROOT_INO};
use super::{Namespace, err};
use crate::error::Result;
use crate::trie::Trie;

/// Most checkpoints one mount keeps.
pub const MAX_CHECKPOINTS: usize = 64;

/// Longest checkpoint name, in bytes.
pub const MAX_NAME: usize = 64;

/// A whole tree: what a checkpoint holds, and what a restore puts in
/// place of the live tree.
pub(crate) struct Tree {
    pub(crate) trie: Trie<u32>,
    pub(crate) inodes: InodeTable,
    pub(crate) extra_names: u64,
}

impl Tree {
    /// A copy sharing the file data (see `InodeTable::copy`).
    pub(crate) fn copy(&self) -> Tree {
        Tree {
            trie: self.trie.clone(),
            inodes: self.inodes.copy(),
            extra_names: self.extra_names,
        }
    }
}

/// One saved tree.
pub struct Checkpoint {
    name: String,
    time: SystemTime,
    /// Tells a spare copy of this checkpoint from one of an older
    /// checkpoint of the same name.
    id: u64,
    /// Immutable: a spare copy is made from it without the namespace lock.
    tree: Arc<Tree>,
    /// Its share of the inode limit (see `Namespace::ispace_used`).
    ispace: u64,
}

impl Checkpoint {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When it was saved.
    pub fn time(&self) -> SystemTime {
        self.time
    }

    /// The saved names.
    pub fn trie(&self) -> &Trie<u32> {
        &self.tree.trie
    }

    /// The saved inodes.
    pub fn inodes(&self) -> &InodeTable {
        &self.tree.inodes
    }
}

/// A copy of a checkpoint to restore from, made ahead of time (see
/// [`Namespace::spare_wanted`]).
pub struct SpareSource {
    id: u64,
    tree: Arc<Tree>,
}

impl SpareSource {
    /// Copies the checkpoint: run without the namespace lock (the
    /// checkpoint is immutable; the copy only adds references to file
    /// data the checkpoint holds, which no accounting reads).
    pub fn copy(&self) -> Spare {
        Spare {
            id: self.id,
            tree: self.tree.copy(),
        }
    }
}

/// A ready copy of a checkpoint ([`SpareSource::copy`]).
pub struct Spare {
    id: u64,
    tree: Tree,
}

/// What `checkpoint list` shows of one checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Its name.
    pub name: String,
    /// When it was saved (seconds, nanoseconds since the epoch).
    pub time: (i64, u32),
    /// Files, directories and other entries (inodes) it holds.
    pub entries: u64,
    /// Bytes of file pages it shares with the live tree or another
    /// checkpoint.
    pub shared_bytes: u64,
    /// Bytes of file pages only it holds (freed by deleting it).
    pub own_bytes: u64,
    /// Heap bytes of its own metadata (names, nodes, inodes).
    pub meta_bytes: u64,
}

/// The checkpoints of a namespace, and the trees waiting to be freed.
#[derive(Default)]
pub struct Checkpoints {
    list: Vec<Checkpoint>,
    next_id: u64,
    /// The checkpoint saved or restored last: the next restore is likely
    /// of it, so a copy of it is kept ready.
    recent: Option<u64>,
    /// That copy.
    spare: Option<Spare>,
    /// Trees a restore replaced (and spares no longer wanted), freed a
    /// slice at a time by [`Namespace::reap`] after the restore returned.
    graveyard: Vec<Tree>,
    /// Trees of deleted checkpoints that a spare copy in the making still
    /// reads; freed when that copy arrives.
    orphan_trees: Vec<Arc<Tree>>,
    /// The numbers the checkpoints hold, one bit each (kept: a restore
    /// hands them to the new live tree without walking every checkpoint).
    reserved_bits: Vec<u64>,
}

impl Checkpoints {
    /// The checkpoints, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Checkpoint> {
        self.list.iter()
    }

    /// The checkpoint called `name`.
    pub fn get(&self, name: &str) -> Option<&Checkpoint> {
        self.list.iter().find(|c| c.name == name)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Their share of the inode limit.
    pub(crate) fn ispace(&self) -> u64 {
        self.list.iter().map(|c| c.ispace).sum()
    }

    /// The numbers any checkpoint holds, one bit each.
    fn reserved(&self) -> Vec<u64> {
        let mut bits = Vec::new();
        for c in &self.list {
            c.tree.inodes.mark_used(&mut bits);
        }
        bits
    }

    /// Inode tables that hold file data besides the live tree: the
    /// checkpoints, the spare copy, the trees not yet freed and those of
    /// deleted checkpoints a spare copy in the making still reads (for the
    /// consistency check's page count).
    pub(crate) fn tables(&self) -> impl Iterator<Item = &InodeTable> {
        self.list
            .iter()
            .map(|c| &c.tree.inodes)
            .chain(self.spare.iter().map(|s| &s.tree.inodes))
            .chain(self.graveyard.iter().map(|t| &t.inodes))
            .chain(self.orphan_trees.iter().map(|t| &t.inodes))
    }
}

/// What a restore changed that the kernel may have cached.
#[derive(Debug, Default)]
pub struct Restored {
    /// Inodes the kernel holds whose attributes, pages or listing differ
    /// from before (or which only the kernel holds now): their caches must
    /// go. Inodes the kernel does not hold have nothing cached.
    pub changed: Vec<u64>,
    /// Inodes the kernel holds, carried over unchanged.
    pub kept: u64,
    /// Inodes the checkpoint lacks, kept alive for the kernel as unlinked.
    pub orphaned: u64,
    /// Names the kernel may have cached, positive or negative, that are
    /// now wrong: in each changed directory it holds, every name that
    /// leads to another inode than before, or exists on one side only (a
    /// directory whose entries changed has a new change time, so unchanged
    /// directories' cached names stay right).
    pub entries: Vec<(u64, Vec<u8>)>,
}

/// Checks a checkpoint name: 1 to [`MAX_NAME`] bytes of letters, digits
/// and `._-+@:=,`, not starting with `-` or `.` (so that it is never an
/// option or a hidden file name in a script).
pub fn check_name(name: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "._-+@:=,".contains(c);
    if name.is_empty()
        || name.len() > MAX_NAME
        || !name.chars().all(ok_char)
        || name.starts_with(['-', '.'])
    {
        return err(libc::EINVAL);
    }
    Ok(())
}

impl Namespace {
    /// The checkpoints.
    pub fn checkpoints(&self) -> &Checkpoints {
        &self.checkpoints
    }

    /// Saves the live tree as checkpoint `name`: `EEXIST` if there is one
    /// of that name, `EINVAL` for a bad name, `ENOSPC` when there are
    /// [`MAX_CHECKPOINTS`] already or its entries would pass the inode
    /// limit (each checkpoint holds its own copy of every entry's
    /// metadata, so each counts all its entries; pages are shared and
    /// count once). Nothing changes on failure.
    pub fn save_checkpoint(&mut self, name: &str) -> Result<()> {
        check_name(name)?;
        if self.checkpoints.get(name).is_some() {
            return err(libc::EEXIST);
        }
        if self.checkpoints.len() >= MAX_CHECKPOINTS {
            return err(libc::ENOSPC);
        }
        let inodes = self.inodes.copy();
        let ispace = self.ispace_of(&inodes, self.extra_names);
        self.reserve_ispace(ispace)?;
        let id = self.checkpoints.next_id;
        self.checkpoints.next_id += 1;
        let ck = Checkpoint {
            name: name.to_owned(),
            time: SystemTime::now(),
            id,
            tree: Arc::new(Tree {
                trie: self.trie.clone(),
                inodes,
                extra_names: self.extra_names,
            }),
            ispace,
        };
        self.checkpoints.list.push(ck);
        self.checkpoints.recent = Some(id);
        self.update_reserved();
        Ok(())
    }

    /// Deletes checkpoint `name` (`ENOENT` if there is none), freeing its
    /// own pages and entries.
    pub fn delete_checkpoint(&mut self, name: &str) -> Result<()> {
        let Some(i) = self.checkpoints.list.iter().position(|c| c.name == name) else {
            return err(libc::ENOENT);
        };
        let ck = self.checkpoints.list.remove(i);
        if self
            .checkpoints
            .spare
            .as_ref()
            .is_some_and(|s| s.id == ck.id)
        {
            let spare = self.checkpoints.spare.take();
            self.checkpoints.graveyard.extend(spare.map(|s| s.tree));
        }
        if self.checkpoints.recent == Some(ck.id) {
            self.checkpoints.recent = None;
        }
        match Arc::try_unwrap(ck.tree) {
            Ok(tree) => self.checkpoints.graveyard.push(tree),
            // A spare copy of it is being made: that copy's references
            // are what keeps its data alive for a moment; the copy is
            // discarded when it arrives ([`Namespace::install_spare`]).
            Err(tree) => self.checkpoints.orphan_trees.push(tree),
        }
        self.update_reserved();
        Ok(())
    }

    /// Makes checkpoint `name` the live tree (`ENOENT` if there is none);
    /// the checkpoint stays. Kernel references carry over (see the module
    /// docs); the result says which inodes' caches the kernel must drop.
    pub fn restore_checkpoint(&mut self, name: &str) -> Result<Restored> {
        let Some(ck) = self.checkpoints.get(name) else {
            return err(libc::ENOENT);
        };
        let (id, source) = (ck.id, ck.tree.clone());
        let tree = match self.checkpoints.spare.take() {
            Some(s) if s.id == id => s.tree,
            other => {
                self.checkpoints.graveyard.extend(other.map(|s| s.tree));
                source.copy()
            }
        };
        drop(source);
        self.checkpoints.recent = Some(id);
        // A restore is a sync point of the whole tree (`-o crash`).
        self.reset_durable();
        let r = self.install_tree(tree, name);
        self.resume_durable();
        Ok(r)
    }

    /// Puts `tree` in place of the live tree: kernel references carry
    /// over by number, inodes the kernel holds that `tree` lacks stay as
    /// unlinked orphans, the replaced tree goes to the graveyard. Shared
    /// by a checkpoint restore and a crash (`what` names it in the log).
    pub(crate) fn install_tree(&mut self, tree: Tree, what: &str) -> Restored {
        let name = what;
        let Tree {
            trie,
            mut inodes,
            extra_names,
        } = tree;
        inodes.set_reserved(self.checkpoints.reserved_bits.clone());
        let mut old = std::mem::replace(&mut self.inodes, inodes);
        let old_trie = std::mem::replace(&mut self.trie, trie);
        self.extra_names = extra_names;
        let mut r = Restored::default();
        let mut orphans = Vec::new();
        for (ino, n) in old.held() {
            let same = match (old.get(ino), self.inodes.get(ino)) {
                (Some(a), Some(b)) if a.generation == b.generation => Some(a.same_state(&b)),
                _ => None,
            };
            match same {
                Some(unchanged) => {
                    self.inodes.set_lookups(ino, n);
                    if unchanged {
                        r.kept += 1;
                    } else {
                        r.changed.push(ino);
                    }
                }
                None => {
                    orphans.push((ino, n));
                    r.changed.push(ino);
                }
            }
        }
        if !r.changed.contains(&ROOT_INO)
            && old
                .get(ROOT_INO)
                .is_some_and(|a| self.inodes.get(ROOT_INO).is_some_and(|b| !a.same_state(&b)))
        {
            r.changed.push(ROOT_INO);
        }
        for &ino in &r.changed {
            // Only names whose inode differs: a cached entry of a name that
            // leads to the same inode is still right, and forgetting it
            // would drop the kernel's whole cached subtree below it.
            // Names as slices of the tries' arenas, sorted: no allocation
            // per name (changed directories can be large).
            fn listed(trie: &Trie<u32>, node: Option<crate::trie::NodeId>) -> Vec<(&[u8], u32)> {
                let mut v: Vec<(&[u8], u32)> = node
                    .into_iter()
                    .flat_map(|n| trie.children(n))
                    .map(|(name, c)| (name.as_bytes(), trie.value(c).copied().unwrap_or(0)))
                    .collect();
                v.sort_unstable();
                v
            }
            let before = listed(&old_trie, old.get(ino).and_then(|i| i.dir_node()));
            let after = listed(&self.trie, self.inodes.get(ino).and_then(|i| i.dir_node()));
            let (mut i, mut j) = (0, 0);
            loop {
                let name = match (before.get(i), after.get(j)) {
                    (Some(a), Some(b)) if a.0 == b.0 => {
                        (i, j) = (i + 1, j + 1);
                        if a.1 == b.1 {
                            continue;
                        }
                        a.0
                    }
                    (Some(a), Some(b)) if a.0 < b.0 => {
                        i += 1;
                        a.0
                    }
                    (Some(a), None) => {
                        i += 1;
                        a.0
                    }
                    (_, Some(b)) => {
                        j += 1;
                        b.0
                    }
                    (None, None) => break,
                };
                r.entries.push((ino, name.to_vec()));
            }
        }
        for (ino, n) in orphans {
            // Numbers are reserved while a checkpoint holds them, so the
            // checkpoint's slot is free: keep the inode there, unlinked,
            // for the kernel.
            let Some((mut inode, xattrs)) = old.take(ino) else {
                continue;
            };
            inode.nlink = 0;
            if inode.kind == Kind::Directory {
                inode.content = super::inode::Content::Dir(None);
            }
            *inode.lookups.get_mut() = n;
            if self.inodes.adopt(ino, inode, xattrs) {
                r.orphaned += 1;
            } else {
                log::error!("{name}: inode {ino} is taken in the new tree");
            }
        }
        self.inodes.drop_taken_from_free();
        // Freed later, a slice at a time ([`Namespace::reap`]): freeing
        // every record here would hold the lock for as long as copying.
        self.checkpoints.graveyard.push(Tree {
            trie: old_trie,
            inodes: old,
            extra_names: 0,
        });
        r
    }

    /// Information about each checkpoint, for `checkpoint list`.
    pub fn checkpoint_infos(&self) -> Vec<CheckpointInfo> {
        // Who holds each page: the live tree (bit 0) and each checkpoint
        // (bit 1 + its index, saturating at 63). The spare copy and trees
        // waiting to be freed are not holders: they go away by themselves.
        let list = &self.checkpoints.list;
        let mut holders: HashMap<*const u8, u64> = HashMap::new();
        let mut mark = |t: &InodeTable, bit: u64| {
            for (_, i) in t.iter() {
                for p in i.file().into_iter().flat_map(|d| d.page_refs()) {
                    *holders.entry(p.as_ptr()).or_default() |= bit;
                }
            }
        };
        mark(&self.inodes, 1);
        for (k, c) in list.iter().enumerate() {
            mark(&c.tree.inodes, 1 << (k + 1).min(63));
        }
        list.iter()
            .enumerate()
            .map(|(k, c)| {
                let me = 1u64 << (k + 1).min(63);
                let (mut shared, mut own) = (0u64, 0u64);
                let mut seen = std::collections::HashSet::new();
                for (_, i) in c.tree.inodes.iter() {
                    for p in i.file().into_iter().flat_map(|d| d.page_refs()) {
                        if !seen.insert(p.as_ptr()) {
                            continue;
                        }
                        if holders.get(&p.as_ptr()) == Some(&me) && k + 1 < 63 {
                            own += 1;
                        } else {
                            shared += 1;
                        }
                    }
                }
                let t = c.tree.trie.memory();
                let m = c.tree.inodes.memory();
                let time = super::inode::Time::from(c.time).parts();
                CheckpointInfo {
                    name: c.name.clone(),
                    time,
                    entries: c.tree.inodes.live(),
                    shared_bytes: shared * super::PAGE as u64,
                    own_bytes: own * super::PAGE as u64,
                    meta_bytes: (t.nodes + t.names + t.dirs + m.slots + m.records) as u64,
                }
            })
            .collect()
    }

    /// The checkpoint to copy ahead of the next restore, if a copy is
    /// wanted and missing: copy it ([`SpareSource::copy`]) without the
    /// lock, then hand the copy to [`Namespace::install_spare`].
    pub fn spare_wanted(&self) -> Option<SpareSource> {
        let c = &self.checkpoints;
        let id = c.recent?;
        if c.spare.is_some() {
            return None;
        }
        let ck = c.list.iter().find(|ck| ck.id == id)?;
        Some(SpareSource {
            id,
            tree: ck.tree.clone(),
        })
    }

    /// Keeps a copy made from [`Namespace::spare_wanted`] for the next
    /// restore, or frees it if it is no longer wanted.
    pub fn install_spare(&mut self, spare: Spare) {
        let c = &mut self.checkpoints;
        if c.spare.is_none() && c.recent == Some(spare.id) {
            c.spare = Some(spare);
        } else {
            c.graveyard.push(spare.tree);
        }
        // Trees of checkpoints deleted while this copy was made: free now.
        let done: Vec<Arc<Tree>> = std::mem::take(&mut c.orphan_trees);
        for t in done {
            match Arc::try_unwrap(t) {
                Ok(tree) => c.graveyard.push(tree),
                Err(t) => c.orphan_trees.push(t),
            }
        }
    }

    /// Frees up to `budget` inodes of the trees restores replaced, and
    /// returns whether more are waiting. Call it in a loop, taking the lock
    /// for each call, so that requests get in between.
    pub fn reap(&mut self, budget: usize) -> bool {
        let mut left = budget;
        let mut freed = 0;
        while left > 0 {
            let Some(t) = self.checkpoints.graveyard.last_mut() else {
                break;
            };
            let (f, n, empty) = t.inodes.release_some(left);
            freed += f;
            left = left.saturating_sub(n.max(1));
            if empty {
                self.checkpoints.graveyard.pop();
            }
        }
        self.pages_freed(freed);
        !self.checkpoints.graveyard.is_empty()
    }

    /// Everything [`Namespace::reap`] and a spare copy would do later, now
    /// (tests, and callers without a background thread).
    pub fn settle_checkpoints(&mut self) {
        while self.reap(usize::MAX) {}
        if let Some(src) = self.spare_wanted() {
            let spare = src.copy();
            self.install_spare(spare);
        }
    }

    /// A namespace holding a copy of checkpoint `name`'s tree, to read it
    /// with the namespace's own functions (an export). It shares the file
    /// data: hand it back to [`Namespace::bury`] instead of dropping it,
    /// so that pages only it still holds are counted when freed.
    pub fn checkpoint_view(&self, name: &str) -> Result<Namespace> {
        let Some(ck) = self.checkpoints.get(name) else {
            return err(libc::ENOENT);
        };
        let tree = ck.tree.copy();
        let mut view = Namespace::new(0, 0, 0o755, self.limits);
        view.trie = tree.trie;
        view.inodes = tree.inodes;
        view.extra_names = tree.extra_names;
        Ok(view)
    }

    /// Takes back a [`Namespace::checkpoint_view`]: freed later with the
    /// trees restores replaced.
    pub fn bury(&mut self, view: Namespace) {
        let Namespace {
            trie,
            inodes,
            extra_names,
            ..
        } = view;
        self.checkpoints.graveyard.push(Tree {
            trie,
            inodes,
            extra_names,
        });
    }

    fn update_reserved(&mut self) {
        let bits = self.checkpoints.reserved();
        self.checkpoints.reserved_bits = bits.clone();
        self.inodes.set_reserved(bits);
    }
}

/// Restoring checkpoints from a snapshot image.
impl Namespace {
    /// Adds `tree`, a namespace an image loaded and checked, as checkpoint
    /// `name` saved at `time`. Its inode numbers must name the same files
    /// as the live tree's and the other checkpoints' (the loader maps
    /// them so). The same rules as for [`Namespace::save_checkpoint`]
    /// apply: a valid, unused name, at most [`MAX_CHECKPOINTS`], and its
    /// entries within the inode limit. The numbers it holds are reserved.
    /// Pages are not counted here: see [`Namespace::recount_pages`].
    pub(crate) fn add_loaded_checkpoint(
        &mut self,
        name: &str,
        time: SystemTime,
        tree: Namespace,
    ) -> std::result::Result<(), String> {
        if check_name(name).is_err() {
            return Err(format!("bad checkpoint name {name:?}"));
        }
        if self.checkpoints.get(name).is_some() {
            return Err(format!("two checkpoints called {name:?}"));
        }
        if self.checkpoints.len() >= MAX_CHECKPOINTS {
            return Err(format!("more than {MAX_CHECKPOINTS} checkpoints"));
        }
        let ispace = self.ispace_of(&tree.inodes, tree.extra_names);
        if self.reserve_ispace(ispace).is_err() {
            return Err(format!(
                "checkpoint {name:?} needs more inode space than nr_inodes allows"
            ));
        }
        let mut trie = tree.trie;
        let mut inodes = tree.inodes;
        // No spare capacity, and what can share its attributes does
        // (nothing a caller can see changes).
        trie.shrink_to_fit();
        inodes.share_all();
        let id = self.checkpoints.next_id;
        self.checkpoints.next_id += 1;
        self.checkpoints.list.push(Checkpoint {
            name: name.to_owned(),
            time,
            id,
            tree: Arc::new(Tree {
                trie,
                inodes,
                extra_names: tree.extra_names,
            }),
            ispace,
        });
        self.update_reserved();
        Ok(())
    }

    /// Sets the stored-page count to the page buffers the live tree and
    /// the checkpoints hold, each counted once however many files share
    /// it (after a load that put shared pages in place); returns it.
    pub(crate) fn recount_pages(&mut self) -> u64 {
        let mut distinct = super::check::Distinct::default();
        let mut pages = 0;
        for t in std::iter::once(&self.inodes).chain(self.checkpoints.tables()) {
            for (_, i) in t.iter() {
                if let Some(d) = i.file() {
                    pages += distinct.count(d);
                }
            }
        }
        self.pages_used = pages;
        pages
    }
}

/// The consistency check of the checkpoints' trees.
impl Namespace {
    /// Runs [`Namespace::check`] on a copy of each checkpoint's tree (its
    /// pages counted within it); returns the violations, each prefixed
    /// with the checkpoint's name. As costly as checking the live tree
    /// once per checkpoint: for tests and `TRIEFS_CHECK=1`.
    pub(crate) fn check_checkpoint_trees(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for c in &self.checkpoints.list {
            let mut t = Namespace::new(0, 0, 0o755, self.limits);
            t.trie = c.tree.trie.clone();
            t.inodes = c.tree.inodes.copy();
            t.extra_names = c.tree.extra_names;
            t.recount_pages();
            if let Err(e) = t.check() {
                errors.extend(e.into_iter().map(|e| format!("checkpoint {}: {e}", c.name)));
            }
        }
        errors
    }
}
