//! How the owner runs ([`OwnerConfig`]) and its limits.

use std::sync::Arc;
use std::time::Duration;

use crate::choke::DEFAULT_UPLOAD_SLOTS;
use crate::events::EventSink;

/// The most connections served at once; more are refused with an `error` message.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long the owner waits after the last peer joined before it tells peers which chunks
/// nobody was handed (so that a ring still forming does not fetch them all from the owner).
pub const ORPHAN_QUIET: Duration = Duration::from_millis(1000);

/// How long served-orphan updates are batched before the new orphan set is published.
pub const ORPHAN_BATCH: Duration = Duration::from_millis(50);

/// How the owner runs.
#[derive(Debug)]
pub struct OwnerConfig {
    /// Expected number of peers: each is handed ⌈chunks / peers⌉ chunks.
    pub peers: u32,
    /// Where events go.
    pub events: Arc<EventSink>,
    /// Seed for the hand-out's random starting points; `None`: from the OS.
    pub seed: Option<u64>,
    /// Cap on the owner's total upload rate (bytes per second), shared by all connections.
    pub upload_limit: Option<Arc<crate::rate::RateLimiter>>,
    /// Getters served at once (choking); ring peers are always served.
    pub upload_slots: usize,
    /// Who the owner is on the wire: its node key, and the swarm's shared secret (every
    /// handshake needs it) when there is one.
    pub identity: Arc<crate::secure::Identity>,
    /// Connections served at once; more are refused with an `error` ([`MAX_CONNECTIONS`]
    /// unless raised: every ring peer keeps one, so a simulation of more peers needs more).
    pub max_connections: usize,
    /// What `GET /metrics` reports (see [`crate::metrics`]).
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl OwnerConfig {
    /// Defaults: 5 expected peers, no seed, no cap, [`DEFAULT_UPLOAD_SLOTS`] slots, a fresh
    /// random key and no secret.
    pub fn new(events: Arc<EventSink>) -> Self {
        Self {
            peers: 5,
            events,
            seed: None,
            upload_limit: None,
            upload_slots: DEFAULT_UPLOAD_SLOTS,
            identity: Arc::new(crate::secure::Identity::ephemeral()),
            max_connections: MAX_CONNECTIONS,
            metrics: Arc::new(crate::metrics::Metrics::new()),
        }
    }
}
