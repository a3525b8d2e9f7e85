//! Where a namespace's memory goes: loads a `--paths` list (or, with
//! `--files`, a `--paths-files` listing) into a namespace the way the
//! daemon does, without FUSE, and prints the heap bytes of each structure
//! and the process's resident memory, per entry.
//!
//! Usage: `mem_breakdown [--files] FILE`

use std::ffi::OsStr;
use std::io::BufRead;
use std::os::unix::ffi::OsStrExt;

use triefs::namespace::{Limits, Namespace, PathLoader, UNLIMITED_PAGES};

mod common;
use common::rss_kib;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (files, file) = match args.as_slice() {
        [f] => (false, f),
        [flag, f] if flag == "--files" => (true, f),
        _ => {
            eprintln!("usage: mem_breakdown [--files] FILE");
            std::process::exit(2);
        }
    };
    let input = match std::fs::File::open(file) {
        Ok(f) => std::io::BufReader::with_capacity(1 << 20, f),
        Err(e) => {
            eprintln!("mem_breakdown: {file}: {e}");
            std::process::exit(2);
        }
    };
    let before = rss_kib();
    let started = std::time::Instant::now();
    let since = std::time::SystemTime::now();
    let limits = Limits {
        max_pages: UNLIMITED_PAGES,
        max_inodes: u64::MAX,
    };
    let mut ns = Namespace::new(0, 0, 0o755, limits);
    let mut loader = PathLoader::new(&mut ns, 0, 0);
    for (n, line) in input.split(b'\n').enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("mem_breakdown: {file}: {e}");
                std::process::exit(2);
            }
        };
        if line.is_empty() {
            continue;
        }
        let done = if files {
            let (path, size) = match line.iter().rposition(|&b| b == b'\t') {
                Some(t) => (
                    &line[..t],
                    std::str::from_utf8(&line[t + 1..])
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0),
                ),
                None => (&line[..], 0),
            };
            loader.add_file(OsStr::from_bytes(path), size, log::Level::Trace)
        } else {
            loader.add(OsStr::from_bytes(&line), log::Level::Trace)
        };
        if let Err(e) = done {
            eprintln!("mem_breakdown: {file}:{}: {e}", n + 1);
            std::process::exit(2);
        }
    }
    drop(loader);
    let shared = ns.settle_after_load(since);
    let secs = started.elapsed().as_secs_f64();
    let rss = rss_kib().saturating_sub(before) * 1024;
    let entries = (ns.trie().len() - 1) as f64;
    let t = ns.trie().memory();
    let i = ns.inodes().memory();
    println!(
        "{} entries loaded in {secs:.2} s ({:.0} paths/s); {shared} inodes share attributes, {} have a record",
        entries,
        entries / secs,
        i.full
    );
    println!("| structure | MiB | bytes per entry |");
    println!("|---|---:|---:|");
    let row = |name: &str, b: usize| {
        println!(
            "| {name} | {:.1} | {:.1} |",
            b as f64 / 1048576.0,
            b as f64 / entries
        );
    };
    row("trie nodes (16 bytes) and cookie tags (2)", t.nodes);
    row("names (arena and free lists)", t.names);
    row("child maps (4 bytes per child)", t.dirs);
    row("inode slots (12 bytes each)", i.slots);
    row("inode records (80 bytes each)", i.records);
    let heap = t.nodes + t.names + t.dirs + i.slots + i.records;
    row("sum of the above", heap);
    row("resident memory added by the load", rss as usize);
    row(
        "allocator overhead and the rest",
        (rss as usize).saturating_sub(heap),
    );
}
