//! Feeds arbitrary bytes to the snapshot image loader: it must refuse bad
//! input with an error and never panic, and whatever it accepts must pass
//! the namespace invariant check and write back to an image that loads
//! again identically.
#![no_main]

use libfuzzer_sys::fuzz_target;
use triefs::image::{read_image, write_image};
use triefs::namespace::limits::Limits;

/// Recomputes every record's checksum, so that mutations reach the record
/// parsing behind the checksum test.
fn fix_checksums(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    let mut pos = 16;
    while pos + 5 <= v.len() {
        let len = u32::from_le_bytes([v[pos + 1], v[pos + 2], v[pos + 3], v[pos + 4]]) as usize;
        let end = pos + 5 + len;
        if end + 4 > v.len() {
            break;
        }
        let crc = crc32fast::hash(&v[pos..end]);
        v[end..end + 4].copy_from_slice(&crc.to_le_bytes());
        pos = end + 4;
    }
    v
}

fn load(data: &[u8]) {
    let limits = Limits {
        max_pages: 4096,
        max_inodes: 4096,
    };
    if let Ok((ns, _)) = read_image(data, limits) {
        ns.check().expect("a loaded image passes the invariant check");
        // Whatever was accepted writes back to an image that loads again
        // and then writes back identically (a fixed point).
        let mut img1 = Vec::new();
        let sum1 = write_image(&ns, &mut img1).expect("write back");
        let (ns2, sum_read) = read_image(&img1[..], limits).expect("own image loads");
        assert_eq!(sum1, sum_read);
        assert_eq!(ns.trie().leaves(), ns2.trie().leaves());
        // Checkpoints come back, and pages shared stay shared: the same
        // number of page buffers.
        let names = |n: &triefs::namespace::Namespace| {
            n.checkpoints().iter().map(|c| c.name().to_owned()).collect::<Vec<_>>()
        };
        assert_eq!(names(&ns), names(&ns2));
        assert_eq!(ns.pages_used(), ns2.pages_used());
        let mut img2 = Vec::new();
        let sum2 = write_image(&ns2, &mut img2).expect("write back again");
        assert_eq!(sum1, sum2);
        assert_eq!(img1.len(), img2.len());
    }
}

fuzz_target!(|data: &[u8]| {
    load(data);
    load(&fix_checksums(data));
});
