//! The children of one trie directory: their node ids, ordered by a
//! *cookie* (a keyed hash of the name) and then by name. Listing in cookie
//! order makes the cookie a stable, stateless readdir offset: any open of
//! the directory can resume after any entry in O(log n), even when that
//! entry has been removed meanwhile, which is what the kernel's readdir
//! cache needs.
//!
//! A child costs 4 bytes here: names live in the trie's name arena and
//! cookies are recomputed from them ([`Keys`]) rather than stored. Small
//! directories are one sorted vector; large ones are split into chunks of
//! at most [`CHUNK_MAX`] ids with each chunk's first cookie kept, so an
//! insertion moves at most one chunk and a search hashes only within one.

use crate::trie::NodeId;

/// A directory with more children than this is split into chunks.
const FLAT_MAX: usize = 2048;
/// Most ids in one chunk; a fuller one is split in two.
const CHUNK_MAX: usize = 2048;
/// A chunk this small is merged into a neighbour when both fit.
const CHUNK_MIN: usize = CHUNK_MAX / 4;

/// The top 16 bits of a cookie's 62: ordering by tag agrees with ordering
/// by cookie, so most comparisons need no hashing.
pub(crate) fn tag_of(c: u64) -> u16 {
    (c.saturating_sub(crate::trie::FIRST_COOKIE) >> 46).min(0xFFFF) as u16
}

/// The name and cookie of a node, as the trie knows them.
pub(crate) trait Keys {
    /// The cookie of `id`'s name.
    fn cookie(&self, id: NodeId) -> u64;
    /// The name of `id`.
    fn name(&self, id: NodeId) -> &[u8];
    /// [`tag_of`] the cookie of `id` (the trie keeps it, so that a search
    /// hashes only on equal tags).
    fn tag(&self, id: NodeId) -> u16 {
        tag_of(self.cookie(id))
    }
    /// Whether the cookie of `id` is below `c`.
    fn below(&self, id: NodeId, c: u64) -> bool {
        let (t, tc) = (self.tag(id), tag_of(c));
        if t != tc { t < tc } else { self.cookie(id) < c }
    }
    /// Whether the cookie of `id` is `c`.
    fn is(&self, id: NodeId, c: u64) -> bool {
        self.tag(id) == tag_of(c) && self.cookie(id) == c
    }
}

impl<K: Keys> Keys for &K {
    fn cookie(&self, id: NodeId) -> u64 {
        (**self).cookie(id)
    }
    fn name(&self, id: NodeId) -> &[u8] {
        (**self).name(id)
    }
    fn tag(&self, id: NodeId) -> u16 {
        (**self).tag(id)
    }
}

/// Large directories: chunks and the cookie each starts with.
#[derive(Default, Clone)]
pub(crate) struct Chunked {
    chunks: Vec<Vec<NodeId>>,
    firsts: Vec<u64>,
    len: usize,
}

/// Children of a directory. See the module docs.
#[derive(Clone)]
pub(crate) enum DirMap {
    /// At most [`FLAT_MAX`] children, sorted.
    Flat(Vec<NodeId>),
    /// More: sorted chunks.
    Chunked(Box<Chunked>),
}

/// A position: chunk and index inside it (`(n, 0)` past the end).
pub(crate) type Pos = (usize, usize);

impl DirMap {
    /// A map without children.
    pub(crate) fn new() -> DirMap {
        DirMap::Flat(Vec::new())
    }

    /// Number of children.
    pub(crate) fn len(&self) -> usize {
        match self {
            DirMap::Flat(v) => v.len(),
            DirMap::Chunked(c) => c.len,
        }
    }

