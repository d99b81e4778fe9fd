//! A ring peer: fetch the manifest and a subset from the owner, then at the same time serve an
//! upload neighbour ([`upload`]) and download from a download neighbour ([`download`]), until
//! every chunk is held; then reassemble and verify ([`assemble`]), and keep serving until the
//! upload neighbour is complete.
//!
//! # Chunk bookkeeping (`State`)
//!
//! - `have`: chunks verified and written to the store. Only ever grows while running.
//! - `pending`: chunks requested on some connection and not yet received. A chunk is in
//!   `pending` on at most one connection; when a connection ends, its pending chunks are
//!   released. `have ∩ pending = ∅`.
//! - `assigned`: the owner's hand-out to this peer; fetched from the owner at once.
//! - `orphans`: chunks the owner says no ring member was handed; fetched from the owner when
//!   the download neighbour has nothing this peer lacks.
//! - `suspect`: chunks that failed their hash from the neighbour; fetched from the owner.
//! - After [`STALL_AFTER`] without a new chunk, the owner is asked for anything missing.
//! - `spare`: while the download neighbour has nothing this peer lacks, up to
//!   [`SPARE_IN_FLIGHT`] chunks are requested from the owner as *spare*: the owner sends them
//!   only when no ordinary request waits, to the peer holding the fewest chunks first. A spare
//!   request is cancelled (`cancel`) once the neighbour announces that chunk.

mod assemble;
mod download;
mod multi;
mod upload;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use tokio::sync::{Notify, oneshot};

use crate::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, info_span, warn};

use crate::chunkset::{ChunkSet, pick_random};
use crate::events::EventSink;
use crate::manifest::{ChunkId, Manifest};
use crate::net::{Endpoint, Listener};
use crate::storage::{self, MemStore, Storage};
use crate::store::{ChunkStore, Layout};
use crate::{Error, Result};

/// Without a new chunk for this long, a peer asks the owner for anything it lacks.
pub const STALL_AFTER: Duration = Duration::from_secs(3);
/// An incomplete upload neighbour that disconnected holds a complete peer's service this
/// long, time to reconnect, even if another connection said it was complete.
pub const DOWNSTREAM_GRACE: Duration = Duration::from_secs(5);
/// A complete peer with no upload neighbour connected for this long stops serving.
pub const NO_DOWNSTREAM_WAIT: Duration = Duration::from_secs(30);
/// Default number of requests in flight per connection.
pub const DEFAULT_IN_FLIGHT: usize = 8;
/// The most upload connections served at once.
pub const MAX_UPLOAD_CONNECTIONS: usize = 64;
/// Verified chunks kept in memory for forwarding, at most (see [`RECENT_BYTES`]).
pub const RECENT_CHUNKS: usize = 32;
/// Bytes of verified chunks kept in memory for forwarding, at most, but always at least one
/// chunk: the cache holds `min(RECENT_CHUNKS, max(1, RECENT_BYTES / chunk size))` chunks
/// (32 at 100 KiB, 8 at 1 MiB, 1 at 16 MiB).
pub const RECENT_BYTES: usize = 8 * 1024 * 1024;
/// Hash failures from one connection after which it is dropped.
pub const MAX_BAD_CHUNKS: u32 = 3;
/// Spare requests (see `owner::spare`) a ring peer keeps at the owner at most.
pub const SPARE_IN_FLIGHT: u32 = 4;
/// Sources a getter downloads from at once when not told otherwise.
pub const DEFAULT_MAX_SOURCES: usize = 5;

/// How a multi-source getter (`peer get`) runs.
#[derive(Clone, Debug)]
pub struct GetConfig {
    /// Sources downloaded from at once, the owner included.
    pub max_sources: usize,
}

