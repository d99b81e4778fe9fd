//! The HTML report: built from a synthetic event log and summary, checked as text, then
//! rendered by headless Chromium where one can start.

use std::fs;
use std::path::{Path, PathBuf};

use ringswarm::events::{Event, EventKind};
use ringswarm::report::{
    self, Bound, CriticalPath, EVENTS_FILE, PeerResult, ReportError, RunFile, Summary,
};

use crate::util::{chromium, run_chromium};

const OWNER: &str = "127.0.0.1:40001";
/// One peer name holds HTML's special characters: the page must escape it.
const PEERS: [&str; 3] = ["127.0.0.1:40002", "127.0.0.1:40003", "<b>peer&3</b>"];
const CHUNKS: u32 = 20;
const CHUNK: u64 = 1000;
const START: f64 = 1_763_775_600.0;

fn event(t: f64, peer: &str, kind: EventKind, chunk: u32, neighbour: &str) -> Event {
    Event {
        ts: START + t,
        peer: peer.to_string(),
        event: kind,
        chunk: Some(chunk),
        neighbour: neighbour.to_string(),
        bytes: Some(CHUNK),
        count: None,
    }
}

/// Writes a three-peer run to `dir`: the owner hands chunk c to peer c % 3, then each peer
/// fetches the rest from its ring neighbour (the next peer). Returns the summary written.
fn write_run(dir: &Path) -> Summary {
    let mut lines = Vec::new();
    for c in 0..CHUNKS {
        let p = PEERS[c as usize % 3];
        let t = 0.01 * f64::from(c);
        lines.push(event(t, "owner", EventKind::ChunkSent, c, p));
        lines.push(event(t + 0.001, p, EventKind::ChunkReceived, c, OWNER));
    }
    let mut peers = Vec::new();
    for (i, p) in PEERS.iter().enumerate() {
        let neighbour = PEERS[(i + 1) % 3];
        let mut t = 0.25 + 0.02 * i as f64;
        lines.push(Event {
            ts: START + t,
            peer: p.to_string(),
            event: EventKind::IdListReceived,
            chunk: None,
            neighbour: neighbour.to_string(),
            bytes: None,
            count: Some(7),
        });
        let mut from_neighbours = 0;
        for c in (0..CHUNKS).filter(|c| *c as usize % 3 != i) {
            t += 0.015;
            lines.push(event(t, p, EventKind::ChunkRequested, c, neighbour));
            lines.push(event(t + 0.005, p, EventKind::ChunkReceived, c, neighbour));
            from_neighbours += 1;
        }
        peers.push(PeerResult {
            peer: p.to_string(),
            complete_s: Some(t + 0.005),
            from_owner: CHUNKS - from_neighbours,
            from_neighbours,
            upload_rate: None,
        });
    }
    lines.sort_by(|a, b| a.ts.total_cmp(&b.ts));
    let mut text = String::new();
    for ev in &lines {
        text.push_str(&serde_json::to_string(ev).unwrap());
        text.push('\n');
    }
    fs::write(dir.join(EVENTS_FILE), text).unwrap();

    let wall_s = peers
        .iter()
        .filter_map(|p| p.complete_s)
        .fold(0.0, f64::max);
    let size = u64::from(CHUNKS) * CHUNK;
    let summary = Summary {
        file: RunFile {
            name: "run<1>.bin".into(),
            size,
            chunk_size: CHUNK,
            chunks: CHUNKS,
        },
        owner: OWNER.into(),
        peers,
        started_ts: START,
        wall_s,
        // Whole numbers: serde_json may round-trip the last digit of other floats differently.
        aggregate_bytes_per_s: (3.0 * size as f64 / wall_s).round(),
        rate: Some(100_000),
        owner_rate: Some(100_000),
        bound: Some(Bound {
            fluid_s: 0.2,
            chunked_ring_s: 0.22,
            ratio: wall_s / 0.2,
        }),
        critical_path: Some(CriticalPath {
            last_peer: PEERS[2].into(),
            slowest_link_from: PEERS[0].into(),
            slowest_link_bytes_per_s: 60_000.0,
        }),
        seed: Some(7),
    };
    report::write_summary(dir, &summary).unwrap();
    summary
}

fn build_report() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path());
    let page = report::write_html(dir.path()).unwrap();
    let html = fs::read_to_string(&page).unwrap();
    (dir, page, html)
}

#[test]
fn report_summary_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_run(dir.path());
    assert_eq!(report::read_summary(dir.path()).unwrap(), written);
}

#[test]
fn report_page_holds_three_charts_and_the_summary() {
    let (dir, page, html) = build_report();
    assert_eq!(page, dir.path().join("index.html"));
    assert!(!dir.path().join("index.html.tmp").exists());
    for id in [
        r#"<figure id="arrivals">"#,
        r#"<figure id="completion">"#,
        r#"<figure id="links">"#,
    ] {
        assert!(html.contains(id), "no {id} in the page");
    }
    assert_eq!(html.matches("<svg").count(), 3, "one SVG per chart");
    // The summary and per-peer tables.
    for text in [
        "fluid lower bound",
        "0.200 s",
        "127.0.0.1:40003",
        "from owner",
    ] {
        assert!(html.contains(text), "no {text:?} in the page");
    }
    // 60 arrivals logged; owner and neighbour sources both drawn.
    assert!(html.contains("60 chunk arrivals"), "arrival count missing");
    assert!(html.contains("#1f77b4") && html.contains("#ff7f0e"));
}

