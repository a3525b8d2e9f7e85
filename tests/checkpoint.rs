//! `triefs checkpoint`: save and restore of a mounted tree, driven with
//! real system calls and tools. The hard cases are the kernel's caches: a
//! restore must leave no cached page, attribute, listing or (negative)
//! name of the replaced tree visible to any process.
// Mount tests drive Linux syscalls and tools.
#![cfg(target_os = "linux")]

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{
    MountSpec, Output, TriefsMount, as_nobody, assert_exit, assert_one_line_exit, run_timed, sh,
    shared_binary, statvfs, triefs_bin,
};

const LIMIT: Duration = Duration::from_secs(60);

fn ck(args: &[&str], mnt: &Path) -> Output {
    let mut cmd = Command::new(triefs_bin());
    cmd.arg("checkpoint").arg(args[0]).arg(mnt).args(&args[1..]);
    run_timed(cmd, LIMIT)
}

#[track_caller]
fn ok(out: Output, what: &str) -> String {
    assert_exit(&out, 0, what);
    out.stdout
}

fn save(m: &Path, name: &str) {
    ok(ck(&["save", name], m), "save");
}

fn restore(m: &Path, name: &str) {
    ok(ck(&["restore", name], m), "restore");
}

/// Everything `find` and `stat` show of a tree, sorted.
fn listing(root: &Path) -> String {
    sh(
        root,
        "find . -printf '%p %y %m %U %G %s %n %T@ %l\\n' | sort; \
         find . -type f -exec md5sum {} + | sort; \
         getfattr -R -d -m - . 2>/dev/null | grep -v '^#' | sort",
    )
}

#[test]
fn restore_brings_back_the_saved_tree_for_tools() {
    let m = TriefsMount::new(&[]);
    let root = m.path();
    sh(
        root,
        "mkdir -p src/lib docs && seq 1 5000 > src/lib/a.txt && echo doc > docs/x \
         && ln -s lib/a.txt src/link && ln src/lib/a.txt hard && chmod 640 docs/x \
         && setfattr -n user.tag -v one docs/x && mkfifo pipe",
    );
    let before = listing(root);
    save(root, "fixture");
    // A test run changes contents, names, modes, links, xattrs.
    sh(
        root,
        "echo more >> src/lib/a.txt && rm -r docs && mkdir docs && echo other > docs/y \
         && ln -sf elsewhere src/link && rm hard && chmod 600 src/lib/a.txt \
         && mkdir -p new/deep && echo n > new/deep/f && mv src moved",
    );
    assert_ne!(listing(root), before);
    restore(root, "fixture");
    assert_eq!(listing(root), before, "after a restore");
    // Again after other changes: the checkpoint stays.
    sh(root, "rm -rf * && touch only-this");
    restore(root, "fixture");
    assert_eq!(listing(root), before, "after a second restore");
}

