//! How the command ends: a documented exit code, and for failures a
//! one-line message.

use std::process::ExitCode;

/// The exit codes of `triefs` and its subcommands (`--help` and
/// docs/testing.md say the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// 0: done. The mount was unmounted and its image (if any) saved; a
    /// listing or check found nothing to report.
    Ok = 0,
    /// 1: done, with something to report: the final image save failed
    /// (the previous image is kept), `ls-prefix` left paths out
    /// (permission denied, over-long paths), `triefs image` found a failed
    /// save or a daemon that died before saving.
    Reported = 1,
    /// 2: refused or failed: a bad argument or option, a mount point or
    /// image that cannot be used, a mount that failed, serving that failed.
    Failed = 2,
    /// 3: the consistency check at unmount (`TRIEFS_CHECK=1`) failed.
    CheckFailed = 3,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// A one-line error for the user and the exit code ([`Exit::Failed`]
/// unless said).
pub(crate) struct Fatal {
    pub(crate) code: Exit,
    pub(crate) msg: String,
    /// Already reported at error level through the log (which a detached
    /// daemon also sends to syslog): not sent there a second time.
    pub(crate) logged: bool,
}

impl Fatal {
    /// An exit after the serving ended whose cause is already in the log.
    pub(crate) fn after_log(code: Exit, msg: String) -> Fatal {
        Fatal {
            code,
            msg,
            logged: true,
        }
    }
}

impl<T: Into<String>> From<T> for Fatal {
    fn from(s: T) -> Self {
        Fatal {
            code: Exit::Failed,
            msg: s.into(),
            logged: false,
        }
    }
}
