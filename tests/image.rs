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

use common::{TriefsMount, Unmounts};

fn mount_with_image(img: &Path, env: &[(&str, &str)]) -> TriefsMount {
    let args = [OsStr::new("--image"), img.as_os_str()];
    TriefsMount::with_args_env(args, env)
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
    common::sh(
        root,
        "find . -printf '%y %m %n %U:%G %s %T@ %p %l\\n' | sort \
         && md5sum d/f d/e/rand sparse && getfattr -d -R . 2>/dev/null | sort",
    )
}

#[test]
fn round_trip_of_every_file_type() {
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
    common::sh(Path::new("/"), &format!("md5sum < {}", p.display()))
}

#[test]
fn damaged_images_are_refused_and_left_untouched() {
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
            let args = [OsStr::new("--image"), img.as_os_str()];
            let cmd = triefs_mount_cmd(!daemon, &args, &mnt);
            let out = common::run_timed(cmd, REFUSAL_TIMEOUT);
            common::assert_one_line_exit(&out, 2, what, &["bad"]);
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

fn wait_for(cond: impl FnMut() -> bool, what: &str) {
    assert!(
        common::wait_until(Duration::from_secs(20), cond),
        "timed out waiting for {what}"
    );
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
    let dir = common::short_tempdir();
    let img = dir.path().join("img");
    let mut m = mount_with_image(&img, &[]);
    std::fs::create_dir(m.path().join("first")).unwrap();
    m.signal(libc::SIGUSR1);
    wait_for(|| image_ls(&img) == "/first\n", "the SIGUSR1 save");
    // The mount keeps serving after a save.
    std::fs::create_dir(m.path().join("second")).unwrap();
    m.signal(libc::SIGTERM);
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
        info.contains("entries: 2") && info.contains("format version: 3"),
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

/// `dir/img`, saved by a mount holding one file `v1`, and its hash.
fn image_of_v1(dir: &Path) -> (PathBuf, String) {
    let img = dir.join("img");
    let mut m = mount_with_image(&img, &[]);
    std::fs::write(m.path().join("v1"), b"one").unwrap();
    assert!(m.unmount_and_wait().unwrap().success());
    let hash = hash_file(&img);
    (img, hash)
}

/// A daemon killed mid-save leaves the old or the new image, never a torn
/// one.
#[test]
fn kill_during_save_leaves_an_untorn_image() {
    let dir = common::short_tempdir();
    let (img, v1) = image_of_v1(dir.path());

    // A big tree makes the save take a while; kill -9 during it.
    let mut m = mount_with_image(&img, &[]);
    common::sh(
        m.path(),
        "head -c 400000000 /dev/zero > big && rm v1 && touch v2",
    );
    m.signal(libc::SIGUSR1);
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
    m.sigkill();
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
    let dir = common::short_tempdir();
    let (img, v1) = image_of_v1(dir.path());
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

/// How long an invocation that must fail gets before it is killed (a
/// foreground mount that wrongly succeeds would never return).
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(10);

/// `triefs [-f] ARGS MNT` as a command.
fn triefs_mount_cmd(foreground: bool, args: &[&OsStr], mnt: &Path) -> Command {
    let mut cmd = Command::new(common::triefs_bin());
    if foreground {
        cmd.arg("-f");
    }
    cmd.args(args).arg(mnt).env_remove("RUST_LOG");
    cmd
}

/// `triefs image SUB FILE` run to completion.
fn image_cmd(sub: &str, img: &Path) -> common::Output {
    let mut cmd = Command::new(common::triefs_bin());
    cmd.args(["image", sub]).arg(img).env_remove("RUST_LOG");
    common::run_timed(cmd, REFUSAL_TIMEOUT)
}

/// A temp dir of mode `mode` holding a mount point `m` (0777) that another
/// user may mount on, cleared on drop.
fn mount_point_for_others(mode: u32) -> (tempfile::TempDir, PathBuf, Unmounts) {
    let dir = common::short_tempdir_mode(mode);
    let mnt = dir.path().join("m");
    std::fs::create_dir(&mnt).unwrap();
    common::chmod(&mnt, 0o777);
    let guard = Unmounts(vec![mnt.clone()]);
    (dir, mnt, guard)
}

/// A small image made by a real mount, copied to `dir/good`.
fn good_image(dir: &Path) -> PathBuf {
    let img = dir.join("good");
    if !img.exists() {
        let mut m = mount_with_image(&img, &[]);
        std::fs::write(m.path().join("f"), b"data").unwrap();
        assert!(m.unmount_and_wait().unwrap().success());
    }
    img
}

/// A file holding the magic but cut inside the header is a truncated
/// image, not a foreign file.
#[test]
fn image_cut_inside_its_header_is_truncated() {
    let dir = common::short_tempdir();
    let bytes = std::fs::read(good_image(dir.path())).unwrap();
    let mnt = dir.path().join("m");
    std::fs::create_dir(&mnt).unwrap();
    let _u = Unmounts(vec![mnt.clone()]);
    for cut in [8, 12] {
        let img = dir.path().join(format!("cut{cut}"));
        std::fs::write(&img, &bytes[..cut]).unwrap();
        let what = format!("image of its first {cut} bytes");
        let line =
            common::assert_one_line_exit(&image_cmd("check", &img), 2, &what, &["truncated"]);
        assert!(!line.contains("magic"), "{what}: {line}");
        let args = [OsStr::new("--image"), img.as_os_str()];
        let cmd = triefs_mount_cmd(true, &args, &mnt);
        let out = common::run_timed(cmd, REFUSAL_TIMEOUT);
        let line = common::assert_one_line_exit(&out, 2, &what, &["truncated"]);
        assert!(!line.contains("magic"), "{what}: {line}");
    }
}

/// A detached daemon works from `/`; a relative --image must still name
/// the file it named when the command was given.
#[test]
fn relative_image_path_of_a_detached_daemon() {
    common::require_mount();
    let dir = common::short_tempdir();
    let mnt = dir.path().join("m");
    std::fs::create_dir(&mnt).unwrap();
    let _u = Unmounts(vec![mnt.clone()]);
    let mut cmd = Command::new(common::triefs_bin());
    cmd.args(["--image", "rel.img", "m"])
        .current_dir(dir.path());
    let out = common::run_timed(cmd, REFUSAL_TIMEOUT);
    common::assert_exit(&out, 0, "detached daemon with a relative --image");
    std::fs::write(mnt.join("kept"), b"k").unwrap();
    common::unmount(&mnt);
    let img = dir.path().join("rel.img");
    wait_for(
        || image_ls(&img) == "/kept\n",
        "the save of the detached daemon",
    );
}

/// An image path that is a directory can never be saved: refused at
/// mount, also with --force-new-image (which used to mount and lose
/// everything at unmount).
#[test]
fn image_path_that_is_a_directory_is_refused_at_mount() {
    common::require_mount();
    let dir = common::short_tempdir();
    let img = dir.path().join("imgdir");
    std::fs::create_dir(&img).unwrap();
    let mnt = dir.path().join("m");
    std::fs::create_dir(&mnt).unwrap();
    let _u = Unmounts(vec![mnt.clone()]);
    for force in [false, true] {
        for foreground in [true, false] {
            let mut args = vec![OsStr::new("--image"), img.as_os_str()];
            if force {
                args.push(OsStr::new("--force-new-image"));
            }
            let cmd = triefs_mount_cmd(foreground, &args, &mnt);
            let out = common::run_timed(cmd, REFUSAL_TIMEOUT);
            let what = format!("--image DIR (force={force}, foreground={foreground})");
            let line = common::assert_one_line_exit(&out, 2, &what, &["imgdir", "directory"]);
            assert!(!line.contains("--force-new-image"), "{what}: {line}");
            assert!(!common::is_mounted(&mnt), "{what}: mounted anyway");
        }
    }
    assert!(img.is_dir());
}

/// A user whose image directory is read-only (0555) is refused at mount,
/// not told at unmount that everything is lost; so is a user whose image
/// sits in a sticky directory (like /tmp) but belongs to someone else
/// (the save's rename could not replace it).
#[test]
fn image_the_user_could_not_save_is_refused_at_mount() {
    let bin = common::shared_binary();
    let (dir, mnt, _u) = mount_point_for_others(0o755);

    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    common::chmod(&ro, 0o555);
    let sticky = dir.path().join("sticky");
    std::fs::create_dir(&sticky).unwrap();
    common::chmod(&sticky, 0o1777);
    let theirs = sticky.join("img");
    std::fs::copy(good_image(dir.path()), &theirs).unwrap();
    common::chmod(&theirs, 0o644);

    let cases: [(&str, PathBuf, &[&str]); 3] = [
        (
            "new image in a 0555 directory",
            ro.join("img"),
            &["cannot write in its directory", "Permission denied"],
        ),
        (
            "--force-new-image in a 0555 directory",
            ro.join("img"),
            &["cannot write in its directory"],
        ),
        (
            "another user's image in a sticky directory",
            theirs.clone(),
            &["sticky", "uid 0"],
        ),
    ];
    for (what, img, mentions) in cases {
        let mut cmd = common::as_nobody(&bin.path);
        cmd.arg("-f").arg("--image").arg(&img);
        if what.starts_with("--force") {
            cmd.arg("--force-new-image");
        }
        cmd.arg(&mnt);
        let out = common::run_timed(cmd, REFUSAL_TIMEOUT);
        let mut mentions = mentions.to_vec();
        let shown = img.display().to_string();
        mentions.push(&shown);
        common::assert_one_line_exit(&out, 2, what, &mentions);
        assert!(!common::is_mounted(&mnt), "{what}: mounted anyway");
    }
    assert_eq!(
        std::fs::read_dir(&ro).unwrap().count(),
        0,
        "left files in the 0555 dir"
    );
    // The same user may use an image of their own in the sticky directory.
    let mine = sticky.join("mine");
    let mut cmd = common::as_nobody(&bin.path);
    cmd.arg("--image").arg(&mine).arg(&mnt);
    let out = common::run_timed(cmd, REFUSAL_TIMEOUT);
    assert!(
        !out.stderr.contains("mine") && !out.stderr.contains("sticky"),
        "an image of one's own in a sticky directory: {:?}",
        out.stderr
    );
}

/// An image the user cannot read: the error says to check its
/// permissions and does not suggest --force-new-image, which would only
/// overwrite a file the user may not even read.
#[test]
fn unreadable_image_hint_fits_the_user() {
    let bin = common::shared_binary();
    let (dir, mnt, _u) = mount_point_for_others(0o777);
    let img = good_image(dir.path());
    common::chmod(&img, 0o600);
    let before = hash_file(&img);

    let mut cmd = common::as_nobody(&bin.path);
    cmd.arg("-f").arg("--image").arg(&img).arg(&mnt);
    let out = common::run_timed(cmd, REFUSAL_TIMEOUT);
    let line = common::assert_one_line_exit(
        &out,
        2,
        "mount with an unreadable image",
        &["good", "Permission denied", "check its permissions"],
    );
    assert!(!line.contains("--force-new-image"), "{line}");
    assert!(!common::is_mounted(&mnt));

    let mut cmd = common::as_nobody(&bin.path);
    cmd.args(["image", "info"]).arg(&img);
    let out = common::run_timed(cmd, REFUSAL_TIMEOUT);
    let line = common::assert_one_line_exit(
        &out,
        2,
        "image info of an unreadable image",
        &["Permission denied", "check its permissions"],
    );
    assert!(!line.contains("--force-new-image"), "{line}");
    assert_eq!(hash_file(&img), before);
}

/// A save that fails after the mount (its directory is a tiny tmpfs that
/// fills up) is recorded beside the image: `triefs image info` and `check`
/// report it (exit 1) until a later save succeeds.
#[test]
fn failed_save_is_reported_by_triefs_image() {
    let small = common::Tmpfs::with_options("size=64k");
    let img = small.path().join("img");

    let mut m = mount_with_image(&img, &[]);
    std::fs::write(m.path().join("v1"), b"one").unwrap();
    m.signal(libc::SIGUSR1);
    wait_for(|| image_ls(&img) == "/v1\n", "the first save");
    let out = image_cmd("info", &img);
    common::assert_exit(&out, 0, "image info while serving");
    assert!(
        out.stdout.contains("served by: triefs pid") && out.stdout.contains("last save: 20"),
        "info while serving: {}",
        out.stdout
    );
    common::sh(m.path(), "head -c 300000 /dev/urandom > big");
    let st = m.unmount_and_wait().expect("daemon exits");
    assert_eq!(
        st.code(),
        Some(1),
        "a failed save is reported by the exit code"
    );

    let out = image_cmd("info", &img);
    let line = common::assert_one_line_exit(
        &out,
        1,
        "image info after a failed save",
        &["FAILED", "No space left on device"],
    );
    assert!(line.contains("holds the save of"), "{line}");
    assert!(out.stdout.contains("entries: 1"), "{}", out.stdout);
    assert!(
        out.stdout.contains("last save: ") && out.stdout.contains("No space left on device"),
        "{}",
        out.stdout
    );
    common::assert_one_line_exit(
        &image_cmd("check", &img),
        1,
        "image check after a failed save",
        &["FAILED"],
    );
    let out = image_cmd("ls", &img);
    common::assert_exit(&out, 0, "image ls after a failed save");
    assert_eq!(out.stdout, "/v1\n");
    assert!(
        out.stderr.contains("warning") && out.stderr.contains("FAILED"),
        "{:?}",
        out.stderr
    );

    // Room again: the next daemon warns, and its good save clears the record.
    let st = Command::new("mount")
        .args(["-o", "remount,size=4m"])
        .arg(small.path())
        .status()
        .unwrap();
    assert!(st.success(), "remount the tmpfs larger");
    let mut m = mount_with_image(&img, &[]);
    std::fs::write(m.path().join("v2"), b"two").unwrap();
    assert!(m.unmount_and_wait().unwrap().success());
    let out = image_cmd("info", &img);
    common::assert_exit(&out, 0, "image info after a good save");
    assert!(!out.stdout.contains("last save"), "{}", out.stdout);
    assert_eq!(out.stderr, "");
    assert_eq!(image_ls(&img), "/v1\n/v2\n");
    let left: Vec<_> = std::fs::read_dir(small.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [OsStr::new("img")], "only the image is left");
}

/// A daemon killed before its final save leaves word of it: `triefs image
/// info` says the changes since its last save are gone.
#[test]
fn daemon_killed_before_its_final_save_is_reported() {
    let dir = common::short_tempdir();
    let img = dir.path().join("img");
    let mut m = mount_with_image(&img, &[]);
    std::fs::write(m.path().join("v1"), b"one").unwrap();
    m.signal(libc::SIGUSR1);
    wait_for(|| image_ls(&img) == "/v1\n", "the save");
    std::fs::write(m.path().join("lost"), b"x").unwrap();
    m.sigkill();
    common::unmount(m.path());
    common::assert_one_line_exit(
        &image_cmd("info", &img),
        1,
        "image info after kill -9",
        &["ended without its final save", "holds the save of"],
    );
}

/// Two daemons on one image would overwrite each other's saves: the
/// second is refused while the first serves.
#[test]
fn second_daemon_on_the_same_image_is_refused() {
    let dir = common::short_tempdir();
    let img = dir.path().join("img");
    let mut first = mount_with_image(&img, &[]);
    let mnt = dir.path().join("second");
    std::fs::create_dir(&mnt).unwrap();
    let _u = Unmounts(vec![mnt.clone()]);
    let args = [OsStr::new("--image"), img.as_os_str()];
    let cmd = triefs_mount_cmd(true, &args, &mnt);
    let out = common::run_timed(cmd, REFUSAL_TIMEOUT);
    let pid = first.pid().to_string();
    common::assert_one_line_exit(&out, 2, "second daemon", &["in use", &pid]);
    assert!(!common::is_mounted(&mnt));
    assert!(first.unmount_and_wait().unwrap().success());
    // Free again once the first is gone.
    let mut again = TriefsMount::with_args([OsStr::new("--image"), img.as_os_str()]);
    assert!(again.unmount_and_wait().unwrap().success());
}

/// `umount` returns before the daemon's final save of its image is done.
/// Mounting the same image right away (`umount DIR && mount DIR` with an
/// fstab line, xfstests' cycle mounts) waits for that save instead of
/// being refused, and finds everything.
#[test]
fn mount_right_after_umount_waits_for_the_final_save() {
    let dir = common::short_tempdir();
    let img = dir.path().join("img");
    let mut first = mount_with_image(&img, &[]);
    // Enough data (not zeros) that the final save takes a while.
    let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(first.path().join("big")).unwrap();
        for _ in 0..768 {
            f.write_all(&chunk).unwrap();
        }
    }
    let pid = first.pid() as i32;
    let mnt = first.path().to_path_buf();
    let st = Command::new("umount").arg(&mnt).status().unwrap();
    assert!(st.success(), "umount");
    assert!(
        !common::has_exited(pid),
        "the first daemon had already saved and exited: the test shows nothing"
    );
    let args = [OsStr::new("--image"), img.as_os_str()];
    let cmd = triefs_mount_cmd(false, &args, &mnt);
    let out = common::run_timed(cmd, Duration::from_secs(120));
    assert!(
        out.status.is_some_and(|s| s.success()),
        "second mount: {:?}: {}",
        out.status,
        out.stderr
    );
    let _u = Unmounts(vec![mnt.clone()]);
    assert!(
        first
            .wait_exit(Duration::from_secs(60))
            .is_some_and(|s| s.success()),
        "the first daemon's exit"
    );
    let md = std::fs::metadata(mnt.join("big")).unwrap();
    assert_eq!(md.len(), 768 << 20);
    let mut got = vec![0u8; chunk.len()];
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(mnt.join("big")).unwrap();
        f.seek(SeekFrom::Start(767 << 20)).unwrap();
        f.read_exact(&mut got).unwrap();
    }
    assert!(got == chunk, "the last MiB differs after the reload");
}

/// A detached daemon has no stderr: a save that fails after the mount
/// goes to syslog. The daemon runs in a private mount namespace whose
/// /dev/log is a socket of this test (the machine's logger, if any, is
/// left alone); its image directory is a tiny tmpfs that fills up.
#[test]
fn detached_daemon_reports_a_failed_save_to_syslog() {
    common::require_mount();
    assert!(
        Path::new("/usr/bin/unshare").exists() || Path::new("/bin/unshare").exists(),
        "this test needs unshare(1) (package util-linux)"
    );
    let dir = common::short_tempdir();
    let t = dir.path();
    for d in ["m", "imgs", "realdev"] {
        std::fs::create_dir(t.join(d)).unwrap();
    }
    let _u = Unmounts(vec![t.join("imgs"), t.join("m")]);
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(t.join("imgs"))
        .status()
        .unwrap();
    assert!(st.success(), "mount a small tmpfs");
    let log = std::os::unix::net::UnixDatagram::bind(t.join("log.sock")).unwrap();
    log.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // In the namespace: a tmpfs over /dev with the devices the daemon
    // needs bound in, and /dev/log pointing at our socket.
    let script = r#"
        set -e
        mount --bind /dev "$T/realdev"
        mount -t tmpfs -o mode=0755 devtmp /dev
        for n in null zero urandom fuse; do
            touch "/dev/$n" && mount --bind "$T/realdev/$n" "/dev/$n"
        done
        ln -s "$T/log.sock" /dev/log
        "$BIN" --image "$T/imgs/img" "$T/m"
        head -c 300000 /dev/zero > "$T/m/big"
        pid=$(tr '\0' '\n' < "$T/imgs/.img.status" | sed -n 's/^pid //p')
        umount "$T/m"
        i=0
        while kill -0 "$pid" 2>/dev/null; do
            i=$((i + 1))
            if [ $i -gt 200 ]; then kill -9 "$pid"; echo "daemon hung" >&2; exit 1; fi
            sleep 0.05
        done
    "#;
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("T", t)
        .env("BIN", common::triefs_bin())
        .env_remove("RUST_LOG");
    let out = common::run_timed(cmd, Duration::from_secs(30));
    common::assert_exit(&out, 0, "namespace script");
    let mut buf = vec![0u8; 4096];
    let n = log
        .recv(&mut buf)
        .expect("no syslog message from the detached daemon");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    // <27> is facility daemon (3), severity error (3).
    assert!(msg.starts_with("<27>"), "{msg}");
    assert!(
        msg.contains("triefs[")
            && msg.contains("saving image")
            && msg.contains("No space left on device"),
        "{msg}"
    );
    common::assert_one_line_exit(
        &image_cmd("info", &t.join("imgs/img")),
        2,
        "image info after the failed first save",
        &["FAILED", "No space left on device"],
    );
}

/// An image holds every file's contents, so it is written with mode 0600
/// whatever the umask: a 0600 file in the mount must not become readable
/// to others through the image. And the save's temporary file is never
/// opened through a symlink planted under its predictable name.
#[test]
fn image_is_private_and_its_temp_file_never_follows_a_symlink() {
    let dir = common::short_tempdir_mode(0o1777);
    let img = dir.path().join("img");
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let m = mount_with_image(&img, &[]);
    let secret = m.path().join("secret");
    std::fs::write(&secret, "only for root").unwrap();
    common::chmod(&secret, 0o600);
    // The name the daemon will write to, planted as a symlink.
    let planted = dir.path().join(format!(".img.tmp.{}", m.pid()));
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    m.signal(libc::SIGUSR1);
    wait_for(|| img.exists(), "the SIGUSR1 save");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    let mode = std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(&img).unwrap()) & 0o7777;
    assert_eq!(mode, 0o600, "image mode {mode:o}");
    assert!(
        planted.symlink_metadata().is_err(),
        "the planted name is gone"
    );
    drop(m);
}

