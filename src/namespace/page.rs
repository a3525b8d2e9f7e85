//! Page buffers: 4 KiB of file data, alone on the heap or a slot of a
//! block (an extent) that a growing file fills in order.
//!
//! A [`Page`] is a counted handle, shared copy-on-write by files,
//! checkpoints and crash records exactly as an `Arc` would be. What blocks
//! add is contiguity: a file that grows densely at its end, its last
//! [`EXTENT_MIN_PAGES`] pages all stored, takes its next pages from a block, a mapping reserved for many pages
//! (as much again as the file holds, up to [`BLOCK_MAX_PAGES`]), slot
//! after slot, whatever the size of the writes that fill it (`cp` writes
//! 128 KiB at a time, `dd` 1 MiB, `tar` 10 KiB). A READ of pages that are
//! consecutive slots of one block is then answered from one slice of it
//! ([`contiguous`]) instead of being copied page by page into a reply
//! buffer first: one copy fewer per byte of a cold read, whatever READ
//! sizes and offsets the kernel's readahead chooses (docs/performance.md).
//!
//! A block's memory is a private anonymous mapping: slots never used hold
//! no memory (they read as zeros), so the reservation costs address space
//! only. Each slot keeps its own count of handles, so sharing,
//! copy-on-write and freeing stay per page; a slot nobody holds any more
//! gives its memory back at once (`madvise`) and is never used again.
//! Freeing many pages at a time goes through [`batch`], which gives back a
//! run of dead slots per call, and nothing for a block that dies whole.
//! Small files (most of a tree) never get a block: their pages stay on
//! the heap, as compact as before.

use std::cell::RefCell;
use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

/// Size of one page, in bytes.
pub const PAGE: usize = 4096;

/// A file takes new pages from blocks once this many pages before them
/// (1 MiB) are all stored: smaller and sparse files stay on the heap,
/// where a page costs no address space beyond it.
pub const EXTENT_MIN_PAGES: u64 = 256;

/// The largest block, in pages (64 MiB of address space).
pub const BLOCK_MAX_PAGES: u64 = 16384;

/// At most this many blocks exist at a time, so that their mappings leave
/// most of the kernel's limit on mappings (`vm.max_map_count`, 65,530 by
/// default) to everything else; past it files fall back to heap pages.
const MAX_BLOCKS: usize = 16384;

/// Blocks now mapped.
static BLOCKS: AtomicUsize = AtomicUsize::new(0);

/// One page of file data, shared copy-on-write (see the module docs).
pub struct Page(Repr);

enum Repr {
    /// A page allocated on its own.
    Alone(Arc<[u8; PAGE]>),
    /// Slot `.1` of a block.
    InBlock(Arc<Block>, u32),
}

/// Pages reserved together: a mapping of `slots` pages at `ptr`, handed
/// out in order, followed by each slot's count of handles (a `u32` per
/// slot; like the slots, the counts take memory only once touched, so a
/// block costs memory for the slots it handed out, not for its size).
struct Block {
    ptr: NonNull<u8>,
    slots: u32,
    /// Slots below this were handed out (and may be dead since); slots
    /// from here on were never touched and read as zeros.
    used: AtomicU32,
}

// SAFETY: the block's bytes are reached only through `Page` handles: a
// slot is written through `&mut Page` only while its count is 1 (no other
// handle, so no other reader), or when it is handed out (no handle yet,
// and each slot is handed out once: `used` moves past it atomically);
// otherwise it is only read. The counts are atomic. So sharing a block
// between threads is as sound as sharing an `Arc<[u8; PAGE]>`.
unsafe impl Send for Block {}
// SAFETY: as for `Send` above.
unsafe impl Sync for Block {}

