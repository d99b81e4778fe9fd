//! The request deadline of one download connection ([`AnswerClock`]): requests a source
//! leaves unanswered too long are fetched elsewhere. (When a keep-alive is due is the
//! driver's: [`crate::driver::Beat`].)

use std::time::Duration;

use tokio::time::Instant;

/// The least time a source may take to answer any of the requests outstanding at it.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// The request deadline of one connection: a source may go this long without sending any
/// of the chunks requested of it — [`REQUEST_DEADLINE`], plus a chunk's time at 64 KiB/s
/// for large chunks on slow links — counted from when requests began to wait, or from the
/// last chunk received.
pub(super) struct AnswerClock {
    since: Option<Instant>,
    deadline: Duration,
}

impl AnswerClock {
    pub(super) fn new(chunk_size: u64) -> Self {
        Self {
            since: None,
            deadline: REQUEST_DEADLINE
                + Duration::from_millis(chunk_size.saturating_mul(1000) / (64 * 1024)),
        }
    }

    /// Whether requests are waiting for an answer now: the clock runs only while they are.
    pub(super) fn waiting(&mut self, waiting: bool) {
        if !waiting {
            self.since = None;
        } else if self.since.is_none() {
            self.since = Some(Instant::now());
        }
    }

    /// A requested chunk arrived: the clock starts again.
    pub(super) fn answered(&mut self) {
        self.since = None;
    }

    /// Completes once requests have waited past the deadline; never while none wait.
    pub(super) async fn expired(&self) {
        match self.since {
            Some(t) => tokio::time::sleep_until(t + self.deadline).await,
            None => std::future::pending().await,
        }
    }

    pub(super) fn deadline(&self) -> Duration {
        self.deadline
    }
}
