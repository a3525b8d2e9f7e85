//! `triefs fault`: injected faults on a mounted triefs, driven with real
//! system calls. The hard part is that faults must really happen: every
//! file is read, stat'ed and listed before a rule is added, so a request
//! the kernel could answer from its caches would slip past the rule.
// Mount tests drive Linux syscalls and tools.
#![cfg(target_os = "linux")]

mod common;

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Errno, Output, TriefsMount, as_nobody, assert_exit, assert_one_line_exit, cpath, run_timed,
    shared_binary, triefs_bin,
};

const LIMIT: Duration = Duration::from_secs(60);

/// The errno rules answer: one no request would give by itself.
const INJECTED: i32 = libc::EUCLEAN;

fn fault(mnt: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(triefs_bin());
    cmd.arg("fault").arg(args[0]).arg(mnt).args(&args[1..]);
    run_timed(cmd, LIMIT)
}

#[track_caller]
fn add(mnt: &Path, rule: &str) -> u32 {
    let words: Vec<&str> = rule.split_whitespace().collect();
    let mut args = vec!["add"];
    args.extend(words);
    let out = fault(mnt, &args);
    assert_exit(&out, 0, &format!("fault add {rule}"));
    out.stdout
        .trim()
        .parse()
        .expect("fault add prints the rule's id")
}

#[track_caller]
fn clear(mnt: &Path) {
    assert_exit(&fault(mnt, &["clear"]), 0, "fault clear");
}

/// The errno of a libc call's result: 0 when it worked.
fn rc(r: libc::c_long) -> i32 {
    if r < 0 { common::errno() } else { 0 }
}

fn c(p: &Path) -> CString {
    cpath(p)
}

/// The tree every case starts from, with every cache the kernel has
/// primed: contents read, attributes stat'ed, listings listed, the
/// symlink and the xattr read.
fn prime(root: &Path) {
    let d = root.join("d");
    for p in ["d", "d/f", "d/l", "d/s"] {
        fs::symlink_metadata(root.join(p)).unwrap();
    }
    assert_eq!(fs::read(d.join("f")).unwrap(), b"hello world");
    assert_eq!(fs::read_dir(&d).unwrap().count(), 3);
    assert_eq!(fs::read_link(d.join("l")).unwrap(), Path::new("f"));
    let mut v = [0u8; 8];
    let n = unsafe {
        // SAFETY: both strings are NUL-terminated; v is 8 writable bytes.
        libc::getxattr(
            c(&d.join("f")).as_ptr(),
            c"user.k".as_ptr(),
            v.as_mut_ptr().cast(),
            v.len(),
        )
    };
    assert_eq!(n, 1, "the xattr reads back");
}

fn build(root: &Path) {
    let d = root.join("d");
    fs::create_dir(&d).unwrap();
    fs::write(d.join("f"), b"hello world").unwrap();
    std::os::unix::fs::symlink("f", d.join("l")).unwrap();
    fs::create_dir(d.join("s")).unwrap();
    let r = unsafe {
        // SAFETY: NUL-terminated strings; the value is 1 readable byte.
        libc::setxattr(
            c(&d.join("f")).as_ptr(),
            c"user.k".as_ptr(),
            c"v".as_ptr().cast(),
            1,
            0,
        )
    };
    assert_eq!(r, 0, "setxattr");
}

