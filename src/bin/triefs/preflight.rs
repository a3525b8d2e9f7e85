//! Checks before mounting: the mount point, `/dev/fuse`, the image's place.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use triefs::image::{self, ImageError};
use triefs::mount::mountinfo::is_mount_point;

use crate::commands::image::*;
use crate::exit::*;

/// `path` quoted for a shell command line when it needs quoting.
pub(crate) fn shell_quote(path: &Path) -> String {
    let s = path.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Checks the mount point and returns its canonical path.
pub(crate) fn check_mountpoint(mp: &Path) -> Result<PathBuf, Fatal> {
    let shown = mp.display();
    match std::fs::metadata(mp) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            // Give the one command that works for this user: a process
            // still inside the dead mount (a shell's cwd) makes a plain
            // unmount answer "busy", so the lazy one. Users unmount through
            // the setuid fusermount3; umount(8) is for root.
            let euid = triefs::sys::euid();
            let listed = mp
                .parent()
                .map(|d| {
                    if d.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        d
                    }
                })
                .and_then(|d| d.canonicalize().ok())
                .zip(mp.file_name())
                .map(|(d, name)| d.join(name));
            let owner = listed
                .as_deref()
                .and_then(triefs::mount::mountinfo::fuse_owner);
            let quoted = shell_quote(mp);
            let how = match owner {
                _ if euid == 0 => format!("clear it with `umount -l {quoted}`"),
                Some(uid) if uid != euid => format!(
                    "it was mounted by uid {uid}: they can clear it with `fusermount3 -uz \
                     {quoted}`, root with `umount -l {quoted}`"
                ),
                _ => format!("clear it with `fusermount3 -uz {quoted}`"),
            };
            return Err(format!(
                "mount point {shown} is a stale FUSE mount: its daemon died (transport endpoint \
                 is not connected); {how}, then mount again"
            )
            .into());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("mount point {shown} does not exist").into());
        }
        Err(e) => return Err(format!("cannot access mount point {shown}: {e}").into()),
        Ok(m) if !m.is_dir() => {
            return Err(format!("mount point {shown} is not a directory").into());
        }
        Ok(_) => {}
    }
    let canon = mp
        .canonicalize()
        .map_err(|e| format!("cannot resolve mount point {shown}: {e}"))?;
    if is_mount_point(&canon) {
        return Err(
            format!("mount point {shown} is already a mount point; unmount it first").into(),
        );
    }
    Ok(canon)
}

pub(crate) fn check_dev_fuse() -> Result<(), Fatal> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(
            "/dev/fuse does not exist: load the fuse kernel module (`modprobe fuse`) or run where FUSE is available"
                .into(),
        ),
        Err(e) => Err(format!("cannot open /dev/fuse: {e}").into()),
    }
}

/// Refuses, at mount, an image the daemon could not load or could not save
/// at unmount: a directory or another non-file, a file it may not read
/// (unless `--force-new-image`), a directory where it cannot create the
/// save's temporary file, or a file of another user in a sticky directory
/// (such as /tmp), which the save's rename could not replace. Found now it
/// is an exit 2; found at unmount, everything since the mount would be
/// lost. Runs before anything needs /dev/fuse, like the other checks of
/// the command line.
pub(crate) fn check_image_target(p: &Path, force_new: bool) -> Result<(), Fatal> {
    let shown = p.display();
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => {
            return Err(format!(
                "image {shown} is a directory; give the path of a file (the image is written \
                 there at unmount)"
            )
            .into());
        }
        Ok(m) if !m.is_file() => {
            return Err(format!("image {shown} is not a regular file").into());
        }
        // A regular file (opening anything else could block, a FIFO).
        Ok(_) if force_new => {}
        Ok(_) => {
            if let Err(e) = std::fs::File::open(p) {
                return Err(image_load_error(p, &ImageError::Io(e), true).into());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("image {shown}: {e}").into()),
    }
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let dir_meta = match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => m,
        _ => return Err(format!("image {shown}: its directory does not exist").into()),
    };
    // Do what the save does first: create `.NAME.tmp.PID` there. Trying
    // answers for this uid, its groups, ACLs, read-only mounts and quotas
    // alike, where reading mode bits would only guess.
    let probe = image::temp_path(p).map_err(|e| format!("image {shown}: {e}"))?;
    // Exactly as the save will create it (see image::create_private).
    let made = image::create_private(&probe);
    match made {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(e) => {
            return Err(format!(
                "image {shown}: cannot write in its directory {}: {e} (the image is saved \
                 there at unmount)",
                dir.display()
            )
            .into());
        }
    }
    let euid = triefs::sys::euid();
    // S_ISVTX, spelled out: its libc type differs between platforms.
    if dir_meta.mode() & 0o1000 != 0
        && euid != 0
        && dir_meta.uid() != euid
        && let Ok(m) = std::fs::symlink_metadata(p)
        && m.uid() != euid
    {
        return Err(format!(
            "image {shown} belongs to uid {} in the sticky directory {}, so triefs (uid {euid}) \
             could not replace it at unmount",
            m.uid(),
            dir.display()
        )
        .into());
    }
    Ok(())
}
