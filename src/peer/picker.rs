//! The picker: the chunks a ring peer holds, wants and has asked for, and the choice of what
//! to request next from the owner or the download neighbour. No sockets here.
//!
//! # Chunk bookkeeping
//!
//! - `have`: chunks verified and written to the store. Only ever grows while running (but
//!   see [`Picker::drop_bad`]: a whole-file check that fails takes bad chunks out again).
//! - `pending`: chunks requested on some connection and not yet received. A chunk is in
//!   `pending` on at most one connection; when a connection ends, its pending chunks are
//!   released. `have ∩ pending = ∅`.
//! - `assigned`: the owner's hand-out to this peer; fetched from the owner at once.
//! - `orphans`: chunks the owner says no ring member was handed; fetched from the owner when
//!   the download neighbour has nothing this peer lacks.
//! - `suspect`: chunks that failed their hash from the neighbour; fetched from the owner.
//! - After [`STALL_AFTER`] without a new chunk, the owner is asked for anything missing.
//! - `spare`: while the download neighbour has nothing this peer lacks, up to
//!   [`SPARE_IN_FLIGHT`] chunks are requested from the owner as *spare*: the owner sends them
//!   only when no ordinary request waits, to the peer holding the fewest chunks first.
//! - A request to the owner (spare or not) is cancelled (`cancel`) once the neighbour
//!   announces that chunk, unless it is suspect: the owner's upload is the swarm's scarcest,
//!   and a chunk waiting there while the neighbour holds it stops its way round the ring.
//! - A *slow* neighbour: once it holds [`SLOW_BACKLOG`] or more chunks this peer lacks and
//!   has not requested (it cannot send them as fast as it gets them), and for as long as
//!   that connection to it lasts, this peer asks the owner, as ordinary requests, for any
//!   chunk it lacks, and keeps them asked there when the neighbour announces them. The peer
//!   downstream of a slow uploader takes its chunks from the owner rather than starve, and
//!   passes them on round the ring.

use tokio::time::Instant;

use super::config::{SPARE_IN_FLIGHT, STALL_AFTER, SourceKind};
use super::ring_link::RingLink;
use crate::chunkset::{ChunkSet, pick_random};
use crate::directory::SLOW_BACKLOG;
use crate::manifest::ChunkId;

/// The chunk sets of the bookkeeping above, and the progress they make.
#[derive(Debug)]
pub(super) struct Picker {
    have: ChunkSet,
    pending: ChunkSet,
    assigned: ChunkSet,
    orphans: ChunkSet,
    suspect: ChunkSet,
    all: ChunkSet,
    /// Chunks requested from the owner as spare and not yet received.
    spare: ChunkSet,
    /// Chunks requested from the owner (spare or not) and not yet received.
    at_owner: ChunkSet,
    /// Requests to cancel at the owner: the neighbour has announced them since.
    owner_cancel: Vec<u32>,
    /// When the last chunk was stored (or the peer started).
    last_progress: Instant,
    /// Chunks stored in this run.
    fetched: u32,
    /// Chunks a connection is verifying and storing right now (see [`Picker::claim`]).
    storing: ChunkSet,
    /// The connection to the download neighbour (see [`RingLink::connection`]) on which it
    /// was found slow (see [`SLOW_BACKLOG`]).
    slow_neighbour: Option<u32>,
    /// It is still that connection, as of the last pick for the owner.
    slow_now: bool,
}

impl Picker {
    /// A picker for a peer holding `have` already, with nothing requested yet.
    pub(super) fn new(have: ChunkSet, now: Instant) -> Self {
        let count = have.capacity();
        Self {
            have,
            pending: ChunkSet::new(count),
            assigned: ChunkSet::new(count),
            orphans: ChunkSet::new(count),
            suspect: ChunkSet::new(count),
            all: ChunkSet::full(count),
            spare: ChunkSet::new(count),
            at_owner: ChunkSet::new(count),
            owner_cancel: Vec::new(),
            last_progress: now,
            fetched: 0,
            storing: ChunkSet::new(count),
            slow_neighbour: None,
            slow_now: false,
        }
    }

