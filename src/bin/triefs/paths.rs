//! `--paths FILE`: a list of paths loaded as directories, streamed.

use std::ffi::OsStr;
use std::io::{BufRead, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use log::info;

use triefs::namespace::{Namespace, PathLoader};

use crate::exit::*;

/// Paths logged one by one (`Adding directory ...`) at info level; the
/// rest of a longer list only at debug level.
pub(crate) const CHATTY_PATHS: u64 = 1000;

/// Adds every path listed in `source` (a file or `-` for stdin), line by
/// line as it arrives, reporting progress at info level every second.
pub(crate) fn load_paths(
    ns: &mut Namespace,
    source: &Path,
    uid: u32,
    gid: u32,
) -> Result<(), Fatal> {
    let shown = source.display();
    let cannot_read = |e: std::io::Error| format!("cannot read paths file {shown}: {e}");
    let (input, size): (Box<dyn Read>, Option<u64>) = if source == Path::new("-") {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let f = std::fs::File::open(source).map_err(cannot_read)?;
        let size = f.metadata().ok().map(|m| m.len()).filter(|&n| n > 0);
        (Box::new(f), size)
    };
    let mut input = std::io::BufReader::with_capacity(1 << 20, input);
    let started = std::time::Instant::now();
    let mut next_report = started + std::time::Duration::from_secs(1);
    let (mut added, mut bytes, mut n) = (0u64, 0u64, 0u64);
    let mut line = Vec::new();
    let mut loader = PathLoader::new(ns, uid, gid);
    loop {
        line.clear();
        let got = input.read_until(b'\n', &mut line).map_err(cannot_read)?;
        if got == 0 {
            break;
        }
        n += 1;
        bytes += got as u64;
        let path = line.strip_suffix(b"\n").unwrap_or(&line);
        let path = path.strip_suffix(b"\r").unwrap_or(path);
        if path.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let level = if added < CHATTY_PATHS {
            log::Level::Info
        } else {
            log::Level::Debug
        };
        if added == CHATTY_PATHS {
            info!("more than {CHATTY_PATHS} paths: the rest are logged at debug level (-vv)");
        }
        loader.add(OsStr::from_bytes(path), level).map_err(|e| {
            let why = match e.code() {
                libc::EINVAL => "'..' and NUL are not allowed in paths".to_string(),
                libc::ENAMETOOLONG => "a component is longer than 255 bytes".to_string(),
                libc::ENOSPC => {
                    "inode limit reached (raise it with -o nr_inodes=N, 0 for none)".to_string()
                }
                _ => e.to_string(),
            };
            format!("{shown}:{n}: {why}")
        })?;
        added += 1;
        if added % 4096 == 0 && std::time::Instant::now() >= next_report {
            next_report += std::time::Duration::from_secs(1);
            match size {
                Some(size) => info!(
                    "{shown}: {added} paths added ({}% of the file), {} entries",
                    bytes * 100 / size,
                    loader.namespace().trie().len()
                ),
                None => info!(
                    "{shown}: {added} paths added so far, {} entries",
                    loader.namespace().trie().len()
                ),
            }
        }
    }
    info!(
        "added {added} paths from {shown} in {:.2} s ({} entries)",
        started.elapsed().as_secs_f64(),
        ns.trie().len()
    );
    Ok(())
}
