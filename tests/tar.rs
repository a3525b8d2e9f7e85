//! `--from-tar` and `-o tar=`: a GNU tar archive of a tree built with real
//! tools on a tmpfs, mounted as the initial tree, against the oracle: the
//! same archive extracted by `tar -xpf --numeric-owner --xattrs
//! --xattrs-include='*'` onto a second tmpfs. Same `find -printf` lines
//! (type, mode, owner, size, link count, mtime, link target), same file
//! contents, same extended attributes and ACLs. Then the other way: a
//! namespace written by `triefs::tar::write_all` (pages of the checkpoint
//! export) is read by GNU tar into the same tree. Bad archives, a missing
//! one, a full mount and an image are refused in one line, nothing mounted.
// Mount tests drive Linux: tmpfs as the oracle, Linux syscalls and tools.
#![cfg(target_os = "linux")]

mod common;

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{MountSpec, Tmpfs, TriefsMount, is_mounted, short_tempdir, triefs_bin};

/// Runs `script` under `sh -e` in `cwd` with the C locale.
fn run(cwd: &Path, script: &str) -> String {
    common::sh(cwd, &format!("set -e\nexport LC_ALL=C\n{script}"))
}

/// Builds the source tree in `dir` with real tools: odd modes, set-id and
/// sticky bits, hard links, symlinks (one dangling), a fifo, a device, a
/// sparse file, a path over 100 bytes (and a name over 100), extended
/// attributes, an access ACL and a default ACL set after a file was
/// created under it, fixed old mtimes on a file and on a directory with
/// contents.
fn build_tree(dir: &Path) {
    run(
        dir,
        r#"
mkdir -p a/b/c ro emptydir acld setgid
echo hello > a/b/c/f
printf 'data\n%.0s' $(seq 1 3000) > a/big
ln a/b/c/f a/hard1
ln a/b/c/f hard2
ln -s a/b/c/f sym
ln -s does/not/exist dangling
mkfifo fifo
mknod cdev c 4 300
mknod bdev b 8 1
: > empty
truncate -s 3M sparse
echo tail >> sparse
echo s > a/suid && chmod 4755 a/suid
echo g > a/sgid && chmod 2711 a/sgid
echo z > a/none && chmod 0 a/none
echo r > ro/inside && chmod 0444 ro/inside
chmod 0555 ro
chmod 1777 a/b
chmod 2775 setgid && touch setgid/child
L=$(printf 'long%.0s' $(seq 1 30))
mkdir -p "$L/$L" && echo deep > "$L/$L/file"
touch "n$(printf 'x%.0s' $(seq 1 150))"
setfattr -n user.plain -v value a/b/c/f
setfattr -n user.bin -v 0x000aff0a01 a/big
setfattr -n trusted.t -v tv emptydir
setfattr -n user.dir -v dv a/b
touch acld/before
setfacl -m u:nobody:rw,g:nogroup:r a/big
setfacl -d -m u:nobody:rx acld
touch acld/after
touch -d '2001-02-03 04:05:06.123456789' a/b/c/f
touch -d '1999-12-31 23:59:59.5' a/b/c
touch -h -d '2005-05-05 05:05:05' sym
"#,
    );
}

/// What `find` shows of every name under `root` (mtimes to the
/// nanosecond), sorted.
fn find_lines(root: &Path) -> String {
    run(
        root,
        r"find . -printf '%P %y %m %U %G %s %n %T@ %l\n' | sort",
    )
}

/// `getfattr -d -m -` (hex values) of every name under `root`, file by
/// file in sorted order.
fn xattr_dump(root: &Path) -> String {
    run(
        root,
        r#"find . | sort | while IFS= read -r f; do getfattr -h -d -m - -e hex -- "$f" 2>/dev/null || true; done"#,
    )
}

