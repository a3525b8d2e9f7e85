//! `--paths-files`: a listing loaded as an inventory of listed files, which
//! hold no data yet report their sizes (`st_size`, `st_blocks`) to `stat`,
//! `ls`, `du` and `find`, are not counted by `df` but by `df -i`, read as
//! zeros and become ordinary sparse files at their first change. tmpfs is
//! the oracle for the blocks a fully written file reports and for what a
//! sparse file of the same size does after the same changes.
// Mount tests drive Linux: tmpfs as the oracle, Linux syscalls and tools.
#![cfg(target_os = "linux")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{MountSpec, Tmpfs, TriefsMount, is_mounted, short_tempdir, statvfs, triefs_bin};

const PAGE: u64 = 4096;
/// Past 4 GiB, and not a whole number of pages.
const BIG: u64 = 5 * (1 << 30) + 1;

/// Runs `script` under `sh -e` in `cwd` with the C locale.
fn run(cwd: &Path, script: &str) -> String {
    common::sh(cwd, &format!("set -e\nexport LC_ALL=C\n{script}"))
}

/// `stat -c '%s %b'` of `path` (size, 512-byte blocks).
fn size_blocks(cwd: &Path, path: &str) -> (u64, u64) {
    let out = run(cwd, &format!("stat -c '%s %b' -- '{path}'"));
    let mut it = out.split_whitespace().map(|w| w.parse::<u64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// The blocks tmpfs reports for a fully written file of `size` bytes.
fn full_blocks(size: u64) -> u64 {
    size.div_ceil(PAGE) * (PAGE / 512)
}

/// Bytes of data used and inodes used, as `df` and `df -i` compute them.
fn df_used(mnt: &Path) -> (u64, u64) {
    let s = statvfs(mnt);
    ((s.f_blocks - s.f_bfree) * s.f_frsize, s.f_files - s.f_ffree)
}

/// A listing with the awkward cases, and the files it must give, with
/// their final sizes.
fn listing() -> (Vec<u8>, BTreeMap<Vec<u8>, u64>) {
    let deep: Vec<String> = (0..40).map(|i| format!("d{i}")).collect();
    let deep = deep.join("/");
    let mut text = Vec::new();
    for line in [
        "zero".to_string(),
        "small\t3".into(),
        "/page\t4096".into(),
        "".into(),
        "d/e/f/g/h\t4097".into(),
        "a/b c/file one\t10000".into(),
        format!("big\t{BIG}"),
        format!("{deep}/leaf\t12345"),
        "tab\tname\t7".into(),
        "crlf\t5\r".into(),
        "   ".into(),
        "dup\t100".into(),
        "./dup\t0005".into(),
    ] {
        text.extend_from_slice(line.as_bytes());
        text.push(b'\n');
    }
    let mut want = BTreeMap::new();
    for (p, s) in [
        ("zero", 0),
        ("small", 3),
        ("page", 4096),
        ("d/e/f/g/h", 4097),
        ("a/b c/file one", 10000),
        ("big", BIG),
        ("tab\tname", 7),
        ("crlf", 5),
        ("dup", 5),
    ] {
        want.insert(p.as_bytes().to_vec(), s);
    }
    want.insert(format!("{deep}/leaf").into_bytes(), 12345);
    (text, want)
}

/// Every file under `root` with its `(st_size, st_blocks)`.
fn files_under(root: &Path) -> BTreeMap<Vec<u8>, (u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let md = fs::symlink_metadata(e.path()).unwrap();
            if md.is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
                out.insert(
                    rel.as_os_str().as_bytes().to_vec(),
                    (md.size(), md.blocks()),
                );
            }
        }
    }
    out
}

/// The listing, mounted with `-v` and a log, `size=1m`, `nr_inodes=1000`,
/// and the namespace's consistency check at unmount (exit 3 if it fails).
fn mount_listing(dir: &Path) -> (TriefsMount, BTreeMap<Vec<u8>, u64>) {
    let (text, want) = listing();
    let list = dir.join("l.txt");
    fs::write(&list, &text).unwrap();
    let m = MountSpec::new()
        .args(["-v", "-o", "size=1m,nr_inodes=1000", "--paths-files"])
        .args([&list])
        .envs(&[("TRIEFS_CHECK", "1")])
        .log()
        .mount();
    (m, want)
}

