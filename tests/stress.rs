//! Concurrency, resource-limit and fault tests against a mounted triefs.
//!
//! - many worker processes racing on one shared tree, with the daemon's
//!   consistency check (`TRIEFS_CHECK=1`) as the final judge;
//! - hard links made and removed in parallel, then `st_nlink` compared with
//!   the names found by walking the tree;
//! - `size=` and `nr_inodes=` limits (ENOSPC at the exact boundary, statfs,
//!   recovery after delete) and the daemon's memory bound;
//! - SIGKILL of the daemon: writers fail instead of hanging, stale mount
//!   points are diagnosed and can be cleared and reused, `auto_unmount`.
//!
//! Worker processes are this test binary re-executed on the
//! `stress_worker_entry` test with `TRIEFS_STRESS_ROLE` set; without that
//! variable the entry does nothing. Workers talk to the test over stdout:
//! `@P n` is a heartbeat after `n` operations, `@BAD ...` an unexpected
//! result, `@DONE ...` a clean end. Every test takes one global lock, so
//! drop_caches timing, memory and CPU use do not interfere across tests.
//!
//! Set `TRIEFS_STRESS_SEED` to replay a run of the random workers.
// Mount tests drive Linux: tmpfs as the oracle, Linux syscalls and tools.
#![cfg(target_os = "linux")]

mod common;

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    MountSpec, Rng, TriefsMount, cpath, drop_caches, errno, is_mounted, proc_kib, statvfs,
    strerror, triefs_bin,
};

/// Serializes the tests of this file (drop_caches, memory, CPU).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A worker silent for this long is considered hung.
const STALL: Duration = Duration::from_secs(20);

const ROLE: &str = "TRIEFS_STRESS_ROLE";
const ROOT: &str = "TRIEFS_STRESS_ROOT";
const WID: &str = "TRIEFS_STRESS_ID";
const SEED: &str = "TRIEFS_STRESS_SEED";
const SECS: &str = "TRIEFS_STRESS_SECS";

const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;

// ---------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------

/// A `triefs -f` daemon with extra environment and its stderr in a log
/// file ([`TriefsMount::log_text`]), mounted on a fresh mount point.
#[track_caller]
fn daemon(args: &[&str], envs: &[(&str, &str)]) -> TriefsMount {
    MountSpec::new().args(args).envs(envs).log().mount()
}

/// Unmounts and requires a clean exit (0; 3 would be a failed consistency
/// check), showing the daemon's log otherwise.
fn finish(mut d: TriefsMount) {
    let st = d
        .unmount_and_wait()
        .unwrap_or_else(|| panic!("daemon did not exit within 10 s of the unmount"));
    assert_eq!(
        st.code(),
        Some(0),
        "daemon exit {st} (3 = consistency check failed)\n{}",
        d.log_text()
    );
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

/// Drops caches until `done` holds for statfs (at most ~6 s); returns the
/// last statfs either way.
fn settle_statfs(mnt: &Path, done: impl Fn(&libc::statvfs) -> bool) -> libc::statvfs {
    let mut s = statvfs(mnt);
    for _ in 0..30 {
        if done(&s) {
            break;
        }
        drop_caches(2);
        thread::sleep(Duration::from_millis(200));
        s = statvfs(mnt);
    }
    s
}

fn seed() -> u64 {
    common::seed_from_env(SEED)
}

fn c(s: &str) -> CString {
    CString::new(s).expect("path without NUL")
}

/// What walking a tree found about names and link counts.
#[derive(Default)]
struct TreeTruth {
    /// Violations of "nlink = names" (files) and "nlink = 2 + subdirs".
    problems: Vec<String>,
    /// Inode number -> the names found for it.
    names: HashMap<u64, Vec<PathBuf>>,
    /// Inode numbers of the directories.
    dir_inos: HashSet<u64>,
    dirs: usize,
    files: usize,
}

/// Walks `root` (not following symlinks) and compares every inode's
/// `st_nlink` with the names and subdirectories found.
fn tree_truth(root: &Path) -> TreeTruth {
    struct Seen {
        nlink: u64,
        dir: bool,
        subdirs: u64,
    }
    let mut seen: HashMap<u64, Seen> = HashMap::new();
    let mut t = TreeTruth::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
        let dir = m.is_dir();
        seen.entry(m.ino()).or_insert(Seen {
            nlink: m.nlink(),
            dir,
            subdirs: 0,
        });
        t.names.entry(m.ino()).or_default().push(p.clone());
        if !dir {
            t.files += 1;
            continue;
        }
        t.dirs += 1;
        t.dir_inos.insert(m.ino());
        let mut subdirs = 0;
        for e in fs::read_dir(&p).unwrap_or_else(|e| panic!("readdir {}: {e}", p.display())) {
            let e = e.unwrap_or_else(|e| panic!("readdir {}: {e}", p.display()));
            if e.file_type().expect("d_type").is_dir() {
                subdirs += 1;
            }
            stack.push(e.path());
        }
        if let Some(s) = seen.get_mut(&m.ino()) {
            s.subdirs = subdirs;
        }
    }
    for (ino, s) in &seen {
        let names = &t.names[ino];
        if s.dir {
            if names.len() != 1 {
                t.problems
                    .push(format!("directory inode {ino} has names {names:?}"));
            }
            if s.nlink != 2 + s.subdirs {
                t.problems.push(format!(
                    "directory {}: st_nlink {} but {} subdirectories",
                    names[0].display(),
                    s.nlink,
                    s.subdirs
                ));
            }
        } else if s.nlink != names.len() as u64 {
            t.problems.push(format!(
                "inode {ino}: st_nlink {} but {} names {names:?}",
                s.nlink,
                names.len()
            ));
        }
    }
    t
}

/// Removes everything inside `mnt` with `rm -rf`.
fn rm_rf_contents(mnt: &Path) {
    let entries: Vec<PathBuf> = fs::read_dir(mnt)
        .expect("readdir mount")
        .map(|e| e.expect("readdir entry").path())
        .collect();
    if entries.is_empty() {
        return;
    }
    let common::Output {
        status: st,
        stderr: err,
        ..
    } = common::run_timed(
        {
            let mut cmd = Command::new("rm");
            cmd.arg("-rf").arg("--").args(&entries);
            cmd
        },
        Duration::from_secs(60),
    );
    assert!(
        st.is_some_and(|s| s.success()),
        "rm -rf failed ({st:?}): {err}"
    );
    assert_eq!(
        fs::read_dir(mnt).expect("readdir mount").count(),
        0,
        "mount not empty after rm -rf"
    );
}

// ---------------------------------------------------------------------------
// Worker processes, seen from the test
// ---------------------------------------------------------------------------

#[derive(Default)]
struct WorkerState {
    last: Vec<Option<Instant>>,
    ops: Vec<u64>,
    /// Every non-heartbeat protocol line, per worker.
    lines: Vec<Vec<String>>,
}

/// Worker processes with a reader thread each for their stdout.
struct Workers {
    children: Vec<Child>,
    state: Arc<Mutex<WorkerState>>,
    readers: Vec<thread::JoinHandle<()>>,
    started: Instant,
}

fn spawn_workers(role: &str, root: &Path, n: usize, secs: u64, seed: u64) -> Workers {
    let exe = std::env::current_exe().expect("test binary path");
    let state = Arc::new(Mutex::new(WorkerState {
        last: vec![None; n],
        ops: vec![0; n],
        lines: vec![Vec::new(); n],
    }));
    let mut ws = Workers {
        children: Vec::new(),
        state: state.clone(),
        readers: Vec::new(),
        started: Instant::now(),
    };
    for i in 0..n {
        let mut child = Command::new(&exe)
            .args([
                "stress_worker_entry",
                "--exact",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env(ROLE, role)
            .env(ROOT, root)
            .env(WID, i.to_string())
            .env(SEED, seed.wrapping_add(i as u64 * 7919).to_string())
            .env(SECS, secs.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn worker");
        let out = child.stdout.take().expect("worker stdout");
        ws.children.push(child);
        let st = state.clone();
        ws.readers.push(thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(n) = line.strip_prefix("@P ") {
                    s.last[i] = Some(Instant::now());
                    s.ops[i] = n.trim().parse().unwrap_or(s.ops[i]);
                } else if line.starts_with('@') {
                    s.last[i] = Some(Instant::now());
                    s.lines[i].push(line);
                }
            }
        }));
    }
    ws
}

