//! The run report: `demo --report DIR` leaves `events.jsonl` (the event log), `summary.json`
//! (a [`Summary`]) and `index.html`, which [`write_html`] renders from the other two.
//!
//! The page is self-contained (inline SVG drawn with plotters, inline CSS, no scripts, no
//! fonts to fetch), so it opens offline.
//!
//! - this file: [`write_html`] and [`write_dashboard`];
//! - `summary`: the summary's data model, the file names, reading and writing it;
//! - `error`: [`ReportError`];
//! - `scan`: the two passes over the event log (rows, links, time bins);
//! - `html`: the page and its text formatting;
//! - `charts`: the three charts as SVG.

mod charts;
mod error;
mod html;
mod replay;
mod scan;
mod summary;

use std::path::{Path, PathBuf};

use scan::{Bins, Scan};

pub use error::ReportError;
pub use summary::{
    Bound, CriticalPath, DASHBOARD_FILE, EVENTS_FILE, INDEX_FILE, PeerResult, RunFile,
    SUMMARY_FILE, Summary, read_summary, write_summary,
};

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
