//! The owner's [`Metrics`]: counters bumped as things happen, gauges read from its directory
//! and choker at each scrape, and their rendering as OpenMetrics text.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::labels::{CHOKE_STATES, MEMBER_ROLES, ROLES, RoleLabel, StateLabel, role};
use super::refusals::HttpRefusals;
use crate::choke::Choker;
use crate::directory::Directory;
use crate::protocol::Role;

/// The owner's counters and the gauges read at each scrape.
pub struct Metrics {
    registry: Mutex<Registry>,
    bytes_sent: Family<RoleLabel, Counter>,
    bytes_received: Family<RoleLabel, Counter>,
    chunks_sent: Family<RoleLabel, Counter>,
    requests_refused: Family<RoleLabel, Counter>,
    connections_total: Family<RoleLabel, Counter>,
    connections: Family<RoleLabel, Gauge<i64, AtomicI64>>,
    members: Family<RoleLabel, Gauge<i64, AtomicI64>>,
    member_chunks: Family<RoleLabel, Gauge<i64, AtomicI64>>,
    files: Gauge<i64, AtomicI64>,
    choke: Family<StateLabel, Gauge<i64, AtomicI64>>,
    http_refused: HttpRefusals,
    choker: OnceLock<Arc<Choker>>,
    /// Chunk bytes sent, every role together (for a progress line).
    sent_total: AtomicU64,
    /// Connections open, every role together.
    open_total: AtomicI64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero.
    pub fn new() -> Self {
        let m = Self {
            registry: Mutex::new(Registry::with_prefix("ringswarm")),
            bytes_sent: Family::default(),
            bytes_received: Family::default(),
            chunks_sent: Family::default(),
            requests_refused: Family::default(),
            connections_total: Family::default(),
            connections: Family::default(),
            members: Family::default(),
            member_chunks: Family::default(),
            files: Gauge::default(),
            choke: Family::default(),
            http_refused: HttpRefusals::default(),
            choker: OnceLock::new(),
            sent_total: AtomicU64::new(0),
            open_total: AtomicI64::new(0),
        };
        m.register();
        m.zero_all();
        m
    }

    /// Registers every family under its name and help text.
    fn register(&self) {
        let mut r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        r.register(
            "sent_bytes",
            "Chunk bytes the owner sent, by the client's role",
            self.bytes_sent.clone(),
        );
        r.register(
            "received_bytes",
            "Body bytes the owner received (publishers' manifests), by the client's role",
            self.bytes_received.clone(),
        );
        r.register(
            "sent_chunks",
            "Chunks the owner sent, by the client's role",
            self.chunks_sent.clone(),
        );
        r.register(
            "refused_requests",
            "Connections ended by a refusal (a bad request, a file not shared), by role",
            self.requests_refused.clone(),
        );
        r.register(
            "accepted_connections",
            "Client connections that said hello, by role",
            self.connections_total.clone(),
        );
        r.register(
            "connections",
            "Client connections open now, by role",
            self.connections.clone(),
        );
        r.register(
            "members",
            "Directory members now, by role",
            self.members.clone(),
        );
        r.register(
            "member_chunks",
            "Verified chunks the directory's members hold, as they report them, by role",
            self.member_chunks.clone(),
        );
        r.register("files", "Files in the directory", self.files.clone());
        r.register(
            "choke_connections",
            "Getter connections by choke state (choked, unchoked) and interested ones",
            self.choke.clone(),
        );
        self.http_refused.register(&mut r);
    }

    /// Every label value at 0, so that each family is there from the first scrape.
    fn zero_all(&self) {
        for r in ROLES {
            let label = role(r);
            for f in [
                &self.bytes_sent,
                &self.bytes_received,
                &self.chunks_sent,
                &self.requests_refused,
                &self.connections_total,
            ] {
                let _ = f.get_or_create(&label);
            }
            let _ = self.connections.get_or_create(&label);
        }
        self.zero_members();
        for state in CHOKE_STATES {
            let _ = self.choke.get_or_create(&StateLabel {
                state: state.into(),
            });
        }
    }

    /// The member gauges, every role at 0.
    fn zero_members(&self) {
        self.members.clear();
        self.member_chunks.clear();
        for r in MEMBER_ROLES {
            let label = RoleLabel { role: r.into() };
            let _ = self.members.get_or_create(&label);
            let _ = self.member_chunks.get_or_create(&label);
        }
    }

    /// What this node's HTTP side refused, counted in these metrics.
    pub fn http_refusals(&self) -> HttpRefusals {
        self.http_refused.clone()
    }

    /// The owner's choker, read at each scrape (set once, when the owner starts).
    pub fn set_choker(&self, choker: Arc<Choker>) {
        let _ = self.choker.set(choker);
    }

    /// A publisher (which keeps no directory) published (`delta` 1) or withdrew (-1) a file:
    /// counted in `ringswarm_files`.
    pub fn files_changed(&self, delta: i64) {
        self.files.inc_by(delta);
    }

    /// A chunk of `bytes` was sent to a client of `r`.
    pub fn chunk_sent(&self, r: Role, bytes: u64) {
        self.bytes_sent.get_or_create(&role(r)).inc_by(bytes);
        self.sent_total.fetch_add(bytes, Ordering::Relaxed);
        self.chunks_sent.get_or_create(&role(r)).inc();
    }

    /// A body of `bytes` came from a client of `r`.
    pub fn received(&self, r: Role, bytes: u64) {
        self.bytes_received.get_or_create(&role(r)).inc_by(bytes);
    }

    /// A connection of `r` was ended by a refusal.
    pub fn refused(&self, r: Role) {
        self.requests_refused.get_or_create(&role(r)).inc();
    }

    /// A connection of `r` said hello; open until the guard drops.
    pub fn connection(self: &Arc<Self>, r: Role) -> ConnectionGuard {
        self.connections_total.get_or_create(&role(r)).inc();
        self.connections.get_or_create(&role(r)).inc();
        self.open_total.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard {
            metrics: self.clone(),
            role: r,
        }
    }

    /// Chunk bytes sent so far, and connections open now, every role together.
    pub fn totals(&self) -> (u64, i64) {
        (
            self.sent_total.load(Ordering::Relaxed),
            self.open_total.load(Ordering::Relaxed),
        )
    }

    /// The text exposition, with the gauges read from `directory` (an owner's; `None` for a
    /// publisher, which keeps none) and the choker now.
    pub fn render(&self, directory: Option<&Directory>) -> String {
        self.zero_members();
        if let Some(directory) = directory {
            for p in directory.peers() {
                let label = RoleLabel { role: p.role };
                self.members.get_or_create(&label).inc();
                self.member_chunks
                    .get_or_create(&label)
                    .inc_by(i64::from(p.count));
            }
            self.files
                .set(i64::try_from(directory.file_count()).unwrap_or(i64::MAX));
        }
        if let Some(choker) = self.choker.get() {
            let (conns, unchoked, interested) = choker.counts();
            let set = |state: &str, n: usize| {
                self.choke
                    .get_or_create(&StateLabel {
                        state: state.into(),
                    })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            };
            set("choked", conns - unchoked);
            set("unchoked", unchoked);
            set("interested", interested);
        }
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// An open connection, counted in `ringswarm_connections` until dropped.
pub struct ConnectionGuard {
    metrics: Arc<Metrics>,
    role: Role,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.metrics
            .connections
            .get_or_create(&role(self.role))
            .dec();
        self.metrics.open_total.fetch_sub(1, Ordering::Relaxed);
    }
}
