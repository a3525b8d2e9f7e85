//! In-process benchmarks of the path trie, so regressions show without
//! mounting: add (deep paths with shared prefixes), lookup, rename of a
//! subtree, and readdir-style paging through a large directory.

use std::ffi::OsString;
use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use triefs::trie::Trie;

fn paths(n: usize) -> Vec<OsString> {
    (0..n)
        .map(|i| {
            OsString::from(format!(
                "/srv/project-{:02}/module_{:03}/src-file-{:05}.d",
                i % 20,
                (i / 20) % 50,
                i
            ))
        })
        .collect()
}

fn bench_add(c: &mut Criterion) {
    let ps = paths(100_000);
    let mut g = c.benchmark_group("trie");
    g.throughput(Throughput::Elements(ps.len() as u64));
    g.bench_function("add 100k deep paths", |b| {
        b.iter_batched(
            Trie::<()>::new,
            |mut t| {
                for p in &ps {
                    t.add(p).unwrap();
                }
                t
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn bench_lookup(c: &mut Criterion) {
    let ps = paths(100_000);
    let mut t: Trie = Trie::new();
    for p in &ps {
        t.add(p).unwrap();
    }
    let mut g = c.benchmark_group("trie");
    g.throughput(Throughput::Elements(ps.len() as u64));
    g.bench_function("lookup 100k deep paths", |b| {
        b.iter(|| {
            for p in &ps {
                black_box(t.lookup(p));
            }
        })
    });
    g.finish();
}

fn bench_rename(c: &mut Criterion) {
    let ps = paths(100_000);
    let mut t: Trie = Trie::new();
    for p in &ps {
        t.add(p).unwrap();
    }
    // Moving a subtree of ~100,000 nodes back and forth relinks one edge.
    c.bench_function("trie/rename a 100k-node subtree", |b| {
        b.iter(|| {
            t.rename("/srv", "/srv2").unwrap();
            t.rename("/srv2", "/srv").unwrap();
        })
    });
}

fn bench_paging(c: &mut Criterion) {
    let mut t: Trie = Trie::new();
    let dir = t.add("/big").unwrap();
    let n = 100_000;
    for i in 0..n {
        t.insert(
            dir,
            OsString::from(format!("f{i:07}")).as_os_str(),
            (),
            triefs::trie::Shape::Leaf,
        )
        .unwrap();
    }
    let mut g = c.benchmark_group("trie");
    g.throughput(Throughput::Elements(n));
    // A listing fetched in pages of 100 entries, each page resuming at the
    // cookie after the last entry of the previous one, like readdir.
    g.bench_function("page through 100k children by 100", |b| {
        b.iter(|| {
            let mut from = triefs::trie::FIRST_COOKIE;
            let mut seen = 0u64;
            loop {
                let mut last = None;
                for (cookie, name, _) in t.entries_from(dir, from).take(100) {
                    black_box(name);
                    last = Some(cookie);
                    seen += 1;
                }
                match last {
                    Some(c) => from = c + 1,
                    None => break,
                }
            }
            assert_eq!(seen, n);
        })
    });
    g.finish();
}

criterion_group!(benches, bench_add, bench_lookup, bench_rename, bench_paging);
criterion_main!(benches);
