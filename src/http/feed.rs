//! A live feed as Server-Sent Events: the state now, then each new state a task broadcasts,
//! for the owner's dashboard and the app alike. A client more than its broadcast channel's
//! capacity behind is dropped (its browser reconnects at once, `retry: 1000`), never
//! buffered without limit.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use tokio::sync::broadcast;

use super::limits::Place;

/// The feed of `rx` after `first`, each state as an event named `event`; `place` (the
/// client address's event-stream place, if any) is held until the feed ends.
pub fn sse(
    first: String,
    rx: broadcast::Receiver<Arc<str>>,
    event: &'static str,
    place: Option<Place>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>> + use<>> {
    use futures::StreamExt;
    let head = futures::stream::once(async move { first });
    let tail = futures::stream::unfold(rx, |mut rx| async move {
        // Lagged: this client is dropped; closed: the server is stopping.
        let s = rx.recv().await.ok()?;
        Some((s.to_string(), rx))
    });
    let stream = head.chain(tail).map(move |data| {
        let _held = &place;
        Ok(Event::default()
            .event(event)
            .retry(Duration::from_secs(1))
            .data(data))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
