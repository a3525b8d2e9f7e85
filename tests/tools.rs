//! Real shell tools working inside a triefs mount, checked against the same
//! actions on a tmpfs oracle where the result is filesystem-independent.
// Mount tests drive Linux: tmpfs as the oracle, Linux syscalls and tools.
#![cfg(target_os = "linux")]

mod common;

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{Tmpfs, TriefsMount};

/// Runs `script` under `sh -e` in `cwd` with the C locale; panics (with its
/// output) when it fails. Commands expected to fail use `|| echo rc=$?`.
fn run(cwd: &Path, script: &str) -> String {
    common::sh(cwd, &format!("set -e\nexport LC_ALL=C TZ=UTC\n{script}"))
}

/// Asserts two multi-line outputs are equal, reporting the first lines that
/// differ (outputs can be thousands of lines long).
fn assert_same_output(what: &str, want: &str, got: &str) {
    if want == got {
        return;
    }
    let w: Vec<&str> = want.lines().collect();
    let g: Vec<&str> = got.lines().collect();
    let mut report = String::new();
    let mut shown = 0;
    for i in 0..w.len().max(g.len()) {
        let (a, b) = (w.get(i), g.get(i));
        if a != b {
            report.push_str(&format!(
                "  line {}:\n    tmpfs : {:?}\n    triefs: {:?}\n",
                i + 1,
                a,
                b
            ));
            shown += 1;
            if shown == 15 {
                report.push_str("  ...\n");
                break;
            }
        }
    }
    panic!(
        "{what}: triefs differs from tmpfs ({} vs {} lines)\n{report}",
        w.len(),
        g.len()
    );
}

/// Runs `script` in a fresh tmpfs and a fresh triefs, asserts identical
/// output and returns it.
fn same_in_both(what: &str, script: &str) -> String {
    let t = Tmpfs::new();
    let m = TriefsMount::new(&[]);
    let want = run(t.path(), script);
    let got = run(m.path(), script);
    assert_same_output(what, &want, &got);
    got
}

#[test]
fn mkdir_p_nested() {
    let out = same_in_both(
        "mkdir -p",
        r#"
mkdir -p a/b/c
mkdir -p a/b/c
mkdir -p a/b/c/d/e/f x/y
mkdir a/b 2>&1 || echo "rc=$?"
mkdir -p a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z
find . -printf '%y %n %p\n' | sort
"#,
    );
    assert!(out.contains("d 3 ./a/b/c\n"), "{out}");
    assert!(out.contains("rc=1"), "{out}");
    assert!(out.contains("d 2 ./a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z\n"));
}