#[test]
fn listed_files_show_their_sizes_in_stat_ls_du_and_find() {
    let tmp = short_tempdir();
    let (m, want) = mount_listing(tmp.path());
    let mnt = m.path();
    // Exactly the listed files, each with its size and full blocks.
    let got = files_under(mnt);
    let expect: BTreeMap<Vec<u8>, (u64, u64)> = want
        .iter()
        .map(|(p, &s)| (p.clone(), (s, full_blocks(s))))
        .collect();
    assert_eq!(got, expect);
    // The blocks are those tmpfs reports for the same files fully written.
    let t = Tmpfs::new();
    for name in ["zero", "small", "page", "crlf"] {
        let size = want[name.as_bytes()];
        fs::write(t.path().join(name), vec![0u8; size as usize]).unwrap();
        assert_eq!(
            size_blocks(mnt, name),
            size_blocks(t.path(), name),
            "{name}"
        );
        let du = format!("du -B1 -- '{name}' | cut -f1");
        assert_eq!(run(mnt, &du), run(t.path(), &du), "du of {name}");
    }
    fs::create_dir_all(t.path().join("d/e/f/g")).unwrap();
    fs::write(t.path().join("d/e/f/g/h"), vec![0u8; 4097]).unwrap();
    assert_eq!(
        size_blocks(mnt, "d/e/f/g/h"),
        size_blocks(t.path(), "d/e/f/g/h")
    );

    // du: apparent sizes sum to the listing, disk usage to its pages
    // (directories report no blocks); du -sh rounds 5.0000x GiB up.
    let sum: u64 = want.values().sum();
    let pages: u64 = want.values().map(|&s| full_blocks(s) * 512).sum();
    let files_du = |opt: &str| {
        let out = run(
            mnt,
            &format!("find . -type f -print0 | du -c {opt} --files0-from=- | tail -1 | cut -f1"),
        );
        out.trim().parse::<u64>().unwrap()
    };
    assert_eq!(files_du("-b"), sum);
    assert_eq!(files_du("-B1"), pages);
    assert_eq!(run(mnt, "du -s -B1 . | cut -f1").trim(), pages.to_string());
    assert_eq!(run(mnt, "du -sh . | cut -f1").trim(), "5.1G");
    // ls -l shows the size, ls -s the blocks.
    let ls = run(mnt, "ls -ls --block-size=1 big");
    let fields: Vec<&str> = ls.split_whitespace().collect();
    assert_eq!(fields[0], (full_blocks(BIG) * 512).to_string(), "{ls}");
    assert_eq!(fields[5], BIG.to_string(), "{ls}");
    // find -size rounds up to its unit, as for any file.
    let found = |test: &str| {
        let out = run(mnt, &format!("find . -type f {test} | sort"));
        out.lines().map(str::to_string).collect::<Vec<_>>()
    };
    let mut over4k: Vec<String> = want
        .iter()
        .filter(|(_, s)| **s > 4096)
        .map(|(p, _)| format!("./{}", String::from_utf8_lossy(p)))
        .collect();
    over4k.sort();
    assert_eq!(found("-size +4k"), over4k);
    assert_eq!(found("-size +5G"), ["./big"]);
    assert_eq!(found("-size -1k"), ["./zero"]);
    assert_eq!(found("-empty"), ["./zero"]);
    // Owned like loaded directories: the mounting user, 0644 (dirs 0755).
    assert_eq!(
        run(mnt, "stat -c '%a %u %g' big 'a/b c' 'a/b c/file one'"),
        "644 0 0\n755 0 0\n644 0 0\n"
    );

    // They read as zeros, up to their size.
    assert_eq!(fs::read(mnt.join("small")).unwrap(), vec![0u8; 3]);
    assert_eq!(fs::read(mnt.join("zero")).unwrap(), b"");
    run(mnt, "cmp -n 3000000 big /dev/zero");
    assert_eq!(run(mnt, "head -c 5000 page | wc -c").trim(), "4096");
    let mut f = fs::File::open(mnt.join("big")).unwrap();
    f.seek(SeekFrom::Start(BIG - 100)).unwrap();
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, vec![0u8; 100]);

    // The log names the files, and the count.
    let log = m.log_text();
    assert!(
        log.contains(&format!("Adding file big ({BIG} bytes)")),
        "{log}"
    );
    assert!(log.contains("added 11 files from"), "{log}");
}

