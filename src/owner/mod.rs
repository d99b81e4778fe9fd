//! The file owner: shares files, hands each joining peer a subset of chunks, and serves any
//! chunk asked of it.
//!
//! [`run`] takes a bound listener and a cancellation token (tests and the demo bind
//! `127.0.0.1:0` first) and runs the crate's one accept loop; each connection runs in its own
//! task ([`handler`]); a bad connection is answered, closed and logged there, and the accept
//! loop never sees it.

mod answer;
pub mod assign;
mod config;
mod handler;
mod hello;
mod member;
mod probe;
mod publisher;
mod session;
mod shared;
mod spare;
mod state;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};

use crate::accept::{Accepted, Admission, accept_loop};
use crate::choke::{Choker, spawn_rechoker};
use crate::directory::Directory;
use crate::net::Listener;
pub use config::{Config, MAX_CONNECTIONS, ORPHAN_BATCH, ORPHAN_QUIET};
pub(crate) use shared::Files;
pub use shared::SharedFile;

/// The directory of `files` for an owner listening on `addr`: ids in the files' order.
pub fn directory(files: &[Arc<SharedFile>], addr: SocketAddr, ttl: Duration) -> Arc<Directory> {
    Arc::new(Directory::new(
        files.iter().map(|f| f.manifest.clone()).collect(),
        addr,
        ttl,
    ))
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
    let tracker = TaskTracker::new();
    for f in &files {
        tracker.spawn(publish_orphans(f.clone(), token.child_token()));
    }
    let files = Arc::new(Files::new(files));
    serve(listener.into(), files, directory, config, token, tracker).await
}

/// As [`run`], with a list of files the caller may add to while it runs (a publisher's
/// folder).
pub(crate) async fn run_with(
    listener: Listener,
    files: Arc<Files>,
    directory: Arc<Directory>,
    config: Config,
    token: CancellationToken,
) -> crate::Result<()> {
    serve(
        listener,
        files,
        directory,
        config,
        token,
        TaskTracker::new(),
    )
    .await
}

async fn serve(
    listener: Listener,
    files: Arc<Files>,
    directory: Arc<Directory>,
    config: Config,
    token: CancellationToken,
    tracker: TaskTracker,
) -> crate::Result<()> {
    let choker = Choker::new(config.upload_slots);
    config.metrics.set_choker(choker.clone());
    let rechoker = spawn_rechoker(&choker);
    let max_connections = config.max_connections;
    let ctx = Arc::new(state::Ctx {
        config: Arc::new(config),
        files,
        directory,
        choker,
        spare: spare::SpareGate::default(),
        net: listener.mem_net(),
    });
    let admission = Admission {
        max_connections,
        what: "accept",
    };
    accept_loop(listener, &token, &tracker, admission, |a: Accepted| {
        let ctx = ctx.clone();
        let span = info_span!("conn", peer = %a.addr);
        async move {
            let conn = crate::connection::Connection::over(a.stream, a.addr.to_string(), 0);
            handler::handle(conn, a.permit, ctx, a.token).await;
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
