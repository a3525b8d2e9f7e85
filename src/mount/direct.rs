//! Mounting as root with mount(2) directly, so that the filesystem type is
//! `fuse.SUBTYPE` (`fuse.triefs` by default) as `mount -t`, `df -T` and
//! fstab expect. fuser's own mount code always uses the plain type `fuse`
//! when it calls mount(2), and is used for unprivileged mounts (through
//! `fusermount3`, which does pass the subtype).

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use fuser::{MountOption, SessionACL};

/// Mounts a FUSE filesystem on `mountpoint` with mount(2) and returns the
/// open `/dev/fuse` descriptor to serve it. `kernel_flags` are flag
/// options by name (see [`super::flags`]), applied after `options`.
/// Linux only; requires `CAP_SYS_ADMIN`.
#[cfg(target_os = "linux")]
pub fn mount_fuse(
    mountpoint: &Path,
    options: &[MountOption],
    kernel_flags: &[&str],
    acl: SessionACL,
    root_mode: u32,
) -> io::Result<OwnedFd> {
    let dev = CString::new("/dev/fuse").map_err(io::Error::other)?;
    // SAFETY: dev is a valid C string.
    let raw = unsafe { libc::open(dev.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw was just opened and is owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };

    let mut source = "triefs".to_string();
    let mut fstype = "fuse.triefs".to_string();
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut data = format!(
        "fd={raw},rootmode={:o},user_id={uid},group_id={gid}",
        libc::S_IFDIR | (root_mode & 0o7777)
    );
    let mut flags: libc::c_ulong = 0;
    let (mut dev_ok, mut suid_ok) = (false, false);
    for o in options {
        match o {
            MountOption::FSName(n) => source = n.clone(),
            MountOption::Subtype(s) => fstype = format!("fuse.{s}"),
            MountOption::DefaultPermissions => data.push_str(",default_permissions"),
            MountOption::CUSTOM(c) => {
                data.push(',');
                data.push_str(c);
            }
            MountOption::AutoUnmount => {}
            MountOption::Dev => dev_ok = true,
            MountOption::NoDev => dev_ok = false,
            MountOption::Suid => suid_ok = true,
            MountOption::NoSuid => suid_ok = false,
            MountOption::RO => flags |= libc::MS_RDONLY,
            MountOption::RW => flags &= !libc::MS_RDONLY,
            MountOption::Exec => flags &= !libc::MS_NOEXEC,
            MountOption::NoExec => flags |= libc::MS_NOEXEC,
            MountOption::Atime => flags &= !libc::MS_NOATIME,
            MountOption::NoAtime => flags |= libc::MS_NOATIME,
            MountOption::DirSync => flags |= libc::MS_DIRSYNC,
            MountOption::Sync => flags |= libc::MS_SYNCHRONOUS,
            MountOption::Async => flags &= !libc::MS_SYNCHRONOUS,
        }
    }
    let flags = super::flags::apply(flags, kernel_flags.iter().copied());
    // Like fuser and fusermount3: no devices or setuid unless asked for.
    let mut flags = flags;
    if !dev_ok {
        flags |= libc::MS_NODEV;
    }
    if !suid_ok {
        flags |= libc::MS_NOSUID;
    }
    if acl != SessionACL::Owner {
        data.push_str(",allow_other");
    }
    let c = |s: &[u8]| CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL));
    let target = c(mountpoint.as_os_str().as_bytes())?;
    let (source, fstype, data) = (
        c(source.as_bytes())?,
        c(fstype.as_bytes())?,
        c(data.as_bytes())?,
    );
    // SAFETY: all pointers are valid NUL-terminated strings for the call.
    let r = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Remounts the mount at `mountpoint` with mount(2) `MS_REMOUNT` and the
/// generic `flags` (`MS_RDONLY`, `MS_NOSUID`, the atime flags, ...), as
/// mount(8) does for a kernel filesystem: flags not given are cleared,
/// except the atime ones, which the kernel keeps unless one is given.
/// FUSE ignores a remount's option string, so none is passed.
pub fn remount(mountpoint: &Path, flags: libc::c_ulong) -> io::Result<()> {
    let target = CString::new(mountpoint.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: target is a valid C string; source, type and data may be
    // NULL for a remount.
    let r = unsafe {
        libc::mount(
            std::ptr::null(),
            target.as_ptr(),
            std::ptr::null(),
            flags | libc::MS_REMOUNT,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
