//! The steps of a chunk's arrival: claim it, check and store it, settle the outcome. On a
//! one-thread runtime they run in place ([`Swarm::accept_chunk`]); on more workers `fetch`
//! runs [`check_and_store`](crate::storage::check_and_store) on another worker between the claim and the settling.

use bytes::Bytes;

use super::Swarm;
use crate::Result;
use crate::manifest::ChunkId;
use crate::store::StoreError;

impl Swarm {
    /// Verifies `data` as chunk `id` and stores it; false when another connection stored it
    /// first.
    ///
    /// # Errors
    ///
    /// A hash or length mismatch (the chunk is released and marked suspect), or a store error.
    pub(in crate::peer) async fn accept_chunk(&self, id: ChunkId, data: Bytes) -> Result<bool> {
        if !self.claim(id) {
            return Ok(false);
        }
        // Done in place on a one-thread runtime: hashing 100 KiB and copying it into the
        // page cache take tens of microseconds, less than handing the work to another thread
        // and back (measured: a third of the ring's CPU went to those hand-offs). On more
        // workers, `fetch` runs `check_and_store` on another worker instead.
        let res = crate::storage::check_and_store(&self.manifest, &*self.store, id, &data);
        self.settle(id, data, res).map(|()| true)
    }

    /// Claims chunk `id` for storing: false when it is held already, or arriving on another
    /// connection right now (only one copy is stored and reported received; the one storing
    /// it releases its request). A claim ends with [`Swarm::settle`] or [`Swarm::unclaim`].
    pub(in crate::peer) fn claim(&self, id: ChunkId) -> bool {
        self.lock().picker.claim(id)
    }

    /// The chunks held, and those being checked and stored now: what no source needs to be
    /// asked for.
    pub(in crate::peer) fn have_or_storing(&self) -> crate::chunkset::ChunkSet {
        self.lock().picker.have_or_storing()
    }

    /// Ends a claim whose chunk was not stored (its check was abandoned): it is asked for
    /// again.
    pub(in crate::peer) fn unclaim(&self, id: ChunkId) {
        let mut st = self.lock();
        st.picker.unclaim(id);
        st.picker.release(id);
        drop(st);
        self.notify();
    }

    /// Records the outcome `res` of checking and storing claimed chunk `id` (`data`).
    ///
    /// # Errors
    ///
    /// `res`'s error: a hash or length mismatch (the chunk is marked suspect), or a store
    /// error.
    pub(in crate::peer) fn settle(
        &self,
        id: ChunkId,
        data: Bytes,
        res: Result<(), StoreError>,
    ) -> Result<()> {
        // An in-memory store reads for nothing: no cache beside it.
        if res.is_ok() && !self.store.is_in_memory() {
            // The upload neighbour asks for the newest first: most forwards come from here.
            self.forwarding.remember(id, data);
        }
        self.lock().settle(id, &res, &self.config.dir);
        if res.is_ok() {
            self.summary_dirty.notify_one();
        }
        self.notify();
        res.map_err(Into::into)
    }
}