/// Each request named by `--op` fails with the rule's errno, although
/// everything was read, stat'ed and listed before the rule came; after
/// `clear` the same call works again.
#[test]
fn every_op_fires_after_the_kernel_cached_everything() {
    let m = TriefsMount::with_args_env(
        ["-o", "faults"].map(std::ffi::OsStr::new),
        &[("TRIEFS_CHECK", "1")],
    );
    let root = &m.path().to_path_buf();
    build(root);
    let d = root.join("d");
    let f = d.join("f");
    type Case<'a> = (&'a str, Box<dyn Fn() -> i32 + 'a>);
    // An fd opened before the rule: its pages and attributes are cached.
    let open_rw = || {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&f)
            .unwrap()
    };
    // Reopened for each case: a case may replace the file.
    let rw = std::cell::RefCell::new(open_rw());
    let cases: Vec<Case> = vec![
        (
            "lookup",
            Box::new(|| rc(fs::metadata(&f).map_or(-1, |_| 0))),
        ),
        (
            "getattr",
            Box::new(|| {
                // SAFETY: a valid fd and a zeroed stat buffer.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                rc(unsafe { libc::fstat(rw.borrow().as_raw_fd(), &mut st) }.into())
            }),
        ),
        (
            "setattr",
            Box::new(|| {
                rc(fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).map_or(-1, |_| 0))
            }),
        ),
        (
            "readlink",
            Box::new(|| rc(fs::read_link(d.join("l")).map_or(-1, |_| 0))),
        ),
        (
            "mknod",
            // SAFETY: a NUL-terminated path.
            Box::new(|| rc(unsafe { libc::mkfifo(c(&d.join("p")).as_ptr(), 0o644) }.into())),
        ),
        (
            "mkdir",
            Box::new(|| rc(fs::create_dir(d.join("n")).map_or(-1, |_| 0))),
        ),
        (
            "unlink",
            Box::new(|| rc(fs::remove_file(&f).map_or(-1, |_| 0))),
        ),
        (
            "rmdir",
            Box::new(|| rc(fs::remove_dir(d.join("s")).map_or(-1, |_| 0))),
        ),
        (
            "symlink",
            Box::new(|| rc(std::os::unix::fs::symlink("x", d.join("l2")).map_or(-1, |_| 0))),
        ),
        (
            "rename",
            Box::new(|| rc(fs::rename(&f, d.join("g")).map_or(-1, |_| 0))),
        ),
        (
            "link",
            Box::new(|| rc(fs::hard_link(&f, d.join("h")).map_or(-1, |_| 0))),
        ),
        (
            "open",
            Box::new(|| rc(fs::File::open(&f).map_or(-1, |_| 0))),
        ),
        (
            "read",
            Box::new(|| {
                let mut b = [0u8; 4];
                // SAFETY: a valid fd and a 4-byte buffer.
                rc(
                    unsafe { libc::pread(rw.borrow().as_raw_fd(), b.as_mut_ptr().cast(), 4, 0) }
                        as _,
                )
            }),
        ),
        (
            "write",
            // SAFETY: a valid fd and 1 readable byte.
            Box::new(|| {
                rc(
                    unsafe { libc::pwrite(rw.borrow().as_raw_fd(), c"h".as_ptr().cast(), 1, 0) }
                        as _,
                )
            }),
        ),
        (
            "flush",
            Box::new(|| {
                // The open works (the rule is on flush): close(2) fails.
                let fd = fs::File::open(&f).unwrap();
                // SAFETY: the fd is owned here and closed once.
                let r = unsafe { libc::close(fd.as_raw_fd()) };
                std::mem::forget(fd);
                rc(r.into())
            }),
        ),
        // SAFETY: a valid fd.
        (
            "fsync",
            Box::new(|| rc(unsafe { libc::fsync(rw.borrow().as_raw_fd()) }.into())),
        ),
        (
            "opendir",
            Box::new(|| rc(fs::read_dir(&d).map_or(-1, |_| 0))),
        ),
        (
            "readdir",
            Box::new(|| match fs::read_dir(&d) {
                Ok(mut it) => match it.next() {
                    Some(Err(e)) => e.raw_os_error().unwrap_or(0),
                    _ => 0,
                },
                Err(e) => -e.raw_os_error().unwrap_or(1),
            }),
        ),
        (
            "fsyncdir",
            Box::new(|| {
                let dir = fs::File::open(&d).unwrap();
                // SAFETY: a valid fd.
                rc(unsafe { libc::fsync(dir.as_raw_fd()) }.into())
            }),
        ),
        (
            "statfs",
            Box::new(|| {
                // SAFETY: a NUL-terminated path and a zeroed buffer.
                let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
                rc(unsafe { libc::statvfs(c(&f).as_ptr(), &mut s) }.into())
            }),
        ),
        (
            "xattr",
            Box::new(|| {
                let mut v = [0u8; 8];
                // SAFETY: NUL-terminated strings, an 8-byte buffer.
                rc(unsafe {
                    libc::getxattr(c(&f).as_ptr(), c"user.k".as_ptr(), v.as_mut_ptr().cast(), 8)
                } as _)
            }),
        ),
        (
            "create",
            Box::new(|| {
                rc(fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(d.join("new"))
                    .map_or(-1, |_| 0))
            }),
        ),
        (
            "fallocate",
            // SAFETY: a valid fd.
            Box::new(|| rc(unsafe { libc::fallocate(rw.borrow().as_raw_fd(), 0, 0, 8192) }.into())),
        ),
        (
            "lseek",
            // SAFETY: a valid fd.
            Box::new(|| rc(unsafe { libc::lseek(rw.borrow().as_raw_fd(), 0, libc::SEEK_DATA) })),
        ),
        (
            "copy_file_range",
            Box::new(|| {
                let src = fs::File::open(root.join("outside")).unwrap();
                let (mut a, mut b) = (0i64, 0i64);
                // SAFETY: valid fds and offsets.
                rc(unsafe {
                    libc::copy_file_range(
                        src.as_raw_fd(),
                        &mut a,
                        rw.borrow().as_raw_fd(),
                        &mut b,
                        4,
                        0,
                    )
                } as _)
            }),
        ),
        (
            "ioctl",
            Box::new(|| {
                let mut flags: libc::c_int = 0;
                // SAFETY: FS_IOC_GETFLAGS writes an int.
                rc(unsafe { libc::ioctl(rw.borrow().as_raw_fd(), 0x8008_6601, &mut flags) }.into())
            }),
        ),
    ];
    fs::write(root.join("outside"), b"data").unwrap();
    for (op, call) in &cases {
        *rw.borrow_mut() = open_rw();
        prime(root);
        assert_eq!(Errno(call()), Errno(0), "{op} works before the rule");
        // Undo what the call changed, and cache everything again.
        for extra in ["p", "n", "l2", "h", "new"] {
            let _ = fs::remove_file(d.join(extra)).or_else(|_| fs::remove_dir(d.join(extra)));
        }
        let _ = fs::remove_file(d.join("g"));
        build_file(&f);
        if !d.join("s").exists() {
            fs::create_dir(d.join("s")).unwrap();
        }
        *rw.borrow_mut() = open_rw();
        prime(root);
        add(root, &format!("/d --op {op} --errno EUCLEAN"));
        assert_eq!(Errno(call()), Errno(INJECTED), "{op} after the rule");
        clear(root);
        // Nothing changed by a failed call.
        let left = fs::read(&f).unwrap();
        assert!(
            left == b"hello world",
            "{op}: f changed ({} bytes)",
            left.len()
        );
        assert!(d.join("s").is_dir(), "{op}: s intact");
    }
    drop(cases);
    drop(rw);
    let mut m = m;
    let st = m.unmount_and_wait().expect("daemon exit");
    assert!(st.success(), "consistency check at unmount: {st}");
}

