//! The upload server: serves this peer's chunks to its upload neighbour (and anyone else who
//! connects), sends its chunk-ID list on connect and each new chunk as it arrives, and tracks
//! whether the neighbour is complete.

use std::sync::Arc;
use tokio::time::Instant;

use tokio::sync::mpsc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use super::clock::Beat;
use super::download::announce;
use super::{MAX_UPLOAD_CONNECTIONS, Swarm};
use crate::accept::{Accepted, Admission, accept_loop};
use crate::auth;
use crate::chunkset::{ChunkSet, Ranges};
use crate::connection::{
    ConnReader, ConnWriter, Connection, Hello, IDLE_TIMEOUT, KEEPALIVE_INTERVAL,
};
use crate::events::EventKind;
use crate::manifest::ChunkId;
use crate::net::Listener;
use crate::protocol::{Message, ProtocolError, Role};
use crate::serve::{ChokeGate, ChunkServer, MAX_QUEUED_REQUESTS};
use crate::{Error, Result};

/// Accepts upload connections until `token` is cancelled, at most
/// [`MAX_UPLOAD_CONNECTIONS`] served at once; then waits for them to end.
pub(super) async fn serve(listener: Listener, swarm: Arc<Swarm>, token: CancellationToken) {
    let tracker = TaskTracker::new();
    let admission = Admission {
        max_connections: MAX_UPLOAD_CONNECTIONS,
        what: "accept",
    };
    accept_loop(listener, &token, &tracker, admission, |a: Accepted| {
        let swarm = swarm.clone();
        let span = info_span!("upload", peer = %a.addr);
        async move {
            let mut conn = Connection::over(a.stream, a.addr.to_string(), 0);
            if a.permit.is_none() {
                conn.send_error(format!(
                    "peer is busy: at most {MAX_UPLOAD_CONNECTIONS} connections at once"
                ))
                .await;
                return;
            }
            match handle(conn, &swarm, &a.token).await {
                Ok(()) => debug!("upload connection closed"),
                Err(e) => warn!("upload connection closed: {e}"),
            }
            drop(a.permit);
        }
        .instrument(span)
    })
    .await;
    tracker.close();
    tracker.wait().await;
}

/// Marks an upload neighbour as connected for as long as it lives, and as incomplete until
/// it says otherwise.
struct Downstream<'a> {
    swarm: &'a Swarm,
    complete: std::sync::atomic::AtomicBool,
}

impl<'a> Downstream<'a> {
    fn open(swarm: &'a Swarm) -> Self {
        let mut st = swarm.state();
        st.downstream_open += 1;
        st.downstream_incomplete += 1;
        st.downstream_last_seen = Instant::now();
        drop(st);
        Self {
            swarm,
            complete: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// This neighbour holds every chunk. The peer stops serving only once no incomplete
    /// neighbour is connected (see `wait_downstream`), so a client that merely claims to be
    /// a complete neighbour cannot end the service of the real one.
    fn mark_complete(&self, label: &str) {
        if self
            .complete
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        info!(neighbour = %label, "upload neighbour is complete");
        let mut st = self.swarm.state();
        st.downstream_done = true;
        st.downstream_incomplete -= 1;
        drop(st);
        self.swarm.notify();
    }
}

impl Drop for Downstream<'_> {
    fn drop(&mut self) {
        let mut st = self.swarm.state();
        st.downstream_open -= 1;
        st.downstream_last_seen = Instant::now();
        if !*self.complete.get_mut() {
            st.downstream_incomplete -= 1;
            st.incomplete_downstream_left = Some(Instant::now());
        }
        drop(st);
        self.swarm.notify();
    }
}

async fn handle(mut conn: Connection, swarm: &Swarm, token: &CancellationToken) -> Result<()> {
    let m = &swarm.manifest;
    let Hello {
        file,
        have,
        label,
        role,
        nonce,
        ..
    } = conn.recv_hello().await?;
    auth::server(
        &mut conn,
        swarm.config.secret.as_deref(),
        nonce.as_deref(),
        &label,
    )
    .await?;
    let getter = role == Role::Getter;
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
    if getter {
        info!(getter = %label, holds = theirs.count(), "getter connected");
    } else {
        info!(neighbour = %label, holds = theirs.count(), "upload neighbour connected");
    }
    swarm
        .events
        .id_list(EventKind::IdListReceived, theirs.count(), &label);
    // An upload neighbour counts as connected (and incomplete) before its `welcome` leaves:
    // a client that claims to be complete after it, on another connection, must find it.
    let downstream = (!getter).then(|| Downstream::open(swarm));
    conn.send(Message::welcome(
        Ranges::default(),
        swarm.manifest_json.clone(),
    ))
    .await?;
    // A getter is served under choking and is not the ring's upload neighbour.
    let choker = getter.then_some(&swarm.choker);
    let (server, gate) = ChunkServer::new(&label, &swarm.events, swarm.limiter.as_ref(), choker);
    if theirs.is_full()
        && let Some(d) = &downstream
    {
        d.mark_complete(&label);
    }
    let (mut reader, mut writer) = conn.split();
    let (tx, rx) = mpsc::channel(MAX_QUEUED_REQUESTS);
    let res = tokio::select! {
        biased;
        () = token.cancelled() => Ok(()),
        r = read_loop(swarm, &mut reader, &label, &mut theirs, tx, &server, downstream.as_ref()) => r,
        r = write_loop(swarm, &mut writer, &label, rx, &server, gate) => r,
    };
    if let Err(e) = &res
        && e.deserves_reply()
    {
        writer.send_error(e.to_string()).await;
    }
    res
}

async fn read_loop(
    swarm: &Swarm,
    reader: &mut ConnReader,
    label: &str,
    theirs: &mut ChunkSet,
    tx: mpsc::Sender<ChunkId>,
    server: &ChunkServer<'_>,
    downstream: Option<&Downstream<'_>>,
) -> Result<()> {
    let m = &swarm.manifest;
    loop {
        let Some(msg) = reader.recv("waiting for requests", IDLE_TIMEOUT).await? else {
            return Ok(());
        };
        if server.take_control(m, &msg)? {
            continue;
        }
        match msg {
            Message::Request { chunk, .. } => {
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
                let added = theirs.extend_from_ranges(m, &chunks)?;
                let n = u32::try_from(added.len()).unwrap_or(u32::MAX);
                swarm.events.id_list(EventKind::IdListReceived, n, label);
                if theirs.is_full()
                    && let Some(d) = downstream
                {
                    d.mark_complete(label);
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
    server: &ChunkServer<'_>,
    mut gate: ChokeGate,
) -> Result<()> {
    let mut changed = swarm.changed.subscribe();
    let mut announced = ChunkSet::new(swarm.manifest.chunk_count());
    let mut beat = Beat::new(KEEPALIVE_INTERVAL);
    loop {
        if announce(swarm, writer, label, &mut announced).await? {
            beat.sent();
        }
        tokio::select! {
            biased;
            () = beat.due() => {
                writer.send(Message::Have { chunks: Ranges::default() }).await?;
                beat.sent();
            }
            open = gate.changed(), if gate.is_choking() => {
                if !open {
                    return Ok(());
                }
                gate.update(writer, &swarm.events, label).await?;
            }
            id = rx.recv() => {
                let Some(id) = id else { return Ok(()) };
                if server.send(writer, id, gate.unchoked(), || swarm.chunk_to_send(id)).await?.is_some() {
                    beat.sent();
                }
            }
            _ = changed.changed() => {}
        }
    }
}