/// How a peer runs.
#[derive(Debug)]
pub struct Config {
    /// The file owner.
    pub owner: Endpoint,
    /// The download neighbour (unused by a getter).
    pub neighbour: Endpoint,
    /// `Some`: download from many sources found in the owner's directory instead of a ring
    /// neighbour, and serve until cancelled or `linger` ends.
    pub get: Option<GetConfig>,
    /// Getters served at once by this peer's upload server (choking).
    pub upload_slots: usize,
    /// The swarm's shared secret: proven to every server, required of every client.
    pub secret: Option<Arc<crate::auth::Secret>>,
    /// Sync chunks, summaries and the finished file to disk before relying on them (see
    /// [`ChunkStore::set_sync`]); off for simulations and benchmarks.
    pub sync: bool,
    /// Where chunks, the summary and the finished file go.
    pub dir: PathBuf,
    /// The file wanted, when the owner shares several.
    pub file: Option<String>,
    /// How chunks are stored.
    pub layout: Layout,
    /// `Some`: keep chunks in memory instead (nothing under `dir` is read or written).
    pub in_memory: Option<crate::storage::InMemory>,
    /// After completing, stop serving after this long even if the upload neighbour is not
    /// complete. `None`: serve until it is (or none is connected for [`NO_DOWNSTREAM_WAIT`]).
    pub linger: Option<Duration>,
    /// Give up when the owner is unreachable at start, or nothing arrives, for this long.
    pub timeout: Duration,
    /// Requests in flight per connection.
    pub in_flight: usize,
    /// Where events go.
    pub events: Arc<EventSink>,
    /// Cap on this peer's total upload rate, in bytes per second.
    pub upload_limit: Option<u64>,
    /// Fault injection for tests: corrupt the first N chunks this peer uploads.
    pub corrupt_sends: u32,
    /// Seed for this peer's random choices (which chunk to request next); `None`: from the OS.
    pub seed: Option<u64>,
    /// Told once the file is reassembled and verified.
    pub on_complete: Option<oneshot::Sender<Completion>>,
}

/// What a completed peer reports.
#[derive(Clone, Debug)]
pub struct Completion {
    /// The finished file.
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: Arc<Manifest>,
    /// Chunks fetched in this run (the rest were on disk already).
    pub fetched: u32,
    /// From start to verified file.
    pub elapsed: Duration,
}

impl Completion {
    /// The line the `peer` binary prints: `complete: DIR/NAME (4.2 GiB, blake3 1a2b3c4d)
    /// verified in 41.2s, 43008 chunks fetched`, the path shown by
    /// [`display_name`](crate::manifest::display_name) (the name is the owner's choice).
    pub fn line(&self) -> String {
        format!(
            "complete: {} ({}, blake3 {}) verified in {:.3}s, {} chunks fetched",
            crate::manifest::display_name(&self.path.to_string_lossy()),
            crate::cli::human_size(self.manifest.size),
            self.manifest.hash.short(),
            self.elapsed.as_secs_f64(),
            self.fetched
        )
    }
}

/// How [`run`] ended.
#[derive(Debug)]
pub enum Outcome {
    /// The file is complete and verified, and the upload neighbour was served.
    Complete(Completion),
    /// The token was cancelled first.
    Interrupted,
}

#[derive(Debug)]
struct State {
    have: ChunkSet,
    pending: ChunkSet,
    assigned: ChunkSet,
    orphans: ChunkSet,
    suspect: ChunkSet,
    all: ChunkSet,
    neighbour_has: Option<ChunkSet>,
    /// Chunks in the order the neighbour announced them; the newest is requested first.
    neighbour_recent: Vec<u32>,
    /// Chunks requested from the owner as spare and not yet received.
    spare: ChunkSet,
    /// Spare requests to cancel at the owner: the neighbour has announced them since.
    spare_cancel: Vec<u32>,
    owner_connected: bool,
    last_progress: Instant,
    fetched: u32,
    downstream_open: usize,
    /// Upload neighbours connected that have not said they are complete.
    downstream_incomplete: usize,
    /// When an incomplete upload neighbour last disconnected (it may be reconnecting).
    incomplete_downstream_left: Option<Instant>,
    downstream_done: bool,
    downstream_last_seen: Instant,
    /// The download neighbour has been told this peer is complete.
    told_neighbour: bool,
    owner_error: Option<String>,
    neighbour_error: Option<String>,
    /// Since when the download neighbour has been unreachable (`None`: connected).
    neighbour_down_since: Option<Instant>,
    /// Why this peer must stop: an error no retry can mend (a full disk, say).
    fatal: Option<String>,
}

