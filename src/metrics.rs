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
//! A peer's metrics (`peer --http`) are read from its status at each scrape
//! (`peer::Status::render_metrics`, beside its data): chunks held, verified and refused, bytes received, bytes and chunks sent
//! by the role of the one served (`neighbour`, `getter`), upload connections open by role and
//! its own choker's state, under the same names as the owner's where they mean the same.
//!
//! Both also count what their HTTP side refused ([`HttpRefusals`]: over the connection cap,
//! over one address's connection or event-stream cap). Every family is there from the first
//! scrape, each label value it can take at 0.
//!
//! **Two formats** ([`Format`]), negotiated from the scrape's `Accept` header the way
//! Prometheus's own Go client does: OpenMetrics 1.0.0 only when the header asks for
//! `application/openmetrics-text` (Prometheus itself does), else the classic text format
//! 0.0.4 (`text/plain; version=0.0.4`), which `promtool check metrics` and older tools read.
//! `prometheus-client` writes only OpenMetrics, so the classic form is converted from it
//! ([`Format::encode`]): a counter's `# HELP`/`# TYPE` name its `_total` samples, `# UNIT`
//! and `# EOF` go.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::choke::Choker;
use crate::directory::Directory;
use crate::protocol::Role;

/// A `role` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RoleLabel {
    role: String,
}

/// A choke `state` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StateLabel {
    pub(crate) state: String,
}

/// A refusal `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

/// Every role a client can say `hello` with: each is exported (at 0) from the start.
const ROLES: [Role; 6] = [
    Role::Peer,
    Role::Neighbour,
    Role::Getter,
    Role::Query,
    Role::Joiner,
    Role::Publisher,
];

/// Every role a directory member is listed with (`crate::directory::PeerInfo::role`).
const MEMBER_ROLES: [&str; 4] = ["peer", "getter", "query", "publisher"];

/// Every choke `state` label value.
const CHOKE_STATES: [&str; 3] = ["choked", "unchoked", "interested"];

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
    pub(crate) fn register(&self, registry: &mut Registry) {
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
pub(crate) fn role(role: Role) -> RoleLabel {
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
        // Every label value at 0, so that each family is there from the first scrape.
        for r in ROLES {
            let label = role(r);
            for f in [
                &m.bytes_sent,
                &m.bytes_received,
                &m.chunks_sent,
                &m.requests_refused,
                &m.connections_total,
            ] {
                let _ = f.get_or_create(&label);
            }
            let _ = m.connections.get_or_create(&label);
        }
        m.zero_members();
        for state in CHOKE_STATES {
            let _ = m.choke.get_or_create(&StateLabel {
                state: state.into(),
            });
        }
        m
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

/// The content type of the classic Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of OpenMetrics text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A `/metrics` answer's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The classic Prometheus text format, version 0.0.4: the default.
    Text,
    /// OpenMetrics 1.0.0 text, for a scraper that asks for it.
    OpenMetrics,
}

impl Format {
    /// The format for a request's `Accept` header, chosen as Prometheus's Go client does
    /// (`expfmt.NegotiateIncludingOpenMetrics`): the media ranges in order of preference
    /// (`q`, highest first; `q=0` is refused), the first that is `text/plain` of version 0.0.4
    /// or none, or `application/openmetrics-text` of version 1.0.0, 0.0.1 or none, wins;
    /// without one (no header, `*/*`, anything else) the classic text format.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let mut ranges: Vec<(f64, Option<Format>)> = accept
            .unwrap_or_default()
            .split(',')
            .map(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media = parts.next().unwrap_or_default().to_ascii_lowercase();
                let (mut q, mut version) = (1.0, None);
                for p in parts {
                    let Some((k, v)) = p.split_once('=') else {
                        continue;
                    };
                    let v = v.trim().trim_matches('"');
                    match k.trim().to_ascii_lowercase().as_str() {
                        "q" => q = v.parse().unwrap_or(0.0),
                        "version" => version = Some(v.to_string()),
                        _ => {}
                    }
                }
                let format = match (media.as_str(), version.as_deref()) {
                    ("text/plain", None | Some("0.0.4")) => Some(Format::Text),
                    ("application/openmetrics-text", None | Some("1.0.0" | "0.0.1")) => {
                        Some(Format::OpenMetrics)
                    }
                    _ => None,
                };
                (q, format)
            })
            .filter(|&(q, _)| q > 0.0)
            .collect();
        // Stable: among equal preferences, the header's order.
        ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
        ranges
            .into_iter()
            .find_map(|(_, f)| f)
            .unwrap_or(Format::Text)
    }

    /// The answer's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }

    /// `openmetrics` (as [`Metrics::render`] and a peer's status write it) in this format.
    ///
    /// The classic form differs from what `prometheus-client` writes only in names and
    /// markers: a counter family's `# HELP` and `# TYPE` name its samples (`foo_total`, not
    /// `foo`), an `unknown` type is `untyped`, and `# UNIT`, `# EOF`, a counter's `_created`
    /// samples and exemplars (`… # {…}`) have no place in it. Help texts and label values
    /// are ours, with no characters either format escapes.
    pub fn encode(self, openmetrics: String) -> String {
        match self {
            Format::OpenMetrics => openmetrics,
            Format::Text => to_classic_text(&openmetrics),
        }
    }
}

