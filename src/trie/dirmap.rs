//! The children of one trie directory, ordered by a *cookie*: a hash of the
//! name. Listing in cookie order makes the cookie a stable, stateless
//! readdir offset: any open of the directory can resume after any entry in
//! O(log n), even when that entry has been removed meanwhile, which is what
//! the kernel's readdir cache needs. Names whose cookies collide (62-bit
//! hashes of names in one directory: practically never) live in a small
//! side list and are listed right after their cookie-mate.

use std::collections::BTreeMap;
use std::iter::Peekable;

use crate::trie::NodeId;

/// One child: where its name lies in the directory's name arena, and its
/// node. 12 bytes, where a boxed name alone took 16 plus a heap block.
#[derive(Clone, Copy)]
struct Entry {
    at: u32,
    len: u8,
    node: NodeId,
}

/// The name of `e` in the arena `names`.
fn name_in<'a>(names: &'a [u8], e: &Entry) -> &'a [u8] {
    &names[e.at as usize..e.at as usize + e.len as usize]
}

/// Arenas smaller than this are never compacted.
const COMPACT_MIN: usize = 4096;

/// Children of a directory keyed by cookie.
#[derive(Default)]
pub(crate) struct DirMap {
    map: BTreeMap<u64, Entry>,
    /// Entries whose cookie is already taken in `map`, sorted by cookie.
    collided: Vec<(u64, Entry)>,
    /// The names of all children back to back (names are at most 255
    /// bytes); removed names stay as garbage until compaction.
    names: Vec<u8>,
    /// Bytes of `names` that belong to removed children.
    garbage: usize,
}

impl DirMap {
    /// An empty map, usable in statics.
    pub(crate) const EMPTY: DirMap = DirMap {
        map: BTreeMap::new(),
        collided: Vec::new(),
        names: Vec::new(),
        garbage: 0,
    };

    /// Number of children.
    pub(crate) fn len(&self) -> usize {
        self.map.len() + self.collided.len()
    }

    /// True without children.
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty() && self.collided.is_empty()
    }

    fn name(&self, e: &Entry) -> &[u8] {
        name_in(&self.names, e)
    }

    /// The node named `name` (whose cookie is `c`).
    pub(crate) fn get(&self, c: u64, name: &[u8]) -> Option<NodeId> {
        match self.map.get(&c) {
            Some(e) if self.name(e) == name => Some(e.node),
            Some(_) => self
                .collided
                .iter()
                .find(|(k, e)| *k == c && self.name(e) == name)
                .map(|(_, e)| e.node),
            None => None,
        }
    }

    /// Adds `name` -> `node`; false (and no change) if the name exists.
    /// Names are at most 255 bytes (the trie checks).
    pub(crate) fn insert(&mut self, c: u64, name: &[u8], node: NodeId) -> bool {
        if self.get(c, name).is_some() {
            return false;
        }
        let Ok(len) = u8::try_from(name.len()) else {
            return false;
        };
        let Ok(at) = u32::try_from(self.names.len()) else {
            return false;
        };
        self.names.extend_from_slice(name);
        let entry = Entry { at, len, node };
        match self.map.entry(c) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(entry);
            }
            std::collections::btree_map::Entry::Occupied(_) => {
                let at = self.collided.partition_point(|(k, _)| *k <= c);
                self.collided.insert(at, (c, entry));
            }
        }
        true
    }

    /// Points the existing `name` at `node`; false if the name is absent.
    pub(crate) fn set(&mut self, c: u64, name: &[u8], node: NodeId) -> bool {
        let names = &self.names;
        let is = |e: &Entry| name_in(names, e) == name;
        if let Some(e) = self.map.get_mut(&c)
            && is(e)
        {
            e.node = node;
            return true;
        }
        match self.collided.iter_mut().find(|(k, e)| *k == c && is(e)) {
            Some((_, e)) => {
                e.node = node;
                true
            }
            None => false,
        }
    }

    /// Removes `name`, returning its node.
    pub(crate) fn remove(&mut self, c: u64, name: &[u8]) -> Option<NodeId> {
        let in_map = self.map.get(&c).is_some_and(|e| self.name(e) == name);
        let gone = if in_map {
            let gone = self.map.remove(&c).map(|e| e.node);
            // Promote a cookie-mate, if any, so `map` stays the first stop.
            if let Some(i) = self.collided.iter().position(|(k, _)| *k == c) {
                let (_, e) = self.collided.remove(i);
                self.map.insert(c, e);
            }
            gone
        } else {
            let i = self
                .collided
                .iter()
                .position(|(k, e)| *k == c && self.name(e) == name)?;
            Some(self.collided.remove(i).1.node)
        };
        self.garbage += name.len();
        if self.is_empty() {
            self.names = Vec::new();
            self.garbage = 0;
        } else if self.garbage > COMPACT_MIN && self.garbage * 2 > self.names.len() {
            self.compact();
        }
        gone
    }

    /// Rewrites the name arena without the removed names: O(children),
    /// once per as many removals as there are live names, so O(1) each.
    fn compact(&mut self) {
        let mut names = Vec::with_capacity(self.names.len() - self.garbage);
        let entries = self
            .map
            .values_mut()
            .chain(self.collided.iter_mut().map(|(_, e)| e));
        for e in entries {
            let at = names.len() as u32;
            names.extend_from_slice(name_in(&self.names, e));
            e.at = at;
        }
        self.names = names;
        self.garbage = 0;
    }

    /// Children with cookie `>= from`, in cookie order.
    pub(crate) fn iter_from(&self, from: u64) -> impl Iterator<Item = (u64, &[u8], NodeId)> + '_ {
        let start = self.collided.partition_point(|(k, _)| *k < from);
        Merge {
            a: self.map.range(from..).peekable(),
            b: self.collided[start..].iter().peekable(),
            dir: self,
        }
    }
}

