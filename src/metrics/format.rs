//! The two formats of a `/metrics` answer ([`Format`]): negotiated from the scrape's
//! `Accept` header, and the classic text form converted from OpenMetrics.

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

    /// `openmetrics` (as [`Metrics::render`](super::Metrics::render) and a peer's status write it) in this format.
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

#[cfg(test)]
mod tests {
    use super::*;

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
