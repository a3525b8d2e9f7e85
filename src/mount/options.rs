//! Parsing of `-o OPT[,OPT...]` mount options.

use fuser::{MountOption, SessionACL};

/// Who may use the mount, as asked for with `-o`.
///
/// FUSE lets the kernel decide this, for every request and for everything
/// it caches: a mount without `allow_other` admits only processes whose
/// user and group IDs (real, effective and saved) all equal the mounting
/// user's. A check inside the daemon would be bypassed by cached entries,
/// attributes, pages and by opens that never reach it, so every choice
/// here maps onto the kernel's two modes (see [`MountOpts::session_acl`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Access {
    /// Nothing asked: a root mount admits every user, like tmpfs (the mode
    /// bits apply: `default_permissions` is always on); any other mount
    /// only its owner, FUSE's default.
    #[default]
    Default,
    /// `owner_only`: only the mounting user, also for root mounts.
    OwnerOnly,
    /// `allow_root`: the mounting user and root.
    AllowRoot,
    /// `allow_other`: every user.
    AllowOther,
}

impl Access {
    fn name(self) -> &'static str {
        match self {
            Access::Default => "(default)",
            Access::OwnerOnly => "owner_only",
            Access::AllowRoot => "allow_root",
            Access::AllowOther => "allow_other",
        }
    }
}

/// The atime options fuser has no [`MountOption`] for (`atime` and
/// `noatime` it has): kept by name in [`MountOpts::kernel_flags`] and
/// given to mount(2) as flags.
pub const ATIME_OPTIONS: &[&str] = &[
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "lazytime",
    "nolazytime",
    "diratime",
    "nodiratime",
];

/// Mount settings gathered from `-o` options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountOpts {
    /// Options passed to the kernel / fusermount.
    pub mount: Vec<MountOption>,
    /// Who may use the mount (`owner_only`, `allow_root`, `allow_other`);
    /// [`MountOpts::session_acl`] turns it into what the kernel enforces.
    pub access: Access,
    /// Root directory permission bits (`mode=`).
    pub mode: Option<u32>,
    /// Root directory owner (`uid=`).
    pub uid: Option<u32>,
    /// Root directory group (`gid=`).
    pub gid: Option<u32>,
    /// Data limit in bytes (`size=`); `Some(0)` means unlimited.
    pub size: Option<u64>,
    /// Inode limit (`nr_inodes=`); `Some(0)` means unlimited.
    pub nr_inodes: Option<u64>,
    /// Paths file to load (`paths=`), like `--paths`.
    pub paths: Option<std::path::PathBuf>,
    /// Listing of files to load (`paths_files=`), like `--paths-files`.
    pub paths_files: Option<std::path::PathBuf>,
    /// Snapshot image (`image=`), like `--image`.
    pub image: Option<std::path::PathBuf>,
    /// Tar archive to load (`tar=`), like `--from-tar`.
    pub tar: Option<std::path::PathBuf>,
    /// The [`ATIME_OPTIONS`] given, in order: mount(2) flags by name.
    pub kernel_flags: Vec<&'static str>,
    /// `strict_open`: have the kernel send every open to the daemon, so
    /// that `chattr` flags refuse an open for writing as on tmpfs (at a
    /// round trip per open and one per close).
    pub strict_open: bool,
    /// `faults` or `faults=FILE`: the owner may add fault rules (`triefs
    /// fault`); `Some(path)` loads rules from a file at mount.
    pub faults: Option<Option<std::path::PathBuf>>,
    /// `trace_uncached`: the kernel caches nothing, so `triefs trace` sees
    /// every request.
    pub trace_uncached: bool,
    /// `crash`: track durable state for `triefs crash` (fsync, fsyncdir
    /// record sync points; costs memory for what changed since).
    pub crash: bool,
}

