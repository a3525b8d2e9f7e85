//! The mount(8) helper convention: when the binary is called as
//! `mount.fuse.triefs` (or `mount.triefs`), `mount -t fuse.triefs SOURCE DIR
//! -o OPTS` and `/etc/fstab` lines run it as
//! `mount.fuse.triefs SOURCE DIR [-sfnv] [-o OPTS] [-t TYPE]`.
//! This module turns that into ordinary `triefs` arguments, or, for
//! `mount -o remount,...` (which runs the helper too), into a remount
//! (see [`crate::mount::remount`]).

use std::ffi::{OsStr, OsString};
use std::path::Path;

/// Options that only mean something to mount(8) or fstab, never to us.
pub fn is_mount_only(opt: &str) -> bool {
    matches!(
        opt,
        "defaults"
            | "auto"
            | "noauto"
            | "user"
            | "nouser"
            | "users"
            | "owner"
            | "group"
            | "_netdev"
            | "nofail"
            | "loop"
            | "nosymfollow"
    ) || opt.starts_with("x-")
        || opt.starts_with("comment=")
}

/// Whether `argv0` names the mount helper.
pub fn is_mount_helper(argv0: &OsStr) -> bool {
    Path::new(argv0)
        .file_name()
        .and_then(OsStr::to_str)
        .is_some_and(|n| n.starts_with("mount.fuse.") || n == "mount.triefs")
}

/// What to do for one helper invocation.
#[derive(Debug, PartialEq, Eq)]
pub enum HelperCall {
    /// Run triefs with these arguments (argv[0] included).
    Run(Vec<OsString>),
    /// `-f` (fake): mount(8) asks to do everything but mount.
    Fake,
    /// `-o remount,...`: change the live mount at `target` (see
    /// [`crate::mount::remount`]) with these options, mount(8)'s list.
    Remount {
        /// The mount point.
        target: OsString,
        /// The options, split at commas, mount-only ones left out.
        options: Vec<String>,
    },
}

/// Translates helper arguments (after argv[0]) into triefs arguments: the
/// mount options are passed on (minus mount(8)-only ones), SOURCE becomes
/// `fsname=` unless one is given, and the daemon detaches as usual.
///
/// mount(8) drops `dev` and `suid` before it calls a helper, because they
/// are the defaults of every filesystem; `nodev` and `nosuid` it passes
/// on. So a helper run `as_root` adds `dev,suid` unless their opposites
/// were given, and a root `mount -t fuse.triefs` gets tmpfs's defaults.
/// (Mounts by other users are `nodev,nosuid` whatever they ask:
/// fusermount3 enforces it.)
pub fn translate(args: &[OsString], as_root: bool) -> Result<HelperCall, String> {
    let mut positional: Vec<OsString> = Vec::new();
    let mut opts: Vec<String> = Vec::new();
    let mut verbose = false;
    let mut fake = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("-o") => {
                let v = it.next().ok_or("-o needs a value")?;
                let v = v.to_str().ok_or("mount options must be UTF-8")?;
                opts.extend(
                    v.split(',')
                        .filter(|o| !o.is_empty() && !is_mount_only(o))
                        .map(str::to_string),
                );
            }
            Some("-t") | Some("-N") => {
                it.next().ok_or("-t and -N need a value")?;
            }
            Some(f) if f.starts_with('-') && f.len() > 1 => {
                for c in f[1..].chars() {
                    match c {
                        's' | 'n' => {}
                        'v' => verbose = true,
                        'f' => fake = true,
                        _ => return Err(format!("unknown mount helper flag -{c}")),
                    }
                }
            }
            _ => positional.push(a.clone()),
        }
    }
    let [source, target] = <[OsString; 2]>::try_from(positional)
        .map_err(|_| "usage: mount.fuse.triefs SOURCE DIR [-o OPTIONS]".to_string())?;
    if fake {
        return Ok(HelperCall::Fake);
    }
    if opts.iter().any(|o| o == "remount") {
        return Ok(HelperCall::Remount {
            target,
            options: opts,
        });
    }
    let mut out: Vec<OsString> = vec!["triefs".into()];
    if verbose {
        out.push("-v".into());
    }
    if as_root {
        for (on, off) in [("dev", "nodev"), ("suid", "nosuid")] {
            if !opts.iter().any(|o| o == on || o == off) {
                opts.push(on.to_string());
            }
        }
    }
    if !opts.iter().any(|o| o.starts_with("fsname=")) {
        let src = source.to_string_lossy().replace(',', "_");
        opts.insert(0, format!("fsname={src}"));
    }
    if !opts.is_empty() {
        out.push("-o".into());
        out.push(opts.join(",").into());
    }
    out.push(target);
    Ok(HelperCall::Run(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    /// As root, mount(8)'s dropped defaults come back unless their
    /// opposites were given.
    #[test]
    fn root_gets_dev_and_suid_back() {
        let run = |o: &str| translate(&args(&["s", "/m", "-o", o]), true).unwrap();
        assert_eq!(
            run("rw"),
            HelperCall::Run(args(&["triefs", "-o", "fsname=s,rw,dev,suid", "/m"]))
        );
        assert_eq!(
            run("nodev,nosuid"),
            HelperCall::Run(args(&["triefs", "-o", "fsname=s,nodev,nosuid", "/m"]))
        );
        assert_eq!(
            run("nosuid"),
            HelperCall::Run(args(&["triefs", "-o", "fsname=s,nosuid,dev", "/m"]))
        );
    }

    #[test]
    fn names() {
        assert!(is_mount_helper(OsStr::new("/sbin/mount.fuse.triefs")));
        assert!(is_mount_helper(OsStr::new("mount.triefs")));
        assert!(!is_mount_helper(OsStr::new("/usr/bin/triefs")));
    }

    #[test]
    fn fstab_style_call() {
        let got = translate(
            &args(&[
                "scratch",
                "/mnt/x",
                "-o",
                "rw,noauto,user,size=1g,mode=0755,x-systemd.automount,_netdev",
                "-n",
            ]),
            false,
        )
        .unwrap();
        assert_eq!(
            got,
            HelperCall::Run(args(&[
                "triefs",
                "-o",
                "fsname=scratch,rw,size=1g,mode=0755",
                "/mnt/x"
            ]))
        );
    }

    #[test]
    fn explicit_fsname_and_flags() {
        let got = translate(
            &args(&["src", "/m", "-sv", "-o", "fsname=me", "-t", "fuse.triefs"]),
            false,
        )
        .unwrap();
        assert_eq!(
            got,
            HelperCall::Run(args(&["triefs", "-v", "-o", "fsname=me", "/m"]))
        );
        assert_eq!(
            translate(&args(&["a", "/m", "-f"]), false).unwrap(),
            HelperCall::Fake
        );
    }

    /// A remount keeps mount(8)'s list as it is: no `dev,suid` added (the
    /// flags given are the flags wanted), no `fsname=`.
    #[test]
    fn remounts() {
        let got = translate(
            &args(&["s", "/m", "-o", "ro,relatime,remount,user_id=0,noauto"]),
            true,
        )
        .unwrap();
        assert_eq!(
            got,
            HelperCall::Remount {
                target: "/m".into(),
                options: ["ro", "relatime", "remount", "user_id=0"]
                    .map(String::from)
                    .to_vec(),
            }
        );
    }

    #[test]
    fn bad_calls() {
        assert!(translate(&args(&["/m"]), false).is_err());
        assert!(translate(&args(&["a", "/m", "-o"]), false).is_err());
        assert!(translate(&args(&["a", "/m", "-q"]), false).is_err());
    }
}
