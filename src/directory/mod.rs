//! The directory the file owner keeps: which files it shares (by a small numeric id and by
//! content hash) and which peers hold which of their chunks.
//!
//! Every peer that connects to the owner with a listening port (`hello` with `port`) is a
//! *member* for as long as that connection lives: its `have` messages add the chunks it gains,
//! and any message (a keep-alive included) counts as a heartbeat. A member is dropped when its
//! connection closes (the peer left or died), when it stays silent longer than the TTL (the
//! owner then closes the connection), or when a getter reports it unreachable and the owner
//! cannot reach it either. Nothing here is saved: a restarted owner learns the swarm again from
//! the peers, which reconnect and say `hello` with everything they hold.
//!
//! File ids are 1, 2, … in the order of the shared files' names, so they stay the same across
//! restarts of the owner as long as it shares the same files.
//!
//! The answers built from it (listing, locations, members), each bounded, are in `answer`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::chunkset::ChunkSet;
use crate::events::{Clock, wall_clock};
use crate::hash::Hash;
use crate::manifest::Manifest;
use crate::protocol::Role;

mod answer;
pub mod client;
pub mod view;

pub use answer::{FileInfo, Listing, Locations, MAX_SOURCE_RANGES, PeerInfo, SourceInfo};

/// The TTL when none is given: a member silent this long is dropped.
pub const DEFAULT_PEER_TTL: Duration = Duration::from_secs(45);

/// What a member registration is keyed by.
pub type MemberId = u64;

#[derive(Debug)]
struct Member {
    addr: SocketAddr,
    node: Option<String>,
    file: usize,
    role: Role,
    have: ChunkSet,
    /// When it registered: seconds since the Unix epoch, on the directory's clock.
    joined: f64,
    /// When it first held every chunk, on the same clock.
    completed: Option<f64>,
    last_seen: Instant,
    /// The members of its swarm that left it for sending bad chunks.
    bad_reports: BTreeSet<MemberId>,
    /// A publisher enough of them reported: no longer named to rings nor listed as a source.
    demoted: bool,
}

/// Members of a file's swarm that must report its publisher's bad chunks, at most, before
/// the publisher is demoted (fewer when the swarm has fewer members): one lying member
/// cannot move a ring off an honest publisher.
pub const BAD_REPORTS_TO_DEMOTE: usize = 2;

/// What a report of bad chunks did (see [`Directory::report_bad`]).
#[derive(Debug, PartialEq, Eq)]
pub struct BadReport {
    /// The file's name.
    pub file: String,
    /// Distinct members that reported the source, and how many demote it.
    pub reports: usize,
    pub needed: usize,
    /// The source is demoted (now or before).
    pub demoted: bool,
    /// Publishers of the file still trusted.
    pub publishers_left: usize,
}

/// What dropping members did.
#[derive(Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Left {
    /// Whether any was registered.
    pub was_member: bool,
    /// The indices of the published files freed: their last member left. The caller drops
    /// what it keeps for them.
    pub freed: Vec<usize>,
}

impl Inner {
    /// Adds `manifest` as a new file, or finds the file of the same name and content.
    fn insert_file(&mut self, manifest: Arc<Manifest>, held: bool) -> usize {
        let key = (manifest.name.clone(), manifest.hash);
        if let Some(&index) = self.by_content.get(&key) {
            return index;
        }
        let index = self.next_file;
        self.next_file += 1;
        self.by_name
            .entry(manifest.name.clone())
            .or_default()
            .insert(index);
        self.by_content.insert(key, index);
        self.files.insert(index, Entry { manifest, held });
        index
    }

    /// Frees the file at `index` if only publishers held it and no member is left in its
    /// swarm: its manifest, its name and its content key. Its index, when freed.
    fn free_if_unused(&mut self, index: usize) -> Option<usize> {
        let entry = self.files.get(&index)?;
        if entry.held || self.by_file.contains_key(&index) {
            return None;
        }
        let entry = self.files.remove(&index)?;
        let name = entry.manifest.name.clone();
        self.by_content.remove(&(name.clone(), entry.manifest.hash));
        if let Some(ids) = self.by_name.get_mut(&name) {
            ids.remove(&index);
            if ids.is_empty() {
                self.by_name.remove(&name);
            }
        }
        if self.gone.len() >= MAX_GONE {
            self.gone.pop_front();
        }
        self.gone.push_back((name, entry.manifest.hash));
        Some(index)
    }

    /// Takes member `id` out of the members and their indices.
    fn remove_member(&mut self, id: MemberId) -> Option<Member> {
        let m = self.members.remove(&id)?;
        self.by_addr.remove(&(m.addr, m.file));
        if let Some(ids) = self.by_file.get_mut(&m.file) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_file.remove(&m.file);
            }
        }
        Some(m)
    }

    /// The members serving on `addr`, whatever their file.
    fn members_at(&self, addr: SocketAddr) -> Vec<MemberId> {
        self.by_addr
            .range((addr, 0)..=(addr, usize::MAX))
            .map(|(_, &id)| id)
            .collect()
    }

    /// The members of file `index`, in registration order.
    fn members_of(&self, index: usize) -> impl Iterator<Item = &Member> {
        self.by_file
            .get(&index)
            .into_iter()
            .flatten()
            .filter_map(|id| self.members.get(id))
    }

    /// The publishers of file `index`, in registration order.
    fn publishers_of(&self, index: usize) -> impl Iterator<Item = &Member> {
        self.members_of(index).filter(|m| m.role == Role::Publisher)
    }

    /// [`Directory::neighbour_of`], under the lock.
    fn ring_neighbour(&self, id: MemberId) -> Option<SocketAddr> {
        let &(file, at) = self.ring_pos.get(&id)?;
        let ring = self.rings.get(&file)?;
        let next = ring[(at + 1) % ring.len()];
        (next != id)
            .then(|| self.members.get(&next).map(|m| m.addr))
            .flatten()
    }
}

