//! The newest verified chunks, kept in memory for forwarding: the upload neighbour asks for
//! the newest first, so most forwards are served from here instead of being read back. And
//! the fault injection on what is forwarded.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use tracing::warn;

use super::config::{RECENT_BYTES, RECENT_CHUNKS};
use crate::manifest::ChunkId;

/// What the upload connections share to forward chunks: the newest verified ones, and the
/// faults left to inject (`corrupt_sends`).
#[derive(Debug)]
pub(super) struct Forwarding {
    recent: Mutex<RecentChunks>,
    corrupt_left: AtomicU32,
}

impl Forwarding {
    /// Nothing kept yet; the first `corrupt_sends` chunks forwarded are corrupted.
    pub(super) fn new(corrupt_sends: u32) -> Self {
        Self {
            recent: Mutex::new(RecentChunks::default()),
            corrupt_left: AtomicU32::new(corrupt_sends),
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, RecentChunks> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `data`, chunk `id`, just verified.
    pub(super) fn remember(&self, id: ChunkId, data: Bytes) {
        self.recent().push(id, data);
    }

    /// The chunk `id`, if kept.
    pub(super) fn get(&self, id: ChunkId) -> Option<Bytes> {
        self.recent().get(id)
    }

    /// Fault injection: corrupts `data` while `corrupt_sends` is not used up.
    pub(super) fn maybe_corrupt(&self, id: ChunkId, mut data: Bytes) -> Bytes {
        if self.corrupt_left.load(Ordering::Relaxed) > 0
            && self.corrupt_left.fetch_sub(1, Ordering::Relaxed) > 0
            && !data.is_empty()
        {
            warn!(chunk = %id, "fault injection: corrupting an uploaded chunk");
            let mut v = data.to_vec();
            v[0] ^= 0xff;
            data = Bytes::from(v);
        }
        data
    }
}

/// The newest verified chunks, bounded by count and bytes: at most [`RECENT_CHUNKS`] chunks
/// and [`RECENT_BYTES`] bytes, but never fewer than the newest chunk.
#[derive(Debug, Default)]
struct RecentChunks {
    chunks: VecDeque<(ChunkId, Bytes)>,
    /// The sum of the chunks' lengths.
    bytes: usize,
}

impl RecentChunks {
    /// Adds the newest chunk, dropping the oldest ones beyond the bounds.
    fn push(&mut self, id: ChunkId, data: Bytes) {
        self.bytes += data.len();
        self.chunks.push_back((id, data));
        while self.chunks.len() > 1
            && (self.chunks.len() > RECENT_CHUNKS || self.bytes > RECENT_BYTES)
        {
            if let Some((_, old)) = self.chunks.pop_front() {
                self.bytes -= old.len();
            }
        }
    }

    /// The chunk `id`, if held.
    fn get(&self, id: ChunkId) -> Option<Bytes> {
        self.chunks
            .iter()
            .rev()
            .find(|(c, _)| *c == id)
            .map(|(_, d)| d.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    /// With `--chunk-size 16MiB` a peer peaked at 533 MiB: 32 cached chunks. The cache is
    /// bounded in bytes (at least one chunk), and keeps 32 chunks at the default size.
    #[test]
    fn the_recent_chunk_cache_is_bounded_in_bytes() {
        let m = Manifest::for_tests(200);
        for (chunk_size, kept) in [(16 << 20, 1), (1 << 20, 8), (100 << 10, RECENT_CHUNKS)] {
            // One allocation shared by every chunk: the test itself stays small.
            let data = Bytes::from(vec![0u8; chunk_size]);
            let mut recent = RecentChunks::default();
            for n in 0..100 {
                recent.push(m.chunk_id(n).unwrap(), data.clone());
                assert!(recent.bytes <= RECENT_BYTES.max(chunk_size), "{chunk_size}");
                assert_eq!(recent.bytes, recent.chunks.len() * chunk_size);
            }
            assert_eq!(recent.chunks.len(), kept, "chunks of {chunk_size} bytes");
            assert!(
                recent.get(m.chunk_id(99).unwrap()).is_some(),
                "the newest is kept"
            );
            assert!(recent.get(m.chunk_id(0).unwrap()).is_none());
        }
    }
}