impl Workers {
    /// Waits for every worker to exit. A worker without a heartbeat for
    /// `STALL`, or a run longer than `limit`, is a hang: all workers are
    /// SIGKILLed by PID; a worker whose request the daemon has already taken
    /// cannot die until it is answered, so if some survive, the daemon
    /// (`daemon_pid`) is SIGKILLed too, which aborts the connection. Then
    /// `mnt` is detached lazily and an error returned.
    fn supervise(
        &mut self,
        mnt: &Path,
        limit: Duration,
        daemon_pid: u32,
    ) -> Result<Vec<ExitStatus>, String> {
        let n = self.children.len();
        let mut status: Vec<Option<ExitStatus>> = vec![None; n];
        loop {
            for (i, c) in self.children.iter_mut().enumerate() {
                if status[i].is_none()
                    && let Ok(Some(s)) = c.try_wait()
                {
                    status[i] = Some(s);
                }
            }
            if status.iter().all(Option::is_some) {
                break;
            }
            let stalled = {
                let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                (0..n).find(|&i| {
                    status[i].is_none() && s.last[i].unwrap_or(self.started).elapsed() > STALL
                })
            };
            if stalled.is_some() || self.started.elapsed() > limit {
                let why = match stalled {
                    Some(i) => format!("worker {i} made no progress for {} s", STALL.as_secs()),
                    None => format!("workers still running after {} s", limit.as_secs()),
                };
                let ops = self.ops();
                let mut what = "workers killed";
                if !self.kill_all(Duration::from_secs(3)) && daemon_pid > 0 {
                    // SAFETY: kill(2) of the daemon this test started.
                    unsafe { libc::kill(daemon_pid as i32, libc::SIGKILL) };
                    what = "workers stuck in requests: daemon killed too";
                    self.kill_all(Duration::from_secs(10));
                }
                let _ = Command::new("umount").arg("-l").arg(mnt).status();
                return Err(format!(
                    "hang: {why} (ops so far {ops:?}); {what}, mount detached"
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Ok(status.into_iter().map(Option::unwrap).collect())
    }

    /// SIGKILLs every live worker and reaps them for up to `grace`;
    /// returns whether all are gone.
    fn kill_all(&mut self, grace: Duration) -> bool {
        for c in &mut self.children {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
        }
        let start = Instant::now();
        loop {
            let mut live = 0;
            for c in &mut self.children {
                if matches!(c.try_wait(), Ok(None)) {
                    live += 1;
                }
            }
            if live == 0 {
                return true;
            }
            if start.elapsed() > grace {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn ops(&self) -> Vec<u64> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ops
            .clone()
    }

    /// Number of protocol lines starting with `prefix`, over all workers.
    fn count(&self, prefix: &str) -> usize {
        self.lines()
            .iter()
            .flatten()
            .filter(|l| l.starts_with(prefix))
            .count()
    }

    fn lines(&self) -> Vec<Vec<String>> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lines
            .clone()
    }

    /// Asserts every worker exited 0 and reported nothing unexpected.
    fn assert_clean(&self, statuses: &[ExitStatus]) {
        let lines = self.lines();
        let bad: Vec<String> = lines
            .iter()
            .enumerate()
            .flat_map(|(i, l)| {
                l.iter()
                    .filter(|x| !x.starts_with("@DONE") && !x.starts_with("@RACE"))
                    .map(move |x| format!("worker {i}: {x}"))
            })
            .collect();
        assert!(
            bad.is_empty(),
            "unexpected results from workers:\n{}",
            bad.join("\n")
        );
        for (i, st) in statuses.iter().enumerate() {
            assert!(st.success(), "worker {i} exited with {st}");
            assert!(
                lines[i].iter().any(|l| l.starts_with("@DONE")),
                "worker {i} did not report @DONE"
            );
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.kill_all(Duration::from_secs(5));
    }
}

// ---------------------------------------------------------------------------
// Worker processes, seen from inside
// ---------------------------------------------------------------------------

/// Writes one protocol line to stdout with a single write(2).
fn emit(line: &str) {
    let s = format!("{line}\n");
    // SAFETY: s is a valid buffer of s.len() bytes.
    unsafe {
        libc::write(1, s.as_ptr().cast(), s.len());
    }
}

struct Worker {
    rng: Rng,
    ops: u64,
    bad: u64,
    beat: Instant,
    deadline: Instant,
}

impl Worker {
    fn running(&self) -> bool {
        Instant::now() < self.deadline
    }

    /// Accounts for one syscall that returned `rc`; call right after it so
    /// errno is still intact. A failure with an errno in `ok` is an expected
    /// race; any other failure is reported. Returns whether it succeeded.
    fn sys(&mut self, op: &str, path: &str, rc: i64, ok: &[i32]) -> bool {
        let e = if rc < 0 { errno() } else { 0 };
        self.ops += 1;
        if self.ops.is_multiple_of(64) || self.beat.elapsed() > Duration::from_millis(200) {
            emit(&format!("@P {}", self.ops));
            self.beat = Instant::now();
        }
        if rc >= 0 {
            return true;
        }
        if !ok.contains(&e) {
            self.fail(&format!("{op} {path}: errno {e} ({})", strerror(e)));
            if e == libc::ENOTCONN || e == libc::ECONNABORTED {
                emit("@FATAL connection to the daemon lost");
                std::process::exit(3);
            }
        }
        false
    }

    fn fail(&mut self, msg: &str) {
        self.bad += 1;
        emit(&format!("@BAD {msg}"));
    }

    /// `<random dir>/<prefix><k>`, `k < n`. Directories are `d0..d3` up to
    /// three deep, so every name's kind is fixed by its prefix.
    fn path(&mut self, prefix: &str, n: u64) -> String {
        let depth = [0, 1, 1, 2, 2, 3][self.rng.below(6) as usize];
        let mut p = String::from(".");
        for _ in 0..depth {
            let k = self.rng.below(4);
            p.push_str(&format!("/d{k}"));
        }
        let k = self.rng.below(n);
        format!("{p}/{prefix}{k}")
    }
}

/// Entry point of the worker processes (a no-op in a normal test run).
#[test]
fn stress_worker_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let id: usize = var(WID).parse().expect("worker id");
    let seed: u64 = var(SEED).parse().expect("seed");
    let secs: u64 = var(SECS).parse().expect("seconds");
    std::env::set_current_dir(var(ROOT)).expect("chdir to the mount");
    let mut w = Worker {
        rng: Rng::new(seed),
        ops: 0,
        bad: 0,
        beat: Instant::now(),
        deadline: Instant::now() + Duration::from_secs(secs),
    };
    match role.as_str() {
        "chaos" => chaos_worker(&mut w, id),
        "links" => links_worker(&mut w),
        "writer" => writer_worker(&mut w),
        r => panic!("unknown worker role {r}"),
    }
    emit(&format!("@P {}", w.ops));
    if w.bad == 0 {
        emit(&format!("@DONE ops={}", w.ops));
    }
    assert_eq!(w.bad, 0, "worker saw unexpected results");
}

const ENOENT: i32 = libc::ENOENT;
const EEXIST: i32 = libc::EEXIST;
const ENOTEMPTY: i32 = libc::ENOTEMPTY;
const EINVAL: i32 = libc::EINVAL;

fn renameat2(from: &CString, to: &CString, flags: u32) -> i64 {
    // SAFETY: valid NUL-terminated paths; renameat2 has no other inputs.
    unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            flags,
        )
    }
}

fn lstat_raw(p: &CString) -> (i64, libc::stat) {
    // SAFETY: stat is plain data filled by the call.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out pointer.
    let rc = unsafe { libc::lstat(p.as_ptr(), &mut st) };
    (rc.into(), st)
}

/// Checks the link count of a directory only this worker changes.
///
/// A wrong count that a second `lstat` still shows is a failure: that is
/// the stale-parent bug (the kernel re-installing a parent's attributes
/// from a reply computed before a mkdir/rmdir, for a whole TTL), which
/// triefs closes with an attribute-invalidation notification. A wrong
/// count that the very next `lstat` no longer shows is the kernel's own
/// attribute-cache race with concurrent lookups of the same directory
/// (see README, "Deliberate differences"); it is counted and reported.
fn check_dir_nlink(w: &mut Worker, dir: &str, want: u64, what: &str) {
    let (rc, st) = lstat_raw(&c(dir));
    if !w.sys("lstat(private)", dir, rc, &[]) || st.st_nlink == want {
        return;
    }
    let (rc, again) = lstat_raw(&c(dir));
    if !w.sys("lstat(private)", dir, rc, &[]) {
        return;
    }
    if again.st_nlink == want {
        eprintln!(
            "{dir}: transient st_nlink {} with {what} (next lstat: {want})",
            st.st_nlink
        );
    } else {
        w.fail(&format!(
            "{dir}: st_nlink {} with {what}, still {} on a second lstat",
            st.st_nlink, again.st_nlink
        ));
    }
}

/// Random operations on the shared tree `d*/f*/s*`, plus checked work in a
/// private directory `p<id>` that nobody else touches.
fn chaos_worker(w: &mut Worker, id: usize) {
    let own = format!("p{id}");
    let c_own = c(&own);
    // SAFETY (all blocks below): raw syscalls on valid C strings and buffers.
    let rc = unsafe { libc::mkdir(c_own.as_ptr(), 0o755) };
    w.sys("mkdir", &own, rc.into(), &[]);
    let mut buf = vec![0u8; 64 * 1024];
    let mut rbuf = vec![0u8; 64 * 1024];
    while w.running() {
        match w.rng.below(100) {
            0..=9 => {
                let p = w.path("d", 4);
                let cp = c(&p);
                let rc = unsafe { libc::mkdir(cp.as_ptr(), 0o755) };
                w.sys("mkdir", &p, rc.into(), &[EEXIST, ENOENT]);
            }
            10..=15 => {
                let p = w.path("d", 4);
                let cp = c(&p);
                let rc = unsafe { libc::rmdir(cp.as_ptr()) };
                w.sys("rmdir", &p, rc.into(), &[ENOENT, ENOTEMPTY]);
            }
            16..=27 => {
                let p = w.path("f", 6);
                let cp = c(&p);
                let trunc = if w.rng.below(2) == 0 {
                    libc::O_TRUNC
                } else {
                    0
                };
                let fd = unsafe {
                    libc::open(cp.as_ptr(), libc::O_CREAT | libc::O_WRONLY | trunc, 0o644)
                };
                if w.sys("open(O_CREAT)", &p, fd.into(), &[ENOENT]) {
                    let len = w.rng.below(3 * 4096 + 300) as usize;
                    let off = w.rng.below(8192) as i64;
                    w.rng.fill(&mut buf[..len]);
                    let n = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), len, off) };
                    if w.sys("pwrite", &p, n as i64, &[]) && n as usize != len {
                        w.fail(&format!("pwrite {p}: short write {n} of {len}"));
                    }
                    let rc = unsafe { libc::close(fd) };
                    w.sys("close", &p, rc.into(), &[]);
                }
            }
            28..=34 => {
                let p = if w.rng.below(3) == 0 {
                    w.path("s", 3)
                } else {
                    w.path("f", 6)
                };
                let cp = c(&p);
                let rc = unsafe { libc::unlink(cp.as_ptr()) };
                w.sys("unlink", &p, rc.into(), &[ENOENT]);
            }
            35..=42 => {
                let (a, b) = if w.rng.below(3) == 0 {
                    (w.path("s", 3), w.path("s", 3))
                } else {
                    (w.path("f", 6), w.path("f", 6))
                };
                let rc = unsafe { libc::rename(c(&a).as_ptr(), c(&b).as_ptr()) };
                w.sys("rename", &format!("{a} -> {b}"), rc.into(), &[ENOENT]);
            }
            43..=48 => {
                let (a, b) = (w.path("d", 4), w.path("d", 4));
                let rc = unsafe { libc::rename(c(&a).as_ptr(), c(&b).as_ptr()) };
                w.sys(
                    "rename(dir)",
                    &format!("{a} -> {b}"),
                    rc.into(),
                    &[ENOENT, ENOTEMPTY, EEXIST, EINVAL],
                );
            }
            49..=52 => {
                let dirs = w.rng.below(2) == 0;
                let (a, b) = if dirs {
                    (w.path("d", 4), w.path("d", 4))
                } else {
                    (w.path("f", 6), w.path("f", 6))
                };
                let rc = renameat2(&c(&a), &c(&b), libc::RENAME_EXCHANGE);
                let ok: &[i32] = if dirs { &[ENOENT, EINVAL] } else { &[ENOENT] };
                w.sys("rename(EXCHANGE)", &format!("{a} <-> {b}"), rc, ok);
            }
            53..=55 => {
                let dirs = w.rng.below(2) == 0;
                let (a, b) = if dirs {
                    (w.path("d", 4), w.path("d", 4))
                } else {
                    (w.path("f", 6), w.path("f", 6))
                };
                let rc = renameat2(&c(&a), &c(&b), libc::RENAME_NOREPLACE);
                let ok: &[i32] = if dirs {
                    &[ENOENT, EEXIST, EINVAL, ENOTEMPTY]
                } else {
                    &[ENOENT, EEXIST]
                };
                w.sys("rename(NOREPLACE)", &format!("{a} -> {b}"), rc, ok);
            }
            56..=61 => {
                let (a, b) = (w.path("f", 6), w.path("f", 6));
                let rc = unsafe { libc::link(c(&a).as_ptr(), c(&b).as_ptr()) };
                w.sys("link", &format!("{a} -> {b}"), rc.into(), &[ENOENT, EEXIST]);
            }
            62..=65 => {
                let p = w.path("s", 3);
                let target = format!("tgt/{}", w.rng.below(1000));
                let rc = unsafe { libc::symlink(c(&target).as_ptr(), c(&p).as_ptr()) };
                w.sys("symlink", &p, rc.into(), &[ENOENT, EEXIST]);
            }
            66..=69 => {
                let p = w.path("f", 6);
                let len = w.rng.below(20000) as i64;
                let rc = unsafe { libc::truncate(c(&p).as_ptr(), len) };
                w.sys("truncate", &p, rc.into(), &[ENOENT]);
            }
            70..=75 => {
                let p = w.path("d", 4);
                let cp = c(&p);
                let d = unsafe { libc::opendir(cp.as_ptr()) };
                let rc = if d.is_null() { -1 } else { 0 };
                if w.sys("opendir", &p, rc, &[ENOENT]) {
                    loop {
                        unsafe { *libc::__errno_location() = 0 };
                        let e = unsafe { libc::readdir(d) };
                        if e.is_null() {
                            let rc = if errno() == 0 { 0 } else { -1 };
                            w.sys("readdir", &p, rc, &[ENOENT]);
                            break;
                        }
                    }
                    let rc = unsafe { libc::closedir(d) };
                    w.sys("closedir", &p, rc.into(), &[]);
                }
            }
            76..=83 => {
                let (p, want) = match w.rng.below(3) {
                    0 => (w.path("d", 4), libc::S_IFDIR),
                    1 => (w.path("f", 6), libc::S_IFREG),
                    _ => (w.path("s", 3), libc::S_IFLNK),
                };
                let (rc, st) = lstat_raw(&c(&p));
                if w.sys("lstat", &p, rc, &[ENOENT]) && st.st_mode & libc::S_IFMT != want {
                    w.fail(&format!("lstat {p}: wrong type, mode {:o}", st.st_mode));
                }
            }
            84..=85 => {
                let p = w.path("s", 3);
                let mut t = [0u8; 256];
                let n = unsafe { libc::readlink(c(&p).as_ptr(), t.as_mut_ptr().cast(), t.len()) };
                if w.sys("readlink", &p, n as i64, &[ENOENT]) && !t.starts_with(b"tgt/") {
                    w.fail(&format!(
                        "readlink {p}: foreign target {:?}",
                        String::from_utf8_lossy(&t[..n as usize])
                    ));
                }
            }
            86..=89 => {
                let p = w.path("f", 6);
                let fd = unsafe { libc::open(c(&p).as_ptr(), libc::O_RDONLY) };
                if w.sys("open(O_RDONLY)", &p, fd.into(), &[ENOENT]) {
                    loop {
                        let n = unsafe { libc::read(fd, rbuf.as_mut_ptr().cast(), rbuf.len()) };
                        if !w.sys("read", &p, n as i64, &[]) || n == 0 {
                            break;
                        }
                    }
                    let rc = unsafe { libc::close(fd) };
                    w.sys("close", &p, rc.into(), &[]);
                }
            }
            90..=91 => {
                let p = w.path("f", 6);
                let mode = [0o600, 0o644, 0o640][w.rng.below(3) as usize];
                let rc = unsafe { libc::chmod(c(&p).as_ptr(), mode) };
                w.sys("chmod", &p, rc.into(), &[ENOENT]);
            }
            _ => private_round(w, &own, &mut buf, &mut rbuf),
        }
    }
}

