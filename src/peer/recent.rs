//! The newest verified chunks, kept in memory for forwarding: the upload neighbour asks for
//! the newest first, so most forwards are served from here instead of being read back.

use std::collections::VecDeque;

use bytes::Bytes;

use super::config::{RECENT_BYTES, RECENT_CHUNKS};
use crate::manifest::ChunkId;

/// The newest verified chunks, bounded by count and bytes: at most [`RECENT_CHUNKS`] chunks
/// and [`RECENT_BYTES`] bytes, but never fewer than the newest chunk.
#[derive(Debug, Default)]
pub(super) struct RecentChunks {
    chunks: VecDeque<(ChunkId, Bytes)>,
    /// The sum of the chunks' lengths.
    bytes: usize,
}

impl RecentChunks {
    /// Adds the newest chunk, dropping the oldest ones beyond the bounds.
    pub(super) fn push(&mut self, id: ChunkId, data: Bytes) {
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
    pub(super) fn get(&self, id: ChunkId) -> Option<Bytes> {
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
