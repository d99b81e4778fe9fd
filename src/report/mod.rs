//! The run report: `demo --report DIR` leaves `events.jsonl` (the event log), `summary.json`
//! (a [`Summary`]) and `index.html`, which [`write_html`] renders from the other two.
//!
//! The page is self-contained (inline SVG drawn with plotters, inline CSS, no scripts, no
//! fonts to fetch), so it opens offline.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::events::{Event, EventKind};

/// The event log's file name inside a report directory.
pub const EVENTS_FILE: &str = "events.jsonl";
/// The summary's file name inside a report directory.
pub const SUMMARY_FILE: &str = "summary.json";
/// The page's file name inside a report directory.
pub const INDEX_FILE: &str = "index.html";

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

/// Time columns of the arrivals heatmap, and points of each chunks-held line.
const ARRIVAL_BINS: usize = 200;
/// Time bins of the per-link throughput lines.
const LINK_BINS: usize = 40;
/// Past this many series a chart colours lines by kind and names none of them.
const LEGEND_MAX: usize = 12;
/// Width of every chart, in pixels (the page scales it down on narrow screens).
const CHART_WIDTH: u32 = 1100;

/// Chunks from the owner.
const OWNER_RGB: RGBColor = RGBColor(31, 119, 180);
/// Chunks from a ring neighbour.
const NEIGHBOUR_RGB: RGBColor = RGBColor(255, 127, 14);
/// Line colours when each series is named (matplotlib's tab10).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
const FONT: &str = "sans-serif";

type DrawResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

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
    let summary = read_summary(dir)?;
    let events = dir.join(EVENTS_FILE);
    let scan = Scan::read(&events, &summary)?;
    let bins = Bins::read(&events, &summary, &scan)?;
    let html = render_page(&summary, &scan, &bins)?;
    let path = dir.join(INDEX_FILE);
    let tmp = dir.join(format!("{INDEX_FILE}.tmp"));
    std::fs::write(&tmp, html).map_err(|source| ReportError::Io {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, &path).map_err(|source| ReportError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Calls `f` with every `chunk_received` event of the log at `path`, a line at a time, and
/// returns the number of lines read.
fn for_each_received(path: &Path, mut f: impl FnMut(&Event)) -> Result<u64, ReportError> {
    let io = |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = BufReader::with_capacity(64 * 1024, File::open(path).map_err(io)?);
    let mut line = String::new();
    let mut number = 0u64;
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(io)? == 0 {
            return Ok(number);
        }
        number += 1;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<Event>(text) {
            Ok(ev) if ev.event == EventKind::ChunkReceived => f(&ev),
            Ok(_) => {}
            // A last line without its newline was cut short by a stopped run.
            Err(_) if !line.ends_with('\n') => return Ok(number),
            Err(source) => {
                return Err(ReportError::BadEvents {
                    path: path.to_path_buf(),
                    line: number,
                    source,
                });
            }
        }
    }
}

/// What the first pass over the log learns: rows, links, the time axis.
#[derive(Debug)]
struct Scan {
    /// One row per peer: the summary's peers in order, then any other receiver in the log.
    rows: Vec<String>,
    row_of: HashMap<String, usize>,
    /// Per row, the nodes it received from and each link's index into `links`.
    row_links: Vec<Vec<(String, usize)>>,
    /// Every link as (receiving row, sender label), ordered by row, the owner's first.
    links: Vec<(usize, String)>,
    /// The charts' time axis, seconds since the start.
    t0: f64,
    t1: f64,
    /// Lines in the log and `chunk_received` events among them.
    lines: u64,
    received: u64,
    /// Bytes those events carried.
    received_bytes: u64,
}

impl Scan {
    fn read(events: &Path, summary: &Summary) -> Result<Self, ReportError> {
        let mut scan = Scan {
            rows: Vec::new(),
            row_of: HashMap::new(),
            row_links: Vec::new(),
            links: Vec::new(),
            t0: 0.0,
            t1: 0.0,
            lines: 0,
            received: 0,
            received_bytes: 0,
        };
        for p in &summary.peers {
            scan.row(&p.peer);
        }
        let mut t_min = f64::INFINITY;
        let mut t_max = f64::NEG_INFINITY;
        scan.lines = for_each_received(events, |ev| {
            let t = ev.ts - summary.started_ts;
            if t.is_finite() {
                t_min = t_min.min(t);
                t_max = t_max.max(t);
            }
            scan.received += 1;
            scan.received_bytes += ev.bytes.unwrap_or(0);
            let r = scan.row(&ev.peer);
            if !scan.row_links[r]
                .iter()
                .any(|(from, _)| *from == ev.neighbour)
            {
                scan.row_links[r].push((ev.neighbour.clone(), 0));
            }
        })?;
        // Number the links: by row, the owner's link first, then by sender.
        for (r, links) in scan.row_links.iter_mut().enumerate() {
            links.sort_by(|a, b| (a.0 != summary.owner, &a.0).cmp(&(b.0 != summary.owner, &b.0)));
            for (from, index) in links.iter_mut() {
                *index = scan.links.len();
                scan.links.push((r, from.clone()));
            }
        }
        let completions = summary.peers.iter().filter_map(|p| p.complete_s);
        let ends = [summary.wall_s, t_max].into_iter().chain(completions);
        scan.t0 = t_min.min(0.0);
        scan.t1 = ends.filter(|t| t.is_finite()).fold(scan.t0, f64::max);
        if scan.t1 <= scan.t0 {
            scan.t1 = scan.t0 + 1.0;
        }
        Ok(scan)
    }

    /// The row of `peer`, added if new.
    fn row(&mut self, peer: &str) -> usize {
        if let Some(&r) = self.row_of.get(peer) {
            return r;
        }
        self.rows.push(peer.to_string());
        self.row_links.push(Vec::new());
        self.row_of.insert(peer.to_string(), self.rows.len() - 1);
        self.rows.len() - 1
    }

    fn link(&self, row: usize, from: &str) -> Option<usize> {
        self.row_links[row]
            .iter()
            .find(|(f, _)| f == from)
            .map(|&(_, i)| i)
    }
}

/// What the second pass counts into time bins.
#[derive(Debug)]
struct Bins {
    /// `[from owner, from neighbours]` arrivals per row (`ARRIVAL_BINS` per row).
    arrivals: Vec<[u32; 2]>,
    /// Bytes received per link (`LINK_BINS` per link).
    link_bytes: Vec<u64>,
}

impl Bins {
    fn read(events: &Path, summary: &Summary, scan: &Scan) -> Result<Self, ReportError> {
        let mut bins = Bins {
            arrivals: vec![[0; 2]; scan.rows.len() * ARRIVAL_BINS],
            link_bytes: vec![0; scan.links.len() * LINK_BINS],
        };
        for_each_received(events, |ev| {
            // The first pass saw every event; a log that grew since may hold new names.
            let Some(&r) = scan.row_of.get(&ev.peer) else {
                return;
            };
            let t = ev.ts - summary.started_ts;
            let source = usize::from(ev.neighbour != summary.owner);
            let b = bin_of(t, scan.t0, scan.t1, ARRIVAL_BINS);
            bins.arrivals[r * ARRIVAL_BINS + b][source] += 1;
            if let Some(l) = scan.link(r, &ev.neighbour) {
                let b = bin_of(t, scan.t0, scan.t1, LINK_BINS);
                bins.link_bytes[l * LINK_BINS + b] += ev.bytes.unwrap_or(0);
            }
        })?;
        Ok(bins)
    }

    fn row(&self, r: usize) -> &[[u32; 2]] {
        &self.arrivals[r * ARRIVAL_BINS..(r + 1) * ARRIVAL_BINS]
    }

    fn link(&self, l: usize) -> &[u64] {
        &self.link_bytes[l * LINK_BINS..(l + 1) * LINK_BINS]
    }
}

/// The bin of `n` across `[t0, t1]` that holds `t` (clamped to the first and last).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn bin_of(t: f64, t0: f64, t1: f64, n: usize) -> usize {
    let x = ((t - t0) / (t1 - t0) * n as f64).floor();
    if x.is_nan() || x < 0.0 {
        0
    } else {
        (x as usize).min(n - 1)
    }
}

