//! The path trie: a tree of path components held in memory.
//!
//! Every node is one path component. A node is either a *directory* (it has
//! an ordered map of children) or a *leaf* (it has none: a regular file, a
//! symlink, ...). Shared prefixes are stored once: `/var`, `/var/www` and
//! `/var/www/site` share the `var` node. Each node carries a value `V`; the
//! filesystem stores an inode number there, the plain library use stores `()`.
//!
//! Names are arbitrary bytes except `/` and NUL, at most [`NAME_MAX`] bytes.
//! A node is 12 bytes plus its value: its parent, its children map (if it
//! is a directory with children) and its name, stored once in the trie's
//! name arena (`names.rs`); beside it a 2-byte tag of its name's cookie.
//! A directory's children map (`dirmap.rs`) holds 4-byte node ids ordered
//! by the names' *cookies*, a keyed hash.
//!
//! ```
//! use triefs::trie::Trie;
//! let mut t: Trie = Trie::new();
//! for p in ["/", "/etc", "/tmp", "/tmp/whatever", "/var/www/mysite"] {
//!     t.add(p).unwrap();
//! }
//! assert!(t.exists("/var/www"));
//! let leaves: Vec<String> = t.leaves().iter().map(|p| p.to_string_lossy().into_owned()).collect();
//! assert_eq!(leaves, ["/etc", "/tmp/whatever", "/var/www/mysite"]);
//! ```

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use log::info;

mod dirmap;
mod leaves;
mod names;

use dirmap::{DirMap, Keys};
pub use leaves::{LeafPage, PageLimits, TOO_LONG_EXTRA, TOO_LONG_HEAD, TooLong};
use names::Names;

/// Longest allowed component name, in bytes (Linux `NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// Handle of a node inside one [`Trie`]. Handles of removed nodes may be
/// reused by later insertions, so do not keep them past a removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(u32);

impl NodeId {
    /// The raw index, for diagnostics.
    pub fn index(self) -> u32 {
        self.0
    }

    pub(crate) fn from_index(i: u32) -> NodeId {
        NodeId(i)
    }
}

/// What a node is: a directory, which may have children, or a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A directory node.
    Dir,
    /// A leaf: a file, symlink or special file.
    Leaf,
}

impl Shape {
    /// `Dir` when `is_dir`.
    pub fn dir_if(is_dir: bool) -> Shape {
        if is_dir { Shape::Dir } else { Shape::Leaf }
    }
}

/// Why a trie operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrieError {
    /// A path component or handle does not exist.
    NotFound,
    /// A component that must be a directory is a leaf.
    NotADirectory,
    /// The target name already exists.
    Exists,
    /// A component is longer than [`NAME_MAX`] bytes.
    NameTooLong,
    /// A name is empty, `.`, `..`, or contains `/` or NUL.
    InvalidName,
    /// A directory still has children.
    NotEmpty,
    /// A directory would be moved into its own subtree.
    InvalidMove,
    /// The root was named where it cannot be: removed, moved or replaced.
    Root,
    /// The trie's 32-bit node or name space is used up.
    NoSpace,
}

impl fmt::Display for TrieError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrieError::NotFound => "no such file or directory",
            TrieError::NotADirectory => "not a directory",
            TrieError::Exists => "already exists",
            TrieError::NameTooLong => "name longer than 255 bytes",
            TrieError::InvalidName => "invalid name",
            TrieError::NotEmpty => "directory not empty",
            TrieError::InvalidMove => "cannot move a directory into itself",
            TrieError::Root => "the root cannot be removed, moved or replaced",
            TrieError::NoSpace => "no room for more names",
        })
    }
}

impl std::error::Error for TrieError {}

/// `dir` of a leaf node.
const LEAF: u32 = u32::MAX;
/// `dir` of a directory without children (no map allocated: most
/// directories of a big tree are leaves).
const NO_MAP: u32 = u32::MAX - 1;
/// `parent` of a free node slot.
const FREE: u32 = u32::MAX;

