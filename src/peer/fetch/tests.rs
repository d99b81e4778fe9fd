//! The fetch handler over an in-memory stream under tokio's paused clock: the test plays the
//! source, message by message.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::super::SourceKind;
use super::super::swarm::Swarm;
use super::super::testing::{DATA, chunk, getter, handshake, next, requests, swarm};
use crate::chunkset::{ChunkSet, Ranges};
use crate::protocol::Message;

/// Every chunk of [`DATA`], as ranges.
fn all() -> Ranges {
    Ranges::from_sorted(0..4)
}

/// A ring peer asks its neighbour with its neighbour at 10.0.0.2:7000, of which it has heard nothing
/// yet: the swarm, the running session, and the neighbour's end, which the test plays.
async fn neighbour_session() -> (
    Arc<Swarm>,
    JoinHandle<crate::Result<()>>,
    crate::connection::Connection,
) {
    let swarm = swarm(false).await;
    swarm.set_link_error(SourceKind::Neighbour, None);
    let (hs, neighbour) = handshake("10.0.0.2:7000");
    let s = swarm.clone();
    let session = tokio::spawn(async move {
        let told = ChunkSet::new(4);
        super::ring(
            &s,
            SourceKind::Neighbour,
            hs,
            told,
            &CancellationToken::new(),
        )
        .await
    });
    (swarm, session, neighbour)
}

/// The neighbour announces every chunk, and is asked for all four.
async fn announce_all(neighbour: &mut crate::connection::Connection) {
    neighbour
        .send(Message::Have { chunks: all() })
        .await
        .unwrap();
    assert_eq!(requests(neighbour, 4).await, [0, 1, 2, 3]);
}

/// A ring peer asks its neighbour for what it announces, refuses a bad chunk and asks for it
/// again, announces each chunk it stores, and ends the session once the neighbour heard of
/// the last one.
#[tokio::test(start_paused = true)]
async fn a_neighbour_session_fetches_what_is_announced_and_refuses_a_bad_chunk() {
    fetches_what_is_announced_and_refuses_a_bad_chunk().await;
}

/// The same on two workers, where chunks are checked and stored on the other worker while
/// the session reads on (`fetch/storing.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_two_workers_a_session_stores_on_the_other_and_refuses_a_bad_chunk() {
    fetches_what_is_announced_and_refuses_a_bad_chunk().await;
}

/// On two workers too, the third bad chunk ends the session and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_two_workers_three_bad_chunks_end_the_session() {
    three_bad_chunks().await;
}

async fn fetches_what_is_announced_and_refuses_a_bad_chunk() {
    let (swarm, session, mut neighbour) = neighbour_session().await;
    announce_all(&mut neighbour).await;
    neighbour.send(chunk(0, true)).await.unwrap();
    assert_eq!(requests(&mut neighbour, 1).await, [0], "asked again");
    assert_eq!(swarm.status.snapshot().refused, 1);
    let mut heard = ChunkSet::new(4);
    for c in 0..4 {
        neighbour.send(chunk(c, false)).await.unwrap();
    }
    while let Some(msg) = next(&mut neighbour).await {
        match msg {
            Message::Have { chunks } => drop(heard.extend_from_ranges(&swarm.manifest, &chunks)),
            other => panic!("expected have messages, then the end: {other:?}"),
        }
    }
    assert!(heard.is_full(), "announced {:?}", heard.to_ranges());
    drop(neighbour);
    session.await.unwrap().unwrap();
    assert!(swarm.is_complete());
    assert_eq!(swarm.fetched(), 4);
}

/// The third bad chunk from one source ends its session with an error that says so.
#[tokio::test(start_paused = true)]
async fn three_bad_chunks_end_the_session() {
    three_bad_chunks().await;
}

async fn three_bad_chunks() {
    let (swarm, session, mut neighbour) = neighbour_session().await;
    announce_all(&mut neighbour).await;
    for c in 0..3 {
        neighbour.send(chunk(c, true)).await.unwrap();
    }
    let err = session.await.unwrap().unwrap_err();
    assert_eq!(
        err.to_string(),
        "3 bad chunks from 10.0.0.2:7000; disconnecting"
    );
    assert_eq!(swarm.have_snapshot().count(), 0);
}

/// A neighbour that announces chunks and never sends them is left when the request deadline
/// passes, in virtual time, and an unrequested chunk is a protocol error.
#[tokio::test(start_paused = true)]
async fn a_silent_neighbour_is_left_at_the_deadline() {
    let (_, session, mut neighbour) = neighbour_session().await;
    announce_all(&mut neighbour).await;
    let asked = Instant::now();
    let err = session.await.unwrap().unwrap_err();
    assert_eq!(
        err.to_string(),
        "10.0.0.2:7000 answered none of 4 requests for 10s; fetching them elsewhere"
    );
    assert_eq!(asked.elapsed(), Duration::from_secs(10));

    let (swarm, session, mut neighbour) = neighbour_session().await;
    neighbour.send(chunk(2, false)).await.unwrap();
    let err = session.await.unwrap().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unexpected unrequested chunk message while downloading"
    );
    assert!(!swarm.holds(swarm.manifest.chunk_id(2).unwrap()));
}