impl Block {
    /// A block of `slots` pages, or `None` when the mapping fails or too
    /// many blocks exist.
    fn map(slots: u64) -> Option<Arc<Block>> {
        let slots = slots.clamp(1, BLOCK_MAX_PAGES) as usize;
        let len = Self::len(slots);
        if BLOCKS.fetch_add(1, Ordering::AcqRel) >= MAX_BLOCKS {
            BLOCKS.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        // Address space only: no memory until a slot is written.
        #[cfg(target_os = "linux")]
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        #[cfg(not(target_os = "linux"))]
        let flags = libc::MAP_PRIVATE | libc::MAP_ANON;
        // SAFETY: a new anonymous mapping at an address of the kernel's
        // choice; nothing else is affected.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        let ptr = (raw != libc::MAP_FAILED).then_some(raw.cast::<u8>());
        let Some(ptr) = ptr.and_then(NonNull::new) else {
            BLOCKS.fetch_sub(1, Ordering::AcqRel);
            return None;
        };
        Some(Arc::new(Block {
            ptr,
            slots: slots as u32,
            used: AtomicU32::new(0),
        }))
    }

    /// Bytes mapped for a block of `slots` pages: the pages, then their
    /// counts, rounded up to a page.
    fn len(slots: usize) -> usize {
        slots * PAGE + (slots * 4).next_multiple_of(PAGE)
    }

    /// The count of handles of slot `idx`.
    fn refs(&self, idx: u32) -> &AtomicU32 {
        assert!(idx < self.slots, "slot {idx} of {}", self.slots);
        // SAFETY: the counts follow the slots in the mapping, a `u32` each,
        // 4-byte aligned (the mapping is page-aligned) and in bounds for
        // `idx < slots`; they start as zeros (a valid `AtomicU32`) and are
        // only reached atomically, for as long as the block lives.
        unsafe {
            &*self
                .ptr
                .as_ptr()
                .add(self.slots as usize * PAGE)
                .cast::<AtomicU32>()
                .add(idx as usize)
        }
    }

    fn page_ptr(&self, idx: u32) -> *mut u8 {
        // SAFETY: `idx` is a slot of this block (every handle's index is,
        // and `claim` checks its own).
        unsafe { self.ptr.as_ptr().add(idx as usize * PAGE) }
    }

    /// Hands out slot `idx` holding `data` at `within` (zeros around it),
    /// if it is the next slot never used; `None` otherwise.
    fn claim(self: &Arc<Block>, idx: u32, within: usize, data: &[u8]) -> Option<Page> {
        assert!(within + data.len() <= PAGE, "a piece of one page");
        if idx >= self.slots
            || self
                .used
                .compare_exchange(idx, idx + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return None;
        }
        self.refs(idx).store(1, Ordering::Release);
        // SAFETY: the slot is in bounds, and this call alone moved `used`
        // past it, so it was never handed out: no handle or slice refers
        // to it. The copy fits in the page (asserted above); never
        // touched, the slot reads as zeros around it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.page_ptr(idx).add(within),
                data.len(),
            );
        }
        Some(Page(Repr::InBlock(self.clone(), idx)))
    }

    /// Gives the memory of dead slots `first..first + n` back to the
    /// system. Their bytes are never read again: no handle holds them,
    /// and a slot is handed out only once.
    fn give_back(&self, first: u32, n: u32) {
        // SAFETY: the range is page-aligned and inside this mapping, and no
        // handle refers to it, so no reference into it exists; `madvise`
        // only drops its contents.
        unsafe {
            libc::madvise(self.page_ptr(first).cast(), n as usize * PAGE, GIVE_BACK);
        }
    }
}

