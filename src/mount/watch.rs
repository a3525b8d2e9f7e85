//! The `auto_unmount` watcher: a small process that detaches the mount
//! when the daemon ends without unmounting it.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Starts a watcher process that unmounts `mountpoint` if this process
/// ends without unmounting it (killed, crashed): `-o auto_unmount`.
///
/// fusermount3 has the same feature, but fuser 0.18 refuses it unless the
/// mount admits other users (`allow_other`), and fusermount3 before 3.15
/// only unmounts such mounts: as setuid root it is refused by a mount that
/// admits only its owner, and takes that for "still alive". The watcher
/// runs with our credentials, so the mount's access rules do not matter.
///
/// fusermount3 also decides that the daemon is dead by opening the mount
/// point and getting `ENOTCONN`, which triefs's caching defeats once the
/// root directory has been listed: the kernel then opens it without a
/// request, and the mount stays. The watcher asks with statfs instead.
///
/// It waits for the end of a pipe whose write end stays open in this
/// process (and in forks of it) until the process is gone; then, if
/// statfs of `mountpoint` reports a dead connection (the mount is still
/// there and its daemon is gone), it detaches it: with umount2 as root,
/// with `fusermount3 -u -z` otherwise. An unmounted path, or another mount
/// on it, answers statfs and is left alone.
///
/// Call it early, while the process is small: it forks, and the watcher
/// keeps the copy-on-write image of the process as it was then (a fork
/// after loading a large tree would pin a copy of every page the daemon
/// changes later).
pub fn start_auto_unmount(mountpoint: &Path) -> io::Result<()> {
    use std::os::fd::IntoRawFd;
    use std::os::raw::c_char;

    let c = |s: &[u8]| CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL));
    let mnt = c(mountpoint.as_os_str().as_bytes())?;
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    // Everything the child uses is prepared here: after fork it makes only
    // async-signal-safe calls.
    let argv_strings = if root {
        Vec::new()
    } else {
        let bin = fusermount_path().ok_or_else(|| {
            io::Error::other(
                "auto_unmount needs fusermount3 (package fuse3), which is not installed",
            )
        })?;
        vec![
            c(bin.as_os_str().as_bytes())?,
            c(b"-u")?,
            c(b"-q")?,
            c(b"-z")?,
            c(b"--")?,
            mnt.clone(),
        ]
    };
    let mut argv: Vec<*const c_char> = argv_strings.iter().map(|s| s.as_ptr()).collect();
    argv.push(std::ptr::null());
    let devnull = c(b"/dev/null")?;
    let slash = c(b"/")?;
    let name = c(b"triefs-watch")?;

    let (rd, wr) = std::io::pipe()?;
    let (rd, wr) = (OwnedFd::from(rd), OwnedFd::from(wr));
    // SAFETY: the child below only makes async-signal-safe calls on data
    // prepared before the fork (sound even if other threads exist) and
    // never returns.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            let parts = WatcherArgs {
                pipe: rd.as_raw_fd(),
                mnt: &mnt,
                devnull: &devnull,
                slash: &slash,
                name: &name,
                argv: if root { None } else { Some(&argv) },
            };
            // SAFETY: we are the child of the fork; parts holds only data
            // prepared before it.
            unsafe { watch_and_unmount(parts) }
        }
        _ => {
            drop(rd);
            // The write end must stay open exactly as long as this process
            // lives: the kernel closes it when the process is gone, which
            // is what the watcher waits for. It is close-on-exec, so
            // programs we start do not hold it.
            let _ = wr.into_raw_fd();
            Ok(())
        }
    }
}

