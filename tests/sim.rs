//! `demo --sim`: the owner and peers over a simulated network in virtual time. The same seed
//! and options give the same run, byte for byte.

use std::fs;

use crate::args;
use crate::util::*;

const DEMO: &str = env!("CARGO_BIN_EXE_demo");

/// Runs `demo --sim` on 10 peers with `extra` and a report in `dir`; returns its stdout.
fn sim(tmp: &std::path::Path, name: &str, extra: &[String]) -> String {
    let mut a = args![
        "--peers", 10, "--size", "4MiB", "--rate", "4MiB/s", "--seed", 11
    ];
    a.extend_from_slice(extra);
    sim_with(tmp, name, &a)
}

/// Runs `demo --sim` with `a` and a report in `dir`; returns its stdout.
fn sim_with(tmp: &std::path::Path, name: &str, a: &[String]) -> String {
    let report = tmp.join(name);
    let a = [args!["--sim", "--report", report.display()], a.to_vec()].concat();
    let mut p = Proc::spawn(name, DEMO, &a, tmp, tmp);
    assert!(p.wait_exit(WAIT).success(), "{}", p.describe());
    p.stdout_text()
}

/// The summary `demo --report` wrote for run `name`.
fn summary(tmp: &std::path::Path, name: &str) -> serde_json::Value {
    let path = tmp.join(name).join("summary.json");
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// Three runs with the same seed and every kind of fault write the same event log, byte for
/// byte; every peer but the one that left completes, and the report is drawn from virtual
/// timestamps.
#[test]
fn the_same_seed_gives_the_same_event_log_over_three_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let faults = args![
        "--latency",
        0.01,
        "--jitter",
        0.5,
        "--loss",
        0.01,
        "--download-rate",
        "6MiB/s",
        "--crash",
        2,
        "--leave",
        1,
        "--late",
        2,
        "--partition",
        "0.2:0.5"
    ];
    let outs: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|run| sim(tmp.path(), run, &faults))
        .collect();
    let logs: Vec<Vec<u8>> = ["a", "b", "c"]
        .iter()
        .map(|run| fs::read(tmp.path().join(run).join("events.jsonl")).unwrap())
        .collect();
    assert!(logs[0].len() > 10_000, "a short log: {}", outs[0]);
    assert!(logs[0] == logs[1] && logs[1] == logs[2], "the logs differ");
    for word in [
        "crashes",
        "restarts, empty",
        "leaves",
        "joins",
        "partition healed",
    ] {
        assert!(outs[0].contains(word), "no {word:?} in {}", outs[0]);
    }

    let summary = summary(tmp.path(), "a");
    let peers = summary["peers"].as_array().unwrap();
    let done = peers.iter().filter(|p| p["complete_s"].is_f64()).count();
    assert_eq!(done, 9, "all but the peer that left: {summary}");
    // Virtual time: the events start near 0 (after a connect's round trip), and go on at
    // least until the last peer completed.
    let events = ringswarm::events::read_log(&tmp.path().join("a/events.jsonl")).unwrap();
    let last = events.iter().map(|e| e.ts).fold(0.0, f64::max);
    let wall = summary["wall_s"].as_f64().unwrap();
    assert!(events[0].ts < 0.1, "first event at {}", events[0].ts);
    assert!(
        last >= wall - 1e-3,
        "last event at {last}, last completion at {wall}"
    );
    assert!(
        fs::read_to_string(tmp.path().join("a/index.html"))
            .unwrap()
            .contains("id=\"completion\"")
    );
}

/// Without faults a simulated ring meets its caps' bounds closely, in virtual time: 10 peers
/// of 4 MiB at 4 MiB/s cannot finish in under 1 s (the fluid bound), and finish before a
/// perfect chunk pipeline round the ring would (1.22 s), thanks to the owner's spare
/// chunks.
#[test]
fn a_simulated_ring_runs_at_its_caps_in_virtual_time() {
    let tmp = tempfile::tempdir().unwrap();
    let out = sim(tmp.path(), "plain", &[]);
    assert!(out.contains("simulated in virtual time"), "{out}");
    let summary = summary(tmp.path(), "plain");
    let (took, ring) = (
        summary["wall_s"].as_f64().unwrap(),
        summary["bound"]["chunked_ring_s"].as_f64().unwrap(),
    );
    let ratio = summary["bound"]["ratio"].as_f64().unwrap();
    assert!(
        ratio >= 1.0 && took <= ring,
        "{took} s, bound ratio {ratio}, ring {ring} s: {out}"
    );
    for p in summary["peers"].as_array().unwrap() {
        let got = p["from_owner"].as_u64().unwrap() + p["from_neighbours"].as_u64().unwrap();
        assert_eq!(got, 41, "every chunk received once: {summary}");
    }
}

