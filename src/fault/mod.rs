//! `triefs fault`: rules that make requests fail, stall or write short,
//! their one text syntax (command line, `-o faults=FILE`, the wire), and
//! the decision for one request. Plain Rust: the adapter in `crate::fuse`
//! asks [`Rules::decide`] before serving a request.
//!
//! A rule is `PREFIX --op OPS [--errno NAME] [--probability P] [--seed S]
//! [--after N] [--count N] [--delay-ms MS] [--short-write BYTES] [--pid
//! PID]`. It matches a request of one of `OPS` on `PREFIX` or below it
//! (whole components: `/db` covers `/db/x`, not `/dbx`), from process
//! `PID` if given; the first `N` matches (`--after`) pass; then each match
//! fires with probability `P` (a reproducible draw from `--seed`) until
//! `--count` faults fired. A firing rule waits `--delay-ms`, then answers
//! `--errno`, or (writes) stores only `--short-write` bytes and says so,
//! or (a delay alone) serves the request late. Rules are tried in the
//! order they were added; the first that fires decides.

mod client;
pub mod wire;

pub use client::{add, clear, list};

use std::fmt::Write as _;
use std::time::Duration;

use crate::error::Errno;
use crate::request::{Op, OpSet};

/// Most rules at once.
pub const MAX_RULES: usize = 64;

/// Longest rule line, in bytes.
pub const MAX_LINE: usize = 8192;

/// Longest prefix, in bytes (PATH_MAX).
pub const MAX_PREFIX: usize = 4096;

/// Longest delay: ten minutes. A delayed request holds a worker thread.
pub const MAX_DELAY_MS: u64 = 600_000;

/// Largest rule file `-o faults=FILE` reads.
pub const MAX_FILE: u64 = 1 << 20;

/// A rule as written: what it matches and what it does.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// Path inside the mount, from its root: `/` or `/a/b` (no trailing
    /// slash, no `.` or `..`).
    pub prefix: Vec<u8>,
    /// Requests it matches.
    pub ops: OpSet,
    /// The error to answer.
    pub errno: Option<Errno>,
    /// Chance that a match fires, in (0, 1].
    pub probability: f64,
    /// Seed of the draws (chosen and shown by `list` when not given).
    pub seed: Option<u64>,
    /// Matches that pass before the rule may fire.
    pub after: u64,
    /// Faults after which the rule stops firing.
    pub count: Option<u64>,
    /// Milliseconds to wait before answering.
    pub delay_ms: u64,
    /// Bytes a write stores and reports, at most.
    pub short_write: Option<u32>,
    /// Only requests of this process (thread group), or of this thread.
    pub pid: Option<u32>,
}

