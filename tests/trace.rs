//! `triefs trace`: what a reader sees of the requests a program makes on a
//! mounted triefs, in text and JSON, filtered by prefix, complete with
//! `-o trace_uncached`, and who may read it.
// Mount tests drive Linux syscalls and tools.
#![cfg(target_os = "linux")]

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TriefsMount, as_nobody, assert_one_line_exit, run_timed, shared_binary, triefs_bin};

/// A running `triefs trace` and the lines it printed so far.
struct Reader {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Reader {
    /// Starts a reader and waits until it sees requests: it touches a
    /// marker under `marker_dir` until the marker shows up in the trace.
    fn start(root: &Path, extra: &[&str], marker_dir: &str) -> Reader {
        let mut child = Command::new(triefs_bin())
            .arg("trace")
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(l);
            }
        });
        let r = Reader { child, lines };
        let marker = root.join(marker_dir).join("marker");
        let start = Instant::now();
        loop {
            let _ = fs::write(&marker, b"m");
            let _ = fs::remove_file(&marker);
            if r.any(|l| l.contains("/marker")) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the trace shows nothing"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    fn any(&self, f: impl Fn(&str) -> bool) -> bool {
        self.lines.lock().unwrap().iter().any(|l| f(l))
    }

    /// Waits until a line satisfies `f`.
    #[track_caller]
    fn wait_for(&self, what: &str, f: impl Fn(&str) -> bool) {
        let start = Instant::now();
        while !self.any(&f) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no trace line {what}: {:#?}",
                self.lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the reader with SIGINT; its exit status must be 0.
    fn stop(mut self) -> Vec<String> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let st = self.child.wait().unwrap();
        assert!(st.success(), "trace exits 0 on SIGINT: {st}");
        std::thread::sleep(Duration::from_millis(50));
        self.lines.lock().unwrap().clone()
    }
}

fn tid() -> u32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() as u32 }
}

/// The requests of a known sequence of calls, each with this thread's id,
/// uid 0, the right path and the right result.
#[test]
fn trace_lines_show_who_did_what_with_which_result() {
    let m = TriefsMount::new(&[]);
    let root = m.path();
    fs::create_dir(root.join("t")).unwrap();
    let r = Reader::start(root, &[root.to_str().unwrap()], "t");
    fs::create_dir(root.join("t/d")).unwrap();
    fs::write(root.join("t/d/a"), b"hi").unwrap();
    let a = common::cpath(&root.join("t/d/a"));
    // SAFETY: NUL-terminated strings; the value is 1 readable byte.
    let set = unsafe { libc::setxattr(a.as_ptr(), c"user.k".as_ptr(), c"v".as_ptr().cast(), 1, 0) };
    assert_eq!(set, 0, "setxattr");
    fs::rename(root.join("t/d/a"), root.join("t/d/b")).unwrap();
    assert!(fs::metadata(root.join("t/d/missing")).is_err());
    fs::remove_file(root.join("t/d/b")).unwrap();
    let me = tid();
    r.wait_for("unlink", |l| l.contains(" unlink /t/d/b = OK "));
    let lines = r.stop();
    for want in [
        "mkdir /t/d = OK",
        "create /t/d/a = OK",
        "write /t/d/a off=0 len=2 = OK",
        "setxattr /t/d/a name=user.k = OK",
        "rename /t/d/a -> /t/d/b = OK",
        "lookup /t/d/missing = ENOENT",
        "unlink /t/d/b = OK",
    ] {
        let line = lines
            .iter()
            .find(|l| l.contains(want))
            .unwrap_or_else(|| panic!("no line with {want:?}: {lines:#?}"));
        // TIME PID COMM UID OP ...
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f[1], me.to_string(), "the calling thread: {line}");
        assert_eq!(f[3], "0", "uid: {line}");
        assert!(
            f[0].len() == 15 && f[0].as_bytes()[2] == b':',
            "time: {line}"
        );
        assert!(line.ends_with("us"), "latency: {line}");
    }
}

