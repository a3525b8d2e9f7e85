//! POSIX ACLs, differential: the same `setfacl`/`getfacl`/`chacl`, `cp -a`,
//! `tar --acls` runs and raw system calls on a tmpfs oracle and on a
//! triefs mount (`-o allow_other`), as root and as `nobody`, must print the
//! same and fail with the same errnos. Each test also checks that tmpfs
//! gave what the test meant to exercise, so none passes vacuously.
//!
//! One difference is asserted by name: FUSE passes ACLs of at most one
//! page (511 entries); tmpfs takes larger ones.
// Mount tests drive Linux: tmpfs as the oracle, Linux syscalls and tools.
#![cfg(target_os = "linux")]

mod common;

use std::ffi::{CString, OsStr};
use std::path::Path;
use std::process::Command;

use common::{NOBODY, Tmpfs, TriefsMount, cpath, errno, run_as};

/// A group `nobody` is put into as a supplementary group in some checks.
const STAFF: u32 = 3000;

/// Who runs a script.
#[derive(Clone, Copy, Debug)]
enum Who {
    Root,
    Nobody,
    /// nobody with [`STAFF`] as a supplementary group.
    NobodyStaff,
}

/// A tmpfs oracle and a triefs mount, both reachable by every user.
struct Pair {
    tmp: Tmpfs,
    fuse: TriefsMount,
}

impl Pair {
    fn new() -> Pair {
        Pair::with_fuse(TriefsMount::new(&["-o", "allow_other"]))
    }

    fn with_fuse(fuse: TriefsMount) -> Pair {
        let tmp = Tmpfs::new();
        common::chmod(tmp.dir.path(), 0o755);
        common::chmod(fuse.dir.path(), 0o755);
        Pair { tmp, fuse }
    }

    fn roots(&self) -> [&Path; 2] {
        [self.tmp.path(), self.fuse.path()]
    }

    /// Runs `script` with `sh` in each root as `who` (C locale), returning
    /// for each its exit code and interleaved stdout and stderr.
    fn run(&self, who: Who, script: &str) -> [String; 2] {
        self.roots().map(|root| run_script(root, who, script))
    }

    /// [`Pair::run`], asserting both printed the same; returns that.
    #[track_caller]
    fn same(&self, who: Who, script: &str) -> String {
        let [t, f] = self.run(who, script);
        if t != f {
            let (tl, fl): (Vec<_>, Vec<_>) = (t.lines().collect(), f.lines().collect());
            let at = (0..).find(|&i| tl.get(i) != fl.get(i)).unwrap_or(0);
            let around =
                |l: &[&str]| l[at.saturating_sub(8).min(l.len())..(at + 8).min(l.len())].join("\n");
            panic!(
                "tmpfs and triefs differ as {who:?} at output line {at} of:\n{script}\n                 --- tmpfs:\n{}\n--- triefs:\n{}",
                around(&tl),
                around(&fl)
            );
        }
        t
    }
}

fn run_script(root: &Path, who: Who, script: &str) -> String {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("exec 2>&1\n{script}"))
        .current_dir(root)
        .env("LC_ALL", "C")
        .env_remove("RUST_LOG");
    match who {
        Who::Root => &mut cmd,
        Who::Nobody => run_as(&mut cmd, NOBODY, NOBODY, &[]),
        Who::NobodyStaff => run_as(&mut cmd, NOBODY, NOBODY, &[STAFF]),
    };
    let out = cmd.output().expect("run sh");
    format!(
        "exit {:?}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout)
    )
}

#[track_caller]
fn assert_has(out: &str, what: &str) {
    assert!(
        out.contains(what),
        "test expectation wrong: tmpfs (the oracle) printed no {what:?}:\n{out}"
    );
}

