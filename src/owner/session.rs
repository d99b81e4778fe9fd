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

use super::SharedFile;
use super::answer::answer;
use super::handler::Ctx;
use super::hello::Member;
use super::probe::check_lost_source;
use super::spare::SpareTicket;
use crate::chunkset::{ChunkSet, Ranges};
use crate::connection::{ConnReader, ConnWriter, Connection, IDLE_TIMEOUT, KEEPALIVE_INTERVAL};
use crate::events::EventKind;
use crate::manifest::ChunkId;
use crate::protocol::{MAX_RANGES_PER_MESSAGE, Message, ProtocolError, Role};
use crate::serve::{ChokeGate, ChunkServer, MAX_QUEUED_REQUESTS};
use crate::{Error, Result};

/// Serves `label` on `conn` until it closes, fails or `token` is cancelled; a failure that
/// deserves it is answered with an `error`.
///
/// # Errors
///
/// What ended the connection, if it was not a clean close.
pub(super) async fn run(
    conn: Connection,
    shared: &Arc<SharedFile>,
    ctx: &Ctx,
    label: &str,
    member: Option<&Member<'_>>,
    role: Role,
    token: &CancellationToken,
) -> Result<()> {
    // Getters are served under choking; ring peers always (the ring needs its hand-out).
    let choker = (role == Role::Getter).then_some(&ctx.choker);
    let limiter = ctx.config.upload_limit.as_deref();
    let (server, gate) = ChunkServer::new(label, &ctx.config.events, limiter, choker);
    let session = Session {
        shared,
        ctx,
        label,
        member,
        server,
        normal: AtomicUsize::new(0),
    };
    let (mut reader, mut writer) = conn.split();
    let (tx, rx) = mpsc::channel(MAX_QUEUED_REQUESTS);
    let res = tokio::select! {
        biased;
        () = token.cancelled() => Ok(()),
        r = session.read(&mut reader, tx) => r,
        r = session.write(&mut writer, rx, gate) => r,
    };
    if let Err(e) = &res
        && e.deserves_reply()
    {
        writer.send_error(e.to_string()).await;
    }
    res
}

/// What the reader hands the writer.
enum Out {
    /// Send this chunk (unless cancelled, or the client is choked by then).
    Chunk(ChunkId),
    /// Send this chunk when the owner has nothing better to do (see `spare`).
    Spare(ChunkId),
    /// Send this answer.
    Reply(Message),
}

/// One client connection after `welcome`.
struct Session<'a> {
    shared: &'a Arc<SharedFile>,
    ctx: &'a Ctx,
    label: &'a str,
    member: Option<&'a Member<'a>>,
    /// Cancels, choking, rate limit and events of the chunks served.
    server: ChunkServer<'a>,
    /// This connection's ordinary requests counted in the spare gate and not yet served.
    normal: AtomicUsize,
}

impl Drop for Session<'_> {
    /// Requests still queued when the connection ends no longer hold back spare chunks.
    fn drop(&mut self) {
        for _ in 0..*self.normal.get_mut() {
            self.ctx.spare.normal_done();
        }
    }
}

