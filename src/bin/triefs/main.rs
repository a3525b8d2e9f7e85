//! The `triefs` command: mount an in-memory trie filesystem.

use std::ffi::{CString, OsStr, OsString};
use std::io::{BufRead, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use clap::{ArgAction, Parser, Subcommand};
use fuser::{Config, MountOption, Session, SessionUnmounter};
use log::{debug, error, info, warn};

use triefs::fuse::TrieFs;
use triefs::image::status::{self, OpenError, Report, StatusFile};
use triefs::image::{self, ImageError};
use triefs::lsprefix::Item;
use triefs::mount::helper;
#[cfg(target_os = "linux")]
use triefs::mount::mount_fuse;
use triefs::mount::mountinfo::is_mount_point;
use triefs::mount::options::MountOpts;
use triefs::namespace::{Limits, Namespace};

/// Mount an in-memory filesystem whose directory tree is a trie of path
/// components.
///
/// Everything lives in the daemon's memory and is gone when it is unmounted.
/// Unmount with `umount MOUNTPOINT` or `fusermount3 -u MOUNTPOINT`, or send
/// SIGINT/SIGTERM to the daemon: it unmounts and exits 0.
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
  image=FILE              same as --image FILE (for fstab and mount -t)
  default_permissions     accepted; permission checks are always on
  auto_unmount            unmount when the daemon dies (a watcher process,
                          triefs-watch; does not change who may use it)
  dev, nodev, suid, nosuid, exec, noexec, atime, noatime, sync, async, dirsync
                          passed to the kernel as for any filesystem

MOUNT(8) AND FSTAB:
  Installed as /sbin/mount.fuse.triefs (scripts/install.sh does it), the
  binary serves `mount -t fuse.triefs NAME DIR -o size=1g,mode=0755` and
  fstab lines such as `scratch /mnt/x fuse.triefs size=1g,noauto 0 0`.
  Run as root, such mounts serve every user, like tmpfs (owner_only: not).

OTHER COMMANDS (each has its own --help):
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
  umount /mnt/scratch                      # unmount; the daemon exits 0

Logging: -v (info), -vv (debug: every failed request), -vvv (trace: also the
expected answers to xattr probes); -q silences warnings. RUST_LOG (e.g.
RUST_LOG=triefs=debug) overrides -v/-q. A detached daemon also sends its
errors (a failed save) to syslog.")]
struct Cli {
    /// Directory to mount on (must exist and not already be a mount point).
    mountpoint: PathBuf,

    /// Serve in the foreground instead of detaching.
    #[arg(short, long)]
    foreground: bool,

    /// Before serving, add every path listed in FILE as a directory (with
    /// its missing parents). One path per line, `-` reads stdin, blank lines
    /// are ignored, relative paths are taken from the root.
    #[arg(long, value_name = "FILE")]
    paths: Option<PathBuf>,

    /// Snapshot image: loaded at mount if it exists (a missing file starts
    /// empty), written at unmount, on SIGTERM/SIGINT and on SIGUSR1. Its
    /// directory must be writable. A failed save is logged (to syslog when
    /// detached) and shown by `triefs image info FILE`.
    #[arg(long, value_name = "FILE")]
    image: Option<PathBuf>,

    /// Start empty even if the image cannot be read, and overwrite it at
    /// the next save.
    // Not `requires = "image"`: `-o image=FILE` names the image too.
    #[arg(long)]
    force_new_image: bool,

    /// Also save the image every SECS seconds in the background.
    #[arg(long, value_name = "SECS")]
    save_interval: Option<u64>,

    /// Append log messages to FILE (they go to stderr otherwise, which a
    /// detached daemon no longer has).
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,

    /// Mount options, comma separated; may be repeated. See below.
    #[arg(short = 'o', value_name = "OPT[,OPT...]", action = ArgAction::Append)]
    options: Vec<String>,

    /// Worker threads serving requests (default: number of CPUs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,

    /// More log output (repeatable).
    #[arg(short, long, action = ArgAction::Count)]
    verbose: u8,

    /// Less log output (repeatable).
    #[arg(short, long, action = ArgAction::Count, conflicts_with = "verbose")]
    quiet: u8,
}

/// A one-line error for the user and the exit code (2 unless said).
struct Fatal {
    code: u8,
    msg: String,
    /// Already reported at error level through the log (which a detached
    /// daemon also sends to syslog): not sent there a second time.
    logged: bool,
}

impl Fatal {
    /// An exit after the serving ended whose cause is already in the log.
    fn after_log(code: u8, msg: String) -> Fatal {
        Fatal {
            code,
            msg,
            logged: true,
        }
    }
}

impl<T: Into<String>> From<T> for Fatal {
    fn from(s: T) -> Self {
        Fatal {
            code: 2,
            msg: s.into(),
            logged: false,
        }
    }
}

/// Set once the daemon has detached from the terminal: its stderr is
/// /dev/null from then on, and errors go to syslog as well.
static DETACHED: AtomicBool = AtomicBool::new(false);

/// Sends one error line to syslog (facility daemon, ident `triefs`), where
/// the journal or the system log keeps it.
fn syslog_error(msg: &str) {
    let Ok(c) = CString::new(msg.replace('\0', " ")) else {
        return;
    };
    // SAFETY: the ident is a static C string (openlog keeps the pointer);
    // syslog gets a constant "%s" format and one valid C string for it.
    unsafe {
        libc::openlog(c"triefs".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON);
        libc::syslog(libc::LOG_ERR, c"%s".as_ptr(), c.as_ptr());
    }
}

/// The daemon's logger: env_logger (stderr or `--log-file`) as configured,
/// and, once detached, triefs's own errors to syslog too. A detached daemon
/// has no stderr and the log file is optional, so without this a failed
/// save would be reported to nobody.
struct DaemonLog(env_logger::Logger);

impl DaemonLog {
    fn to_syslog(m: &log::Metadata) -> bool {
        m.level() == log::Level::Error
            && m.target().starts_with("triefs")
            && DETACHED.load(Ordering::Relaxed)
    }
}

impl log::Log for DaemonLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        self.0.enabled(m) || Self::to_syslog(m)
    }

    fn log(&self, r: &log::Record) {
        // env_logger applies its own filters here.
        self.0.log(r);
        if Self::to_syslog(r.metadata()) {
            syslog_error(&r.args().to_string());
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

fn init_logging(cli: &Cli) -> Result<(), Fatal> {
    let level = match (cli.verbose, cli.quiet) {
        (0, 0) => log::LevelFilter::Warn,
        (1, _) => log::LevelFilter::Info,
        (2, _) => log::LevelFilter::Debug,
        (v, _) if v >= 3 => log::LevelFilter::Trace,
        (_, 1) => log::LevelFilter::Error,
        _ => log::LevelFilter::Off,
    };
    let mut b = env_logger::Builder::new();
    b.filter_level(level);
    if cli.verbose < 2 {
        // fuser warns about a failed second unmount after every external
        // `umount`; that is expected and only noise for users.
        b.filter_module("fuser::session", log::LevelFilter::Error);
        b.filter_module("fuser::mnt", log::LevelFilter::Error);
    }
    if let Ok(spec) = std::env::var("RUST_LOG") {
        b.parse_filters(&spec);
    }
    if let Some(path) = &cli.log_file {
        // Kept after detaching, when stderr is gone.
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
        b.target(env_logger::Target::Pipe(Box::new(f)));
    }
    let logger = b.build();
    // Errors pass the global filter even with -qq: syslog wants them.
    let max = logger.filter().max(log::LevelFilter::Error);
    if log::set_logger(Box::leak(Box::new(DaemonLog(logger)))).is_ok() {
        log::set_max_level(max);
    }
    Ok(())
}

/// `path` quoted for a shell command line when it needs quoting.
fn shell_quote(path: &Path) -> String {
    let s = path.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Checks the mount point and returns its canonical path.
fn check_mountpoint(mp: &Path) -> Result<PathBuf, Fatal> {
    let shown = mp.display();
    match std::fs::metadata(mp) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            // Give the one command that works for this user: a process
            // still inside the dead mount (a shell's cwd) makes a plain
            // unmount answer "busy", so the lazy one. Users unmount through
            // the setuid fusermount3; umount(8) is for root.
            // SAFETY: geteuid cannot fail.
            let euid = unsafe { libc::geteuid() };
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

fn check_dev_fuse() -> Result<(), Fatal> {
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

/// Paths logged one by one (`Adding directory ...`) at info level; the
/// rest of a longer list only at debug level.
const CHATTY_PATHS: u64 = 1000;

/// Adds every path listed in `source` (a file or `-` for stdin), line by
/// line as it arrives, reporting progress at info level every second.
fn load_paths(ns: &mut Namespace, source: &Path, uid: u32, gid: u32) -> Result<(), Fatal> {
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
        ns.add_path_logged(OsStr::from_bytes(path), uid, gid, level)
            .map_err(|e| {
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
                    ns.trie().len()
                ),
                None => info!(
                    "{shown}: {added} paths added so far, {} entries",
                    ns.trie().len()
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

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialised by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Forks; the parent waits until the child reports the mount live (exit 0)
/// or failed (its message, exit 2). Returns the pipe to report on.
fn daemonize() -> Result<OwnedFd, Fatal> {
    // Close-on-exec on every platform.
    let (rd, wr) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let (rd, wr) = (OwnedFd::from(rd), OwnedFd::from(wr));
    // SAFETY: no other threads exist yet, so fork is safe.
    match unsafe { libc::fork() } {
        -1 => Err(format!("fork: {}", std::io::Error::last_os_error()).into()),
        0 => {
            drop(rd);
            // SAFETY: plain syscalls in the child.
            unsafe {
                libc::setsid();
            }
            Ok(wr)
        }
        _ => {
            drop(wr);
            let mut msg = Vec::new();
            let _ = std::fs::File::from(rd).read_to_end(&mut msg);
            if msg == b"OK" {
                std::process::exit(0);
            }
            let text = String::from_utf8_lossy(&msg);
            let text = text.trim();
            if text.is_empty() {
                eprintln!("triefs: the daemon exited before the mount was ready");
            } else {
                eprintln!("triefs: {text}");
            }
            std::process::exit(2);
        }
    }
}

/// Where the mount's image goes: its path, and the status file that
/// records how each save went (see `triefs::image::status`). The lock also
/// keeps saves from overlapping: a SIGUSR1 save and an interval save
/// would otherwise write the same temporary file at once.
struct SaveTarget {
    path: PathBuf,
    status: Mutex<Option<StatusFile>>,
}

impl SaveTarget {
    /// Saves the namespace (atomically), logging the outcome and recording
    /// it in the status file.
    fn save(&self, ns: &Namespace) -> std::io::Result<()> {
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

    /// The mount failed: the status file goes back to how it was found.
    fn abandon(&self) {
        drop(self.status.lock().unwrap_or_else(|e| e.into_inner()).take());
    }

    /// The daemon is exiting: the status file goes away after a good last
    /// save, and stays (marked exited) after a failed one.
    fn finish(&self) {
        let taken = self.status.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(Err(e)) = taken.map(StatusFile::finish) {
            warn!(
                "image {}: cannot update its status file: {e}",
                self.path.display()
            );
        }
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
fn check_image_target(p: &Path, force_new: bool) -> Result<(), Fatal> {
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
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&probe)
    };
    let mut made = create();
    if made
        .as_ref()
        .is_err_and(|e| e.kind() == std::io::ErrorKind::AlreadyExists)
    {
        // Left by an earlier process with our pid: ours to remove.
        let _ = std::fs::remove_file(&probe);
        made = create();
    }
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
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
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

/// Takes the image's status file for this daemon, with what the previous
/// daemon left there.
fn take_status(p: &Path) -> Result<(StatusFile, Option<status::Status>), Fatal> {
    let shown = p.display();
    match StatusFile::open(p) {
        Ok(x) => Ok(x),
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
fn warn_previous_status(p: &Path, prev: &status::Status) {
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

/// One line on why an image cannot be loaded, with a hint that fits: for
/// a file that cannot be read, what to check (starting over would only
/// overwrite a file this user may not even read); `--force-new-image` only
/// for a file that was read and found damaged, and only when mounting.
fn image_load_error(path: &Path, e: &ImageError, mounting: bool) -> String {
    let shown = path.display();
    match e {
        ImageError::Io(io) => {
            let hint = match io.raw_os_error() {
                Some(libc::EACCES) | Some(libc::EPERM) => {
                    // SAFETY: geteuid cannot fail.
                    let euid = unsafe { libc::geteuid() };
                    format!("; check its permissions (triefs runs as uid {euid})")
                }
                _ => String::new(),
            };
            format!("image {shown}: cannot read it: {io}{hint}")
        }
        _ if mounting => format!(
            "image {shown}: {e} (the file is left untouched; --force-new-image starts empty and \
             overwrites it)"
        ),
        _ => format!("image {shown}: {e}"),
    }
}

/// Inspect a snapshot image without mounting it.
///
/// Exit codes: 0 fine; 1 the image is readable but its last save failed
/// or its daemon died without its final save (`info` and `check`); 2 the
/// image cannot be read.
#[derive(Parser, Debug)]
#[command(name = "triefs image", bin_name = "triefs image", verbatim_doc_comment)]
#[command(subcommand_required = true)]
struct ImageCli {
    #[command(subcommand)]
    cmd: ImageCmd,
}

#[derive(Subcommand, Debug)]
enum ImageCmd {
    /// Format version, counts, and how the last save went.
    Info {
        /// The image file.
        file: PathBuf,
    },
    /// The leaf paths under PREFIX (default: all), sorted.
    Ls {
        /// The image file.
        file: PathBuf,
        /// Only paths under this one (absolute inside the image).
        prefix: Option<OsString>,
    },
    /// Verify the whole image: checksums, references, the tree's
    /// invariants, and that its last save did not fail.
    Check {
        /// The image file.
        file: PathBuf,
    },
}

/// `triefs image info|ls|check FILE [PREFIX]`.
fn image_command(cli: ImageCli) -> ExitCode {
    let path = match &cli.cmd {
        ImageCmd::Info { file } | ImageCmd::Ls { file, .. } | ImageCmd::Check { file } => {
            file.clone()
        }
    };
    let path = path.as_path();
    let shown = path.display();
    // What the status file says about the last save (see save_status); one
    // that cannot be read is a problem to report, not a reason to refuse
    // the image itself.
    let (problem, lines) = match status::read(path) {
        Ok(report) => describe_report(report.as_ref()),
        Err(e) => {
            let p = format!("cannot read its save status: {e}");
            (Some(p.clone()), vec![format!("last save: {p}")])
        }
    };
    let unlimited = Limits::from_options(Some(0), Some(0));
    let (ns, sum) = match image::load_from_path(path, unlimited) {
        Ok(x) => x,
        Err(e) => {
            let also = problem
                .or_else(|| lines.first().cloned())
                .map_or(String::new(), |p| format!(" ({p})"));
            eprintln!("triefs: {}{also}", image_load_error(path, &e, false));
            return ExitCode::from(2);
        }
    };
    match cli.cmd {
        ImageCmd::Info { .. } => {
            println!("format version: {}", image::VERSION);
            println!("inodes: {}", sum.inodes);
            println!("entries: {}", sum.entries);
            println!("data bytes: {}", sum.data_bytes);
            for l in lines {
                println!("{l}");
            }
        }
        ImageCmd::Check { .. } if problem.is_none() => println!("{shown}: ok"),
        ImageCmd::Check { .. } => {}
        ImageCmd::Ls { prefix, .. } => {
            let node = match &prefix {
                None => Some(ns.trie().root()),
                Some(p) => ns.trie().lookup(p),
            };
            let Some(node) = node else {
                let shown = prefix.map_or("/".into(), |p| p.to_string_lossy().into_owned());
                eprintln!("triefs: {shown}: no such path in the image");
                return ExitCode::from(2);
            };
            let mut out = std::io::stdout().lock();
            for leaf in ns.trie().leaves_under(node) {
                let _ = out.write_all(leaf.as_bytes());
                let _ = out.write_all(b"\n");
            }
            // The listing is what was asked for; a stale image is only
            // worth a warning here.
            if let Some(p) = problem {
                eprintln!("triefs: warning: image {shown}: {p}");
            }
            return ExitCode::SUCCESS;
        }
    }
    match problem {
        Some(p) => {
            eprintln!("triefs: image {shown}: {p}");
            ExitCode::from(1)
        }
        None => ExitCode::SUCCESS,
    }
}

/// Turns a save status into the problem to report (if any) and the lines
/// `triefs image info` prints.
fn describe_report(report: Option<&Report>) -> (Option<String>, Vec<String>) {
    let when = status::format_utc;
    let holds = |st: &status::Status| match st.saved {
        Some(t) => format!("the file holds the save of {}", when(t)),
        None => "the file holds what was there before that mount".to_string(),
    };
    match report {
        None => (None, Vec::new()),
        Some(Report::Serving(st)) => {
            let served = format!(
                "served by: triefs pid {} since {}",
                st.pid,
                when(st.started)
            );
            let (problem, last) = match (&st.failed, st.saved) {
                (Some((t, why)), _) => {
                    let p = format!(
                        "the last save, at {}, FAILED: {why}; {} (the daemon retries at the \
                         next save)",
                        when(*t),
                        holds(st)
                    );
                    (Some(p.clone()), format!("last save: {p}"))
                }
                (None, Some(t)) => (None, format!("last save: {}", when(t))),
                (None, None) => (None, "last save: none yet".to_string()),
            };
            (problem, vec![served, last])
        }
        Some(Report::SaveFailed(st)) => {
            let (t, why) = st.failed.clone().unwrap_or_default();
            let p = format!(
                "the last save, at {}, FAILED: {why}; {}",
                when(t),
                holds(st)
            );
            (Some(p.clone()), vec![format!("last save: {p}")])
        }
        Some(Report::Died(st)) => {
            let p = format!(
                "the daemon that served it (pid {}) ended without its final save; {}",
                st.pid,
                holds(st)
            );
            (Some(p.clone()), vec![format!("last save: {p}")])
        }
    }
}

/// List the leaf paths (files, symlinks, empty directories) under PREFIX
/// of a mounted triefs, answered by the daemon from the trie, as absolute
/// paths inside the mount.
///
/// Exit codes: 0 fine; 1 some directories were left out (permission
/// denied), like find; 2 errors (not a triefs mount, no such prefix).
#[derive(Parser, Debug)]
#[command(
    name = "triefs ls-prefix",
    bin_name = "triefs ls-prefix",
    verbatim_doc_comment
)]
struct LsPrefixCli {
    /// Print paths as they come, unsorted.
    #[arg(short = 'U', long)]
    unsorted: bool,

    /// A directory of a mounted triefs, usually its mount point.
    mountpoint: PathBuf,

    /// Only paths under this one, relative to MOUNTPOINT (default: all).
    prefix: Option<OsString>,
}

/// Parses a command line with clap, reporting as every triefs command
/// does: `--help` and `--version` on stdout with exit 0, a mistake as one
/// line on stderr with exit 2 (not clap's usage block and tips). `bare`
/// is a hint for when the command word was given alone.
fn parse_args<P: Parser>(args: Vec<OsString>, bare: Option<&str>) -> Result<P, ExitCode> {
    let alone = args.len() <= 1;
    P::try_parse_from(args).map_err(|e| {
        use clap::error::ErrorKind;
        if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
            let _ = e.print();
            return ExitCode::SUCCESS;
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
        ExitCode::from(2)
    })
}

/// `triefs ls-prefix [-U] MOUNTPOINT [PREFIX]`: the leaf paths under
/// PREFIX, as absolute paths inside the mount, sorted unless `-U`.
fn ls_prefix_command(cli: LsPrefixCli) -> ExitCode {
    let unsorted = cli.unsorted;
    let mnt = cli.mountpoint.as_path();
    let prefix = cli.prefix.as_ref().map_or(&b""[..], |p| p.as_bytes());
    let prefix = prefix
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect::<Vec<_>>()
        .join(&b'/');
    let dir = mnt.join(OsStr::from_bytes(&prefix));
    let full = |rel: &OsStr| {
        let mut p = Vec::with_capacity(prefix.len() + rel.len() + 2);
        if !prefix.is_empty() {
            p.push(b'/');
            p.extend_from_slice(&prefix);
        }
        if !rel.is_empty() {
            p.push(b'/');
            p.extend_from_slice(rel.as_bytes());
        }
        if p.is_empty() {
            p.push(b'/');
        }
        p.push(b'\n');
        p
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut all: Vec<Vec<u8>> = Vec::new();
    let mut write_err = None;
    let listed = triefs::lsprefix::list(&dir, |item| {
        let rel = match item {
            Item::Path(rel) => rel,
            Item::TooLong { head, len, dir } => {
                let shown = full(head);
                let shown = String::from_utf8_lossy(&shown[..shown.len() - 1]);
                let max = triefs::lsprefix::MAX_PATH;
                if dir {
                    eprintln!(
                        "triefs: ls-prefix: {shown}... is a directory whose path is {len} bytes long: \
                         what lies under it is over the {max}-byte limit and not listed"
                    );
                } else {
                    eprintln!(
                        "triefs: ls-prefix: {shown}... is {len} bytes long, over the {max}-byte limit: not listed"
                    );
                }
                return;
            }
        };
        if unsorted {
            if write_err.is_none()
                && let Err(e) = out.write_all(&full(rel))
            {
                write_err = Some(e);
            }
        } else {
            all.push(full(rel));
        }
    });
    let listed = match listed {
        Ok(l) => l,
        Err(e) => {
            let why = match e.raw_os_error() {
                Some(libc::ENOTTY) | Some(libc::EINVAL) => {
                    "not a directory of a triefs mount".into()
                }
                _ => e.to_string(),
            };
            eprintln!("triefs: ls-prefix {}: {why}", dir.display());
            return ExitCode::from(2);
        }
    };
    all.sort_unstable();
    for line in &all {
        if write_err.is_some() {
            break;
        }
        if let Err(e) = out.write_all(line) {
            write_err = Some(e);
        }
    }
    if let Some(e) = write_err.or_else(|| out.flush().err()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return ExitCode::SUCCESS;
        }
        eprintln!("triefs: ls-prefix: writing the listing: {e}");
        return ExitCode::from(2);
    }
    if listed.skipped {
        eprintln!(
            "triefs: ls-prefix {}: some directories were not listed (permission denied)",
            dir.display()
        );
    }
    if listed.skipped || listed.too_long > 0 {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// How to unmount on a signal.
enum Unmount {
    /// We called mount(2) ourselves: umount2, lazily if busy.
    #[cfg(target_os = "linux")]
    Direct,
    /// fuser mounted (through fusermount3): its unmounter knows how.
    Fuser(SessionUnmounter),
}

impl Unmount {
    fn run(self, mp: &Path) {
        match self {
            #[cfg(target_os = "linux")]
            Unmount::Direct => {
                let Ok(c) = std::ffi::CString::new(mp.as_os_str().as_bytes()) else {
                    return;
                };
                // SAFETY: c is a valid NUL-terminated path.
                unsafe {
                    if libc::umount2(c.as_ptr(), 0) != 0 {
                        info!("unmount of {} busy; detaching lazily", mp.display());
                        libc::umount2(c.as_ptr(), libc::MNT_DETACH);
                    }
                }
            }
            Unmount::Fuser(mut u) => {
                if let Err(e) = u.unmount() {
                    info!("unmount of {} failed: {e}", mp.display());
                }
            }
        }
    }
}

/// Mounts and performs the FUSE handshake, admitting `config.acl` (only
/// `All` or `Owner`, which the kernel enforces itself). As root on Linux
/// we call mount(2) ourselves so the type reads `fuse.triefs`; otherwise
/// fuser goes through fusermount3. `auto_unmount` is never passed on: on
/// Linux the watcher started by `run` does it, for any access.
fn start_session(
    fs: TrieFs,
    mountpoint: &Path,
    opts: &MountOpts,
    config: &Config,
) -> std::io::Result<(Session<TrieFs>, Unmount)> {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if cfg!(target_os = "linux") && root {
        #[cfg(target_os = "linux")]
        {
            let fd = mount_fuse(
                mountpoint,
                &opts.mount,
                config.acl,
                opts.mode.unwrap_or(0o755),
            )?;
            return match Session::from_fd(fs, fd, config.acl, config.clone()) {
                Ok(s) => Ok((s, Unmount::Direct)),
                Err(e) => {
                    Unmount::Direct.run(mountpoint);
                    Err(e)
                }
            };
        }
    }
    let mut config = config.clone();
    if cfg!(target_os = "linux") {
        // fuser would hand it to fusermount3, and refuse it for a mount
        // that admits only its owner.
        config
            .mount_options
            .retain(|o| *o != MountOption::AutoUnmount);
    } else if opts.auto_unmount() && config.acl != fuser::SessionACL::All {
        return Err(std::io::Error::other(
            "-o auto_unmount needs -o allow_other here (only Linux keeps such a mount private)",
        ));
    }
    let mut s = Session::new(fs, mountpoint, &config).map_err(|e| {
        // fusermount3's complaint is about the kernel option; say which
        // -o option needs what, in one line.
        let text = e.to_string();
        if text.contains("user_allow_other") {
            std::io::Error::other(
                "-o allow_other by a non-root user needs user_allow_other in /etc/fuse.conf",
            )
        } else {
            std::io::Error::new(e.kind(), text.trim().replace('\n', "; "))
        }
    })?;
    let u = s.unmount_callable();
    Ok((s, Unmount::Fuser(u)))
}

/// Detaches the daemon's stdio once the mount is up.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe {
                libc::dup2(null.as_raw_fd(), fd);
            }
        }
    }
}

/// File data lives in 4 KiB heap pages. glibc gives the request threads
/// their own arenas and grows a thread arena by one `mprotect` per new
/// page (no top pad there): 131,000 calls per 512 MiB written, about a
/// third of the daemon's time. The main arena, grown with `brk` and an
/// 8 MiB top pad, makes that one call per 2,048 pages; measured: one
/// writer 840 -> 1,210 MiB/s, two writers 950 -> 1,570 MiB/s (medians of
/// 3, `scripts/bench.sh` parallel section). `MALLOC_ARENA_MAX` or
/// `MALLOC_TOP_PAD_` in the environment win.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    let set = |v: &str| std::env::var_os(v).is_some();
    // SAFETY: mallopt only changes allocator parameters; called before the
    // request threads exist.
    unsafe {
        if !set("MALLOC_ARENA_MAX") {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
        if !set("MALLOC_TOP_PAD_") {
            libc::mallopt(libc::M_TOP_PAD, 8 << 20);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}

fn run(cli: Cli) -> Result<(), Fatal> {
    tune_malloc();
    let opts = MountOpts::parse(&cli.options)?;
    // The kernel's user_id of the mount is the real uid (fusermount3 and
    // mount_fuse alike), so that decides whether this is a root mount.
    // SAFETY: getuid cannot fail.
    let acl = opts.session_acl(unsafe { libc::getuid() } == 0)?;
    let mountpoint = check_mountpoint(&cli.mountpoint)?;
    // Absolute: a detached daemon works from `/`, where a relative path
    // would name another file (or none) at the first save.
    let image_path = match cli.image.clone().or(opts.image.clone()) {
        Some(p) => {
            Some(std::path::absolute(&p).map_err(|e| format!("image {}: {e}", p.display()))?)
        }
        None => None,
    };
    if image_path.is_none() && (cli.force_new_image || cli.save_interval.is_some()) {
        return Err(
            "--force-new-image and --save-interval need an image (--image FILE or -o image=FILE)"
                .into(),
        );
    }
    if let Some(p) = &image_path {
        check_image_target(p, cli.force_new_image)?;
    }
    check_dev_fuse()?;
    #[cfg(target_os = "linux")]
    if opts.auto_unmount() {
        // Now, while the process is small: the watcher is a fork of it.
        triefs::mount::start_auto_unmount(&mountpoint)
            .map_err(|e| format!("-o auto_unmount: cannot start its watcher: {e}"))?;
    }

    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let limits = Limits::from_options(opts.size, opts.nr_inodes);
    let empty = || {
        Namespace::new(
            opts.uid.unwrap_or(uid),
            opts.gid.unwrap_or(gid),
            opts.mode.unwrap_or(0o755),
            limits,
        )
    };
    let mut status: Option<(StatusFile, Option<status::Status>)> = None;
    if let Some(p) = &image_path {
        let n = image::remove_stale_temps(p);
        if n > 0 {
            info!(
                "removed {n} temporary file(s) of interrupted saves of {}",
                p.display()
            );
        }
        // Taken before loading: a second daemon on the same image stops
        // here, before it could serve and later overwrite the first's saves.
        status = Some(take_status(p)?);
    }
    let mut ns = match &image_path {
        Some(p) if p.exists() => {
            let t = std::time::Instant::now();
            match image::load_from_path(p, limits) {
                Ok((ns, sum)) => {
                    info!(
                        "loaded image {}: {} inodes, {} entries, {} bytes in {:?}",
                        p.display(),
                        sum.inodes,
                        sum.entries,
                        sum.data_bytes,
                        t.elapsed()
                    );
                    ns
                }
                Err(e) if cli.force_new_image => {
                    log::warn!(
                        "image {}: {e}; starting empty (--force-new-image)",
                        p.display()
                    );
                    empty()
                }
                Err(e) => return Err(image_load_error(p, &e, true).into()),
            }
        }
        _ => empty(),
    };
    if let Some(p) = cli.paths.as_ref().or(opts.paths.as_ref()) {
        load_paths(&mut ns, p, uid, gid)?;
    }

    // Loaded: now the previous daemon's record can be reported, and ours
    // written (a full disk stops the mount here, not the save at unmount).
    let mut status = match (status, &image_path) {
        (Some((mut sf, prev)), Some(p)) => {
            if let Some(prev) = &prev {
                warn_previous_status(p, prev);
            }
            if let Err(e) = sf.start() {
                return Err(format!(
                    "image {}: cannot write its status file {}: {e}",
                    p.display(),
                    status::status_path(p).display()
                )
                .into());
            }
            Some(sf)
        }
        _ => None,
    };
    let ready = if cli.foreground {
        None
    } else {
        Some(daemonize()?)
    };
    if let Some(Err(e)) = status.as_mut().map(|s| s.set_pid(std::process::id())) {
        warn!("cannot update the image's status file: {e}");
    }
    let target = image_path.map(|path| {
        Arc::new(SaveTarget {
            path,
            status: Mutex::new(status),
        })
    });

    // Block the signals in every thread; one thread waits for them.
    let set = signal_set();
    // SAFETY: set is initialised; the mask is inherited by fuser's threads.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }

    let mut config = Config::default();
    config.mount_options = opts.mount.clone();
    config.acl = acl;
    let threads = cli
        .threads
        .map(usize::from)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    config.n_threads = Some(threads);

    let check_failed = Arc::new(AtomicBool::new(false));
    let mut fs = TrieFs::new(ns);
    let shared = fs.namespace();
    let notifier = fs.notifier_slot();
    if std::env::var_os("TRIEFS_CHECK").is_some_and(|v| v == "1") {
        fs = fs.check_at_unmount(check_failed.clone());
    }
    if std::env::var_os("TRIEFS_FAULTS").is_some_and(|v| v == "1") {
        fs = fs.with_fault_injection();
    }
    let started = start_session(fs, &mountpoint, &opts, &config);
    let (session, unmount) = match started {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("cannot mount on {}: {e}", mountpoint.display());
            // Never served: the image's status file goes back as it was
            // (exit() below skips destructors).
            if let Some(t) = &target {
                t.abandon();
            }
            if let Some(fd) = ready {
                let _ = std::fs::File::from(fd).write_all(msg.as_bytes());
                std::process::exit(2);
            }
            return Err(msg.into());
        }
    };
    let _ = notifier.set(session.notifier());
    info!(
        "mounted triefs on {} ({threads} threads)",
        mountpoint.display()
    );
    if let Some(fd) = ready {
        let _ = std::fs::File::from(fd).write_all(b"OK");
        detach_stdio();
        DETACHED.store(true, Ordering::Relaxed);
        let _ = std::env::set_current_dir("/");
    }

    let mp = mountpoint.clone();
    let session_done = Arc::new(AtomicBool::new(false));
    let done = session_done.clone();
    let (sig_ns, sig_image) = (shared.clone(), target.clone());
    std::thread::spawn(move || {
        let sig = loop {
            let mut sig = 0;
            // SAFETY: set is a valid, initialised signal set.
            unsafe {
                libc::sigwait(&set, &mut sig);
            }
            if sig != libc::SIGUSR1 {
                break sig;
            }
            if let Some(t) = &sig_image {
                let _ = t.save(&sig_ns.read());
            }
        };
        info!("signal {sig}: unmounting {}", mp.display());
        unmount.run(&mp);
        // A busy mount was detached lazily and would keep serving its open
        // files; like libfuse, stop soon rather than wait for them.
        std::thread::sleep(std::time::Duration::from_millis(500));
        if !done.swap(true, Ordering::SeqCst) {
            info!("exiting while the detached mount still had open files");
            let code = match &sig_image {
                Some(t) => {
                    let failed = t.save(&sig_ns.read()).is_err();
                    t.finish();
                    i32::from(failed)
                }
                None => 0,
            };
            std::process::exit(code);
        }
    });
    if let (Some(secs), Some(t)) = (cli.save_interval, target.clone()) {
        let (ns, done) = (shared.clone(), session_done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_secs(secs.max(1)));
                if !done.load(Ordering::SeqCst) {
                    let _ = t.save(&ns.read());
                }
            }
        });
    }

    let result = session.run();
    if session_done.swap(true, Ordering::SeqCst) {
        // The signal thread is already saving and exiting.
        loop {
            std::thread::park();
        }
    }
    if let Some(t) = &target {
        let saved = t.save(&shared.read());
        t.finish();
        if let Err(e) = saved {
            return Err(Fatal::after_log(
                1,
                format!("saving image {}: {e}", t.path.display()),
            ));
        }
    }
    match result {
        // A read racing with the connection's teardown at unmount gets
        // ECONNABORTED instead of ENODEV, and fuser 0.18 ends only on the
        // latter quietly; the mount being gone tells an unmount from an
        // abort (which leaves a dead mount behind).
        Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) && !is_mount_point(&mountpoint) => {
            debug!("session ended by unmount ({e})");
        }
        Err(e) => {
            error!("session ended with an error: {e}");
            return Err(format!("serving {} failed: {e}", mountpoint.display()).into());
        }
        Ok(()) => {}
    }
    info!("unmounted {}", mountpoint.display());
    if check_failed.load(Ordering::SeqCst) {
        return Err(Fatal::after_log(
            3,
            "consistency check failed at unmount (see the log)".to_string(),
        ));
    }
    Ok(())
}

/// The hint for a command word given alone, which may have been meant as
/// a mount point.
fn bare_hint(word: &str) -> String {
    format!("to mount on a directory named {word}, write `triefs ./{word}`")
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // The mount helper first: its first argument is the mount's source,
    // which may well be called `image`.
    let args = match argv.first() {
        Some(argv0) if helper::is_mount_helper(argv0) => match helper::translate(&argv[1..]) {
            Ok(helper::HelperCall::Run(args)) => args,
            Ok(helper::HelperCall::Fake) => return ExitCode::SUCCESS,
            Err(msg) => {
                eprintln!("triefs: {msg}");
                return ExitCode::from(2);
            }
        },
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
        return ExitCode::from(f.code);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if DETACHED.load(Ordering::Relaxed) {
                // Nobody reads a detached daemon's stderr.
                if !f.logged {
                    syslog_error(&f.msg);
                }
            } else {
                eprintln!("triefs: {}", f.msg);
            }
            ExitCode::from(f.code)
        }
    }
}
