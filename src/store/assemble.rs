//! Assembling the finished file from a [`ChunkStore`]'s chunks.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::disk::{ChunkStore, Layout};
use super::error::{StoreError, io_err};
use super::fs::{create_fresh, hash_file, place, sync_parent};
use crate::hash::Hash;

impl ChunkStore {
    /// Makes `DIR/NAME` from the held chunks, checks the whole-file hash, and returns its
    /// path. The file appears only by rename, after the hash matched, and never replaces a
    /// file already there: see [`place`].
    ///
    /// # Errors
    ///
    /// [`StoreError::FileHashMismatch`] (the bad file is not kept),
    /// [`StoreError::WouldReplace`] when something appeared at `DIR/NAME` since the store was
    /// opened, or any I/O error.
    pub fn assemble(&self) -> Result<PathBuf, StoreError> {
        let out = self.output_path();
        if self.assembled.load(Ordering::Acquire) {
            return Ok(out);
        }
        let m = &self.manifest;
        let (src, actual) = match self.layout {
            Layout::PartFile => {
                let part = self.part_path();
                let h = self.whole_hash(&part)?;
                if self.sync
                    && let Some(f) = &self.data
                {
                    self.timed(|| f.sync_data())
                        .map_err(io_err("syncing", &part))?;
                }
                (part, h)
            }
            Layout::ChunkFiles => {
                let tmp = self.joined_tmp_path();
                let mut w = create_fresh(&tmp).map_err(io_err("creating", &tmp))?;
                let mut hasher = blake3::Hasher::new();
                for id in m.chunk_ids() {
                    let data = self.read_chunk(id)?;
                    hasher.update(&data);
                    w.write_all(&data).map_err(io_err("writing", &tmp))?;
                }
                if self.sync {
                    self.timed(|| w.sync_all())
                        .map_err(io_err("syncing", &tmp))?;
                }
                (tmp, hasher.finalize().into())
            }
        };
        if actual != m.hash {
            if self.layout == Layout::ChunkFiles {
                let _ = fs::remove_file(&src);
            }
            return Err(StoreError::FileHashMismatch {
                name: m.name.clone(),
                expected: m.hash,
                actual,
            });
        }
        if let Err(e) = place(&src, &out) {
            if self.layout == Layout::ChunkFiles {
                let _ = fs::remove_file(&src);
            }
            return Err(e);
        }
        if self.sync {
            self.timed(|| sync_parent(&out))?;
        }
        self.assembled.store(true, Ordering::Release);
        Ok(out)
    }

    /// The part file's hash: merged from the hashes taken as its chunks were written (a
    /// chunk held from an earlier run is read back for it), or, where that does not apply or
    /// does not match, read and hashed whole.
    fn whole_hash(&self, part: &Path) -> Result<Hash, StoreError> {
        if let Some(hasher) = &self.tree {
            let tree = hasher.finish();
            for id in self.manifest.chunk_ids() {
                let at = self.manifest.chunk_offset(id);
                if !tree.has(at) {
                    tree.add(at, &self.read_chunk(id)?);
                }
            }
            if tree.root() == Some(self.manifest.hash) {
                return Ok(self.manifest.hash);
            }
        }
        hash_file(part)
    }
}