impl Session<'_> {
    fn normal_queued(&self) {
        self.normal.fetch_add(1, Ordering::SeqCst);
        self.ctx.spare.normal_queued();
    }

    fn normal_done(&self) {
        self.normal.fetch_sub(1, Ordering::SeqCst);
        self.ctx.spare.normal_done();
    }

    async fn read(&self, reader: &mut ConnReader, tx: mpsc::Sender<Out>) -> Result<()> {
        let directory = &self.ctx.directory;
        // A directory member must be heard from within the TTL; it sends keep-alives.
        let (wait, what) = match self.member {
            Some(_) => (directory.ttl(), "waiting for a heartbeat (past --peer-ttl)"),
            None => (IDLE_TIMEOUT, "waiting for requests"),
        };
        loop {
            let Some(msg) = reader.recv(what, wait).await? else {
                return Ok(());
            };
            if let Some(member) = self.member
                && !directory.heartbeat(member.id)
            {
                return Err(Error::Refused(
                    "dropped from the directory; reconnect to register again".into(),
                ));
            }
            if self.server.take_control(&self.shared.manifest, &msg)? {
                continue;
            }
            let Some(out) = self.take(msg)? else {
                continue;
            };
            if tx.send(out).await.is_err() {
                return Ok(());
            }
        }
    }

    /// What the writer must do for `msg`, if anything.
    fn take(&self, msg: Message) -> Result<Option<Out>> {
        let m = &self.shared.manifest;
        let events = &self.ctx.config.events;
        let directory = &self.ctx.directory;
        Ok(Some(match msg {
            Message::Request { chunk, spare } => {
                let id = m.chunk_id(chunk)?;
                events.chunk(EventKind::RequestReceived, chunk, self.label, None);
                if spare {
                    Out::Spare(id)
                } else {
                    self.normal_queued();
                    Out::Chunk(id)
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
            q @ Message::Locate { .. } => Out::Reply(answer(&q, directory)?),
            Message::SourceLost { addr } => {
                check_lost_source(directory, self.ctx.net.as_ref(), &addr, self.label);
                return Ok(None);
            }
            other => {
                return Err(ProtocolError::Unexpected {
                    got: other.kind(),
                    doing: "serving chunks",
                }
                .into());
            }
        }))
    }

    async fn write(
        &self,
        writer: &mut ConnWriter,
        mut rx: mpsc::Receiver<Out>,
        mut gate: ChokeGate,
    ) -> Result<()> {
        let mut orphans = self.shared.orphans.subscribe();
        orphans.mark_changed();
        let mut sent_any_orphans = false;
        let spare = &self.ctx.spare;
        let conn_id = spare.connection();
        let mut spares: VecDeque<ChunkId> = VecDeque::new();
        let mut ticket: Option<SpareTicket<'_>> = None;
        loop {
            if ticket.is_none() && !spares.is_empty() {
                ticket = Some(spare.ticket(conn_id, self.held()));
            }
            tokio::select! {
                biased;
                out = rx.recv() => match out {
                    None => return Ok(()),
                    Some(Out::Reply(msg)) => writer.send(msg).await?,
                    Some(Out::Spare(id)) => spares.push_back(id),
                    Some(Out::Chunk(id)) => {
                        let res = self.send_chunk(writer, id, gate.unchoked()).await;
                        self.normal_done();
                        res?;
                    }
                },
                () = async { ticket.as_ref().expect("guarded").turn().await }, if ticket.is_some() => {
                    if let Some(id) = spares.pop_front() {
                        self.send_chunk(writer, id, gate.unchoked()).await?;
                    }
                    // Queue again with the new count, so a peer further behind goes first.
                    ticket = None;
                }
                open = gate.changed(), if gate.is_choking() => {
                    if !open {
                        return Ok(());
                    }
                    gate.update(writer, &self.ctx.config.events, self.label).await?;
                }
                changed = orphans.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let set = orphans.borrow_and_update().clone();
                    self.send_orphans(writer, &set, &mut sent_any_orphans).await?;
                }
                () = tokio::time::sleep(self.keepalive()) => {
                    writer.send(Message::Have { chunks: Ranges::default() }).await?;
                }
            }
        }
    }

    /// How many chunks the client holds, as the directory knows (a client that is no member
    /// counts as holding everything: it waits behind every member for spare chunks).
    fn held(&self) -> u32 {
        self.member
            .and_then(|m| self.ctx.directory.held(m.id))
            .unwrap_or(u32::MAX)
    }

    /// Sends chunk `id` (see [`ChunkServer::send`]): a file in memory is read in place, one
    /// on disk on the blocking pool.
    async fn send_chunk(&self, writer: &mut ConnWriter, id: ChunkId, unchoked: bool) -> Result<()> {
        let shared = self.shared;
        let read = || async move {
            if shared.is_in_memory() {
                shared.read_chunk(id)
            } else {
                let s = shared.clone();
                tokio::task::spawn_blocking(move || s.read_chunk(id)).await?
            }
        };
        let sent = self.server.send(writer, id, unchoked, read).await?;
        if sent.is_some() && shared.dist().note_served_if_orphan(id) {
            shared.dirty.notify_one();
        }
        Ok(())
    }

    /// Sends the orphan list `set`: skipped while no orphan was ever sent and there is none.
    async fn send_orphans(
        &self,
        writer: &mut ConnWriter,
        set: &ChunkSet,
        sent_any: &mut bool,
    ) -> Result<()> {
        if set.count() == 0 && !*sent_any {
            return Ok(());
        }
        *sent_any = true;
        self.ctx
            .config
            .events
            .id_list(EventKind::IdListSent, set.count(), self.label);
        // Advisory: a list too long for one header is cut (peers that run out of other
        // sources ask the owner for anything after STALL_AFTER anyway).
        let mut chunks = set.to_ranges();
        chunks.0.truncate(MAX_RANGES_PER_MESSAGE);
        writer.send(Message::Orphans { chunks }).await?;
        Ok(())
    }

    /// How often to send a keep-alive: often enough for the client's own idle limit.
    fn keepalive(&self) -> Duration {
        KEEPALIVE_INTERVAL.min(self.ctx.directory.ttl() / 3)
    }
}
