//! The downstream side: the upload neighbours connected to this peer's upload server, and
//! whether a complete peer has served them enough to stop (see `finish::wait_downstream`).
//!
//! The upload server (`upload.rs`) sets the fields as neighbours connect, say they are
//! complete, and leave; hence their long names.

use tokio::time::Instant;

use super::config::{DOWNSTREAM_GRACE, NO_DOWNSTREAM_WAIT};

#[derive(Debug)]
pub(super) struct Downstream {
    /// Upload neighbours connected.
    pub(super) downstream_open: usize,
    /// Upload neighbours connected that have not said they are complete.
    pub(super) downstream_incomplete: usize,
    /// When an incomplete upload neighbour last disconnected (it may be reconnecting).
    pub(super) incomplete_downstream_left: Option<Instant>,
    /// Some upload neighbour said it is complete.
    pub(super) downstream_done: bool,
    /// When an upload neighbour last connected or left (or the peer started).
    pub(super) downstream_last_seen: Instant,
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
}
