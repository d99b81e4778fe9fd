//! The events' tests: a tokio clock stamps events in virtual time.

use std::sync::Mutex;
use std::time::Duration;

use super::*;

/// With a tokio clock, events carry virtual time: the epoch given plus the paused
/// clock's advance, exactly.
#[tokio::test(start_paused = true)]
async fn a_tokio_clock_stamps_events_in_virtual_time() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let sink = EventSink::console("peer")
        .quiet()
        .observe(Arc::new(move |e: &Event| log.lock().unwrap().push(e.ts)))
        .clock(tokio_clock(1_000.0));
    sink.chunk(EventKind::ChunkReceived, 1, "n", Some(10));
    tokio::time::sleep(Duration::from_millis(5_250)).await;
    sink.chunk(EventKind::ChunkReceived, 2, "n", Some(10));
    let ts = seen.lock().unwrap().clone();
    assert_eq!(ts.len(), 2);
    assert!((ts[0] - 1_000.0).abs() < 1e-6, "{ts:?}");
    assert!((ts[1] - 1_005.25).abs() < 1e-6, "{ts:?}");
}
