//! One owner connection: `hello` → `welcome` (manifest + assigned chunks) → serve requests,
//! pushing the orphan list whenever it changes; or a directory query (`list`, `search`,
//! `locate`) → its answer. A client that says `hello` with a port is a directory member while
//! its connection lives.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::spare::{SpareGate, SpareTicket};
use super::{Config, SharedFile};
use crate::auth;
use crate::choke::{ChokeSlot, Choker};
use crate::chunkset::{ChunkSet, Ranges};
use crate::connection::{
    ConnReader, ConnWriter, Connection, HANDSHAKE_TIMEOUT, Hello, IDLE_TIMEOUT, KEEPALIVE_INTERVAL,
    Opening,
};
use crate::directory::{Directory, MemberId};
use crate::events::{EventKind, EventSink};
use crate::manifest::ChunkId;
use crate::protocol::{MAX_RANGES_PER_MESSAGE, Message, ProtocolError, Role};
use crate::{Error, Result};

/// Requests queued per connection beyond which the reader waits (a client keeps at most its
/// configured number in flight, so this is only reached by a misbehaving one).
pub(crate) const MAX_QUEUED_REQUESTS: usize = 64;

/// Serves one client on `conn` (over TCP, or any stream in tests); `permit` is its place
/// under [`super::MAX_CONNECTIONS`], `None` when there is none left.
pub(super) async fn handle(
    mut conn: Connection,
    permit: Option<OwnedSemaphorePermit>,
    files: Arc<Vec<Arc<SharedFile>>>,
    ctx: Arc<Ctx>,
    token: CancellationToken,
) {
    if permit.is_none() {
        warn!("too many connections; refusing");
        conn.send_error(format!(
            "owner is busy: at most {} connections at once; try again later",
            super::MAX_CONNECTIONS
        ))
        .await;
        return;
    }
    match serve(conn, &files, &ctx, &token).await {
        Ok(()) => debug!("connection closed"),
        Err(e) => warn!("connection closed: {e}"),
    }
}