/// `cp -a` of a real tree (with symlinks, hard links, odd modes, owners and
/// old timestamps added) into triefs matches the same `cp -a` into tmpfs.
#[test]
fn cp_a_real_tree_matches_tmpfs() {
    let t = Tmpfs::new();
    let m = TriefsMount::new(&[]);
    run(
        t.path(),
        r#"
cp -a /usr/share/doc/git src
mkdir -p src/extra/deep/er
printf 'hello\n' > src/extra/deep/er/file
ln -s deep/er/file src/extra/rel-link
ln -s /nonexistent/target src/extra/dangling
ln -s deep src/extra/dirlink
ln src/extra/deep/er/file src/extra/hardlink
: > src/extra/empty
printf 'x' > src/extra/setuid && chmod 4755 src/extra/setuid
mkdir src/extra/sticky && chmod 1777 src/extra/sticky
printf 'secret' > src/extra/private && chmod 600 src/extra/private
printf 'ro' > src/extra/readonly && chmod 444 src/extra/readonly
mkdir src/extra/locked && printf 'in' > src/extra/locked/f && chmod 700 src/extra/locked
printf 'owned' > src/extra/owned && chown 1234:5678 src/extra/owned
printf 'old' > 'src/extra/with space' && touch -d '2001-02-03 04:05:06.789' 'src/extra/with space'
head -c 200000 /dev/urandom > src/extra/random.bin
touch -d '1999-12-31 23:59:59' src/extra/deep
cp -a src tcopy
"#,
    );
    let src = t.path().join("src");
    run(m.path(), &format!("cp -a '{}' copy", src.to_str().unwrap()));
    let tcopy = t.path().join("tcopy");
    let copy = m.path().join("copy");

    let diff = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(&tcopy)
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        diff.status.success() && diff.stdout.is_empty(),
        "diff -r tmpfs copy vs triefs copy: status {}\n{}{}",
        diff.status,
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );

    // Type, mode, size, link count, path, link target. Directory st_size is
    // filesystem-specific (tmpfs counts 20 bytes per entry), so directories
    // are listed without %s.
    let listing = "find . ! -type d -printf '%y %m %s %n %p %l\\n' | sort\n\
                   find . -type d -printf '%y %m %n %p\\n' | sort";
    assert_same_output(
        "find listing after cp -a",
        &run(&tcopy, listing),
        &run(&copy, listing),
    );
    // The listing is not vacuous: spot-check a few known lines.
    let got = run(&copy, listing);
    for want in [
        "l 777 12 1 ./extra/rel-link deep/er/file\n",
        "f 644 6 2 ./extra/hardlink \n",
        "f 4755 1 1 ./extra/setuid \n",
        "d 1777 2 ./extra/sticky\n",
        "d 755 3 ./extra/deep\n",
    ] {
        assert!(got.contains(want), "missing {want:?} in triefs listing");
    }
    assert!(got.lines().count() > 600, "listing too short: {got}");
    let owners = "find . -printf '%u:%g %p\\n' | sort";
    assert_same_output(
        "owners after cp -a",
        &run(&tcopy, owners),
        &run(&copy, owners),
    );
    let mtimes = "find . -printf '%T@ %p\\n' | sort -k2";
    assert_same_output(
        "mtimes after cp -a",
        &run(&tcopy, mtimes),
        &run(&copy, mtimes),
    );
    let inodes = "if [ \"$(stat -c %i extra/hardlink)\" = \"$(stat -c %i extra/deep/er/file)\" ]; \
                  then echo linked; else echo not-linked; fi";
    assert_eq!(run(&copy, inodes), "linked\n");
}

/// `tar -xpf` of a few thousand real files into triefs: `diff -r` against
/// the source, `tar --compare`, and re-archiving from the mount.
#[test]
fn tar_extract_real_tree() {
    let t = Tmpfs::new();
    let m = TriefsMount::new(&[]);
    let archive = t.path().join("a.tar");
    let archive2 = t.path().join("b.tar");
    let dirs = "zoneinfo perl i18n";
    run(
        t.path(),
        &format!("tar -C /usr/share -cf {} {dirs}", archive.display()),
    );
    let start = Instant::now();
    run(m.path(), &format!("tar -xpf {}", archive.display()));
    eprintln!("tar -x into triefs took {:?}", start.elapsed());

    for d in dirs.split(' ') {
        let out = Command::new("diff")
            .args(["-r", "--no-dereference"])
            .arg(Path::new("/usr/share").join(d))
            .arg(m.path().join(d))
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty(),
            "diff -r /usr/share/{d} vs triefs: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let cmp = run(
        m.path(),
        &format!(
            "tar --compare -f {} 2>&1 || echo \"rc=$?\"",
            archive.display()
        ),
    );
    assert_eq!(cmp, "", "tar --compare reported differences");

    let count = "find . | wc -l";
    let n_src = run(Path::new("/usr/share"), &format!("find {dirs} | wc -l"));
    let n_mnt = run(m.path(), count);
    assert_eq!(
        n_mnt.trim().parse::<u64>().unwrap(),
        n_src.trim().parse::<u64>().unwrap() + 1
    );
    assert!(
        n_src.trim().parse::<u64>().unwrap() > 2000,
        "tree too small: {n_src}"
    );

    // Archive again from the mount; the verbose listings must agree.
    run(m.path(), &format!("tar -cf {} {dirs}", archive2.display()));
    let listing = |a: &Path| run(t.path(), &format!("tar -tvf {} | sort -k6", a.display()));
    assert_same_output(
        "tar -tv of archive from source vs from triefs",
        &listing(&archive),
        &listing(&archive2),
    );
}

