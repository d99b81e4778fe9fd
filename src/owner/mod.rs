//! The file owner: shares files, hands each joining peer a subset of chunks, and serves any
//! chunk asked of it.
//!
//! [`run`] takes a bound listener and a cancellation token (tests and the demo bind
//! `127.0.0.1:0` first) and runs the crate's one accept loop; each connection runs in its own
//! task ([`handler`]); a bad connection is answered, closed and logged there, and the accept
//! loop never sees it.

mod answer;
pub mod assign;
mod handler;
mod hello;
mod probe;
mod session;
mod spare;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};

use crate::accept::{Accepted, Admission, accept_loop};
use crate::choke::{Choker, DEFAULT_UPLOAD_SLOTS, spawn_rechoker};
use crate::chunkset::ChunkSet;
use crate::directory::Directory;
use crate::events::EventSink;
use crate::manifest::{Manifest, ManifestError};
use crate::net::Listener;
use assign::Distribution;

/// The most connections served at once; more are refused with an `error` message.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long the owner waits after the last peer joined before it tells peers which chunks
/// nobody was handed (so that a ring still forming does not fetch them all from the owner).
pub const ORPHAN_QUIET: Duration = Duration::from_millis(1000);

/// How long served-orphan updates are batched before the new orphan set is published.
pub const ORPHAN_BATCH: Duration = Duration::from_millis(50);

/// How the owner runs.
#[derive(Debug)]
pub struct Config {
    /// Expected number of peers: each is handed ⌈chunks / peers⌉ chunks.
    pub peers: u32,
    /// Where events go.
    pub events: Arc<EventSink>,
    /// Seed for the hand-out's random starting points; `None`: from the OS.
    pub seed: Option<u64>,
    /// Cap on the owner's total upload rate (bytes per second), shared by all connections.
    pub upload_limit: Option<Arc<crate::rate::RateLimiter>>,
    /// Getters served at once (choking); ring peers are always served.
    pub upload_slots: usize,
    /// The swarm's shared secret: every client must prove it (and gets the owner's proof).
    pub secret: Option<Arc<crate::auth::Secret>>,
    /// Connections served at once; more are refused with an `error` ([`MAX_CONNECTIONS`]
    /// unless raised: every ring peer keeps one, so a simulation of more peers needs more).
    pub max_connections: usize,
}

