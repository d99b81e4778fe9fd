//! `Storage`: what a peer needs of the place its chunks live, and the in-memory kind; and
//! `ChunkSource`, what serving needs (read-only).
//!
//! Two stores: [`ChunkStore`] on disk (a part file or chunk files, see [`crate::store`]), and
//! [`MemStore`] in memory, for tests and simulations; the owner's shared file
//! ([`crate::owner::SharedFile`]) is a third, read-only, chunk source. One rule for the
//! runtime thread: a store whose [`ChunkSource::is_in_memory`] is false may block on the disk, so
//! its long calls (open, summary, assembly) go through `spawn_blocking`; an in-memory store is
//! always called in place (which also keeps a simulation deterministic: nothing runs on
//! another thread).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::chunkset::ChunkSet;
use crate::hash::Hash;
use crate::manifest::{ChunkId, Manifest};
use crate::store::{ChunkStore, Flush, StoreError, SyncReport};

/// Where chunks are read from: every store, and the owner's shared file (read-only).
pub trait ChunkSource: Send + Sync + std::fmt::Debug {
    /// The file's manifest.
    fn manifest(&self) -> &Manifest;
    /// A chunk held here (not re-hashed: the receiver verifies).
    ///
    /// # Errors
    ///
    /// Any I/O error, a chunk not held, or (the owner's file) a file changed since it was
    /// hashed.
    fn read_chunk(&self, id: ChunkId) -> crate::Result<Bytes>;
    /// True when every call is quick and touches no disk: called in place, never on the
    /// blocking pool.
    fn is_in_memory(&self) -> bool {
        false
    }
}

/// A peer's chunks of one file.
pub trait Storage: ChunkSource {
    /// Stores a chunk that has been verified.
    ///
    /// # Errors
    ///
    /// Any I/O error, naming the path.
    fn write_chunk(&self, id: ChunkId, data: &[u8]) -> Result<(), StoreError>;
    /// Hands a chunk just verified and written to work that may run behind the transfer
    /// (the whole-file hash of a [`ChunkStore`]); by default, nothing.
    fn hash_behind(&self, _id: ChunkId, _data: &Bytes) {}
    /// Records which chunks are held, for a restart.
    ///
    /// # Errors
    ///
    /// Any I/O error, naming the path.
    fn write_summary(&self, have: &ChunkSet) -> Result<(), StoreError>;
    /// What the summary writer should do at `now`: an in-memory store never syncs.
    fn flush_due(&self, _now: tokio::time::Instant) -> Flush {
        Flush::Idle
    }
    /// Makes the chunks written so far durable, without a summary.
    ///
    /// # Errors
    ///
    /// Any I/O error, naming the path.
    fn sync_data(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// The syncs so far; `None` for a store that does not sync.
    fn sync_report(&self) -> Option<SyncReport> {
        None
    }
    /// Makes the finished file from the held chunks, checks the whole-file hash, and returns
    /// its path.
    ///
    /// # Errors
    ///
    /// [`StoreError::FileHashMismatch`], or any I/O error.
    fn assemble(&self) -> Result<PathBuf, StoreError>;
}

impl ChunkSource for ChunkStore {
    fn manifest(&self) -> &Manifest {
        ChunkStore::manifest(self)
    }
    fn read_chunk(&self, id: ChunkId) -> crate::Result<Bytes> {
        Ok(ChunkStore::read_chunk(self, id)?)
    }
}

impl Storage for ChunkStore {
    fn write_chunk(&self, id: ChunkId, data: &[u8]) -> Result<(), StoreError> {
        ChunkStore::write_chunk(self, id, data)
    }
    fn hash_behind(&self, id: ChunkId, data: &Bytes) {
        ChunkStore::hash_behind(self, id, data);
    }
    fn write_summary(&self, have: &ChunkSet) -> Result<(), StoreError> {
        ChunkStore::write_summary(self, have)
    }
    fn flush_due(&self, now: tokio::time::Instant) -> Flush {
        ChunkStore::flush_due(self, now)
    }
    fn sync_data(&self) -> Result<(), StoreError> {
        ChunkStore::sync_data(self)
    }
    fn sync_report(&self) -> Option<SyncReport> {
        ChunkStore::sync_report(self)
    }
    fn assemble(&self) -> Result<PathBuf, StoreError> {
        ChunkStore::assemble(self)
    }
}

/// Runs `f` on `store`: in place for an in-memory store, else on the blocking pool.
///
/// # Errors
///
/// The blocking task panicked.
pub(crate) async fn call<T: Send + 'static>(
    store: &Arc<dyn Storage>,
    f: impl FnOnce(&dyn Storage) -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    if store.is_in_memory() {
        return Ok(f(&**store));
    }
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&*store)).await
}

