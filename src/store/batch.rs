//! When a durable store syncs, and what its syncs cost: the batching policy ([`SyncBatch`])
//! and its account ([`SyncReport`]). Pure bookkeeping: the store does the syncing
//! (`sync.rs`), the peer's summary writer asks [`SyncBatch::due`] what to do next.
//!
//! Two kinds of sync, both off the hot path (on the blocking pool, one at a time):
//!
//! - a **data sync** (`fdatasync` of the part file, or of each chunk file written since the
//!   last sync and then the chunk folder) starts once [`DATA_SYNC_BYTES`] are unsynced, and
//!   again as soon as the previous one ends while as many more are. So the disk writes while
//!   chunks arrive, in batches that grow when the disk is slower than the network, and at the
//!   end only the last batch is left to flush.
//! - a **summary** (a data sync, then the summary file naming the chunks held *before* that
//!   sync began) once [`SUMMARY_BYTES`] or [`SUMMARY_INTERVAL`] of chunks are not named yet.
//!
//! (Starting write-back without waiting, Linux `sync_file_range(SYNC_FILE_RANGE_WRITE)`, would
//! spare the data syncs' journal commits, but no crate in the tree wraps it safely and this
//! crate forbids `unsafe`; the rolling data syncs do the same job.)

use std::time::Duration;

use tokio::time::Instant;

use crate::manifest::ChunkId;

/// A data sync starts once this many bytes were written since the last sync began.
pub const DATA_SYNC_BYTES: u64 = 8 << 20;
/// A summary is due once this many bytes were written since the last summary's sync began…
pub const SUMMARY_BYTES: u64 = 64 << 20;
/// …or once the oldest chunk it would name was written this long ago.
pub const SUMMARY_INTERVAL: Duration = Duration::from_millis(500);

/// What the summary writer should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// Nothing written since the last summary: wait for a chunk.
    Idle,
    /// Nothing due before this instant (or a new chunk).
    Wait(Instant),
    /// Sync the chunks written so far ([`crate::storage::Storage::sync_data`]).
    Data,
    /// Sync, then write the summary ([`crate::storage::Storage::write_summary`]).
    Summary,
}

/// The syncs of one store so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SyncReport {
    /// Syncs: each `fdatasync`/`fsync` call, of data, summary or folder.
    pub count: u32,
    /// Their time, added up.
    pub total: Duration,
    /// Time during which a sync ran after the last chunk was written (overlaps counted once):
    /// what durability added to the end of the transfer.
    pub after_last_chunk: Duration,
}

/// The batching policy's state: bytes and chunk files not yet synced, and the syncs' times.
#[derive(Debug, Default)]
pub struct SyncBatch {
    /// Bytes written since the last sync (of either kind) began.
    unsynced: u64,
    /// Bytes written since the last summary's sync began, and when the first of them was.
    unsummarised: u64,
    unsummarised_since: Option<Instant>,
    /// Chunk files written since the last sync began (chunk-files layout).
    pending_files: Vec<ChunkId>,
    /// When the last chunk was written.
    last_write: Option<Instant>,
    /// Syncs that ended after the last write: (start, end).
    recent: Vec<(Instant, Instant)>,
    count: u32,
    total: Duration,
    /// A sync failed: the kernel may have dropped the pages it could not write, so no summary
    /// may name anything any more (a later sync could succeed without them).
    failed: bool,
}

impl SyncBatch {
    /// A chunk of `bytes` was written at `now` (with chunk files: the file of `file`).
    pub fn wrote(&mut self, bytes: u64, file: Option<ChunkId>, now: Instant) {
        self.unsynced += bytes;
        self.unsummarised += bytes;
        self.unsummarised_since.get_or_insert(now);
        if let Some(id) = file {
            self.pending_files.push(id);
        }
        self.last_write = Some(now);
        self.recent.retain(|&(_, end)| end > now);
    }

    /// A chunk file found on disk, not known to be synced: the next sync syncs it.
    pub fn add_file(&mut self, id: ChunkId) {
        self.pending_files.push(id);
    }

    /// What to do at `now`; a store that does not sync (`--no-sync`) only writes summaries.
    pub fn due(&self, now: Instant, sync: bool) -> Flush {
        let Some(since) = self.unsummarised_since else {
            return Flush::Idle;
        };
        let summary_at = since + SUMMARY_INTERVAL;
        if now >= summary_at || self.unsummarised >= SUMMARY_BYTES {
            Flush::Summary
        } else if sync && self.unsynced >= DATA_SYNC_BYTES {
            Flush::Data
        } else {
            Flush::Wait(summary_at)
        }
    }

    /// A sync begins (a summary's, with `summary`): what was written so far is covered by it.
    /// Returns the chunk files to sync.
    pub fn begin(&mut self, summary: bool) -> Vec<ChunkId> {
        self.unsynced = 0;
        if summary {
            self.unsummarised = 0;
            self.unsummarised_since = None;
        }
        std::mem::take(&mut self.pending_files)
    }

    /// A data sync failed: its chunk files are still unsynced, and no summary may be written.
    pub fn failed(&mut self, files: Vec<ChunkId>) {
        self.failed = true;
        self.pending_files.extend(files);
    }

    /// Whether a sync failed (then summaries are refused).
    pub fn has_failed(&self) -> bool {
        self.failed
    }

    /// Records one sync call that ran from `start` to `end`.
    pub fn record(&mut self, start: Instant, end: Instant) {
        self.count += 1;
        self.total += end.saturating_duration_since(start);
        if self.last_write.is_none_or(|w| end > w) {
            self.recent.push((start, end));
        }
    }

    /// The syncs so far.
    pub fn report(&self) -> SyncReport {
        let from = self.last_write;
        let mut spans: Vec<(Instant, Instant)> = self
            .recent
            .iter()
            .map(|&(s, e)| (from.map_or(s, |w| s.max(w)), e))
            .filter(|(s, e)| e > s)
            .collect();
        spans.sort();
        let mut after = Duration::ZERO;
        let mut reached: Option<Instant> = None;
        for (s, e) in spans {
            let s = reached.map_or(s, |r| s.max(r));
            if e > s {
                after += e - s;
            }
            reached = Some(reached.map_or(e, |r| r.max(e)));
        }
        SyncReport {
            count: self.count,
            total: self.total,
            after_last_chunk: after,
        }
    }
}