/// Work in the worker's own directory, where every result is known.
fn private_round(w: &mut Worker, own: &str, buf: &mut [u8], rbuf: &mut [u8]) {
    let p = format!("{own}/data");
    let cp = c(&p);
    let len = 1 + w.rng.below(buf.len() as u64 - 1) as usize;
    w.rng.fill(&mut buf[..len]);
    // SAFETY (all blocks below): raw syscalls on valid C strings and buffers.
    let fd = unsafe {
        libc::open(
            cp.as_ptr(),
            libc::O_CREAT | libc::O_RDWR | libc::O_TRUNC,
            0o644,
        )
    };
    if !w.sys("open(private)", &p, fd.into(), &[]) {
        return;
    }
    let n = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), len, 0) };
    if w.sys("pwrite(private)", &p, n as i64, &[]) && n as usize != len {
        w.fail(&format!("pwrite {p}: short write {n} of {len}"));
    }
    let n = unsafe { libc::pread(fd, rbuf.as_mut_ptr().cast(), rbuf.len(), 0) };
    if w.sys("pread(private)", &p, n as i64, &[]) && rbuf[..n as usize] != buf[..len] {
        w.fail(&format!(
            "{p}: read back {n} bytes that differ from the {len} written"
        ));
    }
    let rc = unsafe { libc::close(fd) };
    w.sys("close(private)", &p, rc.into(), &[]);

    // A subdirectory made, renamed and removed: all must succeed, and the
    // private directory's link count must come back to 2.
    let (x, y) = (format!("{own}/x"), format!("{own}/y"));
    let rc = unsafe { libc::mkdir(c(&x).as_ptr(), 0o755) };
    w.sys("mkdir(private)", &x, rc.into(), &[]);
    let rc = unsafe { libc::rename(c(&x).as_ptr(), c(&y).as_ptr()) };
    w.sys("rename(private)", &x, rc.into(), &[]);
    check_dir_nlink(w, own, 3, "one subdir");
    let rc = unsafe { libc::rmdir(c(&y).as_ptr()) };
    w.sys("rmdir(private)", &y, rc.into(), &[]);
    check_dir_nlink(w, own, 2, "no subdir");
}

