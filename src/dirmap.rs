//! The children of one trie directory, ordered by a *cookie*: a hash of the
//! name. Listing in cookie order makes the cookie a stable, stateless
//! readdir offset: any open of the directory can resume after any entry in
//! O(log n), even when that entry has been removed meanwhile, which is what
//! the kernel's readdir cache needs. Names whose cookies collide (64-bit
//! hashes of names in one directory: practically never) live in a small
//! side list and are listed right after their cookie-mate.

use std::collections::BTreeMap;
use std::iter::Peekable;

use crate::trie::NodeId;

/// One child: its name and node.
struct Entry {
    name: Box<[u8]>,
    node: NodeId,
}

/// Children of a directory keyed by cookie.
#[derive(Default)]
pub(crate) struct DirMap {
    map: BTreeMap<u64, Entry>,
    /// Entries whose cookie is already taken in `map`, sorted by cookie.
    collided: Vec<(u64, Entry)>,
}

impl DirMap {
    /// An empty map, usable in statics.
    pub(crate) const EMPTY: DirMap = DirMap {
        map: BTreeMap::new(),
        collided: Vec::new(),
    };

    /// Number of children.
    pub(crate) fn len(&self) -> usize {
        self.map.len() + self.collided.len()
    }

    /// True without children.
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty() && self.collided.is_empty()
    }

    /// The node named `name` (whose cookie is `c`).
    pub(crate) fn get(&self, c: u64, name: &[u8]) -> Option<NodeId> {
        match self.map.get(&c) {
            Some(e) if &*e.name == name => Some(e.node),
            Some(_) => self
                .collided
                .iter()
                .find(|(k, e)| *k == c && &*e.name == name)
                .map(|(_, e)| e.node),
            None => None,
        }
    }

    /// Adds `name` -> `node`; false (and no change) if the name exists.
    pub(crate) fn insert(&mut self, c: u64, name: &[u8], node: NodeId) -> bool {
        if self.get(c, name).is_some() {
            return false;
        }
        let entry = Entry {
            name: name.into(),
            node,
        };
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
        if let Some(e) = self.map.get_mut(&c)
            && &*e.name == name
        {
            e.node = node;
            return true;
        }
        match self
            .collided
            .iter_mut()
            .find(|(k, e)| *k == c && &*e.name == name)
        {
            Some((_, e)) => {
                e.node = node;
                true
            }
            None => false,
        }
    }

    /// Removes `name`, returning its node.
    pub(crate) fn remove(&mut self, c: u64, name: &[u8]) -> Option<NodeId> {
        let in_map = self.map.get(&c).is_some_and(|e| &*e.name == name);
        if in_map {
            let gone = self.map.remove(&c).map(|e| e.node);
            // Promote a cookie-mate, if any, so `map` stays the first stop.
            if let Some(i) = self.collided.iter().position(|(k, _)| *k == c) {
                let (_, e) = self.collided.remove(i);
                self.map.insert(c, e);
            }
            return gone;
        }
        let i = self
            .collided
            .iter()
            .position(|(k, e)| *k == c && &*e.name == name)?;
        Some(self.collided.remove(i).1.node)
    }

    /// Children with cookie `>= from`, in cookie order.
    pub(crate) fn iter_from(&self, from: u64) -> impl Iterator<Item = (u64, &[u8], NodeId)> + '_ {
        let start = self.collided.partition_point(|(k, _)| *k < from);
        Merge {
            a: self.map.range(from..).peekable(),
            b: self.collided[start..].iter().peekable(),
        }
    }
}

/// Merges the main map and the collision list by cookie (main map first).
struct Merge<'a, A: Iterator<Item = (&'a u64, &'a Entry)>, B: Iterator<Item = &'a (u64, Entry)>> {
    a: Peekable<A>,
    b: Peekable<B>,
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
        if take_b {
            self.b.next().map(|(k, e)| (*k, &*e.name, e.node))
        } else {
            self.a.next().map(|(k, e)| (*k, &*e.name, e.node))
        }
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
}