/// What a peer's tasks share.
#[derive(Debug)]
pub(crate) struct Swarm {
    manifest: Arc<Manifest>,
    manifest_json: Bytes,
    store: Arc<dyn Storage>,
    events: Arc<EventSink>,
    config: Config,
    port: u16,
    /// This node's id, said in every `hello` (see [`node_id`]).
    node: String,
    state: Mutex<State>,
    /// Bumped on every change pickers and announcers care about.
    changed: watch::Sender<()>,
    /// Signalled when `have` grew, for the summary writer.
    summary_dirty: Notify,
    /// The newest verified chunks (see `remember`).
    recent: Mutex<RecentChunks>,
    /// The upload cap, shared by every upload connection.
    limiter: Option<crate::rate::RateLimiter>,
    /// Who of the getters connected to the upload server is served.
    choker: Arc<crate::choke::Choker>,
    /// Faults left to inject.
    corrupt_left: std::sync::atomic::AtomicU32,
}

/// Which kind of source a download connection talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SourceKind {
    Owner,
    Neighbour,
}

impl Swarm {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self) {
        self.changed.send_replace(());
    }

    fn have_snapshot(&self) -> ChunkSet {
        self.state().have.clone()
    }

    fn is_complete(&self) -> bool {
        self.state().have.is_full()
    }

    fn holds(&self, id: ChunkId) -> bool {
        self.state().have.contains(id)
    }

    /// Picks a chunk to request from a source of `kind`, and marks it pending; true with it
    /// for a spare request to the owner (see [`SPARE_IN_FLIGHT`]).
    fn pick(&self, kind: SourceKind, rng: &mut impl rand::Rng) -> Option<(ChunkId, bool)> {
        let mut guard = self.state();
        let st = &mut *guard;
        let words = st.all.words().len();
        let (have, pending, all) = (st.have.words(), st.pending.words(), st.all.words());
        let missing = |w: usize| all[w] & !have[w] & !pending[w];
        let picked = match kind {
            SourceKind::Neighbour => {
                let nh = st.neighbour_has.as_ref()?.words();
                let avoid = if st.owner_connected {
                    st.suspect.words()
                } else {
                    &[][..]
                };
                let wanted = |w: usize| missing(w) & nh[w] & !avoid.get(w).copied().unwrap_or(0);
                // Newest first: the chunk the neighbour got last is the one fewest peers
                // have, and the one still to travel furthest round the ring; taking it at once
                // keeps the end of the run from waiting on chunks stuck behind older ones.
                // Whatever the stack skips is still found by the random pick.
                let mut newest = None;
                while let Some(c) = st.neighbour_recent.pop() {
                    let (w, bit) = ((c / 64) as usize, 1u64 << (c % 64));
                    if wanted(w) & bit != 0 {
                        newest = Some(c);
                        break;
                    }
                }
                newest
                    .or_else(|| pick_random(words, wanted, rng))
                    .map(|c| (c, false))
            }
            SourceKind::Owner => {
                let stalled = st.last_progress.elapsed() >= STALL_AFTER;
                let idle = neighbour_idle(st);
                let (assigned, suspect, orphans) =
                    (st.assigned.words(), st.suspect.words(), st.orphans.words());
                let first = pick_random(
                    words,
                    |w| {
                        let wanted = if stalled {
                            u64::MAX
                        } else {
                            assigned[w] | suspect[w] | if idle { orphans[w] } else { 0 }
                        };
                        missing(w) & wanted
                    },
                    rng,
                );
                // Beyond that, a few spare chunks, which the owner sends only when its upload
                // is otherwise idle: chunks the neighbour does not have first.
                let nh = st.neighbour_has.as_ref().map(ChunkSet::words);
                let not_there =
                    |w: usize| missing(w) & !nh.and_then(|n| n.get(w)).copied().unwrap_or(0);
                match first {
                    Some(c) => Some((c, false)),
                    None if st.spare.count() < SPARE_IN_FLIGHT => {
                        pick_random(words, not_there, rng)
                            .or_else(|| {
                                if idle {
                                    pick_random(words, missing, rng)
                                } else {
                                    None
                                }
                            })
                            .map(|c| (c, true))
                    }
                    None => None,
                }
            }
        };
        let (c, spare) = picked?;
        let id = self.manifest.chunk_id(c).ok()?;
        st.pending.insert(id);
        if spare {
            st.spare.insert(id);
        }
        Some((id, spare))
    }

    /// Releases chunks that were pending on a connection that ended.
    fn release(&self, ids: impl IntoIterator<Item = ChunkId>) {
        let mut st = self.state();
        for id in ids {
            st.pending.remove(id);
            st.spare.remove(id);
        }
        drop(st);
        self.notify();
    }

    /// Verifies `data` as chunk `id` and stores it.
    ///
    /// # Errors
    ///
    /// A hash or length mismatch (the chunk is released and marked suspect), or a store error.
    async fn accept_chunk(&self, id: ChunkId, data: Bytes) -> Result<()> {
        // Done in place, not on the blocking pool: hashing 100 KiB and copying it into the
        // page cache take tens of microseconds, less than handing the work to another thread
        // and back (measured: a third of the ring's CPU went to those hand-offs).
        let res = crate::storage::verify(self.store.manifest(), id, &data)
            .and_then(|()| self.store.write_chunk(id, &data));
        // An in-memory store reads for nothing: no cache beside it.
        if res.is_ok() && !self.store.is_in_memory() {
            self.remember(id, data);
        }
        let mut st = self.state();
        st.pending.remove(id);
        st.spare.remove(id);
        if let Err(e) = res {
            if !download::is_bad_chunk(&e) && st.fatal.is_none() {
                // Not the chunk's fault (the disk is full, say): fetching again cannot help.
                st.fatal = Some(format!(
                    "cannot store chunk {id}: {e}; the {} verified chunks so far are kept in {}",
                    st.have.count(),
                    self.config.dir.display()
                ));
            }
            st.suspect.insert(id);
            drop(st);
            self.notify();
            return Err(e.into());
        }
        st.have.insert(id);
        st.suspect.remove(id);
        st.fetched += 1;
        st.last_progress = Instant::now();
        drop(st);
        self.summary_dirty.notify_one();
        self.notify();
        Ok(())
    }

    /// Keeps the newest verified chunks in memory: the upload neighbour asks for the newest
    /// first, so most forwards are served from here instead of being read back from disk.
    fn remember(&self, id: ChunkId, data: Bytes) {
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(id, data);
    }

    /// A chunk to upload: from the recent chunks, or read from the store.
    async fn chunk_to_send(&self, id: ChunkId) -> Result<Bytes> {
        let hit = self
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id);
        let data = match hit {
            Some(d) => d,
            // In place, like `accept_chunk`: the chunk was written lately, so it is in the
            // page cache.
            None => self.store.read_chunk(id)?,
        };
        Ok(self.maybe_corrupt(id, data))
    }

    /// Fault injection: corrupts `data` while `corrupt_sends` is not used up.
    fn maybe_corrupt(&self, id: ChunkId, mut data: Bytes) -> Bytes {
        if self.corrupt_left.load(std::sync::atomic::Ordering::Relaxed) > 0
            && self
                .corrupt_left
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed)
                > 0
            && !data.is_empty()
        {
            warn!(chunk = %id, "fault injection: corrupting an uploaded chunk");
            let mut v = data.to_vec();
            v[0] ^= 0xff;
            data = Bytes::from(v);
        }
        data
    }
}