/// Reads chunk `id` of `source`: in place from memory, else on the blocking pool (the owner's
/// file may be cold on a slow disk; a peer's recent chunks, in the page cache, are read in
/// place by the peer itself).
///
/// # Errors
///
/// What [`ChunkSource::read_chunk`] returns, or the blocking task panicked.
pub(crate) async fn read<S: ChunkSource + 'static>(
    source: &Arc<S>,
    id: ChunkId,
) -> crate::Result<Bytes> {
    if source.is_in_memory() {
        return source.read_chunk(id);
    }
    let source = source.clone();
    tokio::task::spawn_blocking(move || source.read_chunk(id)).await?
}

/// Checks `data` against the manifest: length and hash. The one chunk check, for every
/// store and every receiver.
///
/// # Errors
///
/// [`StoreError::ChunkLength`] or [`StoreError::ChunkHashMismatch`].
pub fn verify(manifest: &Manifest, id: ChunkId, data: &[u8]) -> Result<(), StoreError> {
    let expected = manifest.chunk_len(id);
    if data.len() != expected {
        return Err(StoreError::ChunkLength {
            chunk: id.get(),
            expected,
            actual: data.len(),
        });
    }
    let actual = Hash::of(data);
    let expected = manifest.chunk_hash(id);
    if actual != expected {
        return Err(StoreError::ChunkHashMismatch {
            chunk: id.get(),
            expected,
            actual,
        });
    }
    Ok(())
}

/// Verifies `data` as chunk `id` of `manifest`, writes it to `store` and hands it to the
/// store's work behind the transfer: the work of a chunk's arrival that needs no lock, so it
/// may run on any thread.
///
/// # Errors
///
/// A hash or length mismatch, or a store error.
pub fn check_and_store(
    manifest: &Manifest,
    store: &dyn Storage,
    id: ChunkId,
    data: &Bytes,
) -> Result<(), StoreError> {
    verify(manifest, id, data)?;
    store.write_chunk(id, data)?;
    store.hash_behind(id, data);
    Ok(())
}

/// How an in-memory peer keeps its chunks.
#[derive(Clone, Debug)]
pub enum InMemory {
    /// Every verified chunk's bytes, in memory; the finished file is hashed whole. For tests.
    Bodies,
    /// The file's bytes are known (a simulation's synthesised content, shared by every node):
    /// a verified chunk's bytes are dropped and uploads are served from this copy, so memory
    /// does not grow with peers × file size. Every chunk received is still hashed against the
    /// manifest; the whole-file hash is the owner's, computed once.
    Known(Bytes),
}

/// A peer's chunks in memory: nothing on disk, nothing blocks.
#[derive(Debug)]
pub struct MemStore {
    manifest: Manifest,
    path: PathBuf,
    kind: InMemory,
    /// Chunk bytes ([`InMemory::Bodies`]), or a marker ([`InMemory::Known`]).
    chunks: Mutex<Vec<Option<Bytes>>>,
}

impl MemStore {
    /// An empty store of `manifest`; the finished file is named `dir/NAME` (`NAME` stored as
    /// [`disk_name`](crate::manifest::disk_name) says; nothing is written there).
    ///
    /// # Errors
    ///
    /// [`InMemory::Known`] bytes that are not this manifest's file (their size differs).
    pub fn new(manifest: &Manifest, dir: &Path, kind: InMemory) -> Result<Self, StoreError> {
        if let InMemory::Known(data) = &kind
            && data.len() as u64 != manifest.size
        {
            return Err(StoreError::Bug(
                "the known content's size differs from the manifest's",
            ));
        }
        Ok(Self {
            path: dir.join(&*crate::manifest::disk_name(&manifest.name)),
            manifest: manifest.clone(),
            kind,
            chunks: Mutex::new(vec![None; manifest.chunk_count() as usize]),
        })
    }