impl Config {
    /// Defaults: 5 expected peers, no seed, no cap, [`DEFAULT_UPLOAD_SLOTS`] slots.
    pub fn new(events: Arc<EventSink>) -> Self {
        Self {
            peers: 5,
            events,
            seed: None,
            upload_limit: None,
            upload_slots: DEFAULT_UPLOAD_SLOTS,
            secret: None,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// The directory of `files` for an owner listening on `addr`: ids in the files' order.
pub fn directory(files: &[Arc<SharedFile>], addr: SocketAddr, ttl: Duration) -> Arc<Directory> {
    Arc::new(Directory::new(
        files.iter().map(|f| f.manifest.clone()).collect(),
        addr,
        ttl,
    ))
}

/// One shared file: its manifest, the open file, and who was handed what.
#[derive(Debug)]
pub struct SharedFile {
    /// The manifest.
    pub manifest: Arc<Manifest>,
    manifest_json: Bytes,
    path: PathBuf,
    /// Where the bytes are read from.
    source: Source,
    /// Set once the file was found changed after hashing; it is no longer offered.
    withdrawn: std::sync::atomic::AtomicBool,
    dist: Mutex<Distribution>,
    /// The latest orphan set, published after [`ORPHAN_QUIET`].
    orphans: watch::Sender<Arc<ChunkSet>>,
    /// Signalled when the hand-out changed (a join, or an orphan served).
    dirty: Notify,
    /// When the last peer joined.
    last_join: Mutex<tokio::time::Instant>,
    /// Peers joined so far (seeds the hand-out when the owner has a seed).
    joins: std::sync::atomic::AtomicU64,
}

/// Where a shared file's bytes come from.
#[derive(Debug)]
enum Source {
    /// An open file, and its size and modification time when hashed: a file that no longer
    /// matches is withdrawn.
    Disk { file: std::fs::File, stamp: Stamp },
    /// Bytes in memory (a simulation's synthesised content): read in place, never changed.
    Memory(Bytes),
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

    /// The path being shared.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn dist(&self) -> std::sync::MutexGuard<'_, Distribution> {
        self.dist.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What a client is told about a file withdrawn because it changed.
    pub(crate) fn changed_message(&self) -> String {
        format!(
            "the owner's copy of {:?} changed after it was hashed; the owner no longer offers it",
            self.manifest.name
        )
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
                    self.path.display()
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

/// The regular files to share for `path`: the file itself, or every regular file directly in
/// the folder (sorted by name; hidden files and subfolders are skipped).
///
/// # Errors
///
/// `path` is missing or unreadable, or a folder holds no regular file.
pub fn files_to_share(path: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let name = entry.file_name();
        let hidden = name.to_str().is_none_or(|n| n.starts_with('.'));
        if !hidden && entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the folder holds no regular file to share",
        ));
    }
    Ok(files)
}

/// Serves `files` on `listener` until `token` is cancelled, keeping `directory` (made by
/// [`directory`] from the same files).
///
/// # Errors
///
/// None today: accept errors are logged and retried; the signature leaves room for them.
pub async fn run(
    listener: impl Into<Listener>,
    files: Vec<Arc<SharedFile>>,
    directory: Arc<Directory>,
    config: Config,
    token: CancellationToken,
) -> crate::Result<()> {
    let choker = Choker::new(config.upload_slots);
    let rechoker = spawn_rechoker(&choker);
    let listener = listener.into();
    let max_connections = config.max_connections;
    let ctx = Arc::new(handler::Ctx {
        config: Arc::new(config),
        directory,
        choker,
        spare: spare::SpareGate::default(),
        net: listener.mem_net(),
    });
    let files = Arc::new(files);
    let tracker = TaskTracker::new();
    for f in files.iter() {
        tracker.spawn(publish_orphans(f.clone(), token.child_token()));
    }
    let admission = Admission {
        max_connections,
        what: "accept",
    };
    accept_loop(listener, &token, &tracker, admission, |a: Accepted| {
        let (files, ctx) = (files.clone(), ctx.clone());
        let span = info_span!("conn", peer = %a.addr);
        async move {
            let conn = crate::connection::Connection::over(a.stream, a.addr.to_string(), 0);
            handler::handle(conn, a.permit, files, ctx, a.token).await;
        }
        .instrument(span)
    })
    .await;
    info!("owner shutting down");
    rechoker.abort();
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(3), tracker.wait())
        .await
        .is_err()
    {
        warn!("some connections did not close within 3s");
    }
    Ok(())
}

/// Publishes the orphan set of `file` whenever the hand-out changed and no peer joined for
/// [`ORPHAN_QUIET`].
async fn publish_orphans(file: Arc<SharedFile>, token: CancellationToken) {
    loop {
        tokio::select! {
            biased;
            () = token.cancelled() => return,
            () = file.dirty.notified() => {}
        }
        // Wait until no peer joined for ORPHAN_QUIET (a join moves the deadline), and batch
        // served-orphan updates for a moment.
        loop {
            let quiet_until =
                *file.last_join.lock().unwrap_or_else(|p| p.into_inner()) + ORPHAN_QUIET;
            let until = quiet_until.max(tokio::time::Instant::now() + ORPHAN_BATCH);
            tokio::select! {
                biased;
                () = token.cancelled() => return,
                () = tokio::time::sleep_until(until) => {}
            }
            let quiet_until =
                *file.last_join.lock().unwrap_or_else(|p| p.into_inner()) + ORPHAN_QUIET;
            if tokio::time::Instant::now() >= quiet_until {
                break;
            }
        }
        let orphans = file.dist().orphans(&file.manifest);
        file.orphans.send_if_modified(|cur| {
            if **cur == orphans {
                false
            } else {
                *cur = Arc::new(orphans);
                true
            }
        });
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
