//! `triefs crash` on a mount with `-o crash`: programs write with real
//! system calls (write, fsync, fdatasync, fsync of a directory, rename,
//! O_SYNC), the mount loses power, and exactly what was synced is left.
//! The oracle is a tmpfs on which only the durable steps were done
//! (docs/crash.md says which those are).
// Mount tests drive Linux syscalls and tools.
#![cfg(target_os = "linux")]

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{
    MountSpec, Output, Tmpfs, TriefsMount, as_nobody, assert_exit, assert_one_line_exit, run_timed,
    sh, shared_binary, statvfs, triefs_bin,
};

const LIMIT: Duration = Duration::from_secs(60);

fn crash_cmd(mnt: &Path) -> Output {
    let mut cmd = Command::new(triefs_bin());
    cmd.arg("crash").arg(mnt);
    run_timed(cmd, LIMIT)
}

/// Crashes the mount; returns the summary line.
#[track_caller]
fn crash(mnt: &Path) -> String {
    let out = crash_cmd(mnt);
    assert_exit(&out, 0, "triefs crash");
    assert!(out.stdout.starts_with("crashed "), "{:?}", out.stdout);
    out.stdout
}

fn mount() -> TriefsMount {
    MountSpec::new()
        .args(["-o", "crash"])
        .envs(&[("TRIEFS_CHECK", "1")])
        .mount()
}

/// fsync of a directory, opened `O_RDONLY | O_DIRECTORY`.
fn sync_dir(p: &Path) {
    let d = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(p)
        .unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    d.sync_all()
        .unwrap_or_else(|e| panic!("fsync {}: {e}", p.display()));
}

