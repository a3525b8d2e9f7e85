//! `triefs fault add|list|clear`: the client of the daemon's fault ioctl.

use std::io;
use std::path::Path;
use std::process::ExitCode;

use triefs::fault::Spec;

use crate::cli::*;
use crate::exit::Exit;

/// One line for a failed request, in the words of what went wrong.
fn explain(mnt: &Path, e: &io::Error) -> String {
    let m = mnt.display();
    match e.raw_os_error() {
        Some(libc::ENOTTY) => format!("{m}: not the mount point of a triefs"),
        Some(libc::EOPNOTSUPP) => format!(
            "{m}: this mount takes no fault rules; mount it with -o faults (or -o faults=FILE)"
        ),
        Some(libc::EPERM) => format!("{m}: only the mount's owner and root may change its rules"),
        Some(libc::ENOSPC) => format!(
            "{m}: too many rules (at most {}); clear some first",
            triefs::fault::MAX_RULES
        ),
        Some(libc::ENOENT) if mnt.is_dir() => format!("{m}: no rule with that id"),
        _ => format!("{m}: {e}"),
    }
}

/// The rule's words, with a prefix given as a path through the mount
/// point made relative to the mount's root.
fn rule_words(mnt: &Path, words: &[String]) -> Vec<String> {
    let mut w = words.to_vec();
    if let Some(first) = w.first_mut()
        && let Ok(root) = std::fs::canonicalize(mnt)
        && let Some(rest) = Path::new(first.as_str())
            .strip_prefix(&root)
            .ok()
            .or_else(|| Path::new(first.as_str()).strip_prefix(mnt).ok())
    {
        *first = format!("/{}", rest.display());
    }
    w
}

/// `triefs fault ...`.
pub(crate) fn fault_command(cli: FaultCli) -> ExitCode {
    let result = match &cli.cmd {
        FaultCmd::Add { mountpoint, rule } => {
            Spec::parse(&rule_words(mountpoint, rule)).and_then(|spec| {
                triefs::fault::add(mountpoint, &spec)
                    .map(|id| println!("{id}"))
                    .map_err(|e| explain(mountpoint, &e))
            })
        }
        FaultCmd::List { mountpoint } => triefs::fault::list(mountpoint)
            .map(|text| print!("{text}"))
            .map_err(|e| explain(mountpoint, &e)),
        FaultCmd::Clear { mountpoint, id } => triefs::fault::clear(mountpoint, *id)
            .map(|_| ())
            .map_err(|e| explain(mountpoint, &e)),
    };
    match result {
        Ok(()) => Exit::Ok.into(),
        Err(msg) => {
            eprintln!("triefs: fault: {msg}");
            Exit::Failed.into()
        }
    }
}
