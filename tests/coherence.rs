//! Kernel cache coherence: what `stat` shows after a change must be the
//! new state, even while other processes look at the same inodes.
//!
//! The kernel caches attributes for the TTL triefs grants (a day). Its
//! protection against a late reply overwriting newer attributes is a
//! per-inode version; a mkdir/rmdir only marks the parent invalid without
//! bumping that version, so a `getattr` of the parent answered just before
//! the change could re-install the old link count for the whole TTL.
//! triefs sends an `inval_inode` notification before replying, which bumps
//! the version. These tests drive exactly that interleaving.
// Mount tests drive Linux: tmpfs as the oracle, Linux syscalls and tools.
#![cfg(target_os = "linux")]

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::TriefsMount;

/// Link counts seen by the checking loop that were wrong.
#[derive(Default, Debug)]
struct Seen {
    iterations: u64,
    /// Wrong, and still wrong on the next `lstat`: a stale cache.
    persistent: Vec<String>,
    /// Wrong once, right on the next `lstat` (the kernel's own race).
    transient: u64,
}

/// `lstat(dir)` must show `want` links; a second look tells a stale cache
/// from a momentary race.
fn check(dir: &Path, want: u64, when: &str, seen: &mut Seen) {
    let n = fs::symlink_metadata(dir).expect("lstat dir").nlink();
    if n == want {
        return;
    }
    let again = fs::symlink_metadata(dir).expect("lstat dir").nlink();
    if again == want {
        seen.transient += 1;
    } else {
        seen.persistent.push(format!(
            "iteration {}: after {when}: st_nlink {n}, then {again}, want {want}",
            seen.iterations
        ));
    }
}

/// mkdir/rmdir of `d/x` in a loop while other threads stat `d` and list
/// its parent with a stat per entry.
fn churn_with_observers(mnt: &Path, secs: u64) -> Seen {
    let d = mnt.join("d");
    fs::create_dir(&d).expect("mkdir d");
    let stop = Arc::new(AtomicBool::new(false));
    let statter = {
        let (d, stop) = (d.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = fs::metadata(&d);
            }
        })
    };
    let lister = {
        let (mnt, stop) = (mnt.to_path_buf(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for e in fs::read_dir(&mnt).expect("readdir").flatten() {
                    let _ = fs::symlink_metadata(e.path());
                }
            }
        })
    };
    let x: PathBuf = d.join("x");
    let mut seen = Seen::default();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        fs::create_dir(&x).expect("mkdir x");
        check(&d, 3, "mkdir", &mut seen);
        fs::remove_dir(&x).expect("rmdir x");
        check(&d, 2, "rmdir", &mut seen);
        seen.iterations += 1;
    }
    stop.store(true, Ordering::Relaxed);
    statter.join().expect("statter");
    lister.join().expect("lister");
    seen
}

#[test]
fn parent_link_count_is_not_stale_after_mkdir_and_rmdir() {
    // One daemon thread serves requests in order, which makes the late
    // reply most likely (without the fix: about one stale count per 1,000
    // iterations on a 2-core machine).
    let m = TriefsMount::new(&["--threads", "1"]);
    let seen = churn_with_observers(m.path(), 6);
    eprintln!(
        "{} iterations, {} transient wrong counts",
        seen.iterations, seen.transient
    );
    assert!(seen.iterations > 1000, "too few iterations: {seen:?}");
    assert!(
        seen.persistent.is_empty(),
        "stale parent link counts:\n{}",
        seen.persistent.join("\n")
    );
}