#[test]
fn ncdu_exports_the_listed_sizes() {
    let tmp = short_tempdir();
    let (m, _) = mount_listing(tmp.path());
    // scripts/test.sh installs ncdu; without it this fails, never skips.
    let out = Command::new("ncdu")
        .args(["-x", "-o-"])
        .arg(m.path())
        .output()
        .expect("run ncdu (package ncdu)");
    assert!(out.status.success(), "{out:?}");
    let export = String::from_utf8_lossy(&out.stdout);
    for (name, size) in [("big", BIG), ("small", 3), ("file one", 10000)] {
        let entry = format!(
            "{{\"name\":\"{name}\",\"asize\":{size},\"dsize\":{}}}",
            full_blocks(size) * 512
        );
        assert!(export.contains(&entry), "{entry} not in {export}");
    }
}

#[test]
fn df_counts_listed_files_as_inodes_not_as_data() {
    let tmp = short_tempdir();
    let (m, want) = mount_listing(tmp.path());
    let mnt = m.path();
    // Inodes: the root, every directory on the way, every file.
    let mut dirs = BTreeSet::new();
    for p in want.keys() {
        let p = Path::new(OsStr::from_bytes(p));
        for a in p.ancestors().skip(1) {
            dirs.insert(a.to_path_buf());
        }
    }
    assert!(dirs.contains(Path::new("")), "the root is one of them");
    let inodes = (dirs.len() + want.len()) as u64;
    assert_eq!(df_used(mnt), (0, inodes), "5 GiB listed in a size=1m mount");
    let df = run(mnt, "df -B1 --output=used,iused . | tail -1");
    assert_eq!(
        df.split_whitespace().collect::<Vec<_>>(),
        ["0".to_string(), inodes.to_string()]
    );
    // Removing one frees its inode, and no data: once the kernel has
    // forgotten it (its FORGET may arrive after the unlink's reply).
    fs::remove_file(mnt.join("crlf")).unwrap();
    let freed = common::wait_until(Duration::from_secs(10), || df_used(mnt) == (0, inodes - 1));
    assert!(freed, "df after rm: {:?}", df_used(mnt));
}

/// A listed file changed by `script` ends as a sparse file of the same size
/// on tmpfs (made with `truncate -s`) changed by it: same size, same blocks.
#[test]
fn a_change_makes_a_listed_file_an_ordinary_sparse_file() {
    let tmp = short_tempdir();
    let (mut m, want) = mount_listing(tmp.path());
    let mnt = m.path().to_path_buf();
    let mnt = mnt.as_path();
    let t = Tmpfs::new();
    let cases = [
        (
            "big",
            "printf x | dd of=big bs=1 seek=4096 conv=notrunc status=none",
        ),
        ("dup", "echo hi > dup"),
        ("small", "printf abc >> small"),
        ("d/e/f/g/h", "fallocate -n -o 0 -l 4096 d/e/f/g/h"),
        ("crlf", "truncate -s 20000 crlf"),
        ("zero", "truncate -s 0 zero"),
        ("tab\tname", "fallocate -p -o 0 -l 1 'tab\tname'"),
    ];
    for (name, script) in cases {
        let size = want[name.as_bytes()];
        run(
            t.path(),
            &format!("mkdir -p d/e/f/g; truncate -s {size} -- '{name}'"),
        );
        run(t.path(), script);
        run(mnt, script);
        assert_eq!(
            size_blocks(mnt, name),
            size_blocks(t.path(), name),
            "{script}"
        );
    }
    assert_eq!(size_blocks(mnt, "big"), (BIG, 8));
    assert_eq!(
        run(
            mnt,
            "dd if=big bs=1 skip=4095 count=3 status=none | od -An -c"
        ),
        "  \\0   x  \\0\n"
    );
    assert_eq!(fs::read(mnt.join("small")).unwrap(), b"\0\0\0abc");
    // Stored pages count in df and against size=, as on tmpfs: big, dup,
    // small and h hold one page each.
    assert_eq!(df_used(mnt).0, 4 * PAGE);
    // size=1m is 256 pages: 252 are left, then the write is short.
    let fill = "dd if=/dev/zero of=big bs=4096 count=300 conv=notrunc 2>&1 || echo rc=$?";
    let out = run(mnt, fill);
    assert!(
        out.contains("No space left on device") && out.contains("rc=1"),
        "{out}"
    );
    assert_eq!(size_blocks(mnt, "big"), (BIG, 253 * 8));
    assert_eq!(df_used(mnt).0, (1 << 20));
    // Unchanged listed files are still reported in full.
    assert_eq!(size_blocks(mnt, "a/b c/file one"), (10000, 24));
    let st = m.unmount_and_wait().expect("daemon exits after umount");
    assert_eq!(st.code(), Some(0), "consistency check at unmount");
}

