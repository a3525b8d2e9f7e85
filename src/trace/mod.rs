//! `triefs trace`: one line per request that reaches the daemon, for the
//! owner and root. The adapter in `crate::fuse` builds an [`Event`] per
//! request while someone traces; [`Tracers`] keeps a bounded buffer per
//! reader, filled by prefix, drained by the reader's polls.
//!
//! A line (text): `TIME PID COMM UID OP PATH [-> PATH2] [off=N len=N]
//! [name=XATTR] = RESULT [fault N] LATENCYus`; with `--json` one object per
//! line with the same fields (`time`, `pid`, `comm`, `uid`, `op`, `path`,
//! `path2`, `offset`, `size`, `name`, `result`, `errno`, `fault`,
//! `latency_us`). Paths are
//! written with `\xNN` for bytes that are not printable ASCII (text) or
//! as UTF-8 with U+FFFD for invalid bytes (JSON).

mod client;
pub mod wire;

pub use client::stream;

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::Errno;
use crate::fault::{covers, escape};
use crate::request::Op;

/// Most readers at once.
pub const MAX_TRACERS: usize = 4;

/// Bytes of lines kept per reader between its polls; past this, lines are
/// dropped and counted.
pub const MAX_BUFFER: usize = 4 << 20;

/// A reader that has not polled for this long is gone (killed): its
/// buffer is dropped.
pub const ABANDONED: Duration = Duration::from_secs(30);

/// One request as the trace shows it.
#[derive(Clone, Debug)]
pub struct Event {
    /// When it arrived.
    pub time: SystemTime,
    /// The calling thread.
    pub pid: u32,
    /// The caller's uid.
    pub uid: u32,
    /// The request.
    pub op: Op,
    /// The path it is about.
    pub path: Vec<u8>,
    /// A rename's target, a link's new name.
    pub path2: Option<Vec<u8>>,
    /// Offset and size of a read, write, fallocate or copy.
    pub range: Option<(u64, u64)>,
    /// The extended attribute's name (setxattr, getxattr, removexattr).
    pub xattr: Option<Vec<u8>>,
    /// `None` for success, else the error answered.
    pub errno: Option<Errno>,
    /// The fault rule that decided the answer.
    pub fault: Option<u32>,
    /// From arrival to answer.
    pub latency: Duration,
}

impl Event {
    /// Whether the event concerns `prefix` (either path).
    fn under(&self, prefix: &[u8]) -> bool {
        covers(prefix, &self.path) || self.path2.as_deref().is_some_and(|p| covers(prefix, p))
    }

    fn result(&self) -> String {
        match self.errno {
            None => "OK".into(),
            Some(e) => e
                .name()
                .map_or_else(|| e.code().to_string(), str::to_string),
        }
    }

    /// The text line, `\n` included.
    pub fn text(&self, comm: &[u8]) -> String {
        let mut s = String::with_capacity(96 + self.path.len());
        let (secs, micros) = split_time(self.time);
        let day = crate::image::status::format_utc(secs);
        // "YYYY-MM-DD HH:MM:SS UTC": the clock part.
        let clock = day.get(11..19).unwrap_or("??:??:??");
        let _ = write!(
            s,
            "{clock}.{micros:06} {} {} {} {} {}",
            self.pid,
            escape(comm),
            self.uid,
            self.op,
            escape(&self.path)
        );
        if let Some(p2) = &self.path2 {
            let _ = write!(s, " -> {}", escape(p2));
        }
        if let Some((off, len)) = self.range {
            let _ = write!(s, " off={off} len={len}");
        }
        if let Some(x) = &self.xattr {
            let _ = write!(s, " name={}", escape(x));
        }
        let _ = write!(s, " = {}", self.result());
        if let Some(id) = self.fault {
            let _ = write!(s, " [fault {id}]");
        }
        let _ = writeln!(s, " {}us", self.latency.as_micros());
        s
    }

    /// The JSON line, `\n` included.
    pub fn json(&self, comm: &[u8]) -> String {
        let mut s = String::with_capacity(160 + self.path.len());
        let (secs, micros) = split_time(self.time);
        let day = crate::image::status::format_utc(secs);
        let date = day.get(..10).unwrap_or("0000-00-00");
        let clock = day.get(11..19).unwrap_or("00:00:00");
        let _ = write!(
            s,
            "{{\"time\":\"{date}T{clock}.{micros:06}Z\",\"pid\":{},\"comm\":{},\"uid\":{},\
             \"op\":\"{}\",\"path\":{}",
            self.pid,
            json_str(comm),
            self.uid,
            self.op,
            json_str(&self.path)
        );
        if let Some(p2) = &self.path2 {
            let _ = write!(s, ",\"path2\":{}", json_str(p2));
        }
        if let Some((off, len)) = self.range {
            let _ = write!(s, ",\"offset\":{off},\"size\":{len}");
        }
        if let Some(x) = &self.xattr {
            let _ = write!(s, ",\"name\":{}", json_str(x));
        }
        let _ = write!(
            s,
            ",\"result\":\"{}\",\"errno\":{}",
            self.result(),
            self.errno.map_or(0, Errno::code)
        );
        if let Some(id) = self.fault {
            let _ = write!(s, ",\"fault\":{id}");
        }
        let _ = writeln!(s, ",\"latency_us\":{}}}", self.latency.as_micros());
        s
    }
}

