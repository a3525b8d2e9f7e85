//! Fuzzes checkpoints: arbitrary namespace operations interleaved with
//! save, restore, delete and the housekeeping a mount runs in the
//! background (freeing replaced trees, copying a checkpoint ahead), under
//! small page and inode limits.
//!
//! After every operation `Namespace::check()` must pass (page accounting
//! counts each shared page once, across the live tree, the checkpoints,
//! the spare copy and the trees waiting to be freed) and the limits hold.
//! A restore must give back exactly what the save captured: every path's
//! kind, inode number, mode, size, link count, times, contents, symlink
//! target and xattrs. The kernel's references survive restores: an inode
//! the model holds is never freed, and a held file the checkpoint lacks
//! keeps its contents. At the end everything is deleted and forgotten,
//! and the filesystem must be back to its root alone with no pages.
//!
//! With durable state tracked (`-o crash`), `fsync` and crashes join in:
//! after a crash every check above still holds (held inodes survive as
//! orphans), a second crash changes nothing, and once everything is
//! removed and the root synced, no record of a removed file is left.
#![no_main]

use std::collections::BTreeMap;
use std::ffi::OsStr;

use arbitrary::Arbitrary;
use fuser::FileType;
use libfuzzer_sys::fuzz_target;
use triefs::namespace::inode::{Kind, ROOT_INO};
use triefs::namespace::{Limits, Namespace, NewNode, SetAttr};

const NAMES: [&str; 4] = ["a", "b", "c", "d"];
const PG: u64 = 4096;

#[derive(Arbitrary, Debug)]
enum Op {
    Create { dir: u8, name: u8, dir_kind: bool },
    Symlink { dir: u8, name: u8, target: u8 },
    Write { file: u8, page: u8, byte: u8 },
    Truncate { file: u8, size: u16 },
    Punch { file: u8, off: u16, len: u16 },
    CopyRange { src: u8, dst: u8, src_page: u8, dst_page: u8, pages: u8, shift: bool },
    Unlink { dir: u8, name: u8 },
    Rmdir { dir: u8, name: u8 },
    Link { file: u8, dir: u8, name: u8 },
    Rename { d1: u8, n1: u8, d2: u8, n2: u8 },
    Chmod { ino: u8, mode: u16 },
    SetXattr { ino: u8, value: u8 },
    Lookup { dir: u8, name: u8 },
    Forget { which: u8 },
    Save(u8),
    Restore(u8),
    Delete(u8),
    Settle,
    /// Housekeeping in the background order: copy a spare, then free.
    SpareOnly,
    /// fsync of a file or directory (reachable, or held by the kernel).
    Fsync(u8),
    /// The power cut.
    Crash,
}

#[derive(Arbitrary, Debug)]
struct Input {
    max_pages: u8,
    max_inodes: u8,
    track: bool,
    ops: Vec<Op>,
}

/// Everything a process can observe of the tree, by path.
fn dump(ns: &Namespace) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), ROOT_INO)];
    while let Some((path, ino)) = stack.pop() {
        let a = ns.attr(ino).expect("attr of a reachable inode");
        let body = match a.kind {
            FileType::RegularFile => format!("{:?}", ns.read(ino, 0, u32::MAX).expect("read")),
            FileType::Symlink => format!("{:?}", ns.readlink(ino).expect("readlink")),
            _ => String::new(),
        };
        let x = ns.inodes().xattrs(ino).map(|x| format!("{x:?}")).unwrap_or_default();
        out.push(format!(
            "{path} {ino} {:?} {:o} {} {} {} {:?} {:?} {:?} {body} {x}",
            a.kind, a.perm, a.size, a.nlink, a.blocks, a.mtime, a.ctime, a.atime
        ));
        if a.kind == FileType::Directory {
            for (name, child, _) in ns.entries_after(ino, None).expect("entries") {
                stack.push((format!("{path}/{}", name.to_string_lossy()), child));
            }
        }
    }
    out.sort();
    out
}

