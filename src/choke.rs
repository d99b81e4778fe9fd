//! Choking, as BitTorrent does it: an uploader serves at most `slots` interested getters at a
//! time and never serves one it is choking.
//!
//! Every connection has four flags. A connection here carries chunks one way (a getter
//! downloads from a server), so each side owns two of them: the getter keeps
//! `am_interested` (it told the server it wants chunks) and `peer_choking` (the server's last
//! word was `choke`); the server keeps `am_choking` and `peer_interested`. A server serves a
//! request only when `peer_interested && !am_choking`; a getter requests only when
//! `am_interested && !peer_choking`.
//!
//! The server decides who is unchoked ([`Choker`]): when a getter becomes interested and a slot
//! is free, at once; otherwise every [`RECHOKE_INTERVAL`], the `slots - 1` interested getters it
//! uploaded to fastest since the last round keep their slots, and one *optimistic* slot goes
//! round the other interested getters, moving on every [`OPTIMISTIC_EVERY`] rounds, so a
//! newcomer gets a chance to show its speed. Ring neighbours are not choked: each peer has one
//! upload neighbour, and the ring needs it served.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::watch;

/// How often the unchoked set is chosen again.
pub const RECHOKE_INTERVAL: Duration = Duration::from_secs(2);
/// The optimistic slot moves on every this many rechoke rounds.
pub const OPTIMISTIC_EVERY: u32 = 3;
/// Upload slots when none are given.
pub const DEFAULT_UPLOAD_SLOTS: usize = 4;

#[derive(Debug)]
struct Conn {
    interested: bool,
    unchoked: watch::Sender<bool>,
    /// Bytes sent since the last rechoke.
    sent: u64,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    conns: BTreeMap<u64, Conn>,
    optimistic: Option<u64>,
    rounds: u32,
}

/// An uploader's choking state for all its getter connections.
#[derive(Debug)]
pub struct Choker {
    slots: usize,
    inner: Mutex<Inner>,
}

/// One connection's place in a [`Choker`]; leaves it when dropped.
#[derive(Debug)]
pub struct ChokeSlot {
    choker: Arc<Choker>,
    id: u64,
}

