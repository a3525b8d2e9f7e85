//! Shared harness of the integration tests (every `tests/*.rs` file).
//!
//! - [`mounts`]: the triefs mount ([`TriefsMount`]) and the tmpfs oracle
//!   ([`Tmpfs`]), both torn down on drop (also when the test panics).
//! - [`users`]: acting as another user ([`run_as`], [`as_nobody`]) and the
//!   copy of the binary they can run ([`shared_binary`]).
//! - [`procs`]: running commands with a timeout ([`run_timed`]), shell
//!   scripts, other processes' memory.
//! - [`sys`]: small system-call helpers (paths as C strings, errnos,
//!   chmod, temp dirs).
#![allow(dead_code, unused_imports)]

pub mod mounts;
pub mod procs;
pub mod sys;
pub mod users;

pub use mounts::*;
pub use procs::*;
pub use sys::*;
pub use users::*;
