//! Data-integrity mount tests: an fsx-style random exerciser checked against
//! an in-memory shadow copy, reads after the kernel dropped its caches, large
//! and sparse files (4 GiB sparse, 1 GiB dense, space given back on delete),
//! and several processes writing and reading one file at once.
//!
//! Environment:
//! - `TRIEFS_SEED=N`: seed for every random choice (printed by each test).
//! - `TRIEFS_LONG=1`: the fsx exerciser runs 1,000,000 ops instead of 100,000.
//! - `TRIEFS_FSX_OPS=N`: exact number of fsx ops (overrides the above).
//! - `TRIEFS_FSX_MAXLEN=N`, `TRIEFS_FSX_MAXOP=N`: fsx's largest file and
//!   largest single op, in bytes (default 2 MiB and 64 KiB).
// Mount tests drive Linux: tmpfs as the oracle, Linux syscalls and tools.
#![cfg(target_os = "linux")]

mod common;

use std::collections::VecDeque;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Rng, Tmpfs, TriefsMount, drop_caches, splitmix64, statvfs};

const PAGE: usize = 4096;
const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

// ---------------------------------------------------------------------------
// Deterministic randomness, hashing and content patterns
// ---------------------------------------------------------------------------

/// The byte that content pattern `seed` has at file offset `off`: a pure
/// function of both, so any reader can check any byte it gets without
/// allocating (used in forked children).
fn pattern_byte(seed: u64, off: u64) -> u8 {
    (splitmix64(seed ^ (off >> 3).wrapping_mul(0x9e37_79b9)) >> ((off & 7) * 8)) as u8
}

/// Fills `buf` with pattern `seed` as found at file offset `off`.
fn fill_pattern(seed: u64, off: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(seed, off + i as u64);
    }
}

/// The seed for a test: `TRIEFS_SEED` or one from the clock, printed so that
/// a failure can be replayed.
fn test_seed(test: &str) -> u64 {
    let seed = common::seed_from_env("TRIEFS_SEED");
    eprintln!("{test}: seed {seed} (replay with TRIEFS_SEED={seed})");
    seed
}

/// 64-bit FNV-1a over little-endian 64-bit words (bytes of a partial last
/// word are folded in one by one). Each step is a bijection of the state, so
/// changing any one word always changes the hash. Streaming: `update` may be
/// called with pieces of any length.
struct Hash64 {
    h: u64,
    pending: [u8; 8],
    npending: usize,
    len: u64,
}

impl Hash64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Hash64 {
        Hash64 {
            h: 0xcbf2_9ce4_8422_2325,
            pending: [0; 8],
            npending: 0,
            len: 0,
        }
    }

    fn word(&mut self, w: u64) {
        self.h = (self.h ^ w).wrapping_mul(Self::PRIME);
    }

    fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        while self.npending > 0 && !data.is_empty() {
            self.pending[self.npending] = data[0];
            self.npending += 1;
            data = &data[1..];
            if self.npending == 8 {
                self.word(u64::from_le_bytes(self.pending));
                self.npending = 0;
            }
        }
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().unwrap()));
        }
        for &b in chunks.remainder() {
            self.pending[self.npending] = b;
            self.npending += 1;
        }
    }

    fn finish(mut self) -> u64 {
        for i in 0..self.npending {
            self.h = (self.h ^ u64::from(self.pending[i])).wrapping_mul(Self::PRIME);
        }
        self.word(self.len);
        self.h
    }
}

/// The hash must not depend on how the data is split into `update` calls
/// (the write side hashes 1 MiB chunks, readers hash whatever read returns),
/// and must see a one-byte change anywhere.
#[test]
fn hash64_streaming_matches_one_shot() {
    let mut data = vec![0u8; 100_003];
    Rng::new(7).fill(&mut data);
    let one = {
        let mut h = Hash64::new();
        h.update(&data);
        h.finish()
    };
    let mut rng = Rng::new(8);
    for _ in 0..20 {
        let mut h = Hash64::new();
        let mut pos = 0;
        while pos < data.len() {
            let n = (rng.range(0, 20) as usize).min(data.len() - pos);
            h.update(&data[pos..pos + n]);
            pos += n;
        }
        assert_eq!(h.finish(), one);
    }
    for i in [0, 7, 8, 50_000, 100_002] {
        data[i] ^= 1;
        let mut h = Hash64::new();
        h.update(&data);
        assert_ne!(h.finish(), one, "flip at {i}");
        data[i] ^= 1;
    }
}

// ---------------------------------------------------------------------------
// Small syscall helpers
// ---------------------------------------------------------------------------

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn fstat(fd: i32) -> libc::stat {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstat(fd, &mut st) };
    assert_eq!(rc, 0, "{}", os_err("fstat"));
    st
}

/// `lseek` returning the offset or the errno.
fn lseek(fd: i32, off: u64, whence: i32) -> Result<u64, i32> {
    let r = unsafe { libc::lseek(fd, off as libc::off_t, whence) };
    if r < 0 {
        Err(common::errno())
    } else {
        Ok(r as u64)
    }
}

/// Waits until statfs on `mnt` shows as many free blocks and free inodes as
/// `before` (the daemon frees an inode's pages only when the kernel forgets
/// it): first by itself for 5 s, then after `echo 2 > drop_caches`. Panics if
/// the space never comes back; returns how it came back.
fn wait_space_returned(mnt: &Path, before: &libc::statvfs, what: &str) -> &'static str {
    let returned = |deadline: Duration| {
        common::wait_until(deadline, || {
            let s = statvfs(mnt);
            s.f_bfree == before.f_bfree && s.f_ffree == before.f_ffree
        })
    };
    if returned(Duration::from_secs(5)) {
        return "by itself";
    }
    drop_caches(2);
    if returned(Duration::from_secs(5)) {
        return "only after echo 2 > /proc/sys/vm/drop_caches";
    }
    let s = statvfs(mnt);
    panic!(
        "{what}: space not returned on {} even after drop_caches 2: free blocks \
         before {} now {}, free inodes before {} now {}",
        mnt.display(),
        before.f_bfree,
        s.f_bfree,
        before.f_ffree,
        s.f_ffree
    );
}

