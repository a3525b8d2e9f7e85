//! Snapshot images through real mounts: round trips of every file type,
//! refusal of damaged images (left untouched), saves on SIGUSR1 and
//! SIGTERM, a SIGKILL in the middle of a save, a save that runs out of
//! space, and the `triefs image` subcommands.
// Mount tests drive Linux: tmpfs as the oracle, Linux syscalls and tools.
#![cfg(target_os = "linux")]

mod common;

use std::ffi::OsStr;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::TriefsMount;

fn mount_with_image(img: &Path, env: &[(&str, &str)]) -> TriefsMount {
    let args = [OsStr::new("--image"), img.as_os_str()];
    TriefsMount::with_args_env(args, env)
}

fn sh_out(script: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A tree with every file type, hard links, xattrs and a sparse 1 GiB file.
fn populate(root: &Path) {
    common::sh(
        root,
        "mkdir -p d/e && chmod 2750 d && echo hello > d/f && ln d/f hard && ln -s d/f sym \
         && setfattr -n user.k -v value d/f && setfattr -n user.dir -v 1 d \
         && head -c 300000 /dev/urandom > d/e/rand && truncate -s 1G sparse \
         && printf tail >> sparse && mkfifo fifo && mknod chr c 1 3 \
         && python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.bind(\"sock\")' \
         && touch -d '2001-02-03 04:05:06.789' d/f && chown 7:8 d/e/rand",
    );
}

/// Everything `find` and friends can see, in a stable order.
fn describe(root: &Path) -> String {
    sh_out(&format!(
        "cd {} && find . -printf '%y %m %n %U:%G %s %T@ %p %l\\n' | sort \
         && md5sum d/f d/e/rand sparse && getfattr -d -R . 2>/dev/null | sort",
        root.display()
    ))
}

#[test]
fn round_trip_of_every_file_type() {
    if !common::can_mount() {
        return;
    }
    let dir = common::short_tempdir();
    let img = dir.path().join("img");
    let mut m = mount_with_image(&img, &[]);
    populate(m.path());
    let before = describe(m.path());
    assert!(m.unmount_and_wait().unwrap().success());
    let size = std::fs::metadata(&img).unwrap().len();
    assert!(
        size < 2 << 20,
        "image with a sparse 1 GiB file is {size} bytes"
    );

    let mut m = mount_with_image(&img, &[]);
    assert_eq!(describe(m.path()), before);
    let sparse = std::fs::metadata(m.path().join("sparse")).unwrap();
    assert!(
        sparse.blocks() <= 16,
        "holes stay holes: {} blocks",
        sparse.blocks()
    );
    let hard = std::fs::metadata(m.path().join("hard")).unwrap();
    assert_eq!(hard.nlink(), 2);
    assert_eq!(
        hard.ino(),
        std::fs::metadata(m.path().join("d/f")).unwrap().ino()
    );
    assert!(
        std::fs::symlink_metadata(m.path().join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert!(
        std::fs::symlink_metadata(m.path().join("sock"))
            .unwrap()
            .file_type()
            .is_socket()
    );
    let chr = std::fs::symlink_metadata(m.path().join("chr")).unwrap();
    assert!(chr.file_type().is_char_device());
    assert_eq!(chr.rdev(), libc::makedev(1, 3));
    assert!(m.unmount_and_wait().unwrap().success());
}

fn hash_file(p: &Path) -> String {
    sh_out(&format!("md5sum < {}", p.display()))
}

#[test]
fn damaged_images_are_refused_and_left_untouched() {
    if !common::can_mount() {
        return;
    }
    let dir = common::short_tempdir();
    let good = dir.path().join("good");
    let mut m = mount_with_image(&good, &[]);
    populate(m.path());
    assert!(m.unmount_and_wait().unwrap().success());
    let bytes = std::fs::read(&good).unwrap();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("empty", Vec::new()),
        (
            "foreign",
            b"#!/bin/sh\necho this is not an image\n".to_vec(),
        ),
    ];
    let mut flipped = bytes.clone();
    let mid = bytes.len() / 3;
    flipped[mid] ^= 0x40;
    cases.push(("flipped byte", flipped));
    let mut version = bytes.clone();
    version[8] = 9;
    cases.push(("wrong version", version));
    for (what, content) in cases {
        let img = dir.path().join("bad");
        std::fs::write(&img, &content).unwrap();
        let before = hash_file(&img);
        for daemon in [false, true] {
            let mnt = dir.path().join("m2");
            let _ = std::fs::create_dir(&mnt);
            let mut cmd = Command::new(common::triefs_bin());
            if !daemon {
                cmd.arg("-f");
            }
            let out = cmd.arg("--image").arg(&img).arg(&mnt).output().unwrap();
            assert_eq!(out.status.code(), Some(2), "{what}: must exit 2");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(err.trim().lines().count(), 1, "{what}: one line: {err}");
            assert!(
                err.contains("bad") && !err.contains("panicked"),
                "{what}: {err}"
            );
            assert!(!common::is_mounted(&mnt), "{what}: nothing mounted");
        }
        assert_eq!(hash_file(&img), before, "{what}: image changed");
        let out = Command::new(common::triefs_bin())
            .args(["image", "check"])
            .arg(&img)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{what}: image check");
    }
    // --force-new-image starts empty and overwrites at the next save.
    let img = dir.path().join("bad");
    let args = [
        OsStr::new("--force-new-image"),
        OsStr::new("--image"),
        img.as_os_str(),
    ];
    let mut m = TriefsMount::with_args(args);
    assert_eq!(std::fs::read_dir(m.path()).unwrap().count(), 0);
    std::fs::write(m.path().join("new"), b"n").unwrap();
    assert!(m.unmount_and_wait().unwrap().success());
    let out = Command::new(common::triefs_bin())
        .args(["image", "ls"])
        .arg(&img)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/new\n");
}

fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn image_ls(img: &Path) -> String {
    let out = Command::new(common::triefs_bin())
        .args(["image", "ls"])
        .arg(img)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn sigusr1_and_sigterm_save() {
    if !common::can_mount() {
        return;
    }
    let dir = common::short_tempdir();
    let img = dir.path().join("img");
    let mut m = mount_with_image(&img, &[]);
    std::fs::create_dir(m.path().join("first")).unwrap();
    // SAFETY: signal to the daemon this test started.
    unsafe { libc::kill(m.pid() as i32, libc::SIGUSR1) };
    wait_for(|| image_ls(&img) == "/first\n", "the SIGUSR1 save");
    // The mount keeps serving after a save.
    std::fs::create_dir(m.path().join("second")).unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(m.pid() as i32, libc::SIGTERM) };
    let st = m.wait_exit(Duration::from_secs(20)).expect("daemon exits");
    assert!(st.success());
    assert_eq!(image_ls(&img), "/first\n/second\n");
    let out = Command::new(common::triefs_bin())
        .args(["image", "info"])
        .arg(&img)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(
        info.contains("entries: 2") && info.contains("format version: 1"),
        "{info}"
    );
    let out = Command::new(common::triefs_bin())
        .args(["image", "ls"])
        .arg(&img)
        .arg("/second")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/second\n");
}

/// A daemon killed mid-save leaves the old or the new image, never a torn
/// one.
#[test]
fn kill_during_save_leaves_an_untorn_image() {
    if !common::can_mount() {
        return;
    }
    let dir = common::short_tempdir();
    let img: PathBuf = dir.path().join("img");
    let mut m = mount_with_image(&img, &[]);
    std::fs::write(m.path().join("v1"), b"one").unwrap();
    assert!(m.unmount_and_wait().unwrap().success());
    let v1 = hash_file(&img);

    // A big tree makes the save take a while; kill -9 during it.
    let mut m = mount_with_image(&img, &[]);
    common::sh(
        m.path(),
        "head -c 400000000 /dev/zero > big && rm v1 && touch v2",
    );
    // SAFETY: signals to the daemon this test started.
    unsafe { libc::kill(m.pid() as i32, libc::SIGUSR1) };
    let tmp_appeared = {
        let start = Instant::now();
        loop {
            let tmp = std::fs::read_dir(dir.path()).unwrap().any(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".img.tmp")
            });
            if tmp || start.elapsed() > Duration::from_secs(5) {
                break tmp;
            }
        }
    };
    unsafe { libc::kill(m.pid() as i32, libc::SIGKILL) };
    let _ = m.wait_exit(Duration::from_secs(10));
    common::unmount(m.path());
    // Either the old image or (if the save won the race) the new one, never
    // a torn one.
    let ls = image_ls(&img);
    assert!(
        ls == "/v1\n" || ls == "/big\n/v2\n",
        "after kill -9: {ls:?}"
    );
    eprintln!("temporary file seen before the kill: {tmp_appeared}; image lists {ls:?}");
    drop(m);
    if ls == "/v1\n" {
        assert_eq!(hash_file(&img), v1);
    }
}