#[test]
fn other_users_read_listed_files_but_may_not_write_them() {
    let tmp = short_tempdir();
    let (m, _) = mount_listing(tmp.path());
    common::chmod(m.dir.path(), 0o755);
    let mnt = m.path();
    let out = common::as_nobody(Path::new("/bin/sh"))
        .args([
            "-c",
            "head -c 3 small | od -An -tx1; printf x >> small || echo refused",
        ])
        .current_dir(mnt)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout, " 00 00 00\nrefused\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );
    assert_eq!(size_blocks(mnt, "small"), (3, 8), "still listed");
}

/// `triefs [-f] ARGS MNT` must fail with exit 2 and one stderr line
/// mentioning each of `mentions`, leaving nothing mounted: in the
/// foreground and detaching (only in the foreground with `stdin`).
fn refused(args: &[&OsStr], mnt: &Path, stdin: Option<&[u8]>, mentions: &[&str]) {
    for foreground in [true, false] {
        let mut cmd = Command::new(triefs_bin());
        cmd.env_remove("RUST_LOG");
        if foreground {
            cmd.arg("-f");
        }
        cmd.args(args).arg(mnt);
        let run = match stdin {
            None => common::run_timed(cmd, Duration::from_secs(10)),
            Some(_) if !foreground => continue,
            Some(text) => {
                // run_timed gives /dev/null as stdin: go through a file.
                let f = mnt.with_extension("stdin");
                fs::write(&f, text).unwrap();
                cmd.stdin(fs::File::open(&f).unwrap());
                let out = cmd.output().unwrap();
                common::Output {
                    status: Some(out.status),
                    stdout: String::from_utf8_lossy(&out.stdout).into(),
                    stderr: String::from_utf8_lossy(&out.stderr).into(),
                }
            }
        };
        let what = format!("{args:?} (foreground={foreground})");
        common::assert_one_line_exit(&run, 2, &what, mentions);
        assert!(!is_mounted(mnt), "{what} left a mount behind");
    }
}

#[test]
fn bad_lines_are_one_line_errors_with_their_line_number() {
    common::require_mount();
    let tmp = short_tempdir();
    let mnt = tmp.path().join("m");
    fs::create_dir(&mnt).unwrap();
    let _g = common::Unmounts(vec![mnt.clone()]);
    let list: PathBuf = tmp.path().join("l.txt");
    let dirs = tmp.path().join("dirs.txt");
    fs::write(&dirs, "/x/y\n").unwrap();
    let long = "n".repeat(256);
    let cases: Vec<(String, Vec<&str>, Vec<&str>)> = vec![
        ("a\t1\nb\tabc\n".into(), vec![], vec![":2: bad size 'abc'"]),
        ("a\t1\nb\t\n".into(), vec![], vec![":2: bad size ''"]),
        ("a\t-1\n".into(), vec![], vec![":1: bad size '-1'"]),
        (
            "\n\na\t9223372036854775808\n".into(),
            vec![],
            vec![":3: size 9223372036854775808 is larger than a file can be"],
        ),
        (
            "a\t99999999999999999999\n".into(),
            vec![],
            vec![":1: size 99999999999999999999 is larger"],
        ),
        (
            "a/b\t1\na\t2\n".into(),
            vec![],
            vec![":2: the path is a directory"],
        ),
        ("/\t1\n".into(), vec![], vec![":1: the path is a directory"]),
        (
            "f\t1\nf/g\t2\n".into(),
            vec![],
            vec![":2: a parent is a file"],
        ),
        (
            format!("ok\n{long}\t1\n"),
            vec![],
            vec![":2: a component is longer than 255 bytes"],
        ),
        (
            "a/../b\t1\n".into(),
            vec![],
            vec![":1: '..' and NUL are not allowed"],
        ),
        (
            "a\nb\nc\n".into(),
            vec!["-o", "nr_inodes=3"],
            vec![":3: inode limit reached"],
        ),
        // --paths loads first; a file line naming one of its directories.
        (
            "x/y/z\t1\nx/y\t1\n".into(),
            vec!["--paths"],
            vec![":2: the path is a directory"],
        ),
    ];
    for (text, extra, mentions) in cases {
        fs::write(&list, &text).unwrap();
        let mut args: Vec<&OsStr> = Vec::new();
        for a in &extra {
            args.push(OsStr::new(a));
            if *a == "--paths" {
                args.push(dirs.as_os_str());
            }
        }
        args.extend([OsStr::new("--paths-files"), list.as_os_str()]);
        let mut mentions = mentions.clone();
        let name = list.to_str().unwrap();
        mentions.push(name);
        refused(&args, &mnt, None, &mentions);
    }
    // The mount option, and stdin, report the same way.
    fs::write(&list, "ok\t1\nbad\tx\n").unwrap();
    let opt = format!("paths_files={}", list.display());
    refused(
        &[OsStr::new("-o"), OsStr::new(&opt)],
        &mnt,
        None,
        &[&format!("{}:2: bad size 'x'", list.display())],
    );
    refused(
        &[OsStr::new("--paths-files"), OsStr::new("-")],
        &mnt,
        Some(b"ok\n\nbad\t1x\n"),
        &["-:3: bad size '1x'"],
    );
    refused(
        &[
            OsStr::new("--paths"),
            OsStr::new("-"),
            OsStr::new("--paths-files"),
            OsStr::new("-"),
        ],
        &mnt,
        Some(b"a\n"),
        &["cannot both read stdin"],
    );
}

