//! Resumable, bounded listing of the leaf paths under a node: what
//! `triefs ls-prefix` pages through without a second copy of the tree.
//!
//! Children are visited in listing order: by cookie, and by name within a
//! cookie shared by colliding names. A page ends with a *cursor*, the
//! position to resume from, so no state is kept between pages.
//!
//! Whoever asks for a page controls the tree's shape (depth, name lengths)
//! and the cursor, so every page is bounded three ways ([`PageLimits`]):
//! - **memory**: the paths returned (`bytes`) plus one shared path buffer
//!   and one small frame per level of depth; no frame owns a copy of its
//!   prefix, so a deep chain costs O(depth), not O(depth²);
//! - **depth**: paths longer than `max_path` are not returned and not
//!   descended into; they are reported in [`LeafPage::too_long`] (the
//!   first bytes and the length). This also bounds the cursor, which the
//!   next request must carry;
//! - **time**: at most `steps` children are visited per page, whatever
//!   the page returns (a million refused or empty-handed directories end
//!   a page early instead of holding the caller's lock for seconds).

use std::os::unix::ffi::OsStrExt;

use super::{NodeId, Trie, TrieError};

/// How much one [`Trie::leaves_page`] call may return and do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimits {
    /// Bytes of paths returned, each counted with one extra byte (for a
    /// separator); an over-long record counts as its head plus
    /// [`TOO_LONG_EXTRA`]. Values below [`TOO_LONG_EXTRA`] count as that.
    pub bytes: usize,
    /// Longest path returned or descended into, relative to the start
    /// (and below `bytes`, so that whatever comes next fits on an empty
    /// page: it is capped at `bytes - 1`).
    pub max_path: usize,
    /// Children visited at most (each is one ordered-map step).
    pub steps: usize,
}

/// Bytes kept of a path reported in [`LeafPage::too_long`].
pub const TOO_LONG_HEAD: usize = 128;

/// Bytes an over-long record costs besides its head (room for its length
/// and flags in an encoded reply).
pub const TOO_LONG_EXTRA: usize = 8;

/// A path longer than [`PageLimits::max_path`]: not listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLong {
    /// The first [`TOO_LONG_HEAD`] bytes of the path (relative to the start).
    pub head: Vec<u8>,
    /// The length of the whole path, in bytes.
    pub len: usize,
    /// It is a non-empty directory: nothing under it is listed either.
    pub dir: bool,
}

/// One page of [`Trie::leaves_page`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LeafPage {
    /// Leaf paths relative to the start node, components joined by `/`,
    /// without a leading `/`. The start node itself, when it is an empty
    /// directory, is the empty path.
    pub paths: Vec<Vec<u8>>,
    /// Entries whose path is too long to list (see [`PageLimits`]).
    pub too_long: Vec<TooLong>,
    /// No leaves are left after this page.
    pub done: bool,
    /// Directories not entered because the `enter` filter refused them.
    pub skipped: usize,
    /// Where the next page starts: pass it as `after`. Empty when done.
    /// At most `max_path` + 256 bytes.
    pub cursor: Vec<u8>,
}

/// A directory being listed and the last child visited in it.
struct Frame<'a> {
    node: NodeId,
    /// Length of the shared path buffer at this directory: its path
    /// relative to the start, with a trailing `/` unless empty.
    at: usize,
    /// `(cookie, name)` of the last child visited; `None` before the first.
    last: Option<(u64, &'a [u8])>,
}