/// A git session; commit hashes are deterministic, so they must match the
/// same session on tmpfs.
#[test]
fn git_session() {
    let script = r#"
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_DATE='2020-01-02T03:04:05Z' GIT_COMMITTER_DATE='2020-01-02T03:04:05Z'
git init -q -b main repo
cd repo
git config user.name 'Tri Tester'
git config user.email 'tri@example.com'
echo '--- config'
git config --local --list | sort
mkdir -p src docs
printf 'fn main() {}\n' > src/main.rs
printf 'alpha\n' > src/a.txt
printf '# doc\n' > docs/b.md
seq 1 2000 > docs/numbers.txt
printf '#!/bin/sh\necho hi\n' > run.sh && chmod 755 run.sh
ln -s docs/b.md README
git add -A
git commit -q -m first
git mv src/a.txt docs/a.txt
printf 'more\n' >> docs/b.md
printf 'new\n' > untracked.txt
echo '--- status'
git status --porcelain
git add -A
git commit -q -m second
git mv docs manual
git commit -q -m third
echo '--- clean'
git status --porcelain
echo '--- fsck'
git fsck --full --strict 2>&1
echo '--- log'
git log --format='%H %s'
git log --oneline | wc -l
git gc -q 2>&1
echo '--- after gc'
git count-objects -v | grep -E '^(count|packs):'
git fsck --full --strict 2>&1
git log --oneline | wc -l
git status --porcelain
git show HEAD:manual/numbers.txt | tail -n 1
git ls-files -s | sort -k4
./run.sh
"#;
    let out = same_in_both("git session", script);
    let status = out
        .split("--- status\n")
        .nth(1)
        .and_then(|s| s.split("--- clean\n").next())
        .unwrap();
    assert_eq!(
        status,
        "R  src/a.txt -> docs/a.txt\n M docs/b.md\n?? untracked.txt\n"
    );
    let fsck = out
        .split("--- fsck\n")
        .nth(1)
        .and_then(|s| s.split("--- log\n").next())
        .unwrap();
    assert_eq!(fsck, "", "git fsck output");
    let after = out.split("--- after gc\n").nth(1).unwrap();
    assert!(
        after.starts_with("count: 0\npacks: 1\n3\n2000\n"),
        "after gc: {after}"
    );
    assert!(out.ends_with("hi\n"));
}

#[test]
fn mv_files_and_dirs_across_directories() {
    let out = same_in_both(
        "mv",
        r#"
mkdir -p a/sub/deeper b c
printf 'one\n' > a/f1
printf 'two\n' > a/sub/f2
printf 'three\n' > a/sub/deeper/f3
printf 'four\n' > b/f4
i1=$(stat -c %i a/f1); isub=$(stat -c %i a/sub)
mv a/f1 b/
mv a/sub c/
[ "$(stat -c %i b/f1)" = "$i1" ] && echo 'file inode kept'
[ "$(stat -c %i c/sub)" = "$isub" ] && echo 'dir inode kept'
mv b/f4 c/sub/deeper/f4-renamed
mv c/sub/deeper c/sub/deeper2
printf 'victim\n' > b/victim
mv b/f1 b/victim
mkdir -p d/emptydir
mv -T c/sub d/emptydir
mkdir -p e/full f
touch e/full/x
mv -T f e/full 2>&1 || echo "rc=$?"
mv d/emptydir d/emptydir/deeper2/ 2>&1 || echo "rc=$?"
mv e/full/x ./x-at-root
mv nonexistent b/ 2>&1 || echo "rc=$?"
mv b/victim b/victim 2>&1 || echo "rc=$?"
echo '--- tree'
find . -mindepth 1 -printf '%y %n %p\n' | sort
echo '--- contents'
find . -type f | sort | while read -r f; do printf '%s: %s\n' "$f" "$(cat "$f")"; done
ls -A a
"#,
    );
    assert!(out.contains("file inode kept\ndir inode kept\n"), "{out}");
    assert!(
        out.contains("./d/emptydir/deeper2/f4-renamed: four\n"),
        "{out}"
    );
    assert!(out.contains("./b/victim: one\n"), "{out}");
    assert!(out.ends_with("./x-at-root: \n"), "{out}");
}