/// The file a `hello` asks for, or an error to send back.
fn choose_file<'a>(
    files: &'a [Arc<SharedFile>],
    wanted: Option<&str>,
) -> Result<&'a Arc<SharedFile>, String> {
    let names = || {
        files
            .iter()
            .map(|f| f.manifest.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match wanted {
        Some(name) => files
            .iter()
            .find(|f| f.manifest.name == name)
            .ok_or_else(|| format!("owner does not share {name:?}; it shares: {}", names())),
        None if files.len() == 1 => Ok(&files[0]),
        None => Err(format!(
            "owner shares {} files; choose one with --file NAME: {}",
            files.len(),
            names()
        )),
    }
}

async fn serve(
    mut conn: Connection,
    files: &[Arc<SharedFile>],
    ctx: &Ctx,
    token: &CancellationToken,
) -> Result<()> {
    let config = &*ctx.config;
    let secret = config.secret.as_deref();
    let Hello {
        role,
        file,
        have,
        label,
        port,
        nonce,
        node,
    } = match conn.recv_opening(true).await? {
        Opening::Hello(h) => h,
        Opening::Query(_) if secret.is_some() => {
            let msg =
                "this owner needs the shared secret: query it with --secret or RINGSWARM_SECRET";
            conn.send_error(msg.into()).await;
            return Err(Error::Refused(format!(
                "query from {} without the shared secret",
                conn.remote()
            )));
        }
        Opening::Query(q) => return answer_queries(conn, Some(q), &ctx.directory).await,
    };
    auth::server(&mut conn, secret, nonce.as_deref(), &label).await?;
    if role == Role::Query {
        return answer_queries(conn, None, &ctx.directory).await;
    }
    // By name, or by the directory's numeric id.
    let by_id = file.as_deref().and_then(|k| ctx.directory.find(k));
    let shared = match by_id.map_or_else(|| choose_file(files, file.as_deref()), |i| Ok(&files[i]))
    {
        Ok(f) if f.is_withdrawn() => {
            let msg = f.changed_message();
            conn.send_error(msg.clone()).await;
            return Err(Error::Refused(msg));
        }
        Ok(f) => f.clone(),
        Err(msg) => {
            conn.send_error(msg.clone()).await;
            return Err(Error::Refused(msg));
        }
    };
    let m = shared.manifest.clone();
    let held = match ChunkSet::try_from_ranges(&m, &have) {
        Ok(h) => h,
        Err(e) => {
            conn.send_error(format!("bad have list in hello: {e}"))
                .await;
            return Err(e.into());
        }
    };
    if role == Role::Neighbour {
        let msg =
            "this is a file owner, not a ring peer: connect as a peer or a getter".to_string();
        conn.send_error(msg.clone()).await;
        return Err(Error::Refused(msg));
    }
    let assigned: Vec<ChunkId> = if role == Role::Peer {
        let a = match config.seed {
            // Reproducible per join: the n-th peer to join gets the same start every run.
            Some(seed) => {
                let joins = shared
                    .joins
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(
                    seed.wrapping_add(joins),
                );
                shared.dist().assign(&m, &held, &mut rng)
            }
            None => shared.dist().assign(&m, &held, &mut rand::rng()),
        };
        *shared.last_join.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
        shared.dirty.notify_one();
        a
    } else {
        Vec::new()
    };
    // A client with an upload server joins the directory for as long as this connection lives.
    let member = port.and_then(|p| {
        let ip = conn.remote().parse::<SocketAddr>().ok()?.ip();
        let file = ctx.directory.index_of(&m.name)?;
        let addr = SocketAddr::new(ip, p);
        let Some(id) = ctx
            .directory
            .register(file, addr, role, held.clone(), node.clone())
        else {
            warn!(peer = %label, "{addr} is already a member through another connection; serving this one unregistered");
            return None;
        };
        Some(Member {
            directory: &ctx.directory,
            id,
            addr,
        })
    });
    info!(
        peer = %label,
        file = %m.name,
        role = ?role,
        assigned = assigned.len(),
        holds = held.count(),
        registered = member.is_some(),
        "peer joined"
    );
    // Assignments are contiguous runs (see `assign`), so this cut never bites in practice.
    let mut assigned_ranges = Ranges::from_sorted(assigned.iter().map(|c| c.get()));
    assigned_ranges.0.truncate(MAX_RANGES_PER_MESSAGE);
    config
        .events
        .id_list(EventKind::IdListSent, count(&assigned), &label);
    let heartbeat = ctx.directory.ttl() / 3;
    conn.send(Message::Welcome {
        assigned: assigned_ranges,
        len: shared.manifest_json.len() as u64,
        heartbeat_ms: Some(u64::try_from(heartbeat.as_millis()).unwrap_or(u64::MAX)),
        manifest: shared.manifest_json.clone(),
    })
    .await?;

    // Getters are served under choking; ring peers always (the ring needs its hand-out).
    let (slot, choke_rx) = if role == Role::Getter {
        let (slot, rx) = ctx.choker.join();
        (Some(slot), Some(rx))
    } else {
        (None, None)
    };
    let session = Session {
        shared: &shared,
        ctx,
        label: &label,
        member: member.as_ref(),
        slot: slot.as_ref(),
        cancelled: Mutex::new(HashSet::new()),
        normal: std::sync::atomic::AtomicUsize::new(0),
    };
    let (mut reader, mut writer) = conn.split();
    let (tx, rx) = mpsc::channel(MAX_QUEUED_REQUESTS);
    let res = tokio::select! {
        biased;
        () = token.cancelled() => Ok(()),
        r = session.read(&mut reader, tx) => r,
        r = session.write(&mut writer, rx, choke_rx) => r,
    };
    if let Err(e) = &res
        && e.deserves_reply()
    {
        writer.send_error(e.to_string()).await;
    }
    res
}

/// What the owner knows of its connections: the directory, the choker, and its settings.
#[derive(Debug)]
pub(super) struct Ctx {
    pub config: Arc<Config>,
    pub directory: Arc<Directory>,
    pub choker: Arc<Choker>,
    pub spare: SpareGate,
    /// The owner's own network when it is in memory (`None`: TCP), for its probes.
    pub net: Option<Arc<crate::net::MemNet>>,
}

/// A client's directory registration; dropped (deregistered) with its connection.
struct Member<'a> {
    directory: &'a Directory,
    id: MemberId,
    addr: SocketAddr,
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        if self.directory.deregister(self.id) {
            info!(source = %self.addr, "left the directory");
        }
    }
}

