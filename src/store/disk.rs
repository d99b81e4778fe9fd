//! `ChunkStore` itself: its layout, its paths, the summary file, and per-chunk reads and
//! writes. Opening it is in `open.rs`, assembling the finished file in `assemble.rs`.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::batch::SyncBatch;
use super::error::{StoreError, io_err};
use super::fs::{aux_stem, open_read, read_nofollow, write_atomic};
use super::tree::TreeHasher;
use crate::chunkset::{ChunkSet, Ranges};
use crate::hash::Hash;
use crate::manifest::{ChunkId, Manifest, disk_name};

/// How chunks are kept on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    /// One preallocated part file, chunks at their offsets.
    #[default]
    PartFile,
    /// One file per chunk under `chunks/`.
    ChunkFiles,
}

/// The summary file's content.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SummaryFile {
    pub(super) file: String,
    pub(super) hash: Hash,
    pub(super) chunks: Ranges,
}

/// A peer's chunks of one file on disk.
#[derive(Debug)]
pub struct ChunkStore {
    pub(super) dir: PathBuf,
    pub(super) manifest: Manifest,
    pub(super) layout: Layout,
    /// The part file (or, once complete, the finished file: the rename keeps this handle).
    pub(super) data: Option<File>,
    /// Make every write durable before it is relied on (see [`ChunkStore::set_sync`]).
    pub(super) sync: bool,
    /// `DIR/NAME` is this file, verified: found so on open, or put there by `assemble`.
    pub(super) assembled: AtomicBool,
    /// What was written since the last syncs, and the syncs' times (see [`super::batch`]).
    pub(super) batch: Mutex<SyncBatch>,
    /// Held through each batch: one sync (and summary) at a time, in order.
    pub(super) flush_lock: Mutex<()>,
    /// The whole-file hash, built as chunks are written (part file layout, where it applies).
    pub(super) tree: Option<TreeHasher>,
}

impl ChunkStore {
    /// The manifest this store holds chunks of.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// `DIR/NAME`: where the finished file appears, under the name's stored form
    /// ([`disk_name`]: control and bidirectional characters as `%XX`).
    pub fn output_path(&self) -> PathBuf {
        self.dir.join(&*disk_name(&self.manifest.name))
    }

    /// `DIR/STEM` + `suffix` (see [`aux_stem`]).
    pub(super) fn aux_path(&self, suffix: &str) -> PathBuf {
        self.dir
            .join(format!("{}{suffix}", aux_stem(&self.manifest.name)))
    }

    /// `DIR/NAME.part` (`NAME`: the stem, see [`aux_stem`]).
    pub fn part_path(&self) -> PathBuf {
        self.aux_path(".part")
    }

    /// `DIR/NAME.summary` (`NAME`: the stem, see [`aux_stem`]).
    pub fn summary_path(&self) -> PathBuf {
        self.aux_path(".summary")
    }

    /// `DIR/NAME.tmp` (`NAME`: the stem): the finished file while chunk files are joined.
    pub(super) fn joined_tmp_path(&self) -> PathBuf {
        self.aux_path(".tmp")
    }

    /// `DIR/NAME.manifest.json`.
    pub fn manifest_path(&self) -> PathBuf {
        Self::manifest_path_for(&self.dir, &self.manifest.name)
    }

    /// `DIR/NAME.manifest.json` for a name (`NAME`: the stem, see [`aux_stem`]).
    pub fn manifest_path_for(dir: &Path, name: &str) -> PathBuf {
        dir.join(format!("{}.manifest.json", aux_stem(name)))
    }

    /// `DIR/chunks`, where chunk files go; `DIR/.rs-chunks` for a file named `chunks`.
    pub(super) fn chunk_folder(&self) -> PathBuf {
        self.dir.join(if self.manifest.name == "chunks" {
            ".rs-chunks"
        } else {
            "chunks"
        })
    }

