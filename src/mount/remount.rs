//! `mount -o remount,...` of a triefs mount, as the mount(8) helper does
//! it: the part of tmpfs's remount that lives in the kernel (read-only,
//! `nosuid`, the atime flags, ...) is mount(2) with `MS_REMOUNT`; the part
//! tmpfs keeps in its superblock (`size=`, `nr_inodes=`) belongs to the
//! daemon and goes there through the control ioctl
//! ([`crate::reconfigure`]).
//!
//! mount(8) hands the helper the mount's whole state, merged with what
//! was asked: for `mount -o remount,ro DIR` the helper gets
//! `ro,relatime,remount,user_id=0,group_id=0,default_permissions,allow_other`
//! (the per-mount options from the mount table, `remount`, then the new
//! options, then the superblock's options). So the flags given are the
//! flags wanted, as for a kernel filesystem, and FUSE's own superblock
//! options come back every time and are accepted unchanged.
//!
//! All or nothing, like tmpfs: every option is checked before anything
//! changes; the daemon applies the limits only when all of them fit (it
//! answers tmpfs's refusal otherwise), and when mount(2) fails afterwards
//! the limits are put back.

use std::io;
use std::path::{Path, PathBuf};

use super::flags;
use super::helper::is_mount_only;
use super::mountinfo;
use super::options::parse_size;
use crate::reconfigure::{self, Request};

/// A remount that did not happen: the message, and the errno tmpfs's
/// remount gives for the same case (mount(8) reports it as exit 32).
#[derive(Debug, PartialEq, Eq)]
pub struct Failed {
    /// One line saying why.
    pub msg: String,
    /// The errno of the failure, for the message and for tests.
    pub errno: i32,
}

fn failed(errno: i32, msg: impl Into<String>) -> Failed {
    Failed {
        msg: msg.into(),
        errno,
    }
}

/// What a remount's options ask for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// mount(2) flags (without `MS_REMOUNT`).
    pub flags: libc::c_ulong,
    /// The daemon's part.
    pub limits: Request,
    /// The access option given, if any (it cannot change).
    pub allow_other: Option<bool>,
}

impl Plan {
    /// Reads a remount's options as tmpfs's remount reads its own: flags,
    /// `size=` and `nr_inodes=` are applied; `mode=`, `uid=` and `gid=`
    /// are checked and ignored (tmpfs ignores them at remount too, the
    /// root keeps its mode and owner); FUSE's superblock options, which
    /// mount(8) passes back every time, and options that only mean
    /// something at mount time (`fsname=`, `paths=`, `image=`, ... which
    /// fstab lines bring back) are ignored; anything else is refused
    /// (`EINVAL`), as tmpfs refuses what it does not know.
    pub fn parse<S: AsRef<str>>(options: &[S]) -> Result<Plan, Failed> {
        let mut plan = Plan::default();
        let mut names: Vec<&str> = Vec::new();
        for opt in options.iter().flat_map(|o| o.as_ref().split(',')) {
            let (key, val) = match opt.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (opt, None),
            };
            let bad = |why: String| failed(libc::EINVAL, why);
            let value = || val.ok_or_else(|| bad(format!("mount option {key} needs a value")));
            match key {
                "" | "remount" => {}
                _ if val.is_none() && flags::flag(key).is_some() => names.push(key),
                "size" => plan.limits.size = Some(parse_size(key, value()?, true).map_err(bad)?),
                "nr_inodes" => {
                    plan.limits.nr_inodes = Some(parse_size(key, value()?, false).map_err(bad)?)
                }
                // Checked as tmpfs checks them at remount, then ignored.
                "mode" => {
                    u32::from_str_radix(value()?, 8)
                        .map_err(|_| bad(format!("invalid value '{opt}' for mount option mode")))?;
                }
                "uid" | "gid" => {
                    super::options::MountOpts::parse(&[opt]).map_err(bad)?;
                }
                // FUSE's superblock options, from the mount table.
                "user_id" | "group_id" | "max_read" | "blksize" => {
                    value()?;
                }
                "default_permissions" if val.is_none() => {}
                "allow_other" if val.is_none() => plan.allow_other = Some(true),
                "owner_only" | "allow_root" if val.is_none() => plan.allow_other = Some(false),
                // Only read when mounting.
                "fsname" | "subtype" | "paths" | "paths_files" | "image" | "tar" => {
                    value()?;
                }
                "auto_unmount" | "strict_open" | "trace_uncached" | "faults" if val.is_none() => {}
                "faults" => {}
                // The durable state starts at the mount: it cannot be
                // switched on or off later.
                "crash" => {
                    return Err(bad(
                        "crash cannot be changed by a remount (unmount, then mount with -o crash)"
                            .into(),
                    ));
                }
                _ if is_mount_only(opt) => {}
                _ => return Err(bad(format!("unknown mount option '{opt}'"))),
            }
        }
        plan.flags = flags::apply(0, names);
        Ok(plan)
    }
}

/// The errno's symbolic name, for messages.
fn errno_name(e: i32) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EINVAL => "EINVAL",
        libc::EROFS => "EROFS",
        libc::ENOTCONN => "ENOTCONN",
        libc::ENOTTY => "ENOTTY",
        libc::ENOSYS => "ENOSYS",
        _ => return format!("errno {e}"),
    };
    name.to_string()
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.msg, errno_name(self.errno))
    }
}

fn io_failed(e: &io::Error, what: String) -> Failed {
    let errno = e.raw_os_error().unwrap_or(libc::EIO);
    // io::Error's text without its " (os error N)": the errno's name
    // follows anyway.
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or_default();
    failed(errno, format!("{what}: {text}"))
}

