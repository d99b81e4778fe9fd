//! The ring link: what this peer knows of its download neighbour — the chunks it announced
//! (newest last), whether it is reachable, and whether it was told this peer is complete.

use tokio::time::Instant;

use crate::chunkset::{ChunkSet, Ranges, pick_random};
use crate::manifest::{ChunkId, Manifest, ManifestError};

#[derive(Debug)]
pub(super) struct RingLink {
    /// The chunks the neighbour announced; `None` while not connected.
    has: Option<ChunkSet>,
    /// Chunks in the order the neighbour announced them; the newest is requested first.
    recent: Vec<u32>,
    /// Why the neighbour connection is down or ended (`None`: connected).
    error: Option<String>,
    /// Since when the download neighbour has been unreachable (`None`: connected).
    down_since: Option<Instant>,
    /// The download neighbour has been told this peer is complete.
    told_complete: bool,
    /// How many times the neighbour connection came up: tells one connection from the next.
    connections: u32,
}

impl RingLink {
    /// Not connected yet, counted as down since `now`.
    pub(super) fn new(now: Instant) -> Self {
        Self {
            has: None,
            recent: Vec::new(),
            error: None,
            down_since: Some(now),
            told_complete: false,
            connections: 0,
        }
    }

    pub(super) fn has(&self) -> Option<&ChunkSet> {
        self.has.as_ref()
    }

    pub(super) fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    pub(super) fn down_since(&self) -> Option<Instant> {
        self.down_since
    }

    /// Which connection to the neighbour is up, counting from 1 (`None`: none is).
    pub(super) fn connection(&self) -> Option<u32> {
        self.has.is_some().then_some(self.connections)
    }

    pub(super) fn told_complete(&self) -> bool {
        self.told_complete
    }

    pub(super) fn mark_told_complete(&mut self) {
        self.told_complete = true;
    }

    /// The connection came up (`e` is `None`) or went down: a neighbour just connected holds
    /// nothing until its have list says otherwise.
    pub(super) fn set_error(&mut self, e: Option<String>, chunk_count: u32) {
        self.recent.clear();
        if e.is_none() {
            self.connections = self.connections.wrapping_add(1);
        }
        self.has = match e {
            Some(_) => None,
            None => Some(ChunkSet::new(chunk_count)),
        };
        match (&e, self.down_since) {
            (Some(_), None) => self.down_since = Some(Instant::now()),
            (None, _) => self.down_since = None,
            _ => {}
        }
        self.error = e;
    }

    /// The neighbour announced `chunks`; returns those that are new.
    ///
    /// # Errors
    ///
    /// A chunk id out of range.
    pub(super) fn announced(
        &mut self,
        m: &Manifest,
        chunks: &Ranges,
    ) -> Result<Vec<ChunkId>, ManifestError> {
        let set = self
            .has
            .get_or_insert_with(|| ChunkSet::new(m.chunk_count()));
        let added = set.extend_from_ranges(m, chunks)?;
        self.recent.extend(added.iter().map(|c| c.get()));
        Ok(added)
    }

    /// A chunk the neighbour holds among `lacking` (a mask per word of `words`), the newest it
    /// announced first, else at random; `None` while not connected.
    pub(super) fn pick(
        &mut self,
        words: usize,
        lacking: impl Fn(usize) -> u64,
        rng: &mut impl rand::Rng,
    ) -> Option<u32> {
        let nh = self.has.as_ref()?.words();
        let wanted = |w: usize| lacking(w) & nh[w];
        // Newest first: the chunk the neighbour got last is the one fewest peers have, and
        // the one still to travel furthest round the ring; taking it at once keeps the end of
        // the run from waiting on chunks stuck behind older ones. Whatever the stack skips
        // is still found by the random pick.
        let mut newest = None;
        while let Some(c) = self.recent.pop() {
            let (w, bit) = ((c / 64) as usize, 1u64 << (c % 64));
            if wanted(w) & bit != 0 {
                newest = Some(c);
                break;
            }
        }
        newest.or_else(|| pick_random(words, wanted, rng))
    }
}