#[test]
fn setfacl_getfacl_chacl_and_modes() {
    let p = Pair::new();
    let out = p.same(
        Who::Root,
        "umask 022
        touch f
        setfacl -m u:nobody:rw f && getfacl f && stat -c '%a' f && ls -l f | cut -c1-11
        setfacl -m m::r f && getfacl f && stat -c '%a' f
        chmod 750 f && getfacl f
        chmod 0604 f && getfacl --omit-header f
        setfacl -m g:3000:rwx f && getfacl -n --omit-header f && stat -c '%a' f
        setfacl -x u:nobody f && setfacl -x g:3000 f && getfacl --omit-header f
        echo '-- an ACL the mode says is not stored'
        setfacl -b f && stat -c '%a' f && getfattr -m - -d f; ls -l f | cut -c1-11
        setfacl -m u::rwx,g::r,o::- f && stat -c '%a' f && getfattr -m - f
        echo '-- chacl'
        chacl u::rw-,g::r--,o::---,u:nobody:rwx,m::r-x f && chacl -l f && stat -c '%a' f
        chacl -B f; stat -c '%a' f; chacl -l f
        echo '-- a mask alone is stored'
        setfacl -m m::r f && getfattr -m - f && getfacl --omit-header f
        echo '-- default ACL on a file'
        setfacl -d -m u:nobody:r f; echo $?
        echo '-- remove what is not there'
        setfattr -x system.posix_acl_access f; echo $?
        setfattr -x system.posix_acl_default f; echo $?
        getfacl f
        ",
    );
    assert_has(&out, "user:nobody:rw-");
    assert_has(&out, "-rw-rw-r--+");
    assert_has(&out, "mask::r--");
    assert_has(
        &out,
        "f [u::rw-,u:nobody:rwx,g::r--,m::r-x,o::---]\n650\n640\n",
    );
    assert_has(&out, "Only directories can have default ACLs\n1\n");
}

/// Default ACLs: what files, directories, FIFOs and symlinks created under
/// one get, with several umasks and requested modes, and what they get
/// without one.
#[test]
fn default_acl_inheritance() {
    let p = Pair::new();
    let mut script = String::from(
        "mkdir plain acl nested
        setfacl -d -m u:nobody:rwx,g:3000:rx,m::rwx,o::r acl
        setfacl -d -m u::rwx,g::rx,o::- nested
        getfacl acl nested
        ",
    );
    for umask in ["000", "022", "077", "027", "777"] {
        for (mode, cmd) in [
            ("666", "touch"),
            ("777", "mkdir"),
            ("600", "mkfifo -m 600"),
            ("755", "mkdir -m 755"),
            ("640", "mkfifo -m 640"),
        ] {
            for dir in ["plain", "acl", "nested"] {
                let name = format!("{dir}/{umask}-{mode}-{}", cmd.replace(' ', ""));
                script.push_str(&format!(
                    "(umask {umask}; {cmd} {name}; stat -c '%a %n' {name}; \
                     getfacl -n --omit-header {name})\n"
                ));
            }
        }
        script.push_str(&format!(
            "(umask {umask}; python3 -c \"import os; os.close(os.open('acl/o{umask}', \
             os.O_CREAT | os.O_WRONLY, 0o751))\"; stat -c '%a %n' acl/o{umask})\n"
        ));
        script.push_str(&format!(
            "(umask {umask}; ln -s x acl/l{umask}; getfattr -h -m - acl/l{umask})\n"
        ));
    }
    script.push_str(
        "mkdir -p acl/a/b/c && getfacl -R acl/a
        (umask 077; mkdir acl/sub; touch acl/sub/x; getfacl acl/sub acl/sub/x)
        mkdir sg && chmod 2775 sg && chgrp 3000 sg && setfacl -d -m u:nobody:rw sg
        (umask 022; mkdir sg/d; touch sg/f; stat -c '%a %g %n' sg/d sg/f; getfacl sg sg/d sg/f)
        ",
    );
    let out = p.same(Who::Root, &script);
    assert_has(&out, "default:user:nobody:rwx");
    assert_has(&out, "644 plain/022-666-touch");
    assert_has(&out, "600 plain/077-666-touch");
    assert_has(&out, "664 acl/077-666-touch");
    assert_has(&out, "2775 3000 sg/d");
}

