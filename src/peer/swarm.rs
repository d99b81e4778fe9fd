//! What a peer's tasks share ([`Swarm`]): the manifest and store, the node's state split by
//! concern, the change signal, and the steps every download connection takes on a chunk
//! (pick, release, verify and store, serve).
//!
//! # Who owns what
//!
//! - [`Picker`] (`picker.rs`): the chunk sets — have, pending, assigned, orphans, suspect,
//!   spare — and the choice of the next request.
//! - [`RingLink`] (`ring_link.rs`): the download neighbour's announced chunks, reachability,
//!   and whether it was told this peer is complete.
//! - [`OwnerLink`] (`owner_link.rs`): whether the owner connection is up, and why not.
//! - [`Downstream`] (`downstream.rs`): the upload neighbours, set by the upload server.
//!
//! The first three share one lock ([`Swarm::lock`]): a pick reads all of them at once. The
//! downstream part is read and written on its own, so it has its own.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{info, warn};

use super::config::{Config, MAX_BAD_CHUNKS, Mode, SourceKind};
use super::downstream::Downstream;
use super::owner_link::OwnerLink;
use super::picker::Picker;
use super::recent::RecentChunks;
use super::ring_link::RingLink;
use crate::chunkset::ChunkSet;
use crate::events::{EventKind, EventSink};
use crate::manifest::{ChunkId, Manifest};
use crate::net::Endpoint;
use crate::storage::{MemStore, Storage};
use crate::store::{ChunkStore, StoreError};
use crate::watch;
use crate::{Error, Result};

/// The node's state behind [`Swarm::lock`].
#[derive(Debug)]
pub(super) struct State {
    pub(super) picker: Picker,
    pub(super) ring: RingLink,
    pub(super) owner: OwnerLink,
    /// Why this peer must stop: an error no retry can mend (a full disk, say).
    pub(super) fatal: Option<String>,
    /// Sources left for sending bad chunks, to be reported to the directory (at most
    /// [`MAX_BAD_REPORTS`] waiting).
    pub(super) bad_sources: Vec<String>,
}

/// Whether a peer may go on ([`Swarm::health`]): what stops it, when a chunk last arrived,
/// why its links are down (`None`: connected), and chunks held of how many.
#[derive(Debug)]
pub(super) struct Health {
    pub(super) fatal: Option<String>,
    pub(super) last_progress: Instant,
    pub(super) owner_error: Option<String>,
    pub(super) ring_error: Option<String>,
    pub(super) held: (u32, u32),
}

/// Bad-source reports waiting for the directory connection, at most.
const MAX_BAD_REPORTS: usize = 16;

/// What a peer's tasks share.
#[derive(Debug)]
pub(crate) struct Swarm {
    pub(super) manifest: Arc<Manifest>,
    pub(super) manifest_json: Bytes,
    pub(super) store: Arc<dyn Storage>,
    pub(super) events: Arc<EventSink>,
    pub(super) config: Config,
    /// Ring member or getter, from `config`.
    pub(super) mode: Mode,
    pub(super) port: u16,
    /// This node's id, said in every `hello` (see `bootstrap::node_id`).
    pub(super) node: String,
    state: Mutex<State>,
    downstream: Mutex<Downstream>,
    /// Bumped on every change pickers and announcers care about.
    pub(super) changed: watch::Sender<()>,
    /// A ring peer's download neighbour now (`None`: none, a joiner alone in its ring, or
    /// a getter).
    pub(super) neighbour: watch::Sender<Option<Endpoint>>,
    /// The publisher a directory named for a published file's ring: serves this peer's
    /// chunks as an owner would (`None`: the owner does, or no one).
    pub(super) publisher: watch::Sender<Option<Endpoint>>,
    /// Signalled when `have` grew, for the summary writer.
    pub(super) summary_dirty: Notify,
    /// The newest verified chunks (see `remember`).
    recent: Mutex<RecentChunks>,
    /// The upload cap, shared by every upload connection.
    pub(super) limiter: Option<crate::rate::RateLimiter>,
    /// Who of the getters connected to the upload server is served.
    pub(super) choker: Arc<crate::choke::Choker>,
    /// Faults left to inject.
    corrupt_left: AtomicU32,
    /// What a progress line shows.
    pub(super) status: Arc<super::status::Status>,
}

