//! Running commands and looking at other processes.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::short_tempdir;

/// Path of the triefs binary built by cargo for the integration tests.
pub fn triefs_bin() -> &'static str {
    env!("CARGO_BIN_EXE_triefs")
}

/// Peak resident memory of process `pid` in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Resets the peak resident memory of process `pid` to its current size.
pub fn reset_peak_rss(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
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

/// Asserts `out` is an exit with `code` and exactly one non-empty line on
/// stderr, no panic, containing each of `mentions`; returns that line.
pub fn assert_one_line_exit(out: &Output, code: i32, what: &str, mentions: &[&str]) -> String {
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
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: one stderr line expected: {:?}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{what}: {:?}", out.stderr);
    for m in mentions {
        assert!(
            lines[0].contains(m),
            "{what}: stderr should mention {m:?}: {:?}",
            lines[0]
        );
    }
    lines[0].to_string()
}
