//! The save status of a snapshot image: a small file `.NAME.status` next to
//! the image `NAME`, kept by the daemon that serves it.
//!
//! A save can fail long after the mount (disk full, directory made
//! read-only), when nobody watches the daemon's log. The status file is
//! where that failure stays visible: `triefs image info` reports it. The
//! daemon creates the file at mount, holds an exclusive `flock` on it while
//! it serves (a second daemon on the same image is refused, and readers can
//! tell a live daemon from a dead one), rewrites it in place after every
//! save, and removes it when it exits after a successful final save. So the
//! file exists only while a daemon serves the image, or when its last save
//! failed, or when the daemon died without its final save.
//!
//! The file is written once at its full size ([`RESERVED`] bytes: the
//! status text, then NUL padding) and later only overwritten in place, so
//! that recording a failed save needs no new disk space and no write
//! permission on the directory.
//!
//! Text format, one `key value` per line:
//!
//! ```text
//! triefs save status
//! pid 1234
//! started 1764486000
//! state serving|exited
//! saved 1764486100
//! failed 1764486200 No space left on device (os error 28)
//! ```
//!
//! `saved` (the last successful save, seconds since the epoch) and
//! `failed` (a save that failed after it) are present only when they
//! happened.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Size of the status file on disk: room for the text, reserved at mount.
pub const RESERVED: usize = 4096;

const HEADER: &str = "triefs save status";

/// The status file of the image at `image`: `.NAME.status` beside it.
pub fn status_path(image: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(image.file_name().unwrap_or_default());
    name.push(".status");
    image.with_file_name(name)
}

/// Seconds since the epoch, now.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a status file says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// The daemon that wrote it.
    pub pid: u32,
    /// When that daemon mounted (seconds since the epoch).
    pub started: u64,
    /// Whether the daemon had exited when it last wrote the file.
    pub exited: bool,
    /// Whether the daemon's mount was gone and its final save under way
    /// (a new daemon on the image waits for it instead of giving up).
    pub unmounted: bool,
    /// The last successful save, if any.
    pub saved: Option<u64>,
    /// A save that failed after the last successful one: when, and why.
    pub failed: Option<(u64, String)>,
}

impl Status {
    /// The file's text, NUL-padded to [`RESERVED`] bytes.
    fn encode(&self) -> Vec<u8> {
        let mut s = format!(
            "{HEADER}\npid {}\nstarted {}\nstate {}\n",
            self.pid,
            self.started,
            if self.exited {
                "exited"
            } else if self.unmounted {
                "unmounted"
            } else {
                "serving"
            }
        );
        if let Some(t) = self.saved {
            s.push_str(&format!("saved {t}\n"));
        }
        if let Some((t, why)) = &self.failed {
            // One line, and never so long that it could not fit.
            let why: String = why.replace('\n', " ").chars().take(1024).collect();
            s.push_str(&format!("failed {t} {why}\n"));
        }
        let mut b = s.into_bytes();
        b.resize(RESERVED.max(b.len()), 0);
        b
    }

    /// Parses a status file's bytes (the text ends at the first NUL).
    pub fn decode(bytes: &[u8]) -> Option<Status> {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        let text = std::str::from_utf8(&bytes[..end]).ok()?;
        let mut lines = text.lines();
        if lines.next()? != HEADER {
            return None;
        }
        let mut st = Status::default();
        for line in lines {
            let (key, val) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "pid" => st.pid = val.parse().ok()?,
                "started" => st.started = val.parse().ok()?,
                "state" => {
                    st.exited = val == "exited";
                    st.unmounted = val == "unmounted";
                }
                "saved" => st.saved = Some(val.parse().ok()?),
                "failed" => {
                    let (t, why) = val.split_once(' ').unwrap_or((val, ""));
                    st.failed = Some((t.parse().ok()?, why.to_string()));
                }
                _ => {}
            }
        }
        Some(st)
    }
}

/// What `triefs image` finds about an image's last save.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// A daemon is serving the image right now.
    Serving(Status),
    /// The last save failed; the image holds an older state (or is
    /// missing if no save ever succeeded).
    SaveFailed(Status),
    /// The daemon died (SIGKILL, crash) without its final save: changes
    /// since its last save are lost.
    Died(Status),
}

