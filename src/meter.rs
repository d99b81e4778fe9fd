//! The optimality meter: how long a swarm must take at least, for given upload caps.
//!
//! For a file of `S` bytes, `N` peers, owner upload `U₀`, peer uploads `Uᵢ` (each its own:
//! links may be uneven) and, optionally, a download cap `D` per peer (bytes/s):
//!
//! - **Fluid bound** `max(S / U₀, N·S / (U₀ + ΣUᵢ), S / D)`: every byte leaves the owner at
//!   least once, the `N·S` bytes the peers must receive all leave some uploader, and each
//!   peer takes in `S` bytes through its download cap. No schedule beats it.
//! - **Chunked ring** `S / U + (N − 1)·c / U` with chunk size `c` and ring upload `U` (the
//!   slowest peer's, when they differ): a pipeline in which each chunk takes one chunk-time
//!   per hop around the ring.

/// The fluid lower bound in seconds for `peer_rates.len()` peers uploading at `peer_rates`,
/// each downloading at most `download` when given; `None` if a cap is zero.
pub fn fluid_bound(
    size: u64,
    owner_rate: u64,
    peer_rates: &[u64],
    download: Option<u64>,
) -> Option<f64> {
    if owner_rate == 0 || download == Some(0) {
        return None;
    }
    let s = size as f64;
    let n = peer_rates.len() as f64;
    let total: f64 = owner_rate as f64 + peer_rates.iter().map(|&r| r as f64).sum::<f64>();
    let through = download.map_or(0.0, |d| s / d as f64);
    Some((s / owner_rate as f64).max(n * s / total).max(through))
}

/// The pipelined chunked-ring time in seconds; `None` if the rate is zero.
pub fn chunked_ring(size: u64, peers: usize, chunk_size: u64, rate: u64) -> Option<f64> {
    if rate == 0 {
        return None;
    }
    let hops = peers.saturating_sub(1) as f64;
    Some((size as f64 + hops * chunk_size as f64) / rate as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn fluid_bound_is_the_larger_term() {
        // Owner as fast as each peer, 5 peers: N·S/(6U) = 5/6 S/U < S/U, so S/U binds.
        let t = fluid_bound(600, 100, &[100; 5], None).unwrap();
        assert!(close(t, 6.0));
        // A fast owner: the peers' total upload binds.
        let t = fluid_bound(600, 1000, &[10; 5], None).unwrap();
        assert!(close(t, 5.0 * 600.0 / 1050.0));
        assert_eq!(fluid_bound(1, 0, &[1], None), None);
        assert_eq!(fluid_bound(1, 1, &[1], Some(0)), None);
    }

    /// Each peer's own upload counts: one slow peer of five lowers the swarm's total upload,
    /// and the bound is the owner's time only while the rest make up for it.
    #[test]
    fn uneven_uploads_each_count() {
        // Owner 10, peers 10, 10, 2.5, 10, 10: N·S/(10 + 42.5) < S/10, the owner binds.
        let t = fluid_bound(640, 10, &[10, 10, 2, 10, 10], None).unwrap();
        assert!(close(t, 64.0));
        // A fast owner and two slow peers: the total binds, with each peer's rate summed.
        let t = fluid_bound(600, 1000, &[10, 10, 10, 1, 1], None).unwrap();
        assert!(close(t, 5.0 * 600.0 / 1032.0));
        // Every peer as slow as the slowest would be a much longer bound.
        let uniform = fluid_bound(600, 1000, &[1; 5], None).unwrap();
        assert!(uniform > t);
    }

    #[test]
    fn a_download_cap_bounds_each_peer() {
        // Each peer takes in S through its cap: S/D = 600/50 = 12 > S/U₀ = 6.
        let t = fluid_bound(600, 100, &[100; 5], Some(50)).unwrap();
        assert!(close(t, 12.0));
        // A generous cap changes nothing.
        let t = fluid_bound(600, 100, &[100; 5], Some(1000)).unwrap();
        assert!(close(t, 6.0));
    }

    #[test]
    fn chunked_ring_adds_one_chunk_time_per_hop() {
        let t = chunked_ring(1000, 5, 100, 100).unwrap();
        assert!(close(t, 14.0));
    }
}
