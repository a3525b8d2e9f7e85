//! The daemon: detach, mount, serve, and unmount on signals.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
#[cfg(target_os = "linux")]
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use fuser::{Config, MountOption, Session, SessionUnmounter};
use log::{debug, error, info, warn};
use parking_lot::RwLock;

use triefs::fuse::TrieFs;
use triefs::image::status::{self, StatusFile};
use triefs::image::{self};
#[cfg(target_os = "linux")]
use triefs::mount::mount_fuse;
use triefs::mount::mountinfo::is_mount_point;
use triefs::mount::options::MountOpts;
use triefs::namespace::inode::ROOT_INO;
use triefs::namespace::{Limits, Namespace, SetAttr};
use triefs::sys::{self, Forked, SignalSet};

use crate::cli::*;
use crate::commands::image::*;
use crate::exit::*;
use crate::logging::*;
use crate::paths::*;
use crate::preflight::*;
use crate::saving::*;

/// The signals the daemon handles: SIGINT, SIGTERM, SIGHUP unmount;
/// SIGUSR1 saves the image.
pub(crate) fn signal_set() -> SignalSet {
    SignalSet::of(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1])
}

/// Forks; the parent waits until the child reports the mount live (exit 0)
/// or failed (its message, exit 2). Returns the pipe to report on.
pub(crate) fn daemonize() -> Result<OwnedFd, Fatal> {
    // Close-on-exec on every platform.
    let (rd, wr) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let (rd, wr) = (OwnedFd::from(rd), OwnedFd::from(wr));
    // No other threads exist yet, so the child is a whole copy.
    match sys::fork().map_err(|e| format!("fork: {e}"))? {
        Forked::Child => {
            drop(rd);
            sys::setsid().map_err(|e| format!("setsid: {e}"))?;
            Ok(wr)
        }
        Forked::Parent(_) => {
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

/// How to unmount on a signal.
pub(crate) enum Unmount {
    /// We called mount(2) ourselves: umount2, lazily if busy.
    #[cfg(target_os = "linux")]
    Direct,
    /// fuser mounted (through fusermount3): its unmounter knows how.
    Fuser(SessionUnmounter),
}

impl Unmount {
    pub(crate) fn run(self, mp: &Path) {
        match self {
            #[cfg(target_os = "linux")]
            Unmount::Direct => {
                let Ok(c) = std::ffi::CString::new(mp.as_os_str().as_bytes()) else {
                    return;
                };
                if sys::umount(&c, 0).is_err() {
                    info!("unmount of {} busy; detaching lazily", mp.display());
                    if let Err(e) = sys::umount(&c, libc::MNT_DETACH) {
                        error!("unmount of {} failed: {e}", mp.display());
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
pub(crate) fn start_session(
    fs: TrieFs,
    mountpoint: &Path,
    opts: &MountOpts,
    config: &Config,
) -> std::io::Result<(Session<TrieFs>, Unmount)> {
    let root = sys::euid() == 0;
    if cfg!(target_os = "linux") && root {
        #[cfg(target_os = "linux")]
        {
            let fd = mount_fuse(
                mountpoint,
                &opts.mount,
                &opts.kernel_flags,
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
    if !opts.kernel_flags.is_empty() {
        // fusermount3 (3.14) knows none of them, and they change nothing
        // a FUSE mount does: the kernel never updates atimes of FUSE
        // inodes itself (S_NOATIME), the daemon decides.
        debug!(
            "-o {}: not passed to fusermount3 (no effect on FUSE mounts)",
            opts.kernel_flags.join(",")
        );
    }
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
pub(crate) fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            if let Err(e) = sys::dup2(&null, fd) {
                error!("detaching descriptor {fd}: {e}");
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
pub(crate) fn tune_malloc() {
    let unset = |v: &str| std::env::var_os(v).is_none();
    sys::tune_malloc(
        unset("MALLOC_ARENA_MAX").then_some(1),
        unset("MALLOC_TOP_PAD_").then_some(8 << 20),
    );
}

/// The image's status file, taken, and what the previous daemon left in it.
type TakenStatus = (StatusFile, Option<status::Status>);

/// The namespace to serve: loaded from the image when there is one (its
/// status file taken first, so that a second daemon on the same image
/// stops before serving), else empty with the root's `-o` owner and mode;
/// then the `--paths` list added, then the `--paths-files` listing, then
/// the `--from-tar` archive.
fn build_namespace(
    cli: &Cli,
    opts: &MountOpts,
    image_path: Option<&Path>,
) -> Result<(Namespace, Option<TakenStatus>), Fatal> {
    let (uid, gid) = (sys::uid(), sys::gid());
    let limits = Limits::from_options(opts.size, opts.nr_inodes);
    let empty = || {
        Namespace::new(
            opts.uid.unwrap_or(uid),
            opts.gid.unwrap_or(gid),
            opts.mode.unwrap_or(0o755),
            limits,
        )
    };
    let mut status: Option<TakenStatus> = None;
    if let Some(p) = image_path {
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
    let mut ns = match image_path {
        Some(p) if p.exists() => {
            let t = std::time::Instant::now();
            match image::load_from_path(p, limits) {
                Ok((mut ns, sum)) => {
                    // Inodes saved from a load still share their
                    // attributes: let them share again.
                    ns.settle_after_load(std::time::SystemTime::now());
                    info!(
                        "loaded image {}: {} inodes, {} entries, {} bytes, {} checkpoints in {:?}",
                        p.display(),
                        sum.inodes,
                        sum.entries,
                        sum.data_bytes,
                        sum.checkpoints,
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
    let dirs = cli.paths.as_ref().or(opts.paths.as_ref());
    let files = cli.paths_files.as_ref().or(opts.paths_files.as_ref());
    let tar = cli.from_tar.as_ref().or(opts.tar.as_ref());
    let stdin = Path::new("-");
    let reads_stdin = |p: Option<&PathBuf>| p.is_some_and(|p| p == stdin);
    if reads_stdin(dirs) && reads_stdin(files) {
        return Err("--paths and --paths-files cannot both read stdin ('-')".into());
    }
    if reads_stdin(tar) && (reads_stdin(dirs) || reads_stdin(files)) {
        return Err("--from-tar and --paths or --paths-files cannot both read stdin ('-')".into());
    }
    let since = std::time::SystemTime::now();
    if let Some(p) = dirs {
        load_paths(&mut ns, p, uid, gid)?;
    }
    if let Some(p) = files {
        load_paths_files(&mut ns, p, uid, gid)?;
    }
    if dirs.is_some() || files.is_some() {
        let shared = ns.settle_after_load(since);
        info!("{shared} loaded inodes share their attributes");
    }
    if let Some(p) = tar {
        // After the listings' settling, which would stamp the archive's
        // times with the load's.
        load_tar(&mut ns, p)?;
        // The archive's root member set the root's attributes, as `tar
        // -xpf` does; what -o says explicitly wins.
        if opts.mode.is_some() || opts.uid.is_some() || opts.gid.is_some() {
            ns.setattr(
                ROOT_INO,
                SetAttr {
                    mode: opts.mode,
                    uid: opts.uid,
                    gid: opts.gid,
                    ..SetAttr::default()
                },
            )
            .map_err(|e| format!("setting the root's -o mode/uid/gid: {e}"))?;
        }
        let shared = ns.share_unchanged();
        info!("{shared} inodes share their attributes");
    }

    Ok((ns, status))
}

/// The namespace being served, and the image it is saved to (if any).
type Served = (Arc<RwLock<Namespace>>, Option<Arc<SaveTarget>>);

/// Waits for the daemon's signals: SIGUSR1 saves the image; SIGINT,
/// SIGTERM and SIGHUP unmount. `done` tells which of this thread and the
/// end of the session gets to save and exit.
fn spawn_signal_thread(
    set: SignalSet,
    mp: PathBuf,
    unmount: Unmount,
    (ns, image): Served,
    done: Arc<AtomicBool>,
) {
    std::thread::spawn(move || {
        let sig = loop {
            let sig = match set.wait() {
                Ok(sig) => sig,
                Err(e) => {
                    error!("waiting for signals: {e}");
                    continue;
                }
            };
            if sig != libc::SIGUSR1 {
                break sig;
            }
            if let Some(t) = &image {
                let _ = t.save(&ns.read());
            }
        };
        info!("signal {sig}: unmounting {}", mp.display());
        unmount.run(&mp);
        // A busy mount was detached lazily and would keep serving its open
        // files; like libfuse, stop soon rather than wait for them.
        std::thread::sleep(std::time::Duration::from_millis(500));
        if !done.swap(true, Ordering::SeqCst) {
            info!("exiting while the detached mount still had open files");
            let code = match &image {
                Some(t) => {
                    t.unmounted();
                    let failed = t.save(&ns.read()).is_err();
                    t.finish();
                    i32::from(failed)
                }
                None => 0,
            };
            std::process::exit(code);
        }
    });
}

/// Saves the image every `secs` seconds until the session is `done`.
fn spawn_interval_saves(
    secs: u64,
    t: Arc<SaveTarget>,
    ns: Arc<RwLock<Namespace>>,
    done: Arc<AtomicBool>,
) {
    std::thread::spawn(move || {
        while !done.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_secs(secs.max(1)));
            if !done.load(Ordering::SeqCst) {
                let _ = t.save(&ns.read());
            }
        }
    });
}

/// Worker threads a mount for faults adds for delayed requests.
const DELAY_THREADS: usize = 8;

pub(crate) fn run(cli: Cli) -> Result<(), Fatal> {
    tune_malloc();
    let opts = MountOpts::parse(&cli.options)?;
    // The kernel's user_id of the mount is the real uid (fusermount3 and
    // mount_fuse alike), so that decides whether this is a root mount.
    let acl = opts.session_acl(sys::uid() == 0)?;
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
    if image_path.is_some() && (cli.from_tar.is_some() || opts.tar.is_some()) {
        return Err(
            "--from-tar (-o tar=) cannot be used with an image (--image, -o image=): \
                    the image holds the tree to mount; load the archive into a mount without \
                    one"
            .into(),
        );
    }
    if let Some(p) = &image_path {
        check_image_target(p, cli.force_new_image)?;
    }
    // Read before mounting: a bad rule is a one-line error, not a mount
    // that misbehaves in an unexpected way.
    let fault_rules = match &opts.faults {
        Some(Some(file)) => Some(triefs::fault::load_file(file)?),
        Some(None) => Some(Vec::new()),
        None => None,
    };
    check_dev_fuse()?;
    #[cfg(target_os = "linux")]
    if opts.auto_unmount() {
        // Now, while the process is small: the watcher is a fork of it.
        triefs::mount::start_auto_unmount(&mountpoint)
            .map_err(|e| format!("-o auto_unmount: cannot start its watcher: {e}"))?;
    }

    let (mut ns, status) = build_namespace(&cli, &opts, image_path.as_deref())?;
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
    // The mask is inherited by fuser's threads.
    set.block().map_err(|e| format!("blocking signals: {e}"))?;

    let mut config = Config::default();
    config.mount_options = opts.mount.clone();
    config.acl = acl;
    let threads = cli
        .threads
        .map(usize::from)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // A fault's delay holds a worker thread: a mount for faults has spare
    // ones, so requests no rule delays are still served meanwhile.
    let spare = if fault_rules.is_some() {
        DELAY_THREADS
    } else {
        0
    };
    config.n_threads = Some(threads + spare);

    let check_failed = Arc::new(AtomicBool::new(false));
    if opts.crash {
        // The mount is a sync point: what was loaded is durable.
        ns.track_durability();
    }
    let mut fs = TrieFs::new(ns);
    let shared = fs.namespace();
    let notifier = fs.notifier_slot();
    if std::env::var_os("TRIEFS_CHECK").is_some_and(|v| v == "1") {
        fs = fs.check_at_unmount(check_failed.clone());
    }
    if std::env::var_os("TRIEFS_FAULTS").is_some_and(|v| v == "1") {
        fs = fs.with_fault_injection();
    }
    if opts.strict_open {
        fs = fs.serving_opens();
    }
    if fault_rules.is_some() || opts.trace_uncached {
        fs = fs.for_testing(fault_rules, opts.trace_uncached);
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
    // Cold sequential reads come in READs of the readahead's size; only
    // root may raise it (a user's mount keeps the kernel's 128 KiB).
    #[cfg(target_os = "linux")]
    if sys::euid() == 0 {
        use triefs::mount::readahead;
        match readahead::raise(&mountpoint, readahead::READAHEAD_KIB) {
            Ok((was, now)) => debug!("readahead {was} KiB -> {now} KiB"),
            Err(e) => debug!("readahead of {} left as it is: {e}", mountpoint.display()),
        }
    }
    if let Some(fd) = ready {
        let _ = std::fs::File::from(fd).write_all(b"OK");
        detach_stdio();
        DETACHED.store(true, Ordering::Relaxed);
        let _ = std::env::set_current_dir("/");
    }

    let session_done = Arc::new(AtomicBool::new(false));
    let ns_target = (shared.clone(), target.clone());
    spawn_signal_thread(
        set,
        mountpoint.clone(),
        unmount,
        ns_target,
        session_done.clone(),
    );
    if let (Some(secs), Some(t)) = (cli.save_interval, target.clone()) {
        spawn_interval_saves(secs, t, shared.clone(), session_done.clone());
    }

    let result = session.run();
    if session_done.swap(true, Ordering::SeqCst) {
        // The signal thread is already saving and exiting.
        loop {
            std::thread::park();
        }
    }
    if let Some(t) = &target {
        t.unmounted();
        let saved = t.save(&shared.read());
        t.finish();
        if let Err(e) = saved {
            return Err(Fatal::after_log(
                Exit::Reported,
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
            Exit::CheckFailed,
            "consistency check failed at unmount (see the log)".to_string(),
        ));
    }
    Ok(())
}