/// Reads until `buf` is full or end of file; returns the bytes read.
fn read_full_at(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// A page-aligned heap buffer (O_DIRECT wants aligned user memory on some
/// filesystems).
struct AlignedBuf {
    ptr: *mut u8,
    len: usize,
}

impl AlignedBuf {
    fn new(len: usize) -> AlignedBuf {
        let layout = std::alloc::Layout::from_size_align(len.max(1), PAGE).unwrap();
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory");
        AlignedBuf { ptr, len }
    }

    fn as_mut(&mut self) -> &mut [u8] {
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = std::alloc::Layout::from_size_align(self.len.max(1), PAGE).unwrap();
        unsafe { std::alloc::dealloc(self.ptr, layout) };
    }
}

fn open_direct(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

/// First index where `a` and `b` differ (or the shorter length).
fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    let n = a.len().min(b.len());
    // Compare in big slices first: fast path for the common equal case.
    let mut i = 0;
    while i < n {
        let j = (i + 4096).min(n);
        if a[i..j] != b[i..j] {
            return (i..j).find(|&k| a[k] != b[k]);
        }
        i = j;
    }
    (a.len() != b.len()).then_some(n)
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------
// 1. fsx-style exerciser
// ---------------------------------------------------------------------------

/// Largest file the exerciser makes (`TRIEFS_FSX_MAXLEN` overrides).
const FSX_MAXLEN: u64 = 2 * MIB;
/// Largest single read/write/map/truncate step (`TRIEFS_FSX_MAXOP`).
const FSX_MAXOP: u64 = 64 * KIB;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Write,
    Read,
    Truncate,
    Append,
    MapRead,
    MapWrite,
    Fallocate,
    FallocKeepSize,
    PunchHole,
    DirectRead,
    CopyRange,
}

/// Ops and their relative weights.
const OPS: [(Op, u64); 11] = [
    (Op::Write, 20),
    (Op::Read, 16),
    (Op::Truncate, 6),
    (Op::Append, 8),
    (Op::MapRead, 8),
    (Op::MapWrite, 8),
    (Op::Fallocate, 5),
    (Op::FallocKeepSize, 3),
    (Op::PunchHole, 4),
    (Op::DirectRead, 6),
    (Op::CopyRange, 4),
];

struct Fsx {
    path: PathBuf,
    /// O_RDWR: pwrite, pread, ftruncate, fallocate, mmap, copy_file_range.
    fd: File,
    /// O_WRONLY|O_APPEND: appends with write(2).
    afd: File,
    /// O_RDONLY|O_DIRECT: reads that bypass the page cache (None when the
    /// filesystem refuses O_DIRECT).
    dfd: Option<File>,
    shadow: Vec<u8>,
    rng: Rng,
    seed: u64,
    opn: u64,
    log: VecDeque<String>,
    counts: [u64; OPS.len()],
    skipped_copy: bool,
    dbuf: AlignedBuf,
    buf: Vec<u8>,
    maxlen: u64,
    maxop: u64,
}

impl Fsx {
    fn new(dir: &Path, seed: u64) -> Fsx {
        let env = |k: &str, d: u64| {
            std::env::var(k).map_or(d, |v| v.trim().parse().expect("a number of bytes"))
        };
        let maxlen = env("TRIEFS_FSX_MAXLEN", FSX_MAXLEN);
        let maxop = env("TRIEFS_FSX_MAXOP", FSX_MAXOP).clamp(1, maxlen);
        if maxlen != FSX_MAXLEN || maxop != FSX_MAXOP {
            eprintln!("fsx: max file size {maxlen}, max op size {maxop}");
        }
        let path = dir.join("fsx.file");
        let fd = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("create fsx file");
        let (afd, dfd) = Self::open_others(&path);
        if dfd.is_none() {
            eprintln!(
                "fsx: O_DIRECT refused on {}; direct reads off",
                dir.display()
            );
        }
        Fsx {
            path,
            fd,
            afd,
            dfd,
            shadow: Vec::new(),
            rng: Rng::new(seed),
            seed,
            opn: 0,
            log: VecDeque::with_capacity(64),
            counts: [0; OPS.len()],
            skipped_copy: false,
            dbuf: AlignedBuf::new((maxlen + maxop) as usize + 2 * PAGE),
            buf: vec![0; (maxlen + maxop) as usize],
            maxlen,
            maxop,
        }
    }

    fn open_others(path: &Path) -> (File, Option<File>) {
        let afd = OpenOptions::new()
            .append(true)
            .open(path)
            .expect("open O_APPEND fd");
        (afd, open_direct(path).ok())
    }

    fn size(&self) -> u64 {
        self.shadow.len() as u64
    }

    fn log(&mut self, s: String) {
        if self.log.len() == 50 {
            self.log.pop_front();
        }
        self.log.push_back(format!("#{} {s}", self.opn));
    }

    fn fail(&self, msg: &str) -> ! {
        let tail: Vec<&str> = self.log.iter().map(String::as_str).collect();
        panic!(
            "fsx on {} failed at op #{} (seed {}, replay with TRIEFS_SEED={}): {msg}\n\
             shadow size {}\nlast {} ops:\n  {}",
            self.path.display(),
            self.opn,
            self.seed,
            self.seed,
            self.size(),
            tail.len(),
            tail.join("\n  ")
        );
    }

    /// Compares bytes `got` read at file offset `off` (by `how`) with the
    /// shadow; on mismatch reports the first differing offset, and what a
    /// page-cache-bypassing read sees there.
    fn check(&self, how: &str, off: u64, got: &[u8]) {
        let end = (off as usize + got.len()).min(self.shadow.len());
        let want = if (off as usize) < end {
            &self.shadow[off as usize..end]
        } else {
            &[][..]
        };
        let Some(i) = first_diff(want, got) else {
            return;
        };
        let at = off + i as u64;
        let ndiff = want.iter().zip(got).filter(|(a, b)| a != b).count();
        let lo = i.saturating_sub(8);
        let hi_w = (i + 8).min(want.len());
        let hi_g = (i + 8).min(got.len());
        let mut direct = String::from("(no O_DIRECT fd)");
        if let Ok(f) = open_direct(&self.path) {
            let mut b = AlignedBuf::new(PAGE);
            let base = at & !(PAGE as u64 - 1);
            if let Ok(n) = read_full_at(&f, b.as_mut(), base) {
                let k = (at - base) as usize;
                direct = format!(
                    "O_DIRECT read at {at}: {}",
                    hex(&b.as_mut()[k.min(n)..(k + 8).min(n)])
                );
            }
        }
        self.fail(&format!(
            "{how} off={off} len={}: first differing file offset {at} \
             ({ndiff} bytes differ; lengths want {} got {})\n\
             expected from {}: {}\n     got from {}: {}\n{direct}",
            got.len(),
            want.len(),
            got.len(),
            off + lo as u64,
            hex(&want[lo.min(want.len())..hi_w]),
            off + lo as u64,
            hex(&got[lo.min(got.len())..hi_g]),
        ));
    }

    fn check_size(&self, what: &str) {
        let st = fstat(self.fd.as_raw_fd());
        if st.st_size as u64 != self.size() {
            self.fail(&format!(
                "{what}: fstat size {} but expected {}",
                st.st_size,
                self.size()
            ));
        }
    }

    fn pick_op(&mut self) -> (usize, Op) {
        let total: u64 = OPS.iter().map(|o| o.1).sum();
        let mut r = self.rng.below(total);
        for (i, &(op, w)) in OPS.iter().enumerate() {
            if r < w {
                return (i, op);
            }
            r -= w;
        }
        unreachable!()
    }

    /// A random `(offset, len)` with `len >= 1` and `offset + len <= self.maxlen`.
    fn pick_range(&mut self) -> (u64, u64) {
        let off = self.rng.below(self.maxlen);
        let len = self.rng.range(1, self.maxop).min(self.maxlen - off);
        (off, len)
    }

    /// A random range inside the current file (size must be > 0).
    fn pick_inside(&mut self) -> (u64, u64) {
        let size = self.size();
        let off = self.rng.below(size);
        let len = self.rng.range(1, self.maxop.min(size - off));
        (off, len)
    }

    fn run(&mut self, nops: u64) {
        let start = Instant::now();
        let mut reopen_at = self.rng.range(800, 1200);
        for n in 1..=nops {
            self.opn = n;
            let (idx, op) = self.pick_op();
            let op = if op == Op::CopyRange && self.skipped_copy {
                Op::Write
            } else {
                op
            };
            let idx = OPS.iter().position(|o| o.0 == op).unwrap_or(idx);
            self.counts[idx] += 1;
            self.step(op);
            self.check_size(&format!("after {op:?}"));
            if n == reopen_at {
                self.reopen_and_verify();
                reopen_at = n + self.rng.range(800, 1200);
            }
        }
        self.reopen_and_verify();
        // A fresh open by path, read through std, as any program would.
        let all = std::fs::read(&self.path).expect("read fsx file by path");
        self.check("final std::fs::read", 0, &all);
        if all.len() != self.shadow.len() {
            self.fail("final read length");
        }
        let counts: Vec<String> = OPS
            .iter()
            .zip(self.counts)
            .map(|((op, _), c)| format!("{op:?}={c}"))
            .collect();
        eprintln!(
            "fsx on {}: {nops} ops OK in {:.1?} (final size {}): {}",
            self.path.display(),
            start.elapsed(),
            self.size(),
            counts.join(" ")
        );
    }

    /// Closes every fd and unlinks the file.
    fn remove(self) {
        let path = self.path.clone();
        drop(self);
        std::fs::remove_file(&path).expect("remove fsx file");
    }

    fn reopen_and_verify(&mut self) {
        self.log("close and reopen all fds".into());
        // Close every handle of the file before opening new ones, so the
        // kernel releases them all (and may forget the inode meanwhile).
        self.dfd = None;
        self.afd = File::open("/dev/null").unwrap();
        self.fd = File::open("/dev/null").unwrap();
        self.fd = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .expect("reopen fsx file");
        let (afd, dfd) = Self::open_others(&self.path);
        self.afd = afd;
        self.dfd = dfd;
        self.check_size("after reopen");
        // Whole file through the page cache and through O_DIRECT.
        let size = self.size() as usize;
        let mut all = std::mem::take(&mut self.buf);
        let n = read_full_at(&self.fd, &mut all[..size + 1], 0)
            .unwrap_or_else(|e| self.fail(&format!("pread whole file: {e}")));
        self.check("whole-file pread after reopen", 0, &all[..n]);
        if n != size {
            self.fail(&format!("whole-file pread got {n} bytes, size {size}"));
        }
        self.buf = all;
        if let Some(d) = &self.dfd {
            let n = read_full_at(d, self.dbuf.as_mut(), 0)
                .unwrap_or_else(|e| self.fail(&format!("O_DIRECT read whole file: {e}")));
            let got = unsafe { std::slice::from_raw_parts(self.dbuf.ptr, n) };
            self.check("whole-file O_DIRECT read after reopen", 0, got);
            if n != size {
                self.fail(&format!("whole-file O_DIRECT got {n} bytes, size {size}"));
            }
        }
    }

    fn step(&mut self, op: Op) {
        let size = self.size();
        match op {
            Op::Write => {
                let (off, len) = self.pick_range();
                self.log(format!("write off={off} len={len} (size {size})"));
                let mut data = std::mem::take(&mut self.buf);
                self.rng.fill(&mut data[..len as usize]);
                if let Err(e) = self.fd.write_all_at(&data[..len as usize], off) {
                    self.fail(&format!("pwrite off={off} len={len}: {e}"));
                }
                self.shadow_write(off, &data[..len as usize]);
                self.buf = data;
            }
            Op::Read | Op::DirectRead => {
                // Sometimes start or run past the end of file.
                let off = self.rng.below(size + self.maxop / 4);
                let len = self.rng.range(1, self.maxop);
                if op == Op::Read || self.dfd.is_none() {
                    self.log(format!("read off={off} len={len} (size {size})"));
                    let mut buf = std::mem::take(&mut self.buf);
                    let n = read_full_at(&self.fd, &mut buf[..len as usize], off)
                        .unwrap_or_else(|e| self.fail(&format!("pread: {e}")));
                    self.check("pread", off, &buf[..n]);
                    let want = size.saturating_sub(off).min(len);
                    if n as u64 != want {
                        self.fail(&format!(
                            "pread off={off} len={len} got {n} bytes, want {want}"
                        ));
                    }
                    self.buf = buf;
                } else {
                    self.log(format!("O_DIRECT read off={off} len={len} (size {size})"));
                    let d = self.dfd.as_ref().unwrap();
                    let buf = &mut self.dbuf.as_mut()[..len as usize];
                    let r = read_full_at(d, buf, off);
                    let n = r.unwrap_or_else(|e| self.fail(&format!("O_DIRECT pread: {e}")));
                    let got = unsafe { std::slice::from_raw_parts(self.dbuf.ptr, n) };
                    self.check("O_DIRECT pread", off, got);
                    let want = size.saturating_sub(off).min(len);
                    if n as u64 != want {
                        self.fail(&format!(
                            "O_DIRECT pread off={off} len={len} got {n} bytes, want {want}"
                        ));
                    }
                }
            }
            Op::Truncate => {
                // Half the time a small step around the current size.
                let new = if self.rng.below(2) == 0 {
                    self.rng.below(self.maxlen + 1)
                } else {
                    let lo = size.saturating_sub(self.maxop);
                    let hi = (size + self.maxop).min(self.maxlen);
                    self.rng.range(lo, hi)
                };
                self.log(format!("ftruncate {size} -> {new}"));
                if let Err(e) = self.fd.set_len(new) {
                    self.fail(&format!("ftruncate {new}: {e}"));
                }
                self.shadow.resize(new as usize, 0);
            }
            Op::Append => {
                if size >= self.maxlen {
                    self.log(format!("append skipped (size {size})"));
                    return;
                }
                let len = self.rng.range(1, self.maxop).min(self.maxlen - size);
                self.log(format!("append len={len} at {size} via O_APPEND fd"));
                let mut data = std::mem::take(&mut self.buf);
                self.rng.fill(&mut data[..len as usize]);
                if let Err(e) = (&self.afd).write_all(&data[..len as usize]) {
                    self.fail(&format!("append write len={len}: {e}"));
                }
                self.shadow.extend_from_slice(&data[..len as usize]);
                self.buf = data;
            }
            Op::MapRead => {
                if size == 0 {
                    self.log("mapread skipped (empty file)".into());
                    return;
                }
                let (off, len) = self.pick_inside();
                self.log(format!("mapread off={off} len={len} (size {size})"));
                self.map_read(off, len);
            }
            Op::MapWrite => {
                let (off, len) = self.pick_range();
                let msync = self.rng.below(4) != 0;
                let how = if msync { "msync" } else { "no msync" };
                self.log(format!("mapwrite off={off} len={len} {how} (size {size})"));
                self.map_write(off, len, msync);
            }
            Op::Fallocate | Op::FallocKeepSize | Op::PunchHole => {
                let (off, len) = self.pick_range();
                let (mode, name) = match op {
                    Op::Fallocate => (0, "fallocate"),
                    Op::FallocKeepSize => (libc::FALLOC_FL_KEEP_SIZE, "fallocate KEEP_SIZE"),
                    _ => (
                        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                        "punch hole",
                    ),
                };
                self.log(format!("{name} off={off} len={len} (size {size})"));
                let rc = unsafe {
                    libc::fallocate(
                        self.fd.as_raw_fd(),
                        mode,
                        off as libc::off_t,
                        len as libc::off_t,
                    )
                };
                if rc != 0 {
                    self.fail(&os_err(name));
                }
                if op == Op::Fallocate && off + len > size {
                    self.shadow.resize((off + len) as usize, 0);
                }
                if op == Op::PunchHole && off < size {
                    let end = (off + len).min(size);
                    self.shadow[off as usize..end as usize].fill(0);
                }
            }
            Op::CopyRange => {
                if size < 2 {
                    self.log("copy_file_range skipped (file too small)".into());
                    return;
                }
                // Source inside the file, destination anywhere below the
                // size limit, the two ranges disjoint (same-file overlap is
                // EINVAL).
                let (src, len0) = self.pick_inside();
                let mut dst = 0;
                let mut len = len0;
                let mut found = false;
                for _ in 0..8 {
                    dst = self.rng.below(self.maxlen);
                    len = len0.min(self.maxlen - dst);
                    if dst + len <= src || src + len <= dst {
                        found = true;
                        break;
                    }
                }
                if !found {
                    self.log("copy_file_range skipped (no disjoint range)".into());
                    return;
                }
                self.log(format!(
                    "copy_file_range src={src} dst={dst} len={len} (size {size})"
                ));
                let fd = self.fd.as_raw_fd();
                let mut done = 0u64;
                while done < len {
                    let mut oi = (src + done) as libc::off64_t;
                    let mut oo = (dst + done) as libc::off64_t;
                    let r = unsafe {
                        libc::copy_file_range(fd, &mut oi, fd, &mut oo, (len - done) as usize, 0)
                    };
                    if r < 0 {
                        let e = common::errno();
                        if done == 0
                            && self.counts[OPS.iter().position(|o| o.0 == Op::CopyRange).unwrap()]
                                <= 1
                            && matches!(e, libc::EOPNOTSUPP | libc::EXDEV | libc::ENOSYS)
                        {
                            eprintln!("fsx: copy_file_range unsupported (errno {e}); op off");
                            self.skipped_copy = true;
                            return;
                        }
                        self.fail(&os_err("copy_file_range"));
                    }
                    if r == 0 {
                        self.fail(&format!(
                            "copy_file_range returned 0 after {done} of {len} bytes \
                             (source ends at {} < size {size})",
                            src + done
                        ));
                    }
                    done += r as u64;
                }
                let data = self.shadow[src as usize..(src + len) as usize].to_vec();
                self.shadow_write(dst, &data);
            }
        }
    }

    fn shadow_write(&mut self, off: u64, data: &[u8]) {
        let end = off as usize + data.len();
        if end > self.shadow.len() {
            self.shadow.resize(end, 0);
        }
        self.shadow[off as usize..end].copy_from_slice(data);
    }

    /// Maps `[off, off+len)` (inside the file) shared, compares with the
    /// shadow, and checks that the part of the last page past end of file
    /// reads as zeros (POSIX: a partial last page is zero-filled).
    fn map_read(&mut self, off: u64, len: u64) {
        let size = self.size();
        let pg = off & !(PAGE as u64 - 1);
        let end = (off + len).next_multiple_of(PAGE as u64);
        let maplen = (end - pg) as usize;
        let m = Mapping::new(&self.fd, pg, maplen, false)
            .unwrap_or_else(|e| self.fail(&format!("mmap read: {e}")));
        let s = m.slice();
        let got = &s[(off - pg) as usize..(off - pg + len) as usize];
        self.check("mmap read", off, got);
        if end >= size && !size.is_multiple_of(PAGE as u64) {
            let tail = &s[(size - pg) as usize..];
            if let Some(i) = tail.iter().position(|&b| b != 0) {
                self.fail(&format!(
                    "mmap read: byte at {} past end of file {size} is {:#04x}, not 0",
                    size + i as u64,
                    tail[i]
                ));
            }
        }
    }

    /// Extends the file if needed (ftruncate), writes `[off, off+len)`
    /// through a shared mapping, msync(MS_SYNC) (when `msync`), munmap, then
    /// preads back.
    fn map_write(&mut self, off: u64, len: u64, msync: bool) {
        let size = self.size();
        if off + len > size {
            if let Err(e) = self.fd.set_len(off + len) {
                self.fail(&format!("ftruncate {} before mapwrite: {e}", off + len));
            }
            self.shadow.resize((off + len) as usize, 0);
        }
        let pg = off & !(PAGE as u64 - 1);
        let maplen = (off + len - pg) as usize;
        let mut data = std::mem::take(&mut self.buf);
        self.rng.fill(&mut data[..len as usize]);
        {
            let m = Mapping::new(&self.fd, pg, maplen, true)
                .unwrap_or_else(|e| self.fail(&format!("mmap write: {e}")));
            let s = m.slice_mut();
            s[(off - pg) as usize..].copy_from_slice(&data[..len as usize]);
            // Mostly msync(MS_SYNC) before munmap; sometimes leave the dirty
            // pages to the kernel's own writeback, racing the next ops.
            if msync {
                let rc = unsafe { libc::msync(m.ptr, m.len, libc::MS_SYNC) };
                if rc != 0 {
                    self.fail(&os_err("msync"));
                }
            }
        }
        self.shadow_write(off, &data[..len as usize]);
        let mut back = vec![0u8; len as usize];
        let n = read_full_at(&self.fd, &mut back, off)
            .unwrap_or_else(|e| self.fail(&format!("pread after mapwrite: {e}")));
        self.check("pread after mapwrite", off, &back[..n]);
        if n as u64 != len {
            self.fail(&format!("pread after mapwrite got {n} of {len} bytes"));
        }
        self.buf = data;
    }
}

/// A MAP_SHARED mapping, unmapped on drop.
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    fn new(f: &File, off: u64, len: usize, write: bool) -> Result<Mapping, String> {
        let prot = if write {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                off as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(os_err(&format!("mmap off={off} len={len}")));
        }
        Ok(Mapping { ptr, len })
    }

    fn slice(&self) -> &[u8] {
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }

    #[allow(clippy::mut_from_ref)]
    fn slice_mut(&self) -> &mut [u8] {
        unsafe { std::slice::from_raw_parts_mut(self.ptr as *mut u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

fn fsx_ops() -> u64 {
    if let Ok(v) = std::env::var("TRIEFS_FSX_OPS") {
        return v.trim().parse().expect("TRIEFS_FSX_OPS must be a number");
    }
    if std::env::var("TRIEFS_LONG").is_ok_and(|v| v == "1") {
        1_000_000
    } else {
        100_000
    }
}

#[test]
fn fsx_random_ops_triefs() {
    let seed = test_seed("fsx_random_ops_triefs");
    let m = TriefsMount::new(&[]);
    let before = statvfs(m.path());
    let mut fsx = Fsx::new(m.path(), seed);
    fsx.run(fsx_ops());
    fsx.remove();
    let how = wait_space_returned(m.path(), &before, "delete of the fsx file");
    eprintln!("fsx_random_ops_triefs: space returned {how} after delete");
}

/// The same exerciser on tmpfs: shows that the exerciser's model (shadow,
/// op semantics) is right, so a triefs failure with the same seed is a triefs
/// (or FUSE) problem.
#[test]
fn fsx_random_ops_tmpfs_oracle() {
    let seed = test_seed("fsx_random_ops_tmpfs_oracle");
    let t = Tmpfs::new();
    let before = statvfs(t.path());
    let mut fsx = Fsx::new(t.path(), seed);
    fsx.run(fsx_ops());
    fsx.remove();
    wait_space_returned(t.path(), &before, "delete of the fsx file");
}

// ---------------------------------------------------------------------------
// 2. Reading back after the kernel dropped its caches
// ---------------------------------------------------------------------------

/// Expected contents of one file: its size and the written extents (disjoint,
/// everything else reads as zeros).
struct Model {
    path: PathBuf,
    size: u64,
    extents: Vec<(u64, Vec<u8>)>,
}

impl Model {
    fn new(path: PathBuf) -> Model {
        Model {
            path,
            size: 0,
            extents: Vec::new(),
        }
    }

    /// Writes random bytes at `off` through `f` and records them. Extents
    /// must not overlap earlier ones (the generators below make sure).
    fn write(&mut self, f: &File, rng: &mut Rng, off: u64, len: usize) {
        let mut data = vec![0u8; len];
        rng.fill(&mut data);
        // Write in pieces of varying size, like a program would.
        let mut done = 0;
        while done < len {
            let n = (rng.range(1, 2 * MIB) as usize).min(len - done);
            f.write_all_at(&data[done..done + n], off + done as u64)
                .unwrap_or_else(|e| panic!("write {}: {e}", self.path.display()));
            done += n;
        }
        self.size = self.size.max(off + len as u64);
        self.extents.push((off, data));
    }

    fn set_len(&mut self, f: &File, size: u64) {
        assert!(
            self.extents.iter().all(|(o, d)| o + d.len() as u64 <= size),
            "model only grows files"
        );
        f.set_len(size).expect("ftruncate");
        self.size = size;
    }

    /// Expected bytes of `[off, off+len)` (clamped to the size).
    fn expected(&self, off: u64, len: usize) -> Vec<u8> {
        let end = (off + len as u64).min(self.size);
        let mut out = vec![0u8; end.saturating_sub(off) as usize];
        for (o, d) in &self.extents {
            let (lo, hi) = ((*o).max(off), (o + d.len() as u64).min(end));
            if lo < hi {
                out[(lo - off) as usize..(hi - off) as usize]
                    .copy_from_slice(&d[(lo - o) as usize..(hi - o) as usize]);
            }
        }
        out
    }

    /// Reads the whole file through `f` in 1 MiB steps and compares byte for
    /// byte; checks fstat size too.
    fn verify(&self, f: &File, what: &str) {
        let st = fstat(f.as_raw_fd());
        assert_eq!(
            st.st_size as u64,
            self.size,
            "{what}: size of {}",
            self.path.display()
        );
        let mut buf = vec![0u8; MIB as usize];
        let mut off = 0;
        loop {
            let n = read_full_at(f, &mut buf, off)
                .unwrap_or_else(|e| panic!("{what}: read {}: {e}", self.path.display()));
            let want = self.expected(off, buf.len());
            if let Some(i) = first_diff(&want, &buf[..n]) {
                let at = off + i as u64;
                panic!(
                    "{what}: {} differs at offset {at} (size {}): expected {} got {} \
                     (read {n} bytes at {off}, expected {})",
                    self.path.display(),
                    self.size,
                    hex(&want[i.min(want.len())..(i + 8).min(want.len())]),
                    hex(&buf[i.min(n)..(i + 8).min(n)]),
                    want.len()
                );
            }
            if n == 0 {
                break;
            }
            off += n as u64;
        }
        assert_eq!(
            off,
            self.size,
            "{what}: bytes read from {}",
            self.path.display()
        );
    }

    fn verify_by_path(&self, what: &str) {
        let f = File::open(&self.path)
            .unwrap_or_else(|e| panic!("{what}: open {}: {e}", self.path.display()));
        self.verify(&f, what);
    }
}

/// Makes the file set for the cache tests under `dir`: a 64 MiB random file,
/// small files of edge sizes, sparse files, a hard link and a deep path.
fn make_files(dir: &Path, rng: &mut Rng) -> Vec<Model> {
    let mut models = Vec::new();
    let create = |p: &Path| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(p)
            .unwrap_or_else(|e| panic!("create {}: {e}", p.display()))
    };

    // 64 MiB of random bytes.
    let mut big = Model::new(dir.join("big64m"));
    let f = create(&big.path);
    big.write(&f, rng, 0, 64 * MIB as usize);
    models.push(big);

    // Small files with sizes around page boundaries, in a deep directory.
    let deep = dir.join("a/b/c/d/e");
    std::fs::create_dir_all(&deep).unwrap();
    for (i, len) in [
        0usize, 1, 511, 4095, 4096, 4097, 8191, 65_537, 200_000, 1_000_003,
    ]
    .into_iter()
    .enumerate()
    {
        let d = if i % 2 == 0 { dir } else { deep.as_path() };
        let mut mdl = Model::new(d.join(format!("small{i}_{len}")));
        let f = create(&mdl.path);
        if len > 0 {
            mdl.write(&f, rng, 0, len);
        }
        models.push(mdl);
    }

    // Sparse: scattered extents with holes between them, trailing hole.
    for k in 0..3u64 {
        let mut mdl = Model::new(dir.join(format!("sparse{k}")));
        let f = create(&mdl.path);
        let mut off = rng.below(3 * MIB);
        for _ in 0..rng.range(4, 12) {
            let len = rng.range(1, 300 * KIB) as usize;
            mdl.write(&f, rng, off, len);
            off += len as u64 + rng.range(1, 6 * MIB);
        }
        mdl.set_len(&f, off + rng.below(5 * MIB));
        models.push(mdl);
    }
    // All hole: only ftruncate.
    let mut holes = Model::new(dir.join("allhole"));
    let f = create(&holes.path);
    holes.set_len(&f, 40 * MIB + 123);
    models.push(holes);

    // A file with two names: both must read back.
    let mut linked = Model::new(dir.join("linked"));
    let f = create(&linked.path);
    linked.write(&f, rng, 5000, 300_000);
    std::fs::hard_link(&linked.path, deep.join("linked2")).unwrap();
    let mut second = Model::new(deep.join("linked2"));
    second.size = linked.size;
    second.extents = linked.extents.clone();
    models.push(linked);
    models.push(second);
    models
}

#[test]
fn read_back_after_drop_caches() {
    let seed = test_seed("read_back_after_drop_caches");
    let mut rng = Rng::new(seed);
    let m = TriefsMount::new(&[]);
    let empty = statvfs(m.path());
    let start = Instant::now();
    let mut models = make_files(m.path(), &mut rng);

    // (a) Files closed: drop page cache, dentries and inodes, read by path.
    drop_caches(3);
    for mdl in &models {
        mdl.verify_by_path("closed during drop_caches 3");
    }

    // (b) Files open during the drop; read through the same fds, then close,
    // drop again, reopen and read.
    let files: Vec<File> = models
        .iter()
        .map(|mdl| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&mdl.path)
                .unwrap()
        })
        .collect();
    // Modify some through the open fds (appending new extents past the old
    // size) so that the open inodes carry fresh data into the drop.
    let n = models.len();
    for (i, mdl) in models.iter_mut().enumerate() {
        // (Not the second name of the hard link: its model is copied below.)
        if i % 3 == 0 && i != n - 1 {
            let off = mdl.size + rng.below(3 * PAGE as u64);
            let len = rng.range(1, 100 * KIB) as usize;
            mdl.write(&files[i], &mut rng, off, len);
        }
    }
    // Hard-linked names share the inode: keep the second model in step.
    let (a, b) = models.split_at_mut(n - 1);
    b[0].size = a[n - 2].size;
    b[0].extents = a[n - 2].extents.clone();

    // An unlinked but open file must survive the drop (kernel keeps the
    // inode; the daemon must not free it on forget).
    let orphan_path = m.path().join("orphan");
    let orphan = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&orphan_path)
        .unwrap();
    let mut orphan_mdl = Model::new(orphan_path.clone());
    orphan_mdl.write(&orphan, &mut rng, 0, 3 * MIB as usize + 17);
    std::fs::remove_file(&orphan_path).unwrap();

    drop_caches(3);
    for (mdl, f) in models.iter().zip(&files) {
        mdl.verify(f, "open fd across drop_caches 3");
    }
    orphan_mdl.verify(&orphan, "unlinked open fd across drop_caches 3");
    drop_caches(2);
    orphan_mdl.verify(&orphan, "unlinked open fd across drop_caches 2");
    drop(files);
    drop(orphan);
    drop_caches(3);
    for mdl in &models {
        mdl.verify_by_path("reopened after close and drop_caches 3");
    }
    assert!(
        !orphan_path.exists(),
        "unlinked file reappeared after drop_caches"
    );
    // Only dentries and inodes (kernel forgets them, page cache goes with
    // them): every name must still resolve to the same data.
    drop_caches(2);
    for mdl in &models {
        mdl.verify_by_path("after drop_caches 2");
    }
    // Everything deleted (the orphan included): all space comes back.
    for e in std::fs::read_dir(m.path()).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
    }
    let how = wait_space_returned(m.path(), &empty, "delete of all files");
    eprintln!(
        "read_back_after_drop_caches: {} files OK in {:.1?}; space returned {how}",
        models.len(),
        start.elapsed()
    );
}

