//! Consistency check of the whole namespace: the invariants that tie the
//! trie, the inode table and the accounting together. Used by tests and,
//! with `TRIEFS_CHECK=1`, by the daemon when it is unmounted.

use crate::namespace::Namespace;
use crate::namespace::acl;
use crate::namespace::inode::{Content, Inode, Kind, Xattrs, xattr_space};

impl Namespace {
    /// Verifies every invariant; returns a description of each violation.
    ///
    /// - every trie node carries a live inode; directory nodes carry a
    ///   directory inode that points back at the node, leaves a non-directory;
    /// - a non-directory's `nlink` equals the number of names it has;
    /// - a directory's `nlink` is 2 + its subdirectories;
    /// - every live inode has a name, or none and kernel references left;
    /// - the stored-page count equals the pages held by live files (a listed
    ///   file holds none), and the counts of extra file names and xattr
    ///   bytes (the inode limit's space) equal what is held;
    /// - each checkpoint's tree passes these checks too (pages counted
    ///   within it; across all trees above);
    /// - the only `system.` attributes are valid ACLs: a default ACL on a
    ///   directory, an access ACL (not a symlink's) that the mode alone
    ///   cannot say and whose mode bits are the inode's.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        // Counts by inode number (numbers are dense: at most one per slot).
        let slots = self.inodes.slot_count() + 1;
        let mut names: Vec<u32> = vec![0; slots];
        let mut subdirs: Vec<u32> = vec![0; slots];
        let at = |ino: u64| usize::try_from(ino).ok().filter(|&i| i < slots);
        for (id, parent, &ino, is_dir) in self.trie.nodes() {
            let ino = u64::from(ino);
            if let Some(i) = at(ino) {
                names[i] += 1;
            }
            let Some(inode) = self.inodes.get(ino) else {
                errors.push(format!("node {} names freed inode {ino}", id.index()));
                continue;
            };
            if is_dir != (inode.kind == Kind::Directory) {
                errors.push(format!(
                    "node {} and inode {ino} disagree on type",
                    id.index()
                ));
            }
            if is_dir && inode.dir_node() != Some(id) {
                errors.push(format!("dir inode {ino} does not point back at its node"));
            }
            if is_dir
                && let Some(p) = parent
                && let Some(&pino) = self.trie.value(p)
                && let Some(i) = at(u64::from(pino))
            {
                subdirs[i] += 1;
            }
        }
        let mut pages = 0;
        let mut distinct = Distinct::default();
        let (mut extra_names, mut xattr_bytes) = (0, 0);
        for (ino, inode) in self.inodes.iter() {
            let n = at(ino).map_or(0, |i| names[i]);
            if inode.kind != Kind::Directory {
                extra_names += u64::from(n.saturating_sub(1));
            }
            if let Some(x) = self.inodes.xattrs(ino) {
                xattr_bytes += x.iter().map(|(k, v)| xattr_space(k, v)).sum::<u64>();
                check_acls(ino, &inode, x, &mut errors);
            }
            if let Content::File(d) = &inode.content {
                pages += distinct.count(d);
                if d.is_listed() && d.pages() > 0 {
                    errors.push(format!("listed file {ino} stores {} pages", d.pages()));
                }
            }
            if inode.kind == Kind::Directory {
                if n > 1 {
                    errors.push(format!("dir inode {ino} has {n} names"));
                }
                let want = if n == 0 {
                    0
                } else {
                    2 + at(ino).map_or(0, |i| subdirs[i])
                };
                if inode.nlink != want {
                    errors.push(format!("dir inode {ino}: nlink {} != {want}", inode.nlink));
                }
            } else if inode.nlink != n {
                errors.push(format!("inode {ino}: nlink {} != {n} names", inode.nlink));
            }
            if n == 0 && inode.lookups() == 0 {
                errors.push(format!("inode {ino} leaked: no name, no kernel reference"));
            }
        }
        if extra_names != self.extra_names {
            errors.push(format!(
                "hard link accounting: {} counted, {extra_names} held",
                self.extra_names
            ));
        }
        if xattr_bytes != self.inodes.xattr_bytes() {
            errors.push(format!(
                "xattr accounting: {} counted, {xattr_bytes} held",
                self.inodes.xattr_bytes()
            ));
        }
        for t in self.checkpoints.tables() {
            for (_, inode) in t.iter() {
                if let Some(d) = inode.file() {
                    pages += distinct.count(d);
                }
            }
        }
        if let Some(d) = &self.inodes.durable {
            pages += d.count_pages(&mut distinct);
            errors.extend(self.check_durable(d));
        }
        errors.extend(self.check_checkpoint_trees());
        if pages != self.pages_used {
            errors.push(format!(
                "page accounting: {} counted, {pages} held",
                self.pages_used
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// The ACL invariants of one inode's attributes (see [`Namespace::check`]).
fn check_acls(ino: u64, inode: &Inode, x: &Xattrs, errors: &mut Vec<String>) {
    for (k, v) in x.iter().filter(|(k, _)| k.starts_with(b"system.")) {
        let name = String::from_utf8_lossy(k);
        let allowed = match &**k {
            acl::ACCESS => inode.kind != Kind::Symlink,
            acl::DEFAULT => inode.kind == Kind::Directory,
            _ => false,
        };
        if !allowed {
            errors.push(format!("inode {ino} ({:?}) has {name}", inode.kind));
            continue;
        }
        let Ok(Some(a)) = acl::parse(v) else {
            errors.push(format!("inode {ino}: {name} is not a valid ACL"));
            continue;
        };
        if &**k == acl::ACCESS {
            let (bits, equiv) = a.equiv_mode();
            if equiv || bits != u32::from(inode.perm) & 0o777 {
                errors.push(format!(
                    "inode {ino}: access ACL (mode {bits:o}{}) disagrees with mode {:o}",
                    if equiv { ", equivalent" } else { "" },
                    inode.perm
                ));
            }
        }
    }
}

/// Counts page buffers once however many files and checkpoints share them
/// (and page maps once however many inodes share them).
#[derive(Default)]
pub(crate) struct Distinct {
    pages: std::collections::HashSet<*const u8>,
    maps: std::collections::HashSet<*const crate::namespace::data::FileData>,
}

impl Distinct {
    /// The pages of `d` not counted before.
    pub(crate) fn count(&mut self, d: &crate::namespace::data::FileData) -> u64 {
        if !self.maps.insert(d as *const _) {
            return 0;
        }
        let mut n = 0;
        for p in d.page_refs() {
            if p.is_unique() || self.pages.insert(p.as_ptr()) {
                n += 1;
            }
        }
        n
    }
}
