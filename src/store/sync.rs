//! A [`ChunkStore`]'s syncs: the data syncs and summaries that [`SyncBatch`] batches, each
//! timed for [`SyncReport`].
//!
//! The rule that keeps a power cut harmless: a summary names only chunks a completed sync
//! covers. The caller takes its snapshot of the chunks held *before* calling
//! [`ChunkStore::write_summary`]; every chunk in it was written before, so the data sync that
//! call starts covers it, and the summary is written only once that sync has completed. One
//! sync runs at a time (`flush_lock`), so a summary never overtakes an earlier, smaller one.

use std::sync::{MutexGuard, PoisonError};

use tokio::time::Instant;

use super::batch::{Flush, SyncBatch, SyncReport};
use super::disk::{ChunkStore, Layout, SummaryFile};
use super::error::{StoreError, io_err};
use super::fs::{open_read, sync_parent, write_atomic};
use crate::chunkset::ChunkSet;
use crate::manifest::ChunkId;

impl ChunkStore {
    pub(super) fn batch(&self) -> MutexGuard<'_, SyncBatch> {
        self.batch.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs one sync call, recording its time.
    pub(super) fn timed<T>(&self, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let r = f();
        self.batch().record(start, Instant::now());
        r
    }

    /// What the summary writer should do at `now` (see [`SyncBatch::due`]).
    pub fn flush_due(&self, now: Instant) -> Flush {
        self.batch().due(now, self.sync)
    }

    /// The syncs so far; `None` for a store that does not sync (`--no-sync`).
    pub fn sync_report(&self) -> Option<SyncReport> {
        self.sync.then(|| self.batch().report())
    }

    /// Makes the chunks written so far durable, without a summary (nothing without sync).
    ///
    /// # Errors
    ///
    /// Any I/O error, naming the path; after one, no summary is written any more.
    pub fn sync_data(&self) -> Result<(), StoreError> {
        if !self.sync {
            return Ok(());
        }
        let _one = self
            .flush_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.sync_batch(false)
    }

    /// Replaces the summary file with `have`, a snapshot of the chunks held taken before this
    /// call: first the chunks written so far are synced, then the summary is written to
    /// `.tmp`, synced and renamed.
    ///
    /// # Errors
    ///
    /// Any I/O error, naming the path; a sync failed, now or before.
    pub fn write_summary(&self, have: &ChunkSet) -> Result<(), StoreError> {
        let _one = self
            .flush_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.sync_batch(true)?;
        if self.batch().has_failed() {
            return Err(io_err("syncing", &self.summary_path())(
                std::io::Error::other("an earlier sync failed: the summary is left as it was"),
            ));
        }
        let summary = SummaryFile {
            file: self.manifest.name.clone(),
            hash: self.manifest.hash,
            chunks: have.to_ranges(),
        };
        let json = serde_json::to_vec(&summary).map_err(|_| StoreError::Bug("summary json"))?;
        if self.sync {
            self.timed(|| write_atomic(&self.summary_path(), &json, true))
        } else {
            write_atomic(&self.summary_path(), &json, false)
        }
    }

    /// One batch: what was written so far is synced (with `sync`). Called under `flush_lock`.
    fn sync_batch(&self, summary: bool) -> Result<(), StoreError> {
        let files = self.batch().begin(summary);
        if !self.sync {
            return Ok(());
        }
        let res = self.sync_files(&files);
        if res.is_err() {
            self.batch().failed(files);
        }
        res
    }

    /// `fdatasync` of the part file; or of each chunk file in `files`, then of their folder.
    fn sync_files(&self, files: &[ChunkId]) -> Result<(), StoreError> {
        if let (Some(part), Layout::PartFile) = (&self.data, self.layout) {
            return self
                .timed(|| part.sync_data())
                .map_err(io_err("syncing", &self.part_path()));
        }
        for &id in files {
            let path = self.chunk_path(id);
            let f = open_read(&path).map_err(io_err("opening", &path))?;
            self.timed(|| f.sync_data())
                .map_err(io_err("syncing", &path))?;
        }
        if let Some(&id) = files.first() {
            // The chunk files' names: each was renamed into the folder.
            self.timed(|| sync_parent(&self.chunk_path(id)))?;
        }
        Ok(())
    }
}