impl Choker {
    /// A choker with `slots` upload slots (at least 1).
    pub fn new(slots: usize) -> Arc<Self> {
        Arc::new(Self {
            slots: slots.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a connection, choked and not interested. The receiver says whether it is
    /// unchoked, and changes when that does.
    pub fn join(self: &Arc<Self>) -> (ChokeSlot, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(false);
        let mut inner = self.inner();
        inner.next += 1;
        let id = inner.next;
        inner.conns.insert(
            id,
            Conn {
                interested: false,
                unchoked: tx,
                sent: 0,
            },
        );
        drop(inner);
        (
            ChokeSlot {
                choker: self.clone(),
                id,
            },
            rx,
        )
    }

    /// Connections in all, unchoked, and interested, now.
    pub fn counts(&self) -> (usize, usize, usize) {
        let inner = self.inner();
        let unchoked = inner
            .conns
            .values()
            .filter(|c| *c.unchoked.borrow())
            .count();
        let interested = inner.conns.values().filter(|c| c.interested).count();
        (inner.conns.len(), unchoked, interested)
    }

    /// How many connections are unchoked now.
    pub fn unchoked(&self) -> usize {
        self.inner()
            .conns
            .values()
            .filter(|c| *c.unchoked.borrow())
            .count()
    }

    /// Unchokes interested connections while slots are free. A connection that lost interest
    /// keeps its unchoke (it costs nothing while it asks for nothing) until a waiting
    /// interested one needs the slot, or the next rechoke, so interest that comes and goes
    /// does not make the unchoke flap.
    fn fill(&self, inner: &mut Inner) {
        let unchoked = |c: &Conn| *c.unchoked.borrow();
        let mut free = self
            .slots
            .saturating_sub(inner.conns.values().filter(|c| unchoked(c)).count());
        let waiting: Vec<u64> = inner
            .conns
            .iter()
            .filter(|(_, c)| c.interested && !unchoked(c))
            .map(|(&id, _)| id)
            .collect();
        let mut idle = inner
            .conns
            .iter()
            .filter(|(_, c)| !c.interested && unchoked(c))
            .map(|(&id, _)| id)
            .collect::<Vec<_>>()
            .into_iter();
        for id in waiting {
            if free == 0 {
                let Some(victim) = idle.next() else { break };
                inner.conns[&victim].unchoked.send_replace(false);
                free += 1;
            }
            inner.conns[&id].unchoked.send_replace(true);
            free -= 1;
        }
    }

    /// One rechoke round (see the module docs).
    pub fn rechoke(&self) {
        let mut inner = self.inner();
        inner.rounds = inner.rounds.wrapping_add(1);
        let mut by_rate: Vec<(u64, u64)> = inner
            .conns
            .iter()
            .filter(|(_, c)| c.interested)
            .map(|(&id, c)| (id, c.sent))
            .collect();
        // Fastest first; among equals, the longest-connected.
        by_rate.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let regular = self.slots.saturating_sub(1);
        let mut keep: Vec<u64> = by_rate.iter().take(regular).map(|&(id, _)| id).collect();
        let rest: Vec<u64> = by_rate.iter().skip(regular).map(|&(id, _)| id).collect();
        let current = inner.optimistic.filter(|o| rest.contains(o));
        let optimistic = match current {
            Some(o) if !inner.rounds.is_multiple_of(OPTIMISTIC_EVERY) => Some(o),
            // Move on: the next interested connection after the current one, round robin.
            _ => {
                let after = inner.optimistic.unwrap_or(0);
                rest.iter()
                    .copied()
                    .find(|&id| id > after)
                    .or_else(|| rest.first().copied())
            }
        };
        inner.optimistic = optimistic;
        keep.extend(optimistic);
        for (id, c) in &mut inner.conns {
            c.sent = 0;
            let on = keep.contains(id);
            c.unchoked.send_if_modified(|u| {
                let changed = *u != on;
                *u = on;
                changed
            });
        }
        self.fill(&mut inner);
    }
}

impl ChokeSlot {
    /// The remote said `interested` (true) or `not_interested` (false).
    pub fn set_interested(&self, interested: bool) {
        let mut inner = self.choker.inner();
        let Some(c) = inner.conns.get_mut(&self.id) else {
            return;
        };
        c.interested = interested;
        self.choker.fill(&mut inner);
    }

    /// Whether the remote said it is interested.
    pub fn interested(&self) -> bool {
        self.choker
            .inner()
            .conns
            .get(&self.id)
            .is_some_and(|c| c.interested)
    }

    /// Counts bytes uploaded on this connection, for the next rechoke.
    pub fn sent(&self, bytes: u64) {
        if let Some(c) = self.choker.inner().conns.get_mut(&self.id) {
            c.sent += bytes;
        }
    }
}

impl Drop for ChokeSlot {
    fn drop(&mut self) {
        let mut inner = self.choker.inner();
        inner.conns.remove(&self.id);
        if inner.optimistic == Some(self.id) {
            inner.optimistic = None;
        }
        self.choker.fill(&mut inner);
    }
}

/// Runs rechoke rounds until the returned task is aborted or the choker is dropped.
pub fn spawn_rechoker(choker: &Arc<Choker>) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(choker);
    crate::task::spawn_named("rechoker", async move {
        let mut tick = tokio::time::interval(RECHOKE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            match weak.upgrade() {
                Some(c) => c.rechoke(),
                None => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_limit_the_unchoked_and_free_ones_are_refilled() {
        let choker = Choker::new(2);
        let conns: Vec<_> = (0..4).map(|_| choker.join()).collect();
        assert_eq!(
            choker.unchoked(),
            0,
            "nobody is unchoked before saying interested"
        );
        for (slot, _) in &conns {
            slot.set_interested(true);
        }
        assert_eq!(choker.unchoked(), 2);
        assert!(*conns[0].1.borrow() && *conns[1].1.borrow());
        assert!(!*conns[2].1.borrow() && !*conns[3].1.borrow());
        // Losing interest gives the slot to a waiting interested one at once.
        conns[0].0.set_interested(false);
        assert!(!*conns[0].1.borrow());
        assert!(*conns[2].1.borrow());
        assert_eq!(choker.unchoked(), 2);
        // With nobody waiting, a connection that loses interest keeps its unchoke.
        let choker = Choker::new(2);
        let (a, a_rx) = choker.join();
        a.set_interested(true);
        a.set_interested(false);
        assert!(*a_rx.borrow(), "no flapping when interest comes and goes");
        choker.rechoke();
        assert!(!*a_rx.borrow(), "the next rechoke takes it back");
    }

    #[test]
    fn rechoke_keeps_the_fastest_and_rotates_the_optimistic_slot() {
        let choker = Choker::new(2);
        let conns: Vec<_> = (0..4).map(|_| choker.join()).collect();
        for (slot, _) in &conns {
            slot.set_interested(true);
        }
        let mut optimistic_seen = std::collections::HashSet::new();
        for round in 0..12 {
            // Connection 3 is the fastest whenever it is served.
            for (i, (slot, rx)) in conns.iter().enumerate() {
                if *rx.borrow() {
                    slot.sent(if i == 3 { 1000 } else { 10 });
                }
            }
            choker.rechoke();
            assert_eq!(choker.unchoked(), 2, "round {round}");
            let on: Vec<usize> = (0..4).filter(|&i| *conns[i].1.borrow()).collect();
            optimistic_seen.extend(on.iter().copied().filter(|&i| i != 3));
        }
        assert!(*conns[3].1.borrow(), "the fastest keeps its slot");
        assert_eq!(
            optimistic_seen.len(),
            3,
            "the optimistic slot visits everyone else"
        );
    }
}