impl Spec {
    /// Parses a rule from its words (the command line after the mount
    /// point, or one line of a rule file split at white space). The error
    /// is one line naming what is wrong.
    pub fn parse<S: AsRef<str>>(words: &[S]) -> Result<Spec, String> {
        let mut it = words.iter().map(AsRef::as_ref);
        let Some(prefix) = it.next() else {
            return Err("a rule starts with the path prefix it covers".into());
        };
        if prefix.starts_with("--") {
            return Err(format!(
                "'{prefix}': a rule starts with the path prefix it covers"
            ));
        }
        let mut spec = Spec {
            prefix: parse_prefix(prefix)?,
            ops: OpSet::EMPTY,
            errno: None,
            probability: 1.0,
            seed: None,
            after: 0,
            count: None,
            delay_ms: 0,
            short_write: None,
            pid: None,
        };
        let mut seen_ops = false;
        while let Some(word) = it.next() {
            let (flag, inline) = match word.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v)),
                _ => (word, None),
            };
            let mut value = || -> Result<&str, String> {
                inline
                    .or_else(|| it.next())
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag {
                "--op" => {
                    spec.ops = OpSet::parse(value()?).map_err(|e| format!("--op {e}"))?;
                    seen_ops = true;
                }
                "--errno" => {
                    let v = value()?;
                    let e = Errno::from_name(v).ok_or_else(|| {
                        format!("--errno '{v}': not an errno name (EIO, ENOSPC, ...)")
                    })?;
                    if e.code() == libc::ENOSYS {
                        // The kernel takes ENOSYS as "not implemented" and
                        // stops sending the request for good.
                        return Err("--errno ENOSYS would switch the request off for the \
                                    whole mount; pick another error"
                            .into());
                    }
                    spec.errno = Some(e);
                }
                "--probability" => {
                    let v = value()?;
                    spec.probability = v
                        .parse::<f64>()
                        .ok()
                        .filter(|p| *p > 0.0 && *p <= 1.0)
                        .ok_or_else(|| format!("--probability '{v}': a number in (0, 1]"))?;
                }
                "--seed" => spec.seed = Some(number(flag, value()?, u64::MAX)?),
                "--after" => spec.after = number(flag, value()?, u64::MAX)?,
                "--count" => {
                    let c = number(flag, value()?, u64::MAX)?;
                    if c == 0 {
                        return Err("--count 0 would never fire".into());
                    }
                    spec.count = Some(c);
                }
                "--delay-ms" => spec.delay_ms = number(flag, value()?, MAX_DELAY_MS)?,
                "--short-write" => {
                    spec.short_write = Some(number(flag, value()?, u64::from(u32::MAX))? as u32)
                }
                "--pid" => {
                    let p = number(flag, value()?, u64::from(u32::MAX))?;
                    if p == 0 {
                        return Err("--pid 0: not a process".into());
                    }
                    spec.pid = Some(p as u32);
                }
                _ => return Err(format!("'{word}': not a rule option")),
            }
        }
        if !seen_ops {
            return Err("--op is missing (which requests: write, read, all, ...)".into());
        }
        if spec.errno.is_none() && spec.delay_ms == 0 && spec.short_write.is_none() {
            return Err("the rule does nothing: give --errno, --delay-ms or --short-write".into());
        }
        if spec.short_write.is_some() {
            if spec.ops != OpSet::EMPTY.with(Op::Write) {
                return Err("--short-write applies to --op write alone".into());
            }
            if spec.errno.is_some() {
                return Err("--short-write and --errno exclude each other".into());
            }
        }
        Ok(spec)
    }

    /// Parses one line of a rule file: words split at white space; empty
    /// lines and `#` comments give `None`.
    pub fn parse_line(line: &str) -> Result<Option<Spec>, String> {
        if line.len() > MAX_LINE {
            return Err(format!("a rule is longer than {MAX_LINE} bytes"));
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(None);
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        Spec::parse(&words).map(Some)
    }

    /// The rule in the syntax [`Spec::parse_line`] reads back (the prefix
    /// escaped: `\xNN` for white space, `\`, control and non-ASCII bytes).
    pub fn to_line(&self) -> String {
        let mut s = escape(&self.prefix);
        let _ = write!(s, " --op {}", self.ops.names());
        if let Some(e) = self.errno {
            let _ = match e.name() {
                Some(n) => write!(s, " --errno {n}"),
                None => write!(s, " --errno {}", e.code()),
            };
        }
        if self.probability < 1.0 {
            let _ = write!(s, " --probability {}", self.probability);
        }
        if let Some(seed) = self.seed {
            let _ = write!(s, " --seed {seed}");
        }
        if self.after > 0 {
            let _ = write!(s, " --after {}", self.after);
        }
        if let Some(c) = self.count {
            let _ = write!(s, " --count {c}");
        }
        if self.delay_ms > 0 {
            let _ = write!(s, " --delay-ms {}", self.delay_ms);
        }
        if let Some(b) = self.short_write {
            let _ = write!(s, " --short-write {b}");
        }
        if let Some(p) = self.pid {
            let _ = write!(s, " --pid {p}");
        }
        s
    }

    /// Whether `path` is the prefix or below it.
    pub fn covers(&self, path: &[u8]) -> bool {
        covers(&self.prefix, path)
    }
}

/// Whether `path` is `prefix` or below it, by whole components.
pub fn covers(prefix: &[u8], path: &[u8]) -> bool {
    prefix == b"/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
}

