//! The `triefs` command: mount an in-memory trie filesystem, or run one of
//! its subcommands. This file only dispatches.

#![deny(clippy::undocumented_unsafe_blocks)]

mod cli;
mod commands;
mod daemon;
mod exit;
mod logging;
mod paths;
mod preflight;
mod saving;

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use triefs::mount::helper;

use crate::cli::*;
use crate::commands::checkpoint::*;
use crate::commands::fault::*;
use crate::commands::image::*;
use crate::commands::ls_prefix::*;
use crate::commands::trace::*;
use crate::daemon::*;
use crate::exit::Exit;
use crate::logging::*;

/// `mount -o remount,...`: one line on failure and mount(8)'s exit
/// codes, 32 for a remount that failed (as mount(8) gives for tmpfs), 1
/// for a caller who is not root.
fn remount_command(target: &std::ffi::OsStr, options: &[String]) -> ExitCode {
    #[cfg(target_os = "linux")]
    {
        match triefs::mount::remount::remount(std::path::Path::new(target), options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(f) => {
                eprintln!("triefs: {f}");
                ExitCode::from(if f.errno == libc::EPERM { 1 } else { 32 })
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (target, options);
        eprintln!("triefs: remount is supported on Linux only");
        ExitCode::from(32)
    }
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // The mount helper first: its first argument is the mount's source,
    // which may well be called `image`.
    let args = match argv.first() {
        Some(argv0) if helper::is_mount_helper(argv0) => {
            match helper::translate(&argv[1..], triefs::sys::euid() == 0) {
                Ok(helper::HelperCall::Run(args)) => args,
                Ok(helper::HelperCall::Fake) => return Exit::Ok.into(),
                Ok(helper::HelperCall::Remount { target, options }) => {
                    return remount_command(&target, &options);
                }
                Err(msg) => {
                    eprintln!("triefs: {msg}");
                    return Exit::Failed.into();
                }
            }
        }
        _ => {
            // Subcommands by their first word; `triefs ./image` or
            // `triefs -- image` mounts on a directory of that name.
            let sub = |word: &str| argv.get(1).is_some_and(|a| a == word);
            if sub("image") {
                let hint = bare_hint("image");
                return match parse_args::<ImageCli>(argv[1..].to_vec(), Some(&hint)) {
                    Ok(cli) => image_command(cli),
                    Err(code) => code,
                };
            }
            if sub("checkpoint") {
                let hint = bare_hint("checkpoint");
                return match parse_args::<CheckpointCli>(argv[1..].to_vec(), Some(&hint)) {
                    Ok(cli) => checkpoint_command(cli),
                    Err(code) => code,
                };
            }
            if sub("crash") {
                let hint = bare_hint("crash");
                return match parse_args::<CrashCli>(argv[1..].to_vec(), Some(&hint)) {
                    Ok(cli) => crash_command(cli),
                    Err(code) => code,
                };
            }
            if sub("fault") {
                let hint = bare_hint("fault");
                return match parse_args::<FaultCli>(argv[1..].to_vec(), Some(&hint)) {
                    Ok(cli) => fault_command(cli),
                    Err(code) => code,
                };
            }
            if sub("trace") {
                let hint = bare_hint("trace");
                return match parse_args::<TraceCli>(argv[1..].to_vec(), Some(&hint)) {
                    Ok(cli) => trace_command(cli),
                    Err(code) => code,
                };
            }
            if sub("ls-prefix") {
                let hint = bare_hint("ls-prefix");
                return match parse_args::<LsPrefixCli>(argv[1..].to_vec(), Some(&hint)) {
                    Ok(cli) => ls_prefix_command(cli),
                    Err(code) => code,
                };
            }
            argv
        }
    };
    let cli = match parse_args::<Cli>(args, None) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if let Err(f) = init_logging(&cli) {
        eprintln!("triefs: {}", f.msg);
        return f.code.into();
    }
    match run(cli) {
        Ok(()) => Exit::Ok.into(),
        Err(f) => {
            if DETACHED.load(Ordering::Relaxed) {
                // Nobody reads a detached daemon's stderr.
                if !f.logged {
                    syslog_error(&f.msg);
                }
            } else {
                eprintln!("triefs: {}", f.msg);
            }
            f.code.into()
        }
    }
}
