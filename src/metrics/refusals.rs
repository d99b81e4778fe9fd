//! What a node's HTTP side refused ([`HttpRefusals`]), by reason: a family an owner's and a
//! peer's metrics both register.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

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
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "http_refused",
            "HTTP connections and event streams refused: over the connection cap (busy), over one client address's connection or event-stream cap",
            self.0.clone(),
        );
    }
}
