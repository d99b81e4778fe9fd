//! The upload server: serves this peer's chunks to its upload neighbour (and anyone else who
//! connects), sends its chunk-ID list on connect and each new chunk as it arrives, and tracks
//! whether the neighbour is complete.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use super::config::MAX_UPLOAD_CONNECTIONS;
use super::download::announce;
use super::swarm::Swarm;
use crate::accept::{Accepted, Admission, accept_loop};
use crate::auth;
use crate::chunkset::{ChunkSet, Ranges};
use crate::connection::{ConnWriter, Connection, Hello, IDLE_TIMEOUT, KEEPALIVE_INTERVAL};
use crate::driver::{self, Flow, Reading, Writing};
use crate::events::EventKind;
use crate::manifest::ChunkId;
use crate::net::Listener;
use crate::protocol::{Message, ProtocolError, Role};
use crate::serve::{ChokeGate, ChunkServer, MAX_QUEUED_REQUESTS};
use crate::watch;
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

    /// This neighbour said `not_interested`: the directory gave it another download
    /// neighbour, so it will not be back; its leaving holds no one's service. It may still
    /// ask for chunks until it closes.
    fn mark_moved(&self, label: &str) {
        if self
            .complete
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        info!(neighbour = %label, "upload neighbour moved to another download neighbour");
        self.swarm.state().downstream_incomplete -= 1;
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
    // The file is named by its name, or by its hash (a ticket's getter).
    if let Some(f) =
        file.filter(|f| *f != m.name && f.parse::<crate::hash::Hash>().ok() != Some(m.hash))
    {
        let msg = format!("this peer shares {:?}, not {f:?}", m.name);
        conn.send_error(msg.clone()).await;
        return Err(Error::Refused(msg));
    }
    let theirs = match ChunkSet::try_from_ranges(m, &have) {
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
    let _open = swarm.status.upload(role);
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
    let reading = Requests {
        swarm,
        label: &label,
        theirs,
        server: &server,
        downstream: downstream.as_ref(),
    };
    let writing = Answers {
        swarm,
        label: &label,
        role,
        server: &server,
        gate,
        changed: swarm.changed.subscribe(),
        announced: ChunkSet::new(m.chunk_count()),
    };
    driver::drive(conn, reading, writing, MAX_QUEUED_REQUESTS, token).await
}

/// The reader's side: requests, cancels, interest and the client's have lists.
struct Requests<'a> {
    swarm: &'a Swarm,
    label: &'a str,
    /// What the client holds.
    theirs: ChunkSet,
    server: &'a ChunkServer<'a>,
    downstream: Option<&'a Downstream<'a>>,
}

impl Reading for Requests<'_> {
    type Out = ChunkId;

    fn limit(&self) -> (&'static str, Duration) {
        ("waiting for requests", IDLE_TIMEOUT)
    }

    async fn on_message(&mut self, msg: Message, tx: &mpsc::Sender<ChunkId>) -> Result<()> {
        let (swarm, label) = (self.swarm, self.label);
        let m = &swarm.manifest;
        if self.server.take_control(m, &msg)? {
            return Ok(());
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
                // The writer is gone only when the session ends anyway.
                let _ = tx.send(id).await;
            }
            Message::Have { chunks } if chunks.is_empty() => {} // keep-alive
            Message::NotInterested if let Some(d) = self.downstream => d.mark_moved(label),
            Message::Have { chunks } => {
                let added = self.theirs.extend_from_ranges(m, &chunks)?;
                let n = u32::try_from(added.len()).unwrap_or(u32::MAX);
                swarm.events.id_list(EventKind::IdListReceived, n, label);
                if self.theirs.is_full()
                    && let Some(d) = self.downstream
                {
                    d.mark_complete(label);
                }
            }
            other => return Err(ProtocolError::unexpected(Some(&other), "serving chunks").into()),
        }
        Ok(())
    }
}

/// The writer's side: chunks, choke decisions, and this peer's new chunks as they come.
struct Answers<'a> {
    swarm: &'a Swarm,
    label: &'a str,
    role: Role,
    server: &'a ChunkServer<'a>,
    gate: ChokeGate,
    changed: watch::Receiver<()>,
    announced: ChunkSet,
}

/// What woke the writer besides a request.
enum Woken {
    /// The choker's decision changed (false: the choker is gone).
    Choke(bool),
    /// This peer's chunks changed.
    Chunks,
}

impl Writing for Answers<'_> {
    type Out = ChunkId;
    type Wake = Woken;

    fn keepalive(&self) -> Duration {
        KEEPALIVE_INTERVAL
    }

    async fn flush(&mut self, writer: &mut ConnWriter) -> Result<Flow> {
        Ok(
            announce(self.swarm, writer, self.label, &mut self.announced)
                .await?
                .into(),
        )
    }

    async fn wake(&mut self) -> Woken {
        tokio::select! {
            biased;
            open = self.gate.changed(), if self.gate.is_choking() => Woken::Choke(open),
            _ = self.changed.changed() => Woken::Chunks,
        }
    }

    async fn on_wake(&mut self, wake: Woken, writer: &mut ConnWriter) -> Result<Flow> {
        match wake {
            Woken::Choke(false) => Ok(Flow::Done),
            Woken::Choke(true) => {
                self.gate
                    .update(writer, &self.swarm.events, self.label)
                    .await?;
                Ok(Flow::Sent)
            }
            Woken::Chunks => Ok(Flow::Idle),
        }
    }

    async fn on_out(&mut self, id: ChunkId, writer: &mut ConnWriter) -> Result<Flow> {
        let swarm = self.swarm;
        let unchoked = self.gate.unchoked();
        let sent = self
            .server
            .send(writer, id, unchoked, || swarm.chunk_to_send(id))
            .await?;
        if let Some(bytes) = sent {
            swarm.status.sent(self.role, bytes);
        }
        Ok(sent.is_some().into())
    }
}
