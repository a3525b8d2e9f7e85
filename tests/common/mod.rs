//! Shared harness of the integration tests (every `tests/*.rs` file).
//!
//! # A mount test that cannot mount fails
//!
//! Every test in `tests/*.rs` that mounts, or otherwise needs root and
//! `/dev/fuse`, fails when they are missing: none returns early for
//! libtest to report "ok". The harness constructors that mount
//! ([`TriefsMount`], [`Tmpfs`], and the few mounting helpers of single
//! test files) call [`require_mount`] first, and every test that needs root
//! without going through one calls it as its first line. It panics with
//! one line saying why. Without root or `/dev/fuse`, run only the unit
//! tests (`cargo test --lib`; they live in `src/`). `TRIEFS_REQUIRE_MOUNT`
//! is ignored: mounting is always required here.
//!
//! # Contents, by concern
//!
//! - [`mounts`]: [`require_mount`], the triefs mount ([`TriefsMount`]) and
//!   the tmpfs oracle ([`Tmpfs`]), both torn down on drop (also when the
//!   test panics).
//! - [`users`]: acting as another user ([`run_as`], [`as_nobody`]) and the
//!   copy of the binary they can run ([`shared_binary`]).
//! - [`procs`]: running commands with a timeout ([`run_timed`]), shell
//!   scripts, other processes' memory.
//! - [`sys`]: small system-call helpers (paths as C strings, errnos,
//!   chmod, temp dirs).
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
