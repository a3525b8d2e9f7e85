//! The subcommands that do not mount.

pub(crate) mod image;
pub(crate) mod ls_prefix;
