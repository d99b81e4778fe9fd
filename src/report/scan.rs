//! The two passes over `events.jsonl`: [`Scan`] learns the rows (peers), the links and the
//! time axis; [`Bins`] counts arrivals and link bytes into time bins. Both read the log a line
//! at a time, so memory grows with peers × bins, not with the number of events.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::error::ReportError;
use super::summary::Summary;
use crate::events::{Event, EventKind};

/// Time columns of the arrivals heatmap, and points of each chunks-held line.
pub(super) const ARRIVAL_BINS: usize = 200;
/// Time bins of the per-link throughput lines.
pub(super) const LINK_BINS: usize = 40;

/// Calls `f` with every `chunk_received` event of the log at `path`, a line at a time, and
/// returns the number of lines read.
pub(super) fn for_each_received(
    path: &Path,
    mut f: impl FnMut(&Event),
) -> Result<u64, ReportError> {
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
pub(super) struct Scan {
    /// One row per peer: the summary's peers in order, then any other receiver in the log.
    pub(super) rows: Vec<String>,
    pub(super) row_of: HashMap<String, usize>,
    /// Per row, the nodes it received from and each link's index into `links`.
    row_links: Vec<Vec<(String, usize)>>,
    /// Every link as (receiving row, sender label), ordered by row, the owner's first.
    pub(super) links: Vec<(usize, String)>,
    /// The charts' time axis, seconds since the start.
    pub(super) t0: f64,
    pub(super) t1: f64,
    /// Lines in the log and `chunk_received` events among them.
    pub(super) lines: u64,
    pub(super) received: u64,
    /// Bytes those events carried.
    pub(super) received_bytes: u64,
}

impl Scan {
    pub(super) fn read(events: &Path, summary: &Summary) -> Result<Self, ReportError> {
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
pub(super) struct Bins {
    /// `[from owner, from neighbours]` arrivals per row (`ARRIVAL_BINS` per row).
    pub(super) arrivals: Vec<[u32; 2]>,
    /// Bytes received per link (`LINK_BINS` per link).
    pub(super) link_bytes: Vec<u64>,
}

impl Bins {
    pub(super) fn read(events: &Path, summary: &Summary, scan: &Scan) -> Result<Self, ReportError> {
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

    pub(super) fn row(&self, r: usize) -> &[[u32; 2]] {
        &self.arrivals[r * ARRIVAL_BINS..(r + 1) * ARRIVAL_BINS]
    }

    pub(super) fn link(&self, l: usize) -> &[u64] {
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
pub(super) fn bin_start(b: usize, t0: f64, t1: f64, n: usize) -> f64 {
    t0 + (t1 - t0) * b as f64 / n as f64
}
