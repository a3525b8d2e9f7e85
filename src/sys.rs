//! The operating system, behind safe functions: every libc call of triefs
//! goes through here, with its safety argument and its error check in one
//! place. (Two exceptions keep their raw calls where the safety argument
//! is local: the `auto_unmount` watcher between fork and exec
//! (`mount/watch.rs`) and mount(2) as root (`mount/direct.rs`).)

use std::ffi::CStr;
use std::io;
use std::os::fd::AsRawFd;

/// The real user ID.
pub fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// The real group ID.
pub fn gid() -> u32 {
    // SAFETY: getgid has no preconditions and cannot fail.
    unsafe { libc::getgid() }
}

/// The effective user ID.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Physical memory in bytes (4 GiB when the system does not say).
pub fn phys_ram() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let (pages, psize) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages > 0 && psize > 0 {
        pages as u64 * psize as u64
    } else {
        1 << 32
    }
}

/// Whether thread `tid` is in chown(2), fchown(2), lchown(2) or
/// fchownat(2) right now, as `/proc/TID/syscall` says (false when it
/// cannot be read: another user's thread for an unprivileged daemon).
/// Asked only of a thread blocked in one of our requests.
#[cfg(target_os = "linux")]
pub fn in_chown(tid: u32) -> bool {
    #[cfg(target_arch = "x86_64")]
    const CHOWNS: [libc::c_long; 4] = [
        libc::SYS_chown,
        libc::SYS_lchown,
        libc::SYS_fchown,
        libc::SYS_fchownat,
    ];
    // Newer architectures have only the two (chown(3) is fchownat there).
    #[cfg(not(target_arch = "x86_64"))]
    const CHOWNS: [libc::c_long; 2] = [libc::SYS_fchown, libc::SYS_fchownat];
    std::fs::read_to_string(format!("/proc/{tid}/syscall"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<libc::c_long>().ok())
        .is_some_and(|nr| CHOWNS.contains(&nr))
}

/// Whether thread `tid` is in a chown system call (never known here).
#[cfg(not(target_os = "linux"))]
pub fn in_chown(_tid: u32) -> bool {
    false
}

/// Gives free heap memory back to the system (glibc's `malloc_trim`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim_heap() {
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Gives free heap memory back to the system (nothing to do here).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim_heap() {}

/// glibc allocator tuning: at most `arenas` arenas (when given) and a top
/// pad of `top_pad` bytes (when given). Call before other threads start.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_malloc(arenas: Option<i32>, top_pad: Option<i32>) {
    // SAFETY: mallopt only changes allocator parameters; the caller runs
    // before the request threads exist.
    unsafe {
        if let Some(n) = arenas {
            libc::mallopt(libc::M_ARENA_MAX, n);
        }
        if let Some(n) = top_pad {
            libc::mallopt(libc::M_TOP_PAD, n);
        }
    }
}

/// Allocator tuning: glibc only.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_malloc(_arenas: Option<i32>, _top_pad: Option<i32>) {}

