//! Command-line behaviour of the `triefs` binary: `--paths`, `-o` options,
//! daemon mode, clean exits on unmount and signals, and one-line errors.
//!
//! Every test mounts its own fresh triefs (or none, for error cases) and
//! cleans up by mount path in a guard, also when an assertion fails.
// Mount tests drive Linux: tmpfs as the oracle, Linux syscalls and tools.
#![cfg(target_os = "linux")]

mod common;

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    MountSpec, TriefsMount, Unmounts, is_mounted, mountinfo, short_tempdir, triefs_bin, unmount,
};

/// How long a daemon gets to exit after an unmount or a signal.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an invocation that must fail gets before it is killed.
const ERROR_TIMEOUT: Duration = Duration::from_secs(10);

/// A `triefs` command with RUST_LOG cleared, so log output cannot add lines.
fn triefs_cmd() -> Command {
    let mut cmd = Command::new(triefs_bin());
    cmd.env_remove("RUST_LOG");
    cmd
}

/// Asserts the invocation failed with exit code 2 and exactly one stderr
/// line, no panic, mentioning each of `mentions`.
fn assert_one_line_error(run: &common::Output, what: &str, mentions: &[&str]) {
    common::assert_one_line_exit(run, 2, what, mentions);
}

/// Runs `triefs [-f] ARGS`, in the foreground and detaching, and asserts
/// each is refused with a one-line error mentioning `mentions`; `check`
/// runs after each.
fn refused_both_ways(args: &[&OsStr], what: &str, mentions: &[&str], check: impl Fn()) {
    for foreground in [true, false] {
        let mut cmd = triefs_cmd();
        if foreground {
            cmd.arg("-f");
        }
        cmd.args(args);
        let run = common::run_timed(cmd, ERROR_TIMEOUT);
        let what = format!("{what} (foreground={foreground})");
        assert_one_line_error(&run, &what, mentions);
        check();
    }
}

/// Writes a `--paths` file into `dir` and returns its path.
fn write_paths_file(dir: &Path, contents: &[u8]) -> PathBuf {
    let p = dir.join("paths.txt");
    fs::write(&p, contents).expect("write paths file");
    p
}

