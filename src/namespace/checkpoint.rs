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

use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

use super::inode::{InodeTable, Kind, ROOT_INO};
use super::{Namespace, err};
use crate::error::Result;
use crate::trie::Trie;

/// Most checkpoints one mount keeps.
pub const MAX_CHECKPOINTS: usize = 64;

/// Longest checkpoint name, in bytes.
pub const MAX_NAME: usize = 64;

/// One saved tree.
pub struct Checkpoint {
    name: String,
    time: SystemTime,
    trie: Trie<u32>,
    inodes: InodeTable,
    extra_names: u64,
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
        &self.trie
    }

    /// The saved inodes.
    pub fn inodes(&self) -> &InodeTable {
        &self.inodes
    }
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

/// The checkpoints of a namespace.
#[derive(Default)]
pub struct Checkpoints {
    list: Vec<Checkpoint>,
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
            c.inodes.mark_used(&mut bits);
        }
        bits
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
    /// Page buffers freed by dropping the tree that was live.
    pub pages_freed: u64,
    /// Names the kernel may have cached, positive or negative, that may
    /// now be wrong: every name before and after in each changed
    /// directory it holds (a directory whose entries changed has a new
    /// change time, so unchanged directories' cached names stay right).
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
        let ck = Checkpoint {
            name: name.to_owned(),
            time: SystemTime::now(),
            trie: self.trie.clone(),
            inodes,
            extra_names: self.extra_names,
            ispace,
        };
        self.checkpoints.list.push(ck);
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
        let freed = ck.inodes.release();
        self.pages_freed(freed);
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
        let mut inodes = ck.inodes.copy();
        let trie = ck.trie.clone();
        let extra_names = ck.extra_names;
        inodes.set_reserved(self.checkpoints.reserved());
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
            let before = old.get(ino).and_then(|i| i.dir_node());
            let after = self.inodes.get(ino).and_then(|i| i.dir_node());
            let mut names: Vec<Vec<u8>> = Vec::new();
            if let Some(n) = before {
                names.extend(
                    old_trie
                        .children(n)
                        .map(|(name, _)| name.as_bytes().to_vec()),
                );
            }
            if let Some(n) = after {
                names.extend(
                    self.trie
                        .children(n)
                        .map(|(name, _)| name.as_bytes().to_vec()),
                );
            }
            names.sort_unstable();
            names.dedup();
            r.entries.extend(names.into_iter().map(|name| (ino, name)));
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
                log::error!("restore of {name}: inode {ino} is taken in the checkpoint");
            }
        }
        drop(old_trie);
        r.pages_freed = old.release();
        self.pages_freed(r.pages_freed);
        Ok(r)
    }

    /// Information about each checkpoint, for `checkpoint list`.
    pub fn checkpoint_infos(&self) -> Vec<CheckpointInfo> {
        self.checkpoints
            .iter()
            .map(|c| {
                let (mut shared, mut own) = (0u64, 0u64);
                for (_, i) in c.inodes.iter() {
                    if let Some(d) = i.file() {
                        for p in d.page_refs() {
                            if std::sync::Arc::strong_count(p) > 1 {
                                shared += 1;
                            } else {
                                own += 1;
                            }
                        }
                    }
                }
                let t = c.trie.memory();
                let m = c.inodes.memory();
                let time = super::inode::Time::from(c.time).parts();
                CheckpointInfo {
                    name: c.name.clone(),
                    time,
                    entries: c.inodes.live(),
                    shared_bytes: shared * super::PAGE as u64,
                    own_bytes: own * super::PAGE as u64,
                    meta_bytes: (t.nodes + t.names + t.dirs + m.slots + m.records) as u64,
                }
            })
            .collect()
    }

    fn update_reserved(&mut self) {
        let bits = self.checkpoints.reserved();
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
        self.checkpoints.list.push(Checkpoint {
            name: name.to_owned(),
            time,
            trie,
            inodes,
            extra_names: tree.extra_names,
            ispace,
        });
        self.update_reserved();
        Ok(())
    }

    /// Sets the stored-page count to the page buffers the live tree and
    /// the checkpoints hold, each counted once however many files share
    /// it (after a load that put shared pages in place); returns it.
    pub(crate) fn recount_pages(&mut self) -> u64 {
        let mut seen = std::collections::HashSet::new();
        let mut count = |t: &InodeTable| {
            let mut n = 0;
            for (_, i) in t.iter() {
                for p in i.file().into_iter().flat_map(|d| d.page_refs()) {
                    if std::sync::Arc::strong_count(p) == 1 || seen.insert(p.as_ptr()) {
                        n += 1;
                    }
                }
            }
            n
        };
        let mut pages = count(&self.inodes);
        for c in &self.checkpoints.list {
            pages += count(&c.inodes);
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
            t.trie = c.trie.clone();
            t.inodes = c.inodes.copy();
            t.extra_names = c.extra_names;
            t.recount_pages();
            if let Err(e) = t.check() {
                errors.extend(e.into_iter().map(|e| format!("checkpoint {}: {e}", c.name)));
            }
        }
        errors
    }
}
