//! The command line: the mount command's options and the subcommands'
//! (clap), parsed so that every error is one line.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::exit::Exit;
use clap::{ArgAction, Parser, Subcommand};

/// Mount an in-memory filesystem whose directory tree is a trie of path
/// components.
///
/// Everything lives in the daemon's memory and is gone when it is unmounted.
/// Unmount with `umount MOUNTPOINT` or `fusermount3 -u MOUNTPOINT`, or send
/// SIGINT, SIGTERM or SIGHUP to the daemon: it unmounts and exits 0.
/// Exit codes: 0 done; 1 done, but the final image save failed; 2 refused
/// or failed; 3 the consistency check at unmount (TRIEFS_CHECK=1) failed.
#[derive(Parser, Debug)]
#[command(name = "triefs", version, verbatim_doc_comment)]
#[command(after_help = "MOUNT OPTIONS (-o):
  ro, rw                  read-only or read-write (default rw)
  allow_other             every user may use the mount (mode bits apply);
                          the default for root's mounts; other users'
                          mounts need user_allow_other in /etc/fuse.conf
  owner_only              only the mounting user; the default for mounts by
                          other users, and how root keeps a mount private
  allow_root              the mounting user and root: for root the same as
                          owner_only; refused for other users (the kernel
                          cannot let root in without letting everyone in)
  fsname=NAME             source name shown by mount and df (default triefs)
  subtype=NAME            filesystem subtype (default triefs)
  mode=OCTAL, uid=N, gid=N  permissions and owner of the root directory
  size=N[k|m|g|t|p|e|%]   limit on file data (default 50% of RAM; 0: none;
                          any percentage of RAM, also above 100%)
  nr_inodes=N[k|m|g|t|p]  limit on files and directories (default: as many
                          as the default size has pages; 0: none)
                          Numbers are read as tmpfs reads them: 0x... hex,
                          a leading 0 octal, else decimal.
  paths=FILE              same as --paths FILE (for fstab and mount -t)
  paths_files=FILE        same as --paths-files FILE
  tar=FILE                same as --from-tar FILE
  image=FILE              same as --image FILE (for fstab and mount -t)
  default_permissions     accepted; permission checks are always on
  auto_unmount            unmount when the daemon dies (a watcher process,
                          triefs-watch; does not change who may use it)
  strict_open             every open reaches the daemon: chattr +i/+a refuse
                          an open for writing as on tmpfs (not at the first
                          write); small-file reads get several times slower
  faults[=FILE]           the owner may add fault rules (triefs fault);
                          FILE holds rules to start with, one per line
  trace_uncached          the kernel caches nothing, so triefs trace sees
                          every request (slow: for complete traces)
  crash                   track what fsync made durable, for `triefs crash`
                          (a power cut); costs memory for unsynced changes
  dev, nodev, suid, nosuid, exec, noexec, sync, async, dirsync
                          passed to the kernel as for any filesystem
  atime, noatime, relatime, norelatime, strictatime, nostrictatime
  diratime, nodiratime, lazytime, nolazytime
                          set on the mount as root; reads never update atimes

MOUNT(8) AND FSTAB:
  Installed as /sbin/mount.fuse.triefs (scripts/install.sh does it), the
  binary serves `mount -t fuse.triefs NAME DIR -o size=1g,mode=0755` and
  fstab lines such as `scratch /mnt/x fuse.triefs size=1g,noauto 0 0`.
  Run as root, such mounts serve every user, like tmpfs (owner_only: not).
  `mount -o remount,ro DIR` (root) changes ro/rw, the flags above, size=
  and nr_inodes= of a live mount, with tmpfs's rules.

