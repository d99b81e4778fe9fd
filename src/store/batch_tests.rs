//! The batching policy ([`SyncBatch`]) on given instants, and a real store's batches under the
//! paused clock.

use std::fs;
use std::time::Duration;

use tokio::time::Instant;

use super::batch::{DATA_SYNC_BYTES, Flush, SUMMARY_BYTES, SUMMARY_INTERVAL, SyncBatch};
use super::{ChunkStore, Layout};
use crate::chunkset::ChunkSet;
use crate::manifest::{ChunkId, Manifest};

const MIB: u64 = 1 << 20;
const MS: Duration = Duration::from_millis(1);

fn id(n: u32) -> ChunkId {
    let m = Manifest::from_bytes("f", &[0u8; 64], 4).unwrap();
    m.chunk_id(n).unwrap()
}

#[test]
fn idle_until_a_chunk_then_a_summary_after_the_interval() {
    let t0 = Instant::now();
    let mut b = SyncBatch::default();
    assert_eq!(b.due(t0, true), Flush::Idle);
    b.wrote(MIB, None, t0);
    assert_eq!(b.due(t0, true), Flush::Wait(t0 + SUMMARY_INTERVAL));
    // Later chunks do not push the summary back: the oldest unnamed one sets the time.
    b.wrote(MIB, None, t0 + 300 * MS);
    assert_eq!(
        b.due(t0 + 300 * MS, true),
        Flush::Wait(t0 + SUMMARY_INTERVAL)
    );
    assert_eq!(b.due(t0 + SUMMARY_INTERVAL, true), Flush::Summary);
    b.begin(true);
    assert_eq!(b.due(t0 + SUMMARY_INTERVAL, true), Flush::Idle);
}

#[test]
fn a_data_sync_starts_once_enough_bytes_are_unsynced_and_again_after_it() {
    let t0 = Instant::now();
    let mut b = SyncBatch::default();
    b.wrote(DATA_SYNC_BYTES - 1, None, t0);
    assert!(matches!(b.due(t0, true), Flush::Wait(_)));
    b.wrote(1, None, t0);
    assert_eq!(b.due(t0, true), Flush::Data);
    // Without sync (`--no-sync`), only summaries, on their own schedule.
    assert_eq!(b.due(t0, false), Flush::Wait(t0 + SUMMARY_INTERVAL));
    // Once the sync began, what it covers is no longer unsynced; the summary is still due.
    b.begin(false);
    assert_eq!(b.due(t0, true), Flush::Wait(t0 + SUMMARY_INTERVAL));
    // Bytes written meanwhile start the next sync as soon as they are enough again.
    b.wrote(DATA_SYNC_BYTES, None, t0 + 10 * MS);
    assert_eq!(b.due(t0 + 10 * MS, true), Flush::Data);
    assert_eq!(b.due(t0 + SUMMARY_INTERVAL, true), Flush::Summary);
}

#[test]
fn a_summary_is_due_by_bytes_before_its_time() {
    let t0 = Instant::now();
    let mut b = SyncBatch::default();
    b.wrote(SUMMARY_BYTES / 2, None, t0);
    b.begin(false); // a data sync took the first half
    b.wrote(SUMMARY_BYTES / 2, None, t0 + MS);
    assert_eq!(b.due(t0 + MS, true), Flush::Summary);
    assert_eq!(b.due(t0 + MS, false), Flush::Summary);
}

#[test]
fn each_sync_takes_the_chunk_files_written_before_it_began() {
    let t0 = Instant::now();
    let mut b = SyncBatch::default();
    b.wrote(4, Some(id(0)), t0);
    b.wrote(4, Some(id(1)), t0);
    assert_eq!(b.begin(false), vec![id(0), id(1)]);
    b.wrote(4, Some(id(2)), t0);
    b.add_file(id(3)); // found on disk after a crash
    let taken = b.begin(true);
    assert_eq!(taken, vec![id(2), id(3)]);
    // A failed sync gives them back, and from then on no summary may be written.
    assert!(!b.has_failed());
    b.failed(taken);
    assert!(b.has_failed());
    assert_eq!(b.begin(false), vec![id(2), id(3)]);
}