/// Far more peers than chunks, and a slow owner: the owner sends each chunk about once and
/// the ring does the rest, so the run takes the owner's time for one copy of the file (the
/// fluid bound). A peer waited for its hand-out at the owner while its neighbour held it,
/// and took ten times as long.
#[test]
fn with_more_peers_than_chunks_the_owner_sends_each_chunk_about_once() {
    let tmp = tempfile::tempdir().unwrap();
    let a = args![
        "--peers",
        120,
        "--size",
        "1MiB",
        "--rate",
        "4MiB/s",
        "--owner-rate",
        "512KiB/s",
        "--seed",
        3
    ];
    let out = sim_with(tmp.path(), "crowd", &a);
    let summary = summary(tmp.path(), "crowd");
    let ratio = summary["bound"]["ratio"].as_f64().unwrap();
    let peers = summary["peers"].as_array().unwrap();
    let from_owner: u64 = peers
        .iter()
        .map(|p| p["from_owner"].as_u64().unwrap())
        .sum();
    assert!(
        ratio <= 1.2 && from_owner <= 2 * 11,
        "{from_owner} chunks from the owner, {ratio} × the bound: {out}"
    );
    // Beyond 40 peers the table shows the slowest ten, under a distribution of the rest.
    assert!(
        out.contains("120 of 120 peers complete: first ")
            && out.contains(&format!("chunks from the owner: {from_owner} in all"))
            && out.contains("the 10 slowest of 120 peers"),
        "{out}"
    );
    let rows = out.lines().filter(|l| l.starts_with("20")).count();
    assert_eq!(rows, 10, "{out}");
}

/// A simulated ring of joiners (`--join`) with crashes and a leave: the directory
/// re-stitches it (`neighbour_changed` in the events), and every peer but the one that left
/// completes.
#[test]
fn a_simulated_ring_of_joiners_restitches_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let out = sim(
        tmp.path(),
        "join",
        &args!["--join", "--crash", 2, "--leave", 1],
    );
    let summary = summary(tmp.path(), "join");
    let done = summary["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["complete_s"].is_f64())
        .count();
    assert_eq!(done, 9, "all but the peer that left: {out}");
    let events = ringswarm::events::read_log(&tmp.path().join("join/events.jsonl")).unwrap();
    let restitched = events
        .iter()
        .filter(|e| e.event == ringswarm::events::EventKind::NeighbourChanged)
        .count();
    assert!(
        restitched >= 9,
        "joins and deaths re-stitch the ring: {restitched} changes"
    );
}

/// Without faults, a ring of joiners finishes as fast as the hand-wired one, in virtual time:
/// each joiner is placed at once, and never idles on its hand-out alone.
#[test]
fn a_simulated_ring_of_joiners_is_as_fast_as_a_wired_one() {
    let tmp = tempfile::tempdir().unwrap();
    sim(tmp.path(), "wired", &args!["--wired"]);
    // Joins are the default; `--join` says so explicitly.
    sim(tmp.path(), "joined", &args!["--join"]);
    let last = |run: &str| summary(tmp.path(), run)["wall_s"].as_f64().unwrap();
    let (wired, joined) = (last("wired"), last("joined"));
    assert!(
        joined <= wired * 1.05,
        "a joined ring {joined:.3}s, a wired one {wired:.3}s (virtual)"
    );
}