/// A file the directory lists.
#[derive(Debug)]
struct Entry {
    manifest: Arc<Manifest>,
    /// Whether the node holds it itself (never freed), rather than only its publishers.
    held: bool,
}

#[derive(Debug, Default)]
struct Inner {
    /// The files, by index (id − 1): the owner's own, then published ones as they come. A
    /// published file is freed when its last member (publisher or downloader) leaves; its
    /// index is never given to another file.
    files: BTreeMap<usize, Entry>,
    /// The index the next new file gets.
    next_file: usize,
    /// Each file's index by its name and content.
    by_content: HashMap<(String, Hash), usize>,
    /// The files of each name, in index order.
    by_name: HashMap<String, BTreeSet<usize>>,
    /// Recently freed files (name and content), newest last, at most [`MAX_GONE`]: so a
    /// client asking for one is told its publishers left, not that it never existed.
    gone: VecDeque<(String, Hash)>,
    next: MemberId,
    members: BTreeMap<MemberId, Member>,
    /// The members of each file, in registration order.
    by_file: BTreeMap<usize, BTreeSet<MemberId>>,
    /// Each member by the address it serves on and its file.
    by_addr: BTreeMap<(SocketAddr, usize), MemberId>,
    /// The self-assembled rings (`peer join`), by file: members in join order, each
    /// downloading from the next, the last from the first.
    rings: BTreeMap<usize, Vec<MemberId>>,
    /// Where each ring member is: its file's ring, and its place in it.
    ring_pos: BTreeMap<MemberId, (usize, usize)>,
    /// When each address was last probed after a `source_lost` report.
    probed: BTreeMap<SocketAddr, Instant>,
    /// Probes under way.
    probing: usize,
    /// Members that left (downloaders only, not publishers), newest last, at most
    /// [`MAX_DEPARTED`]: a view of the swarm keeps them, with their completion times.
    departed: std::collections::VecDeque<view::Departed>,
    /// The swarm's latest comings and goings, newest last, at most [`MAX_SWARM_EVENTS`].
    swarm_events: std::collections::VecDeque<view::SwarmEvent>,
}

/// Departed members kept for a view of the swarm.
pub const MAX_DEPARTED: usize = 10_000;
/// Freed files remembered by name and content, for a clear refusal.
pub const MAX_GONE: usize = 1024;
/// Swarm events (joined, completed, left) kept for a view of the swarm.
pub const MAX_SWARM_EVENTS: usize = 100;

/// Probes of reported sources under way at once, at most.
pub const MAX_PROBES: usize = 4;
/// The least time between two probes of one address.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);