/// The left edge of bin `b` of `n` across `[t0, t1]`.
fn bin_start(b: usize, t0: f64, t1: f64, n: usize) -> f64 {
    t0 + (t1 - t0) * b as f64 / n as f64
}

fn render_page(summary: &Summary, scan: &Scan, bins: &Bins) -> Result<String, ReportError> {
    let chart = |chart: &'static str| {
        move |e: Box<dyn std::error::Error>| ReportError::Chart {
            chart,
            message: e.to_string(),
        }
    };
    let arrivals = draw_arrivals(summary, scan, bins).map_err(chart("arrivals"))?;
    let completion = draw_completion(summary, scan, bins).map_err(chart("completion"))?;
    let links = draw_links(summary, scan, bins).map_err(chart("links"))?;

    let mut h = String::with_capacity(arrivals.len() + completion.len() + links.len() + 8192);
    let name = escape(&summary.file.name);
    let _ = write!(
        h,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ringswarm report: {name}</title>
<style>
body {{ font-family: sans-serif; color: #222; max-width: 1150px; margin: 2em auto; padding: 0 1em; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.25em 0.9em; text-align: left; }}
td.n, th.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
figure {{ margin: 2em 0; }}
figure svg {{ max-width: 100%; height: auto; }}
figcaption {{ color: #444; margin-top: 0.4em; }}
.sw {{ display: inline-block; width: 0.9em; height: 0.9em; vertical-align: -0.1em; margin: 0 0.3em 0 0.8em; }}
</style>
</head>
<body>
<h1>ringswarm report: {name}</h1>
<p>From <code>{SUMMARY_FILE}</code> and <code>{EVENTS_FILE}</code> ({} lines, {} chunk arrivals, {}).</p>
<h2>Run</h2>
<table id="summary">
"#,
        scan.lines,
        scan.received,
        fmt_bytes(scan.received_bytes as f64)
    );
    let mut row = |k: &str, v: String| {
        let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(&v));
    };
    let f = &summary.file;
    row("file", f.name.clone());
    row(
        "size",
        format!("{} ({} bytes)", fmt_bytes(f.size as f64), f.size),
    );
    row(
        "chunks",
        format!("{} × {}", f.chunks, fmt_bytes(f.chunk_size as f64)),
    );
    row("peers", summary.peers.len().to_string());
    row("owner", summary.owner.clone());
    let cap = |c: Option<u64>| c.map_or("none".into(), |c| fmt_rate(c as f64));
    row("upload cap per peer", cap(summary.rate));
    row("owner upload cap", cap(summary.owner_rate));
    row(
        "seed",
        summary.seed.map_or("none".into(), |s| s.to_string()),
    );
    row(
        "wall time (start → last peer complete)",
        fmt_secs(summary.wall_s),
    );
    row(
        "aggregate throughput",
        fmt_rate(summary.aggregate_bytes_per_s),
    );
    if let Some(b) = &summary.bound {
        row("fluid lower bound", fmt_secs(b.fluid_s));
        row("chunked-ring time", fmt_secs(b.chunked_ring_s));
        row("measured / fluid bound", format!("{:.3}", b.ratio));
    }
    if let Some(c) = &summary.critical_path {
        row("last peer", c.last_peer.clone());
        row(
            "slowest link into it",
            format!(
                "from {} at {}",
                label(summary, &c.slowest_link_from),
                fmt_rate(c.slowest_link_bytes_per_s)
            ),
        );
    }
    let incomplete = summary
        .peers
        .iter()
        .filter(|p| p.complete_s.is_none())
        .count();
    if incomplete > 0 {
        row("peers that did not complete", incomplete.to_string());
    }
    h.push_str("</table>\n<h2>Charts</h2>\n");
    let swatch =
        |c: RGBColor| format!("<span class=\"sw\" style=\"background:{}\"></span>", hex(c));
    let _ = write!(
        h,
        "<figure id=\"arrivals\">\n{arrivals}<figcaption>Chunk arrivals per peer over time: each \
         cell counts the chunks a peer received in one of {ARRIVAL_BINS} time slices, darker for \
         more. {}from the owner {}from a ring neighbour (mixed colours: both in one slice) \
         <span class=\"sw\" style=\"background:#000;width:0.2em\"></span>peer complete\
         </figcaption>\n</figure>\n",
        swatch(OWNER_RGB),
        swatch(NEIGHBOUR_RGB)
    );
    let _ = write!(
        h,
        "<figure id=\"completion\">\n{completion}<figcaption>Top: peers holding the whole file \
         over time{}. Bottom: chunks each peer held over time (arrivals logged; chunks a peer \
         had before the run are not counted).</figcaption>\n</figure>\n",
        if summary.bound.is_some() {
            ", with the fluid lower bound and the chunked-ring time"
        } else {
            ""
        }
    );
    let _ = write!(
        h,
        "<figure id=\"links\">\n{links}<figcaption>Throughput of each link (sender → receiving \
         peer) over time: bytes received in each of {LINK_BINS} time slices.</figcaption>\n\
         </figure>\n"
    );
    h.push_str(
        "<h2>Peers</h2>\n<table id=\"peers\">\n<tr><th>peer</th><th class=\"n\">complete</th>\
         <th class=\"n\">chunks from owner</th><th class=\"n\">chunks from neighbours</th></tr>\n",
    );
    for p in &summary.peers {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&p.peer),
            p.complete_s.map_or("did not complete".into(), fmt_secs),
            p.from_owner,
            p.from_neighbours
        );
    }
    h.push_str("</table>\n</body>\n</html>\n");
    Ok(h)
}