#[test]
fn report_page_is_self_contained() {
    let (_dir, _page, html) = build_report();
    let without_xmlns = html.replace(r#"xmlns="http://www.w3.org/2000/svg""#, "");
    for scheme in ["http://", "https://"] {
        assert!(
            !without_xmlns.contains(scheme),
            "external reference {scheme} in the page"
        );
    }
    for tag in ["<script", "<link", "<img", "@import", "url("] {
        assert!(!html.contains(tag), "{tag} in the page");
    }
}

#[test]
fn report_page_escapes_names() {
    let (_dir, _page, html) = build_report();
    assert!(!html.contains("<b>peer"), "peer name not escaped");
    assert!(!html.contains("run<1>"), "file name not escaped");
    assert!(html.contains("&lt;b&gt;peer&amp;3&lt;/b&gt;"));
    assert!(html.contains("run&lt;1&gt;.bin"));
}

#[test]
fn report_names_a_bad_event_line() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path());
    let path = dir.path().join(EVENTS_FILE);
    let mut lines: Vec<String> = fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines[2] = "{\"ts\": \"soon\"}".into();
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    match report::write_html(dir.path()) {
        Err(ReportError::BadEvents { line, .. }) => assert_eq!(line, 3),
        other => panic!("expected BadEvents at line 3, got {other:?}"),
    }
}

#[test]
fn report_ignores_a_last_line_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path());
    let path = dir.path().join(EVENTS_FILE);
    let mut text = fs::read_to_string(&path).unwrap();
    text.push_str(r#"{"ts":1763775601.5,"peer":"127.0.0"#);
    fs::write(&path, text).unwrap();
    report::write_html(dir.path()).unwrap();
}

#[test]
fn report_without_summary_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    match report::write_html(dir.path()) {
        Err(ReportError::Io { path, .. }) => assert!(path.ends_with("summary.json")),
        other => panic!("expected Io for summary.json, got {other:?}"),
    }
    fs::write(dir.path().join("summary.json"), "{}").unwrap();
    assert!(matches!(
        report::write_html(dir.path()),
        Err(ReportError::BadSummary { .. })
    ));
}

/// A script appended to a copy of the report: it measures what Chromium laid out and writes
/// the result, as JSON, into a `<pre id="rendered">` that only this script creates. Sizes and
/// shape counts come from the layout engine, the text from `innerText` (rendered text, with
/// entities decoded), so none of it can be read off the static HTML.
const PROBE: &str = r##"<script>
(() => {
  const figures = {};
  for (const id of ["arrivals", "completion", "links"]) {
    const svg = document.querySelector("#" + id + " svg");
    if (!svg) { figures[id] = null; continue; }
    const box = svg.getBoundingClientRect();
    figures[id] = {
      width: box.width,
      height: box.height,
      shapes: svg.querySelectorAll("path, polyline, polygon, line, rect, circle").length,
    };
  }
  const out = document.createElement("pre");
  out.id = "rendered";
  out.textContent = JSON.stringify({
    figures,
    bold: document.querySelectorAll("b").length,
    text: document.body.innerText,
  });
  document.body.appendChild(out);
})();
</script>"##;

/// The JSON the [`PROBE`] left in Chromium's DOM dump, if it ran.
fn probe_result(dom: &str) -> Option<serde_json::Value> {
    let start = dom.find(r#"<pre id="rendered">"#)? + r#"<pre id="rendered">"#.len();
    let end = start + dom[start..].find("</pre>")?;
    let text = dom[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&");
    serde_json::from_str(&text).ok()
}

#[test]
fn report_renders_in_headless_chromium() {
    let Some(bin) = chromium() else {
        crate::util::skip("chromium not installed (not at /usr/bin/chromium or on PATH)");
        return;
    };
    let (dir, _page, html) = build_report();
    assert!(
        !html.contains("rendered"),
        "the probe's output id is already in the static page"
    );
    let probe_page = dir.path().join("probe.html");
    let body_end = html.rfind("</body>").expect("no </body> in the page");
    fs::write(
        &probe_page,
        format!("{}{PROBE}{}", &html[..body_end], &html[body_end..]),
    )
    .unwrap();
    let dom = match run_chromium(
        &bin,
        &format!("file://{}", probe_page.display()),
        &["--dump-dom"],
    ) {
        Ok(dom) => dom,
        Err(why) if crate::util::in_ci() => {
            panic!("chromium {} failed on the report: {why}", bin.display())
        }
        Err(why) => {
            crate::util::skip(&format!(
                "chromium is installed but failed ({why}); with CI set this fails the test"
            ));
            return;
        }
    };
    let Some(rendered) = probe_result(&dom) else {
        panic!("the page's script left no result in Chromium's DOM:\n{dom}");
    };
    for id in ["arrivals", "completion", "links"] {
        let fig = &rendered["figures"][id];
        let (w, h) = (fig["width"].as_f64(), fig["height"].as_f64());
        assert!(
            w.is_some_and(|w| w > 100.0) && h.is_some_and(|h| h > 50.0),
            "chart {id} was not laid out at a visible size: {fig}"
        );
        assert!(
            fig["shapes"].as_u64().is_some_and(|n| n >= 3),
            "chart {id} draws nothing: {fig}"
        );
    }
    let text = rendered["text"].as_str().unwrap_or_default();
    for shown in [
        "60 chunk arrivals",
        "fluid lower bound",
        "127.0.0.1:40003",
        // Escaped in the HTML, shown as the text it is, not as markup.
        "<b>peer&3</b>",
        "run<1>.bin",
    ] {
        assert!(
            text.contains(shown),
            "{shown:?} is not in the rendered text:\n{text}"
        );
    }
    assert_eq!(
        rendered["bold"], 0,
        "a name was rendered as markup: {rendered}"
    );
}