/// Answers directory queries, `first` and then each the client sends, until it closes or
/// stays silent after an answer (silence before the first query is an error).
async fn answer_queries(
    mut conn: Connection,
    first: Option<Message>,
    directory: &Directory,
) -> Result<()> {
    let mut next = first;
    let mut answered = false;
    loop {
        let q = match next.take() {
            Some(q) => q,
            None => match conn
                .recv_answering("waiting for a query", HANDSHAKE_TIMEOUT)
                .await
            {
                Ok(Some(q)) if q.is_query() => q,
                Ok(None) => return Ok(()),
                Err(ProtocolError::Timeout(_)) if answered => return Ok(()),
                Ok(Some(other)) => {
                    let doing = if answered {
                        "answering queries"
                    } else {
                        "waiting for a query"
                    };
                    let e = ProtocolError::Unexpected {
                        got: other.kind(),
                        doing,
                    };
                    conn.send_error(e.to_string()).await;
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            },
        };
        conn.send(answer(&q, directory)?).await?;
        answered = true;
    }
}

fn answer(q: &Message, directory: &Directory) -> Result<Message> {
    let body = match q {
        Message::List => serde_json::to_vec(&directory.list()),
        Message::Search { text } => serde_json::to_vec(&directory.search(text)),
        Message::Locate { file } => {
            return Ok(Message::locations(Bytes::from(
                serde_json::to_vec(&directory.locate(file))
                    .map_err(|e| Error::Bug(e.to_string()))?,
            )));
        }
        _ => return Err(Error::Bug(format!("{} is not a query", q.kind()))),
    }
    .map_err(|e| Error::Bug(e.to_string()))?;
    Ok(Message::files(Bytes::from(body)))
}

fn count(ids: &[ChunkId]) -> u32 {
    u32::try_from(ids.len()).unwrap_or(u32::MAX)
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
    slot: Option<&'a ChokeSlot>,
    /// Requests the client cancelled (end-game) before they were served.
    cancelled: Mutex<HashSet<ChunkId>>,
    /// This connection's ordinary requests counted in the spare gate and not yet served.
    normal: std::sync::atomic::AtomicUsize,
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
        self.normal
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.ctx.spare.normal_queued();
    }

    fn normal_done(&self) {
        self.normal
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        self.ctx.spare.normal_done();
    }

    async fn read(&self, reader: &mut ConnReader, tx: mpsc::Sender<Out>) -> Result<()> {
        let m = &self.shared.manifest;
        let events = &self.ctx.config.events;
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
            let out = match msg {
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
                Message::Have { chunks } if chunks.is_empty() => continue, // keep-alive
                Message::Have { chunks } => {
                    let set = ChunkSet::try_from_ranges(m, &chunks)?;
                    events.id_list(EventKind::IdListReceived, set.count(), self.label);
                    if let Some(member) = self.member {
                        directory.add_chunks(member.id, &set);
                    }
                    continue;
                }
                Message::Interested | Message::NotInterested if self.slot.is_some() => {
                    let on = matches!(msg, Message::Interested);
                    if let Some(slot) = self.slot {
                        slot.set_interested(on);
                    }
                    continue;
                }
                Message::Cancel { chunk } => {
                    let id = m.chunk_id(chunk)?;
                    self.cancelled
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(id);
                    continue;
                }
                q @ Message::Locate { .. } => Out::Reply(answer(&q, directory)?),
                Message::SourceLost { addr } => {
                    check_lost_source(directory, self.ctx.net.as_ref(), &addr, self.label);
                    continue;
                }
                other => {
                    return Err(ProtocolError::Unexpected {
                        got: other.kind(),
                        doing: "serving chunks",
                    }
                    .into());
                }
            };
            if tx.send(out).await.is_err() {
                return Ok(());
            }
        }
    }

    async fn write(
        &self,
        writer: &mut ConnWriter,
        mut rx: mpsc::Receiver<Out>,
        mut choke: Option<watch::Receiver<bool>>,
    ) -> Result<()> {
        let (shared, config, label) = (self.shared, &*self.ctx.config, self.label);
        let mut orphans = shared.orphans.subscribe();
        orphans.mark_changed();
        let mut sent_any_orphans = false;
        let mut unchoked = choke.is_none();
        let gate = &self.ctx.spare;
        let conn_id = gate.connection();
        let mut spares: VecDeque<ChunkId> = VecDeque::new();
        let mut ticket: Option<SpareTicket<'_>> = None;
        loop {
            if ticket.is_none() && !spares.is_empty() {
                let held = self
                    .member
                    .and_then(|m| self.ctx.directory.held(m.id))
                    .unwrap_or(u32::MAX);
                ticket = Some(gate.ticket(conn_id, held));
            }
            tokio::select! {
                biased;
                out = rx.recv() => {
                    let id = match out {
                        None => return Ok(()),
                        Some(Out::Reply(msg)) => {
                            writer.send(msg).await?;
                            continue;
                        }
                        Some(Out::Spare(id)) => {
                            spares.push_back(id);
                            continue;
                        }
                        Some(Out::Chunk(id)) => id,
                    };
                    let res = self.send_chunk(writer, id, unchoked).await;
                    self.normal_done();
                    res?;
                }
                () = async { ticket.as_ref().expect("guarded").turn().await }, if ticket.is_some() => {
                    if let Some(id) = spares.pop_front() {
                        self.send_chunk(writer, id, unchoked).await?;
                    }
                    // Queue again with the new count, so a peer further behind goes first.
                    ticket = None;
                }
                changed = async { choke.as_mut().expect("guarded").changed().await }, if choke.is_some() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    unchoked = *choke.as_mut().expect("guarded").borrow_and_update();
                    send_choke(writer, &config.events, label, unchoked).await?;
                }
                changed = orphans.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let set = orphans.borrow_and_update().clone();
                    if set.count() == 0 && !sent_any_orphans {
                        continue;
                    }
                    sent_any_orphans = true;
                    config.events.id_list(EventKind::IdListSent, set.count(), label);
                    // Advisory: a list too long for one header is cut (peers that run out of
                    // other sources ask the owner for anything after STALL_AFTER anyway).
                    let mut chunks = set.to_ranges();
                    chunks.0.truncate(MAX_RANGES_PER_MESSAGE);
                    writer.send(Message::Orphans { chunks }).await?;
                }
                () = tokio::time::sleep(self.keepalive()) => {
                    writer.send(Message::Have { chunks: Ranges::default() }).await?;
                }
            }
        }
    }

    /// Sends chunk `id` unless the client cancelled it or is choked.
    async fn send_chunk(&self, writer: &mut ConnWriter, id: ChunkId, unchoked: bool) -> Result<()> {
        let (shared, config, label) = (self.shared, &*self.ctx.config, self.label);
        let cancelled = self
            .cancelled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        // Never serve a client this owner is choking; it asks again once unchoked.
        if cancelled || !unchoked {
            return Ok(());
        }
        let data = if shared.is_in_memory() {
            shared.read_chunk(id)?
        } else {
            let s = shared.clone();
            tokio::task::spawn_blocking(move || s.read_chunk(id)).await??
        };
        let len = data.len() as u64;
        if let Some(limiter) = &config.upload_limit {
            limiter.acquire(len).await;
        }
        writer.send(Message::chunk(id.get(), data)).await?;
        if let Some(slot) = self.slot {
            slot.sent(len);
        }
        config
            .events
            .chunk(EventKind::ChunkSent, id.get(), label, Some(len));
        if shared.dist().note_served_if_orphan(id) {
            shared.dirty.notify_one();
        }
        Ok(())
    }

    /// How often to send a keep-alive: often enough for the client's own idle limit.
    fn keepalive(&self) -> Duration {
        KEEPALIVE_INTERVAL.min(self.ctx.directory.ttl() / 3)
    }
}