/// A node's label for people: `owner` for the owner's address.
fn label(summary: &Summary, node: &str) -> String {
    if node == summary.owner {
        format!("owner ({node})")
    } else {
        node.to_string()
    }
}

/// `s` with the characters HTML gives meaning to replaced by entities.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

fn fmt_bytes(n: f64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n.abs() < 1024.0 {
        return format!("{n:.0} B");
    }
    let mut v = n / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v.abs() < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

fn fmt_rate(bytes_per_s: f64) -> String {
    format!("{}/s", fmt_bytes(bytes_per_s))
}

fn fmt_secs(s: f64) -> String {
    format!("{s:.3} s")
}

/// Tick labels for seconds with as many decimals as the axis span needs.
fn secs_formatter(span: f64) -> impl Fn(&f64) -> String {
    let step = span / 10.0;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let decimals = if step > 0.0 && step.is_finite() {
        (-step.log10()).ceil().clamp(0.0, 6.0) as usize
    } else {
        0
    };
    move |x| format!("{x:.decimals$}")
}

/// Mixes the owner and neighbour colours by the share of owner chunks.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn source_colour(owner_share: f64) -> RGBColor {
    let mix = |a: u8, b: u8| {
        (f64::from(a) * owner_share + f64::from(b) * (1.0 - owner_share)).round() as u8
    };
    RGBColor(
        mix(OWNER_RGB.0, NEIGHBOUR_RGB.0),
        mix(OWNER_RGB.1, NEIGHBOUR_RGB.1),
        mix(OWNER_RGB.2, NEIGHBOUR_RGB.2),
    )
}

/// Pixels for a y-axis label area that fits labels of these lengths in chars at `font_px`.
#[allow(clippy::cast_possible_truncation)]
fn label_area(labels: impl Iterator<Item = usize>, font_px: f64) -> u32 {
    let longest = labels.max().unwrap_or(4) as f64;
    (longest * font_px * 0.5 + 20.0).clamp(50.0, 400.0) as u32
}