/// Every entry under `root`, as sorted relative paths (`.` for the root),
/// using the real `find` tool.
fn find_relative(root: &Path) -> Vec<String> {
    let out = Command::new("find")
        .arg(".")
        .current_dir(root)
        .env("LC_ALL", "C")
        .output()
        .expect("run find");
    assert!(
        out.status.success(),
        "find failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

/// Non-directories under `root` (should be none for a --paths-only mount).
fn find_non_dirs(root: &Path) -> String {
    let out = Command::new("find")
        .args([".", "!", "-type", "d"])
        .current_dir(root)
        .output()
        .expect("run find");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts the mount is gone and the mount point is a plain, empty,
/// accessible directory again (no stale ENOTCONN mount).
fn assert_no_stale_mount(mnt: &Path) {
    assert!(!is_mounted(mnt), "{} is still mounted", mnt.display());
    let entries: Vec<_> = fs::read_dir(mnt)
        .unwrap_or_else(|e| panic!("mount point not readable after exit: {e}"))
        .collect();
    assert!(
        entries.is_empty(),
        "underlying mount point directory should be empty, has {} entries",
        entries.len()
    );
}

/// Unmounts with the command `unmount` (`umount`, `fusermount3 -u`), then
/// expects exit code 0 and no mount.
fn unmount_and_expect_clean_exit(m: &mut TriefsMount, unmount: &[&str]) {
    let what = unmount.join(" ");
    let out = Command::new(unmount[0])
        .args(&unmount[1..])
        .arg(m.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = m
        .wait_exit(EXIT_TIMEOUT)
        .unwrap_or_else(|| panic!("triefs did not exit after {what}"));
    assert_eq!(st.code(), Some(0), "exit status: {st}");
    assert_no_stale_mount(&m.mnt);
}

/// Sends `sig` to the triefs daemon, then expects exit code 0 and no mount.
fn signal_and_expect_clean_exit(m: &mut TriefsMount, sig: libc::c_int) {
    m.signal(sig);
    let st = m.wait_exit(EXIT_TIMEOUT).unwrap_or_else(|| {
        panic!("triefs did not exit within {EXIT_TIMEOUT:?} after signal {sig}")
    });
    assert_eq!(st.code(), Some(0), "exit status after signal {sig}: {st}");
    assert_no_stale_mount(&m.mnt);
}

// ---------------------------------------------------------------------------
// --paths
// ---------------------------------------------------------------------------

#[test]
fn paths_file_creates_exactly_the_listed_directories() {
    let tmp = short_tempdir();
    let pf = write_paths_file(
        tmp.path(),
        b"/\n/etc\n/tmp\n/tmp/whatever\n/var/www/mysite\n\nusr/lib\n",
    );
    let m = TriefsMount::new(&["--paths", pf.to_str().unwrap()]);
    let expected = [
        ".",
        "./etc",
        "./tmp",
        "./tmp/whatever",
        "./usr",
        "./usr/lib",
        "./var",
        "./var/www",
        "./var/www/mysite",
    ];
    assert_eq!(find_relative(m.path()), expected);
    assert_eq!(find_non_dirs(m.path()), "", "only directories expected");

    // They are ordinary, usable directories.
    fs::create_dir(m.path().join("tmp/whatever/new")).expect("mkdir inside a --paths dir");
    fs::write(m.path().join("var/www/mysite/index.html"), b"<h1>hi</h1>\n").expect("write");
    assert_eq!(
        fs::read(m.path().join("var/www/mysite/index.html")).unwrap(),
        b"<h1>hi</h1>\n"
    );
    fs::remove_dir(m.path().join("usr/lib")).expect("rmdir a --paths leaf");
    fs::remove_dir(m.path().join("usr")).expect("rmdir its now-empty parent");
    assert!(!m.path().join("usr").exists());
}

#[test]
fn paths_file_order_and_duplicates_do_not_matter() {
    let tmp = short_tempdir();
    // Children before parents, repeats, and a line that is only "/".
    let pf = write_paths_file(tmp.path(), b"/x/y/z\n/x/y\n/x\n/x/y/z\n/\n/x/w\n");
    let m = TriefsMount::new(&["--paths", pf.to_str().unwrap()]);
    assert_eq!(
        find_relative(m.path()),
        [".", "./x", "./x/w", "./x/y", "./x/y/z"]
    );
}

#[test]
fn paths_file_non_utf8_line_becomes_a_directory() {
    let tmp = short_tempdir();
    let pf = write_paths_file(tmp.path(), b"/caf\xff/sub\xfe\n/plain\n");
    let m = TriefsMount::new(&["--paths", pf.to_str().unwrap()]);

    let mut names: Vec<Vec<u8>> = fs::read_dir(m.path())
        .expect("read_dir root")
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    names.sort();
    assert_eq!(names, vec![b"caf\xff".to_vec(), b"plain".to_vec()]);

    let top = m.path().join(OsStr::from_bytes(b"caf\xff"));
    assert!(fs::symlink_metadata(&top).expect("stat caf\\xff").is_dir());
    let sub = top.join(OsStr::from_bytes(b"sub\xfe"));
    assert!(fs::symlink_metadata(&sub).expect("stat sub\\xfe").is_dir());
    let inner: Vec<_> = fs::read_dir(&top)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    assert_eq!(inner, vec![b"sub\xfe".to_vec()]);
}

#[test]
fn paths_from_stdin() {
    let mut m = MountSpec::new()
        .args(["--paths", "-"])
        .log()
        .piped_stdin()
        .spawn();
    {
        let mut stdin = m.take_stdin();
        stdin
            .write_all(b"/srv/data\n\nopt/app/bin\n/srv/data/cache\n")
            .expect("write paths to stdin");
        // Dropping closes stdin: EOF ends the list.
    }
    m.wait_mounted();
    assert_eq!(
        find_relative(m.path()),
        [
            ".",
            "./opt",
            "./opt/app",
            "./opt/app/bin",
            "./srv",
            "./srv/data",
            "./srv/data/cache",
        ]
    );
    assert_eq!(find_non_dirs(m.path()), "");
    let st = m
        .unmount_and_wait()
        .expect("triefs did not exit after umount");
    assert_eq!(st.code(), Some(0), "exit status: {st}");
}

#[test]
fn long_paths_lists_log_progress_not_every_path() {
    let mut m = MountSpec::new()
        .args(["-v", "--paths", "-"])
        .log()
        .piped_stdin()
        .spawn();
    {
        let mut stdin = m.take_stdin();
        let batch = |from: usize| -> String {
            (from..from + 5000)
                .map(|i| format!("/d{}/e{i}\n", i % 10))
                .collect()
        };
        stdin.write_all(batch(0).as_bytes()).expect("write paths");
        // A slow producer: progress is reported while the list streams in.
        std::thread::sleep(Duration::from_millis(1300));
        stdin
            .write_all(batch(5000).as_bytes())
            .expect("write paths");
    }
    m.wait_mounted();
    let log = m.log_text();
    let per_path = log
        .lines()
        .filter(|l| l.contains("Adding directory"))
        .count();
    assert_eq!(per_path, 1000, "per-path lines at info level:\n{log}");
    assert!(log.contains("the rest are logged at debug level"), "{log}");
    assert!(
        log.lines().any(|l| l.contains("paths added so far")),
        "no progress line:\n{log}"
    );
    assert!(log.contains("added 10000 paths from -"), "{log}");
    let st = m
        .unmount_and_wait()
        .expect("triefs did not exit after umount");
    assert_eq!(st.code(), Some(0), "exit status: {st}");
}

#[test]
fn paths_file_missing_is_a_one_line_error() {
    common::require_mount();
    let tmp = short_tempdir();
    let mnt = tmp.path().join("m");
    fs::create_dir(&mnt).unwrap();
    let _g = Unmounts(vec![mnt.clone()]);
    let missing = tmp.path().join("no-such-paths-file.txt");
    let args = [OsStr::new("--paths"), missing.as_os_str(), mnt.as_os_str()];
    refused_both_ways(
        &args,
        "--paths with missing file",
        &["no-such-paths-file.txt"],
        || {
            assert!(!is_mounted(&mnt), "must not mount when --paths fails");
        },
    );
}

// ---------------------------------------------------------------------------
// Clean exit on unmount and on signals
// ---------------------------------------------------------------------------

#[test]
fn exit_zero_after_umount() {
    let mut m = TriefsMount::new(&[]);
    fs::write(m.path().join("f"), b"x").unwrap();
    unmount_and_expect_clean_exit(&mut m, &["umount"]);
}

#[test]
fn exit_zero_after_fusermount3_u() {
    let mut m = TriefsMount::new(&[]);
    fs::create_dir(m.path().join("d")).unwrap();
    unmount_and_expect_clean_exit(&mut m, &["fusermount3", "-u"]);
}

#[test]
fn exit_zero_after_sigterm() {
    let mut m = TriefsMount::new(&[]);
    signal_and_expect_clean_exit(&mut m, libc::SIGTERM);
}

#[test]
fn exit_zero_after_sigint() {
    let mut m = TriefsMount::new(&[]);
    signal_and_expect_clean_exit(&mut m, libc::SIGINT);
}

#[test]
fn sigterm_after_writing_files_leaves_no_stale_mount() {
    let mut m = TriefsMount::new(&[]);
    fs::create_dir_all(m.path().join("a/b")).unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
    fs::write(m.path().join("a/b/data.bin"), &data).unwrap();
    fs::write(m.path().join("top.txt"), b"hello\n").unwrap();
    assert_eq!(fs::read(m.path().join("a/b/data.bin")).unwrap(), data);
    signal_and_expect_clean_exit(&mut m, libc::SIGTERM);
}

/// libfuse-style daemons detach the mount on SIGTERM even when it is busy;
/// the spec says SIGTERM unmounts and exits 0, so a held fd must not leave
/// the daemon hanging or the mount stale.
#[test]
fn sigterm_with_open_file_still_unmounts_and_exits_zero() {
    let mut m = TriefsMount::new(&[]);
    let mut f = fs::File::create(m.path().join("open.txt")).unwrap();
    f.write_all(b"partial").unwrap();
    signal_and_expect_clean_exit(&mut m, libc::SIGTERM);
    drop(f);
}

// ---------------------------------------------------------------------------
// Daemon mode
// ---------------------------------------------------------------------------

#[test]
fn daemon_mode_returns_zero_once_mount_is_live() {
    common::require_mount();
    let tmp = short_tempdir();
    let mnt = tmp.path().join("m");
    fs::create_dir(&mnt).unwrap();
    let pf = write_paths_file(tmp.path(), b"/ready/set\n");
    let guard = Unmounts(vec![mnt.clone()]);

    let mut cmd = triefs_cmd();
    cmd.arg("--paths").arg(&pf).arg(&mnt);
    let run = common::run_timed(cmd, Duration::from_secs(20));
    let st = run
        .status
        .unwrap_or_else(|| panic!("`triefs MNT` did not return within 20 s: {:?}", run.stderr));
    assert_eq!(
        st.code(),
        Some(0),
        "daemon mode exit: {st}; {:?}",
        run.stderr
    );

    // No polling: the mount must already be live when the parent returns.
    assert!(is_mounted(&mnt), "not mounted when `triefs MNT` returned");
    let ls = Command::new("ls").arg("-la").arg(&mnt).output().unwrap();
    assert!(
        ls.status.success(),
        "ls on the fresh mount failed: {}",
        String::from_utf8_lossy(&ls.stderr)
    );
    assert!(mnt.join("ready/set").is_dir(), "--paths not applied");
    fs::write(mnt.join("ready/file"), b"daemon\n").unwrap();
    assert_eq!(fs::read(mnt.join("ready/file")).unwrap(), b"daemon\n");

    let daemons = common::pids_with_arg(&mnt);
    assert!(
        !daemons.is_empty(),
        "no process with the mount point in its argv is serving the mount"
    );

    let out = Command::new("umount").arg(&mnt).output().unwrap();
    assert!(
        out.status.success(),
        "umount failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gone = common::wait_until(EXIT_TIMEOUT, || {
        !is_mounted(&mnt) && common::pids_with_arg(&mnt).is_empty()
    });
    if !gone {
        let left = common::pids_with_arg(&mnt);
        for pid in &left {
            // SAFETY: kill(2) of the daemons serving this test's mount.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        panic!(
            "after umount: mounted={}, daemon pids still alive={left:?}",
            is_mounted(&mnt)
        );
    }
    drop(guard);
    assert_no_stale_mount(&mnt);
}

// ---------------------------------------------------------------------------
// Mount point errors
// ---------------------------------------------------------------------------

#[test]
fn missing_mount_point_is_a_one_line_error() {
    common::require_mount();
    let tmp = short_tempdir();
    let mnt = tmp.path().join("does-not-exist");
    let _g = Unmounts(vec![mnt.clone()]);
    refused_both_ways(
        &[mnt.as_os_str()],
        "missing mount point",
        &["does-not-exist"],
        || {
            assert!(!mnt.exists(), "triefs must not create the mount point");
        },
    );
}

#[test]
fn regular_file_mount_point_is_a_one_line_error() {
    common::require_mount();
    let tmp = short_tempdir();
    let mnt = tmp.path().join("plainfile");
    fs::write(&mnt, b"not a dir\n").unwrap();
    let _g = Unmounts(vec![mnt.clone()]);
    let what = "regular file as mount point";
    refused_both_ways(&[mnt.as_os_str()], what, &["plainfile"], || {
        assert!(!is_mounted(&mnt), "must not mount over a regular file");
        assert_eq!(fs::read(&mnt).unwrap(), b"not a dir\n");
    });
}

#[test]
fn already_mounted_mount_point_is_a_one_line_error() {
    let t = common::Tmpfs::new();
    fs::write(t.path().join("marker"), b"tmpfs\n").unwrap();
    // Declared after the tmpfs so it drops first: removes anything triefs
    // may have stacked (and the tmpfs; Tmpfs's own drop is then a no-op).
    let _g = Unmounts(vec![t.path().to_path_buf()]);
    let what = "already-mounted mount point";
    let shown = t.path().to_str().unwrap();
    refused_both_ways(&[t.path().as_os_str()], what, &[shown], || {
        let info = mountinfo(t.path());
        assert_eq!(
            info.as_ref().map(|i| i.fstype.as_str()),
            Some("tmpfs"),
            "triefs stacked a mount over the tmpfs: {info:?}"
        );
        assert_eq!(fs::read(t.path().join("marker")).unwrap(), b"tmpfs\n");
    });
}

// ---------------------------------------------------------------------------
// -o options
// ---------------------------------------------------------------------------

#[test]
fn option_ro_makes_writes_fail_with_erofs() {
    let tmp = short_tempdir();
    let pf = write_paths_file(tmp.path(), b"/data/sub\n");
    let m = TriefsMount::new(&["-o", "ro", "--paths", pf.to_str().unwrap()]);
    // --paths directories are still there on a read-only mount.
    assert!(m.path().join("data/sub").is_dir());

    for p in ["newdir", "data/sub/newdir"] {
        let c = common::cpath(&m.path().join(p));
        let rc = unsafe { libc::mkdir(c.as_ptr(), 0o755) };
        let e = common::errno();
        assert_eq!(rc, -1, "mkdir {p} succeeded on a ro mount");
        assert_eq!(e, libc::EROFS, "mkdir {p}: errno {e}, want EROFS");
    }
    let err = fs::File::create(m.path().join("data/f")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "create: {err}");
    let err = fs::remove_dir(m.path().join("data/sub")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "rmdir: {err}");

    let info = mountinfo(m.path()).expect("mountinfo line");
    assert!(
        info.mount_opts.iter().any(|o| o == "ro"),
        "mount options lack ro: {info:?}"
    );
}

#[test]
fn option_fsname_and_subtype_show_in_mountinfo() {
    let m = TriefsMount::new(&["-o", "fsname=foo"]);
    let info = mountinfo(m.path()).expect("mountinfo line");
    assert_eq!(info.source, "foo", "{info:?}");
    assert!(info.fstype.starts_with("fuse"), "{info:?}");
    drop(m);

    // Repeated -o and comma lists combine.
    let m = TriefsMount::new(&["-o", "fsname=bar", "-o", "subtype=trie,noatime"]);
    let info = mountinfo(m.path()).expect("mountinfo line");
    assert_eq!(info.source, "bar", "{info:?}");
    assert_eq!(info.fstype, "fuse.trie", "{info:?}");
    assert!(info.mount_opts.iter().any(|o| o == "noatime"), "{info:?}");
}

#[test]
fn documented_options_are_accepted_and_applied() {
    // (arguments, flags that must then appear in the per-mount options,
    //  flags that must appear in the super-block options)
    let cases: &[(&[&str], &[&str], &[&str])] = &[
        (
            &["-o", "rw,noatime,nosuid,nodev,noexec"],
            &["rw", "noatime", "nosuid", "nodev", "noexec"],
            &[],
        ),
        (&["-o", "sync", "-o", "dirsync"], &[], &["sync", "dirsync"]),
        (&["-o", "atime,exec,suid,dev,async"], &["rw"], &[]),
        (
            &["-o", "default_permissions,allow_other"],
            &[],
            &["default_permissions", "allow_other"],
        ),
        (&["-o", "allow_root"], &[], &[]),
        (&["-v"], &[], &[]),
        (&["-q"], &[], &[]),
        (&["--threads", "4"], &[], &[]),
    ];
    for (args, mnt_flags, sb_flags) in cases {
        let m = TriefsMount::new(args);
        let info = mountinfo(m.path()).expect("mountinfo line");
        for f in *mnt_flags {
            assert!(
                info.mount_opts.iter().any(|o| o == f),
                "{args:?}: per-mount options lack {f}: {info:?}"
            );
        }
        for f in *sb_flags {
            assert!(
                info.super_opts.iter().any(|o| o == f),
                "{args:?}: super options lack {f}: {info:?}"
            );
        }
        // The mount works.
        fs::create_dir(m.path().join("d")).unwrap_or_else(|e| panic!("{args:?}: mkdir: {e}"));
        fs::write(m.path().join("d/f"), b"ok").unwrap_or_else(|e| panic!("{args:?}: write: {e}"));
        assert_eq!(fs::read(m.path().join("d/f")).unwrap(), b"ok", "{args:?}");
    }
}

#[test]
fn noexec_option_prevents_execution() {
    let m = TriefsMount::new(&["-o", "noexec"]);
    let script = m.path().join("s.sh");
    fs::write(&script, b"#!/bin/sh\necho ran\n").unwrap();
    let c = common::cpath(&script);
    assert_eq!(unsafe { libc::chmod(c.as_ptr(), 0o755) }, 0);
    let err = Command::new(&script).output().unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EACCES),
        "exec on noexec: {err}"
    );
}

#[test]
fn rust_log_does_not_break_mounting() {
    let mut m = MountSpec::new()
        .envs(&[("RUST_LOG", "debug")])
        .log()
        .mount();
    fs::write(m.path().join("f"), b"logged").unwrap();
    assert_eq!(fs::read(m.path().join("f")).unwrap(), b"logged");
    let st = m.unmount_and_wait().expect("no exit after umount");
    assert_eq!(st.code(), Some(0), "{st}");
    let log = m.log_text();
    assert!(
        log.contains("DEBUG"),
        "RUST_LOG=debug produced no debug log on stderr: {log:?}"
    );
}

#[test]
fn unknown_option_is_a_one_line_error() {
    common::require_mount();
    let tmp = short_tempdir();
    let mnt = tmp.path().join("m");
    fs::create_dir(&mnt).unwrap();
    let _g = Unmounts(vec![mnt.clone()]);
    for opts in [
        ["-f", "-o", "bogus"],
        ["-f", "-o", "ro,bogus"],
        ["-o", "bogus", "-q"],
    ] {
        let mut cmd = triefs_cmd();
        cmd.args(opts).arg(&mnt);
        let run = common::run_timed(cmd, ERROR_TIMEOUT);
        assert_one_line_error(&run, &format!("{opts:?}"), &["bogus"]);
        assert!(!is_mounted(&mnt), "{opts:?} mounted anyway");
    }
}

#[test]
fn help_exits_zero_and_mentions_paths() {
    let mut cmd = triefs_cmd();
    cmd.arg("--help");
    let run = common::run_timed(cmd, ERROR_TIMEOUT);
    let st = run.status.expect("--help did not exit");
    assert_eq!(st.code(), Some(0), "--help: {st}; stderr {:?}", run.stderr);
    assert!(run.stdout.contains("--paths"), "help: {}", run.stdout);
    assert!(run.stdout.contains("--foreground"), "help: {}", run.stdout);
    assert!(!run.stdout.contains("panicked"));
}

/// A detached daemon logs to --log-file (its stderr is gone).
#[test]
fn daemon_logs_to_log_file() {
    common::require_mount();
    let dir = common::short_tempdir();
    let mnt = dir.path().join("m");
    fs::create_dir(&mnt).unwrap();
    let log = dir.path().join("log");
    let st = Command::new(common::triefs_bin())
        .arg("-v")
        .arg("--log-file")
        .arg(&log)
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(common::is_mounted(&mnt));
    common::unmount(&mnt);
    let mut text = String::new();
    let logged = common::wait_until(Duration::from_secs(10), || {
        text = fs::read_to_string(&log).unwrap_or_default();
        text.contains("unmounted")
    });
    assert!(logged, "log: {text}");
    assert!(text.contains("mounted triefs on"), "{text}");
}

// ---------------------------------------------------------------------------
// Numeric -o values
// ---------------------------------------------------------------------------

/// What tmpfs makes of `-o KEY=VALUE`: `None` if it refuses it, else the
/// root's owner (uid=, gid=) or the statfs block or inode count.
fn tmpfs_reading(key: &str, value: &str) -> Option<u64> {
    let t = short_tempdir();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("{key}={value}"), "tmpfs"])
        .arg(t.path())
        .stderr(Stdio::null())
        .status()
        .expect("run mount");
    if !st.success() {
        return None;
    }
    let got = option_reading(key, t.path());
    unmount(t.path());
    Some(got)
}