/// Sends `choke` or `unchoke` and logs it.
pub(crate) async fn send_choke(
    writer: &mut ConnWriter,
    events: &EventSink,
    label: &str,
    unchoked: bool,
) -> Result<()> {
    let (msg, kind) = if unchoked {
        (Message::Unchoke, EventKind::Unchoke)
    } else {
        (Message::Choke, EventKind::Choke)
    };
    writer.send(msg).await?;
    events.swarm(kind, label, "");
    Ok(())
}

/// A getter could not reach `addr`: if it is a member and the owner cannot reach it either
/// (1 s to connect), it is dropped from the directory at once. Probes are limited (see
/// [`Directory::start_probe`]).
fn check_lost_source(
    directory: &Arc<Directory>,
    net: Option<&Arc<crate::net::MemNet>>,
    addr: &str,
    reporter: &str,
) {
    let Ok(sa) = addr.parse::<SocketAddr>() else {
        warn!(from = %reporter, "source_lost names {addr:?}, not an IP:PORT; ignored");
        return;
    };
    if !directory.start_probe(sa) {
        debug!(from = %reporter, "source_lost names {sa}: not a member, or probed lately; ignored");
        return;
    }
    let directory = directory.clone();
    let reporter = reporter.to_string();
    let target = crate::net::Endpoint::on(net, sa);
    tokio::spawn(async move {
        let probe = tokio::time::timeout(Duration::from_secs(1), target.connect_stream()).await;
        directory.end_probe();
        if matches!(probe, Ok(Ok(_))) {
            info!(from = %reporter, "{sa} reported lost but answers; kept");
        } else if directory.drop_addr(sa) > 0 {
            info!(from = %reporter, "{sa} reported lost and unreachable; dropped from the directory");
        }
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::protocol::{MAX_MANIFEST_LEN, PROTOCOL_VERSION};

    /// An owner session over an in-memory stream, under tokio's paused clock: a directory
    /// member that goes silent is dropped exactly when its TTL has passed in virtual time,
    /// with an error saying why.
    #[tokio::test(start_paused = true)]
    async fn a_silent_member_is_dropped_when_its_ttl_passes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("data.bin");
        std::fs::write(&path, vec![7u8; 10_000]).unwrap();
        let files = vec![Arc::new(SharedFile::open(&path, 1000, 5).unwrap())];
        let ttl = Duration::from_secs(45);
        let directory = super::super::directory(&files, "127.0.0.1:5000".parse().unwrap(), ttl);
        let events = Arc::new(crate::events::EventSink::console("owner"));
        let ctx = Arc::new(Ctx {
            config: Arc::new(super::super::Config::new(events)),
            directory: directory.clone(),
            choker: Choker::new(4),
            spare: SpareGate::default(),
            net: None,
        });
        let (client, server) = tokio::io::duplex(1 << 20);
        let permit = Arc::new(tokio::sync::Semaphore::new(1))
            .try_acquire_owned()
            .ok();
        let conn = Connection::over(server, "127.0.0.1:40000".into(), 0);
        let token = CancellationToken::new();
        tokio::spawn(handle(conn, permit, Arc::new(files), ctx, token.clone()));

        let mut client = Connection::over(client, "owner".into(), MAX_MANIFEST_LEN);
        client
            .send(Message::Hello {
                version: PROTOCOL_VERSION,
                role: Role::Getter,
                file: None,
                have: Ranges::default(),
                port: Some(7001),
                nonce: None,
                node: Some("ab12".into()),
            })
            .await
            .unwrap();
        let welcome = client.recv("welcome", HANDSHAKE_TIMEOUT).await.unwrap();
        assert!(
            matches!(welcome, Some(Message::Welcome { .. })),
            "{welcome:?}"
        );
        let joined = tokio::time::Instant::now();
        assert_eq!(directory.peers()[0].addr, "127.0.0.1:7001");
        let listed = directory.locate("1").sources;
        assert_eq!(listed[1].node.as_deref(), Some("ab12"), "{listed:?}");
        // Silent from now on: the owner's keep-alives arrive, then the error.
        let why = loop {
            match client.recv("the owner", Duration::from_secs(600)).await {
                Ok(Some(Message::Have { chunks })) if chunks.is_empty() => {}
                Err(ProtocolError::Remote(why)) => break why,
                other => panic!("expected keep-alives, then an error: {other:?}"),
            }
        };
        let waited = joined.elapsed();
        assert!(why.contains("past --peer-ttl"), "{why}");
        assert!(
            waited >= ttl && waited < ttl + Duration::from_secs(1),
            "dropped after {waited:?} of virtual time, the TTL being {ttl:?}"
        );
        assert!(directory.peers().is_empty(), "still listed");
        token.cancel();
    }
}
