//! Test fixtures for Rust test suites: a fresh triefs mounted in a
//! temporary directory, with checkpoints to put it back between tests.
//!
//! The filesystem is served by threads of the test process itself (no
//! `triefs` binary needed); mounting needs what any FUSE mount needs:
//! root, or `fusermount3` for other users. Dropping the [`TempMount`]
//! unmounts it and removes the directory. If the test process is killed
//! before that, the mount point is left stale; `fusermount3 -uz DIR` (or
//! `umount -l DIR`) clears it.
//!
//! ```no_run
//! use std::fs;
//! use triefs::fixture::TempMount;
//!
//! let m = TempMount::new()?;
//! fs::create_dir(m.path().join("data"))?;
//! fs::write(m.path().join("data/config.toml"), "answer = 42\n")?;
//! m.checkpoint("pristine")?;
//! for case in ["delete", "corrupt"] {
//!     // ... run a test that changes or breaks the tree ...
//!     if case == "delete" {
//!         fs::remove_dir_all(m.path().join("data"))?;
//!     }
//!     m.restore("pristine")?; // the tree is back, for every process
//!     assert_eq!(fs::read_to_string(m.path().join("data/config.toml"))?, "answer = 42\n");
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! From a shell, or any language that can run a command, the same is
//! `triefs DIR`, `triefs checkpoint save DIR NAME`, `triefs checkpoint
//! restore DIR NAME` and `umount DIR`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use fuser::{BackgroundSession, Config, MountOption};

use crate::fuse::TrieFs;
use crate::namespace::{Limits, Namespace};

/// How to mount a [`TempMount`].
#[derive(Clone, Debug, Default)]
pub struct Builder {
    size: Option<u64>,
    nr_inodes: Option<u64>,
    crash: bool,
}

impl Builder {
    /// Limits file data to `bytes` (tmpfs's `size=`; default half the RAM).
    pub fn size(mut self, bytes: u64) -> Builder {
        self.size = Some(bytes);
        self
    }

    /// Limits files and directories (tmpfs's `nr_inodes=`).
    pub fn nr_inodes(mut self, n: u64) -> Builder {
        self.nr_inodes = Some(n);
        self
    }

    /// Tracks durable state, as `-o crash` does, for
    /// [`TempMount::crash`].
    pub fn crash(mut self, on: bool) -> Builder {
        self.crash = on;
        self
    }

    /// Mounts an empty triefs in a new private temporary directory.
    pub fn mount(self) -> io::Result<TempMount> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "triefs-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::DirBuilder::new().mode_private().create(&dir)?;
        let mnt = dir.join("m");
        let made = std::fs::create_dir(&mnt).and_then(|()| {
            let uid = crate::sys::euid();
            // SAFETY: getegid has no preconditions and cannot fail.
            let gid = unsafe { libc::getegid() };
            let limits = Limits::from_options(self.size, self.nr_inodes);
            let mut ns = Namespace::new(uid, gid, 0o755, limits);
            if self.crash {
                ns.track_durability();
            }
            let fs = TrieFs::new(ns);
            let notifier = fs.notifier_slot();
            let mut config = Config::default();
            config.mount_options = vec![
                MountOption::FSName("triefs".into()),
                MountOption::Subtype("triefs".into()),
                MountOption::DefaultPermissions,
            ];
            // Two request threads: the test and its tools are usually two
            // processes working at once.
            config.n_threads = Some(2);
            let session = fuser::spawn_mount(fs, &mnt, &config)?;
            let _ = notifier.set(session.notifier());
            Ok(session)
        });
        match made {
            Ok(session) => Ok(TempMount {
                dir,
                mnt,
                session: Some(session),
            }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }
}

/// Private directories without pulling in a crate for it.
trait PrivateDir {
    fn mode_private(&mut self) -> &mut Self;
}

impl PrivateDir for std::fs::DirBuilder {
    fn mode_private(&mut self) -> &mut Self {
        use std::os::unix::fs::DirBuilderExt;
        self.mode(0o700)
    }
}

/// A triefs mounted for a test; unmounted when dropped.
pub struct TempMount {
    dir: PathBuf,
    mnt: PathBuf,
    session: Option<BackgroundSession>,
}

impl TempMount {
    /// Mounts an empty triefs with default limits ([`Builder`] for others).
    pub fn new() -> io::Result<TempMount> {
        Builder::default().mount()
    }

    /// A builder for limits.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mnt
    }

    /// Saves the whole tree as checkpoint `name` (see
    /// [`crate::checkpoint`]): data written before the call is in it.
    pub fn checkpoint(&self, name: &str) -> io::Result<()> {
        crate::checkpoint::save(&self.mnt, name).map(|_| ())
    }

    /// Makes checkpoint `name` the tree again; when it returns, every
    /// process sees the checkpoint's names, attributes and contents.
    pub fn restore(&self, name: &str) -> io::Result<()> {
        crate::checkpoint::restore(&self.mnt, name).map(|_| ())
    }

    /// The power cut of a mount built with [`Builder::crash`]: every file
    /// and directory falls back to its last fsync (see
    /// [`crate::namespace::durable`]).
    pub fn crash(&self) -> io::Result<crate::checkpoint::CrashStats> {
        crate::checkpoint::crash(&self.mnt)
    }

    /// Deletes checkpoint `name`.
    pub fn delete_checkpoint(&self, name: &str) -> io::Result<()> {
        crate::checkpoint::delete(&self.mnt, name)
    }

    /// Unmounts now, reporting a failure (dropping does the same quietly).
    pub fn unmount(mut self) -> io::Result<()> {
        self.close()
    }

    fn close(&mut self) -> io::Result<()> {
        let result = match self.session.take() {
            Some(s) => s.umount_and_join(),
            None => Ok(()),
        };
        // A busy mount (a descriptor or a working directory still in it,
        // a child process that outlives the test) refuses a plain unmount;
        // it must not be left behind, stale, when the process exits.
        if result.is_err() {
            detach(&self.mnt);
        }
        let _ = std::fs::remove_dir(&self.mnt);
        let _ = std::fs::remove_dir(&self.dir);
        result
    }
}

/// Detaches the mount at `mnt` lazily: it disappears once no longer busy.
fn detach(mnt: &Path) {
    #[cfg(target_os = "linux")]
    if crate::sys::euid() == 0 {
        use std::os::unix::ffi::OsStrExt;
        if let Ok(c) = std::ffi::CString::new(mnt.as_os_str().as_bytes())
            && crate::sys::umount(&c, libc::MNT_DETACH).is_ok()
        {
            return;
        }
    }
    let _ = std::process::Command::new("fusermount3")
        .arg("-uz")
        .arg(mnt)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

impl Drop for TempMount {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            log::warn!("unmounting {}: {e}", self.mnt.display());
        }
    }
}