/// A save that fails (injected ENOSPC after 1000 bytes) keeps the previous
/// image, leaves no temporary file, and is reported by the exit code.
#[test]
fn failed_save_keeps_the_previous_image() {
    if !common::can_mount() {
        return;
    }
    let dir = common::short_tempdir();
    let img: PathBuf = dir.path().join("img");
    let mut m = mount_with_image(&img, &[]);
    std::fs::write(m.path().join("v1"), b"one").unwrap();
    assert!(m.unmount_and_wait().unwrap().success());
    let v1 = hash_file(&img);
    let mut m = mount_with_image(
        &img,
        &[("TRIEFS_FAULTS", "1"), ("TRIEFS_IMAGE_FAIL_AFTER", "1000")],
    );
    common::sh(m.path(), "head -c 100000 /dev/urandom > more");
    let st = m.unmount_and_wait().expect("daemon exits");
    assert_eq!(
        st.code(),
        Some(1),
        "a failed save is reported by the exit code"
    );
    assert_eq!(hash_file(&img), v1);
    assert!(
        !std::fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".tmp.")),
        "temporary file left behind"
    );
    assert_eq!(image_ls(&img), "/v1\n");
}

/// An image holds every file's contents, so it is written with mode 0600
/// whatever the umask: a 0600 file in the mount must not become readable
/// to others through the image. And the save's temporary file is never
/// opened through a symlink planted under its predictable name.
#[test]
fn image_is_private_and_its_temp_file_never_follows_a_symlink() {
    use std::os::unix::fs::PermissionsExt;
    if !common::can_mount() {
        return;
    }
    let dir = common::short_tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let img = dir.path().join("img");
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let m = mount_with_image(&img, &[]);
    let secret = m.path().join("secret");
    std::fs::write(&secret, "only for root").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The name the daemon will write to, planted as a symlink.
    let planted = dir.path().join(format!(".img.tmp.{}", m.pid()));
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    // SAFETY: signal to the daemon this test started.
    unsafe { libc::kill(m.pid() as i32, libc::SIGUSR1) };
    wait_for(|| img.exists(), "the SIGUSR1 save");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    let mode = std::fs::metadata(&img).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "image mode {mode:o}");
    assert!(
        planted.symlink_metadata().is_err(),
        "the planted name is gone"
    );
    drop(m);
}