struct Fuzz {
    ns: Namespace,
    /// Kernel references the operations handed out.
    held: BTreeMap<u64, u64>,
    /// What each checkpoint must give back.
    saved: BTreeMap<u8, Vec<String>>,
    max_pages: u64,
}

fn spec(kind: Kind) -> NewNode<'static> {
    NewNode { kind, perm: 0o644, uid: 0, gid: 0, rdev: 0, target: None }
}

impl Fuzz {
    fn reachable(&self, dirs_only: bool, kind: Option<Kind>) -> Vec<u64> {
        let mut out = Vec::new();
        let mut stack = vec![ROOT_INO];
        while let Some(ino) = stack.pop() {
            let Ok(a) = self.ns.attr(ino) else { continue };
            let k = a.kind;
            let keep = match kind {
                Some(Kind::RegularFile) => k == FileType::RegularFile,
                _ => !dirs_only || k == FileType::Directory,
            };
            if keep && !out.contains(&ino) {
                out.push(ino);
            }
            if k == FileType::Directory {
                for (_, c, _) in self.ns.entries_after(ino, None).expect("entries") {
                    stack.push(c);
                }
            }
        }
        out
    }

    fn dir(&self, i: u8) -> u64 {
        let d = self.reachable(true, None);
        d[i as usize % d.len()]
    }

    fn file(&self, i: u8) -> Option<u64> {
        // Files the kernel holds but no name reaches (unlinked, or kept
        // across a restore) are files too.
        let mut f = self.reachable(false, Some(Kind::RegularFile));
        for &ino in self.held.keys() {
            if !f.contains(&ino) && self.ns.inodes().get(ino).is_some_and(|i| i.kind == Kind::RegularFile) {
                f.push(ino);
            }
        }
        (!f.is_empty()).then(|| f[i as usize % f.len()])
    }

    fn hold(&mut self, r: Result<triefs::namespace::Entry, triefs::Errno>) {
        if let Ok(e) = r {
            *self.held.entry(e.attr.ino.0).or_default() += 1;
        }
    }

