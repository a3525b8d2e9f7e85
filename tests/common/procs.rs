//! Running commands and looking at other processes.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::short_tempdir;

/// Path of the triefs binary built by cargo for the integration tests.
pub fn triefs_bin() -> &'static str {
    env!("CARGO_BIN_EXE_triefs")
}

/// A `/proc/PID/status` field of process `pid` in KiB: `VmRSS` (resident
/// memory), `VmHWM` (its peak).
pub fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Resets the peak resident memory of process `pid` to its current size.
pub fn reset_peak_rss(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
}

/// PIDs of the processes (other than this one) with `arg` as one of their
/// arguments: the daemons serving a mount point, say.
pub fn pids_with_arg(arg: &Path) -> Vec<i32> {
    let me = std::process::id() as i32;
    let want = arg.as_os_str().as_bytes();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == want))
        })
        .collect()
}

/// Whether process `pid` is gone or a zombie (it has exited).
pub fn has_exited(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('Z')))
        .unwrap_or(true)
}

/// Polls `cond` every 10 ms until it holds (true) or `timeout` has passed
/// (false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs a shell command in `cwd`, panicking with its output on failure.
pub fn sh(cwd: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "command failed in {}: {script}\nstdout: {}\nstderr: {}",
        cwd.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a finished (or killed) command printed.
pub struct Output {
    /// `None` when it had to be killed after the timeout.
    pub status: Option<ExitStatus>,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

/// Runs `cmd` with stdin from /dev/null and its output in files (a
/// daemonized grandchild holding them cannot block us), killing it by PID
/// after `timeout`.
pub fn run_timed(mut cmd: Command, timeout: Duration) -> Output {
    let dir = short_tempdir();
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    let mut child = cmd.spawn().expect("spawn");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break Some(st);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    Output {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
}

/// Asserts `out` is an exit (not a kill after the timeout) with `code`,
/// showing its output otherwise.
#[track_caller]
pub fn assert_exit(out: &Output, code: i32, what: &str) {
    let st = out
        .status
        .unwrap_or_else(|| panic!("{what}: did not exit in time; stderr {:?}", out.stderr));
    assert_eq!(
        st.code(),
        Some(code),
        "{what}: exit {st}\nstdout: {:?}\nstderr: {:?}",
        out.stdout,
        out.stderr
    );
}

/// Asserts `out` is an exit with `code` whose stderr is exactly one line,
/// not blank, with no panic (nor backtrace), containing each of
/// `mentions`; returns that line.
#[track_caller]
pub fn assert_one_line_exit(out: &Output, code: i32, what: &str, mentions: &[&str]) -> String {
    assert_exit(out, code, what);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        lines.len() == 1 && !lines[0].trim().is_empty(),
        "{what}: exactly one stderr line expected: {:?}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("panick") && !out.stderr.contains("stack backtrace"),
        "{what}: stderr shows a panic: {:?}",
        out.stderr
    );
    for m in mentions {
        assert!(
            lines[0].contains(m),
            "{what}: stderr should mention {m:?}: {:?}",
            lines[0]
        );
    }
    lines[0].to_string()
}