fn number(flag: &str, v: &str, max: u64) -> Result<u64, String> {
    v.parse::<u64>()
        .ok()
        .filter(|&n| n <= max)
        .ok_or_else(|| format!("{flag} '{v}': a whole number up to {max}"))
}

/// `\xNN` and `\\` to bytes.
fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            Some(b'x') => {
                let hex = s
                    .get(i + 2..i + 4)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("'{s}': \\x needs two hex digits"))?;
                out.push(hex);
                i += 4;
            }
            _ => return Err(format!("'{s}': a backslash starts \\\\ or \\xNN")),
        }
    }
    Ok(out)
}

/// Bytes to text [`unescape`] reads back.
pub fn escape(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        if c.is_ascii_graphic() && c != b'\\' {
            s.push(c as char);
        } else if c == b'\\' {
            s.push_str("\\\\");
        } else {
            let _ = write!(s, "\\x{c:02x}");
        }
    }
    s
}

/// A prefix as written (`\xNN` escapes allowed) to its normalized bytes:
/// what a rule and a trace reader match on.
pub fn parse_prefix(written: &str) -> Result<Vec<u8>, String> {
    normalize_prefix(&unescape(written)?)
}

/// `a/b/`, `/a//b` and `/a/./b` to `/a/b`; `..` and NUL are refused (a
/// prefix names a place inside the mount).
pub fn normalize_prefix(p: &[u8]) -> Result<Vec<u8>, String> {
    if p.len() > MAX_PREFIX {
        return Err(format!("the prefix is longer than {MAX_PREFIX} bytes"));
    }
    if p.contains(&0) {
        return Err("the prefix holds a NUL byte".into());
    }
    let mut out = Vec::with_capacity(p.len() + 1);
    for c in p.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("the prefix may not contain '..'".into()),
            c if c.len() > crate::trie::NAME_MAX => {
                return Err("a name in the prefix is longer than 255 bytes".into());
            }
            c => {
                out.push(b'/');
                out.extend_from_slice(c);
            }
        }
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Ok(out)
}

/// What a firing rule does to one request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fault {
    /// The rule's id.
    pub rule: u32,
    /// Wait this long first.
    pub delay: Duration,
    /// Then answer this error.
    pub errno: Option<Errno>,
    /// Or store and report at most this many bytes of a write.
    pub short_write: Option<u32>,
}

/// A rule and what it has seen.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Its id, unique for the mount's life.
    pub id: u32,
    /// What it matches and does (the seed always set).
    pub spec: Spec,
    /// Requests it matched.
    pub matched: u64,
    /// Faults it caused.
    pub fired: u64,
    /// The state of its draws.
    rng: u64,
}

impl Rule {
    /// Whether it can still fire.
    pub fn spent(&self) -> bool {
        self.spec.count.is_some_and(|c| self.fired >= c)
    }
}

/// SplitMix64: a tiny, fast, well-mixed generator; reproducible from its
/// seed, which is all a fault draw needs (nothing here is secret).
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The rules of one mount.
#[derive(Debug, Default)]
pub struct Rules {
    rules: Vec<Rule>,
    next_id: u32,
}

impl Rules {
    /// No rules.
    pub fn new() -> Rules {
        Rules {
            rules: Vec::new(),
            next_id: 1,
        }
    }