OTHER COMMANDS (each has its own --help):
  triefs checkpoint save|restore|delete MOUNTPOINT NAME
  triefs checkpoint list MOUNTPOINT, triefs checkpoint export MOUNTPOINT NAME FILE
                          named copies of the whole tree, restored in one
                          step (reset a test fixture in milliseconds)
  triefs fault add|list|clear MOUNTPOINT ...
                          make requests fail, stall or write short (a mount
                          with -o faults)
  triefs trace [--json] MOUNTPOINT [PREFIX]
                          one line per request the daemon serves
  triefs crash MOUNTPOINT  a power cut: everything falls back to its last
                          fsync (a mount with -o crash)
  triefs ls-prefix [-U] MOUNTPOINT [PREFIX]  leaf paths under PREFIX, answered
                          by the daemon from the trie (sorted unless -U)
  triefs image info|check FILE, triefs image ls FILE [PREFIX]
                          inspect a snapshot image without mounting it, and
                          whether its last save failed
  A mount point named like a command is mounted with `triefs ./image` or
  `triefs -- image`.

EXAMPLES:
  triefs /mnt/scratch                      # mount in the background
  triefs -f -v /mnt/scratch                # serve in the foreground, log info
  find / -type d | triefs --paths - /mnt/x # materialize a list of directories
  find / -type f -printf '%p\t%s\n' | triefs --paths-files - /mnt/x
                                           # ... or an inventory of files
  triefs --from-tar tree.tar /mnt/x        # start from a tar archive
  umount /mnt/scratch                      # unmount; the daemon exits 0

Logging: -v (info), -vv (debug: every failed request), -vvv (trace: also the
expected answers to xattr probes); -q silences warnings. RUST_LOG (e.g.
RUST_LOG=triefs=debug) overrides -v/-q. A detached daemon also sends its
errors (a failed save) to syslog.")]
pub(crate) struct Cli {
    /// Directory to mount on (must exist and not already be a mount point).
    pub(crate) mountpoint: PathBuf,

    /// Serve in the foreground instead of detaching.
    #[arg(short, long)]
    pub(crate) foreground: bool,

    /// Before serving, add every path listed in FILE as a directory (with
    /// its missing parents). One path per line, `-` reads stdin, blank lines
    /// are ignored, relative paths are taken from the root.
    #[arg(long, value_name = "FILE")]
    pub(crate) paths: Option<PathBuf>,

    /// Before serving (after --paths), add every line of FILE as a listed
    /// file: `path` or `path<TAB>size` (decimal bytes, default 0), with
    /// missing parents. It stores no data and reads as zeros, but
    /// reports its size in st_size and st_blocks (du), not in df, until
    /// written; `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    pub(crate) paths_files: Option<PathBuf>,

    /// Before serving (after --paths and --paths-files), load the tar
    /// archive FILE as the tree (`-` reads stdin): every member type, GNU
    /// and pax formats, owners, modes, mtimes, extended attributes and
    /// ACLs, as `tar -xpf` as root gives them. The archive's root
    /// (`./`) sets the root's attributes, unless -o mode=, uid=, gid= say
    /// otherwise. Not with an image.
    #[arg(long, value_name = "FILE")]
    pub(crate) from_tar: Option<PathBuf>,

    /// Snapshot image: loaded at mount if it exists (a missing file starts
    /// empty), written at unmount, on SIGTERM/SIGINT and on SIGUSR1. Its
    /// directory must be writable. A failed save is logged (to syslog when
    /// detached) and shown by `triefs image info FILE`.
    #[arg(long, value_name = "FILE")]
    pub(crate) image: Option<PathBuf>,

    /// Start empty even if the image cannot be read, and overwrite it at
    /// the next save.
    // Not `requires = "image"`: `-o image=FILE` names the image too.
    #[arg(long)]
    pub(crate) force_new_image: bool,

    /// Also save the image every SECS seconds in the background.
    #[arg(long, value_name = "SECS")]
    pub(crate) save_interval: Option<u64>,

    /// Append log messages to FILE (they go to stderr otherwise, which a
    /// detached daemon no longer has).
    #[arg(long, value_name = "FILE")]
    pub(crate) log_file: Option<PathBuf>,