/// Merges the main map and the collision list by cookie (main map first).
struct Merge<'a, A: Iterator<Item = (&'a u64, &'a Entry)>, B: Iterator<Item = &'a (u64, Entry)>> {
    a: Peekable<A>,
    b: Peekable<B>,
    dir: &'a DirMap,
}

impl<'a, A, B> Iterator for Merge<'a, A, B>
where
    A: Iterator<Item = (&'a u64, &'a Entry)>,
    B: Iterator<Item = &'a (u64, Entry)>,
{
    type Item = (u64, &'a [u8], NodeId);

    fn next(&mut self) -> Option<Self::Item> {
        let take_b = match (self.a.peek(), self.b.peek()) {
            (Some((ka, _)), Some((kb, _))) => kb < ka,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        let (k, e) = if take_b {
            self.b.next().map(|(k, e)| (*k, e))?
        } else {
            self.a.next().map(|(k, e)| (*k, e))?
        };
        Some((k, self.dir.name(e), e.node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u32) -> NodeId {
        NodeId::from_index(i)
    }

    #[test]
    fn collisions_are_stored_found_listed_and_promoted() {
        let mut d = DirMap::default();
        assert!(d.insert(10, b"a", id(1)));
        assert!(d.insert(10, b"b", id(2)));
        assert!(d.insert(10, b"c", id(3)));
        assert!(d.insert(5, b"x", id(4)));
        assert!(d.insert(20, b"y", id(5)));
        assert!(!d.insert(10, b"b", id(9)));
        assert_eq!(d.len(), 5);
        assert_eq!(d.get(10, b"c"), Some(id(3)));
        assert_eq!(d.get(10, b"z"), None);
        let all: Vec<_> = d.iter_from(0).map(|(k, n, _)| (k, n.to_vec())).collect();
        let keys: Vec<u64> = all.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [5, 10, 10, 10, 20]);
        assert_eq!(d.iter_from(11).count(), 1);
        assert_eq!(d.iter_from(10).count(), 4);
        assert!(d.set(10, b"b", id(7)));
        assert_eq!(d.get(10, b"b"), Some(id(7)));
        // Removing the main entry promotes a cookie-mate.
        assert_eq!(d.remove(10, b"a"), Some(id(1)));
        assert_eq!(d.get(10, b"b"), Some(id(7)));
        assert_eq!(d.get(10, b"c"), Some(id(3)));
        assert_eq!(d.remove(10, b"c"), Some(id(3)));
        assert_eq!(d.remove(10, b"c"), None);
        assert_eq!(d.len(), 3);
        assert_eq!(d.remove(10, b"b"), Some(id(7)));
        assert_eq!(d.remove(5, b"x"), Some(id(4)));
        assert_eq!(d.remove(20, b"y"), Some(id(5)));
        assert!(d.is_empty());
    }

    #[test]
    fn names_survive_compaction() {
        let mut d = DirMap::default();
        let name = |i: u32| format!("entry-with-a-longish-name-{i:06}").into_bytes();
        for i in 0..2000 {
            assert!(d.insert(u64::from(i) * 7 + 3, &name(i), id(i)));
        }
        // Remove three in four: compaction runs several times.
        for i in (0..2000).filter(|i| i % 4 != 0) {
            assert_eq!(d.remove(u64::from(i) * 7 + 3, &name(i)), Some(id(i)));
        }
        assert!(d.names.len() < 2 * 500 * name(0).len() + COMPACT_MIN * 2);
        for i in 0..2000 {
            let want = (i % 4 == 0).then(|| id(i));
            assert_eq!(d.get(u64::from(i) * 7 + 3, &name(i)), want);
        }
        let listed: Vec<Vec<u8>> = d.iter_from(0).map(|(_, n, _)| n.to_vec()).collect();
        let want: Vec<Vec<u8>> = (0..2000).filter(|i| i % 4 == 0).map(name).collect();
        assert_eq!(listed, want);
        for i in (0..2000).filter(|i| i % 4 == 0) {
            d.remove(u64::from(i) * 7 + 3, &name(i));
        }
        assert!(d.is_empty() && d.names.is_empty());
    }
}
