//! The `triefs trace` ioctl ([`IOC_TRACE`], format in [`crate::control`]):
//! start a reader (argument: [`FLAG_JSON`]; payload: the path prefix; out:
//! `u32` id), take its lines (argument: the id; out: `u64` lines dropped
//! since the last take, `u32` length, the lines), stop it (argument: the
//! id).
//!
//! Errors: `EPERM` neither the mount's owner nor root, `EBUSY` too many
//! readers, `ENOENT` a reader that is gone (stopped, or not polled for
//! [`super::ABANDONED`]), `EINVAL` a malformed request or prefix.

/// The ioctl number: `_IOWR(0xF7, 0x52, [u8; IOC_SIZE])`.
pub const IOC_TRACE: u32 = crate::control::ioc(0x52);

/// Start a reader.
pub const OP_START: u32 = 1;
/// Take a reader's lines.
pub const OP_TAKE: u32 = 2;
/// Stop a reader.
pub const OP_STOP: u32 = 3;

/// Start argument: JSON lines instead of text.
pub const FLAG_JSON: u64 = 1;

/// Bytes of lines per take, leaving room for the reply's header.
pub const TAKE_MAX: usize = crate::control::IOC_SIZE - 16;
