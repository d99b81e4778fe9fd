//! What a simulated swarm (`demo --sim`) is made of, beyond the engine itself.
//!
//! A simulation runs the real owner, peers, handlers, picker, choker and rate limiters, on one
//! current-thread tokio runtime with the clock paused ([`runtime`]), over an in-memory
//! network ([`crate::net::MemNet`]), with in-memory stores
//! ([`crate::storage::InMemory::Known`]) holding content synthesised from the seed
//! ([`synthesize`]). Time is virtual: the runtime jumps to the next timer whenever every task
//! waits, so a run's length is set by the modelled caps, not by this machine, and with the
//! same seed and options every run takes the same steps and writes the same event log.
//!
//! Modelled: each node's upload cap (the engine's own `--upload-limit` token bucket, shared
//! by all its upload connections, as on a real run), a connection's in-flight window
//! ([`crate::net::MEM_LINK_BUFFER`] bytes each way, the like of a socket buffer), and every
//! protocol step, timeout and backoff on the virtual clock. Not modelled: download caps,
//! latency, loss, TCP's congestion control and slow start, per-message CPU cost, and disks
//! (every chunk received is still hashed for real against the manifest; the whole-file hash
//! is the owner's, computed once).

use bytes::Bytes;
use rand::{RngCore, SeedableRng};

/// `size` pseudo-random bytes from `seed`: a simulation's file. Every node of the
/// simulation shares this one copy.
pub fn synthesize(size: usize, seed: u64) -> Bytes {
    let mut data = vec![0u8; size];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    Bytes::from(data)
}

/// The runtime of a simulation: one thread, the clock paused (it advances only when every
/// task waits), and no other source of scheduling order.
///
/// # Errors
///
/// The runtime cannot be built.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
}

#[cfg(test)]
mod tests {
    #[test]
    fn synthesis_is_the_seeds() {
        assert_eq!(super::synthesize(1000, 7), super::synthesize(1000, 7));
        assert_ne!(super::synthesize(1000, 7), super::synthesize(1000, 8));
    }
}