#[test]
fn restore_drops_every_kernel_cache_of_the_old_tree() {
    let m = TriefsMount::new(&[]);
    let root = m.path();
    fs::create_dir(root.join("dir")).unwrap();
    fs::write(root.join("dir/cached"), b"checkpoint bytes").unwrap();
    fs::write(root.join("gone-later"), b"x").unwrap();
    fs::write(root.join("mapped"), vec![b'A'; 8192]).unwrap();
    save(root, "s");

    // Cached pages: read, then change the file (the kernel caches the new
    // bytes too).
    let cached = root.join("dir/cached");
    assert_eq!(fs::read(&cached).unwrap(), b"checkpoint bytes");
    fs::write(&cached, b"live bytes, longer than before").unwrap();
    assert_eq!(
        fs::read(&cached).unwrap(),
        b"live bytes, longer than before"
    );
    let mut held = fs::File::open(&cached).unwrap();
    // A listing cached: the directory was read after a new entry.
    fs::write(root.join("dir/only-live"), b"l").unwrap();
    let names = |p: &Path| {
        let mut v: Vec<String> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&root.join("dir")), ["cached", "only-live"]);
    // A negative entry: looked up and missing (the kernel keeps it).
    fs::remove_file(root.join("gone-later")).unwrap();
    assert!(fs::metadata(root.join("gone-later")).is_err());
    assert!(fs::metadata(root.join("gone-later")).is_err());
    // Attributes cached.
    fs::set_permissions(root.join("dir"), fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(
        fs::metadata(root.join("dir")).unwrap().mode() & 0o777,
        0o700
    );
    // A shared mapping, then the file changed through write(2).
    let mf = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(root.join("mapped"))
        .unwrap();
    // SAFETY: a fresh shared read-only mapping of an open file of 8 KiB.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            8192,
            libc::PROT_READ,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&mf),
            0,
        )
    };
    assert_ne!(map, libc::MAP_FAILED);
    // SAFETY: the mapping is 8192 bytes long and stays mapped below.
    let mapped = unsafe { std::slice::from_raw_parts(map as *const u8, 8192) };
    (&mf).write_all(&[b'B'; 100]).unwrap();
    assert_eq!(mapped[0], b'B');

    restore(root, "s");

    assert_eq!(
        fs::read(&cached).unwrap(),
        b"checkpoint bytes",
        "a new open"
    );
    let mut got = Vec::new();
    held.seek(SeekFrom::Start(0)).unwrap();
    held.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"checkpoint bytes", "a descriptor opened before");
    assert_eq!(held.metadata().unwrap().len(), 16, "fstat of it");
    assert_eq!(names(&root.join("dir")), ["cached"], "the cached listing");
    assert!(!root.join("dir/only-live").exists());
    assert_eq!(
        fs::read(root.join("gone-later")).unwrap(),
        b"x",
        "a name cached as missing"
    );
    assert_eq!(
        fs::metadata(root.join("dir")).unwrap().mode() & 0o777,
        0o755
    );
    assert_eq!(mapped[0], b'A', "the mapping shows the checkpoint's bytes");
    assert!(mapped.iter().all(|&b| b == b'A'));
    // SAFETY: unmapping the mapping made above, not used after this.
    unsafe { libc::munmap(map, 8192) };
}

#[test]
fn open_files_and_working_directories_the_checkpoint_lacks() {
    let m = TriefsMount::new(&[]);
    let root = m.path();
    save(root, "empty");
    fs::create_dir(root.join("work")).unwrap();
    let path = root.join("work/log");
    let mut f = fs::OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.write_all(b"before ").unwrap();
    // A shell sits in the directory across the restore.
    let mut child = Command::new("sh")
        .current_dir(root.join("work"))
        .arg("-c")
        .arg("read _; ls -A; (echo x > here) 2>/dev/null && echo created || echo refused")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    restore(root, "empty");
    // Like an unlinked file: the descriptor keeps working, no name leads
    // to it.
    f.write_all(b"after").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "before after");
    assert_eq!(f.metadata().unwrap().nlink(), 0);
    assert!(!path.exists());
    assert_eq!(fs::read_dir(root).unwrap().count(), 0);
    // Like a removed directory: empty, and nothing can be created in it.
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "refused\n");
    drop(f);
    assert_eq!(fs::read_dir(root).unwrap().count(), 0);
}