    fn apply(&mut self, op: &Op) {
        let name = |i: u8| OsStr::new(NAMES[i as usize % NAMES.len()]);
        match *op {
            Op::Create { dir, name: n, dir_kind } => {
                let d = self.dir(dir);
                let kind = if dir_kind { Kind::Directory } else { Kind::RegularFile };
                let r = self.ns.create_node(d, name(n), spec(kind));
                self.hold(r);
            }
            Op::Symlink { dir, name: n, target } => {
                let d = self.dir(dir);
                let t = [b'x'; 200];
                let len = target as usize % 200 + 1;
                let s = NewNode { target: Some(&t[..len]), ..spec(Kind::Symlink) };
                let r = self.ns.create_node(d, name(n), s);
                self.hold(r);
            }
            Op::Write { file, page, byte } => {
                if let Some(f) = self.file(file) {
                    let before = self.ns.read(f, 0, u32::MAX).expect("read");
                    match self.ns.write(f, u64::from(page % 8) * PG + 5, &[byte, 1, 2]) {
                        Ok(n) => assert!(n > 0),
                        Err(e) => {
                            assert_eq!(e.code(), libc::ENOSPC);
                            assert_eq!(self.ns.read(f, 0, u32::MAX).expect("read"), before);
                        }
                    }
                }
            }
            Op::Truncate { file, size } => {
                if let Some(f) = self.file(file) {
                    let a = SetAttr { size: Some(u64::from(size) * 3), ..Default::default() };
                    let _ = self.ns.setattr(f, a);
                }
            }
            Op::Punch { file, off, len } => {
                if let Some(f) = self.file(file) {
                    let _ = self.ns.fallocate(f, u64::from(off) * 3, u64::from(len) * 3 + 1, 3);
                }
            }
            Op::CopyRange { src, dst, src_page, dst_page, pages, shift } => {
                if let (Some(s), Some(d)) = (self.file(src), self.file(dst)) {
                    let so = u64::from(src_page % 8) * PG + u64::from(shift);
                    let dof = u64::from(dst_page % 8) * PG;
                    let len = u64::from(pages % 5) * PG + 7;
                    let want = self.ns.read(s, so, len as u32).expect("read src");
                    let before = self.ns.read(d, 0, u32::MAX).expect("read dst");
                    match self.ns.copy_range(s, so, d, dof, len) {
                        Ok(n) => {
                            let n = n as usize;
                            assert!(n <= want.len());
                            let got = self.ns.read(d, dof, n as u32).expect("read dst");
                            if s != d || so + n as u64 <= dof || dof + n as u64 <= so {
                                assert_eq!(got, want[..n], "copy_range bytes");
                            }
                        }
                        Err(e) => {
                            assert_eq!(e.code(), libc::ENOSPC, "copy_range: {e}");
                            assert_eq!(self.ns.read(d, 0, u32::MAX).expect("read"), before);
                        }
                    }
                }
            }
            Op::Unlink { dir, name: n } => {
                let _ = self.ns.unlink(self.dir(dir), name(n));
            }
            Op::Rmdir { dir, name: n } => {
                let _ = self.ns.rmdir(self.dir(dir), name(n));
            }
            Op::Link { file, dir, name: n } => {
                if let Some(f) = self.file(file) {
                    let r = self.ns.link(f, self.dir(dir), name(n));
                    self.hold(r);
                }
            }
            Op::Rename { d1, n1, d2, n2 } => {
                let _ = self.ns.rename(self.dir(d1), name(n1), self.dir(d2), name(n2), 0);
            }
            Op::Chmod { ino, mode } => {
                let all = self.reachable(false, None);
                let i = all[ino as usize % all.len()];
                let a = SetAttr { mode: Some(u32::from(mode) & 0o777), ..Default::default() };
                self.ns.setattr(i, a).expect("chmod");
            }
            Op::SetXattr { ino, value } => {
                let all = self.reachable(false, None);
                let i = all[ino as usize % all.len()];
                let _ = self.ns.setxattr(i, OsStr::new("user.k"), &[value; 3], 0);
            }
            Op::Lookup { dir, name: n } => {
                let r = self.ns.lookup(self.dir(dir), name(n));
                self.hold(r);
            }
            Op::Forget { which } => {
                let keys: Vec<u64> = self.held.keys().copied().collect();
                if !keys.is_empty() {
                    let ino = keys[which as usize % keys.len()];
                    let n = self.held.remove(&ino).expect("held");
                    self.ns.forget(ino, n);
                }
            }
            Op::Save(k) => {
                let k = k % 3;
                let r = self.ns.save_checkpoint(&format!("c{k}"));
                match r {
                    Ok(()) => {
                        assert!(!self.saved.contains_key(&k));
                        self.saved.insert(k, dump(&self.ns));
                    }
                    Err(e) if e.code() == libc::EEXIST => assert!(self.saved.contains_key(&k)),
                    Err(e) => assert_eq!(e.code(), libc::ENOSPC, "save: {e}"),
                }
            }
            Op::Restore(k) => {
                let k = k % 3;
                let held_files: Vec<(u64, Vec<u8>)> = self
                    .held
                    .keys()
                    .filter_map(|&i| Some((i, self.ns.read(i, 0, u32::MAX).ok()?)))
                    .collect();
                match self.ns.restore_checkpoint(&format!("c{k}")) {
                    Ok(_) => {
                        assert_eq!(Some(&dump(&self.ns)), self.saved.get(&k), "restore of c{k}");
                        // A held file the checkpoint lacks keeps its data.
                        for (ino, data) in held_files {
                            let in_ck = self.saved[&k].iter().any(|l| {
                                l.split(' ').nth(1) == Some(&ino.to_string())
                            });
                            if !in_ck {
                                assert_eq!(self.ns.read(ino, 0, u32::MAX).ok(), Some(data), "orphan {ino}");
                            }
                        }
                    }
                    Err(e) => {
                        assert_eq!(e.code(), libc::ENOENT);
                        assert!(!self.saved.contains_key(&k));
                    }
                }
            }
            Op::Delete(k) => {
                let k = k % 3;
                let r = self.ns.delete_checkpoint(&format!("c{k}"));
                assert_eq!(r.is_ok(), self.saved.remove(&k).is_some());
            }
            Op::Settle => self.ns.settle_checkpoints(),
            Op::SpareOnly => {
                if let Some(src) = self.ns.spare_wanted() {
                    let spare = src.copy();
                    drop(src);
                    self.ns.install_spare(spare);
                }
            }
            Op::Fsync(i) => {
                let mut all = self.reachable(false, None);
                all.extend(self.held.keys().copied().filter(|&h| self.ns.inodes().get(h).is_some()));
                let ino = all[i as usize % all.len()];
                self.ns.fsync(ino).expect("fsync");
            }
            Op::Crash => match self.ns.crash() {
                Ok(_) => {
                    self.verify(&"the crash");
                    let after = dump(&self.ns);
                    self.ns.crash().expect("second crash");
                    assert_eq!(dump(&self.ns), after, "a second crash changed the tree");
                }
                Err(e) => {
                    assert_eq!(e.code(), libc::EOPNOTSUPP);
                    assert!(!self.ns.tracks_durability());
                }
            },
        }
    }

