//! What the peer handlers' unit tests share: a swarm in memory, and a handshaken connection
//! over `tokio::io::duplex` whose far end the test scripts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::bootstrap::Handshake;
use super::config::Config;
use super::getter::{Getter, new_getter};
use super::swarm::Swarm;
use crate::chunkset::Ranges;
use crate::connection::{Connection, KEEPALIVE_INTERVAL};
use crate::events::EventSink;
use crate::manifest::Manifest;
use crate::net::Endpoint;
use crate::protocol::Message;
use crate::storage::InMemory;

/// The file every test shares: four one-byte chunks.
pub(super) const DATA: &[u8] = b"abcd";

/// Chunk `c` of [`DATA`] as a `chunk` message, its first byte flipped if `bad`.
pub(super) fn chunk(c: u32, bad: bool) -> Message {
    let mut byte = DATA[c as usize];
    if bad {
        byte ^= 0xff;
    }
    Message::chunk(c, Bytes::from(vec![byte]))
}

/// A ring peer's swarm (a getter's if `getter`) for [`DATA`], in memory, holding nothing.
pub(super) async fn swarm(getter: bool) -> Arc<Swarm> {
    let manifest = Manifest::from_bytes("f", DATA, 1).unwrap();
    let owner: Endpoint = "10.0.0.1:5000".parse().unwrap();
    let neighbour: Endpoint = "10.0.0.2:7000".parse().unwrap();
    let dir = PathBuf::from("/nonexistent");
    let base = if getter {
        Config::getter(owner, dir, 2)
    } else {
        Config::ring(owner, neighbour, dir)
    };
    let config = Config {
        in_memory: Some(InMemory::Bodies),
        seed: Some(7),
        events: Arc::new(EventSink::console("peer").quiet()),
        ..base
    };
    let mode = config.mode();
    let swarm = Swarm::open(config, mode, manifest, 6000, "test".into()).await;
    Arc::new(swarm.unwrap())
}

/// A getter over [`swarm`]`(true)` that knows where the chunks are (nowhere in particular).
pub(super) async fn getter() -> Arc<Getter> {
    let (lost_tx, _) = mpsc::unbounded_channel();
    let getter = new_getter(&swarm(true).await, lost_tx);
    getter.located(serde_json::from_str(r#"{"sources": []}"#).unwrap());
    getter
}

/// A handshaken connection to `remote` over an in-memory stream, and its far end.
pub(super) fn handshake(remote: &str) -> (Handshake, Connection) {
    let (near, far) = tokio::io::duplex(1 << 16);
    let hs = Handshake {
        conn: Connection::over(near, remote.into(), 1 << 10),
        assigned: Ranges::default(),
        heartbeat: KEEPALIVE_INTERVAL,
        empty: false,
        neighbour: None,
        publisher: None,
        plain: false,
    };
    (hs, Connection::over(far, "peer".into(), 1 << 20))
}

/// The next message on `conn` that is not a keep-alive (`None`: closed); panics on an error.
pub(super) async fn next(conn: &mut Connection) -> Option<Message> {
    loop {
        match conn.recv("the peer", Duration::from_secs(600)).await {
            Ok(Some(Message::Have { chunks })) if chunks.is_empty() => {}
            Ok(other) => return other,
            Err(e) => panic!("expected a message: {e}"),
        }
    }
}

/// The chunks requested in the next `n` messages on `conn`, which must be requests.
pub(super) async fn requests(conn: &mut Connection, n: usize) -> Vec<u32> {
    let mut asked = Vec::new();
    for _ in 0..n {
        match next(conn).await {
            Some(Message::Request { chunk, .. }) => asked.push(chunk),
            other => panic!("expected a request: {other:?}"),
        }
    }
    asked.sort_unstable();
    asked
}