#[test]
fn checkpoints_share_pages_and_count_against_the_limits() {
    let m = TriefsMount::new(&["-o", "size=8m,nr_inodes=40"]);
    let root = m.path();
    fs::write(root.join("big"), vec![7u8; 4 << 20]).unwrap();
    let used = |p: &Path| {
        let s = statvfs(p);
        (s.f_blocks - s.f_bfree) * s.f_frsize
    };
    let before = used(root);
    save(root, "a");
    assert_eq!(used(root), before, "a checkpoint shares the data");
    // Writing 1 MiB of it copies those pages once.
    let f = fs::OpenOptions::new()
        .write(true)
        .open(root.join("big"))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[1u8; 1 << 20], 0).unwrap();
    drop(f);
    ok(ck(&["save", "flush"], root), "save to flush");
    ok(ck(&["delete", "flush"], root), "delete");
    assert_eq!(used(root), before + (1 << 20), "df counts the copied pages");
    // 5 MiB used of 8: 4 MiB more do not fit.
    let r = Command::new("dd")
        .args([
            "if=/dev/zero",
            "bs=1M",
            "count=4",
            "seek=4",
            "conv=notrunc,fsync",
        ])
        .arg(format!("of={}", root.join("big").display()))
        .output()
        .unwrap();
    assert!(!r.status.success(), "dd should hit ENOSPC");
    assert!(String::from_utf8_lossy(&r.stderr).contains("No space left"));
    assert_eq!(used(root), 8 << 20, "the write filled the mount up");
    restore(root, "a");
    // The replaced tree is freed by the housekeeping thread after the
    // restore answers (a race this test once lost under load): wait.
    common::wait_until(Duration::from_secs(10), || used(root) == before);
    assert_eq!(used(root), before, "the copies went with the live tree");
    assert_eq!(fs::read(root.join("big")).unwrap(), vec![7u8; 4 << 20]);
    // Entries: 40 inodes; root + big live, 2 in "a": 36 free.
    for i in 0..18 {
        fs::write(root.join(format!("f{i}")), b"").unwrap();
    }
    // 20 live + 2: a save of 20 more would pass 40.
    let out = ck(&["save", "b"], root);
    assert_one_line_exit(&out, 2, "save past nr_inodes", &["no space"]);
    let list = ok(ck(&["list"], root), "list");
    assert!(
        !list.contains("\nb\t"),
        "a refused save leaves nothing: {list}"
    );
    ok(ck(&["delete", "a"], root), "delete a");
    save(root, "b");
}

#[test]
fn errors_are_one_line_and_other_users_are_refused() {
    let m = TriefsMount::new(&[]);
    let root = m.path();
    save(root, "one");
    let out = ck(&["save", "one"], root);
    assert_one_line_exit(&out, 2, "save of a taken name", &["exists already"]);
    let out = ck(&["restore", "two"], root);
    assert_one_line_exit(&out, 2, "unknown name", &["no checkpoint named 'two'"]);
    let out = ck(&["delete", "two"], root);
    assert_one_line_exit(&out, 2, "unknown name", &["no checkpoint named 'two'"]);
    let out = ck(&["save", "../x"], root);
    assert_one_line_exit(&out, 2, "bad name", &["not a checkpoint name"]);
    let out = ck(&["list"], Path::new("/proc"));
    assert_one_line_exit(&out, 2, "not triefs", &["not the mount point of a triefs"]);
    fs::create_dir(root.join("sub")).unwrap();
    let out = ck(&["save", "x"], &root.join("sub"));
    assert_one_line_exit(&out, 2, "a subdirectory", &["not the mount point"]);
    let out = ck(&["list"], &root.join("missing"));
    assert_one_line_exit(&out, 2, "a missing mount point", &["No such file"]);
    // Another user: EPERM for everything.
    let bin = shared_binary();
    let run = |args: &[&str]| {
        let mut cmd = as_nobody(&bin.path);
        cmd.arg("checkpoint")
            .arg(args[0])
            .arg(root)
            .args(&args[1..]);
        run_timed(cmd, LIMIT)
    };
    for args in [
        &["save", "mine"][..],
        &["restore", "one"],
        &["delete", "one"],
        &["list"],
        &["export", "one", "/tmp/never-written.tar"],
    ] {
        let out = run(args);
        assert_one_line_exit(&out, 2, args[0], &["only the mount's owner and root"]);
    }
    assert!(ok(ck(&["list"], root), "list").contains("one\t"));
}

#[test]
fn restores_while_others_write_keep_the_namespace_consistent() {
    restores_under_writers(&[]);
}

/// With one request thread, a restore must not wait for the kernel while
/// the kernel waits for that thread (it answers from a thread of its own).
#[test]
fn restores_under_writers_with_one_request_thread() {
    restores_under_writers(&["--threads", "1"]);
}