fn write_file(p: &Path, data: &[u8]) -> File {
    let mut f = File::create(p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
    f.write_all(data).unwrap();
    f
}

/// What a crash must keep and what it may not show: names, types, modes,
/// sizes, link counts, symlink targets, contents, extended attributes
/// (times change with every request, so they are left out).
fn listing(root: &Path) -> String {
    sh(
        root,
        "find . -printf '%p %y %m %s %n %l\\n' | sort; \
         find . -type f -exec md5sum {} + | sort; \
         getfattr -R -d -m - . 2>/dev/null | grep -v '^#' | sort",
    )
}

#[test]
fn exactly_what_was_synced_survives_as_on_a_tmpfs_given_only_the_durable_steps() {
    let mut m = mount();
    let r = m.path();
    // Durable: a file synced with fsync, one with fdatasync, a directory.
    write_file(&r.join("synced"), b"synced data\n")
        .sync_all()
        .unwrap();
    let f = write_file(&r.join("datasynced"), &vec![b'd'; 10_000]);
    f.sync_data().unwrap();
    fs::create_dir(r.join("dir")).unwrap();
    let x = write_file(&r.join("dir/inner"), b"inner\n");
    xattr(&r.join("dir/inner"), "user.k", "v1");
    x.sync_all().unwrap();
    drop(x);
    sync_dir(&r.join("dir"));
    std::os::unix::fs::symlink("synced", r.join("link")).unwrap();
    fs::hard_link(r.join("synced"), r.join("hard")).unwrap();
    write_file(&r.join("named-only"), b"never synced\n");
    sync_dir(r);
    // Not durable: later data, attributes, xattrs and names.
    let mut f = f;
    f.write_all(b"appended, not synced").unwrap();
    drop(f);
    fs::set_permissions(r.join("synced"), fs::Permissions::from_mode(0o600)).unwrap();
    xattr(&r.join("dir/inner"), "user.k", "v2");
    xattr(&r.join("dir/inner"), "user.new", "n");
    write_file(&r.join("dir/unsynced-name"), b"x")
        .sync_all()
        .unwrap();
    fs::remove_file(r.join("hard")).unwrap();
    fs::write(r.join("synced"), b"overwritten, not synced").unwrap();
    crash(r);

    let t = Tmpfs::new();
    let o = t.path();
    fs::write(o.join("synced"), b"synced data\n").unwrap();
    fs::write(o.join("datasynced"), vec![b'd'; 10_000]).unwrap();
    fs::create_dir(o.join("dir")).unwrap();
    fs::write(o.join("dir/inner"), b"inner\n").unwrap();
    xattr(&o.join("dir/inner"), "user.k", "v1");
    std::os::unix::fs::symlink("synced", o.join("link")).unwrap();
    fs::hard_link(o.join("synced"), o.join("hard")).unwrap();
    // A durable name of a file never synced: the file as it was created.
    fs::write(o.join("named-only"), b"").unwrap();
    let want = listing(o);
    assert_eq!(listing(r), want);
    assert!(want.contains("./hard f 644 12 2"), "{want}");
    // After the crash everything is durable: a second one changes nothing.
    let line = crash(r);
    assert!(line.contains(" 0 inodes reverted, 0 lost"), "{line}");
    assert_eq!(listing(r), want);
    let st = m.unmount_and_wait().expect("daemon exits");
    assert!(st.success(), "consistency check at unmount failed: {st}");
}

fn xattr(p: &Path, name: &str, value: &str) {
    let st = Command::new("setfattr")
        .args(["-n", name, "-v", value])
        .arg(p)
        .status()
        .expect("run setfattr");
    assert!(st.success(), "setfattr {name} on {}", p.display());
}

#[test]
fn write_then_rename_without_fsync_keeps_the_name_and_loses_the_data() {
    let m = mount();
    let r = m.path();
    write_file(&r.join("config"), b"version 1\n")
        .sync_all()
        .unwrap();
    sync_dir(r);
    // The classic bug: a new version renamed over the old one, the
    // directory synced, the file not.
    write_file(&r.join("config.tmp"), b"version 2\n");
    fs::rename(r.join("config.tmp"), r.join("config")).unwrap();
    sync_dir(r);
    crash(r);
    assert_eq!(
        fs::read(r.join("config")).unwrap(),
        b"",
        "name kept, data lost"
    );
    assert!(!r.join("config.tmp").exists());
    // The correct pattern: fsync the file, rename, fsync the directory.
    write_file(&r.join("config.tmp"), b"version 3\n")
        .sync_all()
        .unwrap();
    fs::rename(r.join("config.tmp"), r.join("config")).unwrap();
    sync_dir(r);
    crash(r);
    assert_eq!(fs::read(r.join("config")).unwrap(), b"version 3\n");
    // Without the directory's fsync the rename is not durable: the old
    // version stays, and the synced new file keeps its old name.
    write_file(&r.join("config.tmp"), b"version 4\n")
        .sync_all()
        .unwrap();
    sync_dir(r);
    fs::rename(r.join("config.tmp"), r.join("config")).unwrap();
    crash(r);
    assert_eq!(fs::read(r.join("config")).unwrap(), b"version 3\n");
    assert_eq!(fs::read(r.join("config.tmp")).unwrap(), b"version 4\n");
}

#[test]
fn a_rename_between_directories_is_durable_in_both_or_in_neither() {
    let m = mount();
    let r = m.path();
    for sync in ["from", "to", "none"] {
        sh(r, "rm -rf from to && mkdir from to && echo x > from/x");
        write_file(&r.join("from/x"), b"x\n").sync_all().unwrap();
        sync_dir(&r.join("from"));
        sync_dir(&r.join("to"));
        sync_dir(r);
        fs::rename(r.join("from/x"), r.join("to/y")).unwrap();
        if sync != "none" {
            sync_dir(&r.join(sync));
        }
        crash(r);
        let (old, new) = (r.join("from/x").exists(), r.join("to/y").exists());
        if sync == "none" {
            assert!(old && !new, "not synced: the old name only");
        } else {
            assert!(!old && new, "{sync} synced: the new name only");
            assert_eq!(fs::read(r.join("to/y")).unwrap(), b"x\n");
        }
    }
}

#[test]
fn mkdir_p_is_durable_only_when_each_level_is_synced() {
    let m = mount();
    let r = m.path();
    fs::create_dir_all(r.join("a/b/c")).unwrap();
    write_file(&r.join("a/b/c/f"), b"deep\n")
        .sync_all()
        .unwrap();
    for d in ["a/b/c", "a/b", "a"] {
        sync_dir(&r.join(d));
    }
    // The root was not synced: nothing of it.
    crash(r);
    assert_eq!(sh(r, "find . | sort"), ".\n");
    fs::create_dir_all(r.join("a/b/c")).unwrap();
    write_file(&r.join("a/b/c/f"), b"deep\n")
        .sync_all()
        .unwrap();
    for d in ["a/b/c", "a/b", "a", "."] {
        sync_dir(&r.join(d));
    }
    crash(r);
    assert_eq!(fs::read(r.join("a/b/c/f")).unwrap(), b"deep\n");
}

#[test]
fn o_sync_and_o_dsync_writes_are_durable() {
    let m = mount();
    let r = m.path();
    for (name, flag) in [("osync", libc::O_SYNC), ("odsync", libc::O_DSYNC)] {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(flag)
            .open(r.join(name))
            .unwrap();
        sync_dir(r);
        f.write_all(b"written with a sync flag\n").unwrap();
    }
    // The control: a plain write is lost.
    let mut plain = write_file(&r.join("plain"), b"");
    sync_dir(r);
    plain.write_all(b"plain\n").unwrap();
    crash(r);
    for name in ["osync", "odsync"] {
        assert_eq!(
            fs::read(r.join(name)).unwrap(),
            b"written with a sync flag\n",
            "{name}"
        );
    }
    assert_eq!(fs::read(r.join("plain")).unwrap(), b"");
}

#[test]
fn no_kernel_cache_shows_the_lost_state() {
    let m = mount();
    let r = m.path();
    write_file(&r.join("f"), &vec![b'a'; 20_000])
        .sync_all()
        .unwrap();
    fs::create_dir(r.join("d")).unwrap();
    write_file(&r.join("back"), b"").sync_all().unwrap();
    sync_dir(r);
    fs::remove_file(r.join("back")).unwrap();
    // Unsynced: new contents, size, mode, a new name, an unlinked name;
    // all read, stat'ed and listed so that the kernel caches them.
    fs::write(r.join("f"), b"short").unwrap();
    fs::set_permissions(r.join("f"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(r.join("d/new"), b"n").unwrap();
    assert_eq!(fs::read(r.join("f")).unwrap(), b"short");
    assert_eq!(fs::metadata(r.join("f")).unwrap().len(), 5);
    assert_eq!(sh(r, "ls d"), "new\n");
    assert!(r.join("d/new").exists());
    // A name cached as missing.
    assert!(!r.join("back").exists());
    let mut held = File::open(r.join("f")).unwrap();
    crash(r);
    let meta = fs::metadata(r.join("f")).unwrap();
    assert_eq!(
        (meta.len(), meta.permissions().mode() & 0o777),
        (20_000, 0o644)
    );
    assert_eq!(fs::read(r.join("f")).unwrap(), vec![b'a'; 20_000]);
    let mut via_held = Vec::new();
    held.read_to_end(&mut via_held).unwrap();
    assert_eq!(
        via_held,
        vec![b'a'; 20_000],
        "an open descriptor reads the durable data"
    );
    assert_eq!(sh(r, "ls d"), "");
    assert!(!r.join("d/new").exists());
    assert!(r.join("back").exists(), "the durable name is back");
}

#[test]
fn an_open_descriptor_of_a_file_the_crash_removes_keeps_working() {
    let m = mount();
    let r = m.path();
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(r.join("tmp"))
        .unwrap();
    f.write_all(b"open file").unwrap();
    f.sync_all().unwrap();
    // Its name was never durable: it goes, the descriptor stays.
    crash(r);
    assert!(!r.join("tmp").exists());
    f.write_all(b", still writable").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "open file, still writable");
    // A working directory the crash removes: as after a checkpoint
    // restore, it stays usable as an unlinked directory.
    fs::create_dir(r.join("cwd")).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd cwd && {} crash {} >/dev/null && ls -a . && pwd >/dev/null; echo rc=$?",
            triefs_bin(),
            r.display()
        ))
        .current_dir(r)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.ends_with("rc=0\n"), "{stdout} {:?}", out.stderr);
    assert!(!r.join("cwd").exists());
}