impl Swarm {
    /// Opens the store of `manifest` (resuming what it holds) and sets up the shared state.
    ///
    /// # Errors
    ///
    /// A store that cannot be opened.
    pub(super) async fn open(
        config: Config,
        mode: Mode,
        manifest: Manifest,
        port: u16,
        node: String,
    ) -> Result<Self> {
        let manifest = Arc::new(manifest);
        let (store, have) = open_store(&config, &manifest).await?;
        if have.count() > 0 {
            info!(
                "resuming: {}/{} verified chunks already in {}",
                have.count(),
                manifest.chunk_count(),
                config.dir.display()
            );
        }
        let now = Instant::now();
        let status = config.status.clone().unwrap_or_default();
        let choker = crate::choke::Choker::new(config.upload_slots);
        status.start(have.count(), manifest.chunk_count(), &choker);
        if let Mode::Ring { neighbour: Some(n) } = &mode {
            status.set_via(format!("from {n}"));
        }
        Ok(Self {
            status,
            manifest_json: Bytes::from(
                serde_json::to_vec(&*manifest).map_err(|e| Error::Bug(e.to_string()))?,
            ),
            manifest: manifest.clone(),
            store,
            events: config.events.clone(),
            corrupt_left: AtomicU32::new(config.corrupt_sends),
            limiter: config
                .upload_limit
                .map(|r| crate::rate::RateLimiter::new(r, manifest.chunk_size)),
            port,
            node,
            choker,
            state: Mutex::new(State {
                picker: Picker::new(have, now),
                ring: RingLink::new(now),
                owner: OwnerLink::default(),
                fatal: None,
                bad_sources: Vec::new(),
            }),
            downstream: Mutex::new(Downstream::new(now)),
            changed: watch::Sender::new(()),
            neighbour: watch::Sender::new(match &mode {
                Mode::Ring { neighbour } => neighbour.clone(),
                Mode::Getter(_) => None,
            }),
            publisher: watch::Sender::new(None),
            summary_dirty: Notify::new(),
            recent: Mutex::new(RecentChunks::default()),
            mode,
            config,
        })
    }

    /// A joined ring peer's new download neighbour, as the owner said it (`None`: alone in
    /// the ring). An address that is not `IP:PORT` is ignored; a peer with a neighbour of
    /// its own (`peer OWNER PORT NEIGHBOUR`) keeps it.
    pub(super) fn set_neighbour(&self, addr: Option<&str>) {
        if matches!(self.mode, Mode::Ring { neighbour: None }) {
            self.set_endpoint(&self.neighbour, "neighbour", addr);
        }
    }

    /// A ring peer's publisher for a published file, as the directory said it (`None`: the
    /// directory serves the chunks itself); checked as [`Swarm::set_neighbour`] checks.
    pub(super) fn set_publisher(&self, addr: Option<&str>) {
        if matches!(self.mode, Mode::Ring { .. }) {
            self.set_endpoint(&self.publisher, "publisher", addr);
        }
    }

    /// Sets `slot` to the address `addr` the owner named as `what`, if it is `IP:PORT` and
    /// reachable the way the owner is; changed only when different.
    fn set_endpoint(&self, slot: &watch::Sender<Option<Endpoint>>, what: &str, addr: Option<&str>) {
        let next = match addr {
            None => None,
            Some(a) if a.parse::<std::net::SocketAddr>().is_err() => {
                warn!("the owner named a {what} that is not IP:PORT: {a:?}; ignored");
                return;
            }
            Some(a) => match self.config.owner.sibling(a) {
                Ok(e) => Some(e),
                Err(e) => {
                    warn!("the owner named {what} {a:?}: {e}; ignored");
                    return;
                }
            },
        };
        let same = slot.borrow().as_ref().map(ToString::to_string)
            == next.as_ref().map(ToString::to_string);
        if !same {
            slot.send_replace(next);
        }
    }