/// The owner's directory. Cheap to share (`Arc`); all methods lock briefly.
pub struct Directory {
    owner_addr: SocketAddr,
    ttl: Duration,
    inner: Mutex<Inner>,
    /// Registration timestamps: the wall clock, or a simulation's virtual one.
    clock: Clock,
    /// Bumped whenever a ring gains or loses a member, or a publisher comes or goes
    /// (sessions then look up their member's download neighbour, and publisher, again).
    ring_changed: crate::watch::Sender<()>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("files", &self.file_count())
            .field("owner_addr", &self.owner_addr)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Directory {
    /// A directory of `files` (in id order: id 1 first), served by an owner listening on
    /// `owner_addr`, dropping members silent for `ttl`.
    pub fn new(files: Vec<Arc<Manifest>>, owner_addr: SocketAddr, ttl: Duration) -> Self {
        let mut inner = Inner::default();
        for manifest in files {
            inner.insert_file(manifest, true);
        }
        Self {
            owner_addr,
            ttl,
            inner: Mutex::new(inner),
            clock: Arc::new(wall_clock),
            ring_changed: crate::watch::Sender::new(()),
        }
    }

    /// Stamps registrations with `clock` (seconds since the Unix epoch) instead of the wall
    /// clock: an owner's directory uses its events' clock, virtual in a simulation.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long a member may stay silent.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The number of files the directory holds (listed or not: a published file whose
    /// publishers left is held until its last member leaves too).
    pub fn file_count(&self) -> usize {
        self.inner().files.len()
    }

    /// The file named `key`, or else the file whose BLAKE3 hash is `key` (64 hex digits, as
    /// a ticket gives it), or else the file with numeric id `key`: its index.
    pub fn find(&self, key: &str) -> Option<usize> {
        let inner = self.inner();
        if let Some(&i) = inner.by_name.get(key).and_then(|ids| ids.first()) {
            return Some(i);
        }
        if let Ok(hash) = key.parse::<Hash>()
            && let Some((&i, _)) = inner.files.iter().find(|(_, e)| e.manifest.hash == hash)
        {
            return Some(i);
        }
        match key.trim().parse::<usize>() {
            Ok(id) if id >= 1 && inner.files.contains_key(&(id - 1)) => Some(id - 1),
            _ => None,
        }
    }

    /// When `key` names or hashes a published file the directory freed after its last
    /// publisher and member left: its name.
    pub fn gone(&self, key: &str) -> Option<String> {
        let hash = key.parse::<Hash>().ok();
        self.inner()
            .gone
            .iter()
            .rev()
            .find(|(name, h)| name == key || Some(*h) == hash)
            .map(|(name, _)| name.clone())
    }

    /// When several offered files are named `key` (two publishers' different contents): a
    /// message saying how to choose one.
    pub fn ambiguous(&self, key: &str) -> Option<String> {
        let inner = self.inner();
        let ids: Vec<String> = inner
            .by_name
            .get(key)
            .into_iter()
            .flatten()
            .filter(|&&f| inner.offered(f))
            .map(|f| (f + 1).to_string())
            .collect();
        (ids.len() > 1).then(|| {
            format!(
                "{} files are named {key:?} (ids {}): give its id, or its ticket",
                ids.len(),
                ids.join(", ")
            )
        })
    }

    /// The index of the file with this manifest's name and content.
    pub fn index_of(&self, manifest: &Manifest) -> Option<usize> {
        self.inner()
            .by_content
            .get(&(manifest.name.clone(), manifest.hash))
            .copied()
    }

    /// The manifest of the file at `index`.
    pub fn manifest(&self, index: usize) -> Option<Arc<Manifest>> {
        self.inner().files.get(&index).map(|e| e.manifest.clone())
    }

    /// Whether the owner holds the file at `index` itself (else only its publishers do).
    pub fn is_own(&self, index: usize) -> bool {
        self.inner().files.get(&index).is_some_and(|e| e.held)
    }

    /// How many members publish the file at `index`.
    pub fn publishers(&self, index: usize) -> usize {
        let inner = self.inner();
        inner.publishers_of(index).count()
    }

    /// The earliest registered publisher of the file at `index` still listed and not
    /// demoted for bad chunks.
    pub fn publisher(&self, index: usize) -> Option<SocketAddr> {
        let inner = self.inner();
        inner
            .publishers_of(index)
            .find(|m| !m.demoted)
            .map(|m| m.addr)
    }

    /// Member `reporter` left the publisher serving on `addr` (of the reporter's file) for
    /// sending chunks that failed their hash. Once [`BAD_REPORTS_TO_DEMOTE`] distinct members
    /// of the file's swarm said so (or all of them, when fewer), the publisher is demoted:
    /// rings are sent to the next publisher of the same content (a ring change), and it is
    /// no longer listed as a source. `None` when the reporter is no member, or `addr` is no
    /// publisher of its file.
    pub fn report_bad(&self, reporter: MemberId, addr: SocketAddr) -> Option<BadReport> {
        let mut inner = self.inner();
        let file = inner.members.get(&reporter)?.file;
        let source = *inner.by_addr.get(&(addr, file))?;
        let swarm = inner
            .members_of(file)
            .filter(|m| m.role != Role::Publisher)
            .count();
        let needed = BAD_REPORTS_TO_DEMOTE.min(swarm).max(1);
        let m = inner.members.get_mut(&source)?;
        if m.role != Role::Publisher || source == reporter {
            return None;
        }
        m.bad_reports.insert(reporter);
        let reports = m.bad_reports.len();
        let newly = !m.demoted && reports >= needed;
        m.demoted |= newly;
        let demoted = m.demoted;
        let publishers_left = inner.publishers_of(file).filter(|m| !m.demoted).count();
        let name = inner.files.get(&file).map(|e| e.manifest.name.clone());
        if newly {
            self.ring_changed.send_replace(());
        }
        Some(BadReport {
            file: name.unwrap_or_default(),
            reports,
            needed,
            demoted,
            publishers_left,
        })
    }

    /// Adds a file this node holds itself (found after it started), or finds it: the same
    /// name and content is one file. Returns its index (its id − 1). It is never freed.
    pub fn add_held(&self, manifest: Arc<Manifest>) -> usize {
        let mut inner = self.inner();
        let index = inner.insert_file(manifest, false);
        if let Some(e) = inner.files.get_mut(&index) {
            e.held = true;
        }
        index
    }

    /// Adds a published file, or finds it (the same name and content is one file, whoever
    /// publishes it), and registers `addr` as its publisher, in one step: a file is never
    /// freed between being found and being published. Returns its index (its id − 1) and
    /// the membership, `None` when a live connection already publishes it from `addr`.
    pub fn publish(
        &self,
        manifest: Arc<Manifest>,
        addr: SocketAddr,
        node: Option<String>,
    ) -> (usize, Option<MemberId>) {
        let mut inner = self.inner();
        let index = inner.insert_file(manifest, false);
        let full = inner
            .files
            .get(&index)
            .map(|e| ChunkSet::full(e.manifest.chunk_count()));
        let id = full.and_then(|have| {
            self.register_in(&mut inner, index, addr, Role::Publisher, have, node)
        });
        (index, id)
    }

    /// Registers a member serving on `addr` in the swarm of file `file`, holding `have`.
    /// `None` when a live connection already registered that address for that file: a
    /// second client cannot take over a member's entry (a restarted peer whose old
    /// connection the owner has not yet seen die is served meanwhile, unregistered).
    pub fn register(
        &self,
        file: usize,
        addr: SocketAddr,
        role: Role,
        have: ChunkSet,
        node: Option<String>,
    ) -> Option<MemberId> {
        let mut inner = self.inner();
        self.register_in(&mut inner, file, addr, role, have, node)
    }

    /// [`Directory::register`], under the lock; `None` too for a file the directory does
    /// not hold (freed meanwhile).
    fn register_in(
        &self,
        inner: &mut Inner,
        file: usize,
        addr: SocketAddr,
        role: Role,
        have: ChunkSet,
        node: Option<String>,
    ) -> Option<MemberId> {
        if inner.by_addr.contains_key(&(addr, file)) || !inner.files.contains_key(&file) {
            return None;
        }
        inner.next += 1;
        let id = inner.next;
        let now = (self.clock)();
        let completed = have.is_full().then_some(now);
        inner.members.insert(
            id,
            Member {
                addr,
                node,
                file,
                role,
                have,
                joined: now,
                completed,
                last_seen: Instant::now(),
                bad_reports: BTreeSet::new(),
                demoted: false,
            },
        );
        inner.by_file.entry(file).or_default().insert(id);
        inner.by_addr.insert((addr, file), id);
        inner.note(now, file, addr, role, "joined");
        if role == Role::Publisher {
            self.ring_changed.send_replace(());
        }
        Some(id)
    }

    /// Adds chunks a member gained; counts as a heartbeat. Returns false when the member is
    /// no longer registered.
    pub fn add_chunks(&self, id: MemberId, chunks: &ChunkSet) -> bool {
        let mut inner = self.inner();
        let Some(m) = inner.members.get_mut(&id) else {
            return false;
        };
        m.have.union_with(chunks);
        m.last_seen = Instant::now();
        if m.completed.is_none() && m.have.is_full() {
            let now = (self.clock)();
            m.completed = Some(now);
            let (file, addr, role) = (m.file, m.addr, m.role);
            inner.note(now, file, addr, role, "completed");
        }
        true
    }

    /// Records that a member was heard from. Returns false when it is no longer registered.
    pub fn heartbeat(&self, id: MemberId) -> bool {
        let mut inner = self.inner();
        match inner.members.get_mut(&id) {
            Some(m) => {
                m.last_seen = Instant::now();
                true
            }
            None => false,
        }
    }

    /// Drops a member. Returns whether it was registered, and the index of the file it
    /// freed, if any (a published file whose last member it was).
    pub fn deregister(&self, id: MemberId) -> Left {
        let mut inner = self.inner();
        let gone = inner.remove_member(id);
        let publisher = gone.as_ref().is_some_and(|m| m.role == Role::Publisher);
        let mut freed = Vec::new();
        if let Some(m) = &gone {
            inner.departed(m, (self.clock)());
            freed.extend(inner.free_if_unused(m.file));
        }
        self.left_rings(&mut inner, &[id], publisher);
        Left {
            was_member: gone.is_some(),
            freed,
        }
    }

    /// Takes `gone` out of every ring (the member downloading from one of them gets the next
    /// one as its neighbour), and says so if any ring changed or a publisher left.
    fn left_rings(&self, inner: &mut Inner, gone: &[MemberId], publisher_left: bool) {
        let Inner {
            rings, ring_pos, ..
        } = inner;
        let mut touched: Vec<usize> = gone
            .iter()
            .filter_map(|id| ring_pos.remove(id).map(|(file, _)| file))
            .collect();
        touched.sort_unstable();
        touched.dedup();
        let changed = !touched.is_empty();
        for file in touched {
            let Some(ring) = rings.get_mut(&file) else {
                continue;
            };
            ring.retain(|id| ring_pos.contains_key(id));
            for (at, id) in ring.iter().enumerate() {
                ring_pos.insert(*id, (file, at));
            }
        }
        rings.retain(|_, r| !r.is_empty());
        if changed || publisher_left {
            self.ring_changed.send_replace(());
        }
    }

    /// Member `id` (registered for `file`) joins that file's ring, at its end. Returns its
    /// download neighbour: the ring's first member, `None` when it is alone.
    pub fn join_ring(&self, file: usize, id: MemberId) -> Option<SocketAddr> {
        let mut inner = self.inner();
        if !inner.members.contains_key(&id) {
            return None;
        }
        if !inner.ring_pos.contains_key(&id) {
            let ring = inner.rings.entry(file).or_default();
            ring.push(id);
            let at = ring.len() - 1;
            inner.ring_pos.insert(id, (file, at));
        }
        drop(inner);
        self.ring_changed.send_replace(());
        self.neighbour_of(id)
    }

    /// The download neighbour of ring member `id` now: the next member in its ring (the
    /// first after the last); `None` when it is alone or in no ring.
    pub fn neighbour_of(&self, id: MemberId) -> Option<SocketAddr> {
        self.inner().ring_neighbour(id)
    }

    /// Changes whenever a ring gains or loses a member.
    pub(crate) fn ring_changes(&self) -> crate::watch::Receiver<()> {
        self.ring_changed.subscribe()
    }

    /// Whether the owner may probe `addr`, reported lost by a getter: only a current
    /// member, not probed in the last [`PROBE_EVERY`], and with fewer than [`MAX_PROBES`]
    /// probes under way. So reports cannot make the owner connect anywhere, nor often. On
    /// true, call [`Directory::end_probe`] when the probe is over.
    pub fn start_probe(&self, addr: SocketAddr) -> bool {
        let mut inner = self.inner();
        let member = !inner.members_at(addr).is_empty();
        let recent = inner
            .probed
            .get(&addr)
            .is_some_and(|t| t.elapsed() < PROBE_EVERY);
        if !member || recent || inner.probing >= MAX_PROBES {
            return false;
        }
        inner.probed.retain(|_, t| t.elapsed() < PROBE_EVERY);
        inner.probed.insert(addr, Instant::now());
        inner.probing += 1;
        true
    }

    /// A probe allowed by [`Directory::start_probe`] is over.
    pub fn end_probe(&self) {
        let mut inner = self.inner();
        inner.probing = inner.probing.saturating_sub(1);
    }

    /// Drops every member serving on `addr`: how many, and the files freed.
    pub fn drop_addr(&self, addr: SocketAddr) -> (usize, Left) {
        let mut inner = self.inner();
        let gone = inner.members_at(addr);
        let left = self.drop_members(&mut inner, &gone);
        (gone.len(), left)
    }

    /// Drops `ids`, recording them as departed and freeing the published files they leave
    /// without members.
    fn drop_members(&self, inner: &mut Inner, ids: &[MemberId]) -> Left {
        let (mut publisher, mut freed) = (false, Vec::new());
        let now = (self.clock)();
        for id in ids {
            if let Some(m) = inner.remove_member(*id) {
                publisher |= m.role == Role::Publisher;
                inner.departed(&m, now);
                freed.extend(inner.free_if_unused(m.file));
            }
        }
        self.left_rings(inner, ids, publisher);
        Left {
            was_member: !ids.is_empty(),
            freed,
        }
    }

    /// Drops members silent for longer than the TTL; returns their addresses and the files
    /// freed.
    pub fn expire(&self) -> (Vec<SocketAddr>, Left) {
        let mut inner = self.inner();
        let silent: Vec<(MemberId, SocketAddr)> = inner
            .members
            .iter()
            .filter(|(_, m)| m.last_seen.elapsed() > self.ttl)
            .map(|(&id, m)| (id, m.addr))
            .collect();
        let ids: Vec<MemberId> = silent.iter().map(|&(id, _)| id).collect();
        let left = self.drop_members(&mut inner, &ids);
        (silent.into_iter().map(|(_, a)| a).collect(), left)
    }

    /// How many chunks member `id` holds, if it is registered.
    pub fn held(&self, id: MemberId) -> Option<u32> {
        self.inner().members.get(&id).map(|m| m.have.count())
    }

    /// Whether `id` is still registered.
    pub fn is_registered(&self, id: MemberId) -> bool {
        self.inner().members.contains_key(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::MAX_ANSWER_LEN;

    fn dir(ttl: Duration) -> Directory {
        let a = Arc::new(Manifest {
            name: "alpha.bin".into(),
            ..Manifest::for_tests(10)
        });
        let b = Arc::new(Manifest {
            name: "Beta.iso".into(),
            ..Manifest::for_tests(5)
        });
        Directory::new(vec![a, b], "127.0.0.1:7000".parse().unwrap(), ttl)
    }

    /// A published file's manifest: "gamma.bin", 4 chunks.
    fn gamma() -> Arc<Manifest> {
        Arc::new(Manifest {
            name: "gamma.bin".into(),
            ..Manifest::for_tests(4)
        })
    }

    fn set(count: u32, ids: impl IntoIterator<Item = u32>) -> ChunkSet {
        let m = Manifest::for_tests(count as usize);
        let mut s = ChunkSet::new(count);
        for i in ids {
            s.insert(m.chunk_id(i).unwrap());
        }
        s
    }

    #[test]
    fn ids_names_and_search() {
        let d = dir(DEFAULT_PEER_TTL);
        assert_eq!(d.find("1"), Some(0));
        assert_eq!(d.find("2"), Some(1));
        assert_eq!(d.find("Beta.iso"), Some(1));
        assert_eq!(d.find("3"), None);
        assert_eq!(d.find("0"), None);
        let hits = d.search("BETA");
        assert_eq!(hits.files.len(), 1);
        assert_eq!(hits.files[0].id, 2);
        assert!(d.search("gamma").files.is_empty());
        assert_eq!(d.search("").files.len(), 2);
        let msg = d.locate("9").message.unwrap();
        assert_eq!(
            msg,
            "no file with id 9; the owner shares: 1 alpha.bin, 2 Beta.iso"
        );
    }

    /// A published file gets the next id; the same name and content is the same file, another
    /// content another; it is listed, with no owner among its sources, only while a
    /// publisher is a member.
    #[tokio::test(start_paused = true)]
    async fn published_files_are_listed_while_published() {
        let d = dir(DEFAULT_PEER_TTL);
        let m = gamma();
        let addr: SocketAddr = "127.0.0.1:9100".parse().unwrap();
        let (f, id) = d.publish(m.clone(), addr, None);
        assert_eq!(f, 2);
        let id = id.unwrap();
        let other_addr: SocketAddr = "127.0.0.1:9101".parse().unwrap();
        let (again, second) = d.publish(m.clone(), other_addr, None);
        assert_eq!(again, 2, "the same file");
        assert_eq!(
            d.publish(m.clone(), addr, None),
            (2, None),
            "one membership per address"
        );
        let mut other = (*m).clone();
        other.hash = crate::hash::Hash::of(b"other");
        let (third, third_id) = d.publish(Arc::new(other), addr, None);
        assert_eq!(third, 3, "another content, another id");
        assert!(!d.is_own(2) && d.is_own(1));
        assert_eq!(d.publishers(2), 2);
        let listed = d.list();
        assert_eq!(listed.files.len(), 4);
        let gamma = listed.files.iter().find(|f| f.id == 3).expect("listed");
        assert_eq!((gamma.complete_sources, gamma.partial_sources), (2, 0));
        let sources = d.locate("3").sources;
        assert!(
            sources.len() == 2 && sources[0].role == "publisher" && !sources[0].owner,
            "{sources:?}"
        );
        assert!(
            d.deregister(id).freed.is_empty(),
            "another publisher is left"
        );
        assert!(
            d.deregister(second.unwrap()).freed == vec![2],
            "freed with its last"
        );
        assert!(d.deregister(third_id.unwrap()).freed == vec![3]);
        assert_eq!(d.publishers(2), 0);
        assert_eq!(d.list().files.len(), 2, "gone with its publishers");
        assert_eq!(d.file_count(), 2, "and freed");
        assert_eq!(d.manifest(2), None);
        assert_eq!(d.find("3"), None, "its id is not found");
        assert_eq!(d.gone("gamma.bin").as_deref(), Some("gamma.bin"));
        assert!(
            d.no_such_file("gamma.bin")
                .contains("every publisher of \"gamma.bin\" has left")
        );
        // Published again, it is a new file with a new id: an old id never names another.
        let (f, _) = d.publish(m, addr, None);
        assert_eq!(f, 4);
    }

    /// A published file is held while any member of its swarm is left, even after its last
    /// publisher: its ring goes on. The owner's own files are never freed.
    #[tokio::test(start_paused = true)]
    async fn a_published_file_is_freed_with_its_last_member() {
        let d = dir(DEFAULT_PEER_TTL);
        let m = gamma();
        let publisher: SocketAddr = "127.0.0.1:9100".parse().unwrap();
        let getter: SocketAddr = "127.0.0.1:9101".parse().unwrap();
        let (f, p) = d.publish(m, publisher, None);
        let g = d
            .register(f, getter, Role::Getter, ChunkSet::new(4), None)
            .unwrap();
        assert!(d.deregister(p.unwrap()).freed.is_empty());
        assert!(d.manifest(f).is_some(), "its getter is still in its swarm");
        assert!(
            d.list().files.iter().all(|x| x.id != 3),
            "but it is not offered"
        );
        let (dropped, left) = d.drop_addr(getter);
        assert_eq!((dropped, left.freed), (1, vec![f]));
        assert!(!d.deregister(g).was_member);
        assert_eq!(d.file_count(), 2);
        let own = d
            .register(0, getter, Role::Getter, ChunkSet::new(10), None)
            .unwrap();
        assert!(
            d.deregister(own).freed.is_empty(),
            "the owner's own file stays"
        );
        assert!(d.manifest(0).is_some());
    }

    /// The cost of publishing does not grow with the directory's history: 3 bursts of 2,000
    /// files, each withdrawn, leave nothing behind, and members are found by address without
    /// a scan.
    #[tokio::test(start_paused = true)]
    async fn bursts_of_publications_leave_nothing_behind() {
        let d = dir(DEFAULT_PEER_TTL);
        let addr: SocketAddr = "127.0.0.1:9100".parse().unwrap();
        for burst in 0..3u32 {
            let mut ids = Vec::new();
            for i in 0..2000u32 {
                let mut m = Manifest {
                    name: format!("f{i}.bin"),
                    ..Manifest::for_tests(4)
                };
                m.hash = crate::hash::Hash::of(format!("{burst}/{i}").as_bytes());
                let (_, id) = d.publish(Arc::new(m), addr, None);
                ids.push(id.unwrap());
            }
            assert_eq!(d.file_count(), 2002);
            assert_eq!(
                d.list().more + u32::try_from(d.list().files.len()).unwrap(),
                2002
            );
            for id in ids {
                assert_eq!(d.deregister(id).freed.len(), 1);
            }
            assert_eq!(d.file_count(), 2, "burst {burst} left nothing");
            let inner = d.inner();
            assert!(inner.by_name.len() == 2 && inner.by_content.len() == 2);
            assert!(inner.by_file.is_empty() && inner.by_addr.is_empty());
            assert_eq!(inner.gone.len(), MAX_GONE.min(2000 * (burst as usize + 1)));
        }
    }

    /// Joiners form a ring in join order, each downloading from the next and the last from
    /// the first; a member leaving (or expiring) re-stitches it around the gap.
    #[test]
    fn a_ring_forms_in_join_order_and_restitches_around_a_gap() {
        let d = dir(Duration::from_millis(50));
        let addr = |i: u16| SocketAddr::from(([127, 0, 0, 1], 9300 + i));
        let ids: Vec<MemberId> = (0..4)
            .map(|i| {
                d.register(0, addr(i), Role::Joiner, set(10, []), None)
                    .unwrap()
            })
            .collect();
        assert_eq!(d.join_ring(0, ids[0]), None, "alone");
        for &id in &ids[1..] {
            assert_eq!(d.join_ring(0, id), Some(addr(0)), "the last gets the first");
        }
        assert_eq!(
            d.join_ring(0, ids[3]),
            Some(addr(0)),
            "joining twice changes nothing"
        );
        let ring = |d: &Directory| -> Vec<Option<SocketAddr>> {
            ids.iter().map(|&id| d.neighbour_of(id)).collect()
        };
        assert_eq!(
            ring(&d),
            vec![Some(addr(1)), Some(addr(2)), Some(addr(3)), Some(addr(0))]
        );
        let mut changes = d.ring_changes();
        assert!(!changes.take_changed());
        let _ = d.deregister(ids[2]);
        assert!(changes.take_changed());
        assert_eq!(
            ring(&d),
            vec![Some(addr(1)), Some(addr(3)), None, Some(addr(0))]
        );
        let _ = d.deregister(ids[0]);
        assert_eq!(ring(&d), vec![None, Some(addr(3)), None, Some(addr(1))]);
        // A member of another file's ring is in its own ring.
        let other = d
            .register(1, addr(9), Role::Joiner, set(5, []), None)
            .unwrap();
        assert_eq!(d.join_ring(1, other), None);
        std::thread::sleep(Duration::from_millis(80));
        let _ = d.expire();
        assert_eq!(ring(&d), vec![None; 4], "all expired");
        assert_eq!(d.neighbour_of(other), None);
    }

    /// A published file's ring is sent to its earliest publisher still registered; a
    /// publisher coming or going is a ring change (its ring members are told again).
    #[tokio::test(start_paused = true)]
    async fn a_published_ring_follows_its_earliest_publisher() {
        let d = dir(DEFAULT_PEER_TTL);
        let m = gamma();
        let mut changes = d.ring_changes();
        assert!(!changes.take_changed());
        let (a, b): (SocketAddr, SocketAddr) = (
            "127.0.0.1:9201".parse().unwrap(),
            "127.0.0.1:9202".parse().unwrap(),
        );
        let (f, ida) = d.publish(m, a, None);
        let ida = ida.unwrap();
        assert!(changes.take_changed(), "a publisher came");
        d.register(f, b, Role::Publisher, ChunkSet::full(4), None)
            .unwrap();
        d.register(
            f,
            "127.0.0.1:9203".parse().unwrap(),
            Role::Getter,
            ChunkSet::full(4),
            None,
        );
        assert_eq!(d.publisher(f), Some(a), "the earliest");
        assert!(changes.take_changed(), "another came");
        let _ = d.deregister(ida);
        assert!(changes.take_changed(), "a publisher left");
        assert_eq!(d.publisher(f), Some(b));
        assert_eq!(d.publisher(0), None, "the owner's own file has none");
    }

    /// A publisher its ring's members report for bad chunks is demoted once two distinct
    /// members said so (one lying member cannot do it): the ring is sent to the next
    /// publisher, and it is no longer listed as a source. With every publisher demoted, none
    /// is named.
    #[tokio::test(start_paused = true)]
    async fn a_publisher_reported_for_bad_chunks_is_demoted_by_two_members() {
        let d = dir(DEFAULT_PEER_TTL);
        let m = gamma();
        let addr = |i: u16| SocketAddr::from(([127, 0, 0, 1], 9400 + i));
        let (f, liar) = d.publish(m.clone(), addr(0), None);
        let (_, honest) = d.publish(m, addr(1), None);
        let (liar, honest) = (liar.unwrap(), honest.unwrap());
        let joiners: Vec<MemberId> = (2..5)
            .map(|i| {
                d.register(f, addr(i), Role::Joiner, ChunkSet::new(4), None)
                    .unwrap()
            })
            .collect();
        assert_eq!(d.publisher(f), Some(addr(0)));
        let mut changes = d.ring_changes();
        assert!(!changes.take_changed());
        let first = d.report_bad(joiners[0], addr(0)).unwrap();
        assert_eq!((first.reports, first.needed, first.demoted), (1, 2, false));
        let again = d.report_bad(joiners[0], addr(0)).unwrap();
        assert_eq!(
            (again.reports, again.demoted),
            (1, false),
            "one member counts once"
        );
        assert_eq!(d.publisher(f), Some(addr(0)));
        assert!(!changes.take_changed());
        assert_eq!(d.report_bad(joiners[0], addr(2)), None, "not a publisher");
        assert_eq!(d.report_bad(liar, addr(0)), None, "not by itself");
        let second = d.report_bad(joiners[1], addr(0)).unwrap();
        assert_eq!((second.demoted, second.publishers_left), (true, 1));
        assert!(
            changes.take_changed(),
            "its rings are told the next publisher"
        );
        assert_eq!(d.publisher(f), Some(addr(1)));
        let sources = d.locate("3").sources;
        assert!(
            sources.iter().all(|s| s.addr != addr(0).to_string()),
            "{sources:?}"
        );
        assert_eq!(d.list().files.len(), 3, "still offered by the honest one");
        d.report_bad(joiners[0], addr(1));
        let last = d.report_bad(joiners[2], addr(1)).unwrap();
        assert_eq!((last.demoted, last.publishers_left), (true, 0));
        assert_eq!(d.publisher(f), None, "none left");
        assert_eq!(d.list().files.len(), 2, "no longer offered");
        assert_eq!(d.publishers(f), 2, "both still members");
        let _ = d.deregister(honest);
    }

    #[test]
    fn members_come_and_go() {
        let d = dir(Duration::from_millis(50));
        let addr: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        let id = d
            .register(0, addr, Role::Getter, set(10, [0, 1]), None)
            .unwrap();
        assert_eq!(d.list().files[0].partial_sources, 1);
        assert!(d.add_chunks(id, &set(10, 2..10)));
        let info = &d.list().files[0];
        assert_eq!((info.complete_sources, info.partial_sources), (2, 0));
        let loc = d.locate("alpha.bin");
        assert_eq!(loc.sources.len(), 2);
        assert!(loc.sources[0].owner);
        assert_eq!(loc.sources[1].addr, "127.0.0.1:9001");
        assert_eq!(loc.sources[1].count, 10);
        // The same address again does not take over the live registration.
        assert_eq!(d.register(0, addr, Role::Peer, set(10, []), None), None);
        assert!(d.is_registered(id));
        assert_eq!(d.peers()[0].count, 10);
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(d.expire().0, vec![addr]);
        assert!(!d.heartbeat(id));
        assert!(d.peers().is_empty());
    }

    #[test]
    fn answers_stay_under_the_answer_limit() {
        // 1,000 members each holding every other chunk of a 100,000-chunk file: listed in
        // full, that is 1,000 × 50,000 ranges.
        let chunks = 100_000u32;
        let m = Arc::new(Manifest {
            name: "big.bin".into(),
            ..Manifest::for_tests(chunks as usize)
        });
        let d = Directory::new(vec![m], "127.0.0.1:7000".parse().unwrap(), DEFAULT_PEER_TTL);
        let every_other = set(chunks, (0..chunks).step_by(2));
        for i in 0..1000u16 {
            let addr = SocketAddr::from(([127, 0, 0, 1], 10_000 + i));
            d.register(0, addr, Role::Getter, every_other.clone(), None);
        }
        let full = set(chunks, 0..chunks);
        d.register(0, "127.0.0.2:9".parse().unwrap(), Role::Peer, full, None);
        let loc = d.locate("1");
        let len = serde_json::to_vec(&loc).unwrap().len();
        assert!(len <= MAX_ANSWER_LEN, "answer of {len} bytes");
        let listed = u32::try_from(loc.sources.len()).unwrap() - 1; // the owner
        assert!(listed >= 10, "only {listed} sources fit");
        assert_eq!(listed + loc.more_sources, 1001);
        // The complete member is listed, before those that fit by address.
        assert!(
            loc.sources
                .iter()
                .any(|s| s.addr == "127.0.0.2:9" && s.complete)
        );
        for s in &loc.sources[1..] {
            assert!(s.chunks.len() <= MAX_SOURCE_RANGES);
            assert!(s.count == 50_000 || s.count == chunks, "{}", s.count);
        }
        let addrs: Vec<SocketAddr> = loc.sources[1..]
            .iter()
            .map(|s| s.addr.parse().unwrap())
            .collect();
        assert!(addrs.windows(2).all(|w| w[0] < w[1]), "by address");
    }

    #[test]
    fn only_members_are_probed_one_at_a_time_and_seldom() {
        let d = dir(DEFAULT_PEER_TTL);
        let member: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        let stranger: SocketAddr = "127.0.0.1:9999".parse().unwrap();
        d.register(0, member, Role::Peer, set(10, []), None);
        assert!(!d.start_probe(stranger), "not a member");
        assert!(d.start_probe(member));
        assert!(!d.start_probe(member), "probed a moment ago");
        d.end_probe();
        assert!(!d.start_probe(member), "still within PROBE_EVERY");
        // At most MAX_PROBES at once.
        let others: Vec<SocketAddr> = (0..=u16::try_from(MAX_PROBES).unwrap())
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 9100 + i)))
            .collect();
        for a in &others {
            d.register(0, *a, Role::Getter, set(10, []), None);
        }
        let started = others.iter().filter(|a| d.start_probe(**a)).count();
        assert_eq!(started, MAX_PROBES);
    }
}