fn draw_arrivals(summary: &Summary, scan: &Scan, bins: &Bins) -> DrawResult<String> {
    let rows = scan.rows.len().max(1);
    let row_px = match rows {
        0..=20 => 26,
        21..=50 => 12,
        _ => 7,
    };
    let height = u32::try_from(120 + rows * row_px)?;
    let rows_u32 = u32::try_from(rows)?;
    // Row r is drawn at y = rows - 1 - r, so the first peer is at the top.
    let y_of = |r: usize| rows_u32 - 1 - u32::try_from(r).unwrap_or(0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (CHART_WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let label_px = label_area(scan.rows.iter().map(|r| r.chars().count()), 15.0);
        let mut chart = ChartBuilder::on(&root)
            .caption("Chunk arrivals per peer", (FONT, 22))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(label_px)
            .build_cartesian_2d(scan.t0..scan.t1, (0..rows_u32).into_segmented())?;
        let fmt_x = secs_formatter(scan.t1 - scan.t0);
        let fmt_y = |v: &SegmentValue<u32>| match v {
            SegmentValue::CenterOf(y) if *y < rows_u32 => {
                let r = (rows_u32 - 1 - y) as usize;
                scan.rows.get(r).cloned().unwrap_or_default()
            }
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_labels(12)
            .y_labels(rows.min(40))
            .x_label_formatter(&fmt_x)
            .y_label_formatter(&fmt_y)
            .x_desc("seconds since start")
            .y_desc("peer")
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 16))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        let max = bins
            .arrivals
            .iter()
            .map(|c| c[0] + c[1])
            .max()
            .unwrap_or(0)
            .max(1);
        for r in 0..scan.rows.len() {
            let y = y_of(r);
            let cells = bins.row(r).iter().enumerate().filter_map(|(b, c)| {
                let n = c[0] + c[1];
                if n == 0 {
                    return None;
                }
                let colour = source_colour(f64::from(c[0]) / f64::from(n))
                    .mix(0.35 + 0.65 * f64::from(n) / f64::from(max));
                let x0 = bin_start(b, scan.t0, scan.t1, ARRIVAL_BINS);
                let x1 = bin_start(b + 1, scan.t0, scan.t1, ARRIVAL_BINS);
                let mut rect = Rectangle::new(
                    [
                        (x0, SegmentValue::Exact(y)),
                        (x1, SegmentValue::Exact(y + 1)),
                    ],
                    colour.filled(),
                );
                rect.set_margin(1, 1, 0, 0);
                Some(rect)
            });
            chart.draw_series(cells)?;
        }
        let marks = summary.peers.iter().filter_map(|p| {
            let t = p.complete_s?;
            let y = y_of(*scan.row_of.get(&p.peer)?);
            Some(PathElement::new(
                vec![(t, SegmentValue::Exact(y)), (t, SegmentValue::Exact(y + 1))],
                BLACK.stroke_width(2),
            ))
        });
        chart.draw_series(marks)?;
        root.present()?;
    }
    Ok(svg)
}

