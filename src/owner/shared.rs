//! One shared file ([`SharedFile`]): its manifest, where its bytes are (an open file checked
//! unchanged before each read, bytes in memory, or none: a published file), and who was handed
//! what. The hand-out bookkeeping (the chunks each join got, the orphans served, the quiet
//! period after the last join, the orphan list) is changed only through its methods.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::assign::Distribution;
use super::config::{ORPHAN_BATCH, ORPHAN_QUIET};
use crate::chunkset::ChunkSet;
use crate::manifest::{ChunkId, Manifest, ManifestError};
use crate::watch;

/// One shared file: its manifest, the open file, and who was handed what.
#[derive(Debug)]
pub struct SharedFile {
    /// The manifest.
    pub manifest: Arc<Manifest>,
    pub(super) manifest_json: Bytes,
    pub(super) path: PathBuf,
    /// Where the bytes are read from.
    source: ByteSource,
    /// Set once the file was found changed after hashing; it is no longer offered.
    withdrawn: AtomicBool,
    /// How often each chunk was handed out.
    dist: Mutex<Distribution>,
    /// The latest orphan set, published after [`ORPHAN_QUIET`].
    orphans: watch::Sender<Arc<ChunkSet>>,
    /// Signalled when the hand-out changed (a join, or an orphan served).
    dirty: Notify,
    /// When the last peer joined.
    last_join: Mutex<tokio::time::Instant>,
    /// Peers joined so far (seeds the hand-out when the owner has a seed).
    joins: AtomicU64,
    /// Chunks and chunk bytes sent to anyone, for whoever shows per-file upload counts.
    uploaded: [AtomicU64; 2],
}

/// Where a shared file's bytes come from.
#[derive(Debug)]
enum ByteSource {
    /// An open file, and its size and modification time when hashed: a file that no longer
    /// matches is withdrawn.
    Disk { file: std::fs::File, stamp: Stamp },
    /// Bytes in memory (a simulation's synthesised content): read in place, never changed.
    Memory(Bytes),
    /// None: a file peers publish, which a tracker lists but does not hold.
    Published,
}

impl SharedFile {
    /// Hashes the file at `path` and opens it for serving.
    ///
    /// # Errors
    ///
    /// The file cannot be read, or its name is unsafe.
    pub fn open(path: &Path, chunk_size: u64, peers: u32) -> Result<Self, ManifestError> {
        let io = |source| ManifestError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let stamp = Stamp::of(&file).map_err(io)?;
        let manifest = Manifest::from_file(path, chunk_size)?;
        if Stamp::of(&file).map_err(io)? != stamp || stamp.len != manifest.size {
            return Err(ManifestError::Changed {
                path: path.display().to_string(),
            });
        }
        Self::new(
            manifest,
            path.to_path_buf(),
            ByteSource::Disk { file, stamp },
            peers,
        )
    }

    /// Shares `data`, named `name`, from memory: a simulation's file, with no disk behind it.
    ///
    /// # Errors
    ///
    /// An unsafe name or a bad chunk size.
    pub fn from_memory(
        name: &str,
        data: Bytes,
        chunk_size: u64,
        peers: u32,
    ) -> Result<Self, ManifestError> {
        let manifest = Manifest::from_bytes(name, &data, chunk_size)?;
        Self::new(
            manifest,
            PathBuf::from(name),
            ByteSource::Memory(data),
            peers,
        )
    }

    fn new(
        manifest: Manifest,
        path: PathBuf,
        source: ByteSource,
        peers: u32,
    ) -> Result<Self, ManifestError> {
        let json = serde_json::to_vec(&manifest)?;
        let count = manifest.chunk_count();
        Ok(Self {
            orphans: watch::Sender::new(Arc::new(ChunkSet::new(count))),
            dist: Mutex::new(Distribution::new(count, peers)),
            manifest: Arc::new(manifest),
            manifest_json: Bytes::from(json),
            path,
            source,
            withdrawn: AtomicBool::new(false),
            dirty: Notify::new(),
            last_join: Mutex::new(tokio::time::Instant::now()),
            joins: AtomicU64::new(0),
            uploaded: [AtomicU64::new(0), AtomicU64::new(0)],
        })
    }

    /// A file publishers share (`peer share`): known by its manifest only; the owner serves
    /// `hello` for it and its directory, never its chunks.
    ///
    /// # Errors
    ///
    /// The manifest cannot be encoded (it always can).
    pub fn published(manifest: Manifest) -> Result<Self, ManifestError> {
        let path = PathBuf::from(&manifest.name);
        Self::new(manifest, path, ByteSource::Published, 1)
    }

    /// The manifest as JSON, as `welcome` and `publish` carry it.
    pub fn manifest_json(&self) -> Bytes {
        self.manifest_json.clone()
    }

    /// Whether only publishers hold this file's bytes.
    pub fn is_published(&self) -> bool {
        matches!(self.source, ByteSource::Published)
    }