#[test]
fn refusals_are_one_line_with_exit_2() {
    let plain = TriefsMount::new(&[]);
    let out = crash_cmd(plain.path());
    assert_one_line_exit(&out, 2, "without -o crash", &["-o crash"]);
    let out = crash_cmd(Path::new("/proc"));
    assert_one_line_exit(&out, 2, "not triefs", &["not the mount point of a triefs"]);
    let m = mount();
    fs::write(m.path().join("f"), b"x").unwrap();
    let bin = shared_binary();
    let mut cmd = as_nobody(&bin.path);
    cmd.arg("crash").arg(m.path());
    let out = run_timed(cmd, LIMIT);
    assert_one_line_exit(&out, 2, "nobody", &["only the mount's owner and root"]);
    assert!(m.path().join("f").exists(), "nothing was lost");
}

#[test]
fn verbose_crash_reports_the_time() {
    let m = mount();
    let mut cmd = Command::new(triefs_bin());
    cmd.arg("crash").arg(m.path()).env("TRIEFS_VERBOSE", "1");
    let out = run_timed(cmd, LIMIT);
    assert_exit(&out, 0, "crash");
    assert!(out.stderr.contains("triefs: crash in "), "{:?}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 1);
}

#[test]
fn crashes_racing_writers_that_fsync_keep_the_namespace_consistent() {
    let mut m = mount();
    let root = m.path().to_path_buf();
    sh(&root, "mkdir -p a b");
    sync_dir(&root);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3u64 {
        let (root, stop) = (root.clone(), stop.clone());
        writers.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let dir = root.join(if (n + w).is_multiple_of(2) { "a" } else { "b" });
                let p = dir.join(format!("w{w}-{}", n % 20));
                if let Ok(mut f) = File::create(&p) {
                    let _ = f.write_all(&vec![b'x'; 1000 + (n as usize % 9000)]);
                    if n.is_multiple_of(3) {
                        let _ = f.sync_all();
                    }
                }
                let _ = fs::rename(&p, root.join("b").join(format!("r{w}-{}", n % 7)));
                if n.is_multiple_of(5) {
                    let _ = File::open(&dir).and_then(|d| d.sync_all());
                }
                if n.is_multiple_of(4) {
                    let _ = fs::remove_file(root.join("a").join(format!("w{w}-{}", (n + 3) % 20)));
                }
                n += 1;
            }
            n
        }));
    }
    for _ in 0..20 {
        crash(&root);
        std::thread::sleep(Duration::from_millis(15));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let ops: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(ops > 20, "the writers ran ({ops} rounds)");
    crash(&root);
    // Everything left is readable, and after the final crash durable.
    sh(&root, "find . -type f -exec cat {} + > /dev/null");
    let before = listing(&root);
    crash(&root);
    assert_eq!(listing(&root), before);
    let st = m.unmount_and_wait().expect("daemon exits");
    assert!(st.success(), "consistency check at unmount failed: {st}");
}

