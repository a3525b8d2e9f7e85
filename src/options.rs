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

/// Parses `N[k|m|g|t]` (binary multiples), or `N%` of RAM when `pct` is
/// allowed, as tmpfs does for `size=` and `nr_inodes=`.
pub fn parse_size(key: &str, val: &str, pct: bool) -> Result<u64, String> {
    let bad = || format!("invalid value '{val}' for mount option {key}");
    let (num, mult) = match val.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() || c == '%' => (&val[..i], Some(c)),
        _ => (val, None),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let shift = match mult.map(|c| c.to_ascii_lowercase()) {
        None => 0,
        Some('k') => 10,
        Some('m') => 20,
        Some('g') => 30,
        Some('t') => 40,
        Some('%') if pct => {
            if n > 100 {
                return Err(bad());
            }
            return Ok(phys_ram() / 100 * n);
        }
        _ => return Err(bad()),
    };
    n.checked_mul(1 << shift).ok_or_else(bad)
}

fn set_unique(v: &mut Vec<MountOption>, opt: MountOption) {
    let same = |o: &MountOption| std::mem::discriminant(o) == std::mem::discriminant(&opt);
    v.retain(|o| !same(o));
    v.push(opt);
}

fn number(key: &str, val: &str, radix: u32) -> Result<u32, String> {
    u32::from_str_radix(val, radix)
        .map_err(|_| format!("invalid value '{val}' for mount option {key}"))
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
        assert!(parse_size("size", "50%", true).unwrap() > 0);
        assert!(parse_size("nr_inodes", "50%", false).is_err());
        assert!(parse_size("size", "101%", true).is_err());
        assert!(parse_size("size", "1x", true).is_err());
        assert!(parse_size("size", "", true).is_err());
        assert!(parse_size("size", "99999999999t", true).is_err());
        let o = MountOpts::parse(&["size=1m,nr_inodes=10k"]).unwrap();
        assert_eq!(o.size, Some(1 << 20));
        assert_eq!(o.nr_inodes, Some(10240));
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