/// What the watcher child needs, prepared before the fork.
struct WatcherArgs<'a> {
    /// Read end of the pipe whose end means the daemon is gone.
    pipe: libc::c_int,
    /// The mount point.
    mnt: &'a CString,
    /// `/dev/null`, for the watcher's standard descriptors.
    devnull: &'a CString,
    /// `/`, the watcher's working directory (it keeps nothing busy).
    slash: &'a CString,
    /// The process name shown by ps and top, so it is told from the daemon.
    name: &'a CString,
    /// `fusermount3 -u -q -z -- MNT`, NULL-terminated; None as root.
    argv: Option<&'a [*const std::os::raw::c_char]>,
}

/// The watcher process: never returns.
///
/// # Safety
/// Must run in the child of a fork, using only the prepared data.
unsafe fn watch_and_unmount(a: WatcherArgs<'_>) -> ! {
    // SAFETY: only async-signal-safe system calls on valid pointers and
    // descriptors of this (single-threaded) process.
    unsafe {
        // Immune to the terminal and to signals aimed at the daemon's
        // process group; it ends by itself right after the daemon.
        libc::setsid();
        libc::prctl(libc::PR_SET_NAME, a.name.as_ptr());
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        // Keep no descriptor but the pipe: a copy of the /dev/fuse
        // descriptor here would keep a dead daemon's connection alive, and
        // a copy of someone's pipe would keep them waiting for its end.
        let mut pipe = a.pipe;
        if pipe < 3 {
            pipe = libc::fcntl(pipe, libc::F_DUPFD, 3);
        }
        let null = libc::open(a.devnull.as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
        }
        close_all_above_2_except(pipe);
        libc::chdir(a.slash.as_ptr());

        let mut buf = [0u8; 16];
        loop {
            let n = libc::read(pipe, buf.as_mut_ptr().cast(), buf.len());
            if n > 0 || (n < 0 && *libc::__errno_location() == libc::EINTR) {
                continue;
            }
            break;
        }
        // statfs always asks the daemon, where an open or a stat may be
        // answered from the kernel's caches (and an open of a directory
        // never asks triefs after its first one). A dead daemon's mount
        // fails it with ENOTCONN, or ECONNABORTED when the request went
        // out just before the daemon's /dev/fuse descriptor was closed.
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::statfs(a.mnt.as_ptr(), &mut st) == 0
            || !matches!(
                *libc::__errno_location(),
                libc::ENOTCONN | libc::ECONNABORTED
            )
        {
            libc::_exit(0);
        }
        match a.argv {
            None => {
                libc::umount2(a.mnt.as_ptr(), libc::MNT_DETACH);
            }
            Some(argv) => {
                libc::execv(argv[0], argv.as_ptr());
            }
        }
        libc::_exit(0)
    }
}

/// Closes every descriptor from 3 up, except `keep`.
///
/// # Safety
/// Closes descriptors behind the back of anything owning them: only for a
/// child that is about to use none of them.
unsafe fn close_all_above_2_except(keep: libc::c_int) {
    let close_range = |first: libc::c_uint, last: libc::c_uint| {
        // SAFETY: close_range only closes descriptors (Linux 5.9+).
        unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) == 0 }
    };
    let keep = keep.max(3) as libc::c_uint;
    let below = keep == 3 || close_range(3, keep - 1);
    let above = close_range(keep + 1, libc::c_uint::MAX);
    if !(below && above) {
        // Older kernels: the usual descriptor range, one by one.
        for fd in 3..4096 {
            if fd != keep as libc::c_int {
                // SAFETY: closing a descriptor number, open or not.
                unsafe { libc::close(fd) };
            }
        }
    }
}

/// Where `fusermount3` (or an old `fusermount`) is, looked up like fuser
/// does: `FUSERMOUNT_PATH`, then `PATH`, then `/bin` and `/usr/bin`.
fn fusermount_path() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("FUSERMOUNT_PATH") {
        return Some(p.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<std::path::PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/bin".into(), "/usr/bin".into(), "/sbin".into()]);
    ["fusermount3", "fusermount"]
        .iter()
        .flat_map(|name| dirs.iter().map(move |d| d.join(name)))
        .find(|p| p.is_file())
}
