//! The `demo` binary: owner and peers in one process, the meter, the report files.

use std::fs;

use crate::args;
use crate::util::*;

const DEMO: &str = env!("CARGO_BIN_EXE_demo");

#[test]
fn demo_runs_a_capped_ring_and_reports_against_the_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("report");
    let mut p = Proc::spawn(
        "demo",
        DEMO,
        &args![
            "--peers",
            3,
            "--size",
            "2MiB",
            "--rate",
            "40MiB/s",
            "--seed",
            7,
            "--report",
            report.display(),
            "--work",
            tmp.path().join("work").display()
        ],
        tmp.path(),
        tmp.path(),
    );
    assert!(p.wait_exit(WAIT).success(), "{}", p.describe());
    let out = p.stdout_text();
    assert!(out.contains("measured/bound = "), "{out}");
    assert!(out.contains("critical path: peer "), "{out}");
    // Progress goes to stderr as plain lines when it is not a terminal.
    assert!(
        p.stderr_text().contains("peers complete"),
        "{}",
        p.describe()
    );

    let summary: serde_json::Value =
        serde_json::from_slice(&fs::read(report.join("summary.json")).unwrap()).unwrap();
    let peers = summary["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 3);
    for peer in peers {
        assert!(peer["complete_s"].as_f64().unwrap() > 0.0, "{summary}");
        let got = peer["from_owner"].as_u64().unwrap() + peer["from_neighbours"].as_u64().unwrap();
        assert_eq!(got, 21, "every chunk received once: {summary}");
    }
    assert!(summary["bound"]["fluid_s"].as_f64().unwrap() > 0.0);
    let page = fs::read_to_string(report.join("index.html")).unwrap();
    for id in [
        "id=\"arrivals\"",
        "id=\"completion\"",
        "id=\"links\"",
        "<svg",
    ] {
        assert!(page.contains(id), "report lacks {id}");
    }

    // Every peer's file is the generated one, and the log has every peer's arrivals.
    let original = fs::read(tmp.path().join("work/demo.bin")).unwrap();
    let mut outputs = 0;
    for entry in fs::read_dir(tmp.path().join("work")).unwrap() {
        let dir = entry.unwrap().path();
        if dir.is_dir() {
            assert_eq!(fs::read(dir.join("demo.bin")).unwrap(), original);
            outputs += 1;
        }
    }
    assert_eq!(outputs, 3);
    let events = ringswarm::events::read_log(&report.join("events.jsonl")).unwrap();
    let received = events
        .iter()
        .filter(|e| e.event == ringswarm::events::EventKind::ChunkReceived)
        .count();
    assert_eq!(received, 3 * 21);
}

#[test]
fn demo_seed_reproduces_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    for run in ["a", "b"] {
        let mut p = Proc::spawn(
            run,
            DEMO,
            &args![
                "--peers",
                2,
                "--size",
                "300KiB",
                "--seed",
                42,
                "--no-progress",
                "--work",
                tmp.path().join(run).display()
            ],
            tmp.path(),
            tmp.path(),
        );
        assert!(p.wait_exit(WAIT).success(), "{}", p.describe());
    }
    assert_eq!(
        fs::read(tmp.path().join("a/demo.bin")).unwrap(),
        fs::read(tmp.path().join("b/demo.bin")).unwrap()
    );
}
