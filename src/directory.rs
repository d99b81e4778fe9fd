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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use serde::{Deserialize, Serialize};

use crate::chunkset::{ChunkSet, Ranges};
use crate::manifest::Manifest;
use crate::protocol::{MAX_ANSWER_LEN, Role};

/// Takes items while their JSON fits in `budget` bytes; returns them and how many did not
/// fit. The cost is the size of what is taken.
fn within_budget<T: Serialize>(items: impl IntoIterator<Item = T>, budget: usize) -> (Vec<T>, u32) {
    let (mut taken, mut used, mut left) = (Vec::new(), 0usize, 0u32);
    for item in items {
        let len = serde_json::to_vec(&item).map_or(usize::MAX, |v| v.len() + 1);
        if left == 0 && used.saturating_add(len) <= budget {
            used += len;
            taken.push(item);
        } else {
            left = left.saturating_add(1);
        }
    }
    (taken, left)
}

/// The TTL when none is given: a member silent this long is dropped.
pub const DEFAULT_PEER_TTL: Duration = Duration::from_secs(45);

/// A shared file as the directory lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Small numeric id, stable while the owner shares the same files.
    pub id: u32,
    /// File name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Nominal chunk size in bytes.
    pub chunk_size: u64,
    /// Number of chunks.
    pub chunks: u32,
    /// BLAKE3 of the whole file, hex.
    pub hash: String,
    /// Sources holding every chunk, the owner included.
    pub complete_sources: u32,
    /// Peers holding some but not all chunks.
    pub partial_sources: u32,
}

/// The answer to `list` and `search`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// The search text, for `search`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The matching files, by id.
    pub files: Vec<FileInfo>,
    /// Matching files left out to keep the answer under [`MAX_ANSWER_LEN`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The most chunk ranges listed per source in a `locate` answer; a longer list is cut (the
/// count stays exact), so one answer names many sources.
pub const MAX_SOURCE_RANGES: usize = 2048;

/// Room kept in an answer for everything but its list.
const ANSWER_SLACK: usize = 16 * 1024;

/// One holder of a file's chunks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// `IP:PORT` where it serves chunks. For the owner: the address it listens on (reach it
    /// the way you reached the owner).
    pub addr: String,
    /// True for the file owner.
    #[serde(default)]
    pub owner: bool,
    /// `peer` (a ring member), `getter` (a multi-source downloader) or `owner`.
    pub role: String,
    /// Number of chunks it holds.
    pub count: u32,
    /// True when it holds every chunk.
    pub complete: bool,
    /// The chunk ids it holds: the first [`MAX_SOURCE_RANGES`] ranges of them.
    pub chunks: Ranges,
    /// The node id it said in `hello`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// The answer to `locate`: the file and who holds which of its chunks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Locations {
    /// The file, or `None` when nothing matched (see `message`).
    pub file: Option<FileInfo>,
    /// Why `file` is `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The sources, the owner first, then by address: as many as fit in [`MAX_ANSWER_LEN`],
    /// complete ones and those holding most chunks first.
    #[serde(default)]
    pub sources: Vec<SourceInfo>,
    /// Sources left out to keep the answer under [`MAX_ANSWER_LEN`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more_sources: u32,
}

/// A member as `GET /peers` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// `IP:PORT` where it serves chunks.
    pub addr: String,
    /// `peer` or `getter`.
    pub role: String,
    /// The id of the file it is in the swarm of.
    pub file_id: u32,
    /// That file's name.
    pub file: String,
    /// Chunks it holds.
    pub count: u32,
    /// True when it holds every chunk.
    pub complete: bool,
    /// When it registered, in milliseconds since the Unix epoch.
    pub joined_unix_ms: u64,
    /// Milliseconds since it was last heard from.
    pub last_seen_ms: u64,
}

/// What a member registration is keyed by.
pub type MemberId = u64;

#[derive(Debug)]
struct Member {
    addr: SocketAddr,
    node: Option<String>,
    file: usize,
    role: Role,
    have: ChunkSet,
    joined: SystemTime,
    last_seen: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    next: MemberId,
    members: HashMap<MemberId, Member>,
    /// When each address was last probed after a `source_lost` report.
    probed: HashMap<SocketAddr, Instant>,
    /// Probes under way.
    probing: usize,
}

