//! Where inodes are, as paths: what fault rules and traces match on. Only
//! directories know their place (a file may have several names), so the
//! adapter keeps the names it handed out and checks them here.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use super::Namespace;
use crate::trie::NodeId;

/// What the kernel may have cached at or below a path (see
/// [`Namespace::cached_under`]).
#[derive(Debug, Default)]
pub struct Cached {
    /// Inodes the kernel holds there: their attributes and pages.
    pub inodes: Vec<u64>,
    /// Names there, deepest first: `(directory, name)`; the first missing
    /// component of the path included, so a cached "no such name" goes too.
    pub names: Vec<(u64, Box<[u8]>)>,
}

impl Namespace {
    /// The path of directory `ino` from the root (`None`: not a directory,
    /// or removed).
    pub fn dir_path(&self, ino: u64) -> Option<Vec<u8>> {
        let node = self.dir_node(ino).ok()?;
        Some(self.trie.path_of(node).into_vec())
    }

    /// Whether `ino` is a directory.
    pub fn is_dir_ino(&self, ino: u64) -> bool {
        matches!(
            self.inodes.kind_and_node(ino),
            Some((super::inode::Kind::Directory, _))
        )
    }

    /// A name of every non-directory the kernel holds: `(ino, directory,
    /// name)`, at most `max` of them. One pass over the trie.
    pub fn held_file_names(&self, max: usize) -> Vec<(u64, u64, Box<[u8]>)> {
        let held: HashSet<u64> = self
            .inodes
            .held()
            .map(|(ino, _)| ino)
            .filter(|&ino| !self.is_dir_ino(ino))
            .collect();
        let mut out = Vec::new();
        if held.is_empty() {
            return out;
        }
        for (id, parent, &v, is_dir) in self.trie.nodes() {
            let ino = u64::from(v);
            if is_dir || !held.contains(&ino) {
                continue;
            }
            let Some(p) = parent.and_then(|p| self.trie.value(p)) else {
                continue;
            };
            out.push((ino, u64::from(*p), self.trie.name_of(id).into()));
            if out.len() >= max {
                break;
            }
        }
        out
    }

    /// What the kernel may cache at or below `prefix` (`/a/b`, as a fault
    /// rule's): the held inodes of that subtree and the names leading to
    /// them, or, when the path does not exist, its first missing name.
    pub fn cached_under(&self, prefix: &[u8]) -> Cached {
        let mut out = Cached::default();
        let mut node = self.trie.root();
        let mut parent_ino = super::ROOT_INO;
        let parts: Vec<&[u8]> = prefix
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .collect();
        for (i, part) in parts.iter().enumerate() {
            match self.trie.child(node, OsStr::from_bytes(part)) {
                Some(c) => {
                    if i + 1 == parts.len() {
                        out.names.push((parent_ino, (*part).into()));
                    }
                    node = c;
                    parent_ino = self.trie.value(c).map_or(0, |&v| u64::from(v));
                    if !self.trie.is_dir(c) && i + 1 < parts.len() {
                        return out;
                    }
                }
                None => {
                    out.names.push((parent_ino, (*part).into()));
                    return out;
                }
            }
        }
        self.collect_held(node, &mut out);
        out
    }

    /// The held inodes under `top` (itself included) and their names,
    /// children before their directory.
    fn collect_held(&self, top: NodeId, out: &mut Cached) {
        let held = |ino: u64| self.inodes.get(ino).is_some_and(|i| i.lookups() > 0);
        let mut stack = vec![top];
        let mut names = Vec::new();
        while let Some(n) = stack.pop() {
            let Some(&v) = self.trie.value(n) else {
                continue;
            };
            let ino = u64::from(v);
            if held(ino) {
                out.inodes.push(ino);
            }
            if self.trie.is_dir(n) {
                for (name, c) in self.trie.children(n) {
                    if self.trie.value(c).is_some_and(|&ci| held(u64::from(ci))) {
                        names.push((ino, Box::<[u8]>::from(name.as_bytes())));
                    }
                    stack.push(c);
                }
            }
        }
        // Deepest names were pushed last.
        out.names.splice(0..0, names.into_iter().rev());
    }
}
