//! A getter's shared state ([`Getter`]): the sources the directory lists and the chunks
//! each holds, how many sources hold each chunk, and which chunks are requested where; the
//! rarest-first pick with its end-game, and the choice of sources (see [`super::sources`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tracing::warn;

use super::swarm::Swarm;
use crate::Result;
use crate::chunkset::{ChunkSet, set_bits};
use crate::directory::Locations;
use crate::events::EventKind;
use crate::manifest::ChunkId;
use crate::net::Backoff;

/// How long a failed source is avoided at first (doubling on each failure without progress;
/// see [`Backoff`]).
pub const SOURCE_RETRY: Duration = Duration::from_secs(5);
/// The longest a failed source is avoided.
pub const SOURCE_RETRY_MAX: Duration = Duration::from_secs(60);
/// The most sources found in the DHT that a getter keeps.
pub const MAX_DHT_SOURCES: usize = crate::dht::MAX_CANDIDATES;

/// One source the directory listed: what it holds, whether a connection uses it, and when
/// it may be tried again after a failure.
#[derive(Debug)]
struct SourceEntry {
    chunks: ChunkSet,
    active: bool,
    retry: Backoff,
    retry_at: Option<Instant>,
    /// Found in the DHT, not listed by the directory: its answers do not drop it.
    dht: bool,
}

#[derive(Debug)]
struct Shared {
    /// Peer sources by `IP:PORT` (the owner is not here: its connection is always kept).
    sources: BTreeMap<String, SourceEntry>,
    /// Per chunk: how many sources hold it, the owner included.
    avail: Vec<u16>,
    /// Per chunk: on how many connections it is requested and not yet received.
    requested: BTreeMap<u32, u16>,
    /// A first `locations` answer arrived.
    located: bool,
}

/// The getter's state, shared by its connections.
pub(super) struct Getter {
    pub(super) swarm: Arc<Swarm>,
    shared: Mutex<Shared>,
    /// Sources to report to the directory as lost.
    lost_tx: mpsc::UnboundedSender<String>,
    /// The owner's own `IP:PORT` as the directory names it, so it is not connected twice.
    owner_addr: Mutex<Option<String>>,
    /// Signalled when the directory's answer changed the source list.
    pub(super) sources_changed: Notify,
}

impl Getter {
    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// There is no directory to ask (the owner link is a plain peer): pick among what the
    /// connections' own lists say, without waiting for a `locate` answer.
    pub(super) fn no_directory(&self) {
        self.shared().located = true;
        self.sources_changed.notify_one();
    }

    /// Takes in sources found in the DHT (`IP:PORT`), each holding the whole file: only
    /// whole copies are announced there. One already known keeps what it said; the count of
    /// new ones. At most [`MAX_DHT_SOURCES`] are kept: whatever the DHT says, the pool stays
    /// bounded. Picking still waits for the directory's first answer, unless
    /// [`Getter::no_directory`] says there is none.
    pub(super) fn found(&self, addrs: Vec<String>) -> usize {
        let count = self.swarm.manifest.chunk_count();
        let owner = self
            .owner_addr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // The owner link's own endpoint (a source the DHT named, resolved at start) is
        // connected already.
        let linked = self.swarm.config.owner.to_string();
        let mut sh = self.shared();
        let mut kept = sh.sources.values().filter(|s| s.dht).count();
        let mut added = 0;
        for addr in addrs {
            if sh.sources.contains_key(&addr) || owner.as_ref() == Some(&addr) || addr == linked {
                continue;
            }
            if kept >= MAX_DHT_SOURCES {
                break;
            }
            kept += 1;
            sh.sources.insert(
                addr,
                SourceEntry {
                    chunks: ChunkSet::full(count),
                    active: false,
                    retry: Backoff::new(SOURCE_RETRY, SOURCE_RETRY_MAX),
                    retry_at: None,
                    dht: true,
                },
            );
            for a in &mut sh.avail {
                *a = a.saturating_add(1);
            }
            added += 1;
        }
        drop(sh);
        self.sources_changed.notify_one();
        added
    }

