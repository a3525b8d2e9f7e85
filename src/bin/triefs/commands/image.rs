//! `triefs image info|ls|check`: inspect a snapshot image without mounting.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::ExitCode;

use triefs::image::status::{self, Report};
use triefs::image::{self, ImageError};
use triefs::namespace::Limits;

use crate::cli::*;
use crate::exit::Exit;

/// One line on why an image cannot be loaded, with a hint that fits: for
/// a file that cannot be read, what to check (starting over would only
/// overwrite a file this user may not even read); `--force-new-image` only
/// for a file that was read and found damaged, and only when mounting.
pub(crate) fn image_load_error(path: &Path, e: &ImageError, mounting: bool) -> String {
    let shown = path.display();
    match e {
        ImageError::Io(io) => {
            let hint = match io.raw_os_error() {
                Some(libc::EACCES) | Some(libc::EPERM) => {
                    let euid = triefs::sys::euid();
                    format!("; check its permissions (triefs runs as uid {euid})")
                }
                _ => String::new(),
            };
            format!("image {shown}: cannot read it: {io}{hint}")
        }
        _ if mounting => format!(
            "image {shown}: {e} (the file is left untouched; --force-new-image starts empty and \
             overwrites it)"
        ),
        _ => format!("image {shown}: {e}"),
    }
}

/// `triefs image info|ls|check FILE [PREFIX]`.
pub(crate) fn image_command(cli: ImageCli) -> ExitCode {
    let path = match &cli.cmd {
        ImageCmd::Info { file } | ImageCmd::Ls { file, .. } | ImageCmd::Check { file } => {
            file.clone()
        }
    };
    let path = path.as_path();
    let shown = path.display();
    // What the status file says about the last save (see triefs::image::status); one
    // that cannot be read is a problem to report, not a reason to refuse
    // the image itself.
    let (problem, lines) = match status::read(path) {
        Ok(report) => describe_report(report.as_ref()),
        Err(e) => {
            let p = format!("cannot read its save status: {e}");
            (Some(p.clone()), vec![format!("last save: {p}")])
        }
    };
    let unlimited = Limits::from_options(Some(0), Some(0));
    let (ns, sum) = match image::load_from_path(path, unlimited) {
        Ok(x) => x,
        Err(e) => {
            let also = problem
                .or_else(|| lines.first().cloned())
                .map_or(String::new(), |p| format!(" ({p})"));
            eprintln!("triefs: {}{also}", image_load_error(path, &e, false));
            return Exit::Failed.into();
        }
    };
    match cli.cmd {
        ImageCmd::Info { .. } => {
            println!("format version: {}", sum.version);
            println!("inodes: {}", sum.inodes);
            println!("entries: {}", sum.entries);
            println!("data bytes: {}", sum.data_bytes);
            println!("checkpoints: {}", sum.checkpoints);
            for c in ns.checkpoint_infos() {
                let when = status::format_utc(u64::try_from(c.time.0).unwrap_or(0));
                println!("checkpoint {}: saved {when}, {} entries", c.name, c.entries);
            }
            for l in lines {
                println!("{l}");
            }
        }
        // Loading checked every tree, the checkpoints' too.
        ImageCmd::Check { .. } if problem.is_none() => match sum.checkpoints {
            0 => println!("{shown}: ok"),
            n => println!("{shown}: ok (the live tree and {n} checkpoints)"),
        },
        ImageCmd::Check { .. } => {}
        ImageCmd::Ls { prefix, .. } => {
            let node = match &prefix {
                None => Some(ns.trie().root()),
                Some(p) => ns.trie().lookup(p),
            };
            let Some(node) = node else {
                let shown = prefix.map_or("/".into(), |p| p.to_string_lossy().into_owned());
                eprintln!("triefs: {shown}: no such path in the image");
                return Exit::Failed.into();
            };
            let mut out = std::io::stdout().lock();
            for leaf in ns.trie().leaves_under(node) {
                let _ = out.write_all(leaf.as_bytes());
                let _ = out.write_all(b"\n");
            }
            // The listing is what was asked for; a stale image is only
            // worth a warning here.
            if let Some(p) = problem {
                eprintln!("triefs: warning: image {shown}: {p}");
            }
            return Exit::Ok.into();
        }
    }
    match problem {
        Some(p) => {
            eprintln!("triefs: image {shown}: {p}");
            Exit::Reported.into()
        }
        None => Exit::Ok.into(),
    }
}

/// Turns a save status into the problem to report (if any) and the lines
/// `triefs image info` prints.
pub(crate) fn describe_report(report: Option<&Report>) -> (Option<String>, Vec<String>) {
    let when = status::format_utc;
    let holds = |st: &status::Status| match st.saved {
        Some(t) => format!("the file holds the save of {}", when(t)),
        None => "the file holds what was there before that mount".to_string(),
    };
    match report {
        None => (None, Vec::new()),
        Some(Report::Serving(st)) => {
            let served = format!(
                "served by: triefs pid {} since {}",
                st.pid,
                when(st.started)
            );
            let (problem, last) = match (&st.failed, st.saved) {
                (Some((t, why)), _) => {
                    let p = format!(
                        "the last save, at {}, FAILED: {why}; {} (the daemon retries at the \
                         next save)",
                        when(*t),
                        holds(st)
                    );
                    (Some(p.clone()), format!("last save: {p}"))
                }
                (None, Some(t)) => (None, format!("last save: {}", when(t))),
                (None, None) => (None, "last save: none yet".to_string()),
            };
            (problem, vec![served, last])
        }
        Some(Report::SaveFailed(st)) => {
            let (t, why) = st.failed.clone().unwrap_or_default();
            let p = format!(
                "the last save, at {}, FAILED: {why}; {}",
                when(t),
                holds(st)
            );
            (Some(p.clone()), vec![format!("last save: {p}")])
        }
        Some(Report::Died(st)) => {
            let p = format!(
                "the daemon that served it (pid {}) ended without its final save; {}",
                st.pid,
                holds(st)
            );
            (Some(p.clone()), vec![format!("last save: {p}")])
        }
    }
}
