//! A run's summary (`summary.json`): its data model, the report directory's file names, and
//! reading and writing it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::ReportError;

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
    pub file: RunFile,
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
pub struct RunFile {
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
    /// Its own upload cap in bytes per second, when it differs from the run's `rate`
    /// (`demo --slow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_rate: Option<u64>,
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
