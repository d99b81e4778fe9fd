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
//!
//! Here: the module map. `registry` (the owner's [`Metrics`]), `labels` (the label sets and
//! their values), `refusals` ([`HttpRefusals`]), `format` ([`Format`]).

mod format;
mod labels;
mod refusals;
mod registry;

pub use format::{Format, OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};
pub(crate) use labels::{RoleLabel, StateLabel, role};
pub use refusals::{HttpRefusal, HttpRefusals};
pub use registry::{ConnectionGuard, Metrics};

#[cfg(test)]
mod tests;
