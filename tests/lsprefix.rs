//! `triefs ls-prefix`: the leaf paths under a prefix, answered by the
//! daemon page by page, compared with what a walk through the kernel finds.
// Mount tests drive Linux: tmpfs as the oracle, Linux syscalls and tools.
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use common::{Tmpfs, TriefsMount, proc_kib, reset_peak_rss, short_tempdir, triefs_bin};

fn ls_prefix(args: &[&Path]) -> Output {
    Command::new(triefs_bin())
        .arg("ls-prefix")
        .args(args)
        .output()
        .expect("run triefs ls-prefix")
}

fn lines(out: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(out)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Leaves found by walking `root` through the kernel: every entry that is
/// not a directory, and every empty directory; as absolute paths inside
/// the mount ("/" for an empty root).
fn walk_leaves(root: &Path, rel: &str, out: &mut BTreeSet<String>) {
    let dir = root.join(rel.trim_start_matches('/'));
    let mut empty = true;
    for e in fs::read_dir(&dir).expect("readdir") {
        let e = e.expect("entry");
        empty = false;
        let name = e.file_name().to_string_lossy().into_owned();
        let p = format!("{rel}/{name}");
        if e.file_type().expect("type").is_dir() {
            walk_leaves(root, &p, out);
        } else {
            out.insert(p);
        }
    }
    if empty {
        out.insert(if rel.is_empty() {
            "/".into()
        } else {
            rel.into()
        });
    }
}

/// A tree from a `--paths` list (deep, shared prefixes, long names) plus
/// files, symlinks and empty directories made through the mount.
fn populate() -> (tempfile::TempDir, TriefsMount) {
    let tmp = short_tempdir();
    let list = tmp.path().join("paths");
    let mut text = String::new();
    for i in 0..3000 {
        let long = "n".repeat(40 + i % 150);
        text.push_str(&format!(
            "/srv/site{}/assets/{}/img{i}\n/usr/share/doc/pkg{}/{long}{i}\n",
            i % 7,
            i % 31,
            i % 101
        ));
    }
    fs::write(&list, text).expect("write paths");
    let m = TriefsMount::new(&["--paths", list.to_str().expect("utf-8 path")]);
    let root = m.path();
    fs::write(root.join("srv/site1/index.html"), "hello").expect("file");
    std::os::unix::fs::symlink("site1", root.join("srv/current")).expect("symlink");
    fs::create_dir_all(root.join("var/empty/one")).expect("mkdir");
    (tmp, m)
}

#[test]
fn ls_prefix_matches_a_walk_of_the_mount() {
    let (_tmp, m) = populate();
    let root = m.path();
    for prefix in ["", "/srv", "srv/site3/", "usr/share/doc", "var/empty/one"] {
        let out = ls_prefix(&[root, Path::new(prefix)]);
        assert!(
            out.status.success(),
            "ls-prefix {prefix:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = lines(&out.stdout);
        let mut want = BTreeSet::new();
        let rel = prefix.trim_matches('/');
        walk_leaves(
            root,
            &if rel.is_empty() {
                String::new()
            } else {
                format!("/{rel}")
            },
            &mut want,
        );
        let want: Vec<String> = want.into_iter().collect();
        assert_eq!(got.len(), want.len(), "prefix {prefix:?}");
        assert_eq!(
            got, want,
            "prefix {prefix:?}: sorted output differs from the walk"
        );
    }
    // The whole listing takes many pages (well over 16 KiB of paths).
    let all = ls_prefix(&[root]);
    assert!(all.stdout.len() > 200_000, "{} bytes", all.stdout.len());
    // Unsorted output holds the same paths.
    let u = Command::new(triefs_bin())
        .args(["ls-prefix", "-U"])
        .arg(root)
        .output()
        .expect("run");
    assert!(u.status.success());
    let mut a = lines(&u.stdout);
    a.sort();
    assert_eq!(a, lines(&all.stdout));
}

#[test]
fn ls_prefix_errors_are_one_line() {
    let (_tmp, m) = populate();
    let root = m.path();
    let t = Tmpfs::new();
    let cases: [(&Path, &str, &str); 3] = [
        (root, "no/such/dir", "No such file or directory"),
        (root, "srv/site1/index.html", "Not a directory"),
        (t.path(), "", "not a directory of a triefs mount"),
    ];
    for (mnt, prefix, want) in cases {
        let out = ls_prefix(&[mnt, Path::new(prefix)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{prefix:?}: {err}");
        assert!(err.contains(want), "{prefix:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn ls_prefix_skips_what_the_caller_may_not_list() {
    let m = TriefsMount::new(&["-o", "allow_other"]);
    let root = m.path();
    common::chmod(root.parent().expect("parent"), 0o755);
    for d in ["open/a", "closed/secret/deep", "groupdir/x"] {
        fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    common::chmod(&root.join("closed"), 0o700);
    // Group 4242 may list groupdir; the user gets it as a supplementary group.
    std::os::unix::fs::chown(root.join("groupdir"), Some(0), Some(4242)).expect("chown");
    common::chmod(&root.join("groupdir"), 0o750);

    // The build may live where nobody cannot go (a clone in /root).
    let bin = common::shared_binary();
    let as_nobody = |groups: &[u32]| {
        common::run_as(
            Command::new(&bin.path).arg("ls-prefix").arg(root),
            common::NOBODY,
            common::NOBODY,
            groups,
        )
        .output()
        .expect("run as nobody")
    };
    let out = as_nobody(&[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines(&out.stdout), ["/open/a"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied"));
    let out = as_nobody(&[4242]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(lines(&out.stdout), ["/groupdir/x", "/open/a"]);
    // Root sees everything.
    let out = ls_prefix(&[root]);
    assert!(out.status.success());
    assert_eq!(
        lines(&out.stdout),
        ["/closed/secret/deep", "/groupdir/x", "/open/a"]
    );
}

/// A `--paths` list of `depth` one-byte components, and a few other paths.
fn deep_chain_list(tmp: &Path, depth: usize) -> std::path::PathBuf {
    let list = tmp.join("paths");
    let mut text = "/a".repeat(depth);
    text.push_str("\n/a/b/c\n/z/y\n");
    fs::write(&list, text).expect("write paths");
    list
}

/// Runs `ls-prefix` on the whole mount of `m` (as `as_user`'s copy of the
/// binary when given) and checks that the daemon's peak memory during it
/// stays within 8 MiB of its resting size; returns the listing's output.
fn ls_prefix_within_8_mib(m: &TriefsMount, run: impl FnOnce() -> Output) -> Output {
    reset_peak_rss(m.pid());
    let rest = proc_kib(m.pid(), "VmHWM");
    let out = run();
    let peak = proc_kib(m.pid(), "VmHWM");
    assert!(
        peak <= rest + 8 * 1024,
        "daemon peak {peak} KiB during ls-prefix, {rest} KiB at rest"
    );
    out
}

/// The daemon's memory during an ls-prefix of a 40,000-deep chain stays
/// within a few MB of its resting size. (Each level used to hold a copy
/// of its whole prefix: 1.7 GB for this chain.)
#[test]
fn ls_prefix_of_a_deep_chain_keeps_the_daemon_small() {
    let tmp = short_tempdir();
    let list = deep_chain_list(tmp.path(), 40_000);
    let m = TriefsMount::new(&["--paths", list.to_str().expect("utf-8 path")]);
    let out = ls_prefix_within_8_mib(&m, || ls_prefix(&[m.path()]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(lines(&out.stdout), ["/a/b/c", "/z/y"]);
}

/// The same attack by another user of a shared mount (`allow_other`,
/// mode 1777): 4,000 nested directories with 255-byte names (a 1 MB path)
/// made by `nobody` used to take the daemon to 2 GB during one ls-prefix
/// by `nobody`.
#[test]
fn ls_prefix_of_deep_long_names_by_another_user_keeps_the_daemon_small() {
    let m = TriefsMount::new(&["-o", "allow_other,mode=1777"]);
    common::chmod(m.path().parent().expect("parent"), 0o755);
    let root = common::cpath(m.path());
    let name = std::ffi::CString::new("d".repeat(255)).expect("name");
    let mut nest = Command::new("true");
    // SAFETY: between fork and exec only async-signal-safe syscalls run,
    // on memory allocated before the fork.
    unsafe {
        nest.pre_exec(move || {
            common::become_user(common::NOBODY, common::NOBODY, &[])?;
            let mut dir = libc::open(root.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
            for _ in 0..4000 {
                if dir < 0 || libc::mkdirat(dir, name.as_ptr(), 0o755) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let next = libc::openat(dir, name.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
                libc::close(dir);
                dir = next;
            }
            libc::close(dir);
            Ok(())
        });
    }
    let st = nest.status().expect("nest directories as nobody");
    assert!(st.success());
    fs::create_dir(m.path().join("other")).expect("mkdir");
    // The build may live where nobody cannot go (a clone in /root).
    let bin = common::shared_binary();
    let out = ls_prefix_within_8_mib(&m, || {
        common::as_nobody(&bin.path)
            .arg("ls-prefix")
            .arg(m.path())
            .output()
            .expect("ls-prefix as nobody")
    });
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(lines(&out.stdout), ["/other"]);
}

/// One path too long to return does not hide the rest of the tree: it is
/// reported on stderr (its start and its length) and the exit code is 1.
#[test]
fn ls_prefix_reports_an_over_long_path_and_lists_the_rest() {
    let tmp = short_tempdir();
    let list = deep_chain_list(tmp.path(), 9000);
    let m = TriefsMount::new(&["--paths", list.to_str().expect("utf-8 path")]);
    for prefix in [None, Some(Path::new("a"))] {
        let out = match prefix {
            None => ls_prefix(&[m.path()]),
            Some(p) => ls_prefix(&[m.path(), p]),
        };
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        let want: &[&str] = match prefix {
            None => &["/a/b/c", "/z/y"],
            Some(_) => &["/a/b/c"],
        };
        assert_eq!(lines(&out.stdout), want);
        let err_lines = lines(&out.stderr);
        assert_eq!(err_lines.len(), 1, "{err}");
        // The directory at which the listing stops: the first one, relative
        // to the prefix, whose children would pass 4096 bytes ("a/a/...").
        assert!(
            err_lines[0].contains("is a directory whose path is 4095 bytes long"),
            "{err}"
        );
        assert!(err_lines[0].contains("/a/a/a/a/"), "{err}");
        assert!(err_lines[0].len() < 400, "{err}");
    }
}
