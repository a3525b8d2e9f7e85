//! Size and inode limits, as tmpfs's `size=` and `nr_inodes=`, and the
//! usage numbers `statfs` reports.

use crate::data::PAGE;
use crate::ops::Namespace;

/// `max_pages` of an unlimited mount (`size=0`).
pub const UNLIMITED_PAGES: u64 = u64::MAX / PAGE as u64;

/// Size and inode limits, as for tmpfs's `size=` and `nr_inodes=`.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Maximum number of stored data pages.
    pub max_pages: u64,
    /// Maximum number of inodes.
    pub max_inodes: u64,
}

impl Limits {
    /// Limits from tmpfs-style options: `size` in bytes and `nr_inodes`,
    /// where 0 means unlimited and `None` the tmpfs default.
    pub fn from_options(size: Option<u64>, nr_inodes: Option<u64>) -> Limits {
        let d = Limits::tmpfs_defaults();
        Limits {
            max_pages: match size {
                None => d.max_pages,
                Some(0) => UNLIMITED_PAGES,
                Some(b) => b.div_ceil(PAGE as u64),
            },
            max_inodes: match nr_inodes {
                None => d.max_inodes,
                Some(0) => u64::MAX,
                Some(n) => n,
            },
        }
    }

    /// tmpfs defaults: half of physical RAM for data, and as many inodes as
    /// that half has pages.
    pub fn tmpfs_defaults() -> Limits {
        // SAFETY: sysconf has no preconditions.
        let (pages, psize) = unsafe {
            (
                libc::sysconf(libc::_SC_PHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let ram = if pages > 0 && psize > 0 {
            pages as u64 * psize as u64
        } else {
            1 << 32
        };
        let half = ram / 2 / PAGE as u64;
        Limits {
            max_pages: half,
            max_inodes: half,
        }
    }
}

/// Filesystem usage for `statfs`.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// Total data pages.
    pub blocks: u64,
    /// Free data pages.
    pub bfree: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
}

impl Namespace {
    /// Usage numbers for `statfs`. An unlimited dimension (`size=0`,
    /// `nr_inodes=0`) reads as 0 total
    /// and 0 free, as tmpfs reports it (`df` then shows `-`).
    pub fn usage(&self) -> Usage {
        let (blocks, bfree) = if self.limits.max_pages >= UNLIMITED_PAGES {
            (0, 0)
        } else {
            let b = self.limits.max_pages;
            (b, b.saturating_sub(self.pages_used))
        };
        let (files, ffree) = if self.limits.max_inodes == u64::MAX {
            (0, 0)
        } else {
            let f = self.limits.max_inodes;
            (f, f.saturating_sub(self.inodes.live()))
        };
        Usage {
            blocks,
            bfree,
            files,
            ffree,
        }
    }
}
