//! Every request passes the gate: while fault rules or trace readers exist
//! (or the mount is served uncached for tracing), it finds the request's
//! path, asks the rules for a fault, says whether the kernel may cache the
//! answer, and records the request for the readers once answered. With
//! neither, a request costs one atomic load here.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use fuser::Request;
use parking_lot::{Condvar, Mutex, RwLock};

use crate::error::Errno;
use crate::fault::{Fault, Rules};
use crate::namespace::Namespace;
use crate::namespace::inode::ROOT_INO;
use crate::request::Op;
use crate::trace::{Event, Tracers};

/// What a request is about: an inode, a name in a directory, or two names.
#[derive(Clone, Copy, Debug)]
pub(crate) enum At<'a> {
    /// An inode (read, write, getattr, ...).
    Ino(u64),
    /// A name in a directory (lookup, create, unlink, ...).
    Name(u64, &'a OsStr),
    /// A rename: from, to.
    Rename(u64, &'a OsStr, u64, &'a OsStr),
    /// A hard link: the inode, its new name.
    Link(u64, u64, &'a OsStr),
    /// An extended attribute of an inode: the inode, the attribute's name.
    Xattr(u64, &'a OsStr),
}

impl At<'_> {
    /// The inode and name the log names.
    pub(crate) fn log(&self) -> (u64, Option<&OsStr>) {
        match *self {
            At::Ino(i) => (i, None),
            At::Name(p, n) | At::Rename(p, n, ..) => (p, Some(n)),
            At::Link(i, _, n) | At::Xattr(i, n) => (i, Some(n)),
        }
    }
}

/// How to answer a request that passed the gate.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ctx {
    /// The kernel must ask again next time: zero TTLs, direct I/O, no
    /// cached listing.
    pub(crate) uncached: bool,
    /// Store and report at most this many bytes of a write.
    pub(crate) short_write: Option<u32>,
}

impl Ctx {
    /// A request nobody watches.
    pub(crate) const NORMAL: Ctx = Ctx {
        uncached: false,
        short_write: None,
    };
}

/// A request being watched: what its trace line needs, and its fault.
#[derive(Debug)]
pub(crate) struct Watch {
    start: Instant,
    event: Event,
    /// The caller's process name, when traced (read on arrival: a short
    /// process may be gone by the answer).
    comm: Option<Box<[u8]>>,
    /// The fault a rule chose.
    pub(crate) fault: Option<Fault>,
    /// How to answer.
    pub(crate) ctx: Ctx,
}

/// Names of non-directories handed to the kernel, kept while the gate is
/// open: a file does not know its own place.
const MAX_NAMES: usize = 1 << 20;

/// How often an unknown file's name may be searched for by a walk of the
/// whole tree.
const RESCAN_EVERY: Duration = Duration::from_secs(1);

/// Process names are read from `/proc` at most this often per process.
const COMM_FRESH: Duration = Duration::from_secs(2);

/// A process name and when it was read.
type Comm = (Box<[u8]>, Instant);

#[derive(Default)]
struct Names {
    of: HashMap<u64, (u64, Box<[u8]>)>,
    scanned: Option<Instant>,
}

/// The gate of one mount.
pub(crate) struct Gate {
    /// Rules or readers exist, or the mount is uncached: take the slow path.
    open: AtomicBool,
    /// The mount was made for faults (`-o faults`): rules may be added.
    pub(crate) faults_allowed: bool,
    /// Everything uncached (`-o trace_uncached`).
    pub(crate) uncached_all: bool,
    rules: Mutex<Rules>,
    tracers: Mutex<Tracers>,
    names: Mutex<Names>,
    comms: Mutex<HashMap<u32, Comm>>,
    /// Raised by every clear, waking delayed requests.
    cleared: Mutex<u64>,
    wake: Condvar,
}