/// Bytes of file data in use, as `df` shows them.
fn used(p: &Path) -> u64 {
    let s = statvfs(p);
    (s.f_blocks - s.f_bfree) * s.f_frsize
}

#[test]
fn pages_only_the_durable_state_holds_count_in_df_and_against_size() {
    let m = MountSpec::new()
        .args(["-o", "crash,size=1m"])
        .envs(&[("TRIEFS_CHECK", "1")])
        .mount();
    let r = m.path();
    let base = used(r);
    let mut f = write_file(&r.join("f"), &vec![1; 600 << 10]);
    f.sync_all().unwrap();
    sync_dir(r);
    assert_eq!(used(r) - base, 600 << 10);
    // Rewriting needs new pages while the durable state keeps the old
    // ones: only 424 KiB fit.
    f.seek(SeekFrom::Start(0)).unwrap();
    let e = f.write_all(&vec![2; 600 << 10]).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    assert_eq!(used(r) - base, 1 << 20);
    // The fsync makes the new pages durable and frees the old ones.
    f.sync_all().unwrap();
    assert_eq!(used(r) - base, 600 << 10);
    drop(f);
    // A durable name keeps a removed file's pages until its removal is
    // durable (the kernel's reference to the closed file also keeps them
    // until its FORGET arrives, asynchronously: hence the wait below).
    fs::remove_file(r.join("f")).unwrap();
    assert_eq!(used(r) - base, 600 << 10);
    sync_dir(r);
    let freed = common::wait_until(Duration::from_secs(10), || used(r) == base);
    assert!(freed, "pages still used: {}", used(r) - base);
    crash(r);
    assert!(!r.join("f").exists());
}

#[test]
fn the_fixture_crashes_too() {
    let t = triefs::fixture::TempMount::builder()
        .crash(true)
        .mount()
        .unwrap();
    let kept = write_file(&t.path().join("kept"), b"kept");
    kept.sync_all().unwrap();
    sync_dir(t.path());
    fs::write(t.path().join("lost"), b"x").unwrap();
    fs::remove_file(t.path().join("kept")).unwrap();
    let c = t.crash().unwrap();
    assert_eq!((c.lost, c.names_back), (1, 1), "{c:?}");
    assert_eq!(fs::read(t.path().join("kept")).unwrap(), b"kept");
    assert!(!t.path().join("lost").exists());
    drop(kept);
    t.unmount().unwrap();
    let plain = triefs::fixture::TempMount::new().unwrap();
    let e = plain.crash().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP));
    plain.unmount().unwrap();
}

/// With `-o faults` too: an `fsync` a fault rule fails records no sync
/// point, so the data it should have made durable is lost (what a program
/// that ignores a failed `fsync` would meet on a failing disk).
#[test]
fn a_failed_fsync_makes_nothing_durable() {
    let m = MountSpec::new()
        .args(["-o", "faults,crash"])
        .envs(&[("TRIEFS_CHECK", "1")])
        .mount();
    let r = m.path();
    write_file(&r.join("a"), b"one\n").sync_all().unwrap();
    sync_dir(r);
    let mut cmd = Command::new(triefs_bin());
    cmd.args(["fault", "add"])
        .arg(r)
        .args(["/a", "--op", "fsync", "--errno", "EIO"]);
    assert_exit(&run_timed(cmd, LIMIT), 0, "fault add");
    let mut f = OpenOptions::new().append(true).open(r.join("a")).unwrap();
    f.write_all(b"two\n").unwrap();
    let e = f.sync_all().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    drop(f);
    crash(r);
    assert_eq!(fs::read(r.join("a")).unwrap(), b"one\n");
}