    fn verify(&self, what: &dyn std::fmt::Debug) {
        if let Err(errs) = self.ns.check() {
            panic!("check() failed after {what:?}:\n  {}", errs.join("\n  "));
        }
        for (&ino, &n) in &self.held {
            let i = self.ns.inodes().get(ino).unwrap_or_else(|| panic!("held inode {ino} freed after {what:?}"));
            assert_eq!(i.lookups(), n, "lookups of {ino} after {what:?}");
        }
        // Truncating inside a shared page may go one page over per file.
        let files = self.ns.inodes().iter().filter(|(_, i)| i.kind == Kind::RegularFile).count() as u64;
        assert!(self.ns.pages_used() <= self.max_pages + files, "pages over the limit after {what:?}");
    }
}

fuzz_target!(|input: Input| {
    let max_pages = u64::from(input.max_pages % 33);
    let max_inodes = u64::from(input.max_inodes % 61);
    let mut ns = Namespace::new(0, 0, 0o755, Limits { max_pages, max_inodes });
    if input.track {
        ns.track_durability();
    }
    let mut f = Fuzz {
        ns,
        held: BTreeMap::new(),
        saved: BTreeMap::new(),
        max_pages,
    };
    for op in &input.ops {
        f.apply(op);
        f.verify(op);
    }
    for k in std::mem::take(&mut f.saved).into_keys() {
        f.ns.delete_checkpoint(&format!("c{k}")).expect("delete");
    }
    f.ns.settle_checkpoints();
    for (ino, n) in std::mem::take(&mut f.held) {
        f.ns.forget(ino, n);
    }
    // Remove every name, deepest first.
    loop {
        let all = f.reachable(false, None);
        let mut removed = false;
        for &d in &all {
            if f.ns.attr(d).map(|a| a.kind) != Ok(FileType::Directory) {
                continue;
            }
            let entries: Vec<(std::ffi::OsString, u64, FileType)> =
                f.ns.entries_after(d, None).expect("entries").map(|(n, i, k)| (n.to_owned(), i, k)).collect();
            for (n, _, k) in entries {
                let r = if k == FileType::Directory { f.ns.rmdir(d, &n) } else { f.ns.unlink(d, &n) };
                removed |= r.is_ok();
            }
        }
        if !removed {
            break;
        }
    }
    // The removals made durable: what only records still held goes.
    f.ns.fsync(ROOT_INO).expect("fsync of the root");
    f.verify(&"teardown");
    assert_eq!(f.ns.inodes().live(), 1, "inodes left after teardown");
    assert_eq!(f.ns.pages_used(), 0, "pages left after teardown");
});
