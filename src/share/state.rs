//! What the publisher's tasks share: the files shared now (with a signal for each change),
//! what is reported of them, and how often the shared paths are looked at again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::hash::Hash;

use crate::manifest::Manifest;
use crate::owner::SharedFile;
use crate::watch;

/// How often the shared paths are looked at again.
pub const RESCAN: Duration = Duration::from_secs(2);

/// What happened to a shared file, as the publisher reports it.
#[derive(Debug, Clone)]
pub enum Report {
    /// The directory lists it under this id; `node` is the directory's key, as proven;
    /// `file` is the file served (its path, its upload counts).
    Published {
        id: u32,
        manifest: Arc<Manifest>,
        node: Option<crate::key::NodeId>,
        file: Arc<SharedFile>,
    },
    /// It was removed from its folder, or changed (its new content is published anew).
    Withdrawn { manifest: Arc<Manifest> },
}

/// Told of every [`Report`].
pub type OnReport = Arc<dyn Fn(&Report) + Send + Sync>;

/// The paths a publisher shares (files, or folders whose regular files are shared): given at
/// start, and changed while it runs by whoever holds a clone (the app's share and unshare).
/// A change is looked at at once, not at the next [`RESCAN`].
#[derive(Clone, Debug, Default)]
pub struct Paths(Arc<PathsInner>);

#[derive(Debug, Default)]
struct PathsInner {
    list: Mutex<Vec<PathBuf>>,
    changed: Notify,
}

impl Paths {
    /// `paths` to start with.
    pub fn new(paths: Vec<PathBuf>) -> Self {
        let me = Self::default();
        *me.lock() = paths;
        me
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.0.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The paths now.
    pub fn list(&self) -> Vec<PathBuf> {
        self.lock().clone()
    }

    /// Shares `path` too (once); its files are hashed and published at once.
    pub fn add(&self, path: PathBuf) {
        {
            let mut list = self.lock();
            if !list.contains(&path) {
                list.push(path);
            }
        }
        self.0.changed.notify_one();
    }

    /// Stops sharing `path`: its files (unless another path holds them) are withdrawn at
    /// once. Returns whether it was shared.
    pub fn remove(&self, path: &Path) -> bool {
        let removed = {
            let mut list = self.lock();
            let before = list.len();
            list.retain(|p| p != path);
            list.len() != before
        };
        self.0.changed.notify_one();
        removed
    }

    /// Waits for the next change.
    pub(super) async fn changed(&self) {
        self.0.changed.notified().await;
    }
}

/// The files shared now, and a signal for each change.
pub(super) struct Current {
    pub(super) files: Mutex<Vec<Arc<SharedFile>>>,
    pub(super) changed: watch::Sender<()>,
    /// The hashes reported published (so a reconnect does not report them again; a file
    /// withdrawn leaves, so sharing it again reports it again).
    pub(super) reported: Mutex<BTreeSet<Hash>>,
}

impl Current {
    pub(super) fn snapshot(&self) -> Vec<Arc<SharedFile>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn reported(&self) -> std::sync::MutexGuard<'_, BTreeSet<Hash>> {
        self.reported.lock().unwrap_or_else(|p| p.into_inner())
    }
}
