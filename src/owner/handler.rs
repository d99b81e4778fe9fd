//! One owner connection: `hello` → `welcome` (manifest + assigned chunks) → serve requests,
//! pushing the orphan list whenever it changes.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Config, SharedFile};
use crate::chunkset::{ChunkSet, Ranges};
use crate::connection::{
    ConnReader, ConnWriter, Connection, Hello, IDLE_TIMEOUT, KEEPALIVE_INTERVAL,
};
use crate::events::EventKind;
use crate::manifest::ChunkId;
use crate::net::TcpStream;
use crate::protocol::{MAX_RANGES_PER_MESSAGE, Message, ProtocolError, Role};
use crate::{Error, Result};

/// Requests queued per connection beyond which the reader waits (a client keeps at most its
/// configured number in flight, so this is only reached by a misbehaving one).
pub(crate) const MAX_QUEUED_REQUESTS: usize = 64;

pub(super) async fn handle(
    stream: TcpStream,
    permit: Option<OwnedSemaphorePermit>,
    files: Arc<Vec<Arc<SharedFile>>>,
    config: Arc<Config>,
    token: CancellationToken,
) {
    let mut conn = Connection::new(stream, 0);
    if permit.is_none() {
        warn!("too many connections; refusing");
        conn.send_error(format!(
            "owner is busy: at most {} connections at once; try again later",
            super::MAX_CONNECTIONS
        ))
        .await;
        return;
    }
    match serve(conn, &files, &config, &token).await {
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
    config: &Config,
    token: &CancellationToken,
) -> Result<()> {
    let Hello {
        role,
        file,
        have,
        label,
    } = conn.recv_hello().await?;
    let shared = match choose_file(files, file.as_deref()) {
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
    info!(
        peer = %label,
        file = %m.name,
        assigned = assigned.len(),
        holds = held.count(),
        "peer joined"
    );
    // Assignments are contiguous runs (see `assign`), so this cut never bites in practice.
    let mut assigned_ranges = Ranges::from_sorted(assigned.iter().map(|c| c.get()));
    assigned_ranges.0.truncate(MAX_RANGES_PER_MESSAGE);
    config
        .events
        .id_list(EventKind::IdListSent, count(&assigned), &label);
    conn.send(Message::welcome(
        assigned_ranges,
        shared.manifest_json.clone(),
    ))
    .await?;

    let (mut reader, mut writer) = conn.split();
    let (tx, rx) = mpsc::channel(MAX_QUEUED_REQUESTS);
    let res = tokio::select! {
        r = read_requests(&mut reader, &shared, config, &label, tx) => r,
        r = write_chunks(&mut writer, &shared, config, &label, rx) => r,
        () = token.cancelled() => Ok(()),
    };
    if let Err(e) = &res
        && e.deserves_reply()
    {
        writer.send_error(e.to_string()).await;
    }
    res
}

fn count(ids: &[ChunkId]) -> u32 {
    u32::try_from(ids.len()).unwrap_or(u32::MAX)
}

async fn read_requests(
    reader: &mut ConnReader,
    shared: &SharedFile,
    config: &Config,
    label: &str,
    tx: mpsc::Sender<ChunkId>,
) -> Result<()> {
    let m = &shared.manifest;
    loop {
        let Some(msg) = reader.recv("waiting for requests", IDLE_TIMEOUT).await? else {
            return Ok(());
        };
        match msg {
            Message::Request { chunk } => {
                let id = m.chunk_id(chunk)?;
                config
                    .events
                    .chunk(EventKind::RequestReceived, chunk, label, None);
                if tx.send(id).await.is_err() {
                    return Ok(());
                }
            }
            Message::Have { chunks } if chunks.is_empty() => {} // keep-alive
            Message::Have { chunks } => {
                // The peer's progress; validated, logged, not needed for serving.
                let n = ChunkSet::try_from_ranges(m, &chunks)?.count();
                config.events.id_list(EventKind::IdListReceived, n, label);
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

async fn write_chunks(
    writer: &mut ConnWriter,
    shared: &Arc<SharedFile>,
    config: &Config,
    label: &str,
    mut rx: mpsc::Receiver<ChunkId>,
) -> Result<()> {
    let mut orphans = shared.orphans.subscribe();
    orphans.mark_changed();
    let mut sent_any_orphans = false;
    loop {
        tokio::select! {
            id = rx.recv() => {
                let Some(id) = id else { return Ok(()) };
                let s = shared.clone();
                let data = tokio::task::spawn_blocking(move || read_chunk(&s, id)).await??;
                let len = data.len() as u64;
                if let Some(limiter) = &config.upload_limit {
                    limiter.acquire(len).await;
                }
                writer.send(Message::chunk(id.get(), data)).await?;
                config.events.chunk(EventKind::ChunkSent, id.get(), label, Some(len));
                if shared.dist().note_served_if_orphan(id) {
                    shared.dirty.notify_one();
                }
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
            () = tokio::time::sleep(KEEPALIVE_INTERVAL) => {
                writer.send(Message::Have { chunks: Ranges::default() }).await?;
            }
        }
    }
}

fn read_chunk(shared: &SharedFile, id: ChunkId) -> Result<bytes::Bytes> {
    use std::os::unix::fs::FileExt;
    let m = &shared.manifest;
    let mut buf = vec![0u8; m.chunk_len(id)];
    shared
        .file
        .read_exact_at(&mut buf, m.chunk_offset(id))
        .map_err(|source| crate::store::StoreError::Io {
            action: "reading",
            path: shared.path.clone(),
            source,
        })?;
    Ok(bytes::Bytes::from(buf))
}