    /// The path being shared.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What a client is told about a file withdrawn because it changed (or, published,
    /// because its publishers left).
    pub(crate) fn changed_message(&self) -> String {
        if self.is_published() {
            return format!(
                "every publisher of {:?} has left: no one serves it now (its chunks may still be with getters: peer locate)",
                self.manifest.name
            );
        }
        format!(
            "the owner's copy of {:?} changed after it was hashed; the owner no longer offers it",
            self.manifest.name
        )
    }

    /// Whether the file at its path is still the one hashed (same size and modification
    /// time; a file replaced by another under the same name is not). Always true for a file
    /// that is not on disk.
    pub(crate) fn matches_path(&self) -> bool {
        let ByteSource::Disk { stamp, .. } = &self.source else {
            return true;
        };
        std::fs::metadata(&self.path).is_ok_and(|m| {
            m.is_file() && m.len() == stamp.len && m.modified().ok() == stamp.modified
        })
    }

    /// Stops offering the file (its publisher found it removed or changed, or a published
    /// file lost its last publisher).
    pub(crate) fn withdraw(&self) {
        self.withdrawn.store(true, Ordering::Relaxed);
    }

    /// Offers the file again (a published file whose publishers had left is published anew).
    pub(super) fn offer_again(&self) {
        self.withdrawn.store(false, Ordering::Relaxed);
    }

    /// Whether the file was withdrawn (see [`SharedFile::check_unchanged`]).
    pub(crate) fn is_withdrawn(&self) -> bool {
        self.withdrawn.load(Ordering::Relaxed)
    }

    /// Checks, before a read, that the file still has the size and modification time it had
    /// when hashed (one `fstat`). The first time it has not, the file is withdrawn and the
    /// owner says so in its log; every client is then refused with
    /// [`SharedFile::changed_message`].
    ///
    /// # Errors
    ///
    /// [`crate::Error::Refused`] with that message.
    pub(crate) fn check_unchanged(&self) -> crate::Result<()> {
        let ByteSource::Disk { file, stamp } = &self.source else {
            return Ok(());
        };
        if !self.is_withdrawn() {
            let now = Stamp::of(file);
            if now.as_ref().is_ok_and(|n| n == stamp) {
                return Ok(());
            }
            if !self.withdrawn.swap(true, Ordering::Relaxed) {
                let what = match now {
                    Ok(n) if n.len != stamp.len => {
                        format!("its size went from {} to {} bytes", stamp.len, n.len)
                    }
                    Ok(_) => "it was modified".to_string(),
                    Err(e) => format!("it cannot be checked ({e})"),
                };
                tracing::error!(
                    "{} changed after it was hashed ({what}); no longer offering it: restart file-owner to share the new version",
                    crate::manifest::display_name(&self.path.to_string_lossy())
                );
            }
        }
        Err(crate::Error::Refused(self.changed_message()))
    }
}

