//! Reading /proc/self/mountinfo: is a path a mount point?

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
    }
}
