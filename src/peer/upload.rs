//! The upload server: serves this peer's chunks to its upload neighbour (and anyone else who
//! connects), sends its chunk-ID list on connect and each new chunk as it arrives, and tracks
//! whether the neighbour is complete.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use super::config::MAX_UPLOAD_CONNECTIONS;
use super::swarm::Swarm;
use crate::accept::{Accepted, Admission, accept_loop};
use crate::chunkset::{ChunkSet, Ranges};
use crate::connection::{ConnWriter, Connection, Hello, IDLE_TIMEOUT, KEEPALIVE_INTERVAL};
use crate::driver::{self, Flow, Reading, Writing};
use crate::events::EventKind;
use crate::link;
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
            let identity = &swarm.config.identity;
            let mut conn = match link::accept(a.stream, a.addr.to_string(), identity, 0).await {
                Ok(c) => c,
                Err(e) => {
                    warn!("upload connection closed in the handshake: {e}");
                    return;
                }
            };
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
struct DownstreamGuard<'a> {
    swarm: &'a Swarm,
    /// Complete, or moved on: not waited for.
    complete: std::sync::atomic::AtomicBool,
}

impl<'a> DownstreamGuard<'a> {
    fn open(swarm: &'a Swarm) -> Self {
        swarm.downstream_opened();
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
        self.swarm.downstream_complete();
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
        self.swarm.downstream_moved();
    }
}

impl Drop for DownstreamGuard<'_> {
    fn drop(&mut self) {
        let incomplete = !*self.complete.get_mut();
        self.swarm.downstream_left(incomplete);
    }
}

