//! Mounting: the `-o` options, the kernel's mount flags, the mount(8)
//! helper convention and its remounts, reading the mount table, mount(2)
//! as root, the mount's readahead, and the `auto_unmount` watcher.

#[cfg(target_os = "linux")]
mod direct;
#[cfg(target_os = "linux")]
pub mod flags;
pub mod helper;
pub mod mountinfo;
pub mod options;
#[cfg(target_os = "linux")]
pub mod readahead;
#[cfg(target_os = "linux")]
pub mod remount;
#[cfg(target_os = "linux")]
mod watch;

#[cfg(target_os = "linux")]
pub use direct::mount_fuse;
#[cfg(target_os = "linux")]
pub use watch::start_auto_unmount;
