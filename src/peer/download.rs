//! Download clients: to the owner (bootstrap, assigned and orphan chunks, stall fallback) and
//! to the download neighbour (the ring). Both keep several requests in flight, pick at random
//! among the chunks the source has and this peer lacks, and announce this peer's new chunks.
//!
//! Each connection runs a reader and a writer `select!`ed together: the reader takes chunks
//! and ID lists and queues requests; the writer drains the bounded queue and announces.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use rand::SeedableRng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Config, MAX_BAD_CHUNKS, STALL_AFTER, SourceKind, Swarm};
use crate::auth::{self, Secret};
use crate::chunkset::{ChunkSet, Ranges};
use crate::connection::{ConnReader, ConnWriter, Connection, IDLE_TIMEOUT, KEEPALIVE_INTERVAL};
use crate::events::EventKind;
use crate::manifest::{ChunkId, Manifest, check_offered_name, display_name};
use crate::net::{Backoff, Endpoint};
use crate::protocol::{
    MAX_MANIFEST_LEN, MAX_RANGES_PER_MESSAGE, Message, PROTOCOL_VERSION, ProtocolError, Role,
};
use crate::store::ChunkStore;
use crate::{Error, Result};

/// How long a source that sent [`MAX_BAD_CHUNKS`] bad chunks is avoided.
pub const BAD_SOURCE_AVOID: Duration = Duration::from_secs(30);

/// How often a waiting client logs that it is still retrying.
const RETRY_LOG_EVERY: Duration = Duration::from_secs(10);

/// A connection that finished its handshake.
#[derive(Debug)]
pub(super) struct Handshake {
    pub conn: Connection,
    pub assigned: Ranges,
    /// How often the owner wants to hear from this peer (its directory TTL / 3).
    pub heartbeat: Duration,
}

/// What bootstrapping yields: the manifest, and the owner connection if one was made.
#[derive(Debug)]
pub(super) struct Boot {
    pub manifest: Manifest,
    pub owner_conn: Option<Handshake>,
}

/// Connects to `endpoint`, says `hello` (proving the shared secret if there is one), and
/// reads `welcome`.
pub(super) async fn handshake(
    endpoint: &Endpoint,
    role: Role,
    file: Option<String>,
    have: Ranges,
    (port, node): (u16, &str),
    secret: Option<&Secret>,
) -> Result<(Handshake, Manifest)> {
    let (stream, remote) = endpoint.connect_stream().await.map_err(ProtocolError::Io)?;
    let mut conn = Connection::over(stream, remote, MAX_MANIFEST_LEN);
    // A long have list continues in `have` messages, so every header stays small.
    let mut parts = have.0.chunks(MAX_RANGES_PER_MESSAGE);
    let first = Ranges(parts.next().map(<[_]>::to_vec).unwrap_or_default());
    let (nonce, nonce_hex) = auth::hello_nonce(secret);
    conn.send(Message::Hello {
        version: PROTOCOL_VERSION,
        role,
        file,
        have: first,
        port: Some(port),
        nonce: nonce_hex,
        node: Some(node.to_string()),
    })
    .await?;
    let answer = auth::client(&mut conn, secret, nonce, "waiting for welcome").await;
    if answer.is_ok() {
        for part in parts {
            conn.send(Message::Have {
                chunks: Ranges(part.to_vec()),
            })
            .await?;
        }
    }
    match answer {
        Err(e) => Err(e),
        Ok(Some(Message::Welcome {
            assigned,
            manifest,
            heartbeat_ms,
            ..
        })) => {
            let manifest = Manifest::from_json(&manifest)?;
            conn.set_max_body(usize::try_from(manifest.chunk_size).unwrap_or(usize::MAX));
            if role != Role::Neighbour {
                // The owner answers `locate` on this connection.
                conn.accept_answers();
            }
            let heartbeat = heartbeat_ms
                .map_or(KEEPALIVE_INTERVAL, Duration::from_millis)
                .clamp(Duration::from_millis(100), KEEPALIVE_INTERVAL);
            Ok((
                Handshake {
                    conn,
                    assigned,
                    heartbeat,
                },
                manifest,
            ))
        }
        Ok(Some(other)) => Err(ProtocolError::Unexpected {
            got: other.kind(),
            doing: "waiting for welcome",
        }
        .into()),
        Ok(None) => Err(ProtocolError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed before welcome",
        ))
        .into()),
    }
}

