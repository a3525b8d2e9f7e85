//! Fuzzes `triefs::namespace::Namespace` with arbitrary operation sequences under
//! small page/inode limits.
//!
//! After every operation:
//! - `Namespace::check()` must pass (trie/inode/accounting invariants);
//! - the page and inode limits hold;
//! - kernel lookup counts match a model of what the operations returned;
//! - regular-file contents match a sparse byte model (reads are compared,
//!   and every stored page is compared byte for byte, zeros past EOF
//!   included); sizes match;
//! - xattrs match a model; symlink targets are kept.
//!
//! Successful namespace operations are also checked for their visible
//! effect (the name exists / is gone / points at the right inode).
//! At the end every lookup is forgotten, everything is removed through the
//! namespace API, and the filesystem must be back to its root alone with no
//! stored pages.
#![no_main]

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbitrary::{Arbitrary, Result as AResult, Unstructured};
use fuser::TimeOrNow;
use libfuzzer_sys::fuzz_target;
use triefs::namespace::acl;
use triefs::namespace::data::PAGE;
use triefs::namespace::inode::{Kind, ROOT_INO};
use triefs::trie::FIRST_COOKIE;
use triefs::error::Errno as Error;
use triefs::namespace::{Limits, Namespace, NewNode, SetAttr, XattrReply};
use triefs_fuzz::{Name, Path, fmt_bytes};

const PG: u64 = PAGE as u64;
/// Reads are capped like the kernel's `max_read`.
const MAX_READ: u32 = 256 << 10;
/// Bytes moved by read/copy_range per input, to keep executions fast.
const BYTE_BUDGET: u64 = 64 << 20;


// ---------------------------------------------------------------------------
// Input types
// ---------------------------------------------------------------------------

/// An inode number: mostly one returned earlier, sometimes anything.
#[derive(Clone, Copy)]
enum Ino {
    Seen(u8),
    Raw(u64),
}

impl<'a> Arbitrary<'a> for Ino {
    fn arbitrary(u: &mut Unstructured<'a>) -> AResult<Self> {
        let b: u8 = u.arbitrary()?;
        Ok(match b {
            0..=243 => Ino::Seen(b),
            244 => Ino::Raw(0),
            245 => Ino::Raw(u64::MAX),
            246 => Ino::Raw(ROOT_INO),
            247 => Ino::Raw(u64::from(u.arbitrary::<u8>()?)),
            _ => Ino::Raw(u.arbitrary()?),
        })
    }
}

impl fmt::Debug for Ino {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ino::Seen(i) => write!(f, "seen[{i}]"),
            Ino::Raw(n) => write!(f, "raw({n})"),
        }
    }
}

/// A file offset or length: small, near page boundaries, or huge.
#[derive(Clone, Copy)]
struct Off(u64);

impl<'a> Arbitrary<'a> for Off {
    fn arbitrary(u: &mut Unstructured<'a>) -> AResult<Self> {
        let sel: u8 = u.arbitrary()?;
        let v = match sel {
            0..=99 => u64::from(u.arbitrary::<u16>()?) % (3 * PG),
            100..=159 => {
                let page = u64::from(u.arbitrary::<u8>()? % 16);
                let delta = i64::from(u.arbitrary::<i8>()? % 4);
                (page * PG).saturating_add_signed(delta)
            }
            160..=179 => u64::from(u.arbitrary::<u32>()?),
            180..=189 => (1u64 << 40) + u64::from(u.arbitrary::<u16>()?),
            190..=194 => (i64::MAX as u64) - u64::from(u.arbitrary::<u8>()? % 8),
            195..=199 => (i64::MAX as u64) - u64::from(u.arbitrary::<u16>()? % 8192),
            200..=204 => (i64::MAX as u64) + u64::from(u.arbitrary::<u8>()?),
            205..=207 => u64::MAX - u64::from(u.arbitrary::<u16>()? % 8192),
            208..=209 => u64::MAX - u64::from(u.arbitrary::<u8>()? % 8),
            _ => u.arbitrary()?,
        };
        Ok(Off(v))
    }
}

impl fmt::Debug for Off {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An `lseek` offset: small, near `i64::MAX`, negative, or anything.
#[derive(Clone, Copy)]
struct SeekOff(i64);

impl<'a> Arbitrary<'a> for SeekOff {
    fn arbitrary(u: &mut Unstructured<'a>) -> AResult<Self> {
        let sel: u8 = u.arbitrary()?;
        Ok(SeekOff(match sel {
            0..=159 => (Off::arbitrary(u)?.0 & i64::MAX as u64) as i64,
            160..=199 => i64::MAX - i64::from(u.arbitrary::<u8>()? % 16),
            200..=219 => -1 - i64::from(u.arbitrary::<u16>()?),
            220..=229 => i64::MIN + i64::from(u.arbitrary::<u8>()?),
            _ => u.arbitrary()?,
        }))
    }
}

impl fmt::Debug for SeekOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Data for writes and xattr values: short, or a fill crossing pages.
#[derive(Clone)]
struct Data(Vec<u8>);

impl<'a> Arbitrary<'a> for Data {
    fn arbitrary(u: &mut Unstructured<'a>) -> AResult<Self> {
        let sel: u8 = u.arbitrary()?;
        Ok(Data(match sel {
            0..=199 => {
                let n = u.int_in_range(0..=32)?;
                u.bytes(n)?.to_vec()
            }
            200..=219 => Vec::new(),
            _ => {
                let fill: u8 = u.arbitrary()?;
                let n = [1usize, 100, 4095, 4096, 4097, 8192, 10000][sel as usize % 7];
                vec![fill; n]
            }
        }))
    }
}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("b\"")?;
        fmt_bytes(&self.0, f)?;
        f.write_str("\"")
    }
}

/// An xattr name, mostly valid.
#[derive(Clone)]
struct XName(Vec<u8>);

impl<'a> Arbitrary<'a> for XName {
    fn arbitrary(u: &mut Unstructured<'a>) -> AResult<Self> {
        let sel: u8 = u.arbitrary()?;
        Ok(XName(match sel % 20 {
            0..=4 => b"user.a".to_vec(),
            5..=7 => b"user.b".to_vec(),
            8 => b"trusted.t".to_vec(),
            9 => b"security.selinux".to_vec(),
            10 => b"user.".to_vec(),
            11 => b"trusted.".to_vec(),
            12 => b"system.posix_acl_access".to_vec(),
            13 => b"system.posix_acl_default".to_vec(),
            14 => b"system.x".to_vec(),
            15 => Vec::new(),
            16 => b"user.\0z".to_vec(),
            17 => {
                let mut v = b"user.".to_vec();
                v.resize(300, b'q');
                v
            }
            _ => {
                let n = u.int_in_range(0..=12)?;
                u.bytes(n)?.to_vec()
            }
        }))
    }
}

