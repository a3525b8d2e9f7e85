//! The component names of all nodes of one trie, back to back in one
//! arena. A name costs its bytes plus one length byte, rounded up to 2
//! bytes; no per-name heap block, no per-directory arena. A slot is
//! addressed by a 32-bit index in 2-byte units (8 GiB of names).
//!
//! Freed slots wait in free lists by size and are reused by names of the
//! same size; when more than half of the arena is free, the trie rewrites
//! it ([`Names::compacted`]), so garbage stays bounded.

/// Slot granularity in bytes.
const UNIT: usize = 2;
/// Largest slot in units: a 255-byte name plus its length byte.
const MAX_UNITS: usize = (1 + 255usize).div_ceil(UNIT);
/// Arenas smaller than this are never compacted.
const COMPACT_MIN: usize = 1 << 16;

/// Where a name lives in [`Names`].
pub(crate) type Slot = u32;

/// The slot of the empty name (the root's), always at the start.
pub(crate) const EMPTY: Slot = 0;

/// The name arena. See the module docs.
#[derive(Clone)]
pub(crate) struct Names {
    bytes: Vec<u8>,
    /// Free slots by size in units (index 0 unused).
    free: Vec<Vec<Slot>>,
    /// Bytes in free slots.
    garbage: usize,
}

fn units(len: usize) -> usize {
    (1 + len).div_ceil(UNIT)
}

impl Names {
    /// An arena holding just the empty name at [`EMPTY`].
    pub(crate) fn new() -> Names {
        Names {
            bytes: vec![0; UNIT],
            free: vec![Vec::new(); MAX_UNITS + 1],
            garbage: 0,
        }
    }

    /// The name in `slot`.
    pub(crate) fn get(&self, slot: Slot) -> &[u8] {
        let at = slot as usize * UNIT;
        let len = usize::from(self.bytes[at]);
        &self.bytes[at + 1..at + 1 + len]
    }

    /// Stores `name` (at most 255 bytes, checked by the trie); `None` when
    /// the arena is full.
    pub(crate) fn add(&mut self, name: &[u8]) -> Option<Slot> {
        let len = u8::try_from(name.len()).ok()?;
        let u = units(name.len());
        if let Some(slot) = self.free[u].pop() {
            self.garbage -= u * UNIT;
            let at = slot as usize * UNIT;
            self.bytes[at] = len;
            self.bytes[at + 1..at + 1 + name.len()].copy_from_slice(name);
            return Some(slot);
        }
        let slot = Slot::try_from(self.bytes.len() / UNIT).ok()?;
        self.bytes.push(len);
        self.bytes.extend_from_slice(name);
        self.bytes
            .resize(self.bytes.len().next_multiple_of(UNIT), 0);
        Some(slot)
    }

    /// Frees `slot` (never [`EMPTY`]).
    pub(crate) fn remove(&mut self, slot: Slot) {
        if slot == EMPTY {
            return;
        }
        let u = units(self.get(slot).len());
        self.free[u].push(slot);
        self.garbage += u * UNIT;
    }

    /// Whether more than half of a large arena is free: time to rewrite it.
    pub(crate) fn wants_compaction(&self) -> bool {
        self.bytes.len() > COMPACT_MIN && self.garbage * 2 > self.bytes.len()
    }

    /// A fresh arena for `live` names moved out of this one, sized to fit.
    pub(crate) fn compacted(&self) -> Names {
        let mut n = Names::new();
        n.bytes.reserve_exact(self.bytes.len() - self.garbage);
        n
    }

    /// Bytes held: the arena (its capacity) and the free lists.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
            + self
                .free
                .iter()
                .map(|f| f.capacity() * size_of::<Slot>())
                .sum::<usize>()
    }

    /// Bytes of the arena in free slots.
    pub(crate) fn garbage(&self) -> usize {
        self.garbage
    }

    /// Releases spare capacity (after a bulk load).
    pub(crate) fn shrink(&mut self) {
        self.bytes.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stored_freed_and_reused_by_size() {
        let mut n = Names::new();
        assert_eq!(n.get(EMPTY), b"");
        let a = n.add(b"abc").unwrap();
        let b = n.add(&[b'x'; 255]).unwrap();
        let c = n.add(b"").unwrap();
        assert_eq!(n.get(a), b"abc");
        assert_eq!(n.get(b), &[b'x'; 255][..]);
        assert_eq!(n.get(c), b"");
        n.remove(a);
        assert_eq!(n.garbage(), 4);
        assert_eq!(n.add(b"x").unwrap(), c + 1, "2-byte slots");
        // Same size class: the slot comes back.
        assert_eq!(n.add(b"xy").unwrap(), a);
        assert_eq!(n.get(a), b"xy");
        assert_eq!(n.garbage(), 0);
        assert_eq!(n.get(b), &[b'x'; 255][..]);
        n.remove(b);
        // A different size does not take it.
        let d = n.add(b"12345678").unwrap();
        assert_ne!(d, b);
        assert_eq!(n.get(d), b"12345678");
        assert_eq!(n.add(&[1; 256]), None);
    }
}
