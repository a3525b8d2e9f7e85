//! Resumable, bounded listing of the leaf paths under a node: what
//! `triefs ls-prefix` pages through without a second copy of the tree.
//!
//! Children are visited in listing order: by cookie, and by name within a
//! cookie shared by colliding names. The resume point is the last path
//! returned, so no state is kept between pages and a page costs
//! O(depth · log n) to resume, however large the directories are.

use std::os::unix::ffi::OsStrExt;

use super::{NodeId, Trie, TrieError};

/// One page of [`Trie::leaves_page`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LeafPage {
    /// Leaf paths relative to the start node, components joined by `/`,
    /// without a leading `/`. The start node itself, when it is an empty
    /// directory, is the empty path.
    pub paths: Vec<Vec<u8>>,
    /// No leaves are left after this page.
    pub done: bool,
    /// Directories not entered because the `enter` filter refused them.
    pub skipped: usize,
}

/// A directory being listed and the last child visited in it.
struct Frame<'a> {
    node: NodeId,
    /// Path of `node` relative to the start, with a trailing `/` unless empty.
    prefix: Vec<u8>,
    /// `(cookie, name)` of the last child visited; `None` before the first.
    last: Option<(u64, &'a [u8])>,
}

impl<V> Trie<V> {
    /// Up to `budget` bytes (each path counted with one extra byte, for a
    /// separator) of the leaf paths under `id`, continuing after the path
    /// `after` from a previous page (relative to `id`, as returned).
    ///
    /// `enter` is asked before descending into each non-empty directory,
    /// the start included; a refused directory is counted in
    /// [`LeafPage::skipped`] and neither listed nor entered (an empty
    /// directory is a leaf: listing it needs only its parent). A first path
    /// that alone exceeds the budget gives an empty page that is not
    /// done. Changes between pages are seen or not, as with `readdir`;
    /// nothing is listed twice unless it moved.
    ///
    /// ```
    /// use triefs::trie::Trie;
    /// let mut t: Trie = Trie::new();
    /// for p in ["/var/www/a", "/var/www/b", "/var/log", "/etc"] {
    ///     t.add(p).unwrap();
    /// }
    /// let var = t.lookup("/var").unwrap();
    /// let mut all = Vec::new();
    /// let mut after: Option<Vec<u8>> = None;
    /// loop {
    ///     // 8 bytes: at most one path per page here.
    ///     let page = t.leaves_page(var, after.as_deref(), 8, |_| true).unwrap();
    ///     after = page.paths.last().cloned().or(after);
    ///     all.extend(page.paths);
    ///     if page.done {
    ///         break;
    ///     }
    /// }
    /// all.sort();
    /// assert_eq!(all, [&b"log"[..], b"www/a", b"www/b"]);
    /// ```
    pub fn leaves_page<'a>(
        &'a self,
        id: NodeId,
        after: Option<&'a [u8]>,
        budget: usize,
        mut enter: impl FnMut(NodeId) -> bool,
    ) -> Result<LeafPage, TrieError> {
        let mut page = LeafPage::default();
        self.dir(id)?;
        let mut stack = match after {
            None => {
                if !enter(id) {
                    page.skipped = 1;
                    page.done = true;
                    return Ok(page);
                }
                if self.child_count(id) == 0 {
                    page.done = budget >= 1;
                    if page.done {
                        page.paths.push(Vec::new());
                    }
                    return Ok(page);
                }
                vec![Frame {
                    node: id,
                    prefix: Vec::new(),
                    last: None,
                }]
            }
            Some(after) => self.resume_stack(id, after, &mut enter),
        };
        let mut used = 0;
        while let Some(top) = stack.last_mut() {
            let Some((cookie, name, child)) = self.next_child(top.node, top.last) else {
                stack.pop();
                continue;
            };
            let mut path = Vec::with_capacity(top.prefix.len() + name.len());
            path.extend_from_slice(&top.prefix);
            path.extend_from_slice(name);
            if self.is_dir(child) && self.child_count(child) > 0 {
                top.last = Some((cookie, name));
                if enter(child) {
                    path.push(b'/');
                    stack.push(Frame {
                        node: child,
                        prefix: path,
                        last: None,
                    });
                } else {
                    page.skipped += 1;
                }
                continue;
            }
            if used + path.len() + 1 > budget {
                return Ok(page);
            }
            top.last = Some((cookie, name));
            used += path.len() + 1;
            page.paths.push(path);
        }
        page.done = true;
        Ok(page)
    }

    /// The frames that continue a listing right after the path `after`.
    /// Components that no longer exist still position the listing, by
    /// their cookie and name. The cursor comes from the caller, so every
    /// directory on it is put to `enter` again: a made-up cursor cannot
    /// resume inside a directory the caller may not list.
    fn resume_stack<'a>(
        &'a self,
        id: NodeId,
        after: &'a [u8],
        enter: &mut impl FnMut(NodeId) -> bool,
    ) -> Vec<Frame<'a>> {
        let mut stack = Vec::new();
        let mut node = Some(id).filter(|&n| enter(n));
        let mut prefix = Vec::new();
        for comp in after.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            let Some(n) = node else { break };
            stack.push(Frame {
                node: n,
                prefix: prefix.clone(),
                last: Some((self.cookie(comp), comp)),
            });
            node = self
                .child(n, std::ffi::OsStr::from_bytes(comp))
                .filter(|&c| self.is_dir(c) && enter(c));
            prefix.extend_from_slice(comp);
            prefix.push(b'/');
        }
        stack
    }

    /// The child of `dir` that follows `last` in listing order.
    fn next_child<'a>(
        &'a self,
        dir: NodeId,
        last: Option<(u64, &[u8])>,
    ) -> Option<(u64, &'a [u8], NodeId)> {
        let map = self.dir(dir).ok()?;
        let mut best: Option<(u64, &'a [u8], NodeId)> = None;
        for (k, name, n) in map.iter_from(last.map_or(0, |l| l.0)) {
            if best.is_some_and(|b| b.0 != k) {
                break;
            }
            if last.is_some_and(|(lk, ln)| k == lk && name <= ln) {
                continue;
            }
            if best.is_none_or(|b| name < b.1) {
                best = Some((k, name, n));
            }
        }
        best
    }
}