    /// Claims chunk `id` for one connection to verify and store: false when it is held, or
    /// another connection is storing it (two copies may arrive at once: a spare chunk from
    /// the owner and the neighbour's); the copy that loses is dropped.
    pub(super) fn claim(&mut self, id: ChunkId) -> bool {
        if self.have.contains(id) || self.storing.contains(id) {
            return false;
        }
        self.storing.insert(id);
        true
    }

    /// Ends a [`Picker::claim`].
    pub(super) fn unclaim(&mut self, id: ChunkId) {
        self.storing.remove(id);
    }

    pub(super) fn have(&self) -> &ChunkSet {
        &self.have
    }

    /// The chunks held, and those being checked and stored now.
    pub(super) fn have_or_storing(&self) -> ChunkSet {
        let mut set = self.have.clone();
        set.union_with(&self.storing);
        set
    }

    pub(super) fn fetched(&self) -> u32 {
        self.fetched
    }

    pub(super) fn last_progress(&self) -> Instant {
        self.last_progress
    }

    /// Picks a chunk to request from a source of `kind`; true with it for a spare request to
    /// the owner. Suspect chunks are not asked of the neighbour while the owner is connected.
    pub(super) fn pick(
        &mut self,
        kind: SourceKind,
        ring: &mut RingLink,
        owner_connected: bool,
        rng: &mut impl rand::Rng,
    ) -> Option<(u32, bool)> {
        match kind {
            SourceKind::Neighbour => self
                .pick_for_neighbour(ring, owner_connected, rng)
                .map(|c| (c, false)),
            SourceKind::Owner | SourceKind::Publisher => {
                self.pick_for_owner(ring.has(), ring.connection(), rng)
            }
            SourceKind::Directory => None,
        }
    }

    fn pick_for_neighbour(
        &self,
        ring: &mut RingLink,
        owner_connected: bool,
        rng: &mut impl rand::Rng,
    ) -> Option<u32> {
        let (have, pending, all) = (self.have.words(), self.pending.words(), self.all.words());
        let storing = self.storing.words();
        let avoid = if owner_connected {
            self.suspect.words()
        } else {
            &[][..]
        };
        let lacking = |w: usize| {
            all[w] & !have[w] & !pending[w] & !storing[w] & !avoid.get(w).copied().unwrap_or(0)
        };
        ring.pick(self.all.words().len(), lacking, rng)
    }

    fn pick_for_owner(
        &mut self,
        neighbour_has: Option<&ChunkSet>,
        connection: Option<u32>,
        rng: &mut impl rand::Rng,
    ) -> Option<(u32, bool)> {
        let words = self.all.words().len();
        // Once slow, a neighbour stays so while this connection to it lasts: this peer soon
        // holds what it does, and would starve again if it went back to waiting on it.
        if self.neighbour_backlog(neighbour_has) >= SLOW_BACKLOG {
            self.slow_neighbour = connection;
        }
        let slow = connection.is_some() && self.slow_neighbour == connection;
        self.slow_now = slow;
        let (have, pending, all) = (self.have.words(), self.pending.words(), self.all.words());
        let storing = self.storing.words();
        // What the neighbour can serve is not asked of the owner (suspect chunks aside): its
        // upload is the swarm's scarcest.
        let nh = neighbour_has.map(ChunkSet::words);
        let suspect = self.suspect.words();
        let at_neighbour = |w: usize| nh.and_then(|n| n.get(w)).copied().unwrap_or(0) & !suspect[w];
        let missing = |w: usize| all[w] & !have[w] & !pending[w] & !storing[w] & !at_neighbour(w);
        let stalled = self.last_progress.elapsed() >= STALL_AFTER;
        let idle = self.neighbour_idle(neighbour_has);
        let (assigned, orphans) = (self.assigned.words(), self.orphans.words());
        let first = pick_random(
            words,
            |w| {
                let wanted = if stalled {
                    u64::MAX
                } else {
                    assigned[w] | suspect[w] | if idle { orphans[w] } else { 0 }
                };
                missing(w) & wanted
            },
            rng,
        );
        // Behind a slow neighbour, any chunk, as ordinary requests.
        let first = first.or_else(|| {
            let lacking = |w: usize| all[w] & !have[w] & !pending[w] & !storing[w];
            slow.then(|| pick_random(words, lacking, rng)).flatten()
        });
        // Beyond that, a few spare chunks, which the owner sends only when its upload is
        // otherwise idle.
        match first {
            Some(c) => Some((c, false)),
            None if self.spare.count() < SPARE_IN_FLIGHT => {
                pick_random(words, missing, rng).map(|c| (c, true))
            }
            None => None,
        }
    }