/// What nobody may do, decided by the kernel from the ACLs triefs stores,
/// also after they change (the kernel must not keep stale ACLs).
#[test]
fn permissions_as_nobody() {
    let p = Pair::new();
    let probe = "for f in f*; do
            if cat $f >/dev/null 2>&1; then r=r; else r=-; fi
            if echo x >> $f 2>/dev/null; then w=w; else w=-; fi
            if ./$f >/dev/null 2>&1; then x=x; else x=-; fi
            echo \"$f $r$w$x\"
        done
        for d in d*; do
            if ls $d >/dev/null 2>&1; then r=r; else r=-; fi
            if touch $d/new.$$ 2>/dev/null; then w=w; rm -f $d/new.$$; else w=-; fi
            if cd $d 2>/dev/null; then x=x; cd ..; else x=-; fi
            echo \"$d $r$w$x\"
        done";
    let setup = "umask 022
        for f in f1 f2 f3 f4 f5 f6 f7; do printf '#!/bin/sh\\nexit 0\\n' > $f; chmod 750 $f; done
        setfacl -m u:nobody:r f1
        setfacl -m u:nobody:rwx,m::r f2
        setfacl -m g:3000:rwx f3
        chmod 757 f4 && setfacl -m u:nobody:- f4
        chmod 757 f5 && setfacl -m g:3000:r f5
        setfacl -m u:nobody:rx f6
        chmod 700 f7 && setfacl -m o::rwx f7
        mkdir d1 d2 d3 d4 && chmod 700 d1 d2 d3 d4
        setfacl -m u:nobody:rx d1
        setfacl -m u:nobody:rwx d2
        setfacl -m g:3000:rwx,m::x d3
        setfacl -m u:nobody:wx d4";
    p.same(Who::Root, setup);
    let as_nobody = p.same(Who::Nobody, probe);
    let as_staff = p.same(Who::NobodyStaff, probe);
    for line in [
        "f1 r--", "f2 r--", "f4 ---", "f6 r-x", "d1 r-x", "d2 rwx", "d4 -wx",
    ] {
        assert_has(&as_nobody, line);
    }
    assert_has(&as_staff, "f3 rwx");
    assert_has(&as_staff, "f5 r--");
    assert_has(&as_staff, "d3 --x");
    // Changes reach the kernel's view at once: chmod moves the mask, a
    // removed entry takes its rights away, a new one gives them.
    p.same(
        Who::Root,
        "chmod 700 f1 f3 d2 && setfacl -x u:nobody f6 && setfacl -m u:nobody:rw f7 \
         && setfacl -m m::rwx f2 && setfacl -b d1",
    );
    let after = p.same(Who::Nobody, probe);
    for line in ["f1 ---", "f2 rwx", "f6 ---", "f7 rw-", "d1 ---", "d2 ---"] {
        assert_has(&after, line);
    }
    let staff_after = p.same(Who::NobodyStaff, probe);
    assert_has(&staff_after, "f3 ---");
    // Only the owner (or root) sets ACLs: the kernel refuses others.
    let denied = p.same(
        Who::Nobody,
        "setfacl -m u:nobody:rwx f1; echo $?; chacl -B d2; echo $?; \
         setfattr -x system.posix_acl_access f2; echo $?",
    );
    assert_has(&denied, "Operation not permitted");
}

/// Setting an access ACL clears the setgid bit when the caller is not in
/// the file's group (and lacks CAP_FSETID); a group member keeps it.
#[test]
fn setgid_cleared_by_outsiders() {
    let p = Pair::new();
    p.same(
        Who::Root,
        "touch a b c && chown nobody:3000 a b c && chmod 2775 a b c && mkdir d \
         && chown nobody:3000 d && chmod 2775 d",
    );
    let outsider = p.same(
        Who::Nobody,
        "setfacl -m u:1000:rw a && stat -c '%a' a; setfacl -d -m u:1000:rw d && stat -c '%a' d; \
         setfacl -m u:1000:rwx d && stat -c '%a' d",
    );
    let member = p.same(Who::NobodyStaff, "setfacl -m u:1000:rw b && stat -c '%a' b");
    let root = p.same(Who::Root, "setfacl -m u:1000:rw c && stat -c '%a' c");
    assert_has(&outsider, "exit Some(0)\n775\n2775\n775\n");
    assert_has(&member, "2775");
    assert_has(&root, "2775");
}

/// `cp -a`, `tar --acls` and `getfacl`/`setfacl --restore` carry ACLs,
/// within each filesystem and from one to the other.
#[test]
fn cp_tar_and_restore_round_trips() {
    let p = Pair::new();
    let build = "umask 022 && mkdir -p src/sub && touch src/f src/sub/g && ln -s f src/l
        setfacl -m u:nobody:rw,g:3000:r src/f
        setfacl -m u:1000:rwx,m::rx src/sub
        setfacl -d -m u:nobody:rwx src/sub
        setfacl -m u::rw,g::r,o::r src/sub/g
        find src | sort | xargs getfacl -P -n";
    let want = p.same(Who::Root, build);
    assert_has(&want, "default:user:65534:rwx");
    let copies = p.same(
        Who::Root,
        "cp -a src cp && (cd cp && find . | sort | xargs getfacl -P -n) > cp.acl
        tar --acls -cf a.tar src && mkdir x && tar --acls -xf a.tar -C x
        (cd x/src && find . | sort | xargs getfacl -P -n) > x.acl
        (cd src && find . | sort | xargs getfacl -P -n) > src.acl
        find src | sort | xargs getfacl -P -n > saved && mkdir r && cp -r src r/ && setfacl -b -R r/src
        sed 's|^# file: src|# file: r/src|' saved > saved.r && setfacl --restore=saved.r
        (cd r/src && find . | sort | xargs getfacl -P -n) > r.acl
        cmp src.acl cp.acl && cmp src.acl x.acl && cmp src.acl r.acl && cat src.acl",
    );
    assert_has(&copies, "user:1000:rwx");
    // Across filesystems, both ways.
    let [t, f] = p.roots();
    for (from, to) in [(t, f), (f, t)] {
        let dst = to.join(format!(
            "from-{}",
            from.file_name().unwrap().to_string_lossy()
        ));
        let st = Command::new("cp")
            .arg("-a")
            .arg(from.join("src"))
            .arg(&dst)
            .status()
            .unwrap();
        assert!(st.success());
        let listing = |dir: &Path| common::sh(dir, "find . | sort | xargs getfacl -P -n");
        assert_eq!(
            listing(&from.join("src")),
            listing(&dst),
            "cp -a {from:?} -> {dst:?}"
        );
    }
}

