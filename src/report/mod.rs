//! The run report: `demo --report DIR` leaves `events.jsonl` (the event log), `summary.json`
//! (a [`Summary`]) and `index.html`, which [`write_html`] renders from the other two.
//!
//! The page is self-contained (inline SVG drawn with plotters, inline CSS, no scripts, no
//! fonts to fetch), so it opens offline.
//!
//! - this file: the summary's data model, reading and writing it, and [`write_html`];
//! - `scan`: the two passes over the event log (rows, links, time bins);
//! - `html`: the page and its text formatting;
//! - `charts`: the three charts as SVG.

mod charts;
mod html;
mod replay;
mod scan;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use scan::{Bins, Scan};

/// The event log's file name inside a report directory.
pub const EVENTS_FILE: &str = "events.jsonl";
/// The summary's file name inside a report directory.
pub const SUMMARY_FILE: &str = "summary.json";
/// The page's file name inside a report directory.
pub const INDEX_FILE: &str = "index.html";
/// The dashboard replay's file name inside a report directory.
pub const DASHBOARD_FILE: &str = "dashboard.html";

/// What a run measured, as `summary.json`. Times are seconds; `*_s` fields relative to
/// `started_ts` unless said otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The file distributed.
    pub file: FileInfo,
    /// The owner's address label as it appears in the events' `neighbour` field (e.g.
    /// `127.0.0.1:40001`): a `chunk_received` from it came from the owner, any other from a
    /// neighbour.
    pub owner: String,
    /// One entry per peer, in ring order.
    pub peers: Vec<PeerResult>,
    /// When the run started, in seconds since the Unix epoch (the clock of the events' `ts`).
    pub started_ts: f64,
    /// From the start until the last peer completed, in seconds.
    pub wall_s: f64,
    /// Bytes delivered per second over the run: peers × file size / `wall_s`.
    pub aggregate_bytes_per_s: f64,
    /// Each peer's upload cap in bytes per second, if any.
    #[serde(default)]
    pub rate: Option<u64>,
    /// The owner's upload cap in bytes per second, if any.
    #[serde(default)]
    pub owner_rate: Option<u64>,
    /// The theoretical lower bounds for these caps (only when the run had caps).
    #[serde(default)]
    pub bound: Option<Bound>,
    /// Which peer finished last and which link fed it slowest.
    #[serde(default)]
    pub critical_path: Option<CriticalPath>,
    /// The seed of the run's random choices, if one was given.
    #[serde(default)]
    pub seed: Option<u64>,
}

/// The file a run distributed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// The file's name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Chunk size in bytes (the last chunk may be shorter).
    pub chunk_size: u64,
    /// Number of chunks.
    pub chunks: u32,
}

/// One peer's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerResult {
    /// The peer's label as it appears in the events' `peer` field (its listen address).
    pub peer: String,
    /// Seconds from the start until it held and verified the whole file; `None` if it never did.
    #[serde(default)]
    pub complete_s: Option<f64>,
    /// Chunks it received from the owner.
    pub from_owner: u32,
    /// Chunks it received from ring neighbours.
    pub from_neighbours: u32,
}

/// Lower bounds on the time for the last peer to complete, for the run's caps (README
/// explains the formulas).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bound {
    /// The fluid bound max(S/U_owner, N·S/(U_owner + ΣU_peers)), in seconds.
    pub fluid_s: f64,
    /// The chunked-ring time S/U + (N−1)·c/U, in seconds.
    pub chunked_ring_s: f64,
    /// The measured last-peer completion time divided by `fluid_s` (1.0 is optimal).
    pub ratio: f64,
}

/// Why the run took as long as it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CriticalPath {
    /// The peer that completed last.
    pub last_peer: String,
    /// The node (neighbour address or the owner's) whose link into `last_peer` delivered the
    /// fewest bytes per second.
    pub slowest_link_from: String,
    /// That link's average throughput, in bytes per second.
    pub slowest_link_bytes_per_s: f64,
}

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
    /// `summary.json` is not a [`Summary`].
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

/// Writes `summary` to `dir/summary.json` and returns its path.
///
/// # Errors
///
/// [`ReportError::Io`] when the file cannot be written.
pub fn write_summary(dir: &Path, summary: &Summary) -> Result<PathBuf, ReportError> {
    let path = dir.join(SUMMARY_FILE);
    let json = serde_json::to_vec_pretty(summary).expect("summaries serialize");
    std::fs::write(&path, json).map_err(|source| ReportError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Reads `dir/summary.json`.
///
/// # Errors
///
/// [`ReportError::Io`] when it cannot be read, [`ReportError::BadSummary`] when it is not a
/// [`Summary`].
pub fn read_summary(dir: &Path) -> Result<Summary, ReportError> {
    let path = dir.join(SUMMARY_FILE);
    let text = std::fs::read(&path).map_err(|source| ReportError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|source| ReportError::BadSummary { path, source })
}

/// Renders `dir/index.html` from `dir/summary.json` and `dir/events.jsonl` and returns its
/// path.
///
/// The event log is read twice, a line at a time (once for the time range, the peers and the
/// links, once to count arrivals into time bins), so memory grows with peers × bins, not with
/// the number of events. Only `chunk_received` events are charted; a last line cut short (a
/// run stopped mid-write) is ignored. The page is written to `index.html.tmp` and renamed.
///
/// # Errors
///
/// [`ReportError::Io`] when a file cannot be read or written, [`ReportError::BadSummary`] or
/// [`ReportError::BadEvents`] when the summary or an event line does not parse,
/// [`ReportError::Chart`] when a chart cannot be drawn.
pub fn write_html(dir: &Path) -> Result<PathBuf, ReportError> {
    write_dashboard(dir)?;
    let summary = read_summary(dir)?;
    let events = dir.join(EVENTS_FILE);
    let scan = Scan::read(&events, &summary)?;
    let bins = Bins::read(&events, &summary, &scan)?;
    let html = html::render_page(&summary, &scan, &bins)?;
    write_atomically(dir, INDEX_FILE, &html)
}

/// Writes `DIR/dashboard.html`: the live dashboard's page replaying the run from
/// `events.jsonl` (see `replay`). Returns its path.
///
/// # Errors
///
/// As [`write_html`].
pub fn write_dashboard(dir: &Path) -> Result<PathBuf, ReportError> {
    let summary = read_summary(dir)?;
    let recording = replay::recording(&dir.join(EVENTS_FILE), &summary)?;
    write_atomically(dir, DASHBOARD_FILE, &replay::page(&recording))
}

/// Writes `text` to `DIR/NAME` through a temporary file and a rename.
fn write_atomically(dir: &Path, name: &str, text: &str) -> Result<PathBuf, ReportError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, text).map_err(|source| ReportError::Io {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, &path).map_err(|source| ReportError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}
