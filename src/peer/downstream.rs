//! The downstream side: the upload neighbours connected to this peer's upload server, and
//! whether a complete peer has served them enough to stop (see `finish::wait_downstream`).
//!
//! The upload server (`upload.rs`) reports, through the swarm, as neighbours connect, say
//! they are complete, move on, and leave.

use tokio::time::Instant;

use super::config::{DOWNSTREAM_GRACE, NO_DOWNSTREAM_WAIT};

#[derive(Debug)]
pub(super) struct Downstream {
    /// Upload neighbours connected.
    downstream_open: usize,
    /// Upload neighbours connected that have not said they are complete.
    downstream_incomplete: usize,
    /// When an incomplete upload neighbour last disconnected (it may be reconnecting).
    incomplete_downstream_left: Option<Instant>,
    /// Some upload neighbour said it is complete.
    downstream_done: bool,
    /// When an upload neighbour last connected or left (or the peer started).
    downstream_last_seen: Instant,
}

/// Why a complete ring peer may stop serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Served {
    /// The upload neighbour is complete, and no incomplete one is connected or reconnecting.
    NeighbourComplete,
    /// No upload neighbour was connected for [`NO_DOWNSTREAM_WAIT`].
    NoNeighbour,
}

impl Downstream {
    /// Nobody connected yet, as of `now`.
    pub(super) fn new(now: Instant) -> Self {
        Self {
            downstream_open: 0,
            downstream_incomplete: 0,
            incomplete_downstream_left: None,
            downstream_done: false,
            downstream_last_seen: now,
        }
    }

    /// An upload neighbour connected: incomplete until it says otherwise.
    pub(super) fn opened(&mut self) {
        self.downstream_open += 1;
        self.downstream_incomplete += 1;
        self.downstream_last_seen = Instant::now();
    }

    /// A connected upload neighbour said it is complete.
    pub(super) fn completed(&mut self) {
        self.downstream_done = true;
        self.downstream_incomplete -= 1;
    }

    /// A connected upload neighbour moved to another download neighbour: it is not waited for.
    pub(super) fn moved(&mut self) {
        self.downstream_incomplete -= 1;
    }

    /// An upload neighbour left; `incomplete`: neither complete nor moved on (it may be
    /// reconnecting).
    pub(super) fn left(&mut self, incomplete: bool) {
        self.downstream_open -= 1;
        self.downstream_last_seen = Instant::now();
        if incomplete {
            self.downstream_incomplete -= 1;
            self.incomplete_downstream_left = Some(Instant::now());
        }
    }

    /// Whether the upload neighbours were served enough to stop, and why.
    pub(super) fn served(&self) -> Option<Served> {
        // Complete, and no incomplete neighbour connected or just gone (reconnecting).
        let incomplete_gone = self.downstream_incomplete == 0
            && self
                .incomplete_downstream_left
                .is_none_or(|t| t.elapsed() >= DOWNSTREAM_GRACE);
        if self.downstream_done && incomplete_gone {
            return Some(Served::NeighbourComplete);
        }
        if self.downstream_open == 0 && self.downstream_last_seen.elapsed() >= NO_DOWNSTREAM_WAIT {
            return Some(Served::NoNeighbour);
        }
        None
    }

    /// When [`Downstream::served`] may change with nothing happening: the end of a gone
    /// neighbour's reconnect grace, or of the wait for any neighbour (`None`: only a
    /// neighbour's coming, going or completing can change it).
    pub(super) fn deadline(&self) -> Option<Instant> {
        let grace = self
            .incomplete_downstream_left
            .filter(|_| self.downstream_done && self.downstream_incomplete == 0)
            .map(|t| t + DOWNSTREAM_GRACE);
        let alone =
            (self.downstream_open == 0).then(|| self.downstream_last_seen + NO_DOWNSTREAM_WAIT);
        grace.into_iter().chain(alone).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `served` changes at `deadline` with nothing else happening: a peer nobody connects to
    /// stops after NO_DOWNSTREAM_WAIT, and a complete neighbour's stop waits out the grace of
    /// an incomplete one that left (it may be reconnecting).
    #[tokio::test(start_paused = true)]
    async fn served_changes_exactly_at_the_deadline() {
        let start = Instant::now();
        let mut d = Downstream::new(start);
        assert_eq!(d.deadline(), Some(start + NO_DOWNSTREAM_WAIT));
        tokio::time::sleep_until(d.deadline().unwrap()).await;
        assert_eq!(d.served(), Some(Served::NoNeighbour));

        let mut d2 = Downstream::new(Instant::now());
        d2.opened();
        d2.opened();
        d2.completed();
        assert_eq!(
            d2.deadline(),
            None,
            "one neighbour still incomplete and connected"
        );
        d2.left(true);
        let grace_end = Instant::now() + DOWNSTREAM_GRACE;
        assert_eq!(d2.served(), None);
        assert_eq!(d2.deadline(), Some(grace_end));
        tokio::time::sleep_until(grace_end).await;
        assert_eq!(d2.served(), Some(Served::NeighbourComplete));
        d.opened();
        assert_eq!(d.deadline(), None);
    }
}