/// The regular files under `root`, for `cmp`.
fn regular_files(root: &Path) -> Vec<String> {
    run(root, "find . -type f | sort")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Asserts that `got` holds the tree `want` holds: find lines, contents,
/// extended attributes.
#[track_caller]
fn assert_same_tree(want: &Path, got: &Path) {
    let (w, g) = (find_lines(want), find_lines(got));
    assert!(w.lines().count() > 25, "the oracle tree is there: {w}");
    assert_eq!(g, w, "find -printf differs");
    for f in regular_files(want) {
        let st = Command::new("cmp")
            .arg(want.join(&f))
            .arg(got.join(&f))
            .status()
            .unwrap();
        assert!(st.success(), "contents of {f} differ");
    }
    let (wx, gx) = (xattr_dump(want), xattr_dump(got));
    assert!(wx.contains("user.plain") && wx.contains("system.posix_acl_default"));
    assert_eq!(gx, wx, "extended attributes differ");
}

/// The source tree and its GNU tar archive (`tar --xattrs -cf`), in a
/// temp dir; the tmpfs holding the tree is returned to keep it mounted.
fn archive() -> (Tmpfs, tempfile::TempDir, PathBuf) {
    let src = Tmpfs::new();
    build_tree(src.path());
    let dir = short_tempdir();
    let tar = dir.path().join("tree.tar");
    let st = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "-cf"])
        .arg(&tar)
        .arg("-C")
        .arg(src.path())
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar -cf");
    (src, dir, tar)
}

/// The oracle: `tar` extracting `archive` onto a fresh tmpfs as root.
fn extracted(archive: &Path) -> Tmpfs {
    let t = Tmpfs::new();
    let st = Command::new("tar")
        .args([
            "-xpf",
            archive.to_str().unwrap(),
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "-C",
        ])
        .arg(t.path())
        .status()
        .unwrap();
    assert!(st.success(), "tar -xpf");
    t
}

#[test]
fn from_tar_mounts_what_tar_extracts_onto_tmpfs() {
    let (_src, _dir, tar) = archive();
    let oracle = extracted(&tar);
    let m = TriefsMount::new(&["--from-tar", tar.to_str().unwrap()]);
    assert_same_tree(oracle.path(), m.path());
    // And the mount works as a filesystem afterwards: the loaded tree is
    // an ordinary one.
    run(
        m.path(),
        "echo more >> a/b/c/f && test \"$(cat hard2)\" = \"$(printf 'hello\\nmore')\" \
         && rm a/hard1 && test $(stat -c %h hard2) = 2 && mkdir a/b/new",
    );
}

#[test]
fn o_tar_is_the_same_as_from_tar() {
    let (_src, _dir, tar) = archive();
    let oracle = extracted(&tar);
    let opt = format!("tar={}", tar.display());
    let m = TriefsMount::new(&["-o", &opt]);
    assert_same_tree(oracle.path(), m.path());
}

#[test]
fn o_mode_uid_gid_win_over_the_archives_root() {
    let (_src, _dir, tar) = archive();
    let m = TriefsMount::new(&[
        "--from-tar",
        tar.to_str().unwrap(),
        "-o",
        "mode=1770,uid=12,gid=34",
    ]);
    let root = run(m.path(), "stat -c '%a %u %g' .");
    assert_eq!(root.trim(), "1770 12 34");
    // Without them, the archive's root member gives the root its mode.
    let m = TriefsMount::new(&["--from-tar", tar.to_str().unwrap()]);
    let root = run(m.path(), "stat -c '%a %u %g' .");
    assert_eq!(root.trim(), "755 0 0");
}