impl XName {
    fn os(&self) -> &OsStr {
        OsStr::from_bytes(&self.0)
    }
}

impl fmt::Debug for XName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        fmt_bytes(&self.0, f)?;
        f.write_str("\"")
    }
}

/// `renameat2` flags: mostly 0..=7, sometimes anything.
#[derive(Clone, Copy)]
struct RFlags(u32);

impl<'a> Arbitrary<'a> for RFlags {
    fn arbitrary(u: &mut Unstructured<'a>) -> AResult<Self> {
        let b: u8 = u.arbitrary()?;
        Ok(RFlags(if b < 240 { u32::from(b % 8) } else { u.arbitrary()? }))
    }
}

impl fmt::Debug for RFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A small int picked from interesting values or arbitrary.
#[derive(Clone, Copy)]
struct Pick<const K: u8>(i64);

impl<'a, const K: u8> Arbitrary<'a> for Pick<K> {
    fn arbitrary(u: &mut Unstructured<'a>) -> AResult<Self> {
        // K = 0: fallocate mode; K = 1: lseek whence; K = 2: xattr flags;
        // K = 3: forget count; K = 4: xattr buffer size.
        let b: u8 = u.arbitrary()?;
        let table: &[i64] = match K {
            0 => &[0, 1, 3, 2, 0x10, 0x08, 0x20, 0x11, 0x40],
            1 => &[3, 4, 0, 2, 1, 5],
            2 => &[0, 1, 2, 3],
            3 => &[1, 1, 2, 0, 3, u64::MAX as i64],
            _ => &[0, 0, 1, 4, 6, 7, 12, 13, 64, 65536],
        };
        Ok(Pick(if b < 240 {
            table[b as usize % table.len()]
        } else {
            u.arbitrary()?
        }))
    }
}

