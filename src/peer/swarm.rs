//! What a peer's tasks share ([`Swarm`]): the manifest and store, the node's state split by
//! concern, the change signal, and the steps every download connection takes on a chunk
//! (pick, release, verify and store, announce, serve).
//!
//! Handlers change the state only through `Swarm`'s methods, which notify the change signal
//! for them where others wait on it.
//!
//! # Who owns what
//!
//! - [`Picker`](super::picker::Picker) (`picker.rs`): the chunk sets — have, pending, assigned, orphans, suspect,
//!   spare — and the choice of the next request.
//! - [`RingLink`](super::ring_link::RingLink) (`ring_link.rs`): the download neighbour's announced chunks, reachability,
//!   and whether it was told this peer is complete.
//! - [`OwnerLink`](super::owner_link::OwnerLink) (`owner_link.rs`): whether the owner connection is up, and why not.
//! - [`Downstream`] (`downstream.rs`): the upload neighbours, set by the upload server.
//!
//! The first three share one lock ([`Swarm::lock`]) as one [`State`] (`state.rs`, with the
//! steps that change several at once): a pick reads all of them at once. The downstream
//! part is read and written on its own, so it has its own.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{info, warn};

use super::config::{Config, Mode, SourceKind};
use super::downstream::{Downstream, Served};
use super::recent::Forwarding;
use super::state::State;
use crate::chunkset::{ChunkSet, Ranges};
use crate::connection::ConnWriter;
use crate::events::{EventKind, EventSink};
use crate::manifest::{ChunkId, Manifest};
use crate::net::Endpoint;
use crate::protocol::{MAX_RANGES_PER_MESSAGE, Message};
use crate::storage::{MemStore, Storage};
use crate::store::ChunkStore;
use crate::watch;
use crate::{Error, Result};