/// [`Format::encode`] to the classic text format.
fn to_classic_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len() + 256);
    // The family being read: its name as OpenMetrics gives it, and whether a counter.
    let mut family = String::new();
    let mut counter = false;
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            family = name.to_string();
            counter = kind == "counter";
            let (name, kind) = match kind {
                "counter" if !name.ends_with("_total") => (format!("{name}_total"), kind),
                "unknown" => (name.to_string(), "untyped"),
                _ => (name.to_string(), kind),
            };
            if let Some(help) = help.take() {
                let text = help.split_once(' ').map_or("", |(_, t)| t);
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        if line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        if counter && line.starts_with(&format!("{family}_created")) {
            continue;
        }
        let sample = line.split_once(" # ").map_or(line, |(s, _)| s);
        out.push_str(sample);
        out.push('\n');
    }
    out
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

    /// The families of `text` (classic or OpenMetrics): per `# TYPE` name, its type, whether
    /// it has a `# HELP`, and its samples.
    fn families(text: &str) -> Vec<(String, String, bool, Vec<String>)> {
        let mut out: Vec<(String, String, bool, Vec<String>)> = Vec::new();
        let mut helped = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                helped.push(rest.split(' ').next().unwrap().to_string());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                out.push((
                    name.into(),
                    kind.into(),
                    helped.contains(&name.to_string()),
                    vec![],
                ));
            } else if !line.starts_with('#') && !line.is_empty() {
                out.last_mut().unwrap().3.push(line.to_string());
            }
        }
        out
    }

    /// Issue 19: at the first scrape every family is there with every label value at 0, and
    /// the classic form names a counter's HELP and TYPE as its `_total` samples.
    #[test]
    fn every_family_is_there_from_the_start_in_both_formats() {
        let m = Metrics::new();
        let open = m.render(None);
        let classic = Format::Text.encode(open.clone());
        let names = [
            "sent_bytes",
            "received_bytes",
            "sent_chunks",
            "refused_requests",
            "accepted_connections",
            "http_refused",
        ];
        let gauges = [
            "connections",
            "members",
            "member_chunks",
            "files",
            "choke_connections",
        ];
        let om = families(&open);
        let text = families(&classic);
        assert_eq!(om.len(), names.len() + gauges.len(), "{open}");
        assert_eq!(text.len(), om.len(), "{classic}");
        for n in names {
            let total = format!("ringswarm_{n}_total");
            let f = text
                .iter()
                .find(|f| f.0 == total)
                .unwrap_or_else(|| panic!("{total} in {classic}"));
            assert_eq!(f.1, "counter");
            assert!(f.2, "{total} has a HELP");
            assert!(
                f.3.iter().all(|s| s.starts_with(&format!("{total}{{"))),
                "{f:?}"
            );
            assert!(
                om.iter()
                    .any(|f| f.0 == format!("ringswarm_{n}") && f.1 == "counter")
            );
        }
        for g in gauges {
            let name = format!("ringswarm_{g}");
            let f = text.iter().find(|f| f.0 == name).unwrap();
            assert_eq!(f.1, "gauge");
            assert!(f.2 && !f.3.is_empty(), "{f:?}");
        }
        for line in [
            "ringswarm_sent_bytes_total{role=\"getter\"} 0",
            "ringswarm_accepted_connections_total{role=\"publisher\"} 0",
            "ringswarm_connections{role=\"joiner\"} 0",
            "ringswarm_members{role=\"peer\"} 0",
            "ringswarm_member_chunks{role=\"publisher\"} 0",
            "ringswarm_choke_connections{state=\"interested\"} 0",
            "ringswarm_http_refused_total{reason=\"address_event_streams\"} 0",
            "ringswarm_files 0",
        ] {
            assert!(
                classic.lines().any(|l| l == line),
                "{line} not in:\n{classic}"
            );
            assert!(open.lines().any(|l| l == line), "{line} not in:\n{open}");
        }
        assert!(open.ends_with("# EOF\n"));
        assert!(
            !classic.contains("# EOF") && !classic.contains("# UNIT"),
            "{classic}"
        );
    }

    #[test]
    fn the_classic_form_renames_counters_and_drops_openmetrics_only_lines() {
        let open = "# HELP a_b Some help.\n# TYPE a_b counter\n# UNIT a_b bytes\n\
                    a_b_total{x=\"1\"} 3 # {trace=\"t\"} 1\na_b_created 17\n\
                    # HELP c Gauge.\n# TYPE c gauge\nc 2\n\
                    # HELP d What.\n# TYPE d unknown\nd 1\n# EOF\n";
        assert_eq!(
            Format::Text.encode(open.into()),
            "# HELP a_b_total Some help.\n# TYPE a_b_total counter\na_b_total{x=\"1\"} 3\n\
             # HELP c Gauge.\n# TYPE c gauge\nc 2\n\
             # HELP d What.\n# TYPE d untyped\nd 1\n"
        );
        assert_eq!(Format::OpenMetrics.encode(open.into()), open);
    }

    /// As Prometheus's Go client negotiates (`expfmt.NegotiateIncludingOpenMetrics`).
    #[test]
    fn the_format_is_negotiated_from_accept() {
        use Format::{OpenMetrics, Text};
        for (accept, want) in [
            (None, Text),
            (Some(""), Text),
            (Some("*/*"), Text),
            (Some("text/plain; version=0.0.4"), Text),
            (Some("text/plain;version=0.0.4;q=0.9,*/*;q=0.1"), Text),
            (Some("application/json"), Text),
            (Some("application/openmetrics-text"), OpenMetrics),
            (
                Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                OpenMetrics,
            ),
            (
                Some("Application/OpenMetrics-Text;Version=0.0.1"),
                OpenMetrics,
            ),
            (Some("application/openmetrics-text; version=2.0.0"), Text),
            // What Prometheus 2.x sends.
            (
                Some(
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                OpenMetrics,
            ),
            (
                Some("text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0"),
                OpenMetrics,
            ),
            (
                Some("application/openmetrics-text;q=0.3,text/plain;version=0.0.4;q=0.5"),
                Text,
            ),
            (Some("application/openmetrics-text;q=0,*/*"), Text),
        ] {
            assert_eq!(Format::negotiate(accept), want, "{accept:?}");
        }
        assert!(Text.content_type().starts_with("text/plain; version=0.0.4"));
        assert!(
            OpenMetrics
                .content_type()
                .starts_with("application/openmetrics-text; version=1.0.0")
        );
    }
}
