//! triefs: an in-memory filesystem whose namespace is a trie of path
//! components, served to the kernel through FUSE.
//!
//! The [`trie`] module is a plain library type usable without FUSE; the
//! other modules build the mounted filesystem on top of it.
#![deny(missing_docs)]

mod boundary;
pub mod check;
pub mod data;
mod dirmap;
pub mod fileops;
pub mod fs;
pub mod helper;
pub mod image;
pub mod inode;
pub mod limits;
mod listing;
pub mod lsprefix;
#[cfg(target_os = "linux")]
pub mod mount;
pub mod mountinfo;
pub mod ops;
pub mod options;
pub mod save_status;
pub mod trie;
pub mod xattr;