mod chunks;

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
    /// The newest verified chunks, and the faults left to inject.
    forwarding: Forwarding,
    /// The upload cap, shared by every upload connection.
    pub(super) limiter: Option<Arc<crate::rate::RateLimiter>>,
    /// Who of the getters connected to the upload server is served.
    pub(super) choker: Arc<crate::choke::Choker>,
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
        status.start(&have, &choker);
        if let Mode::Ring { neighbour: Some(n) } = &mode {
            status.set_via(format!("from {n}"));
        }
        let json = serde_json::to_vec(&*manifest).map_err(|e| Error::Bug(e.to_string()))?;
        Ok(Self {
            status,
            manifest_json: Bytes::from(json),
            manifest: manifest.clone(),
            store,
            events: config.events.clone(),
            forwarding: Forwarding::new(config.corrupt_sends),
            limiter: config.shared_limiter.clone().or_else(|| {
                config
                    .upload_limit
                    .map(|r| Arc::new(crate::rate::RateLimiter::new(r, manifest.chunk_size)))
            }),
            port,
            node,
            choker,
            state: Mutex::new(State::new(have, now)),
            downstream: Mutex::new(Downstream::new(now)),
            changed: watch::Sender::new(()),
            neighbour: watch::Sender::new(match &mode {
                Mode::Ring { neighbour } => neighbour.clone(),
                Mode::Getter(_) => None,
            }),
            publisher: watch::Sender::new(None),
            summary_dirty: Notify::new(),
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
        let text = |e: Option<&Endpoint>| e.map(ToString::to_string);
        if text(slot.borrow().as_ref()) != text(next.as_ref()) {
            slot.send_replace(next);
        }
    }

    /// The picker and the two links.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The upload neighbours.
    fn downstream(&self) -> MutexGuard<'_, Downstream> {
        self.downstream.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a complete peer served its upload neighbours enough to stop, and why; if not,
    /// when that may change with nothing happening (see [`Downstream::deadline`]).
    pub(super) fn served(&self) -> Result<Served, Option<Instant>> {
        let d = self.downstream();
        d.served().ok_or_else(|| d.deadline())
    }

    /// An upload neighbour connected (see [`Downstream::opened`]).
    pub(super) fn downstream_opened(&self) {
        self.downstream().opened();
    }

    /// A connected upload neighbour said it is complete.
    pub(super) fn downstream_complete(&self) {
        self.downstream().completed();
        self.notify();
    }

    /// A connected upload neighbour moved to another download neighbour.
    pub(super) fn downstream_moved(&self) {
        self.downstream().moved();
        self.notify();
    }

    /// An upload neighbour left (see [`Downstream::left`]).
    pub(super) fn downstream_left(&self, incomplete: bool) {
        self.downstream().left(incomplete);
        self.notify();
    }

    pub(super) fn notify(&self) {
        self.changed.send_replace(());
    }

    /// The source at `addr` was left for sending bad chunks: the directory connection
    /// reports it (see [`Swarm::take_bad_sources`]).
    pub(super) fn report_bad_source(&self, addr: String) {
        self.lock().report_bad_source(addr);
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

    /// Fails if this peer must stop: a fatal error, or no new chunk for `config.timeout`; else
    /// says when it stalls if no chunk arrives before (`None`: never).
    pub(super) fn check_progress(&self) -> Result<Option<Instant>> {
        let neighbour = matches!(self.mode, Mode::Ring { .. }).then(|| {
            let n = self.neighbour.borrow();
            n.as_ref()
                .map_or_else(|| "(none: alone in the ring)".into(), ToString::to_string)
        });
        let (timeout, owner) = (self.config.timeout, &self.config.owner);
        self.lock()
            .check_progress(timeout, owner, neighbour.as_deref())
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
        self.lock().pick(&self.manifest, kind, rng)
    }

    /// Releases chunks that were pending on a connection that ended.
    pub(super) fn release(&self, ids: impl IntoIterator<Item = ChunkId>) {
        let mut st = self.lock();
        ids.into_iter().for_each(|id| st.picker.release(id));
        drop(st);
        self.notify();
    }

    /// A session with the owner (or a publisher) began: it handed out `assigned`, and holds
    /// every chunk.
    pub(super) fn owner_connected(&self, assigned: &ChunkSet) {
        let mut st = self.lock();
        st.picker.assign(assigned);
        st.owner.mark_connected();
        drop(st);
        self.notify();
    }

    /// The owner's latest list of chunks no ring member was handed.
    pub(super) fn set_orphans(&self, orphans: ChunkSet) {
        self.lock().picker.set_orphans(orphans);
        self.notify();
    }

    /// The requests to cancel at the owner (the neighbour announced their chunks), once.
    pub(super) fn take_owner_cancel(&self) -> Vec<u32> {
        self.lock().picker.take_owner_cancel()
    }

    /// The download neighbour announced `chunks`, on the connection `label`.
    ///
    /// # Errors
    ///
    /// A chunk id out of range.
    pub(super) fn neighbour_announced(&self, chunks: &Ranges, label: &str) -> Result<()> {
        let mut st = self.lock();
        let added = st.ring.announced(&self.manifest, chunks)?;
        st.picker.neighbour_announced(&added);
        drop(st);
        let n = u32::try_from(added.len()).unwrap_or(u32::MAX);
        self.events.id_list(EventKind::IdListReceived, n, label);
        self.notify();
        Ok(())
    }

    /// The download neighbour announced `ids` but did not send them: they are asked of the
    /// owner. (Releasing their requests notifies.)
    pub(super) fn suspect(&self, ids: &[ChunkId]) {
        let mut st = self.lock();
        ids.iter().for_each(|id| st.picker.suspect(*id));
    }

    /// Since when the download neighbour has been unreachable (`None`: connected).
    pub(super) fn neighbour_down_since(&self) -> Option<Instant> {
        self.lock().ring.down_since()
    }

    /// The download neighbour has been told this peer is complete.
    pub(super) fn told_neighbour_complete(&self) {
        self.lock().ring.mark_told_complete();
        self.notify();
    }

    /// Whether the download neighbour has been told this peer is complete.
    pub(super) fn neighbour_told_complete(&self) -> bool {
        self.lock().ring.told_complete()
    }

    /// The whole-file check found `bad` chunks bad on disk: they are fetched again.
    pub(super) fn drop_bad(&self, bad: &[ChunkId]) {
        self.lock().picker.drop_bad(bad);
        self.notify();
    }

    /// Whether the owner (or directory) connection is up now.
    pub(super) fn owner_link_up(&self) -> bool {
        self.lock().owner.connected()
    }

    /// Records that the connection to a source of `kind` came up (`e` is `None`) or went
    /// down, and why.
    pub(super) fn set_link_error(&self, kind: SourceKind, e: Option<String>) {
        let count = self.manifest.chunk_count();
        if self.lock().set_link_error(kind, e, count) {
            self.notify();
        }
    }

    /// Sends `have` for the chunks this peer gained since `told` on the connection `label`
    /// (split to keep each header small), and records them as told; whether it sent any.
    pub(super) async fn announce(
        &self,
        writer: &mut ConnWriter,
        label: &str,
        told: &mut ChunkSet,
    ) -> Result<bool> {
        let have = self.have_snapshot();
        let new = have.difference(told);
        if new.is_empty() {
            return Ok(false);
        }
        let ranges = Ranges::from_sorted(new.iter().copied());
        for part in ranges.0.chunks(MAX_RANGES_PER_MESSAGE) {
            let chunks = Ranges(part.to_vec());
            writer.send(Message::Have { chunks }).await?;
        }
        let n = u32::try_from(new.len()).unwrap_or(u32::MAX);
        self.events.id_list(EventKind::IdListSent, n, label);
        *told = have;
        Ok(true)
    }

    /// A chunk to upload: from the recent chunks, or read from the store.
    pub(super) async fn chunk_to_send(&self, id: ChunkId) -> Result<Bytes> {
        let data = match self.forwarding.get(id) {
            Some(d) => d,
            // In place, like `accept_chunk`: the chunk was written lately, so it is in the
            // page cache.
            None => self.store.read_chunk(id)?,
        };
        Ok(self.forwarding.maybe_corrupt(id, data))
    }
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