fn option_reading(key: &str, mnt: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(mnt).expect("stat the mount");
    let s = common::statvfs(mnt);
    match key {
        "uid" => u64::from(m.uid()),
        "gid" => u64::from(m.gid()),
        "size" => s.f_blocks,
        _ => s.f_files,
    }
}

/// `size=`, `nr_inodes=`, `uid=` and `gid=` take exactly what tmpfs takes
/// and mean the same (percentages above 100, binary suffixes up to `e`,
/// hex and octal numbers), and refuse what tmpfs refuses ((uid_t)-1).
#[test]
fn numeric_options_read_as_tmpfs_reads_them() {
    common::require_mount();
    let cases: &[(&str, &[&str])] = &[
        (
            "size",
            &[
                "4096", "10k", "3M", "1g", "1t", "1p", "1e", "0x100000", "0X10k", "010", "200%",
                "1k%", "50%", "09", "1kb", "+5", "-1", "", "0x", "1.5g", "5 ",
            ],
        ),
        (
            "nr_inodes",
            &[
                "1k",
                "0x10",
                "18014398509481983",
                "18014398509481984",
                "1e",
                "1p",
                "7%",
            ],
        ),
        (
            "uid",
            &[
                "4294967294",
                "4294967295",
                "4294967296",
                "0x10",
                "010",
                "+5",
                "-1",
                "",
                "08",
            ],
        ),
        ("gid", &["4294967295", "65534", "0x1f"]),
    ];
    let tmp = short_tempdir();
    let mnt = tmp.path().join("m");
    fs::create_dir(&mnt).unwrap();
    let _g = Unmounts(vec![mnt.clone()]);
    for (key, values) in cases {
        for value in *values {
            let want = tmpfs_reading(key, value);
            let mut cmd = triefs_cmd();
            cmd.arg("-o").arg(format!("{key}={value}")).arg(&mnt);
            let run = common::run_timed(cmd, Duration::from_secs(20));
            let what = format!("-o {key}={value:?} (tmpfs: {want:?})");
            match want {
                None => assert_one_line_error(&run, &what, &[key]),
                Some(want) => {
                    common::assert_exit(&run, 0, &what);
                    let got = option_reading(key, &mnt);
                    unmount(&mnt);
                    assert_eq!(got, want, "{what}");
                }
            }
            assert!(!is_mounted(&mnt), "{what}: still mounted");
        }
    }
}