/// Whether the kernel was told `allow_other` for this mount.
fn allow_other(m: &mountinfo::Mount) -> bool {
    m.super_opts.iter().any(|o| o == "allow_other")
}

/// Remounts the triefs mount at `target` with `options` (mount(8)'s
/// list). Needs root; checks that `target` is the mount point of a triefs
/// mount (its daemon answers the control request) before changing
/// anything.
pub fn remount<S: AsRef<str>>(target: &Path, options: &[S]) -> Result<(), Failed> {
    if crate::sys::euid() != 0 {
        return Err(failed(
            libc::EPERM,
            "remount needs root (a tmpfs remount needs CAP_SYS_ADMIN too)",
        ));
    }
    let shown = target.display();
    let plan = Plan::parse(options).map_err(|f| Failed {
        msg: format!("cannot remount {shown}: {}", f.msg),
        ..f
    })?;
    let mp: PathBuf = std::fs::canonicalize(target)
        .map_err(|e| io_failed(&e, format!("cannot remount {shown}")))?;
    let Some(entry) = mountinfo::mount_at(&mp) else {
        return Err(failed(
            libc::EINVAL,
            format!("cannot remount {shown}: not a mount point"),
        ));
    };
    if !(entry.fstype == "fuse" || entry.fstype.starts_with("fuse.")) {
        return Err(failed(
            libc::EINVAL,
            format!(
                "cannot remount {shown}: not a triefs mount (type {})",
                entry.fstype
            ),
        ));
    }
    // Asking changes nothing, and only triefs answers this request.
    reconfigure::send(&mp, &Request::default()).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOTTY | libc::ENOSYS | libc::EINVAL) | None => failed(
            libc::EINVAL,
            format!("cannot remount {shown}: not a triefs mount (its daemon does not answer triefs's remount request)"),
        ),
        Some(libc::EACCES) if !allow_other(&entry) => failed(
            libc::EACCES,
            format!(
                "cannot remount {shown}: its owner (uid {}) mounted it without allow_other, so the kernel keeps root out of it",
                entry
                    .super_opts
                    .iter()
                    .find_map(|o| o.strip_prefix("user_id="))
                    .unwrap_or("?")
            ),
        ),
        _ => io_failed(&e, format!("cannot remount {shown}: cannot reach its daemon")),
    })?;
    if plan.allow_other.is_some_and(|a| a != allow_other(&entry)) {
        return Err(failed(
            libc::EINVAL,
            format!(
                "cannot remount {shown}: who may use a mount (allow_other, owner_only, allow_root) is fixed when it is mounted"
            ),
        ));
    }
    let change = plan.limits.size.is_some() || plan.limits.nr_inodes.is_some();
    let before = if change {
        let reply = reconfigure::send(&mp, &plan.limits)
            .map_err(|e| io_failed(&e, format!("cannot remount {shown}")))?;
        if let Some(r) = reply.refused {
            return Err(failed(
                libc::EINVAL,
                format!("cannot remount {shown}: {}", r.message()),
            ));
        }
        Some(reply.before)
    } else {
        None
    };
    if let Err(e) = super::direct::remount(&mp, plan.flags) {
        if let Some(b) = before {
            let undo = Request {
                size: Some(b.size),
                nr_inodes: Some(b.nr_inodes),
                restore: true,
            };
            if let Err(u) = reconfigure::send(&mp, &undo) {
                return Err(io_failed(
                    &e,
                    format!(
                        "cannot remount {shown} (and putting size= and nr_inodes= back failed too: {u})"
                    ),
                ));
            }
        }
        return Err(io_failed(&e, format!("cannot remount {shown}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What mount(8) passes for `mount -o remount,ro,size=2m DIR`.
    #[test]
    fn mount8_lists() {
        let p = Plan::parse(&[
            "ro,relatime,remount,nosuid,user_id=0,group_id=0,default_permissions,allow_other,size=2m",
        ])
        .unwrap();
        assert_eq!(
            p.flags,
            libc::MS_RDONLY | libc::MS_RELATIME | libc::MS_NOSUID
        );
        assert_eq!(p.limits.size, Some(2 << 20));
        assert_eq!(p.limits.nr_inodes, None);
        assert_eq!(p.allow_other, Some(true));
        let p = Plan::parse(&["rw,strictatime,lazytime,remount,nr_inodes=0"]).unwrap();
        assert_eq!(p.flags, libc::MS_STRICTATIME | libc::MS_LAZYTIME);
        assert_eq!(p.limits.nr_inodes, Some(0));
        assert_eq!(p.allow_other, None);
    }

    #[test]
    fn ignored_and_refused_as_tmpfs() {
        // mode=, uid=, gid= are checked, then ignored; fstab's mount-time
        // options are ignored.
        let p = Plan::parse(&[
            "remount,mode=1777,uid=5,gid=7,fsname=x,paths=/p,paths_files=/q,tar=/t,noauto,x-a.b=1,_netdev",
        ])
        .unwrap();
        assert_eq!(p, Plan::default());
        for bad in [
            "bogus",
            "mode=9",
            "uid=4294967295",
            "size=1x",
            "nr_inodes=50%",
            "size",
            "ro=1",
        ] {
            let e = Plan::parse(&["remount", bad]).unwrap_err();
            assert_eq!(e.errno, libc::EINVAL, "{bad}");
            assert!(!e.msg.contains('\n'));
        }
    }

    #[test]
    fn crash_cannot_be_switched() {
        let e = Plan::parse(&["remount,size=2m,crash"]).unwrap_err();
        assert_eq!(e.errno, libc::EINVAL);
        assert!(
            e.msg.contains("crash") && !e.msg.contains('\n'),
            "{}",
            e.msg
        );
    }
}