    /// Mount options, comma separated; may be repeated. See below.
    #[arg(short = 'o', value_name = "OPT[,OPT...]", action = ArgAction::Append)]
    pub(crate) options: Vec<String>,

    /// Worker threads serving requests (default: number of CPUs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) threads: Option<u16>,

    /// More log output (repeatable).
    #[arg(short, long, action = ArgAction::Count)]
    pub(crate) verbose: u8,

    /// Less log output (repeatable).
    #[arg(short, long, action = ArgAction::Count, conflicts_with = "verbose")]
    pub(crate) quiet: u8,
}

/// Inspect a snapshot image without mounting it.
///
/// Exit codes: 0 fine; 1 the image is readable but its last save failed
/// or its daemon died without its final save (`info` and `check`); 2 the
/// image cannot be read.
#[derive(Parser, Debug)]
#[command(name = "triefs image", bin_name = "triefs image", verbatim_doc_comment)]
#[command(subcommand_required = true)]
pub(crate) struct ImageCli {
    #[command(subcommand)]
    pub(crate) cmd: ImageCmd,
}

#[derive(Subcommand, Debug)]
pub(crate) enum ImageCmd {
    /// Format version, counts, the checkpoints saved, and how the last
    /// save went.
    Info {
        /// The image file.
        file: PathBuf,
    },
    /// The leaf paths of the live tree under PREFIX (default: all),
    /// sorted.
    Ls {
        /// The image file.
        file: PathBuf,
        /// Only paths under this one (absolute inside the image).
        prefix: Option<OsString>,
    },
    /// Verify the whole image: checksums, references, the invariants of
    /// the tree and its checkpoints, and that its last save did not fail.
    Check {
        /// The image file.
        file: PathBuf,
    },
}

/// Save, restore, list, delete and export checkpoints of a mounted triefs:
/// named copies of the whole tree that a restore brings back in one step
/// (a test fixture reset in milliseconds).
///
/// A checkpoint copies the metadata and shares the file data: a page
/// written after the save is copied once. Only the mount's owner and root
/// may use these commands (others get EPERM). Right after a restore returns, every
/// process sees the checkpoint's tree: the kernel's caches of what changed
/// are dropped. A file the checkpoint lacks that a process still has open
/// stays readable and writable through that descriptor, unlinked.
///
/// Exit codes: 0 done; 2 refused or failed, with one line on stderr (no
/// such checkpoint, the name is taken, not a triefs mount, no permission,
/// a limit reached).
#[derive(Parser, Debug)]
#[command(
    name = "triefs checkpoint",
    bin_name = "triefs checkpoint",
    verbatim_doc_comment
)]
#[command(subcommand_required = true)]
pub(crate) struct CheckpointCli {
    #[command(subcommand)]
    pub(crate) cmd: CheckpointCmd,
}

#[derive(Subcommand, Debug)]
pub(crate) enum CheckpointCmd {
    /// Capture the live tree under NAME (1-64 letters, digits and
    /// `._-+@:=,`, not starting with `.` or `-`).
    Save {
        /// The triefs mount point.
        mountpoint: PathBuf,
        /// The checkpoint's name.
        name: String,
    },
    /// Make NAME's tree the live tree, atomically; NAME stays.
    Restore {
        /// The triefs mount point.
        mountpoint: PathBuf,
        /// The checkpoint's name.
        name: String,
    },
    /// Name, time, entries, and bytes shared with others / its own.
    List {
        /// The triefs mount point.
        mountpoint: PathBuf,
    },
    /// Forget NAME, freeing what only it holds.
    Delete {
        /// The triefs mount point.
        mountpoint: PathBuf,
        /// The checkpoint's name.
        name: String,
    },
    /// Write NAME's tree to FILE as a tar archive (`-` for stdout).
    Export {
        /// The triefs mount point.
        mountpoint: PathBuf,
        /// The checkpoint's name.
        name: String,
        /// The archive to write (created, or replaced).
        file: PathBuf,
    },
}

