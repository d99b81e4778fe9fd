//! The durable store under SIGKILL: a getter with the default syncing store, killed again and
//! again at seeded-random points of its transfer (while chunks are written, data syncs run
//! and summaries are replaced) and started again. After every kill each chunk its summary
//! names is on disk intact (its hash matches the manifest); the last run's file is
//! byte-identical. Both layouts.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

use ringswarm::events::{EventKind, read_log};
use ringswarm::manifest::{DEFAULT_CHUNK_SIZE, Manifest};

use crate::args;
use crate::util::*;

/// How many chunk events of `kind` a log holds so far.
fn received_so_far(path: &Path) -> usize {
    read_events_so_far(path)
        .iter()
        .filter(|e| e.event == EventKind::ChunkReceived)
        .count()
}

/// The chunk ids the summary in `dir` names; empty when there is none yet.
fn named(summary: &Path) -> BTreeSet<u32> {
    if summary.exists() {
        summary_ids(summary)
    } else {
        BTreeSet::new()
    }
}

/// Each chunk the summary names, read back from the part file or its chunk file, matches its
/// hash in the manifest.
fn assert_named_chunks_intact(dir: &Path, m: &Manifest, chunk_files: bool, round: usize) {
    let ids = named(&dir.join("data.bin.summary"));
    let part = (!chunk_files).then(|| fs::File::open(dir.join("data.bin.part")).unwrap());
    for n in &ids {
        let id = m.chunk_id(*n).unwrap();
        let data = match &part {
            Some(f) => {
                let mut buf = vec![0u8; m.chunk_len(id)];
                f.read_exact_at(&mut buf, m.chunk_offset(id)).unwrap();
                buf
            }
            None => fs::read(dir.join(format!("chunks/data.bin.{n}"))).unwrap_or_default(),
        };
        assert!(
            ringswarm::storage::verify(m, id, &data).is_ok(),
            "run {round}: the summary names chunk {n}, which is not intact on disk \
             ({} chunks named)",
            ids.len()
        );
    }
}

/// Kills a getter five times at seeded-random points, then lets the sixth run finish.
fn killed_mid_batch_again_and_again(chunk_files: bool, seed: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let original = root.join("data.bin");
    // 164 chunks at 4 MiB/s: about 4 s in all, so six runs cannot fetch it before the end.
    let size = 16 << 20;
    random_file(&original, size, seed);
    let m = Manifest::from_file(&original, DEFAULT_CHUNK_SIZE).unwrap();
    let count = m.chunk_count();
    let (_owner, port) = start_owner(root, &original, &args!["--upload-limit", "4MiB"]);
    let dir = root.join("g");
    let summary = dir.join("data.bin.summary");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let layout = if chunk_files {
        args!["--chunk-files"]
    } else {
        args![]
    };
    for round in 0..=5 {
        let events = root.join(format!("g-{round}.jsonl"));
        let mut extra = args!["--events", events.display(), "--linger", 0];
        extra.extend_from_slice(&layout);
        let args = get_args(port, "data.bin", &dir, &extra);
        let mut g = Proc::spawn(&format!("g-{round}"), PEER, &args, &dir, root);
        if round == 5 {
            assert!(g.wait_exit(WAIT).success(), "{}", g.describe());
            break;
        }
        // The kill's trigger, seeded: in even runs, a number of chunks received in this run
        // (so it lands between summaries, while chunks are written and synced); in odd runs,
        // once the run is under way, the summary naming a number of chunks more than then
        // (just after a batch, while the next is written).
        let by_summary = round % 2 == 1;
        let target = rand::Rng::random_range(&mut rng, 5..=25);
        let mut before = 0;
        if by_summary {
            let started = wait_until(WAIT, || {
                received_so_far(&events) > 0 || g.try_status().is_some()
            });
            assert!(
                started,
                "run {round} never received a chunk\n{}",
                g.describe()
            );
            before = named(&summary).len();
        }
        let reached = wait_until(WAIT, || {
            let hit = if by_summary {
                // Read whole or not at all: the summary is replaced by rename.
                named(&summary).len() >= before + target
            } else {
                received_so_far(&events) >= target
            };
            hit || g.try_status().is_some()
        });
        assert!(
            reached && g.try_status().is_none(),
            "run {round} exited or never reached its kill point ({target})\n{}",
            g.describe()
        );
        g.kill();
        assert!(
            !dir.join("data.bin").exists(),
            "run {round} finished before it was killed: the test proves nothing\n{}",
            g.describe()
        );
        assert_named_chunks_intact(&dir, &m, chunk_files, round);
        let got = event_chunks(&read_log(&events).unwrap(), EventKind::ChunkReceived).len();
        eprintln!(
            "run {round}: killed after {got} chunks received ({}), summary names {} of {count}",
            if by_summary { "summary" } else { "received" },
            named(&summary).len()
        );
    }
    assert!(fs::read(dir.join("data.bin")).unwrap() == fs::read(&original).unwrap());
    assert_eq!(named(&summary).len(), count as usize);
}

#[test]
fn a_durable_getter_killed_mid_batch_keeps_every_chunk_its_summary_names() {
    killed_mid_batch_again_and_again(false, 21);
}

#[test]
fn a_durable_chunk_files_getter_killed_mid_batch_keeps_every_chunk_its_summary_names() {
    killed_mid_batch_again_and_again(true, 22);
}