fn restores_under_writers(args: &[&str]) {
    let mut m = MountSpec::new()
        .args(args)
        .envs(&[("TRIEFS_CHECK", "1")])
        .mount();
    let root = m.path().to_path_buf();
    sh(
        &root,
        "mkdir -p a/b c && for i in $(seq 1 200); do echo $i > a/b/f$i; done",
    );
    save(&root, "base");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (root, stop) = (root.clone(), stop.clone());
        writers.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let d = root.join(format!("c/w{w}"));
                let _ = fs::create_dir_all(&d);
                let _ = fs::write(d.join(format!("f{}", n % 50)), vec![b'x'; 5000]);
                let _ = fs::write(root.join(format!("a/b/f{}", n % 200 + 1)), b"changed");
                let _ = fs::rename(d.join("f1"), d.join("g1"));
                let _ = fs::remove_file(d.join(format!("f{}", (n + 25) % 50)));
                let _ = fs::read_dir(root.join("a/b")).map(|r| r.count());
                n += 1;
            }
            n
        }));
    }
    for _ in 0..30 {
        restore(&root, "base");
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let ops: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(ops > 30, "the writers ran ({ops} rounds)");
    restore(&root, "base");
    assert_eq!(fs::read(root.join("a/b/f7")).unwrap(), b"7\n");
    assert!(!root.join("c/w0").exists());
    let st = m.unmount_and_wait().expect("daemon exits");
    assert!(st.success(), "consistency check at unmount failed: {st}");
}

/// A file past 1 MiB keeps its pages in blocks that READs are answered
/// from in place: a checkpoint shares them, writes copy single pages out
/// of them, and a restored tree that grows again must not take the slots
/// the other tree used. Read back cold (the kernel's page cache dropped),
/// so every byte comes from the daemon's pages.
#[test]
fn blocks_of_a_growing_file_under_checkpoints_read_back_cold() {
    let m = TriefsMount::new(&[]);
    let root = m.path();
    let f = root.join("grow");
    let mib = 1usize << 20;
    let mut model: Vec<u8> = (0..6 * mib).map(|i| (i % 251) as u8).collect();
    {
        let mut w = fs::File::create(&f).unwrap();
        for c in model.chunks(mib) {
            w.write_all(c).unwrap();
        }
    }
    let saved = model.clone();
    let cold = |what: &str, want: &[u8]| {
        common::drop_caches(1);
        let got = fs::read(&f).unwrap();
        assert!(
            got.len() == want.len(),
            "{what}: {} bytes, want {}",
            got.len(),
            want.len()
        );
        if let Some(at) = got.iter().zip(want).position(|(a, b)| a != b) {
            panic!("{what}: first difference at byte {at}");
        }
    };
    cold("written", &model);
    save(root, "a");
    // Inside a block, in the middle of a READ (whatever the readahead
    // windows): a partial page and whole pages, copied out of it.
    let w = fs::OpenOptions::new().write(true).open(&f).unwrap();
    let patch = vec![0xabu8; 10 * 1024 + 5];
    for at in [3 * mib + 300 * 1024 + 100, 4 * mib + 700 * 1024 + 4000] {
        std::os::unix::fs::FileExt::write_all_at(&w, &patch, at as u64).unwrap();
        model[at..at + patch.len()].copy_from_slice(&patch);
    }
    drop(w);
    // Growing on: the last block's next slots, in 128 KiB writes.
    let mut a = fs::OpenOptions::new().append(true).open(&f).unwrap();
    for k in 0..8u8 {
        let c = vec![k; 128 << 10];
        a.write_all(&c).unwrap();
        model.extend_from_slice(&c);
    }
    drop(a);
    cold("changed after the save", &model);
    restore(root, "a");
    cold("restored", &saved);
    // The restored tree grows from where it was saved: other bytes at
    // the offsets the replaced tree appended.
    let mut a = fs::OpenOptions::new().append(true).open(&f).unwrap();
    let tail = vec![0x5au8; mib + 3];
    a.write_all(&tail).unwrap();
    drop(a);
    let mut want = saved.clone();
    want.extend_from_slice(&tail);
    cold("grown after the restore", &want);
    ok(ck(&["delete", "a"], root), "delete a");
    cold("checkpoint deleted", &want);
}