/// `triefs checkpoint SUB MNT [NAME]`, which must succeed; its output.
fn checkpoint(sub: &str, mnt: &Path, name: Option<&str>) -> String {
    let mut cmd = Command::new(common::triefs_bin());
    cmd.args(["checkpoint", sub]).arg(mnt).args(name);
    let out = common::run_timed(cmd, REFUSAL_TIMEOUT);
    common::assert_exit(&out, 0, &format!("checkpoint {sub} {name:?}"));
    out.stdout
}

/// Everything tools see of a tree: names, types, modes, owners, sizes,
/// link counts, times, symlink targets, contents and xattrs.
fn tree_listing(root: &Path) -> String {
    common::sh(
        root,
        "find . -printf '%p %y %m %U:%G %s %n %T@ %l\\n' | sort; \
         find . -type f -exec md5sum {} + | sort; \
         getfattr -R -d -m - . 2>/dev/null | grep -v '^#' | sort",
    )
}

/// Bytes `df` shows used.
fn df_used(p: &Path) -> u64 {
    let s = common::statvfs(p);
    (s.f_blocks - s.f_bfree) * s.f_frsize
}

/// `checkpoint list` without the metadata column (heap bytes, which
/// depend on how the tables grew).
fn checkpoint_list(mnt: &Path) -> String {
    checkpoint("list", mnt, None)
        .lines()
        .map(|l| l.rsplit_once('\t').map_or(l, |(a, _)| a).to_owned() + "\n")
        .collect()
}

