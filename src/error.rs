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
}
