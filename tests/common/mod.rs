//! Shared harness of the integration tests (every `tests/*.rs` file).
//!
//! # A mount test that cannot mount fails
//!
//! Every test in `tests/*.rs` that mounts, or otherwise needs root and
//! `/dev/fuse`, fails when they are missing: none returns early for
//! libtest to report "ok". The harness constructors that mount
//! ([`TriefsMount`] and [`MountSpec`], [`Tmpfs`]) call [`require_mount`]
//! first, and every test that needs root without going through one calls
//! it as its first line. It panics with one line saying why: a mount test
//! never passes without running. Without root or `/dev/fuse`, run only the
//! unit tests (`cargo test --lib`; they live in `src/`).
//!
//! # Contents, by concern
//!
//! - [`mounts`]: [`require_mount`]; the triefs daemon ([`TriefsMount`],
//!   started with more control by [`MountSpec`]) and the tmpfs oracle
//!   ([`Tmpfs`]), both torn down on drop (also when the test panics);
//!   [`Unmounts`] for what a test mounts otherwise; [`mountinfo`].
//! - [`users`]: acting as another user ([`run_as`], [`as_nobody`], and
//!   [`forked`] for raw system calls in a child) and the copy of the binary
//!   they can run ([`shared_binary`]).
//! - [`procs`]: commands with a timeout ([`run_timed`]) and checks of how
//!   they ended ([`assert_one_line_exit`]), shell scripts, polling
//!   ([`wait_until`]), other processes' memory and arguments.
//! - [`sys`]: small system-call helpers (paths as C strings, errnos,
//!   statvfs, chmod, temp dirs, drop_caches).
//! - [`rng`]: the seeded random number generator ([`Rng`]) and the seeds
//!   of randomized tests ([`seed_from_env`]).
#![allow(dead_code, unused_imports)]

pub mod mounts;
pub mod procs;
pub mod rng;
pub mod sys;
pub mod users;

pub use mounts::*;
pub use procs::*;
pub use rng::*;
pub use sys::*;
pub use users::*;
