//! The self-assembled rings (`peer join`): a member joins its file's ring at the end and
//! downloads from the next member; leaving closes the gap. Sessions watch for changes.

use std::net::SocketAddr;

use super::state::{Directory, MemberId, Tables};

/// Chunks a ring member's download neighbour holds that the member lacks, from which on the
/// neighbour counts as slow: it gets chunks faster than it can pass them on (see
/// [`Directory::ring_backlog`]). A neighbour that keeps up holds next to none.
pub const SLOW_BACKLOG: u32 = 16;

impl Directory {
    /// Member `id` (registered for `file`) joins that file's ring, at its end. Returns its
    /// download neighbour: the ring's first member, `None` when it is alone.
    pub fn join_ring(&self, file: usize, id: MemberId) -> Option<SocketAddr> {
        let mut inner = self.inner();
        if !inner.members.contains_key(&id) {
            return None;
        }
        if !inner.ring_pos.contains_key(&id) {
            let ring = inner.rings.entry(file).or_default();
            ring.push(id);
            let at = ring.len() - 1;
            inner.ring_pos.insert(id, (file, at));
        }
        drop(inner);
        self.ring_changed.send_replace(());
        self.neighbour_of(id)
    }

    /// The download neighbour of ring member `id` now: the next member in its ring (the
    /// first after the last); `None` when it is alone or in no ring.
    pub fn neighbour_of(&self, id: MemberId) -> Option<SocketAddr> {
        self.inner().ring_neighbour(id)
    }

    /// How many chunks the download neighbour of ring member `id` holds that `id` lacks, as
    /// their have lists say; `None` when it has no neighbour. A neighbour that keeps up holds
    /// few such chunks; a slow one (it cannot upload as fast as it gets them) many.
    pub fn ring_backlog(&self, id: MemberId) -> Option<u32> {
        self.inner().backlog(id).map(|(_, n)| n)
    }

    /// Whether ring member `id` is behind a slow download neighbour: one that held
    /// [`SLOW_BACKLOG`] or more chunks `id` lacked at some look since it became its
    /// neighbour. Once found slow a neighbour stays so (a member that passes on what the
    /// owner sends it soon has no backlog, and would starve again); another neighbour is
    /// judged afresh.
    pub fn behind_slow_neighbour(&self, id: MemberId) -> bool {
        let mut inner = self.inner();
        let Some((next, backlog)) = inner.backlog(id) else {
            return false;
        };
        let Some(m) = inner.members.get_mut(&id) else {
            return false;
        };
        if backlog >= SLOW_BACKLOG {
            m.slow_neighbour = Some(next);
        }
        m.slow_neighbour == Some(next)
    }

    /// Changes whenever a ring gains or loses a member.
    pub(crate) fn ring_changes(&self) -> crate::watch::Receiver<()> {
        self.ring_changed.subscribe()
    }

    /// Takes `gone` out of every ring (the member downloading from one of them gets the next
    /// one as its neighbour), and says so if any ring changed or a publisher left.
    pub(super) fn left_rings(&self, inner: &mut Tables, gone: &[MemberId], publisher_left: bool) {
        let Tables {
            rings, ring_pos, ..
        } = inner;
        let mut touched: Vec<usize> = gone
            .iter()
            .filter_map(|id| ring_pos.remove(id).map(|(file, _)| file))
            .collect();
        touched.sort_unstable();
        touched.dedup();
        let changed = !touched.is_empty();
        for file in touched {
            let Some(ring) = rings.get_mut(&file) else {
                continue;
            };
            ring.retain(|id| ring_pos.contains_key(id));
            for (at, id) in ring.iter().enumerate() {
                ring_pos.insert(*id, (file, at));
            }
        }
        rings.retain(|_, r| !r.is_empty());
        if changed || publisher_left {
            self.ring_changed.send_replace(());
        }
    }
}
