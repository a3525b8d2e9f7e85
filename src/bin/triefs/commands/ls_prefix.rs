//! `triefs ls-prefix`: the leaf paths under a prefix, from the daemon.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use triefs::lsprefix::Item;

use crate::cli::*;
use crate::exit::Exit;

/// `triefs ls-prefix [-U] MOUNTPOINT [PREFIX]`: the leaf paths under
/// PREFIX, as absolute paths inside the mount, sorted unless `-U`.
pub(crate) fn ls_prefix_command(cli: LsPrefixCli) -> ExitCode {
    let unsorted = cli.unsorted;
    let mnt = cli.mountpoint.as_path();
    let prefix = cli.prefix.as_ref().map_or(&b""[..], |p| p.as_bytes());
    let prefix = prefix
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect::<Vec<_>>()
        .join(&b'/');
    let dir = mnt.join(OsStr::from_bytes(&prefix));
    let full = |rel: &OsStr| {
        let mut p = Vec::with_capacity(prefix.len() + rel.len() + 2);
        if !prefix.is_empty() {
            p.push(b'/');
            p.extend_from_slice(&prefix);
        }
        if !rel.is_empty() {
            p.push(b'/');
            p.extend_from_slice(rel.as_bytes());
        }
        if p.is_empty() {
            p.push(b'/');
        }
        p.push(b'\n');
        p
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut all: Vec<Vec<u8>> = Vec::new();
    let mut write_err = None;
    let listed = triefs::lsprefix::list(&dir, |item| {
        let rel = match item {
            Item::Path(rel) => rel,
            Item::TooLong { head, len, dir } => {
                let shown = full(head);
                let shown = String::from_utf8_lossy(&shown[..shown.len() - 1]);
                let max = triefs::lsprefix::MAX_PATH;
                if dir {
                    eprintln!(
                        "triefs: ls-prefix: {shown}... is a directory whose path is {len} bytes long: \
                         what lies under it is over the {max}-byte limit and not listed"
                    );
                } else {
                    eprintln!(
                        "triefs: ls-prefix: {shown}... is {len} bytes long, over the {max}-byte limit: not listed"
                    );
                }
                return;
            }
        };
        if unsorted {
            if write_err.is_none()
                && let Err(e) = out.write_all(&full(rel))
            {
                write_err = Some(e);
            }
        } else {
            all.push(full(rel));
        }
    });
    let listed = match listed {
        Ok(l) => l,
        Err(e) => {
            let why = match e.raw_os_error() {
                Some(libc::ENOTTY) | Some(libc::EINVAL) => {
                    "not a directory of a triefs mount".into()
                }
                _ => e.to_string(),
            };
            eprintln!("triefs: ls-prefix {}: {why}", dir.display());
            return Exit::Failed.into();
        }
    };
    all.sort_unstable();
    for line in &all {
        if write_err.is_some() {
            break;
        }
        if let Err(e) = out.write_all(line) {
            write_err = Some(e);
        }
    }
    if let Some(e) = write_err.or_else(|| out.flush().err()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Exit::Ok.into();
        }
        eprintln!("triefs: ls-prefix: writing the listing: {e}");
        return Exit::Failed.into();
    }
    if listed.skipped {
        eprintln!(
            "triefs: ls-prefix {}: some directories were not listed (permission denied)",
            dir.display()
        );
    }
    if listed.skipped || listed.too_long > 0 {
        return Exit::Reported.into();
    }
    Exit::Ok.into()
}