/// Simulate a power cut on a triefs mounted with `-o crash`: every file
/// and directory falls back to its state at its last fsync, fdatasync or
/// fsyncdir (or the mount); data and names not synced since are lost.
/// A rename is durable in both directories or in neither, in the order
/// renames happened; see docs/crash.md.
///
/// Dirty cached pages are written to the daemon first (and then lost like
/// every unsynced write). Only the mount's owner and root may crash it
/// (others get EPERM). Prints one line: what was lost. With
/// TRIEFS_VERBOSE=1 also the time the daemon took, on stderr.
///
/// Exit codes: 0 done; 2 refused or failed, with one line on stderr (not
/// a triefs mount, not mounted with -o crash, no permission).
#[derive(Parser, Debug)]
#[command(name = "triefs crash", bin_name = "triefs crash", verbatim_doc_comment)]
pub(crate) struct CrashCli {
    /// The triefs mount point.
    pub(crate) mountpoint: PathBuf,
}

/// Make a mounted triefs misbehave: requests on a path prefix fail with an
/// errno, stall, or write short, so a program can be tested against a bad
/// disk. The mount must be made for it (`-o faults` or `-o faults=FILE`);
/// only its owner and root may change rules.
///
/// A rule: PREFIX --op OPS [--errno NAME] [--probability P] [--seed S]
///   [--after N] [--count N] [--delay-ms MS] [--short-write BYTES] [--pid PID]
///
///   PREFIX            a path inside the mount from its root (`/db`, or the
///                     mount point's path followed by it); it covers itself
///                     and everything below, by whole names; bytes may be
///                     written \xNN
///   --op OPS          requests, comma-separated: lookup getattr setattr
///                     readlink mknod mkdir unlink rmdir symlink rename link
///                     open read write flush fsync opendir readdir fsyncdir
///                     statfs xattr access create fallocate lseek
///                     copy_file_range ioctl, or all
///   --errno NAME      answer this error (EIO, ENOSPC, EDQUOT, EROFS, ...)
///   --probability P   fire on this share of matches, 0 < P <= 1 (default 1)
///   --seed S          seed of those draws: the same seed and the same
///                     requests give the same faults (shown by `list`)
///   --after N         let the first N matches through
///   --count N         stop after N faults
///   --delay-ms MS     wait MS (up to 600000) before answering; alone: a
///                     slow disk. Cleared rules wake waiting requests
///   --short-write B   (--op write) store and report at most B bytes
///   --pid PID         only requests of this process (or thread)
///
/// While a rule exists the kernel caches nothing it covers (no attribute,
/// entry or listing cache; files opened for direct I/O), so every request
/// reaches the rule; `clear` gives caching back. Rules are tried in the
/// order they were added; the first that fires decides.
///
/// Exit codes: 0 done; 2 refused or failed, with one line on stderr.
#[derive(Parser, Debug)]
#[command(name = "triefs fault", bin_name = "triefs fault", verbatim_doc_comment)]
#[command(subcommand_required = true)]
pub(crate) struct FaultCli {
    #[command(subcommand)]
    pub(crate) cmd: FaultCmd,
}

#[derive(Subcommand, Debug)]
pub(crate) enum FaultCmd {
    /// Add a rule; prints its id.
    Add {
        /// The triefs mount point.
        mountpoint: PathBuf,
        /// PREFIX and the rule's options (see `triefs fault --help`).
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true, trailing_var_arg = true)]
        rule: Vec<String>,
    },
    /// Every rule: id, the rule, how often it matched and fired.
    List {
        /// The triefs mount point.
        mountpoint: PathBuf,
    },
    /// Remove rule ID, or every rule.
    Clear {
        /// The triefs mount point.
        mountpoint: PathBuf,
        /// The rule's id (default: all).
        id: Option<u32>,
    },
}

