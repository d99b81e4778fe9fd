//! One owner connection after `welcome`: a reader that takes in requests, have lists,
//! cancels, interest and `locate`, and a writer that serves chunks (ordinary ones at once,
//! spare ones when the owner has nothing better to do), says choke changes, pushes the orphan
//! list whenever it changes, and keeps the connection alive.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::answer::answer;
use super::member::Membership;
use super::place::RingPlace;
use super::probe::{check_lost_source, report_bad_source};
use super::shared::SharedFile;
use super::spare::SpareTicket;
use super::state::Owner;
use crate::chunkset::{ChunkSet, Ranges};
use crate::connection::{ConnWriter, Connection, IDLE_TIMEOUT, KEEPALIVE_INTERVAL};
use crate::driver::{self, Flow, Reading, Writing};
use crate::events::EventKind;
use crate::manifest::ChunkId;
use crate::protocol::{MAX_RANGES_PER_MESSAGE, Message, ProtocolError, Role};
use crate::serve::{ChokeGate, ChunkServer, MAX_QUEUED_REQUESTS};
use crate::watch;
use crate::{Error, Result};

/// Serves `client` on `conn` until it closes, fails or `token` is cancelled; a failure that
/// deserves it is answered with an `error`.
///
/// # Errors
///
/// What ended the connection, if it was not a clean close.
pub(super) async fn run(
    conn: Connection,
    owner: &Owner,
    client: Client<'_>,
    token: &CancellationToken,
) -> Result<()> {
    let Client {
        shared,
        label,
        role,
        member,
        place,
    } = client;
    let (shared, label, member) = (&shared, label.as_str(), member.as_ref());
    // Getters are served under choking; ring peers always (the ring needs its hand-out).
    let choker = (role == Role::Getter).then_some(&owner.choker);
    let limiter = owner.config.upload_limit.as_deref();
    let (server, gate) = ChunkServer::new(label, &owner.config.events, limiter, choker);
    let session = Session {
        shared,
        owner,
        label,
        member,
        role,
        server,
        normal: AtomicUsize::new(0),
        urgent: AtomicUsize::new(0),
    };
    let mut orphans = shared.orphan_list();
    orphans.mark_changed();
    let writing = Writer {
        // A getter is told the owner holds everything, as any source says what it holds (a
        // publisher's getters meet it as a source, not as their owner).
        tell_all: role == Role::Getter && !shared.is_published(),
        session: &session,
        gate,
        orphans,
        sent_any_orphans: false,
        conn_id: owner.spare.connection(),
        spares: VecDeque::new(),
        ticket: None,
        ring: place,
    };
    driver::drive(conn, &session, writing, MAX_QUEUED_REQUESTS, token).await
}

/// Who a session serves, as `welcome` told it.
pub(super) struct Client<'o> {
    /// The file it joined.
    pub shared: Arc<SharedFile>,
    /// `IP:PORT`, for logs and events.
    pub label: String,
    pub role: Role,
    /// Its directory registration, while the session lives.
    pub member: Option<Membership<'o>>,
    /// A ring peer's place, told again when it changes.
    pub place: Option<RingPlace>,
}

/// What the reader hands the writer.
enum ToSend {
    /// Send this chunk (unless cancelled, or the client is choked by then); `urgent` ones
    /// first (see `urgent`).
    Chunk { id: ChunkId, urgent: bool },
    /// Send this chunk when the owner has nothing better to do (see `spare`).
    Spare(ChunkId),
    /// Send this answer.
    Reply(Message),
}

/// One client connection after `welcome`.
struct Session<'a> {
    shared: &'a Arc<SharedFile>,
    owner: &'a Owner,
    label: &'a str,
    member: Option<&'a Membership<'a>>,
    /// The client's role, for the metrics.
    role: Role,
    /// Cancels, choking, rate limit and events of the chunks served.
    server: ChunkServer<'a>,
    /// This connection's ordinary requests counted in the spare gate and not yet served.
    normal: AtomicUsize,
    /// Those of them counted in the urgent gate.
    urgent: AtomicUsize,
}

impl Drop for Session<'_> {
    /// Requests still queued when the connection ends no longer hold back spare chunks.
    fn drop(&mut self) {
        for _ in 0..*self.normal.get_mut() {
            self.owner.spare.normal_done();
        }
        for _ in 0..*self.urgent.get_mut() {
            self.owner.urgent.done(false);
        }
    }
}

