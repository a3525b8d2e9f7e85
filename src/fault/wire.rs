//! The `triefs fault` ioctl ([`IOC_FAULT`], format in [`crate::control`]):
//! add a rule (payload: the rule's line; out: `u32` id), list them from the
//! argument's index (out: `u32` index of the next page or 0, `u32` length,
//! the lines), clear one (argument: its id) or all
//! (argument 0; out: `u32` number cleared).
//!
//! Errors: `EINVAL` a malformed rule, `ENOSPC` too many rules, `ENOENT` no
//! such rule, `EPERM` neither the mount's owner nor root, `EOPNOTSUPP` a
//! mount not made for faults (without `-o faults`).

/// The ioctl number: `_IOWR(0xF7, 0x51, [u8; IOC_SIZE])`.
pub const IOC_FAULT: u32 = crate::control::ioc(0x51);

/// Add a rule.
pub const OP_ADD: u32 = 1;
/// List the rules.
pub const OP_LIST: u32 = 2;
/// Clear one rule or all.
pub const OP_CLEAR: u32 = 3;
