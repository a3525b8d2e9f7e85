//! Reading /proc/self/mountinfo: is a path a mount point, and who
//! mounted a FUSE mount?

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Is `path` (canonical) listed as a mount point in /proc/self/mountinfo?
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.as_os_str().as_bytes();
    info.split(|&b| b == b'\n').any(|line| {
        line.split(|&b| b == b' ')
            .nth(4)
            .is_some_and(|mp| unescape_octal(mp) == want)
    })
}

/// Who mounted the FUSE mount listed at `path` (absolute, as listed):
/// the `user_id=` of the topmost such mount. Used to tell a user how to
/// clear a dead mount: fusermount3 lets only that user (or root) unmount.
pub fn fuse_owner(path: &Path) -> Option<u32> {
    let info = std::fs::read("/proc/self/mountinfo").ok()?;
    let want = path.as_os_str().as_bytes();
    // The last matching line is the topmost mount there.
    info.rsplit(|&b| b == b'\n').find_map(|line| {
        let (head, tail) = split_once(line, b" - ")?;
        let mp = head.split(|&b| b == b' ').nth(4)?;
        let mut t = tail.split(|&b| b == b' ');
        let fstype = t.next()?;
        let super_opts = t.nth(1)?;
        (unescape_octal(mp) == want && fstype.starts_with(b"fuse")).then(|| {
            super_opts
                .split(|&b| b == b',')
                .find_map(|o| o.strip_prefix(b"user_id="))
                .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
        })?
    })
}

/// What /proc/self/mountinfo says of one mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The filesystem type (`fuse.triefs`, `tmpfs`).
    pub fstype: String,
    /// The per-mount options (`rw`, `nosuid`, `relatime`).
    pub mount_opts: Vec<String>,
    /// The superblock's options (`user_id=0`, `allow_other`).
    pub super_opts: Vec<String>,
    /// The device number as `major:minor` (`0:39`): also the name of the
    /// mount's backing device info in `/sys/class/bdi`.
    pub device: String,
}

/// The topmost mount whose mount point is `path` (absolute, as listed).
pub fn mount_at(path: &Path) -> Option<Mount> {
    let info = std::fs::read("/proc/self/mountinfo").ok()?;
    let want = path.as_os_str().as_bytes();
    let words = |b: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(b)
            .split(',')
            .map(str::to_string)
            .collect()
    };
    info.rsplit(|&b| b == b'\n').find_map(|line| {
        let (head, tail) = split_once(line, b" - ")?;
        let mut h = head.split(|&b| b == b' ');
        let device = h.nth(2)?;
        let mp = h.nth(1)?;
        let mount_opts = h.next()?;
        let mut t = tail.split(|&b| b == b' ');
        let fstype = t.next()?;
        let super_opts = t.nth(1)?;
        (unescape_octal(mp) == want).then(|| Mount {
            fstype: String::from_utf8_lossy(fstype).into_owned(),
            mount_opts: words(mount_opts),
            super_opts: words(super_opts),
            device: String::from_utf8_lossy(device).into_owned(),
        })
    })
}

fn split_once<'a>(s: &'a [u8], sep: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let i = s.windows(sep.len()).position(|w| w == sep)?;
    Some((&s[..i], &s[i + sep.len()..]))
}

fn unescape_octal(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && i + 3 < field.len()
            && let Ok(v) = u8::from_str_radix(&String::from_utf8_lossy(&field[i + 1..i + 4]), 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_escapes() {
        assert_eq!(unescape_octal(br"/a\040b\011c"), b"/a b\tc");
        assert_eq!(unescape_octal(br"/end\134"), b"/end\\");
        assert_eq!(unescape_octal(br"/short\04"), br"/short\04");
    }

    #[test]
    fn root_is_a_mount_point() {
        assert!(is_mount_point(Path::new("/")));
        assert!(!is_mount_point(Path::new("/definitely/not/mounted")));
        let root = mount_at(Path::new("/")).expect("/ is mounted");
        let (major, minor) = root.device.split_once(':').expect("major:minor");
        assert!(
            major.parse::<u32>().is_ok() && minor.parse::<u32>().is_ok(),
            "{}",
            root.device
        );
        assert!(!root.fstype.is_empty());
        assert!(root.mount_opts.iter().any(|o| o == "rw" || o == "ro"));
        assert_eq!(mount_at(Path::new("/definitely/not/mounted")), None);
    }
}