#[test]
fn rm_r_deep_tree() {
    let out = same_in_both(
        "rm -r",
        r#"
p=deep; i=0
while [ $i -lt 120 ]; do i=$((i+1)); p=$p/d$i; done
mkdir -p $p
p=deep; i=0
while [ $i -lt 120 ]; do
  i=$((i+1)); p=$p/d$i
  printf '%s' $i > $p/file
  if [ $((i % 10)) -eq 0 ]; then ln -s file $p/link; mkdir $p/side; fi
done
mkdir deep/wide
i=0; while [ $i -lt 1500 ]; do i=$((i+1)); : > deep/wide/w$i; done
find deep | wc -l
rm -r deep
echo '--- after'
find . | sort
ls -A | wc -l
stat -c %h .
"#,
    );
    assert!(out.ends_with("--- after\n.\n0\n2\n"), "{out}");
}

#[test]
fn hard_links() {
    let out = same_in_both(
        "ln",
        r#"
printf 'content\n' > a
ln a b
stat -c '%h %s' a b
[ "$(stat -c %i a)" = "$(stat -c %i b)" ] && echo same-inode
printf 'more\n' >> b
cat a
mkdir d
ln a d/c
stat -c %h a
chmod 600 b && stat -c %a d/c
touch -d @1000000000 b && stat -c %Y d/c
rm a
stat -c %h b d/c
cat d/c
ln d dlink 2>&1 || echo "rc=$?"
ln b d/c 2>&1 || echo "rc=$?"
ls -A . d
"#,
    );
    assert!(
        out.starts_with("2 8\n2 8\nsame-inode\ncontent\nmore\n3\n600\n1000000000\n2\n2\n"),
        "{out}"
    );

    // rename(2) between two names of the same inode is a successful no-op.
    let m = TriefsMount::new(&[]);
    fs::write(m.path().join("x"), b"x").unwrap();
    fs::hard_link(m.path().join("x"), m.path().join("y")).unwrap();
    fs::rename(m.path().join("x"), m.path().join("y")).expect("rename onto own hard link");
    assert!(
        m.path().join("x").exists(),
        "rename x->y (same inode) removed x"
    );
    assert!(m.path().join("y").exists());
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(m.path().join("y")).unwrap().nlink(), 2);
}

#[test]
fn symlinks_and_readlink() {
    let out = same_in_both(
        "ln -s",
        r#"
printf 'target\n' > t
ln -s t rel
ln -s /etc/hostname abs
ln -s nowhere dangling
mkdir dir
ln -s dir dirlink
ln -s ../t dir/up
readlink rel abs dangling dirlink dir/up
cat rel dir/up
ls dirlink/
stat -c '%F %s' rel dangling
stat -L -c '%F' dirlink
cat dangling 2>&1 || echo "rc=$?"
ln -s t rel 2>&1 || echo "rc=$?"
ln -sf t2 rel
readlink rel
long=$(printf 'x%.0s' $(seq 1000))
ln -s "$long" long
readlink long | wc -c
readlink -f dirlink/up | sed "s|^$PWD/||"
find . -type l | sort
find -L . -type f | sort
rm dirlink
ls -d dir
"#,
    );
    assert!(
        out.starts_with("t\n/etc/hostname\nnowhere\ndir\n../t\ntarget\ntarget\nup\nsymbolic link 1\nsymbolic link 7\ndirectory\n"),
        "{out}"
    );
    assert!(out.contains("\nt2\n1001\n"), "{out}");
}