/// Print one line per request the daemon of a mounted triefs serves, until
/// interrupted: time, pid, process name, uid, request, path, result (an
/// errno name, or OK), latency; `[fault N]` when rule N decided it.
///
/// Requests the kernel answers from its caches (attributes, names, pages,
/// listings) never reach the daemon and are not shown; mount with
/// `-o trace_uncached` for a complete trace (every request then reaches
/// the daemon: slower). Only the mount's owner and root may trace. A
/// reader that falls behind loses lines and is told how many (a `#` line).
/// A running trace holds the mount's root open: stop it before `umount`.
///
/// Exit codes: 0 interrupted (SIGINT, SIGTERM); 2 refused or failed.
#[derive(Parser, Debug)]
#[command(name = "triefs trace", bin_name = "triefs trace", verbatim_doc_comment)]
pub(crate) struct TraceCli {
    /// JSON lines: time, pid, comm, uid, op, path, path2, offset, size,
    /// name (of an extended attribute), result, errno, fault, latency_us.
    #[arg(long)]
    pub(crate) json: bool,
    /// The triefs mount point.
    pub(crate) mountpoint: PathBuf,
    /// Only requests on this path or below (as a fault rule's prefix).
    pub(crate) prefix: Option<String>,
}

/// List the leaf paths (files, symlinks, empty directories) under PREFIX
/// of a mounted triefs, answered by the daemon from the trie, as absolute
/// paths inside the mount.
///
/// Exit codes: 0 fine; 1 something was left out, like find: directories
/// the caller may not list, or paths longer than 4096 bytes (each named on
/// stderr); 2 errors (not a triefs mount, no such prefix).
#[derive(Parser, Debug)]
#[command(
    name = "triefs ls-prefix",
    bin_name = "triefs ls-prefix",
    verbatim_doc_comment
)]
pub(crate) struct LsPrefixCli {
    /// Print paths as they come, unsorted.
    #[arg(short = 'U', long)]
    pub(crate) unsorted: bool,

    /// A directory of a mounted triefs, usually its mount point.
    pub(crate) mountpoint: PathBuf,

    /// Only paths under this one, relative to MOUNTPOINT (default: all).
    pub(crate) prefix: Option<OsString>,
}

/// Parses a command line with clap, reporting as every triefs command
/// does: `--help` and `--version` on stdout with exit 0, a mistake as one
/// line on stderr with exit 2 (not clap's usage block and tips). `bare`
/// is a hint for when the command word was given alone.
pub(crate) fn parse_args<P: Parser>(
    args: Vec<OsString>,
    bare: Option<&str>,
) -> Result<P, ExitCode> {
    let alone = args.len() <= 1;
    P::try_parse_from(args).map_err(|e| {
        use clap::error::ErrorKind;
        if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
            let _ = e.print();
            return Exit::Ok.into();
        }
        let cmd = P::command();
        let line = if matches!(
            e.kind(),
            ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        ) {
            // clap would print the whole help on stderr here.
            let subs: Vec<&str> = cmd
                .get_subcommands()
                .map(|c| c.get_name())
                .filter(|n| *n != "help")
                .collect();
            format!("a subcommand is needed: {}", subs.join(", "))
        } else {
            // The error proper is the first paragraph; the rest is usage.
            let text = e.to_string();
            let first = text.split("\n\n").next().unwrap_or_default();
            let line = first
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            line.strip_prefix("error: ").unwrap_or(&line).to_string()
        };
        let name = cmd.get_name().to_string();
        match bare.filter(|_| alone) {
            Some(hint) => eprintln!("triefs: {line}; {hint}"),
            None => eprintln!("triefs: {line} (see `{name} --help`)"),
        }
        Exit::Failed.into()
    })
}

/// The hint for a command word given alone, which may have been meant as
/// a mount point.
pub(crate) fn bare_hint(word: &str) -> String {
    format!("to mount on a directory named {word}, write `triefs ./{word}`")
}
