//! Feeds arbitrary bytes to the tar loader (`--from-tar`): it must refuse
//! bad input with an error and never panic, leave a namespace that passes
//! the invariant check either way, and what it loads must export (the
//! paged writer) to an archive that loads again into the same tree and
//! exports again to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use triefs::namespace::{Limits, Namespace};

/// Recomputes the checksum of every block that looks like a ustar or GNU
/// header, so that mutations reach the parsing behind the checksum test.
fn fix_checksums(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    for b in v.chunks_exact_mut(512) {
        if &b[257..262] == b"ustar" {
            b[148..156].fill(b' ');
            let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
            let s = format!("{sum:06o}\0 ");
            b[148..156].copy_from_slice(s.as_bytes());
        }
    }
    v
}

fn ns() -> Namespace {
    Namespace::new(0, 0, 0o755, Limits::from_options(Some(1 << 20), Some(4096)))
}

fn load(data: &[u8]) {
    let mut a = ns();
    let ok = triefs::tar::import(&mut a, data).is_ok();
    a.check().expect("the namespace stays sound");
    if !ok {
        return;
    }
    let mut out1 = Vec::new();
    triefs::tar::write_all(&a, &mut out1).expect("export");
    // Holes of sparse members are exported as zeros, which a plain member
    // stores: the second load gets no size limit.
    let mut b = Namespace::new(0, 0, 0o755, Limits::from_options(Some(0), Some(4096)));
    triefs::tar::import(&mut b, &out1[..]).expect("own export loads");
    assert_eq!(a.trie().leaves(), b.trie().leaves());
    let mut out2 = Vec::new();
    triefs::tar::write_all(&b, &mut out2).expect("export again");
    assert!(out1 == out2, "the export is a fixed point");
}

fuzz_target!(|data: &[u8]| {
    load(data);
    load(&fix_checksums(data));
});