/// The newest verified chunks, bounded by count and bytes: at most [`RECENT_CHUNKS`] chunks
/// and [`RECENT_BYTES`] bytes, but never fewer than the newest chunk.
#[derive(Debug, Default)]
struct RecentChunks {
    chunks: std::collections::VecDeque<(ChunkId, Bytes)>,
    /// The sum of the chunks' lengths.
    bytes: usize,
}

impl RecentChunks {
    /// Adds the newest chunk, dropping the oldest ones beyond the bounds.
    fn push(&mut self, id: ChunkId, data: Bytes) {
        self.bytes += data.len();
        self.chunks.push_back((id, data));
        while self.chunks.len() > 1
            && (self.chunks.len() > RECENT_CHUNKS || self.bytes > RECENT_BYTES)
        {
            if let Some((_, old)) = self.chunks.pop_front() {
                self.bytes -= old.len();
            }
        }
    }

    /// The chunk `id`, if held.
    fn get(&self, id: ChunkId) -> Option<Bytes> {
        self.chunks
            .iter()
            .rev()
            .find(|(c, _)| *c == id)
            .map(|(_, d)| d.clone())
    }
}

/// A node id: 16 hex digits, from the seed and port when there is a seed (so a seeded run
/// is the same every time), else random.
fn node_id(seed: Option<u64>, port: u16) -> String {
    let id = match seed {
        Some(s) => s.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(port).rotate_left(32),
        None => rand::random(),
    };
    format!("{id:016x}")
}

