//! Unit tests for namespace operations (no FUSE).
#[allow(unused_imports)]
use super::*;