fn split_time(t: SystemTime) -> (u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_secs(), d.subsec_micros())
}

/// A JSON string of `b` (invalid UTF-8 replaced by U+FFFD).
fn json_str(b: &[u8]) -> String {
    let text = String::from_utf8_lossy(b);
    let mut s = String::with_capacity(text.len() + 2);
    s.push('"');
    for c in text.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// One reader.
#[derive(Debug)]
struct Tracer {
    id: u32,
    prefix: Vec<u8>,
    json: bool,
    buf: String,
    dropped: u64,
    polled: Instant,
}

/// The readers of one mount.
#[derive(Debug, Default)]
pub struct Tracers {
    tracers: Vec<Tracer>,
    next_id: u32,
}

impl Tracers {
    /// A new reader of the requests under `prefix` (a prefix as a fault
    /// rule's, already normalized); its id. `EBUSY` past [`MAX_TRACERS`].
    pub fn start(&mut self, prefix: Vec<u8>, json: bool) -> Result<u32, Errno> {
        self.expire();
        if self.tracers.len() >= MAX_TRACERS {
            return Err(Errno::new(libc::EBUSY));
        }
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let id = self.next_id;
        self.tracers.push(Tracer {
            id,
            prefix,
            json,
            buf: String::new(),
            dropped: 0,
            polled: Instant::now(),
        });
        Ok(id)
    }

    /// Ends reader `id`; `ENOENT` if it is not there (any more).
    pub fn stop(&mut self, id: u32) -> Result<(), Errno> {
        let before = self.tracers.len();
        self.tracers.retain(|t| t.id != id);
        if self.tracers.len() == before {
            return Err(Errno::new(libc::ENOENT));
        }
        Ok(())
    }

    /// Takes up to `max` bytes of whole lines of reader `id`, and how many
    /// lines were dropped since its last poll. `ENOENT` for a reader that
    /// is not there (stopped, or abandoned for [`ABANDONED`]).
    pub fn take(&mut self, id: u32, max: usize) -> Result<(u64, String), Errno> {
        self.expire();
        let t = self
            .tracers
            .iter_mut()
            .find(|t| t.id == id)
            .ok_or(Errno::new(libc::ENOENT))?;
        t.polled = Instant::now();
        let dropped = std::mem::take(&mut t.dropped);
        if t.buf.len() <= max {
            return Ok((dropped, std::mem::take(&mut t.buf)));
        }
        // Whole lines only; a line longer than `max` (paths are at most
        // 4 KiB, a line far less than a page) is cut where it must be.
        let cut = t.buf[..max].rfind('\n').map_or_else(
            || {
                (0..=max)
                    .rev()
                    .find(|&i| t.buf.is_char_boundary(i))
                    .unwrap_or(0)
            },
            |i| i + 1,
        );
        let rest = t.buf.split_off(cut);
        Ok((dropped, std::mem::replace(&mut t.buf, rest)))
    }

    /// Whether nobody reads.
    pub fn is_empty(&self) -> bool {
        self.tracers.is_empty()
    }

    /// Whether some reader wants events on `path` (either path of it).
    pub fn wants(&self, path: &[u8]) -> bool {
        self.tracers.iter().any(|t| covers(&t.prefix, path))
    }

    /// Adds `e` to every reader whose prefix it concerns; `comm` is the
    /// caller's process name.
    pub fn record(&mut self, e: &Event, comm: &[u8]) {
        let (mut text, mut json) = (None, None);
        for t in &mut self.tracers {
            if !e.under(&t.prefix) {
                continue;
            }
            let line = if t.json {
                json.get_or_insert_with(|| e.json(comm))
            } else {
                text.get_or_insert_with(|| e.text(comm))
            };
            if t.buf.len() + line.len() > MAX_BUFFER {
                t.dropped += 1;
            } else {
                t.buf.push_str(line);
            }
        }
    }

    /// Drops readers that stopped polling; whether any went.
    pub fn expire(&mut self) -> bool {
        let before = self.tracers.len();
        self.tracers.retain(|t| t.polled.elapsed() < ABANDONED);
        self.tracers.len() != before
    }
}

#[cfg(test)]
mod tests;