    /// `DIR/chunks/NAME.<id>` (`NAME`: the stem, see [`aux_stem`]).
    pub fn chunk_path(&self, id: ChunkId) -> PathBuf {
        self.chunk_folder()
            .join(format!("{}.{}", aux_stem(&self.manifest.name), id))
    }

    pub(super) fn read_summary(&self) -> ChunkSet {
        let empty = ChunkSet::new(self.manifest.chunk_count());
        let Ok(bytes) = read_nofollow(&self.summary_path()) else {
            return empty;
        };
        match serde_json::from_slice::<SummaryFile>(&bytes) {
            Ok(s) if s.hash == self.manifest.hash => {
                ChunkSet::try_from_stored_ranges(&self.manifest, &s.chunks).unwrap_or(empty)
            }
            Ok(_) => {
                tracing::warn!("summary is for another version of the file; starting afresh");
                empty
            }
            Err(e) => {
                tracing::warn!("unreadable summary ({e}); starting afresh");
                empty
            }
        }
    }

    /// With `sync` (the default), chunk bytes reach the disk before a summary names them, the
    /// summary and the finished file are synced before they are renamed into place, and the
    /// renames before they are relied on: a power cut loses at most the chunks since the last
    /// summary. Chunk bytes are synced in batches (see [`super::batch`]), off the hot path.
    /// Without it the same files are written the same way (temporary name, rename), which is
    /// enough for a killed process, but a power cut may leave a summary that names chunks the
    /// disk never got (they fail their hash on the next start and are fetched again).
    pub fn set_sync(&mut self, sync: bool) {
        self.sync = sync;
    }

    /// Stores a chunk that has been verified.
    ///
    /// # Errors
    ///
    /// Any I/O error, naming the path.
    /// Not synced here: a chunk file is renamed into place unsynced, and the next batch
    /// syncs it (and the folder) before a summary names it.
    pub fn write_chunk(&self, id: ChunkId, data: &[u8]) -> Result<(), StoreError> {
        let file = match (&self.data, self.layout) {
            (Some(file), Layout::PartFile) => {
                file.write_all_at(data, self.manifest.chunk_offset(id))
                    .map_err(io_err("writing", &self.part_path()))?;
                None
            }
            _ => {
                write_atomic(&self.chunk_path(id), data, false)?;
                self.sync.then_some(id)
            }
        };
        self.batch()
            .wrote(data.len() as u64, file, tokio::time::Instant::now());
        Ok(())
    }

    /// Hands the verified chunk `data`, just written, to the whole-file hash (see
    /// [`super::tree`]); a no-op where that hash is taken at the end.
    pub fn hash_behind(&self, id: ChunkId, data: &Bytes) {
        if let Some(tree) = &self.tree {
            tree.add_later(self.manifest.chunk_offset(id), data.clone());
        }
    }

    /// Reads a stored chunk (not re-hashed: the receiver verifies).
    ///
    /// # Errors
    ///
    /// Any I/O error, naming the path; a short file is an `UnexpectedEof` error.
    pub fn read_chunk(&self, id: ChunkId) -> Result<Bytes, StoreError> {
        let len = self.manifest.chunk_len(id);
        let mut buf = vec![0u8; len];
        match (&self.data, self.layout) {
            (Some(file), Layout::PartFile) => file
                .read_exact_at(&mut buf, self.manifest.chunk_offset(id))
                .map_err(io_err("reading", &self.part_path()))?,
            _ => {
                let path = self.chunk_path(id);
                let mut f = open_read(&path).map_err(io_err("opening", &path))?;
                f.read_exact(&mut buf).map_err(io_err("reading", &path))?;
                if f.read(&mut [0u8; 1]).map_err(io_err("reading", &path))? != 0 {
                    return Err(StoreError::ChunkLength {
                        chunk: id.get(),
                        expected: len,
                        actual: len + 1,
                    });
                }
            }
        }
        Ok(Bytes::from(buf))
    }
}
