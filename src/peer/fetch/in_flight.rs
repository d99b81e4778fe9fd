//! The requests one connection has waiting: released for other connections when it ends.

use std::collections::BTreeSet;

use super::super::getter::Getter;
use super::super::swarm::Swarm;
use crate::manifest::ChunkId;

/// The chunks this connection requested and has not received; released when it ends.
pub(super) struct InFlight<'a> {
    pub(super) swarm: &'a Swarm,
    /// Whose request counts they are in: a getter's, or (`None`) the ring's picker.
    pub(super) getter: Option<&'a Getter>,
    pub(super) ids: BTreeSet<ChunkId>,
}

impl InFlight<'_> {
    /// `id` arrived: true if it was requested here. (The picker learns of it when it is
    /// stored.)
    pub(super) fn answered(&mut self, id: ChunkId) -> bool {
        let was = self.ids.remove(&id);
        if was && let Some(g) = self.getter {
            g.release(id);
        }
        was
    }

    /// `id` is asked of this source no more: true if it was.
    pub(super) fn cancel(&mut self, id: ChunkId) -> bool {
        if !self.ids.remove(&id) {
            return false;
        }
        match self.getter {
            Some(g) => g.release(id),
            None => self.swarm.release([id]),
        }
        true
    }

    /// Nothing is asked of this source any more.
    pub(super) fn release_all(&mut self) {
        let ids = std::mem::take(&mut self.ids);
        match self.getter {
            Some(g) => ids.into_iter().for_each(|id| g.release(id)),
            None => self.swarm.release(ids),
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.release_all();
    }
}
