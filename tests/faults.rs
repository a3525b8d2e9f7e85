//! Fault handling: a panic inside a request, signals and unmounts while
//! writers are busy, malformed names.
// Mount tests drive Linux: tmpfs as the oracle, Linux syscalls and tools.
#![cfg(target_os = "linux")]

mod common;

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::TriefsMount;

/// Setting the fault xattr panics inside the daemon while it holds the
/// namespace write lock: that request gets EIO, every later request works,
/// and the daemon still unmounts cleanly with a consistent namespace.
#[test]
fn panic_in_a_request_answers_eio_and_keeps_serving() {
    let mut m = TriefsMount::with_args_env(
        [] as [&OsStr; 0],
        &[("TRIEFS_FAULTS", "1"), ("TRIEFS_CHECK", "1")],
    );
    let f = m.path().join("f");
    std::fs::write(&f, b"before").unwrap();
    for round in 0..3 {
        let c = common::cpath(&f);
        let name = c"user.triefs.fault.panic";
        // SAFETY: valid C strings and buffer.
        let r = unsafe { libc::setxattr(c.as_ptr(), name.as_ptr(), b"1".as_ptr().cast(), 1, 0) };
        assert_eq!(
            r, -1,
            "round {round}: the injected panic must fail the call"
        );
        assert_eq!(common::errno(), libc::EIO, "round {round}");
        // Everything else keeps working, reads and writes alike.
        assert_eq!(std::fs::read(&f).unwrap(), b"before");
        let d = m.path().join(format!("d{round}"));
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("x"), b"after").unwrap();
        assert_eq!(std::fs::read(d.join("x")).unwrap(), b"after");
    }
    let st = m.unmount_and_wait().expect("daemon exits");
    assert!(st.success(), "daemon must exit 0 (consistency check): {st}");
}

/// SIGTERM and a plain unmount while several writers are busy: the daemon
/// exits 0 promptly and leaves no mount behind.
#[test]
fn sigterm_and_umount_while_writers_are_active() {
    for how in ["sigterm", "umount"] {
        let mut m = TriefsMount::new(&[]);
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let mut workers = Vec::new();
        for w in 0..4 {
            let dir = m.path().to_path_buf();
            let stop = stop.clone();
            let written = written.clone();
            workers.push(std::thread::spawn(move || {
                let buf = vec![w as u8; 64 * 1024];
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let p = dir.join(format!("w{w}-{}", i % 8));
                    // Errors are expected once the mount goes away.
                    let Ok(mut f) = std::fs::File::create(&p) else {
                        break;
                    };
                    for _ in 0..16 {
                        if f.write_all(&buf).is_err() {
                            break;
                        }
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            }));
        }
        while written.load(Ordering::Relaxed) < 200 {
            std::thread::sleep(Duration::from_millis(5));
        }
        match how {
            "sigterm" => {
                m.signal(libc::SIGTERM);
            }
            _ => common::unmount(m.path()),
        }
        let st = m.wait_exit(Duration::from_secs(10));
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
        let st = st.unwrap_or_else(|| panic!("{how}: daemon did not exit within 10 s"));
        assert!(st.success(), "{how}: daemon exit status {st}");
        assert!(!common::is_mounted(m.path()), "{how}: mount left behind");
    }
}

/// Names the kernel passes through but the filesystem must refuse, and
/// `..` tricks through rename: errnos, never a crash.
#[test]
fn malformed_names_get_errnos() {
    let mut m = TriefsMount::new(&[]);
    let root = m.path().to_path_buf();
    std::fs::create_dir(root.join("a")).unwrap();
    std::fs::create_dir(root.join("a/b")).unwrap();
    let long = OsStr::from_bytes(&[b'x'; 256]).to_owned();
    let err = std::fs::create_dir(root.join(&long)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG));
    let err = std::fs::File::create(root.join(&long)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG));
    assert_eq!(
        std::fs::metadata(root.join(&long))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::ENAMETOOLONG)
    );
    // Renaming a directory below itself through `..` paths.
    let err = std::fs::rename(root.join("a"), root.join("a/b/../b/c")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    let err = std::fs::rename(root.join("a/b/.."), root.join("z")).unwrap_err();
    assert!(
        matches!(err.raw_os_error(), Some(libc::EBUSY) | Some(libc::EINVAL)),
        "rename of a/b/..: {err}"
    );
    let err = std::fs::rename(root.join("a/b"), root.join("a/b/..")).unwrap_err();
    assert!(
        matches!(
            err.raw_os_error(),
            Some(libc::EBUSY) | Some(libc::EINVAL) | Some(libc::ENOTEMPTY) | Some(libc::EEXIST)
        ),
        "rename onto ..: {err}"
    );
    // Non-UTF-8 and control bytes are fine names.
    let odd = OsStr::from_bytes(b"\xff\x01\tname\x7f").to_owned();
    std::fs::write(root.join(&odd), b"ok").unwrap();
    assert_eq!(std::fs::read(root.join(&odd)).unwrap(), b"ok");
    assert!(root.join("a/b").is_dir());
    let st = m.unmount_and_wait().expect("daemon exits");
    assert!(st.success());
}