// ---------------------------------------------------------------------------
// 3. Large and sparse files
// ---------------------------------------------------------------------------

/// A start offset with what `SEEK_DATA` and `SEEK_HOLE` answer from it.
type SeekProbe = (u64, Result<u64, i32>, Result<u64, i32>);

/// Data at 0, at 4 GiB - 4 KiB and at 4 GiB + 1: size, st_blocks, contents
/// (also across the 32-bit boundary) and SEEK_DATA/SEEK_HOLE, compared with
/// explicit expectations and with tmpfs.
#[test]
fn sparse_4gib_file() {
    let seed = test_seed("sparse_4gib_file");
    let m = TriefsMount::new(&[]);
    let t = Tmpfs::new();
    let four = 4 * GIB;
    let tail_len = 1000u64;
    let extents = [(0u64, 4096u64), (four - 4096, 4096), (four + 1, tail_len)];
    let size = four + 1 + tail_len;

    let expected_at = |off: u64, len: u64| -> Vec<u8> {
        let mut out = vec![0u8; len.min(size.saturating_sub(off)) as usize];
        for (i, &(o, l)) in extents.iter().enumerate() {
            for p in o.max(off)..(o + l).min(off + out.len() as u64) {
                out[(p - off) as usize] = pattern_byte(seed ^ i as u64, p);
            }
        }
        out
    };

    let mut results = Vec::new();
    for root in [t.path(), m.path()] {
        let path = root.join("big.sparse");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        for (i, &(o, l)) in extents.iter().enumerate() {
            let mut buf = vec![0u8; l as usize];
            fill_pattern(seed ^ i as u64, o, &mut buf);
            f.write_all_at(&buf, o).unwrap();
        }
        drop(f);
        drop_caches(3);
        let f = File::open(&path).unwrap();
        let st = fstat(f.as_raw_fd());
        let fs_name = if root == m.path() { "triefs" } else { "tmpfs" };
        if fs_name == "tmpfs" && st.st_blocks != 3 * 8 {
            // A tmpfs forced to huge pages (shmem_enabled=force) allocates in
            // 2 MiB units; it is then no oracle for 4 KiB answers.
            eprintln!(
                "tmpfs uses st_blocks {} (not 4 KiB pages); tmpfs comparison skipped",
                st.st_blocks
            );
            continue;
        }
        assert_eq!(st.st_size as u64, size, "{fs_name}: st_size");
        // Three 4 KiB pages hold data (the last two are adjacent).
        assert_eq!(
            st.st_blocks,
            3 * 8,
            "{fs_name}: st_blocks of a 4 GiB file with three data pages"
        );
        // Contents: each extent, the holes, and reads across 2^32.
        for (off, len) in [
            (0, 8192),
            (four - 4096 - 100, 4196),
            (four - 2048, 4096),
            (four - 1, 10),
            (four, tail_len + 1),
            (four + 1 + tail_len - 10, 100),
            (2 * GIB, 4096),
            (four - 8192, 4096),
            (four - 4096, MIB),
            (1, 4096),
        ] {
            let mut buf = vec![0u8; len as usize];
            let n = read_full_at(&f, &mut buf, off).unwrap();
            let want = expected_at(off, len);
            if let Some(i) = first_diff(&want, &buf[..n]) {
                panic!(
                    "{fs_name}: read off={off} len={len}: first difference at {} \
                     (expected {} bytes, got {n}): want {} got {}",
                    off + i as u64,
                    want.len(),
                    hex(&want[i.min(want.len())..(i + 8).min(want.len())]),
                    hex(&buf[i.min(n)..(i + 8).min(n)])
                );
            }
        }
        // SEEK_DATA / SEEK_HOLE from a range of starting points.
        let fd = f.as_raw_fd();
        let probes = [
            0,
            1,
            4095,
            4096,
            5000,
            GIB,
            four - 4097,
            four - 4096,
            four - 1,
            four,
            four + 1,
            four + 4095,
            size - 1,
            size,
            size + 1,
            8 * GIB,
        ];
        let got: Vec<SeekProbe> = probes
            .iter()
            .map(|&p| {
                (
                    p,
                    lseek(fd, p, libc::SEEK_DATA),
                    lseek(fd, p, libc::SEEK_HOLE),
                )
            })
            .collect();
        results.push((fs_name, got));

        // One write that itself crosses 2^32, unaligned at both ends.
        let cross = root.join("cross.sparse");
        let (c_off, c_len) = (four - 32 * KIB - 1, 64 * KIB + 3);
        let mut data = vec![0u8; c_len as usize];
        fill_pattern(seed ^ 0xc505, c_off, &mut data);
        std::fs::write(&cross, b"").unwrap();
        OpenOptions::new()
            .write(true)
            .open(&cross)
            .unwrap()
            .write_all_at(&data, c_off)
            .unwrap();
        let f = File::open(&cross).unwrap();
        let st = fstat(f.as_raw_fd());
        let c_end = c_off + c_len;
        assert_eq!(st.st_size as u64, c_end, "{fs_name}: size of cross.sparse");
        let pages = c_end.div_ceil(4096) - c_off / 4096;
        assert_eq!(
            st.st_blocks as u64,
            pages * 8,
            "{fs_name}: st_blocks of cross.sparse"
        );
        let mut back = vec![0u8; 2 * c_len as usize];
        let n = read_full_at(&f, &mut back, c_off - 1000).unwrap();
        assert_eq!(
            n as u64,
            c_len + 1000,
            "{fs_name}: read length of cross.sparse"
        );
        assert!(
            back[..1000].iter().all(|&b| b == 0),
            "{fs_name}: hole before data"
        );
        if let Some(j) = first_diff(&data, &back[1000..n]) {
            panic!(
                "{fs_name}: cross.sparse differs at offset {}",
                c_off + j as u64
            );
        }
        let fd = f.as_raw_fd();
        let page_start = c_off & !4095;
        assert_eq!(
            lseek(fd, 0, libc::SEEK_DATA),
            Ok(page_start),
            "{fs_name}: cross SEEK_DATA"
        );
        assert_eq!(
            lseek(fd, 0, libc::SEEK_HOLE),
            Ok(0),
            "{fs_name}: cross SEEK_HOLE 0"
        );
        assert_eq!(
            lseek(fd, four, libc::SEEK_HOLE),
            Ok(c_end),
            "{fs_name}: cross SEEK_HOLE"
        );
        assert_eq!(
            lseek(fd, four, libc::SEEK_DATA),
            Ok(four),
            "{fs_name}: cross SEEK_DATA 2^32"
        );
    }
    // Explicit expectations (4 KiB granularity, as tmpfs and triefs store).
    let enxio = Err(libc::ENXIO);
    let want: Vec<SeekProbe> = vec![
        (0, Ok(0), Ok(4096)),
        (1, Ok(1), Ok(4096)),
        (4095, Ok(4095), Ok(4096)),
        (4096, Ok(four - 4096), Ok(4096)),
        (5000, Ok(four - 4096), Ok(5000)),
        (GIB, Ok(four - 4096), Ok(GIB)),
        (four - 4097, Ok(four - 4096), Ok(four - 4097)),
        (four - 4096, Ok(four - 4096), Ok(size)),
        (four - 1, Ok(four - 1), Ok(size)),
        (four, Ok(four), Ok(size)),
        (four + 1, Ok(four + 1), Ok(size)),
        (four + 4095, enxio, enxio),
        (size - 1, Ok(size - 1), Ok(size)),
        (size, enxio, enxio),
        (size + 1, enxio, enxio),
        (8 * GIB, enxio, enxio),
    ];
    // four + 4095 is past the end (size = 4 GiB + 1001).
    assert!(four + 4095 >= size);
    for (fs_name, got) in &results {
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(
                g, w,
                "{fs_name}: lseek(SEEK_DATA, SEEK_HOLE) from {} (left: got, right: expected)",
                g.0
            );
        }
    }
}