#[test]
fn the_report_counts_sync_time_after_the_last_chunk_once() {
    let t0 = Instant::now();
    let mut b = SyncBatch::default();
    b.record(t0, t0 + 100 * MS); // before any chunk: all of it counts for now
    b.wrote(MIB, None, t0 + 200 * MS);
    b.record(t0 + 150 * MS, t0 + 250 * MS); // 50 ms after the chunk
    b.record(t0 + 220 * MS, t0 + 300 * MS); // overlaps: 50 ms more, not 80
    b.record(t0 + 400 * MS, t0 + 410 * MS); // 10 ms
    let r = b.report();
    assert_eq!(r.count, 4);
    assert_eq!(r.total, 100 * MS + 100 * MS + 80 * MS + 10 * MS);
    assert_eq!(r.after_last_chunk, 110 * MS);
    // A later chunk: only what follows it counts.
    b.wrote(MIB, None, t0 + 500 * MS);
    assert_eq!(b.report().after_last_chunk, Duration::ZERO);
    b.record(t0 + 450 * MS, t0 + 520 * MS);
    assert_eq!(b.report().after_last_chunk, 20 * MS);
}

/// A real store, both layouts, under the paused clock: the batches come when the policy says,
/// each summary names the snapshot it was given, and a store without sync reports nothing.
#[tokio::test(start_paused = true)]
async fn a_store_batches_its_syncs_and_summaries() {
    for layout in [Layout::PartFile, Layout::ChunkFiles] {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let m = Manifest::from_bytes("f.bin", &data, 4096).unwrap();
        let peer = dir.path().join("peer");
        let (store, _) = ChunkStore::open(&peer, &m, layout).unwrap();
        let opened = store.sync_report().unwrap();
        let mut have = ChunkSet::new(m.chunk_count());
        for n in 0..6 {
            let cid = m.chunk_id(n).unwrap();
            let off = usize::try_from(m.chunk_offset(cid)).unwrap();
            store
                .write_chunk(cid, &data[off..off + m.chunk_len(cid)])
                .unwrap();
            have.insert(cid);
        }
        let at = Instant::now() + SUMMARY_INTERVAL;
        assert_eq!(store.flush_due(Instant::now()), Flush::Wait(at));
        tokio::time::advance(SUMMARY_INTERVAL).await;
        assert_eq!(store.flush_due(Instant::now()), Flush::Summary);
        // The snapshot was taken before the call; the summary names just it.
        let snapshot = have.clone();
        store.write_summary(&snapshot).unwrap();
        assert_eq!(store.flush_due(Instant::now()), Flush::Idle);
        let r = store.sync_report().unwrap();
        // Part file: its sync and the summary's. Chunk files: six files, the folder, the summary.
        let expected = if layout == Layout::PartFile { 2 } else { 8 };
        assert_eq!(r.count - opened.count, expected, "{layout:?}");
        drop(store);
        let (_, again) = ChunkStore::open(&peer, &m, layout).unwrap();
        assert_eq!(again, snapshot, "{layout:?}");
        let summary = fs::read_to_string(peer.join("f.bin.summary")).unwrap();
        assert!(summary.contains("\"chunks\""), "{summary}");
    }
    let dir = tempfile::tempdir().unwrap();
    let m = Manifest::from_bytes("g.bin", &[1u8; 100], 10).unwrap();
    let (mut store, _) = ChunkStore::open(dir.path(), &m, Layout::PartFile).unwrap();
    store.set_sync(false);
    assert_eq!(store.sync_report(), None);
    store
        .write_chunk(m.chunk_id(0).unwrap(), &[1u8; 10])
        .unwrap();
    assert!(matches!(store.flush_due(Instant::now()), Flush::Wait(_)));
    store.sync_data().unwrap();
}
