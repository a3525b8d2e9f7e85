//! The kernel's generic mount flags by the names mount(8) gives them:
//! what `-o relatime` or `-o nosuid` means to mount(2), at mount and at
//! remount alike.

/// What one flag option does to mount(2)'s `flags`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flag {
    /// The `MS_*` bit.
    pub bit: libc::c_ulong,
    /// Whether the option sets the bit (`nosuid`) or clears it (`suid`).
    pub set: bool,
}

/// Every flag option mount(8) knows for any filesystem, and its bit.
const TABLE: &[(&str, libc::c_ulong, bool)] = &[
    ("ro", libc::MS_RDONLY, true),
    ("rw", libc::MS_RDONLY, false),
    ("nosuid", libc::MS_NOSUID, true),
    ("suid", libc::MS_NOSUID, false),
    ("nodev", libc::MS_NODEV, true),
    ("dev", libc::MS_NODEV, false),
    ("noexec", libc::MS_NOEXEC, true),
    ("exec", libc::MS_NOEXEC, false),
    ("sync", libc::MS_SYNCHRONOUS, true),
    ("async", libc::MS_SYNCHRONOUS, false),
    ("dirsync", libc::MS_DIRSYNC, true),
    ("noatime", libc::MS_NOATIME, true),
    ("atime", libc::MS_NOATIME, false),
    ("nodiratime", libc::MS_NODIRATIME, true),
    ("diratime", libc::MS_NODIRATIME, false),
    ("relatime", libc::MS_RELATIME, true),
    ("norelatime", libc::MS_RELATIME, false),
    ("strictatime", libc::MS_STRICTATIME, true),
    ("nostrictatime", libc::MS_STRICTATIME, false),
    ("lazytime", libc::MS_LAZYTIME, true),
    ("nolazytime", libc::MS_LAZYTIME, false),
];

/// The flag option called `name`, if it is one.
pub fn flag(name: &str) -> Option<Flag> {
    TABLE
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(_, bit, set)| Flag { bit, set })
}

/// Applies the flag options `names`, in order, to `flags`; names that are
/// not flag options are left out.
pub fn apply<'a>(
    mut flags: libc::c_ulong,
    names: impl IntoIterator<Item = &'a str>,
) -> libc::c_ulong {
    for f in names.into_iter().filter_map(flag) {
        if f.set {
            flags |= f.bit;
        } else {
            flags &= !f.bit;
        }
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_to_bits() {
        assert_eq!(
            flag("relatime"),
            Some(Flag {
                bit: libc::MS_RELATIME,
                set: true
            })
        );
        assert_eq!(flag("size"), None);
        assert_eq!(
            apply(0, ["ro", "nosuid", "relatime", "lazytime"]),
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_RELATIME | libc::MS_LAZYTIME
        );
        // Later options win, as in mount(8).
        assert_eq!(apply(0, ["ro", "rw", "noexec", "exec"]), 0);
        assert_eq!(
            apply(libc::MS_NODIRATIME, ["diratime", "strictatime"]),
            libc::MS_STRICTATIME
        );
        for n in crate::mount::options::ATIME_OPTIONS {
            assert!(flag(n).is_some(), "{n}");
        }
    }
}