impl Default for MountOpts {
    fn default() -> Self {
        MountOpts {
            mount: vec![
                MountOption::FSName("triefs".into()),
                MountOption::Subtype("triefs".into()),
                MountOption::DefaultPermissions,
            ],
            access: Access::Default,
            mode: None,
            uid: None,
            gid: None,
            size: None,
            nr_inodes: None,
            paths: None,
            paths_files: None,
            image: None,
            tar: None,
            kernel_flags: Vec::new(),
            strict_open: false,
            faults: None,
            trace_uncached: false,
            crash: false,
        }
    }
}

/// Parses an unsigned number the way the kernel's `simple_strtoull` does
/// with base 0: `0x` (or `0X`) followed by a hex digit starts hex, a
/// leading `0` octal, anything else decimal; digits stop at the first
/// character that is not one of the base. Returns the value (`None` on
/// overflow) and the rest of the string.
fn strtoull_base0(s: &str) -> (Option<u64>, &str) {
    let b = s.as_bytes();
    let (radix, start) = match b {
        [b'0', b'x' | b'X', c, ..] if c.is_ascii_hexdigit() => (16, 2),
        [b'0', ..] => (8, 0),
        _ => (10, 0),
    };
    let digits = b[start..]
        .iter()
        .take_while(|c| char::from(**c).is_digit(radix))
        .count();
    let end = start + digits;
    // The digits are ASCII, so `end` is a char boundary.
    let value = u64::from_str_radix(&s[start..end], radix).ok();
    (value, &s[end..])
}

/// Parses `size=` and `nr_inodes=` exactly as tmpfs does (the kernel's
/// `memparse`): a number in any base `0x`/`0`/decimal, an optional binary
/// suffix `k`, `m`, `g`, `t`, `p` or `e` (either case), and for `size=`
/// (`pct`) an optional `%` of RAM, which may be above 100 (tmpfs does not
/// reserve the memory). Where the kernel would silently wrap around, this
/// is an error instead.
pub fn parse_size(key: &str, val: &str, pct: bool) -> Result<u64, String> {
    let bad = || format!("invalid value '{val}' for mount option {key}");
    let (n, rest) = strtoull_base0(val);
    // An empty string has no digits at all; "0x" alone parses as octal 0
    // followed by garbage, as in the kernel.
    if rest.len() == val.len() {
        return Err(bad());
    }
    let n = n.ok_or_else(|| format!("value '{val}' for mount option {key} is too large"))?;
    let (shift, rest) = match rest.as_bytes().first().map(u8::to_ascii_lowercase) {
        Some(b'k') => (10, &rest[1..]),
        Some(b'm') => (20, &rest[1..]),
        Some(b'g') => (30, &rest[1..]),
        Some(b't') => (40, &rest[1..]),
        Some(b'p') => (50, &rest[1..]),
        Some(b'e') => (60, &rest[1..]),
        _ => (0, rest),
    };
    let too_large = || format!("value '{val}' for mount option {key} is too large");
    let n = n.checked_mul(1u64 << shift).ok_or_else(too_large)?;
    let n = match rest {
        "" => n,
        "%" if pct => {
            // A percentage of RAM: computed in 128 bits, so 200% (or
            // 1k%) of a large memory cannot overflow before the bound.
            let bytes = u128::from(crate::sys::phys_ram()) * u128::from(n) / 100;
            u64::try_from(bytes).map_err(|_| too_large())?
        }
        _ => return Err(bad()),
    };
    // tmpfs refuses inode counts whose bookkeeping would overflow
    // (ULONG_MAX / BOGO_INODE_SIZE).
    if !pct && n > u64::MAX / 1024 {
        return Err(too_large());
    }
    Ok(n)
}

/// Why `allow_root` is refused for a mount by a user other than root.
pub const ALLOW_ROOT_UNPRIVILEGED: &str = "-o allow_root is not available to a non-root user: \
the kernel can let root in only by letting every user in (allow_other), and its caches would \
then serve them without asking triefs; share the mount with -o allow_other (needs \
user_allow_other in /etc/fuse.conf), or mount as root";

fn set_unique(v: &mut Vec<MountOption>, opt: MountOption) {
    let same = |o: &MountOption| std::mem::discriminant(o) == std::mem::discriminant(&opt);
    v.retain(|o| !same(o));
    v.push(opt);
}