/// One node: 12 bytes plus the value (16 for `Node<u32>`).
#[derive(Clone, Copy)]
struct Node<V> {
    /// Parent's index; [`FREE`] for a free slot.
    parent: u32,
    /// [`LEAF`], [`NO_MAP`] or the index of the children in `dirs`.
    dir: u32,
    /// The node's name in the arena.
    name: names::Slot,
    value: V,
}

/// Smallest cookie of an entry; 0, 1 and 2 are left for readdir's start,
/// `.` and `..`.
pub const FIRST_COOKIE: u64 = 3;

/// A trie of path components with a value per node. See the module docs.
///
/// Cloning copies every node, name and child map: the copy has the same
/// node ids, cookies and listing order (a checkpoint relies on that).
#[derive(Clone)]
pub struct Trie<V = ()> {
    nodes: Vec<Node<V>>,
    /// The cookie tag of each node's name (`dirmap::tag_of`): 2 bytes
    /// that spare most searches a hash.
    tags: Vec<u16>,
    free: Vec<u32>,
    len: usize,
    names: Names,
    /// Children maps of directories that have children.
    dirs: Vec<DirMap>,
    dirs_free: Vec<u32>,
    /// Keyed per process, so names cannot be chosen to collide on purpose.
    hasher: RandomState,
    cookie_mask: u64,
}

/// The [`TrieKeys`] of a trie, borrowing only the fields it reads (a macro,
/// so that the trie's child maps can be borrowed mutably beside it).
macro_rules! trie_keys {
    ($t:expr) => {
        TrieKeys {
            nodes: &$t.nodes,
            tags: &$t.tags,
            names: &$t.names,
            hasher: &$t.hasher,
            mask: $t.cookie_mask,
        }
    };
}

/// Names and cookies of one trie's nodes, for its child maps.
struct TrieKeys<'a, V> {
    nodes: &'a [Node<V>],
    tags: &'a [u16],
    names: &'a Names,
    hasher: &'a RandomState,
    mask: u64,
}

impl<V> Keys for TrieKeys<'_, V> {
    fn cookie(&self, id: NodeId) -> u64 {
        cookie_of(self.hasher, self.mask, self.name(id))
    }

    fn name(&self, id: NodeId) -> &[u8] {
        self.nodes
            .get(id.0 as usize)
            .map_or(&[], |n| self.names.get(n.name))
    }

    fn tag(&self, id: NodeId) -> u16 {
        self.tags.get(id.0 as usize).copied().unwrap_or(0)
    }
}

fn cookie_of(hasher: &RandomState, mask: u64, name: &[u8]) -> u64 {
    FIRST_COOKIE + (hasher.hash_one(name) & mask)
}

/// Heap bytes a trie holds, by structure (capacities, not allocator
/// overhead).
#[derive(Clone, Copy, Debug, Default)]
pub struct TrieMemory {
    /// Node slots (free ones included) and the free list.
    pub nodes: usize,
    /// The name arena and its free lists.
    pub names: usize,
    /// Bytes of the name arena in freed slots (part of `names`).
    pub names_garbage: usize,
    /// Child maps: the slot vector and each map's heap.
    pub dirs: usize,
}

impl<V: Default> Default for Trie<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Default> Trie<V> {
    /// An empty trie: just the root directory `/`, with `V::default()`.
    pub fn new() -> Self {
        Self::with_root(V::default())
    }

    /// Adds `path` as a directory, creating every missing intermediate
    /// directory with `V::default()`. An existing directory is not an error.
    pub fn add(&mut self, path: impl AsRef<OsStr>) -> Result<NodeId, TrieError> {
        self.add_with(path, &mut V::default)
    }

    /// An empty trie whose root directory carries `value`.
    pub fn with_root(value: V) -> Self {
        let root = Node {
            parent: 0,
            dir: NO_MAP,
            name: names::EMPTY,
            value,
        };
        Trie {
            nodes: vec![root],
            tags: vec![0],
            free: Vec::new(),
            len: 1,
            names: Names::new(),
            dirs: Vec::new(),
            dirs_free: Vec::new(),
            hasher: RandomState::new(),
            cookie_mask: u64::MAX >> 2,
        }
    }