    /// Takes in a `locations` answer: sources and availability.
    pub(super) fn located(&self, loc: Locations) {
        let m = &self.swarm.manifest;
        let count = m.chunk_count() as usize;
        let mut avail = vec![0u16; count];
        let mut seen = BTreeSet::new();
        let own = format!(":{}", self.swarm.port);
        let mut sh = self.shared();
        for s in loc.sources {
            let Ok(set) = ChunkSet::try_from_ranges(m, &s.chunks) else {
                continue;
            };
            for c in set.indices() {
                avail[c as usize] = avail[c as usize].saturating_add(1);
            }
            if s.owner {
                *self.owner_addr.lock().unwrap_or_else(|p| p.into_inner()) = Some(s.addr);
                continue;
            }
            // Not this getter itself: its node id, or (a directory that does not return
            // ids) the same port on a loopback or unspecified address.
            if s.node.as_deref() == Some(self.swarm.node.as_str()) {
                continue;
            }
            if s.node.is_none()
                && s.addr.ends_with(&own)
                && s.addr
                    .parse::<std::net::SocketAddr>()
                    .is_ok_and(|a| a.ip().is_loopback() || a.ip().is_unspecified())
            {
                continue;
            }
            seen.insert(s.addr.clone());
            sh.sources
                .entry(s.addr)
                .and_modify(|x| x.chunks = set.clone())
                .or_insert(SourceEntry {
                    chunks: set,
                    active: false,
                    retry: Backoff::new(SOURCE_RETRY, SOURCE_RETRY_MAX),
                    retry_at: None,
                    dht: false,
                });
        }
        // Sources gone from the directory are forgotten unless a connection still uses them
        // (or the DHT named them).
        sh.sources
            .retain(|a, s| s.active || s.dht || seen.contains(a));
        sh.avail = avail;
        sh.located = true;
        drop(sh);
        self.sources_changed.notify_one();
    }

    /// Picks the next chunk to request from a source holding `theirs`, with `mine` already
    /// requested on this connection: rarest first, then end-game duplicates.
    pub(super) fn pick(
        &self,
        theirs: &ChunkSet,
        mine: &BTreeSet<ChunkId>,
        rng: &mut impl Rng,
    ) -> Option<ChunkId> {
        let have = self.swarm.have_or_storing();
        let mut sh = self.shared();
        if !sh.located {
            return None;
        }
        let (hw, tw) = (have.words(), theirs.words());
        let mut best: Option<(u16, u32)> = None;
        let mut ties = 0u32;
        let mut any_unrequested = false;
        let lacking = || set_bits(hw.iter().zip(tw).map(|(&h, &t)| t & !h));
        for c in lacking() {
            if sh.requested.contains_key(&c) {
                continue;
            }
            any_unrequested = true;
            let a = sh.avail.get(c as usize).copied().unwrap_or(0);
            match best {
                Some((b, _)) if a > b => {}
                Some((b, _)) if a == b => {
                    // Reservoir sampling: each of the tied chunks equally likely.
                    ties += 1;
                    if rng.random_range(0..ties) == 0 {
                        best = Some((a, c));
                    }
                }
                _ => {
                    best = Some((a, c));
                    ties = 1;
                }
            }
        }
        let chosen = match best {
            Some((_, c)) => Some(c),
            None if !any_unrequested && !self.anything_unrequested(&have, &sh) => {
                // End-game: a chunk this source holds that is requested elsewhere, the least
                // requested first.
                lacking()
                    .filter(|&c| {
                        self.swarm
                            .manifest
                            .chunk_id(c)
                            .is_ok_and(|id| !mine.contains(&id))
                    })
                    .min_by_key(|c| sh.requested.get(c).copied().unwrap_or(0))
            }
            None => None,
        };
        let c = chosen?;
        *sh.requested.entry(c).or_insert(0) += 1;
        self.swarm.manifest.chunk_id(c).ok()
    }