impl Gate {
    /// A gate; `faults_allowed` for `-o faults`, `uncached_all` for
    /// `-o trace_uncached`.
    pub(crate) fn new(faults_allowed: bool, uncached_all: bool) -> Gate {
        Gate {
            open: AtomicBool::new(uncached_all),
            faults_allowed,
            uncached_all,
            rules: Mutex::new(Rules::new()),
            tracers: Mutex::new(Tracers::default()),
            names: Mutex::default(),
            comms: Mutex::default(),
            cleared: Mutex::new(0),
            wake: Condvar::new(),
        }
    }

    /// The rules (to add, list, clear).
    pub(crate) fn rules(&self) -> parking_lot::MutexGuard<'_, Rules> {
        self.rules.lock()
    }

    /// The trace readers.
    pub(crate) fn tracers(&self) -> parking_lot::MutexGuard<'_, Tracers> {
        self.tracers.lock()
    }

    /// Opens or closes the gate after rules or readers changed. Closing
    /// forgets the names kept.
    pub(crate) fn update(&self) {
        let open =
            self.uncached_all || !self.rules.lock().is_empty() || !self.tracers.lock().is_empty();
        let was = self.open.swap(open, Ordering::SeqCst);
        if was && !open {
            *self.names.lock() = Names::default();
            self.comms.lock().clear();
        }
    }

    /// Wakes every delayed request (the rules were cleared).
    pub(crate) fn wake_delayed(&self) {
        *self.cleared.lock() += 1;
        self.wake.notify_all();
    }

    /// Whether requests take the slow path.
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// The start of request `op`: `None` (the fast path) while the gate
    /// is closed. Finds the paths, draws the fault; answer with the
    /// returned context and call [`Gate::finish`].
    pub(crate) fn begin(
        &self,
        ns: &RwLock<Namespace>,
        req: &Request,
        op: Op,
        at: At<'_>,
    ) -> Option<Watch> {
        if !self.is_open() {
            return None;
        }
        let (path, path2) = {
            let ns = ns.read();
            match at {
                At::Ino(i) | At::Xattr(i, _) => (self.ino_path(&ns, i), None),
                At::Name(p, n) => (name_path(&ns, p, n), None),
                At::Rename(p, n, q, m) => (name_path(&ns, p, n), Some(name_path(&ns, q, m))),
                At::Link(i, q, m) => (self.ino_path(&ns, i), Some(name_path(&ns, q, m))),
            }
        };
        let pid = req.pid();
        let (fault, covered) = {
            let mut rules = self.rules.lock();
            if rules.is_empty() {
                (None, false)
            } else {
                let mut paths: Vec<&[u8]> = vec![&path];
                if let Some(p) = &path2 {
                    paths.push(p);
                }
                let covered = paths.iter().any(|p| rules.covers(p));
                // triefs's own commands reach the daemon through the
                // root: opening and stat'ing it never fails, or a rule on
                // `/` could not be cleared.
                let own_door = matches!(at, At::Ino(ROOT_INO))
                    && matches!(op, Op::Opendir | Op::Getattr | Op::Releasedir);
                let fault = if covered && !own_door {
                    rules.decide(op, &paths, pid, || thread_group(pid))
                } else {
                    None
                };
                (fault, covered)
            }
        };
        let (traced, expired) = {
            let mut t = self.tracers.lock();
            // A reader killed without stopping must not keep every request
            // on the slow path: it goes after ABANDONED.
            let expired = !t.is_empty() && t.expire();
            let wanted = t.wants(&path) || path2.as_deref().is_some_and(|p| t.wants(p));
            (wanted, expired)
        };
        if expired {
            self.update();
        }
        let comm = traced.then(|| self.comm(pid));
        Some(Watch {
            start: Instant::now(),
            event: Event {
                time: SystemTime::now(),
                pid,
                uid: req.uid(),
                op,
                path,
                path2,
                range: None,
                xattr: match at {
                    At::Xattr(_, n) => Some(n.as_bytes().to_vec()),
                    _ => None,
                },
                errno: None,
                fault: fault.map(|f| f.rule),
                latency: Duration::ZERO,
            },
            comm,
            ctx: Ctx {
                uncached: covered || self.uncached_all,
                short_write: fault.and_then(|f| f.short_write),
            },
            fault,
        })
    }

    /// Waits out the fault's delay (cut short when the rules are
    /// cleared); the error to answer instead of serving, if the fault
    /// gives one.
    pub(crate) fn apply(&self, w: &Option<Watch>) -> Option<Errno> {
        let f = w.as_ref()?.fault?;
        if !f.delay.is_zero() {
            let deadline = Instant::now() + f.delay;
            let mut generation = self.cleared.lock();
            let at = *generation;
            while *generation == at && !self.wake.wait_until(&mut generation, deadline).timed_out()
            {
            }
        }
        f.errno
    }

    /// Records the answer of a watched request for the trace readers.
    pub(crate) fn finish(&self, w: Option<Watch>, result: Option<Errno>) {
        let Some(mut w) = w else { return };
        let Some(comm) = w.comm.take() else { return };
        w.event.errno = result;
        w.event.latency = w.start.elapsed();
        self.tracers.lock().record(&w.event, &comm);
    }

    /// Notes the range of a read or write for its trace line.
    pub(crate) fn range(w: &mut Option<Watch>, off: u64, len: u64) {
        if let Some(w) = w {
            w.event.range = Some((off, len));
        }
    }

    /// Learns the name of an inode handed to the kernel (a non-directory:
    /// a directory knows its place).
    pub(crate) fn learn(&self, ino: u64, parent: u64, name: &OsStr, is_dir: bool) {
        if !self.is_open() || is_dir {
            return;
        }
        let mut n = self.names.lock();
        if n.of.len() >= MAX_NAMES && !n.of.contains_key(&ino) {
            n.of.clear();
        }
        n.of.insert(ino, (parent, name.as_bytes().into()));
    }

    /// The path of inode `ino`: a directory's from the trie; a file's from
    /// the name it was handed out under, checked (and searched for once a
    /// second when unknown or stale); else `<ino:N>`.
    fn ino_path(&self, ns: &Namespace, ino: u64) -> Vec<u8> {
        if ino == ROOT_INO {
            return b"/".to_vec();
        }
        if let Some(p) = ns.dir_path(ino) {
            return p;
        }
        let mut names = self.names.lock();
        let valid = |n: &Names| {
            n.of.get(&ino)
                .filter(|(p, name)| {
                    ns.child_ino(*p, OsStr::from_bytes(name))
                        .is_ok_and(|i| i == ino)
                })
                .cloned()
        };
        let mut found = valid(&names);
        if found.is_none() && names.scanned.is_none_or(|t| t.elapsed() >= RESCAN_EVERY) {
            names.scanned = Some(Instant::now());
            names.of.clear();
            for (i, p, n) in ns.held_file_names(MAX_NAMES) {
                names.of.insert(i, (p, n));
            }
            found = valid(&names);
        }
        drop(names);
        match found {
            Some((p, n)) => name_path(ns, p, OsStr::from_bytes(&n)),
            None => format!("<ino:{ino}>").into_bytes(),
        }
    }

    /// The process name of `pid`, from `/proc` (cached briefly).
    fn comm(&self, pid: u32) -> Box<[u8]> {
        let mut c = self.comms.lock();
        if let Some((name, at)) = c.get(&pid)
            && at.elapsed() < COMM_FRESH
        {
            return name.clone();
        }
        if c.len() > 4096 {
            c.clear();
        }
        let name: Box<[u8]> = std::fs::read(format!("/proc/{pid}/comm"))
            .map(|mut b| {
                if b.last() == Some(&b'\n') {
                    b.pop();
                }
                b.into_boxed_slice()
            })
            .unwrap_or_else(|_| Box::from(&b"?"[..]));
        c.insert(pid, (name.clone(), Instant::now()));
        name
    }
}

/// `directory path/name`.
fn name_path(ns: &Namespace, parent: u64, name: &OsStr) -> Vec<u8> {
    let mut p = ns
        .dir_path(parent)
        .unwrap_or_else(|| format!("<ino:{parent}>").into_bytes());
    if p != b"/" {
        p.push(b'/');
    }
    p.extend_from_slice(name.as_bytes());
    p
}

/// The process (thread group) of thread `tid`, from `/proc`.
fn thread_group(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}
