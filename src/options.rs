//! Parsing of `-o OPT[,OPT...]` mount options.

use fuser::{MountOption, SessionACL};

/// Mount settings gathered from `-o` options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountOpts {
    /// Options passed to the kernel / fusermount.
    pub mount: Vec<MountOption>,
    /// Who may use the mount (`allow_other`, `allow_root`).
    pub acl: SessionACL,
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
    /// Snapshot image (`image=`), like `--image`.
    pub image: Option<std::path::PathBuf>,
}

impl Default for MountOpts {
    fn default() -> Self {
        MountOpts {
            mount: vec![
                MountOption::FSName("triefs".into()),
                MountOption::Subtype("triefs".into()),
                MountOption::DefaultPermissions,
            ],
            acl: SessionACL::Owner,
            mode: None,
            uid: None,
            gid: None,
            size: None,
            nr_inodes: None,
            paths: None,
            image: None,
        }
    }
}

fn phys_ram() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let (pages, psize) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages > 0 && psize > 0 {
        pages as u64 * psize as u64
    } else {
        1 << 32
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
            let bytes = u128::from(phys_ram()) * u128::from(n) / 100;
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
        if o.mount.contains(&MountOption::AutoUnmount) && o.acl == SessionACL::Owner {
            // fusermount3 needs allow_other or allow_root to watch the mount.
            o.acl = SessionACL::RootAndOwner;
        }
        Ok(o)
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
                self.acl = SessionACL::All;
            }
            "allow_root" => {
                flag(MountOption::RW)?;
                self.acl = SessionACL::RootAndOwner;
            }
            "default_permissions" => {
                flag(MountOption::DefaultPermissions)?;
            }
            "auto_unmount" => set_unique(&mut self.mount, flag(MountOption::AutoUnmount)?),
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
            "mode" => {
                let m = number(key, value()?, 8)?;
                if m > 0o7777 {
                    return Err(format!("invalid value '{m:o}' for mount option mode"));
                }
                self.mode = Some(m);
            }
            "size" => self.size = Some(parse_size(key, value()?, true)?),
            "paths" => self.paths = Some(value()?.into()),
            "image" => self.image = Some(value()?.into()),
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
    fn defaults_have_name_and_permissions() {
        let o = MountOpts::parse::<&str>(&[]).unwrap();
        assert!(o.mount.contains(&MountOption::DefaultPermissions));
        assert!(o.mount.contains(&MountOption::FSName("triefs".into())));
        assert_eq!(o.acl, SessionACL::Owner);
    }

    #[test]
    fn parses_lists_and_repeats() {
        let o = MountOpts::parse(&["ro,allow_other", "fsname=data,mode=1777,uid=5"]).unwrap();
        assert!(o.read_only());
        assert_eq!(o.acl, SessionACL::All);
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
        let ram = u128::from(phys_ram());
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

    #[test]
    fn allow_root() {
        let o = MountOpts::parse(&["allow_root"]).unwrap();
        assert_eq!(o.acl, SessionACL::RootAndOwner);
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