/// Reads the status of the image at `image`: `None` when there is nothing
/// to report (no status file: the last daemon exited after a good save).
pub fn read(image: &Path) -> io::Result<Option<Report>> {
    let path = status_path(image);
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::with_capacity(RESERVED);
    f.by_ref().take(64 * 1024).read_to_end(&mut bytes)?;
    let Some(st) = Status::decode(&bytes) else {
        return Err(io::Error::other(format!(
            "{} is not a triefs status file",
            path.display()
        )));
    };
    // A shared lock that does not block is only granted when no daemon
    // holds its exclusive lock.
    let free = crate::sys::try_flock(&f, false).unwrap_or(false);
    Ok(Some(if !free {
        Report::Serving(st)
    } else if st.failed.is_some() {
        Report::SaveFailed(st)
    } else if !st.exited {
        Report::Died(st)
    } else {
        // Exited after a good last save but could not remove the file
        // (directory made read-only meanwhile): nothing wrong.
        return Ok(None);
    }))
}

/// The daemon's side: the open, locked status file of the image it serves.
///
/// Dropped without [`StatusFile::finish`] (the mount failed, or never
/// started), it leaves things as it found them: a file it created is
/// removed, the previous daemon's record is put back.
#[derive(Debug)]
pub struct StatusFile {
    file: File,
    path: PathBuf,
    status: Status,
    /// What the file held when we took it (empty: we created it).
    previous: Vec<u8>,
    /// Whether [`StatusFile::start`] has overwritten `previous`.
    started: bool,
    /// Whether [`StatusFile::finish`] ran.
    finished: bool,
}

/// Why a status file could not be taken.
#[derive(Debug)]
pub enum OpenError {
    /// Another daemon (this pid, if known) serves the same image.
    InUse(Option<u32>),
    /// Another daemon (this pid) holds the image but has unmounted: it is
    /// saving it one last time and will let go when done.
    Closing(u32),
    /// Creating, locking or writing the file failed.
    Io(io::Error),
}

impl StatusFile {
    /// Creates (or takes over) the status file of `image` and locks it.
    /// Returns it with the status a previous daemon left there, if any (a
    /// failed save, a daemon that died). Nothing is written before
    /// [`StatusFile::start`].
    pub fn open(image: &Path) -> Result<(StatusFile, Option<Status>), OpenError> {
        let path = status_path(image);
        // A daemon that exits removes its file; if that happens between our
        // open and our lock, we would hold a lock on a file no longer in
        // the directory. Check that the name still points at the file we
        // locked, and start over if not.
        for _ in 0..8 {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(0o644)
                .open(&path)
                .map_err(OpenError::Io)?;
            if !crate::sys::try_flock(&file, true).map_err(OpenError::Io)? {
                let mut bytes = Vec::new();
                let _ = (&file).take(64 * 1024).read_to_end(&mut bytes);
                return Err(match Status::decode(&bytes) {
                    Some(s) if s.unmounted => OpenError::Closing(s.pid),
                    s => OpenError::InUse(s.map(|s| s.pid)),
                });
            }
            let same = match (file.metadata(), std::fs::symlink_metadata(&path)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            };
            if !same {
                continue;
            }
            let mut bytes = Vec::new();
            (&file)
                .take(64 * 1024)
                .read_to_end(&mut bytes)
                .map_err(OpenError::Io)?;
            let status = Status::decode(&bytes);
            let sf = StatusFile {
                file,
                path,
                status: Status {
                    pid: std::process::id(),
                    started: now(),
                    ..Status::default()
                },
                previous: bytes,
                started: false,
                finished: false,
            };
            return Ok((sf, status));
        }
        Err(OpenError::Io(io::Error::other(format!(
            "{} keeps being replaced",
            path.display()
        ))))
    }

    /// The mount is about to start: writes the file at its full size, which
    /// reserves the space for every later rewrite (fails on a full disk).
    pub fn start(&mut self) -> io::Result<()> {
        self.started = true;
        self.status.started = now();
        // The previous file may be longer (a long error text): cut it to
        // the reserved size, then write all of it.
        self.file.set_len(RESERVED as u64)?;
        self.write()
    }

    /// Records the pid of the process that serves from now on (after the
    /// daemon forked away from the command that started it).
    pub fn set_pid(&mut self, pid: u32) -> io::Result<()> {
        self.status.pid = pid;
        self.write()
    }