    /// An empty trie with this one's cookie key and mask: names get the
    /// same cookies, so listing positions the kernel holds stay valid in a
    /// tree rebuilt from this one (a crash).
    pub fn empty_like(&self) -> Self {
        let mut t = Self::with_root(V::default());
        t.hasher = self.hasher.clone();
        t.cookie_mask = self.cookie_mask;
        t
    }

    /// Restricts cookies to `mask` bits (tests use a tiny mask to force
    /// cookie collisions between names).
    #[doc(hidden)]
    pub fn with_cookie_mask(mut self, mask: u64) -> Self {
        assert!(self.is_empty(), "set the cookie mask on an empty trie");
        self.cookie_mask = mask & (u64::MAX >> 2);
        self
    }

    /// The listing position of `name` in any directory: a keyed hash of
    /// the name, at least [`FIRST_COOKIE`] and below 2^62. Children are
    /// listed in cookie order.
    pub fn cookie(&self, name: &[u8]) -> u64 {
        cookie_of(&self.hasher, self.cookie_mask, name)
    }

    /// The root directory.
    pub fn root(&self) -> NodeId {
        NodeId(0)
    }

    /// Number of nodes, the root included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when only the root exists.
    pub fn is_empty(&self) -> bool {
        self.len == 1
    }

    /// Heap bytes held, by structure.
    pub fn memory(&self) -> TrieMemory {
        TrieMemory {
            nodes: self.nodes.capacity() * size_of::<Node<V>>()
                + self.tags.capacity() * 2
                + self.free.capacity() * 4,
            names: self.names.heap_bytes(),
            names_garbage: self.names.garbage(),
            dirs: self.dirs.capacity() * size_of::<DirMap>()
                + self.dirs_free.capacity() * 4
                + self.dirs.iter().map(DirMap::heap_bytes).sum::<usize>(),
        }
    }

    /// Releases spare capacity of the trie's vectors, e.g. after loading
    /// a large tree; later growth allocates again.
    pub fn shrink_to_fit(&mut self) {
        self.nodes.shrink_to_fit();
        self.tags.shrink_to_fit();
        self.names.shrink();
        self.dirs.shrink_to_fit();
    }

    fn node(&self, id: NodeId) -> Option<&Node<V>> {
        self.nodes.get(id.0 as usize).filter(|n| n.parent != FREE)
    }

    fn node_mut(&mut self, id: NodeId) -> Option<&mut Node<V>> {
        self.nodes
            .get_mut(id.0 as usize)
            .filter(|n| n.parent != FREE)
    }