// ---------------------------------------------------------------------------
// Logging
// ---------------------------------------------------------------------------

/// The kernel asks for `security.capability` before every write, and `ls`
/// or `cp -a` for `security.selinux` and the POSIX ACLs; "no such
/// attribute" is the expected answer, not a failure, and is not logged as
/// one: nothing at the default level, and not among the failures that
/// debug logging (-vv) shows.
#[test]
fn expected_xattr_probes_are_not_logged_as_failures() {
    for verbosity in [None, Some("-vv")] {
        let mut m = MountSpec::new().args(verbosity).log().mount();
        let f = m.path().join("f");
        fs::write(&f, b"one").unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(&f)
            .unwrap()
            .write_all(b"two")
            .unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"onetwo");
        fs::create_dir(m.path().join("d")).unwrap();
        let ls = Command::new("ls")
            .arg("-la")
            .arg(m.path())
            .output()
            .unwrap();
        assert!(ls.status.success());
        let cp = Command::new("cp")
            .arg("-a")
            .arg(&f)
            .arg(m.path().join("d/g"))
            .status()
            .unwrap();
        assert!(cp.success());
        for target in [&f, &m.path().join("d")] {
            for name in [
                "security.capability",
                "security.selinux",
                "system.posix_acl_access",
                "system.posix_acl_default",
            ] {
                let (c, n) = (common::cpath(target), std::ffi::CString::new(name).unwrap());
                let mut buf = [0u8; 256];
                // SAFETY: valid C strings and buffer.
                let rc = unsafe {
                    libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
                };
                assert_eq!((rc, common::errno()), (-1, libc::ENODATA), "{name}");
            }
        }
        let st = m.unmount_and_wait().expect("daemon exits");
        assert_eq!(st.code(), Some(0));
        let log = m.log_text();
        let noisy: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains(" ERROR ")
                    || l.contains(" WARN ")
                    || l.contains("No data available")
                    || l.contains("Operation not supported")
            })
            .collect();
        assert!(
            noisy.is_empty(),
            "{verbosity:?}: probes logged as failures: {noisy:#?}"
        );
        if verbosity.is_none() {
            assert_eq!(log.trim(), "", "default level logs nothing");
        } else {
            assert!(
                log.contains("GETXATTR"),
                "-vv shows the requests themselves"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Subcommands and argument errors
// ---------------------------------------------------------------------------

/// `--help` of every command (and `--version`) goes to stdout with exit
/// 0; `ls-prefix --help` used to be taken for a mount point.
#[test]
fn every_command_has_help_on_stdout() {
    let cases: &[(&[&str], &str)] = &[
        (&["--help"], "Usage: triefs [OPTIONS] <MOUNTPOINT>"),
        (&["-h"], "Usage: triefs"),
        (&["--version"], "triefs "),
        (&["ls-prefix", "--help"], "Usage: triefs ls-prefix"),
        (&["ls-prefix", "-h"], "--unsorted"),
        (&["crash", "--help"], "Usage: triefs crash"),
        (&["image", "--help"], "Usage: triefs image"),
        (&["image", "info", "--help"], "Usage: triefs image info"),
        (&["image", "ls", "-h"], "Usage: triefs image ls"),
        (&["image", "check", "--help"], "Usage: triefs image check"),
        (&["image", "help", "check"], "Usage: triefs image check"),
    ];
    for (args, want) in cases {
        let mut cmd = triefs_cmd();
        cmd.args(*args);
        let run = common::run_timed(cmd, ERROR_TIMEOUT);
        let st = run.status.expect("did not exit");
        assert_eq!(
            st.code(),
            Some(0),
            "{args:?}: {st}; stderr {:?}",
            run.stderr
        );
        assert!(
            run.stdout.contains(want),
            "{args:?}: stdout {:?}",
            run.stdout
        );
        assert_eq!(run.stderr, "", "{args:?}");
    }
    // The main help lists the image= option and the commands.
    let mut cmd = triefs_cmd();
    cmd.arg("--help");
    let help = common::run_timed(cmd, ERROR_TIMEOUT).stdout;
    for want in [
        "image=FILE",
        "triefs ls-prefix",
        "triefs image",
        "./image",
        "triefs crash",
        "crash ",
    ] {
        assert!(help.contains(want), "--help lacks {want:?}");
    }
}

/// Every mistake on the command line, the argument parser's included, is
/// one line on stderr and exit 2; an unknown flag is an error, not a path.
#[test]
fn argument_errors_are_one_line() {
    let tmp = short_tempdir();
    let mnt = tmp.path().join("m");
    fs::create_dir(&mnt).unwrap();
    let _g = Unmounts(vec![mnt.clone()]);
    let m = mnt.to_str().unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (&["--bogus", m], &["unexpected argument '--bogus'"]),
        (&[], &["MOUNTPOINT"]),
        (&["--threads", "x", m], &["--threads"]),
        (&["--threads", "0", m], &["--threads"]),
        (&["-f", m, "extra"], &["extra"]),
        (&["--force-new-image", m], &["--force-new-image", "image"]),
        (&["--save-interval", "5", m], &["--save-interval", "image"]),
        (
            &["ls-prefix", "--bogus", m],
            &["unexpected argument '--bogus'"],
        ),
        (&["ls-prefix", "-x", m], &["unexpected argument '-x'"]),
        (&["ls-prefix", m, "a", "b"], &["'b'"]),
        (&["ls-prefix"], &["MOUNTPOINT", "./ls-prefix"]),
        (&["crash"], &["MOUNTPOINT", "./crash"]),
        (&["crash", m, "b"], &["'b'"]),
        (&["crash", "--bogus", m], &["unexpected argument '--bogus'"]),
        (&["image"], &["info, ls, check", "./image"]),
        (&["image", "frob", "x"], &["frob"]),
        (&["image", "info"], &["FILE"]),
        (
            &["image", "info", "--bogus", "x"],
            &["unexpected argument '--bogus'"],
        ),
        (&["image", "check", "a", "b"], &["'b'"]),
        (&["image", "--bogus"], &["--bogus"]),
    ];
    for (args, mentions) in cases {
        let mut cmd = triefs_cmd();
        cmd.args(*args);
        let run = common::run_timed(cmd, ERROR_TIMEOUT);
        assert_one_line_error(&run, &format!("{args:?}"), mentions);
        assert!(!is_mounted(&mnt), "{args:?} mounted");
    }
}

/// A mount point named like a command is mounted by writing it as a path
/// (`./image`) or after `--`; the command word alone says so.
#[test]
fn mount_point_named_like_a_command() {
    common::require_mount();
    let tmp = short_tempdir();
    for name in ["image", "ls-prefix", "crash"] {
        let mnt = tmp.path().join(name);
        fs::create_dir(&mnt).unwrap();
        let _g = Unmounts(vec![mnt.clone()]);
        for args in [
            vec![format!("./{name}")],
            vec!["--".to_string(), name.to_string()],
        ] {
            let mut cmd = triefs_cmd();
            cmd.args(&args).current_dir(tmp.path());
            let run = common::run_timed(cmd, Duration::from_secs(20));
            common::assert_exit(&run, 0, &format!("triefs {args:?}"));
            assert!(is_mounted(&mnt), "triefs {args:?} did not mount {name}");
            fs::write(mnt.join("f"), b"x").unwrap();
            unmount(&mnt);
            common::wait_until(EXIT_TIMEOUT, || common::pids_with_arg(&mnt).is_empty());
            assert!(!is_mounted(&mnt));
        }
        let mut cmd = triefs_cmd();
        cmd.arg(name).current_dir(tmp.path());
        let run = common::run_timed(cmd, ERROR_TIMEOUT);
        assert_one_line_error(&run, name, &[&format!("triefs ./{name}")]);
    }
}

/// The mount(8) helper's first argument is the source, which may be
/// called `image` or `ls-prefix` like a command.
#[test]
fn mount_helper_source_named_like_a_command() {
    common::require_mount();
    let tmp = short_tempdir();
    let helper = tmp.path().join("mount.fuse.triefs");
    std::os::unix::fs::symlink(triefs_bin(), &helper).unwrap();
    for source in ["image", "ls-prefix"] {
        let mnt = tmp.path().join(format!("m-{source}"));
        fs::create_dir(&mnt).unwrap();
        let _g = Unmounts(vec![mnt.clone()]);
        let mut cmd = Command::new(&helper);
        cmd.arg(source).arg(&mnt).args(["-o", "rw,noauto,size=1m"]);
        let run = common::run_timed(cmd, Duration::from_secs(20));
        common::assert_exit(&run, 0, &format!("helper with source {source}"));
        let info = mountinfo(&mnt).expect("mounted through the helper");
        assert_eq!(info.source, source, "{info:?}");
        unmount(&mnt);
    }
}

// ---------------------------------------------------------------------------
// A dead daemon's mount, still busy
// ---------------------------------------------------------------------------

/// Kills a child by PID and reaps it on drop.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The commands quoted in backticks in `line`.
fn backticked(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

/// After a SIGKILL with a shell still inside the mount, plain `umount`
/// answers "busy"; the stale-mount error gives root the one command that
/// works, and it does.
#[test]
fn stale_busy_mount_error_gives_roots_command() {
    let mut m = TriefsMount::new(&[]);
    let mnt = m.mnt.clone();
    let _g = Unmounts(vec![mnt.clone()]);
    let inside = KillOnDrop(
        Command::new("sleep")
            .arg("600")
            .current_dir(&mnt)
            .spawn()
            .expect("a process inside the mount"),
    );
    m.sigkill();

    let mut cmd = triefs_cmd();
    cmd.arg("-f").arg(&mnt);
    let run = common::run_timed(cmd, ERROR_TIMEOUT);
    assert_one_line_error(&run, "triefs on a stale mount", &["stale"]);
    let advice = backticked(&run.stderr);
    let want = format!("umount -l {}", mnt.display());
    assert_eq!(advice, [want.as_str()], "{:?}", run.stderr);
    let busy = Command::new("umount")
        .arg(&mnt)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(
        !busy.success(),
        "plain umount of the busy stale mount worked"
    );
    let st = Command::new("sh")
        .arg("-c")
        .arg(advice[0])
        .status()
        .unwrap();
    assert!(st.success(), "`{}` failed", advice[0]);
    assert!(!is_mounted(&mnt));
    drop(inside);
    // And the mount point works again.
    let mut cmd = triefs_cmd();
    cmd.arg(&mnt);
    let run = common::run_timed(cmd, Duration::from_secs(20));
    common::assert_exit(&run, 0, "triefs on the cleared mount point");
    assert!(is_mounted(&mnt));
    unmount(&mnt);
}

/// A user's dead mount, still busy: the error names `fusermount3 -uz`
/// (users cannot use umount, and `fusermount3 -u` answers "busy"), and it
/// works for them. A dead mount of someone else names who can clear it.
/// The dead mounts are made directly with mount(2) for uid nobody, whose
/// connection is then closed: what a killed daemon leaves behind.
#[test]
fn stale_busy_mount_error_gives_a_users_command() {
    common::require_mount();
    let bin = common::shared_binary();
    let tmp = common::short_tempdir_mode(0o755);
    for (owner, allow_other) in [(common::NOBODY, false), (0, true)] {
        let mnt = tmp.path().join(format!("m{owner}"));
        fs::create_dir(&mnt).unwrap();
        let _g = Unmounts(vec![mnt.clone()]);
        let (c_mnt, fuse) = (common::cpath(&mnt), common::cpath(Path::new("/dev/fuse")));
        // SAFETY: plain open(2) of /dev/fuse.
        let fd = unsafe { libc::open(fuse.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        assert!(fd >= 0, "open /dev/fuse");
        let mut data = format!("fd={fd},rootmode=40000,user_id={owner},group_id={owner}");
        if allow_other {
            data.push_str(",allow_other");
        }
        let data = std::ffi::CString::new(data).unwrap();
        // SAFETY: valid C strings; a FUSE mount of our own device fd.
        let rc = unsafe {
            libc::mount(
                c"dead".as_ptr(),
                c_mnt.as_ptr(),
                c"fuse.triefs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                data.as_ptr().cast(),
            )
        };
        assert_eq!(rc, 0, "mount: {}", std::io::Error::last_os_error());
        // What keeps it busy (a shell's cwd would do the same).
        let held = fs::File::options()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(&mnt)
            .expect("O_PATH open of the mount");
        // SAFETY: closing our own descriptor: the connection dies.
        unsafe { libc::close(fd) };

        let mut cmd = common::as_nobody(&bin.path);
        cmd.arg("-f").arg(&mnt);
        let run = common::run_timed(cmd, ERROR_TIMEOUT);
        assert_one_line_error(&run, "a user's triefs on a stale mount", &["stale"]);
        let advice = backticked(&run.stderr);
        let m = mnt.display();
        if owner == common::NOBODY {
            let want = format!("fusermount3 -uz {m}");
            assert_eq!(advice, [want.as_str()], "{:?}", run.stderr);
            let mut plain = common::as_nobody(Path::new("fusermount3"));
            let plain = plain
                .arg("-u")
                .arg(&mnt)
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(!plain.success(), "fusermount3 -u of a busy mount worked");
            let mut lazy = common::as_nobody(Path::new("fusermount3"));
            let lazy = lazy.arg("-uz").arg(&mnt).status().unwrap();
            assert!(lazy.success(), "`{}` failed", advice[0]);
            assert!(!is_mounted(&mnt));
        } else {
            assert!(run.stderr.contains("mounted by uid 0"), "{:?}", run.stderr);
            let want = format!("umount -l {m}");
            assert!(advice.contains(&want.as_str()), "{:?}", run.stderr);
        }
        drop(held);
    }
}