    fn chunks(&self) -> std::sync::MutexGuard<'_, Vec<Option<Bytes>>> {
        self.chunks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn known_slice(&self, data: &Bytes, id: ChunkId) -> Bytes {
        let at = usize::try_from(self.manifest.chunk_offset(id)).expect("in memory: fits usize");
        data.slice(at..at + self.manifest.chunk_len(id))
    }
}

impl ChunkSource for MemStore {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn read_chunk(&self, id: ChunkId) -> crate::Result<Bytes> {
        let held = self.chunks()[id.index()].clone();
        match (held, &self.kind) {
            (None, _) => {
                Err(StoreError::Bug("an in-memory chunk read before it was stored").into())
            }
            (Some(body), InMemory::Bodies) => Ok(body),
            (Some(_), InMemory::Known(data)) => Ok(self.known_slice(data, id)),
        }
    }

    fn is_in_memory(&self) -> bool {
        true
    }
}

impl Storage for MemStore {
    fn write_chunk(&self, id: ChunkId, data: &[u8]) -> Result<(), StoreError> {
        let body = match &self.kind {
            InMemory::Bodies => Bytes::copy_from_slice(data),
            InMemory::Known(_) => Bytes::new(),
        };
        self.chunks()[id.index()] = Some(body);
        Ok(())
    }

    fn write_summary(&self, _have: &ChunkSet) -> Result<(), StoreError> {
        Ok(())
    }

    fn assemble(&self) -> Result<PathBuf, StoreError> {
        let chunks = self.chunks();
        if chunks.iter().any(Option::is_none) {
            return Err(StoreError::Bug("assembling an incomplete in-memory file"));
        }
        if let InMemory::Bodies = self.kind {
            let mut hasher = blake3::Hasher::new();
            for body in chunks.iter().flatten() {
                hasher.update(body);
            }
            let actual: Hash = hasher.finalize().into();
            if actual != self.manifest.hash {
                return Err(StoreError::FileHashMismatch {
                    name: self.manifest.name.clone(),
                    expected: self.manifest.hash,
                    actual,
                });
            }
        }
        Ok(self.path.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(data: &[u8]) -> Manifest {
        Manifest::from_bytes("f.bin", data, 1024).unwrap()
    }

    #[test]
    fn bodies_are_kept_and_the_whole_is_hashed() {
        let data = crate::sim::synthesize(5000, 3);
        let m = manifest(&data);
        let store = MemStore::new(&m, Path::new("/d"), InMemory::Bodies).unwrap();
        for id in m.chunk_ids() {
            let off = usize::try_from(m.chunk_offset(id)).unwrap();
            let body = &data[off..off + m.chunk_len(id)];
            verify(&m, id, body).unwrap();
            store.write_chunk(id, body).unwrap();
            assert_eq!(store.read_chunk(id).unwrap(), body);
        }
        assert_eq!(store.assemble().unwrap(), Path::new("/d/f.bin"));
        // A wrong body (that somehow got past verification) fails the whole-file hash.
        let id = m.chunk_id(0).unwrap();
        store.write_chunk(id, &vec![0; m.chunk_len(id)]).unwrap();
        assert!(matches!(
            store.assemble(),
            Err(StoreError::FileHashMismatch { .. })
        ));
    }

    #[test]
    fn known_content_serves_from_the_shared_copy() {
        let data = crate::sim::synthesize(3000, 4);
        let m = manifest(&data);
        let store = MemStore::new(&m, Path::new("/d"), InMemory::Known(data.clone())).unwrap();
        let id = m.chunk_id(2).unwrap();
        let at = usize::try_from(m.chunk_offset(id)).unwrap();
        let body = data.slice(at..at + m.chunk_len(id));
        assert!(store.read_chunk(id).is_err(), "not held yet");
        store.write_chunk(id, &body).unwrap();
        assert_eq!(store.read_chunk(id).unwrap(), body);
        assert!(store.assemble().is_err(), "incomplete");
        let wrong = MemStore::new(&m, Path::new("/d"), InMemory::Known(data.slice(1..)));
        assert!(wrong.is_err());
    }
}
