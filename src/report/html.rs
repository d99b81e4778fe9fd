//! The page itself: head and style, the run table, the three charts as figures with their
//! captions, the peer table; and the text formatting they use (sizes, rates, seconds, HTML
//! escaping).

use std::fmt::Write as _;

use plotters::style::RGBColor;

use super::charts::{Charts, NEIGHBOUR_RGB, OWNER_RGB};
use super::error::ReportError;
use super::scan::{ARRIVAL_BINS, Bins, LINK_BINS, Scan};
use super::summary::{EVENTS_FILE, SUMMARY_FILE, Summary};
use crate::units::human_secs;

/// The whole page for `summary`, with charts drawn from what the passes over the log found.
///
/// # Errors
///
/// [`ReportError::Chart`] when a chart cannot be drawn.
pub(super) fn render_page(
    summary: &Summary,
    scan: &Scan,
    bins: &Bins,
) -> Result<String, ReportError> {
    let charts = Charts::draw(summary, scan, bins)?;
    let svg_len = charts.arrivals.len() + charts.completion.len() + charts.links.len();
    let mut h = String::with_capacity(svg_len + 8192);
    write_head(&mut h, summary, scan);
    write_run_table(&mut h, summary);
    write_figures(&mut h, summary, &charts);
    write_peer_table(&mut h, summary);
    h.push_str("</body>\n</html>\n");
    Ok(h)
}

/// From the doctype to the opening of the run table: title, style, what the page was built
/// from.
fn write_head(h: &mut String, summary: &Summary, scan: &Scan) {
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
}

/// The run table's rows, then its end and the charts' heading.
fn write_run_table(h: &mut String, summary: &Summary) {
    for (k, v) in run_rows(summary) {
        let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(&v));
    }
    h.push_str("</table>\n<h2>Charts</h2>\n");
}

/// What the run table says, as (name, value) rows; the bounds, the critical path and the
/// incomplete peers only when there are some.
fn run_rows(summary: &Summary) -> Vec<(&'static str, String)> {
    let f = &summary.file;
    let cap = |c: Option<u64>| c.map_or("none".into(), |c| fmt_rate(c as f64));
    let mut rows = vec![
        ("file", f.name.clone()),
        (
            "size",
            format!("{} ({} bytes)", fmt_bytes(f.size as f64), f.size),
        ),
        (
            "chunks",
            format!("{} × {}", f.chunks, fmt_bytes(f.chunk_size as f64)),
        ),
        ("peers", summary.peers.len().to_string()),
        ("owner", summary.owner.clone()),
        ("upload cap per peer", cap(summary.rate)),
        ("owner upload cap", cap(summary.owner_rate)),
        (
            "seed",
            summary.seed.map_or("none".into(), |s| s.to_string()),
        ),
        (
            "wall time (start → last peer complete)",
            human_secs(summary.wall_s),
        ),
        (
            "aggregate throughput",
            fmt_rate(summary.aggregate_bytes_per_s),
        ),
    ];
    if let Some(b) = &summary.bound {
        rows.push(("fluid lower bound", human_secs(b.fluid_s)));
        rows.push(("chunked-ring time", human_secs(b.chunked_ring_s)));
        rows.push(("measured / fluid bound", format!("{:.3}", b.ratio)));
    }
    if let Some(c) = &summary.critical_path {
        rows.push(("last peer", c.last_peer.clone()));
        let from = label(summary, &c.slowest_link_from);
        let rate = fmt_rate(c.slowest_link_bytes_per_s);
        rows.push(("slowest link into it", format!("from {from} at {rate}")));
    }
    let incomplete = summary
        .peers
        .iter()
        .filter(|p| p.complete_s.is_none())
        .count();
    if incomplete > 0 {
        rows.push(("peers that did not complete", incomplete.to_string()));
    }
    rows
}

/// The three charts, each a figure with a caption that says how to read it.
fn write_figures(h: &mut String, summary: &Summary, charts: &Charts) {
    let swatch =
        |c: RGBColor| format!("<span class=\"sw\" style=\"background:{}\"></span>", hex(c));
    let _ = write!(
        h,
        "<figure id=\"arrivals\">\n{}<figcaption>Chunk arrivals per peer over time: each \
         cell counts the chunks a peer received in one of {ARRIVAL_BINS} time slices, darker for \
         more. {}from the owner {}from a ring neighbour (mixed colours: both in one slice) \
         <span class=\"sw\" style=\"background:#000;width:0.2em\"></span>peer complete\
         </figcaption>\n</figure>\n",
        charts.arrivals,
        swatch(OWNER_RGB),
        swatch(NEIGHBOUR_RGB)
    );
    let _ = write!(
        h,
        "<figure id=\"completion\">\n{}<figcaption>Top: peers holding the whole file \
         over time{}. Bottom: chunks each peer held over time (arrivals logged; chunks a peer \
         had before the run are not counted).</figcaption>\n</figure>\n",
        charts.completion,
        if summary.bound.is_some() {
            ", with the fluid lower bound and the chunked-ring time"
        } else {
            ""
        }
    );
    let _ = write!(
        h,
        "<figure id=\"links\">\n{}<figcaption>Throughput of each link (sender → receiving \
         peer) over time: bytes received in each of {LINK_BINS} time slices.</figcaption>\n\
         </figure>\n",
        charts.links
    );
}

/// One row per peer: when it completed and where its chunks came from.
fn write_peer_table(h: &mut String, summary: &Summary) {
    h.push_str(
        "<h2>Peers</h2>\n<table id=\"peers\">\n<tr><th>peer</th><th class=\"n\">complete</th>\
         <th class=\"n\">chunks from owner</th><th class=\"n\">chunks from neighbours</th></tr>\n",
    );
    for p in &summary.peers {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&p.peer),
            p.complete_s.map_or("did not complete".into(), human_secs),
            p.from_owner,
            p.from_neighbours
        );
    }
    h.push_str("</table>\n");
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