impl<const K: u8> fmt::Debug for Pick<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Arbitrary, Clone, Copy, Debug)]
enum KindSel {
    Directory,
    RegularFile,
    RegularFile2,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl KindSel {
    fn kind(self) -> Kind {
        match self {
            KindSel::Directory => Kind::Directory,
            KindSel::RegularFile | KindSel::RegularFile2 => Kind::RegularFile,
            KindSel::Symlink => Kind::Symlink,
            KindSel::Fifo => Kind::Fifo,
            KindSel::Socket => Kind::Socket,
            KindSel::CharDevice => Kind::CharDevice,
            KindSel::BlockDevice => Kind::BlockDevice,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Time {
    Now,
    /// Seconds since the epoch (negative before) plus nanoseconds.
    At(i64, u32),
}

impl<'a> Arbitrary<'a> for Time {
    fn arbitrary(u: &mut Unstructured<'a>) -> AResult<Self> {
        let sel: u8 = u.arbitrary()?;
        let nanos = |u: &mut Unstructured<'a>| -> AResult<u32> {
            let b: u8 = u.arbitrary()?;
            Ok([0, 1, 999_999_999, 500_000_000][b as usize % 4])
        };
        Ok(match sel {
            0..=63 => Time::Now,
            64..=159 => Time::At(i64::from(u.arbitrary::<i32>()?), u.arbitrary::<u32>()? % 1_000_000_000),
            160..=223 => {
                let b: u8 = u.arbitrary()?;
                let s = [i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1, -1, 0, 1][b as usize % 7];
                Time::At(s, nanos(u)?)
            }
            _ => Time::At(u.arbitrary()?, u.arbitrary()?),
        })
    }
}

impl Time {
    fn system(self) -> Option<SystemTime> {
        match self {
            Time::Now => Some(SystemTime::now()),
            Time::At(s, ns) => {
                let base = if s >= 0 {
                    UNIX_EPOCH.checked_add(Duration::from_secs(s as u64))
                } else {
                    UNIX_EPOCH.checked_sub(Duration::from_secs(s.unsigned_abs()))
                };
                base?.checked_add(Duration::from_nanos(u64::from(ns % 1_000_000_000)))
            }
        }
    }
    fn or_now(self) -> Option<TimeOrNow> {
        match self {
            Time::Now => Some(TimeOrNow::Now),
            t => t.system().map(TimeOrNow::SpecificTime),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Create {
        parent: Ino,
        name: Name,
        kind: KindSel,
        perm: u16,
        uid: u8,
        gid: u8,
        rdev: u32,
        target: Option<Data>,
    },
    Mkdir {
        parent: Ino,
        name: Name,
        setgid: bool,
    },
    Mkfile {
        parent: Ino,
        name: Name,
    },
    Link {
        ino: Ino,
        newparent: Ino,
        newname: Name,
    },
    Unlink {
        parent: Ino,
        name: Name,
    },
    Rmdir {
        parent: Ino,
        name: Name,
    },
    Rename {
        parent: Ino,
        name: Name,
        newparent: Ino,
        newname: Name,
        flags: RFlags,
    },
    Lookup {
        parent: Ino,
        name: Name,
    },
    Forget {
        ino: Ino,
        n: Pick<3>,
    },
    AddLookup(Ino),
    SetAttr {
        ino: Ino,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<Off>,
        atime: Option<Time>,
        mtime: Option<Time>,
        ctime: Option<Time>,
    },
    Truncate {
        ino: Ino,
        size: Off,
    },
    Write {
        ino: Ino,
        offset: Off,
        data: Data,
    },
    Read {
        ino: Ino,
        offset: Off,
        len: u32,
    },
    Fallocate {
        ino: Ino,
        offset: Off,
        len: Off,
        mode: Pick<0>,
    },
    Lseek {
        ino: Ino,
        offset: SeekOff,
        whence: Pick<1>,
    },
    SetXattr {
        ino: Ino,
        name: XName,
        value: Data,
        flags: Pick<2>,
    },
    GetXattr {
        ino: Ino,
        name: XName,
        size: Pick<4>,
    },
    ListXattr {
        ino: Ino,
        size: Pick<4>,
    },
    RemoveXattr {
        ino: Ino,
        name: XName,
    },
    CopyRange {
        src: Ino,
        src_off: Off,
        dst: Ino,
        dst_off: Off,
        len: Off,
    },
    AddPath(Path),
    AddPathRaw(Vec<u8>),
    /// Every inode that can share its attributes does (what a bulk load
    /// ends with); the ops after it run on shared inodes.
    Share,
    Entries {
        ino: Ino,
        after: Option<Name>,
        page: u8,
    },
    /// Starts a readdir-style listing (cookie offsets) of a directory,
    /// `page` entries per request; it goes on with `ReaddirNext` while
    /// other operations change the namespace in between.
    ReaddirStart {
        dir: Ino,
        page: u8,
    },
    ReaddirNext,
    Attr(Ino),
    Readlink(Ino),
    ParentOf(Ino),
    Access {
        ino: Ino,
        mask: u8,
        uid: u8,
        gid: u8,
    },
    Usage,
}

#[derive(Arbitrary, Debug)]
struct Input {
    max_pages: u8,
    max_inodes: u8,
    /// A tiny name-cookie mask (names collide in listings), or full hashes.
    cookie_mask: Option<u8>,
    /// Teardown order: forget everything first, or remove names first.
    forget_first: bool,
    ops: Vec<Op>,
}

// ---------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------

/// A regular file's contents: size plus its non-zero bytes.
#[derive(Default, Clone)]
struct FileModel {
    size: u64,
    bytes: BTreeMap<u64, u8>,
}

impl FileModel {
    fn read(&self, off: u64, len: u64) -> Vec<u8> {
        if off >= self.size {
            return Vec::new();
        }
        let end = self.size.min(off.saturating_add(len));
        let mut out = vec![0u8; (end - off) as usize];
        for (&k, &v) in self.bytes.range(off..end) {
            out[(k - off) as usize] = v;
        }
        out
    }

    fn zero(&mut self, from: u64, to: u64) {
        if from >= to {
            return;
        }
        let keys: Vec<u64> = self.bytes.range(from..to).map(|(&k, _)| k).collect();
        for k in keys {
            self.bytes.remove(&k);
        }
    }

    fn write(&mut self, off: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.zero(off, off + data.len() as u64);
        for (i, &b) in data.iter().enumerate() {
            if b != 0 {
                self.bytes.insert(off + i as u64, b);
            }
        }
        self.size = self.size.max(off + data.len() as u64);
    }

    fn truncate(&mut self, size: u64) {
        if size < self.size {
            self.zero(size, u64::MAX);
        }
        self.size = size;
    }

    fn any_data(&self, from: u64, to: u64) -> bool {
        from < to && self.bytes.range(from..to).next().is_some()
    }
}

struct InoModel {
    kind: Kind,
    lookups: u64,
    file: Option<FileModel>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    target: Option<Vec<u8>>,
}

/// An open readdir listing, as the kernel would drive it.
struct Readdir {
    dir: u64,
    off: u64,
    page: usize,
    /// Names present with the same inode since the listing started.
    stable: BTreeMap<Vec<u8>, u64>,
    /// How often each name was listed.
    seen: BTreeMap<Vec<u8>, usize>,
    requests: usize,
}

struct Fuzz {
    ns: Namespace,
    tiny_cookies: bool,
    readdir: Option<Readdir>,
    max_pages: u64,
    max_inodes: u64,
    model: HashMap<u64, InoModel>,
    generations: HashMap<u64, u64>,
    seen: Vec<u64>,
    budget: u64,
}

/// Collects up to `room` entries of a listing, as a reply buffer would.
struct Collect {
    room: usize,
    got: Vec<(u64, u64, Vec<u8>)>,
}

impl triefs::fuse::readdir::DirReplier for Collect {
    fn add(&mut self, ino: u64, offset: u64, _kind: fuser::FileType, name: &OsStr) -> bool {
        if self.got.len() >= self.room {
            return true;
        }
        self.got.push((ino, offset, name.as_bytes().to_vec()));
        false
    }
}

/// What one xattr costs of the inode space, as tmpfs counts it.
fn xattr_space(name: &[u8], value: &[u8]) -> u64 {
    40 + name.len() as u64 + value.len() as u64
}

impl Fuzz {
    /// Inode space in use, as tmpfs counts it, from the model's inodes and
    /// xattrs and the names in the trie: 1 KiB per inode and per extra name
    /// of a file, plus each xattr's space.
    fn ispace_used(&self) -> u64 {
        let mut names: HashMap<u64, u64> = HashMap::new();
        for (_, _, &ino, _) in self.ns.trie().nodes() {
            let ino = u64::from(ino);
            *names.entry(ino).or_default() += 1;
        }
        let extra: u64 = self
            .model
            .iter()
            .filter(|(_, m)| m.kind != Kind::Directory)
            .map(|(ino, _)| names.get(ino).copied().unwrap_or(0).saturating_sub(1))
            .sum();
        let xattrs: u64 = self
            .model
            .values()
            .flat_map(|m| m.xattrs.iter())
            .map(|(k, v)| xattr_space(k, v))
            .sum();
        (self.model.len() as u64 + extra) * 1024 + xattrs
    }
}

fn e(code: i32) -> Error {
    Error::new(code)
}

fn xattr_name_check(name: &[u8]) -> Result<(), Error> {
    for p in [&b"user."[..], b"trusted.", b"security."] {
        if name.starts_with(p) {
            return if name.len() > p.len() { Ok(()) } else { Err(e(libc::EINVAL)) };
        }
    }
    if is_acl(name) {
        return Ok(());
    }
    Err(e(libc::EOPNOTSUPP))
}

/// The two POSIX ACL names. Only invalid ACL values are fuzzed here (a
/// valid one would change the mode and be inherited, which this model does
/// not follow); ACL rules are tested in `namespace::acl` and `tests/acl.rs`.
fn is_acl(name: &[u8]) -> bool {
    name == acl::ACCESS || name == acl::DEFAULT
}

fn sized(v: Vec<u8>, size: u32) -> Result<XattrReply, Error> {
    if size == 0 {
        Ok(XattrReply::Size(v.len() as u32))
    } else if v.len() > size as usize {
        Err(e(libc::ERANGE))
    } else {
        Ok(XattrReply::Data(v))
    }
}

impl Fuzz {
    fn ino(&self, i: Ino) -> u64 {
        match i {
            Ino::Seen(k) => self.seen[k as usize % self.seen.len()],
            Ino::Raw(n) => n,
        }
    }

    fn saw(&mut self, ino: u64) {
        if !self.seen.contains(&ino) {
            self.seen.push(ino);
        }
    }

    fn spend(&mut self, n: u64) -> bool {
        if self.budget < n {
            return false;
        }
        self.budget -= n;
        true
    }

    /// A kernel reference was handed out for `ino`.
    fn looked_up(&mut self, ino: u64, generation: u64) {
        self.saw(ino);
        if self.model.contains_key(&ino) {
            self.model.get_mut(&ino).unwrap().lookups += 1;
        } else {
            // Just created: it must hold exactly this one reference.
            self.sync_new(Some(ino));
        }
        assert_eq!(self.ns.generation(ino), generation, "entry generation of {ino}");
    }

    /// Adds model entries for inodes the model has not seen yet; each must
    /// be brand new (empty, no xattrs, no lookups).
    fn sync_new(&mut self, fresh: Option<u64>) {
        let mut new = Vec::new();
        for (ino, inode) in self.ns.inodes().iter() {
            if self.model.contains_key(&ino) {
                continue;
            }
            let generation = self.ns.generation(ino);
            if let Some(&old) = self.generations.get(&ino) {
                assert!(generation > old, "inode {ino} reused with generation {generation} <= {old}");
            }
            self.generations.insert(ino, generation);
            assert!(self.ns.inodes().xattrs(ino).is_none(), "new inode {ino} has xattrs");
            let lookups = u64::from(fresh == Some(ino));
            assert_eq!(inode.lookups(), lookups, "new inode {ino} has lookups");
            let file = (inode.kind == Kind::RegularFile).then(|| {
                let d = inode.file().expect("regular file without data");
                assert_eq!((d.size(), d.pages()), (0, 0), "new file {ino} not empty");
                FileModel::default()
            });
            let target = match inode.kind {
                Kind::Symlink => Some(self.ns.readlink(ino).expect("readlink of new symlink").to_vec()),
                _ => None,
            };
            new.push((ino, InoModel { kind: inode.kind, lookups, file, xattrs: BTreeMap::new(), target }));
        }
        self.model.extend(new);
    }

    /// Full comparison after each operation.
    fn verify(&mut self, what: &dyn fmt::Debug) {
        if let Err(errs) = self.ns.check() {
            panic!("check() failed after {what:?}:\n  {}", errs.join("\n  "));
        }
        assert!(
            self.ns.pages_used() <= self.max_pages,
            "after {what:?}: {} pages used, limit {}",
            self.ns.pages_used(),
            self.max_pages
        );
        assert!(
            self.ispace_used() <= self.max_inodes.max(1) * 1024,
            "after {what:?}: {} bytes of inode space used, limit {} inodes",
            self.ispace_used(),
            self.max_inodes
        );
        if let Some(rd) = &mut self.readdir {
            let ns = &self.ns;
            rd.stable.retain(|n, i| ns.child_ino(rd.dir, OsStr::from_bytes(n)) == Ok(*i));
        }
        // Freed inodes must have had no kernel references.
        let gone: Vec<u64> = self
            .model
            .keys()
            .copied()
            .filter(|&i| self.ns.inodes().get(i).is_none())
            .collect();
        for ino in gone {
            let m = self.model.remove(&ino).unwrap();
            assert_eq!(m.lookups, 0, "after {what:?}: inode {ino} freed with {} kernel references", m.lookups);
        }
        self.sync_new(None);
        for (&ino, m) in &self.model {
            let inode = self.ns.inodes().get(ino).unwrap();
            assert_eq!(inode.kind, m.kind, "kind of {ino}");
            assert_eq!(inode.lookups(), m.lookups, "after {what:?}: lookups of inode {ino}");
            let xa: BTreeMap<Vec<u8>, Vec<u8>> = self
                .ns
                .inodes()
                .xattrs(ino)
                .iter()
                .flat_map(|x| x.iter())
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect();
            assert_eq!(xa, m.xattrs, "after {what:?}: xattrs of {ino}");
            assert!(self.ns.inodes().xattrs(ino).is_none_or(|x| !x.is_empty()), "empty xattr map kept");
            if let Some(t) = &m.target {
                assert_eq!(self.ns.readlink(ino).ok(), Some(&t[..]), "symlink target of {ino}");
            }
            if let Some(fm) = &m.file {
                let d = inode.file().expect("file data");
                assert_eq!(d.size(), fm.size, "after {what:?}: size of {ino}");
                let attr = self.ns.attr(ino).unwrap();
                assert_eq!(attr.size, fm.size, "attr size of {ino}");
                assert_eq!(attr.blocks, d.pages() * (PG / 512), "attr blocks of {ino}");
                let mut nonzero = 0usize;
                for (off, page) in d.stored_pages() {
                    assert_eq!(off % PG, 0, "unaligned page");
                    assert_eq!(page.len(), PAGE, "page length");
                    for (i, &b) in page.iter().enumerate() {
                        let pos = off + i as u64;
                        let want = if pos < fm.size { fm.bytes.get(&pos).copied().unwrap_or(0) } else { 0 };
                        if b != want {
                            panic!(
                                "after {what:?}: inode {ino} byte {pos} is {b:#x}, model {want:#x} (size {})",
                                fm.size
                            );
                        }
                        nonzero += usize::from(b != 0);
                    }
                }
                assert_eq!(
                    nonzero,
                    fm.bytes.len(),
                    "after {what:?}: inode {ino}: non-zero bytes outside stored pages"
                );
            }
        }
    }

    fn child(&self, parent: u64, name: &Name) -> Option<u64> {
        self.ns.child_ino(parent, name.os()).ok()
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Create { parent, name, kind, perm, uid, gid, rdev, target } => {
                let parent = self.ino(*parent);
                let spec = NewNode {
                    kind: kind.kind(),
                    perm: u32::from(*perm),
                    uid: u32::from(*uid),
                    gid: u32::from(*gid),
                    rdev: *rdev,
                    target: target.as_ref().map(|d| &d.0[..]),
                };
                self.create(parent, name, spec);
            }
            Op::Mkdir { parent, name, setgid } => {
                let parent = self.ino(*parent);
                let perm = if *setgid { 0o2775 } else { 0o755 };
                self.create(parent, name, NewNode { kind: Kind::Directory, perm, uid: 0, gid: 0, rdev: 0, target: None });
            }
            Op::Mkfile { parent, name } => {
                let parent = self.ino(*parent);
                self.create(parent, name, NewNode { kind: Kind::RegularFile, perm: 0o644, uid: 1, gid: 1, rdev: 0, target: None });
            }
            Op::Link { ino, newparent, newname } => {
                let (ino, np) = (self.ino(*ino), self.ino(*newparent));
                if let Ok(entry) = self.ns.link(ino, np, newname.os()) {
                    assert_eq!(entry.attr.ino.0, ino, "link entry");
                    self.looked_up(ino, entry.generation);
                    assert_eq!(self.child(np, newname), Some(ino), "link({ino}, {np}, {newname:?}) not visible");
                }
            }
            Op::Unlink { parent, name } => {
                let p = self.ino(*parent);
                let before = self.child(p, name);
                let r = self.ns.unlink(p, name.os());
                if r.is_ok() {
                    assert!(before.is_some(), "unlink of a missing name succeeded");
                    assert_eq!(self.child(p, name), None, "unlink({p}, {name:?}) left the name");
                }
            }
            Op::Rmdir { parent, name } => {
                let p = self.ino(*parent);
                let before = self.child(p, name);
                let r = self.ns.rmdir(p, name.os());
                if r.is_ok() {
                    let d = before.expect("rmdir of a missing name succeeded");
                    assert_eq!(self.child(p, name), None, "rmdir({p}, {name:?}) left the name");
                    if let Some(i) = self.ns.inodes().get(d) {
                        assert_eq!(i.nlink, 0, "removed directory keeps links");
                        assert!(self.ns.entries_after(d, None).unwrap().next().is_none(), "removed dir lists entries");
                    }
                }
            }
            Op::Rename { parent, name, newparent, newname, flags } => {
                let (p, np) = (self.ino(*parent), self.ino(*newparent));
                let src = self.child(p, name);
                let dst = self.child(np, newname);
                let r = self.ns.rename(p, name.os(), np, newname.os(), flags.0);
                let what = format!("rename({p}, {name:?}, {np}, {newname:?}, {flags:?})");
                if flags.0 & !3 != 0 || flags.0 == 3 {
                    assert_eq!(r, Err(e(libc::EINVAL)), "{what} with invalid flags");
                }
                if r.is_ok() {
                    let src = src.unwrap_or_else(|| panic!("{what} succeeded without a source"));
                    assert_eq!(self.child(np, newname), Some(src), "{what}: target does not name the source");
                    if flags.0 == 2 {
                        let dst = dst.unwrap_or_else(|| panic!("{what}: exchange without a target"));
                        assert_eq!(self.child(p, name), Some(dst), "{what}: exchange did not swap");
                    } else {
                        if flags.0 == 1 {
                            assert!(dst.is_none() || (p == np && name == newname), "{what}: NOREPLACE replaced");
                        }
                        let same_entry = p == np && name == newname;
                        if !same_entry && dst != Some(src) {
                            assert_eq!(self.child(p, name), None, "{what}: source name still there");
                        }
                    }
                }
            }
            Op::Lookup { parent, name } => {
                let p = self.ino(*parent);
                if let Ok(entry) = self.ns.lookup(p, name.os()) {
                    let ino = entry.attr.ino.0;
                    assert_eq!(self.child(p, name), Some(ino), "lookup vs child_ino");
                    self.looked_up(ino, entry.generation);
                }
            }
            Op::Forget { ino, n } => {
                let ino = self.ino(*ino);
                self.ns.forget(ino, n.0 as u64);
                if let Some(m) = self.model.get_mut(&ino) {
                    m.lookups = m.lookups.saturating_sub(n.0 as u64);
                }
            }
            Op::AddLookup(ino) => {
                let ino = self.ino(*ino);
                self.ns.add_lookup(ino);
                if let Some(m) = self.model.get_mut(&ino) {
                    m.lookups += 1;
                }
            }
            Op::SetAttr { ino, mode, uid, gid, size, atime, mtime, ctime } => {
                let ino = self.ino(*ino);
                let a = SetAttr {
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                    size: size.map(|s| s.0),
                    atime: atime.and_then(Time::or_now),
                    mtime: mtime.and_then(Time::or_now),
                    ctime: ctime.and_then(Time::system),
                    through_fd: false,
                };
                self.setattr(ino, a);
            }
            Op::Truncate { ino, size } => {
                let ino = self.ino(*ino);
                self.setattr(ino, SetAttr { size: Some(size.0), ..Default::default() });
            }
            Op::Write { ino, offset, data } => {
                let ino = self.ino(*ino);
                self.write(ino, offset.0, &data.0);
            }
            Op::Read { ino, offset, len } => {
                let ino = self.ino(*ino);
                let len = *len % (MAX_READ + 1);
                if !self.spend(u64::from(len)) {
                    return;
                }
                let r = self.ns.read(ino, offset.0, len);
                if let Some(fm) = self.model.get(&ino).and_then(|m| m.file.as_ref()) {
                    let got = r.expect("read of a regular file failed");
                    let want = fm.read(offset.0, u64::from(len));
                    if got != want {
                        let first = got.iter().zip(&want).position(|(a, b)| a != b);
                        panic!(
                            "read({ino}, {}, {len}): got {} bytes, model {} bytes; first difference at {first:?}",
                            offset.0,
                            got.len(),
                            want.len()
                        );
                    }
                } else {
                    assert!(r.is_err(), "read of a non-file {ino} succeeded");
                }
            }
            Op::Fallocate { ino, offset, len, mode } => {
                let ino = self.ino(*ino);
                let mode = mode.0 as i32;
                let r = self.ns.fallocate(ino, offset.0, len.0, mode);
                let what = format!("fallocate({ino}, {}, {}, {mode:#x})", offset.0, len.0);
                if r.is_ok() {
                    let fm = self
                        .model
                        .get_mut(&ino)
                        .and_then(|m| m.file.as_mut())
                        .unwrap_or_else(|| panic!("{what} succeeded on a non-file"));
                    let end = offset.0 + len.0;
                    match mode {
                        0 => {
                            if len.0 > 0 {
                                fm.size = fm.size.max(end);
                            }
                        }
                        libc::FALLOC_FL_KEEP_SIZE => {}
                        3 => fm.zero(offset.0, end),
                        _ => panic!("{what}: unsupported mode accepted"),
                    }
                }
            }
            Op::Lseek { ino, offset, whence } => {
                let ino = self.ino(*ino);
                let off = offset.0;
                let whence = whence.0 as i32;
                let r = self.ns.lseek(ino, off, whence);
                let what = format!("lseek({ino}, {off}, {whence})");
                let Some(fm) = self.model.get(&ino).and_then(|m| m.file.as_ref()) else {
                    assert!(r.is_err(), "{what} on a non-file succeeded");
                    return;
                };
                let uoff = off.max(0) as u64;
                match (whence, r) {
                    (libc::SEEK_SET, r) if off >= 0 => assert_eq!(r, Ok(off), "{what}"),
                    (libc::SEEK_SET, r) => assert_eq!(r, Err(e(libc::EINVAL)), "{what}"),
                    (libc::SEEK_END, r) => {
                        let want = i64::try_from(fm.size)
                            .ok()
                            .and_then(|s| s.checked_add(off))
                            .filter(|&o| o >= 0)
                            .ok_or(e(libc::EINVAL));
                        assert_eq!(r, want, "{what} (size {})", fm.size);
                    }
                    (libc::SEEK_DATA | libc::SEEK_HOLE, r) if off < 0 => {
                        assert_eq!(r, Err(e(libc::ENXIO)), "{what}");
                    }
                    (libc::SEEK_DATA, Ok(pos)) => {
                        assert!(pos >= off, "{what} = {pos} went backwards");
                        assert!((pos as u64) < fm.size, "{what} = {pos} at/after EOF {}", fm.size);
                        assert!(!fm.any_data(uoff, pos as u64), "{what} = {pos} skipped data");
                    }
                    (libc::SEEK_DATA, Err(err)) => {
                        assert_eq!(err, e(libc::ENXIO), "{what}");
                        assert!(!fm.any_data(uoff, fm.size), "{what} = ENXIO but data follows");
                    }
                    (libc::SEEK_HOLE, Ok(pos)) => {
                        assert!(pos >= off, "{what} = {pos} went backwards");
                        assert!((pos as u64) <= fm.size, "{what} = {pos} past EOF {}", fm.size);
                        let p = pos as u64;
                        let page_end = (p / PG + 1) * PG;
                        assert!(!fm.any_data(p, page_end.min(fm.size)), "{what} = {pos} is not a hole");
                    }
                    (libc::SEEK_HOLE, Err(err)) => {
                        assert_eq!(err, e(libc::ENXIO), "{what}");
                        assert!(uoff >= fm.size, "{what} = ENXIO before EOF {}", fm.size);
                    }
                    (_, r) => assert_eq!(r, Err(e(libc::EINVAL)), "{what}"),
                }
            }
            Op::SetXattr { ino, name, value, flags } => {
                let ino = self.ino(*ino);
                let flags = flags.0 as i32;
                let acl_value = is_acl(&name.0).then(|| acl::parse(&value.0));
                if matches!(acl_value, Some(Ok(_))) {
                    return;
                }
                let r = self.ns.setxattr(ino, name.os(), &value.0, flags);
                let used = self.ispace_used();
                let max = self.max_inodes * 1024;
                let want = xattr_name_check(&name.0).and_then(|()| {
                    let m = self.model.get_mut(&ino).ok_or(e(libc::ENOENT))?;
                    if let Some(Err(err)) = acl_value {
                        return Err(err);
                    }
                    let exists = m.xattrs.contains_key(&name.0);
                    if flags & libc::XATTR_CREATE != 0 && exists {
                        return Err(e(libc::EEXIST));
                    }
                    if flags & libc::XATTR_REPLACE != 0 && !exists {
                        return Err(e(libc::ENODATA));
                    }
                    // As tmpfs: the new value must fit before the old goes.
                    if used + xattr_space(&name.0, &value.0) > max {
                        return Err(e(libc::ENOSPC));
                    }
                    m.xattrs.insert(name.0.clone(), value.0.clone());
                    Ok(())
                });
                assert_eq!(r, want, "setxattr({ino}, {name:?}, {value:?}, {flags})");
            }
            Op::GetXattr { ino, name, size } => {
                let ino = self.ino(*ino);
                let size = size.0 as u32;
                let r = self.ns.getxattr(ino, name.os(), size);
                let want = xattr_name_check(&name.0).and_then(|()| {
                    let m = self.model.get(&ino).ok_or(e(libc::ENOENT))?;
                    let v = m.xattrs.get(&name.0).ok_or(e(libc::ENODATA))?;
                    sized(v.clone(), size)
                });
                assert_eq!(r, want, "getxattr({ino}, {name:?}, {size})");
            }
            Op::ListXattr { ino, size } => {
                let ino = self.ino(*ino);
                let size = size.0 as u32;
                let r = self.ns.listxattr(ino, size);
                let want = self.model.get(&ino).ok_or(e(libc::ENOENT)).and_then(|m| {
                    let mut out = Vec::new();
                    for k in m.xattrs.keys() {
                        out.extend_from_slice(k);
                        out.push(0);
                    }
                    sized(out, size)
                });
                assert_eq!(r, want, "listxattr({ino}, {size})");
            }
            Op::RemoveXattr { ino, name } => {
                let ino = self.ino(*ino);
                let r = self.ns.removexattr(ino, name.os());
                let want = xattr_name_check(&name.0).and_then(|()| {
                    let m = self.model.get_mut(&ino).ok_or(e(libc::ENOENT))?;
                    if is_acl(&name.0) {
                        // Removing an ACL that is not there succeeds, as on
                        // tmpfs; symlinks have no ACLs at all.
                        return if m.kind == Kind::Symlink { Err(e(libc::EOPNOTSUPP)) } else { Ok(()) };
                    }
                    m.xattrs.remove(&name.0).map(|_| ()).ok_or(e(libc::ENODATA))
                });
                assert_eq!(r, want, "removexattr({ino}, {name:?})");
            }
            Op::CopyRange { src, src_off, dst, dst_off, len } => {
                let (src, dst) = (self.ino(*src), self.ino(*dst));
                if !self.spend(len.0.min(16 << 20)) {
                    return;
                }
                let what = format!("copy_range({src}, {}, {dst}, {}, {})", src_off.0, dst_off.0, len.0);
                let avail = self
                    .model
                    .get(&src)
                    .and_then(|m| m.file.as_ref())
                    .map(|f| f.read(src_off.0, len.0.min(16 << 20)));
                // At most what the model read: a copy of whole pages shares
                // them and may go further than a byte copy (up to 1 GiB).
                let r = self.ns.copy_range(src, src_off.0, dst, dst_off.0, len.0.min(16 << 20));
                if let Ok(n) = r {
                    let data = avail.unwrap_or_else(|| panic!("{what} succeeded from a non-file"));
                    assert!(n as usize <= data.len(), "{what} copied {n} of {} available", data.len());
                    if n > 0 || !data.is_empty() {
                        self.model_write(dst, dst_off.0, &data, n, &what);
                    }
                }
            }
            Op::AddPath(path) => self.add_path(&path.0),
            Op::AddPathRaw(bytes) => self.add_path(bytes),
            Op::Share => {
                self.ns.share_unchanged();
            }
            Op::Entries { ino, after, page } => {
                let ino = self.ino(*ino);
                let page = usize::from(*page % 4) + 1;
                let mut cursor = after.as_ref().map(|n| n.0.clone());
                let mut all: Vec<(Vec<u8>, u64)> = Vec::new();
                loop {
                    let batch: Vec<(Vec<u8>, u64)> = match self.ns.entries_after(ino, cursor.as_deref()) {
                        Ok(it) => it.take(page).map(|(n, i, _)| (n.as_bytes().to_vec(), i)).collect(),
                        Err(_) => return,
                    };
                    if batch.is_empty() {
                        break;
                    }
                    cursor = Some(batch.last().unwrap().0.clone());
                    all.extend(batch);
                    assert!(all.len() <= self.ns.trie().len(), "entries_after does not end");
                }
                for w in all.windows(2) {
                    assert!(w[0].0 < w[1].0, "entries out of order");
                }
                if after.is_none() {
                    let mut by_cookie: Vec<(Vec<u8>, u64)> = self
                        .ns
                        .entries_from(ino, 0)
                        .expect("entries_from of a listable directory")
                        .map(|(_, n, i, _)| (n.as_bytes().to_vec(), i))
                        .collect();
                    by_cookie.sort();
                    assert_eq!(by_cookie, all, "entries_from and entries_after of {ino} disagree");
                }
                for (n, i) in &all {
                    if let Some(a) = after {
                        assert!(n > &a.0, "entry not after the cursor");
                    }
                    assert_eq!(self.ns.child_ino(ino, OsStr::from_bytes(n)), Ok(*i), "entry vs child_ino");
                    self.saw(*i);
                }
            }
            Op::ReaddirStart { dir, page } => {
                let dir = self.ino(*dir);
                let Ok(it) = self.ns.entries_from(dir, 0) else { return };
                let stable = it.map(|(_, n, i, _)| (n.as_bytes().to_vec(), i)).collect();
                self.readdir = Some(Readdir {
                    dir,
                    off: 2,
                    page: usize::from(*page % 8) + 1,
                    stable,
                    seen: BTreeMap::new(),
                    requests: 0,
                });
            }
            Op::ReaddirNext => self.readdir_next(),
            Op::Attr(ino) => {
                let ino = self.ino(*ino);
                let r = self.ns.attr(ino);
                assert_eq!(r.is_ok(), self.ns.inodes().get(ino).is_some(), "attr({ino})");
                if let Ok(a) = r {
                    assert_eq!(a.ino.0, ino);
                    assert_eq!(a.nlink, self.ns.inodes().get(ino).unwrap().nlink);
                }
            }
            Op::Readlink(ino) => {
                let ino = self.ino(*ino);
                let r = self.ns.readlink(ino).map(<[u8]>::to_vec);
                match self.model.get(&ino).and_then(|m| m.target.clone()) {
                    Some(t) => assert_eq!(r, Ok(t), "readlink({ino})"),
                    None => assert!(r.is_err(), "readlink({ino}) of a non-symlink"),
                }
            }
            Op::ParentOf(ino) => {
                let ino = self.ino(*ino);
                let p = self.ns.parent_of(ino);
                if p != ino {
                    let entries: Vec<u64> = self.ns.entries_after(p, None).expect("parent is a dir").map(|(_, i, _)| i).collect();
                    assert!(entries.contains(&ino), "parent_of({ino}) = {p} does not list it");
                }
            }
            Op::Access { ino, mask, uid, gid } => {
                let ino = self.ino(*ino);
                let _ = self.ns.access(ino, i32::from(*mask & 7), u32::from(*uid % 3), u32::from(*gid % 3));
            }
            Op::Usage => {
                let u = self.ns.usage();
                assert_eq!(u.blocks, self.max_pages);
                assert_eq!(u.bfree, self.max_pages.saturating_sub(self.ns.pages_used()));
                assert_eq!(u.files, self.max_inodes);
                assert_eq!(u.ffree, (self.max_inodes * 1024).saturating_sub(self.ispace_used()) / 1024);
            }
        }
    }

    /// One READDIR request of the open listing, with the offsets that
    /// `triefs::fuse::readdir::fill` hands out (an entry's cookie + 1, or its cookie when
    /// the next entry shares it).
    fn readdir_next(&mut self) {
        let Some(mut rd) = self.readdir.take() else { return };
        rd.requests += 1;
        // The adapter's own listing code, into a collector of `page` entries.
        let mut c = Collect { room: rd.page, got: Vec::new() };
        let batch: Vec<(u64, Vec<u8>, u64, u64)> = match triefs::fuse::readdir::fill(&self.ns, rd.dir, rd.off, &mut c) {
            Ok(()) => c
                .got
                .into_iter()
                .filter(|(_, _, n)| n != b"." && n != b"..")
                .map(|(i, next, n)| (self.ns.trie().cookie(&n), n, i, next))
                .collect(),
            // The directory is gone: the listing ends.
            Err(_) => Vec::new(),
        };
        if batch.is_empty() {
            for (name, ino) in &rd.stable {
                assert!(
                    rd.seen.contains_key(name),
                    "readdir of {} missed {:?} (inode {ino}), present throughout the listing",
                    rd.dir,
                    Name(name.clone())
                );
            }
            if !self.tiny_cookies {
                for (name, &n) in &rd.seen {
                    assert_eq!(n, 1, "readdir of {} listed {:?} {n} times", rd.dir, Name(name.clone()));
                }
            }
            return;
        }
        let last = batch.last().unwrap().3;
        assert!(last >= rd.off, "readdir offset went backwards: {} -> {last}", rd.off);
        if last == rd.off {
            // A whole reply of cookie-mates: a bigger buffer next time.
            rd.page *= 2;
        }
        for (c, n, i, _) in batch {
            assert!(c >= rd.off.max(FIRST_COOKIE), "entry cookie {c} before offset {}", rd.off);
            assert_eq!(self.ns.child_ino(rd.dir, OsStr::from_bytes(&n)), Ok(i), "readdir entry vs child_ino");
            *rd.seen.entry(n).or_default() += 1;
        }
        rd.off = last;
        assert!(rd.requests < 100_000, "readdir does not end");
        self.readdir = Some(rd);
    }

    fn create(&mut self, parent: u64, name: &Name, spec: NewNode<'_>) {
        let kind = spec.kind;
        let target = spec.target.map(<[u8]>::to_vec);
        let what = format!("create_node({parent}, {name:?}, {kind:?})");
        let existed = self.child(parent, name).is_some();
        let used = self.ispace_used();
        match self.ns.create_node(parent, name.os(), spec) {
            Ok(entry) => {
                let ino = entry.attr.ino.0;
                assert!(!existed, "{what} succeeded over an existing name");
                assert!(!self.model.contains_key(&ino), "{what} returned live inode {ino}");
                assert_eq!(self.child(parent, name), Some(ino), "{what}: name not visible");
                self.looked_up(ino, entry.generation);
                let m = self.model.get(&ino).unwrap();
                assert_eq!(m.kind, kind, "{what}: kind");
                if kind == Kind::Symlink {
                    assert_eq!(m.target, Some(target.unwrap_or_default()), "{what}: target");
                }
            }
            Err(err) => {
                if err == e(libc::ENOSPC) {
                    assert!(
                        used + 1024 > self.max_inodes * 1024,
                        "{what}: ENOSPC with {used} of {} bytes of inode space used",
                        self.max_inodes * 1024
                    );
                }
            }
        }
    }

    fn setattr(&mut self, ino: u64, a: SetAttr) {
        let what = format!("setattr({ino}, {a:?})");
        let kind = self.ns.inodes().get(ino).map(|i| i.kind);
        let r = self.ns.setattr(ino, a);
        if let Some(size) = a.size.filter(|&s| s > i64::MAX as u64) {
            assert!(r.is_err(), "{what}: size {size} is past the largest file size (i64::MAX) but was accepted");
        }
        if let Ok(attr) = r {
            if let Some(size) = a.size {
                let fm = self
                    .model
                    .get_mut(&ino)
                    .and_then(|m| m.file.as_mut())
                    .unwrap_or_else(|| panic!("{what} changed the size of a non-file"));
                fm.truncate(size);
                assert_eq!(attr.size, size, "{what}: returned size");
            }
            if let Some(mode) = a.mode {
                assert_eq!(u32::from(attr.perm), mode & 0o7777, "{what}: perm");
            }
            if let Some(TimeOrNow::SpecificTime(t)) = a.atime {
                assert_eq!(attr.atime, t, "{what}: atime does not read back");
            }
            if let Some(TimeOrNow::SpecificTime(t)) = a.mtime {
                assert_eq!(attr.mtime, t, "{what}: mtime does not read back");
            }
            if let Some(t) = a.ctime {
                assert_eq!(attr.ctime, t, "{what}: ctime does not read back");
            }
        } else if a.size.is_some_and(|s| s > i64::MAX as u64) {
            // Sizes past i64::MAX are refused, as write and fallocate do.
            assert_eq!(r.as_ref().err().map(|e| e.code()), Some(libc::EFBIG), "{what}");
        } else if kind.is_some() && (a.size.is_none() || kind == Some(Kind::RegularFile)) {
            panic!("{what} failed on a {kind:?}: {r:?}");
        }
    }

    fn write(&mut self, ino: u64, off: u64, data: &[u8]) {
        let what = format!("write({ino}, {off}, {} bytes)", data.len());
        let r = self.ns.write(ino, off, data);
        match r {
            Ok(n) => self.model_write(ino, off, data, n, &what),
            Err(err) => {
                if err == e(libc::ENOSPC) {
                    assert!(
                        self.ns.pages_used() + 1 > self.max_pages || data.is_empty(),
                        "{what}: ENOSPC with {} of {} pages used",
                        self.ns.pages_used(),
                        self.max_pages
                    );
                }
            }
        }
    }

    /// Applies a successful write of `n` bytes of `data` to the model.
    fn model_write(&mut self, ino: u64, off: u64, data: &[u8], n: u32, what: &str) {
        let n = n as usize;
        assert!(n <= data.len(), "{what} wrote {n} > {} bytes", data.len());
        if n < data.len() {
            assert_eq!(
                self.ns.pages_used(),
                self.max_pages,
                "{what}: short write ({n} of {}) while pages are free",
                data.len()
            );
        }
        let fm = self
            .model
            .get_mut(&ino)
            .and_then(|m| m.file.as_mut())
            .unwrap_or_else(|| panic!("{what} succeeded on a non-file"));
        fm.write(off, &data[..n]);
    }

    fn add_path(&mut self, path: &[u8]) {
        if let Ok(ino) = self.ns.add_path(OsStr::from_bytes(path), 0, 0) {
            self.saw(ino);
            let a = self.ns.attr(ino).expect("attr of add_path result");
            assert_eq!(a.kind, fuser::FileType::Directory, "add_path returned a non-directory");
        }
    }

    /// Forgets every kernel reference the model knows of.
    fn forget_all(&mut self) {
        let held: Vec<(u64, u64)> = self.model.iter().map(|(&i, m)| (i, m.lookups)).collect();
        for (ino, n) in held {
            if n > 0 {
                self.ns.forget(ino, n);
                if let Some(m) = self.model.get_mut(&ino) {
                    m.lookups = 0;
                }
            }
        }
        self.verify(&"forget all");
    }

    /// Removes every name, depth first, through the namespace API.
    fn remove_all(&mut self, dir: u64) {
        let entries: Vec<(Vec<u8>, u64, fuser::FileType)> = self
            .ns
            .entries_after(dir, None)
            .expect("entries of a live directory")
            .map(|(n, i, k)| (n.as_bytes().to_vec(), i, k))
            .collect();
        for (name, ino, kind) in entries {
            let os = OsStr::from_bytes(&name);
            if kind == fuser::FileType::Directory {
                self.remove_all(ino);
                self.ns.rmdir(dir, os).unwrap_or_else(|err| panic!("teardown rmdir({dir}, {:?}): {err}", Name(name.clone())));
            } else {
                self.ns.unlink(dir, os).unwrap_or_else(|err| panic!("teardown unlink({dir}, {:?}): {err}", Name(name.clone())));
            }
            self.verify(&"teardown step");
        }
    }
}

fuzz_target!(|input: Input| {
    let max_pages = u64::from(input.max_pages % 33);
    let max_inodes = u64::from(input.max_inodes % 41);
    let mut ns = Namespace::new(0, 0, 0o755, Limits { max_pages, max_inodes });
    if let Some(m) = input.cookie_mask {
        ns = ns.with_cookie_mask([0, 1, 3, 7][m as usize % 4]);
    }
    let mut f = Fuzz {
        ns,
        tiny_cookies: input.cookie_mask.is_some(),
        readdir: None,
        max_pages,
        max_inodes,
        model: HashMap::new(),
        generations: HashMap::new(),
        seen: vec![ROOT_INO],
        budget: BYTE_BUDGET,
    };
    f.verify(&"new");
    for op in &input.ops {
        f.apply(op);
        f.verify(op);
    }
    if input.forget_first {
        f.forget_all();
        f.remove_all(ROOT_INO);
    } else {
        f.remove_all(ROOT_INO);
        f.forget_all();
    }
    if let Err(errs) = f.ns.check() {
        panic!("check() failed after teardown:\n  {}", errs.join("\n  "));
    }
    assert_eq!(f.ns.inodes().live(), 1, "inodes left after teardown");
    assert_eq!(f.ns.pages_used(), 0, "pages left after teardown");
    assert_eq!(f.ns.trie().len(), 1, "trie nodes left after teardown");
    assert_eq!(f.ns.attr(ROOT_INO).unwrap().nlink, 2, "root nlink after teardown");
});