/// 1 GiB written in 1 MiB chunks from a generator, hashed on both sides,
/// read back through the daemon (O_DIRECT) and through the page cache after
/// dropping it; then deleted, and statfs must show the space free again.
#[test]
fn dense_1gib_file_and_space_returned() {
    let seed = test_seed("dense_1gib_file_and_space_returned");
    let m = TriefsMount::new(&[]);
    let path = m.path().join("dense");
    let chunk = MIB as usize;
    let nchunks = (GIB / MIB) as usize;
    let before = statvfs(m.path());
    let page_units = before.f_frsize;
    assert_eq!(page_units, PAGE as u64, "statfs f_frsize");

    let gen_chunk = |i: usize, buf: &mut [u8]| Rng::new(seed ^ ((i as u64) << 20)).fill(buf);

    let start = Instant::now();
    let mut buf = AlignedBuf::new(chunk);
    let mut wh = Hash64::new();
    {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        for i in 0..nchunks {
            gen_chunk(i, buf.as_mut());
            wh.update(buf.as_mut());
            f.write_all_at(buf.as_mut(), (i * chunk) as u64)
                .unwrap_or_else(|e| panic!("write chunk {i}: {e}"));
        }
        f.sync_all().unwrap();
    }
    let write_hash = wh.finish();
    let t_write = start.elapsed();

    let st = std::fs::metadata(&path).unwrap();
    assert_eq!(st.len(), GIB, "size of the dense file");
    assert_eq!(st.blocks(), GIB / 512, "st_blocks of the dense file");
    let full = statvfs(m.path());
    assert_eq!(
        before.f_bfree - full.f_bfree,
        GIB / PAGE as u64,
        "statfs free blocks used by a 1 GiB file (before {}, after {})",
        before.f_bfree,
        full.f_bfree
    );

    // Read 1: O_DIRECT, straight from the daemon. Compare per chunk too, so
    // that a mismatch names its place.
    let t0 = Instant::now();
    let mut rh = Hash64::new();
    let mut want = vec![0u8; chunk];
    {
        let f = open_direct(&path).expect("open O_DIRECT");
        for i in 0..nchunks {
            let n = read_full_at(&f, buf.as_mut(), (i * chunk) as u64).unwrap();
            assert_eq!(n, chunk, "O_DIRECT read of chunk {i} was short");
            rh.update(buf.as_mut());
            gen_chunk(i, &mut want);
            if let Some(j) = first_diff(&want, buf.as_mut()) {
                panic!(
                    "O_DIRECT read: first difference at offset {}",
                    i * chunk + j
                );
            }
        }
        let n = read_full_at(&f, buf.as_mut(), GIB).unwrap();
        assert_eq!(n, 0, "O_DIRECT read past end of the dense file");
    }
    assert_eq!(rh.finish(), write_hash, "hash of O_DIRECT read-back");
    let t_direct = t0.elapsed();

    // Read 2: buffered, after dropping the page cache (kernel readahead
    // into fresh pages from the daemon).
    drop_caches(1);
    let t0 = Instant::now();
    let mut rh = Hash64::new();
    {
        let mut f = File::open(&path).unwrap();
        let mut total = 0u64;
        loop {
            let n = std::io::Read::read(&mut f, buf.as_mut()).unwrap();
            if n == 0 {
                break;
            }
            rh.update(&buf.as_mut()[..n]);
            total += n as u64;
        }
        assert_eq!(total, GIB, "buffered read length");
    }
    assert_eq!(rh.finish(), write_hash, "hash of buffered read-back");
    let t_buffered = t0.elapsed();

    // Delete: the daemon frees the pages when the kernel forgets the inode.
    std::fs::remove_file(&path).unwrap();
    let t0 = Instant::now();
    let how = wait_space_returned(m.path(), &before, "delete of the 1 GiB file");
    eprintln!(
        "dense 1 GiB: write+hash {t_write:.1?}, O_DIRECT read {t_direct:.1?}, \
         buffered read {t_buffered:.1?}; space returned {how} after {:.1?}",
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------
// 4. Several processes on one file
// ---------------------------------------------------------------------------

/// What a child reports on its result pipe: `[code, a, b, c]`.
const CHILD_OK: u64 = 0;
const CHILD_MISMATCH: u64 = 1; // a = offset, b = expected byte, c = got byte
const CHILD_SYSCALL: u64 = 2; // a = which call, b = errno, c = offset
const CHILD_SHRANK: u64 = 3; // a = previous size, b = new size
const CHILD_TIMEOUT: u64 = 4; // a = last size seen

/// A forked child process with a result pipe.
struct Child {
    pid: libc::pid_t,
    rfd: i32,
    name: String,
}

/// Forks a child running `f`, which returns `[code, a, b, c]`. The child
/// runs only raw syscalls and arithmetic on memory set up before the fork (no
/// locks), then `_exit`s. It first closes every inherited fd but its result
/// pipe and the read end of `barrier`, so that it holds no file of another
/// test's mount (tests run in parallel threads of this process).
fn spawn_child(name: String, barrier: &Barrier, f: impl FnOnce() -> [u64; 4]) -> Child {
    let mut p = [0i32; 2];
    assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    let max_fd = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur.min(1 << 16) as i32
    } else {
        1024
    };
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "{}", os_err("fork"));
    if pid == 0 {
        for fd in 3..max_fd {
            if fd != p[1] && fd != barrier.r {
                unsafe { libc::close(fd) };
            }
        }
        let msg = f();
        let mut bytes = [0u8; 32];
        for (i, w) in msg.iter().enumerate() {
            bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        unsafe {
            libc::write(p[1], bytes.as_ptr().cast(), 32);
            libc::_exit(if msg[0] == CHILD_OK { 0 } else { 1 });
        }
    }
    unsafe { libc::close(p[1]) };
    Child {
        pid,
        rfd: p[0],
        name,
    }
}

/// Waits for all children (killing them by pid after `timeout`), returns
/// their messages; panics on any failure report.
fn wait_children(children: Vec<Child>, timeout: Duration, file: &Path) -> Vec<[u64; 4]> {
    let start = Instant::now();
    let mut pending: Vec<(Child, Option<i32>)> = children.into_iter().map(|c| (c, None)).collect();
    while pending.iter().any(|(_, st)| st.is_none()) {
        for (c, st) in pending.iter_mut().filter(|(_, st)| st.is_none()) {
            let mut status = 0;
            let r = unsafe { libc::waitpid(c.pid, &mut status, libc::WNOHANG) };
            if r == c.pid {
                *st = Some(status);
            }
        }
        if start.elapsed() > timeout {
            for (c, st) in &pending {
                if st.is_none() {
                    unsafe { libc::kill(c.pid, libc::SIGKILL) };
                    let mut status = 0;
                    unsafe { libc::waitpid(c.pid, &mut status, 0) };
                }
            }
            let hung: Vec<&str> = pending
                .iter()
                .filter(|(_, st)| st.is_none())
                .map(|(c, _)| c.name.as_str())
                .collect();
            panic!("children {hung:?} did not finish within {timeout:?} (killed)");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (c, st) in pending {
        let mut bytes = [0u8; 32];
        let n = unsafe { libc::read(c.rfd, bytes.as_mut_ptr().cast(), 32) };
        unsafe { libc::close(c.rfd) };
        let st = st.unwrap();
        if n != 32 {
            errors.push(format!("{}: no report (wait status {st:#x})", c.name));
            continue;
        }
        let w: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let msg = [w[0], w[1], w[2], w[3]];
        match msg[0] {
            CHILD_OK => {}
            CHILD_MISMATCH => errors.push(format!(
                "{}: wrong data in {} at offset {}: expected {:#04x}, got {:#04x}",
                c.name,
                file.display(),
                msg[1],
                msg[2],
                msg[3]
            )),
            CHILD_SYSCALL => errors.push(format!(
                "{}: {} failed with errno {} ({}) at offset {}",
                c.name,
                ["open", "pwrite", "pread", "fstat", "write", "barrier"]
                    .get(msg[1] as usize)
                    .unwrap_or(&"?"),
                msg[2],
                std::io::Error::from_raw_os_error(msg[2] as i32),
                msg[3]
            )),
            CHILD_SHRANK => errors.push(format!(
                "{}: file size went down from {} to {} while only appends ran",
                c.name, msg[1], msg[2]
            )),
            CHILD_TIMEOUT => errors.push(format!(
                "{}: gave up waiting for the final size (last seen {})",
                c.name, msg[1]
            )),
            _ => errors.push(format!("{}: bad report {msg:?}", c.name)),
        }
        if st != 0 && msg[0] == CHILD_OK {
            errors.push(format!("{}: exit status {st:#x}", c.name));
        }
        out.push(msg);
    }
    assert!(
        errors.is_empty(),
        "child failures:\n  {}",
        errors.join("\n  ")
    );
    out
}

/// A start barrier: children block reading a pipe until the parent closes
/// its write end, so they all start at once.
struct Barrier {
    r: i32,
    w: i32,
}

impl Barrier {
    fn new() -> Barrier {
        let mut p = [0i32; 2];
        assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
        Barrier { r: p[0], w: p[1] }
    }

    /// In a child (whose copy of the write end `spawn_child` closed): wait
    /// for the release. Returns false on error.
    fn wait(&self) -> bool {
        let mut b = 0u8;
        let n = unsafe { libc::read(self.r, (&mut b as *mut u8).cast(), 1) };
        n == 0
    }

    fn release(self) {
        unsafe {
            libc::close(self.w);
            libc::close(self.r);
        }
    }
}

fn child_errno() -> u64 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as u64
}

/// Four processes pwrite disjoint 1 MiB regions of one file at once, each in
/// small pieces of random size; then the parent checks every region, through
/// the page cache and through the daemon. Run with page-aligned regions and
/// with regions shifted by 777 bytes (neighbours share pages) over a file
/// with existing content that must stay intact outside the regions.
#[test]
fn concurrent_writers_disjoint_regions() {
    let seed = test_seed("concurrent_writers_disjoint_regions");
    let m = TriefsMount::new(&["--threads", "4"]);
    const N: u64 = 4;
    for (round, base) in [(0u64, 0u64), (1, 777)] {
        let path = m.path().join(format!("shared{round}"));
        let pre_seed = seed ^ 0xfeed;
        let total = base + N * MIB + 5555;
        // Existing content (round 1) the writers partly overwrite.
        {
            let f = File::create(&path).unwrap();
            if round == 1 {
                let mut pre = vec![0u8; total as usize];
                fill_pattern(pre_seed, 0, &mut pre);
                f.write_all_at(&pre, 0).unwrap();
            }
        }
        let region_seed = |i: u64| seed ^ (round << 32) ^ (i + 1);
        let cpath = common::cpath(&path);
        let barrier = Barrier::new();
        let mut children = Vec::new();
        for i in 0..N {
            let start = base + i * MIB;
            let mut buf = vec![0u8; MIB as usize];
            fill_pattern(region_seed(i), start, &mut buf);
            let cpath: &CString = &cpath;
            let barrier = &barrier;
            children.push(spawn_child(format!("writer {i}"), barrier, move || {
                let fd = unsafe { libc::open(cpath.as_ptr(), libc::O_RDWR) };
                if fd < 0 {
                    return [CHILD_SYSCALL, 0, child_errno(), 0];
                }
                if !barrier.wait() {
                    return [CHILD_SYSCALL, 5, child_errno(), 0];
                }
                // Pieces of 1..16 KiB, forwards for even writers and
                // backwards for odd ones, so neighbours meet mid-way.
                let mut rng = Rng::new(region_seed(i) ^ 0x5eed);
                let mut cuts = [0usize; 1024];
                let mut ncuts = 0;
                let mut pos = 0usize;
                while pos < buf.len() && ncuts < cuts.len() {
                    pos = (pos + rng.range(1, 16 * 1024) as usize).min(buf.len());
                    cuts[ncuts] = pos;
                    ncuts += 1;
                }
                if pos < buf.len() {
                    cuts[ncuts - 1] = buf.len();
                }
                for k in 0..ncuts {
                    let k = if i % 2 == 0 { k } else { ncuts - 1 - k };
                    let lo = if k == 0 { 0 } else { cuts[k - 1] };
                    let hi = cuts[k];
                    let mut done = lo;
                    while done < hi {
                        let n = unsafe {
                            libc::pwrite(
                                fd,
                                buf[done..hi].as_ptr().cast(),
                                hi - done,
                                (start + done as u64) as libc::off_t,
                            )
                        };
                        if n <= 0 {
                            return [CHILD_SYSCALL, 1, child_errno(), start + done as u64];
                        }
                        done += n as usize;
                    }
                }
                unsafe { libc::close(fd) };
                [CHILD_OK, 0, 0, 0]
            }));
        }
        barrier.release();
        wait_children(children, Duration::from_secs(60), &path);

        // Verify: every region, and the bytes outside them.
        let expected = |off: u64| -> u8 {
            if off >= base && off < base + N * MIB {
                let i = (off - base) / MIB;
                pattern_byte(region_seed(i), off)
            } else if round == 1 {
                pattern_byte(pre_seed, off)
            } else {
                0
            }
        };
        let want_size = if round == 1 { total } else { base + N * MIB };
        let mut want = vec![0u8; want_size as usize];
        for (o, b) in want.iter_mut().enumerate() {
            *b = expected(o as u64);
        }
        let buffered = std::fs::read(&path).unwrap();
        let mut direct = AlignedBuf::new(want_size as usize + PAGE);
        let dn = read_full_at(&open_direct(&path).unwrap(), direct.as_mut(), 0).unwrap();
        for (how, got) in [
            ("buffered read", &buffered[..]),
            ("O_DIRECT read", &direct.as_mut()[..dn]),
        ] {
            if let Some(j) = first_diff(&want, got) {
                let region = if (j as u64) >= base && (j as u64) < base + N * MIB {
                    format!("region of writer {}", (j as u64 - base) / MIB)
                } else {
                    "outside the regions".to_string()
                };
                panic!(
                    "round {round} (base {base}): {how}: first difference at offset {j} \
                     ({region}); lengths want {} got {}; want {} got {}",
                    want.len(),
                    got.len(),
                    hex(&want[j.min(want.len())..(j + 8).min(want.len())]),
                    hex(&got[j.min(got.len())..(j + 8).min(got.len())])
                );
            }
        }
    }
}

/// One process appends fixed-size records with O_APPEND while three others
/// (one with O_DIRECT) keep reading; every byte a reader gets must be the
/// byte written there, and the size must never go down.
#[test]
fn concurrent_readers_while_appending() {
    let seed = test_seed("concurrent_readers_while_appending");
    let m = TriefsMount::new(&["--threads", "4"]);
    let path = m.path().join("log");
    File::create(&path).unwrap();
    const REC: usize = 1021;
    const NREC: u64 = 4000;
    let total = REC as u64 * NREC;
    let cpath = common::cpath(&path);
    let barrier = Barrier::new();
    let mut children = Vec::new();

    // Writer: NREC records, each one write(2) on an O_APPEND fd.
    {
        let (cpath, barrier) = (&cpath, &barrier);
        let mut rec = vec![0u8; REC];
        children.push(spawn_child("appender".into(), barrier, move || {
            let fd = unsafe { libc::open(cpath.as_ptr(), libc::O_WRONLY | libc::O_APPEND) };
            if fd < 0 {
                return [CHILD_SYSCALL, 0, child_errno(), 0];
            }
            if !barrier.wait() {
                return [CHILD_SYSCALL, 5, child_errno(), 0];
            }
            for k in 0..NREC {
                let off = k * REC as u64;
                for (i, b) in rec.iter_mut().enumerate() {
                    *b = pattern_byte(seed, off + i as u64);
                }
                let n = unsafe { libc::write(fd, rec.as_ptr().cast(), REC) };
                if n != REC as isize {
                    return [CHILD_SYSCALL, 4, child_errno(), off];
                }
            }
            unsafe { libc::close(fd) };
            [CHILD_OK, NREC, 0, 0]
        }));
    }
    // Readers: read the newly grown tail and a random earlier range, check
    // every byte; stop once the final size is seen and fully verified.
    for r in 0..3u64 {
        let direct = r == 2;
        let (cpath, barrier) = (&cpath, &barrier);
        let mut buf = AlignedBuf::new(256 * KIB as usize);
        children.push(spawn_child(
            format!("reader {r}{}", if direct { " (O_DIRECT)" } else { "" }),
            barrier,
            move || {
                let flags = libc::O_RDONLY | if direct { libc::O_DIRECT } else { 0 };
                let fd = unsafe { libc::open(cpath.as_ptr(), flags) };
                if fd < 0 {
                    return [CHILD_SYSCALL, 0, child_errno(), 0];
                }
                if !barrier.wait() {
                    return [CHILD_SYSCALL, 5, child_errno(), 0];
                }
                let buf = buf.as_mut();
                let mut rng = Rng::new(seed ^ r);
                let mut last = 0u64;
                let mut iters = 0u64;
                let mut growing_seen = 0u64;
                let t0 = Instant::now();
                let check = |off: u64, n: usize, buf: &[u8]| -> Option<[u64; 4]> {
                    for (i, &b) in buf[..n].iter().enumerate() {
                        let want = pattern_byte(seed, off + i as u64);
                        if b != want {
                            return Some([
                                CHILD_MISMATCH,
                                off + i as u64,
                                u64::from(want),
                                u64::from(b),
                            ]);
                        }
                    }
                    None
                };
                loop {
                    iters += 1;
                    let mut st: libc::stat = unsafe { std::mem::zeroed() };
                    if unsafe { libc::fstat(fd, &mut st) } != 0 {
                        return [CHILD_SYSCALL, 3, child_errno(), 0];
                    }
                    let size = st.st_size as u64;
                    if size < last {
                        return [CHILD_SHRANK, last, size, 0];
                    }
                    if size > last && size < total {
                        growing_seen += 1;
                    }
                    // The new tail, then a random range below the size.
                    let from_tail = last.saturating_sub(REC as u64);
                    let rand_off = if size > 0 { rng.below(size) } else { 0 };
                    for off in [from_tail, rand_off] {
                        let len = (buf.len() as u64).min(size.saturating_sub(off) + 2 * REC as u64);
                        let n = unsafe {
                            libc::pread(
                                fd,
                                buf.as_mut_ptr().cast(),
                                len as usize,
                                off as libc::off_t,
                            )
                        };
                        if n < 0 {
                            return [CHILD_SYSCALL, 2, child_errno(), off];
                        }
                        if let Some(e) = check(off, n as usize, buf) {
                            return e;
                        }
                    }
                    last = size;
                    if size == total {
                        break;
                    }
                    if t0.elapsed() > Duration::from_secs(50) {
                        return [CHILD_TIMEOUT, size, 0, 0];
                    }
                }
                // Final full pass.
                let mut off = 0u64;
                while off < total {
                    let n = unsafe {
                        libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), off as libc::off_t)
                    };
                    if n <= 0 {
                        return [CHILD_SYSCALL, 2, child_errno(), off];
                    }
                    if let Some(e) = check(off, n as usize, buf) {
                        return e;
                    }
                    off += n as u64;
                }
                unsafe { libc::close(fd) };
                [CHILD_OK, iters, growing_seen, 0]
            },
        ));
    }
    barrier.release();
    let t0 = Instant::now();
    let msgs = wait_children(children, Duration::from_secs(90), &path);
    let st = std::fs::metadata(&path).unwrap();
    assert_eq!(
        st.len(),
        total,
        "final size after {NREC} appends of {REC} bytes"
    );
    let all = std::fs::read(&path).unwrap();
    for (o, &b) in all.iter().enumerate() {
        let want = pattern_byte(seed, o as u64);
        assert_eq!(b, want, "final read: byte at {o}");
    }
    eprintln!(
        "readers while appending: {:.1?}; readers' (iterations, sizes seen while growing): {:?}",
        t0.elapsed(),
        msgs[1..].iter().map(|m| (m[1], m[2])).collect::<Vec<_>>()
    );
}

