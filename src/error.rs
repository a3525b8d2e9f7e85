//! The one error type of filesystem operations: an `errno` value, which is
//! what the kernel gets back at the FUSE boundary and what tests compare.

use std::fmt;
use std::num::NonZeroI32;

use crate::trie::TrieError;

/// An `errno` value (positive, never 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(NonZeroI32);

impl Errno {
    /// The error `code` (`libc::ENOENT`, ...); a code of 0, which means
    /// "no error" to libc, becomes `EIO` rather than a silent success.
    pub const fn new(code: i32) -> Errno {
        match NonZeroI32::new(code) {
            Some(c) => Errno(c),
            None => Errno(NonZeroI32::new(libc::EIO).expect("EIO is not 0")),
        }
    }

    /// The raw `errno` value.
    pub const fn code(self) -> i32 {
        self.0.get()
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.code()))
    }
}

impl std::error::Error for Errno {}

impl From<TrieError> for Errno {
    fn from(e: TrieError) -> Self {
        Errno::new(match e {
            TrieError::NotFound => libc::ENOENT,
            TrieError::NotADirectory => libc::ENOTDIR,
            TrieError::Exists => libc::EEXIST,
            TrieError::NameTooLong => libc::ENAMETOOLONG,
            TrieError::InvalidName => libc::EINVAL,
            TrieError::NotEmpty => libc::ENOTEMPTY,
            TrieError::InvalidMove => libc::EINVAL,
            // As rename(2) of a mount's root.
            TrieError::Root => libc::EBUSY,
            TrieError::NoSpace => libc::ENOSPC,
        })
    }
}

/// Names of the `errno` values a rule may inject and a trace prints, with
/// their codes (the platform's: `libc`). `ENOTSUP` is `EOPNOTSUPP`'s alias
/// on Linux, so a trace prints the latter.
const NAMES: &[(&str, i32)] = &[
    ("EPERM", libc::EPERM),
    ("ENOENT", libc::ENOENT),
    ("ESRCH", libc::ESRCH),
    ("EINTR", libc::EINTR),
    ("EIO", libc::EIO),
    ("ENXIO", libc::ENXIO),
    ("E2BIG", libc::E2BIG),
    ("EBADF", libc::EBADF),
    ("EAGAIN", libc::EAGAIN),
    ("ENOMEM", libc::ENOMEM),
    ("EACCES", libc::EACCES),
    ("EFAULT", libc::EFAULT),
    ("EBUSY", libc::EBUSY),
    ("EEXIST", libc::EEXIST),
    ("EXDEV", libc::EXDEV),
    ("ENODEV", libc::ENODEV),
    ("ENOTDIR", libc::ENOTDIR),
    ("EISDIR", libc::EISDIR),
    ("EINVAL", libc::EINVAL),
    ("ENFILE", libc::ENFILE),
    ("EMFILE", libc::EMFILE),
    ("ENOTTY", libc::ENOTTY),
    ("ETXTBSY", libc::ETXTBSY),
    ("EFBIG", libc::EFBIG),
    ("ENOSPC", libc::ENOSPC),
    ("ESPIPE", libc::ESPIPE),
    ("EROFS", libc::EROFS),
    ("EMLINK", libc::EMLINK),
    ("EPIPE", libc::EPIPE),
    ("ERANGE", libc::ERANGE),
    ("EDEADLK", libc::EDEADLK),
    ("ENAMETOOLONG", libc::ENAMETOOLONG),
    ("ENOLCK", libc::ENOLCK),
    ("ENOSYS", libc::ENOSYS),
    ("ENOTEMPTY", libc::ENOTEMPTY),
    ("ELOOP", libc::ELOOP),
    ("ENODATA", libc::ENODATA),
    ("EOVERFLOW", libc::EOVERFLOW),
    ("EILSEQ", libc::EILSEQ),
    ("EOPNOTSUPP", libc::EOPNOTSUPP),
    ("ENOTSUP", libc::ENOTSUP),
    ("EDQUOT", libc::EDQUOT),
    ("ESTALE", libc::ESTALE),
    ("ETIMEDOUT", libc::ETIMEDOUT),
    ("ECANCELED", libc::ECANCELED),
    ("ENOTCONN", libc::ENOTCONN),
    ("ECONNRESET", libc::ECONNRESET),
    ("EBADMSG", libc::EBADMSG),
    ("ENOLINK", libc::ENOLINK),
    // What ext4 and btrfs return for on-disk corruption (EFSCORRUPTED).
    #[cfg(target_os = "linux")]
    ("EUCLEAN", libc::EUCLEAN),
    #[cfg(target_os = "linux")]
    ("EREMOTEIO", libc::EREMOTEIO),
];

impl Errno {
    /// The code named `name` (`"EIO"`, case-insensitive), or a plain
    /// positive number.
    pub fn from_name(name: &str) -> Option<Errno> {
        if let Ok(n) = name.parse::<i32>() {
            return (n > 0 && n < 4096).then(|| Errno::new(n));
        }
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, c)| Errno::new(c))
    }

    /// The code's name (`"EIO"`), if it has one here.
    pub fn name(self) -> Option<&'static str> {
        NAMES
            .iter()
            .find(|&&(_, c)| c == self.code())
            .map(|&(n, _)| n)
    }
}

/// Result of a filesystem operation; `Result<T, E>` for other errors.
pub type Result<T, E = Errno> = std::result::Result<T, E>;

/// `Err` with the error `code`.
pub(crate) fn err<T>(code: i32) -> Result<T> {
    Err(Errno::new(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages() {
        assert_eq!(Errno::new(libc::ENOENT).code(), libc::ENOENT);
        assert_eq!(Errno::new(0).code(), libc::EIO, "0 is not an error");
        assert_eq!(
            Errno::new(libc::ENOENT).to_string(),
            std::io::Error::from_raw_os_error(libc::ENOENT).to_string()
        );
        assert_eq!(Errno::from(TrieError::NotEmpty).code(), libc::ENOTEMPTY);
    }

    #[test]
    fn names() {
        assert_eq!(Errno::from_name("EIO").unwrap().code(), libc::EIO);
        assert_eq!(Errno::from_name("enospc").unwrap().code(), libc::ENOSPC);
        assert_eq!(Errno::from_name("28").unwrap().code(), 28);
        assert!(Errno::from_name("0").is_none() && Errno::from_name("EWHAT").is_none());
        assert_eq!(Errno::new(libc::EDQUOT).name(), Some("EDQUOT"));
        for &(n, c) in NAMES {
            assert_eq!(Errno::from_name(n).unwrap().code(), c, "{n}");
        }
    }
}
