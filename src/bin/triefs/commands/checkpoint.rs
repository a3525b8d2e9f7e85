//! `triefs checkpoint save|restore|list|delete|export` and `triefs crash`:
//! the clients of the daemon's checkpoint ioctl.

use std::io;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use crate::cli::*;
use crate::exit::Exit;

/// One line for a failed request, in the words of what went wrong.
fn explain(mnt: &Path, name: &str, e: &io::Error) -> String {
    let m = mnt.display();
    match e.raw_os_error() {
        Some(libc::ENOTTY) | Some(libc::EINVAL) if name.is_empty() => {
            format!("{m}: not the mount point of a triefs")
        }
        Some(libc::ENOTTY) => format!("{m}: not the mount point of a triefs"),
        Some(libc::ENOENT) if !name.is_empty() && mnt.is_dir() => {
            format!("{m}: no checkpoint named '{name}'")
        }
        Some(libc::EEXIST) => format!("{m}: a checkpoint named '{name}' exists already"),
        Some(libc::EINVAL) => format!(
            "'{name}': not a checkpoint name (1-64 letters, digits and ._-+@:=, not starting \
             with . or -)"
        ),
        Some(libc::ESTALE) => {
            format!("{m}: another export of a checkpoint took over; run this one again")
        }
        Some(libc::EPERM) => {
            format!("{m}: only the mount's owner and root may use its checkpoints")
        }
        Some(libc::ENOSPC) => format!(
            "{m}: no space for checkpoint '{name}' (the mount's nr_inodes= counts every \
             checkpoint's entries; at most 64 checkpoints)"
        ),
        _ => format!("{m}: {e}"),
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `triefs checkpoint ...`.
pub(crate) fn checkpoint_command(cli: CheckpointCli) -> ExitCode {
    let result = match &cli.cmd {
        CheckpointCmd::Save { mountpoint, name } => triefs::checkpoint::save(mountpoint, name)
            .map(|ns| {
                log_time("saved", name, ns);
            })
            .map_err(|e| explain(mountpoint, name, &e)),
        CheckpointCmd::Restore { mountpoint, name } => {
            triefs::checkpoint::restore(mountpoint, name)
                .map(|r| log_time("restored", name, r.locked_ns))
                .map_err(|e| explain(mountpoint, name, &e))
        }
        CheckpointCmd::Delete { mountpoint, name } => {
            triefs::checkpoint::delete(mountpoint, name).map_err(|e| explain(mountpoint, name, &e))
        }
        CheckpointCmd::List { mountpoint } => triefs::checkpoint::list(mountpoint)
            .map(|infos| {
                println!("NAME\tSAVED\tENTRIES\tSHARED\tOWN\tMETADATA");
                for i in infos {
                    let t = UNIX_EPOCH + Duration::new(i.time.0.max(0) as u64, i.time.1);
                    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        i.name,
                        // Without spaces: one column of a tab-separated line.
                        triefs::image::status::format_utc(secs)
                            .trim_end_matches(" UTC")
                            .replace(' ', "T")
                            + "Z",
                        i.entries,
                        human(i.shared_bytes),
                        human(i.own_bytes),
                        human(i.meta_bytes)
                    );
                }
            })
            .map_err(|e| explain(mountpoint, "", &e)),
        CheckpointCmd::Export {
            mountpoint,
            name,
            file,
        } => export(mountpoint, name, file),
    };
    match result {
        Ok(()) => Exit::Ok.into(),
        Err(msg) => {
            eprintln!("triefs: checkpoint: {msg}");
            Exit::Failed.into()
        }
    }
}

/// `triefs crash MOUNTPOINT`.
pub(crate) fn crash_command(cli: CrashCli) -> ExitCode {
    let m = cli.mountpoint.display();
    match triefs::checkpoint::crash(&cli.mountpoint) {
        Ok(c) => {
            println!(
                "crashed {m}: {} inodes reverted, {} lost, {} names dropped, {} names back",
                c.reverted, c.lost, c.names_dropped, c.names_back
            );
            if std::env::var_os("TRIEFS_VERBOSE").is_some_and(|v| v == "1") {
                eprintln!(
                    "triefs: crash in {:.3} ms ({} inodes and {} names invalidated)",
                    c.restore.locked_ns as f64 / 1e6,
                    c.restore.changed,
                    c.restore.entries
                );
            }
            Exit::Ok.into()
        }
        Err(e) => {
            let msg = match e.raw_os_error() {
                Some(libc::EOPNOTSUPP) => format!("{m}: not mounted with -o crash"),
                Some(libc::ENOTTY) | Some(libc::EINVAL) => {
                    format!("{m}: not the mount point of a triefs (or one without triefs crash)")
                }
                Some(libc::EPERM) => format!("{m}: only the mount's owner and root may crash it"),
                _ => format!("{m}: {e}"),
            };
            eprintln!("triefs: crash: {msg}");
            Exit::Failed.into()
        }
    }
}

/// The daemon's time for a change, on stderr when asked for (`-v` is not
/// there: TRIEFS_VERBOSE=1), so scripts get clean stdout.
fn log_time(what: &str, name: &str, ns: u64) {
    if std::env::var_os("TRIEFS_VERBOSE").is_some_and(|v| v == "1") {
        eprintln!(
            "triefs: checkpoint {name} {what} in {:.3} ms",
            ns as f64 / 1e6
        );
    }
}

/// Exports to a file written beside the target and renamed over it, so
/// that a failed export never leaves half an archive under the name.
fn export(mnt: &Path, name: &str, file: &Path) -> Result<(), String> {
    if file.as_os_str() == "-" {
        let out = io::BufWriter::new(io::stdout().lock());
        return triefs::checkpoint::export(mnt, name, out)
            .map(|_| ())
            .map_err(|e| explain(mnt, name, &e));
    }
    // Private (0600) like an image: the archive holds every file's
    // contents whatever its mode in the mount.
    let tmp = triefs::image::temp_path(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let written = (|| {
        let f = triefs::image::create_private(&tmp)
            .map_err(|e| format!("{}: cannot write there: {e}", tmp.display()))?;
        let mut out = io::BufWriter::new(f);
        triefs::checkpoint::export(mnt, name, &mut out).map_err(|e| explain(mnt, name, &e))?;
        let f = out
            .into_inner()
            .map_err(|e| format!("{}: {}", tmp.display(), e.error()))?;
        f.sync_all()
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, file).map_err(|e| format!("{}: {e}", file.display()))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