/// One peer of five uploads at a quarter of the others' rate (`--slow 3:2.5MiB/s`): the
/// bound counts each peer's own rate, every peer completes with every chunk verified, and
/// the last one within 1.25× of the bound in virtual time (3.1× before the owner served the
/// peer behind the slow one first: it took everything from the slow one at 2.5 MiB/s).
#[test]
fn a_slow_member_is_routed_around() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, owner_rate: &str| {
        let a = args![
            "--peers",
            5,
            "--size",
            "32MiB",
            "--rate",
            "10MiB/s",
            "--owner-rate",
            owner_rate,
            "--slow",
            "3:2.5MiB/s",
            "--seed",
            1
        ];
        let out = sim_with(tmp.path(), name, &a);
        assert!(out.contains("slow: peer 3 (127.0.0.1:"), "{out}");
        summary(tmp.path(), name)
    };
    // (S = 32 MiB, owner rate U₀, fluid bound in seconds): the owner's time S/U₀ binds at
    // 10 MiB/s; at 20 MiB/s the peers' total upload does, N·S/(U₀ + 4·10 + 2.5) = 2.56 s
    // (2.29 s were the slow peer as fast as the rest).
    for (name, owner_rate, bound) in [("owner", "10MiB/s", 3.2), ("total", "20MiB/s", 2.56)] {
        let summary = run(name, owner_rate);
        let fluid = summary["bound"]["fluid_s"].as_f64().unwrap();
        assert!((fluid - bound).abs() < 1e-6, "bound {fluid}: {summary}");
        let chunks = summary["file"]["chunks"].as_u64().unwrap();
        let peers = summary["peers"].as_array().unwrap();
        for (i, p) in peers.iter().enumerate() {
            assert!(p["complete_s"].is_f64(), "every peer completes: {summary}");
            let got = p["from_owner"].as_u64().unwrap() + p["from_neighbours"].as_u64().unwrap();
            assert_eq!(got, chunks, "every chunk verified, once: {summary}");
            let slow = (i == 2).then_some(5u64 << 19);
            assert_eq!(p["upload_rate"].as_u64(), slow, "{summary}");
        }
        let ratio = summary["bound"]["ratio"].as_f64().unwrap();
        assert!(
            (1.0..=1.25).contains(&ratio),
            "the last peer at {ratio:.3}× the bound (virtual time): {summary}"
        );
    }
}

/// The simulated network's options need `--sim`, and wrong values are named.
#[test]
fn simulation_options_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    for (bad, says) in [
        (args!["--latency", 0.1], "--sim"),
        (args!["--sim", "--loss", 2], "invalid fraction"),
        (args!["--sim", "--partition", "soon"], "AT:FOR"),
        (
            args!["--sim", "--peers", 3, "--leave", 3],
            "no peer to complete",
        ),
        (args!["--peers", 1001], "use --sim"),
        (args!["--sim", "--chunk-files"], "--chunk-files"),
        (
            args!["--sim", "--peers", 5, "--slow", "6:1MiB/s"],
            "only 5 peers",
        ),
        (args!["--sim", "--slow", "3"], "expected K:RATE"),
        (args!["--sim", "--slow", "0:1MiB/s"], "not a peer number"),
        (args!["--sim", "--slow", "2:0"], "rate must be above 0"),
        (args!["--sim", "--slow", "1:1MiB/s,1:2MiB/s"], "twice"),
        (args!["--dht"], "--sim"),
        (args!["--sim", "--owner-crash"], "--dht"),
    ] {
        let mut p = Proc::spawn("demo", DEMO, &bad, tmp.path(), tmp.path());
        let status = p.wait_exit(WAIT);
        assert!(!status.success(), "{bad:?} was accepted");
        let err = p.stderr_text();
        assert!(err.contains(says), "{bad:?}: {err}");
    }
}

/// `--dht --owner-crash`: the owner (directory and seeder) crashes for good when the first
/// peer completes; the peers that join after it find their sources through the DHT stand-in,
/// and every peer completes. Twice with the same seed, the same run.
#[test]
fn a_swarm_whose_directory_crashes_finishes_through_the_dht_stand_in() {
    let tmp = tempfile::tempdir().unwrap();
    let a = args![
        "--peers",
        10,
        "--size",
        "8MiB",
        "--rate",
        "2MiB/s",
        "--seed",
        3,
        "--dht",
        "--owner-crash",
        "--late",
        3,
        "--faults-within",
        20
    ];
    let runs: Vec<String> = ["a", "b"]
        .iter()
        .map(|n| sim_with(tmp.path(), n, &a))
        .collect();
    let out = &runs[0];
    let crash = out.find("the owner crashes for good").expect(out);
    let found = out.find("no directory; the DHT named").expect(out);
    assert!(crash < found, "{out}");
    assert_eq!(
        out.matches("no directory; the DHT named").count(),
        3,
        "each late peer, joining after the crash, found a source in the DHT: {out}"
    );
    let summary = summary(tmp.path(), "a");
    let complete = summary["peers"].as_array().unwrap();
    assert!(
        complete.iter().all(|p| p["complete_s"].as_f64().is_some()),
        "{summary}"
    );
    // All but the wall time and the report's folder.
    let without_wall = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("of wall time") && !l.contains(&*tmp.path().to_string_lossy()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(without_wall(&runs[0]), without_wall(&runs[1]));
}