fn set_raw(path: &Path, name: &str, value: &[u8], follow: bool) -> Result<(), i32> {
    let (c, n) = (cpath(path), CString::new(name).unwrap());
    // SAFETY: valid C strings and a buffer of the given length.
    let rc = unsafe {
        if follow {
            libc::setxattr(
                c.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        } else {
            libc::lsetxattr(
                c.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        }
    };
    if rc == 0 { Ok(()) } else { Err(errno()) }
}

fn blob(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

/// Raw `setxattr` of valid and invalid ACLs: the same errno (or success and
/// then the same mode and stored ACL) on both.
#[test]
fn raw_acl_values_and_errnos() {
    let p = Pair::new();
    p.same(Who::Root, "touch f && mkdir d && ln -s f l");
    const U: u32 = u32::MAX;
    let (uo, us, go, gr, m, o) = (1u16, 2u16, 4u16, 8u16, 0x10u16, 0x20u16);
    let mut big = vec![(uo, 7, U)];
    big.extend((0..600).map(|i| (us, 6, 5000 + i)));
    big.extend([(go, 5, U), (m, 7, U), (o, 4, U)]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("base", blob(&[(uo, 6, U), (go, 4, U), (o, 0, U)])),
        (
            "named",
            blob(&[(uo, 7, U), (us, 6, 99), (go, 5, U), (m, 6, U), (o, 1, U)]),
        ),
        ("odd ids", blob(&[(uo, 7, 5), (go, 5, 6), (o, 1, 7)])),
        (
            "dup ids",
            blob(&[
                (uo, 7, U),
                (us, 6, 9),
                (us, 4, 9),
                (go, 5, U),
                (m, 6, U),
                (o, 0, U),
            ]),
        ),
        (
            "unsorted ids",
            blob(&[
                (uo, 7, U),
                (us, 6, 9),
                (us, 4, 3),
                (go, 5, U),
                (m, 6, U),
                (o, 0, U),
            ]),
        ),
        (
            "no mask",
            blob(&[(uo, 7, U), (us, 6, 9), (go, 5, U), (o, 1, U)]),
        ),
        ("no other", blob(&[(uo, 7, U), (go, 5, U)])),
        ("order", blob(&[(go, 5, U), (uo, 7, U), (o, 1, U)])),
        ("perm 8", blob(&[(uo, 8, U), (go, 5, U), (o, 1, U)])),
        (
            "bad tag",
            blob(&[(uo, 7, U), (0x40, 5, U), (go, 5, U), (o, 1, U)]),
        ),
        (
            "uid -1",
            blob(&[(uo, 7, U), (us, 6, U), (go, 5, U), (m, 6, U), (o, 1, U)]),
        ),
        (
            "group",
            blob(&[(uo, 7, U), (go, 5, U), (gr, 6, 3000), (m, 6, U), (o, 1, U)]),
        ),
        (
            "version 1",
            [
                &1u32.to_le_bytes()[..],
                &blob(&[(uo, 7, U), (go, 5, U), (o, 1, U)])[4..],
            ]
            .concat(),
        ),
        ("short", vec![2, 0, 0]),
        (
            "partial entry",
            [blob(&[(uo, 7, U), (go, 5, U), (o, 1, U)]), vec![1]].concat(),
        ),
        ("header only", blob(&[])),
        (
            "511 entries",
            blob(
                &big[..508]
                    .iter()
                    .copied()
                    .chain([(go, 5, U), (m, 7, U), (o, 4, U)])
                    .collect::<Vec<_>>(),
            ),
        ),
    ];
    let mut results = String::new();
    for (what, value) in &cases {
        for (target, follow) in [("f", true), ("d", true), ("l", false)] {
            for name in ["system.posix_acl_access", "system.posix_acl_default"] {
                let [t, f] = p.roots().map(|r| {
                    let res = set_raw(&r.join(target), name, value, follow);
                    let state = run_script(
                        r,
                        Who::Root,
                        &format!("stat -c %a {target}; getfacl -P -n --omit-header {target}"),
                    );
                    format!("{res:?} {state}")
                });
                assert_eq!(t, f, "{what} on {target} {name}");
                results.push_str(&format!("{what} {target} {name}: {t}\n"));
            }
        }
    }
    for want in [
        "no mask f system.posix_acl_access: Err(22)",
        "version 1 f system.posix_acl_access: Err(95)",
        "named f system.posix_acl_default: Err(13)",
        "dup ids f system.posix_acl_access: Ok(())",
        "511 entries d system.posix_acl_access: Ok(())",
    ] {
        assert_has(&results, want);
    }
    // The one difference: FUSE carries at most a page (511 entries).
    let value = blob(&big);
    let [t, f] = p
        .roots()
        .map(|r| set_raw(&r.join("d"), "system.posix_acl_access", &value, true));
    assert_eq!(
        (t, f),
        (Ok(()), Err(libc::E2BIG)),
        "an ACL of {} entries",
        big.len()
    );
}

/// ACLs survive an image save and load.
#[test]
fn image_keeps_acls() {
    let dir = common::short_tempdir();
    let img = dir.path().join("img");
    let args = [OsStr::new("--image"), img.as_os_str()];
    let script = "umask 022 && mkdir -p d/e && touch d/f
        setfacl -m u:nobody:rw,m::rw d/f && setfacl -d -m g:3000:rx d && setfacl -m u:1000:x d/e
        find d | sort | xargs getfacl -P -n; stat -c '%a %n' d d/e d/f";
    let mut m = TriefsMount::with_args(args);
    let before = run_script(m.path(), Who::Root, script);
    assert_has(&before, "default:group:3000:r-x");
    assert_eq!(m.unmount_and_wait().and_then(|s| s.code()), Some(0));
    let m = TriefsMount::with_args(args);
    let after = run_script(
        m.path(),
        Who::Root,
        "find d | sort | xargs getfacl -P -n; stat -c '%a %n' d d/e d/f",
    );
    assert_eq!(before, after);
    // And what was loaded is enforced: the default ACL is inherited.
    let inherited = run_script(
        m.path(),
        Who::Root,
        "touch d/new && getfacl -n --omit-header d/new",
    );
    assert_has(&inherited, "group:3000:r-x");
}

/// `triefs ls-prefix` answers from the daemon, so it must apply ACLs as the
/// kernel does: what nobody lists equals what nobody's own walk reaches.
#[test]
fn ls_prefix_follows_acls() {
    let m = TriefsMount::new(&["-o", "allow_other"]);
    common::chmod(m.dir.path(), 0o755);
    run_script(
        m.path(),
        Who::Root,
        "mkdir granted denied masked grouped plain && touch granted/a denied/b masked/c \
         grouped/d plain/e && chmod 700 granted masked grouped && setfacl -m u:nobody:rx granted \
         && setfacl -m u:nobody:- denied && setfacl -m u:nobody:rx,m::- masked \
         && setfacl -m g:3000:rx grouped",
    );
    let bin = common::shared_binary();
    for (who, groups) in [(Who::Nobody, &[][..]), (Who::NobodyStaff, &[STAFF][..])] {
        let walk = run_script(
            m.path(),
            who,
            "find . -type f 2>/dev/null | cut -c2- | sort",
        );
        let out = run_as(
            Command::new(&bin.path).arg("ls-prefix").arg(m.path()),
            NOBODY,
            NOBODY,
            groups,
        )
        .output()
        .expect("run ls-prefix");
        assert_eq!(
            out.status.code(),
            Some(1),
            "{who:?}: some directories refused"
        );
        let listed = String::from_utf8_lossy(&out.stdout);
        let walk: Vec<&str> = walk.lines().skip(1).collect();
        assert_eq!(listed.lines().collect::<Vec<_>>(), walk, "{who:?}");
        assert!(
            walk.contains(&"/granted/a") && !walk.contains(&"/masked/c"),
            "{walk:?}"
        );
        assert_eq!(walk.contains(&"/grouped/d"), groups == [STAFF], "{walk:?}");
    }
}