/// The hand-out: who was handed what, and the orphan list.
impl SharedFile {
    fn dist(&self) -> std::sync::MutexGuard<'_, Distribution> {
        self.dist.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn last_join(&self) -> tokio::time::Instant {
        *self.last_join.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands a joining ring peer that holds `held` its chunks, the ones handed out least so
    /// far (see [`Distribution::assign`]), and moves the orphan list's quiet period. With a
    /// `seed`, the n-th join gets the same start every run.
    pub(super) fn hand_out(&self, held: &ChunkSet, seed: Option<u64>) -> Vec<ChunkId> {
        let m = &self.manifest;
        let assigned = match seed {
            Some(seed) => {
                let joins = self.joins.fetch_add(1, Ordering::Relaxed);
                let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(
                    seed.wrapping_add(joins),
                );
                self.dist().assign(m, held, &mut rng)
            }
            None => self.dist().assign(m, held, &mut rand::rng()),
        };
        *self.last_join.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
        self.dirty.notify_one();
        assigned
    }

    /// Chunk `id` was sent to a client: an orphan (handed to nobody) is in the ring now, and
    /// the orphan list will say so.
    pub(super) fn served(&self, id: ChunkId) {
        self.uploaded[0].fetch_add(1, Ordering::Relaxed);
        self.uploaded[1].fetch_add(self.manifest.chunk_len(id) as u64, Ordering::Relaxed);
        if self.dist().note_served_if_orphan(id) {
            self.dirty.notify_one();
        }
    }

    /// Chunks of this file sent to anyone so far, and their bytes.
    pub fn uploaded(&self) -> (u64, u64) {
        (
            self.uploaded[0].load(Ordering::Relaxed),
            self.uploaded[1].load(Ordering::Relaxed),
        )
    }

    /// The orphan list (chunks handed to nobody), as [`SharedFile::publish_orphans`] changes
    /// it.
    pub(super) fn orphan_list(&self) -> watch::Receiver<Arc<ChunkSet>> {
        self.orphans.subscribe()
    }

    /// Publishes the orphan list whenever the hand-out changed and no peer joined for
    /// [`ORPHAN_QUIET`], until `token` is cancelled.
    pub(super) async fn publish_orphans(self: Arc<Self>, token: CancellationToken) {
        loop {
            tokio::select! {
                biased;
                () = token.cancelled() => return,
                () = self.dirty.notified() => {}
            }
            // Wait until no peer joined for ORPHAN_QUIET (a join moves the deadline), and
            // batch served-orphan updates for a moment.
            loop {
                let quiet_until = self.last_join() + ORPHAN_QUIET;
                let until = quiet_until.max(tokio::time::Instant::now() + ORPHAN_BATCH);
                tokio::select! {
                    biased;
                    () = token.cancelled() => return,
                    () = tokio::time::sleep_until(until) => {}
                }
                if tokio::time::Instant::now() >= self.last_join() + ORPHAN_QUIET {
                    break;
                }
            }
            let orphans = self.dist().orphans(&self.manifest);
            self.orphans.send_if_modified(|cur| {
                if **cur == orphans {
                    false
                } else {
                    *cur = Arc::new(orphans);
                    true
                }
            });
        }
    }
}

impl SharedFile {
    /// Chunk `id`'s bytes, after [`SharedFile::check_unchanged`].
    ///
    /// # Errors
    ///
    /// The file changed, or the read failed.
    fn read_chunk_at(&self, id: ChunkId) -> crate::Result<Bytes> {
        use std::os::unix::fs::FileExt;
        self.check_unchanged()?;
        let m = &self.manifest;
        let offset = m.chunk_offset(id);
        let file = match &self.source {
            ByteSource::Memory(data) => {
                let at = usize::try_from(offset).expect("an in-memory offset fits usize");
                return Ok(data.slice(at..at + m.chunk_len(id)));
            }
            ByteSource::Disk { file, .. } => file,
            ByteSource::Published => {
                return Err(crate::Error::Refused(format!(
                    "{:?} is served by its publishers, not by this directory: ask them (peer locate)",
                    m.name
                )));
            }
        };
        let mut buf = vec![0u8; m.chunk_len(id)];
        file.read_exact_at(&mut buf, offset)
            .map_err(|source| crate::store::StoreError::Io {
                action: "reading",
                path: self.path.clone(),
                source,
            })?;
        Ok(Bytes::from(buf))
    }
}

/// A file's size and modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl Stamp {
    fn of(file: &std::fs::File) -> std::io::Result<Self> {
        let meta = file.metadata()?;
        Ok(Self {
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

/// The owner's file is a read-only chunk source.
impl crate::storage::ChunkSource for SharedFile {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn read_chunk(&self, id: ChunkId) -> crate::Result<Bytes> {
        self.read_chunk_at(id)
    }

    /// A file in memory is read in place rather than on the blocking pool.
    fn is_in_memory(&self) -> bool {
        matches!(self.source, ByteSource::Memory(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 10-chunk file in memory, for 5 expected peers (2 chunks each).
    fn file() -> Arc<SharedFile> {
        let data = Bytes::from(vec![7u8; 10_000]);
        Arc::new(SharedFile::from_memory("data.bin", data, 1000, 5).unwrap())
    }

    #[test]
    fn with_a_seed_the_nth_join_is_handed_the_same_chunks_every_run() {
        let (a, b) = (file(), file());
        let none = ChunkSet::new(10);
        for _ in 0..5 {
            assert_eq!(a.hand_out(&none, Some(7)), b.hand_out(&none, Some(7)));
        }
    }

    /// The orphan list's next value, while `publishing` runs.
    async fn next(
        list: &mut watch::Receiver<Arc<ChunkSet>>,
        publishing: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Arc<ChunkSet> {
        tokio::select! {
            () = publishing => panic!("stopped publishing"),
            changed = list.changed() => changed.unwrap(),
        }
        list.borrow_and_update().clone()
    }

    /// Under the paused clock: the orphan list is published once no peer joined for
    /// [`ORPHAN_QUIET`], and an orphan served leaves it after [`ORPHAN_BATCH`]. The test waits
    /// for the list to change.
    #[tokio::test(start_paused = true)]
    async fn orphans_are_published_after_the_quiet_period_and_served_ones_leave() {
        let shared = file();
        let token = CancellationToken::new();
        let mut list = shared.orphan_list();
        let publishing = shared.clone().publish_orphans(token.clone());
        tokio::pin!(publishing);
        let joined = tokio::time::Instant::now();
        assert_eq!(shared.hand_out(&ChunkSet::new(10), None).len(), 2);
        let orphans = next(&mut list, publishing.as_mut()).await;
        assert_eq!(orphans.count(), 8);
        assert_eq!(joined.elapsed(), ORPHAN_QUIET);
        let orphan = shared.manifest.chunk_id(orphans.indices().next().unwrap());
        let served = tokio::time::Instant::now();
        shared.served(orphan.unwrap());
        assert_eq!(next(&mut list, publishing.as_mut()).await.count(), 7);
        assert_eq!(served.elapsed(), ORPHAN_BATCH);
        token.cancel();
        publishing.await;
    }
}