#[test]
fn chmod_modes() {
    let out = same_in_both(
        "chmod",
        r#"
touch f
mkdir d
for m in 0 600 644 755 1777 4755 2755 6711 7777 444 0; do chmod $m f; stat -c '%a %A' f; done
chmod 640 f && chmod u+x,g-r,o+w f && stat -c %a f
for m in 0 700 755 1777 2775 3755; do chmod $m d; stat -c '%a %A' d; done
chmod -R a+rX d && stat -c %a d
printf '#!/bin/sh\necho ran\n' > s
chmod 755 s && ./s
chmod 644 s && { ./s 2>/dev/null || echo "rc=$?"; }
"#,
    );
    let want_prefix = "0 ----------\n600 -rw-------\n644 -rw-r--r--\n755 -rwxr-xr-x\n\
                       1777 -rwxrwxrwt\n4755 -rwsr-xr-x\n2755 -rwxr-sr-x\n6711 -rws--s--x\n\
                       7777 -rwsrwsrwt\n444 -r--r--r--\n0 ----------\n702\n";
    assert!(out.starts_with(want_prefix), "{out}");
    assert!(out.ends_with("ran\nrc=126\n"), "{out}");
}

#[test]
fn find_queries() {
    let out = same_in_both(
        "find",
        r#"
mkdir -p proj/src/sub proj/docs proj/empty
printf 'x' > proj/src/main.rs
printf 'y' > proj/src/lib.rs
printf 'text' > proj/docs/readme.txt
: > proj/docs/empty.txt
head -c 5000 /dev/zero > proj/src/sub/big.bin
printf '#!/bin/sh\n' > proj/run.sh && chmod 755 proj/run.sh
ln -s src/main.rs proj/main-link
touch -d '2000-01-01' proj/docs/readme.txt
echo '--- f'; find proj -type f | sort
echo '--- d'; find proj -type d | sort
echo '--- l'; find proj -type l
echo '--- name'; find proj -name '*.txt' | sort
echo '--- iname'; find proj -iname 'MAIN*' | sort
echo '--- empty'; find proj -empty | sort
echo '--- size'; find proj -size +4k
echo '--- perm'; find proj -type f -perm -u+x
echo '--- depth'; find proj -mindepth 1 -maxdepth 1 | sort
echo '--- path'; find proj -path '*/src/*' -type f | sort
echo '--- old'; find proj -type f ! -newer proj/docs/readme.txt
echo '--- L'; find -L proj -type f | sort
echo '--- delete'; find proj -name '*.rs' -delete; find proj -name '*.rs' | wc -l
"#,
    );
    assert!(
        out.contains("--- name\nproj/docs/empty.txt\nproj/docs/readme.txt\n--- iname\nproj/main-link\nproj/src/main.rs\n"),
        "{out}"
    );
    assert!(
        out.contains("--- empty\nproj/docs/empty.txt\nproj/empty\n--- size\nproj/src/sub/big.bin\n--- perm\nproj/run.sh\n"),
        "{out}"
    );
    assert!(out.contains("--- old\nproj/docs/readme.txt\n"), "{out}");
    assert!(out.ends_with("--- delete\n0\n"), "{out}");
}

#[test]
fn sed_in_place() {
    let out = same_in_both(
        "sed -i",
        r#"
printf 'foo bar\nbaz foo\n' > f.txt
chmod 640 f.txt
i0=$(stat -c %i f.txt)
sed -i 's/foo/qux/g' f.txt
cat f.txt
stat -c '%a %s %h' f.txt
[ "$(stat -c %i f.txt)" != "$i0" ] && echo 'replaced by rename'
ls -A
sed -i.bak '1d' f.txt
cat f.txt
cat f.txt.bak
ls -A
"#,
    );
    assert_eq!(
        out,
        "qux bar\nbaz qux\n640 16 1\nreplaced by rename\nf.txt\nbaz qux\nqux bar\nbaz qux\nf.txt\nf.txt.bak\n"
    );
}