/// Saves three checkpoints of a tree with a 20 MiB file and its `cp` copy
/// (pages shared by copy_file_range), changing it between them; returns
/// the listing of each checkpoint's tree, by name.
fn three_checkpoints(root: &Path) -> Vec<(&'static str, String)> {
    common::sh(
        root,
        "head -c 20M /dev/urandom > big && cp big copy && mkdir -p d/e && echo hello > d/f \
         && ln d/f hard && ln -s d/f sym && setfattr -n user.k -v one d/f && mkfifo d/fifo",
    );
    let mut saved = Vec::new();
    saved.push(("one", tree_listing(root)));
    checkpoint("save", root, Some("one"));
    common::sh(
        root,
        "echo more >> d/f && dd if=/dev/urandom of=big bs=1M count=1 seek=4 conv=notrunc \
         2>/dev/null && rm hard && mkdir new && echo n > new/x && setfattr -n user.k -v two d/f",
    );
    saved.push(("two", tree_listing(root)));
    checkpoint("save", root, Some("two"));
    common::sh(
        root,
        "rm -r d && head -c 1M /dev/urandom > other && printf tail >> copy && chmod 600 big",
    );
    saved.push(("three", tree_listing(root)));
    checkpoint("save", root, Some("three"));
    // The live tree moves on.
    common::sh(
        root,
        "rm copy && echo live > live && mkdir d && echo x > d/g",
    );
    saved
}

