//! Shared input types for the triefs fuzz targets: component names drawn
//! mostly from a tiny alphabet (so operations collide often) and
//! occasionally from the awkward cases (`/`, NUL, `.`, `..`, empty, 255 and
//! 256 bytes, arbitrary short bytes).

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;

use arbitrary::{Arbitrary, Result, Unstructured};

/// One component name (may be invalid on purpose).
#[derive(Clone, PartialEq, Eq)]
pub struct Name(pub Vec<u8>);

impl Name {
    /// The name as an `OsStr`.
    pub fn os(&self) -> &OsStr {
        OsStr::from_bytes(&self.0)
    }
}

impl<'a> Arbitrary<'a> for Name {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let sel: u8 = u.arbitrary()?;
        Ok(Name(match sel {
            0..=63 => b"a".to_vec(),
            64..=119 => b"b".to_vec(),
            120..=159 => b"c".to_vec(),
            160..=189 => vec![0xff],
            190..=214 => {
                let n = u.int_in_range(0..=4)?;
                u.bytes(n)?.to_vec()
            }
            215 => b"/".to_vec(),
            216 => b"a/b".to_vec(),
            217 => vec![0],
            218 => b"a\0".to_vec(),
            219 => b".".to_vec(),
            220 => b"..".to_vec(),
            221 => Vec::new(),
            222 => vec![b'x'; 255],
            223 => vec![b'x'; 256],
            224 => vec![b'y'; 255],
            225 => {
                let mut v = vec![b'z'; 255];
                v[100] = 0;
                v.push(b'z');
                v
            }
            226 => b"...".to_vec(),
            227 => b".a".to_vec(),
            228 => b"a.".to_vec(),
            _ => b"d".to_vec(),
        }))
    }

    fn size_hint(_depth: usize) -> (usize, Option<usize>) {
        (1, Some(6))
    }
}

/// Writes bytes as a Rust-like byte string literal body.
pub fn fmt_bytes(b: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    // Long runs of one byte are shown compressed.
    if b.len() > 16 && b.iter().filter(|&&c| c == b[0]).count() > b.len() - 3 {
        let odd: Vec<(usize, u8)> = b
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c != b[0])
            .map(|(i, &c)| (i, c))
            .collect();
        return write!(
            f,
            "<{} x {}{}>",
            b.len(),
            std::ascii::escape_default(b[0]),
            if odd.is_empty() {
                String::new()
            } else {
                format!(" except {odd:?}")
            }
        );
    }
    for &c in b {
        match c {
            b'"' => f.write_str("\\\"")?,
            b'\\' => f.write_str("\\\\")?,
            0x20..=0x7e => write!(f, "{}", c as char)?,
            _ => write!(f, "\\x{c:02x}")?,
        }
    }
    Ok(())
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        fmt_bytes(&self.0, f)?;
        f.write_str("\"")
    }
}

/// A path string built from up to 5 names, usually absolute.
#[derive(Clone, PartialEq, Eq)]
pub struct Path(pub Vec<u8>);

impl Path {
    /// The path as an `OsStr`.
    pub fn os(&self) -> &OsStr {
        OsStr::from_bytes(&self.0)
    }
}

impl<'a> Arbitrary<'a> for Path {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let style: u8 = u.arbitrary()?;
        let n = u.int_in_range(0..=5)?;
        let mut out = Vec::new();
        // Mostly absolute; sometimes relative or with a trailing slash.
        let leading = style & 0x0f != 0x0f;
        for i in 0..n {
            if i > 0 || leading {
                out.push(b'/');
            }
            out.extend_from_slice(&Name::arbitrary(u)?.0);
        }
        if n == 0 && leading {
            out.push(b'/');
        }
        if style & 0xf0 == 0xf0 {
            out.push(b'/');
        }
        Ok(Path(out))
    }

    fn size_hint(_depth: usize) -> (usize, Option<usize>) {
        (2, None)
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        fmt_bytes(&self.0, f)?;
        f.write_str("\"")
    }
}
