//! The optimality meter: how long a swarm must take at least, for given upload caps.
//!
//! For a file of `S` bytes, `N` peers, owner upload `U₀` and peer uploads `Uᵢ` (bytes/s):
//!
//! - **Fluid bound** `max(S / U₀, N·S / (U₀ + ΣUᵢ))`: every byte leaves the owner at least once,
//!   and the `N·S` bytes the peers must receive all leave some uploader. No schedule beats it.
//! - **Chunked ring** `S / U + (N − 1)·c / U` with chunk size `c` and ring upload `U`: a
//!   pipeline in which each chunk takes one chunk-time per hop around the ring.

/// The fluid lower bound in seconds; `None` if a cap is zero.
pub fn fluid_bound(size: u64, peers: usize, owner_rate: u64, peer_rates: &[u64]) -> Option<f64> {
    if owner_rate == 0 {
        return None;
    }
    let s = size as f64;
    let total: f64 = owner_rate as f64 + peer_rates.iter().map(|&r| r as f64).sum::<f64>();
    Some((s / owner_rate as f64).max(peers as f64 * s / total))
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

    #[test]
    fn fluid_bound_is_the_larger_term() {
        // Owner as fast as each peer, 5 peers: N·S/(6U) = 5/6 S/U < S/U, so S/U binds.
        let t = fluid_bound(600, 5, 100, &[100; 5]).unwrap();
        assert!((t - 6.0).abs() < 1e-9);
        // A fast owner: the peers' total upload binds.
        let t = fluid_bound(600, 5, 1000, &[10; 5]).unwrap();
        assert!((t - 5.0 * 600.0 / 1050.0).abs() < 1e-9);
        assert_eq!(fluid_bound(1, 1, 0, &[1]), None);
    }

    #[test]
    fn chunked_ring_adds_one_chunk_time_per_hop() {
        let t = chunked_ring(1000, 5, 100, 100).unwrap();
        assert!((t - 14.0).abs() < 1e-9);
    }
}
