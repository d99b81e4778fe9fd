//! The owner's metrics, in the Prometheus text format (`GET /metrics` on `--http`), with the
//! `prometheus-client` crate.
//!
//! Counted as they happen (counters, by the role of the client: `peer`, `joiner`, `getter`,
//! `publisher`): bytes and chunks the owner sent, bytes of chunk and manifest bodies it
//! received (a publisher's manifests; an owner receives no chunks), requests it refused,
//! connections it accepted. Read at each scrape (gauges): connections open by role, directory
//! members by role and the chunks they hold (verified, as they report them), files listed,
//! and the choker's state (getter connections choked, unchoked, interested).
//!
//! A peer's metrics (`peer --http`) are read from its [`Status`] at each scrape
//! ([`render_peer`]): chunks held, verified and refused, bytes received, bytes and chunks sent
//! by the role of the one served (`neighbour`, `getter`), upload connections open by role and
//! its own choker's state, under the same names as the owner's where they mean the same.
//!
//! Both also count what their HTTP side refused ([`HttpRefusals`]: over the connection cap,
//! over one address's connection or event-stream cap).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::choke::Choker;
use crate::directory::Directory;
use crate::peer::{Snapshot, Status};
use crate::protocol::Role;

/// A `role` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabel {
    role: String,
}

/// A choke `state` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

/// A refusal `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

/// Why the HTTP side refused a connection or an event stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpRefusal {
    /// The server already had its most connections open (503).
    Busy,
    /// The client's address already had its most connections open (429).
    AddressConnections,
    /// The client's address already had its most event streams open (429).
    AddressEventStreams,
}

impl HttpRefusal {
    /// Every reason.
    pub const ALL: [HttpRefusal; 3] = [
        HttpRefusal::Busy,
        HttpRefusal::AddressConnections,
        HttpRefusal::AddressEventStreams,
    ];

    /// The `reason` label value.
    pub fn name(self) -> &'static str {
        match self {
            HttpRefusal::Busy => "busy",
            HttpRefusal::AddressConnections => "address_connections",
            HttpRefusal::AddressEventStreams => "address_event_streams",
        }
    }
}

/// What an HTTP side refused, by reason (`ringswarm_http_refused_total{reason}`): shared by
/// the server that counts and the metrics that show it (clones count together).
#[derive(Clone, Debug)]
pub struct HttpRefusals(Family<ReasonLabel, Counter>);

impl Default for HttpRefusals {
    fn default() -> Self {
        let family: Family<ReasonLabel, Counter> = Family::default();
        for r in HttpRefusal::ALL {
            let _ = family.get_or_create(&reason(r));
        }
        Self(family)
    }
}

fn reason(r: HttpRefusal) -> ReasonLabel {
    ReasonLabel {
        reason: r.name().into(),
    }
}

impl HttpRefusals {
    /// Counts one refusal for `r`.
    pub fn count(&self, r: HttpRefusal) {
        self.0.get_or_create(&reason(r)).inc();
    }

    /// How many refusals for `r` so far.
    pub fn get(&self, r: HttpRefusal) -> u64 {
        self.0.get_or_create(&reason(r)).get()
    }

    /// Registers the family in `registry`.
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "http_refused",
            "HTTP connections and event streams refused: over the connection cap (busy), over one client address's connection or event-stream cap",
            self.0.clone(),
        );
    }
}

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