#[test]
fn vim_style_save() {
    // Editor pattern by hand: write a swap file, rename it over the original.
    let out = same_in_both(
        "swap-and-rename save",
        r#"
printf 'original\n' > doc.txt
chmod 600 doc.txt
printf 'edited line 1\nedited line 2\n' > .doc.txt.swp
chmod 600 .doc.txt.swp
mv .doc.txt.swp doc.txt
cat doc.txt
stat -c '%a %s %h' doc.txt
ls -A
"#,
    );
    assert_eq!(out, "edited line 1\nedited line 2\n600 28 1\ndoc.txt\n");

    // A reader holding the old file keeps seeing the old content.
    let m = TriefsMount::new(&[]);
    let doc = m.path().join("doc.txt");
    fs::write(&doc, b"old content\n").unwrap();
    let mut held = fs::File::open(&doc).unwrap();
    fs::write(m.path().join(".doc.txt.swp"), b"new content\n").unwrap();
    fs::rename(m.path().join(".doc.txt.swp"), &doc).unwrap();
    let mut s = String::new();
    held.read_to_string(&mut s).unwrap();
    assert_eq!(s, "old content\n", "open fd after rename-over");
    assert_eq!(fs::read(&doc).unwrap(), b"new content\n");
    drop(held);
    drop(m);

    // The real vim, in both backupcopy modes (rename-over and in-place).
    let out = same_in_both(
        "vim save",
        r#"
printf 'alpha\nbeta\n' > a.txt
printf 'alpha\nbeta\n' > b.txt
ia=$(stat -c %i a.txt); ib=$(stat -c %i b.txt)
timeout 30 vim -u NONE -i NONE -N -es -c 'set backupcopy=no writebackup nobackup' -c '%s/alpha/gamma/' -c 'wq' a.txt < /dev/null
timeout 30 vim -u NONE -i NONE -N -es -c 'set backupcopy=yes writebackup nobackup' -c '%s/beta/delta/' -c 'wq' b.txt < /dev/null
cat a.txt b.txt
[ "$(stat -c %i a.txt)" = "$ia" ] && echo 'a: same inode' || echo 'a: new inode'
[ "$(stat -c %i b.txt)" = "$ib" ] && echo 'b: same inode' || echo 'b: new inode'
ls -A
"#,
    );
    assert!(out.starts_with("gamma\nbeta\nalpha\ndelta\n"), "{out}");
    assert!(out.ends_with("a.txt\nb.txt\n"), "leftover files: {out}");
}