/// Four processes append self-describing records with O_APPEND at once (one
/// write(2) per record); every record must come out whole, each writer's in
/// order, none lost or overlapped, and the daemon's copy (O_DIRECT) must
/// equal the page cache's.
#[test]
fn concurrent_appenders_records_intact() {
    let seed = test_seed("concurrent_appenders_records_intact");
    let m = TriefsMount::new(&["--threads", "4"]);
    let path = m.path().join("journal");
    File::create(&path).unwrap();
    const N: u64 = 4;
    const NREC: u64 = 1500;
    const HDR: usize = 16;
    const MAGIC: u32 = 0x5245_4331;
    let rec_len = |w: u64, q: u64| 1 + (splitmix64(seed ^ (w << 40) ^ q) % 3000) as usize;
    let rec_seed = |w: u64, q: u64| seed ^ (w << 32) ^ (q << 1) ^ 1;
    let cpath = common::cpath(&path);
    let barrier = Barrier::new();
    let mut children = Vec::new();
    for w in 0..N {
        let (cpath, barrier) = (&cpath, &barrier);
        let mut rec = vec![0u8; HDR + 3000];
        children.push(spawn_child(format!("appender {w}"), barrier, move || {
            let fd = unsafe { libc::open(cpath.as_ptr(), libc::O_WRONLY | libc::O_APPEND) };
            if fd < 0 {
                return [CHILD_SYSCALL, 0, child_errno(), 0];
            }
            if !barrier.wait() {
                return [CHILD_SYSCALL, 5, child_errno(), 0];
            }
            for q in 0..NREC {
                let len = rec_len(w, q);
                rec[0..4].copy_from_slice(&MAGIC.to_le_bytes());
                rec[4..8].copy_from_slice(&(w as u32).to_le_bytes());
                rec[8..12].copy_from_slice(&(q as u32).to_le_bytes());
                rec[12..16].copy_from_slice(&(len as u32).to_le_bytes());
                fill_pattern(rec_seed(w, q), 0, &mut rec[HDR..HDR + len]);
                let n = unsafe { libc::write(fd, rec.as_ptr().cast(), HDR + len) };
                if n != (HDR + len) as isize {
                    return [CHILD_SYSCALL, 4, child_errno(), q];
                }
            }
            unsafe { libc::close(fd) };
            [CHILD_OK, 0, 0, 0]
        }));
    }
    barrier.release();
    wait_children(children, Duration::from_secs(60), &path);

    let want_size: u64 = (0..N)
        .flat_map(|w| (0..NREC).map(move |q| (HDR + rec_len(w, q)) as u64))
        .sum();
    let buffered = std::fs::read(&path).unwrap();
    assert_eq!(
        buffered.len() as u64,
        want_size,
        "size after {N} x {NREC} concurrent appends"
    );
    let mut direct = AlignedBuf::new(want_size as usize + PAGE);
    let dn = read_full_at(&open_direct(&path).unwrap(), direct.as_mut(), 0).unwrap();
    if let Some(j) = first_diff(&buffered, &direct.as_mut()[..dn]) {
        panic!(
            "page cache and daemon (O_DIRECT) differ at offset {j} (lengths {} and {dn})",
            buffered.len()
        );
    }
    let mut next = [0u64; N as usize];
    let mut pos = 0usize;
    let mut interleavings = 0;
    let mut last_writer = u64::MAX;
    while pos < buffered.len() {
        let field = |k: usize| -> u64 {
            let b = &buffered[pos + 4 * k..pos + 4 * k + 4];
            u64::from(u32::from_le_bytes(b.try_into().unwrap()))
        };
        assert!(pos + HDR <= buffered.len(), "truncated header at {pos}");
        let (magic, w, q, len) = (field(0), field(1), field(2), field(3) as usize);
        assert!(
            magic == u64::from(MAGIC) && w < N,
            "bad record header at offset {pos}: {}",
            hex(&buffered[pos..pos + HDR])
        );
        assert_eq!(
            q, next[w as usize],
            "writer {w}: record at offset {pos} out of order"
        );
        assert_eq!(len, rec_len(w, q), "writer {w} record {q}: length field");
        let payload = &buffered[pos + HDR..(pos + HDR + len).min(buffered.len())];
        let mut want = vec![0u8; len];
        fill_pattern(rec_seed(w, q), 0, &mut want);
        if let Some(j) = first_diff(&want, payload) {
            panic!(
                "writer {w} record {q} at offset {pos}: payload byte {j} (file offset {}) differs",
                pos + HDR + j
            );
        }
        if w != last_writer {
            interleavings += 1;
            last_writer = w;
        }
        next[w as usize] += 1;
        pos += HDR + len;
    }
    assert_eq!(next, [NREC; N as usize], "records per writer");
    eprintln!(
        "concurrent appenders: {} records intact, {interleavings} runs of one writer",
        N * NREC
    );
}