#[test]
fn checkpoints_come_back_at_the_next_mount_with_pages_shared() {
    let dir = common::short_tempdir();
    let img = dir.path().join("img");
    let check = [("TRIEFS_CHECK", "1")];
    let mut m = mount_with_image(&img, &check);
    let saved = three_checkpoints(m.path());
    let live = tree_listing(m.path());
    let used = df_used(m.path());
    let list = checkpoint_list(m.path());
    assert_eq!(list.lines().count(), 4, "{list}");
    assert!(m.unmount_and_wait().unwrap().success());
    // 20 MiB shared by two files and four trees, 1 MiB changed in big,
    // 1 MiB other: about 22 MiB, written once.
    let size = std::fs::metadata(&img).unwrap().len();
    assert!(
        size > 22 << 20 && size < (22 << 20) + (1 << 20),
        "image of 22 MiB of distinct pages is {size} bytes"
    );
    let info = image_cmd("info", &img);
    common::assert_exit(&info, 0, "image info");
    assert!(info.stdout.contains("format version: 3"), "{}", info.stdout);
    assert!(info.stdout.contains("checkpoints: 3"), "{}", info.stdout);
    for name in ["one", "two", "three"] {
        assert!(
            info.stdout.contains(&format!("checkpoint {name}: saved ")),
            "{}",
            info.stdout
        );
    }
    let checked = image_cmd("check", &img);
    common::assert_exit(&checked, 0, "image check");
    assert!(
        checked.stdout.contains("3 checkpoints"),
        "{}",
        checked.stdout
    );
    // `image ls` stays the live tree.
    assert_eq!(
        image_ls(&img),
        "/big\n/d/g\n/live\n/new/x\n/other\n/sym\n",
        "image ls"
    );

    let mut m = mount_with_image(&img, &check);
    let root = m.path();
    assert_eq!(tree_listing(root), live, "live tree after the reload");
    assert_eq!(checkpoint_list(root), list, "checkpoint list");
    assert_eq!(
        df_used(root),
        used,
        "df after the reload: pages still shared"
    );
    for (name, want) in &saved {
        checkpoint("restore", root, Some(name));
        assert_eq!(
            &tree_listing(root),
            want,
            "restore of {name} after the reload"
        );
    }
    // In "three", copy and big share all but the changed 1 MiB; a write
    // to copy copies one page only.
    let before = df_used(root);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(root.join("copy"))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"zz", 8 << 20).unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(df_used(root), before + 4096, "copy still shares its pages");
    // A cp after the reload shares them again.
    let before = df_used(root);
    common::sh(root, "cp big big2 && cmp big big2");
    assert_eq!(df_used(root), before, "cp shares the loaded pages");
    // New files never take a number a checkpoint holds: restoring "one"
    // brings d/f back under the number it had, and a file made now is
    // another.
    checkpoint("restore", root, Some("one"));
    let f_ino = std::fs::metadata(root.join("d/f")).unwrap().ino();
    checkpoint("restore", root, Some("three"));
    for i in 0..50 {
        std::fs::write(root.join(format!("n{i}")), b"").unwrap();
        let ino = std::fs::metadata(root.join(format!("n{i}"))).unwrap().ino();
        assert_ne!(ino, f_ino, "a new file took the number of d/f in one");
    }
    checkpoint("restore", root, Some("one"));
    assert_eq!(std::fs::metadata(root.join("d/f")).unwrap().ino(), f_ino);
    assert_eq!(&tree_listing(root), &saved[0].1);
    // TRIEFS_CHECK=1: the consistency check at unmount passes.
    assert!(m.unmount_and_wait().unwrap().success());
}