/// Linux frees the pages at once; elsewhere the kernel takes them back
/// when it needs them.
#[cfg(target_os = "linux")]
const GIVE_BACK: libc::c_int = libc::MADV_DONTNEED;
#[cfg(not(target_os = "linux"))]
const GIVE_BACK: libc::c_int = libc::MADV_FREE;

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `Block::map`, of this length; no
        // handle into it is left.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), Self::len(self.slots as usize)) };
        BLOCKS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Dead slots of a block: the block (which may die before their memory is
/// given back), the first slot and how many follow it.
type DeadRun = (Weak<Block>, u32, u32);

thread_local! {
    /// Dead slots of live blocks, collected while a [`batch`] runs: a run
    /// per block and stretch of slots (pages die in order when a file is
    /// freed, so this stays about as long as the blocks involved, not the
    /// pages).
    static DEAD: RefCell<Option<Vec<DeadRun>>> = const { RefCell::new(None) };
}

/// Runs `f`, giving back the memory of the block slots it frees at the
/// end, a run of slots per call (and nothing for blocks that died whole).
/// Nested batches join the outermost.
pub fn batch<T>(f: impl FnOnce() -> T) -> T {
    struct Flush;
    impl Drop for Flush {
        fn drop(&mut self) {
            // Also on unwinding: dead slots would otherwise keep memory.
            let dead = DEAD.with(|d| d.borrow_mut().take()).unwrap_or_default();
            give_back_all(dead);
        }
    }
    if DEAD.with(|d| d.borrow().is_some()) {
        return f();
    }
    DEAD.with(|d| *d.borrow_mut() = Some(Vec::new()));
    let _flush = Flush;
    f()
}

fn give_back_all(mut dead: Vec<DeadRun>) {
    dead.sort_unstable_by_key(|(b, first, _)| (b.as_ptr() as usize, *first));
    let mut runs = dead.into_iter().peekable();
    while let Some((weak, first, mut n)) = runs.next() {
        // Runs that meet (pages freed out of order) make one call.
        while let Some((_, _, m)) =
            runs.next_if(|(w, next, _)| Weak::ptr_eq(w, &weak) && *next == first + n)
        {
            n += m;
        }
        // A block that died meanwhile took its memory with it.
        if let Some(block) = weak.upgrade() {
            block.give_back(first, n);
        }
    }
}

impl Page {
    /// A page of zeros.
    pub fn zeroed() -> Page {
        Page(Repr::Alone(Arc::new([0u8; PAGE])))
    }

    /// A page of its own holding `data` at `within`, zeros around it.
    pub fn filled(within: usize, data: &[u8]) -> Page {
        // A whole page: one allocation and one copy (`Arc::new` of an
        // array may build it on the stack first).
        if data.len() == PAGE
            && let Ok(p) = Arc::<[u8; PAGE]>::try_from(Arc::<[u8]>::from(data))
        {
            return Page(Repr::Alone(p));
        }
        let mut p = [0u8; PAGE];
        p[within..within + data.len()].copy_from_slice(data);
        Page(Repr::Alone(Arc::new(p)))
    }

    /// The page that follows this one in its block, holding `data` at
    /// `within`: when this page is a block's last slot handed out and a
    /// slot is left. `None` otherwise.
    pub fn next_in_block(&self, within: usize, data: &[u8]) -> Option<Page> {
        match &self.0 {
            Repr::InBlock(b, i) => b.claim(i + 1, within, data),
            Repr::Alone(_) => None,
        }
    }

    /// Has the kernel map the next `n` slots after this page at once, when
    /// this page is its block's last slot handed out (the pages a write
    /// at the end of a growing file is about to take): one call instead
    /// of a page fault per slot. The slots stay zero and unused until
    /// handed out.
    pub fn prefault_next(&self, n: u64) {
        #[cfg(target_os = "linux")]
        if let Repr::InBlock(b, i) = &self.0
            && b.used.load(Ordering::Acquire) == i + 1
        {
            let n = n.min(u64::from(b.slots - (i + 1)));
            if n > 0 {
                // SAFETY: slots `i + 1..i + 1 + n` are in bounds and were
                // never handed out: no reference into them exists, and
                // populating maps zero pages, which they read as already.
                unsafe {
                    libc::madvise(
                        b.page_ptr(i + 1).cast(),
                        n as usize * PAGE,
                        libc::MADV_POPULATE_WRITE,
                    );
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = n;
    }

    /// Whether a new block may be mapped now (fewer than the most blocks
    /// exist); the mapping itself may still fail.
    pub fn block_possible() -> bool {
        BLOCKS.load(Ordering::Acquire) < MAX_BLOCKS
    }

    /// The first page of a new block of `slots` pages, holding `data` at
    /// `within`; `None` when no block can be mapped now.
    pub fn first_of_block(slots: u64, within: usize, data: &[u8]) -> Option<Page> {
        Block::map(slots)?.claim(0, within, data)
    }

    /// Whether this is the only handle of the page (so dropping it frees
    /// the page, and writing to it needs no copy).
    pub fn is_unique(&self) -> bool {
        match &self.0 {
            Repr::Alone(a) => Arc::strong_count(a) == 1,
            Repr::InBlock(b, i) => b.refs(*i).load(Ordering::Acquire) == 1,
        }
    }

    /// The page, writable: copied first (into a page of its own) when
    /// another handle holds it too.
    pub fn make_mut(&mut self) -> &mut [u8; PAGE] {
        if !self.is_unique() {
            let copy = Page::filled(0, &self[..]);
            *self = copy;
        }
        match &mut self.0 {
            Repr::Alone(a) => Arc::make_mut(a),
            // SAFETY: this handle is the slot's only one, and `&mut self`
            // keeps every borrow of it (and of slices over it, which
            // borrow the file that holds it) away for as long as this
            // borrow lives; the slot is in bounds and page-aligned.
            Repr::InBlock(b, i) => unsafe { &mut *b.page_ptr(*i).cast::<[u8; PAGE]>() },
        }
    }
}

impl Deref for Page {
    type Target = [u8; PAGE];

    fn deref(&self) -> &[u8; PAGE] {
        match &self.0 {
            Repr::Alone(a) => a,
            // SAFETY: in bounds and aligned; written only through a
            // unique handle's `&mut` (see `make_mut`), which cannot
            // coexist with this shared borrow of a handle.
            Repr::InBlock(b, i) => unsafe { &*b.page_ptr(*i).cast::<[u8; PAGE]>() },
        }
    }
}

impl Clone for Page {
    fn clone(&self) -> Page {
        Page(match &self.0 {
            Repr::Alone(a) => Repr::Alone(a.clone()),
            Repr::InBlock(b, i) => {
                b.refs(*i).fetch_add(1, Ordering::AcqRel);
                Repr::InBlock(b.clone(), *i)
            }
        })
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        let Repr::InBlock(b, i) = &self.0 else {
            return;
        };
        if b.refs(*i).fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        // The slot is dead. Its memory goes with the block if this was
        // the block's last handle; else it is given back now, or at the
        // end of the batch.
        if Arc::strong_count(b) == 1 {
            return;
        }
        let deferred = DEAD.with(|d| match d.borrow_mut().as_mut() {
            Some(v) => {
                match v.last_mut() {
                    Some((w, first, n)) if w.as_ptr() == Arc::as_ptr(b) && *first + *n == *i => {
                        *n += 1
                    }
                    _ => v.push((Arc::downgrade(b), *i, 1)),
                }
                true
            }
            None => false,
        });
        if !deferred {
            b.give_back(*i, 1);
        }
    }
}

impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Alone(_) => write!(f, "Page({:p})", self.as_ptr()),
            Repr::InBlock(_, i) => write!(f, "Page({:p}, block page {i})", self.as_ptr()),
        }
    }
}

/// The bytes of `pages` (consecutive pages of a file, in order) as one
/// slice, when they are consecutive pages of one block; `None` otherwise.
pub fn contiguous<'a>(mut pages: impl Iterator<Item = &'a Page>) -> Option<&'a [u8]> {
    let Repr::InBlock(block, first) = &pages.next()?.0 else {
        return None;
    };
    let mut n = 1u32;
    for p in pages {
        match &p.0 {
            Repr::InBlock(b, i) if Arc::ptr_eq(b, block) && *i == first + n => n += 1,
            _ => return None,
        }
    }
    // SAFETY: pages `first..first + n` of the block are in bounds, and
    // each is held by a handle borrowed for 'a, which keeps them alive and
    // unwritten (writes need `&mut` of the handle) for that long.
    Some(unsafe { std::slice::from_raw_parts(block.page_ptr(*first), n as usize * PAGE) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    /// `n` whole pages of `data`, the first in a new block of `slots`.
    fn extent(slots: u64, data: &[u8]) -> Vec<Page> {
        let mut chunks = data.chunks(PAGE);
        let first = Page::first_of_block(slots, 0, chunks.next().unwrap()).unwrap();
        let mut pages = vec![first];
        for c in chunks {
            let next = pages.last().unwrap().next_in_block(0, c).unwrap();
            pages.push(next);
        }
        pages
    }

    #[test]
    fn a_block_is_filled_in_order_and_read_as_one_slice() {
        let data = bytes(4 * PAGE);
        let pages = extent(8, &data);
        for (k, p) in pages.iter().enumerate() {
            assert_eq!(&p[..], &data[k * PAGE..(k + 1) * PAGE]);
            assert!(p.is_unique());
        }
        assert_eq!(contiguous(pages.iter()), Some(&data[..]));
        assert_eq!(contiguous(pages[1..3].iter()), Some(&data[PAGE..3 * PAGE]));
        // Only the last slot handed out has a next one, once.
        assert!(pages[1].next_in_block(0, b"x").is_none());
        let tail = pages[3].next_in_block(100, b"tail").unwrap();
        assert_eq!(&tail[100..104], b"tail");
        assert!(tail[..100].iter().chain(&tail[104..]).all(|&b| b == 0));
        assert!(pages[3].next_in_block(0, b"again").is_none());
        // Out of order, or with a page of its own: not one slice.
        assert_eq!(contiguous([&pages[0], &pages[2]].into_iter()), None);
        let alone = Page::filled(0, &data[..PAGE]);
        assert_eq!(contiguous([&pages[3], &alone].into_iter()), None);
        assert_eq!(contiguous([&alone].into_iter()), None);
        assert_eq!(contiguous(std::iter::empty()), None);
        assert!(alone.next_in_block(0, b"x").is_none());
    }

    #[test]
    fn a_page_handle_is_two_words() {
        // What docs/design.md states as the cost of blocks per page.
        assert_eq!(std::mem::size_of::<Page>(), 16);
    }

    #[test]
    fn a_full_block_hands_out_nothing_more() {
        let data = bytes(2 * PAGE);
        let pages = extent(2, &data);
        assert!(pages[1].next_in_block(0, b"x").is_none());
    }

    #[test]
    fn block_pages_are_counted_and_copied_on_write_one_by_one() {
        let data = bytes(3 * PAGE);
        let mut pages = extent(3, &data);
        let shared = pages[1].clone();
        assert!(!pages[1].is_unique() && !shared.is_unique());
        assert!(pages[0].is_unique() && pages[2].is_unique());
        // Writing the shared page copies it; the other handle keeps the
        // old bytes, and the file's pages are no longer one slice.
        pages[1].make_mut()[0] = 0xee;
        assert!(pages[1].is_unique() && shared.is_unique());
        assert_eq!(shared[0], data[PAGE]);
        assert_eq!(pages[1][0], 0xee);
        assert_eq!(contiguous(pages.iter()), None);
        // A unique block page is written in place.
        pages[2].make_mut()[1] = 0xdd;
        assert_eq!(pages[2][1], 0xdd);
        let both = contiguous([&shared, &pages[2]].into_iter()).unwrap();
        assert_eq!((both[0], both[PAGE + 1]), (data[PAGE], 0xdd));
    }

    #[test]
    fn dead_slots_are_given_back_and_the_rest_stays() {
        let data = bytes(8 * PAGE);
        let mut pages = extent(8, &data);
        let keep = pages.split_off(6);
        // Dropped one by one, then in a batch; the kept pages stay intact.
        drop(pages.pop());
        batch(|| drop(pages));
        assert_eq!(&keep[0][..], &data[6 * PAGE..7 * PAGE]);
        assert_eq!(contiguous(keep.iter()), Some(&data[6 * PAGE..]));
        // A nested batch joins the outer one; the block dies whole.
        batch(|| batch(|| drop(keep)));
        assert!(DEAD.with(|d| d.borrow().is_none()));
        // Slots dying in order make one run; out of order, runs that meet
        // are joined when given back.
        let pages = extent(8, &data);
        let kept = pages[7].clone();
        let mut it = pages.into_iter();
        let (a, b) = (it.next().unwrap(), it.next().unwrap());
        batch(|| {
            drop(it);
            assert_eq!(DEAD.with(|d| d.borrow().as_ref().map(Vec::len)), Some(1));
            drop(b);
            drop(a);
            assert_eq!(DEAD.with(|d| d.borrow().as_ref().map(Vec::len)), Some(3));
        });
        assert_eq!(&kept[..], &data[7 * PAGE..]);
    }

    #[test]
    fn a_panicking_batch_still_ends() {
        let data = bytes(2 * PAGE);
        let mut pages = extent(2, &data);
        let first = pages.remove(0);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            batch(|| {
                drop(first);
                panic!("in a batch");
            })
        }));
        assert!(r.is_err());
        assert!(DEAD.with(|d| d.borrow().is_none()));
        assert_eq!(&pages[0][..], &data[PAGE..]);
    }
}