/// The label value of `role`.
fn role(role: Role) -> RoleLabel {
    let name = match role {
        Role::Peer => "peer",
        Role::Neighbour => "neighbour",
        Role::Getter => "getter",
        Role::Query => "query",
        Role::Joiner => "joiner",
        Role::Publisher => "publisher",
    };
    RoleLabel { role: name.into() }
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
        {
            let mut r = m.registry.lock().unwrap_or_else(|p| p.into_inner());
            r.register(
                "sent_bytes",
                "Chunk bytes the owner sent, by the client's role",
                m.bytes_sent.clone(),
            );
            r.register(
                "received_bytes",
                "Body bytes the owner received (publishers' manifests), by the client's role",
                m.bytes_received.clone(),
            );
            r.register(
                "sent_chunks",
                "Chunks the owner sent, by the client's role",
                m.chunks_sent.clone(),
            );
            r.register(
                "refused_requests",
                "Connections ended by a refusal (a bad request, a file not shared), by role",
                m.requests_refused.clone(),
            );
            r.register(
                "accepted_connections",
                "Client connections that said hello, by role",
                m.connections_total.clone(),
            );
            r.register(
                "connections",
                "Client connections open now, by role",
                m.connections.clone(),
            );
            r.register(
                "members",
                "Directory members now, by role",
                m.members.clone(),
            );
            r.register(
                "member_chunks",
                "Verified chunks the directory's members hold, as they report them, by role",
                m.member_chunks.clone(),
            );
            r.register("files", "Files in the directory", m.files.clone());
            r.register(
                "choke_connections",
                "Getter connections by choke state (choked, unchoked) and interested ones",
                m.choke.clone(),
            );
            m.http_refused.register(&mut r);
        }
        m
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
        self.members.clear();
        self.member_chunks.clear();
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

/// A peer's text exposition (OpenMetrics), read from `status` now.
pub fn render_peer(status: &Status) -> String {
    render_peer_with(status, None)
}

/// [`render_peer`], with what its HTTP side refused if given.
pub fn render_peer_with(status: &Status, http: Option<&HttpRefusals>) -> String {
    let s: Snapshot = status.snapshot();
    let mut r = Registry::with_prefix("ringswarm");
    let gauge = |v: u64| {
        let g: Gauge<i64, AtomicI64> = Gauge::default();
        g.set(i64::try_from(v).unwrap_or(i64::MAX));
        g
    };
    let counter = |v: u64| {
        let c: Counter = Counter::default();
        c.inc_by(v);
        c
    };
    let by_role = |neighbour: u64, getter: u64| {
        let f: Family<RoleLabel, Counter> = Family::default();
        f.get_or_create(&role(Role::Neighbour)).inc_by(neighbour);
        f.get_or_create(&role(Role::Getter)).inc_by(getter);
        f
    };
    r.register(
        "held_chunks",
        "Verified chunks this peer holds",
        gauge(u64::from(s.held)),
    );
    r.register(
        "file_chunks",
        "Chunks in the file (0 until the manifest is known)",
        gauge(u64::from(s.total)),
    );
    r.register(
        "verified_chunks",
        "Chunks received, verified against the manifest and stored in this run",
        counter(s.verified),
    );
    r.register(
        "refused_chunks",
        "Chunks received that failed verification (refused and fetched again)",
        counter(s.refused),
    );
    r.register(
        "received_bytes",
        "Bytes of verified chunks received in this run",
        counter(s.fetched_bytes),
    );
    r.register(
        "sent_bytes",
        "Chunk bytes this peer sent, by the role of the one served",
        by_role(s.sent_neighbour_bytes, s.sent_getter_bytes),
    );
    r.register(
        "sent_chunks",
        "Chunks this peer sent, by the role of the one served",
        by_role(s.sent_neighbour_chunks, s.sent_getter_chunks),
    );
    let open: Family<RoleLabel, Gauge<i64, AtomicI64>> = Family::default();
    for (r, n) in [
        (Role::Neighbour, s.neighbour_connections),
        (Role::Getter, s.getter_connections),
    ] {
        open.get_or_create(&role(r))
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    r.register("connections", "Upload connections open now, by role", open);
    let choke: Family<StateLabel, Gauge<i64, AtomicI64>> = Family::default();
    for (state, n) in [
        ("choked", s.choked),
        ("unchoked", s.unchoked),
        ("interested", s.interested),
    ] {
        choke
            .get_or_create(&StateLabel {
                state: state.into(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    r.register(
        "choke_connections",
        "Getter connections by choke state (choked, unchoked) and interested ones",
        choke,
    );
    if let Some(http) = http {
        http.register(&mut r);
    }
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &r)
        .expect("writing to a String cannot fail");
    out
}

/// The content type of OpenMetrics text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_render_in_the_text_format() {
        let m = Arc::new(Metrics::new());
        m.chunk_sent(Role::Getter, 1000);
        m.chunk_sent(Role::Getter, 24);
        m.chunk_sent(Role::Peer, 5);
        m.refused(Role::Peer);
        let open = m.connection(Role::Joiner);
        let d = Directory::new(
            vec![Arc::new(crate::manifest::Manifest::for_tests(10))],
            "127.0.0.1:1".parse().unwrap(),
            crate::directory::DEFAULT_PEER_TTL,
        );
        let m10 = crate::manifest::Manifest::for_tests(10);
        let mut held = crate::chunkset::ChunkSet::new(10);
        held.insert(m10.chunk_id(3).unwrap());
        d.register(0, "127.0.0.1:9".parse().unwrap(), Role::Getter, held, None);
        let text = m.render(Some(&d));
        for line in [
            "# TYPE ringswarm_sent_bytes counter",
            "ringswarm_sent_bytes_total{role=\"getter\"} 1024",
            "ringswarm_sent_chunks_total{role=\"getter\"} 2",
            "ringswarm_sent_bytes_total{role=\"peer\"} 5",
            "ringswarm_refused_requests_total{role=\"peer\"} 1",
            "ringswarm_connections{role=\"joiner\"} 1",
            "ringswarm_members{role=\"getter\"} 1",
            "ringswarm_member_chunks{role=\"getter\"} 1",
            "ringswarm_files 1",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
        drop(open);
        let text = m.render(Some(&d));
        assert!(
            text.contains("ringswarm_connections{role=\"joiner\"} 0"),
            "{text}"
        );
    }
}
