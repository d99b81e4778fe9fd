//! How a peer runs ([`Config`], [`Mode`]), which kind of source a download connection talks
//! to ([`SourceKind`]), the limits the peer's parts share, and what a completed peer reports
//! ([`Completion`]). Every file of `peer/` may import this one; it imports none of them but
//! [`super::status`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::status::Status;
use crate::events::EventSink;
use crate::manifest::Manifest;
use crate::net::Endpoint;
use crate::store::Layout;

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
/// How long a finished peer waits to tell its download neighbour that it is complete.
pub const TELL_NEIGHBOUR_WAIT: Duration = Duration::from_secs(2);
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
    /// Who the peer is on the wire: its node key, and the swarm's shared secret (every
    /// handshake needs it) when there is one.
    pub identity: Arc<crate::secure::Identity>,
    /// Sync chunks, summaries and the finished file to disk before relying on them (see
    /// [`ChunkStore::set_sync`](crate::store::ChunkStore::set_sync)); off for simulations and benchmarks.
    pub sync: bool,
    /// Where chunks, the summary and the finished file go.
    pub dir: PathBuf,
    /// The file wanted, when the owner shares several.
    pub file: Option<String>,
    /// A ring peer that asks the directory for its place in the ring (`peer join`):
    /// `neighbour` is unused, the owner says it and its changes.
    pub join: bool,
    /// The ticket the file must match (`peer get TICKET`): the file is asked for by its hash,
    /// and a manifest of another hash or size is refused.
    pub pin: Option<crate::ticket::Ticket>,
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
    /// A cap shared with other nodes of this process (the app's downloads and shares share
    /// one); when given, `upload_limit` is not used.
    pub shared_limiter: Option<Arc<crate::rate::RateLimiter>>,
    /// Fault injection for tests: corrupt the first N chunks this peer uploads.
    pub corrupt_sends: u32,
    /// Seed for this peer's random choices (which chunk to request next); `None`: from the OS.
    pub seed: Option<u64>,
    /// Told once the file is reassembled and verified.
    pub on_complete: Option<oneshot::Sender<Completion>>,
    /// Kept up to date for a progress line, if given.
    pub status: Option<Arc<Status>>,
    /// `Some`: once whole, this peer announces its file in this DHT for as long as it
    /// serves; while its directory is unreachable, it looks for sources there
    /// ([`super::discover`]).
    pub dht: Option<Arc<dyn crate::dht::Discovery>>,
    /// Once whole, serve until cancelled, as a seeder does (the run ends `Interrupted`, its
    /// completion told on `on_complete`), instead of until the upload neighbour is served or
    /// `linger` ends.
    pub seed_until_stopped: bool,
}

impl Config {
    /// A ring peer downloading from `neighbour`, its files in `dir`, with the defaults of the
    /// `peer` command (no caps, no secret, a part file, [`DEFAULT_IN_FLIGHT`] requests in
    /// flight, a 120 s `--timeout`, syncing) and console events; set the rest with
    /// `..Config::ring(…)`.
    pub fn ring(owner: Endpoint, neighbour: Endpoint, dir: PathBuf) -> Self {
        Self {
            owner,
            neighbour,
            get: None,
            upload_slots: crate::choke::DEFAULT_UPLOAD_SLOTS,
            identity: Arc::new(crate::secure::Identity::ephemeral()),
            sync: true,
            dir,
            file: None,
            join: false,
            pin: None,
            layout: Layout::PartFile,
            in_memory: None,
            linger: None,
            timeout: Duration::from_secs(120),
            in_flight: DEFAULT_IN_FLIGHT,
            events: Arc::new(EventSink::console("peer")),
            upload_limit: None,
            shared_limiter: None,
            corrupt_sends: 0,
            seed: None,
            on_complete: None,
            status: None,
            dht: None,
            seed_until_stopped: false,
        }
    }

    /// A getter (`peer get`) of many sources, at most `max_sources` at once, with the same
    /// defaults as [`Config::ring`].
    pub fn getter(owner: Endpoint, dir: PathBuf, max_sources: usize) -> Self {
        Self {
            get: Some(GetConfig { max_sources }),
            ..Self::ring(owner.clone(), owner, dir)
        }
    }
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

impl std::fmt::Display for Completion {
    /// The line the `peer` binary prints: `complete: DIR/NAME (4.2 GiB, blake3 1a2b3c4d)
    /// verified in 41.2s, 43008 chunks fetched`, the path shown by
    /// [`display_name`](crate::manifest::display_name) (the name is the owner's choice).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "complete: {} ({}, blake3 {}) verified in {:.3}s, {} chunks fetched",
            crate::manifest::display_name(&self.path.to_string_lossy()),
            crate::units::human_size(self.manifest.size),
            self.manifest.hash.short(),
            self.elapsed.as_secs_f64(),
            self.fetched
        )
    }
}

/// What kind of node a peer is, from [`Config::mode`].
#[derive(Clone, Debug)]
pub(crate) enum Mode {
    /// A ring member: downloads from its download `neighbour` and the owner, and serves its
    /// upload neighbour until that one is complete. `None`: the neighbour is the directory's
    /// to say (`peer join`), and may change.
    Ring { neighbour: Option<Endpoint> },
    /// A multi-source getter: downloads from sources the owner's directory lists, and serves
    /// until cancelled or `linger` ends.
    Getter(GetConfig),
}

impl Config {
    /// The mode `get` and `neighbour` say.
    pub(crate) fn mode(&self) -> Mode {
        match &self.get {
            Some(get) => Mode::Getter(get.clone()),
            None => Mode::Ring {
                neighbour: (!self.join).then(|| self.neighbour.clone()),
            },
        }
    }
}

/// Which kind of source a download connection talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SourceKind {
    /// The file owner: the hand-out, orphan and fall-back chunks, and the directory (this
    /// peer's registration, a joiner's place in the ring).
    Owner,
    /// The download neighbour: the ring.
    Neighbour,
    /// A directory that holds none of the file (a tracker of a published file): only the
    /// registration and the ring place; an owner connection whose `welcome` said `empty`.
    Directory,
    /// The publisher a directory named for a published file: the owner's chunk duties (the
    /// hand-out, orphans, the fall-back), without the directory's.
    Publisher,
}

impl SourceKind {
    /// Whether chunks are asked of it as of an owner: its hand-out, orphans, suspect chunks,
    /// anything once stalled.
    pub(crate) fn serves_as_owner(self) -> bool {
        matches!(self, Self::Owner | Self::Publisher)
    }

    /// Whether it places this peer in the ring (a joiner's download neighbour).
    pub(crate) fn places_in_ring(self) -> bool {
        matches!(self, Self::Owner | Self::Directory)
    }

    /// The word for it in log lines.
    pub(crate) fn noun(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Neighbour => "neighbour",
            Self::Directory => "directory",
            Self::Publisher => "publisher",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let line = c.to_string();
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