// ---------------------------------------------------------------------------
// Out of space: what a failed or short write reports is what the file holds
// ---------------------------------------------------------------------------

/// Writes `data` at `off` with one pwrite(2) and updates `model` with what
/// the call reports (a short count, or nothing on an error). Returns the
/// count, or the errno.
fn pwrite_model(f: &File, model: &mut Model, off: u64, data: Vec<u8>) -> Result<usize, i32> {
    let r = unsafe {
        libc::pwrite(
            f.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            off as libc::off_t,
        )
    };
    if r < 0 {
        return Err(common::errno());
    }
    let n = r as usize;
    if n > 0 {
        model.overlay(off, &data[..n]);
    }
    Ok(n)
}

impl Model {
    /// Records `data` at `off`, over whatever was there.
    fn overlay(&mut self, off: u64, data: &[u8]) {
        let end = off + data.len() as u64;
        // Cut the overwritten range out of older extents, then add it.
        let mut kept = Vec::new();
        for (o, d) in self.extents.drain(..) {
            let e = o + d.len() as u64;
            if e <= off || o >= end {
                kept.push((o, d));
                continue;
            }
            if o < off {
                kept.push((o, d[..(off - o) as usize].to_vec()));
            }
            if e > end {
                kept.push((end, d[(end - o) as usize..].to_vec()));
            }
        }
        kept.push((off, data.to_vec()));
        self.extents = kept;
        self.size = self.size.max(end);
    }
}

