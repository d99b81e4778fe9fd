//! The owner's spare upload: once every chunk is in the ring, the owner's upload would sit
//! idle. Ring peers whose neighbour has nothing for them ask the owner for `spare` chunks; the
//! owner serves those only while no ordinary request waits on any connection, and then to the
//! peer holding the fewest chunks first, so its idle upload goes to the peers that lag most.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// How often a waiting spare request looks again even without a wake-up.
const RECHECK: Duration = Duration::from_millis(20);

/// Who may send a spare chunk next.
#[derive(Debug, Default)]
pub(crate) struct SpareGate {
    /// Ordinary requests queued on any connection and not yet served.
    normal: AtomicUsize,
    /// Connections with spare requests, by (chunks held, connection).
    waiting: Mutex<BTreeSet<(u32, u64)>>,
    next_id: AtomicUsize,
    changed: Notify,
}

/// A connection's place in the spare queue; leaves it when dropped.
#[derive(Debug)]
pub(crate) struct SpareTicket<'a> {
    gate: &'a SpareGate,
    key: (u32, u64),
}

impl SpareGate {
    /// An ordinary request was queued.
    pub fn normal_queued(&self) {
        self.normal.fetch_add(1, Ordering::SeqCst);
    }

    /// An ordinary request was served or dropped.
    pub fn normal_done(&self) {
        if self.normal.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.changed.notify_waiters();
        }
    }

    /// A new connection id for tickets.
    pub fn connection(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) as u64
    }

    /// Queues connection `conn`, whose peer holds `held` chunks.
    pub fn ticket(&self, conn: u64, held: u32) -> SpareTicket<'_> {
        let key = (held, conn);
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key);
        SpareTicket { gate: self, key }
    }

    fn ready(&self, key: (u32, u64)) -> bool {
        self.normal.load(Ordering::SeqCst) == 0
            && self
                .waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .first()
                == Some(&key)
    }
}

impl SpareTicket<'_> {
    /// Resolves when this connection may send one spare chunk: no ordinary request waits
    /// anywhere and no connection with fewer chunks waits. Dropping it is harmless.
    pub async fn turn(&self) {
        loop {
            let woken = self.gate.changed.notified();
            if self.gate.ready(self.key) {
                return;
            }
            tokio::select! {
                biased;
                () = woken => {}
                () = tokio::time::sleep(RECHECK) => {}
            }
        }
    }
}

impl Drop for SpareTicket<'_> {
    fn drop(&mut self) {
        self.gate
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
        self.gate.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_most_lagging_goes_first_and_only_when_nothing_else_waits() {
        let gate = SpareGate::default();
        let behind = gate.ticket(1, 10);
        let ahead = gate.ticket(2, 50);
        assert!(gate.ready(behind.key) && !gate.ready(ahead.key));
        gate.normal_queued();
        assert!(!gate.ready(behind.key), "ordinary requests first");
        gate.normal_done();
        tokio::time::timeout(Duration::from_secs(1), behind.turn())
            .await
            .unwrap();
        drop(behind);
        tokio::time::timeout(Duration::from_secs(1), ahead.turn())
            .await
            .unwrap();
    }
}
