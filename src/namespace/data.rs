//! File contents stored as a sparse map of page-sized chunks.
//!
//! Only pages that were written (or explicitly allocated) exist; everything
//! else reads as zeros. Writing 4 bytes at offset 1 GiB stores one page.
//!
//! A *listed* file (`--paths-files`: an inventory entry) has a size and no
//! pages, yet reports blocks as if all its data were stored, so that `du`
//! sums an inventory; the first change of its contents makes it an
//! ordinary sparse file.
//!
//! Pages are shared, copy-on-write: a checkpoint or a `copy_file_range`
//! takes another reference to a page instead of copying it, and the first
//! write to a shared page copies it. Every count of pages this module
//! returns (added, freed, needed) counts *page buffers*: a page another
//! file or checkpoint still holds is not freed by dropping it here, and a
//! write to it adds one. All references to a page live under the
//! namespace's lock, so the reference counts read here are stable.

use std::collections::BTreeMap;

use super::page::{EXTENT_MIN_PAGES, batch, contiguous};
pub use super::page::{PAGE, Page};

const PAGE64: u64 = PAGE as u64;

/// The contents of one regular file.
#[derive(Default, Debug, Clone)]
pub struct FileData {
    size: u64,
    pages: BTreeMap<u64, Page>,
    /// Loaded from a listing and unchanged since: [`FileData::blocks`]
    /// reports `size` as stored. Any write, truncate or `fallocate` clears
    /// it; it holds no memory, so nothing else consults it.
    listed: bool,
}

impl Drop for FileData {
    fn drop(&mut self) {
        // A file's pages die together: their memory goes back a run at a
        // time.
        if !self.pages.is_empty() {
            let pages = std::mem::take(&mut self.pages);
            batch(|| drop(pages));
        }
    }
}

/// Drops a reference to a page; 1 if that freed its buffer. Exact even
/// when one file holds the page at two offsets (a `copy_file_range` within
/// the file): the second drop is the last.
fn drop_page(p: Page) -> u64 {
    u64::from(p.is_unique())
}

/// The page, writable: copied first when someone else holds it too.
/// Counts a copy in `added`.
fn writable<'a>(p: &'a mut Page, added: &mut u64) -> &'a mut [u8; PAGE] {
    if !p.is_unique() {
        *added += 1;
    }
    p.make_mut()
}

impl FileData {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Size and listed state of a file that stores no pages, which is all
    /// there is to it: an inode sharing its attributes keeps just that
    /// ([`FileData::pageless`] builds it back).
    pub fn shareable(&self) -> Option<(u64, bool)> {
        self.pages.is_empty().then_some((self.size, self.listed))
    }

    /// A file of `size` bytes without pages, listed or not.
    pub fn pageless(size: u64, listed: bool) -> Self {
        FileData {
            size,
            pages: BTreeMap::new(),
            listed,
        }
    }

    /// Logical size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of pages actually stored.
    pub fn pages(&self) -> u64 {
        self.pages.len() as u64
    }

    /// A listed file of `size` bytes: no pages, reads as zeros, and
    /// reports the blocks a fully written file of that size would hold.
    pub fn listed(size: u64) -> Self {
        FileData {
            size,
            pages: BTreeMap::new(),
            listed: true,
        }
    }

    /// Whether this is a listed file not changed since it was listed.
    pub fn is_listed(&self) -> bool {
        self.listed
    }

    /// Makes this file a listed file of `size` bytes, if it stores no
    /// pages (a listed file never does); returns whether it did.
    pub fn relist(&mut self, size: u64) -> bool {
        if !self.pages.is_empty() {
            return false;
        }
        self.size = size;
        self.listed = true;
        true
    }

    /// Bytes in 512-byte units, for `st_blocks`: the stored pages, or for a
    /// listed file the pages its size would take (as tmpfs reports a fully
    /// written file), so that `du` shows the listing's sizes.
    pub fn blocks(&self) -> u64 {
        let pages = if self.listed {
            self.size.div_ceil(PAGE64)
        } else {
            self.pages()
        };
        pages * (PAGE64 / 512)
    }

