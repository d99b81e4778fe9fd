//! One shared file ([`SharedFile`]): its manifest, where its bytes are (an open file checked
//! unchanged before each read, bytes in memory, or none: a published file), and who was handed
//! what; and the owner's list of them ([`Files`]), its own and the published ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;

use super::assign::Distribution;
use crate::chunkset::ChunkSet;
use crate::directory::{Directory, MemberId};
use crate::manifest::{Manifest, ManifestError};
use crate::watch;

/// One shared file: its manifest, the open file, and who was handed what.
#[derive(Debug)]
pub struct SharedFile {
    /// The manifest.
    pub manifest: Arc<Manifest>,
    pub(super) manifest_json: Bytes,
    pub(super) path: PathBuf,
    /// Where the bytes are read from.
    source: Source,
    /// Set once the file was found changed after hashing; it is no longer offered.
    pub(super) withdrawn: std::sync::atomic::AtomicBool,
    pub(super) dist: Mutex<Distribution>,
    /// The latest orphan set, published after [`ORPHAN_QUIET`].
    pub(super) orphans: watch::Sender<Arc<ChunkSet>>,
    /// Signalled when the hand-out changed (a join, or an orphan served).
    pub(super) dirty: Notify,
    /// When the last peer joined.
    pub(super) last_join: Mutex<tokio::time::Instant>,
    /// Peers joined so far (seeds the hand-out when the owner has a seed).
    pub(super) joins: std::sync::atomic::AtomicU64,
}

/// Where a shared file's bytes come from.
#[derive(Debug)]
enum Source {
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
            Source::Disk { file, stamp },
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
        Self::new(manifest, PathBuf::from(name), Source::Memory(data), peers)
    }

    fn new(
        manifest: Manifest,
        path: PathBuf,
        source: Source,
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
            withdrawn: std::sync::atomic::AtomicBool::new(false),
            dirty: Notify::new(),
            last_join: Mutex::new(tokio::time::Instant::now()),
            joins: std::sync::atomic::AtomicU64::new(0),
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
        Self::new(manifest, path, Source::Published, 1)
    }

    /// The manifest as JSON, as `welcome` and `publish` carry it.
    pub fn manifest_json(&self) -> Bytes {
        self.manifest_json.clone()
    }

    /// Whether only publishers hold this file's bytes.
    pub fn is_published(&self) -> bool {
        matches!(self.source, Source::Published)
    }

    /// The path being shared.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn dist(&self) -> std::sync::MutexGuard<'_, Distribution> {
        self.dist.lock().unwrap_or_else(|p| p.into_inner())
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
        let Source::Disk { stamp, .. } = &self.source else {
            return true;
        };
        std::fs::metadata(&self.path).is_ok_and(|m| {
            m.is_file() && m.len() == stamp.len && m.modified().ok() == stamp.modified
        })
    }

    /// Stops offering the file (its publisher found it removed or changed).
    pub(crate) fn withdraw(&self) {
        self.withdrawn
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the file was withdrawn (see [`SharedFile::check_unchanged`]).
    pub(crate) fn is_withdrawn(&self) -> bool {
        self.withdrawn.load(std::sync::atomic::Ordering::Relaxed)
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
        use std::sync::atomic::Ordering;
        let Source::Disk { file, stamp } = &self.source else {
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

impl SharedFile {
    /// Chunk `id`'s bytes, after [`SharedFile::check_unchanged`].
    ///
    /// # Errors
    ///
    /// The file changed, or the read failed.
    fn read_chunk_at(&self, id: crate::manifest::ChunkId) -> crate::Result<Bytes> {
        use std::os::unix::fs::FileExt;
        self.check_unchanged()?;
        let m = &self.manifest;
        let offset = m.chunk_offset(id);
        let file = match &self.source {
            Source::Memory(data) => {
                let at = usize::try_from(offset).expect("an in-memory offset fits usize");
                return Ok(data.slice(at..at + m.chunk_len(id)));
            }
            Source::Disk { file, .. } => file,
            Source::Published => {
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

/// The files an owner answers `hello` for, at the directory's indices: its own first, then
/// those publishers registered (see [`SharedFile::published`]). A published file leaves when
/// the directory frees it ([`Files::forget`]).
#[derive(Debug, Default)]
pub(crate) struct Files(std::sync::RwLock<BTreeMap<usize, Arc<SharedFile>>>);

impl Files {
    /// The files of `directory` (made from the same list, in the same order).
    pub(crate) fn new(files: Vec<Arc<SharedFile>>) -> Self {
        Self(std::sync::RwLock::new(
            files.into_iter().enumerate().collect(),
        ))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<usize, Arc<SharedFile>>> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<usize, Arc<SharedFile>>> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The file at directory index `index`.
    pub(crate) fn get(&self, index: usize) -> Option<Arc<SharedFile>> {
        self.read().get(&index).cloned()
    }

    /// How many files there are, and the only one if there is one.
    pub(crate) fn only(&self) -> (usize, Option<Arc<SharedFile>>) {
        let files = self.read();
        let only = (files.len() == 1)
            .then(|| files.values().next().cloned())
            .flatten();
        (files.len(), only)
    }

    /// Adds the published file `manifest` to `directory` and here, or finds it (the same
    /// name and content), and registers `addr` as its publisher; it is offered again if its
    /// publishers had left. Its index, and the membership (`None`: `addr` already publishes
    /// it through another connection).
    pub(crate) fn publish(
        &self,
        directory: &Directory,
        manifest: Manifest,
        addr: std::net::SocketAddr,
        node: Option<String>,
    ) -> (usize, Option<MemberId>) {
        let shared = SharedFile::published(manifest).expect("a decoded manifest encodes");
        // One copy of the manifest, shared by the directory and the file.
        let (index, id) = directory.publish(shared.manifest.clone(), addr, node);
        let mut files = self.write();
        match files.get(&index) {
            Some(f) => f
                .withdrawn
                .store(false, std::sync::atomic::Ordering::Relaxed),
            None => {
                files.insert(index, Arc::new(shared));
            }
        }
        (index, id)
    }

    /// Adds a file this node holds (a publisher's, found in its folder after it started) to
    /// `directory` and here; the same name and content replaces the old entry. Its index.
    pub(crate) fn add(&self, directory: &Directory, shared: Arc<SharedFile>) -> usize {
        let mut files = self.write();
        let index = directory.add_held(shared.manifest.clone());
        files.insert(index, shared);
        index
    }

    /// The published file at `index` lost its last publisher: it is no longer offered.
    pub(crate) fn orphaned(&self, index: usize) {
        if let Some(f) = self.read().get(&index).filter(|f| f.is_published()) {
            f.withdrawn
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Drops the files the directory freed (see [`crate::directory::Left`]).
    pub(crate) fn forget(&self, freed: &[usize]) {
        if freed.is_empty() {
            return;
        }
        let mut files = self.write();
        for index in freed {
            files.remove(index);
        }
    }
}

/// The owner's file is a read-only chunk source.
impl crate::storage::ChunkSource for SharedFile {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn read_chunk(&self, id: crate::manifest::ChunkId) -> crate::Result<Bytes> {
        self.read_chunk_at(id)
    }

    /// A file in memory is read in place rather than on the blocking pool.
    fn is_in_memory(&self) -> bool {
        matches!(self.source, Source::Memory(_))
    }
}