    fn keys(&self) -> TrieKeys<'_, V> {
        trie_keys!(self)
    }

    /// The children of directory `id` (`None` for an empty one).
    fn dir(&self, id: NodeId) -> Result<Option<&DirMap>, TrieError> {
        match self.node(id) {
            None => Err(TrieError::NotFound),
            Some(n) if n.dir == LEAF => Err(TrieError::NotADirectory),
            Some(n) if n.dir == NO_MAP => Ok(None),
            Some(n) => Ok(self.dirs.get(n.dir as usize)),
        }
    }

    /// The name of node `id` (empty for the root).
    pub fn name_of(&self, id: NodeId) -> &[u8] {
        self.node(id).map_or(&[], |n| self.names.get(n.name))
    }

    /// Adds `id` (already named) to directory `parent`'s map, allocating
    /// the map on its first child; false if the name exists.
    fn link_child(&mut self, parent: NodeId, id: NodeId) -> Result<bool, TrieError> {
        let p = self.node(parent).ok_or(TrieError::NotFound)?;
        let slot = match p.dir {
            LEAF => return Err(TrieError::NotADirectory),
            NO_MAP => {
                let slot = match self.dirs_free.pop() {
                    Some(s) => s,
                    None => {
                        let s = u32::try_from(self.dirs.len())
                            .ok()
                            .filter(|&s| s < NO_MAP)
                            .ok_or(TrieError::NotFound)?;
                        self.dirs.push(DirMap::new());
                        s
                    }
                };
                self.nodes[parent.0 as usize].dir = slot;
                slot
            }
            s => s,
        };
        let keys = trie_keys!(self);
        let name = keys.name(id);
        let c = keys.cookie(id);
        let added = self.dirs[slot as usize].insert(c, name, id, &keys);
        if !added && self.dirs[slot as usize].is_empty() {
            self.free_map(parent);
        }
        Ok(added)
    }

    /// Frees the (empty) children map of `parent`.
    fn free_map(&mut self, parent: NodeId) {
        let Some(n) = self.nodes.get_mut(parent.0 as usize) else {
            return;
        };
        if n.dir != LEAF && n.dir != NO_MAP {
            self.dirs[n.dir as usize] = DirMap::new();
            self.dirs_free.push(n.dir);
            n.dir = NO_MAP;
        }
    }

    /// Removes `name` from directory `id`, freeing the map when it empties.
    fn remove_child(&mut self, id: NodeId, name: &[u8]) -> Option<NodeId> {
        let slot = self.node(id)?.dir;
        if slot == LEAF || slot == NO_MAP {
            return None;
        }
        let c = self.cookie(name);
        let keys = trie_keys!(self);
        let map = &mut self.dirs[slot as usize];
        let removed = map.remove(c, name, &keys);
        if map.is_empty() {
            self.free_map(id);
        }
        removed
    }

    /// The value stored at `id`.
    pub fn value(&self, id: NodeId) -> Option<&V> {
        self.node(id).map(|n| &n.value)
    }

    /// Mutable access to the value stored at `id`.
    pub fn value_mut(&mut self, id: NodeId) -> Option<&mut V> {
        self.node_mut(id).map(|n| &mut n.value)
    }

    /// The parent of `id`; `None` for the root or a missing node.
    pub fn parent(&self, id: NodeId) -> Option<NodeId> {
        if id == self.root() {
            return None;
        }
        self.node(id).map(|n| NodeId(n.parent))
    }

    /// Whether `id` is a directory node.
    pub fn is_dir(&self, id: NodeId) -> bool {
        self.node(id).is_some_and(|n| n.dir != LEAF)
    }

    /// Looks up the child `name` of directory `parent`.
    pub fn child(&self, parent: NodeId, name: &OsStr) -> Option<NodeId> {
        let name = name.as_bytes();
        self.dir(parent)
            .ok()??
            .get(self.cookie(name), name, &self.keys())
    }

    /// Number of children of `id` (0 for leaves).
    pub fn child_count(&self, id: NodeId) -> usize {
        self.dir(id).ok().flatten().map_or(0, DirMap::len)
    }

    /// Children of `id` in byte order of their names (sorted on each call:
    /// O(n log n); readdir uses [`Trie::entries_from`] instead).
    pub fn children(&self, id: NodeId) -> impl Iterator<Item = (&OsStr, NodeId)> + '_ {
        self.children_after(id, None)
    }

    /// Children of `id` whose names sort strictly after `after` (all when
    /// `None`), in byte order of names.
    pub fn children_after<'a>(
        &'a self,
        id: NodeId,
        after: Option<&'a [u8]>,
    ) -> impl Iterator<Item = (&'a OsStr, NodeId)> + 'a {
        let mut v: Vec<(&'a OsStr, NodeId)> = self
            .dir(id)
            .ok()
            .flatten()
            .into_iter()
            .flat_map(|c| c.ids())
            .map(|n| (self.name_of(n), n))
            .filter(|(name, _)| after.is_none_or(|a| *name > a))
            .map(|(name, n)| (OsStr::from_bytes(name), n))
            .collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v.into_iter()
    }

    /// Children of `id` with cookie `>= from`, in cookie order, as
    /// `(cookie, name, node)`. Resuming a listing after an entry with cookie
    /// `c` is `entries_from(id, c + 1)`: O(log n), and correct whether or
    /// not that entry still exists. (Two names whose cookies collide share
    /// a cookie and are listed together.)
    pub fn entries_from(
        &self,
        id: NodeId,
        from: u64,
    ) -> impl Iterator<Item = (u64, &OsStr, NodeId)> + '_ {
        self.raw_entries_from(id, from)
            .map(|(k, name, n)| (k, OsStr::from_bytes(name), n))
    }

    /// [`Trie::entries_from`] with names as bytes.
    fn raw_entries_from(
        &self,
        id: NodeId,
        from: u64,
    ) -> impl Iterator<Item = (u64, &[u8], NodeId)> + '_ {
        self.dir(id)
            .ok()
            .flatten()
            .into_iter()
            .flat_map(move |m| m.iter_from(from, self.keys()))
            .map(|(c, n)| (c, self.name_of(n), n))
    }

    /// Every live node with its parent (`None` for the root), value and
    /// whether it is a directory, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, Option<NodeId>, &V, bool)> + '_ {
        self.nodes.iter().enumerate().filter_map(|(i, n)| {
            if n.parent == FREE {
                return None;
            }
            let id = NodeId(i as u32);
            let parent = (i != 0).then_some(NodeId(n.parent));
            Some((id, parent, &n.value, n.dir != LEAF))
        })
    }

    /// Validates one component name.
    pub fn check_name(name: &[u8]) -> Result<(), TrieError> {
        if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
            return Err(TrieError::InvalidName);
        }
        if name.contains(&0) {
            return Err(TrieError::InvalidName);
        }
        if name.len() > NAME_MAX {
            return Err(TrieError::NameTooLong);
        }
        Ok(())
    }

    /// A new node slot; `None` when the 32-bit node space is used up.
    fn alloc(&mut self, node: Node<V>) -> Option<NodeId> {
        let tag = dirmap::tag_of(self.cookie(self.names.get(node.name)));
        let id = if let Some(i) = self.free.pop() {
            self.nodes[i as usize] = node;
            self.tags[i as usize] = tag;
            NodeId(i)
        } else {
            let i = u32::try_from(self.nodes.len()).ok().filter(|&i| i < FREE)?;
            self.nodes.push(node);
            self.tags.push(tag);
            NodeId(i)
        };
        self.len += 1;
        Some(id)
    }

    /// Inserts a new child `name` under directory `parent`: a directory
    /// node (it may get children) or a leaf.
    pub fn insert(
        &mut self,
        parent: NodeId,
        name: &OsStr,
        value: V,
        shape: Shape,
    ) -> Result<NodeId, TrieError> {
        let key = name.as_bytes();
        Self::check_name(key)?;
        self.dir(parent)?;
        // Out of node or name space: nothing more fits (a limit far above
        // any nr_inodes this machine could hold).
        let slot = self.names.add(key).ok_or(TrieError::NoSpace)?;
        let Some(id) = self.alloc(Node {
            parent: parent.0,
            dir: if shape == Shape::Dir { NO_MAP } else { LEAF },
            name: slot,
            value,
        }) else {
            self.names.remove(slot);
            return Err(TrieError::NoSpace);
        };
        // One search both checks the name and places it.
        match self.link_child(parent, id) {
            Ok(true) => Ok(id),
            Ok(false) => {
                self.release(id);
                Err(TrieError::Exists)
            }
            Err(e) => {
                self.release(id);
                Err(e)
            }
        }
    }

    /// Removes the child `name` of `parent` (a leaf or an empty directory)
    /// and returns its value.
    pub fn unlink(&mut self, parent: NodeId, name: &OsStr) -> Result<V, TrieError> {
        self.dir(parent)?;
        let id = self.child(parent, name).ok_or(TrieError::NotFound)?;
        if self.child_count(id) > 0 {
            return Err(TrieError::NotEmpty);
        }
        self.remove_child(parent, name.as_bytes());
        let v = self.release(id);
        self.maybe_compact_names();
        Ok(v)
    }

    /// Frees node `id` (already out of its parent's map) and its name.
    fn release(&mut self, id: NodeId) -> V {
        self.free_map(id);
        let n = &mut self.nodes[id.0 as usize];
        let value = std::mem::take(&mut n.value);
        let name = n.name;
        n.parent = FREE;
        n.dir = LEAF;
        n.name = names::EMPTY;
        self.names.remove(name);
        self.free.push(id.0);
        self.len -= 1;
        value
    }

    /// Rewrites the name arena when most of it is garbage: O(nodes), once
    /// per as many freed bytes as there are live ones.
    fn maybe_compact_names(&mut self) {
        if !self.names.wants_compaction() {
            return;
        }
        // New slots first, applied only when every name found one (the
        // new arena is smaller than the old, so all do): a half-rewritten
        // trie could not be.
        let mut fresh = self.names.compacted();
        let mut slots = Vec::with_capacity(self.nodes.len());
        for (i, n) in self.nodes.iter().enumerate() {
            let live = n.parent != FREE && i != 0;
            match live.then(|| fresh.add(self.names.get(n.name))) {
                Some(None) => return,
                Some(Some(s)) => slots.push(s),
                None => slots.push(n.name),
            }
        }
        for (n, s) in self.nodes.iter_mut().zip(slots) {
            n.name = s;
        }
        self.names = fresh;
    }

    /// Gives node `id` the name `name` (its old one is freed).
    fn rename_node(&mut self, id: NodeId, name: &[u8]) -> Result<(), TrieError> {
        let old = self.node(id).ok_or(TrieError::NotFound)?.name;
        if self.names.get(old) == name {
            return Ok(());
        }
        let slot = self.names.add(name).ok_or(TrieError::NoSpace)?;
        self.nodes[id.0 as usize].name = slot;
        self.tags[id.0 as usize] = dirmap::tag_of(self.cookie(name));
        self.names.remove(old);
        Ok(())
    }

    /// True when `a` is `b` or one of its ancestors.
    pub fn is_ancestor(&self, a: NodeId, b: NodeId) -> bool {
        let mut cur = b;
        loop {
            if cur == a {
                return true;
            }
            match self.parent(cur) {
                Some(p) => cur = p,
                None => return false,
            }
        }
    }

    /// Moves the entry `name` of `parent` to `new_name` under `new_parent`
    /// by relinking one edge (the subtree is not copied). The target name
    /// must be free; moving a directory into its own subtree is refused.
    pub fn move_entry(
        &mut self,
        parent: NodeId,
        name: &OsStr,
        new_parent: NodeId,
        new_name: &OsStr,
    ) -> Result<NodeId, TrieError> {
        Self::check_name(new_name.as_bytes())?;
        self.dir(parent)?;
        let id = self.child(parent, name).ok_or(TrieError::NotFound)?;
        self.dir(new_parent)?;
        if self.child(new_parent, new_name).is_some() {
            if parent == new_parent && name == new_name {
                return Ok(id);
            }
            return Err(TrieError::Exists);
        }
        if self.is_ancestor(id, new_parent) {
            return Err(TrieError::InvalidMove);
        }
        self.remove_child(parent, name.as_bytes());
        // Name first (the new map orders by it); on failure put it back.
        if let Err(e) = self.rename_node(id, new_name.as_bytes()) {
            self.link_child(parent, id)?;
            return Err(e);
        }
        self.nodes[id.0 as usize].parent = new_parent.0;
        self.link_child(new_parent, id)?;
        self.maybe_compact_names();
        Ok(id)
    }

    /// Swaps the nodes behind two existing entries (`RENAME_EXCHANGE`).
    pub fn exchange(
        &mut self,
        p1: NodeId,
        n1: &OsStr,
        p2: NodeId,
        n2: &OsStr,
    ) -> Result<(), TrieError> {
        self.dir(p1)?;
        self.dir(p2)?;
        let a = self.child(p1, n1).ok_or(TrieError::NotFound)?;
        let b = self.child(p2, n2).ok_or(TrieError::NotFound)?;
        if a == b {
            return Ok(());
        }
        if self.is_ancestor(a, p2) || self.is_ancestor(b, p1) {
            return Err(TrieError::InvalidMove);
        }
        let (c1, c2) = (self.cookie(n1.as_bytes()), self.cookie(n2.as_bytes()));
        let (m1, m2) = (self.nodes[p1.0 as usize].dir, self.nodes[p2.0 as usize].dir);
        let (Some(d1), Some(d2)) = (self.dirs.get(m1 as usize), self.dirs.get(m2 as usize)) else {
            return Err(TrieError::NotFound);
        };
        let keys = self.keys();
        let (Some(at1), Some(at2)) = (
            d1.find(c1, n1.as_bytes(), &keys),
            d2.find(c2, n2.as_bytes(), &keys),
        ) else {
            return Err(TrieError::NotFound);
        };
        // Each node takes the other's place and name: every place in the
        // maps keeps its name (and cookie), only the ids there swap.
        let (sa, sb) = (self.nodes[a.0 as usize].name, self.nodes[b.0 as usize].name);
        self.nodes[a.0 as usize].name = sb;
        self.nodes[b.0 as usize].name = sa;
        self.tags.swap(a.0 as usize, b.0 as usize);
        self.nodes[a.0 as usize].parent = p2.0;
        self.nodes[b.0 as usize].parent = p1.0;
        self.dirs[m1 as usize].put(at1, b);
        self.dirs[m2 as usize].put(at2, a);
        Ok(())
    }

    /// Splits a path into its components. Empty and `.` components are
    /// skipped; `..` is refused (the trie has no notion of a cwd).
    pub fn components(path: &OsStr) -> Result<Vec<&OsStr>, TrieError> {
        let path = path.as_bytes();
        // The checks of `check_name`, in component order (the first bad
        // component decides the error); NUL is looked for per component
        // only when the path has one (bulk loads split millions).
        let has_nul = path.contains(&0);
        let mut out = Vec::with_capacity(8);
        for c in path.split(|&b| b == b'/') {
            match c {
                b"" | b"." => continue,
                b".." => return Err(TrieError::InvalidName),
                _ if has_nul => {
                    Self::check_name(c)?;
                    out.push(OsStr::from_bytes(c));
                }
                _ if c.len() > NAME_MAX => return Err(TrieError::NameTooLong),
                _ => out.push(OsStr::from_bytes(c)),
            }
        }
        Ok(out)
    }

    /// Resolves an absolute (or root-relative) path to its node.
    pub fn lookup(&self, path: impl AsRef<OsStr>) -> Option<NodeId> {
        let mut cur = self.root();
        for c in Self::components(path.as_ref()).ok()? {
            cur = self.child(cur, c)?;
        }
        Some(cur)
    }

    /// Whether `path` exists.
    pub fn exists(&self, path: impl AsRef<OsStr>) -> bool {
        self.lookup(path).is_some()
    }

    /// Like [`Trie::add`], but new directories get `make()` as their value.
    pub fn add_with(
        &mut self,
        path: impl AsRef<OsStr>,
        make: &mut dyn FnMut() -> V,
    ) -> Result<NodeId, TrieError> {
        let path = path.as_ref();
        info!("Adding directory {}", path.to_string_lossy());
        let mut cur = self.root();
        for c in Self::components(path)? {
            cur = match self.child(cur, c) {
                Some(id) if self.is_dir(id) => id,
                Some(_) => return Err(TrieError::NotADirectory),
                None => self.insert(cur, c, make(), Shape::Dir)?,
            };
        }
        Ok(cur)
    }

    /// Removes `path` and everything below it; returns the removed values
    /// (children before parents). The root cannot be removed.
    pub fn remove(&mut self, path: impl AsRef<OsStr>) -> Result<Vec<V>, TrieError> {
        let comps = Self::components(path.as_ref())?;
        let (last, dirs) = comps.split_last().ok_or(TrieError::Root)?;
        let mut parent = self.root();
        for c in dirs {
            parent = self.child(parent, c).ok_or(TrieError::NotFound)?;
            if !self.is_dir(parent) {
                return Err(TrieError::NotADirectory);
            }
        }
        self.dir(parent)?;
        let id = self
            .remove_child(parent, last.as_bytes())
            .ok_or(TrieError::NotFound)?;
        let mut order = Vec::new();
        let mut stack = vec![id];
        while let Some(n) = stack.pop() {
            order.push(n);
            if let Ok(Some(c)) = self.dir(n) {
                stack.extend(c.ids());
            }
        }
        let out = order.into_iter().rev().map(|n| self.release(n)).collect();
        self.maybe_compact_names();
        Ok(out)
    }

    /// Moves the subtree at `from` to `to` (whose parent must exist and whose
    /// name must be free), relinking one edge.
    pub fn rename(
        &mut self,
        from: impl AsRef<OsStr>,
        to: impl AsRef<OsStr>,
    ) -> Result<NodeId, TrieError> {
        let (fp, fname) = self.split_parent(from.as_ref())?;
        let (tp, tname) = self.split_parent(to.as_ref())?;
        self.move_entry(fp, fname, tp, tname)
    }

    fn split_parent<'p>(&self, path: &'p OsStr) -> Result<(NodeId, &'p OsStr), TrieError> {
        let comps = Self::components(path)?;
        let (last, dirs) = comps.split_last().ok_or(TrieError::Root)?;
        let mut cur = self.root();
        for c in dirs {
            cur = self.child(cur, c).ok_or(TrieError::NotFound)?;
            if !self.is_dir(cur) {
                return Err(TrieError::NotADirectory);
            }
        }
        Ok((cur, last))
    }

    /// The full path of every leaf (a node without children: a file or an
    /// empty directory), sorted bytewise. An empty trie gives `["/"]`.
    pub fn leaves(&self) -> Vec<OsString> {
        self.leaves_under(self.root())
    }

    /// Like [`Trie::leaves`], restricted to the subtree at `id` (paths are
    /// still absolute).
    pub fn leaves_under(&self, id: NodeId) -> Vec<OsString> {
        let mut prefix = self.path_of(id).into_vec();
        if prefix == b"/" {
            prefix.clear();
        }
        let mut out = Vec::new();
        self.collect_leaves(id, &mut prefix, &mut out);
        if out.is_empty() {
            out.push(OsString::from("/"));
        }
        out.sort_unstable();
        out
    }

    fn collect_leaves(&self, id: NodeId, prefix: &mut Vec<u8>, out: &mut Vec<OsString>) {
        // An explicit stack keeps very deep trees from overflowing ours.
        let mut stack: Vec<(NodeId, Vec<u8>)> = vec![(id, std::mem::take(prefix))];
        while let Some((n, path)) = stack.pop() {
            match self.dir(n) {
                Ok(Some(c)) if !c.is_empty() => {
                    for child in c.ids() {
                        let name = self.name_of(child);
                        let mut p = Vec::with_capacity(path.len() + 1 + name.len());
                        p.extend_from_slice(&path);
                        p.push(b'/');
                        p.extend_from_slice(name);
                        stack.push((child, p));
                    }
                }
                _ if !path.is_empty() => out.push(OsString::from_vec(path)),
                _ => {}
            }
        }
    }

    /// The absolute path of node `id`, found by walking up to the root:
    /// O(depth), each node knows its name.
    pub fn path_of(&self, id: NodeId) -> OsString {
        let mut parts: Vec<&[u8]> = Vec::new();
        let mut cur = id;
        while let Some(p) = self.parent(cur) {
            parts.push(self.name_of(cur));
            cur = p;
        }
        if parts.is_empty() {
            return OsString::from("/");
        }
        let mut out = Vec::new();
        for p in parts.iter().rev() {
            out.push(b'/');
            out.extend_from_slice(p);
        }
        OsString::from_vec(out)
    }
}

#[cfg(test)]
mod tests;
