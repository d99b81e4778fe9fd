//! The upload server: serves this peer's chunks to its upload neighbour (and anyone else who
//! connects), sends its chunk-ID list on connect and each new chunk as it arrives, and tracks
//! whether the neighbour is complete.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use super::download::announce;
use super::{MAX_UPLOAD_CONNECTIONS, Swarm};
use crate::chunkset::{ChunkSet, Ranges};
use crate::connection::{
    ConnReader, ConnWriter, Connection, Hello, IDLE_TIMEOUT, KEEPALIVE_INTERVAL,
};
use crate::events::EventKind;
use crate::manifest::ChunkId;
use crate::net::TcpListener;
use crate::protocol::{Message, ProtocolError};
use crate::{Error, Result};

/// Requests queued per connection beyond which the reader waits.
const MAX_QUEUED_REQUESTS: usize = 64;

/// Accepts upload connections until `token` is cancelled.
pub(super) async fn serve(listener: TcpListener, swarm: Arc<Swarm>, token: CancellationToken) {
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(MAX_UPLOAD_CONNECTIONS));
    loop {
        let (stream, addr) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    warn!("accept failed: {e}; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = token.cancelled() => break,
        };
        let permit = slots.clone().try_acquire_owned().ok();
        let swarm = swarm.clone();
        let child = token.child_token();
        tracker.spawn(
            async move {
                let mut conn = Connection::new(stream, 0);
                if permit.is_none() {
                    conn.send_error(format!(
                        "peer is busy: at most {MAX_UPLOAD_CONNECTIONS} connections at once"
                    ))
                    .await;
                    return;
                }
                match handle(conn, &swarm, &child).await {
                    Ok(()) => debug!("upload connection closed"),
                    Err(e) => warn!("upload connection closed: {e}"),
                }
                drop(permit);
            }
            .instrument(info_span!("upload", peer = %addr)),
        );
    }
    tracker.close();
    tracker.wait().await;
}

/// Marks an upload neighbour as connected for as long as it lives.
struct Downstream<'a>(&'a Swarm);

impl<'a> Downstream<'a> {
    fn open(swarm: &'a Swarm) -> Self {
        let mut st = swarm.state();
        st.downstream_open += 1;
        st.downstream_last_seen = Instant::now();
        drop(st);
        Self(swarm)
    }
}

impl Drop for Downstream<'_> {
    fn drop(&mut self) {
        let mut st = self.0.state();
        st.downstream_open -= 1;
        st.downstream_last_seen = Instant::now();
        drop(st);
        self.0.notify();
    }
}

async fn handle(mut conn: Connection, swarm: &Swarm, token: &CancellationToken) -> Result<()> {
    let m = &swarm.manifest;
    let Hello {
        file, have, label, ..
    } = conn.recv_hello().await?;
    if let Some(f) = file.filter(|f| *f != m.name) {
        let msg = format!("this peer shares {:?}, not {f:?}", m.name);
        conn.send_error(msg.clone()).await;
        return Err(Error::Refused(msg));
    }
    let mut theirs = match ChunkSet::try_from_ranges(m, &have) {
        Ok(s) => s,
        Err(e) => {
            conn.send_error(format!("bad have list in hello: {e}"))
                .await;
            return Err(e.into());
        }
    };
    info!(neighbour = %label, holds = theirs.count(), "upload neighbour connected");
    swarm
        .events
        .id_list(EventKind::IdListReceived, theirs.count(), &label);
    conn.send(Message::welcome(
        Ranges::default(),
        swarm.manifest_json.clone(),
    ))
    .await?;
    let _downstream = Downstream::open(swarm);
    if theirs.is_full() {
        mark_done(swarm, &label);
    }
    let (mut reader, mut writer) = conn.split();
    let (tx, rx) = mpsc::channel(MAX_QUEUED_REQUESTS);
    let res = tokio::select! {
        r = read_loop(swarm, &mut reader, &label, &mut theirs, tx) => r,
        r = write_loop(swarm, &mut writer, &label, rx) => r,
        () = token.cancelled() => Ok(()),
    };
    if let Err(e) = &res
        && e.deserves_reply()
    {
        writer.send_error(e.to_string()).await;
    }
    res
}

fn mark_done(swarm: &Swarm, label: &str) {
    info!(neighbour = %label, "upload neighbour is complete");
    swarm.state().downstream_done = true;
    swarm.notify();
}

async fn read_loop(
    swarm: &Swarm,
    reader: &mut ConnReader,
    label: &str,
    theirs: &mut ChunkSet,
    tx: mpsc::Sender<ChunkId>,
) -> Result<()> {
    let m = &swarm.manifest;
    loop {
        let Some(msg) = reader.recv("waiting for requests", IDLE_TIMEOUT).await? else {
            return Ok(());
        };
        match msg {
            Message::Request { chunk } => {
                let id = m.chunk_id(chunk)?;
                swarm
                    .events
                    .chunk(EventKind::RequestReceived, chunk, label, None);
                if !swarm.holds(id) {
                    return Err(Error::Refused(format!(
                        "chunk {chunk} is not held here: request only chunks from this peer's have list"
                    )));
                }
                if tx.send(id).await.is_err() {
                    return Ok(());
                }
            }
            Message::Have { chunks } if chunks.is_empty() => {} // keep-alive
            Message::Have { chunks } => {
                let was_full = theirs.is_full();
                let added = theirs.extend_from_ranges(m, &chunks)?;
                let n = u32::try_from(added.len()).unwrap_or(u32::MAX);
                swarm.events.id_list(EventKind::IdListReceived, n, label);
                if theirs.is_full() && !was_full {
                    mark_done(swarm, label);
                }
            }
            other => {
                return Err(ProtocolError::Unexpected {
                    got: other.kind(),
                    doing: "serving chunks",
                }
                .into());
            }
        }
    }
}

async fn write_loop(
    swarm: &Swarm,
    writer: &mut ConnWriter,
    label: &str,
    mut rx: mpsc::Receiver<ChunkId>,
) -> Result<()> {
    let mut changed = swarm.changed.subscribe();
    let mut announced = ChunkSet::new(swarm.manifest.chunk_count());
    loop {
        announce(swarm, writer, label, &mut announced).await?;
        tokio::select! {
            id = rx.recv() => {
                let Some(id) = id else { return Ok(()) };
                let data = swarm.chunk_to_send(id).await?;
                let len = data.len() as u64;
                if let Some(limiter) = &swarm.limiter {
                    limiter.acquire(len).await;
                }
                writer.send(Message::chunk(id.get(), data)).await?;
                swarm.events.chunk(EventKind::ChunkSent, id.get(), label, Some(len));
            }
            _ = changed.changed() => {}
            () = tokio::time::sleep(KEEPALIVE_INTERVAL) => {
                writer.send(Message::Have { chunks: Ranges::default() }).await?;
            }
        }
    }
}