impl Session<'_> {
    fn normal_queued(&self) {
        self.normal.fetch_add(1, Ordering::SeqCst);
        self.owner.spare.normal_queued();
    }

    fn normal_done(&self) {
        self.normal.fetch_sub(1, Ordering::SeqCst);
        self.owner.spare.normal_done();
    }

    /// Whether an ordinary request now is urgent: the client is a ring member behind a slow
    /// download neighbour (see `urgent`).
    fn urgent_queued(&self) -> bool {
        let directory = &self.owner.directory;
        let urgent = self
            .member
            .is_some_and(|m| directory.behind_slow_neighbour(m.id));
        if urgent {
            self.urgent.fetch_add(1, Ordering::SeqCst);
            self.owner.urgent.queued();
        }
        urgent
    }

    fn urgent_done(&self, sent: bool) {
        self.urgent.fetch_sub(1, Ordering::SeqCst);
        self.owner.urgent.done(sent);
    }

    /// A directory member must be heard from within the TTL; it sends keep-alives.
    fn read_limit(&self) -> (&'static str, Duration) {
        match self.member {
            Some(_) => (
                "waiting for a heartbeat (past --peer-ttl)",
                self.owner.directory.ttl(),
            ),
            None => ("waiting for requests", IDLE_TIMEOUT),
        }
    }

    async fn on_message(&self, msg: Message, tx: &mpsc::Sender<ToSend>) -> Result<()> {
        if let Some(member) = self.member
            && !self.owner.directory.heartbeat(member.id)
        {
            return Err(Error::Refused(
                "dropped from the directory; reconnect to register again".into(),
            ));
        }
        if self.server.take_control(&self.shared.manifest, &msg)? {
            return Ok(());
        }
        if let Some(out) = self.take(msg)? {
            // The writer is gone only when the session ends anyway.
            let _ = tx.send(out).await;
        }
        Ok(())
    }

    /// What the writer must do for `msg`, if anything.
    fn take(&self, msg: Message) -> Result<Option<ToSend>> {
        let m = &self.shared.manifest;
        let events = &self.owner.config.events;
        let directory = &self.owner.directory;
        Ok(Some(match msg {
            Message::Request { chunk, spare } => {
                let id = m.chunk_id(chunk)?;
                events.chunk(EventKind::RequestReceived, chunk, self.label, None);
                if spare {
                    ToSend::Spare(id)
                } else {
                    self.normal_queued();
                    let urgent = self.urgent_queued();
                    ToSend::Chunk { id, urgent }
                }
            }
            Message::Have { chunks } if chunks.is_empty() => return Ok(None), // keep-alive
            Message::Have { chunks } => {
                let set = ChunkSet::try_from_ranges(m, &chunks)?;
                events.id_list(EventKind::IdListReceived, set.count(), self.label);
                if let Some(member) = self.member {
                    directory.add_chunks(member.id, &set);
                }
                return Ok(None);
            }
            q @ Message::Locate { .. } => ToSend::Reply(answer(&q, directory)?),
            Message::SourceLost {
                addr,
                bad_chunks: true,
            } => {
                if let Some(member) = self.member {
                    report_bad_source(directory, member.id, &addr, self.label);
                }
                return Ok(None);
            }
            Message::SourceLost { addr, .. } => {
                let known = (directory, &self.owner.files);
                let on = (self.owner.net.as_ref(), &self.owner.config.identity);
                check_lost_source(known, on, &addr, self.label);
                return Ok(None);
            }
            other => {
                return Err(ProtocolError::unexpected(Some(&other), "serving chunks").into());
            }
        }))
    }

    /// How many chunks the client holds, as the directory knows (a client that is no member
    /// counts as holding everything: it waits behind every member for spare chunks).
    fn held(&self) -> u32 {
        self.member
            .and_then(|m| self.owner.directory.held(m.id))
            .unwrap_or(u32::MAX)
    }

    /// Sends chunk `id` (see [`ChunkServer::send`]): a file in memory is read in place, one
    /// on disk on the blocking pool.
    async fn send_chunk(
        &self,
        writer: &mut ConnWriter,
        id: ChunkId,
        unchoked: bool,
    ) -> Result<Flow> {
        let shared = self.shared;
        let read = || crate::storage::read(shared, id);
        let sent = self.server.send(writer, id, unchoked, read).await?;
        if let Some(bytes) = sent {
            self.owner.config.metrics.chunk_sent(self.role, bytes);
        }
        if sent.is_some() {
            shared.served(id);
        }
        Ok(sent.is_some().into())
    }

    /// Sends the orphan list `set`: skipped while no orphan was ever sent and there is none.
    /// Returns whether it was sent.
    async fn send_orphans(
        &self,
        writer: &mut ConnWriter,
        set: &ChunkSet,
        sent_any: &mut bool,
    ) -> Result<bool> {
        if set.count() == 0 && !*sent_any {
            return Ok(false);
        }
        *sent_any = true;
        self.owner
            .config
            .events
            .id_list(EventKind::IdListSent, set.count(), self.label);
        // Advisory: a list too long for one header is cut (peers that run out of other
        // sources ask the owner for anything after STALL_AFTER anyway).
        let mut chunks = set.to_ranges();
        chunks.0.truncate(MAX_RANGES_PER_MESSAGE);
        writer.send(Message::Orphans { chunks }).await?;
        Ok(true)
    }

    /// How often to send a keep-alive: often enough for the client's own idle limit.
    fn keepalive(&self) -> Duration {
        KEEPALIVE_INTERVAL.min(self.owner.directory.ttl() / 3)
    }
}