    /// Records a successful save.
    pub fn saved(&mut self) -> io::Result<()> {
        self.status.saved = Some(now());
        self.status.failed = None;
        self.write()
    }

    /// The mount is gone and the final save begins: a daemon mounting
    /// the same image meanwhile (`umount` then `mount` again) waits for
    /// it instead of refusing.
    pub fn unmounted(&mut self) -> io::Result<()> {
        self.status.unmounted = true;
        self.write()
    }

    /// Records a failed save, durably (it may be the last word).
    pub fn failed(&mut self, why: &str) -> io::Result<()> {
        self.status.failed = Some((now(), why.to_string()));
        self.write()?;
        self.file.sync_data()
    }

    /// The daemon is exiting: remove the file when the last save was good
    /// (nothing to report), else mark the daemon gone and keep the failure.
    pub fn finish(mut self) -> io::Result<()> {
        self.finished = true;
        if self.status.failed.is_none() && std::fs::remove_file(&self.path).is_ok() {
            return Ok(());
        }
        self.status.exited = true;
        self.write()?;
        self.file.sync_data()
    }

    /// Overwrites the file in place, at offset 0.
    fn write(&mut self) -> io::Result<()> {
        self.file.write_all_at(&self.status.encode(), 0)
    }
}

impl Drop for StatusFile {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if self.previous.is_empty() {
            let _ = std::fs::remove_file(&self.path);
        } else if self.started {
            let _ = self.file.set_len(self.previous.len() as u64);
            let _ = self.file.write_all_at(&self.previous, 0);
        }
    }
}

/// `secs` since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let st = Status {
            pid: 42,
            started: 1000,
            exited: true,
            unmounted: false,
            saved: Some(2000),
            failed: Some((3000, "No space left on device (os error 28)".into())),
        };
        let bytes = st.encode();
        assert_eq!(bytes.len(), RESERVED);
        assert_eq!(Status::decode(&bytes), Some(st.clone()));
        let closing = Status {
            exited: false,
            unmounted: true,
            ..st
        };
        assert_eq!(Status::decode(&closing.encode()), Some(closing));
        assert_eq!(Status::decode(b"something else\n"), None);
    }

    #[test]
    fn dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc(1_764_486_245), "2025-11-30 07:04:05 UTC");
    }

    #[test]
    fn lifecycle() {
        let dir = std::env::temp_dir().join(format!("triefs-status-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("img");
        // A daemon that never starts leaves nothing behind.
        drop(StatusFile::open(&img).unwrap());
        assert!(!status_path(&img).exists());
        let (mut sf, prev) = StatusFile::open(&img).unwrap();
        assert_eq!(prev, None);
        sf.start().unwrap();
        assert!(matches!(read(&img).unwrap(), Some(Report::Serving(_))));
        // A second daemon on the same image is refused.
        assert!(matches!(
            StatusFile::open(&img),
            Err(OpenError::InUse(Some(p))) if p == std::process::id()
        ));
        sf.saved().unwrap();
        // Unmounted and saving: a new daemon is told to wait, not refused.
        sf.unmounted().unwrap();
        assert!(matches!(
            StatusFile::open(&img),
            Err(OpenError::Closing(p)) if p == std::process::id()
        ));
        sf.failed("disk full").unwrap();
        sf.finish().unwrap();
        match read(&img).unwrap() {
            Some(Report::SaveFailed(st)) => {
                assert_eq!(st.failed.unwrap().1, "disk full");
                assert!(st.saved.is_some() && st.exited);
            }
            other => panic!("{other:?}"),
        }
        // A daemon whose mount fails puts the record back.
        let (mut sf, _) = StatusFile::open(&img).unwrap();
        sf.start().unwrap();
        drop(sf);
        assert!(matches!(read(&img).unwrap(), Some(Report::SaveFailed(_))));
        // The next daemon sees what happened, and a good exit clears it.
        let (mut sf, prev) = StatusFile::open(&img).unwrap();
        assert!(prev.unwrap().failed.is_some());
        sf.start().unwrap();
        sf.finish().unwrap();
        assert_eq!(read(&img).unwrap(), None);
        assert!(!status_path(&img).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
