//! Size and inode limits, as tmpfs's `size=` and `nr_inodes=`, and the
//! usage numbers `statfs` reports.

use crate::error::{Result, err};
use crate::namespace::Namespace;
use crate::namespace::data::PAGE;

/// What one inode, or one extra name of a file, costs of the inode limit
/// (tmpfs's `BOGO_INODE_SIZE`). tmpfs turns `nr_inodes` into a space of
/// `nr_inodes` × 1 KiB shared by inodes, hard links and extended
/// attributes, so that none of them can grow without bound.
pub const INODE_SPACE: u64 = 1024;

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
        let ram = crate::sys::phys_ram();
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
        let (files, ffree) = match self.ispace_max() {
            None => (0, 0),
            Some(max) => (
                self.limits.max_inodes,
                max.saturating_sub(self.ispace_used()) / INODE_SPACE,
            ),
        };
        Usage {
            blocks,
            bfree,
            files,
            ffree,
        }
    }
}

impl Namespace {
    /// The inode space of the mount, `None` when unlimited (`nr_inodes=0`).
    pub(crate) fn ispace_max(&self) -> Option<u64> {
        (self.limits.max_inodes != u64::MAX)
            .then(|| self.limits.max_inodes.saturating_mul(INODE_SPACE))
    }

    /// Inode space in use: inodes, extra names of files, and extended
    /// attributes, as tmpfs counts them.
    pub(crate) fn ispace_used(&self) -> u64 {
        self.ispace_of(&self.inodes, self.extra_names)
            .saturating_add(self.checkpoints.ispace())
    }

    /// The inode space a table of inodes with `extra_names` more names
    /// takes (the live tree's, or a checkpoint's).
    pub(crate) fn ispace_of(
        &self,
        inodes: &crate::namespace::inode::InodeTable,
        extra_names: u64,
    ) -> u64 {
        (inodes.live() + extra_names)
            .saturating_mul(INODE_SPACE)
            .saturating_add(inodes.xattr_bytes())
    }

    /// `ENOSPC` unless `bytes` more of the inode space are free.
    pub(crate) fn reserve_ispace(&self, bytes: u64) -> Result<()> {
        match self.ispace_max() {
            Some(max) if self.ispace_used().saturating_add(bytes) > max => err(libc::ENOSPC),
            _ => Ok(()),
        }
    }
}

/// Why a remount's new limits were refused: tmpfs's reasons, in the order
/// `shmem_reconfigure` checks them (each is `EINVAL` there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A size limit on a mount that has none: its use was never counted
    /// against one (tmpfs: "Cannot retroactively limit size").
    RetroactiveSize,
    /// A size below the data already stored.
    SizeTooSmall,
    /// An inode limit on a mount that has none.
    RetroactiveInodes,
    /// An inode limit below the inode space already used.
    TooFewInodes,
}

impl Refusal {
    /// tmpfs's message for it.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::RetroactiveSize => "Cannot retroactively limit size",
            Refusal::SizeTooSmall => "Too small a size for current use",
            Refusal::RetroactiveInodes => "Cannot retroactively limit inodes",
            Refusal::TooFewInodes => "Too few inodes for current use",
        }
    }
}

impl Namespace {
    /// Changes the limits on a live mount as a tmpfs remount does
    /// (`shmem_reconfigure`): `size` in bytes and `nr_inodes`, `None`
    /// leaving one as it is and 0 lifting it. A mount without a limit
    /// cannot be given one, and a limit cannot go below what is in use.
    /// Everything is checked before anything changes: a refusal leaves
    /// both limits as they were. Returns the limits before the change.
    pub fn reconfigure(
        &mut self,
        size: Option<u64>,
        nr_inodes: Option<u64>,
    ) -> std::result::Result<Limits, Refusal> {
        let old = self.limits;
        if let Some(bytes) = size.filter(|&b| b != 0) {
            if old.max_pages >= UNLIMITED_PAGES {
                return Err(Refusal::RetroactiveSize);
            }
            if self.pages_used > bytes.div_ceil(PAGE as u64) {
                return Err(Refusal::SizeTooSmall);
            }
        }
        if let Some(n) = nr_inodes.filter(|&n| n != 0) {
            if self.ispace_max().is_none() {
                return Err(Refusal::RetroactiveInodes);
            }
            if n.saturating_mul(INODE_SPACE) < self.ispace_used() {
                return Err(Refusal::TooFewInodes);
            }
        }
        let new = Limits::from_options(size, nr_inodes);
        if size.is_some() {
            self.limits.max_pages = new.max_pages;
        }
        if nr_inodes.is_some() {
            self.limits.max_inodes = new.max_inodes;
        }
        Ok(old)
    }

    /// Puts limits back as they were, unchecked: undoes a
    /// [`Namespace::reconfigure`] whose remount failed afterwards.
    pub fn restore_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }
}