    /// Reads up to `len` bytes at `offset`, clamped to the file size.
    pub fn read(&self, offset: u64, len: u32) -> Vec<u8> {
        if len == 0 || offset >= self.size {
            return Vec::new();
        }
        let end = self.size.min(offset.saturating_add(u64::from(len)));
        // Filled in order, zeros only for holes: zeroing the whole buffer
        // first cost a fifth of the daemon's time in a cold sequential read.
        let mut out = Vec::with_capacity((end - offset) as usize);
        let first = offset / PAGE64;
        let last = (end - 1) / PAGE64;
        for (&idx, page) in self.pages.range(first..=last) {
            let pstart = idx * PAGE64;
            let from = offset.max(pstart);
            let to = end.min(pstart + PAGE64);
            out.resize((from - offset) as usize, 0);
            out.extend_from_slice(&page[(from - pstart) as usize..(to - pstart) as usize]);
        }
        out.resize((end - offset) as usize, 0);
        out
    }

    /// The bytes [`FileData::read`] returns, as a slice of the pages that
    /// hold them, when they are consecutive slots of one block (a file
    /// that grew in order, see [`super::page`]); `None` otherwise (holes
    /// and pages copied out of their block included).
    pub fn read_in_place(&self, offset: u64, len: u32) -> Option<&[u8]> {
        if len == 0 || offset >= self.size {
            return None;
        }
        let end = self.size.min(offset.saturating_add(u64::from(len)));
        let first = offset / PAGE64;
        let last = (end - 1) / PAGE64;
        let mut next = first;
        let mut gapless = true;
        let pages = self.pages.range(first..=last).map(|(&i, p)| {
            gapless &= i == next;
            next += 1;
            p
        });
        let run = contiguous(pages)?;
        if !gapless || next != last + 1 {
            return None;
        }
        let from = (offset - first * PAGE64) as usize;
        Some(&run[from..from + (end - offset) as usize])
    }

    /// Number of page buffers a write of `len` bytes at `offset` would
    /// add. `map_shared`: a checkpoint shares this whole page map, so every
    /// stored page would be copied on write.
    pub fn pages_needed(&self, offset: u64, len: u64, map_shared: bool) -> u64 {
        if len == 0 {
            return 0;
        }
        let first = offset / PAGE64;
        let last = (offset + len - 1) / PAGE64;
        // A shared page is copied on write: it needs a new buffer too.
        let owned = self
            .pages
            .range(first..=last)
            .filter(|(_, p)| !map_shared && p.is_unique())
            .count() as u64;
        (last - first + 1) - owned
    }

    /// Number of pages `[offset, offset+len)` lacks (what allocating it
    /// adds: stored pages, shared or not, stay as they are).
    pub fn pages_missing(&self, offset: u64, len: u64) -> u64 {
        if len == 0 {
            return 0;
        }
        let first = offset / PAGE64;
        let last = (offset + len - 1) / PAGE64;
        (last - first + 1) - self.pages.range(first..=last).count() as u64
    }

    /// How many bytes of a `len`-byte write at `offset` fit when at most
    /// `free` new pages may be stored (a short write, as tmpfs does when
    /// it runs full).
    pub fn fitting_len(&self, offset: u64, len: u64, free: u64, map_shared: bool) -> u64 {
        if len == 0 {
            return 0;
        }
        let first = offset / PAGE64;
        let last = (offset + len - 1) / PAGE64;
        let mut missing = 0;
        for idx in first..=last {
            if map_shared || !self.pages.get(&idx).is_some_and(Page::is_unique) {
                missing += 1;
                if missing > free {
                    return (idx * PAGE64).saturating_sub(offset).min(len);
                }
            }
        }
        len
    }