#[test]
fn du_and_df() {
    let m = TriefsMount::new(&[]);
    run(
        m.path(),
        "head -c 1048576 /dev/urandom > big\nmkdir d\nprintf x > d/small",
    );
    let num = |s: &str| -> u64 {
        s.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a number: {s:?}"))
    };
    let big_k = num(&run(m.path(), "du -sk big"));
    assert!(
        (1024..=1040).contains(&big_k),
        "du -sk of a 1 MiB file: {big_k}"
    );
    assert_eq!(num(&run(m.path(), "du -sb big")), 1_048_576);
    let all_k = num(&run(m.path(), "du -sk ."));
    assert!(
        (1024..=1200).contains(&all_k),
        "du -sk of the mount: {all_k}"
    );

    let df = run(m.path(), "df -P -k .");
    let line = df.lines().nth(1).unwrap_or_else(|| panic!("df: {df}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f.len(), 6, "df line: {line}");
    let (total, used, avail): (u64, u64, u64) = (
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
        f[3].parse().unwrap(),
    );
    assert!(total > 0, "df total blocks: {line}");
    assert!(used <= total && avail <= total, "df numbers: {line}");
    assert_eq!(f[5], m.path().to_str().unwrap(), "df mounted-on: {line}");
    run(m.path(), "df -i . > /dev/null\nstat -f . > /dev/null");
}

#[test]
fn hundred_thousand_entry_directory() {
    const N: usize = 100_000;
    let m = TriefsMount::new(&[]);
    let dir = m.path().join("big");
    fs::create_dir(&dir).unwrap();
    let mut names: Vec<String> = (0..N).map(|i| format!("f{i}")).collect();
    let start = Instant::now();
    for n in &names {
        fs::File::create(dir.join(n)).unwrap_or_else(|e| panic!("create {n}: {e}"));
    }
    eprintln!("created {N} files in {:?}", start.elapsed());
    names.sort();

    let start = Instant::now();
    let count = run(&dir, "ls -f | wc -l");
    assert_eq!(count.trim(), (N + 2).to_string(), "ls -f | wc -l");

    let mut raw: Vec<String> = run(&dir, "ls -f").lines().map(str::to_owned).collect();
    raw.sort();
    let mut want_raw: Vec<String> = names.clone();
    want_raw.push(".".into());
    want_raw.push("..".into());
    want_raw.sort();
    assert!(
        raw == want_raw,
        "ls -f entries differ from the created names (duplicates or missing)"
    );

    let sorted: Vec<String> = run(&dir, "ls").lines().map(str::to_owned).collect();
    assert!(sorted.len() == N, "ls printed {} names", sorted.len());
    assert!(
        sorted == names,
        "ls output is not each name exactly once in order"
    );
    eprintln!("listings took {:?}", start.elapsed());
}

#[test]
fn xattr_user_roundtrip() {
    let out = same_in_both(
        "setfattr/getfattr",
        r#"
printf 'data' > f
mkdir d
setfattr -n user.color -v blue f
setfattr -n user.empty f
setfattr -n user.bin -v 0x00ff7f f
setfattr -n user.dirattr -v yes d
setfattr -n user.big -v "$(head -c 3000 /dev/zero | tr '\0' a)" f
getfattr --only-values -n user.color f; echo
getfattr -n user.bin -e hex f
getfattr --only-values -n user.big f | wc -c
getfattr -d f | grep -v '^#' | grep . | sort
getfattr -d d | grep -v '^#' | grep . | sort
setfattr -n user.color -v red f
getfattr --only-values -n user.color f; echo
setfattr -x user.color f
getfattr -n user.color f 2>&1 || echo "rc=$?"
setfattr -x user.nonexistent f 2>&1 || echo "rc=$?"
mv f g
getfattr -n user.bin -e hex g
cat g; echo
"#,
    );
    assert!(
        out.starts_with("blue\n# file: f\nuser.bin=0x00ff7f\n\n3000\n"),
        "{out}"
    );
    assert!(out.contains("\nred\n"), "{out}");
    assert!(out.contains("# file: g\nuser.bin=0x00ff7f\n"), "{out}");
}

/// Several processes listing one large directory at once, repeatedly: each
/// listing sees every entry exactly once. (The kernel may continue one
/// open's listing with offset cookies handed out to another open.)
#[test]
fn concurrent_listings_see_every_entry_once() {
    const N: usize = 20_000;
    let m = TriefsMount::new(&[]);
    let dir = m.path().join("many");
    fs::create_dir(&dir).unwrap();
    for i in 0..N {
        fs::File::create(dir.join(format!("entry-{i:06}"))).unwrap();
    }
    let mut want: Vec<String> = (0..N).map(|i| format!("entry-{i:06}")).collect();
    want.sort();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let dir = dir.clone();
            let want = want.clone();
            std::thread::spawn(move || {
                let name = |e: std::io::Result<fs::DirEntry>| {
                    e.unwrap().file_name().into_string().unwrap()
                };
                for round in 0..6 {
                    // A change drops any listing the kernel cached.
                    let tmp = dir.join(format!("tmp-{t}-{round}"));
                    fs::File::create(&tmp).unwrap();
                    fs::remove_file(&tmp).unwrap();
                    // Partly read one stream, then list fully with another,
                    // then finish the first one.
                    let mut partial = fs::read_dir(&dir).unwrap();
                    let mut first: Vec<String> = Vec::new();
                    for _ in 0..1 + (t * 997 + round * 131) % 5000 {
                        first.push(name(partial.next().unwrap()));
                    }
                    let mut got: Vec<String> = fs::read_dir(&dir).unwrap().map(name).collect();
                    first.extend(partial.map(name));
                    got.sort();
                    first.sort();
                    for (what, list) in [("second", &got), ("first", &first)] {
                        let tmp_seen = list.iter().filter(|n| n.starts_with("tmp-")).count();
                        let real: Vec<&String> =
                            list.iter().filter(|n| !n.starts_with("tmp-")).collect();
                        assert!(
                            real.len() == N && real.iter().zip(&want).all(|(a, b)| *a == b),
                            "thread {t} round {round}: {what} listing has {} entries, want {N}",
                            real.len()
                        );
                        assert!(tmp_seen <= 4, "{what}: stray temporary names");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
