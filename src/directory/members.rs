//! The directory's members: registering, heartbeats and chunks gained, dropping them (left,
//! silent past the TTL, or unreachable when probed), and demoting a publisher reported for
//! bad chunks.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::state::{Directory, MemberEntry, MemberId, Tables};
use crate::chunkset::ChunkSet;
use crate::protocol::Role;

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

/// Probes of reported sources under way at once, at most.
pub const MAX_PROBES: usize = 4;
/// The least time between two probes of one address.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);

impl Directory {
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
    pub(super) fn register_in(
        &self,
        inner: &mut Tables,
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
            MemberEntry {
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
                slow_neighbour: None,
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

    /// Drops every member serving on `addr`: how many, and the files freed.
    pub fn drop_addr(&self, addr: SocketAddr) -> (usize, Left) {
        let mut inner = self.inner();
        let gone = inner.members_at(addr);
        let left = self.drop_members(&mut inner, &gone);
        (gone.len(), left)
    }

    /// Drops `ids`, recording them as departed and freeing the published files they leave
    /// without members.
    pub(super) fn drop_members(&self, inner: &mut Tables, ids: &[MemberId]) -> Left {
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

    /// How many chunks member `id` holds, if it is registered.
    pub fn held(&self, id: MemberId) -> Option<u32> {
        self.inner().members.get(&id).map(|m| m.have.count())
    }

    /// Whether `id` is still registered.
    pub fn is_registered(&self, id: MemberId) -> bool {
        self.inner().members.contains_key(&id)
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

    /// The key a member serving on `addr` proved when it registered (in hex), if any.
    pub fn node_at(&self, addr: SocketAddr) -> Option<String> {
        let inner = self.inner();
        let ids = inner.members_at(addr);
        ids.iter()
            .find_map(|id| inner.members.get(id).and_then(|m| m.node.clone()))
    }

    /// A probe allowed by [`Directory::start_probe`] is over.
    pub fn end_probe(&self) {
        let mut inner = self.inner();
        inner.probing = inner.probing.saturating_sub(1);
    }
}