    /// Writes `data` at `offset`, growing the file if needed. Returns the
    /// number of pages newly stored.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> u64 {
        if data.is_empty() {
            // Writing nothing changes nothing, even past the end.
            return 0;
        }
        self.listed = false;
        let first = offset / PAGE64;
        if self.pages.range(first..).next().is_none()
            && let Some(prev) = first.checked_sub(1).and_then(|i| self.pages.get(&i))
        {
            // Growing at the end: the pages it takes from a block, mapped
            // in one call.
            prev.prefault_next((offset + data.len() as u64 - 1) / PAGE64 - first + 1);
        }
        let mut added = 0;
        let mut pos = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let idx = pos / PAGE64;
            let within = (pos % PAGE64) as usize;
            let n = rest.len().min(PAGE - within);
            match self.pages.get_mut(&idx) {
                Some(p) => writable(p, &mut added)[within..within + n].copy_from_slice(&rest[..n]),
                None => {
                    added += 1;
                    let page = self.new_page(idx, within, &rest[..n]);
                    self.pages.insert(idx, page);
                }
            }
            pos += n as u64;
            rest = &rest[n..];
        }
        self.size = self.size.max(offset + data.len() as u64);
        added
    }

    /// A new page `idx` holding `data` at `within`. A file that grows
    /// densely at its end takes it from a block (see [`super::page`]): the
    /// next slot of the previous page's block, or, when all of the
    /// [`EXTENT_MIN_PAGES`] pages before `idx` are stored and none after
    /// it, the first slot of a new block of as many pages as the file
    /// stores (the block clamps that). Other pages, and any page when no
    /// block can be mapped, live on the heap.
    fn new_page(&self, idx: u64, within: usize, data: &[u8]) -> Page {
        let Some(prev) = idx.checked_sub(1).and_then(|i| self.pages.get(&i)) else {
            return Page::filled(within, data);
        };
        if let Some(p) = prev.next_in_block(within, data) {
            return p;
        }
        // At the end of the data, after a dense last MiB: a growing file,
        // not sparse writes (which would each map a block for a page or
        // two). The count (at most 256 steps) comes last, so that a file
        // on the heap because no block may be mapped does not pay it for
        // every page.
        if idx >= EXTENT_MIN_PAGES
            && self.pages.range(idx..).next().is_none()
            && Page::block_possible()
            && self.pages.range(idx - EXTENT_MIN_PAGES..idx).count() as u64 == EXTENT_MIN_PAGES
            && let Some(p) = Page::first_of_block(self.pages.len() as u64, within, data)
        {
            return p;
        }
        Page::filled(within, data)
    }

    /// Sets the size. Shrinking drops whole pages past the end and zeroes the
    /// tail of the last partial page, so a later grow reads zeros. Returns
    /// the number of page buffers freed minus those added (zeroing the
    /// tail of a shared page copies it).
    pub fn truncate(&mut self, size: u64) -> i64 {
        batch(|| self.truncate_pages(size))
    }

    fn truncate_pages(&mut self, size: u64) -> i64 {
        // Like tmpfs (since Linux 4.2), truncating to the current size or
        // less also frees pages preallocated past the end.
        self.listed = false;
        let mut freed = 0;
        let mut added = 0;
        if size <= self.size {
            let keep = size.div_ceil(PAGE64);
            let dropped = self.pages.split_off(&keep);
            freed = dropped.into_values().map(drop_page).sum();
            added = self.zero_range_in_page(size);
        }
        self.size = size;
        freed as i64 - added as i64
    }

    /// Zeroes from `pos` to the end of its page, if that page is stored;
    /// returns the pages added (1 if it was shared).
    fn zero_range_in_page(&mut self, pos: u64) -> u64 {
        let within = (pos % PAGE64) as usize;
        let mut added = 0;
        if within != 0
            && let Some(page) = self.pages.get_mut(&(pos / PAGE64))
            && page[within..].iter().any(|&b| b != 0)
        {
            writable(page, &mut added)[within..].fill(0);
        }
        added
    }

    /// Drops the file's data; returns the page buffers that freed (those
    /// no other file or checkpoint holds).
    pub fn release(mut self) -> u64 {
        let pages = std::mem::take(&mut self.pages);
        batch(|| pages.into_values().map(drop_page).sum())
    }

    /// The stored pages themselves, for counting distinct buffers.
    pub fn page_refs(&self) -> impl Iterator<Item = &Page> {
        self.pages.values()
    }

    /// Allocates zero pages for `[offset, offset+len)` (`fallocate` mode 0 or
    /// `FALLOC_FL_KEEP_SIZE`). Returns the number of pages newly stored.
    pub fn allocate(&mut self, offset: u64, len: u64, keep_size: bool) -> u64 {
        if len == 0 {
            return 0;
        }
        self.listed = false;
        let mut added = 0;
        for idx in offset / PAGE64..=(offset + len - 1) / PAGE64 {
            self.pages.entry(idx).or_insert_with(|| {
                added += 1;
                Page::zeroed()
            });
        }
        if !keep_size {
            self.size = self.size.max(offset + len);
        }
        added
    }

    /// Zeroes `[offset, offset+len)` and drops the pages it fully covers
    /// (`FALLOC_FL_PUNCH_HOLE`). Returns the number of page buffers freed
    /// minus those added (zeroing part of a shared page copies it).
    pub fn punch_hole(&mut self, offset: u64, len: u64) -> i64 {
        if len == 0 {
            return 0;
        }
        batch(|| self.punch_pages(offset, len))
    }

    fn punch_pages(&mut self, offset: u64, len: u64) -> i64 {
        self.listed = false;
        let end = offset.saturating_add(len);
        let (mut freed, mut added) = (0i64, 0u64);
        let first = offset / PAGE64;
        let last = (end - 1) / PAGE64;
        let idxs: Vec<u64> = self.pages.range(first..=last).map(|(&i, _)| i).collect();
        for idx in idxs {
            let pstart = idx * PAGE64;
            let from = offset.max(pstart);
            let to = end.min(pstart + PAGE64);
            if from == pstart && to == pstart + PAGE64 {
                freed += self.pages.remove(&idx).map_or(0, drop_page) as i64;
            } else if let Some(page) = self.pages.get_mut(&idx) {
                let range = (from - pstart) as usize..(to - pstart) as usize;
                if page[range.clone()].iter().any(|&b| b != 0) {
                    writable(page, &mut added)[range].fill(0);
                }
            }
        }
        freed - added as i64
    }

    /// References to pages `first..first + count` (`None` for holes), for
    /// sharing them with another file ([`FileData::put_pages`]).
    pub fn page_slice(&self, first: u64, count: u64) -> Vec<Option<Page>> {
        let mut out = vec![None; count as usize];
        for (&i, p) in self.pages.range(first..first.saturating_add(count)) {
            out[(i - first) as usize] = Some(p.clone());
        }
        out
    }

    /// Makes pages `first..` the given shared pages (holes drop what was
    /// there), growing the size to `end` if it is smaller: the page-aligned
    /// middle of a `copy_file_range`, which costs no new buffers. Returns
    /// the page buffers freed (replaced pages nobody else held).
    pub fn put_pages(&mut self, first: u64, pages: Vec<Option<Page>>, end: u64) -> u64 {
        batch(|| self.put_page_refs(first, pages, end))
    }

    fn put_page_refs(&mut self, first: u64, pages: Vec<Option<Page>>, end: u64) -> u64 {
        self.listed = false;
        let mut freed = 0;
        for (k, p) in pages.into_iter().enumerate() {
            let idx = first + k as u64;
            let old = match p {
                Some(p) => self.pages.insert(idx, p),
                None => self.pages.remove(&idx),
            };
            freed += old.map_or(0, drop_page);
        }
        self.size = self.size.max(end);
        freed
    }

    /// `SEEK_DATA`: the first offset at or after `offset` inside a stored
    /// page, or `None` (ENXIO) when there is none before the end of file.
    pub fn seek_data(&self, offset: u64) -> Option<u64> {
        if offset >= self.size {
            return None;
        }
        let (&idx, _) = self.pages.range(offset / PAGE64..).next()?;
        let pos = offset.max(idx * PAGE64);
        (pos < self.size).then_some(pos)
    }

    /// `SEEK_HOLE`: the first offset at or after `offset` that is not inside
    /// a stored page (the end of file counts as a hole), or `None` (ENXIO)
    /// when `offset` is at or past the end.
    pub fn seek_hole(&self, offset: u64) -> Option<u64> {
        if offset >= self.size {
            return None;
        }
        let mut idx = offset / PAGE64;
        for (&i, _) in self.pages.range(idx..) {
            if i != idx {
                break;
            }
            idx += 1;
        }
        Some(offset.max(idx * PAGE64).min(self.size))
    }

    /// Iterates over stored pages as `(offset, bytes)`, for tools that copy
    /// file contents while keeping holes.
    pub fn stored_pages(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.pages.iter().map(|(&i, p)| (i * PAGE64, &p[..]))
    }

    /// Iterates over stored pages as `(offset, page)`, the page itself, so
    /// that an image can write a page several files or checkpoints share
    /// once.
    pub fn stored_page_refs(&self) -> impl Iterator<Item = (u64, &Page)> {
        self.pages.iter().map(|(&i, p)| (i * PAGE64, p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_write_costs_one_page() {
        let mut f = FileData::new();
        assert_eq!(f.write(1 << 30, b"abcd"), 1);
        assert_eq!(f.size(), (1 << 30) + 4);
        assert_eq!(f.pages(), 1);
        assert_eq!(f.read((1 << 30) - 2, 10), b"\0\0abcd");
        assert_eq!(f.read(0, 8), vec![0; 8]);
    }

    #[test]
    fn write_across_pages_and_read_back() {
        let mut f = FileData::new();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        f.write(100, &data);
        assert_eq!(f.read(100, 10_000), data);
        assert_eq!(f.pages(), 3);
        assert_eq!(f.read(0, 100), vec![0; 100]);
    }

    #[test]
    fn truncate_shrink_then_grow_reads_zeros() {
        let mut f = FileData::new();
        f.write(0, &[7u8; 9000]);
        assert_eq!(f.truncate(5000), 1);
        assert_eq!(f.size(), 5000);
        f.truncate(9000);
        let r = f.read(0, 9000);
        assert!(r[..5000].iter().all(|&b| b == 7));
        assert!(r[5000..].iter().all(|&b| b == 0));
    }

    #[test]
    fn fitting_len_stops_at_the_first_page_that_does_not_fit() {
        let mut f = FileData::new();
        f.write(PAGE64, &[1]);
        // Pages 0 (missing), 1 (present), 2 and 3 (missing).
        assert_eq!(
            f.fitting_len(10, 4 * PAGE64 - 10, 3, false),
            4 * PAGE64 - 10
        );
        assert_eq!(
            f.fitting_len(10, 4 * PAGE64 - 10, 2, false),
            3 * PAGE64 - 10
        );
        assert_eq!(
            f.fitting_len(10, 4 * PAGE64 - 10, 1, false),
            2 * PAGE64 - 10
        );
        assert_eq!(f.fitting_len(10, 4 * PAGE64 - 10, 0, false), 0);
        assert_eq!(f.fitting_len(PAGE64, 100, 0, false), 100);
    }

    #[test]
    fn empty_read_is_empty() {
        let mut f = FileData::new();
        f.write(0, &[1u8; 9000]);
        assert!(f.read(0, 0).is_empty());
        assert!(f.read(PAGE64, 0).is_empty());
    }

    #[test]
    fn empty_write_does_not_extend() {
        let mut f = FileData::new();
        f.write(0, b"abc");
        assert_eq!(f.write(1 << 20, b""), 0);
        assert_eq!(f.size(), 3);
    }

    #[test]
    fn read_past_end_is_empty_and_clamped() {
        let mut f = FileData::new();
        f.write(0, b"hello");
        assert!(f.read(5, 10).is_empty());
        assert_eq!(f.read(3, 10), b"lo");
    }

    #[test]
    fn seek_data_and_hole() {
        let mut f = FileData::new();
        f.write(0, b"x");
        f.write(1 << 20, b"y");
        assert_eq!(f.seek_data(0), Some(0));
        assert_eq!(f.seek_hole(0), Some(PAGE64));
        assert_eq!(f.seek_data(10), Some(10));
        assert_eq!(f.seek_data(PAGE64), Some(1 << 20));
        assert_eq!(f.seek_hole(1 << 20), Some((1 << 20) + 1));
        assert_eq!(f.seek_data((1 << 20) + 1), None);
        assert_eq!(f.seek_hole((1 << 20) + 1), None);
    }

    #[test]
    fn listed_file_reports_full_blocks_until_changed() {
        let size = 5 * (1u64 << 30) + 1;
        let f = FileData::listed(size);
        assert_eq!((f.size(), f.pages()), (size, 0));
        assert_eq!(f.blocks(), size.div_ceil(PAGE64) * 8);
        assert_eq!(FileData::listed(0).blocks(), 0);
        assert_eq!(FileData::listed(1).blocks(), 8);
        assert_eq!(f.read(size - 3, 10), vec![0; 3]);
        assert_eq!(f.seek_data(0), None, "a listed file stores no data");
        // Each change makes it an ordinary sparse file of its size.
        type Change = fn(&mut FileData) -> i64;
        let changes: [(&str, Change); 6] = [
            ("write", |f| f.write(PAGE64, b"x") as i64),
            ("truncate down", |f| f.truncate(10)),
            ("truncate to its size", |f| f.truncate(f.size())),
            ("truncate up", |f| f.truncate(f.size() + 1)),
            ("allocate", |f| f.allocate(0, 1, true) as i64),
            ("punch", |f| f.punch_hole(0, 1)),
        ];
        for (what, change) in changes {
            let mut f = FileData::listed(size);
            change(&mut f);
            assert!(!f.is_listed(), "{what}");
            assert_eq!(f.blocks(), f.pages() * 8, "{what}");
        }
        // Writing nothing changes nothing.
        let mut f = FileData::listed(size);
        assert_eq!(f.write(0, b""), 0);
        assert!(f.is_listed());
        // Only a file without pages can be listed again.
        let mut g = FileData::new();
        assert!(g.relist(7));
        assert_eq!((g.size(), g.blocks()), (7, 8));
        g.write(0, b"a");
        assert!(!g.relist(7));
        assert!(!g.is_listed());
    }

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    /// Writes `data` from offset 0 in pieces of `chunk` bytes.
    fn written_in(chunk: usize, data: &[u8]) -> FileData {
        let mut f = FileData::new();
        for (k, c) in data.chunks(chunk).enumerate() {
            f.write((k * chunk) as u64, c);
        }
        f
    }

    #[test]
    fn a_growing_file_is_read_in_place_whatever_its_writes() {
        const MIB: usize = 1 << 20;
        let d = bytes(8 * MIB, 1);
        // dd's 1 MiB, cp's 128 KiB, tar's 10 KiB (pages split between
        // writes), and odd sizes.
        for chunk in [MIB, 128 << 10, 10240, 3 * PAGE + 1, 7] {
            let f = written_in(chunk, &d);
            assert_eq!(f.pages(), (d.len() / PAGE) as u64, "chunk {chunk}");
            assert_eq!(f.read(0, d.len() as u32), d, "chunk {chunk}");
            // The first MiB lives on the heap; then blocks of 1, 2 and 4
            // MiB: reads inside one are slices, at any offset.
            let page = |p: usize| (p * PAGE) as u64;
            for (off, len) in [
                (page(256), MIB),
                (page(300) + 5, 100_000),
                (page(512), 2 * MIB),
                (page(1024) + 777, MIB),
                (page(1500), 548 * PAGE),
            ] {
                let got = f.read_in_place(off, len as u32);
                let want = &d[off as usize..off as usize + len];
                assert_eq!(got, Some(want), "chunk {chunk}: {off}+{len}");
            }
            // Across the heap and a block, or two blocks: copied.
            for (off, len) in [(0, MIB), (page(255), 2 * PAGE), (page(511), 2 * PAGE)] {
                assert_eq!(
                    f.read_in_place(off, len as u32),
                    None,
                    "chunk {chunk}: {off}+{len}"
                );
                assert_eq!(
                    f.read(off, len as u32),
                    &d[off as usize..off as usize + len]
                );
            }
        }
    }

    #[test]
    fn reads_in_place_are_clamped_and_refuse_holes() {
        let mib = 1 << 20;
        let d = bytes(2 * mib, 2);
        let mut f = written_in(mib, &d);
        let end = d.len() as u64;
        assert_eq!(f.read_in_place(end - 10, 100), Some(&d[d.len() - 10..]));
        assert_eq!(f.read_in_place(end, 10), None);
        assert_eq!(f.read_in_place(end - 10, 0), None);
        // A hole inside a block's range: copied (zeros), the rest in place.
        let hole = end - 8 * PAGE64;
        assert_eq!(f.punch_hole(hole, PAGE64), 1);
        assert_eq!(f.read_in_place(hole - PAGE64, 3 * PAGE as u32), None);
        let mut want = d[(hole - PAGE64) as usize..(hole + 2 * PAGE64) as usize].to_vec();
        want[PAGE..2 * PAGE].fill(0);
        assert_eq!(f.read(hole - PAGE64, 3 * PAGE as u32), want);
        let after = hole + PAGE64;
        assert_eq!(
            f.read_in_place(after, PAGE as u32),
            Some(&d[after as usize..][..PAGE])
        );
        // The punched slot is not handed out again: writing it back makes
        // a page of its own, and the rest of the block stays in place.
        f.write(hole, &[7u8; PAGE]);
        assert_eq!(f.read_in_place(hole - PAGE64, 3 * PAGE as u32), None);
        assert_eq!(f.read(hole, PAGE as u32), vec![7u8; PAGE]);
    }

    #[test]
    fn sparse_and_small_files_stay_on_the_heap() {
        // Small: never a block.
        let f = written_in(4096, &bytes(255 * PAGE, 3));
        assert_eq!(f.read_in_place(PAGE64, PAGE as u32), None);
        // Pairs of pages far apart, past 1 MiB stored in all: each pair
        // would otherwise map a block for its second page.
        let mut g = FileData::new();
        for k in 0..300u64 {
            g.write(k * 1000 * PAGE64, &[1u8; 2 * PAGE]);
        }
        assert_eq!(g.pages(), 600);
        for k in [200u64, 299] {
            let second = (k * 1000 + 1) * PAGE64;
            g.write(second + PAGE64, &[2u8; PAGE]);
            assert_eq!(g.read_in_place(second, 2 * PAGE as u32), None, "pair {k}");
        }
        // Growing densely after a hole, but not at the end of the data:
        // no block either, even with more than 1 MiB stored before it.
        let mut h = written_in(1 << 20, &bytes(2 << 20, 4));
        h.write(2000 * PAGE64, &[1u8; PAGE]);
        h.write(1000 * PAGE64, &bytes(300 * PAGE, 5));
        assert_eq!(h.read_in_place(1260 * PAGE64, 2 * PAGE as u32), None);
        // The same dense run at the end takes a block from its 257th page.
        let mut e = written_in(1 << 20, &bytes(2 << 20, 4));
        e.write(1000 * PAGE64, &bytes(300 * PAGE, 5));
        assert!(e.read_in_place(1260 * PAGE64, 2 * PAGE as u32).is_some());
    }

    #[test]
    fn a_shared_block_is_copied_on_write_page_by_page() {
        let d = bytes(2 << 20, 5);
        let mut f = written_in(1 << 20, &d);
        // A checkpoint's copy of the page map shares every page.
        let saved = f.clone();
        let base = 256 * PAGE64;
        assert_eq!(f.pages_needed(base, 1, false), 1);
        let mut added = f.write(base + 3 * PAGE64 + 7, b"new");
        added += f.write(base + 4 * PAGE64, &[9u8; PAGE]);
        assert_eq!(added, 2, "one copy per written page");
        let whole = (256 * PAGE) as u32;
        assert_eq!(saved.read_in_place(base, whole), Some(&d[base as usize..]));
        assert_eq!(
            f.read_in_place(base, 3 * PAGE as u32),
            Some(&d[base as usize..][..3 * PAGE])
        );
        assert_eq!(f.read_in_place(base, 4 * PAGE as u32), None);
        let mut want = d.clone();
        let b = base as usize;
        want[b + 3 * PAGE + 7..b + 3 * PAGE + 10].copy_from_slice(b"new");
        want[b + 4 * PAGE..b + 5 * PAGE].fill(9);
        assert_eq!(f.read(0, d.len() as u32), want);
        // Appending after the checkpoint takes the block's next slot; the
        // checkpoint, restored and appended to, cannot take it again.
        f.write(d.len() as u64, &[3u8; PAGE]);
        let mut back = saved.clone();
        back.write(d.len() as u64, &[4u8; PAGE]);
        assert_eq!(f.read(d.len() as u64, 1), vec![3]);
        assert_eq!(back.read(d.len() as u64, 1), vec![4]);
        // Dropping the checkpoint (and its restored copy) frees the two
        // pages only it held.
        drop(back);
        assert_eq!(saved.release(), 2);
        assert_eq!(f.truncate(0), 513);
    }

    #[test]
    fn punch_hole_and_allocate() {
        let mut f = FileData::new();
        f.write(0, &[1u8; 3 * PAGE]);
        assert_eq!(f.punch_hole(100, 2 * PAGE as u64), 1);
        let r = f.read(0, 3 * PAGE as u32);
        assert!(r[..100].iter().all(|&b| b == 1));
        assert!(r[100..100 + 2 * PAGE].iter().all(|&b| b == 0));
        assert!(r[100 + 2 * PAGE..].iter().all(|&b| b == 1));
        assert_eq!(f.allocate(10 * PAGE64, 1, true), 1);
        assert_eq!(f.size(), 3 * PAGE64);
        assert_eq!(f.allocate(20 * PAGE64, 10, false), 1);
        assert_eq!(f.size(), 20 * PAGE64 + 10);
    }
}
