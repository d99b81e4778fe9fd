//! The publisher's look at its paths every [`RESCAN`]: files gone or changed are withdrawn,
//! new ones hashed and added to what it serves.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::state::{Current, OnReport, Paths, RESCAN, Report};
use crate::directory::Directory;
use crate::owner::{self, Files, SharedFile};

/// Looks at the shared paths again every [`RESCAN`].
pub(super) struct Rescan {
    pub(super) paths: Paths,
    pub(super) chunk_size: u64,
    pub(super) peers: u32,
    pub(super) current: Arc<Current>,
    pub(super) served: Arc<Files>,
    pub(super) local: Arc<Directory>,
    pub(super) on_report: OnReport,
}

impl Rescan {
    pub(super) async fn run(self, token: CancellationToken) {
        loop {
            tokio::select! {
                biased;
                () = token.cancelled() => return,
                () = tokio::time::sleep(RESCAN) => {}
                () = self.paths.changed() => {}
            }
            self.once().await;
        }
    }

    /// One look: withdraws what is gone or changed, hashes and adds what is new.
    async fn once(&self) {
        let paths = self.paths.list();
        let found: BTreeSet<PathBuf> = tokio::task::spawn_blocking(move || {
            paths
                .iter()
                .filter_map(|p| owner::files_to_share(p).ok())
                .flatten()
                .collect()
        })
        .await
        .unwrap_or_default();
        let mut changed = false;
        let mut kept = Vec::new();
        for f in self.current.snapshot() {
            if found.contains(f.path()) && f.matches_path() {
                kept.push(f);
            } else {
                f.withdraw();
                self.current.reported().remove(&f.manifest.hash);
                (self.on_report)(&Report::Withdrawn {
                    manifest: f.manifest.clone(),
                });
                changed = true;
            }
        }
        let known: BTreeSet<PathBuf> = kept.iter().map(|f| f.path().to_path_buf()).collect();
        for path in found.into_iter().filter(|p| !known.contains(p)) {
            let (chunk_size, peers) = (self.chunk_size, self.peers);
            let opened = tokio::task::spawn_blocking(move || {
                SharedFile::open(&path, chunk_size, peers).map_err(|e| (path, e))
            })
            .await;
            match opened {
                Ok(Ok(f)) => {
                    let f = Arc::new(f);
                    self.served.add(&self.local, f.clone());
                    kept.push(f);
                    changed = true;
                }
                // Being written, unreadable: tried again next time.
                Ok(Err((path, e))) => warn!(
                    "not sharing {} yet: {e}",
                    crate::manifest::display_name(&path.to_string_lossy())
                ),
                Err(e) => warn!("hashing failed: {e}"),
            }
        }
        if changed {
            *self.current.files.lock().unwrap_or_else(|p| p.into_inner()) = kept;
            self.current.changed.send_replace(());
        }
    }
}
