//! `triefs trace`: streams the daemon's requests to stdout until SIGINT,
//! SIGTERM or SIGHUP (or until stdout is closed).

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use triefs::sys::SignalSet;

use crate::cli::TraceCli;
use crate::exit::Exit;

/// `triefs trace ...`.
pub(crate) fn trace_command(cli: TraceCli) -> ExitCode {
    let m = cli.mountpoint.display();
    let prefix = cli.prefix.as_deref().unwrap_or("/");
    let prefix = match triefs::fault::parse_prefix(prefix) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("triefs: trace: {e}");
            return Exit::Failed.into();
        }
    };
    // The signals end the stream: a thread waits for them, so the reader
    // is stopped in the daemon before the command exits.
    let stop = Arc::new(AtomicBool::new(false));
    let set = SignalSet::of(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP]);
    if let Err(e) = set.block() {
        eprintln!("triefs: trace: blocking signals: {e}");
        return Exit::Failed.into();
    }
    let flag = stop.clone();
    std::thread::spawn(move || {
        if set.wait().is_ok() {
            flag.store(true, Ordering::SeqCst);
        }
    });
    let mut out = io::BufWriter::new(io::stdout().lock());
    let result = triefs::trace::stream(&cli.mountpoint, &prefix, cli.json, &mut out, &stop);
    let _ = out.flush();
    match result {
        Ok(_) => Exit::Ok.into(),
        // `triefs trace | head`: the reader left; not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Exit::Ok.into(),
        Err(e) => {
            let msg = match e.raw_os_error() {
                Some(libc::ENOTTY) => format!("{m}: not the mount point of a triefs"),
                Some(libc::EPERM) => format!("{m}: only the mount's owner and root may trace it"),
                Some(libc::EBUSY) => format!(
                    "{m}: {} traces run already; stop one first",
                    triefs::trace::MAX_TRACERS
                ),
                Some(libc::ENOENT) if cli.mountpoint.is_dir() => {
                    format!("{m}: the daemon dropped this reader (it did not poll for 30 s)")
                }
                _ => format!("{m}: {e}"),
            };
            eprintln!("triefs: trace: {msg}");
            Exit::Failed.into()
        }
    }
}
