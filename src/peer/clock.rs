//! The request deadline of one download connection ([`AnswerClock`]): requests a source
//! leaves unanswered too long are fetched elsewhere; and when a keep-alive is due
//! ([`Beat`]).

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

/// When a writer's keep-alive is due: `every` after the last message it sent, however often
/// its loop wakes. A `sleep(every)` made anew on each turn of the loop never fired while
/// change signals woke the loop more often than that with nothing to say, and the other side
/// dropped the connection as silent.
pub(super) struct Beat {
    every: Duration,
    due: Instant,
}

impl Beat {
    /// A keep-alive due `every` from now.
    pub(super) fn new(every: Duration) -> Self {
        Self {
            every,
            due: Instant::now() + every,
        }
    }

    /// Something was sent: the next keep-alive is due `every` from now.
    pub(super) fn sent(&mut self) {
        self.due = Instant::now() + self.every;
    }

    /// Resolves when the keep-alive is due.
    pub(super) async fn due(&self) {
        tokio::time::sleep_until(self.due).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loop woken every second with nothing to send still sends its keep-alive after
    /// `every` of silence; each message sent puts it off.
    #[tokio::test(start_paused = true)]
    async fn a_keepalive_comes_after_silence_however_often_the_loop_wakes() {
        let started = Instant::now();
        let mut beat = Beat::new(Duration::from_secs(5));
        let mut wakes = 0;
        loop {
            tokio::select! {
                biased;
                () = beat.due() => break,
                () = tokio::time::sleep(Duration::from_secs(1)) => wakes += 1,
            }
        }
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(wakes, 4);
        beat.sent();
        tokio::time::sleep(Duration::from_secs(3)).await;
        beat.sent();
        let again = Instant::now();
        beat.due().await;
        assert_eq!(again.elapsed(), Duration::from_secs(5));
    }
}