#[test]
fn gnu_tar_reads_the_export_of_a_namespace_into_the_same_tree() {
    // No mount of triefs: the library loads the archive and writes it
    // back through the paged export; GNU tar lists and extracts it.
    let (_src, dir, tar) = archive();
    let mut ns = triefs::namespace::Namespace::new(
        0,
        0,
        0o755,
        triefs::namespace::Limits::from_options(Some(0), Some(0)),
    );
    triefs::tar::import(&mut ns, fs::File::open(&tar).unwrap()).unwrap();
    let out = dir.path().join("export.tar");
    triefs::tar::write_all(&ns, fs::File::create(&out).unwrap()).unwrap();
    // Pages of the sizes a daemon serves concatenate to the same archive.
    let whole = fs::read(&out).unwrap();
    let plan = triefs::tar::ExportPlan::new(&ns);
    for limit in [511, 512, 16 << 10] {
        let mut bytes = Vec::new();
        let mut cursor = triefs::tar::Cursor::START;
        while let Some(next) = plan.page(&ns, cursor, limit, &mut bytes).unwrap() {
            cursor = next;
        }
        assert!(bytes == whole, "pages of {limit} bytes differ");
    }
    let listing = run(dir.path(), "tar -tvf export.tar");
    assert!(listing.contains("hard2 link to a/b/c/f"), "{listing}");
    assert!(listing.contains("sym -> a/b/c/f"), "{listing}");
    let oracle = extracted(&tar);
    let again = extracted(&out);
    assert_same_tree(oracle.path(), again.path());
}

/// `triefs [-f] ARGS MNT` must fail with exit 2 and one stderr line
/// mentioning each of `mentions`, leaving nothing mounted, in the
/// foreground and detaching.
fn refused(args: &[&OsStr], mnt: &Path, mentions: &[&str]) {
    for foreground in [true, false] {
        let mut cmd = Command::new(triefs_bin());
        cmd.env_remove("RUST_LOG");
        if foreground {
            cmd.arg("-f");
        }
        cmd.args(args).arg(mnt);
        let out = common::run_timed(cmd, Duration::from_secs(20));
        let what = format!("{args:?} (foreground={foreground})");
        common::assert_one_line_exit(&out, 2, &what, mentions);
        assert!(!is_mounted(mnt), "{what} left a mount behind");
    }
}

#[test]
fn bad_archives_and_full_mounts_are_refused_in_one_line() {
    common::require_mount();
    let (_src, dir, tar) = archive();
    let mnt = dir.path().join("m");
    fs::create_dir(&mnt).unwrap();
    let arg = |s: &str| OsStr::new(s).to_owned();
    let from = |p: &Path| [arg("--from-tar"), p.as_os_str().to_owned()];
    // A missing archive.
    let missing = dir.path().join("missing.tar");
    refused(
        &from(&missing).each_ref().map(|s| s.as_os_str()),
        &mnt,
        &["missing.tar", "No such file"],
    );
    // A corrupt first header: its checksum is wrong.
    let mut bytes = fs::read(&tar).unwrap();
    bytes[3] ^= 0x20;
    let corrupt = dir.path().join("corrupt.tar");
    fs::write(&corrupt, &bytes).unwrap();
    refused(
        &from(&corrupt).each_ref().map(|s| s.as_os_str()),
        &mnt,
        &["corrupt.tar", "checksum", "at byte 0"],
    );
    // Cut in the middle of the data of the big file.
    let whole = fs::read(&tar).unwrap();
    let cut = dir.path().join("cut.tar");
    let big = find_member(&whole, b"./a/big").unwrap();
    fs::write(&cut, &whole[..big + 512 + 1000]).unwrap();
    refused(
        &from(&cut).each_ref().map(|s| s.as_os_str()),
        &mnt,
        &["cut.tar", "./a/big", "truncated"],
    );
    // More data than size= allows: the member that does not fit is named.
    let mut args = from(&tar).to_vec();
    args.extend([arg("-o"), arg("size=64k")]);
    let refs: Vec<&OsStr> = args.iter().map(|s| s.as_os_str()).collect();
    refused(&refs, &mnt, &["tree.tar", "no space left", "size limit"]);
    // More entries than nr_inodes= allows.
    let mut args = from(&tar).to_vec();
    args.extend([arg("-o"), arg("nr_inodes=10")]);
    let refs: Vec<&OsStr> = args.iter().map(|s| s.as_os_str()).collect();
    refused(&refs, &mnt, &["tree.tar", "no space left", "inode limit"]);
    // Not with an image, whichever way either is given.
    let image = dir.path().join("x.tfs");
    let opt_tar = format!("tar={}", tar.display());
    let opt_image = format!("image={}", image.display());
    for args in [
        vec![
            arg("--from-tar"),
            tar.clone().into(),
            arg("--image"),
            image.clone().into(),
        ],
        vec![arg("-o"), arg(&opt_tar), arg("-o"), arg(&opt_image)],
    ] {
        let refs: Vec<&OsStr> = args.iter().map(|s| s.as_os_str()).collect();
        refused(&refs, &mnt, &["--from-tar", "image"]);
    }
    assert!(!image.exists(), "no image written");
    // One stdin for two loads.
    refused(
        &[
            OsStr::new("--paths"),
            OsStr::new("-"),
            OsStr::new("--from-tar"),
            OsStr::new("-"),
        ],
        &mnt,
        &["--from-tar", "cannot both read stdin"],
    );
}