/// Directories (fixed) and anchors (never removed) of the link test.
const LINK_DIRS: [&str; 6] = [".", "L0", "L1", "L2", "L0/M0", "L1/M1"];
const ANCHORS: [&str; 3] = ["a0", "a1", "a2"];

/// Hard links to the anchors made, renamed, exchanged and removed.
fn links_worker(w: &mut Worker) {
    let name = |w: &mut Worker| {
        let d = LINK_DIRS[w.rng.below(LINK_DIRS.len() as u64) as usize];
        format!("{d}/n{}", w.rng.below(6))
    };
    // SAFETY (all blocks below): raw syscalls on valid C strings.
    while w.running() {
        match w.rng.below(100) {
            0..=29 => {
                let a = ANCHORS[w.rng.below(3) as usize];
                let b = name(w);
                let rc = unsafe { libc::link(c(a).as_ptr(), c(&b).as_ptr()) };
                if rc < 0 && errno() == ENOENT {
                    link_enoent(w, a, &b);
                } else {
                    w.sys("link", &format!("{a} -> {b}"), rc.into(), &[EEXIST]);
                }
            }
            30..=54 => {
                let p = name(w);
                let rc = unsafe { libc::unlink(c(&p).as_ptr()) };
                w.sys("unlink", &p, rc.into(), &[ENOENT]);
            }
            55..=69 => {
                let (a, b) = (name(w), name(w));
                let rc = unsafe { libc::rename(c(&a).as_ptr(), c(&b).as_ptr()) };
                w.sys("rename", &format!("{a} -> {b}"), rc.into(), &[ENOENT]);
            }
            70..=77 => {
                let (a, b) = (name(w), name(w));
                let rc = renameat2(&c(&a), &c(&b), libc::RENAME_EXCHANGE);
                w.sys("rename(EXCHANGE)", &format!("{a} <-> {b}"), rc, &[ENOENT]);
            }
            78..=89 => {
                let p = name(w);
                let (rc, st) = lstat_raw(&c(&p));
                if w.sys("lstat", &p, rc, &[ENOENT]) && st.st_mode & libc::S_IFMT != libc::S_IFREG {
                    w.fail(&format!("lstat {p}: not a regular file"));
                }
            }
            90..=94 => {
                let a = ANCHORS[w.rng.below(3) as usize];
                let (rc, st) = lstat_raw(&c(a));
                if w.sys("lstat", a, rc, &[]) && st.st_nlink < 1 {
                    w.fail(&format!("lstat {a}: st_nlink 0 for a named file"));
                }
            }
            _ => {
                let a = ANCHORS[w.rng.below(3) as usize];
                let fd = unsafe { libc::open(c(a).as_ptr(), libc::O_WRONLY) };
                if w.sys("open", a, fd.into(), &[]) {
                    let n = unsafe { libc::pwrite(fd, b"touched!".as_ptr().cast(), 8, 0) };
                    w.sys("pwrite", a, n as i64, &[]);
                    let rc = unsafe { libc::close(fd) };
                    w.sys("close", a, rc.into(), &[]);
                }
            }
        }
    }
}

/// `link(a, b)` failed with ENOENT although anchor `a` is never removed.
///
/// That is the kernel, not the daemon: vfs_link refuses to link an inode
/// whose *cached* i_nlink is 0, and FUSE's cached link count drifts when
/// the replies of concurrent link/unlink calls on one inode are applied
/// out of order (a link reply sets the daemon's count, an unlink
/// completion decrements the cache). With triefs's long attribute TTL
/// nothing refreshes it until a stat. So: reported as `@RACE`, and the
/// anchor must then stat fine and the link must work after the refresh.
fn link_enoent(w: &mut Worker, a: &str, b: &str) {
    emit(&format!("@RACE link {a} -> {b}: ENOENT"));
    let (ca, cb) = (c(a), c(b));
    for _ in 0..5 {
        let (rc, _) = lstat_raw(&ca);
        if !w.sys("lstat(anchor after link ENOENT)", a, rc, &[]) {
            return;
        }
        // SAFETY: valid C strings.
        let rc = unsafe { libc::link(ca.as_ptr(), cb.as_ptr()) };
        if rc == 0 || errno() != ENOENT {
            w.sys("link(retry)", &format!("{a} -> {b}"), rc.into(), &[EEXIST]);
            return;
        }
    }
    w.fail(&format!(
        "link {a} -> {b}: still ENOENT after 5 stat refreshes of {a}"
    ));
}

/// Writes 64 KiB chunks (cycling over 64 MiB) until a write fails, then
/// reports that errno (`@ERR1`) and the errno of one more write (`@ERR2`).
fn writer_worker(w: &mut Worker) {
    let p = c("w.dat");
    // SAFETY (all blocks below): raw syscalls on valid C strings and buffers.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644) };
    assert!(fd >= 0, "open w.dat: {}", io::Error::last_os_error());
    let buf = vec![0x5au8; 64 * 1024];
    let mut off = 0i64;
    while w.running() {
        let n = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), off) };
        if n < 0 {
            let e1 = errno();
            emit(&format!("@ERR1 {e1}"));
            let n = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), off) };
            let e2 = if n < 0 { errno() } else { 0 };
            emit(&format!("@ERR2 {e2}"));
            return;
        }
        w.ops += 1;
        emit(&format!("@P {}", w.ops));
        off = (off + n as i64) % (64 * MIB as i64);
    }
    w.fail("the daemon was never killed: no write failed");
}

