//! The owner's metrics rendered: counters, gauges, and every family from the first scrape.

use std::sync::Arc;

use super::*;
use crate::directory::Directory;
use crate::protocol::Role;

#[test]
fn counters_and_gauges_render_in_the_text_format() {
    let m = Arc::new(Metrics::new());
    m.chunk_sent(Role::Getter, 1000);
    m.chunk_sent(Role::Getter, 24);
    m.chunk_sent(Role::Peer, 5);
    m.refused(Role::Peer);
    let open = m.connection(Role::Joiner);
    let d = Directory::new(
        vec![Arc::new(crate::manifest::Manifest::for_tests(10))],
        "127.0.0.1:1".parse().unwrap(),
        crate::directory::DEFAULT_PEER_TTL,
    );
    let m10 = crate::manifest::Manifest::for_tests(10);
    let mut held = crate::chunkset::ChunkSet::new(10);
    held.insert(m10.chunk_id(3).unwrap());
    d.register(0, "127.0.0.1:9".parse().unwrap(), Role::Getter, held, None);
    let text = m.render(Some(&d));
    for line in [
        "# TYPE ringswarm_sent_bytes counter",
        "ringswarm_sent_bytes_total{role=\"getter\"} 1024",
        "ringswarm_sent_chunks_total{role=\"getter\"} 2",
        "ringswarm_sent_bytes_total{role=\"peer\"} 5",
        "ringswarm_refused_requests_total{role=\"peer\"} 1",
        "ringswarm_connections{role=\"joiner\"} 1",
        "ringswarm_members{role=\"getter\"} 1",
        "ringswarm_member_chunks{role=\"getter\"} 1",
        "ringswarm_files 1",
        "# EOF",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
    }
    drop(open);
    let text = m.render(Some(&d));
    assert!(
        text.contains("ringswarm_connections{role=\"joiner\"} 0"),
        "{text}"
    );
}

/// The families of `text` (classic or OpenMetrics): per `# TYPE` name, its type, whether
/// it has a `# HELP`, and its samples.
fn families(text: &str) -> Vec<(String, String, bool, Vec<String>)> {
    let mut out: Vec<(String, String, bool, Vec<String>)> = Vec::new();
    let mut helped = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.push(rest.split(' ').next().unwrap().to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.push((
                name.into(),
                kind.into(),
                helped.contains(&name.to_string()),
                vec![],
            ));
        } else if !line.starts_with('#') && !line.is_empty() {
            out.last_mut().unwrap().3.push(line.to_string());
        }
    }
    out
}

/// Issue 19: at the first scrape every family is there with every label value at 0, and
/// the classic form names a counter's HELP and TYPE as its `_total` samples.
#[test]
fn every_family_is_there_from_the_start_in_both_formats() {
    let m = Metrics::new();
    let open = m.render(None);
    let classic = Format::Text.encode(open.clone());
    let names = [
        "sent_bytes",
        "received_bytes",
        "sent_chunks",
        "refused_requests",
        "accepted_connections",
        "http_refused",
    ];
    let gauges = [
        "connections",
        "members",
        "member_chunks",
        "files",
        "choke_connections",
    ];
    let om = families(&open);
    let text = families(&classic);
    assert_eq!(om.len(), names.len() + gauges.len(), "{open}");
    assert_eq!(text.len(), om.len(), "{classic}");
    for n in names {
        let total = format!("ringswarm_{n}_total");
        let f = text
            .iter()
            .find(|f| f.0 == total)
            .unwrap_or_else(|| panic!("{total} in {classic}"));
        assert_eq!(f.1, "counter");
        assert!(f.2, "{total} has a HELP");
        assert!(
            f.3.iter().all(|s| s.starts_with(&format!("{total}{{"))),
            "{f:?}"
        );
        assert!(
            om.iter()
                .any(|f| f.0 == format!("ringswarm_{n}") && f.1 == "counter")
        );
    }
    for g in gauges {
        let name = format!("ringswarm_{g}");
        let f = text.iter().find(|f| f.0 == name).unwrap();
        assert_eq!(f.1, "gauge");
        assert!(f.2 && !f.3.is_empty(), "{f:?}");
    }
    for line in [
        "ringswarm_sent_bytes_total{role=\"getter\"} 0",
        "ringswarm_accepted_connections_total{role=\"publisher\"} 0",
        "ringswarm_connections{role=\"joiner\"} 0",
        "ringswarm_members{role=\"peer\"} 0",
        "ringswarm_member_chunks{role=\"publisher\"} 0",
        "ringswarm_choke_connections{state=\"interested\"} 0",
        "ringswarm_http_refused_total{reason=\"address_event_streams\"} 0",
        "ringswarm_files 0",
    ] {
        assert!(
            classic.lines().any(|l| l == line),
            "{line} not in:\n{classic}"
        );
        assert!(open.lines().any(|l| l == line), "{line} not in:\n{open}");
    }
    assert!(open.ends_with("# EOF\n"));
    assert!(
        !classic.contains("# EOF") && !classic.contains("# UNIT"),
        "{classic}"
    );
}