/// Each record of an image: (offset, tag, payload length).
fn image_records(img: &[u8]) -> Vec<(usize, u8, usize)> {
    let mut out = Vec::new();
    let mut at = 16;
    while at + 5 <= img.len() {
        let len = u32::from_le_bytes(img[at + 1..at + 5].try_into().unwrap()) as usize;
        out.push((at, img[at], len));
        at += 5 + len + 4;
    }
    out
}

/// Redoes the checksum of the record at `at`.
fn fix_crc(img: &mut [u8], at: usize) {
    let len = u32::from_le_bytes(img[at + 1..at + 5].try_into().unwrap()) as usize;
    let crc = crc32fast::hash(&img[at..at + 5 + len]);
    img[at + 5 + len..at + 9 + len].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn damaged_checkpoints_in_an_image_are_one_line_errors() {
    let dir = common::short_tempdir();
    let img = dir.path().join("img");
    let mut m = mount_with_image(&img, &[]);
    common::sh(
        m.path(),
        "head -c 1M /dev/urandom > a && cp a b && mkdir d && echo x > d/f",
    );
    checkpoint("save", m.path(), Some("first"));
    common::sh(m.path(), "rm -r d && echo y > c");
    checkpoint("save", m.path(), Some("second"));
    assert!(m.unmount_and_wait().unwrap().success());
    let bytes = std::fs::read(&img).unwrap();
    let recs = image_records(&bytes);
    let ck = recs
        .iter()
        .find(|r| r.1 == 6)
        .expect("a CHECKPOINT record")
        .0;
    let reference = recs.iter().find(|r| r.1 == 5).expect("a REF record").0;
    assert!(reference < ck, "b refers to a's pages in the live tree");
    let ck_ref = recs
        .iter()
        .find(|r| r.1 == 5 && r.0 > ck)
        .expect("REF in a checkpoint")
        .0;
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "cut in a checkpoint",
            bytes[..ck + (bytes.len() - ck) / 2].to_vec(),
            "truncated",
        ),
        (
            "cut after a checkpoint's record",
            bytes[..ck + 20].to_vec(),
            "truncated",
        ),
    ];
    for (what, at) in [
        ("bad page reference", reference),
        ("bad page reference in a checkpoint", ck_ref),
    ] {
        let mut bad = bytes.clone();
        // The first page id: after the inode number and the offset.
        bad[at + 5 + 16..at + 5 + 24].copy_from_slice(&77_777u64.to_le_bytes());
        fix_crc(&mut bad, at);
        cases.push((what, bad, "unknown page"));
    }
    let mut name = bytes.clone();
    name[ck + 5 + 12] = b'/';
    fix_crc(&mut name, ck);
    cases.push(("bad checkpoint name", name, "checkpoint name"));
    for (what, content, why) in cases {
        let bad = dir.path().join("bad");
        std::fs::write(&bad, &content).unwrap();
        let before = hash_file(&bad);
        let mnt = dir.path().join("m2");
        let _ = std::fs::create_dir(&mnt);
        let args = [OsStr::new("--image"), bad.as_os_str()];
        let out = common::run_timed(triefs_mount_cmd(true, &args, &mnt), REFUSAL_TIMEOUT);
        common::assert_one_line_exit(&out, 2, what, &[why]);
        assert!(!common::is_mounted(&mnt), "{what}: nothing mounted");
        assert_eq!(hash_file(&bad), before, "{what}: image changed");
        let out = image_cmd("check", &bad);
        common::assert_one_line_exit(&out, 2, what, &[why]);
    }
}