#[test]
fn paths_and_paths_files_together_and_from_stdin() {
    let tmp = short_tempdir();
    let dirs = tmp.path().join("dirs.txt");
    fs::write(&dirs, "/x/y\n/empty\n").unwrap();
    let mut m = MountSpec::new()
        .args([OsStr::new("--paths"), dirs.as_os_str()])
        .args(["--paths-files", "-"])
        .piped_stdin()
        .spawn();
    {
        use std::io::Write;
        let mut stdin = m.take_stdin();
        stdin.write_all(b"x/y/f\t8193\nx/g\n").unwrap();
    }
    m.wait_mounted();
    let mnt = m.path();
    assert_eq!(
        run(mnt, "find . | sort"),
        ".\n./empty\n./x\n./x/g\n./x/y\n./x/y/f\n"
    );
    assert_eq!(size_blocks(mnt, "x/y/f"), (8193, 24));
    assert_eq!(
        run(mnt, "stat -c %F x/g x/y"),
        "regular empty file\ndirectory\n"
    );
}

/// An image keeps a listed file's size and stored pages, not its listed
/// state; loading the listing again over the image lists untouched files
/// again and keeps written ones.
#[test]
fn images_keep_sizes_and_a_listing_loads_again_over_them() {
    let tmp = short_tempdir();
    let img = tmp.path().join("i.tfs");
    let list = tmp.path().join("l.txt");
    fs::write(&list, format!("u\t{BIG}\nw\t10000\n")).unwrap();
    let with_list = [
        OsStr::new("--image"),
        img.as_os_str(),
        OsStr::new("--paths-files"),
        list.as_os_str(),
    ];
    let check = [("TRIEFS_CHECK", "1")];
    let mut m = TriefsMount::with_args_env(with_list, &check);
    run(m.path(), "printf data | dd of=w conv=notrunc status=none");
    assert_eq!(size_blocks(m.path(), "u"), (BIG, full_blocks(BIG)));
    assert_eq!(size_blocks(m.path(), "w"), (10000, 8));
    assert_eq!(m.unmount_and_wait().and_then(|s| s.code()), Some(0));
    drop(m);

    let mut m = TriefsMount::with_args_env([OsStr::new("--image"), img.as_os_str()], &check);
    assert_eq!(
        size_blocks(m.path(), "u"),
        (BIG, 0),
        "not listed after reload"
    );
    assert_eq!(size_blocks(m.path(), "w"), (10000, 8));
    assert_eq!(m.unmount_and_wait().and_then(|s| s.code()), Some(0));
    drop(m);

    let mut m = TriefsMount::with_args_env(with_list, &check);
    assert_eq!(size_blocks(m.path(), "u"), (BIG, full_blocks(BIG)));
    assert_eq!(size_blocks(m.path(), "w"), (10000, 8));
    assert_eq!(
        run(m.path(), "head -c 5 w | od -An -c"),
        "   d   a   t   a  \\0\n"
    );
    assert_eq!(m.unmount_and_wait().and_then(|s| s.code()), Some(0));
}