/// The peer's store of `manifest`, and the chunks it holds already: in memory, or on disk
/// (opened on the blocking pool: it hashes what it finds).
async fn open_store(
    config: &Config,
    manifest: &Arc<Manifest>,
) -> Result<(Arc<dyn Storage>, ChunkSet)> {
    if let Some(kind) = &config.in_memory {
        let store = MemStore::new(manifest, &config.dir, kind.clone())?;
        return Ok((Arc::new(store), ChunkSet::new(manifest.chunk_count())));
    }
    let (dir, layout, m2) = (config.dir.clone(), config.layout, manifest.clone());
    let (mut store, have) =
        tokio::task::spawn_blocking(move || ChunkStore::open(&dir, &m2, layout)).await??;
    store.set_sync(config.sync);
    Ok((Arc::new(store), have))
}

/// True when the download neighbour holds nothing this peer lacks and has not requested.
fn neighbour_idle(st: &State) -> bool {
    let Some(nh) = &st.neighbour_has else {
        return true;
    };
    let (have, pending) = (st.have.words(), st.pending.words());
    !nh.words()
        .iter()
        .enumerate()
        .any(|(w, &n)| n & !have[w] & !pending[w] != 0)
}

/// Runs a peer on `listener` until its file is complete and its upload neighbour served, or
/// `token` is cancelled.
///
/// # Errors
///
/// The owner unreachable at start (with no saved manifest), a refusal by the owner (unknown
/// file, version), no progress for `config.timeout`, or a store error.
pub async fn run(
    listener: impl Into<Listener>,
    mut config: Config,
    token: CancellationToken,
) -> Result<Outcome> {
    let started = Instant::now();
    let listener = listener.into();
    let port = listener
        .local_addr()
        .map_err(|e| Error::Bug(e.to_string()))?
        .port();
    let on_complete = config.on_complete.take();
    let node = node_id(config.seed, port);

    let boot = tokio::select! {
        biased;
        () = token.cancelled() => return Ok(Outcome::Interrupted),
        b = download::bootstrap(&config, port, &node) => b?,
    };
    let manifest = Arc::new(boot.manifest);
    let (store, have) = open_store(&config, &manifest).await?;
    let count = manifest.chunk_count();
    if have.count() > 0 {
        info!(
            "resuming: {}/{} verified chunks already in {}",
            have.count(),
            count,
            config.dir.display()
        );
    }
    let now = Instant::now();
    let swarm = Arc::new(Swarm {
        manifest_json: Bytes::from(
            serde_json::to_vec(&*manifest).map_err(|e| Error::Bug(e.to_string()))?,
        ),
        manifest: manifest.clone(),
        store,
        events: config.events.clone(),
        corrupt_left: std::sync::atomic::AtomicU32::new(config.corrupt_sends),
        limiter: config
            .upload_limit
            .map(|r| crate::rate::RateLimiter::new(r, manifest.chunk_size)),
        port,
        node,
        choker: crate::choke::Choker::new(config.upload_slots),
        state: Mutex::new(State {
            have,
            pending: ChunkSet::new(count),
            assigned: ChunkSet::new(count),
            orphans: ChunkSet::new(count),
            suspect: ChunkSet::new(count),
            all: ChunkSet::full(count),
            neighbour_has: None,
            neighbour_recent: Vec::new(),
            spare: ChunkSet::new(count),
            spare_cancel: Vec::new(),
            owner_connected: false,
            last_progress: now,
            fetched: 0,
            downstream_open: 0,
            downstream_incomplete: 0,
            incomplete_downstream_left: None,
            downstream_done: false,
            downstream_last_seen: now,
            told_neighbour: false,
            owner_error: None,
            neighbour_error: None,
            neighbour_down_since: Some(now),
            fatal: None,
        }),
        changed: watch::Sender::new(()),
        summary_dirty: Notify::new(),
        recent: Mutex::new(RecentChunks::default()),
        config,
    });

    let tasks = TaskTracker::new();
    let child = token.child_token();
    let _cancel_on_drop = child.clone().drop_guard();
    tasks.spawn(upload::serve(listener, swarm.clone(), child.clone()));
    if !swarm.store.is_in_memory() {
        tasks.spawn(summary_writer(swarm.clone(), child.clone()));
    }
    let rechoker = crate::choke::spawn_rechoker(&swarm.choker);
    let _stop_rechoker = AbortOnDrop(rechoker);
    if let Some(get) = swarm.config.get.clone() {
        tasks.spawn(multi::run(
            swarm.clone(),
            boot.owner_conn,
            get,
            child.clone(),
        ));
    } else {
        let owner_span = info_span!("owner", addr = %swarm.config.owner);
        tasks.spawn(tracing::Instrument::instrument(
            download::run_source(
                swarm.clone(),
                SourceKind::Owner,
                boot.owner_conn,
                child.clone(),
            ),
            owner_span,
        ));
        let nb_span = info_span!("neighbour", addr = %swarm.config.neighbour);
        tasks.spawn(tracing::Instrument::instrument(
            download::run_source(swarm.clone(), SourceKind::Neighbour, None, child.clone()),
            nb_span.clone(),
        ));
        tasks.spawn(tracing::Instrument::instrument(
            multi::fallback(swarm.clone(), child.clone()),
            nb_span,
        ));
    }

    let completion = match wait_complete(&swarm, &token, started).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            finish(&swarm, &tasks, &child).await;
            return Ok(Outcome::Interrupted);
        }
        Err(e) => {
            // Keep what was verified: the summary names it for the next run.
            finish(&swarm, &tasks, &child).await;
            return Err(e);
        }
    };
    if let Some(tx) = on_complete {
        let _ = tx.send(completion.clone());
    }
    let interrupted = if swarm.config.get.is_some() {
        !wait_linger(&swarm, &token).await
    } else {
        let interrupted = !wait_downstream(&swarm, &token).await;
        if !interrupted {
            wait_told_neighbour(&swarm).await;
        }
        interrupted
    };
    finish(&swarm, &tasks, &child).await;
    Ok(if interrupted {
        Outcome::Interrupted
    } else {
        Outcome::Complete(completion)
    })
}

