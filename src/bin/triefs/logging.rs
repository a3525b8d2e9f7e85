//! Logging: env_logger on stderr, or a log file; a detached daemon's
//! errors also go to syslog.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cli::*;
use crate::exit::*;

/// Set once the daemon has detached from the terminal: its stderr is
/// /dev/null from then on, and errors go to syslog as well.
pub(crate) static DETACHED: AtomicBool = AtomicBool::new(false);

/// Sends one error line to syslog (facility daemon, ident `triefs`), where
/// the journal or the system log keeps it.
pub(crate) fn syslog_error(msg: &str) {
    let Ok(c) = CString::new(msg.replace('\0', " ")) else {
        return;
    };
    triefs::sys::syslog_error(c"triefs", &c);
}

/// The daemon's logger: env_logger (stderr or `--log-file`) as configured,
/// and, once detached, triefs's own errors to syslog too. A detached daemon
/// has no stderr and the log file is optional, so without this a failed
/// save would be reported to nobody.
pub(crate) struct DaemonLog(env_logger::Logger);

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

pub(crate) fn init_logging(cli: &Cli) -> Result<(), Fatal> {
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