/// The offset of the header of the member named `name` in `archive`.
fn find_member(archive: &[u8], name: &[u8]) -> Option<usize> {
    archive
        .chunks(512)
        .position(|b| b.starts_with(name) && b[name.len()] == 0 && b[257..262] == *b"ustar")
        .map(|i| i * 512)
}

#[test]
fn from_tar_reads_stdin_and_follows_paths() {
    let (_src, dir, tar) = archive();
    let paths = dir.path().join("paths.txt");
    fs::write(&paths, "/listed/dir\n/a/b/listed\n").unwrap();
    let mut m = MountSpec::new()
        .args(["--paths", paths.to_str().unwrap(), "--from-tar", "-"])
        .piped_stdin()
        .spawn();
    let mut stdin = m.take_stdin();
    std::io::copy(&mut fs::File::open(&tar).unwrap(), &mut stdin).unwrap();
    drop(stdin);
    m.wait_mounted();
    // The listing came first; the archive's members then took their
    // attributes, the listed directories kept theirs.
    let st = run(
        m.path(),
        "stat -c '%a' a/b listed/dir a/b/listed; cat a/b/c/f",
    );
    assert_eq!(st, "1777\n755\n755\nhello\n");
}

#[test]
fn gnu_tar_takes_long_names_that_are_not_utf8_without_a_word() {
    use std::os::unix::ffi::OsStrExt;
    use triefs::namespace::inode::{Kind, ROOT_INO};
    let mut ns = triefs::namespace::Namespace::new(
        0,
        0,
        0o755,
        triefs::namespace::Limits::from_options(Some(0), Some(0)),
    );
    let mut name = b"caf\xe9-".to_vec();
    name.resize(150, b'n');
    let spec = triefs::namespace::NewNode {
        kind: Kind::RegularFile,
        perm: 0o640,
        uid: 5,
        gid: 6,
        rdev: 0,
        target: None,
    };
    let f = ns
        .create_node(ROOT_INO, OsStr::from_bytes(&name), spec)
        .unwrap();
    ns.write(f.attr.ino.0, 0, b"body").unwrap();
    let dir = short_tempdir();
    let out = dir.path().join("x.tar");
    triefs::tar::write_all(&ns, fs::File::create(&out).unwrap()).unwrap();
    let t = Tmpfs::new();
    let run = Command::new("tar")
        .args(["-xpf", out.to_str().unwrap(), "-C"])
        .arg(t.path())
        .output()
        .unwrap();
    assert!(run.status.success());
    assert_eq!(String::from_utf8_lossy(&run.stderr), "", "no warnings");
    let got = fs::read(t.path().join(OsStr::from_bytes(&name))).unwrap();
    assert_eq!(got, b"body");
}