/// Fills a small filesystem (`size=8m`) past its limit with writes of many
/// shapes. Whatever each call reports (full, short, ENOSPC) must be exactly
/// what the files hold afterwards, through the page cache, after dropping it,
/// and through O_DIRECT; overwriting stored pages must still work when full;
/// and deleting everything gives all space back. Run on triefs and on a tmpfs
/// with the same limit (the two may split a failing write differently).
#[test]
fn out_of_space_keeps_files_consistent() {
    let seed = test_seed("out_of_space_keeps_files_consistent");
    let m = TriefsMount::new(&["-o", "size=8m"]);
    let t = Tmpfs::new();
    common::sh(t.path(), "mount -o remount,size=8m .");
    for (name, root) in [("tmpfs", t.path()), ("triefs", m.path())] {
        let mut rng = Rng::new(seed);
        let empty = statvfs(root);
        assert_eq!(
            empty.f_blocks * empty.f_frsize,
            8 * MIB,
            "{name}: size=8m in statfs"
        );
        let open = |p: &Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(p)
                .unwrap()
        };
        let mut log = Vec::new();
        let rand = |rng: &mut Rng, n: usize| {
            let mut v = vec![0u8; n];
            rng.fill(&mut v);
            v
        };
        // A: 6 MiB, fits.
        let mut a = Model::new(root.join("a"));
        let fa = open(&a.path);
        let r = pwrite_model(&fa, &mut a, 0, rand(&mut rng, 6 * MIB as usize));
        assert_eq!(
            r,
            Ok(6 * MIB as usize),
            "{name}: 6 MiB into an empty 8 MiB fs"
        );
        // B: 4 MiB in one call at an unaligned offset: cannot fit whole.
        let mut b = Model::new(root.join("b"));
        let fb = open(&b.path);
        let r = pwrite_model(&fb, &mut b, 1000, rand(&mut rng, 4 * MIB as usize));
        log.push(format!("b: 4 MiB at 1000 -> {r:?}"));
        assert!(
            matches!(r, Err(libc::ENOSPC)) || matches!(r, Ok(n) if n < 4 * MIB as usize),
            "{name}: 4 MiB write into ~2 MiB of free space: {r:?}"
        );
        // Many small writes until the space is gone, at random places in a
        // sparse file C (holes need new pages, stored pages do not).
        let mut c = Model::new(root.join("c"));
        let fc = open(&c.path);
        let mut enospc = 0;
        for _ in 0..400 {
            let off = rng.below(16 * MIB);
            let len = rng.range(1, 40 * KIB) as usize;
            let r = pwrite_model(&fc, &mut c, off, rand(&mut rng, len));
            match r {
                Err(libc::ENOSPC) => enospc += 1,
                Ok(_) => {}
                Err(e) => panic!("{name}: pwrite c off={off} len={len}: errno {e}"),
            }
            log.push(format!("c: {len} at {off} -> {r:?}"));
        }
        assert!(enospc > 0, "{name}: 400 writes never hit ENOSPC");
        let full = statvfs(root);
        // Overwrites of stored pages still work on a full filesystem.
        for _ in 0..50 {
            let off = rng.below(6 * MIB - 64 * KIB);
            let len = rng.range(1, 64 * KIB) as usize;
            let r = pwrite_model(&fa, &mut a, off, rand(&mut rng, len));
            assert_eq!(
                r,
                Ok(len),
                "{name}: overwrite inside a when full (free blocks {})",
                full.f_bfree
            );
        }
        // Growing by ftruncate is free (a hole); fallocate and appends past
        // the end need pages and must fail without changing the data.
        fa.set_len(7 * MIB).unwrap();
        a.size = 7 * MIB;
        let rc = unsafe { libc::fallocate(fa.as_raw_fd(), 0, (7 * MIB) as i64, (4 * MIB) as i64) };
        assert_eq!(
            (rc, common::errno()),
            (-1, libc::ENOSPC),
            "{name}: fallocate 4 MiB on a full fs"
        );
        let r = pwrite_model(&fa, &mut a, 7 * MIB - 10, rand(&mut rng, 3 * MIB as usize));
        log.push(format!("a: 3 MiB at 7 MiB - 10 -> {r:?}"));
        assert!(
            matches!(r, Err(libc::ENOSPC)) || matches!(r, Ok(n) if n < 3 * MIB as usize),
            "{name}: 3 MiB write on a full fs: {r:?}"
        );
        let what = |s: &str| format!("{name} after ENOSPC ({s}); writes: {}", log.join(", "));
        for (mdl, f) in [(&a, &fa), (&b, &fb), (&c, &fc)] {
            mdl.verify(f, &what("same fd"));
        }
        drop((fa, fb, fc));
        drop_caches(3);
        for mdl in [&a, &b, &c] {
            mdl.verify_by_path(&what("reopened after drop_caches"));
            let d = open_direct(&mdl.path).unwrap();
            mdl.verify(&d, &what("O_DIRECT"));
        }
        for mdl in [&a, &b, &c] {
            std::fs::remove_file(&mdl.path).unwrap();
        }
        let how = wait_space_returned(root, &empty, &format!("{name}: delete after ENOSPC"));
        eprintln!(
            "{name}: out of space: {}; {enospc} of 400 small writes got ENOSPC; {}; \
             space returned {how}",
            log[0],
            log[log.len() - 1]
        );
    }
}

/// A mount made by root reads ahead 1 MiB (the kernel starts FUSE mounts
/// at 128 KiB, and a daemon cannot raise it through FUSE): cold
/// sequential reads come in 1 MiB READs.
#[test]
fn root_mounts_read_ahead_one_mib() {
    use std::os::unix::fs::MetadataExt;
    let m = common::TriefsMount::new(&[]);
    let dev = std::fs::metadata(m.path()).unwrap().dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let file = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    let kb = std::fs::read_to_string(&file).unwrap();
    assert_eq!(kb.trim(), "1024", "{file}");
}
