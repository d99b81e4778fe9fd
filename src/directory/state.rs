//! The directory's state: its files, members, rings and recent comings and goings
//! ([`Tables`], behind the [`Directory`]'s lock), the limits on what it keeps, and the
//! lookups the operations share. The operations are in `files`, `members` and `rings`; the
//! answers built from it in `answer` and `view`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::chunkset::ChunkSet;
use crate::events::{Clock, wall_clock};
use crate::hash::Hash;
use crate::manifest::Manifest;
use crate::protocol::Role;

/// The TTL when none is given: a member silent this long is dropped.
pub const DEFAULT_PEER_TTL: Duration = Duration::from_secs(45);

/// What a member registration is keyed by.
pub type MemberId = u64;

/// A member: where it serves, its file and role, its chunks, and when it was last heard from.
#[derive(Debug)]
pub(super) struct MemberEntry {
    pub(super) addr: SocketAddr,
    pub(super) node: Option<String>,
    pub(super) file: usize,
    pub(super) role: Role,
    pub(super) have: ChunkSet,
    /// When it registered: seconds since the Unix epoch, on the directory's clock.
    pub(super) joined: f64,
    /// When it first held every chunk, on the same clock.
    pub(super) completed: Option<f64>,
    pub(super) last_seen: Instant,
    /// The members of its swarm that left it for sending bad chunks.
    pub(super) bad_reports: BTreeSet<MemberId>,
    /// A publisher enough of them reported: no longer named to rings nor listed as a source.
    pub(super) demoted: bool,
    /// A ring member's download neighbour once found slow (see
    /// [`Directory::behind_slow_neighbour`]).
    pub(super) slow_neighbour: Option<MemberId>,
}

#[derive(Debug)]
pub(super) struct FileEntry {
    pub(super) manifest: Arc<Manifest>,
    /// Whether the node holds it itself (never freed), rather than only its publishers.
    pub(super) held: bool,
}

/// What the directory knows, behind its lock: files, members (indexed by file and by
/// address), rings, probes, and the recent comings and goings.
#[derive(Debug, Default)]
pub(super) struct Tables {
    /// The files, by index (id − 1): the owner's own, then published ones as they come. A
    /// published file is freed when its last member (publisher or downloader) leaves; its
    /// index is never given to another file.
    pub(super) files: BTreeMap<usize, FileEntry>,
    /// The index the next new file gets.
    pub(super) next_file: usize,
    /// Each file's index by its name and content.
    pub(super) by_content: HashMap<(String, Hash), usize>,
    /// The files of each name, in index order.
    pub(super) by_name: HashMap<String, BTreeSet<usize>>,
    /// Recently freed files (name and content), newest last, at most [`MAX_GONE`]: so a
    /// client asking for one is told its publishers left, not that it never existed.
    pub(super) gone: VecDeque<(String, Hash)>,
    pub(super) next: MemberId,
    pub(super) members: BTreeMap<MemberId, MemberEntry>,
    /// The members of each file, in registration order.
    pub(super) by_file: BTreeMap<usize, BTreeSet<MemberId>>,
    /// Each member by the address it serves on and its file.
    pub(super) by_addr: BTreeMap<(SocketAddr, usize), MemberId>,
    /// The self-assembled rings (`peer join`), by file: members in join order, each
    /// downloading from the next, the last from the first.
    pub(super) rings: BTreeMap<usize, Vec<MemberId>>,
    /// Where each ring member is: its file's ring, and its place in it.
    pub(super) ring_pos: BTreeMap<MemberId, (usize, usize)>,
    /// When each address was last probed after a `source_lost` report.
    pub(super) probed: BTreeMap<SocketAddr, Instant>,
    /// Probes under way.
    pub(super) probing: usize,
    /// Members that left (downloaders only, not publishers), newest last, at most
    /// [`MAX_DEPARTED`]: a view of the swarm keeps them, with their completion times.
    pub(super) departed: VecDeque<Departed>,
    /// The swarm's latest comings and goings, newest last, at most [`MAX_SWARM_EVENTS`].
    pub(super) swarm_events: VecDeque<SwarmEvent>,
}