/// A non-blocking `flock` of `f`, shared or exclusive: false when another
/// open file holds a conflicting lock (or on any other error: `Err`).
pub fn try_flock(f: &impl AsRawFd, exclusive: bool) -> io::Result<bool> {
    let how = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    // SAFETY: flock on a descriptor the caller keeps open.
    if unsafe { libc::flock(f.as_raw_fd(), how | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// `syncfs(2)`: has the kernel write the dirty data it caches for the
/// filesystem of `f` back to it.
pub fn syncfs(f: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: syncfs takes any descriptor and only reads its number.
    #[cfg(target_os = "linux")]
    let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
    // Elsewhere there is no syncfs: sync everything.
    #[cfg(not(target_os = "linux"))]
    let rc = {
        let _ = f.as_raw_fd();
        // SAFETY: sync has no preconditions.
        unsafe { libc::sync() };
        0
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An `_IOWR` ioctl with the buffer `buf`, whose length must be the size
/// encoded in `cmd` (the kernel copies that many bytes in and out).
pub fn ioctl_rw(f: &impl AsRawFd, cmd: u32, buf: &mut [u8]) -> io::Result<()> {
    let size = ((cmd >> 16) & 0x3fff) as usize;
    if buf.len() != size {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: buf is valid for `size` bytes, the size encoded in `cmd`, so
    // the kernel reads and writes within it.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), cmd as _, buf.as_mut_ptr()) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sends one line to syslog at error level, facility daemon, as `ident`.
pub fn syslog_error(ident: &'static CStr, msg: &CStr) {
    // SAFETY: ident is 'static as openlog requires; "%s" with one valid C
    // string argument.
    unsafe {
        libc::openlog(ident.as_ptr(), libc::LOG_PID, libc::LOG_DAEMON);
        libc::syslog(libc::LOG_ERR, c"%s".as_ptr(), msg.as_ptr());
    }
}

/// A set of signals.
pub struct SignalSet(libc::sigset_t);

impl SignalSet {
    /// The set of `signals`.
    pub fn of(signals: &[i32]) -> SignalSet {
        // SAFETY: sigset_t is plain data, initialised by sigemptyset; the
        // signal numbers are the caller's constants.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &s in signals {
                libc::sigaddset(&mut set, s);
            }
            SignalSet(set)
        }
    }

    /// Blocks the set in the calling thread (threads started later
    /// inherit it), so that only [`SignalSet::wait`] receives them.
    pub fn block(&self) -> io::Result<()> {
        // SAFETY: a valid, initialised set; the old mask is not asked for.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &self.0, std::ptr::null_mut()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(rc))
        }
    }

    /// Waits for one of the (blocked) signals of the set and returns it.
    pub fn wait(&self) -> io::Result<i32> {
        let mut sig = 0;
        // SAFETY: a valid, initialised set and a valid out pointer.
        let rc = unsafe { libc::sigwait(&self.0, &mut sig) };
        if rc == 0 {
            Ok(sig)
        } else {
            Err(io::Error::from_raw_os_error(rc))
        }
    }
}

/// Which side of [`fork`] we are on.
pub enum Forked {
    /// The child.
    Child,
    /// The parent, with the child's PID.
    Parent(i32),
}

/// Forks. Only sound while the process has a single thread (or when the
/// child makes only async-signal-safe calls); triefs forks before it
/// starts any.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: the callers fork before starting threads, so the child owns
    // a consistent copy of the process.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Starts a new session (detaches from the terminal).
pub fn setsid() -> io::Result<()> {
    // SAFETY: setsid has no memory preconditions.
    if unsafe { libc::setsid() } < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Makes descriptor `to` a copy of `from` (`dup2`).
pub fn dup2(from: &impl AsRawFd, to: i32) -> io::Result<()> {
    // SAFETY: from is open; dup2 replaces `to` atomically.
    if unsafe { libc::dup2(from.as_raw_fd(), to) } < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Unmounts `path` (`umount2` with `flags`, e.g. `MNT_DETACH`).
#[cfg(target_os = "linux")]
pub fn umount(path: &CStr, flags: i32) -> io::Result<()> {
    // SAFETY: path is a valid NUL-terminated string.
    if unsafe { libc::umount2(path.as_ptr(), flags) } != 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_memory() {
        assert!(phys_ram() > 1 << 20);
        // /proc/self belongs to the process's effective user.
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata("/proc/self").unwrap().uid();
        assert_eq!(euid(), owner);
    }

    /// A blocked signal raised in a thread waits for `wait`, which
    /// returns it (done in a thread of its own, whose mask nobody shares).
    #[test]
    fn blocked_signals_are_waited_for() {
        std::thread::spawn(|| {
            let set = SignalSet::of(&[libc::SIGUSR2]);
            set.block().unwrap();
            // SAFETY: raise sends a signal to this thread, where it is
            // blocked and so stays pending.
            assert_eq!(unsafe { libc::raise(libc::SIGUSR2) }, 0);
            assert_eq!(set.wait().unwrap(), libc::SIGUSR2);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn ioctl_checks_the_buffer_size() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let cmd = (3 << 30) | (16 << 16) | (0xF7 << 8) | 0x01;
        let e = ioctl_rw(&f, cmd, &mut [0u8; 8]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn flock_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        let a = std::fs::File::create(&p).unwrap();
        let b = std::fs::File::open(&p).unwrap();
        assert!(try_flock(&a, true).unwrap());
        assert!(!try_flock(&b, false).unwrap());
    }
}