    /// Adds a rule; its id. A rule without a seed gets one from the clock
    /// (shown by [`Rules::list`], so a run can be repeated). `ENOSPC` past
    /// [`MAX_RULES`].
    pub fn add(&mut self, mut spec: Spec) -> Result<u32, Errno> {
        if self.rules.len() >= MAX_RULES {
            return Err(Errno::new(libc::ENOSPC));
        }
        let id = self.next_id;
        self.next_id = self
            .next_id
            .checked_add(1)
            .ok_or(Errno::new(libc::ENOSPC))?;
        let seed = *spec.seed.get_or_insert_with(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let mut s = t ^ u64::from(id);
            // Small seeds read better in a list and are as good.
            splitmix(&mut s) % 1_000_000_000
        });
        self.rules.push(Rule {
            id,
            spec,
            matched: 0,
            fired: 0,
            rng: seed,
        });
        Ok(id)
    }

    /// Removes rule `id` (`ENOENT` if there is none), or every rule
    /// (`None`); how many went.
    pub fn clear(&mut self, id: Option<u32>) -> Result<usize, Errno> {
        let before = self.rules.len();
        match id {
            Some(id) => self.rules.retain(|r| r.id != id),
            None => self.rules.clear(),
        }
        let gone = before - self.rules.len();
        if id.is_some() && gone == 0 {
            return Err(Errno::new(libc::ENOENT));
        }
        Ok(gone)
    }

    /// The rules in order.
    pub fn iter(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }

    /// Whether there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether some rule covers `path`: the kernel must not answer requests
    /// on it from its caches.
    pub fn covers(&self, path: &[u8]) -> bool {
        self.rules.iter().any(|r| r.spec.covers(path))
    }

    /// The list `triefs fault list` prints: one rule per line, `ID RULE`
    /// and what it saw.
    pub fn list(&self) -> String {
        self.list_page(0, usize::MAX).0
    }

    /// The lines of [`Rules::list`] from rule index `from`, as many as fit
    /// in `max` bytes (at least one); the index of the next page, if any.
    pub fn list_page(&self, from: usize, max: usize) -> (String, Option<usize>) {
        let mut s = String::new();
        for (i, r) in self.rules.iter().enumerate().skip(from) {
            let line = Self::line(r);
            if !s.is_empty() && s.len() + line.len() > max {
                return (s, Some(i));
            }
            s.push_str(&line);
        }
        (s, None)
    }

    fn line(r: &Rule) -> String {
        format!(
            "{} {}  # matched {}, fired {}{}\n",
            r.id,
            r.spec.to_line(),
            r.matched,
            r.fired,
            if r.spent() { ", spent" } else { "" }
        )
    }

    /// The fault for request `op` on `paths` (its path, and a rename's or
    /// link's second one) from thread `pid`; `tgid` gives its process when
    /// a rule names one. Counts the match and draws, so call it once per
    /// request.
    pub fn decide(
        &mut self,
        op: Op,
        paths: &[&[u8]],
        pid: u32,
        mut tgid: impl FnMut() -> Option<u32>,
    ) -> Option<Fault> {
        if !op.can_fail() {
            return None;
        }
        let mut group = None;
        for r in &mut self.rules {
            let s = &r.spec;
            if !s.ops.contains(op) || !paths.iter().any(|p| s.covers(p)) {
                continue;
            }
            if let Some(want) = s.pid
                && want != pid
                && *group.get_or_insert_with(&mut tgid) != Some(want)
            {
                continue;
            }
            r.matched += 1;
            if r.matched <= s.after || r.spent() {
                continue;
            }
            if s.probability < 1.0 {
                let draw = (splitmix(&mut r.rng) >> 11) as f64 / (1u64 << 53) as f64;
                if draw >= s.probability {
                    continue;
                }
            }
            r.fired += 1;
            return Some(Fault {
                rule: r.id,
                delay: Duration::from_millis(s.delay_ms),
                errno: s.errno,
                short_write: s.short_write,
            });
        }
        None
    }
}

/// Reads a rule file (`-o faults=FILE`): one rule per line, `#` comments.
/// The error names the line.
pub fn load_file(path: &std::path::Path) -> Result<Vec<Spec>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    f.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() as u64 > MAX_FILE {
        return Err(format!("{}: larger than {MAX_FILE} bytes", path.display()));
    }
    let mut specs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        match Spec::parse_line(line) {
            Ok(Some(s)) => specs.push(s),
            Ok(None) => {}
            Err(e) => return Err(format!("{} line {}: {e}", path.display(), n + 1)),
        }
        if specs.len() > MAX_RULES {
            return Err(format!("{}: more than {MAX_RULES} rules", path.display()));
        }
    }
    Ok(specs)
}

#[cfg(test)]
mod tests;