/// Serves one upload connection: its `hello` (see [`admit`]), `welcome`, then requests
/// until it ends or `token` is cancelled.
pub(super) async fn handle(
    mut conn: Connection,
    swarm: &Swarm,
    token: &CancellationToken,
) -> Result<()> {
    let m = &swarm.manifest;
    let (label, role, theirs) = admit(&mut conn, swarm).await?;
    let getter = role == Role::Getter;
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
    let downstream = (!getter).then(|| DownstreamGuard::open(swarm));
    let _open = swarm.status.upload(role);
    conn.send(Message::welcome(
        Ranges::default(),
        swarm.manifest_json.clone(),
    ))
    .await?;
    // A getter is served under choking and is not the ring's upload neighbour.
    let choker = getter.then_some(&swarm.choker);
    let (server, gate) = ChunkServer::new(&label, &swarm.events, swarm.limiter.as_deref(), choker);
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

/// Reads the client's `hello` and checks it: the file named (by name, or
/// by hash for a ticket's getter), its have list. Its label, role and chunks; an error that
/// the client is told.
async fn admit(conn: &mut Connection, swarm: &Swarm) -> Result<(String, Role, ChunkSet)> {
    let m = &swarm.manifest;
    let Hello {
        file,
        have,
        label,
        role,
        ..
    } = conn.recv_hello().await?;
    if let Some(f) =
        file.filter(|f| *f != m.name && f.parse::<crate::hash::Hash>().ok() != Some(m.hash))
    {
        let msg = format!("this peer shares {:?}, not {f:?}", m.name);
        conn.send_error(msg.clone()).await;
        return Err(Error::Refused(msg));
    }
    match ChunkSet::try_from_ranges(m, &have) {
        Ok(theirs) => Ok((label, role, theirs)),
        Err(e) => {
            conn.send_error(format!("bad have list in hello: {e}"))
                .await;
            Err(e.into())
        }
    }
}

/// The reader's side: requests, cancels, interest and the client's have lists.
struct Requests<'a> {
    swarm: &'a Swarm,
    label: &'a str,
    /// What the client holds.
    theirs: ChunkSet,
    server: &'a ChunkServer<'a>,
    downstream: Option<&'a DownstreamGuard<'a>>,
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

/// What woke an upload connection's writer besides a request.
enum UploadWake {
    /// The choker's decision changed (false: the choker is gone).
    Choke(bool),
    /// This peer's chunks changed.
    Chunks,
}

impl Writing for Answers<'_> {
    type Out = ChunkId;
    type Wake = UploadWake;

    fn keepalive(&self) -> Duration {
        KEEPALIVE_INTERVAL
    }

    async fn flush(&mut self, writer: &mut ConnWriter) -> Result<Flow> {
        let sent = self.swarm.announce(writer, self.label, &mut self.announced);
        Ok(sent.await?.into())
    }

    async fn wake(&mut self) -> UploadWake {
        tokio::select! {
            biased;
            open = self.gate.changed(), if self.gate.is_choking() => UploadWake::Choke(open),
            _ = self.changed.changed() => UploadWake::Chunks,
        }
    }

    async fn on_wake(&mut self, wake: UploadWake, writer: &mut ConnWriter) -> Result<Flow> {
        match wake {
            UploadWake::Choke(false) => Ok(Flow::Done),
            UploadWake::Choke(true) => {
                self.gate
                    .update(writer, &self.swarm.events, self.label)
                    .await?;
                Ok(Flow::Sent)
            }
            UploadWake::Chunks => Ok(Flow::Idle),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkset::Ranges;
    use crate::connection::HANDSHAKE_TIMEOUT;
    use crate::peer::downstream::Served;
    use crate::peer::testing::{DATA, next, swarm};
    use crate::protocol::PROTOCOL_VERSION;

    /// A client's `hello` for `file`, holding `have`, as an upload neighbour.
    fn hello(file: &str, have: Ranges) -> Message {
        Message::Hello {
            version: PROTOCOL_VERSION,
            role: Role::Neighbour,
            file: Some(file.into()),
            have,
            port: Some(7002),
            node: None,
        }
    }

    /// An upload session over an in-memory stream, and the client's end.
    fn session(swarm: &Arc<Swarm>) -> (tokio::task::JoinHandle<Result<()>>, Connection) {
        let (near, far) = tokio::io::duplex(1 << 16);
        let conn = Connection::over(near, "10.0.0.3:7002".into(), 0);
        let s = swarm.clone();
        let task = tokio::spawn(async move { handle(conn, &s, &CancellationToken::new()).await });
        let limit = crate::protocol::MAX_MANIFEST_LEN;
        (task, Connection::over(far, "peer".into(), limit))
    }

    /// An upload neighbour is welcomed, told what this peer holds and each chunk it gains,
    /// served what it asks for, refused what is not held, and counted complete once it
    /// says so.
    #[tokio::test(start_paused = true)]
    async fn an_upload_neighbour_is_told_served_and_counted_complete() {
        let swarm = swarm(false).await;
        let id = |c| swarm.manifest.chunk_id(c).unwrap();
        swarm
            .accept_chunk(id(1), DATA[1..2].to_vec().into())
            .await
            .unwrap();
        let (task, mut client) = session(&swarm);
        client.send(hello("f", Ranges::default())).await.unwrap();
        let welcome = client.recv("welcome", HANDSHAKE_TIMEOUT).await.unwrap();
        assert!(
            matches!(welcome, Some(Message::Welcome { .. })),
            "{welcome:?}"
        );
        let have = next(&mut client).await;
        assert!(matches!(&have, Some(Message::Have { chunks }) if chunks.0 == [[1, 1]]));
        client.send(Message::request(1)).await.unwrap();
        let sent = next(&mut client).await;
        assert!(
            matches!(&sent, Some(Message::Chunk { chunk: 1, data, .. }) if data[..] == DATA[1..2]),
            "{sent:?}"
        );
        swarm
            .accept_chunk(id(3), DATA[3..4].to_vec().into())
            .await
            .unwrap();
        let have = next(&mut client).await;
        assert!(matches!(&have, Some(Message::Have { chunks }) if chunks.0 == [[3, 3]]));

        let mut changed = swarm.changed.subscribe();
        assert_eq!(swarm.served().ok(), None);
        let all = Ranges::from_sorted(0..4);
        client.send(Message::Have { chunks: all }).await.unwrap();
        while swarm.served().is_err() {
            changed.changed().await.unwrap();
        }
        assert_eq!(swarm.served().ok(), Some(Served::NeighbourComplete));

        client.send(Message::request(2)).await.unwrap();
        let refused = client.recv("the error", HANDSHAKE_TIMEOUT).await;
        let why = "chunk 2 is not held here: request only chunks from this peer's have list";
        assert!(format!("{refused:?}").contains(why), "{refused:?}");
        assert_eq!(task.await.unwrap().unwrap_err().to_string(), why);
    }

    /// A `hello` for another file is refused with an error that names both; one with chunks
    /// the file does not have, too.
    #[tokio::test(start_paused = true)]
    async fn a_hello_for_another_file_is_refused() {
        let swarm = swarm(false).await;
        let (task, mut client) = session(&swarm);
        client
            .send(hello("other", Ranges::default()))
            .await
            .unwrap();
        let refused = client.recv("the error", HANDSHAKE_TIMEOUT).await;
        let why = r#"this peer shares "f", not "other""#;
        assert!(
            format!("{refused:?}").contains("this peer shares"),
            "{refused:?}"
        );
        assert_eq!(task.await.unwrap().unwrap_err().to_string(), why);
        assert_eq!(swarm.served().ok(), None, "not counted as a neighbour");

        let (task, mut client) = session(&swarm);
        let beyond = Ranges::from_sorted(2..9);
        client.send(hello("f", beyond)).await.unwrap();
        let refused = client.recv("the error", HANDSHAKE_TIMEOUT).await;
        assert!(
            format!("{refused:?}").contains("bad have list in hello"),
            "{refused:?}"
        );
        assert!(task.await.unwrap().is_err());
    }
}