fn build_file(f: &Path) {
    fs::write(f, b"hello world").unwrap();
    let r = unsafe {
        // SAFETY: NUL-terminated strings; 1 readable byte.
        libc::setxattr(
            c(f).as_ptr(),
            c"user.k".as_ptr(),
            c"v".as_ptr().cast(),
            1,
            0,
        )
    };
    assert_eq!(r, 0);
}

/// Reads one byte at a time through a fresh descriptor: which of `n`
/// reads failed.
fn read_pattern(f: &Path, n: usize) -> Vec<bool> {
    let file = fs::File::open(f).unwrap();
    (0..n)
        .map(|_| {
            let mut b = [0u8; 1];
            // SAFETY: a valid fd and a 1-byte buffer.
            unsafe { libc::pread(file.as_raw_fd(), b.as_mut_ptr().cast(), 1, 0) < 0 }
        })
        .collect()
}

/// `--probability` with `--seed` gives the same faults for the same
/// requests, another seed other faults; `list` counts them.
#[test]
fn probability_is_reproducible_by_seed() {
    let m = TriefsMount::new(&["-o", "faults"]);
    let root = m.path();
    fs::create_dir(root.join("p")).unwrap();
    let f = root.join("p/f");
    fs::write(&f, b"x").unwrap();
    let rule = "/p --op read --errno EIO --probability 0.5";
    let id = add(root, &format!("{rule} --seed 42"));
    let first = read_pattern(&f, 200);
    let fired = first.iter().filter(|&&x| x).count();
    assert!(
        (50..150).contains(&fired),
        "about half of 200 reads fail: {fired}"
    );
    let list = fault(root, &["list"]);
    assert_exit(&list, 0, "list");
    assert!(
        list.stdout.contains(&format!(
            "{id} /p --op read --errno EIO --probability 0.5 --seed 42"
        )) && list.stdout.contains(&format!("matched 200, fired {fired}")),
        "{}",
        list.stdout
    );
    clear(root);
    add(root, &format!("{rule} --seed 42"));
    assert_eq!(read_pattern(&f, 200), first, "same seed, same faults");
    clear(root);
    add(root, &format!("{rule} --seed 43"));
    assert_ne!(read_pattern(&f, 200), first, "another seed, other faults");
}