fn draw_completion(summary: &Summary, scan: &Scan, bins: &Bins) -> DrawResult<String> {
    let mut t1 = scan.t1;
    if let Some(b) = &summary.bound {
        for t in [b.fluid_s, b.chunked_ring_s] {
            if t.is_finite() {
                t1 = t1.max(t * 1.02);
            }
        }
    }
    let t0 = scan.t0;
    let fmt_x = secs_formatter(t1 - t0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (CHART_WIDTH, 760)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, bottom) = root.split_vertically(320);

        // Peers complete over time: a step up at each completion.
        let peers = u32::try_from(summary.peers.len())?;
        let mut done: Vec<f64> = summary.peers.iter().filter_map(|p| p.complete_s).collect();
        done.sort_by(f64::total_cmp);
        let mut steps = vec![(t0, 0u32)];
        for (k, &t) in (0u32..).zip(&done) {
            steps.push((t, k));
            steps.push((t, k + 1));
        }
        steps.push((t1, u32::try_from(done.len())?));
        let mut chart = ChartBuilder::on(&top)
            .caption("Completion", (FONT, 22))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(t0..t1, 0..peers.max(1) + 1)?;
        chart
            .configure_mesh()
            .x_labels(12)
            .y_labels(10)
            .x_label_formatter(&fmt_x)
            .x_desc("seconds since start")
            .y_desc("peers complete")
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 16))
            .draw()?;
        chart
            .draw_series(LineSeries::new(steps, BLACK.stroke_width(2)))?
            .label("peers complete")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
        if let Some(b) = &summary.bound {
            let top_y = peers.max(1) + 1;
            for (t, name, colour) in [
                (b.fluid_s, "fluid lower bound", RGBColor(214, 39, 40)),
                (
                    b.chunked_ring_s,
                    "chunked-ring time",
                    RGBColor(127, 127, 127),
                ),
            ] {
                if !t.is_finite() {
                    continue;
                }
                let style = colour.stroke_width(2);
                chart
                    .draw_series(DashedLineSeries::new([(t, 0), (t, top_y)], 6, 4, style))?
                    .label(format!("{name} {}", fmt_secs(t)))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .label_font((FONT, 15))
            .draw()?;

        // Chunks held per peer: cumulative arrivals at the end of each time slice.
        let held_max = (0..scan.rows.len())
            .map(|r| bins.row(r).iter().map(|c| c[0] + c[1]).sum::<u32>())
            .max()
            .unwrap_or(0)
            .max(summary.file.chunks)
            .max(1);
        let mut chart = ChartBuilder::on(&bottom)
            .caption("Chunks held per peer", (FONT, 22))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(t0..t1, 0..held_max + held_max / 20 + 1)?;
        chart
            .configure_mesh()
            .x_labels(12)
            .y_labels(10)
            .x_label_formatter(&fmt_x)
            .x_desc("seconds since start")
            .y_desc("chunks held")
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 16))
            .draw()?;
        let named = scan.rows.len() <= LEGEND_MAX;
        for r in 0..scan.rows.len() {
            let mut held = 0u32;
            let points = std::iter::once((scan.t0, 0)).chain(bins.row(r).iter().enumerate().map(
                |(b, c)| {
                    held += c[0] + c[1];
                    (bin_start(b + 1, scan.t0, scan.t1, ARRIVAL_BINS), held)
                },
            ));
            let style = if named {
                PALETTE[r % PALETTE.len()].stroke_width(2)
            } else {
                OWNER_RGB.mix(0.45).stroke_width(1)
            };
            let series = chart.draw_series(LineSeries::new(points, style))?;
            if named {
                series
                    .label(scan.rows[r].as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            } else if r == 0 {
                series
                    .label(format!("one line per peer ({} peers)", scan.rows.len()))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .label_font((FONT, 15))
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

fn draw_links(summary: &Summary, scan: &Scan, bins: &Bins) -> DrawResult<String> {
    const MIB: f64 = 1024.0 * 1024.0;
    let width = (scan.t1 - scan.t0) / LINK_BINS as f64;
    let rate = |bytes: u64| bytes as f64 / width / MIB;
    let y_max = bins
        .link_bytes
        .iter()
        .map(|&b| rate(b))
        .fold(0.0, f64::max)
        .max(f64::EPSILON);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (CHART_WIDTH, 460)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Throughput per link", (FONT, 22))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(scan.t0..scan.t1, 0.0..y_max * 1.1)?;
        let fmt_x = secs_formatter(scan.t1 - scan.t0);
        let fmt_y = secs_formatter(y_max);
        chart
            .configure_mesh()
            .x_labels(12)
            .y_labels(8)
            .x_label_formatter(&fmt_x)
            .y_label_formatter(&fmt_y)
            .x_desc("seconds since start")
            .y_desc("MiB/s")
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 16))
            .draw()?;
        let named = scan.links.len() <= LEGEND_MAX;
        let mut kinds_named = [false; 2];
        for (l, (r, from)) in scan.links.iter().enumerate() {
            let from_owner = *from == summary.owner;
            let points = bins.link(l).iter().enumerate().map(|(b, &bytes)| {
                let mid = scan.t0 + width * (b as f64 + 0.5);
                (mid, rate(bytes))
            });
            let style = if named {
                PALETTE[l % PALETTE.len()].stroke_width(2)
            } else if from_owner {
                OWNER_RGB.mix(0.5).stroke_width(1)
            } else {
                NEIGHBOUR_RGB.mix(0.5).stroke_width(1)
            };
            let series = chart.draw_series(LineSeries::new(points, style))?;
            let sender = if from_owner { "owner" } else { from.as_str() };
            let kind = usize::from(!from_owner);
            if named {
                series.label(format!("{sender} → {}", scan.rows[*r]));
            } else if !kinds_named[kind] {
                kinds_named[kind] = true;
                series.label(if from_owner {
                    "owner → peer (one line per link)"
                } else {
                    "neighbour → peer (one line per link)"
                });
            } else {
                continue;
            }
            series.legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .label_font((FONT, 15))
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}