/// A version 2 image (as triefs wrote before checkpoints were saved: no
/// checkpoint count in END) still mounts, and the next save writes
/// version 3.
#[test]
fn version_2_image_still_mounts() {
    let dir = common::short_tempdir();
    let img = dir.path().join("img");
    let mut m = mount_with_image(&img, &[]);
    populate(m.path());
    let before = describe(m.path());
    assert!(m.unmount_and_wait().unwrap().success());
    let bytes = std::fs::read(&img).unwrap();
    // Version 2: the same records but END without its last field.
    let recs = image_records(&bytes);
    let &(end, tag, len) = recs.last().unwrap();
    assert_eq!((tag, len), (255, 32));
    let mut v2 = bytes[..end + 5 + 24].to_vec();
    v2[8..12].copy_from_slice(&2u32.to_le_bytes());
    v2[end + 1..end + 5].copy_from_slice(&24u32.to_le_bytes());
    v2.extend_from_slice(&[0; 4]);
    fix_crc(&mut v2, end);
    std::fs::write(&img, &v2).unwrap();
    let info = image_cmd("info", &img);
    assert!(info.stdout.contains("format version: 2"), "{}", info.stdout);
    let mut m = mount_with_image(&img, &[]);
    assert_eq!(describe(m.path()), before);
    assert!(m.unmount_and_wait().unwrap().success());
    let info = image_cmd("info", &img);
    assert!(info.stdout.contains("format version: 3"), "{}", info.stdout);
}