/// A saved manifest in the peer's folder, for resuming without the owner.
fn saved_manifest(config: &Config) -> Option<Manifest> {
    if config.in_memory.is_some() {
        return None;
    }
    let path = match &config.file {
        Some(name) => ChunkStore::manifest_path_for(&config.dir, name),
        None => {
            let mut found = std::fs::read_dir(&config.dir)
                .ok()?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.to_str().is_some_and(|s| s.ends_with(".manifest.json")));
            let first = found.next()?;
            if found.next().is_some() {
                return None;
            }
            first
        }
    };
    Manifest::from_json(&crate::store::read_nofollow(&path).ok()?)
        .ok()
        .filter(|m| check_offered_name(config.file.as_deref(), &m.name).is_ok())
}

/// Gets the manifest: from the owner (retrying until `config.timeout`), or, if the owner is
/// not up at once and the folder holds a saved manifest, from there.
pub(super) async fn bootstrap(config: &Config, port: u16, node: &str) -> Result<Boot> {
    let saved = saved_manifest(config);
    let started = Instant::now();
    let mut backoff = Backoff::default();
    let mut last_log = None::<Instant>;
    let role = if config.get.is_some() {
        Role::Getter
    } else {
        Role::Peer
    };
    loop {
        let have = Ranges::default();
        match handshake(
            &config.owner,
            role,
            config.file.clone(),
            have,
            (port, node),
            config.secret.as_deref(),
        )
        .await
        {
            Ok((hs, manifest)) => {
                check_offered_name(config.file.as_deref(), &manifest.name)?;
                info!(
                    file = %display_name(&manifest.name),
                    size = manifest.size,
                    chunks = manifest.chunk_count(),
                    "got manifest from owner {}",
                    config.owner
                );
                return Ok(Boot {
                    manifest,
                    owner_conn: Some(hs),
                });
            }
            Err(e @ (Error::Refused(_) | Error::Manifest(_))) if !e.is_busy() => return Err(e),
            Err(e) => {
                if let Some(m) = saved {
                    info!(
                        "owner {} unreachable ({e}); resuming from the saved manifest of {}",
                        config.owner,
                        display_name(&m.name)
                    );
                    return Ok(Boot {
                        manifest: m,
                        owner_conn: None,
                    });
                }
                if started.elapsed() >= config.timeout {
                    return Err(Error::OwnerUnreachable {
                        owner: config.owner.to_string(),
                        secs: config.timeout.as_secs(),
                        last: e.to_string(),
                    });
                }
                if last_log.is_none_or(|t| t.elapsed() >= RETRY_LOG_EVERY) {
                    info!("waiting for owner {} ({e}); retrying", config.owner);
                    last_log = Some(Instant::now());
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// Keeps a connection to one source until this peer is complete or `token` is cancelled,
/// reconnecting with capped backoff.
pub(super) async fn run_source(
    swarm: Arc<Swarm>,
    kind: SourceKind,
    mut first: Option<Handshake>,
    token: CancellationToken,
) {
    let endpoint = match kind {
        SourceKind::Owner => swarm.config.owner.clone(),
        SourceKind::Neighbour => swarm.config.neighbour.clone(),
    };
    let role = match kind {
        SourceKind::Owner => Role::Peer,
        SourceKind::Neighbour => Role::Neighbour,
    };
    let mut backoff = Backoff::default();
    let mut last_log = None::<Instant>;
    // A complete peer still tells its download neighbour once that it is complete, so the
    // neighbour knows its upload neighbour needs nothing more.
    let mut told_complete = false;
    // The owner connection is also this peer's directory registration: it lives as long as
    // the peer, and is made again (with the full have list) when the owner restarts.
    let finished = |told: bool| kind == SourceKind::Neighbour && told && swarm.is_complete();
    while !token.is_cancelled() && !finished(told_complete) {
        let mut have = swarm.have_snapshot();
        let hs = match first.take() {
            // The bootstrap hello said nothing of what this peer holds (the manifest was not
            // known yet): announce everything on it.
            Some(hs) => {
                have = ChunkSet::new(swarm.manifest.chunk_count());
                Ok(hs)
            }
            None => {
                let file = Some(swarm.manifest.name.clone());
                let secret = swarm.config.secret.as_deref();
                let me = (swarm.port, swarm.node.as_str());
                let fut = handshake(&endpoint, role, file, have.to_ranges(), me, secret);
                tokio::select! {
                    biased;
                    () = token.cancelled() => return,
                    r = fut => r.and_then(|(hs, m)| {
                        if m.hash == swarm.manifest.hash {
                            Ok(hs)
                        } else {
                            Err(Error::Refused(format!(
                                "{endpoint} shares another file ({} blake3 {}), not {} blake3 {}",
                                display_name(&m.name), m.hash.short(), display_name(&swarm.manifest.name), swarm.manifest.hash.short()
                            )))
                        }
                    }),
                }
            }
        };
        let hs = match hs {
            Ok(hs) => hs,
            Err(e) => {
                set_error(&swarm, kind, Some(e.to_string()));
                if swarm.is_complete() {
                    // Only the directory registration is missing; no need to shout.
                    debug!("waiting for owner {endpoint} ({e}); retrying");
                } else if last_log.is_none_or(|t| t.elapsed() >= RETRY_LOG_EVERY) {
                    let who = if kind == SourceKind::Owner {
                        "owner"
                    } else {
                        "neighbour"
                    };
                    info!("waiting for {who} {endpoint} ({e}); retrying");
                    last_log = Some(Instant::now());
                }
                tokio::select! {
                    biased;
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(backoff.next_delay()) => continue,
                }
            }
        };
        last_log = None;
        set_error(&swarm, kind, None);
        info!("connected to {endpoint}");
        let (fetched_before, since) = (swarm.state().fetched, Instant::now());
        let res = drive(&swarm, kind, hs, have, &token).await;
        // Backoff starts again only after real progress: a chunk stored, or a session that
        // lasted. A session that fails at once (a bad message, a full disk, an owner whose
        // file changed) is retried ever more slowly, not in a storm.
        let progressed =
            swarm.state().fetched > fetched_before || since.elapsed() >= STABLE_SESSION;
        if progressed {
            backoff.reset();
        }
        let reason = match &res {
            Ok(()) => "disconnected".to_string(),
            Err(e) => format!("disconnected: {e}"),
        };
        set_error(&swarm, kind, Some(reason));
        match res {
            Ok(()) => {
                told_complete = swarm.is_complete();
                if told_complete && kind == SourceKind::Neighbour {
                    swarm.state().told_neighbour = true;
                    swarm.notify();
                }
                debug!("connection to {endpoint} ended");
            }
            Err(Error::BadChunks(e)) => {
                // A source that keeps sending bad chunks is avoided for a while; the owner and,
                // for a neighbour, other sources (the fall-back) fill in meanwhile.
                warn!(
                    "connection to {endpoint} ended: {e}; avoiding it for {}s",
                    BAD_SOURCE_AVOID.as_secs()
                );
                tokio::select! {
                    biased;
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(BAD_SOURCE_AVOID) => {}
                }
            }
            Err(e) => warn!("connection to {endpoint} ended: {e}"),
        }
        if !progressed && !finished(told_complete) {
            tokio::select! {
                biased;
                () = token.cancelled() => return,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }
}

/// The least time a source may take to answer any of the requests outstanding at it.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// The request deadline of one connection: a source may go this long without sending any
/// of the chunks requested of it — [`REQUEST_DEADLINE`], plus a chunk's time at 64 KiB/s
/// for large chunks on slow links — counted from when requests began to wait, or from the
/// last chunk received.
pub(super) struct AnswerClock {
    since: Option<tokio::time::Instant>,
    deadline: Duration,
}

impl AnswerClock {
    pub(super) fn new(chunk_size: u64) -> Self {
        Self {
            since: None,
            deadline: REQUEST_DEADLINE
                + Duration::from_millis(chunk_size.saturating_mul(1000) / (64 * 1024)),
        }
    }

    /// Whether requests are waiting for an answer now: the clock runs only while they are.
    pub(super) fn waiting(&mut self, waiting: bool) {
        if !waiting {
            self.since = None;
        } else if self.since.is_none() {
            self.since = Some(tokio::time::Instant::now());
        }
    }

    /// A requested chunk arrived: the clock starts again.
    pub(super) fn answered(&mut self) {
        self.since = None;
    }

    /// Completes once requests have waited past the deadline; never while none wait.
    pub(super) async fn expired(&self) {
        match self.since {
            Some(t) => tokio::time::sleep_until(t + self.deadline).await,
            None => std::future::pending().await,
        }
    }

    pub(super) fn deadline(&self) -> Duration {
        self.deadline
    }
}

/// A session at least this long counts as progress for the reconnect backoff.
pub(super) const STABLE_SESSION: Duration = Duration::from_secs(10);

pub(super) fn set_error(swarm: &Swarm, kind: SourceKind, e: Option<String>) {
    let mut st = swarm.state();
    match kind {
        SourceKind::Owner => {
            st.owner_connected = e.is_none();
            st.owner_error = e;
        }
        SourceKind::Neighbour => {
            // Connected: the neighbour holds nothing until its have list says otherwise.
            st.neighbour_recent.clear();
            st.neighbour_has = match e {
                Some(_) => None,
                None => Some(ChunkSet::new(swarm.manifest.chunk_count())),
            };
            match (&e, st.neighbour_down_since) {
                (Some(_), None) => st.neighbour_down_since = Some(Instant::now()),
                (None, _) => st.neighbour_down_since = None,
                _ => {}
            }
            st.neighbour_error = e;
        }
    }
    drop(st);
    swarm.notify();
}

/// The chunks this connection requested and has not received; released when it ends.
struct InFlight<'a> {
    swarm: &'a Swarm,
    ids: HashSet<ChunkId>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.swarm.release(self.ids.drain());
    }
}

async fn drive(
    swarm: &Arc<Swarm>,
    kind: SourceKind,
    hs: Handshake,
    announced: ChunkSet,
    token: &CancellationToken,
) -> Result<()> {
    let label = hs.conn.remote().to_string();
    let m = &swarm.manifest;
    if kind == SourceKind::Owner {
        let assigned = ChunkSet::try_from_ranges(m, &hs.assigned)?;
        swarm
            .events
            .id_list(EventKind::IdListReceived, assigned.count(), &label);
        swarm.state().assigned.union_with(&assigned);
        swarm.notify();
    }
    let heartbeat = hs.heartbeat;
    let (mut reader, mut writer) = hs.conn.split();
    let (tx, rx) = mpsc::channel(swarm.config.in_flight + 4);
    let mut in_flight = InFlight {
        swarm,
        ids: HashSet::new(),
    };
    let res = tokio::select! {
        biased;
        () = token.cancelled() => Ok(()),
        r = read_loop(swarm, kind, &mut reader, &label, &tx, &mut in_flight) => r,
        r = write_loop(swarm, kind, &mut writer, &label, rx, announced, heartbeat) => r,
    };
    if token.is_cancelled() && swarm.is_complete() {
        // Shutting down complete: make sure the server heard so (its `have` may not have gone
        // out yet), or it would wait for us in vain. Duplicates are harmless.
        let all = Ranges::from_sorted(0..swarm.manifest.chunk_count());
        for part in all.0.chunks(MAX_RANGES_PER_MESSAGE) {
            let msg = Message::Have {
                chunks: Ranges(part.to_vec()),
            };
            if tokio::time::timeout(Duration::from_secs(1), writer.send(msg))
                .await
                .is_err()
            {
                break;
            }
        }
    }
    match &res {
        Ok(()) if swarm.is_complete() && kind == SourceKind::Neighbour => {
            // Everything announced: half-close, and read until the server closes too, so
            // that unread data never turns the close into a reset that destroys the last
            // `have` before the server read it.
            writer.close().await;
            reader.drain(Duration::from_secs(2)).await;
        }
        Err(e) if e.deserves_reply() => {
            writer.send_error(e.to_string()).await;
        }
        _ => {}
    }
    res
}

async fn read_loop(
    swarm: &Swarm,
    kind: SourceKind,
    reader: &mut ConnReader,
    label: &str,
    tx: &mpsc::Sender<Message>,
    in_flight: &mut InFlight<'_>,
) -> Result<()> {
    let m = &swarm.manifest;
    let mut changed = swarm.changed.subscribe();
    let mut rng = match swarm.config.seed {
        // One stream per source kind, so the two connections do not mirror each other.
        Some(seed) => rand::rngs::StdRng::seed_from_u64(seed ^ (kind as u64 + 1)),
        None => rand::rngs::StdRng::from_os_rng(),
    };
    let mut bad = 0u32;
    let mut cancelled = HashSet::new();
    let mut clock = AnswerClock::new(m.chunk_size);
    if kind == SourceKind::Owner {
        // The owner holds every chunk.
        swarm.state().owner_connected = true;
    }
    loop {
        // Fill the pipeline.
        if kind == SourceKind::Owner {
            // Spare requests the neighbour can now serve: cancel them at the owner.
            let cancel = std::mem::take(&mut swarm.state().spare_cancel);
            for c in cancel {
                let Ok(id) = m.chunk_id(c) else { continue };
                if in_flight.ids.remove(&id) {
                    swarm.release([id]);
                    cancelled.insert(id);
                    if tx.send(Message::Cancel { chunk: c }).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
        while in_flight.ids.len() < swarm.config.in_flight {
            let Some((id, spare)) = swarm.pick(kind, &mut rng) else {
                break;
            };
            in_flight.ids.insert(id);
            swarm
                .events
                .chunk(EventKind::ChunkRequested, id.get(), label, None);
            let msg = Message::Request {
                chunk: id.get(),
                spare,
            };
            if tx.send(msg).await.is_err() {
                return Ok(());
            }
        }
        if swarm.is_complete() && kind == SourceKind::Neighbour {
            // The writer ends the connection once it announced the last chunk.
            std::future::pending::<()>().await;
        }
        // Only for a neighbour: spare requests wait at the owner on purpose.
        clock.waiting(!in_flight.ids.is_empty() && kind == SourceKind::Neighbour);
        let msg = tokio::select! {
            biased;
            () = clock.expired() => {
                // A source that announces chunks but does not send them (keep-alives do not
                // count) must not hold them hostage: they go to the owner, and this
                // connection is dropped.
                let held: Vec<ChunkId> = in_flight.ids.iter().copied().collect();
                if kind == SourceKind::Neighbour {
                    let mut st = swarm.state();
                    for id in &held {
                        st.suspect.insert(*id);
                    }
                }
                return Err(Error::Refused(format!(
                    "{label} answered none of {} requests for {}s; fetching them elsewhere",
                    held.len(),
                    clock.deadline().as_secs()
                )));
            }
            () = tokio::time::sleep(STALL_AFTER), if kind == SourceKind::Owner => continue,
            msg = reader.recv("waiting for chunks", IDLE_TIMEOUT) => msg?,
            _ = changed.changed() => continue,
        };
        let Some(msg) = msg else {
            return Ok(());
        };
        match msg {
            Message::Chunk { chunk, data, .. } => {
                clock.answered();
                let id = m.chunk_id(chunk)?;
                if !in_flight.ids.remove(&id) {
                    // A cancelled spare chunk may already have been on its way: it is as good
                    // as any other, if still missing.
                    if !cancelled.remove(&id) {
                        return Err(ProtocolError::Unexpected {
                            got: "unrequested chunk",
                            doing: "downloading",
                        }
                        .into());
                    }
                }
                if swarm.holds(id) {
                    // Another connection delivered it first (a cancelled spare request, or a
                    // fall-back source): nothing to do.
                    continue;
                }
                let bytes = data.len() as u64;
                match swarm.accept_chunk(id, data).await {
                    Ok(()) => {
                        swarm
                            .events
                            .chunk(EventKind::ChunkReceived, chunk, label, Some(bytes))
                    }
                    Err(Error::Store(e)) if is_bad_chunk(&e) => {
                        bad += 1;
                        warn!(from = %label, "refused chunk {chunk}: {e}; fetching it again");
                        if bad >= MAX_BAD_CHUNKS {
                            return Err(Error::BadChunks(format!(
                                "{bad} bad chunks from {label}; disconnecting"
                            )));
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            Message::Have { chunks } if chunks.is_empty() => {} // keep-alive
            Message::Have { chunks } if kind == SourceKind::Neighbour => {
                let mut st = swarm.state();
                let set = st
                    .neighbour_has
                    .get_or_insert_with(|| ChunkSet::new(m.chunk_count()));
                let added = set.extend_from_ranges(m, &chunks)?;
                st.neighbour_recent.extend(added.iter().map(|c| c.get()));
                let now_here: Vec<u32> = added
                    .iter()
                    .filter(|c| st.spare.contains(**c))
                    .map(|c| c.get())
                    .collect();
                st.spare_cancel.extend(now_here);
                drop(st);
                let n = u32::try_from(added.len()).unwrap_or(u32::MAX);
                swarm.events.id_list(EventKind::IdListReceived, n, label);
                swarm.notify();
            }
            Message::Orphans { chunks } if kind == SourceKind::Owner => {
                let set = ChunkSet::try_from_ranges(m, &chunks)?;
                swarm
                    .events
                    .id_list(EventKind::IdListReceived, set.count(), label);
                swarm.state().orphans = set;
                swarm.notify();
            }
            other => {
                return Err(ProtocolError::Unexpected {
                    got: other.kind(),
                    doing: "downloading",
                }
                .into());
            }
        }
    }
}

pub(super) fn is_bad_chunk(e: &crate::store::StoreError) -> bool {
    matches!(
        e,
        crate::store::StoreError::ChunkHashMismatch { .. }
            | crate::store::StoreError::ChunkLength { .. }
    )
}

/// Sends `have` for the chunks this peer gained since `announced` (split to keep each header
/// small), and records them as announced.
pub(super) async fn announce(
    swarm: &Swarm,
    writer: &mut ConnWriter,
    label: &str,
    announced: &mut ChunkSet,
) -> Result<()> {
    let have = swarm.have_snapshot();
    let new = have.difference(announced);
    if new.is_empty() {
        return Ok(());
    }
    let ranges = Ranges::from_sorted(new.iter().copied());
    for part in ranges.0.chunks(MAX_RANGES_PER_MESSAGE) {
        let chunks = Ranges(part.to_vec());
        writer.send(Message::Have { chunks }).await?;
    }
    let n = u32::try_from(new.len()).unwrap_or(u32::MAX);
    swarm.events.id_list(EventKind::IdListSent, n, label);
    *announced = have;
    Ok(())
}

/// Sends queued requests and announces newly held chunks; ends once everything is held and
/// announced.
async fn write_loop(
    swarm: &Swarm,
    kind: SourceKind,
    writer: &mut ConnWriter,
    label: &str,
    mut rx: mpsc::Receiver<Message>,
    mut announced: ChunkSet,
    heartbeat: Duration,
) -> Result<()> {
    let mut changed = swarm.changed.subscribe();
    loop {
        announce(swarm, writer, label, &mut announced).await?;
        // A complete peer ends its neighbour connection; the owner connection stays, as
        // the directory registration, with heartbeats.
        if announced.is_full() && kind == SourceKind::Neighbour {
            return Ok(());
        }
        tokio::select! {
            biased;
            msg = rx.recv() => match msg {
                Some(msg) => writer.send(msg).await?,
                None => return Ok(()),
            },
            _ = changed.changed() => {}
            () = tokio::time::sleep(heartbeat) => {
                writer.send(Message::Have { chunks: Ranges::default() }).await?;
            }
        }
    }
}