/// Parses a number of mount option `key`. Decimal options (`uid=`,
/// `gid=`) are read as tmpfs reads them (`kstrtouint` with base 0: an
/// optional `+`, then `0x` hex, `0` octal or decimal); `mode=` is octal.
/// An id of 4294967295 is `(uid_t)-1`, "no id" to chown(2), and tmpfs
/// refuses it, so it is refused here too.
fn number(key: &str, val: &str, radix: u32) -> Result<u32, String> {
    let bad = || format!("invalid value '{val}' for mount option {key}");
    let n = if radix == 10 {
        let digits = val.strip_prefix('+').unwrap_or(val);
        let (n, rest) = strtoull_base0(digits);
        if digits.is_empty() || !rest.is_empty() {
            return Err(bad());
        }
        n.and_then(|n| u32::try_from(n).ok()).ok_or_else(bad)?
    } else {
        // from_str_radix takes one leading '+', as kstrtouint does.
        u32::from_str_radix(val, radix).map_err(|_| bad())?
    };
    if matches!(key, "uid" | "gid") && n == u32::MAX {
        return Err(format!(
            "invalid value '{val}' for mount option {key}: 4294967295 is (uid_t)-1, not an id"
        ));
    }
    Ok(n)
}

impl MountOpts {
    /// Parses a list of `-o` arguments, each a comma-separated list.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<MountOpts, String> {
        let mut o = MountOpts::default();
        for arg in args {
            for opt in arg.as_ref().split(',').filter(|s| !s.is_empty()) {
                o.apply(opt)?;
            }
        }
        Ok(o)
    }

    /// Records an access option; two different ones contradict each other
    /// (libfuse refuses `allow_other` with `allow_root` for the same reason).
    fn set_access(&mut self, a: Access) -> Result<(), String> {
        if self.access != Access::Default && self.access != a {
            return Err(format!(
                "mount options {} and {} contradict each other; give one",
                self.access.name(),
                a.name()
            ));
        }
        self.access = a;
        Ok(())
    }

    /// What the kernel is told for a mount by root (`mounter_is_root`) or
    /// by another user: `All` (the kernel's `allow_other`) or `Owner`.
    /// Never `RootAndOwner`: that is `allow_other` in the kernel plus a
    /// check in the daemon, and the kernel's caches answer other users
    /// without asking the daemon. So `allow_root` is `Owner` for root,
    /// whose mount's owner is root already, and refused for anyone else.
    pub fn session_acl(&self, mounter_is_root: bool) -> Result<SessionACL, String> {
        match (self.access, mounter_is_root) {
            (Access::AllowOther, _) | (Access::Default, true) => Ok(SessionACL::All),
            (Access::OwnerOnly, _) | (Access::AllowRoot, true) | (Access::Default, false) => {
                Ok(SessionACL::Owner)
            }
            (Access::AllowRoot, false) => Err(ALLOW_ROOT_UNPRIVILEGED.to_string()),
        }
    }

    /// Whether `auto_unmount` was asked for.
    pub fn auto_unmount(&self) -> bool {
        self.mount.contains(&MountOption::AutoUnmount)
    }

    fn apply(&mut self, opt: &str) -> Result<(), String> {
        let (key, val) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        let flag = |m: MountOption| -> Result<MountOption, String> {
            match val {
                None => Ok(m),
                Some(_) => Err(format!("mount option {key} takes no value")),
            }
        };
        let value = || val.ok_or_else(|| format!("mount option {key} needs a value ({key}=...)"));
        match key {
            "ro" => set_unique(&mut self.mount, flag(MountOption::RO)?),
            "rw" => set_unique(&mut self.mount, flag(MountOption::RW)?),
            "allow_other" => {
                flag(MountOption::RW)?;
                self.set_access(Access::AllowOther)?;
            }
            "allow_root" => {
                flag(MountOption::RW)?;
                self.set_access(Access::AllowRoot)?;
            }
            "owner_only" => {
                flag(MountOption::RW)?;
                self.set_access(Access::OwnerOnly)?;
            }
            "default_permissions" => {
                flag(MountOption::DefaultPermissions)?;
            }
            "auto_unmount" => set_unique(&mut self.mount, flag(MountOption::AutoUnmount)?),
            "strict_open" => {
                flag(MountOption::RW)?;
                self.strict_open = true;
            }
            "faults" => self.faults = Some(val.map(std::path::PathBuf::from)),
            "trace_uncached" => {
                flag(MountOption::RW)?;
                self.trace_uncached = true;
            }
            "crash" => {
                flag(MountOption::RW)?;
                self.crash = true;
            }
            "fsname" => set_unique(&mut self.mount, MountOption::FSName(value()?.to_string())),
            "subtype" => set_unique(&mut self.mount, MountOption::Subtype(value()?.to_string())),
            "dev" => self.mount.push(flag(MountOption::Dev)?),
            "nodev" => self.mount.push(flag(MountOption::NoDev)?),
            "suid" => self.mount.push(flag(MountOption::Suid)?),
            "nosuid" => self.mount.push(flag(MountOption::NoSuid)?),
            "exec" => self.mount.push(flag(MountOption::Exec)?),
            "noexec" => self.mount.push(flag(MountOption::NoExec)?),
            "atime" => self.mount.push(flag(MountOption::Atime)?),
            "noatime" => self.mount.push(flag(MountOption::NoAtime)?),
            "sync" => self.mount.push(flag(MountOption::Sync)?),
            "async" => self.mount.push(flag(MountOption::Async)?),
            "dirsync" => self.mount.push(flag(MountOption::DirSync)?),
            _ if ATIME_OPTIONS.contains(&key) => {
                flag(MountOption::RW)?;
                if let Some(name) = ATIME_OPTIONS.iter().find(|n| **n == key) {
                    self.kernel_flags.push(name);
                }
            }
            "mode" => {
                let m = number(key, value()?, 8)?;
                if m > 0o7777 {
                    return Err(format!("invalid value '{m:o}' for mount option mode"));
                }
                self.mode = Some(m);
            }
            "size" => self.size = Some(parse_size(key, value()?, true)?),
            "paths" => self.paths = Some(value()?.into()),
            "paths_files" => self.paths_files = Some(value()?.into()),
            "image" => self.image = Some(value()?.into()),
            "tar" => self.tar = Some(value()?.into()),
            "nr_inodes" => self.nr_inodes = Some(parse_size(key, value()?, false)?),
            "uid" => self.uid = Some(number(key, value()?, 10)?),
            "gid" => self.gid = Some(number(key, value()?, 10)?),
            _ => return Err(format!("unknown mount option '{opt}'")),
        }
        Ok(())
    }

    /// Whether the mount is read-only.
    pub fn read_only(&self) -> bool {
        self.mount.contains(&MountOption::RO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_options_name_their_files() {
        let o = MountOpts::parse(&["paths=/a b,paths_files=/c", "image=/i"]).unwrap();
        assert_eq!(o.paths, Some("/a b".into()));
        assert_eq!(o.paths_files, Some("/c".into()));
        assert_eq!(o.image, Some("/i".into()));
        assert!(MountOpts::parse(&["paths_files"]).is_err());
        let f = MountOpts::parse(&["faults", "trace_uncached"]).unwrap();
        assert_eq!(f.faults, Some(None));
        assert!(f.trace_uncached);
        let f = MountOpts::parse(&["faults=/r"]).unwrap();
        assert_eq!(f.faults, Some(Some("/r".into())));
        assert!(MountOpts::parse(&["trace_uncached=1"]).is_err());
        let t = MountOpts::parse(&["tar=/t.tar"]).unwrap();
        assert_eq!(t.tar, Some("/t.tar".into()));
        assert!(MountOpts::parse(&["tar"]).is_err());
    }

    #[test]
    fn crash_is_a_flag() {
        assert!(!MountOpts::parse::<&str>(&[]).unwrap().crash);
        let o = MountOpts::parse(&["size=1m,crash"]).unwrap();
        assert!(o.crash);
        assert!(MountOpts::parse(&["crash=1"]).is_err());
    }

    #[test]
    fn defaults_have_name_and_permissions() {
        let o = MountOpts::parse::<&str>(&[]).unwrap();
        assert!(o.mount.contains(&MountOption::DefaultPermissions));
        assert!(o.mount.contains(&MountOption::FSName("triefs".into())));
        assert_eq!(o.access, Access::Default);
    }

    #[test]
    fn parses_lists_and_repeats() {
        let o = MountOpts::parse(&["ro,allow_other", "fsname=data,mode=1777,uid=5"]).unwrap();
        assert!(o.read_only());
        assert_eq!(o.access, Access::AllowOther);
        assert!(o.mount.contains(&MountOption::FSName("data".into())));
        assert!(!o.mount.contains(&MountOption::FSName("triefs".into())));
        assert_eq!(o.mode, Some(0o1777));
        assert_eq!(o.uid, Some(5));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("size", "4096", true), Ok(4096));
        assert_eq!(parse_size("size", "2k", true), Ok(2048));
        assert_eq!(parse_size("size", "3M", true), Ok(3 << 20));
        assert_eq!(parse_size("size", "1g", true), Ok(1 << 30));
        assert_eq!(parse_size("size", "1p", true), Ok(1 << 50));
        assert_eq!(parse_size("size", "1E", true), Ok(1 << 60));
        assert!(parse_size("size", "50%", true).unwrap() > 0);
        assert!(parse_size("nr_inodes", "50%", false).is_err());
        assert!(parse_size("size", "1x", true).is_err());
        assert!(parse_size("size", "1kb", true).is_err());
        assert!(parse_size("size", "", true).is_err());
        assert!(parse_size("size", "+5", true).is_err());
        assert!(parse_size("size", "-5", true).is_err());
        assert!(parse_size("size", "99999999999t", true).is_err());
        assert!(parse_size("size", "99999999999999999999", true).is_err());
        let o = MountOpts::parse(&["size=1m,nr_inodes=10k"]).unwrap();
        assert_eq!(o.size, Some(1 << 20));
        assert_eq!(o.nr_inodes, Some(10240));
    }

    /// tmpfs reads numbers with the kernel's base detection.
    #[test]
    fn sizes_in_any_base_as_tmpfs() {
        assert_eq!(parse_size("size", "0x100000", true), Ok(1 << 20));
        assert_eq!(parse_size("size", "0X10k", true), Ok(16 << 10));
        assert_eq!(parse_size("size", "010", true), Ok(8));
        assert_eq!(parse_size("size", "0", true), Ok(0));
        assert!(parse_size("size", "09", true).is_err());
        assert!(parse_size("size", "0x", true).is_err());
    }

    /// tmpfs takes any percentage of RAM, also above 100.
    #[test]
    fn percentages_above_100() {
        let ram = u128::from(crate::sys::phys_ram());
        let p200 = parse_size("size", "200%", true).unwrap();
        assert_eq!(u128::from(p200), ram * 2);
        assert_eq!(
            u128::from(parse_size("size", "1k%", true).unwrap()),
            ram * 1024 / 100
        );
        assert_eq!(parse_size("size", "0%", true), Ok(0));
        // Past u64 is an error, not a wrapped-around limit.
        assert!(parse_size("size", "1e%", true).is_err());
    }

    #[test]
    fn inode_counts_bounded_as_tmpfs() {
        assert_eq!(
            parse_size("nr_inodes", "18014398509481983", false),
            Ok(u64::MAX / 1024)
        );
        assert!(parse_size("nr_inodes", "18014398509481984", false).is_err());
        assert!(parse_size("nr_inodes", "1e", false).is_err());
        assert_eq!(parse_size("nr_inodes", "1p", false), Ok(1 << 50));
    }

    #[test]
    fn ids_as_tmpfs() {
        let id = |v: &str| MountOpts::parse(&[format!("uid={v}")]).map(|o| o.uid);
        assert_eq!(id("4294967294"), Ok(Some(4294967294)));
        assert_eq!(id("0x10"), Ok(Some(16)));
        assert_eq!(id("010"), Ok(Some(8)));
        assert_eq!(id("+5"), Ok(Some(5)));
        for bad in ["4294967295", "4294967296", "-1", "", "+", "5x"] {
            assert!(id(bad).is_err(), "uid={bad} accepted");
        }
        let e = MountOpts::parse(&["gid=4294967295"]).unwrap_err();
        assert!(e.contains("gid") && e.contains("4294967295"), "{e}");
    }

    /// What the kernel enforces for each access option, for root and for
    /// other users. `RootAndOwner` never comes out: it would be the
    /// kernel's `allow_other` with a check the kernel's caches bypass.
    #[test]
    fn access_maps_onto_what_the_kernel_enforces() {
        use SessionACL::{All, Owner};
        let acl = |o: &str, root: bool| MountOpts::parse(&[o]).unwrap().session_acl(root);
        // Root mounts are shared like tmpfs unless asked otherwise.
        assert_eq!(acl("", true), Ok(All));
        assert_eq!(acl("owner_only", true), Ok(Owner));
        assert_eq!(acl("allow_root", true), Ok(Owner));
        assert_eq!(acl("allow_other", true), Ok(All));
        // Other users' mounts stay private by default.
        assert_eq!(acl("", false), Ok(Owner));
        assert_eq!(acl("owner_only", false), Ok(Owner));
        assert_eq!(acl("allow_other", false), Ok(All));
        let err = acl("allow_root", false).unwrap_err();
        assert!(err.contains("allow_root") && err.contains("user_allow_other"));
        assert!(!err.contains('\n'));
        // auto_unmount changes nothing about access.
        for root in [true, false] {
            for o in ["", "owner_only", "allow_other", "allow_root"] {
                let with = MountOpts::parse(&[o, "auto_unmount"]).unwrap();
                assert!(with.auto_unmount());
                assert_eq!(with.session_acl(root), acl(o, root), "{o} root={root}");
            }
        }
    }

    #[test]
    fn contradicting_access_options_are_errors() {
        for (a, b) in [
            ("owner_only", "allow_other"),
            ("allow_root", "allow_other"),
            ("owner_only", "allow_root"),
        ] {
            let err = MountOpts::parse(&[a, b]).unwrap_err();
            assert!(err.contains(a) && err.contains(b), "{err}");
            assert!(MountOpts::parse(&[&format!("{b},{a}")]).is_err());
        }
        // Repeating one is fine.
        let o = MountOpts::parse(&["owner_only", "owner_only"]).unwrap();
        assert_eq!(o.access, Access::OwnerOnly);
        assert!(MountOpts::parse(&["owner_only=1"]).is_err());
    }

    #[test]
    fn atime_options_kept_in_order() {
        let o = MountOpts::parse(&["relatime,noatime,strictatime", "lazytime,nodiratime"]).unwrap();
        assert_eq!(
            o.kernel_flags,
            ["relatime", "strictatime", "lazytime", "nodiratime"]
        );
        assert!(o.mount.contains(&MountOption::NoAtime));
        for n in ATIME_OPTIONS {
            assert!(MountOpts::parse(&[format!("{n}=1")]).is_err(), "{n}=1");
        }
    }

    #[test]
    fn unknown_and_malformed_are_errors() {
        assert!(MountOpts::parse(&["bogus"]).unwrap_err().contains("bogus"));
        assert!(MountOpts::parse(&["ro=1"]).is_err());
        assert!(MountOpts::parse(&["fsname"]).is_err());
        assert!(MountOpts::parse(&["mode=999"]).is_err());
        assert!(MountOpts::parse(&["mode=17777"]).is_err());
        assert!(MountOpts::parse(&["uid=x"]).is_err());
    }
}