    /// True without children.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn nchunks(&self) -> usize {
        match self {
            DirMap::Flat(_) => 1,
            DirMap::Chunked(c) => c.chunks.len(),
        }
    }

    fn chunk(&self, i: usize) -> &[NodeId] {
        match self {
            DirMap::Flat(v) if i == 0 => v,
            DirMap::Flat(_) => &[],
            DirMap::Chunked(c) => c.chunks.get(i).map_or(&[], |v| v),
        }
    }

    /// The first position whose cookie is `>= c`.
    fn lower_bound(&self, c: u64, k: &impl Keys) -> Pos {
        match self {
            DirMap::Flat(v) => (0, v.partition_point(|&id| k.below(id, c))),
            DirMap::Chunked(b) => {
                let j = b.firsts.partition_point(|&f| f < c);
                if j == 0 {
                    return (0, 0);
                }
                let ch = &b.chunks[j - 1];
                let p = ch.partition_point(|&id| k.below(id, c));
                if p < ch.len() { (j - 1, p) } else { (j, 0) }
            }
        }
    }

    /// The position after `p`.
    fn step(&self, (ci, i): Pos) -> Pos {
        if i + 1 < self.chunk(ci).len() {
            (ci, i + 1)
        } else {
            (ci + 1, 0)
        }
    }

    fn at(&self, (ci, i): Pos) -> Option<NodeId> {
        self.chunk(ci).get(i).copied()
    }

    /// Where `name` (cookie `c`) is, or where it would go: `Ok` when found.
    fn search(&self, c: u64, name: &[u8], k: &impl Keys) -> Result<Pos, Pos> {
        let mut p = self.lower_bound(c, k);
        while let Some(id) = self.at(p) {
            if !k.is(id, c) {
                break;
            }
            match k.name(id).cmp(name) {
                std::cmp::Ordering::Less => p = self.step(p),
                std::cmp::Ordering::Equal => return Ok(p),
                std::cmp::Ordering::Greater => break,
            }
        }
        Err(p)
    }

    /// The child named `name` (whose cookie is `c`).
    pub(crate) fn get(&self, c: u64, name: &[u8], k: &impl Keys) -> Option<NodeId> {
        self.search(c, name, k).ok().and_then(|p| self.at(p))
    }

    /// Adds `id`, whose name is `name` with cookie `c`; false (and no
    /// change) if the name exists.
    pub(crate) fn insert(&mut self, c: u64, name: &[u8], id: NodeId, k: &impl Keys) -> bool {
        let Err((ci, i)) = self.search(c, name, k) else {
            return false;
        };
        match self {
            DirMap::Flat(v) => {
                // Past the end is `(1, 0)`.
                let i = if ci > 0 { v.len() } else { i };
                v.insert(i, id);
                if v.len() > FLAT_MAX {
                    let all = std::mem::take(v);
                    *self = DirMap::from_sorted_chunks(&all, k);
                }
            }
            DirMap::Chunked(b) => {
                // Past the end of the last chunk: append to it.
                let (ci, i) = if ci == b.chunks.len() {
                    (ci - 1, b.chunks[ci - 1].len())
                } else {
                    (ci, i)
                };
                let ch = &mut b.chunks[ci];
                ch.insert(i, id);
                if i == 0 {
                    b.firsts[ci] = c;
                }
                b.len += 1;
                if ch.len() > CHUNK_MAX {
                    let tail = ch.split_off(ch.len() / 2);
                    b.firsts.insert(ci + 1, k.cookie(tail[0]));
                    b.chunks.insert(ci + 1, tail);
                }
            }
        }
        true
    }

    fn from_sorted_chunks(ids: &[NodeId], k: &impl Keys) -> DirMap {
        let mut c = Chunked::default();
        for part in ids.chunks(CHUNK_MAX / 2) {
            c.firsts.push(k.cookie(part[0]));
            c.chunks.push(part.to_vec());
        }
        c.len = ids.len();
        DirMap::Chunked(Box::new(c))
    }

    /// Where the child named `name` (cookie `c`) is.
    pub(crate) fn find(&self, c: u64, name: &[u8], k: &impl Keys) -> Option<Pos> {
        self.search(c, name, k).ok()
    }

    /// Puts `id` at `p` (from [`DirMap::find`], with no change since): the
    /// caller makes sure `id` sorts there (an exchange swaps nodes and
    /// their names, so every place keeps its name).
    pub(crate) fn put(&mut self, (ci, i): Pos, id: NodeId) {
        match self {
            DirMap::Flat(v) => v[i] = id,
            DirMap::Chunked(b) => b.chunks[ci][i] = id,
        }
    }

    /// Removes the child named `name` and returns it.
    pub(crate) fn remove(&mut self, c: u64, name: &[u8], k: &impl Keys) -> Option<NodeId> {
        let (ci, i) = self.search(c, name, k).ok()?;
        match self {
            DirMap::Flat(v) => {
                let id = v.remove(i);
                if v.capacity() > 2 * v.len() + 4 {
                    v.shrink_to(v.len() + v.len() / 4);
                }
                Some(id)
            }
            DirMap::Chunked(b) => {
                let id = b.chunks[ci].remove(i);
                b.len -= 1;
                if b.chunks[ci].is_empty() {
                    b.chunks.remove(ci);
                    b.firsts.remove(ci);
                } else if i == 0 {
                    b.firsts[ci] = k.cookie(b.chunks[ci][0]);
                }
                // Keep chunks from thinning out: merge a small one into
                // its successor when they fit together.
                if ci + 1 < b.chunks.len()
                    && b.chunks[ci].len() < CHUNK_MIN
                    && b.chunks[ci].len() + b.chunks[ci + 1].len() <= CHUNK_MAX
                {
                    let next = b.chunks.remove(ci + 1);
                    b.firsts.remove(ci + 1);
                    b.chunks[ci].extend(next);
                }
                if b.len <= FLAT_MAX / 2 {
                    let all: Vec<NodeId> = b.chunks.concat();
                    *self = DirMap::Flat(all);
                }
                Some(id)
            }
        }
    }

    /// Children with cookie `>= from`, in order, as `(cookie, id)`.
    pub(crate) fn iter_from<'a, K: Keys + 'a>(
        &'a self,
        from: u64,
        k: K,
    ) -> impl Iterator<Item = (u64, NodeId)> + 'a {
        let mut p = self.lower_bound(from, &k);
        std::iter::from_fn(move || {
            let id = self.at(p)?;
            p = self.step(p);
            Some((k.cookie(id), id))
        })
    }

    /// Every child id, in order, without computing cookies.
    pub(crate) fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.nchunks()).flat_map(move |i| self.chunk(i).iter().copied())
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            DirMap::Flat(v) => v.capacity() * 4,
            DirMap::Chunked(b) => {
                size_of::<Chunked>()
                    + b.chunks.capacity() * size_of::<Vec<NodeId>>()
                    + b.firsts.capacity() * 8
                    + b.chunks.iter().map(|c| c.capacity() * 4).sum::<usize>()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names `n<i>` with a cookie chosen by the test.
    struct TestKeys {
        names: Vec<Vec<u8>>,
        cookies: Vec<u64>,
    }

    impl Keys for TestKeys {
        fn cookie(&self, id: NodeId) -> u64 {
            self.cookies[id.index() as usize]
        }
        fn name(&self, id: NodeId) -> &[u8] {
            &self.names[id.index() as usize]
        }
    }

    fn id(i: u32) -> NodeId {
        NodeId::from_index(i)
    }

    fn keys(cookie: impl Fn(u32) -> u64, n: u32) -> TestKeys {
        TestKeys {
            names: (0..n).map(|i| format!("n{i}").into_bytes()).collect(),
            cookies: (0..n).map(cookie).collect(),
        }
    }

    fn add(d: &mut DirMap, k: &TestKeys, i: u32) -> bool {
        let c = k.cookie(id(i));
        d.insert(c, &k.names[i as usize].clone(), id(i), k)
    }

    fn del(d: &mut DirMap, k: &TestKeys, i: u32) -> Option<NodeId> {
        let c = k.cookie(id(i));
        d.remove(c, &k.names[i as usize].clone(), k)
    }

    #[test]
    fn collisions_are_stored_found_and_listed_together() {
        let k = keys(|i| [10, 10, 10, 5, 20][i as usize], 5);
        let mut d = DirMap::new();
        for i in 0..5 {
            assert!(add(&mut d, &k, i));
        }
        assert!(!add(&mut d, &k, 1));
        assert_eq!(d.len(), 5);
        for i in 0..5 {
            assert_eq!(
                d.get(k.cookie(id(i)), &k.names[i as usize], &k),
                Some(id(i))
            );
        }
        assert_eq!(d.get(10, b"zz", &k), None);
        let order: Vec<u32> = d.iter_from(0, &k).map(|(_, n)| n.index()).collect();
        assert_eq!(order, [3, 0, 1, 2, 4]);
        assert_eq!(d.iter_from(11, &k).count(), 1);
        assert_eq!(d.iter_from(10, &k).count(), 4);
        assert_eq!(del(&mut d, &k, 0), Some(id(0)));
        assert_eq!(d.get(10, b"n1", &k), Some(id(1)));
        assert_eq!(del(&mut d, &k, 0), None);
        for i in 1..5 {
            assert_eq!(del(&mut d, &k, i), Some(id(i)));
        }
        assert!(d.is_empty());
    }

    #[test]
    fn large_directories_split_merge_and_stay_ordered() {
        const N: u32 = 20_000;
        // A scrambled cookie per name, with some collisions.
        let k = keys(|i| u64::from(i.wrapping_mul(2_654_435_761) % 15_000), N);
        let mut d = DirMap::new();
        for i in 0..N {
            assert!(add(&mut d, &k, i));
        }
        assert!(matches!(d, DirMap::Chunked(_)));
        let check = |d: &DirMap, live: &dyn Fn(u32) -> bool| {
            let got: Vec<(u64, Vec<u8>)> = d
                .iter_from(0, &k)
                .map(|(c, n)| (c, k.name(n).to_vec()))
                .collect();
            let mut want: Vec<(u64, Vec<u8>)> = (0..N)
                .filter(|&i| live(i))
                .map(|i| (k.cookie(id(i)), k.names[i as usize].clone()))
                .collect();
            want.sort();
            assert_eq!(got, want);
            assert_eq!(d.len(), want.len());
            for i in 0..N {
                let want = live(i).then(|| id(i));
                assert_eq!(d.get(k.cookie(id(i)), &k.names[i as usize], &k), want);
            }
            // Resuming at any cookie gives the tail.
            for from in [0, 1, 7_000, 14_999, 15_000] {
                let n = d.iter_from(from, &k).count();
                assert_eq!(n, got.iter().filter(|(c, _)| *c >= from).count());
            }
        };
        check(&d, &|_| true);
        for i in (0..N).filter(|i| i % 3 != 0) {
            assert_eq!(del(&mut d, &k, i), Some(id(i)));
        }
        check(&d, &|i| i % 3 == 0);
        for i in (0..N).filter(|i| i % 3 == 0 && i % 7 != 0) {
            assert_eq!(del(&mut d, &k, i), Some(id(i)));
        }
        assert!(matches!(d, DirMap::Flat(_)));
        check(&d, &|i| i % 21 == 0);
    }
}