    /// Whether some missing chunk is requested nowhere (then it is not end-game yet).
    fn anything_unrequested(&self, have: &ChunkSet, sh: &Shared) -> bool {
        let ids = self.swarm.manifest.chunk_ids();
        ids.into_iter()
            .any(|id| !have.contains(id) && !sh.requested.contains_key(&id.get()))
    }

    /// A request on one connection ended (received, cancelled, or the connection closed).
    pub(super) fn release(&self, id: ChunkId) {
        let mut sh = self.shared();
        let c = id.get();
        if let Some(n) = sh.requested.get_mut(&c) {
            *n -= 1;
            if *n == 0 {
                sh.requested.remove(&c);
            }
        }
    }
}

/// A getter's state with no sources known yet; lost sources are reported on `lost_tx`.
pub(super) fn new_getter(
    swarm: &Arc<Swarm>,
    lost_tx: mpsc::UnboundedSender<String>,
) -> Arc<Getter> {
    Arc::new(Getter {
        shared: Mutex::new(Shared {
            sources: BTreeMap::new(),
            avail: vec![0; swarm.manifest.chunk_count() as usize],
            requested: BTreeMap::new(),
            located: false,
        }),
        swarm: swarm.clone(),
        lost_tx,
        owner_addr: Mutex::new(None),
        sources_changed: Notify::new(),
    })
}

/// The best `want` sources to connect to now: most chunks this getter lacks first.
pub(super) fn choose_sources(getter: &Getter, want: usize, rng: &mut impl Rng) -> Vec<String> {
    if want == 0 {
        return Vec::new();
    }
    let have = getter.swarm.have_snapshot();
    let now = Instant::now();
    let mut sh = getter.shared();
    let mut ranked: Vec<(u32, u32, String)> = sh
        .sources
        .iter()
        .filter(|(_, s)| !s.active && s.retry_at.is_none_or(|t| now >= t))
        .map(|(a, s)| {
            (
                u32::try_from(s.chunks.difference(&have).len()).unwrap_or(u32::MAX),
                rng.random(),
                a.clone(),
            )
        })
        .filter(|(useful, _, _)| *useful > 0)
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let picked: Vec<String> = ranked.into_iter().take(want).map(|(_, _, a)| a).collect();
    for a in &picked {
        if let Some(s) = sh.sources.get_mut(a) {
            s.active = true;
        }
    }
    picked
}

/// When the next source avoided after a failure may be tried again (`None`: none waits).
pub(super) fn next_retry(getter: &Getter) -> Option<Instant> {
    let now = Instant::now();
    let sh = getter.shared();
    let waiting = sh.sources.values().filter(|s| !s.active);
    waiting
        .filter_map(|s| s.retry_at)
        .filter(|&t| t > now)
        .min()
}

/// Books the end of a source connection, which `lasted` (see [`Backoff`]): a failure is
/// reported and the source avoided.
pub(super) fn source_ended(getter: &Getter, addr: &str, res: Result<()>, lasted: bool) {
    let incomplete = !getter.swarm.is_complete();
    let mut sh = getter.shared();
    let Some(s) = sh.sources.get_mut(addr) else {
        return;
    };
    s.active = false;
    match res {
        Ok(()) if !incomplete => {}
        other => {
            let why = match other {
                Err(e) => e.to_string(),
                Ok(()) => "closed the connection".into(),
            };
            s.retry.after(lasted);
            let wait = s.retry.next_delay();
            s.retry_at = Some(Instant::now() + wait);
            drop(sh);
            warn!(
                "source {addr} lost ({why}); avoiding it for {}s",
                wait.as_secs()
            );
            getter.swarm.events.swarm(EventKind::SourceLost, addr, &why);
            let _ = getter.lost_tx.send(addr.to_string());
        }
    }
}