// ---------------------------------------------------------------------------
// 1. Concurrency stress
// ---------------------------------------------------------------------------

/// What the concurrent `find`/`ls -R` walkers saw.
#[derive(Default, Debug)]
struct WalkReport {
    runs: u32,
    /// "No such file or directory": a name removed or renamed under a
    /// walker between its readdir and its stat/opendir.
    enoent: u32,
    /// find's "File system loop detected" / ls's "not listing
    /// already-listed directory": a directory renamed under a walker into
    /// the part it was still walking (the walker sees it twice).
    rename_loops: u32,
    other: Vec<String>,
    hang: Option<String>,
}

const WALKERS: [(&str, &[&str]); 2] = [("find", &[]), ("ls", &["-R"])];

/// Runs one walker over `mnt` with stdout discarded and stderr in
/// `err_path`; an error if it does not finish within `STALL` (it is then
/// killed but not waited for: it may be stuck in the kernel).
fn run_walker(
    tool: &str,
    args: &[&str],
    mnt: &Path,
    err_path: &Path,
) -> Result<(ExitStatus, String), String> {
    let mut child = Command::new(tool)
        .args(args)
        .arg(mnt)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(err_path).expect("walker stderr"))
        .spawn()
        .expect("spawn walker");
    let start = Instant::now();
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Ok((st, fs::read_to_string(err_path).unwrap_or_default()));
        }
        if start.elapsed() > STALL {
            let _ = child.kill();
            return Err(format!("{tool} did not finish within {STALL:?}"));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `find MNT` and `ls -R MNT` alternately until `stop`. Only the
/// races of a tree changing under the walker are acceptable in stderr.
fn walk_loop(mnt: PathBuf, stop: Arc<AtomicBool>) -> WalkReport {
    let mut r = WalkReport::default();
    let dir = common::short_tempdir();
    let err_path = dir.path().join("walk.err");
    while !stop.load(Ordering::SeqCst) {
        for (tool, args) in WALKERS {
            let (status, err) = match run_walker(tool, args, &mnt, &err_path) {
                Ok(x) => x,
                Err(e) => {
                    r.hang = Some(e);
                    return r;
                }
            };
            r.runs += 1;
            let mut lines = 0;
            for l in err.lines() {
                lines += 1;
                if l.contains("No such file or directory") {
                    r.enoent += 1;
                } else if l.contains("File system loop detected")
                    || l.contains("not listing already-listed directory")
                {
                    r.rename_loops += 1;
                } else {
                    r.other.push(format!("{tool}: {l}"));
                }
            }
            if !status.success() && lines == 0 {
                r.other.push(format!("{tool}: {status} without a message"));
            }
        }
    }
    r
}

/// `find` and `ls -R` over a tree nobody changes: no errors at all.
fn walk_quiet(mnt: &Path) {
    let dir = common::short_tempdir();
    let err_path = dir.path().join("walk.err");
    for (tool, args) in WALKERS {
        let (st, err) = run_walker(tool, args, mnt, &err_path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            st.success() && err.is_empty(),
            "{tool} on the quiescent tree: {st}\n{err}"
        );
    }
}

#[test]
fn concurrent_chaos_keeps_structures_consistent() {
    let _serial = serial();
    let t0 = Instant::now();
    let mut d = daemon(&["--threads", "4"], &[("TRIEFS_CHECK", "1")]);
    let mnt = d.mnt.clone();
    let before = statvfs(&mnt);
    let seed = seed();
    eprintln!("chaos: seed {seed} (replay with {SEED}={seed})");

    let stop = Arc::new(AtomicBool::new(false));
    let walker = {
        let (mnt, stop) = (mnt.clone(), stop.clone());
        thread::spawn(move || walk_loop(mnt, stop))
    };
    let mut ws = spawn_workers("chaos", &mnt, 5, 15, seed);
    let result = ws.supervise(&mnt, Duration::from_secs(15 + 40), d.pid());
    stop.store(true, Ordering::SeqCst);
    let walk = walker.join().expect("walker thread");
    let statuses = result.unwrap_or_else(|e| panic!("{e}\ndaemon log:\n{}", d.log_text()));
    let ops = ws.ops();
    eprintln!(
        "chaos: {} ops by 5 workers {ops:?}; walkers: {} runs, {} ENOENT races, {} \
         directory-rename loop races",
        ops.iter().sum::<u64>(),
        walk.runs,
        walk.enoent,
        walk.rename_loops
    );
    assert!(
        d.alive(),
        "the daemon died during the run\n{}",
        d.log_text()
    );
    ws.assert_clean(&statuses);
    assert!(ops.iter().all(|&n| n > 100), "a worker barely ran: {ops:?}");
    assert!(walk.hang.is_none(), "{:?}", walk.hang);
    assert!(walk.runs >= 2, "walkers ran only {} times", walk.runs);
    assert!(
        walk.other.is_empty(),
        "find/ls -R reported errors other than ENOENT/rename races:\n{}",
        walk.other.join("\n")
    );
    // With the tree at rest, the walkers must not complain at all (a real
    // cycle or a dangling entry would show here).
    walk_quiet(&mnt);

    // What users see must match: nlink against names and subdirectories.
    let truth = tree_truth(&mnt);
    eprintln!(
        "chaos: tree left with {} directories, {} other names",
        truth.dirs, truth.files
    );
    assert!(
        truth.problems.is_empty(),
        "link counts wrong after the run:\n{}",
        truth.problems.join("\n")
    );

    // Everything removed and forgotten: usage back to where it started.
    rm_rf_contents(&mnt);
    let after = settle_statfs(&mnt, |s| {
        s.f_ffree == before.f_ffree && s.f_bfree == before.f_bfree
    });
    assert_eq!(
        (after.f_ffree, after.f_bfree),
        (before.f_ffree, before.f_bfree),
        "free inodes/blocks (after, before) not restored after rm -rf and drop_caches"
    );
    finish(d);
    eprintln!("chaos: done in {:.1} s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------
// 2. Parallel hard links
// ---------------------------------------------------------------------------

#[test]
fn parallel_hard_links_keep_nlink_true() {
    let _serial = serial();
    let t0 = Instant::now();
    // Debug logging of triefs records every error the daemon returns.
    let mut d = daemon(
        &["--threads", "4"],
        &[("TRIEFS_CHECK", "1"), ("RUST_LOG", "triefs=debug")],
    );
    let mnt = d.mnt.clone();
    for dir in &LINK_DIRS[1..] {
        fs::create_dir(mnt.join(dir)).expect("mkdir");
    }
    let mut anchor_inos = Vec::new();
    for a in ANCHORS {
        fs::write(mnt.join(a), format!("anchor {a}\n")).expect("write anchor");
        anchor_inos.push(fs::metadata(mnt.join(a)).expect("stat anchor").ino());
    }
    let seed = seed();
    eprintln!("links: seed {seed} (replay with {SEED}={seed})");
    let mut ws = spawn_workers("links", &mnt, 4, 8, seed);
    let statuses = ws
        .supervise(&mnt, Duration::from_secs(8 + 40), d.pid())
        .unwrap_or_else(|e| panic!("{e}\ndaemon log:\n{}", d.log_text()));
    let ops = ws.ops();
    let races = ws.count("@RACE");
    eprintln!(
        "links: {} ops by 4 workers {ops:?}; {races} link() calls on an existing anchor \
         failed with ENOENT from the kernel's stale cached link count (fine after a stat)",
        ops.iter().sum::<u64>()
    );
    assert!(d.alive(), "the daemon died\n{}", d.log_text());
    ws.assert_clean(&statuses);
    // Those ENOENTs must not have come from the daemon.
    let log = d.log_text();
    assert!(
        log.contains("DEBUG triefs::"),
        "daemon debug log missing; cannot tell who failed the links"
    );
    let daemon_link_enoent: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("] link(") && l.contains("os error 2"))
        .take(5)
        .collect();
    assert!(
        daemon_link_enoent.is_empty(),
        "the daemon failed link() with ENOENT:\n{}",
        daemon_link_enoent.join("\n")
    );

    let check = |when: &str| {
        let t = tree_truth(&mnt);
        assert!(
            t.problems.is_empty(),
            "{when}: st_nlink differs from the names found:\n{}",
            t.problems.join("\n")
        );
        let mut links = 0;
        for (ino, names) in &t.names {
            if !t.dir_inos.contains(ino) {
                assert!(
                    anchor_inos.contains(ino),
                    "{when}: {names:?} is inode {ino}, not one of the anchors"
                );
                links += names.len();
            }
        }
        for (a, ino) in ANCHORS.iter().zip(&anchor_inos) {
            assert!(
                t.names.get(ino).is_some_and(|n| n.contains(&mnt.join(a))),
                "{when}: anchor {a} lost its name"
            );
        }
        links
    };
    let links = check("as seen right after the run");
    eprintln!("links: {links} names for the 3 anchors at the end");
    // Again with every cached inode dropped, so attributes come from the
    // daemon rather than the kernel's cache.
    drop_caches(2);
    check("after drop_caches");

    finish(d);
    eprintln!("links: done in {:.1} s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------
// 3. Limits
// ---------------------------------------------------------------------------

/// Appends `chunk`-byte writes of `byte` until one fails or `cap` bytes
/// are written; returns the bytes written and the failing errno (0: none).
fn write_until_error(fd: i32, chunk: usize, byte: u8, cap: u64) -> (u64, i32) {
    let buf = vec![byte; chunk];
    let mut total = 0u64;
    while total < cap {
        // SAFETY: buf is valid for chunk bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), chunk) };
        if n < 0 {
            return (total, errno());
        }
        total += n as u64;
    }
    (total, 0)
}

fn open_raw(p: &Path, flags: i32) -> i32 {
    let cp = cpath(p);
    // SAFETY: valid path.
    let fd = unsafe { libc::open(cp.as_ptr(), flags, 0o644) };
    assert!(
        fd >= 0,
        "open {}: {}",
        p.display(),
        io::Error::last_os_error()
    );
    fd
}

fn close_raw(fd: i32) {
    // SAFETY: fd is ours.
    assert_eq!(unsafe { libc::close(fd) }, 0, "close");
}

#[test]
fn size_limit_enospc_and_recovery() {
    let _serial = serial();
    let d = daemon(&["-o", "size=8m"], &[("TRIEFS_CHECK", "1")]);
    let mnt = d.mnt.clone();
    let s = statvfs(&mnt);
    assert_eq!(
        (s.f_frsize, s.f_blocks),
        (PAGE, 8 * MIB / PAGE),
        "f_frsize, f_blocks"
    );
    assert_eq!(s.f_bfree, s.f_blocks, "empty fs has all blocks free");

    // Small files with known content: 1 + 2 + 1 pages.
    let mut small: Vec<(PathBuf, Vec<u8>)> = [1000usize, 5000, 4096]
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let data: Vec<u8> = (0..n).map(|j| (j * 7 + i * 13) as u8 | 1).collect();
            (mnt.join(format!("small{i}")), data)
        })
        .collect();
    for (p, data) in &small {
        fs::write(p, data).expect("write small file");
    }
    let small_pages = 4;
    assert_eq!(
        statvfs(&mnt).f_bfree,
        2048 - small_pages,
        "f_bfree after small files"
    );

    // Fill: 64 KiB writes until one fails, then 4 KiB writes, then 1 byte.
    let big = mnt.join("big");
    let fd = open_raw(&big, libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC);
    let (a, e1) = write_until_error(fd, 64 * 1024, 0, 64 * MIB);
    let (b, e2) = write_until_error(fd, 4096, 0, 64 * MIB);
    let (c1, e3) = write_until_error(fd, 1, 0, 64 * MIB);
    close_raw(fd);
    let total = a + b + c1;
    eprintln!(
        "size=8m: wrote {total} bytes ({a} in 64 KiB writes, {b} in 4 KiB, {c1} in 1 B) \
         before ENOSPC; 8 MiB = {}",
        8 * MIB
    );
    for (what, e) in [("64 KiB", e1), ("4 KiB", e2), ("1 byte", e3)] {
        assert_eq!(
            e,
            libc::ENOSPC,
            "{what} write at the limit failed with {} instead of ENOSPC",
            strerror(e)
        );
    }
    assert_eq!(
        total,
        (2048 - small_pages) * PAGE,
        "the big file should get exactly the pages left"
    );
    assert_eq!(
        fs::metadata(&big).expect("stat big").len(),
        total,
        "big size"
    );
    let s = statvfs(&mnt);
    assert_eq!(
        (s.f_bfree, s.f_bavail),
        (0, 0),
        "full fs: f_bfree, f_bavail"
    );
    let mut cmd = Command::new("df");
    cmd.arg("-P").arg(&mnt);
    let run = common::run_timed(cmd, Duration::from_secs(10));
    assert!(
        run.status.is_some_and(|s| s.success()),
        "df: {}",
        run.stderr
    );
    let df = run.stdout;
    let use_pct = df
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(4))
        .unwrap_or("");
    eprintln!("size=8m: df -P says: {}", df.lines().nth(1).unwrap_or(""));
    assert_eq!(use_pct, "100%", "df Use% on a full fs:\n{df}");

    // Overwriting already stored bytes needs no new page: still allowed.
    let fd = open_raw(&small[0].0, libc::O_WRONLY);
    // SAFETY: valid buffer.
    let n = unsafe { libc::pwrite(fd, b"OVERWRITTEN".as_ptr().cast(), 11, 0) };
    let e = errno();
    close_raw(fd);
    assert_eq!(
        n,
        11,
        "overwrite inside a stored page on a full fs: {}",
        strerror(e)
    );
    small[0].1[..11].copy_from_slice(b"OVERWRITTEN");

    // The small files survive intact (read from the daemon, not the cache).
    drop_caches(3);
    for (p, data) in &small {
        assert_eq!(
            &fs::read(p).expect("read small"),
            data,
            "{} changed",
            p.display()
        );
    }

    // Delete the big file: once forgotten, its pages are free again.
    fs::remove_file(&big).expect("rm big");
    let s = settle_statfs(&mnt, |s| s.f_bfree == 2048 - small_pages);
    assert_eq!(s.f_bfree, 2048 - small_pages, "f_bfree after deleting big");
    let data: Vec<u8> = (0..MIB as usize).map(|i| (i % 251) as u8).collect();
    fs::write(mnt.join("after"), &data).expect("writing after freeing space");
    drop_caches(3);
    assert_eq!(fs::read(mnt.join("after")).expect("read after"), data);
    assert_eq!(statvfs(&mnt).f_bfree, 2048 - small_pages - 256);

    finish(d);
}

#[test]
fn inode_limit_enospc_at_exact_count() {
    let _serial = serial();
    let d = daemon(&["-o", "nr_inodes=100"], &[("TRIEFS_CHECK", "1")]);
    let mnt = d.mnt.clone();
    let s = statvfs(&mnt);
    assert_eq!(
        (s.f_files, s.f_ffree),
        (100, 99),
        "f_files, f_ffree (root is one)"
    );

    let try_create = |p: &Path| -> i32 {
        let cp = cpath(p);
        // SAFETY: valid path.
        let fd = unsafe { libc::open(cp.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644) };
        if fd < 0 {
            return errno();
        }
        close_raw(fd);
        0
    };
    let try_mkdir = |p: &Path| -> i32 {
        let cp = cpath(p);
        // SAFETY: valid path.
        if unsafe { libc::mkdir(cp.as_ptr(), 0o755) } < 0 {
            errno()
        } else {
            0
        }
    };
    // 90 files, then directories until the limit.
    for i in 0..90 {
        let e = try_create(&mnt.join(format!("f{i}")));
        assert_eq!(e, 0, "create f{i}: {}", strerror(e));
    }
    let mut dirs = 0;
    let e = loop {
        let e = try_mkdir(&mnt.join(format!("d{dirs}")));
        if e != 0 || dirs > 200 {
            break e;
        }
        dirs += 1;
    };
    eprintln!(
        "nr_inodes=100: 90 files + {dirs} dirs, then {}",
        strerror(e)
    );
    assert_eq!(e, libc::ENOSPC, "mkdir past the inode limit");
    assert_eq!(dirs, 9, "90 files + 9 dirs + root = 100 inodes");
    assert_eq!(statvfs(&mnt).f_ffree, 0, "f_ffree when full");

    let e = try_create(&mnt.join("one-more"));
    assert_eq!(e, libc::ENOSPC, "create past the limit: {}", strerror(e));
    let e = try_create(&mnt.join("d0/nested"));
    assert_eq!(
        e,
        libc::ENOSPC,
        "create in a subdir past the limit: {}",
        strerror(e)
    );
    let e = std::os::unix::fs::symlink("f0", mnt.join("sym")).map_err(|e| e.raw_os_error());
    assert_eq!(e, Err(Some(libc::ENOSPC)), "symlink past the limit");
    // A second name costs an inode's worth, as on tmpfs.
    let e = fs::hard_link(mnt.join("f0"), mnt.join("f0-link")).map_err(|e| e.raw_os_error());
    assert_eq!(e, Err(Some(libc::ENOSPC)), "link past the limit");

    // Removing a file frees its inode (after the forget).
    fs::remove_file(mnt.join("f1")).expect("rm f1");
    let s = settle_statfs(&mnt, |s| s.f_ffree == 1);
    assert_eq!(s.f_ffree, 1, "f_ffree after rm f1");
    assert_eq!(try_mkdir(&mnt.join("d-new")), 0, "mkdir after freeing one");
    let e = try_create(&mnt.join("again"));
    assert_eq!(e, libc::ENOSPC, "full again: {}", strerror(e));

    finish(d);
}

/// Steps on the inode limit's space (inodes, hard links, xattrs), with
/// each step's result and `f_ffree`; run on tmpfs and on triefs. Freed
/// inodes of triefs come back when the kernel forgets them, so `f_ffree`
/// is read after letting it settle towards `want` (tmpfs's value).
fn inode_space_steps(mnt: &Path, want: Option<&[String]>) -> Vec<String> {
    let mut out = Vec::new();
    let note = |out: &mut Vec<String>, what: String| {
        let s = match want.and_then(|w| w.get(out.len())) {
            Some(w) => {
                let target: u64 = w
                    .rsplit(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                settle_statfs(mnt, |s| s.f_ffree == target)
            }
            None => statvfs(mnt),
        };
        out.push(format!("{what} ffree {}", s.f_ffree));
    };
    let res = |r: io::Result<()>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => strerror(e.raw_os_error().unwrap_or(0)),
    };
    note(&mut out, "start".into());
    let mut n = 0;
    while n < 50 && File::create(mnt.join(format!("f{n}"))).is_ok() {
        n += 1;
    }
    note(&mut out, format!("{n} files"));
    let r = fs::hard_link(mnt.join("f1"), mnt.join("l1"));
    note(&mut out, format!("link when full: {}", res(r)));
    fs::remove_file(mnt.join("f0")).expect("rm f0");
    note(&mut out, "rm f0".into());
    let r = fs::hard_link(mnt.join("f1"), mnt.join("l1"));
    note(&mut out, format!("link: {}", res(r)));
    let r = fs::hard_link(mnt.join("f1"), mnt.join("l2"));
    note(&mut out, format!("second link: {}", res(r)));
    fs::remove_file(mnt.join("l1")).expect("rm l1");
    note(&mut out, "rm l1".into());
    let setx = |name: &str, len: usize| -> io::Result<()> {
        let p = cpath(&mnt.join("f1"));
        let n = c(name);
        let v = vec![b'v'; len];
        // SAFETY: valid C strings and a buffer of `len` bytes.
        let rc = unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), v.as_ptr().cast(), len, 0) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    for (name, len) in [
        ("user.a", 978),
        ("user.b", 0),
        ("user.a", 10),
        ("user.c", 979),
    ] {
        let r = setx(name, len);
        note(&mut out, format!("setxattr {name} {len}: {}", res(r)));
    }
    let p = cpath(&mnt.join("f1"));
    let a = c("user.a");
    // SAFETY: valid C strings.
    let rc = unsafe { libc::removexattr(p.as_ptr(), a.as_ptr()) };
    note(&mut out, format!("removexattr user.a: {rc}"));
    let r = setx("user.c", 400);
    note(&mut out, format!("setxattr user.c 400: {}", res(r)));
    out
}

