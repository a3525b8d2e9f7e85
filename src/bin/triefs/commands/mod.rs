//! The subcommands that do not mount.

pub(crate) mod checkpoint;
pub(crate) mod fault;
pub(crate) mod image;
pub(crate) mod ls_prefix;
pub(crate) mod trace;
