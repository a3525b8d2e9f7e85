//! Image files: atomic, durable, private saves and loading from a path.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::*;
use crate::namespace::Namespace;
use crate::namespace::limits::Limits;

/// Saves `ns` to `path` atomically: temporary file, fsync, rename, fsync
/// of the directory. On any error the old image is left as it was.
pub fn save_to_path(ns: &Namespace, path: &Path) -> Result<Summary, io::Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = temp_path(path)?;
    let result = (|| {
        let f = create_private(&tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, FailAfter::new(f));
        let sum = write_image(ns, &mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.inner.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()?;
        Ok(sum)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates the temporary file `tmp` of a save (also the check at mount
/// that a save could create it): mode 0600, because an image holds
/// every file's contents whatever its mode in the mount (a world-readable
/// image would show other users what the mount does not); and never through
/// a symlink or over a file someone else made: the name is predictable and
/// the directory may be shared. A leftover of our own PID is removed first
/// (unlinking a planted symlink removes the link, never its target).
pub fn create_private(tmp: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(tmp)
}

/// The temporary file a save of `path` writes before renaming it over
/// `path`: `.NAME.tmp.PID` in the same directory.
pub fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("image path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    Ok(path.with_file_name(tmp_name))
}

/// Removes temporary files left by saves of `path` that were killed
/// (`.NAME.tmp.PID` whose process is gone). Returns how many.
pub fn remove_stale_temps(path: &Path) -> usize {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return 0;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(name.as_bytes());
    prefix.extend_from_slice(b".tmp.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(pid) = file.as_bytes().strip_prefix(prefix.as_slice()) else {
            continue;
        };
        let alive = std::str::from_utf8(pid)
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Loads an image file.
pub fn load_from_path(path: &Path, limits: Limits) -> Result<(Namespace, Summary), ImageError> {
    let f = File::open(path).map_err(ImageError::Io)?;
    read_image(f, limits)
}

/// A writer that fails with ENOSPC after `TRIEFS_IMAGE_FAIL_AFTER` bytes
/// when `TRIEFS_FAULTS=1` (fault injection for tests of failed saves).
struct FailAfter {
    inner: File,
    left: Option<u64>,
}

impl FailAfter {
    fn new(inner: File) -> FailAfter {
        let faults = std::env::var_os("TRIEFS_FAULTS").is_some_and(|v| v == "1");
        let left = faults
            .then(|| std::env::var("TRIEFS_IMAGE_FAIL_AFTER").ok()?.parse().ok())
            .flatten();
        FailAfter { inner, left }
    }
}

impl Write for FailAfter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(left) = &mut self.left {
            if *left == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = buf.len().min(*left as usize);
            let n = self.inner.write(&buf[..n])?;
            *left -= n as u64;
            return Ok(n);
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