/// A short write is what the program sees: write(2) returns fewer bytes,
/// only those are stored; a loop that writes the rest (as `write_all`
/// does) still ends with the whole file.
#[test]
fn short_writes_reach_the_program() {
    let m = TriefsMount::new(&["-o", "faults"]);
    let root = m.path();
    fs::create_dir(root.join("w")).unwrap();
    let f = root.join("w/f");
    fs::write(&f, b"").unwrap();
    add(root, "/w --op write --short-write 100 --count 3");
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let mut file = fs::OpenOptions::new().write(true).open(&f).unwrap();
    // SAFETY: a valid fd and 10,000 readable bytes.
    let n = unsafe { libc::write(file.as_raw_fd(), data.as_ptr().cast(), data.len()) };
    assert_eq!(n, 100, "the first write is short");
    assert_eq!(
        fs::metadata(&f).unwrap().len(),
        100,
        "only 100 bytes stored"
    );
    file.write_all(&data[100..]).unwrap();
    drop(file);
    assert_eq!(fs::read(&f).unwrap(), data, "write_all finished the file");
    let list = fault(root, &["list"]).stdout;
    assert!(list.contains("fired 3, spent"), "{list}");
}

/// `--after N` lets N matches through, `--count N` stops after N faults.
#[test]
fn after_and_count() {
    let m = TriefsMount::new(&["-o", "faults"]);
    let root = m.path();
    add(root, "/ --op mkdir --errno EDQUOT --after 2 --count 2");
    let got: Vec<i32> = (0..6)
        .map(|i| match fs::create_dir(root.join(format!("d{i}"))) {
            Ok(()) => 0,
            Err(e) => e.raw_os_error().unwrap_or(-1),
        })
        .collect();
    let q = libc::EDQUOT;
    assert_eq!(got, [0, 0, q, q, 0, 0]);
}