    /// The picker and the two links.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The upload neighbours.
    pub(super) fn downstream(&self) -> MutexGuard<'_, Downstream> {
        self.downstream.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The upload neighbours, by the name the upload server (`upload.rs`) still uses.
    pub(super) fn state(&self) -> MutexGuard<'_, Downstream> {
        self.downstream()
    }

    pub(super) fn notify(&self) {
        self.changed.send_replace(());
    }

    /// The source at `addr` was left for sending bad chunks: the directory connection
    /// reports it (see [`Swarm::take_bad_sources`]).
    pub(super) fn report_bad_source(&self, addr: String) {
        let mut st = self.lock();
        if st.bad_sources.len() < MAX_BAD_REPORTS && !st.bad_sources.contains(&addr) {
            st.bad_sources.push(addr);
        }
        drop(st);
        self.notify();
    }

    /// The bad sources not yet reported.
    pub(super) fn take_bad_sources(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().bad_sources)
    }

    pub(super) fn have_snapshot(&self) -> ChunkSet {
        self.lock().picker.have().clone()
    }

    pub(super) fn is_complete(&self) -> bool {
        self.lock().picker.have().is_full()
    }

    pub(super) fn holds(&self, id: ChunkId) -> bool {
        self.lock().picker.have().contains(id)
    }

    /// A random stream for one connection's choices: from `config.seed` mixed with `salt`
    /// (so a seeded run is the same every time), else from the OS.
    pub(super) fn rng(&self, salt: u64) -> StdRng {
        match self.config.seed {
            Some(seed) => StdRng::seed_from_u64(seed ^ salt),
            None => StdRng::from_os_rng(),
        }
    }

    /// Whether the download neighbour was told this peer is complete.
    pub(super) fn told_complete(&self) -> bool {
        self.lock().ring.told_complete()
    }

    /// The download neighbour was told this peer is complete.
    pub(super) fn mark_told_complete(&self) {
        self.lock().ring.mark_told_complete();
        self.notify();
    }

    /// Since when the download neighbour has been unreachable (`None`: connected).
    pub(super) fn neighbour_down_since(&self) -> Option<Instant> {
        self.lock().ring.down_since()
    }

    /// Whether this peer may go on, read at one moment (see [`Health`]).
    pub(super) fn health(&self) -> Health {
        let st = self.lock();
        Health {
            fatal: st.fatal.clone(),
            last_progress: st.picker.last_progress(),
            owner_error: st.owner.error().map(str::to_string),
            ring_error: st.ring.error().map(str::to_string),
            held: (st.picker.have().count(), st.picker.have().capacity()),
        }
    }

    /// Chunks stored in this run.
    pub(super) fn fetched(&self) -> u32 {
        self.lock().picker.fetched()
    }

    /// Picks a chunk to request from a source of `kind`, and marks it pending; true with it
    /// for a spare request to the owner (see [`super::config::SPARE_IN_FLIGHT`]).
    pub(super) fn pick(
        &self,
        kind: SourceKind,
        rng: &mut impl rand::Rng,
    ) -> Option<(ChunkId, bool)> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let owner_connected = st.owner.connected();
        let (c, spare) = st.picker.pick(kind, &mut st.ring, owner_connected, rng)?;
        let id = self.manifest.chunk_id(c).ok()?;
        st.picker.requested(id, kind, spare);
        Some((id, spare))
    }

    /// Releases chunks that were pending on a connection that ended.
    pub(super) fn release(&self, ids: impl IntoIterator<Item = ChunkId>) {
        let mut st = self.lock();
        for id in ids {
            st.picker.release(id);
        }
        drop(st);
        self.notify();
    }

    /// Records that the connection to a source of `kind` came up (`e` is `None`) or went
    /// down, and why.
    pub(super) fn set_link_error(&self, kind: SourceKind, e: Option<String>) {
        let mut st = self.lock();
        match kind {
            SourceKind::Owner | SourceKind::Publisher => st.owner.set_error(e),
            SourceKind::Neighbour => st.ring.set_error(e, self.manifest.chunk_count()),
            // It serves no chunks: nothing waits on it.
            SourceKind::Directory => return,
        }
        drop(st);
        self.notify();
    }

    /// Verifies `data` as chunk `id` and stores it; false when another connection stored it
    /// first.
    ///
    /// # Errors
    ///
    /// A hash or length mismatch (the chunk is released and marked suspect), or a store error.
    pub(super) async fn accept_chunk(&self, id: ChunkId, data: Bytes) -> Result<bool> {
        if !self.lock().picker.claim(id) {
            // Held already, or arriving on another connection right now: only one copy is
            // stored and reported received (the one storing it releases its request).
            return Ok(false);
        }
        // Done in place, not on the blocking pool: hashing 100 KiB and copying it into the
        // page cache take tens of microseconds, less than handing the work to another thread
        // and back (measured: a third of the ring's CPU went to those hand-offs).
        let res = crate::storage::verify(self.store.manifest(), id, &data)
            .and_then(|()| self.store.write_chunk(id, &data));
        // An in-memory store reads for nothing: no cache beside it.
        if res.is_ok() && !self.store.is_in_memory() {
            self.remember(id, data);
        }
        let mut st = self.lock();
        st.picker.unclaim(id);
        st.picker.release(id);
        if let Err(e) = res {
            if !is_bad_chunk(&e) && st.fatal.is_none() {
                // Not the chunk's fault (the disk is full, say): fetching again cannot help.
                st.fatal = Some(format!(
                    "cannot store chunk {id}: {e}; the {} verified chunks so far are kept in {}",
                    st.picker.have().count(),
                    self.config.dir.display()
                ));
            }
            st.picker.suspect(id);
            drop(st);
            self.notify();
            return Err(e.into());
        }
        st.picker.stored(id);
        drop(st);
        self.summary_dirty.notify_one();
        self.notify();
        Ok(true)
    }

    /// Accepts chunk `id` from the source `label` and reports it received; a bad chunk is
    /// counted in `bad`, this connection's tally.
    ///
    /// # Errors
    ///
    /// [`Error::BadChunks`] at the [`MAX_BAD_CHUNKS`]th bad chunk, or a store error.
    pub(super) async fn take_chunk(
        &self,
        id: ChunkId,
        data: Bytes,
        label: &str,
        bad: &mut u32,
    ) -> Result<()> {
        let (chunk, bytes) = (id.get(), data.len() as u64);
        match self.accept_chunk(id, data).await {
            Ok(true) => {
                self.status.stored(bytes);
                self.events
                    .chunk(EventKind::ChunkReceived, chunk, label, Some(bytes));
            }
            Ok(false) => {}
            Err(Error::Store(e)) if is_bad_chunk(&e) => {
                *bad += 1;
                self.status.refused();
                warn!(from = %label, "refused chunk {chunk}: {e}; fetching it again");
                if *bad >= MAX_BAD_CHUNKS {
                    return Err(Error::BadChunks(format!(
                        "{bad} bad chunks from {label}; disconnecting"
                    )));
                }
            }
            Err(e) => return Err(e),
        }
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
    pub(super) async fn chunk_to_send(&self, id: ChunkId) -> Result<Bytes> {
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
        if self.corrupt_left.load(Ordering::Relaxed) > 0
            && self.corrupt_left.fetch_sub(1, Ordering::Relaxed) > 0
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

/// Whether a store error is the chunk's fault (fetching it again may help).
pub(super) fn is_bad_chunk(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::ChunkHashMismatch { .. } | StoreError::ChunkLength { .. }
    )
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