/// Hard links and extended attributes count against `nr_inodes` as on
/// tmpfs (kernel 6.6 and later): same results, same `f_ffree`, step by
/// step. They used to be free, so any user could grow the daemon without
/// bound with `ln` or `setfattr` on a mount with an inode limit.
#[test]
fn inode_space_matches_tmpfs() {
    let _serial = serial();
    let t = common::Tmpfs::with_options("nr_inodes=12,mode=0755");
    let on_tmpfs = inode_space_steps(t.path(), None);
    drop(t);
    eprintln!("tmpfs: {on_tmpfs:#?}");
    let d = daemon(&["-o", "nr_inodes=12"], &[("TRIEFS_CHECK", "1")]);
    let on_triefs = inode_space_steps(&d.mnt, Some(&on_tmpfs));
    assert_eq!(on_triefs, on_tmpfs);
    finish(d);
}

/// The daemon's VmRSS (KiB) once `statfs` shows every block free again
/// (deleted data is freed when the kernel forgets the inodes).
fn rss_once_all_space_is_back(mnt: &Path, pid: u32) -> u64 {
    let s = settle_statfs(mnt, |s| s.f_bfree == s.f_blocks);
    assert_eq!(s.f_bfree, s.f_blocks, "space back after the delete");
    proc_kib(pid, "VmRSS")
}