/// Probes of reported sources under way at once, at most.
pub const MAX_PROBES: usize = 4;
/// The least time between two probes of one address.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);

/// The owner's directory. Cheap to share (`Arc`); all methods lock briefly.
#[derive(Debug)]
pub struct Directory {
    files: Vec<Arc<Manifest>>,
    owner_addr: SocketAddr,
    ttl: Duration,
    inner: Mutex<Inner>,
}

impl Directory {
    /// A directory of `files` (in id order: id 1 first), served by an owner listening on
    /// `owner_addr`, dropping members silent for `ttl`.
    pub fn new(files: Vec<Arc<Manifest>>, owner_addr: SocketAddr, ttl: Duration) -> Self {
        Self {
            files,
            owner_addr,
            ttl,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long a member may stay silent.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The number of shared files.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// The file named `key`, or else the file with numeric id `key`: its index.
    pub fn find(&self, key: &str) -> Option<usize> {
        if let Some(i) = self.files.iter().position(|m| m.name == key) {
            return Some(i);
        }
        match key.trim().parse::<usize>() {
            Ok(id) if (1..=self.files.len()).contains(&id) => Some(id - 1),
            _ => None,
        }
    }

    /// The index of the file with this manifest name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.files.iter().position(|m| m.name == name)
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
        if inner
            .members
            .values()
            .any(|m| m.addr == addr && m.file == file)
        {
            return None;
        }
        inner.next += 1;
        let id = inner.next;
        inner.members.insert(
            id,
            Member {
                addr,
                node,
                file,
                role,
                have,
                joined: SystemTime::now(),
                last_seen: Instant::now(),
            },
        );
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

    /// Drops a member. Returns whether it was registered.
    pub fn deregister(&self, id: MemberId) -> bool {
        self.inner().members.remove(&id).is_some()
    }

    /// Whether the owner may probe `addr`, reported lost by a getter: only a current
    /// member, not probed in the last [`PROBE_EVERY`], and with fewer than [`MAX_PROBES`]
    /// probes under way. So reports cannot make the owner connect anywhere, nor often. On
    /// true, call [`Directory::end_probe`] when the probe is over.
    pub fn start_probe(&self, addr: SocketAddr) -> bool {
        let mut inner = self.inner();
        let member = inner.members.values().any(|m| m.addr == addr);
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

    /// Drops every member serving on `addr`; returns how many.
    pub fn drop_addr(&self, addr: SocketAddr) -> usize {
        let mut inner = self.inner();
        let before = inner.members.len();
        inner.members.retain(|_, m| m.addr != addr);
        before - inner.members.len()
    }

    /// Drops members silent for longer than the TTL; returns their addresses.
    pub fn expire(&self) -> Vec<SocketAddr> {
        let mut inner = self.inner();
        let mut gone = Vec::new();
        inner.members.retain(|_, m| {
            let keep = m.last_seen.elapsed() <= self.ttl;
            if !keep {
                gone.push(m.addr);
            }
            keep
        });
        gone
    }

    /// How many chunks member `id` holds, if it is registered.
    pub fn held(&self, id: MemberId) -> Option<u32> {
        self.inner().members.get(&id).map(|m| m.have.count())
    }

    /// Whether `id` is still registered.
    pub fn is_registered(&self, id: MemberId) -> bool {
        self.inner().members.contains_key(&id)
    }

    fn info(&self, inner: &Inner, file: usize) -> FileInfo {
        let m = &self.files[file];
        let (mut complete, mut partial) = (1, 0); // the owner holds every chunk
        for member in inner.members.values().filter(|x| x.file == file) {
            if member.have.is_full() {
                complete += 1;
            } else if member.have.count() > 0 {
                partial += 1;
            }
        }
        FileInfo {
            id: u32::try_from(file + 1).unwrap_or(u32::MAX),
            name: m.name.clone(),
            size: m.size,
            chunk_size: m.chunk_size,
            chunks: m.chunk_count(),
            hash: m.hash.to_string(),
            complete_sources: complete,
            partial_sources: partial,
        }
    }

    /// Every shared file, by id.
    pub fn list(&self) -> Listing {
        let inner = self.inner();
        let (files, more) = within_budget(
            (0..self.files.len()).map(|f| self.info(&inner, f)),
            MAX_ANSWER_LEN - ANSWER_SLACK,
        );
        Listing {
            query: None,
            files,
            more,
        }
    }

    /// The files whose name contains `text`, ignoring case.
    pub fn search(&self, text: &str) -> Listing {
        let needle = text.to_lowercase();
        let inner = self.inner();
        let (files, more) = within_budget(
            (0..self.files.len())
                .filter(|&f| self.files[f].name.to_lowercase().contains(&needle))
                .map(|f| self.info(&inner, f)),
            MAX_ANSWER_LEN - ANSWER_SLACK,
        );
        Listing {
            query: Some(text.to_string()),
            files,
            more,
        }
    }

    /// Where each chunk of the file `key` (an id or a name) is.
    pub fn locate(&self, key: &str) -> Locations {
        let Some(file) = self.find(key) else {
            return Locations {
                file: None,
                message: Some(self.no_such_file(key)),
                sources: Vec::new(),
                more_sources: 0,
            };
        };
        let inner = self.inner();
        let m = &self.files[file];
        let mut sources = vec![SourceInfo {
            addr: self.owner_addr.to_string(),
            owner: true,
            role: "owner".into(),
            count: m.chunk_count(),
            complete: true,
            chunks: Ranges(match m.chunk_count() {
                0 => Vec::new(),
                n => vec![[0, n - 1]],
            }),
            node: None,
        }];
        let mut members: Vec<&Member> = inner.members.values().filter(|x| x.file == file).collect();
        // Most useful first, so those are the ones that fit; a source is built only if it
        // may fit, so the cost is bounded by the answer, not by the members.
        members.sort_by_key(|x| (std::cmp::Reverse(x.have.count()), x.addr));
        let budget = MAX_ANSWER_LEN - ANSWER_SLACK - 2 * 1024;
        let (mut listed, mut used, mut more_sources) = (Vec::new(), 0usize, 0u32);
        for x in members {
            if used < budget {
                let source = SourceInfo {
                    addr: x.addr.to_string(),
                    owner: false,
                    role: role_name(x.role).into(),
                    count: x.have.count(),
                    complete: x.have.is_full(),
                    chunks: x.have.to_ranges_capped(MAX_SOURCE_RANGES),
                    node: x.node.clone(),
                };
                let len = serde_json::to_vec(&source).map_or(usize::MAX, |v| v.len() + 1);
                if used.saturating_add(len) <= budget {
                    used += len;
                    listed.push(source);
                    continue;
                }
                used = budget;
            }
            more_sources += 1;
        }
        listed.sort_by_key(|x| x.addr.parse::<SocketAddr>().ok());
        sources.extend(listed);
        Locations {
            file: Some(self.info(&inner, file)),
            message: None,
            sources,
            more_sources,
        }
    }

    /// A clear answer for a file that is not shared.
    pub fn no_such_file(&self, key: &str) -> String {
        let shared = self
            .files
            .iter()
            .enumerate()
            .map(|(i, m)| format!("{} {}", i + 1, m.name))
            .collect::<Vec<_>>()
            .join(", ");
        if key.trim().parse::<u64>().is_ok() {
            format!("no file with id {key}; the owner shares: {shared}")
        } else {
            format!("no file named {key:?}; the owner shares: {shared}")
        }
    }

    /// Every member, by address.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let inner = self.inner();
        let mut out: Vec<PeerInfo> = inner
            .members
            .values()
            .map(|x| PeerInfo {
                addr: x.addr.to_string(),
                role: role_name(x.role).into(),
                file_id: u32::try_from(x.file + 1).unwrap_or(u32::MAX),
                file: self.files[x.file].name.clone(),
                count: x.have.count(),
                complete: x.have.is_full(),
                joined_unix_ms: x
                    .joined
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                last_seen_ms: u64::try_from(x.last_seen.elapsed().as_millis()).unwrap_or(u64::MAX),
            })
            .collect();
        out.sort_by(|a, b| (a.file_id, &a.addr).cmp(&(b.file_id, &b.addr)));
        out
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Peer | Role::Neighbour => "peer",
        Role::Getter => "getter",
        Role::Query => "query",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(d.expire(), vec![addr]);
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