/// Departed members kept for a view of the swarm.
pub const MAX_DEPARTED: usize = 10_000;
/// Freed files remembered by name and content, for a clear refusal.
pub const MAX_GONE: usize = 1024;
/// Swarm events (joined, completed, left) kept for a view of the swarm.
pub const MAX_SWARM_EVENTS: usize = 100;

impl Tables {
    /// Adds `manifest` as a new file, or finds the file of the same name and content.
    pub(super) fn insert_file(&mut self, manifest: Arc<Manifest>, held: bool) -> usize {
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
        self.files.insert(index, FileEntry { manifest, held });
        index
    }

    /// Frees the file at `index` if only publishers held it and no member is left in its
    /// swarm: its manifest, its name and its content key. Its index, when freed.
    pub(super) fn free_if_unused(&mut self, index: usize) -> Option<usize> {
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
    pub(super) fn remove_member(&mut self, id: MemberId) -> Option<MemberEntry> {
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
    pub(super) fn members_at(&self, addr: SocketAddr) -> Vec<MemberId> {
        self.by_addr
            .range((addr, 0)..=(addr, usize::MAX))
            .map(|(_, &id)| id)
            .collect()
    }

    /// The members of file `index`, in registration order.
    pub(super) fn members_of(&self, index: usize) -> impl Iterator<Item = &MemberEntry> {
        self.by_file
            .get(&index)
            .into_iter()
            .flatten()
            .filter_map(|id| self.members.get(id))
    }

    /// The publishers of file `index`, in registration order.
    pub(super) fn publishers_of(&self, index: usize) -> impl Iterator<Item = &MemberEntry> {
        self.members_of(index).filter(|m| m.role == Role::Publisher)
    }

    /// Ring member `id`'s download neighbour, and how many chunks it holds that `id` lacks.
    pub(super) fn backlog(&self, id: MemberId) -> Option<(MemberId, u32)> {
        let &(file, at) = self.ring_pos.get(&id)?;
        let ring = self.rings.get(&file)?;
        let next = ring[(at + 1) % ring.len()];
        if next == id {
            return None;
        }
        let (mine, theirs) = (&self.members.get(&id)?.have, &self.members.get(&next)?.have);
        let behind = theirs.words().iter().zip(mine.words());
        Some((next, behind.map(|(t, m)| (t & !m).count_ones()).sum()))
    }

    /// [`Directory::neighbour_of`], under the lock.
    pub(super) fn ring_neighbour(&self, id: MemberId) -> Option<SocketAddr> {
        let &(file, at) = self.ring_pos.get(&id)?;
        let ring = self.rings.get(&file)?;
        let next = ring[(at + 1) % ring.len()];
        (next != id)
            .then(|| self.members.get(&next).map(|m| m.addr))
            .flatten()
    }
}

/// The owner's directory. Cheap to share (`Arc`); all methods lock briefly.
pub struct Directory {
    pub(super) owner_addr: SocketAddr,
    pub(super) ttl: Duration,
    pub(super) inner: Mutex<Tables>,
    /// Registration timestamps: the wall clock, or a simulation's virtual one.
    pub(super) clock: Clock,
    /// Bumped whenever a ring gains or loses a member, or a publisher comes or goes
    /// (sessions then look up their member's download neighbour, and publisher, again).
    pub(super) ring_changed: crate::watch::Sender<()>,
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
        let mut inner = Tables::default();
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

    pub(super) fn inner(&self) -> MutexGuard<'_, Tables> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long a member may stay silent.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// A member that left.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Departed {
    /// The file's id.
    pub file_id: u32,
    /// Where it served chunks.
    pub addr: String,
    /// `peer` or `getter`.
    pub role: String,
    /// When it registered, when it first held every chunk (`None`: it left incomplete) and
    /// when it left, in milliseconds since the Unix epoch.
    pub joined_unix_ms: u64,
    pub completed_unix_ms: Option<u64>,
    pub left_unix_ms: u64,
}

/// A member joined, completed or left.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SwarmEvent {
    /// Milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// The file's id.
    pub file_id: u32,
    /// The member.
    pub addr: String,
    /// `peer`, `getter` or `publisher`.
    pub role: String,
    /// `joined`, `completed` or `left`.
    pub what: &'static str,
}