impl<V: Default> Trie<V> {
    /// One page of the leaf paths under `id`, continuing at the cursor
    /// `after` of a previous page (`None` to start), within `limits`.
    ///
    /// `enter` is asked before descending into each non-empty directory,
    /// the start included; a refused directory is counted in
    /// [`LeafPage::skipped`] and neither listed nor entered (an empty
    /// directory is a leaf: listing it needs only its parent). Every page
    /// that is not done moves the cursor forward. Changes between pages
    /// are seen or not, as with `readdir`; nothing is listed twice unless
    /// it moved. A cursor is untrusted input: a made-up one only
    /// positions the listing, it never reaches into a refused directory.
    ///
    /// ```
    /// use triefs::trie::{PageLimits, Trie};
    /// let mut t: Trie = Trie::new();
    /// for p in ["/var/www/a", "/var/www/b", "/var/log", "/etc"] {
    ///     t.add(p).unwrap();
    /// }
    /// let var = t.lookup("/var").unwrap();
    /// // 8 bytes: at most one path per page here.
    /// let limits = PageLimits { bytes: 8, max_path: 4096, steps: 1000 };
    /// let mut all = Vec::new();
    /// let mut after: Option<Vec<u8>> = None;
    /// loop {
    ///     let page = t.leaves_page(var, after.as_deref(), limits, |_| true).unwrap();
    ///     all.extend(page.paths);
    ///     if page.done {
    ///         break;
    ///     }
    ///     after = Some(page.cursor);
    /// }
    /// all.sort();
    /// assert_eq!(all, [&b"log"[..], b"www/a", b"www/b"]);
    /// ```
    pub fn leaves_page<'a>(
        &'a self,
        id: NodeId,
        after: Option<&'a [u8]>,
        limits: PageLimits,
        mut enter: impl FnMut(NodeId) -> bool,
    ) -> Result<LeafPage, TrieError> {
        let mut page = LeafPage::default();
        self.dir(id)?;
        // Whatever comes next fits on an empty page, so every page makes
        // progress: a leaf of at most `max_path` bytes, or a record of at
        // most `head_max` bytes.
        let bytes = limits.bytes.max(TOO_LONG_EXTRA);
        let max_path = limits.max_path.min(bytes - 1);
        let head_max = TOO_LONG_HEAD.min(bytes - TOO_LONG_EXTRA);
        // The one path buffer: the path of the deepest frame.
        let mut path: Vec<u8> = Vec::new();
        let mut stack = match after {
            None => {
                if !enter(id) {
                    page.skipped = 1;
                    page.done = true;
                    return Ok(page);
                }
                if self.child_count(id) == 0 {
                    page.paths.push(Vec::new());
                    page.done = true;
                    return Ok(page);
                }
                vec![Frame {
                    node: id,
                    at: 0,
                    last: None,
                }]
            }
            Some(after) => self.resume_stack(id, after, max_path, &mut path, &mut enter),
        };
        let (mut used, mut steps) = (0, 0);
        while let Some(top) = stack.last_mut() {
            path.truncate(top.at);
            let Some((cookie, name, child)) = self.next_child(top.node, top.last) else {
                stack.pop();
                continue;
            };
            steps += 1;
            if steps > limits.steps {
                return Ok(Self::stopped(page, &stack, &path));
            }
            let len = top.at + name.len();
            let dir = self.is_dir(child) && self.child_count(child) > 0;
            // A directory is entered only if its children's paths (at least
            // one byte longer, after the `/`) can be listed.
            let fits = if dir {
                len + 2 <= max_path
            } else {
                len <= max_path
            };
            if !fits {
                if used + head_max + TOO_LONG_EXTRA > bytes {
                    return Ok(Self::stopped(page, &stack, &path));
                }
                used += head_max + TOO_LONG_EXTRA;
                let mut head = path[..path.len().min(head_max)].to_vec();
                let room = head_max - head.len();
                head.extend_from_slice(&name[..name.len().min(room)]);
                page.too_long.push(TooLong { head, len, dir });
                top.last = Some((cookie, name));
                continue;
            }
            if dir {
                top.last = Some((cookie, name));
                if enter(child) {
                    path.extend_from_slice(name);
                    path.push(b'/');
                    stack.push(Frame {
                        node: child,
                        at: len + 1,
                        last: None,
                    });
                } else {
                    page.skipped += 1;
                }
                continue;
            }
            if used + len + 1 > bytes {
                return Ok(Self::stopped(page, &stack, &path));
            }
            top.last = Some((cookie, name));
            used += len + 1;
            let mut leaf = Vec::with_capacity(len);
            leaf.extend_from_slice(&path);
            leaf.extend_from_slice(name);
            page.paths.push(leaf);
        }
        page.done = true;
        Ok(page)
    }

    /// Ends a page that is not done: its cursor names the last child
    /// visited in the deepest directory, or that directory followed by `/`
    /// when none of its children has been visited yet.
    fn stopped(mut page: LeafPage, stack: &[Frame<'_>], path: &[u8]) -> LeafPage {
        if let Some(top) = stack.last() {
            page.cursor = path[..top.at].to_vec();
            match top.last {
                Some((_, name)) => page.cursor.extend_from_slice(name),
                None => page.cursor.push(b'/'),
            }
        }
        page
    }

    /// The frames that continue a listing at the cursor `after`, with
    /// `path` set to the deepest frame's path. Components that no longer
    /// exist still position the listing, by their cookie and name. The
    /// cursor comes from the caller, so every directory on it is put to
    /// `enter` again, and descending stops at `max_path` bytes: a made-up
    /// cursor can neither resume inside a directory the caller may not
    /// list nor make the daemon walk deeper than a listing would.
    fn resume_stack<'a>(
        &'a self,
        id: NodeId,
        after: &'a [u8],
        max_path: usize,
        path: &mut Vec<u8>,
        enter: &mut impl FnMut(NodeId) -> bool,
    ) -> Vec<Frame<'a>> {
        let mut stack = Vec::new();
        let mut node = Some(id).filter(|&n| enter(n));
        let mut comps = after.split(|&b| b == b'/').filter(|c| !c.is_empty());
        let mut next = comps.next();
        while let Some(comp) = next {
            let Some(n) = node else {
                return stack;
            };
            stack.push(Frame {
                node: n,
                at: path.len(),
                last: Some((self.cookie(comp), comp)),
            });
            next = comps.next();
            if next.is_none() && !after.ends_with(b"/") {
                return stack;
            }
            if path.len() + comp.len() + 2 > max_path {
                return stack;
            }
            node = self
                .child(n, std::ffi::OsStr::from_bytes(comp))
                .filter(|&c| self.is_dir(c) && enter(c));
            if node.is_some() {
                path.extend_from_slice(comp);
                path.push(b'/');
            }
        }
        // The cursor ends with `/`: resume inside the last directory, at
        // its first child.
        if let Some(n) = node {
            stack.push(Frame {
                node: n,
                at: path.len(),
                last: None,
            });
        }
        stack
    }

    /// The child of `dir` that follows `last` in listing order.
    fn next_child<'a>(
        &'a self,
        dir: NodeId,
        last: Option<(u64, &[u8])>,
    ) -> Option<(u64, &'a [u8], NodeId)> {
        let mut best: Option<(u64, &'a [u8], NodeId)> = None;
        for (k, name, n) in self.raw_entries_from(dir, last.map_or(0, |l| l.0)) {
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