#[test]
fn memory_stays_bounded_when_full() {
    let _serial = serial();
    let d = daemon(&["-o", "size=256m"], &[("TRIEFS_CHECK", "1")]);
    let mnt = d.mnt.clone();
    let pid = d.pid();
    let rss0 = proc_kib(pid, "VmRSS");
    let t = Instant::now();
    let common::Output {
        status: st,
        stderr: err,
        ..
    } = common::run_timed(
        {
            let mut cmd = Command::new("dd");
            cmd.arg("if=/dev/zero")
                .arg(format!("of={}", mnt.join("fill").display()))
                .arg("bs=1M");
            cmd
        },
        Duration::from_secs(90),
    );
    let secs = t.elapsed().as_secs_f64();
    let st = st.expect("dd did not finish within 90 s");
    assert!(!st.success(), "dd filled nothing up: {err}");
    assert!(
        err.contains("No space left on device"),
        "dd should stop with ENOSPC:\n{err}"
    );
    let size = fs::metadata(mnt.join("fill")).expect("stat fill").len();
    assert_eq!(size, 256 * MIB, "dd got exactly the 256 MiB limit");
    assert_eq!(statvfs(&mnt).f_bfree, 0, "full");
    let rss = proc_kib(pid, "VmRSS");
    let hwm = proc_kib(pid, "VmHWM");
    eprintln!(
        "size=256m: dd wrote {} MiB in {secs:.2} s; daemon VmRSS {} MiB before, {} MiB full \
         (peak VmHWM {} MiB)",
        size / MIB,
        rss0 / 1024,
        rss / 1024,
        hwm / 1024
    );
    let bound = (256 + 64) * 1024;
    assert!(rss < bound, "VmRSS {rss} KiB over the 320 MiB bound");
    assert!(hwm < bound, "VmHWM {hwm} KiB over the 320 MiB bound");

    fs::remove_file(mnt.join("fill")).expect("rm fill");
    let after = rss_once_all_space_is_back(&mnt, pid);
    eprintln!("size=256m: VmRSS after rm + forget: {} MiB", after / 1024);
    assert!(
        after < rss0 + 32 * 1024,
        "the deleted file's memory stayed resident: VmRSS {after} KiB (started at {rss0})"
    );
    finish(d);
}