/// The reader's side: requests, have lists, cancels, interest and `locate`.
impl Reading for &Session<'_> {
    type Out = ToSend;

    fn limit(&self) -> (&'static str, Duration) {
        self.read_limit()
    }

    async fn on_message(&mut self, msg: Message, tx: &mpsc::Sender<ToSend>) -> Result<()> {
        Session::on_message(self, msg, tx).await
    }
}

/// The writer's side: chunks (spare ones in their turn), choke decisions, the orphan list.
struct Writer<'a, 's> {
    /// A `have` of every chunk is still to be sent.
    tell_all: bool,
    session: &'a Session<'s>,
    gate: ChokeGate,
    orphans: watch::Receiver<Arc<ChunkSet>>,
    sent_any_orphans: bool,
    /// This connection in the spare queue.
    conn_id: u64,
    /// Spare requests not yet served, and this connection's place in the queue for them.
    spares: VecDeque<ChunkId>,
    ticket: Option<SpareTicket<'a>>,
    /// A joiner's place in its ring, whose changes it is told.
    ring: Option<RingPlace>,
}

/// What woke the writer besides a request.
enum WriterWake {
    /// This connection may send a spare chunk.
    SpareTurn,
    /// The choker's decision changed (false: the choker is gone).
    Choke(bool),
    /// The orphan list changed (false: the file is no longer shared).
    Orphans(bool),
    /// A ring changed: the joiner's neighbour may have.
    Ring,
}

impl Writing for Writer<'_, '_> {
    type Out = ToSend;
    type Wake = WriterWake;

    fn keepalive(&self) -> Duration {
        self.session.keepalive()
    }

    async fn flush(&mut self, writer: &mut ConnWriter) -> Result<Flow> {
        if std::mem::take(&mut self.tell_all) {
            let count = self.session.shared.manifest.chunk_count();
            let chunks = Ranges::from_sorted(0..count);
            writer.send(Message::Have { chunks }).await?;
            return Ok(Flow::Sent);
        }
        if self.ticket.is_none() && !self.spares.is_empty() {
            let spare = &self.session.owner.spare;
            self.ticket = Some(spare.ticket(self.conn_id, self.session.held()));
        }
        Ok(Flow::Idle)
    }

    async fn wake(&mut self) -> WriterWake {
        tokio::select! {
            biased;
            () = async { self.ticket.as_ref().expect("guarded").turn().await }, if self.ticket.is_some() => WriterWake::SpareTurn,
            open = self.gate.changed(), if self.gate.is_choking() => WriterWake::Choke(open),
            changed = self.orphans.changed() => WriterWake::Orphans(changed.is_ok()),
            () = async { self.ring.as_mut().expect("guarded").changed().await }, if self.ring.is_some() => WriterWake::Ring,
        }
    }

    async fn on_wake(&mut self, wake: WriterWake, writer: &mut ConnWriter) -> Result<Flow> {
        let session = self.session;
        match wake {
            WriterWake::SpareTurn => {
                let mut flow = Flow::Idle;
                if let Some(id) = self.spares.pop_front() {
                    flow = session.send_chunk(writer, id, self.gate.unchoked()).await?;
                }
                // Queue again with the new count, so a peer further behind goes first.
                self.ticket = None;
                Ok(flow)
            }
            WriterWake::Choke(false) | WriterWake::Orphans(false) => Ok(Flow::Done),
            WriterWake::Choke(true) => {
                let events = &session.owner.config.events;
                self.gate.update(writer, events, session.label).await?;
                Ok(Flow::Sent)
            }
            WriterWake::Ring => {
                let Some(place) = self.ring.as_mut() else {
                    return Ok(Flow::Idle);
                };
                let news = place.news(&session.owner.directory, session.label);
                let flow = if news.is_empty() {
                    Flow::Idle
                } else {
                    Flow::Sent
                };
                for msg in news {
                    writer.send(msg).await?;
                }
                Ok(flow)
            }
            WriterWake::Orphans(true) => {
                let set = self.orphans.borrow_and_update().clone();
                let sent = session
                    .send_orphans(writer, &set, &mut self.sent_any_orphans)
                    .await?;
                Ok(sent.into())
            }
        }
    }

    async fn on_out(&mut self, out: ToSend, writer: &mut ConnWriter) -> Result<Flow> {
        let session = self.session;
        match out {
            ToSend::Reply(msg) => {
                writer.send(msg).await?;
                Ok(Flow::Sent)
            }
            ToSend::Spare(id) => {
                self.spares.push_back(id);
                Ok(Flow::Idle)
            }
            ToSend::Chunk { id, urgent } => {
                if !urgent {
                    session.owner.urgent.turn().await;
                }
                let res = session.send_chunk(writer, id, self.gate.unchoked()).await;
                session.normal_done();
                if urgent {
                    session.urgent_done(matches!(res, Ok(Flow::Sent)));
                }
                res
            }
        }
    }
}