#[test]
fn copy_file_range_shares_pages() {
    let m = TriefsMount::new(&["-o", "size=64m"]);
    let root = m.path();
    let data: Vec<u8> = (0..40u32 << 20).map(|i| (i % 253) as u8).collect();
    fs::write(root.join("src"), &data).unwrap();
    let used = |p: &Path| {
        let s = statvfs(p);
        (s.f_blocks - s.f_bfree) * s.f_frsize
    };
    let before = used(root);
    // 40 MiB + 40 MiB would not fit in 64 MiB if the bytes were copied.
    let out = Command::new("cp")
        .arg(root.join("src"))
        .arg(root.join("copy"))
        .output()
        .unwrap();
    assert!(out.status.success(), "cp: {out:?}");
    assert_eq!(used(root), before, "the copy shares every page");
    assert!(fs::read(root.join("copy")).unwrap() == data);
    // Writing the copy copies just the written page; the source keeps its
    // bytes.
    let f = fs::OpenOptions::new()
        .write(true)
        .open(root.join("copy"))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"zz", 10).unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(used(root), before + 4096);
    assert!(fs::read(root.join("src")).unwrap() == data);
    let copy = fs::read(root.join("copy")).unwrap();
    assert_eq!(&copy[10..12], b"zz");
    assert!(copy[12..] == data[12..]);
}

#[test]
fn temp_mount_fixture_for_rust_tests() {
    common::require_mount();
    let m = triefs::fixture::TempMount::builder()
        .size(16 << 20)
        .mount()
        .expect("mount a TempMount");
    let root = m.path().to_path_buf();
    assert!(common::is_mounted(&root));
    fs::create_dir(root.join("data")).unwrap();
    fs::write(root.join("data/config"), "answer = 42\n").unwrap();
    m.checkpoint("pristine").unwrap();
    for round in 0..3 {
        sh(&root, "rm -rf data && mkdir other && echo broken > other/x");
        m.restore("pristine").unwrap();
        // Another process sees the restored tree.
        assert_eq!(
            sh(&root, "cat data/config; ls"),
            "answer = 42\ndata\n",
            "round {round}"
        );
    }
    assert_eq!(
        m.checkpoint("pristine").unwrap_err().raw_os_error(),
        Some(libc::EEXIST)
    );
    m.delete_checkpoint("pristine").unwrap();
    m.unmount().expect("unmount");
    assert!(!common::is_mounted(&root));
    assert!(!root.exists(), "the temporary directory is removed");

    // A mount still busy when dropped (a process working in it) is
    // detached, not left stale when the test process exits.
    let busy = triefs::fixture::TempMount::new().expect("mount a TempMount");
    let root = busy.path().to_path_buf();
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .current_dir(&root)
        .spawn()
        .unwrap();
    drop(busy);
    assert!(!common::is_mounted(&root), "detached although busy");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn export_writes_the_checkpoint_as_a_tar_archive() {
    let m = TriefsMount::new(&[]);
    let root = m.path();
    let long = "n".repeat(120);
    sh(
        root,
        &format!(
            "mkdir -p a/b && seq 1 20000 > a/b/data && ln a/b/data hard && ln -s a/b/data sym \
             && chmod 751 a && setfattr -n user.k -v v a/b/data && mkfifo a/fifo \
             && mkdir -p deep/{long}/x && touch deep/{long}/x/f"
        ),
    );
    let saved = listing(root);
    save(root, "s");
    sh(root, "rm -rf a && echo later > hard");
    let tmp = common::short_tempdir();
    let tar = tmp.path().join("s.tar");
    ok(ck(&["export", "s", tar.to_str().unwrap()], root), "export");
    // GNU tar reads it back into the tree that was saved.
    let t = common::Tmpfs::new();
    sh(
        t.path(),
        &format!(
            "tar --xattrs --xattrs-include='*' --numeric-owner -xpf {}",
            tar.display()
        ),
    );
    assert_eq!(listing(t.path()), saved, "the archive extracted on a tmpfs");
    // The mount itself kept its live tree.
    assert!(!root.join("a").exists());
    assert_eq!(fs::read(root.join("hard")).unwrap(), b"later\n");
    // Errors: unknown name, no permission, a file that cannot be written.
    let out = ck(&["export", "nope", tar.to_str().unwrap()], root);
    assert_one_line_exit(&out, 2, "unknown name", &["no checkpoint named 'nope'"]);
    let out = ck(&["export", "s", "/proc/nowhere/x.tar"], root);
    assert_one_line_exit(&out, 2, "unwritable target", &["/proc/nowhere"]);
    assert!(tar.exists(), "a failed export leaves other files alone");
}