/// A getter says `interested` to a source holding what it lacks, requests only once
/// unchoked, takes the chunks, and ends the session once complete.
#[tokio::test(start_paused = true)]
async fn a_getter_requests_once_unchoked_and_leaves_when_complete() {
    let getter = getter().await;
    let (hs, mut source) = handshake("10.0.0.3:7000");
    let g = getter.clone();
    let session = tokio::spawn(async move {
        let theirs = ChunkSet::new(4);
        let token = CancellationToken::new();
        super::getter(&g, hs, "10.0.0.3:7000", theirs, None, &token).await
    });
    source.send(Message::Have { chunks: all() }).await.unwrap();
    let said = next(&mut source).await;
    assert!(matches!(said, Some(Message::Interested)), "{said:?}");
    source.send(Message::Unchoke).await.unwrap();
    assert_eq!(requests(&mut source, 4).await, [0, 1, 2, 3]);
    source.send(chunk(1, true)).await.unwrap();
    for c in [0, 2, 3] {
        source.send(chunk(c, false)).await.unwrap();
    }
    assert_eq!(requests(&mut source, 1).await, [1], "asked again");
    source.send(chunk(1, false)).await.unwrap();
    session.await.unwrap().unwrap();
    assert!(getter.swarm.is_complete());
    assert_eq!(getter.swarm.status.snapshot().refused, 1);
}

/// A getter's source that closes before the getter is complete has failed.
#[tokio::test(start_paused = true)]
async fn a_source_that_closes_early_has_failed() {
    let getter = getter().await;
    let (hs, source) = handshake("10.0.0.3:7000");
    drop(source);
    let theirs = ChunkSet::new(4);
    let token = CancellationToken::new();
    let res = super::getter(&getter, hs, "10.0.0.3:7000", theirs, None, &token).await;
    assert_eq!(
        res.unwrap_err().to_string(),
        "the source closed the connection"
    );
}

/// The owner's connection of a getter registers its chunks (`have`) and asks where the
/// chunks are, at once and every second.
#[tokio::test(start_paused = true)]
async fn a_getters_owner_connection_registers_and_locates() {
    let getter = getter().await;
    let id = getter.swarm.manifest.chunk_id(2).unwrap();
    assert!(
        getter
            .swarm
            .accept_chunk(id, DATA[2..3].to_vec().into())
            .await
            .unwrap()
    );
    let (hs, mut owner) = handshake("10.0.0.1:5000");
    let (lost_tx, mut lost_rx) = tokio::sync::mpsc::unbounded_channel();
    let g = getter.clone();
    let token = CancellationToken::new();
    let t = token.clone();
    let session = tokio::spawn(async move {
        let duties = super::OwnerDuties {
            lost_rx: Some(&mut lost_rx),
            registered: ChunkSet::new(4),
        };
        let theirs = ChunkSet::new(4);
        super::getter(&g, hs, "10.0.0.1:5000", theirs, Some(duties), &t).await
    });
    let mut said = Vec::new();
    let started = Instant::now();
    while said.len() < 4 {
        said.push(next(&mut owner).await.unwrap());
        if said.len() == 2 {
            lost_tx.send("10.0.0.9:7000".into()).unwrap();
        }
    }
    assert!(
        matches!(&said[0], Message::Have { chunks } if chunks.0 == [[2, 2]]),
        "{said:?}"
    );
    assert!(matches!(&said[1], Message::Locate { file } if file == "f"));
    assert!(
        matches!(&said[2], Message::SourceLost { addr, bad_chunks: false } if addr == "10.0.0.9:7000")
    );
    assert!(matches!(&said[3], Message::Locate { .. }), "{said:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    token.cancel();
    session.await.unwrap().unwrap();
}

/// A ring peer's owner connection asks for the chunks handed out to it, reports the download
/// neighbour once it has not served for 2 s (and again when the directory may probe it
/// again), and reports a publisher that sent bad chunks.
#[tokio::test(start_paused = true)]
async fn a_ring_owner_connection_fetches_the_hand_out_and_reports_lost_sources() {
    let swarm = swarm(false).await;
    let (mut hs, mut owner) = handshake("10.0.0.1:5000");
    hs.assigned = Ranges::from_sorted([1, 2]);
    let s = swarm.clone();
    let token = CancellationToken::new();
    let t = token.clone();
    let session = tokio::spawn(async move {
        let told = ChunkSet::new(4);
        super::ring(&s, SourceKind::Owner, hs, told, &t).await
    });
    let started = Instant::now();
    let mut lost = Vec::new();
    while lost.len() < 2 {
        match next(&mut owner).await.unwrap() {
            Message::Request { chunk, .. } if chunk == 1 || chunk == 2 => {
                owner
                    .send(super::super::testing::chunk(chunk, false))
                    .await
                    .unwrap();
            }
            Message::Request { .. } | Message::Have { .. } => {}
            Message::SourceLost { addr, bad_chunks } => {
                lost.push((addr, bad_chunks, started.elapsed()));
                if lost.len() == 1 {
                    swarm.report_bad_source("10.0.0.5:7000".into());
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let neighbour = ("10.0.0.2:7000".to_string(), false, Duration::from_secs(2));
    let publisher = ("10.0.0.5:7000".to_string(), true, Duration::from_secs(2));
    assert_eq!(lost, [neighbour, publisher]);
    let id = |c| swarm.manifest.chunk_id(c).unwrap();
    assert!(
        swarm.holds(id(1)) && swarm.holds(id(2)),
        "the hand-out is fetched"
    );
    token.cancel();
    session.await.unwrap().unwrap();
}
