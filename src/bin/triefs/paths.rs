//! `--paths FILE` and `--paths-files FILE`: listings loaded as directories
//! or as listed files, streamed line by line; `--from-tar FILE`: a tar
//! archive loaded as the tree, streamed member by member.

use std::ffi::OsStr;
use std::io::{BufRead, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use log::info;

use triefs::Errno;
use triefs::namespace::{Namespace, PathLoader};

use crate::exit::*;

/// Paths logged one by one (`Adding directory ...`) at info level; the
/// rest of a longer list only at debug level.
pub(crate) const CHATTY_PATHS: u64 = 1000;

/// What the lines of a listing become.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Listing {
    /// `--paths`: each line a directory.
    Dirs,
    /// `--paths-files`: each line `path` or `path<TAB>size`, a listed file.
    Files,
}

impl Listing {
    /// The word for what a line adds, in progress messages.
    fn noun(self) -> &'static str {
        match self {
            Listing::Dirs => "paths",
            Listing::Files => "files",
        }
    }
}

/// Adds every path listed in `source` (a file or `-` for stdin) as a
/// directory, line by line as it arrives, reporting progress at info
/// level every second.
pub(crate) fn load_paths(
    ns: &mut Namespace,
    source: &Path,
    uid: u32,
    gid: u32,
) -> Result<(), Fatal> {
    load_listing(ns, source, Listing::Dirs, uid, gid)
}

/// Adds every line of `source` (a file or `-` for stdin) as a listed file
/// ([`Namespace::add_listed_file`]), as [`load_paths`] adds directories.
pub(crate) fn load_paths_files(
    ns: &mut Namespace,
    source: &Path,
    uid: u32,
    gid: u32,
) -> Result<(), Fatal> {
    load_listing(ns, source, Listing::Files, uid, gid)
}

/// Splits a `--paths-files` line into its path and size: the size is the
/// text after the last tab (decimal digits), 0 when there is no tab. A
/// name that contains a tab is listed with its size after it.
fn split_size(line: &[u8]) -> Result<(&[u8], u64), String> {
    let Some(tab) = line.iter().rposition(|&b| b == b'\t') else {
        return Ok((line, 0));
    };
    let (path, text) = (&line[..tab], &line[tab + 1..]);
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return Err(format!(
            "bad size '{}' after the tab (a decimal number of bytes)",
            String::from_utf8_lossy(&text[..text.len().min(40)])
        ));
    }
    // Only digits: parsing fails only by overflow.
    match std::str::from_utf8(text).ok().and_then(|t| t.parse().ok()) {
        Some(size) => Ok((path, size)),
        None => Err(too_big(text)),
    }
}

/// The message for a size past the largest file size.
fn too_big(text: &[u8]) -> String {
    format!(
        "size {} is larger than a file can be ({} bytes)",
        String::from_utf8_lossy(&text[..text.len().min(40)]),
        i64::MAX
    )
}

/// The one-line reason for a line the namespace refused.
fn refusal(e: Errno, kind: Listing) -> String {
    match e.code() {
        libc::EINVAL => "'..' and NUL are not allowed in paths".to_string(),
        libc::ENAMETOOLONG => "a component is longer than 255 bytes".to_string(),
        libc::ENOSPC => {
            "inode limit reached (raise it with -o nr_inodes=N, 0 for none)".to_string()
        }
        libc::ENOTDIR if kind == Listing::Files => "a parent is a file".to_string(),
        libc::ENOTDIR => "the path, or a parent, is a file".to_string(),
        libc::EISDIR => "the path is a directory".to_string(),
        libc::EEXIST => "the path exists and is not a regular file".to_string(),
        _ => e.to_string(),
    }
}

/// Reads `source` line by line and adds each line as `kind` says; an
/// error names the source and the line number.
fn load_listing(
    ns: &mut Namespace,
    source: &Path,
    kind: Listing,
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
    let noun = kind.noun();
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
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let level = if added < CHATTY_PATHS {
            log::Level::Info
        } else {
            log::Level::Debug
        };
        if added == CHATTY_PATHS {
            info!("more than {CHATTY_PATHS} {noun}: the rest are logged at debug level (-vv)");
        }
        let done = match kind {
            Listing::Dirs => loader
                .add(OsStr::from_bytes(text), level)
                .map_err(|e| refusal(e, kind)),
            Listing::Files => split_size(text).and_then(|(path, size)| {
                loader
                    .add_file(OsStr::from_bytes(path), size, level)
                    .map_err(|e| match e.code() {
                        libc::EFBIG => too_big(size.to_string().as_bytes()),
                        _ => refusal(e, kind),
                    })
            }),
        };
        done.map_err(|why| format!("{shown}:{n}: {why}"))?;
        added += 1;
        if added % 4096 == 0 && std::time::Instant::now() >= next_report {
            next_report += std::time::Duration::from_secs(1);
            match size {
                Some(size) => info!(
                    "{shown}: {added} {noun} added ({}% of the file), {} entries",
                    bytes * 100 / size,
                    loader.namespace().trie().len()
                ),
                None => info!(
                    "{shown}: {added} {noun} added so far, {} entries",
                    loader.namespace().trie().len()
                ),
            }
        }
    }
    drop(loader);
    info!(
        "added {added} {noun} from {shown} in {:.2} s ({} entries)",
        started.elapsed().as_secs_f64(),
        ns.trie().len()
    );
    Ok(())
}

/// Loads the tar archive `source` (a file or `-` for stdin) into `ns`
/// ([`triefs::tar::import`]); an error names the archive and the member
/// (or byte offset) in one line.
pub(crate) fn load_tar(ns: &mut Namespace, source: &Path) -> Result<(), Fatal> {
    let shown = source.display();
    let cannot = |e: std::io::Error| format!("cannot read tar archive {shown}: {e}");
    // Read ahead on a thread: the archive's copies overlap with the load.
    let input = if source == Path::new("-") {
        triefs::tar::Prefetch::new(std::io::stdin())
    } else {
        triefs::tar::Prefetch::new(std::fs::File::open(source).map_err(cannot)?)
    }
    .map_err(cannot)?;
    let started = std::time::Instant::now();
    let sum = triefs::tar::import(ns, input).map_err(|e| format!("tar archive {shown}: {e}"))?;
    info!(
        "loaded tar archive {shown}: {} members, {} bytes of data, {} archive bytes in {:.2} s",
        sum.members,
        sum.data_bytes,
        sum.archive_bytes,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_last_tab() {
        assert_eq!(split_size(b"a/b"), Ok((&b"a/b"[..], 0)));
        assert_eq!(split_size(b"a/b\t42"), Ok((&b"a/b"[..], 42)));
        assert_eq!(split_size(b"a\tb\t007"), Ok((&b"a\tb"[..], 7)));
        let max = u64::MAX.to_string();
        assert_eq!(
            split_size(format!("x\t{max}").as_bytes()),
            Ok((&b"x"[..], u64::MAX))
        );
        for bad in [
            &b"x\t"[..],
            b"x\t-1",
            b"x\t 1",
            b"x\t1k",
            b"x\t1.5",
            b"x\t+3",
        ] {
            let e = split_size(bad).unwrap_err();
            assert!(e.starts_with("bad size '"), "{e}");
        }
        let e = split_size(b"x\t18446744073709551616").unwrap_err();
        assert!(e.contains("larger than a file can be"), "{e}");
    }
}
