//! What counts as progress for the one backoff rule ([`Backoff`]) a peer's reconnecting parts
//! follow: an [`Attempt`] made progress if it stored a chunk or lasted [`STABLE_SESSION`].
//!
//! The links ([`super::links`]) wait 50 ms doubling to 2 s; the source pool
//! ([`super::sources`]) avoids a failed source 5 s doubling to 60 s.

use std::time::Duration;

use tokio::time::Instant;

#[cfg(doc)]
use crate::net::Backoff;

/// A session at least this long counts as progress for the reconnect backoff.
pub const STABLE_SESSION: Duration = Duration::from_secs(10);

/// One attempt at a source, measured for [`Backoff::after`]: did it store a chunk, or last?
#[derive(Clone, Copy, Debug)]
pub(super) struct Attempt {
    fetched: u32,
    since: Instant,
}

impl Attempt {
    /// An attempt starting now, with `fetched` chunks stored so far.
    pub(super) fn start(fetched: u32) -> Self {
        Self {
            fetched,
            since: Instant::now(),
        }
    }

    /// Whether it lasted [`STABLE_SESSION`].
    pub(super) fn lasted(&self) -> bool {
        self.since.elapsed() >= STABLE_SESSION
    }

    /// Whether it made real progress: more than the `fetched` it started with are stored
    /// now, or it lasted.
    pub(super) fn progressed(&self, fetched: u32) -> bool {
        fetched > self.fetched || self.lasted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{BACKOFF_MAX, BACKOFF_START, Backoff};

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waits_double_up_to_the_cap() {
        let mut r = Backoff::default();
        let waits: Vec<_> = (0..8).map(|_| r.next_delay()).collect();
        assert_eq!(waits[0], BACKOFF_START);
        assert_eq!(waits[1], 2 * BACKOFF_START);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]), "{waits:?}");
        assert_eq!(*waits.last().unwrap(), BACKOFF_MAX);
        let mut s = Backoff::new(5000 * MS, 60_000 * MS);
        let secs: Vec<_> = (0..6).map(|_| s.next_delay().as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 60, 60]);
    }

    #[test]
    fn only_progress_starts_the_waits_again() {
        let mut r = Backoff::new(5 * MS, 40 * MS);
        r.next_delay();
        r.next_delay();
        assert!(!r.after(false));
        assert_eq!(
            r.next_delay(),
            20 * MS,
            "no progress: the waits keep growing"
        );
        assert!(r.after(true));
        assert_eq!(r.next_delay(), 5 * MS, "progress: back to the shortest");
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_progressed_if_it_stored_a_chunk_or_lasted() {
        let a = Attempt::start(7);
        assert!(!a.progressed(7), "nothing stored, no time passed");
        assert!(a.progressed(8), "a chunk stored");
        tokio::time::sleep(STABLE_SESSION - MS).await;
        assert!(!a.lasted() && !a.progressed(7));
        tokio::time::sleep(MS).await;
        assert!(
            a.lasted() && a.progressed(7),
            "a stable session is progress"
        );
    }

    /// A link that fails at once keeps slowing down; one that lasted reconnects fast again.
    #[tokio::test(start_paused = true)]
    async fn a_failing_link_slows_down_and_a_stable_one_starts_over() {
        let mut r = Backoff::default();
        let mut waits = Vec::new();
        for _ in 0..4 {
            let a = Attempt::start(0);
            r.after(a.progressed(0));
            waits.push(r.next_delay());
        }
        assert_eq!(waits, [50 * MS, 100 * MS, 200 * MS, 400 * MS]);
        let a = Attempt::start(0);
        tokio::time::sleep(STABLE_SESSION).await;
        r.after(a.progressed(0));
        assert_eq!(r.next_delay(), BACKOFF_START);
    }
}
