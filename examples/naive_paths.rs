//! Memory baseline for the trie: load a `--paths` file the naive way, every
//! full path (and every intermediate directory) stored as its own string in
//! a hash set, and print the resident memory per entry.
//!
//! Usage: `naive_paths FILE`

use std::collections::HashSet;
use std::io::Read;

mod common;
use common::rss_kib;

fn main() {
    let Some(file) = std::env::args().nth(1) else {
        eprintln!("usage: naive_paths FILE");
        std::process::exit(2);
    };
    let mut buf = Vec::new();
    if let Err(e) = std::fs::File::open(&file).and_then(|mut f| f.read_to_end(&mut buf)) {
        eprintln!("naive_paths: {file}: {e}");
        std::process::exit(2);
    }
    let before = rss_kib();
    let mut set: HashSet<Box<[u8]>> = HashSet::new();
    for line in buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        // Every prefix ending at a '/' is a directory of its own.
        for (i, &b) in line.iter().enumerate().skip(1) {
            if b == b'/' {
                set.insert(line[..i].into());
            }
        }
        set.insert(line.into());
    }
    let used = rss_kib().saturating_sub(before) * 1024;
    drop(buf);
    println!(
        "naive entries {} rss_bytes {} bytes_per_entry {:.1}",
        set.len(),
        used,
        used as f64 / set.len().max(1) as f64
    );
}