/// `--json`: one object per line with the documented fields, and a prefix
/// keeps other paths out.
#[test]
fn json_lines_and_prefixes() {
    let m = TriefsMount::new(&[]);
    let root = m.path();
    fs::create_dir(root.join("in")).unwrap();
    fs::create_dir(root.join("out")).unwrap();
    let r = Reader::start(root, &["--json", root.to_str().unwrap(), "/in"], "in");
    fs::write(root.join("out/x"), b"1").unwrap();
    fs::write(root.join("in/y"), b"22").unwrap();
    r.wait_for("write", |l| {
        l.contains("\"op\":\"write\"") && l.contains("/in/y")
    });
    let lines = r.stop();
    assert!(
        !lines.iter().any(|l| l.contains("/out")),
        "filtered: {lines:#?}"
    );
    let w = lines
        .iter()
        .find(|l| l.contains("\"op\":\"write\"") && l.contains("/in/y"))
        .unwrap();
    assert!(w.starts_with("{\"time\":\"") && w.ends_with('}'), "{w}");
    for field in [
        format!("\"pid\":{}", tid()),
        "\"uid\":0".into(),
        "\"path\":\"/in/y\"".into(),
        "\"offset\":0,\"size\":2".into(),
        "\"result\":\"OK\",\"errno\":0".into(),
        "\"latency_us\":".into(),
    ] {
        assert!(w.contains(&field), "{field} in {w}");
    }
}

/// Cached answers never reach the daemon; `-o trace_uncached` sends every
/// request, so each `stat` shows.
#[test]
fn trace_uncached_shows_every_request() {
    for (opts, each_time) in [(&[][..], false), (&["-o", "trace_uncached"][..], true)] {
        let m = TriefsMount::new(opts);
        let root = m.path();
        fs::create_dir(root.join("s")).unwrap();
        fs::write(root.join("s/f"), b"x").unwrap();
        fs::metadata(root.join("s/f")).unwrap();
        let r = Reader::start(root, &[root.to_str().unwrap()], "s");
        for _ in 0..5 {
            fs::metadata(root.join("s/f")).unwrap();
            assert_eq!(fs::read(root.join("s/f")).unwrap(), b"x");
        }
        fs::write(root.join("s/end"), b"").unwrap();
        r.wait_for("end", |l| l.contains("/s/end"));
        let lines = r.stop();
        let about_f = |op: &str| {
            lines
                .iter()
                .filter(|l| l.contains(&format!(" {op} /s/f ")))
                .count()
        };
        if each_time {
            assert!(about_f("lookup") >= 5, "{lines:#?}");
            assert!(about_f("read") >= 5, "{lines:#?}");
            assert!(
                about_f("open") >= 5 && about_f("release") >= 5,
                "{lines:#?}"
            );
        } else {
            // The first read reaches the daemon and invalidates the
            // atime (one GETATTR after it); the rest is cached.
            assert!(about_f("lookup") + about_f("getattr") <= 1, "{lines:#?}");
            assert!(about_f("read") <= 1, "{lines:#?}");
        }
    }
}

/// A fault shows in the trace with the rule that decided it.
#[test]
fn faults_show_in_the_trace() {
    let m = TriefsMount::new(&["-o", "faults"]);
    let root = m.path();
    fs::create_dir(root.join("f")).unwrap();
    fs::write(root.join("f/x"), b"x").unwrap();
    let mut add = Command::new(triefs_bin());
    add.args(["fault", "add"])
        .arg(root)
        .args(["/f/x", "--op", "read", "--errno", "EIO"]);
    let out = run_timed(add, Duration::from_secs(30));
    let id = out.stdout.trim().to_string();
    let r = Reader::start(root, &[root.to_str().unwrap()], "f");
    assert!(fs::read(root.join("f/x")).is_err());
    r.wait_for("the fault", |l| l.contains(" read /f/x "));
    let lines = r.stop();
    let l = lines.iter().find(|l| l.contains(" read /f/x ")).unwrap();
    assert!(l.contains(&format!("= EIO [fault {id}]")), "{l}");
}

/// Only the owner and root trace; a reader killed without stopping leaves
/// the mount working, and other readers go on.
#[test]
fn other_users_are_refused_and_killed_readers_do_no_harm() {
    let m = TriefsMount::new(&["-o", "allow_other"]);
    let root = m.path();
    let bin = shared_binary();
    let mut cmd = as_nobody(&bin.path);
    cmd.arg("trace").arg(root);
    let out = run_timed(cmd, Duration::from_secs(30));
    assert_one_line_exit(&out, 2, "nobody traces", &["owner"]);
    let tmp = common::short_tempdir();
    let mut cmd = Command::new(triefs_bin());
    cmd.arg("trace").arg(tmp.path());
    assert_one_line_exit(
        &run_timed(cmd, Duration::from_secs(30)),
        2,
        "not a triefs",
        &["not the mount point of a triefs"],
    );

    fs::create_dir(root.join("k")).unwrap();
    let mut killed = Reader::start(root, &[root.to_str().unwrap()], "k");
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    let r = Reader::start(root, &[root.to_str().unwrap()], "k");
    fs::write(root.join("k/after"), b"1").unwrap();
    r.wait_for("after", |l| l.contains("/k/after"));
    r.stop();
    assert_eq!(fs::read(root.join("k/after")).unwrap(), b"1");
}
