//! Which chunks a joining peer is handed: the ones handed out least so far.
//!
//! Invariants: `handed[c]` counts how many peers were assigned chunk `c` or were served it as
//! an orphan; a chunk is an orphan while `handed[c] == 0`.

use rand::Rng;

use crate::chunkset::ChunkSet;
use crate::manifest::{ChunkId, Manifest};

/// The hand-out bookkeeping of one file.
#[derive(Debug)]
pub struct Distribution {
    handed: Vec<u32>,
    /// Expected ring size: each peer gets ⌈chunks / peers⌉ chunks.
    peers: u32,
}

impl Distribution {
    /// Nothing handed out yet; `peers` is the expected ring size (at least 1).
    pub fn new(chunk_count: u32, peers: u32) -> Self {
        Self {
            handed: vec![0; chunk_count as usize],
            peers: peers.max(1),
        }
    }

    /// How many chunks each peer is handed.
    pub fn share(&self) -> u32 {
        let n = u32::try_from(self.handed.len()).expect("≤ MAX_CHUNKS");
        n.div_ceil(self.peers)
    }

    /// Picks [`Distribution::share`] chunks that the peer lacks, least handed out first, and
    /// counts them as handed out. Among equally handed-out chunks it takes a contiguous run
    /// from a random starting point (wrapping), so an assignment is a few ranges on the wire
    /// and on disk, whatever the file size.
    pub fn assign(
        &mut self,
        manifest: &Manifest,
        held: &ChunkSet,
        rng: &mut impl Rng,
    ) -> Vec<ChunkId> {
        let n = manifest.chunk_count();
        if n == 0 {
            return Vec::new();
        }
        let start = rng.random_range(0..n);
        let mut candidates: Vec<(u32, u32, u32)> = manifest
            .chunk_ids()
            .filter(|&c| !held.contains(c))
            .map(|c| {
                let rotated = (c.get() + n - start) % n;
                (self.handed[c.index()], rotated, c.get())
            })
            .collect();
        let share = (self.share() as usize).min(candidates.len());
        if share < candidates.len() {
            candidates.select_nth_unstable_by_key(share, |&(count, rotated, _)| (count, rotated));
        }
        let mut picked: Vec<ChunkId> = candidates[..share]
            .iter()
            .filter_map(|&(_, _, c)| manifest.chunk_id(c).ok())
            .collect();
        picked.sort();
        for c in &picked {
            self.handed[c.index()] += 1;
        }
        picked
    }

    /// Counts `id` as handed out if it was an orphan (served to a peer that was not assigned
    /// it, so it is in the ring now); returns true if it was.
    pub fn note_served_if_orphan(&mut self, id: ChunkId) -> bool {
        let h = &mut self.handed[id.index()];
        if *h == 0 {
            *h = 1;
            true
        } else {
            false
        }
    }

    /// The chunks no peer has been handed.
    pub fn orphans(&self, manifest: &Manifest) -> ChunkSet {
        let mut s = ChunkSet::new(manifest.chunk_count());
        for c in manifest.chunk_ids() {
            if self.handed[c.index()] == 0 {
                s.insert(c);
            }
        }
        s
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn manifest(chunks: usize) -> Manifest {
        Manifest::for_tests(chunks)
    }

    #[test]
    fn five_peers_cover_every_chunk_once() {
        let m = manifest(31);
        let mut d = Distribution::new(31, 5);
        let mut rng = rand::rng();
        let none = ChunkSet::new(31);
        let mut all = ChunkSet::new(31);
        for _ in 0..5 {
            let got = d.assign(&m, &none, &mut rng);
            assert_eq!(got.len(), 7);
            for c in got {
                all.insert(c);
            }
        }
        assert!(all.is_full());
        assert_eq!(d.orphans(&m).count(), 0);
        // A sixth peer gets the least handed-out ones: those handed once.
        let sixth = d.assign(&m, &none, &mut rng);
        assert_eq!(sixth.len(), 7);
    }

    #[test]
    fn fewer_peers_leave_orphans_and_serving_adopts_them() {
        let m = manifest(10);
        let mut d = Distribution::new(10, 5);
        let mut rng = rand::rng();
        let got = d.assign(&m, &ChunkSet::new(10), &mut rng);
        assert_eq!(got.len(), 2);
        let orphans = d.orphans(&m);
        assert_eq!(orphans.count(), 8);
        let o = m.chunk_id(orphans.indices().next().unwrap()).unwrap();
        assert!(d.note_served_if_orphan(o));
        assert!(!d.note_served_if_orphan(o));
        assert_eq!(d.orphans(&m).count(), 7);
    }

    #[test]
    fn assignments_are_few_ranges() {
        let m = manifest(100_000);
        let mut d = Distribution::new(100_000, 5);
        let none = ChunkSet::new(100_000);
        for _ in 0..5 {
            let got = d.assign(&m, &none, &mut rand::rng());
            let ranges = crate::chunkset::Ranges::from_sorted(got.iter().map(|c| c.get()));
            assert!(ranges.len() <= 6, "{} ranges", ranges.len());
        }
        assert_eq!(d.orphans(&m).count(), 0);
    }

    #[test]
    fn assignment_skips_chunks_the_peer_holds() {
        let m = manifest(10);
        let mut d = Distribution::new(10, 1);
        let mut held = ChunkSet::new(10);
        for n in 0..8 {
            held.insert(m.chunk_id(n).unwrap());
        }
        let got = d.assign(&m, &held, &mut rand::rng());
        let got: Vec<u32> = got.into_iter().map(ChunkId::get).collect();
        assert_eq!(got, vec![8, 9]);
    }
}
