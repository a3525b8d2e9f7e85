//! triefs: an in-memory filesystem whose namespace is a trie of path
//! components, served to the kernel through FUSE.
//!
//! # The data path
//!
//! A request travels down one way, and every module depends only on the
//! ones below it:
//!
//! ```text
//! bin/triefs   the command: CLI, daemon, signals, subcommands
//!    |
//! fuse         one thin callback per kernel request: arguments in, errno out;
//!    |         every request passes the gate (fault rules, trace readers)
//!    |         (lsprefix, reconfigure, checkpoint, fault, trace: the
//!    |         ioctls' wire formats, beside it)
//! namespace    every filesystem rule, with tmpfs semantics, no FUSE
//!    |
//! trie         names: one node per path component      namespace::inode,
//!                                                      namespace::data: inodes, file pages
//! ```
//!
//! `image` saves and loads a namespace, `tar` loads and writes tar archives,
//! `mount` gets it mounted; they are used by the command only.
//!
//! # Module map
//!
//! | module | concern |
//! |---|---|
//! | [`trie`] | the path trie (`mod.rs`): nodes of 12 bytes plus their value and a 2-byte cookie tag, every name once in one arena (`names.rs`), a directory's children as node ids ordered by name cookie (`dirmap.rs`), resumable bounded pages of leaf paths (`leaves.rs`) |
//! | [`namespace`] | [`namespace::Namespace`]: its state, attributes and inode lifetime (`mod.rs`), directories and names (`dirs.rs`), file contents (`files.rs`), extended attributes (`xattr.rs`), POSIX ACL rules (`acl.rs`), checkpoints: saving, restoring, what the kernel must forget (`checkpoint.rs`), durable state for `-o crash` and the simulated power cut (`durable.rs`, its unit tests in `durable/`), the `chattr` flags and what immutable and append-only forbid (`flags.rs`), the size and inode limits (`limits.rs`), where inodes are as paths, for fault rules and traces (`paths.rs`), the invariant checker (`check.rs`), building from an image (`load.rs`), the inode table (`inode.rs`), sparse file pages (`data.rs`), page buffers and the blocks a growing file fills in order, for reads without a copy (`page.rs`) |
//! | [`error`] | [`Errno`], the one error type of filesystem operations, and [`Result`] |
//! | [`sys`] | the operating system behind safe functions: every libc call but the watcher's after fork and mount(2) |
//! | [`fuse`] | the `fuser::Filesystem` adapter (`mod.rs`), errno and reply helpers (`reply.rs`), directory listings (`readdir.rs`), the gate every request passes: its path, its fault, its trace line (`gate.rs`) |
//! | [`request`] | the kernel's requests by name, as fault rules match them and traces print them |
//! | [`control`] | the request format of the fault and trace ioctls |
//! | [`fault`] | `triefs fault`: rules, their syntax and the decision for one request (`mod.rs`), the ioctl (`wire.rs`), the client (`client.rs`) |
//! | [`trace`] | `triefs trace`: trace lines and the readers' bounded buffers (`mod.rs`), the ioctl (`wire.rs`), the client (`client.rs`) |
//! | [`lsprefix`] | `triefs ls-prefix`: the ioctl's wire format and the daemon's side (`mod.rs`), the client (`client.rs`) |
//! | [`checkpoint`] | `triefs checkpoint` and `triefs crash`: the control ioctl's wire format (`mod.rs`) and the client (`client.rs`); the checkpoints themselves are [`namespace::checkpoint`], the crash [`namespace::durable`] |
//! | [`fixture`] | [`fixture::TempMount`]: a triefs mounted in-process in a temporary directory for Rust test suites, with checkpoints |
//! | [`reconfigure`] | the remount control ioctl: its wire format, the daemon's side and the client (a root-only request that changes `size=`/`nr_inodes=` of a live mount) |
//! | [`tar`] | tar archives: the format's shared conventions (`mod.rs`), loading one into a namespace for `--from-tar` (`import.rs`), writing a namespace as one in resumable pages for checkpoint exports (`export.rs`) |
//! | [`image`] | snapshot images: the format (`mod.rs`), writing (`write.rs`), strict reading (`read.rs`), atomic private saves and loading from a path (`file.rs`), the save status file (`status.rs`) |
//! | [`mount`] | mounting (`mod.rs`): `-o` options (`options.rs`), the kernel's mount flags by name (`flags.rs`), the mount(8) helper convention (`helper.rs`), `mount -o remount` through the helper (`remount.rs`), the mount table (`mountinfo.rs`), mount(2) as root (`direct.rs`), the readahead root gives a mount (`readahead.rs`), the `auto_unmount` watcher (`watch.rs`) |
//! | `src/bin/triefs/` | the command: dispatch (`main.rs`), the command line (`cli.rs`), exit codes (`exit.rs`), logging (`logging.rs`), checks before mounting (`preflight.rs`), `--paths`, `--paths-files` and `--from-tar` (`paths.rs`), the daemon (`daemon.rs`), image saves while serving (`saving.rs`), the subcommands (`commands/`: `checkpoint`, `fault`, `trace`, `image`, `ls-prefix`) |
//!
//! Each folder's `tests.rs`, where there is one, holds its unit tests;
//! `tests/docs.rs` checks that this map names every source file.
//!
//! # Example
//!
//! The namespace is a plain library type: what the FUSE adapter does for a
//! `mkdir` and a `write`, without mounting anything.
//!
//! ```
//! use std::ffi::OsStr;
//! use triefs::namespace::inode::{Kind, ROOT_INO};
//! use triefs::namespace::{Limits, Namespace, NewNode};
//!
//! let mut ns = Namespace::new(0, 0, 0o755, Limits::from_options(Some(1 << 20), Some(100)));
//! let dir = NewNode { kind: Kind::Directory, perm: 0o755, uid: 0, gid: 0, rdev: 0, target: None };
//! let d = ns.create_node(ROOT_INO, OsStr::new("docs"), dir.clone()).unwrap();
//! let file = NewNode { kind: Kind::RegularFile, perm: 0o644, ..dir.clone() };
//! let f = ns.create_node(d.attr.ino.0, OsStr::new("a.txt"), file).unwrap();
//! ns.write(f.attr.ino.0, 0, b"hello").unwrap();
//! assert_eq!(ns.read(f.attr.ino.0, 0, 100).unwrap(), b"hello");
//! // A name that exists is EEXIST, as on tmpfs.
//! let again = ns.create_node(ROOT_INO, OsStr::new("docs"), dir).unwrap_err();
//! assert_eq!(again.code(), libc::EEXIST);
//! ```
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod checkpoint;
pub mod control;
pub mod error;
pub mod fault;
pub mod fixture;
pub mod fuse;
pub mod image;
pub mod lsprefix;
pub mod mount;
pub mod namespace;
pub mod reconfigure;
pub mod request;
pub mod sys;
pub mod tar;
pub mod trace;
pub mod trie;

pub use error::{Errno, Result};
