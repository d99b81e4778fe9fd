//! Why a report could not be written.

use std::path::PathBuf;

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file of the report could not be read or written.
    #[error("{path:?}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line of the event log is not an event.
    #[error("{path:?} line {line}: not an event: {source}")]
    BadEvents {
        path: PathBuf,
        line: u64,
        #[source]
        source: serde_json::Error,
    },
    /// `summary.json` is not a [`Summary`](super::summary::Summary).
    #[error("{path:?}: not a run summary: {source}")]
    BadSummary {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A chart could not be drawn.
    #[error("drawing the {chart} chart: {message}")]
    Chart {
        chart: &'static str,
        message: String,
    },
}
