//! Urgent requests: a ring member whose download neighbour held
//! [`SLOW_BACKLOG`](crate::directory::SLOW_BACKLOG) or more chunks it lacked has a neighbour
//! that cannot upload as fast as the ring fills it (a slow link), and would starve behind
//! it (see [`Directory::behind_slow_neighbour`](crate::directory::Directory)). The owner
//! serves that member's requests first: other ordinary requests wait while an urgent one is
//! queued and urgent chunks keep going out (one at least every [`HOLD`], so a member whose
//! own download is what holds it back does not hold back the rest), each [`MAX_WAIT`] at
//! most. While
//! they wait, the ring passes the urgent member's chunks on, and requests for them are
//! cancelled rather than sent twice. Without urgent requests nothing waits here.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// How long after the last urgent chunk went out (or the first was queued) other requests
/// still wait for urgent ones.
pub(crate) const HOLD: Duration = Duration::from_millis(200);
/// The longest an ordinary request waits for urgent ones: its connection's writer sends
/// nothing else meanwhile (keep-alives, ring changes), so well under the keep-alive
/// interval.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(5);

/// The urgent requests queued at this owner.
#[derive(Debug, Default)]
pub(crate) struct UrgentGate {
    /// Urgent requests queued and not yet served, and the last urgent activity.
    state: Mutex<(usize, Option<Instant>)>,
    /// Signalled when the last urgent request is served.
    none_left: Notify,
}

impl UrgentGate {
    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, Option<Instant>)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An urgent request was queued.
    pub(crate) fn queued(&self) {
        let mut st = self.lock();
        if st.0 == 0 {
            st.1 = Some(Instant::now());
        }
        st.0 += 1;
    }

    /// An urgent request was served (`sent`: its chunk went out) or dropped.
    pub(crate) fn done(&self, sent: bool) {
        let mut st = self.lock();
        st.0 = st.0.saturating_sub(1);
        if sent {
            st.1 = Some(Instant::now());
        }
        if st.0 == 0 {
            drop(st);
            self.none_left.notify_waiters();
        }
    }

    /// Until when an ordinary request must wait: `None` when it may go now.
    fn holding(&self) -> Option<Instant> {
        let st = self.lock();
        let until = st.1? + HOLD;
        (st.0 > 0 && until > Instant::now()).then_some(until)
    }

    /// Resolves when an ordinary request may be served: at once unless urgent ones wait,
    /// and after [`MAX_WAIT`] at most.
    pub(crate) async fn turn(&self) {
        let mut give_up = None;
        loop {
            let woken = self.none_left.notified();
            let Some(until) = self.holding() else {
                return;
            };
            let give_up = *give_up.get_or_insert_with(|| Instant::now() + MAX_WAIT);
            if Instant::now() >= give_up {
                return;
            }
            tokio::select! {
                biased;
                () = woken => {}
                () = tokio::time::sleep_until(until.min(give_up)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn ordinary_requests_wait_while_urgent_ones_go_out() {
        let gate = UrgentGate::default();
        let start = Instant::now();
        gate.turn().await;
        assert_eq!(start.elapsed(), Duration::ZERO, "nothing urgent: no wait");
        gate.queued();
        gate.queued();
        let serve = async {
            tokio::time::sleep(150 * MS).await;
            gate.done(true);
            tokio::time::sleep(150 * MS).await;
            gate.done(true);
        };
        let ((), ()) = tokio::join!(gate.turn(), serve);
        assert_eq!(
            start.elapsed(),
            300 * MS,
            "until the last urgent one went out"
        );
    }

    /// Urgent chunks going out for longer than [`MAX_WAIT`] hold an ordinary request back
    /// that long, no longer.
    #[tokio::test(start_paused = true)]
    async fn an_ordinary_request_waits_at_most_max_wait() {
        let gate = UrgentGate::default();
        let start = Instant::now();
        gate.queued();
        let serve = async {
            while start.elapsed() < 2 * MAX_WAIT {
                tokio::time::sleep(100 * MS).await;
                gate.queued();
                gate.done(true);
            }
        };
        tokio::select! {
            () = gate.turn() => {}
            () = serve => panic!("waited past MAX_WAIT"),
        }
        assert_eq!(start.elapsed(), MAX_WAIT);
    }

    /// An urgent request that does not go out (its client takes chunks slowly) holds the
    /// others back only for [`HOLD`].
    #[tokio::test(start_paused = true)]
    async fn a_stuck_urgent_request_holds_others_back_only_briefly() {
        let gate = UrgentGate::default();
        let start = Instant::now();
        gate.queued();
        gate.turn().await;
        assert_eq!(start.elapsed(), HOLD);
    }
}
