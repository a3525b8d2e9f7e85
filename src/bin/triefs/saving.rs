//! Saving the image while serving: where, how failures are reported,
//! the status file.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use log::{error, info, warn};

use triefs::image::status::{self, OpenError, StatusFile};
use triefs::image::{self};
use triefs::namespace::Namespace;

use crate::exit::*;

/// Where the mount's image goes: its path, and the status file that
/// records how each save went (see `triefs::image::status`). The lock also
/// keeps saves from overlapping: a SIGUSR1 save and an interval save
/// would otherwise write the same temporary file at once.
pub(crate) struct SaveTarget {
    pub(crate) path: PathBuf,
    pub(crate) status: Mutex<Option<StatusFile>>,
}

impl SaveTarget {
    /// Saves the namespace (atomically), logging the outcome and recording
    /// it in the status file.
    pub(crate) fn save(&self, ns: &Namespace) -> std::io::Result<()> {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let t = std::time::Instant::now();
        let path = &self.path;
        match image::save_to_path(ns, path) {
            Ok(sum) => {
                info!(
                    "saved image {}: {} inodes, {} entries, {} bytes in {:?}",
                    path.display(),
                    sum.inodes,
                    sum.entries,
                    sum.data_bytes,
                    t.elapsed()
                );
                if let Some(Err(e)) = status.as_mut().map(StatusFile::saved) {
                    warn!(
                        "image {}: cannot update its status file: {e}",
                        path.display()
                    );
                }
                Ok(())
            }
            Err(e) => {
                error!(
                    "saving image {} failed: {e} (the previous image is intact)",
                    path.display()
                );
                if let Some(Err(e2)) = status.as_mut().map(|s| s.failed(&e.to_string())) {
                    error!(
                        "image {}: cannot record the failed save in its status file either: {e2}",
                        path.display()
                    );
                }
                Err(e)
            }
        }
    }

    /// The mount is gone; the final save follows (see
    /// [`StatusFile::unmounted`]).
    pub(crate) fn unmounted(&self) {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Err(e)) = status.as_mut().map(StatusFile::unmounted) {
            log::warn!(
                "image {}: cannot update its status file: {e}",
                self.path.display()
            );
        }
    }

    /// The mount failed: the status file goes back to how it was found.
    pub(crate) fn abandon(&self) {
        drop(self.status.lock().unwrap_or_else(|e| e.into_inner()).take());
    }

    /// The daemon is exiting: the status file goes away after a good last
    /// save, and stays (marked exited) after a failed one.
    pub(crate) fn finish(&self) {
        let taken = self.status.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(Err(e)) = taken.map(StatusFile::finish) {
            warn!(
                "image {}: cannot update its status file: {e}",
                self.path.display()
            );
        }
    }
}

/// How long a new daemon waits for one that has unmounted to finish its
/// final save of the same image (a save writes at disk speed: gigabytes
/// take seconds).
const CLOSING_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Takes the image's status file for this daemon, with what the previous
/// daemon left there.
pub(crate) fn take_status(p: &Path) -> Result<(StatusFile, Option<status::Status>), Fatal> {
    let shown = p.display();
    let deadline = std::time::Instant::now() + CLOSING_WAIT;
    let mut waiting = false;
    let opened = loop {
        match StatusFile::open(p) {
            // `umount` returns before the old daemon's final save ends:
            // `umount DIR && mount DIR` must find the image, not a refusal.
            Err(OpenError::Closing(pid)) if std::time::Instant::now() < deadline => {
                if !waiting {
                    log::info!("image {shown}: waiting for daemon {pid} to finish saving it");
                    waiting = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => break other,
        }
    };
    match opened {
        Ok(x) => Ok(x),
        Err(OpenError::Closing(pid)) => Err(format!(
            "image {shown} is still being saved by daemon {pid}, which unmounted {} s ago \
             or more; try again when it has exited",
            CLOSING_WAIT.as_secs()
        )
        .into()),
        Err(OpenError::InUse(pid)) => {
            let who = pid.map_or(String::new(), |p| format!(" (pid {p})"));
            Err(format!(
                "image {shown} is in use by another triefs daemon{who}; two daemons saving one \
                 image would overwrite each other's changes"
            )
            .into())
        }
        Err(OpenError::Io(e)) => Err(format!(
            "image {shown}: cannot write its status file {}: {e}",
            status::status_path(p).display()
        )
        .into()),
    }
}

/// Warns about what the previous daemon of the image left in its status
/// file: a failed last save, or a death without the final save.
pub(crate) fn warn_previous_status(p: &Path, prev: &status::Status) {
    let shown = p.display();
    if let Some((t, why)) = &prev.failed {
        let next = if p.exists() {
            "loaded the older image"
        } else {
            "no save ever succeeded, started empty"
        };
        warn!(
            "image {shown}: the last save, at {}, failed: {why}; {next}",
            status::format_utc(*t)
        );
    } else if !prev.exited {
        let since = prev.saved.map_or_else(
            || format!("its mount at {}", status::format_utc(prev.started)),
            |t| format!("its last save at {}", status::format_utc(t)),
        );
        warn!(
            "image {shown}: the daemon that served it (pid {}) ended without its final save; \
             changes after {since} were lost",
            prev.pid
        );
    }
}