    /// How many chunks the download neighbour holds that this peer lacks and has not
    /// requested.
    fn neighbour_backlog(&self, neighbour_has: Option<&ChunkSet>) -> u32 {
        let Some(nh) = neighbour_has else {
            return 0;
        };
        let (have, pending) = (self.have.words(), self.pending.words());
        nh.words()
            .iter()
            .enumerate()
            .map(|(w, &n)| (n & !have[w] & !pending[w]).count_ones())
            .sum()
    }

    /// True when the download neighbour holds nothing this peer lacks and has not requested.
    fn neighbour_idle(&self, neighbour_has: Option<&ChunkSet>) -> bool {
        let Some(nh) = neighbour_has else {
            return true;
        };
        let (have, pending) = (self.have.words(), self.pending.words());
        !nh.words()
            .iter()
            .enumerate()
            .any(|(w, &n)| n & !have[w] & !pending[w] != 0)
    }

    /// `id` was requested from a source of `kind` (as a spare request to the owner if
    /// `spare`).
    pub(super) fn requested(&mut self, id: ChunkId, kind: SourceKind, spare: bool) {
        self.pending.insert(id);
        if kind.serves_as_owner() {
            self.at_owner.insert(id);
        }
        if spare {
            self.spare.insert(id);
        }
    }

    /// `id` is no longer requested: received, cancelled, or its connection ended.
    pub(super) fn release(&mut self, id: ChunkId) {
        self.pending.remove(id);
        self.spare.remove(id);
        self.at_owner.remove(id);
    }

    /// `id` failed its check or could not be stored: the owner is asked for it.
    pub(super) fn suspect(&mut self, id: ChunkId) {
        self.suspect.insert(id);
    }

    /// `id` was verified and stored.
    pub(super) fn stored(&mut self, id: ChunkId) {
        self.have.insert(id);
        self.suspect.remove(id);
        self.fetched += 1;
        self.last_progress = Instant::now();
    }

    /// The whole-file check found these chunks bad on disk: they are fetched again.
    pub(super) fn drop_bad(&mut self, bad: &[ChunkId]) {
        for id in bad {
            self.have.remove(*id);
        }
    }

    /// The owner handed out `assigned` to this peer.
    pub(super) fn assign(&mut self, assigned: &ChunkSet) {
        self.assigned.union_with(assigned);
    }

    /// The owner's latest list of chunks no ring member was handed.
    pub(super) fn set_orphans(&mut self, orphans: ChunkSet) {
        self.orphans = orphans;
    }

    /// The neighbour announced `added`: requests for them at the owner are to be cancelled
    /// (suspect ones aside: the neighbour's copy failed its check once).
    pub(super) fn neighbour_announced(&mut self, added: &[ChunkId]) {
        if self.slow_now {
            // It would not send them soon: they stay asked of the owner.
            return;
        }
        let now_here: Vec<u32> = added
            .iter()
            .filter(|c| self.at_owner.contains(**c) && !self.suspect.contains(**c))
            .map(|c| c.get())
            .collect();
        self.owner_cancel.extend(now_here);
    }

    /// The requests to cancel at the owner, once.
    pub(super) fn take_owner_cancel(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.owner_cancel)
    }
}

#[cfg(test)]
#[path = "picker_tests.rs"]
mod tests;
