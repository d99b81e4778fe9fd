//! The real binaries end to end: rings of several sizes, file sizes, both layouts, errors.

use crate::util::*;

#[test]
fn five_peer_ring_reassembles_byte_identical() {
    let (_tmp, peers) = run_ring(3 << 20, &Ring::new(5));
    for p in &peers {
        let out = p.proc.stdout_text();
        assert!(out.contains("complete: "), "{out}");
    }
}
