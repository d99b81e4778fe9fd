//! How the app runs ([`AppConfig`]) and the bounds it keeps.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::key::NodeId;
use crate::net::Endpoint;
use crate::secure::Identity;

/// How often the directory is asked for its files while a page watches (an event stream is
/// open); a request that needs the list asks again if the last answer is older than this.
pub const POLL_EVERY: Duration = Duration::from_millis(500);
/// How often it is asked while no page watches.
pub const IDLE_POLL_EVERY: Duration = Duration::from_secs(5);
/// How often the page is sent the state (downloads' progress, shares, the directory's).
pub const UPDATE_EVERY: Duration = Duration::from_millis(500);
/// States queued for one event-stream client at most; a client further behind is dropped
/// (its browser reconnects), never buffered without limit.
pub const CLIENT_QUEUE: usize = 4;
/// Downloads listed at most (running or not); more are refused until one is removed.
pub const MAX_DOWNLOADS: usize = 64;
/// Share paths at most.
pub const MAX_SHARES: usize = 64;

/// How the app runs.
#[derive(Debug)]
pub struct AppConfig {
    /// The directory the app lists, shares to, and fetches from by file id or name.
    pub directory: Endpoint,
    /// The directory's key, when the ticket that started the app pins it.
    pub directory_node: Option<NodeId>,
    /// Where downloads are written (and nowhere else).
    pub dir: PathBuf,
    /// The address downloads serve chunks on (each on a free port).
    pub bind: IpAddr,
    /// Who this node is on the wire, and the swarm's secret.
    pub identity: Arc<Identity>,
    /// The run's login token.
    pub token: String,
    /// The address the HTTP side listens on (its `Host` and `Origin` checks name it).
    pub http: SocketAddr,
    /// Nominal chunk size of shared files.
    pub chunk_size: u64,
    /// Expected ring size of each shared file.
    pub peers: u32,
    /// Sources a get downloads from at once.
    pub max_sources: usize,
    /// Getters each download and the shares serve at once.
    pub upload_slots: usize,
    /// Cap on the app's whole upload rate (the shares and every download together), bytes
    /// per second.
    pub upload_limit: Option<u64>,
    /// Sync downloads to disk before relying on them.
    pub sync: bool,
    /// A download gives up when the directory is unreachable at start, or nothing arrives,
    /// for this long.
    pub timeout: Duration,
    /// `--dht`: shares are announced there, and a download whose directory does not answer
    /// (or knows no source) is looked up there.
    pub dht: Option<std::sync::Arc<dyn crate::dht::Discovery>>,
}
