//! `GET /metrics` of a running owner (`file-owner --http`) and peer (`peer get --http`), as
//! a Prometheus scrape sees it: the classic text format 0.0.4 unless the `Accept` header asks
//! for OpenMetrics, `promtool check metrics` passing on the classic form, and every family
//! there from the first scrape.

use std::collections::BTreeSet;

use crate::args;
use crate::util::*;

/// What Prometheus 2.x sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// `GET url` with `accept` (none: ureq's default): the content type and the body.
fn scrape(url: &str, accept: Option<&str>) -> (String, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(WAIT))
        .build()
        .into();
    let mut req = agent.get(url);
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let mut resp = req.call().unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{url}");
    let kind = resp.headers()["content-type"].to_str().unwrap().to_string();
    (kind, resp.body_mut().read_to_string().unwrap())
}

/// The families of an exposition: per `# TYPE` name, the samples' lines.
fn families(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            out.push((rest.split(' ').next().unwrap().to_string(), Vec::new()));
        } else if !line.starts_with('#') && !line.is_empty() {
            out.last_mut()
                .unwrap_or_else(|| panic!("a sample before any TYPE:\n{text}"))
                .1
                .push(line.to_string());
        }
    }
    out
}

/// Checks `/metrics` at `url` in both formats: the classic one by default, for `text/plain;
/// version=0.0.4` and for `*/*`, passing promtool, with every family of `want` (classic
/// names) and every sample line of `zero`; OpenMetrics for Prometheus's own `Accept`, with
/// the same families and samples, ending in `# EOF`.
fn check_both_formats(promtool: &std::path::Path, url: &str, want: &[&str], zero: &[&str]) {
    for accept in [None, Some("text/plain; version=0.0.4"), Some("*/*")] {
        let (kind, text) = scrape(url, accept);
        assert_eq!(
            kind, "text/plain; version=0.0.4; charset=utf-8",
            "{url} for {accept:?}"
        );
        let (ok, said) = promtool_check(promtool, &text);
        assert!(ok, "promtool check metrics on {url}: {said}\n{text}");
        let found: BTreeSet<String> = families(&text).into_iter().map(|f| f.0).collect();
        let wanted: BTreeSet<String> = want.iter().map(|w| w.to_string()).collect();
        assert_eq!(found, wanted, "{url}:\n{text}");
        for f in want {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("# HELP {f} "))),
                "{f} has a HELP in:\n{text}"
            );
        }
        for z in zero {
            assert!(text.lines().any(|l| l == *z), "{z} not in:\n{text}");
        }
    }
    let (kind, text) = scrape(url, Some(PROMETHEUS_ACCEPT));
    assert_eq!(
        kind, "application/openmetrics-text; version=1.0.0; charset=utf-8",
        "{url}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    let found = families(&text);
    assert_eq!(found.len(), want.len(), "{url}:\n{text}");
    for z in zero {
        assert!(text.lines().any(|l| l == *z), "{z} not in:\n{text}");
    }
}

/// An owner's `/metrics` at start (no one joined yet): every family, each role and state at
/// 0, in both formats, and promtool passes. Before issue 19 the answer was always
/// OpenMetrics, promtool exited 3 (no HELP for the `_total` names), and only 2 families were
/// there until a first client came.
#[test]
fn the_owners_metrics_pass_promtool_in_both_formats_from_the_start() {
    let Some(promtool) = promtool_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let share = root.join("share").join("m.bin");
    std::fs::create_dir_all(share.parent().unwrap()).unwrap();
    random_file(&share, 600_000, 29);
    let (mut owner, _port) = start_owner(root, &share, &args!["--http", 0]);
    let line = owner.wait_line("directory API on http://");
    let api = line["directory API on http://".len()..].trim_end_matches("/files");
    let want = [
        "ringswarm_sent_bytes_total",
        "ringswarm_received_bytes_total",
        "ringswarm_sent_chunks_total",
        "ringswarm_refused_requests_total",
        "ringswarm_accepted_connections_total",
        "ringswarm_connections",
        "ringswarm_members",
        "ringswarm_member_chunks",
        "ringswarm_files",
        "ringswarm_choke_connections",
        "ringswarm_http_refused_total",
    ];
    let zero = [
        "ringswarm_sent_bytes_total{role=\"getter\"} 0",
        "ringswarm_sent_chunks_total{role=\"joiner\"} 0",
        "ringswarm_refused_requests_total{role=\"peer\"} 0",
        "ringswarm_connections{role=\"publisher\"} 0",
        "ringswarm_members{role=\"getter\"} 0",
        "ringswarm_member_chunks{role=\"peer\"} 0",
        "ringswarm_choke_connections{state=\"unchoked\"} 0",
        "ringswarm_http_refused_total{reason=\"address_connections\"} 0",
        "ringswarm_files 1",
    ];
    check_both_formats(&promtool, &format!("http://{api}/metrics"), &want, &zero);
}

/// A peer's `/metrics` (`peer get … --http 0`), likewise: every family in both formats, and
/// promtool passes.
#[test]
fn a_peers_metrics_pass_promtool_in_both_formats() {
    let Some(promtool) = promtool_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let share = root.join("share").join("m.bin");
    std::fs::create_dir_all(share.parent().unwrap()).unwrap();
    random_file(&share, 600_000, 31);
    let (_owner, port) = start_owner(root, &share, &[]);
    let dir = root.join("g");
    let a = get_args(port, "m.bin", &dir, &args!["--http", 0]);
    let mut g = Proc::spawn("g", PEER, &a, &dir, root);
    let line = g.wait_line("status on http://");
    let base = line["status on http://".len()..].split('/').next().unwrap();
    let want = [
        "ringswarm_held_chunks",
        "ringswarm_file_chunks",
        "ringswarm_verified_chunks_total",
        "ringswarm_refused_chunks_total",
        "ringswarm_received_bytes_total",
        "ringswarm_sent_bytes_total",
        "ringswarm_sent_chunks_total",
        "ringswarm_connections",
        "ringswarm_choke_connections",
        "ringswarm_http_refused_total",
    ];
    let zero = [
        "ringswarm_refused_chunks_total 0",
        "ringswarm_sent_chunks_total{role=\"neighbour\"} 0",
        "ringswarm_connections{role=\"getter\"} 0",
        "ringswarm_http_refused_total{reason=\"busy\"} 0",
    ];
    check_both_formats(&promtool, &format!("http://{base}/metrics"), &want, &zero);
    g.interrupt();
    g.wait_exit(WAIT);
}