/// Waits for every chunk, then reassembles and verifies; `None` if cancelled first.
async fn wait_complete(
    swarm: &Arc<Swarm>,
    token: &CancellationToken,
    started: Instant,
) -> Result<Option<Completion>> {
    let mut changed = swarm.changed.subscribe();
    let timeout = swarm.config.timeout;
    loop {
        if swarm.is_complete() {
            match assemble::finish(swarm).await? {
                Some(path) => {
                    let fetched = swarm.state().fetched;
                    let elapsed = started.elapsed();
                    info!(
                        "complete: {} verified ({} bytes, blake3 {}), {fetched} chunks fetched in {:.2}s",
                        path.display(),
                        swarm.manifest.size,
                        swarm.manifest.hash.short(),
                        elapsed.as_secs_f64()
                    );
                    return Ok(Some(Completion {
                        path,
                        manifest: swarm.manifest.clone(),
                        fetched,
                        elapsed,
                    }));
                }
                None => continue, // bad chunks were dropped; fetch them again
            }
        }
        {
            let st = swarm.state();
            if let Some(why) = &st.fatal {
                return Err(Error::Fatal(why.clone()));
            }
            if st.last_progress.elapsed() >= timeout {
                let owner = format!(
                    "owner {}: {}",
                    swarm.config.owner,
                    st.owner_error.as_deref().unwrap_or("connected"),
                );
                let detail = if swarm.config.get.is_some() {
                    owner
                } else {
                    format!(
                        "neighbour {}: {}; {owner}",
                        swarm.config.neighbour,
                        st.neighbour_error.as_deref().unwrap_or("connected"),
                    )
                };
                return Err(Error::Stalled {
                    secs: timeout.as_secs(),
                    have: st.have.count(),
                    total: st.have.capacity(),
                    detail,
                });
            }
        }
        tokio::select! {
            biased;
            () = token.cancelled() => return Ok(None),
            _ = changed.changed() => {}
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Serves until the upload neighbour is complete, `linger` passed, or no upload neighbour
/// was connected for [`NO_DOWNSTREAM_WAIT`]. Returns false if cancelled.
async fn wait_downstream(swarm: &Arc<Swarm>, token: &CancellationToken) -> bool {
    let mut changed = swarm.changed.subscribe();
    let deadline = swarm.config.linger.map(|l| tokio::time::Instant::now() + l);
    loop {
        {
            let st = swarm.state();
            // Complete, and no incomplete neighbour connected or just gone (reconnecting).
            let incomplete_gone = st.downstream_incomplete == 0
                && st
                    .incomplete_downstream_left
                    .is_none_or(|t| t.elapsed() >= DOWNSTREAM_GRACE);
            if st.downstream_done && incomplete_gone {
                info!("upload neighbour is complete; stopping");
                return true;
            }
            if st.downstream_open == 0 && st.downstream_last_seen.elapsed() >= NO_DOWNSTREAM_WAIT {
                info!(
                    "no upload neighbour for {}s; stopping",
                    NO_DOWNSTREAM_WAIT.as_secs()
                );
                return true;
            }
        }
        let linger = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = token.cancelled() => return false,
            _ = changed.changed() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = linger => {
                info!("linger time over; stopping");
                return true;
            }
        }
    }
}

/// A getter serves what it has until `linger` ends (forever without it). Returns false if
/// cancelled.
async fn wait_linger(swarm: &Arc<Swarm>, token: &CancellationToken) -> bool {
    let Some(linger) = swarm.config.linger else {
        info!("serving until Ctrl+C");
        token.cancelled().await;
        return false;
    };
    tokio::select! {
        biased;
        () = token.cancelled() => false,
        () = tokio::time::sleep(linger) => {
            info!("linger time over; stopping");
            true
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long a finished peer waits to tell its download neighbour that it is complete.
pub const TELL_NEIGHBOUR_WAIT: Duration = Duration::from_secs(2);

/// Gives the neighbour client a moment to tell the download neighbour that this peer is
/// complete (it may not even have connected yet), so that neighbour does not wait for it.
async fn wait_told_neighbour(swarm: &Arc<Swarm>) {
    let mut changed = swarm.changed.subscribe();
    let deadline = tokio::time::Instant::now() + TELL_NEIGHBOUR_WAIT;
    while !swarm.state().told_neighbour {
        tokio::select! {
            biased;
            _ = changed.changed() => {}
            () = tokio::time::sleep_until(deadline) => return,
        }
    }
}

async fn finish(swarm: &Arc<Swarm>, tasks: &TaskTracker, child: &CancellationToken) {
    child.cancel();
    tasks.close();
    if tokio::time::timeout(Duration::from_secs(2), tasks.wait())
        .await
        .is_err()
    {
        warn!("some tasks did not stop within 2s");
    }
    let have = swarm.have_snapshot();
    if let Ok(Err(e)) = storage::call(&swarm.store, move |s| s.write_summary(&have)).await {
        warn!("writing summary: {e}");
    }
}

/// Rewrites the summary file when `have` grew, at most every 200 ms.
async fn summary_writer(swarm: Arc<Swarm>, token: CancellationToken) {
    loop {
        tokio::select! {
            biased;
            () = token.cancelled() => return,
            () = swarm.summary_dirty.notified() => {}
        }
        tokio::select! {
            biased;
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            () = token.cancelled() => return, // finish() writes the last summary
        }
        let have = swarm.have_snapshot();
        match storage::call(&swarm.store, move |s| s.write_summary(&have)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("writing summary: {e}"),
            Err(e) => warn!("summary task: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With `--chunk-size 16MiB` a peer peaked at 533 MiB: 32 cached chunks. The cache is
    /// bounded in bytes (at least one chunk), and keeps 32 chunks at the default size.
    #[test]
    fn the_recent_chunk_cache_is_bounded_in_bytes() {
        let m = Manifest::for_tests(200);
        for (chunk_size, kept) in [(16 << 20, 1), (1 << 20, 8), (100 << 10, RECENT_CHUNKS)] {
            // One allocation shared by every chunk: the test itself stays small.
            let data = Bytes::from(vec![0u8; chunk_size]);
            let mut recent = RecentChunks::default();
            for n in 0..100 {
                recent.push(m.chunk_id(n).unwrap(), data.clone());
                assert!(recent.bytes <= RECENT_BYTES.max(chunk_size), "{chunk_size}");
                assert_eq!(recent.bytes, recent.chunks.len() * chunk_size);
            }
            assert_eq!(recent.chunks.len(), kept, "chunks of {chunk_size} bytes");
            assert!(
                recent.get(m.chunk_id(99).unwrap()).is_some(),
                "the newest is kept"
            );
            assert!(recent.get(m.chunk_id(0).unwrap()).is_none());
        }
    }

    #[test]
    fn the_complete_line_shows_a_hostile_name_escaped() {
        let mut m = Manifest::for_tests(5);
        m.name = "x\x1b[2J\u{202e}gpj.exe\nfake".into();
        let c = Completion {
            path: PathBuf::from("dir").join(&m.name),
            manifest: Arc::new(m),
            fetched: 5,
            elapsed: Duration::from_millis(1500),
        };
        let line = c.line();
        assert!(
            line.starts_with("complete: dir/x\\u{1b}[2J\\u{202e}gpj.exe\\u{a}fake (5 B, blake3 "),
            "{line}"
        );
        assert!(
            line.ends_with(") verified in 1.500s, 5 chunks fetched"),
            "{line}"
        );
    }
}