#[test]
fn memory_comes_back_after_deleting_many_small_files() {
    let _serial = serial();
    let d = daemon(&[], &[]);
    let mnt = d.mnt.clone();
    let pid = d.pid();
    let dir = mnt.join("many");
    fs::create_dir(&dir).expect("mkdir");
    let chunk = vec![0x5au8; 32 * 1024];
    for i in 0..1024 {
        fs::write(dir.join(format!("f{i}")), &chunk).expect("write small file");
    }
    let full = proc_kib(pid, "VmRSS");
    fs::remove_dir_all(&dir).expect("rm -r");
    let after = rss_once_all_space_is_back(&mnt, pid);
    eprintln!(
        "1024 x 32 KiB: VmRSS {} MiB full, {} MiB after rm -r",
        full / 1024,
        after / 1024
    );
    // 32 MiB of data were freed in 8-page pieces; most must leave the heap.
    assert!(
        after + 24 * 1024 < full,
        "VmRSS {after} KiB after deleting 32 MiB of small files (was {full} KiB)"
    );
    finish(d);
}

/// A growing file past 1 MiB takes its pages from blocks (one mapping of
/// many pages, for reads without a copy); punching all but one page of
/// each MiB must still give the punched pages' memory back, not keep
/// whole blocks resident.
#[test]
fn memory_comes_back_after_punching_most_of_each_block() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let _serial = serial();
    let d = daemon(&[], &[("TRIEFS_CHECK", "1")]);
    let mnt = d.mnt.clone();
    let pid = d.pid();
    let mib = MIB as usize;
    let chunk: Vec<u8> = (0..mib).map(|i| (i % 253) as u8).collect();
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(mnt.join("f"))
        .expect("create");
    for _ in 0..256 {
        f.write_all(&chunk).expect("write 1 MiB");
    }
    f.sync_all().expect("fsync");
    let full = proc_kib(pid, "VmRSS");
    for k in 0..256u64 {
        // SAFETY: fallocate on an open descriptor, plain integers.
        let r = unsafe {
            libc::fallocate(
                f.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                (k * MIB + 4096) as libc::off_t,
                (MIB - 4096) as libc::off_t,
            )
        };
        assert_eq!(r, 0, "punch block {k}: {}", io::Error::last_os_error());
    }
    let after = proc_kib(pid, "VmRSS");
    eprintln!(
        "256 MiB in 1 MiB writes: VmRSS {} MiB, {} MiB after punching all but a page per MiB",
        full / 1024,
        after / 1024
    );
    assert!(
        after + 200 * 1024 < full,
        "VmRSS {after} KiB after punching 255 of every 256 pages (was {full} KiB)"
    );
    // The kept pages are intact and the holes read as zeros, also after
    // the kernel's page cache is gone.
    drop_caches(3);
    let mut buf = vec![0u8; 2 * 4096];
    for k in [0u64, 1, 128, 255] {
        f.read_exact_at(&mut buf, k * MIB).expect("read back");
        assert_eq!(&buf[..4096], &chunk[..4096], "kept page of block {k}");
        assert!(buf[4096..].iter().all(|&b| b == 0), "hole of block {k}");
    }
    drop(f);
    finish(d);
}

// ---------------------------------------------------------------------------
// 4. Faults
// ---------------------------------------------------------------------------

#[test]
fn sigkill_with_active_writer_then_stale_mount_recovery() {
    let _serial = serial();
    let mut d = daemon(&[], &[]);
    let mnt = d.mnt.clone();
    let mut ws = spawn_workers("writer", &mnt, 1, 60, 1);
    let start = Instant::now();
    while ws.ops()[0] < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "writer never got going"
        );
        thread::sleep(Duration::from_millis(5));
    }
    thread::sleep(Duration::from_millis(200));
    let killed_at = ws.ops()[0];
    let st = d.sigkill();
    assert_eq!(st.signal(), Some(libc::SIGKILL), "daemon status {st}");

    // The writer must fail promptly rather than hang.
    let t = Instant::now();
    let statuses = {
        // The daemon is already dead: nothing more to kill.
        let res = ws.supervise(&mnt, Duration::from_secs(15), 0);
        res.unwrap_or_else(|e| panic!("writer after SIGKILL: {e}"))
    };
    let lines = ws.lines().remove(0);
    let errs: Vec<i32> = ["@ERR1 ", "@ERR2 "]
        .iter()
        .map(|p| {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(p)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("writer did not report {p}: {lines:?}"))
        })
        .collect();
    eprintln!(
        "sigkill: writer had done {killed_at} writes; it stopped {:.0} ms after the kill with \
         {} then {}",
        t.elapsed().as_secs_f64() * 1000.0,
        strerror(errs[0]),
        strerror(errs[1])
    );
    assert!(statuses[0].success(), "writer exit {}", statuses[0]);
    // A write in flight when the connection dies is aborted
    // (ECONNABORTED); every later request gets ENOTCONN.
    assert!(
        errs[0] == libc::ENOTCONN || errs[0] == libc::ECONNABORTED,
        "first failed write: {}",
        strerror(errs[0])
    );
    assert_eq!(errs[1], libc::ENOTCONN, "next write: {}", strerror(errs[1]));

    // The mount point is now stale.
    let e = fs::metadata(&mnt).expect_err("stat of a dead mount must fail");
    assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN), "stat: {e}");
    assert!(
        e.to_string()
            .contains("Transport endpoint is not connected"),
        "{e}"
    );
    assert!(is_mounted(&mnt), "stale mount should still be listed");

    // Mounting on it fails with a one-line diagnosis.
    let mut cmd = Command::new(triefs_bin());
    cmd.arg("-f").arg(&mnt);
    let out = common::run_timed(cmd, Duration::from_secs(10));
    eprintln!(
        "sigkill: triefs on the stale mount point: {:?}: {}",
        out.status,
        out.stderr.trim()
    );
    common::assert_one_line_exit(&out, 2, "triefs on the stale mount point", &["stale"]);

    // umount -l clears it; a new triefs on the same point works.
    let st = Command::new("umount")
        .arg("-l")
        .arg(&mnt)
        .status()
        .expect("umount -l");
    assert!(st.success(), "umount -l {st}");
    assert!(!is_mounted(&mnt), "still mounted after umount -l");
    assert!(fs::metadata(&mnt).expect("stat after clearing").is_dir());

    let mut d2 = MountSpec::new()
        .envs(&[("TRIEFS_CHECK", "1")])
        .at(&mnt)
        .log()
        .mount();
    fs::create_dir(mnt.join("dir")).expect("mkdir on the new mount");
    fs::write(mnt.join("dir/file"), b"alive again").expect("write on the new mount");
    assert_eq!(
        fs::read(mnt.join("dir/file")).expect("read"),
        b"alive again"
    );
    assert!(!mnt.join("w.dat").exists(), "old contents must not survive");
    let st = d2
        .unmount_and_wait()
        .unwrap_or_else(|| panic!("daemon did not exit within 10 s of the unmount"));
    assert_eq!(
        st.code(),
        Some(0),
        "second daemon exit {st}\n{}",
        d2.log_text()
    );
}

#[test]
fn sigkill_with_auto_unmount_clears_mount() {
    let _serial = serial();
    let mut d = daemon(&["-o", "auto_unmount"], &[]);
    let mnt = d.mnt.clone();
    fs::write(mnt.join("f"), b"x").expect("write");
    assert_eq!(fs::read(mnt.join("f")).expect("read"), b"x");
    let st = d.sigkill();
    assert_eq!(st.signal(), Some(libc::SIGKILL), "daemon status {st}");
    let t = Instant::now();
    let gone = common::wait_unmounted(&mnt, Duration::from_secs(5));
    eprintln!(
        "auto_unmount: mount {} {:.0} ms after SIGKILL",
        if gone { "disappeared" } else { "still present" },
        t.elapsed().as_secs_f64() * 1000.0
    );
    assert!(
        gone,
        "with -o auto_unmount the mount must disappear after SIGKILL\n{}",
        d.log_text()
    );
    let m = fs::metadata(&mnt).expect("stat the cleared mount point");
    assert!(m.is_dir());
    assert_eq!(fs::read_dir(&mnt).expect("readdir").count(), 0);
}