/// A delay holds the request (and only it): a read under the slow prefix
/// takes at least the delay while another file is served at once; `clear`
/// wakes a request still waiting out a long delay.
#[test]
fn delays_stall_the_request_until_cleared() {
    let m = TriefsMount::new(&["-o", "faults"]);
    let root = m.path().to_path_buf();
    fs::create_dir(root.join("slow")).unwrap();
    fs::write(root.join("slow/f"), b"s").unwrap();
    fs::write(root.join("fast"), b"f").unwrap();
    add(&root, "/slow --op read --delay-ms 400");
    let t = Instant::now();
    assert_eq!(
        fs::read(root.join("slow/f")).unwrap(),
        b"s",
        "a delay alone serves the request"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    clear(&root);
    add(&root, "/slow --op read --delay-ms 600000 --errno EIO");
    let r = root.clone();
    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        let res = fs::read(r.join("slow/f"));
        (res.map_err(|e| e.raw_os_error()), t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    // Other requests go on meanwhile.
    assert_eq!(fs::read(root.join("fast")).unwrap(), b"f");
    clear(&root);
    let (res, took) = waiter.join().unwrap();
    assert_eq!(res, Err(Some(libc::EIO)), "the fault still answers, early");
    assert!(took < Duration::from_secs(60), "woken by clear: {took:?}");
}

/// `--pid` faults one process: a reader the rule names fails, the test
/// process reads the same file.
#[test]
fn pid_rules_fault_one_process() {
    let m = TriefsMount::new(&["-o", "faults"]);
    let root = m.path();
    let f = root.join("f");
    fs::write(&f, b"data").unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("read go; exec cat \"$1\"")
        .arg("sh")
        .arg(&f)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    add(
        root,
        &format!("/ --op read --errno EIO --pid {}", child.id()),
    );
    assert_eq!(fs::read(&f).unwrap(), b"data", "other processes read");
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "cat of the named process fails");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Input/output error"));
}

/// Rules in `-o faults=FILE` apply from the first request; a bad file stops
/// the mount with one line naming the line.
#[test]
fn rule_files_at_mount() {
    let dir = common::short_tempdir();
    let rules = dir.path().join("rules");
    fs::write(
        &rules,
        "# a full disk\n/out --op write,create --errno ENOSPC\n",
    )
    .unwrap();
    let m = TriefsMount::new(&["-o", &format!("faults={}", rules.display())]);
    let root = m.path();
    fs::create_dir(root.join("out")).unwrap();
    let e = fs::write(root.join("out/x"), b"1").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    fs::write(root.join("elsewhere"), b"1").unwrap();
    assert!(
        fault(root, &["list"])
            .stdout
            .contains("1 /out --op write,create --errno ENOSPC")
    );
    drop(m);

    fs::write(&rules, "/a --op read --errno EIO\n/b --op read\n").unwrap();
    let mnt = dir.path().join("m");
    fs::create_dir(&mnt).unwrap();
    let mut cmd = Command::new(triefs_bin());
    cmd.args(["-f", "-o", &format!("faults={}", rules.display())])
        .arg(&mnt);
    let out = run_timed(cmd, LIMIT);
    assert_one_line_exit(&out, 2, "bad rule file", &["line 2", "does nothing"]);
    let mut cmd = Command::new(triefs_bin());
    cmd.args(["-f", "-o", "faults=/nonexistent/rules"])
        .arg(&mnt);
    assert_one_line_exit(
        &run_timed(cmd, LIMIT),
        2,
        "missing rule file",
        &["/nonexistent/rules"],
    );
    assert!(!common::is_mounted(&mnt));
}

/// Bad requests are one-line errors, exit 2: rules that make no sense, a
/// mount without -o faults, not a triefs, another user.
#[test]
fn errors_are_one_line_and_other_users_are_refused() {
    let plain = TriefsMount::new(&["-o", "allow_other"]);
    let out = fault(
        plain.path(),
        &["add", "/", "--op", "read", "--errno", "EIO"],
    );
    assert_one_line_exit(&out, 2, "no -o faults", &["-o faults"]);

    let m = TriefsMount::new(&["-o", "faults,allow_other"]);
    let root = m.path();
    for (args, says) in [
        (
            &["add", "/", "--op", "reed", "--errno", "EIO"][..],
            "'reed'",
        ),
        (&["add", "/", "--op", "read"][..], "does nothing"),
        (
            &["add", "/", "--op", "read", "--errno", "ENOSYS"][..],
            "ENOSYS",
        ),
        (
            &["add", "/", "--op", "access", "--errno", "EIO"][..],
            "never asks",
        ),
        (&["clear", "99"][..], "no rule"),
    ] {
        assert_one_line_exit(&fault(root, args), 2, &format!("{args:?}"), &[says]);
    }
    let tmp = common::short_tempdir();
    let out = fault(tmp.path(), &["list"]);
    assert_one_line_exit(
        &out,
        2,
        "not a triefs",
        &["not the mount point of a triefs"],
    );

    add(root, "/x --op read --errno EIO");
    let bin = shared_binary();
    for args in [
        vec!["fault", "add", "/y", "--op", "read", "--errno", "EIO"],
        vec!["fault", "list"],
        vec!["fault", "clear"],
    ] {
        let mut cmd = as_nobody(&bin.path);
        cmd.args(&args[..2]).arg(root).args(&args[2..]);
        assert_one_line_exit(
            &run_timed(cmd, LIMIT),
            2,
            &format!("nobody {args:?}"),
            &["owner"],
        );
    }
    let list = fault(root, &["list"]).stdout;
    assert_eq!(list.lines().count(), 1, "nobody changed nothing: {list}");
    // One rule is there already: 63 more reach the limit of 64.
    for n in 1..64 {
        add(root, &format!("/r{n} --op read --errno EIO"));
    }
    let out = fault(root, &["add", "/z", "--op", "read", "--errno", "EIO"]);
    assert_one_line_exit(&out, 2, "65th rule", &["too many rules"]);
}

/// A rule added before the file exists fires on its creation and on
/// everything after; the kernel's cached "no such file" does not hide it.
#[test]
fn rules_on_paths_that_do_not_exist_yet() {
    let m = TriefsMount::new(&["-o", "faults"]);
    let root = m.path();
    // The kernel caches the missing name.
    assert!(fs::metadata(root.join("later")).is_err());
    assert!(fs::metadata(root.join("later")).is_err());
    add(root, "/later --op lookup --errno EUCLEAN");
    let e = fs::metadata(root.join("later")).unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(INJECTED),
        "the negative entry was forgotten"
    );
    clear(root);
    add(root, "/later --op mkdir,create --errno EROFS");
    let e = fs::create_dir(root.join("later")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    let e = fs::write(root.join("later"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
}

/// A prefix covers whole names: `/a` covers `/a/f`, not `/ab`.
#[test]
fn prefixes_cover_whole_names() {
    let m = TriefsMount::new(&["-o", "faults"]);
    let root = m.path();
    fs::create_dir(root.join("a")).unwrap();
    fs::write(root.join("a/f"), b"1").unwrap();
    fs::write(root.join("ab"), b"2").unwrap();
    add(root, "/a --op read --errno EIO");
    assert_eq!(fs::read(root.join("ab")).unwrap(), b"2");
    let e = fs::read(root.join("a/f")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
}

/// A covered file is opened for direct I/O, yet a program may still map
/// it shared (databases do): the mount asks for the kernel's
/// FUSE_DIRECT_IO_ALLOW_MMAP.
#[test]
fn covered_files_can_still_be_mapped() {
    let m = TriefsMount::new(&["-o", "faults"]);
    let root = m.path();
    let f = root.join("db");
    fs::write(&f, vec![7u8; 8192]).unwrap();
    add(root, "/db --op fsync --errno EIO");
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&f)
        .unwrap();
    // SAFETY: a fresh shared mapping of 8192 bytes of an open file; it is
    // read and written within its length and unmapped before the file
    // closes.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            8192,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(
            p,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        let b = p.cast::<u8>();
        assert_eq!(*b.add(100), 7);
        *b.add(100) = 9;
        assert_eq!(libc::munmap(p, 8192), 0);
    }
    // The rule still fires on fsync.
    // SAFETY: a valid fd.
    assert_eq!(unsafe { libc::fsync(file.as_raw_fd()) }, -1);
    assert_eq!(common::errno(), libc::EIO);
}

/// A rule on everything, with a long delay, can still be cleared: the
/// root's open and stat, through which the commands come, pass no rule.
#[test]
fn a_rule_on_everything_can_be_cleared() {
    let m = TriefsMount::new(&["-o", "faults"]);
    let root = m.path();
    fs::write(root.join("f"), b"1").unwrap();
    add(root, "/ --op all --errno EIO --delay-ms 600000");
    let t = Instant::now();
    assert!(fault(root, &["list"]).stdout.contains("--op all"));
    clear(root);
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    assert_eq!(fs::read(root.join("f")).unwrap(), b"1");
    add(root, "/ --op all --errno EIO");
    assert!(fs::read(root.join("f")).is_err());
    assert!(
        fs::read_dir(root).unwrap().next().unwrap().is_err(),
        "the root's listing fails"
    );
    clear(root);
}
